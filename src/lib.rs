//! # procvisor
//!
//! Python's `multiprocessing`, rebuilt in Rust as an actor framework with supervised worker
//! processes. Every [`Process`] runs in its own OS process; a process supervisor actor in each
//! process watches its children, reaps them, and enforces daemon / non-daemon shutdown.
//!
//! ```no_run
//! use procvisor::Process;
//!
//! fn worker(num: u32) {
//!     println!("Worker: {num} in {}", procvisor::current_process().name());
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init(); // first line of main: a child stops here and runs its target
//!     let child = Process::new(worker, (7,)).start()?;
//!     assert!(child.join()?.success());
//!     Ok(())
//! }
//! ```
//!
//! ## How children start
//!
//! The default start method, *spawn*, re-executes the current program; [`init`] (the analogue
//! of Python's `freeze_support()`) recognises the child, runs its target and exits, so the rest
//! of `main` never runs in a child. Integration-test crates put [`test_init!`] at their top
//! instead. The opt-in *fork* method (see [`StartMethod`]) forks from a clean fork server.
//!
//! ## Map of the crate
//!
//! | module | Python | what |
//! |---|---|---|
//! | [`process`] | `multiprocessing.process` | [`Process`] → [`Child`], [`current_process`], [`parent_process`], [`active_children`] |
//! | [`connection`] | `Pipe`, `multiprocessing.connection` | [`pipe`], [`pipe_oneway`] ([`Receiver`], [`Sender`]), [`Connection`], [`Listener`], [`Client`], [`wait`], [`wait_timeout`] |
//! | [`queues`] | `Queue`, `JoinableQueue`, `SimpleQueue` | [`Queue`], [`JoinableQueue`], [`SimpleQueue`]: FIFO queues between processes |
//! | [`pool`] | `multiprocessing.Pool` | [`Pool`], [`AsyncResult`], [`IMapIterator`]: worker processes with crash recovery |
//! | [`supervisor`] | (Erlang/OTP) | [`Supervisor`], [`ChildSpec`], [`SupervisorSpec`]: supervision trees of processes |
//! | [`synchronize`] | `Lock`, `RLock`, `Semaphore`, `Condition`, `Event`, `Barrier` | [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Condition`], [`Event`], [`Barrier`] (shared memory, futexes, recovery of dead holders) |
//! | [`sharedctypes`] | `Value`, `Array`, `multiprocessing.sharedctypes` | [`Value`], [`Array`], [`RawValue`], [`RawArray`], [`synchronized`], [`sharedctypes::copy`] |
//! | [`context`] | `multiprocessing.context` | [`StartMethod`], [`set_start_method`], [`start_method`] (`get_start_method`) |
//! | [`util`] | `multiprocessing.util` | [`log_to_stderr`] |
//! | [`error`] | exceptions | [`Error`] and one error type per domain |
//!
//! ## Conventions: Rust first, Python findable
//!
//! The API follows `std`, crossbeam-channel and tokio; Python's names stay findable through
//! `#[doc(alias)]` (search the docs for `qsize`, `get_nowait`, `apply_async`, …) and the table
//! above.
//!
//! * **One method family per operation**, never a boolean or positional mode argument: `x()`
//!   blocks, `try_x()` never blocks, `x_timeout(d)` gives up after `d`, `x_async()` is the
//!   `async fn`. So `Queue::get` / `try_get` / `get_timeout` / `get_async`, `Lock::lock` /
//!   `try_lock` / `lock_timeout` / `lock_async`, `Child::join` / `join_timeout` / `join_async`.
//! * **`_async` means one thing: an `async fn`** (a future to `.await`). Python's
//!   submit-and-return-a-handle methods are `submit*`: `Pool::submit` is `apply_async`,
//!   `Pool::submit_map` is `map_async`; their handles ([`AsyncResult`]) have the blocking and
//!   async waits. Every async method is cancel safe unless its docs say otherwise; a timeout
//!   for an async call is `tokio::time::timeout` around it.
//! * **Types for states.** What Python checks at run time is a type here where it can be: a
//!   [`Process`] is a builder consumed by `start()`, which returns a [`Child`]; this process and
//!   its parent are [`CurrentProcess`] and [`ParentProcess`], which cannot be joined; an
//!   [`AsyncResult`]'s value is taken by a `get(self)` that consumes it.
//! * **Names:** `len` / `is_empty` / `is_full`, no `get_` prefixes, builders for settings.
//! * **Errors per domain**, each an enum a caller can match exhaustively where it matters
//!   (`GetError::Empty`, `StartError::DaemonicParent`, …), each converting into [`Error`] so
//!   that `?` works across domains. See [`error`].

#![warn(missing_docs)]

mod code_ref;
pub mod connection;
pub mod context;
pub mod error;
pub mod pool;
pub mod process;
pub mod queues;
mod runtime;
pub mod sharedctypes;
pub mod supervisor;
pub mod synchronize;
pub mod util;

pub use connection::{
    Address, Client, ClientBuilder, Connection, Family, Listener, ListenerBuilder, Receiver,
    Sender, Waitable, pipe, pipe_oneway, wait, wait_timeout,
};
pub use context::{StartMethod, force_start_method, set_start_method, start_method};
pub use error::{Error, Result};
pub use pool::{AsyncResult, IMapIterator, Pool, PoolBuilder};
pub use process::{
    Child, CurrentProcess, ExitStatus, ParentProcess, Process, Run, Target, TargetOutput,
    active_children, cpu_count, current_process, parent_process, set_spawn_prestart,
    stop_requested, wait_for_stop,
};
pub use queues::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};
pub use sharedctypes::{
    Array, Char, LockSpec, RawArray, RawValue, Shareable, TypeCode, Value, synchronized,
};
pub use supervisor::{ChildSpec, Supervisor, SupervisorSpec};
pub use synchronize::{
    Acquired, AnyLock, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore,
};
pub use util::{LOG_TARGET, log_to_stderr};

/// Makes this program able to start processes. Call it first in `main`.
///
/// In the main process it prepares the process supervisor machinery and returns at once. In a
/// child started by procvisor it never returns: it runs the child's target and exits, so the
/// rest of `main` runs only in the main process.
pub fn init() {
    if let Some(control) = process::fork_server_fd() {
        process::serve_forks(control);
    }
    if let Some(link) = process::bootstrap_link() {
        process::run_child(link);
    }
    runtime::identity();
    runtime::mark_initialized();
    process::current::register_at_exit();
    procvisor_actors::spawner::ensure_started();
}

/// [`init`] as [`test_init!`] calls it, from the loader's constructors: a child then does
/// what the Rust runtime's start-up would have done for it (see [`test_init!`]).
#[doc(hidden)]
pub fn __init_before_runtime_start() {
    runtime::mark_before_runtime_start();
    init();
}

/// Runs [`init`] before the test harness's `main`, so that an integration-test crate can start
/// processes. Put it once at the top of each test crate (each file in `tests/`):
///
/// ```ignore
/// procvisor::test_init!();
/// ```
///
/// It registers a constructor in the ELF `.init_array`, which the loader runs before `main`; in
/// a child it runs the child's target there and exits, so the harness never starts in a child.
/// Such a child does first what the Rust runtime's start-up does before `main` in a binary, so
/// that it behaves the same: `SIGPIPE` is ignored (a write to a closed pipe is an error, not a
/// death), and the target runs on a thread named `main` (as panic messages name it).
#[macro_export]
macro_rules! test_init {
    () => {
        #[used]
        // SAFETY: `.init_array` entries are plain `extern "C" fn()` pointers run once by the
        // loader before main; this one only calls `procvisor::init()`.
        #[unsafe(link_section = ".init_array")]
        static __PROCVISOR_TEST_INIT: extern "C" fn() = {
            extern "C" fn procvisor_test_init() {
                $crate::__init_before_runtime_start();
            }
            procvisor_test_init
        };
    };
}

/// The README's example, compiled as a doctest so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
