//! [`Pool`]: a pool of worker processes (Python's `multiprocessing.Pool`), with crash recovery
//! and task timeouts.
//!
//! ```standalone_crate
//! use std::time::Duration;
//! use procvisor::Pool;
//!
//! fn f(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init();
//!     let pool = Pool::new(4)?; // start 4 worker processes
//!     let result = pool.submit(f, (10,))?; // evaluate "f(10)" asynchronously
//!     assert!(result.wait_timeout(Duration::from_secs(1)));
//!     assert_eq!(result.get()?, 100);
//!     assert_eq!(pool.map(f, 0..10)?, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
//!     let mut it = pool.imap(f, 0..10)?;
//!     assert_eq!(it.next(), Some(Ok(0)));
//!     assert_eq!(it.next_timeout(Duration::from_secs(1))?, Some(Ok(1)));
//!     Ok(())
//! }
//! ```
//!
//! Task functions are `fn` items or closures that capture nothing, with serde arguments and
//! results, as for [`Process`](crate::Process); they may return a plain value or a `Result`
//! (see [`TaskOutput`]). A task that returns `Err` or panics fails alone
//! ([`TaskError::Failed`], [`TaskError::Panicked`] with the panic's message); its worker keeps
//! serving.
//!
//! ## The calls
//!
//! | Python | here | returns |
//! |---|---|---|
//! | `apply(f, args)` | [`Pool::apply`] | the value, or a [`RunError`] |
//! | `apply_async(f, args)` | [`Pool::submit`] | an [`AsyncResult`], or a [`PoolError`] |
//! | `map` / `starmap` | [`Pool::map`] / [`Pool::starmap`] | the values, or a [`RunError`] |
//! | `map_async` / `starmap_async` | [`Pool::submit_map`] / [`Pool::submit_starmap`] | an [`AsyncResult`], or a [`PoolError`] |
//! | `imap` / `imap_unordered` | [`Pool::imap`] / [`Pool::imap_unordered`] | an [`IMapIterator`], or a [`PoolError`] |
//! | `callback=`, `error_callback=`, `chunksize=` | [`Pool::task`], [`Pool::map_task`], [`Pool::starmap_task`] | a builder with those options (and a per-task timeout) |
//!
//! The plain methods are the builders with their defaults: `pool.submit(f, args)` is
//! `pool.task(f, args).submit()`, `pool.map(f, items)` is `pool.map_task(f, items).run()`.
//!
//! Errors: a [`PoolError`] when the pool refuses a call (closed, terminated, broken), a
//! [`TaskError`] when a submitted task fails (from [`AsyncResult::get`], each item of an
//! [`IMapIterator`], and error callbacks), a [`RunError`] (either) from the calls that submit
//! and wait in one step. All convert into [`Error`](crate::Error) with `?`.
//!
//! ## Beyond Python
//!
//! * **Crash recovery.** A worker that dies mid-task (SIGKILL, abort, segfault, `exit`) is
//!   replaced by the pool's supervisor; the task it held fails with [`TaskError::WorkerLost`]
//!   carrying its exit status, a `map` fails with it promptly, and the pool keeps serving
//!   (Python's pool hangs forever there).
//! * **Task timeouts.** [`PoolBuilder::task_timeout`] or [`TaskBuilder::timeout`]: a task that
//!   runs longer has its worker killed and replaced, and fails alone with
//!   [`TaskError::Timeout`].
//! * **A broken initializer** fails the pool with [`PoolError::Broken`] instead of restarting
//!   workers forever.
//!
//! ## How it works
//!
//! Each worker is a daemonic child process holding one end of a duplex [`Connection`]. Its
//! lifecycle belongs to a [`Supervisor`] (one permanent child per worker): it starts the
//! workers, replaces those that die or retire ([`max_tasks_per_child`]), and stops them on
//! `join` / `terminate`. Tasks and results do not go through the supervisor: a caller sends an
//! encoded chunk (a whole map chunk is one frame) straight to an idle worker or queues it, and
//! each worker's reader thread takes its results and hands it the next queued chunk. See
//! ARCHITECTURE.md, "Pool".
//!
//! [`Connection`]: crate::Connection
//! [`max_tasks_per_child`]: PoolBuilder::max_tasks_per_child

mod assembly;
mod async_result;
mod callbacks;
mod dispatch;
mod imap;
mod job;
mod outcome;
mod protocol;
mod task;
mod worker;

use std::fmt;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procvisor_actors::wire::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use async_result::AsyncResult;
pub use imap::IMapIterator;
pub use task::{TaskFn, TaskOutput};

use crate::code_ref::CodeRef;
use crate::context::StartMethod;
use crate::error::{PoolError, RunError, TaskError};
use crate::supervisor::{
    ChildSpec, ChildType, Intensity, Restart, Shutdown, Strategy, Supervisor, SupervisorError,
    SupervisorSpec,
};
use dispatch::{Shared, Status, Task};
use imap::ImapJob;
use job::{Callbacks, JobSink, MapJob};
use procvisor_actors::sync_util::lock;
use task::{ChunkFn, InitFn};
use worker::{WorkerSetup, WorkerStarter};

/// How long a stopping worker gets before SIGTERM (and as long again before SIGKILL). Workers
/// exit at once on a stop request, so this only matters for one stuck in a system call.
const WORKER_STOP_GRACE: Duration = Duration::from_secs(1);

/// The value a task function `F` called with `Args` gives the caller.
pub type TaskValue<F, Args> = <<F as TaskFn<Args>>::Output as TaskOutput>::Value;

/// The [`AsyncResult`] of a [`submit_map`](Pool::submit_map) /
/// [`submit_starmap`](Pool::submit_starmap) of `F` over `Args`.
pub type MapResult<F, Args> = AsyncResult<Vec<TaskValue<F, Args>>>;

/// A pool of worker processes (Python's `multiprocessing.Pool`). See the [module docs](self).
///
/// A pool is `Send + Sync`: share it by reference (or in an `Arc`) between threads.
/// Dropping it terminates it: queued and running tasks fail with
/// [`TaskError::PoolTerminated`] and every worker process is stopped before `drop` returns.
pub struct Pool {
    shared: Arc<Shared>,
    supervisor: Mutex<Option<Supervisor>>,
    processes: usize,
    task_timeout: Option<Duration>,
}

/// The initializer's trampoline and its encoded arguments (or why they could not be encoded).
type Initializer = (CodeRef<InitFn>, Result<Vec<u8>, String>);

/// Settings of a [`Pool`] (Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild)`), from [`Pool::builder`].
///
/// ```standalone_crate
/// # fn main() -> procvisor::Result<()> {
/// # procvisor::init();
/// use std::num::NonZeroU64;
/// use std::time::Duration;
///
/// fn connect(url: String) {
///     // … open this worker's connection to `url` …
///     # let _ = url;
/// }
///
/// let pool = procvisor::Pool::builder()
///     .processes(2)
///     .initializer(connect, ("db://localhost".to_string(),))
///     .max_tasks_per_child(NonZeroU64::new(100).unwrap())
///     .task_timeout(Duration::from_secs(30))
///     .build()?;
/// assert_eq!(pool.apply(|x: u64| x + 1, (1,))?, 2);
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    init: Option<Initializer>,
    maxtasks: Option<NonZeroU64>,
    task_timeout: Option<Duration>,
    start_method: Option<StartMethod>,
}

impl PoolBuilder {
    /// The number of worker processes (default: [`cpu_count`](crate::cpu_count)). Zero is
    /// refused by [`build`](PoolBuilder::build) with [`PoolError::NoWorkers`].
    pub fn processes(mut self, processes: usize) -> PoolBuilder {
        self.processes = Some(processes);
        self
    }

    /// A function each worker runs once when it starts, with `args` (Python's `initializer`
    /// and `initargs`). If it fails (returns `Err` or panics), the pool is broken:
    /// [`build`](PoolBuilder::build) fails with [`PoolError::Broken`]; if it fails later, in a
    /// worker that replaces another, the pending tasks fail with [`TaskError::PoolBroken`] and
    /// new calls are refused with [`PoolError::Broken`].
    #[doc(alias = "initargs")]
    pub fn initializer<F, Args>(mut self, initializer: F, args: Args) -> PoolBuilder
    where
        F: TaskFn<Args>,
        Args: Serialize + DeserializeOwned + 'static,
    {
        let _ = initializer;
        let args = codec::encode(&args).map_err(|e| e.to_string());
        self.init = Some((task::init_ref::<F, Args>(), args));
        self
    }

    /// Each worker serves this many tasks (chunks), then exits and is replaced by a fresh
    /// process (Python's `maxtasksperchild`). Default: no limit.
    ///
    /// The count cannot be zero (a worker that may serve no task would never serve one;
    /// Python refuses it too): it is a [`NonZeroU64`], so a literal zero does not compile:
    ///
    /// ```compile_fail,E0308
    /// let builder = procvisor::Pool::builder().max_tasks_per_child(0);
    /// ```
    ///
    /// and a count computed at run time goes through [`NonZeroU64::new`], which says `None`
    /// for zero:
    ///
    /// ```
    /// use std::num::NonZeroU64;
    /// let from_config: u64 = 0;
    /// let mut builder = procvisor::Pool::builder();
    /// if let Some(n) = NonZeroU64::new(from_config) {
    ///     builder = builder.max_tasks_per_child(n);
    /// }
    /// # let _ = builder;
    /// ```
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, tasks: NonZeroU64) -> PoolBuilder {
        self.maxtasks = Some(tasks);
        self
    }

    /// A timeout for every task (a map chunk is one task): a task still running after it has
    /// its worker killed and replaced, and fails with [`TaskError::Timeout`]. Default: none.
    /// [`TaskBuilder::timeout`] and [`MapBuilder::timeout`] override it for one call.
    pub fn task_timeout(mut self, timeout: Duration) -> PoolBuilder {
        self.task_timeout = Some(timeout);
        self
    }

    /// The start method of the workers (default: the program's, see
    /// [`set_start_method`](crate::set_start_method)).
    pub fn start_method(mut self, method: StartMethod) -> PoolBuilder {
        self.start_method = Some(method);
        self
    }

    /// Starts the workers and returns once each has run its initializer.
    ///
    /// # Errors
    ///
    /// [`PoolError::NoWorkers`] for zero processes; [`PoolError::EncodeInitializer`] if the
    /// initializer's arguments cannot be encoded; [`PoolError::Broken`] if the initializer
    /// fails; [`PoolError::WorkerStart`] if a worker cannot be started.
    pub fn build(self) -> Result<Pool, PoolError> {
        let processes = self.processes.unwrap_or_else(crate::cpu_count);
        if processes == 0 {
            return Err(PoolError::NoWorkers { processes });
        }
        let init = match self.init {
            None => None,
            Some((offset, Ok(args))) => Some((offset, args)),
            Some((_, Err(reason))) => return Err(PoolError::EncodeInitializer { reason }),
        };
        let setup = WorkerSetup {
            init,
            maxtasks: self.maxtasks,
        };
        let shared = Arc::new(Shared::new(processes, self.maxtasks));
        let spec = SupervisorSpec::new(Strategy::OneForOne)
            .name("pool")
            .intensity(Intensity::unlimited())
            .children((0..processes).map(|slot| {
                let starter = WorkerStarter {
                    slot,
                    shared: shared.clone(),
                    setup: setup.clone(),
                    start_method: self.start_method,
                };
                ChildSpec::custom(format!("worker-{slot}"), ChildType::Worker, starter)
                    .restart(Restart::Permanent)
                    .shutdown(Shutdown::Timeout(WORKER_STOP_GRACE))
            }));
        let supervisor = Supervisor::start(spec).map_err(|e| match shared.status() {
            Status::Broken(reason) => PoolError::Broken { reason },
            _ => PoolError::WorkerStart {
                reason: start_failure(e),
            },
        })?;
        shared.set_supervisor(supervisor.handle().clone());
        Ok(Pool {
            shared,
            supervisor: Mutex::new(Some(supervisor)),
            processes,
            task_timeout: self.task_timeout,
        })
    }
}

/// Why the supervisor could not start a worker, without the supervisor's own wording (its
/// path and child id name the pool's internals, not the caller's).
fn start_failure(e: SupervisorError) -> String {
    match e {
        SupervisorError::StartFailed { reason, .. } => reason,
        other => other.to_string(),
    }
}

impl Pool {
    /// A pool of `processes` workers with default settings (Python's `Pool(processes)`).
    ///
    /// # Errors
    ///
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Pool, PoolError> {
        Pool::builder().processes(processes).build()
    }

    /// A builder for a pool with an initializer, a task limit per worker, a task timeout, …
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            init: None,
            maxtasks: None,
            task_timeout: None,
            start_method: None,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The process ids of the workers running now (a replaced worker's pid changes).
    pub fn worker_pids(&self) -> Vec<i32> {
        self.shared.pids()
    }

    // ---- apply -------------------------------------------------------------------------------

    /// Runs `f(args…)` in a worker and waits for its value (Python's `apply`). For a timeout,
    /// use [`task`](Pool::task).
    ///
    /// ```standalone_crate
    /// # fn main() -> procvisor::Result<()> {
    /// # procvisor::init();
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    /// let pool = procvisor::Pool::new(1)?;
    /// assert_eq!(pool.apply(add, (2, 3))?, 5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RunError::Pool`] if the pool refuses the task (as [`submit`](Pool::submit));
    /// [`RunError::Task`] with the task's error (as [`AsyncResult::get`]).
    pub fn apply<F, Args>(&self, f: F, args: Args) -> Result<TaskValue<F, Args>, RunError>
    where
        F: TaskFn<Args>,
        Args: Serialize + DeserializeOwned + 'static,
    {
        self.task(f, args).run()
    }

    /// Submits `f(args…)` and returns its [`AsyncResult`] at once (Python's `apply_async`).
    /// For callbacks and a timeout, use [`task`](Pool::task).
    ///
    /// ```standalone_crate
    /// # fn main() -> procvisor::Result<()> {
    /// # procvisor::init();
    /// let pool = procvisor::Pool::new(2)?;
    /// let pending: Vec<_> = (0..4u64)
    ///     .map(|i| pool.submit(|x: u64| x * x, (i,)))
    ///     .collect::<Result<_, _>>()?;
    /// let squares = pending
    ///     .into_iter()
    ///     .map(|r| r.get())
    ///     .collect::<Result<Vec<u64>, _>>()?;
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PoolError::Closed`], [`PoolError::Terminated`] or [`PoolError::Broken`]: the pool
    /// refuses new tasks. Everything else, even arguments that cannot be encoded
    /// ([`TaskError::EncodeArguments`]), is the task's outcome, from [`AsyncResult::get`].
    #[doc(alias = "apply_async")]
    pub fn submit<F, Args>(
        &self,
        f: F,
        args: Args,
    ) -> Result<AsyncResult<TaskValue<F, Args>>, PoolError>
    where
        F: TaskFn<Args>,
        Args: Serialize + DeserializeOwned + 'static,
    {
        self.task(f, args).submit()
    }

    /// A task to configure (callbacks, timeout) before [`submit`](TaskBuilder::submit)ting or
    /// [`run`](TaskBuilder::run)ning it.
    ///
    /// ```standalone_crate
    /// # fn main() -> procvisor::Result<()> {
    /// # procvisor::init();
    /// use std::time::Duration;
    /// let pool = procvisor::Pool::new(2)?;
    /// let res = pool
    ///     .task(|x: u64| x + 1, (41,))
    ///     .timeout(Duration::from_secs(5))
    ///     .callback(|v: &u64| println!("got {v}"))
    ///     .error_callback(|e| eprintln!("failed: {e}"))
    ///     .submit()?;
    /// assert_eq!(res.get()?, 42);
    /// # Ok(()) }
    /// ```
    pub fn task<F, Args>(&self, f: F, args: Args) -> TaskBuilder<'_, F, Args>
    where
        F: TaskFn<Args>,
        Args: Serialize + DeserializeOwned + 'static,
    {
        let _ = f;
        TaskBuilder {
            pool: self,
            args,
            timeout: self.task_timeout,
            callbacks: Callbacks {
                success: None,
                error: None,
            },
            f: std::marker::PhantomData,
        }
    }

    // ---- map and friends ---------------------------------------------------------------------

    /// `f` applied to every item, in order (Python's `map`), in chunks of Python's default
    /// size (the items divided by four times the workers, rounded up). The first failed item
    /// fails the call; its other chunks are abandoned. For a chunk size, callbacks or a
    /// timeout, use [`map_task`](Pool::map_task).
    ///
    /// # Errors
    ///
    /// [`RunError::Pool`] if the pool refuses the call; [`RunError::Task`] with the first
    /// failed item's error.
    pub fn map<F, A, I>(&self, f: F, iterable: I) -> Result<Vec<TaskValue<F, (A,)>>, RunError>
    where
        F: TaskFn<(A,)>,
        A: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_task(f, iterable).run()
    }

    /// [`map`](Pool::map) returning an [`AsyncResult`] at once (Python's `map_async`).
    ///
    /// # Errors
    ///
    /// As [`submit`](Pool::submit).
    #[doc(alias = "map_async")]
    pub fn submit_map<F, A, I>(&self, f: F, iterable: I) -> Result<MapResult<F, (A,)>, PoolError>
    where
        F: TaskFn<(A,)>,
        A: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_task(f, iterable).submit()
    }

    /// Results of `f` on every item, in order, as they come (Python's `imap`, chunk size 1
    /// unless set with [`map_task`](Pool::map_task)). The items are all submitted now.
    ///
    /// # Errors
    ///
    /// As [`submit`](Pool::submit); each item's own [`TaskError`] comes from the iterator.
    pub fn imap<F, A, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<IMapIterator<TaskValue<F, (A,)>>, PoolError>
    where
        F: TaskFn<(A,)>,
        A: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_task(f, iterable).imap()
    }

    /// As [`imap`](Pool::imap), in the order the results arrive (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`imap`](Pool::imap).
    pub fn imap_unordered<F, A, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<IMapIterator<TaskValue<F, (A,)>>, PoolError>
    where
        F: TaskFn<(A,)>,
        A: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_task(f, iterable).imap_unordered()
    }

    /// `f(a, b, …)` for every tuple of arguments, in order (Python's `starmap`).
    ///
    /// ```standalone_crate
    /// # fn main() -> procvisor::Result<()> {
    /// # procvisor::init();
    /// fn add(a: u64, b: u64) -> u64 {
    ///     a + b
    /// }
    /// let pool = procvisor::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`map`](Pool::map).
    pub fn starmap<F, Args, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<Vec<TaskValue<F, Args>>, RunError>
    where
        F: TaskFn<Args>,
        Args: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_task(f, iterable).run()
    }

    /// [`starmap`](Pool::starmap) returning an [`AsyncResult`] at once (Python's
    /// `starmap_async`).
    ///
    /// # Errors
    ///
    /// As [`submit`](Pool::submit).
    #[doc(alias = "starmap_async")]
    pub fn submit_starmap<F, Args, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<MapResult<F, Args>, PoolError>
    where
        F: TaskFn<Args>,
        Args: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_task(f, iterable).submit()
    }

    /// A `map` to configure (chunk size, callbacks, per-chunk timeout) before running it as
    /// [`run`](MapBuilder::run) (`map`), [`submit`](MapBuilder::submit) (`submit_map`),
    /// [`imap`](MapBuilder::imap) or [`imap_unordered`](MapBuilder::imap_unordered).
    ///
    /// ```standalone_crate
    /// # fn main() -> procvisor::Result<()> {
    /// # procvisor::init();
    /// let pool = procvisor::Pool::new(2)?;
    /// let squares = pool.map_task(|x: u64| x * x, 0..1000).chunksize(100).run()?;
    /// assert_eq!(squares[999], 998_001);
    /// # Ok(()) }
    /// ```
    #[doc(alias = "chunksize")]
    pub fn map_task<F, A, I>(&self, f: F, iterable: I) -> MapBuilder<'_, F, (A,), I>
    where
        F: TaskFn<(A,)>,
        A: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = A>,
    {
        let _ = f;
        MapBuilder::new(self, iterable)
    }

    /// A `starmap` to configure before running it (see [`map_task`](Pool::map_task)).
    pub fn starmap_task<F, Args, I>(&self, f: F, iterable: I) -> MapBuilder<'_, F, Args, I>
    where
        F: TaskFn<Args>,
        Args: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        let _ = f;
        MapBuilder::new(self, iterable)
    }

    // ---- lifecycle ---------------------------------------------------------------------------

    /// Accepts no new tasks; the queued ones still run (Python's `close`). Then
    /// [`join`](Pool::join) waits for them and stops the workers.
    pub fn close(&self) {
        self.shared.close();
    }

    /// Stops the workers now, busy or not (Python's `terminate`): queued and running tasks
    /// fail with [`TaskError::PoolTerminated`]. Returns once every worker process has exited.
    pub fn terminate(&self) {
        self.shared
            .end(Status::Terminated, TaskError::PoolTerminated);
        self.stop_workers();
    }

    /// Waits for the queued and running tasks to finish (and their callbacks to run), then
    /// stops the workers and waits for them to exit (Python's `join`).
    ///
    /// # Errors
    ///
    /// [`PoolError::StillRunning`] unless [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) was called first.
    pub fn join(&self) -> Result<(), PoolError> {
        if self.shared.status() == Status::Running {
            return Err(PoolError::StillRunning);
        }
        self.shared.wait_idle();
        self.stop_workers();
        Ok(())
    }

    /// [`terminate`](Pool::terminate) for async callers: the workers are stopped without
    /// blocking the caller's thread.
    pub async fn terminate_async(&self) {
        self.shared
            .end(Status::Terminated, TaskError::PoolTerminated);
        let supervisor = lock(&self.supervisor).take();
        if let Some(supervisor) = supervisor {
            supervisor.stop_async().await;
        }
        self.finish_callbacks_async().await;
    }

    /// [`join`](Pool::join) for async callers.
    ///
    /// # Errors
    ///
    /// As [`join`](Pool::join).
    pub async fn join_async(&self) -> Result<(), PoolError> {
        if self.shared.status() == Status::Running {
            return Err(PoolError::StillRunning);
        }
        self.shared.wait_idle_async().await;
        let supervisor = lock(&self.supervisor).take();
        if let Some(supervisor) = supervisor {
            supervisor.stop_async().await;
        }
        self.finish_callbacks_async().await;
        Ok(())
    }

    /// Drains the callback thread from a blocking thread of the node's runtime.
    async fn finish_callbacks_async(&self) {
        let callbacks = self.shared.callbacks.clone();
        let _ = procvisor_actors::runtime::spawn_blocking(move || callbacks.finish()).await;
    }

    fn stop_workers(&self) {
        let supervisor = lock(&self.supervisor).take();
        if let Some(supervisor) = supervisor {
            supervisor.stop();
        }
        self.shared.callbacks.finish();
    }

    /// Encodes and submits the chunks of one call to `sink`; stops at the first chunk that
    /// cannot be encoded and returns why.
    fn submit_chunks<E, It>(
        &self,
        entry: CodeRef<ChunkFn>,
        mut items: It,
        plan: ChunkPlan,
        timeout: Option<Duration>,
        sink: Arc<dyn JobSink>,
    ) -> Result<(), TaskError>
    where
        E: Serialize,
        It: Iterator<Item = E>,
    {
        for index in 0..plan.chunks {
            let len = plan.len_of(index);
            let frame = protocol::task_frame(entry, items.by_ref(), len)
                .map_err(|reason| TaskError::EncodeArguments { reason })?;
            self.shared.submit(Task::new(
                frame,
                sink.clone(),
                index as u32,
                len as u32,
                timeout,
            ));
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("state", &self.shared.status())
            .finish()
    }
}

/// One task being configured: see [`Pool::task`]. [`submit`](TaskBuilder::submit) is
/// [`Pool::submit`] with these options, [`run`](TaskBuilder::run) is [`Pool::apply`].
#[must_use = "a task does nothing until it is submitted or run"]
pub struct TaskBuilder<'p, F, Args>
where
    F: TaskFn<Args>,
{
    pool: &'p Pool,
    args: Args,
    timeout: Option<Duration>,
    callbacks: Callbacks<TaskValue<F, Args>>,
    f: std::marker::PhantomData<fn() -> F>,
}

impl<F, Args> TaskBuilder<'_, F, Args>
where
    F: TaskFn<Args>,
    Args: Serialize + DeserializeOwned + 'static,
{
    /// If the task runs longer than `timeout`, its worker is killed and replaced and the task
    /// fails with [`TaskError::Timeout`] (overrides [`PoolBuilder::task_timeout`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Called with the value when the task succeeds, in this process, on the pool's callback
    /// thread, before the result becomes ready (Python's `callback`).
    pub fn callback(mut self, callback: impl FnOnce(&TaskValue<F, Args>) + Send + 'static) -> Self {
        self.callbacks.success = Some(Box::new(callback));
        self
    }

    /// Called with the error when the task fails, as [`callback`](TaskBuilder::callback)
    /// (Python's `error_callback`).
    pub fn error_callback(mut self, callback: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        self.callbacks.error = Some(Box::new(callback));
        self
    }

    /// Submits the task and returns its [`AsyncResult`] at once (Python's `apply_async`).
    ///
    /// # Errors
    ///
    /// As [`Pool::submit`].
    #[doc(alias = "apply_async")]
    pub fn submit(self) -> Result<AsyncResult<TaskValue<F, Args>>, PoolError> {
        self.pool.shared.check_running()?;
        let job = MapJob::new(
            1,
            1,
            single::<TaskValue<F, Args>>,
            self.callbacks,
            self.pool.shared.callbacks.clone(),
        );
        let result = AsyncResult::new(job.completion());
        let plan = ChunkPlan::new(1, 1);
        let entry = task::chunk_ref::<F, Args>();
        let sink: Arc<dyn JobSink> = job.clone();
        let args = std::iter::once(self.args);
        if let Err(failure) = self
            .pool
            .submit_chunks(entry, args, plan, self.timeout, sink)
        {
            job.deliver(Err(failure));
        }
        Ok(result)
    }

    /// Submits the task and waits for its value (Python's `apply`).
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`].
    #[doc(alias = "apply")]
    pub fn run(self) -> Result<TaskValue<F, Args>, RunError> {
        Ok(self.submit()?.get()?)
    }
}

/// One `map` / `starmap` being configured: see [`Pool::map_task`].
/// [`run`](MapBuilder::run), [`submit`](MapBuilder::submit), [`imap`](MapBuilder::imap) and
/// [`imap_unordered`](MapBuilder::imap_unordered) are the [`Pool`] methods of those names
/// (`submit`: [`Pool::submit_map`]) with these options.
#[must_use = "a map does nothing until it is run or submitted"]
pub struct MapBuilder<'p, F, Args, I>
where
    F: TaskFn<Args>,
{
    pool: &'p Pool,
    iterable: I,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    callbacks: Callbacks<Vec<TaskValue<F, Args>>>,
    f: std::marker::PhantomData<fn() -> (F, Args)>,
}

impl<'p, F, Args, I> MapBuilder<'p, F, Args, I>
where
    F: TaskFn<Args>,
    Args: DeserializeOwned + 'static,
    I: IntoIterator,
    I::Item: Serialize,
{
    fn new(pool: &'p Pool, iterable: I) -> Self {
        MapBuilder {
            pool,
            iterable,
            chunksize: None,
            timeout: pool.task_timeout,
            callbacks: Callbacks {
                success: None,
                error: None,
            },
            f: std::marker::PhantomData,
        }
    }

    /// Items per task (frame): default, Python's (`map`: the items divided by four times the
    /// workers, rounded up; `imap`: 1). Zero means the default.
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = (chunksize > 0).then_some(chunksize);
        self
    }

    /// A timeout for each chunk (see [`TaskBuilder::timeout`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Called with all the values when every item succeeded (for
    /// [`submit`](MapBuilder::submit) and [`run`](MapBuilder::run)).
    pub fn callback(
        mut self,
        callback: impl FnOnce(&Vec<TaskValue<F, Args>>) + Send + 'static,
    ) -> Self {
        self.callbacks.success = Some(Box::new(callback));
        self
    }

    /// Called with the error when the map fails (for [`submit`](MapBuilder::submit) and
    /// [`run`](MapBuilder::run)).
    pub fn error_callback(mut self, callback: impl FnOnce(&TaskError) + Send + 'static) -> Self {
        self.callbacks.error = Some(Box::new(callback));
        self
    }

    /// Runs the map and waits for its values (Python's `map` / `starmap`).
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    #[doc(alias = "map")]
    #[doc(alias = "starmap")]
    pub fn run(self) -> Result<Vec<TaskValue<F, Args>>, RunError> {
        Ok(self.submit()?.get()?)
    }

    /// Submits the map and returns its [`AsyncResult`] (Python's `map_async` /
    /// `starmap_async`).
    ///
    /// # Errors
    ///
    /// As [`Pool::submit_map`].
    #[doc(alias = "map_async")]
    #[doc(alias = "starmap_async")]
    pub fn submit(self) -> Result<MapResult<F, Args>, PoolError> {
        let pool = self.pool;
        pool.shared.check_running()?;
        let items = Items::new(self.iterable.into_iter());
        let plan = ChunkPlan::new(
            items.len(),
            self.chunksize
                .unwrap_or_else(|| default_chunksize(items.len(), pool.processes)),
        );
        let job = MapJob::new(
            plan.len,
            plan.chunksize,
            all::<TaskValue<F, Args>>,
            self.callbacks,
            pool.shared.callbacks.clone(),
        );
        let result = AsyncResult::new(job.completion());
        let entry = task::chunk_ref::<F, Args>();
        let sink: Arc<dyn JobSink> = job.clone();
        if let Err(failure) = pool.submit_chunks(entry, items, plan, self.timeout, sink) {
            job.deliver(Err(failure));
        }
        Ok(result)
    }

    /// Submits the map and returns its results in input order as they come (Python's `imap`).
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    pub fn imap(self) -> Result<IMapIterator<TaskValue<F, Args>>, PoolError> {
        self.iterate(true)
    }

    /// Submits the map and returns its results as they come (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`Pool::imap_unordered`].
    pub fn imap_unordered(self) -> Result<IMapIterator<TaskValue<F, Args>>, PoolError> {
        self.iterate(false)
    }

    fn iterate(self, ordered: bool) -> Result<IMapIterator<TaskValue<F, Args>>, PoolError> {
        let pool = self.pool;
        pool.shared.check_running()?;
        let items = Items::new(self.iterable.into_iter());
        let plan = ChunkPlan::new(items.len(), self.chunksize.unwrap_or(1));
        let job = ImapJob::new(items.len(), ordered);
        let entry = task::chunk_ref::<F, Args>();
        let sink: Arc<dyn JobSink> = job.clone();
        if let Err(failure) = pool.submit_chunks(entry, items, plan, self.timeout, sink) {
            job.fail_rest(failure);
        }
        Ok(IMapIterator::new(job))
    }
}

fn all<R>(values: Vec<R>) -> Result<Vec<R>, TaskError> {
    Ok(values)
}

fn single<R>(mut values: Vec<R>) -> Result<R, TaskError> {
    values
        .pop()
        .ok_or_else(|| outcome::undecodable("the worker returned no result"))
}

/// Python's default `map` chunk size: `len / (4 * processes)`, rounded up.
pub(crate) fn default_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(4 * processes.max(1)).max(1)
}

/// How a call's items are cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChunkPlan {
    len: usize,
    chunksize: usize,
    chunks: usize,
}

impl ChunkPlan {
    fn new(len: usize, chunksize: usize) -> ChunkPlan {
        // Chunk indices travel as u32: past that many chunks, chunks grow instead.
        let chunksize = chunksize.max(1).max(len.div_ceil(u32::MAX as usize));
        ChunkPlan {
            len,
            chunksize,
            chunks: len.div_ceil(chunksize),
        }
    }

    fn len_of(&self, index: usize) -> usize {
        self.chunksize.min(self.len - index * self.chunksize)
    }
}

/// A call's items with a known count: the iterator itself when it reports an exact size, else
/// its items collected first (as Python turns an iterable without `len` into a list).
enum Items<It: Iterator> {
    Exact(It, usize),
    Collected(std::vec::IntoIter<It::Item>),
}

impl<It: Iterator> Items<It> {
    fn new(it: It) -> Items<It> {
        match it.size_hint() {
            (lo, Some(hi)) if lo == hi => Items::Exact(it, lo),
            _ => Items::Collected(it.collect::<Vec<_>>().into_iter()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Items::Exact(_, len) => *len,
            Items::Collected(v) => v.len(),
        }
    }
}

impl<It: Iterator> Iterator for Items<It> {
    type Item = It::Item;

    #[inline]
    fn next(&mut self) -> Option<It::Item> {
        match self {
            Items::Exact(it, _) => it.next(),
            Items::Collected(v) => v.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_chunksize_is_pythons() {
        // divmod(len, 4 * processes), rounded up.
        assert_eq!(default_chunksize(0, 2), 1);
        assert_eq!(default_chunksize(1, 2), 1);
        assert_eq!(default_chunksize(8, 2), 1);
        assert_eq!(default_chunksize(9, 2), 2);
        assert_eq!(default_chunksize(10_000, 2), 1250);
        assert_eq!(default_chunksize(10_001, 4), 626);
    }

    #[test]
    fn chunk_plans_cover_every_item_once() {
        for (len, size) in [(0, 3), (1, 3), (10, 3), (9, 3), (5, 100)] {
            let plan = ChunkPlan::new(len, size);
            let total: usize = (0..plan.chunks).map(|i| plan.len_of(i)).sum();
            assert_eq!(total, len, "{len} items in chunks of {size}");
            assert!((0..plan.chunks).all(|i| plan.len_of(i) > 0));
        }
    }

    #[test]
    fn chunk_indices_fit_in_u32() {
        let plan = ChunkPlan::new(usize::MAX, 1);
        assert!(plan.chunks <= u32::MAX as usize);
        assert_eq!(
            plan.len_of(plan.chunks - 1),
            usize::MAX - (plan.chunks - 1) * plan.chunksize
        );
    }

    #[test]
    fn items_without_an_exact_size_are_collected() {
        let it = Items::new((0..10).filter(|x| x % 2 == 0));
        assert_eq!(it.len(), 5);
        assert!(matches!(it, Items::Collected(_)));
        let it = Items::new(0..10);
        assert!(matches!(it, Items::Exact(_, 10)));
        assert_eq!(it.collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    }
}
