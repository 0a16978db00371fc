//! [`RLock`]: a recursive lock shared between processes (Python's `multiprocessing.RLock`).
//!
//! State (32 bytes): a [`RobustMutex`] (the process that holds it, and the owner-died notice),
//! the owning thread's token, the recursion count, and the notice an abandoned async acquire
//! kept for the next acquirer (as a [`Lock`](super::Lock)'s). The owner is a process *and* a thread:
//! the pid is in the mutex word, the thread is a per-thread token from a counter (a
//! thread-local read, no system call). Only the owner reads or writes the count.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use procvisor_actors::shm::{RobustMutex, Segment, SharedState, my_pid};
use serde::{Deserialize, Serialize};

use super::Acquired;
use super::acquire::{Acquire, sealed};
use super::lock::{keep_notice, with_notice};
use super::shared::Shared;
use super::wait::{Wait, off_thread_forever};
use crate::error::{Holder, ReleaseError, SharedError};

/// The RLock's shared state.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RLockState {
    mutex: RobustMutex,
    /// The owning thread's token (0: none); meaningful with the pid in `mutex`.
    owner: AtomicU64,
    /// Recursion depth; only the owner touches it.
    count: AtomicU64,
    /// The pid of a dead holder whose notice an abandoned acquire gave back (0: none).
    notice: AtomicU32,
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
/// Its methods are those of [`Acquire`] (`use procvisor::Acquire`): [`lock`](Acquire::lock),
/// [`try_lock`](Acquire::try_lock), [`lock_timeout`](Acquire::lock_timeout),
/// [`lock_async`](Acquire::lock_async) and [`release`](Acquire::release).
///
/// The thread that acquired it may acquire it again; it is free once released as many times.
/// Only that thread may release it ([`ReleaseError::NotOwner`] otherwise). If the owning
/// process dies, the next acquirer gets it with [`Acquired::OwnerDied`].
///
/// ```
/// use procvisor::{Acquire, RLock};
///
/// let rlock = RLock::new()?;
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

impl RLock {
    /// A new, free RLock in a fresh shared segment.
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the shared memory.
    pub fn new() -> Result<RLock, SharedError> {
        Ok(RLock {
            state: Shared::create(RLOCK_STATE)?,
        })
    }

    /// The RLock whose state is at `offset` of `segment`.
    pub(crate) fn at(segment: Segment, offset: usize) -> Result<RLock, SharedError> {
        Ok(RLock {
            state: Shared::at(segment, offset)?,
        })
    }

    #[inline]
    fn mine(&self, token: u64) -> bool {
        self.state.mutex.holder() == Some(my_pid())
            && self.state.owner.load(Ordering::Relaxed) == token
    }

    #[inline]
    fn take_ownership(&self, token: u64, count: u64) {
        self.state.owner.store(token, Ordering::Relaxed);
        self.state.count.store(count, Ordering::Relaxed);
    }

    /// Takes the mutex (not the thread ownership), waiting as `wait` says.
    #[inline]
    fn mutex_within(&self, wait: Wait) -> Option<Acquired> {
        let acquired = match self.state.mutex.try_lock() {
            Some(a) => a.into(),
            None if wait == Wait::No => self.try_recovering()?,
            None => self.acquire_wait(wait)?,
        };
        Some(with_notice(acquired, &self.state.notice))
    }

    /// A non-blocking attempt that found the mutex held: has the holder watched (recovered
    /// at once if it is dead) and tries again.
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

    #[inline]
    fn give_up(&self) {
        self.state.count.store(0, Ordering::Relaxed);
        self.state.owner.store(0, Ordering::Relaxed);
        // Ours (checked by the caller), so it is locked.
        let _ = self.state.mutex.unlock();
    }

    #[cold]
    fn not_mine(&self) -> ReleaseError {
        match self.state.mutex.holder() {
            None => ReleaseError::Unlocked,
            Some(pid) if pid == my_pid() => ReleaseError::NotOwner {
                holder: Holder::Thread,
                holder_pid: pid,
            },
            Some(pid) => ReleaseError::NotOwner {
                holder: Holder::Process,
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
    pub(crate) fn release_all(&self) -> Result<u64, ReleaseError> {
        let token = thread_token();
        if !self.mine(token) {
            return Err(self.not_mine());
        }
        let levels = self.state.count.load(Ordering::Relaxed);
        self.give_up();
        Ok(levels)
    }

    /// Takes the lock back with `levels` levels for the calling thread (a condition's wait,
    /// after waking).
    pub(crate) fn acquire_levels(&self, levels: u64) -> Acquired {
        let acquired = self.mutex_within(Wait::Forever).unwrap_or(Acquired::Clean);
        self.take_ownership(thread_token(), levels.max(1));
        acquired
    }

    /// [`acquire_levels`](Self::acquire_levels) for an async caller: the mutex is waited for
    /// on the blocking pool, the levels belong to the thread that polls the future.
    pub(crate) async fn acquire_levels_async(&self, levels: u64) -> Acquired {
        let acquired = self.mutex_detached().await;
        self.take_ownership(thread_token(), levels.max(1));
        acquired
    }

    /// Waits for the mutex on the blocking pool (after one attempt here); the ownership is
    /// the caller's to take on the polling thread. A mutex taken after the future was
    /// dropped is unlocked again (keeping its owner-died notice for the next acquirer).
    async fn mutex_detached(&self) -> Acquired {
        let me = self.clone();
        let again = self.clone();
        off_thread_forever(
            move |wait| me.mutex_within(wait),
            move |acquired| {
                keep_notice(acquired, &again.state.notice);
                let _ = again.state.mutex.unlock();
            },
        )
        .await
    }
}

impl sealed::Sealed for RLock {}

impl Acquire for RLock {
    /// A thread that owns the lock acquires it again at once (one more level).
    #[inline]
    fn acquire_within(&self, wait: Wait) -> Option<Acquired> {
        let token = thread_token();
        if self.mine(token) {
            let count = &self.state.count;
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let acquired = self.mutex_within(wait)?;
        self.take_ownership(token, 1);
        Some(acquired)
    }

    /// Called on the thread that took the lock (it owns it).
    fn abandon(&self, acquired: Acquired) {
        keep_notice(acquired, &self.state.notice);
        let _ = self.release();
    }

    /// An RLock belongs to a thread, and an async task may move between threads; so the
    /// lock is taken for the *calling thread* only when that needs no waiting (a recursive
    /// acquire, or a free lock). Otherwise a blocking thread waits for the mutex alone and
    /// hands it over: the thread that polls the future when it resolves becomes the owner.
    async fn acquire_detached(&self) -> Acquired {
        if let Some(acquired) = self.acquire_within(Wait::No) {
            return acquired;
        }
        let acquired = self.mutex_detached().await;
        self.take_ownership(thread_token(), 1);
        acquired
    }

    /// Releases one level; the lock is free when every level is released.
    ///
    /// # Errors
    ///
    /// [`ReleaseError::Unlocked`] if nobody holds it; [`ReleaseError::NotOwner`] if another
    /// thread (of this or another process) does.
    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
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
}
