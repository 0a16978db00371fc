//! Errors of connections, listeners and clients: one type per operation family.

use std::io;

use procvisor_actors::wire::WireError;

/// Which end of a one-way pipe a connection is (see [`pipe_oneway`](crate::pipe_oneway)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeEnd {
    /// The end that can only receive.
    ReceiveOnly,
    /// The end that can only send.
    SendOnly,
}

impl std::fmt::Display for PipeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PipeEnd::ReceiveOnly => "receive-only",
            PipeEnd::SendOnly => "send-only",
        })
    }
}

/// Why a message was not sent ([`Connection::send`](crate::Connection::send),
/// [`send_bytes`](crate::Connection::send_bytes)). Nothing of the message was written, except
/// for [`SendError::Wire`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// This end was closed ([`Connection::close`](crate::Connection::close)).
    #[error("cannot send: the connection is closed")]
    Closed,

    /// The other end has closed the connection (Python's `BrokenPipeError`).
    #[error("cannot send: the other end has closed the connection")]
    BrokenPipe,

    /// Sending on the receive-only end of a one-way pipe.
    #[error("cannot send: this is the {0} end of a one-way pipe")]
    WrongEnd(PipeEnd),

    /// The message is larger than the connection's frame limit.
    #[error("message of {len} bytes is larger than the frame limit of {max} bytes")]
    FrameTooLarge {
        /// The message's length.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// The value could not be encoded (Python's pickling error).
    #[error("cannot encode {what}: {reason}")]
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
/// [`recv_bytes`](crate::Connection::recv_bytes), [`poll`](crate::Connection::poll), …).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The other end closed the connection and no message is left (Python's `EOFError`).
    #[error("the other end closed the connection and no message is left to receive")]
    Eof,

    /// This end was closed ([`Connection::close`](crate::Connection::close)).
    #[error("cannot receive: the connection is closed")]
    Closed,

    /// Receiving on the send-only end of a one-way pipe.
    #[error("cannot receive: this is the {0} end of a one-way pipe")]
    WrongEnd(PipeEnd),

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

    /// The stream broke (the peer closed it in the middle of a message, or the OS failed the
    /// read).
    #[error("connection failed: {0}")]
    Wire(#[source] WireError),
}

impl RecvError {
    /// The complete message carried by [`RecvError::BufferTooShort`] (Python's `e.args[0]`),
    /// or `None` for other errors.
    pub fn into_message(self) -> Option<Vec<u8>> {
        match self {
            RecvError::BufferTooShort { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// The authentication handshake failed (Python's `AuthenticationError`): a wrong key on either
/// side, a peer that does not speak the handshake, or one that did not finish it in time. Both
/// sides report it; nothing the peer sent was decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: {reason}")]
pub struct AuthError {
    /// What went wrong.
    pub reason: String,
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
