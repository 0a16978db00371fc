//! The fork start method: a single-threaded fork server that forks children on request.
//!
//! Forking a multi-threaded program is unsafe (the child inherits locks held by threads that
//! do not exist in it), and every procvisor process has threads. So the first `Fork` start
//! spawns a *fork server*: this program re-executed with `PROCVISOR_FORKSERVER_FD` set, which
//! `init()` sends straight into [`serve`] before anything else runs: no runtime, no threads, no
//! locks. Each child is a fork of it, which reads its bootstrap from its parent link exactly like
//! a spawned child, so from there on the two methods are one code path.
//!
//! The fork server keeps one child forked ahead of time, a *spare*, and sends the parent its
//! link and pidfd. A start then needs no round trip: the parent writes the bootstrap straight to
//! the spare and tells the fork server, which forks the next spare while the child runs. Without
//! a spare at hand (the first start, or starts faster than forks), the parent asks for a fork:
//!
//! ```text
//!  parent                            fork server (single thread)          child
//!  ◀── Spare{pid} + link, pidfd ──── fork() ──────────────────────────▶ waits on its link
//!  writes Bootstrap on link ──────────────────────────────────────────▶ runs target
//!  SpareTaken ──────────────────▶    fork() the next spare
//!                                    pidfd readable → waitid ◀───────── exits
//!  ◀── Exited{pid, status}
//!
//!  Fork{id} + link, reply socket ──▶ fork() ───────────────────────────▶ reads Bootstrap
//!  ◀── Started{id, pid} + pidfd                                          from the link
//! ```
//!
//! The children are the fork server's, so it reaps them and relays each exit status; the
//! parent still signals them through pidfds. The fork server dies with the parent
//! (`PR_SET_PDEATHSIG`, and EOF on its control socket), and its children die with it.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use procvisor_actors::bootstrap::{
    self, Bootstrap, FORK_SERVER_FD_ENV, ForkServerMsg, ToForkServer,
};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::node::Node;
use procvisor_actors::process_supervisor::SupervisorMsg;
use procvisor_actors::{fdpass, spawner, sys};

use crate::error::{Error, Result};

/// Largest control message (they are a few bytes).
const MAX_MSG: usize = 1024;

// ---- the fork server process ------------------------------------------------------------

/// The fork server's state: its children (by pid, with their pidfds) and the spare the parent
/// holds and has not used yet.
struct Server {
    control: OwnedFd,
    children: HashMap<i32, OwnedFd>,
    spare_out: Option<i32>,
}

/// The fork server's main loop. Never returns: it exits when its parent closes the control
/// socket.
pub(crate) fn serve(control: OwnedFd) -> ! {
    // Cached now, so every forked child inherits the answer instead of asking the kernel.
    let _ = sys::executable_identity();
    let mut server = Server {
        control,
        children: HashMap::new(),
        spare_out: None,
    };
    let mut buf = [0u8; MAX_MSG];
    loop {
        // The next spare is forked only when nothing else waits: an exit to relay or a request
        // to answer comes first, since someone is waiting for those.
        let timeout = if server.spare_out.is_some() {
            PollTimeout::NONE
        } else {
            PollTimeout::ZERO
        };
        let ready = server.wait_ready(timeout);
        for pid in &ready.exited {
            server.relay_exit(*pid);
        }
        if ready.request {
            server.serve_request(&mut buf);
        } else if ready.exited.is_empty() && server.spare_out.is_none() {
            server.send_spare();
        }
    }
}

struct Ready {
    request: bool,
    exited: Vec<i32>,
}

impl Server {
    fn wait_ready(&self, timeout: PollTimeout) -> Ready {
        let pids: Vec<i32> = self.children.keys().copied().collect();
        let mut fds = vec![PollFd::new(self.control.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            pids.iter()
                .map(|pid| PollFd::new(self.children[pid].as_fd(), PollFlags::POLLIN)),
        );
        loop {
            match poll(&mut fds, timeout) {
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

    fn relay_exit(&mut self, pid: i32) {
        let Some(pidfd) = self.children.remove(&pid) else {
            return;
        };
        let status = sys::wait_pidfd(pidfd.as_fd(), true, true)
            .ok()
            .flatten()
            .unwrap_or(sys::ExitStatus::Signaled(libc::SIGKILL));
        if self.spare_out == Some(pid) {
            // Killed before it was used (the parent forgets it on this message too).
            self.spare_out = None;
        }
        self.tell_parent(&ForkServerMsg::Exited { pid, status }, &[]);
    }

    fn serve_request(&mut self, buf: &mut [u8]) {
        let (n, mut fds) = match fdpass::recv_with_fds(self.control.as_fd(), buf) {
            Ok((0, _)) | Err(_) => std::process::exit(0),
            Ok(got) => got,
        };
        match bootstrap::decode_payload::<ToForkServer>(&buf[..n]) {
            Ok(ToForkServer::SpareTaken { pid }) => {
                if self.spare_out == Some(pid) {
                    self.spare_out = None;
                }
            }
            Ok(ToForkServer::Fork { id }) => {
                // fds: [link, reply socket]. The answer goes on the reply socket, straight to
                // the thread that asked; `Exited` goes on the control socket.
                if let (Some(reply), Some(link)) = (fds.pop(), fds.pop()) {
                    self.fork_on_request(id, link, &reply);
                }
            }
            Err(_) => {}
        }
    }

    fn fork_on_request(&mut self, id: u64, link: OwnedFd, reply: &OwnedFd) {
        match self.fork_child(link, &[reply.as_raw_fd()]) {
            // The pidfd goes with the answer: the parent must not `pidfd_open` the pid itself,
            // since we may reap the child (and the pid be reused) before it could.
            Ok(pid) => send_msg(
                reply,
                &ForkServerMsg::Started { id, pid },
                &[self.children[&pid].as_fd()],
            ),
            Err(e) => send_msg(
                reply,
                &ForkServerMsg::Failed {
                    id,
                    reason: e.to_string(),
                },
                &[],
            ),
        };
    }

    /// Forks a spare and hands the parent its link and pidfd.
    fn send_spare(&mut self) {
        let Ok((ours, theirs)) = UnixStream::pair() else {
            return;
        };
        let Ok(pid) = self.fork_child(theirs.into(), &[ours.as_raw_fd()]) else {
            return;
        };
        self.spare_out = Some(pid);
        self.tell_parent(
            &ForkServerMsg::Spare { pid },
            &[self.children[&pid].as_fd(), ours.as_fd()],
        );
    }

    fn tell_parent(&self, msg: &ForkServerMsg, fds: &[BorrowedFd<'_>]) {
        if !send_msg(&self.control, msg, fds) {
            // The parent is gone: so are we.
            std::process::exit(0);
        }
    }

    /// Forks one child. In the child this never returns: it becomes the process described by
    /// the bootstrap that will arrive on `link`.
    /// `also_close` are fds of the fork server's that the child must not keep (the other end of
    /// its own link, a reply socket).
    fn fork_child(&mut self, link: OwnedFd, also_close: &[RawFd]) -> std::io::Result<i32> {
        let server_pid = std::process::id() as i32;
        // SAFETY: the fork server is single-threaded (it runs nothing but this loop), so the
        // child cannot inherit a lock held by another thread.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                // SAFETY: we are the only owner of these fds in the child; closing them keeps
                // the control socket and sibling pidfds from living on in the child.
                unsafe {
                    libc::close(self.control.as_raw_fd());
                    for fd in self.children.values() {
                        libc::close(fd.as_raw_fd());
                    }
                    for fd in also_close {
                        libc::close(*fd);
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
                self.children.insert(pid, sys::pidfd_open(pid)?);
                Ok(pid)
            }
        }
    }
}

fn send_msg(sock: &OwnedFd, msg: &ForkServerMsg, fds: &[BorrowedFd<'_>]) -> bool {
    bootstrap::encode_payload(msg)
        .is_ok_and(|bytes| fdpass::send_with_fds(sock.as_fd(), &bytes, fds).is_ok())
}

// ---- the parent's side ------------------------------------------------------------------

struct Client {
    control: OwnedFd,
    next_id: AtomicU64,
    state: Mutex<ClientState>,
}

#[derive(Default)]
struct ClientState {
    /// The children this fork server forked for us, or the exits that were relayed before the
    /// thread that started the child had registered it.
    relays: HashMap<i32, Relay>,
    /// The spare the fork server sent, not used yet.
    spare: Option<Spare>,
}

enum Relay {
    Running(Weak<ChildRecord>),
    ExitedEarly(sys::ExitStatus),
}

/// A child forked ahead of time, waiting for its bootstrap.
struct Spare {
    pid: i32,
    pidfd: OwnedFd,
    link: UnixStream,
}

static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Starts a child: the spare the fork server sent, or one forked on request (the fork server
/// is started on first use).
pub(crate) fn start(boot: Bootstrap, fds: &[BorrowedFd<'_>]) -> Result<Arc<ChildRecord>> {
    let client = client()?;
    if let Some(spare) = client.take_spare() {
        if let Some(started) = client.start_spare(spare, &boot, fds) {
            return started;
        }
    }
    client.start_on_request(boot, fds)
}

impl Client {
    fn take_spare(&self) -> Option<Spare> {
        lock(&self.state).spare.take()
    }

    /// Sends the spare its bootstrap and the fork server word that it was used. `None` if the
    /// spare was gone (killed from outside): the caller then asks for a fork.
    fn start_spare(
        &self,
        spare: Spare,
        boot: &Bootstrap,
        fds: &[BorrowedFd<'_>],
    ) -> Option<Result<Arc<ChildRecord>>> {
        let sent = bootstrap::send_with_fds(spare.link.as_fd(), boot, fds);
        let taken = bootstrap::encode_payload(&ToForkServer::SpareTaken { pid: spare.pid })
            .and_then(|bytes| fdpass::send_with_fds(self.control.as_fd(), &bytes, &[]));
        if let Err(e) = taken {
            forget_client(self);
            return Some(Err(Error::Spawn {
                name: boot.name.clone(),
                source: e,
            }));
        }
        sent.ok()?;
        let record = Arc::new(ChildRecord::new(
            spare.pid,
            boot.name.clone(),
            boot.daemon,
            spare.pidfd,
            spare.link,
            true,
        ));
        self.register(&record);
        Some(Ok(record))
    }

    fn start_on_request(
        &self,
        boot: Bootstrap,
        fds: &[BorrowedFd<'_>],
    ) -> Result<Arc<ChildRecord>> {
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = bootstrap::encode_payload(&ToForkServer::Fork { id }).map_err(spawn_error)?;
        let sent = fdpass::send_with_fds(
            self.control.as_fd(),
            &request,
            &[child_end.as_fd(), answer_theirs.as_fd()],
        );
        if let Err(e) = sent {
            forget_client(self);
            return Err(spawn_error(e));
        }
        drop((child_end, answer_theirs));
        let mut buf = [0u8; MAX_MSG];
        let (n, mut answer_fds) = match fdpass::recv_with_fds(answer.as_fd(), &mut buf) {
            Ok((0, _)) => {
                return Err(spawn_error(std::io::Error::other("the fork server exited")));
            }
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
                self.register(&record);
                Ok(record)
            }
            ForkServerMsg::Failed { reason, .. } => Err(spawn_error(std::io::Error::other(reason))),
            _ => Err(spawn_error(std::io::Error::other(
                "the fork server answered out of turn",
            ))),
        }
    }

    /// Puts a freshly forked child under the process supervisor, unless its exit was relayed
    /// already. Under the state lock, so the supervisor hears `Adopt` before `RelayedExit`.
    fn register(&self, record: &Arc<ChildRecord>) {
        let pid = record.pid();
        let mut state = lock(&self.state);
        match state.relays.remove(&pid) {
            Some(Relay::ExitedEarly(status)) => record.finish_with(status),
            _ => {
                state
                    .relays
                    .insert(pid, Relay::Running(Arc::downgrade(record)));
                let _ = Node::get()
                    .supervisor()
                    .cast(SupervisorMsg::Adopt(record.clone()));
            }
        }
    }

    /// Publishes what the fork server sends on its own: exits and spares (the answers to
    /// requests go to the threads that asked).
    fn read_messages(self: Arc<Self>) {
        let mut buf = [0u8; MAX_MSG];
        let node = Node::get();
        loop {
            let (n, mut fds) = match fdpass::recv_with_fds(self.control.as_fd(), &mut buf) {
                Ok((0, _)) | Err(_) => break,
                Ok(got) => got,
            };
            match bootstrap::decode_payload(&buf[..n]) {
                Ok(ForkServerMsg::Exited { pid, status }) => self.publish_exit(node, pid, status),
                Ok(ForkServerMsg::Spare { pid }) => {
                    if let (Some(link), Some(pidfd)) = (fds.pop(), fds.pop()) {
                        let link = UnixStream::from(link);
                        lock(&self.state).spare = Some(Spare { pid, pidfd, link });
                    }
                }
                _ => {}
            }
        }
        // The fork server is gone; its children died with it (PR_SET_PDEATHSIG).
        forget_client(&self);
        let _ = node.supervisor().cast(SupervisorMsg::RelayLost);
    }

    fn publish_exit(&self, node: &Node, pid: i32, status: sys::ExitStatus) {
        let mut state = lock(&self.state);
        if state.spare.as_ref().is_some_and(|s| s.pid == pid) {
            // Killed from outside before it was used; the next start asks for a fork.
            state.spare = None;
            return;
        }
        match state.relays.remove(&pid) {
            Some(Relay::Running(record)) => {
                if let Some(record) = record.upgrade() {
                    record.finish_with(status);
                }
                let _ = node
                    .supervisor()
                    .cast(SupervisorMsg::RelayedExit(pid, status));
            }
            _ => {
                state.relays.insert(pid, Relay::ExitedEarly(status));
            }
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
        state: Mutex::new(ClientState::default()),
    });
    let reader = client.clone();
    std::thread::Builder::new()
        .name("procvisor-forkserver".into())
        .spawn(move || reader.read_messages())
        .map_err(|e| Error::io("cannot start the fork server reader thread", e))?;
    *slot = Some(client.clone());
    Ok(client)
}

fn forget_client(client: &Client) {
    let mut slot = CLIENT.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_some_and(|c| std::ptr::eq(&**c, client)) {
        *slot = None;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the fork server's control fd out of the environment, if this process is one.
pub(crate) fn control_fd_from_env() -> Option<OwnedFd> {
    super::popen::take_inherited_fd(FORK_SERVER_FD_ENV)
}
