//! Locking a `std::sync::Mutex` without poison errors: the one [`lock`] of the crates.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking it over as it is if a thread panicked while holding it (poisoned).
///
/// A panic while holding one of our mutexes leaves data that is still consistent, because no
/// critical section in procvisor runs user code (callbacks, recoveries, jobs run after the guard
/// is dropped) and each one changes the guarded data only by whole assignments, insertions and
/// removals, every one of which leaves a valid value behind. So what a panicking holder left is
/// a state some thread could have seen anyway, while refusing every later lock would turn one
/// failed operation (a bug) into a process whose children are never reaped or whose waiters
/// never wake.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
