//! `anomalyd demo` end to end: embedded broker, generated fleet, the daemon,
//! alerts read back from the alerts topic.

use anomalyd::app::config::Config;
use anomalyd::demo::{self, DemoArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_alerts_on_its_injected_anomalies_within_a_minute() {
    let mut config = Config::default();
    config.metrics.listen_addr = "127.0.0.1:0".into();
    let args = DemoArgs {
        speed: 60.0,
        hosts: 3,
        history_hours: 26.0,
        anomaly_every: 10,
        duration_secs: Some(30),
        seed: 42,
    };
    let s = demo::run(config, args, std::future::pending())
        .await
        .expect("demo runs");
    assert!(s.produced > 4_000, "{s:?}");
    assert_eq!(
        s.processed, s.produced,
        "every produced event is processed: {s:?}"
    );
    assert!(
        s.live_caught >= 1,
        "an injected anomaly caught in the live part within 30 s: {s:?}"
    );
    assert!(s.resolved >= 1, "and resolutions: {s:?}");
    // Alerts go out grouped too: at least one incident opened, and every
    // incident notification read back.
    assert!(s.incidents_opened >= 1, "incidents: {s:?}");
    assert!(s.incident_notifications >= s.incidents_opened, "{s:?}");
}
