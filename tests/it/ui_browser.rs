//! The live page in a real browser: the daemon on the mock broker with a
//! generated fleet (plus one series whose label value is markup), Debian's
//! headless Chromium driven over the WebDriver protocol by chromedriver.
//!
//! Checks the DOM of `/` (the incidents above the series, a row per
//! series with its reason and since when, label pairs that never break
//! inside, the markup label shown as text and never run, sorting and label
//! filters) and of a series page (the band's path, alert spans, axes, the
//! hover read-out of the point under the pointer, the chart updating live
//! without a reload), and saves screenshots to `target/ui-screenshots/`
//! (with `ANOMALYD_UPDATE_SCREENSHOTS=1`, also to `deploy/screenshots/`,
//! the README's pictures): the index, a series with the read-out, the
//! injected level shift and the injected ramp.
//!
//! The binaries are required: tests/run.sh installs them (`apt-get install -y
//! chromium chromium-driver`). `ANOMALYD_TEST_CHROMIUM` and
//! `ANOMALYD_TEST_CHROMEDRIVER` may point at others.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anomalyd::demo::fleet::{AnomalyKind, Fleet};
use base64::Engine;
use serde_json::{Value, json};

use crate::support::{self, TestProducer, client, free_port, poll_some, poll_until};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "metrics";

/// A label value that would run script if it were inserted as markup.
const EVIL: &str = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";

/// A label value that hides and disguises itself: a right-to-left override
/// (it would read "invoice-exe.pdf") and a NUL, which XML cannot carry.
const SPOOF: &str = "invoice-\u{202e}fdp.exe\u{0}";

/// [`SPOOF`] as the page must show it: every such character visible.
const SPOOF_SHOWN: &str = "invoice-\\u{202e}fdp.exe\\u{0}";

/// A headless Chromium session behind chromedriver; quits on drop.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(width: u32, height: u32) -> Self {
        let chromium = crate::real_parts::CHROMIUM.path();
        let chromedriver = crate::real_parts::CHROMEDRIVER.path();
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let profile = tempfile::tempdir().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        poll_until("chromedriver to answer", WAIT, || {
            let url = format!("{base}/status");
            async move { client().get(url).send().await.is_ok() }
        })
        .await;
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let resp: Value = client()
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("POST /session")
            .json()
            .await
            .expect("session JSON");
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {resp}"))
            .to_owned();
        let browser = Self {
            driver,
            port,
            session,
            _profile: profile,
        };
        // Size the viewport (what screenshots show), not the window.
        let chrome = browser
            .js(
                "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]",
                json!([]),
            )
            .await;
        let extra = |i: usize| chrome[i].as_u64().unwrap_or(0) as u32;
        browser
            .cmd(
                reqwest::Method::POST,
                "/window/rect",
                json!({"width": width + extra(0), "height": height + extra(1)}),
            )
            .await;
        browser
    }

    /// One WebDriver command; returns its `value`.
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!(
            "http://127.0.0.1:{}/session/{}{path}",
            self.port, self.session
        );
        let mut req = client().request(method, &url);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp: Value = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        if resp["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", resp["value"]);
        }
        resp["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the
    /// page and returns its result.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// The text of every element `selector` matches, in document order.
    async fn texts(&self, selector: &str) -> Vec<String> {
        let v = self
            .js(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)",
                json!([selector]),
            )
            .await;
        serde_json::from_value(v).expect("strings")
    }

    /// Moves the mouse to viewport coordinates.
    async fn move_to(&self, x: f64, y: f64) {
        let actions = json!({"actions": [{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "duration": 0, "origin": "viewport",
                         "x": x.round() as i64, "y": y.round() as i64}],
        }]});
        self.cmd(reqwest::Method::POST, "/actions", actions).await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let b64 = self
            .cmd(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }

    /// Polls `script` until it returns something other than null/false.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        poll_some(what, WAIT, || async {
            let v = self.js(script, json!([])).await;
            (!v.is_null() && v != Value::Bool(false)).then_some(v)
        })
        .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser even when the test failed: a blocking DELETE
        // (no runtime here), then the driver itself.
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.read_to_end(&mut Vec::new());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The PNG's width and height (from its IHDR chunk).
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

fn save_screenshot(name: &str, png: &[u8]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), png).unwrap();
    if std::env::var_os("ANOMALYD_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let dir = root.join("deploy/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// A steady series with one spike at sample 450, whose `note` label is
/// [`EVIL`].
fn evil_event(fleet: &Fleet, i: u64) -> Vec<u8> {
    // A cheap deterministic wobble is all this series needs.
    let noise = ((i * 2_654_435_761) % 1000) as f64 / 1000.0 - 0.5;
    let value = if (450..453).contains(&i) {
        60.0
    } else {
        10.0 + noise
    };
    serde_json::to_vec(&json!({
        "series": "checkout_errors_per_second",
        "labels": {"host": "web-01", "note": EVIL, "spoof": SPOOF},
        "ts": fleet.time_ms(i),
        "value": value,
    }))
    .unwrap()
}

fn fleet_events(fleet: &mut Fleet, i: u64) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fleet
        .sample(i)
        .into_iter()
        .map(|e| {
            let labels: std::collections::BTreeMap<_, _> = e.series.labels().iter().cloned().collect();
            let body = json!({"series": e.series.name(), "labels": labels, "ts": e.ts_ms, "value": e.value});
            (e.series.to_string(), serde_json::to_vec(&body).unwrap())
        })
        .collect();
    out.push(("evil".to_owned(), evil_event(fleet, i)));
    out
}

/// Samples of history: three days, so the pictures show series whose
/// level channel knows their daily season, as the demo's do. (A series a
/// day old is judged by the forecast alone, which follows a new level
/// within minutes: its level shift would end early and its return alert.)
const HISTORY: u64 = 3 * 1440;

/// Points the page holds per series (`ui.points_per_series`, default).
const POINTS_HELD: u64 = 720;

#[test]
fn the_live_page_in_a_real_browser() {
    // Four partitions: librdkafka's mock broker keeps a bounded log per
    // partition, and on two the oldest of the three days would be gone
    // before the daemon read them.
    let mock = support::cluster(&[(TOPIC, 4), ("alerts", 1)]);
    let bootstrap = mock.bootstrap_servers();
    support::runtime().block_on(async {
        let mut config = support::config(&bootstrap, "ui-browser", TOPIC);
        config.sinks.kafka.enabled = false;
        let running = anomalyd::app::start(config).await.expect("daemon starts");
        let base = format!("http://{}", running.metrics_addr);

        // Three days of history, clean but for its last five hours (as the
        // demo's is clean), there an anomaly every 15 samples; then live
        // samples until the test ends.
        let start_ms = chrono::Utc::now().timestamp_millis() - HISTORY as i64 * 60_000;
        let mut fleet = Fleet::new(3, 60, start_ms, HISTORY - 300, 15, 42);
        // The last level shift and the last ramp (drift) injected into the
        // history, an hour before its end or more, for their pictures.
        let injected = |kind: AnomalyKind| -> String {
            let inj = fleet
                .injections
                .iter()
                .rev()
                .find(|i| i.kind == kind && i.start + i.len + 60 < HISTORY)
                .expect("one in the history");
            format!("{:016x}", fleet.series[inj.series].key.fingerprint())
        };
        let (level_shift_fp, ramp_fp) = (injected(AnomalyKind::LevelShift), injected(AnomalyKind::Drift));
        let producer = Arc::new(TestProducer::new(&bootstrap));
        for i in 0..HISTORY {
            for (key, body) in fleet_events(&mut fleet, i) {
                producer.send(TOPIC, None, &key, &body);
            }
        }
        producer.flush();
        let stop = Arc::new(AtomicBool::new(false));
        let live = {
            let (producer, stop) = (Arc::clone(&producer), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = HISTORY;
                while !stop.load(Ordering::SeqCst) {
                    for (key, body) in fleet_events(&mut fleet, i) {
                        producer.send(TOPIC, None, &key, &body);
                    }
                    producer.flush();
                    i += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        let series_count = 3 * 4 + 1;
        // Every series held, with its history, some alerts among them, and
        // their incidents.
        let list: Value = poll_some("the history of every series", WAIT, || {
            let url = format!("{base}/api/v1/series");
            async move {
                let list: Value = serde_json::from_str(&support::get(&url).await.1).ok()?;
                let rows = list["series"].as_array()?;
                let full = rows.len() == series_count
                    && rows.iter().all(|r| r["points"].as_u64() >= Some(POINTS_HELD));
                let alerted = rows.iter().filter(|r| r["state"] != "quiet").count();
                let incidents = list["incidents"].as_array()?.len();
                (full && alerted >= 3 && incidents >= 1).then_some(list)
            }
        })
        .await;
        let evil_fp = list["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["labels"]["note"] == EVIL)
            .expect("the markup-labelled series is listed")["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned();

        let browser = Browser::start(1280, 1000).await;

        // ---- `/`: rows, markup shown as text, live refresh, sort, filter.
        browser.goto(&format!("{base}/")).await;
        let xss_check = r#"
            const row = [...document.querySelectorAll('#rows tr')]
                .find(r => r.querySelector('td.name > a').textContent === 'checkout_errors_per_second');
            return {
                rows: document.querySelectorAll('#rows tr').length,
                pwned: window.__pwned === undefined ? null : window.__pwned,
                scripts: document.scripts.length,
                imgs: document.images.length,
                chips: row ? [...row.querySelectorAll('a.chip')].map(a => a.textContent) : null,
                refreshes: document.body.dataset.refreshes || null,
            };"#;
        let server_dom = browser.js(xss_check, json!([])).await;
        browser
            .wait_for(
                "the table's live refresh",
                "return Number(document.body.dataset.refreshes) >= 2",
            )
            .await;
        let live_dom = browser.js(xss_check, json!([])).await;
        for dom in [&server_dom, &live_dom] {
            assert_eq!(dom["rows"], series_count, "{dom}");
            assert_eq!(dom["pwned"], Value::Null, "markup in a label ran: {dom}");
            assert_eq!(dom["scripts"], 1, "{dom}");
            assert_eq!(dom["imgs"], 0, "{dom}");
            let chips: Vec<&str> = dom["chips"]
                .as_array()
                .expect("the markup-labelled row")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(chips.contains(&format!("note={EVIL}").as_str()), "{dom}");
            assert!(chips.contains(&format!("spoof={SPOOF_SHOWN}").as_str()), "{dom}");
        }
        // Why and since: the reason and since columns say what the API
        // says, the peak is the alert's own, and the states are named as
        // the API names them.
        let cells = browser
            .js(
                r#"const heads = [...document.querySelectorAll('#series thead th')].map(t => t.textContent.trim());
                   const col = (name) => heads.findIndex(h => h.startsWith(name));
                   return {
                     heads,
                     rows: [...document.querySelectorAll('#rows tr')].map(tr => {
                       const td = tr.querySelectorAll('td');
                       return {
                         fp: tr.dataset.fingerprint,
                         state: td[col('State')].textContent,
                         reason: td[col('Reason')].textContent,
                         since: td[col('Since')].firstChild ? td[col('Since')].firstChild.textContent : '',
                         peak: td[col('Alert peak')].textContent,
                         value: td[col('Last value')].firstChild.textContent,
                       };
                     }),
                   };"#,
                json!([]),
            )
            .await;
        let heads: Vec<&str> = cells["heads"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for h in ["Reason", "Since (UTC)", "Alert peak"] {
            assert!(heads.iter().any(|x| x.starts_with(h)), "{heads:?}");
        }
        let api: Value = serde_json::from_str(&support::get(&format!("{base}/api/v1/series")).await.1).unwrap();
        let by_fp = |fp: &str| -> Value {
            api["series"].as_array().unwrap().iter().find(|r| r["fingerprint"] == fp).cloned().unwrap_or(Value::Null)
        };
        let mut alerted_rows = 0;
        for c in cells["rows"].as_array().unwrap() {
            let r = by_fp(c["fp"].as_str().unwrap());
            if r.is_null() {
                continue; // listed after the page's last refresh only
            }
            let state = c["state"].as_str().unwrap();
            assert!(
                ["firing · ", "recent · ", "quiet"].iter().any(|p| state.starts_with(p)),
                "the API's state names: {c}"
            );
            // The stream is live: compare rows the API still sees alike.
            if !state.starts_with(r["state"].as_str().unwrap())
                || r["state"] == "quiet"
                || r["since"].is_null()
            {
                continue;
            }
            alerted_rows += 1;
            if let Some(reason) = r["reason"].as_str() {
                assert_eq!(c["reason"], reason, "{c} vs {r}");
            }
            let since = r["since"].as_str().unwrap()[..19].replace('T', " ");
            assert_eq!(c["since"], since.as_str(), "{c} vs {r}");
            // A firing alert's peak may have grown since the page's refresh.
            let api_peak = r["alert_peak_score"].as_f64().unwrap();
            if r["state"] == "firing" {
                let page_peak: f64 = c["peak"].as_str().unwrap().parse().unwrap();
                assert!(page_peak <= api_peak + 5e-4, "{c} vs {r}");
            } else {
                assert_eq!(c["peak"], format!("{api_peak:.3}").as_str(), "{c} vs {r}");
            }
            if r["name"] == "memory_used_bytes" {
                assert!(c["value"].as_str().unwrap().ends_with(" GB"), "{c}");
            }
        }
        assert!(alerted_rows >= 1, "{cells}");
        // An incident row, above the series, with its members.
        let incidents = browser
            .js(
                r#"const rows = [...document.querySelectorAll('#incident-rows tr')];
                   const table = document.getElementById('incidents');
                   return {
                     above: table.compareDocumentPosition(document.getElementById('series')) === Node.DOCUMENT_POSITION_FOLLOWING,
                     empty_hidden: document.getElementById('incidents-empty').hidden,
                     rows: rows.map(tr => ({
                       id: tr.dataset.incident,
                       status: tr.querySelector('td.state').textContent,
                       members: [...tr.querySelectorAll('a.member')].map(a => a.getAttribute('href')),
                       count: tr.querySelector('td.members .count').textContent,
                       reason: tr.querySelector('td.reason').textContent,
                     })),
                   };"#,
                json!([]),
            )
            .await;
        assert_eq!(incidents["above"], true, "{incidents}");
        assert_eq!(incidents["empty_hidden"], true, "{incidents}");
        let rows = incidents["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{incidents}");
        for row in rows {
            let status = row["status"].as_str().unwrap();
            assert!(
                ["firing · ", "resolved · "].iter().any(|p| status.starts_with(p)),
                "{row}"
            );
            assert!(!row["members"].as_array().unwrap().is_empty(), "{row}");
            assert!(row["members"][0].as_str().unwrap().starts_with("/series/"), "{row}");
            assert!(row["count"].as_str().unwrap().contains(" series, "), "{row}");
            assert!(
                ["forecast", "level", "drift", "stuck"].contains(&row["reason"].as_str().unwrap()),
                "{row}"
            );
        }
        // Label pairs wrap between each other, never inside one.
        let broken = browser
            .js(
                r#"return [...document.querySelectorAll('a.chip')]
                     .filter(a => a.getClientRects().length !== 1)
                     .map(a => a.textContent);"#,
                json!([]),
            )
            .await;
        assert_eq!(broken, json!([]), "label pairs broken across lines");
        let index_png = browser.screenshot().await;
        assert_eq!(png_size(&index_png), (1280, 1000));
        save_screenshot("index.png", &index_png);

        browser.goto(&format!("{base}/?sort=score")).await;
        let scores: Vec<f64> = browser
            .texts("#rows td.score")
            .await
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(scores.len(), series_count);
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "sorted by score, highest first: {scores:?}"
        );
        browser.goto(&format!("{base}/?label=host%3Dweb-02")).await;
        let hosts = browser.texts("#rows td.name .labels").await;
        assert_eq!(hosts.len(), 4, "{hosts:?}");
        assert!(hosts.iter().all(|h| h.contains("host=web-02")), "{hosts:?}");

        // ---- a series page: band, alert spans, axes, hover, live update.
        // The alerted fleet series with the strongest alert held.
        let mut strongest: Option<(f64, String)> = None;
        for r in list["series"].as_array().unwrap() {
            if !r["labels"]["note"].is_null() || r["state"] == "quiet" {
                continue;
            }
            let fp = r["fingerprint"].as_str().unwrap().to_owned();
            let d: Value =
                serde_json::from_str(&support::get(&format!("{base}/api/v1/series/{fp}")).await.1)
                    .unwrap();
            let peak = d["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|a| a["peak_score"].as_f64())
                .fold(0.0, f64::max);
            if strongest.as_ref().is_none_or(|(p, _)| peak > *p) {
                strongest = Some((peak, fp));
            }
        }
        let (_, fp) = strongest.expect("an alerted fleet series");
        let fp = fp.as_str();
        browser.goto(&format!("{base}/series/{fp}")).await;
        let chart = browser
            .js(
                r#"const svg = document.querySelector('#chart svg');
                   return {
                     band: svg.querySelector('path.band').getAttribute('d').length,
                     expected: svg.querySelectorAll('path.expected').length,
                     spans: [...svg.querySelectorAll('g.alert-span')].map(g => g.dataset.severity),
                     legend: svg.querySelector('g.legend').textContent,
                     dates: [...svg.querySelectorAll('text.date')].map(t => t.textContent),
                     unit: svg.querySelector('text.unit').textContent,
                   };"#,
                json!([]),
            )
            .await;
        assert!(chart["band"].as_u64() > Some(100), "{chart}");
        assert_eq!(chart["expected"], 1);
        let spans = chart["spans"].as_array().unwrap();
        assert!(!spans.is_empty(), "alert spans on the chart: {chart}");
        assert!(
            spans
                .iter()
                .all(|s| s == "warning" || s == "critical")
        );
        for word in ["value", "expected", "normal band", "warm-up", "critical alert"] {
            assert!(chart["legend"].as_str().unwrap().contains(word), "{chart}");
        }
        assert!(!chart["dates"].as_array().unwrap().is_empty(), "{chart}");
        assert!(chart["unit"].as_str().unwrap().starts_with("value"), "{chart}");
        // The stats say why and since too.
        let stats = browser
            .js(
                "return ['reason', 'since', 'peak'].map(id => document.getElementById('stat-' + id).textContent)",
                json!([]),
            )
            .await;
        assert!(
            ["forecast", "level", "drift", "stuck"].contains(&stats[0].as_str().unwrap()),
            "{stats}"
        );
        assert!(stats[1].as_str().unwrap().len() >= 19, "{stats}");
        assert!(stats[2].as_str().unwrap().parse::<f64>().is_ok(), "{stats}");

        // Hover the middle of an alert span (a critical one if any): the read-out shows
        // that observation, as the API has it.
        browser
            .wait_for("the samples for the read-out", "return document.body.dataset.ready === '1'")
            .await;
        let target = browser
            .js(
                r#"const spans = [...document.querySelectorAll('#chart g.alert-span')];
                   const g = spans.find(g => g.dataset.severity === 'critical') || spans[spans.length - 1];
                   const r = g.querySelector('rect').getBoundingClientRect();
                   return [r.left + r.width / 2, r.top + r.height / 2];"#,
                json!([]),
            )
            .await;
        let (x, y) = (target[0].as_f64().unwrap(), target[1].as_f64().unwrap());
        browser.move_to(x, y).await;
        let readout = browser
            .wait_for(
                "the hover read-out",
                r#"const r = document.getElementById('readout');
                   return r.dataset.ts ? [r.dataset.ts, r.textContent,
                     document.querySelectorAll('#chart line.cursor').length] : null;"#,
            )
            .await;
        let ts: i64 = readout[0].as_str().unwrap().parse().unwrap();
        let text = readout[1].as_str().unwrap();
        assert_eq!(readout[2], 1, "a cursor line on the chart");
        let detail: Value =
            serde_json::from_str(&support::get(&format!("{base}/api/v1/series/{fp}")).await.1)
                .unwrap();
        let sample = detail["samples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["ts_ms"] == ts)
            .unwrap_or_else(|| panic!("the read-out's time {ts} is a sample's"));
        assert!(sample["alert"].is_string(), "hovered an alert: {sample}");
        let severity = sample["alert"].as_str().unwrap();
        if sample["stuck"] == true {
            // A stuck alert says so, not "critical alert" over a value
            // that may sit inside the band.
            assert!(
                text.contains(&format!("stuck alert (the value repeats; {severity})")),
                "{text}"
            );
        } else {
            assert!(text.contains(&format!("{severity} alert")), "{text}");
        }
        assert!(text.contains(" UTC · value "), "{text}");
        assert!(text.contains(&format!("score {:.3}", sample["score"].as_f64().unwrap())), "{text}");
        // The README's picture: a chart with the read-out on an alert.
        let series_png = browser.screenshot().await;
        assert_eq!(png_size(&series_png), (1280, 1000));
        save_screenshot("series.png", &series_png);

        // Live: newer observations reach the chart without a reload, and
        // the read-out stays where the pointer is.
        let t1 = browser
            .js("return Number(document.querySelector('#chart svg').dataset.t1)", json!([]))
            .await
            .as_i64()
            .unwrap();
        browser
            .wait_for(
                "a newer observation on the chart",
                &format!(
                    "return Number(document.querySelector('#chart svg').dataset.t1) > {t1} \
                     && document.querySelectorAll('#chart line.cursor').length === 1"
                ),
            )
            .await;

        // The injected level shifts (40 minutes) and ramps (an hour) are
        // each one alert spanning the anomaly, none at the return (the
        // chart holds two of each: one alert each, of 40 minutes or more;
        // one going on in the live part may be younger).
        for (fp, minutes) in [(&level_shift_fp, 40), (&ramp_fp, 40)] {
            let d: Value =
                serde_json::from_str(&support::get(&format!("{base}/api/v1/series/{fp}")).await.1)
                    .unwrap();
            let at = |a: &Value, k: &str| {
                chrono::DateTime::parse_from_rfc3339(a[k].as_str().unwrap()).unwrap()
            };
            let spans: Vec<i64> = d["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["ongoing"] != true)
                .map(|a| (at(a, "to") - at(a, "from")).num_minutes())
                .collect();
            assert!(
                !spans.is_empty() && spans.iter().all(|&m| m >= minutes),
                "one alert per anomaly, spanning it: {spans:?} minutes in {}",
                d["series"]
            );
        }

        // The pictures of the injected level shift and ramp.
        for (fp, name) in [(&level_shift_fp, "level-shift.png"), (&ramp_fp, "ramp.png")] {
            browser.goto(&format!("{base}/series/{fp}")).await;
            browser
                .wait_for("the chart", "return document.querySelector('#chart svg path.value') !== null")
                .await;
            let png = browser.screenshot().await;
            assert_eq!(png_size(&png), (1280, 1000));
            save_screenshot(name, &png);
        }

        // The markup-labelled series' own page shows it as text too.
        browser.goto(&format!("{base}/series/{evil_fp}")).await;
        let page = browser
            .js(
                r#"return {
                     pwned: window.__pwned === undefined ? null : window.__pwned,
                     scripts: document.scripts.length,
                     chips: [...document.querySelectorAll('p.labels a.chip')].map(a => a.textContent),
                     title: document.querySelector('#chart svg title').textContent,
                   };"#,
                json!([]),
            )
            .await;
        assert_eq!(page["pwned"], Value::Null, "{page}");
        assert_eq!(page["scripts"], 1, "{page}");
        assert!(page["chips"].as_array().unwrap().iter().any(|c| c == &json!(format!("note={EVIL}"))), "{page}");
        assert!(page["chips"].as_array().unwrap().iter().any(|c| c == &json!(format!("spoof={SPOOF_SHOWN}"))), "{page}");
        assert!(page["title"].as_str().unwrap().contains(SPOOF_SHOWN), "{page}");
        // The chart with a NUL in its title is well-formed XML: the script
        // parses each refresh of it as XML and counts only the good ones.
        browser
            .wait_for(
                "two live refreshes of the chart with a NUL in a label",
                "return Number(document.body.dataset.refreshes) >= 2",
            )
            .await;
        // The title is the selector, whose quotes are backslash-escaped.
        assert!(
            page["title"]
                .as_str()
                .unwrap()
                .contains("note=\"<script>window.__pwned=1</script><img src=x onerror="),
            "{page}"
        );

        drop(browser);
        stop.store(true, Ordering::SeqCst);
        live.join().unwrap();
        running.shutdown();
        running.wait().await.expect("clean shutdown");
    });
}
