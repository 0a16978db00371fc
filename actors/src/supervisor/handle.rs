//! [`SupervisorRef`]: a handle to a running supervisor, usable from any thread (blocking calls)
//! and any tokio runtime (async calls) — the supervisor's actor in this process, or one in
//! another process reached over its supervision link. Its requests are in `requests.rs`.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;

use super::error::SupervisorError;
use super::event::{EventBus, EventStream};
use super::exit::Exit;
use super::strategy::Strategy;
use super::{Shared, SupMsg};

/// A handle to a supervisor. Cloning gives another handle to the same supervisor; dropping
/// handles does not stop it (`procvisor::Supervisor` does, when its last handle goes).
///
/// A handle names one incarnation of a supervisor, as a pid does in OTP: once that incarnation
/// has exited, its handle answers [`SupervisorError::NotRunning`], even if the supervisor's
/// parent has restarted it (ask the parent for a handle on the new one with `subtree`).
#[derive(Clone)]
pub struct SupervisorRef {
    pub(crate) route: Route,
    pub(crate) shared: Arc<Shared>,
}

/// Where a handle's requests go.
#[derive(Clone)]
pub(crate) enum Route {
    /// The supervisor's actor, in this process.
    Actor(ActorRef<SupMsg>),
    /// A supervisor in another process: `below` are the child ids from that process's root
    /// supervisor down to it (empty: the root itself).
    Remote {
        transport: Arc<dyn Transport>,
        below: Vec<String>,
    },
}

/// How an encoded request reaches a supervisor in another process, and its answer comes back
/// (implemented by `RemoteTree`, over a supervision link).
pub(crate) trait Transport: Send + Sync + 'static {
    /// Sends `request` (an encoded `RemoteRequest`); `answer` gets the encoded answer, or why
    /// there is none (the link broke, the process exited). `supervisor` names the target in
    /// those errors.
    fn request(&self, supervisor: &str, request: Vec<u8>, answer: AnswerFn);

    /// The handle on the supervisor `below` the remote root, incarnation `instance` (the same
    /// shared state for every handle on one incarnation).
    fn handle(
        self: Arc<Self>,
        below: Vec<String>,
        path: String,
        strategy: Strategy,
        instance: u64,
    ) -> SupervisorRef;
}

/// Receives the encoded answer to a remote request.
pub(crate) type AnswerFn = Box<dyn FnOnce(Result<Vec<u8>, SupervisorError>) + Send>;

impl std::fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorRef")
            .field("path", &self.shared.path)
            .field("strategy", &self.shared.strategy)
            .field("remote", &matches!(self.route, Route::Remote { .. }))
            .field("exit", &self.shared.exit())
            .finish()
    }
}

impl SupervisorRef {
    pub(crate) fn new(actor: ActorRef<SupMsg>, shared: Arc<Shared>) -> SupervisorRef {
        SupervisorRef {
            route: Route::Actor(actor),
            shared,
        }
    }

    /// The supervisor's path (`top`, `top/db`, …).
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// Whether it runs in another process (requests travel over its supervision link).
    pub fn is_remote(&self) -> bool {
        matches!(self.route, Route::Remote { .. })
    }

    /// Which incarnation of the supervisor at its path this handle names: the pid of the
    /// process it runs in and a number unique in that process.
    pub(crate) fn instance(&self) -> u64 {
        self.shared.instance
    }

    /// How many events its bus had published when its start was over: a stream subscribed
    /// before the start reads the start's events as its first this many
    /// ([`EventStream::drain_first`](crate::supervisor::EventStream::drain_first)). 0 for a
    /// handle on a supervisor in another process.
    pub fn events_of_start(&self) -> u64 {
        self.shared
            .events_of_start
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Its strategy.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// A new subscription to its events (and its subtree's) from now on. The stream ends
    /// once this incarnation has exited.
    pub fn events(&self) -> EventStream {
        self.shared.bus.subscribe()
    }

    /// Its bus (nested supervisors forward to it).
    pub fn bus(&self) -> &Arc<EventBus> {
        &self.shared.bus
    }

    /// Whether it is still running.
    pub fn is_alive(&self) -> bool {
        self.shared.exit().is_none()
    }

    /// How it ended, if it has: `Code(0)` after `stop` (or an auto-shutdown), `Failed` when
    /// it gave up.
    pub fn exit(&self) -> Option<Exit> {
        self.shared.exit()
    }

    /// Waits until it exits (on its own: it gave up; or stopped by someone).
    pub fn wait(&self) -> Exit {
        self.shared
            .wait_exit(None)
            .expect("a wait without timeout returns the exit")
    }

    /// Waits until it exits or `timeout` passes (`None`).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Exit> {
        self.shared.wait_exit(Some(timeout))
    }

    /// Waits asynchronously until it exits.
    pub async fn wait_async(&self) -> Exit {
        self.shared.wait_exit_async().await
    }

    pub(crate) fn not_running(&self) -> SupervisorError {
        SupervisorError::NotRunning {
            supervisor: self.shared.path.clone(),
        }
    }
}
