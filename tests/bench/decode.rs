//! Decoder throughput, in events per second, for each wire format.
//!
//! `cargo bench --bench decode` (criterion prints `thrpt` in elem/s, one
//! element = one decoded event). Payloads are synthetic but shaped like the
//! real producers: 1,000 series, one record per Kafka message (what
//! prometheus-kafka-adapter and Telegraf's Kafka output send by default),
//! and 1,000-record NDJSON / line-protocol batches (file replay, batching
//! producers). The timing includes dropping the decoded events, as the
//! pipeline would.

use std::hint::black_box;

use anomalyd::decode::{DecodeConfig, Decoder, Format};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: usize = 1_000;
const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

fn native_lines() -> Vec<String> {
    (0..N)
        .map(|i| {
            format!(
                r#"{{"series":"cpu_usage","labels":{{"host":"host-{:03}","dc":"dc-{}"}},"ts":{},"value":{}}}"#,
                i % 250,
                i % 4,
                (T0 + i as i64) * 1000,
                0.25 + (i as f64) * 0.001
            )
        })
        .collect()
}

fn adapter_lines() -> Vec<String> {
    (0..N)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2026-01-01T00:{:02}:{:02}Z","value":"{}","name":"node_load1","labels":{{"__name__":"node_load1","instance":"host-{:03}:9100","job":"node"}}}}"#,
                (i / 60) % 60,
                i % 60,
                0.25 + (i as f64) * 0.001,
                i
            )
        })
        .collect()
}

/// Telegraf `cpu` lines: 2 tags, 10 float fields each.
fn influx_lines() -> Vec<String> {
    (0..N / 10)
        .map(|i| {
            format!(
                "cpu,cpu=cpu{},host=host-{:03} usage_user=0.{i},usage_system=0.1,usage_idle=99.{i},usage_nice=0,usage_iowait=0.02,usage_irq=0,usage_softirq=0.01,usage_steal=0,usage_guest=0,usage_guest_nice=0 {}",
                i % 8,
                i % 25,
                (T0 + i as i64) * 1_000_000_000
            )
        })
        .collect()
}

fn bench_format(c: &mut Criterion, name: &str, format: Format, lines: &[String], events: usize) {
    let decoder = Decoder::new(&DecodeConfig {
        format,
        ..DecodeConfig::default()
    });
    let mut out = Vec::with_capacity(events);
    let mut errors = Vec::new();
    // Sanity: the payloads are valid and yield the stated event count.
    for l in lines {
        decoder.decode(l.as_bytes(), Some(0), &mut out, &mut errors);
    }
    assert!(errors.is_empty(), "{name}: {:?}", errors.first());
    assert_eq!(out.len(), events, "{name}");
    out.clear();

    let batch = lines.join("\n");
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("one_record_per_message", |b| {
        b.iter(|| {
            for l in lines {
                decoder.decode(black_box(l.as_bytes()), Some(0), &mut out, &mut errors);
            }
            black_box(&out);
            out.clear();
        })
    });
    g.bench_function("batch_of_1000_events", |b| {
        b.iter(|| {
            decoder.decode(black_box(batch.as_bytes()), Some(0), &mut out, &mut errors);
            black_box(&out);
            out.clear();
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    bench_format(c, "native_json", Format::NativeJson, &native_lines(), N);
    bench_format(
        c,
        "prometheus_adapter",
        Format::PrometheusAdapter,
        &adapter_lines(),
        N,
    );
    bench_format(c, "influx_line", Format::InfluxLine, &influx_lines(), N);
    bench_format(c, "auto_native_json", Format::Auto, &native_lines(), N);
    bench_format(c, "auto_influx_line", Format::Auto, &influx_lines(), N);
}

criterion_group!(benches, decode);
criterion_main!(benches);
