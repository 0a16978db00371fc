//! Pipes and connections: messages between processes (Python's `Pipe`, `Connection` and
//! `multiprocessing.connection`).
//!
//! A [`Connection`] carries whole messages in both directions over a byte stream (a Unix
//! socket, a pipe, a TCP connection). [`send`](Connection::send) takes any serde value and
//! [`recv`](Connection::recv) gives it back on the other side; [`send_bytes`](Connection::send_bytes)
//! and [`recv_bytes`](Connection::recv_bytes) move raw bytes without encoding. [`pipe`] makes a
//! connected pair; [`Listener`] and [`Client`] connect processes that did not start one another,
//! with [HMAC authentication](crate::connection#authentication).
//!
//! ```
//! let (a, b) = procvisor::pipe(true)?;
//! a.send(&(1, "hello", None::<i32>))?;
//! assert_eq!(b.recv::<(i32, String, Option<i32>)>()?, (1, "hello".to_string(), None));
//!
//! b.send_bytes(b"thank you", 0, None)?;
//! assert_eq!(a.recv_bytes(None)?, b"thank you");
//!
//! let arr1: Vec<u8> = (0..5i32).flat_map(i32::to_ne_bytes).collect();
//! let mut arr2 = [0u8; 40];
//! a.send_bytes(&arr1, 0, None)?;
//! let count = b.recv_bytes_into(&mut arr2, 0)?;
//! assert_eq!(count, 5 * 4);
//! # Ok::<(), procvisor::Error>(())
//! ```
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
//!     let (parent_end, child_end) = procvisor::pipe(true)?;
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
//! A [`Listener`] or [`Client`] given an authkey runs an HMAC-SHA256 challenge/response in both
//! directions before the connection is handed out (see [`procvisor_actors::wire::auth`]); a
//! wrong key gives [`Error::Authentication`] on both sides, and
//! nothing the peer sent before authenticating is ever decoded. For a connection made another
//! way (a [`pipe`], a wrapped socket), [`deliver_challenge`] and [`answer_challenge`] run one
//! direction each, as in Python.
//!
//! # Threads and async
//!
//! All methods take `&self`: one thread may send while another receives. Each operation is
//! atomic with respect to others of the same direction. [`poll_async`](Connection::poll_async),
//! [`recv_async`](Connection::recv_async) and [`send_async`](Connection::send_async) serve
//! async callers on any executor, inside or outside a tokio runtime.

mod asyncio;
mod fd;
mod listener;
mod wait;

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::Duration;

use procvisor_actors::fdpass;
use procvisor_actors::sync_util::lock;
use procvisor_actors::wire::frame::{
    DEFAULT_MAX_FRAME, FrameBatch, FrameLimits, FrameReader, write_frame,
};
use procvisor_actors::wire::{WireError, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use listener::{
    Address, Client, ClientBuilder, DEFAULT_BACKLOG, DEFAULT_HANDSHAKE_TIMEOUT, Family, Listener,
    ListenerBuilder,
};
pub use wait::{Waitable, wait};

use crate::error::{Error, Result};
use fd::{FdCell, RawIo, deadline_after, poll_readable};

/// Reused send/receive buffers larger than this are freed after use, so one huge message does
/// not pin its memory for the life of the connection.
const KEEP_BUFFER: usize = 1 << 20;

/// `send_bytes` copies a payload up to this size next to its header (one contiguous `send`);
/// a larger one is written in place with a vectored write.
const COPY_SMALL: usize = 64 * 1024;

/// Creates a connected pair of [`Connection`]s (Python's `Pipe(duplex)`).
///
/// With `duplex = true` both ends send and receive. With `duplex = false` the first end only
/// receives and the second only sends; using an end the wrong way is an [`Error::WrongEnd`].
/// Both are a Unix stream socket pair underneath.
///
/// ```
/// let (receiver, sender) = procvisor::pipe(false)?;
/// sender.send(&"one way")?;
/// assert_eq!(receiver.recv::<String>()?, "one way");
/// assert!(matches!(receiver.send(&1), Err(procvisor::Error::WrongEnd { .. })));
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Io`] if the OS refuses to create the socket pair (out of descriptors).
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    if duplex {
        let (a, b) = UnixStream::pair().map_err(|e| Error::io("cannot create a socket pair", e))?;
        Ok((Connection::from(a), Connection::from(b)))
    } else {
        // A socket pair rather than an OS pipe: the kernel copies a large message into a
        // socket and out of it in parallel, whereas a pipe serializes writer and reader on its
        // lock (measured: 1 MiB messages move about 4x faster).
        let (r, w) = UnixStream::pair().map_err(|e| Error::io("cannot create a socket pair", e))?;
        Ok((
            Connection::from_parts(r.into(), true, true, false),
            Connection::from_parts(w.into(), true, false, true),
        ))
    }
}

/// One end of a message connection (Python's `Connection`): made by [`pipe`],
/// [`Listener::accept`] or [`Client::connect`], or from a connected [`UnixStream`] /
/// [`TcpStream`](std::net::TcpStream).
///
/// Closed by [`close`](Connection::close) or when dropped. See the [module docs](self) for how
/// messages look on the wire and how a connection travels to a child process.
pub struct Connection {
    inner: Arc<Inner>,
}

/// The state shared by a `Connection` and the async operations running on its behalf.
pub(crate) struct Inner {
    fd: FdCell<OwnedFd>,
    socket: bool,
    readable: bool,
    writable: bool,
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
    fn flush(&mut self) -> Result<()> {
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

impl Connection {
    fn from_parts(fd: OwnedFd, socket: bool, readable: bool, writable: bool) -> Connection {
        let io = RawIo::new(fd.as_raw_fd(), socket);
        // The reader applies no limit of its own: `Inner::next_len` checks `max_frame`, which
        // can change at any time, after the header is read and before anything is allocated.
        let reader = FrameReader::new(RawIo { spin: true, ..io }, FrameLimits::new(usize::MAX));
        Connection {
            inner: Arc::new(Inner {
                fd: FdCell::new(fd, "connection"),
                socket,
                readable,
                writable,
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
        }
    }

    /// Sends `value` as one message, to be received with [`recv`](Connection::recv).
    ///
    /// When it returns, the whole message has been handed to the kernel. It blocks while the
    /// kernel's buffer is full (the receiver is slow).
    ///
    /// # Errors
    ///
    /// [`Error::Encode`] if the value cannot be encoded (nothing is sent);
    /// [`Error::FrameTooLarge`] if its encoding is over [`max_frame`](Connection::max_frame)
    /// (nothing is sent); [`Error::BrokenPipe`] if the other end is closed;
    /// [`Error::WrongEnd`] on the receive-only end of a one-way pipe; [`Error::Closed`].
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.inner.with_write("send", |half, limits| {
            let frame = half.batch(limits);
            frame.push_value(value).map_err(|e| match e {
                WireError::Encode(reason) => Error::Encode {
                    what: "a message".into(),
                    reason,
                },
                other => write_error(other),
            })?;
            half.flush()
        })
    }

    /// Receives a message sent with [`send`](Connection::send), decoded as a `T`. Blocks until
    /// one arrives.
    ///
    /// # Errors
    ///
    /// [`Error::Eof`] if the other end has closed and nothing is left; [`Error::Decode`] if the
    /// message is not a `T` (the message is consumed, the connection stays usable);
    /// [`Error::FrameTooLarge`] if the message is over the frame limit (the connection is then
    /// no longer readable); [`Error::Wire`] if the other end closed in the middle of a message;
    /// [`Error::WrongEnd`], [`Error::NotReadable`], [`Error::Closed`].
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        self.inner.with_read("receive", |half, max| {
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

    /// Sends bytes as one message, without encoding them (Python's
    /// `send_bytes(buffer, offset, size)`): `buf[offset..]`, or `buf[offset..offset + size]`
    /// when `size` is given.
    ///
    /// ```
    /// let (a, b) = procvisor::pipe(true)?;
    /// a.send_bytes(b"hello world", 6, Some(5))?;
    /// assert_eq!(b.recv_bytes(None)?, b"world");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BadOffset`] / [`Error::BadSize`] for a range past the end of `buf`; otherwise
    /// as [`send`](Connection::send).
    pub fn send_bytes(&self, buf: &[u8], offset: usize, size: Option<usize>) -> Result<()> {
        let range = byte_range(buf.len(), offset, size)?;
        self.inner.with_write("send", |half, limits| {
            let payload = &buf[range];
            if payload.len() > COPY_SMALL {
                // Header and payload in one vectored write, the payload not copied.
                let mut io = half.io;
                return write_frame(&mut io, payload, limits).map_err(write_error);
            }
            half.batch(limits).push(payload).map_err(write_error)?;
            half.flush()
        })
    }

    /// Receives one message as bytes (Python's `recv_bytes(maxlength)`).
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLong`] if `maxlength` is given and the message is longer: the message
    /// is left unread and the connection is no longer readable (as in Python). Otherwise as
    /// [`recv`](Connection::recv), without [`Error::Decode`].
    pub fn recv_bytes(&self, maxlength: Option<usize>) -> Result<Vec<u8>> {
        self.inner.recv_bytes(maxlength)
    }

    /// Receives one message into `buf` starting at `offset` and returns its length (Python's
    /// `recv_bytes_into(buffer, offset)`).
    ///
    /// ```
    /// let (a, b) = procvisor::pipe(true)?;
    /// a.send_bytes(b"abc", 0, None)?;
    /// let mut buf = [0u8; 5];
    /// assert_eq!(b.recv_bytes_into(&mut buf, 1)?, 3);
    /// assert_eq!(buf, *b"\0abc\0");
    ///
    /// a.send_bytes(b"too long", 0, None)?;
    /// let err = b.recv_bytes_into(&mut buf, 0).unwrap_err();
    /// assert_eq!(err.into_message().unwrap(), b"too long");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::BufferTooShort`] if the message does not fit in `buf[offset..]`: the whole
    /// message is received and carried by the error ([`Error::into_message`]);
    /// [`Error::BadOffset`] if `offset > buf.len()` (nothing is received); otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&self, buf: &mut [u8], offset: usize) -> Result<usize> {
        if offset > buf.len() {
            return Err(Error::BadOffset {
                offset,
                len: buf.len(),
            });
        }
        let room = buf.len() - offset;
        self.inner.with_read("receive", |half, max| {
            if let Some(frame) = half.stash.pop_front() {
                if frame.len() > room {
                    return Err(Error::BufferTooShort {
                        message: frame,
                        room,
                    });
                }
                buf[offset..offset + frame.len()].copy_from_slice(&frame);
                return Ok(frame.len());
            }
            let len = half.next_len(max)?;
            if len > room {
                let mut message = Vec::new();
                half.reader
                    .read_frame_into(&mut message)
                    .map_err(read_error)?;
                return Err(Error::BufferTooShort { message, room });
            }
            half.reader
                .read_payload_into(&mut buf[offset..offset + len])
                .map_err(read_error)?;
            Ok(len)
        })
    }

    /// Whether a message (or the end of the stream) is ready to be received (Python's
    /// `poll(timeout)`): waits up to `timeout`, forever for `None`; `Some(Duration::ZERO)`
    /// answers at once.
    ///
    /// `true` means a receive will find data: buffered here, or in the kernel. A receive may
    /// still wait for the rest of a message that is only partly there, and at end of stream it
    /// returns [`Error::Eof`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = procvisor::pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send(&1u8)?;
    /// assert!(b.poll(None)?);
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::WrongEnd`] on the send-only end of a one-way pipe, [`Error::NotReadable`],
    /// [`Error::Closed`], [`Error::Io`] if the OS poll fails.
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = deadline_after(timeout);
        self.inner.check_end("poll", true)?;
        let fd = self.inner.fd.guard()?;
        if self.inner.ready_now()? {
            return Ok(true);
        }
        let ready = poll_readable(&[fd.as_fd()], deadline)
            .map_err(|e| Error::io("cannot poll the connection", e))?;
        Ok(ready[0])
    }

    /// A second handle on the same stream, with a duplicated file descriptor (like
    /// [`UnixStream::try_clone`]): typically to give one end to several children in turn
    /// while keeping it here. Both handles read and write the same stream; bytes one of them
    /// has buffered are not seen by the other, so receive on only one of them at a time.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`], or [`Error::Io`] if the process is out of descriptors.
    pub fn try_clone(&self) -> Result<Connection> {
        let fd = self.inner.fd.guard()?;
        let dup = fd
            .try_clone()
            .map_err(|e| Error::io("cannot duplicate the connection's descriptor", e))?;
        let clone = Connection::from_parts(
            dup,
            self.inner.socket,
            self.inner.readable,
            self.inner.writable,
        );
        clone.set_max_frame(self.max_frame());
        Ok(clone)
    }

    /// The connection's file descriptor (Python's `fileno()`), owned by the connection.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    pub fn fileno(&self) -> Result<RawFd> {
        Ok(self.inner.fd.guard()?.as_raw_fd())
    }

    /// Closes the connection. Idempotent; also done on drop. Later operations fail with
    /// [`Error::Closed`]. An operation already running in another thread finishes first (the
    /// descriptor is closed when it ends).
    pub fn close(&self) {
        self.inner.fd.close();
    }

    /// Whether the connection has been closed.
    pub fn closed(&self) -> bool {
        self.inner.fd.is_closed()
    }

    /// Whether this end may receive (false for the send-only end of a one-way pipe, for a
    /// connection that refused a message, and once closed).
    pub fn readable(&self) -> bool {
        self.inner.readable && !self.closed() && !self.inner.refused()
    }

    /// Whether this end may send (false for the receive-only end of a one-way pipe, and once
    /// closed).
    pub fn writable(&self) -> bool {
        self.inner.writable && !self.closed()
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

impl Inner {
    fn limits(&self) -> FrameLimits {
        FrameLimits::new(self.max_frame.load(Ordering::Relaxed))
    }

    fn check_end(&self, operation: &'static str, reading: bool) -> Result<()> {
        match (reading, self.readable, self.writable) {
            (true, false, _) => Err(Error::WrongEnd {
                operation,
                end: "send-only",
            }),
            (false, _, false) => Err(Error::WrongEnd {
                operation,
                end: "receive-only",
            }),
            _ => Ok(()),
        }
    }

    /// Runs a receive: checks the end, holds the fd and the read half for its duration.
    fn with_read<R>(
        &self,
        operation: &'static str,
        op: impl FnOnce(&mut ReadHalf, usize) -> Result<R>,
    ) -> Result<R> {
        self.check_end(operation, true)?;
        let _fd = self.fd.guard()?;
        let mut half = lock(&self.read);
        if let Some(reason) = &half.refused {
            return Err(Error::NotReadable {
                reason: reason.clone(),
            });
        }
        let max = self.limits().effective_max();
        op(&mut half, max)
    }

    /// Runs a send: checks the end, holds the fd and the write half for its duration.
    fn with_write<R>(
        &self,
        operation: &'static str,
        op: impl FnOnce(&mut WriteHalf, &FrameLimits) -> Result<R>,
    ) -> Result<R> {
        self.check_end(operation, false)?;
        let _fd = self.fd.guard()?;
        let mut half = lock(&self.write);
        op(&mut half, &self.limits())
    }

    /// Whether something can be received without reading the fd: a stashed message or
    /// buffered bytes. Fails if the connection no longer reads. While another thread is
    /// receiving, nothing is known to be ready (the OS is asked instead).
    fn ready_now(&self) -> Result<bool> {
        let half = match self.read.try_lock() {
            Ok(half) => half,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(false),
        };
        if let Some(reason) = &half.refused {
            return Err(Error::NotReadable {
                reason: reason.clone(),
            });
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
}

impl ReadHalf {
    /// Reads the next header and checks the length against `max` before anything is
    /// allocated. An oversized message cannot be skipped safely, so the connection stops
    /// reading.
    fn next_len(&mut self, max: usize) -> Result<usize> {
        let len = self.reader.next_frame_len().map_err(read_error)?;
        if len > max {
            self.refused = Some(format!(
                "a message of {len} bytes was refused (the frame limit is {max} bytes)"
            ));
            return Err(Error::FrameTooLarge { len, max });
        }
        Ok(len)
    }
}

/// `recv_bytes`'s maxlength rule: a longer message is refused and reading stops.
fn check_maxlength(
    refused: &mut Option<String>,
    len: usize,
    maxlength: Option<usize>,
) -> Result<()> {
    match maxlength {
        Some(maxlength) if len > maxlength => {
            *refused = Some(format!(
                "a message of {len} bytes was refused by recv_bytes(maxlength = {maxlength})"
            ));
            Err(Error::MessageTooLong { len, maxlength })
        }
        _ => Ok(()),
    }
}

/// Python's `send_bytes` range checks.
fn byte_range(len: usize, offset: usize, size: Option<usize>) -> Result<std::ops::Range<usize>> {
    if offset > len {
        return Err(Error::BadOffset { offset, len });
    }
    match size {
        None => Ok(offset..len),
        Some(size) => match offset.checked_add(size) {
            Some(end) if end <= len => Ok(offset..end),
            _ => Err(Error::BadSize { offset, size, len }),
        },
    }
}

fn decode_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    codec::decode(bytes).map_err(|e| match e {
        WireError::Decode(reason) => Error::Decode {
            what: format!("a message as {}", std::any::type_name::<T>()),
            reason,
        },
        other => Error::Wire(other),
    })
}

fn encode_error(e: WireError, what: &str) -> Error {
    match e {
        WireError::Encode(reason) => Error::Encode {
            what: what.to_string(),
            reason,
        },
        other => Error::Wire(other),
    }
}

fn read_error(e: WireError) -> Error {
    match e {
        WireError::Eof => Error::Eof,
        WireError::Oversized { len, max } => Error::FrameTooLarge { len, max },
        other => Error::Wire(other),
    }
}

fn write_error(e: WireError) -> Error {
    match e {
        WireError::Oversized { len, max } => Error::FrameTooLarge { len, max },
        WireError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Error::BrokenPipe
        }
        other => Error::Wire(other),
    }
}

/// Challenges the peer of `conn` to prove it knows `authkey` (Python's
/// `multiprocessing.connection.deliver_challenge`): sends a random challenge, checks the HMAC
/// that comes back and tells the peer the verdict. The peer runs [`answer_challenge`].
///
/// [`Listener`] and [`Client`] run both directions themselves when given a key; these two
/// functions are for connections made another way (a [`pipe`], a wrapped socket). Call them
/// before anything else is received on `conn`.
///
/// ```
/// use procvisor::connection::{answer_challenge, deliver_challenge};
///
/// let (a, b) = procvisor::pipe(true)?;
/// let peer = std::thread::spawn(move || answer_challenge(&b, b"key"));
/// deliver_challenge(&a, b"key")?;
/// peer.join().unwrap()?;
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Authentication`] if the digest is wrong (the peer is told) or the peer does not
/// speak the handshake; [`Error::NotReadable`] if bytes were already received on `conn` and not
/// handed out; [`Error::WrongEnd`] on one end of a one-way pipe (the handshake needs both
/// directions); [`Error::Closed`].
pub fn deliver_challenge(conn: &Connection, authkey: &[u8]) -> Result<()> {
    conn.inner.handshake_step(authkey, true)
}

/// Answers the challenge sent by the peer of `conn` with [`deliver_challenge`] (Python's
/// `multiprocessing.connection.answer_challenge`).
///
/// # Errors
///
/// [`Error::Authentication`] if the peer rejects our digest ("digest sent was rejected") or
/// does not speak the handshake; otherwise as [`deliver_challenge`].
pub fn answer_challenge(conn: &Connection, authkey: &[u8]) -> Result<()> {
    conn.inner.handshake_step(authkey, false)
}

impl Inner {
    /// One direction of the HMAC handshake, on the raw fd (the wire functions read exactly
    /// one frame at a time, so nothing is read past the handshake).
    fn handshake_step(&self, authkey: &[u8], challenger: bool) -> Result<()> {
        self.check_end("authenticate", true)?;
        self.check_end("authenticate", false)?;
        let fd = self.fd.guard()?;
        let read = lock(&self.read);
        let _write = lock(&self.write);
        if read.reader.buffered_len() > 0 || !read.stash.is_empty() {
            return Err(Error::NotReadable {
                reason: "the handshake must come first, but bytes were already received".into(),
            });
        }
        let mut io = RawIo::new(fd.as_raw_fd(), self.socket);
        let result = if challenger {
            procvisor_actors::wire::deliver_challenge(&mut io, authkey)
        } else {
            procvisor_actors::wire::answer_challenge(&mut io, authkey)
        };
        result.map_err(|e| match e {
            WireError::Authentication(reason) => Error::Authentication(reason),
            WireError::Eof | WireError::Truncated { .. } => {
                Error::Authentication("the peer closed the connection during the handshake".into())
            }
            other => write_error(other),
        })
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.inner.fd.close();
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Connection");
        match self.inner.fd.guard() {
            Ok(fd) => d.field("fd", &fd.as_raw_fd()),
            Err(_) => d.field("fd", &"closed"),
        };
        d.field("kind", &if self.inner.socket { "socket" } else { "pipe" })
            .field("readable", &self.inner.readable)
            .field("writable", &self.inner.writable)
            .finish()
    }
}

impl From<UnixStream> for Connection {
    /// Wraps a connected Unix stream socket (no handshake is done).
    fn from(stream: UnixStream) -> Connection {
        Connection::from_parts(OwnedFd::from(stream), true, true, true)
    }
}

impl From<std::net::TcpStream> for Connection {
    /// Wraps a connected TCP stream (no handshake is done). Nagle's algorithm is turned off, so
    /// a small message leaves at once.
    fn from(stream: std::net::TcpStream) -> Connection {
        let _ = stream.set_nodelay(true);
        Connection::from_parts(OwnedFd::from(stream), true, true, true)
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

impl Serialize for Connection {
    /// Encodes the connection for a child process's arguments (see the
    /// [module docs](self#passing-a-connection-to-a-child)). Fails if the connection is closed,
    /// has bytes buffered that were not received yet, or is encoded outside a child's
    /// arguments.
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd =
            self.inner.fd.guard().map_err(|_| {
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
            readable: self.inner.readable,
            writable: self.inner.writable,
            max_frame: self.max_frame() as u64,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    /// Decodes a connection passed in a child's arguments, taking its file descriptor from
    /// those that travelled with them.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let repr = ConnectionRepr::deserialize(deserializer)?;
        let fd = fdpass::import_fd(repr.fd_index).ok_or_else(|| {
            D::Error::custom(
                "no file descriptor travelled with this Connection (a Connection can only be \
                 received in a child process's arguments)",
            )
        })?;
        let conn = Connection::from_parts(fd, repr.socket, repr.readable, repr.writable);
        conn.set_max_frame(usize::try_from(repr.max_frame).unwrap_or(usize::MAX));
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_follow_python() {
        assert_eq!(byte_range(5, 0, None).unwrap(), 0..5);
        assert_eq!(byte_range(5, 5, None).unwrap(), 5..5);
        assert_eq!(byte_range(5, 1, Some(3)).unwrap(), 1..4);
        assert!(matches!(
            byte_range(5, 6, None),
            Err(Error::BadOffset { offset: 6, len: 5 })
        ));
        assert!(matches!(
            byte_range(5, 3, Some(3)),
            Err(Error::BadSize { .. })
        ));
        assert!(matches!(
            byte_range(5, 1, Some(usize::MAX)),
            Err(Error::BadSize { .. })
        ));
    }
}
