//! A supervisor running in its own OS process, as the child of a supervisor in this one.
//!
//! The child process runs [`remote_entry`]: it builds its [`SupervisorSpec`] with the user's
//! zero-sized builder, starts it (path `parent/id`), forwards every event of its subtree over
//! the supervision link, sends `Ready` once all its children have started (or `StartFailed`),
//! and serves until its parent asks it to stop (the parent link's stop request) or it gives
//! up. Its exit code tells the parent which: 0, or 1 with the reason in its last event.
//!
//! Killing that process takes its whole subtree down: every process dies with its parent
//! (`PR_SET_PDEATHSIG` and the parent link).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use procvisor_actors::supervisor::{
    BoxFuture, Event, EventBus, Exit, RemoteServer, RemoteTree, RunningChild, SendRequest,
    ServerFrame, StartChild, StartContext, SupervisorRef, SupervisorSpec, WriteFrame,
};
use procvisor_actors::sync_util::lock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

use super::link::{self, ChildMsg, LinkEnd, ParentMsg};
use super::portable::{self, Made, MakeInput, Portable};
use super::worker::{RunningProcess, conjure, start_blocking};
use crate::process::Process;

/// How long a supervisor waits, after a nested supervisor's process exited, for the last of
/// its events (they are already in the socket; this bounds a pathological case only).
const EVENTS_DRAIN: Duration = Duration::from_secs(5);

/// Builds a [`SupervisorSpec`] in the child process from serde arguments: a `fn` item or a
/// closure capturing nothing, of up to three arguments.
///
/// ```
/// use procvisor::supervisor::{ChildSpec, Strategy, SupervisorSpec};
/// fn subtree(workers: u32) -> SupervisorSpec {
///     SupervisorSpec::new(Strategy::OneForOne)
/// }
/// let spec = ChildSpec::supervisor_process("sub", subtree, (3,));
/// # let _ = spec;
/// ```
pub trait BuildSpec<Args>: Send + Sync + 'static {
    /// Builds the spec.
    fn build(&self, args: Args) -> SupervisorSpec;
}

macro_rules! impl_build_spec {
    ($($arg:ident),*) => {
        impl<Func, $($arg,)*> BuildSpec<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> SupervisorSpec + Send + Sync + 'static,
        {
            #[allow(non_snake_case)]
            fn build(&self, ($($arg,)*): ($($arg,)*)) -> SupervisorSpec {
                self($($arg),*)
            }
        }
    };
}

impl_build_spec!();
impl_build_spec!(A);
impl_build_spec!(A, B);
impl_build_spec!(A, B, C);

/// The target of a nested supervisor's process.
pub(crate) fn remote_entry<B, Args>(link: LinkEnd, path: String, args: Args) -> Result<(), String>
where
    B: BuildSpec<Args> + Copy,
{
    let spec = conjure::<B>().build(args);
    serve(link, path, spec)
}

/// Runs `spec` as the supervisor at `path`, reporting to the parent over `link` and serving
/// the requests of the parent's handles on its subtree. The events of the start are sent
/// before `Started` (or `StartFailed`), from this thread; a forwarder thread sends the later
/// ones (a child may already have exited: those come after `Started`, so the parent publishes
/// them after this supervisor's start), counting them for the [`RemoteServer`], which writes
/// each answer after the events published before it. One writer at a time, so the parent sees
/// every frame whole and in order.
fn serve(link: LinkEnd, path: String, spec: SupervisorSpec) -> Result<(), String> {
    portable::install();
    let stream = std::os::unix::net::UnixStream::from(link.0);
    let requests = stream
        .try_clone()
        .map_err(|e| format!("cannot read the supervision link: {e}"))?;
    let link = Arc::new(Mutex::new(stream));
    let bus = EventBus::new(None);
    let events = bus.subscribe();
    let sup = match SupervisorRef::start_at(spec, path, bus) {
        Ok(sup) => sup,
        Err(e) => {
            forward(&link, events.drain());
            let _ = link::send(&link, &ChildMsg::StartFailed(e.to_string()));
            return Err(e.to_string());
        }
    };
    let of_start = sup.events_of_start();
    forward(&link, events.drain_first(of_start));
    let server = RemoteServer::new(sup.clone(), writer(link.clone()));
    server.events_written(of_start);
    let started = ChildMsg::Started {
        strategy: sup.strategy(),
        instance: server.instance(),
    };
    let _ = link::send(&link, &started);
    let forwarder = {
        let (link, server) = (link.clone(), server.clone());
        std::thread::spawn(move || {
            let mut written = of_start;
            while let Some(event) = events.recv(None) {
                if link::send(&link, &ChildMsg::Event(event)).is_err() {
                    break;
                }
                written += 1;
                server.events_written(written + events.lagged());
            }
            server.events_done();
        })
    };
    {
        let server = server.clone();
        std::thread::spawn(move || serve_requests(requests, server));
    }
    {
        let sup = sup.clone();
        std::thread::spawn(move || {
            crate::wait_for_stop(None);
            sup.stop();
        });
    }
    let exit = sup.wait();
    let _ = forwarder.join();
    // The answers owed (to a stop request, say) and the exits of the supervisors below, which
    // the parent's handles on them wait for, before this process exits.
    server.settle(EVENTS_DRAIN);
    match exit {
        Exit::Code(0) => Ok(()),
        exit => Err(format!("supervisor {} exited: {exit}", sup.path())),
    }
}

/// Hands the parent's requests to `server` until the link closes (the parent is gone: this
/// process follows it).
fn serve_requests(mut link: std::os::unix::net::UnixStream, server: Arc<RemoteServer>) {
    while let Some(ParentMsg::Request { id, request }) = link::recv_request(&mut link) {
        server.request(id, &request);
    }
}

/// How the [`RemoteServer`] writes its frames.
fn writer(link: Arc<Mutex<std::os::unix::net::UnixStream>>) -> WriteFrame {
    Box::new(move |frame| {
        let msg = match frame {
            ServerFrame::Answer { id, answer } => ChildMsg::Answer { id, answer },
            ServerFrame::Exited { instance, exit } => ChildMsg::Exited { instance, exit },
        };
        link::send(&link, &msg).map_err(|e| e.to_string())
    })
}

/// Sends `events` to the parent until the link breaks.
fn forward(link: &Mutex<std::os::unix::net::UnixStream>, events: impl IntoIterator<Item = Event>) {
    for event in events {
        if link::send(link, &ChildMsg::Event(event)).is_err() {
            break;
        }
    }
}

/// Builds the nested supervisor's `Process` from the link and its path.
pub(crate) type BuildRemote = dyn Fn(LinkEnd, String) -> Process + Send + Sync;

/// `Process::new(remote_entry::<B, Args>, (link, path, args))`, named after the child id.
pub(crate) fn builder<B, Args>(id: String, args: Args) -> Arc<BuildRemote>
where
    B: BuildSpec<Args> + Copy,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    Arc::new(move |link, path| {
        Process::new(remote_entry::<B, Args>, (link, path, args.clone())).name(id.clone())
    })
}

/// The portable start of `supervisor_process(id, B, args)` (see `portable.rs`).
pub(crate) fn portable<B, Args>(args: Args) -> Portable
where
    B: BuildSpec<Args> + Copy,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    Portable::with_args(make::<B, Args>, args)
}

/// Rebuilds the start of `supervisor_process(id, B, args)` in this process.
fn make<B, Args>(input: MakeInput<'_>) -> Result<Made, String>
where
    B: BuildSpec<Args> + Copy,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    let args = portable::decode_args::<Args>(input.args)?;
    Ok(Made {
        start: Arc::new(RemoteChild(builder::<B, Args>(input.id.into(), args))),
        extra: None,
    })
}

/// The [`StartChild`] of supervisors in their own process.
pub(crate) struct RemoteChild(pub(crate) Arc<BuildRemote>);

impl StartChild for RemoteChild {
    fn start(
        &self,
        ctx: StartContext,
    ) -> BoxFuture<'static, Result<Box<dyn RunningChild>, String>> {
        let build = self.0.clone();
        Box::pin(async move {
            portable::install();
            let (ours, theirs) = link::pair()?;
            let path = ctx.child_path();
            let process = {
                let path = path.clone();
                start_blocking(move || Ok(build(theirs, path))).await?
            };
            let (mut read, write) = link::into_async(ours)?.into_split();
            let final_exit = Arc::new(Mutex::new(None));
            let note = |event: &Event| {
                if let Event::SupervisorExited { supervisor, exit } = event {
                    if *supervisor == path {
                        *lock(&final_exit) = Some(exit.clone());
                    }
                }
            };
            let (strategy, instance) = loop {
                match link::recv(&mut read).await {
                    Some(ChildMsg::Started { strategy, instance }) => break (strategy, instance),
                    Some(ChildMsg::Event(event)) => {
                        note(&event);
                        ctx.events.publish(event);
                    }
                    Some(ChildMsg::StartFailed(reason)) => {
                        process.wait_exit().await;
                        return Err(reason);
                    }
                    Some(other) => {
                        process.kill();
                        process.wait_exit().await;
                        return Err(format!(
                            "its process sent {other:?} before it started, which only a worker may"
                        ));
                    }
                    None => {
                        let exit = process.wait_exit().await;
                        return Err(format!("its process exited before it started ({exit})"));
                    }
                }
            };
            let (requests, to_send) = mpsc::unbounded_channel();
            let bus = EventBus::new(Some(ctx.events.clone()));
            let tree = RemoteTree::new(path.clone(), strategy, instance, bus, sender(requests));
            tokio::spawn(send_requests(write, to_send));
            let (done, events_done) = watch::channel(false);
            let (release, mut released) = watch::channel(false);
            let exited = process.wait_exit();
            let last = final_exit.clone();
            let reader_tree = tree.clone();
            tokio::spawn(async move {
                let tree = reader_tree;
                // Not before our supervisor has published this child's start (`started`), or
                // a subtree's events could come before it. (Dropped unreleased: go on.)
                let _ = released.wait_for(|go| *go).await;
                while let Some(msg) = link::recv(&mut read).await {
                    match msg {
                        ChildMsg::Event(event) => {
                            if let Event::SupervisorExited { supervisor, exit } = &event {
                                if *supervisor == path {
                                    *lock(&last) = Some(exit.clone());
                                }
                            }
                            tree.event(event);
                        }
                        ChildMsg::Answer { id, answer } => tree.answer(id, answer),
                        ChildMsg::Exited { instance, exit } => tree.exited(instance, exit),
                        other => tracing::warn!(
                            target: "procvisor",
                            "supervisor {path}: unexpected {other:?} on its supervision link"
                        ),
                    }
                }
                tree.closed(None);
                let exit = final_exit_of(exited.await, &last);
                tree.root_exited(exit);
                let _ = done.send(true);
            });
            Ok(Box::new(RunningRemote {
                process,
                tree,
                events_done,
                final_exit,
                release,
            }) as Box<dyn RunningChild>)
        })
    }
}

/// Sends the requests of the handles on a subtree to its process (never blocks: they queue).
fn sender(requests: mpsc::UnboundedSender<(u64, Vec<u8>)>) -> SendRequest {
    Box::new(move |id, request| {
        if request.len() > link::MAX_FRAME - 64 {
            return Err(format!(
                "a request of {} bytes is over the supervision link's limit of {} bytes",
                request.len(),
                link::MAX_FRAME
            ));
        }
        requests
            .send((id, request))
            .map_err(|_| "the supervision link is closed".to_string())
    })
}

/// Writes queued requests to the subtree's process until the link or the queue closes (a
/// request lost on a broken link is answered when the reader sees the link close).
async fn send_requests(
    mut link: tokio::net::unix::OwnedWriteHalf,
    mut requests: mpsc::UnboundedReceiver<(u64, Vec<u8>)>,
) {
    while let Some((id, request)) = requests.recv().await {
        let msg = ParentMsg::Request { id, request };
        if link::send_request(&mut link, &msg).await.is_err() {
            break;
        }
    }
}

/// A nested supervisor process's exit: a supervisor that gave up reports its reason
/// (`Failed`, its last event said) rather than its exit code.
fn final_exit_of(exit: Exit, said: &Mutex<Option<Exit>>) -> Exit {
    match (exit, lock(said).clone()) {
        (Exit::Code(code), Some(Exit::Failed(reason))) if code != 0 => Exit::Failed(reason),
        (exit, _) => exit,
    }
}

/// A nested supervisor's running process.
struct RunningRemote {
    process: RunningProcess,
    /// The handles on its supervisors.
    tree: Arc<RemoteTree>,
    events_done: watch::Receiver<bool>,
    /// How the nested supervisor said it ended (its last event).
    final_exit: Arc<Mutex<Option<Exit>>>,
    /// Lets the reader publish the subtree's events (see `started`).
    release: watch::Sender<bool>,
}

impl RunningChild for RunningRemote {
    fn pid(&self) -> Option<i32> {
        self.process.pid()
    }

    /// The process's exit, once the subtree's last events have been republished (and its
    /// handles have learned it).
    fn wait_exit(&self) -> BoxFuture<'static, Exit> {
        let exited = self.process.wait_exit();
        let mut events_done = self.events_done.clone();
        let final_exit = self.final_exit.clone();
        Box::pin(async move {
            let exit = exited.await;
            let _ = tokio::time::timeout(EVENTS_DRAIN, events_done.wait_for(|done| *done)).await;
            final_exit_of(exit, &final_exit)
        })
    }

    fn request_stop(&self) {
        self.process.request_stop();
    }

    fn terminate(&self) {
        self.process.terminate();
    }

    fn kill(&self) {
        self.process.kill();
    }

    fn started(&self) {
        self.release.send_replace(true);
    }

    fn supervisor(&self) -> Option<SupervisorRef> {
        Some(self.tree.root())
    }
}
