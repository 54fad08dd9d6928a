//! The HTML of the live page, rendered on the server.
//!
//! This module owns the markup: the index (`/`, a table of series), the
//! series page (`/series/<fingerprint>`, the chart and its alerts) and
//! error pages. Every text that comes from data (series names, label names
//! and values, fingerprints from the URL) goes through [`escape`]. The
//! script (`assets/app.js`) keeps the same markup up to date from the JSON
//! documents of [`super::api`], inserting text with `textContent` only.

use std::fmt::Write;

use super::UiState;
use super::api::{ListQuery, SeriesDetail, SeriesList, SeriesRow, SortKey};
use crate::chart::{Chart, Expected, Point, escape};

/// How often the script refreshes the page, milliseconds.
pub const REFRESH_MS: u32 = 2000;

/// A number as the page prints it: five significant digits, scientific
/// outside 0.001..1e6, `∞` for an unbounded band edge. `assets/app.js`
/// formats the same way.
pub fn number(v: f64) -> String {
    if !v.is_finite() || v.abs() >= 1e300 {
        return if v < 0.0 { "−∞" } else { "∞" }.to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = (4 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
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

fn state_badge(r: &SeriesRow) -> (String, String) {
    let sev = r.severity.map_or("", |s| s.as_str());
    match r.state {
        "firing" => (format!("badge firing {sev}"), sev.to_owned()),
        "recent" => (format!("badge recent {sev}"), "resolved".to_owned()),
        _ if r.warming => ("badge quiet".to_owned(), "warm-up".to_owned()),
        _ => ("badge quiet".to_owned(), "ok".to_owned()),
    }
}

/// The columns: header text, sort key (if sortable), cell class.
const COLUMNS: [(&str, Option<SortKey>, &str); 9] = [
    ("Alert", Some(SortKey::Alert), "state"),
    ("Series", Some(SortKey::Series), "name"),
    ("Labels", None, "labels"),
    ("Last value", Some(SortKey::Value), "num"),
    ("Expected", Some(SortKey::Expected), "num"),
    ("Band", None, "num band"),
    ("Score", Some(SortKey::Score), "num score"),
    ("Peak", Some(SortKey::Peak), "num"),
    ("Last seen (UTC)", Some(SortKey::Time), "time"),
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

fn row(s: &mut String, query: &ListQuery, r: &SeriesRow) {
    let (badge_class, badge) = state_badge(r);
    let fp = escape(&r.fingerprint);
    let _ = write!(
        s,
        "<tr data-fingerprint=\"{fp}\" class=\"row state-{}\">\
         <td class=\"state\"><span class=\"{badge_class}\">{badge}</span></td>\
         <td class=\"name\"><a href=\"/series/{fp}\">{}</a></td><td class=\"labels\">",
        r.state,
        escape(&display_name(r))
    );
    for (k, v) in &r.labels {
        let _ = write!(
            s,
            "<a class=\"chip\" href=\"{}\">{}={}</a> ",
            escape(&filter_href(query, k, v)),
            escape(k),
            escape(v)
        );
    }
    let _ = writeln!(
        s,
        "</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
         <td class=\"num band\">[{}, {}]</td><td class=\"num score\">{:.3}</td>\
         <td class=\"num\">{:.3}</td><td class=\"time\">{}</td></tr>",
        number(r.value),
        number(r.expected),
        number(r.lower),
        number(r.upper),
        r.score,
        r.peak_score,
        escape(r.ts.get(..19).unwrap_or(&r.ts)).replace('T', " ")
    );
}

/// `/`: the series that alerted recently and the most anomalous now.
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
    s.push_str("<main>\n<form class=\"filters\" method=\"get\" action=\"/\">");
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
        })
        .collect();
    Chart::new(&display_series(&d.row))
        .unit(d.unit.as_deref())
        .render(&points)
}

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
        let _ = write!(
            s,
            "<a class=\"chip\" href=\"{}\">{}={}</a> ",
            escape(&filter_href(&q, k, v)),
            escape(k),
            escape(v)
        );
    }
    let (badge_class, badge) = state_badge(r);
    let unit = d.unit.as_deref().map_or(String::new(), |u| format!(" {u}"));
    s.push_str("</p>\n<dl class=\"stats\" id=\"stats\">");
    let stats: [(&str, &str, String); 7] = [
        ("state", "Alert", String::new()),
        ("value", "Last value", format!("{}{unit}", number(r.value))),
        (
            "expected",
            "Expected",
            format!("{}{unit}", number(r.expected)),
        ),
        (
            "band",
            "Band",
            format!("[{}, {}]", number(r.lower), number(r.upper)),
        ),
        (
            "score",
            "Score",
            format!("{:.3} (peak {:.3})", r.score, r.peak_score),
        ),
        (
            "ts",
            "Last seen (UTC)",
            r.ts.get(..19).unwrap_or(&r.ts).replace('T', " "),
        ),
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
         <th>Severity</th><th>From (UTC)</th><th>To (UTC)</th><th>Peak score</th></tr></thead><tbody>\n",
    );
    for a in d.alerts.iter().rev() {
        let _ = writeln!(
            s,
            "<tr><td><span class=\"badge firing {sev}\">{sev}</span></td><td>{}</td><td>{}</td><td class=\"num\">{:.3}</td></tr>",
            escape(a.from.get(..19).unwrap_or(&a.from)).replace('T', " "),
            if a.ongoing {
                "ongoing".to_owned()
            } else {
                escape(a.to.get(..19).unwrap_or(&a.to)).replace('T', " ")
            },
            a.peak_score,
            sev = a.severity.as_str(),
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
        assert!(html.contains("class=\"chip\" href=\"/?label=host%3Da&amp;sort=score\""));
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
        assert!(html.contains("0.93 seconds/s"), "{html}");
        assert!(html.contains("rate(node_cpu_seconds_total{mode=&quot;idle&quot;})"));
    }

    #[test]
    fn numbers_print_like_the_script_prints_them() {
        assert_eq!(number(0.41970123), "0.4197");
        assert_eq!(number(1829.1082), "1829.1");
        assert_eq!(number(6.0e9), "6.000e9");
        assert_eq!(number(0.0001234), "1.234e-4");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(f64::MAX), "∞");
        assert_eq!(number(f64::MIN), "−∞");
    }
}
