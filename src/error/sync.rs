//! Errors of the synchronization primitives (locks, semaphores, conditions, barriers).

/// Why a [`release`](crate::Lock::release) was refused. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// Nobody holds the lock (Python's "release unlocked lock").
    #[error("cannot release an unlocked lock")]
    Unlocked,

    /// An RLock held by another thread or process: only its owner may release it (Python's
    /// "cannot release un-acquired lock").
    #[error(
        "cannot release this RLock: it is held by another {holder} (pid {holder_pid}), and only \
         the thread that acquired it may release it"
    )]
    NotOwner {
        /// Whether the owner is another thread of this process or another process.
        holder: Holder,
        /// The holding process.
        holder_pid: i32,
    },

    /// A BoundedSemaphore would rise past its initial value.
    #[error("semaphore released too many times: its value cannot exceed {max}")]
    OverRelease {
        /// The initial (and largest) value.
        max: u32,
    },
}

/// Who holds an RLock that the caller tried to release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Another thread of this process.
    Thread,
    /// Another process.
    Process,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Holder::Thread => "thread",
            Holder::Process => "process",
        })
    }
}

/// Why a [`Condition`](crate::Condition) wait or notify was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConditionError {
    /// The caller does not hold the condition's lock.
    #[error("cannot wait on or notify a condition without holding its lock")]
    NotHeld,

    /// More threads wait at once than the condition's shared table has places for.
    #[error("more than {max} threads are already waiting on this condition")]
    TooManyWaiters {
        /// The table's size.
        max: usize,
    },
}

/// The barrier was aborted, a wait on it timed out, its action failed, or it was reset while
/// this party waited (Python's `BrokenBarrierError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the barrier is broken (aborted, timed out, its action failed, or reset)")]
pub struct BrokenBarrier;
