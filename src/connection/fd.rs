//! The OS edge of connections: a file descriptor that can be closed while other threads use
//! it, raw reads and writes for the frame layer, and `ppoll` with a deadline.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, ppoll};
use nix::sys::time::TimeSpec;

/// An fd-owning value (`OwnedFd`, a listener socket) that any thread may close at any time.
///
/// Every operation holds a shared guard ([`FdCell::guard`]) while it uses the fd, so the fd
/// is never closed under it (and its number never reused under it). [`FdCell::close`] closes
/// at once when nothing is in flight; otherwise the last operation in flight closes it when it
/// ends. After `close`, [`FdCell::guard`] gives `None`, and each operation reports its own
/// "closed" error.
pub(crate) struct FdCell<T> {
    slot: RwLock<Option<T>>,
    closed: AtomicBool,
}

impl<T> FdCell<T> {
    /// Wraps `value`.
    pub(crate) fn new(value: T) -> Self {
        FdCell {
            slot: RwLock::new(Some(value)),
            closed: AtomicBool::new(false),
        }
    }

    /// Shared access for the duration of one operation; `None` once closed.
    pub(crate) fn guard(&self) -> Option<FdGuard<'_, T>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        let guard = self.slot.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref()?;
        Some(FdGuard {
            cell: self,
            guard: Some(guard),
        })
    }

    /// Closes the value now, or as soon as the operations in flight end. Idempotent.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.try_close();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn try_close(&self) {
        // Fails only while a guard (or another closer) holds the lock; that holder runs this
        // again when it lets go, so the value is always dropped exactly once.
        if let Ok(mut slot) = self.slot.try_write() {
            drop(slot.take());
        }
    }
}

/// Shared access to the value of an [`FdCell`]; closes it on drop if a close was requested
/// meanwhile.
pub(crate) struct FdGuard<'a, T> {
    cell: &'a FdCell<T>,
    guard: Option<RwLockReadGuard<'a, Option<T>>>,
}

impl<T> Deref for FdGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // `FdCell::guard` only hands out guards over `Some`, and nobody can take the value
        // while a read guard is held.
        self.guard
            .as_ref()
            .and_then(|g| g.as_ref())
            .expect("an FdGuard always holds a value")
    }
}

impl<T> Drop for FdGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if self.cell.closed.load(Ordering::Acquire) {
            self.cell.try_close();
        }
    }
}

/// The file descriptor of an open [`Connection`](crate::Connection) or
/// [`Listener`](crate::Listener), kept open while this value lives (Python's `fileno()`):
/// [`Connection::fd`](crate::Connection::fd) and [`Listener::fd`](crate::Listener::fd) return
/// it, or `None` once closed.
///
/// A [`close`](crate::Connection::close) in another thread meanwhile takes effect when this
/// value is dropped, so the number is never reused under it. Do not hold it longer than needed:
/// the descriptor is not closed while it lives.
///
/// ```
/// use std::os::fd::{AsFd, AsRawFd};
///
/// let (a, _b) = procvisor::pipe()?;
/// let fd = a.fd().expect("open");
/// assert!(fd.as_raw_fd() >= 0);
/// let _borrowed = fd.as_fd(); // for poll loops and other OS calls
/// drop(fd);
/// a.close();
/// assert!(a.fd().is_none());
/// # Ok::<(), procvisor::Error>(())
/// ```
pub struct HeldFd<'a> {
    fd: RawFd,
    _hold: Hold<'a>,
}

/// What keeps a [`HeldFd`]'s descriptor open (never read: holding it is its purpose).
#[allow(dead_code)]
pub(super) enum Hold<'a> {
    Connection(FdGuard<'a, OwnedFd>),
    Listener(FdGuard<'a, super::listener::Socket>),
}

impl<'a> HeldFd<'a> {
    pub(super) fn new(fd: RawFd, hold: Hold<'a>) -> Self {
        HeldFd { fd, _hold: hold }
    }
}

impl AsFd for HeldFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the guard in `_hold` keeps the descriptor open while `self` lives.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }
}

impl AsRawFd for HeldFd<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl fmt::Debug for HeldFd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HeldFd").field(&self.fd).finish()
    }
}

/// Reads and writes on a raw fd that someone else owns (an [`FdCell`] whose guard the caller
/// holds). Writes to sockets use `MSG_NOSIGNAL`, so a closed peer gives `EPIPE` instead of a
/// `SIGPIPE` that would kill the process.
///
/// A reader may *spin* ([`RawIo::spin`]): when nothing is there, it keeps looking without
/// sleeping for up to [`SPIN`] before it blocks. A message that arrives meanwhile is taken
/// without the cost of putting this thread to sleep and waking it (several microseconds on a
/// VM), and the sender does not pay for a wake-up either.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawIo {
    pub(crate) fd: RawFd,
    pub(crate) socket: bool,
    pub(crate) spin: bool,
}

/// How long a spinning reader looks for data before it blocks.
pub(crate) const SPIN: Duration = Duration::from_micros(20);

impl RawIo {
    /// A reader or writer on `fd` that does not spin.
    pub(crate) fn new(fd: RawFd, socket: bool) -> RawIo {
        RawIo {
            fd,
            socket,
            spin: false,
        }
    }

    /// One blocking `read`.
    fn read_blocking(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for `buf.len()` writable bytes; the fd is open while the
        // caller holds its FdCell guard.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// One read that does not block: `WouldBlock` if nothing is there.
    fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.socket {
            // SAFETY: as in `read_blocking`.
            let n = unsafe {
                libc::recv(
                    self.fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        } else {
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
            if ready > 0 {
                self.read_blocking(buf)
            } else if ready == 0 {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Err(io::Error::last_os_error())
            }
        }
    }
}

impl Read for RawIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.spin && !buf.is_empty() {
            let start = Instant::now();
            loop {
                match self.read_now(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => return other,
                }
                if start.elapsed() >= SPIN {
                    break;
                }
                std::thread::yield_now();
            }
        }
        self.read_blocking(buf)
    }
}

impl Write for RawIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = if self.socket {
            // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is open while the caller
            // holds its FdCell guard.
            unsafe { libc::send(self.fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) }
        } else {
            // SAFETY: as above.
            unsafe { libc::write(self.fd, buf.as_ptr().cast(), buf.len()) }
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
        let n = if self.socket {
            // SAFETY: an all-zero msghdr is valid (no name, no control data); the iovec array
            // is `IoSlice`s, which are ABI-compatible with `struct iovec`, valid for the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = count as _;
            // SAFETY: `msg` points at valid buffers for the duration of the call; the fd is
            // open while the caller holds its guard.
            unsafe { libc::sendmsg(self.fd, &msg, libc::MSG_NOSIGNAL) }
        } else {
            // SAFETY: as above, `IoSlice` is ABI-compatible with `struct iovec`.
            unsafe { libc::writev(self.fd, bufs.as_ptr().cast(), count) }
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Readiness that means "a read will not block": data, end of stream, or an error to report.
pub(crate) const READABLE: PollFlags = PollFlags::POLLIN
    .union(PollFlags::POLLHUP)
    .union(PollFlags::POLLERR)
    .union(PollFlags::POLLNVAL);

/// Waits until at least one of `fds` is readable or `deadline` passes (`None`: no deadline).
/// Returns, for each fd, whether it is ready. Retries after signals.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<Vec<bool>> {
    let mut polls: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    loop {
        let timeout =
            deadline.map(|d| TimeSpec::from_duration(d.saturating_duration_since(Instant::now())));
        match ppoll(&mut polls, timeout, None) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(polls
        .iter()
        .map(|p| p.revents().is_some_and(|r| r.intersects(READABLE)))
        .collect())
}

/// The deadline `timeout` from now; `None` (wait forever) for a timeout too large to
/// represent.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
