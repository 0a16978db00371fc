//! [`Condition`]: a condition variable shared between processes (Python's
//! `multiprocessing.Condition`).
//!
//! State: the lock (a given [`Lock`]/[`RLock`], or its own RLock in the first 64 bytes of the
//! condition's segment), then a ticket counter and a table of 128 waiter slots. A slot is one
//! 32-bit futex word, `pid << 2 | state` (`FREE`, `WAITING`, `NOTIFIED`), and a ticket.
//!
//! * `wait`: with the lock held, take a free slot (`WAITING`, next ticket), release the lock,
//!   sleep on the slot's own word until it is `NOTIFIED` or the deadline passes (then withdraw
//!   with a compare-and-swap `WAITING → FREE`; losing that race means it was notified), take
//!   the lock back, and only then free a `NOTIFIED` slot: the notification is consumed once
//!   its waiter holds the lock again. An async wait whose future is dropped before it resolves
//!   withdraws the same way and takes the lock back; a notification that had reached it goes
//!   to the oldest waiter left (its caller never saw it).
//! * `notify(n)`: with the lock held, mark the `n` oldest `WAITING` slots `NOTIFIED` and wake
//!   each; and ask the node's watch to watch each notified process. If it died before
//!   consuming its notification (asleep, or blocked taking the lock back), the watch frees its
//!   slots and passes the notification on to the oldest waiter left, so a dead waiter never
//!   swallows a notify.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use procvisor_actors::shm::{Segment, SharedState, futex_wait, futex_wake, my_pid, watch};
use serde::{Deserialize, Serialize};

use super::acquire::{Acquire, sealed};
use super::rlock::RLOCK_STATE;
use super::shared::Shared;
use super::wait::{SLICE, Wait};
use super::{Acquired, Lock, RLock};
use crate::error::{ConditionError, ConditionOp, ReleaseError, SharedError};

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
///
/// Its methods are those of [`Acquire`] (`use procvisor::Acquire`), which it forwards to the
/// lock it holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AnyLock {
    /// A non-recursive lock; "held" means held by this process.
    Lock(Lock),
    /// A recursive lock; "held" means held by this thread. A condition's wait releases every
    /// level and restores them.
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
    /// Whether the caller holds it: this process for a [`Lock`], this thread for an [`RLock`].
    pub fn is_mine(&self) -> bool {
        match self {
            AnyLock::Lock(l) => l.held_by_me(),
            AnyLock::RLock(l) => l.is_mine(),
        }
    }

    /// Releases completely; what to restore.
    fn release_all(&self) -> Result<u64, ReleaseError> {
        match self {
            AnyLock::Lock(l) => l.release().map(|_| 1),
            AnyLock::RLock(l) => l.release_all(),
        }
    }

    /// Takes the lock back with `levels` levels (an RLock's), for the calling thread.
    fn restore(&self, levels: u64) -> Acquired {
        match self {
            AnyLock::Lock(l) => l.acquire_within(Wait::Forever).unwrap_or(Acquired::Clean),
            AnyLock::RLock(l) => l.acquire_levels(levels),
        }
    }

    /// [`restore`](Self::restore) for an async caller: for the thread that polls the future.
    async fn restore_async(&self, levels: u64) -> Acquired {
        match self {
            AnyLock::Lock(l) => l.acquire_detached().await,
            AnyLock::RLock(l) => l.acquire_levels_async(levels).await,
        }
    }
}

impl sealed::Sealed for AnyLock {}

impl Acquire for AnyLock {
    #[inline]
    fn acquire_within(&self, wait: Wait) -> Option<Acquired> {
        match self {
            AnyLock::Lock(l) => l.acquire_within(wait),
            AnyLock::RLock(l) => l.acquire_within(wait),
        }
    }

    async fn acquire_detached(&self) -> Acquired {
        match self {
            AnyLock::Lock(l) => l.acquire_detached().await,
            AnyLock::RLock(l) => l.acquire_detached().await,
        }
    }

    fn abandon(&self, acquired: Acquired) {
        match self {
            AnyLock::Lock(l) => l.abandon(acquired),
            AnyLock::RLock(l) => l.abandon(acquired),
        }
    }

    /// As the lock's own [`release`](Acquire::release).
    ///
    /// # Errors
    ///
    /// As the lock's: [`ReleaseError::Unlocked`], or [`ReleaseError::NotOwner`] for an
    /// [`RLock`].
    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        match self {
            AnyLock::Lock(l) => l.release(),
            AnyLock::RLock(l) => l.release(),
        }
    }
}

/// A condition variable shared between processes: a clone of Python's
/// `multiprocessing.Condition`.
///
/// Its lock is taken with the methods of [`Acquire`] (`use procvisor::Acquire`); the guard
/// derefs to the condition, so a wait reads `guard.wait()`:
///
/// ```
/// use std::time::Duration;
/// use procvisor::Acquire;
/// use procvisor::error::{ConditionError, ConditionOp};
///
/// let cond = procvisor::Condition::new()?; // with its own RLock, as in Python
/// let guard = cond.lock();
/// assert!(!guard.wait_timeout(Duration::from_millis(10))?); // nobody notifies
/// guard.notify_all()?; // nobody waits: fine
/// drop(guard);
/// assert_eq!(
///     cond.notify_one(),
///     Err(ConditionError::NotHeld { operation: ConditionOp::Notify })
/// );
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Condition {
    lock: AnyLock,
    state: Shared<CondState>,
}

impl Condition {
    /// A condition with its own RLock (like Python's `Condition()`).
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the shared memory.
    pub fn new() -> Result<Condition, SharedError> {
        const { assert!(RLOCK_STATE <= STATE_OFFSET) };
        let segment = Segment::create(STATE_OFFSET + std::mem::size_of::<CondState>())?;
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
    /// [`SharedError::Os`] if the OS refuses the shared memory.
    pub fn with_lock(lock: impl Into<AnyLock>) -> Result<Condition, SharedError> {
        Ok(Condition {
            lock: lock.into(),
            state: Shared::create(std::mem::size_of::<CondState>())?,
        })
    }

    /// The lock this condition uses.
    pub fn as_lock(&self) -> &AnyLock {
        &self.lock
    }

    /// Releases the lock, sleeps until notified, and takes the lock back (all of an RLock's
    /// levels).
    ///
    /// # Errors
    ///
    /// [`ConditionError::NotHeld`] if the caller does not hold the lock;
    /// [`ConditionError::TooManyWaiters`] if [`MAX_WAITERS`] threads already wait.
    pub fn wait(&self) -> Result<(), ConditionError> {
        self.wait_within(Wait::Forever).map(|_| ())
    }

    /// [`wait`](Self::wait), giving up after `timeout` (Python's `wait(timeout)`): `true` if
    /// notified, `false` if the timeout passed. The lock is held again either way.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ConditionError> {
        self.wait_within(Wait::after(timeout))
    }

    fn wait_within(&self, wait: Wait) -> Result<bool, ConditionError> {
        let (index, levels) = self.start_waiting()?;
        let notified = self.sleep(&self.state.slots[index], wait, None);
        self.lock.restore(levels);
        if notified {
            self.consume(index);
        }
        Ok(notified)
    }

    /// Waits until `predicate()` is true (Python's `wait_for(predicate)`): checks it, and
    /// waits for a notification each time it is false. The lock is held whenever `predicate`
    /// runs.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub fn wait_for(&self, mut predicate: impl FnMut() -> bool) -> Result<(), ConditionError> {
        while !predicate() {
            self.wait()?;
        }
        Ok(())
    }

    /// [`wait_for`](Self::wait_for), giving up once `timeout` has passed in all (Python's
    /// `wait_for(predicate, timeout)`); returns the predicate's last value.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    #[doc(alias = "wait_for")]
    pub fn wait_for_timeout(
        &self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, ConditionError> {
        let wait = Wait::after(timeout);
        loop {
            if predicate() {
                return Ok(true);
            }
            if wait.passed() {
                return Ok(false);
            }
            self.wait_within(wait)?;
        }
    }

    /// The first steps of a wait: check that the caller holds the lock, take a waiter slot
    /// as the newest waiter (the lock is held: no notify runs meanwhile), then release the
    /// lock entirely (all of an RLock's levels, returned for the restore).
    fn start_waiting(&self) -> Result<(usize, u64), ConditionError> {
        const NOT_HELD: ConditionError = ConditionError::NotHeld {
            operation: ConditionOp::Wait,
        };
        if !self.lock.is_mine() {
            return Err(NOT_HELD);
        }
        let index = self.enqueue()?;
        match self.lock.release_all() {
            Ok(levels) => Ok((index, levels)),
            Err(_) => {
                self.state.slots[index].word.store(FREE, Ordering::Release);
                Err(NOT_HELD)
            }
        }
    }

    fn enqueue(&self) -> Result<usize, ConditionError> {
        let me = (my_pid() as u32) << 2;
        let st = &self.state;
        for (index, slot) in st.slots.iter().enumerate() {
            if slot
                .word
                .compare_exchange(FREE, me | WAITING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let ticket = st.next_ticket.fetch_add(1, Ordering::Relaxed);
                slot.ticket.store(ticket, Ordering::Release);
                return Ok(index);
            }
        }
        Err(ConditionError::TooManyWaiters { max: MAX_WAITERS })
    }

    /// Sleeps on `slot` until notified (`true`: the slot stays `NOTIFIED` until the waiter,
    /// holding the lock again, [consumes](Self::consume) it) or the wait is over (`false`:
    /// the slot is withdrawn, `FREE`).
    ///
    /// With `handoff` (an async wait, on a thread of the blocking pool), it sleeps in slices
    /// and gives up once the handoff says `CANCELLED`: it withdraws (`false`), or finds that
    /// it was notified meanwhile (`true`, for its caller to pass on).
    fn sleep(&self, slot: &Slot, wait: Wait, handoff: Option<&AtomicU32>) -> bool {
        let waiting = ((my_pid() as u32) << 2) | WAITING;
        for _ in 0..SPINS {
            if slot.word.load(Ordering::Acquire) != waiting {
                break;
            }
            std::hint::spin_loop();
        }
        loop {
            if slot.word.load(Ordering::Acquire) != waiting {
                // NOTIFIED (only a notifier or the watch changes a waiting slot).
                return true;
            }
            let deadline = match handoff {
                Some(_) => wait.slice(SLICE).deadline(),
                None => wait.deadline(),
            };
            futex_wait(&slot.word, waiting, deadline);
            let cancel = handoff.is_some_and(|h| h.load(Ordering::Acquire) == CANCELLED);
            if cancel || wait.passed() {
                // Withdraw; losing the race means it was notified meanwhile.
                let withdrawn = slot
                    .word
                    .compare_exchange(waiting, FREE, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                return !withdrawn;
            }
        }
    }

    /// Frees the `NOTIFIED` slot at `index` of a waiter that holds the lock again (or gives
    /// up its notification): until then a death of the waiter — asleep, or blocked taking the
    /// lock back — leaves the slot `NOTIFIED`, and the notifier's watch passes it on. `false`
    /// if the slot was no longer this waiter's notified one (the watch took it).
    fn consume(&self, index: usize) -> bool {
        let notified = ((my_pid() as u32) << 2) | NOTIFIED;
        self.state.slots[index]
            .word
            .compare_exchange(notified, FREE, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Gives up the notification in the slot at `index` (nobody will act on it here): frees
    /// the slot and notifies the oldest waiter left.
    fn pass_on(&self, index: usize) {
        if self.consume(index) {
            self.notify_oldest();
        }
    }

    /// Wakes up to `n` waiters, the longest-waiting first.
    ///
    /// # Errors
    ///
    /// [`ConditionError::NotHeld`] if the caller does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<(), ConditionError> {
        if !self.lock.is_mine() {
            return Err(ConditionError::NotHeld {
                operation: ConditionOp::Notify,
            });
        }
        for _ in 0..n {
            if !self.notify_oldest() {
                break;
            }
        }
        Ok(())
    }

    /// Wakes the longest-waiting waiter, if any (Python's `notify()`).
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    #[doc(alias = "notify")]
    pub fn notify_one(&self) -> Result<(), ConditionError> {
        self.notify(1)
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`notify`](Self::notify).
    pub fn notify_all(&self) -> Result<(), ConditionError> {
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
    #[doc(alias = "n_waiting")]
    pub fn waiters(&self) -> usize {
        self.state
            .slots
            .iter()
            .filter(|s| s.word.load(Ordering::Relaxed) & STATE_MASK == WAITING)
            .count()
    }

    /// [`wait`](Self::wait) for async callers, on any executor (inside a tokio runtime or
    /// not): the lock is released at once, the sleep happens on procvisor's node runtime's
    /// blocking pool, and the future resolves once the lock is held again — by the thread
    /// that polls it (an RLock's recursion levels are restored there). For a deadline, wrap
    /// it in `tokio::time::timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procvisor::Acquire;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cond = procvisor::Condition::new()?;
    /// let guard = cond.lock();
    /// let notified = tokio::time::timeout(Duration::from_millis(10), guard.wait_async()).await;
    /// assert!(notified.is_err()); // nobody notified in time…
    /// assert!(cond.as_lock().is_mine()); // …and the lock is held again
    /// # drop(guard);
    /// # Ok::<(), procvisor::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it resolves (a `tokio::time::timeout` that
    /// passes) leaves the caller as a wait that timed out does — **holding the lock**, with
    /// every level of an RLock; the drop takes it back before it returns, on the dropping
    /// thread, and so blocks while another holds the lock. The wait gives its slot back (the
    /// blocking pool's sleeper withdraws it at once, so [`waiters`](Self::waiters) may count
    /// it a moment longer), and no wake-up is lost: a notification that had reached the wait
    /// goes on to the next waiter, since the caller never learns of it.
    pub async fn wait_async(&self) -> Result<(), ConditionError> {
        let (index, levels) = self.start_waiting()?;
        let handoff = Arc::new(AtomicU32::new(SLEEPING));
        let mut pending = PendingWait {
            condition: self,
            index,
            levels,
            handoff: handoff.clone(),
            stage: Stage::Sleeping,
        };
        let me = self.clone();
        let sleeper =
            procvisor_actors::runtime::spawn_blocking(move || me.sleep_detached(index, &handoff));
        // A sleeper that panicked has left its slot; the wait is over either way.
        let _ = sleeper.await;
        pending.stage = Stage::Restoring;
        self.lock.restore_async(levels).await;
        pending.stage = Stage::Done;
        self.consume(index);
        Ok(())
    }

    /// The sleep of an async wait, on a thread of the blocking pool. `handoff` decides who
    /// acts on a notification: the future (the sleeper marks it `WOKEN`) or, if the future was
    /// dropped first (`CANCELLED`), nobody there: the sleeper passes it on.
    fn sleep_detached(&self, index: usize, handoff: &AtomicU32) {
        let notified = self.sleep(&self.state.slots[index], Wait::Forever, Some(handoff));
        if notified
            && handoff
                .compare_exchange(SLEEPING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            self.pass_on(index);
        }
    }
}

/// [`PendingWait::handoff`]: the sleeper still sleeps.
const SLEEPING: u32 = 0;
/// The sleeper came back notified, for the future to take the lock back.
const WOKEN: u32 = 1;
/// The future was dropped.
const CANCELLED: u32 = 2;

/// Where an async wait is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Its sleeper is (or was, see the handoff) on the blocking pool.
    Sleeping,
    /// Notified: taking the lock back.
    Restoring,
    /// Resolved.
    Done,
}

/// An async wait in progress. If its future is dropped before it resolves, its caller never
/// learns of a notification: the drop stops the sleeper (which withdraws the slot, or passes
/// on a notification that came meanwhile), passes on one that had already come, and takes the
/// lock back for the dropping thread.
struct PendingWait<'a> {
    condition: &'a Condition,
    index: usize,
    levels: u64,
    /// `SLEEPING` → `WOKEN` (by the sleeper) or `CANCELLED` (by the drop), once: whoever
    /// comes second acts on a notification.
    handoff: Arc<AtomicU32>,
    stage: Stage,
}

impl Drop for PendingWait<'_> {
    fn drop(&mut self) {
        let pass_on = match self.stage {
            Stage::Done => return,
            Stage::Sleeping => {
                let before = self.handoff.swap(CANCELLED, Ordering::AcqRel);
                if before == SLEEPING {
                    // Hurry the sleeper (a spurious wake is harmless to whoever has the slot
                    // now); it withdraws or passes the notification on.
                    futex_wake(&self.condition.state.slots[self.index].word, u32::MAX);
                }
                before == WOKEN
            }
            Stage::Restoring => true,
        };
        // The lock re-acquisition in progress (if any) gives back what it takes from now on.
        self.condition.lock.restore(self.levels);
        if pass_on {
            self.condition.pass_on(self.index);
        }
    }
}

impl sealed::Sealed for Condition {}

/// The condition's lock: [`lock`](Acquire::lock) and the rest act on it.
impl Acquire for Condition {
    #[inline]
    fn acquire_within(&self, wait: Wait) -> Option<Acquired> {
        self.lock.acquire_within(wait)
    }

    fn acquire_detached(&self) -> impl Future<Output = Acquired> + Send {
        self.lock.acquire_detached()
    }

    fn abandon(&self, acquired: Acquired) {
        self.lock.abandon(acquired);
    }

    /// Releases the condition's lock (as its own [`release`](Acquire::release)).
    ///
    /// # Errors
    ///
    /// As the lock's.
    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        self.lock.release()
    }
}
