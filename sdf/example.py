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

from iommu_sdf import EDU_QUOTA, NVME_QUOTA, BuiltSystem, QemuVirtSystem

# The NVMe disk (`make run` gives QEMU 4 MiB) in 512-byte blocks, halved
# between the two block clients.
DISK_BLOCKS = 8192


def example(drivers: int = 2) -> QemuVirtSystem:
    """The example's drivers, not built yet: add your own, then `build()`."""
    if not 2 <= drivers <= 15:
        raise ValueError("the story needs 2 to 15 drivers (BAR windows and edu slots)")
    # The page-table pool holds every client's table pages and the static
    # spaces' (two spaces of one 64 KiB region: 4 pages each).
    promised = EDU_QUOTA.table_pages * drivers + NVME_QUOTA.table_pages + 2 * 4
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


def build(drivers: int = 2) -> BuiltSystem:
    """The example with `drivers` edu drivers and the two static-space
    drivers after them, built."""
    return example(drivers).build()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--drivers", type=int, default=2)
    args.add_argument("out", type=Path)
    opts = args.parse_args()
    build(opts.drivers).write(opts.out)


if __name__ == "__main__":
    main()
