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
    BoxFuture, Event, EventBus, Exit, RunningChild, StartChild, StartContext, SupervisorRef,
    SupervisorSpec,
};
use procvisor_actors::sync_util::lock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::link::{self, ChildMsg, LinkEnd};
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

/// Runs `spec` as the supervisor at `path`, reporting to the parent over `link`. The events of
/// the start are sent before `Ready` (or `StartFailed`), from this thread; a forwarder thread
/// sends the later ones (a child may already have exited: those come after `Ready`, so the
/// parent publishes them after this supervisor's start). One writer at a time, so the parent
/// sees them in order.
fn serve(link: LinkEnd, path: String, spec: SupervisorSpec) -> Result<(), String> {
    let link = Arc::new(Mutex::new(std::os::unix::net::UnixStream::from(link.0)));
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
    forward(&link, events.drain_first(sup.events_of_start()));
    let _ = link::send(&link, &ChildMsg::Ready);
    let forwarder = {
        let link = link.clone();
        std::thread::spawn(move || forward(&link, events))
    };
    {
        let sup = sup.clone();
        std::thread::spawn(move || {
            crate::process::wait_for_stop(None);
            sup.stop();
        });
    }
    let exit = sup.wait();
    let _ = forwarder.join();
    match exit {
        Exit::Code(0) => Ok(()),
        exit => Err(format!("supervisor {} exited: {exit}", sup.path())),
    }
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

/// The [`StartChild`] of supervisors in their own process.
pub(crate) struct RemoteChild(pub(crate) Arc<BuildRemote>);

impl StartChild for RemoteChild {
    fn start(
        &self,
        ctx: StartContext,
    ) -> BoxFuture<'static, Result<Box<dyn RunningChild>, String>> {
        let build = self.0.clone();
        Box::pin(async move {
            let (ours, theirs) = link::pair()?;
            let path = ctx.child_path();
            let process = {
                let path = path.clone();
                start_blocking(move || Ok(build(theirs, path))).await?
            };
            let mut link = link::into_async(ours)?;
            let final_exit = Arc::new(Mutex::new(None));
            let note = |event: &Event| {
                if let Event::SupervisorExited { supervisor, exit } = event {
                    if *supervisor == path {
                        *lock(&final_exit) = Some(exit.clone());
                    }
                }
            };
            loop {
                match link::recv(&mut link).await {
                    Some(ChildMsg::Ready) => break,
                    Some(ChildMsg::Event(event)) => {
                        note(&event);
                        ctx.events.publish(event);
                    }
                    Some(ChildMsg::StartFailed(reason)) => {
                        process.wait_exit().await;
                        return Err(reason);
                    }
                    Some(ChildMsg::Ignore) => {
                        process.kill();
                        process.wait_exit().await;
                        return Err("its process sent Ignore, which only a worker may".into());
                    }
                    None => {
                        let exit = process.wait_exit().await;
                        return Err(format!("its process exited before it started ({exit})"));
                    }
                }
            }
            let (done, events_done) = watch::channel(false);
            let (release, mut released) = watch::channel(false);
            let bus = ctx.events.clone();
            let last = final_exit.clone();
            tokio::spawn(async move {
                // Not before our supervisor has published this child's start (`started`), or
                // a subtree's events could come before it. (Dropped unreleased: go on.)
                let _ = released.wait_for(|go| *go).await;
                while let Some(msg) = link::recv(&mut link).await {
                    if let ChildMsg::Event(event) = msg {
                        if let Event::SupervisorExited { supervisor, exit } = &event {
                            if *supervisor == path {
                                *lock(&last) = Some(exit.clone());
                            }
                        }
                        bus.publish(event);
                    }
                }
                let _ = done.send(true);
            });
            Ok(Box::new(RunningRemote {
                process,
                events_done,
                final_exit,
                release,
            }) as Box<dyn RunningChild>)
        })
    }
}

/// A nested supervisor's running process.
struct RunningRemote {
    process: RunningProcess,
    events_done: watch::Receiver<bool>,
    /// How the nested supervisor said it ended (its last event).
    final_exit: Arc<Mutex<Option<Exit>>>,
    /// Lets the forwarder publish the subtree's events (see `started`).
    release: watch::Sender<bool>,
}

impl RunningChild for RunningRemote {
    fn pid(&self) -> Option<i32> {
        self.process.pid()
    }

    /// The process's exit, once the subtree's last events have been republished; a supervisor
    /// that gave up reports its reason (`Failed`) rather than its exit code.
    fn wait_exit(&self) -> BoxFuture<'static, Exit> {
        let exited = self.process.wait_exit();
        let mut events_done = self.events_done.clone();
        let final_exit = self.final_exit.clone();
        Box::pin(async move {
            let exit = exited.await;
            let _ = tokio::time::timeout(EVENTS_DRAIN, events_done.wait_for(|done| *done)).await;
            let said = lock(&final_exit).clone();
            match (exit, said) {
                (Exit::Code(code), Some(Exit::Failed(reason))) if code != 0 => Exit::Failed(reason),
                (exit, _) => exit,
            }
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
}
