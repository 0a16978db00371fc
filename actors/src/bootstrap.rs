//! The bootstrap protocol: what a parent tells a new child before the child runs its target,
//! and the little the two say to each other afterwards over the same socket (the *parent link*).
//!
//! The parent creates a Unix socketpair, starts the child with one end inherited (its number in
//! `PROCVISOR_BOOTSTRAP_FD`, nothing else secret in argv or the environment), and writes one
//! frame holding a [`Bootstrap`]. The socket then stays open for the child's whole life:
//!
//! * parent → child: `ParentToChild::Stop` (a graceful stop request);
//! * child → parent: [`ChildToParent::BootstrapFailed`] when the child cannot run its target
//!   (undecodable arguments, a different binary, a protocol version mismatch);
//! * EOF seen by the child means the parent is gone: the child kills itself, so children never
//!   outlive their parent even where `PR_SET_PDEATHSIG` cannot help.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::wire::frame::{self, FrameLimits};
use crate::wire::{WireError, codec};

/// Bumped whenever [`Bootstrap`] or the link messages change shape.
pub const PROTOCOL_VERSION: u32 = 1;

/// The environment variable holding the bootstrap socket's fd number in a spawned child.
pub const BOOTSTRAP_FD_ENV: &str = "PROCVISOR_BOOTSTRAP_FD";

/// Exit code of a child whose bootstrap failed (it never ran its target).
pub const BOOTSTRAP_FAILED_EXIT_CODE: i32 = 255;

/// Largest bootstrap frame a child accepts (the target's arguments included).
pub const MAX_BOOTSTRAP_FRAME: usize = 1 << 30;

/// Everything a child needs to become the process its parent described.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bootstrap {
    /// [`PROTOCOL_VERSION`] of the parent.
    pub protocol: u32,
    /// The parent's `procvisor` version, for the error message on a mismatch.
    pub crate_version: String,
    /// Device and inode of the parent's executable ([`crate::sys::executable_identity`]).
    pub executable: (u64, u64),
    /// Address of the entry trampoline relative to the anchor function, in this binary.
    pub entry_offset: i64,
    /// The target's arguments (or the `Run` value), encoded.
    pub payload: Vec<u8>,
    /// The child's name (`Process-1:2`, or what the user chose).
    pub name: String,
    /// The child's identity: its parent's identity plus its own ordinal.
    pub identity: Vec<u32>,
    /// The process tree's authentication key.
    pub authkey: Vec<u8>,
    /// Whether the child is daemonic (and so may not start children).
    pub daemon: bool,
    /// The parent's pid and name, for `parent_process()`.
    pub parent_pid: i32,
    /// See `parent_pid`.
    pub parent_name: String,
    /// The parent's `log_to_stderr` level (tracing level as 1=ERROR … 5=TRACE), if it set one.
    pub log_level: Option<u8>,
    /// The parent's default start method (`"spawn"` or `"fork"`), which the child inherits.
    pub start_method: String,
}

/// Messages a parent sends its child over the parent link.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum ParentToChild {
    /// Please stop: the child's `stop_requested()` turns true.
    Stop,
}

/// Messages a child sends its parent over the parent link.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChildToParent {
    /// The child could not run its target; the text says why. The child exits with
    /// [`BOOTSTRAP_FAILED_EXIT_CODE`] right after sending this.
    BootstrapFailed(String),
}

/// One message as the bytes of one frame.
pub(crate) fn frame_bytes<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    let payload = codec::encode(msg).map_err(into_io)?;
    let mut bytes = Vec::with_capacity(4 + payload.len());
    frame::encode_frame_into(&mut bytes, &payload).map_err(into_io)?;
    Ok(bytes)
}

/// Writes one message as one frame (see [`crate::wire`] for the bytes).
pub fn send<T: Serialize, W: Write>(w: &mut W, msg: &T) -> io::Result<()> {
    let payload = codec::encode(msg).map_err(into_io)?;
    frame::write_frame(w, &payload, &FrameLimits::default()).map_err(into_io)
}

/// Reads one message, never reading past its frame; `Ok(None)` on a clean EOF before any byte
/// of the frame.
pub(crate) fn recv<T: serde::de::DeserializeOwned, R: Read>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<T>> {
    match frame::read_frame_unbuffered(r, &FrameLimits::new(max)) {
        Ok(payload) => codec::decode(&payload).map(Some).map_err(into_io),
        Err(WireError::Eof) => Ok(None),
        Err(e) => Err(into_io(e)),
    }
}

/// Writes one message as one frame with `fds` attached (SCM_RIGHTS); `sock` must be a Unix
/// stream socket.
pub fn send_with_fds<T: Serialize>(
    sock: std::os::fd::BorrowedFd<'_>,
    msg: &T,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> io::Result<()> {
    crate::fdpass::send_frame_with_fds(sock, &frame_bytes(msg)?, fds)
}

/// Reads one message and the fds attached to it from a Unix stream socket; `Ok(None)` on a
/// clean EOF.
pub fn recv_with_fds<T: serde::de::DeserializeOwned>(
    sock: &std::os::unix::net::UnixStream,
    max: usize,
) -> io::Result<Option<(T, Vec<std::os::fd::OwnedFd>)>> {
    use std::os::fd::AsFd;
    let mut header = [0u8; 4];
    let Some(mut fds) = crate::fdpass::recv_exact_with_fds(sock.as_fd(), &mut header)? else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(into_io(WireError::Oversized { len, max }));
    }
    let mut payload = vec![0u8; len];
    // Past the first batches the fds ride on the payload's first bytes (see
    // `send_frame_with_fds`).
    let more = crate::fdpass::recv_exact_with_fds(sock.as_fd(), &mut payload)?
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    fds.extend(more);
    let msg = codec::decode(&payload).map_err(into_io)?;
    Ok(Some((msg, fds)))
}

/// Encodes a value with the project's codec (used for target arguments).
pub fn encode_payload<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    codec::encode(v).map_err(into_io)
}

/// Decodes a value encoded by [`encode_payload`].
pub fn decode_payload<T: serde::de::DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    codec::decode(b).map_err(into_io)
}

fn into_io(e: WireError) -> io::Error {
    match e {
        WireError::Io(e) => e,
        WireError::Decode(text) => io::Error::new(io::ErrorKind::InvalidData, text),
        WireError::Encode(text) => io::Error::new(io::ErrorKind::InvalidInput, text),
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    }
}

/// The environment variable that tells a re-executed program to become a fork server, holding
/// the number of its control socket (`SOCK_SEQPACKET`).
pub const FORK_SERVER_FD_ENV: &str = "PROCVISOR_FORKSERVER_FD";

/// Parent → fork server, on the control socket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ToForkServer {
    /// Fork a spare child that waits for its bootstrap on the link sent with this message (the
    /// child's end of a socket pair; the parent keeps the other). Answered, in order, with
    /// [`ForkServerMsg::Spare`] or [`ForkServerMsg::SpareFailed`].
    Fork,
}

/// Fork server → parent, on the control socket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ForkServerMsg {
    /// Child `pid` was forked, as the parent's own child, and waits for its bootstrap on the
    /// link of the request this answers: the parent's next fork start uses it.
    Spare {
        /// The waiting child.
        pid: i32,
    },
    /// The fork for a request failed; the parent reports it to the start waiting for a spare.
    SpareFailed {
        /// Why.
        reason: String,
    },
}
