//! The fork start method: a single-threaded fork server that forks children ahead of time.
//!
//! Forking a multi-threaded program is unsafe (the child inherits locks held by threads that
//! do not exist in it), and every procvisor process has threads. So the first `Fork` start
//! spawns a *fork server*: this program re-executed with `PROCVISOR_FORKSERVER_FD` set, which
//! `init()` sends straight into [`serve`] before anything else runs: no runtime, no threads, no
//! locks. Each child is a fork of it, which reads its bootstrap from its parent link exactly like
//! a spawned child, so from there on the two methods are one code path.
//!
//! The fork server forks each child as a *sibling* (`CLONE_PARENT`, see
//! [`sys::SiblingFork`]): its parent is the process that asked for it, exactly as with spawn. So
//! the parent waits for, reaps and signals its fork children itself (they join the process
//! supervisor's children like spawned ones), no exit needs relaying, and a fork child outlives
//! a fork server that dies.
//!
//! Every child is forked ahead of time, as a *spare*, on a link the parent made: the parent
//! sends `Fork` with the child's end of a fresh socket pair and keeps its own end; the fork
//! server answers each request, in order, with `Spare{pid}` (or why it could not fork). Two
//! requests are kept outstanding. A start takes the oldest spare, writes the bootstrap straight
//! onto its link and sends the next `Fork`: no round trip on its path, and the replacement is
//! forked while the child runs. Starts faster than forks wait for the next answer. The parent
//! reads the control socket only when it needs a spare, on the starting thread: the fork server
//! sends nothing but answers, so no thread waits on it.
//!
//! ```text
//!  parent                              fork server (single thread)        child
//!  Fork + [link end] (×2) ───────────▶ clone(CLONE_PARENT) ─────────────▶ waits on its link
//!  ◀── Spare{pid} (in order) ────────
//!  start(): Bootstrap on the link ──────────────────────────────────────▶ runs target, exits
//!           Fork + [link end] ───────▶ clone a replacement
//!  join(): pidfd readable → waitid ◀──────────────────────────────────── exits
//! ```
//!
//! Each spare maps the code of its path before it blocks on its bootstrap (it *rehearses*, as
//! a spawned child does: see `child_main::rehearse`), off the path of the start that uses it.
//! With [`INHERIT_CODE_ENV`]`=1` the fork server instead has its children inherit that code
//! mapped ([`sys::inherit_code`], an opt-in: it relies on kernel internals and on a write
//! through `/proc/self/mem` that security policy may forbid, and measured no faster;
//! `docs/decisions/fork-code-inheritance.md`).
//!
//! The fork server dies with the parent (`PR_SET_PDEATHSIG`, and EOF on its control socket);
//! spares and children die with the parent like spawned children. A fork server killed from
//! outside is replaced by the start that finds it gone, after the spares it had announced are
//! used: its death never fails a start.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use procvisor_actors::bootstrap::{
    self, Bootstrap, FORK_SERVER_FD_ENV, ForkServerMsg, ToForkServer,
};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::sync_util::lock;
use procvisor_actors::{fdpass, spawner, sys};

use super::prestart::Blank;
use crate::error::{Error, Result};

/// Largest control message (they are a few bytes).
const MAX_MSG: usize = 1024;

/// The fork server's process name (`/proc/<pid>/comm`).
const FORK_SERVER_NAME: &std::ffi::CStr = c"procvisor-fork";

/// The environment variable that turns code inheritance on ([`sys::inherit_code`]): `1` has
/// children inherit their path's code mapped; anything else, or unset, leaves it off (the
/// default). Read once, by the fork server as it starts.
const INHERIT_CODE_ENV: &str = "PROCVISOR_FORK_INHERIT_CODE";

/// Spares kept out at once: while the parent uses one, the next is already waiting, so the
/// fork of its replacement is never what a start waits for.
const SPARES: usize = 2;

// ---- the fork server process ------------------------------------------------------------

/// The fork server: its control socket, how it forks, and for whom.
struct Server {
    control: OwnedFd,
    /// How to fork a sibling, or why this system cannot (then every fork fails with it).
    sibling: std::result::Result<sys::SiblingFork, String>,
    parent_pid: i32,
    /// What `ps` shows for a child (the program's name).
    child_name: Option<std::ffi::CString>,
    /// Whether children inherit the mapped code of a child's path (see
    /// [`inherit_code_if_asked`]); if not, each maps it itself while it waits.
    code_inherited: bool,
}

/// The fork server's main loop: one fork per request, in order. Never returns: it exits when
/// its parent closes the control socket.
pub(crate) fn serve(control: OwnedFd) -> ! {
    // Done once here, so that every forked child inherits it instead of doing it: the
    // executable's identity, and the set-up that needs no bootstrap.
    let _ = sys::executable_identity();
    super::child_main::prepare_process();
    // What `ps` shows for it (its children take the program's name back).
    let _ = nix::sys::prctl::set_name(FORK_SERVER_NAME);
    let mut server = Server {
        control,
        sibling: sys::SiblingFork::prepare().map_err(|e| e.to_string()),
        parent_pid: nix::unistd::getppid().as_raw(),
        child_name: super::child_main::program_name(),
        code_inherited: false,
    };
    // Last: what runs from here on is what children would inherit mapped.
    server.code_inherited = inherit_code_if_asked();
    let mut buf = [0u8; MAX_MSG];
    // The parent is gone once the control socket fails: so are we.
    while server.serve_one(&mut buf) {}
    std::process::exit(0)
}

/// Code inheritance, if [`INHERIT_CODE_ENV`] asks for it: the fork server rehearses a child's
/// path and has every fork copy what that mapped ([`sys::inherit_code`]), so that a child
/// starts without faulting that code in. True if children inherit it; false when it is off or
/// the system does not allow it (`/proc/self/mem` cannot be written): children then rehearse
/// for themselves.
fn inherit_code_if_asked() -> bool {
    if std::env::var_os(INHERIT_CODE_ENV).is_none_or(|v| v != "1") {
        return false;
    }
    // SAFETY: the fork server has no other thread.
    match unsafe { sys::inherit_code::inherit_code(super::child_main::rehearse) } {
        Ok(mappings) => mappings > 0,
        Err(e) => {
            tracing::debug!(target: "procvisor", "fork children map their own code: {e}");
            false
        }
    }
}

impl Server {
    /// Answers one request: forks a child and sends its pid, or why it could not. False once
    /// the other end is gone.
    fn serve_one(&self, buf: &mut [u8]) -> bool {
        let control = self.control.as_fd();
        let (n, mut fds) = match fdpass::recv_with_fds(control, buf) {
            Ok((0, _)) | Err(_) => return false,
            Ok(got) => got,
        };
        let answer = match (bootstrap::decode_payload(&buf[..n]), fds.pop()) {
            (Ok(ToForkServer::Fork), Some(link)) => match self.fork_child(link) {
                Ok(pid) => ForkServerMsg::Spare { pid },
                Err(e) => ForkServerMsg::SpareFailed {
                    reason: e.to_string(),
                },
            },
            _ => ForkServerMsg::SpareFailed {
                reason: "the fork server got a request it cannot read".into(),
            },
        };
        send_msg(control, &answer)
    }

    /// Forks one child, a sibling (the parent's child). In the child this never returns: it
    /// becomes the process described by the bootstrap that will arrive on `link`.
    fn fork_child(&self, link: OwnedFd) -> std::io::Result<i32> {
        let sibling = self
            .sibling
            .as_ref()
            .map_err(|reason| std::io::Error::other(reason.clone()))?;
        // SAFETY: the fork server is single-threaded (it runs nothing but this loop, on the
        // thread that prepared `sibling`), so the child cannot inherit a lock held by another
        // thread.
        match unsafe { sibling.fork() }? {
            None => self.become_child(link.into_raw_fd()),
            // Our copy of the link goes: the child and the parent hold its two ends.
            Some(pid) => Ok(pid),
        }
    }

    /// What a child forked by the fork server runs right after the fork: it closes every
    /// descriptor but its link (the control socket among them), takes the program's name, and dies with its parent (the process that
    /// asked for it) — then becomes the process its bootstrap on `link` describes, having
    /// mapped its path first if it did not inherit it.
    fn become_child(&self, link: RawFd) -> ! {
        // The control socket, and anything else of the fork server's, must not live on in it.
        super::exec::close_fds_after_fork(link);
        if let Some(name) = &self.child_name {
            let _ = nix::sys::prctl::set_name(name);
        }
        // The parent may have died before this child existed; the check after the prctl
        // closes that race (as for a spawned child).
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if nix::unistd::getppid().as_raw() != self.parent_pid {
            // SAFETY: _exit is always safe; this child never became anything.
            unsafe { libc::_exit(1) }
        }
        super::child_main::run_forked(link, !self.code_inherited)
    }
}

fn send_msg(sock: BorrowedFd<'_>, msg: &ForkServerMsg) -> bool {
    bootstrap::encode_payload(msg)
        .is_ok_and(|bytes| fdpass::send_with_fds(sock, &bytes, &[]).is_ok())
}

// ---- the parent's side ------------------------------------------------------------------

/// The parent's end of one fork server: its control socket, its pidfd, and the spares.
struct Client {
    control: OwnedFd,
    /// The fork server's pid (for [`__fork_server_pid`]).
    server_pid: i32,
    /// The fork server's pidfd: it is our child, reaped when this client is dropped.
    server: Option<OwnedFd>,
    /// Held by the start taking a spare, also while it waits for one.
    spares: Mutex<Spares>,
    /// Set once the control socket failed: the fork server is gone, and this client is no
    /// longer the one new starts use.
    gone: AtomicBool,
}

#[derive(Default)]
struct Spares {
    /// Forked and waiting for their bootstraps, oldest first.
    ready: VecDeque<Blank>,
    /// Our ends of the links sent with `Fork` requests not answered yet, oldest first: the
    /// fork server answers them in order.
    asked: VecDeque<UnixStream>,
}

impl Drop for Client {
    /// A client is dropped once forgotten (its fork server gone or unreachable) and no start
    /// uses it any more: its spares and its fork server are ended and reaped.
    fn drop(&mut self) {
        for spare in lock(&self.spares).ready.drain(..) {
            spare.discard(false);
        }
        if let Some(server) = self.server.take() {
            let _ = sys::pidfd_send_signal(server.as_fd(), libc::SIGKILL);
            drop(spawner::submit(move || {
                sys::wait_pidfd(server.as_fd(), true, true)
            }));
        }
    }
}

static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Starts a child: the fork server's spare (the fork server is started on first use), waiting
/// for it if the last one was just used. The child is this process's own, launched like a
/// spawned one.
pub(crate) fn start(boot: Bootstrap, fds: &[BorrowedFd<'_>]) -> Result<Arc<ChildRecord>> {
    let failed = |source| Error::Spawn {
        name: boot.name.clone(),
        source,
    };
    let mut client = client()?;
    let spare = match client.take_spare() {
        Ok(spare) => spare,
        // A fork server found gone (killed from outside) with no spare left is replaced, once:
        // its death is not this start's failure.
        Err(_) if client.is_gone() => {
            client = self::client()?;
            client.take_spare().map_err(failed)?
        }
        Err(source) => return Err(failed(source)),
    };
    let launched = super::popen::launch(spare, boot, fds);
    // Its replacement is forked while this child runs. Asked second: the fork server, woken
    // on this CPU, would otherwise fork before the child even has its bootstrap. A fork server
    // that cannot be asked is gone: the next start starts a new one.
    let _ = client.ask_for_spare();
    launched
}

impl Client {
    /// The oldest live spare, once the fork server has sent one; its failure to fork one, if
    /// that is what it sent instead.
    fn take_spare(&self) -> std::io::Result<Blank> {
        let mut spares = lock(&self.spares);
        loop {
            while let Some(spare) = spares.ready.pop_front() {
                if !sys::pidfd_exited(spare.pidfd.as_fd()) {
                    return Ok(spare);
                }
                // Killed from outside while it waited: reap it, and have it replaced.
                spare.discard(false);
                self.ask(&mut spares)?;
            }
            if spares.asked.is_empty() {
                self.ask(&mut spares)?;
            }
            self.receive(&mut spares)?;
        }
    }

    /// Asks the fork server for one more spare.
    fn ask_for_spare(&self) -> std::io::Result<()> {
        self.ask(&mut lock(&self.spares))
    }

    /// Sends a `Fork` request with the child's end of a fresh link; keeps ours.
    fn ask(&self, spares: &mut Spares) -> std::io::Result<()> {
        let (ours, theirs) = UnixStream::pair()?;
        let request = bootstrap::encode_payload(&ToForkServer::Fork)?;
        fdpass::send_with_fds(self.control.as_fd(), &request, &[theirs.as_fd()])
            .inspect_err(|_| self.forget())?;
        spares.asked.push_back(ours);
        Ok(())
    }

    /// Whether the fork server was found gone.
    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Marks the fork server gone and has the next start start a new one. This client lives on
    /// while a start holds it, and is dropped (its fork server reaped) after the last.
    fn forget(&self) {
        self.gone.store(true, Ordering::Release);
        let mut slot = lock(&CLIENT);
        if slot.as_ref().is_some_and(|c| std::ptr::eq(&**c, self)) {
            *slot = None;
        }
    }

    /// Blocks for the fork server's answer to the oldest request: a spare (whose pidfd we
    /// open: it is our child, so its pid cannot be reused before we reap it), or why it could
    /// not fork one (asking again, for the start after this one).
    fn receive(&self, spares: &mut Spares) -> std::io::Result<()> {
        let mut buf = [0u8; MAX_MSG];
        let control = self.control.as_fd();
        let (n, _) = match fdpass::recv_with_fds(control, &mut buf) {
            // A fork server that died with requests unread has the kernel report a reset,
            // once, before the answers it did send: those spares are ours to use.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                self.forget();
                fdpass::recv_with_fds(control, &mut buf)
            }
            got => got,
        }
        .inspect_err(|_| self.forget())?;
        let link = match (n, spares.asked.pop_front()) {
            (1.., Some(link)) => link,
            _ => {
                self.forget();
                return Err(std::io::Error::other("the fork server exited"));
            }
        };
        match bootstrap::decode_payload(&buf[..n]) {
            Ok(ForkServerMsg::Spare { pid }) => {
                let pidfd = sys::pidfd_open(pid)?;
                spares.ready.push_back(Blank { pid, pidfd, link });
                Ok(())
            }
            Ok(ForkServerMsg::SpareFailed { reason }) => {
                self.ask(spares)?;
                Err(std::io::Error::other(reason))
            }
            Err(e) => Err(std::io::Error::other(format!(
                "unreadable message from the fork server: {e}"
            ))),
        }
    }
}

fn client() -> Result<Arc<Client>> {
    let mut slot = lock(&CLIENT);
    if let Some(client) = slot.as_ref() {
        return Ok(client.clone());
    }
    let (ours, theirs) = fdpass::seqpacket_pair()
        .map_err(|e| Error::io("cannot create the fork server socket", e))?;
    let parent_pid = std::process::id() as i32;
    let (server_pid, server) =
        spawner::run(move || super::exec::exec_self(theirs, FORK_SERVER_FD_ENV, parent_pid))
            .map_err(|source| Error::Spawn {
                name: "the fork server".into(),
                source,
            })?;
    tracing::debug!(target: "procvisor", "fork server started with pid {server_pid}");
    let client = Arc::new(Client {
        control: ours,
        server_pid,
        server: Some(server),
        spares: Mutex::new(Spares::default()),
        gone: AtomicBool::new(false),
    });
    for _ in 0..SPARES {
        client
            .ask_for_spare()
            .map_err(|e| Error::io("cannot ask the fork server for a child", e))?;
    }
    *slot = Some(client.clone());
    Ok(client)
}

/// Test seam, not part of the API: the pid of the fork server that this process's next fork
/// start would use, if one is running (it is started by the first fork start; `None` before,
/// and after it was found gone until the next start replaces it).
#[doc(hidden)]
pub fn __fork_server_pid() -> Option<u32> {
    lock(&CLIENT)
        .as_ref()
        .map(|client| client.server_pid as u32)
}

/// Takes the fork server's control fd out of the environment, if this process is one.
pub(crate) fn control_fd_from_env() -> Option<OwnedFd> {
    super::exec::take_inherited_fd(FORK_SERVER_FD_ENV)
}
