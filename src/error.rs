//! Errors: one type per domain (per operation family where a caller matches them), each
//! converting into the crate's [`Error`] so that `?` works across domains.
//!
//! | domain | types |
//! |---|---|
//! | processes | [`StartError`], [`JoinError`], [`SignalError`], [`StartMethodAlreadySet`] |
//! | connections | [`SendError`], [`RecvError`], [`ConnectError`], [`AuthError`], [`AddressError`] |
//! | queues | [`PutError`], [`GetError`], [`QueueError`] |
//! | synchronization | [`ReleaseError`], [`ConditionError`], [`BrokenBarrier`] |
//! | shared memory | [`SharedError`] |
//! | pools | [`PoolError`], [`TaskError`] |
//! | supervision trees | [`SupervisorError`] |
//!
//! This module is the ground floor of the crate: it names no type of a higher module.

mod connection;
mod pool;
mod process;
mod queue;
mod shared;
mod sync;

use std::io;
use std::time::Duration;

pub use connection::{AddressError, AuthError, ConnectError, PipeEnd, RecvError, SendError};
pub use pool::{PoolError, TaskError};
pub use process::{JoinError, SignalError, StartError};
pub use procvisor_actors::supervisor::SupervisorError;
pub use queue::{GetError, PutError, QueueError};
pub use shared::SharedError;
pub use sync::{BrokenBarrier, ConditionError, Holder, ReleaseError};

pub use crate::context::StartMethodAlreadySet;

/// [`log_to_stderr`](crate::log_to_stderr) could not install its subscriber (another global
/// subscriber is already installed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot install the stderr log subscriber: {reason}")]
pub struct LogInitError {
    /// What `tracing` said.
    pub reason: String,
}

/// The result type of procvisor's fallible calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, one variant per cause (Python's exceptions, as Rust values).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A process did not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A joined process did not run its target.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// A signal could not be sent.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The start method was already chosen.
    #[error(transparent)]
    StartMethod(#[from] StartMethodAlreadySet),
    /// A message was not sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// No message was received.
    #[error(transparent)]
    Recv(#[from] RecvError),
    /// A listener or client could not connect.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The authentication handshake failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An address cannot be used.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// An item was not put on a queue.
    #[error(transparent)]
    Put(#[from] PutError),
    /// No item was taken from a queue.
    #[error(transparent)]
    Get(#[from] GetError),
    /// Another queue operation failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A lock or semaphore release was refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// A condition wait or notify was refused.
    #[error(transparent)]
    Condition(#[from] ConditionError),
    /// A barrier is broken.
    #[error(transparent)]
    Barrier(#[from] BrokenBarrier),
    /// Shared memory could not be created, opened or accessed.
    #[error(transparent)]
    Shared(#[from] SharedError),
    /// A pool refused a request.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A pool task produced no value.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// Logging could not be set up.
    #[error(transparent)]
    Log(#[from] LogInitError),

    // ---- the variants below are being moved into the domain errors above ----------------
    /// A process was started before `procvisor::init()` ran in this program.
    #[error(
        "procvisor::init() has not run: call it first in main (or put procvisor::test_init!() in \
         an integration-test crate) before starting processes"
    )]
    NotInitialized,

    /// `start()` was called twice on the same process.
    #[error("cannot start a process twice ({name} was already started)")]
    AlreadyStarted {
        /// The process's name.
        name: String,
    },

    /// `join()` (or another call that needs a running child) before `start()`.
    #[error("can only join a started process: {name} has not been started")]
    NotStarted {
        /// The process's name.
        name: String,
    },

    /// A process tried to join itself, which would wait forever.
    #[error("a process cannot join itself ({name})")]
    JoinSelf {
        /// The process's name.
        name: String,
    },

    /// The operation needs a child of this process (e.g. signalling the current or parent process).
    #[error("{name} is not a child of this process, so it cannot be {action}")]
    NotAChild {
        /// The process's name.
        name: String,
        /// What was attempted ("joined", "terminated", …).
        action: &'static str,
    },

    /// `set_daemon` (or another setting that only applies before start) after `start()`.
    #[error("cannot change {setting} of {name}: the process has already started")]
    AlreadyRunning {
        /// The process's name.
        name: String,
        /// The setting ("daemon", "start method", "authkey").
        setting: &'static str,
    },

    /// A daemonic process tried to start a child.
    #[error("daemonic processes are not allowed to have children ({parent} is daemonic)")]
    DaemonicParent {
        /// The current (daemonic) process's name.
        parent: String,
    },

    /// The process is exiting and no longer starts children.
    #[error("cannot start {name}: this process is shutting down")]
    ShuttingDown {
        /// The process that was to be started.
        name: String,
    },

    /// A value could not be encoded for another process (Python's pickling error).
    #[error("cannot encode {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The codec's explanation.
        reason: String,
    },

    /// The child could not become the process it was asked to be (undecodable arguments, a
    /// different binary, a protocol mismatch, or it died before reading its bootstrap).
    #[error("{name} failed to start: {reason}")]
    Bootstrap {
        /// The child's name.
        name: String,
        /// What the child (or the parent) reported.
        reason: String,
    },

    /// The OS refused to start the child.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// The child's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// `set_start_method` after the start method was already chosen.
    #[error("the start method has already been set to {current}; pass force = true to change it")]
    StartMethodAlreadySet {
        /// The method in force.
        current: crate::context::StartMethod,
    },

    /// The other end of a connection closed it and no message is left to receive (Python's
    /// `EOFError`).
    #[error("the other end closed the connection and no message is left to receive")]
    Eof,

    /// A send found the other end of the connection closed (Python's `BrokenPipeError`).
    #[error("cannot send: the other end has closed the connection")]
    BrokenPipe,

    /// The operation needs an open connection (or listener), and this one was closed.
    #[error("the {what} is closed")]
    Closed {
        /// `"connection"` or `"listener"`.
        what: &'static str,
    },

    /// A one-way pipe was used the wrong way round: sending on the receive-only end or
    /// receiving on the send-only end of `pipe(false)`.
    #[error("cannot {operation}: this is the {end} end of a one-way pipe")]
    WrongEnd {
        /// What was attempted (`"send"`, `"receive"`, `"poll"`).
        operation: &'static str,
        /// Which end this is (`"receive-only"`, `"send-only"`).
        end: &'static str,
    },

    /// The connection can no longer be read: an earlier message was refused (longer than
    /// `maxlength` or than the frame limit) and the position in the stream was lost.
    #[error("the connection is no longer readable: {reason}")]
    NotReadable {
        /// Why reading stopped.
        reason: String,
    },

    /// `recv_bytes(Some(maxlength))` met a longer message. The message is not read and the
    /// connection is no longer readable (Python raises `IOError` and does the same).
    #[error(
        "message of {len} bytes is longer than maxlength ({maxlength} bytes); the connection is \
         no longer readable"
    )]
    MessageTooLong {
        /// The message's length.
        len: usize,
        /// The `maxlength` given.
        maxlength: usize,
    },

    /// A message is larger than the connection's frame limit ([`crate::Connection::max_frame`]):
    /// refused before sending, or, when received, refused before any memory is allocated for it
    /// (the connection is then no longer readable).
    #[error("message of {len} bytes is larger than the frame limit of {max} bytes")]
    FrameTooLarge {
        /// The message's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// `recv_bytes_into`: the buffer (after the offset) is too short for the message. The whole
    /// message was received and is carried here (Python's `BufferTooShort`, whose `args[0]` is
    /// the message).
    #[error(
        "buffer too short: the message is {} bytes, the buffer has room for {room}",
        message.len()
    )]
    BufferTooShort {
        /// The complete message.
        message: Vec<u8>,
        /// How many bytes the buffer had room for after the offset.
        room: usize,
    },

    /// An offset past the end of a buffer (`recv_bytes_into`, `send_bytes`).
    #[error("offset {offset} is past the end of the {len}-byte buffer")]
    BadOffset {
        /// The offset given.
        offset: usize,
        /// The buffer's length.
        len: usize,
    },

    /// `send_bytes(buf, offset, Some(size))` with `offset + size` past the end of `buf`.
    #[error("offset {offset} + size {size} is past the end of the {len}-byte buffer")]
    BadSize {
        /// The offset given.
        offset: usize,
        /// The size given.
        size: usize,
        /// The buffer's length.
        len: usize,
    },

    /// A received message is not a valid encoding of the type asked for (Python's unpickling
    /// error). The message was consumed; the connection stays usable.
    #[error("cannot decode {what}: {reason}")]
    Decode {
        /// What was being decoded (the type's name).
        what: String,
        /// The codec's explanation.
        reason: String,
    },

    /// The authentication handshake failed (Python's `AuthenticationError`): a wrong key on
    /// either side, a peer that does not speak the handshake, or one that did not finish it in
    /// time. Both sides report it.
    #[error("authentication failed: {0}")]
    Authentication(String),

    /// An address that cannot be used: unparsable, unresolvable, or of another family than the
    /// one asked for.
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The connection broke in a way that leaves the stream unusable: the peer closed it in the
    /// middle of a message, or the OS reported an error.
    #[error("connection failed: {0}")]
    Wire(#[source] procvisor_actors::wire::WireError),

    /// A supervisor refused a spec or a request, or a child could not start: see
    /// [`SupervisorError`] for the cases.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),

    // ---- queues (Queue, JoinableQueue, SimpleQueue) ----------------------------------------
    /// A get found no item: it did not block, or its timeout passed (Python's `queue.Empty`).
    #[error("the queue is empty: no item was available in time")]
    Empty,

    /// A put found no room: it did not block, or its timeout passed, on a queue created with a
    /// `maxsize` (Python's `queue.Full`).
    #[error("the queue is full: no room for the item in time")]
    Full,

    /// A put or get after [`close`](crate::Queue::close) in this process.
    #[error("the queue was closed in this process: it can no longer put or get")]
    QueueClosed,

    /// [`join_thread`](crate::Queue::join_thread) before [`close`](crate::Queue::close).
    #[error("join_thread() needs close() first: the queue is still open in this process")]
    QueueNotClosed,

    /// [`task_done`](crate::JoinableQueue::task_done) was called more times than items were put
    /// (Python's `ValueError`).
    #[error("task_done() called more times than there were items put in the queue")]
    TaskDoneTooMany,

    /// An item whose encoding does not fit in the queue's ring, even empty.
    #[error(
        "an item of {len} bytes (encoded) does not fit in the queue's {capacity}-byte ring; \
         build the queue with a larger capacity"
    )]
    ItemTooLarge {
        /// The item's encoded length.
        len: usize,
        /// The ring's capacity in bytes (an item also needs a 4-byte header).
        capacity: usize,
    },

    /// A queue setting out of range (`maxsize`, `capacity`).
    #[error("invalid queue setting: {reason}")]
    QueueConfig {
        /// What is wrong and what is allowed.
        reason: String,
    },

    // ---- synchronization primitives and shared memory (src/synchronize, src/sharedctypes) ----
    /// `release()` of a lock (or RLock) that nobody holds (Python's "release unlocked lock").
    #[error("cannot release an unlocked {what}")]
    ReleaseUnlocked {
        /// `"Lock"` or `"RLock"`.
        what: &'static str,
    },

    /// `release()` of an RLock held by another thread or another process: only its owner may
    /// release it (Python's "cannot release un-acquired lock").
    #[error(
        "cannot release this RLock: it is held by another {holder_kind} (pid {holder_pid}), and only the thread that acquired it may release it"
    )]
    NotOwner {
        /// `"thread"` (of this process) or `"process"`.
        holder_kind: &'static str,
        /// The holding process.
        holder_pid: i32,
    },

    /// A condition was waited on or notified by a thread that does not hold its lock.
    #[error("cannot {operation} a condition without holding its lock")]
    NotHeld {
        /// `"wait on"` or `"notify"`.
        operation: &'static str,
    },

    /// `release()` of a BoundedSemaphore would raise its value past the initial value.
    #[error("semaphore released too many times: its value cannot exceed {max}")]
    SemaphoreOverRelease {
        /// The initial (and largest) value.
        max: u32,
    },

    /// A barrier was aborted, a wait on it timed out, its action failed, or it was reset while
    /// this party waited (Python's `BrokenBarrierError`).
    #[error("the barrier is broken (aborted, timed out, its action failed, or reset)")]
    BrokenBarrier,

    /// More threads wait on a condition at once than its shared table has places for.
    #[error("more than {max} threads are already waiting on this condition")]
    TooManyWaiters {
        /// The table's size.
        max: usize,
    },

    /// An argument outside the range the operation accepts.
    #[error("invalid {argument}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        argument: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// Shared memory could not be created or mapped.
    #[error("shared memory: {reason}")]
    SharedMemory {
        /// What the OS (or the description received) said.
        reason: String,
    },

    /// A shared object's memory cannot be opened here: its home process and the process that
    /// sent the handle have both exited.
    #[error(
        "the shared object is gone: its home process (pid {home_pid}) and the sender have exited"
    )]
    HomeGone {
        /// The pid of the process that created the object.
        home_pid: i32,
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

    /// A byte string longer than the char array it is assigned to (Python's "byte string
    /// too long").
    #[error("a {len}-byte string does not fit a char array of {capacity}")]
    StringTooLong {
        /// The string's length.
        len: usize,
        /// The array's length.
        capacity: usize,
    },

    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What procvisor was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    // ---- Pool ----------------------------------------------------------------------------
    /// A pool task returned `Err`: only that task failed, its worker keeps serving. The message
    /// is the error's `Display`.
    #[error("the task failed: {message}")]
    TaskFailed {
        /// The task's error, as text.
        message: String,
    },

    /// A pool task panicked: only that task failed, its worker keeps serving.
    #[error("the task panicked: {message}")]
    TaskPanicked {
        /// The panic's message.
        message: String,
    },

    /// The pool worker running the task died (killed, crashed, or exited) before answering.
    /// The pool replaced the worker; only the tasks it held failed.
    #[error("pool worker (pid {pid}) died while running the task: {exit}")]
    WorkerLost {
        /// The worker's process id.
        pid: i32,
        /// How it ended (exit code or signal).
        exit: procvisor_actors::supervisor::Exit,
    },

    /// A pool task ran longer than its timeout: its worker was killed and replaced, and only
    /// that task failed.
    #[error("the task did not finish within {timeout:?}; its worker was killed and replaced")]
    TaskTimeout {
        /// The timeout in force.
        timeout: Duration,
    },

    /// Waiting for a pool result (`get`, `next_timeout`) took longer than the timeout given
    /// (Python's `TimeoutError`). The task keeps running; ask again later.
    #[error("no result within {timeout:?} (the task is still running)")]
    ResultTimeout {
        /// The timeout given.
        timeout: Duration,
    },

    /// `successful()` (or another call that needs a finished task) before the result is ready.
    #[error("the result is not ready yet")]
    ResultNotReady,

    /// `get()` after an earlier `get()` already took the value out of the result.
    #[error("the result's value was already taken by an earlier get()")]
    ResultTaken,

    /// A pool was asked for no worker processes.
    #[error("a pool needs at least one worker process (asked for {processes})")]
    PoolSize {
        /// The number asked for.
        processes: usize,
    },

    /// A task was submitted to a pool that was closed or terminated.
    #[error("the pool is {state}: it accepts no new tasks")]
    PoolNotRunning {
        /// `"closed"` or `"terminated"`.
        state: &'static str,
    },

    /// `join()` on a pool that was neither closed nor terminated (it would wait forever).
    #[error("cannot join a running pool: call close() or terminate() first")]
    PoolStillRunning,

    /// The pool was terminated (or dropped) before the task finished.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,

    /// The pool cannot keep its workers running (for example its initializer fails), so it
    /// stopped and failed its tasks.
    #[error("the pool is broken: {reason}")]
    PoolBroken {
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The complete message carried by [`Error::BufferTooShort`] (Python's `e.args[0]`), or
    /// `None` for other errors.
    pub fn into_message(self) -> Option<Vec<u8>> {
        match self {
            Error::BufferTooShort { message, .. } => Some(message),
            _ => None,
        }
    }

    pub(crate) fn shared_memory(e: procvisor_actors::shm::SegmentError) -> Self {
        match e {
            procvisor_actors::shm::SegmentError::HomeGone { home_pid } => {
                Error::HomeGone { home_pid }
            }
            other => Error::SharedMemory {
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
