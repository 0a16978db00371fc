//! [`Lock`]: a non-recursive lock shared between processes (Python's `multiprocessing.Lock`).
//!
//! The state is one [`RobustMutex`] (8 bytes: holder pid | contended bit, and the last dead
//! holder's pid) in a shared segment, and a notice word. Taking a free lock is one
//! compare-and-swap, giving it back another; a contended acquirer sleeps on a futex after
//! asking its node's watch to watch the holder, which gives the lock back if the holder dies.
//! A `try_lock` that finds the lock held asks the same (and tries once more), so a dead
//! holder's lock also comes back to callers that never block.
//!
//! The notice word keeps an owner-died notice that an abandoned async acquire (its future was
//! dropped after the blocking pool took the lock) received, for the next acquirer.

use std::sync::atomic::{AtomicU32, Ordering};

use procvisor_actors::shm::{RobustMutex, SharedState};
use serde::{Deserialize, Serialize};

use super::Acquired;
use super::acquire::{Acquire, sealed};
use super::shared::Shared;
use super::wait::Wait;
use crate::error::{ReleaseError, SharedError};

/// A non-recursive lock shared between processes: a clone of Python's `multiprocessing.Lock`.
///
/// Its methods are those of [`Acquire`] (`use procvisor::Acquire`): [`lock`](Acquire::lock),
/// [`try_lock`](Acquire::try_lock), [`lock_timeout`](Acquire::lock_timeout),
/// [`lock_async`](Acquire::lock_async) and [`release`](Acquire::release).
///
/// Any thread of any process may release it (as in Python). If the process holding it dies,
/// the next acquirer gets it with [`Acquired::OwnerDied`] instead of waiting for ever.
///
/// Clone it, pass it in a child's arguments or send it through a [`Connection`](crate::Connection):
/// every copy is the same lock.
///
/// ```
/// use procvisor::{Acquire, Lock};
///
/// let lock = Lock::new()?;
/// {
///     let guard = lock.lock();
///     assert_eq!(guard.previous_owner_died(), None);
///     assert!(lock.try_lock().is_none()); // held: not recursive
/// }
/// assert!(lock.try_lock().is_some());
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Lock {
    state: Shared<LockState>,
}

/// A lock's shared state. The mutex comes first: the watch recovers it at the state's offset.
#[repr(C)]
#[derive(Debug)]
struct LockState {
    mutex: RobustMutex,
    /// The pid of a dead holder whose notice an abandoned acquire gave back (0: none).
    notice: AtomicU32,
}

// SAFETY: a RobustMutex and an atomic: any bit pattern is a state (zeroes: free, no notice).
unsafe impl SharedState for LockState {}

/// Takes the owner-died notice left in `notice` by an abandoned acquire, if there is one.
#[inline]
pub(crate) fn with_notice(acquired: Acquired, notice: &AtomicU32) -> Acquired {
    if acquired != Acquired::Clean || notice.load(Ordering::Relaxed) == 0 {
        return acquired;
    }
    take_notice(notice)
}

#[cold]
fn take_notice(notice: &AtomicU32) -> Acquired {
    match notice.swap(0, Ordering::Acquire) {
        0 => Acquired::Clean,
        pid => Acquired::OwnerDied { pid: pid as i32 },
    }
}

/// Keeps the notice of an abandoned acquire for the next acquirer (before the unlock).
pub(crate) fn keep_notice(acquired: Acquired, notice: &AtomicU32) {
    if let Acquired::OwnerDied { pid } = acquired {
        notice.store(pid as u32, Ordering::Release);
    }
}

impl Lock {
    /// A new, unlocked lock in a fresh shared segment.
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the shared memory.
    pub fn new() -> Result<Lock, SharedError> {
        Ok(Lock {
            state: Shared::create(std::mem::size_of::<LockState>())?,
        })
    }

    /// A non-blocking attempt that found the lock held: has the holder watched (recovered at
    /// once if it is dead) and tries again.
    #[cold]
    fn try_recovering(&self) -> Option<Acquired> {
        let state = &self.state;
        state
            .mutex
            .try_lock_recovering(state.segment(), state.offset())
            .map(Acquired::from)
    }

    #[cold]
    fn acquire_wait(&self, wait: Wait) -> Option<Acquired> {
        let state = &self.state;
        state
            .mutex
            .lock(state.segment(), state.offset(), wait.deadline())
            .map(Acquired::from)
    }

    /// The pid of the process holding the lock, if it is held.
    pub fn holder(&self) -> Option<i32> {
        self.state.mutex.holder()
    }

    /// Whether the lock is held by anyone (Python's `locked()`).
    #[doc(alias = "locked")]
    pub fn is_locked(&self) -> bool {
        self.state.mutex.is_locked()
    }

    /// Whether this process holds the lock (a lock has no thread owner).
    pub(crate) fn held_by_me(&self) -> bool {
        self.holder() == Some(procvisor_actors::shm::my_pid())
    }
}

impl sealed::Sealed for Lock {}

impl Acquire for Lock {
    #[inline]
    fn acquire_within(&self, wait: Wait) -> Option<Acquired> {
        let acquired = match self.state.mutex.try_lock() {
            Some(a) => a.into(),
            None if wait == Wait::No => self.try_recovering()?,
            None => self.acquire_wait(wait)?,
        };
        Some(with_notice(acquired, &self.state.notice))
    }

    fn abandon(&self, acquired: Acquired) {
        keep_notice(acquired, &self.state.notice);
        let _ = self.release();
    }

    /// Gives the lock back (any thread of any process may).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Unlocked`] if it was not locked.
    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        self.state
            .mutex
            .unlock()
            .map_err(|_| ReleaseError::Unlocked)
    }
}
