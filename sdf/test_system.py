"""QemuVirtSystem's tests: `python3 -m unittest discover -s sdf` (needs
sdfgen; tests/sdfgen.rs runs them)."""

import unittest
import xml.etree.ElementTree as ET

from iommu_sdf import QemuVirtSystem


def pd_element(root, name):
    return next(p for p in root.iter("protection_domain") if p.get("name") == name)


def with_a_disk():
    system = QemuVirtSystem()
    system.add_edu_driver("edu_a")
    system.add_edu_driver("edu_b")
    disk = system.add_nvme_driver("disk_driver", device="disk", disk_blocks=1024)
    system.add_block_client(disk, "fs", mode="strict", share=(0, 512))
    camera = system.add_edu_driver("camera", pci=(0, 7, 0))
    return system, camera, disk


class OneCallPerDriver(unittest.TestCase):
    def test_an_edu_driver_gets_every_convention_the_pds_rely_on(self):
        system, camera, _ = with_a_disk()
        built = system.build()
        system_xml, policy = built.render()
        root = ET.fromstring(system_xml)
        pd = pd_element(root, "camera")
        # A child of the manager, after the edu drivers before it.
        self.assertIn(pd, list(pd_element(root, "manager")))
        self.assertEqual(pd.get("id"), "2")
        self.assertEqual(pd.get("priority"), "80")
        maps = {m.get("mr"): (m.get("vaddr"), m.get("setvar_vaddr")) for m in pd.iter("map")}
        self.assertEqual(
            maps,
            {
                "camera_command": ("0x20000000", "command_page"),
                "camera_config": ("0x20001000", "pci_config"),
                "camera_bar": ("0x20100000", "edu_regs"),
                "camera_dma": ("0x30000000", "dma_buffer"),
            },
        )
        setvars = {s.get("symbol"): s.get("region_paddr") for s in pd.iter("setvar")}
        self.assertEqual(setvars, {"edu_bar_paddr": "camera_bar"})
        # Client index 2 (edu drivers first): BAR window 2, at 00:07.0 as asked.
        mrs = {m.get("name"): m.get("phys_addr") for m in root.iter("memory_region")}
        self.assertEqual(mrs["camera_bar"], hex(0x1000_0000 + 2 * 0x10_0000))
        self.assertEqual(mrs["camera_config"], hex(0x40_1000_0000 + (7 << 15)))
        self.assertEqual(camera.index, 2)
        self.assertIs(built.clients[2], camera.client)
        # The server's channel and the manager's pacing channel (its third).
        channels = [
            [(e.get("pd"), e.get("id"), e.get("pp")) for e in c.iter("end")]
            for c in root.iter("channel")
        ]
        self.assertIn([("iommu_server", "3", None), ("camera", "0", "true")], channels)
        self.assertIn([("manager", "3", None), ("camera", "1", None)], channels)
        device = next(d for d in ET.fromstring(policy).iter("device") if d.get("name") == "camera")
        self.assertEqual(device.get("stream_id"), hex(7 << 3))
        self.assertEqual(device.get("config_mr"), "camera_config")
        self.assertEqual(device.get("qemu"), "edu,dma_mask=0xffffffffffffffff")
        # The server learns the DMA region's physical address.
        server = pd_element(root, "iommu_server")
        self.assertIn(("camera_dma_paddr", "camera_dma"), [(s.get("symbol"), s.get("region_paddr")) for s in server.iter("setvar")])

    def test_an_nvme_driver_and_its_block_client(self):
        system, _, disk = with_a_disk()
        built = system.build()
        root = ET.fromstring(built.render()[0])
        pd = pd_element(root, "disk_driver")
        # NVMe drivers follow every edu driver, as children and clients.
        self.assertEqual(pd.get("id"), "3")
        self.assertEqual(disk.index, 3)
        maps = {m.get("mr"): (m.get("vaddr"), m.get("setvar_vaddr")) for m in pd.iter("map")}
        self.assertEqual(maps["disk_bar"], ("0x20100000", "nvme_regs"))
        self.assertEqual(maps["disk_queues"], ("0x30000000", None))
        self.assertEqual(maps["fs_data"], ("0x31000000", None))
        self.assertEqual(maps["fs_ring"], ("0x33000000", None))
        setvars = {s.get("symbol"): s.get("region_paddr") for s in pd.iter("setvar")}
        self.assertEqual(setvars, {"nvme_bar_paddr": "disk_bar"})
        mrs = {m.get("name"): m.get("phys_addr") for m in root.iter("memory_region")}
        self.assertEqual(mrs["disk_bar"], hex(0x1000_0000 + 3 * 0x10_0000))
        self.assertEqual(mrs["disk_config"], hex(0x40_1000_0000 + (4 << 15)))
        fs = pd_element(root, "fs")
        self.assertEqual({m.get("mr"): m.get("vaddr") for m in fs.iter("map")}, {"fs_data": "0x40000000", "fs_ring": "0x41000000"})
        policy = ET.fromstring(built.render()[1])
        client = next(c for c in policy.iter("client") if c.get("pd") == "disk_driver")
        data = next(d for d in client.iter("dma") if d.get("mr") == "fs_data")
        self.assertEqual(data.attrib, {"mr": "fs_data", "mode": "strict", "first_block": "0", "blocks": "512"})
        self.assertEqual(client.find("device").get("disk_blocks"), "1024")
        # The manager comes last among the clients, its server channel
        # after the edu drivers'.
        self.assertEqual([c.get("pd") for c in policy.iter("client")], ["edu_a", "edu_b", "camera", "disk_driver", "manager"])
        self.assertTrue(built.manager.manager)
        self.assertEqual(built.manager.server_channel, 4)
        self.assertEqual(disk.client.server_channel, 5)
        self.assertIs(built.block_clients["fs"].pd, system.built.block_clients["fs"].pd)
        self.assertEqual(sorted(built.drivers), ["camera", "disk_driver", "edu_a", "edu_b"])

    def test_mistakes_are_refused_with_a_reason(self):
        system = QemuVirtSystem()
        edu = system.add_edu_driver("edu_a")
        with self.assertRaisesRegex(ValueError, "already in the system"):
            system.add_edu_driver("edu_a")
        with self.assertRaisesRegex(ValueError, "already in the system"):
            system.add_edu_driver("manager")
        with self.assertRaisesRegex(ValueError, "not an NVMe driver"):
            system.add_block_client(edu, "fs", mode="static", share=(0, 1))
        disk = system.add_nvme_driver("disk_driver", disk_blocks=100)
        with self.assertRaisesRegex(ValueError, "inside the 100 blocks"):
            system.add_block_client(disk, "fs", mode="static", share=(50, 51))
        with self.assertRaisesRegex(ValueError, "neither static nor strict"):
            system.add_block_client(disk, "fs", mode="lazy", share=(0, 1))
        system.add_block_client(disk, "fs_a", mode="static", share=(0, 50))
        system.add_block_client(disk, "fs_b", mode="strict", share=(50, 50))
        with self.assertRaisesRegex(ValueError, "2 block clients already"):
            system.add_block_client(disk, "fs_c", mode="strict", share=(0, 1))
        # The NVMe driver follows both edu drivers: client index 2, slot 3.
        system.add_edu_driver("edu_b", pci=(0, 3, 0))
        with self.assertRaisesRegex(ValueError, "^disk_driver: PCI function 00:03.0 is edu_b's$"):
            system.build()
        # Refused before anything was added: the description is as it was.
        self.assertEqual([c.pd.name for c in system.server.clients], [])
        manager = pd_element(ET.fromstring(system.sdf.render()), "manager")
        self.assertEqual(list(manager.iter("protection_domain")), [manager])

    def test_a_static_edu_driver_gets_a_space_of_its_own_and_no_client(self):
        system, _, _ = with_a_disk()
        system.add_static_edu_driver("pinned", iova=0x5F00_0000, paddr=0x5F00_0000, supervised=True, own_faults=True)
        placed = system.add_static_edu_driver("placed", iova=0x1_0000_0000)
        built = system.build()
        system_xml, policy_xml = built.render()
        root, policy = ET.fromstring(system_xml), ET.fromstring(policy_xml)
        manager = pd_element(root, "manager")
        pinned = pd_element(root, "pinned")
        # The supervised one a child of the manager, after the other four
        # drivers; the other a PD of its own.
        self.assertIn(pinned, list(manager))
        self.assertEqual((pinned.get("id"), pinned.get("priority")), ("4", "60"))
        self.assertIn(pd_element(root, "placed"), list(root))
        self.assertEqual(pd_element(root, "placed").get("priority"), "55")
        for name in ("pinned", "placed"):
            pd = pd_element(root, name)
            maps = {m.get("mr"): (m.get("vaddr"), m.get("setvar_vaddr")) for m in pd.iter("map")}
            self.assertEqual(
                maps,
                {
                    f"{name}_config": ("0x20001000", "pci_config"),
                    f"{name}_bar": ("0x20100000", "edu_regs"),
                    f"{name}_dma": ("0x30000000", "dma_buffer"),
                },
                "no command page: it never calls the server",
            )
            setvars = {s.get("symbol"): s.get("region_paddr") for s in pd.iter("setvar")}
            self.assertEqual(setvars, {"dma_paddr": f"{name}_dma", "edu_bar_paddr": f"{name}_bar"})
        # PCI slots after the four drivers' (slots 1, 2, 4 and 7 taken),
        # BAR windows after the five clients'.
        mrs = {m.get("name"): m.get("phys_addr") for m in root.iter("memory_region")}
        self.assertEqual(mrs["pinned_config"], hex(0x40_1000_0000 + (5 << 15)))
        self.assertEqual(mrs["placed_config"], hex(0x40_1000_0000 + (6 << 15)))
        self.assertEqual(mrs["pinned_bar"], hex(0x1000_0000 + 5 * 0x10_0000))
        self.assertEqual(mrs["placed_bar"], hex(0x1000_0000 + 6 * 0x10_0000))
        self.assertEqual(mrs["pinned_dma"], "0x5f000000")
        self.assertIsNone(mrs["placed_dma"])
        spaces = [
            (s.get("name"), s.get("peripheral_id"), s.get("domain_id"), [m.attrib for m in s.iter("iomap")])
            for s in root.iter("io_address_space")
        ]
        self.assertEqual(
            spaces,
            [
                ("pinned_space", "00:05.0", "1", [{"mr": "pinned_dma", "iovaddr": "0x5f000000", "perms": "rw"}]),
                ("placed_space", "00:06.0", "2", [{"mr": "placed_dma", "iovaddr": "0x100000000", "perms": "rw"}]),
            ],
        )
        # The server learns the placed region's address, not the pinned one's.
        server = [s.get("region_paddr") for s in pd_element(root, "iommu_server").iter("setvar")]
        self.assertIn("placed_dma", server)
        self.assertNotIn("pinned_dma", server)
        statics = [(d.get("space"), d.get("faults")) for d in policy.iter("static_device")]
        self.assertEqual(statics, [("pinned_space", "pinned"), ("placed_space", None)])
        # Its faults on a channel of the server's after the clients'; the
        # manager's pacing channel after its three edu drivers'.
        channels = [
            [(e.get("pd"), e.get("id")) for e in c.iter("end")]
            for c in root.iter("channel")
            if "pinned" in [e.get("pd") for e in c.iter("end")]
        ]
        self.assertEqual(channels, [[("iommu_server", "6"), ("pinned", "0")], [("manager", "4"), ("pinned", "1")]])
        self.assertFalse([c for c in root.iter("channel") if "placed" in [e.get("pd") for e in c.iter("end")]])
        self.assertEqual(
            [c.get("pd") for c in policy.iter("client")], ["edu_a", "edu_b", "camera", "disk_driver", "manager"]
        )
        self.assertIs(built.static_drivers["placed"], placed)
        self.assertEqual((placed.space, placed.child_id), ("placed_space", None))

    def test_a_static_edu_drivers_mistakes_are_refused(self):
        system = QemuVirtSystem()
        system.add_edu_driver("edu_a")
        system.add_static_edu_driver("edu_s", iova=0x1_0000_0000)
        with self.assertRaisesRegex(ValueError, "already in the system"):
            system.add_static_edu_driver("edu_a", iova=0x1_0000_0000)
        with self.assertRaisesRegex(ValueError, "already in the system"):
            system.add_edu_driver("edu_s")
        system.add_static_edu_driver("edu_t", iova=0x1_0000_0000, pci=(0, 1, 0))
        with self.assertRaisesRegex(ValueError, "^edu_t: PCI function 00:01.0 is edu_a's$"):
            system.build()
        # Refused before anything was added.
        self.assertEqual(list(ET.fromstring(system.sdf.render()).iter("io_address_space")), [])
        self.assertEqual(system.server.static_spaces, [])
        built = QemuVirtSystem()
        built.build()
        with self.assertRaisesRegex(RuntimeError, "built"):
            built.add_static_edu_driver("edu_s", iova=0x1_0000_0000)

    def test_a_system_is_built_once(self):
        system = QemuVirtSystem()
        system.add_edu_driver("edu_a")
        system.build()
        with self.assertRaisesRegex(RuntimeError, "built"):
            system.add_edu_driver("edu_b")
        with self.assertRaisesRegex(RuntimeError, "built"):
            system.build()

    def test_at_most_one_driver_per_bar_window(self):
        system = QemuVirtSystem()
        for n in range(17):
            system.add_edu_driver(f"edu_{n}", pci=(1, n + 1, 0))
        with self.assertRaisesRegex(ValueError, "16 BAR windows"):
            system.build()


if __name__ == "__main__":
    unittest.main()
