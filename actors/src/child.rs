//! [`ChildRecord`]: what a parent knows about one started child, shared between the user's
//! `Process` handles and the process supervisor actor that watches the child.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::bootstrap::{self, ChildToParent, ParentToChild};
use crate::reply::lock;
use crate::sys::{self, ExitStatus};

/// How long `exit_status` waits for a fork server's relay once the process is known to be gone.
const RELAY_WAIT: Duration = Duration::from_secs(5);

/// One started child. The supervisor actor reaps it and calls [`ChildRecord::finish`]; users
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
    /// The code the child said it exits with ([`ChildToParent::Exiting`]), once read.
    reported_exit: Mutex<Option<i32>>,
    relayed: bool,
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
    /// `relayed` children are not ours to reap (a fork server forked them): their exit status
    /// arrives through [`ChildRecord::finish_with`].
    pub fn new(
        pid: i32,
        name: String,
        daemon: bool,
        pidfd: OwnedFd,
        link: UnixStream,
        relayed: bool,
    ) -> Self {
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
            reported_exit: Mutex::new(None),
            relayed,
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
        if self.relayed {
            drop(exit);
            // Not our child, so no peek; but an exited process's pidfd is readable, and then
            // its own report or the fork server's relay of its status is at hand.
            if sys::pidfd_exited(self.pidfd.as_fd()) {
                return self.wait(Some(RELAY_WAIT));
            }
            return None;
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
    /// The waiting thread watches the pidfd itself and publishes the exit the moment the
    /// process is gone: it reaps its own child, or takes a fork server's child's report of
    /// its exit code, so `join` does not wait for the supervisor's or the relay's thread hop.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<ExitStatus> {
        let deadline = timeout.map(|t| Instant::now() + t);
        if let Some(status) = *lock(&self.exit) {
            return Some(status);
        }
        if !sys::wait_pidfd_readable(self.pidfd.as_fd(), deadline) {
            return *lock(&self.exit);
        }
        if !self.relayed {
            return self.finish().ok().or_else(|| self.wait_published(deadline));
        }
        if let Some(status) = self.take_reported_exit() {
            return Some(status);
        }
        // Gone without a report (a signal, or `std::process::exit`): the fork server's relay
        // of its status is moments away.
        let relay_deadline = Instant::now() + RELAY_WAIT;
        self.wait_published(Some(
            deadline.map_or(relay_deadline, |d| d.min(relay_deadline)),
        ))
    }

    /// Publishes the code the child reported on its link, if it did.
    fn take_reported_exit(&self) -> Option<ExitStatus> {
        let mut exit = lock(&self.exit);
        if exit.is_none() {
            self.collect_link_messages();
            let code = (*lock(&self.reported_exit))?;
            self.publish(&mut exit, ExitStatus::Exited(code));
        }
        *exit
    }

    /// Waits on the condvar for another thread to publish the status.
    fn wait_published(&self, deadline: Option<Instant>) -> Option<ExitStatus> {
        crate::reply::wait_for(&self.exited, lock(&self.exit), deadline, |exit| *exit)
    }

    /// Waits asynchronously until the child has been reaped (no timeout: wrap it in
    /// `tokio::time::timeout` for one).
    pub async fn wait_async(&self) -> ExitStatus {
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
    pub fn finish(&self) -> std::io::Result<ExitStatus> {
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

    /// Whether the exit status is relayed by a fork server rather than reaped here.
    pub fn is_relayed(&self) -> bool {
        self.relayed
    }

    /// Publishes an exit status learned elsewhere (a fork server reaped the child).
    pub fn finish_with(&self, status: ExitStatus) {
        self.publish(&mut lock(&self.exit), status);
    }

    fn publish(&self, exit: &mut Option<ExitStatus>, status: ExitStatus) {
        if exit.is_some() {
            return;
        }
        self.collect_link_messages();
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
            match msg {
                ChildToParent::BootstrapFailed(reason) => {
                    *lock(&self.bootstrap_error) = Some(reason);
                }
                ChildToParent::Exiting(code) => *lock(&self.reported_exit) = Some(code),
            }
        }
    }
}

impl ChildRecord {
    /// Blocks this thread until the child has exited, without reaping it.
    pub fn wait_exit_blocking(&self) {
        let _ = sys::wait_pidfd(self.pidfd.as_fd(), false, true);
    }
}
