//! [`SupervisorRef`]: a handle to a running supervisor actor, usable from any thread (blocking
//! calls) and any tokio runtime (`_async` calls).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde::{Deserialize, Serialize};

use super::child::BoxFuture;
use super::error::SupervisorError;
use super::event::{EventBus, EventStream};
use super::exit::Exit;
use super::spec::{ChildSpec, ChildType, ExtraType, SupervisorSpec};
use super::strategy::Strategy;
use super::{Shared, SupMsg, spawn_supervisor};
use crate::reply::{self, Pending, Reply};
use crate::runtime;

/// What `which_children` says about one child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// Its id (`template-N` for the dynamic children of a `SimpleOneForOne` supervisor).
    pub id: String,
    /// Its pid while it runs (if it is a process).
    pub pid: Option<i32>,
    /// Worker or supervisor.
    pub child_type: ChildType,
    /// Running, being restarted, or stopped.
    pub status: ChildStatus,
    /// How many times the supervisor restarted it.
    pub restarts: u32,
}

/// Whether a child runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChildStatus {
    /// It runs.
    Running,
    /// Its restart failed and will be tried again.
    Restarting,
    /// It is not running (terminated, or exited and not restarted); its spec is kept.
    Stopped,
}

/// What `count_children` says, as OTP's `count_children`.
///
/// For a `SimpleOneForOne` supervisor, `specs` is 1 (its one spec, the template of its
/// children, as in OTP) and `supervisors` / `workers` count its dynamic children.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChildCounts {
    /// Child specs, running or not (`SimpleOneForOne`: 1, the template).
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Children that are supervisors, running or not.
    pub supervisors: usize,
    /// Children that are workers, running or not.
    pub workers: usize,
}

/// A handle to a supervisor. Cloning gives another handle to the same supervisor; dropping
/// handles does not stop it (`procvisor::Supervisor` does, when its last handle goes).
#[derive(Clone)]
pub struct SupervisorRef {
    actor: ActorRef<SupMsg>,
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorRef")
            .field("path", &self.shared.path)
            .field("strategy", &self.shared.strategy)
            .field("exit", &self.shared.exit())
            .finish()
    }
}

impl SupervisorRef {
    pub(crate) fn new(actor: ActorRef<SupMsg>, shared: Arc<Shared>) -> SupervisorRef {
        SupervisorRef { actor, shared }
    }

    /// Starts a supervisor and its children (in order) on this process's node, and returns
    /// once all have started — or fails with the first child that could not start, after
    /// stopping those already started. Blocks the calling thread.
    pub fn start(spec: SupervisorSpec) -> Result<SupervisorRef, SupervisorError> {
        Self::start_with_bus(spec, EventBus::new(None))
    }

    /// [`start`](SupervisorRef::start) publishing on `bus` (subscribe to it first to see the
    /// first children start).
    pub fn start_with_bus(
        spec: SupervisorSpec,
        bus: Arc<EventBus>,
    ) -> Result<SupervisorRef, SupervisorError> {
        let name = spec.get_name().to_string();
        Self::on_node(spec, name.clone(), bus)
            .wait()
            .unwrap_or(Err(SupervisorError::NotRunning { supervisor: name }))
    }

    /// [`start`](SupervisorRef::start) for async callers (any runtime).
    pub async fn start_async(spec: SupervisorSpec) -> Result<SupervisorRef, SupervisorError> {
        Self::start_with_bus_async(spec, EventBus::new(None)).await
    }

    /// [`start_with_bus`](SupervisorRef::start_with_bus) for async callers.
    pub async fn start_with_bus_async(
        spec: SupervisorSpec,
        bus: Arc<EventBus>,
    ) -> Result<SupervisorRef, SupervisorError> {
        let name = spec.get_name().to_string();
        Self::on_node(spec, name.clone(), bus)
            .wait_async()
            .await
            .unwrap_or(Err(SupervisorError::NotRunning { supervisor: name }))
    }

    /// [`start_with_bus`](SupervisorRef::start_with_bus) under another path (a nested
    /// supervisor running in its own OS process is named after its place in the tree).
    pub fn start_at(
        spec: SupervisorSpec,
        path: String,
        bus: Arc<EventBus>,
    ) -> Result<SupervisorRef, SupervisorError> {
        let supervisor = path.clone();
        Self::on_node(spec, path, bus)
            .wait()
            .unwrap_or(Err(SupervisorError::NotRunning { supervisor }))
    }

    fn on_node(
        spec: SupervisorSpec,
        path: String,
        bus: Arc<EventBus>,
    ) -> Pending<Result<SupervisorRef, SupervisorError>> {
        let (reply, pending) = reply::channel();
        runtime::spawn(async move { reply.send(spawn_supervisor(spec, path, bus).await) });
        pending
    }

    /// The supervisor's path (`top`, `top/db`, …).
    pub fn path(&self) -> &str {
        &self.shared.path
    }

    /// How many events its bus had published when its start was over: a stream subscribed
    /// before the start reads the start's events as its first this many
    /// ([`EventStream::drain_first`](crate::supervisor::EventStream::drain_first)).
    pub fn events_of_start(&self) -> u64 {
        self.shared
            .events_of_start
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Its strategy.
    pub fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// A new subscription to its events (and its subtree's) from now on.
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

    /// How it ended, if it has: `Code(0)` after `stop`, `Failed` when it gave up.
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

    fn not_running(&self) -> SupervisorError {
        SupervisorError::NotRunning {
            supervisor: self.shared.path.clone(),
        }
    }

    /// Sends a request to the actor; its answer comes through the returned [`Request`].
    fn request<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<Result<T, SupervisorError>>) -> SupMsg,
    ) -> Request<T> {
        let (reply, pending) = reply::channel();
        let supervisor = self.shared.path.clone();
        match self.actor.cast(make(reply)) {
            Ok(()) => Request::pending(supervisor, pending),
            Err(_) => Request::failed(supervisor, self.not_running()),
        }
    }

    /// Adds a child (at the end of the start order) and starts it; answers its pid. Errors:
    /// an id already in use ([`SupervisorError::AlreadyStarted`] /
    /// [`SupervisorError::AlreadyPresent`]), a failed start (the spec is not kept).
    pub fn start_child(&self, spec: ChildSpec) -> Request<Option<i32>> {
        self.request(|r| SupMsg::StartChild(spec, r))
    }

    /// `SimpleOneForOne`: starts a new child from the template with `extra` arguments; answers
    /// its id (`template-N`) and pid.
    pub fn start_child_with<E: Any + Send + Sync>(
        &self,
        extra: E,
    ) -> Request<(String, Option<i32>)> {
        self.request(|r| SupMsg::StartDynamic(Arc::new(extra), ExtraType::of::<E>(), r))
    }

    /// Stops child `id` (as its shutdown says) and keeps its spec, stopped — unless it is
    /// temporary or dynamic, which are forgotten. Answers once it has exited.
    ///
    /// Terminating a dynamic child (of a `SimpleOneForOne` supervisor) that has already
    /// exited, or was already terminated, succeeds: it is gone either way, as in OTP. An id
    /// the supervisor never had is [`SupervisorError::ChildNotFound`] (so is a static
    /// temporary child once it has exited and been forgotten, as in OTP).
    pub fn terminate_child(&self, id: &str) -> Request<()> {
        self.request(|r| SupMsg::TerminateChild(id.into(), r))
    }

    /// Starts again the stopped child `id`; answers its pid.
    pub fn restart_child(&self, id: &str) -> Request<Option<i32>> {
        self.request(|r| SupMsg::RestartChild(id.into(), r))
    }

    /// Forgets the stopped child `id`.
    pub fn delete_child(&self, id: &str) -> Request<()> {
        self.request(|r| SupMsg::DeleteChild(id.into(), r))
    }

    /// Kills child `id` (SIGKILL) as if it crashed: its supervisor handles the exit as usual.
    /// For tests of supervision trees.
    pub fn kill_child(&self, id: &str) -> Request<()> {
        self.request(|r| SupMsg::KillChild(id.into(), r))
    }

    /// The spec of child `id` (OTP's `get_childspec`): for a dynamic child (or the template's
    /// id), its supervisor's template. The spec can be given to `start_child`, here or to
    /// another supervisor.
    #[doc(alias = "get_childspec")]
    pub fn child_spec(&self, id: &str) -> Request<ChildSpec> {
        self.request(|r| SupMsg::ChildSpec(id.into(), r))
    }

    /// The children in start order.
    pub fn which_children(&self) -> Request<Vec<ChildInfo>> {
        self.request(SupMsg::WhichChildren)
    }

    /// Counts of specs, running children, supervisors and workers.
    pub fn count_children(&self) -> Request<ChildCounts> {
        self.request(SupMsg::CountChildren)
    }

    /// Stops every child in reverse start order, then the supervisor (exit `Code(0)`). Returns
    /// once all have exited; stopping a supervisor that has already exited is not an error.
    pub fn stop(&self) {
        // A supervisor that already exited answers NotRunning: nothing left to stop.
        let _ = self.request(|r| SupMsg::Stop(Some(r))).wait();
        self.wait();
    }

    /// [`stop`](SupervisorRef::stop) for async callers.
    pub async fn stop_async(&self) {
        let _ = self.request(|r| SupMsg::Stop(Some(r))).await;
        self.wait_async().await;
    }

    /// Asks the supervisor to stop without waiting.
    pub fn request_stop(&self) {
        let _ = self.actor.cast(SupMsg::Stop(None));
    }

    /// Kills the supervisor actor at once: its children are killed (SIGKILL), not stopped.
    pub fn kill(&self) {
        self.actor.kill();
    }
}

/// A request sent to a supervisor, whose answer is awaited either way: [`wait`](Request::wait)
/// blocks the calling thread (any thread, inside or outside a tokio runtime), `.await` waits
/// asynchronously (any runtime). One request type serves both, so every supervisor operation
/// is written once.
///
/// The request is sent when it is made: dropping it without waiting does not cancel the
/// operation, it only discards the answer.
#[must_use = "the request is sent; .wait() or .await gives its answer"]
pub struct Request<T> {
    answer: Result<Answer<T>, SupervisorError>,
    supervisor: String,
}

/// Where a request's answer comes from.
enum Answer<T> {
    /// The supervisor answers through this reply.
    Pending(Pending<Result<T, SupervisorError>>),
    /// Another request's answer, converted ([`Request::map`]).
    Mapped(Box<dyn MappedAnswer<T>>),
}

/// A request's answer converted: the two waits of [`Request`], behind a type that forgets the
/// original answer's type.
trait MappedAnswer<T>: Send {
    fn wait(self: Box<Self>) -> Result<T, SupervisorError>;
    fn wait_async(self: Box<Self>) -> BoxFuture<'static, Result<T, SupervisorError>>;
}

struct Map<U, F> {
    inner: Request<U>,
    convert: F,
}

impl<U, T, F> MappedAnswer<T> for Map<U, F>
where
    U: Send + 'static,
    F: FnOnce(U) -> T + Send + 'static,
{
    fn wait(self: Box<Self>) -> Result<T, SupervisorError> {
        self.inner.wait().map(self.convert)
    }

    fn wait_async(self: Box<Self>) -> BoxFuture<'static, Result<T, SupervisorError>> {
        Box::pin(async move { self.inner.await.map(self.convert) })
    }
}

impl<T: Send + 'static> Request<T> {
    /// A request whose answer will come through `pending`.
    pub(crate) fn pending(
        supervisor: String,
        pending: Pending<Result<T, SupervisorError>>,
    ) -> Self {
        Request {
            answer: Ok(Answer::Pending(pending)),
            supervisor,
        }
    }

    /// A request answered already: `error` (it could not even be sent).
    pub(crate) fn failed(supervisor: String, error: SupervisorError) -> Self {
        Request {
            answer: Err(error),
            supervisor,
        }
    }

    /// The path of the supervisor the request went to.
    pub fn supervisor(&self) -> &str {
        &self.supervisor
    }

    /// Blocks until the supervisor answers. A supervisor that exits before answering gives
    /// [`SupervisorError::NotRunning`].
    pub fn wait(self) -> Result<T, SupervisorError> {
        let supervisor = self.supervisor;
        match self.answer? {
            Answer::Pending(pending) => pending
                .wait()
                .unwrap_or(Err(SupervisorError::NotRunning { supervisor })),
            Answer::Mapped(mapped) => mapped.wait(),
        }
    }

    /// The same request, its answer converted by `convert` when it comes (errors pass through
    /// unchanged).
    ///
    /// ```no_run
    /// # fn demo(sup: procvisor_actors::supervisor::SupervisorRef) {
    /// let running = sup.count_children().map(|counts| counts.active);
    /// assert_eq!(running.wait(), Ok(0));
    /// # }
    /// ```
    pub fn map<U, F>(self, convert: F) -> Request<U>
    where
        U: Send + 'static,
        F: FnOnce(T) -> U + Send + 'static,
    {
        let supervisor = self.supervisor.clone();
        Request {
            answer: Ok(Answer::Mapped(Box::new(Map {
                inner: self,
                convert,
            }))),
            supervisor,
        }
    }
}

impl<T: Send + 'static> std::future::IntoFuture for Request<T> {
    type Output = Result<T, SupervisorError>;
    type IntoFuture = BoxFuture<'static, Result<T, SupervisorError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let supervisor = self.supervisor;
            match self.answer? {
                Answer::Pending(pending) => pending
                    .wait_async()
                    .await
                    .unwrap_or(Err(SupervisorError::NotRunning { supervisor })),
                Answer::Mapped(mapped) => mapped.wait_async().await,
            }
        })
    }
}

impl<T> std::fmt::Debug for Request<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("supervisor", &self.supervisor)
            .field("sent", &self.answer.is_ok())
            .finish()
    }
}
