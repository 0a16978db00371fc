//! Start methods: how a child process comes to exist (Python's `set_start_method`).
//!
//! * [`StartMethod::Spawn`] (the default) re-executes the current program. The child runs
//!   `main` only as far as `procvisor::init()`, which recognises it as a child, runs its target
//!   and exits. Nothing of the parent's state is inherited except what travels in the target's
//!   arguments, so it is safe whatever the parent was doing (threads, locks, runtimes).
//! * [`StartMethod::Fork`] forks a *fork server*: a helper process started (by spawn) the first
//!   time it is needed, which has run nothing but `procvisor::init()` and has a single thread.
//!   Each child is forked from it, so a child starts without paying for `exec` and for the
//!   dynamic loader, yet can never inherit a lock held by another thread of your program.
//!   The child is nevertheless *your* process's child, for the OS as for procvisor (it is
//!   forked with `CLONE_PARENT`), so it is reaped, signalled and listed like a spawned one and
//!   outlives a fork server that dies; `ps` shows the fork server as `procvisor-fork`. This
//!   needs Linux with glibc (elsewhere fork starts fail with a clear error).
//!   Hazards: a fork child shares nothing with *your* process's state either (the fork server
//!   never ran your `main`), so the same rule as spawn applies: everything the target needs
//!   comes through its arguments; and file descriptors opened by your program are not
//!   inherited. Python's plain `fork` (forking the caller itself) is deliberately not offered:
//!   in a multi-threaded program (tokio, ractor and the test harness all start threads) the
//!   child may deadlock on a lock that another thread held at the moment of the fork.
//!
//! Both methods keep children started ahead of time, so that a start costs a message rather
//! than an exec or a fork: the fork server keeps two spares forked from the same frozen state
//! it forks everything from; spawn keeps one reserve (once a process has spawned two children),
//! which is this program re-executed
//! earlier: it is used only while the environment, the working directory and the files behind
//! stdout and stderr are what they were when it was started, and otherwise replaced by a fresh
//! spawn. Other process attributes (umask, resource limits, credentials) are those of the
//! moment it was started; a program that changes those between starts can turn spawn
//! prestarting off with [`set_spawn_prestart`](crate::set_spawn_prestart).

use std::sync::atomic::{AtomicU8, Ordering};

/// How child processes are started. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StartMethod {
    /// Re-execute the current program (the default).
    #[default]
    Spawn,
    /// Fork from a single-threaded fork server started on first use.
    ///
    /// # Code inheritance (opt-in)
    ///
    /// `fork` copies no page table entry of a clean file mapping, so a fork child maps the
    /// program's code it runs itself; a spare does most of that while it waits for its start,
    /// off the path of the start that uses it. With the environment variable
    /// `PROCVISOR_FORK_INHERIT_CODE=1` (read once, by the fork server as it starts: set it
    /// before the first fork start) the fork server instead has its children inherit that code
    /// mapped: it drops its own page table entries of the program's code, runs a child's path,
    /// and writes one byte of each code mapping that path touched back onto itself through
    /// `/proc/self/mem`, which gives the mapping an `anon_vma`, after which `fork` copies its
    /// entries.
    ///
    /// It is an opt-in because it depends on kernel internals (that `fork` copies the entries
    /// of a mapping with an `anon_vma`, and that dropping its pages keeps it) and on security
    /// policy (writing through `/proc/self/mem` to a read-only mapping, which
    /// `proc_mem.force_override=never` forbids; the fork server then silently goes without),
    /// and because it measured no faster: fewer page faults per child, no more starts per
    /// second, with or without real work in the child (`docs/perf.md`, "Fork start", and
    /// `docs/decisions/fork-code-inheritance.md`).
    Fork,
}

impl StartMethod {
    /// Python's name for the method.
    pub fn as_str(self) -> &'static str {
        match self {
            StartMethod::Spawn => "spawn",
            StartMethod::Fork => "fork",
        }
    }
}

impl std::fmt::Display for StartMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StartMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "spawn" => Ok(StartMethod::Spawn),
            "fork" | "forkserver" => Ok(StartMethod::Fork),
            other => Err(format!(
                "unknown start method {other:?} (expected spawn or fork)"
            )),
        }
    }
}

const UNSET: u8 = 0;
static METHOD: AtomicU8 = AtomicU8::new(UNSET);

fn encode(m: StartMethod) -> u8 {
    match m {
        StartMethod::Spawn => 1,
        StartMethod::Fork => 2,
    }
}

/// [`set_start_method`] after the start method was already chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the start method has already been set to {current}; use force_start_method to change it")]
pub struct StartMethodAlreadySet {
    /// The method in force.
    pub current: StartMethod,
}

/// Chooses the default start method for processes created afterwards in this process. Like
/// Python's, it may be chosen once: a second call fails (so that two libraries cannot fight
/// over it unnoticed); [`force_start_method`] changes it anyway.
///
/// ```
/// use procvisor::{StartMethod, force_start_method, set_start_method, start_method};
/// set_start_method(StartMethod::Fork).unwrap();
/// assert_eq!(start_method(), StartMethod::Fork);
/// assert!(set_start_method(StartMethod::Spawn).is_err());
/// force_start_method(StartMethod::Spawn);
/// assert_eq!(start_method(), StartMethod::Spawn);
/// ```
#[doc(alias = "set_start_method(method, force=False)")]
pub fn set_start_method(method: StartMethod) -> Result<(), StartMethodAlreadySet> {
    METHOD
        .compare_exchange(UNSET, encode(method), Ordering::SeqCst, Ordering::SeqCst)
        .map(|_| ())
        .map_err(|_| StartMethodAlreadySet {
            current: start_method(),
        })
}

/// Sets the default start method whether or not it was chosen before (Python's
/// `set_start_method(method, force=True)`).
#[doc(alias = "set_start_method(method, force=True)")]
pub fn force_start_method(method: StartMethod) {
    METHOD.store(encode(method), Ordering::SeqCst);
}

/// The start method new processes use unless they choose their own.
#[doc(alias = "get_start_method")]
pub fn start_method() -> StartMethod {
    match METHOD.load(Ordering::SeqCst) {
        2 => StartMethod::Fork,
        _ => StartMethod::Spawn,
    }
}
