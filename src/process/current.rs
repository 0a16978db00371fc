//! The current process: who it is (name, identity, authkey, daemon flag, parent), the stop
//! request flag, and the exit sequence that every procvisor process runs when it ends normally.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use procvisor_actors::process_supervisor::{self, SupervisorMsg};
use procvisor_actors::{reply, spawner};

use crate::runtime;

pub(crate) use crate::runtime::{Identity, mark_initialized, name_for_messages, set_identity};

static SHUTDOWN_DONE: AtomicBool = AtomicBool::new(false);

// ---- graceful stop requests ------------------------------------------------------------

/// True once this process's parent has asked it to stop ([`Child::stop`](crate::Child::stop)).
/// A long-running target should check it (or block in [`wait_for_stop`]) and return; if it does
/// not, its parent escalates to SIGTERM after the grace period.
pub fn stop_requested() -> bool {
    super::parent_link::stop_requested()
}

/// Blocks until a stop is requested (`true`) or `timeout` passes (`false`); `None` waits forever.
///
/// ```no_run
/// // In a child's target: serve until asked to stop.
/// while !procvisor::wait_for_stop(Some(std::time::Duration::from_millis(100))) {
///     // do a slice of work
/// }
/// ```
pub fn wait_for_stop(timeout: Option<Duration>) -> bool {
    super::parent_link::wait_for_stop(timeout)
}

// ---- the exit sequence -----------------------------------------------------------------

/// Runs once per process: "process shutting down", then daemonic children are terminated and
/// the others joined. Called on the main thread at the end of a child's target, and from the
/// `atexit` handler of every process (main returning, or `std::process::exit`).
pub(crate) fn shutdown() {
    if !SHUTDOWN_DONE.swap(true, Ordering::SeqCst) {
        run_shutdown();
    }
}

fn run_shutdown() {
    runtime::mark_shutting_down();
    tracing::info!(target: "procvisor", "process shutting down");
    super::prestart::discard_all();
    // Newest first, as a stack of services is taken down.
    let items = runtime::take_stop_at_exit_items();
    for item in items.iter().rev().filter_map(std::sync::Weak::upgrade) {
        item.stop_at_exit();
    }
    if let Some(supervisor) = process_supervisor::try_get() {
        let (reply, pending) = reply::channel();
        if supervisor
            .actor()
            .cast(SupervisorMsg::Shutdown(reply))
            .is_ok()
        {
            let _ = pending.wait();
        }
    }
}

/// Runs, harmlessly, what the exit sequence of a process with nothing to shut down runs (the
/// checks that find nothing to do), so that a child started ahead has that code mapped; see
/// `child_main::rehearse_while_waiting`.
pub(crate) fn rehearse_exit() {
    let _ = process_supervisor::try_get();
    let _ = runtime::has_stop_at_exit_items();
    let _ = runtime::log_level();
    let _ = SHUTDOWN_DONE.load(Ordering::SeqCst);
}

/// Logs the exit code, flushes, and exits the process after the shutdown sequence.
///
/// The end of a child whose target returned is a full, orderly exit, as in CPython's
/// children: our exit sequence first, then the C library's `exit`, which runs the `atexit`
/// handlers registered in the child (C libraries, coverage runtimes that write their data at
/// exit) and flushes C stdio. Our own `atexit` handler finds the sequence done and returns.
pub(crate) fn exit_child(code: i32) -> ! {
    shutdown();
    tracing::info!(target: "procvisor", "process exiting with exitcode {code}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    super::dress_rehearsal::report_if_rehearsing();
    std::process::exit(code)
}

/// The `atexit` handler. It runs after the main thread's thread-locals are destroyed, so the
/// sequence (which logs, and talks to the node) runs on the spawner thread; this thread only
/// waits on a mutex and condvar, which need no thread-local storage. A process with nothing to
/// shut down (no children ever, no logging, no queue items to flush) skips even that.
extern "C" fn at_exit() {
    if SHUTDOWN_DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let nothing_to_do = process_supervisor::try_get().is_none()
        && runtime::log_level().is_none()
        && !runtime::has_stop_at_exit_items();
    if !nothing_to_do {
        spawner::run(run_shutdown);
    }
}

pub(crate) fn register_at_exit() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.swap(true, Ordering::SeqCst) {
        // SAFETY: `at_exit` is a plain `extern "C" fn()` that lives for the whole program.
        unsafe {
            libc::atexit(at_exit);
        }
    }
}
