//! What came back for a chunk: its decoded results, or why it failed.

use std::time::Duration;

use procvisor_actors::wire::codec;
use serde::de::DeserializeOwned;

use super::task::{ChunkStatus, TaskError};
use crate::error::Error;
use crate::supervisor::Exit;

/// Why a task failed, kept in a form that can become an [`Error`] any number of times (a
/// result's error is returned by every `get`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Failure {
    /// The worker reported the task's own failure.
    Task(TaskError),
    /// The worker died while holding the task.
    WorkerLost { pid: i32, exit: Exit },
    /// The task exceeded its timeout; its worker was killed.
    Timeout(Duration),
    /// The pool was terminated first.
    Terminated,
    /// The pool could not keep workers running.
    Broken(String),
    /// The worker's answer could not be understood, or the caller's input not encoded.
    Codec { encode: bool, reason: String },
}

impl Failure {
    pub(crate) fn to_error(&self) -> Error {
        match self {
            Failure::Task(TaskError::Failed(message)) => Error::TaskFailed {
                message: message.clone(),
            },
            Failure::Task(TaskError::Panicked(message)) => Error::TaskPanicked {
                message: message.clone(),
            },
            Failure::Task(TaskError::Encode(reason)) => Error::Encode {
                what: "the task's result".into(),
                reason: reason.clone(),
            },
            Failure::Task(TaskError::Decode(reason)) => Error::Decode {
                what: "the task's arguments".into(),
                reason: reason.clone(),
            },
            Failure::WorkerLost { pid, exit } => Error::WorkerLost {
                pid: *pid,
                exit: exit.clone(),
            },
            Failure::Timeout(timeout) => Error::TaskTimeout { timeout: *timeout },
            Failure::Terminated => Error::PoolTerminated,
            Failure::Broken(reason) => Error::PoolBroken {
                reason: reason.clone(),
            },
            Failure::Codec {
                encode: true,
                reason,
            } => Error::Encode {
                what: "the task's arguments".into(),
                reason: reason.clone(),
            },
            Failure::Codec {
                encode: false,
                reason,
            } => Error::Decode {
                what: "the task's result".into(),
                reason: reason.clone(),
            },
        }
    }

    fn decode(reason: impl std::fmt::Display) -> Failure {
        Failure::Codec {
            encode: false,
            reason: reason.to_string(),
        }
    }
}

/// How a chunk ended, as handed to its job (before decoding).
pub(crate) enum Outcome<'a> {
    /// The worker answered: the status and the payload after it.
    Frame(ChunkStatus, &'a [u8]),
    /// The chunk failed without an answer.
    Failed(Failure),
}

/// A chunk's decoded results.
pub(crate) enum Chunk<R> {
    /// Every item succeeded.
    Ok(Vec<R>),
    /// One outcome per item, at least one of them failed.
    Each(Vec<Result<R, Failure>>),
    /// The whole chunk failed.
    Failed(Failure),
}

impl<R: DeserializeOwned> Chunk<R> {
    /// Decodes `outcome` for a chunk of `items` items.
    pub(crate) fn decode(items: u32, outcome: Outcome<'_>) -> Chunk<R> {
        let items = items as usize;
        match outcome {
            Outcome::Failed(f) => Chunk::Failed(f),
            Outcome::Frame(ChunkStatus::AllOk, payload) => match codec::decode::<Vec<R>>(payload) {
                Ok(v) if v.len() == items => Chunk::Ok(v),
                Ok(v) => Chunk::Failed(count_mismatch(v.len(), items)),
                Err(e) => Chunk::Failed(Failure::decode(e)),
            },
            Outcome::Frame(ChunkStatus::Partial, payload) => {
                match codec::decode::<Vec<Result<R, TaskError>>>(payload) {
                    Ok(v) if v.len() == items => {
                        Chunk::Each(v.into_iter().map(|r| r.map_err(Failure::Task)).collect())
                    }
                    Ok(v) => Chunk::Failed(count_mismatch(v.len(), items)),
                    Err(e) => Chunk::Failed(Failure::decode(e)),
                }
            }
            Outcome::Frame(ChunkStatus::Failed, payload) => {
                match codec::decode::<TaskError>(payload) {
                    Ok(e) => Chunk::Failed(Failure::Task(e)),
                    Err(e) => Chunk::Failed(Failure::decode(e)),
                }
            }
        }
    }
}

fn count_mismatch(got: usize, want: usize) -> Failure {
    Failure::decode(format!(
        "the worker returned {got} results for a chunk of {want}"
    ))
}
