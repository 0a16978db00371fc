//! Supervision trees over OS processes, with Erlang/OTP's semantics.
//!
//! A [`Supervisor`] starts children from [`ChildSpec`]s — plain data: an id, how to start the
//! child (a process target and its arguments, a nested supervisor, or anything implementing
//! [`StartChild`]), when to restart it ([`Restart`]), how to stop it ([`Shutdown`]) and what it
//! is ([`ChildType`]) — and keeps them running:
//!
//! * children start in spec order ([`Supervisor::start`] returns once all have started, or
//!   fails after stopping those already started) and stop in reverse order;
//! * when one exits, its [`Restart`] type and the exit decide whether it is restarted, and the
//!   [`Strategy`] which siblings restart with it (`OneForOne`, `OneForAll`, `RestForOne`, and
//!   `SimpleOneForOne` for children added at run time with [`Supervisor::start_child_with`]);
//! * more than [`Intensity::max_restarts`] restarts within [`Intensity::period`] (default: 1 in
//!   5 s, as OTP) and the supervisor gives up: it stops its children and exits abnormally, and
//!   its own supervisor handles that like any failed child (escalation);
//! * every step is an [`Event`] on a stream that services log and tests await
//!   ([`Supervisor::events`], [`Events::wait_for`], [`Events::wait_restarts`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use procvisor::supervisor::{ChildSpec, Event, Restart, Shutdown, Strategy, Supervisor, SupervisorSpec};
//!
//! fn serve(port: u16) {
//!     // … accept connections until asked to stop …
//!     while !procvisor::wait_for_stop(Some(Duration::from_millis(100))) {}
//! }
//!
//! fn flaky() {
//!     std::thread::sleep(Duration::from_millis(200));
//!     panic!("lost the database connection");
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init();
//!     let spec = SupervisorSpec::new(Strategy::OneForOne)
//!         .name("service")
//!         .child(ChildSpec::worker("http", serve, (8080u16,)).shutdown(Shutdown::Timeout(Duration::from_secs(2))))
//!         .child(ChildSpec::worker("sync", flaky, ()).restart(Restart::Transient));
//!     let (sup, events) = Supervisor::start_with_events(spec)?;
//!     // `sync` crashes, and is restarted: wait for it.
//!     events.wait_restarts("sync", 1, Duration::from_secs(10)).expect("restarted");
//!     for child in sup.which_children().wait()? {
//!         println!("{} {:?} {:?}", child.id, child.pid, child.status);
//!     }
//!     sup.stop(); // sync, then http (reverse order)
//!     Ok(())
//! }
//! ```
//!
//! ## Exits and restarts
//!
//! | restart | restarted after |
//! |---|---|
//! | `Permanent` | any exit |
//! | `Transient` | an abnormal exit: not exit code 0, not a *shutdown* (one its supervisor asked for, or a death by SIGTERM, which systemd's `Restart=on-failure` also counts as clean) |
//! | `Temporary` | never (and it is forgotten once it exits) |
//!
//! A restart happens at once, as in OTP, and so does the retry of a restart that failed to
//! start the child (by a message the supervisor sends itself, so it serves requests between
//! attempts). Each attempt counts toward the intensity, so a child whose dependency is down for
//! more than a few milliseconds exhausts any finite intensity; [`ChildSpec::restart_delay`]
//! makes its restarts wait, with a backoff ([`RestartDelay`], announced by
//! [`Event::RestartDelayed`]).
//!
//! ## Shutdown
//!
//! `Brutal` kills (SIGKILL). `Timeout(d)` sends the graceful stop request
//! ([`stop_requested`](crate::stop_requested) / [`wait_for_stop`](crate::wait_for_stop) turn
//! true in the child), waits `d`, sends SIGTERM, waits `d` again, then kills. `Infinity` (the
//! default for supervisors) requests the stop and waits: a nested supervisor stops its own
//! children first.
//!
//! ## Nesting
//!
//! [`ChildSpec::supervisor`] nests a supervisor in this process;
//! [`ChildSpec::supervisor_process`] runs it in its own OS process, which builds its spec with a
//! [`BuildSpec`] function and sends its events back over a Unix socket. Either way its events
//! reach the subscribers of every ancestor, with its path (`top/db`) as `supervisor`. Killing a
//! subtree's process takes its descendants with it: children never outlive their parent.
//!
//! [`Supervisor::subtree("db")`](Supervisor::subtree) (or `"db/replicas"`, any depth) gives a
//! [`SupervisorRef`] on a nested supervisor, with every request of the top-level handle
//! (`which_children`, `count_children`, `start_child`, `terminate_child`, …) and a stream of
//! its subtree's events, as OTP addresses any supervisor of a tree. For a supervisor in its own
//! process the requests travel over the supervision links (through every process on the way),
//! and a spec given to its `start_child` travels too: one made by [`ChildSpec::worker`],
//! [`ChildSpec::template`] or [`ChildSpec::supervisor_process`] can, being a function of this
//! executable and serde arguments. A handle names one incarnation, as a pid does: after its
//! parent restarted it, it answers [`SupervisorError::NotRunning`].
//!
//! ## Where this differs from Erlang/OTP
//!
//! The semantics are OTP's `supervisor` wherever an OS process allows; these are the
//! adaptations a user meets.
//!
//! * **A supervisor past its intensity exits `Failed`**, not with OTP's reason `shutdown`. It
//!   stops its children (reverse order), publishes [`Event::GaveUp`] and
//!   [`Event::SupervisorExited`], and exits with [`Exit::Failed`] naming the child and the
//!   intensity: a top-level [`Supervisor::wait`] returns it; the process of a
//!   [`ChildSpec::supervisor_process`] exits with code 1 and its parent sees the same
//!   `Failed(reason)`. Its parent handles that as a failed child — abnormal, so a `Transient`
//!   supervisor child is restarted too (in OTP, whose `shutdown` counts as a normal exit, only
//!   a `Permanent` one is), and it counts toward the parent's intensity: escalation goes up
//!   through every supervisor that is not `Temporary`. Giving up is a failure here, so it is
//!   reported as one wherever it ends.
//! * **A shutdown timeout is two grace periods.** An OTP child is sent `exit(Child,
//!   shutdown)`, which a process not trapping exits obeys at once, and is killed after the
//!   timeout. A process here gets the graceful stop request first (it must look:
//!   [`stop_requested`](crate::stop_requested), [`wait_for_stop`](crate::wait_for_stop)); after
//!   `Timeout(d)` it gets SIGTERM, which ends a process with the default handler; after another
//!   `d`, SIGKILL. So `d` bounds the wait for a cooperative stop, and a stop takes at most `2d`.
//!   A death by SIGTERM counts as a shutdown (`Transient` children are not restarted after it),
//!   as systemd's `Restart=on-failure` does.
//! * **`which_children` lists children in start order** (the spec order, children added by
//!   `start_child` at the end; a child keeps its place when it is stopped or restarted), and a
//!   `SimpleOneForOne` supervisor's in the order they were started, with ids `template-N`
//!   (OTP's list comes in reverse start order, its dynamic children in no defined order and
//!   without ids, addressed by pid). Its `count_children` reports 1 spec, its template, as OTP.
//! * **A child is an OS process** (or anything implementing [`StartChild`]), its "pid" a real
//!   pid, and its exit an [`Exit`] (a code, a signal, or a failure to start) rather than an
//!   Erlang term. Failed restarts may wait ([`ChildSpec::restart_delay`]); OTP retries at once,
//!   which stays the default.
//!
//! ## Readiness
//!
//! A child process exists as soon as it is started, but may need time to become useful. With
//! [`ChildSpec::wait_ready`] its start completes only when the child calls [`notify_ready`]
//! (like OTP's `init/1` returning, or systemd's `READY=1`): the next child starts after it, and
//! a child that exits before it is ready *failed to start*.
//!
//! ## Dropping
//!
//! Dropping the last [`Supervisor`] handle stops the supervisor (and so its children), as
//! [`Supervisor::stop`] does; it blocks for as long as that takes. A supervisor still running
//! when its process exits normally (its handle leaked, or kept in a static) is stopped by the
//! exit sequence, newest first, before the process's remaining children are joined.

mod link;
mod portable;
mod remote;
pub(crate) mod worker;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use procvisor_actors::supervisor as actors;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use procvisor_actors::supervisor::{
    AutoShutdown, BoxFuture, ChildCounts, ChildExit, ChildInfo, ChildStatus, ChildType, EventBus,
    Exit, ExtraArgs, ExtraType, Intensity, Request, Restart, RestartDelay, RunningChild, Shutdown,
    SignificantProblem, StartChild, StartContext, Strategy, SupervisorError, SupervisorRef,
    SupervisorSpec, WaitError,
};
pub use procvisor_actors::supervisor::{Event, EventStream as Events};
pub use remote::BuildSpec;

use crate::error::Result;
use crate::process::{Process, Target};
use portable::Portable;
use worker::{FnTarget, ProcessChild, TemplateTarget, assert_zero_sized};

/// Tells the supervisor that this child process is ready (see [`ChildSpec::wait_ready`]).
/// Does nothing in a process whose supervisor is not waiting for it, and after the first call.
pub fn notify_ready() {
    link::notify_ready();
}

/// Declines this start, as an OTP child's `init/1` returning `ignore`, and exits (code 0).
///
/// For a child whose supervisor waits for its readiness ([`ChildSpec::wait_ready`]), called
/// before [`notify_ready`]: the start is then neither a success nor a failure — the supervisor
/// keeps the child as not running (`Stopped`; a temporary or dynamic child is forgotten),
/// publishes [`Event::ChildIgnored`], and goes on (with the next child, or the rest of a
/// restart). Anywhere else (no supervisor waiting, or after `notify_ready`) the start is
/// already complete, and this is an ordinary exit with code 0.
#[doc(alias = "ignore")]
pub fn decline_start() -> ! {
    link::notify_ignore();
    std::process::exit(0)
}

/// One child of a [`Supervisor`]: its id, how to start it, when to restart it, how to stop it.
///
/// Defaults: `Restart::Permanent`; shutdown `Timeout(5 s)` for workers, `Infinity` for
/// supervisors.
#[derive(Clone)]
pub struct ChildSpec {
    id: String,
    start: Start,
    child_type: ChildType,
    restart: Restart,
    shutdown: Option<Shutdown>,
    extra: Option<ExtraType>,
    delay: Option<RestartDelay>,
    significant: bool,
    /// How its start travels to a supervisor in another process, if it can.
    portable: Option<Portable>,
}

#[derive(Clone)]
enum Start {
    Process {
        build: Arc<dyn worker::BuildProcess>,
        ready: Option<Duration>,
    },
    Remote(Arc<remote::BuildRemote>),
    Nested(SupervisorSpec),
    Custom(Arc<dyn StartChild>),
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let start = match &self.start {
            Start::Process { ready, .. } => format!("process (wait_ready: {ready:?})"),
            Start::Remote(_) => "supervisor process".into(),
            Start::Nested(spec) => format!("nested supervisor {spec:?}"),
            Start::Custom(_) => "custom".into(),
        };
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("start", &start)
            .field("child_type", &self.child_type)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("restart_delay", &self.delay)
            .field("significant", &self.significant)
            .field("portable", &self.portable.is_some())
            .finish()
    }
}

impl ChildSpec {
    fn with_start(id: impl Into<String>, child_type: ChildType, start: Start) -> ChildSpec {
        ChildSpec {
            id: id.into(),
            start,
            child_type,
            restart: Restart::Permanent,
            shutdown: None,
            extra: None,
            delay: None,
            significant: false,
            portable: None,
        }
    }

    /// A worker process running `target(args…)`: a fresh [`Process`] (named after the id) at
    /// every start, from the same arguments. The target is a `fn` item or a closure capturing
    /// nothing, as for [`Process::new`].
    ///
    /// ```
    /// use procvisor::supervisor::ChildSpec;
    /// fn worker(queue: String, batch: u32) { /* … */ }
    /// let spec = ChildSpec::worker("ingest", worker, ("jobs".to_string(), 64));
    /// # let _ = spec;
    /// ```
    pub fn worker<F, Args>(id: impl Into<String>, target: F, args: Args) -> ChildSpec
    where
        F: Target<Args> + Copy,
        Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        const { assert_zero_sized::<F>() };
        let portable = Portable::worker::<F, Args>(args.clone());
        let build = Arc::new(FnTarget { target, args });
        let mut spec =
            ChildSpec::with_start(id, ChildType::Worker, Start::Process { build, ready: None });
        spec.portable = Some(portable);
        spec
    }

    /// A worker process built by `factory` at every start: for `Run` values, names, start
    /// methods, or starts that may fail (an `Err` is a failed start).
    pub fn process<P>(id: impl Into<String>, factory: P) -> ChildSpec
    where
        P: Fn() -> Result<Process> + Send + Sync + 'static,
    {
        let build = Arc::new(worker::Factory(factory));
        ChildSpec::with_start(id, ChildType::Worker, Start::Process { build, ready: None })
    }

    /// The template of a `SimpleOneForOne` supervisor's children: each
    /// [`Supervisor::start_child_with(args)`](Supervisor::start_child_with) starts
    /// `target(args…)` (and every restart of that child reuses its `args`).
    pub fn template<F, E>(id: impl Into<String>, target: F) -> ChildSpec
    where
        F: Target<E> + Copy,
        E: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        const { assert_zero_sized::<F>() };
        let build = Arc::new(TemplateTarget {
            target,
            extra: PhantomData::<fn(E)>,
        });
        let mut spec =
            ChildSpec::with_start(id, ChildType::Worker, Start::Process { build, ready: None });
        spec.extra = Some(ExtraType::of::<E>());
        spec.portable = Some(Portable::template::<F, E>());
        spec
    }

    /// A template whose processes are built by `factory` from the extra arguments.
    pub fn template_fn<P, E>(id: impl Into<String>, factory: P) -> ChildSpec
    where
        P: Fn(&E) -> Result<Process> + Send + Sync + 'static,
        E: Send + Sync + 'static,
    {
        let build = Arc::new(worker::TemplateFactory(factory, PhantomData::<fn(E)>));
        let mut spec =
            ChildSpec::with_start(id, ChildType::Worker, Start::Process { build, ready: None });
        spec.extra = Some(ExtraType::of::<E>());
        spec
    }

    /// A supervisor nested in this process (its actor runs beside its parent's).
    pub fn supervisor(id: impl Into<String>, spec: SupervisorSpec) -> ChildSpec {
        ChildSpec::with_start(id, ChildType::Supervisor, Start::Nested(spec))
    }

    /// A supervisor in its own OS process, whose spec `build(args…)` makes there (`build` is a
    /// `fn` item or a closure capturing nothing). Its subtree's events come back to this
    /// supervisor's subscribers; killing its process kills its subtree.
    pub fn supervisor_process<B, Args>(id: impl Into<String>, build: B, args: Args) -> ChildSpec
    where
        B: BuildSpec<Args> + Copy,
        Args: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    {
        const { assert_zero_sized::<B>() };
        let _ = build;
        let id = id.into();
        let portable = remote::portable::<B, Args>(args.clone());
        let start = Start::Remote(remote::builder::<B, Args>(id.clone(), args));
        let mut spec = ChildSpec::with_start(id, ChildType::Supervisor, start);
        spec.portable = Some(portable);
        spec
    }

    /// Any child that can be started and stopped: implement [`StartChild`] and
    /// [`RunningChild`] (both run on the node's runtime and must not block).
    ///
    /// ```
    /// use std::time::Duration;
    /// use procvisor::supervisor::*;
    /// use tokio::sync::watch;
    ///
    /// /// A child that is a tokio task: it fails (exit code 1) 10 ms after each start.
    /// struct Flaky;
    /// struct Task(watch::Receiver<Option<Exit>>, tokio::task::AbortHandle);
    ///
    /// impl StartChild for Flaky {
    ///     fn start(&self, _: StartContext) -> BoxFuture<'static, Result<Box<dyn RunningChild>, String>> {
    ///         Box::pin(async {
    ///             let (done, exit) = watch::channel(None);
    ///             let task = tokio::spawn(async move {
    ///                 tokio::time::sleep(Duration::from_millis(10)).await;
    ///                 let _ = done.send(Some(Exit::Code(1)));
    ///             });
    ///             Ok(Box::new(Task(exit, task.abort_handle())) as Box<dyn RunningChild>)
    ///         })
    ///     }
    /// }
    ///
    /// impl RunningChild for Task {
    ///     fn pid(&self) -> Option<i32> { None }
    ///     fn wait_exit(&self) -> BoxFuture<'static, Exit> {
    ///         let mut exit = self.0.clone();
    ///         Box::pin(async move {
    ///             // An aborted task drops its sender without a value: report it as killed.
    ///             let _ = exit.wait_for(Option::is_some).await;
    ///             exit.borrow().clone().unwrap_or(Exit::Signal(9))
    ///         })
    ///     }
    ///     fn request_stop(&self) { self.1.abort() }
    ///     fn terminate(&self) { self.1.abort() }
    ///     fn kill(&self) { self.1.abort() }
    /// }
    ///
    /// impl Drop for Task {
    ///     fn drop(&mut self) { self.1.abort() }
    /// }
    ///
    /// let spec = SupervisorSpec::new(Strategy::OneForOne)
    ///     .name("tasks")
    ///     .intensity(Intensity::new(2, Duration::from_secs(60)))
    ///     .child(ChildSpec::custom("flaky", ChildType::Worker, Flaky));
    /// let (sup, events) = Supervisor::start_with_events(spec)?;
    /// // Two restarts are allowed; the third failure makes the supervisor give up.
    /// assert!(matches!(sup.wait_timeout(Duration::from_secs(10)), Some(Exit::Failed(_))));
    /// let tags: Vec<String> = events.map(|e| e.tag()).collect();
    /// assert_eq!(tags, [
    ///     "started tasks:flaky",
    ///     "exited tasks:flaky", "restarted tasks:flaky",
    ///     "exited tasks:flaky", "restarted tasks:flaky",
    ///     "exited tasks:flaky", "gave-up tasks", "supervisor-exited tasks",
    /// ]);
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    pub fn custom(
        id: impl Into<String>,
        child_type: ChildType,
        start: impl StartChild,
    ) -> ChildSpec {
        ChildSpec::with_start(id, child_type, Start::Custom(Arc::new(start)))
    }

    /// Sets when the child is restarted (default `Permanent`).
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Sets how the child is stopped.
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = Some(shutdown);
        self
    }

    /// Waits before each restart of this child, with a backoff (see [`RestartDelay`]): after it
    /// exited, and after each restart attempt that failed to start it. OTP restarts at once,
    /// and so does a spec without a delay; with one, a child whose dependency is down for a
    /// while does not exhaust a finite [`Intensity`] in a few milliseconds of immediate
    /// retries (each attempt still counts).
    ///
    /// ```
    /// use std::time::Duration;
    /// use procvisor::supervisor::{ChildSpec, RestartDelay};
    /// fn client() { /* connects to the database */ }
    /// let spec = ChildSpec::worker("db-client", client, ()).restart_delay(
    ///     RestartDelay::exponential(Duration::from_millis(100), Duration::from_secs(5)),
    /// );
    /// # let _ = spec;
    /// ```
    pub fn restart_delay(mut self, delay: RestartDelay) -> ChildSpec {
        self.delay = Some(delay);
        self
    }

    /// Marks the child significant (OTP's `significant`): when it ends on its own for good,
    /// its supervisor's [`AutoShutdown`] may end the supervisor (see
    /// [`SupervisorSpec::auto_shutdown`]). Only `Transient` and `Temporary` children may be
    /// significant, in a supervisor whose auto-shutdown is not `Never`
    /// ([`SupervisorError::BadSignificantChild`] otherwise).
    pub fn significant(mut self, significant: bool) -> ChildSpec {
        self.significant = significant;
        self
    }

    /// Overrides the child type (it only changes reports and the default shutdown).
    pub fn child_type(mut self, child_type: ChildType) -> ChildSpec {
        self.child_type = child_type;
        self
    }

    /// For `worker` and `template` specs: a start completes only once the child has called
    /// [`notify_ready`]; a child that exits before, or is not ready within `timeout` (it is
    /// then killed), failed to start.
    pub fn wait_ready(mut self, timeout: Duration) -> ChildSpec {
        if let Start::Process { ready, .. } = &mut self.start {
            *ready = Some(timeout);
        }
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl From<ChildSpec> for actors::ChildSpec {
    fn from(spec: ChildSpec) -> actors::ChildSpec {
        let id = spec.id.clone();
        let converted = match &spec.start {
            Start::Process { build, ready } => {
                let start = ProcessChild {
                    build: build.clone(),
                    ready: *ready,
                };
                actors::ChildSpec::new(id, spec.child_type, start)
            }
            Start::Remote(build) => {
                let start = remote::RemoteChild(build.clone());
                actors::ChildSpec::new(id, spec.child_type, start)
            }
            Start::Nested(nested) => {
                actors::ChildSpec::supervisor(id, nested.clone()).with_child_type(spec.child_type)
            }
            Start::Custom(start) => actors::ChildSpec::from_arc(id, spec.child_type, start.clone()),
        };
        spec.settings_on(converted)
    }
}

impl ChildSpec {
    /// The settings every kind of spec shares, on its converted form (the shutdown: when one
    /// was chosen, else the default of the child's type).
    fn settings_on(&self, converted: actors::ChildSpec) -> actors::ChildSpec {
        let mut converted = converted
            .restart(self.restart)
            .significant(self.significant);
        if let Some(shutdown) = self.shutdown {
            converted = converted.shutdown(shutdown);
        }
        if let Some(delay) = self.delay {
            converted = converted.restart_delay(delay);
        }
        if let Some(extra) = self.extra {
            converted = converted.extra_type(extra);
        }
        if let Some(portable) = &self.portable {
            let ready = match &self.start {
                Start::Process { ready, .. } => *ready,
                _ => None,
            };
            converted = converted.portable(portable.encoder(ready));
        }
        converted
    }
}

/// A running child's spec, as [`Supervisor::child_spec`] reads it: it starts the child the
/// same way (its start is kept as it is, a [`StartChild`]), with the same settings, and can
/// travel to a supervisor in another process if the original could.
impl From<actors::ChildSpec> for ChildSpec {
    fn from(spec: actors::ChildSpec) -> ChildSpec {
        ChildSpec {
            id: spec.id().to_string(),
            start: Start::Custom(spec.starter().clone()),
            child_type: spec.child_type(),
            restart: spec.restart_type(),
            shutdown: Some(spec.shutdown_kind()),
            extra: spec.extra(),
            delay: spec.delay_before_restart(),
            significant: spec.is_significant(),
            portable: spec.portable_encoder().cloned().map(Portable::Encoded),
        }
    }
}

/// A running supervisor. Clones are handles to the same supervisor; when the last one is
/// dropped, the supervisor is stopped (its children in reverse order).
///
/// Requests to it (`start_child`, `which_children`, …) answer through a [`Request`], which is
/// waited for with `.wait()` (blocking, any thread, inside or outside a tokio runtime) or
/// `.await`.
#[derive(Clone)]
pub struct Supervisor {
    owner: Arc<Owner>,
}

struct Owner {
    sup: SupervisorRef,
}

impl crate::runtime::StopAtExit for Owner {
    fn stop_at_exit(&self) {
        if self.sup.is_alive() {
            self.sup.stop();
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if self.sup.is_alive() {
            self.sup.stop();
        }
    }
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.owner.sup, f)
    }
}

impl Supervisor {
    fn wrap(sup: SupervisorRef) -> Supervisor {
        let owner = Arc::new(Owner { sup });
        let weak: std::sync::Weak<dyn crate::runtime::StopAtExit> = Arc::downgrade(&owner) as _;
        crate::runtime::stop_at_exit(weak);
        Supervisor { owner }
    }

    /// Validates `spec`, starts the supervisor and its children in order, and returns once all
    /// have started. If one cannot start, those already started are stopped (reverse order)
    /// and the error names it ([`SupervisorError::StartFailed`]).
    pub fn start(spec: SupervisorSpec) -> Result<Supervisor, SupervisorError> {
        Ok(Supervisor::wrap(SupervisorRef::start(spec)?))
    }

    /// [`start`](Supervisor::start), with a subscription to the events made before the first
    /// child starts (so it sees every start).
    pub fn start_with_events(
        spec: SupervisorSpec,
    ) -> Result<(Supervisor, Events), SupervisorError> {
        let bus = EventBus::new(None);
        let events = bus.subscribe();
        Ok((
            Supervisor::wrap(SupervisorRef::start_with_bus(spec, bus)?),
            events,
        ))
    }

    /// [`start`](Supervisor::start) for async callers.
    pub async fn start_async(spec: SupervisorSpec) -> Result<Supervisor, SupervisorError> {
        Ok(Supervisor::wrap(SupervisorRef::start_async(spec).await?))
    }

    /// [`start_with_events`](Supervisor::start_with_events) for async callers.
    pub async fn start_with_events_async(
        spec: SupervisorSpec,
    ) -> Result<(Supervisor, Events), SupervisorError> {
        let bus = EventBus::new(None);
        let events = bus.subscribe();
        let sup = SupervisorRef::start_with_bus_async(spec, bus).await?;
        Ok((Supervisor::wrap(sup), events))
    }

    /// The underlying handle (it does not stop the supervisor when dropped).
    pub fn handle(&self) -> &SupervisorRef {
        &self.owner.sup
    }

    fn sup(&self) -> &SupervisorRef {
        &self.owner.sup
    }

    /// The supervisor's name (the root of the paths in its events).
    pub fn path(&self) -> &str {
        self.sup().path()
    }

    /// Its strategy.
    pub fn strategy(&self) -> Strategy {
        self.sup().strategy()
    }

    /// A new subscription to its events and its subtree's, from now on.
    pub fn events(&self) -> Events {
        self.sup().events()
    }

    /// Adds a child at the end of the start order and starts it; answers its pid.
    ///
    /// Every request answers through a [`Request`]: `.wait()` blocks, `.await` waits
    /// asynchronously.
    ///
    /// ```no_run
    /// # use procvisor::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
    /// # fn worker() {}
    /// # async fn demo() -> procvisor::Result<()> {
    /// let sup = Supervisor::start(SupervisorSpec::new(Strategy::OneForOne))?;
    /// let pid = sup.start_child(ChildSpec::worker("w", worker, ())).wait()?; // blocking
    /// let children = sup.which_children().await?; // async
    /// # let _ = (pid, children);
    /// # Ok(())
    /// # }
    /// ```
    pub fn start_child(&self, spec: ChildSpec) -> Request<Option<i32>> {
        self.sup().start_child(spec)
    }

    /// `SimpleOneForOne`: starts a child from the template with these extra arguments (the
    /// template's target arguments, e.g. a tuple); answers its id (`template-N`) and pid.
    pub fn start_child_with<E: Send + Sync + 'static>(
        &self,
        extra: E,
    ) -> Request<(String, Option<i32>)> {
        self.sup().start_child_with(extra)
    }

    /// Stops child `id` (as its shutdown says); its spec stays, stopped (temporary and dynamic
    /// children are forgotten). Answers once it has exited.
    ///
    /// Idempotent for dynamic children: terminating one that has already exited (or been
    /// terminated) succeeds, as in OTP, so a cleanup never races with a child ending on its
    /// own. An id never given out is [`SupervisorError::ChildNotFound`].
    pub fn terminate_child(&self, id: &str) -> Request<()> {
        self.sup().terminate_child(id)
    }

    /// Starts again the stopped child `id`; answers its pid.
    pub fn restart_child(&self, id: &str) -> Request<Option<i32>> {
        self.sup().restart_child(id)
    }

    /// Forgets the stopped child `id`.
    pub fn delete_child(&self, id: &str) -> Request<()> {
        self.sup().delete_child(id)
    }

    /// Kills child `id` (SIGKILL) as if it had crashed: for tests of supervision trees.
    pub fn kill_child(&self, id: &str) -> Request<()> {
        self.sup().kill_child(id)
    }

    /// The spec of child `id` (OTP's `get_childspec`; for a dynamic child, the template), which
    /// can be given to [`start_child`](Supervisor::start_child) again.
    #[doc(alias = "get_childspec")]
    pub fn child_spec(&self, id: &str) -> Request<ChildSpec> {
        self.sup().child_spec(id).map(ChildSpec::from)
    }

    /// The children in start order: id, pid, type, status, restarts.
    pub fn which_children(&self) -> Request<Vec<ChildInfo>> {
        self.sup().which_children()
    }

    /// The pid of running child `id` (`None` if it is not running or not a process).
    pub fn child_pid(&self, id: &str) -> Result<Option<i32>, SupervisorError> {
        let children = self.which_children().wait()?;
        children
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.pid)
            .ok_or_else(|| SupervisorError::ChildNotFound {
                supervisor: self.path().into(),
                id: id.into(),
            })
    }

    /// Specs, running children, supervisors, workers (see [`ChildCounts`]: a
    /// `SimpleOneForOne` supervisor has 1 spec, its template, as in OTP).
    pub fn count_children(&self) -> Request<ChildCounts> {
        self.sup().count_children()
    }

    /// A handle on the nested supervisor at `path` below this one — a child id (`"db"`), or
    /// ids joined by `/` (`"db/replicas"`), each a supervisor child of the one before —
    /// whether it runs in this process ([`ChildSpec::supervisor`]) or in its own
    /// ([`ChildSpec::supervisor_process`]; its requests then travel over the supervision
    /// links, through every process on the way). OTP addresses any supervisor of a tree by its
    /// pid; this is that handle.
    ///
    /// The handle has every request of this one (`which_children`, `count_children`,
    /// `start_child`, `terminate_child`, …) and its own event stream (its subtree's events).
    /// It names the incarnation running now: once that one has exited (its parent restarts
    /// it, say), its requests answer [`SupervisorError::NotRunning`] — ask again for the new
    /// one. Dropping it does not stop anything. A spec given to `start_child` on a supervisor
    /// in another process travels there, so it must be made by [`ChildSpec::worker`],
    /// [`ChildSpec::template`] or [`ChildSpec::supervisor_process`] (or read back with
    /// `child_spec`): [`SupervisorError::NotPortable`] otherwise; `start_child_with` is not
    /// available there ([`SupervisorError::RemoteUnsupported`]: its extra arguments are any
    /// Rust value).
    ///
    /// Errors: no such child ([`SupervisorError::ChildNotFound`]), a child that is not a
    /// supervisor ([`SupervisorError::NotASupervisor`]) or is not running
    /// ([`SupervisorError::ChildNotRunning`]).
    ///
    /// ```no_run
    /// use procvisor::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
    /// fn worker() { procvisor::wait_for_stop(None); }
    /// fn shards(n: u32) -> SupervisorSpec {
    ///     (0..n).fold(SupervisorSpec::new(Strategy::OneForOne), |spec, i| {
    ///         spec.child(ChildSpec::worker(format!("shard-{i}"), worker, ()))
    ///     })
    /// }
    /// # fn main() -> procvisor::Result<()> {
    /// let spec = SupervisorSpec::new(Strategy::OneForOne)
    ///     .name("top")
    ///     .child(ChildSpec::supervisor_process("shards", shards, (2,)));
    /// let sup = Supervisor::start(spec)?;
    /// let shards = sup.subtree("shards").wait()?; // in another process
    /// assert_eq!(shards.count_children().wait()?.active, 2);
    /// shards.start_child(ChildSpec::worker("shard-2", worker, ())).wait()?;
    /// shards.terminate_child("shard-0").wait()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn subtree(&self, path: &str) -> Request<SupervisorRef> {
        self.sup().subtree(path)
    }

    /// Stops the children in reverse start order, then the supervisor. Returns once all have
    /// exited. Stopping a supervisor that already exited does nothing.
    pub fn stop(&self) {
        self.sup().stop();
    }

    /// [`stop`](Supervisor::stop) for async callers.
    pub async fn stop_async(&self) {
        self.sup().stop_async().await;
    }

    /// Whether it still runs (it exits when stopped, or when it gives up).
    pub fn is_alive(&self) -> bool {
        self.sup().is_alive()
    }

    /// How it ended, if it has: `Code(0)` when stopped, `Failed(reason)` when it gave up.
    pub fn exit(&self) -> Option<Exit> {
        self.sup().exit()
    }

    /// Waits until it exits.
    pub fn wait(&self) -> Exit {
        self.sup().wait()
    }

    /// Waits until it exits or `timeout` passes (`None`).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Exit> {
        self.sup().wait_timeout(timeout)
    }

    /// Waits asynchronously until it exits.
    pub async fn wait_async(&self) -> Exit {
        self.sup().wait_async().await
    }
}
