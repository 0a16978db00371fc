//! The engine under every queue flavor: a byte ring of length-prefixed records in a shared
//! segment, with a put lock for producers and a get lock for consumers (the two-lock queue of
//! Michael & Scott, over a bounded ring), futex event counts for waiting, and commit by one
//! store.
//!
//! # Put
//! Under the put lock: read the head, check that the count is below the limit and the record
//! fits, write the record past the tail, then **store the new tail word** (position + 1 item):
//! the commit point. After unlocking, if a consumer sleeps (`get_waiters > 0`), bump the
//! `items` word and wake one.
//!
//! # Get
//! Under the get lock: read the tail; if it is past the head, copy the record at the head out,
//! then **store the new head word**: the commit point. After unlocking, if a producer sleeps,
//! bump the `space` word and wake them all (they may need different amounts of room).
//!
//! # Death of a process
//! Producers only write past the tail and consumers only read before it, so a process killed
//! anywhere leaves the ring consistent: a half-written record is not past the tail and the next
//! producer overwrites it; a record copied out but not committed is still at the head and the
//! next consumer gets it; a committed record was handed over once. A process killed holding a
//! lock leaves its pid in the lock word: the next process that waits for that lock has the
//! node's watch free it (see `RobustMutex`), and since every commit is one store there is
//! nothing to repair.
//!
//! # Waiting
//! A waiter first polls for about [`SPIN_FOR`] (spinning, then yielding), because a sleep and a
//! wake cost several microseconds on each side. Then it announces itself in the waiter count,
//! reads the event word, re-checks, and sleeps on the word with a futex. A committer that sees
//! no waiter makes no system call.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU32, Ordering::*};
use std::time::{Duration, Instant};

use procvisor_actors::shm::{Acquired, RobustMutex, Segment, WaitOutcome, futex_wait, futex_wake};

use super::layout::{self, Cursor, POS_MASK, RECORD_HEADER, Words, record_size};

/// How long a waiter polls before it sleeps.
pub(super) const SPIN_FOR: Duration = Duration::from_micros(20);

/// The ring of one queue, mapped in this process.
#[derive(Debug, Clone)]
pub(super) struct Ring {
    seg: Segment,
    capacity: usize,
    /// Most items in the queue at once (`maxsize`, or the sequence limit).
    limit: u32,
    bounded: bool,
}

/// A record whose length cannot be right: the ring was reset (should never happen).
#[derive(Debug)]
pub(super) struct Corrupt(pub String);

/// What a committer wakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// Consumers waiting for an item.
    Items,
    /// Producers waiting for room.
    Space,
}

/// Unlocks on drop.
struct Held<'a>(&'a RobustMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Ring {
    /// A ring over `seg`, whose config line has been checked (see `Ring::open`).
    pub fn new(seg: Segment, capacity: usize, maxsize: u32) -> Ring {
        Ring {
            seg,
            capacity,
            limit: if maxsize == 0 {
                layout::MAX_ITEMS
            } else {
                maxsize
            },
            bounded: maxsize != 0,
        }
    }

    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn max_len(&self) -> Option<usize> {
        self.bounded.then_some(self.limit as usize)
    }

    pub(super) fn words(&self) -> Words<'_> {
        Words::of(&self.seg)
    }

    fn lock<'a>(
        &'a self,
        mutex: &'a RobustMutex,
        offset: usize,
        deadline: Option<Instant>,
    ) -> Option<Held<'a>> {
        match mutex.lock(&self.seg, offset, deadline)? {
            Acquired::Clean => {}
            // Every commit is one store, so what the dead holder left needs no repair.
            Acquired::OwnerDied { pid } => {
                tracing::debug!(target: "procvisor", pid, "queue lock recovered from a dead process")
            }
        }
        Some(Held(mutex))
    }

    /// Items in the queue now (a snapshot).
    pub fn len(&self) -> usize {
        let w = self.words();
        // The head first: the tail read later is never behind it.
        let head = Cursor::unpack(w.head.load(SeqCst));
        let tail = Cursor::unpack(w.tail.load(SeqCst));
        tail.items_since(head) as usize
    }

    /// Whether a get would find an item now.
    pub fn has_items(&self) -> bool {
        let w = self.words();
        w.head.load(SeqCst) & POS_MASK != w.tail.load(SeqCst) & POS_MASK
    }

    /// Whether the queue holds `maxsize` items (bounded queues only).
    pub fn is_full(&self) -> bool {
        self.bounded && self.len() >= self.limit as usize
    }

    /// Whether a payload of `len` bytes can ever fit.
    pub fn fits(&self, len: usize) -> bool {
        len <= u32::MAX as usize && record_size(len) <= self.capacity
    }

    /// Whether a record of `len` payload bytes fits now (count and bytes).
    fn room_for(&self, len: usize) -> bool {
        let w = self.words();
        let head = Cursor::unpack(w.head.load(SeqCst));
        let tail = Cursor::unpack(w.tail.load(SeqCst));
        tail.items_since(head) < self.limit
            && tail.bytes_since(head) + record_size(len) as u64 <= self.capacity as u64
    }

    // ---- put ------------------------------------------------------------------------------

    /// Appends `payload` if there is room now; `false` if not (or if the put lock could not be
    /// had before `deadline`). The caller has checked [`fits`](Self::fits).
    pub fn try_push(&self, payload: &[u8], deadline: Option<Instant>) -> bool {
        let w = self.words();
        let size = record_size(payload.len());
        {
            let Some(_held) = self.lock(w.put_lock, layout::PUT_LOCK, deadline) else {
                return false;
            };
            let tail = Cursor::unpack(w.tail.load(Relaxed));
            let head = Cursor::unpack(w.head.load(Acquire));
            if tail.items_since(head) >= self.limit
                || tail.bytes_since(head) + size as u64 > self.capacity as u64
            {
                return false;
            }
            self.write_at(tail.pos, &(payload.len() as u32).to_le_bytes());
            self.write_at(tail.pos + RECORD_HEADER as u64, payload);
            w.tail.store(tail.advance(size).pack(), SeqCst); // commit
        }
        self.wake(Side::Items);
        true
    }

    /// Appends `payload`, waiting for room until `deadline` (None: for ever); `false` if the
    /// deadline passed.
    pub fn push(&self, payload: &[u8], deadline: Option<Instant>) -> bool {
        loop {
            if self.try_push(payload, deadline) {
                return true;
            }
            if !self.wait(Side::Space, deadline, || self.room_for(payload.len())) {
                return self.try_push(payload, deadline);
            }
        }
    }

    // ---- get ------------------------------------------------------------------------------

    /// Takes the item at the head into `buf` (replacing its contents) if there is one now.
    pub fn try_pop(&self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<bool, Corrupt> {
        let w = self.words();
        {
            let Some(_held) = self.lock(w.get_lock, layout::GET_LOCK, deadline) else {
                return Ok(false);
            };
            let head = Cursor::unpack(w.head.load(Relaxed));
            let tail = Cursor::unpack(w.tail.load(Acquire));
            let used = tail.bytes_since(head);
            if used == 0 {
                return Ok(false);
            }
            let mut header = [0u8; RECORD_HEADER];
            self.read_at(head.pos, &mut header);
            let len = u32::from_le_bytes(header) as usize;
            let size = record_size(len);
            if size as u64 > used {
                // Cannot happen with the protocol above; never loop on it or read past the
                // tail: drop everything committed so far and say so.
                w.head.store(tail.pack(), SeqCst);
                drop(_held);
                self.wake(Side::Space);
                return Err(Corrupt(format!(
                    "a record claims {len} bytes but only {used} bytes are committed; the \
                     queue's {} items were discarded",
                    tail.items_since(head)
                )));
            }
            buf.clear();
            buf.resize(len, 0);
            self.read_at(head.pos + RECORD_HEADER as u64, buf);
            w.head.store(head.advance(size).pack(), SeqCst); // commit
        }
        self.wake(Side::Space);
        Ok(true)
    }

    /// Takes the item at the head into `buf`, waiting until `deadline` (None: for ever);
    /// `Ok(false)` if the deadline passed with the queue empty.
    pub fn pop(&self, buf: &mut Vec<u8>, deadline: Option<Instant>) -> Result<bool, Corrupt> {
        loop {
            if self.try_pop(buf, deadline)? {
                return Ok(true);
            }
            if !self.wait(Side::Items, deadline, || self.has_items()) {
                return self.try_pop(buf, deadline);
            }
        }
    }

    /// Takes both internal locks and keeps them, as a process killed inside a put and a get
    /// would (test seam for robustness tests).
    pub fn hold_locks(&self) {
        let w = self.words();
        for (mutex, offset) in [
            (w.put_lock, layout::PUT_LOCK),
            (w.get_lock, layout::GET_LOCK),
        ] {
            std::mem::forget(self.lock(mutex, offset, None));
        }
    }

    // ---- waiting --------------------------------------------------------------------------

    fn side_words(&self, side: Side) -> (&AtomicU32, &AtomicU32) {
        let w = self.words();
        match side {
            Side::Items => (w.get_waiters, w.items),
            Side::Space => (w.put_waiters, w.space),
        }
    }

    /// Wakes the waiters of `side` if there are any (no system call otherwise).
    fn wake(&self, side: Side) {
        let (waiters, word) = self.side_words(side);
        if waiters.load(SeqCst) > 0 {
            word.fetch_add(1, SeqCst);
            futex_wake(word, if side == Side::Items { 1 } else { u32::MAX });
        }
    }

    /// Passes a wake-up on to another waiter of `side` (a woken waiter that will not act on it).
    pub fn pass_wake(&self, side: Side) {
        self.wake(side);
    }

    /// Waits until `ready()` might hold: polls for [`SPIN_FOR`], then sleeps on the side's
    /// event word. `false` once `deadline` has passed.
    fn wait(&self, side: Side, deadline: Option<Instant>, ready: impl Fn() -> bool) -> bool {
        if spin_until(&ready, deadline) {
            return true;
        }
        self.sleep_once(side, deadline, &ready) != WaitOutcome::TimedOut
    }

    /// One sleep on the side's event word (announced in its waiter count), unless `ready()`
    /// already holds. Spurious returns are possible: callers re-check.
    pub fn sleep_once(
        &self,
        side: Side,
        deadline: Option<Instant>,
        ready: &dyn Fn() -> bool,
    ) -> WaitOutcome {
        let (waiters, word) = self.side_words(side);
        waiters.fetch_add(1, SeqCst);
        let seen = word.load(SeqCst);
        let outcome = if ready() {
            WaitOutcome::Changed
        } else {
            futex_wait(word, seen, deadline)
        };
        waiters.fetch_sub(1, SeqCst);
        outcome
    }

    /// Whether a waiter of `side` would proceed now.
    pub fn side_ready(&self, side: Side) -> bool {
        match side {
            Side::Items => self.has_items(),
            Side::Space => self.room_for(0),
        }
    }

    // ---- raw ring access ------------------------------------------------------------------

    fn ring_ptr(&self) -> *mut u8 {
        // The segment is `RING + capacity` data bytes long (checked when opened).
        self.seg.data_ptr().wrapping_add(layout::RING)
    }

    /// Copies `bytes` into the ring at position `pos` (modulo the capacity), wrapping.
    fn write_at(&self, pos: u64, bytes: &[u8]) {
        let start = (pos % self.capacity as u64) as usize;
        let first = bytes.len().min(self.capacity - start);
        // SAFETY: `start + first <= capacity` and the rest (< capacity, since a record fits)
        // goes to the ring's beginning, all within the mapping, which `self.seg` keeps alive.
        // The bytes written lie past the committed tail, where no other process reads or
        // writes while we hold the put lock.
        unsafe {
            let ring = self.ring_ptr();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ring.add(start), first);
            std::ptr::copy_nonoverlapping(bytes.as_ptr().add(first), ring, bytes.len() - first);
        }
    }

    /// Copies ring bytes at `pos` (modulo the capacity) into `out`, wrapping.
    fn read_at(&self, pos: u64, out: &mut [u8]) {
        let start = (pos % self.capacity as u64) as usize;
        let first = out.len().min(self.capacity - start);
        // SAFETY: as in `write_at`, in bounds of the mapping; the bytes lie between the head
        // and the committed tail, which no producer writes until the head moves past them.
        unsafe {
            let ring = self.ring_ptr();
            std::ptr::copy_nonoverlapping(ring.add(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(ring, out.as_mut_ptr().add(first), out.len() - first);
        }
    }
}

/// Polls `ready` for about [`SPIN_FOR`] (or until `deadline`): `true` as soon as it holds.
fn spin_until(ready: &impl Fn() -> bool, deadline: Option<Instant>) -> bool {
    let start = Instant::now();
    let mut polls = 0u32;
    loop {
        if ready() {
            return true;
        }
        polls += 1;
        if polls < 32 {
            spin_loop();
            continue;
        }
        // Let a producer or consumer on the same core run.
        std::thread::yield_now();
        let now = Instant::now();
        if now.duration_since(start) >= SPIN_FOR || deadline.is_some_and(|d| now >= d) {
            return false;
        }
    }
}
