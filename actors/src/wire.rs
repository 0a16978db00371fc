//! The wire layer: how procvisor processes talk to each other over a byte
//! stream (a Unix socket, a pipe, a TCP connection).
//!
//! Three small pieces, each usable on its own:
//!
//! * [`codec`] turns a serde value into bytes and back. It is the only place
//!   in the project that calls `bincode`, so the encoding is chosen once.
//! * [`frame`] cuts a byte stream into messages ("frames") with a length
//!   prefix, with blocking and tokio flavours.
//! * [`auth`] proves that both ends know the same secret key before anything
//!   else is read, in the style of Python's `multiprocessing.connection`.
//!
//! # A frame, byte by byte
//!
//! A frame is a 4-byte **big-endian unsigned** length `N`, then exactly `N`
//! payload bytes. Nothing else: no magic, no version, no checksum.
//!
//! The value `String::from("hi")` encoded with [`codec::encode`] and written
//! with [`frame::write_frame`] is these 7 bytes:
//!
//! ```text
//! 00 00 00 03   header: the payload is 3 bytes long (big-endian u32)
//! 02            payload: bincode varint string length 2
//! 68 69         payload: the UTF-8 bytes "h" "i"
//! ```
//!
//! ```
//! use procvisor_actors::wire::{codec, frame::{write_frame, FrameLimits}};
//!
//! let payload = codec::encode(&String::from("hi")).unwrap();
//! let mut wire = Vec::new();
//! write_frame(&mut wire, &payload, &FrameLimits::default()).unwrap();
//! assert_eq!(wire, [0x00, 0x00, 0x00, 0x03, 0x02, 0x68, 0x69]);
//! ```
//!
//! Why this layout:
//!
//! * **A length prefix** (not a delimiter) lets the reader know how much
//!   memory a message needs before reading it, check it against a limit
//!   ([`frame::FrameLimits`]) and read a large payload straight into its final
//!   buffer with no scanning and no second copy.
//! * **4 bytes, big-endian** is the network byte order and the same header
//!   shape as Python's `Connection.send_bytes` for messages under 2 GiB, so a
//!   frame is easy to read in a hex dump. 4 GiB is far above the default limit
//!   of 512 MiB ([`frame::DEFAULT_MAX_FRAME`]); bigger data belongs in shared
//!   memory, not in a message.
//! * **Unsigned**: a length can never be negative, so there is no sign to
//!   check.
//! * **bincode, standard configuration (little-endian, variable-length
//!   integers)**: compact (small numbers and lengths take one byte), fast,
//!   and driven by serde, so every message type just derives `Serialize` and
//!   `Deserialize`. Both ends are the same program, so a self-describing
//!   format would only cost space. The payload is decoded with an allocation
//!   budget proportional to its length and must be consumed exactly (no
//!   trailing bytes), see [`codec::decode`].
//!
//! # The handshake, byte by byte
//!
//! Before any message is exchanged, each side proves it knows the shared
//! `authkey` without sending it. One direction ("deliver a challenge", by the
//! *challenger*, answered by the *answerer*) is three frames:
//!
//! ```text
//! challenger -> answerer   00 00 00 33                       header: 51 bytes
//!                          23 43 48 41 4c 4c 45 4e 47 45 23  "#CHALLENGE#"
//!                          <40 random bytes>                 the nonce
//! answerer -> challenger   00 00 00 20                       header: 32 bytes
//!                          <HMAC-SHA256(authkey, nonce)>     32 bytes
//! challenger -> answerer   00 00 00 09                       header: 9 bytes
//!                          23 57 45 4c 43 4f 4d 45 23        "#WELCOME#"
//!                     or   23 46 41 49 4c 55 52 45 23        "#FAILURE#"
//! ```
//!
//! [`auth::server_handshake`] delivers a challenge and then answers one;
//! [`auth::client_handshake`] does the opposite, so a full handshake is six
//! frames and both sides end up knowing that the other holds the key.
//!
//! Why this design:
//!
//! * **HMAC challenge/response** never puts the key on the wire, and a fresh
//!   random nonce per connection means a recorded answer cannot be replayed.
//! * **Both directions**: the client must not talk to an impostor server any
//!   more than the server should serve an impostor client.
//! * **SHA-256, 40-byte nonce, `#CHALLENGE#`/`#WELCOME#`/`#FAILURE#`** follow
//!   Python's `multiprocessing.connection`, so the exchange is familiar.
//! * **Constant-time check** of the digest (via the `hmac` crate) so timing
//!   reveals nothing about the expected digest.
//! * **Tiny limits before authentication**: handshake frames are read with a
//!   limit of [`auth::HANDSHAKE_MAX_FRAME`] (256) bytes and only these fixed
//!   messages are ever looked at, so an unauthenticated peer can neither make
//!   us allocate nor reach the decoder.
//! * **Unbuffered reads**: the handshake reads exactly one frame at a time and
//!   never past its end, so the stream can be wrapped in a buffered
//!   [`frame::FrameReader`] afterwards without losing bytes.

#![warn(missing_docs)]

pub mod auth;
pub mod codec;
pub mod frame;

pub use auth::{
    answer_challenge, answer_challenge_async, client_handshake, client_handshake_async,
    deliver_challenge, deliver_challenge_async, server_handshake, server_handshake_async,
};
pub use codec::{decode, encode, encode_into};
pub use frame::{
    DEFAULT_MAX_FRAME, FrameBatch, FrameLimits, FrameReader, encode_frame_into, read_frame_async,
    read_frame_unbuffered, write_frame, write_frame_async,
};

/// Everything that can go wrong on the wire.
///
/// The variants separate the cases a caller handles differently: a clean
/// close ([`Eof`](WireError::Eof)) is normal shutdown, a close in the middle
/// of a frame ([`Truncated`](WireError::Truncated)) means the peer died, an
/// [`Oversized`](WireError::Oversized) frame or a failed
/// [`Authentication`](WireError::Authentication) means the peer is broken or
/// hostile. After any error but `Encode`, the stream should be closed: its
/// position inside the frame sequence is no longer known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer closed the connection cleanly, between two frames.
    #[error("connection closed by the peer")]
    Eof,

    /// The peer closed the connection in the middle of a frame.
    ///
    /// `expected` is the size of the whole frame, header included (just the
    /// 4 header bytes when the header itself was cut short); `got` is how many
    /// of those bytes arrived.
    #[error(
        "connection closed by the peer in the middle of a frame: \
         expected {expected} bytes, got {got}"
    )]
    Truncated {
        /// Bytes the frame needed (4 while the header was incomplete,
        /// otherwise 4 + payload length).
        expected: usize,
        /// Bytes of that frame actually received.
        got: usize,
    },

    /// A frame's length is over the configured limit. Nothing was allocated
    /// for it.
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    Oversized {
        /// Payload length, as announced by the header or as given to a write.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// The underlying stream failed.
    #[error("I/O error on the connection: {0}")]
    Io(#[from] std::io::Error),

    /// A value could not be encoded (for example a serde sequence without a
    /// known length).
    #[error("could not encode the message: {0}")]
    Encode(String),

    /// A payload is not a valid encoding of the expected type.
    #[error("could not decode the message: {0}")]
    Decode(String),

    /// The authentication handshake failed: wrong key on one side, or the
    /// peer does not speak the handshake protocol.
    #[error("authentication failed: {0}")]
    Authentication(String),
}
