//! Synchronization primitives shared between processes: Python's `Lock`, `RLock`,
//! `Semaphore`, `BoundedSemaphore`, `Condition`, `Event` and `Barrier`.
//!
//! Every lock-like primitive has the same method family, written once in the sealed trait
//! [`Acquire`]; bring it into scope with `use procvisor::Acquire`:
//!
//! | Python | procvisor |
//! |---|---|
//! | `with lock: …` | `let _guard = lock.lock();` |
//! | `lock.acquire(block=False)` | `lock.try_lock()` → `Option<Guard>` |
//! | `lock.acquire(timeout=t)` | `lock.lock_timeout(t)` → `Option<Guard>` |
//! | (asyncio) | `lock.lock_async().await` |
//! | `lock.acquire()` … `lock.release()` | `lock.lock().leak();` … `lock.release()?;` |
//! | `cond.wait(timeout)`, `cond.wait_for(p, timeout)` | `guard.wait_timeout(t)?`, `guard.wait_for_timeout(p, t)?` |
//! | `event.wait(timeout)` | `event.wait_timeout(t)` |
//! | `barrier.wait(timeout)` | `barrier.wait_timeout(t)?` |
//! | `sem.get_value()`, `barrier.n_waiting`, `barrier.broken` | `sem.value()`, `barrier.waiters()`, `barrier.is_broken()` |
//!
//! The waits (`Condition`, `Event`, `Barrier`) follow the same shape: `wait()`,
//! `wait_timeout(d)`, `wait_async()`. A deadline for an async call is `tokio::time::timeout`
//! around it; each async method's docs say what dropping its future does (`# Cancel safety`).
//!
//! Every primitive keeps its state in a shared memory segment (an anonymous memfd, see
//! [`procvisor_actors::shm`]); handles are `Clone + Send + Sync + Serialize + Deserialize`, so
//! a handle passed in a child's arguments, or sent through a [`Connection`](crate::Connection)
//! to a process that already runs, is the same primitive there. Operations that need no waiting
//! are atomic instructions on that memory (an uncontended lock is one compare-and-swap each
//! way); waiting sleeps on a futex in it.
//!
//! ## Recovery: a holder that dies
//!
//! Python's locks stay locked for ever when their holder dies. Here, the node of a process
//! that waits for a unit, or that tries to take it without waiting and finds it held, watches
//! the holder (a pidfd, no polling) and gives the unit back when it dies (at once if it is
//! already gone); the next acquirer, blocking or not, is told so by its guard's [`previous_owner_died`](Guard::previous_owner_died) (or
//! [`Acquired::OwnerDied`]), since the data the lock protected may be half-updated.
//!
//! ```
//! use procvisor::{Acquire, Acquired, Lock};
//!
//! let lock = Lock::new()?;
//! let guard = lock.lock();
//! if let Some(pid) = guard.previous_owner_died() {
//!     eprintln!("repairing what {pid} left half-done");
//! }
//! drop(guard);
//!
//! // Python's manual acquire() / release():
//! match lock.lock().leak() {
//!     Acquired::Clean => {}
//!     Acquired::OwnerDied { pid } => eprintln!("process {pid} died holding the lock"),
//! }
//! lock.release()?;
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! ## Between processes
//!
//! ```no_run
//! use procvisor::{Acquire, Lock, Process};
//!
//! fn f(lock: Lock, i: u32) {
//!     let _guard = lock.lock();
//!     println!("hello world {i}");
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init();
//!     let lock = Lock::new()?;
//!     for num in 0..10 {
//!         Process::new(f, (lock.clone(), num)).start()?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ## Async
//!
//! `lock_async`, `wait_async`, … run the wait on procvisor's node runtime's blocking pool;
//! they work on any executor, inside or outside a tokio runtime, and never block the caller's
//! runtime.
//!
//! ## Errors
//!
//! Constructors fail with [`SharedError`](crate::error::SharedError); `release` with
//! [`ReleaseError`](crate::error::ReleaseError); a condition's waits and notifies with
//! [`ConditionError`](crate::error::ConditionError); a barrier's waits with
//! [`BrokenBarrier`](crate::error::BrokenBarrier). Each converts into [`Error`](crate::Error).

mod acquire;
mod barrier;
mod condition;
mod event;
mod lock;
mod rlock;
mod semaphore;
mod shared;
mod wait;

pub use acquire::{Acquire, Guard};
pub use barrier::{Barrier, MAX_PARTIES};
pub use condition::{AnyLock, Condition, MAX_WAITERS};
pub use event::Event;
pub use lock::Lock;
pub use rlock::RLock;
pub use semaphore::{BoundedSemaphore, Semaphore};

pub(crate) use rlock::RLOCK_STATE;

/// How a unit of a lock or semaphore was acquired (encodable, to report it to another process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Acquired {
    /// From a holder that released it (or it was free).
    Clean,
    /// The previous holder died holding it, and procvisor gave it back to this acquirer. What
    /// it protected may be half-updated.
    OwnerDied {
        /// The dead holder's pid.
        pid: i32,
    },
}

impl Acquired {
    /// The pid of the process that died holding the unit, if that is how it was acquired.
    pub fn previous_owner_died(&self) -> Option<i32> {
        match *self {
            Acquired::Clean => None,
            Acquired::OwnerDied { pid } => Some(pid),
        }
    }
}

impl From<procvisor_actors::shm::Acquired> for Acquired {
    #[inline]
    fn from(a: procvisor_actors::shm::Acquired) -> Self {
        match a {
            procvisor_actors::shm::Acquired::Clean => Acquired::Clean,
            procvisor_actors::shm::Acquired::OwnerDied { pid } => Acquired::OwnerDied { pid },
        }
    }
}
