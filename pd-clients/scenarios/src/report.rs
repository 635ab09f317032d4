//! What the manager keeps of the server's own report (pools, domains) to
//! compare before and after a client's crash.

use iommu_client::{Error, Iommu, Transport};

/// Bounded text: a server report kept to compare.
pub struct Report {
    bytes: [u8; 1024],
    len: usize,
}

impl Report {
    pub const fn new() -> Report {
        Report {
            bytes: [0; 1024],
            len: 0,
        }
    }

    /// Appends what fits.
    pub fn push(&mut self, piece: &[u8]) {
        let n = piece.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&piece[..n]);
        self.len += n;
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }

    /// A server report's pool and domain figures, without the event
    /// counters (which a crash's stopped DMA may move).
    pub fn pools(&self) -> &str {
        let text = self.as_str();
        text.find(", event queue overflows")
            .map_or(text, |end| &text[..end])
    }
}

impl Default for Report {
    fn default() -> Self {
        Report::new()
    }
}

/// The server's own report (pools, domains), as a manager reads it.
pub fn server_report<T: Transport>(manager: &mut Iommu<T>, page_va: u64) -> Result<Report, Error> {
    let mut report = Report::new();
    manager.dump(page_va, iommu_proto::dump::IOMMU_DUMP_SERVER, |piece| {
        report.push(piece)
    })?;
    Ok(report)
}
