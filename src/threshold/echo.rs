//! Echo suppression: one anomaly, one onset.
//!
//! A channel's surprise at or above the alert threshold becomes the
//! series' *echo peak*, held while the series stays at alert level and
//! decaying with a time constant of [`ECHO_EVENTS`] events once it is back
//! below (a peak far above the threshold decays faster: the logarithm of
//! its ratio to the threshold's surprise does, by the same constant); the
//! onset score counts only what exceeds it. So what follows an anomaly (its
//! echo, its plateau, the other channels that see the same change) must be
//! surprising beyond the anomaly itself to be an onset.

/// Time constant, in events, of the echo peaks' decay.
pub const ECHO_EVENTS: f64 = 50.0;

/// The echo rule (shared by every series).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Echo {
    /// Per-event decay of the peak.
    decay: f64,
    /// The alert threshold's surprise: the peak tracks surprises above it.
    pub alert_surprise: f64,
}

impl Echo {
    /// The rule for alerts at `alert_surprise` nats.
    pub fn new(alert_surprise: f64) -> Self {
        Self {
            decay: (-1.0 / ECHO_EVENTS).exp(),
            alert_surprise,
        }
    }

    /// Whether an event of `surprise` (on a warm series) is at alert level.
    #[inline]
    pub fn anomalous(&self, warm: bool, surprise: f64) -> bool {
        warm && surprise >= self.alert_surprise
    }

    /// The onset surprise: what exceeds the echo `peak`.
    #[inline]
    pub fn onset(peak: f64, surprise: f64) -> f64 {
        (surprise - peak).max(0.0)
    }

    /// Whether an anomalous event of `surprise` is only an echo: within
    /// the anomaly in progress.
    #[inline]
    pub fn is_echo(&self, peak: f64, surprise: f64) -> bool {
        surprise - peak < self.alert_surprise
    }

    /// Updates the `peak` after an event of `surprise`. `held` is `None`
    /// below the alert's surprise (the peak decays); else the peak takes
    /// it, the anomaly's surprise as the series will see it once learned
    /// (see [`super::channels::Channel::held`]): for a first anomaly that is
    /// its surprise; for one that repeats an earlier excursion's size, the
    /// record's bound replaces the peak, since the earlier excursion is by
    /// now part of the normal tail and its echo no reason to stay blind.
    #[inline]
    pub fn update(&self, peak: &mut f64, surprise: f64, held: Option<f64>) {
        match held {
            Some(held) if held < surprise => *peak = held,
            Some(held) => *peak = peak.max(held),
            // Far above the threshold the peak decays in orders of
            // magnitude (the logarithm of its ratio to the threshold's
            // surprise, by the same time constant), so an anomaly of 200
            // nats is not a reason to be blind to one of 40 for 150 events.
            None if *peak > self.alert_surprise => {
                *peak = (*peak * self.decay)
                    .min(self.alert_surprise * (*peak / self.alert_surprise).powf(self.decay));
            }
            None => *peak *= self.decay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The peak after `events` events below the alert level.
    fn decayed(echo: &Echo, mut peak: f64, events: usize) -> f64 {
        for _ in 0..events {
            echo.update(&mut peak, 0.0, None);
        }
        peak
    }

    #[test]
    fn a_huge_anomaly_does_not_blind_the_series_for_long() {
        let echo = Echo::new(10.0);
        // A first jump of a series that never moved: 1,000 nats. Ninety
        // events later a second anomaly of 40 nats is an onset (decaying by
        // e^(-t/50) alone, the peak would still be 165 and hide it).
        let peak = decayed(&echo, 1_000.0, 90);
        assert!(peak < 25.0, "{peak}");
        assert!(Echo::onset(peak, 40.0) >= echo.alert_surprise);
        // Its echo ten events on, a tenth as surprising, is still no onset.
        let soon = decayed(&echo, 1_000.0, 10);
        assert!(Echo::onset(soon, 100.0) < echo.alert_surprise, "{soon}");
    }

    #[test]
    fn a_peak_near_the_threshold_decays_with_its_time_constant() {
        let echo = Echo::new(10.0);
        let peak = decayed(&echo, 12.0, 50);
        assert!((peak - 12.0 * (-1.0f64).exp()).abs() < 1e-9, "{peak}");
        // And it keeps decaying below the threshold's surprise.
        assert!(decayed(&echo, 12.0, 200) < 1.0);
    }
}
