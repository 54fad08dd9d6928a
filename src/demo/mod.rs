//! `anomalyd demo`: the whole daemon on an embedded Kafka-protocol broker.
//!
//! Starts librdkafka's mock cluster in-process (a real Kafka wire protocol on
//! loopback, no external broker), creates the `metrics`, `alerts` and
//! `incidents` topics, streams a generated fleet ([`fleet`]) with injected
//! anomalies into `metrics`, and runs the daemon on it through the same
//! code as `anomalyd run` (only the broker addresses and the alert topics
//! are set for you). Alerts go to the `alerts` topic and incident
//! notifications to `incidents`; the demo reads both back and prints them,
//! each alert with its reason and since when, numbers in their unit. It
//! prints the live page's URL first ([`crate::ui`]), and the bootstrap
//! address so `kcat` can attach.

pub mod fleet;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::alert::incident::{Incident, IncidentStatus};
use crate::alert::{AlertStatus, SeriesAlert};
use crate::app::config::Config;
use crate::source::kafka::OffsetReset;
use fleet::Fleet;

/// Topic the fleet is written to.
pub const METRICS_TOPIC: &str = "metrics";
/// Topic the alerts are written to.
pub const ALERTS_TOPIC: &str = "alerts";
/// Topic the incident notifications are written to.
pub const INCIDENTS_TOPIC: &str = "incidents";
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
    /// when the live part starts (a series is trusted after a day of
    /// event time; two days give the level channel its season).
    #[arg(long, default_value_t = 48.0)]
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
    config.sinks.kafka.incident_topic = INCIDENTS_TOPIC.to_string();
    config.sinks.kafka.messages = crate::alert::sink::Messages::Both;
    config.sinks.log.enabled = false;
    config
}

/// What a demo run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemoSummary {
    /// Events produced into the metrics topic.
    pub produced: u64,
    /// Events the daemon processed.
    pub processed: u64,
    /// Firing alerts read back from the alerts topic.
    pub firing: u64,
    /// Resolved alerts read back from the alerts topic.
    pub resolved: u64,
    /// Firing alerts about the live part (printed).
    pub live_firing: u64,
    /// Of those, alerts on a series while an anomaly was injected into it.
    pub live_caught: u64,
    /// Incident notifications read back from the incidents topic.
    pub incident_notifications: u64,
    /// Of those, the ones that opened an incident (the pages).
    pub incidents_opened: u64,
}

/// Runs the demo until `shutdown` or `--duration-secs`.
pub async fn run(
    config: Config,
    args: DemoArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<DemoSummary> {
    // The mock cluster is not Send: it stays on this task for the whole run.
    let mock = MockCluster::new(1).context("cannot start the embedded Kafka broker")?;
    mock.create_topic(METRICS_TOPIC, PARTITIONS, 1)
        .context("cannot create the metrics topic")?;
    mock.create_topic(ALERTS_TOPIC, 1, 1)
        .context("cannot create the alerts topic")?;
    mock.create_topic(INCIDENTS_TOPIC, 1, 1)
        .context("cannot create the incidents topic")?;
    let bootstrap = mock.bootstrap_servers();
    let config = demo_config(config, &bootstrap);
    let daemon = crate::app::start(config).await?;
    let metrics_url = format!("http://{}/metrics", daemon.metrics_addr);
    println!("anomalyd demo");
    match &daemon.ui {
        Some(_) => println!("  live page:             http://{}/", daemon.metrics_addr),
        None => println!("  live page:             off (ui.enabled = false)"),
    }
    println!("  embedded Kafka broker: {bootstrap}");
    println!("  watch the alerts:      kcat -b {bootstrap} -t {ALERTS_TOPIC} -C -o beginning");
    println!("  watch the incidents:   kcat -b {bootstrap} -t {INCIDENTS_TOPIC} -C -o beginning");
    println!("  watch the input:       kcat -b {bootstrap} -t {METRICS_TOPIC} -C -o end");
    println!("  metrics:               curl -s {metrics_url}");
    println!(
        "  fleet: {} hosts x 4 metrics, history {} h, then live at {}x",
        args.hosts, args.history_hours, args.speed
    );
    println!();

    let history = (args.history_hours * 3600.0 / STEP_SECS as f64).round() as u64;
    // The history ends now; the live part continues from there.
    let live_from_ms = chrono::Utc::now().timestamp_millis();
    let fleet = Fleet::new(
        args.hosts,
        STEP_SECS,
        live_from_ms - history as i64 * STEP_SECS * 1000,
        history + 5,
        args.anomaly_every.max(1),
        args.seed,
    );
    // Where anomalies were injected, to mark the alerts that caught one.
    let injected: Vec<Injected> = fleet
        .injections
        .iter()
        .map(|inj| Injected {
            fingerprint: format!("{:016x}", fleet.series[inj.series].key.fingerprint()),
            from_ms: fleet.time_ms(inj.start),
            // A detection up to a few samples after the end still counts.
            to_ms: fleet.time_ms(inj.start + inj.len + 3),
            kind: inj.kind,
        })
        .collect();
    let stop = CancellationToken::new();
    let printed = Arc::new(AtomicU64::new(0));
    let producer = tokio::spawn(produce(
        bootstrap.clone(),
        fleet,
        history,
        args.speed,
        stop.clone(),
    ));
    let printer_stop = CancellationToken::new();
    let printer = tokio::spawn(print_alerts(
        bootstrap.clone(),
        live_from_ms,
        injected,
        Arc::clone(&printed),
        printer_stop.clone(),
    ));

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
    // Stop producing, let the daemon finish what was produced, stop it
    // (its sinks flush), then let the printer catch up with the alerts topic.
    stop.cancel();
    let produced = producer.await.context("the demo producer panicked")??;
    let metrics = Arc::clone(&daemon.metrics);
    let drained = Instant::now();
    while metrics.events_processed_total() < produced && drained.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.shutdown();
    let summary = daemon.wait().await;
    let mut last = u64::MAX;
    let settle = Instant::now();
    while printed.load(Ordering::SeqCst) != last && settle.elapsed() < Duration::from_secs(10) {
        last = printed.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    printer_stop.cancel();
    let counts = printer.await.context("the alert printer panicked")??;
    let summary = summary?;
    let (firing, resolved) = (counts.firing, counts.resolved);
    println!(
        "demo stopped: {produced} events produced, {} processed, {firing} firing and {resolved} resolved alerts, \
         {} incidents opened ({} incident notifications)",
        summary.events, counts.incidents_opened, counts.incident_notifications
    );
    drop(mock);
    Ok(DemoSummary {
        produced,
        processed: summary.events,
        firing,
        resolved,
        live_firing: counts.live_firing,
        live_caught: counts.live_caught,
        incident_notifications: counts.incident_notifications,
        incidents_opened: counts.incidents_opened,
    })
}

/// Streams the fleet into the metrics topic: `history` samples at full
/// speed, then live at `speed` simulated seconds per second.
async fn produce(
    bootstrap: String,
    mut fleet: Fleet,
    history: u64,
    speed: f64,
    stop: CancellationToken,
) -> anyhow::Result<u64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .context("cannot create the demo producer")?;
    // Set when the live part starts, after the history went out.
    let mut live_start: Option<Instant> = None;
    let mut produced = 0u64;
    let mut pending = Vec::new();
    let mut line = Vec::new();
    for i in 0.. {
        if stop.is_cancelled() {
            break;
        }
        if i >= history {
            // Live: sample i is due at (i - history) * step / speed.
            let due =
                Duration::from_secs_f64((i - history) as f64 * STEP_SECS as f64 / speed.max(0.001));
            let started = *live_start.get_or_insert_with(Instant::now);
            let wait = due.saturating_sub(started.elapsed());
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
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
        // History goes out in large batches; live samples one by one.
        if i >= history || pending.len() >= 10_000 {
            for d in pending.drain(..) {
                if let Ok(Err((e, _))) = d.await {
                    tracing::warn!(error = %e, "Demo event not delivered.");
                } else {
                    produced += 1;
                }
            }
        }
        if i == history {
            println!("history streamed ({produced} events); live from now on");
        }
    }
    Ok(produced)
}

/// An injected anomaly, as the printer needs it.
struct Injected {
    fingerprint: String,
    from_ms: i64,
    to_ms: i64,
    kind: fleet::AnomalyKind,
}

/// What the printer saw.
#[derive(Debug, Default)]
struct PrintCounts {
    firing: u64,
    resolved: u64,
    live_firing: u64,
    live_caught: u64,
    incident_notifications: u64,
    incidents_opened: u64,
}

/// Reads the alerts and incidents topics and prints each alert and
/// incident notification about the live part (event time from
/// `live_from_ms` on) on one line, marking the alerts on an injected
/// anomaly. `printed` counts messages read, for the caller to see it
/// settle.
async fn print_alerts(
    bootstrap: String,
    live_from_ms: i64,
    injected: Vec<Injected>,
    printed: Arc<AtomicU64>,
    stop: CancellationToken,
) -> anyhow::Result<PrintCounts> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "anomalyd-demo-printer")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .context("cannot create the alert printer")?;
    consumer.subscribe(&[ALERTS_TOPIC, INCIDENTS_TOPIC])?;
    let mut c = PrintCounts::default();
    let mut history = 0u64;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            msg = consumer.recv() => msg,
        };
        let Ok(msg) = msg else { continue };
        let Some(payload) = msg.payload() else {
            continue;
        };
        printed.fetch_add(1, Ordering::SeqCst);
        if msg.topic() == INCIDENTS_TOPIC {
            let i = match serde_json::from_slice::<Incident>(payload) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(error = %e, "Unreadable incident on the incidents topic.");
                    continue;
                }
            };
            c.incident_notifications += 1;
            if i.opens() && i.status != IncidentStatus::Merged {
                c.incidents_opened += 1;
            }
            let ts = chrono::DateTime::parse_from_rfc3339(&i.updated_at)
                .map_or(0, |t| t.timestamp_millis());
            if ts >= live_from_ms {
                println!("{}", describe_incident(&i));
            }
            continue;
        }
        let a = match serde_json::from_slice::<SeriesAlert>(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Unreadable alert on the alerts topic.");
                continue;
            }
        };
        match a.status {
            AlertStatus::Firing => c.firing += 1,
            AlertStatus::Resolved => c.resolved += 1,
        }
        let ts = chrono::DateTime::parse_from_rfc3339(&a.ts).map_or(0, |t| t.timestamp_millis());
        if ts < live_from_ms {
            history += 1;
            continue;
        }
        let caught = injected
            .iter()
            .find(|i| i.fingerprint == a.fingerprint && (i.from_ms..=i.to_ms).contains(&ts));
        if a.status == AlertStatus::Firing {
            c.live_firing += 1;
            c.live_caught += u64::from(caught.is_some());
        }
        match caught {
            Some(i) if a.status == AlertStatus::Firing => {
                println!("{}   <- injected {}", describe(&a), i.kind.as_str());
            }
            _ => println!("{}", describe(&a)),
        }
    }
    if history > 0 {
        println!(
            "({history} alert messages about the history were not printed; kcat shows them all)"
        );
    }
    Ok(c)
}

/// One readable line per alert: what, why (reason), since when, its
/// numbers in the series' unit, its incident.
pub fn describe(a: &SeriesAlert) -> String {
    let u = a.unit();
    let incident = a.incident.as_deref().unwrap_or("-");
    match a.status {
        AlertStatus::Firing => format!(
            "FIRING   [{}] {}  reason={} since={}  value={} expected={} band=[{}, {}] score={:.3}  incident={}",
            a.severity.as_str(),
            a.display_series(),
            a.reason.as_str(),
            a.started_at,
            u.format(a.value),
            u.format(a.expected),
            u.format(a.lower),
            u.format(a.upper),
            a.score,
            incident
        ),
        AlertStatus::Resolved => {
            let lasted = match (
                chrono::DateTime::parse_from_rfc3339(&a.started_at),
                a.ended_at
                    .as_deref()
                    .map(chrono::DateTime::parse_from_rfc3339),
            ) {
                (Ok(from), Some(Ok(to))) => {
                    crate::alert::incident::duration_text((to - from).num_milliseconds())
                }
                _ => "?".to_owned(),
            };
            format!(
                "RESOLVED [{}] {}  reason={} since={}  {} after {}, peak score {:.3}  value={} expected={}  incident={}",
                a.severity.as_str(),
                a.display_series(),
                a.reason.as_str(),
                a.started_at,
                a.resolution.map_or("resolved", |r| r.as_str()),
                lasted,
                a.peak_score,
                u.format(a.value),
                u.format(a.expected),
                incident
            )
        }
    }
}

/// One readable line per incident notification.
pub fn describe_incident(i: &Incident) -> String {
    let what = match i.status {
        IncidentStatus::Firing if i.opens() => "opened",
        IncidentStatus::Firing => "updated",
        IncidentStatus::Resolved => "resolved",
        IncidentStatus::Merged => "merged",
    };
    format!(
        "INCIDENT {what:<8} [{}] {}  since={}  id={}",
        i.severity.as_str(),
        i.summary,
        i.started_at,
        i.id
    )
}
