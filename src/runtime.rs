//! Process-wide state every layer reads: who this process is, whether `init()` ran, whether it
//! is shutting down, what must be stopped at exit, and the log level children inherit.
//!
//! This is the ground floor of the crate beside [`error`](crate::error) and
//! [`context`](crate::context): it imports nothing from the modules above it, so queues,
//! supervisors and processes can all register with it without importing one another.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock, Weak};

use procvisor_actors::sync_util::lock;
use tracing::Level;

// ---- who this process is ---------------------------------------------------------------

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

/// The next child's identity: ours plus the next ordinal (`Process-1:3` is the third child of
/// `Process-1`).
pub(crate) fn next_child_identity() -> Vec<u32> {
    let n = CHILD_COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    let mut id = identity().identity.clone();
    id.push(n);
    id
}

/// The name to show in messages (`MainProcess` until a bootstrap says otherwise).
pub(crate) fn name_for_messages() -> String {
    identity().name.clone()
}

/// Set by [`test_init!`](crate::test_init) in a program whose `init` runs from the loader's
/// constructors, before the Rust runtime's own start-up (which ignores `SIGPIPE` and names the
/// main thread): a child of such a program does both itself before its target runs.
static BEFORE_RUNTIME_START: AtomicBool = AtomicBool::new(false);

pub(crate) fn mark_before_runtime_start() {
    BEFORE_RUNTIME_START.store(true, Ordering::SeqCst);
}

pub(crate) fn is_before_runtime_start() -> bool {
    BEFORE_RUNTIME_START.load(Ordering::SeqCst)
}

pub(crate) fn mark_initialized() {
    INITIALIZED.store(true, Ordering::SeqCst);
}

pub(crate) fn is_initialized() -> bool {
    INITIALIZED.load(Ordering::SeqCst)
}

pub(crate) fn mark_shutting_down() {
    SHUTTING_DOWN.store(true, Ordering::SeqCst);
}

pub(crate) fn is_shutting_down() -> bool {
    SHUTTING_DOWN.load(Ordering::SeqCst)
}

// ---- what the exit sequence stops ------------------------------------------------------

/// Something that must be stopped when its process exits normally, before the process's
/// children are joined (a running supervisor would otherwise keep restarting them forever; a
/// queue's feeder must flush what it holds).
pub(crate) trait StopAtExit: Send + Sync {
    /// Stops it, blocking until done.
    fn stop_at_exit(&self);
}

static STOP_AT_EXIT: Mutex<Vec<Weak<dyn StopAtExit>>> = Mutex::new(Vec::new());

/// Registers `item` to be stopped by the exit sequence if it still exists then.
pub(crate) fn stop_at_exit(item: Weak<dyn StopAtExit>) {
    let mut items = lock(&STOP_AT_EXIT);
    items.retain(|w| w.strong_count() > 0);
    items.push(item);
}

/// Whether something registered with [`stop_at_exit`] still exists (a queue's feeder may have
/// items to flush even in a process that never started a child).
pub(crate) fn has_stop_at_exit_items() -> bool {
    lock(&STOP_AT_EXIT).iter().any(|w| w.strong_count() > 0)
}

/// Takes every registered item, in registration order (the exit sequence stops them newest
/// first).
pub(crate) fn take_stop_at_exit_items() -> Vec<Weak<dyn StopAtExit>> {
    std::mem::take(&mut *lock(&STOP_AT_EXIT))
}

// ---- the log level children inherit ----------------------------------------------------

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Records the level [`log_to_stderr`](crate::log_to_stderr) installed.
pub(crate) fn set_log_level(level: Level) {
    LEVEL.store(level_to_u8(level), Ordering::SeqCst);
}

/// The level set by [`log_to_stderr`](crate::log_to_stderr) in this process, if any.
pub(crate) fn log_level() -> Option<Level> {
    level_from_u8(LEVEL.load(Ordering::SeqCst))
}

/// The level as it travels in a bootstrap (`None`: no logging).
pub(crate) fn log_level_u8() -> Option<u8> {
    match LEVEL.load(Ordering::SeqCst) {
        0 => None,
        n => Some(n),
    }
}

fn level_to_u8(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

pub(crate) fn level_from_u8(n: u8) -> Option<Level> {
    Some(match n {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        5 => Level::TRACE,
        _ => return None,
    })
}
