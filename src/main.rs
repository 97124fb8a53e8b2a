//! The `ringecho` command line: one binary that is server and client, like iperf3.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringecho::bench::all::BenchAllArgs;
use ringecho::bench::BenchArgs;
use ringecho::check::CheckArgs;
use ringecho::config::ServeConfig;

/// An io_uring echo server (RFC 862), its epoll baseline, and a conformance checker.
#[derive(Parser)]
#[command(name = "ringecho", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the echo server until SIGINT/SIGTERM.
    Serve(ServeConfig),
    /// Test any TCP (or, with --udp, UDP) echo server for conformance; exits non-zero on
    /// any failure.
    Check(CheckArgs),
    /// Load an echo server and measure it (every byte is checked).
    Bench(BenchArgs),
    /// Measure the uring and epoll servers (and the kernel module, if loaded) side by side
    /// and write CSV, charts and a summary.
    BenchAll(BenchAllArgs),
    /// Redraw every chart and summary.md in DIR from its CSV and histogram files.
    Plot {
        /// A results directory written by bench-all.
        #[arg(default_value = "results")]
        dir: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Serve(cfg) => {
            if let Err(e) = cfg.validate() {
                eprintln!("ringecho: {e}");
                return ExitCode::from(2);
            }
            ringecho::server::serve(cfg).map(|()| true)
        }
        Command::Check(args) => ringecho::check::run(&args),
        Command::Bench(args) => ringecho::bench::run(&args),
        Command::BenchAll(args) => ringecho::bench::all::run(&args),
        Command::Plot { dir } => ringecho::bench::plot::plot(&dir),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ringecho: {e}");
            ExitCode::from(1)
        }
    }
}

/// Print clap's error as one line (help and version go out as clap renders them).
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                2
            } else {
                0
            },
        );
    }
    let text = e.render().to_string();
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("ringecho: {first} (see 'ringecho --help')");
    ExitCode::from(2)
}
