//! The fork start method: a single-threaded fork server that forks children on request.
//!
//! Forking a multi-threaded program is unsafe (the child inherits locks held by threads that
//! do not exist in it), and every procvisor process has threads. So the first `Fork` start
//! spawns a *fork server*: this program re-executed with `PROCVISOR_FORKSERVER_FD` set, which
//! `init()` sends straight into [`serve`] before anything else runs: no runtime, no threads, no
//! locks. Each child is a fork of it, which reads its bootstrap from its parent link exactly like
//! a spawned child, so from there on the two methods are one code path.
//!
//! Every child is forked ahead of time, as a *spare*: the fork server keeps two out, blocked
//! on reading their bootstraps, and sends the parent their links and pidfds. A start needs no
//! round trip: the parent writes the bootstrap straight to the oldest spare and says it used it;
//! the fork server forks a replacement while the child runs. With two out, the next start never
//! waits for that fork. Starts faster than forks wait for the next spare.
//!
//! ```text
//!  parent                              fork server (single thread)        child
//!  ◀── Spare{pid} + pidfd, link (×2) ─ fork() ─────────────────────────▶ waits on its link
//!  start(): Bootstrap on the link ──────────────────────────────────────▶ runs target, exits
//!           SpareTaken{pid} ─────────▶ fork() a replacement
//!                                      pidfd readable → waitid ◀──────── exits
//!  ◀── Exited{pid, status}
//! ```
//!
//! The children are the fork server's, so it reaps them and relays each exit status; the
//! parent still signals them through pidfds. The fork server dies with the parent
//! (`PR_SET_PDEATHSIG`, and EOF on its control socket), and its children die with it.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use procvisor_actors::bootstrap::{
    self, Bootstrap, FORK_SERVER_FD_ENV, ForkServerMsg, ToForkServer,
};
use procvisor_actors::child::ChildRecord;
use procvisor_actors::node::Node;
use procvisor_actors::process_supervisor::{ChildSource, SupervisorMsg};
use procvisor_actors::{fdpass, spawner, sys};

use crate::error::{Error, Result};

/// Largest control message (they are a few bytes).
const MAX_MSG: usize = 1024;

// ---- the fork server process ------------------------------------------------------------

/// Spares kept out at once: while the parent uses one, the next is already waiting, so the
/// fork of its replacement is never what a start waits for.
const SPARES: usize = 2;

/// The fork server's state: its children (by pid, with their pidfds), the spares the parent
/// holds and has not used yet, and how many more it wants.
struct Server {
    control: OwnedFd,
    children: HashMap<i32, OwnedFd>,
    spares_out: Vec<i32>,
    owed: usize,
}

/// The fork server's main loop. Never returns: it exits when its parent closes the control
/// socket.
pub(crate) fn serve(control: OwnedFd) -> ! {
    // Done once here, so that every forked child inherits it instead of doing it: the
    // executable's identity, and the set-up that needs no bootstrap.
    let _ = sys::executable_identity();
    super::child_main::prepare_process();
    let mut server = Server {
        control,
        children: HashMap::new(),
        spares_out: Vec::new(),
        owed: SPARES,
    };
    let mut buf = [0u8; MAX_MSG];
    loop {
        // A spare is forked only when nothing else waits: an exit to relay comes first, since
        // someone may be joining that child.
        let timeout = if server.owed > 0 {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        let ready = server.wait_ready(timeout);
        for pid in &ready.exited {
            server.relay_exit(*pid);
        }
        if ready.request {
            server.read_request(&mut buf);
        } else if ready.exited.is_empty() && server.owed > 0 {
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
        if self.spare_used(pid) {
            // Killed before it was used: the parent forgets it on this message, and gets a new one.
            self.owed += 1;
        }
        self.tell_parent(&ForkServerMsg::Exited { pid, status }, &[]);
    }

    fn read_request(&mut self, buf: &mut [u8]) {
        let n = match fdpass::recv_with_fds(self.control.as_fd(), buf) {
            Ok((0, _)) | Err(_) => std::process::exit(0),
            Ok((n, _)) => n,
        };
        match bootstrap::decode_payload(&buf[..n]) {
            Ok(ToForkServer::SpareTaken { pid }) => {
                if self.spare_used(pid) {
                    self.owed += 1;
                }
            }
            Ok(ToForkServer::WantSpare) => self.owed += 1,
            Err(_) => {}
        }
    }

    /// Takes `pid` off the spares out; whether it was one.
    fn spare_used(&mut self, pid: i32) -> bool {
        let out = self.spares_out.len();
        self.spares_out.retain(|&p| p != pid);
        self.spares_out.len() < out
    }

    /// Forks a spare and hands the parent its link and pidfd (or the reason it could not).
    fn send_spare(&mut self) {
        self.owed -= 1;
        let forked = UnixStream::pair().and_then(|(ours, theirs)| {
            let pid = self.fork_child(theirs.into(), ours.as_raw_fd())?;
            Ok((pid, ours))
        });
        match forked {
            Ok((pid, ours)) => {
                self.spares_out.push(pid);
                self.tell_parent(
                    &ForkServerMsg::Spare { pid },
                    &[self.children[&pid].as_fd(), ours.as_fd()],
                );
            }
            Err(e) => self.tell_parent(
                &ForkServerMsg::SpareFailed {
                    reason: e.to_string(),
                },
                &[],
            ),
        }
    }

    fn tell_parent(&self, msg: &ForkServerMsg, fds: &[BorrowedFd<'_>]) {
        if !send_msg(&self.control, msg, fds) {
            // The parent is gone: so are we.
            std::process::exit(0);
        }
    }

    /// Forks one child. In the child this never returns: it becomes the process described by
    /// the bootstrap that will arrive on `link`. `parent_end`, the fork server's end of that
    /// link, is closed in the child.
    fn fork_child(&mut self, link: OwnedFd, parent_end: RawFd) -> std::io::Result<i32> {
        let server_pid = std::process::id() as i32;
        // SAFETY: the fork server is single-threaded (it runs nothing but this loop), so the
        // child cannot inherit a lock held by another thread.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                // SAFETY: we are the only owner of these fds in the child; closing them keeps
                // the control socket, sibling pidfds and our own link's other end from living
                // on in the child.
                unsafe {
                    libc::close(self.control.as_raw_fd());
                    for fd in self.children.values() {
                        libc::close(fd.as_raw_fd());
                    }
                    libc::close(parent_end);
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
    state: Mutex<ClientState>,
    /// Signalled when a spare, a failure or the fork server's end arrives.
    changed: Condvar,
}

#[derive(Default)]
struct ClientState {
    /// The children this fork server forked for us, or the exits that were relayed before the
    /// thread that started the child had registered it.
    relays: HashMap<i32, Relay>,
    /// The spares the fork server sent, not used yet (oldest first).
    spares: VecDeque<Spare>,
    /// Why the fork server could not fork the last spare, for the next start to report.
    failure: Option<String>,
    /// The fork server has exited.
    gone: bool,
}

enum Relay {
    Running(Arc<ChildRecord>),
    ExitedEarly(sys::ExitStatus),
    /// A dead spare the parent dropped before its exit was relayed.
    Discarded,
}

/// A child forked ahead of time, waiting for its bootstrap.
struct Spare {
    pid: i32,
    pidfd: OwnedFd,
    link: UnixStream,
}

static CLIENT: Mutex<Option<Arc<Client>>> = Mutex::new(None);

/// Starts a child: the fork server's spare (the fork server is started on first use), waiting
/// for it if the last one was just used.
pub(crate) fn start(boot: Bootstrap, fds: &[BorrowedFd<'_>]) -> Result<Arc<ChildRecord>> {
    let client = client()?;
    let spawn_error = |source| Error::Spawn {
        name: boot.name.clone(),
        source,
    };
    let spare = client.take_spare().map_err(spawn_error)?;
    let sent = bootstrap::send_with_fds(spare.link.as_fd(), &boot, fds);
    // Its replacement is forked while this child runs. Asked second: the fork server, woken
    // on this CPU, would otherwise fork before the child even has its bootstrap.
    let want = bootstrap::encode_payload(&ToForkServer::SpareTaken { pid: spare.pid })
        .and_then(|bytes| fdpass::send_with_fds(client.control.as_fd(), &bytes, &[]));
    if let Err(e) = want {
        forget_client(&client);
        return Err(spawn_error(e));
    }
    let record = Arc::new(ChildRecord::new(
        spare.pid,
        boot.name.clone(),
        boot.daemon,
        spare.pidfd,
        spare.link,
        true,
    ));
    client.register(&record);
    match sent {
        Ok(()) => Ok(record),
        Err(e) => Err(Error::Bootstrap {
            name: boot.name.clone(),
            reason: format!("the child exited before reading its bootstrap ({e})"),
        }),
    }
}

impl Client {
    /// The spare, once the fork server has sent one; its failure to fork one, if that is what
    /// it sent instead.
    fn take_spare(&self) -> std::io::Result<Spare> {
        let mut state = lock(&self.state);
        loop {
            if let Some(spare) = state.spares.pop_front() {
                if !sys::pidfd_exited(spare.pidfd.as_fd()) {
                    return Ok(spare);
                }
                // Killed from outside while it waited: the fork server sends another once it
                // has relayed this one's exit, which is then nobody's news.
                state.relays.insert(spare.pid, Relay::Discarded);
                continue;
            }
            if let Some(reason) = state.failure.take() {
                drop(state);
                // Ask again for the start after this one.
                let want = bootstrap::encode_payload(&ToForkServer::WantSpare)
                    .and_then(|bytes| fdpass::send_with_fds(self.control.as_fd(), &bytes, &[]));
                want?;
                return Err(std::io::Error::other(reason));
            }
            if state.gone {
                // The reader thread has forgotten this client: the next start starts a new
                // fork server.
                return Err(std::io::Error::other("the fork server exited"));
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records a freshly forked child (the process supervisor asks us for our children),
    /// unless its exit was relayed already.
    fn register(&self, record: &Arc<ChildRecord>) {
        let pid = record.pid();
        let mut state = lock(&self.state);
        match state.relays.remove(&pid) {
            Some(Relay::ExitedEarly(status)) => record.finish_with(status),
            _ => {
                state.relays.insert(pid, Relay::Running(record.clone()));
            }
        }
    }

    /// Publishes what the fork server sends: spares (or why one could not be forked) and exits.
    fn read_messages(self: Arc<Self>) {
        let mut buf = [0u8; MAX_MSG];
        loop {
            let (n, mut fds) = match fdpass::recv_with_fds(self.control.as_fd(), &mut buf) {
                Ok((0, _)) | Err(_) => break,
                Ok(got) => got,
            };
            match bootstrap::decode_payload(&buf[..n]) {
                Ok(ForkServerMsg::Exited { pid, status }) => self.publish_exit(pid, status),
                Ok(ForkServerMsg::Spare { pid }) => {
                    if let (Some(link), Some(pidfd)) = (fds.pop(), fds.pop()) {
                        let link = UnixStream::from(link);
                        lock(&self.state)
                            .spares
                            .push_back(Spare { pid, pidfd, link });
                        self.changed.notify_one();
                    }
                }
                Ok(ForkServerMsg::SpareFailed { reason }) => {
                    lock(&self.state).failure = Some(reason);
                    self.changed.notify_one();
                }
                Err(_) => {}
            }
        }
        // The fork server is gone; its children died with it (PR_SET_PDEATHSIG), and no
        // status will be relayed for them any more.
        forget_client(&self);
        let mut state = lock(&self.state);
        state.gone = true;
        for (_, relay) in state.relays.drain() {
            if let Relay::Running(record) = relay {
                record.finish_with(sys::ExitStatus::Signaled(libc::SIGKILL));
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    fn publish_exit(&self, pid: i32, status: sys::ExitStatus) {
        let mut state = lock(&self.state);
        if let Some(at) = state.spares.iter().position(|s| s.pid == pid) {
            // Killed from outside before it was used; the fork server sends another.
            state.spares.remove(at);
            return;
        }
        match state.relays.remove(&pid) {
            Some(Relay::Running(record)) => record.finish_with(status),
            Some(Relay::Discarded) => {}
            _ => {
                state.relays.insert(pid, Relay::ExitedEarly(status));
            }
        }
    }
}

impl ChildSource for Client {
    fn children(&self) -> Vec<Arc<ChildRecord>> {
        lock(&self.state)
            .relays
            .values()
            .filter_map(|relay| match relay {
                Relay::Running(record) => Some(record.clone()),
                _ => None,
            })
            .collect()
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
        state: Mutex::new(ClientState::default()),
        changed: Condvar::new(),
    });
    let source: Arc<dyn ChildSource> = client.clone();
    Node::get()
        .supervisor()
        .cast(SupervisorMsg::AddSource(source))
        .map_err(|_| {
            Error::io(
                "process supervisor",
                std::io::Error::other("the process supervisor actor is gone"),
            )
        })?;
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
