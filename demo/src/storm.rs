//! A fault storm contained.

use iommu_server::EVENTS_PER_INTERRUPT;
use iommu_system::CLIENTS;

use crate::edu::EduDrivers;
use crate::output::{Join, Prefix, Tally};
use crate::transport::{interrupt, Clients};

/// The transfer after which the other driver's device strays.
const STRAY_DURING: u32 = 3;

/// A fault storm contained: the reset driver's device, which has no
/// translation left, DMAs without end and faults on every beat; the
/// server stops its records after its budget, and the other driver's
/// single stray DMA in the middle of it reaches that driver exactly, no
/// record lost.
pub fn story(
    tally: &mut Tally,
    clients: &mut Clients<'_>,
    drivers: &EduDrivers<'_>,
) -> Result<(), &'static str> {
    let server = clients.server;
    let iommus = &mut clients.iommus;
    let (edus, sessions) = (&drivers.edus, &drivers.sessions);
    let (storming, stray) = (drivers.roles.reset, drivers.roles.crashes);
    let (sname, bname) = (CLIENTS[storming].pd, CLIENTS[stray].pd);
    let (Some(storm_edu), Some(stray_edu), Some(old), Some(session)) = (
        &edus[storming],
        &edus[stray],
        &sessions[storming],
        &sessions[stray],
    ) else {
        return Err("the storm needs both drivers' devices");
    };
    // Earlier floods stopped both devices' records: each driver drains its
    // queue and asks for them again.
    for i in [storming, stray] {
        tally.check(
            CLIENTS[i].pd,
            "drains its faults and has its device's faults recorded",
            scenarios::storm::record_again(&mut iommus[i]),
        );
    }

    let overflows = server.borrow().hardware().event_overflows();
    let (mut interrupts, mut most) = (0u32, 0usize);
    let mut stray_iova = None;
    let mut run_server = |interrupts: &mut u32| {
        let c = interrupt(server);
        *interrupts += 1;
        most = most.max(c.handled);
    };
    let stormed = scenarios::storm::storm(storm_edu, old.dst.iova(), |transfer| {
        if transfer == STRAY_DURING {
            stray_iova = Some(scenarios::storm::lone_stray(session, stray_edu)?);
        }
        // The server runs once between transfers: one interrupt's batch.
        run_server(&mut interrupts);
        Ok(())
    });
    while server.borrow().backlog() {
        run_server(&mut interrupts);
    }
    stormed?;
    say!(
        "demo: {sname}'s device made {} faulting transfers of {} bytes, {bname}'s one stray DMA of 4 bytes in between; the server took {interrupts} interrupts, at most {most} records each\n",
        scenarios::storm::STORM_TRANSFERS,
        scenarios::storm::STORM_BYTES
    );
    let stray_iova = stray_iova.ok_or("no stray DMA")?;
    tally.check(
        bname,
        Join(&[
            "its one stray DMA during ",
            sname,
            "'s storm is reported to it exactly, nothing lost",
        ]),
        scenarios::storm::exactly_the_stray(
            &mut iommus[stray],
            stray_iova,
            1,
            &mut Prefix(bname, true),
        ),
    );
    tally.check(
        sname,
        "told it is storming: its records stopped after its budget, its drops counted",
        scenarios::storm::told_storming(
            &mut iommus[storming],
            u64::from(iommu_proto::fault::IOMMU_FAULT_STORM_BUDGET),
            &mut Prefix(sname, true),
        ),
    );
    tally.check(
        "server",
        Join(&[
            "the storm cost at most ",
            EVENTS_PER_INTERRUPT_TEXT,
            " records per interrupt and the event queue never overflowed",
        ]),
        if most <= EVENTS_PER_INTERRUPT && server.borrow().hardware().event_overflows() == overflows
        {
            Ok(())
        } else {
            Err("an interrupt did more, or the queue overflowed")
        },
    );
    Ok(())
}

/// [`EVENTS_PER_INTERRUPT`] as the story says it.
const EVENTS_PER_INTERRUPT_TEXT: &str = "64";
const _: () = assert!(EVENTS_PER_INTERRUPT == 64);
