# SPDX-License-Identifier: Apache-2.0
"""Bindings for the subset of <linux/vfio.h> and <linux/iommufd.h> that pyvfio uses.

Declarations only, no logic.  Names follow the kernel headers so the two can
be read side by side; tests/host/test_uapi.py compiles a C program against
the headers and checks every size, offset and number defined here: against
the system's <linux/vfio.h> for all but :data:`SINCE_6_6` (the VFIO device
cdev) and the iommufd names, which bookworm's 6.1 headers lack; and against
the headers of linux-source-7.3 (the debug kernel's tree) for all of it.
"""

from __future__ import annotations

import ctypes

# ioctl encoding: VFIO uses _IO(';', 100 + n); sizes are carried in argsz.
VFIO_TYPE = ord(";")
VFIO_BASE = 100


def _io(nr: int) -> int:
    return (VFIO_TYPE << 8) | (VFIO_BASE + nr)


VFIO_API_VERSION = 0

VFIO_GET_API_VERSION = _io(0)
VFIO_CHECK_EXTENSION = _io(1)
VFIO_SET_IOMMU = _io(2)
VFIO_GROUP_GET_STATUS = _io(3)
VFIO_GROUP_SET_CONTAINER = _io(4)
VFIO_GROUP_UNSET_CONTAINER = _io(5)
VFIO_GROUP_GET_DEVICE_FD = _io(6)
VFIO_DEVICE_GET_INFO = _io(7)
VFIO_DEVICE_GET_REGION_INFO = _io(8)
VFIO_DEVICE_GET_IRQ_INFO = _io(9)
VFIO_DEVICE_SET_IRQS = _io(10)
VFIO_DEVICE_RESET = _io(11)
VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _io(12)
VFIO_DEVICE_PCI_HOT_RESET = _io(13)
VFIO_IOMMU_GET_INFO = _io(12)
VFIO_IOMMU_MAP_DMA = _io(13)
VFIO_IOMMU_UNMAP_DMA = _io(14)
VFIO_DEVICE_IOEVENTFD = _io(16)
VFIO_DEVICE_FEATURE = _io(17)

# Extensions (VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU arguments)
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3

# vfio_group_status.flags
VFIO_GROUP_FLAGS_VIABLE = 1 << 0
VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1

# vfio_device_info.flags
VFIO_DEVICE_FLAGS_RESET = 1 << 0
VFIO_DEVICE_FLAGS_PCI = 1 << 1
VFIO_DEVICE_FLAGS_CAPS = 1 << 7

VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2

# vfio_region_info.flags
VFIO_REGION_INFO_FLAG_READ = 1 << 0
VFIO_REGION_INFO_FLAG_WRITE = 1 << 1
VFIO_REGION_INFO_FLAG_MMAP = 1 << 2
VFIO_REGION_INFO_FLAG_CAPS = 1 << 3

# Fixed region indexes of vfio-pci
VFIO_PCI_BAR0_REGION_INDEX = 0
VFIO_PCI_ROM_REGION_INDEX = 6
VFIO_PCI_CONFIG_REGION_INDEX = 7
VFIO_PCI_VGA_REGION_INDEX = 8
VFIO_PCI_NUM_REGIONS = 9

# Region capability IDs
VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1
VFIO_REGION_INFO_CAP_TYPE = 2
VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3
VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 1 << 31

# IRQ indexes of vfio-pci
VFIO_PCI_INTX_IRQ_INDEX = 0
VFIO_PCI_MSI_IRQ_INDEX = 1
VFIO_PCI_MSIX_IRQ_INDEX = 2
VFIO_PCI_ERR_IRQ_INDEX = 3
VFIO_PCI_REQ_IRQ_INDEX = 4
VFIO_PCI_NUM_IRQS = 5

# vfio_irq_info.flags
VFIO_IRQ_INFO_EVENTFD = 1 << 0
VFIO_IRQ_INFO_MASKABLE = 1 << 1
VFIO_IRQ_INFO_AUTOMASKED = 1 << 2
VFIO_IRQ_INFO_NORESIZE = 1 << 3

# vfio_irq_set.flags
VFIO_IRQ_SET_DATA_NONE = 1 << 0
VFIO_IRQ_SET_DATA_BOOL = 1 << 1
VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2
VFIO_IRQ_SET_ACTION_MASK = 1 << 3
VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4
VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5

# vfio_device_feature.flags
VFIO_DEVICE_FEATURE_MASK = 0xFFFF
VFIO_DEVICE_FEATURE_GET = 1 << 16
VFIO_DEVICE_FEATURE_SET = 1 << 17
VFIO_DEVICE_FEATURE_PROBE = 1 << 18
VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0
VFIO_DEVICE_FEATURE_MIGRATION = 1
VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3
VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5
VFIO_DEVICE_FEATURE_DMA_BUF = 11

# IOMMU type1 info capabilities
VFIO_IOMMU_INFO_PGSIZES = 1 << 0
VFIO_IOMMU_INFO_CAPS = 1 << 1
VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1
VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3

# vfio_iommu_type1_dma_map.flags / dma_unmap.flags
VFIO_DMA_MAP_FLAG_READ = 1 << 0
VFIO_DMA_MAP_FLAG_WRITE = 1 << 1
VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1


class vfio_group_status(ctypes.Structure):  # noqa: N801 - kernel name
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
    )


class vfio_device_info(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("num_regions", ctypes.c_uint32),
        ("num_irqs", ctypes.c_uint32),
        ("cap_offset", ctypes.c_uint32),
    )


# vfio_pci_hot_reset_info.flags; vfio_pci_dependent_device.devid values
VFIO_PCI_HOT_RESET_FLAG_DEV_ID = 1 << 0
VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED = 1 << 1
VFIO_PCI_DEVID_OWNED = 0
VFIO_PCI_DEVID_NOT_OWNED = 0xFFFFFFFF  # -1 in a __u32


class vfio_pci_hot_reset_info(ctypes.Structure):  # noqa: N801
    """Followed by ``count`` vfio_pci_dependent_device entries."""

    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
    )


class vfio_pci_dependent_device(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("group_id", ctypes.c_uint32),  # a union: devid with FLAG_DEV_ID
        ("segment", ctypes.c_uint16),
        ("bus", ctypes.c_uint8),
        ("devfn", ctypes.c_uint8),
    )


class vfio_pci_hot_reset(ctypes.Structure):  # noqa: N801
    """Followed by ``count`` group fds (__s32); none for a cdev-opened device."""

    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
    )


class vfio_region_info(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("cap_offset", ctypes.c_uint32),
        ("size", ctypes.c_uint64),
        ("offset", ctypes.c_uint64),
    )


class vfio_info_cap_header(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("id", ctypes.c_uint16),
        ("version", ctypes.c_uint16),
        ("next", ctypes.c_uint32),
    )


class vfio_region_sparse_mmap_area(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("offset", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    )


class vfio_region_info_cap_sparse_mmap(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("nr_areas", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        # followed by nr_areas struct vfio_region_sparse_mmap_area
    )


class vfio_region_info_cap_type(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("type", ctypes.c_uint32),
        ("subtype", ctypes.c_uint32),
    )


class vfio_irq_info(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
    )


class vfio_irq_set(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("start", ctypes.c_uint32),
        ("count", ctypes.c_uint32),
        # followed by count bools (u8) or eventfds (s32)
    )


# vfio_device_ioeventfd.flags: the width of the write
VFIO_DEVICE_IOEVENTFD_8 = 1 << 0
VFIO_DEVICE_IOEVENTFD_16 = 1 << 1
VFIO_DEVICE_IOEVENTFD_32 = 1 << 2
VFIO_DEVICE_IOEVENTFD_64 = 1 << 3


class vfio_device_ioeventfd(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),  # device fd offset of the write
        ("data", ctypes.c_uint64),
        ("fd", ctypes.c_int32),  # -1 removes it
    )


class vfio_device_feature(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        # followed by the feature's data
    )


class vfio_iommu_type1_info(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("iova_pgsizes", ctypes.c_uint64),
        ("cap_offset", ctypes.c_uint32),
    )


class vfio_iova_range(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
    )


class vfio_iommu_type1_info_cap_iova_range(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("nr_iovas", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
        # followed by nr_iovas struct vfio_iova_range
    )


class vfio_iommu_type1_info_dma_avail(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("header", vfio_info_cap_header),
        ("avail", ctypes.c_uint32),
    )


class vfio_iommu_type1_dma_map(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("vaddr", ctypes.c_uint64),
        ("iova", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    )


class vfio_iommu_type1_dma_unmap(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("iova", ctypes.c_uint64),
        ("size", ctypes.c_uint64),
    )


# ---- the VFIO device cdev (/dev/vfio/devices/vfioN, Linux 6.6+) ----

VFIO_DEVICE_BIND_IOMMUFD = _io(18)
VFIO_DEVICE_ATTACH_IOMMUFD_PT = _io(19)
VFIO_DEVICE_DETACH_IOMMUFD_PT = _io(20)


VFIO_DEVICE_BIND_FLAG_TOKEN = 1 << 0


class vfio_device_bind_iommufd(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("iommufd", ctypes.c_int32),
        ("out_devid", ctypes.c_uint32),
        # 6.19+: a VF token; older kernels read only the fields above (argsz)
        ("token_uuid_ptr", ctypes.c_uint64),
    )


class vfio_device_attach_iommufd_pt(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("pt_id", ctypes.c_uint32),
        ("pasid", ctypes.c_uint32),
    )


class vfio_device_detach_iommufd_pt(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("argsz", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("pasid", ctypes.c_uint32),
    )


# ---- <linux/iommufd.h> (/dev/iommu, Linux 6.2+) ----

IOMMUFD_TYPE = ord(";")


def _iommufd(nr: int) -> int:
    return (IOMMUFD_TYPE << 8) | nr


IOMMU_DESTROY = _iommufd(0x80)
IOMMU_IOAS_ALLOC = _iommufd(0x81)
IOMMU_IOAS_IOVA_RANGES = _iommufd(0x84)
IOMMU_IOAS_MAP = _iommufd(0x85)
IOMMU_IOAS_MAP_FILE = _iommufd(0x8F)
IOMMU_IOAS_UNMAP = _iommufd(0x86)

# enum iommufd_ioas_map_flags
IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0
IOMMU_IOAS_MAP_WRITEABLE = 1 << 1
IOMMU_IOAS_MAP_READABLE = 1 << 2


class iommu_destroy(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
    )


class iommu_ioas_alloc(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("out_ioas_id", ctypes.c_uint32),
    )


class iommu_iova_range(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("start", ctypes.c_uint64),
        ("last", ctypes.c_uint64),
    )


class iommu_ioas_iova_ranges(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("ioas_id", ctypes.c_uint32),
        ("num_iovas", ctypes.c_uint32),
        ("__reserved", ctypes.c_uint32),
        ("allowed_iovas", ctypes.c_uint64),  # pointer to iommu_iova_range[num_iovas]
        ("out_iova_alignment", ctypes.c_uint64),
    )


class iommu_ioas_map(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("ioas_id", ctypes.c_uint32),
        ("__reserved", ctypes.c_uint32),
        ("user_va", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("iova", ctypes.c_uint64),
    )


class iommu_ioas_map_file(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("ioas_id", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("start", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("iova", ctypes.c_uint64),
    )


class vfio_region_dma_range(ctypes.Structure):  # noqa: N801
    _fields_ = (("offset", ctypes.c_uint64), ("length", ctypes.c_uint64))


class vfio_device_feature_dma_buf(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("region_index", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("nr_ranges", ctypes.c_uint32),
        # followed by vfio_region_dma_range[nr_ranges]
    )


class iommu_ioas_unmap(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("size", ctypes.c_uint32),
        ("ioas_id", ctypes.c_uint32),
        ("iova", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
    )


# What bookworm's 6.1 <linux/vfio.h> lacks (besides <linux/iommufd.h>).
SINCE_6_6 = frozenset(
    {
        "VFIO_DEVICE_BIND_IOMMUFD",
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        "VFIO_DEVICE_DETACH_IOMMUFD_PT",
        "vfio_device_bind_iommufd",
        "vfio_device_attach_iommufd_pt",
        "vfio_device_detach_iommufd_pt",
        "VFIO_DEVICE_BIND_FLAG_TOKEN",  # opening a VF by token through its cdev (6.17)
        "VFIO_PCI_HOT_RESET_FLAG_DEV_ID",
        "VFIO_PCI_HOT_RESET_FLAG_DEV_ID_OWNED",
        "VFIO_PCI_DEVID_OWNED",
        "VFIO_PCI_DEVID_NOT_OWNED",
        # dma-buf export of a BAR (Linux 6.19)
        "VFIO_DEVICE_FEATURE_DMA_BUF",
        "vfio_region_dma_range",
        "vfio_device_feature_dma_buf",
    }
)


# ---- kmod/include/uapi/linux/vfio_pci_cookie.h (the vfio_pci_cookie module) ----

VFIO_DEVICE_FEATURE_MMAP_COOKIE_CREATE = 0x7C00
VFIO_DEVICE_FEATURE_MMAP_COOKIE_DESTROY = 0x7C01
VFIO_DEVICE_FEATURE_MMAP_COOKIE_QUERY = 0x7C02
VFIO_DEVICE_FEATURE_MMAP_ATTRS = 0x7C03
VFIO_MMAP_COOKIE_MAX = 4096

VFIO_MMAP_ATTR_UC = 0
VFIO_MMAP_ATTR_WC = 1
VFIO_MMAP_NR_ATTRS = 2

VFIO_MEMTYPE_UNKNOWN = 0
VFIO_MEMTYPE_UC_MINUS = 1
VFIO_MEMTYPE_WC = 2
VFIO_MEMTYPE_UC = 3
VFIO_MEMTYPE_WB = 4
VFIO_MEMTYPE_WT = 5
VFIO_MEMTYPE_WP = 6

VFIO_MMAP_COOKIE_STATE_MAPPED = 1 << 0


class vfio_device_feature_mmap_cookie_create(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("attr", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("__reserved", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("cookie", ctypes.c_uint64),
        ("mmap_length", ctypes.c_uint64),
    )


class vfio_device_feature_mmap_cookie_destroy(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("cookie", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("__reserved", ctypes.c_uint32),
    )


class vfio_device_feature_mmap_cookie_query(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("cookie", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("index", ctypes.c_uint32),
        ("offset", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
        ("attr", ctypes.c_uint32),
        ("memtype", ctypes.c_uint32),
        ("state", ctypes.c_uint32),
        ("__reserved", ctypes.c_uint32),
    )


class vfio_mmap_range(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("offset", ctypes.c_uint64),
        ("length", ctypes.c_uint64),
    )


class vfio_device_feature_mmap_attrs(ctypes.Structure):  # noqa: N801
    _fields_ = (
        ("index", ctypes.c_uint32),
        ("attrs", ctypes.c_uint32),
        ("nr_wc_refused", ctypes.c_uint32),
        ("nr_cookies", ctypes.c_uint32),
        ("wc_refused", vfio_mmap_range * 2),
    )
