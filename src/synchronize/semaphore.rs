//! [`Semaphore`] and [`BoundedSemaphore`] (Python's `multiprocessing.Semaphore` and
//! `BoundedSemaphore`).
//!
//! State (one segment, 544 bytes):
//!
//! | field | what |
//! |---|---|
//! | `value` | units available: the futex word acquirers sleep on |
//! | `sleepers` | acquirers asleep (a release wakes one only if there are any) |
//! | `initial`, `max` | the initial value; the bound (`u32::MAX`: unbounded) |
//! | `notices`, `last_dead` | units given back from dead holders not yet reported, and whose |
//! | `slots[64]` | per-process accounting: `pid << 32 \| units held` |
//!
//! Acquire: one compare-and-swap on `value`, then one on this process's slot (its index is
//! cached in the handle). Release: the reverse. An acquirer that must sleep first asks its
//! node's watch to watch every process with units in the table (so does a `try_lock` that
//! finds no unit, then tries once more); when one dies, the watch takes
//! its slot and gives its units back — at most as many as keep `value + units held` within the
//! initial value, so a semaphore used for signalling (a release by one process, an acquire by
//! another) never gains units it never had. Each unit given back carries a notice: the next
//! acquirers get [`Acquired::OwnerDied`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use procvisor_actors::shm::{SharedState, WaitOutcome, futex_wait, futex_wake, my_pid, watch};
use serde::{Deserialize, Serialize};

use super::Acquired;
use super::acquire::{Acquire, sealed};
use super::shared::Shared;
use super::wait::Wait;
use crate::error::{ReleaseError, SharedError, SharedSetting};

/// Processes whose units are accounted for (more concurrent holders are served, but their
/// units are not given back if they die).
const SLOTS: usize = 64;
const UNBOUNDED: u32 = u32::MAX;

#[repr(C)]
#[derive(Debug)]
struct SemState {
    value: AtomicU32,
    sleepers: AtomicU32,
    initial: AtomicU32,
    max: AtomicU32,
    notices: AtomicU32,
    last_dead: AtomicU32,
    _reserved: [AtomicU32; 2],
    slots: [AtomicU64; SLOTS],
}

// SAFETY: atomics only; any bit pattern is a state the protocol tolerates.
unsafe impl SharedState for SemState {}

#[inline]
fn slot_pid(s: u64) -> u32 {
    (s >> 32) as u32
}

#[inline]
fn slot_units(s: u64) -> u32 {
    s as u32
}

#[inline]
fn slot(pid: u32, units: u32) -> u64 {
    if units == 0 {
        0
    } else {
        (u64::from(pid) << 32) | u64::from(units)
    }
}

/// A counting semaphore shared between processes: a clone of Python's
/// `multiprocessing.Semaphore`.
///
/// Its methods are those of [`Acquire`] (`use procvisor::Acquire`): [`lock`](Acquire::lock)
/// takes a unit (Python's `acquire()`), [`release`](Acquire::release) gives one back, and
/// [`try_lock`](Acquire::try_lock), [`lock_timeout`](Acquire::lock_timeout),
/// [`lock_async`](Acquire::lock_async) are the other ways to wait.
///
/// Units that a process acquired and had not released when it died are given back (up to the
/// initial value), and the acquirers that get them are told ([`Acquired::OwnerDied`]).
///
/// ```
/// use procvisor::Acquire;
///
/// let sem = procvisor::Semaphore::new(2)?;
/// let a = sem.lock();
/// let b = sem.lock();
/// assert!(sem.try_lock().is_none());
/// drop(a);
/// assert_eq!(sem.value(), 1);
/// # drop(b);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
pub struct Semaphore {
    state: Shared<SemState>,
    /// Cached index of this process's slot (a hint, checked before use).
    #[serde(skip)]
    hint: AtomicU32,
}

impl Clone for Semaphore {
    fn clone(&self) -> Self {
        Semaphore {
            state: self.state.clone(),
            hint: AtomicU32::new(self.hint.load(Ordering::Relaxed)),
        }
    }
}

/// A semaphore whose value may not be raised past its initial value: a clone of Python's
/// `multiprocessing.BoundedSemaphore`. Its methods are those of [`Acquire`], as for a
/// [`Semaphore`].
///
/// ```
/// use procvisor::Acquire;
/// use procvisor::error::ReleaseError;
///
/// let sem = procvisor::BoundedSemaphore::new(1)?;
/// assert_eq!(sem.release(), Err(ReleaseError::OverRelease { max: 1 }));
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    inner: Semaphore,
}

impl Semaphore {
    /// A semaphore with `value` units.
    ///
    /// # Errors
    ///
    /// [`SharedError::OutOfRange`] if `value` is `u32::MAX` (reserved); [`SharedError::Os`]
    /// if the OS refuses the shared memory.
    pub fn new(value: u32) -> Result<Semaphore, SharedError> {
        Semaphore::create(value, UNBOUNDED)
    }

    fn create(value: u32, max: u32) -> Result<Semaphore, SharedError> {
        if value == UNBOUNDED {
            return Err(SharedError::OutOfRange {
                setting: SharedSetting::SemaphoreValue,
                value: value.into(),
                min: 0,
                max: (UNBOUNDED - 1).into(),
            });
        }
        let state: Shared<SemState> = Shared::create(std::mem::size_of::<SemState>())?;
        state.value.store(value, Ordering::Relaxed);
        state.initial.store(value, Ordering::Relaxed);
        state.max.store(max, Ordering::Release);
        Ok(Semaphore {
            state,
            hint: AtomicU32::new(0),
        })
    }

    #[inline]
    fn try_take(&self) -> bool {
        let value = &self.state.value;
        let mut v = value.load(Ordering::Relaxed);
        while v > 0 {
            match value.compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(actual) => v = actual,
            }
        }
        false
    }

    /// Books the unit just taken to this process and reports a pending owner-died notice.
    #[inline]
    fn taken(&self) -> Acquired {
        self.book(true);
        if self.state.notices.load(Ordering::Relaxed) == 0 {
            return Acquired::Clean;
        }
        self.take_notice()
    }

    #[cold]
    fn take_notice(&self) -> Acquired {
        let notices = &self.state.notices;
        let mut n = notices.load(Ordering::Acquire);
        while n > 0 {
            match notices.compare_exchange_weak(n, n - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let pid = self.state.last_dead.load(Ordering::Relaxed) as i32;
                    return Acquired::OwnerDied { pid };
                }
                Err(actual) => n = actual,
            }
        }
        Acquired::Clean
    }

    /// Adds (`credit`) or removes one unit from this process's slot. A debit with no units
    /// booked (a release by a process that did not acquire) changes nothing.
    fn book(&self, credit: bool) {
        let me = my_pid() as u32;
        let slots = &self.state.slots;
        let hint = self.hint.load(Ordering::Relaxed) as usize % SLOTS;
        let order = std::iter::once(hint).chain((0..SLOTS).filter(|&i| i != hint));
        let mut free = None;
        for i in order {
            let mut s = slots[i].load(Ordering::Relaxed);
            while slot_pid(s) == me {
                let units = slot_units(s);
                let new = if credit {
                    slot(me, units.saturating_add(1))
                } else {
                    slot(me, units - 1)
                };
                match slots[i].compare_exchange_weak(s, new, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => {
                        self.hint.store(i as u32, Ordering::Relaxed);
                        return;
                    }
                    Err(actual) => s = actual,
                }
            }
            if s == 0 && free.is_none() {
                free = Some(i);
            }
        }
        if !credit {
            return;
        }
        // No slot yet: claim a free one (any, if the first choice was taken meanwhile).
        let start = free.unwrap_or(0);
        for i in (start..SLOTS).chain(0..start) {
            if slots[i]
                .compare_exchange(0, slot(me, 1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.hint.store(i as u32, Ordering::Relaxed);
                return;
            }
        }
        tracing::debug!("semaphore slot table full: a unit is not accounted for");
    }

    /// A non-blocking attempt that found no unit: has the holders watched (the units of a
    /// dead one come back at once) and tries again.
    #[cold]
    fn try_recovering(&self) -> Option<Acquired> {
        self.watch_holders();
        self.try_take().then(|| self.taken())
    }

    #[cold]
    fn acquire_wait(&self, wait: Wait) -> Option<Acquired> {
        let st = &self.state;
        loop {
            if self.try_take() {
                return Some(self.taken());
            }
            self.watch_holders();
            st.sleepers.fetch_add(1, Ordering::SeqCst);
            let outcome = futex_wait(&st.value, 0, wait.deadline());
            st.sleepers.fetch_sub(1, Ordering::SeqCst);
            if outcome == WaitOutcome::TimedOut {
                return self.try_take().then(|| self.taken());
            }
        }
    }

    /// Asks this process's watch to give back the units of any holder that dies.
    fn watch_holders(&self) {
        for s in &self.state.slots {
            let s = s.load(Ordering::Relaxed);
            if s == 0 {
                continue;
            }
            let pid = slot_pid(s) as i32;
            watch::on_death(pid, self.state.segment(), self.state.offset(), || {
                let me = self.clone();
                Arc::new(move |dead| me.recover(dead))
            });
        }
    }

    /// The watch's recovery: frees `dead`'s slots and gives back its units (within the initial
    /// value), each with an owner-died notice.
    fn recover(&self, dead: i32) {
        let st = &self.state;
        let mut units = 0u32;
        for s in &st.slots {
            let mut cur = s.load(Ordering::Acquire);
            while cur != 0 && slot_pid(cur) == dead as u32 {
                match s.compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => units = units.saturating_add(slot_units(cur)),
                    Err(actual) => cur = actual,
                }
            }
        }
        if units == 0 {
            return;
        }
        let held: u32 = st
            .slots
            .iter()
            .map(|s| slot_units(s.load(Ordering::Acquire)))
            .fold(0, u32::saturating_add);
        let initial = st.initial.load(Ordering::Relaxed);
        let mut v = st.value.load(Ordering::Acquire);
        loop {
            let room = initial.saturating_sub(v.saturating_add(held));
            let give = units.min(room);
            if give == 0 {
                return;
            }
            match st
                .value
                .compare_exchange(v, v + give, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    st.last_dead.store(dead as u32, Ordering::Relaxed);
                    st.notices.fetch_add(give, Ordering::Release);
                    tracing::debug!(pid = dead, units = give, "semaphore units given back");
                    futex_wake(&st.value, give);
                    return;
                }
                Err(actual) => v = actual,
            }
        }
    }

    /// Gives one unit back (any process may).
    #[inline]
    fn give_back(&self) -> Result<(), ReleaseError> {
        let st = &self.state;
        let max = st.max.load(Ordering::Relaxed);
        let mut v = st.value.load(Ordering::Relaxed);
        loop {
            if v >= max {
                return Err(ReleaseError::OverRelease { max });
            }
            match st
                .value
                .compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) => v = actual,
            }
        }
        self.book(false);
        if st.sleepers.load(Ordering::SeqCst) > 0 {
            futex_wake(&st.value, 1);
        }
        Ok(())
    }

    /// Gives back a unit taken for a caller that gave up; its owner-died notice goes to the
    /// next acquirer.
    fn abandon_unit(&self, acquired: Acquired) {
        if let Acquired::OwnerDied { pid } = acquired {
            self.state.last_dead.store(pid as u32, Ordering::Relaxed);
            self.state.notices.fetch_add(1, Ordering::Release);
        }
        let _ = self.give_back();
    }

    /// The number of units available now (Python's `get_value()`).
    #[doc(alias = "get_value")]
    pub fn value(&self) -> u32 {
        self.state.value.load(Ordering::Relaxed)
    }

    /// Units this process holds according to the shared accounting (for tests and
    /// diagnostics).
    #[doc(hidden)]
    pub fn held_here(&self) -> u32 {
        let me = my_pid() as u32;
        self.state
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&s| slot_pid(s) == me)
            .map(slot_units)
            .sum()
    }
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` units, which is also its largest value.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    pub fn new(value: u32) -> Result<BoundedSemaphore, SharedError> {
        Ok(BoundedSemaphore {
            inner: Semaphore::create(value, value)?,
        })
    }

    /// Units available now (Python's `get_value()`).
    #[doc(alias = "get_value")]
    pub fn value(&self) -> u32 {
        self.inner.value()
    }

    /// The underlying semaphore (with the bound: its `release` refuses to exceed it too).
    pub fn as_semaphore(&self) -> &Semaphore {
        &self.inner
    }
}

impl sealed::Sealed for Semaphore {}

impl Acquire for Semaphore {
    #[inline]
    fn acquire_within(&self, wait: Wait) -> Option<Acquired> {
        if self.try_take() {
            return Some(self.taken());
        }
        if wait == Wait::No {
            return self.try_recovering();
        }
        self.acquire_wait(wait)
    }

    /// Gives one unit back (any process may, including one that did not acquire it).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::OverRelease`] for the semaphore of a [`BoundedSemaphore`] (see
    /// [`as_semaphore`](BoundedSemaphore::as_semaphore)) already at its initial value.
    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        self.give_back()
    }

    fn abandon(&self, acquired: Acquired) {
        self.abandon_unit(acquired);
    }
}

impl sealed::Sealed for BoundedSemaphore {}

impl Acquire for BoundedSemaphore {
    #[inline]
    fn acquire_within(&self, wait: Wait) -> Option<Acquired> {
        self.inner.acquire_within(wait)
    }

    fn acquire_detached(&self) -> impl Future<Output = Acquired> + Send {
        self.inner.acquire_detached()
    }

    /// Gives one unit back (any process may).
    ///
    /// # Errors
    ///
    /// [`ReleaseError::OverRelease`] if the value is already the initial value.
    #[inline]
    fn release(&self) -> Result<(), ReleaseError> {
        self.inner.give_back()
    }

    fn abandon(&self, acquired: Acquired) {
        self.inner.abandon_unit(acquired);
    }
}
