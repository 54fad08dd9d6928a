//! The changelog store: per-series state in a compacted Kafka topic.
//!
//! Like a Kafka Streams state store, partition `p` of the changelog topic
//! holds the series of input partition `p` of every stream (the changelog
//! needs at least as many partitions as the input topic; create it with
//! `cleanup.policy=compact`; a single-partition source such as the
//! remote-write receiver uses partition 0). Keys and values:
//!
//! ```text
//! key "<stream>/<partition>/<fingerprint as 16 hex>"  value: header | series record
//! key "<stream>/<partition>/~offset"                  value: header | position i64
//! header: magic "ANMD" | schema u32 | model_hash u64
//! ```
//!
//! A save writes the series changed since the previous save, tombstones for
//! series that left the partition (moved to another one, or evicted), then
//! the offset marker, with an idempotent producer and `acks=all`, and returns
//! once all are acknowledged. A load reads the partition from the beginning
//! to its end (where a fetch finds nothing more, not the high watermark of
//! ListOffsets, which tansu 0.6 reports at the first record of the last
//! batch) and keeps, per key, the newest value written
//! *before the last marker*: records after it belong to a save that never
//! completed and are ignored, so a restored state never runs ahead of its
//! offset.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::{
    LoadedPartition, PartitionName, PartitionSnapshot, SCHEMA_VERSION, StateError, StateStore,
    decode_series,
};

const MAGIC: &[u8; 4] = b"ANMD";
const HEADER: usize = 4 + 4 + 8;
const MARKER: &str = "~offset";

/// Counts failed deliveries so a save can tell whether all records landed.
#[derive(Default)]
struct DeliveryCounter {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(error = %e, "State changelog record was not delivered.");
        }
    }
}

/// State in a compacted Kafka topic.
pub struct ChangelogStore {
    topic: String,
    consumer_config: ClientConfig,
    producer: ThreadedProducer<DeliveryCounter>,
    model_hash: u64,
    interval: Duration,
    /// How long a save or load may wait on the broker.
    timeout: Duration,
}

impl ChangelogStore {
    /// A store on `topic`. `client` carries the connection settings
    /// (bootstrap servers, SASL/TLS) shared with the source.
    pub fn new(
        client: &ClientConfig,
        topic: &str,
        model_hash: u64,
        interval: Duration,
    ) -> Result<Self, StateError> {
        let mut producer_config = ClientConfig::new();
        let mut consumer_config = ClientConfig::new();
        for (k, v) in client.config_map() {
            let (k, v): (&str, &str) = (k, v);
            // Only connection/security settings carry over; consumer-group
            // settings do not apply to the changelog clients.
            let shared = k.starts_with("bootstrap")
                || k.starts_with("security")
                || k.starts_with("sasl")
                || k.starts_with("ssl")
                || k == "client.id";
            if shared {
                producer_config.set(k, v);
                consumer_config.set(k, v);
            }
        }
        producer_config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5");
        consumer_config
            .set("group.id", "anomalyd-changelog-reader")
            .set("enable.auto.commit", "false")
            // The end of a partition is where a fetch finds nothing more.
            .set("enable.partition.eof", "true");
        let producer = producer_config
            .create_with_context(DeliveryCounter::default())
            .map_err(|e| StateError::Kafka(format!("cannot create the changelog producer: {e}")))?;
        Ok(Self {
            topic: topic.to_string(),
            consumer_config,
            producer,
            model_hash,
            interval,
            timeout: Duration::from_secs(30),
        })
    }

    fn header(&self) -> [u8; HEADER] {
        let mut h = [0u8; HEADER];
        h[..4].copy_from_slice(MAGIC);
        h[4..8].copy_from_slice(&SCHEMA_VERSION.to_le_bytes());
        h[8..].copy_from_slice(&self.model_hash.to_le_bytes());
        h
    }

    /// Queues one record; `None` is a tombstone (compaction removes the key).
    fn send(&self, partition: i32, key: &str, value: Option<&[u8]>) -> Result<(), StateError> {
        let deadline = Instant::now() + self.timeout;
        let mut record = BaseRecord::to(&self.topic).partition(partition).key(key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, r)) if Instant::now() < deadline => {
                    // Queue full: let the background thread drain it.
                    tracing::trace!(error = %e, "Changelog queue full, waiting.");
                    std::thread::sleep(Duration::from_millis(5));
                    record = r;
                }
                Err((e, _)) => {
                    return Err(StateError::Kafka(format!(
                        "cannot queue a changelog record: {e}"
                    )));
                }
            }
        }
    }
}

/// Splits a value into (schema, model hash, body), checking the magic.
fn split_header<'a>(value: &'a [u8], what: &str) -> Result<(u32, u64, &'a [u8]), StateError> {
    if value.len() < HEADER || &value[..4] != MAGIC {
        return Err(StateError::Corrupt {
            what: what.to_string(),
            detail: "record without the anomalyd header".into(),
        });
    }
    let schema = u32::from_le_bytes([value[4], value[5], value[6], value[7]]);
    let mut h = [0u8; 8];
    h.copy_from_slice(&value[8..16]);
    Ok((schema, u64::from_le_bytes(h), &value[HEADER..]))
}

impl StateStore for ChangelogStore {
    fn incremental(&self) -> bool {
        true
    }

    fn snapshot_interval(&self) -> Duration {
        self.interval
    }

    fn load(&self, name: &PartitionName) -> Result<Option<LoadedPartition>, StateError> {
        let (topic, partition) = (&name.stream, name.partition);
        let what = format!("changelog {}[{partition}] for {topic}", self.topic);
        let kafka = |e: rdkafka::error::KafkaError| StateError::Kafka(format!("{what}: {e}"));
        let consumer: BaseConsumer = self.consumer_config.create().map_err(kafka)?;
        // Partition p of the input needs partition p here; say so plainly
        // (the broker's answer would be "unknown partition").
        let metadata = consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(kafka)?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic && t.error().is_none())
            .map_or(0, |t| t.partitions().len());
        if usize::try_from(partition).map_or(true, |p| p >= partitions) {
            return Err(StateError::Kafka(format!(
                "{what}: the changelog topic has {partitions} partition(s), input partition \
                 {partition} needs at least {}; create {} (cleanup.policy=compact) with as many \
                 partitions as the input topic",
                partition + 1,
                self.topic
            )));
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Beginning)
            .map_err(kafka)?;
        consumer.assign(&tpl).map_err(kafka)?;
        let prefix = format!("{topic}/{partition}/");
        let marker_key = format!("{prefix}{MARKER}");
        let mut pending: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut confirmed: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
        let mut marker: Option<(u32, u64, i64)> = None;
        let deadline = Instant::now() + self.timeout;
        let mut next = 0;
        loop {
            if Instant::now() > deadline {
                return Err(StateError::Kafka(format!(
                    "{what}: read up to offset {next} but not to the end before the timeout"
                )));
            }
            let msg = match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(kafka(e)),
                Some(Ok(m)) => m,
            };
            next = msg.offset() + 1;
            let Some(key) = msg.key() else { continue };
            if !key.starts_with(prefix.as_bytes()) {
                continue; // another input topic sharing the changelog
            }
            if key == marker_key.as_bytes() {
                let Some(v) = msg.payload() else { continue };
                let (schema, hash, body) = split_header(v, &what)?;
                let offset = <[u8; 8]>::try_from(body)
                    .map(i64::from_le_bytes)
                    .map_err(|_| StateError::Corrupt {
                        what: what.clone(),
                        detail: "offset marker of the wrong size".into(),
                    })?;
                marker = Some((schema, hash, offset));
                confirmed.extend(pending.drain());
            } else {
                pending.insert(key.to_vec(), msg.payload().map(<[u8]>::to_vec));
            }
        }
        let Some((schema, hash, offset)) = marker else {
            return Ok(None);
        };
        if schema != SCHEMA_VERSION {
            return Err(StateError::Version {
                what,
                found: schema,
                expected: SCHEMA_VERSION,
                advice: format!(
                    "its series relearn from scratch, and this anomalyd's next snapshot \
                     overwrites that state. To use it instead, stop every anomalyd of this \
                     group now and run one that reads version {schema}"
                ),
            });
        }
        let model_matches = hash == self.model_hash;
        if !model_matches {
            tracing::info!(changelog = %what, "The model configuration changed since this state was saved; models relearn, alert states are kept.");
        }
        let mut series = Vec::with_capacity(confirmed.len());
        let mut skipped = 0usize;
        let mut first_error = None;
        for value in confirmed.into_values().flatten() {
            // A record this version cannot read costs its series, not the
            // partition: after a version change, series that were idle
            // since keep records of the other version under a marker of
            // this one, and refusing the partition for them would relearn
            // everything at every start until each such series changed.
            let decoded = split_header(&value, &what).and_then(|(schema, rec_hash, body)| {
                if schema != SCHEMA_VERSION {
                    return Err(StateError::Corrupt {
                        what: what.clone(),
                        detail: format!("a record of schema version {schema}"),
                    });
                }
                decode_series(body, model_matches && rec_hash == self.model_hash).map_err(|e| {
                    StateError::Corrupt {
                        what: what.clone(),
                        detail: e.to_string(),
                    }
                })
            });
            match decoded {
                Ok(s) => series.push(s),
                Err(e) => {
                    skipped += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            tracing::warn!(changelog = %what, skipped, error = %e, "Skipped state records this anomalyd cannot read; those series relearn.");
        }
        Ok(Some(LoadedPartition {
            position: offset,
            series,
        }))
    }

    fn save(&self, partitions: &[PartitionSnapshot]) -> Result<(), StateError> {
        let failed_before = self.producer.context().failed.load(Ordering::SeqCst);
        let header = self.header();
        let mut value = Vec::new();
        for p in partitions {
            let (stream, partition) = (&p.name.stream, p.name.partition);
            for r in &p.records {
                let key = format!("{stream}/{partition}/{:016x}", r.fingerprint);
                if r.is_deletion() {
                    // The series left this partition: a restore must not
                    // bring its old state back (from here, or ahead of its
                    // new home).
                    self.send(partition, &key, None)?;
                    continue;
                }
                value.clear();
                value.extend_from_slice(&header);
                value.extend_from_slice(&r.bytes);
                self.send(partition, &key, Some(&value))?;
            }
            // The marker last: a load ignores records after the last one.
            let key = format!("{stream}/{partition}/{MARKER}");
            value.clear();
            value.extend_from_slice(&header);
            value.extend_from_slice(&p.position.to_le_bytes());
            self.send(partition, &key, Some(&value))?;
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| StateError::Kafka(format!("flushing the changelog: {e}")))?;
        let failed = self.producer.context().failed.load(Ordering::SeqCst) - failed_before;
        if failed > 0 {
            return Err(StateError::Kafka(format!(
                "{failed} changelog records were not delivered"
            )));
        }
        Ok(())
    }
}
