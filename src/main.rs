//! The `iolite` command: wires configuration to the crates. It holds no
//! logic that belongs in a crate.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use iolite_core::{Server, ServerOptions};

/// iolite: the Rice design for scalable network servers, for today's Linux.
#[derive(Debug, Parser)]
#[command(name = "iolite", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (with no flags: the demo site on 127.0.0.1:8080).
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Document root (default: the demo site, examples/site).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Worker threads (default: one per CPU).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Admin listener for /metrics and /status, or `none`.
    #[arg(long, default_value = "127.0.0.1:8081", value_parser = parse_admin)]
    admin: Admin,
    /// Cache budget in bytes; K, M, G suffixes (binary).
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    cache_size: u64,
    /// Seconds a cached file is trusted before it is checked again (0: always check).
    #[arg(long, default_value_t = 1.0)]
    revalidate: f64,
    /// Seconds a client has to send a request head.
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
}

#[derive(Debug, Clone, Copy)]
struct Admin(Option<SocketAddr>);

fn parse_admin(s: &str) -> Result<Admin, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Admin(None));
    }
    s.parse()
        .map(|a| Admin(Some(a)))
        .map_err(|e| format!("{e} (an address or `none`)"))
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'k' | b'K') => (&s[..s.len() - 1], 10),
        Some(b'm' | b'M') => (&s[..s.len() - 1], 20),
        Some(b'g' | b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {s:?} (e.g. 1048576, 512K, 256M, 1G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} too large"))
}

fn seconds(name: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s).map_err(|_| format!("--{name}: {s} is not a number of seconds"))
}

/// The demo site: `examples/site` under the working directory (the repo
/// root for `cargo run`), else where this binary was built from.
fn default_root() -> PathBuf {
    let here = PathBuf::from("examples/site");
    if here.is_dir() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/site")
}

fn options(args: ServeArgs) -> Result<ServerOptions, String> {
    Ok(ServerOptions {
        listen: args.listen,
        root: args.root.unwrap_or_else(default_root),
        workers: args.workers,
        admin: args.admin.0,
        cache_size: args.cache_size,
        revalidate: seconds("revalidate", args.revalidate)?,
        header_timeout: seconds("header-timeout", args.header_timeout)?,
        ..ServerOptions::default()
    })
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let opts = options(args)?;
    let server = Server::bind(opts).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    let announce = writeln!(out, "listening on http://{}", server.local_addr())
        .and_then(|()| match server.admin_addr() {
            Some(admin) => writeln!(out, "admin on http://{admin}"),
            None => Ok(()),
        })
        .and_then(|()| out.flush());
    drop(out);
    announce.map_err(|e| format!("stdout: {e}"))?;
    server.run().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_table() {
        let table: &[(&str, Result<u64, ()>)] = &[
            ("0", Ok(0)),
            ("1048576", Ok(1 << 20)),
            ("512K", Ok(512 << 10)),
            ("256M", Ok(256 << 20)),
            ("1g", Ok(1 << 30)),
            ("", Err(())),
            ("M", Err(())),
            ("12X", Err(())),
            ("-1M", Err(())),
            ("99999999999G", Err(())),
        ];
        for (s, want) in table {
            assert_eq!(parse_size(s).map_err(drop), *want, "{s}");
        }
    }
}
