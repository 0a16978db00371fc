//! Errors of process pools, one type per question a caller asks:
//!
//! * [`PoolError`]: the pool refused a request — building it, submitting to it, joining it.
//!   Returned by [`PoolBuilder::build`](crate::PoolBuilder::build), the `submit*` and `imap*`
//!   methods and [`Pool::join`](crate::Pool::join).
//! * [`TaskError`]: a submitted task produced no value. Returned by
//!   [`AsyncResult::get`](crate::AsyncResult::get) and by each item of an
//!   [`IMapIterator`](crate::IMapIterator); given to error callbacks.
//! * [`RunError`]: either of the two, for the calls that submit and wait in one step
//!   ([`Pool::apply`](crate::Pool::apply), [`Pool::map`](crate::Pool::map),
//!   [`Pool::starmap`](crate::Pool::starmap) and the builders' `run`).
//! * [`ResultTimeout`]: [`IMapIterator::next_timeout`](crate::IMapIterator::next_timeout) saw
//!   no result in time (nothing is lost: ask again).

use std::time::Duration;

use procvisor_actors::supervisor::Exit;

/// Why a pool refused a request: building it, submitting a task to it, joining it.
///
/// A refused submission never ran, so a caller can retry it on another pool. Once a task is
/// submitted, what happens to it is a [`TaskError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool was asked for no worker processes.
    #[error("a pool needs at least one worker process (asked for {processes})")]
    NoWorkers {
        /// The number asked for.
        processes: usize,
    },

    /// The initializer's arguments could not be encoded.
    #[error("cannot encode the initializer's arguments: {reason}")]
    EncodeInitializer {
        /// The codec's explanation.
        reason: String,
    },

    /// A worker process could not be started while the pool was built.
    #[error("cannot start the pool's workers: {reason}")]
    WorkerStart {
        /// Why (the start's error).
        reason: String,
    },

    /// A task was submitted after [`close`](crate::Pool::close) (Python's "Pool not
    /// running").
    #[error("the pool is closed: it accepts no new tasks")]
    Closed,

    /// A task was submitted after [`terminate`](crate::Pool::terminate).
    #[error("the pool is terminated: it accepts no new tasks")]
    Terminated,

    /// The pool cannot keep its workers running (its initializer fails), so it stopped: the
    /// build failed, or a task was submitted after it broke.
    #[error("the pool is broken: {reason}")]
    Broken {
        /// Why.
        reason: String,
    },

    /// [`join`](crate::Pool::join) on a pool that was neither closed nor terminated (it would
    /// wait forever).
    #[error("cannot join a running pool: call close() or terminate() first")]
    StillRunning,
}

/// Why a submitted task produced no value.
///
/// Only that task failed; the pool keeps serving — except for [`TaskError::PoolTerminated`]
/// and [`TaskError::PoolBroken`], which say the pool ended while the task waited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task returned `Err`; the message is the error's `Display`. Its worker keeps
    /// serving.
    #[error("the task failed: {message}")]
    Failed {
        /// The task's error, as text.
        message: String,
    },

    /// The task panicked. Its worker keeps serving.
    #[error("the task panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },

    /// The worker running the task died (killed, crashed, or exited) before answering. The
    /// pool replaced it.
    #[error("pool worker (pid {pid}) died while running the task: {exit}")]
    WorkerLost {
        /// The worker's process id.
        pid: i32,
        /// How it ended.
        exit: Exit,
    },

    /// The task ran longer than its timeout: its worker was killed and replaced.
    #[error("the task did not finish within {timeout:?}; its worker was killed and replaced")]
    Timeout {
        /// The timeout in force.
        timeout: Duration,
    },

    /// The task's arguments could not be encoded in this process (Python's pickling error),
    /// so it was never sent (for a map: nor were the chunks after the unencodable one).
    #[error("cannot encode the task's arguments: {reason}")]
    EncodeArguments {
        /// The codec's explanation.
        reason: String,
    },

    /// The task's result could not be encoded in the worker, or is larger than a connection
    /// carries.
    #[error("cannot encode the task's result: {reason}")]
    EncodeResult {
        /// The codec's explanation.
        reason: String,
    },

    /// The worker could not decode the task's arguments.
    #[error("cannot decode the task's arguments in the worker: {reason}")]
    DecodeArguments {
        /// The codec's explanation.
        reason: String,
    },

    /// This process could not decode the worker's answer.
    #[error("cannot decode the task's result: {reason}")]
    DecodeResult {
        /// The codec's explanation.
        reason: String,
    },

    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,

    /// The pool could not keep workers running, so it failed its tasks.
    #[error("the pool is broken: {reason}")]
    PoolBroken {
        /// Why.
        reason: String,
    },
}

/// Why a call that submits and waits ([`Pool::apply`](crate::Pool::apply),
/// [`Pool::map`](crate::Pool::map), [`Pool::starmap`](crate::Pool::starmap),
/// [`TaskBuilder::run`](crate::pool::TaskBuilder::run),
/// [`MapBuilder::run`](crate::pool::MapBuilder::run)) produced no value.
///
/// [`RunError::Pool`]: the pool refused the call, nothing ran. [`RunError::Task`]: it was
/// submitted and failed. A pool terminated *before* the call is
/// `Pool(PoolError::Terminated)`; one terminated *while* it waited is
/// `Task(TaskError::PoolTerminated)`.
///
/// `?` turns it into [`Error::Pool`](crate::Error::Pool) or [`Error::Task`](crate::Error::Task).
///
/// ```standalone_crate
/// use procvisor::Pool;
/// use procvisor::error::{PoolError, RunError, TaskError};
///
/// fn check(x: i32) -> Result<i32, String> {
///     if x < 0 { Err(format!("{x} is negative")) } else { Ok(x) }
/// }
///
/// fn main() -> procvisor::Result<()> {
///     procvisor::init();
///     let pool = Pool::new(1)?;
///     match pool.apply(check, (-1,)) {
///         Err(RunError::Task(TaskError::Failed { message })) => assert_eq!(message, "-1 is negative"),
///         other => panic!("{other:?}"),
///     }
///     pool.close();
///     assert_eq!(pool.apply(check, (1,)), Err(RunError::Pool(PoolError::Closed)));
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The pool refused the call.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The task (or, for a map, its first failed item) failed.
    #[error(transparent)]
    Task(#[from] TaskError),
}

/// No result arrived within the timeout given to
/// [`IMapIterator::next_timeout`](crate::IMapIterator::next_timeout) (Python's
/// `TimeoutError`). The tasks keep running and nothing is lost: ask again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no result within {timeout:?} (the tasks are still running)")]
pub struct ResultTimeout {
    /// The timeout given.
    pub timeout: Duration,
}
