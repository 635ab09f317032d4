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

from iommu_sdf import BuiltSystem, QemuVirtSystem

# The NVMe disk (`make run` gives QEMU 4 MiB) in 512-byte blocks, halved
# between the two block clients.
DISK_BLOCKS = 8192


def example(drivers: int = 2) -> QemuVirtSystem:
    """The example's drivers, not built yet: add your own, then `build()`."""
    if not 2 <= drivers <= 15:
        raise ValueError("the story needs 2 to 15 drivers (BAR windows and edu slots)")
    system = QemuVirtSystem()
    for n in range(drivers):
        system.add_edu_driver(f"edu_{chr(ord('a') + n)}")
    nvme = system.add_nvme_driver("nvme_driver", device="nvme", disk_blocks=DISK_BLOCKS)
    share = DISK_BLOCKS // 2
    for k, mode in enumerate(("static", "strict")):
        system.add_block_client(nvme, f"blk_{mode}", mode=mode, share=(k * share, share))
    return system


def build(drivers: int = 2) -> BuiltSystem:
    """The example with `drivers` edu drivers, built."""
    return example(drivers).build()


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--drivers", type=int, default=2)
    args.add_argument("out", type=Path)
    opts = args.parse_args()
    build(opts.drivers).write(opts.out)


if __name__ == "__main__":
    main()
