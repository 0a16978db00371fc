//! Queues between processes: [`Queue`], [`JoinableQueue`] and [`SimpleQueue`] (Python's
//! `multiprocessing.Queue`, `JoinableQueue` and `SimpleQueue`).
//!
//! A queue is a ring of encoded items in shared memory (a memfd mapping). Any number of
//! processes put and get, each item goes to exactly one getter, and the items one process puts
//! come out in the order it put them. Handles are cheap to clone, and are
//! `Serialize + Deserialize`: pass one in a child's arguments, or send it through a
//! [`Connection`](crate::Connection) or another queue to a process that is already running.
//! Items are any serde type.
//!
//! ```
//! use std::time::Duration;
//!
//! let q = procvisor::Queue::<Vec<Option<String>>>::new()?;
//! q.put(&vec![Some("hello".into()), None])?;
//! assert_eq!(q.qsize(), 1);
//! assert_eq!(q.get()?, vec![Some("hello".to_string()), None]);
//! // Nothing left: a timed get gives up with `Empty`.
//! assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(procvisor::Error::Empty)));
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! Between processes (the example of Python's docs; see `examples/queue.rs`):
//!
//! ```no_run
//! use procvisor::{Process, Queue};
//!
//! fn f(q: Queue<(i32, Option<i32>, String)>) -> procvisor::Result<()> {
//!     q.put(&(42, None, "hello".to_string()))
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init();
//!     let q = Queue::new()?;
//!     let p = Process::new(f, (q.clone(),)).start()?;
//!     println!("{:?}", q.get()?); // prints "(42, None, "hello")"
//!     p.join()?;
//!     Ok(())
//! }
//! ```
//!
//! # Operations
//!
//! | Python | here |
//! |---|---|
//! | `Queue()`, `Queue(maxsize)` | [`Queue::new`], [`Queue::with_maxsize`], [`Queue::builder`] |
//! | `put(item)` / `put(item, True, t)` / `put_nowait` | [`Queue::put`], [`Queue::put_timeout`], [`Queue::put_nowait`] → [`Error::Full`] |
//! | `get()` / `get(True, t)` / `get_nowait` | [`Queue::get`], [`Queue::get_timeout`], [`Queue::get_nowait`] → [`Error::Empty`] |
//! | `qsize`, `empty`, `full` | [`Queue::qsize`], [`Queue::empty`], [`Queue::full`] |
//! | `close`, `join_thread`, `cancel_join_thread` | the same names |
//! | `JoinableQueue`: `task_done`, `join` | [`JoinableQueue::task_done`] ([`Error::TaskDoneTooMany`]), [`JoinableQueue::join`] |
//! | `SimpleQueue`: `put`, `get`, `empty`, `close` | [`SimpleQueue`] |
//! | — | async: [`Queue::put_async`], [`Queue::get_async`], [`Queue::get_timeout_async`] |
//!
//! # Semantics
//!
//! * **`put` on an unbounded queue never waits for a consumer**, as in Python. The item goes
//!   straight into the shared ring; only if the ring is full does it wait in this process's
//!   memory, where a feeder thread moves it into the ring as room appears. A process that exits
//!   first flushes those items (unless it called [`Queue::cancel_join_thread`]). With the
//!   default 32 MiB ring this buffer is rarely used, and a child that puts and exits before
//!   anyone reads does not hang its parent's `join` — Python's "joining processes that use
//!   queues" deadlock — unless it put more than the ring holds.
//! * **A bounded queue** (`maxsize`) makes `put` wait while `maxsize` items are in it.
//! * **A process killed while putting or getting does not corrupt the queue**: every put and
//!   every get is committed by one store into shared memory, the internal locks it may hold are
//!   given back by the node's watch of the holder, and no item is duplicated; only items already
//!   in the dead process's hands (taken by it, or waiting in its feeder) are lost.
//! * **An item that cannot be decoded** is consumed and reported as
//!   [`Error::Decode`]; the next get proceeds normally.
//! * `close` and `cancel_join_thread` apply to the queue in the calling process (all its
//!   handles of that queue), as Python's apply to the queue object.
//!
//! A handle sent to a running process (through a pipe or a queue) opens the queue's memory
//! through `/proc/<pid>/fd` of the process that created the queue, or of the one that sent the
//! handle: one of them must still be running when it is received.

mod feeder;
mod joinable;
mod layout;
mod ring;
mod shared;
mod simple;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use procvisor_actors::shm::Segment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;

use crate::error::{Error, Result};
use shared::{Shared, Wait};

/// The default ring capacity: 32 MiB of address space, of which only the pages touched cost
/// memory.
pub const DEFAULT_CAPACITY: usize = 32 << 20;

/// A multi-producer, multi-consumer FIFO queue between processes (Python's
/// `multiprocessing.Queue`). See the [module docs](self).
pub struct Queue<T> {
    shared: Shared,
    _items: PhantomData<fn(T) -> T>,
}

/// Settings for a new queue: `maxsize` (0: unbounded) and the ring's `capacity` in bytes.
///
/// ```
/// let q = procvisor::Queue::<u64>::builder().maxsize(2).capacity(1 << 16).build()?;
/// q.put(&1)?;
/// q.put(&2)?;
/// assert!(q.full());
/// assert!(matches!(q.put_nowait(&3), Err(procvisor::Error::Full)));
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct QueueBuilder {
    maxsize: usize,
    capacity: usize,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            maxsize: 0,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl QueueBuilder {
    /// The most items the queue holds at once; 0 (the default) is unbounded (up to 16 777 215
    /// items, and as many bytes as the ring holds).
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// The ring's size in bytes, rounded up to a power of two (at least 4 KiB, at most 64 GiB;
    /// default [`DEFAULT_CAPACITY`]). An item takes its encoded length plus 4 bytes, rounded up
    /// to 4; a larger item is refused with [`Error::ItemTooLarge`].
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Creates a [`Queue`].
    ///
    /// # Errors
    /// [`Error::QueueConfig`] for a setting out of range; [`Error::Io`] if the OS refuses the
    /// shared memory.
    pub fn build<T>(self) -> Result<Queue<T>> {
        Ok(Queue::from_shared(Shared::create(
            self.capacity,
            self.maxsize,
            true,
        )?))
    }

    /// Creates a [`JoinableQueue`].
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_joinable<T>(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue::from_queue(self.build()?))
    }

    /// Creates a [`SimpleQueue`] (`maxsize` is ignored: a simple queue is unbounded, and its
    /// `put` waits only while the ring is full).
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_simple<T>(self) -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue::from_shared(Shared::create(
            self.capacity,
            0,
            false,
        )?))
    }
}

impl<T> Queue<T> {
    /// An unbounded queue (Python's `Queue()`).
    ///
    /// # Errors
    /// [`Error::Io`] if the OS refuses the shared memory.
    pub fn new() -> Result<Queue<T>> {
        QueueBuilder::default().build()
    }

    /// A queue holding at most `maxsize` items (Python's `Queue(maxsize)`; 0 is unbounded).
    ///
    /// # Errors
    /// [`Error::QueueConfig`] if `maxsize` is above 16 777 215; [`Error::Io`] as [`new`](Self::new).
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        QueueBuilder::default().maxsize(maxsize).build()
    }

    /// Settings for a new queue.
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }

    fn from_shared(shared: Shared) -> Queue<T> {
        Queue {
            shared,
            _items: PhantomData,
        }
    }

    /// The approximate number of items in the queue: those in shared memory, plus those this
    /// process put that still wait for room in its feeder. Other processes may change it at
    /// any moment.
    pub fn qsize(&self) -> usize {
        self.shared.qsize()
    }

    /// Whether a get would find no item now (approximate, as in Python).
    pub fn empty(&self) -> bool {
        !self.shared.ring.has_items()
    }

    /// Whether a bounded queue holds `maxsize` items now (approximate); always `false` for an
    /// unbounded queue.
    pub fn full(&self) -> bool {
        self.shared.ring.is_full()
    }

    /// The `maxsize` the queue was created with (`None`: unbounded).
    pub fn maxsize(&self) -> Option<usize> {
        self.shared.ring.maxsize()
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity()
    }

    /// Says that this process will put and get no more: later puts and gets in this process
    /// fail with [`Error::QueueClosed`]. Items already put (including any waiting in this
    /// process's feeder) are still delivered.
    pub fn close(&self) {
        self.shared.local.close();
    }

    /// Waits until this process's feeder has moved every item it holds into the queue (Python's
    /// `join_thread`). Returns at once if the feeder holds nothing (the usual case: puts go
    /// straight to shared memory) or after [`cancel_join_thread`](Self::cancel_join_thread).
    ///
    /// # Errors
    /// [`Error::QueueNotClosed`] unless [`close`](Self::close) was called first, as in Python.
    pub fn join_thread(&self) -> Result<()> {
        if !self.shared.local.is_closed() {
            return Err(Error::QueueNotClosed);
        }
        self.shared.local.wait_drained(None);
        Ok(())
    }

    /// Test seam, not part of the API: takes the queue's internal put and get locks and never
    /// gives them back, as a process killed in the middle of a put and a get would. Other
    /// processes get them back when this process dies.
    #[doc(hidden)]
    pub fn __hold_internal_locks(&self) {
        self.shared.ring.hold_locks();
    }

    /// Makes [`join_thread`](Self::join_thread) return at once and lets this process exit
    /// without flushing the items its feeder still holds (they are lost).
    pub fn cancel_join_thread(&self) {
        self.shared.local.cancel_join();
    }
}

impl<T: Serialize> Queue<T> {
    /// Puts `item` in the queue. An unbounded queue never waits (see the
    /// [module docs](self#semantics)); a bounded one waits while it is full.
    ///
    /// # Errors
    /// [`Error::QueueClosed`] after [`close`](Self::close); [`Error::ItemTooLarge`];
    /// [`Error::Encode`] if the item cannot be encoded.
    pub fn put(&self, item: &T) -> Result<()> {
        self.shared.put(item, Wait::Forever)
    }

    /// Puts `item`, waiting at most `timeout` for room in a bounded queue.
    ///
    /// # Errors
    /// [`Error::Full`] if the queue stayed full for `timeout`; otherwise as [`put`](Self::put).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.shared.put(item, Wait::timeout(timeout))
    }

    /// Puts `item` if there is room now (Python's `put_nowait`).
    ///
    /// # Errors
    /// [`Error::Full`] if a bounded queue is full; otherwise as [`put`](Self::put).
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.shared.put(item, Wait::Never)
    }

    /// [`put`](Self::put) for async callers, on any executor (or none). Waiting for room in a
    /// bounded queue happens on procvisor's node runtime, never on the caller's thread.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub async fn put_async(&self, item: &T) -> Result<()> {
        self.shared.put_async(item).await
    }
}

impl<T: DeserializeOwned> Queue<T> {
    /// Takes the next item, waiting as long as it takes.
    ///
    /// # Errors
    /// [`Error::QueueClosed`] after [`close`](Self::close); [`Error::Decode`] if the item is
    /// not a `T` (it is consumed: the next get proceeds normally).
    pub fn get(&self) -> Result<T> {
        self.shared.get(Wait::Forever)
    }

    /// Takes the next item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Empty`] if no item came within `timeout`; otherwise as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.shared.get(Wait::timeout(timeout))
    }

    /// Takes the next item if there is one now (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`Error::Empty`] if there is none; otherwise as [`get`](Self::get).
    pub fn get_nowait(&self) -> Result<T> {
        self.shared.get(Wait::Never)
    }

    /// [`get`](Self::get) for async callers, on any executor (or none): waiting happens on
    /// procvisor's node runtime. Cancel-safe: dropping the future loses no item.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub async fn get_async(&self) -> Result<T> {
        self.shared.get_async(None).await
    }

    /// [`get_timeout`](Self::get_timeout) for async callers. Cancel-safe.
    ///
    /// # Errors
    /// As [`get_timeout`](Self::get_timeout).
    pub async fn get_timeout_async(&self, timeout: Duration) -> Result<T> {
        let deadline = std::time::Instant::now().checked_add(timeout);
        self.shared.get_async(deadline).await
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue::from_shared(self.shared.clone())
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_queue(f, "Queue", &self.shared)
    }
}

fn debug_queue(f: &mut fmt::Formatter<'_>, name: &str, shared: &Shared) -> fmt::Result {
    f.debug_struct(name)
        .field("id", &shared.segment().id())
        .field("home_pid", &shared.segment().home_pid())
        .field("qsize", &shared.qsize())
        .field("maxsize", &shared.ring.maxsize())
        .field("capacity", &shared.ring.capacity())
        .finish()
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.shared.segment().serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        open_shared(deserializer, true).map(Queue::from_shared)
    }
}

fn open_shared<'de, D: Deserializer<'de>>(
    deserializer: D,
    overflow: bool,
) -> std::result::Result<Shared, D::Error> {
    let seg = Segment::deserialize(deserializer)?;
    Shared::open(seg, overflow).map_err(serde::de::Error::custom)
}
