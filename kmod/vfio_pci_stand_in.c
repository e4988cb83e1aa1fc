// SPDX-License-Identifier: GPL-2.0-only
/*
 * vfio_pci_cookie registered under the driver name "vfio-pci", as the module
 * vfio-pci: for clients that drive a device through VFIO only when its driver
 * has that name.  Built only with VFIO_PCI_STAND_IN=y (see Kbuild).
 */
#define VFIO_PCI_COOKIE_STAND_IN
#include "vfio_pci_cookie.c"
