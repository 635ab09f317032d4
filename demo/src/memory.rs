//! The demo's static memory, sized by the generated configuration and
//! handed out once. With the MMU off an address is its physical address.
#![allow(unsafe_code)]

use hw::pgtable::TablePage;
use iommu_server::Storage;
use iommu_system::{
    IoMap, Region, CLIENTS, SERVER, TOTAL_IOASES, TOTAL_IOMAPS, TOTAL_MAPPINGS, TOTAL_REGIONS,
};
use mmio::{ConstStaticCell, DmaMemory, DmaRegion};

#[repr(C, align(4096))]
struct Aligned4K<const N: usize>([u8; N]);

const SMMU_MEM: usize = 512 * 1024;
/// The page-table pool system.xml gives the server.
const PT_PAGES: usize = (SERVER.page_tables.size / 0x1000) as usize;
/// Every client's DMA regions, back to back (the example's add up to
/// 448 KiB), then the block clients' rings.
pub const CLIENT_MEM: usize = 1024 * 1024;

struct Statics {
    smmu: Aligned4K<SMMU_MEM>,
    tables: [TablePage; PT_PAGES],
    client: Aligned4K<CLIENT_MEM>,
    server: ServerStorage,
    regions: [Region; TOTAL_REGIONS],
    iomaps: [IoMap; TOTAL_IOMAPS],
}

/// The server's storage, sized by the configuration.
pub type ServerStorage = Storage<TOTAL_MAPPINGS, { CLIENTS.len() }, TOTAL_IOASES>;

static STATICS: ConstStaticCell<Statics> = ConstStaticCell::new(Statics {
    smmu: Aligned4K([0; SMMU_MEM]),
    tables: [TablePage::ZERO; PT_PAGES],
    client: Aligned4K([0; CLIENT_MEM]),
    server: Storage::new(),
    regions: [Region::NONE; TOTAL_REGIONS],
    iomaps: [IoMap::NONE; TOTAL_IOMAPS],
});

pub struct Memory {
    pub smmu: DmaRegion,
    pub table_pages: DmaMemory<'static, TablePage>,
    /// The clients' DMA regions.
    pub client: DmaRegion,
    pub server: &'static mut ServerStorage,
    pub regions: &'static mut [Region; TOTAL_REGIONS],
    pub iomaps: &'static mut [IoMap; TOTAL_IOMAPS],
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
            iomaps: &mut s.iomaps,
        })
    }
}

/// RAM the demo leaves to regions system.xml pins with a `phys_addr`
/// (QEMU virt, `-m 512M`: the top 256 MiB; the image and its stack end
/// far below).
const PINNED: core::ops::Range<u64> = 0x5000_0000..0x6000_0000;
static PINNED_CLAIM: ConstStaticCell<()> = ConstStaticCell::new(());

/// Hands out pinned RAM regions, each once.
pub struct Pinned {
    taken: [(u64, u64); 8],
}

/// The pinned-region window, the first time.
pub fn pinned() -> Option<Pinned> {
    PINNED_CLAIM.take()?;
    Some(Pinned { taken: [(0, 0); 8] })
}

impl Pinned {
    /// The region at `paddr`, `size` bytes: inside [`PINNED`], above the
    /// image, overlapping none handed out before.
    pub fn region(&mut self, paddr: u64, size: u64) -> Option<DmaRegion> {
        extern "C" {
            static __stack_top: u8;
        }
        let end = paddr.checked_add(size)?;
        // Only the symbol's address is taken.
        let image_end = core::ptr::addr_of!(__stack_top) as u64;
        if size == 0 || paddr < PINNED.start || end > PINNED.end || image_end > PINNED.start {
            return None;
        }
        if self.taken.iter().any(|&(s, e)| s < end && paddr < e) {
            return None;
        }
        *self.taken.iter_mut().find(|(s, e)| s == e)? = (paddr, end);
        // SAFETY: RAM above the image and its stack (checked), inside the
        // window the demo keeps for pinned regions, overlapping no region
        // handed out before (this claim is the window's only one); with
        // the MMU off an address is its physical address.
        Some(unsafe { DmaRegion::new(paddr as usize, paddr, size as usize) })
    }
}
