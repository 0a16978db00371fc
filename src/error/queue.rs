//! Errors of queues: one type per operation family, as crossbeam-channel has.
//!
//! | operation | error |
//! |---|---|
//! | [`put`](crate::Queue::put), [`try_put`](crate::Queue::try_put), [`put_timeout`](crate::Queue::put_timeout), [`put_async`](crate::Queue::put_async) | [`PutError`] |
//! | [`get`](crate::Queue::get), [`try_get`](crate::Queue::try_get), [`get_timeout`](crate::Queue::get_timeout), [`get_async`](crate::Queue::get_async) | [`GetError`] |
//! | constructors, [`join_thread`](crate::Queue::join_thread), [`task_done`](crate::JoinableQueue::task_done) | [`QueueError`] |

use super::SharedError;

/// Why an item was not put ([`Queue::put`](crate::Queue::put) and its family). The item stays
/// with the caller (puts take it by reference), so there is nothing to give back.
///
/// ```
/// use procvisor::{Queue, error::PutError};
///
/// let q = Queue::<u8>::bounded(1)?;
/// q.try_put(&1)?;
/// assert!(matches!(q.try_put(&2), Err(PutError::Full)));
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// No room: a [`try_put`](crate::Queue::try_put), or a
    /// [`put_timeout`](crate::Queue::put_timeout) whose timeout passed, on a bounded queue
    /// (Python's `queue.Full`). A blocking [`put`](crate::Queue::put) never returns it.
    #[error("the queue is full: no room for the item in time")]
    Full,

    /// The queue was [closed](crate::Queue::close) in this process.
    #[error("the queue was closed in this process: it can no longer put")]
    Closed,

    /// The item's encoding does not fit in the queue's ring, even empty.
    #[error(
        "an item of {len} bytes (encoded) does not fit in the queue's {capacity}-byte ring; \
         build the queue with a larger capacity"
    )]
    TooLarge {
        /// The item's encoded length.
        len: usize,
        /// The ring's capacity in bytes (an item also needs a 4-byte header).
        capacity: usize,
    },

    /// The item could not be encoded (Python's pickling error).
    #[error("cannot encode a queue item of type {what}: {reason}")]
    Encode {
        /// The item type's name.
        what: &'static str,
        /// The codec's explanation.
        reason: String,
    },
}

/// Why no item was taken ([`Queue::get`](crate::Queue::get) and its family).
///
/// ```
/// use std::time::Duration;
/// use procvisor::{Queue, error::GetError};
///
/// let q = Queue::<u8>::new()?;
/// assert!(matches!(q.try_get(), Err(GetError::Empty)));
/// assert!(matches!(q.get_timeout(Duration::from_millis(10)), Err(GetError::Empty)));
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// No item: a [`try_get`](crate::Queue::try_get), or a
    /// [`get_timeout`](crate::Queue::get_timeout) whose timeout passed (Python's
    /// `queue.Empty`). A blocking [`get`](crate::Queue::get) never returns it.
    #[error("the queue is empty: no item was available in time")]
    Empty,

    /// The queue was [closed](crate::Queue::close) in this process.
    #[error("the queue was closed in this process: it can no longer get")]
    Closed,

    /// The item taken is not a valid encoding of the queue's item type (Python's unpickling
    /// error). It was consumed; the next get proceeds normally.
    #[error("cannot decode a queue item as {what}: {reason}")]
    Decode {
        /// The item type's name.
        what: &'static str,
        /// The codec's explanation.
        reason: String,
    },
}

/// The other ways a queue operation can fail: a queue that cannot be created, and misuse.
///
/// ```
/// use procvisor::{Queue, error::QueueError};
///
/// // A bounded queue holds at least one item; `Queue::new()` is the unbounded one.
/// assert!(matches!(Queue::<u8>::bounded(0), Err(QueueError::Config { .. })));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A setting out of range ([`max_len`](crate::QueueBuilder::max_len),
    /// [`capacity`](crate::QueueBuilder::capacity)).
    #[error("invalid queue setting: {reason}")]
    Config {
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// The queue's shared memory could not be created.
    #[error("cannot create the queue: {0}")]
    Shared(#[from] SharedError),

    /// [`join_thread`](crate::Queue::join_thread) before [`close`](crate::Queue::close).
    #[error("join_thread() needs close() first: the queue is still open in this process")]
    NotClosed,

    /// [`task_done`](crate::JoinableQueue::task_done) was called more times than items were
    /// put (Python's `ValueError`).
    #[error("task_done() called more times than there were items put in the queue")]
    TaskDoneTooMany,
}
