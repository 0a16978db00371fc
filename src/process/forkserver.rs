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
use procvisor_actors::reply::{self, Reply};
use procvisor_actors::{fdpass, spawner, sys};

use crate::error::{Error, Result};

/// Largest control message (they are a few bytes).
const MAX_MSG: usize = 1024;

// ---- the fork server process ------------------------------------------------------------

/// The fork server's main loop. Never returns: it exits when its parent closes the control
/// socket.
pub(crate) fn serve(control: OwnedFd) -> ! {
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
        let Some(link) = fds.pop() else {
            let reason = "fork request without a link fd".to_string();
            reply_to_parent(
                &control,
                &ForkServerMsg::Failed {
                    id: request.id,
                    reason,
                },
            );
            continue;
        };
        match fork_child(&control, link, &mut children) {
            // The pidfd goes with the answer: the parent must not `pidfd_open` the pid itself,
            // since we may reap the child (and the pid be reused) before it could.
            Ok(pid) => reply_with_fds(
                &control,
                &ForkServerMsg::Started {
                    id: request.id,
                    pid,
                },
                &[children[&pid].as_fd()],
            ),
            Err(e) => {
                let reason = e.to_string();
                reply_to_parent(
                    &control,
                    &ForkServerMsg::Failed {
                        id: request.id,
                        reason,
                    },
                );
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
    reply_with_fds(control, msg, &[]);
}

fn reply_with_fds(control: &OwnedFd, msg: &ForkServerMsg, fds: &[std::os::fd::BorrowedFd<'_>]) {
    if let Ok(bytes) = bootstrap::encode_payload(msg) {
        if fdpass::send_with_fds(control.as_fd(), &bytes, fds).is_err() {
            // The parent is gone: so are we.
            std::process::exit(0);
        }
    }
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
    pending: Mutex<HashMap<u64, PendingStart>>,
    /// The children this fork server forked for us, so their exits are published without
    /// waiting for an actor hop (the supervisor is told too, for its bookkeeping).
    children: Mutex<HashMap<i32, Weak<ChildRecord>>>,
}

/// A start waiting for the fork server's answer; the reader thread completes it.
struct PendingStart {
    name: String,
    daemon: bool,
    link: UnixStream,
    reply: Reply<Result<Arc<ChildRecord>>>,
}

static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Starts a child by asking the fork server (started on first use) to fork one.
pub(crate) fn start(
    boot: Bootstrap,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> Result<Arc<ChildRecord>> {
    let client = client()?;
    let name = boot.name.clone();
    let (parent_end, child_end) =
        UnixStream::pair().map_err(|e| Error::io("cannot create the bootstrap socket", e))?;
    // Written before the fork even happens: the child finds it waiting in its socket.
    bootstrap::send_with_fds(parent_end.as_fd(), &boot, fds)
        .map_err(|e| Error::io(format!("cannot send the bootstrap of {name}"), e))?;
    let id = client.next_id.fetch_add(1, Ordering::Relaxed);
    let (reply, pending) = reply::channel();
    client
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            id,
            PendingStart {
                name: name.clone(),
                daemon: boot.daemon,
                link: parent_end,
                reply,
            },
        );
    let request = bootstrap::encode_payload(&ForkRequest { id })
        .map_err(|e| Error::io("cannot encode a fork request", e))?;
    let child_fd: OwnedFd = child_end.into();
    if let Err(e) = fdpass::send_with_fds(client.control.as_fd(), &request, &[child_fd.as_fd()]) {
        client
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        forget_client(&client);
        return Err(Error::Spawn { name, source: e });
    }
    drop(child_fd);
    pending.wait().unwrap_or_else(|| {
        Err(Error::Spawn {
            name,
            source: std::io::Error::other("the fork server exited"),
        })
    })
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
        pending: Mutex::new(HashMap::new()),
        children: Mutex::new(HashMap::new()),
    });
    let reader = client.clone();
    std::thread::Builder::new()
        .name("procvisor-forkserver".into())
        .spawn(move || read_replies(reader))
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

/// Routes the fork server's messages: answers to starts, and relayed exits.
fn read_replies(client: Arc<Client>) {
    let mut buf = [0u8; MAX_MSG];
    let node = Node::get();
    loop {
        let (n, mut fds) = match fdpass::recv_with_fds(client.control.as_fd(), &mut buf) {
            Ok((0, _)) | Err(_) => break,
            Ok(got) => got,
        };
        let Ok(msg) = bootstrap::decode_payload::<ForkServerMsg>(&buf[..n]) else {
            continue;
        };
        match msg {
            ForkServerMsg::Started { id, pid } => {
                let Some(start) = take_pending(&client, id) else {
                    continue;
                };
                let PendingStart {
                    name,
                    daemon,
                    link,
                    reply,
                } = start;
                reply.send(match fds.pop() {
                    Some(pidfd) => {
                        let record = adopt(node, name, daemon, link, pid, pidfd);
                        lock(&client.children).insert(pid, Arc::downgrade(&record));
                        Ok(record)
                    }
                    None => Err(Error::Spawn {
                        name,
                        source: std::io::Error::other("the fork server sent no pidfd"),
                    }),
                });
            }
            ForkServerMsg::Failed { id, reason } => {
                if let Some(start) = take_pending(&client, id) {
                    let source = std::io::Error::other(reason);
                    start.reply.send(Err(Error::Spawn {
                        name: start.name,
                        source,
                    }));
                }
            }
            ForkServerMsg::Exited { pid, status } => {
                if let Some(record) = lock(&client.children)
                    .remove(&pid)
                    .and_then(|w| w.upgrade())
                {
                    record.finish_with(status);
                }
                let _ = node
                    .supervisor()
                    .cast(SupervisorMsg::RelayedExit(pid, status));
            }
        }
    }
    // The fork server is gone; its children died with it (PR_SET_PDEATHSIG). Fail what waits.
    forget_client(&client);
    let _ = node.supervisor().cast(SupervisorMsg::RelayLost);
    let pending: Vec<_> = client
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for (_, start) in pending {
        let source = std::io::Error::other("the fork server exited");
        start.reply.send(Err(Error::Spawn {
            name: start.name,
            source,
        }));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn take_pending(client: &Client, id: u64) -> Option<PendingStart> {
    client
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)
}

/// Puts a freshly forked child under the process supervisor. Done on the reader thread, before
/// it reads the child's `Exited`, so the supervisor always hears of a child before its exit.
fn adopt(
    node: &Node,
    name: String,
    daemon: bool,
    link: UnixStream,
    pid: i32,
    pidfd: OwnedFd,
) -> Arc<ChildRecord> {
    let record = Arc::new(ChildRecord::new(pid, name, daemon, pidfd, link, true));
    let _ = node.supervisor().cast(SupervisorMsg::Adopt(record.clone()));
    record
}

/// Takes the fork server's control fd out of the environment, if this process is one.
pub(crate) fn control_fd_from_env() -> Option<OwnedFd> {
    super::popen::take_inherited_fd(FORK_SERVER_FD_ENV)
}
