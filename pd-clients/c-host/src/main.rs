//! `c-host [--std c99|c11] [--fault IOVA]... [--out DIR] PD_DIR PD SYSTEM.xml
//! IOMMU.xml`: runs the C PD in `PD_DIR` in the place of `PD` against the
//! server core (see the library). Exits 1 when it cannot run the PD as
//! configured (compile errors, memory it cannot place, a crash), 2 on a
//! usage error.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: c-host [--std c99|c11] [--fault IOVA]... [--out DIR] PD_DIR PD SYSTEM.xml IOMMU.xml";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let (mut std, mut faults, mut out) = (None, Vec::new(), None);
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "--std" | "--fault" | "--out" => args.next(),
            _ => {
                positional.push(arg);
                continue;
            }
        };
        let Some(value) = value else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        match arg.as_str() {
            "--std" => std = Some(value),
            "--out" => out = Some(PathBuf::from(value)),
            _ => match u64::from_str_radix(value.trim_start_matches("0x"), 16) {
                Ok(iova) => faults.push(iova),
                Err(_) => {
                    eprintln!("c-host: --fault takes a hexadecimal IOVA, not `{value}`");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let [pd_dir, pd, system, policy] = positional.as_slice() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut run = c_host::Run::new(pd_dir.as_ref(), pd, system.as_ref(), policy.as_ref());
    run.faults = faults;
    if let Some(std) = std {
        run.std = std;
    }
    if let Some(out) = out {
        run.out_dir = out;
    }
    match c_host::run(&run, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("c-host: error: {e}");
            ExitCode::FAILURE
        }
    }
}
