//! Pipes and connections: messages between processes (Python's `Pipe`, `Connection` and
//! `multiprocessing.connection`).
//!
//! A [`Connection`] carries whole messages in both directions over a byte stream (a Unix
//! socket, a TCP connection). [`send`](Connection::send) takes any serde value and
//! [`recv`](Connection::recv) gives it back on the other side;
//! [`send_bytes`](Connection::send_bytes) and [`recv_bytes`](Connection::recv_bytes) move raw
//! bytes without encoding. [`pipe`] makes a connected pair, [`pipe_oneway`] a pair whose ends
//! only receive ([`Receiver`]) and only send ([`Sender`]); [`Listener`] and [`Client`] connect
//! processes that did not start one another, with
//! [HMAC authentication](crate::connection#authentication).
//!
//! ```
//! let (a, b) = procvisor::pipe()?;
//! a.send(&(1, "hello", None::<i32>))?;
//! assert_eq!(b.recv::<(i32, String, Option<i32>)>()?, (1, "hello".to_string(), None));
//!
//! b.send_bytes(b"thank you")?;
//! assert_eq!(a.recv_bytes()?, b"thank you");
//!
//! let arr1: Vec<u8> = (0..5i32).flat_map(i32::to_ne_bytes).collect();
//! let mut arr2 = [0u8; 40];
//! a.send_bytes(&arr1)?;
//! let count = b.recv_bytes_into(&mut arr2)?;
//! assert_eq!(count, 5 * 4);
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! # Python's names
//!
//! | Python | here |
//! |---|---|
//! | `Pipe()`, `Pipe(duplex=True)` | [`pipe()`](pipe) |
//! | `Pipe(duplex=False)` | [`pipe_oneway()`](pipe_oneway) → ([`Receiver`], [`Sender`]) |
//! | `send_bytes(buf, offset, size)` | [`send_bytes(&buf[offset..offset + size])`](Connection::send_bytes) |
//! | `recv_bytes()`, `recv_bytes(maxlength)` | [`recv_bytes()`](Connection::recv_bytes), [`recv_bytes_max(max_len)`](Connection::recv_bytes_max) |
//! | `recv_bytes_into(buf, offset)` | [`recv_bytes_into(&mut buf[offset..])`](Connection::recv_bytes_into) |
//! | `poll(None)` (blocks) | [`poll()`](Connection::poll) |
//! | `poll()`, `poll(0)` (never block) | [`try_poll()`](Connection::try_poll) |
//! | `poll(timeout)` | [`poll_timeout(d)`](Connection::poll_timeout) |
//! | `closed`, `readable`, `writable` | [`is_closed()`](Connection::is_closed), [`is_readable()`](Connection::is_readable), [`is_writable()`](Connection::is_writable) |
//! | `fileno()` | [`fd()`](Connection::fd) |
//! | `wait(objects, timeout)` | [`wait(objects)`](wait()), [`wait_timeout(objects, d)`](wait_timeout()) |
//! | `Listener(address, family, backlog, authkey)` | [`Listener::bind`], [`Listener::builder`] |
//! | `Client(address, family, authkey)` | [`Client::connect`], [`Client::builder`] |
//! | `EOFError`, `BufferTooShort`, `AuthenticationError` | [`RecvError::Eof`], [`RecvError::BufferTooShort`], [`AuthError`] |
//!
//! # One-way pipes
//!
//! The ends of [`pipe_oneway`] are a [`Receiver`] and a [`Sender`]: the same [`Connection`]
//! type with a direction parameter ([`ReceiveOnly`], [`SendOnly`]; a plain `Connection` is
//! [`Duplex`]). Each has the methods of its direction only, so using one the wrong way round
//! is a compile error rather than Python's run-time `OSError`:
//!
//! ```compile_fail,E0599
//! let (receiver, sender) = procvisor::pipe_oneway()?;
//! receiver.send(&1)?; // error[E0599]: the method `send` exists for struct
//!                     // `Connection<ReceiveOnly>`, but its trait bounds were not satisfied
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! ```compile_fail,E0599
//! let (receiver, sender) = procvisor::pipe_oneway()?;
//! sender.recv::<String>()?; // error[E0599]: `recv` needs a receiving end
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! ```compile_fail,E0599
//! let (receiver, sender) = procvisor::pipe_oneway()?;
//! sender.poll_timeout(std::time::Duration::ZERO)?; // error[E0599]: so does polling
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! A send-only end cannot be waited for, and the handshake needs both directions:
//!
//! ```compile_fail,E0277
//! let (receiver, sender) = procvisor::pipe_oneway()?;
//! procvisor::wait(&[&sender])?; // error[E0277]: `Waitable` is not implemented for `Sender`
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! ```compile_fail,E0308
//! let (receiver, sender) = procvisor::pipe_oneway()?;
//! procvisor::connection::deliver_challenge(&receiver, b"key")?; // error[E0308]: expected
//!                                                              // `&Connection`
//! # Ok::<(), procvisor::Error>(())
//! ```
//!
//! The ends share everything else: they travel to children, [`wait`] takes a [`Receiver`], and
//! they have the async methods of their direction.
//!
//! # Passing a connection to a child
//!
//! A `Connection` is `Serialize + Deserialize`, so it can be one of a child's arguments, with
//! both start methods:
//!
//! ```no_run
//! use procvisor::{Connection, Process};
//!
//! fn child(conn: Connection) {
//!     conn.send(&(42, None::<i32>, "hello")).unwrap();
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init();
//!     let (parent_end, child_end) = procvisor::pipe()?;
//!     let p = Process::new(child, (child_end,)).start()?;
//!     println!("{:?}", parent_end.recv::<(i32, Option<i32>, String)>()?);
//!     p.join()?;
//!     Ok(())
//! }
//! ```
//!
//! What travels is the file descriptor, not a number: `Process::new` encodes its arguments
//! while collecting the fds that values export (the `Serialize` impl of `Connection` duplicates
//! its fd into that collection and writes the fd's *index*); `start` sends the collection to
//! the child with `SCM_RIGHTS` beside the bootstrap message, and the child's `Deserialize` takes
//! the fd at that index back. The parent's own `Connection` stays open: drop (or
//! [`close`](Connection::close)) it after `start` when only the child should hold that end, so
//! that the other end sees end-of-file when the child exits. A connection that already read
//! bytes it has not handed out yet refuses to be encoded (those bytes would be lost), and
//! outside a child's arguments (for example inside a message) encoding one is an error.
//!
//! # Messages on the wire
//!
//! Each message is one frame: a 4-byte big-endian length, then the payload (the bincode
//! encoding of the value for `send`, the bytes themselves for `send_bytes`); see
//! [`procvisor_actors::wire`] for the bytes of a real frame. So `recv_bytes` can receive
//! what `send` sent (the encoding), and `recv` can decode what `send_bytes` sent if those bytes
//! are a valid encoding.
//!
//! * `send` encodes into a buffer reused from message to message and writes header and payload
//!   with one system call; when it returns, the message is in the kernel, as in Python.
//! * `recv` reads through a buffer of 64 KiB, so a burst of small messages costs one `read`;
//!   a large payload is read straight into its destination.
//! * Every message is checked against the connection's frame limit
//!   ([`max_frame`](Connection::max_frame), 512 MiB by default) before anything is allocated
//!   for it.
//!
//! # Authentication
//!
//! A [`Listener`] or [`Client`] given an [`authkey`](ListenerBuilder::authkey) runs an
//! HMAC-SHA256 challenge/response in both directions before the connection is handed out (see
//! [`procvisor_actors::wire::auth`]); a wrong key gives an [`AuthError`] on both sides, and
//! nothing the peer sent before authenticating is ever decoded. Without a key there is no
//! handshake (Python 3's rule). For a connection made another way (a [`pipe`], a wrapped
//! socket), [`deliver_challenge`] and [`answer_challenge`] run one direction each, as in
//! Python.
//!
//! # Threads and async
//!
//! All methods take `&self`: one thread may send while another receives. Each operation is
//! atomic with respect to others of the same direction. [`poll_async`](Connection::poll_async),
//! [`recv_async`](Connection::recv_async), [`send_async`](Connection::send_async) and the
//! other `_async` methods serve async callers on any executor, inside or outside a tokio
//! runtime; a deadline is `tokio::time::timeout` around them. Receiving and polling are cancel
//! safe; a send that is cancelled may still be sent whole (see each method's
//! `# Cancel safety`).
//!
//! # Errors
//!
//! Each operation family has its own error type: [`SendError`], [`RecvError`] (receiving and
//! polling), [`WaitError`], [`TryCloneError`], [`ChallengeError`], [`ConnectError`] (listeners
//! and clients), [`AddressError`] and [`PipeError`]; each converts into
//! [`procvisor::Error`](crate::Error).

mod asyncio;
mod fd;
mod listener;
mod wait;

use std::any::type_name;
use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, Instant};

use procvisor_actors::fdpass;
use procvisor_actors::sync_util::lock;
use procvisor_actors::wire::frame::{
    DEFAULT_MAX_FRAME, FrameBatch, FrameLimits, FrameReader, write_frame,
};
use procvisor_actors::wire::{WireError, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use fd::HeldFd;
pub use listener::{
    Address, Client, ClientBuilder, DEFAULT_BACKLOG, DEFAULT_HANDSHAKE_TIMEOUT, Family, Listener,
    ListenerBuilder,
};
pub use wait::{Waitable, wait, wait_timeout};

#[allow(unused_imports)] // the errors not named in code are named in the docs
use crate::error::{
    AddressError, AuthError, ChallengeError, ConnectError, PipeError, RecvError, SendError,
    TryCloneError, WaitError,
};
use fd::{FdCell, Hold, RawIo, deadline_after, poll_readable};

/// Reused send/receive buffers larger than this are freed after use, so one huge message does
/// not pin its memory for the life of the connection.
const KEEP_BUFFER: usize = 1 << 20;

/// `send_bytes` copies a payload up to this size next to its header (one contiguous `send`);
/// a larger one is written in place with a vectored write.
const COPY_SMALL: usize = 64 * 1024;

// ---- directions ---------------------------------------------------------------------------

mod sealed {
    /// What a direction marker says about its ends (not nameable outside the crate).
    pub trait Sealed {
        /// Whether an end of this direction receives.
        const RECEIVES: bool;
        /// Whether an end of this direction sends.
        const SENDS: bool;
    }
}

/// The direction of a [`Connection`]: [`Duplex`] (the default), [`ReceiveOnly`] or
/// [`SendOnly`]. Sealed: those three are all there are.
pub trait Direction: sealed::Sealed + Send + Sync + 'static {}

/// A direction whose ends receive: [`Duplex`] and [`ReceiveOnly`]. The receiving methods
/// (`recv*`, `poll*`) and [`Waitable`] need it.
pub trait CanRecv: Direction {}

/// A direction whose ends send: [`Duplex`] and [`SendOnly`]. The sending methods (`send*`)
/// need it.
pub trait CanSend: Direction {}

/// Both ends send and receive: [`pipe`], [`Listener::accept`], [`Client::connect`].
#[derive(Debug)]
pub enum Duplex {}

/// The end of a one-way pipe that only receives: see [`Receiver`].
#[derive(Debug)]
pub enum ReceiveOnly {}

/// The end of a one-way pipe that only sends: see [`Sender`].
#[derive(Debug)]
pub enum SendOnly {}

impl sealed::Sealed for Duplex {
    const RECEIVES: bool = true;
    const SENDS: bool = true;
}
impl Direction for Duplex {}
impl CanRecv for Duplex {}
impl CanSend for Duplex {}

impl sealed::Sealed for ReceiveOnly {
    const RECEIVES: bool = true;
    const SENDS: bool = false;
}
impl Direction for ReceiveOnly {}
impl CanRecv for ReceiveOnly {}

impl sealed::Sealed for SendOnly {
    const RECEIVES: bool = false;
    const SENDS: bool = true;
}
impl Direction for SendOnly {}
impl CanSend for SendOnly {}

/// The receiving end of a one-way pipe ([`pipe_oneway`]): a [`Connection`] that has the
/// receiving methods (`recv*`, `poll*` and their `_async` twins) and no sending ones.
pub type Receiver = Connection<ReceiveOnly>;

/// The sending end of a one-way pipe ([`pipe_oneway`]): a [`Connection`] that has the sending
/// methods (`send*` and their `_async` twins) and no receiving ones.
pub type Sender = Connection<SendOnly>;

// ---- pipes --------------------------------------------------------------------------------

/// Creates a connected pair of duplex [`Connection`]s (Python's `Pipe()`): both ends send and
/// receive. Underneath it is a Unix stream socket pair.
///
/// ```
/// let (a, b) = procvisor::pipe()?;
/// a.send(&"ping")?;
/// assert_eq!(b.recv::<String>()?, "ping");
/// b.send(&"pong")?;
/// assert_eq!(a.recv::<String>()?, "pong");
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`PipeError`] if the OS refuses to create the socket pair (out of descriptors).
#[doc(alias = "Pipe")]
pub fn pipe() -> Result<(Connection, Connection), PipeError> {
    let (a, b) = UnixStream::pair().map_err(|source| PipeError { source })?;
    Ok((Connection::from(a), Connection::from(b)))
}

/// Creates a one-way pipe (Python's `Pipe(duplex=False)`): the first end only receives, the
/// second only sends. They are distinct types, so using one the wrong way round does not
/// compile (see [the module docs](self#one-way-pipes)).
///
/// ```
/// let (receiver, sender) = procvisor::pipe_oneway()?;
/// sender.send(&"one way")?;
/// assert_eq!(receiver.recv::<String>()?, "one way");
/// assert!(receiver.is_readable() && !receiver.is_writable());
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// A socket pair underneath too, rather than an OS pipe: the kernel copies a large message into
/// a socket and out of it in parallel, whereas a pipe serializes writer and reader on its lock
/// (measured: 1 MiB messages move about 4x faster).
///
/// # Errors
///
/// [`PipeError`] if the OS refuses to create the socket pair (out of descriptors).
#[doc(alias = "Pipe")]
pub fn pipe_oneway() -> Result<(Receiver, Sender), PipeError> {
    let (r, w) = UnixStream::pair().map_err(|source| PipeError { source })?;
    Ok((
        Connection::from_parts(r.into(), true),
        Connection::from_parts(w.into(), true),
    ))
}

// ---- Connection ---------------------------------------------------------------------------

/// One end of a message connection (Python's `Connection`): made by [`pipe`],
/// [`Listener::accept`] or [`Client::connect`], or from a connected [`UnixStream`] /
/// [`TcpStream`](std::net::TcpStream).
///
/// `D` is its [`Direction`]: a plain `Connection` is [`Duplex`]; the ends of a one-way pipe
/// are a [`Receiver`] (`Connection<ReceiveOnly>`) and a [`Sender`] (`Connection<SendOnly>`),
/// each with the methods of its direction only.
///
/// Closed by [`close`](Connection::close) or when dropped. See the [module docs](self) for how
/// messages look on the wire and how a connection travels to a child process.
pub struct Connection<D: Direction = Duplex> {
    inner: Arc<Inner>,
    direction: PhantomData<fn() -> D>,
}

/// The state shared by a `Connection` and the async operations running on its behalf.
pub(crate) struct Inner {
    fd: FdCell<OwnedFd>,
    socket: bool,
    max_frame: AtomicUsize,
    read: Mutex<ReadHalf>,
    write: Mutex<WriteHalf>,
}

struct ReadHalf {
    reader: FrameReader<RawIo>,
    /// Whole messages received on behalf of an async `recv` that was cancelled; handed out
    /// before anything else.
    stash: VecDeque<Vec<u8>>,
    /// Reused payload buffer of `recv`.
    scratch: Vec<u8>,
    /// Set once the stream position is lost: why the connection is no longer readable.
    refused: Option<String>,
}

struct WriteHalf {
    io: RawIo,
    /// The frame being sent, header and payload in one buffer reused from message to message,
    /// so that a message is one `send` system call.
    frame: FrameBatch,
    /// The limits `frame` was made with.
    frame_limits: FrameLimits,
}

impl WriteHalf {
    /// The reused frame buffer, emptied, checking against `limits`.
    fn batch(&mut self, limits: &FrameLimits) -> &mut FrameBatch {
        if self.frame_limits != *limits {
            self.frame = FrameBatch::new(*limits);
            self.frame_limits = *limits;
        }
        self.frame.clear();
        &mut self.frame
    }

    /// Writes the frame buffer (one system call unless the kernel takes only part of it).
    fn flush(&mut self) -> Result<(), SendError> {
        let mut io = self.io;
        let sent = io
            .write_all(self.frame.as_bytes())
            .map_err(|e| write_error(e.into()));
        if self.frame.as_bytes().len() > KEEP_BUFFER {
            // Do not keep a huge message's memory for the life of the connection.
            self.frame = FrameBatch::new(self.frame_limits);
        } else {
            self.frame.clear();
        }
        sent
    }
}

/// Methods of every connection, whatever its direction.
impl<D: Direction> Connection<D> {
    fn from_parts(fd: OwnedFd, socket: bool) -> Self {
        let io = RawIo::new(fd.as_raw_fd(), socket);
        // The reader applies no limit of its own: `Inner::next_len` checks `max_frame`, which
        // can change at any time, after the header is read and before anything is allocated.
        let reader = FrameReader::new(RawIo { spin: true, ..io }, FrameLimits::new(usize::MAX));
        Connection {
            inner: Arc::new(Inner {
                fd: FdCell::new(fd),
                socket,
                max_frame: AtomicUsize::new(DEFAULT_MAX_FRAME),
                read: Mutex::new(ReadHalf {
                    reader,
                    stash: VecDeque::new(),
                    scratch: Vec::new(),
                    refused: None,
                }),
                write: Mutex::new(WriteHalf {
                    io,
                    frame: FrameBatch::new(FrameLimits::default()),
                    frame_limits: FrameLimits::default(),
                }),
            }),
            direction: PhantomData,
        }
    }

    /// A second handle on the same stream, with a duplicated file descriptor (like
    /// [`UnixStream::try_clone`]): typically to give one end to several children in turn
    /// while keeping it here. Both handles read and write the same stream; bytes one of them
    /// has buffered are not seen by the other, so receive on only one of them at a time.
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// let b2 = b.try_clone()?;
    /// b2.send(&7u8)?;
    /// assert_eq!(a.recv::<u8>()?, 7);
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`TryCloneError::Closed`], or [`TryCloneError::Io`] if the process is out of
    /// descriptors.
    pub fn try_clone(&self) -> Result<Self, TryCloneError> {
        let fd = self.inner.fd.guard().ok_or(TryCloneError::Closed)?;
        let dup = fd.try_clone().map_err(TryCloneError::Io)?;
        let clone = Self::from_parts(dup, self.inner.socket);
        clone.set_max_frame(self.max_frame());
        Ok(clone)
    }

    /// The connection's file descriptor (Python's `fileno()`), kept open while the returned
    /// [`HeldFd`] lives; `None` once the connection is closed.
    #[doc(alias = "fileno")]
    pub fn fd(&self) -> Option<HeldFd<'_>> {
        let guard = self.inner.fd.guard()?;
        Some(HeldFd::new(guard.as_raw_fd(), Hold::Connection(guard)))
    }

    /// Closes the connection. Idempotent; also done on drop. Later operations fail with their
    /// `Closed` error ([`SendError::Closed`], [`RecvError::Closed`], …). An operation already
    /// running in another thread finishes first (the descriptor is closed when it ends).
    pub fn close(&self) {
        self.inner.fd.close();
    }

    /// Whether the connection has been closed (Python's `closed`).
    #[doc(alias = "closed")]
    pub fn is_closed(&self) -> bool {
        self.inner.fd.is_closed()
    }

    /// Whether this end may receive (Python's `readable`): false for a [`Sender`], for a
    /// connection that refused a message (its position in the stream is lost), and once
    /// closed.
    #[doc(alias = "readable")]
    pub fn is_readable(&self) -> bool {
        <D as sealed::Sealed>::RECEIVES && !self.is_closed() && !self.inner.refused()
    }

    /// Whether this end may send (Python's `writable`): false for a [`Receiver`], and once
    /// closed.
    #[doc(alias = "writable")]
    pub fn is_writable(&self) -> bool {
        <D as sealed::Sealed>::SENDS && !self.is_closed()
    }

    /// The largest message, in bytes, this connection sends or accepts (512 MiB unless
    /// changed). Checked before anything is written, and on receipt before anything is
    /// allocated.
    pub fn max_frame(&self) -> usize {
        self.inner.max_frame.load(Ordering::Relaxed)
    }

    /// Sets [`max_frame`](Connection::max_frame). Values over `u32::MAX` act as `u32::MAX`, the
    /// most a frame header can express.
    pub fn set_max_frame(&self, max: usize) {
        self.inner.max_frame.store(max, Ordering::Relaxed);
    }
}

/// Sending: duplex connections and [`Sender`]s.
impl<D: CanSend> Connection<D> {
    /// Sends `value` as one message, to be received with [`recv`](Connection::recv).
    ///
    /// When it returns, the whole message has been handed to the kernel. It blocks while the
    /// kernel's buffer is full (the receiver is slow).
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// a.send(&vec![1, 2, 3])?;
    /// assert_eq!(b.recv::<Vec<i32>>()?, [1, 2, 3]);
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SendError::Encode`] if the value cannot be encoded (nothing is sent);
    /// [`SendError::FrameTooLarge`] if its encoding is over [`max_frame`](Connection::max_frame)
    /// (nothing is sent); [`SendError::BrokenPipe`] if the other end is closed;
    /// [`SendError::Closed`]; [`SendError::Wire`] if the OS fails the write.
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        self.inner.with_write(|half, limits| {
            let frame = half.batch(limits);
            frame.push_value(value).map_err(encode_error::<T>)?;
            half.flush()
        })
    }

    /// Sends bytes as one message, without encoding them. Python's
    /// `send_bytes(buffer, offset, size)` is `send_bytes(&buffer[offset..offset + size])`.
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// let buf = b"hello world";
    /// a.send_bytes(&buf[6..])?;
    /// assert_eq!(b.recv_bytes()?, b"world");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send), without [`SendError::Encode`].
    pub fn send_bytes(&self, buf: &[u8]) -> Result<(), SendError> {
        self.inner.with_write(|half, limits| {
            if buf.len() > COPY_SMALL {
                // Header and payload in one vectored write, the payload not copied.
                let mut io = half.io;
                return write_frame(&mut io, buf, limits).map_err(write_error);
            }
            half.batch(limits).push(buf).map_err(write_error)?;
            half.flush()
        })
    }
}

/// Receiving and polling: duplex connections and [`Receiver`]s.
impl<D: CanRecv> Connection<D> {
    /// Receives a message sent with [`send`](Connection::send), decoded as a `T`. Blocks until
    /// one arrives.
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// a.send(&(1u8, "one"))?;
    /// assert_eq!(b.recv::<(u8, String)>()?, (1, "one".to_string()));
    /// drop(a);
    /// assert!(matches!(b.recv::<u8>(), Err(procvisor::error::RecvError::Eof)));
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::Eof`] if the other end has closed and nothing is left;
    /// [`RecvError::Decode`] if the message is not a `T` (the message is consumed, the
    /// connection stays usable); [`RecvError::FrameTooLarge`] if the message is over the frame
    /// limit (the connection is then no longer readable); [`RecvError::Wire`] if the other end
    /// closed in the middle of a message; [`RecvError::NotReadable`], [`RecvError::Closed`].
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        self.inner.with_read(|half, max| {
            if let Some(frame) = half.stash.pop_front() {
                return decode_as(&frame);
            }
            half.next_len(max)?;
            let ReadHalf {
                reader, scratch, ..
            } = half;
            reader.read_frame_into(scratch).map_err(read_error)?;
            let value = decode_as(scratch);
            if scratch.capacity() > KEEP_BUFFER {
                *scratch = Vec::new();
            }
            value
        })
    }

    /// Receives one message as bytes (Python's `recv_bytes()`). Blocks until one arrives.
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// a.send_bytes(b"raw")?;
    /// assert_eq!(b.recv_bytes()?, b"raw");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv), without [`RecvError::Decode`].
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.inner.recv_bytes(None)
    }

    /// Receives one message as bytes, refusing one longer than `max_len` (Python's
    /// `recv_bytes(maxlength)`).
    ///
    /// ```
    /// use procvisor::error::RecvError;
    ///
    /// let (a, b) = procvisor::pipe()?;
    /// a.send_bytes(b"short")?;
    /// assert_eq!(b.recv_bytes_max(5)?, b"short");
    /// a.send_bytes(b"longer")?;
    /// assert!(matches!(
    ///     b.recv_bytes_max(5),
    ///     Err(RecvError::MessageTooLong { len: 6, max_len: 5 })
    /// ));
    /// assert!(!b.is_readable()); // the stream position is lost
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::MessageTooLong`] if the message is longer: it is left unread and the
    /// connection is no longer readable (as in Python). Otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    #[doc(alias = "recv_bytes")]
    pub fn recv_bytes_max(&self, max_len: usize) -> Result<Vec<u8>, RecvError> {
        self.inner.recv_bytes(Some(max_len))
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into(buffer, offset)` is `recv_bytes_into(&mut buffer[offset..])`).
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// a.send_bytes(b"abc")?;
    /// let mut buf = [0u8; 5];
    /// assert_eq!(b.recv_bytes_into(&mut buf[1..])?, 3);
    /// assert_eq!(buf, *b"\0abc\0");
    ///
    /// a.send_bytes(b"too long")?;
    /// let err = b.recv_bytes_into(&mut buf).unwrap_err();
    /// assert_eq!(err.into_message().unwrap(), b"too long");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::BufferTooShort`] if the message does not fit in `buf`: the whole message
    /// is received and carried by the error ([`RecvError::into_message`]), and `buf` is left
    /// untouched; otherwise as [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let room = buf.len();
        self.inner.with_read(|half, max| {
            if let Some(frame) = half.stash.pop_front() {
                if frame.len() > room {
                    return Err(RecvError::BufferTooShort {
                        message: frame,
                        room,
                    });
                }
                buf[..frame.len()].copy_from_slice(&frame);
                return Ok(frame.len());
            }
            let len = half.next_len(max)?;
            if len > room {
                let mut message = Vec::new();
                half.reader
                    .read_frame_into(&mut message)
                    .map_err(read_error)?;
                return Err(RecvError::BufferTooShort { message, room });
            }
            half.reader
                .read_payload_into(&mut buf[..len])
                .map_err(read_error)?;
            Ok(len)
        })
    }

    /// Waits until a message (or the end of the stream) is ready to be received (Python's
    /// `poll(None)`).
    ///
    /// When it returns, a receive will find data: buffered here, or in the kernel. A receive
    /// may still wait for the rest of a message that is only partly there, and at end of
    /// stream it returns [`RecvError::Eof`].
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// a.send(&1u8)?;
    /// b.poll()?;
    /// assert_eq!(b.recv::<u8>()?, 1);
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`RecvError::NotReadable`], [`RecvError::Closed`], [`RecvError::Poll`] if the OS poll
    /// fails.
    pub fn poll(&self) -> Result<(), RecvError> {
        self.inner.poll_until(None).map(|_| ())
    }

    /// Whether a message (or the end of the stream) is ready to be received, without waiting
    /// (Python's `poll()` with no argument, or `poll(0)`).
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// assert!(!b.try_poll()?);
    /// a.send(&1u8)?;
    /// b.poll()?;
    /// assert!(b.try_poll()?, "still there until received");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    #[doc(alias = "poll")]
    pub fn try_poll(&self) -> Result<bool, RecvError> {
        self.inner.poll_until(Some(Instant::now()))
    }

    /// Waits up to `timeout` for a message (or the end of the stream) to be ready (Python's
    /// `poll(timeout)`); `false` if none came in time.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (a, b) = procvisor::pipe()?;
    /// assert!(!b.poll_timeout(Duration::from_millis(10))?);
    /// a.send(&1u8)?;
    /// assert!(b.poll_timeout(Duration::from_secs(10))?);
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    #[doc(alias = "poll")]
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool, RecvError> {
        self.inner.poll_until(deadline_after(timeout))
    }
}

impl Inner {
    fn limits(&self) -> FrameLimits {
        FrameLimits::new(self.max_frame.load(Ordering::Relaxed))
    }

    /// Runs a receive: holds the fd and the read half for its duration.
    fn with_read<R>(
        &self,
        op: impl FnOnce(&mut ReadHalf, usize) -> Result<R, RecvError>,
    ) -> Result<R, RecvError> {
        let _fd = self.fd.guard().ok_or(RecvError::Closed)?;
        let mut half = lock(&self.read);
        if let Some(reason) = &half.refused {
            return Err(RecvError::NotReadable {
                reason: reason.clone(),
            });
        }
        let max = self.limits().effective_max();
        op(&mut half, max)
    }

    /// Runs a send: holds the fd and the write half for its duration.
    fn with_write<R>(
        &self,
        op: impl FnOnce(&mut WriteHalf, &FrameLimits) -> Result<R, SendError>,
    ) -> Result<R, SendError> {
        let _fd = self.fd.guard().ok_or(SendError::Closed)?;
        let mut half = lock(&self.write);
        op(&mut half, &self.limits())
    }

    /// The body of the `poll` family: waits until something can be received or `deadline`
    /// passes (`None`: no deadline).
    fn poll_until(&self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        let fd = self.fd.guard().ok_or(RecvError::Closed)?;
        if self
            .ready_now()
            .map_err(|reason| RecvError::NotReadable { reason })?
        {
            return Ok(true);
        }
        let ready = poll_readable(&[fd.as_fd()], deadline).map_err(RecvError::Poll)?;
        Ok(ready[0])
    }

    /// Whether something can be received without reading the fd: a stashed message or
    /// buffered bytes. Fails, with the reason, if the connection no longer reads. While
    /// another thread is receiving, nothing is known to be ready (the OS is asked instead).
    fn ready_now(&self) -> Result<bool, String> {
        let half = match self.read.try_lock() {
            Ok(half) => half,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(false),
        };
        if let Some(reason) = &half.refused {
            return Err(reason.clone());
        }
        Ok(!half.stash.is_empty() || half.reader.buffered_len() > 0)
    }

    /// Whether reading stopped after a refused message (without waiting for a receive in
    /// another thread: that one would find out).
    fn refused(&self) -> bool {
        match self.read.try_lock() {
            Ok(half) => half.refused.is_some(),
            Err(TryLockError::Poisoned(e)) => e.into_inner().refused.is_some(),
            Err(TryLockError::WouldBlock) => false,
        }
    }

    /// Keeps a message that an async receive read after its caller went away. It goes first:
    /// anything stashed meanwhile was read after it.
    fn stash(&self, frame: Vec<u8>) {
        lock(&self.read).stash.push_front(frame);
    }

    /// The body of `recv_bytes` and `recv_bytes_max`.
    fn recv_bytes(&self, max_len: Option<usize>) -> Result<Vec<u8>, RecvError> {
        self.with_read(|half, max| half.recv_bytes(max, max_len))
    }
}

impl ReadHalf {
    /// Reads the next header and checks the length against `max` before anything is
    /// allocated. An oversized message cannot be skipped safely, so the connection stops
    /// reading.
    fn next_len(&mut self, max: usize) -> Result<usize, RecvError> {
        let len = self.reader.next_frame_len().map_err(read_error)?;
        if len > max {
            self.refused = Some(format!(
                "a message of {len} bytes was refused (the frame limit is {max} bytes)"
            ));
            return Err(RecvError::FrameTooLarge { len, max });
        }
        Ok(len)
    }

    /// Takes one whole message (stashed or read), refusing it if it is over `max_len`.
    fn recv_bytes(&mut self, max: usize, max_len: Option<usize>) -> Result<Vec<u8>, RecvError> {
        if let Some(len) = self.stash.front().map(Vec::len) {
            check_max_len(&mut self.refused, len, max_len)?;
            return Ok(self.stash.pop_front().unwrap_or_default());
        }
        let len = self.next_len(max)?;
        check_max_len(&mut self.refused, len, max_len)?;
        let mut out = Vec::new();
        self.reader.read_frame_into(&mut out).map_err(read_error)?;
        Ok(out)
    }
}

/// `recv_bytes_max`'s rule: a longer message is refused and reading stops.
fn check_max_len(
    refused: &mut Option<String>,
    len: usize,
    max_len: Option<usize>,
) -> Result<(), RecvError> {
    match max_len {
        Some(max_len) if len > max_len => {
            *refused = Some(format!(
                "a message of {len} bytes was refused by recv_bytes_max({max_len})"
            ));
            Err(RecvError::MessageTooLong { len, max_len })
        }
        _ => Ok(()),
    }
}

fn decode_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RecvError> {
    codec::decode(bytes).map_err(|e| match e {
        WireError::Decode(reason) => RecvError::Decode {
            what: type_name::<T>(),
            reason,
        },
        other => RecvError::Wire(other),
    })
}

fn encode_error<T: ?Sized>(e: WireError) -> SendError {
    match e {
        WireError::Encode(reason) => SendError::Encode {
            what: type_name::<T>(),
            reason,
        },
        other => write_error(other),
    }
}

fn read_error(e: WireError) -> RecvError {
    match e {
        WireError::Eof => RecvError::Eof,
        WireError::Oversized { len, max } => RecvError::FrameTooLarge { len, max },
        other => RecvError::Wire(other),
    }
}

fn write_error(e: WireError) -> SendError {
    match e {
        WireError::Oversized { len, max } => SendError::FrameTooLarge { len, max },
        WireError::Io(io) if is_peer_gone(&io) => SendError::BrokenPipe,
        other => SendError::Wire(other),
    }
}

fn is_peer_gone(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

// ---- the handshake on a connection made another way ---------------------------------------

/// Challenges the peer of `conn` to prove it knows `authkey` (Python's
/// `multiprocessing.connection.deliver_challenge`): sends a random challenge, checks the HMAC
/// that comes back and tells the peer the verdict. The peer runs [`answer_challenge`].
///
/// [`Listener`] and [`Client`] run both directions themselves when given a key; these two
/// functions are for connections made another way (a [`pipe`], a wrapped socket). Call them
/// before anything else is received on `conn`. They take a duplex [`Connection`]: the
/// handshake needs both directions.
///
/// ```
/// use procvisor::connection::{answer_challenge, deliver_challenge};
///
/// let (a, b) = procvisor::pipe()?;
/// let peer = std::thread::spawn(move || answer_challenge(&b, b"key"));
/// deliver_challenge(&a, b"key")?;
/// peer.join().unwrap()?;
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`ChallengeError::Auth`] if the digest is wrong (the peer is told), the peer does not speak
/// the handshake or closes the connection during it; [`ChallengeError::NotFirst`] if bytes
/// were already received on `conn` and not handed out; [`ChallengeError::Closed`];
/// [`ChallengeError::Wire`] if the OS fails a read or write.
pub fn deliver_challenge(conn: &Connection, authkey: &[u8]) -> Result<(), ChallengeError> {
    conn.inner.handshake_step(authkey, true)
}

/// Answers the challenge sent by the peer of `conn` with [`deliver_challenge`] (Python's
/// `multiprocessing.connection.answer_challenge`).
///
/// # Errors
///
/// [`ChallengeError::Auth`] if the peer rejects our digest ("digest sent was rejected") or
/// does not speak the handshake; otherwise as [`deliver_challenge`].
pub fn answer_challenge(conn: &Connection, authkey: &[u8]) -> Result<(), ChallengeError> {
    conn.inner.handshake_step(authkey, false)
}

impl Inner {
    /// One direction of the HMAC handshake, on the raw fd (the wire functions read exactly
    /// one frame at a time, so nothing is read past the handshake).
    fn handshake_step(&self, authkey: &[u8], challenger: bool) -> Result<(), ChallengeError> {
        let fd = self.fd.guard().ok_or(ChallengeError::Closed)?;
        let read = lock(&self.read);
        let _write = lock(&self.write);
        if read.reader.buffered_len() > 0 || !read.stash.is_empty() {
            return Err(ChallengeError::NotFirst);
        }
        let mut io = RawIo::new(fd.as_raw_fd(), self.socket);
        let result = if challenger {
            procvisor_actors::wire::deliver_challenge(&mut io, authkey)
        } else {
            procvisor_actors::wire::answer_challenge(&mut io, authkey)
        };
        result.map_err(|e| match e {
            WireError::Authentication(reason) => AuthError { reason }.into(),
            WireError::Eof | WireError::Truncated { .. } => peer_closed_handshake().into(),
            WireError::Io(io) if is_peer_gone(&io) => peer_closed_handshake().into(),
            other => ChallengeError::Wire(other),
        })
    }
}

/// The [`AuthError`] of a peer that hung up during the handshake.
fn peer_closed_handshake() -> AuthError {
    AuthError {
        reason: "the peer closed the connection during the handshake".into(),
    }
}

// ---- traits -------------------------------------------------------------------------------

impl<D: Direction> Drop for Connection<D> {
    fn drop(&mut self) {
        self.inner.fd.close();
    }
}

impl<D: Direction> fmt::Debug for Connection<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Connection");
        match self.inner.fd.guard() {
            Some(fd) => d.field("fd", &fd.as_raw_fd()),
            None => d.field("fd", &"closed"),
        };
        d.field("kind", &if self.inner.socket { "socket" } else { "pipe" })
            .field("readable", &<D as sealed::Sealed>::RECEIVES)
            .field("writable", &<D as sealed::Sealed>::SENDS)
            .finish()
    }
}

impl From<UnixStream> for Connection {
    /// Wraps a connected Unix stream socket (no handshake is done).
    fn from(stream: UnixStream) -> Connection {
        Connection::from_parts(OwnedFd::from(stream), true)
    }
}

impl From<std::net::TcpStream> for Connection {
    /// Wraps a connected TCP stream (no handshake is done). Nagle's algorithm is turned off, so
    /// a small message leaves at once.
    fn from(stream: std::net::TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection::from_parts(OwnedFd::from(stream), true)
    }
}

/// How a `Connection` is encoded in a child's arguments: its fd travels beside the bytes.
#[derive(Serialize, Deserialize)]
struct ConnectionRepr {
    /// Index of the fd in the message's fd collection.
    fd_index: u32,
    socket: bool,
    readable: bool,
    writable: bool,
    max_frame: u64,
}

impl<D: Direction> Serialize for Connection<D> {
    /// Encodes the connection for a child process's arguments (see the
    /// [module docs](self#passing-a-connection-to-a-child)). Fails if the connection is closed,
    /// has bytes buffered that were not received yet, or is encoded outside a child's
    /// arguments.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd = self.inner.fd.guard().ok_or_else(|| {
            S::Error::custom("cannot pass a closed Connection to another process")
        })?;
        {
            let half = lock(&self.inner.read);
            let pending =
                half.reader.buffered_len() + half.stash.iter().map(Vec::len).sum::<usize>();
            if pending > 0 {
                return Err(S::Error::custom(format!(
                    "cannot pass this Connection to another process: it holds {pending} bytes \
                     already read from the OS and not yet received, which would be lost"
                )));
            }
        }
        let index = match fdpass::export_fd(fd.as_fd()) {
            Ok(Some(index)) => index,
            Ok(None) => {
                return Err(S::Error::custom(
                    "a Connection can only be passed to a child process in its arguments \
                     (Process::new); its file descriptor cannot travel in other messages",
                ));
            }
            Err(e) => {
                return Err(S::Error::custom(format!(
                    "cannot pass the Connection's file descriptor: {e}"
                )));
            }
        };
        ConnectionRepr {
            fd_index: index,
            socket: self.inner.socket,
            readable: <D as sealed::Sealed>::RECEIVES,
            writable: <D as sealed::Sealed>::SENDS,
            max_frame: self.max_frame() as u64,
        }
        .serialize(serializer)
    }
}

impl<'de, D: Direction> Deserialize<'de> for Connection<D> {
    /// Decodes a connection passed in a child's arguments, taking its file descriptor from
    /// those that travelled with them. Fails if the connection sent is of another direction
    /// than the one asked for.
    fn deserialize<De: Deserializer<'de>>(deserializer: De) -> Result<Self, De::Error> {
        use serde::de::Error as _;
        let repr = ConnectionRepr::deserialize(deserializer)?;
        let fd = fdpass::import_fd(repr.fd_index).ok_or_else(|| {
            De::Error::custom(
                "no file descriptor travelled with this Connection (a Connection can only be \
                 received in a child process's arguments)",
            )
        })?;
        // The fd is ours now: a refused connection below closes it.
        let conn = Self::from_parts(fd, repr.socket);
        let wanted = (
            <D as sealed::Sealed>::RECEIVES,
            <D as sealed::Sealed>::SENDS,
        );
        if (repr.readable, repr.writable) != wanted {
            return Err(De::Error::custom(format!(
                "a {} connection was sent where a {} one was expected",
                direction_name(repr.readable, repr.writable),
                direction_name(wanted.0, wanted.1)
            )));
        }
        conn.set_max_frame(usize::try_from(repr.max_frame).unwrap_or(usize::MAX));
        Ok(conn)
    }
}

fn direction_name(readable: bool, writable: bool) -> &'static str {
    match (readable, writable) {
        (true, true) => "duplex",
        (true, false) => "receive-only",
        (false, true) => "send-only",
        (false, false) => "closed",
    }
}
