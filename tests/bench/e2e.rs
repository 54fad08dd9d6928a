//! End-to-end benchmark: events per second, events per CPU-second, peak
//! memory and event-to-alert latency of the whole daemon (decode → model →
//! threshold → alert), on a stream written by `tests/bench/gen_stream.py`.
//!
//! `cargo bench --bench e2e -- run --stream FILE --name 10k` measures, each
//! in a fresh child process of this binary (so peak RSS and CPU time are the
//! daemon's alone):
//!
//! - **replay**: `app::replay`, the code behind `anomalyd replay`, on the
//!   file, with 1 and 2 workers;
//! - **kafka**: the stream produced first, one event per message keyed by
//!   series, to a partitioned topic of an `rdkafka::mocking::MockCluster`
//!   that this process hosts on loopback; a child runs `app::start` with a
//!   fresh consumer group and is timed from its first processed event to its
//!   last (`anomalyd_events_processed_total`), with 1 and 2 workers; then
//!   the same with the stream as NDJSON messages of `--kafka-batch` events
//!   (default 100; each partition's series batched together, as Telegraf or
//!   any batching producer writes them);
//! - **latency**: a child daemon with the Kafka alert sink is warmed up on
//!   the stream's first events (so its series can alert), then this process
//!   produces the next events at a fixed rate and times each alert from the
//!   `produce()` call of the event it reports to its arrival on the alert
//!   topic (a consumer in this process). The daemon's own histogram
//!   `anomalyd_event_processing_seconds` (message received → event
//!   processed, every event) is reported beside it.
//!
//! CPU seconds are user + system time of the child process
//! (`/proc/self/stat`, the accounting `getrusage` reports) over the timed
//! window; peak RSS is its `VmHWM`. The mock broker runs in this parent
//! process, not in the measured child, but on the same two cores.
//!
//! `--brokers mock,tansu` runs the Kafka measurements on a tansu broker
//! process as well (tests/it/tansu_broker.rs; memory storage), with the
//! broker's own CPU time beside each row; `e2e broker-cost` measures
//! tansu's CPU per produce request and per fetch as a partition fills.
//!
//! `e2e table` merges the JSON lines of `run` (`--json-out`) with those of
//! `tests/bench/peers/run_peers.sh` into one markdown table;
//! `tests/bench/run_e2e.sh` does all of it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anomalyd::alert::Alert;
use anomalyd::app::config::Config;
use anomalyd::event::SeriesKey;
use anomalyd::source::kafka::OffsetReset;
use clap::{Args, Parser, Subcommand};

#[path = "../it/real_parts.rs"]
mod real_parts;
#[path = "../it/tansu_broker.rs"]
mod tansu_broker;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[path = "proc_stats.rs"]
mod proc_stats;

use proc_stats::{cpu_seconds, cpu_seconds_of, peak_rss, thousands};

type Fail = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, Fail>;

#[derive(Parser)]
#[command(about = "anomalyd end-to-end benchmark")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every measurement on one stream and print a table.
    Run(RunArgs),
    /// Merge `run --json-out` files and run_peers.sh output into markdown.
    Table {
        /// JSON lines of `run`.
        #[arg(long, num_args = 1..)]
        ours: Vec<PathBuf>,
        /// JSON lines of run_peers.sh, one file per stream, named
        /// `peers-<stream name>.jsonl`.
        #[arg(long, num_args = 0..)]
        peers: Vec<PathBuf>,
    },
    /// (internal) Replay the file in this process and print one JSON line.
    ChildReplay {
        #[arg(long)]
        stream: PathBuf,
        #[arg(long)]
        workers: usize,
        /// Use the autoencoder instead of the default regression model.
        #[arg(long)]
        autoencoder: bool,
    },
    /// (internal) Consume a topic until `events` are processed.
    ChildKafka {
        #[command(flatten)]
        daemon: DaemonArgs,
        #[arg(long)]
        events: u64,
        /// Name of the measurement in the table.
        #[arg(long, default_value = "kafka")]
        scenario: String,
    },
    /// (internal) Run the daemon and answer `wait N` / `stats` on stdin.
    ChildServe {
        #[command(flatten)]
        daemon: DaemonArgs,
    },
    /// tansu's CPU per produce request and per fetch as a partition fills
    /// with batches (where its time goes in the latency run).
    BrokerCost {
        /// Single-message batches written in all.
        #[arg(long, default_value_t = 20_000)]
        batches: usize,
        /// Measurements along the way.
        #[arg(long, default_value_t = 4)]
        steps: usize,
        /// Fetches timed at each step.
        #[arg(long, default_value_t = 10)]
        fetches: usize,
    },
}

#[derive(Args, Clone)]
struct DaemonArgs {
    #[arg(long)]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long)]
    workers: usize,
    /// Alert topic for the Kafka sink (none: only the default log sink).
    #[arg(long)]
    alerts_topic: Option<String>,
    /// `linger.ms` of the alert producer (librdkafka's default when absent).
    #[arg(long)]
    alert_linger_ms: Option<u32>,
    /// The consumer's `fetch.wait.max.ms` (librdkafka's default when absent).
    #[arg(long)]
    fetch_wait_max_ms: Option<u32>,
}

#[derive(Args)]
struct RunArgs {
    /// NDJSON stream from gen_stream.py.
    #[arg(long)]
    stream: PathBuf,
    /// Name of the stream in the table, e.g. `10k`.
    #[arg(long)]
    name: String,
    /// Worker counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Runs of each throughput measurement (the table shows the range).
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Events produced for the Kafka throughput runs (0: the whole stream).
    #[arg(long, default_value_t = 0)]
    kafka_events: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Also measure Kafka with this many events per message (NDJSON lines
    /// of series of one partition, as Telegraf or a batching producer
    /// writes them); 0 skips it.
    #[arg(long, default_value_t = 100)]
    kafka_batch: usize,
    /// Offered load of the latency run, events per second (0: skip it).
    #[arg(long, default_value_t = 50_000)]
    latency_rate: u64,
    /// Length of the paced part of the latency run.
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Events per series replayed at full speed before the paced part, so
    /// that series are past their warm-up and can alert.
    #[arg(long, default_value_t = 120)]
    latency_warmup_per_series: usize,
    /// Workers of the latency run.
    #[arg(long, default_value_t = 2)]
    latency_workers: usize,
    /// `linger.ms` of the daemon's alert producer in the latency run
    /// (anomalyd's default, 0, when absent).
    #[arg(long)]
    alert_linger_ms: Option<u32>,
    /// The daemon's `fetch.wait.max.ms` in the latency run. The mock broker
    /// answers a fetch that finds no data only after this long, even when
    /// data arrives meanwhile (a real broker answers as soon as it has
    /// `fetch.min.bytes`), so librdkafka's default of 500 ms would measure
    /// the mock, not the daemon.
    #[arg(long, default_value_t = 5)]
    latency_fetch_wait_ms: u32,
    /// Partitions of the latency run's input topic.
    #[arg(long, default_value_t = 4)]
    latency_partitions: i32,
    /// `linger.ms` of this process's producer in the paced part. The mock
    /// broker answers a fetch with at most one producer batch per partition
    /// (a real broker fills the fetch), so batches of a message or two cap
    /// what the daemon can fetch below the offered load; a few ms of linger
    /// (counted in the latency: it is measured from `produce()`) and few
    /// partitions keep the batches large enough.
    #[arg(long, default_value_t = 2)]
    latency_linger_ms: u32,
    /// Skip the Kafka runs (throughput and latency).
    #[arg(long)]
    no_kafka: bool,
    /// Brokers of the Kafka runs: `mock` (librdkafka's mock cluster, in this
    /// process) and/or `tansu` (a tansu process on loopback with in-memory
    /// storage; see tests/it/tansu_broker.rs).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mock")]
    brokers: Vec<BrokerKind>,
    /// Skip the file replay runs (e.g. to measure only the Kafka rows).
    #[arg(long)]
    no_replay: bool,
    /// `linger.ms` of this process's producer in the paced part of the
    /// latency run on tansu: librdkafka's default. (The mock's
    /// `--latency-linger-ms` works around the mock's fetch limit; tansu
    /// instead pays ~0.2 ms of CPU per produce request, see `broker-cost`,
    /// so a producer that sends every message alone saturates it.)
    #[arg(long, default_value_t = 5)]
    tansu_latency_linger_ms: u32,
    /// The daemon's `fetch.wait.max.ms` in the latency run on tansu (absent:
    /// anomalyd's default, librdkafka's 500 ms; a real broker answers a
    /// waiting fetch as soon as data arrives).
    #[arg(long)]
    tansu_fetch_wait_ms: Option<u32>,
    /// Run only the latency measurement.
    #[arg(long)]
    latency_only: bool,
    /// Also replay with the autoencoder (its model costs more than decoding,
    /// so it shows how the shards scale with workers).
    #[arg(long)]
    autoencoder: bool,
    /// Append every result as a JSON line to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

/// One measurement, as printed by a child and written to `--json-out`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Row {
    stream: String,
    series: usize,
    scenario: String,
    workers: usize,
    events: u64,
    wall_s: f64,
    cpu_s: f64,
    events_per_s: f64,
    events_per_cpu_s: f64,
    peak_rss_bytes: u64,
    /// CPU-seconds of the broker over the run (the mock: this parent
    /// process, idle but for the broker while a child runs; tansu: its
    /// process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    broker_cpu_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
}

impl Row {
    /// A measurement of `events` over `wall_s` seconds and `cpu_s`
    /// CPU-seconds (the stream's name and size are filled in by `run`).
    fn measured(
        scenario: &str,
        workers: usize,
        events: u64,
        (wall_s, cpu_s): (f64, f64),
        peak_rss_bytes: u64,
    ) -> Self {
        Row {
            scenario: scenario.into(),
            workers,
            events,
            wall_s,
            cpu_s,
            events_per_s: events as f64 / wall_s,
            events_per_cpu_s: events as f64 / cpu_s,
            peak_rss_bytes,
            ..Row::default()
        }
    }
}

/// What the latency run found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Latency {
    /// Offered load, events per second.
    rate: u64,
    /// Achieved produce rate.
    produced_per_s: f64,
    /// Alerts matched to a produced event of the paced part.
    alerts: usize,
    /// Event `produce()` → alert received, milliseconds.
    alert_p50_ms: f64,
    alert_p99_ms: f64,
    alert_max_ms: f64,
    /// Received → processed (the daemon's histogram, every event; the upper
    /// edge of the bucket holding the quantile), milliseconds.
    processing_p50_ms: f64,
    processing_p99_ms: f64,
    /// `linger.ms` of the alert producer.
    alert_linger_ms: Option<u32>,
    /// The daemon consumer's `fetch.wait.max.ms` (absent: librdkafka's
    /// default, 500 ms).
    #[serde(default)]
    fetch_wait_max_ms: Option<u32>,
    /// `linger.ms` of the producer of the events.
    #[serde(default)]
    producer_linger_ms: u32,
    /// Partitions of the input topic.
    #[serde(default)]
    partitions: i32,
}

fn main() {
    // cargo bench appends `--bench` to a harness-less bench's arguments.
    let args = std::env::args().filter(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    let result = match cli.cmd {
        Cmd::Run(a) => run(&a),
        Cmd::Table { ours, peers } => table(&ours, &peers),
        Cmd::ChildReplay {
            stream,
            workers,
            autoencoder,
        } => child_replay(&stream, workers, autoencoder),
        Cmd::ChildKafka {
            daemon,
            events,
            scenario,
        } => child_kafka(&daemon, events, &scenario),
        Cmd::ChildServe { daemon } => child_serve(&daemon),
        Cmd::BrokerCost {
            batches,
            steps,
            fetches,
        } => broker_cost(batches, steps, fetches),
    };
    if let Err(e) = result {
        eprintln!("e2e: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- process

fn runtime() -> Res<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Warnings and errors of the daemon go to stderr; nothing per event.
fn quiet_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_row(row: &Row) -> Res<()> {
    println!("{}", serde_json::to_string(row)?);
    Ok(())
}

// ------------------------------------------------------------------ children

fn child_replay(stream: &Path, workers: usize, autoencoder: bool) -> Res<()> {
    quiet_logs();
    let mut config = Config::default();
    // The bench streams hold under a day of event time: the default one-day
    // warm-up would leave every series unscored, so they are scored (and
    // alert) as a fleet past its first day would.
    config.detector.threshold.warmup_secs = 0;
    // Their events are of 2026-01-01: without this the age limit would
    // spare them the alert lifecycle, and the bench would measure less
    // than the daemon does on live events.
    config.alert.max_event_age_secs = 0;
    config.pipeline.workers = workers;
    if autoencoder {
        config.detector.model.kind = anomalyd::model::ModelKind::Autoencoder;
    }
    let rt = runtime()?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let report = rt.block_on(anomalyd::app::replay(config, stream))?;
    let (cpu_s, wall_s) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    print_row(&Row::measured(
        if autoencoder {
            "replay, autoencoder"
        } else {
            "replay"
        },
        workers,
        report.events,
        (wall_s, cpu_s),
        peak_rss(),
    ))
}

fn daemon_config(a: &DaemonArgs) -> Config {
    let mut c = Config::default();
    // The bench streams hold under a day of event time: the default one-day
    // warm-up would leave every series unscored, so they are scored (and
    // alert) as a fleet past its first day would.
    c.detector.threshold.warmup_secs = 0;
    // Old events (2026-01-01) must take the live path, alerts included.
    c.alert.max_event_age_secs = 0;
    c.kafka.brokers = a.brokers.clone();
    c.kafka.topics = a.topic.split(',').map(str::to_owned).collect();
    c.kafka.group_id = a.group.clone();
    c.kafka.auto_offset_reset = OffsetReset::Earliest;
    c.metrics.listen_addr = "127.0.0.1:0".into();
    // tansu holds the first join of a group for up to ~25 s with the
    // default session timeout.
    c.kafka.session_timeout_ms = 6_000;
    c.pipeline.workers = a.workers;
    if let Some(w) = a.fetch_wait_max_ms {
        c.kafka
            .options
            .insert("fetch.wait.max.ms".into(), w.to_string());
    }
    if let Some(t) = &a.alerts_topic {
        c.sinks.kafka.enabled = true;
        c.sinks.kafka.brokers = a.brokers.clone();
        c.sinks.kafka.topic = t.clone();
        if let Some(l) = a.alert_linger_ms {
            c.sinks
                .kafka
                .options
                .insert("linger.ms".into(), l.to_string());
        }
    }
    c
}

/// Polls `f` every millisecond until it holds; false after `timeout`.
fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// Polls until `n` events are processed; false when the count stops moving
/// for 30 s.
fn wait_processed(m: &anomalyd::telemetry::metrics::Metrics, n: u64) -> bool {
    let (mut last, mut moved) = (m.events_processed_total(), Instant::now());
    loop {
        let now = m.events_processed_total();
        if now >= n {
            return true;
        }
        if now != last {
            (last, moved) = (now, Instant::now());
        } else if moved.elapsed() > Duration::from_secs(30) {
            return false;
        }
        // Coarse on purpose: this thread's CPU time counts as the daemon's.
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn child_kafka(a: &DaemonArgs, events: u64, scenario: &str) -> Res<()> {
    quiet_logs();
    let rt = runtime()?;
    let running = rt.block_on(anomalyd::app::start(daemon_config(a)))?;
    let m = Arc::clone(&running.metrics);
    // Timed from the first processed event: joining the group is not
    // throughput.
    if !poll(Duration::from_secs(60), || m.events_processed_total() > 0) {
        return Err("no event processed within 60 s".into());
    }
    let (c0, cpu0, t0) = (m.events_processed_total(), cpu_seconds(), Instant::now());
    if !wait_processed(&m, events) {
        return Err(format!(
            "stalled at {} of {events} events processed",
            m.events_processed_total()
        )
        .into());
    }
    let (cpu_s, wall_s) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    let n = m.events_processed_total() - c0;
    let rss = peak_rss();
    running.shutdown();
    rt.block_on(running.wait())?;
    print_row(&Row::measured(scenario, a.workers, n, (wall_s, cpu_s), rss))
}

/// Cumulative counts of `anomalyd_event_processing_seconds`, by upper edge.
fn processing_histogram(registry: &prometheus::Registry) -> Vec<(f64, u64)> {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "anomalyd_event_processing_seconds")
        .flat_map(|f| f.get_metric().iter())
        .flat_map(|m| {
            let h = m.get_histogram();
            let mut v: Vec<(f64, u64)> = h
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count()))
                .collect();
            // JSON has no infinity: the +Inf bucket travels as f64::MAX.
            v.push((f64::MAX, h.get_sample_count()));
            v
        })
        .collect()
}

fn child_serve(a: &DaemonArgs) -> Res<()> {
    quiet_logs();
    let rt = runtime()?;
    let running = rt.block_on(anomalyd::app::start(daemon_config(a)))?;
    let m = Arc::clone(&running.metrics);
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("wait"), Some(n)) => {
                let n: u64 = n.parse()?;
                let ok = wait_processed(&m, n);
                writeln!(out, "{}", if ok { "done" } else { "timeout" })?;
            }
            (Some("stats"), _) => {
                let s = json!({
                    "processed": m.events_processed_total(),
                    "cpu_s": cpu_seconds(),
                    "peak_rss_bytes": peak_rss(),
                    "histogram": processing_histogram(m.registry()),
                });
                writeln!(out, "{s}")?;
            }
            _ => return Err(format!("unknown command `{line}`").into()),
        }
        out.flush()?;
    }
    running.shutdown();
    rt.block_on(running.wait())?;
    Ok(())
}

// ------------------------------------------------------------------- parent

/// One line of the stream with what the bench needs to route and match it.
struct Line {
    text: String,
    fingerprint: u64,
    ts_ms: i64,
}

#[derive(Deserialize)]
struct NativeRecord {
    series: String,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    ts: i64,
}

/// Reads up to `max` lines of the stream (all when `max` is 0).
fn read_lines(path: &Path, max: usize) -> Res<Vec<Line>> {
    let f = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut out = Vec::new();
    for line in f.lines() {
        if max > 0 && out.len() >= max {
            break;
        }
        let text = line?;
        let r: NativeRecord = serde_json::from_str(&text)?;
        let key = SeriesKey::new(r.series, r.labels);
        out.push(Line {
            text,
            fingerprint: key.fingerprint(),
            ts_ms: r.ts,
        });
    }
    Ok(out)
}

/// Number of lines and distinct series of the stream (series are told apart
/// by the text before `"ts"`, which is how gen_stream.py writes them).
fn count_stream(path: &Path) -> Res<(u64, usize)> {
    let f = BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut seen = std::collections::HashSet::new();
    let mut lines = 0;
    for line in f.lines() {
        let line = line?;
        lines += 1;
        let head = line.split("\"ts\"").next().unwrap_or(&line);
        if !seen.contains(head) {
            seen.insert(head.to_owned());
        }
    }
    Ok((lines, seen.len()))
}

/// Which broker the Kafka runs use.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BrokerKind {
    Mock,
    Tansu,
}

/// The broker of the Kafka runs.
enum Broker {
    Mock(MockCluster<'static, DefaultProducerContext>),
    Tansu(tansu_broker::Tansu),
}

impl Broker {
    fn start(kind: BrokerKind) -> Res<Self> {
        Ok(match kind {
            BrokerKind::Mock => Broker::Mock(MockCluster::new(1)?),
            BrokerKind::Tansu => Broker::Tansu(tansu_broker::Tansu::start()),
        })
    }

    /// Its name in the table.
    fn name(&self) -> &'static str {
        match self {
            Broker::Mock(_) => "mock",
            Broker::Tansu(_) => "tansu",
        }
    }

    fn bootstrap(&self) -> String {
        match self {
            Broker::Mock(m) => m.bootstrap_servers(),
            Broker::Tansu(t) => t.bootstrap().to_owned(),
        }
    }

    fn create_topic(&self, name: &str, partitions: i32) -> Res<()> {
        match self {
            Broker::Mock(m) => m.create_topic(name, partitions, 1)?,
            Broker::Tansu(t) => t.create_topic(name, partitions, &[]),
        }
        Ok(())
    }

    /// CPU-seconds the broker has used so far. The mock runs in this
    /// process, which does nothing else while a child daemon runs.
    fn cpu_seconds(&self) -> f64 {
        match self {
            Broker::Mock(_) => cpu_seconds(),
            Broker::Tansu(t) => cpu_seconds_of(&t.pid().to_string()),
        }
    }

    /// Fails when the mock dropped the oldest messages of `topic` (its
    /// per-partition log limit), which would leave the daemon waiting for
    /// events that no longer exist. tansu keeps everything.
    fn check_retained(&self, topic: &str, partitions: i32) -> Res<()> {
        match self {
            Broker::Mock(m) => check_retained(&m.bootstrap_servers(), topic, partitions),
            Broker::Tansu(_) => Ok(()),
        }
    }
}

/// A producer that compresses (lz4): a mock partition keeps only its last
/// 5 MB of message sets (librdkafka's mock log limit), so uncompressed the
/// stream would not fit. `linger_ms` 0 sends at once (the paced latency
/// run); more batches bigger (bulk loading).
fn producer(bootstrap: &str, linger_ms: u32) -> Res<ThreadedProducer<DefaultProducerContext>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.num.messages", "10000")
        .create()?)
}

/// See [`Broker::check_retained`].
fn check_retained(bootstrap: &str, topic: &str, partitions: i32) -> Res<()> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-watermarks")
        .create()?;
    for p in 0..partitions {
        let (low, high) = c.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        if low != 0 {
            return Err(format!(
                "the mock broker dropped offsets 0..{low} of {topic}/{p} (of {high}): \
                 use more --partitions or fewer --kafka-events"
            )
            .into());
        }
    }
    Ok(())
}

/// Produces `lines` as messages of `per_message` NDJSON lines each: lines
/// go to partition `fingerprint % partitions` (so a series stays on one
/// partition) and each partition's lines are cut into messages in order.
fn produce_batched(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partitions: i32,
    lines: &[Line],
    per_message: usize,
) -> Res<()> {
    let n = partitions.max(1) as usize;
    let mut open: Vec<(String, usize)> = vec![(String::new(), 0); n];
    let send_one = |part: usize, text: &str| -> Res<()> {
        let mut rec = BaseRecord::<(), str>::to(topic)
            .partition(part as i32)
            .payload(text);
        loop {
            match p.send(rec) {
                Ok(()) => return Ok(()),
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    };
    for l in lines {
        let part = (l.fingerprint % n as u64) as usize;
        let (buf, count) = &mut open[part];
        buf.push_str(&l.text);
        buf.push('\n');
        *count += 1;
        if *count == per_message {
            send_one(part, buf)?;
            buf.clear();
            *count = 0;
        }
    }
    for (part, (buf, count)) in open.iter().enumerate() {
        if *count > 0 {
            send_one(part, buf)?;
        }
    }
    p.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Produces `lines` as fast as the producer takes them, keyed by series.
fn produce_all(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    lines: &[Line],
) -> Res<()> {
    for l in lines {
        send(p, topic, l)?;
    }
    p.flush(Duration::from_secs(120))?;
    Ok(())
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, l: &Line) -> Res<()> {
    let key = format!("{:016x}", l.fingerprint);
    let mut rec = BaseRecord::to(topic).key(&key).payload(&l.text);
    loop {
        match p.send(rec) {
            Ok(()) => return Ok(()),
            Err((e, r))
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
            {
                rec = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Runs this binary with `args`; returns its last stdout line as a row.
fn child_row(args: &[String]) -> Res<Row> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", out.status).into());
    }
    let text = String::from_utf8(out.stdout)?;
    let last = text.lines().last().ok_or("child printed nothing")?;
    Ok(serde_json::from_str(last)?)
}

fn daemon_args(bootstrap: &str, topic: &str, group: &str, workers: usize) -> Vec<String> {
    vec![
        "--brokers".into(),
        bootstrap.into(),
        "--topic".into(),
        topic.into(),
        "--group".into(),
        group.into(),
        "--workers".into(),
        workers.to_string(),
    ]
}

fn run(a: &RunArgs) -> Res<()> {
    let (lines, series) = count_stream(&a.stream)?;
    eprintln!(
        "e2e: stream {} ({}): {lines} events, {series} series",
        a.name,
        a.stream.display()
    );
    let mut rows = Vec::new();
    let emit = |mut row: Row, rows: &mut Vec<Row>| -> Res<()> {
        row.stream = a.name.clone();
        row.series = series;
        eprintln!(
            "e2e: {} workers={} events={} {:.0} events/s, {:.0} events/CPU-s, peak RSS {:.0} MB",
            row.scenario,
            row.workers,
            row.events,
            row.events_per_s,
            row.events_per_cpu_s,
            row.peak_rss_bytes as f64 / 1e6
        );
        if let Some(path) = &a.json_out {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{}", serde_json::to_string(&row)?)?;
        }
        rows.push(row);
        Ok(())
    };

    let throughput_workers: &[usize] = if a.latency_only { &[] } else { &a.workers };
    let models: &[bool] = if a.autoencoder {
        &[false, true]
    } else {
        &[false]
    };
    let replay_workers = if a.no_replay { &[] } else { throughput_workers };
    for &autoencoder in models {
        for &w in replay_workers {
            for _ in 0..a.repeat {
                let mut args = vec![
                    "child-replay".to_owned(),
                    "--stream".into(),
                    a.stream.display().to_string(),
                    "--workers".into(),
                    w.to_string(),
                ];
                if autoencoder {
                    args.push("--autoencoder".into());
                }
                emit(child_row(&args)?, &mut rows)?;
            }
        }
    }

    for &kind in if a.no_kafka { &[][..] } else { &a.brokers[..] } {
        let broker = Broker::start(kind)?;
        let bootstrap = broker.bootstrap();
        let p = producer(&bootstrap, 5)?;
        if !a.latency_only {
            broker.create_topic("input", a.partitions)?;
            let input = read_lines(&a.stream, a.kafka_events)?;
            let t = Instant::now();
            produce_all(&p, "input", &input)?;
            broker.check_retained("input", a.partitions)?;
            eprintln!(
                "e2e: produced {} events to {} partitions of {} in {:.1} s",
                input.len(),
                a.partitions,
                broker.name(),
                t.elapsed().as_secs_f64()
            );
            let n = input.len() as u64;
            let mut topics = vec![("input", format!("{}, 1 ev/msg", broker.name()))];
            if a.kafka_batch > 1 {
                broker.create_topic("input-batched", a.partitions)?;
                let t = Instant::now();
                produce_batched(&p, "input-batched", a.partitions, &input, a.kafka_batch)?;
                broker.check_retained("input-batched", a.partitions)?;
                eprintln!(
                    "e2e: produced {} events as messages of {} to {} partitions in {:.1} s",
                    input.len(),
                    a.kafka_batch,
                    a.partitions,
                    t.elapsed().as_secs_f64()
                );
                topics.push((
                    "input-batched",
                    format!("{}, {} ev/msg", broker.name(), a.kafka_batch),
                ));
            }
            drop(input);
            let mut run_id = 0;
            for (topic, scenario) in &topics {
                for &w in throughput_workers {
                    for _ in 0..a.repeat {
                        run_id += 1;
                        let mut args = vec!["child-kafka".to_owned()];
                        args.extend(daemon_args(&bootstrap, topic, &format!("tput-{run_id}"), w));
                        args.extend([
                            "--events".into(),
                            n.to_string(),
                            "--scenario".into(),
                            scenario.clone(),
                        ]);
                        let broker_cpu = broker.cpu_seconds();
                        let mut row = child_row(&args)?;
                        row.broker_cpu_s = Some(broker.cpu_seconds() - broker_cpu);
                        emit(row, &mut rows)?;
                    }
                }
            }
        }
        if a.latency_rate > 0 {
            let row = latency(a, &broker, series)?;
            emit(row, &mut rows)?;
        }
    }
    print_table(&rows);
    Ok(())
}

/// A child daemon driven over its stdin/stdout.
struct Served {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Served {
    fn ask(&mut self, cmd: &str) -> Res<String> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let mut reply = String::new();
        self.stdout.read_line(&mut reply)?;
        Ok(reply.trim().to_owned())
    }

    fn stats(&mut self) -> Res<serde_json::Value> {
        Ok(serde_json::from_str(&self.ask("stats")?)?)
    }
}

fn latency(a: &RunArgs, broker: &Broker, series: usize) -> Res<Row> {
    let bootstrap = broker.bootstrap();
    // The mock needs its workarounds (see the arguments); tansu runs with
    // the daemon's defaults unless told otherwise.
    let (fetch_wait_ms, linger_ms) = match broker {
        Broker::Mock(_) => (Some(a.latency_fetch_wait_ms), a.latency_linger_ms),
        Broker::Tansu(_) => (a.tansu_fetch_wait_ms, a.tansu_latency_linger_ms),
    };
    let p = producer(&bootstrap, linger_ms)?;
    // The warm-up goes to a topic of its own with as many partitions as the
    // throughput runs (it is large); the paced events to one with few.
    broker.create_topic("lat-warm", a.partitions)?;
    broker.create_topic("lat-input", a.latency_partitions)?;
    broker.create_topic("alerts", 1)?;
    let warm = series * a.latency_warmup_per_series;
    let paced = (a.latency_rate * a.latency_secs) as usize;
    let lines = read_lines(&a.stream, warm + paced)?;
    if lines.len() < warm + paced {
        return Err(format!(
            "the latency run needs {} events ({warm} warm-up + {paced} paced); the stream has {}",
            warm + paced,
            lines.len()
        )
        .into());
    }

    let mut args = vec!["child-serve".to_owned()];
    args.extend(daemon_args(
        &bootstrap,
        "lat-warm,lat-input",
        "latency",
        a.latency_workers,
    ));
    args.extend(["--alerts-topic".into(), "alerts".into()]);
    if let Some(l) = a.alert_linger_ms {
        args.extend(["--alert-linger-ms".into(), l.to_string()]);
    }
    if let Some(w) = fetch_wait_ms {
        args.extend(["--fetch-wait-max-ms".into(), w.to_string()]);
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut served = Served {
        child,
        stdin,
        stdout,
    };
    let mut ready = String::new();
    served.stdout.read_line(&mut ready)?;

    // The alert reader runs from the start; alerts of the warm-up are not in
    // `index` and are ignored.
    let index: HashMap<(u64, i64), usize> = lines[warm..]
        .iter()
        .enumerate()
        .map(|(i, l)| ((l.fingerprint, l.ts_ms), i))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (bootstrap, stop) = (bootstrap.clone(), Arc::clone(&stop));
        // The mock answers a fetch that finds nothing only after the whole
        // wait; tansu (like Kafka) as soon as data arrives, and each fetch
        // costs it more the more batches the alert topic holds.
        let reader_wait_ms = matches!(broker, Broker::Mock(_)).then_some(1);
        std::thread::spawn(move || read_alerts(&bootstrap, reader_wait_ms, &stop))
    };

    let t = Instant::now();
    // Few, large batches: tansu's fetch costs more the more batches a
    // partition holds (see `broker-cost`), and every fetch of the paced
    // part also asks for the warm-up partitions.
    let bulk = producer(&bootstrap, 100)?;
    produce_all(&bulk, "lat-warm", &lines[..warm])?;
    broker.check_retained("lat-warm", a.partitions)?;
    if served.ask(&format!("wait {warm}"))? != "done" {
        return Err("the daemon did not process the warm-up".into());
    }
    eprintln!(
        "e2e: latency warm-up of {warm} events took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let before = served.stats()?;
    let broker_cpu = broker.cpu_seconds();

    // Paced: event i is produced at start + i / rate, in 1 ms slots.
    let mut sent_at = Vec::with_capacity(paced);
    let start = Instant::now();
    for (i, l) in lines[warm..].iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / a.latency_rate as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        sent_at.push(Instant::now());
        send(&p, "lat-input", l)?;
    }
    let produced_s = start.elapsed().as_secs_f64();
    if served.ask(&format!("wait {}", warm + paced))? != "done" {
        return Err("the daemon did not process the paced events".into());
    }
    let wall_s = start.elapsed().as_secs_f64();
    let after = served.stats()?;
    let broker_cpu_s = broker.cpu_seconds() - broker_cpu;
    // Alerts still in flight: give the sink a moment.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let alerts = reader.join().map_err(|_| "alert reader panicked")??;
    drop(served.stdin);
    served.child.wait()?;

    let mut lat: Vec<f64> = alerts
        .iter()
        .filter_map(|(fp, ts, at)| {
            let i = *index.get(&(*fp, *ts))?;
            Some(at.saturating_duration_since(sent_at[i]).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    let hist = |v: &serde_json::Value| -> Vec<(f64, u64)> {
        serde_json::from_value(v["histogram"].clone()).unwrap_or_default()
    };
    let (h0, h1) = (hist(&before), hist(&after));
    let diff: Vec<(f64, u64)> = h1
        .iter()
        .zip(h0.iter().map(|x| x.1).chain(std::iter::repeat(0)))
        .map(|(&(le, c1), c0)| (le, c1.saturating_sub(c0)))
        .collect();
    let cpu_s =
        after["cpu_s"].as_f64().unwrap_or(f64::NAN) - before["cpu_s"].as_f64().unwrap_or(f64::NAN);
    let n = paced as u64;
    Ok(Row {
        latency: Some(Latency {
            rate: a.latency_rate,
            produced_per_s: n as f64 / produced_s,
            alerts: lat.len(),
            alert_p50_ms: q(0.5),
            alert_p99_ms: q(0.99),
            alert_max_ms: q(1.0),
            processing_p50_ms: bucket_quantile(&diff, 0.5) * 1e3,
            processing_p99_ms: bucket_quantile(&diff, 0.99) * 1e3,
            alert_linger_ms: a.alert_linger_ms,
            fetch_wait_max_ms: fetch_wait_ms,
            producer_linger_ms: linger_ms,
            partitions: a.latency_partitions,
        }),
        broker_cpu_s: Some(broker_cpu_s),
        ..Row::measured(
            &format!("latency, {}", broker.name()),
            a.latency_workers,
            n,
            (wall_s, cpu_s),
            after["peak_rss_bytes"].as_u64().unwrap_or(0),
        )
    })
}

/// The upper edge of the bucket that holds quantile `q` of a cumulative
/// histogram.
fn bucket_quantile(h: &[(f64, u64)], q: f64) -> f64 {
    let total = h.last().map_or(0, |x| x.1);
    if total == 0 {
        return f64::NAN;
    }
    let want = (total as f64 * q).ceil() as u64;
    h.iter().find(|x| x.1 >= want).map_or(f64::NAN, |x| x.0)
}

/// Reads the alert topic until `stop`, with `fetch.wait.max.ms` at
/// `fetch_wait_ms` (librdkafka's default when absent); returns
/// (fingerprint, event time, arrival) per alert.
fn read_alerts(
    bootstrap: &str,
    fetch_wait_ms: Option<u32>,
    stop: &AtomicBool,
) -> Res<Vec<(u64, i64, Instant)>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-alert-reader")
        .set("enable.auto.commit", "false");
    if let Some(w) = fetch_wait_ms {
        config.set("fetch.wait.max.ms", w.to_string());
    }
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("alerts", 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let Some(msg) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let at = Instant::now();
        let msg = msg?;
        let Some(payload) = msg.payload() else {
            continue;
        };
        let alert: Alert = serde_json::from_slice(payload)?;
        let fp = u64::from_str_radix(&alert.fingerprint, 16)?;
        let ts = chrono::DateTime::parse_from_rfc3339(&alert.ts)?.timestamp_millis();
        out.push((fp, ts, at));
    }
    Ok(out)
}

/// Writes `batches` one-message produce requests (each its own batch) to a
/// one-partition topic of a fresh tansu, and at `steps` points along the
/// way prints tansu's CPU time per produce request and per fetch of the
/// partition's last message.
fn broker_cost(batches: usize, steps: usize, fetches: usize) -> Res<()> {
    let broker = tansu_broker::Tansu::start();
    broker.create_topic("cost", 1, &[]);
    let pid = broker.pid().to_string();
    let cpu = || cpu_seconds_of(&pid);
    let p: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("linger.ms", "0")
        .create()?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "e2e-broker-cost")
        .set("enable.auto.commit", "false")
        // A fetch past the last message waits this long (the fetch after
        // the timed one, before the next assign).
        .set("fetch.wait.max.ms", "10")
        .create()?;
    println!("| batches in the partition | tansu CPU per produce request | tansu CPU per fetch |");
    println!("|---:|---:|---:|");
    let mut stored = 0;
    for step in 1..=steps.max(1) {
        let target = batches * step / steps.max(1);
        let c0 = cpu();
        for i in stored..target {
            let payload = format!("message {i}");
            p.send(
                BaseRecord::<(), str>::to("cost")
                    .partition(0)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)?;
            // One request at a time (rdkafka's flush sleeps in 100 ms steps).
            while p.in_flight_count() > 0 {
                p.poll(Duration::from_millis(1));
            }
        }
        let produce_ms = (cpu() - c0) * 1e3 / (target - stored).max(1) as f64;
        stored = target;
        let c0 = cpu();
        for _ in 0..fetches {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("cost", 0, Offset::Offset(stored as i64 - 1))?;
            consumer.assign(&tpl)?;
            match consumer.poll(Duration::from_secs(60)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Err("no message within 60 s".into()),
            }
        }
        let fetch_ms = (cpu() - c0) * 1e3 / fetches.max(1) as f64;
        // No fetch may run while the next requests are timed.
        consumer.unassign()?;
        println!(
            "| {} | {produce_ms:.2} ms | {fetch_ms:.2} ms |",
            thousands(stored as f64)
        );
    }
    Ok(())
}

// -------------------------------------------------------------------- tables

fn mb(b: u64) -> String {
    format!("{:.0}", b as f64 / 1e6)
}

/// Formats `values` as `lo–hi` (or one value) with `f`.
fn range(values: &[f64], f: impl Fn(f64) -> String) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.len() < 2 || f(lo) == f(hi) {
        f(hi)
    } else {
        format!("{}–{}", f(lo), f(hi))
    }
}

/// Rows grouped by (stream, scenario, workers), in first-seen order.
fn groups(rows: &[Row]) -> Vec<Vec<&Row>> {
    let mut out: Vec<Vec<&Row>> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|g| {
            g[0].stream == r.stream && g[0].scenario == r.scenario && g[0].workers == r.workers
        }) {
            Some(g) => g.push(r),
            None => out.push(vec![r]),
        }
    }
    out
}

fn print_table(rows: &[Row]) {
    println!(
        "| stream | path | workers | events | events/s | events/CPU-s | peak RSS MB | latency |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---|");
    for g in groups(rows) {
        let r = g[0];
        let col = |f: fn(&Row) -> f64| g.iter().map(|r| f(r)).collect::<Vec<_>>();
        let lat = r.latency.as_ref().map_or(String::new(), latency_cell);
        println!(
            "| {} ({} series) | {} | {} | {} | {} | {} | {} | {} |",
            r.stream,
            thousands(r.series as f64),
            r.scenario,
            r.workers,
            thousands(r.events as f64),
            range(&col(|r| r.events_per_s), thousands),
            range(&col(|r| r.events_per_cpu_s), thousands),
            range(&col(|r| r.peak_rss_bytes as f64), |b| mb(b as u64)),
            lat
        );
    }
}

fn latency_cell(l: &Latency) -> String {
    format!(
        "at {} ev/s (achieved {}): event→alert p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} alerts; received→processed p50 ≤ {:.2} ms, p99 ≤ {:.2} ms ({} partitions, producer linger.ms {}, daemon fetch.wait.max.ms {}, alert linger.ms {})",
        thousands(l.rate as f64),
        thousands(l.produced_per_s),
        l.alert_p50_ms,
        l.alert_p99_ms,
        l.alert_max_ms,
        l.alerts,
        l.processing_p50_ms,
        l.processing_p99_ms,
        l.partitions,
        l.producer_linger_ms,
        l.fetch_wait_max_ms.map_or_else(
            || "500 (librdkafka's default)".to_owned(),
            |v| v.to_string()
        ),
        l.alert_linger_ms
            .map_or_else(|| "0 (anomalyd's default)".to_owned(), |v| v.to_string())
    )
}

/// A line of run_peers.sh.
#[derive(Deserialize)]
struct PeerRow {
    peer: String,
    events: u64,
    series: usize,
    events_per_s: f64,
    events_per_cpu_s: f64,
    peak_rss_bytes: u64,
}

fn table(ours: &[PathBuf], peers: &[PathBuf]) -> Res<()> {
    let mut rows = Vec::new();
    for p in ours {
        for line in std::fs::read_to_string(p)?
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            rows.push(serde_json::from_str::<Row>(line)?);
        }
    }
    // Peer files are named peers-<stream>.jsonl.
    let mut peer_rows: Vec<(String, PeerRow)> = Vec::new();
    for p in peers {
        let stream = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("peers-"))
            .unwrap_or("?")
            .to_owned();
        for line in std::fs::read_to_string(p)?
            .lines()
            .filter(|l| l.starts_with('{'))
        {
            peer_rows.push((stream.clone(), serde_json::from_str(line)?));
        }
    }
    let mut peer_names: Vec<String> = Vec::new();
    for (_, p) in &peer_rows {
        if !peer_names.contains(&p.peer) {
            peer_names.push(p.peer.clone());
        }
    }
    print!("| stream | system | path | workers | events | events/s | events/CPU-s | peak RSS MB |");
    for n in &peer_names {
        print!(" ×{n} (per CPU-s) |");
    }
    println!();
    print!("|---|---|---|---:|---:|---:|---:|---:|");
    for _ in &peer_names {
        print!("---:|");
    }
    println!();
    let mut streams: Vec<String> = Vec::new();
    for r in &rows {
        if !streams.contains(&r.stream) {
            streams.push(r.stream.clone());
        }
    }
    for s in &streams {
        let peer_eff = |name: &str| {
            peer_rows
                .iter()
                .find(|(st, p)| st == s && p.peer == name)
                .map(|(_, p)| p.events_per_cpu_s)
        };
        for g in groups(&rows).into_iter().filter(|g| &g[0].stream == s) {
            let r = g[0];
            if r.latency.is_some() {
                continue;
            }
            let col = |f: fn(&Row) -> f64| g.iter().map(|r| f(r)).collect::<Vec<_>>();
            let eff = col(|r| r.events_per_cpu_s);
            print!(
                "| {} ({} series) | anomalyd | {} | {} | {} | {} | {} | {} |",
                s,
                thousands(r.series as f64),
                r.scenario,
                r.workers,
                thousands(r.events as f64),
                range(&col(|r| r.events_per_s), thousands),
                range(&eff, thousands),
                range(&col(|r| r.peak_rss_bytes as f64), |b| mb(b as u64)),
            );
            for n in &peer_names {
                match peer_eff(n) {
                    Some(pe) => {
                        let ratios: Vec<f64> = eff.iter().map(|e| e / pe).collect();
                        print!(" {} |", range(&ratios, |x| format!("{x:.0}×")));
                    }
                    None => print!(" – |"),
                }
            }
            println!();
        }
        for (_, p) in peer_rows.iter().filter(|(st, _)| st == s) {
            print!(
                "| {} ({} series run) | {} | file | 1 | {} | {} | {} | {} |",
                s,
                thousands(p.series as f64),
                p.peer,
                thousands(p.events as f64),
                thousands(p.events_per_s),
                thousands(p.events_per_cpu_s),
                mb(p.peak_rss_bytes)
            );
            for _ in &peer_names {
                print!(" |");
            }
            println!();
        }
    }
    let lat: Vec<&Row> = rows.iter().filter(|r| r.latency.is_some()).collect();
    if !lat.is_empty() {
        println!();
        println!(
            "| stream | workers | latency (Kafka in, Kafka alert topic out) | events/CPU-s | peak RSS MB |"
        );
        println!("|---|---:|---|---:|---:|");
        for r in lat {
            println!(
                "| {} ({} series) | {} | {} | {} | {} |",
                r.stream,
                thousands(r.series as f64),
                r.workers,
                r.latency.as_ref().map_or(String::new(), latency_cell),
                thousands(r.events_per_cpu_s),
                mb(r.peak_rss_bytes)
            );
        }
    }
    Ok(())
}
