//! The current process: who it is (name, identity, authkey, daemon flag, parent), the stop
//! request flag, and the exit sequence that every procvisor process runs when it ends normally.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use procvisor_actors::node::Node;
use procvisor_actors::process_supervisor::SupervisorMsg;
use procvisor_actors::{reply, spawner};

/// Who this process is. Set once: by `init()` in the main process, by the bootstrap in a child.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub name: String,
    pub identity: Vec<u32>,
    pub authkey: Vec<u8>,
    pub daemon: bool,
    pub parent: Option<(i32, String)>,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();
static INITIALIZED: AtomicBool = AtomicBool::new(false);
static CHILD_COUNTER: AtomicU32 = AtomicU32::new(0);
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);
static SHUTDOWN_DONE: AtomicBool = AtomicBool::new(false);

pub(crate) fn identity() -> &'static Identity {
    IDENTITY.get_or_init(main_identity)
}

fn main_identity() -> Identity {
    Identity {
        name: "MainProcess".into(),
        identity: Vec::new(),
        authkey: random_authkey(),
        daemon: false,
        parent: None,
    }
}

/// 32 bytes from the OS's random number generator.
fn random_authkey() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    if let Err(e) = getrandom::fill(&mut key) {
        // Without an OS RNG no key can be trusted; refuse rather than fall back to a weak one.
        eprintln!("procvisor: cannot read the OS random number generator: {e}");
        std::process::abort();
    }
    key
}

pub(crate) fn set_identity(id: Identity) {
    let _ = IDENTITY.set(id);
}

pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

pub(crate) fn is_initialized() -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

pub(crate) fn is_shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::SeqCst)
}

/// The next child's identity: ours plus the next ordinal (`Process-1:3` is the third child of
/// `Process-1`).
pub(crate) fn next_child_identity() -> Vec<u32> {
    let n = CHILD_COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    let mut id = identity().identity.clone();
    id.push(n);
    id
}

/// The name to show in messages (falls back to `MainProcess`).
pub(crate) fn name_for_messages() -> String {
    identity().name.clone()
}

// ---- graceful stop requests ------------------------------------------------------------

/// True once this process's parent has asked it to stop ([`Process::stop`](crate::Process::stop)).
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

/// Something that must be stopped when its process exits normally, before the process's
/// children are joined (a running supervisor would otherwise keep restarting them forever).
pub(crate) trait StopAtExit: Send + Sync {
    /// Stops it, blocking until done.
    fn stop_at_exit(&self);
}

static STOP_AT_EXIT: std::sync::Mutex<Vec<std::sync::Weak<dyn StopAtExit>>> =
    std::sync::Mutex::new(Vec::new());

/// Registers `item` to be stopped by the exit sequence if it still exists then.
pub(crate) fn stop_at_exit(item: std::sync::Weak<dyn StopAtExit>) {
    let mut items = STOP_AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
    items.retain(|w| w.strong_count() > 0);
    items.push(item);
}

/// Whether something registered with [`stop_at_exit`] still exists (a queue's feeder may
/// have items to flush even in a process that never started a child).
fn has_stop_at_exit_items() -> bool {
    STOP_AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|w| w.strong_count() > 0)
}

fn run_shutdown() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
    tracing::info!(target: "procvisor", "process shutting down");
    super::prestart::discard_all();
    // Newest first, as a stack of services is taken down.
    let items: Vec<_> =
        std::mem::take(&mut *STOP_AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for item in items.iter().rev().filter_map(std::sync::Weak::upgrade) {
        item.stop_at_exit();
    }
    if let Some(node) = Node::try_get() {
        let (reply, pending) = reply::channel();
        if node
            .supervisor()
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
    let _ = Node::try_get();
    let _ = has_stop_at_exit_items();
    let _ = crate::util::log_level();
    let _ = SHUTDOWN_DONE.load(Ordering::SeqCst);
}

/// Logs the exit code, flushes, and exits the process after the shutdown sequence.
///
/// Like Python's children (`os._exit` after the bootstrap), a child whose target returned ends
/// with `_exit` once its own exit sequence has run and its output is flushed: the C library's
/// `exit` would go on to run `atexit` handlers and the destructors of every loaded library,
/// which fault in pages of each of them: close to half the running time of a no-op child. (A target
/// that calls `std::process::exit` itself gets the full C exit, our sequence included.)
pub(crate) fn exit_child(code: i32) -> ! {
    shutdown();
    tracing::info!(target: "procvisor", "process exiting with exitcode {code}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every C stdio stream (output a C library buffered).
    unsafe { libc::fflush(std::ptr::null_mut()) };
    // SAFETY: _exit ends the process and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// The `atexit` handler. It runs after the main thread's thread-locals are destroyed, so the
/// sequence (which logs, and talks to the node) runs on the spawner thread; this thread only
/// waits on a mutex and condvar, which need no thread-local storage. A process with nothing to
/// shut down (no children ever, no logging, no queue items to flush) skips even that.
extern "C" fn at_exit() {
    if SHUTDOWN_DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    let nothing_to_do = Node::try_get().is_none()
        && crate::util::log_level().is_none()
        && !has_stop_at_exit_items();
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
