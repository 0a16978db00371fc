//! Where everything lives in a queue's shared segment, and the packed words that commit puts
//! and gets.
//!
//! ```text
//! offset  what (written by)
//!      0  config: magic, version, log2(capacity), maxsize          (the creator, once)
//!     64  producers' line: put lock, tail word, put_waiters, items  (producers)
//!    128  consumers' line: get lock, head word, get_waiters, space  (consumers)
//!    192  joinable line: done counter, join_waiters                (task_done / join)
//!    256  the ring: `capacity` bytes of length-prefixed records
//! ```
//!
//! The tail and head words each pack a byte position (low 40 bits, wrapping) and an item
//! sequence (high 24 bits, wrapping): one store moves both, so a put or a get is committed by
//! exactly one instruction and the item count (`tail seq − head seq`) can never disagree with
//! the bytes in the ring, whatever instant a process is killed at.

use std::sync::atomic::{AtomicU32, AtomicU64};

use procvisor_actors::shm::{RobustMutex, Segment};

/// "PVQ1" — a segment that holds a queue.
pub(super) const MAGIC: u32 = u32::from_le_bytes(*b"PVQ1");

pub(super) const CONFIG: usize = 0;
pub(super) const CONFIG_MAGIC: usize = CONFIG;
pub(super) const CONFIG_CAPACITY_LOG2: usize = CONFIG + 4;
pub(super) const CONFIG_MAXSIZE: usize = CONFIG + 8;

pub(super) const PUT_LOCK: usize = 64;
pub(super) const TAIL: usize = 72;
pub(super) const PUT_WAITERS: usize = 80;
pub(super) const ITEMS_WORD: usize = 84;

pub(super) const GET_LOCK: usize = 128;
pub(super) const HEAD: usize = 136;
pub(super) const GET_WAITERS: usize = 144;
pub(super) const SPACE_WORD: usize = 148;

pub(super) const DONE: usize = 192;
pub(super) const JOIN_WAITERS: usize = 196;

/// The first ring byte.
pub(super) const RING: usize = 256;

const POS_BITS: u32 = 40;
/// The position bits of a head or tail word.
pub(super) const POS_MASK: u64 = (1 << POS_BITS) - 1;
/// Item sequences wrap at 2^24: at most this many items are ever in a queue at once.
pub(super) const SEQ_MASK: u32 = (1 << 24) - 1;
/// The largest item count a queue holds (and the largest `maxsize`).
pub(super) const MAX_ITEMS: u32 = SEQ_MASK;

/// Smallest and largest ring capacities (powers of two).
pub(super) const MIN_CAPACITY_LOG2: u32 = 12;
pub(super) const MAX_CAPACITY_LOG2: u32 = 36;

/// A record: a 4-byte little-endian payload length, the payload, padding to 4 bytes. A
/// record's header therefore never straddles the ring's end.
pub(super) const RECORD_HEADER: usize = 4;

/// The ring bytes a payload of `len` bytes occupies.
pub(super) fn record_size(len: usize) -> usize {
    RECORD_HEADER + len.next_multiple_of(RECORD_HEADER)
}

/// A decoded tail or head word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cursor {
    /// Item sequence, modulo 2^24.
    pub seq: u32,
    /// Byte position, modulo 2^40.
    pub pos: u64,
}

impl Cursor {
    pub fn unpack(word: u64) -> Cursor {
        Cursor {
            seq: (word >> POS_BITS) as u32 & SEQ_MASK,
            pos: word & POS_MASK,
        }
    }

    pub fn pack(self) -> u64 {
        (u64::from(self.seq & SEQ_MASK) << POS_BITS) | (self.pos & POS_MASK)
    }

    /// The cursor after one record of `size` bytes.
    pub fn advance(self, size: usize) -> Cursor {
        Cursor {
            seq: self.seq.wrapping_add(1) & SEQ_MASK,
            pos: self.pos.wrapping_add(size as u64) & POS_MASK,
        }
    }

    /// Items between `head` and `self` (a tail).
    pub fn items_since(self, head: Cursor) -> u32 {
        self.seq.wrapping_sub(head.seq) & SEQ_MASK
    }

    /// Bytes between `head` and `self` (a tail).
    pub fn bytes_since(self, head: Cursor) -> u64 {
        self.pos.wrapping_sub(head.pos) & POS_MASK
    }
}

/// Typed views of the control words of one queue segment.
pub(super) struct Words<'a> {
    pub put_lock: &'a RobustMutex,
    pub tail: &'a AtomicU64,
    pub put_waiters: &'a AtomicU32,
    pub items: &'a AtomicU32,
    pub get_lock: &'a RobustMutex,
    pub head: &'a AtomicU64,
    pub get_waiters: &'a AtomicU32,
    pub space: &'a AtomicU32,
    pub done: &'a AtomicU32,
    pub join_waiters: &'a AtomicU32,
}

impl<'a> Words<'a> {
    pub fn of(seg: &'a Segment) -> Words<'a> {
        Words {
            put_lock: RobustMutex::at(seg, PUT_LOCK),
            tail: seg.state(TAIL),
            put_waiters: seg.state(PUT_WAITERS),
            items: seg.state(ITEMS_WORD),
            get_lock: RobustMutex::at(seg, GET_LOCK),
            head: seg.state(HEAD),
            get_waiters: seg.state(GET_WAITERS),
            space: seg.state(SPACE_WORD),
            done: seg.state(DONE),
            join_waiters: seg.state(JOIN_WAITERS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_wrap_both_fields_together() {
        let c = Cursor {
            seq: SEQ_MASK,
            pos: POS_MASK - 3,
        };
        let next = c.advance(8);
        assert_eq!(next, Cursor { seq: 0, pos: 4 });
        assert_eq!(Cursor::unpack(next.pack()), next);
        assert_eq!(next.items_since(c), 1);
        assert_eq!(next.bytes_since(c), 8);
    }

    #[test]
    fn records_are_padded_to_their_header_size() {
        assert_eq!(record_size(0), 4);
        assert_eq!(record_size(1), 8);
        assert_eq!(record_size(4), 8);
        assert_eq!(record_size(256), 260);
    }
}
