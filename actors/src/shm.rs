//! Shared memory: the fast path under procvisor's shared objects.
//!
//! Locks, semaphores, conditions, events, barriers, queues and `Value`/`Array` keep their state
//! in a [`Segment`] — an anonymous `memfd` mapping shared by every process that holds a handle
//! to the object. Operations that need no waiting are plain atomic instructions on that memory
//! (an uncontended lock is one compare-and-swap); waiting uses futexes ([`futex_wait`]) on
//! words in the segment, so a waiter sleeps in the kernel and is woken by whichever process
//! changes the word.
//!
//! The node stays the authority for what shared memory alone cannot do: when a process waits
//! for a unit held by another process, its [`watch`] opens a pidfd on the holder, and if the
//! holder dies the node gives the unit back and marks it so that the next acquirer learns that
//! the previous holder died ([`RobustMutex`]).
//!
//! Nothing here has a name in the file system: a memfd disappears with the last mapping and the
//! last descriptor, so a SIGKILLed process tree leaves nothing behind in `/dev/shm`.

mod futex;
mod mutex;
mod pid;
mod segment;
pub mod watch;

pub use futex::{WaitOutcome, futex_wait, futex_wake};
pub use mutex::{Acquired, RobustMutex};
pub use pid::{forget_cached_pid, my_pid};
pub use segment::{Segment, SegmentError, SharedState};
