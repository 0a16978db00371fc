//! Errors of connections, listeners and clients: one type per operation family.
//!
//! | operation | error |
//! |---|---|
//! | [`pipe`](crate::pipe), [`pipe_oneway`](crate::pipe_oneway) | [`PipeError`] |
//! | `send`, `send_bytes` (and their `_async` twins) | [`SendError`] |
//! | `recv`, `recv_bytes*`, `poll*` (and their `_async` twins) | [`RecvError`] |
//! | [`wait`](crate::wait), [`wait_timeout`](crate::wait_timeout) | [`WaitError`] |
//! | [`try_clone`](crate::Connection::try_clone) | [`TryCloneError`] |
//! | [`deliver_challenge`](crate::connection::deliver_challenge), [`answer_challenge`](crate::connection::answer_challenge) | [`ChallengeError`] |
//! | binding and accepting ([`Listener`](crate::Listener)), connecting ([`Client`](crate::Client)) | [`ConnectError`] |
//! | parsing or resolving an [`Address`](crate::Address) | [`AddressError`] |
//!
//! A failed authentication handshake is an [`AuthError`], carried by [`ConnectError::Auth`]
//! and [`ChallengeError::Auth`].
//!
//! Using a one-way pipe the wrong way round (sending on its receive end, receiving on its send
//! end) is not an error here: it does not compile (see
//! [`pipe_oneway`](crate::pipe_oneway)).

use std::io;

use procvisor_actors::wire::WireError;

/// The OS refused to create the socket pair of a [`pipe`](crate::pipe) or
/// [`pipe_oneway`](crate::pipe_oneway) (out of descriptors).
#[derive(Debug, thiserror::Error)]
#[error("cannot create a pipe: {source}")]
pub struct PipeError {
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Why a message was not sent ([`Connection::send`](crate::Connection::send),
/// [`send_bytes`](crate::Connection::send_bytes) and their `_async` twins). Nothing of the
/// message was written, except for [`SendError::Wire`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// This end was closed ([`Connection::close`](crate::Connection::close)).
    #[error("cannot send: the connection is closed")]
    Closed,

    /// The other end has closed the connection (Python's `BrokenPipeError`).
    #[error("cannot send: the other end has closed the connection")]
    BrokenPipe,

    /// The message is larger than the connection's frame limit
    /// ([`max_frame`](crate::Connection::max_frame)).
    #[error("message of {len} bytes is larger than the frame limit of {max} bytes")]
    FrameTooLarge {
        /// The message's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// The value could not be encoded (Python's pickling error).
    #[error("cannot encode a message of type {what}: {reason}")]
    Encode {
        /// The type's name.
        what: &'static str,
        /// The codec's explanation.
        reason: String,
    },

    /// The OS failed the write; the stream may hold part of the message and is unusable.
    #[error("connection failed: {0}")]
    Wire(#[source] WireError),
}

/// Why no message was received ([`Connection::recv`](crate::Connection::recv),
/// [`recv_bytes`](crate::Connection::recv_bytes),
/// [`recv_bytes_max`](crate::Connection::recv_bytes_max),
/// [`recv_bytes_into`](crate::Connection::recv_bytes_into), the `poll` family and the
/// `_async` twins).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end closed the connection and no message is left (Python's `EOFError`).
    #[error("the other end closed the connection and no message is left to receive")]
    Eof,

    /// This end was closed ([`Connection::close`](crate::Connection::close)).
    #[error("cannot receive: the connection is closed")]
    Closed,

    /// An earlier message was refused (longer than a `max_len` or the frame limit) and the
    /// position in the stream was lost: the connection can no longer be read.
    #[error("the connection is no longer readable: {reason}")]
    NotReadable {
        /// Why reading stopped.
        reason: String,
    },

    /// [`recv_bytes_max`](crate::Connection::recv_bytes_max) met a longer message. It is not
    /// read and the connection is no longer readable (Python raises `IOError` and does the
    /// same).
    #[error(
        "message of {len} bytes is longer than the maximum of {max_len} bytes; the connection is \
         no longer readable"
    )]
    MessageTooLong {
        /// The message's length.
        len: usize,
        /// The maximum given.
        max_len: usize,
    },

    /// A message larger than the connection's frame limit, refused before any memory was
    /// allocated for it; the connection is no longer readable.
    #[error("message of {len} bytes is larger than the frame limit of {max} bytes")]
    FrameTooLarge {
        /// The message's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// [`recv_bytes_into`](crate::Connection::recv_bytes_into): the buffer is too short. The
    /// whole message was received and is carried here (Python's `BufferTooShort`);
    /// [`into_message`](RecvError::into_message) takes it out.
    #[error(
        "buffer too short: the message is {} bytes, the buffer has room for {room}",
        message.len()
    )]
    BufferTooShort {
        /// The complete message.
        message: Vec<u8>,
        /// How many bytes the buffer had room for.
        room: usize,
    },

    /// The message is not a valid encoding of the type asked for (Python's unpickling error).
    /// It was consumed; the connection stays usable.
    #[error("cannot decode a message as {what}: {reason}")]
    Decode {
        /// The type's name.
        what: &'static str,
        /// The codec's explanation.
        reason: String,
    },

    /// Waiting for the connection to become readable failed (the OS refused the poll, or a
    /// descriptor for the async reactor).
    #[error("cannot poll the connection: {0}")]
    Poll(#[source] io::Error),

    /// The stream broke (the peer closed it in the middle of a message, or the OS failed the
    /// read).
    #[error("connection failed: {0}")]
    Wire(#[source] WireError),
}

impl RecvError {
    /// The complete message carried by [`RecvError::BufferTooShort`] (Python's `e.args[0]`),
    /// or `None` for other errors.
    ///
    /// ```
    /// let (a, b) = procvisor::pipe()?;
    /// a.send_bytes(b"too long")?;
    /// let err = b.recv_bytes_into(&mut [0u8; 3]).unwrap_err();
    /// assert_eq!(err.into_message().unwrap(), b"too long");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    pub fn into_message(self) -> Option<Vec<u8>> {
        match self {
            RecvError::BufferTooShort { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Why [`wait`](crate::wait) or [`wait_timeout`](crate::wait_timeout) could not
/// wait. `index` is the position of the object in the slice given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// A connection in the list was closed.
    #[error("cannot wait: the connection at index {index} is closed")]
    Closed {
        /// Its position in the list.
        index: usize,
    },

    /// A connection in the list can no longer be read (it refused a message earlier, see
    /// [`RecvError::NotReadable`]).
    #[error("cannot wait: the connection at index {index} is no longer readable: {reason}")]
    NotReadable {
        /// Its position in the list.
        index: usize,
        /// Why reading stopped.
        reason: String,
    },

    /// The OS poll failed.
    #[error("cannot wait: {0}")]
    Poll(#[source] io::Error),
}

/// Why [`Connection::try_clone`](crate::Connection::try_clone) made no second handle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryCloneError {
    /// The connection was closed.
    #[error("cannot clone: the connection is closed")]
    Closed,

    /// The OS refused to duplicate the descriptor (out of descriptors).
    #[error("cannot duplicate the connection's descriptor: {0}")]
    Io(#[source] io::Error),
}

/// The authentication handshake failed (Python's `AuthenticationError`): a wrong key on either
/// side, a peer that does not speak the handshake, or one that did not finish it in time. Both
/// sides report it; nothing the peer sent was decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: {reason}")]
#[doc(alias = "AuthenticationError")]
pub struct AuthError {
    /// What went wrong ("digest received was wrong", "digest sent was rejected", …).
    pub reason: String,
}

/// Why [`deliver_challenge`](crate::connection::deliver_challenge) or
/// [`answer_challenge`](crate::connection::answer_challenge) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// The peer failed the handshake (or rejected our answer), or closed the connection during
    /// it.
    #[error(transparent)]
    Auth(#[from] AuthError),

    /// The connection was closed.
    #[error("cannot authenticate: the connection is closed")]
    Closed,

    /// Bytes were already received on the connection and not handed out: the handshake must
    /// be the first thing on it.
    #[error("cannot authenticate: the handshake must come first, but bytes were already received")]
    NotFirst,

    /// The OS failed a read or a write; the stream is unusable.
    #[error("connection failed: {0}")]
    Wire(#[source] WireError),
}

/// An address that cannot be used: unparsable, unresolvable, or of another family than the
/// one asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {address:?}: {reason}")]
pub struct AddressError {
    /// The address as given.
    pub address: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a listener could not be bound or accept, or a client could not connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address cannot be used.
    #[error(transparent)]
    Address(#[from] AddressError),

    /// The peer failed the authentication handshake (or we did).
    #[error(transparent)]
    Auth(#[from] AuthError),

    /// The listener was closed.
    #[error("the listener is closed")]
    Closed,

    /// The OS refused (address in use, no permission, connection refused, …).
    #[error("{context}: {source}")]
    Io {
        /// What procvisor was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl ConnectError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ConnectError::Io {
            context: context.into(),
            source,
        }
    }
}
