//! The remote-write 1.0 messages, as hand-written prost structs (no protoc
//! at build time).
//!
//! Only the fields anomalyd reads are declared; protobuf decoding skips the
//! others (exemplars, native histograms, help texts), so a newer sender's
//! request still decodes. Field numbers are those of Prometheus'
//! `prompb/remote.proto` and `prompb/types.proto`.

/// `prometheus.WriteRequest`: one remote-write request body.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Declared metric types (Prometheus sends them in requests of their
    /// own, every `metadata_config.send_interval`).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.MetricMetadata` (only the fields anomalyd reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// `MetricType`: 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge
    /// histogram, 5 summary, 6 info, 7 state set.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The metric family, e.g. `http_requests_total` (text format) or
    /// `http_requests` (OpenMetrics).
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
}

/// `prometheus.TimeSeries`: one series (labels include `__name__`) and its
/// samples, oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Label pairs, sorted by name by Prometheus.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value; the stale marker is a NaN with the bits
    /// [`super::STALE_NAN_BITS`].
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}
