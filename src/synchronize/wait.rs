//! Timeouts as deadlines, and running a blocking wait for an async caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use procvisor_actors::runtime;

/// How long an operation may wait: the deadline the hidden raw acquire of
/// [`Acquire`](super::Acquire) takes. Public only so that the sealed trait can name it; it is
/// not reachable from outside the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Not at all (`try_*`).
    No,
    /// Until this instant.
    Until(Instant),
    /// For ever.
    Forever,
}

impl Wait {
    /// At most `timeout` from now; a timeout too large to represent waits for ever.
    pub(crate) fn after(timeout: Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until)
    }

    /// A timeout (`None`: for ever).
    pub(crate) fn timeout(timeout: Option<Duration>) -> Wait {
        timeout.map_or(Wait::Forever, Wait::after)
    }

    /// The futex deadline (`None`: no deadline). `Wait::No` is a deadline already past.
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        }
    }

    /// The earlier of this wait and `now + slice`: how an off-thread waiter bounds each sleep so
    /// it notices that its caller gave up.
    pub(crate) fn slice(self, slice: Duration) -> Wait {
        let capped = Instant::now() + slice;
        match self {
            Wait::No => Wait::No,
            Wait::Until(d) => Wait::Until(d.min(capped)),
            Wait::Forever => Wait::Until(capped),
        }
    }

    /// Whether the deadline has passed (`No`: at once).
    pub(crate) fn passed(self) -> bool {
        match self {
            Wait::No => true,
            Wait::Until(d) => Instant::now() >= d,
            Wait::Forever => false,
        }
    }
}

/// How long an off-thread waiter sleeps between checks that its future still exists.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

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
    match rx.await {
        Ok(result) => result,
        // The sender is only dropped unsent if `attempt` panicked on the blocking pool.
        Err(_) => panic!("procvisor: a blocking wait panicked on the node runtime's pool"),
    }
}

/// [`off_thread`] without a deadline: waits until `attempt` yields.
pub(crate) async fn off_thread_forever<R, A, F>(attempt: A, abandon: F) -> R
where
    R: Send + 'static,
    A: FnMut(Wait) -> Option<R> + Send + 'static,
    F: FnOnce(R) + Send + 'static,
{
    match off_thread(Wait::Forever, attempt, abandon).await {
        Some(r) => r,
        // The waiter gives up only when its deadline passes or its future is dropped; this
        // future is alive and there is no deadline.
        None => unreachable!("a wait without a deadline ended without a result"),
    }
}

/// Sets its flag when dropped: tells an off-thread waiter that its future is gone.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
