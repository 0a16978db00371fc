//! [`SupervisorError`]: invalid specs and refused runtime requests, one variant per cause.
//! Errors travel between processes too (the answers of a supervisor in another process), so
//! they are serde data; their `&'static str` fields are interned when decoded (spelled
//! `std::primitive::str` so that serde does not try to borrow them from the input).

use std::collections::HashSet;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize};

use super::strategy::{RestartDelay, Strategy};
use crate::sync_util::lock;

/// Why a supervisor spec is invalid or a supervisor refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
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
        #[serde(deserialize_with = "interned")]
        operation: &'static std::primitive::str,
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
        #[serde(deserialize_with = "interned")]
        expected: &'static std::primitive::str,
        /// The type given.
        #[serde(deserialize_with = "interned")]
        got: &'static std::primitive::str,
    },

    /// `subtree` named a child that is not a supervisor.
    #[error("child {id:?} of supervisor {supervisor} is not a supervisor")]
    NotASupervisor {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
    },

    /// A child spec that cannot be sent to a supervisor in another process (`start_child` on
    /// a handle on one, or `child_spec` of one of its children).
    #[error(
        "child spec {id:?} cannot travel to or from supervisor {supervisor}, which runs in \
         another process: {reason}"
    )]
    NotPortable {
        /// The remote supervisor's path.
        supervisor: String,
        /// The spec's id.
        id: String,
        /// Why.
        reason: String,
    },

    /// An operation a handle on a supervisor in another process does not offer.
    #[error(
        "{operation} is not available for supervisor {supervisor}, which runs in another process"
    )]
    RemoteUnsupported {
        /// The remote supervisor's path.
        supervisor: String,
        /// What was attempted.
        #[serde(deserialize_with = "interned")]
        operation: &'static std::primitive::str,
    },

    /// The supervision link to a supervisor in another process carried something that does
    /// not decode (or could not carry a request): the request has no answer.
    #[error("the link to supervisor {supervisor} failed: {reason}")]
    Link {
        /// The remote supervisor's path.
        supervisor: String,
        /// What went wrong.
        reason: String,
    },

    /// The supervisor has exited (stopped, or gave up): it serves no more requests.
    #[error("supervisor {supervisor} is not running")]
    NotRunning {
        /// The supervisor's path.
        supervisor: String,
    },
}

/// Why a child cannot be significant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SignificantProblem {
    /// It is `Permanent`: it is always restarted, so it never ends for good.
    #[error("a permanent child is always restarted (make it transient or temporary)")]
    Permanent,
    /// Its supervisor's auto-shutdown is `Never`, so its end would mean nothing.
    #[error("its supervisor's auto_shutdown is Never")]
    NoAutoShutdown,
}

/// The most distinct strings [`interned`] keeps: operation and type names, a bounded set in one
/// executable; a peer sending more gets a placeholder rather than growing this process.
const MAX_INTERNED: usize = 4096;

/// Decodes a `&'static str` field: the string, interned (leaked once per distinct value).
fn interned<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    static STRINGS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let text = String::deserialize(d)?;
    let mut strings = lock(&STRINGS);
    let strings = strings.get_or_insert_with(HashSet::new);
    if let Some(known) = strings.get(text.as_str()) {
        return Ok(known);
    }
    if strings.len() >= MAX_INTERNED {
        return Ok("<unknown>");
    }
    let leaked: &'static str = Box::leak(text.into_boxed_str());
    strings.insert(leaked);
    Ok(leaked)
}
