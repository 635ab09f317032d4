//! The server's [`Hardware`] on an SMMUv3: [`SmmuDomains`] (one page table
//! and one context per domain) plus the event queue decoded into
//! [`Fault`]s. The PD and the bare-metal demo both run the server on this.

use hw::domains::SmmuDomains;
use hw::mmio::RegisterBlock;
use hw::smmu::event::{Access, Event};
use hw::smmu::EventStatus;
use iommu_proto::fault::{
    IOMMU_FAULT_ACCESS_EXEC, IOMMU_FAULT_ACCESS_PRIV, IOMMU_FAULT_ACCESS_READ,
    IOMMU_FAULT_ACCESS_WRITE,
};
use iommu_proto::Errno;
use iopt::{DomainId, DomainTable};

use crate::fault::Fault;
use crate::Hardware;

/// An SMMUv3 as the server's hardware.
#[derive(Debug)]
pub struct SmmuHardware<'a, R: RegisterBlock> {
    domains: SmmuDomains<'a, R>,
    /// Domains whose release failed (their context could not be
    /// invalidated): their tables stay allocated rather than be reused
    /// while a walker may still hold them.
    leaked: usize,
}

impl<'a, R: RegisterBlock> SmmuHardware<'a, R> {
    pub fn new(domains: SmmuDomains<'a, R>) -> Self {
        SmmuHardware { domains, leaked: 0 }
    }

    /// Domains that could not be released.
    pub fn leaked(&self) -> usize {
        self.leaked
    }

    /// Decodes every pending event into a [`Fault`] for `f`.
    pub fn drain_faults(&mut self, mut f: impl FnMut(Fault)) -> EventStatus {
        self.domains.drain_events(|e| f(fault_from_event(&e)))
    }
}

/// The SMMU's event record as the protocol reports it.
pub fn fault_from_event(e: &Event) -> Fault {
    let mut access = match e.access {
        Some(Access::Read) => IOMMU_FAULT_ACCESS_READ,
        Some(Access::Write) => IOMMU_FAULT_ACCESS_WRITE,
        None => 0,
    };
    if e.instruction {
        access |= IOMMU_FAULT_ACCESS_EXEC;
    }
    if e.privileged {
        access |= IOMMU_FAULT_ACCESS_PRIV;
    }
    Fault {
        stream: e.sid,
        // The protocol's kinds are the architecture's event codes.
        kind: (e.raw[0] & 0xff) as u32,
        iova: e.iova,
        access,
    }
}

impl<R: RegisterBlock> Hardware for SmmuHardware<'_, R> {
    fn domain_alloc(&mut self, client: usize, table_pages: usize) -> Result<DomainId, Errno> {
        self.domains.alloc(client, table_pages)
    }

    fn domain_free(&mut self, domain: DomainId) {
        if self.domains.free(domain).is_err() {
            self.leaked += 1;
        }
    }

    fn domains(&mut self) -> &mut dyn DomainTable {
        &mut self.domains
    }

    fn attach(&mut self, stream: u32, domain: DomainId) -> Result<(), Errno> {
        self.domains.attach(stream, domain)
    }

    fn detach(&mut self, stream: u32) -> Result<(), Errno> {
        self.domains.detach(stream)
    }

    fn id_regs(&self) -> ([u32; 6], u32, u32) {
        let ids = self.domains.features().ids;
        (ids.idr, ids.iidr, ids.aidr)
    }

    fn coherent(&self) -> bool {
        self.domains.features().coherent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iommu_proto::fault::{IOMMU_FAULT_KIND_F_PERMISSION, IOMMU_FAULT_KIND_F_TRANSLATION};

    #[test]
    fn events_become_protocol_faults() {
        let read = Event::decode([0x10 | (8u64 << 32), 1 << 35, 0xdead_b000, 0]);
        assert_eq!(
            fault_from_event(&read),
            Fault {
                stream: 8,
                kind: IOMMU_FAULT_KIND_F_TRANSLATION,
                iova: Some(0xdead_b000),
                access: IOMMU_FAULT_ACCESS_READ,
            }
        );
        let priv_exec_write = Event::decode([0x13 | (16u64 << 32), 3 << 33, 0x1000, 0]);
        assert_eq!(
            fault_from_event(&priv_exec_write),
            Fault {
                stream: 16,
                kind: IOMMU_FAULT_KIND_F_PERMISSION,
                iova: Some(0x1000),
                access: IOMMU_FAULT_ACCESS_WRITE
                    | IOMMU_FAULT_ACCESS_EXEC
                    | IOMMU_FAULT_ACCESS_PRIV,
            }
        );
    }
}
