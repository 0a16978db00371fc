//! Starting a supervisor, and the requests of a [`SupervisorRef`]: each written once, for both
//! routes — a message to the actor in this process, or a [`RemoteOp`] over the supervision link
//! of a supervisor in another process — and answered through one [`Request`].

use std::any::Any;
use std::sync::Arc;

use ractor::ActorRef;

use super::error::SupervisorError;
use super::event::EventBus;
use super::handle::{Route, SupervisorRef, Transport};
use super::info::{ChildCounts, ChildInfo};
use super::protocol::{self, RemoteAnswer, RemoteOp, RemoteRequest, WireSpec};
use super::request::Request;
use super::spec::{ChildSpec, ExtraType, SupervisorSpec};
use super::{SupMsg, spawn_supervisor};
use crate::reply::{self, Pending, Reply};
use crate::runtime;

impl SupervisorRef {
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

    /// Sends a request: `local` makes the actor's message from `arg`, `remote` the operation
    /// a supervisor in another process is sent (or the error that prevents it), `decode` reads
    /// that one's answer (`None`: an answer of the wrong kind, named `expected`).
    fn call<A, T: Send + 'static>(
        &self,
        arg: A,
        local: impl FnOnce(A, Reply<Result<T, SupervisorError>>) -> SupMsg,
        remote: impl FnOnce(A) -> Result<RemoteOp, SupervisorError>,
        (expected, decode): (&'static str, fn(RemoteAnswer) -> Option<T>),
    ) -> Request<T> {
        match &self.route {
            Route::Actor(actor) => self.local(actor, |reply| local(arg, reply)),
            Route::Remote { transport, below } => match remote(arg) {
                Ok(op) => self.remote_call(transport, below, op, move |supervisor, answer| {
                    let shown = format!("{answer:?}");
                    decode(answer).ok_or_else(|| SupervisorError::Link {
                        supervisor: supervisor.into(),
                        reason: format!("expected {expected} in answer, got {shown}"),
                    })
                }),
                Err(e) => Request::failed(self.path().into(), e),
            },
        }
    }

    /// Sends the actor the message `make` makes around the reply.
    fn local<T: Send + 'static>(
        &self,
        actor: &ActorRef<SupMsg>,
        make: impl FnOnce(Reply<Result<T, SupervisorError>>) -> SupMsg,
    ) -> Request<T> {
        let (reply, pending) = reply::channel();
        let supervisor = self.path().to_string();
        match actor.cast(make(reply)) {
            Ok(()) => Request::pending(supervisor, pending),
            Err(_) => Request::failed(supervisor, self.not_running()),
        }
    }

    /// Sends `op` over `transport`; `decode` turns the answer into the request's.
    fn remote_call<T: Send + 'static>(
        &self,
        transport: &Arc<dyn Transport>,
        below: &[String],
        op: RemoteOp,
        decode: impl FnOnce(&str, RemoteAnswer) -> Result<T, SupervisorError> + Send + 'static,
    ) -> Request<T> {
        let supervisor = self.path().to_string();
        let request = RemoteRequest {
            below: below.to_vec(),
            instance: self.instance(),
            op,
        };
        let bytes = match protocol::encode_request(&request, &supervisor) {
            Ok(bytes) => bytes,
            Err(e) => return Request::failed(supervisor, e),
        };
        let (reply, pending) = reply::channel();
        let target = supervisor.clone();
        transport.request(
            &supervisor,
            bytes,
            Box::new(move |answer| {
                let answer = answer
                    .and_then(|bytes| protocol::decode_answer(&bytes, &target))
                    .and_then(|answer| decode(&target, answer));
                reply.send(answer);
            }),
        );
        Request::pending(supervisor, pending)
    }

    /// Adds a child (at the end of the start order) and starts it; answers its pid (`None`
    /// for a child that is not a process, or that declined to start). Errors: an id already
    /// in use ([`SupervisorError::AlreadyStarted`] / [`SupervisorError::AlreadyPresent`]), a
    /// failed start (the spec is not kept). For a supervisor in another process the spec
    /// travels, so its start must be portable ([`SupervisorError::NotPortable`] otherwise).
    pub fn start_child(&self, spec: impl Into<ChildSpec>) -> Request<Option<i32>> {
        let path = self.path().to_string();
        self.call(
            spec.into(),
            SupMsg::StartChild,
            |spec| Ok(RemoteOp::StartChild(WireSpec::of(&spec, &path)?)),
            ("a pid", pid),
        )
    }

    /// `SimpleOneForOne`: starts a new child from the template with `extra` arguments; answers
    /// its id (`template-N`) and pid (`None` if it declined to start: it is then not kept).
    /// Not available on a supervisor in another process
    /// ([`SupervisorError::RemoteUnsupported`]): the extra arguments are any Rust value.
    pub fn start_child_with<E: Any + Send + Sync>(
        &self,
        extra: E,
    ) -> Request<(String, Option<i32>)> {
        let supervisor = self.path().to_string();
        self.call(
            extra,
            |extra, r| SupMsg::StartDynamic(Arc::new(extra), ExtraType::of::<E>(), r),
            |_| {
                Err(SupervisorError::RemoteUnsupported {
                    supervisor,
                    operation: "start_child_with",
                })
            },
            ("nothing", |_| None),
        )
    }

    /// Stops child `id` (as its shutdown says) and keeps its spec, stopped — unless it is
    /// temporary or dynamic, which are forgotten. Answers once it has exited.
    ///
    /// Terminating a dynamic child (of a `SimpleOneForOne` supervisor) that has already
    /// exited, or was already terminated, succeeds: it is gone either way, as in OTP. An id
    /// the supervisor never had is [`SupervisorError::ChildNotFound`] (so is a static
    /// temporary child once it has exited and been forgotten, as in OTP).
    pub fn terminate_child(&self, id: &str) -> Request<()> {
        self.call(
            id.to_string(),
            SupMsg::TerminateChild,
            |id| Ok(RemoteOp::TerminateChild(id)),
            ("done", done),
        )
    }

    /// Starts again the stopped child `id`; answers its pid (`None` if it is not a process,
    /// or declined to start).
    pub fn restart_child(&self, id: &str) -> Request<Option<i32>> {
        self.call(
            id.to_string(),
            SupMsg::RestartChild,
            |id| Ok(RemoteOp::RestartChild(id)),
            ("a pid", pid),
        )
    }

    /// Forgets the stopped child `id`.
    pub fn delete_child(&self, id: &str) -> Request<()> {
        self.call(
            id.to_string(),
            SupMsg::DeleteChild,
            |id| Ok(RemoteOp::DeleteChild(id)),
            ("done", done),
        )
    }

    /// Kills child `id` (SIGKILL) as if it crashed: its supervisor handles the exit as usual.
    /// For tests of supervision trees.
    pub fn kill_child(&self, id: &str) -> Request<()> {
        self.call(
            id.to_string(),
            SupMsg::KillChild,
            |id| Ok(RemoteOp::KillChild(id)),
            ("done", done),
        )
    }

    /// The spec of child `id` (OTP's `get_childspec`): for a dynamic child (or the template's
    /// id), its supervisor's template. The spec can be given to `start_child`, here or to
    /// another supervisor. From a supervisor in another process, the spec travels back: its
    /// start must be portable ([`SupervisorError::NotPortable`] otherwise).
    #[doc(alias = "get_childspec")]
    pub fn child_spec(&self, id: &str) -> Request<ChildSpec> {
        let (transport, below) = match &self.route {
            Route::Actor(actor) => return self.local(actor, |r| SupMsg::ChildSpec(id.into(), r)),
            Route::Remote { transport, below } => (transport, below),
        };
        let op = RemoteOp::ChildSpec(id.into());
        self.remote_call(transport, below, op, |supervisor, answer| match answer {
            RemoteAnswer::Spec(wire) => protocol::decode_spec(&wire, supervisor),
            other => Err(protocol::unexpected(supervisor, "a spec", &other)),
        })
    }

    /// The children in start order.
    pub fn which_children(&self) -> Request<Vec<ChildInfo>> {
        self.call(
            (),
            |(), r| SupMsg::WhichChildren(r),
            |()| Ok(RemoteOp::WhichChildren),
            ("children", |a| match a {
                RemoteAnswer::Children(children) => Some(children),
                _ => None,
            }),
        )
    }

    /// Counts of specs, running children, supervisors and workers (see [`ChildCounts`]).
    pub fn count_children(&self) -> Request<ChildCounts> {
        self.call(
            (),
            |(), r| SupMsg::CountChildren(r),
            |()| Ok(RemoteOp::CountChildren),
            ("counts", |a| match a {
                RemoteAnswer::Counts(counts) => Some(counts),
                _ => None,
            }),
        )
    }

    /// A handle on the nested supervisor at `path` below this one: a child id (`db`), or
    /// several (`db/replicas`), each a supervisor child of the one before — in this process or
    /// in its own (its requests then travel over its supervision link, and on through the
    /// links of the processes below it). The handle has the same requests as this one; it
    /// names the incarnation running now. Errors: no such child
    /// ([`SupervisorError::ChildNotFound`]), one that is not a supervisor
    /// ([`SupervisorError::NotASupervisor`]) or not running
    /// ([`SupervisorError::ChildNotRunning`]).
    pub fn subtree(&self, path: &str) -> Request<SupervisorRef> {
        let ids: Vec<String> = path.split('/').map(String::from).collect();
        if ids.iter().any(String::is_empty) {
            let error = SupervisorError::ChildNotFound {
                supervisor: self.path().into(),
                id: path.into(),
            };
            return Request::failed(self.path().into(), error);
        }
        if let [id] = &ids[..] {
            return self.subtree_of(id);
        }
        let (reply, pending) = reply::channel();
        let mut at = self.clone();
        runtime::spawn(async move {
            for id in ids {
                match at.subtree_of(&id).await {
                    Ok(next) => at = next,
                    Err(e) => return reply.send(Err(e)),
                }
            }
            reply.send(Ok(at));
        });
        Request::pending(self.path().into(), pending)
    }

    /// The handle on child `id`, a supervisor.
    fn subtree_of(&self, id: &str) -> Request<SupervisorRef> {
        let (transport, below) = match &self.route {
            Route::Actor(actor) => return self.local(actor, |r| SupMsg::Subtree(id.into(), r)),
            Route::Remote { transport, below } => (transport, below),
        };
        let op = RemoteOp::Subtree(id.into());
        let (transport_, mut below_) = (transport.clone(), below.clone());
        let (path, id) = (format!("{}/{id}", self.path()), id.to_string());
        self.remote_call(
            transport,
            below,
            op,
            move |supervisor, answer| match answer {
                RemoteAnswer::Subtree { strategy, instance } => {
                    below_.push(id);
                    Ok(transport_.handle(below_, path, strategy, instance))
                }
                other => Err(protocol::unexpected(supervisor, "a subtree", &other)),
            },
        )
    }

    /// Asks it to stop its children and exit, answered once the children have stopped.
    pub(crate) fn stop_request(&self) -> Request<()> {
        self.call(
            (),
            |(), r| SupMsg::Stop(Some(r)),
            |()| Ok(RemoteOp::Stop),
            ("done", done),
        )
    }

    /// Stops every child in reverse start order, then the supervisor (exit `Code(0)`). Returns
    /// once all have exited; stopping a supervisor that has already exited is not an error.
    ///
    /// On a nested supervisor (a handle from `subtree`), its parent sees it exit normally, and
    /// restarts it if it is `Permanent`: to stop a subtree for good, terminate it from its
    /// parent (`terminate_child`).
    pub fn stop(&self) {
        // A supervisor that already exited answers NotRunning: nothing left to stop.
        let _ = self.stop_request().wait();
        self.wait();
    }

    /// [`stop`](SupervisorRef::stop) for async callers.
    pub async fn stop_async(&self) {
        let _ = self.stop_request().await;
        self.wait_async().await;
    }

    /// Asks the supervisor to stop without waiting.
    pub fn request_stop(&self) {
        match &self.route {
            Route::Actor(actor) => {
                let _ = actor.cast(SupMsg::Stop(None));
            }
            Route::Remote { transport, below } => {
                self.fire(transport, below, RemoteOp::RequestStop)
            }
        }
    }

    /// Kills the supervisor at once: its children are killed (SIGKILL), not stopped.
    pub fn kill(&self) {
        match &self.route {
            Route::Actor(actor) => actor.kill(),
            Route::Remote { transport, below } => self.fire(transport, below, RemoteOp::Kill),
        }
    }

    /// Sends `op` without waiting for its answer.
    fn fire(&self, transport: &Arc<dyn Transport>, below: &[String], op: RemoteOp) {
        drop(self.remote_call(transport, below, op, |_, _| Ok(())));
    }
}

fn pid(answer: RemoteAnswer) -> Option<Option<i32>> {
    match answer {
        RemoteAnswer::Pid(pid) => Some(pid),
        _ => None,
    }
}

fn done(answer: RemoteAnswer) -> Option<()> {
    matches!(answer, RemoteAnswer::Done).then_some(())
}
