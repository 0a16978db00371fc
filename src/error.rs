//! Errors: one type per domain (per operation family where a caller matches them), each
//! converting into the crate's [`Error`] so that `?` works across domains.
//!
//! | domain | types |
//! |---|---|
//! | processes | [`StartError`], [`JoinError`], [`SignalError`], [`StartMethodAlreadySet`] |
//! | connections | [`PipeError`], [`SendError`], [`RecvError`], [`WaitError`], [`TryCloneError`], [`ChallengeError`], [`AuthError`], [`ConnectError`], [`AddressError`] |
//! | queues | [`PutError`], [`GetError`], [`QueueError`] |
//! | synchronization | [`ReleaseError`], [`ConditionError`], [`BrokenBarrier`] |
//! | shared memory | [`SharedError`] |
//! | pools | [`PoolError`], [`TaskError`], [`RunError`] (either), [`ResultTimeout`] |
//! | supervision trees | [`SupervisorError`] |
//!
//! This module is the ground floor of the crate: it names no type of a higher module.

mod connection;
mod pool;
mod process;
mod queue;
mod shared;
mod sync;

use std::io;

pub use connection::{
    AddressError, AuthError, ChallengeError, ConnectError, PipeError, RecvError, SendError,
    TryCloneError, WaitError,
};
pub use pool::{PoolError, ResultTimeout, RunError, TaskError};
pub use process::{JoinError, SignalError, StartError};
pub use procvisor_actors::supervisor::SupervisorError;
pub use queue::{GetError, PutError, QueueError};
pub use shared::SharedError;
pub use sync::{BrokenBarrier, ConditionError, Holder, ReleaseError};

pub use crate::context::StartMethodAlreadySet;

/// [`log_to_stderr`](crate::log_to_stderr) could not install its subscriber (another global
/// subscriber is already installed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot install the stderr log subscriber: {reason}")]
pub struct LogInitError {
    /// What `tracing` said.
    pub reason: String,
}

/// The result type of procvisor's fallible calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, one variant per cause (Python's exceptions, as Rust values).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A process did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A joined process did not run its target.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// A signal could not be sent.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The start method was already chosen.
    #[error(transparent)]
    StartMethod(#[from] StartMethodAlreadySet),
    /// A pipe could not be created.
    #[error(transparent)]
    Pipe(#[from] PipeError),
    /// A message was not sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// No message was received.
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// Waiting for several objects failed.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// A connection could not be cloned.
    #[error(transparent)]
    TryClone(#[from] TryCloneError),
    /// A challenge of `deliver_challenge` / `answer_challenge` failed.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// A listener or client could not connect.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An authentication handshake failed. Connection operations report it inside
    /// [`ConnectError::Auth`] and [`ChallengeError::Auth`]; this variant lets a bare
    /// [`AuthError`] convert with `?`.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An address cannot be used.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// An item was not put on a queue.
    #[error(transparent)]
    Put(#[from] PutError),
    /// No item was taken from a queue.
    #[error(transparent)]
    Get(#[from] GetError),
    /// Another queue operation failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A lock or semaphore release was refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A condition wait or notify was refused.
    #[error(transparent)]
    Condition(#[from] ConditionError),
    /// A barrier is broken.
    #[error(transparent)]
    Barrier(#[from] BrokenBarrier),
    /// Shared memory could not be created, opened or accessed.
    #[error(transparent)]
    Shared(#[from] SharedError),
    /// A pool refused a request.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A pool task produced no value.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// No pool result arrived in time.
    #[error(transparent)]
    ResultTimeout(#[from] ResultTimeout),
    /// Logging could not be set up.
    #[error(transparent)]
    Log(#[from] LogInitError),

    /// A supervisor refused a spec or a request, or a child could not start: see
    /// [`SupervisorError`] for the cases.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),

    // ---- the variants below are being moved into the domain errors above ----------------
    /// The child could not become the process it was asked to be (undecodable arguments, a
    /// different binary, a protocol mismatch, or it died before reading its bootstrap).
    #[error("{name} failed to start: {reason}")]
    Bootstrap {
        /// The child's name.
        name: String,
        /// What the child (or the parent) reported.
        reason: String,
    },

    /// The OS refused to start the child.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// The child's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    // ---- synchronization primitives and shared memory (src/synchronize, src/sharedctypes) ----
    /// `release()` of a lock (or RLock) that nobody holds (Python's "release unlocked lock").
    #[error("cannot release an unlocked {what}")]
    ReleaseUnlocked {
        /// `"Lock"` or `"RLock"`.
        what: &'static str,
    },

    /// `release()` of an RLock held by another thread or another process: only its owner may
    /// release it (Python's "cannot release un-acquired lock").
    #[error(
        "cannot release this RLock: it is held by another {holder_kind} (pid {holder_pid}), and only the thread that acquired it may release it"
    )]
    NotOwner {
        /// `"thread"` (of this process) or `"process"`.
        holder_kind: &'static str,
        /// The holding process.
        holder_pid: i32,
    },

    /// A condition was waited on or notified by a thread that does not hold its lock.
    #[error("cannot {operation} a condition without holding its lock")]
    NotHeld {
        /// `"wait on"` or `"notify"`.
        operation: &'static str,
    },

    /// `release()` of a BoundedSemaphore would raise its value past the initial value.
    #[error("semaphore released too many times: its value cannot exceed {max}")]
    SemaphoreOverRelease {
        /// The initial (and largest) value.
        max: u32,
    },

    /// A barrier was aborted, a wait on it timed out, its action failed, or it was reset while
    /// this party waited (Python's `BrokenBarrierError`).
    #[error("the barrier is broken (aborted, timed out, its action failed, or reset)")]
    BrokenBarrier,

    /// More threads wait on a condition at once than its shared table has places for.
    #[error("more than {max} threads are already waiting on this condition")]
    TooManyWaiters {
        /// The table's size.
        max: usize,
    },

    /// An argument outside the range the operation accepts.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// Shared memory could not be created or mapped.
    #[error("shared memory: {reason}")]
    SharedMemory {
        /// What the OS (or the description received) said.
        reason: String,
    },

    /// A shared object's memory cannot be opened here: its home process and the process that
    /// sent the handle have both exited.
    #[error(
        "the shared object is gone: its home process (pid {home_pid}) and the sender have exited"
    )]
    HomeGone {
        /// The pid of the process that created the object.
        home_pid: i32,
    },

    /// An index past the end of a shared array (Python's `IndexError`).
    #[error("index {index} is out of range for a shared array of {len} elements")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The array's length.
        len: usize,
    },

    /// A sequence whose length does not fit the shared array it is written into.
    #[error("cannot write {got} elements into a shared array of {len} (starting at {start})")]
    LengthMismatch {
        /// Elements given.
        got: usize,
        /// The array's length.
        len: usize,
        /// Where the write starts.
        start: usize,
    },

    /// A typecode that is not one of the `array` module's (`b B h H i I l L q Q f d c`).
    #[error("unknown typecode {typecode:?}: expected one of b B h H i I l L q Q f d c")]
    UnknownTypeCode {
        /// The typecode given.
        typecode: char,
    },

    /// A typecode that does not describe the Rust element type asked for.
    #[error("typecode {typecode:?} does not describe the element type {rust_type}")]
    TypeCodeMismatch {
        /// The typecode given.
        typecode: char,
        /// The Rust type the value was declared with.
        rust_type: &'static str,
    },

    /// A byte string longer than the char array it is assigned to (Python's "byte string
    /// too long").
    #[error("a {len}-byte string does not fit a char array of {capacity}")]
    StringTooLong {
        /// The string's length.
        len: usize,
        /// The array's length.
        capacity: usize,
    },

    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What procvisor was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// A refused call becomes [`Error::Pool`], a failed task [`Error::Task`].
impl From<RunError> for Error {
    fn from(e: RunError) -> Error {
        match e {
            RunError::Pool(e) => Error::Pool(e),
            RunError::Task(e) => Error::Task(e),
        }
    }
}

impl Error {
    pub(crate) fn shared_memory(e: procvisor_actors::shm::SegmentError) -> Self {
        match e {
            procvisor_actors::shm::SegmentError::HomeGone { home_pid } => {
                Error::HomeGone { home_pid }
            }
            other => Error::SharedMemory {
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
