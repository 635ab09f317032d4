"""The seL4 IOMMU server in an sdfgen system description.

`QemuVirtSystem` builds a whole system on QEMU virt, the server, a
manager and drivers added one call each (`add_edu_driver`,
`add_nvme_driver`, `add_block_client`, `add_static_edu_driver`), and
`build()` returns all of it; `IommuServer` adds the server and its clients
to any sdfgen description, piece by piece. Install with `pip install sdf/` (`make sdfgen-venv` makes
a venv with it)."""

from .server import QEMU_VIRT_ECAM, PAGE, Client, Device, IommuServer, Quota, region
from .system import (
    BAR_WINDOW,
    EDU_QEMU,
    EDU_QUOTA,
    MANAGER_QUOTA,
    NVME_QEMU,
    NVME_QUOTA,
    PCI_MMIO_BASE,
    QEMU_VIRT_RESERVED,
    BlockClient,
    BuiltSystem,
    Driver,
    QemuVirtSystem,
    StaticDriver,
)

__all__ = [
    "BAR_WINDOW",
    "EDU_QEMU",
    "EDU_QUOTA",
    "MANAGER_QUOTA",
    "NVME_QEMU",
    "NVME_QUOTA",
    "PAGE",
    "PCI_MMIO_BASE",
    "QEMU_VIRT_ECAM",
    "QEMU_VIRT_RESERVED",
    "BlockClient",
    "BuiltSystem",
    "Client",
    "Device",
    "Driver",
    "IommuServer",
    "QemuVirtSystem",
    "Quota",
    "StaticDriver",
    "region",
]
