//! The `anomalyd` binary: CLI → config → telemetry → run → exit code.
//!
//! Exit codes: 0 success, 2 bad command line or configuration, 1 runtime
//! failure. Errors are printed once, with their causes (`{:#}`).

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use anomalyd::app::config::Config;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "anomalyd",
    version,
    about = "Streaming anomaly detection for metrics: Kafka or Prometheus remote-write in, alerts out."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: read the configured sources (Kafka, remote-write), alert, serve metrics.
    Run {
        /// TOML config file (default: $ANOMALYD_CONFIG, else built-in defaults).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run the daemon on an embedded Kafka broker with a generated fleet.
    Demo {
        /// TOML config file, as for `run` (broker and topics are set by the demo).
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[command(flatten)]
        args: anomalyd::demo::DemoArgs,
    },
    /// Check a config file; print every problem and exit 2 if there is one.
    CheckConfig {
        /// TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Also print the effective configuration (defaults, file and
        /// environment merged; secrets redacted).
        #[arg(long)]
        print: bool,
    },
    /// Score CSV files offline through the daemon's per-event code path.
    Backtest(anomalyd::backtest::BacktestArgs),
    /// Learn series from CSV files or from Prometheus and write the state
    /// directory `run` restores, so they are scored from their first event.
    Warm(anomalyd::warm::WarmArgs),
    /// Replay NDJSON/line-protocol from a file or stdin through the pipeline
    /// and print throughput (benchmarks, debugging).
    Replay {
        /// Input file, or `-` for stdin.
        #[arg(long, default_value = "-")]
        input: PathBuf,
        /// TOML config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Run { config } => daemon(config.as_deref(), |config| async move {
            anomalyd::app::run(config, shutdown_signal())
                .await
                .map(|_| ())
        }),
        Command::Demo { config, args } => daemon(config.as_deref(), |config| async move {
            anomalyd::demo::run(config, args, shutdown_signal())
                .await
                .map(|_| ())
        }),
        Command::CheckConfig { config, print } => check_config(config.as_deref(), print),
        Command::Backtest(args) => match anomalyd::backtest::run(&args) {
            Ok(summary) => {
                eprintln!(
                    "backtest: {} file(s), {} row(s), {} malformed, {} alert row(s), \
                     {} page(s) ({} incident notification(s))",
                    summary.files,
                    summary.rows,
                    summary.malformed,
                    summary.alerts,
                    summary.pages,
                    summary.incident_notifications
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("anomalyd: {e:#}");
                ExitCode::from(e.exit_code() as u8)
            }
        },
        Command::Warm(args) => match anomalyd::warm::run(&args) {
            Ok(s) => {
                eprintln!(
                    "warm: {} series learned ({} points), {} skipped by the counter rules, \
                     {} already held and kept, {} malformed row(s); wrote {}",
                    s.series,
                    s.points,
                    s.skipped_series,
                    s.kept,
                    s.malformed,
                    s.path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("anomalyd: {e:#}");
                ExitCode::from(e.exit_code() as u8)
            }
        },
        Command::Replay { input, config } => daemon(config.as_deref(), |config| async move {
            let summary = anomalyd::app::replay(config, &input).await?;
            println!(
                "replayed {} lines, {} events in {:.3} s: {:.0} events/s",
                summary.lines,
                summary.events,
                summary.seconds,
                summary.events as f64 / summary.seconds.max(1e-9)
            );
            Ok(())
        }),
    }
}

/// Loads the config, starts logging and the runtime, runs `f`.
fn daemon<F, Fut>(path: Option<&std::path::Path>, f: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anomalyd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = anomalyd::telemetry::init(&config.log) {
        eprintln!("anomalyd: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("anomalyd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "anomalyd stopped with an error.");
            eprintln!("anomalyd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints every problem of the configuration at once, each under its full
/// key (exit 2), or `configuration ok`. With `print`, the effective
/// configuration first (a key with a problem shows its default). A reader
/// that goes away (`| head`) ends the printing quietly.
fn check_config(path: Option<&std::path::Path>, print: bool) -> ExitCode {
    let checked = match Config::check(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("anomalyd: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if print {
        match checked.config.to_toml() {
            Ok(text) => quietly(writeln!(out, "{text}")),
            Err(e) => eprintln!("anomalyd: cannot print the configuration: {e}"),
        }
    }
    if checked.problems.is_empty() {
        quietly(writeln!(out, "configuration ok"));
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "anomalyd: {} problem(s) in the configuration:",
        checked.problems.len()
    );
    for p in checked.problems.iter() {
        eprintln!("  {p}");
    }
    ExitCode::from(2)
}

/// Ignores a failed write to standard output: the reader closed the pipe
/// (`check-config --print | head -1`) and wants no more; nothing else is
/// worth a message (the exit code still reports the configuration).
fn quietly(written: std::io::Result<()>) {
    let _ = written;
}

/// Completes on the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("Signal received; draining. Send it again to exit at once.");
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("anomalyd: second signal, exiting without draining");
        std::process::exit(1);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
