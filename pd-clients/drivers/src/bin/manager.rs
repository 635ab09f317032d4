//! The manager PD: when edu_b says it is ready, resets it through the
//! server (its streams are quarantined, then all it holds is torn down)
//! and tells it to check that its device can no longer reach memory.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::Write;

use driver_pds::{iommu, spec, Out};
use iommu_client::{Iommu, MicrokitTransport};
use iommu_system::CLIENTS;
use microkit::{Channel, Handler, MessageInfo};

/// The channel to edu_b (system.xml).
const EDU_B: Channel = match Channel::new(1) {
    Some(c) => c,
    None => panic!(),
};

struct Manager {
    iommu: Iommu<MicrokitTransport>,
}

fn init() -> Manager {
    let _ = writeln!(Out::new(), "ready");
    Manager {
        iommu: iommu(spec()),
    }
}

impl Handler for Manager {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(u64::from(iommu_proto::Errno::ENOTTY.code()), 0)
    }

    fn notified(&mut self, channel: Channel) {
        if channel != EDU_B {
            return;
        }
        let mut out = Out::new();
        let Some(target) = CLIENTS.iter().position(|c| c.pd == "edu_b") else {
            let _ = writeln!(out, "FAILED - edu_b is not a client");
            return;
        };
        // What the server holds for edu_b before the reset, as the server
        // reports it.
        let page_va = driver_pds::COMMAND_PAGE_VADDR.get();
        let dumped = self.iommu.dump(page_va, target as u32, |piece| {
            // The report is ASCII; a piece never splits a character.
            let _ = out.write_str(core::str::from_utf8(piece).unwrap_or("?\n"));
        });
        if let Err(e) = dumped {
            let _ = writeln!(out, "FAILED - dump edu_b: {e:?}");
        }
        match self.iommu.reset(target as u64) {
            Ok(()) => {
                let _ = writeln!(
                    out,
                    "ok - reset edu_b: its streams quarantined, its objects torn down"
                );
                microkit::notify(EDU_B);
            }
            Err(e) => {
                let _ = writeln!(out, "FAILED - reset edu_b: {e:?}");
            }
        }
    }
}

microkit::declare_pd!(init);
