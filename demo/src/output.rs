//! What the story says: its checks counted, each line prefixed by the
//! part speaking.

use core::fmt::Write;

use qemu_virt::platform::Uart;

/// Counts the story's checks.
#[derive(Default)]
pub struct Tally {
    pub passed: u32,
    pub failed: u32,
}

impl Tally {
    /// A check of `who`'s (`who: what`).
    pub fn check(
        &mut self,
        who: &str,
        what: impl core::fmt::Display,
        result: Result<(), &'static str>,
    ) {
        match result {
            Ok(()) => {
                self.passed += 1;
                say!("ok - {who}: {what}\n");
            }
            Err(e) => {
                self.failed += 1;
                say!("FAILED - {who}: {what}: {e}\n");
            }
        }
    }
}

/// Says that the server refused `who`'s `step` of `object`, with the
/// request and errno by name and the errno's meaning; for the check that
/// failed, what it failed of.
pub fn refused(
    who: &str,
    step: &str,
    object: impl core::fmt::Display,
    e: iommu_client::Error,
) -> &'static str {
    say!("{who}: refused: {step} of {object}: {e}\n");
    "the server refused it"
}

/// Pieces of a message written one after another.
pub struct Join<'a>(pub &'a [&'a str]);

impl core::fmt::Display for Join<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|p| f.write_str(p))
    }
}

/// Console output with each line prefixed by the speaking client.
pub struct Prefix(pub &'static str, pub bool);

impl Write for Prefix {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if core::mem::replace(&mut self.1, c == '\n') {
                write!(Uart, "{}: ", self.0)?;
            }
            Uart.write_char(c)?;
        }
        Ok(())
    }
}
