//! What came back for a chunk: its decoded results, or why it failed (a [`TaskError`]).

use procvisor_actors::wire::codec;
use serde::de::DeserializeOwned;

use super::task::{ChunkStatus, WorkerFailure};
use crate::error::TaskError;

/// A chunk whose answer could not be understood.
pub(crate) fn undecodable(reason: impl std::fmt::Display) -> TaskError {
    TaskError::DecodeResult {
        reason: reason.to_string(),
    }
}

/// How a chunk ended, as handed to its job (before decoding).
pub(crate) enum Outcome<'a> {
    /// The worker answered: the status and the payload after it.
    Frame(ChunkStatus, &'a [u8]),
    /// The chunk failed without an answer.
    Failed(TaskError),
}

/// A chunk's decoded results.
pub(crate) enum Chunk<R> {
    /// Every item succeeded.
    Ok(Vec<R>),
    /// One outcome per item, at least one of them failed.
    Each(Vec<Result<R, TaskError>>),
    /// The whole chunk failed.
    Failed(TaskError),
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
                Err(e) => Chunk::Failed(undecodable(e)),
            },
            Outcome::Frame(ChunkStatus::Partial, payload) => {
                match codec::decode::<Vec<Result<R, WorkerFailure>>>(payload) {
                    Ok(v) if v.len() == items => {
                        Chunk::Each(v.into_iter().map(|r| r.map_err(TaskError::from)).collect())
                    }
                    Ok(v) => Chunk::Failed(count_mismatch(v.len(), items)),
                    Err(e) => Chunk::Failed(undecodable(e)),
                }
            }
            Outcome::Frame(ChunkStatus::Failed, payload) => {
                match codec::decode::<WorkerFailure>(payload) {
                    Ok(e) => Chunk::Failed(e.into()),
                    Err(e) => Chunk::Failed(undecodable(e)),
                }
            }
        }
    }
}

fn count_mismatch(got: usize, want: usize) -> TaskError {
    undecodable(format!(
        "the worker returned {got} results for a chunk of {want}"
    ))
}
