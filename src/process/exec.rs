//! Re-executing this program with one descriptor handed down: how a spawned child and the fork
//! server are started ([`exec_self`]) and how they take that descriptor back
//! ([`take_inherited_fd`]). The lowest layer of the start paths: `popen`, `prestart` and
//! `forkserver` use it, and it uses none of them.
//!
//! A new process keeps no descriptor of its parent's but the ones procvisor hands it on
//! purpose (as CPython's children, started with `close_fds`): a descriptor the parent opened
//! without close-on-exec survives an `exec` and a `fork`, so a re-executed child closes what it
//! inherited besides its link as it takes the link ([`take_inherited_fd`]), and a fork child
//! closes everything but its link right after the fork ([`close_fds_after_fork`]). The fork
//! server, a re-executed child itself, so holds nothing of its parent's that it could hand on.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use procvisor_actors::bootstrap::{BOOTSTRAP_FAILED_EXIT_CODE, BOOTSTRAP_FD_ENV};
use procvisor_actors::sys;

/// Forks and execs `/proc/self/exe` with `child_fd` inherited and its number in the
/// environment variable `env`. Every procvisor spawn happens on the spawner thread (see
/// [`procvisor_actors::spawner`] for why).
pub(crate) fn exec_self(
    child_fd: OwnedFd,
    env: &str,
    parent_pid: i32,
) -> std::io::Result<(i32, OwnedFd)> {
    let fd = child_fd.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0(program_name())
        .env(env, format!("{fd},{parent_pid}"))
        .stdin(Stdio::null());
    // No `pre_exec`: without one, std starts the child with posix_spawn (vfork-like, the
    // parent's memory is not copied), several times cheaper than fork. So the child's end of the
    // link is made inheritable here, just for the spawn, and the child itself sets
    // PR_SET_PDEATHSIG first thing in `init()`, then re-checks getppid() against the pid in its
    // environment. Every procvisor spawn happens on this one thread, so no other procvisor
    // child can inherit the fd in the meantime.
    fcntl(&child_fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    let spawned = cmd.spawn();
    drop(child_fd);
    let child = spawned?;
    let pid = child.id() as i32;
    // Dropping `child` neither waits nor kills; the process supervisor reaps through the pidfd.
    drop(child);
    let pidfd = sys::pidfd_open(pid)?;
    Ok((pid, pidfd))
}

/// argv[0] of this program, so `ps` shows children under the same name as their parent.
fn program_name() -> &'static std::ffi::OsStr {
    static NAME: OnceLock<std::ffi::OsString> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::args_os()
            .next()
            .unwrap_or_else(|| "procvisor-child".into())
    })
}

/// The child's half of [`exec_self`], run first thing in `init()`: takes the inherited fd named
/// by the environment variable `env` (if this process was started that way), removes the
/// variable, asks to be SIGKILLed when the parent dies, and checks that the parent is still the
/// one that started us (it may have died before the `prctl`). A child whose parent is gone
/// exits at once with [`BOOTSTRAP_FAILED_EXIT_CODE`].
pub(crate) fn take_inherited_fd(env: &str) -> Option<OwnedFd> {
    let value = std::env::var_os(env)?;
    // SAFETY: `init` runs first in main (or in a constructor before main), before the program
    // has started threads that could read the environment concurrently.
    unsafe { std::env::remove_var(env) };
    let (fd, parent_pid) = value.to_str()?.split_once(',')?;
    let (fd, parent_pid): (RawFd, i32) = (fd.parse().ok()?, parent_pid.parse().ok()?);
    // SAFETY: our parent made this fd inheritable for exactly this purpose; nothing else in this
    // freshly started process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    close_fds_except(fd.as_raw_fd(), Closing::Inherited);
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() != parent_pid {
        eprintln!(
            "procvisor: the parent process (pid {parent_pid}) exited before this child started"
        );
        // SAFETY: _exit is always safe; nothing of this process needs cleaning up yet.
        unsafe { libc::_exit(BOOTSTRAP_FAILED_EXIT_CODE) }
    }
    Some(fd)
}

/// The bootstrap link of a spawned child, if this process is one.
pub(crate) fn bootstrap_link() -> Option<OwnedFd> {
    take_inherited_fd(BOOTSTRAP_FD_ENV)
}

/// Closes every descriptor of a child just forked (by the fork server) from 3 up but `keep`,
/// its link: what the fork server has open is not the child's.
pub(crate) fn close_fds_after_fork(keep: RawFd) {
    // SAFETY: close_range takes plain integers and only closes descriptors; `keep` stays. The
    // two ranges are empty when `keep` is at their edge (3, or the last number).
    let closed = unsafe {
        let below = libc::syscall(libc::SYS_close_range, 3u32, keep.max(3) as u32 - 1, 0u32);
        let above = libc::syscall(libc::SYS_close_range, keep as u32 + 1, u32::MAX, 0u32);
        below == 0 && above == 0
    };
    if !closed {
        // A kernel without close_range (before 5.9): one by one.
        close_fds_except(keep, Closing::All);
    }
}

/// Which descriptors [`close_fds_except`] closes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// Every one.
    All,
    /// Those without close-on-exec. Run right after an `exec`, these are the ones the process
    /// inherited (the `exec` closed the others; what the program opened since, std opens with
    /// close-on-exec) — and any a constructor that ran before `init()` opened without it.
    Inherited,
}

/// Closes the descriptors from 3 up, but `keep`, that `which` names, as `/proc/self/fd` lists
/// them (where `/proc` cannot be read, which `exec_self` needs too, it closes nothing).
fn close_fds_except(keep: RawFd, which: Closing) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Listed first, closed after: the listing's own descriptor (close-on-exec) is in it.
    let fds: Vec<RawFd> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != keep)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD only reads the descriptor's flags (-1 if it is gone: the listing's).
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags == -1 || (which == Closing::Inherited && flags & libc::FD_CLOEXEC != 0) {
            continue;
        }
        // SAFETY: a descriptor nothing in this process owns: inherited through the exec or the
        // fork, and taken by nothing since (this runs before the program's own code).
        unsafe { libc::close(fd) };
    }
}
