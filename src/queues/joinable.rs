//! [`JoinableQueue`]: a [`Queue`] whose consumers say when each item has been processed.
//!
//! The count of unfinished tasks is `items put − task_done calls`, both counters in the
//! queue's segment: the put side is the item sequence packed into the tail word (so an item
//! counts from the instant it is committed, never twice, whatever process dies when), and
//! `task_done` advances a `done` word with a compare-and-swap that refuses to pass the put
//! count. `join` sleeps on the `done` word (futex) and is woken by the `task_done` that brings
//! the count to zero.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use procvisor_actors::shm::{WaitOutcome, futex_wait, futex_wake};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::layout::{Cursor, SEQ_MASK};
use super::shared::ASYNC_SLICE;
use super::{Queue, debug_queue, open_shared};
use crate::error::QueueError;

/// A [`Queue`] with [`task_done`](Self::task_done) and [`join`](Self::join) (Python's
/// `multiprocessing.JoinableQueue`). Every `Queue` method is available through `Deref`.
///
/// ```
/// use procvisor::{JoinableQueue, error::QueueError};
///
/// let q = JoinableQueue::<u32>::new()?;
/// q.put(&7)?;
/// let task = q.get()?;
/// assert_eq!(task, 7);
/// assert_eq!(q.unfinished_tasks(), 1);
/// q.task_done()?;
/// q.join(); // every item put has been marked done
/// assert!(matches!(q.task_done(), Err(QueueError::TaskDoneTooMany)));
/// # Ok::<(), procvisor::Error>(())
/// ```
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> JoinableQueue<T> {
    /// An unbounded joinable queue (Python's `JoinableQueue()`).
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new() -> Result<JoinableQueue<T>, QueueError> {
        super::QueueBuilder::default().build_joinable()
    }

    /// A joinable queue holding at most `max_len` items (Python's `JoinableQueue(maxsize)`).
    ///
    /// # Errors
    /// As [`Queue::bounded`].
    #[doc(alias = "maxsize")]
    pub fn bounded(max_len: usize) -> Result<JoinableQueue<T>, QueueError> {
        super::QueueBuilder::default()
            .max_len(max_len)
            .build_joinable()
    }

    pub(super) fn from_queue(queue: Queue<T>) -> JoinableQueue<T> {
        JoinableQueue { queue }
    }

    /// Items put and not yet marked done with [`task_done`](Self::task_done) (approximate
    /// while others work; Python's `_unfinished_tasks`).
    #[doc(alias = "_unfinished_tasks")]
    pub fn unfinished_tasks(&self) -> usize {
        let w = self.queue.shared.ring.words();
        let puts = Cursor::unpack(w.tail.load(SeqCst)).seq;
        (puts.wrapping_sub(w.done.load(SeqCst)) & SEQ_MASK) as usize
    }

    /// Says that an item taken from the queue has been processed. When every item put has been
    /// marked done, [`join`](Self::join) returns in every process.
    ///
    /// # Errors
    /// [`QueueError::TaskDoneTooMany`] if called more times than items were put (the count
    /// is left as it was).
    pub fn task_done(&self) -> Result<(), QueueError> {
        let w = self.queue.shared.ring.words();
        let mut done = w.done.load(SeqCst);
        loop {
            let puts = Cursor::unpack(w.tail.load(SeqCst)).seq;
            if puts.wrapping_sub(done) & SEQ_MASK == 0 {
                return Err(QueueError::TaskDoneTooMany);
            }
            let next = done.wrapping_add(1) & SEQ_MASK;
            match w.done.compare_exchange(done, next, SeqCst, SeqCst) {
                Ok(_) => {
                    if puts == next && w.join_waiters.load(SeqCst) > 0 {
                        futex_wake(w.done, u32::MAX);
                    }
                    return Ok(());
                }
                Err(actual) => done = actual,
            }
        }
    }

    /// Waits until every item put has been marked done with [`task_done`](Self::task_done),
    /// in any process (this process's own items still in its feeder included).
    pub fn join(&self) {
        self.join_until(None);
    }

    /// [`join`](Self::join) for at most `timeout`: `true` if every item was done in time,
    /// `false` if some were still unfinished when `timeout` passed.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.join_until(Instant::now().checked_add(timeout))
    }

    /// [`join`](Self::join) for async callers (any executor, inside a tokio runtime or not):
    /// the wait runs in slices on procvisor's node runtime's blocking pool, so no executor
    /// thread blocks. For a deadline, wrap it in `tokio::time::timeout`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    ///
    /// let q = procvisor::JoinableQueue::<u32>::new()?;
    /// q.put(&1)?;
    /// // One task unfinished: the join is still waiting when the timeout ends it.
    /// assert!(tokio::time::timeout(Duration::from_millis(10), q.join_async()).await.is_err());
    /// q.get()?;
    /// q.task_done()?;
    /// q.join_async().await;
    /// # Ok::<(), procvisor::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    /// Cancel safe: it only waits, so dropping the future changes nothing.
    pub async fn join_async(&self)
    where
        T: 'static,
    {
        loop {
            let me = self.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            procvisor_actors::runtime::spawn_blocking(move || {
                let _ = tx.send(me.join_until(Instant::now().checked_add(ASYNC_SLICE)));
            });
            if rx.await.unwrap_or(false) {
                return;
            }
        }
    }

    fn join_until(&self, deadline: Option<Instant>) -> bool {
        if !self.queue.shared.local.wait_drained(deadline) {
            return false;
        }
        let w = self.queue.shared.ring.words();
        loop {
            if self.unfinished_tasks() == 0 {
                return true;
            }
            w.join_waiters.fetch_add(1, SeqCst);
            let seen = w.done.load(SeqCst);
            let outcome = if self.unfinished_tasks() == 0 {
                WaitOutcome::Changed
            } else {
                futex_wait(w.done, seen, deadline)
            };
            w.join_waiters.fetch_sub(1, SeqCst);
            if outcome == WaitOutcome::TimedOut {
                return self.unfinished_tasks() == 0;
            }
        }
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_queue(f, "JoinableQueue", &self.queue.shared)
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        open_shared(deserializer, true).map(|shared| JoinableQueue {
            queue: Queue::from_shared(shared),
        })
    }
}
