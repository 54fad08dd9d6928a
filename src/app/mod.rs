//! Wiring and shutdown order of the daemon.
//!
//! [`start`] builds everything from a [`Config`]: metrics, the live page's
//! history and the HTTP endpoint, the sinks and the notifier in front of
//! them (incidents, [`crate::alert::notify`]), the history loader (with
//! `[history]`), the detector, the pipeline shards, the state store and
//! the sources (Kafka, the remote-write receiver, or both). [`Running::wait`] returns when the sources stop,
//! after the drain:
//!
//! 1. `/readyz` turns 503, the sources stop receiving, and histories still
//!    loading are given up (their series' held events are processed);
//! 2. each source runs its final checkpoint (snapshot, synchronous commit);
//! 3. the pipeline shards finish their queues and stop;
//! 4. the notifier sends what it holds, and the sinks deliver what is
//!    queued, within the grace period;
//! 5. the HTTP endpoint stops.
//!
//! The grace period bounds steps 2–4; past it the drain is abandoned and
//! the run ends with an error (exit code 1). `anyhow` is used here and in
//! `main.rs` only.

pub mod budget;
pub mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::SeriesAlert;
use crate::alert::lifecycle::AlertRule;
use crate::alert::notify::{IncidentBoard, Notifier};
use crate::alert::sink::Sinks;
use crate::app::config::Config;
use crate::counter::{Classifier, StreamRules};
use crate::decode::Decoder;
use crate::detector::Detector;
use crate::history::prometheus::PrometheusClient;
use crate::history::{HistoryMetrics, Loader};
use crate::pipeline::{AlertHandoff, Core, Pipeline, ShardOptions};
use crate::source::{FeedContext, SourceSummary};
use crate::state::{StateStore, StoreKind, changelog::ChangelogStore, dir::DirStore};
use crate::telemetry::http::{self, HttpState, Readiness};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::web::{Front, Server, ServerName, WebMetrics};
use crate::ui::UiState;
use crate::ui::history::History;

/// Hands alerts from the shards to the notifier, which groups them into
/// incidents and queues them for the sinks (never blocks).
impl AlertHandoff for Notifier {
    fn hand_off(&self, alert: SeriesAlert) {
        self.take(alert);
    }
}

/// The notifier over `sinks` and its flushing task; stop it with
/// [`stop_notifier`].
fn start_notifier(
    config: &Config,
    sinks: Sinks,
    ui: Option<&Arc<UiState>>,
    registry: &Registry,
) -> anyhow::Result<(Arc<Notifier>, CancellationToken, JoinHandle<()>)> {
    let notifier = Arc::new(
        Notifier::new(
            &config.alert.incidents,
            sinks,
            ui.map(|u| Arc::clone(&u.incidents)),
            registry,
        )
        .context("cannot register the incident metrics")?,
    );
    let stop = CancellationToken::new();
    let task = {
        let (n, stop) = (Arc::clone(&notifier), stop.clone());
        tokio::spawn(async move { n.run(stop).await })
    };
    Ok((notifier, stop, task))
}

/// Stops the notifier's task (it flushes once more), then drains the
/// sinks until `deadline`. Call once nothing hands alerts over any more.
async fn stop_notifier(
    notifier: Arc<Notifier>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    deadline: tokio::time::Instant,
) {
    stop.cancel();
    let _ = task.await;
    if let Ok(n) = Arc::try_unwrap(notifier) {
        n.into_sinks().shutdown(deadline).await;
    }
}

/// A started daemon.
pub struct Running {
    /// Where `/metrics`, `/healthz`, `/readyz` and the live page are
    /// served.
    pub metrics_addr: SocketAddr,
    /// Whether that port speaks TLS (`metrics.web_config_file`).
    pub metrics_tls: bool,
    /// The live page's state, when `ui.enabled`.
    pub ui: Option<Arc<UiState>>,
    /// The daemon's metrics (tests read counters from it).
    pub metrics: Arc<Metrics>,
    /// Where each listening source serves, by source name (e.g.
    /// `remote_write`).
    pub source_addrs: Vec<(&'static str, SocketAddr)>,
    /// Cancelled to start the graceful drain.
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<SourceSummary>>,
}

impl Running {
    /// Where source `name` listens, if it is running and listens.
    pub fn source_addr(&self, name: &str) -> Option<SocketAddr> {
        self.source_addrs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, a)| *a)
    }

    /// Starts the graceful drain (idempotent).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// A token that starts the drain when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the daemon has stopped.
    pub async fn wait(self) -> anyhow::Result<SourceSummary> {
        self.task.await.context("the daemon task panicked")?
    }
}

/// Builds every component and starts consuming. Must run on the
/// multi-threaded tokio runtime (rebalance callbacks block in place).
pub async fn start(mut config: Config) -> anyhow::Result<Running> {
    config.fill_derived_defaults();
    let registry = Registry::new();
    let metrics = Arc::new(
        Metrics::new(
            registry.clone(),
            &config.metrics,
            &crate::decode::FAILURE_REASONS,
            &crate::pipeline::worker::skip_reasons(),
        )
        .context("cannot register metrics")?,
    );
    let history_metrics =
        Arc::new(HistoryMetrics::new(&metrics).context("cannot register the history metrics")?);

    let ui = ui_state(&config, &registry)?;
    let web = WebMetrics::new(&registry).context("cannot register the HTTP metrics")?;
    let front = Front::load(config.metrics.web_config_file.as_deref())
        .context("metrics.web_config_file")?;
    let addr = config.metrics.listen_addr.clone();
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("metrics.listen_addr = {addr}: cannot listen"))?;
    let metrics_addr = listener.local_addr()?;
    let metrics_tls = front.is_tls();
    let readiness = Readiness::new();
    let http_stop = CancellationToken::new();
    let routes = http::router(HttpState {
        registry: registry.clone(),
        readiness: readiness.clone(),
    })
    .merge(crate::ui::router(ui.clone()));
    let server = Server::new(
        ServerName::Metrics,
        listener,
        front,
        config.metrics.limits(),
        Arc::clone(&web),
    )
    .open_paths(http::OPEN_PATHS);
    // Requests in progress at the very end get a moment; the port closes
    // after everything else has stopped.
    let http_task = tokio::spawn(server.serve(routes, http_stop.clone(), Duration::from_secs(2)));

    let env = |k: &str| std::env::var(k).ok();
    let sinks = Sinks::start(&config.sinks, "sinks", &metrics, &env)
        .context("cannot start the alert sinks")?;
    let (notifier, notifier_stop, notifier_task) =
        start_notifier(&config, sinks, ui.as_ref(), &registry)?;
    let loader = if config.history.enabled {
        let client =
            PrometheusClient::new(&config.history, &env, Some(Arc::clone(&history_metrics)))
                .context("cannot set up [history]")?;
        tracing::info!(
            prometheus = %config.history.prometheus_url,
            lookback_secs = config.history.lookback_secs,
            "New series learn their history from Prometheus first."
        );
        Some(Arc::new(Loader::new(
            &config.history,
            client,
            history_metrics,
        )))
    } else {
        None
    };
    let classifier = Arc::new(Classifier::default());
    let options = ShardOptions {
        max_event_age_ms: config.alert.max_event_age_ms(),
        classifier: Arc::clone(&classifier),
        history: loader.clone(),
    };
    let (pipeline, model_hash, model_name) = start_pipeline(
        &config,
        Arc::clone(&notifier) as Arc<dyn AlertHandoff>,
        &metrics,
        ui.as_ref().map(|u| Arc::clone(&u.history)),
        options,
    )?;
    let pipeline = Arc::new(pipeline);

    let interval = Duration::from_secs(config.state.snapshot_interval_secs);
    let state: Option<Arc<dyn StateStore>> = match config.state.store {
        StoreKind::None => None,
        StoreKind::Dir => Some(Arc::new(
            DirStore::new(&config.state.dir, model_hash, interval)
                .context("state.dir: cannot write to the state directory; it must be writable by the daemon's user")?,
        )),
        StoreKind::Changelog => Some(Arc::new(
            ChangelogStore::new(
                &config.kafka.consumer_config()?.0,
                &config.state.changelog_topic,
                model_hash,
                interval,
            )
            .context("state.changelog_topic: cannot open the changelog")?,
        )),
    };

    let grace = Duration::from_secs(config.pipeline.shutdown_grace_secs);
    let ctx = FeedContext {
        pipeline: Arc::clone(&pipeline),
        state,
        metrics: Arc::clone(&metrics),
        streams: Default::default(),
        classifier,
        readiness: readiness.clone(),
        web,
        shutdown_grace: grace,
        max_series: config.pipeline.max_series,
    };
    let sources = crate::source::start(&config.kafka, &config.decode, &config.sources, &ctx)
        .await
        .context("cannot start the sources")?;
    drop(ctx);
    let names: Vec<&str> = sources.iter().map(|s| s.name()).collect();
    let source_addrs = sources
        .iter()
        .filter_map(|s| Some((s.name(), s.listen_addr()?)))
        .collect();
    // The configuration's memory bound (budget), for sizing limits.
    let memory_bound_mib = budget::of(&config).map_or(0, |b| b.total() >> 20);
    tracing::info!(
        sources = ?names,
        shards = pipeline.shards(),
        model = model_name,
        metrics = %metrics_addr,
        memory_bound_mib,
        "anomalyd started."
    );
    readiness.set_ready();

    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    {
        // /readyz turns 503 as soon as the drain starts, and no checkpoint
        // of the drain waits for a history.
        let (token, readiness) = (token.clone(), readiness.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            readiness.set_draining();
            if let Some(l) = loader {
                l.cancel();
            }
        });
    }
    let task = tokio::spawn(async move {
        let drain = async {
            // Every source runs until the token; one that fails cancels it,
            // so the others drain too.
            let runs: Vec<_> = sources
                .into_iter()
                .map(|s| {
                    let token = token.clone();
                    tokio::spawn(async move {
                        let r = s.run(token.clone()).await;
                        if r.is_err() {
                            token.cancel();
                        }
                        r
                    })
                })
                .collect();
            let mut summary: anyhow::Result<SourceSummary> = Ok(SourceSummary::default());
            for run in runs {
                let result = match run.await {
                    Ok(r) => r.map_err(anyhow::Error::from),
                    Err(e) => Err(anyhow::anyhow!("a source task panicked: {e}")),
                };
                summary = match (summary, result) {
                    (Ok(mut a), Ok(b)) => {
                        a.merge(&b);
                        Ok(a)
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
            }
            // The sources and their feeds are gone: the shards are ours.
            if let Ok(p) = Arc::try_unwrap(pipeline) {
                p.close().await;
            }
            // The shards are gone: the notifier is ours.
            stop_notifier(
                notifier,
                notifier_stop,
                notifier_task,
                tokio::time::Instant::now() + grace,
            )
            .await;
            summary
        };
        // The drain starts when the token is cancelled; bound it by the
        // grace period from that moment.
        let result = tokio::select! {
            r = drain => r,
            _ = async { token.cancelled().await; tokio::time::sleep(grace).await } => {
                Err(anyhow::anyhow!("the drain did not finish within pipeline.shutdown_grace_secs = {}", grace.as_secs()))
            }
        };
        readiness.set_draining();
        token.cancel();
        http_stop.cancel();
        let _ = http_task.await;
        result
    });
    Ok(Running {
        metrics_addr,
        metrics_tls,
        ui,
        metrics,
        source_addrs,
        shutdown,
        task,
    })
}

/// The live page's state with its (empty) history, when `ui.enabled`; its
/// metrics go to `registry`.
fn ui_state(config: &Config, registry: &Registry) -> anyhow::Result<Option<Arc<UiState>>> {
    if !config.ui.enabled {
        return Ok(None);
    }
    let shards = config.pipeline.worker_count();
    let history = History::new(config.ui.limits(), shards, registry)
        .context("cannot register the live page's metrics")?;
    Ok(Some(Arc::new(UiState {
        history: Arc::new(history),
        incidents: Arc::new(IncidentBoard::new(Duration::from_secs(
            config.ui.history_minutes.saturating_mul(60),
        ))),
        config: config.ui.clone(),
        threshold: config.alert.threshold,
    })))
}

/// The detection core and its shards (writing `history` when the page is
/// on); returns the model hash and name too.
fn start_pipeline(
    config: &Config,
    alerts: Arc<dyn AlertHandoff>,
    metrics: &Arc<Metrics>,
    history: Option<Arc<History>>,
    options: ShardOptions,
) -> anyhow::Result<(Pipeline, u64, &'static str)> {
    let rule =
        AlertRule::new(&config.alert, "alert").map_err(crate::app::config::ConfigError::Invalid)?;
    let detector = Detector::with_targets(&config.detector, &rule.targets())?;
    let (model_hash, model_name) = (detector.model_hash(), detector.model_name());
    let core = Arc::new(Core {
        detector,
        rule,
        alerts,
        metrics: Arc::clone(metrics),
        options,
    });
    let pipeline = Pipeline::start_with_tap(&config.pipeline, core, history)
        .context("cannot start the processing shards")?;
    Ok((pipeline, model_hash, model_name))
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// Lines read.
    pub lines: u64,
    /// Events processed.
    pub events: u64,
    /// Wall-clock seconds from the first line to the last event processed.
    pub seconds: f64,
}

/// Replays a file (or stdin for `-`) through the configured decoder,
/// detector, alert rule and sinks, without Kafka. With `ui.enabled` the
/// shards write the live page's history as `run` does (nothing serves it),
/// so a replay costs what the daemon's event path costs.
pub async fn replay(mut config: Config, input: &std::path::Path) -> anyhow::Result<ReplayReport> {
    config.fill_derived_defaults();
    let registry = Registry::new();
    let ui = ui_state(&config, &registry)?;
    let metrics = Arc::new(
        Metrics::new(
            registry.clone(),
            &config.metrics,
            &crate::decode::FAILURE_REASONS,
            &crate::pipeline::worker::skip_reasons(),
        )
        .context("cannot register metrics")?,
    );
    let env = |k: &str| std::env::var(k).ok();
    let sinks = Sinks::start(&config.sinks, "sinks", &metrics, &env)
        .context("cannot start the alert sinks")?;
    let (notifier, notifier_stop, notifier_task) =
        start_notifier(&config, sinks, ui.as_ref(), &registry)?;
    // The replay is partition (0, 0) of stream 0, decoded as Kafka is.
    let rules = Arc::new(StreamRules::new(config.decode.counters.clone()));
    let classifier = Arc::new(Classifier::default());
    classifier.register(0, 1, Arc::clone(&rules));
    let options = ShardOptions {
        max_event_age_ms: config.alert.max_event_age_ms(),
        classifier,
        history: None,
    };
    let (pipeline, _, _) = start_pipeline(
        &config,
        Arc::clone(&notifier) as Arc<dyn AlertHandoff>,
        &metrics,
        ui.map(|u| Arc::clone(&u.history)),
        options,
    )?;
    let decoder = Decoder::new(&config.decode);
    let started = std::time::Instant::now();
    let summary = if input == std::path::Path::new("-") {
        crate::source::file::replay(
            std::io::stdin().lock(),
            &decoder,
            &rules,
            &pipeline,
            &metrics,
        )
        .await?
    } else {
        let file = std::fs::File::open(input)
            .with_context(|| format!("cannot open {}", input.display()))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        crate::source::file::replay(reader, &decoder, &rules, &pipeline, &metrics).await?
    };
    let seconds = started.elapsed().as_secs_f64();
    pipeline.close().await;
    let grace = Duration::from_secs(config.pipeline.shutdown_grace_secs);
    stop_notifier(
        notifier,
        notifier_stop,
        notifier_task,
        tokio::time::Instant::now() + grace,
    )
    .await;
    Ok(ReplayReport {
        lines: summary.lines,
        events: summary.events,
        seconds,
    })
}

/// Runs until `shutdown` completes, then drains (see the module docs).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<SourceSummary> {
    let mut running = start(config).await?;
    tokio::select! {
        _ = shutdown => {
            tracing::info!("Shutdown requested; draining.");
            running.shutdown();
        }
        // The source stopped on its own (an error): no drain to request.
        done = &mut running.task => return done.context("the daemon task panicked")?,
    }
    running.wait().await
}
