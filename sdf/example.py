"""The shipped example (system.xml and iommu.xml) built with sdfgen and
the iommu_sdf package: the IOMMU server, edu driver PDs and a manager that
supervises them (the drivers are its child PDs) on QEMU virt, with the edu
devices at PCI 00:01.0, 00:02.0, ..., and an NVMe driver with two block
clients after them.

    python3 sdf/example.py [--drivers N] OUT_DIR

writes OUT_DIR/system.xml and OUT_DIR/iommu.xml with N drivers (2, the
shipped example, by default); tests/sdfgen.rs checks that the default
pair configures the server exactly as the shipped pair does, and boots a
system of three drivers. Needs the package installed (`make sdfgen-venv`,
or `pip install sdf/` into a venv of your own).
"""

import argparse
from pathlib import Path

from sdfgen import SystemDescription as SD

from iommu_sdf import (
    EDU_QEMU,
    EDU_QUOTA,
    NVME_QUOTA,
    QEMU_VIRT_RESERVED,
    BuiltSystem,
    QemuVirtSystem,
    Quota,
    region,
)

# The VMM's share: its guest's 2 MiB of RAM in 4 KiB pages.
VMM_QUOTA = Quota(objects=8, ioases=1, mapped_pages=512, table_pages=8, hwpts=1, mappings=8)
# The guest's RAM: pinned, where the demo keeps pinned regions.
GUEST_RAM_PADDR = 0x5E00_0000
GUEST_RAM_SIZE = 0x20_0000
# The guest's physical map (vmm_core::layout): its RAM, its device's BAR0.
GUEST_RAM_GPA = 0x4000_0000
GUEST_BAR_GPA = 0x1000_0000

# The NVMe disk (`make run` gives QEMU 4 MiB) in 512-byte blocks, halved
# between the two block clients.
DISK_BLOCKS = 8192


def example(drivers: int = 2) -> QemuVirtSystem:
    """The example's drivers, not built yet: add your own, then `build()`."""
    if not 2 <= drivers <= 15:
        raise ValueError("the story needs 2 to 15 drivers (BAR windows and edu slots)")
    # The page-table pool holds every client's table pages and the static
    # spaces' (two spaces of one 64 KiB region: 4 pages each).
    promised = EDU_QUOTA.table_pages * drivers + NVME_QUOTA.table_pages + VMM_QUOTA.table_pages + 2 * 4
    system = QemuVirtSystem(page_tables_size=max(0x40000, promised * 0x1000))
    for n in range(drivers):
        system.add_edu_driver(f"edu_{chr(ord('a') + n)}")
    nvme = system.add_nvme_driver("nvme_driver", device="nvme", disk_blocks=DISK_BLOCKS)
    share = DISK_BLOCKS // 2
    for k, mode in enumerate(("static", "strict")):
        system.add_block_client(nvme, f"blk_{mode}", mode=mode, share=(k * share, share))
    # Two drivers that never call the server, confined by Microkit's
    # <io_address_space> alone: the first's region pinned and iomapped at
    # its physical address, told of its faults itself, paced through a
    # quarantine by the manager and, as its child, held and restarted by it
    # when it faults; the second's placed by the tool and iomapped at
    # 4 GiB, its faults to the manager.
    first, second = (f"edu_{chr(ord('a') + drivers + k)}" for k in range(2))
    system.add_static_edu_driver(first, iova=0x5F00_0000, paddr=0x5F00_0000, supervised=True, own_faults=True)
    system.add_static_edu_driver(second, iova=0x1_0000_0000)
    return system


def add_vmm(built: BuiltSystem, drivers: int) -> None:
    """A VMM, the server's client for its guest's edu device (the PCI slot
    after the static drivers'): its guest's RAM, pinned, is its one DMA
    region, which it maps for the device at guest-physical addresses with
    VFIO type1 calls (docs/vm.md); it programs the device's configuration
    page itself, its BAR0 window after the static drivers' and one more."""
    sdf, iommu = built.sdf, built.server
    pd = SD.ProtectionDomain("vmm", "vmm.elf", priority=110)
    sdf.add_pd(pd)
    client = iommu.add_client(pd, quota=VMM_QUOTA, server_channel=drivers + 4)
    slot = drivers + 4
    iommu.add_pci_device(
        client,
        "guest_edu",
        bus=0,
        device=slot,
        function=0,
        reserved=QEMU_VIRT_RESERVED,
        config_vaddr=0x2000_1000,
        qemu=EDU_QEMU,
    )
    bar = region(sdf, "guest_edu_bar", 0x10_0000, paddr=0x1000_0000 + (slot + 1) * 0x10_0000)
    ram = region(sdf, "guest_ram", GUEST_RAM_SIZE, paddr=GUEST_RAM_PADDR)
    pd.add_map(SD.Map(ram, 0x3000_0000, "rw", setvar_vaddr="guest_ram"))
    # BAR0 for the VMM's own timed round trips before the guest first runs
    # (docs/benchmarks.md).
    pd.add_map(SD.Map(bar, 0x2010_0000, "rw", cached=False, setvar_vaddr="guest_edu_regs"))
    client.dma.append(("guest_ram", None, None))
    iommu.add_setvar(pd, "guest_edu_bar_paddr", "guest_edu_bar")
    # The guest: one vCPU, its RAM where QEMU virt puts RAM and its
    # device's BAR0 in its PCI window, below the VMM's priority so that
    # the VMM answers each of its exits at once.
    vm = SD.VirtualMachine("edu_guest", [SD.VirtualMachine.Vcpu(id=0)], priority=105)
    vm.add_map(SD.Map(ram, GUEST_RAM_GPA, "rwx"))
    vm.add_map(SD.Map(bar, GUEST_BAR_GPA, "rw", cached=False))
    pd.set_virtual_machine(vm)
    # The VMM asks the manager to reset its guest's device (docs/vm.md).
    sdf.add_channel(SD.Channel(built.manager.pd, pd, a_id=drivers + 2, b_id=1))


def build(drivers: int = 2) -> BuiltSystem:
    """The example with `drivers` edu drivers, the two static-space
    drivers after them and the VMM, built."""
    built = example(drivers).build()
    add_vmm(built, drivers)
    return built


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--drivers", type=int, default=2)
    args.add_argument("out", type=Path)
    opts = args.parse_args()
    build(opts.drivers).write(opts.out)


if __name__ == "__main__":
    main()
