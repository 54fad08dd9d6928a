//! The HTML of the live page, rendered on the server.
//!
//! This module owns the markup: the index (`/`, the incidents, then a
//! table of series), the series page (`/series/<fingerprint>`, the chart
//! and its alerts) and error pages. States and statuses are shown by the
//! names the API gives them (`firing`, `recent`, `quiet`; `warning`,
//! `critical`; `resolved`), every number in the series' unit with its SI
//! prefix ([`crate::units`]). Every text that comes from data (series
//! names, label names and values, fingerprints from the URL) goes through
//! [`escape`]. The script (`assets/app.js`) keeps the same markup up to
//! date from the JSON documents of [`super::api`], inserting text with
//! `textContent` only.

use std::fmt::Write;

use super::UiState;
use super::api::{ListQuery, SeriesDetail, SeriesList, SeriesRow, SortKey};
use crate::alert::incident::{Incident, IncidentStatus, Scope, duration_text};
use crate::chart::{Chart, Expected, Point, escape};
use crate::units::{Prefixes, Unit};

/// How often the script refreshes the page, milliseconds.
pub const REFRESH_MS: u32 = 2000;

/// The unit a row's numbers are in.
fn unit_of(r: &SeriesRow) -> Unit {
    let prefixes = match r.unit_prefixes {
        "both" => Prefixes::Both,
        "none" => Prefixes::None,
        _ => Prefixes::Up,
    };
    Unit {
        symbol: r.unit_symbol.clone().into(),
        prefixes,
    }
}

/// An RFC 3339 time as the page prints it: `2026-01-01 12:03:00`.
fn when(iso: &str) -> String {
    iso.get(..19).unwrap_or(iso).replace('T', " ")
}

/// Milliseconds between two RFC 3339 times, if both read.
fn between(from: &str, to: &str) -> Option<i64> {
    let ms = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis())
    };
    Some(ms(to)? - ms(from)?)
}

fn head(s: &mut String, title: &str) {
    let _ = write!(
        s,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head>\n",
        escape(title)
    );
}

fn bar(s: &mut String, meta: &str) {
    let _ = writeln!(
        s,
        "<header class=\"bar\"><a class=\"brand\" href=\"/\">anomalyd</a>\
         <span class=\"meta\" id=\"meta\">{}</span>\
         <span class=\"live\" id=\"updated\">live</span></header>",
        escape(meta)
    );
}

fn tail(s: &mut String) {
    s.push_str("<script src=\"/ui/app.js\"></script>\n</body></html>\n");
}

/// A link to the index filtered by one more label.
fn filter_href(query: &ListQuery, name: &str, value: &str) -> String {
    let mut q = query.clone();
    let pair = (name.to_owned(), value.to_owned());
    if !q.labels.contains(&pair) {
        q.labels.push(pair);
    }
    format!("/?{}", q.to_query_string())
}

/// The state badge: its class and its text, the API's words
/// (`firing · critical`, `recent · warning`, `quiet`, `quiet · warming`).
fn state_badge(r: &SeriesRow) -> (String, String) {
    let sev = r.severity.map_or("", |s| s.as_str());
    match r.state {
        "firing" => (format!("badge firing {sev}"), format!("firing · {sev}")),
        "recent" => (format!("badge recent {sev}"), format!("recent · {sev}")),
        _ if r.warming => ("badge quiet".to_owned(), "quiet · warming".to_owned()),
        _ => ("badge quiet".to_owned(), "quiet".to_owned()),
    }
}

/// The columns: header text, sort key (if sortable), cell class.
const COLUMNS: [(&str, Option<SortKey>, &str); 9] = [
    ("State", Some(SortKey::Alert), "state"),
    ("Series and labels", Some(SortKey::Series), "name"),
    ("Reason", None, "reason"),
    ("Since (UTC)", None, "since"),
    ("Last value", Some(SortKey::Value), "num"),
    ("Expected", Some(SortKey::Expected), "num"),
    ("Band", None, "num band"),
    ("Score", Some(SortKey::Score), "num score"),
    ("Alert peak", Some(SortKey::Peak), "num peak"),
];

/// The metric name as the page shows it: `rate(name)` for a counter
/// learned as its rate.
fn display_name(r: &SeriesRow) -> String {
    if r.rate {
        format!("rate({})", r.name)
    } else {
        r.name.clone()
    }
}

/// The series in selector form, as `rate(...)` for a rate.
fn display_series(r: &SeriesRow) -> String {
    if r.rate {
        format!("rate({})", r.series)
    } else {
        r.series.clone()
    }
}

/// The since cell: when the current or last alert started, and for how
/// long it has fired (or fired, and how it ended).
fn since_cell(r: &SeriesRow) -> (String, String) {
    let Some(since) = &r.since else {
        return ("—".to_owned(), String::new());
    };
    let how = match (r.state, &r.ended_at) {
        ("firing", _) => between(since, &r.ts)
            .map(|d| format!("for {}", duration_text(d)))
            .unwrap_or_default(),
        (_, Some(end)) => {
            let lasted = between(since, end).map_or(String::new(), duration_text);
            match r.resolution {
                Some(res) => format!("lasted {lasted}, {}", res.as_str()),
                None => format!("lasted {lasted}"),
            }
        }
        _ => String::new(),
    };
    (when(since), how)
}

fn row(s: &mut String, query: &ListQuery, r: &SeriesRow) {
    let (badge_class, badge) = state_badge(r);
    let fp = escape(&r.fingerprint);
    let _ = write!(
        s,
        "<tr data-fingerprint=\"{fp}\" class=\"row state-{}\">\
         <td class=\"state\"><span class=\"{badge_class}\">{badge}</span></td>\
         <td class=\"name\"><a href=\"/series/{fp}\">{}</a><div class=\"labels\">",
        r.state,
        escape(&display_name(r))
    );
    for (k, v) in &r.labels {
        let pair = format!("{k}={v}");
        let _ = write!(
            s,
            "<a class=\"chip\" title=\"{}\" href=\"{}\">{}</a> ",
            escape(&pair),
            escape(&filter_href(query, k, v)),
            escape(&pair)
        );
    }
    let u = unit_of(r);
    let (since, how) = since_cell(r);
    let _ = writeln!(
        s,
        "</div></td><td class=\"reason\">{}</td>\
         <td class=\"since\">{}<span class=\"sub\">{}</span></td>\
         <td class=\"num value\">{}<span class=\"sub\">at {}</span></td><td class=\"num\">{}</td>\
         <td class=\"num band\">[{}, {}]</td><td class=\"num score\">{:.3}</td>\
         <td class=\"num peak\">{}</td></tr>",
        r.reason.map_or("—", |x| x.as_str()),
        escape(&since),
        escape(&how),
        escape(&u.format(r.value)),
        escape(when(&r.ts).get(11..).unwrap_or("")),
        escape(&u.format(r.expected)),
        escape(&u.format(r.lower)),
        escape(&u.format(r.upper)),
        r.score,
        r.alert_peak_score
            .map_or("—".to_owned(), |p| format!("{p:.3}")),
    );
}

/// Members an incident row names (the top ones).
const NAMED_MEMBERS: usize = 3;

/// The incident's status badge: `firing · critical`, `resolved · warning`.
fn incident_badge(i: &Incident) -> (String, String) {
    let sev = i.severity.as_str();
    let status = i.status.as_str();
    (
        format!("badge incident {status} {sev}"),
        format!("{status} · {sev}"),
    )
}

fn incident_row(s: &mut String, query: &ListQuery, i: &Incident) {
    let (class, badge) = incident_badge(i);
    let _ = write!(
        s,
        "<tr data-incident=\"{}\" class=\"incident status-{}\">\
         <td class=\"state\"><span class=\"{class}\">{badge}</span></td><td class=\"where\">",
        escape(&i.id),
        i.status.as_str()
    );
    match i.scope {
        Scope::Fleet => {
            let _ = write!(s, "<strong>fleet-wide</strong> · {} groups ", i.groups);
        }
        Scope::Group if i.group.is_empty() => s.push_str("one series "),
        Scope::Group => {
            for (k, v) in &i.group {
                let pair = format!("{k}={v}");
                let _ = write!(
                    s,
                    "<a class=\"chip\" title=\"{}\" href=\"{}\">{}</a> ",
                    escape(&pair),
                    escape(&filter_href(query, k, v)),
                    escape(&pair)
                );
            }
        }
    }
    let _ = write!(
        s,
        "<span class=\"sub\">{}</span></td><td class=\"members\"><span class=\"count\">{} series, {} firing</span>",
        escape(&i.id),
        i.members_total,
        i.firing
    );
    for m in i.members.iter().take(NAMED_MEMBERS) {
        let _ = write!(
            s,
            "<a class=\"member status-{}\" href=\"/series/{}\">{}</a>",
            m.status.as_str(),
            escape(&m.fingerprint),
            escape(&m.series)
        );
    }
    if i.members_total > NAMED_MEMBERS {
        let _ = write!(
            s,
            "<span class=\"sub\">and {} more</span>",
            i.members_total - NAMED_MEMBERS
        );
    }
    let top = i.members.first();
    let how = match (i.status, &i.ended_at) {
        (IncidentStatus::Firing, _) => between(&i.started_at, &i.updated_at)
            .map(|d| format!("for {}", duration_text(d)))
            .unwrap_or_default(),
        (_, Some(end)) => between(&i.started_at, end)
            .map(|d| format!("lasted {}", duration_text(d)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let _ = writeln!(
        s,
        "</td><td class=\"reason\">{}</td><td class=\"since\">{}<span class=\"sub\">{}</span></td>\
         <td class=\"num peak\">{}</td></tr>",
        top.map_or("—", |m| m.reason.as_str()),
        escape(&when(&i.started_at)),
        escape(&how),
        top.map_or("—".to_owned(), |m| format!("{:.3}", m.peak_score)),
    );
}

/// Closed incidents the index lists (the newest); the API has them all.
pub const CLOSED_SHOWN: usize = 5;

/// The incidents table (above the series): every open incident, then the
/// newest [`CLOSED_SHOWN`] closed ones.
fn incidents(s: &mut String, ui: &UiState, query: &ListQuery, list: &SeriesList) {
    s.push_str(
        "<h2 class=\"section\">Incidents</h2>\n<table class=\"incidents\" id=\"incidents\"><thead><tr>\
         <th class=\"state\">Status</th><th>Where</th><th>Members (top peak first)</th>\
         <th class=\"reason\">Reason</th><th class=\"since\">Since (UTC)</th>\
         <th class=\"num\">Peak</th></tr></thead>\n<tbody id=\"incident-rows\">\n",
    );
    let open = list
        .incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Firing)
        .count();
    let shown = open + CLOSED_SHOWN.min(list.incidents.len() - open);
    for i in &list.incidents[..shown] {
        incident_row(s, query, i);
    }
    let more = list.incidents.len() - shown;
    let _ = writeln!(
        s,
        "</tbody></table>\n<p class=\"more\" id=\"incidents-more\"{}>{more} older incidents of the \
         last {} min are in <a href=\"/api/v1/series\">/api/v1/series</a>.</p>\n\
         <p class=\"empty\" id=\"incidents-empty\"{}>No incident in the last {} \
         min: alerts that start together on one host, or on many hosts at once, show here as one.</p>",
        if more == 0 { " hidden" } else { "" },
        ui.config.history_minutes,
        if list.incidents.is_empty() {
            ""
        } else {
            " hidden"
        },
        ui.config.history_minutes
    );
}

/// `/`: the incidents, then the series that alerted recently and the most
/// anomalous now.
pub fn index(ui: &UiState, query: &ListQuery, list: &SeriesList) -> String {
    let mut s = String::with_capacity(8192 + list.series.len() * 512);
    head(&mut s, "anomalyd: live");
    let qs = query.to_query_string();
    let _ = writeln!(
        s,
        "<body data-page=\"index\" data-api=\"/api/v1/series?{}\" data-refresh-ms=\"{REFRESH_MS}\">",
        escape(&qs)
    );
    bar(
        &mut s,
        &format!(
            "{} series retained · alerts of the last {} min · threshold {}",
            list.retained, ui.config.history_minutes, ui.threshold
        ),
    );
    s.push_str("<main>\n");
    incidents(&mut s, ui, query, list);
    s.push_str(
        "<h2 class=\"section\">Series</h2>\n<form class=\"filters\" method=\"get\" action=\"/\">",
    );
    for (k, v) in &query.labels {
        let _ = write!(
            s,
            "<input type=\"hidden\" name=\"label\" value=\"{}={}\">",
            escape(k),
            escape(v)
        );
    }
    if query.sort != SortKey::Alert {
        let _ = write!(
            s,
            "<input type=\"hidden\" name=\"sort\" value=\"{}\">",
            query.sort.as_str()
        );
    }
    s.push_str(
        "<label>Filter by label <input name=\"label\" placeholder=\"host=web-01\" \
         autocomplete=\"off\"></label> <button type=\"submit\">Filter</button>",
    );
    for (i, (k, v)) in query.labels.iter().enumerate() {
        let mut without = query.clone();
        without.labels.remove(i);
        let _ = write!(
            s,
            " <a class=\"chip active\" title=\"remove this filter\" href=\"/?{}\">{}={} ×</a>",
            escape(&without.to_query_string()),
            escape(k),
            escape(v)
        );
    }
    let _ = writeln!(
        s,
        " <span class=\"count\" id=\"count\">{} of {} shown</span></form>",
        list.series.len(),
        list.matched
    );
    s.push_str("<table class=\"series\" id=\"series\"><thead><tr>");
    for (title, key, class) in COLUMNS {
        let Some(key) = key else {
            let _ = write!(s, "<th class=\"{class}\">{title}</th>");
            continue;
        };
        let mut q = query.clone();
        q.sort = key;
        let current = query.sort == key;
        q.descending = if current {
            !query.descending
        } else {
            key.default_descending()
        };
        let (arrow, aria) = match (current, query.descending) {
            (false, _) => ("", "none"),
            (true, true) => (" ▼", "descending"),
            (true, false) => (" ▲", "ascending"),
        };
        let _ = write!(
            s,
            "<th class=\"{class}\" aria-sort=\"{aria}\"><a href=\"/?{}\">{title}{arrow}</a></th>",
            escape(&q.to_query_string())
        );
    }
    s.push_str("</tr></thead>\n<tbody id=\"rows\">\n");
    for r in &list.series {
        row(&mut s, query, r);
    }
    let _ = write!(
        s,
        "</tbody></table>\n<p class=\"empty\" id=\"empty\"{}>No series to show yet: none \
         matches, or no event has arrived.</p>\n</main>\n",
        if list.series.is_empty() {
            ""
        } else {
            " hidden"
        }
    );
    tail(&mut s);
    s
}

/// The chart of one series (the SVG the page embeds and refreshes).
pub fn chart(d: &SeriesDetail) -> String {
    let points: Vec<Point> = d
        .samples
        .iter()
        .map(|p| Point {
            ts_ms: p.ts_ms,
            value: Some(p.value),
            model: Some(Expected {
                expected: p.expected,
                lower: p.lower,
                upper: p.upper,
            }),
            warming: p.warming,
            alert: p.alert,
            stuck: p.stuck,
        })
        .collect();
    Chart::new(&display_series(&d.row))
        .unit(d.unit.as_deref())
        .quantity(unit_of(&d.row))
        .render(&points)
}

/// The text of the alerts table's empty row.
const NO_ALERTS: &str = "No alert in the chart's window.";

/// `/series/<fingerprint>`: the chart, the latest numbers, the alerts.
pub fn series(ui: &UiState, d: &SeriesDetail) -> String {
    let r = &d.row;
    let fp = escape(&r.fingerprint);
    let mut s = String::with_capacity(16384 + d.samples.len() * 64);
    head(&mut s, &format!("{} · anomalyd", display_series(r)));
    let _ = writeln!(
        s,
        "<body data-page=\"series\" data-api=\"/api/v1/series/{fp}\" \
         data-chart=\"/series/{fp}/chart.svg\" data-refresh-ms=\"{REFRESH_MS}\">"
    );
    bar(
        &mut s,
        &format!(
            "alerts of the last {} min · threshold {}",
            ui.config.history_minutes, ui.threshold
        ),
    );
    let _ = write!(
        s,
        "<main>\n<p class=\"back\"><a href=\"/\">← all series</a></p>\n\
         <h1 class=\"series-name\">{}</h1>\n<p class=\"labels\">",
        escape(&display_name(r))
    );
    let q = ListQuery::new(ui.config.top_series);
    for (k, v) in &r.labels {
        let pair = format!("{k}={v}");
        let _ = write!(
            s,
            "<a class=\"chip\" title=\"{}\" href=\"{}\">{}</a> ",
            escape(&pair),
            escape(&filter_href(&q, k, v)),
            escape(&pair)
        );
    }
    let (badge_class, badge) = state_badge(r);
    let u = unit_of(r);
    let (since, how) = since_cell(r);
    s.push_str("</p>\n<dl class=\"stats\" id=\"stats\">");
    let stats: [(&str, &str, String); 10] = [
        ("state", "State", String::new()),
        (
            "reason",
            "Reason",
            r.reason.map_or("—".to_owned(), |x| x.as_str().to_owned()),
        ),
        (
            "since",
            "Since (UTC)",
            if how.is_empty() {
                since
            } else {
                format!("{since} · {how}")
            },
        ),
        ("value", "Last value", u.format(r.value)),
        ("expected", "Expected", u.format(r.expected)),
        (
            "band",
            "Band",
            format!("[{}, {}]", u.format(r.lower), u.format(r.upper)),
        ),
        ("score", "Score", format!("{:.3}", r.score)),
        (
            "peak",
            "Alert peak",
            r.alert_peak_score
                .map_or("—".to_owned(), |p| format!("{p:.3}")),
        ),
        ("ts", "Last seen (UTC)", when(&r.ts)),
        ("points", "Points held", r.points.to_string()),
    ];
    for (id, title, text) in stats {
        if id == "state" {
            let _ = write!(
                s,
                "<div><dt>{title}</dt><dd id=\"stat-state\"><span class=\"{badge_class}\">{badge}</span></dd></div>"
            );
        } else {
            let _ = write!(
                s,
                "<div><dt>{title}</dt><dd id=\"stat-{id}\">{}</dd></div>",
                escape(&text)
            );
        }
    }
    s.push_str("</dl>\n<figure class=\"chart\" id=\"chart\">");
    s.push_str(&chart(d));
    s.push_str(
        "</figure>\n<p class=\"readout\" id=\"readout\" aria-live=\"polite\">\
         Point at the chart to read an observation.</p>\n\
         <h2>Alerts in the chart</h2>\n<table class=\"alerts\" id=\"alerts\"><thead><tr>\
         <th>Severity</th><th>Kind</th><th>From (UTC)</th><th>To (UTC)</th><th>Peak score</th></tr></thead><tbody>\n",
    );
    for a in d.alerts.iter().rev() {
        let _ = writeln!(
            s,
            "<tr><td><span class=\"badge firing {sev}\">{sev}</span></td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td></tr>",
            if a.stuck {
                "stuck (repeated value)"
            } else {
                "value"
            },
            escape(&when(&a.from)),
            if a.ongoing {
                "ongoing".to_owned()
            } else {
                escape(&when(&a.to)).into_owned()
            },
            a.peak_score,
            sev = a.severity.as_str(),
        );
    }
    if d.alerts.is_empty() {
        let _ = writeln!(
            s,
            "<tr class=\"empty\"><td colspan=\"5\">{NO_ALERTS}</td></tr>"
        );
    }
    let _ = write!(
        s,
        "</tbody></table>\n<p class=\"links\"><a href=\"/api/v1/series/{fp}\">this series as JSON</a> · \
         <a href=\"/series/{fp}/chart.svg\">the chart as SVG</a></p>\n</main>\n"
    );
    tail(&mut s);
    s
}

/// An error page.
pub fn error(message: &str) -> String {
    let mut s = String::new();
    head(&mut s, "anomalyd: not found");
    s.push_str("<body data-page=\"error\">\n");
    bar(&mut s, "");
    let _ = write!(
        s,
        "<main><p class=\"back\"><a href=\"/\">← all series</a></p><p class=\"error\">{}</p></main>\n</body></html>\n",
        escape(message)
    );
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::alert::lifecycle::{AlertRule, AlertRuleConfig, Lifecycle};
    use crate::detector::Decision;
    use crate::event::SeriesKey;
    use crate::ui::UiConfig;
    use crate::ui::api::{detail, list};
    use crate::ui::history::{History, NO_SLOT};

    const EVIL: &str = "<script>window.__pwned=1</script>";

    fn ui_with(keys: &[SeriesKey]) -> UiState {
        let config = UiConfig::default();
        let history = History::new(config.limits(), 1, &prometheus::Registry::new()).unwrap();
        {
            let rule = AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap();
            let mut b = history.batch(0);
            for (i, key) in keys.iter().enumerate() {
                let mut slot = NO_SLOT;
                let mut lc = Lifecycle::default();
                for t in 0..20 {
                    let score = if t == 15 && i == 0 { 0.9 } else { 0.1 };
                    let d = Decision {
                        score,
                        expected: 1.0,
                        lower: 0.5,
                        upper: 1.5,
                        warm: t > 2,
                        reason: crate::threshold::Reason::Forecast,
                        onset: score,
                        new_normal: false,
                    };
                    let v = if score > 0.5 { 9.0 } else { 1.0 };
                    let ts = 1_767_225_600_000 + t * 60_000;
                    lc.step(&rule, ts, v, &d);
                    b.record(&mut slot, key, ts, v, &d, &lc);
                }
            }
        }
        UiState {
            history: Arc::new(history),
            incidents: Arc::new(crate::alert::notify::IncidentBoard::new(
                std::time::Duration::from_secs(3600),
            )),
            config,
            threshold: 0.5,
        }
    }

    #[test]
    fn label_values_and_names_are_escaped_everywhere() {
        let keys = [
            SeriesKey::new("cpu<b>", [("note", EVIL), ("host\"x", "a&b")]),
            SeriesKey::new("mem", [("host", "ok")]),
        ];
        let ui = ui_with(&keys);
        let q = ListQuery::parse(Some("label=note%3D%3Cscript%3E"), 50).unwrap();
        let all = ListQuery::parse(None, 50).unwrap();
        let fp = format!("{:016x}", keys[0].fingerprint());
        let d = detail(&ui, &fp).unwrap();
        for html in [
            index(&ui, &all, &list(&ui, &all)),
            index(&ui, &q, &list(&ui, &q)),
            series(&ui, &d),
            error(EVIL),
        ] {
            assert!(!html.contains("<script>window"), "{html}");
            assert!(!html.contains("<b>"), "{html}");
            assert!(!html.contains("host\"x"), "{html}");
            assert_eq!(
                html.matches("<script").count(),
                html.matches("<script src=\"/ui/app.js\">").count()
            );
        }
        let html = index(&ui, &all, &list(&ui, &all));
        assert!(html.contains("note=&lt;script&gt;window.__pwned=1&lt;/script&gt;"));
        assert!(html.contains("cpu&lt;b&gt;"));
        assert!(html.contains("host&quot;x=a&amp;b"));
        // The filter on `<script>` matches nothing and says so.
        assert!(index(&ui, &q, &list(&ui, &q)).contains("0 of 0 shown"));
    }

    #[test]
    fn the_index_lists_rows_with_links_and_sort_headers() {
        let keys = [
            SeriesKey::new("cpu", [("host", "a")]),
            SeriesKey::new("cpu", [("host", "b")]),
        ];
        let ui = ui_with(&keys);
        let q = ListQuery::parse(Some("sort=score"), 50).unwrap();
        let html = index(&ui, &q, &list(&ui, &q));
        assert_eq!(html.matches("<tr data-fingerprint=").count(), 2);
        let fp = format!("{:016x}", keys[0].fingerprint());
        assert!(html.contains(&format!("<a href=\"/series/{fp}\">cpu</a>")));
        assert!(
            html.contains(
                "aria-sort=\"descending\"><a href=\"/?sort=score&amp;order=asc\">Score ▼"
            )
        );
        assert!(
            html.contains(
                "class=\"chip\" title=\"host=a\" href=\"/?label=host%3Da&amp;sort=score\""
            )
        );
        // Series 0 alerted at t = 15 and resolved 3 events later: recent.
        assert!(html.contains("class=\"row state-recent\""), "{html}");
        let filtered = ListQuery::parse(Some("label=host=b"), 50).unwrap();
        let html = index(&ui, &filtered, &list(&ui, &filtered));
        assert_eq!(html.matches("<tr data-fingerprint=").count(), 1);
        assert!(html.contains("host=b ×"));
    }

    #[test]
    fn the_series_page_embeds_the_chart_and_its_alerts() {
        let key = SeriesKey::new("latency_seconds", [("host", "a")]);
        let ui = ui_with(std::slice::from_ref(&key));
        let fp = format!("{:016x}", key.fingerprint());
        let d = detail(&ui, &fp).unwrap();
        assert_eq!(d.alerts.len(), 1);
        assert_eq!(d.unit.as_deref(), Some("seconds"));
        let html = series(&ui, &d);
        assert!(html.contains("<svg"));
        assert!(html.contains("<path class=\"band\""));
        assert!(html.contains("class=\"alert-span critical\""));
        assert!(html.contains("value (seconds)"));
        assert!(html.contains("id=\"readout\""));
        assert!(html.contains("data-api=\"/api/v1/series/"));
    }

    /// A counter learned as its rate is shown as `rate(name)`, per second,
    /// in the list, on its page and in the chart's title.
    #[test]
    fn a_rate_says_so_on_the_page() {
        let key = SeriesKey::new("node_cpu_seconds_total", [("mode", "idle")]);
        let ui = ui_with(&[]);
        {
            let mut b = ui.history.batch(0);
            let (mut slot, lc) = (NO_SLOT, Lifecycle::default());
            let d = Decision::warm_at(0.1);
            b.record_kind(
                &mut slot,
                &key,
                1_767_225_600_000,
                0.93,
                &d,
                &lc,
                None,
                crate::counter::Kind::Rate,
            );
        }
        let all = ListQuery::parse(None, 50).unwrap();
        let l = list(&ui, &all);
        assert!(l.series[0].rate);
        let html = index(&ui, &all, &l);
        assert!(html.contains(">rate(node_cpu_seconds_total)</a>"), "{html}");
        let fp = format!("{:016x}", key.fingerprint());
        let d = detail(&ui, &fp).unwrap();
        assert_eq!(d.unit.as_deref(), Some("seconds/s"));
        let html = series(&ui, &d);
        assert!(html.contains("<h1 class=\"series-name\">rate(node_cpu_seconds_total)</h1>"));
        // CPU seconds per second, with the SI prefix.
        assert!(html.contains("930 ms/s"), "{html}");
        assert!(html.contains("rate(node_cpu_seconds_total{mode=&quot;idle&quot;})"));
    }

    /// Numbers in the series' unit with its SI prefix; reason, since and
    /// the alert's own peak in their columns; the API's state names.
    #[test]
    fn rows_say_why_and_since_in_the_series_unit() {
        let key = SeriesKey::new("node_memory_used_bytes", [("instance", "db-1:9100")]);
        let ui = ui_with(&[]);
        let rule = AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap();
        {
            let mut b = ui.history.batch(0);
            let (mut slot, mut lc) = (NO_SLOT, Lifecycle::default());
            for t in 0..12 {
                let score = if (3..5).contains(&t) { 0.95 } else { 0.05 };
                let mut d = Decision::warm_at(score);
                (d.expected, d.lower, d.upper) = (6.01e9, 5.98e9, 6.05e9);
                d.reason = crate::threshold::Reason::Level;
                let v = if score > 0.5 { 1.483e10 } else { 6.0e9 };
                let ts = 1_767_225_600_000 + t * 60_000;
                let tr = lc.step(&rule, ts, v, &d);
                b.record_kind(
                    &mut slot,
                    &key,
                    ts,
                    v,
                    &d,
                    &lc,
                    tr.as_ref(),
                    crate::counter::Kind::Value,
                );
            }
        }
        let all = ListQuery::parse(None, 50).unwrap();
        let l = list(&ui, &all);
        let r = &l.series[0];
        assert_eq!(r.state, "recent");
        assert_eq!(r.reason, Some(crate::threshold::Reason::Level));
        assert_eq!(r.since.as_deref(), Some("2026-01-01T00:03:00.000Z"));
        assert_eq!(r.ended_at.as_deref(), Some("2026-01-01T00:07:00.000Z"));
        assert_eq!(r.resolution, Some(crate::alert::Resolution::Returned));
        assert_eq!(r.alert_peak_score, Some(0.95), "the alert's own peak");
        assert!(r.peak_score < 0.95, "the decayed one is another field");
        assert_eq!((r.unit_symbol.as_str(), r.unit_prefixes), ("B", "up"));
        let html = index(&ui, &all, &l);
        assert!(
            html.contains("<td class=\"num value\">6 GB<span class=\"sub\">at 00:11:00</span>"),
            "{html}"
        );
        assert!(html.contains("[5.98 GB, 6.05 GB]"), "{html}");
        assert!(html.contains("<td class=\"reason\">level</td>"), "{html}");
        assert!(
            html.contains("2026-01-01 00:03:00<span class=\"sub\">lasted 4 min, returned</span>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"num peak\">0.950</td>"), "{html}");
        assert!(html.contains(">recent · critical</span>"), "{html}");
        assert!(html.contains(">Reason</th>") && html.contains(">Since (UTC)</th>"));
        // No incident: the table says so.
        assert!(html.contains("id=\"incidents-empty\">No incident in the last 60 min"));
        // Its page: the same words, and an alerts table.
        let fp = format!("{:016x}", key.fingerprint());
        let html = series(&ui, &detail(&ui, &fp).unwrap());
        assert!(html.contains("id=\"stat-value\">6 GB<"), "{html}");
        assert!(html.contains("id=\"stat-reason\">level<"), "{html}");
        assert!(html.contains("id=\"stat-peak\">0.950<"), "{html}");
        assert!(html.contains(" GB</text>"), "axis ticks in GB: {html}");
    }

    #[test]
    fn incidents_are_listed_above_the_series_and_empty_tables_say_so() {
        use crate::alert::incident::{IncidentConfig, Incidents};
        let key = SeriesKey::new("cpu", [("host", "web-01")]);
        let ui = ui_with(std::slice::from_ref(&key));
        let mut g = Incidents::new(&IncidentConfig::default());
        let mut a = crate::alert::sink::queue::tests::alert(
            &format!("{:016x}", key.fingerprint()),
            crate::alert::AlertStatus::Firing,
            9.0,
        );
        a.labels.insert("host".into(), "web-01".into());
        g.observe(a.into());
        for n in g.flush() {
            if let crate::alert::Notice::Incident(i) = n {
                ui.incidents.record(&i);
            }
        }
        let all = ListQuery::parse(None, 50).unwrap();
        let html = index(&ui, &all, &list(&ui, &all));
        let inc = html.find("<tr data-incident=").expect("an incident row");
        assert!(
            inc < html.find("<tr data-fingerprint=").unwrap(),
            "above the series"
        );
        assert!(html.contains(">firing · warning</span>"), "{html}");
        assert!(html.contains(">host=web-01</a>"), "{html}");
        assert!(html.contains("1 series, 1 firing"), "{html}");
        assert!(html.contains("id=\"incidents-empty\" hidden"), "{html}");
        // A series that never alerted: its alerts table says so.
        let quiet = SeriesKey::new("mem", [("host", "b")]);
        let ui = ui_with(&[key, quiet.clone()]);
        let fp = format!("{:016x}", quiet.fingerprint());
        let html = series(&ui, &detail(&ui, &fp).unwrap());
        assert!(html.contains("No alert in the chart's window."), "{html}");
    }
}
