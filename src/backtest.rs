//! `anomalyd backtest`: replay CSV files through the detector.
//!
//! This module owns the offline replay: reading `timestamp,value` CSV files
//! (one file, or every `*.csv` under a directory), running each row through
//! [`Detector::observe`] (the very function the daemon calls per event), and
//! writing one output row per input row, in input order, with the header
//! [`OUTPUT_HEADER`]. The
//! `alert` column is 1 while the daemon's alert lifecycle
//! ([`crate::alert::lifecycle`], with the configured `[alert]` rule) is
//! firing for the series, so a backtest shows the alerts the daemon would
//! send. `--plot` draws each file with [`crate::chart`], the live page's
//! chart. The configuration is the daemon's: defaults, `--config` file,
//! `ANOMALYD__*` environment.
//!
//! **Incidents.** The alerts go through the daemon's incident grouping
//! ([`crate::alert::incident`], the `[alert]` incident keys). In directory
//! mode each file is one series: its metric name (`__name__`) is the
//! file's stem and its `instance` label the relative path of its
//! directory (none for files at the top), so the files of one directory
//! group like the metrics of one host. The alerts of all files are merged
//! by event time (each series' alerts depend on its own rows only, so
//! merging them is merging the files by timestamp) and grouped in that
//! order, the notifications of one instant together, as the daemon sends
//! them. Every incident notification is written to `incidents.csv` in the
//! output directory ([`INCIDENTS_HEADER`]), and the summary counts the
//! *pages*: notifications that open an incident. A single file is one
//! series; its pages are counted too.
//!
//! Timestamps may be NAB's `YYYY-MM-DD HH:MM:SS` (UTC, optional fraction),
//! RFC 3339, or epoch seconds / milliseconds (integers of 1e11 or more are
//! read as milliseconds). A row that cannot be read (bad timestamp, bad
//! value, wrong number of fields) or whose value is not finite is reported on
//! stderr with its file and line, still written (score 0, empty
//! `expected`/`lower`/`upper`, no alert), and the run goes on.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime};

use crate::alert::incident::{Incident, IncidentConfig, IncidentStatus, Incidents};
use crate::alert::lifecycle::{AlertRule, Lifecycle, Transition, build_alert};
use crate::alert::{Notice, Reason, SeriesAlert, Severity, ValueKind};
use crate::app::config::Config;
use crate::chart::{Chart, Expected, Point};
use crate::detector::{Decision, Detector, DetectorError};
use crate::event::SeriesKey;

/// The output header, exactly.
pub const OUTPUT_HEADER: &str = "timestamp,value,anomaly_score,expected,lower,upper,alert,reason";

/// The header of `incidents.csv`: one row per incident notification, in
/// the order they were sent. `opens` is 1 on the notification that opens
/// an incident (a page); `members` lists the members' series, top peak
/// first, separated by `;`.
pub const INCIDENTS_HEADER: &str = "updated_at,id,revision,opens,status,scope,group,groups,\
severity,members_total,firing,started_at,ended_at,top_series,top_reason,top_peak_score,members";

/// The incidents file's name in the output directory.
pub const INCIDENTS_FILE: &str = "incidents.csv";

/// Arguments of `anomalyd backtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct BacktestArgs {
    /// A CSV file with header `timestamp,value`, or a directory: every
    /// `*.csv` under it is replayed.
    #[arg(long)]
    pub input: PathBuf,
    /// The output CSV file, or (for a directory input) the output directory,
    /// which mirrors the input's relative paths.
    #[arg(long)]
    pub output: PathBuf,
    /// The daemon's TOML config file; its `[detector]` and `[alert]`
    /// sections are used (default: `$ANOMALYD_CONFIG`, else built-in
    /// defaults; `ANOMALYD__*` variables apply as for `run`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Also draw an SVG plot (series, expected band, alerts) to this file,
    /// or for a directory input, into this directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The alert threshold (a score in (0, 1)); overrides `alert.threshold`.
    #[arg(long)]
    pub threshold: Option<f64>,
}

/// Why a backtest failed.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The configuration could not be loaded or is invalid (exit code 2).
    #[error(transparent)]
    Config(#[from] crate::app::config::ConfigError),
    /// The detector refused the config (exit code 2).
    #[error(transparent)]
    Detector(#[from] DetectorError),
    /// The input path does not exist or is neither a file nor a directory
    /// (exit code 2).
    #[error("input {0} is not a file or a directory")]
    Input(PathBuf),
    /// Reading or writing a file failed (exit code 1).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The input CSV has no usable header (exit code 1).
    #[error("{path}: {message}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl BacktestError {
    /// The process exit code for this error: 2 for bad CLI/config input, 1
    /// for failures while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::Detector(_) | Self::Input(_) => 2,
            Self::Io { .. } | Self::Csv { .. } => 1,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BacktestError + '_ {
    move |source| BacktestError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a backtest did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files replayed.
    pub files: usize,
    /// Rows written (= rows read).
    pub rows: usize,
    /// Rows that could not be read or had a non-finite value.
    pub malformed: usize,
    /// Rows with `alert = 1`.
    pub alerts: usize,
    /// Incident notifications that open an incident: the pages.
    pub pages: usize,
    /// Incident notifications of any kind (opens, updates, resolves).
    pub incident_notifications: usize,
}

/// Parses a timestamp into milliseconds since the epoch (UTC); see the module
/// docs for the formats.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(if n.unsigned_abs() >= 100_000_000_000 {
            n
        } else {
            n.checked_mul(1000)?
        });
    }
    if let Ok(x) = s.parse::<f64>() {
        return (x.is_finite() && x.abs() < 1e14).then(|| (x * 1000.0).round() as i64);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Runs a backtest (file or directory mode, by what `--input` is).
pub fn run(args: &BacktestArgs) -> Result<Summary, BacktestError> {
    let mut config = Config::load_unvalidated(args.config.as_deref())?;
    if let Some(t) = args.threshold {
        config.alert.threshold = t;
    }
    config
        .validate()
        .map_err(crate::app::config::ConfigError::Invalid)?;
    let rule =
        AlertRule::new(&config.alert, "alert").map_err(crate::app::config::ConfigError::Invalid)?;
    let detector = Detector::with_targets(&config.detector, &rule.targets())?;
    let scorer = Scorer {
        detector: &detector,
        rule: &rule,
    };
    if args.input.is_file() {
        let mut summary = Summary::default();
        let report = |m: &str| eprintln!("{m}");
        let name = args
            .input
            .file_stem()
            .map_or_else(|| "series".to_owned(), |n| n.to_string_lossy().into_owned());
        let mut file = run_file(
            &scorer,
            &SeriesKey::from_name(name),
            &args.input,
            &args.output,
            args.plot.as_deref(),
            &report,
        )?;
        let alerts = std::mem::take(&mut file.alerts);
        summary.add(file);
        group(&config.alert.incidents, alerts, &mut summary, |_| Ok(()))?;
        Ok(summary)
    } else if args.input.is_dir() {
        run_dir(&scorer, &config.alert.incidents, args)
    } else {
        Err(BacktestError::Input(args.input.clone()))
    }
}

impl Summary {
    fn add(&mut self, f: FileSummary) {
        self.files += 1;
        self.rows += f.rows;
        self.malformed += f.malformed;
        self.alerts += f.alerts_rows;
    }
}

/// What one file gave.
#[derive(Debug, Clone, Default)]
struct FileSummary {
    rows: usize,
    malformed: usize,
    /// Rows with `alert = 1`.
    alerts_rows: usize,
    /// The alert messages the daemon would have sent, in order.
    alerts: Vec<SeriesAlert>,
}

/// The series a directory-mode file is: its stem as the metric name, its
/// directory's relative path (`/`-separated) as `instance`.
pub fn series_of(rel: &Path) -> SeriesKey {
    let name = rel
        .file_stem()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let dir: Vec<String> = rel
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if dir.is_empty() {
        SeriesKey::from_name(name)
    } else {
        SeriesKey::new(name, [("instance", dir.join("/"))])
    }
}

/// Milliseconds of an alert message's `ts`.
fn ts_of(a: &SeriesAlert) -> i64 {
    DateTime::parse_from_rfc3339(&a.ts).map_or(0, |t| t.timestamp_millis())
}

/// Groups `alerts` (of any number of series) into incidents in event-time
/// order, flushing at each new instant as the daemon does; counts the
/// notifications in `summary` and hands each to `write`.
fn group(
    config: &IncidentConfig,
    mut alerts: Vec<SeriesAlert>,
    summary: &mut Summary,
    mut write: impl FnMut(&Incident) -> Result<(), BacktestError>,
) -> Result<(), BacktestError> {
    // Stable: alerts of one instant keep their file order.
    alerts.sort_by_key(ts_of);
    let mut incidents = Incidents::new(config);
    let mut out = |notices: Vec<Notice>, summary: &mut Summary| {
        for n in notices {
            if let Notice::Incident(i) = n {
                summary.incident_notifications += 1;
                if i.opens() && i.status != IncidentStatus::Merged {
                    summary.pages += 1;
                }
                write(&i)?;
            }
        }
        Ok::<(), BacktestError>(())
    };
    let mut instant = None;
    for a in alerts {
        let ts = ts_of(&a);
        if instant.is_some_and(|t| t != ts) {
            out(incidents.flush(), summary)?;
        }
        instant = Some(ts);
        incidents.observe(a);
    }
    out(incidents.flush(), summary)
}

/// One row of `incidents.csv` ([`INCIDENTS_HEADER`]).
fn incident_row(i: &Incident) -> String {
    let group = i
        .group
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let top = i.members.first();
    let members = i
        .members
        .iter()
        .map(|m| m.series.as_str())
        .collect::<Vec<_>>()
        .join(";");
    [
        i.updated_at.clone(),
        i.id.clone(),
        i.revision.to_string(),
        u8::from(i.opens() && i.status != IncidentStatus::Merged).to_string(),
        i.status.as_str().to_owned(),
        i.scope.as_str().to_owned(),
        csv_field(&group),
        i.groups.to_string(),
        i.severity.as_str().to_owned(),
        i.members_total.to_string(),
        i.firing.to_string(),
        i.started_at.clone(),
        i.ended_at.clone().unwrap_or_default(),
        csv_field(top.map_or("", |m| m.series.as_str())),
        top.map_or("", |m| m.reason.as_str()).to_owned(),
        top.map_or(String::new(), |m| m.peak_score.to_string()),
        csv_field(&members),
    ]
    .join(",")
}

/// Every `*.csv` under `dir`, as paths relative to it, sorted.
pub(crate) fn csv_files(dir: &Path) -> Result<Vec<PathBuf>, BacktestError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        for entry in fs::read_dir(&abs).map_err(io_err(&abs))? {
            let entry = entry.map_err(io_err(&abs))?;
            let path = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(io_err(&abs))?;
            if kind.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The daemon's per-series path: detector, then alert lifecycle.
struct Scorer<'a> {
    detector: &'a Detector,
    rule: &'a AlertRule,
}

fn run_dir(
    scorer: &Scorer<'_>,
    incidents: &IncidentConfig,
    args: &BacktestArgs,
) -> Result<Summary, BacktestError> {
    let files = csv_files(&args.input)?;
    let mut alerts = Vec::new();
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if !io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut summary = Summary::default();
    for rel in &files {
        bar.set_message(rel.display().to_string());
        let out = args.output.join(rel);
        let plot = args
            .plot
            .as_ref()
            .map(|p| p.join(rel).with_extension("svg"));
        for p in std::iter::once(&out).chain(plot.as_ref()) {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
        }
        // Messages about malformed rows go around the bar, not through it.
        let report = |m: &str| bar.suspend(|| eprintln!("{m}"));
        let mut file = run_file(
            scorer,
            &series_of(rel),
            &args.input.join(rel),
            &out,
            plot.as_deref(),
            &report,
        )?;
        alerts.append(&mut file.alerts);
        summary.add(file);
        bar.inc(1);
    }
    bar.finish_and_clear();
    fs::create_dir_all(&args.output).map_err(io_err(&args.output))?;
    let path = args.output.join(INCIDENTS_FILE);
    let mut out = io::BufWriter::new(fs::File::create(&path).map_err(io_err(&path))?);
    writeln!(out, "{INCIDENTS_HEADER}").map_err(io_err(&path))?;
    group(incidents, alerts, &mut summary, |i| {
        writeln!(out, "{}", incident_row(i)).map_err(io_err(&path))
    })?;
    out.flush().map_err(io_err(&path))?;
    Ok(summary)
}

/// One output row, kept for the plot.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// Milliseconds since the epoch, if the timestamp was readable.
    pub ts_ms: Option<i64>,
    /// The value, if readable and finite.
    pub value: Option<f64>,
    /// The decision, if the row was scored.
    pub decision: Option<Decision>,
    /// The alert's severity while the rule was firing at this row.
    pub alert: Option<Severity>,
    /// That alert was raised by the `stuck` channel.
    pub stuck: bool,
}

/// Draws `rows` with the shared chart (rows without a timestamp cannot be
/// placed on the time axis and are left out).
pub fn plot_svg(title: &str, rows: &[Row]) -> String {
    let points: Vec<Point> = rows
        .iter()
        .filter_map(|r| {
            Some(Point {
                ts_ms: r.ts_ms?,
                value: r.value,
                model: r.decision.map(|d| Expected {
                    expected: d.expected,
                    lower: d.lower,
                    upper: d.upper,
                }),
                warming: r.decision.is_some_and(|d| !d.warm),
                alert: r.alert,
                stuck: r.stuck,
            })
        })
        .collect();
    Chart::new(title).render(&points)
}

fn run_file(
    scorer: &Scorer<'_>,
    key: &SeriesKey,
    input: &Path,
    output: &Path,
    plot_path: Option<&Path>,
    report: &dyn Fn(&str),
) -> Result<FileSummary, BacktestError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(input)
        .map_err(|e| BacktestError::Csv {
            path: input.to_path_buf(),
            message: e.to_string(),
        })?;
    let headers = reader
        .headers()
        .map_err(|e| BacktestError::Csv {
            path: input.to_path_buf(),
            message: e.to_string(),
        })?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(ts_col), Some(value_col)) = (col("timestamp"), col("value")) else {
        return Err(BacktestError::Csv {
            path: input.to_path_buf(),
            message: "the header must name the columns `timestamp` and `value`".into(),
        });
    };
    let out_file = fs::File::create(output).map_err(io_err(output))?;
    let mut out = io::BufWriter::new(out_file);
    writeln!(out, "{OUTPUT_HEADER}").map_err(io_err(output))?;
    let detector = scorer.detector;
    let mut state = detector.new_state();
    let mut lifecycle = Lifecycle::default();
    // The channel that raised the alert firing (for the plot).
    let mut alert_reason = Reason::Forecast;
    let mut summary = FileSummary::default();
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line() + 1;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // Unreadable bytes (e.g. invalid UTF-8): report and write a
                // placeholder row so the output stays aligned with the input.
                report(&format!("{}:{line}: skipped row: {e}", input.display()));
                summary.malformed += 1;
                summary.rows += 1;
                writeln!(out, ",,0,,,,0,").map_err(io_err(output))?;
                rows.push(Row {
                    ts_ms: None,
                    value: None,
                    decision: None,
                    alert: None,
                    stuck: false,
                });
                continue;
            }
        }
        let line = record.position().map_or(line, |p| p.line());
        let ts_raw = record.get(ts_col).unwrap_or("");
        let value_raw = record.get(value_col).unwrap_or("");
        let ts = parse_timestamp(ts_raw);
        let value = value_raw.parse::<f64>().ok();
        let problem = match (ts, value) {
            _ if record.len() != headers.len() => Some(format!(
                "expected {} fields, found {}",
                headers.len(),
                record.len()
            )),
            (None, _) => Some(format!("cannot read timestamp {ts_raw:?}")),
            (_, None) => Some(format!("cannot read value {value_raw:?}")),
            _ => None,
        };
        let decision = match (problem, ts, value) {
            (None, Some(ts), Some(v)) => match detector.observe(&mut state, ts, v) {
                Ok(d) => Some(d),
                Err(e) => {
                    report(&format!("{}:{line}: row not scored: {e}", input.display()));
                    None
                }
            },
            (problem, _, _) => {
                let why = problem.unwrap_or_else(|| "unreadable row".into());
                report(&format!("{}:{line}: malformed row: {why}", input.display()));
                None
            }
        };
        // The daemon's order: score and learn, then the alert lifecycle.
        // A row that was not scored leaves the lifecycle as it was.
        if let (Some(d), Some(ts), Some(v)) = (&decision, ts, value)
            && let Some(t) = lifecycle.step(scorer.rule, ts, v, d)
        {
            if let Transition::Firing { reason, .. } | Transition::Escalated { reason, .. } = t {
                alert_reason = reason;
            }
            let alert = build_alert(
                key,
                &t,
                ts,
                v,
                d,
                lifecycle.peak_score(),
                scorer.rule,
                scorer.detector.model_name(),
            );
            summary
                .alerts
                .push(SeriesAlert::new(alert, ValueKind::Value));
        }
        let is_alert = decision.is_some() && lifecycle.is_firing();
        summary.rows += 1;
        summary.malformed += usize::from(decision.is_none());
        summary.alerts_rows += usize::from(is_alert);
        let ts_field = csv_field(ts_raw);
        let value_field = csv_field(value_raw);
        match &decision {
            // No band while the series warms up: it is not judged yet.
            Some(d) if d.warm => writeln!(
                out,
                "{ts_field},{value_field},{},{},{},{},{},{}",
                d.onset,
                d.expected,
                d.lower,
                d.upper,
                u8::from(is_alert),
                if d.score > 0.0 { d.reason.as_str() } else { "" }
            ),
            Some(d) => writeln!(out, "{ts_field},{value_field},0,{},,,0,", d.expected),
            None => writeln!(out, "{ts_field},{value_field},0,,,,0,"),
        }
        .map_err(io_err(output))?;
        if plot_path.is_some() {
            rows.push(Row {
                ts_ms: ts,
                value: value.filter(|v| v.is_finite()),
                decision,
                alert: lifecycle.severity().filter(|_| is_alert),
                stuck: is_alert && alert_reason == Reason::Stuck,
            });
        }
    }
    out.flush().map_err(io_err(output))?;
    if let Some(p) = plot_path {
        let name = input
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let svg = plot_svg(&name, &rows);
        fs::write(p, svg).map_err(io_err(p))?;
    }
    Ok(summary)
}

/// Quotes a field when CSV needs it (the raw input is echoed back).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_accepted_format() {
        let nab = parse_timestamp("2014-04-10 00:02:00").unwrap();
        assert_eq!(nab, 1_397_088_120_000);
        assert_eq!(parse_timestamp("2014-04-10T00:02:00Z"), Some(nab));
        assert_eq!(parse_timestamp("2014-04-10T02:02:00+02:00"), Some(nab));
        assert_eq!(parse_timestamp("2014-04-10 00:02:00.000000"), Some(nab));
        assert_eq!(parse_timestamp("1397088120"), Some(nab));
        assert_eq!(parse_timestamp("1397088120000"), Some(nab));
        assert_eq!(parse_timestamp("1397088120.5"), Some(nab + 500));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp(""), None);
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("a"), "a");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
    }
}
