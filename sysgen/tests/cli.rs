//! `cargo run -p sysgen -- system.xml iommu.xml` checks a pair without
//! building anything: a summary and status 0, or one located error line
//! and status 1.

use std::path::Path;
use std::process::Command;

fn run(system: &Path, policy: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sysgen"))
        .arg(system)
        .arg(policy)
        .output()
        .expect("run sysgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn checks_a_pair_and_says_where_it_is_wrong() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (system, policy) = (root.join("system.xml"), root.join("iommu.xml"));
    let (code, out, _) = run(&system, &policy);
    assert_eq!(code, 0);
    assert!(out.contains("clients"), "{out}");

    let dir = std::env::temp_dir().join(format!("sysgen-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("system.xml");
    let text = std::fs::read_to_string(&system).unwrap();
    std::fs::write(&bad, text.replacen("perms=\"rw\"", "perm=\"rw\"", 1)).unwrap();
    let (code, _, err) = run(&bad, &policy);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: system.xml:"), "{err}");
    assert!(err.contains("attribute `perm`: unknown attribute"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Output into a pipe nobody reads any more (`sysgen ... | head` once
/// head has what it wants) ends sysgen quietly with status 141, as SIGPIPE
/// ends `cat`: no panic, no message.
#[test]
fn a_closed_output_pipe_ends_it_quietly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let system = root.join("system.xml");
    let policy = root.join("iommu.xml");
    let modes: [&[&std::ffi::OsStr]; 3] = [
        &["--c-header".as_ref()],
        &[system.as_os_str(), policy.as_os_str()],
        &[
            "--c-config".as_ref(),
            "edu_a".as_ref(),
            system.as_os_str(),
            policy.as_os_str(),
        ],
    ];
    for args in modes {
        // A pipe whose only reader has exited: every write to it fails.
        let mut reader = Command::new("true")
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("run true");
        let closed = reader.stdin.take().unwrap();
        reader.wait().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sysgen"))
            .args(args)
            .stdout(closed)
            .output()
            .expect("run sysgen");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err, "", "{args:?}");
        assert_eq!(out.status.code(), Some(141), "{args:?}");
    }
}
