//! Errors of queues: one type per operation family, as crossbeam-channel has.

/// Why an item was not put ([`Queue::put`](crate::Queue::put) and its family). The item stays
/// with the caller (puts take it by reference).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// No room: a non-blocking put, or a timed one whose timeout passed, on a bounded queue
    /// (Python's `queue.Full`).
    #[error("the queue is full: no room for the item in time")]
    Full,

    /// The queue was closed in this process.
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

    /// The item could not be encoded.
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// The type's name.
        what: &'static str,
        /// The codec's explanation.
        reason: String,
    },
}

/// Why no item was taken ([`Queue::get`](crate::Queue::get) and its family).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// No item: a non-blocking get, or a timed one whose timeout passed (Python's
    /// `queue.Empty`).
    #[error("the queue is empty: no item was available in time")]
    Empty,

    /// The queue was closed in this process.
    #[error("the queue was closed in this process: it can no longer get")]
    Closed,

    /// The item taken is not a valid encoding of the queue's type. It was consumed; the next
    /// get proceeds normally.
    #[error("cannot decode an item as {what}: {reason}")]
    Decode {
        /// The type's name.
        what: &'static str,
        /// The codec's explanation.
        reason: String,
    },
}

/// The other ways a queue operation can fail: settings out of range, misuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A setting out of range (`maxsize`, `capacity`).
    #[error("invalid queue setting: {reason}")]
    Config {
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// [`join_thread`](crate::Queue::join_thread) before [`close`](crate::Queue::close).
    #[error("join_thread() needs close() first: the queue is still open in this process")]
    NotClosed,

    /// [`task_done`](crate::JoinableQueue::task_done) was called more times than items were
    /// put (Python's `ValueError`).
    #[error("task_done() called more times than there were items put in the queue")]
    TaskDoneTooMany,
}
