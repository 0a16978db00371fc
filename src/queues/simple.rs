//! [`SimpleQueue`]: the queue without a feeder, size limit or timeouts (Python's
//! `multiprocessing.SimpleQueue`).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::shared::{Shared, Wait};
use super::{debug_queue, open_shared};
use crate::error::{GetError, PutError, QueueError};

/// A plain multi-producer, multi-consumer queue between processes: `put` writes straight into
/// shared memory and waits only while the ring is full (no feeder thread); `get` waits for an
/// item.
///
/// ```
/// use procvisor::{SimpleQueue, error::GetError};
///
/// let q = SimpleQueue::<String>::new()?;
/// assert!(q.is_empty());
/// q.put(&"hello".to_string())?;
/// assert_eq!(q.get()?, "hello");
/// q.close();
/// assert!(matches!(q.get(), Err(GetError::Closed)));
/// # Ok::<(), procvisor::Error>(())
/// ```
pub struct SimpleQueue<T> {
    shared: Shared,
    _items: std::marker::PhantomData<fn(T) -> T>,
}

impl<T> SimpleQueue<T> {
    /// A new simple queue with the default ring ([`DEFAULT_CAPACITY`](super::DEFAULT_CAPACITY);
    /// for another, [`QueueBuilder::build_simple`](super::QueueBuilder::build_simple)).
    ///
    /// # Errors
    /// [`QueueError::Shared`] if the OS refuses the shared memory.
    pub fn new() -> Result<SimpleQueue<T>, QueueError> {
        super::QueueBuilder::default().build_simple()
    }

    pub(super) fn from_shared(shared: Shared) -> SimpleQueue<T> {
        SimpleQueue {
            shared,
            _items: std::marker::PhantomData,
        }
    }

    /// Whether a get would find no item now (approximate).
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        !self.shared.ring.has_items()
    }

    /// Says that this process will put and get no more: later puts and gets in this process
    /// fail with [`PutError::Closed`] and [`GetError::Closed`].
    pub fn close(&self) {
        self.shared.local.close();
    }
}

impl<T: Serialize> SimpleQueue<T> {
    /// Puts `item`, waiting while the ring is full.
    ///
    /// # Errors
    /// As [`Queue::put`](super::Queue::put).
    pub fn put(&self, item: &T) -> Result<(), PutError> {
        self.shared.put(item, Wait::Forever)
    }

    /// [`put`](Self::put) for async callers (waiting happens on procvisor's node runtime).
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

impl<T: DeserializeOwned> SimpleQueue<T> {
    /// Takes the next item, waiting as long as it takes.
    ///
    /// # Errors
    /// As [`Queue::get`](super::Queue::get).
    pub fn get(&self) -> Result<T, GetError> {
        self.shared.get(Wait::Forever)
    }

    /// [`get`](Self::get) for async callers (waiting happens on procvisor's node runtime).
    /// For a deadline, wrap it in `tokio::time::timeout`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`Queue::get_async`](super::Queue::get_async): an item is taken only in
    /// the poll that returns it, so dropping the future never loses one.
    pub async fn get_async(&self) -> Result<T, GetError> {
        self.shared.get_async().await
    }
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue::from_shared(self.shared.clone())
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_queue(f, "SimpleQueue", &self.shared)
    }
}

impl<T> Serialize for SimpleQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.shared.segment().serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for SimpleQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        open_shared(deserializer, false).map(SimpleQueue::from_shared)
    }
}
