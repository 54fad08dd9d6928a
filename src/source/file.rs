//! Replay of a file or stdin through the daemon's decoder and pipeline.
//!
//! Each line is one message (NDJSON, prometheus-adapter JSON or line
//! protocol, as `decode.format` says). Lines are dispatched in batches as
//! partition `(0, 0)`; there are no offsets to commit. Used by the
//! end-to-end benchmark and for debugging a capture of a topic.

use std::io::BufRead;
use std::time::{Duration, Instant};

use super::DecodeErrorReporter;
use crate::decode::Decoder;
use crate::pipeline::{BarrierKind, Pipeline, PipelineClosed, SourcePartition};
use crate::telemetry::metrics::Metrics;

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
pub async fn replay(
    input: impl BufRead,
    decoder: &Decoder,
    pipeline: &Pipeline,
    metrics: &Metrics,
) -> Result<ReplaySummary, ReplayError> {
    let part = SourcePartition {
        topic: 0,
        partition: 0,
    };
    let mut summary = ReplaySummary::default();
    let mut reporter = DecodeErrorReporter::new(Duration::from_secs(10));
    let mut batch = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        summary.lines += 1;
        metrics.message_received();
        errors.clear();
        let before = batch.len();
        decoder.decode(line.as_bytes(), None, &mut batch, &mut errors);
        metrics.events_decoded((batch.len() - before) as u64);
        if !errors.is_empty() {
            reporter.report(metrics, &errors, &format_args!("line {}", i + 1));
        }
        if (i + 1) % BATCH_LINES == 0 && !batch.is_empty() {
            summary.events += batch.len() as u64;
            pipeline
                .dispatch(part, std::mem::take(&mut batch), Instant::now())
                .await?;
        }
    }
    if !batch.is_empty() {
        summary.events += batch.len() as u64;
        pipeline.dispatch(part, batch, Instant::now()).await?;
    }
    pipeline.barrier(BarrierKind::Sync).await?;
    Ok(summary)
}
