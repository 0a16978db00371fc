//! Timeouts as deadlines, and running a blocking wait for an async caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use procvisor_actors::runtime;

/// How long an operation may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all (`block = false`).
    No,
    /// Until this instant.
    Until(Instant),
    /// For ever.
    Forever,
}

impl Wait {
    /// Python's `(block, timeout)`: `block = false` ignores the timeout; a timeout too large
    /// to represent waits for ever.
    pub(crate) fn new(block: bool, timeout: Option<Duration>) -> Wait {
        match (block, timeout) {
            (false, _) => Wait::No,
            (true, None) => Wait::Forever,
            (true, Some(t)) => Instant::now()
                .checked_add(t)
                .map_or(Wait::Forever, Wait::Until),
        }
    }

    /// A timeout (`None`: for ever).
    pub(crate) fn timeout(timeout: Option<Duration>) -> Wait {
        Wait::new(true, timeout)
    }

    /// The futex deadline (`None`: no deadline). `Wait::No` is a deadline already past.
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        }
    }

    /// The time left (`None`: for ever).
    pub(crate) fn remaining(self) -> Option<Duration> {
        self.deadline()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The earlier of this wait and `now + slice`: how an off-thread waiter bounds each sleep so
    /// it notices that its caller gave up.
    fn slice(self, slice: Duration) -> Wait {
        let capped = Instant::now() + slice;
        match self {
            Wait::No => Wait::No,
            Wait::Until(d) => Wait::Until(d.min(capped)),
            Wait::Forever => Wait::Until(capped),
        }
    }

    fn passed(self) -> bool {
        match self {
            Wait::No => true,
            Wait::Until(d) => Instant::now() >= d,
            Wait::Forever => false,
        }
    }
}

/// How long an off-thread waiter sleeps between checks that its future still exists.
const SLICE: Duration = Duration::from_millis(50);

/// Runs a blocking wait for an async caller on the node runtime's blocking pool (so it works
/// inside and outside any tokio runtime, and never blocks a runtime worker).
///
/// `attempt(wait)` tries once, waiting at most `wait`; it is called in slices until it yields
/// `Some`, the caller's wait is over, or the caller's future was dropped. A result produced
/// after the future was dropped is handed to `abandon` (which gives back what was acquired).
pub(crate) async fn off_thread<R, A, F>(wait: Wait, mut attempt: A, abandon: F) -> Option<R>
where
    R: Send + 'static,
    A: FnMut(Wait) -> Option<R> + Send + 'static,
    F: FnOnce(R) + Send + 'static,
{
    if let Some(r) = attempt(Wait::No) {
        return Some(r);
    }
    if wait == Wait::No {
        return None;
    }
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    runtime::spawn_blocking(move || {
        let result = loop {
            if flag.load(Ordering::Relaxed) {
                break None;
            }
            if let Some(r) = attempt(wait.slice(SLICE)) {
                break Some(r);
            }
            if wait.passed() {
                break None;
            }
        };
        if let Err(Some(r)) = tx.send(result) {
            abandon(r);
        }
    });
    let _cancel_on_drop = CancelOnDrop(cancelled);
    rx.await.ok().flatten()
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
