//! The manager PD, parent of the driver PDs (system.xml nests them). When
//! a driver says it is ready, the manager plays its part in the story
//! (`scenarios::edu::Roles`): it resets the last driver through the server
//! (its streams quarantined, then all it holds torn down) and tells it to
//! check that its device can no longer reach memory; it tells the first
//! driver to crash. A child's fault comes here: the manager revokes the
//! child's DMA (RESET_CLIENT) before anything else, then restarts it, and
//! when the restarted driver is ready again checks that the server's
//! pools are where they were before the crash. Once that and the reset
//! driver's check (it says when it is done) are both behind, in whichever
//! order the priorities run them, it starts the storm: the reset driver's
//! device faults without end, and when it says so
//! mid-storm, the restarted driver strays once. A driver under a static IO
//! address space that says it is ready has its device held in quarantine
//! (its stream aborts) and, when it has checked, released; the server
//! tells the manager of faults on the static spaces no other PD hears of.
//! A child under a static space is no client of the server: when it
//! faults there is nothing to reset, but whatever DMA its dead life left
//! in flight must reach nothing, so the manager holds its space before
//! restarting it and releases it when the restarted driver is ready.
//! A VMM (a client running `vmm.elf`) that has stopped its guest asks
//! for the guest's reset: the manager resets the VMM's client (its
//! streams quarantined, then all it holds torn down) as it does a
//! crashed driver's, and when the VMM says its restarted guest's DMA
//! works again checks that the server's pools are back where they were.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::Write;

use iommu_client::{Iommu, MicrokitTransport};
use iommu_system::CLIENTS;
use microkit::{Channel, Child, Handler, MessageInfo};
use pd_support::{iommu, roles, spec, Out};
use scenarios::report::{server_report, Report};

struct Manager {
    iommu: Iommu<MicrokitTransport>,
    /// Static spaces held in quarantine (bit i = space i).
    held: u64,
    /// The server's pools when the first driver was told to crash.
    before_crash: Option<Report>,
    /// The reset driver was reset and told to check its device.
    reset_done: bool,
    /// It said its check is over.
    reset_checked: bool,
    /// The crashed driver is back and the pools with it.
    pools_checked: bool,
    /// The crashed driver records its device's faults again, ready to
    /// stray during the storm.
    stray_ready: bool,
    /// The reset driver was told to storm.
    storming: bool,
    /// The server's pools when a VMM asked for its guest's reset.
    before_guest_reset: Option<Report>,
}

/// The image a VMM client runs (system.xml's program_image).
const VMM_IMAGE: &str = "vmm.elf";

fn init() -> Manager {
    let _ = writeln!(Out::new(), "ready");
    Manager {
        iommu: iommu(spec()),
        held: 0,
        before_crash: None,
        reset_done: false,
        reset_checked: false,
        pools_checked: false,
        stray_ready: false,
        storming: false,
        before_guest_reset: None,
    }
}

/// This PD's channel to client `client`'s PD.
fn channel_of(client: usize) -> Option<Channel> {
    iommu_system::channel_to(microkit::name(), CLIENTS[client].pd)
}

/// The client that is this PD's child `id`.
fn child_client(id: usize) -> Option<usize> {
    let id = u8::try_from(id).ok()?;
    iommu_system::child(microkit::name(), id).map(|c| c.index())
}

/// The static space of the driver at the other end of this PD's
/// `channel`: that driver paces its quarantine steps.
fn static_space_of(channel: Channel) -> Option<(usize, &'static str)> {
    let peer = iommu_system::peer_on(microkit::name(), channel)?;
    let space = iommu_system::static_space_of_pd(peer)?;
    Some((space, iommu_system::STATIC_SPACES[space].name))
}

/// The client at the other end of this PD's `channel` (system.xml).
fn client_on(channel: Channel) -> Option<usize> {
    let peer = iommu_system::peer_on(microkit::name(), channel)?;
    CLIENTS.iter().position(|c| c.pd == peer)
}

impl Manager {
    /// The storm starts once both earlier stories are over, whichever
    /// ends last (their order on seL4 follows the PDs' priorities).
    fn start_storm_when_ready(&mut self, out: &mut Out) {
        let Some(roles) = roles() else {
            return;
        };
        if self.storming || !self.stray_ready || !self.reset_checked {
            return;
        }
        if let Some(stormer) = channel_of(roles.reset) {
            let _ = writeln!(out, "telling {} to storm", CLIENTS[roles.reset].pd);
            self.storming = true;
            microkit::notify(stormer);
        }
    }

    fn page_va() -> u64 {
        pd_support::COMMAND_PAGE_VADDR.get()
    }

    /// A child that is no client of the server faulted: if it drives a
    /// device under a static space, its space is held (its stream aborts,
    /// so what its dead life left in flight reaches nothing) and it is
    /// restarted; the space is released when it says it is ready. Any
    /// other child, or a hold refused, leaves it stopped.
    fn restart_static(
        &mut self,
        out: &mut Out,
        child: Child,
        msg: MessageInfo,
    ) -> Option<MessageInfo> {
        let name = u8::try_from(child.index())
            .ok()
            .and_then(|id| iommu_system::child_pd(microkit::name(), id));
        let Some((name, space)) =
            name.and_then(|n| Some((n, iommu_system::static_space_of_pd(n)?)))
        else {
            let _ = writeln!(
                out,
                "child {} faulted; neither a client nor under a static space: left stopped",
                child.index()
            );
            return None;
        };
        let space_name = iommu_system::STATIC_SPACES[space].name;
        let _ = writeln!(
            out,
            "{name} faulted ({} at pc {:#x}): no client of the server; holding {space_name}, then restarting it",
            microkit::fault::name(msg.label()),
            microkit::get_mr(0)
        );
        let bit = 1u64 << space;
        if self.held & bit == 0 {
            if let Err(e) = self.iommu.hold_static(space as u64) {
                let _ = writeln!(
                    out,
                    "FAILED - hold {space_name}: refused: QUARANTINE of its static space: {e}; {name} left stopped"
                );
                return None;
            }
            self.held |= bit;
        }
        let _ = writeln!(
            out,
            "ok - holds {space_name} across {name}'s restart: its stream aborts"
        );
        match microkit::pd_restart(child) {
            Ok(()) => {
                let _ = writeln!(out, "ok - restarted {name}");
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED - restart {name}: seL4 error {e}");
            }
        }
        None
    }

    fn reset_and_check(&mut self, out: &mut Out, target: usize) -> bool {
        let name = CLIENTS[target].pd;
        // What the server holds for it before the reset, as it reports it.
        let dumped = self.iommu.dump(Self::page_va(), target as u32, |piece| {
            // The report is ASCII; a piece never splits a character.
            let _ = out.write_str(core::str::from_utf8(piece).unwrap_or("?\n"));
        });
        if let Err(e) = dumped {
            let _ = writeln!(out, "FAILED - dump {name}: refused: DUMP of its state: {e}");
        }
        match self.iommu.reset(target as u64) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "ok - reset {name}: its streams quarantined, its objects torn down"
                );
                true
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED - reset {name}: refused: RESET_CLIENT: {e}");
                false
            }
        }
    }
}

impl Manager {
    /// A VMM's guest reset: its first notification asks for it (the
    /// guest is stopped), its second says the restarted guest's DMA works
    /// through its new mappings.
    fn guest_reset(&mut self, out: &mut Out, channel: Channel, client: usize) {
        let name = CLIENTS[client].pd;
        match self.before_guest_reset.take() {
            None => match server_report(&mut self.iommu, Self::page_va()) {
                Ok(report) => {
                    self.before_guest_reset = Some(report);
                    let _ = writeln!(out, "{name} stopped its guest: resetting its device's DMA");
                    if self.reset_and_check(out, client) {
                        microkit::notify(channel);
                    }
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "FAILED - dump the server: refused: DUMP of the server's report: {e}"
                    );
                }
            },
            Some(before) => match server_report(&mut self.iommu, Self::page_va()) {
                Ok(after) if after.pools() == before.pools() => {
                    let _ = write!(out, "{}", after.as_str());
                    let _ = writeln!(
                        out,
                        "ok - {name}'s guest restarted: the server's pools are back where they were before its reset"
                    );
                }
                Ok(after) => {
                    let _ = writeln!(
                        out,
                        "FAILED - pools after the guest's restart:\n{}before its reset:\n{}",
                        after.as_str(),
                        before.as_str()
                    );
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "FAILED - dump the server: refused: DUMP of the server's report: {e}"
                    );
                }
            },
        }
    }
}

impl Handler for Manager {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(u64::from(iommu_proto::Errno::ENOTTY.code()), 0)
    }

    fn notified(&mut self, channel: Channel) {
        let mut out = Out::new();
        if channel == spec().client_channel {
            let _ = writeln!(
                out,
                "ok - the server told me of a DMA fault on a static IO address space whose faults are mine"
            );
            return;
        }
        if let Some((space, name)) = static_space_of(channel) {
            let bit = 1u64 << space;
            let held = self.held & bit != 0;
            let r = if held {
                self.iommu.release_static(space as u64)
            } else {
                self.iommu.hold_static(space as u64)
            };
            match r {
                Ok(()) => {
                    self.held ^= bit;
                    let _ = writeln!(
                        out,
                        "ok - {} {name}: {}",
                        if held { "released" } else { "holds" },
                        if held {
                            "its stream points at its domain again"
                        } else {
                            "its stream aborts"
                        }
                    );
                    microkit::notify(channel);
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "FAILED - quarantine {name}: refused: QUARANTINE of its static space: {e}"
                    );
                }
            }
            return;
        }
        if let Some(client) = client_on(channel).filter(|&c| CLIENTS[c].runs(VMM_IMAGE)) {
            self.guest_reset(&mut out, channel, client);
            return;
        }
        let (Some(roles), Some(client)) = (roles(), client_on(channel)) else {
            return;
        };
        let name = CLIENTS[client].pd;
        if client == roles.reset && self.storming {
            // Mid-storm: the other driver strays once now.
            if let Some(other) = channel_of(roles.crashes) {
                microkit::notify(other);
            }
        } else if client == roles.reset && self.reset_done {
            // Its check after the reset is over.
            self.reset_checked = true;
            self.start_storm_when_ready(&mut out);
        } else if client == roles.reset {
            self.reset_done = true;
            if self.reset_and_check(&mut out, client) {
                microkit::notify(channel);
            }
        } else if client == roles.crashes && self.pools_checked {
            // It resumed its device's fault records.
            self.stray_ready = true;
            self.start_storm_when_ready(&mut out);
        } else if client == roles.crashes {
            match self.before_crash.take() {
                None => {
                    match server_report(&mut self.iommu, Self::page_va()) {
                        Ok(report) => {
                            self.before_crash = Some(report);
                            let _ = writeln!(out, "{name} is ready: telling it to crash");
                            microkit::notify(channel);
                        }
                        Err(e) => {
                            let _ = writeln!(out, "FAILED - dump the server: refused: DUMP of the server's report: {e}");
                        }
                    }
                }
                Some(before) => {
                    match server_report(&mut self.iommu, Self::page_va()) {
                        Ok(after) if after.pools() == before.pools() => {
                            let _ = write!(out, "{}", after.as_str());
                            let _ = writeln!(
                            out,
                            "ok - {name} restarted: the server's pools are back where they were before the crash"
                        );
                            // Before the storm: have its device's faults
                            // recorded again (its crash flood stopped them).
                            self.pools_checked = true;
                            microkit::notify(channel);
                        }
                        Ok(after) => {
                            let _ = writeln!(
                                out,
                                "FAILED - pools after the restart:\n{}before the crash:\n{}",
                                after.as_str(),
                                before.as_str()
                            );
                        }
                        Err(e) => {
                            let _ = writeln!(out, "FAILED - dump the server: refused: DUMP of the server's report: {e}");
                        }
                    }
                }
            }
        }
    }

    fn fault(&mut self, child: Child, msg: MessageInfo) -> Option<MessageInfo> {
        let mut out = Out::new();
        let Some(client) = child_client(child.index()) else {
            return self.restart_static(&mut out, child, msg);
        };
        let name = CLIENTS[client].pd;
        let _ = writeln!(
            out,
            "{name} faulted ({} at pc {:#x}): revoking its DMA, then restarting it",
            microkit::fault::name(msg.label()),
            microkit::get_mr(0)
        );
        // Its streams are quarantined before anything it held is freed:
        // the transfer it left in flight reaches nothing.
        if !self.reset_and_check(&mut out, client) {
            return None;
        }
        match microkit::pd_restart(child) {
            Ok(()) => {
                let _ = writeln!(out, "ok - restarted {name}");
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED - restart {name}: seL4 error {e}");
            }
        }
        // Restarted, not resumed: no reply to the fault.
        None
    }
}

microkit::declare_pd!(init);
