//! [`Guard`]: holds one unit of a lock or semaphore and gives it back when dropped.

use std::fmt;
use std::marker::PhantomData;

use super::Acquired;

/// A primitive a [`Guard`] can give a unit back to.
pub trait Release: sealed::Sealed {
    /// Gives one unit back. Called by [`Guard`]'s `Drop`; errors cannot happen for a unit the
    /// guard holds, and are ignored.
    #[doc(hidden)]
    fn release_unit(&self);
}

pub(crate) mod sealed {
    pub trait Sealed {}
}

/// One acquired unit of a [`Lock`](super::Lock), [`RLock`](super::RLock),
/// [`Semaphore`](super::Semaphore) or [`Condition`](super::Condition), given back when the
/// guard is dropped.
///
/// A guard is not `Send`: an RLock (or a condition's RLock) belongs to the thread that took it.
#[must_use = "the unit is given back as soon as the guard is dropped"]
pub struct Guard<'a, P: Release> {
    pub(crate) primitive: &'a P,
    pub(crate) acquired: Acquired,
    pub(crate) _not_send: PhantomData<*const ()>,
}

impl<'a, P: Release> Guard<'a, P> {
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
}

impl<P: Release> Drop for Guard<'_, P> {
    fn drop(&mut self) {
        self.primitive.release_unit();
    }
}

impl<P: Release> fmt::Debug for Guard<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("acquired", &self.acquired)
            .finish()
    }
}
