// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-pci with mmap cookies: per-mapping memory attributes for BARs.
 *
 * A drop-in for vfio-pci: every ioctl, read/write and legacy mmap offset is
 * served by vfio-pci-core itself.  What this driver adds is "cookies", made
 * through VFIO_DEVICE_FEATURE: opaque mmap offsets that map a page range of
 * a memory BAR write-combining or uncached.  See
 * include/uapi/linux/vfio_pci_cookie.h and docs/uapi.md.
 *
 * Memory types.  x86 PAT records one type per physical range and hands any
 * later mapping of it that type.  The core maps each BAR whole and uncached
 * for read/write and ioeventfd (pci_iomap()), which would turn every later WC
 * mapping of it uncached.  So when a BAR gets its first WC cookie (until
 * then the core's own map serves it, at the core's cost), this driver
 * unmaps the core's map and keeps PAT's record of the BAR itself: one WC
 * reservation per WC cookie range (shared by identical cookies, conflicts
 * found in this driver's interval tree before PAT is asked) and
 * uncached-minus ioremap()s over every other page, cut at huge page
 * boundaries.  Those serve the BAR's pread and pwrite (WC pages are mapped
 * a page at a time), with the core's access sizes and ordering; only an
 * ioeventfd needs one map of the whole BAR, built for it (docs/uapi.md).
 *
 * Revocation.  A cookie vma sits at its BAR's own file offset.  From 6.10
 * the core revokes BAR mappings by unmap_mapping_range() over those offsets
 * (decode off, D3, FLR, resets, low power), which covers cookie vmas with no
 * help; faults insert pfns one page at a time under memory_lock, as the
 * core's do, and take the type PAT records for the page.  6.1 revokes
 * through a private vma list instead, which cookie vmas join (the one shim,
 * at the end of this file).
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/interval_tree.h>
#include <linux/kref.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/pm_runtime.h>
#include <linux/poison.h>
#include <linux/random.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>
#include <linux/vmalloc.h>
#include <linux/xarray.h>
#include <asm/memtype.h>

#include "include/uapi/linux/vfio_pci_cookie.h"

/*
 * Built a second time as the module "vfio-pci" (vfio_pci_stand_in.c) for
 * clients that accept a VFIO device only under that driver name: DPDK's EAL
 * and dpdk-devbind, SPDK.  Opt-in, installed over the stock module by the
 * administrator (docs/uapi.md, "Standing in for vfio-pci").
 */
#ifdef VFIO_PCI_COOKIE_STAND_IN
#define COOKIE_DRIVER_NAME	"vfio-pci"
#define COOKIE_OPS_NAME		"vfio-pci"
#else
#define COOKIE_DRIVER_NAME	KBUILD_MODNAME
/* The core steers a bound PF's new VFs to the driver of this name. */
#define COOKIE_OPS_NAME		KBUILD_MODNAME
#endif

/*
 * vfio-pci's module parameters, so that a configuration written for it
 * (vfio-pci.ids= on the command line, options in modprobe.d) keeps working.
 * The three that vfio-pci hands to the core are the stand-in's only: before
 * 7.3 they are core-global, and vfio-pci sets them when it loads.
 */
static char ids[1024] __initdata;
module_param_string(ids, ids, sizeof(ids), 0);
MODULE_PARM_DESC(ids, "PCI IDs to bind at load, as for vfio-pci: vendor:device[:subvendor[:subdevice[:class[:class_mask]]]], comma separated");

static bool enable_sriov;
module_param(enable_sriov, bool, 0644);
MODULE_PARM_DESC(enable_sriov, "Allow creating VFs of a bound PF (as vfio-pci; off by default)");

static bool disable_denylist;
module_param(disable_denylist, bool, 0444);
MODULE_PARM_DESC(disable_denylist, "Bind devices vfio-pci refuses for errata (as vfio-pci)");

#ifdef VFIO_PCI_COOKIE_STAND_IN
static bool nointxmask;
module_param(nointxmask, bool, 0644);
MODULE_PARM_DESC(nointxmask, "Disable PCI 2.3 INTx masking (as vfio-pci)");

#ifdef CONFIG_VFIO_PCI_VGA
static bool disable_vga;
module_param(disable_vga, bool, 0444);
MODULE_PARM_DESC(disable_vga, "Disable VGA resource access (as vfio-pci)");
#elif CORE_HAS_SET_PARAMS
/* As vfio-pci: no such parameter without VGA support, and VGA stays off. */
static const bool disable_vga = true;
#endif

static bool disable_idle_d3;
module_param(disable_idle_d3, bool, 0644);
MODULE_PARM_DESC(disable_idle_d3, "Keep idle devices out of D3 (as vfio-pci)");
#endif

/*
 * Kernel differences, all in one place: Kbuild defines CORE_HAS_* from the
 * core's headers.  6.1 revokes through a private vma_list; from 6.10 the core
 * zaps the device inode's address space.
 */
#define CORE_REVOKES_BY_ADDRESS_SPACE	(!CORE_HAS_VMA_LIST)
#if !HAVE_VM_FLAGS_SET
#define vm_flags_set(vma, flags)	((vma)->vm_flags |= (flags))
#endif

/*
 * A cookie value (docs/uapi.md, "Cookie values"), an mmap offset of 63 bits:
 *   bit 62              set: above every region's offset (index << 40)
 *   bits 61..PAGE+32    the device open's number, from a driver-wide counter
 *   bits PAGE+31..PAGE  the cookie's serial in that open, scrambled
 *   bits PAGE-1..0      zero
 * Serials are allocated cyclically, so none comes back within 2^32 creates
 * of one open.  Scrambling (an odd multiplier, then a per-open random key:
 * a bijection of 32 bits) puts consecutive serials far apart, so a value
 * off by a page or two names no live cookie but by a 4096-in-2^32 chance.
 */
#define COOKIE_SPACE		BIT_ULL(62)
#define COOKIE_SERIAL_SHIFT	PAGE_SHIFT
#define COOKIE_OPEN_SHIFT	(COOKIE_SERIAL_SHIFT + 32)
#define COOKIE_OPEN_MASK	GENMASK_ULL(61 - COOKIE_OPEN_SHIFT, 0)
#define COOKIE_SCRAMBLE		0x9e3779b1U	/* odd */
#define COOKIE_UNSCRAMBLE	0x0e8b2f51U	/* its inverse modulo 2^32 */
static atomic64_t cookie_opens;
/* Live cookies per device open, destroyed-but-mapped ones included. */
#define COOKIE_MAX		VFIO_MMAP_COOKIE_MAX

/*
 * Locks, outermost first:
 *   barmap_sem -> mmap_lock (mmap, fault, vma close; a user copy) ->
 *   cookie_dev.lock -> core.memory_lock
 * barmap_sem is held for reading across the core's read, write and
 * IOEVENTFD, the users of the core's BAR map, and for writing while a BAR
 * is taken from the core's map (bar_take()) or given a whole-BAR map for
 * ioeventfds (barmaps_build()).  No other lock of this driver is held
 * across a user copy or a call into the core's ioctl, read, write or mmap.
 * A taken BAR's covers (their pieces) and WC segments, and the trees that
 * hold them, change only under memory_lock (write): read and write of a
 * taken BAR use them under memory_lock (read), as faults do.
 */
struct cookie_dev {
	struct vfio_pci_core_device core;	/* first: vfio_alloc_device() */
	struct rw_semaphore barmap_sem;		/* the core's users of barmap[] (above) */
	struct mutex lock;			/* the fields below */
	/* Under lock: */
	struct xarray cookies;			/* id -> struct cookie, until destroyed */
	unsigned int nr_cookies;		/* allocated struct cookies */
	struct rb_root_cached segs[PCI_STD_NUM_BARS];	/* struct seg by page range */
	unsigned int wc_segs[PCI_STD_NUM_BARS];		/* WC segments per BAR */
	unsigned int legacy_vmas[PCI_STD_NUM_BARS];	/* 6.1 only: legacy BAR vmas */
	struct rb_root_cached uc_cover[PCI_STD_NUM_BARS];	/* struct uc_cover by pages */
	u32 next_serial;			/* xa_alloc_cyclic()'s cursor */
	/* Set at open; constant until the next open: */
	u64 open_number;			/* masked: COOKIE_OPEN_MASK */
	u32 serial_key;
	/* Set under barmap_sem (write), lock and memory_lock; cleared at close: */
	bool taken[PCI_STD_NUM_BARS];		/* the BAR's pages are recorded by us */
	/* Set under barmap_sem (write), cleared at close: */
	void __iomem *barmap[PCI_STD_NUM_BARS];	/* a taken BAR's, for the core's ioeventfds */
	/* Set at open; constant until close: */
	struct vfio_mmap_range wc_refused[PCI_STD_NUM_BARS][2];	/* MSI-X table, PBA */
	unsigned int msix_bar;			/* PCI_STD_NUM_BARS: none */
	u64 msix_start, msix_end;		/* the table, as the core's read skips it */
};

/*
 * The uncached ioremap()s that hold the record of a run of pages, split at
 * the first and the last 2 MiB boundary inside it.
 * ioremap() aligns the virtual address only, so a run that starts off a
 * boundary would be mapped with 4 KiB pages throughout (2 MiB of page
 * tables per GiB); split, only the head and the tail are, and the middle
 * gets 2 MiB or 1 GiB pages.  They are also how the kernel reads and
 * writes a taken BAR's uncached pages (taken_rw()).
 */
struct pieces {
	void __iomem *map[3];
};

/*
 * A range of one BAR with one memory type: one PAT reservation if WC, with
 * no kernel mapping (so overlapping WC segments cost no virtual space; the
 * kernel reaches their pages one page at a time, taken_access()).
 */
struct seg {
	struct interval_tree_node it;		/* page numbers within the BAR */
	unsigned int index;
	u32 attr;
	u32 memtype;				/* WC: as granted; UC: cover_memtype() */
	unsigned int users;			/* cookies, under cookie_dev.lock */
};

/*
 * An uncached PAT reservation of BAR pages no WC segment holds: PAT then
 * records the whole BAR, as the core's own mapping would, and answers any
 * later mapping of those pages from anyone with uncached-minus.
 *
 * Pages that already carry another type in PAT's record (a root mmap of
 * sysfs resourceN_wc made before the device's region was claimed) would
 * hand that type to an uncached reservation over them, and so to every
 * fault.  Such pages get a cover without a reservation, marked with the
 * type found: no UC cookie is made over them, and QUERY says what they are.
 */
struct uc_cover {
	struct interval_tree_node it;	/* a run of pages without WC segments */
	struct pieces pieces;	/* none if foreign */
	u32 memtype;			/* read back from PAT: enum vfio_memtype */
};

struct cookie {
	struct kref ref;			/* the table (until destroyed) + one per vma */
	struct cookie_dev *cdev;
	struct seg *seg;
	u64 offset;				/* in the region, page aligned */
	u64 length;				/* whole pages */
	u32 id;					/* the serial: key in cookie_dev.cookies */
	bool destroyed;				/* under cdev->lock */
	atomic_t vmas;
};

static struct cookie_dev *to_cdev(struct vfio_device *vdev)
{
	return container_of(vdev, struct cookie_dev, core.vdev);
}

static bool cookie_bar(struct cookie_dev *cdev, unsigned int index)
{
	struct pci_dev *pdev = cdev->core.pdev;

	return index < PCI_STD_NUM_BARS && pci_resource_len(pdev, index) &&
	       (pci_resource_flags(pdev, index) & IORESOURCE_MEM) &&
	       cdev->core.bar_mmap_supported[index];
}

/* A BAR whose region the core could not claim or map takes no cookie. */
static bool cookies_allowed(struct cookie_dev *cdev, unsigned int index)
{
	/* Neither TAKEN_BARMAP nor an ioeventfd map is an error: only 7.3's open sets one. */
	return cookie_bar(cdev, index) && !IS_ERR(READ_ONCE(cdev->core.barmap[index]));
}

#if CORE_HAS_MEMORY_ENABLED
#define core_memory_enabled	__vfio_pci_memory_enabled
#else
/* The core's memory-enable test, not exported here (vconfig caches the command register). */
static bool core_memory_enabled(struct vfio_pci_core_device *core)
{
	u16 cmd = le16_to_cpu(*(__le16 *)&core->vconfig[PCI_COMMAND]);

	lockdep_assert_held(&core->memory_lock);
	return core->pdev->current_state < PCI_D3hot &&
	       (core->pdev->no_command_memory || (cmd & PCI_COMMAND_MEMORY));
}
#endif

/* ---- the core's BAR map ------------------------------------------------ */

/*
 * A whole-BAR kernel mapping PAT does not track: vmap_pfn() for pages
 * without a struct page, vmap() for pages with one (a PCI hole that shares
 * a memory section with reserved firmware ranges has them).  NULL if the
 * BAR mixes both.
 */
static void *map_untracked(unsigned long pfn, unsigned long n)
{
	pgprot_t prot = pgprot_noncached(PAGE_KERNEL_IO);
	bool with_pages = pfn_valid(pfn);
	unsigned long *pfns, i;
	struct page **pages;
	void *map = NULL;

	/* The caller's: a take is a user's request (a huge BAR just fails). */
	pfns = kvmalloc_array(n, sizeof(*pfns), GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	if (!pfns)
		return NULL;
	pages = (struct page **)pfns;	/* same size: one array serves either call */
	for (i = 0; i < n; i++) {
		if (pfn_valid(pfn + i) != with_pages)
			goto out;
		if (with_pages)
			pages[i] = pfn_to_page(pfn + i);
		else
			pfns[i] = pfn + i;
	}
	map = with_pages ? vmap(pages, n, VM_MAP, pgprot_nx(prot)) : vmap_pfn(pfns, n, prot);
out:
	kvfree(pfns);
	return map;
}

/* A taken BAR, after the core's close: nothing uses its map (if any) any more. */
static void barmap_remove(struct cookie_dev *cdev, unsigned int index, void __iomem *map)
{
	if (map)
		vunmap((void __force *)map);
	pci_release_selected_regions(cdev->core.pdev, BIT(index));
}

static void set_range(struct vfio_mmap_range *r, u64 offset, u64 length)
{
	r->offset = round_down(offset, PAGE_SIZE);
	r->length = round_up(offset + length, PAGE_SIZE) - r->offset;
}

/* Pages the kernel maps itself (MSI-X table, PBA): refused for WC. */
static void find_refused(struct cookie_dev *cdev)
{
	struct pci_dev *pdev = cdev->core.pdev;
	u32 table, pba, bir;
	u16 flags;
	u64 n;

	memset(cdev->wc_refused, 0, sizeof(cdev->wc_refused));
	cdev->msix_bar = PCI_STD_NUM_BARS;
	if (!pdev->msix_cap)
		return;
	pci_read_config_word(pdev, pdev->msix_cap + PCI_MSIX_FLAGS, &flags);
	pci_read_config_dword(pdev, pdev->msix_cap + PCI_MSIX_TABLE, &table);
	pci_read_config_dword(pdev, pdev->msix_cap + PCI_MSIX_PBA, &pba);
	n = (flags & PCI_MSIX_FLAGS_QSIZE) + 1;
	bir = table & PCI_MSIX_TABLE_BIR;
	if (bir < PCI_STD_NUM_BARS) {
		cdev->msix_bar = bir;
		cdev->msix_start = table & PCI_MSIX_TABLE_OFFSET;
		cdev->msix_end = cdev->msix_start + n * PCI_MSIX_ENTRY_SIZE;
		set_range(&cdev->wc_refused[bir][0], cdev->msix_start, n * PCI_MSIX_ENTRY_SIZE);
	}
	bir = pba & PCI_MSIX_PBA_BIR;
	if (bir < PCI_STD_NUM_BARS)
		set_range(&cdev->wc_refused[bir][1], pba & PCI_MSIX_PBA_OFFSET,
			  DIV_ROUND_UP(n, 64) * 8);
}

static bool wc_refused(struct cookie_dev *cdev, unsigned int index, u64 offset, u64 length)
{
	struct vfio_mmap_range *r = cdev->wc_refused[index];
	unsigned int i;

	for (i = 0; i < 2; i++)
		if (r[i].length && offset < r[i].offset + r[i].length &&
		    offset + length > r[i].offset)
			return true;
	return false;
}

static vm_fault_t cookie_populate(struct vm_fault *vmf, struct cookie *c);
static void cookie_vma_gone(struct vm_area_struct *vma, struct cookie *c);
static bool legacy_conflict(struct cookie_dev *cdev, unsigned int index);
static int legacy_mmap(struct cookie_dev *cdev, struct vm_area_struct *vma);

/* ---- segments: PAT reservations, shared per (BAR, range, type) ---------- */

/* The cache mode of the kernel page-table entry that maps @addr. */
static u32 mapped_memtype(const void __iomem *addr)
{
	/* First match wins: modes the PAT MSR lacks share another's bits. */
	static const struct { enum page_cache_mode pcm; u32 type; } modes[] = {
		{ _PAGE_CACHE_MODE_UC_MINUS, VFIO_MEMTYPE_UC_MINUS },
		{ _PAGE_CACHE_MODE_WC, VFIO_MEMTYPE_WC },
		{ _PAGE_CACHE_MODE_UC, VFIO_MEMTYPE_UC },
		{ _PAGE_CACHE_MODE_WB, VFIO_MEMTYPE_WB },
		{ _PAGE_CACHE_MODE_WT, VFIO_MEMTYPE_WT },
		{ _PAGE_CACHE_MODE_WP, VFIO_MEMTYPE_WP },
	};
	u32 type = VFIO_MEMTYPE_UNKNOWN;
	unsigned int level, i;
	unsigned long bits;
	pte_t *pte;

	pte = lookup_address((unsigned long)addr, &level);
	if (pte) {
		pgprot_t prot = pte_pgprot(*pte);

		if (level != PG_LEVEL_4K)
			prot = pgprot_large_2_4k(prot);
		bits = pgprot_val(prot) & _PAGE_CACHE_MASK;
		for (i = 0; i < ARRAY_SIZE(modes); i++) {
			if (bits == cachemode2protval(modes[i].pcm)) {
				type = modes[i].type;
				break;
			}
		}
	}
	return type;
}

/* The type PAT really gives pages of @phys: read back from a one-page mapping. */
static u32 pat_granted(phys_addr_t phys)
{
	void __iomem *probe = ioremap_wc(phys, PAGE_SIZE);
	u32 type;

	if (!probe)
		return VFIO_MEMTYPE_UNKNOWN;
	type = mapped_memtype(probe);
	iounmap(probe);
	return type;
}

static void zap_user_mappings(struct cookie_dev *cdev, unsigned int index,
			      unsigned long first, unsigned long last)
{
	lockdep_assert_held_write(&cdev->core.memory_lock);
#if CORE_REVOKES_BY_ADDRESS_SPACE
	/*
	 * A legacy vma may map a 1G block whole, and 6.12 warns when a zap
	 * splits one without the mm's mmap_lock: zap whole 1G blocks of a BAR
	 * that has them (a BAR is aligned to its size, so its pages' alignment
	 * is its pfns').  2M blocks are cleared whole by any partial zap.
	 */
	if (pci_resource_len(cdev->core.pdev, index) >= PUD_SIZE) {
		unsigned long pud_pages = PUD_SIZE >> PAGE_SHIFT;
		unsigned long bar_pages = pci_resource_len(cdev->core.pdev, index) >> PAGE_SHIFT;

		first = round_down(first, pud_pages);
		last = min(round_up(last + 1, pud_pages), bar_pages) - 1;
	}
	/* Legacy and cookie vmas of these pages refault with the new type. */
	unmap_mapping_range(cdev->core.vdev.inode->i_mapping,
			    VFIO_PCI_INDEX_TO_OFFSET(index) + (first << PAGE_SHIFT),
			    (last - first + 1) << PAGE_SHIFT, true);
#endif
	/*
	 * 6.1: a faulted legacy vma holds its own PAT record, so PAT refused
	 * the WC reservation (-EBUSY) before we got here; nothing to zap.
	 */
}

/*
 * Zap user mappings of the pages of @seg that no other WC segment covers:
 * their type changes when @seg comes or goes.
 */
static void zap_sole_wc_runs(struct cookie_dev *cdev, struct seg *seg)
{
	unsigned long next = seg->it.start, last = seg->it.last;
	struct interval_tree_node *it;

	lockdep_assert_held_write(&cdev->core.memory_lock);
	for (it = interval_tree_iter_first(&cdev->segs[seg->index], next, last); it;
	     it = interval_tree_iter_next(it, next, last)) {
		struct seg *other = container_of(it, struct seg, it);

		if (other == seg || other->attr != VFIO_MMAP_ATTR_WC)
			continue;
		if (it->start > next)
			zap_user_mappings(cdev, seg->index, next, it->start - 1);
		if (it->last >= last)
			return;
		next = max(next, it->last + 1);
	}
	zap_user_mappings(cdev, seg->index, next, last);
}

/* Pages with another type than ours: the cover holds no reservation. */
static bool cover_foreign(const struct uc_cover *c)
{
	return !c->pieces.map[0] && !c->pieces.map[1] && !c->pieces.map[2];
}

static void pieces_unmap(struct pieces *p)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(p->map); i++) {
		if (p->map[i])
			iounmap(p->map[i]);
		p->map[i] = NULL;
	}
}

/* Pages [first, last] as a cover: foreign (with @memtype) if @p is NULL. */
static void cover_insert(struct cookie_dev *cdev, unsigned int index, unsigned long first,
			 unsigned long last, struct pieces *p, u32 memtype)
{
	struct uc_cover *c = kzalloc(sizeof(*c), GFP_KERNEL_ACCOUNT);

	if (!c) {
		if (p)
			pieces_unmap(p);
		return;
	}
	c->it.start = first;
	c->it.last = last;
	if (p)
		c->pieces = *p;
	c->memtype = memtype;
	interval_tree_insert(&c->it, &cdev->uc_cover[index]);
}

/* The BAR's first page frame: pieces are cut at boundaries of physical pages. */
static unsigned long bar_pfn(struct cookie_dev *cdev, unsigned int index)
{
	return pci_resource_start(cdev->core.pdev, index) >> PAGE_SHIFT;
}

/* Where BAR pages [first, last] are cut into pieces: map[i] holds [cuts[i], cuts[i + 1]). */
static void pieces_cuts(struct cookie_dev *cdev, unsigned int index, unsigned long first,
			unsigned long last, unsigned long cuts[4])
{
	const unsigned long pmd_pages = PMD_SIZE >> PAGE_SHIFT;
	unsigned long pfn = bar_pfn(cdev, index) + first, end = pfn + (last - first + 1);
	unsigned long head = round_up(pfn, pmd_pages), tail = round_down(end, pmd_pages);

	cuts[0] = pfn;
	cuts[1] = end;
	cuts[2] = end;
	cuts[3] = end;
	if (head < tail) {	/* a whole 2 MiB block inside: cut around it */
		cuts[1] = head;
		cuts[2] = tail;
	}
}

/*
 * An uncached reservation of pages [first, last] in *p, if PAT grants
 * uncached there: false if a page already carries another type (*memtype
 * says which; VFIO_MEMTYPE_UNKNOWN if PAT refused, having found several).
 */
static bool cover_try(struct cookie_dev *cdev, unsigned int index, unsigned long first,
		      unsigned long last, u32 *memtype, struct pieces *p)
{
	unsigned long cuts[4];
	unsigned int i;

	pieces_cuts(cdev, index, first, last, cuts);
	memset(p, 0, sizeof(*p));
	*memtype = VFIO_MEMTYPE_UC_MINUS;
	for (i = 0; i < ARRAY_SIZE(p->map) && *memtype == VFIO_MEMTYPE_UC_MINUS; i++) {
		phys_addr_t phys = PFN_PHYS(cuts[i]), size = PFN_PHYS(cuts[i + 1] - cuts[i]);

		if (!size)
			continue;
		p->map[i] = ioremap(phys, size);
		*memtype = p->map[i] ? mapped_memtype(p->map[i]) : VFIO_MEMTYPE_UNKNOWN;
	}
	if (*memtype == VFIO_MEMTYPE_UC_MINUS)
		return true;
	pieces_unmap(p);
	return false;
}

/* Page @page of pieces mapping pages [first, last], or NULL if they have none. */
static void __iomem *pieces_page(struct cookie_dev *cdev, unsigned int index,
				 const struct interval_tree_node *it, const struct pieces *p,
				 unsigned long page)
{
	unsigned long cuts[4], pfn = bar_pfn(cdev, index) + page;
	unsigned int i;

	pieces_cuts(cdev, index, it->start, it->last, cuts);
	for (i = 0; i < ARRAY_SIZE(p->map); i++)
		if (pfn < cuts[i + 1])
			return p->map[i] ? p->map[i] + PFN_PHYS(pfn - cuts[i]) : NULL;
	return NULL;
}

/* Whether PAT would give pages [first, last] uncached now. */
static bool cover_clean(struct cookie_dev *cdev, unsigned int index, unsigned long first,
			unsigned long last, u32 *memtype)
{
	struct pieces probe;

	if (!cover_try(cdev, index, first, last, memtype, &probe))
		return false;
	pieces_unmap(&probe);
	return true;
}

/*
 * Probes of one run before the rest of it is marked foreign as a whole: a
 * foreign record over a whole large BAR must not cost a probe per page.
 */
#define COVER_PROBES		64

/*
 * Mark pages [next, last] foreign with @memtype, without probing them,
 * except the pages of UC segments: each union of those is probed on its
 * own, so that a UC cookie keeps its uncached record where PAT gives it.
 */
static void cover_lump(struct cookie_dev *cdev, unsigned int index, unsigned long next,
		       unsigned long last, u32 memtype)
{
	const unsigned long from = next;
	struct interval_tree_node *it = interval_tree_iter_first(&cdev->segs[index], from, last);

	while (next <= last) {
		unsigned long start = last + 1, end = last;
		struct pieces pieces;
		u32 found;

		while (it && it->last < next)
			it = interval_tree_iter_next(it, from, last);
		if (it) {	/* the next union of UC segments */
			start = max(it->start, next);
			end = min(it->last, last);
			it = interval_tree_iter_next(it, from, last);
			while (it && it->start <= end + 1) {
				end = max(end, min(it->last, last));
				it = interval_tree_iter_next(it, from, last);
			}
		}
		if (start > next)
			cover_insert(cdev, index, next, start - 1, NULL, memtype);
		if (start > last)
			return;
		cover_insert(cdev, index, start, end,
			     cover_try(cdev, index, start, end, &found, &pieces) ? &pieces : NULL,
			     found);
		next = end + 1;
	}
}

/*
 * Cover pages [first, last] (no WC segment among them) with uncached
 * reservations where PAT gives uncached, and mark the other pages foreign:
 * the longest uncached prefix, found by bisection, then the next page, and
 * so on.  A probe that meets records of one other type never meets a
 * mixture in a smaller range, so only the first probe of a run can make
 * PAT log a conflict.  Returns whether any probe met another type: user
 * mappings of the run may then have it, and the caller zaps them.
 */
static bool cover_run(struct cookie_dev *cdev, unsigned int index, unsigned long first,
		      unsigned long last)
{
	unsigned long next = first, clean, mixed, mid;
	unsigned int probes = 0;
	struct pieces pieces;
	bool foreign = false;
	u32 memtype, found;

	while (next <= last) {
		probes++;
		if (cover_try(cdev, index, next, last, &memtype, &pieces)) {
			cover_insert(cdev, index, next, last, &pieces, memtype);
			break;
		}
		foreign = true;
		if (memtype == VFIO_MEMTYPE_UNKNOWN || probes >= COVER_PROBES) {
			/* A mixture (PAT logged it), or the budget spent. */
			cover_lump(cdev, index, next, last, memtype);
			break;
		}
		probes++;
		if (!cover_try(cdev, index, next, next, &found, &pieces)) {
			cover_insert(cdev, index, next, next, NULL, found);
			next++;
			continue;
		}
		/* Held while probing, ours would make a mixture: probe, then re-reserve. */
		pieces_unmap(&pieces);
		clean = 1;
		mixed = last - next + 1;
		while (mixed - clean > 1) {
			mid = clean + (mixed - clean) / 2;
			probes++;
			if (cover_clean(cdev, index, next, next + mid - 1, &found))
				clean = mid;
			else
				mixed = mid;
		}
		probes++;
		/* A record came meanwhile: probe again from here. */
		if (!cover_try(cdev, index, next, next + clean - 1, &found, &pieces))
			continue;
		cover_insert(cdev, index, next, next + clean - 1, &pieces, found);
		next += clean;
	}
	return foreign;
}

/*
 * Drop the cover runs that overlap pages [first, last], or touch them in
 * the same 1 GiB block (runs never cross one); *lo and *hi get the span
 * they covered together with [first, last], which cover_fill() then covers
 * again.  Only runs near a change are touched, so the cost grows neither
 * with the number of cookies nor with the BAR.  Returns whether any of them
 * was foreign (its pages' type may change when covered again).
 */
static bool cover_cut(struct cookie_dev *cdev, unsigned int index, unsigned long first,
		      unsigned long last, unsigned long *lo, unsigned long *hi)
{
	const unsigned long pud_pages = PUD_SIZE >> PAGE_SHIFT;
	unsigned long pfn = bar_pfn(cdev, index);
	unsigned long from = first, to = last;
	struct interval_tree_node *it, *next;
	bool foreign = false;

	if (first && (pfn + first) % pud_pages)
		from--;
	if ((pfn + last + 1) % pud_pages)
		to++;
	*lo = first;
	*hi = last;
	for (it = interval_tree_iter_first(&cdev->uc_cover[index], from, to); it; it = next) {
		struct uc_cover *c = container_of(it, struct uc_cover, it);

		next = interval_tree_iter_next(it, from, to);
		*lo = min(*lo, it->start);
		*hi = max(*hi, it->last);
		interval_tree_remove(it, &cdev->uc_cover[index]);
		foreign |= cover_foreign(c);
		pieces_unmap(&c->pieces);
		kfree(c);
	}
	return foreign;
}

/*
 * Cover pages [first, last] in runs that do not cross a 1 GiB boundary, so
 * that a change re-reserves only the blocks next to it (cover_cut()), at a
 * cost that does not grow with the BAR.
 */
static bool cover_blocks(struct cookie_dev *cdev, unsigned int index, unsigned long first,
			 unsigned long last)
{
	const unsigned long pud_pages = PUD_SIZE >> PAGE_SHIFT;
	unsigned long pfn = bar_pfn(cdev, index);
	bool foreign = false;

	while (first <= last) {
		unsigned long end = round_down(pfn + first, pud_pages) + pud_pages - pfn - 1;

		end = min(end, last);
		foreign |= cover_run(cdev, index, first, end);
		first = end + 1;
	}
	return foreign;
}

/*
 * Cover the pages of [lo, hi] that no WC segment holds.  Best effort: a
 * page left without a record is still mapped uncached-minus, PAT's
 * default.  Returns whether any page was found with another type.
 */
static bool cover_fill(struct cookie_dev *cdev, unsigned int index, unsigned long lo,
		       unsigned long hi)
{
	struct interval_tree_node *it;
	unsigned long next = lo;
	bool foreign = false;

	lockdep_assert_held(&cdev->lock);
	if (!pat_enabled() || !cdev->taken[index] || lo > hi)
		return false;
	for (it = interval_tree_iter_first(&cdev->segs[index], lo, hi); it;
	     it = interval_tree_iter_next(it, lo, hi)) {
		if (container_of(it, struct seg, it)->attr != VFIO_MMAP_ATTR_WC)
			continue;
		if (it->start > next)
			foreign |= cover_blocks(cdev, index, next, it->start - 1);
		next = max(next, it->last + 1);
	}
	if (next <= hi)
		foreign |= cover_blocks(cdev, index, next, hi);
	return foreign;
}

/*
 * The type PAT's record gives pages [first, last], none of them WC
 * segment pages: uncached-minus when covered throughout by our own
 * reservations, else the other type found (unknown for a page without a
 * cover).
 */
static u32 cover_memtype(struct cookie_dev *cdev, unsigned int index, unsigned long first,
			 unsigned long last)
{
	struct interval_tree_node *it;
	unsigned long next = first;

	lockdep_assert_held(&cdev->lock);
	for (it = interval_tree_iter_first(&cdev->uc_cover[index], first, last); it;
	     it = interval_tree_iter_next(it, first, last)) {
		struct uc_cover *c = container_of(it, struct uc_cover, it);

		if (it->start > next)
			return VFIO_MEMTYPE_UNKNOWN;
		if (c->memtype != VFIO_MEMTYPE_UC_MINUS)
			return c->memtype;
		next = it->last + 1;
	}
	return next > last ? VFIO_MEMTYPE_UC_MINUS : VFIO_MEMTYPE_UNKNOWN;
}

static unsigned long bar_last_page(struct cookie_dev *cdev, unsigned int index)
{
	return (PAGE_ALIGN(pci_resource_len(cdev->core.pdev, index)) >> PAGE_SHIFT) - 1;
}

/*
 * Whether pages [first, last] may be mapped uncached: PAT's record of them
 * is our own uncached cover.  Their foreign pages are asked about again
 * (the mapping that made the record may be gone); only when all are clean
 * is anything changed, under memory_lock as faults read the record.
 */
static int cover_check_uc(struct cookie_dev *cdev, unsigned int index, unsigned long first,
			  unsigned long last)
{
	struct interval_tree_node *it;
	unsigned long lo, hi, next = first;
	bool changed;
	u32 memtype;

	lockdep_assert_held(&cdev->lock);
	/* The core's map is checked before a BAR is left to it (bar_prepare()). */
	if (!pat_enabled() || !cdev->taken[index] ||
	    cover_memtype(cdev, index, first, last) == VFIO_MEMTYPE_UC_MINUS)
		return 0;
	/*
	 * Probe the pages between our reservations (foreign covers, gaps):
	 * only outside records are there, so a probe that fails logs nothing
	 * unless they are of several types.  A probe is itself a record, of
	 * the type it found, over all of its pages: no fault may run meanwhile.
	 */
	down_write(&cdev->core.memory_lock);
	for (it = interval_tree_iter_first(&cdev->uc_cover[index], first, last); it;
	     it = interval_tree_iter_next(it, first, last)) {
		if (cover_foreign(container_of(it, struct uc_cover, it)))
			continue;
		if (it->start > next && !cover_clean(cdev, index, next, it->start - 1, &memtype)) {
			up_write(&cdev->core.memory_lock);
			goto refused;
		}
		next = max(next, it->last + 1);
	}
	if (next <= last && !cover_clean(cdev, index, next, last, &memtype)) {
		up_write(&cdev->core.memory_lock);
		goto refused;
	}
	changed = cover_cut(cdev, index, first, last, &lo, &hi);
	if (lo < first)
		changed |= cover_fill(cdev, index, lo, first - 1);
	changed |= cover_fill(cdev, index, first, last);
	if (last < hi)
		changed |= cover_fill(cdev, index, last + 1, hi);
	if (changed)
		zap_user_mappings(cdev, index, lo, hi);
	up_write(&cdev->core.memory_lock);
	memtype = cover_memtype(cdev, index, first, last);
	if (memtype == VFIO_MEMTYPE_UC_MINUS)
		return 0;
refused:
	/* A refusal leaves the log alone unless asked (dynamic debug). */
	pci_dbg(cdev->core.pdev,
		"BAR %u pages %#lx-%#lx: PAT has vfio_memtype %u from outside; no UC cookie\n",
		index, first, last, memtype);
	return -EBUSY;
}

/* ---- the core's BAR map, and taking a BAR from it ----------------------- */

/*
 * The core's own map of BAR @index, made as the core makes it on first use:
 * it is also the claim on the BAR's region ("vfio"), which cookies need.
 * 7.3 maps every BAR at open; 6.12 exports its lazy setup; 6.1 keeps it
 * static, so it is done here the same way (region, then pci_iomap()).
 */
static int core_barmap_setup(struct cookie_dev *cdev, unsigned int index)
{
	struct vfio_pci_core_device *core = &cdev->core;
#if CORE_HAS_SETUP_BARMAP
	return vfio_pci_core_setup_barmap(core, index);
#else
	struct pci_dev *pdev = core->pdev;
	void __iomem *io;

	if (READ_ONCE(core->barmap[index]))
		return 0;
	if (pci_request_selected_regions(pdev, BIT(index), "vfio"))
		return -EBUSY;
	io = pci_iomap(pdev, index, 0);
	if (!io) {
		pci_release_selected_regions(pdev, BIT(index));
		return -ENOMEM;
	}
	WRITE_ONCE(core->barmap[index], io);
	return 0;
#endif
}

/*
 * The type of BAR @index's pages while the core's map holds them: one
 * ioremap() of the whole BAR, so one PAT record and one type for every
 * page (a record made outside before it can give it another than UC-).
 * barmap_sem or cookie_dev.lock held: the map is not taken meanwhile.
 */
static u32 core_map_memtype(struct cookie_dev *cdev, unsigned int index)
{
	void __iomem *map = READ_ONCE(cdev->core.barmap[index]);

	return IS_ERR_OR_NULL(map) ? VFIO_MEMTYPE_UNKNOWN : mapped_memtype(map);
}

/*
 * What the core's barmap[] holds for a taken BAR until an ioeventfd needs
 * a real map: neither NULL nor an error, which its mmap (and 7.3's dma-buf
 * export) require, and a non-canonical address, so that a use of it this
 * driver failed to route elsewhere faults instead of reaching memory.
 */
#define TAKEN_BARMAP	((void __iomem __force *)(POISON_POINTER_DELTA + 0xba40000))

/*
 * Take BAR @index from the core's map, whose uncached-minus record over
 * the whole BAR would make every WC reservation uncached: the core's map
 * goes, and our WC reservations and uncached covers record the BAR's pages
 * instead; the covers' pieces also serve the BAR's read and write
 * (taken_rw()).  Done once
 * per open, for the BAR's first WC cookie, or the first UC one where the
 * core's map is not uncached-minus.  Every user of the old map is excluded
 * meanwhile: read, write and IOEVENTFD by barmap_sem, faults by
 * memory_lock.  The core is left TAKEN_BARMAP, which its mmap and dma-buf
 * export only check, and which no path of it that maps through it
 * reaches: read and write of a taken BAR are ours, IOEVENTFD gets a real
 * map first (barmaps_build()).  A BAR with ioeventfds is refused: each
 * holds an address in the old map.
 */
/* 0 if BAR @index may be taken now, 1 if it is ours already, else why not. */
static int bar_takeable(struct cookie_dev *cdev, unsigned int index)
{
	struct vfio_pci_core_device *core = &cdev->core;

	lockdep_assert_held(&cdev->barmap_sem);
	if (cdev->taken[index])
		return 1;
	/* Stable here: ioeventfds come and go only under barmap_sem. */
	if (core->ioeventfds_nr || IS_ERR_OR_NULL(core->barmap[index]))
		return -EBUSY;
	return 0;
}

static int bar_take(struct cookie_dev *cdev, unsigned int index)
{
	struct vfio_pci_core_device *core = &cdev->core;
	unsigned long last = bar_last_page(cdev, index);
	bool zap;
	int ret;

	BUILD_BUG_ON(!POISON_POINTER_DELTA);	/* TAKEN_BARMAP must not be a user address */
	if (down_write_killable(&cdev->barmap_sem))
		return -EINTR;
	mutex_lock(&cdev->lock);
	ret = bar_takeable(cdev, index);
	if (ret)
		goto unlock;
	down_write(&core->memory_lock);
	/* User PTEs have the core map's type; a foreign one must refault. */
	zap = core_map_memtype(cdev, index) != VFIO_MEMTYPE_UC_MINUS;
	/* Its record goes; the region stays claimed. */
	pci_iounmap(core->pdev, core->barmap[index]);
	core->barmap[index] = TAKEN_BARMAP;
	cdev->taken[index] = true;
	if (cover_fill(cdev, index, 0, last) || zap)
		zap_user_mappings(cdev, index, 0, last);
	up_write(&core->memory_lock);
unlock:
	mutex_unlock(&cdev->lock);
	up_write(&cdev->barmap_sem);
	return ret < 0 ? ret : 0;
}

/*
 * The core's IOEVENTFD writes through its map of the BAR, at an offset it
 * reads from the caller again after any check of ours: every taken BAR
 * gets a whole map first.  Only a device that has both ioeventfds and a
 * taken BAR pays for this map (4 KiB pages over the whole BAR, kept until
 * close).
 */
static int barmaps_build(struct cookie_dev *cdev)
{
	unsigned int i;

	lockdep_assert_held_write(&cdev->barmap_sem);
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		void *map;

		if (!cdev->taken[i] || cdev->barmap[i])
			continue;
		map = map_untracked(bar_pfn(cdev, i), bar_last_page(cdev, i) + 1);
		if (!map)
			return -ENOMEM;
		cdev->barmap[i] = (void __force __iomem *)map;
		cdev->core.barmap[i] = cdev->barmap[i];
	}
	return 0;
}

/*
 * Before a cookie of @attr on BAR @index: the region claimed and mapped
 * as the core would, and the BAR taken from the core's map if the cookie
 * needs a type that map would not give.
 */
static int bar_prepare(struct cookie_dev *cdev, unsigned int index, u32 attr)
{
	bool take;
	int ret = 0;

	if (!READ_ONCE(cdev->core.barmap[index])) {
		/*
		 * The core's read and write set the map up the same way, under
		 * barmap_sem for reading: two claims of one region would fail
		 * one of them.  (6.1's and 6.12's mmap do too, with no lock a
		 * driver can take: as in the core, a claim racing one of those
		 * fails EBUSY, unless the other finished meanwhile.)
		 */
		if (down_write_killable(&cdev->barmap_sem))
			return -EINTR;
		ret = core_barmap_setup(cdev, index);
		if (ret && READ_ONCE(cdev->core.barmap[index]))
			ret = 0;
		up_write(&cdev->barmap_sem);
	}
	if (ret || !pat_enabled())
		return ret;
	if (down_read_killable(&cdev->barmap_sem))
		return -EINTR;
	take = !cdev->taken[index] &&
	       (attr == VFIO_MMAP_ATTR_WC ||
		core_map_memtype(cdev, index) != VFIO_MEMTYPE_UC_MINUS);
	up_read(&cdev->barmap_sem);
	return take ? bar_take(cdev, index) : 0;
}

/* A segment for the range, shared if one exists; cdev->lock held. */
static struct seg *seg_get(struct cookie_dev *cdev, unsigned int index, u64 offset,
			   u64 length, u32 attr)
{
	unsigned long first = offset >> PAGE_SHIFT, last = (offset + length - 1) >> PAGE_SHIFT;
	phys_addr_t phys = pci_resource_start(cdev->core.pdev, index) + offset;
	struct interval_tree_node *it;
	unsigned long lo, hi;
	struct seg *seg;
	bool changed;
	int ret;

	lockdep_assert_held(&cdev->lock);
	for (it = interval_tree_iter_first(&cdev->segs[index], first, last); it;
	     it = interval_tree_iter_next(it, first, last)) {
		seg = container_of(it, struct seg, it);
		/* Refused here, before PAT is asked: no log line, no scan. */
		if (seg->attr != attr)
			return ERR_PTR(-EBUSY);
	}
	if (attr == VFIO_MMAP_ATTR_UC) {
		ret = cover_check_uc(cdev, index, first, last);
		if (ret)
			return ERR_PTR(ret);
	}
	for (it = interval_tree_iter_first(&cdev->segs[index], first, last); it;
	     it = interval_tree_iter_next(it, first, last)) {
		seg = container_of(it, struct seg, it);
		if (it->start == first && it->last == last) {
			seg->users++;
			return seg;
		}
	}
	seg = kzalloc(sizeof(*seg), GFP_KERNEL_ACCOUNT);
	if (!seg)
		return ERR_PTR(-ENOMEM);
	seg->it.start = first;
	seg->it.last = last;
	seg->index = index;
	seg->attr = attr;
	seg->users = 1;
	seg->memtype = VFIO_MEMTYPE_UNKNOWN;	/* UC: read from the cover when asked */
	if (attr != VFIO_MMAP_ATTR_WC) {
		/* Read and write of a taken BAR walk the tree under memory_lock. */
		down_write(&cdev->core.memory_lock);
		interval_tree_insert(&seg->it, &cdev->segs[index]);
		up_write(&cdev->core.memory_lock);
		return seg;
	}
	if (legacy_conflict(cdev, index) || WARN_ON_ONCE(!cdev->taken[index])) {
		kfree(seg);
		return ERR_PTR(-EBUSY);
	}
	/* Faults read PAT's record: none may run while these pages lack ours. */
	down_write(&cdev->core.memory_lock);
	changed = cover_cut(cdev, index, first, last, &lo, &hi);
	/* PAT gives another type where one already holds a page. */
	if (arch_io_reserve_memtype_wc(phys, length))
		goto refused;
	if (pat_granted(phys) != VFIO_MEMTYPE_WC) {
		arch_io_free_memtype_wc(phys, length);	/* ours, coerced */
		goto refused;
	}
	seg->memtype = VFIO_MEMTYPE_WC;
	interval_tree_insert(&seg->it, &cdev->segs[index]);
	cdev->wc_segs[index]++;
	changed |= cover_fill(cdev, index, lo, hi);
	if (changed)	/* a neighbour's type came or went with a foreign record */
		zap_user_mappings(cdev, index, lo, hi);
	else
		zap_sole_wc_runs(cdev, seg);
	up_write(&cdev->core.memory_lock);
	return seg;

refused:	/* the cover is given back to the pages PAT would not make WC */
	if (cover_fill(cdev, index, lo, hi) || changed)
		zap_user_mappings(cdev, index, lo, hi);
	up_write(&cdev->core.memory_lock);
	kfree(seg);
	return ERR_PTR(-EBUSY);
}

static void seg_put(struct cookie_dev *cdev, struct seg *seg)
{
	unsigned int index = seg->index;
	unsigned long lo, hi;
	bool changed;

	lockdep_assert_held(&cdev->lock);
	if (--seg->users)
		return;
	/* No fault may map these pages WC once the reservation is gone. */
	down_write(&cdev->core.memory_lock);
	interval_tree_remove(&seg->it, &cdev->segs[index]);
	if (seg->attr == VFIO_MMAP_ATTR_WC) {
		zap_sole_wc_runs(cdev, seg);
		arch_io_free_memtype_wc(pci_resource_start(cdev->core.pdev, index) +
					PFN_PHYS(seg->it.start),
					PFN_PHYS(seg->it.last - seg->it.start + 1));
		changed = cover_cut(cdev, index, seg->it.start, seg->it.last, &lo, &hi);
		changed |= cover_fill(cdev, index, lo, hi);
		if (changed)	/* a foreign record came or went meanwhile */
			zap_user_mappings(cdev, index, lo, hi);
		cdev->wc_segs[index]--;
	}
	up_write(&cdev->core.memory_lock);
	kfree(seg);
}

/* ---- cookies ------------------------------------------------------------ */

static void cookie_release(struct kref *ref)
{
	struct cookie *c = container_of(ref, struct cookie, ref);
	struct cookie_dev *cdev = c->cdev;

	lockdep_assert_held(&cdev->lock);
	xa_erase(&cdev->cookies, c->id);
	seg_put(cdev, c->seg);
	cdev->nr_cookies--;
	kfree(c);
}

static void cookie_put(struct cookie *c)
{
	struct cookie_dev *cdev = c->cdev;

	mutex_lock(&cdev->lock);
	kref_put(&c->ref, cookie_release);
	mutex_unlock(&cdev->lock);
}

static u64 cookie_value(struct cookie_dev *cdev, u32 serial)
{
	u32 scrambled = (serial * COOKIE_SCRAMBLE) ^ cdev->serial_key;

	return COOKIE_SPACE | cdev->open_number << COOKIE_OPEN_SHIFT |
	       (u64)scrambled << COOKIE_SERIAL_SHIFT;
}

/* A live cookie from its mmap offset; lock held. */
static struct cookie *cookie_find(struct cookie_dev *cdev, u64 value)
{
	u32 serial = ((u32)(value >> COOKIE_SERIAL_SHIFT) ^ cdev->serial_key) * COOKIE_UNSCRAMBLE;
	struct cookie *c;

	lockdep_assert_held(&cdev->lock);
	if (value != cookie_value(cdev, serial))	/* another open, device or layout */
		return NULL;
	c = xa_load(&cdev->cookies, serial);
	return c && !c->destroyed ? c : NULL;
}

static void cookie_destroy_locked(struct cookie *c)
{
	/* Mapped vmas keep their refs; the value stays taken until they go. */
	c->destroyed = true;
	kref_put(&c->ref, cookie_release);
}

/* ---- cookie vmas --------------------------------------------------------- */

static struct cookie *vma_cookie(struct vm_area_struct *vma)
{
	return vma->vm_private_data;
}

static void cookie_vm_open(struct vm_area_struct *vma)
{
	struct cookie *c = vma_cookie(vma);

	/* fork: the child's vma is a mapping of the cookie too (6.10+). */
	kref_get(&c->ref);
	atomic_inc(&c->vmas);
}

static void cookie_vm_close(struct vm_area_struct *vma)
{
	struct cookie *c = vma_cookie(vma);

	cookie_vma_gone(vma, c);
	atomic_dec(&c->vmas);
	cookie_put(c);
}

static vm_fault_t cookie_vm_fault(struct vm_fault *vmf)
{
	return cookie_populate(vmf, vma_cookie(vmf->vma));
}

/* One vma is one cookie mapping, as RDMA's mmap entries: no split, no move. */
static int cookie_vm_may_split(struct vm_area_struct *vma, unsigned long addr)
{
	return -EINVAL;
}

static int cookie_vm_mremap(struct vm_area_struct *vma)
{
	return -EINVAL;
}

static const struct vm_operations_struct cookie_vm_ops = {
	.open = cookie_vm_open,
	.close = cookie_vm_close,
	.fault = cookie_vm_fault,
	.may_split = cookie_vm_may_split,
	.mremap = cookie_vm_mremap,
};

static int cookie_mmap(struct vfio_device *vdev, struct vm_area_struct *vma)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	struct cookie *c;

	if (!(vma->vm_pgoff & (COOKIE_SPACE >> PAGE_SHIFT)))
		return legacy_mmap(cdev, vma);
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	mutex_lock(&cdev->lock);
	c = cookie_find(cdev, (u64)vma->vm_pgoff << PAGE_SHIFT);
	if (c && vma->vm_end - vma->vm_start == c->length)
		kref_get(&c->ref);
	else
		c = NULL;
	mutex_unlock(&cdev->lock);
	if (!c)
		return -EINVAL;
	atomic_inc(&c->vmas);
	vma->vm_private_data = c;
	vma->vm_page_prot = c->seg->attr == VFIO_MMAP_ATTR_WC ?
			    pgprot_writecombine(vma->vm_page_prot) :
			    pgprot_noncached(vma->vm_page_prot);
	vma->vm_page_prot = pgprot_decrypted(vma->vm_page_prot);
	/* The BAR's own offset: the core's revocation of the BAR covers it. */
	vma->vm_pgoff = (VFIO_PCI_INDEX_TO_OFFSET(c->seg->index) + c->offset) >> PAGE_SHIFT;
	vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP |
		     (CORE_REVOKES_BY_ADDRESS_SPACE ? 0 : VM_DONTCOPY));
	vma->vm_ops = &cookie_vm_ops;
	return 0;
}

/* ---- the cookie features ------------------------------------------------ */

/*
 * A request struct from userspace: a shorter (older) one is zero-extended, a
 * longer (newer) one is accepted if the part we do not know is zero.
 */
static int copy_req(void *req, size_t size, void __user *arg, size_t argsz)
{
	int ret = copy_struct_from_user(req, size, arg, argsz);

	return ret == -E2BIG ? -EINVAL : ret;
}

static int cookie_create(struct cookie_dev *cdev, void __user *arg, size_t argsz)
{
	struct vfio_device_feature_mmap_cookie_create req;
	struct pci_dev *pdev = cdev->core.pdev;
	u64 length, bar_len;
	struct cookie *c;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.flags || req.__reserved || req.attr >= VFIO_MMAP_NR_ATTRS ||
	    !cookies_allowed(cdev, req.index) || !req.length || !PAGE_ALIGNED(req.offset))
		return -EINVAL;
	bar_len = pci_resource_len(pdev, req.index);
	length = PAGE_ALIGN(req.length);
	/* The bytes asked must be the BAR's, even where the mapping rounds up. */
	if (length < req.length || req.offset >= bar_len || req.length > bar_len - req.offset)
		return -ERANGE;
	if (req.attr == VFIO_MMAP_ATTR_WC) {
		if (!pat_enabled())
			return -EOPNOTSUPP;
		if (wc_refused(cdev, req.index, req.offset, length))
			return -EPERM;
	}

	/* What would refuse the cookie anyway, before a take that stays. */
	mutex_lock(&cdev->lock);
	if (cdev->nr_cookies >= COOKIE_MAX)
		ret = -ENOSPC;
	else if (req.attr == VFIO_MMAP_ATTR_WC && legacy_conflict(cdev, req.index))
		ret = -EBUSY;
	mutex_unlock(&cdev->lock);
	if (!ret)
		ret = bar_prepare(cdev, req.index, req.attr);
	if (ret)
		return ret;

	c = kzalloc(sizeof(*c), GFP_KERNEL_ACCOUNT);
	if (!c)
		return -ENOMEM;
	kref_init(&c->ref);
	c->cdev = cdev;
	c->offset = req.offset;
	c->length = length;
	mutex_lock(&cdev->lock);
	if (cdev->nr_cookies >= COOKIE_MAX) {
		ret = -ENOSPC;
		goto free;
	}
	/* The value names the cookie by its start alone: mmap() must use exactly it. */
	ret = xa_alloc_cyclic(&cdev->cookies, &c->id, c, xa_limit_32b, &cdev->next_serial,
			      GFP_KERNEL_ACCOUNT);
	if (ret < 0) {
		ret = ret == -EBUSY ? -ENOSPC : ret;
		goto free;
	}
	c->seg = seg_get(cdev, req.index, req.offset, length, req.attr);
	if (IS_ERR(c->seg)) {
		ret = PTR_ERR(c->seg);
		xa_erase(&cdev->cookies, c->id);
		goto free;
	}
	cdev->nr_cookies++;
	kref_get(&c->ref);	/* ours until the copy is done */
	mutex_unlock(&cdev->lock);

	req.cookie = cookie_value(cdev, c->id);
	req.mmap_length = length;
	ret = copy_to_user(arg, &req, sizeof(req)) ? -EFAULT : 0;
	mutex_lock(&cdev->lock);
	if (ret && !c->destroyed)
		cookie_destroy_locked(c);	/* never returned: nobody else knows it */
	kref_put(&c->ref, cookie_release);
	mutex_unlock(&cdev->lock);
	return ret;
free:
	mutex_unlock(&cdev->lock);
	kfree(c);
	return ret;
}

static int cookie_destroy(struct cookie_dev *cdev, void __user *arg, size_t argsz)
{
	struct vfio_device_feature_mmap_cookie_destroy req;
	struct cookie *c;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.flags || req.__reserved)
		return -EINVAL;
	mutex_lock(&cdev->lock);
	c = cookie_find(cdev, req.cookie);
	if (c)
		cookie_destroy_locked(c);
	mutex_unlock(&cdev->lock);
	return c ? 0 : -EINVAL;
}

/* Read from the mappings in effect now, never assumed; lock held. */
static u32 query_memtype(struct cookie_dev *cdev, struct seg *seg)
{
	lockdep_assert_held(&cdev->lock);
	if (seg->attr == VFIO_MMAP_ATTR_WC || !pat_enabled())
		return seg->memtype;
	if (!cdev->taken[seg->index])
		return core_map_memtype(cdev, seg->index);
	return cover_memtype(cdev, seg->index, seg->it.start, seg->it.last);
}

static int cookie_query(struct cookie_dev *cdev, void __user *arg, size_t argsz)
{
	struct vfio_device_feature_mmap_cookie_query req;
	struct cookie *c;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.flags)
		return -EINVAL;
	mutex_lock(&cdev->lock);
	c = cookie_find(cdev, req.cookie);
	if (c) {
		req.index = c->seg->index;
		req.offset = c->offset;
		req.length = c->length;
		req.attr = c->seg->attr;
		req.memtype = query_memtype(cdev, c->seg);
		req.state = atomic_read(&c->vmas) ? VFIO_MMAP_COOKIE_STATE_MAPPED : 0;
		req.__reserved = 0;
	}
	mutex_unlock(&cdev->lock);
	if (!c)
		return -EINVAL;
	return copy_to_user(arg, &req, min(argsz, sizeof(req))) ? -EFAULT : 0;
}

static int cookie_attrs(struct cookie_dev *cdev, void __user *arg, size_t argsz)
{
	struct vfio_device_feature_mmap_attrs req;
	unsigned int i;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.index >= VFIO_PCI_NUM_REGIONS + cdev->core.num_regions)
		return -EINVAL;
	req.attrs = 0;
	req.nr_wc_refused = 0;
	memset(req.wc_refused, 0, sizeof(req.wc_refused));
	mutex_lock(&cdev->lock);
	req.nr_cookies = cdev->nr_cookies;
	mutex_unlock(&cdev->lock);
	if (cookies_allowed(cdev, req.index)) {
		req.attrs |= BIT(VFIO_MMAP_ATTR_UC);
		if (pat_enabled())
			req.attrs |= BIT(VFIO_MMAP_ATTR_WC);
		for (i = 0; i < 2; i++)
			if (cdev->wc_refused[req.index][i].length)
				req.wc_refused[req.nr_wc_refused++] =
					cdev->wc_refused[req.index][i];
	}
	return copy_to_user(arg, &req, min(argsz, sizeof(req))) ? -EFAULT : 0;
}

static const struct {
	u32 feature;
	u32 op;			/* the one of GET/SET it takes */
	size_t minsz;
	int (*handler)(struct cookie_dev *cdev, void __user *arg, size_t argsz);
} cookie_features[] = {
	/* CREATE's outputs are part of its minimum: no room, no cookie. */
	{ VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE, VFIO_DEVICE_FEATURE_SET,
	  sizeof(struct vfio_device_feature_mmap_cookie_create), cookie_create },
	{ VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY, VFIO_DEVICE_FEATURE_SET,
	  sizeof(struct vfio_device_feature_mmap_cookie_destroy), cookie_destroy },
	{ VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY, VFIO_DEVICE_FEATURE_GET,
	  sizeof(struct vfio_device_feature_mmap_cookie_query), cookie_query },
	{ VFIO_DEVICE_FEATURE_MMAP_ATTRS, VFIO_DEVICE_FEATURE_GET,
	  offsetofend(struct vfio_device_feature_mmap_attrs, attrs), cookie_attrs },
};

static int cookie_feature(struct vfio_device *vdev, u32 flags, void __user *arg,
			  size_t argsz)
{
	u32 feature = flags & VFIO_DEVICE_FEATURE_MASK;
	unsigned int i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(cookie_features); i++) {
		if (cookie_features[i].feature != feature)
			continue;
		/* 1: run it; 0: a PROBE that succeeded; < 0: refused */
		ret = vfio_check_feature(flags, argsz, cookie_features[i].op,
					 cookie_features[i].minsz);
		if (ret != 1)
			return ret;
		return cookie_features[i].handler(to_cdev(vdev), arg, argsz);
	}
	return vfio_pci_core_ioctl_feature(vdev, flags, arg, argsz);
}

/* ---- device lifetime ----------------------------------------------------- */

static int cookie_init_dev(struct vfio_device *vdev)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	unsigned int i;

	init_rwsem(&cdev->barmap_sem);
	mutex_init(&cdev->lock);
	xa_init_flags(&cdev->cookies, XA_FLAGS_ALLOC | XA_FLAGS_ACCOUNT);
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		cdev->segs[i] = RB_ROOT_CACHED;
		cdev->uc_cover[i] = RB_ROOT_CACHED;
	}
#if defined(VFIO_PCI_COOKIE_STAND_IN) && !CORE_HAS_SET_PARAMS
	/* Per device from 7.3, latched here as vfio-pci does. */
	cdev->core.nointxmask = nointxmask;
	cdev->core.disable_idle_d3 = disable_idle_d3;
#ifdef CONFIG_VFIO_PCI_VGA
	cdev->core.disable_vga = disable_vga;
#endif
#endif
	return vfio_pci_core_init_dev(vdev);
}

static void cookie_release_dev(struct vfio_device *vdev)
{
	struct cookie_dev *cdev = to_cdev(vdev);

	xa_destroy(&cdev->cookies);
	mutex_destroy(&cdev->lock);
	vfio_pci_core_release_dev(vdev);	/* frees cdev: last */
}

static int cookie_open_device(struct vfio_device *vdev)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	int ret;

	ret = vfio_pci_core_enable(&cdev->core);
	if (ret)
		return ret;
	vfio_pci_core_finish_enable(&cdev->core);	/* sets bar_mmap_supported[] */
	find_refused(cdev);
	mutex_lock(&cdev->lock);
	cdev->open_number = atomic64_inc_return(&cookie_opens) & COOKIE_OPEN_MASK;
	cdev->serial_key = get_random_u32();
	cdev->next_serial = 0;
	mutex_unlock(&cdev->lock);
	return 0;
}

/* Every vma holds the device file, so none is left: only the table's refs. */
static void cookie_close_device(struct vfio_device *vdev)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	void __iomem *maps[PCI_STD_NUM_BARS];
	bool taken[PCI_STD_NUM_BARS];
	struct cookie *c;
	unsigned long id;
	unsigned int i;

	mutex_lock(&cdev->lock);
	xa_for_each(&cdev->cookies, id, c) {
		WARN_ON_ONCE(kref_read(&c->ref) != 1);
		cookie_destroy_locked(c);
	}
	WARN_ON_ONCE(cdev->nr_cookies);
	down_write(&cdev->core.memory_lock);
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		unsigned long lo, hi;

		cover_cut(cdev, i, 0, bar_last_page(cdev, i), &lo, &hi);
	}
	up_write(&cdev->core.memory_lock);
	mutex_unlock(&cdev->lock);
	/* The core's teardown (ioeventfds first) must not see what it did not map. */
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		taken[i] = cdev->taken[i];
		maps[i] = cdev->barmap[i];
		if (taken[i])
			cdev->core.barmap[i] = NULL;
		cdev->taken[i] = false;
		cdev->barmap[i] = NULL;
	}
	vfio_pci_core_close_device(vdev);
	for (i = 0; i < PCI_STD_NUM_BARS; i++)
		if (taken[i])
			barmap_remove(cdev, i, maps[i]);
}

/* ---- how vmas are populated and revoked, per kernel --------------------- */

#if CORE_HAS_VMF_INSERT_PFN
#define cookie_vmf_insert_pfn	vfio_pci_vmf_insert_pfn
#else
static vm_fault_t cookie_vmf_insert_pfn(struct vfio_pci_core_device *core,
					struct vm_fault *vmf, unsigned long pfn,
					unsigned int order)
{
	lockdep_assert_held_read(&core->memory_lock);
	if (core->pm_runtime_engaged || !core_memory_enabled(core))
		return VM_FAULT_SIGBUS;
	return vmf_insert_pfn(vmf->vma, vmf->address, pfn);
}
#endif

static unsigned long cookie_pfn(struct vm_fault *vmf, struct cookie *c)
{
	struct pci_dev *pdev = c->cdev->core.pdev;

	return ((pci_resource_start(pdev, c->seg->index) + c->offset) >> PAGE_SHIFT) +
	       ((vmf->address - vmf->vma->vm_start) >> PAGE_SHIFT);
}

/*
 * The core's vm_ops, captured from its first legacy mmap, so that legacy
 * vmas can be wrapped (below) with a const table of our own.
 */
static const struct vm_operations_struct *core_vm_ops;
static DEFINE_MUTEX(core_vm_ops_lock);

static struct cookie_dev *legacy_cdev(struct vm_area_struct *vma)
{
	return container_of((struct vfio_pci_core_device *)vma->vm_private_data,
			    struct cookie_dev, core);
}

static vm_fault_t legacy_vm_fault(struct vm_fault *vmf)
{
	return core_vm_ops->fault(vmf);
}

static const struct vm_operations_struct legacy_vm_ops;

static void legacy_wrap(struct vm_area_struct *vma)
{
	mutex_lock(&core_vm_ops_lock);
	if (!core_vm_ops)
		core_vm_ops = vma->vm_ops;
	mutex_unlock(&core_vm_ops_lock);
	if (!WARN_ON_ONCE(vma->vm_ops != core_vm_ops))
		vma->vm_ops = &legacy_vm_ops;
}

#if CORE_REVOKES_BY_ADDRESS_SPACE

/* One page per fault, as the core; PAT's record for the page gives the type. */
static vm_fault_t cookie_populate(struct vm_fault *vmf, struct cookie *c)
{
	struct vfio_pci_core_device *core = &c->cdev->core;
	vm_fault_t ret;

	down_read(&core->memory_lock);
	ret = cookie_vmf_insert_pfn(core, vmf, cookie_pfn(vmf, c), 0);
	up_read(&core->memory_lock);
	return ret;
}

static void cookie_vma_gone(struct vm_area_struct *vma, struct cookie *c)
{
}

/* Legacy vmas are the core's own: a page's mappings all follow its PAT type. */
static bool legacy_conflict(struct cookie_dev *cdev, unsigned int index)
{
	return false;
}

/*
 * The core maps a 2M or 1G block of a legacy vma with the type of its first
 * page.  A block that holds WC or foreign pages would be wrong for the
 * others, so its faults fall back to single pages, which PAT types one by
 * one; every other block keeps its huge mapping.  cdev->lock orders this
 * against CREATE and DESTROY, which zap the blocks whose pages change type.
 */
static bool block_mixed(struct cookie_dev *cdev, unsigned int index, unsigned long first,
			unsigned long last)
{
	struct interval_tree_node *it;

	lockdep_assert_held(&cdev->lock);
	for (it = interval_tree_iter_first(&cdev->segs[index], first, last); it;
	     it = interval_tree_iter_next(it, first, last))
		if (container_of(it, struct seg, it)->attr == VFIO_MMAP_ATTR_WC)
			return true;
	/* Foreign pages, or pages a failed allocation left with no cover. */
	return pat_enabled() && cdev->taken[index] &&
	       cover_memtype(cdev, index, first, last) != VFIO_MEMTYPE_UC_MINUS;
}

static vm_fault_t legacy_vm_huge_fault(struct vm_fault *vmf, unsigned int order)
{
	struct vm_area_struct *vma = vmf->vma;
	struct cookie_dev *cdev = legacy_cdev(vma);
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
	unsigned long start = ALIGN_DOWN(vmf->address, PAGE_SIZE << order);
	unsigned long first;
	vm_fault_t ret = VM_FAULT_FALLBACK;

	if (index >= PCI_STD_NUM_BARS || start < vma->vm_start)
		return ret;	/* the core would fall back too */
	/* The block's first page within the BAR: vm_pgoff is the file offset. */
	first = (vma->vm_pgoff & (VFIO_PCI_OFFSET_MASK >> PAGE_SHIFT)) +
		((start - vma->vm_start) >> PAGE_SHIFT);
	mutex_lock(&cdev->lock);
	if (!block_mixed(cdev, index, first, first + (1UL << order) - 1))
		ret = core_vm_ops->huge_fault(vmf, order);
	mutex_unlock(&cdev->lock);
	return ret;
}

static const struct vm_operations_struct legacy_vm_ops = {
	.fault = legacy_vm_fault,
	.huge_fault = legacy_vm_huge_fault,
};

static int legacy_mmap(struct cookie_dev *cdev, struct vm_area_struct *vma)
{
	int ret = vfio_pci_core_mmap(&cdev->core.vdev, vma);

	/* Only BAR vmas have the core's vm_ops; any other region keeps its own. */
	if (!ret && vma->vm_private_data == &cdev->core && vma->vm_ops &&
	    vma->vm_ops->huge_fault)
		legacy_wrap(vma);
	return ret;
}

#else /* 6.1 */

/*
 * 6.1 compatibility shim: the core revokes only vmas on its private
 * vma_list, so cookie vmas join it when they fault in, with the core's
 * node layout (struct vfio_pci_mmap_vma in 6.1's vfio_pci_core.c; the core
 * kfree()s it when it zaps) and its lock protocol (vma_lock, then
 * memory_lock).  Cookie vmas are VM_DONTCOPY here: a forked copy would hold
 * PTEs that list does not know.
 */
struct core_vma_node {
	struct vm_area_struct *vma;
	struct list_head vma_next;
};

static vm_fault_t cookie_populate(struct vm_fault *vmf, struct cookie *c)
{
	struct vm_area_struct *vma = vmf->vma;
	struct vfio_pci_core_device *core = &c->cdev->core;
	struct core_vma_node *node;
	vm_fault_t ret;

	mutex_lock(&core->vma_lock);
	down_read(&core->memory_lock);
	ret = cookie_vmf_insert_pfn(core, vmf, cookie_pfn(vmf, c), 0);
	if (ret != VM_FAULT_NOPAGE)
		goto out;
	list_for_each_entry(node, &core->vma_list, vma_next)
		if (node->vma == vma)
			goto out;	/* already known to the core */
	node = kmalloc(sizeof(*node), GFP_KERNEL_ACCOUNT);
	if (!node) {
		zap_vma_ptes(vma, vma->vm_start, vma->vm_end - vma->vm_start);
		ret = VM_FAULT_OOM;
		goto out;
	}
	node->vma = vma;
	list_add(&node->vma_next, &core->vma_list);
out:
	up_read(&core->memory_lock);
	mutex_unlock(&core->vma_lock);
	return ret;
}

static void cookie_vma_gone(struct vm_area_struct *vma, struct cookie *c)
{
	struct vfio_pci_core_device *core = &c->cdev->core;
	struct core_vma_node *node;

	mutex_lock(&core->vma_lock);
	list_for_each_entry(node, &core->vma_list, vma_next) {
		if (node->vma == vma) {
			list_del(&node->vma_next);
			kfree(node);
			break;
		}
	}
	mutex_unlock(&core->vma_lock);
}

/*
 * 6.1's core maps a legacy vma whole at its first fault with
 * io_remap_pfn_range(), which takes one PAT type for all of it: over a BAR
 * with WC pages the whole vma would come out WC.  So on 6.1 a BAR has WC
 * cookies or legacy mmaps, not both (-EBUSY).  The count wraps the core's
 * vm_ops, whose .open/.close also see fork, split and mremap.
 */
static bool legacy_conflict(struct cookie_dev *cdev, unsigned int index)
{
	lockdep_assert_held(&cdev->lock);
	return cdev->legacy_vmas[index];
}

/* The core set vm_pgoff to the pfn and vm_private_data to itself. */
static void legacy_count(struct vm_area_struct *vma, int delta)
{
	struct cookie_dev *cdev = legacy_cdev(vma);
	struct pci_dev *pdev = cdev->core.pdev;
	unsigned int i;

	mutex_lock(&cdev->lock);
	for (i = 0; i < PCI_STD_NUM_BARS; i++) {
		unsigned long first = pci_resource_start(pdev, i) >> PAGE_SHIFT;
		unsigned long pages = PAGE_ALIGN(pci_resource_len(pdev, i)) >> PAGE_SHIFT;

		if (vma->vm_pgoff >= first && vma->vm_pgoff - first < pages)
			cdev->legacy_vmas[i] += delta;
	}
	mutex_unlock(&cdev->lock);
}

static void legacy_vm_open(struct vm_area_struct *vma)
{
	core_vm_ops->open(vma);
	legacy_count(vma, 1);
}

static void legacy_vm_close(struct vm_area_struct *vma)
{
	core_vm_ops->close(vma);
	legacy_count(vma, -1);
}

static const struct vm_operations_struct legacy_vm_ops = {
	.open = legacy_vm_open,
	.close = legacy_vm_close,
	.fault = legacy_vm_fault,
};

static int legacy_mmap(struct cookie_dev *cdev, struct vm_area_struct *vma)
{
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);
	int ret;

	if (!cookies_allowed(cdev, index))
		return vfio_pci_core_mmap(&cdev->core.vdev, vma);
	mutex_lock(&cdev->lock);
	ret = cdev->wc_segs[index] ? -EBUSY : 0;
	if (!ret)
		cdev->legacy_vmas[index]++;	/* held across the core's mmap */
	mutex_unlock(&cdev->lock);
	if (ret)
		return ret;
	ret = vfio_pci_core_mmap(&cdev->core.vdev, vma);
	if (!ret) {
		legacy_wrap(vma);
		return 0;
	}
	mutex_lock(&cdev->lock);
	cdev->legacy_vmas[index]--;
	mutex_unlock(&cdev->lock);
	return ret;
}

#endif

/* ---- read and write of a taken BAR ---------------------------------------- */

/*
 * Where the kernel reaches BAR page @page of a taken BAR: a cover's piece,
 * or NULL for a page of none (a WC segment's, a foreign cover's, or one
 * left uncovered).  *memtype gets the page's type in PAT's record.
 */
static void __iomem *taken_page(struct cookie_dev *cdev, unsigned int index, unsigned long page,
				u32 *memtype)
{
	struct interval_tree_node *it;
	struct uc_cover *c;

	lockdep_assert_held(&cdev->core.memory_lock);
	for (it = interval_tree_iter_first(&cdev->segs[index], page, page); it;
	     it = interval_tree_iter_next(it, page, page)) {
		struct seg *seg = container_of(it, struct seg, it);

		if (seg->attr == VFIO_MMAP_ATTR_WC) {
			*memtype = VFIO_MEMTYPE_WC;
			return NULL;
		}
	}
	*memtype = VFIO_MEMTYPE_UC_MINUS;	/* PAT's default for a page with no record */
	it = interval_tree_iter_first(&cdev->uc_cover[index], page, page);
	if (!it)
		return NULL;
	c = container_of(it, struct uc_cover, it);
	*memtype = c->memtype;
	return pieces_page(cdev, index, it, &c->pieces, page);
}

/*
 * One access of @type at taken_copy()'s io, from or to its buf (unaligned:
 * a chunk starts where pread does).
 */
#define TAKEN_IO(type, read, write)			\
	do {						\
		type v;					\
							\
		if (iswrite) {				\
			memcpy(&v, buf, sizeof(v));	\
			write(v, io);			\
		} else {				\
			v = read(io);			\
			memcpy(buf, &v, sizeof(v));	\
		}					\
	} while (0)

/*
 * @n bytes within one page, in the core's access sizes: the widest aligned
 * one.  Through a WC page (@wc), each access is fenced, so that none is
 * combined, reordered or speculated, as through the core's uncached map.
 */
static void taken_copy(void __iomem *io, u8 *buf, size_t n, bool iswrite, bool wc)
{
	while (n) {
		size_t size = 1;

		if (wc && !iswrite)
			rmb();	/* no load of a WC page before the one before it */
		if (IS_ENABLED(CONFIG_64BIT) && CORE_HAS_IO64 && n >= 8 &&
		    IS_ALIGNED((unsigned long)io, 8))
			size = 8;
		else if (n >= 4 && IS_ALIGNED((unsigned long)io, 4))
			size = 4;
		else if (n >= 2 && IS_ALIGNED((unsigned long)io, 2))
			size = 2;
		switch (size) {
#ifdef CONFIG_64BIT
		case 8:
			TAKEN_IO(u64, readq, writeq);
			break;
#endif
		case 4:
			TAKEN_IO(u32, readl, writel);
			break;
		case 2:
			TAKEN_IO(u16, readw, writew);
			break;
		default:
			TAKEN_IO(u8, readb, writeb);
		}
		if (wc && iswrite)
			wmb();	/* each store posted alone, in order, as uncached */
		io += size;
		buf += size;
		n -= size;
	}
}

/* @n bytes at @pos of BAR @index, within one page, under memory_lock as a fault is. */
static int taken_access(struct cookie_dev *cdev, unsigned int index, u64 pos, u8 *buf,
			size_t n, bool iswrite)
{
	struct vfio_pci_core_device *core = &cdev->core;
	void __iomem *io, *temp = NULL;
	u32 memtype;
	int ret = 0;

	down_read(&core->memory_lock);
	if (!core_memory_enabled(core)) {
		ret = -EIO;
		goto out;
	}
	io = taken_page(cdev, index, pos >> PAGE_SHIFT, &memtype);
	if (!io) {
		/*
		 * A WC page, or one with a record from outside: mapped for
		 * this access with the type PAT has for it (a request of
		 * another type than that is refused, and logged, over a
		 * cached record or a mixture: no access then).
		 */
		phys_addr_t phys = pci_resource_start(core->pdev, index);

		phys += round_down(pos, PAGE_SIZE);
		if (memtype == VFIO_MEMTYPE_WC)
			temp = ioremap_wc(phys, PAGE_SIZE);
		else if (memtype == VFIO_MEMTYPE_UC_MINUS || memtype == VFIO_MEMTYPE_UC)
			temp = ioremap(phys, PAGE_SIZE);
		io = temp;
		if (!io) {
			ret = -EIO;
			goto out;
		}
	}
	taken_copy(io + offset_in_page(pos), buf, n, iswrite, memtype == VFIO_MEMTYPE_WC);
	if (temp)
		iounmap(temp);
out:
	up_read(&core->memory_lock);
	return ret;
}

/*
 * The core's read and write of a BAR, through the pieces of a taken BAR:
 * the core's would need one map of the whole BAR, which only vmap_pfn()
 * could give (4 KiB pages, 2 MiB of page tables per GiB, kept after
 * close).  Same as the core's otherwise: its access sizes, -EIO while
 * memory decode is off or the device is in D3, the MSI-X table skipped
 * (reads give ~0, writes are dropped).  The user copy is made with no lock
 * held; memory_lock is taken per chunk.
 */
static ssize_t taken_rw(struct cookie_dev *cdev, unsigned int index, char __user *buf,
			size_t count, loff_t *ppos, bool iswrite)
{
	struct pci_dev *pdev = cdev->core.pdev;
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK, end = pci_resource_len(pdev, index);
	u64 skip_start = 0, skip_end = 0;
	u64 chunk[32];
	ssize_t done = 0;
	int ret;

	if (pos >= end)
		return -EINVAL;
	count = min_t(u64, count, end - pos);
	if (index == cdev->msix_bar) {
		skip_start = cdev->msix_start;
		skip_end = cdev->msix_end;
	}
	ret = pm_runtime_resume_and_get(&pdev->dev);
	if (ret) {
		pci_info_ratelimited(pdev, "runtime resume failed %d\n", ret);
		return -EIO;
	}
	while (count) {
		/* Chunks end 8-aligned: the access sizes are the core's throughout. */
		size_t n = min_t(u64, min_t(u64, count, round_down(pos + sizeof(chunk), 8) - pos),
				 PAGE_SIZE - offset_in_page(pos));
		bool skipped = pos >= skip_start && pos < skip_end;

		if (pos < skip_start)
			n = min_t(u64, n, skip_start - pos);
		else if (skipped)
			n = min_t(u64, n, skip_end - pos);
		if (skipped)
			memset(chunk, 0xff, n);
		else if (iswrite && copy_from_user(chunk, buf + done, n))
			ret = -EFAULT;
		else
			ret = taken_access(cdev, index, pos, (u8 *)chunk, n, iswrite);
		if (!ret && !iswrite && copy_to_user(buf + done, chunk, n))
			ret = -EFAULT;
		if (ret)
			break;
		done += n;
		pos += n;
		count -= n;
	}
	pm_runtime_put(&pdev->dev);
	if (ret)
		return ret;
	*ppos += done;
	return done;
}

/* ---- the core's users of its BAR map ------------------------------------ */

/*
 * The core's read, write and IOEVENTFD take an address in its BAR map
 * before they use it, with no lock held; barmap_sem keeps the map from
 * being taken (bar_take()) in between.
 */
static long cookie_ioctl(struct vfio_device *vdev, unsigned int cmd, unsigned long arg)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	long ret;

	if (cmd != VFIO_DEVICE_IOEVENTFD)
		return vfio_pci_core_ioctl(vdev, cmd, arg);
	if (down_write_killable(&cdev->barmap_sem))
		return -EINTR;
	ret = barmaps_build(cdev);
	downgrade_write(&cdev->barmap_sem);
	if (!ret)
		ret = vfio_pci_core_ioctl(vdev, cmd, arg);
	up_read(&cdev->barmap_sem);
	return ret;
}

static ssize_t cookie_rw(struct vfio_device *vdev, char __user *buf, size_t count,
			 loff_t *ppos, bool iswrite)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	struct cookie_dev *cdev = to_cdev(vdev);
	ssize_t ret;

	if (!count)	/* as the core: no bounds check, no runtime resume */
		return 0;
	if (down_read_killable(&cdev->barmap_sem))
		return -EINTR;
	/* Taken stays taken until close: its read and write need no barmap_sem. */
	if (index < PCI_STD_NUM_BARS && cdev->taken[index]) {
		up_read(&cdev->barmap_sem);
		return taken_rw(cdev, index, buf, count, ppos, iswrite);
	}
	if (iswrite)
		ret = vfio_pci_core_write(vdev, buf, count, ppos);
	else
		ret = vfio_pci_core_read(vdev, buf, count, ppos);
	up_read(&cdev->barmap_sem);
	return ret;
}

static ssize_t cookie_read(struct vfio_device *vdev, char __user *buf, size_t count,
			   loff_t *ppos)
{
	return cookie_rw(vdev, buf, count, ppos, false);
}

static ssize_t cookie_write(struct vfio_device *vdev, const char __user *buf, size_t count,
			    loff_t *ppos)
{
	return cookie_rw(vdev, (char __user *)buf, count, ppos, true);
}

static const struct vfio_device_ops cookie_ops = {
	.name		= COOKIE_OPS_NAME,
	.init		= cookie_init_dev,
	.release	= cookie_release_dev,
	.open_device	= cookie_open_device,
	.close_device	= cookie_close_device,
	.ioctl		= cookie_ioctl,
	.device_feature	= cookie_feature,
	.read		= cookie_read,
	.write		= cookie_write,
	.mmap		= cookie_mmap,
	.request	= vfio_pci_core_request,
	.match		= vfio_pci_core_match,
#if CORE_HAS_REGION_INFO_CAPS
	.get_region_info_caps = vfio_pci_ioctl_get_region_info,
#endif
#if CORE_HAS_TOKEN_UUID
	.match_token_uuid = vfio_pci_core_match_token_uuid,
#endif
#if CORE_HAS_PASID_OPS
	.pasid_attach_ioas = vfio_iommufd_physical_pasid_attach_ioas,
	.pasid_detach_ioas = vfio_iommufd_physical_pasid_detach_ioas,
#endif
#if CORE_HAS_IOMMUFD_OPS
	.bind_iommufd	= vfio_iommufd_physical_bind,
	.unbind_iommufd	= vfio_iommufd_physical_unbind,
	.attach_ioas	= vfio_iommufd_physical_attach_ioas,
	.detach_ioas	= vfio_iommufd_physical_detach_ioas,
#endif
};

#if CORE_HAS_PCI_OPS
static const struct vfio_pci_device_ops cookie_pci_ops = {
	.get_dmabuf_phys = vfio_pci_core_get_dmabuf_phys,
};
#endif

/* Devices 7.3's vfio-pci will not bind: errata let their user harm the host. */
static const struct pci_device_id cookie_denylist[] = {
	{ PCI_VDEVICE(INTEL, 0x0435) },	/* QAT DH895XCC */
	{ PCI_VDEVICE(INTEL, 0x0443) },	/* QAT DH895XCC VF */
	{ PCI_VDEVICE(INTEL, 0x19e2) },	/* QAT C3XXX */
	{ PCI_VDEVICE(INTEL, 0x19e3) },	/* QAT C3XXX VF */
	{ PCI_VDEVICE(INTEL, 0x37c8) },	/* QAT C62X */
	{ PCI_VDEVICE(INTEL, 0x37c9) },	/* QAT C62X VF */
	{ PCI_VDEVICE(INTEL, 0x0b25) },	/* DSA (Sapphire Rapids) */
	{ PCI_VDEVICE(INTEL, 0x0cfe) },	/* IAX (Sapphire Rapids) */
	{}
};

static bool cookie_denied(struct pci_dev *pdev)
{
	if (!pci_match_id(cookie_denylist, pdev))
		return false;
	if (disable_denylist) {
		pci_warn(pdev, "on the vfio-pci denylist, bound anyway (disable_denylist)\n");
		return false;
	}
	pci_warn(pdev, "%04x:%04x is on the vfio-pci denylist: not binding\n",
		 pdev->vendor, pdev->device);
	return true;
}

static int cookie_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct cookie_dev *cdev;
	int ret;

	if (cookie_denied(pdev))
		return -EINVAL;

	cdev = vfio_alloc_device(cookie_dev, core.vdev, &pdev->dev, &cookie_ops);
	if (IS_ERR(cdev))
		return PTR_ERR(cdev);
	dev_set_drvdata(&pdev->dev, &cdev->core);
#if CORE_HAS_PCI_OPS
	cdev->core.pci_ops = &cookie_pci_ops;
#endif
	ret = vfio_pci_core_register_device(&cdev->core);
	if (ret)
		vfio_put_device(&cdev->core.vdev);
	return ret;
}

static void cookie_remove(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);

	vfio_pci_core_unregister_device(core);
	vfio_put_device(&core->vdev);
}

/* As vfio-pci: VFs for userspace drivers of the PF, if enable_sriov. */
static int cookie_sriov_configure(struct pci_dev *pdev, int nr_virtfn)
{
	if (!enable_sriov)
		return -ENOENT;
	return vfio_pci_core_sriov_configure(dev_get_drvdata(&pdev->dev), nr_virtfn);
}

static const struct pci_device_id cookie_table[] = {
	/* Any device, but only through driver_override, like vfio-pci. */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID) },
	{}
};
MODULE_DEVICE_TABLE(pci, cookie_table);

static struct pci_driver cookie_driver = {
	.name			= COOKIE_DRIVER_NAME,
	.id_table		= cookie_table,
	.probe			= cookie_probe,
	.remove			= cookie_remove,
	.sriov_configure	= cookie_sriov_configure,
	.err_handler		= &vfio_pci_core_err_handlers,
	.driver_managed_dma	= true,
};

/* ids=: each entry becomes a dynamic ID of this driver, bound like any other. */
static void __init cookie_add_ids(void)
{
	char *rest = ids, *entry;

	while ((entry = strsep(&rest, ","))) {
		unsigned int vendor, device, subvendor = PCI_ANY_ID;
		unsigned int subdevice = PCI_ANY_ID, class = 0, class_mask = 0;
		int ret;

		if (!*entry)
			continue;
		if (sscanf(entry, "%x:%x:%x:%x:%x:%x", &vendor, &device, &subvendor,
			   &subdevice, &class, &class_mask) < 2) {
			pr_warn("ids: \"%s\" is not vendor:device[:...], skipped\n", entry);
			continue;
		}
		ret = pci_add_dynid(&cookie_driver, vendor, device, subvendor,
				    subdevice, class, class_mask, 0);
		if (ret)
			pr_warn("ids: cannot add %s (%d)\n", entry, ret);
		else
			pr_info("ids: added %04x:%04x sub %04x:%04x class %06x/%06x\n",
				vendor, device, subvendor, subdevice, class, class_mask);
	}
}

static int __init cookie_init(void)
{
	int ret;

#if defined(VFIO_PCI_COOKIE_STAND_IN) && CORE_HAS_SET_PARAMS
	vfio_pci_core_set_params(nointxmask, disable_vga, disable_idle_d3);
#endif
	ret = pci_register_driver(&cookie_driver);
	if (ret)
		return ret;
	if (disable_denylist)
		pr_warn("device denylist disabled\n");
	cookie_add_ids();
	return 0;
}
module_init(cookie_init);

static void __exit cookie_exit(void)
{
	pci_unregister_driver(&cookie_driver);
}
module_exit(cookie_exit);

MODULE_LICENSE("GPL");
/* The project's version (pyproject.toml), read back from /sys/module/.../version. */
MODULE_VERSION("0.1.0");
MODULE_DESCRIPTION("vfio-pci with mmap cookies: write-combining and uncached mappings of BAR ranges");
