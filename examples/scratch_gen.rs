use anomalyd::demo::fleet::Fleet;
use std::io::Write;
fn main() {
    let start_ms: i64 = std::fs::read_to_string("/tmp/start_ms")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let hist = 4320u64 + 40;
    let mut fleet = Fleet::new(3, 60, start_ms, 4320 - 300, 15, 42);
    let mut out = std::io::BufWriter::new(std::io::stdout());
    writeln!(out, "timestamp,value").unwrap();
    for i in 0..hist {
        let evs = fleet.sample(i);
        let e = evs
            .iter()
            .find(|e| {
                e.series.to_string() == "http_requests_per_second{dc=\"eu-west\",host=\"web-03\"}"
            })
            .unwrap();
        writeln!(out, "{},{}", e.ts_ms as f64 / 1000.0, e.value).unwrap();
    }
}
