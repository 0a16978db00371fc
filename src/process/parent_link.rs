//! The child's end of the parent link, watched without a thread.
//!
//! A child must learn two things from its parent link: a graceful stop request (the parent
//! wrote a `Stop` frame) and the parent's death (EOF). A watcher thread per child would cost as
//! much as the rest of a short child's life (thread creation is the single largest item in a
//! fork child's start here), so the link is put in signal-driven mode instead: `O_ASYNC` with
//! this process as owner makes the kernel send `SIGIO` whenever the link becomes readable. The
//! handler (async-signal-safe system calls only) drains the link without blocking: EOF means the
//! parent is gone and the child SIGKILLs itself; any bytes are stop requests (`Stop` is the only
//! message a parent sends), which set a flag and make an eventfd readable for
//! [`wait_for_stop`](crate::wait_for_stop).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

static LINK_FD: AtomicI32 = AtomicI32::new(-1);
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);
static STOP_EVENT: OnceLock<OwnedFd> = OnceLock::new();
static STOP_EVENT_FD: AtomicI32 = AtomicI32::new(-1);

fn stop_event() -> &'static OwnedFd {
    STOP_EVENT.get_or_init(|| {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
            .expect("cannot create an eventfd");
        let fd: OwnedFd = fd.into();
        STOP_EVENT_FD.store(fd.as_raw_fd(), Ordering::SeqCst);
        fd
    })
}

static HANDLER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Creates this process's stop eventfd (never inherited: a fork server must not make one).
pub(crate) fn create_stop_event() {
    stop_event();
}

/// Installs the `SIGIO` handler, which does nothing until [`watch`] names the link (a fork
/// inherits it, so the fork server installs it once for all its children).
pub(crate) fn install_handler() {
    // SAFETY: `on_readable` only makes async-signal-safe calls (recv, write, kill, getpid) and
    // touches atomics; it saves and restores errno.
    let installed = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_readable as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGIO, &action, std::ptr::null_mut()) == 0
    };
    HANDLER_INSTALLED.store(installed, Ordering::SeqCst);
}

/// Starts watching `link` (kept open for the life of the process). [`install_handler`] must
/// have run.
pub(crate) fn watch(link: RawFd) {
    LINK_FD.store(link, Ordering::SeqCst);
    let installed = HANDLER_INSTALLED.load(Ordering::SeqCst);
    // SAFETY: plain fcntl calls on an fd we own; F_SETOWN names this process.
    let async_mode = installed
        && unsafe {
            libc::fcntl(link, libc::F_SETOWN, libc::getpid()) == 0
                && libc::fcntl(
                    link,
                    libc::F_SETFL,
                    libc::fcntl(link, libc::F_GETFL) | libc::O_ASYNC,
                ) == 0
        };
    if !async_mode {
        eprintln!("procvisor: cannot watch the parent link; relying on PR_SET_PDEATHSIG alone");
    }
    // Whatever arrived before the link was in async mode raised no signal: look once now.
    drain(link);
}

extern "C" fn on_readable(_: libc::c_int) {
    // SAFETY: errno is thread-local and async-signal-safe to read and write.
    let saved = unsafe { *libc::__errno_location() };
    let link = LINK_FD.load(Ordering::SeqCst);
    if link >= 0 {
        drain(link);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// Reads everything waiting on the link without blocking. Async-signal-safe.
fn drain(link: RawFd) {
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: `buf` is valid for its length; MSG_DONTWAIT never blocks.
        let n = unsafe { libc::recv(link, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n == 0 {
            // EOF: the parent is gone, and a child never outlives its parent.
            // SAFETY: kill and getpid are async-signal-safe.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        if n < 0 {
            return;
        }
        STOP_REQUESTED.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        let event = STOP_EVENT_FD.load(Ordering::SeqCst);
        // SAFETY: writing 8 bytes from a valid u64 to an eventfd; async-signal-safe.
        unsafe { libc::write(event, (&one as *const u64).cast(), 8) };
    }
}

/// See [`crate::stop_requested`].
pub(crate) fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// See [`crate::wait_for_stop`]. The eventfd is never read, so once a stop was requested it
/// stays readable and every waiter, present or future, returns at once.
pub(crate) fn wait_for_stop(timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    let event = stop_event();
    while !stop_requested() {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                PollTimeout::try_from(left.as_millis().clamp(1, i32::MAX as u128) as i32)
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(event),
            PollFlags::POLLIN,
        )];
        let _ = poll(&mut fds, wait);
    }
    true
}
