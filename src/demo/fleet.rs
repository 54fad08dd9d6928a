//! A generated fleet of realistic metrics with injected anomalies.
//!
//! Several hosts × several metrics, each with a daily cycle, noise and its
//! own scale, sampled every `step_secs` of simulated time. Anomalies of four
//! kinds (spike, level shift, drift, flatline) are injected on a schedule so
//! that the demo shows firing and resolved alerts. Deterministic for a seed:
//! the tests and the documented numbers rely on it.

use std::f64::consts::TAU;

use crate::event::{Event, SeriesKey};

/// The kinds of injected anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnomalyKind {
    /// A few points far above normal.
    Spike,
    /// The level jumps and stays for a while.
    LevelShift,
    /// The level creeps up steadily.
    Drift,
    /// The value freezes (a stuck exporter).
    Flatline,
}

impl AnomalyKind {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spike => "spike",
            Self::LevelShift => "level_shift",
            Self::Drift => "drift",
            Self::Flatline => "flatline",
        }
    }
}

/// One injected anomaly: which series, when, for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// Index of the series in [`Fleet::series`].
    pub series: usize,
    /// First affected sample index.
    pub start: u64,
    /// Number of affected samples.
    pub len: u64,
    /// What happens.
    pub kind: AnomalyKind,
}

/// The metrics each host reports: name, base level, daily amplitude, noise
/// (all relative to the base), and whether values are bounded to 0..100.
const METRICS: &[(&str, f64, f64, f64, bool)] = &[
    ("cpu_usage_percent", 35.0, 0.5, 0.06, true),
    ("memory_used_bytes", 6.0e9, 0.08, 0.005, false),
    ("http_requests_per_second", 850.0, 0.6, 0.04, false),
    ("http_latency_p99_seconds", 0.180, 0.25, 0.05, false),
];

/// SplitMix64: tiny, fast and stable across versions (a seeded demo must
/// give the same stream everywhere). Also the generator of the detection
/// tests' series.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
    }
}

/// One generated series.
#[derive(Debug, Clone)]
pub struct FleetSeries {
    /// Its key: metric name + `host`, `dc` labels.
    pub key: SeriesKey,
    base: f64,
    amplitude: f64,
    noise: f64,
    bounded: bool,
    /// Phase of the daily cycle, so hosts are not identical.
    phase: f64,
    /// Last emitted value (flatlines repeat it).
    last: f64,
}

/// The whole fleet and its anomaly schedule.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// All series, host-major.
    pub series: Vec<FleetSeries>,
    /// Injected anomalies, by start.
    pub injections: Vec<Injection>,
    /// Simulated seconds between samples of one series.
    pub step_secs: i64,
    /// Simulated time of sample 0 (ms since the epoch).
    pub start_ms: i64,
    rng: Rng,
}

impl Fleet {
    /// A fleet of `hosts` hosts, samples every `step_secs`, starting at
    /// `start_ms`, with one anomaly every `every` samples (rotating over
    /// series and kinds) after `quiet` samples of normal behaviour.
    pub fn new(
        hosts: usize,
        step_secs: i64,
        start_ms: i64,
        quiet: u64,
        every: u64,
        seed: u64,
    ) -> Self {
        let mut rng = Rng(seed);
        let mut series = Vec::new();
        for h in 0..hosts {
            let host = format!("web-{:02}", h + 1);
            let dc = if h % 2 == 0 { "eu-west" } else { "us-east" };
            for &(name, base, amplitude, noise, bounded) in METRICS {
                let jitter = 0.8 + 0.4 * rng.uniform();
                series.push(FleetSeries {
                    key: SeriesKey::new(name, [("host", host.as_str()), ("dc", dc)]),
                    base: base * jitter,
                    amplitude,
                    noise,
                    bounded,
                    phase: rng.uniform() * 0.1,
                    last: base,
                });
            }
        }
        let kinds = [
            AnomalyKind::Spike,
            AnomalyKind::LevelShift,
            AnomalyKind::Drift,
            AnomalyKind::Flatline,
        ];
        let mut injections = Vec::new();
        let n = series.len().max(1);
        for i in 0..256u64 {
            let kind = kinds[(i % 4) as usize];
            let len = match kind {
                AnomalyKind::Spike => 3,
                AnomalyKind::LevelShift => 40,
                AnomalyKind::Drift => 60,
                AnomalyKind::Flatline => 40,
            };
            injections.push(Injection {
                series: (i as usize * 7 + 3) % n,
                start: quiet + i * every,
                len,
                kind,
            });
        }
        Self {
            series,
            injections,
            step_secs,
            start_ms,
            rng,
        }
    }

    /// Simulated time of sample `i`.
    pub fn time_ms(&self, i: u64) -> i64 {
        self.start_ms + i as i64 * self.step_secs * 1000
    }

    /// The injection active for `series` at sample `i`, if any.
    pub fn active(&self, series: usize, i: u64) -> Option<&Injection> {
        self.injections
            .iter()
            .find(|inj| inj.series == series && i >= inj.start && i < inj.start + inj.len)
    }

    /// Every series' event at sample `i`, in series order.
    pub fn sample(&mut self, i: u64) -> Vec<Event> {
        let ts_ms = self.time_ms(i);
        let day = 86_400_000.0;
        let tod = (ts_ms as f64 % day) / day;
        let mut out = Vec::with_capacity(self.series.len());
        for s in 0..self.series.len() {
            let inj = self.active(s, i).cloned();
            let f = &self.series[s];
            let cycle = (TAU * (tod + f.phase)).sin();
            let normal = f.base * (1.0 + f.amplitude * cycle);
            let noise = f.base * f.noise * self.rng.normal();
            let mut v = normal + noise;
            if let Some(inj) = inj {
                let k = (i - inj.start) as f64;
                v = match inj.kind {
                    AnomalyKind::Spike => normal + f.base * (1.5 + 0.3 * k),
                    AnomalyKind::LevelShift => v + f.base * 0.8,
                    AnomalyKind::Drift => v + f.base * 0.03 * k,
                    AnomalyKind::Flatline => f.last,
                };
            }
            if f.bounded {
                v = v.clamp(0.0, 100.0);
            } else {
                v = v.max(0.0);
            }
            self.series[s].last = v;
            out.push(Event {
                series: self.series[s].key.clone(),
                ts_ms,
                value: v,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = Fleet::new(3, 60, 0, 100, 50, 7);
        let mut b = Fleet::new(3, 60, 0, 100, 50, 7);
        for i in 0..300 {
            assert_eq!(a.sample(i), b.sample(i));
        }
    }

    #[test]
    fn anomalies_are_injected_where_scheduled() {
        let mut f = Fleet::new(2, 60, 0, 10, 20, 1);
        let spike = f.injections[0].clone();
        assert_eq!(spike.kind, AnomalyKind::Spike);
        let normal: Vec<f64> = (0..spike.start)
            .map(|i| f.sample(i)[spike.series].value)
            .collect();
        let peak = f.sample(spike.start)[spike.series].value;
        let max_normal = normal.iter().cloned().fold(f64::MIN, f64::max);
        assert!(
            peak > max_normal * 1.5,
            "peak {peak} vs normal max {max_normal}"
        );
        // A flatline repeats its value exactly.
        let flat = f.injections[3].clone();
        assert_eq!(flat.kind, AnomalyKind::Flatline);
        let vals: Vec<f64> = (spike.start + 1..flat.start + flat.len)
            .map(|i| f.sample(i)[flat.series].value)
            .collect();
        let k = (flat.start - spike.start - 1) as usize;
        assert!(vals[k + 1..].iter().all(|v| *v == vals[k]));
    }

    #[test]
    fn values_are_finite_and_in_range() {
        let mut f = Fleet::new(4, 60, 0, 50, 30, 3);
        for i in 0..2000 {
            for e in f.sample(i) {
                assert!(e.value.is_finite() && e.value >= 0.0, "{e:?}");
                if e.series.name() == "cpu_usage_percent" {
                    assert!(e.value <= 100.0);
                }
            }
        }
    }
}
