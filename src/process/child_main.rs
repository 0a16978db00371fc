//! The child's side of the bootstrap: become the process the parent described, run the target,
//! run the exit sequence, exit. Entered from `procvisor::init()` when `PROCVISOR_BOOTSTRAP_FD`
//! is set; never returns.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use procvisor_actors::bootstrap::{
    self, BOOTSTRAP_FAILED_EXIT_CODE, Bootstrap, ChildToParent, MAX_BOOTSTRAP_FRAME,
    PROTOCOL_VERSION,
};
use procvisor_actors::{fdpass, sync_util};

use super::current::{self, Identity};
use super::target::{EntryFn, EntryOutcome};
use crate::code_ref::CodeRef;

/// The version every process of a tree must share.
pub(crate) const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs the spawned child whose bootstrap socket is `link`. Never returns.
pub(crate) fn run(link: OwnedFd) -> ! {
    run_with(link.into_raw_fd(), true, true)
}

/// Runs a child forked by the fork server (as its parent's child: see `forkserver`); it
/// rehearses only if it did not inherit the code of its path mapped.
pub(crate) fn run_forked(fd: RawFd, rehearse: bool) -> ! {
    // The fork server's cached pid is not ours.
    procvisor_actors::shm::forget_cached_pid();
    run_with(fd, false, rehearse)
}

fn run_with(fd: RawFd, spawned: bool, rehearse: bool) -> ! {
    // SAFETY: the parent passed us this fd number for exactly this purpose, and nothing else in
    // this freshly started process has taken ownership of it.
    let link = unsafe { UnixStream::from_raw_fd(fd) };
    // Our grandchildren must not inherit our end of the link to our parent.
    let _ = nix::fcntl::fcntl(
        &link,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    if spawned {
        prepare_process();
        // (A forked child is named by the fork server's code, right after the fork.)
        if let Some(name) = program_name() {
            let _ = nix::sys::prctl::set_name(&name);
        }
    }
    // Our own, not inherited: a fork server's spare makes it while it waits.
    super::parent_link::create_stop_event();
    if rehearse {
        self::rehearse();
    }

    let (boot, fds) = match read_bootstrap(&link) {
        Ok(Some(got)) => got,
        // The parent closed the link without a word: it discarded this prestarted child (see
        // `prestart`) or exited. Nobody is waiting for a message.
        // SAFETY: _exit is always safe; this process never became anything that needs cleanup.
        Ok(None) => unsafe { libc::_exit(BOOTSTRAP_FAILED_EXIT_CODE) },
        Err(reason) => fail(&link, "(unknown)", &reason),
    };
    if let Err(reason) = check_compatible(&boot, spawned) {
        fail(&link, &boot.name, &reason);
    }
    let entry = match CodeRef::<EntryFn>::from_parts(boot.entry_offset, boot.executable).resolve() {
        Ok(entry) => entry,
        Err(e) => fail(&link, &boot.name, &format!("cannot run the target: {e}")),
    };
    become_child(&boot);
    super::parent_link::watch(link.as_raw_fd());

    let before_run = || tracing::info!(target: "procvisor", "child process calling run()");
    // The arguments' file descriptors (a `Connection`, …) are handed to their values as the
    // trampoline decodes them.
    let run = || fdpass::providing_fds(fds, || entry(&boot.payload, &before_run));
    let code = as_after_runtime_start(|| match std::panic::catch_unwind(run) {
        Ok(EntryOutcome::Finished(code)) => code,
        Ok(EntryOutcome::BadPayload(reason)) => fail(&link, &boot.name, &reason),
        // The panic hook has already printed the message (and backtrace when enabled).
        Err(_) => 1,
    });
    current::exit_child(code)
}

/// Runs `target` as it would run in a child of a binary, whose `init` is called from `main`
/// after the Rust runtime's start-up. A child of a test crate ([`crate::test_init!`]) runs
/// before that start-up, so it does what it would have done: ignore `SIGPIPE` (or a child
/// whose stdout is a closed pipe dies when it flushes), and run the target on a thread named
/// `main` (the name panic messages and debuggers show), with the main thread's stack size.
fn as_after_runtime_start(target: impl FnOnce() -> i32 + Send) -> i32 {
    if !crate::runtime::is_before_runtime_start() {
        return target();
    }
    // SAFETY: setting a signal's disposition to "ignore" has no preconditions; it is what the
    // Rust runtime does at start-up.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let target = std::sync::Mutex::new(Some(target));
    let take = || sync_util::lock(&target).take();
    std::thread::scope(|scope| {
        let named = std::thread::Builder::new()
            .name("main".to_owned())
            .stack_size(main_stack_size())
            .spawn_scoped(scope, || take().map(|target| target()));
        match named.map(|thread| thread.join()) {
            Ok(Ok(Some(result))) => result,
            // No thread could be started: the target runs here, unnamed, rather than not at all.
            // (A panic escaping the thread is impossible: `target` catches them; it counts as
            // one, exit code 1.)
            _ => take().map_or(1, |target| target()),
        }
    })
}

/// The stack size of a main thread: the soft `RLIMIT_STACK`, 8 MiB when it is unlimited.
fn main_stack_size() -> usize {
    const DEFAULT: usize = 8 << 20;
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK) {
        Ok((soft, _)) if soft != nix::sys::resource::RLIM_INFINITY => {
            usize::try_from(soft).unwrap_or(DEFAULT).max(1 << 20)
        }
        _ => DEFAULT,
    }
}

/// The part of a child's set-up that does not depend on its bootstrap and that a fork
/// inherits: the fork server does it once for all its children; a spawned child does it while
/// it waits for its bootstrap (off the path of a start that uses a prestarted child).
pub(crate) fn prepare_process() {
    current::register_at_exit();
    install_panic_hook();
    super::parent_link::install_handler();
    // The first use of the fd hand-over's thread-local registers its destructor, which makes
    // the C library walk every loaded object (a page fault in each).
    fdpass::providing_fds(Vec::new(), || ());
}

/// The name `ps` should show for a child (the first 15 bytes of argv\[0\]'s file name), rather
/// than `exe`, after the `/proc/self/exe` a spawned child was executed from, or the fork
/// server's name that a forked child inherits.
pub(crate) fn program_name() -> Option<std::ffi::CString> {
    let arg0 = std::env::args_os().next()?;
    let file_name = std::path::Path::new(&arg0).file_name()?;
    let mut name: Vec<u8> = file_name.as_encoded_bytes().to_vec();
    name.retain(|&b| b != 0);
    name.truncate(15);
    std::ffi::CString::new(name).ok()
}

/// Rehearses a child's path: what it runs once its bootstrap has come that does not depend on
/// it, and the checks of its exit sequence (see [`rehearse_while_waiting`]).
pub(crate) fn rehearse() {
    rehearse_while_waiting();
    super::current::rehearse_exit();
}

/// Runs, harmlessly, the parts of a child's life after its bootstrap that do not depend on
/// it: decoding a bootstrap, flushing the standard streams. A spawned child maps none of the
/// program's code until it runs it (each first touch is a page fault, ~3 µs here), so a child
/// started ahead that rehearses while it waits has that code mapped when its start comes. The
/// fork server rehearses once for all its children, which inherit what it mapped (see
/// `forkserver::prepare_code_for_children`).
fn rehearse_while_waiting() {
    if let Ok(bytes) = bootstrap::encode_payload(&sample_bootstrap()) {
        let _ = bootstrap::decode_payload::<Bootstrap>(&bytes);
    }
    // Nothing has been written yet: these flush nothing.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every C stdio stream; it has no preconditions.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// A bootstrap of this version for a rehearsal: no target, no parent, no log level.
pub(crate) fn sample_bootstrap() -> Bootstrap {
    Bootstrap {
        protocol: PROTOCOL_VERSION,
        crate_version: CRATE_VERSION.into(),
        executable: (0, 0),
        entry_offset: 0,
        payload: vec![0; 8],
        name: "rehearsal".into(),
        identity: vec![1, 2],
        authkey: vec![0; 32],
        daemon: false,
        parent_pid: 0,
        parent_name: "rehearsal".into(),
        log_level: None,
        start_method: "fork".into(),
    }
}

/// The bootstrap, or `None` if the parent closed the link without sending one.
fn read_bootstrap(link: &UnixStream) -> Result<Option<(Bootstrap, Vec<OwnedFd>)>, String> {
    bootstrap::recv_with_fds::<Bootstrap>(link, MAX_BOOTSTRAP_FRAME)
        .map_err(|e| format!("cannot read the bootstrap from the parent: {e}"))
}

fn check_compatible(boot: &Bootstrap, spawned: bool) -> Result<(), String> {
    if boot.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "bootstrap protocol version mismatch: parent speaks {} (procvisor {}), this child \
             speaks {PROTOCOL_VERSION} (procvisor {CRATE_VERSION})",
            boot.protocol, boot.crate_version
        ));
    }
    if boot.crate_version != CRATE_VERSION {
        return Err(format!(
            "procvisor version mismatch: parent {} vs child {CRATE_VERSION}",
            boot.crate_version
        ));
    }
    if spawned && nix::unistd::getppid().as_raw() != boot.parent_pid {
        return Err("the parent process is gone".into());
    }
    Ok(())
}

fn become_child(boot: &Bootstrap) {
    current::set_identity(Identity {
        name: boot.name.clone(),
        identity: boot.identity.clone(),
        authkey: boot.authkey.clone(),
        daemon: boot.daemon,
        parent: Some((boot.parent_pid, boot.parent_name.clone())),
    });
    current::mark_initialized();
    if let Some(level) = boot.log_level.and_then(crate::runtime::level_from_u8) {
        let _ = crate::util::log_to_stderr(level);
        // The exit sequence logs; if it runs from `atexit` (the target called
        // `std::process::exit`), it must run on the spawner thread, which cannot be started
        // from there.
        procvisor_actors::spawner::ensure_started();
    }
    if let Ok(method) = boot.start_method.parse() {
        crate::context::force_start_method(method);
    }
}

thread_local! {
    /// Set while this thread runs code whose panics are caught and reported elsewhere.
    static PANICS_REPORTED_ELSEWHERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's panic messages silenced: for code that catches its own panics
/// and sends the message to whoever asked (a pool task's panic reaches the caller, as Python's
/// pool re-raises a task's exception there without printing it in the worker).
pub(crate) fn with_panics_reported_elsewhere<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            PANICS_REPORTED_ELSEWHERE.with(|q| q.set(self.0));
        }
    }
    let _restore = Restore(PANICS_REPORTED_ELSEWHERE.with(|q| q.replace(true)));
    f()
}

/// Python prints `Process Process-1:` before a child's traceback; we print the same line before
/// the default panic message.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PANICS_REPORTED_ELSEWHERE.with(|q| q.get()) {
            return;
        }
        let _ = writeln!(
            std::io::stderr(),
            "Process {}:",
            current::name_for_messages()
        );
        default(info);
    }));
}

/// Reports a failed bootstrap to the parent and on stderr, then exits without running anything.
fn fail(link: &UnixStream, name: &str, reason: &str) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "procvisor: {name} failed to start: {reason}"
    );
    let mut writer = link;
    let _ = bootstrap::send(
        &mut writer,
        &ChildToParent::BootstrapFailed(reason.to_string()),
    );
    // No exit sequence: this process never became a procvisor process with children.
    // SAFETY: _exit is always safe to call; it skips atexit handlers on purpose.
    unsafe { libc::_exit(BOOTSTRAP_FAILED_EXIT_CODE) }
}
