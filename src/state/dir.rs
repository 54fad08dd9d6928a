//! The directory store: one snapshot file per input partition.
//!
//! `<dir>/<topic>/<partition>.snap`, rewritten in full at every snapshot:
//! written to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves either the old or the new snapshot,
//! never a mix. Layout (little-endian):
//!
//! ```text
//! magic "ANOMALYD" | schema u32 | model_hash u64 | offset i64 | partition i32
//! | topic_len u32 | topic | count u64 | count × (len u32 | record) | crc32 u32
//! ```
//!
//! The CRC covers everything before it, so truncation and bit flips are
//! detected before any record is trusted.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{LoadedPartition, SCHEMA_VERSION, StateError, StateStore, decode_series};
use crate::pipeline::SourcePartition;
use crate::pipeline::worker::SnapshotRecord;

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
    pub fn path(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir.join(topic).join(format!("{partition}.snap"))
    }

    fn write(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        records: &[&SnapshotRecord],
    ) -> Result<(), StateError> {
        let path = self.path(topic, partition);
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
            w.write_all(&offset.to_le_bytes())?;
            w.write_all(&partition.to_le_bytes())?;
            w.write_all(&(topic.len() as u32).to_le_bytes())?;
            w.write_all(topic.as_bytes())?;
            w.write_all(&(records.len() as u64).to_le_bytes())?;
            for r in records {
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
    let offset = i64::from_le_bytes(r.array()?);
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
    let mut series = Vec::with_capacity(usize::try_from(count.min(1 << 20)).unwrap_or(0));
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
    Ok(LoadedPartition { offset, series })
}

impl StateStore for DirStore {
    fn incremental(&self) -> bool {
        false
    }

    fn snapshot_interval(&self) -> Duration {
        self.interval
    }

    fn load(&self, topic: &str, partition: i32) -> Result<Option<LoadedPartition>, StateError> {
        let path = self.path(topic, partition);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        parse(&bytes, &path.display().to_string(), self.model_hash).map(Some)
    }

    fn save(
        &self,
        topics: &[String],
        partitions: &[SourcePartition],
        positions: &BTreeMap<SourcePartition, i64>,
        records: Vec<SnapshotRecord>,
    ) -> Result<(), StateError> {
        let mut by_partition: BTreeMap<SourcePartition, Vec<&SnapshotRecord>> = BTreeMap::new();
        for r in &records {
            by_partition.entry(r.partition).or_default().push(r);
        }
        for p in partitions {
            // A partition never read from has nothing to cover.
            let Some(&offset) = positions.get(p) else {
                continue;
            };
            let topic = &topics[usize::from(p.topic)];
            let recs = by_partition.remove(p).unwrap_or_default();
            self.write(topic, p.partition, offset, &recs)?;
        }
        Ok(())
    }
}
