//! The PD's own line out, straight to QEMU virt's PL011: the benchmark
//! runs on a release kernel (no debug output, and no debug-only work in
//! the server, such as its stack scan after every request), which prints
//! nothing for a PD. bench/system.xml maps the UART's page uncached at the
//! patched `uart`.
#![allow(unsafe_code)]

use core::fmt;

use mmio::{ConstStaticCell, Mmio, RegisterBlock};

microkit::setvar!(UART = "uart");

/// Data register, and the flag register's transmit-FIFO-full bit.
const DR: usize = 0x0;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;
/// Flag reads a character waits for room, at most.
const ROOM_POLLS: u32 = 100_000;

static TAKEN: ConstStaticCell<()> = ConstStaticCell::new(());

/// Lines prefixed with `bench: `.
pub struct Console {
    uart: Mmio,
    line_start: bool,
}

impl Console {
    /// The UART, the first time.
    pub fn take() -> Option<Console> {
        TAKEN.take()?;
        // SAFETY: bench/system.xml maps the PL011's 4 KiB register page
        // uncached at the patched `uart` into this PD alone; the claim
        // above makes this its only handle.
        let uart = unsafe { Mmio::new(UART.get() as usize, 0x1000) };
        Some(Console {
            uart,
            line_start: true,
        })
    }

    fn put(&self, byte: u8) {
        let mut polls = 0;
        while self.uart.read32(FR) & FR_TXFF != 0 && polls < ROOM_POLLS {
            polls += 1;
        }
        self.uart.write32(DR, u32::from(byte));
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if core::mem::replace(&mut self.line_start, byte == b'\n') {
                for b in b"bench: " {
                    self.put(*b);
                }
            }
            if byte == b'\n' {
                self.put(b'\r');
            }
            self.put(byte);
        }
        Ok(())
    }
}
