//! The demo's static memory, sized by the generated configuration and
//! handed out once. With the MMU off an address is its physical address.
#![allow(unsafe_code)]

use hw::mmio::DmaRegion;
use hw::pgtable::TablePage;
use iommu_server::Client;
use iommu_system::{Perms, Region, CLIENTS, TOTAL_MAPPINGS, TOTAL_REGIONS};
use iopt::{Account, AreaSlot, PagesSlot};

#[repr(C, align(4096))]
struct Aligned4K<const N: usize>([u8; N]);

const SMMU_MEM: usize = 512 * 1024;
const PT_PAGES: usize = 64;
/// Every client's DMA regions, back to back (the system has two of 64 KiB).
pub const CLIENT_MEM: usize = 256 * 1024;

static mut SMMU_MEMORY: Aligned4K<SMMU_MEM> = Aligned4K([0; SMMU_MEM]);
static mut PT_POOL: [TablePage; PT_PAGES] = [TablePage::ZERO; PT_PAGES];
static mut CLIENT_MEMORY: Aligned4K<CLIENT_MEM> = Aligned4K([0; CLIENT_MEM]);
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

pub struct Memory {
    pub smmu: DmaRegion,
    pub pt_pool: &'static mut [TablePage],
    pub pt_phys: u64,
    /// The clients' DMA regions.
    pub client: DmaRegion,
    pub areas: &'static mut [AreaSlot],
    pub pages: &'static mut [PagesSlot],
    pub accounts: &'static mut [Account],
    pub clients: &'static mut [Client],
    pub regions: &'static mut [Region; TOTAL_REGIONS],
}

static mut TAKEN: bool = false;

pub fn take() -> Option<Memory> {
    // SAFETY: single core, no interrupts: the flag check and set cannot
    // race, so each static is handed out at most once; with the MMU off an
    // address is its physical address.
    unsafe {
        if TAKEN {
            return None;
        }
        TAKEN = true;
        let smmu = core::ptr::addr_of_mut!(SMMU_MEMORY) as usize;
        let pool = &mut *core::ptr::addr_of_mut!(PT_POOL);
        let client = core::ptr::addr_of_mut!(CLIENT_MEMORY) as usize;
        Some(Memory {
            smmu: DmaRegion::new(smmu, smmu as u64, SMMU_MEM),
            pt_phys: pool.as_ptr() as u64,
            pt_pool: pool,
            client: DmaRegion::new(client, client as u64, CLIENT_MEM),
            areas: &mut *core::ptr::addr_of_mut!(AREAS),
            pages: &mut *core::ptr::addr_of_mut!(PAGES),
            accounts: &mut *core::ptr::addr_of_mut!(ACCOUNTS),
            clients: &mut *core::ptr::addr_of_mut!(CLIENT_STATE),
            regions: &mut *core::ptr::addr_of_mut!(REGIONS),
        })
    }
}
