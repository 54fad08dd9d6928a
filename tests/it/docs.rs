//! The documentation as a newcomer reads it: a short README over docs/,
//! links that lead somewhere, one version, and a real-broker walkthrough
//! whose commands agree with each other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anomalyd::app::config::Config;

const DOCS: [&str; 5] = [
    "docs/architecture.md",
    "docs/configuration.md",
    "docs/operations.md",
    "docs/quality.md",
    "docs/performance.md",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The markdown files: the README and docs/.
fn pages() -> Vec<String> {
    let mut pages = vec!["README.md".to_owned()];
    pages.extend(DOCS.iter().map(|d| (*d).to_owned()));
    pages
}

/// The text outside fenced code blocks (a fenced line is left empty, so
/// line numbers stay those of the file).
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        let fence = line.trim_start().starts_with("```");
        if fence {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces
/// to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// `(target, line)` of every markdown link `[..](target)` in the prose.
fn links(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (n, line) in prose(text).lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((after[..end].to_owned(), n + 1));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn the_readme_is_short_and_leads_to_every_doc() {
    let readme = read("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; move detail to docs/"
    );
    for doc in DOCS {
        assert!(root().join(doc).is_file(), "{doc} is missing");
        assert!(
            readme.contains(&format!("]({doc})")),
            "README.md does not link {doc}"
        );
    }
    // The two commands come first.
    let first_block = readme.split("```").nth(1).expect("a code block");
    assert!(first_block.contains("demo"), "{first_block}");
    assert!(first_block.contains("tests/run.sh"), "{first_block}");
}

#[test]
fn every_link_between_the_pages_resolves() {
    let mut problems = Vec::new();
    let mut anchors_of: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut checked = 0;
    for page in pages() {
        let text = read(&page);
        let dir = root().join(&page).parent().unwrap().to_path_buf();
        for (target, line) in links(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                root().join(&page)
            } else {
                dir.join(file)
            };
            if !path.exists() {
                problems.push(format!("{page}:{line}: {target}: no such file"));
                continue;
            }
            if let Some(anchor) = anchor {
                let known = anchors_of
                    .entry(path.clone())
                    .or_insert_with(|| anchors(&std::fs::read_to_string(&path).unwrap()));
                if !known.contains(anchor) {
                    problems.push(format!("{page}:{line}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} links found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One version everywhere: the package's, which the binary and
/// `anomalyd_build_info` report. Release numbers in the text name it in
/// full; earlier releases are named in full too.
#[test]
fn one_version_everywhere() {
    let version = env!("CARGO_PKG_VERSION");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("anomalyd {version}")
    );
    let readme = read("README.md");
    assert!(
        readme.contains(&format!("This is anomalyd {version} "))
            && readme.contains(&format!("anomalyd_build_info{{version=\"{version}\"}}")),
        "README.md does not state version {version}"
    );
    let k8s = read("deploy/kubernetes/deployment.yaml");
    assert!(
        k8s.contains(&format!("image: anomalyd:{version}\n")),
        "deploy/kubernetes/deployment.yaml's image is not anomalyd:{version}"
    );
    // `0.2` alone (this release's minor) reads as another version.
    let minor: String = version.rsplit_once('.').unwrap().0.to_owned();
    let mut problems = Vec::new();
    for page in pages() {
        for (n, line) in prose(&read(&page)).lines().enumerate() {
            let mut from = 0;
            while let Some(at) = line[from..].find(&minor) {
                let start = from + at;
                let end = start + minor.len();
                from = end;
                let before = line[..start].chars().next_back().unwrap_or(' ');
                let after = &line[end..];
                if before.is_ascii_digit() || before == '.' {
                    continue;
                }
                if after.starts_with(|c: char| c.is_ascii_digit())
                    || after.starts_with(&version[minor.len()..])
                    || after.starts_with(" %")
                {
                    continue;
                }
                problems.push(format!("{page}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "write the release as {version}:\n{}",
        problems.join("\n")
    );
}

/// The README's real-broker walkthrough creates the topics the daemon it
/// starts reads and writes (it once created `alerts` and sent alerts to
/// `anomalyd-alerts`, where a user following it read nothing).
#[test]
fn the_real_broker_walkthrough_creates_the_topics_it_uses() {
    let readme = read("README.md");
    let section = &readme[readme
        .find("### Try it on a real broker")
        .expect("the walkthrough")..];
    let block = section.split("```").nth(1).expect("its commands");
    let words: Vec<&str> = block.split_whitespace().collect();
    let created: BTreeSet<&str> = words
        .windows(3)
        .filter(|w| w[0] == "topic" && w[1] == "create")
        .map(|w| w[2])
        .collect();
    let run = block
        .lines()
        .find(|l| l.contains(" run --config "))
        .expect("the daemon's command line");
    let env: std::collections::HashMap<String, String> = run
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .filter(|(k, _)| k.starts_with("ANOMALYD__"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let file = run
        .split_whitespace()
        .skip_while(|w| *w != "--config")
        .nth(1)
        .expect("--config FILE");
    let config = Config::from_sources(Some(&read(file)), Some(env)).unwrap();
    assert!(
        config.sinks.kafka.enabled,
        "the walkthrough shows the Kafka alert sink"
    );
    // The incident notifications' topic too, unless the sink is told to
    // send alerts only.
    let incidents = (config.sinks.kafka.messages != anomalyd::alert::sink::Messages::Alerts)
        .then_some(&config.sinks.kafka.incident_topic);
    for topic in config
        .kafka
        .topics
        .iter()
        .chain(std::iter::once(&config.sinks.kafka.topic))
        .chain(incidents)
    {
        assert!(
            created.contains(topic.as_str()),
            "the walkthrough uses topic `{topic}` but creates only {created:?}"
        );
    }
    assert!(
        section.contains(&format!(
            "read the alerts from `{}`",
            config.sinks.kafka.topic
        )),
        "the walkthrough should say where the alerts are"
    );
}
