//! Incidents end to end: `anomalyd replay` (the binary, the daemon's
//! pipeline, notifier and sinks) on two hosts whose metrics are calm but
//! for one instant when all three of host `db-1` jump. That instant is one
//! incident: one `Incident opened.` log line listing its three members,
//! one incident notification on the webhook (updates aside, never a second
//! page), and every alert line and alert message naming it, with its
//! reason and since when.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

use anomalyd::demo::fleet::Rng;

/// Samples per series, one a minute.
const SAMPLES: i64 = 400;
/// The sample at which db-1's three metrics jump together.
const JUMP: i64 = 300;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;

/// Two hosts × three metrics: smooth daily-ish waves with seeded noise;
/// db-1's three jump by far more than their noise at [`JUMP`] for three
/// samples.
fn input() -> String {
    let mut rng = Rng(17);
    let mut out = String::new();
    for i in 0..SAMPLES {
        let ts = T0 + i * 60_000;
        for host in ["db-1", "web-1"] {
            for (m, (name, base)) in [
                ("cpu_usage_percent", 40.0),
                ("node_memory_used_bytes", 6.0e9),
                ("http_requests_per_second", 800.0),
            ]
            .into_iter()
            .enumerate()
            {
                let wave = (i as f64 / 60.0 + m as f64).sin() * 0.05;
                let mut v = base * (1.0 + wave + 0.005 * rng.normal());
                if host == "db-1" && (JUMP..JUMP + 3).contains(&i) {
                    v += base * 0.6;
                }
                let labels = BTreeMap::from([("host", host), ("dc", "eu")]);
                let line =
                    serde_json::json!({"series": name, "labels": labels, "ts": ts, "value": v});
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

type Bodies = Arc<Mutex<Vec<Value>>>;

async fn hook(State(got): State<Bodies>, body: Bytes) -> StatusCode {
    got.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).expect("JSON body"));
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosts_simultaneous_alerts_are_one_incident_on_the_log_and_the_webhook() {
    let got: Bodies = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(Arc::clone(&got));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("events.ndjson");
    std::fs::write(&data, input()).unwrap();
    let config = dir.path().join("anomalyd.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\nformat = \"json\"\n\
             [pipeline]\nworkers = 2\n\
             [ui]\nenabled = false\n\
             [detector.threshold]\nwarmup_events = 60\nwarmup_secs = 0\n\
             [alert]\nmax_event_age_secs = 0\n\
             [sinks.webhook]\nenabled = true\nurl = \"{url}\"\nmessages = \"both\"\n"
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_anomalyd");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(["replay", "--input"])
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("anomalyd runs")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let with = |message: &str| -> Vec<&Value> {
        lines.iter().filter(|l| l["message"] == message).collect()
    };

    // ---- The log: one incident for db-1, its three members.
    let jump_at = "2026-01-01T05:00:00.000Z";
    // Replayed at full speed, the incident may open and resolve between
    // two flushes of the notifier: its first line then says both.
    let opened: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("Incident opened")
        })
        .filter(|l| l["since"] == jump_at)
        .collect();
    assert_eq!(opened.len(), 1, "one page for the jump:\n{stderr}");
    let id = opened[0]["incident"].as_str().unwrap().to_owned();
    assert_eq!(opened[0]["group"], "host=db-1");
    assert_eq!(opened[0]["scope"], "group");
    let last = lines
        .iter()
        .rfind(|l| {
            l["incident"] == id.as_str() && l["message"].as_str().unwrap().starts_with("Incident")
        })
        .unwrap();
    assert!(
        last["message"].as_str().unwrap().ends_with("resolved."),
        "{stderr}"
    );
    assert_eq!(opened[0]["revision"], 1);
    assert_eq!(last["members"], 3, "{last}");
    // The alert lines say why and since when, in the series' unit, and
    // name the incident.
    let fired: Vec<&Value> = with("Anomaly alert firing.")
        .into_iter()
        .filter(|l| l["incident"] == id.as_str())
        .collect();
    assert_eq!(fired.len(), 3, "{stderr}");
    for l in &fired {
        assert_eq!(l["since"], jump_at);
        assert!(
            ["forecast", "level"].contains(&l["reason"].as_str().unwrap()),
            "{l}"
        );
        assert!(l["series"].as_str().unwrap().contains("host=\"db-1\""));
    }
    let mem = fired
        .iter()
        .find(|l| {
            l["series"]
                .as_str()
                .unwrap()
                .starts_with("node_memory_used_bytes")
        })
        .unwrap();
    assert!(mem["value"].as_str().unwrap().ends_with(" GB"), "{mem}");
    let ended: Vec<&Value> = with("Anomaly alert resolved.")
        .into_iter()
        .filter(|l| l["incident"] == id.as_str())
        .collect();
    assert_eq!(ended.len(), 3, "{stderr}");
    assert!(
        ended
            .iter()
            .all(|l| l["resolution"] == "returned" && l["since"] == jump_at)
    );

    // ---- The webhook: the same incident, opened once, every member
    // listed, top peak first; its alerts name it.
    let bodies = got.lock().unwrap().clone();
    let notes: Vec<&Value> = bodies
        .iter()
        .flat_map(|b| b["incidents"].as_array().unwrap())
        .filter(|i| i["id"] == id.as_str())
        .collect();
    assert_eq!(
        notes.iter().filter(|i| i["revision"] == 1).count(),
        1,
        "{notes:#?}"
    );
    let fin = notes.iter().max_by_key(|i| i["revision"].as_u64()).unwrap();
    assert_eq!(fin["status"], "resolved");
    assert_eq!(fin["group"], serde_json::json!({"host": "db-1"}));
    let peaks: Vec<f64> = fin["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["peak_score"].as_f64().unwrap())
        .collect();
    assert_eq!(peaks.len(), 3);
    assert!(peaks.windows(2).all(|w| w[0] >= w[1]), "{peaks:?}");
    let alerts: Vec<&Value> = bodies
        .iter()
        .flat_map(|b| b["alerts"].as_array().unwrap())
        .filter(|a| a["incident"] == id.as_str())
        .collect();
    assert_eq!(alerts.len(), 6, "three firing, three resolved");
    // web-1 never shared an incident with db-1.
    assert!(
        alerts.iter().all(|a| a["labels"]["host"] == "db-1"),
        "{alerts:#?}"
    );
}
