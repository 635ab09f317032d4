"""A whole system on QEMU virt: the IOMMU server, a manager that
supervises the drivers, and drivers added one call each, with the
conventions the shipped PDs and the bare-metal demo rely on.

    from iommu_sdf import QemuVirtSystem

    system = QemuVirtSystem()
    system.add_edu_driver("edu_a")
    system.add_edu_driver("edu_b")
    nvme = system.add_nvme_driver("nvme_driver", device="nvme", disk_blocks=8192)
    system.add_block_client(nvme, "blk_static", mode="static", share=(0, 4096))
    built = system.build()
    built.write("my-system")          # my-system/system.xml and iommu.xml

What a driver gets (see `add_edu_driver` and `add_nvme_driver`):

- a child PD of the manager (its faults go to the manager, which revokes
  its DMA and restarts it), child ids in the order drivers were added,
  edu-style drivers first;
- a client of the server: its command page (`command_page` setvar) and
  its `pp` channel to the server;
- its PCI function on bus 0, by default at device (slot) client index + 1,
  its configuration page mapped at 0x2000_1000 (`pci_config` setvar);
- BAR0's 1 MiB window at 0x1000_0000 + client index MiB in the PCI MMIO
  window, where the demo programs the BAR, mapped at 0x2010_0000
  (`edu_regs` / `nvme_regs`) with its physical address in
  `edu_bar_paddr` / `nvme_bar_paddr`;
- its DMA region at 0x3000_0000 (an edu driver's `dma_buffer`, an NVMe
  driver's queues);
- an edu driver: a channel to the manager, which paces the story
  (channel `n + 1` at the manager for the n-th edu driver, 1 at the
  driver's end); the PDs find channels by the PD at the other end.

A driver that never calls the server (`add_static_edu_driver`) is no
client: its device is confined by a Microkit `<io_address_space>` alone;
such drivers come after every other, in PCI slots, BAR windows, child
ids and channels.

Clients are numbered edu drivers first, then NVMe drivers, then the
manager; the server's channels edu drivers first, then the manager, then
NVMe drivers.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from sdfgen import SystemDescription as SD

from .server import QEMU_VIRT_ECAM, Client, Device, IommuServer, Quota, region

# QEMU virt's windows no device may be given as DMA addresses: the GIC and
# its MSI doorbell frame, and the PCIe host bridge's MMIO windows.
QEMU_VIRT_RESERVED = (
    (0x0800_0000, 0x0803_FFFF),
    (0x1000_0000, 0x3EFE_FFFF),
    (0x80_0000_0000, 0xFF_FFFF_FFFF),
)
# QEMU virt's 32-bit PCI MMIO window, where BARs go, and the 1 MiB window
# of it each client's device gets (16 of them, as the demo holds).
PCI_MMIO_BASE = 0x1000_0000
BAR_WINDOW = 0x10_0000
BAR_WINDOWS = 16
# Slots 1..31 of bus 0 (slot 0 is the host bridge).
PCI_SLOTS = 32

EDU_QUOTA = Quota(objects=16, ioases=4, mapped_pages=64, table_pages=16, hwpts=4, mappings=16)
NVME_QUOTA = Quota(objects=8, ioases=1, mapped_pages=96, table_pages=16, hwpts=1, mappings=16)
MANAGER_QUOTA = Quota(objects=4, ioases=1, mapped_pages=0, table_pages=0, hwpts=0, mappings=0)
# The QEMU devices: edu with all of its 64 DMA address bits, and nvme on
# the disk `make run` gives QEMU (`drive=disk0`).
EDU_QEMU = "edu,dma_mask=0xffffffffffffffff"
NVME_QEMU = "nvme,serial=iommu-nvme,drive=disk0"

# Where each PD finds its memory (the shipped PDs' setvars say so too).
COMMAND_VADDR = 0x2000_0000
CONFIG_VADDR = 0x2000_1000
BAR_VADDR = 0x2010_0000
DMA_VADDR = 0x3000_0000
BLOCK_DATA_VADDR = 0x3100_0000
BLOCK_RING_VADDR = 0x3300_0000
CLIENT_DATA_VADDR = 0x4000_0000
CLIENT_RING_VADDR = 0x4100_0000
# A driver's block clients' data regions lie 16 MiB apart from
# BLOCK_DATA_VADDR, below its rings: room for two.
MAX_BLOCK_CLIENTS = 2


@dataclass
class Driver:
    """A driver PD added by `add_edu_driver` or `add_nvme_driver`; what
    `build` adds for it (client, device, regions, ids) is filled in then."""

    kind: str
    pd: SD.ProtectionDomain
    device_name: str
    quota: Quota
    pci: Optional[Tuple[int, int, int]]
    qemu: Optional[str]
    reserved: Tuple[Tuple[int, int], ...]
    dma_size: int
    disk_blocks: Optional[int] = None
    blocks: List["BlockClient"] = field(default_factory=list)
    client: Optional[Client] = None
    device: Optional[Device] = None
    bar: Optional[SD.MemoryRegion] = None
    dma: Optional[SD.MemoryRegion] = None
    child_id: Optional[int] = None
    index: Optional[int] = None

    @property
    def name(self) -> str:
        return self.pd.name


@dataclass
class BlockClient:
    """A block client of an NVMe driver: its data region (DMA memory of the
    driver, mapped once (`static`) or per request (`strict`)) and its
    request/response ring, both shared with the driver."""

    pd: SD.ProtectionDomain
    mode: str
    share: Tuple[int, int]
    data_size: int
    data: Optional[SD.MemoryRegion] = None
    ring: Optional[SD.MemoryRegion] = None

    @property
    def name(self) -> str:
        return self.pd.name


@dataclass
class StaticDriver:
    """An edu driver PD added by `add_static_edu_driver`: no client of the
    server; what `build` adds for it (regions, space, ids) is filled in
    then."""

    pd: SD.ProtectionDomain
    iova: int
    paddr: Optional[int]
    supervised: bool
    own_faults: bool
    pci: Optional[Tuple[int, int, int]]
    qemu: Optional[str]
    dma_size: int
    space: Optional[str] = None
    config: Optional[SD.MemoryRegion] = None
    bar: Optional[SD.MemoryRegion] = None
    dma: Optional[SD.MemoryRegion] = None
    child_id: Optional[int] = None

    @property
    def name(self) -> str:
        return self.pd.name


@dataclass
class BuiltSystem:
    """What `QemuVirtSystem.build` made: the sdfgen description, the server,
    the manager's client and every driver and block client, by name."""

    sdf: SD
    server: IommuServer
    manager: Client
    drivers: Dict[str, Driver]
    block_clients: Dict[str, BlockClient]
    static_drivers: Dict[str, StaticDriver] = field(default_factory=dict)

    @property
    def clients(self) -> List[Client]:
        """The server's clients, in client-index order."""
        return self.server.clients

    def render(self) -> Tuple[str, str]:
        """system.xml and iommu.xml."""
        return self.server.render()

    def write(self, out: Union[str, Path]) -> Tuple[Path, Path]:
        """Writes `out`/system.xml and `out`/iommu.xml (making `out`)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        system, policy = self.render()
        paths = (out / "system.xml", out / "iommu.xml")
        paths[0].write_text(system)
        paths[1].write_text(policy)
        return paths


class QemuVirtSystem:
    """The IOMMU server and a manager on QEMU virt (an sdfgen description
    of its own unless given `sdf`), to which drivers are added one call
    each; `build` adds everything to the description in the order the
    shipped example has it. `server_options` go to `IommuServer`."""

    def __init__(
        self,
        sdf: Optional[SD] = None,
        *,
        manager: str = "manager",
        manager_image: str = "manager.elf",
        manager_priority: int = 150,
        manager_quota: Quota = MANAGER_QUOTA,
        **server_options,
    ):
        self.sdf = sdf if sdf is not None else SD(SD.Arch.AARCH64, 0x1_0000_0000)
        self.server = IommuServer(self.sdf, **server_options)
        self.manager = SD.ProtectionDomain(manager, manager_image, priority=manager_priority)
        self.sdf.add_pd(self.manager)
        self.manager_quota = manager_quota
        self.edu: List[Driver] = []
        self.nvme: List[Driver] = []
        self.statics: List[StaticDriver] = []
        self.built: Optional[BuiltSystem] = None

    def _names(self) -> List[str]:
        drivers = self.edu + self.nvme
        blocks = [b.name for d in self.nvme for b in d.blocks]
        statics = [d.name for d in self.statics]
        return [self.server.pd.name, self.manager.name] + [d.name for d in drivers] + blocks + statics

    def _pd(self, name: str, image: str, priority: int, stack_size: Optional[int]) -> SD.ProtectionDomain:
        if self.built is not None:
            raise RuntimeError("the system is built: add drivers before build()")
        if name in self._names():
            raise ValueError(f"a PD named {name!r} is already in the system")
        if stack_size is None:
            return SD.ProtectionDomain(name, image, priority=priority)
        return SD.ProtectionDomain(name, image, priority=priority, stack_size=stack_size)

    def add_edu_driver(
        self,
        name: str,
        *,
        image: str = "edu_driver.elf",
        priority: Optional[int] = None,
        stack_size: Optional[int] = None,
        pci: Optional[Tuple[int, int, int]] = None,
        quota: Quota = EDU_QUOTA,
        dma_size: int = 0x10000,
        qemu: Optional[str] = EDU_QEMU,
        reserved: Tuple[Tuple[int, int], ...] = QEMU_VIRT_RESERVED,
    ) -> Driver:
        """An edu-style driver PD `name` running `image`: a client with its
        PCI device `name` (at `pci`, `(bus, device, function)`, by default
        bus 0 at slot client index + 1), BAR window `<name>_bar`
        (`edu_regs`, `edu_bar_paddr`), DMA region `<name>_dma`
        (`dma_buffer`), a child of the manager with a channel to it. Its
        priority is by default 100 less 10 per edu driver before it. (The
        bare-metal demo reaches devices on bus 0 only.)"""
        if priority is None:
            priority = 100 - 10 * len(self.edu)
        pd = self._pd(name, image, priority, stack_size)
        driver = Driver("edu", pd, name, quota, pci, qemu, tuple(reserved), dma_size)
        self.edu.append(driver)
        return driver

    def add_nvme_driver(
        self,
        name: str,
        *,
        device: Optional[str] = None,
        image: str = "nvme_driver.elf",
        priority: int = 120,
        stack_size: Optional[int] = 0x10000,
        pci: Optional[Tuple[int, int, int]] = None,
        quota: Quota = NVME_QUOTA,
        queues_size: int = 0x10000,
        disk_blocks: int = 8192,
        qemu: Optional[str] = NVME_QEMU,
        reserved: Tuple[Tuple[int, int], ...] = QEMU_VIRT_RESERVED,
    ) -> Driver:
        """An NVMe-style driver PD `name` running `image`: a client with its
        controller `device` (`name` unless given; a disk of `disk_blocks`
        512-byte blocks that its block clients share, at `pci` or by
        default bus 0 at slot client index + 1), BAR window
        `<device>_bar` (`nvme_regs`, `nvme_bar_paddr`), its queues in DMA
        region `<device>_queues`, a child of the manager. Add its block
        clients with `add_block_client`."""
        pd = self._pd(name, image, priority, stack_size)
        driver = Driver(
            "nvme", pd, device or name, quota, pci, qemu, tuple(reserved), queues_size, disk_blocks
        )
        self.nvme.append(driver)
        return driver

    def add_block_client(
        self,
        driver: Driver,
        name: str,
        *,
        mode: str,
        share: Tuple[int, int],
        image: str = "blk_client.elf",
        priority: Optional[int] = None,
        data_size: int = 0x20000,
    ) -> BlockClient:
        """A block client PD `name` of NVMe driver `driver`, owning blocks
        `share` (`(first_block, blocks)`) of its disk: its data region
        `<name>_data` (DMA memory of the driver, mapped `mode`: "static"
        or "strict") and its ring `<name>_ring`, mapped into both, and a
        channel between them. Its priority is by default 80 less 10 per
        block client of the driver before it."""
        if driver.kind != "nvme" or driver not in self.nvme:
            raise ValueError(f"{driver.name} is not an NVMe driver of this system")
        if mode not in ("static", "strict"):
            raise ValueError(f"mode {mode!r} is neither static nor strict")
        first, blocks = share
        if first < 0 or blocks < 1 or first + blocks > driver.disk_blocks:
            raise ValueError(
                f"share {share!r} is not (first_block, blocks >= 1) inside the "
                f"{driver.disk_blocks} blocks of {driver.device_name}"
            )
        if len(driver.blocks) == MAX_BLOCK_CLIENTS:
            raise ValueError(f"{driver.name} has {MAX_BLOCK_CLIENTS} block clients already")
        if priority is None:
            priority = 80 - 10 * len(driver.blocks)
        pd = self._pd(name, image, priority, None)
        client = BlockClient(pd, mode, share, data_size)
        driver.blocks.append(client)
        return client

    def add_static_edu_driver(
        self,
        name: str,
        *,
        iova: int,
        paddr: Optional[int] = None,
        supervised: bool = False,
        own_faults: bool = False,
        image: str = "edu_static.elf",
        priority: Optional[int] = None,
        stack_size: Optional[int] = None,
        pci: Optional[Tuple[int, int, int]] = None,
        dma_size: int = 0x10000,
        qemu: Optional[str] = EDU_QEMU,
    ) -> StaticDriver:
        """An edu driver PD `name` running `image` that never calls the
        server: its device is confined by Microkit's `<io_address_space>`
        `<name>_space` alone (domain id: one more than the static spaces
        before it), which iomaps its DMA region `<name>_dma`
        (`dma_buffer`, its physical address in `dma_paddr`) at `iova`,
        read-write. The region is pinned at `paddr` when given, else the
        tool places it (and the server learns its address by a setvar).
        Its PCI function is at `pci`, or on bus 0 at slot n + 1, n its
        position among all drivers (edu and NVMe drivers first); its
        configuration page `<name>_config` (`pci_config`) and BAR window
        `<name>_bar` (`edu_regs`, `edu_bar_paddr`), the window after every
        client's. A `supervised` driver is a child of the manager (child
        ids after the other drivers') with a channel to it (the manager's
        next id, 1 at the driver's end): the manager paces it through a
        quarantine and, when it faults, holds its space and restarts it.
        With `own_faults` the server tells the driver itself of its
        device's faults, over a channel of their own (the server's next id
        after its clients', 0 at the driver's end); else it tells the
        manager. Its priority is by default 60 less 5 per static driver
        before it."""
        if priority is None:
            priority = 60 - 5 * len(self.statics)
        pd = self._pd(name, image, priority, stack_size)
        driver = StaticDriver(pd, iova, paddr, supervised, own_faults, pci, qemu, dma_size)
        self.statics.append(driver)
        return driver

    def build(self) -> BuiltSystem:
        """Adds every driver, its client, device, memory and channels to the
        description, and returns the whole system (once)."""
        if self.built is not None:
            raise RuntimeError("the system is built already")
        if len(self.edu) + len(self.nvme) > BAR_WINDOWS:
            raise ValueError(f"{BAR_WINDOWS} BAR windows: at most {BAR_WINDOWS} drivers")
        sdf, server = self.sdf, self.server
        drivers = self.edu + self.nvme
        # Every mistake is refused before anything is added.
        functions = self._pci_functions(drivers + self.statics, len(server.clients))
        # The drivers are the manager's children: their faults go to it.
        for child_id, d in enumerate(drivers):
            d.child_id = child_id
            self.manager.add_child_pd(d.pd, child_id=child_id)
        # Clients: edu drivers, NVMe drivers, then the manager, whose
        # channel to the server follows the edu drivers'.
        for d in self.edu:
            d.client = server.add_client(d.pd, quota=d.quota)
        for k, d in enumerate(self.nvme):
            d.client = server.add_client(
                d.pd, quota=d.quota, server_channel=len(self.edu) + 2 + k
            )
        manager = server.add_client(
            self.manager, quota=self.manager_quota, manager=True, server_channel=len(self.edu) + 1
        )
        for d, (bus, device, function) in zip(drivers, functions[: len(drivers)]):
            index = d.index = server.clients.index(d.client)
            d.device = server.add_pci_device(
                d.client,
                d.device_name,
                bus=bus,
                device=device,
                function=function,
                dma_mask=(1 << 40) - 1,
                reserved=d.reserved,
                config_vaddr=CONFIG_VADDR,
                qemu=d.qemu,
                disk_blocks=d.disk_blocks,
            )
            # BAR0 in the 32-bit window at the slot the demo assigns.
            regs = "edu_regs" if d.kind == "edu" else "nvme_regs"
            d.bar = region(sdf, f"{d.device_name}_bar", BAR_WINDOW, paddr=PCI_MMIO_BASE + index * BAR_WINDOW)
            d.pd.add_map(SD.Map(d.bar, BAR_VADDR, "rw", cached=False, setvar_vaddr=regs))
            if d.kind == "edu":
                d.dma = server.add_dma(
                    d.client, f"{d.name}_dma", d.dma_size, vaddr=DMA_VADDR, setvar_vaddr="dma_buffer"
                )
                server.add_setvar(d.pd, "edu_bar_paddr", f"{d.device_name}_bar")
            else:
                d.dma = server.add_dma(d.client, f"{d.device_name}_queues", d.dma_size, vaddr=DMA_VADDR)
                server.add_setvar(d.pd, "nvme_bar_paddr", f"{d.device_name}_bar")
                self._block_clients(d)
        # The manager and its edu drivers pace the story.
        for n, d in enumerate(self.edu):
            sdf.add_channel(SD.Channel(self.manager, d.pd, a_id=n + 1, b_id=1))
        self._static_drivers(functions[len(drivers) :])
        self.built = BuiltSystem(
            sdf,
            server,
            manager,
            {d.name: d for d in drivers},
            {b.name: b for d in self.nvme for b in d.blocks},
            {d.name: d for d in self.statics},
        )
        return self.built

    def _static_drivers(self, functions: List[Tuple[int, int, int]]) -> None:
        """The static drivers, after everything else: their regions (every
        configuration page, then every BAR window, then every DMA region),
        their PDs, maps and setvars, then their spaces and channels."""
        sdf, server = self.sdf, self.server
        windows = len(server.clients)
        for d, (bus, device, function) in zip(self.statics, functions):
            devfn = device << 3 | function
            d.config = region(sdf, f"{d.name}_config", 0x1000, paddr=QEMU_VIRT_ECAM + (bus << 20 | devfn << 12))
        for k, d in enumerate(self.statics):
            d.bar = region(sdf, f"{d.name}_bar", BAR_WINDOW, paddr=PCI_MMIO_BASE + (windows + k) * BAR_WINDOW)
        for d in self.statics:
            d.dma = region(sdf, f"{d.name}_dma", d.dma_size, paddr=d.paddr)
        children = len(self.edu) + len(self.nvme)
        for d in self.statics:
            if d.supervised:
                d.child_id = children
                children += 1
                self.manager.add_child_pd(d.pd, child_id=d.child_id)
            else:
                sdf.add_pd(d.pd)
            d.pd.add_map(SD.Map(d.config, CONFIG_VADDR, "rw", cached=False, setvar_vaddr="pci_config"))
            d.pd.add_map(SD.Map(d.bar, BAR_VADDR, "rw", cached=False, setvar_vaddr="edu_regs"))
            d.pd.add_map(SD.Map(d.dma, DMA_VADDR, "rw", setvar_vaddr="dma_buffer"))
            server.add_setvar(d.pd, "dma_paddr", f"{d.name}_dma")
            server.add_setvar(d.pd, "edu_bar_paddr", f"{d.name}_bar")
        # The manager's channels follow its edu drivers', the server's its
        # clients'.
        manager_channel = len(self.edu) + 1
        server_channel = len(server.clients) + 1
        for d, (bus, device, function) in zip(self.statics, functions):
            d.space = f"{d.name}_space"
            faults = None
            if d.own_faults:
                faults = (server_channel, 0)
                server_channel += 1
            server.add_static_device(
                d.space,
                peripheral_id=f"{bus:02x}:{device:02x}.{function}",
                domain_id=len(server.static_spaces) + 1,
                iomaps=[(f"{d.name}_dma", d.iova, "rw")],
                pinned=(f"{d.name}_dma",) if d.paddr is not None else (),
                faults=d.pd if d.own_faults else None,
                faults_channel=faults,
                qemu=d.qemu,
            )
            if d.supervised:
                sdf.add_channel(SD.Channel(self.manager, d.pd, a_id=manager_channel, b_id=1))
                manager_channel += 1

    @staticmethod
    def _pci_functions(
        drivers: List[Union[Driver, StaticDriver]], first_index: int
    ) -> List[Tuple[int, int, int]]:
        """Each driver's PCI function: its own, or bus 0 at slot client
        index + 1 (clients from `first_index`, in `drivers`' order)."""
        taken: Dict[Tuple[int, int, int], str] = {}
        for index, d in enumerate(drivers, first_index):
            bus, device, function = d.pci if d.pci is not None else (0, index + 1, 0)
            if not (0 <= bus < 256 and 0 < device < PCI_SLOTS and 0 <= function < 8):
                raise ValueError(f"{d.name}: no PCI function {bus:02x}:{device:02x}.{function}")
            if (bus, device, function) in taken:
                raise ValueError(
                    f"{d.name}: PCI function {bus:02x}:{device:02x}.{function} is "
                    f"{taken[bus, device, function]}'s"
                )
            taken[bus, device, function] = d.name
        return list(taken)

    def _block_clients(self, driver: Driver) -> None:
        for k, b in enumerate(driver.blocks):
            self.sdf.add_pd(b.pd)
            b.data = self.server.add_dma(
                driver.client,
                f"{b.name}_data",
                b.data_size,
                vaddr=BLOCK_DATA_VADDR + k * 0x100_0000,
                mode=b.mode,
                share=b.share,
            )
            b.pd.add_map(SD.Map(b.data, CLIENT_DATA_VADDR, "rw"))
            b.ring = region(self.sdf, f"{b.name}_ring", 0x1000)
            # The ring: the other region the driver and the client both map.
            driver.pd.add_map(SD.Map(b.ring, BLOCK_RING_VADDR + k * 0x1000, "rw"))
            b.pd.add_map(SD.Map(b.ring, CLIENT_RING_VADDR, "rw"))
            self.sdf.add_channel(SD.Channel(driver.pd, b.pd, a_id=k + 1, b_id=0))
