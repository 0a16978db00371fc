//! Errors of process pools: the pool's own state, and the outcome of one task.

use std::time::Duration;

use procvisor_actors::supervisor::Exit;

/// Why a pool refused a request (building it, submitting to it, joining it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool was asked for no worker processes.
    #[error("a pool needs at least one worker process (asked for {processes})")]
    NoWorkers {
        /// The number asked for.
        processes: usize,
    },

    /// A task was submitted after [`close`](crate::Pool::close).
    #[error("the pool is closed: it accepts no new tasks")]
    Closed,

    /// A task was submitted after [`terminate`](crate::Pool::terminate).
    #[error("the pool is terminated: it accepts no new tasks")]
    Terminated,

    /// [`join`](crate::Pool::join) on a pool that was neither closed nor terminated (it
    /// would wait forever).
    #[error("cannot join a running pool: call close() or terminate() first")]
    StillRunning,

    /// The pool cannot keep its workers running (its initializer fails), so it stopped and
    /// failed its tasks.
    #[error("the pool is broken: {reason}")]
    Broken {
        /// Why.
        reason: String,
    },

    /// The initializer's arguments could not be encoded.
    #[error("cannot encode the initializer's arguments: {reason}")]
    Encode {
        /// The codec's explanation.
        reason: String,
    },
}

/// Why a pool task produced no value. Only that task failed; the pool keeps serving (except
/// for [`TaskError::PoolTerminated`] and [`TaskError::PoolBroken`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task returned `Err`; the message is the error's `Display`.
    #[error("the task failed: {message}")]
    Failed {
        /// The task's error, as text.
        message: String,
    },

    /// The task panicked.
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

    /// The task's arguments could not be encoded, or its result in the worker.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// `"the task's arguments"` or `"the task's result"`.
        what: &'static str,
        /// The codec's explanation.
        reason: String,
    },

    /// The worker could not decode the task's arguments, or the caller its result.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// `"the task's arguments"` or `"the task's result"`.
        what: &'static str,
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
