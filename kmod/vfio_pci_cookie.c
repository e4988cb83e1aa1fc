// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio-pci with mmap cookies: per-mapping memory attributes for BARs.
 *
 * A drop-in for vfio-pci (same ioctls, read/write and mmap offsets) that
 * also lets userspace create "cookies" through VFIO_DEVICE_FEATURE: opaque
 * mmap offsets that map a page range of a memory BAR write-combining or
 * uncached.  See include/uapi/linux/vfio_pci_cookie.h and docs/uapi.md.
 *
 * Memory types.  x86 PAT tracks the type of every physical range and, when
 * a new request overlaps ranges of one other type, silently hands out that
 * type instead.  vfio-pci-core ioremaps a whole BAR uncached on the first
 * mmap or read/write of it, which would turn every later WC mapping of that
 * BAR into UC- (or, done after a WC reservation, make the whole BAR WC).
 * So this driver serves memory-BAR mmaps and read/write itself, never
 * creating that whole-BAR mapping, and gives each user mapping (cookie or
 * legacy offset) a PAT reservation of exactly its pages for its lifetime.
 * The type PAT actually granted is checked: if it was coerced, the request
 * conflicts with an existing alias and fails with -EBUSY.
 *
 * Revocation.  The core zaps every vma on its vma_list when memory decode
 * is disabled, on FLR, VFIO_DEVICE_RESET, hot reset (also one started from
 * a sibling device), D3 and low-power entry.  Our vmas join that list when
 * they fault in, using the core's own locking protocol and node layout, so
 * all of those events cover them; faults answer SIGBUS while memory is off.
 */

#include <linux/kref.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/xarray.h>
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>
#include <asm/memtype.h>
#include <asm/pgtable.h>

#include "include/uapi/linux/vfio_pci_cookie.h"

/* Cookies live past every real region index in the mmap offset space. */
#define COOKIE_REGION_INDEX	0xc00
#define COOKIE_BASE		VFIO_PCI_INDEX_TO_OFFSET(COOKIE_REGION_INDEX)
#define COOKIE_IDS		(1U << (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT))

/* Must match struct vfio_pci_mmap_vma in 6.1's vfio_pci_core.c: the core zaps and kfree()s it. */
struct core_vma_node {
	struct vm_area_struct *vma;
	struct list_head vma_next;
};

struct cookie_dev {
	struct vfio_pci_core_device core;	/* first: vfio_alloc_device() */
	/*
	 * Serialises cookie creation and destruction, the last put of a
	 * mapping, wc_maps[], claimed and the core barmap[] gate.  Taken
	 * inside mmap_lock (mmap, vma close), never around user copies.
	 */
	struct mutex lock;
	struct xarray cookies;		/* cookie id -> struct cookie_map */
	unsigned int wc_maps[PCI_STD_NUM_BARS];	/* live WC mappings per BAR */
	u8 claimed;			/* BARs we pci_request_selected_regions()ed */
};

/* One reserved page range: a cookie, or a legacy mmap of a BAR. */
struct cookie_map {
	struct kref ref;		/* table (until destroyed) + one per vma */
	struct cookie_dev *cdev;
	void __iomem *kva;		/* holds the PAT reservation */
	phys_addr_t phys;
	u64 offset;			/* in the region */
	u64 length;			/* whole pages */
	u32 index;
	u32 attr;
	u32 id;				/* cookie id; legacy maps are not in the table */
	bool is_cookie;
	bool destroyed;			/* under cdev->lock */
	atomic_t vmas;
};

static struct cookie_dev *to_cdev(struct vfio_device *vdev)
{
	return container_of(vdev, struct cookie_dev, core.vdev);
}

static bool is_mem_bar(struct pci_dev *pdev, unsigned int index)
{
	return index < PCI_STD_NUM_BARS &&
	       (pci_resource_flags(pdev, index) & IORESOURCE_MEM) &&
	       pci_resource_len(pdev, index);
}

/* Copy of the core's private __vfio_pci_memory_enabled(); memory_lock held. */
static bool memory_enabled(struct vfio_pci_core_device *core)
{
	struct pci_dev *pdev = core->pdev;
	u16 cmd = le16_to_cpu(*(__le16 *)&core->vconfig[PCI_COMMAND]);

	lockdep_assert_held(&core->memory_lock);
	return pdev->current_state < PCI_D3hot &&
	       (pdev->no_command_memory || (cmd & PCI_COMMAND_MEMORY));
}

/* The memory type the kernel mapping of @kva really has. */
static u32 kva_memtype(void __iomem *kva)
{
	static const struct { enum page_cache_mode pcm; u32 type; } modes[] = {
		{ _PAGE_CACHE_MODE_WC, VFIO_MEMTYPE_WC },
		{ _PAGE_CACHE_MODE_UC_MINUS, VFIO_MEMTYPE_UC_MINUS },
		{ _PAGE_CACHE_MODE_UC, VFIO_MEMTYPE_UC },
		{ _PAGE_CACHE_MODE_WB, VFIO_MEMTYPE_WB },
		{ _PAGE_CACHE_MODE_WT, VFIO_MEMTYPE_WT },
		{ _PAGE_CACHE_MODE_WP, VFIO_MEMTYPE_WP },
	};
	unsigned int level, i;
	unsigned long bits;
	pgprot_t prot;
	pte_t *pte;

	if (!pat_enabled())
		return VFIO_MEMTYPE_UNKNOWN;
	pte = lookup_address((unsigned long)kva, &level);
	if (!pte)
		return VFIO_MEMTYPE_UNKNOWN;
	prot = pte_pgprot(*pte);
	if (level != PG_LEVEL_4K)
		prot = pgprot_large_2_4k(prot);
	bits = pgprot_val(prot) & _PAGE_CACHE_MASK;
	for (i = 0; i < ARRAY_SIZE(modes); i++)
		if (bits == cachemode2protval(modes[i].pcm))
			return modes[i].type;
	return VFIO_MEMTYPE_UNKNOWN;
}

static int claim_bar(struct cookie_dev *cdev, unsigned int index)
{
	int ret;

	lockdep_assert_held(&cdev->lock);
	if ((cdev->claimed & BIT(index)) || cdev->core.barmap[index])
		return 0;
	ret = pci_request_selected_regions(cdev->core.pdev, BIT(index), KBUILD_MODNAME);
	if (!ret)
		cdev->claimed |= BIT(index);
	return ret;
}

/* Reserve [offset, offset + length) of BAR @index with @attr; lock held. */
static struct cookie_map *map_new(struct cookie_dev *cdev, u32 index, u64 offset,
				  u64 length, u32 attr)
{
	struct pci_dev *pdev = cdev->core.pdev;
	u64 bar_len = pci_resource_len(pdev, index);
	u32 want = attr == VFIO_MMAP_ATTR_WC ? VFIO_MEMTYPE_WC : VFIO_MEMTYPE_UC_MINUS;
	struct cookie_map *map;
	size_t size;
	int ret;

	lockdep_assert_held(&cdev->lock);
	/* The core's whole-BAR UC- barmap (ioeventfd) would alias any WC page. */
	if (attr == VFIO_MMAP_ATTR_WC && cdev->core.barmap[index])
		return ERR_PTR(-EBUSY);
	ret = claim_bar(cdev, index);
	if (ret)
		return ERR_PTR(ret);
	map = kzalloc(sizeof(*map), GFP_KERNEL_ACCOUNT);
	if (!map)
		return ERR_PTR(-ENOMEM);
	map->phys = pci_resource_start(pdev, index) + offset;
	/* Only what the BAR has: PAT reserves whole pages anyway. */
	size = min(length, bar_len - offset);
	map->kva = attr == VFIO_MMAP_ATTR_WC ? ioremap_wc(map->phys, size) :
					       ioremap(map->phys, size);
	if (!map->kva || kva_memtype(map->kva) != want) {
		/* NULL: mixed types overlap; coerced: one other type does. */
		if (map->kva)
			iounmap(map->kva);
		kfree(map);
		return ERR_PTR(-EBUSY);
	}
	kref_init(&map->ref);
	atomic_set(&map->vmas, 0);
	map->cdev = cdev;
	map->offset = offset;
	map->length = length;
	map->index = index;
	map->attr = attr;
	if (attr == VFIO_MMAP_ATTR_WC)
		cdev->wc_maps[index]++;
	return map;
}

static void map_release(struct kref *ref)
{
	struct cookie_map *map = container_of(ref, struct cookie_map, ref);
	struct cookie_dev *cdev = map->cdev;

	lockdep_assert_held(&cdev->lock);
	if (map->is_cookie)
		xa_erase(&cdev->cookies, map->id);
	if (map->attr == VFIO_MMAP_ATTR_WC)
		cdev->wc_maps[map->index]--;
	iounmap(map->kva);
	kfree(map);
}

static void map_put(struct cookie_map *map)
{
	struct cookie_dev *cdev = map->cdev;

	mutex_lock(&cdev->lock);
	kref_put(&map->ref, map_release);
	mutex_unlock(&cdev->lock);
}

/* A live cookie from its mmap offset; lock held. */
static struct cookie_map *cookie_find(struct cookie_dev *cdev, u64 cookie)
{
	struct cookie_map *map;

	lockdep_assert_held(&cdev->lock);
	if (VFIO_PCI_OFFSET_TO_INDEX(cookie) != COOKIE_REGION_INDEX ||
	    cookie & ~PAGE_MASK)
		return NULL;
	map = xa_load(&cdev->cookies, (cookie & VFIO_PCI_OFFSET_MASK) >> PAGE_SHIFT);
	return map && !map->destroyed ? map : NULL;
}

/* ---- vmas ---------------------------------------------------------- */

static void cookie_vm_open(struct vm_area_struct *vma)
{
	struct cookie_map *map = vma->vm_private_data;

	/* A copy of a vma (mremap's temporary): it starts unpopulated, as in the core. */
	kref_get(&map->ref);
	atomic_inc(&map->vmas);
	zap_vma_ptes(vma, vma->vm_start, vma->vm_end - vma->vm_start);
}

static void cookie_vm_close(struct vm_area_struct *vma)
{
	struct cookie_map *map = vma->vm_private_data;
	struct vfio_pci_core_device *core = &map->cdev->core;
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
	atomic_dec(&map->vmas);
	map_put(map);
}

static vm_fault_t cookie_vm_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct cookie_map *map = vma->vm_private_data;
	struct vfio_pci_core_device *core = &map->cdev->core;
	unsigned long size = vma->vm_end - vma->vm_start;
	struct core_vma_node *node;
	vm_fault_t ret = VM_FAULT_NOPAGE;

	/* The core's protocol: vma_lock, then memory_lock; populate all at once. */
	mutex_lock(&core->vma_lock);
	down_read(&core->memory_lock);
	if (core->pm_runtime_engaged || !memory_enabled(core)) {
		ret = VM_FAULT_SIGBUS;
		goto out;
	}
	list_for_each_entry(node, &core->vma_list, vma_next)
		if (node->vma == vma)
			goto out;	/* a concurrent fault populated it */
	node = kmalloc(sizeof(*node), GFP_KERNEL_ACCOUNT);
	if (!node) {
		ret = VM_FAULT_OOM;
		goto out;
	}
	/* The PAT type matches map->kva's reservation, so it is never coerced. */
	if (io_remap_pfn_range(vma, vma->vm_start, vma->vm_pgoff, size, vma->vm_page_prot)) {
		zap_vma_ptes(vma, vma->vm_start, size);
		kfree(node);
		ret = VM_FAULT_SIGBUS;
		goto out;
	}
	node->vma = vma;
	list_add(&node->vma_next, &core->vma_list);
out:
	up_read(&core->memory_lock);
	mutex_unlock(&core->vma_lock);
	return ret;
}

/* One vma is one mapping: no partial munmap, no mremap. */
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

static void vma_attach(struct vm_area_struct *vma, struct cookie_map *map)
{
	vma->vm_private_data = map;
	vma->vm_page_prot = map->attr == VFIO_MMAP_ATTR_WC ?
			    pgprot_writecombine(vma->vm_page_prot) :
			    pgprot_noncached(vma->vm_page_prot);
	vma->vm_pgoff = map->phys >> PAGE_SHIFT;
	/*
	 * VM_DONTCOPY: fork would copy PTEs after ->open() zapped the child's
	 * vma, leaving mappings the revocation list does not know about.
	 */
	vma->vm_flags |= VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP | VM_DONTCOPY;
	vma->vm_ops = &cookie_vm_ops;
	atomic_inc(&map->vmas);
}

static int cookie_mmap_cookie(struct cookie_dev *cdev, struct vm_area_struct *vma)
{
	struct cookie_map *map;
	int ret = 0;

	mutex_lock(&cdev->lock);
	map = cookie_find(cdev, (u64)vma->vm_pgoff << PAGE_SHIFT);
	if (!map)
		ret = -EINVAL;
	else if (vma->vm_end - vma->vm_start != map->length)
		ret = -EINVAL;
	else
		kref_get(&map->ref);
	mutex_unlock(&cdev->lock);
	if (!ret)
		vma_attach(vma, map);
	return ret;
}

/* A legacy offset into a memory BAR: an uncached mapping with its own reservation. */
static int cookie_mmap_bar(struct cookie_dev *cdev, struct vm_area_struct *vma,
			   unsigned int index)
{
	struct vfio_pci_core_device *core = &cdev->core;
	u64 pgoff = vma->vm_pgoff & ((1ULL << (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT)) - 1);
	u64 req_start = pgoff << PAGE_SHIFT;
	u64 req_len = vma->vm_end - vma->vm_start;
	struct cookie_map *map;

	if (!core->bar_mmap_supported[index])
		return -EINVAL;
	if (req_start + req_len > PAGE_ALIGN(pci_resource_len(core->pdev, index)))
		return -EINVAL;
	mutex_lock(&cdev->lock);
	map = map_new(cdev, index, req_start, req_len, VFIO_MMAP_ATTR_UC);
	mutex_unlock(&cdev->lock);
	if (IS_ERR(map))
		return PTR_ERR(map);
	vma_attach(vma, map);
	return 0;
}

static int cookie_mmap(struct vfio_device *vdev, struct vm_area_struct *vma)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	unsigned int index = vma->vm_pgoff >> (VFIO_PCI_OFFSET_SHIFT - PAGE_SHIFT);

	if (index != COOKIE_REGION_INDEX && !is_mem_bar(cdev->core.pdev, index))
		return vfio_pci_core_mmap(vdev, vma);
	if (vma->vm_end < vma->vm_start || !(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	if (index == COOKIE_REGION_INDEX)
		return cookie_mmap_cookie(cdev, vma);
	return cookie_mmap_bar(cdev, vma, index);
}

/* ---- read/write of memory BARs ------------------------------------- */

/* One access of @width at @io, if memory decode is on; as the core's test_mem. */
static int bar_access(struct vfio_pci_core_device *core, void __iomem *io,
		      char __user *buf, size_t width, bool iswrite)
{
	u32 val = 0;
	int ret = 0;

	if (iswrite && copy_from_user(&val, buf, width))
		return -EFAULT;
	down_read(&core->memory_lock);
	if (!memory_enabled(core)) {
		ret = -EIO;
	} else if (iswrite) {
		if (width == 4)
			iowrite32(val, io);
		else if (width == 2)
			iowrite16(val, io);
		else
			iowrite8(val, io);
	} else {
		val = width == 4 ? ioread32(io) : width == 2 ? ioread16(io) : ioread8(io);
	}
	up_read(&core->memory_lock);
	if (!ret && !iswrite && copy_to_user(buf, &val, width))
		ret = -EFAULT;
	return ret;
}

/* Reads of the MSI-X table give all ones, as in vfio-pci. */
static int fill_ones(char __user *buf, size_t len)
{
	static const u8 ones[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	while (len) {
		size_t n = min(len, sizeof(ones));

		if (copy_to_user(buf, ones, n))
			return -EFAULT;
		buf += n;
		len -= n;
	}
	return 0;
}

/*
 * vfio-pci's BAR read/write semantics (aligned 4/2/1-byte accesses, the
 * MSI-X table reads as ones and ignores writes, -EIO while memory is off),
 * through a mapping of just the page touched: ioremap() takes the page's
 * existing type (WC under a WC cookie), so no conflicting alias is made and
 * no whole-BAR reservation appears.
 */
static ssize_t cookie_bar_rw(struct cookie_dev *cdev, unsigned int index,
			     char __user *buf, size_t count, loff_t *ppos, bool iswrite)
{
	struct vfio_pci_core_device *core = &cdev->core;
	u64 pos = *ppos & VFIO_PCI_OFFSET_MASK;
	u64 bar_len = pci_resource_len(core->pdev, index);
	u64 x_start = 0, x_end = 0;
	size_t done = 0;
	int ret;

	if (pos >= bar_len)
		return -EINVAL;
	count = min_t(u64, count, bar_len - pos);
	mutex_lock(&cdev->lock);
	ret = claim_bar(cdev, index);
	mutex_unlock(&cdev->lock);
	if (ret)
		return ret;
	if (index == core->msix_bar) {
		x_start = core->msix_offset;
		x_end = core->msix_offset + core->msix_size;
	}
	while (done < count) {
		u64 at = pos + done;
		size_t chunk = min_t(u64, count - done, PAGE_SIZE - (at & ~PAGE_MASK));
		void __iomem *io = ioremap(pci_resource_start(core->pdev, index) + at, chunk);
		size_t off = 0;

		if (!io)
			return done ? done : -ENOMEM;
		while (off < chunk) {
			u64 p = at + off;
			size_t width = (chunk - off >= 4 && !(p % 4)) ? 4 :
				       (chunk - off >= 2 && !(p % 2)) ? 2 : 1;

			if (p >= x_start && p < x_end) {
				width = min_t(u64, chunk - off, x_end - p);
				if (!iswrite)
					ret = fill_ones(buf + done + off, width);
			} else {
				ret = bar_access(core, io + off, buf + done + off, width, iswrite);
			}
			if (ret) {
				iounmap(io);
				return done + off ? done + off : ret;
			}
			off += width;
		}
		iounmap(io);
		done += chunk;
	}
	*ppos += done;
	return done;
}

static ssize_t cookie_read(struct vfio_device *vdev, char __user *buf, size_t count,
			   loff_t *ppos)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	struct cookie_dev *cdev = to_cdev(vdev);

	if (!count || !is_mem_bar(cdev->core.pdev, index))
		return vfio_pci_core_read(vdev, buf, count, ppos);
	return cookie_bar_rw(cdev, index, buf, count, ppos, false);
}

static ssize_t cookie_write(struct vfio_device *vdev, const char __user *buf, size_t count,
			    loff_t *ppos)
{
	unsigned int index = VFIO_PCI_OFFSET_TO_INDEX(*ppos);
	struct cookie_dev *cdev = to_cdev(vdev);

	if (!count || !is_mem_bar(cdev->core.pdev, index))
		return vfio_pci_core_write(vdev, buf, count, ppos);
	return cookie_bar_rw(cdev, index, (char __user *)buf, count, ppos, true);
}

/*
 * VFIO_DEVICE_IOEVENTFD makes the core ioremap the whole BAR uncached; keep
 * that away from BARs with WC mappings (and, in map_new(), WC away from
 * BARs that have it).
 */
static long cookie_ioctl(struct vfio_device *vdev, unsigned int cmd, unsigned long arg)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	struct vfio_device_ioeventfd ioeventfd;
	unsigned int index;
	long ret;

	if (cmd != VFIO_DEVICE_IOEVENTFD)
		return vfio_pci_core_ioctl(vdev, cmd, arg);
	if (copy_from_user(&ioeventfd, (void __user *)arg, sizeof(ioeventfd)))
		return -EFAULT;
	index = VFIO_PCI_OFFSET_TO_INDEX(ioeventfd.offset);
	if (!is_mem_bar(cdev->core.pdev, index))
		return vfio_pci_core_ioctl(vdev, cmd, arg);
	mutex_lock(&cdev->lock);
	if (cdev->wc_maps[index]) {
		ret = -EBUSY;
	} else {
		/* The core claims the BAR itself when it maps it. */
		if (cdev->claimed & BIT(index) && !cdev->core.barmap[index]) {
			pci_release_selected_regions(cdev->core.pdev, BIT(index));
			cdev->claimed &= ~BIT(index);
		}
		ret = vfio_pci_core_ioctl(vdev, cmd, arg);
	}
	mutex_unlock(&cdev->lock);
	return ret;
}

/* ---- the cookie features ------------------------------------------- */

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
	struct cookie_map *map;
	u64 length;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.flags || req.__reserved || req.attr >= VFIO_MMAP_NR_ATTRS ||
	    !is_mem_bar(pdev, req.index) || !cdev->core.bar_mmap_supported[req.index] ||
	    !req.length || !PAGE_ALIGNED(req.offset))
		return -EINVAL;
	if (req.attr == VFIO_MMAP_ATTR_WC && !pat_enabled())
		return -EOPNOTSUPP;
	length = PAGE_ALIGN(req.length);
	if (length < req.length || req.offset >= pci_resource_len(pdev, req.index) ||
	    length > PAGE_ALIGN(pci_resource_len(pdev, req.index)) - req.offset)
		return -ERANGE;

	mutex_lock(&cdev->lock);
	map = map_new(cdev, req.index, req.offset, length, req.attr);
	if (IS_ERR(map)) {
		ret = PTR_ERR(map);
		goto out;
	}
	/*
	 * The id names the cookie by its start alone: mmap() must use exactly
	 * (cookie, mmap_length), as RDMA's mmap entries require.
	 */
	ret = xa_alloc(&cdev->cookies, &map->id, map, XA_LIMIT(0, COOKIE_IDS - 1),
		       GFP_KERNEL_ACCOUNT);
	if (ret) {
		kref_put(&map->ref, map_release);
		ret = ret == -EBUSY ? -ENOSPC : ret;
		goto out;
	}
	map->is_cookie = true;
	req.cookie = COOKIE_BASE + ((u64)map->id << PAGE_SHIFT);
	req.mmap_length = length;
	if (copy_to_user(arg, &req, min(argsz, sizeof(req)))) {
		map->destroyed = true;
		kref_put(&map->ref, map_release);
		ret = -EFAULT;
	}
out:
	mutex_unlock(&cdev->lock);
	return ret;
}

static int cookie_destroy(struct cookie_dev *cdev, void __user *arg, size_t argsz)
{
	struct vfio_device_feature_mmap_cookie_destroy req;
	struct cookie_map *map;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.flags || req.__reserved)
		return -EINVAL;
	mutex_lock(&cdev->lock);
	map = cookie_find(cdev, req.cookie);
	if (map) {
		/* Mapped vmas keep their refs; the value stays taken until they go. */
		map->destroyed = true;
		kref_put(&map->ref, map_release);
	}
	mutex_unlock(&cdev->lock);
	return map ? 0 : -EINVAL;
}

static int cookie_query(struct cookie_dev *cdev, void __user *arg, size_t argsz)
{
	struct vfio_device_feature_mmap_cookie_query req;
	struct cookie_map *map;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.flags)
		return -EINVAL;
	mutex_lock(&cdev->lock);
	map = cookie_find(cdev, req.cookie);
	if (map) {
		req.index = map->index;
		req.offset = map->offset;
		req.length = map->length;
		req.attr = map->attr;
		req.memtype = kva_memtype(map->kva);
		req.state = atomic_read(&map->vmas) ? VFIO_MMAP_COOKIE_STATE_MAPPED : 0;
		req.__reserved = 0;
	}
	mutex_unlock(&cdev->lock);
	if (!map)
		return -EINVAL;
	return copy_to_user(arg, &req, min(argsz, sizeof(req))) ? -EFAULT : 0;
}

static int cookie_attrs(struct cookie_dev *cdev, void __user *arg, size_t argsz)
{
	struct vfio_device_feature_mmap_attrs req;
	struct vfio_pci_core_device *core = &cdev->core;
	int ret;

	ret = copy_req(&req, sizeof(req), arg, argsz);
	if (ret)
		return ret;
	if (req.index >= VFIO_PCI_NUM_REGIONS + core->num_regions)
		return -EINVAL;
	req.attrs = 0;
	if (is_mem_bar(core->pdev, req.index) && core->bar_mmap_supported[req.index]) {
		req.attrs |= BIT(VFIO_MMAP_ATTR_UC);
		if (pat_enabled())
			req.attrs |= BIT(VFIO_MMAP_ATTR_WC);
	}
	return copy_to_user(arg, &req, min(argsz, sizeof(req))) ? -EFAULT : 0;
}

static const struct {
	u32 feature;
	u32 op;			/* the one of GET/SET it takes */
	size_t minsz;
	int (*handler)(struct cookie_dev *cdev, void __user *arg, size_t argsz);
} cookie_features[] = {
	{ VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE, VFIO_DEVICE_FEATURE_SET,
	  offsetofend(struct vfio_device_feature_mmap_cookie_create, length), cookie_create },
	{ VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY, VFIO_DEVICE_FEATURE_SET,
	  sizeof(struct vfio_device_feature_mmap_cookie_destroy), cookie_destroy },
	{ VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY, VFIO_DEVICE_FEATURE_GET,
	  sizeof(struct vfio_device_feature_mmap_cookie_query), cookie_query },
	{ VFIO_DEVICE_FEATURE_MMAP_ATTRS, VFIO_DEVICE_FEATURE_GET,
	  sizeof(struct vfio_device_feature_mmap_attrs), cookie_attrs },
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

/* ---- device lifetime ----------------------------------------------- */

static int cookie_init_dev(struct vfio_device *vdev)
{
	struct cookie_dev *cdev = to_cdev(vdev);

	mutex_init(&cdev->lock);
	xa_init_flags(&cdev->cookies, XA_FLAGS_ALLOC);
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
	struct vfio_pci_core_device *core = &to_cdev(vdev)->core;
	int ret;

	ret = vfio_pci_core_enable(core);
	if (ret)
		return ret;
	vfio_pci_core_finish_enable(core);
	return 0;
}

/* Every vma holds the device file, so none is left: only the table's refs. */
static void cookie_close_device(struct vfio_device *vdev)
{
	struct cookie_dev *cdev = to_cdev(vdev);
	struct cookie_map *map;
	unsigned long id;

	mutex_lock(&cdev->lock);
	xa_for_each(&cdev->cookies, id, map) {
		WARN_ON_ONCE(map->destroyed || kref_read(&map->ref) != 1);
		map->destroyed = true;
		kref_put(&map->ref, map_release);
	}
	if (cdev->claimed)
		pci_release_selected_regions(cdev->core.pdev, cdev->claimed);
	cdev->claimed = 0;
	mutex_unlock(&cdev->lock);
	vfio_pci_core_close_device(vdev);
}

static const struct vfio_device_ops cookie_ops = {
	.name		= "vfio-pci-cookie",
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
};

static int cookie_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct cookie_dev *cdev;
	int ret;

	cdev = vfio_alloc_device(cookie_dev, core.vdev, &pdev->dev, &cookie_ops);
	if (IS_ERR(cdev))
		return PTR_ERR(cdev);
	dev_set_drvdata(&pdev->dev, &cdev->core);
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

static const struct pci_device_id cookie_table[] = {
	/* Any device, but only through driver_override, like vfio-pci. */
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID) },
	{}
};
MODULE_DEVICE_TABLE(pci, cookie_table);

static struct pci_driver cookie_driver = {
	.name			= KBUILD_MODNAME,
	.id_table		= cookie_table,
	.probe			= cookie_probe,
	.remove			= cookie_remove,
	.err_handler		= &vfio_pci_core_err_handlers,
	.driver_managed_dma	= true,
};
module_pci_driver(cookie_driver);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("vfio-pci with mmap cookies: write-combining and uncached mappings of BAR ranges");
