//! Worker processes as supervised children: a fresh [`Process`] per start, built by a
//! [`BuildProcess`], started on a blocking thread, optionally awaited until it reports ready,
//! and watched through its pidfd record (no polling).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use procvisor_actors::child::ChildRecord;
use procvisor_actors::supervisor::{
    BoxFuture, Exit, ExtraArgs, RunningChild, StartChild, StartContext,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::link::{self, ChildMsg, LinkEnd};
use crate::process::{Child, Process, Target};

/// Builds the `Process` of one start. `ready`: the child's end of a supervision link, to be
/// handed to the child so that it can report readiness.
pub(crate) trait BuildProcess: Send + Sync + 'static {
    fn build(
        &self,
        id: &str,
        extra: Option<&ExtraArgs>,
        ready: Option<LinkEnd>,
    ) -> Result<Process, String>;
}

/// `target(args)`.
pub(crate) struct FnTarget<F, Args> {
    pub(crate) target: F,
    pub(crate) args: Args,
}

impl<F, Args> BuildProcess for FnTarget<F, Args>
where
    F: Target<Args> + Copy,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn build(
        &self,
        id: &str,
        _: Option<&ExtraArgs>,
        ready: Option<LinkEnd>,
    ) -> Result<Process, String> {
        Ok(process_for(self.target, self.args.clone(), ready).name(id))
    }
}

/// `target(extra)` for the dynamic children of a `SimpleOneForOne` supervisor.
pub(crate) struct TemplateTarget<F, E> {
    pub(crate) target: F,
    pub(crate) extra: PhantomData<fn(E)>,
}

impl<F, E> BuildProcess for TemplateTarget<F, E>
where
    F: Target<E> + Copy,
    E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    fn build(
        &self,
        id: &str,
        extra: Option<&ExtraArgs>,
        ready: Option<LinkEnd>,
    ) -> Result<Process, String> {
        let args = downcast::<E>(extra)?;
        Ok(process_for(self.target, args, ready).name(id))
    }
}

/// A user's factory: any `Process` (a `Run` value, a name, a start method, …).
pub(crate) struct Factory<P>(pub(crate) P);

impl<P> BuildProcess for Factory<P>
where
    P: Fn() -> crate::error::Result<Process> + Send + Sync + 'static,
{
    fn build(
        &self,
        _: &str,
        _: Option<&ExtraArgs>,
        ready: Option<LinkEnd>,
    ) -> Result<Process, String> {
        refuse_ready(ready)?;
        (self.0)().map_err(|e| e.to_string())
    }
}

/// A user's factory taking the extra arguments of a dynamic child.
pub(crate) struct TemplateFactory<P, E>(pub(crate) P, pub(crate) PhantomData<fn(E)>);

impl<P, E> BuildProcess for TemplateFactory<P, E>
where
    P: Fn(&E) -> crate::error::Result<Process> + Send + Sync + 'static,
    E: Send + Sync + 'static,
{
    fn build(
        &self,
        _: &str,
        extra: Option<&ExtraArgs>,
        ready: Option<LinkEnd>,
    ) -> Result<Process, String> {
        refuse_ready(ready)?;
        let extra = extra
            .and_then(|e| e.downcast_ref::<E>())
            .ok_or_else(|| missing_extra::<E>())?;
        (self.0)(extra).map_err(|e| e.to_string())
    }
}

fn refuse_ready(ready: Option<LinkEnd>) -> Result<(), String> {
    match ready {
        None => Ok(()),
        Some(_) => Err("wait_ready() needs a spec made with ChildSpec::worker or \
                        ChildSpec::template (a factory's process cannot be handed the link)"
            .into()),
    }
}

fn missing_extra<E>() -> String {
    format!(
        "this template needs extra arguments of type {}: start it with start_child_with",
        std::any::type_name::<E>()
    )
}

fn downcast<E: Clone + 'static>(extra: Option<&ExtraArgs>) -> Result<E, String> {
    extra
        .and_then(|e| e.downcast_ref::<E>())
        .cloned()
        .ok_or_else(missing_extra::<E>)
}

/// `Process::new(target, args)`, or, when the supervisor waits for readiness, the same target
/// behind [`ready_entry`] with the link as an extra argument.
fn process_for<F, Args>(target: F, args: Args, ready: Option<LinkEnd>) -> Process
where
    F: Target<Args> + Copy,
    Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    match ready {
        None => Process::new(target, args),
        Some(link) => Process::new(ready_entry::<F, Args>, (link, args)),
    }
}

/// The child side of a worker started with `wait_ready`: keeps the link for
/// [`notify_ready`](super::notify_ready), then runs the real target.
fn ready_entry<F, Args>(link: LinkEnd, args: Args) -> F::Output
where
    F: Target<Args> + Copy,
{
    link::set_ready_link(link);
    conjure::<F>().call(args)
}

/// Makes a value of a zero-sized function type (a `fn` item or a closure capturing nothing),
/// the way the process layer's trampolines do.
pub(crate) fn conjure<F: Copy>() -> F {
    const { assert_zero_sized::<F>() };
    // SAFETY: `F` has size zero (checked at compile time above), so it has no bytes that could be
    // invalid; it is a fn item or a closure capturing nothing, which carry no invariants.
    unsafe { std::mem::zeroed() }
}

/// Compile-time check that `F` is zero-sized, with a message that says what to do.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        std::mem::size_of::<F>() == 0,
        "a supervised target must be a fn item or a closure that captures nothing; \
         pass what it needs through the args"
    );
}

/// The [`StartChild`] of worker processes.
pub(crate) struct ProcessChild {
    pub(crate) build: Arc<dyn BuildProcess>,
    /// `Some(t)`: the start completes when the child calls `notify_ready()` (at most `t`).
    pub(crate) ready: Option<Duration>,
}

impl StartChild for ProcessChild {
    fn start(
        &self,
        ctx: StartContext,
    ) -> BoxFuture<'static, Result<Box<dyn RunningChild>, String>> {
        let started = self.start_or_ignore(ctx);
        Box::pin(async move {
            started
                .await?
                .ok_or_else(|| "it declined to start (ignore)".to_string())
        })
    }

    fn start_or_ignore(
        &self,
        ctx: StartContext,
    ) -> BoxFuture<'static, Result<Option<Box<dyn RunningChild>>, String>> {
        let build = self.build.clone();
        let ready = self.ready;
        Box::pin(async move {
            let (ours, theirs) = match ready {
                Some(_) => {
                    let (ours, theirs) = link::pair()?;
                    (Some(ours), Some(theirs))
                }
                None => (None, None),
            };
            let child =
                start_blocking(move || build.build(&ctx.id, ctx.extra.as_ref(), theirs)).await?;
            if let (Some(ours), Some(timeout)) = (ours, ready) {
                if child.await_ready(ours, timeout).await? == Readiness::Declined {
                    return Ok(None);
                }
            }
            Ok(Some(Box::new(child) as Box<dyn RunningChild>))
        })
    }
}

/// Builds and starts a process on a blocking thread (user code — the factory, the arguments'
/// `Serialize` — and the spawner hand-off never run on the node's thread).
pub(crate) async fn start_blocking(
    build: impl FnOnce() -> Result<Process, String> + Send + 'static,
) -> Result<RunningProcess, String> {
    tokio::task::spawn_blocking(move || {
        let child = build()?.start().map_err(|e| e.to_string())?;
        Ok(RunningProcess::new(&child))
    })
    .await
    .map_err(|e| format!("the thread starting the process failed: {e}"))?
}

/// How a worker answered its start.
#[derive(Debug, PartialEq, Eq)]
enum Readiness {
    Ready,
    /// It declined ([`decline_start`](super::decline_start)) and has exited.
    Declined,
}

/// One started worker process. Dropping it kills the process if it still runs.
pub(crate) struct RunningProcess {
    record: Arc<ChildRecord>,
}

impl RunningProcess {
    pub(crate) fn new(child: &Child) -> RunningProcess {
        RunningProcess {
            record: child.record().clone(),
        }
    }

    /// Waits for the child's `Ready` (or `Ignore`, once it has exited) on the link; a child
    /// that exits (or stays silent) first failed to start.
    async fn await_ready(
        &self,
        link: std::os::unix::net::UnixStream,
        timeout: Duration,
    ) -> Result<Readiness, String> {
        let mut link = link::into_async(link)?;
        match tokio::time::timeout(timeout, link::recv(&mut link)).await {
            Ok(Some(ChildMsg::Ready)) => Ok(Readiness::Ready),
            Ok(Some(ChildMsg::Ignore)) => {
                self.wait_exit().await;
                Ok(Readiness::Declined)
            }
            Ok(Some(other)) => Err(format!("unexpected message before ready: {other:?}")),
            Ok(None) => {
                let exit = self.wait_exit().await;
                Err(format!("it exited before it was ready ({exit})"))
            }
            Err(_) => Err(format!("it did not report ready within {timeout:?}")),
        }
    }
}

impl RunningChild for RunningProcess {
    fn pid(&self) -> Option<i32> {
        Some(self.record.pid())
    }

    fn wait_exit(&self) -> BoxFuture<'static, Exit> {
        let record = self.record.clone();
        Box::pin(async move {
            let status = record.wait_async().await;
            match record.bootstrap_error() {
                Some(reason) => Exit::Failed(format!("it could not start: {reason}")),
                None => status.into(),
            }
        })
    }

    fn request_stop(&self) {
        let _ = self.record.request_stop();
    }

    fn terminate(&self) {
        let _ = self.record.signal(libc::SIGTERM);
    }

    fn kill(&self) {
        let _ = self.record.signal(libc::SIGKILL);
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        // A no-op once the process has exited (signals go through the pidfd, never to a
        // recycled pid).
        let _ = self.record.signal(libc::SIGKILL);
    }
}
