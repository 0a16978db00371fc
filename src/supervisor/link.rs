//! The supervision link: a Unix socket between a supervisor and one child process, created per
//! start and handed to the child in its arguments (the fd travels with the bootstrap).
//!
//! Child → supervisor, one frame each ([`crate`]'s wire format: 4-byte length + bincode):
//! `Ready` (a worker called [`notify_ready`](super::notify_ready)), `Ignore` (a worker called
//! [`decline_start`](super::decline_start)), and from a supervisor in its own process:
//! `Event(e)` (its subtree's events), `StartFailed(reason)` or `Started { strategy, instance }`
//! (it has started its children; what a handle on it needs), then `Answer { id, answer }` (to
//! a request of its parent) and `Exited { instance, exit }` (a supervisor of its subtree that
//! the parent holds a handle on has exited). EOF means the child has exited.
//!
//! Supervisor → a supervisor in its own process: `Request { id, request }`, the requests of
//! handles on the supervisors of its subtree (see `procvisor_actors::supervisor`'s
//! `remote.rs` for their order and `protocol.rs` for their contents). A worker's link carries
//! nothing that way.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;

use procvisor_actors::fdpass;
use procvisor_actors::supervisor::{Event, Exit, Strategy};
use procvisor_actors::sync_util::lock;
use procvisor_actors::wire::{self, FrameLimits, WireError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest frame either end accepts (an answer listing many children can be large).
pub(crate) const MAX_FRAME: usize = 16 << 20;

/// What a supervised child tells its supervisor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ChildMsg {
    Ready,
    StartFailed(String),
    Event(Event),
    /// The child declines its start ([`decline_start`](super::decline_start)).
    Ignore,
    /// A supervisor in its own process has started its children.
    Started {
        strategy: Strategy,
        instance: u64,
    },
    /// The answer to request `id` (an encoded `Result<RemoteAnswer, SupervisorError>`).
    Answer {
        id: u64,
        answer: Vec<u8>,
    },
    /// Incarnation `instance` of a supervisor of the subtree has exited.
    Exited {
        instance: u64,
        exit: Exit,
    },
}

/// What a supervisor tells a supervisor in its own process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ParentMsg {
    /// Request `id` (an encoded `RemoteRequest`).
    Request { id: u64, request: Vec<u8> },
}

/// The child's end of a supervision link, as a target argument: its fd is exported while the
/// arguments are encoded and imported in the child while they are decoded.
pub(crate) struct LinkEnd(pub(crate) OwnedFd);

impl Serialize for LinkEnd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match fdpass::export_fd(self.0.as_fd()) {
            Ok(Some(index)) => index.serialize(s),
            Ok(None) => Err(serde::ser::Error::custom(
                "a supervision link can only travel in a child process's arguments",
            )),
            Err(e) => Err(serde::ser::Error::custom(e)),
        }
    }
}

impl<'de> Deserialize<'de> for LinkEnd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LinkEnd, D::Error> {
        let index = u32::deserialize(d)?;
        fdpass::import_fd(index)
            .map(LinkEnd)
            .ok_or_else(|| serde::de::Error::custom("the supervision link's fd did not arrive"))
    }
}

/// Writes one message (blocking; the child's side).
pub(crate) fn send(link: &Mutex<UnixStream>, msg: &ChildMsg) -> io::Result<()> {
    let payload = wire::encode(msg).map_err(io::Error::other)?;
    let mut stream = lock(link);
    wire::write_frame(&mut *stream, &payload, &FrameLimits::new(MAX_FRAME)).map_err(|e| match e {
        WireError::Io(e) => e,
        other => io::Error::other(other),
    })
}

/// Reads one message (the supervisor's side); `None` at EOF or on any error (the child is gone
/// or broken: either way nothing more will come).
pub(crate) async fn recv<R: tokio::io::AsyncRead + Unpin>(link: &mut R) -> Option<ChildMsg> {
    let frame = wire::read_frame_async(link, &FrameLimits::new(MAX_FRAME))
        .await
        .ok()?;
    wire::decode(&frame).ok()
}

/// Writes one request (the supervisor's side).
pub(crate) async fn send_request<W: tokio::io::AsyncWrite + Unpin>(
    link: &mut W,
    msg: &ParentMsg,
) -> Result<(), String> {
    let payload = wire::encode(msg).map_err(|e| e.to_string())?;
    wire::write_frame_async(link, &payload, &FrameLimits::new(MAX_FRAME))
        .await
        .map_err(|e| e.to_string())
}

/// Reads one request (blocking; the child's side); `None` at EOF or on any error (the parent
/// is gone or broken).
pub(crate) fn recv_request(link: &mut UnixStream) -> Option<ParentMsg> {
    let frame = wire::read_frame_unbuffered(link, &FrameLimits::new(MAX_FRAME)).ok()?;
    wire::decode(&frame).ok()
}

/// The supervisor's end as a tokio stream (on the node's runtime).
pub(crate) fn into_async(link: UnixStream) -> Result<tokio::net::UnixStream, String> {
    link.set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(link))
        .map_err(|e| format!("cannot watch the supervision link: {e}"))
}

/// A new link: (the supervisor's end, the child's end).
pub(crate) fn pair() -> Result<(UnixStream, LinkEnd), String> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| format!("cannot create a supervision link: {e}"))?;
    Ok((ours, LinkEnd(theirs.into())))
}

// ---- the child's side of readiness ------------------------------------------------------

static READY_LINK: Mutex<Option<UnixStream>> = Mutex::new(None);

pub(crate) fn set_ready_link(link: LinkEnd) {
    *lock(&READY_LINK) = Some(UnixStream::from(link.0));
}

pub(crate) fn notify_ready() {
    tell_once(&ChildMsg::Ready);
}

pub(crate) fn notify_ignore() {
    tell_once(&ChildMsg::Ignore);
}

/// Sends the one answer a worker gives to its start.
fn tell_once(msg: &ChildMsg) {
    let link = lock(&READY_LINK).take();
    if let Some(link) = link {
        let _ = send(&Mutex::new(link), msg);
    }
}
