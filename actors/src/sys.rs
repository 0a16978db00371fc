//! The OS edge: pidfds, signals and exit statuses (Linux).
//!
//! nix 0.31 has no `pidfd_open` / `pidfd_send_signal`, so those two are raw syscalls here.
//! A pidfd names one process for its whole life: signalling through it can never hit a
//! recycled pid, and it becomes readable when the process exits, which is how the process
//! supervisor learns of exits without polling.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

pub mod inherit_code;

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

    /// True for `exit(0)` (a target that returned normally).
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
pub(crate) fn wait_pidfd_readable(
    pidfd: BorrowedFd<'_>,
    deadline: Option<std::time::Instant>,
) -> bool {
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

/// Forks this process into a *sibling*: a copy of it whose parent is this process's parent
/// (`CLONE_PARENT`), so that the parent can wait for, reap and signal it as its own child.
///
/// The C library's `fork()` cannot ask for that, so this is the raw `clone` system call, with
/// the two things glibc's own `_Fork` does for the child done here as well: the kernel writes
/// the child's thread id where glibc keeps it (`CLONE_CHILD_SETTID` at the address glibc gave
/// `set_tid_address`, which `PR_GET_TID_ADDRESS` reports), and the child registers the robust
/// mutex list again (the kernel clears it on fork). What glibc's `fork()` does besides (its
/// `pthread_atfork` handlers, resetting locks other threads might hold) only matters in a
/// program with other threads: the caller must not have any.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub struct SiblingFork {
    tid_slot: usize,
    robust_head: usize,
    robust_len: usize,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
impl SiblingFork {
    /// Reads where the calling thread's id and robust mutex list live. Fails where the kernel
    /// cannot tell (`PR_GET_TID_ADDRESS` needs a kernel built with `CHECKPOINT_RESTORE`, as
    /// distribution kernels are).
    pub fn prepare() -> io::Result<SiblingFork> {
        let mut tid_slot: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: PR_GET_TID_ADDRESS writes one pointer to the address passed.
        let rc = unsafe { libc::prctl(libc::PR_GET_TID_ADDRESS, &mut tid_slot as *mut _) };
        if rc != 0 || tid_slot.is_null() {
            return Err(io::Error::other(format!(
                "cannot find the thread id slot (prctl PR_GET_TID_ADDRESS: {})",
                io::Error::last_os_error()
            )));
        }
        let mut robust_head: *mut libc::c_void = std::ptr::null_mut();
        let mut robust_len: libc::size_t = 0;
        // SAFETY: get_robust_list(0, …) reads the calling thread's list head and length into
        // the two pointers passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_get_robust_list,
                0,
                &mut robust_head as *mut _,
                &mut robust_len as *mut _,
            )
        };
        if rc != 0 {
            robust_head = std::ptr::null_mut();
        }
        Ok(SiblingFork {
            tid_slot: tid_slot as usize,
            robust_head: robust_head as usize,
            robust_len,
        })
    }

    /// Forks: `Ok(Some(pid))` in this process, `Ok(None)` in the child.
    ///
    /// # Safety
    /// The calling process must have no other thread (as after `fork()` in a threaded program,
    /// the child would inherit locks held by threads it does not have), and must be the thread
    /// that called [`SiblingFork::prepare`].
    pub unsafe fn fork(&self) -> io::Result<Option<i32>> {
        let flags = libc::CLONE_PARENT
            | libc::CLONE_CHILD_SETTID
            | libc::CLONE_CHILD_CLEARTID
            | libc::SIGCHLD;
        let tid = self.tid_slot as *mut libc::pid_t;
        // SAFETY: with no new stack, clone behaves as fork (the child resumes here on a copy of
        // this stack). The child-tid pointer is passed in both the fourth and the fifth place:
        // the architectures that take (flags, stack, parent_tid, child_tid, tls) and those that
        // take (…, tls, child_tid) both find it, and the tls argument is ignored without
        // CLONE_SETTLS.
        #[cfg(not(target_arch = "s390x"))]
        let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, tid, tid) };
        // SAFETY: as above; s390x takes the stack first.
        #[cfg(target_arch = "s390x")]
        let rc = unsafe { libc::syscall(libc::SYS_clone, 0usize, flags, 0usize, tid, 0usize) };
        match rc {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                if self.robust_head != 0 {
                    // SAFETY: registers the list head this thread had before the fork (the
                    // kernel cleared the registration in the child); the memory is the same
                    // in the child's copy. The fork server holds no robust mutex, so the list
                    // is empty.
                    unsafe {
                        libc::syscall(libc::SYS_set_robust_list, self.robust_head, self.robust_len)
                    };
                }
                Ok(None)
            }
            pid => Ok(Some(pid as i32)),
        }
    }
}

/// Forking a sibling needs glibc: elsewhere the child's C library would keep the fork
/// server's thread id (see the glibc version of this type).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub struct SiblingFork(());

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
impl SiblingFork {
    /// Always fails: see the type.
    pub fn prepare() -> io::Result<SiblingFork> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the fork start method needs Linux with glibc",
        ))
    }

    /// Never called: [`SiblingFork::prepare`] fails.
    ///
    /// # Safety
    /// The contract of the glibc version (no other thread, the thread that prepared), so that a
    /// caller is right on every platform; this one does nothing.
    pub unsafe fn fork(&self) -> io::Result<Option<i32>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}
