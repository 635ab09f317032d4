//! The system brought up as the Microkit tool and the server PD would:
//! every client's DMA region placed and its setvar patched, the
//! configuration generated from system.xml and iommu.xml, the SMMUv3 up,
//! the server made and the static IO address spaces built.

use hw::domains::SmmuDomains;
use hw::pgtable::TablePool;
use hw::smmu::{Smmu, SmmuConfig};
use iommu_server::Server;
use iommu_system::{
    client_configs, static_spaces, ClientConfig, Paddr, StaticSpace, StreamId, CLIENTS,
    SERVER_SYMBOLS, STATIC_SPACES, TOTAL_DEVICES,
};
use mmio::{CacheClean, Coherent, DcacheClean, DmaRegion, Mmio, StaticCell};
use qemu_virt::platform::{self, DeviceWindows};

use crate::memory;
use crate::output::Tally;
use crate::statics::{self, Drivers};
use crate::transport::{take_faults, Hw, Shared, MAX_REGIONS};

static COHERENT: Coherent = Coherent;
static NON_COHERENT: DcacheClean = DcacheClean;

// As in the server PD: the SMMU's state and the configurations live in
// statics the server borrows.
static SMMU: StaticCell<Smmu<Mmio>> = StaticCell::new();
static CONFIGS: StaticCell<[ClientConfig; CLIENTS.len()]> = StaticCell::new();
static SPACES: StaticCell<[StaticSpace; STATIC_SPACES.len()]> = StaticCell::new();

/// The system, up.
pub struct Booted {
    pub server: Server<'static, Hw>,
    /// Each client's DMA regions, in its configuration's order.
    pub regions: [[Option<DmaRegion>; MAX_REGIONS]; CLIENTS.len()],
    /// The addresses the setvar symbols were given.
    pub symbols: [u64; SERVER_SYMBOLS.len()],
    /// Client memory no region took (the block clients' rings come from
    /// it).
    pub spare: DmaRegion,
    /// The drivers under static IO address spaces.
    pub statics: &'static Drivers,
    /// The board's device windows, for the drivers still to find theirs.
    pub windows: DeviceWindows,
}

pub fn boot(tally: &mut Tally) -> Result<Booted, &'static str> {
    let mut mem = memory::take().ok_or("memory taken twice")?;
    // Place every client's DMA region; the setvar symbols get their
    // addresses, as the Microkit tool would patch them into the server.
    let mut symbols = [0u64; SERVER_SYMBOLS.len()];
    let mut pinned = memory::pinned().ok_or("pinned memory taken twice")?;
    let mut regions: [[Option<DmaRegion>; MAX_REGIONS]; CLIENTS.len()] =
        [const { [const { None }; MAX_REGIONS] }; CLIENTS.len()];
    for (i, c) in CLIENTS.iter().enumerate() {
        for (k, r) in c.regions.iter().enumerate() {
            let region = match r.paddr {
                Paddr::Symbol(s) => {
                    let region = mem
                        .client
                        .carve(r.size as usize, 0x1000)
                        .ok_or("client memory too small for the configured regions")?;
                    symbols[s] = region.pa();
                    region
                }
                // A region system.xml pins (a guest's RAM) is taken where
                // it says, from the demo's pinned window.
                Paddr::Fixed(p) => pinned
                    .region(p, r.size)
                    .ok_or("a pinned DMA region outside the demo's window")?,
            };
            *regions[i]
                .get_mut(k)
                .ok_or("more DMA regions in a client than the demo holds")? = Some(region);
        }
    }
    let mut windows = platform::device_windows().ok_or("device windows taken twice")?;
    let statics = statics::place(&mut mem.client, &mut pinned, &mut symbols, &mut windows)?;
    let configs = CONFIGS
        .init(client_configs(mem.regions, |s| symbols[s]))
        .ok_or("configured twice")?;
    let spaces: &'static [StaticSpace] = SPACES
        .init(static_spaces(mem.iomaps, |s| symbols[s]))
        .ok_or("configured twice")?;

    let mut streams = [StreamId(0); TOTAL_DEVICES + STATIC_SPACES.len()];
    for (slot, sid) in streams.iter_mut().zip(
        CLIENTS
            .iter()
            .flat_map(|c| c.devices)
            .map(|d| d.stream_id)
            .chain(STATIC_SPACES.iter().map(|s| s.stream_id)),
    ) {
        *slot = sid;
    }
    let regs = platform::smmu_regs().ok_or("SMMU registers taken twice")?;
    let smmu =
        Smmu::init(regs, mem.smmu, SmmuConfig::DEFAULT, &streams).map_err(|_| "SMMUv3 bring-up")?;
    let smmu = SMMU.init(smmu).ok_or("SMMU brought up twice")?;
    let coherent = smmu.features().coherent;
    let cleaner: &'static dyn CacheClean = if coherent { &COHERENT } else { &NON_COHERENT };
    let pool = TablePool::new(mem.table_pages, cleaner);
    let hw = SmmuDomains::new(smmu, pool);
    let (store, ioases, clients) = mem.server.split();
    let mut server = Server::new(store, ioases, hw, clients, configs).map_err(|e| {
        say!("server: configuration refused: {e}\n");
        "configuration refused"
    })?;
    // Before its io address space exists, a static driver's DMA meets the
    // default deny (its stream's STE is invalid), as it would without the
    // element.
    if let Some(d) = statics.first() {
        statics::default_deny(tally, d);
    }
    establish(&mut server, spaces)?;
    Ok(Booted {
        server,
        regions,
        symbols,
        spare: mem.client,
        statics,
        windows,
    })
}

/// What the server says of the DMA stopped while it came up, now that it
/// looks; then that it is up.
pub fn announce(server: Shared<'_>) {
    take_faults(server);
    server.borrow_mut().take_static_faults();
    let coherent = server
        .borrow_mut()
        .hardware_mut()
        .smmu()
        .features()
        .coherent;
    say!(
        "server: SMMUv3 up (coherent {coherent}), {} clients from system.xml + iommu.xml\n",
        CLIENTS.len()
    );
}

/// The static IO address spaces, built before anything is served.
#[inline(never)]
fn establish(
    server: &mut Server<'static, Hw>,
    spaces: &'static [StaticSpace],
) -> Result<(), &'static str> {
    server.establish(spaces).map_err(|e| {
        say!("server: static IO address spaces refused: {e}\n");
        "static spaces refused"
    })?;
    for s in &STATIC_SPACES {
        say!(
            "server: static IO address space {} (peripheral {}, stream {:#x}, domain_id {}): {} iomaps, {} table pages, attached\n",
            s.name,
            s.peripheral,
            s.stream_id.0,
            s.domain_id,
            s.iomaps.len(),
            s.table_pages
        );
    }
    Ok(())
}
