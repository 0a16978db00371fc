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
//! use procvisor::{Queue, error::GetError};
//!
//! let q = Queue::<Vec<Option<String>>>::new()?;
//! q.put(&vec![Some("hello".into()), None])?;
//! assert_eq!(q.len(), 1);
//! assert_eq!(q.get()?, vec![Some("hello".to_string()), None]);
//! // Nothing left: a timed get gives up with `Empty`.
//! assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(GetError::Empty)));
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! Between processes (the example of Python's docs; see `examples/queue.rs`):
//!
//! ```no_run
//! use procvisor::{Process, Queue};
//!
//! fn f(q: Queue<(i32, Option<i32>, String)>) -> procvisor::Result<()> {
//!     Ok(q.put(&(42, None, "hello".to_string()))?)
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
//! Every operation is one family: `x` blocks, `try_x` never blocks, `x_timeout(d)` gives up
//! after `d`, `x_async` is the `async fn` (cancel safe; for a deadline, wrap it in
//! `tokio::time::timeout`). Each family has its error type: [`PutError`], [`GetError`], and
//! [`QueueError`] for the rest.
//!
//! | Python | here |
//! |---|---|
//! | `Queue()`, `Queue(maxsize)` | [`Queue::new`], [`Queue::bounded`], [`Queue::builder`] (also the ring's byte [`capacity`](QueueBuilder::capacity)) |
//! | `put(item)` / `put(item, True, t)` / `put_nowait` | [`Queue::put`], [`Queue::put_timeout`], [`Queue::try_put`] → [`PutError::Full`]; [`Queue::put_async`] |
//! | `get()` / `get(True, t)` / `get_nowait` | [`Queue::get`], [`Queue::get_timeout`], [`Queue::try_get`] → [`GetError::Empty`]; [`Queue::get_async`] |
//! | `qsize`, `empty`, `full`, `maxsize` | [`Queue::len`], [`Queue::is_empty`], [`Queue::is_full`], [`Queue::max_len`] |
//! | `close`, `join_thread`, `cancel_join_thread` | the same names ([`QueueError::NotClosed`]) |
//! | `JoinableQueue`: `task_done`, `join` | [`JoinableQueue::task_done`] ([`QueueError::TaskDoneTooMany`]), [`JoinableQueue::join`], [`JoinableQueue::join_timeout`], [`JoinableQueue::join_async`], [`JoinableQueue::unfinished_tasks`] |
//! | `SimpleQueue`: `put`, `get`, `empty`, `close` | [`SimpleQueue::put`], [`SimpleQueue::get`], [`SimpleQueue::is_empty`], [`SimpleQueue::close`]; [`SimpleQueue::put_async`], [`SimpleQueue::get_async`] |
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
//! * **A bounded queue** ([`Queue::bounded`]) makes `put` wait while it holds
//!   [`max_len`](Queue::max_len) items.
//! * **A process killed while putting or getting does not corrupt the queue**: every put and
//!   every get is committed by one store into shared memory, the internal locks it may hold are
//!   given back by the node's watch of the holder, and no item is duplicated; only items already
//!   in the dead process's hands (taken by it, or waiting in its feeder) are lost.
//! * **An item that cannot be decoded** is consumed and reported as
//!   [`GetError::Decode`]; the next get proceeds normally.
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

use crate::error::{GetError, PutError, QueueError};
use shared::{Shared, Wait};

/// The default ring capacity: 32 MiB of address space, of which only the pages touched cost
/// memory.
pub const DEFAULT_CAPACITY: usize = 32 << 20;

/// The largest [`max_len`](QueueBuilder::max_len) of a bounded queue, and the most items an
/// unbounded queue holds at once (16 777 215).
pub const MAX_LEN: usize = layout::MAX_ITEMS as usize;

/// A multi-producer, multi-consumer FIFO queue between processes (Python's
/// `multiprocessing.Queue`). See the [module docs](self).
///
/// ```
/// use procvisor::Queue;
///
/// let q = Queue::<String>::bounded(2)?;
/// q.put(&"a".to_string())?;
/// q.try_put(&"b".to_string())?;
/// assert!(q.is_full());
/// assert_eq!(q.try_get()?, "a");
/// assert_eq!(q.len(), 1);
/// # Ok::<(), procvisor::Error>(())
/// ```
pub struct Queue<T> {
    shared: Shared,
    _items: PhantomData<fn(T) -> T>,
}

/// Settings for a new queue: the most items it holds ([`max_len`](Self::max_len); unbounded
/// by default) and the ring's [`capacity`](Self::capacity) in bytes.
///
/// ```
/// use procvisor::{Queue, error::PutError};
///
/// let q = Queue::<u64>::builder().max_len(2).capacity(1 << 16).build()?;
/// q.put(&1)?;
/// q.put(&2)?;
/// assert!(q.is_full());
/// assert!(matches!(q.try_put(&3), Err(PutError::Full)));
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct QueueBuilder {
    max_len: Option<usize>,
    capacity: usize,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            max_len: None,
            capacity: DEFAULT_CAPACITY,
        }
    }
}

impl QueueBuilder {
    /// Makes the queue bounded: it holds at most `max_len` items at once (1 to [`MAX_LEN`]),
    /// and a put waits while it is full. Without it the queue is unbounded (up to [`MAX_LEN`]
    /// items, and as many bytes as the ring holds). Python's `maxsize`; unlike Python, 0 is
    /// refused rather than read as "unbounded".
    #[doc(alias = "maxsize")]
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = Some(max_len);
        self
    }

    /// The ring's size in bytes, rounded up to a power of two (at least 4 KiB, at most 64 GiB;
    /// default [`DEFAULT_CAPACITY`]). An item takes its encoded length plus 4 bytes, rounded up
    /// to 4; a larger item is refused with [`PutError::TooLarge`].
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// Creates a [`Queue`].
    ///
    /// # Errors
    /// [`QueueError::Config`] for a setting out of range; [`QueueError::Shared`] if the OS
    /// refuses the shared memory.
    pub fn build<T>(self) -> Result<Queue<T>, QueueError> {
        Ok(Queue::from_shared(Shared::create(
            self.capacity,
            self.max_len,
            true,
        )?))
    }

    /// Creates a [`JoinableQueue`].
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_joinable<T>(self) -> Result<JoinableQueue<T>, QueueError> {
        Ok(JoinableQueue::from_queue(self.build()?))
    }

    /// Creates a [`SimpleQueue`]. A simple queue is unbounded, and its `put` waits only while
    /// the ring is full: [`max_len`](Self::max_len) is refused with [`QueueError::Config`].
    ///
    /// # Errors
    /// As [`build`](Self::build).
    pub fn build_simple<T>(self) -> Result<SimpleQueue<T>, QueueError> {
        if let Some(max_len) = self.max_len {
            return Err(QueueError::Config {
                reason: format!(
                    "a SimpleQueue is unbounded: max_len({max_len}) does not apply to it"
                ),
            });
        }
        Ok(SimpleQueue::from_shared(Shared::create(
            self.capacity,
            None,
            false,
        )?))
    }
}

impl<T> Queue<T> {
    /// An unbounded queue with the default ring (Python's `Queue()`).
    ///
    /// # Errors
    /// [`QueueError::Shared`] if the OS refuses the shared memory.
    pub fn new() -> Result<Queue<T>, QueueError> {
        QueueBuilder::default().build()
    }

    /// A queue holding at most `max_len` items (Python's `Queue(maxsize)`), with the default
    /// ring.
    ///
    /// # Errors
    /// [`QueueError::Config`] if `max_len` is 0 or above [`MAX_LEN`]; [`QueueError::Shared`]
    /// as [`new`](Self::new).
    #[doc(alias = "maxsize")]
    pub fn bounded(max_len: usize) -> Result<Queue<T>, QueueError> {
        QueueBuilder::default().max_len(max_len).build()
    }

    /// Settings for a new queue (a bound and the ring's byte capacity).
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
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether a get would find no item in shared memory now (approximate, as in Python).
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        !self.shared.ring.has_items()
    }

    /// Whether a bounded queue holds [`max_len`](Self::max_len) items now (approximate);
    /// always `false` for an unbounded queue.
    #[doc(alias = "full")]
    pub fn is_full(&self) -> bool {
        self.shared.ring.is_full()
    }

    /// The most items the queue holds (`Some` for a [bounded](Self::bounded) queue, `None`
    /// for an unbounded one).
    #[doc(alias = "maxsize")]
    pub fn max_len(&self) -> Option<usize> {
        self.shared.ring.max_len()
    }

    /// The ring's size in bytes (see [`QueueBuilder::capacity`]).
    pub fn capacity(&self) -> usize {
        self.shared.ring.capacity()
    }

    /// Says that this process will put and get no more: later puts and gets in this process
    /// fail with [`PutError::Closed`] and [`GetError::Closed`]. Items already put (including
    /// any waiting in this process's feeder) are still delivered.
    pub fn close(&self) {
        self.shared.local.close();
    }

    /// Waits until this process's feeder has moved every item it holds into the queue (Python's
    /// `join_thread`). Returns at once if the feeder holds nothing (the usual case: puts go
    /// straight to shared memory) or after [`cancel_join_thread`](Self::cancel_join_thread).
    ///
    /// # Errors
    /// [`QueueError::NotClosed`] unless [`close`](Self::close) was called first in this
    /// process, as in Python.
    pub fn join_thread(&self) -> Result<(), QueueError> {
        if !self.shared.local.is_closed() {
            return Err(QueueError::NotClosed);
        }
        self.shared.local.wait_drained(None);
        Ok(())
    }

    /// Makes [`join_thread`](Self::join_thread) return at once and lets this process exit
    /// without flushing the items its feeder still holds (they are lost).
    pub fn cancel_join_thread(&self) {
        self.shared.local.cancel_join();
    }

    /// Test seam, not part of the API: takes the queue's internal put and get locks and never
    /// gives them back, as a process killed in the middle of a put and a get would. Other
    /// processes get them back when this process dies.
    #[doc(hidden)]
    pub fn hold_internal_locks_for_tests(&self) {
        self.shared.ring.hold_locks();
    }
}

impl<T: Serialize> Queue<T> {
    /// Puts `item` in the queue. An unbounded queue never waits (see the
    /// [module docs](self#semantics)); a bounded one waits while it is full.
    ///
    /// # Errors
    /// [`PutError::Closed`] after [`close`](Self::close); [`PutError::TooLarge`] if the item
    /// does not fit in the ring; [`PutError::Encode`] if it cannot be encoded. Never
    /// [`PutError::Full`].
    pub fn put(&self, item: &T) -> Result<(), PutError> {
        self.shared.put(item, Wait::Forever)
    }

    /// Puts `item` if there is room now, without waiting (Python's `put_nowait`). On an
    /// unbounded queue it is the same as [`put`](Self::put).
    ///
    /// # Errors
    /// [`PutError::Full`] if a bounded queue is full; otherwise as [`put`](Self::put).
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, item: &T) -> Result<(), PutError> {
        self.shared.put(item, Wait::Never)
    }

    /// Puts `item`, waiting at most `timeout` for room in a bounded queue (Python's
    /// `put(item, True, timeout)`).
    ///
    /// # Errors
    /// [`PutError::Full`] if the queue stayed full for `timeout`; otherwise as
    /// [`put`](Self::put).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<(), PutError> {
        self.shared.put(item, Wait::timeout(timeout))
    }

    /// [`put`](Self::put) for async callers, on any executor (or none). Waiting for room in a
    /// bounded queue happens on procvisor's node runtime, never on the caller's thread.
    ///
    /// ```
    /// # fn main() -> Result<(), procvisor::Error> {
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let q = procvisor::Queue::<u32>::bounded(1)?;
    /// q.put_async(&1).await?;
    /// // Full: give up after 10 ms (the item is not put).
    /// let late = tokio::time::timeout(std::time::Duration::from_millis(10), q.put_async(&2));
    /// assert!(late.await.is_err());
    /// assert_eq!(q.len(), 1);
    /// # Ok(()) })
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`put`](Self::put).
    ///
    /// # Cancel safety
    /// Cancel safe: the item is in the queue once the future returns `Ok`, and not at all if
    /// the future is dropped before it completes.
    pub async fn put_async(&self, item: &T) -> Result<(), PutError> {
        self.shared.put_async(item).await
    }
}

impl<T: DeserializeOwned> Queue<T> {
    /// Takes the next item, waiting as long as it takes.
    ///
    /// # Errors
    /// [`GetError::Closed`] after [`close`](Self::close); [`GetError::Decode`] if the item is
    /// not a `T` (it is consumed: the next get proceeds normally). Never [`GetError::Empty`].
    pub fn get(&self) -> Result<T, GetError> {
        self.shared.get(Wait::Forever)
    }

    /// Takes the next item if there is one now, without waiting (Python's `get_nowait`).
    ///
    /// # Errors
    /// [`GetError::Empty`] if there is none; otherwise as [`get`](Self::get).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T, GetError> {
        self.shared.get(Wait::Never)
    }

    /// Takes the next item, waiting at most `timeout` (Python's `get(True, timeout)`).
    ///
    /// # Errors
    /// [`GetError::Empty`] if no item came within `timeout`; otherwise as [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.shared.get(Wait::timeout(timeout))
    }

    /// [`get`](Self::get) for async callers, on any executor (or none): waiting happens on
    /// procvisor's node runtime, never on the caller's thread. For a deadline, wrap it in
    /// `tokio::time::timeout`.
    ///
    /// ```
    /// # fn main() -> Result<(), procvisor::Error> {
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    ///
    /// let q = procvisor::Queue::<String>::new()?;
    /// // Nothing there yet: the timeout drops the get, which loses nothing.
    /// assert!(tokio::time::timeout(Duration::from_millis(10), q.get_async()).await.is_err());
    /// q.put(&"hello".to_string())?;
    /// assert_eq!(q.get_async().await?, "hello");
    /// # Ok(()) })
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    /// Cancel safe: an item is taken from the queue only in the poll that returns it, never
    /// between polls, so dropping the future (a `tokio::time::timeout` that expires, a
    /// `select!` branch that loses) never loses an item — it stays for the next get. A
    /// wake-up meant for the dropped future is passed on to another waiter.
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.shared.get_async().await
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
        .field("len", &shared.len())
        .field("max_len", &shared.ring.max_len())
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
