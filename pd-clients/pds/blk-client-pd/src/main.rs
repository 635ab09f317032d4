//! A block client PD (one image, an instance per client): tries to read
//! and to write another client's blocks and sees both refused, has
//! requests in flight when its driver dies and gets an error for each,
//! then writes distinct patterns to its blocks through the restarted
//! driver, reads them back and checks them (`scenarios::blk`). Its data
//! region is the one its driver's iommu.xml entry shares with it, and its
//! blocks the share of the disk given there; another client's blocks are
//! the share of the driver's next data region.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

use core::fmt::Write;

use iommu_system::CLIENTS;
use microkit::{Channel, Handler, MessageInfo, SharedMemory};
use mmio::StaticCell;
use pd_support::Out;
use scenarios::blk::{Next, Story};

static REGIONS: StaticCell<(SharedMemory, SharedMemory)> = StaticCell::new();

struct BlkClient {
    ring: Option<blk_queue::Client<'static, SharedMemory>>,
    data: Option<&'static SharedMemory>,
    story: Story,
    driver: Option<Channel>,
    mode: &'static str,
}

fn init() -> BlkClient {
    let me = microkit::name();
    let mut out = Out::new();
    // My data region: a driver's DMA region shared with me.
    let found = CLIENTS.iter().find_map(|c| {
        c.regions
            .iter()
            .position(|r| r.shared_with == Some(me))
            .map(|k| (c, k))
    });
    let Some((driver, k)) = found else {
        let _ = writeln!(out, "FAILED - no driver shares a data region with me");
        return BlkClient {
            ring: None,
            data: None,
            story: Story::new(0),
            driver: None,
            mode: "",
        };
    };
    let region = &driver.regions[k];
    let regions = pd_support::blk::regions(driver.pd, region.mr).and_then(|r| REGIONS.init(r));
    let mut this = BlkClient {
        ring: None,
        data: None,
        story: story(driver, k),
        driver: iommu_system::channel_to(me, driver.pd),
        mode: blk_driver::Mode::of(region.strict).name(),
    };
    let Some((data, ring)) = regions.map(|r| (&r.0, &r.1)) else {
        let _ = writeln!(out, "FAILED - regions handed out twice");
        return this;
    };
    match blk_queue::Client::new(ring) {
        Ok(r) => this.ring = Some(r),
        Err(e) => {
            let _ = writeln!(out, "FAILED - my ring is malformed: {e:?}");
            return this;
        }
    }
    this.data = Some(data);
    let _ = writeln!(
        out,
        "{} mode: data region {} ({} KiB), served by {}",
        this.mode,
        region.mr,
        region.size / 1024,
        driver.pd
    );
    this.step(&mut out);
    this
}

/// The story of the block client whose data region is `driver`'s region
/// `k`: at the start of its share, trying the start of the next client's.
fn story(driver: &iommu_system::ClientSpec, k: usize) -> Story {
    let Some(mine) = driver.regions[k].share else {
        let _ = writeln!(Out::new(), "FAILED - no share of the disk is mine");
        return Story::new(0);
    };
    let shares = || driver.regions.iter().filter_map(|r| r.share);
    let next = shares()
        .filter(|s| s.first_block > mine.first_block)
        .chain(shares())
        .find(|s| *s != mine);
    let story = Story::new(mine.first_block).through_a_crash();
    match next {
        Some(other) => story.trying(other.first_block),
        None => story,
    }
}

impl BlkClient {
    fn step(&mut self, out: &mut Out) {
        let (Some(ring), Some(data)) = (self.ring.as_mut(), self.data) else {
            return;
        };
        match self.story.step(ring, data, out) {
            Next::Notify => {
                if let Some(ch) = self.driver {
                    microkit::notify(ch);
                }
            }
            Next::Wait => {}
            Next::Done(ok) => {
                let _ = writeln!(
                    out,
                    "{} - {} mode: wrote, read back and verified through the driver",
                    if ok { "ok" } else { "FAILED" },
                    self.mode
                );
            }
        }
    }
}

impl Handler for BlkClient {
    fn protected(&mut self, _: Channel, _: MessageInfo) -> MessageInfo {
        MessageInfo::new(u64::from(iommu_proto::Errno::ENOTTY.code()), 0)
    }

    fn notified(&mut self, channel: Channel) {
        if Some(channel) == self.driver {
            self.step(&mut Out::new());
        }
    }
}

microkit::declare_pd!(init);
