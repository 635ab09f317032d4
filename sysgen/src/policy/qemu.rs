//! The `qemu` attribute of a `<device>` or `<static_device>`: a QEMU
//! device model and its options, placed by the stream ID on QEMU virt's
//! root bus (never by hand), which is its only bus.

/// Checks a `qemu` attribute: a device model and its options, placed by
/// the stream ID on QEMU virt's root bus.
pub(crate) fn qemu_device(value: &str, stream_id: u32) -> Result<String, String> {
    let model = value.split(',').next().unwrap_or("");
    if model.is_empty() {
        return Err("a QEMU device model first (such as `edu`), then its options".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ",=._-".contains(*c)))
    {
        return Err(format!("`{c}` is not allowed in a QEMU device's options"));
    }
    if let Some(o) = value
        .split(',')
        .skip(1)
        .find(|o| o.starts_with("addr=") || o.starts_with("bus="))
    {
        return Err(format!(
            "`{o}`: the stream ID places the device (bus 0, devfn = stream_id & 0xff)"
        ));
    }
    if stream_id > 0xff {
        return Err(format!(
            "stream {stream_id:#x} is not on bus 0, the only bus of QEMU virt's PCI host"
        ));
    }
    if stream_id >> 3 == 0 {
        return Err("device 0 of bus 0 is QEMU virt's host bridge".into());
    }
    Ok(value.to_string())
}
