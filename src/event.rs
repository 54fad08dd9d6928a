//! The unit of data: one observation of one series.
//!
//! A [`SeriesKey`] names a series (metric name + labels, labels sorted by
//! name) and has a [`SeriesKey::fingerprint`] that is stable across restarts,
//! processes and versions of this program, because snapshots, shard routing
//! and alert identities are keyed by it. An [`Event`] is what a decoder
//! produces and what the pipeline consumes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Identity of one time series: a metric name and its labels.
///
/// Labels are kept sorted by name with unique names, so two keys built from
/// the same labels in any order are equal, hash alike and print alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The metric name, e.g. `cpu_usage`.
    name: String,
    /// `(label, value)` pairs sorted by label, without duplicates.
    labels: Vec<(String, String)>,
}

impl SeriesKey {
    /// Builds a key. Labels are sorted; when a label name repeats, the last
    /// value wins (as in a JSON object read front to back).
    pub fn new<K, V>(name: impl Into<String>, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut labels: Vec<(String, String)> = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // A stable sort keeps repeated names in input order; reverse so that
        // dedup_by (which keeps the first) keeps the last value given.
        labels.reverse();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|a, b| a.0 == b.0);
        Self {
            name: name.into(),
            labels,
        }
    }

    /// A key without labels.
    pub fn from_name(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: Vec::new(),
        }
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// A 64-bit identity that never changes for the same name and labels:
    /// XXH3 (a published, versioned hash) over the name and labels, each
    /// string followed by a 0xFF byte, which cannot occur in UTF-8.
    pub fn fingerprint(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3Default::new();
        h.update(self.name.as_bytes());
        h.update(&[0xFF]);
        for (k, v) in &self.labels {
            h.update(k.as_bytes());
            h.update(&[0xFF]);
            h.update(v.as_bytes());
            h.update(&[0xFF]);
        }
        h.digest()
    }

    /// Approximate heap bytes held by this key (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.name.capacity()
            + self.labels.capacity() * std::mem::size_of::<(String, String)>()
            + self
                .labels
                .iter()
                .map(|(k, v)| k.capacity() + v.capacity())
                .sum::<usize>()
    }
}

/// Prints the Prometheus selector form: `name{a="x",b="y"}` (just `name`
/// without labels), with `\`, `"` and newlines escaped in values.
impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if self.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}=\"")?;
            for c in v.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

/// One observation: a series, a time and a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Which series the value belongs to.
    pub series: SeriesKey,
    /// Event time in milliseconds since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// The observed value. Decoders never emit a non-finite value; the
    /// detector still refuses one, so no path can teach a model NaN.
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_last_duplicate_wins() {
        let a = SeriesKey::new("cpu", [("host", "a"), ("dc", "x"), ("host", "b")]);
        let b = SeriesKey::new("cpu", [("dc", "x"), ("host", "b")]);
        assert_eq!(a, b);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.to_string(), r#"cpu{dc="x",host="b"}"#);
    }

    #[test]
    fn fingerprint_is_stable_and_separates_boundaries() {
        // Pinned value, computed independently with Python's
        // `xxhash.xxh3_64(b"up\xffjob\xffx\xff")`: changing the hash would
        // orphan snapshots and change every alert id.
        let k = SeriesKey::new("up", [("job", "x")]);
        assert_eq!(k.fingerprint(), k.clone().fingerprint());
        assert_eq!(
            k.fingerprint(),
            0xc1f6_d4cd_4f84_64c4,
            "{:#x}",
            k.fingerprint()
        );
        let ab = SeriesKey::new("m", [("a", "bc")]);
        let abc = SeriesKey::new("m", [("ab", "c")]);
        assert_ne!(ab.fingerprint(), abc.fingerprint());
        assert_ne!(
            SeriesKey::from_name("m").fingerprint(),
            SeriesKey::new("m", [("", "")]).fingerprint()
        );
    }

    #[test]
    fn display_escapes_values() {
        let k = SeriesKey::new("m", [("path", "a\"b\\c\nd")]);
        assert_eq!(k.to_string(), r#"m{path="a\"b\\c\nd"}"#);
        assert_eq!(SeriesKey::from_name("up").to_string(), "up");
    }
}
