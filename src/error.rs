//! Errors: one type per domain (per operation family where a caller matches them), each
//! converting into the crate's [`Error`] so that `?` works across domains.
//!
//! | domain | types |
//! |---|---|
//! | processes | [`StartError`], [`JoinError`], [`SignalError`], [`StartMethodAlreadySet`] |
//! | connections | [`PipeError`], [`SendError`], [`RecvError`], [`WaitError`], [`TryCloneError`], [`ChallengeError`], [`AuthError`], [`ConnectError`], [`AddressError`] |
//! | queues | [`PutError`], [`GetError`], [`QueueError`] |
//! | synchronization | [`ReleaseError`], [`ConditionError`], [`BrokenBarrier`] |
//! | shared memory | [`SharedError`] (every shared object's constructor; `Value` / `Array` access) |
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
pub use shared::{SharedError, SharedSetting};
pub use sync::{BrokenBarrier, ConditionError, ConditionOp, Holder, ReleaseError};

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
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
