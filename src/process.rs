//! [`Process`]: a function running in another OS process, with Python's API.
//!
//! ```no_run
//! use procvisor::Process;
//!
//! fn worker(num: u32) {
//!     println!("Worker: {num}");
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init();
//!     let jobs: Vec<Process> = (0..5).map(|i| Process::new(worker, (i,))).collect();
//!     for p in &jobs {
//!         p.start()?;
//!     }
//!     for p in &jobs {
//!         p.join(None)?;
//!         assert_eq!(p.exitcode(), Some(0));
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Every child is watched by its parent's process supervisor actor, which reaps it the moment
//! it exits. When a procvisor process ends normally (its `main` returns, or a child's target
//! returns), daemonic children are terminated and non-daemonic ones joined; children never
//! outlive their parent, even one killed with SIGKILL.

pub(crate) mod child_main;
pub(crate) mod current;
mod forkserver;
mod parent_link;
mod popen;
mod prestart;
pub(crate) mod target;

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use procvisor_actors::bootstrap::{self, Bootstrap, PROTOCOL_VERSION};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::fdpass;
use procvisor_actors::node::Node;
use procvisor_actors::{reply, sys};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use current::{stop_requested, wait_for_stop};
pub use target::{Run, Target, TargetOutput};

use crate::context::{StartMethod, get_start_method};
use crate::error::{Error, Result};

pub(crate) use child_main::run as run_child;
pub(crate) use forkserver::{control_fd_from_env as fork_server_fd, serve as serve_forks};
pub(crate) use popen::bootstrap_link;
pub(crate) use prestart::set_enabled as set_spawn_prestart;

/// A process: created with a target, started with [`start`](Process::start), waited for with
/// [`join`](Process::join). Cloning gives another handle to the same process.
#[derive(Clone)]
pub struct Process {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    settings: Mutex<Settings>,
    record: OnceLock<Arc<ChildRecord>>,
}

enum Kind {
    /// A child created here: what to run, as an entry offset and an encoded payload.
    Child {
        entry_offset: i64,
        payload: std::result::Result<Vec<u8>, String>,
        /// File descriptors the arguments carry (e.g. a `Connection`), sent with the bootstrap
        /// and closed here once the child has them.
        fds: Mutex<Vec<OwnedFd>>,
        identity: Vec<u32>,
    },
    /// The process we are running in (`current_process()`).
    Current,
    /// Our parent (`parent_process()`).
    Parent { pid: i32 },
}

struct Settings {
    name: String,
    daemon: bool,
    authkey: Vec<u8>,
    start_method: Option<StartMethod>,
    started: bool,
}

impl Process {
    /// A process that will run `target(args…)`; `args` is a tuple (`()` for none, `(x,)` for
    /// one). The target must be a `fn` item or a closure that captures nothing (checked at
    /// compile time); everything it needs travels in `args`, which must be serde-encodable.
    pub fn new<F, Args>(target: F, args: Args) -> Process
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned + 'static,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = target;
        let (payload, fds) = fdpass::collecting_fds(|| bootstrap::encode_payload(&args));
        let payload = payload.map_err(|e| e.to_string());
        Self::child(
            target::offset_of(target::entry::<F, Args>),
            payload,
            fds,
            "Process",
        )
    }

    /// A process that will run `runner.run()`: the Rust form of subclassing Python's `Process`.
    /// As in Python, its default name is the type's name and the process's identity
    /// (`Worker-1` for a `Worker`).
    pub fn from_run<R: Run>(runner: R) -> Process {
        let (payload, fds) = fdpass::collecting_fds(|| bootstrap::encode_payload(&runner));
        let payload = payload.map_err(|e| e.to_string());
        let offset = target::offset_of(target::run_entry::<R>);
        Self::child(offset, payload, fds, short_type_name::<R>())
    }

    fn child(
        entry_offset: i64,
        payload: std::result::Result<Vec<u8>, String>,
        fds: Vec<OwnedFd>,
        kind_name: &str,
    ) -> Process {
        let identity = current::next_child_identity();
        let me = current::identity();
        let name = default_name(kind_name, &identity);
        Process {
            inner: Arc::new(Inner {
                kind: Kind::Child {
                    entry_offset,
                    payload,
                    fds: Mutex::new(fds),
                    identity,
                },
                settings: Mutex::new(Settings {
                    name,
                    daemon: me.daemon,
                    authkey: me.authkey.clone(),
                    start_method: None,
                    started: false,
                }),
                record: OnceLock::new(),
            }),
        }
    }

    fn other(kind: Kind, name: String, daemon: bool, authkey: Vec<u8>) -> Process {
        Process {
            inner: Arc::new(Inner {
                kind,
                settings: Mutex::new(Settings {
                    name,
                    daemon,
                    authkey,
                    start_method: None,
                    started: true,
                }),
                record: OnceLock::new(),
            }),
        }
    }

    fn from_record(record: Arc<ChildRecord>) -> Process {
        let me = current::identity();
        let p = Process::other(
            Kind::Child {
                entry_offset: 0,
                payload: Err("already started".into()),
                fds: Mutex::new(Vec::new()),
                identity: Vec::new(),
            },
            record.name(),
            record.daemon(),
            me.authkey.clone(),
        );
        let _ = p.inner.record.set(record);
        p
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.inner
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the name (builder style). Names are for people; several processes may share one.
    pub fn with_name(self, name: impl Into<String>) -> Process {
        self.set_name(name);
        self
    }

    /// Sets the daemon flag (builder style); see [`set_daemon`](Process::set_daemon).
    pub fn with_daemon(self, daemon: bool) -> Result<Process> {
        self.set_daemon(daemon)?;
        Ok(self)
    }

    /// Chooses this process's start method (builder style), overriding the global default.
    pub fn with_start_method(self, method: StartMethod) -> Result<Process> {
        let mut s = self.settings();
        if s.started {
            return Err(Error::AlreadyRunning {
                name: s.name.clone(),
                setting: "the start method",
            });
        }
        s.start_method = Some(method);
        drop(s);
        Ok(self)
    }

    /// The process's name: `Process-N` (`Process-N:M` for a child's child), `MainProcess`, or
    /// what was set.
    pub fn name(&self) -> String {
        match self.inner.record.get() {
            Some(record) => record.name(),
            None => self.settings().name.clone(),
        }
    }

    /// Renames the process (only what is displayed changes).
    pub fn set_name(&self, name: impl Into<String>) {
        let name = name.into();
        if let Some(record) = self.inner.record.get() {
            record.set_name(name.clone());
        }
        self.settings().name = name;
    }

    /// Whether the process is daemonic: terminated, rather than waited for, when its parent ends.
    pub fn daemon(&self) -> bool {
        self.settings().daemon
    }

    /// Sets the daemon flag. Only before `start()`; the default is the creating process's flag.
    /// A daemonic process may not start children of its own.
    pub fn set_daemon(&self, daemon: bool) -> Result<()> {
        let mut s = self.settings();
        if s.started {
            return Err(Error::AlreadyRunning {
                name: s.name.clone(),
                setting: "the daemon flag",
            });
        }
        s.daemon = daemon;
        Ok(())
    }

    /// The authentication key the process will use (inherited from its creator by default).
    pub fn authkey(&self) -> Vec<u8> {
        self.settings().authkey.clone()
    }

    /// Sets the authentication key before start.
    pub fn set_authkey(&self, authkey: impl Into<Vec<u8>>) -> Result<()> {
        let mut s = self.settings();
        if s.started {
            return Err(Error::AlreadyRunning {
                name: s.name.clone(),
                setting: "the authkey",
            });
        }
        s.authkey = authkey.into();
        Ok(())
    }

    /// The OS process id: `None` before start.
    pub fn pid(&self) -> Option<i32> {
        match &self.inner.kind {
            Kind::Current => Some(std::process::id() as i32),
            Kind::Parent { pid } => Some(*pid),
            Kind::Child { .. } => self.inner.record.get().map(|r| r.pid()),
        }
    }

    /// `None` while running (or before start); then the exit code: `0`, `1` after a panic or an
    /// `Err` return, `N` after `exit(N)`, `-N` if killed by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        self.inner
            .record
            .get()?
            .exit_status()
            .map(sys::ExitStatus::exitcode)
    }

    /// Whether the process is running: from `start()` until it has exited.
    pub fn is_alive(&self) -> bool {
        match &self.inner.kind {
            Kind::Current => true,
            Kind::Parent { pid } => nix::unistd::getppid().as_raw() == *pid,
            Kind::Child { .. } => self
                .inner
                .record
                .get()
                .is_some_and(|r| r.exit_status().is_none()),
        }
    }

    /// A file descriptor that becomes readable when the process exits (Python's `sentinel`):
    /// its pidfd, owned by this handle. Use it with [`wait`](crate::wait) or your own poll loop.
    ///
    /// Errors: not started, or not a child of this process.
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.record("waited for")?.pidfd().as_fd())
    }

    /// Starts the process. Errors: started twice, a daemonic creator, arguments that cannot
    /// be encoded, or the OS refusing to start it.
    pub fn start(&self) -> Result<()> {
        let (boot, method, fds) = self.prepare_start()?;
        let name = boot.name.clone();
        let mut fds = fds.lock().unwrap_or_else(|e| e.into_inner());
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
        let started = match method {
            StartMethod::Spawn => popen::spawn(boot, &borrowed),
            StartMethod::Fork => forkserver::start(boot, &borrowed),
        };
        if started.is_ok() {
            // The child has its copies; ours would keep e.g. a pipe's peer from seeing EOF.
            fds.clear();
            if method == StartMethod::Spawn {
                prestart::refill();
            }
        }
        match started {
            Ok(record) => {
                let _ = self.inner.record.set(record);
                Ok(())
            }
            Err(Error::Bootstrap { name, reason }) => Err(Error::Bootstrap { name, reason }),
            Err(e) => {
                // Nothing was started: the process may be started again.
                self.settings().started = false;
                tracing::debug!(target: "procvisor", "starting {name} failed: {e}");
                Err(e)
            }
        }
    }

    /// [`start`](Process::start) for async callers (the fork/exec runs on procvisor's spawner
    /// thread, not on the caller's runtime).
    pub async fn start_async(&self) -> Result<()> {
        let me = self.clone();
        let (reply, pending) = reply::channel();
        std::thread::spawn(move || reply.send(me.start()));
        pending.wait_async().await.unwrap_or_else(|| {
            Err(Error::io(
                "start",
                std::io::Error::other("starter thread died"),
            ))
        })
    }

    fn prepare_start(&self) -> Result<(Bootstrap, StartMethod, &Mutex<Vec<OwnedFd>>)> {
        let Kind::Child {
            entry_offset,
            payload,
            fds,
            identity,
        } = &self.inner.kind
        else {
            return Err(Error::AlreadyStarted { name: self.name() });
        };
        if !current::is_initialized() {
            return Err(Error::NotInitialized);
        }
        let me = current::identity();
        let mut s = self.settings();
        if s.started {
            return Err(Error::AlreadyStarted {
                name: s.name.clone(),
            });
        }
        if me.daemon {
            return Err(Error::DaemonicParent {
                parent: me.name.clone(),
            });
        }
        if current::is_shutting_down() {
            return Err(Error::ShuttingDown {
                name: s.name.clone(),
            });
        }
        let payload = payload.clone().map_err(|reason| Error::Encode {
            what: format!("the arguments of {}", s.name),
            reason,
        })?;
        let executable = sys::executable_identity()
            .map_err(|e| Error::io("cannot identify this program's executable", e))?;
        s.started = true;
        let boot = Bootstrap {
            protocol: PROTOCOL_VERSION,
            crate_version: child_main_version().to_string(),
            executable,
            entry_offset: *entry_offset,
            payload,
            name: s.name.clone(),
            identity: identity.clone(),
            authkey: s.authkey.clone(),
            daemon: s.daemon,
            parent_pid: std::process::id() as i32,
            parent_name: me.name.clone(),
            log_level: crate::util::current_level_u8(),
            start_method: get_start_method().as_str().to_string(),
        };
        Ok((boot, s.start_method.unwrap_or_else(get_start_method), fds))
    }

    /// The started child's record (the supervisor layer waits on it and sends stop requests).
    pub(crate) fn child_record(&self) -> Option<Arc<ChildRecord>> {
        self.inner.record.get().cloned()
    }

    fn record(&self, action: &'static str) -> Result<&Arc<ChildRecord>> {
        match &self.inner.kind {
            Kind::Current if action == "joined" => {
                return Err(Error::JoinSelf { name: self.name() });
            }
            Kind::Current | Kind::Parent { .. } => {
                return Err(Error::NotAChild {
                    name: self.name(),
                    action,
                });
            }
            Kind::Child { .. } => {}
        }
        self.inner
            .record
            .get()
            .ok_or_else(|| Error::NotStarted { name: self.name() })
    }

    /// Waits until the process exits, or `timeout` passes (then it may still be running: check
    /// [`is_alive`](Process::is_alive)). A process may be joined many times.
    ///
    /// Errors: not started, joining oneself, or — once the child has exited — a failed
    /// bootstrap (the child never ran its target).
    pub fn join(&self, timeout: Option<Duration>) -> Result<()> {
        let record = self.record("joined")?;
        if record.wait(timeout).is_some() {
            self.check_bootstrap(record)?;
        }
        Ok(())
    }

    /// [`join`](Process::join) for async callers.
    pub async fn join_async(&self, timeout: Option<Duration>) -> Result<()> {
        let record = self.record("joined")?.clone();
        let exited = match timeout {
            None => Some(record.wait_async().await),
            Some(t) => tokio::time::timeout(t, record.wait_async()).await.ok(),
        };
        if exited.is_some() {
            self.check_bootstrap(&record)?;
        }
        Ok(())
    }

    fn check_bootstrap(&self, record: &ChildRecord) -> Result<()> {
        match record.bootstrap_error() {
            Some(reason) => Err(Error::Bootstrap {
                name: self.name(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Sends SIGTERM (Python's `terminate`). The process's own children are not signalled;
    /// they die with it. Join afterwards to see the exit code (`-15`).
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM, "terminated")
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL, "killed")
    }

    fn signal(&self, sig: i32, action: &'static str) -> Result<()> {
        let record = self.record(action)?;
        record
            .signal(sig)
            .map(|_| ())
            .map_err(|e| Error::io(format!("cannot signal {}", self.name()), e))
    }

    /// Asks the process to stop (its [`stop_requested`] turns true), waits up to `grace`, then
    /// escalates: SIGTERM, another `grace`, then SIGKILL. Returns once the process has exited.
    pub fn stop(&self, grace: Duration) -> Result<()> {
        let record = self.record("stopped")?;
        let _ = record.request_stop();
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            if record.wait(Some(grace)).is_some() {
                return Ok(());
            }
            tracing::info!(target: "procvisor", "{} did not stop within {grace:?}: sending {}", self.name(), sys::signal_name(sig));
            let _ = record.signal(sig);
        }
        record.wait(None);
        Ok(())
    }

    /// [`stop`](Process::stop) for async callers.
    pub async fn stop_async(&self, grace: Duration) -> Result<()> {
        let record = self.record("stopped")?.clone();
        let _ = record.request_stop();
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            if tokio::time::timeout(grace, record.wait_async())
                .await
                .is_ok()
            {
                return Ok(());
            }
            let _ = record.signal(sig);
        }
        record.wait_async().await;
        Ok(())
    }
}

fn child_main_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

fn default_name(kind_name: &str, identity: &[u32]) -> String {
    let parts: Vec<String> = identity.iter().map(u32::to_string).collect();
    format!("{kind_name}-{}", parts.join(":"))
}

/// `Worker` for `my_crate::jobs::Worker<T>`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

impl fmt::Display for Process {
    /// `<Process(Process-1, initial)>`, `started`, `stopped`, `stopped[SIGTERM]`, `stopped[1]`,
    /// with ` daemon` appended for daemonic processes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (&self.inner.kind, self.inner.record.get()) {
            (Kind::Current, _) => "started".to_string(),
            (Kind::Parent { .. }, _) => "unknown".to_string(),
            (Kind::Child { .. }, None) => "initial".to_string(),
            (Kind::Child { .. }, Some(record)) => match record.exit_status() {
                None => "started".to_string(),
                Some(sys::ExitStatus::Exited(0)) => "stopped".to_string(),
                Some(sys::ExitStatus::Exited(code)) => format!("stopped[{code}]"),
                Some(sys::ExitStatus::Signaled(sig)) => {
                    format!("stopped[{}]", sys::signal_name(sig))
                }
            },
        };
        let daemon = if self.daemon() { " daemon" } else { "" };
        write!(f, "<Process({}, {status}{daemon})>", self.name())
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The process this code runs in (`MainProcess`, or the child's own `Process-N`). Joining it is
/// an error; its `is_alive()` is true.
///
/// ```
/// assert_eq!(procvisor::current_process().name(), "MainProcess");
/// ```
pub fn current_process() -> Process {
    let me = current::identity();
    Process::other(
        Kind::Current,
        me.name.clone(),
        me.daemon,
        me.authkey.clone(),
    )
}

/// The process that started this one; `None` in the main process.
pub fn parent_process() -> Option<Process> {
    let me = current::identity();
    let (pid, name) = me.parent.clone()?;
    Some(Process::other(
        Kind::Parent { pid },
        name,
        false,
        me.authkey.clone(),
    ))
}

/// The children of this process that are still running. Finished children are reaped (a child
/// nobody joins is reaped by the process supervisor within 20 ms of its exit in any case).
pub fn active_children() -> Vec<Process> {
    let Some(node) = Node::try_get() else {
        return Vec::new();
    };
    node.children()
        .active()
        .into_iter()
        .filter(|r| r.exit_status().is_none())
        .map(Process::from_record)
        .collect()
}

/// The number of CPUs this process may use.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
