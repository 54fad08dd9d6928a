//! The deployment files under `deploy/`, checked against the code and
//! against each other.
//!
//! Nothing here runs Docker, Kubernetes or systemd for real, so these tests
//! read the files and check everything in them that can drift:
//! - every anomalyd config (the compose TOML, the ConfigMap's TOML, the
//!   systemd environment example) loads the way the daemon loads it, with
//!   the environment overrides its deployment sets, and validates;
//! - every `ANOMALYD__…` variable names a real config key, and every secret
//!   a config takes from the environment is provided by its deployment;
//! - the metrics port, the config path, the non-root uid and the shutdown
//!   grace period agree across config, Dockerfile, compose, Kubernetes,
//!   Prometheus and systemd;
//! - every metric, label and closed label value that the Grafana dashboard
//!   and the alerting rules use exists in the daemon's exposition, and the
//!   dashboard charts every metric family;
//! - real tools where Debian has them: `promtool check rules|config`,
//!   `promtool test rules` (the rules' unit tests), every dashboard query
//!   through promtool's parser, `amtool check-config` and `amtool config
//!   routes test`, `systemd-analyze verify`, and the Dockerfile's
//!   HEALTHCHECK command and the Kubernetes probe paths against the
//!   daemon's real HTTP endpoint.
//!
//! `promtool` comes from Debian's `prometheus` package and `amtool` from
//! `prometheus-alertmanager` (tests/run.sh installs both); `ANOMALYD_TEST_PROMTOOL` and
//! `ANOMALYD_TEST_AMTOOL` may point at other binaries.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anomalyd::alert::sink::SinkMetrics;
use anomalyd::app::config::{Config, ENV_PREFIX, ENV_SEPARATOR};
use anomalyd::event::SeriesKey;
use anomalyd::telemetry::http::{self, HttpState, Readiness};
use anomalyd::telemetry::metrics::{Metrics, MetricsConfig, SeriesSample};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::get;

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Labels whose values come from a fixed vocabulary in the code, so a
/// dashboard or rule that names a value can be checked against it.
const CLOSED_LABELS: [&str; 4] = ["reason", "sink", "status", "severity"];

// ---------------------------------------------------------------------------
// Files

fn deploy_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy_path(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "deploy/{rel}: expected one YAML document");
    docs.remove(0)
}

/// A scalar as text (YAML types numbers and booleans on its own).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text(y: &Yaml, what: &str) -> String {
    scalar(y).unwrap_or_else(|| panic!("{what}: expected a scalar, found {y:?}"))
}

fn seq(y: &Yaml) -> &[Yaml] {
    y.as_vec().map_or(&[], Vec::as_slice)
}

fn hash_keys(y: &Yaml) -> Vec<String> {
    y.as_hash()
        .map(|h| h.keys().filter_map(scalar).collect())
        .unwrap_or_default()
}

/// A YAML mapping of scalars as a map (labels, selectors).
fn string_map(y: &Yaml) -> BTreeMap<String, String> {
    y.as_hash()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Seconds in a duration as compose (`45s`, `1m30s`) or systemd (`60`,
/// `90s`, `1min 30s`) write it; a bare number is seconds.
fn duration_secs(s: &str) -> f64 {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return n;
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_end]
            .parse()
            .unwrap_or_else(|_| panic!("bad duration `{s}`"));
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ms" => 0.001,
            "" | "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" | "hr" => 3600.0,
            u => panic!("unknown unit `{u}` in duration `{s}`"),
        };
        total += n * factor;
        rest = &rest[unit_end..];
    }
    total
}

// ---------------------------------------------------------------------------
// anomalyd configs

/// Loads `toml` with `env` as the environment, through the daemon's own
/// layering (`Config::from_sources`: defaults → file → `ANOMALYD__`
/// variables), without touching the process environment.
fn load_config(toml: &str, env: &BTreeMap<String, String>, what: &str) -> Config {
    let env = env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    Config::from_sources(Some(toml), Some(env))
        .unwrap_or_else(|e| panic!("{what}: the daemon would refuse this config: {e}"))
}

/// Loads and validates a deployed config: the file alone must parse (so
/// unknown keys in it are errors even where an override hides them), and
/// the file with its deployment's overrides must validate.
fn deployed_config(toml: &str, env: &BTreeMap<String, String>, what: &str) -> Config {
    if let Err(e) = toml::from_str::<Config>(toml) {
        panic!("{what}: does not parse as anomalyd's Config: {e}");
    }
    let config = load_config(toml, env, what);
    // `validate` never reads secrets (they are read when the clients are
    // built), so a config naming `secret_env` variables validates without
    // them; `secrets_are_provided` checks the deployments set them.
    if let Err(problems) = config.validate() {
        panic!("{what}: `anomalyd check-config` would fail:\n{problems}");
    }
    config
}

/// Checks that an `ANOMALYD__A__B` variable names an existing key: its
/// lower-cased path must lead through the serialised default config to a
/// value. Maps (empty objects in the defaults, e.g. `kafka.options`) and
/// unset options (`null`) accept any path below them.
fn env_key_problem(var: &str, defaults: &serde_json::Value) -> Option<String> {
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let path = var.strip_prefix(&prefix)?.to_ascii_lowercase();
    let mut node = defaults;
    let mut walked = Vec::new();
    for seg in path.split(ENV_SEPARATOR) {
        match node {
            serde_json::Value::Object(m) if m.is_empty() => return None,
            serde_json::Value::Object(m) => match m.get(seg) {
                Some(next) => node = next,
                None => {
                    let known: Vec<&str> = m.keys().map(String::as_str).collect();
                    return Some(format!(
                        "{var}: `{seg}` is not a key of [{}] (keys: {})",
                        walked.join("."),
                        known.join(", ")
                    ));
                }
            },
            serde_json::Value::Null => return None,
            _ => {
                return Some(format!(
                    "{var}: `{}` is a value, not a section",
                    walked.join(".")
                ));
            }
        }
        walked.push(seg);
    }
    match node {
        serde_json::Value::Object(m) if !m.is_empty() => Some(format!(
            "{var}: `{}` is a section, not a key",
            walked.join(".")
        )),
        _ => None,
    }
}

fn default_config_json() -> serde_json::Value {
    serde_json::to_value(Config::default()).expect("the default config serialises")
}

/// Environment variable names a config reads secrets from.
fn secret_vars(c: &Config) -> BTreeSet<String> {
    let s = &c.sinks;
    c.kafka
        .secret_env
        .values()
        .chain(s.kafka.secret_env.values())
        .cloned()
        .chain(s.webhook.auth.token_env.clone())
        .chain(s.alertmanager.auth.token_env.clone())
        .collect()
}

fn metrics_addr(c: &Config, what: &str) -> SocketAddr {
    c.metrics
        .socket_addr()
        .unwrap_or_else(|e| panic!("{what}: metrics.listen_addr: {e}"))
}

// ---------------------------------------------------------------------------
// Docker

/// The instructions of a Dockerfile: keyword (upper case) and arguments,
/// continuation lines joined, comments dropped.
struct Dockerfile(Vec<(String, String)>);

impl Dockerfile {
    fn load() -> Self {
        let mut out = Vec::new();
        let mut current = String::new();
        for line in read("Dockerfile").lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    let (kw, rest) = current.split_once(' ').unwrap_or((&current, ""));
                    out.push((kw.to_ascii_uppercase(), rest.trim().to_owned()));
                    current.clear();
                }
            }
        }
        Self(out)
    }

    fn all(&self, kw: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == kw)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn last(&self, kw: &str) -> &str {
        self.all(kw)
            .last()
            .copied()
            .unwrap_or_else(|| panic!("deploy/Dockerfile has no {kw}"))
    }

    /// The last `kw` in exec (JSON array) form.
    fn exec_form(&self, kw: &str) -> Vec<String> {
        let v = self.last(kw);
        serde_json::from_str(v)
            .unwrap_or_else(|e| panic!("deploy/Dockerfile: {kw} {v} is not exec form: {e}"))
    }

    fn exposed_ports(&self) -> BTreeSet<u16> {
        self.all("EXPOSE")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .map(|p| {
                let port = p.split('/').next().unwrap_or(p);
                port.parse()
                    .unwrap_or_else(|_| panic!("deploy/Dockerfile: EXPOSE {p}"))
            })
            .collect()
    }

    /// The final stage's `USER` as (uid, gid).
    fn user(&self) -> (u32, Option<u32>) {
        let u = self.last("USER");
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u, None),
        };
        let num = |s: &str| -> u32 {
            s.parse().unwrap_or_else(|_| {
                panic!(
                    "deploy/Dockerfile: USER {u} must be numeric, so Kubernetes' runAsNonRoot can verify it"
                )
            })
        };
        (num(uid), gid.map(num))
    }

    /// The HEALTHCHECK's command in exec form.
    fn healthcheck(&self) -> Vec<String> {
        let v = self.last("HEALTHCHECK");
        let (_, cmd) = v
            .split_once(" CMD ")
            .unwrap_or_else(|| panic!("deploy/Dockerfile: HEALTHCHECK without CMD: {v}"));
        serde_json::from_str(cmd.trim())
            .unwrap_or_else(|e| panic!("deploy/Dockerfile: HEALTHCHECK CMD is not exec form: {e}"))
    }

    /// The `--config` path of the image's default command.
    fn config_path(&self) -> String {
        config_arg(&self.exec_form("CMD")).expect("deploy/Dockerfile: CMD has no --config")
    }
}

/// The value of `--config` (or `-c`) in an argument list.
fn config_arg(args: &[String]) -> Option<String> {
    args.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" || a == "-c" {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix("--config=").map(str::to_owned)
        }
    })
}

/// The port of `/dev/tcp/127.0.0.1/<port>` in the HEALTHCHECK script.
fn healthcheck_port(cmd: &[String]) -> u16 {
    let script = cmd.join(" ");
    let (_, rest) = script
        .split_once("/dev/tcp/127.0.0.1/")
        .expect("HEALTHCHECK connects to /dev/tcp/127.0.0.1/<port>");
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("HEALTHCHECK port")
}

/// The HTTP path the HEALTHCHECK requests.
fn healthcheck_path(cmd: &[String]) -> String {
    let script = cmd.join(" ");
    let (_, rest) = script
        .split_once("GET ")
        .expect("HEALTHCHECK sends a GET request");
    rest.split_whitespace().next().expect("path").to_owned()
}

struct Compose(Yaml);

impl Compose {
    fn load() -> Self {
        Self(yaml("docker-compose.yml"))
    }

    fn service(&self, name: &str) -> &Yaml {
        let s = &self.0["services"][name];
        assert!(
            !s.is_badvalue(),
            "deploy/docker-compose.yml has no service `{name}`"
        );
        s
    }

    fn service_names(&self) -> Vec<String> {
        hash_keys(&self.0["services"])
    }

    /// A service's `environment`, in map or `KEY=VALUE` list form.
    fn env(&self, name: &str) -> BTreeMap<String, String> {
        let e = &self.service(name)["environment"];
        if let Some(list) = e.as_vec() {
            list.iter()
                .filter_map(scalar)
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv, String::new()),
                })
                .collect()
        } else {
            string_map(e)
        }
    }

    /// Bind mounts of a service (short syntax): (source relative to
    /// deploy/, target).
    fn binds(&self, name: &str) -> Vec<(String, String)> {
        seq(&self.service(name)["volumes"])
            .iter()
            .filter_map(scalar)
            .filter(|v| v.starts_with('.') || v.starts_with('/'))
            .map(|v| {
                let mut parts = v.split(':');
                let src = parts.next().unwrap_or_default().to_owned();
                let dst = parts.next().unwrap_or_default().to_owned();
                (src, dst)
            })
            .collect()
    }

    /// Published ports of a service: (host ip, host port, container port).
    fn published(&self, name: &str) -> Vec<(String, u16, u16)> {
        seq(&self.service(name)["ports"])
            .iter()
            .map(|p| {
                let p = text(p, "compose port");
                let parts: Vec<&str> = p.split(':').collect();
                let port = |s: &str| -> u16 {
                    s.parse()
                        .unwrap_or_else(|_| panic!("compose service {name}: port `{p}`"))
                };
                match parts.as_slice() {
                    [ip, host, container] => ((*ip).to_owned(), port(host), port(container)),
                    [host, container] => ("0.0.0.0".to_owned(), port(host), port(container)),
                    [container] => ("0.0.0.0".to_owned(), 0, port(container)),
                    _ => panic!("compose service {name}: port `{p}`"),
                }
            })
            .collect()
    }

    fn anomalyd_config(&self) -> Config {
        deployed_config(
            &read("anomalyd.compose.toml"),
            &self.env("anomalyd"),
            "deploy/anomalyd.compose.toml with the compose environment",
        )
    }
}

// ---------------------------------------------------------------------------
// Kubernetes

/// Every Kubernetes object under deploy/kubernetes, with its file.
struct K8s(Vec<(String, Yaml)>);

impl K8s {
    fn load() -> Self {
        let dir = deploy_path("kubernetes");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
            .collect();
        files.sort();
        let mut objects = Vec::new();
        for f in files {
            for doc in yaml_docs(&format!("kubernetes/{f}")) {
                // The scrape config snippet is Prometheus config, and the
                // kustomization is kustomize's: not cluster objects.
                let kind = scalar(&doc["kind"]);
                if !doc["apiVersion"].is_badvalue() && kind.as_deref() != Some("Kustomization") {
                    objects.push((f.clone(), doc));
                }
            }
        }
        Self(objects)
    }

    fn find(&self, kind: &str, name: &str) -> &Yaml {
        self.0
            .iter()
            .map(|(_, d)| d)
            .find(|d| {
                scalar(&d["kind"]).as_deref() == Some(kind)
                    && scalar(&d["metadata"]["name"]).as_deref() == Some(name)
            })
            .unwrap_or_else(|| panic!("deploy/kubernetes has no {kind} `{name}`"))
    }

    fn deployment(&self) -> &Yaml {
        self.find("Deployment", "anomalyd")
    }

    fn container(&self) -> &Yaml {
        let c = seq(&self.deployment()["spec"]["template"]["spec"]["containers"]);
        c.iter()
            .find(|c| scalar(&c["name"]).as_deref() == Some("anomalyd"))
            .expect("the Deployment has a container named anomalyd")
    }

    /// The container's environment; values from a fieldRef or a secret
    /// are unknown here and get a placeholder.
    fn env(&self) -> BTreeMap<String, String> {
        seq(&self.container()["env"])
            .iter()
            .map(|e| {
                let name = text(&e["name"], "env name");
                let value = scalar(&e["value"]).unwrap_or_else(|| "from-value-from".to_owned());
                (name, value)
            })
            .collect()
    }

    /// Resolves a probe's or Service's port (number or container port name).
    fn container_port(&self, port: &Yaml) -> u16 {
        if let Some(n) = port.as_i64() {
            return u16::try_from(n).expect("port");
        }
        let name = text(port, "port");
        seq(&self.container()["ports"])
            .iter()
            .find(|p| scalar(&p["name"]).as_deref() == Some(name.as_str()))
            .and_then(|p| p["containerPort"].as_i64())
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or_else(|| panic!("the anomalyd container has no port named `{name}`"))
    }

    fn config_map_toml(&self, file_name: &str) -> String {
        let cm_name = self.config_volume_map_name();
        let cm = self.find("ConfigMap", &cm_name);
        scalar(&cm["data"][file_name]).unwrap_or_else(|| {
            panic!("ConfigMap {cm_name} has no key `{file_name}` (the file the image's CMD reads)")
        })
    }

    /// The ConfigMap behind the volume mounted at the config directory.
    fn config_volume_map_name(&self) -> String {
        let image_path = Dockerfile::load().config_path();
        let config_dir = parent(&image_path);
        let mount = seq(&self.container()["volumeMounts"])
            .iter()
            .find(|m| scalar(&m["mountPath"]).as_deref() == Some(config_dir.as_str()))
            .unwrap_or_else(|| {
                panic!("no volumeMount at {config_dir}, where the image reads {image_path}")
            });
        let volume_name = text(&mount["name"], "volumeMount name");
        let volume = seq(&self.deployment()["spec"]["template"]["spec"]["volumes"])
            .iter()
            .find(|v| scalar(&v["name"]).as_deref() == Some(volume_name.as_str()))
            .unwrap_or_else(|| panic!("no volume `{volume_name}` in the Deployment"));
        assert!(
            volume["configMap"]["items"].is_badvalue(),
            "the config volume remaps keys with `items`; mount the ConfigMap whole"
        );
        text(&volume["configMap"]["name"], "configMap volume name")
    }

    fn anomalyd_config(&self) -> Config {
        let image_path = Dockerfile::load().config_path();
        let file_name = image_path.rsplit('/').next().expect("file name");
        let local = tempfile::tempdir().expect("tempdir");
        let toml = self.with_local_web_configs(&self.config_map_toml(file_name), local.path());
        deployed_config(
            &toml,
            &self.env(),
            "the ConfigMap's anomalyd.toml with the Deployment's environment",
        )
    }

    /// The Secret volume mounted at `dir`, by its Secret's name.
    fn secret_mounted_at(&self, dir: &str) -> String {
        let mount = seq(&self.container()["volumeMounts"])
            .iter()
            .find(|m| scalar(&m["mountPath"]).as_deref() == Some(dir))
            .unwrap_or_else(|| panic!("no volumeMount at {dir}"));
        let volume_name = text(&mount["name"], "volumeMount name");
        let volume = seq(&self.deployment()["spec"]["template"]["spec"]["volumes"])
            .iter()
            .find(|v| scalar(&v["name"]).as_deref() == Some(volume_name.as_str()))
            .unwrap_or_else(|| panic!("no volume `{volume_name}` in the Deployment"));
        text(&volume["secret"]["secretName"], "a Secret volume")
    }

    /// `toml` with every `web_config_file` (a file of a mounted Secret)
    /// replaced by a copy of that Secret's file under `local`, whose
    /// certificate paths (files of another mounted Secret, made by
    /// cert-manager or kubectl) point at the test certificates: the daemon
    /// then reads what the pod would, with its own parser.
    fn with_local_web_configs(&self, toml: &str, local: &Path) -> String {
        let mut out = toml.to_owned();
        let paths: BTreeSet<String> = toml
            .lines()
            .filter_map(|l| l.trim().strip_prefix("web_config_file"))
            .filter_map(|rest| rest.split('"').nth(1))
            .map(str::to_owned)
            .collect();
        for path in paths {
            let (dir, file) = path.rsplit_once('/').expect("an absolute path");
            let secret = self.secret_mounted_at(dir);
            let web = scalar(&self.find("Secret", &secret)["stringData"][file])
                .unwrap_or_else(|| panic!("Secret {secret} has no key {file}"));
            let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
            let mut lines = Vec::new();
            for line in web.lines() {
                let key = line.trim().split(':').next().unwrap_or("");
                if key == "cert_file" || key == "key_file" {
                    let value = line.split_once(": ").expect("key: value").1.trim();
                    let (tls_dir, _) = value.rsplit_once('/').expect("an absolute path");
                    self.secret_mounted_at(tls_dir);
                    let fixture = if key == "cert_file" {
                        "server.crt"
                    } else {
                        "server.key"
                    };
                    lines.push(format!("  {key}: {}", fixtures.join(fixture).display()));
                } else {
                    lines.push(line.to_owned());
                }
            }
            let copy = local.join(format!("{secret}-{file}"));
            std::fs::write(&copy, lines.join("\n")).expect("write");
            out = out.replace(&format!("\"{path}\""), &format!("\"{}\"", copy.display()));
        }
        out
    }
}

/// Whether the web config the ConfigMap names (read from its Secret) has
/// a `tls_server_config`.
fn k8s_web_config_has_tls(k8s: &K8s) -> bool {
    let cm = k8s.config_map_toml("anomalyd.toml");
    let Some(path) = cm
        .lines()
        .filter_map(|l| l.trim().strip_prefix("web_config_file"))
        .find_map(|rest| rest.split('"').nth(1))
    else {
        return false;
    };
    let (dir, file) = path.rsplit_once('/').expect("an absolute path");
    let secret = k8s.secret_mounted_at(dir);
    scalar(&k8s.find("Secret", &secret)["stringData"][file])
        .is_some_and(|t| t.contains("tls_server_config"))
}

fn parent(path: &str) -> String {
    Path::new(path)
        .parent()
        .expect("absolute path")
        .display()
        .to_string()
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    !small.is_empty() && small.iter().all(|(k, v)| big.get(k) == Some(v))
}

// ---------------------------------------------------------------------------
// systemd

/// A unit file: (section, key, value) in order.
struct Unit(Vec<(String, String, String)>);

impl Unit {
    fn load() -> Self {
        let mut section = String::new();
        let mut out = Vec::new();
        for line in read("systemd/anomalyd.service").lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_owned();
            } else if let Some((k, v)) = line.split_once('=') {
                out.push((section.clone(), k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Self(out)
    }

    fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(s, k, _)| s == "Service" && k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    fn one(&self, key: &str) -> &str {
        match self.all(key).as_slice() {
            [v] => v,
            other => panic!("anomalyd.service: expected one {key}=, found {other:?}"),
        }
    }

    /// `Environment=` assignments.
    fn env(&self) -> BTreeMap<String, String> {
        self.all("Environment")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// `KEY=VALUE` lines of the EnvironmentFile example, commented-out examples
/// included (they are documentation and must stay right).
fn env_example() -> BTreeMap<String, String> {
    read("systemd/anomalyd.env.example")
        .lines()
        .map(|l| l.trim().trim_start_matches('#').trim())
        .filter(|l| {
            l.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
        })
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------
// The exposition and PromQL

/// The daemon's metric families: type, label names, and the values of the
/// closed-vocabulary labels, per family.
struct Exposition {
    types: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeSet<String>>,
    values: BTreeMap<(String, String), BTreeSet<String>>,
}

impl Exposition {
    /// Builds `Metrics` as the daemon does (with the opt-in per-series
    /// gauges on, every sink and source registered and the live page's
    /// history, so every family and label shows) and parses what it
    /// renders.
    fn new() -> Self {
        let config = MetricsConfig {
            per_series: anomalyd::telemetry::metrics::PerSeriesConfig {
                enabled: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let registry = Registry::new();
        let m = Metrics::new(
            registry.clone(),
            &config,
            &anomalyd::decode::FAILURE_REASONS,
            &anomalyd::pipeline::worker::skip_reasons(),
        )
        .expect("metrics");
        let _ = anomalyd::history::HistoryMetrics::new(&m).expect("history metrics");
        let ui = anomalyd::ui::UiConfig::default();
        let _history = anomalyd::ui::history::History::new(ui.limits(), 1, &registry)
            .expect("history metrics");
        for name in [
            anomalyd::alert::sink::log::NAME,
            anomalyd::alert::sink::webhook::NAME,
            anomalyd::alert::sink::alertmanager::NAME,
            anomalyd::alert::sink::kafka::NAME,
        ] {
            let _ = SinkMetrics::new(&m, name);
        }
        // Each shard labels the alerts-emitted family when it starts.
        let _ = anomalyd::alert::EmittedCounters::new(&m);
        let _ = m.source(anomalyd::source::kafka::NAME, &[]);
        let _ = anomalyd::source::remote_write::ReceiverMetrics::new(&m).expect("receiver metrics");
        let _ = anomalyd::telemetry::web::WebMetrics::new(&registry).expect("HTTP metrics");
        m.set_consumer_lag("metrics", 0, 1);
        let sample = SeriesSample {
            value: 1.0,
            expected: 1.0,
            lower: 0.0,
            upper: 2.0,
            score: 0.1,
        };
        m.observe_series(&SeriesKey::from_name("cpu"), &sample);
        Self::parse(&m.render().expect("render"))
    }

    fn parse(text: &str) -> Self {
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line");
                types.insert(name.to_owned(), kind.to_owned());
            }
        }
        let mut e = Self {
            types,
            labels: BTreeMap::new(),
            values: BTreeMap::new(),
        };
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let family = e
                .family_of(&line[..name_end])
                .unwrap_or_else(|| panic!("sample without a family: {line}"))
                .to_owned();
            let labels = e.labels.entry(family.clone()).or_default();
            if line[name_end..].starts_with('{') {
                let close = line.rfind('}').expect("closing brace");
                let matchers =
                    read_matchers(&line[name_end..=close].chars().collect::<Vec<_>>(), 0).0;
                for (label, _, value) in matchers {
                    labels.insert(label.clone());
                    if CLOSED_LABELS.contains(&label.as_str()) {
                        e.values
                            .entry((family.clone(), label))
                            .or_default()
                            .insert(value);
                    }
                }
            }
        }
        e
    }

    /// The family a series name belongs to (`_bucket`, `_sum`, `_count` of
    /// a histogram map to the histogram).
    fn family_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.types.contains_key(name) {
            return Some(name);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            (self.types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
        })
    }
}

/// What a PromQL expression refers to.
#[derive(Debug, Default)]
struct Promql {
    /// Metric names (only `anomalyd_*`).
    metrics: Vec<String>,
    /// (metric or "", label, operator, value) of every selector matcher.
    matchers: Vec<(String, String, String, String)>,
    /// Labels in `by`, `without`, `on`, `ignoring`, `group_left/right`.
    grouping: Vec<String>,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

fn skip_ws(c: &[char], mut i: usize) -> usize {
    while i < c.len() && c[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Reads a quoted string at `c[i]`; returns its (unescaped) value and the
/// index after it.
fn read_string(c: &[char], i: usize) -> (String, usize) {
    let quote = c[i];
    let mut out = String::new();
    let mut j = i + 1;
    while j < c.len() && c[j] != quote {
        if c[j] == '\\' && quote != '`' && j + 1 < c.len() {
            j += 1;
        }
        out.push(c[j]);
        j += 1;
    }
    (out, j + 1)
}

fn read_ident(c: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < c.len() && is_ident(c[j]) {
        j += 1;
    }
    (c[i..j].iter().collect(), j)
}

/// One selector matcher: label, operator, value.
type Matcher = (String, String, String);

/// Reads `{label op "value", ...}` starting at the `{` at `c[i]`.
fn read_matchers(c: &[char], i: usize) -> (Vec<Matcher>, usize) {
    let mut out = Vec::new();
    let mut j = i + 1;
    loop {
        j = skip_ws(c, j);
        match c.get(j) {
            None => return (out, j),
            Some('}') => return (out, j + 1),
            Some(',') => {
                j += 1;
                continue;
            }
            _ => {}
        }
        let (label, k) = read_ident(c, j);
        let mut k = skip_ws(c, k);
        let op_start = k;
        while k < c.len() && matches!(c[k], '=' | '!' | '~') {
            k += 1;
        }
        let op: String = c[op_start..k].iter().collect();
        k = skip_ws(c, k);
        let (value, k) = match c.get(k) {
            Some('"' | '\'' | '`') => read_string(c, k),
            _ => (String::new(), k + 1),
        };
        out.push((label, op, value));
        j = k;
    }
}

fn read_label_list(c: &[char], i: usize) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut j = i + 1;
    while j < c.len() && c[j] != ')' {
        if is_ident_start(c[j]) {
            let (label, k) = read_ident(c, j);
            out.push(label);
            j = k;
        } else {
            j += 1;
        }
    }
    (out, j + 1)
}

/// A small PromQL scanner: enough to find metric names, selector matchers
/// and grouping labels (Grafana `$variables` are skipped).
fn scan_promql(expr: &str) -> Promql {
    let c: Vec<char> = expr.chars().collect();
    let mut u = Promql::default();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if matches!(ch, '"' | '\'' | '`') {
            i = read_string(&c, i).1;
        } else if ch == '$' {
            // A Grafana variable: $name or ${name}.
            i += 1;
            if c.get(i) == Some(&'{') {
                while i < c.len() && c[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                i = read_ident(&c, i).1;
            }
        } else if ch.is_ascii_digit() || ch == '.' {
            // Numbers and durations (5m, 1e-9).
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ch == '{' {
            let (m, next) = read_matchers(&c, i);
            u.matchers
                .extend(m.into_iter().map(|(l, o, v)| (String::new(), l, o, v)));
            i = next;
        } else if is_ident_start(ch) {
            let (ident, end) = read_ident(&c, i);
            let next = skip_ws(&c, end);
            let grouping = matches!(
                ident.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            );
            if grouping && c.get(next) == Some(&'(') {
                let (labels, after) = read_label_list(&c, next);
                u.grouping.extend(labels);
                i = after;
                continue;
            }
            if c.get(next) == Some(&'{') {
                let (m, after) = read_matchers(&c, next);
                u.matchers
                    .extend(m.into_iter().map(|(l, o, v)| (ident.clone(), l, o, v)));
                i = after;
            } else {
                i = end;
            }
            if ident.starts_with("anomalyd_") {
                u.metrics.push(ident);
            }
        } else {
            i += 1;
        }
    }
    u
}

/// Problems with one expression: unknown metrics, labels that the metric
/// does not have, grouping by labels none of its metrics has, closed-label
/// values the code never produces.
fn promql_problems(expr: &str, e: &Exposition, place: &str) -> Vec<String> {
    let u = scan_promql(expr);
    let mut problems = Vec::new();
    let mut families = BTreeSet::new();
    for m in &u.metrics {
        match e.family_of(m) {
            Some(f) => {
                families.insert(f.to_owned());
            }
            None => problems.push(format!(
                "{place}: metric `{m}` is not exposed by the daemon (src/telemetry/metrics.rs)"
            )),
        }
    }
    for (metric, label, op, value) in &u.matchers {
        let Some(family) = e.family_of(metric) else {
            continue;
        };
        let known = &e.labels[family];
        if label != "__name__" && !TARGET_LABELS.contains(&label.as_str()) && !known.contains(label)
        {
            problems.push(format!(
                "{place}: `{metric}` has no label `{label}` (it has: {known:?})"
            ));
            continue;
        }
        if let Some(values) = e.values.get(&(family.to_owned(), label.clone())) {
            if value.contains('$') || op.starts_with('!') {
                continue;
            }
            // A plain value, or an alternation of plain values for =~.
            let alternatives: Vec<&str> = if op == "=~" {
                value.split('|').collect()
            } else {
                vec![value.as_str()]
            };
            for v in alternatives {
                let plain = v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if plain && !values.contains(v) {
                    problems.push(format!(
                        "{place}: `{metric}` never has {label}=\"{v}\" (values: {values:?})"
                    ));
                }
            }
        }
    }
    if !families.is_empty() {
        let available: BTreeSet<&str> = families
            .iter()
            .flat_map(|f| e.labels[f].iter().map(String::as_str))
            .chain(TARGET_LABELS)
            .collect();
        for label in &u.grouping {
            if !available.contains(label.as_str()) {
                problems.push(format!(
                    "{place}: groups by `{label}`, which none of {families:?} has"
                ));
            }
        }
    }
    problems
}

/// A query and where it is (a panel, a rule).
type Located = (String, String);

/// A `label_values(selector, label)` variable query.
struct LabelValues {
    place: String,
    selector: String,
    label: String,
}

/// Every PromQL query of the dashboard with its panel, and the variables'
/// `label_values` queries.
fn dashboard_queries() -> (Vec<Located>, Vec<LabelValues>) {
    let dash: serde_json::Value = serde_json::from_str(&read("grafana/anomalyd-dashboard.json"))
        .expect("deploy/grafana/anomalyd-dashboard.json is JSON");
    fn walk(v: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                let title = m
                    .get("title")
                    .and_then(|t| t.as_str())
                    .unwrap_or(title)
                    .to_owned();
                for (k, child) in m {
                    match (k.as_str(), child) {
                        ("expr", serde_json::Value::String(expr)) => {
                            out.push((format!("panel `{title}`"), expr.clone()));
                        }
                        ("templating", _) => {}
                        _ => walk(child, &title, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, title, out)),
            _ => {}
        }
    }
    let mut exprs = Vec::new();
    walk(&dash, "dashboard", &mut exprs);
    let mut label_values = Vec::new();
    for var in dash["templating"]["list"].as_array().expect("templating") {
        if var["type"] != "query" {
            continue;
        }
        let q = var["query"]["query"]
            .as_str()
            .or_else(|| var["query"].as_str())
            .expect("query variable text");
        let place = format!("variable `{}`", var["name"].as_str().unwrap_or("?"));
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{place}: only label_values() queries are checked: {q}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        label_values.push(LabelValues {
            place,
            selector: selector.trim().to_owned(),
            label: label.trim().to_owned(),
        });
    }
    (exprs, label_values)
}

/// The alerting rules' expressions, by alert name.
fn rule_exprs() -> Vec<Located> {
    let rules = yaml("prometheus/anomalyd-rules.yml");
    seq(&rules["groups"])
        .iter()
        .flat_map(|g| seq(&g["rules"]))
        .map(|r| {
            let name = scalar(&r["alert"])
                .or_else(|| scalar(&r["record"]))
                .expect("rule name");
            (format!("rule {name}"), text(&r["expr"], "rule expr"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// External tools

fn promtool() -> PathBuf {
    crate::real_parts::PROMTOOL.path()
}

/// Runs a tool; returns (success, stdout + stderr).
fn run(program: &Path, args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

// ===========================================================================
// Tests

#[test]
fn deployed_configs_load_and_validate() {
    let compose = Compose::load().anomalyd_config();
    let k8s = K8s::load().anomalyd_config();
    // The overrides took effect (the env source really is wired in).
    assert!(compose.metrics.per_series.enabled);
    assert_eq!(compose.kafka.client_id, "anomalyd-compose");
    assert_eq!(k8s.kafka.client_id, "from-value-from");

    // systemd: the unit's and the example file's variables on top of the
    // defaults (the unit's config file is the operator's).
    let mut env = env_example();
    env.extend(Unit::load().env());
    deployed_config("", &env, "the systemd unit's environment");

    // Any other TOML file under deploy/ is an anomalyd config too and must
    // at least stand on its own.
    fn tomls(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read deploy/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                tomls(&path, out);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    tomls(&deploy_path(""), &mut files);
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        deployed_config(&text, &BTreeMap::new(), &f.display().to_string());
    }
}

#[test]
fn environment_overrides_name_existing_keys() {
    let defaults = default_config_json();
    let mut vars: Vec<(String, String)> = Vec::new();
    let compose = Compose::load();
    for svc in compose.service_names() {
        for k in compose.env(&svc).into_keys() {
            vars.push((format!("compose service {svc}"), k));
        }
    }
    for k in K8s::load().env().into_keys() {
        vars.push(("kubernetes Deployment".into(), k));
    }
    for k in Unit::load().env().into_keys() {
        vars.push(("anomalyd.service".into(), k));
    }
    for k in env_example().into_keys() {
        vars.push(("anomalyd.env.example".into(), k));
    }
    let overrides: Vec<_> = vars
        .iter()
        .filter(|(_, k)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
        .collect();
    assert!(
        overrides.len() >= 4,
        "expected overrides in compose, k8s and systemd: {overrides:?}"
    );
    let problems: Vec<String> = overrides
        .iter()
        .filter_map(|(place, k)| env_key_problem(k, &defaults).map(|p| format!("{place}: {p}")))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The check itself can fail.
    assert!(env_key_problem("ANOMALYD__KAFKA__GROUPID", &defaults).is_some());
    assert!(env_key_problem("ANOMALYD__KAFKA", &defaults).is_some());
    assert!(env_key_problem("ANOMALYD__KAFKA__BROKERS__X", &defaults).is_some());
    assert!(env_key_problem("ANOMALYD__METRICS__PER_SERIES__MAX_SERIES", &defaults).is_none());
    assert!(env_key_problem("ANOMALYD__KAFKA__OPTIONS__FETCH_MAX_BYTES", &defaults).is_none());

    // A variable with a single `_` after the prefix is not an override at
    // all (the loader reads only ANOMALYD__ variables): only ANOMALYD_CONFIG may look so.
    for (place, k) in &vars {
        if k.starts_with("ANOMALYD_") && !k.starts_with("ANOMALYD__") {
            assert_eq!(
                k, "ANOMALYD_CONFIG",
                "{place}: {k} is neither an override nor ANOMALYD_CONFIG"
            );
        }
    }
}

#[test]
fn secrets_are_provided_by_their_deployment() {
    let k8s = K8s::load();
    let config = k8s.anomalyd_config();
    let secrets = secret_vars(&config);
    assert!(
        secrets.contains("KAFKA_SASL_PASSWORD"),
        "the Kubernetes config shows the SASL password via kafka.secret_env"
    );
    let env = seq(&k8s.container()["env"]);
    for var in &secrets {
        let e = env
            .iter()
            .find(|e| scalar(&e["name"]).as_deref() == Some(var.as_str()))
            .unwrap_or_else(|| {
                panic!("the ConfigMap reads ${var}, which the Deployment does not set")
            });
        let r = &e["valueFrom"]["secretKeyRef"];
        let (name, key) = (
            text(&r["name"], "secret name"),
            text(&r["key"], "secret key"),
        );
        let secret = k8s.find("Secret", &name);
        assert!(
            !secret["stringData"][key.as_str()].is_badvalue()
                || !secret["data"][key.as_str()].is_badvalue(),
            "Secret {name} (secret.example.yaml) has no key {key}"
        );
    }

    let compose = Compose::load();
    let compose_env = compose.env("anomalyd");
    for var in secret_vars(&compose.anomalyd_config()) {
        assert!(
            compose_env.contains_key(&var),
            "compose anomalyd lacks ${var}"
        );
    }
}

#[test]
fn metrics_port_agrees_everywhere() {
    let docker = Dockerfile::load();
    let exposed = docker.exposed_ports();
    let health_port = healthcheck_port(&docker.healthcheck());

    // Compose.
    let compose = Compose::load();
    let addr = metrics_addr(&compose.anomalyd_config(), "compose");
    assert!(
        addr.ip().is_unspecified(),
        "compose: metrics.listen_addr {addr} must listen on all interfaces, or neither \
         Prometheus nor the port mapping reaches it"
    );
    let port = addr.port();
    assert!(
        exposed.contains(&port),
        "Dockerfile EXPOSE {exposed:?} lacks {port}"
    );
    assert_eq!(health_port, port, "Dockerfile HEALTHCHECK port");
    let published = compose.published("anomalyd");
    assert!(
        published.iter().any(|(_, _, c)| *c == port),
        "compose anomalyd publishes {published:?}, not container port {port}"
    );
    let prom = yaml("prometheus/prometheus.yml");
    let job = seq(&prom["scrape_configs"])
        .iter()
        .find(|j| scalar(&j["job_name"]).as_deref() == Some("anomalyd"))
        .expect("prometheus.yml has job anomalyd");
    let targets: Vec<String> = seq(&job["static_configs"])
        .iter()
        .flat_map(|s| seq(&s["targets"]))
        .filter_map(scalar)
        .collect();
    assert_eq!(
        targets,
        [format!("anomalyd:{port}")],
        "prometheus.yml targets"
    );

    // Kubernetes.
    let k8s = K8s::load();
    let addr = metrics_addr(&k8s.anomalyd_config(), "kubernetes");
    assert!(
        addr.ip().is_unspecified(),
        "kubernetes: metrics.listen_addr {addr} must listen on all interfaces for the probes and Prometheus"
    );
    let port = addr.port();
    assert!(
        exposed.contains(&port),
        "Dockerfile EXPOSE {exposed:?} lacks {port}"
    );
    let c = k8s.container();
    assert!(
        k8s_web_config_has_tls(&k8s),
        "the Kubernetes metrics port speaks TLS (metrics.web_config_file)"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            k8s.container_port(&c[probe]["httpGet"]["port"]),
            port,
            "{probe} port"
        );
        assert_eq!(
            text(&c[probe]["httpGet"]["scheme"], probe),
            "HTTPS",
            "{probe} speaks TLS to the port"
        );
    }
    let monitor = k8s.find("ServiceMonitor", "anomalyd");
    for e in seq(&monitor["spec"]["endpoints"]) {
        assert_eq!(text(&e["scheme"], "ServiceMonitor scheme"), "https");
        assert!(
            !e["basicAuth"].is_badvalue(),
            "ServiceMonitor sends the password"
        );
    }
    let job = &yaml("kubernetes/prometheus-scrape-config.yml")["scrape_configs"][0];
    assert_eq!(text(&job["scheme"], "scrape config scheme"), "https");
    assert!(
        !job["basic_auth"].is_badvalue(),
        "the scrape config sends the password"
    );
    let service = k8s.find("Service", "anomalyd");
    let service_ports = seq(&service["spec"]["ports"]);
    assert_eq!(
        service_ports.len(),
        1,
        "the Service has the metrics port only"
    );
    let sp = &service_ports[0];
    assert_eq!(
        k8s.container_port(&sp["targetPort"]),
        port,
        "Service targetPort"
    );
    assert_eq!(
        sp["port"].as_i64(),
        Some(i64::from(port)),
        "Service port (keep it equal to the container's)"
    );
    let port_name = text(&sp["name"], "Service port name");
    let monitor = k8s.find("ServiceMonitor", "anomalyd");
    let endpoints = seq(&monitor["spec"]["endpoints"]);
    assert!(
        endpoints
            .iter()
            .all(|e| scalar(&e["port"]).as_deref() == Some(port_name.as_str())),
        "ServiceMonitor endpoints must use the Service port `{port_name}`"
    );
    let scrape = yaml("kubernetes/prometheus-scrape-config.yml");
    let keep = seq(&scrape["scrape_configs"][0]["relabel_configs"])
        .iter()
        .find(|r| scalar(&r["action"]).as_deref() == Some("keep"))
        .expect("a keep relabeling");
    assert_eq!(
        text(&keep["regex"], "keep regex"),
        format!(
            "{};{port_name}",
            text(&service["metadata"]["name"], "service name")
        ),
        "the scrape config keeps the Service's metrics port"
    );
}

#[test]
fn config_path_uid_and_state_dir_agree() {
    let docker = Dockerfile::load();
    assert_eq!(docker.exec_form("ENTRYPOINT"), ["anomalyd"]);
    let cmd = docker.exec_form("CMD");
    assert_eq!(
        cmd.first().map(String::as_str),
        Some("run"),
        "CMD runs the daemon"
    );
    let config_path = docker.config_path();
    let config_dir = parent(&config_path);

    // Compose mounts the compose config at the image's path and does not
    // override the command.
    let compose = Compose::load();
    assert!(compose.service("anomalyd")["command"].is_badvalue());
    let binds = compose.binds("anomalyd");
    assert!(
        binds
            .iter()
            .any(|(src, dst)| src == "./anomalyd.compose.toml" && *dst == config_path),
        "compose must mount ./anomalyd.compose.toml at {config_path}: {binds:?}"
    );
    for svc in compose.service_names() {
        for (src, _) in compose.binds(&svc) {
            assert!(
                deploy_path(&src).exists(),
                "compose service {svc} mounts {src}, which does not exist"
            );
        }
    }

    // Kubernetes mounts the ConfigMap at the directory (checked by
    // anomalyd_config) and does not override the command.
    let k8s = K8s::load();
    let c = k8s.container();
    assert!(c["command"].is_badvalue() && c["args"].is_badvalue());
    let _ = k8s.config_map_toml(config_path.rsplit('/').next().expect("name"));

    // systemd runs the same command with the same path, inside its
    // ConfigurationDirectory.
    let unit = Unit::load();
    let exec: Vec<String> = unit
        .one("ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(exec[0].starts_with('/') && exec[0].ends_with("/anomalyd"));
    assert_eq!(exec[1], "run");
    assert_eq!(config_arg(&exec).as_deref(), Some(config_path.as_str()));
    assert_eq!(
        format!("/etc/{}", unit.one("ConfigurationDirectory")),
        config_dir
    );

    // The image's uid is the pod's.
    let (uid, gid) = docker.user();
    assert_ne!(uid, 0, "the image must not run as root");
    let pod = &k8s.deployment()["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod["runAsUser"].as_i64(), Some(i64::from(uid)));
    assert_eq!(pod["runAsGroup"].as_i64(), gid.map(i64::from));

    // State lives where the image declares its volume and systemd its
    // StateDirectory.
    let state_dir = Config::default().state.dir.display().to_string();
    assert!(
        docker.all("VOLUME").iter().any(|v| v.contains(&state_dir)),
        "Dockerfile VOLUME must include {state_dir}"
    );
    let systemd_dir = format!("/var/lib/{}", unit.one("StateDirectory"));
    let effective = unit
        .env()
        .get("ANOMALYD__STATE__DIR")
        .cloned()
        .unwrap_or(state_dir);
    assert_eq!(effective, systemd_dir, "state.dir under systemd");

    // The image's build context keeps what the Dockerfile copies.
    let ignore = read("Dockerfile.dockerignore");
    for copy in docker.all("COPY") {
        if copy.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = copy.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            let src = src.trim_end_matches('/');
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim().trim_end_matches('/') == format!("!{src}")),
                "Dockerfile copies {src}, which Dockerfile.dockerignore does not re-include"
            );
        }
    }
    assert!(docker.all("FROM").len() >= 2, "multi-stage build");
    assert!(docker.all("FROM")[0].starts_with("rust:"));
    assert!(docker.last("FROM").starts_with("debian:"));
}

#[test]
fn stop_timeouts_exceed_the_shutdown_grace_period() {
    let compose = Compose::load();
    let grace = compose.anomalyd_config().pipeline.shutdown_grace_secs as f64;
    let stop = duration_secs(&text(
        &compose.service("anomalyd")["stop_grace_period"],
        "compose anomalyd stop_grace_period (Docker's default of 10 s is too short)",
    ));
    assert!(
        stop > grace,
        "compose stop_grace_period {stop} s <= shutdown_grace_secs {grace}"
    );

    let k8s = K8s::load();
    let grace = k8s.anomalyd_config().pipeline.shutdown_grace_secs as f64;
    let termination = k8s.deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_i64()
        .expect("terminationGracePeriodSeconds") as f64;
    assert!(
        termination > grace,
        "terminationGracePeriodSeconds {termination} <= {grace}"
    );

    let unit = Unit::load();
    let mut env = env_example();
    env.extend(unit.env());
    let grace = load_config("", &env, "systemd")
        .pipeline
        .shutdown_grace_secs as f64;
    let stop = duration_secs(unit.one("TimeoutStopSec"));
    assert!(stop > grace, "TimeoutStopSec {stop} <= {grace}");
    assert_eq!(unit.one("KillSignal"), "SIGTERM");
}

#[test]
fn kubernetes_objects_fit_together() {
    let k8s = K8s::load();
    let d = k8s.deployment();
    let pod_labels = string_map(&d["spec"]["template"]["metadata"]["labels"]);
    let selects = |what: &str, sel: &Yaml| {
        let sel = string_map(sel);
        assert!(
            is_subset(&sel, &pod_labels),
            "{what} {sel:?} does not select the pods {pod_labels:?}"
        );
    };
    selects("Deployment selector", &d["spec"]["selector"]["matchLabels"]);
    selects(
        "Service selector",
        &k8s.find("Service", "anomalyd")["spec"]["selector"],
    );
    selects(
        "PodDisruptionBudget selector",
        &k8s.find("PodDisruptionBudget", "anomalyd")["spec"]["selector"]["matchLabels"],
    );
    let service_labels = string_map(&k8s.find("Service", "anomalyd")["metadata"]["labels"]);
    let monitor =
        string_map(&k8s.find("ServiceMonitor", "anomalyd")["spec"]["selector"]["matchLabels"]);
    assert!(
        is_subset(&monitor, &service_labels),
        "ServiceMonitor does not select the Service"
    );

    // Hardened pod.
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = k8s.container();
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert!(
        seq(&sc["capabilities"]["drop"])
            .iter()
            .any(|d| scalar(d).as_deref() == Some("ALL"))
    );
    for r in ["requests", "limits"] {
        assert!(
            !c["resources"][r]["memory"].is_badvalue(),
            "resources.{r}.memory"
        );
    }
    assert_eq!(
        text(&c["readinessProbe"]["httpGet"]["path"], "readiness"),
        "/readyz"
    );
    assert_eq!(
        text(&c["livenessProbe"]["httpGet"]["path"], "liveness"),
        "/healthz"
    );

    // Scale-out needs the changelog store: partitions (and their state)
    // move between pods.
    let config = k8s.anomalyd_config();
    if d["spec"]["replicas"].as_i64().unwrap_or(1) > 1 {
        assert_eq!(
            config.state.store,
            anomalyd::state::StoreKind::Changelog,
            "several replicas need state.store = \"changelog\""
        );
    }

    // kustomization.yaml lists existing files.
    let kust = yaml("kubernetes/kustomization.yaml");
    for r in seq(&kust["resources"]) {
        let f = text(r, "resource");
        assert!(
            deploy_path(&format!("kubernetes/{f}")).exists(),
            "kustomization lists missing {f}"
        );
    }
}

#[test]
fn compose_services_fit_together() {
    let compose = Compose::load();
    let config = compose.anomalyd_config();
    let services = compose.service_names();

    // Every published port is on loopback.
    for svc in &services {
        for (ip, host, _) in compose.published(svc) {
            assert_eq!(
                ip, "127.0.0.1",
                "compose service {svc} publishes port {host} on {ip}"
            );
        }
    }

    // Brokers: an advertised in-network listener of the kafka service.
    let kafka_env = compose.env("kafka");
    let advertised = kafka_env["KAFKA_ADVERTISED_LISTENERS"].clone();
    let listeners: Vec<&str> = advertised
        .split(',')
        .filter_map(|l| l.split_once("://").map(|(_, a)| a))
        .collect();
    let mut brokers = vec![config.kafka.brokers.clone()];
    if config.sinks.kafka.enabled {
        brokers.push(config.sinks.kafka.brokers.clone());
    }
    for b in brokers.iter().flat_map(|b| b.split(',')) {
        assert!(
            listeners.contains(&b),
            "broker {b} is not advertised ({advertised})"
        );
        let host = b.split(':').next().expect("host");
        assert!(
            services.iter().any(|s| s == host),
            "broker host {host} is not a compose service"
        );
    }

    // Topics: the init job creates every topic the config uses.
    let init = text(
        &seq(&compose.service("kafka-init")["command"])[0],
        "kafka-init command",
    );
    let mut created: BTreeMap<String, (u32, bool)> = BTreeMap::new();
    for line in init.lines().filter(|l| l.contains("--create")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        let topic = arg("--topic").expect("--topic").to_owned();
        let partitions = arg("--partitions")
            .expect("--partitions")
            .parse()
            .expect("partitions");
        let compact = line.contains("cleanup.policy=compact");
        created.insert(topic, (partitions, compact));
    }
    let input_partitions = config
        .kafka
        .topics
        .iter()
        .map(|t| {
            created
                .get(t)
                .unwrap_or_else(|| panic!("kafka-init does not create input topic {t}"))
                .0
        })
        .max()
        .expect("an input topic");
    if config.sinks.kafka.enabled {
        assert!(
            created.contains_key(&config.sinks.kafka.topic),
            "alert topic not created"
        );
    }
    if config.state.store == anomalyd::state::StoreKind::Changelog {
        let (partitions, compact) = created
            .get(&config.state.changelog_topic)
            .expect("kafka-init creates the changelog topic");
        assert!(compact, "the changelog topic must be compacted");
        assert!(
            *partitions >= input_partitions,
            "the changelog topic needs at least as many partitions as the input ({input_partitions})"
        );
    }

    // Alertmanager: the sink posts to the compose service, Prometheus
    // alerts to the same, and the route for the sink's alerts matches its
    // alertname.
    if config.sinks.alertmanager.enabled {
        let url = &config.sinks.alertmanager.url;
        let authority = url
            .strip_prefix("http://")
            .expect("http URL")
            .trim_end_matches('/');
        let (host, port) = authority.split_once(':').expect("host:port");
        assert!(
            services.iter().any(|s| s == host),
            "{url}: {host} is not a compose service"
        );
        let port: u16 = port.parse().expect("port");
        assert!(
            compose.published(host).iter().any(|(_, _, c)| *c == port),
            "{url}: port"
        );
        let prom = yaml("prometheus/prometheus.yml");
        let am_targets: Vec<String> = seq(&prom["alerting"]["alertmanagers"])
            .iter()
            .flat_map(|a| seq(&a["static_configs"]))
            .flat_map(|s| seq(&s["targets"]))
            .filter_map(scalar)
            .collect();
        assert_eq!(
            am_targets,
            [authority.to_owned()],
            "Prometheus alerts the same Alertmanager"
        );
        let am = yaml("alertmanager/alertmanager.yml");
        let wanted = format!("alertname=\"{}\"", config.sinks.alertmanager.alertname);
        assert!(
            seq(&am["route"]["routes"])
                .iter()
                .any(|r| seq(&r["matchers"])
                    .iter()
                    .any(|m| scalar(m).as_deref() == Some(wanted.as_str()))),
            "alertmanager.yml has no route for {wanted}"
        );
    }

    // Prometheus loads the rules file that compose mounts beside it.
    let prom_binds = compose.binds("prometheus");
    let config_target = prom_binds
        .iter()
        .find(|(src, _)| src == "./prometheus/prometheus.yml")
        .map(|(_, dst)| dst.clone())
        .expect("prometheus.yml is mounted");
    let prom = yaml("prometheus/prometheus.yml");
    for rf in seq(&prom["rule_files"]) {
        let rf = text(rf, "rule file");
        let in_container = format!("{}/{rf}", parent(&config_target));
        let mounted = prom_binds
            .iter()
            .find(|(_, dst)| *dst == in_container)
            .unwrap_or_else(|| panic!("rule file {rf} is not mounted at {in_container}"));
        assert_eq!(mounted.0, format!("./prometheus/{rf}"));
    }

    // Grafana: the datasource is the compose Prometheus, the dashboard
    // provider reads where the dashboard is mounted.
    let ds = yaml("grafana/provisioning/datasources/prometheus.yml");
    let url = text(&ds["datasources"][0]["url"], "datasource url");
    let published = compose.published("prometheus");
    assert!(
        published
            .iter()
            .any(|(_, _, c)| url == format!("http://prometheus:{c}")),
        "datasource {url} vs prometheus ports {published:?}"
    );
    let provider = yaml("grafana/provisioning/dashboards/anomalyd.yml");
    let dir = text(
        &provider["providers"][0]["options"]["path"],
        "provider path",
    );
    let grafana = compose.binds("grafana");
    assert!(
        grafana
            .iter()
            .any(|(src, dst)| src == "./grafana/anomalyd-dashboard.json" && parent(dst) == dir),
        "the dashboard is not mounted into {dir}: {grafana:?}"
    );
    assert!(grafana.iter().any(|(src, dst)| src == "./grafana/provisioning" && dst == "/etc/grafana/provisioning"));
}

#[test]
fn rules_target_the_scrape_job_deployments_use() {
    let mut jobs = BTreeSet::new();
    for (_, expr) in rule_exprs() {
        for (_, label, op, value) in scan_promql(&expr).matchers {
            if label == "job" && op == "=" {
                jobs.insert(value);
            }
        }
    }
    assert_eq!(jobs.len(), 1, "the rules name one job: {jobs:?}");
    let job = jobs.into_iter().next().expect("one");
    let names = |file: &str| -> Vec<String> {
        seq(&yaml(file)["scrape_configs"])
            .iter()
            .filter_map(|j| scalar(&j["job_name"]))
            .collect()
    };
    assert!(
        names("prometheus/prometheus.yml").contains(&job),
        "compose scrape job"
    );
    assert!(
        names("kubernetes/prometheus-scrape-config.yml").contains(&job),
        "k8s scrape job"
    );
    // A ServiceMonitor's job label is the Service name.
    let k8s = K8s::load();
    assert_eq!(
        text(
            &k8s.find("Service", "anomalyd")["metadata"]["name"],
            "service"
        ),
        job
    );
    assert!(k8s.find("ServiceMonitor", "anomalyd")["spec"]["jobLabel"].is_badvalue());
}

#[test]
fn dashboard_and_rules_use_only_exposed_metrics_and_labels() {
    let e = Exposition::new();
    let (exprs, label_values) = dashboard_queries();
    let rules = rule_exprs();
    assert!(
        exprs.len() >= 20,
        "the dashboard has its panels: {}",
        exprs.len()
    );
    let mut problems = Vec::new();
    for (place, expr) in exprs.iter().chain(&rules) {
        problems.extend(promql_problems(expr, &e, place));
    }
    for LabelValues {
        place,
        selector,
        label,
    } in &label_values
    {
        problems.extend(promql_problems(selector, &e, place));
        for m in scan_promql(selector).metrics {
            let family = e.family_of(&m).unwrap_or(&m);
            let known = e.labels.get(family);
            if !TARGET_LABELS.contains(&label.as_str()) && !known.is_some_and(|k| k.contains(label))
            {
                problems.push(format!("{place}: `{m}` has no label `{label}`"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The checker catches what it is for.
    assert!(!promql_problems("rate(anomalyd_events_procesed_total[5m])", &e, "x").is_empty());
    assert!(!promql_problems("anomalyd_sink_queue_length{sinkname=\"log\"}", &e, "x").is_empty());
    assert!(
        !promql_problems("sum by (partition) (anomalyd_events_failed_total)", &e, "x").is_empty()
    );
    assert!(
        !promql_problems(
            "anomalyd_alerts_dropped_total{reason=~\"queue_full|lost\"}",
            &e,
            "x"
        )
        .is_empty()
    );
    assert!(promql_problems(
        "histogram_quantile(0.9, sum by (le) (rate(anomalyd_event_processing_seconds_bucket{job=~\"$job\"}[$__rate_interval])))",
        &e,
        "x"
    )
    .is_empty());
}

#[test]
fn dashboard_charts_every_metric_family() {
    let e = Exposition::new();
    let (exprs, _) = dashboard_queries();
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, expr)| scan_promql(expr).metrics)
        .filter_map(|m| e.family_of(&m).map(str::to_owned))
        .collect();
    let missing: Vec<&String> = e.types.keys().filter(|f| !used.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "metric families the dashboard does not chart (add a panel to \
         deploy/grafana/anomalyd-dashboard.json): {missing:?}"
    );
}

#[test]
fn promtool_accepts_rules_tests_config_and_dashboard_queries() {
    let promtool = promtool();
    let dir = deploy_path("prometheus");
    let (ok, report) = run(&promtool, &["check", "rules", "anomalyd-rules.yml"], &dir);
    assert!(ok, "promtool check rules:\n{report}");
    let (ok, report) = run(
        &promtool,
        &["test", "rules", "anomalyd-rules.test.yml"],
        &dir,
    );
    assert!(ok, "promtool test rules (the rules' unit tests):\n{report}");
    // prometheus.yml names its rule files relative to itself; compose
    // mounts them side by side, so they resolve here as in the container.
    let prom = yaml("prometheus/prometheus.yml");
    for rf in seq(&prom["rule_files"]) {
        let rf = text(rf, "rule file");
        assert!(
            dir.join(&rf).exists(),
            "prometheus.yml names {rf}, not in deploy/prometheus"
        );
    }
    let (ok, report) = run(&promtool, &["check", "config", "prometheus.yml"], &dir);
    assert!(ok, "promtool check config prometheus.yml:\n{report}");

    // The Kubernetes scrape config uses kubernetes_sd_configs, which
    // Debian's Prometheus build leaves out. Such a promtool still checks
    // the rest (job, relabelling, scrape settings) on a copy whose service
    // discovery is a static target; the discovery block itself is checked
    // here against Prometheus' documented roles and keys.
    let k8s_rel = "kubernetes/prometheus-scrape-config.yml";
    let k8s = yaml(k8s_rel);
    let jobs = seq(&k8s["scrape_configs"]);
    assert!(!jobs.is_empty(), "{k8s_rel}: no scrape_configs");
    for job in jobs {
        let sd = seq(&job["kubernetes_sd_configs"]);
        assert!(
            !sd.is_empty(),
            "{k8s_rel}: a job without kubernetes_sd_configs"
        );
        for c in sd {
            let role = text(&c["role"], "kubernetes_sd_configs role");
            assert!(
                [
                    "node",
                    "service",
                    "pod",
                    "endpoints",
                    "endpointslice",
                    "ingress"
                ]
                .contains(&role.as_str()),
                "{k8s_rel}: `{role}` is not a Kubernetes SD role"
            );
            for key in hash_keys(c) {
                assert!(
                    [
                        "role",
                        "namespaces",
                        "selectors",
                        "api_server",
                        "kubeconfig_file",
                        "attach_metadata"
                    ]
                    .contains(&key.as_str()),
                    "{k8s_rel}: `{key}` is not a kubernetes_sd_configs key"
                );
            }
        }
    }
    let k8s_dir = deploy_path("kubernetes");
    let (ok, report) = run(
        &promtool,
        &["check", "config", "prometheus-scrape-config.yml"],
        &k8s_dir,
    );
    if !ok && report.contains("field kubernetes_sd_configs not found") {
        let original = read(k8s_rel);
        let sd = "kubernetes_sd_configs:\n      - role: endpoints\n";
        assert!(
            original.contains(sd),
            "{k8s_rel}: update this test's copy for the new discovery block"
        );
        let copy = original.replace(
            sd,
            "static_configs:\n      - targets: [\"anomalyd:9898\"]\n",
        );
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join("scrape.yml"), copy).expect("write");
        let (ok, report) = run(&promtool, &["check", "config", "scrape.yml"], tmp.path());
        assert!(
            ok,
            "promtool check config {k8s_rel} (static targets for Kubernetes SD):\n{report}"
        );
    } else {
        assert!(ok, "promtool check config {k8s_rel}:\n{report}");
    }

    // Every dashboard query through Prometheus' own parser, as recording
    // rules with Grafana's variables filled in.
    let (exprs, _) = dashboard_queries();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in exprs.iter().enumerate() {
        let filled = expr
            .replace("$__rate_interval", "5m")
            .replace("$__interval", "1m")
            .replace("$job", "anomalyd")
            .replace("$instance", ".*")
            .replace("$series", "cpu");
        assert!(!filled.contains('$'), "unknown Grafana variable in {expr}");
        let quoted = serde_json::to_string(&filled).expect("json");
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {quoted}\n"
        ));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("dashboard.yml"), rules).expect("write");
    let (ok, report) = run(&promtool, &["check", "rules", "dashboard.yml"], tmp.path());
    assert!(ok, "a dashboard query does not parse:\n{report}");
}

/// Every shipped rule has a `promtool test rules` case in which it fires,
/// and one test group, a healthy remote-write setup, checks that none of
/// them fires (promtool itself runs the cases in the test above).
#[test]
fn every_shipped_rule_is_unit_tested_firing_and_quiet_when_healthy() {
    let names: Vec<String> = seq(&yaml("prometheus/anomalyd-rules.yml")["groups"])
        .iter()
        .flat_map(|g| seq(&g["rules"]))
        .filter_map(|r| scalar(&r["alert"]))
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    let tests = yaml("prometheus/anomalyd-rules.test.yml");
    let groups = seq(&tests["tests"]);
    let cases = |g: &Yaml| -> Vec<(String, usize)> {
        seq(&g["alert_rule_test"])
            .iter()
            .map(|c| {
                (
                    text(&c["alertname"], "alertname"),
                    seq(&c["exp_alerts"]).len(),
                )
            })
            .collect()
    };
    let untested: Vec<&String> = names
        .iter()
        .filter(|n| {
            !groups
                .iter()
                .any(|g| cases(g).iter().any(|(a, k)| a == *n && *k > 0))
        })
        .collect();
    assert!(
        untested.is_empty(),
        "rules no test sees firing: {untested:?}"
    );
    let healthy = groups
        .iter()
        .find(|g| scalar(&g["name"]).as_deref() == Some("healthy remote-write setup"))
        .expect("a test group named `healthy remote-write setup`");
    let quiet: BTreeSet<String> = cases(healthy)
        .into_iter()
        .filter(|(_, k)| *k == 0)
        .map(|(a, _)| a)
        .collect();
    let loud: Vec<&String> = names.iter().filter(|n| !quiet.contains(*n)).collect();
    assert!(
        loud.is_empty(),
        "the healthy remote-write group does not check these stay quiet: {loud:?}"
    );
    // It is a remote-write setup: NaN samples skipped, no Kafka.
    let series: Vec<String> = seq(&healthy["input_series"])
        .iter()
        .map(|s| text(&s["series"], "series"))
        .collect();
    assert!(
        series
            .iter()
            .any(|s| s.contains("anomalyd_samples_skipped_total") && s.contains("non_finite"))
    );
    assert!(series.iter().all(|s| !s.contains("kafka")));
}

#[test]
fn amtool_accepts_the_alertmanager_config() {
    let amtool = crate::real_parts::AMTOOL.path();
    let (ok, report) = run(
        &amtool,
        &["check-config", "alertmanager.yml"],
        &deploy_path("alertmanager"),
    );
    assert!(ok, "amtool check-config:\n{report}");

    // Routing: the daemon's own alerts (its alertmanager sink's alertname)
    // reach the anomalies receiver; the health rules reach the operators.
    let config = Compose::load().anomalyd_config();
    let mut cases = vec![(
        "anomalies",
        vec![
            format!("alertname={}", config.sinks.alertmanager.alertname),
            "metric=cpu".to_owned(),
            "severity=critical".to_owned(),
        ],
    )];
    for (place, _) in rule_exprs() {
        let name = place.trim_start_matches("rule ").to_owned();
        cases.push((
            "operators",
            vec![format!("alertname={name}"), "job=anomalyd".to_owned()],
        ));
    }
    for (receiver, labels) in cases {
        let mut args = vec![
            "config".to_owned(),
            "routes".to_owned(),
            "test".to_owned(),
            "--config.file=alertmanager.yml".to_owned(),
            format!("--verify.receivers={receiver}"),
        ];
        args.extend(labels.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, report) = run(&amtool, &args, &deploy_path("alertmanager"));
        assert!(ok, "{labels:?} should route to {receiver}:\n{report}");
    }
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let unit = Unit::load();
    let one = |k: &str, v: &str| assert_eq!(unit.one(k), v, "anomalyd.service {k}=");
    one("DynamicUser", "yes");
    one("ProtectSystem", "strict");
    one("NoNewPrivileges", "yes");
    one("Restart", "on-failure");
    one("CapabilityBoundingSet", "");
    one("StateDirectory", "anomalyd");
    // main.rs exits 2 for a bad config or command line: no restart loop.
    assert!(
        unit.one("RestartPreventExitStatus")
            .split_whitespace()
            .any(|s| s == "2")
    );
    assert!(unit.one("EnvironmentFile").ends_with("/anomalyd.env"));

    let analyze = crate::real_parts::SYSTEMD_ANALYZE.path();
    // Verify a copy whose ExecStart is the binary cargo just built (verify
    // checks that the executable exists).
    let tmp = tempfile::tempdir().expect("tempdir");
    let unit_text = read("systemd/anomalyd.service");
    let exec = unit
        .one("ExecStart")
        .split_whitespace()
        .next()
        .expect("binary")
        .to_owned();
    let copy = unit_text.replace(&exec, env!("CARGO_BIN_EXE_anomalyd"));
    let path = tmp.path().join("anomalyd.service");
    std::fs::write(&path, copy).expect("write");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys and bad values, and only warns.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify anomalyd.service:\n{stderr}"
    );
}

/// The Dockerfile's HEALTHCHECK command and the probe paths, run against
/// the daemon's real HTTP endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_and_probes_hit_real_routes() {
    let docker = Dockerfile::load();
    let cmd = docker.healthcheck();
    let configured = healthcheck_port(&cmd);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let readiness = Readiness::new();
    let stop = CancellationToken::new();
    let server = tokio::spawn(http::run(
        listener,
        HttpState {
            registry: Registry::new(),
            readiness: readiness.clone(),
        },
        stop.clone().cancelled_owned(),
    ));
    readiness.set_ready();

    let k8s = K8s::load();
    let c = k8s.container();
    let mut paths = vec![healthcheck_path(&cmd)];
    for probe in ["readinessProbe", "livenessProbe"] {
        paths.push(text(&c[probe]["httpGet"]["path"], probe));
    }
    for p in &paths {
        let (status, body) = get(&format!("http://{addr}{p}")).await;
        assert_eq!(status, 200, "{p}: {body}");
    }

    // The HEALTHCHECK command itself, pointed at this server's port.
    let retarget = |port: u16| -> Vec<String> {
        cmd.iter()
            .map(|a| {
                a.replace(
                    &format!("/dev/tcp/127.0.0.1/{configured}"),
                    &format!("/dev/tcp/127.0.0.1/{port}"),
                )
            })
            .collect()
    };
    let exec = |args: Vec<String>| async move {
        tokio::process::Command::new(&args[0])
            .args(&args[1..])
            .output()
            .await
            .expect("run the HEALTHCHECK command")
    };
    let out = exec(retarget(addr.port())).await;
    assert!(
        out.status.success(),
        "HEALTHCHECK failed against a healthy daemon: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    stop.cancel();
    server.await.expect("join").expect("server");
    let out = exec(retarget(addr.port())).await;
    assert!(
        !out.status.success(),
        "HEALTHCHECK passed with the daemon gone"
    );
}
