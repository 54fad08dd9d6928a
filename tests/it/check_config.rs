//! `anomalyd check-config` as users run it: every problem at once, each
//! at its full dotted key with what would be valid; strings that stay
//! strings; and everything `run` would refuse caught before it starts,
//! with exit code 2 from both (issue 18 point 5, issue 19 finding 7).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_anomalyd");

/// Runs the binary with only these `ANOMALYD*` variables, stopping it if
/// it is still running at the deadline (a config `run` should have
/// refused would start the daemon).
fn anomalyd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("ANOMALYD") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("run anomalyd");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "anomalyd {args:?} still running after 60 s (it should have refused the \
                 config):\n{}",
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The problem lines of a `check-config` report.
fn problems(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .map(str::to_owned)
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Words of Rust, not of the config file.
fn assert_no_rust_names(report: &str) {
    for rust in [
        "f64",
        "u64",
        "u32",
        "usize",
        "i64",
        "struct ",
        "enum ",
        "Config",
        "Kind",
        "variant constructor",
    ] {
        assert!(!report.contains(rust), "`{rust}` in:\n{report}");
    }
}

#[test]
fn three_structural_mistakes_give_three_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "three.toml",
        "[kafka]\ntopcs = [\"metrics\"]\n[alert]\nthreshold = \"0.7\"\n\
         [detector.model]\nkind = \"lineer\"\n",
    );
    let out = anomalyd(&["check-config", "--config", &cfg], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    let lines = problems(&out);
    assert_eq!(lines.len(), 3, "{t}");
    assert!(
        lines[0].starts_with("kafka.topcs: unknown key; did you mean `topics`? the keys of [kafka] are `enabled`, `brokers`, `group_id`, `topics`"),
        "{t}"
    );
    assert!(
        lines[1].starts_with(
            "alert.threshold: must be a number, not the string \"0.7\"; write 0.7 without quotes"
        ),
        "{t}"
    );
    assert!(
        lines[2].starts_with(
            "detector.model.kind: `lineer` is not a valid choice; write one of `regression`, `autoencoder`"
        ),
        "{t}"
    );
    assert!(
        t.contains("anomalyd: 3 problem(s) in the configuration:"),
        "{t}"
    );
    assert_no_rust_names(&t);
}

/// Unknown keys do not hide the value problems behind them, nor the
/// other way round; removed keys are never offered as valid.
#[test]
fn unknown_keys_and_value_problems_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "mixed.toml",
        "[kafka]\ngroupid = \"x\"\nbrokers = \"\"\n[pipeline]\nqueue_capacity = 0\n\
         [detector.threshold]\nhorizon = 10\n[sinks.webhook]\nqueue_capcity = 5\n",
    );
    let out = anomalyd(&["check-config", "--config", &cfg], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    let lines = problems(&out);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "kafka.groupid",
            "detector.threshold.horizon",
            "sinks.webhook.queue_capcity",
            "kafka.brokers",
            "pipeline.queue_capacity",
        ],
        "{t}"
    );
    let threshold = &lines[1];
    assert!(threshold.contains("did you mean `horizon_events`?"), "{t}");
    for removed in ["smoothing_events", "inflation_events", "range_novelty"] {
        assert!(!threshold.contains(removed), "{t}");
    }
    assert!(lines[2].contains("did you mean `queue_capacity`?"), "{t}");
    assert_no_rust_names(&t);
}

/// A reader that stops early (`check-config --print | head -1`) ends the
/// output quietly: no panic, exit 0 for a good config. The read end is
/// closed before the daemon starts, so every write meets the closed pipe.
#[test]
fn a_closed_pipe_ends_the_printing_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ANOMALYD") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["check-config", "--print"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run anomalyd");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    // A config with problems still says so (on stderr) and exits 2.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(BIN)
        .args(["check-config", "--print"])
        .env("ANOMALYD__LOG__LEVEL", "warning")
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("log.level: `warning` is not a level"),
        "{}",
        text(&out)
    );
}

/// Issue 19.7: environment values keep the type of their key, so a
/// string key holds what was written.
#[test]
fn environment_strings_stay_strings() {
    let out = anomalyd(
        &["check-config", "--print"],
        &[
            ("ANOMALYD__KAFKA__GROUP_ID", "007"),
            ("ANOMALYD__KAFKA__CLIENT_ID", "1e3"),
            ("ANOMALYD__KAFKA__TOPICS", "true,42"),
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("group_id = \"007\"\n"), "{t}");
    assert!(t.contains("client_id = \"1e3\"\n"), "{t}");
    assert!(t.contains("\"true\""), "{t}");
    assert!(t.contains("\"42\""), "{t}");
}

/// What is wrong, the config file, the environment, the problem line.
type Case = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    &'static str,
);

/// Issue 19.7: each thing `run` refuses at start is a config problem that
/// `check-config` reports, and `run` refuses it with exit code 2 before
/// starting anything.
#[test]
fn what_run_refuses_check_config_reports_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let cases: Vec<Case> = vec![
        (
            "log level warning",
            "[log]\nlevel = \"warning\"\n".to_owned(),
            vec![],
            "log.level: `warning` is not a level; write one of `off`, `error`, `warn`, `info`, `debug`, `trace`",
        ),
        (
            "a missing token file",
            format!(
                "[sinks.webhook]\nenabled = true\nurl = \"http://127.0.0.1:1/hook\"\n\
                 [sinks.webhook.auth]\ntoken_file = \"{}\"\n",
                missing.display()
            ),
            vec![],
            "sinks.webhook.auth.token_file: cannot read secret file",
        ),
        (
            "an unset secret variable",
            "[sinks.alertmanager]\nenabled = true\nurl = \"http://127.0.0.1:1\"\n\
             [sinks.alertmanager.auth]\ntoken_env = \"ANOMALYD_TEST_UNSET_TOKEN\"\n"
                .to_owned(),
            vec![],
            "sinks.alertmanager.auth.token_env: environment variable `ANOMALYD_TEST_UNSET_TOKEN` is not set",
        ),
        (
            "metrics and remote-write on one address",
            "[kafka]\nenabled = false\n[sources.remote_write]\nenabled = true\n\
             listen_addr = \"127.0.0.1:9898\"\n"
                .to_owned(),
            vec![],
            "sources.remote_write.listen_addr: `127.0.0.1:9898` is where metrics.listen_addr (`127.0.0.1:9898`) listens",
        ),
        (
            "a topic named like a source",
            "[kafka]\ntopics = [\"remote_write\"]\n[sources.remote_write]\nenabled = true\n"
                .to_owned(),
            vec![],
            "kafka.topics: the topic `remote_write` has the name the remote-write receiver keeps its state under",
        ),
        (
            "an unknown librdkafka option",
            "[kafka]\noptions = { \"fetch_max_bytes\" = \"1048576\" }\n".to_owned(),
            vec![],
            "kafka.options.\"fetch_max_bytes\": librdkafka has no such property",
        ),
        (
            "an unknown librdkafka option from the environment",
            String::new(),
            vec![
                ("ANOMALYD__SINKS__KAFKA__ENABLED", "true"),
                ("ANOMALYD__SINKS__KAFKA__OPTIONS__LINGER", "5"),
            ],
            "sinks.kafka.options.\"linger\": librdkafka has no such property",
        ),
        (
            "an option value that is not a string",
            "[kafka]\noptions = { \"fetch.max.bytes\" = 1048576 }\n".to_owned(),
            vec![],
            "kafka.options.\"fetch.max.bytes\": must be a string, not the number 1048576",
        ),
        (
            "a bad librdkafka value",
            "[kafka]\noptions = { \"fetch.max.bytes\" = \"lots\" }\n".to_owned(),
            vec![],
            "kafka.options.\"fetch.max.bytes\": librdkafka refuses this value",
        ),
    ];
    for (what, toml, env, want) in cases {
        let cfg = write(dir.path(), "case.toml", &toml);
        let checked = anomalyd(&["check-config", "--config", &cfg], &env);
        let t = text(&checked);
        assert_eq!(checked.status.code(), Some(2), "{what}: {t}");
        let lines = problems(&checked);
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "{what}: no line starting `{want}` in:\n{t}"
        );
        assert_eq!(lines.len(), 1, "{what}: one problem expected:\n{t}");
        let mut run_env = env.clone();
        run_env.push(("ANOMALYD__METRICS__LISTEN_ADDR", "127.0.0.1:0"));
        if what.starts_with("metrics and remote-write") {
            // The clash itself, on a port that is free.
            run_env.pop();
        }
        let run = anomalyd(&["run", "--config", &cfg], &run_env);
        assert_eq!(run.status.code(), Some(2), "{what}: run: {}", text(&run));
        assert!(
            text(&run).contains(want),
            "{what}: run does not say `{want}`:\n{}",
            text(&run)
        );
    }
}

/// The incident keys of `[alert]` and the sinks' `messages` are checked
/// like every other key: by the shape (types, names, choices) and by
/// their sections' rules, each problem at its full dotted key.
#[test]
fn incident_keys_are_checked_at_their_dotted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "incidents.toml",
        "[alert]\ngroup_by = \"instance\"\ngroup_windw_secs = 60\n\
         [sinks.webhook]\nmessages = \"pages\"\n",
    );
    let out = anomalyd(&["check-config", "--config", &cfg], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    let lines = problems(&out);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "alert.group_by",
            "alert.group_windw_secs",
            "sinks.webhook.messages"
        ],
        "{t}"
    );
    assert!(
        lines[1].contains("did you mean `group_window_secs`?"),
        "{t}"
    );
    for choice in ["both", "alerts", "incidents"] {
        assert!(lines[2].contains(choice), "{t}");
    }
    // Well-formed but wrong values: the sections' own rules.
    let cfg = write(
        dir.path(),
        "values.toml",
        "[alert]\ngroup_by = [\"host\", \"host\"]\ngroup_window_secs = 0\nfleet_min_groups = 1\n",
    );
    let out = anomalyd(&["check-config", "--config", &cfg], &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    let lines = problems(&out);
    let keys: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(": ").unwrap().0)
        .collect();
    assert_eq!(
        keys,
        [
            "alert.group_by",
            "alert.group_window_secs",
            "alert.fleet_min_groups"
        ],
        "{t}"
    );
    assert!(lines[1].contains("120 is the default"), "{t}");
    assert_no_rust_names(&t);
}
