//! The async variants of [`Connection`]'s operations.
//!
//! They work on any executor, inside or outside a tokio runtime: the waiting is done on
//! procvisor's node runtime (its own thread), and the caller's future only awaits a one-shot
//! channel.
//!
//! * Waiting for readability registers a duplicate of the fd with the node runtime's reactor
//!   (`AsyncFd`), so nothing blocks and a dropped future stops waiting at once.
//! * Once data is there, a receive runs on the node runtime's blocking pool (a message may
//!   still be arriving). If the caller's future is dropped meanwhile, the message is kept and
//!   handed to the next receive: receiving is cancel-safe, no message is lost.
//! * A send is encoded in the caller's thread and written on the blocking pool. Dropping the
//!   future does not unsend: the message may still be sent.
//! * A message that is already entirely buffered is received without leaving the caller's
//!   thread.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::TryLockError;

use procvisor_actors::runtime;
use procvisor_actors::wire::frame::write_frame;
use procvisor_actors::wire::{WireError, codec};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::{
    CanRecv, CanSend, Connection, Inner, check_max_len, decode_as, encode_error, read_error,
    write_error,
};
use crate::error::{RecvError, SendError};

/// Receiving and polling for async callers: duplex connections and
/// [`Receiver`](super::Receiver)s.
impl<D: CanRecv> Connection<D> {
    /// [`poll`](Connection::poll) for async callers: waits until a message (or the end of the
    /// stream) is ready to be received. For a deadline, wrap it in `tokio::time::timeout`; for
    /// an answer without waiting, [`try_poll`](Connection::try_poll) never blocks.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    ///
    /// let (a, b) = procvisor::pipe()?;
    /// let nothing = tokio::time::timeout(Duration::from_millis(10), b.poll_async()).await;
    /// assert!(nothing.is_err(), "timed out: nothing was sent");
    /// a.send(&1u8)?;
    /// b.poll_async().await?;
    /// assert_eq!(b.recv_async::<u8>().await?, 1);
    /// # Ok::<(), procvisor::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future stops the wait, and nothing is received.
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    #[doc(alias = "poll")]
    pub async fn poll_async(&self) -> Result<(), RecvError> {
        let dup = {
            let fd = self.inner.fd.guard().ok_or(RecvError::Closed)?;
            if self
                .inner
                .ready_now()
                .map_err(|reason| RecvError::NotReadable { reason })?
            {
                return Ok(());
            }
            fd.try_clone().map_err(RecvError::Poll)?
        };
        wait_readable(dup).await.map_err(RecvError::Poll)
    }

    /// [`recv`](Connection::recv) for async callers.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (a, b) = procvisor::pipe()?;
    /// a.send_async(&"hello").await?;
    /// assert_eq!(b.recv_async::<String>().await?, "hello");
    /// # Ok::<(), procvisor::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if the future is dropped after a message was read (or while one is being
    /// read), the next receive returns that message; no message is lost or reordered.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub async fn recv_async<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        let frame = self.recv_frame_async(None).await?;
        decode_as(&frame)
    }

    /// [`recv_bytes`](Connection::recv_bytes) for async callers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`recv_async`](Connection::recv_async).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_frame_async(None).await
    }

    /// [`recv_bytes_max`](Connection::recv_bytes_max) for async callers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, like [`recv_async`](Connection::recv_async). A message kept for the next
    /// receive is checked against that receive's maximum, not this one's.
    ///
    /// # Errors
    ///
    /// As [`recv_bytes_max`](Connection::recv_bytes_max).
    #[doc(alias = "recv_bytes")]
    pub async fn recv_bytes_max_async(&self, max_len: usize) -> Result<Vec<u8>, RecvError> {
        self.recv_frame_async(Some(max_len)).await
    }

    async fn recv_frame_async(&self, max_len: Option<usize>) -> Result<Vec<u8>, RecvError> {
        match self.try_recv_buffered(max_len)? {
            Buffered::Frame(frame) => return Ok(frame),
            // Nothing in memory: wait on the reactor until the socket has something.
            Buffered::Nothing => {
                self.poll_async().await?;
            }
            // Another receive holds the read half — possibly one that has just handed its
            // result over and is about to let go, with our message already in the buffer.
            // Waiting for the socket to become readable could then wait for ever: queue
            // behind it on the blocking pool instead, where the read half is checked first.
            Buffered::Busy => {}
        }
        let inner = self.inner.clone();
        let (tx, rx) = oneshot::channel::<Result<Vec<u8>, RecvError>>();
        let receiving = runtime::spawn_blocking(move || {
            let mut tx = Some(tx);
            let outcome = inner.with_read(|half, max| {
                let received = half.recv_bytes(max, max_len);
                if let Some(tx) = tx.take() {
                    // The caller gave up: keep the message for the next receive. This happens
                    // under the read lock, so no later message can be received before it.
                    if let Err(Ok(frame)) = tx.send(received) {
                        half.stash.push_front(frame);
                    }
                }
                Ok(())
            });
            if let (Err(e), Some(tx)) = (outcome, tx) {
                let _ = tx.send(Err(e));
            }
        });
        let mut pending = StashOnDrop {
            rx: Some(rx),
            got: None,
            inner: &self.inner,
        };
        let received = match pending.rx.as_mut() {
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(RecvError::Wire(node_gone()))),
            None => Err(RecvError::Wire(node_gone())),
        };
        pending.rx = None;
        // The blocking receive hands its result over while it still holds the read half (so
        // that nothing overtakes a message whose caller went away). Wait for it to let go, so
        // that a receive or poll right after this one does not find the half busy and wait on
        // the socket for a message that is already in the buffer. Until then the message is
        // kept in `pending`, which stashes it if this future is dropped.
        pending.got = Some(received);
        let _ = receiving.await;
        pending
            .got
            .take()
            .unwrap_or_else(|| Err(RecvError::Wire(node_gone())))
    }

    /// A whole message that is already buffered (or stashed), taken without blocking.
    fn try_recv_buffered(&self, max_len: Option<usize>) -> Result<Buffered, RecvError> {
        let _fd = self.inner.fd.guard().ok_or(RecvError::Closed)?;
        let mut half = match self.inner.read.try_lock() {
            Ok(half) => half,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(Buffered::Busy),
        };
        if let Some(reason) = &half.refused {
            return Err(RecvError::NotReadable {
                reason: reason.clone(),
            });
        }
        if let Some(len) = half.stash.front().map(Vec::len) {
            check_max_len(&mut half.refused, len, max_len)?;
            return Ok(half
                .stash
                .pop_front()
                .map_or(Buffered::Nothing, Buffered::Frame));
        }
        if !half.reader.has_buffered_frame() {
            return Ok(Buffered::Nothing);
        }
        let len = half.next_len(self.inner.limits().effective_max())?;
        check_max_len(&mut half.refused, len, max_len)?;
        let mut out = Vec::new();
        half.reader.read_frame_into(&mut out).map_err(read_error)?;
        Ok(Buffered::Frame(out))
    }
}

/// Sending for async callers: duplex connections and [`Sender`](super::Sender)s.
impl<D: CanSend> Connection<D> {
    /// [`send`](Connection::send) for async callers. The value is encoded before the first
    /// await, then written on procvisor's blocking pool.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (receiver, sender) = procvisor::pipe_oneway()?;
    /// sender.send_async(&[1u16, 2]).await?;
    /// assert_eq!(receiver.recv_async::<[u16; 2]>().await?, [1, 2]);
    /// # Ok::<(), procvisor::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe in the usual sense: dropping the future after its first poll does not
    /// unsend. The message is then still sent, whole (never a part of it), but its outcome is
    /// not reported. Dropping it before the first poll sends nothing.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub async fn send_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        if self.inner.fd.is_closed() {
            return Err(SendError::Closed);
        }
        let payload = codec::encode(value).map_err(encode_error::<T>)?;
        self.write_async(payload).await
    }

    /// [`send_bytes`](Connection::send_bytes) for async callers (the bytes are copied before
    /// the first await).
    ///
    /// # Cancel safety
    ///
    /// As [`send_async`](Connection::send_async): a dropped future may still send the message,
    /// whole.
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes).
    pub async fn send_bytes_async(&self, buf: &[u8]) -> Result<(), SendError> {
        if self.inner.fd.is_closed() {
            return Err(SendError::Closed);
        }
        self.write_async(buf.to_vec()).await
    }

    async fn write_async(&self, payload: Vec<u8>) -> Result<(), SendError> {
        let limits = self.inner.limits();
        limits.check(payload.len()).map_err(write_error)?;
        let inner = self.inner.clone();
        let (tx, rx) = oneshot::channel();
        runtime::spawn_blocking(move || {
            let sent = inner.with_write(|half, limits| {
                let mut io = half.io;
                write_frame(&mut io, &payload, limits).map_err(write_error)
            });
            let _ = tx.send(sent);
        });
        rx.await
            .unwrap_or_else(|_| Err(SendError::Wire(node_gone())))
    }
}

/// What a receive found in memory, without blocking.
enum Buffered {
    /// A whole message, taken.
    Frame(Vec<u8>),
    /// No whole message is buffered or stashed.
    Nothing,
    /// Another receive holds the read half.
    Busy,
}

/// If the receiving future is dropped while the blocking receive runs, the message that
/// receive produces goes to the stash instead of being lost.
struct StashOnDrop<'a> {
    rx: Option<oneshot::Receiver<Result<Vec<u8>, RecvError>>>,
    /// The receive's result, once handed over and not yet returned.
    got: Option<Result<Vec<u8>, RecvError>>,
    inner: &'a Arc<Inner>,
}

impl Drop for StashOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(Ok(frame)) = self.got.take() {
            self.inner.stash(frame);
        }
        if let Some(mut rx) = self.rx.take() {
            // After `close`, the sender's `send` fails and it stashes the message itself; a
            // message sent before is still in the channel and is taken here.
            rx.close();
            if let Ok(Ok(frame)) = rx.try_recv() {
                self.inner.stash(frame);
            }
        }
    }
}

/// Aborts a task on the node runtime when the future waiting for it is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Waits on the node runtime's reactor until `fd` is readable (or hung up).
async fn wait_readable(fd: OwnedFd) -> io::Result<()> {
    let (tx, rx) = oneshot::channel();
    let task = runtime::spawn(async move {
        let ready = async {
            // SAFETY: `fd` is an `OwnedFd` moved into the `AsyncFd`, so it stays open and
            // names the same file until the `AsyncFd` is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
            fd.readable().await.map(|_| ())
        }
        .await;
        let _ = tx.send(ready);
    });
    let _abort = AbortOnDrop(task);
    rx.await.unwrap_or_else(|_| Err(node_stopped()))
}

fn node_stopped() -> io::Error {
    io::Error::other("the procvisor node runtime stopped")
}

fn node_gone() -> WireError {
    WireError::Io(node_stopped())
}
