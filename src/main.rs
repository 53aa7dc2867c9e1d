//! The `iolite` command: wires configuration to the crates. It holds no
//! logic that belongs in a crate.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use std::io::Write as _;

use iolite_cluster::sim::cli::SimArgs;
use iolite_core::config::{self, ConfigErrors, ServeArgs};
use iolite_core::{Mount, Server, ServerOptions};
use iolite_modules::ProcessModule;

/// iolite: the Rice design for scalable network servers, for today's Linux.
#[derive(Debug, Parser)]
#[command(name = "iolite", version = version_line(), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (with no flags: the demo site on 127.0.0.1:8080).
    ///
    /// Signals: SIGTERM or SIGINT stop it gracefully (no new connections;
    /// responses in flight finish). SIGHUP has every process module load
    /// its library again (checked first; runners replaced without a failed
    /// request) and every HTTPS listener read its certificate files again
    /// (open connections keep theirs; a failed reload keeps the old ones);
    /// the configuration is not read again.
    Serve(Box<ServeArgs>),
    /// Check a configuration file: print every error with its line and
    /// column and exit 1, or a summary and exit 0.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Simulate a cluster under each dispatch policy (LARD/R and baselines).
    Sim(Box<SimArgs>),
    /// A module runner process (started by `serve`, not by people).
    #[command(hide = true)]
    Runner(RunnerArgs),
}

#[derive(Debug, clap::Args)]
struct RunnerArgs {
    /// The inherited unix socket to the server.
    #[arg(long)]
    socket_fd: Option<i32>,
    /// The module library (the server's sealed copy of it).
    #[arg(long)]
    module: PathBuf,
    /// The library's configured path, for messages.
    #[arg(long)]
    shown_as: Option<PathBuf>,
    /// The module's name (its prefix), for messages.
    #[arg(long)]
    name: Option<String>,
    /// Only load the library and check its ABI version.
    #[arg(long)]
    check: bool,
    /// Bytes of shared pools the runner will map (for its memory limit).
    #[arg(long, default_value_t = 0)]
    shared_bytes: u64,
    /// Bytes of the output pool, whose memfd the runner makes for the module.
    #[arg(long, default_value_t = 0)]
    output_pool: u64,
    /// The sandbox to apply before loading the module (the server's
    /// `SandboxSpec::to_arg` form; required, so no runner starts unconfined
    /// by mistake).
    #[arg(long)]
    sandbox: String,
    /// A tree (or file) the module may read under landlock (repeated).
    #[arg(long)]
    landlock_read: Vec<PathBuf>,
    /// A tree the module may read and write under landlock (repeated).
    #[arg(long)]
    landlock_write: Vec<PathBuf>,
    /// Host this WebAssembly guest (`--module` is then the server's
    /// compiled code) under these limits (the server's `WasmSpec::to_arg`
    /// form).
    #[arg(long)]
    wasm: Option<String>,
}

/// `iolite --version`: the release and the module ABI its runners speak
/// (a module library must be built against an SDK of the same ABI).
fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} (module ABI {})",
            env!("CARGO_PKG_VERSION"),
            iolite_modules::MODULE_ABI
        )
    })
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve(&args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Runner(args) => runner(&args),
        Command::Sim(args) => match iolite_cluster::sim::cli::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iolite sim: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// The runner: errors go to stderr, which the server logs under the
/// module's name (or, for `--check`, quotes when it refuses to start).
fn runner(args: &RunnerArgs) -> ExitCode {
    use iolite_modules::runner;
    let name = args.name.as_deref().unwrap_or("module");
    let spec = runner::SandboxSpec::parse(&args.sandbox)
        .map(|s| s.with_paths(args.landlock_read.clone(), args.landlock_write.clone()))
        .and_then(|mut s| {
            s.wasm = args
                .wasm
                .as_deref()
                .map(iolite_modules::WasmSpec::parse)
                .transpose()?;
            Ok(s)
        });
    let shown = args.shown_as.as_deref().unwrap_or(&args.module);
    let result = spec.and_then(|sandbox| match (args.check, args.socket_fd) {
        (true, _) => runner::check(&args.module, shown, &sandbox).map(|checked| {
            println!("sandbox: {}", checked.report);
            println!("features: {}", checked.features);
            0
        }),
        (false, Some(fd)) => runner::run(
            fd,
            (&args.module, shown),
            &sandbox,
            args.shared_bytes,
            args.output_pool,
        ),
        (false, None) => Err(iolite_modules::Error::Runner(
            "--socket-fd or --check is required".into(),
        )),
    });
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("iolite runner ({name}): {e}");
            ExitCode::from(3)
        }
    }
}

fn report(errors: &ConfigErrors) {
    for line in errors.lines() {
        eprintln!("{line}");
    }
    let n = errors.0.len();
    eprintln!(
        "{n} error{} in the configuration",
        if n == 1 { "" } else { "s" }
    );
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::check_file(file) {
        Ok(c) => {
            // Each module's library, as `serve` checks it before it starts
            // (its constructors are untrusted code: a sandboxed runner with
            // a time limit loads it); every failure is reported.
            let mut failed = 0;
            if !c.modules.is_empty() {
                match iolite_modules::current_exe() {
                    Ok(exe) => {
                        for m in &c.modules {
                            if let Err(e) = iolite_modules::check_module_library(m, &exe) {
                                eprintln!("{}: {e}", file.display());
                                failed += 1;
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("{}: module libraries not checked: {e}", file.display());
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                eprintln!("{failed} module library check(s) failed");
                return ExitCode::FAILURE;
            }
            println!("{}: ok", file.display());
            print!("{}", c.summary());
            for what in c.not_yet_supported() {
                println!("note: `iolite serve` does not support this yet: {what}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report(&errors);
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let mut config = match config::resolve(args) {
        Ok(c) => c,
        Err(errors) => {
            report(&errors);
            eprintln!("iolite serve: not started");
            return ExitCode::from(2);
        }
    };
    let unsupported = ServerOptions::unsupported(&config);
    if !unsupported.is_empty() {
        for what in unsupported {
            eprintln!("iolite serve: not yet supported: {what}");
        }
        return ExitCode::from(2);
    }
    init_tracing(config.log.level.as_str());
    if args.config.is_none() && args.root.is_none() && args.modules.is_empty() {
        mount_demo_modules(&mut config);
        if args.cgi.is_empty() {
            mount_demo_cgi(&mut config);
        }
    }
    match run(ServerOptions::from_config(&config), &config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Modules(e)) => {
            eprintln!("iolite serve: {e}");
            eprintln!("iolite serve: not started");
            ExitCode::from(2)
        }
        Err(Fail::Cluster(e)) => {
            eprintln!("iolite serve: {e}");
            eprintln!("iolite serve: not started");
            ExitCode::from(2)
        }
        Err(Fail::Other(e)) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo modules, mounted by `iolite serve` on its embedded default (no
/// `--config`, `--root` or `--module`) when they were built next to the
/// binary (`cargo build --workspace`, with `--release` for the release
/// binary): prefix and library name.
const DEMO_MODULES: &[(&str, &str)] = &[
    ("/hello", "hello"),
    ("/echo", "echo"),
    ("/template", "template"),
    ("/api", "jsonapi"),
    ("/guestbook", "guestbook"),
];

fn mount_demo_modules(config: &mut config::Config) {
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(std::path::Path::to_owned))
    else {
        return;
    };
    let mut missing = Vec::new();
    for (prefix, name) in DEMO_MODULES {
        let path = dir.join(format!("lib{name}.so"));
        if path.is_file() {
            config.modules.push(config::ModuleConfig {
                prefix: (*prefix).to_owned(),
                path,
                ..config::ModuleConfig::default()
            });
        } else {
            missing.push(*prefix);
        }
    }
    if !missing.is_empty() {
        tracing::info!(
            "demo modules {} not built: `cargo build --workspace` (add --release for a release binary) builds them next to this binary",
            missing.join(", ")
        );
    }
    mount_demo_wasm(config, &dir);
}

/// The example wasi:http component at `/wasm`, when it was built into the
/// target folder beside this binary's (`target/wasm32-wasip2/release/`:
/// `scripts/serve` builds it; the README's "Run WebAssembly").
fn mount_demo_wasm(config: &mut config::Config, exe_dir: &std::path::Path) {
    let Some(target) = exe_dir.parent() else {
        return;
    };
    let path = target.join("wasm32-wasip2/release/hello_http.wasm");
    if path.is_file() && !config.wasm.iter().any(|w| w.prefix == "/wasm") {
        config.wasm.push(config::WasmConfig {
            prefix: "/wasm".to_owned(),
            path,
            ..config::WasmConfig::default()
        });
    } else if !path.is_file() {
        tracing::info!(
            "demo wasm /wasm not built: `scripts/serve` builds examples/wasm/hello-http for wasm32-wasip2"
        );
    }
}

/// The example CGI programs (`examples/cgi-bin`, beside the demo site)
/// at `/cgi-bin`, on the embedded default when the folder is there.
fn mount_demo_cgi(config: &mut config::Config) {
    let dir = std::path::Path::new("examples/cgi-bin");
    if dir.is_dir() && !config.cgi.iter().any(|c| c.prefix == "/cgi-bin") {
        config.cgi.push(config::CgiConfig {
            prefix: "/cgi-bin".to_owned(),
            dir: dir.to_owned(),
            ..config::CgiConfig::default()
        });
    }
}

/// Why `serve` stopped.
enum Fail {
    /// A module could not be mounted: refused before anything was announced.
    Modules(iolite_modules::Error),
    /// Membership could not start (the key file, the peer address): refused
    /// before anything was announced.
    Cluster(iolite_cluster::ClusterError),
    Other(String),
}

/// Checks every mounted module library and starts its runner processes;
/// compiles every WebAssembly mount (or finds it in the cache) and starts
/// the runners that host it.
fn start_modules(
    config: &config::Config,
    cache: Option<iolite_core::CacheAccess>,
) -> Result<Vec<std::sync::Arc<ProcessModule>>, iolite_modules::Error> {
    if config.modules.is_empty() && config.wasm.is_empty() {
        return Ok(Vec::new());
    }
    let exe = iolite_modules::current_exe()?;
    iolite_modules::sweep_stale_cgroups();
    let max_body = config.limits.max_body;
    let native = config
        .modules
        .iter()
        .map(|m| ProcessModule::start(m, &exe, max_body, cache.clone()));
    let wasm = config
        .wasm
        .iter()
        .map(|w| iolite_modules::start_wasm(w, &exe, max_body, cache.clone()));
    native.chain(wasm).collect()
}

/// Starts membership when the configuration has a `[cluster]` (on its own
/// thread), with its figures on `/metrics` and its members on `/status`;
/// then dispatch: the peer listener on the peer address (TCP, beside
/// gossip's UDP) behind the signature gate, and the static files wrapped
/// by the dispatcher.
fn start_cluster(
    config: &config::Config,
    mut server: Server,
) -> Result<(Server, Option<iolite_cluster::Membership>), Fail> {
    use iolite_cluster::dispatch::{
        Dispatch, DispatchHandler, DispatchReport, DispatchSettings, Gate,
    };
    let Some(cluster) = &config.cluster else {
        return Ok((server, None));
    };
    let settings = iolite_cluster::Settings::from_config(cluster, server.local_addr())
        .map_err(Fail::Cluster)?;
    tracing::info!(
        node = %settings.name, peer = %settings.peer, client = %settings.client,
        policy = cluster.policy.as_str(),
        "cluster: starting membership and dispatch"
    );
    let key = settings.key.clone();
    let membership = iolite_cluster::Membership::start(settings).map_err(Fail::Cluster)?;
    server.metrics().add_source(membership.report());
    server.metrics().add_status_source(membership.report());
    let dispatch = Dispatch::new(DispatchSettings {
        name: cluster.name.clone(),
        peer: cluster.peer,
        policy: cluster.policy,
        params: iolite_cluster::PolicyParams {
            lard: iolite_cluster::LardParams {
                t_low: cluster.lard.t_low,
                t_high: cluster.lard.t_high,
                k: cluster.lard.k,
            },
            ..Default::default()
        },
        key,
        replay_window: cluster.timers.replay_window,
        view: membership.watch(),
        active: membership.load_handle(),
        limits: Default::default(),
        admission: cluster.admission,
        recheck: cluster.timers.gossip_period,
    });
    server
        .peer_listener(cluster.peer, std::sync::Arc::new(Gate(dispatch.clone())))
        .map_err(|e| Fail::Cluster(iolite_cluster::ClusterError::Membership(e.to_string())))?;
    let report = std::sync::Arc::new(DispatchReport(dispatch.clone()));
    server.metrics().add_source(report.clone());
    server.metrics().add_status_source(report);
    let server = server.wrap_fallback(std::sync::Arc::new(move |site| {
        Box::new(DispatchHandler::new(dispatch.clone(), site))
    }));
    Ok((server, Some(membership)))
}

/// Binds, starts the modules' runners, announces the bound addresses on
/// stdout (the first line is `listening on http://HOST:PORT`, or https:, for scripts
/// and tests using port 0), then serves until SIGTERM or SIGINT (SIGHUP:
/// the modules load their libraries again).
fn run(opts: ServerOptions, config: &config::Config) -> Result<(), Fail> {
    let server = Server::bind(opts).map_err(|e| Fail::Other(e.to_string()))?;
    let (mut server, membership) = start_cluster(config, server)?;
    let modules = start_modules(config, server.cache_access()).map_err(Fail::Modules)?;
    for m in &modules {
        server.metrics().add_source(m.metrics());
    }
    server.metrics().add_status_source(std::sync::Arc::new(
        iolite_modules::metrics::ModulesStatus(modules.iter().map(|m| m.metrics()).collect()),
    ));
    for m in &modules {
        let module = m.clone();
        let mount = Mount::content(m.prefix(), std::sync::Arc::new(move || module.handler()));
        server = server
            .mount(mount)
            .map_err(|e| Fail::Other(e.to_string()))?;
    }
    for f in &config.fastcgi {
        let fcgi = iolite_modules::fastcgi::FastCgi::new(f, &config.root, config.workers);
        let prefix = fcgi.prefix().to_owned();
        let mount = Mount::content(&prefix, std::sync::Arc::new(move || fcgi.handler()));
        server = server
            .mount(mount.stripped())
            .map_err(|e| Fail::Other(e.to_string()))?;
    }
    for c in &config.cgi {
        let cgi = iolite_modules::cgi::Cgi::new(c, &config.root).map_err(Fail::Other)?;
        let prefix = cgi.prefix().to_owned();
        // Not stripped: the program is found from the whole path.
        let mount = Mount::content(&prefix, std::sync::Arc::new(move || cgi.handler()));
        server = server
            .mount(mount)
            .map_err(|e| Fail::Other(e.to_string()))?;
    }
    if !modules.is_empty() {
        // SIGHUP: every module loads its library again, without a failed
        // request (the configuration itself is not read again).
        let reloaded = modules.clone();
        server = server.on_reload(Box::new(move || {
            reloaded.iter().for_each(ProcessModule::reload);
        }));
    }
    let mut out = std::io::stdout().lock();
    let announce = server
        .local_addrs()
        .iter()
        .enumerate()
        .try_for_each(|(i, a)| {
            let scheme = if server.is_tls(i) { "https" } else { "http" };
            writeln!(out, "listening on {scheme}://{a}")
        })
        .and_then(|()| match server.admin_addr() {
            Some(admin) => writeln!(out, "admin on http://{admin}"),
            None => Ok(()),
        })
        .and_then(|()| out.flush());
    drop(out);
    announce.map_err(|e| Fail::Other(format!("stdout: {e}")))?;
    let served = server.run().map_err(|e| Fail::Other(e.to_string()));
    ProcessModule::stop_all(&modules);
    if let Some(m) = membership {
        m.stop();
    }
    served
}

/// Errors and notices go to stderr through tracing; `RUST_LOG` overrides
/// the configured level.
fn init_tracing(level: &str) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
}
