//! The whole system without seL4: the server core on QEMU's SMMUv3 and the
//! edu drivers and the manager as its clients, all in one bare-metal
//! image, configured from system.xml and iommu.xml like the PDs. Requests
//! take the PDs' path (a command page copied in and out by
//! `Server::serve`); a direct call stands in for the protected call, and
//! draining the SMMU's event queue stands in for its interrupt.
//!
//! It says so: nothing here is isolated, every part shares one address
//! space. `make run` with a Microkit SDK runs the real system.
//!
//! [`run`] tells the story scenario by scenario; each lives in a module of
//! its own: [`boot`] brings the system up, [`transport`] carries the
//! clients' calls, then [`edu`], [`storm`], [`nvme`] and [`statics`].

#![no_std]
#![no_main]
#![deny(unsafe_code)]

/// Writes to the console.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(
            &mut qemu_virt::platform::Uart,
            format_args!($($arg)*),
        );
    }};
}

mod boot;
mod devices;
mod edu;
mod guest;
mod memory;
mod nvme;
mod output;
mod statics;
mod storm;
mod transport;

use core::cell::RefCell;

use output::Tally;
use qemu_virt::platform;
use transport::Clients;

qemu_virt::image_main!(main);

fn main() -> u32 {
    say!("iommu demo: the IOMMU server core and the edu drivers in one bare-metal image on QEMU's SMMUv3\n");
    say!("iommu demo: running WITHOUT seL4 isolation (no Microkit SDK): every part shares one address space\n");
    let mut tally = Tally::default();
    match run(&mut tally) {
        Ok(()) => {}
        Err(e) => {
            tally.failed += 1;
            say!("FAILED - demo: {e}\n");
        }
    }
    let (size, used) = platform::stack_use();
    say!(
        "demo: stack high-water mark {} KiB of {} KiB\n",
        used.div_ceil(1024),
        size / 1024
    );
    say!("demo: {} passed, {} failed\n", tally.passed, tally.failed);
    tally.failed
}

/// The story, one scenario after another.
fn run(tally: &mut Tally) -> Result<(), &'static str> {
    let boot::Booted {
        server,
        mut regions,
        symbols,
        mut spare,
        statics,
        mut windows,
    } = boot::boot(tally)?;
    let server = RefCell::new(server);
    boot::announce(&server);
    let buffers = transport::buffers(&mut regions);
    let mut clients = Clients::connect(&server)?;

    let edus = edu::story(tally, &mut clients, &buffers, &symbols, &mut windows)?;
    // The server nested in its clients, as far as the edu story: what
    // tests/demo.rs holds against the server PD's stack.
    let (_, used) = platform::stack_use();
    say!(
        "demo: stack high-water mark through the edu story {} KiB\n",
        used.div_ceil(1024)
    );
    storm::story(tally, &mut clients, &edus)?;
    nvme::story(tally, &mut clients, &buffers, &mut spare, &mut windows)?;
    // The drivers that never call the server.
    statics::story(tally, &mut clients, statics);
    // A guest's passed-through device, its VMM a client.
    guest::story(tally, &mut clients, &buffers, &mut windows)
}
