//! Starting a child: the start-method strategies (CPython's `popen_*` modules). Each one turns a
//! [`Bootstrap`] into a running child and a [`ChildRecord`] that the process supervisor watches.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use procvisor_actors::bootstrap::{self, BOOTSTRAP_FAILED_EXIT_CODE, BOOTSTRAP_FD_ENV, Bootstrap};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::{process_supervisor, sys};

use super::prestart::{self, Blank};

use crate::error::{Error, Result};

/// Starts a child by re-executing this program (or takes the one [`prestart`] has ready),
/// hands it its bootstrap, and puts it under the process supervisor. Returns once the child
/// exists (not once it has run anything).
pub(crate) fn spawn(boot: Bootstrap, fds: &[BorrowedFd<'_>]) -> Result<Arc<ChildRecord>> {
    let blank = prestart::blank_child().map_err(|source| Error::Spawn {
        name: boot.name.clone(),
        source,
    })?;
    launch(blank, boot, fds)
}

/// Hands a child waiting for its bootstrap (spawned, prestarted or forked) the bootstrap and
/// `fds`, and puts it under the process supervisor, which reaps it if nobody joins it.
pub(crate) fn launch(
    blank: Blank,
    boot: Bootstrap,
    fds: &[BorrowedFd<'_>],
) -> Result<Arc<ChildRecord>> {
    let Blank { pid, pidfd, link } = blank;
    let record = Arc::new(ChildRecord::new(
        pid,
        boot.name.clone(),
        boot.daemon,
        pidfd,
        link,
    ));
    let sent = bootstrap::send_with_fds(record.link().as_fd(), &boot, fds);
    process_supervisor::get()
        .children()
        .add(record.clone())
        .map_err(|e| Error::io("cannot watch the child's exit", e))?;
    match sent {
        Ok(()) => Ok(record),
        Err(e) => Err(Error::Bootstrap {
            name: boot.name,
            reason: format!("the child exited before reading its bootstrap ({e})"),
        }),
    }
}

/// Forks and execs `/proc/self/exe` with `child_fd` inherited and its number in the
/// environment variable `env`. Runs on the spawner thread (see [`spawner`] for why).
/// Every procvisor spawn happens on the spawner thread (see [`procvisor_actors::spawner`]).
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
