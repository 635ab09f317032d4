//! `make run` without a Microkit SDK: the bare-metal demo boots on QEMU's
//! SMMUv3 and tells the whole story, every check passing, and says that
//! it runs without seL4 isolation.
//!
//! Without QEMU, make or the aarch64-unknown-none target the test fails
//! when `CI` is set and is skipped, saying what to install, otherwise.

#[path = "support/tools.rs"]
mod tools;

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
    std::fs::write(&image, vec![0u8; 4 << 20]).unwrap();
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
        "4 clients from system.xml + iommu.xml",
        "demo: 2 drivers (edu_a crashes and is restarted, edu_b is reset), manager supervises",
        "edu_a: edu at stream 0x8",
        "edu_b: edu at stream 0x10",
        "ok - edu_a: DMA through its mappings",
        "ok - edu_a: stray DMA faulted and reported to it alone",
        "stopped by the SMMU and reported: F_TRANSLATION",
        "ok - edu_b: DMA through its mappings",
        "ok - edu_b: stray DMA faulted and reported to it alone",
        "ok - edu_b: cannot bind edu_a's device, map edu_a's memory or reset edu_a",
        "server: DMA fault F_TRANSLATION on stream 0x8 (edu_a's edu_a)",
        "ok - manager: dumps edu_b's state",
        "manager:   device 256: edu_b, stream 0x10, attached to HWPT",
        "ok - manager: resets edu_b",
        "server: DMA fault C_BAD_STE on stream 0x10 (edu_b's edu_b)",
        "ran, reached nothing and faulted (C_BAD_STE)",
        "ok - edu_b: device can no longer reach memory",
        "ok - edu_b: resources all returned",
        // The crash in the middle of a DMA, revoked and restarted.
        "edu_a: DMA to IOVA 0x2000 in flight: crashing on purpose",
        "ok - supervisor: revokes edu_a's DMA when it dies",
        "ok - edu_a: resources all returned",
        "server: DMA fault C_BAD_STE on stream 0x8 (edu_a's edu_a)",
        "edu_a: restarted: my previous life's DMA was stopped (C_BAD_STE) and reached nothing",
        "ok - edu_a: restarted: binds, maps and does DMA again",
        "ok - supervisor: the server's pools are back where they were before the crash",
        // The server's own dump: the SMMU's features, domains, pools.
        "hardware: SMMUv3, coherent true, OAS 44 IAS 48 SID bits 16, 2-level stream table true, range invalidation true; domains 3/16, leaked 0, table pages 12/64",
        "ok - edu_a: still works at the end",
        // NVMe through the IOMMU, for two block clients.
        "nvme_driver: QEMU NVMe Ctrl (serial iommu-nvme), 8192 blocks of 512 bytes, queues at IOVA 0x40000000",
        "ok - nvme_driver: brings its NVMe controller up through the IOMMU",
        "blk_static: static mode: data region blk_static_data (128 KiB) at IOVA 0x50000000",
        "blk_static: ok - read back 20 KiB from mid-page (PRP list) at block 1056: the data written",
        "nvme_driver: blk_static (static): 6 I/Os, 0 maps and 0 unmaps",
        "ok - blk_static: static: writes, reads back and verifies through nvme_driver",
        "blk_strict: strict mode: data region blk_strict_data (128 KiB) at IOVA 0x51000000",
        "nvme_driver: blk_strict (strict): 6 I/Os, 6 maps and 6 unmaps",
        "ok - blk_strict: strict: writes, reads back and verifies through nvme_driver",
        "ok - blk_strict: strict: no mapping left once every request completed",
        "server: DMA fault F_TRANSLATION on stream 0x18 (nvme_driver's nvme), IOVA 0x50021000 read",
        "nvme_driver: stray command to IOVA 0x50020000 (its PRP list one page on): completed with DataTransferError; reported to me: F_TRANSLATION at IOVA 0x50021000",
        "ok - nvme_driver: a command naming an unmapped IOVA is stopped, reported, and fails",
        "ok - nvme_driver: serves on after the stray command",
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
        "device address 0x100000000 (edu_d_space), no IOMMU client",
        "ok - edu_d: DMA with no IOMMU client, confined by system.xml alone",
        "ok - edu_d: DMA outside my iomaps reaches nothing",
        "ok - manager: the server told me of the fault on edu_d_space",
        "manager: static space edu_c_space (domain_id 1): stream 0x20, 1 iomaps, 4 table pages, attached",
        "manager:   0x5f000000-0x5f00ffff -> 0x5f000000 rw",
        "manager: static space edu_d_space (domain_id 2): stream 0x28, 1 iomaps, 4 table pages, attached",
        "demo: 33 passed, 0 failed",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "a check failed:\n{out}");
    assert_eq!(status, Some(0), "exit status:\n{out}");
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
    // wrote (each story at its own blocks, the last after the stray
    // command), and nothing else was written.
    let disk = std::fs::read(&image).unwrap();
    let mut expected = vec![0u8; disk.len()];
    for client in 1..=3 {
        for range in blk_driver::story::written(client * 1024) {
            for x in range {
                expected[x as usize] = blk_driver::story::pattern(x);
            }
        }
    }
    let wrong = disk.iter().zip(&expected).filter(|(a, b)| a != b).count();
    assert_eq!(
        wrong, 0,
        "{wrong} bytes of the disk differ from what the clients wrote"
    );
}
