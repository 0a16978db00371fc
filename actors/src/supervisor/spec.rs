//! Child specs and supervisor specs: plain data, validated in one place before anything starts
//! (OTP's `check_childspecs`), with one precise [`SupervisorError`] per mistake.

use std::any::TypeId;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::child::StartChild;
use super::error::{SignificantProblem, SupervisorError};
use super::strategy::{Restart, RestartDelay, Strategy};

/// How a supervisor ends a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Shutdown {
    /// Kill it at once (SIGKILL).
    Brutal,
    /// Ask it to stop (its `stop_requested()` turns true) and wait this long; then terminate it
    /// (SIGTERM) and wait as long again; then kill it.
    Timeout(Duration),
    /// Ask it to stop and wait as long as it takes: for nested supervisors, which stop their
    /// own children first.
    Infinity,
}

/// What a child is, for `which_children` / `count_children` and the default shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChildType {
    /// A worker (default shutdown: a 5 s timeout).
    Worker,
    /// A supervisor (default shutdown: infinity).
    Supervisor,
}

/// Restart intensity: more than `max_restarts` restarts within `period` and the supervisor
/// gives up (stops all its children and exits abnormally, which its own supervisor sees as a
/// failed child). OTP's default is 1 restart in 5 seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Intensity {
    /// Restarts allowed within `period` (`u32::MAX`: unlimited).
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Intensity {
    /// `max_restarts` within `period`.
    pub const fn new(max_restarts: u32, period: Duration) -> Intensity {
        Intensity {
            max_restarts,
            period,
        }
    }

    /// No limit: the supervisor never gives up.
    pub const fn unlimited() -> Intensity {
        Intensity::new(u32::MAX, Duration::from_secs(1))
    }

    /// Whether there is no limit.
    pub const fn is_unlimited(&self) -> bool {
        self.max_restarts == u32::MAX
    }
}

impl Default for Intensity {
    /// 1 restart in 5 seconds, as OTP.
    fn default() -> Intensity {
        Intensity::new(1, Duration::from_secs(5))
    }
}

/// The type a `SimpleOneForOne` template takes as extra arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtraType {
    /// Its `TypeId`.
    pub id: TypeId,
    /// Its name, for error messages.
    pub name: &'static str,
}

impl ExtraType {
    /// The descriptor of `E`.
    pub fn of<E: 'static>() -> ExtraType {
        ExtraType {
            id: TypeId::of::<E>(),
            name: std::any::type_name::<E>(),
        }
    }
}

/// A child's start in a form that another process running this same executable can rebuild
/// it from: bytes made and read by the process layer (`procvisor` encodes a zero-sized start
/// function's offset and its serde arguments), opaque here. A spec that has one can be sent
/// to a supervisor in another process (`start_child` on a handle on it, `child_spec` of one of
/// its children).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortableStart(pub Vec<u8>);

/// Makes a spec's [`PortableStart`] when it must travel (or says why it cannot).
pub type EncodeStart = Arc<dyn Fn() -> Result<PortableStart, String> + Send + Sync>;

/// One child of a supervisor: how to start it, when to restart it, how to stop it.
///
/// `procvisor::ChildSpec` builds these for processes (`worker`, `process`, `template`,
/// `supervisor_process`); [`ChildSpec::supervisor`] nests a supervisor in this process;
/// [`ChildSpec::new`] takes any [`StartChild`].
#[derive(Clone)]
pub struct ChildSpec {
    id: String,
    start: Arc<dyn StartChild>,
    restart: Restart,
    shutdown: Shutdown,
    child_type: ChildType,
    extra: Option<ExtraType>,
    delay: Option<RestartDelay>,
    significant: bool,
    portable: Option<EncodeStart>,
}

/// The default shutdown of a worker (OTP's 5000 ms).
pub const DEFAULT_WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

impl ChildSpec {
    /// A child started by `start`; `Permanent`, with the default shutdown of its type
    /// (workers: a 5 s timeout; supervisors: infinity).
    pub fn new(id: impl Into<String>, child_type: ChildType, start: impl StartChild) -> ChildSpec {
        ChildSpec::from_arc(id, child_type, Arc::new(start))
    }

    /// [`ChildSpec::new`] with a shared starter.
    pub fn from_arc(
        id: impl Into<String>,
        child_type: ChildType,
        start: Arc<dyn StartChild>,
    ) -> ChildSpec {
        ChildSpec {
            id: id.into(),
            start,
            restart: Restart::Permanent,
            shutdown: match child_type {
                ChildType::Worker => Shutdown::Timeout(DEFAULT_WORKER_SHUTDOWN),
                ChildType::Supervisor => Shutdown::Infinity,
            },
            child_type,
            extra: None,
            delay: None,
            significant: false,
            portable: None,
        }
    }

    /// Sets when the child is restarted.
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Sets how the child is stopped.
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// Waits `delay` before each restart of this child (see [`RestartDelay`]; by default, as
    /// OTP, a child is restarted at once).
    pub fn restart_delay(mut self, delay: RestartDelay) -> ChildSpec {
        self.delay = Some(delay);
        self
    }

    /// Marks the child significant (OTP's `significant`): when it ends on its own and is not
    /// restarted, its supervisor's [`AutoShutdown`] may end the supervisor. Only `Transient`
    /// and `Temporary` children can be significant, and only in a supervisor whose
    /// auto-shutdown is not `Never` (checked when the supervisor starts or the child is added).
    pub fn significant(mut self, significant: bool) -> ChildSpec {
        self.significant = significant;
        self
    }

    /// Overrides the child type (reports only; the shutdown already chosen stays).
    pub fn with_child_type(mut self, child_type: ChildType) -> ChildSpec {
        self.child_type = child_type;
        self
    }

    /// Declares the type of extra arguments this spec takes as a `SimpleOneForOne` template
    /// (checked by `start_child_with` before anything starts).
    pub fn extra_type(mut self, extra: ExtraType) -> ChildSpec {
        self.extra = Some(extra);
        self
    }

    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The restart type.
    pub fn restart_type(&self) -> Restart {
        self.restart
    }

    /// The shutdown.
    pub fn shutdown_kind(&self) -> Shutdown {
        self.shutdown
    }

    /// Worker or supervisor.
    pub fn child_type(&self) -> ChildType {
        self.child_type
    }

    /// Whether it is significant (see [`significant`](ChildSpec::significant)).
    pub fn is_significant(&self) -> bool {
        self.significant
    }

    /// The delay before its restarts, if it has one.
    pub fn delay_before_restart(&self) -> Option<RestartDelay> {
        self.delay
    }

    /// The declared extra-argument type, if any.
    pub fn extra(&self) -> Option<ExtraType> {
        self.extra
    }

    /// The starter.
    pub fn starter(&self) -> &Arc<dyn StartChild> {
        &self.start
    }

    /// Gives the spec a start that can travel to another process: `encode` makes it when
    /// needed (see [`PortableStart`]).
    pub fn portable(mut self, encode: EncodeStart) -> ChildSpec {
        self.portable = Some(encode);
        self
    }

    /// What makes its [`PortableStart`], if it has one (see [`portable`](ChildSpec::portable)).
    pub fn portable_encoder(&self) -> Option<&EncodeStart> {
        self.portable.as_ref()
    }

    /// Its start in a form another process can rebuild, or why it has none.
    pub fn portable_start(&self) -> Result<PortableStart, String> {
        match &self.portable {
            Some(encode) => encode(),
            None => Err(
                "its start cannot travel to another process: only the starts of \
                         ChildSpec::worker, ChildSpec::template and \
                         ChildSpec::supervisor_process specs can (not a factory's, a custom \
                         StartChild's or a nested SupervisorSpec's)"
                    .into(),
            ),
        }
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("child_type", &self.child_type)
            .field("restart_delay", &self.delay)
            .field("significant", &self.significant)
            .field("portable", &self.portable.is_some())
            .finish_non_exhaustive()
    }
}

/// When a supervisor ends itself because its significant children ended (OTP 24's
/// `auto_shutdown`). Only exits a significant child makes on its own count — not one its
/// supervisor caused (`terminate_child`, a restart of its siblings, a shutdown) — and only when
/// the child is not restarted: a `Transient` child's normal exit or shutdown, a `Temporary`
/// child's any exit. The supervisor then stops its other children (reverse start order),
/// publishes [`Event::AutoShutdown`](super::Event::AutoShutdown) and exits normally
/// (`Code(0)`, OTP's `shutdown`), which its own supervisor does not restart unless it is
/// `Permanent`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AutoShutdown {
    /// Never (the default); significant children are then refused.
    #[default]
    Never,
    /// When any significant child has ended.
    AnySignificant,
    /// When every significant child has ended (none is running or being restarted).
    AllSignificant,
}

/// A supervisor: its name, strategy, restart intensity and child specs (in start order).
///
/// ```
/// use std::time::Duration;
/// use procvisor_actors::supervisor::{Intensity, Strategy, SupervisorError, SupervisorSpec};
///
/// let spec = SupervisorSpec::new(Strategy::OneForAll)
///     .name("db")
///     .intensity(Intensity::new(3, Duration::from_secs(10)));
/// assert_eq!(spec.validate(), Ok(()));
///
/// let bad = SupervisorSpec::new(Strategy::OneForOne).intensity(Intensity::new(3, Duration::ZERO));
/// assert_eq!(bad.validate(), Err(SupervisorError::ZeroPeriod { supervisor: "supervisor".into() }));
/// ```
#[derive(Clone, Debug)]
pub struct SupervisorSpec {
    name: String,
    strategy: Strategy,
    intensity: Intensity,
    auto_shutdown: AutoShutdown,
    children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// An empty supervisor named `supervisor` with the default intensity (1 in 5 s).
    pub fn new(strategy: Strategy) -> SupervisorSpec {
        SupervisorSpec {
            name: "supervisor".into(),
            strategy,
            intensity: Intensity::default(),
            auto_shutdown: AutoShutdown::Never,
            children: Vec::new(),
        }
    }

    /// Names the supervisor (the first part of the paths in its events). A nested supervisor
    /// is named `parent/child-id` instead.
    pub fn name(mut self, name: impl Into<String>) -> SupervisorSpec {
        self.name = name.into();
        self
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, intensity: Intensity) -> SupervisorSpec {
        self.intensity = intensity;
        self
    }

    /// Sets when the supervisor ends itself because its significant children ended (default
    /// [`AutoShutdown::Never`]).
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> SupervisorSpec {
        self.auto_shutdown = auto_shutdown;
        self
    }

    /// Appends a child (children start in the order they are added).
    pub fn child(mut self, child: impl Into<ChildSpec>) -> SupervisorSpec {
        self.children.push(child.into());
        self
    }

    /// Appends several children.
    pub fn children<C: Into<ChildSpec>>(
        mut self,
        children: impl IntoIterator<Item = C>,
    ) -> SupervisorSpec {
        self.children.extend(children.into_iter().map(Into::into));
        self
    }

    /// The name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// The strategy.
    pub fn get_strategy(&self) -> Strategy {
        self.strategy
    }

    /// The restart intensity.
    pub fn get_intensity(&self) -> Intensity {
        self.intensity
    }

    /// Its auto-shutdown.
    pub fn get_auto_shutdown(&self) -> AutoShutdown {
        self.auto_shutdown
    }

    /// The child specs, in start order.
    pub fn get_children(&self) -> &[ChildSpec] {
        &self.children
    }

    /// Checks the spec: a positive period, non-empty unique ids, exactly one spec for
    /// `SimpleOneForOne`, valid restart delays, significant children only where they may be.
    pub fn validate(&self) -> Result<(), SupervisorError> {
        self.validate_as(&self.name)
    }

    pub(crate) fn validate_as(&self, path: &str) -> Result<(), SupervisorError> {
        if self.intensity.period.is_zero() && !self.intensity.is_unlimited() {
            return Err(SupervisorError::ZeroPeriod {
                supervisor: path.into(),
            });
        }
        if self.strategy == Strategy::SimpleOneForOne && self.children.len() != 1 {
            return Err(SupervisorError::SimpleOneForOneSpecs {
                supervisor: path.into(),
                count: self.children.len(),
            });
        }
        let mut seen = HashSet::new();
        for child in &self.children {
            validate_child(child, path, self.auto_shutdown)?;
            if !seen.insert(child.id()) {
                return Err(SupervisorError::DuplicateChildId {
                    supervisor: path.into(),
                    id: child.id().into(),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn into_parts(self) -> (Strategy, Intensity, AutoShutdown, Vec<ChildSpec>) {
        (
            self.strategy,
            self.intensity,
            self.auto_shutdown,
            self.children,
        )
    }
}

/// Checks one child spec, for the supervisor at `path` with this auto-shutdown.
pub(crate) fn validate_child(
    child: &ChildSpec,
    path: &str,
    auto_shutdown: AutoShutdown,
) -> Result<(), SupervisorError> {
    if child.id().is_empty() {
        return Err(SupervisorError::EmptyChildId);
    }
    if let Some(delay) = child.delay {
        if delay.factor == 0 || delay.max < delay.first {
            return Err(SupervisorError::InvalidRestartDelay {
                id: child.id().into(),
                delay,
            });
        }
    }
    if child.significant {
        let problem = if child.restart == Restart::Permanent {
            Some(SignificantProblem::Permanent)
        } else if auto_shutdown == AutoShutdown::Never {
            Some(SignificantProblem::NoAutoShutdown)
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(SupervisorError::BadSignificantChild {
                supervisor: path.into(),
                id: child.id().into(),
                problem,
            });
        }
    }
    Ok(())
}
