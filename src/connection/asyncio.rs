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
use std::time::Duration;

use procvisor_actors::runtime;
use procvisor_actors::wire::codec;
use procvisor_actors::wire::frame::write_frame;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::{
    Connection, Inner, ReadHalf, byte_range, check_maxlength, decode_as, encode_error, read_error,
    write_error,
};
use crate::error::{Error, Result};

impl Connection {
    /// [`poll`](Connection::poll) for async callers: whether a message (or the end of the
    /// stream) is ready, waiting up to `timeout` (`None`: until one is). Dropping the future
    /// stops the wait.
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    pub async fn poll_async(&self, timeout: Option<Duration>) -> Result<bool> {
        self.inner.check_end("poll", true)?;
        let dup = {
            let fd = self.inner.fd.guard()?;
            if self.inner.ready_now()? {
                return Ok(true);
            }
            fd.try_clone()
                .map_err(|e| Error::io("cannot duplicate the connection's descriptor", e))?
        };
        wait_readable(dup, timeout)
            .await
            .map_err(|e| Error::io("cannot poll the connection", e))
    }

    /// [`recv`](Connection::recv) for async callers. Cancel-safe: if the future is dropped
    /// after a message was read, the next receive returns that message.
    ///
    /// # Errors
    ///
    /// As [`recv`](Connection::recv).
    pub async fn recv_async<T: DeserializeOwned>(&self) -> Result<T> {
        let frame = self.recv_frame_async(None).await?;
        decode_as(&frame)
    }

    /// [`recv_bytes`](Connection::recv_bytes) for async callers. Cancel-safe, like
    /// [`recv_async`](Connection::recv_async).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    pub async fn recv_bytes_async(&self, maxlength: Option<usize>) -> Result<Vec<u8>> {
        self.recv_frame_async(maxlength).await
    }

    /// [`send`](Connection::send) for async callers. The value is encoded before the first
    /// await; dropping the future afterwards does not stop the message from being sent.
    ///
    /// # Errors
    ///
    /// As [`send`](Connection::send).
    pub async fn send_async<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        self.inner.check_end("send", false)?;
        let payload = codec::encode(value).map_err(|e| encode_error(e, "a message"))?;
        self.write_async(payload).await
    }

    /// [`send_bytes`](Connection::send_bytes) for async callers (the range is copied before the
    /// first await).
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes).
    pub async fn send_bytes_async(
        &self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<()> {
        let range = byte_range(buf.len(), offset, size)?;
        self.inner.check_end("send", false)?;
        self.write_async(buf[range].to_vec()).await
    }

    async fn write_async(&self, payload: Vec<u8>) -> Result<()> {
        let limits = self.inner.limits();
        limits.check(payload.len()).map_err(write_error)?;
        let inner = self.inner.clone();
        let (tx, rx) = oneshot::channel();
        runtime::spawn_blocking(move || {
            let sent = inner.with_write("send", |half, limits| {
                let mut io = half.io;
                write_frame(&mut io, &payload, limits).map_err(write_error)
            });
            let _ = tx.send(sent);
        });
        rx.await.unwrap_or_else(|_| Err(node_gone()))
    }

    async fn recv_frame_async(&self, maxlength: Option<usize>) -> Result<Vec<u8>> {
        match self.try_recv_buffered(maxlength)? {
            Buffered::Frame(frame) => return Ok(frame),
            // Nothing in memory: wait on the reactor until the socket has something.
            Buffered::Nothing => {
                self.poll_async(None).await?;
            }
            // Another receive holds the read half — possibly one that has just handed its
            // result over and is about to let go, with our message already in the buffer.
            // Waiting for the socket to become readable could then wait for ever: queue
            // behind it on the blocking pool instead, where the read half is checked first.
            Buffered::Busy => {}
        }
        let inner = self.inner.clone();
        let (tx, rx) = oneshot::channel::<Result<Vec<u8>>>();
        let receiving = runtime::spawn_blocking(move || {
            let mut tx = Some(tx);
            let outcome = inner.with_read("receive", |half, max| {
                let received = half.recv_bytes(max, maxlength);
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
            Some(rx) => rx.await.unwrap_or_else(|_| Err(node_gone())),
            None => Err(node_gone()),
        };
        pending.rx = None;
        // The blocking receive hands its result over while it still holds the read half (so
        // that nothing overtakes a message whose caller went away). Wait for it to let go, so
        // that a receive or poll right after this one does not find the half busy and wait on
        // the socket for a message that is already in the buffer. Until then the message is
        // kept in `pending`, which stashes it if this future is dropped.
        pending.got = Some(received);
        let _ = receiving.await;
        pending.got.take().unwrap_or_else(|| Err(node_gone()))
    }

    /// A whole message that is already buffered (or stashed), taken without blocking.
    fn try_recv_buffered(&self, maxlength: Option<usize>) -> Result<Buffered> {
        self.inner.check_end("receive", true)?;
        let _fd = self.inner.fd.guard()?;
        let mut half = match self.inner.read.try_lock() {
            Ok(half) => half,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Ok(Buffered::Busy),
        };
        if let Some(reason) = &half.refused {
            return Err(Error::NotReadable {
                reason: reason.clone(),
            });
        }
        if let Some(len) = half.stash.front().map(Vec::len) {
            check_maxlength(&mut half.refused, len, maxlength)?;
            return Ok(half
                .stash
                .pop_front()
                .map_or(Buffered::Nothing, Buffered::Frame));
        }
        if !half.reader.has_buffered_frame() {
            return Ok(Buffered::Nothing);
        }
        let len = half.next_len(self.inner.limits().effective_max())?;
        check_maxlength(&mut half.refused, len, maxlength)?;
        let mut out = Vec::new();
        half.reader.read_frame_into(&mut out).map_err(read_error)?;
        Ok(Buffered::Frame(out))
    }
}

impl Inner {
    /// The body of `recv_bytes`.
    pub(super) fn recv_bytes(&self, maxlength: Option<usize>) -> Result<Vec<u8>> {
        self.with_read("receive", |half, max| half.recv_bytes(max, maxlength))
    }
}

impl ReadHalf {
    /// Takes one whole message (stashed or read), refusing it if it is over `maxlength`.
    pub(super) fn recv_bytes(&mut self, max: usize, maxlength: Option<usize>) -> Result<Vec<u8>> {
        if let Some(len) = self.stash.front().map(Vec::len) {
            check_maxlength(&mut self.refused, len, maxlength)?;
            return Ok(self.stash.pop_front().unwrap_or_default());
        }
        let len = self.next_len(max)?;
        check_maxlength(&mut self.refused, len, maxlength)?;
        let mut out = Vec::new();
        self.reader.read_frame_into(&mut out).map_err(read_error)?;
        Ok(out)
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
    rx: Option<oneshot::Receiver<Result<Vec<u8>>>>,
    /// The receive's result, once handed over and not yet returned.
    got: Option<Result<Vec<u8>>>,
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

/// Waits on the node runtime's reactor until `fd` is readable (or hung up), up to `timeout`.
async fn wait_readable(fd: OwnedFd, timeout: Option<Duration>) -> io::Result<bool> {
    let (tx, rx) = oneshot::channel();
    let task = runtime::spawn(async move {
        let ready = async {
            // SAFETY: `fd` is an `OwnedFd` moved into the `AsyncFd`, so it stays open and
            // names the same file until the `AsyncFd` is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
            match timeout {
                None => fd.readable().await.map(|_| true),
                Some(t) => match tokio::time::timeout(t, fd.readable()).await {
                    Ok(ready) => ready.map(|_| true),
                    Err(_) => Ok(false),
                },
            }
        }
        .await;
        let _ = tx.send(ready);
    });
    let _abort = AbortOnDrop(task);
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("the procvisor node runtime stopped")))
}

fn node_gone() -> Error {
    Error::io(
        "connection",
        io::Error::other("the procvisor node runtime stopped"),
    )
}
