//! The server PD's memory, as system.xml maps it (checked by build.rs
//! against iommu.xml): the SMMU's registers and memory, the page-table
//! pool, the command pages and the devices' configuration pages, plus the
//! static storage of the server. Its `unsafe` rests on the system
//! description mapping each region where the generated configuration
//! says, and on each being handed out once.
#![allow(unsafe_code)]

use hw::mmio::{DmaRegion, Mmio};
use hw::pgtable::TablePage;
use iommu_server::Client;
use iommu_system::{
    resolve, Perms, Region, ServerMemory, CLIENTS, SERVER, TOTAL_MAPPINGS, TOTAL_REGIONS,
};
use iopt::{Account, AreaSlot, PagesSlot};
use microkit::SharedMemory;

static mut AREAS: [AreaSlot; TOTAL_MAPPINGS] = [AreaSlot::EMPTY; TOTAL_MAPPINGS];
static mut PAGES: [PagesSlot; TOTAL_MAPPINGS] = [PagesSlot::EMPTY; TOTAL_MAPPINGS];
static mut ACCOUNTS: [Account; CLIENTS.len()] = [Account::UNLIMITED; CLIENTS.len()];
static mut CLIENT_STATE: [Client; CLIENTS.len()] = [Client::EMPTY; CLIENTS.len()];
static mut REGIONS: [Region; TOTAL_REGIONS] = [Region {
    vaddr: 0,
    size: 0,
    paddr: 0,
    perms: Perms::RO,
}; TOTAL_REGIONS];

pub struct Platform {
    pub smmu_regs: Mmio,
    pub smmu_memory: DmaRegion,
    pub table_pages: &'static mut [TablePage],
    pub table_pages_phys: u64,
    pub command_pages: [SharedMemory; CLIENTS.len()],
    pub areas: &'static mut [AreaSlot],
    pub pages: &'static mut [PagesSlot],
    pub accounts: &'static mut [Account],
    pub clients: &'static mut [Client],
    pub regions: &'static mut [Region; TOTAL_REGIONS],
}

static mut TAKEN: bool = false;

fn dma(m: ServerMemory, symbol: &impl Fn(usize) -> u64) -> DmaRegion {
    // SAFETY: system.xml maps `m` read-write and cached at `m.vaddr` in this
    // PD only (build.rs refuses a client mapping it); its physical address
    // is the region's, patched by the tool; the SMMU is coherent or the
    // driver cleans (DcacheClean).
    unsafe { DmaRegion::new(m.vaddr as usize, resolve(m.paddr, symbol), m.size as usize) }
}

/// Everything, once; `symbol(i)` reads setvar `SERVER_SYMBOLS[i]`.
pub fn take(symbol: impl Fn(usize) -> u64) -> Option<Platform> {
    // SAFETY: the PD is single-threaded: the flag makes every static and
    // region below handed out at most once.
    unsafe {
        if TAKEN {
            return None;
        }
        TAKEN = true;
        let pt = SERVER.page_tables;
        let tables = core::slice::from_raw_parts_mut(
            pt.vaddr as usize as *mut TablePage,
            pt.size as usize / core::mem::size_of::<TablePage>(),
        );
        Some(Platform {
            smmu_regs: Mmio::new(
                SERVER.smmu_regs.vaddr as usize,
                SERVER.smmu_regs.size as usize,
            ),
            smmu_memory: dma(SERVER.smmu_memory, &symbol),
            table_pages: tables,
            table_pages_phys: resolve(pt.paddr, &symbol),
            command_pages: core::array::from_fn(|i| {
                SharedMemory::new(
                    CLIENTS[i].command_page_server as usize,
                    iommu_server::COMMAND_PAGE,
                )
            }),
            areas: &mut *core::ptr::addr_of_mut!(AREAS),
            pages: &mut *core::ptr::addr_of_mut!(PAGES),
            accounts: &mut *core::ptr::addr_of_mut!(ACCOUNTS),
            clients: &mut *core::ptr::addr_of_mut!(CLIENT_STATE),
            regions: &mut *core::ptr::addr_of_mut!(REGIONS),
        })
    }
}

/// A device's PCI configuration page, read once at start to see the
/// device is there.
pub fn config_page(vaddr: u64) -> Mmio {
    // SAFETY: system.xml maps the page uncached at `vaddr` (checked by
    // build.rs); the server only reads its identification word.
    unsafe { Mmio::new(vaddr as usize, 0x1000) }
}
