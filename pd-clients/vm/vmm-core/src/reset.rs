//! The guest's life as a state machine, and its reset path:
//!
//! ```text
//! Unmapped --map--> Mapped --start--> Running --stop--> Stopped
//!                     ^                                    |
//!                     +------map------ Quarantined <--quarantine
//! ```
//!
//! `quarantine` is RESET_CLIENT of the VMM itself (or, with `revoked`,
//! the one its manager made of it): the server first puts
//! the device's stream back to abort (so whatever DMA the old guest left
//! in flight reaches nothing and faults), then revokes everything the
//! VMM held; the VMM forgets its own device state with it (the device
//! and HWPT IDs are dead). `map` then runs the VFIO sequence afresh, and
//! `start` restarts the vCPU. Each step checks the phase it is given and
//! names its request and errno when it fails; a step that fails leaves
//! the phase as it was, to be retried (a RESET_CLIENT that is EBUSY has
//! stopped some streams and kept every mapping a device may still reach).

use iommu_client::{Iommu, Transport};
use iommu_proto::Errno;

use crate::error::{Cause, Error, Request};
use crate::map::GuestMap;
use crate::phase::Phase;
use crate::vfio::{pass_through, Passthrough};

/// The guest's vCPU, as the VMM drives it.
pub trait Vcpu {
    /// Stops the vCPU: it runs no guest instruction until started.
    fn stop(&mut self);
    /// Starts the guest afresh at its entry point; the kernel's error
    /// otherwise.
    fn start(&mut self) -> Result<(), u64>;
}

/// A guest, its device and the VMM's state for them.
#[derive(Debug)]
pub struct Guest<'m> {
    map: GuestMap<'m>,
    device_index: u32,
    /// The VMM's own index among the server's clients (RESET_CLIENT's
    /// target).
    client_index: u64,
    phase: Phase,
    passthrough: Option<Passthrough>,
}

impl<'m> Guest<'m> {
    /// A guest with memory map `map`, passed the device at `device_index`
    /// of the VMM's configuration; the VMM is client `client_index`.
    pub fn new(map: GuestMap<'m>, device_index: u32, client_index: u64) -> Guest<'m> {
        Guest {
            map,
            device_index,
            client_index,
            phase: Phase::Unmapped,
            passthrough: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn map_of(&self) -> &GuestMap<'m> {
        &self.map
    }

    /// The device's state while it is joined and mapped.
    pub fn passthrough(&self) -> Option<&Passthrough> {
        self.passthrough.as_ref()
    }

    fn expect(&self, request: Request, expected: &[Phase]) -> Result<(), Error> {
        if expected.contains(&self.phase) {
            return Ok(());
        }
        Err(Error::new(
            request,
            Errno::EINVAL,
            Cause::Phase {
                expected: expected[0],
                found: self.phase,
            },
        ))
    }

    /// Unmapped or Quarantined → Mapped: the VFIO sequence.
    pub fn map<T: Transport>(&mut self, iommu: &mut Iommu<T>) -> Result<&Passthrough, Error> {
        self.expect(Request::Bind, &[Phase::Unmapped, Phase::Quarantined])?;
        let p = pass_through(iommu, &self.map, self.device_index)?;
        self.phase = Phase::Mapped;
        Ok(self.passthrough.insert(p))
    }

    /// Mapped → Running.
    pub fn start(&mut self, vcpu: &mut impl Vcpu) -> Result<(), Error> {
        self.expect(Request::StartVcpu, &[Phase::Mapped])?;
        vcpu.start()
            .map_err(|e| Error::new(Request::StartVcpu, Errno::EIO, Cause::Vcpu(e)))?;
        self.phase = Phase::Running;
        Ok(())
    }

    /// Running → Stopped (the guest stopped itself, or the VMM stops it).
    pub fn stop(&mut self, vcpu: &mut impl Vcpu) -> Result<(), Error> {
        self.expect(Request::StopVcpu, &[Phase::Running])?;
        vcpu.stop();
        self.phase = Phase::Stopped;
        Ok(())
    }

    /// Stopped → Quarantined: RESET_CLIENT of the VMM itself, then the
    /// VMM's device state forgotten.
    pub fn quarantine<T: Transport>(&mut self, iommu: &mut Iommu<T>) -> Result<(), Error> {
        self.expect(Request::ResetClient, &[Phase::Stopped])?;
        iommu
            .reset(self.client_index)
            .map_err(|e| Error::refused(Request::ResetClient, e))?;
        self.passthrough = None;
        self.phase = Phase::Quarantined;
        Ok(())
    }

    /// Stopped → Quarantined when the VMM's manager made the RESET_CLIENT
    /// of the VMM (a manager, which may read the server's pools, can show
    /// that the reset gave everything back): the VMM forgets its device
    /// state as [`Guest::quarantine`] does, without a call of its own.
    pub fn revoked(&mut self) -> Result<(), Error> {
        self.expect(Request::ResetClient, &[Phase::Stopped])?;
        self.passthrough = None;
        self.phase = Phase::Quarantined;
        Ok(())
    }

    /// The whole reset path from Running: stop, quarantine, `between`
    /// (what the VMM does while the device is quarantined: read its
    /// faults, reset the guest's memory), map, start.
    pub fn reset<T: Transport, V: Vcpu>(
        &mut self,
        iommu: &mut Iommu<T>,
        vcpu: &mut V,
        between: impl FnOnce(&mut Iommu<T>, &GuestMap<'m>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        self.stop(vcpu)?;
        self.quarantine(iommu)?;
        between(iommu, &self.map)?;
        self.map(iommu)?;
        self.start(vcpu)
    }
}
