//! Handles on supervisors in another process, both ends of it, over any link that carries
//! frames in order (`procvisor`'s supervision link; its `link.rs` documents the frames).
//!
//! * [`RemoteTree`], in the parent: the handles on the supervisors of one child process. It
//!   sends their requests (numbered) through the link, hands each answer to its request,
//!   republishes the subtree's events (to the parent supervisor's bus, and to the buses of
//!   the handles on nested supervisors below the root), and learns each handle's exit.
//! * [`RemoteServer`], in the child process: runs those requests against its root
//!   supervisor (walking `below` down, through further processes if need be) and answers.
//!
//! **Order.** The parent reads one stream of frames (events, answers, exits) and handles them
//! in order, so what a frame says holds for every frame after it. The server keeps two
//! promises on top of the link's order: an answer is written after every event published
//! before it was made (its writer waits for the event forwarder to have written that many
//! events), and the exit of a supervisor it handed a handle on is written after that answer
//! (one lock over "answer written, exit watched"). So a handle is registered before any news
//! of its end, and its stream sees the events of its end before it closes. Before the child
//! process exits, [`RemoteServer::settle`] lets the frames still owed (answers, exits) out.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Shared;
use super::error::SupervisorError;
use super::event::{Event, EventBus};
use super::exit::Exit;
use super::handle::{AnswerFn, Route, SupervisorRef, Transport};
use super::protocol::{self, RemoteAnswer, RemoteOp, RemoteRequest, WireSpec};
use super::strategy::Strategy;
use crate::reply::wait_for;
use crate::runtime;
use crate::sync_util::lock;

/// Sends one numbered request's bytes to the child process (an error: the link is gone).
pub type SendRequest = Box<dyn Fn(u64, Vec<u8>) -> Result<(), String> + Send + Sync>;

/// The parent's side of the supervisors running in one child process.
pub struct RemoteTree {
    root: Arc<Shared>,
    /// `None` once the link is closed.
    send: Mutex<Option<SendRequest>>,
    next_id: AtomicU64,
    /// Requests sent and not answered: the path they name (for errors), their answer.
    pending: Mutex<HashMap<u64, (String, AnswerFn)>>,
    /// Handles on nested supervisors below the root, by incarnation.
    handles: Mutex<HashMap<u64, Weak<Shared>>>,
}

impl std::fmt::Debug for RemoteTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTree")
            .field("root", &self.root.path)
            .field("pending", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}

impl RemoteTree {
    /// The supervisors of a child process whose root supervisor is at `path`, incarnation
    /// `instance`: its events go to `bus` (a bus that forwards to the parent supervisor's),
    /// its requests out through `send`.
    pub fn new(
        path: String,
        strategy: Strategy,
        instance: u64,
        bus: Arc<EventBus>,
        send: SendRequest,
    ) -> Arc<RemoteTree> {
        Arc::new(RemoteTree {
            root: Arc::new(Shared::remote(path, strategy, bus, instance)),
            send: Mutex::new(Some(send)),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
        })
    }

    /// A handle on the root supervisor.
    pub fn root(self: &Arc<Self>) -> SupervisorRef {
        SupervisorRef {
            route: Route::Remote {
                transport: self.clone(),
                below: Vec::new(),
            },
            shared: self.root.clone(),
        }
    }

    fn live_handles(&self) -> Vec<Arc<Shared>> {
        let mut handles = lock(&self.handles);
        handles.retain(|_, h| h.strong_count() > 0);
        handles.values().filter_map(Weak::upgrade).collect()
    }

    /// An event of the subtree: to the root's bus (and so the parent's), and to the bus of
    /// every handle on a nested supervisor it happened in or under.
    pub fn event(&self, event: Event) {
        for handle in self.live_handles() {
            let path = event.supervisor();
            let under = path
                .strip_prefix(handle.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if under {
                handle.bus.publish(event.clone());
            }
        }
        self.root.bus.publish(event);
    }

    /// The answer (its bytes) to request `id`.
    pub fn answer(&self, id: u64, answer: Vec<u8>) {
        let waiting = lock(&self.pending).remove(&id);
        match waiting {
            Some((_, reply)) => reply(Ok(answer)),
            None => tracing::warn!(
                target: "procvisor",
                "supervisor {}: an answer to request {id}, which is not waiting",
                self.root.path
            ),
        }
    }

    /// Incarnation `instance` of a supervisor of the subtree has exited.
    pub fn exited(&self, instance: u64, exit: Exit) {
        if instance == self.root.instance {
            return self.root_exited(exit);
        }
        let handle = lock(&self.handles).remove(&instance);
        if let Some(shared) = handle.as_ref().and_then(Weak::upgrade) {
            shared.publish_exit(exit);
            shared.bus.close();
        }
    }

    /// The root supervisor has exited (its process told, or exited).
    pub fn root_exited(&self, exit: Exit) {
        self.root.publish_exit(exit);
        self.root.bus.close();
    }

    /// The link is closed (`None`: the child process's end closed; `Some`: it broke, and
    /// why): requests waiting get no answer, the handles below the root learn that their
    /// process is gone.
    pub fn closed(&self, broken: Option<String>) {
        *lock(&self.send) = None;
        let waiting: Vec<_> = lock(&self.pending).drain().collect();
        for (_, (supervisor, reply)) in waiting {
            reply(Err(match &broken {
                Some(reason) => SupervisorError::Link {
                    supervisor,
                    reason: reason.clone(),
                },
                None => SupervisorError::NotRunning { supervisor },
            }));
        }
        let gone = format!("the process of supervisor {} is gone", self.root.path);
        for shared in self.live_handles() {
            shared.publish_exit(Exit::Failed(gone.clone()));
            shared.bus.close();
        }
        lock(&self.handles).clear();
    }
}

impl Transport for RemoteTree {
    fn request(&self, supervisor: &str, request: Vec<u8>, answer: AnswerFn) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let send = lock(&self.send);
        let Some(send) = send.as_ref() else {
            return answer(Err(SupervisorError::NotRunning {
                supervisor: supervisor.into(),
            }));
        };
        // Registered before it is sent (and while `closed` waits for `send`): its answer, or
        // the link's end, always finds it.
        lock(&self.pending).insert(id, (supervisor.into(), answer));
        if let Err(reason) = send(id, request) {
            if let Some((supervisor, answer)) = lock(&self.pending).remove(&id) {
                answer(Err(SupervisorError::Link { supervisor, reason }));
            }
        }
    }

    fn handle(
        self: Arc<Self>,
        below: Vec<String>,
        path: String,
        strategy: Strategy,
        instance: u64,
    ) -> SupervisorRef {
        let shared = {
            let mut handles = lock(&self.handles);
            match handles.get(&instance).and_then(Weak::upgrade) {
                Some(shared) => shared,
                None => {
                    let bus = EventBus::new(None);
                    let shared = Arc::new(Shared::remote(path, strategy, bus, instance));
                    handles.insert(instance, Arc::downgrade(&shared));
                    shared
                }
            }
        };
        SupervisorRef {
            route: Route::Remote {
                transport: self,
                below,
            },
            shared,
        }
    }
}

// ---- the child process's side ---------------------------------------------------------------

/// What the server writes to the parent, besides events.
#[derive(Debug)]
pub enum ServerFrame {
    /// The answer (its bytes) to request `id`.
    Answer {
        /// The request's number.
        id: u64,
        /// The encoded `Result<RemoteAnswer, SupervisorError>`.
        answer: Vec<u8>,
    },
    /// Incarnation `instance` (one the parent was handed a handle on) has exited.
    Exited {
        /// The incarnation.
        instance: u64,
        /// How it ended.
        exit: Exit,
    },
}

/// Writes one frame to the parent (blocking; called on a blocking thread). An error says why
/// it could not be written (the link broke, or the frame is over the link's limit).
pub type WriteFrame = Box<dyn Fn(ServerFrame) -> Result<(), String> + Send + Sync>;

/// The child process's side: serves the parent's requests on its root supervisor.
pub struct RemoteServer {
    root: SupervisorRef,
    write: WriteFrame,
    /// How many of the root bus's events the forwarder has written, and whether it has
    /// stopped (then nothing waits for it).
    written: Mutex<(u64, bool)>,
    progress: Condvar,
    /// The incarnations the parent holds handles on whose exit is being watched.
    watched: Mutex<HashSet<u64>>,
    /// Frames owed to the parent: requests not answered yet, watched exits not written yet.
    owed: Mutex<usize>,
    settled: Condvar,
}

/// One frame owed to the parent, until dropped.
struct Owed(Arc<RemoteServer>);

impl Owed {
    fn new(server: &Arc<RemoteServer>) -> Owed {
        *lock(&server.owed) += 1;
        Owed(server.clone())
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        *lock(&self.0.owed) -= 1;
        self.0.settled.notify_all();
    }
}

impl std::fmt::Debug for RemoteServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteServer")
            .field("root", &self.root.path())
            .field("written", &*lock(&self.written))
            .finish_non_exhaustive()
    }
}

impl RemoteServer {
    /// Serves requests on `root`, answering through `write`. The caller forwards `root`'s
    /// events to the parent and reports how many it has written (`events_written`).
    pub fn new(root: SupervisorRef, write: WriteFrame) -> Arc<RemoteServer> {
        Arc::new(RemoteServer {
            root,
            write,
            written: Mutex::new((0, false)),
            progress: Condvar::new(),
            watched: Mutex::new(HashSet::new()),
            owed: Mutex::new(0),
            settled: Condvar::new(),
        })
    }

    /// The root supervisor's incarnation: what the parent's [`RemoteTree::new`] takes.
    pub fn instance(&self) -> u64 {
        self.root.instance()
    }

    /// The forwarder has written the root bus's first `count` events (dropped ones counted).
    pub fn events_written(&self, count: u64) {
        lock(&self.written).0 = count;
        self.progress.notify_all();
    }

    /// The forwarder has stopped (the stream ended or the link broke).
    pub fn events_done(&self) {
        lock(&self.written).1 = true;
        self.progress.notify_all();
    }

    /// Blocks until the first `count` events have been written (or never will be).
    fn wait_written(&self, count: u64) {
        let written = lock(&self.written);
        wait_for(&self.progress, written, None, |(n, done)| {
            (*n >= count || *done).then_some(())
        });
    }

    /// Blocks until every answer owed and the exit of every supervisor the parent holds a
    /// handle on have been written, or `timeout` has passed. A process whose root supervisor
    /// has exited calls it before it exits, so that its parent hears how the subtree ended
    /// (for the handles below the root: their own exit, not just that the process is gone).
    pub fn settle(&self, timeout: Duration) {
        let owed = lock(&self.owed);
        let deadline = Instant::now() + timeout;
        wait_for(&self.settled, owed, Some(deadline), |owed| {
            (*owed == 0).then_some(())
        });
    }

    /// Serves request `id` (its bytes), answering when it is done; returns at once.
    pub fn request(self: &Arc<Self>, id: u64, request: &[u8]) {
        let server = self.clone();
        let owed = Owed::new(self);
        let request = protocol::decode_request(request, self.root.path());
        runtime::spawn(async move {
            let (answer, watch) = match request {
                Ok(request) => server.execute(request).await,
                Err(e) => (Err(e), None),
            };
            let published = server.root.bus().published();
            let path = server.root.path().to_string();
            let bytes = protocol::encode_answer(&answer, &path);
            runtime::spawn_blocking(move || {
                let _owed = owed;
                server.wait_written(published);
                let mut watched = lock(&server.watched);
                let answer = bytes;
                if let Err(reason) = (server.write)(ServerFrame::Answer { id, answer }) {
                    // Too large, most likely (a broken link fails this one too): the request
                    // still gets an answer, the error saying why.
                    let error = Err(SupervisorError::Link {
                        supervisor: path.clone(),
                        reason: format!("its answer could not be sent: {reason}"),
                    });
                    let answer = protocol::encode_answer(&error, &path);
                    let _ = (server.write)(ServerFrame::Answer { id, answer });
                    return;
                }
                if let Some(target) = watch {
                    if watched.insert(target.instance()) {
                        server.watch(target);
                    }
                }
            });
        });
    }

    /// Tells the parent when `target` exits (after the events before its exit).
    fn watch(self: &Arc<Self>, target: SupervisorRef) {
        let server = self.clone();
        let owed = Owed::new(self);
        runtime::spawn(async move {
            let exit = target.wait_async().await;
            let published = server.root.bus().published();
            runtime::spawn_blocking(move || {
                let _owed = owed;
                server.wait_written(published);
                let mut watched = lock(&server.watched);
                watched.remove(&target.instance());
                let instance = target.instance();
                let _ = (server.write)(ServerFrame::Exited { instance, exit });
            });
        });
    }

    /// Runs one request: finds its target (the same incarnation), performs the operation.
    /// A handle given out (`Subtree`) comes back too, to be watched.
    async fn execute(
        &self,
        request: RemoteRequest,
    ) -> (Result<RemoteAnswer, SupervisorError>, Option<SupervisorRef>) {
        let mut at = self.root.clone();
        for id in &request.below {
            match at.subtree(id).await {
                Ok(next) => at = next,
                Err(e) => return (Err(e), None),
            }
        }
        if at.instance() != request.instance {
            return (Err(at.not_running()), None);
        }
        let path = at.path().to_string();
        let answer = match request.op {
            RemoteOp::StartChild(wire) => match protocol::decode_spec(&wire, &path) {
                Ok(spec) => at.start_child(spec).await.map(RemoteAnswer::Pid),
                Err(e) => Err(e),
            },
            RemoteOp::TerminateChild(id) => at.terminate_child(&id).await.map(done),
            RemoteOp::RestartChild(id) => at.restart_child(&id).await.map(RemoteAnswer::Pid),
            RemoteOp::DeleteChild(id) => at.delete_child(&id).await.map(done),
            RemoteOp::KillChild(id) => at.kill_child(&id).await.map(done),
            RemoteOp::ChildSpec(id) => (at.child_spec(&id).await)
                .and_then(|spec| WireSpec::of(&spec, &path))
                .map(RemoteAnswer::Spec),
            RemoteOp::WhichChildren => at.which_children().await.map(RemoteAnswer::Children),
            RemoteOp::CountChildren => at.count_children().await.map(RemoteAnswer::Counts),
            RemoteOp::Subtree(id) => match at.subtree(&id).await {
                Ok(sub) => {
                    let answer = RemoteAnswer::Subtree {
                        strategy: sub.strategy(),
                        instance: sub.instance(),
                    };
                    return (Ok(answer), Some(sub));
                }
                Err(e) => Err(e),
            },
            RemoteOp::Stop => at.stop_request().await.map(done),
            RemoteOp::RequestStop => {
                at.request_stop();
                Ok(RemoteAnswer::Done)
            }
            RemoteOp::Kill => {
                at.kill();
                Ok(RemoteAnswer::Done)
            }
        };
        (answer, None)
    }
}

fn done(_: ()) -> RemoteAnswer {
    RemoteAnswer::Done
}
