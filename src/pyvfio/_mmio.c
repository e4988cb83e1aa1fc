// SPDX-License-Identifier: Apache-2.0
/*
 * Exact-width access to a mapped device region.
 *
 * Why C: a device register must see exactly one access of the width the
 * driver asks for.  Nothing in Python's standard library promises that;
 * here each access is one volatile load or store of a fixed-width type,
 * which the compiler may neither split nor merge.  Bounds and natural
 * alignment are checked before touching the mapping, and the whole call is
 * one C method so the check costs nanoseconds, not a Python frame.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *out_of_range_error; /* pyvfio.errors.OutOfRangeError */
static PyObject *closed_error;       /* pyvfio.errors.ClosedError */
static PyObject *type_error;         /* pyvfio.errors.ArgumentTypeError */

typedef struct {
	PyObject_HEAD
	Py_buffer view;	/* holds the mmap open while the window is */
	char *base;	/* NULL once released */
	Py_ssize_t size;
	PyObject *name;	/* for error messages */
	PyObject *closed_reason;	/* why it was released; NULL: closed */
} Window;

/*
 * An int no access can take (negative for a value, beyond 64 bits) is the
 * caller's range error, as 1 << 32 for write32 is, not Python's OverflowError.
 * Only on the error path: the accessors' fast path is unchanged.
 */
static void overflow_to_range(Window *self, const char *op, const char *what, PyObject *arg)
{
	if (!PyErr_ExceptionMatches(PyExc_OverflowError))
		return;
	PyErr_Clear();
	PyErr_Format(out_of_range_error, "%S: %s: %s %R is out of range", self->name, op, what, arg);
}

/*
 * A wrong type for argument ``what``: "NAME: OP: WHAT must be TAKES, not
 * REPR (TYPE)", the repr cut at 60 characters, as mmio.py's fallback says it.
 */
static void raise_type(Window *self, const char *op, const char *what, const char *takes,
		       PyObject *arg)
{
	PyObject *repr = PyObject_Repr(arg), *cut, *type_name;

	if (!repr)
		return;
	if (PyUnicode_GET_LENGTH(repr) > 60) {
		cut = PyUnicode_Substring(repr, 0, 57);
		Py_DECREF(repr);
		if (!cut)
			return;
		repr = PyUnicode_FromFormat("%U...", cut);
		Py_DECREF(cut);
		if (!repr)
			return;
	}
	type_name = PyType_GetName(Py_TYPE(arg));
	if (type_name)
		PyErr_Format(type_error, "%S: %s: %s must be %s, not %U (%U)",
			     self->name, op, what, takes, repr, type_name);
	Py_XDECREF(type_name);
	Py_DECREF(repr);
}

/*
 * An int argument (or one with __index__), never a bool: True is not an
 * offset.  Returns a new reference, or NULL with an error set.  An exact int
 * costs two pointer tests.
 */
static PyObject *as_int(Window *self, PyObject *arg, const char *op, const char *what)
{
	if (PyLong_Check(arg) && !PyBool_Check(arg))
		return Py_NewRef(arg);
	if (PyBool_Check(arg) || !PyIndex_Check(arg)) {
		raise_type(self, op, what, "an int", arg);
		return NULL;
	}
	return PyNumber_Index(arg);
}

/* ``arg`` as a Py_ssize_t; -1 with an error set if it is no int or too large. */
static inline int get_ssize(Window *self, PyObject *arg, const char *op, const char *what,
			    Py_ssize_t *out)
{
	PyObject *num = NULL;

	if (PyLong_CheckExact(arg)) {	/* the accessors' fast path */
		*out = PyLong_AsSsize_t(arg);
	} else {
		num = as_int(self, arg, op, what);
		if (!num)
			return -1;
		*out = PyLong_AsSsize_t(num);
		Py_DECREF(num);
	}
	if (*out == -1 && PyErr_Occurred()) {
		overflow_to_range(self, op, what, arg);
		return -1;
	}
	return 0;
}

/*
 * A buffer argument: any contiguous bytes-like object (writable for
 * ``PyBUF_WRITABLE``); the buffer protocol's own TypeError or BufferError
 * would not name the argument.
 */
static int get_buffer(Window *self, PyObject *arg, Py_buffer *view, int flags,
		      const char *op, const char *what)
{
	if (PyObject_GetBuffer(arg, view, flags) == 0)
		return 0;
	if (!PyErr_ExceptionMatches(PyExc_TypeError) && !PyErr_ExceptionMatches(PyExc_BufferError))
		return -1;
	PyErr_Clear();
	raise_type(self, op, what,
		   (flags & PyBUF_WRITABLE) ? "a writable contiguous bytes-like object"
					    : "a contiguous bytes-like object",
		   arg);
	return -1;
}

static void raise_closed(Window *self, const char *op)
{
	if (self->closed_reason)
		PyErr_Format(closed_error, "%S: %s: %S", self->name, op, self->closed_reason);
	else
		PyErr_Format(closed_error, "%S: %s: mapping is closed", self->name, op);
}

/* Return the address of [offset, offset + width), or NULL with an error set. */
static inline volatile char *
window_at(Window *self, PyObject *arg, Py_ssize_t width, const char *op)
{
	Py_ssize_t offset;

	if (get_ssize(self, arg, op, "offset", &offset))
		return NULL;
	if (!self->base) {
		raise_closed(self, op);
		return NULL;
	}
	if (offset < 0 || offset > self->size - width) {
		PyErr_Format(out_of_range_error,
			     "%S: %s: offset %zd width %zd is outside the %zd-byte mapping",
			     self->name, op, offset, width, self->size);
		return NULL;
	}
	if (offset & (width - 1)) {
		PyErr_Format(out_of_range_error,
			     "%S: %s: offset %zd is not %zd-byte aligned",
			     self->name, op, offset, width);
		return NULL;
	}
	return self->base + offset;
}

#define DEFINE_ACCESSORS(bits)							\
static PyObject *								\
window_read##bits(Window *self, PyObject *offset)				\
{										\
	volatile char *p = window_at(self, offset, bits / 8, "read" #bits);	\
										\
	if (!p)									\
		return NULL;							\
	return PyLong_FromUnsignedLongLong(*(volatile uint##bits##_t *)p);	\
}										\
										\
static PyObject *								\
window_write##bits(Window *self, PyObject *const *args, Py_ssize_t nargs)	\
{										\
	volatile char *p;							\
	unsigned long long value;						\
	PyObject *num;								\
										\
	if (nargs != 2) {							\
		PyErr_SetString(PyExc_TypeError,				\
				"write" #bits "(offset, value) takes 2 arguments");	\
		return NULL;							\
	}									\
	if (PyLong_CheckExact(args[1])) {					\
		value = PyLong_AsUnsignedLongLong(args[1]);			\
	} else {								\
		num = as_int(self, args[1], "write" #bits, "value");		\
		if (!num)							\
			return NULL;						\
		value = PyLong_AsUnsignedLongLong(num);				\
		Py_DECREF(num);							\
	}									\
	if (value == (unsigned long long)-1 && PyErr_Occurred()) {		\
		overflow_to_range(self, "write" #bits, "value", args[1]);	\
		return NULL;							\
	}									\
	if (bits < 64 && value >> (bits % 64)) {				\
		PyErr_Format(out_of_range_error,				\
			     "%S: write" #bits ": value %llu does not fit in "	\
			     #bits " bits", self->name, value);			\
		return NULL;							\
	}									\
	p = window_at(self, args[0], bits / 8, "write" #bits);			\
	if (!p)									\
		return NULL;							\
	*(volatile uint##bits##_t *)p = (uint##bits##_t)value;			\
	Py_RETURN_NONE;								\
}

DEFINE_ACCESSORS(8)
DEFINE_ACCESSORS(16)
DEFINE_ACCESSORS(32)
DEFINE_ACCESSORS(64)

/*
 * Bulk copies use the widest naturally aligned access that fits, never a
 * byte-wise memcpy: many devices reject byte access to 32-bit registers.
 */
static void copy_io(volatile char *dst, const volatile char *src, Py_ssize_t n)
{
	while (n > 0) {
		uintptr_t both = (uintptr_t)dst | (uintptr_t)src;

		if (n >= 8 && !(both & 7)) {
			*(volatile uint64_t *)dst = *(const volatile uint64_t *)src;
			dst += 8; src += 8; n -= 8;
		} else if (n >= 4 && !(both & 3)) {
			*(volatile uint32_t *)dst = *(const volatile uint32_t *)src;
			dst += 4; src += 4; n -= 4;
		} else {
			*dst++ = *src++;
			n--;
		}
	}
}

static int check_span(Window *self, Py_ssize_t offset, Py_ssize_t n, const char *op)
{
	if (!self->base) {
		raise_closed(self, op);
		return -1;
	}
	if (offset < 0 || n < 0 || offset > self->size || n > self->size - offset) {
		PyErr_Format(out_of_range_error,
			     "%S: %s: [offset, offset + length) = [%zd, %zd + %zd) "
			     "is outside the %zd-byte mapping",
			     self->name, op, offset, offset, n, self->size);
		return -1;
	}
	return 0;
}

static PyObject *window_read_bytes(Window *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t offset, n;
	PyObject *out;

	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "read_bytes(offset, length) takes 2 arguments");
		return NULL;
	}
	if (get_ssize(self, args[0], "read_bytes", "offset", &offset) ||
	    get_ssize(self, args[1], "read_bytes", "length", &n) ||
	    check_span(self, offset, n, "read_bytes"))
		return NULL;
	out = PyBytes_FromStringAndSize(NULL, n);
	if (out)
		copy_io(PyBytes_AS_STRING(out), self->base + offset, n);
	return out;
}

/* write_bytes(offset, data): data is any bytes-like object. */
static PyObject *window_write_bytes(Window *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t offset;
	Py_buffer data;

	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "write_bytes(offset, data) takes 2 arguments");
		return NULL;
	}
	if (get_ssize(self, args[0], "write_bytes", "offset", &offset) ||
	    get_buffer(self, args[1], &data, PyBUF_SIMPLE, "write_bytes", "data"))
		return NULL;
	if (check_span(self, offset, data.len, "write_bytes")) {
		PyBuffer_Release(&data);
		return NULL;
	}
	copy_io(self->base + offset, data.buf, data.len);
	PyBuffer_Release(&data);
	Py_RETURN_NONE;
}

/* copy_from(offset, buffer): fill a writable buffer from the mapping. */
static PyObject *window_copy_from(Window *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t offset;
	Py_buffer out;

	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "copy_from(offset, buffer) takes 2 arguments");
		return NULL;
	}
	if (get_ssize(self, args[0], "copy_from", "offset", &offset) ||
	    get_buffer(self, args[1], &out, PyBUF_WRITABLE, "copy_from", "buffer"))
		return NULL;
	if (check_span(self, offset, out.len, "copy_from")) {
		PyBuffer_Release(&out);
		return NULL;
	}
	copy_io(out.buf, self->base + offset, out.len);
	PyBuffer_Release(&out);
	Py_RETURN_NONE;
}

/* Order earlier stores before later ones, and drain write-combining buffers. */
static PyObject *window_write_barrier(Window *self, PyObject *unused)
{
#if defined(__x86_64__) || defined(__i386__)
	__asm__ __volatile__("sfence" ::: "memory");
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
	Py_RETURN_NONE;
}

/*
 * Drop the buffer; later accesses raise ClosedError, saying ``reason`` if
 * given.  The device's request watcher calls this from its own thread: every
 * accessor runs under the GIL, so none is half-way through the old pointer.
 */
static PyObject *window_release(Window *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs > 1 || (nargs == 1 && !PyUnicode_Check(args[0]))) {
		PyErr_SetString(PyExc_TypeError, "_release(reason: str = ...) takes one str");
		return NULL;
	}
	if (nargs == 1 && self->base && !self->closed_reason)
		self->closed_reason = Py_NewRef(args[0]);
	if (self->base) {
		self->base = NULL;
		PyBuffer_Release(&self->view);
	}
	Py_RETURN_NONE;
}

static int window_init(Window *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"buffer", "name", NULL};
	PyObject *buffer, *name;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "OU", kwlist, &buffer, &name))
		return -1;
	if (self->base) {
		PyErr_SetString(PyExc_RuntimeError, "window already initialised");
		return -1;
	}
	if (PyObject_GetBuffer(buffer, &self->view, PyBUF_WRITABLE))
		return -1;
	self->base = self->view.buf;
	self->size = self->view.len;
	Py_INCREF(name);
	Py_XSETREF(self->name, name);
	return 0;
}

static void window_dealloc(Window *self)
{
	if (self->base)
		PyBuffer_Release(&self->view);
	Py_XDECREF(self->name);
	Py_XDECREF(self->closed_reason);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *window_get_size(Window *self, void *closure)
{
	return PyLong_FromSsize_t(self->size);
}

static PyObject *window_get_released(Window *self, void *closure)
{
	return PyBool_FromLong(self->base == NULL);
}

static PyMethodDef window_methods[] = {
	{"read8", (PyCFunction)window_read8, METH_O,
	 "read8($self, offset, /)\n--\n\nOne 8-bit load."},
	{"read16", (PyCFunction)window_read16, METH_O,
	 "read16($self, offset, /)\n--\n\nOne 16-bit load."},
	{"read32", (PyCFunction)window_read32, METH_O,
	 "read32($self, offset, /)\n--\n\nOne 32-bit load."},
	{"read64", (PyCFunction)window_read64, METH_O,
	 "read64($self, offset, /)\n--\n\nOne 64-bit load."},
	{"write8", (PyCFunction)(void (*)(void))window_write8, METH_FASTCALL,
	 "write8($self, offset, value, /)\n--\n\nOne 8-bit store."},
	{"write16", (PyCFunction)(void (*)(void))window_write16, METH_FASTCALL,
	 "write16($self, offset, value, /)\n--\n\nOne 16-bit store."},
	{"write32", (PyCFunction)(void (*)(void))window_write32, METH_FASTCALL,
	 "write32($self, offset, value, /)\n--\n\nOne 32-bit store."},
	{"write64", (PyCFunction)(void (*)(void))window_write64, METH_FASTCALL,
	 "write64($self, offset, value, /)\n--\n\nOne 64-bit store."},
	{"read_bytes", (PyCFunction)(void (*)(void))window_read_bytes, METH_FASTCALL,
	 "read_bytes($self, offset, length, /)\n--\n\nCopy length bytes out with aligned wide loads."},
	{"write_bytes", (PyCFunction)(void (*)(void))window_write_bytes, METH_FASTCALL,
	 "write_bytes($self, offset, data, /)\n--\n\nCopy a bytes-like object in with aligned wide stores."},
	{"copy_from", (PyCFunction)(void (*)(void))window_copy_from, METH_FASTCALL,
	 "copy_from($self, offset, buffer, /)\n--\n\nFill a writable buffer from the mapping at offset."},
	{"write_barrier", (PyCFunction)window_write_barrier, METH_NOARGS,
	 "write_barrier($self, /)\n--\n\nOrder and flush earlier stores (sfence on x86)."},
	{"_release", (PyCFunction)(void (*)(void))window_release, METH_FASTCALL,
	 "Drop the buffer (optionally saying why)."},
	{NULL, NULL, 0, NULL}
};

static PyGetSetDef window_getset[] = {
	{"size", (getter)window_get_size, NULL, "Bytes mapped.", NULL},
	{"_released", (getter)window_get_released, NULL, NULL, NULL},
	{NULL, NULL, NULL, NULL, NULL}
};

static PyTypeObject WindowType = {
	PyVarObject_HEAD_INIT(NULL, 0)
	.tp_name = "pyvfio._mmio.Window",
	.tp_basicsize = sizeof(Window),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "Width-exact accessors over a writable buffer (an mmap of a BAR).",
	.tp_new = PyType_GenericNew,
	.tp_init = (initproc)window_init,
	.tp_dealloc = (destructor)window_dealloc,
	.tp_methods = window_methods,
	.tp_getset = window_getset,
};

static PyObject *set_errors(PyObject *module, PyObject *args)
{
	PyObject *out_of_range, *closed, *wrong_type;

	if (!PyArg_ParseTuple(args, "OOO", &out_of_range, &closed, &wrong_type))
		return NULL;
	Py_INCREF(out_of_range);
	Py_XSETREF(out_of_range_error, out_of_range);
	Py_INCREF(closed);
	Py_XSETREF(closed_error, closed);
	Py_INCREF(wrong_type);
	Py_XSETREF(type_error, wrong_type);
	Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
	{"set_errors", set_errors, METH_VARARGS, "Set the exception classes to raise."},
	{NULL, NULL, 0, NULL}
};

static struct PyModuleDef mmio_module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "pyvfio._mmio",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__mmio(void)
{
	PyObject *m;

	if (PyType_Ready(&WindowType) < 0)
		return NULL;
	m = PyModule_Create(&mmio_module);
	if (!m)
		return NULL;
	out_of_range_error = Py_NewRef(PyExc_IndexError);
	closed_error = Py_NewRef(PyExc_ValueError);
	type_error = Py_NewRef(PyExc_TypeError);
	Py_INCREF(&WindowType);
	if (PyModule_AddObject(m, "Window", (PyObject *)&WindowType) < 0) {
		Py_DECREF(&WindowType);
		Py_DECREF(m);
		return NULL;
	}
	return m;
}
