//! The `ringecho` command line: one binary that is server and client, like iperf3.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ringecho_bench::all::BenchAllArgs;
use ringecho_bench::BenchArgs;
use ringecho_check::CheckArgs;
use ringecho_server::config::ServeConfig;

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
    quiet_on_closed_stdout();
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
            ringecho_server::server::serve(cfg).map(|()| true)
        }
        Command::Check(args) => ringecho_check::run(&args),
        Command::Bench(args) => ringecho_bench::run(&args),
        Command::BenchAll(args) => {
            use ringecho_bench::all::Outcome;
            match ringecho_bench::all::run(&args) {
                // As a shell reports a job stopped by SIGINT.
                Ok(Outcome::Interrupted) => return ExitCode::from(130),
                Ok(o) => Ok(o == Outcome::Passed),
                Err(e) => Err(e),
            }
        }
        Command::Plot { dir } => ringecho_bench::plot::plot(&dir),
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

/// Print clap's error compactly: help and version go out as clap renders them; an error
/// keeps clap's message and the detail lines under it (the missing argument, the possible
/// values, a "did you mean" tip), since those say how to fix the command, but not the
/// usage block, which `--help` repeats.
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
    eprint!(
        "{}",
        compact_clap_error(&e.render().to_string(), &subcommand_path())
    );
    ExitCode::from(2)
}

/// "ringecho bench throughput": the subcommands named on the command line, so the error
/// can point at the --help that documents the flag in question.
fn subcommand_path() -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut path = vec!["ringecho".to_string()];
    for arg in std::env::args().skip(1) {
        let Some(sub) = cmd.find_subcommand(&arg).cloned() else {
            break;
        };
        path.push(sub.get_name().to_string());
        cmd = sub;
    }
    path.join(" ")
}

/// clap's rendered error as `ringecho: MESSAGE (see 'COMMAND --help')` plus its detail
/// lines, each indented by two spaces. A message that ends in a colon (the missing
/// arguments) takes its details on the same line, so it reads as one sentence.
fn compact_clap_error(text: &str, command: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let mut message = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let mut details = Vec::new();
    let mut in_usage = false;
    for line in lines {
        if line.starts_with("Usage: ") {
            in_usage = true;
        } else if line.starts_with("For more information") {
            in_usage = false;
        } else if !in_usage {
            details.push(line);
        }
    }
    if message.ends_with(':') && !details.is_empty() {
        message = format!("{message} {}", details.join(", "));
        details.clear();
    }
    let mut out = format!("ringecho: {message} (see '{command} --help')\n");
    for d in details {
        out += &format!("  {d}\n");
    }
    out
}

/// `ringecho bench ... | head` closes our stdout early. Rust ignores SIGPIPE (the servers
/// and load generators need that: a vanished peer must be an error, not death), so the
/// next `println!` panics instead. Turn exactly that panic into the quiet exit a Unix
/// tool makes there (status 141, as if killed by SIGPIPE); every other panic keeps the
/// default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
