//! [`Event`]: a flag processes can wait for (Python's `multiprocessing.Event`).
//!
//! State: one 32-bit futex word, `generation << 1 | flag`, and a count of sleepers. `set`
//! raises the flag and bumps the generation, then wakes every sleeper if there are any;
//! `clear` lowers the flag only. A waiter sleeps while the word is unchanged; it returns `true`
//! when the flag is up *or* the generation moved (a `set` happened while it slept, even if a
//! `clear` followed, as in Python).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use procvisor_actors::shm::{SharedState, WaitOutcome, futex_wait, futex_wake};
use serde::{Deserialize, Serialize};

use super::shared::Shared;
use super::wait::{Wait, off_thread_forever};
use crate::error::SharedError;

const FLAG: u32 = 1;

#[repr(C)]
#[derive(Debug)]
struct EventState {
    word: AtomicU32,
    sleepers: AtomicU32,
}

// SAFETY: two atomics; any bit pattern is a state.
unsafe impl SharedState for EventState {}

/// A flag shared between processes: a clone of Python's `multiprocessing.Event`.
///
/// ```
/// use std::time::Duration;
/// let event = procvisor::Event::new()?;
/// assert!(!event.wait_timeout(Duration::from_millis(10))); // not set: times out
/// event.set();
/// event.wait(); // set: returns at once
/// assert!(event.is_set());
/// event.clear();
/// assert!(!event.is_set());
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    state: Shared<EventState>,
}

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the shared memory.
    pub fn new() -> Result<Event, SharedError> {
        Ok(Event {
            state: Shared::create(std::mem::size_of::<EventState>())?,
        })
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.state.word.load(Ordering::Acquire) & FLAG != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let st = &self.state;
        let mut w = st.word.load(Ordering::Relaxed);
        loop {
            if w & FLAG != 0 {
                return;
            }
            let new = (w | FLAG).wrapping_add(2);
            match st
                .word
                .compare_exchange_weak(w, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => w = actual,
            }
        }
        if st.sleepers.load(Ordering::SeqCst) > 0 {
            futex_wake(&st.word, u32::MAX);
        }
    }

    /// Lowers the flag.
    pub fn clear(&self) {
        self.state.word.fetch_and(!FLAG, Ordering::SeqCst);
    }

    /// Waits until the flag is set (at once if it is).
    pub fn wait(&self) {
        self.wait_until(Wait::Forever);
    }

    /// Waits until the flag is set, or until `timeout` passes: `true` if the flag was set
    /// (possibly cleared again since), `false` on timeout (Python's `wait(timeout)`).
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Wait::after(timeout))
    }

    fn wait_until(&self, wait: Wait) -> bool {
        self.wait_from(self.state.word.load(Ordering::Acquire), wait)
    }

    /// Waits until the word differs from `start` (a `set` happened since `start` was read)
    /// or the wait is over; `true` if the flag was set.
    fn wait_from(&self, start: u32, wait: Wait) -> bool {
        let st = &self.state;
        if start & FLAG != 0 {
            return true;
        }
        loop {
            st.sleepers.fetch_add(1, Ordering::SeqCst);
            let outcome = futex_wait(&st.word, start, wait.deadline());
            st.sleepers.fetch_sub(1, Ordering::SeqCst);
            let now = st.word.load(Ordering::Acquire);
            if now != start {
                // Only a `set` changes a word whose flag is down (it bumps the generation, so
                // a `clear` since cannot restore `start`).
                return true;
            }
            if outcome == WaitOutcome::TimedOut {
                return false;
            }
        }
    }

    /// [`wait`](Self::wait) for async callers, on any executor (inside a tokio runtime or
    /// not): the sleep happens on procvisor's node runtime's blocking pool. For a deadline,
    /// wrap it in `tokio::time::timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let event = procvisor::Event::new()?;
    /// let early = tokio::time::timeout(Duration::from_millis(10), event.wait_async()).await;
    /// assert!(early.is_err()); // not set in time
    /// event.set();
    /// event.wait_async().await;
    /// # Ok::<(), procvisor::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: waiting changes nothing, and dropping the future stops the wait.
    pub async fn wait_async(&self) {
        if self.is_set() {
            return;
        }
        let me = self.clone();
        let start = self.state.word.load(Ordering::Acquire);
        off_thread_forever(
            move |wait| {
                let now = me.state.word.load(Ordering::Acquire);
                if now & FLAG != 0 || now >> 1 != start >> 1 {
                    return Some(());
                }
                (wait != Wait::No && me.wait_from(start, wait)).then_some(())
            },
            |_| {},
        )
        .await
    }
}
