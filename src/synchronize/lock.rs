//! [`Lock`]: a non-recursive lock shared between processes (Python's `multiprocessing.Lock`).
//!
//! The state is one [`RobustMutex`] (8 bytes: holder pid | contended bit, and the last dead
//! holder's pid) in a shared segment. Taking a free lock is one compare-and-swap, giving it back
//! another; a contended acquirer sleeps on a futex after asking its node's watch to watch the
//! holder, which gives the lock back if the holder dies.

use std::time::Duration;

use procvisor_actors::shm::RobustMutex;
use serde::{Deserialize, Serialize};

use super::guard::{Release, sealed};
use super::shared::Shared;
use super::wait::{Wait, off_thread};
use super::{Acquired, Guard};
use crate::error::{Error, Result};

/// A non-recursive lock shared between processes: a clone of Python's `multiprocessing.Lock`.
///
/// Any thread of any process may release it (as in Python). If the process holding it dies,
/// the next acquirer gets it with [`Acquired::OwnerDied`] instead of waiting for ever.
///
/// Clone it, pass it in a child's arguments or send it through a [`Connection`](crate::Connection):
/// every copy is the same lock.
///
/// ```
/// let lock = procvisor::Lock::new()?;
/// {
///     let guard = lock.lock();
///     assert_eq!(guard.previous_owner_died(), None);
///     assert!(lock.acquire(false, None).is_none()); // held: not recursive
/// }
/// assert!(lock.acquire(false, None).is_some());
/// lock.release()?;
/// assert!(lock.release().is_err()); // unlocked
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lock {
    state: Shared<RobustMutex>,
}

/// The guard of a [`Lock`].
pub type LockGuard<'a> = Guard<'a, Lock>;

impl Lock {
    /// A new, unlocked lock in a fresh shared segment.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`] if the OS refuses the shared memory.
    pub fn new() -> Result<Lock> {
        Ok(Lock {
            state: Shared::create(std::mem::size_of::<RobustMutex>())?,
        })
    }

    /// Python's `acquire(block, timeout)`: `None` if the lock could not be taken without
    /// waiting (`block = false`) or within `timeout`; otherwise how it was acquired.
    #[inline]
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Option<Acquired> {
        if let Some(a) = self.state.try_lock() {
            return Some(a.into());
        }
        if !block {
            return None;
        }
        self.acquire_wait(Wait::new(block, timeout))
    }

    #[cold]
    pub(crate) fn acquire_wait(&self, wait: Wait) -> Option<Acquired> {
        let state = &self.state;
        state
            .lock(state.segment(), state.offset(), wait.deadline())
            .map(Acquired::from)
    }

    /// Gives the lock back (any thread of any process may).
    ///
    /// # Errors
    ///
    /// [`Error::ReleaseUnlocked`] if it was not locked.
    #[inline]
    pub fn release(&self) -> Result<()> {
        self.state
            .unlock()
            .map_err(|_| Error::ReleaseUnlocked { what: "Lock" })
    }

    /// Takes the lock, waiting as long as it takes; the guard releases it.
    pub fn lock(&self) -> LockGuard<'_> {
        let acquired = self.acquire_wait(Wait::Forever).unwrap_or(Acquired::Clean);
        Guard::new(self, acquired)
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<LockGuard<'_>> {
        self.acquire(false, None).map(|a| Guard::new(self, a))
    }

    /// Takes the lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        self.acquire(true, Some(timeout))
            .map(|a| Guard::new(self, a))
    }

    /// [`acquire`](Self::acquire) for async callers (any executor, inside a tokio runtime or
    /// not): the wait runs on procvisor's node runtime's blocking pool. Dropping the future
    /// gives up; a lock taken after that is released again.
    pub async fn acquire_async(&self, timeout: Option<Duration>) -> Option<Acquired> {
        let me = self.clone();
        let again = self.clone();
        off_thread(
            Wait::timeout(timeout),
            move |wait| me.acquire(wait != Wait::No, wait.remaining()),
            move |_| {
                let _ = again.release();
            },
        )
        .await
    }

    /// [`lock`](Self::lock) for async callers.
    pub async fn lock_async(&self) -> LockGuard<'_> {
        let acquired = self.acquire_async(None).await.unwrap_or(Acquired::Clean);
        Guard::new(self, acquired)
    }

    /// The pid of the process holding the lock, if it is held.
    pub fn holder(&self) -> Option<i32> {
        self.state.holder()
    }

    /// Whether the lock is held by anyone.
    pub fn is_locked(&self) -> bool {
        self.state.is_locked()
    }

    /// Whether this process holds the lock (a lock has no thread owner).
    pub(crate) fn held_by_me(&self) -> bool {
        self.holder() == Some(procvisor_actors::shm::my_pid())
    }
}

impl sealed::Sealed for Lock {}

impl Release for Lock {
    fn release_unit(&self) {
        let _ = self.release();
    }
}
