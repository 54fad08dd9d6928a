//! The unit of data: one observation of one series.
//!
//! A [`SeriesKey`] names a series (metric name + labels, labels sorted by
//! name) and has a [`SeriesKey::fingerprint`] that is stable across restarts,
//! processes and versions of this program, because snapshots, shard routing
//! and alert identities are keyed by it. An [`Event`] is what a decoder
//! produces and what the pipeline consumes.
//!
//! Speed: a key is a shared pointer to immutable data that carries its
//! fingerprint, computed once when the key is built. Cloning a key (the
//! shard map keeps one, every event of the series carries one) is a
//! reference-count increment, and hashing one for a map hashes the 64-bit
//! fingerprint instead of the strings. [`KeyCache`] lets a decoder hand out
//! the same key for every event of a series instead of building a new one
//! per event.

use std::borrow::Cow;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Weak};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Identity of one time series: a metric name and its labels.
///
/// Labels are kept sorted by name with unique names, so two keys built from
/// the same labels in any order are equal, hash alike and print alike.
/// Cheap to clone (shared, immutable).
#[derive(Clone)]
pub struct SeriesKey(Arc<KeyData>);

/// What a [`SeriesKey`] points to.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KeyData {
    /// The metric name, e.g. `cpu_usage`.
    name: String,
    /// `(label, value)` pairs sorted by label, without duplicates.
    labels: Vec<(String, String)>,
    /// [`SeriesKey::fingerprint`], computed once (derived from the fields
    /// above, so it never decides an ordering or an equality on its own).
    fingerprint: u64,
}

/// Sorts label pairs by name and drops repeated names, keeping the last
/// value given (as in a JSON object read front to back).
fn normalize_labels<T: AsRef<str>>(labels: &mut Vec<(T, T)>) {
    // A stable sort keeps repeated names in input order; reverse so that
    // dedup_by (which keeps the first) keeps the last value given.
    labels.reverse();
    labels.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
    labels.dedup_by(|a, b| a.0.as_ref() == b.0.as_ref());
}

/// The fingerprint of a name and normalized labels (see
/// [`SeriesKey::fingerprint`]). `buf` is scratch space: one-shot XXH3 over
/// the concatenation gives the same value as feeding the parts to its
/// streaming form, at a fraction of the cost for short strings.
fn fingerprint_of<T: AsRef<str>>(name: &str, labels: &[(T, T)], buf: &mut Vec<u8>) -> u64 {
    buf.clear();
    buf.extend_from_slice(name.as_bytes());
    buf.push(0xFF);
    for (k, v) in labels {
        buf.extend_from_slice(k.as_ref().as_bytes());
        buf.push(0xFF);
        buf.extend_from_slice(v.as_ref().as_bytes());
        buf.push(0xFF);
    }
    xxhash_rust::xxh3::xxh3_64(buf)
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
        normalize_labels(&mut labels);
        Self::from_normalized(name.into(), labels)
    }

    /// A key without labels.
    pub fn from_name(name: impl Into<String>) -> Self {
        Self::from_normalized(name.into(), Vec::new())
    }

    /// Builds a key from labels already sorted and unique.
    fn from_normalized(name: String, labels: Vec<(String, String)>) -> Self {
        let fingerprint = fingerprint_of(&name, &labels, &mut Vec::new());
        Self(Arc::new(KeyData {
            name,
            labels,
            fingerprint,
        }))
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The labels, sorted by name.
    pub fn labels(&self) -> &[(String, String)] {
        &self.0.labels
    }

    /// A 64-bit identity that never changes for the same name and labels:
    /// XXH3 (a published, versioned hash) over the name and labels, each
    /// string followed by a 0xFF byte, which cannot occur in UTF-8.
    /// Computed when the key is built; this only reads it.
    pub fn fingerprint(&self) -> u64 {
        self.0.fingerprint
    }

    /// Whether this key names `name` with `labels` (normalized: sorted,
    /// unique).
    fn is<T: AsRef<str>>(&self, name: &str, labels: &[(T, T)]) -> bool {
        self.0.name == name
            && self.0.labels.len() == labels.len()
            && self
                .0
                .labels
                .iter()
                .zip(labels)
                .all(|((k, v), (k2, v2))| k == k2.as_ref() && v == v2.as_ref())
    }

    /// Approximate heap bytes held by this key (for memory accounting),
    /// counted in full by every holder although clones share them.
    pub fn heap_bytes(&self) -> usize {
        // The shared block: two reference counts and the data.
        2 * std::mem::size_of::<usize>()
            + std::mem::size_of::<KeyData>()
            + self.0.name.capacity()
            + self.0.labels.capacity() * std::mem::size_of::<(String, String)>()
            + self
                .0
                .labels
                .iter()
                .map(|(k, v)| k.capacity() + v.capacity())
                .sum::<usize>()
    }
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        // Keys handed out by a KeyCache share their data: no string compare.
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for SeriesKey {}

/// Hashes the fingerprint only: equal keys have equal fingerprints, and the
/// fingerprint is already a good 64-bit hash of the strings.
impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.fingerprint);
    }
}

/// By name, then labels (the fingerprint, derived from both, never decides).
impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.0.name, &self.0.labels).cmp(&(&other.0.name, &other.0.labels))
    }
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesKey")
            .field("name", &self.0.name)
            .field("labels", &self.0.labels)
            .finish()
    }
}

/// The serialized shape: `{name, labels}` (snapshots are postcard of this,
/// so it must not change; the fingerprint is recomputed on reading).
#[derive(Serialize)]
struct KeyRef<'a> {
    name: &'a str,
    labels: &'a [(String, String)],
}

/// The owned twin of [`KeyRef`], for reading.
#[derive(Deserialize)]
struct KeyOwned {
    name: String,
    labels: Vec<(String, String)>,
}

impl Serialize for SeriesKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        KeyRef {
            name: &self.0.name,
            labels: &self.0.labels,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SeriesKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let KeyOwned { name, mut labels } = KeyOwned::deserialize(d)?;
        // Written sorted and unique; normalizing again costs little and keeps
        // the invariant even for hand-edited input.
        normalize_labels(&mut labels);
        Ok(Self::from_normalized(name, labels))
    }
}

/// Most keys a [`KeyCache`] holds by default. The daemon sizes its caches
/// by `pipeline.max_series` instead (see [`KeyCache::with_capacity`]).
pub const KEY_CACHE_CAPACITY: usize = 1 << 20;

/// What a [`KeyCache`] costs per entry at most, whatever the labels: the
/// map slot (fingerprint and pointer, with the table's spare room) and the
/// shared block a dead key leaves until the cache lets go of it (two
/// reference counts and the key's fixed part; its strings are freed with
/// the last [`SeriesKey`]). Used by [`crate::app::budget`].
pub const KEY_CACHE_ENTRY_BYTES: usize =
    // The map: 17 bytes a bucket (fingerprint, pointer, control byte), at
    // most 2.3 buckets an entry just after the table doubled.
    40
    // The shared block: two counts, the fixed part, the allocator's header.
    + 2 * 8 + std::mem::size_of::<KeyData>() + 16;

/// Passes a fingerprint through as its own hash (it already is one).
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 fingerprints are hashed; fold anything else in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Hands out one shared [`SeriesKey`] per series, so decoding an event of a
/// known series allocates nothing for its key: the decoder passes borrowed
/// strings, the cache finds the key by fingerprint and checks the strings.
///
/// The cache holds its keys *weakly*: a key lives as long as the shards
/// (or events in flight) hold it, and a series the shards evicted frees its
/// strings even while the cache still has its entry. So the cache never
/// holds label bytes of its own, and its memory is at most `capacity` ×
/// [`KEY_CACHE_ENTRY_BYTES`] however large the labels. When full it drops
/// the dead entries, and starts over if every entry is still alive.
pub struct KeyCache {
    keys: hashbrown::HashMap<u64, Weak<KeyData>, BuildHasherDefault<FingerprintHasher>>,
    /// Most keys held.
    capacity: usize,
    /// Scratch space for the fingerprint.
    buf: Vec<u8>,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::with_capacity(KEY_CACHE_CAPACITY)
    }
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("keys", &self.keys.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl KeyCache {
    /// A cache of at most `capacity` keys.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            keys: Default::default(),
            capacity: capacity.max(1),
            buf: Vec::new(),
        }
    }

    /// The key of `name` with `labels` (any order; a repeated name keeps its
    /// last value), equal to `SeriesKey::new(name, labels)`. Sorts `labels`
    /// in place.
    pub fn key<'a>(
        &mut self,
        name: &str,
        labels: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
    ) -> SeriesKey {
        normalize_labels(labels);
        self.get_or_insert(name, labels)
    }

    /// Like [`KeyCache::key`] for labels already sorted by name without
    /// repeats (strictly increasing names), as decoders often receive them:
    /// the same key, without the sorting and without a `Vec`.
    pub fn key_sorted(&mut self, name: &str, labels: &[(&str, &str)]) -> SeriesKey {
        debug_assert!(labels.windows(2).all(|w| w[0].0 < w[1].0), "{labels:?}");
        self.get_or_insert(name, labels)
    }

    /// The cached key of `name` with normalized `labels`, built on a miss.
    fn get_or_insert<T: AsRef<str>>(&mut self, name: &str, labels: &[(T, T)]) -> SeriesKey {
        let fingerprint = fingerprint_of(name, labels, &mut self.buf);
        if let Some(k) = self.keys.get(&fingerprint).and_then(Weak::upgrade) {
            let k = SeriesKey(k);
            if k.is(name, labels) {
                return k;
            }
        }
        // New series, a series whose key died (evicted everywhere), or
        // (with odds of 2^-64) another series with the same fingerprint,
        // which then simply replaces it in the cache.
        let key = Self::build(name, labels, fingerprint);
        if self.keys.len() >= self.capacity && !self.keys.contains_key(&fingerprint) {
            self.keys.retain(|_, k| k.strong_count() > 0);
            if self.keys.len() >= self.capacity {
                self.keys.clear();
            }
        }
        self.keys.insert(fingerprint, Arc::downgrade(&key.0));
        key
    }

    fn build<T: AsRef<str>>(name: &str, labels: &[(T, T)], fingerprint: u64) -> SeriesKey {
        SeriesKey(Arc::new(KeyData {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
            fingerprint,
        }))
    }

    /// Entries held (live or dead keys).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Most entries held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Prints the Prometheus selector form: `name{a="x",b="y"}` (just `name`
/// without labels), with `\`, `"` and newlines escaped in values.
impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)?;
        if self.0.labels.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (k, v)) in self.0.labels.iter().enumerate() {
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

    #[test]
    fn serialized_form_is_name_and_labels() {
        // Snapshots hold postcard of `{name, labels}`: the shape the key had
        // when it was a plain struct. It must not change.
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Plain {
            name: String,
            labels: Vec<(String, String)>,
        }
        let k = SeriesKey::new("cpu", [("host", "a"), ("dc", "x")]);
        let plain = Plain {
            name: "cpu".into(),
            labels: vec![("dc".into(), "x".into()), ("host".into(), "a".into())],
        };
        let bytes = postcard::to_allocvec(&k).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&plain).unwrap());
        let back: SeriesKey = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, k);
        assert_eq!(back.fingerprint(), k.fingerprint());
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"name":"cpu","labels":[["dc","x"],["host","a"]]}"#
        );
    }

    #[test]
    fn equal_keys_hash_alike_and_order_by_name_then_labels() {
        use std::collections::hash_map::DefaultHasher;
        let h = |k: &SeriesKey| {
            let mut s = DefaultHasher::new();
            k.hash(&mut s);
            s.finish()
        };
        let a = SeriesKey::new("m", [("x", "1"), ("y", "2")]);
        let b = SeriesKey::new("m", [("y", "2"), ("x", "1")]);
        assert!(!Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, b);
        assert_eq!(h(&a), h(&b));
        let c = SeriesKey::new("m", [("x", "1"), ("y", "3")]);
        assert_ne!(a, c);
        assert!(a < c);
        assert!(SeriesKey::from_name("a") < SeriesKey::from_name("b"));
        assert!(SeriesKey::from_name("m") < a);
    }

    #[test]
    fn key_cache_hands_out_one_shared_key_per_series() {
        let mut cache = KeyCache::default();
        let mut labels = vec![
            (Cow::Borrowed("host"), Cow::Borrowed("a")),
            (Cow::Borrowed("dc"), Cow::Borrowed("x")),
            (Cow::Borrowed("host"), Cow::Owned("b".to_owned())),
        ];
        let a = cache.key("cpu", &mut labels.clone());
        let want = SeriesKey::new("cpu", [("host", "a"), ("dc", "x"), ("host", "b")]);
        assert_eq!(a, want);
        assert_eq!(a.fingerprint(), want.fingerprint());
        assert_eq!(a.to_string(), want.to_string());
        let b = cache.key("cpu", &mut labels);
        assert!(Arc::ptr_eq(&a.0, &b.0), "the second event reuses the key");
        // Another series, and the same labels under another name.
        let c = cache.key("cpu", &mut vec![(Cow::Borrowed("dc"), Cow::Borrowed("y"))]);
        assert_eq!(c, SeriesKey::new("cpu", [("dc", "y")]));
        let d = cache.key("mem", &mut vec![(Cow::Borrowed("dc"), Cow::Borrowed("y"))]);
        assert_eq!(d, SeriesKey::new("mem", [("dc", "y")]));
        assert_eq!(cache.key("up", &mut Vec::new()), SeriesKey::from_name("up"));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn key_cache_sorted_labels_share_the_key() {
        let mut cache = KeyCache::default();
        let a = cache.key_sorted("cpu", &[("dc", "x"), ("host", "a")]);
        assert_eq!(a, SeriesKey::new("cpu", [("host", "a"), ("dc", "x")]));
        assert_eq!(
            a.fingerprint(),
            SeriesKey::new("cpu", [("host", "a"), ("dc", "x")]).fingerprint()
        );
        // The same series through either door is the same shared key.
        let mut unsorted = vec![
            (Cow::Borrowed("host"), Cow::Borrowed("a")),
            (Cow::Borrowed("dc"), Cow::Borrowed("x")),
        ];
        let b = cache.key("cpu", &mut unsorted);
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let c = cache.key_sorted("cpu", &[("dc", "x"), ("host", "a")]);
        assert!(Arc::ptr_eq(&a.0, &c.0));
        // Strings that concatenate alike are still other series.
        let d = cache.key_sorted("cpu", &[("dc", "xh"), ("ost", "a")]);
        assert_eq!(d, SeriesKey::new("cpu", [("dc", "xh"), ("ost", "a")]));
        assert_ne!(d, a);
        assert_eq!(cache.key_sorted("up", &[]), SeriesKey::from_name("up"));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn key_cache_starts_over_when_full() {
        let mut cache = KeyCache::with_capacity(2);
        // Keys held elsewhere stay alive: a full cache of live keys starts
        // over.
        let held: Vec<SeriesKey> = ["a", "b", "c"]
            .iter()
            .map(|name| cache.key(name, &mut Vec::new()))
            .collect();
        assert_eq!(held[2], SeriesKey::from_name("c"));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.key("a", &mut Vec::new()), SeriesKey::from_name("a"));
    }

    #[test]
    fn key_cache_holds_no_key_alive_and_drops_dead_entries_first() {
        let mut cache = KeyCache::with_capacity(3);
        let big = "x".repeat(1 << 16);
        let live = cache.key("live", &mut Vec::new());
        let dead = cache.key(
            "dead",
            &mut vec![(Cow::Borrowed("pad"), Cow::Borrowed(big.as_str()))],
        );
        let weak = Arc::downgrade(&dead.0);
        drop(dead);
        // Nothing but the cache referred to it: its strings are gone.
        assert!(weak.upgrade().is_none());
        assert_eq!(cache.len(), 2);
        // The same series again gets a fresh, equal key.
        let again = cache.key(
            "dead",
            &mut vec![(Cow::Borrowed("pad"), Cow::Borrowed(big.as_str()))],
        );
        assert_eq!(again.labels()[0].1.len(), 1 << 16);
        drop(again);
        let third = cache.key("third", &mut Vec::new());
        // Full: the dead entry goes, the live ones stay shared.
        let fourth = cache.key("fourth", &mut Vec::new());
        assert_eq!(cache.len(), 3);
        let live_again = cache.key("live", &mut Vec::new());
        assert!(Arc::ptr_eq(&live.0, &live_again.0));
        assert!(Arc::ptr_eq(
            &third.0,
            &cache.key("third", &mut Vec::new()).0
        ));
        drop(fourth);
    }
}
