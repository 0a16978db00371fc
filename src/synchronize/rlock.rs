//! [`RLock`]: a recursive lock shared between processes (Python's `multiprocessing.RLock`).
//!
//! State (24 bytes): a [`RobustMutex`] (the process that holds it, and the owner-died notice),
//! the owning thread's token and the recursion count. The owner is a process *and* a thread:
//! the pid is in the mutex word, the thread is a per-thread token from a counter (a
//! thread-local read, no system call). Only the owner reads or writes the count.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use procvisor_actors::shm::{RobustMutex, Segment, SharedState, my_pid};
use serde::{Deserialize, Serialize};

use super::guard::{Release, sealed};
use super::shared::Shared;
use super::wait::{Wait, off_thread};
use super::{Acquired, Guard};
use crate::error::{Error, Result};

/// The RLock's shared state.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RLockState {
    mutex: RobustMutex,
    /// The owning thread's token (0: none); meaningful with the pid in `mutex`.
    owner: AtomicU64,
    /// Recursion depth; only the owner touches it.
    count: AtomicU64,
}

// SAFETY: a RobustMutex and two atomics: any bit pattern is a state (zeroes: free).
unsafe impl SharedState for RLockState {}

/// Bytes an RLock's state takes in a segment.
pub(crate) const RLOCK_STATE: usize = std::mem::size_of::<RLockState>();

static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static TOKEN: Cell<u64> = const { Cell::new(0) };
}

/// This thread's token: unique among this process's threads, never 0.
#[inline]
pub(crate) fn thread_token() -> u64 {
    TOKEN.with(|t| match t.get() {
        0 => {
            let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
            t.set(token);
            token
        }
        token => token,
    })
}

/// A recursive lock shared between processes: a clone of Python's `multiprocessing.RLock`.
///
/// The thread that acquired it may acquire it again; it is free once released as many times.
/// Only that thread may release it ([`Error::NotOwner`] otherwise). If the owning process
/// dies, the next acquirer gets it with [`Acquired::OwnerDied`].
///
/// ```
/// let rlock = procvisor::RLock::new()?;
/// let outer = rlock.lock();
/// let inner = rlock.lock(); // the same thread: recursion
/// assert_eq!(rlock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert!(rlock.release().is_err()); // not held any more
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RLock {
    state: Shared<RLockState>,
}

/// The guard of an [`RLock`].
pub type RLockGuard<'a> = Guard<'a, RLock>;

impl RLock {
    /// A new, free RLock in a fresh shared segment.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`] if the OS refuses the shared memory.
    pub fn new() -> Result<RLock> {
        Ok(RLock {
            state: Shared::create(RLOCK_STATE)?,
        })
    }

    /// The RLock whose state is at `offset` of `segment`.
    pub(crate) fn at(segment: Segment, offset: usize) -> Result<RLock> {
        Ok(RLock {
            state: Shared::at(segment, offset)?,
        })
    }

    #[inline]
    fn mine(&self, token: u64) -> bool {
        self.state.mutex.holder() == Some(my_pid())
            && self.state.owner.load(Ordering::Relaxed) == token
    }

    /// Python's `acquire(block, timeout)`: `None` if not acquired without waiting
    /// (`block = false`) or within `timeout`. A thread that owns it acquires it again at once.
    #[inline]
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Option<Acquired> {
        let token = thread_token();
        if self.mine(token) {
            let count = &self.state.count;
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let acquired = match self.state.mutex.try_lock() {
            Some(a) => Acquired::from(a),
            None if !block => return None,
            None => self.acquire_wait(Wait::new(block, timeout))?,
        };
        self.take_ownership(token, 1);
        Some(acquired)
    }

    #[inline]
    fn take_ownership(&self, token: u64, count: u64) {
        self.state.owner.store(token, Ordering::Relaxed);
        self.state.count.store(count, Ordering::Relaxed);
    }

    #[cold]
    fn acquire_wait(&self, wait: Wait) -> Option<Acquired> {
        let state = &self.state;
        state
            .mutex
            .lock(state.segment(), state.offset(), wait.deadline())
            .map(Acquired::from)
    }

    /// Releases one level; the lock is free when every level is released.
    ///
    /// # Errors
    ///
    /// [`Error::ReleaseUnlocked`] if nobody holds it; [`Error::NotOwner`] if another thread
    /// (of this or another process) does.
    #[inline]
    pub fn release(&self) -> Result<()> {
        let token = thread_token();
        if !self.mine(token) {
            return Err(self.not_mine());
        }
        let count = &self.state.count;
        let c = count.load(Ordering::Relaxed);
        if c > 1 {
            count.store(c - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.give_up();
        Ok(())
    }

    #[inline]
    fn give_up(&self) {
        self.state.count.store(0, Ordering::Relaxed);
        self.state.owner.store(0, Ordering::Relaxed);
        // Ours (checked by the caller), so it is locked.
        let _ = self.state.mutex.unlock();
    }

    #[cold]
    fn not_mine(&self) -> Error {
        match self.state.mutex.holder() {
            None => Error::ReleaseUnlocked { what: "RLock" },
            Some(pid) if pid == my_pid() => Error::NotOwner {
                holder_kind: "thread",
                holder_pid: pid,
            },
            Some(pid) => Error::NotOwner {
                holder_kind: "process",
                holder_pid: pid,
            },
        }
    }

    /// Whether the calling thread owns the lock.
    pub fn is_mine(&self) -> bool {
        self.mine(thread_token())
    }

    /// The recursion depth when the calling thread owns it, 0 otherwise.
    pub fn count(&self) -> u64 {
        if self.is_mine() {
            self.state.count.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// The pid of the owning process, if it is held.
    pub fn holder(&self) -> Option<i32> {
        self.state.mutex.holder()
    }

    /// Releases every level held by the calling thread and returns how many (a condition's
    /// wait); `Err` if it does not own the lock.
    pub(crate) fn release_all(&self) -> Result<u64> {
        let token = thread_token();
        if !self.mine(token) {
            return Err(self.not_mine());
        }
        let levels = self.state.count.load(Ordering::Relaxed);
        self.give_up();
        Ok(levels)
    }

    /// Takes the lock back with `levels` levels (a condition's wait, after waking).
    pub(crate) fn acquire_levels(&self, levels: u64) -> Acquired {
        let acquired = match self.state.mutex.try_lock() {
            Some(a) => Acquired::from(a),
            None => self.acquire_wait(Wait::Forever).unwrap_or(Acquired::Clean),
        };
        self.take_ownership(thread_token(), levels.max(1));
        acquired
    }

    /// Takes the lock, waiting as long as it takes; the guard releases one level.
    pub fn lock(&self) -> RLockGuard<'_> {
        let acquired = self.acquire(true, None).unwrap_or(Acquired::Clean);
        Guard::new(self, acquired)
    }

    /// Takes the lock if that needs no waiting.
    pub fn try_lock(&self) -> Option<RLockGuard<'_>> {
        self.acquire(false, None).map(|a| Guard::new(self, a))
    }

    /// Takes the lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_>> {
        self.acquire(true, Some(timeout))
            .map(|a| Guard::new(self, a))
    }

    /// [`acquire`](Self::acquire) for async callers (any executor, inside a tokio runtime or
    /// not).
    ///
    /// An RLock belongs to a thread, and an async task may move between threads; so the async
    /// variant takes the lock for the *calling thread* only when that needs no waiting (a
    /// recursive acquire, or a free lock). Otherwise the wait happens on a blocking thread
    /// that takes the lock only once it is free, then hands it over to the polling thread.
    pub async fn acquire_async(&self, timeout: Option<Duration>) -> Option<Acquired> {
        if let Some(a) = self.acquire(false, None) {
            return Some(a);
        }
        // Wait for the mutex on a blocking thread; ownership moves to the polling thread
        // below (the token is the poller's, the pid is the same process).
        let me = self.clone();
        let again = self.clone();
        let acquired = off_thread(
            Wait::timeout(timeout),
            move |wait| match me.state.mutex.try_lock() {
                Some(a) => Some(Acquired::from(a)),
                None if wait == Wait::No => None,
                None => me.acquire_wait(wait),
            },
            move |_| {
                let _ = again.state.mutex.unlock();
            },
        )
        .await?;
        self.take_ownership(thread_token(), 1);
        Some(acquired)
    }
}

impl sealed::Sealed for RLock {}

impl Release for RLock {
    fn release_unit(&self) {
        let _ = self.release();
    }
}
