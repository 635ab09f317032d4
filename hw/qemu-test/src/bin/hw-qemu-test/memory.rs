//! The test image's static memory, handed out once.
#![allow(unsafe_code)]

use hw::mmio::DmaRegion;
use hw::pgtable::TablePage;
use iopt::{Account, AreaSlot, PagesSlot};

#[repr(C, align(2097152))]
struct Aligned2M<const N: usize>([u8; N]);

#[repr(C, align(4096))]
struct Aligned4K<const N: usize>([u8; N]);

const SMMU_MEM: usize = 512 * 1024;
const PT_PAGES: usize = 64;
/// Device-visible test memory: 2 MiB aligned so a block can map it.
pub const DMA_MEM: usize = 4 * 1024 * 1024;

static mut SMMU_MEMORY: Aligned4K<SMMU_MEM> = Aligned4K([0; SMMU_MEM]);
static mut PT_POOL: [TablePage; PT_PAGES] = [TablePage::ZERO; PT_PAGES];
static mut DMA_MEMORY: Aligned2M<DMA_MEM> = Aligned2M([0; DMA_MEM]);

const IOPT_AREAS: usize = 32;

static mut IOPT_AREA_SLOTS: [AreaSlot; IOPT_AREAS] = [AreaSlot::EMPTY; IOPT_AREAS];
static mut IOPT_PAGES_SLOTS: [PagesSlot; IOPT_AREAS] = [PagesSlot::EMPTY; IOPT_AREAS];
static mut IOPT_ACCOUNTS: [Account; 1] = [Account::UNLIMITED; 1];

/// The statics, handed out once.
pub struct Memory {
    pub smmu: DmaRegion,
    pub pt_pool: &'static mut [TablePage],
    pub pt_phys: u64,
    pub dma: DmaRegion,
    /// Storage for an iopt store.
    pub areas: &'static mut [AreaSlot],
    pub pages: &'static mut [PagesSlot],
    pub accounts: &'static mut [Account],
}

static mut TAKEN: bool = false;

pub fn take_memory() -> Option<Memory> {
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
        let dma = core::ptr::addr_of_mut!(DMA_MEMORY) as usize;
        Some(Memory {
            smmu: DmaRegion::new(smmu, smmu as u64, SMMU_MEM),
            pt_phys: pool.as_ptr() as u64,
            pt_pool: pool,
            dma: DmaRegion::new(dma, dma as u64, DMA_MEM),
            areas: &mut *core::ptr::addr_of_mut!(IOPT_AREA_SLOTS),
            pages: &mut *core::ptr::addr_of_mut!(IOPT_PAGES_SLOTS),
            accounts: &mut *core::ptr::addr_of_mut!(IOPT_ACCOUNTS),
        })
    }
}
