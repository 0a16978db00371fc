//! One-shot replies that both blocking and async callers can wait for.
//!
//! Actors answer requests through a [`Reply`]; the caller holds the matching [`Pending`] and
//! either blocks on it ([`Pending::wait`], usable from any thread, inside or outside a tokio
//! runtime, and even from an `atexit` handler because it touches no thread-local storage) or
//! awaits it ([`Pending::wait_async`]).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::sync_util::lock;

struct Shared<T> {
    value: Mutex<Slot<T>>,
    ready: Condvar,
    notify: Notify,
}

enum Slot<T> {
    Empty,
    Filled(T),
    Taken,
    Dropped,
}

/// The sending half: answer exactly once with [`Reply::send`]. Dropping it unanswered wakes
/// the waiter with `None`.
pub struct Reply<T> {
    shared: Option<Arc<Shared<T>>>,
}

/// The receiving half of a [`Reply`].
pub struct Pending<T> {
    shared: Arc<Shared<T>>,
}

/// Creates a connected [`Reply`] / [`Pending`] pair.
///
/// ```
/// let (reply, pending) = procvisor_actors::reply::channel();
/// std::thread::spawn(move || reply.send(42));
/// assert_eq!(pending.wait(), Some(42));
/// ```
pub fn channel<T>() -> (Reply<T>, Pending<T>) {
    let shared = Arc::new(Shared {
        value: Mutex::new(Slot::Empty),
        ready: Condvar::new(),
        notify: Notify::new(),
    });
    (
        Reply {
            shared: Some(shared.clone()),
        },
        Pending { shared },
    )
}

impl<T> Reply<T> {
    /// Delivers the answer and wakes the waiter.
    pub fn send(mut self, value: T) {
        if let Some(shared) = self.shared.take() {
            Self::fill(&shared, Slot::Filled(value));
        }
    }

    fn fill(shared: &Shared<T>, slot: Slot<T>) {
        *lock(&shared.value) = slot;
        shared.ready.notify_all();
        shared.notify.notify_one();
    }
}

impl<T> Drop for Reply<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            Self::fill(&shared, Slot::Dropped);
        }
    }
}

impl<T> Pending<T> {
    /// Blocks until the answer arrives; `None` if the replier went away without answering.
    pub fn wait(self) -> Option<T> {
        self.wait_deadline(None).ok().flatten()
    }

    /// Blocks for at most `timeout`; `Err(self)` on timeout so the caller may wait again.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Option<T>, Self> {
        self.wait_deadline(Some(Instant::now() + timeout))
    }

    fn wait_deadline(self, deadline: Option<Instant>) -> Result<Option<T>, Self> {
        let slot = lock(&self.shared.value);
        match wait_for(&self.shared.ready, slot, deadline, take) {
            Some(answer) => Ok(answer),
            None => Err(self),
        }
    }

    /// Waits asynchronously; works on any tokio runtime.
    pub async fn wait_async(self) -> Option<T> {
        loop {
            let notified = self.shared.notify.notified();
            if let Some(answer) = take(&mut lock(&self.shared.value)) {
                return answer;
            }
            notified.await;
        }
    }
}

/// `Some(answer)` once the slot is decided (answer is `None` if the replier was dropped).
fn take<T>(slot: &mut Slot<T>) -> Option<Option<T>> {
    match std::mem::replace(slot, Slot::Taken) {
        Slot::Empty => {
            *slot = Slot::Empty;
            None
        }
        Slot::Filled(v) => Some(Some(v)),
        Slot::Dropped | Slot::Taken => Some(None),
    }
}

/// Waits on `cond` (with `guard` held between looks) until `ready` finds what it waits for in
/// the guarded state, or `deadline` passes (`None`): the one condvar-with-deadline loop of the
/// crates. A poisoned lock is used as it is (see [`lock`] for why that is sound).
pub fn wait_for<T, R>(
    cond: &Condvar,
    mut guard: std::sync::MutexGuard<'_, T>,
    deadline: Option<Instant>,
    mut ready: impl FnMut(&mut T) -> Option<R>,
) -> Option<R> {
    loop {
        if let Some(found) = ready(&mut guard) {
            return Some(found);
        }
        guard = match deadline {
            None => cond.wait(guard).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                cond.wait_timeout(guard, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
}
