//! The demo's static memory, sized by the generated configuration and
//! handed out once. With the MMU off an address is its physical address.
#![allow(unsafe_code)]

use hw::pgtable::TablePage;
use iommu_server::Storage;
use iommu_system::{Region, CLIENTS, TOTAL_IOASES, TOTAL_MAPPINGS, TOTAL_REGIONS};
use mmio::{ConstStaticCell, DmaMemory, DmaRegion};

#[repr(C, align(4096))]
struct Aligned4K<const N: usize>([u8; N]);

const SMMU_MEM: usize = 512 * 1024;
const PT_PAGES: usize = 64;
/// Every client's DMA regions, back to back (the example's add up to
/// 448 KiB), then the block clients' rings.
pub const CLIENT_MEM: usize = 1024 * 1024;

struct Statics {
    smmu: Aligned4K<SMMU_MEM>,
    tables: [TablePage; PT_PAGES],
    client: Aligned4K<CLIENT_MEM>,
    server: ServerStorage,
    regions: [Region; TOTAL_REGIONS],
}

/// The server's storage, sized by the configuration.
pub type ServerStorage = Storage<TOTAL_MAPPINGS, { CLIENTS.len() }, TOTAL_IOASES>;

static STATICS: ConstStaticCell<Statics> = ConstStaticCell::new(Statics {
    smmu: Aligned4K([0; SMMU_MEM]),
    tables: [TablePage::ZERO; PT_PAGES],
    client: Aligned4K([0; CLIENT_MEM]),
    server: Storage::new(),
    regions: [Region::NONE; TOTAL_REGIONS],
});

pub struct Memory {
    pub smmu: DmaRegion,
    pub table_pages: DmaMemory<'static, TablePage>,
    /// The clients' DMA regions.
    pub client: DmaRegion,
    pub server: &'static mut ServerStorage,
    pub regions: &'static mut [Region; TOTAL_REGIONS],
}

/// The memory, the first time.
pub fn take() -> Option<Memory> {
    let s = STATICS.take()?;
    let smmu = s.smmu.0.as_mut_ptr() as usize;
    let client = s.client.0.as_mut_ptr() as usize;
    let tables_pa = s.tables.as_ptr() as u64;
    // SAFETY: the claim above hands each static out once, and nothing else
    // names them; with the MMU off an address is its physical address, and
    // every access is uncached, so the SMMU and the CPU agree.
    unsafe {
        Some(Memory {
            smmu: DmaRegion::new(smmu, smmu as u64, SMMU_MEM),
            table_pages: DmaMemory::new(&mut s.tables, tables_pa),
            client: DmaRegion::new(client, client as u64, CLIENT_MEM),
            server: &mut s.server,
            regions: &mut s.regions,
        })
    }
}
