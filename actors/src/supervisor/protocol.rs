//! The requests a supervisor in another process serves, as data: [`RemoteRequest`] (which
//! supervisor below that process's root, which incarnation, which operation) and its answer
//! ([`RemoteAnswer`], or a [`SupervisorError`]). They travel bincode-encoded inside the frames
//! of a supervision link (`procvisor`'s `supervisor/link.rs` documents the frames); a child
//! spec travels as a [`WireSpec`], whose start is a [`PortableStart`].
//!
//! Each is one enum or struct decoded in one place (the `decode_*` functions), so a payload
//! that does not decode gives one precise [`SupervisorError::Link`], never a panic.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::error::SupervisorError;
use super::info::{ChildCounts, ChildInfo};
use super::spec::{ChildSpec, ChildType, PortableStart, Shutdown};
use super::strategy::{Restart, RestartDelay, Strategy};
use crate::wire;

/// A request for the supervisor `below` the root of the process it is sent to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RemoteRequest {
    /// Child ids from the root down to the target (empty: the root).
    pub below: Vec<String>,
    /// The incarnation the sender's handle names: another one at that path answers
    /// `NotRunning`.
    pub instance: u64,
    /// What to do.
    pub op: RemoteOp,
}

/// The operations of a supervisor handle, as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RemoteOp {
    /// `start_child`.
    StartChild(WireSpec),
    /// `terminate_child`.
    TerminateChild(String),
    /// `restart_child`.
    RestartChild(String),
    /// `delete_child`.
    DeleteChild(String),
    /// `kill_child`.
    KillChild(String),
    /// `child_spec`.
    ChildSpec(String),
    /// `which_children`.
    WhichChildren,
    /// `count_children`.
    CountChildren,
    /// `subtree` (one level: a child id).
    Subtree(String),
    /// `stop` (answered once the children are stopped; the exit follows).
    Stop,
    /// `request_stop` (answered at once).
    RequestStop,
    /// `kill` (answered at once).
    Kill,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RemoteAnswer {
    /// Done, nothing to tell.
    Done,
    /// A started child's pid.
    Pid(Option<i32>),
    /// A child spec.
    Spec(WireSpec),
    /// The children.
    Children(Vec<ChildInfo>),
    /// The counts.
    Counts(ChildCounts),
    /// A nested supervisor: what a handle on it needs.
    Subtree {
        /// Its strategy.
        strategy: Strategy,
        /// Its incarnation.
        instance: u64,
    },
}

/// A child spec as data, to be rebuilt in another process running this executable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSpec {
    /// The id.
    pub id: String,
    /// Worker or supervisor.
    pub child_type: ChildType,
    /// When it is restarted.
    pub restart: Restart,
    /// How it is stopped.
    pub shutdown: Shutdown,
    /// Its restart delay.
    pub delay: Option<RestartDelay>,
    /// Whether it is significant.
    pub significant: bool,
    /// How it starts.
    pub start: PortableStart,
}

impl WireSpec {
    /// `spec` as data; an error says why it cannot travel (see [`ChildSpec::portable_start`]).
    pub fn of(spec: &ChildSpec, supervisor: &str) -> Result<WireSpec, SupervisorError> {
        let start = spec
            .portable_start()
            .map_err(|reason| SupervisorError::NotPortable {
                supervisor: supervisor.into(),
                id: spec.id().into(),
                reason,
            })?;
        Ok(WireSpec {
            id: spec.id().into(),
            child_type: spec.child_type(),
            restart: spec.restart_type(),
            shutdown: spec.shutdown_kind(),
            delay: spec.delay_before_restart(),
            significant: spec.is_significant(),
            start,
        })
    }
}

/// Rebuilds a child spec from its [`WireSpec`] (the process layer knows how to read a
/// [`PortableStart`]).
pub type DecodeSpec = fn(&WireSpec) -> Result<ChildSpec, String>;

static DECODE_SPEC: OnceLock<DecodeSpec> = OnceLock::new();

/// Installs how this process rebuilds child specs that come from another process (once; later
/// calls keep the first). `procvisor` does it before it opens a supervision link.
pub fn set_spec_decoder(decode: DecodeSpec) {
    let _ = DECODE_SPEC.set(decode);
}

/// `wire` rebuilt as a spec of this process.
pub(crate) fn decode_spec(wire: &WireSpec, supervisor: &str) -> Result<ChildSpec, SupervisorError> {
    let decode = DECODE_SPEC.get().ok_or_else(|| SupervisorError::Link {
        supervisor: supervisor.into(),
        reason: "this process cannot rebuild child specs (no decoder installed)".into(),
    })?;
    decode(wire).map_err(|reason| SupervisorError::Link {
        supervisor: supervisor.into(),
        reason: format!("cannot rebuild child spec {:?}: {reason}", wire.id),
    })
}

/// A [`SupervisorError::Link`] for a payload that did not encode or decode.
fn bad(supervisor: &str, what: &str, e: impl std::fmt::Display) -> SupervisorError {
    SupervisorError::Link {
        supervisor: supervisor.into(),
        reason: format!("{what}: {e}"),
    }
}

/// The bytes of a request.
pub(crate) fn encode_request(
    request: &RemoteRequest,
    supervisor: &str,
) -> Result<Vec<u8>, SupervisorError> {
    wire::encode(request).map_err(|e| bad(supervisor, "cannot encode the request", e))
}

/// A request from its bytes.
pub(crate) fn decode_request(
    bytes: &[u8],
    supervisor: &str,
) -> Result<RemoteRequest, SupervisorError> {
    wire::decode(bytes).map_err(|e| bad(supervisor, "a request that does not decode", e))
}

/// The bytes of an answer (an answer that cannot be encoded becomes the error saying so).
pub(crate) fn encode_answer(
    answer: &Result<RemoteAnswer, SupervisorError>,
    supervisor: &str,
) -> Vec<u8> {
    wire::encode(answer).unwrap_or_else(|e| {
        let error: Result<RemoteAnswer, _> = Err(bad(supervisor, "cannot encode the answer", e));
        wire::encode(&error).unwrap_or_default()
    })
}

/// An answer from its bytes.
pub(crate) fn decode_answer(
    bytes: &[u8],
    supervisor: &str,
) -> Result<RemoteAnswer, SupervisorError> {
    wire::decode::<Result<RemoteAnswer, SupervisorError>>(bytes)
        .map_err(|e| bad(supervisor, "an answer that does not decode", e))?
}

/// The error for an answer of the wrong kind (`expected` names the right one).
pub(crate) fn unexpected(supervisor: &str, expected: &str, got: &RemoteAnswer) -> SupervisorError {
    SupervisorError::Link {
        supervisor: supervisor.into(),
        reason: format!("expected {expected} in answer, got {got:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_bad_bytes_are_precise_errors() {
        let ok: Result<RemoteAnswer, SupervisorError> = Ok(RemoteAnswer::Pid(Some(7)));
        let err: Result<RemoteAnswer, SupervisorError> = Err(SupervisorError::SimpleOneForOne {
            supervisor: "top".into(),
            operation: "restart_child",
        });
        assert_eq!(decode_answer(&encode_answer(&ok, "top"), "top"), ok);
        assert_eq!(decode_answer(&encode_answer(&err, "top"), "top"), err);
        match decode_answer(&[0xff, 0xff, 0xff], "top/sub") {
            Err(SupervisorError::Link { supervisor, reason }) => {
                assert_eq!(supervisor, "top/sub");
                assert!(
                    reason.starts_with("an answer that does not decode"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let request = RemoteRequest {
            below: vec!["sub".into()],
            instance: 3,
            op: RemoteOp::TerminateChild("a".into()),
        };
        let bytes = encode_request(&request, "top").unwrap();
        assert_eq!(decode_request(&bytes, "top"), Ok(request));
        assert!(matches!(
            decode_request(&bytes[..bytes.len() - 1], "top"),
            Err(SupervisorError::Link { .. })
        ));
    }
}
