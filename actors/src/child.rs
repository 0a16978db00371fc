//! [`ChildRecord`]: what a parent knows about one started child, shared between the user's
//! `Process` handles and the process supervisor actor that watches the child.

use std::os::fd::{AsFd, OwnedFd};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::bootstrap::{self, ChildToParent, ParentToChild};
use crate::runtime;
use crate::sync_util::lock;
use crate::sys::{self, ExitStatus};

/// One started child. The supervisor actor reaps it and calls `ChildRecord::finish`; users
/// wait on it through [`ChildRecord::wait`] / [`ChildRecord::wait_async`].
pub struct ChildRecord {
    pid: i32,
    name: Mutex<String>,
    daemon: bool,
    pidfd: OwnedFd,
    link: UnixStream,
    exit: Mutex<Option<ExitStatus>>,
    exited: Condvar,
    exited_async: Notify,
    bootstrap_error: Mutex<Option<String>>,
    /// A task reaps it the moment it exits (see `reap_on_exit`).
    exit_watched: AtomicBool,
}

/// Lets tokio's reactor watch a child's pidfd while the record stays shared.
struct PidFdWatch(Arc<ChildRecord>);

impl AsRawFd for PidFdWatch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.pidfd.as_raw_fd()
    }
}

impl std::fmt::Debug for ChildRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildRecord")
            .field("pid", &self.pid)
            .field("name", &*lock(&self.name))
            .field("daemon", &self.daemon)
            .field("exit", &*lock(&self.exit))
            .finish()
    }
}

impl ChildRecord {
    /// Records a child just started with `pid`, watched through `pidfd`, talked to over `link`.
    pub fn new(pid: i32, name: String, daemon: bool, pidfd: OwnedFd, link: UnixStream) -> Self {
        ChildRecord {
            pid,
            name: Mutex::new(name),
            daemon,
            pidfd,
            link,
            exit: Mutex::new(None),
            exited: Condvar::new(),
            exited_async: Notify::new(),
            bootstrap_error: Mutex::new(None),
            exit_watched: AtomicBool::new(false),
        }
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's name.
    pub fn name(&self) -> String {
        lock(&self.name).clone()
    }

    /// Renames the child (names have no semantics; this only changes what is displayed).
    pub fn set_name(&self, name: String) {
        *lock(&self.name) = name;
    }

    /// Whether the child is daemonic.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The parent's end of the link to the child (see [`crate::bootstrap`]).
    pub fn link(&self) -> &UnixStream {
        &self.link
    }

    /// The pidfd, for the supervisor's exit watch.
    pub fn pidfd(&self) -> &OwnedFd {
        &self.pidfd
    }

    /// The exit status once the child has been reaped; before that, a non-reaping peek
    /// (`WNOWAIT`) so that `is_alive()` right after the child died is already false.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        // The lock is held across the peek: `finish` holds it while it reaps and publishes, so
        // the peek never sees an already-reaped child with no status published yet.
        let exit = lock(&self.exit);
        if let Some(status) = *exit {
            return Some(status);
        }
        sys::wait_pidfd(self.pidfd.as_fd(), false, false)
            .ok()
            .flatten()
    }

    /// The reason the child's bootstrap failed, if it did (known once it has exited).
    pub fn bootstrap_error(&self) -> Option<String> {
        lock(&self.bootstrap_error).clone()
    }

    /// Blocks until the child has exited and its status is published, or `timeout` passes.
    /// Returns the status if so.
    ///
    /// The waiting thread watches the pidfd itself and reaps the child the moment it is gone,
    /// so `join` does not wait for the supervisor's thread hop.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitStatus> {
        let deadline = timeout.map(|t| Instant::now() + t);
        if let Some(status) = *lock(&self.exit) {
            return Some(status);
        }
        if !sys::wait_pidfd_readable(self.pidfd.as_fd(), deadline) {
            return *lock(&self.exit);
        }
        self.finish().ok().or_else(|| self.wait_published(deadline))
    }

    /// Waits on the condvar for another thread to publish the status.
    fn wait_published(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        crate::reply::wait_for(&self.exited, lock(&self.exit), deadline, |exit| *exit)
    }

    /// Waits asynchronously until the child has been reaped (no timeout: wrap it in
    /// `tokio::time::timeout` for one). The node's runtime reaps it the moment it exits, so
    /// this works from any runtime, whatever its drivers.
    pub async fn wait_async(self: &Arc<Self>) -> ExitStatus {
        self.reap_on_exit();
        loop {
            let notified = self.exited_async.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(status) = *lock(&self.exit) {
                return status;
            }
            notified.await;
        }
    }

    /// Has a task on the node's runtime reap the child the moment it exits (once, however
    /// many wait). Without one, a child nobody joins is reaped by the supervisor's batched
    /// sweep, which is not what an awaiting caller should wait for.
    fn reap_on_exit(self: &Arc<Self>) {
        if self.exit_watched.swap(true, Ordering::SeqCst) {
            return;
        }
        let child = self.clone();
        runtime::spawn(async move {
            // SAFETY: the pidfd is owned by the record, which `PidFdWatch` keeps alive (an
            // `Arc`) for as long as the `AsyncFd` exists, and the record never replaces or
            // closes its pidfd.
            let registered = unsafe {
                AsyncFd::register_with_interest(PidFdWatch(child.clone()), Interest::READABLE)
            };
            match registered {
                // A pidfd reports readable once, when the process exits; errors end the watch
                // the same way.
                Ok(watch) => drop(watch.readable().await),
                Err(err) => {
                    let err = err.into_parts().1;
                    let pid = child.pid;
                    tracing::warn!(target: "procvisor", "cannot watch pid {pid} with epoll ({err}); using a thread");
                    let blocking = child.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || blocking.wait_exit_blocking()).await;
                }
            }
            let _ = child.finish();
        });
    }

    /// Sends a signal through the pidfd (never to a recycled pid). `Ok(false)` if the child had
    /// already exited.
    pub fn signal(&self, sig: i32) -> std::io::Result<bool> {
        if lock(&self.exit).is_some() {
            return Ok(false);
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), sig)
    }

    /// Sends the graceful stop request over the parent link. `Ok(false)` if the child is gone.
    pub fn request_stop(&self) -> std::io::Result<bool> {
        if lock(&self.exit).is_some() {
            return Ok(false);
        }
        match bootstrap::send(&mut &self.link, &ParentToChild::Stop) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reaps the child (it must have exited: the pidfd is readable), collects any message it
    /// left on the link, publishes the status and wakes every waiter.
    pub(crate) fn finish(&self) -> std::io::Result<ExitStatus> {
        let mut exit = lock(&self.exit);
        if let Some(status) = *exit {
            // A joiner reaped it first.
            return Ok(status);
        }
        let status = sys::wait_pidfd(self.pidfd.as_fd(), true, true)?
            .ok_or_else(|| std::io::Error::other("child not exited"))?;
        self.publish(&mut exit, status);
        Ok(status)
    }

    fn publish(&self, exit: &mut Option<ExitStatus>, status: ExitStatus) {
        if exit.is_some() {
            return;
        }
        // Only a child whose bootstrap failed leaves a message, and it exits with this code.
        if status == ExitStatus::Exited(bootstrap::BOOTSTRAP_FAILED_EXIT_CODE) {
            self.collect_link_messages();
        }
        *exit = Some(status);
        self.exited.notify_all();
        self.exited_async.notify_waiters();
    }

    fn collect_link_messages(&self) {
        if self.link.set_nonblocking(true).is_err() {
            return;
        }
        let mut link = &self.link;
        while let Ok(Some(msg)) = bootstrap::recv::<ChildToParent, _>(&mut link, 1 << 20) {
            let ChildToParent::BootstrapFailed(reason) = msg;
            *lock(&self.bootstrap_error) = Some(reason);
        }
    }
}

impl ChildRecord {
    /// Blocks this thread until the child has exited, without reaping it.
    pub(crate) fn wait_exit_blocking(&self) {
        let _ = sys::wait_pidfd(self.pidfd.as_fd(), false, true);
    }
}
