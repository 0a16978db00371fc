//! Errors of shared memory: creating shared objects and accessing `Value`s and `Array`s.

use std::io;

/// Why a shared object (a lock, a queue, a `Value`, …) could not be created, opened or
/// accessed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SharedError {
    /// The OS refused the shared memory (`memfd_create`, `ftruncate`, `mmap`), for example
    /// when the process is out of descriptors.
    #[error("cannot create or map shared memory: {0}")]
    Os(#[source] io::Error),

    /// A received description of a shared object that no object of this type has (a handle
    /// decoded as another type, or a corrupt message).
    #[error("invalid shared object description: {reason}")]
    Invalid {
        /// What does not match.
        reason: String,
    },

    /// The object's memory cannot be opened here: its home process and the process that sent
    /// the handle have both exited.
    #[error(
        "the shared object is gone: its home process (pid {home_pid}) and the sender have exited"
    )]
    HomeGone {
        /// The pid of the process that created the object.
        home_pid: i32,
    },

    /// A size or count outside what the object supports (a semaphore's value, a barrier's
    /// parties, an element type's size).
    #[error("invalid {argument}: {reason}")]
    OutOfRange {
        /// Which setting.
        argument: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// An index past the end of a shared array (Python's `IndexError`).
    #[error("index {index} is out of range for a shared array of {len} elements")]
    IndexOutOfRange {
        /// The index given.
        index: usize,
        /// The array's length.
        len: usize,
    },

    /// A sequence whose length does not fit the shared array it is written into.
    #[error("cannot write {got} elements into a shared array of {len} (starting at {start})")]
    LengthMismatch {
        /// Elements given.
        got: usize,
        /// The array's length.
        len: usize,
        /// Where the write starts.
        start: usize,
    },

    /// A typecode that is not one of the `array` module's (`b B h H i I l L q Q f d c`).
    #[error("unknown typecode {typecode:?}: expected one of b B h H i I l L q Q f d c")]
    UnknownTypeCode {
        /// The typecode given.
        typecode: char,
    },

    /// A typecode that does not describe the Rust element type asked for.
    #[error("typecode {typecode:?} does not describe the element type {rust_type}")]
    TypeCodeMismatch {
        /// The typecode given.
        typecode: char,
        /// The Rust type the value was declared with.
        rust_type: &'static str,
    },

    /// A byte string longer than the char array it is assigned to (Python's "byte string too
    /// long").
    #[error("a {len}-byte string does not fit a char array of {capacity}")]
    StringTooLong {
        /// The string's length.
        len: usize,
        /// The array's length.
        capacity: usize,
    },
}

impl From<procvisor_actors::shm::SegmentError> for SharedError {
    fn from(e: procvisor_actors::shm::SegmentError) -> Self {
        use procvisor_actors::shm::SegmentError;
        match e {
            SegmentError::HomeGone { home_pid } => SharedError::HomeGone { home_pid },
            SegmentError::Io(source) => SharedError::Os(source),
            SegmentError::Invalid(reason) => SharedError::Invalid { reason },
        }
    }
}
