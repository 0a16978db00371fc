//! [`Acquire`]: the one lock family (`lock`, `try_lock`, `lock_timeout`, `lock_async`,
//! `release`) of every lock-like primitive, written once; and its [`Guard`].
//!
//! Each primitive implements its raw acquire with a deadline (hidden), what to do with a unit
//! its async caller gave up on (hidden), and `release`; the family is the trait's default
//! methods, the same for all, and the guard is one generic type.
//!
//! The family lives only here, with no inherent copies on the types: one definition (docs
//! included) to keep right, the same shape on every primitive, and generic code can take
//! `&impl Acquire`. The price is one import, `use procvisor::Acquire`, as for `std::io::Read`.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::time::Duration;

use super::wait::{Wait, off_thread_forever};
use super::{Acquired, Condition};
use crate::error::ReleaseError;

pub(crate) mod sealed {
    /// Only procvisor's primitives implement [`Acquire`](super::Acquire).
    pub trait Sealed {}
}

/// Taking and giving back a unit of a lock-like primitive: [`Lock`](super::Lock),
/// [`RLock`](super::RLock), [`Semaphore`](super::Semaphore),
/// [`BoundedSemaphore`](super::BoundedSemaphore), [`Condition`] (its lock) and
/// [`AnyLock`](super::AnyLock). One family for every primitive, in the shape of
/// `std::sync::Mutex`:
///
/// | method | waits | Python |
/// |---|---|---|
/// | [`lock`](Self::lock) | as long as it takes | `acquire()` |
/// | [`try_lock`](Self::try_lock) | not at all | `acquire(block=False)` |
/// | [`lock_timeout`](Self::lock_timeout) | at most a timeout | `acquire(timeout=t)` |
/// | [`lock_async`](Self::lock_async) | in an `async fn` | — |
/// | [`release`](Self::release) | — | `release()` |
///
/// Each returns a [`Guard`], which gives the unit back when dropped and says whether the
/// previous holder died holding it. Python's manual `acquire()` … `release()` is
/// [`Guard::leak`] … [`release`](Self::release).
///
/// Bring it into scope with `use procvisor::Acquire`. The trait is sealed: only procvisor's
/// primitives implement it.
///
/// ```
/// use procvisor::{Acquire, Lock};
///
/// let lock = Lock::new()?;
/// {
///     let guard = lock.lock();
///     assert_eq!(guard.previous_owner_died(), None);
///     assert!(lock.try_lock().is_none()); // held: not recursive
/// } // released here
/// let acquired = lock.try_lock().expect("free").leak(); // Python's acquire(): stays held
/// assert_eq!(acquired, procvisor::Acquired::Clean);
/// lock.release()?;
/// assert_eq!(lock.release(), Err(procvisor::error::ReleaseError::Unlocked));
/// # Ok::<(), procvisor::Error>(())
/// ```
pub trait Acquire: sealed::Sealed + Clone + Send + Sync + 'static {
    /// Takes a unit, waiting as `wait` says; `None` if the wait ended first.
    #[doc(hidden)]
    fn acquire_within(&self, wait: Wait) -> Option<Acquired>;

    /// Gives back a unit taken for a caller that gave up before it got it; an owner-died
    /// notice it carried is kept for the next acquirer.
    #[doc(hidden)]
    fn abandon(&self, acquired: Acquired);

    /// Takes a unit for an async caller: the wait runs on the node runtime's blocking pool
    /// (a unit taken there after the caller's future was dropped is given back), and the
    /// unit belongs to the thread that polls the future once it resolves.
    #[doc(hidden)]
    fn acquire_detached(&self) -> impl Future<Output = Acquired> + Send {
        // `off_thread_forever` tries once on the calling thread before it goes off-thread.
        async move {
            let me = self.clone();
            let again = self.clone();
            off_thread_forever(
                move |wait| me.acquire_within(wait),
                move |acquired| again.abandon(acquired),
            )
            .await
        }
    }

    /// Gives one unit back: Python's `release()`, for a unit taken with [`Guard::leak`] (a
    /// guard gives its own back when dropped).
    ///
    /// # Errors
    ///
    /// The unit is not given back, and nothing changes:
    /// [`ReleaseError::Unlocked`] for a [`Lock`](super::Lock) or [`RLock`](super::RLock)
    /// nobody holds; [`ReleaseError::NotOwner`] for an RLock another thread (of this or
    /// another process) owns; [`ReleaseError::OverRelease`] for a
    /// [`BoundedSemaphore`](super::BoundedSemaphore) already at its initial value.
    fn release(&self) -> Result<(), ReleaseError>;

    /// Takes a unit, waiting as long as it takes; the guard gives it back.
    ///
    /// A [`Lock`](super::Lock) is not recursive: locking it again from the thread (or the
    /// process) that holds it waits for ever. An [`RLock`](super::RLock) taken again by its
    /// owner thread returns at once.
    #[doc(alias = "acquire")]
    #[inline]
    fn lock(&self) -> Guard<'_, Self> {
        // Without a deadline the raw acquire waits until it succeeds.
        let acquired = self
            .acquire_within(Wait::Forever)
            .unwrap_or(Acquired::Clean);
        Guard::new(self, acquired)
    }

    /// Takes a unit if that needs no waiting (Python's `acquire(block=False)`); `None` if
    /// none is free.
    ///
    /// A unit held by a process that has died is not lost to callers that never block: an
    /// attempt that finds the unit held has procvisor watch the holder, as a blocking acquire
    /// does, and a dead holder's unit is given back (at once if the holder is already gone, a
    /// moment after its death otherwise), so a later attempt, or this one, gets it with the
    /// owner-died notice ([`Guard::previous_owner_died`]).
    #[doc(alias = "acquire")]
    #[inline]
    fn try_lock(&self) -> Option<Guard<'_, Self>> {
        self.acquire_within(Wait::No)
            .map(|acquired| Guard::new(self, acquired))
    }

    /// Takes a unit, waiting at most `timeout` (Python's `acquire(timeout=t)`); `None` if
    /// none came in time.
    #[doc(alias = "acquire")]
    #[inline]
    fn lock_timeout(&self, timeout: Duration) -> Option<Guard<'_, Self>> {
        self.acquire_within(Wait::after(timeout))
            .map(|acquired| Guard::new(self, acquired))
    }

    /// [`lock`](Self::lock) for async callers, on any executor (inside a tokio runtime or
    /// not): the wait runs on procvisor's node runtime's blocking pool, never on the caller's
    /// runtime. The unit belongs to the thread that polls the future when it resolves (an
    /// [`RLock`](super::RLock)'s owner is a thread). For a deadline, wrap it in
    /// `tokio::time::timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use procvisor::{Acquire, Semaphore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let sem = Semaphore::new(1)?;
    /// let held = sem.lock_async().await;
    /// let late = tokio::time::timeout(Duration::from_millis(20), sem.lock_async()).await;
    /// assert!(late.is_err()); // gave up: no unit was kept
    /// drop(held);
    /// assert_eq!(sem.value(), 1);
    /// # Ok::<(), procvisor::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it resolves gives up the wait, and a unit the
    /// blocking pool took after that is given back at once (with its owner-died notice, for
    /// the next acquirer), so nothing is held and nothing is lost.
    #[doc(alias = "acquire")]
    fn lock_async(&self) -> impl Future<Output = Guard<'_, Self>> + Send {
        async move {
            let acquired = self.acquire_detached().await;
            Guard::new(self, acquired)
        }
    }
}

/// One acquired unit of a [`Lock`](super::Lock), [`RLock`](super::RLock),
/// [`Semaphore`](super::Semaphore), [`BoundedSemaphore`](super::BoundedSemaphore),
/// [`Condition`] or [`AnyLock`](super::AnyLock), given back when the guard is dropped.
///
/// A guard of a [`Condition`] derefs to it, so `guard.wait()` and `guard.notify_all()` are the
/// condition's own methods, called with its lock held.
///
/// A guard is not `Send`: an RLock (or a condition's RLock) belongs to the thread that took it.
#[must_use = "the unit is given back as soon as the guard is dropped"]
pub struct Guard<'a, P: Acquire> {
    primitive: &'a P,
    acquired: Acquired,
    _not_send: PhantomData<*const ()>,
}

impl<'a, P: Acquire> Guard<'a, P> {
    pub(crate) fn new(primitive: &'a P, acquired: Acquired) -> Self {
        Guard {
            primitive,
            acquired,
            _not_send: PhantomData,
        }
    }

    /// How the unit was acquired: [`Acquired::OwnerDied`] when a process died holding it and
    /// procvisor gave it back to this acquirer.
    pub fn acquired(&self) -> Acquired {
        self.acquired
    }

    /// The pid of a process that died holding the unit this guard now holds, if any: the state
    /// it protected may be half-updated.
    pub fn previous_owner_died(&self) -> Option<i32> {
        self.acquired.previous_owner_died()
    }

    /// Forgets the guard and keeps the unit held: Python's `acquire()`, to be given back
    /// later with [`Acquire::release`] (by any thread of any process for a Lock or a
    /// semaphore; by this thread for an RLock). Returns how the unit was acquired.
    ///
    /// ```
    /// use procvisor::{Acquire, Lock};
    ///
    /// let lock = Lock::new()?;
    /// lock.lock().leak();
    /// assert!(lock.is_locked());
    /// lock.release()?;
    /// assert!(!lock.is_locked());
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    pub fn leak(self) -> Acquired {
        let acquired = self.acquired;
        std::mem::forget(self);
        acquired
    }
}

impl<P: Acquire> Drop for Guard<'_, P> {
    fn drop(&mut self) {
        // The guard holds the unit, so the release cannot be refused (unless the unit was
        // already given back by hand, which changes nothing then).
        let _ = self.primitive.release();
    }
}

impl<P: Acquire> fmt::Debug for Guard<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("acquired", &self.acquired)
            .finish()
    }
}

/// A condition's guard holds its lock and is used to wait and notify: `guard.wait()`.
impl Deref for Guard<'_, Condition> {
    type Target = Condition;

    fn deref(&self) -> &Condition {
        self.primitive
    }
}
