//! Re-executing this program with one descriptor handed down: how a spawned child and the fork
//! server are started ([`exec_self`]) and how they take that descriptor back
//! ([`take_inherited_fd`]). The lowest layer of the start paths: `popen`, `prestart` and
//! `forkserver` use it, and it uses none of them.

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
