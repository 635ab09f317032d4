//! Where a guest is in its life: what the reset path's steps require
//! and what a refused step reports.

/// Where the guest is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing mapped, no device joined.
    Unmapped,
    /// Its device joined and its RAM mapped; the vCPU not running.
    Mapped,
    Running,
    /// The vCPU stopped; the device still reaches the guest's RAM.
    Stopped,
    /// The server revoked the VMM's device and mappings: the device's
    /// DMA reaches nothing.
    Quarantined,
}
