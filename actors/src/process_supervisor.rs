//! The process supervisor actor: one per process, owner of that process's children.
//!
//! It learns of each child's exit from the child's pidfd becoming readable (an epoll wake-up,
//! no polling loop), reaps it at once (no zombies), publishes the exit status to every handle,
//! and enforces Python's exit semantics when its process ends normally: daemonic children are
//! terminated (and killed if they ignore SIGTERM for [`DAEMON_KILL_GRACE`]), non-daemonic
//! children are joined. Children reaped elsewhere (a fork server's) stay with their
//! [`ChildSource`], which the supervisor asks when it needs them: a start and an exit of such a
//! child cost the supervisor nothing.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::child::ChildRecord;
use crate::reply::Reply;

/// How long a daemonic child may ignore SIGTERM at its parent's exit before it is killed.
pub const DAEMON_KILL_GRACE: Duration = Duration::from_secs(2);

/// Children this process started that the supervisor does not reap itself: a fork server's
/// (which reaps them and relays their exits). The supervisor asks for them when it needs them
/// (`active_children()`, the exit sequence) instead of hearing of each start and exit.
pub trait ChildSource: Send + Sync {
    /// The children that have not exited yet (as far as the source knows).
    fn children(&self) -> Vec<Arc<ChildRecord>>;
}

/// Requests the process supervisor serves.
pub enum SupervisorMsg {
    /// Watch and reap this newly started child.
    Adopt(Arc<ChildRecord>),
    /// Ask this source for its children from now on.
    AddSource(Arc<dyn ChildSource>),
    /// Internal: the child with this pid has exited (its pidfd became readable).
    Exited(i32),
    /// Internal: a source's child that the exit sequence waits for has exited.
    SourceChildExited(i32),
    /// The children that have not exited yet.
    ActiveChildren(Reply<Vec<Arc<ChildRecord>>>),
    /// The process is ending: terminate daemonic children, wait for all; answer when none is left.
    Shutdown(Reply<()>),
    /// Internal: the grace period for daemonic children is over.
    KillDaemons,
}

/// The actor's behaviour (stateless; see [`SupervisorState`]).
pub struct ProcessSupervisor;

/// The children being watched, the sources of other children, and the shutdown in progress,
/// if any.
#[derive(Default)]
pub struct SupervisorState {
    children: HashMap<i32, Arc<ChildRecord>>,
    sources: Vec<Arc<dyn ChildSource>>,
    /// Sources' children the exit sequence waits for.
    awaiting: HashSet<i32>,
    shutdown_waiters: Vec<Reply<()>>,
    shutting_down: bool,
}

impl SupervisorState {
    /// Every child not known to have exited: ours and the sources'.
    fn all_children(&self) -> Vec<Arc<ChildRecord>> {
        let mut all: Vec<_> = self.children.values().cloned().collect();
        for source in &self.sources {
            all.extend(source.children());
        }
        all
    }
}

/// Lets tokio's reactor watch a child's pidfd while the record stays shared.
struct PidFdWatch(Arc<ChildRecord>);

impl AsRawFd for PidFdWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.pidfd().as_raw_fd()
    }
}

impl Actor for ProcessSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = ();

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState::default())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Adopt(child) => adopt(&myself, state, child),
            SupervisorMsg::AddSource(source) => state.sources.push(source),
            SupervisorMsg::Exited(pid) => reap(state, pid),
            SupervisorMsg::SourceChildExited(pid) => {
                state.awaiting.remove(&pid);
            }
            SupervisorMsg::ActiveChildren(reply) => reply.send(state.all_children()),
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

fn adopt(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, child: Arc<ChildRecord>) {
    let pid = child.pid();
    // SAFETY: the pidfd is owned by the record, which `PidFdWatch` keeps alive (an `Arc`) for
    // as long as the `AsyncFd` exists, and the record never replaces or closes its pidfd.
    let registered =
        unsafe { AsyncFd::register_with_interest(PidFdWatch(child.clone()), Interest::READABLE) };
    let watch = match registered {
        Ok(watch) => watch,
        Err(err) => {
            let err = err.into_parts().1;
            // Cannot watch it: fall back to a blocking wait on a helper thread.
            tracing::warn!(target: "procvisor", "cannot watch pid {pid} with epoll ({err}); using a thread");
            let me = myself.clone();
            let record = child.clone();
            std::thread::spawn(move || {
                record.wait_exit_blocking();
                let _ = me.cast(SupervisorMsg::Exited(pid));
            });
            state.children.insert(pid, child);
            return;
        }
    };
    state.children.insert(pid, child);
    let me = myself.clone();
    tokio::spawn(async move {
        // A pidfd reports readable once, when the process exits; errors end the watch the same way.
        let _ = watch.readable().await;
        drop(watch);
        let _ = me.cast(SupervisorMsg::Exited(pid));
    });
}

fn reap(state: &mut SupervisorState, pid: i32) {
    let Some(child) = state.children.remove(&pid) else {
        return;
    };
    match child.finish() {
        Ok(status) => {
            tracing::debug!(target: "procvisor", "child {} (pid {pid}) exited: {status}", child.name());
        }
        Err(err) => {
            tracing::warn!(target: "procvisor", "cannot reap child {} (pid {pid}): {err}", child.name());
        }
    }
}

fn begin_shutdown(myself: &ActorRef<SupervisorMsg>, state: &mut SupervisorState, reply: Reply<()>) {
    state.shutdown_waiters.push(reply);
    if state.shutting_down {
        return;
    }
    state.shutting_down = true;
    let mut any_daemon = false;
    for child in sorted(state) {
        if child.daemon() {
            any_daemon = true;
            tracing::info!(target: "procvisor", "calling terminate() for daemon {}", child.name());
            let _ = child.signal(libc::SIGTERM);
        } else {
            tracing::info!(target: "procvisor", "calling join() for process {}", child.name());
        }
        if !state.children.contains_key(&child.pid()) {
            await_source_child(myself, state, child);
        }
    }
    if any_daemon {
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DAEMON_KILL_GRACE).await;
            let _ = me.cast(SupervisorMsg::KillDaemons);
        });
    }
}

/// A source's child is reaped elsewhere: the exit sequence waits for its status to be
/// published.
fn await_source_child(
    myself: &ActorRef<SupervisorMsg>,
    state: &mut SupervisorState,
    child: Arc<ChildRecord>,
) {
    let pid = child.pid();
    state.awaiting.insert(pid);
    let me = myself.clone();
    tokio::spawn(async move {
        child.wait_async().await;
        let _ = me.cast(SupervisorMsg::SourceChildExited(pid));
    });
}

fn kill_daemons(state: &SupervisorState) {
    for child in state.all_children().iter().filter(|c| c.daemon()) {
        tracing::info!(target: "procvisor", "daemon {} ignored SIGTERM: killing it", child.name());
        let _ = child.signal(libc::SIGKILL);
    }
}

fn finish_shutdown_if_done(state: &mut SupervisorState) {
    if state.shutting_down && state.children.is_empty() && state.awaiting.is_empty() {
        for waiter in state.shutdown_waiters.drain(..) {
            waiter.send(());
        }
    }
}

/// Children in start order (pids grow, wrap-around aside), so logs read naturally.
fn sorted(state: &SupervisorState) -> Vec<Arc<ChildRecord>> {
    let mut children = state.all_children();
    children.sort_by_key(|c| c.pid());
    children
}
