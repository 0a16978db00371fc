//! Errors of starting, joining and signalling processes, and of choosing a start method.

use std::io;

/// Why [`Process::start`](crate::Process::start) did not start a child.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A process was started before `procvisor::init()` ran in this program.
    #[error(
        "procvisor::init() has not run: call it first in main (or put procvisor::test_init!() in \
         an integration-test crate) before starting processes"
    )]
    NotInitialized,

    /// A daemonic process tried to start a child.
    #[error("daemonic processes are not allowed to have children ({parent} is daemonic)")]
    DaemonicParent {
        /// The current (daemonic) process's name.
        parent: String,
    },

    /// The process is exiting and no longer starts children.
    #[error("cannot start {name}: this process is shutting down")]
    ShuttingDown {
        /// The process that was to be started.
        name: String,
    },

    /// The target's arguments could not be encoded for the child (Python's pickling error).
    #[error("cannot encode the arguments of {name}: {reason}")]
    Encode {
        /// The process that was to be started.
        name: String,
        /// The codec's explanation.
        reason: String,
    },

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
}

/// Why [`Child::join`](crate::Child::join) could not report a normal exit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The child exited without running its target: its bootstrap failed (undecodable
    /// arguments, a different binary, a protocol mismatch, its parent gone). Its exit code is
    /// 255.
    #[error("{name} failed to start: {reason}")]
    Bootstrap {
        /// The child's name.
        name: String,
        /// What the child reported.
        reason: String,
    },
}

/// Why a signal could not be sent to a child ([`Child::terminate`](crate::Child::terminate),
/// [`Child::kill`](crate::Child::kill)).
#[derive(Debug, thiserror::Error)]
#[error("cannot send {signal} to {name}: {source}")]
pub struct SignalError {
    /// The child's name.
    pub name: String,
    /// The signal's name (`SIGTERM`, `SIGKILL`).
    pub signal: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}
