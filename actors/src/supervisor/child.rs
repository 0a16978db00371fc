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
use std::sync::Arc;

use super::event::EventBus;
use super::exit::Exit;
use super::handle::SupervisorRef;
use super::request::BoxFuture;

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

    /// Starts one incarnation, or declines to: `Ok(None)` is OTP's `ignore` (a start function
    /// returning `ignore` instead of a pid). The supervisor calls this one; the default is
    /// [`start`](StartChild::start), which never declines. A child that may decline overrides
    /// it (and makes `start` treat a decline as a failure).
    ///
    /// A declined child does not run and is not an error: at the supervisor's start, by
    /// `start_child` or `restart_child`, and in a restart, it is kept as a stopped child (a
    /// temporary one, or a dynamic one, is not kept), and the supervisor publishes
    /// [`Event::ChildIgnored`](super::Event::ChildIgnored).
    #[doc(alias = "ignore")]
    fn start_or_ignore(
        &self,
        ctx: StartContext,
    ) -> BoxFuture<'static, Result<Option<Box<dyn RunningChild>>, String>> {
        let started = self.start(ctx);
        Box::pin(async move { started.await.map(Some) })
    }
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

    /// A handle on this incarnation, if the child is a supervisor (nested in this process, or
    /// in its own): what its parent's `subtree` answers. `None` by default.
    fn supervisor(&self) -> Option<SupervisorRef> {
        None
    }
}
