//! What a supervisor supervises: anything that can be started, waited for and stopped.
//!
//! Two small traits are the whole contract. [`StartChild`] is the *start* field of a child spec:
//! the supervisor calls it for the first start and for every restart, and gets back a
//! [`RunningChild`]: one incarnation, with a pid (if it is an OS process), a future that
//! resolves when it exits, and the three ways to end it (a graceful stop request, terminate,
//! kill). `procvisor` implements them for worker processes and for supervisors running in their
//! own OS process; [`ChildSpec::supervisor`](super::ChildSpec::supervisor) implements them for
//! supervisors nested in this process. Anything else (a thread pool, a container, a remote
//! worker) can implement them too.
//!
//! Both traits are called on the node's runtime: they must not block. `start` returns a future,
//! so a child that needs blocking work to start (forking a process) runs it on a blocking
//! thread (`tokio::task::spawn_blocking`) and awaits it.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::event::EventBus;

/// A boxed, sendable future (what the child traits return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The extra arguments a `SimpleOneForOne` child was started with: kept by the supervisor and
/// handed to every restart of that child.
pub type ExtraArgs = Arc<dyn Any + Send + Sync>;

/// What a [`StartChild`] is told when it is asked to start.
#[derive(Clone)]
pub struct StartContext {
    /// The child's id.
    pub id: String,
    /// The path of the supervisor starting it (`top`, `top/db`, …).
    pub supervisor: String,
    /// The starting supervisor's event bus: a nested supervisor publishes its own events there
    /// so that subscribers of its ancestors see the whole tree.
    pub events: Arc<EventBus>,
    /// The extra arguments of a dynamic (`SimpleOneForOne`) child.
    pub extra: Option<ExtraArgs>,
}

impl StartContext {
    /// The path a nested supervisor started under this context takes: `supervisor/id`.
    pub fn child_path(&self) -> String {
        format!("{}/{}", self.supervisor, self.id)
    }
}

impl fmt::Debug for StartContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartContext")
            .field("id", &self.id)
            .field("supervisor", &self.supervisor)
            .field("extra", &self.extra.is_some())
            .finish()
    }
}

/// The *start* of a child spec: starts a fresh incarnation of the child each time it is called.
///
/// The future resolves once the child has started (for a process: it exists, and if the spec
/// asks for it, it has reported ready), or with the reason it could not start. It runs on the
/// node's runtime and must not block.
pub trait StartChild: Send + Sync + 'static {
    /// Starts one incarnation.
    fn start(&self, ctx: StartContext)
    -> BoxFuture<'static, Result<Box<dyn RunningChild>, String>>;
}

/// One started incarnation of a child.
///
/// Dropping it must end the child if it is still running (a supervisor that dies takes its
/// children with it); the supervisor always waits for the exit it caused before dropping.
pub trait RunningChild: Send + Sync + 'static {
    /// The OS process id, for children that are processes.
    fn pid(&self) -> Option<i32>;

    /// Resolves when the child has exited (at once if it already has). May be called any number
    /// of times; every future gives the same [`Exit`].
    fn wait_exit(&self) -> BoxFuture<'static, Exit>;

    /// Asks the child to stop gracefully (a process's `stop_requested()` turns true).
    fn request_stop(&self);

    /// Ends the child firmly (SIGTERM for a process).
    fn terminate(&self);

    /// Ends the child at once (SIGKILL for a process).
    fn kill(&self);

    /// Called once the supervisor has published this child's start (or restart) event. A child
    /// that publishes events of its own (a supervisor in another process, forwarding its
    /// subtree's) holds them until then, so that they never come before its start.
    fn started(&self) {}
}

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
            Exit::Signal(sig) => write!(f, "killed by {}", crate::sys::signal_name(*sig)),
            Exit::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

impl From<crate::sys::ExitStatus> for Exit {
    fn from(status: crate::sys::ExitStatus) -> Exit {
        match status {
            crate::sys::ExitStatus::Exited(code) => Exit::Code(code),
            crate::sys::ExitStatus::Signaled(sig) => Exit::Signal(sig),
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
