//! Remote-write ingest benchmark: samples per second and per CPU-second of
//! the daemon fed by Prometheus remote-write requests of 1,000 samples.
//!
//! `cargo bench --bench remote_write` (options: `-- --help`). This process
//! builds the requests first (snappy-compressed `WriteRequest`s, as
//! Prometheus sends them: each request one sample of each of 1,000 series,
//! time step after time step), then starts the daemon in a child process of
//! this binary (`app::start` with only `[sources.remote_write]`, the code of
//! `anomalyd run`), posts every request over `--connections` keep-alive
//! connections and waits until the child has processed every sample. Like
//! Prometheus' shards, each connection owns a fixed set of series, so a
//! series' samples arrive in order. A 503 is retried, as Prometheus would,
//! and counted.
//!
//! The child's CPU seconds (user + system, `/proc/self/stat`) and wall time
//! run from the first request to the last sample processed; its peak RSS is
//! `VmHWM`. The sender runs in this process on the same two cores.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anomalyd::app::config::Config;
use anomalyd::source::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use clap::Parser;
use prost::Message;

#[path = "proc_stats.rs"]
mod proc_stats;

use proc_stats::{cpu_seconds, peak_rss, thousands};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Parser, Clone)]
#[command(about = "anomalyd remote-write ingest benchmark")]
struct Cli {
    /// Series (multiple of 1,000).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Samples per series.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 1_000)]
    per_request: usize,
    /// Concurrent connections (Prometheus' shards).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Runs of each measurement (the table shows the range).
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// (internal) Run the daemon: print its address, answer `start` and
    /// `wait N` on stdin.
    #[arg(long, hide = true)]
    child: Option<usize>,
}

fn main() {
    // cargo bench appends `--bench` to a harness-less bench's arguments.
    let args = std::env::args().filter(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    let r = match cli.child {
        Some(workers) => child(workers),
        None => parent(&cli),
    };
    if let Err(e) = r {
        eprintln!("remote_write bench: {e}");
        std::process::exit(1);
    }
}

fn child(workers: usize) -> Res<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let mut c = Config::default();
    // The bench streams hold under a day of event time: the default one-day
    // warm-up would leave every series unscored, so they are scored (and
    // alert) as a fleet past its first day would.
    c.detector.threshold.warmup_secs = 0;
    // Whatever the streams' times, events take the live path, alerts included.
    c.alert.max_event_age_secs = 0;
    c.kafka.enabled = false;
    c.sources.remote_write.enabled = true;
    c.sources.remote_write.listen_addr = "127.0.0.1:0".into();
    // The requests are of 2026-01-01, whatever today is.
    c.sources.remote_write.max_sample_age_secs = 0;
    c.metrics.listen_addr = "127.0.0.1:0".into();
    c.pipeline.workers = workers;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let running = rt.block_on(anomalyd::app::start(c))?;
    let addr = running
        .source_addr("remote_write")
        .ok_or("no receiver address")?;
    let m = Arc::clone(&running.metrics);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{addr}")?;
    out.flush()?;
    let (mut cpu0, mut t0) = (cpu_seconds(), Instant::now());
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("start"), _) => {
                (cpu0, t0) = (cpu_seconds(), Instant::now());
                writeln!(out, "ok")?;
            }
            (Some("wait"), Some(n)) => {
                let n: u64 = n.parse()?;
                while m.events_processed_total() < n {
                    // Coarse: this thread's CPU time counts as the daemon's.
                    std::thread::sleep(Duration::from_millis(5));
                }
                let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
                writeln!(out, "{wall} {cpu} {}", peak_rss())?;
            }
            _ => return Err(format!("unknown command `{line}`").into()),
        }
        out.flush()?;
    }
    running.shutdown();
    rt.block_on(running.wait())?;
    Ok(())
}

/// The requests of one connection, in send order.
type Batches = Vec<Vec<Vec<u8>>>;

/// Builds every request: for each time step, one request per group of
/// `per_request` series; group `g` goes to connection `g % connections`.
fn requests(cli: &Cli) -> Batches {
    let groups = cli.series.div_ceil(cli.per_request);
    let mut per_conn: Batches = vec![Vec::new(); cli.connections];
    let t0 = 1_767_225_600_000i64;
    let mut noise = 0x2545_F491_4F6C_DD1Du64;
    for step in 0..cli.steps {
        for g in 0..groups {
            let timeseries = (g * cli.per_request..((g + 1) * cli.per_request).min(cli.series))
                .map(|s| {
                    noise ^= noise << 13;
                    noise ^= noise >> 7;
                    noise ^= noise << 17;
                    let jitter = (noise >> 11) as f64 / (1u64 << 53) as f64;
                    let value = 100.0 + 10.0 * ((step as f64 / 40.0) + s as f64).sin() + jitter;
                    TimeSeries {
                        labels: [
                            ("__name__", "node_cpu_seconds"),
                            ("cpu", &(s % 8).to_string()),
                            ("instance", &format!("host-{:05}:9100", s / 8)),
                            ("job", "node"),
                        ]
                        .iter()
                        .map(|(n, v)| Label {
                            name: (*n).into(),
                            value: (*v).into(),
                        })
                        .collect(),
                        samples: vec![Sample {
                            value,
                            timestamp: t0 + 15_000 * step as i64,
                        }],
                        histograms: Vec::new(),
                    }
                })
                .collect();
            let raw = WriteRequest {
                timeseries,
                ..WriteRequest::default()
            }
            .encode_to_vec();
            let body = snap::raw::Encoder::new()
                .compress_vec(&raw)
                .expect("snappy");
            per_conn[g % cli.connections].push(body);
        }
    }
    per_conn
}

/// One measured run with `workers` shards: (wall s, CPU s, peak RSS, 503s).
fn measure(cli: &Cli, workers: usize, batches: &Batches) -> Res<(f64, f64, u64, u64)> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["--child", &workers.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or("child stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().ok_or("child stdout")?);
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let url = format!("http://{}/api/v1/write", line.trim());
    writeln!(stdin, "start")?;
    line.clear();
    stdout.read_line(&mut line)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let refused: u64 = rt.block_on(async {
        let tasks: Vec<_> = batches
            .iter()
            .cloned()
            .map(|bodies| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut refused = 0u64;
                    for body in bodies {
                        loop {
                            let r = client
                                .post(&url)
                                .header("Content-Encoding", "snappy")
                                .header("Content-Type", "application/x-protobuf")
                                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                                .body(body.clone())
                                .send()
                                .await
                                .expect("POST");
                            match r.status().as_u16() {
                                204 => break,
                                503 => {
                                    refused += 1;
                                    tokio::time::sleep(Duration::from_millis(10)).await;
                                }
                                s => panic!("unexpected status {s}"),
                            }
                        }
                    }
                    refused
                })
            })
            .collect();
        let mut refused = 0;
        for t in tasks {
            refused += t.await.expect("sender");
        }
        refused
    });
    let samples = (cli.series * cli.steps) as u64;
    writeln!(stdin, "wait {samples}")?;
    line.clear();
    stdout.read_line(&mut line)?;
    let f: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    drop(stdin);
    child.wait()?;
    Ok((f[0], f[1], f[2] as u64, refused))
}

fn range(v: &[f64]) -> String {
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    if thousands(lo) == thousands(hi) {
        thousands(lo)
    } else {
        format!("{}–{}", thousands(lo), thousands(hi))
    }
}

fn parent(cli: &Cli) -> Res<()> {
    let t = Instant::now();
    let batches = requests(cli);
    let requests: usize = batches.iter().map(Vec::len).sum();
    let bytes: usize = batches.iter().flatten().map(Vec::len).sum();
    eprintln!(
        "{requests} requests of {} samples ({} series × {} steps), {:.0} bytes each compressed, built in {:.1} s",
        cli.per_request,
        cli.series,
        cli.steps,
        bytes as f64 / requests as f64,
        t.elapsed().as_secs_f64()
    );
    println!("| path | workers | samples | samples/s | samples/CPU-s | peak RSS MB | 503s |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let samples = (cli.series * cli.steps) as f64;
    for &w in &cli.workers {
        let mut per_s = Vec::new();
        let mut per_cpu = Vec::new();
        let mut rss = Vec::new();
        let mut refused = Vec::new();
        for _ in 0..cli.repeat {
            let (wall, cpu, peak, r) = measure(cli, w, &batches)?;
            per_s.push(samples / wall);
            per_cpu.push(samples / cpu);
            rss.push(peak as f64 / (1024.0 * 1024.0));
            refused.push(r as f64);
        }
        println!(
            "| remote-write, {} samples/request, {} connections | {w} | {} | {} | {} | {} | {} |",
            cli.per_request,
            cli.connections,
            range(&[samples]),
            range(&per_s),
            range(&per_cpu),
            range(&rss),
            range(&refused),
        );
    }
    Ok(())
}
