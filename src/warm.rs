//! `anomalyd warm`: learn series before the daemon sees them, and write
//! the state directory `anomalyd run` restores.
//!
//! The input is either the backtest's CSV files (`timestamp,value`, one
//! file or every `*.csv` under a directory; an optional `series` column
//! names each row's series in selector form, else `--series` or the file
//! name does) or a Prometheus URL and a selector (every matching series'
//! last `history.lookback_secs`, fetched exactly as the daemon fetches a
//! new series' history). Each series then goes through the daemon's
//! counter rules (the partition's source's) and [`history::learn`], the
//! very function the shards run on a history, and is written with the
//! `dir` store into one partition's snapshot (`remote_write/0` by
//! default). Series that snapshot already holds are left alone unless
//! `--replace`; everything else in it is kept.
//!
//! Exit codes as everywhere: 2 for a bad command line or configuration, 1
//! when reading, querying or writing fails.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::app::config::{Config, ConfigError};
use crate::backtest::{csv_files, parse_timestamp};
use crate::counter::{Class, MetricType, SeriesValue};
use crate::detector::{Detector, DetectorError};
use crate::event::SeriesKey;
use crate::history::prometheus::{HistoryError, Plan, PrometheusClient};
use crate::history::{self, is_label_name};
use crate::state::dir::DirStore;
use crate::state::{PartitionName, PartitionSnapshot, SnapshotRecord, SourcePartition, StateError};
use crate::state::{StateStore, encode_series_value};

/// Arguments of `anomalyd warm`.
#[derive(Debug, Clone, clap::Args)]
pub struct WarmArgs {
    /// The daemon's config file (default: $ANOMALYD_CONFIG, else built-in
    /// defaults; ANOMALYD__* variables apply): its `[detector]`, counter
    /// rules, `[history]` and `state.dir` are used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A CSV file with header `timestamp,value` (and optionally `series`),
    /// or a directory: every `*.csv` under it.
    #[arg(long, conflicts_with = "selector")]
    pub input: Option<PathBuf>,
    /// The series of the input rows without a `series` column, in
    /// selector form (`cpu{host="a"}`); default: each file's name without
    /// `.csv`.
    #[arg(long, requires = "input")]
    pub series: Option<String>,
    /// Learn every series matching this Prometheus selector (e.g.
    /// `{job="node"}`) from `history.prometheus_url`.
    #[arg(long)]
    pub selector: Option<String>,
    /// Overrides `history.prometheus_url`.
    #[arg(long, requires = "selector")]
    pub prometheus_url: Option<String>,
    /// A label added to every series learned from Prometheus, NAME=VALUE
    /// (repeatable): the external_labels of the Prometheus that
    /// remote-writes, so the keys match the series it sends.
    #[arg(long = "label", value_name = "NAME=VALUE", requires = "selector")]
    pub labels: Vec<String>,
    /// The state directory to write (default: `state.dir`).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The partition the series are saved in: `remote_write/0` (the
    /// receiver), or a Kafka `topic/partition`.
    #[arg(long, default_value = "remote_write/0")]
    pub partition: String,
    /// For a Kafka partition without a snapshot yet: the offset the daemon
    /// starts consuming it at (a restored partition resumes where its
    /// snapshot says).
    #[arg(long)]
    pub position: Option<i64>,
    /// Learn up to this time (RFC 3339 or epoch seconds/ms; default: now).
    #[arg(long)]
    pub end: Option<String>,
    /// Replace series the snapshot already holds (default: keep them).
    #[arg(long)]
    pub replace: bool,
}

/// Why `warm` failed.
#[derive(Debug, thiserror::Error)]
pub enum WarmError {
    /// The configuration could not be loaded or is invalid (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The detector refused the config (exit code 2).
    #[error(transparent)]
    Detector(#[from] DetectorError),
    /// A mistake on the command line (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// Reading a file failed (exit code 1).
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Prometheus could not be queried (exit code 1).
    #[error(transparent)]
    Prometheus(#[from] HistoryError),
    /// The state could not be read or written (exit code 1).
    #[error(transparent)]
    State(#[from] StateError),
}

impl WarmError {
    /// 2 for bad input to the command, 1 for failures while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Detector(_) | Self::Usage(_) => 2,
            Self::Read { .. } | Self::Prometheus(_) | Self::State(_) => 1,
        }
    }
}

/// What `warm` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarmSummary {
    /// Series learned and written.
    pub series: usize,
    /// Points learned, over all of them.
    pub points: u64,
    /// Series the counter rules skip (`_created`, buckets).
    pub skipped_series: usize,
    /// Series the snapshot already held, left alone.
    pub kept: usize,
    /// CSV rows that could not be read (reported on stderr).
    pub malformed: usize,
    /// The snapshot file written.
    pub path: PathBuf,
}

/// Parses a series in selector form: `name`, or `name{a="x",b="y"}` with
/// `\\`, `\"` and `\n` escapes in values (as alerts and the page print it).
pub fn parse_series(text: &str) -> Result<SeriesKey, String> {
    let text = text.trim();
    let bad = |why: &str| {
        format!("`{text}` is not a series in selector form ({why}); write e.g. cpu{{host=\"a\"}}")
    };
    let (name, rest) = match text.find('{') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    if name.is_empty() {
        return Err(bad("no metric name"));
    }
    let mut labels = Vec::new();
    if let Some(rest) = rest {
        let body = rest
            .strip_suffix('}')
            .ok_or_else(|| bad("no closing brace"))?;
        let mut chars = body.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let label: String = chars
                .by_ref()
                .take_while(|c| *c != '=')
                .collect::<String>()
                .trim()
                .to_owned();
            if label.is_empty() {
                return Err(bad("a label without a name"));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('"') {
                return Err(bad("a label value must be double-quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err(bad("an unterminated label value")),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => return Err(bad("an unterminated label value")),
                    },
                    Some(c) => value.push(c),
                }
            }
            labels.push((label, value));
        }
    }
    Ok(SeriesKey::new(name, labels))
}

fn parse_partition(text: &str) -> Result<PartitionName, WarmError> {
    let usage = || {
        WarmError::Usage(format!(
            "--partition `{text}` is not STREAM/PARTITION, e.g. remote_write/0 or metrics/3"
        ))
    };
    let (stream, n) = text.rsplit_once('/').ok_or_else(usage)?;
    let partition = n.parse::<i32>().map_err(|_| usage())?;
    if stream.is_empty() || partition < 0 {
        return Err(usage());
    }
    Ok(PartitionName {
        stream: stream.to_owned(),
        partition,
    })
}

/// One series and its points `(ts_ms, raw value)`, oldest first.
type Points = (SeriesKey, Vec<(i64, f64)>);

/// Reads CSV inputs into series (in order of first appearance), each with
/// its points in file order.
fn read_files(args: &WarmArgs, input: &Path) -> Result<(Vec<Points>, usize), WarmError> {
    let fixed = args
        .series
        .as_deref()
        .map(parse_series)
        .transpose()
        .map_err(WarmError::Usage)?;
    let files: Vec<PathBuf> = if input.is_dir() {
        csv_files(input)
            .map_err(|e| WarmError::Read {
                path: input.to_path_buf(),
                message: e.to_string(),
            })?
            .into_iter()
            .map(|rel| input.join(rel))
            .collect()
    } else if input.is_file() {
        vec![input.to_path_buf()]
    } else {
        return Err(WarmError::Usage(format!(
            "--input {} is not a file or a directory",
            input.display()
        )));
    };
    let mut order: Vec<SeriesKey> = Vec::new();
    let mut points: HashMap<SeriesKey, Vec<(i64, f64)>> = HashMap::new();
    let mut malformed = 0;
    for path in files {
        let read_err = |message: String| WarmError::Read {
            path: path.clone(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(&path)
            .map_err(|e| read_err(e.to_string()))?;
        let headers = reader
            .headers()
            .map_err(|e| read_err(e.to_string()))?
            .clone();
        let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(ts_col), Some(value_col)) = (col("timestamp"), col("value")) else {
            return Err(read_err(
                "the header must name the columns `timestamp` and `value`".into(),
            ));
        };
        let series_col = col("series");
        let file_key = match &fixed {
            Some(k) => k.clone(),
            None => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                parse_series(&stem).map_err(WarmError::Usage)?
            }
        };
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let row = record.ok().and_then(|r| {
                let ts = parse_timestamp(r.get(ts_col)?)?;
                let v: f64 = r.get(value_col)?.trim().parse().ok()?;
                let key = match series_col.and_then(|c| r.get(c)).filter(|s| !s.is_empty()) {
                    Some(s) => Some(parse_series(s).ok()?),
                    None => Some(file_key.clone()),
                }?;
                (v.is_finite() && (0..=crate::decode::MAX_TS_MS).contains(&ts))
                    .then_some((key, ts, v))
            });
            let Some((key, ts, v)) = row else {
                eprintln!("{}:{line}: skipped row", path.display());
                malformed += 1;
                continue;
            };
            points
                .entry(key.clone())
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push((ts, v));
        }
    }
    let series = order
        .into_iter()
        .map(|k| {
            let p = points.remove(&k).unwrap_or_default();
            (k, p)
        })
        .collect();
    Ok((series, malformed))
}

/// Fetches every series matching the selector from Prometheus (the
/// daemon's client and plan), each keyed as the daemon will see it: its
/// labels plus `extra`.
async fn read_prometheus(
    client: &PrometheusClient,
    config: &Config,
    selector: &str,
    extra: &[(String, String)],
    end_ms: i64,
) -> Result<Vec<Points>, WarmError> {
    let plan = Plan {
        drop_labels: Vec::new(),
        ..Plan::new(&config.history)
    };
    let found = client
        .list_series(selector, end_ms - plan.lookback_ms, end_ms)
        .await?;
    let mut out = Vec::with_capacity(found.len());
    for labels in found {
        let Some(name) = labels.get("__name__").cloned() else {
            continue;
        };
        let own: Vec<(String, String)> = labels
            .into_iter()
            .filter(|(k, _)| k != "__name__")
            .collect();
        let query_key = SeriesKey::new(name.clone(), own.clone());
        let points = client.series_history(&query_key, end_ms, &plan).await?;
        let live_key = SeriesKey::new(name, own.into_iter().chain(extra.iter().cloned()));
        out.push((live_key, points));
    }
    Ok(out)
}

/// Encodes one series for the snapshot.
fn encode(
    key: &SeriesKey,
    s: &crate::state::SeriesSnapshot,
    detector: &crate::detector::DetectorState,
) -> Result<Vec<u8>, WarmError> {
    encode_series_value(key, detector, &s.lifecycle, &s.value).map_err(|e| {
        WarmError::State(StateError::Corrupt {
            what: key.to_string(),
            detail: e.to_string(),
        })
    })
}

/// Runs `anomalyd warm`.
pub fn run(args: &WarmArgs) -> Result<WarmSummary, WarmError> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(url) = &args.prometheus_url {
        config.history.prometheus_url = url.clone();
    }
    let detector = Detector::new(&config.detector, config.alert.threshold)?;
    let partition = parse_partition(&args.partition)?;
    let rules = if partition.stream == crate::source::remote_write::STREAM {
        &config.sources.remote_write.counters
    } else {
        &config.decode.counters
    };
    let end_ms = match &args.end {
        Some(t) => parse_timestamp(t)
            .ok_or_else(|| WarmError::Usage(format!("--end `{t}` is not a time")))?,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let mut declared: HashMap<String, MetricType> = HashMap::new();
    let (series, malformed) = match (&args.input, &args.selector) {
        (Some(input), None) => read_files(args, input)?,
        (None, Some(selector)) => {
            let mut problems = crate::config::Problems::new();
            config.history.validate_always("history", &mut problems);
            problems.into_result().map_err(ConfigError::Invalid)?;
            let extra: Vec<(String, String)> = args
                .labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) if is_label_name(k.trim()) => {
                        Ok((k.trim().to_owned(), v.to_owned()))
                    }
                    _ => Err(WarmError::Usage(format!(
                        "--label `{l}` is not NAME=VALUE with a valid label name"
                    ))),
                })
                .collect::<Result<_, _>>()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| WarmError::Usage(format!("cannot start a runtime: {e}")))?;
            let env = |k: &str| std::env::var(k).ok();
            let client = PrometheusClient::new(&config.history, &env, None)?;
            runtime.block_on(async {
                if rules.use_metadata {
                    // Without the declared types the names decide.
                    match client.metadata().await {
                        Ok(m) => declared = m,
                        Err(e) => eprintln!(
                            "warm: no metric types from Prometheus ({e}); using the names"
                        ),
                    }
                }
                let s = read_prometheus(&client, &config, selector, &extra, end_ms).await?;
                Ok::<_, WarmError>((s, 0))
            })?
        }
        _ => {
            return Err(WarmError::Usage(
                "give either --input FILE|DIR or --selector SELECTOR".into(),
            ));
        }
    };

    let dir = args.state_dir.clone().unwrap_or(config.state.dir.clone());
    let store = DirStore::new(
        &dir,
        detector.model_hash(),
        Duration::from_secs(config.state.snapshot_interval_secs),
    )?;
    let existing = store.load(&partition)?;
    let position = match (&existing, args.position) {
        (_, Some(p)) => p,
        (Some(e), None) => e.position,
        (None, None) if partition.stream == crate::source::remote_write::STREAM => 0,
        (None, None) => {
            return Err(WarmError::Usage(format!(
                "{partition} has no snapshot yet: give --position, the offset the daemon starts \
                 consuming it at (e.g. the partition's current end offset)"
            )));
        }
    };
    let mut records: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut held: std::collections::HashSet<SeriesKey> = Default::default();
    let p = SourcePartition {
        stream: 0,
        partition: partition.partition,
    };
    for s in existing.map(|e| e.series).unwrap_or_default() {
        // A state of another model configuration relearns anyway: warm it
        // if the input has it.
        if s.detector.is_some() && !args.replace {
            held.insert(s.key.clone());
        }
        let d = s.detector.clone().unwrap_or_else(|| detector.new_state());
        records.insert(s.key.fingerprint(), encode(&s.key, &s, &d)?);
    }
    let lookup = |f: &str| declared.get(f).copied();
    let mut summary = WarmSummary {
        malformed,
        path: store.path(&partition),
        ..WarmSummary::default()
    };
    for (key, points) in series {
        if held.contains(&key) {
            summary.kept += 1;
            continue;
        }
        let kind = match crate::counter::classify(key.name(), rules, &lookup) {
            Class::Learn(kind) => kind,
            Class::Skip(_) => {
                summary.skipped_series += 1;
                continue;
            }
        };
        let mut state = detector.new_state();
        let mut value = SeriesValue::new(kind);
        let learned = history::learn(&detector, &mut state, &mut value, &points);
        let snapshot = crate::state::SeriesSnapshot {
            key: key.clone(),
            detector: None,
            lifecycle: Default::default(),
            value,
        };
        records.insert(key.fingerprint(), encode(&key, &snapshot, &state)?);
        summary.series += 1;
        summary.points += learned.points;
    }
    store.save(&[PartitionSnapshot {
        name: partition,
        position,
        records: records
            .into_iter()
            .map(|(fingerprint, bytes)| SnapshotRecord {
                partition: p,
                fingerprint,
                bytes,
            })
            .collect(),
    }])?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_parse_from_selector_form() {
        let k = parse_series(r#"cpu{host="a",path="x\"y\\z\n"}"#).unwrap();
        assert_eq!(
            k,
            SeriesKey::new("cpu", [("host", "a"), ("path", "x\"y\\z\n")])
        );
        assert_eq!(parse_series(&k.to_string()).unwrap(), k, "round trip");
        assert_eq!(parse_series("up").unwrap(), SeriesKey::from_name("up"));
        assert_eq!(
            parse_series(r#"up{ job = "a" , }"#).unwrap(),
            SeriesKey::new("up", [("job", "a")])
        );
        for bad in [
            "",
            r#"{job="a"}"#,
            r#"up{job="a""#,
            "up{job=a}",
            r#"up{="a"}"#,
        ] {
            assert!(parse_series(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn partitions_parse() {
        assert_eq!(
            parse_partition("metrics/3").unwrap(),
            PartitionName {
                stream: "metrics".into(),
                partition: 3
            }
        );
        for bad in ["metrics", "/1", "m/x", "m/-1"] {
            assert_eq!(parse_partition(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
    }
}
