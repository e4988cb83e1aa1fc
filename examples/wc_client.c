// SPDX-License-Identifier: Apache-2.0
/*
 * wc_client: write-combining from C, the way a DPDK-style driver gets it
 * from vfio_pci_cookie.  Streams 64-byte descriptors through a WC mapping
 * of a prefetchable BAR, fences, reads them back uncached, and shows the
 * kernel's PAT record for the pages.
 *
 *   gcc -Wall -Wextra -O2 -I kmod/include/uapi -o wc_client examples/wc_client.c
 *   wc_client BDF [BAR]          (BAR defaults to 2)
 *
 * Exit status: 0 done, 1 an operation failed, 2 the device's driver has no
 * mmap cookies (e.g. stock vfio-pci): the caller may fall back to UC.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/vfio.h>
#include <linux/vfio_pci_cookie.h>

#if !defined(__x86_64__) && !defined(__i386__)
#error "this example checks x86 PAT and fences with sfence"
#endif

#define WINDOW		(64 * 1024)	/* the part of the BAR mapped WC */
#define NR_RECORDS	1024
#define PAT_LIST	"/sys/kernel/debug/x86/pat_memtype_list"
/* include/linux/ioport.h: the flags column of sysfs "resource"; not uapi */
#define IORESOURCE_MEM		0x00000200
#define IORESOURCE_PREFETCH	0x00002000

/* One descriptor: a cache line, so each record is one full WC burst. */
struct desc {
	uint64_t seq;
	uint64_t addr;		/* what a real one carries: a buffer IOVA */
	uint32_t len;
	uint32_t flags;
	uint32_t pad[9];
	uint32_t csum;		/* over every word before it */
};
_Static_assert(sizeof(struct desc) == 64, "a descriptor is one cache line");

static const char *bdf;

/* Name the device, the operation and errno (0: none), then give up.  Exit
 * releases the rest: closing the device fd destroys its cookies. */
static void __attribute__((noreturn, format(printf, 2, 3)))
die(int err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "wc_client: %s: ", bdf);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err)
		fprintf(stderr, ": %s (errno %d)", strerror(err), err);
	fputc('\n', stderr);
	exit(1);
}

static uint32_t desc_csum(const struct desc *d)
{
	uint32_t w[15], sum = 0x5eed;
	int i;

	memcpy(w, d, sizeof(w));
	for (i = 0; i < 15; i++)
		sum = (sum << 5 | sum >> 27) ^ w[i];
	return sum;
}

static void desc_fill(struct desc *d, uint64_t seq)
{
	uint32_t i;

	d->seq = seq;
	d->addr = 0x100000000ull + seq * 2048;
	d->len = 64 + (uint32_t)(seq % 1455);
	d->flags = 1;		/* "owned by the device" */
	for (i = 0; i < 9; i++)
		d->pad[i] = (uint32_t)seq ^ (i * 0x9e3779b9u);
	d->csum = desc_csum(d);
}

/* VFIO_DEVICE_FEATURE takes its payload inline after the header. */
static int feature(int dev, uint32_t flags, void *arg, size_t size)
{
	struct vfio_device_feature *f = calloc(1, sizeof(*f) + size);
	int ret, err;

	if (!f)
		return -ENOMEM;
	f->argsz = (uint32_t)(sizeof(*f) + size);
	f->flags = flags;
	if (size)
		memcpy(f->data, arg, size);
	ret = ioctl(dev, VFIO_DEVICE_FEATURE, f);
	err = errno;
	if (!ret && size)
		memcpy(arg, f->data, size);
	free(f);
	return ret ? -err : 0;
}

/* The last part of the sysfs link @attr of the device, in @buf. */
static int link_name(const char *attr, char *buf, size_t size)
{
	char path[128], link[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, attr);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -errno;
	link[n] = '\0';
	n = snprintf(buf, size, "%s", strrchr(link, '/') ? strrchr(link, '/') + 1 : link);
	return n < (ssize_t)size ? 0 : -ENAMETOOLONG;
}

/* The legacy group/container path, as DPDK's EAL does it. */
static int open_device(int *container, int *group)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	char path[64], name[64];
	int dev, nr, ret;

	ret = link_name("iommu_group", name, sizeof(name));
	if (ret)
		die(-ret, "read iommu_group link");
	if (sscanf(name, "%d", &nr) != 1)
		die(EINVAL, "parse IOMMU group \"%s\"", name);

	*container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (*container < 0)
		die(errno, "open /dev/vfio/vfio");
	if (ioctl(*container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		die(0, "VFIO_GET_API_VERSION: not %d", VFIO_API_VERSION);
	if (ioctl(*container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
		die(0, "VFIO_CHECK_EXTENSION: no type1v2 IOMMU");

	snprintf(path, sizeof(path), "/dev/vfio/%d", nr);
	*group = open(path, O_RDWR | O_CLOEXEC);
	if (*group < 0)
		die(errno, "open %s", path);
	if (ioctl(*group, VFIO_GROUP_GET_STATUS, &status))
		die(errno, "VFIO_GROUP_GET_STATUS");
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		die(0, "group %d is not viable: bind all its devices to VFIO", nr);
	if (ioctl(*group, VFIO_GROUP_SET_CONTAINER, container))
		die(errno, "VFIO_GROUP_SET_CONTAINER");
	if (ioctl(*container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		die(errno, "VFIO_SET_IOMMU type1v2");
	dev = ioctl(*group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (dev < 0)
		die(errno, "VFIO_GROUP_GET_DEVICE_FD");
	return dev;
}

/* BAR start and flags as the kernel assigned them: line @bar of "resource". */
static void bar_resource(unsigned int bar, uint64_t *start, uint64_t *flags)
{
	unsigned long long s, e, f;
	char path[128], line[128];
	unsigned int i;
	FILE *fp;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/resource", bdf);
	fp = fopen(path, "r");
	if (!fp)
		die(errno, "open %s", path);
	for (i = 0; i <= bar; i++)
		if (!fgets(line, sizeof(line), fp))
			die(EIO, "read BAR%u from %s", bar, path);
	fclose(fp);
	if (sscanf(line, "%llx %llx %llx", &s, &e, &f) != 3)
		die(EINVAL, "parse BAR%u of %s", bar, path);
	*start = s;
	*flags = f;
}

/* The kernel's own record of the pages' memory type: the proof, rather than
 * the module's word.  Every entry over [start, end) must be WC, one covering. */
static void pat_check(uint64_t start, uint64_t end, char *out, size_t outsz)
{
	unsigned long long lo, hi;
	char line[256], type[32];
	FILE *fp = fopen(PAT_LIST, "r");

	if (!fp)
		die(errno, "open %s (is debugfs mounted?)", PAT_LIST);
	out[0] = '\0';
	while (fgets(line, sizeof(line), fp)) {
		if (sscanf(line, "PAT: [mem 0x%llx-0x%llx] %31s", &lo, &hi, type) != 3)
			continue;
		if (lo >= end || hi <= start)
			continue;
		line[strcspn(line, "\n")] = '\0';
		if (strcmp(type, "write-combining"))
			die(0, "PAT: [%#llx, %#llx) overlapped by \"%s\"",
			    (unsigned long long)start, (unsigned long long)end, line);
		if (lo <= start && hi >= end)
			snprintf(out, outsz, "%s", line);
	}
	fclose(fp);
	if (!out[0])
		die(0, "PAT: no write-combining entry covers [%#llx, %#llx)",
		    (unsigned long long)start, (unsigned long long)end);
}

int main(int argc, char **argv)
{
	struct vfio_region_info info = { .argsz = sizeof(info) };
	struct vfio_device_feature_mmap_cookie_create create = { 0 };
	struct vfio_device_feature_mmap_cookie_destroy destroy = { 0 };
	uint64_t start, flags, len, slots, s;
	unsigned int bar = 2, i;
	int container, group, dev, ret;
	char pat[256], drv[64] = "its driver", *end;
	struct desc *back;
	volatile uint64_t *ring;
	void *map;
	ssize_t n;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s BDF [BAR]\n", argv[0]);
		return 1;
	}
	bdf = argv[1];
	if (argc == 3) {
		bar = (unsigned int)strtoul(argv[2], &end, 0);
		if (*end || end == argv[2] || bar > VFIO_PCI_BAR5_REGION_INDEX)
			die(EINVAL, "BAR \"%s\"", argv[2]);
	}

	/* WC is only sound where reads have no side effects: prefetchable. */
	bar_resource(bar, &start, &flags);
	if (!(flags & IORESOURCE_MEM) || !(flags & IORESOURCE_PREFETCH))
		die(0, "BAR%u is not prefetchable memory (flags %#llx)", bar,
		    (unsigned long long)flags);

	dev = open_device(&container, &group);
	info.index = bar;
	if (ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &info))
		die(errno, "VFIO_DEVICE_GET_REGION_INFO BAR%u", bar);
	if (!(info.flags & VFIO_REGION_INFO_FLAG_MMAP) || !info.size)
		die(0, "BAR%u cannot be mmap()ed (flags %#x)", bar, info.flags);

	/* Probe before use: a driver without cookies answers ENOTTY. */
	ret = feature(dev, VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE |
		      VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET, NULL, 0);
	if (ret == -ENOTTY) {
		link_name("driver", drv, sizeof(drv));
		fprintf(stderr, "wc_client: %s: driver %s has no mmap cookies "
			"(MMAP_COOKIE_CREATE probe: ENOTTY): no write-combining; "
			"bind it to vfio_pci_cookie\n", bdf, drv);
		return 2;
	}
	if (ret)
		die(-ret, "probe VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE");

	len = info.size < WINDOW ? info.size : WINDOW;
	slots = len / sizeof(struct desc);
	if (!slots)
		die(0, "BAR%u is smaller than one descriptor", bar);
	create.index = bar;
	create.attr = VFIO_MMAP_ATTR_WC;
	create.offset = 0;
	create.length = len;
	ret = feature(dev, VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE |
		      VFIO_DEVICE_FEATURE_SET, &create, sizeof(create));
	if (ret)
		die(-ret, "create WC cookie BAR%u [0, %#llx)", bar,
		    (unsigned long long)len);
	/* The cookie is the mmap offset; the driver picks the memory type. */
	map = mmap(NULL, create.mmap_length, PROT_READ | PROT_WRITE, MAP_SHARED,
		   dev, (off_t)create.cookie);
	if (map == MAP_FAILED)
		die(errno, "mmap cookie %#llx", (unsigned long long)create.cookie);

	/* Stream the ring: whole-line stores that the WC buffers merge. */
	ring = map;
	for (i = 0; i < NR_RECORDS; i++) {
		struct desc d;
		uint64_t w[8];
		unsigned int k;

		desc_fill(&d, i);
		memcpy(w, &d, sizeof(w));
		for (k = 0; k < 8; k++)
			ring[(i % slots) * 8 + k] = w[k];
	}
	/* WC stores are posted and may sit in the CPU: drain them before the
	 * device is told (here, before the kernel reads them back). */
	__builtin_ia32_sfence();

	/* Read back uncached, through the kernel, at the legacy region offset. */
	back = malloc(len);
	if (!back)
		die(ENOMEM, "malloc");
	n = pread(dev, back, len, (off_t)info.offset);
	if (n != (ssize_t)len)
		die(n < 0 ? errno : EIO, "pread BAR%u [0, %#llx)", bar,
		    (unsigned long long)len);
	for (s = 0; s < slots && s < NR_RECORDS; s++) {
		/* the last record written to slot s */
		uint64_t seq = s + (NR_RECORDS - 1 - s) / slots * slots;

		if (back[s].seq != seq)
			die(0, "slot %llu: read back seq %llu, wrote %llu", (unsigned long long)s,
			    (unsigned long long)back[s].seq, (unsigned long long)seq);
		if (back[s].csum != desc_csum(&back[s]))
			die(0, "slot %llu: record %llu read back corrupt (checksum)",
			    (unsigned long long)s, (unsigned long long)seq);
	}
	free(back);

	pat_check(start + create.offset, start + create.offset + create.mmap_length,
		  pat, sizeof(pat));

	if (munmap(map, create.mmap_length))
		die(errno, "munmap");
	destroy.cookie = create.cookie;
	ret = feature(dev, VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY |
		      VFIO_DEVICE_FEATURE_SET, &destroy, sizeof(destroy));
	if (ret)
		die(-ret, "destroy cookie %#llx", (unsigned long long)create.cookie);
	close(dev);
	close(group);
	close(container);

	printf("wc_client: %s BAR%u: %u records, %u bytes streamed write-combining "
	       "and verified; %s\n", bdf, bar, NR_RECORDS,
	       NR_RECORDS * (unsigned int)sizeof(struct desc), pat);
	return 0;
}
