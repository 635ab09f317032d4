//! Runs a C PD's code on the host against the server core, without the
//! Microkit SDK: `cargo run -p c-host -- PD_DIR PD SYSTEM.xml IOMMU.xml`
//! (`make c-run`).
//!
//! It compiles every `.c` file of `PD_DIR` against the stand-in
//! `microkit.h` (`standin/`), `iommu_client.h` and the headers generated
//! for PD `PD` of the system description (`iommu_proto.h`,
//! `iommu_config.h`), links them with the stand-in's host runtime
//! (`standin/microkit_host.c`, driven by `standin/microkit_loop.c`), and runs the program as the Microkit
//! loader and kernel would run the PD: its memory mapped at the addresses
//! system.xml gives, its `setvar_vaddr` variables set, `init` called, then
//! `notified` for each DMA fault asked for. Each protected call on the
//! PD's channel to the server is served by the server core
//! (`iommu-server`), configured with every client of the description as
//! the server PD is, over mock hardware (`iommu-testkit`'s `MockHw`): the
//! server's checks, errnos, quotas and IOVA choices are the real ones; no
//! device does DMA. The PD's debug output is printed as it comes, each
//! call and its result on a `c-host:` line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use iommu_proto::Op;
use iommu_server::COMMAND_PAGE;
use iommu_testkit::rig::{id, POOL};
use iommu_testkit::{MockHw, Rig};
use iommu_types::config::{ClientConfig, DeviceConfig, Region};
use iommu_types::fault::{IOMMU_FAULT_ACCESS_WRITE, IOMMU_FAULT_KIND_F_TRANSLATION};
use iommu_types::Fault;
use sysgen::model::Paddr;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Run {
    /// The folder of the PD's C sources (every `.c` file in it).
    pub pd_dir: PathBuf,
    /// The PD of the system description whose place the program takes.
    pub pd: String,
    pub system: PathBuf,
    pub policy: PathBuf,
    /// Where the generated headers, objects and program go.
    pub out_dir: PathBuf,
    /// The host C compiler.
    pub cc: String,
    /// The C standard the PD's sources are compiled as (`c11`, `c99`).
    pub std: String,
    /// IOVAs at which the PD's first device faults writing, after `init`:
    /// each queued with the server core, then `notified` on the server
    /// channel, as the server PD's fault interrupt does.
    pub faults: Vec<u64>,
}

impl Run {
    /// A run with the defaults: `cc` (or `CC`), C11, no faults, output
    /// in `target/c-host/PD` of this repository.
    pub fn new(pd_dir: &Path, pd: &str, system: &Path, policy: &Path) -> Run {
        Run {
            pd_dir: pd_dir.to_path_buf(),
            pd: pd.to_string(),
            system: system.to_path_buf(),
            policy: policy.to_path_buf(),
            out_dir: repository().join("target/c-host").join(pd),
            cc: std::env::var("CC").unwrap_or_else(|_| "cc".into()),
            std: "c11".into(),
            faults: Vec::new(),
        }
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The stand-in `microkit.h` and its host runtime.
pub fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("standin")
}

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Vec::leak(v)
}

fn leak_str(s: &str) -> &'static str {
    String::leak(s.to_string())
}

/// The server's configuration of every client of the description, as
/// `iommu_system::client_configs` gives the server PD. Where the Microkit
/// tool would choose a region's physical address (`region_paddr`
/// setvars), each memory region gets one of its own, 2 MiB aligned, from
/// 1 << 32 up; a region two clients share gets the same.
fn server_configs(config: &sysgen::Config) -> Vec<ClientConfig> {
    let mut chosen: HashMap<&str, u64> = HashMap::new();
    let mut next = 1u64 << 32;
    let mut configs = Vec::new();
    for c in &config.clients {
        let regions = c
            .regions
            .iter()
            .map(|r| {
                let paddr = match r.paddr {
                    Paddr::Fixed(p) => p,
                    Paddr::Symbol(_) => *chosen.entry(&r.mr).or_insert_with(|| {
                        let at = next;
                        next = (next + r.size).next_multiple_of(0x20_0000);
                        at
                    }),
                };
                Region {
                    vaddr: r.vaddr,
                    size: r.size,
                    paddr,
                    perms: r.perms,
                }
            })
            .collect();
        let devices = c
            .devices
            .iter()
            .map(|d| DeviceConfig {
                name: leak_str(&d.name),
                stream_id: d.stream_id,
                dma_mask: d.dma_mask,
                reserved: leak(d.reserved.clone()),
            })
            .collect();
        configs.push(ClientConfig {
            name: leak_str(&c.pd),
            command_page_vaddr: c.command_page_client,
            regions: leak(regions),
            devices: leak(devices),
            quota: c.quota,
            manager: c.manager,
        });
    }
    configs
}

fn compile(run: &Run, config: &sysgen::Config) -> Result<PathBuf, String> {
    let include = run.out_dir.join("include");
    let objects = run.out_dir.join("obj");
    for dir in [&include, &objects] {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let write = |name: &str, text: String| {
        let path = include.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut proto = String::new();
    iommu_proto::c::header(&mut proto).map_err(|e| e.to_string())?;
    write("iommu_proto.h", proto)?;
    write(
        "iommu_config.h",
        sysgen::gen::c_config(config, &run.pd)
            .ok_or_else(|| format!("no PD `{}` in the description", run.pd))?,
    )?;

    let mut sources: Vec<PathBuf> = std::fs::read_dir(&run.pd_dir)
        .map_err(|e| format!("{}: {e}", run.pd_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .collect();
    if sources.is_empty() {
        return Err(format!("no .c files in {}", run.pd_dir.display()));
    }
    sources.sort();
    let cc = |args: &mut Command, what: &str| -> Result<(), String> {
        let status = args
            .status()
            .map_err(|e| format!("cannot run {}: {e}", run.cc))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{what} does not compile"))
        }
    };
    let client_include = repository().join("pd-clients/iommu-client/include");
    let mut linked = Vec::new();
    for source in &sources {
        let object = objects
            .join(source.file_stem().unwrap())
            .with_extension("o");
        cc(
            Command::new(&run.cc)
                .arg(format!("-std={}", run.std))
                .args(["-Wall", "-Wextra", "-pedantic", "-g", "-c"])
                .arg("-I")
                .arg(&include)
                .arg("-I")
                .arg(&client_include)
                .arg("-I")
                .arg(standin())
                .arg(source)
                .arg("-o")
                .arg(&object),
            &source.display().to_string(),
        )?;
        linked.push(object);
    }
    for part in ["microkit_host", "microkit_loop"] {
        let runtime = objects.join(format!("{part}.o"));
        cc(
            Command::new(&run.cc)
                .args(["-std=c99", "-Wall", "-Wextra", "-g", "-c", "-I"])
                .arg(standin())
                .arg(standin().join(format!("{part}.c")))
                .arg("-o")
                .arg(&runtime),
            "the stand-in's runtime",
        )?;
        linked.push(runtime);
    }
    let program = run.out_dir.join("pd");
    // -rdynamic: the runtime finds the setvar variables by name.
    cc(
        Command::new(&run.cc)
            .args(&linked)
            .args(["-rdynamic", "-ldl", "-o"])
            .arg(&program),
        "linking the PD",
    )?;
    Ok(program)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd hex: {text}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| format!("bad hex: {text}")))
        .collect()
}

/// The running PD and the server serving it.
struct Session<'a> {
    child: Child,
    to_pd: ChildStdin,
    from_pd: BufReader<ChildStdout>,
    rig: Rig<MockHw>,
    client: usize,
    server_channel: u64,
    log: &'a mut dyn Write,
    /// Whether the log is at the start of a line (the PD's output may end
    /// without a newline).
    line_start: bool,
    calls: usize,
    refused: usize,
}

impl Session<'_> {
    fn say(&mut self, text: &str) -> Result<(), String> {
        let gap = if self.line_start { "" } else { "\n" };
        self.line_start = true;
        writeln!(self.log, "{gap}c-host: {text}").map_err(|e| e.to_string())
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.to_pd, "{line}")
            .and_then(|()| self.to_pd.flush())
            .map_err(|e| format!("the PD stopped: {e}"))
    }

    /// Runs an entry point: serves the PD's messages until it returns.
    fn enter(&mut self, command: &str) -> Result<(), String> {
        self.say(command)?;
        self.send(command)?;
        let mut line = String::new();
        loop {
            line.clear();
            let read = self
                .from_pd
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if read == 0 {
                let status = self.child.wait().map_err(|e| e.to_string())?;
                return Err(format!("the PD ended during `{command}`: {status}"));
            }
            let line = line.trim_end();
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "done" => return Ok(()),
                "puts" => {
                    let bytes = unhex(rest)?;
                    if let Some(&last) = bytes.last() {
                        self.line_start = last == b'\n';
                    }
                    self.log.write_all(&bytes).map_err(|e| e.to_string())?;
                }
                "call" => self.call(rest)?,
                "notify" | "irq_ack" => self.say(&format!("{kind} channel {rest}"))?,
                "error" => return Err(rest.to_string()),
                _ => return Err(format!("unexpected from the PD: {line}")),
            }
        }
    }

    fn call(&mut self, args: &str) -> Result<(), String> {
        let fields: Vec<&str> = args.split(' ').collect();
        let [channel, label, _count, mr0, mr1, page] = fields.as_slice() else {
            return Err(format!("bad call: {args}"));
        };
        let number = |s: &str| s.parse::<u64>().map_err(|_| format!("bad call: {args}"));
        let (channel, label) = (number(channel)?, number(label)?);
        if channel != self.server_channel {
            return Err(format!(
                "a protected call on channel {channel}, which is not the server's ({}): no PD here serves it",
                self.server_channel
            ));
        }
        let mut page = unhex(page)?;
        if page.len() != COMMAND_PAGE {
            return Err(format!("a command page of {} bytes", page.len()));
        }
        let reply = self.rig.server.handle(
            id(self.client),
            label,
            [number(mr0)?, number(mr1)?],
            &mut page,
        );
        self.calls += 1;
        let name = Op::from_label(label)
            .map_or_else(|| format!("label {label:#x}"), |op| op.name().to_string());
        let result = match reply.errno() {
            None if reply.mr0 == 0 => "ok".to_string(),
            None => format!("ok, MR0 {:#x}", reply.mr0),
            Some(e) => {
                self.refused += 1;
                e.name().to_string()
            }
        };
        self.say(&format!("{name}: {result}"))?;
        self.send(&format!(
            "reply {} {} {}",
            reply.label,
            reply.mr0,
            hex(&page)
        ))
    }
}

/// Compiles and runs the PD; its output and the calls go to `log`.
pub fn run(run: &Run, log: &mut dyn Write) -> Result<(), String> {
    let (_, config) = sysgen::load(&run.system, &run.policy)?;
    let client = config
        .clients
        .iter()
        .position(|c| c.pd == run.pd)
        .ok_or_else(|| {
            format!(
                "`{}` is not a client of the server in {}",
                run.pd,
                run.policy.display()
            )
        })?;
    let program = compile(run, &config)?;
    let configs = server_configs(&config);
    let rig = Rig::try_new(MockHw::new(), &configs, POOL)
        .map_err(|e| format!("the server refuses the configuration: {e:?}"))?;
    let spec = &config.clients[client];

    let mut child = Command::new(&program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let to_pd = child.stdin.take().expect("piped");
    let from_pd = BufReader::new(child.stdout.take().expect("piped"));
    let mut s = Session {
        child,
        to_pd,
        from_pd,
        rig,
        client,
        server_channel: spec.client_channel,
        log,
        line_start: true,
        calls: 0,
        refused: 0,
    };
    let sources = run.pd_dir.display();
    s.say(&format!(
        "{sources} as `{}`: client {client} of the server core, on channel {}",
        run.pd, spec.client_channel
    ))?;
    let result = (|| {
        s.send(&format!("name {}", run.pd))?;
        for m in config.maps.iter().filter(|m| m.pd == run.pd) {
            let symbol = m.setvar_vaddr.as_deref().unwrap_or("-");
            let perms = if m.write { "rw" } else { "r" };
            s.send(&format!("map {:x} {:x} {perms} {symbol}", m.vaddr, m.size))?;
        }
        s.send(&format!("page {:x}", spec.command_page_client))?;
        s.enter("init")?;
        for &iova in &run.faults {
            let Some(device) = spec.devices.first() else {
                return Err(format!("`{}` has no device to fault", run.pd));
            };
            let stream = device.stream_id;
            if s.rig.server.hardware().dma(stream, iova).is_some() {
                s.say(&format!(
                    "device `{}` writes IOVA {iova:#x}: mapped, no fault",
                    device.name
                ))?;
                continue;
            }
            s.say(&format!(
                "device `{}` (stream {:#x}) writes IOVA {iova:#x}, which nothing maps: a fault",
                device.name, device.stream_id.0
            ))?;
            let owner = s.rig.server.report_fault(Fault {
                stream,
                kind: IOMMU_FAULT_KIND_F_TRANSLATION,
                iova: Some(iova),
                access: IOMMU_FAULT_ACCESS_WRITE,
            });
            if owner == Some(id(client)) {
                s.enter(&format!("notified {}", spec.client_channel))?;
            }
        }
        Ok(())
    })();
    drop(s.to_pd);
    let status = s.child.wait().map_err(|e| e.to_string())?;
    result?;
    if !status.success() {
        return Err(format!("the PD ended with {status}"));
    }
    let (calls, refused) = (s.calls, s.refused);
    writeln!(
        s.log,
        "{}c-host: {calls} calls served, {refused} refused",
        if s.line_start { "" } else { "\n" }
    )
    .map_err(|e| e.to_string())
}
