//! The process supervisor: one per process, owner of that process's children.
//!
//! Its children, spawned and forked alike (a fork server forks them as this process's own),
//! are in [`Children`]: a starting thread adds a child there directly, and `join` reaps its
//! child itself the moment the pidfd says it is gone. So a start and a joined exit cost the
//! supervisor actor nothing: no message, no wake-up.
//!
//! What the actor does is what nobody else would: it reaps the children nobody joins (no
//! zombies), woken by the epoll set of their pidfds (no polling loop) at most once per
//! `REAP_BATCH` (20 ms), so a burst of exits costs one wake-up; and it enforces Python's exit
//! semantics when its process ends normally: daemonic children are terminated (and killed if
//! they ignore SIGTERM for `DAEMON_KILL_GRACE`, 2 s), non-daemonic children are joined, each
//! watched on its own pidfd so the exit sequence ends the moment the last one does.
//!
//! The actor and the [`Children`] set are one singleton per process ([`get`]), started on the
//! node's runtime ([`crate::runtime`]) the first time the process needs them.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorRuntime, SupervisionEvent};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::child::ChildRecord;
use crate::reply::Reply;
use crate::runtime;
use crate::sync_util::lock;

/// How long a daemonic child may ignore SIGTERM at its parent's exit before it is killed.
pub(crate) const DAEMON_KILL_GRACE: Duration = Duration::from_secs(2);

/// The longest a child nobody joins stays a zombie: the supervisor reaps exited children, then
/// waits this long before it looks again, so exits in between cost it one wake-up together.
pub(crate) const REAP_BATCH: Duration = Duration::from_millis(20);

/// The process supervisor once started: its actor and the children it watches.
pub struct Running {
    actor: ActorRef<SupervisorMsg>,
    children: Arc<Children>,
}

static RUNNING: OnceLock<Running> = OnceLock::new();

/// This process's supervisor, started on first use.
pub fn get() -> &'static Running {
    RUNNING.get_or_init(start)
}

/// This process's supervisor if it has been started, without starting it.
pub fn try_get() -> Option<&'static Running> {
    RUNNING.get()
}

impl Running {
    /// The process supervisor actor.
    pub fn actor(&self) -> &ActorRef<SupervisorMsg> {
        &self.actor
    }

    /// This process's children, which the process supervisor watches.
    pub fn children(&self) -> &Children {
        &self.children
    }
}

fn start() -> Running {
    let children = Arc::new(Children::new().expect("cannot create the child exit watch"));
    // Spawned without waiting for its `pre_start` (messages sent meanwhile wait in its
    // mailbox), so a first use never blocks on the runtime: not even on the runtime's own
    // thread, or from inside another tokio runtime.
    let _runtime = runtime::handle().enter();
    let (actor, _) = ActorRuntime::spawn_instant(None, ProcessSupervisor, children.clone())
        .expect("cannot start the process supervisor actor");
    Running { actor, children }
}

/// This process's children that have not been reaped yet (or were, by a joiner, and are not
/// forgotten yet), with an epoll set of their pidfds: it is readable while one has exited.
pub struct Children {
    records: Mutex<HashMap<i32, Arc<ChildRecord>>>,
    exits: Epoll,
}

impl Children {
    /// An empty set.
    pub(crate) fn new() -> std::io::Result<Children> {
        Ok(Children {
            records: Mutex::new(HashMap::new()),
            exits: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    /// Adds a child that was just started.
    pub fn add(&self, child: Arc<ChildRecord>) -> std::io::Result<()> {
        let pid = child.pid();
        let mut records = lock(&self.records);
        self.exits.add(
            child.pidfd().as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, pid as u64),
        )?;
        records.insert(pid, child);
        Ok(())
    }

    /// Reaps every child that has exited (joined or not) and forgets it; returns how many.
    pub(crate) fn reap_exited(&self) -> usize {
        let mut reaped = 0;
        let mut events = [EpollEvent::empty(); 64];
        loop {
            let n = self
                .exits
                .wait(&mut events, EpollTimeout::ZERO)
                .unwrap_or(0);
            for event in &events[..n] {
                if self.reap(event.data() as i32) {
                    reaped += 1;
                }
            }
            if n < events.len() {
                return reaped;
            }
        }
    }

    /// Reaps the child with `pid` (it has exited) and forgets it; `false` if it was not here.
    pub(crate) fn reap(&self, pid: i32) -> bool {
        let Some(child) = self.forget(pid) else {
            return false;
        };
        match child.finish() {
            Ok(status) => {
                tracing::debug!(target: "procvisor", "child {} (pid {pid}) exited: {status}", child.name());
            }
            Err(err) => {
                tracing::warn!(target: "procvisor", "cannot reap child {} (pid {pid}): {err}", child.name());
            }
        }
        true
    }

    fn forget(&self, pid: i32) -> Option<Arc<ChildRecord>> {
        let child = lock(&self.records).remove(&pid)?;
        // Explicitly: a `Process` handle may keep the record, and so the pidfd, open.
        let _ = self.exits.delete(child.pidfd().as_fd());
        Some(child)
    }

    /// The children still running, in start order (pids grow, wrap-around aside); the ones
    /// that have exited are reaped first.
    pub fn active(&self) -> Vec<Arc<ChildRecord>> {
        self.reap_exited();
        let mut children: Vec<_> = lock(&self.records).values().cloned().collect();
        children.sort_by_key(|c| c.pid());
        children
    }

    fn is_empty(&self) -> bool {
        lock(&self.records).is_empty()
    }
}

/// Lets tokio's reactor watch the epoll set of exits.
struct ExitsWatch(Arc<Children>);

impl AsRawFd for ExitsWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.exits.0.as_raw_fd()
    }
}

/// Requests the process supervisor serves.
pub enum SupervisorMsg {
    /// Internal: children have been reaped in the background (the exit sequence may be over).
    Reaped,
    /// Internal: the child with this pid has exited (its pidfd became readable).
    Exited(i32),
    /// The process is ending: terminate daemonic children, wait for all; answer when none is left.
    Shutdown(Reply<()>),
    /// Internal: the grace period for daemonic children is over.
    KillDaemons,
}

/// The actor's behaviour (stateless; see [`SupervisorState`]).
pub(crate) struct ProcessSupervisor;

/// The children, and the shutdown in progress, if any.
pub(crate) struct SupervisorState {
    children: Arc<Children>,
    shutdown_waiters: Vec<Reply<()>>,
    shutting_down: bool,
}

impl Actor for ProcessSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<Children>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        children: Arc<Children>,
    ) -> Result<Self::State, ActorProcessingErr> {
        tokio::spawn(reap_in_background(children.clone(), myself));
        Ok(SupervisorState {
            children,
            shutdown_waiters: Vec::new(),
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Reaped => {}
            SupervisorMsg::Exited(pid) => {
                state.children.reap(pid);
            }
            SupervisorMsg::Shutdown(reply) => begin_shutdown(&myself, state, reply),
            SupervisorMsg::KillDaemons => kill_daemons(state),
        }
        finish_shutdown_if_done(state);
        Ok(())
    }

    // ractor's default stops this actor when a linked actor dies; it has no linked actors
    // that may take it down, so supervision events are only logged.
    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<Self::Msg>,
        evt: SupervisionEvent,
        _: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        tracing::debug!(target: "procvisor", "process supervisor: {evt:?}");
        Ok(())
    }
}

/// Reaps exited children whenever the exits set is readable, then lets [`REAP_BATCH`] pass
/// with the set out of the reactor, so that exits in between do not wake this thread.
async fn reap_in_background(children: Arc<Children>, supervisor: ActorRef<SupervisorMsg>) {
    let mut warned = false;
    loop {
        // SAFETY: the epoll fd is owned by `Children`, which `ExitsWatch` keeps alive (an
        // `Arc`) for as long as the `AsyncFd` exists, and which never closes or replaces it.
        let registered = unsafe {
            AsyncFd::register_with_interest(ExitsWatch(children.clone()), Interest::READABLE)
        };
        match registered {
            Ok(watch) => {
                if let Ok(mut ready) = watch.readable().await {
                    ready.clear_ready();
                }
            }
            Err(err) if !warned => {
                warned = true;
                let err = err.into_parts().1;
                tracing::warn!(target: "procvisor", "cannot watch child exits with epoll ({err}); checking every {REAP_BATCH:?}");
            }
            Err(_) => {}
        }
        if children.reap_exited() > 0 && supervisor.cast(SupervisorMsg::Reaped).is_err() {
            return;
        }
        tokio::time::sleep(REAP_BATCH).await;
    }
}

fn begin_shutdown(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, reply: Reply<()>) {
    state.shutdown_waiters.push(reply);
    if state.shutting_down {
        return;
    }
    state.shutting_down = true;
    let mut any_daemon = false;
    for child in state.children.active() {
        if child.daemon() {
            any_daemon = true;
            tracing::info!(target: "procvisor", "calling terminate() for daemon {}", child.name());
            let _ = child.signal(libc::SIGTERM);
        } else {
            tracing::info!(target: "procvisor", "calling join() for process {}", child.name());
        }
        watch_exit(myself, child);
    }
    if any_daemon {
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DAEMON_KILL_GRACE).await;
            let _ = me.cast(SupervisorMsg::KillDaemons);
        });
    }
}

/// Tells the supervisor the moment `child` exits (the exit sequence waits for it).
fn watch_exit(myself: &ActorRef<SupervisorMsg>, child: Arc<ChildRecord>) {
    let me = myself.clone();
    tokio::spawn(async move {
        child.wait_async().await;
        let _ = me.cast(SupervisorMsg::Exited(child.pid()));
    });
}

fn kill_daemons(state: &SupervisorState) {
    for child in state.children.active().iter().filter(|c| c.daemon()) {
        tracing::info!(target: "procvisor", "daemon {} ignored SIGTERM: killing it", child.name());
        let _ = child.signal(libc::SIGKILL);
    }
}

fn finish_shutdown_if_done(state: &mut SupervisorState) {
    if state.shutting_down && state.children.is_empty() {
        for waiter in state.shutdown_waiters.drain(..) {
            waiter.send(());
        }
    }
}
