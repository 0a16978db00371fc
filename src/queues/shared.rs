//! `Shared`: what every queue handle holds — the ring in this process and the process-local
//! state — and the operations on encoded items that the typed flavors wrap.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use procvisor_actors::runtime;
use procvisor_actors::shm::{Segment, WaitOutcome};
use procvisor_actors::wire::{WireError, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::feeder::Local;
use super::layout::{self, MAX_CAPACITY_LOG2, MAX_ITEMS, MIN_CAPACITY_LOG2};
use super::ring::{Ring, Side};
use crate::error::{GetError, PutError, QueueError, SharedError};

/// Reused encode/decode buffers larger than this are freed after use.
const KEEP_BUFFER: usize = 1 << 20;

/// How long one async wait sleeps on the node's blocking pool before its future re-checks.
pub(super) const ASYNC_SLICE: Duration = Duration::from_millis(200);

/// How an operation waits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wait {
    /// Not at all (`try_*`).
    Never,
    /// Until an instant (`*_timeout`).
    Until(Instant),
    /// For ever.
    Forever,
}

impl Wait {
    pub fn timeout(timeout: Duration) -> Wait {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => Wait::Until(deadline),
            None => Wait::Forever,
        }
    }

    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::Until(d) => Some(d),
            Wait::Never | Wait::Forever => None,
        }
    }
}

/// A queue's ring and this process's state for it.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub ring: Ring,
    pub local: Arc<Local>,
    /// Whether a full ring overflows into this process's feeder (unbounded `Queue`s) instead
    /// of making the put wait (bounded queues, `SimpleQueue`).
    overflow: bool,
}

impl Shared {
    /// Creates the segment of a new queue.
    ///
    /// `max_len`: `None` for an unbounded queue, else at least 1 and at most [`MAX_ITEMS`].
    pub fn create(
        capacity: usize,
        max_len: Option<usize>,
        overflow: bool,
    ) -> Result<Shared, QueueError> {
        let log2 = capacity_log2(capacity)?;
        let maxsize = match max_len {
            None => 0,
            Some(0) => {
                return Err(QueueError::Config {
                    reason: "a bounded queue holds at least 1 item (max_len 0 given); \
                             Queue::new() makes an unbounded one"
                        .into(),
                });
            }
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|&m| m <= MAX_ITEMS)
                .ok_or_else(|| QueueError::Config {
                    reason: format!("max_len {n} is above the largest, {MAX_ITEMS}"),
                })?,
        };
        let capacity = 1usize << log2;
        let seg = Segment::create(layout::RING + capacity).map_err(SharedError::from)?;
        let config = |offset| seg.state::<std::sync::atomic::AtomicU32>(offset);
        config(layout::CONFIG_CAPACITY_LOG2).store(log2, Ordering::Relaxed);
        config(layout::CONFIG_MAXSIZE).store(maxsize, Ordering::Relaxed);
        config(layout::CONFIG_MAGIC).store(layout::MAGIC, Ordering::Release);
        Ok(Shared::with(seg, capacity, maxsize, overflow))
    }

    /// A handle on a queue segment received from another process; checks its config line.
    pub fn open(seg: Segment, overflow: bool) -> Result<Shared, SharedError> {
        let invalid = |reason: String| SharedError::Invalid { reason };
        if seg.len() < layout::RING {
            return Err(invalid(format!(
                "a {}-byte segment cannot hold a queue",
                seg.len()
            )));
        }
        let config = |offset| seg.state::<std::sync::atomic::AtomicU32>(offset);
        if config(layout::CONFIG_MAGIC).load(Ordering::Acquire) != layout::MAGIC {
            return Err(invalid(
                "the shared memory received does not hold a queue".into(),
            ));
        }
        let log2 = config(layout::CONFIG_CAPACITY_LOG2).load(Ordering::Relaxed);
        let maxsize = config(layout::CONFIG_MAXSIZE).load(Ordering::Relaxed);
        if !(MIN_CAPACITY_LOG2..=MAX_CAPACITY_LOG2).contains(&log2)
            || seg.len() < layout::RING + (1usize << log2)
            || maxsize > MAX_ITEMS
        {
            return Err(invalid(format!(
                "the queue's settings are invalid (capacity 2^{log2} in a {}-byte segment, \
                 max_len {maxsize})",
                seg.len()
            )));
        }
        Ok(Shared::with(seg, 1 << log2, maxsize, overflow))
    }

    fn with(seg: Segment, capacity: usize, maxsize: u32, overflow: bool) -> Shared {
        let local = Local::of(seg.id());
        Shared {
            ring: Ring::new(seg, capacity, maxsize),
            local,
            overflow: overflow && maxsize == 0,
        }
    }

    pub fn segment(&self) -> &Segment {
        self.ring.segment()
    }

    fn is_closed(&self) -> bool {
        self.local.is_closed()
    }

    fn check_fits(&self, len: usize) -> Result<(), PutError> {
        if self.ring.fits(len) {
            Ok(())
        } else {
            Err(PutError::TooLarge {
                len,
                capacity: self.ring.capacity(),
            })
        }
    }

    // ---- put ------------------------------------------------------------------------------

    /// Encodes and puts `item`.
    pub fn put<T: Serialize>(&self, item: &T, wait: Wait) -> Result<(), PutError> {
        if self.is_closed() {
            return Err(PutError::Closed);
        }
        with_buffer(&ENCODE_BUF, |buf| {
            codec::encode_into(item, buf).map_err(encode_error::<T>)?;
            self.put_bytes(buf, wait)
        })
    }

    fn put_bytes(&self, payload: &[u8], wait: Wait) -> Result<(), PutError> {
        self.check_fits(payload.len())?;
        if self.overflow {
            // Never waits: a full ring sends the record to this process's feeder.
            if self.local.is_overflowing() || !self.ring.try_push(payload, None) {
                self.local.push(&self.ring, payload.to_vec());
            }
            return Ok(());
        }
        let pushed = match wait {
            Wait::Never => self.ring.try_push(payload, None),
            wait => self.ring.push(payload, wait.deadline()),
        };
        if pushed { Ok(()) } else { Err(PutError::Full) }
    }

    /// [`put`](Self::put) for async callers: waiting for room happens on the node's blocking
    /// pool, in slices, never on the caller's thread. Cancel safe: the item is pushed by the
    /// poll that returns `Ready`, so a future dropped before that has put nothing.
    pub async fn put_async<T: Serialize>(&self, item: &T) -> Result<(), PutError> {
        if self.is_closed() {
            return Err(PutError::Closed);
        }
        let payload = codec::encode(item).map_err(encode_error::<T>)?;
        self.check_fits(payload.len())?;
        if self.overflow {
            return self.put_bytes(&payload, Wait::Never);
        }
        loop {
            if self.ring.try_push(&payload, None) {
                return Ok(());
            }
            self.wait_async(Side::Space).await;
        }
    }

    // ---- get ------------------------------------------------------------------------------

    /// Gets and decodes an item.
    pub fn get<T: DeserializeOwned>(&self, wait: Wait) -> Result<T, GetError> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        with_buffer(&DECODE_BUF, |buf| {
            let popped = match wait {
                Wait::Never => self.ring.try_pop(buf, None),
                wait => self.ring.pop(buf, wait.deadline()),
            };
            match popped {
                Ok(true) => decode_item(buf),
                Ok(false) => Err(GetError::Empty),
                Err(corrupt) => Err(GetError::Decode {
                    what: std::any::type_name::<T>(),
                    reason: corrupt.0,
                }),
            }
        })
    }

    /// [`get`](Self::get) for async callers. Cancel safe: an item is only taken inside the
    /// poll that returns it (`Ready`), never between polls, so dropping the future loses
    /// nothing.
    pub async fn get_async<T: DeserializeOwned>(&self) -> Result<T, GetError> {
        loop {
            match self.get(Wait::Never) {
                Err(GetError::Empty) => {}
                other => return other,
            }
            self.wait_async(Side::Items).await;
        }
    }

    /// Sleeps once (at most [`ASYNC_SLICE`]) on `side`'s event word on the node's blocking
    /// pool. A wake-up that arrives after the caller's future was dropped is passed on, so no
    /// other waiter misses it.
    async fn wait_async(&self, side: Side) {
        let until = Instant::now() + ASYNC_SLICE;
        let ring = self.ring.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime::spawn_blocking(move || {
            let ready = || ring.side_ready(side);
            let outcome = ring.sleep_once(side, Some(until), &ready);
            if tx.send(()).is_err() && outcome == WaitOutcome::Woken && ring.side_ready(side) {
                ring.pass_wake(side);
            }
        });
        let _ = rx.await;
    }

    // ---- sizes ----------------------------------------------------------------------------

    /// Items in the queue, plus this process's items still waiting in its overflow.
    pub fn len(&self) -> usize {
        self.ring.len() + self.local.pending()
    }
}

fn capacity_log2(capacity: usize) -> Result<u32, QueueError> {
    let rounded = capacity.checked_next_power_of_two().unwrap_or(usize::MAX);
    let log2 = rounded.trailing_zeros().max(MIN_CAPACITY_LOG2);
    if rounded == usize::MAX || log2 > MAX_CAPACITY_LOG2 {
        return Err(QueueError::Config {
            reason: format!(
                "capacity {capacity} bytes is above the largest ring, {} bytes",
                1u64 << MAX_CAPACITY_LOG2
            ),
        });
    }
    Ok(log2)
}

thread_local! {
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's reusable buffer (a fresh one if it is already in use, e.g. by
/// an item whose own `Serialize` puts into a queue).
fn with_buffer<R>(
    key: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let result = f(&mut buf);
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new();
            }
            result
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// The codec writes into memory, so every failure is the item's: it cannot be encoded.
fn encode_error<T>(e: WireError) -> PutError {
    PutError::Encode {
        what: std::any::type_name::<T>(),
        reason: match e {
            WireError::Encode(reason) => reason,
            other => other.to_string(),
        },
    }
}

fn decode_item<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GetError> {
    codec::decode(bytes).map_err(|e| GetError::Decode {
        what: std::any::type_name::<T>(),
        reason: match e {
            WireError::Decode(reason) => reason,
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_round_up_to_a_power_of_two_within_bounds() {
        assert_eq!(capacity_log2(1).unwrap(), MIN_CAPACITY_LOG2);
        assert_eq!(capacity_log2(5000).unwrap(), 13);
        assert_eq!(capacity_log2(1 << 20).unwrap(), 20);
        assert!(capacity_log2(usize::MAX).is_err());
        assert!(capacity_log2((1 << MAX_CAPACITY_LOG2) + 1).is_err());
    }
}
