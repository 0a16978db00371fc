//! What a supervisor reports about its children: [`ChildInfo`] (`which_children`),
//! [`ChildStatus`], [`ChildCounts`] (`count_children`). Plain data, the same in every process.

use serde::{Deserialize, Serialize};

use super::spec::ChildType;

/// What `which_children` says about one child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// Its id (`template-N` for the dynamic children of a `SimpleOneForOne` supervisor).
    pub id: String,
    /// Its pid while it runs (if it is a process).
    pub pid: Option<i32>,
    /// Worker or supervisor.
    pub child_type: ChildType,
    /// Running, being restarted, or stopped.
    pub status: ChildStatus,
    /// How many times the supervisor restarted it.
    pub restarts: u32,
}

/// Whether a child runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChildStatus {
    /// It runs.
    Running,
    /// Its restart failed and will be tried again.
    Restarting,
    /// It is not running (terminated, or exited and not restarted); its spec is kept.
    Stopped,
}

/// What `count_children` says, as OTP's `count_children`.
///
/// For a `SimpleOneForOne` supervisor, `specs` is 1 (its one spec, the template of its
/// children, as in OTP) and `supervisors` / `workers` count its dynamic children.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChildCounts {
    /// Child specs, running or not (`SimpleOneForOne`: 1, the template).
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Children that are supervisors, running or not.
    pub supervisors: usize,
    /// Children that are workers, running or not.
    pub workers: usize,
}
