//! [`Error`]: every way a procvisor call can fail, each with a message a person understands.

use std::io;

/// The result type of procvisor's fallible calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, one variant per cause (Python's exceptions, as Rust values).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A process was started before `procvisor::init()` ran in this program.
    #[error(
        "procvisor::init() has not run: call it first in main (or put procvisor::test_init!() in \
         an integration-test crate) before starting processes"
    )]
    NotInitialized,

    /// `start()` was called twice on the same process.
    #[error("cannot start a process twice ({name} was already started)")]
    AlreadyStarted {
        /// The process's name.
        name: String,
    },

    /// `join()` (or another call that needs a running child) before `start()`.
    #[error("can only join a started process: {name} has not been started")]
    NotStarted {
        /// The process's name.
        name: String,
    },

    /// A process tried to join itself, which would wait forever.
    #[error("a process cannot join itself ({name})")]
    JoinSelf {
        /// The process's name.
        name: String,
    },

    /// The operation needs a child of this process (e.g. signalling the current or parent process).
    #[error("{name} is not a child of this process, so it cannot be {action}")]
    NotAChild {
        /// The process's name.
        name: String,
        /// What was attempted ("joined", "terminated", …).
        action: &'static str,
    },

    /// `set_daemon` (or another setting that only applies before start) after `start()`.
    #[error("cannot change {setting} of {name}: the process has already started")]
    AlreadyRunning {
        /// The process's name.
        name: String,
        /// The setting ("daemon", "start method", "authkey").
        setting: &'static str,
    },

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

    /// A value could not be encoded for another process (Python's pickling error).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
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

    /// `set_start_method` after the start method was already chosen.
    #[error("the start method has already been set to {current}; pass force = true to change it")]
    StartMethodAlreadySet {
        /// The method in force.
        current: crate::StartMethod,
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

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
