//! What the configuration lets the process hold in memory: the bound the
//! documentation states and the daemon logs at start.
//!
//! Each term is an upper bound computed from configuration alone, with the
//! allocator's overhead included, for the things that grow with input: the
//! series the shards hold (`pipeline.max_series`, each with its key, whose
//! size the remote-write label limits bound), the key caches, a snapshot
//! being written, the live page's history, the receiver's requests in
//! progress, the shard queues, the alert queues and, with `[history]`,
//! the live events held while histories load and the histories in flight. A test runs the daemon
//! under a stream of distinct series with large labels and checks that its
//! peak RSS stays under [`MemoryBudget::total`].
//!
//! With Kafka, keys are as large as the producers make them
//! (`decode.max_message_bytes` bounds one): the series term then assumes
//! keys no larger than the remote-write label limits allow. With
//! `[history]` and no `history.step_secs`, each series' history is read
//! at its own interval: the term then assumes series sampled at most once
//! a second.

use std::fmt;

use crate::app::config::Config;
use crate::detector::{Detector, DetectorError};
use crate::event::KEY_CACHE_ENTRY_BYTES;
use crate::source::remote_write::RemoteWriteConfig;
use crate::state::StoreKind;

/// The process before any input: code, the async runtime, librdkafka's
/// threads, the allocator's arenas (measured: 20–40 MiB; rounded up).
pub const BASE_BYTES: u64 = 64 << 20;

/// A held series beyond its detector state and key: the shard map's slot
/// (with the table's spare room), the boxed entry (alert lifecycle
/// included) and the allocator's headers of the state's buffers (measured
/// 480 B with a small key, `cargo bench --bench state`; rounded up).
pub const SERIES_FIXED_BYTES: u64 = 640;

/// An event in a queue or a request: key pointer, time, value.
const EVENT_BYTES: u64 = 24;

/// One term of the bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// What it counts.
    pub name: &'static str,
    /// Bytes at most.
    pub bytes: u64,
    /// How it was computed, in configuration keys.
    pub formula: String,
}

/// The bound, term by term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBudget {
    /// The terms, [`BASE_BYTES`] first.
    pub terms: Vec<Term>,
}

impl MemoryBudget {
    /// The whole bound.
    pub fn total(&self) -> u64 {
        self.terms.iter().map(|t| t.bytes).sum()
    }

    /// The bound without [`BASE_BYTES`]: what input can add to the process
    /// at start.
    pub fn growth(&self) -> u64 {
        self.total() - BASE_BYTES
    }
}

impl fmt::Display for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.terms {
            writeln!(f, "{:>12} B  {:<14} {}", t.bytes, t.name, t.formula)?;
        }
        write!(f, "{:>12} B  total", self.total())
    }
}

/// Bytes one series key may hold under the receiver's label limits: the
/// shared block, the metric name, the label vector and each name and
/// value, each allocation with its header.
pub fn max_key_bytes(rw: &RemoteWriteConfig) -> u64 {
    let alloc = |n: usize| (n as u64).div_ceil(16) * 16 + 16;
    let labels = rw.label_limit.saturating_sub(1);
    alloc(16 + 56)
        + alloc(rw.label_value_length_limit)
        + alloc(labels * 48)
        + labels as u64 * (alloc(rw.label_name_length_limit) + alloc(rw.label_value_length_limit))
}

/// The bound for `config`.
pub fn of(config: &Config) -> Result<MemoryBudget, DetectorError> {
    let detector = Detector::new(&config.detector, config.alert.threshold)?;
    let state = detector.new_state().memory_bytes() as u64 * 5 / 4;
    let rw = &config.sources.remote_write;
    let key = max_key_bytes(rw);
    let series = config.pipeline.max_series as u64;
    let mut terms = vec![Term {
        name: "base",
        bytes: BASE_BYTES,
        formula: "the process at start".into(),
    }];
    terms.push(Term {
        name: "series",
        bytes: series * (SERIES_FIXED_BYTES + state + key),
        formula: format!(
            "pipeline.max_series × ({SERIES_FIXED_BYTES} + detector state {state} + key {key})"
        ),
    });
    let caches = u64::from(rw.enabled) + u64::from(config.kafka.enabled);
    terms.push(Term {
        name: "key caches",
        bytes: caches * series * KEY_CACHE_ENTRY_BYTES as u64,
        formula: format!("{caches} cache(s) × pipeline.max_series × {KEY_CACHE_ENTRY_BYTES}"),
    });
    if config.state.store != StoreKind::None {
        terms.push(Term {
            name: "snapshot",
            bytes: series * (state + key + 64),
            formula: format!(
                "pipeline.max_series × (encoded state ≤ {state} + key {key} + 64), while one is written"
            ),
        });
    }
    if config.ui.enabled {
        terms.push(Term {
            name: "live page",
            bytes: config.ui.max_bytes,
            formula: "ui.max_bytes".into(),
        });
    }
    let samples = rw.max_samples_per_request as u64;
    if rw.enabled {
        let per_series = rw.max_series_per_request as u64;
        let kept = per_series.min(samples);
        let request = 2 * rw.max_body_bytes as u64
            + samples * (16 + 2 * EVENT_BYTES)
            + per_series * 56
            + kept * rw.label_limit as u64 * 32
            + rw.label_limit as u64 * 48;
        terms.push(Term {
            name: "receiver",
            bytes: rw.max_concurrent_requests as u64 * request,
            formula: format!(
                "max_concurrent_requests × (2 × max_body_bytes + 64 × max_samples_per_request \
                 + 56 × max_series_per_request + 32 × label_limit × series kept) = {} × {request}",
                rw.max_concurrent_requests
            ),
        });
    }
    let kafka_batch = if config.kafka.enabled {
        1024 + config.decode.max_message_bytes as u64 / 8
    } else {
        0
    };
    let batch = kafka_batch.max(if rw.enabled { samples } else { 0 });
    let workers = config.pipeline.worker_count() as u64;
    let queued = workers * config.pipeline.queue_capacity as u64 * (batch * EVENT_BYTES + 128);
    terms.push(Term {
        name: "queues",
        bytes: queued,
        formula: format!(
            "workers ({workers}) × pipeline.queue_capacity × ({batch} events × {EVENT_BYTES} + 128)"
        ),
    });
    let s = &config.sinks;
    let alerts: u64 = [
        (s.log.enabled, s.log.delivery.queue_capacity),
        (s.webhook.enabled, s.webhook.delivery.queue_capacity),
        (
            s.alertmanager.enabled,
            s.alertmanager.delivery.queue_capacity,
        ),
        (s.kafka.enabled, s.kafka.delivery.queue_capacity),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n as u64)
    .sum();
    terms.push(Term {
        name: "alert queues",
        bytes: alerts * (3 * key + 1024),
        formula: format!("Σ sinks.*.queue_capacity ({alerts}) × (3 × key + 1024)"),
    });
    let h = &config.history;
    if h.enabled {
        // Every series may be loading (never evicted meanwhile), each
        // holding up to max_held_events live events.
        let held = series * (64 + h.max_held_events as u64 * EVENT_BYTES);
        let points = h.lookback_secs / h.step_secs.unwrap_or(1).max(1);
        let loaded = h.max_concurrent_queries as u64 * points * 16;
        terms.push(Term {
            name: "history",
            bytes: held + loaded,
            formula: format!(
                "pipeline.max_series × (64 + {EVENT_BYTES} × history.max_held_events) \
                 + history.max_concurrent_queries × history.lookback_secs / step ({}) × 16",
                h.step_secs
                    .map_or("1 s unset".to_owned(), |s| format!("{s} s"))
            ),
        });
    }
    let per = &config.metrics.per_series;
    if per.enabled {
        terms.push(Term {
            name: "series gauges",
            bytes: per.max_series as u64 * 5 * (key + 256),
            formula: "metrics.per_series.max_series × 5 × (key + 256)".into(),
        });
    }
    Ok(MemoryBudget { terms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_grows_with_the_limits_that_drive_it() {
        let mut c = Config::default();
        c.kafka.enabled = false;
        c.sources.remote_write.enabled = true;
        c.pipeline.workers = 2;
        let base = of(&c).unwrap();
        assert!(base.terms.iter().any(|t| t.name == "receiver"));
        let mut bigger = c.clone();
        bigger.sources.remote_write.label_value_length_limit *= 4;
        assert!(of(&bigger).unwrap().total() > base.total());
        let mut fewer = c.clone();
        fewer.pipeline.max_series /= 10;
        assert!(of(&fewer).unwrap().total() < base.total());
        let mut loading = c.clone();
        loading.history.enabled = true;
        let with_history = of(&loading).unwrap();
        let history = with_history.terms.iter().find(|t| t.name == "history");
        assert!(history.is_some_and(|t| t.bytes > 0), "{with_history}");
        assert!(with_history.total() > base.total());
        let text = base.to_string();
        assert!(text.contains("pipeline.max_series"), "{text}");
        assert_eq!(base.growth(), base.total() - BASE_BYTES);
    }

    #[test]
    fn a_key_at_the_limits_fits_its_bound() {
        let rw = RemoteWriteConfig {
            label_limit: 4,
            label_name_length_limit: 100,
            label_value_length_limit: 1000,
            ..RemoteWriteConfig::default()
        };
        let labels: Vec<(String, String)> = (0..3)
            .map(|i| (format!("{i:0>100}"), "v".repeat(1000)))
            .collect();
        let key = crate::event::SeriesKey::new("m".repeat(1000), labels);
        assert!(key.heap_bytes() as u64 <= max_key_bytes(&rw));
    }
}
