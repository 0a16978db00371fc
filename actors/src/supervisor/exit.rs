//! How a child ended: [`Exit`] (what happened to it) and [`ChildExit`] (that, as its supervisor
//! judges it: asked for or not).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::sys::{self, ExitStatus};

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Exit {
    /// It exited with this code (`0` is a normal exit). A child that is not an OS process (a
    /// supervisor nested in this process) reports `Code(0)` when it stopped normally.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It failed without an exit code of its own: a nested supervisor that gave up, or a child
    /// process that could not become what it was asked to be (a failed bootstrap).
    Failed(String),
}

impl Exit {
    /// Python's `exitcode`: the code, `-N` for signal `N`, `1` for [`Exit::Failed`].
    pub fn exitcode(&self) -> i32 {
        match self {
            Exit::Code(code) => *code,
            Exit::Signal(sig) => -sig,
            Exit::Failed(_) => 1,
        }
    }

    /// `exit(0)`, or a normal stop.
    pub fn is_normal(&self) -> bool {
        *self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => write!(f, "killed by {}", sys::signal_name(*sig)),
            Exit::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        match status {
            ExitStatus::Exited(code) => Exit::Code(code),
            ExitStatus::Signaled(sig) => Exit::Signal(sig),
        }
    }
}

/// A child's exit as its supervisor judges it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChildExit {
    /// How it ended.
    pub exit: Exit,
    /// Whether its supervisor had asked it to end (`terminate_child`, a restart of its
    /// siblings, the supervisor's own shutdown).
    pub requested: bool,
}

impl ChildExit {
    /// Whether this exit is a *shutdown*: one its supervisor asked for, or a death by SIGTERM
    /// (someone asked the process to terminate — like systemd's `Restart=on-failure`, which
    /// counts SIGTERM as a clean exit).
    pub fn is_shutdown(&self) -> bool {
        self.requested || self.exit == Exit::Signal(libc::SIGTERM)
    }

    /// Whether this exit is abnormal: neither a normal exit (code 0) nor a shutdown. `Transient`
    /// children are restarted after abnormal exits only.
    pub fn is_abnormal(&self) -> bool {
        !self.exit.is_normal() && !self.is_shutdown()
    }
}

impl fmt::Display for ChildExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requested {
            write!(f, "{} (shut down)", self.exit)
        } else {
            fmt::Display::fmt(&self.exit, f)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(exit: Exit, requested: bool) -> ChildExit {
        ChildExit { exit, requested }
    }

    #[test]
    fn abnormal_exits() {
        assert!(!exit(Exit::Code(0), false).is_abnormal());
        assert!(exit(Exit::Code(3), false).is_abnormal());
        assert!(exit(Exit::Signal(libc::SIGKILL), false).is_abnormal());
        assert!(!exit(Exit::Signal(libc::SIGTERM), false).is_abnormal());
        assert!(exit(Exit::Failed("x".into()), false).is_abnormal());
        assert!(!exit(Exit::Code(3), true).is_abnormal());
        assert!(!exit(Exit::Signal(libc::SIGKILL), true).is_abnormal());
    }

    #[test]
    fn exitcodes_and_display() {
        assert_eq!(Exit::Signal(9).exitcode(), -9);
        assert_eq!(Exit::Failed("gave up".into()).exitcode(), 1);
        assert_eq!(Exit::Signal(15).to_string(), "killed by SIGTERM");
        assert_eq!(
            exit(Exit::Code(0), true).to_string(),
            "exit code 0 (shut down)"
        );
    }
}
