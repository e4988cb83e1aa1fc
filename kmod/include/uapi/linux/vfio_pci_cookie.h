/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mmap cookies for vfio-pci: per-mapping memory attributes.
 *
 * Userspace asks for a mapping of (region, offset, length, attribute) and
 * gets back an opaque "cookie": the offset to pass to mmap() on the device
 * fd.  At mmap time the driver decodes the cookie and maps those pages with
 * the requested memory type.  Region indexes and legacy region offsets are
 * unchanged, so userspace that knows nothing of cookies sees vfio-pci.
 *
 * All operations go through VFIO_DEVICE_FEATURE.  Userspace should first
 * PROBE VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE; drivers without cookies
 * answer ENOTTY.  The feature numbers are private to this driver until an
 * upstream allocation exists.
 */
#ifndef _UAPI_LINUX_VFIO_PCI_COOKIE_H
#define _UAPI_LINUX_VFIO_PCI_COOKIE_H

#include <linux/const.h>
#include <linux/types.h>

#define VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE	0x7c00
#define VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY	0x7c01
#define VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY	0x7c02
#define VFIO_DEVICE_FEATURE_MMAP_ATTRS		0x7c03

/* Live cookies per device open; CREATE answers -ENOSPC beyond. */
#define VFIO_MMAP_COOKIE_MAX			4096

/**
 * enum vfio_mmap_attr - memory attribute asked for a cookie mapping
 * @VFIO_MMAP_ATTR_UC: uncached, what a legacy vfio-pci mmap gives
 * @VFIO_MMAP_ATTR_WC: write-combining (posted, mergeable writes)
 * @VFIO_MMAP_NR_ATTRS: number of defined attributes; higher values are EINVAL
 */
enum vfio_mmap_attr {
	VFIO_MMAP_ATTR_UC = 0,
	VFIO_MMAP_ATTR_WC = 1,
	VFIO_MMAP_NR_ATTRS,
};

/**
 * enum vfio_memtype - memory type the platform actually applies
 * @VFIO_MEMTYPE_UNKNOWN: not known (e.g. the platform has no PAT)
 * @VFIO_MEMTYPE_UC_MINUS: uncached, MTRR may override (x86 "uncached-minus")
 * @VFIO_MEMTYPE_WC: write-combining
 * @VFIO_MEMTYPE_UC: strongly uncached
 * @VFIO_MEMTYPE_WB: write-back
 * @VFIO_MEMTYPE_WT: write-through
 * @VFIO_MEMTYPE_WP: write-protected
 */
enum vfio_memtype {
	VFIO_MEMTYPE_UNKNOWN = 0,
	VFIO_MEMTYPE_UC_MINUS = 1,
	VFIO_MEMTYPE_WC = 2,
	VFIO_MEMTYPE_UC = 3,
	VFIO_MEMTYPE_WB = 4,
	VFIO_MEMTYPE_WT = 5,
	VFIO_MEMTYPE_WP = 6,
};

/**
 * struct vfio_device_feature_mmap_cookie_create - make a cookie
 * @index: in: region index (a memory BAR, 0-5)
 * @attr: in: one of &enum vfio_mmap_attr
 * @flags: in: must be 0
 * @__reserved: must be 0
 * @offset: in: start within the region; page aligned
 * @length: in: bytes to map; not 0; rounded up to whole pages (a BAR
 *	smaller than a page is mapped as the one page it starts, which
 *	vfio-pci keeps free of other resources, and its type is the page's)
 * @cookie: out: the offset to pass to mmap(); opaque
 * @mmap_length: out: the length mmap() must use (@length rounded up)
 *
 * VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE with VFIO_DEVICE_FEATURE_SET; the
 * driver writes @cookie and @mmap_length back into the caller's struct.
 * The memory type is reserved for the pages when the cookie is created and
 * held until the cookie and every mapping of it are gone.
 *
 * Return: 0 on success;
 * -EINVAL for a bad index, attribute, flag, reserved field or alignment;
 * -ERANGE if @offset + @length (before rounding) passes the region's end;
 * -EBUSY if a page of the range already has another memory type: a cookie
 * of the other attribute, another PAT record (including one made outside the
 * device, such as a root mmap of sysfs resourceN_wc made before open), or
 * (6.1 only) a legacy mmap of the BAR; the request is refused, never
 * silently given another type.  From
 * 6.10 a legacy mmap of a page follows the page's type instead: its PTEs are
 * zapped when a WC cookie comes or goes, and refault with the new type;
 * -EOPNOTSUPP if the platform cannot honour @attr for this region (no PAT);
 * -EPERM for WC over a page the kernel maps itself (see
 * &struct vfio_device_feature_mmap_attrs.wc_refused);
 * -ENOSPC if the device open already has VFIO_MMAP_COOKIE_MAX cookies
 * (destroyed ones that are still mapped count).
 *
 * The argsz given must cover the whole struct, outputs included (-EINVAL).
 */
struct vfio_device_feature_mmap_cookie_create {
	__u32 index;
	__u32 attr;
	__u32 flags;
	__u32 __reserved;
	__u64 offset;
	__u64 length;
	__u64 cookie;
	__u64 mmap_length;
};

/**
 * struct vfio_device_feature_mmap_cookie_destroy - forget a cookie
 * @cookie: in: a cookie from CREATE on this device
 * @flags: in: must be 0
 * @__reserved: must be 0
 *
 * VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY with VFIO_DEVICE_FEATURE_SET.
 * New mmap()s of the cookie fail from now on; existing mappings stay valid
 * until unmapped.  A value is not handed out again within 2^32 creates of
 * one device open, nor while a mapping of it exists; a value from another
 * device or another open (up to 2^18 opens later) is -EINVAL.
 *
 * Return: 0, or -EINVAL if @cookie is unknown or already destroyed.
 */
struct vfio_device_feature_mmap_cookie_destroy {
	__u64 cookie;
	__u32 flags;
	__u32 __reserved;
};

/* vfio_device_feature_mmap_cookie_query.state */
#define VFIO_MMAP_COOKIE_STATE_MAPPED	_BITUL(0)	/* some vma maps it */

/**
 * struct vfio_device_feature_mmap_cookie_query - what a cookie maps
 * @cookie: in: a live cookie
 * @flags: in: must be 0
 * @index: out: region index
 * @offset: out: start within the region
 * @length: out: mmap length
 * @attr: out: the attribute asked for
 * @memtype: out: the &enum vfio_memtype in effect for the pages, read back
 *	from the kernel's mapping that holds PAT's record of them
 * @state: out: VFIO_MMAP_COOKIE_STATE_* bits
 * @__reserved: out: 0
 *
 * VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY with VFIO_DEVICE_FEATURE_GET; the
 * caller fills @cookie and @flags, the driver the rest.
 *
 * Return: 0, or -EINVAL if @cookie is unknown or destroyed.
 */
struct vfio_device_feature_mmap_cookie_query {
	__u64 cookie;
	__u32 flags;
	__u32 index;
	__u64 offset;
	__u64 length;
	__u32 attr;
	__u32 memtype;
	__u32 state;
	__u32 __reserved;
};

/**
 * struct vfio_mmap_range - a byte range of a region
 * @offset: start, page aligned
 * @length: bytes, whole pages
 */
struct vfio_mmap_range {
	__u64 offset;
	__u64 length;
};

/**
 * struct vfio_device_feature_mmap_attrs - attributes a region supports
 * @index: in: region index
 * @attrs: out: bit (1 << attr) set for each &enum vfio_mmap_attr that
 *	   CREATE accepts for this region (0: no cookies for it)
 * @nr_wc_refused: out: entries of @wc_refused in use
 * @nr_cookies: out: live cookies of this device open, of every region and
 *		destroyed-but-mapped ones included; CREATE fails -ENOSPC at
 *		VFIO_MMAP_COOKIE_MAX (this field was __reserved, 0, before)
 * @wc_refused: out: page ranges of the region the kernel maps itself (the
 *		MSI-X table and PBA); CREATE refuses WC over them with -EPERM
 *
 * VFIO_DEVICE_FEATURE_MMAP_ATTRS with VFIO_DEVICE_FEATURE_GET.  An older
 * caller may pass only @index and @attrs.
 *
 * Return: 0, or -EINVAL for an index beyond the device's regions.
 */
struct vfio_device_feature_mmap_attrs {
	__u32 index;
	__u32 attrs;
	__u32 nr_wc_refused;
	__u32 nr_cookies;
	struct vfio_mmap_range wc_refused[2];
};

#endif /* _UAPI_LINUX_VFIO_PCI_COOKIE_H */
