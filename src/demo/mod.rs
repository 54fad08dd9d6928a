//! `anomalyd demo`: the whole daemon on an embedded Kafka-protocol broker.
//!
//! Starts librdkafka's mock cluster in-process (a real Kafka wire protocol on
//! loopback, no external broker), creates the `metrics` and `alerts` topics,
//! streams a generated fleet ([`fleet`]) with injected anomalies into
//! `metrics`, and runs the daemon on it through the same code as `anomalyd
//! run` (only the broker addresses and the alert topic are set for you).
//! Alerts go to the `alerts` topic; the demo reads them back and prints
//! them. The bootstrap address is printed so `kcat` can attach.

pub mod fleet;

use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::alert::{Alert, AlertStatus};
use crate::config::load::Config;
use crate::source::kafka::OffsetReset;
use fleet::Fleet;

/// Topic the fleet is written to.
pub const METRICS_TOPIC: &str = "metrics";
/// Topic the alerts are written to.
pub const ALERTS_TOPIC: &str = "alerts";
/// Partitions of the metrics topic.
const PARTITIONS: i32 = 4;

/// Options of the demo (the daemon's own options come from `--config`).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Simulated seconds per real second (the fleet samples every 60 s of
    /// simulated time, so 60 means one sample per series per second).
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// Number of hosts (each reports 4 metrics).
    #[arg(long, default_value_t = 6)]
    pub hosts: usize,
    /// Hours of history streamed at full speed first, so models are warm
    /// when the live part starts.
    #[arg(long, default_value_t = 24.0)]
    pub history_hours: f64,
    /// Live samples between two injected anomalies.
    #[arg(long, default_value_t = 20)]
    pub anomaly_every: u64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Simulated seconds between samples.
const STEP_SECS: i64 = 60;

/// Points `config` at the embedded broker: input topic, alert topic,
/// earliest offsets, a short session timeout, and no log sink (the demo
/// prints alerts from the topic instead).
pub fn demo_config(mut config: Config, bootstrap: &str) -> Config {
    config.kafka.brokers = bootstrap.to_string();
    config.kafka.topics = vec![METRICS_TOPIC.to_string()];
    config.kafka.auto_offset_reset = OffsetReset::Earliest;
    config.kafka.session_timeout_ms = 6_000;
    config.sinks.kafka.enabled = true;
    config.sinks.kafka.brokers = bootstrap.to_string();
    config.sinks.kafka.topic = ALERTS_TOPIC.to_string();
    config.sinks.log.enabled = false;
    config
}

/// Runs the demo until `shutdown` or `--duration-secs`. Returns the number
/// of alerts printed.
pub async fn run(
    config: Config,
    args: DemoArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<u64> {
    // The mock cluster is not Send: it stays on this task for the whole run.
    let mock = MockCluster::new(1).context("cannot start the embedded Kafka broker")?;
    mock.create_topic(METRICS_TOPIC, PARTITIONS, 1)
        .context("cannot create the metrics topic")?;
    mock.create_topic(ALERTS_TOPIC, 1, 1)
        .context("cannot create the alerts topic")?;
    let bootstrap = mock.bootstrap_servers();
    let config = demo_config(config, &bootstrap);
    let metrics_url = format!("http://{}/metrics", config.metrics.listen_addr);
    println!("anomalyd demo");
    println!("  embedded Kafka broker: {bootstrap}");
    println!("  watch the alerts:      kcat -b {bootstrap} -t {ALERTS_TOPIC} -C -o beginning");
    println!("  watch the input:       kcat -b {bootstrap} -t {METRICS_TOPIC} -C -o end");
    println!("  metrics:               curl -s {metrics_url}");
    println!(
        "  fleet: {} hosts x 4 metrics, history {} h, then live at {}x",
        args.hosts, args.history_hours, args.speed
    );
    println!();

    let stop = CancellationToken::new();
    let producer = tokio::spawn(produce(bootstrap.clone(), args.clone(), stop.clone()));
    let printer = tokio::spawn(print_alerts(bootstrap.clone(), stop.clone()));
    let daemon = crate::app::start(config).await?;

    let deadline = async {
        match args.duration_secs {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = deadline => {}
    }
    daemon.shutdown();
    let summary = daemon.wait().await;
    stop.cancel();
    let produced = producer.await.context("the demo producer panicked")??;
    let printed = printer.await.context("the alert printer panicked")??;
    let summary = summary?;
    println!(
        "demo stopped: {produced} events produced, {} processed, {printed} alerts printed",
        summary.events
    );
    drop(mock);
    Ok(printed)
}

/// Streams the fleet into the metrics topic: history at full speed, then
/// live at `speed`.
async fn produce(
    bootstrap: String,
    args: DemoArgs,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .context("cannot create the demo producer")?;
    let history = (args.history_hours * 3600.0 / STEP_SECS as f64).round() as u64;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let start_ms = now_ms - history as i64 * STEP_SECS * 1000;
    let mut fleet = Fleet::new(
        args.hosts,
        STEP_SECS,
        start_ms,
        history + 5,
        args.anomaly_every.max(1),
        args.seed,
    );
    let live_start = Instant::now();
    let mut produced = 0u64;
    let mut line = Vec::new();
    for i in 0.. {
        if stop.is_cancelled() {
            break;
        }
        if i >= history {
            // Live: sample i is due at (i - history) * step / speed.
            let due = Duration::from_secs_f64(
                (i - history) as f64 * STEP_SECS as f64 / args.speed.max(0.001),
            );
            let wait = due.saturating_sub(live_start.elapsed());
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let mut pending = Vec::new();
        for e in fleet.sample(i) {
            line.clear();
            serde_json::to_writer(
                &mut line,
                &serde_json::json!({
                    "series": e.series.name(),
                    "labels": e.series.labels().iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "ts": e.ts_ms,
                    "value": e.value,
                }),
            )?;
            // Keyed by series: a series stays in one partition, which the
            // per-partition state hand-over relies on.
            let key = e.series.to_string();
            let record = FutureRecord::to(METRICS_TOPIC).key(&key).payload(&line);
            pending.push(producer.send_result(record).map_err(|(e, _)| e)?);
        }
        for d in pending {
            if let Ok(Err((e, _))) = d.await {
                tracing::warn!(error = %e, "Demo event not delivered.");
            } else {
                produced += 1;
            }
        }
        if i == history {
            println!(
                "history streamed ({produced} events); live from now on, anomalies every {} samples",
                args.anomaly_every
            );
        }
    }
    Ok(produced)
}

/// Reads the alerts topic and prints each alert on one line.
async fn print_alerts(bootstrap: String, stop: CancellationToken) -> anyhow::Result<u64> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "anomalyd-demo-printer")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .context("cannot create the alert printer")?;
    consumer.subscribe(&[ALERTS_TOPIC])?;
    let mut printed = 0u64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            msg = consumer.recv() => {
                let Ok(msg) = msg else { continue };
                let Some(payload) = msg.payload() else { continue };
                match serde_json::from_slice::<Alert>(payload) {
                    Ok(a) => {
                        println!("{}", describe(&a));
                        printed += 1;
                    }
                    Err(e) => tracing::warn!(error = %e, "Unreadable alert on the alerts topic."),
                }
            }
        }
    }
    Ok(printed)
}

/// One readable line per alert.
pub fn describe(a: &Alert) -> String {
    match a.status {
        AlertStatus::Firing => format!(
            "FIRING   [{}] {}  value={:.4} expected={:.4} band=[{:.4}, {:.4}] score={:.3}  at {}",
            a.severity.as_str(),
            a.series,
            a.value,
            a.expected,
            a.lower,
            a.upper,
            a.score,
            a.ts
        ),
        AlertStatus::Resolved => format!(
            "RESOLVED [{}] {}  value={:.4} expected={:.4}  started {} ended {}",
            a.severity.as_str(),
            a.series,
            a.value,
            a.expected,
            a.started_at,
            a.ended_at.as_deref().unwrap_or("?")
        ),
    }
}
