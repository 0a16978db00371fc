//! The OS edge: pidfds, signals and exit statuses (Linux).
//!
//! nix 0.31 has no `pidfd_open` / `pidfd_send_signal`, so those two are raw syscalls here.
//! A pidfd names one process for its whole life: signalling through it can never hit a
//! recycled pid, and it becomes readable when the process exits, which is how the process
//! supervisor learns of exits without polling.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

/// How a process ended, as `waitid` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitStatus {
    /// The process called `exit(code)` (or returned from `main`).
    Exited(i32),
    /// The process was killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// Python's `exitcode`: the exit code, or `-N` for a process killed by signal `N`.
    pub fn exitcode(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled(sig) => -sig,
        }
    }

    /// True for `exit(0)`.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exit code {code}"),
            ExitStatus::Signaled(sig) => write!(f, "killed by {}", signal_name(sig)),
        }
    }
}

/// `SIGTERM` for 15 and so on; `signal N` for numbers the OS does not name.
pub fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

/// Opens a pidfd for `pid`.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `sig` to the process behind `pidfd`. A process that already exited (but is not yet
/// reaped) gives `ESRCH`, which is reported as `Ok(false)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<bool> {
    // SAFETY: the fd is valid for the borrow; a null siginfo pointer is allowed and means
    // "as if sent by kill(2)"; flags must be 0.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Waits for the child behind `pidfd` to exit. `reap = false` leaves it a zombie
/// (`WNOWAIT`) so the status can be read again; `block = false` returns `Ok(None)` while it
/// still runs.
pub fn wait_pidfd(
    pidfd: BorrowedFd<'_>,
    reap: bool,
    block: bool,
) -> io::Result<Option<ExitStatus>> {
    let mut flags = libc::WEXITED;
    if !reap {
        flags |= libc::WNOWAIT;
    }
    if !block {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid value and lets us detect
        // "no child changed state" under WNOHANG (si_pid stays 0).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t; P_PIDFD takes the fd as the id.
        let rc = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        // SAFETY: waitid filled `info` (or left it zeroed under WNOHANG); these accessors read
        // the union fields that SIGCHLD-type siginfo defines.
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(match code {
            libc::CLD_EXITED => ExitStatus::Exited(status),
            _ => ExitStatus::Signaled(status),
        }));
    }
}

/// Identity of the running executable (device and inode of `/proc/self/exe`), used to check
/// that a child re-executed the very same binary as its parent.
pub fn executable_identity() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    static IDENTITY: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    if let Some(id) = IDENTITY.get() {
        return Ok(*id);
    }
    let meta = std::fs::metadata("/proc/self/exe")?;
    Ok(*IDENTITY.get_or_init(|| (meta.dev(), meta.ino())))
}

/// Whether the process behind `pidfd` has exited (its pidfd polls readable). Works for any
/// process, not only our children.
pub fn pidfd_exited(pidfd: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Blocks until the process behind `pidfd` has exited (`true`) or `deadline` passes (`false`).
/// Works for any process, not only our children.
pub fn wait_pidfd_readable(pidfd: BorrowedFd<'_>, deadline: Option<std::time::Instant>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                // Rounded up, so a wait never ends early for want of a millisecond.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(n) if n > 0 => return true,
            Ok(_) => {
                if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                    return false;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            // A pidfd that cannot be polled: let the caller fall back on published statuses.
            Err(_) => return true,
        }
    }
}
