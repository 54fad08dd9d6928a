//! The directory store: one snapshot file per input partition.
//!
//! `<dir>/<stream>/<partition>.snap` (a stream is a Kafka topic or a
//! receiver's name), rewritten in full at every snapshot:
//! written to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves either the old or the new snapshot,
//! never a mix. Layout (little-endian):
//!
//! ```text
//! magic "ANOMALYD" | schema u32 | model_hash u64 | position i64 | partition i32
//! | stream_len u32 | stream | count u64 | count × (len u32 | record) | crc32 u32
//! ```
//!
//! The CRC covers everything before it, so truncation and bit flips are
//! detected before any record is trusted. A snapshot of another schema
//! version is moved aside to `<partition>.snap.v<version>` when refused, so
//! the daemon's next snapshot cannot overwrite the only copy of that state.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    LoadedPartition, PartitionName, PartitionSnapshot, SCHEMA_VERSION, SnapshotRecord, StateError,
    StateStore, decode_series,
};

const MAGIC: &[u8; 8] = b"ANOMALYD";

/// Snapshots in a local directory.
pub struct DirStore {
    dir: PathBuf,
    model_hash: u64,
    interval: Duration,
}

impl DirStore {
    /// A store under `dir` (created if missing) for the model configuration
    /// whose hash is `model_hash`.
    pub fn new(
        dir: impl Into<PathBuf>,
        model_hash: u64,
        interval: Duration,
    ) -> Result<Self, StateError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            model_hash,
            interval,
        })
    }

    /// The snapshot file of a partition.
    pub fn path(&self, name: &PartitionName) -> PathBuf {
        self.dir
            .join(&name.stream)
            .join(format!("{}.snap", name.partition))
    }

    fn write(
        &self,
        name: &PartitionName,
        position: i64,
        records: &[SnapshotRecord],
    ) -> Result<(), StateError> {
        let (topic, partition) = (&name.stream, name.partition);
        let path = self.path(name);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        let io = |source, p: &Path| StateError::Io {
            path: p.to_path_buf(),
            source,
        };
        fs::create_dir_all(&parent).map_err(|e| io(e, &parent))?;
        let tmp = path.with_extension("snap.tmp");
        let file = File::create(&tmp).map_err(|e| io(e, &tmp))?;
        let mut w = CrcWriter {
            inner: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
        };
        let body = || -> std::io::Result<()> {
            w.write_all(MAGIC)?;
            w.write_all(&SCHEMA_VERSION.to_le_bytes())?;
            w.write_all(&self.model_hash.to_le_bytes())?;
            w.write_all(&position.to_le_bytes())?;
            w.write_all(&partition.to_le_bytes())?;
            w.write_all(&(topic.len() as u32).to_le_bytes())?;
            w.write_all(topic.as_bytes())?;
            // Each file is rewritten whole: deletions need no record.
            let kept = || records.iter().filter(|r| !r.is_deletion());
            w.write_all(&(kept().count() as u64).to_le_bytes())?;
            for r in kept() {
                w.write_all(&(r.bytes.len() as u32).to_le_bytes())?;
                w.write_all(&r.bytes)?;
            }
            let crc = w.crc.clone().finalize();
            w.inner.write_all(&crc.to_le_bytes())?;
            let file = w.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()
        };
        body().map_err(|e| io(e, &tmp))?;
        fs::rename(&tmp, &path).map_err(|e| io(e, &path))?;
        // The rename is durable only once the directory entry is.
        File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(e, &parent))?;
        Ok(())
    }
}

/// Feeds everything written through it into a CRC.
struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A cursor over a snapshot's bytes that reports truncation as corruption.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        if self.buf.len() < n {
            return Err(corrupt(self.what, "truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
}

fn corrupt(what: &str, detail: impl Into<String>) -> StateError {
    StateError::Corrupt {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// Parses a snapshot file's bytes; `model_hash` is the running
/// configuration's.
pub fn parse(bytes: &[u8], what: &str, model_hash: u64) -> Result<LoadedPartition, StateError> {
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(what, "not an anomalyd snapshot (bad magic)"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != SCHEMA_VERSION {
        return Err(StateError::Version {
            what: what.to_string(),
            found: version,
            expected: SCHEMA_VERSION,
            advice: format!("to use it, run an anomalyd that reads version {version}"),
        });
    }
    if bytes.len() < 4 {
        return Err(corrupt(what, "truncated"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != crc {
        return Err(corrupt(what, "checksum mismatch (truncated or damaged)"));
    }
    let mut r = Reader {
        buf: &body[12..],
        what,
    };
    let hash = u64::from_le_bytes(r.array()?);
    let position = i64::from_le_bytes(r.array()?);
    let _partition = i32::from_le_bytes(r.array()?);
    let topic_len = u32::from_le_bytes(r.array()?) as usize;
    r.take(topic_len)?;
    let count = u64::from_le_bytes(r.array()?);
    let model_matches = hash == model_hash;
    if !model_matches {
        tracing::info!(
            snapshot = what,
            "The model configuration changed since this snapshot; models relearn, alert states are kept."
        );
    }
    // Every record takes at least its 4-byte length: a damaged count cannot
    // reserve more than the file could hold.
    let most = (r.buf.len() / 4) as u64;
    let mut series = Vec::with_capacity(usize::try_from(count.min(most)).unwrap_or(0));
    for i in 0..count {
        let len = u32::from_le_bytes(r.array()?) as usize;
        let rec = r.take(len)?;
        let s = decode_series(rec, model_matches)
            .map_err(|e| corrupt(what, format!("record {i}: {e}")))?;
        series.push(s);
    }
    if !r.buf.is_empty() {
        return Err(corrupt(what, "trailing bytes after the last record"));
    }
    Ok(LoadedPartition { position, series })
}

/// Moves a snapshot of another schema version out of the way, so the next
/// snapshot does not overwrite the only copy of that state, and says how to
/// get it back.
fn keep_aside(path: &Path, found: u32) -> String {
    let kept = path.with_extension(format!("snap.v{found}"));
    match fs::rename(path, &kept) {
        Ok(()) => format!(
            "its series relearn from scratch. The file was moved to {}: to use it instead, \
             stop anomalyd, move it back to {} and run an anomalyd that reads version {found}",
            kept.display(),
            path.display()
        ),
        Err(e) => format!(
            "its series relearn from scratch and the next snapshot replaces the file (moving it \
             to {} failed: {e}); to keep it, stop anomalyd now, copy it elsewhere and run an \
             anomalyd that reads version {found}",
            kept.display()
        ),
    }
}

impl StateStore for DirStore {
    fn incremental(&self) -> bool {
        false
    }

    fn snapshot_interval(&self) -> Duration {
        self.interval
    }

    fn load(&self, name: &PartitionName) -> Result<Option<LoadedPartition>, StateError> {
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        match parse(&bytes, &path.display().to_string(), self.model_hash) {
            Err(StateError::Version {
                what,
                found,
                expected,
                ..
            }) => Err(StateError::Version {
                advice: keep_aside(&path, found),
                what,
                found,
                expected,
            }),
            other => other.map(Some),
        }
    }

    fn save(&self, partitions: &[PartitionSnapshot]) -> Result<(), StateError> {
        for p in partitions {
            self.write(&p.name, p.position, &p.records)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{AlertRule, AlertRuleConfig, Lifecycle};
    use crate::detector::{Decision, Detector, DetectorConfig, DetectorState};
    use crate::event::SeriesKey;
    use crate::state::SourcePartition;

    const P: SourcePartition = SourcePartition {
        stream: 0,
        partition: 3,
    };

    fn name(partition: i32) -> PartitionName {
        PartitionName {
            stream: "t".into(),
            partition,
        }
    }

    fn detector() -> Detector {
        Detector::new(&DetectorConfig::default(), 0.5).unwrap()
    }

    /// Three series with learned models; the second is firing.
    fn series() -> Vec<(SeriesKey, DetectorState, Lifecycle)> {
        let d = detector();
        let rule = AlertRule::new(&AlertRuleConfig::default(), "alert").unwrap();
        (0..3)
            .map(|j| {
                let key = SeriesKey::new("cpu", [("host", format!("h{j}"))]);
                let mut state = d.new_state();
                for i in 0..150 {
                    let v = 10.0 * j as f64 + (i as f64 / 7.0).sin();
                    d.observe(&mut state, i * 60_000, v).unwrap();
                }
                let mut lifecycle = Lifecycle::default();
                if j == 1 {
                    let hit = Decision {
                        score: 0.99,
                        expected: 0.0,
                        lower: -1.0,
                        upper: 1.0,
                        warm: true,
                        reason: crate::threshold::Reason::Forecast,
                        onset: 0.99,
                        new_normal: false,
                    };
                    assert!(lifecycle.step(&rule, 1_000, 5.0, &hit).is_some());
                }
                (key, state, lifecycle)
            })
            .collect()
    }

    fn store(dir: &Path, hash: u64) -> DirStore {
        DirStore::new(dir, hash, Duration::from_secs(1)).unwrap()
    }

    /// Saves `series()` as partition 3 of topic `t` at offset 1234 and
    /// returns the file's bytes.
    fn saved(dir: &Path) -> Vec<u8> {
        let records = series()
            .iter()
            .map(|(k, s, l)| SnapshotRecord {
                partition: P,
                fingerprint: k.fingerprint(),
                bytes: super::super::encode_series(k, s, l).unwrap(),
            })
            .collect();
        let st = store(dir, detector().model_hash());
        st.save(&[PartitionSnapshot {
            name: name(3),
            position: 1234,
            records,
        }])
        .unwrap();
        fs::read(st.path(&name(3))).unwrap()
    }

    #[test]
    fn a_snapshot_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        saved(dir.path());
        assert!(!dir.path().join("t/3.snap.tmp").exists());
        let loaded = store(dir.path(), detector().model_hash())
            .load(&name(3))
            .unwrap()
            .unwrap();
        assert_eq!(loaded.position, 1234);
        let mut got = loaded.series;
        got.sort_by_key(|a| a.key.to_string());
        let want = series();
        assert_eq!(got.len(), want.len());
        for (g, (k, s, l)) in got.iter().zip(&want) {
            assert_eq!(&g.key, k);
            assert_eq!(g.detector.as_ref(), Some(s));
            assert_eq!(&g.lifecycle, l);
        }
        assert!(got[1].lifecycle.is_firing());
        assert!(store(dir.path(), 0).load(&name(4)).unwrap().is_none());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = saved(dir.path());
        let hash = detector().model_hash();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                match parse(&b, "x", hash) {
                    Err(StateError::Corrupt { .. }) => {}
                    Err(StateError::Version { .. }) if (8..12).contains(&i) => {}
                    other => panic!("byte {i} bit {bit}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = saved(dir.path());
        for len in 0..bytes.len() {
            match parse(&bytes[..len], "x", detector().model_hash()) {
                Err(StateError::Corrupt { what, .. }) => assert_eq!(what, "x"),
                other => panic!("{len} bytes: {other:?}"),
            }
        }
    }

    /// A damaged file whose checksum happens to match (or was recomputed)
    /// still cannot make the parser read past the end or trust extra bytes.
    #[test]
    fn structural_damage_under_a_valid_checksum_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = saved(dir.path());
        let reseal = |mut body: Vec<u8>| {
            let crc = crc32fast::hash(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let body = bytes[..bytes.len() - 4].to_vec();
        // The count sits after the header and the topic name "t".
        let count_at = 8 + 4 + 8 + 8 + 4 + 4 + 1;
        let mut b = body.clone();
        b[count_at..count_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = parse(&reseal(b), "x", 0).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut b = body.clone();
        b.extend_from_slice(b"junk");
        let e = parse(&reseal(b), "x", 0).unwrap_err();
        assert!(e.to_string().contains("trailing bytes"), "{e}");
        let mut b = body;
        let first_record = count_at + 8 + 4;
        b[first_record] ^= 0xFF; // inside the first record's postcard bytes
        let e = parse(&reseal(b), "x", detector().model_hash()).unwrap_err();
        assert!(e.to_string().contains("record 0"), "{e}");
    }

    #[test]
    fn another_model_config_keeps_lifecycles_and_drops_models() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = saved(dir.path());
        let loaded = parse(&bytes, "x", detector().model_hash() ^ 1).unwrap();
        assert_eq!(loaded.position, 1234);
        assert_eq!(loaded.series.len(), 3);
        assert!(loaded.series.iter().all(|s| s.detector.is_none()));
        assert_eq!(
            loaded
                .series
                .iter()
                .filter(|s| s.lifecycle.is_firing())
                .count(),
            1
        );
    }

    /// A snapshot of another schema version is refused with what to do,
    /// and moved aside so the daemon's next snapshot cannot overwrite it.
    #[test]
    fn another_schema_version_is_refused_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = saved(dir.path());
        bytes[8..12].copy_from_slice(&(SCHEMA_VERSION + 1).to_le_bytes());
        let st = store(dir.path(), detector().model_hash());
        let path = st.path(&name(3));
        fs::write(&path, &bytes).unwrap();
        let e = st.load(&name(3)).unwrap_err();
        let kept = dir.path().join(format!("t/3.snap.v{}", SCHEMA_VERSION + 1));
        let msg = e.to_string();
        assert!(matches!(e, StateError::Version { found, .. } if found == SCHEMA_VERSION + 1));
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("reads version {SCHEMA_VERSION}")),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("moved to {}", kept.display())),
            "{msg}"
        );
        assert!(msg.contains("stop anomalyd, move it back"), "{msg}");
        assert_eq!(fs::read(&kept).unwrap(), bytes, "kept as it was");
        // The next load finds no snapshot; the next save leaves it alone.
        assert!(st.load(&name(3)).unwrap().is_none());
        saved(dir.path());
        assert_eq!(fs::read(&kept).unwrap(), bytes);
        let e = parse(&bytes, "x", 0).unwrap_err().to_string();
        assert!(e.contains("run an anomalyd that reads version"), "{e}");
    }
}
