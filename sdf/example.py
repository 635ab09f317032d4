"""The shipped example (system.xml and iommu.xml) built with sdfgen and
iommu_sdf: the IOMMU server, two edu driver PDs and a manager on QEMU virt
with edu devices at PCI 00:01.0 and 00:02.0.

    python3 sdf/example.py OUT_DIR

writes OUT_DIR/system.xml and OUT_DIR/iommu.xml; tests/sdfgen.rs checks
that they configure the server exactly as the shipped pair does.
"""

import sys
from pathlib import Path

from sdfgen import SystemDescription as SD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iommu_sdf import IommuServer, Quota, region  # noqa: E402

# Windows no device may be given as DMA addresses: the GIC and its MSI
# doorbell frame, and the PCIe host bridge's MMIO windows.
RESERVED = (
    (0x0800_0000, 0x0803_FFFF),
    (0x1000_0000, 0x3EFE_FFFF),
    (0x80_0000_0000, 0xFF_FFFF_FFFF),
)
DRIVER_QUOTA = Quota(objects=16, ioases=4, mapped_pages=64, table_pages=16, hwpts=4, mappings=16)
MANAGER_QUOTA = Quota(objects=4, ioases=1, mapped_pages=0, table_pages=0, hwpts=0, mappings=0)


def build() -> IommuServer:
    sdf = SD(SD.Arch.AARCH64, 0x1_0000_0000)
    iommu = IommuServer(sdf)
    edu_a = SD.ProtectionDomain("edu_a", "edu_driver.elf", priority=100)
    edu_b = SD.ProtectionDomain("edu_b", "edu_driver.elf", priority=90)
    manager = SD.ProtectionDomain("manager", "manager.elf", priority=150)
    for pd in (manager, edu_a, edu_b):
        sdf.add_pd(pd)
    clients = [
        iommu.add_client(edu_a, quota=DRIVER_QUOTA),
        iommu.add_client(edu_b, quota=DRIVER_QUOTA),
    ]
    iommu.add_client(manager, quota=MANAGER_QUOTA, manager=True)
    for n, (pd, client) in enumerate(zip((edu_a, edu_b), clients)):
        name = pd.name
        iommu.add_pci_device(
            client,
            name,
            bus=0,
            device=n + 1,
            function=0,
            dma_mask=(1 << 40) - 1,
            reserved=RESERVED,
            config_vaddr=0x2000_1000,
        )
        # BAR0 in the 32-bit window at the slot the demo assigns.
        bar = region(sdf, f"{name}_bar", 0x10_0000, paddr=0x1000_0000 + n * 0x10_0000)
        pd.add_map(SD.Map(bar, 0x2010_0000, "rw", cached=False, setvar_vaddr="edu_regs"))
        iommu.add_dma(client, f"{name}_dma", 0x10000, vaddr=0x3000_0000, setvar_vaddr="dma_buffer")
        iommu.add_setvar(pd, "edu_bar_paddr", f"{name}_bar")
    # The manager and the client it resets pace the story.
    sdf.add_channel(SD.Channel(manager, edu_b, a_id=1, b_id=1))
    return iommu


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    system, policy = build().render()
    (out / "system.xml").write_text(system)
    (out / "iommu.xml").write_text(policy)


if __name__ == "__main__":
    main()
