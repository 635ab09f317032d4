//! The server PD's memory, as system.xml maps it (checked by build.rs
//! against iommu.xml): the SMMU's registers and memory, the page-table
//! pool, the command pages and the devices' configuration pages, plus the
//! static storage of the server. Its `unsafe` rests on the system
//! description mapping each region where the generated configuration
//! says, and on each being handed out once.
#![allow(unsafe_code)]

use hw::pgtable::TablePage;
use iommu_server::Storage;
use iommu_system::{
    resolve, IoMap, Region, ServerMemory, CLIENTS, SERVER, TOTAL_IOASES, TOTAL_IOMAPS,
    TOTAL_MAPPINGS, TOTAL_REGIONS,
};
use microkit::SharedMemory;
use mmio::{ConstStaticCell, DmaMemory, DmaRegion, Mmio};

/// The server's storage, sized by the configuration.
pub type ServerStorage = Storage<TOTAL_MAPPINGS, { CLIENTS.len() }, TOTAL_IOASES>;

/// All zero bytes until `init` runs: `.bss`, no image space (pd_images.rs
/// checks).
struct Statics {
    server: ServerStorage,
    regions: [Region; TOTAL_REGIONS],
    iomaps: [IoMap; TOTAL_IOMAPS],
}

static STATICS: ConstStaticCell<Statics> = ConstStaticCell::new(Statics {
    server: Storage::new(),
    regions: [Region::NONE; TOTAL_REGIONS],
    iomaps: [IoMap::NONE; TOTAL_IOMAPS],
});

pub struct Platform {
    pub smmu_regs: Mmio,
    pub smmu_memory: DmaRegion,
    pub table_pages: DmaMemory<'static, TablePage>,
    pub command_pages: [SharedMemory; CLIENTS.len()],
    pub storage: &'static mut ServerStorage,
    pub regions: &'static mut [Region; TOTAL_REGIONS],
    /// Storage for the static spaces' iomaps.
    pub iomaps: &'static mut [IoMap; TOTAL_IOMAPS],
}

fn dma(m: ServerMemory, symbol: &impl Fn(usize) -> u64) -> DmaRegion {
    // SAFETY: system.xml maps `m` read-write and cached at `m.vaddr` in this
    // PD only (build.rs refuses a client mapping it); its physical address
    // is the region's, patched by the tool; the SMMU is coherent or the
    // driver cleans (DcacheClean). `take` hands it out once.
    unsafe { DmaRegion::new(m.vaddr as usize, resolve(m.paddr, symbol), m.size as usize) }
}

/// Everything, the first time (`None` after); `symbol(i)` reads setvar
/// `SERVER_SYMBOLS[i]`.
pub fn take(symbol: impl Fn(usize) -> u64) -> Option<Platform> {
    let statics = STATICS.take()?;
    let pt = SERVER.page_tables;
    // SAFETY: the claim above runs this once. system.xml maps the page
    // table region read-write at `pt.vaddr`, `pt.size` long, in this PD
    // only, at the physical address the tool patches; nothing else
    // references it.
    let table_pages = unsafe {
        let tables = core::slice::from_raw_parts_mut(
            pt.vaddr as usize as *mut TablePage,
            pt.size as usize / core::mem::size_of::<TablePage>(),
        );
        DmaMemory::new(tables, resolve(pt.paddr, &symbol))
    };
    Some(Platform {
        // SAFETY: the SMMU's register frame, mapped uncached at this
        // address by system.xml, handed out once (above).
        smmu_regs: unsafe {
            Mmio::new(
                SERVER.smmu_regs.vaddr as usize,
                SERVER.smmu_regs.size as usize,
            )
        },
        smmu_memory: dma(SERVER.smmu_memory, &symbol),
        table_pages,
        command_pages: core::array::from_fn(|i| {
            // SAFETY: each client's command page is mapped read-write here
            // by system.xml (checked by build.rs); only volatile copies
            // reach it.
            unsafe {
                SharedMemory::new(
                    CLIENTS[i].command_page_server as usize,
                    iommu_server::COMMAND_PAGE,
                )
            }
        }),
        storage: &mut statics.server,
        regions: &mut statics.regions,
        iomaps: &mut statics.iomaps,
    })
}

/// Whether device `device` of client `client` answers in its PCI
/// configuration page (the server maps it to see the device); `None` when
/// the configuration gives the server no such page. Reads one word and
/// keeps no handle.
pub fn device_present(client: usize, device: usize) -> Option<bool> {
    let vaddr = (*CLIENTS.get(client)?.device_config_pages.get(device)?)?;
    // SAFETY: system.xml maps this configuration page uncached at `vaddr`
    // (checked by build.rs); the handle lives for this one read.
    let page = unsafe { Mmio::new(vaddr as usize, 0x1000) };
    Some(mmio::RegisterBlock::read32(&page, 0) != u32::MAX)
}
