//! [`SupervisorError`]: invalid specs and refused runtime requests, one variant per cause.

use super::strategy::{RestartDelay, Strategy};

/// Why a supervisor spec is invalid or a supervisor refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// A child spec with an empty id.
    #[error("a child spec needs a non-empty id")]
    EmptyChildId,

    /// A restart delay whose factor is 0 or whose `max` is shorter than its `first`.
    #[error(
        "invalid restart delay for child {id:?}: {delay:?} (the factor must be at least 1 and \
         max at least first)"
    )]
    InvalidRestartDelay {
        /// The child's id.
        id: String,
        /// The delay given.
        delay: RestartDelay,
    },

    /// A significant child that cannot be (OTP's `bad_combination`).
    #[error("child {id:?} of supervisor {supervisor} cannot be significant: {problem}")]
    BadSignificantChild {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// Why.
        problem: SignificantProblem,
    },

    /// Two child specs of one supervisor share an id.
    #[error("duplicate child id {id:?} in supervisor {supervisor}")]
    DuplicateChildId {
        /// The supervisor's path.
        supervisor: String,
        /// The id used twice.
        id: String,
    },

    /// A restart intensity whose period is zero (OTP requires a positive period).
    #[error(
        "invalid restart intensity for supervisor {supervisor}: the period must be longer than zero"
    )]
    ZeroPeriod {
        /// The supervisor's path.
        supervisor: String,
    },

    /// A `SimpleOneForOne` supervisor needs exactly one child spec: the template of its
    /// dynamic children.
    #[error(
        "a simple_one_for_one supervisor needs exactly one child spec (the template of its \
         children), but {supervisor} has {count}"
    )]
    SimpleOneForOneSpecs {
        /// The supervisor's path.
        supervisor: String,
        /// How many specs it was given.
        count: usize,
    },

    /// A child could not be started (when the supervisor started, or by `start_child`,
    /// `restart_child`). Children started before it have been stopped.
    #[error("child {id:?} of supervisor {supervisor} failed to start: {reason}")]
    StartFailed {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// Why.
        reason: String,
    },

    /// No child with this id.
    #[error("supervisor {supervisor} has no child {id:?}")]
    ChildNotFound {
        /// The supervisor's path.
        supervisor: String,
        /// The id asked for.
        id: String,
    },

    /// `start_child` with the id of a running child (OTP's `already_started`).
    #[error("child {id:?} of supervisor {supervisor} is already started (pid {pid:?})")]
    AlreadyStarted {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// Its pid, if it is a process.
        pid: Option<i32>,
    },

    /// `start_child` with the id of a child that exists but is not running (OTP's
    /// `already_present`): restart or delete it instead.
    #[error(
        "child {id:?} is already present in supervisor {supervisor} (not running: restart or \
         delete it)"
    )]
    AlreadyPresent {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
    },

    /// `restart_child` / `delete_child` on a running child (terminate it first).
    #[error("child {id:?} of supervisor {supervisor} is running; terminate it first")]
    ChildRunning {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
    },

    /// `restart_child` / `delete_child` on a child whose restart is being retried.
    #[error("child {id:?} of supervisor {supervisor} is being restarted")]
    ChildRestarting {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
    },

    /// An operation that needs a running child (e.g. `kill_child`) on one that is not.
    #[error("child {id:?} of supervisor {supervisor} is not running")]
    ChildNotRunning {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
    },

    /// An operation a `SimpleOneForOne` supervisor does not support (`restart_child`,
    /// `delete_child`, `start_child` with a spec).
    #[error("{operation} is not supported by the simple_one_for_one supervisor {supervisor}")]
    SimpleOneForOne {
        /// The supervisor's path.
        supervisor: String,
        /// What was attempted.
        operation: &'static str,
    },

    /// `start_child_with` (extra arguments) on a supervisor that is not `SimpleOneForOne`.
    #[error(
        "start_child_with needs a simple_one_for_one supervisor, but {supervisor} is {strategy:?}"
    )]
    NotSimpleOneForOne {
        /// The supervisor's path.
        supervisor: String,
        /// Its strategy.
        strategy: Strategy,
    },

    /// `start_child_with` with extra arguments of another type than the template takes.
    #[error(
        "the child template of supervisor {supervisor} takes extra arguments of type {expected}, \
         not {got}"
    )]
    ExtraArgsType {
        /// The supervisor's path.
        supervisor: String,
        /// The type the template expects.
        expected: &'static str,
        /// The type given.
        got: &'static str,
    },

    /// The supervisor has exited (stopped, or gave up): it serves no more requests.
    #[error("supervisor {supervisor} is not running")]
    NotRunning {
        /// The supervisor's path.
        supervisor: String,
    },
}

/// Why a child cannot be significant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SignificantProblem {
    /// It is `Permanent`: it is always restarted, so it never ends for good.
    #[error("a permanent child is always restarted (make it transient or temporary)")]
    Permanent,
    /// Its supervisor's auto-shutdown is `Never`, so its end would mean nothing.
    #[error("its supervisor's auto_shutdown is Never")]
    NoAutoShutdown,
}
