//! The node's watch on processes that hold units of shared objects.
//!
//! A thread that has to wait for a unit (a lock, a semaphore unit, a queue's internal lock)
//! held by another process asks the watch to keep an eye on the holder. The watch opens a pidfd
//! on it and, on the node's runtime, waits for it to become readable — the kernel's notice that
//! the process exited; no polling. Then it runs every recovery registered against that pid: each
//! gives back what the dead process held and marks it so that the next acquirer learns of it.
//!
//! A pid that is already gone when the watch is asked is recovered at once, on the caller's
//! thread — and so is a pid now used by a process that does not map the object's segment: the
//! holder died and its pid came round to someone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::unix::AsyncFd;

use super::pid::my_pid;
use super::segment::Segment;
use crate::runtime;
use crate::sync_util::lock;
use crate::sys;

/// What a recovery is keyed by: a shared object's segment id and the offset of its state.
pub(crate) type WatchKey = ([u8; 16], usize);

/// Gives back what a dead process (its pid is the argument) held in one shared object.
pub type Recovery = Arc<dyn Fn(i32) + Send + Sync>;

type Watches = HashMap<i32, HashMap<WatchKey, Recovery>>;

fn watches() -> &'static Mutex<Watches> {
    static WATCHES: OnceLock<Mutex<Watches>> = OnceLock::new();
    WATCHES.get_or_init(Default::default)
}

/// Makes sure that `recovery` runs when process `pid`, which holds something in the shared
/// object at `offset` in `segment`, dies — at once if it is already gone, or if the process now
/// behind `pid` does not even map `segment` (the holder died and its pid was reused: with
/// `pid_max` at 32768 here, pids do come round). `recovery` is only built when the object is
/// not yet watched for `pid`.
pub fn on_death(pid: i32, segment: &Segment, offset: usize, recovery: impl FnOnce() -> Recovery) {
    if pid <= 0 || pid == my_pid() {
        return;
    }
    let key: WatchKey = (segment.id(), offset);
    let first_for_pid = {
        let mut watches = lock(watches());
        let entry = watches.entry(pid).or_default();
        if entry.contains_key(&key) {
            return;
        }
        let first = entry.is_empty();
        entry.insert(key, recovery());
        first
    };
    if !first_for_pid {
        return;
    }
    match sys::pidfd_open(pid) {
        // Alive, but not a process that could hold anything of this object.
        Ok(_) if maps_segment(pid, segment) == Some(false) => recover(pid),
        Ok(pidfd) => {
            runtime::spawn(async move {
                // SAFETY: the AsyncFd owns the pidfd for as long as it exists; nothing else
                // closes or replaces it.
                let registered = unsafe {
                    AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
                };
                match registered {
                    Ok(fd) => {
                        let _ = fd.readable().await;
                    }
                    // The runtime cannot register it: wait on a blocking thread instead.
                    Err(e) => {
                        let (pidfd, _) = e.into_parts();
                        let _ = tokio::task::spawn_blocking(move || wait_readable(&pidfd)).await;
                    }
                }
                recover(pid);
            });
        }
        Err(_) => recover(pid), // already gone (ESRCH): nobody else will give its units back
    }
}

/// Whether process `pid` has `segment` mapped (None: its maps cannot be read, e.g. another
/// user's process). Every holder of a unit maps the object's segment; the pidfd was opened
/// first, so a `false` here is about the process the watch would otherwise wait for.
fn maps_segment(pid: i32, segment: &Segment) -> Option<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let inode = segment.inode().to_string();
    Some(maps.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(4);
        fields.next() == Some(inode.as_str())
            && fields
                .next()
                .is_some_and(|path| path.starts_with("/memfd:"))
    }))
}

fn wait_readable(pidfd: &std::os::fd::OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    while poll(&mut fds, PollTimeout::NONE).is_err() {}
}

fn recover(pid: i32) {
    let recoveries = lock(watches()).remove(&pid).unwrap_or_default();
    for recovery in recoveries.into_values() {
        tracing::debug!(pid, "giving back what a dead process held");
        recovery(pid);
    }
}
