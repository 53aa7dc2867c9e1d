//! The `iolite` command: wires configuration to the crates. It holds no
//! logic that belongs in a crate.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use iolite_core::config::{self, ConfigErrors, ServeArgs};

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
    Serve(Box<ServeArgs>),
    /// Check a configuration file: print every error with its line and
    /// column and exit 1, or a summary and exit 0.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Serve(args) => serve(&args),
        Command::CheckConfig { file } => check_config(&file),
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
    let config = match config::resolve(args) {
        Ok(c) => c,
        Err(errors) => {
            report(&errors);
            eprintln!("iolite serve: not started");
            return ExitCode::from(2);
        }
    };
    let unsupported = config.not_yet_supported();
    if !unsupported.is_empty() {
        for what in unsupported {
            eprintln!("iolite serve: not yet supported: {what}");
        }
        return ExitCode::from(2);
    }
    eprintln!(
        "iolite serve: the configuration is valid, but serving is not yet available: \
         the HTTP core has not landed (see the core issue)"
    );
    ExitCode::from(2)
}
