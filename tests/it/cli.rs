//! The binary as users run it: config layering, `check-config`, exit codes,
//! and secrets that never reach the output.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_anomalyd");

fn anomalyd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    // A clean environment for anomalyd's own variables only.
    for (k, _) in std::env::vars() {
        if k.starts_with("ANOMALYD") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run anomalyd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn environment_overrides_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.toml");
    std::fs::write(
        &file,
        "[kafka]\ngroup_id = \"from-file\"\nclient_id = \"file-client\"\n[pipeline]\nworkers = 2\n",
    )
    .unwrap();
    let out = anomalyd(
        &[
            "check-config",
            "--print",
            "--config",
            file.to_str().unwrap(),
        ],
        &[
            ("ANOMALYD__KAFKA__GROUP_ID", "from-env"),
            ("ANOMALYD__KAFKA__TOPICS", "a,b"),
            ("ANOMALYD__PIPELINE__MAX_SERIES", "1234"),
            ("ANOMALYD__ALERT__THRESHOLD", "0.9"),
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("group_id = \"from-env\""),
        "env beats file:\n{t}"
    );
    assert!(
        t.contains("client_id = \"file-client\""),
        "file beats default:\n{t}"
    );
    assert!(
        t.contains("topics = [\"a\", \"b\"]") || t.contains("topics = [\n"),
        "{t}"
    );
    assert!(t.contains("max_series = 1234"), "{t}");
    assert!(t.contains("workers = 2"), "{t}");
    assert!(t.contains("threshold = 0.9"), "{t}");

    // $ANOMALYD_CONFIG names the file when --config is absent.
    let out = anomalyd(
        &["check-config", "--print"],
        &[("ANOMALYD_CONFIG", file.to_str().unwrap())],
    );
    assert!(
        text(&out).contains("group_id = \"from-file\""),
        "{}",
        text(&out)
    );
}

#[test]
fn config_mistakes_name_the_key_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[kafka]\ngroupid = \"x\"\n").unwrap();
    let out = anomalyd(&["check-config", "--config", typo.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("groupid"),
        "names the unknown key: {}",
        text(&out)
    );

    // Every value problem at once, each with its key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[kafka]\nbrokers = \"\"\n[pipeline]\nqueue_capacity = 0\n[alert]\nthreshold = 1.5\n",
    )
    .unwrap();
    let out = anomalyd(&["check-config", "--config", bad.to_str().unwrap()], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    for key in [
        "kafka.brokers",
        "pipeline.queue_capacity",
        "alert.threshold",
    ] {
        assert!(t.contains(key), "{key} missing from:\n{t}");
    }

    // A bad environment value names its key too.
    let out = anomalyd(
        &["check-config"],
        &[("ANOMALYD__PIPELINE__WORKERS", "many")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("workers"), "{}", text(&out));

    // `run` refuses the same config with the same code before connecting.
    let out = anomalyd(&["run", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let missing = anomalyd(&["run", "--config", "/nonexistent/anomalyd.toml"], &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("/nonexistent/anomalyd.toml"));
}

#[test]
fn secrets_never_appear_in_printed_config_or_logs() {
    const INLINE: &str = "inline-hunter2-secret";
    const FROM_ENV: &str = "env-hunter2-secret";
    const FROM_FILE: &str = "file-hunter2-secret";
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("pw");
    std::fs::write(&secret_file, format!("{FROM_FILE}\n")).unwrap();
    let cfg = dir.path().join("c.toml");
    // Nothing listens on port 1: the daemon runs, fails to connect, logs.
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
brokers = "127.0.0.1:1"
session_timeout_ms = 6000
options = {{ "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanism" = "PLAIN", "sasl.username" = "u", "sasl.password" = "{INLINE}" }}
[sinks.kafka]
enabled = true
brokers = "127.0.0.1:1"
secret_env = {{ "sasl.password" = "ALERT_KAFKA_PW" }}
secret_files = {{ "ssl.key.password" = "{}" }}
options = {{ "security.protocol" = "SASL_PLAINTEXT", "sasl.mechanism" = "PLAIN", "sasl.username" = "u" }}
[metrics]
listen_addr = "127.0.0.1:0"
[log]
level = "debug"
"#,
            secret_file.display()
        ),
    )
    .unwrap();
    let env = [("ALERT_KAFKA_PW", FROM_ENV)];
    let printed = anomalyd(
        &["check-config", "--print", "--config", cfg.to_str().unwrap()],
        &env,
    );
    let t = text(&printed);
    assert!(printed.status.success(), "{t}");
    assert!(t.contains("<redacted>"), "{t}");
    for s in [INLINE, FROM_ENV, FROM_FILE] {
        assert!(!t.contains(s), "secret {s} printed by check-config:\n{t}");
    }

    // The daemon itself, at debug level, for a few seconds of failing to
    // reach its broker, then SIGTERM.
    let child = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .envs(env)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let t = text(&out);
    assert!(t.contains("anomalyd started"), "the daemon ran:\n{t}");
    for s in [INLINE, FROM_ENV, FROM_FILE] {
        assert!(!t.contains(s), "secret {s} in the daemon's output:\n{t}");
    }
}

#[test]
fn first_signal_drains_and_a_second_one_exits_at_once() {
    use crate::support::{self, TestProducer};
    // The cluster outlives the runtime and the child.
    let mock = support::cluster(&[("metrics", 1)]);
    let bootstrap = mock.bootstrap_servers();
    let values = crate::daemon::stream(700, 600);
    let producer = TestProducer::new(&bootstrap);
    for (i, v) in values.iter().enumerate() {
        let payload = support::event_json("cpu", "a", 1_767_225_600_000 + i as i64 * 60_000, *v);
        producer.send("metrics", Some(0), "cpu", &payload);
    }
    producer.flush();
    // The alert goes to a webhook nobody listens on, retried until shutdown:
    // the drain then waits for it until the grace period ends.
    let port = support::free_port();
    let dead_port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
brokers = "{bootstrap}"
group_id = "signals"
auto_offset_reset = "earliest"
session_timeout_ms = 6000
[sinks.log]
enabled = false
[sinks.webhook]
enabled = true
url = "http://127.0.0.1:{dead_port}/hook"
retry = {{ initial_backoff_ms = 50, max_backoff_ms = 200, max_attempts = 0 }}
[metrics]
listen_addr = "127.0.0.1:{port}"
[pipeline]
shutdown_grace_secs = 120
[detector.threshold]
warmup_secs = 0
[alert]
# The events are of 2026-01-01: they must alert.
max_event_age_secs = 0
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    support::runtime().block_on(support::poll_until(
        "events processed and an alert emitted",
        Duration::from_secs(60),
        || async move {
            // The daemon may not listen yet: that is "not yet", not a
            // failure (support::scrape would panic).
            let url = format!("http://{addr}/metrics");
            let Ok(response) = support::client().get(url).send().await else {
                return false;
            };
            let text = response.text().await.unwrap_or_default();
            support::metric_sum(&text, "anomalyd_events_processed_total", &[]) == 700.0
                && support::metric_sum(
                    &text,
                    "anomalyd_alerts_emitted_total",
                    &[("status", "firing")],
                ) >= 1.0
        },
    ));
    let term = |pid: u32| {
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    term(child.id());
    // Draining: the webhook cannot deliver, so the daemon waits (up to 120 s).
    let draining = Instant::now();
    while draining.elapsed() < Duration::from_secs(2) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first signal drains, it does not exit"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    term(child.id());
    let second = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            second.elapsed() < Duration::from_secs(10),
            "the second signal exits at once"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("second signal"), "{stderr}");
    drop(mock);
}

/// The demo opens with the live page: its URL is the first thing printed,
/// and the page answers there while the demo runs.
#[test]
fn the_demo_prints_the_live_page_first() {
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--hosts",
            "1",
            "--history-hours",
            "2",
            "--duration-secs",
            "6",
        ])
        .env("ANOMALYD__METRICS__LISTEN_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the demo");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = |n: &mut String| {
        n.clear();
        std::io::BufRead::read_line(&mut stdout, n).unwrap();
        n.trim_end().to_owned()
    };
    let mut buf = String::new();
    assert_eq!(line(&mut buf), "anomalyd demo");
    let first = line(&mut buf);
    let url = first
        .strip_prefix("  live page:             ")
        .unwrap_or_else(|| panic!("the page's URL comes first, got {first:?}"));
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (status, body) = rt.block_on(crate::support::get(url));
    assert_eq!(status, 200);
    assert!(body.contains("<table class=\"series\""), "{body}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{rest}");
    assert!(rest.contains("demo stopped:"), "{rest}");
}

#[test]
fn a_ui_cap_too_small_for_top_series_is_a_config_error() {
    let out = anomalyd(
        &["check-config"],
        &[
            ("ANOMALYD__UI__MAX_BYTES", "100000"),
            ("ANOMALYD__PIPELINE__WORKERS", "2"),
        ],
    );
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("ui.max_bytes: 100000 bytes hold 2 series"),
        "{t}"
    );
    assert!(t.contains("raise it to at least"), "{t}");
}

/// `anomalyd warm` learns the backtest's CSV files into the state
/// directory `run` restores; mistakes on its command line exit 2 and name
/// what to fix.
#[test]
fn warm_learns_csv_files_into_a_state_directory() {
    use anomalyd::state::{PartitionName, StateStore};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let input = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/backtest/series.csv"
    );
    let out = anomalyd(
        &[
            "warm",
            "--input",
            input,
            "--series",
            r#"room_temperature_celsius{site="a"}"#,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("warm: 1 series learned (400 points)"), "{t}");
    let config = anomalyd::app::config::Config::default();
    let detector =
        anomalyd::detector::Detector::new(&config.detector, config.alert.threshold).unwrap();
    let store =
        anomalyd::state::dir::DirStore::new(&state, detector.model_hash(), Duration::from_secs(30))
            .unwrap();
    let name = PartitionName {
        stream: "remote_write".into(),
        partition: 0,
    };
    let loaded = store.load(&name).unwrap().expect("a snapshot");
    assert_eq!(loaded.series.len(), 1);
    let s = &loaded.series[0];
    assert_eq!(s.key.to_string(), r#"room_temperature_celsius{site="a"}"#);
    assert!(s.detector.as_ref().unwrap().scored_events() > 300);

    // Again: the series is held already and kept; another one is added.
    let out = anomalyd(
        &[
            "warm",
            "--input",
            input,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(store.load(&name).unwrap().unwrap().series.len(), 2, "{t}");
    let out = anomalyd(
        &[
            "warm",
            "--input",
            input,
            "--series",
            r#"room_temperature_celsius{site="a"}"#,
            "--state-dir",
            state.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        text(&out).contains("1 already held and kept"),
        "{}",
        text(&out)
    );

    for (args, says) in [
        (
            vec!["--input", "/nonexistent.csv"],
            "is not a file or a directory",
        ),
        (
            vec!["--input", input, "--series", "cpu{host=a}"],
            "selector form",
        ),
        (
            vec!["--input", input, "--partition", "metrics"],
            "STREAM/PARTITION",
        ),
        (
            vec!["--input", input, "--partition", "metrics/0"],
            "--position",
        ),
        (vec![], "--input FILE|DIR or --selector"),
    ] {
        let mut all = vec!["warm", "--state-dir", state.to_str().unwrap()];
        all.extend(args);
        let out = anomalyd(&all, &[]);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{all:?}: {}", text(&out));
    }
}
