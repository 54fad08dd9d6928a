//! `anomalyd backtest`: the output contract in file and directory modes,
//! malformed rows, plots, config files and exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use anomalyd::backtest::{BacktestArgs, OUTPUT_HEADER, run};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backtest")
        .join(rel)
}

fn args(input: PathBuf, output: PathBuf) -> BacktestArgs {
    BacktestArgs {
        input,
        output,
        config: None,
        plot: None,
        threshold: None,
    }
}

fn read_rows(path: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn input_rows(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn file_mode_writes_one_row_per_input_row_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let summary = run(&args(fixture("series.csv"), out.clone())).unwrap();
    let (header, rows) = read_rows(&out);
    assert_eq!(header, OUTPUT_HEADER);
    assert_eq!(
        header,
        "timestamp,value,anomaly_score,expected,lower,upper,alert,reason"
    );
    let input = input_rows(&fixture("series.csv"));
    assert_eq!(rows.len(), input.len());
    assert_eq!(summary.rows, input.len());
    assert_eq!(summary.files, 1);
    assert_eq!(summary.malformed, 0);
    for (row, inp) in rows.iter().zip(&input) {
        assert_eq!(row.len(), 8);
        // Timestamp and value are echoed as given.
        assert_eq!(format!("{},{}", row[0], row[1]), *inp);
        let score: f64 = row[2].parse().unwrap();
        assert!((0.0..1.0).contains(&score));
        // No band while the series warms up; a warm one is never empty.
        if !row[4].is_empty() {
            let (lower, upper): (f64, f64) = (row[4].parse().unwrap(), row[5].parse().unwrap());
            assert!(lower < upper, "{row:?}");
        } else {
            assert!(row[5].is_empty() && score == 0.0, "{row:?}");
        }
        assert!(row[6] == "0" || row[6] == "1");
        // The channel that scored the row, empty where nothing did.
        assert!(
            ["", "forecast", "level", "drift", "stuck"].contains(&row[7].as_str()),
            "{row:?}"
        );
    }
    // The spike at row 300 alerts and lies outside the band; the rows
    // before it (after warm-up) are calm.
    let spike = &rows[300];
    assert_eq!(spike[6], "1", "{spike:?}");
    assert_eq!(
        spike[7], "forecast",
        "a spike is a forecast miss: {spike:?}"
    );
    let v: f64 = spike[1].parse().unwrap();
    assert!(v > spike[5].parse::<f64>().unwrap());
    // `alert` is the lifecycle's firing state: an episode starts with a
    // 0 → 1 step and lasts until `resolve_after_events` calm rows.
    let episodes_before = rows[..300]
        .windows(2)
        .filter(|w| w[0][6] == "0" && w[1][6] == "1")
        .count();
    assert!(
        episodes_before <= 1,
        "{episodes_before} alert episodes before the spike"
    );
    assert_eq!(rows[301][6], "1", "still firing right after the spike");
    // The alert holds while the score stays above the resolve threshold
    // (here the drift channel, one day old, still sees the daily cycle's
    // descent) and resolves once it has been below it for 3 rows; the
    // spike is one episode, not a string of them.
    let resolved = rows[301..].iter().position(|r| r[6] == "0").unwrap();
    assert!(
        (3..=60).contains(&resolved),
        "resolved after {resolved} rows"
    );
    let episodes_after = rows[300..]
        .windows(2)
        .filter(|w| w[0][6] == "0" && w[1][6] == "1")
        .count();
    assert_eq!(episodes_after, 0, "the spike's alert does not re-fire");
    assert_eq!(summary.alerts, rows.iter().filter(|r| r[6] == "1").count());
}

#[test]
fn malformed_rows_are_reported_and_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.csv");
    let output = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["backtest", "--input"])
        .arg(fixture("malformed.csv"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (line, what) in [
        (7, "timestamp"),
        (10, "value"),
        (13, "fields"),
        (16, "not a finite number"),
    ] {
        let needle = format!("malformed.csv:{line}:");
        let msg = stderr
            .lines()
            .find(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no message for line {line}: {stderr}"));
        assert!(msg.contains(what), "{msg}");
    }
    let (_, rows) = read_rows(&out);
    assert_eq!(rows.len(), 20);
    for i in [5, 8, 11, 14] {
        let r = &rows[i];
        assert_eq!(&r[2..], ["0", "", "", "", "0", ""], "row {i}: {r:?}");
    }
    assert_eq!(rows[5][0], "not-a-time");
    assert_eq!(rows[14][1], "NaN");
}

#[test]
fn directory_mode_mirrors_relative_paths_and_draws_plots() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let plots = dir.path().join("plots");
    let mut a = args(fixture("dir"), out.clone());
    a.plot = Some(plots.clone());
    // These files span hours: score them without the default day of
    // warm-up, so the plots have a band to draw.
    let config = dir.path().join("anomalyd.toml");
    std::fs::write(&config, "[detector.threshold]\nwarmup_secs = 0\n").unwrap();
    a.config = Some(config);
    let summary = run(&a).unwrap();
    assert_eq!(summary.files, 2);
    for rel in ["a/epoch.csv", "b/rfc3339.csv"] {
        let (header, rows) = read_rows(&out.join(rel));
        assert_eq!(header, OUTPUT_HEADER);
        assert_eq!(rows.len(), input_rows(&fixture("dir").join(rel)).len());
        let svg = std::fs::read_to_string(plots.join(rel).with_extension("svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("class=\"value\"") && svg.contains("class=\"band\""));
    }
    assert!(!out.join("b/notes.txt").exists());
    assert_eq!(summary.malformed, 0);
}

#[test]
fn plot_in_file_mode_writes_an_svg_with_the_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(fixture("series.csv"), dir.path().join("out.csv"));
    a.plot = Some(dir.path().join("plot.svg"));
    let summary = run(&a).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(summary.alerts >= 1);
    // One marked span per run of alerting rows, as the output CSV has them.
    let (_, rows) = read_rows(&dir.path().join("out.csv"));
    let alerting: Vec<bool> = rows.iter().map(|r| r[6] == "1").collect();
    let episodes = alerting
        .iter()
        .enumerate()
        .filter(|&(i, &a)| a && (i == 0 || !alerting[i - 1]))
        .count();
    assert!(episodes >= 1);
    assert_eq!(svg.matches("<g class=\"alert-span ").count(), episodes);
    // The chart reads as a chart: dated time axis, value axis, legend, and
    // the warm-up of the first rows shaded.
    for mark in [
        "time-axis\"",
        "value-axis\"",
        "class=\"legend\"",
        "class=\"warmup\"",
        "<path class=\"expected\"",
        ">time (UTC)</text>",
    ] {
        assert!(svg.contains(mark), "{mark} missing from the plot");
    }
}

#[test]
fn config_file_selects_the_model_and_bad_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("anomalyd.toml");
    std::fs::write(
        &cfg,
        "[kafka]\nbrokers = \"ignored:9092\"\n\n[detector.model]\nkind = \"autoencoder\"\nwindow = 8\nhidden = 3\n\n[detector.threshold]\nkind = \"spot\"\n\n[alert]\nthreshold = 0.6\n",
    )
    .unwrap();
    let config = anomalyd::app::config::Config::load(Some(&cfg)).unwrap();
    assert_eq!(config.detector.model.window, 8);
    assert_eq!(config.alert.threshold, 0.6);
    let mut a = args(fixture("series.csv"), dir.path().join("out.csv"));
    a.config = Some(cfg.clone());
    run(&a).unwrap();

    std::fs::write(&cfg, "[detector.model]\nlags = 99\nlag = 3\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["backtest", "--input"])
        .arg(fixture("series.csv"))
        .arg("--output")
        .arg(dir.path().join("out2.csv"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("lag"));
}

#[test]
fn exit_codes_for_bad_cli_missing_input_and_unwritable_output() {
    let bin = env!("CARGO_BIN_EXE_anomalyd");
    let bad_cli = Command::new(bin)
        .args(["backtest", "--bogus"])
        .output()
        .unwrap();
    assert_eq!(bad_cli.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let missing = Command::new(bin)
        .args(["backtest", "--input"])
        .arg(dir.path().join("nope.csv"))
        .arg("--output")
        .arg(dir.path().join("o.csv"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let unwritable = Command::new(bin)
        .args(["backtest", "--input"])
        .arg(fixture("series.csv"))
        .arg("--output")
        .arg(dir.path().join("no/such/dir/o.csv"))
        .output()
        .unwrap();
    assert_eq!(unwritable.status.code(), Some(1));
}

/// Five days of a minute-sampled daily cycle with unit noise, plus
/// `anomaly(i)` from day 3 + 200 minutes on, written as a backtest input.
fn episode_input(dir: &Path, name: &str, anomaly: impl Fn(usize) -> f64) -> PathBuf {
    let mut rng = anomalyd::demo::fleet::Rng(61);
    let mut text = String::from("timestamp,value\n");
    for i in 0..5 * 1440 {
        let day = (i as f64 / 1440.0) * std::f64::consts::TAU;
        let v = 100.0 + 20.0 * day.sin() + 2.0 * rng.normal() + anomaly(i);
        text += &format!("{},{v:.4}\n", 1_767_225_600 + i * 60);
    }
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The alert spans `(first row, rows)` of a backtest output.
fn alert_spans(path: &Path) -> Vec<(usize, usize)> {
    let (_, rows) = read_rows(path);
    let alert: Vec<bool> = rows.iter().map(|r| r[6] == "1").collect();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < alert.len() {
        if alert[i] {
            let start = i;
            while i < alert.len() && alert[i] {
                i += 1;
            }
            spans.push((start, i - start));
        } else {
            i += 1;
        }
    }
    spans
}

#[test]
fn a_level_shift_a_ramp_and_a_spike_are_each_one_alert_spanning_the_episode() {
    // Issue 17: each anomaly is one alert from its onset until the series
    // is back, and the return is no new alert.
    let start = 3 * 1440 + 200;
    let dir = tempfile::tempdir().unwrap();
    type Anomaly = Box<dyn Fn(usize) -> f64>;
    let cases: [(&str, Anomaly, usize); 3] = [
        // Four hours at +40 (20σ).
        (
            "shift",
            Box::new(move |i| {
                if (start..start + 240).contains(&i) {
                    40.0
                } else {
                    0.0
                }
            }),
            240,
        ),
        // Two hours climbing half a unit a minute, then back at once.
        (
            "ramp",
            Box::new(move |i| {
                if (start..start + 120).contains(&i) {
                    0.5 * (i - start) as f64
                } else {
                    0.0
                }
            }),
            120,
        ),
        // One row at +50.
        (
            "spike",
            Box::new(move |i| if i == start { 50.0 } else { 0.0 }),
            1,
        ),
    ];
    for (name, anomaly, len) in cases {
        let input = episode_input(dir.path(), name, anomaly);
        let out = dir.path().join(format!("{name}.out.csv"));
        run(&args(input, out.clone())).unwrap();
        let spans = alert_spans(&out);
        assert_eq!(spans.len(), 1, "{name}: {spans:?}");
        let (first, rows) = spans[0];
        // It starts within the episode (a ramp takes a while to be sure)...
        assert!(
            (start..start + len.max(60)).contains(&first),
            "{name}: starts at {first}"
        );
        // ... and ends after the series is back, within an hour.
        let end = first + rows;
        assert!(
            (start + len..start + len + 60).contains(&end),
            "{name}: ends at {end}"
        );
    }
}

/// Directory mode: each file is a series (`instance` = its directory,
/// `__name__` = its stem); the alerts of all files, merged by time, group
/// into incidents as the daemon groups them. Three metrics of host-a jump
/// together: one incident, one page, in `incidents.csv` and the summary.
#[test]
fn directory_mode_groups_the_files_alerts_into_incidents() {
    use anomalyd::backtest::{INCIDENTS_FILE, INCIDENTS_HEADER, series_of};
    use anomalyd::demo::fleet::Rng;
    assert_eq!(
        series_of(Path::new("host-a/cpu.csv")).to_string(),
        "cpu{instance=\"host-a\"}"
    );
    assert_eq!(
        series_of(Path::new("dc1/host-a/mem.csv")).to_string(),
        "mem{instance=\"dc1/host-a\"}"
    );
    assert_eq!(series_of(Path::new("top.csv")).to_string(), "top");

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let mut rng = Rng(5);
    const JUMP: i64 = 400;
    for (host, metrics) in [("host-a", 3), ("host-b", 2)] {
        std::fs::create_dir_all(input.join(host)).unwrap();
        for m in 0..metrics {
            let mut text = String::from("timestamp,value\n");
            for i in 0..500i64 {
                let base = 100.0 * (m + 1) as f64;
                let mut v =
                    base * (1.0 + 0.05 * (i as f64 / 50.0 + m as f64).sin()) + 0.5 * rng.normal();
                if host == "host-a" && (JUMP..JUMP + 3).contains(&i) {
                    v += base * 0.6;
                }
                text.push_str(&format!("{},{v}\n", 1_767_225_600 + i * 60));
            }
            std::fs::write(input.join(host).join(format!("m{m}.csv")), text).unwrap();
        }
    }
    let config = dir.path().join("anomalyd.toml");
    std::fs::write(
        &config,
        "[detector.threshold]\nwarmup_events = 60\nwarmup_secs = 0\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut a = args(input.clone(), out.clone());
    a.config = Some(config.clone());
    let summary = run(&a).unwrap();
    assert_eq!(summary.files, 5);

    let text = std::fs::read_to_string(out.join(INCIDENTS_FILE)).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader
            .headers()
            .unwrap()
            .iter()
            .collect::<Vec<_>>()
            .join(","),
        INCIDENTS_HEADER
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let col = |name: &str| INCIDENTS_HEADER.split(',').position(|h| h == name).unwrap();
    let pages = rows.iter().filter(|r| &r[col("opens")] == "1").count();
    assert_eq!(summary.pages, pages, "the summary counts the opening rows");
    assert_eq!(summary.incident_notifications, rows.len());
    // The jump: one incident of host-a's three files, opened once.
    let jump = "2026-01-01T06:40:00.000Z";
    let of_jump: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| &r[col("started_at")] == jump && &r[col("group")] == "instance=host-a")
        .collect();
    assert!(!of_jump.is_empty(), "{text}");
    assert_eq!(
        of_jump.iter().filter(|r| &r[col("opens")] == "1").count(),
        1,
        "{text}"
    );
    let last = of_jump.last().unwrap();
    assert_eq!(&last[col("members_total")], "3", "{text}");
    assert_eq!(&last[col("status")], "resolved", "{text}");
    let members: Vec<&str> = last[col("members")].split(';').collect();
    for m in ["m0", "m1", "m2"] {
        assert!(
            members.contains(&format!("{m}{{instance=\"host-a\"}}").as_str()),
            "{members:?}"
        );
    }
    // host-b is not in it.
    assert!(!last[col("members")].contains("host-b"), "{text}");

    // The binary prints the pages in its summary line.
    let output = Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .args(["backtest", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out2"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{pages} page(s) ({} incident notification(s))",
            rows.len()
        )),
        "{stderr}"
    );
}
