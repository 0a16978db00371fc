//! [`wait`]: block until one of several connections or processes is ready (Python 3's
//! `multiprocessing.connection.wait`).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::Connection;
use super::fd::{FdGuard, deadline_after, poll_readable};
use crate::error::{Error, Result};
use crate::process::Child;

/// Something [`wait`] can wait for: a [`Connection`] (ready when a message or the end of the
/// stream can be received), a [`Child`] (ready once it has exited: its
/// [`sentinel`](Child::sentinel)), or any file descriptor (ready when readable).
///
/// The trait is sealed: those are the kinds of objects there are.
pub trait Waitable: private::Sealed {}

mod private {
    use super::*;

    /// What `wait` needs from one object, valid while it is held.
    pub struct Prepared<'a> {
        /// Ready without asking the OS (buffered data).
        pub(super) now: bool,
        /// The fd to poll for readability.
        pub(super) fd: RawFd,
        /// Keeps a connection's fd open while it is polled.
        pub(super) _hold: Option<FdGuard<'a, OwnedFd>>,
    }

    pub trait Sealed {
        fn prepare(&self) -> Result<Prepared<'_>>;
    }
}

use private::{Prepared, Sealed};

impl Waitable for Connection {}

impl Sealed for Connection {
    fn prepare(&self) -> Result<Prepared<'_>> {
        self.inner.check_end("wait for", true)?;
        let guard = self.inner.fd.guard()?;
        let now = self.inner.ready_now()?;
        Ok(Prepared {
            now,
            fd: guard.as_raw_fd(),
            _hold: Some(guard),
        })
    }
}

impl Waitable for Child {}

impl Sealed for Child {
    fn prepare(&self) -> Result<Prepared<'_>> {
        Ok(Prepared {
            now: false,
            fd: self.sentinel().as_raw_fd(),
            _hold: None,
        })
    }
}

impl Waitable for BorrowedFd<'_> {}

impl Sealed for BorrowedFd<'_> {
    fn prepare(&self) -> Result<Prepared<'_>> {
        Ok(Prepared {
            now: false,
            fd: self.as_raw_fd(),
            _hold: None,
        })
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no limit), and
/// returns the indices of the ready ones, in order (empty on timeout).
///
/// A connection is ready when [`poll`](Connection::poll) would say so; a process once it has
/// exited; a file descriptor when it is readable. With no objects it just sleeps for
/// `timeout`, as Python's does.
///
/// ```
/// use std::time::Duration;
///
/// let (a1, b1) = procvisor::pipe(true)?;
/// let (a2, b2) = procvisor::pipe(true)?;
/// a2.send(&"hi")?;
/// assert_eq!(procvisor::wait(&[&b1, &b2], None)?, vec![1]);
/// assert!(procvisor::wait(&[&b1], Some(Duration::ZERO))?.is_empty());
/// # drop((a1, b2));
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::Closed`], [`Error::WrongEnd`] or [`Error::NotReadable`] for a connection that
/// cannot receive; [`Error::NotStarted`] for a process not yet started; [`Error::Io`] if the
/// OS poll fails.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = deadline_after(timeout);
    let prepared = objects
        .iter()
        .map(|o| o.prepare())
        .collect::<Result<Vec<Prepared<'_>>>>()?;
    let now: Vec<bool> = prepared.iter().map(|p| p.now).collect();
    // Something is ready already: only look (without waiting) which others are too.
    let deadline = if now.contains(&true) {
        Some(Instant::now())
    } else {
        deadline
    };
    let fds: Vec<BorrowedFd<'_>> = prepared
        .iter()
        // SAFETY: each fd stays open while `prepared` lives: a connection's is held by its
        // guard, a process's sentinel and a borrowed fd by the borrow of `objects`.
        .map(|p| unsafe { BorrowedFd::borrow_raw(p.fd) })
        .collect();
    let polled = poll_readable(&fds, deadline).map_err(|e| Error::io("wait", e))?;
    Ok(now
        .iter()
        .zip(&polled)
        .enumerate()
        .filter(|(_, (now, polled))| **now || **polled)
        .map(|(i, _)| i)
        .collect())
}
