//! The remote-write messages, as hand-written prost structs (no protoc at
//! build time), for *writing* requests: tests, benchmarks and tools build
//! bodies with them. The receiver reads bodies in place
//! ([`super::wire`]), not through these.
//!
//! Only the fields anomalyd reads are declared (a native histogram is an
//! empty message here: its contents are never read). Field numbers are
//! those of Prometheus' `prompb/remote.proto`, `prompb/types.proto` and
//! (module [`v2`]) `prompb/io/prometheus/write/v2/types.proto`.

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
    /// Native histogram samples (counted and skipped by the receiver).
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Histogram` (and 2.0's), fields left out: the receiver only
/// counts them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// `timestamp` (field 15 in both versions), so a histogram is never an
    /// empty message on the wire.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
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

/// Remote-write 2.0: `io.prometheus.write.v2`.
pub mod v2 {
    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// Every string of the request once; the first is `""`.
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// The series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `io.prometheus.write.v2.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Label name and value references into `symbols`, alternating.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Native histogram samples.
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<super::Histogram>,
        /// The series' declared type.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
    }

    /// `io.prometheus.write.v2.Metadata` (only the type).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// `MetricType`, numbered as 1.0's
        /// ([`super::MetricMetadata::r#type`]).
        #[prost(int32, tag = "1")]
        pub r#type: i32,
    }

    /// `io.prometheus.write.v2.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// The value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        /// Start of a counter's life (skipped by the receiver).
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }
}
