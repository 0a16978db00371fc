//! The spawner: one long-lived thread that starts every child of this process.
//!
//! Linux's `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not only when
//! the whole process does. Forking from whichever user thread called `start()` would let a
//! short-lived thread's exit kill its children, so all forks happen here, on a thread that lives
//! as long as the process. The same thread runs the at-exit shutdown: an `atexit` handler runs
//! after the main thread's thread-locals are destroyed, so it only hands the work over through
//! a mutex and a condvar, which need no thread-local storage.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

use crate::reply::{self, Pending};
use crate::sync_util::lock;

type Job = Box<dyn FnOnce() + Send>;

struct Spawner {
    jobs: Mutex<VecDeque<Job>>,
    wake: Condvar,
}

static SPAWNER: OnceLock<Spawner> = OnceLock::new();

fn spawner() -> &'static Spawner {
    let mut started = false;
    let s = SPAWNER.get_or_init(|| {
        started = true;
        Spawner {
            jobs: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
        }
    });
    if started {
        std::thread::Builder::new()
            .name("procvisor-spawner".into())
            .spawn(|| serve(SPAWNER.get().expect("initialised above")))
            .expect("cannot start the procvisor spawner thread");
    }
    s
}

/// The spawner thread's kernel thread id, once it runs.
static SPAWNER_TID: AtomicI32 = AtomicI32::new(0);

fn serve(s: &'static Spawner) {
    // SAFETY: gettid has no preconditions.
    SPAWNER_TID.store(unsafe { libc::gettid() }, Ordering::SeqCst);
    loop {
        let job = reply::wait_for(&s.wake, lock(&s.jobs), None, VecDeque::pop_front);
        job.expect("no deadline")();
    }
}

/// Starts the spawner thread now (idempotent). `procvisor::init()` calls this so that the
/// thread exists before anything may need it at exit.
pub fn ensure_started() {
    spawner();
}

/// Whether the caller is the spawner thread (whose own queued jobs cannot run while it waits).
/// Uses no thread-local storage, so it may be called from an `atexit` handler.
pub fn is_spawner_thread() -> bool {
    // SAFETY: gettid has no preconditions.
    SPAWNER_TID.load(Ordering::SeqCst) == unsafe { libc::gettid() }
}

/// Queues `f` to run on the spawner thread and returns a handle to its result.
pub fn submit<T, F>(f: F) -> Pending<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (reply, pending) = reply::channel();
    let s = spawner();
    lock(&s.jobs).push_back(Box::new(move || reply.send(f())));
    s.wake.notify_one();
    pending
}

/// Runs `f` on the spawner thread and blocks until it returns.
pub fn run<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    submit(f)
        .wait()
        .expect("the spawner thread dropped a job (it panicked)")
}
