//! The Alertmanager sink against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, 0.25), started on a free loopback port with a
//! temporary config and storage directory.
//!
//! The binary is required: tests/run.sh installs it (`apt-get install -y
//! prometheus-alertmanager`). `ANOMALYD_TEST_ALERTMANAGER` may point at
//! another binary.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anomalyd::alert::sink::SinkMetrics;
use anomalyd::alert::sink::alertmanager::{AlertmanagerSink, AlertmanagerSinkConfig, NAME};
use anomalyd::alert::sink::{RetryConfig, SinkHandle, SinkSection};
use anomalyd::alert::{AlertStatus, Severity};
use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use tokio::time::Instant;

use crate::support::{client, firing, free_port, metrics, poll_some, poll_until, resolved};

const WAIT: Duration = Duration::from_secs(30);

/// A running Alertmanager, killed on drop.
struct Alertmanager {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Alertmanager {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default()
    }

    async fn start() -> Self {
        Self::start_with("  group_wait: 1s\n").await
    }

    /// Started with `route` (indented keys) added to its one route.
    async fn start_with(route: &str) -> Self {
        let bin = crate::real_parts::ALERTMANAGER.path();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!("route:\n  receiver: blackhole\n{route}receivers:\n  - name: blackhole\n"),
        )
        .unwrap();
        let storage = dir.path().join("data");
        std::fs::create_dir(&storage).unwrap();
        let log = std::fs::File::create(dir.path().join("am.log")).unwrap();
        let port = free_port();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty disables the gossip cluster (which would bind :9094).
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut am = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let client = client();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!("alertmanager exited with {status}:\n{}", am.log());
            }
            let ready = client
                .get(format!("{}/-/ready", am.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager not ready:\n{}",
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The alerts `GET /api/v2/alerts` returns (active, unresolved).
    async fn alerts(&self) -> Vec<Value> {
        let r = client()
            .get(format!("{}/api/v2/alerts", self.base))
            .send()
            .await
            .expect("GET alerts");
        assert!(r.status().is_success(), "{}", r.status());
        r.json::<Vec<Value>>().await.expect("JSON")
    }

    /// The alert with label host=`host`, if Alertmanager lists it.
    async fn find(&self, host: &str) -> Option<Value> {
        self.alerts()
            .await
            .into_iter()
            .find(|a| a["labels"]["host"] == host)
    }
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test]
async fn firing_shows_up_active_is_resent_and_resolution_ends_it() {
    let am = Alertmanager::start().await;
    let mut cfg = SinkSection::new(AlertmanagerSinkConfig {
        enabled: true,
        url: am.base.clone(),
        resend_interval_secs: 1,
        generator_url: Some("http://dashboards.example/s/{fingerprint}".into()),
        ..AlertmanagerSinkConfig::default()
    });
    cfg.delivery.retry = RetryConfig {
        initial_backoff_ms: 10,
        max_backoff_ms: 100,
        ..RetryConfig::default()
    };
    let mut p = anomalyd::config::Problems::new();
    cfg.validate("sinks.alertmanager", &mut p);
    assert!(p.is_empty(), "{p}");
    let m = metrics();
    let sink = AlertmanagerSink::new(
        &cfg,
        "sinks.alertmanager",
        &|_| None,
        SinkMetrics::new(&m, NAME),
    )
    .unwrap();
    let h = SinkHandle::spawn(sink, cfg.options(), SinkMetrics::new(&m, NAME));

    let now = Utc::now();
    let mut a = firing("c1f6d4cd4f8464c4", "web-1", 0.97);
    a.started_at = rfc3339(now - chrono::Duration::seconds(60));
    a.ts = a.started_at.clone();
    a.severity = Severity::Critical;
    h.submit(a.clone());

    let shown = poll_some("the alert to be active in Alertmanager", WAIT, || async {
        am.find("web-1")
            .await
            .filter(|x| x["status"]["state"] == "active")
    })
    .await;
    let labels = &shown["labels"];
    assert_eq!(labels["alertname"], "AnomalyDetected");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["metric"], "cpu_usage");
    assert_eq!(labels["host"], "web-1");
    assert_eq!(labels.as_object().unwrap().len(), 4, "{labels}");
    let ann = &shown["annotations"];
    assert_eq!(ann["value"], "0.97");
    assert_eq!(ann["expected"], "0.42");
    assert_eq!(ann["lower"], "0.1");
    assert_eq!(ann["upper"], "0.74");
    assert_eq!(ann["score"], "0.9991");
    assert_eq!(ann["series"], "cpu_usage{host=\"web-1\"}");
    assert_eq!(ann["reason"], "forecast");
    assert!(
        ann["summary"]
            .as_str()
            .unwrap()
            .contains("is outside the expected band"),
        "{ann}"
    );
    assert_eq!(
        shown["generatorURL"],
        "http://dashboards.example/s/c1f6d4cd4f8464c4"
    );
    let starts = chrono::DateTime::parse_from_rfc3339(shown["startsAt"].as_str().unwrap()).unwrap();
    assert_eq!(rfc3339(starts.with_timezone(&Utc)), a.started_at);

    // Re-sent while firing: every heartbeat pushes endsAt further out.
    let first_end = shown["endsAt"].as_str().unwrap().to_owned();
    poll_until("a re-send to move endsAt forward", WAIT, || {
        let first_end = &first_end;
        let am = &am;
        async move {
            let end = am
                .find("web-1")
                .await
                .map(|x| x["endsAt"].as_str().unwrap().to_owned());
            end.is_some_and(|e| {
                chrono::DateTime::parse_from_rfc3339(&e).unwrap()
                    > chrono::DateTime::parse_from_rfc3339(first_end).unwrap()
            })
        }
    })
    .await;

    let ended = rfc3339(Utc::now() - chrono::Duration::seconds(1));
    h.submit(resolved(&a, &ended));
    poll_until("the alert to be resolved in Alertmanager", WAIT, || {
        let am = &am;
        async move {
            match am.find("web-1").await {
                None => true,
                Some(x) => x["status"]["state"] == "resolved",
            }
        }
    })
    .await;

    assert!(h.flush(Instant::now() + WAIT).await);
    let s = SinkMetrics::new(&m, NAME);
    assert_eq!(s.delivered(AlertStatus::Firing).get(), 1);
    assert_eq!(s.delivered(AlertStatus::Resolved).get(), 1);
    let stats = h.shutdown(Instant::now() + WAIT).await;
    assert_eq!(stats.dropped, 0, "{stats:?}\n{}", am.log());
}

/// The alerts of one incident carry its id as the `incident` label, so a
/// route grouping by it makes one Alertmanager group (one notification)
/// of them, as the daemon's own sinks make one incident notification.
#[tokio::test]
async fn an_incidents_alerts_share_its_label_and_group_by_it() {
    use anomalyd::alert::incident::{IncidentConfig, Incidents};
    let am = Alertmanager::start_with("  group_by: ['incident']\n  group_wait: 1s\n").await;
    let cfg = SinkSection::new(AlertmanagerSinkConfig {
        enabled: true,
        url: am.base.clone(),
        ..AlertmanagerSinkConfig::default()
    });
    let m = metrics();
    let sink = AlertmanagerSink::new(
        &cfg,
        "sinks.alertmanager",
        &|_| None,
        SinkMetrics::new(&m, NAME),
    )
    .unwrap();
    let h = SinkHandle::spawn(sink, cfg.options(), SinkMetrics::new(&m, NAME));
    // Two metrics of host web-1 and one of web-2 start together (fleet-wide
    // incidents off, to see the groups): two incidents.
    let mut g = Incidents::new(&IncidentConfig {
        fleet_min_groups: 0,
        ..IncidentConfig::default()
    });
    let now = rfc3339(Utc::now() - chrono::Duration::seconds(30));
    for (fp, host, name) in [
        ("00000000000000a1", "web-1", "cpu_usage"),
        ("00000000000000a2", "web-1", "mem_used_bytes"),
        ("00000000000000b1", "web-2", "cpu_usage"),
    ] {
        let mut a = firing(fp, host, 0.97);
        a.labels.insert("__name__".into(), name.into());
        a.series = format!("{name}{{host=\"{host}\"}}");
        a.started_at = now.clone();
        a.ts = now.clone();
        g.observe(a.into());
    }
    let notices = g.flush();
    let ids: Vec<String> = notices
        .iter()
        .filter_map(|n| Some(n.as_incident()?.id.clone()))
        .collect();
    assert_eq!(ids.len(), 2);
    for n in notices {
        // The incidents themselves are not Alertmanager's: only alerts go.
        h.submit(n);
    }
    let alerts = poll_some("the three alerts in Alertmanager", WAIT, || async {
        let a = am.alerts().await;
        (a.len() == 3).then_some(a)
    })
    .await;
    let label = |host: &str| -> Vec<String> {
        alerts
            .iter()
            .filter(|a| a["labels"]["host"] == host)
            .map(|a| a["labels"]["incident"].as_str().unwrap().to_owned())
            .collect()
    };
    let (one, two) = (label("web-1"), label("web-2"));
    assert_eq!(one.len(), 2);
    assert_eq!(one[0], one[1], "one incident per host");
    assert_ne!(one[0], two[0]);
    assert!(ids.contains(&one[0]) && ids.contains(&two[0]));
    // Alertmanager's own grouping follows: one group per incident.
    let groups: Vec<Value> = poll_some("Alertmanager's groups", WAIT, || async {
        let r = client()
            .get(format!("{}/api/v2/alerts/groups", am.base))
            .send()
            .await
            .ok()?;
        let g: Vec<Value> = r.json().await.ok()?;
        (g.len() == 2).then_some(g)
    })
    .await;
    let mut sizes: Vec<(String, usize)> = groups
        .iter()
        .map(|g| {
            (
                g["labels"]["incident"].as_str().unwrap().to_owned(),
                g["alerts"].as_array().unwrap().len(),
            )
        })
        .collect();
    sizes.sort_by_key(|(_, n)| *n);
    assert_eq!(sizes, [(two[0].clone(), 1), (one[0].clone(), 2)]);
    assert!(h.flush(Instant::now() + WAIT).await);
    let stats = h.shutdown(Instant::now() + WAIT).await;
    assert_eq!(
        (stats.delivered, stats.dropped),
        (5, 0),
        "{stats:?}\n{}",
        am.log()
    );
}
