//! The current process: who it is (name, identity, authkey, daemon flag, parent), the stop
//! request flag, and the exit sequence that every procvisor process runs when it ends normally.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

static STOP_REQUESTED: Mutex<bool> = Mutex::new(false);
static STOP_SIGNAL: Condvar = Condvar::new();

pub(crate) fn note_stop_request() {
    *STOP_REQUESTED.lock().unwrap_or_else(|e| e.into_inner()) = true;
    STOP_SIGNAL.notify_all();
}

/// True once this process's parent has asked it to stop ([`Process::stop`](crate::Process::stop)).
/// A long-running target should check it (or block in [`wait_for_stop`]) and return; if it does
/// not, its parent escalates to SIGTERM after the grace period.
pub fn stop_requested() -> bool {
    *STOP_REQUESTED.lock().unwrap_or_else(|e| e.into_inner())
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
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut requested = STOP_REQUESTED.lock().unwrap_or_else(|e| e.into_inner());
    while !*requested {
        requested = match deadline {
            None => STOP_SIGNAL
                .wait(requested)
                .unwrap_or_else(|e| e.into_inner()),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return false;
                }
                STOP_SIGNAL
                    .wait_timeout(requested, d - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
    }
    true
}

// ---- the exit sequence -----------------------------------------------------------------

/// Runs once per process: "process shutting down", then daemonic children are terminated and
/// the others joined. Called at the end of a child's target and from the `atexit` handler of
/// every process (main returning, or `std::process::exit`). It runs on the spawner thread
/// because an `atexit` handler may not touch the calling thread's (destroyed) thread-locals.
pub(crate) fn shutdown() {
    if SHUTDOWN_DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    spawner::run(|| {
        SHUTTING_DOWN.store(true, Ordering::SeqCst);
        tracing::info!(target: "procvisor", "process shutting down");
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
    });
}

/// Logs the exit code, flushes, and exits the process after the shutdown sequence.
pub(crate) fn exit_child(code: i32) -> ! {
    shutdown();
    spawner::run(move || {
        tracing::info!(target: "procvisor", "process exiting with exitcode {code}");
    });
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}

extern "C" fn at_exit() {
    shutdown();
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
