//! The `iolite` command: wires configuration to the crates. It holds no
//! logic that belongs in a crate.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iolite_cluster::sim::cli::SimArgs;

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
    Serve,
    /// Simulate a cluster under each dispatch policy (LARD/R and baselines).
    Sim(Box<SimArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => {
            eprintln!("iolite serve: not yet — the HTTP core has not landed (see the core issue)");
            ExitCode::from(2)
        }
        Command::Sim(args) => match iolite_cluster::sim::cli::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("iolite sim: {e}");
                ExitCode::from(2)
            }
        },
    }
}
