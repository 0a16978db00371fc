//! [`Condition`]: a condition variable shared between processes (Python's
//! `multiprocessing.Condition`).
//!
//! State: the lock (a given [`Lock`]/[`RLock`], or its own RLock in the first 64 bytes of the
//! condition's segment), then a ticket counter and a table of 128 waiter slots. A slot is one
//! 32-bit futex word, `pid << 2 | state` (`FREE`, `WAITING`, `NOTIFIED`), and a ticket.
//!
//! * `wait`: with the lock held, take a free slot (`WAITING`, next ticket), release the lock,
//!   sleep on the slot's own word until it is `NOTIFIED` or the deadline passes (then withdraw
//!   with a compare-and-swap `WAITING → FREE`; losing that race means it was notified), free
//!   the slot, take the lock back.
//! * `notify(n)`: with the lock held, mark the `n` oldest `WAITING` slots `NOTIFIED` and wake
//!   each; and ask the node's watch to watch each notified process. If it died before
//!   consuming its notification, the watch frees its slots and passes the notification on to
//!   the oldest waiter left, so a dead waiter never swallows a notify.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use procvisor_actors::shm::{Segment, SharedState, futex_wait, futex_wake, my_pid, watch};
use serde::{Deserialize, Serialize};

use super::guard::{Release, sealed};
use super::rlock::RLOCK_STATE;
use super::shared::Shared;
use super::wait::Wait;
use super::{Acquired, Guard, Lock, RLock};
use crate::error::{Error, Result};

/// Waiters one condition can have at once.
pub const MAX_WAITERS: usize = 128;
/// Where the condition's state starts in a segment that also holds its own RLock.
const STATE_OFFSET: usize = 64;

const FREE: u32 = 0;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;
const STATE_MASK: u32 = 3;
/// Polls of its slot a woken-up waiter's peer is likely to answer within (ping-pong latency).
const SPINS: u32 = 200;

#[repr(C)]
#[derive(Debug)]
struct Slot {
    word: AtomicU32,
    ticket: AtomicU32,
}

#[repr(C)]
#[derive(Debug)]
struct CondState {
    next_ticket: AtomicU32,
    _reserved: AtomicU32,
    slots: [Slot; MAX_WAITERS],
}

// SAFETY: atomics only; any bit pattern is a state (a slot with an unknown pid is recovered
// when that pid is found dead, or withdrawn by its waiter).
unsafe impl SharedState for Slot {}
// SAFETY: as above.
unsafe impl SharedState for CondState {}

/// A [`Lock`] or an [`RLock`]: the lock a [`Condition`] uses, or that synchronizes a shared
/// [`Value`](crate::Value) / [`Array`](crate::Array) (Python accepts either).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AnyLock {
    /// A non-recursive lock; "held" means held by this process.
    Lock(Lock),
    /// A recursive lock; "held" means held by this thread. `wait` releases every level and
    /// restores them.
    RLock(RLock),
}

impl From<Lock> for AnyLock {
    fn from(l: Lock) -> Self {
        AnyLock::Lock(l)
    }
}

impl From<RLock> for AnyLock {
    fn from(l: RLock) -> Self {
        AnyLock::RLock(l)
    }
}

impl AnyLock {
    /// As the lock's `acquire`.
    #[inline]
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Option<Acquired> {
        match self {
            AnyLock::Lock(l) => l.acquire(block, timeout),
            AnyLock::RLock(l) => l.acquire(block, timeout),
        }
    }

    /// As the lock's `release`.
    ///
    /// # Errors
    ///
    /// As [`Lock::release`] / [`RLock::release`].
    #[inline]
    pub fn release(&self) -> Result<()> {
        match self {
            AnyLock::Lock(l) => l.release(),
            AnyLock::RLock(l) => l.release(),
        }
    }

    /// Whether the caller holds it: this process for a [`Lock`], this thread for an [`RLock`].
    pub fn held(&self) -> bool {
        match self {
            AnyLock::Lock(l) => l.held_by_me(),
            AnyLock::RLock(l) => l.is_mine(),
        }
    }

    /// Releases completely; what to restore.
    fn release_all(&self) -> Result<u64> {
        match self {
            AnyLock::Lock(l) => l.release().map(|_| 1),
            AnyLock::RLock(l) => l.release_all(),
        }
    }

    fn restore(&self, levels: u64) -> Acquired {
        match self {
            AnyLock::Lock(l) => l.acquire_wait(Wait::Forever).unwrap_or(Acquired::Clean),
            AnyLock::RLock(l) => l.acquire_levels(levels),
        }
    }
}

/// A condition variable shared between processes: a clone of Python's
/// `multiprocessing.Condition`.
///
/// ```
/// let cond = procvisor::Condition::new()?; // with its own RLock, as in Python
/// let guard = cond.lock();
/// assert!(!guard.wait(Some(std::time::Duration::from_millis(10)))?); // nobody notifies
/// guard.notify_all()?; // nobody waits: fine
/// drop(guard);
/// assert!(cond.notify(1).is_err()); // not holding the lock
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Condition {
    lock: AnyLock,
    state: Shared<CondState>,
}

/// The guard of a [`Condition`]: holds its lock, and waits and notifies through it.
pub type ConditionGuard<'a> = Guard<'a, Condition>;

impl Condition {
    /// A condition with its own RLock (like Python's `Condition()`).
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`] if the OS refuses the shared memory.
    pub fn new() -> Result<Condition> {
        const { assert!(RLOCK_STATE <= STATE_OFFSET) };
        let segment = Segment::create(STATE_OFFSET + std::mem::size_of::<CondState>())
            .map_err(Error::shared_memory)?;
        let lock = AnyLock::RLock(RLock::at(segment.clone(), 0)?);
        Ok(Condition {
            lock,
            state: Shared::at(segment, STATE_OFFSET)?,
        })
    }

    /// A condition using `lock` (a [`Lock`] or an [`RLock`]), like Python's `Condition(lock)`.
    ///
    /// # Errors
    ///
    /// [`Error::SharedMemory`] if the OS refuses the shared memory.
    pub fn with_lock(lock: impl Into<AnyLock>) -> Result<Condition> {
        Ok(Condition {
            lock: lock.into(),
            state: Shared::create(std::mem::size_of::<CondState>())?,
        })
    }

    /// The lock this condition uses.
    pub fn get_lock(&self) -> &AnyLock {
        &self.lock
    }

    /// Acquires the condition's lock (as its `acquire`).
    #[inline]
    pub fn acquire(&self, block: bool, timeout: Option<Duration>) -> Option<Acquired> {
        self.lock.acquire(block, timeout)
    }

    /// Releases the condition's lock (as its `release`).
    ///
    /// # Errors
    ///
    /// As the lock's `release`.
    #[inline]
    pub fn release(&self) -> Result<()> {
        self.lock.release()
    }

    /// Takes the lock; the guard releases it, and waits and notifies.
    pub fn lock(&self) -> ConditionGuard<'_> {
        let acquired = self.acquire(true, None).unwrap_or(Acquired::Clean);
        Guard::new(self, acquired)
    }

    /// Takes the lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<ConditionGuard<'_>> {
        self.acquire(true, Some(timeout))
            .map(|a| Guard::new(self, a))
    }

    /// Releases the lock, sleeps until notified or until `timeout` passes (`None`: no limit),
    /// takes the lock back. `true` if notified, `false` on timeout.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if the caller does not hold the lock; [`Error::TooManyWaiters`] if
    /// [`MAX_WAITERS`] threads already wait.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let (slot, levels) = self.start_waiting()?;
        let notified = self.sleep(slot, Wait::timeout(timeout));
        self.lock.restore(levels);
        Ok(notified)
    }

    /// Takes a free slot as the newest waiter (the lock is held: no notify runs meanwhile).
    /// The first steps of a wait: check that the caller holds the lock, take a waiter slot,
    /// then release the lock entirely (all of an RLock's levels, returned for the restore).
    fn start_waiting(&self) -> Result<(&Slot, u64)> {
        if !self.lock.held() {
            return Err(Error::NotHeld {
                operation: "wait on",
            });
        }
        let slot = self.enqueue()?;
        match self.lock.release_all() {
            Ok(levels) => Ok((slot, levels)),
            Err(e) => {
                slot.word.store(FREE, Ordering::Release);
                Err(e)
            }
        }
    }

    fn enqueue(&self) -> Result<&Slot> {
        let me = (my_pid() as u32) << 2;
        let st = &self.state;
        for slot in &st.slots {
            if slot
                .word
                .compare_exchange(FREE, me | WAITING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let ticket = st.next_ticket.fetch_add(1, Ordering::Relaxed);
                slot.ticket.store(ticket, Ordering::Release);
                return Ok(slot);
            }
        }
        Err(Error::TooManyWaiters { max: MAX_WAITERS })
    }

    /// Sleeps on `slot` until notified (`true`) or the wait is over (`false`); frees the slot.
    fn sleep(&self, slot: &Slot, wait: Wait) -> bool {
        let waiting = ((my_pid() as u32) << 2) | WAITING;
        for _ in 0..SPINS {
            if slot.word.load(Ordering::Acquire) != waiting {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            let w = slot.word.load(Ordering::Acquire);
            if w != waiting {
                // NOTIFIED (only a notifier or the watch changes a waiting slot).
                slot.word.store(FREE, Ordering::Release);
                return true;
            }
            let deadline = wait.deadline();
            let timed_out = futex_wait(&slot.word, waiting, deadline)
                == procvisor_actors::shm::WaitOutcome::TimedOut
                || deadline.is_some_and(|d| Instant::now() >= d);
            if timed_out {
                return match slot.word.compare_exchange(
                    waiting,
                    FREE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => false,
                    Err(_) => {
                        slot.word.store(FREE, Ordering::Release);
                        true
                    }
                };
            }
        }
    }

    /// Python's `wait_for(predicate, timeout)`: waits until `predicate()` is true or `timeout`
    /// has passed in all; returns the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let wait = Wait::timeout(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = wait.remaining();
            if left.is_some_and(|l| l.is_zero()) {
                return Ok(false);
            }
            self.wait(left)?;
        }
    }

    /// Wakes up to `n` waiters (the longest-waiting first).
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if the caller does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.held() {
            return Err(Error::NotHeld {
                operation: "notify",
            });
        }
        for _ in 0..n {
            if !self.notify_oldest() {
                break;
            }
        }
        Ok(())
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] if the caller does not hold the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    /// Marks the oldest waiting slot notified and wakes it; `false` if nobody waits.
    fn notify_oldest(&self) -> bool {
        let st = &self.state;
        loop {
            let next = st.next_ticket.load(Ordering::Relaxed);
            let oldest = st
                .slots
                .iter()
                .filter_map(|s| {
                    let w = s.word.load(Ordering::Acquire);
                    (w & STATE_MASK == WAITING).then(|| {
                        let age = next.wrapping_sub(s.ticket.load(Ordering::Relaxed));
                        (age, w, s)
                    })
                })
                .max_by_key(|&(age, _, _)| age);
            let Some((_, w, slot)) = oldest else {
                return false;
            };
            let notified = (w & !STATE_MASK) | NOTIFIED;
            if slot
                .word
                .compare_exchange(w, notified, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                futex_wake(&slot.word, 1);
                self.watch_waiter((w >> 2) as i32);
                return true;
            }
            // The waiter withdrew (timed out) or was recovered meanwhile: pick again.
        }
    }

    fn watch_waiter(&self, pid: i32) {
        watch::on_death(pid, self.state.segment(), self.state.offset(), || {
            let me = self.clone();
            Arc::new(move |dead| me.recover(dead))
        });
    }

    /// The watch's recovery: frees `dead`'s slots; a notification it had not consumed goes to
    /// the oldest waiter left.
    fn recover(&self, dead: i32) {
        for slot in &self.state.slots {
            let w = slot.word.load(Ordering::Acquire);
            if w == FREE || w >> 2 != dead as u32 {
                continue;
            }
            if slot
                .word
                .compare_exchange(w, FREE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
                && w & STATE_MASK == NOTIFIED
            {
                tracing::debug!(pid = dead, "a notified waiter died: notifying the next one");
                self.notify_oldest();
            }
        }
    }

    /// Processes (or threads) waiting now.
    pub fn n_waiting(&self) -> usize {
        self.state
            .slots
            .iter()
            .filter(|s| s.word.load(Ordering::Relaxed) & STATE_MASK == WAITING)
            .count()
    }

    /// [`wait`](Self::wait) for async callers (any executor, inside a tokio runtime or not):
    /// the lock is released at once, the sleep happens on the node runtime's blocking pool, and
    /// the future resolves once the lock is held again — by the thread that polls it (an
    /// RLock's recursion levels are restored there).
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_async(&self, timeout: Option<Duration>) -> Result<bool> {
        let (slot, levels) = self.start_waiting()?;
        let index = self
            .state
            .slots
            .iter()
            .position(|s| std::ptr::eq(s, slot))
            .unwrap_or(0);
        let me = self.clone();
        let wait = Wait::timeout(timeout);
        let handle = procvisor_actors::runtime::spawn_blocking(move || me.sleep_as(index, wait));
        let notified = handle.await.unwrap_or(false);
        let lock = self.lock.clone();
        // Take the lock back for the polling thread (an RLock's owner is a thread).
        let _ = match &lock {
            AnyLock::Lock(l) => l.acquire_async(None).await,
            AnyLock::RLock(l) => {
                let a = l.acquire_async(None).await;
                if let Some(extra) = levels.checked_sub(1) {
                    for _ in 0..extra {
                        let _ = l.acquire(false, None);
                    }
                }
                a
            }
        };
        Ok(notified)
    }

    /// [`sleep`](Self::sleep) on the slot at `index` from a thread that did not enqueue it:
    /// the slot word holds this process's pid, so it is the same word.
    fn sleep_as(&self, index: usize, wait: Wait) -> bool {
        self.sleep(&self.state.slots[index], wait)
    }
}

impl<'a> Guard<'a, Condition> {
    /// As [`Condition::wait`] (the guard's lock is released while waiting and held again
    /// after).
    ///
    /// # Errors
    ///
    /// As [`Condition::wait`].
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        self.primitive.wait(timeout)
    }

    /// As [`Condition::wait_for`].
    ///
    /// # Errors
    ///
    /// As [`Condition::wait`].
    pub fn wait_for(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        self.primitive.wait_for(predicate, timeout)
    }

    /// As [`Condition::notify`].
    ///
    /// # Errors
    ///
    /// As [`Condition::notify`].
    pub fn notify(&self, n: usize) -> Result<()> {
        self.primitive.notify(n)
    }

    /// As [`Condition::notify_all`].
    ///
    /// # Errors
    ///
    /// As [`Condition::notify_all`].
    pub fn notify_all(&self) -> Result<()> {
        self.primitive.notify_all()
    }
}

impl sealed::Sealed for Condition {}

impl Release for Condition {
    fn release_unit(&self) {
        let _ = self.release();
    }
}
