//! [`Process`]: a function to run in another OS process, and the [`Child`] handle of one
//! that runs — Python's `Process` in the shape of `std::process::{Command, Child}`.
//!
//! ```no_run
//! use procvisor::{Child, Process};
//!
//! fn worker(num: u32) {
//!     println!("Worker: {num}");
//! }
//!
//! fn main() -> procvisor::Result<()> {
//!     procvisor::init();
//!     let jobs = (0..5)
//!         .map(|i| Process::new(worker, (i,)).start())
//!         .collect::<Result<Vec<Child>, _>>()?;
//!     for child in &jobs {
//!         assert!(child.join()?.success());
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Three types for three things Python calls `Process`: a [`Process`] is what to start (a
//! builder, consumed by [`start`](Process::start)); a [`Child`] is a started child, which can
//! be joined and signalled; [`CurrentProcess`] and [`ParentProcess`] describe this process and
//! its parent, which cannot. So "start twice", "join before start", "join self" and "terminate
//! the parent" are compile errors, not run-time ones.
//!
//! ## Misuse that does not compile
//!
//! `start` consumes the `Process`, so a process cannot be started twice, and a [`Child`] has
//! no `start`:
//!
//! ```compile_fail,E0382
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let process = Process::new(|| (), ());
//! let child = process.start()?;
//! let again = process.start()?; // error[E0382]: use of moved value: `process`
//! # Ok(())
//! # }
//! ```
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let child = Process::new(|| (), ()).start()?;
//! child.start()?; // error[E0599]: no method named `start` found for struct `Child`
//! # Ok(())
//! # }
//! ```
//!
//! Nor can a process be copied to be started twice (it is not `Clone`; a [`Child`] is):
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let process = Process::new(|| (), ());
//! let copy = process.clone(); // error[E0599]: no method named `clone` found
//! # Ok(())
//! # }
//! ```
//!
//! Only a started child can be joined or signalled:
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let process = Process::new(|| (), ());
//! process.join()?; // error[E0599]: no method named `join` found for struct `Process`
//! # Ok(())
//! # }
//! ```
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let process = Process::new(|| (), ());
//! process.terminate()?; // error[E0599]: no method named `terminate` found for struct `Process`
//! # Ok(())
//! # }
//! ```
//!
//! This process and its parent are not children of this process:
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! current_process().join()?; // error[E0599]: no method named `join` found for `CurrentProcess`
//! # Ok(())
//! # }
//! ```
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! current_process().kill()?; // error[E0599]: no method named `kill` found for `CurrentProcess`
//! # Ok(())
//! # }
//! ```
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let parent = parent_process().expect("a child has a parent");
//! parent.terminate()?; // error[E0599]: no method named `terminate` found for `ParentProcess`
//! # Ok(())
//! # }
//! ```
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let parent = parent_process().expect("a child has a parent");
//! parent.join()?; // error[E0599]: no method named `join` found for `ParentProcess`
//! # Ok(())
//! # }
//! ```
//!
//! The settings are the builder's: a started child's daemon flag, authkey and start method are
//! fixed (it only reports the first two):
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let child = Process::new(|| (), ()).start()?;
//! child.daemon(true); // error[E0599]: no method named `daemon` found (it has `is_daemon`)
//! # Ok(())
//! # }
//! ```
//!
//! ```compile_fail,E0061
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let child = Process::new(|| (), ()).start()?;
//! child.authkey(vec![7u8; 32]); // error[E0061]: `authkey` takes 0 arguments but 1 was supplied
//! # Ok(())
//! # }
//! ```
//!
//! ```compile_fail,E0599
//! # use procvisor::{Process, StartMethod, current_process, parent_process};
//! # fn main() -> procvisor::Result<()> {
//! let child = Process::new(|| (), ()).start()?;
//! child.start_method(StartMethod::Fork); // error[E0599]: no method named `start_method` found
//! # Ok(())
//! # }
//! ```
//!
//! Every child is watched by its parent's process supervisor actor, which reaps it the moment
//! it exits. When a procvisor process ends normally (its `main` returns, or a child's target
//! returns), daemonic children are terminated and non-daemonic ones joined; children never
//! outlive their parent, even one killed with SIGKILL.

pub(crate) mod child_main;
pub(crate) mod current;
mod dress_rehearsal;
mod forkserver;
mod parent_link;
mod popen;
mod prestart;
pub(crate) mod target;

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use procvisor_actors::bootstrap::{self, Bootstrap, PROTOCOL_VERSION};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::fdpass;
use procvisor_actors::process_supervisor;
use procvisor_actors::{reply, sys};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use current::{stop_requested, wait_for_stop};
pub use procvisor_actors::sys::ExitStatus;
use target::EntryFn;
pub use target::{Run, Target, TargetOutput};

use crate::code_ref::CodeRef;
use crate::context::{StartMethod, start_method};
use crate::error::{Error, JoinError, SignalError, StartError};
use crate::runtime;

pub(crate) use child_main::run as run_child;
pub(crate) use forkserver::{control_fd_from_env as fork_server_fd, serve as serve_forks};
pub(crate) use popen::bootstrap_link;

/// A process to be started: its target and arguments, and its settings (name, daemon flag,
/// authkey, start method). [`start`](Process::start) starts it and returns the [`Child`]
/// handle, as `std::process::Command::spawn` returns a `std::process::Child`.
///
/// The arguments are encoded when the process starts, not before: a [`Connection`] in them
/// stays this process's until then, and is closed here once the child has its copy.
///
/// [`Connection`]: crate::Connection
///
/// ```no_run
/// use procvisor::Process;
///
/// fn greet(name: String) {
///     println!("hello, {name}");
/// }
///
/// # fn main() -> procvisor::Result<()> {
/// procvisor::init();
/// let child = Process::new(greet, ("world".to_string(),)).name("greeter").start()?;
/// assert!(child.join()?.success());
/// # Ok(())
/// # }
/// ```
#[must_use = "a Process does nothing until it is started"]
pub struct Process {
    entry: CodeRef<EntryFn>,
    args: Box<dyn FnOnce() -> EncodedArgs + Send>,
    identity: Vec<u32>,
    name: String,
    daemon: bool,
    authkey: Vec<u8>,
    start_method: Option<StartMethod>,
}

/// The encoded arguments, and the file descriptors they carry (e.g. a `Connection`'s).
type EncodedArgs = (std::io::Result<Vec<u8>>, Vec<OwnedFd>);

impl Process {
    /// A process that will run `target(args…)`; `args` is a tuple (`()` for none, `(x,)` for
    /// one). The target must be a `fn` item or a closure that captures nothing (checked at
    /// compile time); everything it needs travels in `args`, which must be serde-encodable.
    pub fn new<F, Args>(target: F, args: Args) -> Process
    where
        F: Target<Args>,
        Args: Serialize + DeserializeOwned + Send + 'static,
    {
        const { target::assert_zero_sized::<F>() };
        let _ = target;
        Self::child(
            CodeRef::of(target::entry::<F, Args> as EntryFn),
            Box::new(move || fdpass::collecting_fds(|| bootstrap::encode_payload(&args))),
            "Process",
        )
    }

    /// A process that will run `runner.run()`: the Rust form of subclassing Python's `Process`.
    /// As in Python, its default name is the type's name and the process's identity
    /// (`Worker-1` for a `Worker`).
    pub fn from_run<R: Run + Send>(runner: R) -> Process {
        let entry = CodeRef::of(target::run_entry::<R> as EntryFn);
        Self::child(
            entry,
            Box::new(move || fdpass::collecting_fds(|| bootstrap::encode_payload(&runner))),
            short_type_name::<R>(),
        )
    }

    fn child(
        entry: CodeRef<EntryFn>,
        args: Box<dyn FnOnce() -> EncodedArgs + Send>,
        kind_name: &str,
    ) -> Process {
        let identity = runtime::next_child_identity();
        let me = runtime::identity();
        Process {
            entry,
            args,
            name: default_name(kind_name, &identity),
            identity,
            daemon: me.daemon,
            authkey: me.authkey.clone(),
            start_method: None,
        }
    }

    /// Names the process. The default is `Process-N` (`Process-N:M` for a child's child).
    /// Names are for people; several processes may share one.
    pub fn name(mut self, name: impl Into<String>) -> Process {
        self.name = name.into();
        self
    }

    /// Makes the process daemonic (`true`) or not: a daemonic process is terminated, rather
    /// than waited for, when its parent ends, and may not start children of its own. The
    /// default is the creating process's flag.
    pub fn daemon(mut self, daemon: bool) -> Process {
        self.daemon = daemon;
        self
    }

    /// The authentication key the process will use (the creator's by default).
    pub fn authkey(mut self, authkey: impl Into<Vec<u8>>) -> Process {
        self.authkey = authkey.into();
        self
    }

    /// Chooses this process's start method, overriding the default of
    /// [`start_method`](crate::start_method()).
    pub fn start_method(mut self, method: StartMethod) -> Process {
        self.start_method = Some(method);
        self
    }

    /// Starts the process and returns its handle.
    ///
    /// Errors: `init()` has not run, a daemonic creator, a process shutting down, arguments
    /// that cannot be encoded, or the OS refusing to start it.
    pub fn start(self) -> Result<Child, StartError> {
        let name = self.name.clone();
        let authkey = self.authkey.clone();
        let (boot, method, fds) = self.prepare_start()?;
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.as_fd()).collect();
        let started = match method {
            StartMethod::Spawn => popen::spawn(boot, &borrowed),
            StartMethod::Fork => forkserver::start(boot, &borrowed),
        };
        // The child has its copies; ours would keep e.g. a pipe's peer from seeing EOF.
        drop(fds);
        match started {
            Ok(record) => {
                if method == StartMethod::Spawn {
                    prestart::refill();
                }
                Ok(Child { record, authkey })
            }
            Err(e) => {
                tracing::debug!(target: "procvisor", "starting {name} failed: {e}");
                Err(start_error(e, name))
            }
        }
    }

    /// [`start`](Process::start) for async callers (the fork/exec runs on a thread of its own,
    /// not on the caller's runtime).
    pub async fn start_async(self) -> Result<Child, StartError> {
        let name = self.name.clone();
        let (reply, pending) = reply::channel();
        std::thread::spawn(move || reply.send(self.start()));
        pending.wait_async().await.unwrap_or_else(|| {
            Err(StartError::Spawn {
                name,
                source: std::io::Error::other("the starting thread died"),
            })
        })
    }

    fn prepare_start(self) -> Result<(Bootstrap, StartMethod, Vec<OwnedFd>), StartError> {
        if !runtime::is_initialized() {
            return Err(StartError::NotInitialized);
        }
        let me = runtime::identity();
        if me.daemon {
            return Err(StartError::DaemonicParent {
                parent: me.name.clone(),
            });
        }
        if runtime::is_shutting_down() {
            return Err(StartError::ShuttingDown { name: self.name });
        }
        let (payload, fds) = (self.args)();
        let payload = payload.map_err(|e| StartError::Encode {
            name: self.name.clone(),
            reason: e.to_string(),
        })?;
        // (A reference made where the executable cannot be identified would only fail in the
        // child; say why here.)
        sys::executable_identity().map_err(|source| StartError::Spawn {
            name: self.name.clone(),
            source: std::io::Error::new(
                source.kind(),
                format!("cannot identify this program's executable: {source}"),
            ),
        })?;
        let (entry_offset, executable) = self.entry.to_parts();
        let method = self.start_method.unwrap_or_else(start_method);
        let boot = Bootstrap {
            protocol: PROTOCOL_VERSION,
            crate_version: child_main_version().to_string(),
            executable,
            entry_offset,
            payload,
            name: self.name,
            identity: self.identity,
            authkey: self.authkey,
            daemon: self.daemon,
            parent_pid: std::process::id() as i32,
            parent_name: me.name.clone(),
            log_level: runtime::log_level_u8(),
            // The child's own default is the method that started it.
            start_method: method.as_str().to_string(),
        };
        Ok((boot, method, fds))
    }
}

/// The start paths report with the crate's general error; a start has its own.
fn start_error(e: Error, name: String) -> StartError {
    match e {
        Error::Start(e) => e,
        Error::Spawn { name, source } => StartError::Spawn { name, source },
        Error::Bootstrap { name, reason } => StartError::Bootstrap { name, reason },
        Error::Io { context, source } => StartError::Spawn {
            name,
            source: std::io::Error::new(source.kind(), format!("{context}: {source}")),
        },
        other => StartError::Spawn {
            name,
            source: std::io::Error::other(other.to_string()),
        },
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let daemon = if self.daemon { " daemon" } else { "" };
        write!(f, "<Process({}, initial{daemon})>", self.name)
    }
}

/// A started child process: the handle [`Process::start`] returns. Cloning gives another
/// handle to the same child.
///
/// A child may be joined any number of times, from any thread. Dropping every handle does not
/// stop the child: it runs on, is reaped by this process's supervisor when it exits, and is
/// joined (or terminated, if daemonic) when this process ends.
#[derive(Clone)]
#[doc(alias = "Process")]
pub struct Child {
    record: Arc<ChildRecord>,
    authkey: Vec<u8>,
}

impl Child {
    fn from_record(record: Arc<ChildRecord>) -> Child {
        Child {
            record,
            authkey: runtime::identity().authkey.clone(),
        }
    }

    /// The child's name (as given to [`Process::name`], or the default `Process-N`).
    pub fn name(&self) -> String {
        self.record.name()
    }

    /// Renames the child (only what this process displays changes).
    pub fn set_name(&self, name: impl Into<String>) {
        self.record.set_name(name.into());
    }

    /// Whether the child is daemonic: terminated, rather than waited for, when this process
    /// ends.
    #[doc(alias = "daemon")]
    pub fn is_daemon(&self) -> bool {
        self.record.daemon()
    }

    /// The authentication key the child was started with.
    pub fn authkey(&self) -> &[u8] {
        &self.authkey
    }

    /// The OS process id.
    pub fn pid(&self) -> i32 {
        self.record.pid()
    }

    /// `None` while running; then how the child ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.record.exit_status()
    }

    /// `None` while running; then Python's exit code: `0`, `1` after a panic or an `Err`
    /// return, `N` after `exit(N)`, `-N` if killed by signal `N`, `255` after a failed
    /// bootstrap.
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_status().map(ExitStatus::exitcode)
    }

    /// Whether the child is still running.
    pub fn is_alive(&self) -> bool {
        self.exit_status().is_none()
    }

    /// A file descriptor that becomes readable when the child exits (Python's `sentinel`): its
    /// pidfd, owned by this handle. Use it with [`wait`](crate::wait) or your own poll loop.
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.record.pidfd().as_fd()
    }

    /// Waits until the child exits and returns how it ended.
    ///
    /// Errors: the child never ran its target because its bootstrap failed
    /// ([`JoinError::Bootstrap`]).
    pub fn join(&self) -> Result<ExitStatus, JoinError> {
        let status = self
            .record
            .wait(None)
            .expect("a wait without timeout returns a status");
        self.check_bootstrap()?;
        Ok(status)
    }

    /// Waits until the child exits or `timeout` passes: `None` if it is still running.
    pub fn join_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>, JoinError> {
        match self.record.wait(Some(timeout)) {
            Some(status) => {
                self.check_bootstrap()?;
                Ok(Some(status))
            }
            None => Ok(None),
        }
    }

    /// [`join`](Child::join) for async callers. Cancel safe: dropping the future leaves the
    /// child as it was (use `tokio::time::timeout` for a deadline).
    pub async fn join_async(&self) -> Result<ExitStatus, JoinError> {
        let status = self.record.wait_async().await;
        self.check_bootstrap()?;
        Ok(status)
    }

    fn check_bootstrap(&self) -> Result<(), JoinError> {
        match self.record.bootstrap_error() {
            Some(reason) => Err(JoinError::Bootstrap {
                name: self.name(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Sends SIGTERM (Python's `terminate`). The child's own children are not signalled; they
    /// die with it. Join afterwards to see the exit status (`-15`). Signalling a child that
    /// has already exited does nothing.
    pub fn terminate(&self) -> Result<(), SignalError> {
        self.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> Result<(), SignalError> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, sig: i32) -> Result<(), SignalError> {
        self.record
            .signal(sig)
            .map(|_| ())
            .map_err(|source| SignalError {
                name: self.name(),
                signal: sys::signal_name(sig),
                source,
            })
    }

    /// Asks the child to stop (its [`stop_requested`] turns true), waits up to `grace`, then
    /// escalates: SIGTERM, another `grace`, then SIGKILL. Returns how it ended.
    pub fn stop(&self, grace: Duration) -> ExitStatus {
        let _ = self.record.request_stop();
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            if let Some(status) = self.record.wait(Some(grace)) {
                return status;
            }
            tracing::info!(target: "procvisor", "{} did not stop within {grace:?}: sending {}", self.name(), sys::signal_name(sig));
            let _ = self.record.signal(sig);
        }
        self.record
            .wait(None)
            .expect("a wait without timeout returns a status")
    }

    /// [`stop`](Child::stop) for async callers.
    pub async fn stop_async(&self, grace: Duration) -> ExitStatus {
        let _ = self.record.request_stop();
        for sig in [libc::SIGTERM, libc::SIGKILL] {
            if let Ok(status) = tokio::time::timeout(grace, self.record.wait_async()).await {
                return status;
            }
            let _ = self.record.signal(sig);
        }
        self.record.wait_async().await
    }

    /// The child's record (the supervisor layer waits on it and sends stop requests).
    pub(crate) fn record(&self) -> &Arc<ChildRecord> {
        &self.record
    }
}

impl fmt::Display for Child {
    /// `<Process(Process-1, started)>`, `stopped`, `stopped[SIGTERM]`, `stopped[1]`, with
    /// ` daemon` appended for daemonic processes (Python's `repr`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.exit_status() {
            None => "started".to_string(),
            Some(ExitStatus::Exited(0)) => "stopped".to_string(),
            Some(ExitStatus::Exited(code)) => format!("stopped[{code}]"),
            Some(ExitStatus::Signaled(sig)) => format!("stopped[{}]", sys::signal_name(sig)),
        };
        let daemon = if self.is_daemon() { " daemon" } else { "" };
        write!(f, "<Process({}, {status}{daemon})>", self.name())
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The process this code runs in: [`current_process`] returns it. It cannot be joined or
/// signalled (types, not run-time errors, say so).
#[derive(Clone)]
pub struct CurrentProcess {
    identity: &'static runtime::Identity,
}

impl CurrentProcess {
    /// `MainProcess`, or the name this child was started with.
    pub fn name(&self) -> String {
        self.identity.name.clone()
    }

    /// This process's id.
    pub fn pid(&self) -> i32 {
        std::process::id() as i32
    }

    /// Whether this process is daemonic (it may then not start children).
    #[doc(alias = "daemon")]
    pub fn is_daemon(&self) -> bool {
        self.identity.daemon
    }

    /// This process tree's authentication key: 32 random bytes made by the main process and
    /// inherited by every child (through the bootstrap, never argv or the environment).
    pub fn authkey(&self) -> &[u8] {
        &self.identity.authkey
    }

    /// The process's place in the tree: empty for the main process, `[1, 3]` for the third
    /// child of the first child (Python's `_identity`).
    pub fn identity(&self) -> &[u32] {
        &self.identity.identity
    }
}

impl fmt::Display for CurrentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let daemon = if self.is_daemon() { " daemon" } else { "" };
        write!(f, "<Process({}, started{daemon})>", self.identity.name)
    }
}

impl fmt::Debug for CurrentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The process that started this one: [`parent_process`] returns it. It is not this
/// process's child, so it cannot be joined or signalled.
#[derive(Clone)]
pub struct ParentProcess {
    pid: i32,
    name: String,
}

impl ParentProcess {
    /// The parent's name.
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// The parent's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the parent is still running (this process is still its child). A child dies
    /// with its parent, so this is false only briefly, while this process is being killed.
    pub fn is_alive(&self) -> bool {
        nix::unistd::getppid().as_raw() == self.pid
    }
}

impl fmt::Display for ParentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Process({}, unknown)>", self.name)
    }
}

impl fmt::Debug for ParentProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
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

/// The process this code runs in (`MainProcess`, or the child's own `Process-N`).
///
/// ```
/// assert_eq!(procvisor::current_process().name(), "MainProcess");
/// ```
pub fn current_process() -> CurrentProcess {
    CurrentProcess {
        identity: runtime::identity(),
    }
}

/// The process that started this one; `None` in the main process.
pub fn parent_process() -> Option<ParentProcess> {
    let (pid, name) = runtime::identity().parent.clone()?;
    Some(ParentProcess { pid, name })
}

/// The children of this process that are still running. Finished children are reaped (a child
/// nobody joins is reaped by the process supervisor within 20 ms of its exit in any case).
pub fn active_children() -> Vec<Child> {
    let Some(supervisor) = process_supervisor::try_get() else {
        return Vec::new();
    };
    supervisor
        .children()
        .active()
        .into_iter()
        .filter(|r| r.exit_status().is_none())
        .map(Child::from_record)
        .collect()
}

/// Whether spawn starts may use a child re-executed ahead of time (the default: yes, once this
/// process has spawned two children). Turning it off kills the child held in reserve, if any;
/// every spawn then re-executes the program at the moment of `start()`. See the
/// [`context`](crate::context) docs.
///
/// ```
/// procvisor::set_spawn_prestart(false);
/// procvisor::set_spawn_prestart(true);
/// ```
pub fn set_spawn_prestart(enabled: bool) {
    prestart::set_enabled(enabled);
}

/// The number of CPUs this process may use.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
