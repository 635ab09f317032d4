"""iommu_sdf's own tests: `python3 -m unittest discover -s sdf` (needs
sdfgen; tests/sdfgen.rs runs them)."""

import unittest
import xml.etree.ElementTree as ET

from sdfgen import SystemDescription as SD

from iommu_sdf import IommuServer, Quota


def system():
    sdf = SD(SD.Arch.AARCH64, 0x1_0000_0000)
    iommu = IommuServer(sdf)
    nic = SD.ProtectionDomain("nic", "nic.elf", priority=100)
    sdf.add_pd(nic)
    client = iommu.add_client(nic, quota=Quota(mapped_pages=8))
    iommu.add_dma(client, "nic_dma", 0x4000, vaddr=0x3000_0000, setvar_vaddr="dma")
    iommu.add_pci_device(client, "nic", bus=1, device=2, function=3, config_vaddr=0x2000_1000)
    return iommu.render()


class Render(unittest.TestCase):
    def test_the_server_learns_its_regions_physical_addresses(self):
        root = ET.fromstring(system()[0])
        server = next(p for p in root.iter("protection_domain") if p.get("name") == "iommu_server")
        setvars = {s.get("symbol"): s.get("region_paddr") for s in server.iter("setvar")}
        self.assertEqual(
            setvars,
            {
                "smmu_memory_paddr": "smmu_memory",
                "page_tables_paddr": "iommu_page_tables",
                "nic_dma_paddr": "nic_dma",
            },
        )
        # Setvars follow the maps, before the IRQs.
        tags = [c.tag for c in server]
        self.assertLess(tags.index("setvar"), tags.index("irq"))
        self.assertGreater(tags.index("setvar"), max(i for i, t in enumerate(tags) if t == "map"))

    def test_a_client_calls_on_a_pp_channel_and_finds_its_page(self):
        root = ET.fromstring(system()[0])
        nic = next(p for p in root.iter("protection_domain") if p.get("name") == "nic")
        page = next(m for m in nic.iter("map") if m.get("mr") == "nic_command")
        self.assertEqual(page.get("setvar_vaddr"), "command_page")
        ends = [(e.get("pd"), e.get("id"), e.get("pp")) for e in root.iter("end")]
        self.assertIn(("nic", "0", "true"), ends)
        self.assertIn(("iommu_server", "1", None), ends)

    def test_the_policy_names_the_device_by_its_requester_id(self):
        root = ET.fromstring(system()[1])
        device = root.find("client/device")
        self.assertEqual(device.get("stream_id"), hex(1 << 8 | 2 << 3 | 3))
        self.assertEqual(device.get("config_mr"), "nic_config")
        self.assertEqual(root.find("client/quota").get("mapped_pages"), "8")
        self.assertEqual(root.find("client/dma").get("mr"), "nic_dma")

    def test_a_static_device_is_microkits_element(self):
        sdf = SD(SD.Arch.AARCH64, 0x1_0000_0000)
        iommu = IommuServer(sdf)
        drv = SD.ProtectionDomain("drv", "drv.elf", priority=50)
        sdf.add_pd(drv)
        dma = SD.MemoryRegion(sdf, "drv_dma", 0x10000)
        sdf.add_mr(dma)
        drv.add_map(SD.Map(dma, 0x3000_0000, "rw"))
        iommu.add_static_device(
            "drv_space", peripheral_id="00:04.0", domain_id=1,
            iomaps=[("drv_dma", 0x1_0000_0000, "rw")], faults=drv, qemu="edu",
        )
        system, policy = iommu.render()
        space = ET.fromstring(system).find("io_address_space")
        self.assertEqual(
            (space.get("name"), space.get("peripheral_id"), space.get("domain_id")),
            ("drv_space", "00:04.0", "1"),
        )
        iomap = space.find("iomap")
        self.assertEqual(
            (iomap.get("mr"), iomap.get("iovaddr"), iomap.get("perms")),
            ("drv_dma", "0x100000000", "rw"),
        )
        device = ET.fromstring(policy).find("static_device")
        self.assertEqual(device.attrib, {"space": "drv_space", "faults": "drv", "qemu": "edu"})
        server = next(p for p in ET.fromstring(system).iter("protection_domain") if p.get("name") == "iommu_server")
        self.assertIn("drv_dma", [v.get("region_paddr") for v in server.iter("setvar")])

    def test_a_block_clients_share_of_the_disk_is_rendered(self):
        sdf = SD(SD.Arch.AARCH64, 0x1_0000_0000)
        iommu = IommuServer(sdf)
        driver = SD.ProtectionDomain("blk_driver", "blk.elf", priority=100)
        sdf.add_pd(driver)
        client = iommu.add_client(driver)
        iommu.add_dma(client, "blk_data", 0x4000, vaddr=0x3000_0000, share=(64, 128))
        iommu.add_pci_device(client, "disk", bus=0, device=3, function=0, disk_blocks=1024)
        root = ET.fromstring(iommu.render()[1])
        dma = root.find("client/dma")
        self.assertEqual((dma.get("first_block"), dma.get("blocks")), ("64", "128"))
        self.assertEqual(root.find("client/device").get("disk_blocks"), "1024")
        with self.assertRaises(ValueError):
            iommu.add_dma(client, "empty", 0x1000, vaddr=0x3100_0000, share=(0, 0))


if __name__ == "__main__":
    unittest.main()
