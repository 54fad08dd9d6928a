//! The JSON documents behind the page: `/api/v1/series` (the list) and
//! `/api/v1/series/<fingerprint>` (one series with its points and alert
//! spans), and the query that selects, filters and sorts the list.
//!
//! This module owns the documents' shape (docs/operations.md documents it) and the
//! selection rule; it reads [`super::history`] and the incident board
//! ([`crate::alert::notify::IncidentBoard`]) and renders nothing. The HTML
//! page and the script build their tables from these same documents.
//! Objects only gain fields over time, so clients must ignore fields they
//! do not know.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::Serialize;

use super::UiState;
use super::history::{AlertState, Detail as HistoryDetail, Sample, Summary};
use crate::alert::lifecycle::rfc3339_ms;
use crate::alert::{Incident, Reason, Resolution, Severity};
use crate::units::Unit;

/// How the list is sorted (`sort=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Firing first, then recently alerted, by severity, then score.
    Alert,
    /// Metric name, then labels.
    Series,
    /// Last value.
    Value,
    /// Last expected value.
    Expected,
    /// Last score.
    Score,
    /// The current or last alert's own peak score.
    Peak,
    /// Time of the last observation.
    Time,
}

impl SortKey {
    /// Every key with its query word.
    pub const ALL: [(SortKey, &'static str); 7] = [
        (Self::Alert, "alert"),
        (Self::Series, "series"),
        (Self::Value, "value"),
        (Self::Expected, "expected"),
        (Self::Score, "score"),
        (Self::Peak, "peak"),
        (Self::Time, "time"),
    ];

    /// The query word.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("alert", |(_, w)| w)
    }

    /// The natural order: names ascending, everything else descending.
    pub fn default_descending(self) -> bool {
        self != Self::Series
    }
}

/// A parsed list query: `label=NAME=VALUE` (repeatable, all must match;
/// `__name__` is the metric name), `sort=KEY`, `order=asc|desc`,
/// `top=N` (quiet series listed, default `ui.top_series`).
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// Label filters, all of which must match.
    pub labels: Vec<(String, String)>,
    /// Sort key.
    pub sort: SortKey,
    /// Descending order.
    pub descending: bool,
    /// Quiet series listed (the highest scores).
    pub top: usize,
}

/// Most quiet series one request may ask for.
const MAX_TOP: usize = 10_000;

/// Most label filters one query may hold. Every filter chip on the page
/// links to the query plus one filter, so the page grows with the number
/// of chips times the query's length: both are bounded.
pub const MAX_FILTERS: usize = 16;

/// Longest query string taken, bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

impl ListQuery {
    /// The defaults: no filter, by alert state, `top` quiet series.
    pub fn new(top: usize) -> Self {
        Self {
            labels: Vec::new(),
            sort: SortKey::Alert,
            descending: true,
            top,
        }
    }

    /// Parses a query string (`None` or empty: the defaults).
    /// Refused (400): more than [`MAX_QUERY_BYTES`] or [`MAX_FILTERS`]
    /// (repeated filters count once).
    pub fn parse(query: Option<&str>, default_top: usize) -> Result<Self, String> {
        let raw = query.unwrap_or("");
        if raw.len() > MAX_QUERY_BYTES {
            return Err(format!(
                "the query is {} bytes, more than {MAX_QUERY_BYTES}; use fewer or shorter filters",
                raw.len()
            ));
        }
        let mut q = Self::new(default_top);
        let mut order = None;
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            match &*k {
                "label" if v.is_empty() => {}
                "label" => {
                    let Some((name, value)) = v.split_once('=') else {
                        return Err(format!(
                            "label filter `{v}` has no `=`; write label=NAME=VALUE, e.g. label=host=web-01"
                        ));
                    };
                    let pair = (name.trim().to_owned(), value.trim().to_owned());
                    if !q.labels.contains(&pair) {
                        if q.labels.len() == MAX_FILTERS {
                            return Err(format!(
                                "more than {MAX_FILTERS} label filters; a series matches all of \
                                 them, so fewer say the same"
                            ));
                        }
                        q.labels.push(pair);
                    }
                }
                "sort" => {
                    q.sort = SortKey::ALL
                        .iter()
                        .find(|(_, w)| *w == v)
                        .map(|(k, _)| *k)
                        .ok_or_else(|| {
                            let words: Vec<&str> = SortKey::ALL.iter().map(|(_, w)| *w).collect();
                            format!("sort `{v}` is not one of {}", words.join(", "))
                        })?;
                }
                "order" => {
                    order = Some(match &*v {
                        "asc" => false,
                        "desc" => true,
                        _ => return Err(format!("order `{v}` is neither asc nor desc")),
                    });
                }
                "top" => {
                    q.top = v
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n <= MAX_TOP)
                        .ok_or_else(|| format!("top `{v}` is not a number up to {MAX_TOP}"))?;
                }
                // Unknown parameters are ignored, as browsers add their own.
                _ => {}
            }
        }
        q.descending = order.unwrap_or_else(|| q.sort.default_descending());
        Ok(q)
    }

    /// The query string that gives this query (for links that keep the
    /// filters while changing the sort).
    pub fn to_query_string(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.labels {
            s.append_pair("label", &format!("{k}={v}"));
        }
        if self.sort != SortKey::Alert {
            s.append_pair("sort", self.sort.as_str());
        }
        if self.descending != self.sort.default_descending() {
            s.append_pair("order", if self.descending { "desc" } else { "asc" });
        }
        s.finish()
    }

    fn matches(&self, s: &Summary) -> bool {
        self.labels.iter().all(|(k, v)| {
            if k == "__name__" {
                s.key.name() == v
            } else {
                s.key.labels().iter().any(|(lk, lv)| lk == k && lv == v)
            }
        })
    }
}

/// One row of the list: a retained series and its latest observation.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesRow {
    /// 16 hex digits; the page's URL is `/series/<fingerprint>`.
    pub fingerprint: String,
    /// Selector form, e.g. `cpu{host="a"}`.
    pub series: String,
    /// The metric name.
    pub name: String,
    /// The labels (without `__name__`).
    pub labels: BTreeMap<String, String>,
    /// `firing`, `recent` (alerted within `ui.history_minutes`) or `quiet`.
    pub state: &'static str,
    /// Severity of the current alert, or of the last one; `null` if none.
    pub severity: Option<Severity>,
    /// When the current alert started (event time); `null` unless firing.
    pub firing_since: Option<String>,
    /// Event time of the last observation that was firing.
    pub last_alert_at: Option<String>,
    /// The channel that raised the current or last alert (`forecast`,
    /// `level`, `drift`, `stuck`); `null` if it never alerted (or its
    /// alert started before the page saw it).
    pub reason: Option<Reason>,
    /// When the current or last alert started (event time); `null` if it
    /// never alerted.
    pub since: Option<String>,
    /// When the last alert resolved (event time); `null` while firing or
    /// if it never alerted.
    pub ended_at: Option<String>,
    /// How the last alert resolved: `returned` or `new_normal`.
    pub resolution: Option<Resolution>,
    /// The current or last alert's own peak score (what the alert
    /// messages call `peak_score`); `null` if it never alerted.
    pub alert_peak_score: Option<f64>,
    /// Time of the last observation (RFC 3339, event time).
    pub ts: String,
    /// The last observed value.
    pub value: f64,
    /// What the model expected for it.
    pub expected: f64,
    /// The band's lower edge (±1.7976931348623157e308 when unbounded).
    pub lower: f64,
    /// The band's upper edge.
    pub upper: f64,
    /// The last score.
    pub score: f64,
    /// The recent peak score, which decays by 2% per observation (the
    /// history's ranking of quiet series; the alert's own peak is
    /// `alert_peak_score`).
    pub peak_score: f64,
    /// The last observation was during warm-up.
    pub warming: bool,
    /// The values (and expected values, bands) are a counter's per-second
    /// rate, `rate(<series>)` in PromQL terms, not the raw counter.
    pub rate: bool,
    /// The symbol its numbers print in (`B`, `s`, `/s`, `%`, or empty),
    /// from the metric name; per second for a rate.
    pub unit_symbol: String,
    /// Which SI prefixes that unit takes: `both`, `up` or `none`.
    pub unit_prefixes: &'static str,
    /// Observations held for the chart.
    pub points: usize,
}

/// `/api/v1/series`.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesList {
    /// When this list was made (wall clock).
    pub generated_at: String,
    /// `ui.history_minutes`.
    pub history_minutes: u64,
    /// The alert rule's threshold.
    pub threshold: f64,
    /// Series whose history is held.
    pub retained: usize,
    /// Series that passed the label filters.
    pub matched: usize,
    /// The listed series: every firing or recently alerted one that
    /// matches, plus the `top` quiet ones with the highest scores, sorted
    /// as asked.
    pub series: Vec<SeriesRow>,
    /// The open incidents, then those closed within `history_minutes`
    /// (at most 100), each newest start first, as its last notification.
    pub incidents: Vec<Incident>,
}

/// One observation in `/api/v1/series/<fingerprint>`.
#[derive(Debug, Clone, Serialize)]
pub struct PointRow {
    /// Event time, epoch milliseconds.
    pub ts_ms: i64,
    /// The observed value.
    pub value: f64,
    /// The model's expectation.
    pub expected: f64,
    /// Band edges.
    pub lower: f64,
    /// Band edges.
    pub upper: f64,
    /// The score.
    pub score: f64,
    /// During warm-up.
    pub warming: bool,
    /// The alert firing after it, by severity; `null` if none.
    pub alert: Option<Severity>,
    /// That alert was raised by the `stuck` channel: the value repeats
    /// (it may well lie inside the band).
    pub stuck: bool,
}

/// A run of firing observations.
#[derive(Debug, Clone, Serialize)]
pub struct AlertSpan {
    /// First firing observation (event time).
    pub from: String,
    /// Last firing observation held.
    pub to: String,
    /// The highest severity within it.
    pub severity: Severity,
    /// The highest score within it.
    pub peak_score: f64,
    /// Still firing at the last observation.
    pub ongoing: bool,
    /// Raised by the `stuck` channel: the value repeated.
    pub stuck: bool,
}

/// `/api/v1/series/<fingerprint>`.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesDetail {
    /// The series' row, as in the list.
    #[serde(flatten)]
    pub row: SeriesRow,
    /// The unit its name announces (`_seconds`, `_bytes`, ...), if any;
    /// per second for a rate (`seconds/s`, or `/s` alone).
    pub unit: Option<String>,
    /// The observations held, oldest first.
    pub samples: Vec<PointRow>,
    /// The alert spans among them, oldest first.
    pub alerts: Vec<AlertSpan>,
}

/// An error document.
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
}

/// Why one series cannot be shown.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DetailError {
    /// The path is not 16 hex digits.
    #[error("`{0}` is not a series fingerprint (16 hex digits, as in the alert's `fingerprint`)")]
    BadFingerprint(String),
    /// No history is held for it.
    #[error(
        "no history is held for series {0}: it has not alerted in the last {1} minutes and is \
         not among the series the history keeps (see ui.max_bytes), or it was never seen"
    )]
    NotRetained(String, u64),
}

impl DetailError {
    /// 400 or 404.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadFingerprint(_) => StatusCode::BAD_REQUEST,
            Self::NotRetained(..) => StatusCode::NOT_FOUND,
        }
    }
}

/// Six significant digits: an f32 score printed as f64 would show its
/// binary noise (0.6449999809265137).
fn score(x: f32) -> f64 {
    let x = f64::from(x);
    (x * 1e6).round() / 1e6
}

fn row(s: &Summary) -> SeriesRow {
    let unit = Unit::of_metric(s.key.name(), s.last.rate());
    let alerted = s.since_ms.is_some() || s.alert_peak > 0.0;
    SeriesRow {
        fingerprint: format!("{:016x}", s.key.fingerprint()),
        series: s.key.to_string(),
        name: s.key.name().to_owned(),
        labels: s.key.labels().iter().cloned().collect(),
        state: s.state.as_str(),
        severity: s.severity.filter(|_| s.state != AlertState::Quiet),
        firing_since: s.firing_since_ms.map(rfc3339_ms),
        last_alert_at: s.last_alert_ms.map(rfc3339_ms),
        reason: s.reason,
        since: s.since_ms.map(rfc3339_ms),
        ended_at: s
            .ended_ms
            .filter(|_| s.firing_since_ms.is_none())
            .map(rfc3339_ms),
        resolution: s.resolution.filter(|_| s.firing_since_ms.is_none()),
        alert_peak_score: alerted.then(|| score(s.alert_peak)),
        ts: rfc3339_ms(s.last.ts_ms),
        value: s.last.value,
        expected: s.last.expected,
        lower: s.last.lower,
        upper: s.last.upper,
        score: score(s.last.score),
        peak_score: score(s.peak),
        warming: s.last.warming(),
        rate: s.last.rate(),
        unit_symbol: unit.symbol.into_owned(),
        unit_prefixes: unit.prefixes.as_str(),
        points: s.points,
    }
}

fn compare(key: SortKey, a: &Summary, b: &Summary) -> std::cmp::Ordering {
    let f = |x: f64, y: f64| x.total_cmp(&y);
    match key {
        SortKey::Alert => (a.state, a.severity.filter(|_| a.state != AlertState::Quiet))
            .cmp(&(b.state, b.severity.filter(|_| b.state != AlertState::Quiet)))
            .then(f(a.last.score.into(), b.last.score.into())),
        SortKey::Series => a.key.cmp(&b.key),
        SortKey::Value => f(a.last.value, b.last.value),
        SortKey::Expected => f(a.last.expected, b.last.expected),
        SortKey::Score => f(a.last.score.into(), b.last.score.into()),
        SortKey::Peak => f(a.alert_peak.into(), b.alert_peak.into()),
        SortKey::Time => a.last.ts_ms.cmp(&b.last.ts_ms),
    }
}

/// The list for `query`: every matching series that is firing or alerted
/// recently, plus the `top` matching quiet ones with the highest last
/// scores, sorted by `query.sort` (ties by series, so the order is stable).
pub fn list(ui: &UiState, query: &ListQuery) -> SeriesList {
    let all = ui.history.summaries();
    let retained = all.len();
    let mut matched: Vec<Summary> = all.into_iter().filter(|s| query.matches(s)).collect();
    let n_matched = matched.len();
    let (mut listed, mut quiet): (Vec<Summary>, Vec<Summary>) = matched
        .drain(..)
        .partition(|s| s.state != AlertState::Quiet);
    quiet.sort_by(|a, b| compare(SortKey::Score, b, a).then_with(|| a.key.cmp(&b.key)));
    quiet.truncate(query.top);
    listed.extend(quiet);
    listed.sort_by(|a, b| {
        let o = compare(query.sort, a, b);
        let o = if query.descending { o.reverse() } else { o };
        o.then_with(|| a.key.cmp(&b.key))
    });
    SeriesList {
        generated_at: rfc3339_ms(chrono::Utc::now().timestamp_millis()),
        history_minutes: ui.config.history_minutes,
        threshold: ui.threshold,
        retained,
        matched: n_matched,
        series: listed.iter().map(row).collect(),
        incidents: ui.incidents.list(),
    }
}

/// The runs of firing samples (a stuck run apart from the others).
fn spans(samples: &[Sample]) -> Vec<AlertSpan> {
    let firing = samples
        .chunk_by(|a, b| a.alert().is_some() == b.alert().is_some() && a.stuck() == b.stuck());
    let n = samples.len();
    let mut seen = 0;
    let mut out = Vec::new();
    for run in firing {
        seen += run.len();
        let Some(severity) = run.iter().filter_map(Sample::alert).max() else {
            continue;
        };
        out.push(AlertSpan {
            from: rfc3339_ms(run[0].ts_ms),
            to: rfc3339_ms(run[run.len() - 1].ts_ms),
            severity,
            peak_score: score(run.iter().map(|s| s.score).fold(0.0, f32::max)),
            ongoing: seen == n,
            stuck: run[0].stuck(),
        });
    }
    out
}

/// Parses a fingerprint as the URL carries it.
pub fn parse_fingerprint(text: &str) -> Result<u64, DetailError> {
    if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(text, 16).map_err(|_| DetailError::BadFingerprint(text.to_owned()))
    } else {
        Err(DetailError::BadFingerprint(text.to_owned()))
    }
}

/// One series with its samples and alert spans.
pub fn detail(ui: &UiState, fingerprint: &str) -> Result<SeriesDetail, DetailError> {
    let fp = parse_fingerprint(fingerprint)?;
    let HistoryDetail { summary, samples } = ui.history.detail(fp).ok_or_else(|| {
        DetailError::NotRetained(fingerprint.to_owned(), ui.config.history_minutes)
    })?;
    let unit = crate::chart::unit_of_metric(summary.key.name());
    let unit = if summary.last.rate() {
        Some(format!("{}/s", unit.unwrap_or("")))
    } else {
        unit.map(str::to_owned)
    };
    Ok(SeriesDetail {
        row: row(&summary),
        unit,
        alerts: spans(&samples),
        samples: samples
            .iter()
            .map(|s| PointRow {
                ts_ms: s.ts_ms,
                value: s.value,
                expected: s.expected,
                lower: s.lower,
                upper: s.upper,
                score: score(s.score),
                warming: s.warming(),
                alert: s.alert(),
                stuck: s.stuck(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_print_back() {
        let q = ListQuery::parse(
            Some("label=host%3Dweb-01&label=dc=eu&sort=score&order=asc&top=5"),
            50,
        )
        .unwrap();
        assert_eq!(
            q.labels,
            [
                ("host".to_owned(), "web-01".to_owned()),
                ("dc".to_owned(), "eu".to_owned())
            ]
        );
        assert_eq!((q.sort, q.descending, q.top), (SortKey::Score, false, 5));
        let again = ListQuery::parse(Some(&q.to_query_string()), 5).unwrap();
        assert_eq!(again, q);
        let d = ListQuery::parse(None, 50).unwrap();
        assert_eq!((d.sort, d.descending, d.top), (SortKey::Alert, true, 50));
        assert_eq!(d.to_query_string(), "");
        assert!(ListQuery::parse(None, 50).unwrap().labels.is_empty());
        for bad in [
            "label=host",
            "sort=colour",
            "order=up",
            "top=x",
            "top=99999",
        ] {
            assert!(ListQuery::parse(Some(bad), 50).is_err(), "{bad}");
        }
        // Names sort A to Z unless asked otherwise.
        assert!(!ListQuery::parse(Some("sort=series"), 1).unwrap().descending);
    }

    #[test]
    fn queries_are_bounded_and_repeated_filters_count_once() {
        let filters = |n: usize| {
            (0..n)
                .map(|i| format!("label=k{i}%3Dv"))
                .collect::<Vec<_>>()
                .join("&")
        };
        assert_eq!(
            ListQuery::parse(Some(&filters(MAX_FILTERS)), 5)
                .unwrap()
                .labels
                .len(),
            MAX_FILTERS
        );
        let err = ListQuery::parse(Some(&filters(MAX_FILTERS + 1)), 5).unwrap_err();
        assert!(err.contains("label filters"), "{err}");
        let same = vec!["label=a%3Db"; 200].join("&");
        assert_eq!(ListQuery::parse(Some(&same), 5).unwrap().labels.len(), 1);
        let long = format!("label=a%3D{}", "x".repeat(MAX_QUERY_BYTES));
        let err = ListQuery::parse(Some(&long), 5).unwrap_err();
        assert!(err.contains("bytes"), "{err}");
    }

    #[test]
    fn fingerprints_are_16_hex_digits() {
        assert_eq!(parse_fingerprint("00000000000000ff").unwrap(), 255);
        for bad in ["ff", "zz00000000000000", "00000000000000ff0", "<script>"] {
            assert!(matches!(
                parse_fingerprint(bad),
                Err(DetailError::BadFingerprint(_))
            ));
        }
    }
}
