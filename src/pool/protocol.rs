//! The frames a pool and its workers exchange, one duplex connection per worker.
//!
//! Every frame is one message of the worker's [`Connection`](crate::Connection) (a 4-byte
//! length, then the bytes below); the integers are little-endian.
//!
//! ```text
//! pool → worker   task     seq: u64 | entry: CodeRef (24 bytes) | chunk: the argument tuples (bincode Vec)
//! worker → pool   hello    READY_SEQ | status 0 (ready)  or  status 2 | WorkerFailure (initializer failed)
//! worker → pool   result   seq: u64 | status: u8 | results (see ChunkStatus)
//! ```
//!
//! `entry` names the task's chunk trampoline (a [`CodeRef`] in its fixed layout: offset,
//! device, inode; see [`task`](super::task)); `seq` names the task, and the worker echoes it. A worker holds at
//! most one task at a time, so the pool knows which task a result (or a worker's death) is
//! about without a table lookup; `seq` is a check.

use std::cell::RefCell;

use procvisor_actors::wire::codec;
use serde::ser::{Error as _, SerializeSeq};
use serde::{Serialize, Serializer};

use super::task::{ChunkFn, ChunkStatus};
use crate::code_ref::{CODE_REF_LEN, CodeRef};
use crate::connection::Connection;
use crate::error::RecvError;

/// Bytes before a task's chunk: seq and entry.
pub(crate) const TASK_HEADER: usize = 8 + CODE_REF_LEN;
/// Bytes before a result's payload: seq and status.
pub(crate) const RESULT_HEADER: usize = 9;
/// The `seq` of a worker's hello frame.
pub(crate) const READY_SEQ: u64 = u64::MAX;

/// A task frame for trampoline `entry` whose chunk is `items` (exactly `len` of them), encoded
/// in one buffer with the header in front (the seq is filled in at dispatch).
pub(crate) fn task_frame<I>(
    entry: CodeRef<ChunkFn>,
    items: I,
    len: usize,
) -> Result<Vec<u8>, String>
where
    I: Iterator,
    I::Item: Serialize,
{
    let mut frame = Vec::with_capacity(TASK_HEADER + 8 + len * 4);
    frame.extend_from_slice(&0u64.to_le_bytes());
    frame.extend_from_slice(&entry.to_bytes());
    let seq = SeqOf {
        items: RefCell::new(Some(items)),
        len,
    };
    codec::encode_into(&seq, &mut frame).map_err(|e| e.to_string())?;
    Ok(frame)
}

/// Writes `seq` into a task frame made by [`task_frame`].
pub(crate) fn set_seq(frame: &mut [u8], seq: u64) {
    frame[..8].copy_from_slice(&seq.to_le_bytes());
}

/// Splits a task frame into seq, entry and chunk.
pub(crate) fn parse_task(frame: &[u8]) -> Option<(u64, CodeRef<ChunkFn>, &[u8])> {
    let seq = u64::from_le_bytes(frame.get(..8)?.try_into().ok()?);
    let entry = CodeRef::from_bytes(frame.get(8..TASK_HEADER)?.try_into().ok()?);
    Some((seq, entry, &frame[TASK_HEADER..]))
}

/// Starts a result frame (or the hello) for `seq` in `out`: the status and payload follow.
pub(crate) fn start_result(out: &mut Vec<u8>, seq: u64) {
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
}

/// Splits a result frame into seq, status and payload.
pub(crate) fn parse_result(frame: &[u8]) -> Option<(u64, ChunkStatus, &[u8])> {
    let seq = u64::from_le_bytes(frame.get(..8)?.try_into().ok()?);
    let status = ChunkStatus::from_byte(*frame.get(8)?)?;
    Some((seq, status, &frame[RESULT_HEADER..]))
}

/// Frames up to this size leave their buffer to be reused for the next one.
const KEEP_BUFFER: usize = 64 << 20;

/// Receives one frame into `buf` (reused from frame to frame, so a stream of big chunks does
/// not allocate and fault in fresh memory for each) and returns its length.
pub(crate) fn recv_reusing(conn: &Connection, buf: &mut Vec<u8>) -> Result<usize, RecvError> {
    match conn.recv_bytes_into(buf) {
        Ok(len) => Ok(len),
        Err(RecvError::BufferTooShort { message, .. }) => {
            let len = message.len();
            *buf = message;
            if len <= KEEP_BUFFER {
                buf.resize(buf.capacity(), 0);
            }
            Ok(len)
        }
        Err(e) => Err(e),
    }
}

/// Serializes the next `len` items of an iterator as one sequence, without collecting them.
struct SeqOf<I> {
    items: RefCell<Option<I>>,
    len: usize,
}

impl<I> Serialize for SeqOf<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let items = self.items.borrow_mut().take();
        let Some(items) = items else {
            return Err(S::Error::custom("a chunk can be encoded only once"));
        };
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        let mut count = 0;
        for item in items.take(self.len) {
            seq.serialize_element(&item)?;
            count += 1;
        }
        if count != self.len {
            return Err(S::Error::custom(format!(
                "the input yielded {count} items where its size promised {}",
                self.len
            )));
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_encodes_like_a_vec_and_decodes_as_one_tuples() {
        let entry = CodeRef::from_parts(-42, (1, 2));
        let mut frame = task_frame(entry, 0u32..5, 3).unwrap();
        set_seq(&mut frame, 7);
        let (seq, parsed, chunk) = parse_task(&frame).unwrap();
        assert_eq!((seq, parsed), (7, entry));
        assert_eq!(chunk, codec::encode(&vec![0u32, 1, 2]).unwrap());
        let tuples: Vec<(u32,)> = codec::decode(chunk).unwrap();
        assert_eq!(tuples, [(0,), (1,), (2,)]);
    }

    #[test]
    fn a_short_input_is_an_error_not_a_short_chunk() {
        let err = task_frame(CodeRef::from_parts(0, (1, 2)), 0u32..2, 3).unwrap_err();
        assert!(err.contains("yielded 2 items"), "{err}");
    }

    #[test]
    fn result_frames_round_trip_and_garbage_is_refused() {
        let mut out = Vec::new();
        start_result(&mut out, 9);
        out.push(ChunkStatus::AllOk as u8);
        out.extend_from_slice(b"xyz");
        assert_eq!(
            parse_result(&out),
            Some((9, ChunkStatus::AllOk, &b"xyz"[..]))
        );
        assert_eq!(parse_result(&out[..5]), None);
        out[8] = 77;
        assert_eq!(parse_result(&out), None);
        assert_eq!(parse_task(&[1, 2, 3]), None);
    }
}
