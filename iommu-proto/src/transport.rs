//! The client's end of one call.

/// Moves one request to the server and its reply back: the request struct
/// written at the start of the client's command page, the call made with
/// the operation's label and MR0, MR1, and the reply read back from the
/// page. The Microkit transport makes a protected call; an in-process one
/// (the bare-metal demo, the host tests) calls the server core directly.
pub trait Transport {
    /// Writes `bytes` at the start of the command page.
    fn write_page(&mut self, bytes: &[u8]);
    /// Reads the start of the command page into `out`.
    fn read_page(&mut self, out: &mut [u8]);
    /// One call: `label` and MR0, MR1 in; the reply label (0 or an errno)
    /// and MR0 out.
    fn call(&mut self, label: u64, mrs: [u64; 2]) -> (u64, u64);
}
