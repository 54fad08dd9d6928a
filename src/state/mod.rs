//! Durable per-series state: snapshots, restore, versioning.
//!
//! This module owns the snapshot format, the stores that keep it, and what
//! state is keyed by ([`SourcePartition`] in memory, [`PartitionName`] on
//! disk). A snapshot is per input partition: the serialized state of every
//! series whose latest event came from that partition, plus the position it
//! covers (every event before it is in the state, none at or after). The
//! sources decide *when* to snapshot (at pipeline barriers, see
//! [`crate::source::Feed::checkpoint`]); this module decides *how*.
//!
//! Two stores implement [`StateStore`]:
//! - [`dir::DirStore`] (the single-host default): one file per partition,
//!   rewritten atomically (temp file, fsync, rename, fsync of the directory).
//! - [`changelog::ChangelogStore`]: a compacted Kafka topic (key = series,
//!   value = its state), written incrementally and read back on assignment,
//!   so partitions can move between hosts as in Kafka Streams.
//!
//! Every snapshot carries [`SCHEMA_VERSION`] and the detector's model hash.
//! A snapshot of another schema version is refused with a message that says
//! what to do; one taken under another model configuration keeps each
//! series' alert lifecycle but drops its model state (the model relearns),
//! so an alert or sink change never costs the learned models.
//!
//! A series belongs to the partition of its latest event. Producers should
//! key events by series, so that a series stays on one partition: a series
//! read from partitions owned by two instances has two diverging states.
//! When a series leaves a partition (it moved, or was evicted), incremental
//! stores delete its record there (see `SnapshotRecord::is_deletion`).

pub mod changelog;
pub mod dir;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::lifecycle::Lifecycle;
use crate::config::Problems;
use crate::counter::{Kind, RateState, SeriesValue};
use crate::detector::DetectorState;
use crate::event::SeriesKey;

/// Version of the snapshot encoding. Bump it when [`SeriesSnapshot`] or any
/// state inside it changes shape; older snapshots are then refused.
///
/// One extension needed no bump: a record may end with a trailer holding a
/// counter's rate state (see [`encode_series_value`]). Records without one
/// (every record written before counters were learned as rates, and every
/// gauge's) read as a series learned from its raw values, which is what
/// they are; readers that predate the trailer ignore it.
///
/// Version 4: the thresholds' records keep their peaks in the series' own
/// units (a version-3 record would be read in the wrong unit).
pub const SCHEMA_VERSION: u32 = 4;

/// Which store keeps the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// No persistence: state lives in memory only.
    None,
    /// Files in `state.dir` (one host).
    Dir,
    /// A compacted Kafka topic (`state.changelog_topic`), for scale-out.
    Changelog,
}

/// The `[state]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// `none`, `dir` or `changelog`.
    pub store: StoreKind,
    /// Directory of the `dir` store.
    pub dir: PathBuf,
    /// Compacted topic of the `changelog` store. It needs at least as many
    /// partitions as the input topic; partition p holds input partition p.
    pub changelog_topic: String,
    /// How often a snapshot (and the offset commit that follows it) is taken.
    pub snapshot_interval_secs: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::None,
            dir: PathBuf::from("/var/lib/anomalyd"),
            changelog_topic: "anomalyd-state".into(),
            snapshot_interval_secs: 30,
        }
    }
}

impl StateConfig {
    /// Records every problem, with keys under `prefix`. (That the
    /// changelog store needs `[kafka]` is checked beside the other sections,
    /// in `Config::validate`.)
    pub fn validate(&self, prefix: &str, problems: &mut Problems) {
        problems.check(
            self.snapshot_interval_secs > 0,
            format!("{prefix}.snapshot_interval_secs"),
            "must be at least 1",
        );
        if self.store == StoreKind::Dir {
            problems.check(
                !self.dir.as_os_str().is_empty(),
                format!("{prefix}.dir"),
                "is empty; set a directory for snapshots",
            );
        }
        if self.store == StoreKind::Changelog {
            problems.check(
                !self.changelog_topic.trim().is_empty(),
                format!("{prefix}.changelog_topic"),
                "is empty; name a compacted topic",
            );
        }
    }
}

/// A partition of the input, as the pipeline and the shards know it: a
/// compact id (8 bytes, held by every series) whose durable name is a
/// [`PartitionName`]. `stream` indexes the daemon's table of streams, which
/// every source fills with its own (a Kafka source with its topics, the
/// remote-write receiver with one); `partition` is the number inside the
/// stream. File replay uses `(0, 0)`.
///
/// Each series remembers the partition its latest event came from, so that
/// a revoked partition can hand its series over, and so that a snapshot of
/// a partition holds exactly its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourcePartition {
    /// Index into the daemon's stream table.
    pub stream: u16,
    /// Partition number inside the stream (0 for a single-partition source).
    pub partition: i32,
}

/// The durable name of a partition: what the stores key state by. It
/// outlives the process (a restart, or another instance, must find the same
/// snapshot under it), unlike [`SourcePartition`]'s stream index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionName {
    /// The stream: a Kafka topic, or a receiver's fixed name
    /// (`remote_write`).
    pub stream: String,
    /// The partition inside the stream (0 for a receiver).
    pub partition: i32,
}

impl std::fmt::Display for PartitionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.stream, self.partition)
    }
}

/// What a store saves for one partition: its series and the position of
/// the input they cover.
#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    /// Which partition.
    pub name: PartitionName,
    /// The position covered: every event before it is in the state, none
    /// at or after (for Kafka, the next offset to read).
    pub position: i64,
    /// Changed series (incremental stores) or every series (full stores),
    /// deletions included; all of this partition.
    pub records: Vec<SnapshotRecord>,
}

/// One serialized series, as returned by a snapshot barrier.
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    /// The partition the series belongs to.
    pub partition: SourcePartition,
    /// The series' fingerprint (the changelog key).
    pub fingerprint: u64,
    /// postcard encoding of a [`SeriesSnapshot`]; empty for a deletion
    /// (see [`SnapshotRecord::is_deletion`]).
    pub bytes: Vec<u8>,
}

impl SnapshotRecord {
    /// True when the series left `partition` (it moved to another
    /// partition, or was evicted): an incremental store must delete what it
    /// holds for it there, or a restore would bring back a stale state.
    /// Encoded series are never empty.
    pub fn is_deletion(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The saved state of one series.
#[derive(Debug, Clone)]
pub struct SeriesSnapshot {
    /// Which series.
    pub key: SeriesKey,
    /// Model, optimizer and threshold state; `None` when the snapshot was
    /// taken under another model configuration (the model relearns).
    pub detector: Option<DetectorState>,
    /// Alert lifecycle state (kept across model changes, so a firing alert
    /// still resolves).
    pub lifecycle: Lifecycle,
    /// How the series' samples were turned into values (a counter's rate
    /// and its last raw sample); the default for a series learned from its
    /// raw values.
    pub value: SeriesValue,
}

/// The encoding of one series: the detector state is nested as bytes so a
/// record of another model configuration can still be read for its key and
/// lifecycle.
#[derive(Serialize)]
struct EncodeView<'a> {
    key: &'a SeriesKey,
    lifecycle: &'a Lifecycle,
    detector: &'a [u8],
}

/// The decoding side of [`EncodeView`].
#[derive(Deserialize)]
struct DecodeView<'a> {
    key: SeriesKey,
    lifecycle: Lifecycle,
    detector: &'a [u8],
}

/// The trailer of a record whose series is learned as a rate.
#[derive(Serialize, Deserialize)]
struct RateTrailer {
    kind: Kind,
    last_ts_ms: i64,
    last_raw: f64,
}

/// Encodes one series learned from its raw values for a snapshot.
pub fn encode_series(
    key: &SeriesKey,
    detector: &DetectorState,
    lifecycle: &Lifecycle,
) -> Result<Vec<u8>, postcard::Error> {
    encode_series_value(key, detector, lifecycle, &SeriesValue::default())
}

/// Encodes one series for a snapshot; a rate's state goes in a trailer
/// after the record (a series of raw values has none, so its record is
/// byte for byte what it always was).
pub fn encode_series_value(
    key: &SeriesKey,
    detector: &DetectorState,
    lifecycle: &Lifecycle,
    value: &SeriesValue,
) -> Result<Vec<u8>, postcard::Error> {
    let detector = postcard::to_stdvec(detector)?;
    let mut bytes = postcard::to_stdvec(&EncodeView {
        key,
        lifecycle,
        detector: &detector,
    })?;
    if value.kind == Kind::Rate {
        let (last_ts_ms, last_raw) = value.rate.last().unwrap_or((0, f64::NAN));
        bytes.extend(postcard::to_stdvec(&RateTrailer {
            kind: value.kind,
            last_ts_ms,
            last_raw,
        })?);
    }
    // The encoder grows its buffer by doubling: a record of 1,050 bytes
    // would hold 2,048 until the snapshot is written (a snapshot holds one
    // per series).
    bytes.shrink_to_fit();
    Ok(bytes)
}

/// Decodes one series. With `model_matches == false` the detector state is
/// not decoded (it belongs to another model configuration).
pub fn decode_series(bytes: &[u8], model_matches: bool) -> Result<SeriesSnapshot, postcard::Error> {
    let (e, rest): (DecodeView<'_>, &[u8]) = postcard::take_from_bytes(bytes)?;
    let detector = if model_matches {
        Some(postcard::from_bytes(e.detector)?)
    } else {
        None
    };
    let value = if rest.is_empty() {
        SeriesValue::default()
    } else {
        let t: RateTrailer = postcard::from_bytes(rest)?;
        SeriesValue {
            kind: t.kind,
            rate: if t.last_raw.is_nan() {
                RateState::default()
            } else {
                RateState::at(t.last_ts_ms, t.last_raw)
            },
        }
    };
    Ok(SeriesSnapshot {
        key: e.key,
        detector,
        lifecycle: e.lifecycle,
        value,
    })
}

/// What a store holds for one partition.
#[derive(Debug)]
pub struct LoadedPartition {
    /// The position the state covers: events before it are in `series`.
    pub position: i64,
    /// The restored series.
    pub series: Vec<SeriesSnapshot>,
}

/// Why state could not be saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// File system trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The snapshot is damaged (truncated, bit flips, not a snapshot).
    #[error("{what} is corrupted ({detail}); its series relearn from scratch")]
    Corrupt {
        /// Which snapshot.
        what: String,
        /// What check failed.
        detail: String,
    },
    /// The snapshot was written by an incompatible version of anomalyd. Its
    /// series relearn; `advice` says how to get the old state back.
    #[error(
        "{what} has snapshot schema version {found}, this anomalyd reads version {expected}; \
         {advice}"
    )]
    Version {
        /// Which snapshot.
        what: String,
        /// Version found.
        found: u32,
        /// Version this build reads.
        expected: u32,
        /// What the operator can do (the store knows where the data went).
        advice: String,
    },
    /// Kafka trouble (changelog store).
    #[error("state changelog: {0}")]
    Kafka(String),
}

/// A place that keeps partition snapshots, keyed by [`PartitionName`].
/// Stores know nothing of where the input came from: a position is a
/// number the source gave, kept and handed back.
///
/// Calls block (disk or network I/O); callers run them in
/// `block_in_place`.
pub trait StateStore: Send + Sync {
    /// True when [`StateStore::save`] takes only series changed since the
    /// previous save (the changelog); false when it needs every series.
    fn incremental(&self) -> bool;

    /// How often sources should snapshot.
    fn snapshot_interval(&self) -> Duration;

    /// The newest durable snapshot of a partition, if there is one. Records
    /// of another model configuration come back with fresh model state.
    fn load(&self, name: &PartitionName) -> Result<Option<LoadedPartition>, StateError>;

    /// Durably saves each partition's records and position. Returns once
    /// the data is durable.
    fn save(&self, partitions: &[PartitionSnapshot]) -> Result<(), StateError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{Detector, DetectorConfig};

    /// A rate's baseline survives a snapshot; a series of raw values is
    /// encoded exactly as before the trailer existed, and a reader that
    /// predates the trailer still reads a rate's record.
    #[test]
    fn the_rate_trailer_round_trips_and_stays_optional() {
        let d = Detector::new(&DetectorConfig::default(), 0.5).unwrap();
        let mut state = d.new_state();
        d.observe(&mut state, 1_000, 3.0).unwrap();
        let key = SeriesKey::new("http_requests_total", [("job", "api")]);
        let lifecycle = Lifecycle::default();
        let raw = encode_series(&key, &state, &lifecycle).unwrap();
        let legacy = postcard::to_stdvec(&EncodeView {
            key: &key,
            lifecycle: &lifecycle,
            detector: &postcard::to_stdvec(&state).unwrap(),
        })
        .unwrap();
        assert_eq!(raw, legacy);
        assert_eq!(
            decode_series(&raw, true).unwrap().value,
            SeriesValue::default()
        );

        let mut value = SeriesValue::new(Kind::Rate);
        value.apply(60_000, 1234.5);
        let bytes = encode_series_value(&key, &state, &lifecycle, &value).unwrap();
        // Kind (1 byte), the time as a zigzag varint (3), the value (8).
        assert_eq!(bytes.len(), raw.len() + 12);
        let back = decode_series(&bytes, true).unwrap();
        assert_eq!(back.value, value);
        assert_eq!(back.detector.as_ref(), Some(&state));
        assert_eq!(back.key, key);
        let old_reader: DecodeView<'_> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(old_reader.key, key);
        // A rate before its first sample keeps no baseline.
        let fresh = SeriesValue::new(Kind::Rate);
        let bytes = encode_series_value(&key, &state, &lifecycle, &fresh).unwrap();
        assert_eq!(decode_series(&bytes, false).unwrap().value, fresh);
    }
}
