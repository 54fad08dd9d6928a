//! The `anomalyd` binary: parses the command line, runs the subcommand and
//! maps its outcome to an exit code (0 ok, 2 bad CLI or config, 1 runtime
//! failure). Everything else lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A streaming anomaly detector for metrics.
#[derive(Debug, Parser)]
#[command(name = "anomalyd", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay CSV files (`timestamp,value`) through the detector and write
    /// scores, expected values, bands and alerts.
    Backtest(anomalyd::backtest::BacktestArgs),
}

fn main() -> ExitCode {
    // clap exits with code 2 on a bad command line by itself.
    let cli = Cli::parse();
    match cli.command {
        Command::Backtest(args) => match anomalyd::backtest::run(&args) {
            Ok(summary) => {
                eprintln!(
                    "backtest: {} file(s), {} row(s), {} malformed, {} alert row(s)",
                    summary.files, summary.rows, summary.malformed, summary.alerts
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(e.exit_code() as u8)
            }
        },
    }
}
