//! The fork start method: a single-threaded fork server that forks children on request.
//!
//! Forking a multi-threaded program is unsafe (the child inherits locks held by threads that
//! do not exist in it), and every procvisor process has threads. So the first `Fork` start
//! spawns a *fork server*: this program re-executed with `PROCVISOR_FORKSERVER_FD` set, which
//! `init()` sends straight into [`serve`] before anything else runs: no runtime, no threads, no
//! locks. Each request forks it; the child then reads its bootstrap from its parent link
//! exactly like a spawned child, so from there on the two methods are one code path.
//!
//! ```text
//!  parent                         fork server (single thread)            child
//!  ── link pair ──┐
//!  ForkRequest{id} + link fd ──▶  fork() ───────────────────────────────▶ reads Bootstrap
//!  ◀── Started{id, pid}                                                  from the link
//!  writes Bootstrap on link ─────────────────────────────────────────────▶ runs target
//!                                 pidfd readable → waitid ◀───────────── exits
//!  ◀── Exited{pid, status}
//! ```
//!
//! The children are the fork server's, so it reaps them and relays each exit status; the
//! parent still signals them through pidfds. The fork server dies with the parent
//! (`PR_SET_PDEATHSIG`, and EOF on its control socket), and its children die with it.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use procvisor_actors::bootstrap::{
    self, Bootstrap, FORK_SERVER_FD_ENV, ForkRequest, ForkServerMsg,
};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::node::Node;
use procvisor_actors::process_supervisor::SupervisorMsg;
use procvisor_actors::{fdpass, spawner, sys};

use crate::error::{Error, Result};

/// Largest control message (they are a few bytes).
const MAX_MSG: usize = 1024;

// ---- the fork server process ------------------------------------------------------------

/// The fork server's main loop. Never returns: it exits when its parent closes the control
/// socket.
pub(crate) fn serve(control: OwnedFd) -> ! {
    // Cached now, so every forked child inherits the answer instead of asking the kernel.
    let _ = sys::executable_identity();
    let mut children: HashMap<i32, OwnedFd> = HashMap::new();
    let mut buf = [0u8; MAX_MSG];
    loop {
        let ready = wait_ready(&control, &children);
        for pid in ready.exited {
            if let Some(pidfd) = children.remove(&pid) {
                let status = sys::wait_pidfd(pidfd.as_fd(), true, true)
                    .ok()
                    .flatten()
                    .unwrap_or(sys::ExitStatus::Signaled(libc::SIGKILL));
                reply_to_parent(&control, &ForkServerMsg::Exited { pid, status });
            }
        }
        if !ready.request {
            continue;
        }
        let (n, mut fds) = match fdpass::recv_with_fds(control.as_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => std::process::exit(0),
            Ok(got) => got,
        };
        let Ok(request) = bootstrap::decode_payload::<ForkRequest>(&buf[..n]) else {
            continue;
        };
        // fds: [link, reply socket]. The answer goes on the reply socket, straight to the
        // thread that asked; `Exited` goes on the control socket.
        let (Some(reply), Some(link)) = (fds.pop(), fds.pop()) else {
            continue;
        };
        match fork_child(&control, link, &mut children) {
            // The pidfd goes with the answer: the parent must not `pidfd_open` the pid itself,
            // since we may reap the child (and the pid be reused) before it could.
            Ok(pid) => {
                send_msg(
                    &reply,
                    &ForkServerMsg::Started {
                        id: request.id,
                        pid,
                    },
                    &[children[&pid].as_fd()],
                );
            }
            Err(e) => {
                let reason = e.to_string();
                let failed = ForkServerMsg::Failed {
                    id: request.id,
                    reason,
                };
                send_msg(&reply, &failed, &[]);
            }
        }
    }
}

struct Ready {
    request: bool,
    exited: Vec<i32>,
}

fn wait_ready(control: &OwnedFd, children: &HashMap<i32, OwnedFd>) -> Ready {
    let pids: Vec<i32> = children.keys().copied().collect();
    let mut fds = vec![PollFd::new(control.as_fd(), PollFlags::POLLIN)];
    fds.extend(
        pids.iter()
            .map(|pid| PollFd::new(children[pid].as_fd(), PollFlags::POLLIN)),
    );
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        }
    }
    let is_ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
    Ready {
        request: is_ready(&fds[0]),
        exited: pids
            .iter()
            .zip(&fds[1..])
            .filter(|(_, fd)| is_ready(fd))
            .map(|(pid, _)| *pid)
            .collect(),
    }
}

fn reply_to_parent(control: &OwnedFd, msg: &ForkServerMsg) {
    if !send_msg(control, msg, &[]) {
        // The parent is gone: so are we.
        std::process::exit(0);
    }
}

fn send_msg(sock: &OwnedFd, msg: &ForkServerMsg, fds: &[std::os::fd::BorrowedFd<'_>]) -> bool {
    bootstrap::encode_payload(msg)
        .is_ok_and(|bytes| fdpass::send_with_fds(sock.as_fd(), &bytes, fds).is_ok())
}

/// Forks one child. In the child this never returns: it becomes the process described by the
/// bootstrap waiting on `link`.
fn fork_child(
    control: &OwnedFd,
    link: OwnedFd,
    children: &mut HashMap<i32, OwnedFd>,
) -> std::io::Result<i32> {
    let server_pid = std::process::id() as i32;
    // SAFETY: the fork server is single-threaded (it runs nothing but this loop), so the child
    // cannot inherit a lock held by another thread.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: we are the only owner of these fds in the child; closing them keeps the
            // control socket and sibling pidfds from living on in the child.
            unsafe {
                libc::close(control.as_raw_fd());
                for fd in children.values() {
                    libc::close(fd.as_raw_fd());
                }
            }
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if nix::unistd::getppid().as_raw() != server_pid {
                std::process::exit(1);
            }
            super::child_main::run_forked(link.into_raw_fd())
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(link);
            let pid = child.as_raw();
            children.insert(pid, sys::pidfd_open(pid)?);
            Ok(pid)
        }
    }
}

// ---- the parent's side ------------------------------------------------------------------

struct Client {
    control: OwnedFd,
    next_id: AtomicU64,
    /// The children this fork server forked for us, or the exits that were relayed before the
    /// thread that started the child had registered it.
    children: Mutex<HashMap<i32, Relay>>,
}

enum Relay {
    Running(Weak<ChildRecord>),
    ExitedEarly(sys::ExitStatus),
}

static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Starts a child by asking the fork server (started on first use) to fork one.
pub(crate) fn start(
    boot: Bootstrap,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<Arc<ChildRecord>> {
    let client = client()?;
    let name = boot.name.clone();
    let spawn_error = |source| Error::Spawn {
        name: name.clone(),
        source,
    };
    let (parent_end, child_end) =
        UnixStream::pair().map_err(|e| Error::io("cannot create the bootstrap socket", e))?;
    // Written before the fork even happens: the child finds it waiting in its socket.
    bootstrap::send_with_fds(parent_end.as_fd(), &boot, fds)
        .map_err(|e| Error::io(format!("cannot send the bootstrap of {name}"), e))?;
    let (answer, answer_theirs) = fdpass::seqpacket_pair().map_err(spawn_error)?;
    let id = client.next_id.fetch_add(1, Ordering::Relaxed);
    let request = bootstrap::encode_payload(&ForkRequest { id }).map_err(spawn_error)?;
    let sent = fdpass::send_with_fds(
        client.control.as_fd(),
        &request,
        &[child_end.as_fd(), answer_theirs.as_fd()],
    );
    if let Err(e) = sent {
        forget_client(&client);
        return Err(spawn_error(e));
    }
    drop((child_end, answer_theirs));
    let mut buf = [0u8; MAX_MSG];
    let (n, mut answer_fds) = match fdpass::recv_with_fds(answer.as_fd(), &mut buf) {
        Ok((0, _)) => return Err(spawn_error(std::io::Error::other("the fork server exited"))),
        Ok(got) => got,
        Err(e) => return Err(spawn_error(e)),
    };
    match bootstrap::decode_payload::<ForkServerMsg>(&buf[..n]).map_err(spawn_error)? {
        ForkServerMsg::Started { pid, .. } => {
            let pidfd = answer_fds.pop().ok_or_else(|| {
                spawn_error(std::io::Error::other("the fork server sent no pidfd"))
            })?;
            let record = Arc::new(ChildRecord::new(
                pid,
                name,
                boot.daemon,
                pidfd,
                parent_end,
                true,
            ));
            register(&client, &record);
            Ok(record)
        }
        ForkServerMsg::Failed { reason, .. } => Err(spawn_error(std::io::Error::other(reason))),
        ForkServerMsg::Exited { .. } => Err(spawn_error(std::io::Error::other(
            "the fork server answered out of turn",
        ))),
    }
}

/// Puts a freshly forked child under the process supervisor, unless its exit was relayed
/// already. Under the `children` lock, so the supervisor hears `Adopt` before `RelayedExit`.
fn register(client: &Client, record: &Arc<ChildRecord>) {
    let pid = record.pid();
    let mut children = lock(&client.children);
    match children.remove(&pid) {
        Some(Relay::ExitedEarly(status)) => record.finish_with(status),
        _ => {
            children.insert(pid, Relay::Running(Arc::downgrade(record)));
            let _ = Node::get()
                .supervisor()
                .cast(SupervisorMsg::Adopt(record.clone()));
        }
    }
}

fn client() -> Result<Arc<Client>> {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(client) = slot.as_ref() {
        return Ok(client.clone());
    }
    let (ours, theirs) = fdpass::seqpacket_pair()
        .map_err(|e| Error::io("cannot create the fork server socket", e))?;
    let parent_pid = std::process::id() as i32;
    let (server_pid, _pidfd) =
        spawner::run(move || super::popen::exec_self(theirs, FORK_SERVER_FD_ENV, parent_pid))
            .map_err(|source| Error::Spawn {
                name: "the fork server".into(),
                source,
            })?;
    tracing::debug!(target: "procvisor", "fork server started with pid {server_pid}");
    let client = Arc::new(Client {
        control: ours,
        next_id: AtomicU64::new(1),
        children: Mutex::new(HashMap::new()),
    });
    let reader = client.clone();
    std::thread::Builder::new()
        .name("procvisor-forkserver".into())
        .spawn(move || read_exits(reader))
        .map_err(|e| Error::io("cannot start the fork server reader thread", e))?;
    *slot = Some(client.clone());
    Ok(client)
}

fn forget_client(client: &Arc<Client>) {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
        *slot = None;
    }
}

/// Publishes the exits the fork server relays (the answers to starts go to the starters).
fn read_exits(client: Arc<Client>) {
    let mut buf = [0u8; MAX_MSG];
    let node = Node::get();
    loop {
        let n = match fdpass::recv_with_fds(client.control.as_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => break,
            Ok((n, _)) => n,
        };
        let Ok(ForkServerMsg::Exited { pid, status }) = bootstrap::decode_payload(&buf[..n]) else {
            continue;
        };
        let mut children = lock(&client.children);
        match children.remove(&pid) {
            Some(Relay::Running(record)) => {
                if let Some(record) = record.upgrade() {
                    record.finish_with(status);
                }
                let _ = node
                    .supervisor()
                    .cast(SupervisorMsg::RelayedExit(pid, status));
            }
            _ => {
                children.insert(pid, Relay::ExitedEarly(status));
            }
        }
    }
    // The fork server is gone; its children died with it (PR_SET_PDEATHSIG).
    forget_client(&client);
    let _ = node.supervisor().cast(SupervisorMsg::RelayLost);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the fork server's control fd out of the environment, if this process is one.
pub(crate) fn control_fd_from_env() -> Option<OwnedFd> {
    super::popen::take_inherited_fd(FORK_SERVER_FD_ENV)
}
