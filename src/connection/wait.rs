//! [`wait`] and [`wait_timeout`]: block until one of several connections or processes is
//! ready (Python 3's `multiprocessing.connection.wait`).

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::fd::{FdGuard, deadline_after, poll_readable};
use super::{CanRecv, Connection};
use crate::error::WaitError;
use crate::process::Child;

/// Something [`wait`] can wait for: a receiving [`Connection`] (a duplex one or a
/// [`Receiver`](super::Receiver); ready when a message or the end of the stream can be
/// received), a [`Child`] (ready once it has exited: its [`sentinel`](Child::sentinel)), or
/// any file descriptor (ready when readable).
///
/// The trait is sealed: those are the kinds of objects there are. A
/// [`Sender`](super::Sender) is not `Waitable`: nothing can be received on it.
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

    /// Why an object cannot be waited for.
    pub enum Unusable {
        Closed,
        NotReadable(String),
    }

    pub trait Sealed {
        fn prepare(&self) -> Result<Prepared<'_>, Unusable>;
    }
}

use private::{Prepared, Sealed, Unusable};

impl<D: CanRecv> Waitable for Connection<D> {}

impl<D: CanRecv> Sealed for Connection<D> {
    fn prepare(&self) -> Result<Prepared<'_>, Unusable> {
        let guard = self.inner.fd.guard().ok_or(Unusable::Closed)?;
        let now = self.inner.ready_now().map_err(Unusable::NotReadable)?;
        Ok(Prepared {
            now,
            fd: guard.as_raw_fd(),
            _hold: Some(guard),
        })
    }
}

impl Waitable for Child {}

impl Sealed for Child {
    fn prepare(&self) -> Result<Prepared<'_>, Unusable> {
        Ok(Prepared {
            now: false,
            fd: self.sentinel().as_raw_fd(),
            _hold: None,
        })
    }
}

impl Waitable for BorrowedFd<'_> {}

impl Sealed for BorrowedFd<'_> {
    fn prepare(&self) -> Result<Prepared<'_>, Unusable> {
        Ok(Prepared {
            now: false,
            fd: self.as_raw_fd(),
            _hold: None,
        })
    }
}

/// Waits until at least one of `objects` is ready and returns the indices of the ready ones,
/// in order (Python's `wait(object_list)`, `timeout=None`).
///
/// A connection is ready when [`try_poll`](Connection::try_poll) would say so; a process once
/// it has exited; a file descriptor when it is readable. With no objects it waits forever, as
/// Python's does.
///
/// ```
/// let (a1, b1) = procvisor::pipe()?;
/// let (a2, b2) = procvisor::pipe()?;
/// a2.send(&"hi")?;
/// assert_eq!(procvisor::wait(&[&b1, &b2])?, vec![1]);
/// # drop((a1, b2));
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`WaitError::Closed`] or [`WaitError::NotReadable`] for a connection that cannot receive
/// (its index says which); [`WaitError::Poll`] if the OS poll fails.
pub fn wait(objects: &[&dyn Waitable]) -> Result<Vec<usize>, WaitError> {
    wait_until(objects, None)
}

/// Waits until at least one of `objects` is ready, or `timeout` passes, and returns the
/// indices of the ready ones, in order: empty on timeout (Python's `wait(object_list,
/// timeout)`). `Duration::ZERO` only looks. With no objects it sleeps for `timeout`, as
/// Python's does.
///
/// ```
/// use std::time::Duration;
///
/// let (a, b) = procvisor::pipe()?;
/// assert!(procvisor::wait_timeout(&[&b], Duration::ZERO)?.is_empty());
/// a.send(&1u8)?;
/// assert_eq!(procvisor::wait_timeout(&[&b], Duration::from_secs(10))?, [0]);
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// As [`wait`].
#[doc(alias = "wait")]
pub fn wait_timeout(objects: &[&dyn Waitable], timeout: Duration) -> Result<Vec<usize>, WaitError> {
    wait_until(objects, deadline_after(timeout))
}

fn wait_until(
    objects: &[&dyn Waitable],
    deadline: Option<Instant>,
) -> Result<Vec<usize>, WaitError> {
    let prepared = objects
        .iter()
        .enumerate()
        .map(|(index, o)| {
            o.prepare().map_err(|unusable| match unusable {
                Unusable::Closed => WaitError::Closed { index },
                Unusable::NotReadable(reason) => WaitError::NotReadable { index, reason },
            })
        })
        .collect::<Result<Vec<Prepared<'_>>, WaitError>>()?;
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
    let polled = poll_readable(&fds, deadline).map_err(WaitError::Poll)?;
    Ok(now
        .iter()
        .zip(&polled)
        .enumerate()
        .filter(|(_, (now, polled))| **now || **polled)
        .map(|(i, _)| i)
        .collect())
}
