//! Replay of a file or stdin through the daemon's decoder and pipeline.
//!
//! Each line is one message (NDJSON, prometheus-adapter JSON or line
//! protocol, as `decode.format` says). Lines are dispatched in batches as
//! partition `(0, 0)`; there are no offsets to commit. Used by the
//! end-to-end benchmark and for debugging a capture of a topic.

use std::io::BufRead;
use std::time::{Duration, Instant};

use super::DecodeErrorReporter;
use crate::counter::StreamRules;
use crate::decode::Decoder;
use crate::pipeline::{BarrierKind, Pipeline, PipelineClosed};
use crate::state::SourcePartition;
use crate::telemetry::metrics::Metrics;

/// The `source` label of a replay's metrics.
pub const NAME: &str = "file";

/// Lines per dispatched batch: large enough to amortise the queue hand-off,
/// small enough to keep latency low.
const BATCH_LINES: usize = 1024;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Lines read.
    pub lines: u64,
    /// Events dispatched.
    pub events: u64,
}

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input could not be read.
    #[error("cannot read the replay input: {0}")]
    Read(#[from] std::io::Error),
    /// The pipeline stopped.
    #[error(transparent)]
    Pipeline(#[from] PipelineClosed),
}

/// Replays `input` line by line and waits until every event is processed.
/// `rules` drop the series a source skips (`[decode.counters]`).
pub async fn replay(
    mut input: impl BufRead,
    decoder: &Decoder,
    rules: &StreamRules,
    pipeline: &Pipeline,
    metrics: &Metrics,
) -> Result<ReplaySummary, ReplayError> {
    let part = SourcePartition {
        stream: 0,
        partition: 0,
    };
    let metrics = metrics.source(NAME, &[]);
    let mut summary = ReplaySummary::default();
    let reporter = DecodeErrorReporter::new(Duration::from_secs(10));
    let mut batch = Vec::with_capacity(BATCH_LINES);
    let mut errors = Vec::new();
    // One buffer for every line (no String per line), handed to the decoder
    // as bytes: it checks UTF-8 itself, so a bad line is counted as
    // `invalid_utf8` like any other bad line instead of ending the replay.
    let mut line = Vec::with_capacity(256);
    let mut lines_in_batch = 0u64;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        summary.lines += 1;
        lines_in_batch += 1;
        errors.clear();
        let before = batch.len();
        decoder.decode(&line, None, &mut batch, &mut errors);
        rules.drop_skipped(&mut batch, before, &mut |r| {
            metrics.samples_skipped(r.as_str(), 1);
        });
        if !errors.is_empty() {
            reporter.report(&metrics, &errors, &format_args!("line {}", summary.lines));
        }
        if lines_in_batch == BATCH_LINES as u64 {
            // Counters move per batch: one atomic add each instead of two
            // per line.
            metrics.messages_received(lines_in_batch);
            metrics.events_decoded(batch.len() as u64);
            lines_in_batch = 0;
            if !batch.is_empty() {
                summary.events += batch.len() as u64;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES));
                pipeline.dispatch(part, full, Instant::now()).await?;
            }
        }
    }
    metrics.messages_received(lines_in_batch);
    metrics.events_decoded(batch.len() as u64);
    if !batch.is_empty() {
        summary.events += batch.len() as u64;
        pipeline.dispatch(part, batch, Instant::now()).await?;
    }
    pipeline.barrier(BarrierKind::Sync).await?;
    Ok(summary)
}
