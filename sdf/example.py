"""The shipped example (system.xml and iommu.xml) built with sdfgen and
iommu_sdf: the IOMMU server, edu driver PDs and a manager that supervises
them (the drivers are its child PDs) on QEMU virt, with the edu devices at
PCI 00:01.0, 00:02.0, ...

    python3 sdf/example.py [--drivers N] OUT_DIR

writes OUT_DIR/system.xml and OUT_DIR/iommu.xml with N drivers (2, the
shipped example, by default); tests/sdfgen.rs checks that the default
pair configures the server exactly as the shipped pair does, and boots a
system of three drivers.
"""

import argparse
import sys
from pathlib import Path

from sdfgen import SystemDescription as SD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from iommu_sdf import QEMU_VIRT_ECAM, IommuServer, Quota, region  # noqa: E402

# Windows no device may be given as DMA addresses: the GIC and its MSI
# doorbell frame, and the PCIe host bridge's MMIO windows.
RESERVED = (
    (0x0800_0000, 0x0803_FFFF),
    (0x1000_0000, 0x3EFE_FFFF),
    (0x80_0000_0000, 0xFF_FFFF_FFFF),
)
DRIVER_QUOTA = Quota(objects=16, ioases=4, mapped_pages=64, table_pages=16, hwpts=4, mappings=16)
MANAGER_QUOTA = Quota(objects=4, ioases=1, mapped_pages=0, table_pages=0, hwpts=0, mappings=0)
NVME_QUOTA = Quota(objects=8, ioases=1, mapped_pages=96, table_pages=16, hwpts=1, mappings=16)
# The NVMe disk (`make run` gives QEMU 4 MiB) in 512-byte blocks, halved
# between the two block clients.
DISK_BLOCKS = 8192


def build(drivers: int = 2) -> IommuServer:
    if not 2 <= drivers <= 15:
        raise ValueError("the story needs 2 to 15 drivers (BAR windows and edu slots)")
    sdf = SD(SD.Arch.AARCH64, 0x1_0000_0000)
    # The page-table pool holds every client's table pages and the static
    # spaces' (two spaces of one 64 KiB region: 4 pages each).
    promised = DRIVER_QUOTA.table_pages * drivers + NVME_QUOTA.table_pages + 2 * 4
    iommu = IommuServer(sdf, page_tables_size=max(0x40000, promised * 0x1000))
    names = [f"edu_{chr(ord('a') + n)}" for n in range(drivers)]
    pds = [
        SD.ProtectionDomain(name, "edu_driver.elf", priority=100 - 10 * n)
        for n, name in enumerate(names)
    ]
    manager = SD.ProtectionDomain("manager", "manager.elf", priority=150)
    sdf.add_pd(manager)
    # The drivers are the manager's children: their faults go to it.
    for n, pd in enumerate(pds):
        manager.add_child_pd(pd, child_id=n)
    clients = [iommu.add_client(pd, quota=DRIVER_QUOTA) for pd in pds]
    # The NVMe driver and its two block clients.
    # The NVMe driver is the manager's child too.
    nvme = SD.ProtectionDomain("nvme_driver", "nvme_driver.elf", priority=120, stack_size=0x10000)
    manager.add_child_pd(nvme, child_id=drivers)
    nvme_client = iommu.add_client(nvme, quota=NVME_QUOTA, server_channel=drivers + 2)
    iommu.add_client(manager, quota=MANAGER_QUOTA, manager=True, server_channel=drivers + 1)
    for n, (pd, client) in enumerate(zip(pds, clients)):
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
            qemu="edu,dma_mask=0xffffffffffffffff",
        )
        # BAR0 in the 32-bit window at the slot the demo assigns.
        bar = region(sdf, f"{name}_bar", 0x10_0000, paddr=0x1000_0000 + n * 0x10_0000)
        pd.add_map(SD.Map(bar, 0x2010_0000, "rw", cached=False, setvar_vaddr="edu_regs"))
        iommu.add_dma(client, f"{name}_dma", 0x10000, vaddr=0x3000_0000, setvar_vaddr="dma_buffer")
        iommu.add_setvar(pd, "edu_bar_paddr", f"{name}_bar")

    iommu.add_pci_device(
        nvme_client,
        "nvme",
        bus=0,
        device=drivers + 1,
        function=0,
        dma_mask=(1 << 40) - 1,
        reserved=RESERVED,
        config_vaddr=0x2000_1000,
        qemu="nvme,serial=iommu-nvme,drive=disk0",
        disk_blocks=DISK_BLOCKS,
    )
    # Client index `drivers` is the NVMe driver's BAR slot in the demo.
    bar = region(sdf, "nvme_bar", 0x10_0000, paddr=0x1000_0000 + drivers * 0x10_0000)
    nvme.add_map(SD.Map(bar, 0x2010_0000, "rw", cached=False, setvar_vaddr="nvme_regs"))
    iommu.add_dma(nvme_client, "nvme_queues", 0x10000, vaddr=0x3000_0000)
    iommu.add_setvar(nvme, "nvme_bar_paddr", "nvme_bar")
    for k, (mode, priority) in enumerate((("static", 80), ("strict", 70))):
        blk = SD.ProtectionDomain(f"blk_{mode}", "blk_client.elf", priority=priority)
        sdf.add_pd(blk)
        share = DISK_BLOCKS // 2
        data = iommu.add_dma(
            nvme_client,
            f"blk_{mode}_data",
            0x20000,
            vaddr=0x3100_0000 + k * 0x100_0000,
            mode=mode,
            share=(k * share, share),
        )
        blk.add_map(SD.Map(data, 0x4000_0000, "rw"))
        ring = region(sdf, f"blk_{mode}_ring", 0x1000)
        # The ring: the other region the driver and the client both map.
        nvme.add_map(SD.Map(ring, 0x3300_0000 + k * 0x1000, "rw"))
        blk.add_map(SD.Map(ring, 0x4100_0000, "rw"))
        sdf.add_channel(SD.Channel(nvme, blk, a_id=k + 1, b_id=0))
    # The manager and its drivers pace the story (the PDs find these
    # channels by peer, whatever their ids).
    for n, pd in enumerate(pds):
        sdf.add_channel(SD.Channel(manager, pd, a_id=n + 1, b_id=1))
    # Two drivers that never call the server, confined by Microkit's
    # <io_address_space> alone: the first's region pinned and iomapped at
    # its physical address, told of its faults and paced through a
    # quarantine by the manager; the second's placed by the tool and
    # iomapped at 4 GiB, its faults to the manager.
    statics = [chr(ord("a") + drivers + k) for k in range(2)]
    names = [f"edu_{c}" for c in statics]
    spds = [SD.ProtectionDomain(name, "edu_static.elf", priority=60 - 5 * k) for k, name in enumerate(names)]
    configs = [
        region(sdf, f"{name}_config", 0x1000, paddr=QEMU_VIRT_ECAM + ((drivers + 2 + k) << 15))
        for k, name in enumerate(names)
    ]
    bars = [
        region(sdf, f"{name}_bar", 0x10_0000, paddr=0x1000_0000 + (drivers + 2 + k) * 0x10_0000)
        for k, name in enumerate(names)
    ]
    dmas = [
        region(sdf, f"{names[0]}_dma", 0x10000, paddr=0x5F00_0000),
        region(sdf, f"{names[1]}_dma", 0x10000),
    ]
    for k, (pd, name) in enumerate(zip(spds, names)):
        sdf.add_pd(pd)
        pd.add_map(SD.Map(configs[k], 0x2000_1000, "rw", cached=False, setvar_vaddr="pci_config"))
        pd.add_map(SD.Map(bars[k], 0x2010_0000, "rw", cached=False, setvar_vaddr="edu_regs"))
        pd.add_map(SD.Map(dmas[k], 0x3000_0000, "rw", setvar_vaddr="dma_buffer"))
        iommu.add_setvar(pd, "dma_paddr", f"{name}_dma")
        iommu.add_setvar(pd, "edu_bar_paddr", f"{name}_bar")
    qemu = "edu,dma_mask=0xffffffffffffffff"
    iommu.add_static_device(
        f"{names[0]}_space",
        peripheral_id=f"00:{drivers + 2:02x}.0",
        domain_id=1,
        iomaps=[(f"{names[0]}_dma", 0x5F00_0000, "rw")],
        pinned=(f"{names[0]}_dma",),
        faults=spds[0],
        faults_channel=(drivers + 3, 0),
        qemu=qemu,
    )
    sdf.add_channel(SD.Channel(manager, spds[0], a_id=drivers + 1, b_id=1))
    iommu.add_static_device(
        f"{names[1]}_space",
        peripheral_id=f"00:{drivers + 3:02x}.0",
        domain_id=2,
        iomaps=[(f"{names[1]}_dma", 0x1_0000_0000, "rw")],
        qemu=qemu,
    )
    return iommu


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--drivers", type=int, default=2)
    args.add_argument("out", type=Path)
    opts = args.parse_args()
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    system, policy = build(opts.drivers).render()
    (out / "system.xml").write_text(system)
    (out / "iommu.xml").write_text(policy)


if __name__ == "__main__":
    main()
