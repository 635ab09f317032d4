//! `make run` without a Microkit SDK: the bare-metal demo boots on QEMU's
//! SMMUv3 and tells the whole story, every check passing, and says that
//! it runs without seL4 isolation.
//!
//! Without QEMU, make or the aarch64-unknown-none target the test fails
//! when `CI` is set and is skipped, saying what to install, otherwise.

use iommu_testkit::tools;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tools::{have_all, run_with_timeout};

const TIMEOUT: Duration = Duration::from_secs(600);

#[test]
fn make_run_without_an_sdk_tells_the_whole_story() {
    if !have_all(&[
        ("qemu-system-aarch64", "apt-get install qemu-system-arm"),
        ("make", "apt-get install make"),
    ]) {
        return;
    }
    // The NVMe controller's disk: zeros, read back after the run.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let image = root.join("target/demo-nvme.img");
    // As big as the configuration says the disk is.
    let disk_blocks = iommu_system::CLIENTS
        .iter()
        .find_map(|c| c.disk_blocks)
        .expect("a driver of a disk in the configuration");
    std::fs::write(&image, vec![0u8; disk_blocks as usize * 512]).unwrap();
    let mut make = Command::new("make");
    make.arg("run")
        .arg(format!("NVME_IMAGE={}", image.display()))
        .current_dir(root)
        .env_remove("MICROKIT_SDK")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let (status, out) = run_with_timeout(make, TIMEOUT);
    println!("{out}");
    assert!(
        status.is_some(),
        "make run did not finish within {TIMEOUT:?}"
    );
    for line in [
        "running WITHOUT seL4 isolation",
        // The drivers under static IO address spaces (system.xml's
        // <io_address_space>): no IOMMU client, no server call.
        "ok - edu_c: before its io address space exists, its DMA reaches nothing (default deny)",
        "server: static IO address space edu_c_space (peripheral 00:04.0, stream 0x20, domain_id 1): 1 iomaps, 4 table pages, attached",
        "server: static IO address space edu_d_space (peripheral 00:05.0, stream 0x28, domain_id 2): 1 iomaps, 4 table pages, attached",
        "5 clients from system.xml + iommu.xml",
        "demo: 2 drivers (edu_a crashes and is restarted, edu_b is reset), manager supervises",
        "edu_a: edu at stream 0x8",
        "edu_b: edu at stream 0x10",
        "ok - edu_a: DMA through its mappings",
        "ok - edu_a: stray DMA faulted and reported to it alone",
        "stopped by the SMMU and reported: F_TRANSLATION",
        "ok - edu_b: DMA through its mappings",
        "ok - edu_b: stray DMA faulted and reported to it alone",
        "ok - edu_b: cannot bind edu_a's device, map edu_a's memory or reset edu_a",
        "server: DMA fault F_TRANSLATION on stream 0x8 (edu_a)",
        // A burst of one device's records is one line with its count.
        "server: DMA fault F_TRANSLATION on stream 0x8 (edu_a), IOVA 0x102000 write; 8 records logged, the last at IOVA 0x10201c",
        "ok - manager: dumps edu_b's state",
        "manager:   device 256: edu_b, stream 0x10, attached to HWPT",
        "ok - manager: resets edu_b",
        "server: DMA fault C_BAD_STE on stream 0x10 (edu_b)",
        "ran, reached nothing and faulted (C_BAD_STE)",
        "ok - edu_b: device can no longer reach memory",
        "ok - edu_b: resources all returned",
        // The crash in the middle of a DMA, revoked and restarted.
        "edu_a: DMA to IOVA 0x2000 in flight: crashing on purpose",
        "ok - supervisor: revokes edu_a's DMA when it dies",
        "ok - edu_a: resources all returned",
        "server: DMA fault C_BAD_STE on stream 0x8 (edu_a)",
        "edu_a: restarted: my previous life's DMA was stopped (C_BAD_STE) and reached nothing",
        "ok - edu_a: restarted: binds, maps and does DMA again",
        "ok - supervisor: the server's pools are back where they were before the crash",
        // A fault storm contained.
        "event queue 4096 records, overflows 0",
        "ok - edu_b: drains its faults and has its device's faults recorded",
        "ok - edu_a: drains its faults and has its device's faults recorded",
        "server: stream 0x10 (edu_b) faulted more than 16 times in one interrupt: its records are stopped until edu_b resumes them",
        "edu_a: during the storm: 1 record, F_TRANSLATION at IOVA 0x102000, lost false",
        "ok - edu_a: its one stray DMA during edu_b's storm is reported to it exactly, nothing lost",
        "edu_b: told it is storming: 16 records queued, 1008 more dropped for it alone",
        "ok - edu_b: told it is storming: its records stopped after its budget, its drops counted",
        "ok - server: the storm cost at most 64 records per interrupt and the event queue never overflowed",
        // The server's own dump: the SMMU's features, domains, pools.
        "hardware: SMMUv3, coherent true, OAS 44 IAS 48 SID bits 16, 2-level stream table true, range invalidation true; domains 3/16, leaked 0, table pages 12/64",
        "ok - edu_a: still works at the end",
        // NVMe through the IOMMU, for two block clients.
        "nvme_driver: QEMU NVMe Ctrl (serial iommu-nvme), 8192 blocks of 512 bytes, queues at IOVA 0x40000000",
        "ok - nvme_driver: brings its NVMe controller up through the IOMMU",
        "blk_static: static mode: data region blk_static_data (128 KiB) at IOVA 0x50000000, blocks 0..4096",
        "blk_strict: strict mode: data region blk_strict_data (128 KiB) at IOVA 0x51000000, blocks 4096..8192",
        // Each block client tries the other's share: refused, nothing touched.
        "blk_static: ok - read of block 4096, another client's, refused (ERR_BLOCKS); my buffer untouched",
        "blk_static: ok - write to block 4096, another client's, refused (ERR_BLOCKS)",
        "blk_strict: ok - read of block 0, another client's, refused (ERR_BLOCKS); my buffer untouched",
        "blk_strict: ok - write to block 0, another client's, refused (ERR_BLOCKS)",
        // The NVMe driver dies with requests of both in flight.
        "nvme_driver: 4 requests of its block clients in flight: crashing on purpose",
        "ok - supervisor: revokes nvme_driver's DMA when it dies",
        "ok - nvme_driver: resources all returned",
        "nvme_driver: restarted: answered 4 requests its previous life took and never answered: ERR_ABANDONED",
        "ok - nvme_driver: restarted: every request its previous life took is answered with an error",
        "blk_static: ok - 2 requests in flight when the driver died: answered ERR_ABANDONED",
        "blk_strict: ok - 2 requests in flight when the driver died: answered ERR_ABANDONED",
        // And everything after succeeds.
        "blk_static: ok - read back 20 KiB from mid-page (PRP list) at block 32: the data written",
        "blk_strict: ok - read back 20 KiB from mid-page (PRP list) at block 4128: the data written",
        "nvme_driver: blk_static (static): 6 I/Os, 0 maps and 0 unmaps",
        "ok - blk_static: static: refused another's blocks; an error for each request its driver died with; then writes, reads back and verifies through nvme_driver",
        "nvme_driver: blk_strict (strict): 6 I/Os, 6 maps and 6 unmaps",
        "ok - blk_strict: strict: refused another's blocks; an error for each request its driver died with; then writes, reads back and verifies through nvme_driver",
        "ok - blk_strict: strict: no mapping left once every request completed",
        "server: DMA fault F_TRANSLATION on stream 0x18 (nvme_driver's nvme), IOVA 0x50021000 read",
        "nvme_driver: stray command to IOVA 0x50020000 (its PRP list one page on): completed with DataTransferError; reported to me: F_TRANSLATION at IOVA 0x50021000",
        "ok - nvme_driver: a command naming an unmapped IOVA is stopped, reported, and fails",
        "ok - nvme_driver: serves on after the stray command",
        "nvme_driver: device misbehaviour: 0 completions ignored, 0 commands timed out, 0 controller resets",
        "blk_static: ok - read back 20 KiB from mid-page (PRP list) at block 2080: the data written",
        "edu_c: edu_c_dma at physical 0x5f000000, device address 0x5f000000 (edu_c_space), no IOMMU client",
        "ok - edu_c: DMA with no IOMMU client, confined by system.xml alone",
        "ok - edu_c: DMA outside my iomaps reaches nothing",
        "server: DMA fault F_TRANSLATION on stream 0x20 (static space edu_c_space, domain_id 1), IOVA 0x5f010000 write",
        "ok - edu_c: the server told me of the fault on edu_c_space",
        "ok - manager: holds edu_c_space: its stream aborts",
        "ok - edu_c: held by the manager: my device reaches nothing",
        "server: DMA fault C_BAD_STE on stream 0x20 (static space edu_c_space, domain_id 1)",
        "ok - manager: released edu_c_space: its stream points at its domain again",
        "ok - edu_c: released: DMA works again, still no server call",
        // It crashes; no client, so nothing to reset: its space is held
        // across the restart and released when it is ready.
        "manager: edu_c faulted (simulated): no client of the server; holding edu_c_space, then restarting it",
        "ok - manager: holds edu_c_space across edu_c's restart: its stream aborts",
        "ok - edu_c: restarted: my space held across the restart, my device reaches nothing",
        "ok - edu_c: restarted under my static IO address space: DMA works, no server call",
        "device address 0x100000000 (edu_d_space), no IOMMU client",
        "ok - edu_d: DMA with no IOMMU client, confined by system.xml alone",
        "ok - edu_d: DMA outside my iomaps reaches nothing",
        "ok - manager: the server told me of the fault on edu_d_space",
        "manager: static space edu_c_space (domain_id 1): stream 0x20, 1 iomaps, 4 table pages, attached",
        "manager:   0x5f000000-0x5f00ffff -> 0x5f000000 rw",
        "manager: static space edu_d_space (domain_id 2): stream 0x28, 1 iomaps, 4 table pages, attached",
        // A guest's passed-through device, without a VM: the guest's
        // driver as a plain driver, its VMM's VFIO sequence and reset path.
        "guest_edu: no VM without an SDK: the guest's driver runs as a plain driver, its guest-physical addresses the IOVAs its VMM maps",
        "ok - vmm: VFIO type1 as QEMU runs it: guest RAM mapped at its guest-physical address",
        "MAP_DMA iova 0x40000000 <- vaddr 0x30000000, 0x200000 bytes",
        "ok - guest_edu: DMA round trip into its own RAM at guest-physical addresses",
        "vmm: guest_edu: F_TRANSLATION writing GPA 0x40200000 (outside the guest's memory map)",
        "ok - guest_edu: DMA aimed outside its RAM reached nothing; its VMM is told where",
        "ok - vmm: reset: stopped, quarantined; the DMA in flight reached nothing and faulted",
        "ok - vmm: reset: mapped again, the guest's DMA works, the server's pools as before",
        "demo: 50 passed, 0 failed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "a check failed:\n{out}");
    assert_eq!(status, Some(0), "exit status:\n{out}");
    // No burst of one stream's fault records spills over several lines.
    let lines: Vec<&str> = out.lines().collect();
    for pair in lines.windows(2) {
        let stream = |l: &str| {
            l.strip_prefix("server: DMA fault ")
                .and_then(|rest| rest.split_once(')'))
                .map(|(head, _)| head.to_owned())
        };
        assert!(
            stream(pair[0]).is_none() || stream(pair[0]) != stream(pair[1]),
            "one burst said on two lines:\n{}\n{}",
            pair[0],
            pair[1]
        );
    }
    // The demo runs the server core nested inside its clients, on one
    // stack: its high-water mark bounds the server's, which must keep a
    // margin of two inside the stack system.xml gives the server PD.
    let used_kib: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("demo: stack high-water mark through the edu story "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no stack high-water mark in:\n{out}"));
    assert!(
        2 * used_kib * 1024 <= iommu_system::SERVER.stack_size,
        "the demo's stack peaked at {used_kib} KiB: not within half of the server's {} KiB",
        iommu_system::SERVER.stack_size / 1024
    );

    // Independent evidence: the disk holds exactly what the block clients
    // wrote, each in its own configured share (a story at the start of
    // each share; the first client's second story, after the stray
    // command, in the middle of its share), and nothing else was written:
    // neither the refused writes to another's share nor anything of the
    // driver's death.
    let disk = std::fs::read(&image).unwrap();
    let mut expected = vec![0u8; disk.len()];
    let shares: Vec<_> = iommu_system::CLIENTS
        .iter()
        .flat_map(|c| c.regions)
        .filter_map(|r| r.share.map(|s| s.range()))
        .collect();
    assert_eq!(shares.len(), 2, "the demo's two block clients");
    let stories = shares.iter().map(|s| (s.clone(), s.start)).chain([(
        shares[0].clone(),
        scenarios::blk::second_story(shares[0].clone()),
    )]);
    for (share, first_block) in stories {
        for range in scenarios::blk::written(first_block) {
            assert!(range.start >= share.start * 512 && range.end <= share.end * 512);
            for x in range {
                expected[x as usize] = scenarios::blk::pattern(x);
            }
        }
    }
    let wrong = disk.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(
        wrong, 0,
        "{wrong} bytes of the disk differ from what the clients wrote"
    );
}

/// `make run` on a copy of the example whose system.xml is edited
/// (`edits`: each text replaced once), in a build directory of its own
/// under target/`name`; returns its exit status and output.
fn run_edited(name: &str, edits: &[(&str, &str)]) -> (Option<i32>, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut system = std::fs::read_to_string(root.join("system.xml")).unwrap();
    for (from, to) in edits {
        assert_eq!(
            system.matches(from).count(),
            1,
            "`{from}` once in system.xml"
        );
        system = system.replace(from, to);
    }
    let path = dir.join("system.xml");
    std::fs::write(&path, system).unwrap();
    let mut make = Command::new("make");
    make.arg("run")
        .arg(format!("SYSTEM_XML={}", path.display()))
        .arg(format!("NVME_IMAGE={}", dir.join("nvme.img").display()))
        .arg(format!("DEMO_TARGET_DIR={}", dir.join("demo").display()))
        .current_dir(root)
        .env_remove("MICROKIT_SDK")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    let (status, out) = run_with_timeout(make, TIMEOUT);
    println!("{out}");
    (status, out)
}

/// The demo takes each device's windows from the configuration: a BAR
/// region moved in system.xml is where the demo programs that device's
/// BAR0, and the story runs there.
#[test]
fn the_demo_programs_the_configured_bar() {
    if !have_all(&[
        ("qemu-system-aarch64", "apt-get install qemu-system-arm"),
        ("make", "apt-get install make"),
    ]) {
        return;
    }
    let (status, out) = run_edited(
        "demo-moved-bar",
        &[(
            r#"name="edu_b_bar" size="0x100000" phys_addr="0x10100000""#,
            r#"name="edu_b_bar" size="0x100000" phys_addr="0x10800000""#,
        )],
    );
    for line in [
        "edu_b: edu at stream 0x10, BAR0 0x10800000 (edu_b_bar)",
        "ok - edu_b: DMA through its mappings",
        "ok - edu_b: stray DMA faulted and reported to it alone",
        "edu_a: edu at stream 0x8, BAR0 0x10000000 (edu_a_bar)",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "a check failed:\n{out}");
    assert_eq!(status, Some(0), "exit status:\n{out}");
}

/// A DMA region its driver maps read-only (accepted, as sDDF's transmit
/// regions are) is read-only for its device: the driver's writable
/// mapping is refused, and the demo says which request, which errno by
/// name, on which region, and why, citing the line of system.xml that
/// makes it so.
#[test]
fn a_refusal_names_the_request_the_errno_and_the_region() {
    if !have_all(&[
        ("qemu-system-aarch64", "apt-get install qemu-system-arm"),
        ("make", "apt-get install make"),
    ]) {
        return;
    }
    let map = r#"<map mr="edu_b_dma" vaddr="0x30000000" perms="rw""#;
    let system =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("system.xml")).unwrap();
    let line = system
        .lines()
        .position(|l| l.contains(map))
        .expect("edu_b's map of its DMA region")
        + 1;
    let (_, out) = run_edited(
        "demo-read-only",
        &[(map, r#"<map mr="edu_b_dma" vaddr="0x30000000" perms="r""#)],
    );
    let cause = format!(
        "edu_b: because edu_b_dma is read-only for devices: edu_b maps it without \"w\", and a device gets no more than its driver has (system.xml:{line}: <map mr=\"edu_b_dma\">)"
    );
    for line in [
        "ok - edu_a: DMA through its mappings",
        "edu_b: refused: MAP of the destination page of edu_b_dma: IOMMU_IOAS_MAP: EFAULT: bad address (outside the caller's memory or its rights)",
        &cause,
        "FAILED - demo: MAP of the destination page refused",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}
