//! The test image's static memory, handed out once. With the MMU off an
//! address is its physical address.
#![allow(unsafe_code)]

use hw::pgtable::TablePage;
use iopt::{Account, AreaSlot, PagesSlot};
use mmio::{ConstStaticCell, DmaMemory, DmaRegion};

#[repr(C, align(2097152))]
struct Aligned2M<const N: usize>([u8; N]);

#[repr(C, align(4096))]
struct Aligned4K<const N: usize>([u8; N]);

const SMMU_MEM: usize = 512 * 1024;
const PT_PAGES: usize = 64;
/// Device-visible test memory: 2 MiB aligned so a block can map it.
pub const DMA_MEM: usize = 4 * 1024 * 1024;
const IOPT_AREAS: usize = 32;

struct Statics {
    smmu: Aligned4K<SMMU_MEM>,
    tables: [TablePage; PT_PAGES],
    dma: Aligned2M<DMA_MEM>,
    areas: [AreaSlot; IOPT_AREAS],
    pages: [PagesSlot; IOPT_AREAS],
    accounts: [Account; 1],
}

static STATICS: ConstStaticCell<Statics> = ConstStaticCell::new(Statics {
    smmu: Aligned4K([0; SMMU_MEM]),
    tables: [TablePage::ZERO; PT_PAGES],
    dma: Aligned2M([0; DMA_MEM]),
    areas: [AreaSlot::EMPTY; IOPT_AREAS],
    pages: [PagesSlot::EMPTY; IOPT_AREAS],
    accounts: [Account::UNLIMITED; 1],
});

/// The statics, handed out once.
pub struct Memory {
    pub smmu: DmaRegion,
    pub table_pages: DmaMemory<'static, TablePage>,
    pub dma: DmaRegion,
    /// Storage for an iopt store.
    pub areas: &'static mut [AreaSlot],
    pub pages: &'static mut [PagesSlot],
    pub accounts: &'static mut [Account],
}

/// The memory, the first time.
pub fn take() -> Option<Memory> {
    let s = STATICS.take()?;
    let smmu = s.smmu.0.as_mut_ptr() as usize;
    let dma = s.dma.0.as_mut_ptr() as usize;
    let tables_pa = s.tables.as_ptr() as u64;
    // SAFETY: the claim above hands each static out once, and nothing else
    // names them; with the MMU off an address is its physical address, and
    // every access is uncached, so the SMMU and the CPU agree.
    unsafe {
        Some(Memory {
            smmu: DmaRegion::new(smmu, smmu as u64, SMMU_MEM),
            table_pages: DmaMemory::new(&mut s.tables, tables_pa),
            dma: DmaRegion::new(dma, dma as u64, DMA_MEM),
            areas: &mut s.areas,
            pages: &mut s.pages,
            accounts: &mut s.accounts,
        })
    }
}
