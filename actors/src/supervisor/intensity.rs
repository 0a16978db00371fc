//! The restart intensity: a sliding window of restart times (OTP's `add_restart`).

use std::collections::VecDeque;
use std::time::Instant;

use super::spec::Intensity;

/// The restarts of the last `period`.
#[derive(Debug)]
pub(crate) struct RestartWindow {
    intensity: Intensity,
    restarts: VecDeque<Instant>,
}

impl RestartWindow {
    pub(crate) fn new(intensity: Intensity) -> RestartWindow {
        RestartWindow {
            intensity,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart at `now`. `false` means that was one too many: more than
    /// `max_restarts` within the last `period`, so the supervisor must give up.
    pub(crate) fn add(&mut self, now: Instant) -> bool {
        if self.intensity.is_unlimited() {
            return true;
        }
        self.restarts.push_back(now);
        while let Some(&oldest) = self.restarts.front() {
            if now.duration_since(oldest) > self.intensity.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.len() as u64 <= u64::from(self.intensity.max_restarts)
    }

    /// Restarts counted in the window (including the one that was too many).
    pub(crate) fn count(&self) -> u32 {
        self.restarts.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn more_than_max_within_period_fails() {
        let mut w = RestartWindow::new(Intensity::new(2, Duration::from_secs(10)));
        let t0 = Instant::now();
        assert!(w.add(t0));
        assert!(w.add(t0 + Duration::from_secs(1)));
        assert!(!w.add(t0 + Duration::from_secs(2)));
        assert_eq!(w.count(), 3);
    }

    #[test]
    fn old_restarts_slide_out() {
        let mut w = RestartWindow::new(Intensity::new(1, Duration::from_secs(5)));
        let t0 = Instant::now();
        assert!(w.add(t0));
        assert!(w.add(t0 + Duration::from_secs(6)));
        assert!(w.add(t0 + Duration::from_secs(12)));
        assert!(!w.add(t0 + Duration::from_secs(13)));
    }

    #[test]
    fn zero_max_fails_at_once_and_unlimited_never() {
        let t0 = Instant::now();
        let mut none = RestartWindow::new(Intensity::new(0, Duration::from_secs(5)));
        assert!(!none.add(t0));
        let mut all = RestartWindow::new(Intensity::unlimited());
        assert!((0..10_000).all(|_| all.add(t0)));
        assert_eq!(all.count(), 0);
    }
}
