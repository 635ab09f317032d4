//! The shipped example (system.xml and iommu.xml at the top): the pair
//! is consistent and build.rs generated from it what the crate holds. Only
//! tests about the example look at its facts; a user changing the pair
//! changes what these expect.

use iommu_system::{client, client_on, Channel, Paddr, CLIENTS, SERVER, SERVER_SYMBOLS};

const SYSTEM: &str = include_str!("../system.xml");
const POLICY: &str = include_str!("../iommu.xml");

fn load(system: &str, policy: &str) -> Result<sysgen::Config, String> {
    sysgen::load_str("system.xml", system, "iommu.xml", policy)
        .map(|(_, c)| c)
        .map_err(|e| e.to_string())
}

#[test]
fn shipped_pair_generates_the_expected_configuration() {
    let config = load(SYSTEM, POLICY).unwrap();
    assert_eq!(config.clients.len(), 5);
    // What build.rs generated into the crate agrees.
    assert_eq!(SERVER.pd, "iommu_server");
    assert_eq!(SERVER.smmu_regs.paddr, Paddr::Fixed(0x0905_0000));
    assert_eq!(SERVER.smmu_regs.size, 0x2_0000);
    assert_eq!(SERVER.event_irq, Channel::new(40).unwrap());
    assert_eq!(SERVER.gerror_irq, Channel::new(41).unwrap());
    let Paddr::Symbol(pool) = SERVER.page_tables.paddr else {
        panic!("the pool's address comes from a setvar");
    };
    assert_eq!(SERVER_SYMBOLS[pool], "page_tables_paddr");
    let a = client("edu_a").unwrap();
    assert_eq!(a.devices[0].stream_id, iommu_system::StreamId(0x8));
    assert_eq!(a.regions[0].size, 0x1_0000);
    assert_eq!(
        client("edu_b").unwrap().devices[0].stream_id,
        iommu_system::StreamId(0x10)
    );
    assert!(client("manager").unwrap().manager);
    assert!(client("iommu_server").is_none());
    // The VMM: its guest's RAM, pinned, is its DMA region; its device the
    // guest's edu at 00:06.0.
    let vmm = client("vmm").unwrap();
    assert_eq!(vmm.program_image, "vmm.elf");
    assert_eq!(vmm.devices[0].name, "guest_edu");
    assert_eq!(vmm.devices[0].stream_id, iommu_system::StreamId(0x30));
    assert_eq!(
        (vmm.regions[0].mr, vmm.regions[0].size, vmm.regions[0].paddr),
        ("guest_ram", 0x20_0000, Paddr::Fixed(0x5e00_0000))
    );
    assert_eq!(vmm.child_of, None);
    let bar = |pd, symbol| iommu_system::map_by_setvar(pd, symbol).map(|m| (m.paddr, m.size));
    assert_eq!(
        bar("vmm", "guest_edu_regs"),
        Some((Some(0x1070_0000), 0x10_0000))
    );
    assert_eq!(
        bar("edu_a", "edu_regs"),
        Some((Some(0x1000_0000), 0x10_0000))
    );
    assert_eq!(
        iommu_system::channel_to("vmm", "iommu_server"),
        Some(Channel::new(0).unwrap())
    );
    // The drivers (edu and NVMe) are the manager's children, which it
    // restarts.
    assert_eq!(
        iommu_system::child("manager", 0),
        iommu_system::ClientId::from_index(0)
    );
    assert_eq!(
        iommu_system::child("manager", 1),
        iommu_system::ClientId::from_index(1)
    );
    assert_eq!(
        iommu_system::child("manager", 2),
        iommu_system::ClientId::from_index(2),
        "the NVMe driver"
    );
    assert_eq!(iommu_system::child("manager", 3), None);
    assert_eq!(client("manager").unwrap().child_of, None);
    // Channels by peer, as the PDs find them.
    let ch = |id| Channel::new(id).unwrap();
    assert_eq!(iommu_system::channel_to("edu_b", "manager"), Some(ch(1)));
    assert_eq!(iommu_system::channel_to("manager", "edu_b"), Some(ch(2)));
    assert_eq!(
        iommu_system::channel_to("edu_a", "iommu_server"),
        Some(ch(0))
    );
    assert_eq!(
        iommu_system::peer_on("iommu_server", ch(3)),
        Some("manager")
    );
    assert_eq!(iommu_system::channel_to("edu_a", "edu_b"), None);
    // The NVMe driver's block clients: one region mapped once, one strict.
    let nvme = client("nvme_driver").unwrap();
    assert_eq!(nvme.program_image, "nvme_driver.elf");
    assert_eq!(
        nvme.regions
            .iter()
            .map(|r| (r.mr, r.strict, r.shared_with))
            .collect::<Vec<_>>(),
        [
            ("nvme_queues", false, None),
            ("blk_static_data", false, Some("blk_static")),
            ("blk_strict_data", true, Some("blk_strict")),
        ]
    );
    // Each block client's share of the disk: disjoint, the disk's halves.
    assert_eq!(nvme.disk_blocks, Some(8192));
    assert_eq!(
        nvme.regions
            .iter()
            .map(|r| r.share.map(|s| s.range()))
            .collect::<Vec<_>>(),
        [None, Some(0..4096), Some(4096..8192)]
    );
    assert_eq!(
        iommu_system::channel_to("blk_strict", "nvme_driver"),
        Some(ch(0))
    );
    // What the driver and a block client share: the data region and the
    // ring, where the driver maps each.
    let shared: Vec<_> = iommu_system::shared("nvme_driver", "blk_static")
        .map(|m| (m.mr, m.vaddr, m.size))
        .collect();
    assert_eq!(
        shared,
        [
            ("blk_static_data", 0x3100_0000, 0x2_0000),
            ("blk_static_ring", 0x3300_0000, 0x1000)
        ]
    );
    assert_eq!(
        iommu_system::map_by_setvar("nvme_driver", "nvme_regs").map(|m| (m.mr, m.size)),
        Some(("nvme_bar", 0x10_0000))
    );
    assert_eq!(
        sysgen::qemu_devices(&config),
        [
            "-device",
            "edu,dma_mask=0xffffffffffffffff,addr=01.0",
            "-device",
            "edu,dma_mask=0xffffffffffffffff,addr=02.0",
            "-device",
            "nvme,serial=iommu-nvme,drive=disk0,addr=03.0",
            // The guest's device, the VMM's.
            "-device",
            "edu,dma_mask=0xffffffffffffffff,addr=06.0",
            // The static IO address spaces' devices (iommu.xml's
            // <static_device qemu>), at their peripheral IDs.
            "-device",
            "edu,dma_mask=0xffffffffffffffff,addr=04.0",
            "-device",
            "edu,dma_mask=0xffffffffffffffff,addr=05.0"
        ]
    );
    for (i, c) in CLIENTS.iter().enumerate() {
        assert_eq!(
            client_on(c.server_channel),
            iommu_system::ClientId::from_index(i)
        );
    }
    assert_eq!(client_on(SERVER.event_irq), None);
}

#[test]
fn client_configs_resolve_setvar_addresses() {
    let storage = Box::leak(Box::new(
        [iommu_system::Region {
            vaddr: 0,
            size: 0,
            paddr: 0,
            perms: iommu_system::Perms::RO,
        }; iommu_system::TOTAL_REGIONS],
    ));
    let configs = iommu_system::client_configs(storage, |i| 0x6000_0000 + 0x10_0000 * i as u64);
    let a = configs[0].regions[0];
    let Paddr::Symbol(i) = CLIENTS[0].regions[0].paddr else {
        panic!("DMA regions are tool-allocated");
    };
    assert_eq!(a.paddr, 0x6000_0000 + 0x10_0000 * i as u64);
    assert_eq!(a.vaddr, 0x3000_0000);
    assert_eq!(configs[3].name, "manager");
    assert!(configs[3].regions.is_empty());
    // The NVMe driver's queues, then its block clients' data regions.
    assert_eq!(configs[2].name, "nvme_driver");
    assert_eq!(configs[2].regions.len(), 3);
}

/// What the crate holds is the checker's model of the pair, written out
/// and read back: every server, client, static space and map field, in
/// the same types, compiled-in storage turned back into owned.
#[test]
fn the_crate_holds_the_checkers_model() {
    use sysgen::model as owned;
    let config = load(SYSTEM, POLICY).unwrap();
    let text = |s: &str| s.to_string();
    let channel = |c: Channel| c.index() as u64;
    let origin = |o: iommu_system::Origin| owned::Origin {
        file: text(o.file),
        line: o.line,
    };
    let paddr = |p: Paddr| match p {
        Paddr::Fixed(a) => owned::Paddr::Fixed(a),
        Paddr::Symbol(i) => owned::Paddr::Symbol(text(SERVER_SYMBOLS[i])),
    };
    let memory = |m: iommu_system::ServerMemory| owned::ServerMemory {
        mr: text(m.mr),
        vaddr: m.vaddr,
        size: m.size,
        paddr: paddr(m.paddr),
    };
    let server = owned::Server {
        pd: text(SERVER.pd),
        smmu_regs: memory(SERVER.smmu_regs),
        smmu_memory: memory(SERVER.smmu_memory),
        page_tables: memory(SERVER.page_tables),
        event_irq: channel(SERVER.event_irq),
        gerror_irq: channel(SERVER.gerror_irq),
        stack_size: SERVER.stack_size,
    };
    assert_eq!(server, config.server);
    let clients: Vec<owned::Client> = CLIENTS
        .iter()
        .map(|c| owned::Client {
            pd: text(c.pd),
            server_channel: channel(c.server_channel),
            client_channel: channel(c.client_channel),
            command_page: text(c.command_page),
            command_page_server: c.command_page_server,
            command_page_client: c.command_page_client,
            regions: c
                .regions
                .iter()
                .map(|r| owned::Region {
                    mr: text(r.mr),
                    vaddr: r.vaddr,
                    size: r.size,
                    perms: r.perms,
                    paddr: paddr(r.paddr),
                    strict: r.strict,
                    shared_with: r.shared_with.map(text),
                    share: r.share,
                    origin: origin(r.origin),
                    memory_region: origin(r.memory_region),
                    map: origin(r.map),
                })
                .collect(),
            devices: c
                .devices
                .iter()
                .map(|d| owned::Device {
                    name: text(d.name),
                    stream_id: d.stream_id,
                    dma_mask: d.dma_mask,
                    reserved: d.reserved.to_vec(),
                })
                .collect(),
            device_config_pages: c.device_config_pages.to_vec(),
            device_origins: c.device_origins.iter().map(|&o| origin(o)).collect(),
            quota: c.quota,
            quota_origin: origin(c.quota_origin),
            manager: c.manager,
            disk_blocks: c.disk_blocks,
            child_of: c.child_of.map(|o| owned::ChildOf {
                parent: text(o.parent),
                id: o.id,
            }),
            program_image: text(c.program_image),
            origin: origin(c.origin),
        })
        .collect();
    assert_eq!(clients, config.clients);
    let spaces: Vec<owned::StaticSpace> = iommu_system::STATIC_SPACES
        .iter()
        .map(|s| owned::StaticSpace {
            name: text(s.name),
            peripheral: text(s.peripheral),
            stream_id: s.stream_id,
            domain_id: s.domain_id,
            iomaps: s
                .iomaps
                .iter()
                .map(|m| owned::StaticIoMap {
                    mr: text(m.mr),
                    iovaddr: m.iovaddr,
                    size: m.size,
                    perms: m.perms,
                    paddr: paddr(m.paddr),
                    identity: m.identity,
                })
                .collect(),
            table_pages: s.table_pages,
            fault_pd: s.fault_pd.map(text),
            fault_channel: s.fault_channel.map(channel),
        })
        .collect();
    assert_eq!(spaces, config.static_spaces);
    let maps: Vec<owned::MapEntry> = iommu_system::MAPS
        .iter()
        .map(|m| owned::MapEntry {
            pd: text(m.pd),
            mr: text(m.mr),
            vaddr: m.vaddr,
            size: m.size,
            write: m.write,
            setvar_vaddr: m.setvar_vaddr.map(text),
            paddr: m.paddr,
            origin: origin(m.origin),
            memory_region: origin(m.memory_region),
        })
        .collect();
    assert_eq!(maps, config.maps);
}

/// The line of `file`'s element that opens with `<tag` and carries every
/// one of `attrs` (`name="value"`), which must be exactly one.
fn line_of(file: &str, tag: &str, attrs: &[&str]) -> u32 {
    let src = if file == "system.xml" { SYSTEM } else { POLICY };
    let open = format!("<{tag} ");
    let lines: Vec<u32> = src
        .lines()
        .zip(1..)
        .filter(|(l, _)| l.trim_start().starts_with(&open) && attrs.iter().all(|a| l.contains(a)))
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "{file}: <{tag} {attrs:?}> on lines {lines:?}"
    );
    lines[0]
}

/// Every client, DMA region, device and map carries where the example
/// says it: the file and the line of its element, found here by reading
/// the files, so that refusals at run time cite the right line.
#[test]
fn the_generated_locations_are_the_elements_lines() {
    let at = |file: &str, tag: &str, attrs: &[&str]| iommu_system::Origin {
        file: match file {
            "system.xml" => "system.xml",
            _ => "iommu.xml",
        },
        line: line_of(file, tag, attrs),
    };
    for c in &CLIENTS {
        let pd = format!("pd=\"{}\"", c.pd);
        assert_eq!(c.origin, at("iommu.xml", "client", &[&pd]), "{}", c.pd);
        // A client's `<quota>` is the first line after its `<client>`
        // that opens one.
        let quota = POLICY
            .lines()
            .zip(1..)
            .skip(c.origin.line as usize)
            .find(|(l, _)| l.trim_start().starts_with("<quota "))
            .map(|(_, n)| n);
        assert_eq!(Some(c.quota_origin.line), quota, "{}", c.pd);
        assert_eq!(c.quota_origin.file, "iommu.xml");
        for r in c.regions {
            let mr = format!("mr=\"{}\"", r.mr);
            let name = format!("name=\"{}\"", r.mr);
            assert_eq!(r.origin, at("iommu.xml", "dma", &[&mr]), "{}", r.mr);
            assert_eq!(
                r.memory_region,
                at("system.xml", "memory_region", &[&name]),
                "{}",
                r.mr
            );
            assert_eq!(r.map, iommu_system::map_of(c.pd, r.mr).unwrap().origin);
        }
        assert_eq!(c.device_origins.len(), c.devices.len());
        for (d, o) in c.devices.iter().zip(c.device_origins) {
            let name = format!("name=\"{}\"", d.name);
            assert_eq!(*o, at("iommu.xml", "device", &[&name]), "{}", d.name);
        }
    }
    // A map's line: the one `<map>` of its region inside its PD's
    // `<protection_domain>` element.
    for m in &iommu_system::MAPS {
        let pd_open = format!("<protection_domain name=\"{}\"", m.pd);
        let mr = format!("<map mr=\"{}\"", m.mr);
        let mut inside = false;
        let mut found = Vec::new();
        for (l, n) in SYSTEM.lines().zip(1u32..) {
            let l = l.trim_start();
            // A child PD's or a virtual machine's maps are not its own.
            if l.starts_with("<protection_domain ") || l.starts_with("<virtual_machine ") {
                inside = l.starts_with(&pd_open);
            }
            if inside && l.starts_with(&mr) {
                found.push(n);
            }
        }
        assert_eq!(found.len(), 1, "{} maps {} on lines {found:?}", m.pd, m.mr);
        assert_eq!((m.origin.file, m.origin.line), ("system.xml", found[0]));
        let name = format!("name=\"{}\"", m.mr);
        assert_eq!(
            m.memory_region,
            at("system.xml", "memory_region", &[&name]),
            "{}",
            m.mr
        );
    }
}
