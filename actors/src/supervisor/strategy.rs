//! The two decisions a supervisor makes when a child exits, each one `match` over its policy:
//! restart it at all (the child's [`Restart`] type, [`should_restart`]), and which children
//! restart with it (the supervisor's [`Strategy`], [`restart_set`]); and when
//! ([`RestartDelay`], at once by default).

use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::exit::ChildExit;

/// When a child that exited is restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Restart {
    /// Always.
    #[default]
    Permanent,
    /// Only after an abnormal exit: not after exit code 0 and not after a shutdown (one its
    /// supervisor asked for, or a death by SIGTERM).
    Transient,
    /// Never (and the child is forgotten once it has exited).
    Temporary,
}

/// Which children are restarted when one of them has to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Strategy {
    /// Only the child that exited.
    #[default]
    OneForOne,
    /// All children: the others are stopped (in reverse start order), then all are started
    /// again in start order.
    OneForAll,
    /// The child that exited and every child started after it: those are stopped in reverse
    /// order, then all of them are started again in start order.
    RestForOne,
    /// Like `OneForOne`, for children added at run time from one template spec with extra
    /// arguments (`start_child_with`).
    SimpleOneForOne,
}

/// How long a supervisor waits before restarting a child: an addition to OTP, whose supervisor
/// restarts at once and retries a failed restart at once (which stays the default: a spec
/// without a delay).
///
/// The delay of a child's `n`-th restart attempt in a row (`n` = 0 for the restart after it
/// exited, 1 after that attempt failed to start it, …) is `first × factorⁿ`, at most `max`; a
/// successful start resets `n`. Every attempt still counts toward the supervisor's
/// [`Intensity`](super::Intensity), so a delay lets a child wait out a slow dependency
/// without exhausting a finite intensity in a few milliseconds. While it waits, the child is
/// `Restarting` and the supervisor serves requests (`terminate_child` cancels the pending
/// restart). The wait is a timer whose expiry the supervisor sends itself as a message, so the
/// strategy's set (the siblings of a `OneForAll` / `RestForOne` supervisor) is restarted when
/// it expires, not before.
///
/// ```
/// use std::time::Duration;
/// use procvisor_actors::supervisor::RestartDelay;
///
/// let backoff = RestartDelay::exponential(Duration::from_millis(100), Duration::from_secs(1));
/// let delays: Vec<u128> = (0..6).map(|n| backoff.delay(n).as_millis()).collect();
/// assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
/// assert_eq!(RestartDelay::fixed(Duration::from_secs(2)).delay(9), Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RestartDelay {
    /// The delay of the first attempt.
    pub first: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Each attempt in a row waits this many times longer than the one before (at least 1).
    pub factor: u32,
}

impl RestartDelay {
    /// The same delay before every attempt.
    pub const fn fixed(delay: Duration) -> RestartDelay {
        RestartDelay {
            first: delay,
            max: delay,
            factor: 1,
        }
    }

    /// `first`, then twice as long at each attempt in a row, at most `max`.
    pub const fn exponential(first: Duration, max: Duration) -> RestartDelay {
        RestartDelay {
            first,
            max,
            factor: 2,
        }
    }

    /// The delay before attempt `attempt` in a row (0: the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let grown = u32::try_from(u64::from(self.factor).saturating_pow(attempt))
            .ok()
            .and_then(|times| self.first.checked_mul(times));
        grown.map_or(self.max, |d| d.min(self.max))
    }
}

/// Whether a child of this restart type is restarted after this exit.
pub(crate) fn should_restart(restart: Restart, exit: &ChildExit) -> bool {
    match restart {
        Restart::Permanent => true,
        Restart::Transient => exit.is_abnormal(),
        Restart::Temporary => false,
    }
}

/// The children (positions in start order) restarted when child `failed` of `len` must be:
/// the others in the range are stopped in reverse order first, then all start in order.
pub(crate) fn restart_set(strategy: Strategy, len: usize, failed: usize) -> Range<usize> {
    match strategy {
        Strategy::OneForOne | Strategy::SimpleOneForOne => failed..failed + 1,
        Strategy::OneForAll => 0..len,
        Strategy::RestForOne => failed..len,
    }
}

#[cfg(test)]
mod tests {
    use super::super::exit::Exit;
    use super::*;

    #[test]
    fn sets() {
        assert_eq!(restart_set(Strategy::OneForOne, 4, 1), 1..2);
        assert_eq!(restart_set(Strategy::SimpleOneForOne, 4, 3), 3..4);
        assert_eq!(restart_set(Strategy::OneForAll, 4, 1), 0..4);
        assert_eq!(restart_set(Strategy::RestForOne, 4, 1), 1..4);
        assert_eq!(restart_set(Strategy::RestForOne, 4, 3), 3..4);
    }

    #[test]
    fn restart_types() {
        let crash = ChildExit {
            exit: Exit::Code(1),
            requested: false,
        };
        let normal = ChildExit {
            exit: Exit::Code(0),
            requested: false,
        };
        assert!(should_restart(Restart::Permanent, &normal));
        assert!(should_restart(Restart::Transient, &crash));
        assert!(!should_restart(Restart::Transient, &normal));
        assert!(!should_restart(Restart::Temporary, &crash));
    }
}
