//! The supervisor actor: Erlang/OTP's `supervisor` over children that are (usually) OS
//! processes.
//!
//! A supervisor owns an ordered list of children, each described by a [`ChildSpec`] (data:
//! id, how to start it, [`Restart`], [`Shutdown`], [`ChildType`]). It starts them in order, and
//! when one exits it decides — [`Restart`] × the exit — whether to restart it, and — its
//! [`Strategy`] — which siblings restart with it. More than [`Intensity::max_restarts`]
//! restarts within [`Intensity::period`] and it gives up: it stops every child in reverse order
//! and exits abnormally, so that its own supervisor handles it like any failed child.
//!
//! Everything a supervisor does is published as an [`Event`] on its [`EventBus`]; a nested
//! supervisor's events reach its ancestors' subscribers too.
//!
//! ## The actor
//!
//! One ractor actor per supervisor, on the node's runtime. Its messages (`SupMsg`) are the
//! runtime API (start/terminate/restart/delete a child, which/count children, stop) plus two it
//! sends itself:
//!
//! * `ChildExited { id, generation, exit }`, from a small task per running child that awaits
//!   [`RunningChild::wait_exit`] (for a process: its pidfd becoming readable — no polling). The
//!   generation tells a stale exit (of an incarnation the supervisor already replaced or
//!   stopped) from a live one.
//! * `RetryRestart { id, token }`: a restart whose start failed is retried by a message to
//!   itself (OTP's `try_again_restart`), never by a loop inside the handler, so requests
//!   queued meanwhile are served between attempts; each attempt counts toward the intensity.
//!   A child with a [`RestartDelay`] has that message sent by a timer instead, after the
//!   delay (of its restart after an exit, too). The token makes a retry overtaken by events
//!   (the child was terminated meanwhile) a no-op.
//!
//! Starting and stopping children are awaited inside the handler (as OTP's supervisor does
//! them synchronously): a start takes about one process start, a stop at most its shutdown
//! timeouts. Nothing blocks the node's thread: process starts run on a blocking thread.
//!
//! ## A child's states
//!
//! ```text
//!                start ok                      exit, should_restart = false
//!   Stopped ───────────────▶ Running ───────────────────────────────────────▶ Stopped
//!      ▲  ▲                   │  ▲  │                                         (Temporary /
//!      │  │ terminate_child   │  │  │ exit, should_restart = true              dynamic:
//!      │  └───────────────────┘  │  ▼                                          forgotten)
//!      │                         │ restart(): intensity window ── exceeded ──▶ give up:
//!      │                         │   stop the rest of the set (reverse order)   stop all,
//!      │          start ok       │   start the set (start order)                exit Failed
//!      │       ┌─────────────────┘        │ a start fails
//!      │       │                          ▼
//!      └──── Restarting ◀──── RetryRestart (message to itself)
//!         terminate_child
//! ```

mod child;
mod error;
mod event;
mod exit;
mod handle;
mod info;
mod intensity;
mod nested;
mod protocol;
mod remote;
mod request;
mod requests;
mod spec;
mod strategy;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::Notify;

pub use child::{ExtraArgs, RunningChild, StartChild, StartContext};
pub use error::{SignificantProblem, SupervisorError};
pub use event::{Event, EventBus, EventStream, MAX_QUEUED, WaitError};
pub use exit::{ChildExit, Exit};
pub use handle::SupervisorRef;
pub use info::{ChildCounts, ChildInfo, ChildStatus};
pub use protocol::{DecodeSpec, WireSpec, set_spec_decoder};
pub use remote::{RemoteServer, RemoteTree, SendRequest, ServerFrame, WriteFrame};
pub use request::{BoxFuture, Request};
pub use spec::{
    AutoShutdown, ChildSpec, ChildType, DEFAULT_WORKER_SHUTDOWN, EncodeStart, ExtraType, Intensity,
    PortableStart, Shutdown, SupervisorSpec,
};
pub use strategy::{Restart, RestartDelay, Strategy};

use crate::reply::Reply;
use crate::sync_util::lock;
use intensity::RestartWindow;
use strategy::{restart_set, should_restart};

/// Requests a supervisor serves, and the two messages it sends itself.
pub(crate) enum SupMsg {
    /// Start the children of the spec, in order (sent once, right after the actor starts).
    Init(Reply<Result<(), SupervisorError>>),
    /// Internal: incarnation `generation` of child `id` exited.
    ChildExited {
        id: String,
        generation: u64,
        exit: Exit,
    },
    /// Internal: try again the restart of `id` whose start failed, or whose restart delay is
    /// over. `token` tells a retry still wanted from one overtaken (the child was terminated,
    /// or restarted and failed again, meanwhile).
    RetryRestart {
        id: String,
        token: u64,
    },
    StartChild(ChildSpec, Reply<Result<Option<i32>, SupervisorError>>),
    StartDynamic(
        ExtraArgs,
        ExtraType,
        Reply<Result<(String, Option<i32>), SupervisorError>>,
    ),
    TerminateChild(String, Reply<Result<(), SupervisorError>>),
    RestartChild(String, Reply<Result<Option<i32>, SupervisorError>>),
    DeleteChild(String, Reply<Result<(), SupervisorError>>),
    KillChild(String, Reply<Result<(), SupervisorError>>),
    ChildSpec(String, Reply<Result<ChildSpec, SupervisorError>>),
    Subtree(String, Reply<Result<SupervisorRef, SupervisorError>>),
    WhichChildren(Reply<Result<Vec<ChildInfo>, SupervisorError>>),
    CountChildren(Reply<Result<ChildCounts, SupervisorError>>),
    /// Stop every child (reverse order) and exit normally.
    Stop(Option<Reply<Result<(), SupervisorError>>>),
}

/// What a supervisor's handles share with it: its identity, its bus and how it ended. (For a
/// supervisor in another process: what its handles know of it, kept by its `RemoteTree`.)
pub(crate) struct Shared {
    pub(crate) path: String,
    pub(crate) strategy: Strategy,
    pub(crate) bus: Arc<EventBus>,
    /// Which incarnation: its process's pid and a number unique in that process.
    pub(crate) instance: u64,
    /// How many events the bus had published when the start was over.
    pub(crate) events_of_start: AtomicU64,
    exit: Mutex<Option<Exit>>,
    exited: Condvar,
    exited_async: Notify,
}

impl Shared {
    fn new(path: String, strategy: Strategy, bus: Arc<EventBus>) -> Shared {
        // The pid in the high half: a handle in one process can name supervisors of several
        // (a subtree's process, and the processes below it) without two sharing a number.
        static INSTANCES: AtomicU64 = AtomicU64::new(1);
        let count = INSTANCES.fetch_add(1, Ordering::Relaxed) & u64::from(u32::MAX);
        let instance = (u64::from(std::process::id()) << 32) | count;
        Shared::remote(path, strategy, bus, instance)
    }

    /// The shared state of incarnation `instance`, numbered by the process it runs in.
    pub(crate) fn remote(
        path: String,
        strategy: Strategy,
        bus: Arc<EventBus>,
        instance: u64,
    ) -> Shared {
        Shared {
            path,
            strategy,
            bus,
            instance,
            events_of_start: AtomicU64::new(0),
            exit: Mutex::new(None),
            exited: Condvar::new(),
            exited_async: Notify::new(),
        }
    }

    pub(crate) fn publish_exit(&self, exit: Exit) {
        let mut slot = lock(&self.exit);
        if slot.is_none() {
            *slot = Some(exit);
            self.exited.notify_all();
            self.exited_async.notify_waiters();
        }
    }

    pub(crate) fn exit(&self) -> Option<Exit> {
        lock(&self.exit).clone()
    }

    pub(crate) fn wait_exit(&self, timeout: Option<Duration>) -> Option<Exit> {
        let deadline = timeout.map(|t| Instant::now() + t);
        crate::reply::wait_for(&self.exited, lock(&self.exit), deadline, |slot| {
            slot.clone()
        })
    }

    pub(crate) async fn wait_exit_async(&self) -> Exit {
        loop {
            let notified = self.exited_async.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(exit) = self.exit() {
                return exit;
            }
            notified.await;
        }
    }
}

/// Starts a supervisor actor on the current (node) runtime and its children in order.
pub(crate) async fn spawn_supervisor(
    spec: SupervisorSpec,
    path: String,
    bus: Arc<EventBus>,
) -> Result<SupervisorRef, SupervisorError> {
    spec.validate_as(&path)?;
    let (strategy, intensity, auto_shutdown, children) = spec.into_parts();
    let shared = Arc::new(Shared::new(path, strategy, bus));
    let not_running = || SupervisorError::NotRunning {
        supervisor: shared.path.clone(),
    };
    let args = Args {
        shared: shared.clone(),
        intensity,
        auto_shutdown,
        children,
    };
    let (actor, _) = Actor::spawn(None, SupervisorActor, args)
        .await
        .map_err(|_| not_running())?;
    let (reply, pending) = crate::reply::channel();
    actor.cast(SupMsg::Init(reply)).map_err(|_| not_running())?;
    match pending.wait_async().await {
        Some(Ok(())) => Ok(SupervisorRef::new(actor, shared)),
        Some(Err(e)) => Err(e),
        None => Err(not_running()),
    }
}

/// The actor's behaviour (stateless; see [`SupState`]).
struct SupervisorActor;

struct Args {
    shared: Arc<Shared>,
    intensity: Intensity,
    auto_shutdown: AutoShutdown,
    children: Vec<ChildSpec>,
}

/// What a start did.
enum Started {
    /// The child runs (with this pid, if it is a process).
    Running(Option<i32>),
    /// The child declined (OTP's `ignore`): it does not run.
    Ignored,
}

/// One child: its spec and, if running, its current incarnation.
struct Slot {
    id: String,
    spec: ChildSpec,
    /// Extra arguments of a dynamic child, handed to each of its restarts.
    extra: Option<ExtraArgs>,
    dynamic: bool,
    state: SlotState,
    /// Which incarnation is current: exits of older ones are stale.
    generation: u64,
    restarts: u32,
    /// Restart attempts in a row that failed to start it (reset by a start): picks the delay.
    failed_starts: u32,
    /// The token of the retry it waits for (see `SupMsg::RetryRestart`).
    retry: u64,
}

enum SlotState {
    Running {
        child: Box<dyn RunningChild>,
        pid: Option<i32>,
    },
    /// A restart is pending (`RetryRestart` is on its way): one that failed to start it, or
    /// one that waits for its restart delay.
    Restarting,
    Stopped,
}

impl Slot {
    fn new(spec: ChildSpec, id: String, extra: Option<ExtraArgs>, dynamic: bool) -> Slot {
        Slot {
            id,
            spec,
            extra,
            dynamic,
            state: SlotState::Stopped,
            generation: 0,
            restarts: 0,
            failed_starts: 0,
            retry: 0,
        }
    }

    fn pid(&self) -> Option<i32> {
        match &self.state {
            SlotState::Running { pid, .. } => *pid,
            _ => None,
        }
    }

    fn status(&self) -> ChildStatus {
        match self.state {
            SlotState::Running { .. } => ChildStatus::Running,
            SlotState::Restarting => ChildStatus::Restarting,
            SlotState::Stopped => ChildStatus::Stopped,
        }
    }
}

/// A supervisor's state: its children in start order and its restart window.
struct SupState {
    shared: Arc<Shared>,
    intensity: Intensity,
    auto_shutdown: AutoShutdown,
    window: RestartWindow,
    children: Vec<Slot>,
    /// The template of a `SimpleOneForOne` supervisor.
    template: Option<ChildSpec>,
    /// Specs given at start, started by `Init`.
    initial: Vec<ChildSpec>,
    next_dynamic: u64,
    next_generation: u64,
    /// Set once the supervisor has exited (or is exiting): it serves nothing more.
    finished: bool,
}

impl Actor for SupervisorActor {
    type Msg = SupMsg;
    type State = SupState;
    type Arguments = Args;

    async fn pre_start(
        &self,
        _: ActorRef<SupMsg>,
        args: Args,
    ) -> Result<SupState, ActorProcessingErr> {
        Ok(SupState {
            window: RestartWindow::new(args.intensity),
            intensity: args.intensity,
            auto_shutdown: args.auto_shutdown,
            shared: args.shared,
            children: Vec::new(),
            template: None,
            initial: args.children,
            next_dynamic: 0,
            next_generation: 0,
            finished: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupMsg>,
        msg: SupMsg,
        state: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        if state.finished {
            // Dropping the message drops its reply: the caller learns the supervisor is gone.
            return Ok(());
        }
        let me = &myself;
        match msg {
            SupMsg::Init(reply) => {
                let started = state.init(me).await;
                // Events from here on are the running tree's, not its start's.
                let published = state.shared.bus.published();
                state
                    .shared
                    .events_of_start
                    .store(published, Ordering::SeqCst);
                reply.send(started)
            }
            SupMsg::ChildExited {
                id,
                generation,
                exit,
            } => state.child_exited(me, &id, generation, exit).await,
            SupMsg::RetryRestart { id, token } => state.retry_restart(me, &id, token).await,
            SupMsg::StartChild(spec, reply) => reply.send(state.start_child(me, spec).await),
            SupMsg::StartDynamic(extra, ty, reply) => {
                reply.send(state.start_dynamic(me, extra, ty).await)
            }
            SupMsg::TerminateChild(id, reply) => reply.send(state.terminate_child(&id).await),
            SupMsg::RestartChild(id, reply) => reply.send(state.restart_child(me, &id).await),
            SupMsg::DeleteChild(id, reply) => reply.send(state.delete_child(&id)),
            SupMsg::KillChild(id, reply) => reply.send(state.kill_child(&id)),
            SupMsg::ChildSpec(id, reply) => reply.send(state.child_spec(&id)),
            SupMsg::Subtree(id, reply) => reply.send(state.subtree(&id)),
            SupMsg::WhichChildren(reply) => reply.send(Ok(state.which_children())),
            SupMsg::CountChildren(reply) => reply.send(Ok(state.count_children())),
            SupMsg::Stop(reply) => {
                state.stop_all().await;
                state.finish(me, Exit::Code(0));
                if let Some(reply) = reply {
                    reply.send(Ok(()));
                }
            }
        }
        Ok(())
    }

    // ractor's default stops this actor when a linked actor dies; a supervisor links to no
    // actor (its children are watched through `RunningChild::wait_exit`), so just log.
    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<SupMsg>,
        evt: SupervisionEvent,
        _: &mut SupState,
    ) -> Result<(), ActorProcessingErr> {
        tracing::debug!(target: "procvisor", "supervisor actor: {evt:?}");
        Ok(())
    }
}

/// Ends `child` as `how` says and returns how it ended.
async fn shut_down(child: &dyn RunningChild, how: Shutdown) -> Exit {
    let mut exited = child.wait_exit();
    match how {
        Shutdown::Brutal => child.kill(),
        Shutdown::Infinity => child.request_stop(),
        Shutdown::Timeout(grace) => {
            child.request_stop();
            if let Ok(exit) = tokio::time::timeout(grace, &mut exited).await {
                return exit;
            }
            child.terminate();
            if let Ok(exit) = tokio::time::timeout(grace, &mut exited).await {
                return exit;
            }
            child.kill();
        }
    }
    exited.await
}

impl SupState {
    fn path(&self) -> String {
        self.shared.path.clone()
    }

    fn strategy(&self) -> Strategy {
        self.shared.strategy
    }

    /// Publishes the start (or restart) of child `idx`, then lets the child publish events of
    /// its own: a subtree's events come after the event of its start.
    fn announce_start(&self, idx: usize, event: Event) {
        self.emit(event);
        if let SlotState::Running { child, .. } = &self.children[idx].state {
            child.started();
        }
    }

    fn emit(&self, event: Event) {
        match &event {
            Event::ChildExited { exit, .. } if exit.is_abnormal() => {
                tracing::warn!(target: "procvisor", "{event}")
            }
            Event::ChildStartFailed { .. } | Event::GaveUp { .. } => {
                tracing::warn!(target: "procvisor", "{event}")
            }
            _ => tracing::info!(target: "procvisor", "{event}"),
        }
        self.shared.bus.publish(event);
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|s| s.id == id)
    }

    fn find(&self, id: &str) -> Result<usize, SupervisorError> {
        self.position(id).ok_or_else(|| self.not_found(id))
    }

    fn not_found(&self, id: &str) -> SupervisorError {
        SupervisorError::ChildNotFound {
            supervisor: self.path(),
            id: id.into(),
        }
    }

    /// Whether `id` is one this `SimpleOneForOne` supervisor gave a dynamic child
    /// (`template-N`, `1 ≤ N ≤` the last one given), running or not.
    fn was_dynamic(&self, id: &str) -> bool {
        let Some(template) = &self.template else {
            return false;
        };
        id.strip_prefix(template.id())
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok().filter(|k| k.to_string() == n))
            .is_some_and(|n| (1..=self.next_dynamic).contains(&n))
    }

    /// The supervisor exits: publish how, end the event streams, stop the actor.
    fn finish(&mut self, myself: &ActorRef<SupMsg>, exit: Exit) {
        self.finished = true;
        self.emit(Event::SupervisorExited {
            supervisor: self.path(),
            exit: exit.clone(),
        });
        self.shared.publish_exit(exit);
        self.shared.bus.close();
        myself.stop(None);
    }

    /// Starts a new incarnation of child `idx` and watches it, unless it declines (it then
    /// stays as it was: not running). Does not emit.
    async fn start_slot(
        &mut self,
        myself: &ActorRef<SupMsg>,
        idx: usize,
    ) -> Result<Started, String> {
        let slot = &self.children[idx];
        let ctx = StartContext {
            id: slot.id.clone(),
            supervisor: self.path(),
            events: self.shared.bus.clone(),
            extra: slot.extra.clone(),
        };
        let Some(child) = slot.spec.starter().start_or_ignore(ctx).await? else {
            return Ok(Started::Ignored);
        };
        let pid = child.pid();
        self.next_generation += 1;
        let generation = self.next_generation;
        let exited = child.wait_exit();
        let me = myself.clone();
        let id = self.children[idx].id.clone();
        tokio::spawn(async move {
            let exit = exited.await;
            let _ = me.cast(SupMsg::ChildExited {
                id,
                generation,
                exit,
            });
        });
        let slot = &mut self.children[idx];
        slot.generation = generation;
        slot.failed_starts = 0;
        slot.state = SlotState::Running { child, pid };
        Ok(Started::Running(pid))
    }

    /// Stops child `idx` if it runs (as its shutdown says) and reports its exit.
    async fn shutdown_slot(&mut self, idx: usize) {
        let slot = &mut self.children[idx];
        let SlotState::Running { child, pid } =
            std::mem::replace(&mut slot.state, SlotState::Stopped)
        else {
            return;
        };
        let exit = shut_down(&*child, slot.spec.shutdown_kind()).await;
        drop(child);
        let id = slot.id.clone();
        self.emit(Event::ChildExited {
            supervisor: self.path(),
            id,
            pid,
            exit: ChildExit {
                exit,
                requested: true,
            },
        });
    }

    /// Stops every child: in reverse start order, or all at once for the interchangeable
    /// children of a `SimpleOneForOne` supervisor.
    async fn stop_all(&mut self) {
        if self.strategy() != Strategy::SimpleOneForOne {
            for idx in (0..self.children.len()).rev() {
                self.shutdown_slot(idx).await;
            }
            return;
        }
        let mut stopping = tokio::task::JoinSet::new();
        for slot in &mut self.children {
            if let SlotState::Running { child, pid } =
                std::mem::replace(&mut slot.state, SlotState::Stopped)
            {
                let (id, how) = (slot.id.clone(), slot.spec.shutdown_kind());
                stopping.spawn(async move {
                    let exit = shut_down(&*child, how).await;
                    drop(child);
                    (id, pid, exit)
                });
            }
        }
        while let Some(done) = stopping.join_next().await {
            if let Ok((id, pid, exit)) = done {
                self.emit(Event::ChildExited {
                    supervisor: self.path(),
                    id,
                    pid,
                    exit: ChildExit {
                        exit,
                        requested: true,
                    },
                });
            }
        }
    }

    async fn init(&mut self, myself: &ActorRef<SupMsg>) -> Result<(), SupervisorError> {
        let specs = std::mem::take(&mut self.initial);
        if self.strategy() == Strategy::SimpleOneForOne {
            self.template = specs.into_iter().next();
            return Ok(());
        }
        self.children = specs
            .into_iter()
            .map(|spec| Slot::new(spec.clone(), spec.id().into(), None, false))
            .collect();
        let mut idx = 0;
        while idx < self.children.len() {
            match self.start_slot(myself, idx).await {
                Ok(Started::Running(pid)) => self.announce_start(
                    idx,
                    Event::ChildStarted {
                        supervisor: self.path(),
                        id: self.children[idx].id.clone(),
                        pid,
                    },
                ),
                Ok(Started::Ignored) => {
                    if self.ignored(idx) {
                        continue; // forgotten: the next child is at `idx` now
                    }
                }
                Err(reason) => {
                    let id = self.children[idx].id.clone();
                    self.emit(Event::ChildStartFailed {
                        supervisor: self.path(),
                        id: id.clone(),
                        reason: reason.clone(),
                        retrying: false,
                    });
                    self.stop_all().await;
                    self.finish(
                        myself,
                        Exit::Failed(format!("child {id} failed to start: {reason}")),
                    );
                    return Err(SupervisorError::StartFailed {
                        supervisor: self.path(),
                        id,
                        reason,
                    });
                }
            }
            idx += 1;
        }
        Ok(())
    }

    /// Child `idx` declined to start: publish it, and forget it if it is temporary or dynamic
    /// (OTP keeps an ignored child's spec, except a temporary one's). True if forgotten.
    fn ignored(&mut self, idx: usize) -> bool {
        let slot = &self.children[idx];
        self.emit(Event::ChildIgnored {
            supervisor: self.path(),
            id: slot.id.clone(),
        });
        let forget = slot.dynamic || slot.spec.restart_type() == Restart::Temporary;
        if forget {
            self.children.remove(idx);
        }
        forget
    }

    async fn child_exited(
        &mut self,
        myself: &ActorRef<SupMsg>,
        id: &str,
        generation: u64,
        exit: Exit,
    ) {
        let Some(idx) = self.position(id) else {
            return;
        };
        let slot = &mut self.children[idx];
        if slot.generation != generation || !matches!(slot.state, SlotState::Running { .. }) {
            return; // an incarnation already replaced or stopped
        }
        let SlotState::Running { child, pid } =
            std::mem::replace(&mut slot.state, SlotState::Stopped)
        else {
            return;
        };
        drop(child);
        let exit = ChildExit {
            exit,
            requested: false,
        };
        let restart = should_restart(slot.spec.restart_type(), &exit);
        let forget = !restart && (slot.spec.restart_type() == Restart::Temporary || slot.dynamic);
        let ended_for_good = !restart && slot.spec.is_significant();
        self.emit(Event::ChildExited {
            supervisor: self.path(),
            id: id.into(),
            pid,
            exit,
        });
        if forget {
            self.children.remove(idx);
        }
        if ended_for_good && self.auto_shutdown_due() {
            self.emit(Event::AutoShutdown {
                supervisor: self.path(),
                id: id.into(),
            });
            self.stop_all().await;
            self.finish(myself, Exit::Code(0));
        } else if restart {
            match self.children[idx].spec.delay_before_restart() {
                None => self.restart(myself, idx).await,
                Some(delay) => self.retry_later(myself, idx, Some(delay.delay(0))),
            }
        }
    }

    /// A significant child has just ended on its own, for good: whether that ends the
    /// supervisor (OTP's `auto_shutdown`).
    fn auto_shutdown_due(&self) -> bool {
        match self.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !self
                .children
                .iter()
                .any(|s| s.spec.is_significant() && !matches!(s.state, SlotState::Stopped)),
        }
    }

    /// Marks child `idx` `Restarting` and has its restart tried again — at once (a message to
    /// ourselves, OTP's `try_again_restart`: requests queued meanwhile are served first), or
    /// `after` its delay (a timer sends that message).
    fn retry_later(&mut self, myself: &ActorRef<SupMsg>, idx: usize, after: Option<Duration>) {
        let slot = &mut self.children[idx];
        slot.state = SlotState::Restarting;
        slot.retry += 1;
        let retry = SupMsg::RetryRestart {
            id: slot.id.clone(),
            token: slot.retry,
        };
        let Some(delay) = after else {
            let _ = myself.cast(retry);
            return;
        };
        self.emit(Event::RestartDelayed {
            supervisor: self.path(),
            id: self.children[idx].id.clone(),
            delay,
        });
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = me.cast(retry);
        });
    }

    /// Restarts child `idx` and the siblings its strategy names; gives up past the intensity.
    async fn restart(&mut self, myself: &ActorRef<SupMsg>, idx: usize) {
        if !self.window.add(Instant::now()) {
            self.give_up(myself).await;
            return;
        }
        let failed = self.children[idx].id.clone();
        let range = restart_set(self.strategy(), self.children.len(), idx);
        let set: Vec<String> = self.children[range].iter().map(|s| s.id.clone()).collect();
        for id in set.iter().rev().filter(|id| **id != failed) {
            if let Some(j) = self.position(id) {
                self.shutdown_slot(j).await;
            }
        }
        // Temporary siblings are stopped with the others but never restarted.
        self.children.retain(|s| {
            s.id == failed || s.spec.restart_type() != Restart::Temporary || !set.contains(&s.id)
        });
        for id in &set {
            let Some(j) = self.position(id) else {
                continue;
            };
            match self.start_slot(myself, j).await {
                Ok(Started::Ignored) => {
                    // Not running, and not to be retried: as OTP, an ignored restart is done.
                    self.ignored(j);
                }
                Ok(Started::Running(pid)) => {
                    let slot = &mut self.children[j];
                    slot.restarts += 1;
                    let restarts = slot.restarts;
                    self.announce_start(
                        j,
                        Event::ChildRestarted {
                            supervisor: self.path(),
                            id: id.clone(),
                            pid,
                            restarts,
                        },
                    );
                }
                Err(reason) => {
                    self.emit(Event::ChildStartFailed {
                        supervisor: self.path(),
                        id: id.clone(),
                        reason,
                        retrying: true,
                    });
                    // Only the child that failed is restarting (OTP's `restarting(Pid)`): the
                    // children of the set after it, stopped above, are simply not running;
                    // the retry restarts the failed child's set again, them included.
                    let slot = &mut self.children[j];
                    slot.failed_starts = slot.failed_starts.saturating_add(1);
                    let after = (slot.spec.delay_before_restart())
                        .map(|delay| delay.delay(slot.failed_starts));
                    self.retry_later(myself, j, after);
                    return;
                }
            }
        }
    }

    async fn retry_restart(&mut self, myself: &ActorRef<SupMsg>, id: &str, token: u64) {
        if let Some(idx) = self.position(id) {
            let slot = &self.children[idx];
            if matches!(slot.state, SlotState::Restarting) && slot.retry == token {
                self.restart(myself, idx).await;
            }
        }
    }

    async fn give_up(&mut self, myself: &ActorRef<SupMsg>) {
        let Intensity {
            max_restarts,
            period,
        } = self.intensity;
        self.emit(Event::GaveUp {
            supervisor: self.path(),
            restarts: self.window.count(),
            period,
        });
        self.stop_all().await;
        self.finish(
            myself,
            Exit::Failed(format!(
                "reached the restart intensity (more than {max_restarts} restarts within \
                 {period:?})"
            )),
        );
    }

    /// Starts the new child at `idx` (just pushed); forgets it if it cannot start.
    async fn start_new(
        &mut self,
        myself: &ActorRef<SupMsg>,
        idx: usize,
    ) -> Result<Option<i32>, SupervisorError> {
        let id = self.children[idx].id.clone();
        match self.start_slot(myself, idx).await {
            Ok(Started::Running(pid)) => {
                self.announce_start(
                    idx,
                    Event::ChildStarted {
                        supervisor: self.path(),
                        id,
                        pid,
                    },
                );
                Ok(pid)
            }
            Ok(Started::Ignored) => {
                self.ignored(idx);
                Ok(None)
            }
            Err(reason) => {
                self.children.remove(idx);
                self.emit(Event::ChildStartFailed {
                    supervisor: self.path(),
                    id: id.clone(),
                    reason: reason.clone(),
                    retrying: false,
                });
                Err(SupervisorError::StartFailed {
                    supervisor: self.path(),
                    id,
                    reason,
                })
            }
        }
    }

    async fn start_child(
        &mut self,
        myself: &ActorRef<SupMsg>,
        spec: ChildSpec,
    ) -> Result<Option<i32>, SupervisorError> {
        if self.strategy() == Strategy::SimpleOneForOne {
            return Err(SupervisorError::SimpleOneForOne {
                supervisor: self.path(),
                operation: "start_child with a child spec (use start_child_with)",
            });
        }
        spec::validate_child(&spec, &self.shared.path, self.auto_shutdown)?;
        if let Some(idx) = self.position(spec.id()) {
            let slot = &self.children[idx];
            return Err(match slot.state {
                SlotState::Running { pid, .. } => SupervisorError::AlreadyStarted {
                    supervisor: self.path(),
                    id: slot.id.clone(),
                    pid,
                },
                _ => SupervisorError::AlreadyPresent {
                    supervisor: self.path(),
                    id: slot.id.clone(),
                },
            });
        }
        let id = spec.id().to_string();
        self.children.push(Slot::new(spec, id, None, false));
        self.start_new(myself, self.children.len() - 1).await
    }

    async fn start_dynamic(
        &mut self,
        myself: &ActorRef<SupMsg>,
        extra: ExtraArgs,
        given: ExtraType,
    ) -> Result<(String, Option<i32>), SupervisorError> {
        let Some(template) = &self.template else {
            return Err(SupervisorError::NotSimpleOneForOne {
                supervisor: self.path(),
                strategy: self.strategy(),
            });
        };
        if let Some(expected) = template.extra() {
            if expected.id != given.id {
                return Err(SupervisorError::ExtraArgsType {
                    supervisor: self.path(),
                    expected: expected.name,
                    got: given.name,
                });
            }
        }
        self.next_dynamic += 1;
        let id = format!("{}-{}", template.id(), self.next_dynamic);
        let slot = Slot::new(template.clone(), id.clone(), Some(extra), true);
        self.children.push(slot);
        let pid = self.start_new(myself, self.children.len() - 1).await?;
        Ok((id, pid))
    }

    async fn terminate_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let Some(idx) = self.position(id) else {
            // A dynamic child that has exited is forgotten; terminating it again is not an
            // error (OTP: terminating a dead dynamic child is `ok`), so cleanups need not race
            // with children that end on their own.
            if self.was_dynamic(id) {
                return Ok(());
            }
            return Err(self.not_found(id));
        };
        self.shutdown_slot(idx).await;
        let slot = &mut self.children[idx];
        slot.state = SlotState::Stopped;
        if slot.dynamic || slot.spec.restart_type() == Restart::Temporary {
            self.children.remove(idx);
        }
        Ok(())
    }

    fn refuse_if_simple(&self, operation: &'static str) -> Result<(), SupervisorError> {
        if self.strategy() == Strategy::SimpleOneForOne {
            return Err(SupervisorError::SimpleOneForOne {
                supervisor: self.path(),
                operation,
            });
        }
        Ok(())
    }

    fn refuse_if_not_stopped(&self, idx: usize) -> Result<(), SupervisorError> {
        let slot = &self.children[idx];
        match slot.state {
            SlotState::Stopped => Ok(()),
            SlotState::Running { .. } => Err(SupervisorError::ChildRunning {
                supervisor: self.path(),
                id: slot.id.clone(),
            }),
            SlotState::Restarting => Err(SupervisorError::ChildRestarting {
                supervisor: self.path(),
                id: slot.id.clone(),
            }),
        }
    }

    async fn restart_child(
        &mut self,
        myself: &ActorRef<SupMsg>,
        id: &str,
    ) -> Result<Option<i32>, SupervisorError> {
        self.refuse_if_simple("restart_child")?;
        let idx = self.find(id)?;
        self.refuse_if_not_stopped(idx)?;
        match self.start_slot(myself, idx).await {
            Ok(Started::Ignored) => {
                self.ignored(idx);
                Ok(None)
            }
            Ok(Started::Running(pid)) => {
                self.announce_start(
                    idx,
                    Event::ChildStarted {
                        supervisor: self.path(),
                        id: id.into(),
                        pid,
                    },
                );
                Ok(pid)
            }
            Err(reason) => {
                self.emit(Event::ChildStartFailed {
                    supervisor: self.path(),
                    id: id.into(),
                    reason: reason.clone(),
                    retrying: false,
                });
                Err(SupervisorError::StartFailed {
                    supervisor: self.path(),
                    id: id.into(),
                    reason,
                })
            }
        }
    }

    fn delete_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        self.refuse_if_simple("delete_child")?;
        let idx = self.find(id)?;
        self.refuse_if_not_stopped(idx)?;
        self.children.remove(idx);
        Ok(())
    }

    fn kill_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let idx = self.find(id)?;
        match &self.children[idx].state {
            SlotState::Running { child, .. } => {
                child.kill();
                Ok(())
            }
            _ => Err(SupervisorError::ChildNotRunning {
                supervisor: self.path(),
                id: id.into(),
            }),
        }
    }

    /// A handle on child `id`, a running supervisor.
    fn subtree(&self, id: &str) -> Result<SupervisorRef, SupervisorError> {
        let slot = &self.children[self.find(id)?];
        let SlotState::Running { child, .. } = &slot.state else {
            return Err(SupervisorError::ChildNotRunning {
                supervisor: self.path(),
                id: id.into(),
            });
        };
        child
            .supervisor()
            .ok_or_else(|| SupervisorError::NotASupervisor {
                supervisor: self.path(),
                id: id.into(),
            })
    }

    /// The spec of child `id` (OTP's `get_childspec`); a dynamic child's is its template.
    fn child_spec(&self, id: &str) -> Result<ChildSpec, SupervisorError> {
        if let Some(template) = &self.template {
            if template.id() == id || self.position(id).is_some() {
                return Ok(template.clone());
            }
            return Err(self.not_found(id));
        }
        Ok(self.children[self.find(id)?].spec.clone())
    }

    fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|s| ChildInfo {
                id: s.id.clone(),
                pid: s.pid(),
                child_type: s.spec.child_type(),
                status: s.status(),
                restarts: s.restarts,
            })
            .collect()
    }

    fn count_children(&self) -> ChildCounts {
        let specs = match self.template {
            Some(_) => 1, // OTP: a simple_one_for_one supervisor has one spec, its template
            None => self.children.len(),
        };
        let mut counts = ChildCounts {
            specs,
            ..ChildCounts::default()
        };
        for slot in &self.children {
            if matches!(slot.state, SlotState::Running { .. }) {
                counts.active += 1;
            }
            match slot.spec.child_type() {
                ChildType::Worker => counts.workers += 1,
                ChildType::Supervisor => counts.supervisors += 1,
            }
        }
        counts
    }
}

impl Drop for SupState {
    /// The actor ended without `finish` (it was killed, or panicked): its children go with it
    /// (dropping a running child ends it) and its handles learn that it failed.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.children.clear();
        let exit = Exit::Failed("the supervisor was killed".into());
        self.emit(Event::SupervisorExited {
            supervisor: self.path(),
            exit: exit.clone(),
        });
        self.shared.publish_exit(exit);
        self.shared.bus.close();
    }
}
