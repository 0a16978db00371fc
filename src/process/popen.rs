//! Starting a child: the start-method strategies (CPython's `popen_*` modules). Each one turns a
//! [`Bootstrap`] into a running child and a [`ChildRecord`] that the process supervisor watches.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use procvisor_actors::bootstrap::{self, BOOTSTRAP_FD_ENV, Bootstrap};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::node::Node;
use procvisor_actors::process_supervisor::SupervisorMsg;
use procvisor_actors::{spawner, sys};

use crate::error::{Error, Result};

/// Starts a child by re-executing this program, hands it its bootstrap, and puts it under the
/// process supervisor. Returns once the child exists (not once it has run anything).
pub(crate) fn spawn(boot: Bootstrap, fds: &[BorrowedFd<'_>]) -> Result<Arc<ChildRecord>> {
    let name = boot.name.clone();
    let (parent_end, child_end) =
        UnixStream::pair().map_err(|e| Error::io("cannot create the bootstrap socket", e))?;
    let child_fd: OwnedFd = child_end.into();
    let parent_pid = boot.parent_pid;
    // The child's end is closed (dropped) on the spawner thread right after the fork, so that
    // the child's exit is the only thing that can make the link read EOF.
    let (pid, pidfd) = spawner::run(move || exec_self(child_fd, BOOTSTRAP_FD_ENV, parent_pid))
        .map_err(|source| Error::Spawn {
            name: name.clone(),
            source,
        })?;
    let record = Arc::new(ChildRecord::new(
        pid,
        name.clone(),
        boot.daemon,
        pidfd,
        parent_end,
        false,
    ));
    let sent = bootstrap::send_with_fds(record.link().as_fd(), &boot, fds);
    Node::get()
        .supervisor()
        .cast(SupervisorMsg::Adopt(record.clone()))
        .map_err(|_| {
            Error::io(
                "process supervisor",
                std::io::Error::other("the process supervisor actor is gone"),
            )
        })?;
    match sent {
        Ok(()) => Ok(record),
        Err(e) => Err(Error::Bootstrap {
            name,
            reason: format!("the child exited before reading its bootstrap ({e})"),
        }),
    }
}

/// Forks and execs `/proc/self/exe` with `child_fd` inherited and its number in the
/// environment variable `env`. Runs on the spawner thread (see [`spawner`] for why).
pub(crate) fn exec_self(
    child_fd: OwnedFd,
    env: &str,
    parent_pid: i32,
) -> std::io::Result<(i32, OwnedFd)> {
    let fd = child_fd.as_raw_fd();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0(program_name())
        .env(env, fd.to_string())
        .stdin(Stdio::null());
    // SAFETY: the closure runs in the forked child before exec and only makes
    // async-signal-safe system calls (fcntl, prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // SAFETY: `fd` is open in the child (inherited from the parent across fork).
            let borrowed = std::os::fd::BorrowedFd::borrow_raw(fd);
            fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::empty()))?;
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The parent may have died between fork and prctl: then nobody would signal us.
            if nix::unistd::getppid().as_raw() != parent_pid {
                return Err(std::io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
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
