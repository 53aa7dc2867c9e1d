//! The runner process: `iolite runner --socket-fd N --module PATH --sandbox
//! SPEC --shared-bytes B` (a hidden subcommand; the server re-executes its
//! own binary). It takes the inherited socket, applies the first phase of
//! its sandbox ([`SandboxSpec`]), loads the library, applies the second
//! phase, writes its sandbox report on the socket (the server logs it with
//! "runner ready") and hands the socket to the module's entry point, which
//! speaks the protocol with its own copy of iolite-sdk.
//!
//! The runner, not the module, makes the output pool's memfd (before its
//! sandbox, which forbids `memfd_create` and `socketpair` to the module's
//! code for its whole life) and hands it to the module's entry point with
//! the socket; the module's own copy of the SDK speaks the handshake with
//! it. So the sandbox can be complete before the library is loaded:
//! nothing the handshake needs is denied later, and no filter has to be
//! stacked "after the handshake" by code the module controls. (The other
//! way, the runner speaking the handshake and handing the module a ready
//! link, would need the pools' state to cross the C ABI: every pool, id
//! and lease table rebuilt in the module's copy of ipc.)
//!
//! `iolite runner --check --module PATH --sandbox SPEC` only loads and
//! checks the library, under the same sandbox (the server does this once
//! per module before it starts, so a library built for another ABI, or a
//! sandbox that cannot be applied, is refused at start-up).

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use iolite_core::config::{DEFAULT_MEMORY_LIMIT, ModuleConfig, SandboxProfile};
use iolite_sandbox::{Landlock, ModuleLibrary, OpenPolicy, Profile, Report, Rlimits};
use iolite_sdk::wire::{ABI_SYMBOL, ABI_VERSION, FEATURES_SYMBOL, MAIN_SYMBOL};

use crate::error::Error;
pub use crate::wasm::spec::WasmSpec;

/// Address space a runner needs besides the module's `memory_limit` and the
/// shared pools: the iolite binary and libraries mapped, the main stack,
/// and room for threads (a Rust thread's stack is 2 MiB; a thread's glibc
/// malloc arena reserves 64 MiB, and falls back to a shared arena when it
/// cannot). Measured with `grep VmPeak /proc/PID/status` on a hello runner
/// in the default sandbox: 18 MiB beyond its pools.
pub const RUNNER_ALLOWANCE: u64 = 192 << 20;

/// The longest report a runner sends (it is one log line).
const MAX_REPORT: u32 = 4096;

/// The sandbox a runner applies to itself, as the server passes it on the
/// runner's command line ([`SandboxSpec::to_args`]: `--sandbox SPEC` and
/// one `--landlock-read PATH` / `--landlock-write PATH` per path).
/// `None` and `false` turn a measure off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The user a root runner drops to.
    pub user: Option<String>,
    pub seccomp: bool,
    pub landlock: bool,
    /// Under landlock, besides the module's library: trees it may read...
    pub read_paths: Vec<PathBuf>,
    /// ...and trees it may also write.
    pub write_paths: Vec<PathBuf>,
    pub namespaces: bool,
    pub no_new_privs: bool,
    /// RLIMIT_CORE = 0: a crashing module leaves no core file with request
    /// data in it.
    pub no_core: bool,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// Tasks: pids cgroup and RLIMIT_NPROC.
    pub tasks: Option<u64>,
    /// RLIMIT_CPU in whole seconds.
    pub cpu_seconds: Option<u64>,
    /// The module's own memory; RLIMIT_AS adds the shared pools and
    /// [`RUNNER_ALLOWANCE`], RLIMIT_FSIZE bounds the files (memfds
    /// included) it may grow.
    pub memory: Option<u64>,
    /// SCHED_BATCH at nice 10.
    pub low_priority: bool,
    /// Environment variables the server sets in the runner (`[module.env]`;
    /// not an argument: the runner gets them as its environment).
    pub env: Vec<(String, String)>,
    /// The WebAssembly guest the runner hosts instead of loading a library
    /// (its "library" is then the server's compiled code), and the limits
    /// of every store: the inner wall (`--wasm`).
    pub wasm: Option<WasmSpec>,
}

impl SandboxSpec {
    /// The module's configured sandbox (`[module.sandbox]`, `memory_limit`).
    pub fn from_config(cfg: &ModuleConfig) -> SandboxSpec {
        let s = &cfg.sandbox;
        let strict = s.profile == SandboxProfile::Strict;
        SandboxSpec {
            user: s.user.clone(),
            seccomp: s.seccomp,
            landlock: s.landlock,
            read_paths: s.read_paths.clone(),
            write_paths: s.write_paths.clone(),
            namespaces: s.namespaces,
            no_new_privs: s.no_new_privs,
            no_core: strict,
            open_files: s.open_files,
            tasks: s.tasks,
            cpu_seconds: s.cpu_time.map(whole_seconds),
            memory: cfg.memory_limit.or(strict.then_some(DEFAULT_MEMORY_LIMIT)),
            low_priority: s.low_priority,
            env: cfg.env.clone(),
            wasm: None,
        }
    }

    /// The runner's command-line arguments for this sandbox.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args = vec![OsString::from("--sandbox"), OsString::from(self.to_arg())];
        if let Some(wasm) = &self.wasm {
            args.push("--wasm".into());
            args.push(wasm.to_arg().into());
        }
        let lists = [
            ("--landlock-read", &self.read_paths),
            ("--landlock-write", &self.write_paths),
        ];
        for (flag, paths) in lists {
            for path in paths {
                args.push(flag.into());
                args.push(path.into());
            }
        }
        args
    }

    /// The landlock paths given apart from [`SandboxSpec::parse`]'s string
    /// (`--landlock-read`, `--landlock-write`).
    pub fn with_paths(mut self, read: Vec<PathBuf>, write: Vec<PathBuf>) -> SandboxSpec {
        self.read_paths = read;
        self.write_paths = write;
        self
    }

    /// The scalar settings' form, `--sandbox`'s value: `key=value` pairs
    /// joined by commas, every key present, `off` for a measure turned off.
    pub fn to_arg(&self) -> String {
        let flag = |b: bool| if b { "on" } else { "off" };
        let num = |n: Option<u64>| n.map_or_else(|| "off".to_owned(), |n| n.to_string());
        format!(
            "user={},seccomp={},landlock={},namespaces={},nnp={},core={},nofile={},tasks={},cpu={},memory={},lowprio={}",
            self.user.as_deref().unwrap_or("off"),
            flag(self.seccomp),
            flag(self.landlock),
            flag(self.namespaces),
            flag(self.no_new_privs),
            flag(self.no_core),
            num(self.open_files),
            num(self.tasks),
            num(self.cpu_seconds),
            num(self.memory),
            flag(self.low_priority),
        )
    }

    /// Parses [`SandboxSpec::to_arg`]'s form; every key is required once,
    /// so a runner of another version fails loudly instead of running
    /// with less isolation than the server asked for.
    pub fn parse(arg: &str) -> Result<SandboxSpec, Error> {
        const KEYS: [&str; 11] = [
            "user",
            "seccomp",
            "landlock",
            "namespaces",
            "nnp",
            "core",
            "nofile",
            "tasks",
            "cpu",
            "memory",
            "lowprio",
        ];
        let bad = |why: String| Error::Runner(format!("--sandbox {arg:?}: {why}"));
        let mut values: [Option<&str>; 11] = [None; 11];
        for pair in arg.split(',') {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("{pair:?} is not key=value")))?;
            let i = KEYS
                .iter()
                .position(|k| *k == key)
                .ok_or_else(|| bad(format!("unknown key {key:?}")))?;
            if values[i].replace(value).is_some() {
                return Err(bad(format!("{key} given twice")));
            }
        }
        let get = |i: usize| values[i].ok_or_else(|| bad(format!("{} missing", KEYS[i])));
        let flag = |i: usize| match get(i)? {
            "on" => Ok(true),
            "off" => Ok(false),
            v => Err(bad(format!("{}: {v:?} is not on or off", KEYS[i]))),
        };
        let num = |i: usize| match get(i)? {
            "off" => Ok(None),
            v => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(format!("{}: {v:?} is not a number or off", KEYS[i]))),
        };
        let user = match get(0)? {
            "off" => None,
            "" => return Err(bad("user: empty".into())),
            u => Some(u.to_owned()),
        };
        Ok(SandboxSpec {
            user,
            seccomp: flag(1)?,
            landlock: flag(2)?,
            read_paths: Vec::new(),
            write_paths: Vec::new(),
            namespaces: flag(3)?,
            no_new_privs: flag(4)?,
            no_core: flag(5)?,
            open_files: num(6)?,
            tasks: num(7)?,
            cpu_seconds: num(8)?,
            memory: num(9)?,
            low_priority: flag(10)?,
            env: Vec::new(),
            wasm: None,
        })
    }

    /// The sandbox profile for a runner that maps `shared_bytes` of pools
    /// and loads a library that landlock must let it read (`library`: a
    /// file's; None for the server's memfd copy, which landlock does not
    /// restrict). Landlock lets the module read that and the configured
    /// paths, nothing else; a module reaches its usual data through the
    /// server (cache and request pools over the socket).
    pub fn profile(&self, library: Option<&Path>, shared_bytes: u64) -> Profile {
        Profile {
            user: self.user.clone(),
            no_new_privs: self.no_new_privs,
            rlimits: Rlimits {
                address_space: self.memory.map(|m| {
                    m.saturating_add(shared_bytes)
                        .saturating_add(RUNNER_ALLOWANCE)
                }),
                open_files: self.open_files,
                cpu_seconds: self.cpu_seconds,
                processes: self.tasks,
                core_size: self.no_core.then_some(0),
                // The pools are sized before the limit applies (the output
                // pool's memfd by the runner); a file (a memfd: memory
                // RLIMIT_AS does not see while unmapped) may not grow past
                // the module's memory.
                file_size: self.memory,
            },
            seccomp: self.seccomp,
            low_priority: self.low_priority,
            open: OpenPolicy::UnderLandlock,
            landlock: self.landlock.then(|| Landlock {
                read_only: library
                    .map(Path::to_owned)
                    .into_iter()
                    .chain(self.read_paths.iter().cloned())
                    .collect(),
                read_write: self.write_paths.clone(),
            }),
            namespaces: self.namespaces,
        }
    }
}

/// Whole seconds, rounded up (RLIMIT_CPU counts seconds; 0 would kill at
/// once).
fn whole_seconds(d: Duration) -> u64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.max(1)
}

/// What `runner --check` found: the sandbox report and the module's
/// feature bits (`iolite_sdk::wire::FEATURE_*`).
#[derive(Debug)]
pub struct Checked {
    /// Which sandbox measures applied.
    pub report: Report,
    /// The module's feature bits.
    pub features: u32,
}

/// Loads `module` (named `shown` in messages: the server hands runners a
/// copy) under `sandbox` and checks its ABI version; returns the sandbox
/// report and the module's feature bits.
pub fn check(module: &Path, shown: &Path, sandbox: &SandboxSpec) -> Result<Checked, Error> {
    let file = open_library(module, shown)?;
    if let Some(wasm) = &sandbox.wasm {
        let pending = sandbox
            .profile(library_rule(&file).as_deref(), 0)
            .apply_before_load()?;
        let guest = crate::wasm::guest::load(wasm, &file)?;
        let report = pending.confine()?.after_load()?;
        drop(guest);
        return Ok(Checked {
            report,
            features: 0,
        });
    }
    let confined = sandbox
        .profile(library_rule(&file).as_deref(), 0)
        .apply_before_load()?
        .confine()?;
    let lib = ModuleLibrary::open_file(&file, shown)?;
    let report = confined.after_load()?;
    lib.check_abi(ABI_SYMBOL, ABI_VERSION)?;
    // Optional: a library that speaks the protocol itself may have none.
    let features = match lib.call_u32(FEATURES_SYMBOL) {
        Ok(bits) => bits,
        Err(iolite_sandbox::LoadError::MissingSymbol { .. }) => 0,
        Err(e) => return Err(e.into()),
    };
    Ok(Checked { report, features })
}

/// Serves the module on inherited descriptor `socket_fd` under `sandbox`;
/// returns the exit code the module's entry point returned. `shared_bytes`
/// is how much shared memory (request, output and cache pools) the runner
/// will map: its address-space limit leaves room for them. `output_pool`
/// is the size of the output pool, whose memfd the runner makes for the
/// module (whose sandbox makes none).
pub fn run(
    socket_fd: i32,
    (module, shown): (&Path, &Path),
    sandbox: &SandboxSpec,
    shared_bytes: u64,
    output_pool: u64,
) -> Result<i32, Error> {
    let sock = iolite_sandbox::take_inherited_socket(socket_fd)
        .map_err(|e| Error::Runner(format!("--socket-fd {socket_fd}: {e}")))?;
    let output = usize::try_from(output_pool)
        .map_err(|_| Error::Runner(format!("--output-pool {output_pool}: too large")))
        .and_then(|size| {
            iolite_ipc::Pool::memfd("iolite-output", size)
                .map_err(|e| Error::Runner(format!("the output pool's memfd: {e}")))
        })?;
    let file = open_library(module, shown)?;
    if let Some(wasm) = &sandbox.wasm {
        // Compiled code is mapped executable before seccomp (which never
        // allows PROT_EXEC by mprotect); no guest code runs until it is
        // all in force.
        let pending = sandbox
            .profile(library_rule(&file).as_deref(), shared_bytes)
            .apply_before_load()?;
        let guest = crate::wasm::guest::load(wasm, &file)?;
        let report = pending.confine()?.after_load()?;
        let sock = send_report(sock, &report)?;
        return crate::wasm::guest::serve(guest, sock, output);
    }
    // The whole sandbox before the library is loaded: its initialisers
    // are module code. Only the post-load hardening (no PROT_EXEC) after.
    let confined = sandbox
        .profile(library_rule(&file).as_deref(), shared_bytes)
        .apply_before_load()?
        .confine()?;
    let lib = ModuleLibrary::open_file(&file, shown)?;
    let report = confined.after_load()?;
    lib.check_abi(ABI_SYMBOL, ABI_VERSION)?;
    let sock = send_report(sock, &report)?;
    Ok(lib.run_main(MAIN_SYMBOL, sock, output)?)
}

/// Opens the library file while the runner still has the server's
/// credentials: the sandbox user may not be able to reach its directory.
fn open_library(module: &Path, shown: &Path) -> Result<std::fs::File, Error> {
    std::fs::File::open(module).map_err(|e| {
        Error::Load(iolite_sandbox::LoadError::Open {
            path: shown.to_owned(),
            reason: e.to_string(),
        })
    })
}

/// The landlock rule the open library needs: `/proc/self/fd/N` (made
/// after the user drop, through this process's own descriptor table) for
/// a file; none for a memfd (the server's sealed copy), which is on no
/// file system landlock restricts, and for which it takes no rule.
fn library_rule(file: &std::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let target = std::fs::read_link(&by_fd).ok()?;
    (!target
        .as_os_str()
        .as_encoded_bytes()
        .starts_with(b"/memfd:"))
    .then_some(by_fd)
}

/// The runner's first bytes on the socket, before the module speaks: the
/// report's length (u32, little-endian) and the report (UTF-8, one line).
fn send_report(sock: OwnedFd, report: &Report) -> Result<OwnedFd, Error> {
    let mut text = report.to_string();
    let mut end = text.len().min(MAX_REPORT as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    let mut stream = std::os::unix::net::UnixStream::from(sock);
    let len = u32::try_from(text.len()).unwrap_or(MAX_REPORT);
    stream
        .write_all(&len.to_le_bytes())
        .and_then(|()| stream.write_all(text.as_bytes()))
        .map_err(|e| Error::Runner(format!("sending the sandbox report: {e}")))?;
    Ok(OwnedFd::from(stream))
}

/// The server's side of [`send_report`]: reads the report a new runner
/// sends first (within the socket's read timeout).
pub(crate) fn read_report(mut sock: &std::os::unix::net::UnixStream) -> Result<String, String> {
    use std::io::Read;
    let mut len = [0u8; 4];
    sock.read_exact(&mut len)
        .map_err(|e| format!("no sandbox report from the runner: {e}"))?;
    let len = u32::from_le_bytes(len);
    if len > MAX_REPORT {
        return Err(format!("sandbox report of {len} bytes"));
    }
    let mut text = vec![0u8; len as usize];
    sock.read_exact(&mut text)
        .map_err(|e| format!("sandbox report cut short: {e}"))?;
    String::from_utf8(text).map_err(|_| "sandbox report is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolite_core::config::SandboxConfig;

    #[test]
    fn spec_round_trips_through_the_command_line() {
        let strict = ModuleConfig::default();
        let none = ModuleConfig {
            sandbox: SandboxConfig::for_profile(SandboxProfile::None),
            ..ModuleConfig::default()
        };
        let mut mixed = none.clone();
        mixed.sandbox.user = Some("65534".into());
        mixed.sandbox.tasks = Some(8);
        mixed.sandbox.cpu_time = Some(Duration::from_millis(1500));
        mixed.memory_limit = Some(64 << 20);
        mixed.sandbox.landlock = true;
        mixed.sandbox.read_paths = vec!["/srv/a,b=c".into(), "/srv/d".into()];
        mixed.sandbox.write_paths = vec!["/tmp/w".into()];
        // (config, the argument, the address-space limit with 1 MiB shared)
        let table = [
            (
                &strict,
                "user=nobody,seccomp=on,landlock=on,namespaces=on,nnp=on,core=on,nofile=256,tasks=64,cpu=60,memory=268435456,lowprio=on",
                Some(DEFAULT_MEMORY_LIMIT + (1 << 20) + RUNNER_ALLOWANCE),
            ),
            (
                &none,
                "user=off,seccomp=off,landlock=off,namespaces=off,nnp=off,core=off,nofile=off,tasks=off,cpu=off,memory=off,lowprio=off",
                None,
            ),
            (
                &mixed,
                "user=65534,seccomp=off,landlock=on,namespaces=off,nnp=off,core=off,nofile=off,tasks=8,cpu=2,memory=67108864,lowprio=off",
                Some((64 << 20) + (1 << 20) + RUNNER_ALLOWANCE),
            ),
        ];
        for (cfg, arg, address_space) in table {
            let spec = SandboxSpec::from_config(cfg);
            assert_eq!(spec.to_arg(), arg);
            // What main.rs does with the arguments: --sandbox and the paths.
            let args = spec.to_args();
            let after = |flag: &str| -> Vec<PathBuf> {
                args.windows(2)
                    .filter(|w| w[0] == flag)
                    .map(|w| PathBuf::from(&w[1]))
                    .collect()
            };
            assert_eq!(after("--sandbox"), [PathBuf::from(arg)]);
            let parsed = SandboxSpec::parse(arg)
                .unwrap()
                .with_paths(after("--landlock-read"), after("--landlock-write"));
            assert_eq!(parsed, spec, "{arg}");
            assert_eq!(
                spec.profile(Some(Path::new("/m.so")), 1 << 20)
                    .rlimits
                    .address_space,
                address_space,
                "{arg}"
            );
        }
        assert_eq!(
            SandboxSpec::from_config(&none).profile(Some(Path::new("/m.so")), 0),
            Profile {
                open: OpenPolicy::UnderLandlock,
                ..Profile::none()
            }
        );
        let strict_profile = SandboxSpec::from_config(&strict).profile(Some(Path::new("/m.so")), 0);
        assert_eq!(strict_profile.rlimits.core_size, Some(0));
        assert_eq!(
            strict_profile.landlock,
            Some(Landlock {
                read_only: vec!["/m.so".into()],
                read_write: vec![],
            })
        );
        let mixed_profile = SandboxSpec::from_config(&mixed).profile(Some(Path::new("/m.so")), 0);
        assert_eq!(
            mixed_profile.landlock,
            Some(Landlock {
                read_only: vec!["/m.so".into(), "/srv/a,b=c".into(), "/srv/d".into()],
                read_write: vec!["/tmp/w".into()],
            })
        );
    }

    #[test]
    fn the_report_crosses_the_socket_and_bad_ones_are_refused() {
        use std::os::unix::net::UnixStream;
        let (a, b) = UnixStream::pair().unwrap();
        let report = Profile::none().apply().unwrap();
        let a = send_report(OwnedFd::from(a), &report).unwrap();
        assert_eq!(read_report(&b).unwrap(), report.to_string());
        drop(a);
        // (bytes the runner sent, what the server says)
        let table: [(&[u8], &str); 4] = [
            (b"", "no sandbox report"),
            (&[5, 0, 0, 0, b'a'], "cut short"),
            (&[1, 0x10, 0, 0], "sandbox report of 4097 bytes"),
            (&[2, 0, 0, 0, 0xff, 0xfe], "not UTF-8"),
        ];
        for (bytes, want) in table {
            let (mut a, b) = UnixStream::pair().unwrap();
            a.write_all(bytes).unwrap();
            drop(a);
            let e = read_report(&b).unwrap_err();
            assert!(e.contains(want), "{bytes:?}: {e}");
        }
    }

    #[test]
    fn bad_specs_are_refused_table() {
        let good = SandboxSpec::from_config(&ModuleConfig::default()).to_arg();
        let table = [
            (String::new(), "is not key=value"),
            (
                good.replace("seccomp=on", "seccomp=yes"),
                "is not on or off",
            ),
            (good.replace("nofile=256", "nofile=-1"), "is not a number"),
            (good.replace(",memory=268435456", ""), "memory missing"),
            (good.replace(",lowprio=on", ""), "lowprio missing"),
            (format!("{good},tasks=1"), "tasks given twice"),
            (format!("{good},jail=on"), "unknown key \"jail\""),
            (good.replace("user=nobody", "user="), "user: empty"),
        ];
        for (arg, want) in table {
            let e = SandboxSpec::parse(&arg).unwrap_err().to_string();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }
}
