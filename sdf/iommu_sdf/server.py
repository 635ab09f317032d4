"""The IOMMU server in an sdfgen system description.

sdfgen (https://pypi.org/project/sdfgen/) builds the Microkit system
descriptions sDDF and LionsOS systems use. This module adds to one the
IOMMU server, its memory and interrupts, its clients (command pages and
`pp` channels) with their DMA regions and PCI devices, and renders the
`iommu.xml` policy the server's build reads beside `system.xml`:

    sdf = SystemDescription(SystemDescription.Arch.AARCH64, 0x1_0000_0000)
    iommu = IommuServer(sdf)
    driver = SystemDescription.ProtectionDomain("driver", "driver.elf", priority=100)
    sdf.add_pd(driver)
    client = iommu.add_client(driver, quota=Quota(mapped_pages=64))
    iommu.add_dma(client, "driver_dma", 0x10000, vaddr=0x3000_0000,
                  setvar_vaddr="dma_buffer")
    iommu.add_pci_device(client, "nic", bus=0, device=1, function=0,
                         config_vaddr=0x2000_1000)
    system_xml, iommu_xml = iommu.render()

sdfgen has no `<setvar symbol region_paddr>` element, which is how the
server (and a driver, for a BAR) learns a region's physical address when
the Microkit tool places it; `add_setvar` records them and `render` adds
them to the rendered XML, in the PD they belong to.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Tuple
import xml.etree.ElementTree as ET

from sdfgen import SystemDescription as SD

PAGE = 0x1000
# QEMU virt's PCIe ECAM window (bus 0 onwards).
QEMU_VIRT_ECAM = 0x40_1000_0000


@dataclass
class Quota:
    """A client's share of every server resource (iommu.xml's <quota>)."""

    objects: int = 16
    ioases: int = 4
    mapped_pages: int = 64
    table_pages: int = 16
    hwpts: int = 4
    mappings: int = 16


@dataclass
class Device:
    name: str
    stream_id: int
    dma_mask: int
    config_mr: Optional[str]
    reserved: List[Tuple[int, int]] = field(default_factory=list)
    qemu: Optional[str] = None
    # A disk of this many 512-byte blocks, shared among block clients.
    disk_blocks: Optional[int] = None


@dataclass
class Client:
    pd: SD.ProtectionDomain
    command_page: str
    quota: Quota
    manager: bool
    server_channel: int
    # (region, mode, share): mode is None, "static" or "strict"; share is
    # None or a block client's (first_block, blocks) of the disk.
    dma: List[Tuple[str, Optional[str], Optional[Tuple[int, int]]]] = field(default_factory=list)
    devices: List[Device] = field(default_factory=list)


def region(sdf: SD, name: str, size: int, *, paddr: Optional[int] = None) -> SD.MemoryRegion:
    """A memory region added to `sdf` (at `paddr`, or where the tool puts it)."""
    mr = SD.MemoryRegion(sdf, name, size, paddr=paddr)
    sdf.add_mr(mr)
    return mr


class IommuServer:
    """The IOMMU server PD and its memory, added to `sdf`.

    The server maps its regions at fixed addresses of its own: SMMU
    registers, the SMMU's queues and tables, the page-table pool, then one
    page per client's command page, then one per device's configuration
    page."""

    REGS_VADDR = 0x1000_0000
    MEMORY_VADDR = 0x1100_0000
    TABLES_VADDR = 0x1200_0000
    COMMAND_VADDR = 0x1300_0000
    CONFIG_VADDR = 0x1400_0000

    def __init__(
        self,
        sdf: SD,
        *,
        name: str = "iommu_server",
        program_image: str = "iommu_server.elf",
        priority: int = 200,
        stack_size: int = 0x10000,
        smmu_paddr: int = 0x0905_0000,
        smmu_size: int = 0x20000,
        smmu_memory_size: int = 0x80000,
        page_tables_size: int = 0x40000,
        event_irq: int = 106,
        gerror_irq: int = 109,
        event_irq_id: int = 40,
        gerror_irq_id: int = 41,
    ):
        self.sdf = sdf
        self.pd = SD.ProtectionDomain(
            name, program_image, priority=priority, stack_size=stack_size
        )
        self.setvars: List[Tuple[str, str, str]] = []
        self.clients: List[Client] = []
        self.static_spaces: List[Tuple[str, str, int, List[Tuple[str, int, str]], Optional[str], Optional[str]]] = []
        self.configs = 0
        self.smmu_regs = self._mr("smmu_regs", smmu_size, paddr=smmu_paddr)
        self.smmu_memory = self._mr("smmu_memory", smmu_memory_size)
        self.page_tables = self._mr("iommu_page_tables", page_tables_size)
        self.pd.add_map(SD.Map(self.smmu_regs, self.REGS_VADDR, "rw", cached=False))
        self.pd.add_map(SD.Map(self.smmu_memory, self.MEMORY_VADDR, "rw"))
        self.pd.add_map(SD.Map(self.page_tables, self.TABLES_VADDR, "rw"))
        self.add_setvar(self.pd, "smmu_memory_paddr", "smmu_memory")
        self.add_setvar(self.pd, "page_tables_paddr", "iommu_page_tables")
        edge = SD.IrqConventional.Trigger.EDGE
        self.pd.add_irq(SD.IrqConventional(event_irq, trigger=edge, id=event_irq_id))
        self.pd.add_irq(SD.IrqConventional(gerror_irq, trigger=edge, id=gerror_irq_id))
        self.irqs = (event_irq, gerror_irq)
        sdf.add_pd(self.pd)

    def _mr(self, name: str, size: int, paddr: Optional[int] = None) -> SD.MemoryRegion:
        return region(self.sdf, name, size, paddr=paddr)

    def add_setvar(self, pd: SD.ProtectionDomain, symbol: str, region: str) -> None:
        """`<setvar symbol region_paddr>` in `pd`: the region's physical
        address, patched by the Microkit tool (sdfgen lacks the element)."""
        self.setvars.append((pd.name, symbol, region))

    def add_client(
        self,
        pd: SD.ProtectionDomain,
        *,
        quota: Quota = Quota(),
        manager: bool = False,
        command_vaddr: int = 0x2000_0000,
        server_channel: Optional[int] = None,
        client_channel: int = 0,
    ) -> Client:
        """A client: its command page mapped rw into it (found through the
        `command_page` setvar) and into the server, and a channel on which
        it calls the server (`pp` at its end)."""
        index = len(self.clients)
        name = f"{pd.name}_command"
        page = self._mr(name, PAGE)
        self.pd.add_map(SD.Map(page, self.COMMAND_VADDR + index * PAGE, "rw"))
        pd.add_map(SD.Map(page, command_vaddr, "rw", setvar_vaddr="command_page"))
        if server_channel is None:
            server_channel = index + 1
        self.sdf.add_channel(
            SD.Channel(self.pd, pd, a_id=server_channel, b_id=client_channel, pp_b=True)
        )
        client = Client(pd, name, quota, manager, server_channel)
        self.clients.append(client)
        return client

    def add_dma(
        self,
        client: Client,
        name: str,
        size: int,
        *,
        vaddr: int,
        perms: str = "rw",
        setvar_vaddr: Optional[str] = None,
        mode: Optional[str] = None,
        share: Optional[Tuple[int, int]] = None,
    ) -> SD.MemoryRegion:
        """A DMA region of `client`, placed by the Microkit tool: mapped
        into it; the server learns its physical address (`<name>_paddr`).
        `mode` ("static" or "strict") says how its driver maps it for a
        block client it shares the region with (map that PD's side
        yourself), and `share`, `(first_block, blocks)`, that client's
        blocks of the driver's disk (see `add_pci_device`'s
        `disk_blocks`): the driver refuses it any other."""
        if mode not in (None, "static", "strict"):
            raise ValueError(f"mode {mode!r} is neither static nor strict")
        if share is not None and (share[1] < 1 or share[0] < 0):
            raise ValueError(f"share {share!r} is not (first_block, blocks >= 1)")
        mr = self._mr(name, size)
        client.pd.add_map(SD.Map(mr, vaddr, perms, setvar_vaddr=setvar_vaddr))
        self.add_setvar(self.pd, f"{name}_paddr", name)
        client.dma.append((name, mode, share))
        return mr

    def add_pci_device(
        self,
        client: Client,
        name: str,
        *,
        bus: int,
        device: int,
        function: int,
        dma_mask: int = (1 << 40) - 1,
        reserved: Tuple[Tuple[int, int], ...] = (),
        config_vaddr: Optional[int] = None,
        ecam: int = QEMU_VIRT_ECAM,
        qemu: Optional[str] = None,
        disk_blocks: Optional[int] = None,
    ) -> Device:
        """A PCI function `client` drives: its stream ID is its requester ID
        (bus << 8 | devfn); its configuration page is mapped uncached into
        the server (to see it) and, at `config_vaddr` with the `pci_config`
        setvar, into the client. `qemu` names the QEMU device simulating
        it (`-device` options without `addr`: `make run` places it).
        `disk_blocks` makes it a disk of that many 512-byte blocks, which
        its block clients share (`add_dma`'s `share`)."""
        devfn = device << 3 | function
        config = self._mr(
            f"{name}_config", PAGE, paddr=ecam + (bus << 20 | devfn << 12)
        )
        self.pd.add_map(SD.Map(config, self.CONFIG_VADDR + self.configs * PAGE, "rw", cached=False))
        self.configs += 1
        if config_vaddr is not None:
            client.pd.add_map(
                SD.Map(config, config_vaddr, "rw", cached=False, setvar_vaddr="pci_config")
            )
        d = Device(
            name, bus << 8 | devfn, dma_mask, f"{name}_config", list(reserved), qemu, disk_blocks
        )
        client.devices.append(d)
        return d

    def add_static_device(
        self,
        name: str,
        *,
        peripheral_id: str,
        domain_id: int,
        iomaps: List[Tuple[str, int, str]],
        pinned: Tuple[str, ...] = (),
        faults: Optional[SD.ProtectionDomain] = None,
        faults_channel: Optional[Tuple[int, int]] = None,
        qemu: Optional[str] = None,
    ) -> None:
        """A device confined by Microkit's `<io_address_space name
        peripheral_id domain_id>` alone, for a driver that never calls the
        server: each `(region name, iovaddr, perms)` of `iomaps` becomes an
        `<iomap>` (perms "r" or "rw"). `peripheral_id` is `bus:dev.fn` or
        a stream ID. The server learns each region's physical address by a
        setvar, added here, unless the region is `pinned` (has a
        phys_addr). `faults` (else the manager) is told of the device's
        faults over a channel with the server, added here (its ids at the
        server's end and the PD's: `faults_channel`); `qemu` names the
        QEMU device simulating it."""
        for mr, _, _ in iomaps:
            known = any(p == self.pd.name and r == mr for p, _, r in self.setvars)
            if mr not in pinned and not known:
                self.add_setvar(self.pd, f"{mr}_paddr", mr)
        if faults is not None:
            ids = faults_channel or (None, None)
            self.sdf.add_channel(SD.Channel(self.pd, faults, a_id=ids[0], b_id=ids[1]))
        self.static_spaces.append(
            (name, peripheral_id, domain_id, list(iomaps), faults.name if faults else None, qemu)
        )

    def render(self) -> Tuple[str, str]:
        """system.xml (sdfgen's, with the setvars added) and iommu.xml."""
        root = ET.fromstring(self.sdf.render())
        for pd_name, symbol, region in self.setvars:
            pd = next(
                p for p in root.iter("protection_domain") if p.get("name") == pd_name
            )
            setvar = ET.Element("setvar", {"symbol": symbol, "region_paddr": region})
            # After the maps, before IRQs and child PDs, as written by hand.
            at = len([c for c in pd if c.tag in ("program_image", "map", "setvar")])
            pd.insert(at, setvar)
        # sdfgen has no <io_address_space>: added as Microkit writes it.
        for name, peripheral, domain_id, iomaps, _, _ in self.static_spaces:
            space = ET.SubElement(
                root,
                "io_address_space",
                {"name": name, "peripheral_id": peripheral, "domain_id": str(domain_id)},
            )
            for mr, iova, perms in iomaps:
                ET.SubElement(space, "iomap", {"mr": mr, "iovaddr": hex(iova), "perms": perms})
        ET.indent(root, space="    ")
        system = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
        return system, self.policy()

    def policy(self) -> str:
        """iommu.xml: the server's SMMU, page tables and clients."""
        root = ET.Element("iommu", {"server": self.pd.name})
        ET.SubElement(
            root,
            "smmu",
            {
                "mr": "smmu_regs",
                "memory": "smmu_memory",
                "event_irq": str(self.irqs[0]),
                "gerror_irq": str(self.irqs[1]),
            },
        )
        ET.SubElement(root, "page_tables", {"mr": "iommu_page_tables"})
        for c in self.clients:
            attrs = {"pd": c.pd.name, "command_page": c.command_page}
            if c.manager:
                attrs["manager"] = "true"
            e = ET.SubElement(root, "client", attrs)
            q = c.quota
            ET.SubElement(
                e,
                "quota",
                {
                    "objects": str(q.objects),
                    "ioases": str(q.ioases),
                    "mapped_pages": str(q.mapped_pages),
                    "table_pages": str(q.table_pages),
                    "hwpts": str(q.hwpts),
                    "mappings": str(q.mappings),
                },
            )
            for mr, mode, share in c.dma:
                attrs = {"mr": mr}
                if mode:
                    attrs["mode"] = mode
                if share:
                    attrs["first_block"] = str(share[0])
                    attrs["blocks"] = str(share[1])
                ET.SubElement(e, "dma", attrs)
            for d in c.devices:
                attrs = {
                    "name": d.name,
                    "stream_id": hex(d.stream_id),
                    "dma_mask": hex(d.dma_mask),
                }
                if d.config_mr:
                    attrs["config_mr"] = d.config_mr
                if d.qemu:
                    attrs["qemu"] = d.qemu
                if d.disk_blocks is not None:
                    attrs["disk_blocks"] = str(d.disk_blocks)
                de = ET.SubElement(e, "device", attrs)
                for start, last in d.reserved:
                    ET.SubElement(de, "reserved", {"start": hex(start), "last": hex(last)})
        for name, _, _, _, faults, qemu in self.static_spaces:
            attrs = {"space": name}
            if faults:
                attrs["faults"] = faults
            if qemu:
                attrs["qemu"] = qemu
            ET.SubElement(root, "static_device", attrs)
        ET.indent(root, space="    ")
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
