//! Children started ahead of time for the spawn start method.
//!
//! A spawned child spends about a millisecond of CPU before it can read its bootstrap: the
//! exec, the dynamic loader (which probes the CPU with instructions a virtual machine traps),
//! Rust's runtime set-up, `procvisor::init()`. None of that depends on what the child will run,
//! so once a process has spawned [`PRESTART_AFTER`] children, the spawner thread keeps one more
//! started in the background, blocked on its bootstrap socket. The next spawn start takes it and
//! only writes the bootstrap; the spawner thread starts the next one while the child runs.
//!
//! A prestarted child is exactly what a spawn at that moment would have started, but for when:
//! so it is used only if what a spawned child inherits is unchanged since, namely the
//! environment, the working directory, and the files behind stdout and stderr. Otherwise it is
//! discarded and the child spawned afresh. (Other process attributes, such as the umask or
//! resource limits, are those of the moment it was prestarted; [`set_enabled`] turns the
//! mechanism off for programs that change them between starts.)
//!
//! A prestarted child is not anybody's child yet: it is not in `active_children()`, and the
//! exit sequence kills it rather than joining it. It reads EOF and exits quietly when the
//! parent closes its socket, and dies with the parent like any child (`PR_SET_PDEATHSIG`).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use procvisor_actors::bootstrap::BOOTSTRAP_FD_ENV;
use procvisor_actors::reply::Pending;
use procvisor_actors::sync_util::lock;
use procvisor_actors::{spawner, sys};

/// Spawn starts after which a child is kept prestarted (a program that starts one child does
/// not pay for a second).
pub(crate) const PRESTART_AFTER: u32 = 2;

/// A started child blocked on its bootstrap socket (spawned, prestarted or a fork spare).
pub(crate) struct Blank {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) link: UnixStream,
}

impl Blank {
    /// Ends a child that will not be used: closing its socket makes it exit quietly; the kill
    /// makes sure. Reaped on the spawner thread (`now`: here, as the exit sequence does, the
    /// process being about to end anyway).
    pub(crate) fn discard(self, now: bool) {
        let Blank { pidfd, link, .. } = self;
        drop(link);
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        let reap = move || {
            let _ = sys::wait_pidfd(pidfd.as_fd(), true, true);
        };
        if now {
            reap();
        } else {
            drop(spawner::submit(reap));
        }
    }
}

struct Prestarted {
    child: Blank,
    inherited: Inherited,
}

/// The child being prestarted on the spawner thread (or started already), if any.
type Slot = Option<Pending<std::io::Result<Prestarted>>>;

static SLOT: Mutex<Slot> = Mutex::new(None);
static SPAWNS: AtomicU32 = AtomicU32::new(0);
static ENABLED: AtomicBool = AtomicBool::new(true);

/// See [`crate::set_spawn_prestart`].
pub(crate) fn set_enabled(on: bool) {
    if on {
        ENABLED.store(true, Ordering::SeqCst);
    } else {
        discard_all();
    }
}

/// A blank child for a spawn start: the prestarted one if it is still valid, else a fresh one.
pub(crate) fn blank_child() -> std::io::Result<Blank> {
    let taken = take_valid(&mut lock_slot());
    let child = match taken {
        Some(child) => child,
        None => spawner::run(spawn_blank)?,
    };
    SPAWNS.fetch_add(1, Ordering::Relaxed);
    Ok(child)
}

/// Prestarts the next child in the background, if this process spawns often enough and none
/// is held. Called once a start has closed its copies of the fds it handed its child: a spawn
/// copies every fd of this process for as long as its exec takes, so a concurrent one would
/// hold the child's end of a pipe open past the child's exit (its peer would see EOF late).
pub(crate) fn refill() {
    if SPAWNS.load(Ordering::Relaxed) < PRESTART_AFTER || !ENABLED.load(Ordering::SeqCst) {
        return;
    }
    let mut slot = lock_slot();
    if slot.is_none() {
        *slot = Some(spawner::submit(prestart));
    }
}

/// Kills the prestarted child, if any (the exit sequence: it must not be joined).
pub(crate) fn discard_all() {
    ENABLED.store(false, Ordering::SeqCst);
    let mut slot = lock_slot();
    if let Some(prestarted) = settle(slot.take()) {
        prestarted.child.discard(true);
    }
}

fn lock_slot() -> std::sync::MutexGuard<'static, Slot> {
    lock(&SLOT)
}

/// Takes the prestarted child out of the slot if it can stand in for a spawn now, discarding
/// it otherwise. Waits for one still being started: it is further along than a fresh spawn.
fn take_valid(slot: &mut Slot) -> Option<Blank> {
    let prestarted = settle(slot.take())?;
    if prestarted.inherited == Inherited::now()
        && !sys::pidfd_exited(prestarted.child.pidfd.as_fd())
    {
        return Some(prestarted.child);
    }
    prestarted.child.discard(false);
    None
}

fn settle(slot: Slot) -> Option<Prestarted> {
    let pending = slot?;
    if spawner::is_spawner_thread() {
        // A job queued behind the caller cannot finish while it waits: leave it. Its child,
        // never handed a bootstrap, exits when the result (and the link) is dropped.
        return pending
            .wait_timeout(std::time::Duration::ZERO)
            .ok()
            .flatten()
            .and_then(Result::ok);
    }
    pending.wait().and_then(Result::ok)
}

/// Runs on the spawner thread.
fn prestart() -> std::io::Result<Prestarted> {
    // Taken before the spawn: a change racing with it makes the two differ, never match wrongly.
    let inherited = Inherited::now();
    let child = spawn_blank()?;
    Ok(Prestarted { child, inherited })
}

/// Re-executes this program with a fresh bootstrap socket. Runs on the spawner thread.
fn spawn_blank() -> std::io::Result<Blank> {
    let (parent_end, child_end) = UnixStream::pair()?;
    let parent_pid = std::process::id() as i32;
    let (pid, pidfd) = super::exec::exec_self(child_end.into(), BOOTSTRAP_FD_ENV, parent_pid)?;
    Ok(Blank {
        pid,
        pidfd,
        link: parent_end,
    })
}

/// What a spawned child inherits that a program may change between two starts.
#[derive(PartialEq, Eq, Debug)]
struct Inherited {
    env: Vec<(OsString, OsString)>,
    cwd: Option<(u64, u64)>,
    stdout: Option<(u64, u64, u64)>,
    stderr: Option<(u64, u64, u64)>,
}

impl Inherited {
    fn now() -> Inherited {
        Inherited {
            env: std::env::vars_os().collect(),
            cwd: std::fs::metadata(".").ok().map(|m| (m.dev(), m.ino())),
            stdout: file_identity(std::io::stdout().as_fd()),
            stderr: file_identity(std::io::stderr().as_fd()),
        }
    }
}

/// Device, inode and open-file position flags of the file behind `fd`, `None` if closed.
fn file_identity(fd: BorrowedFd<'_>) -> Option<(u64, u64, u64)> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    // SAFETY: F_GETFL on an fd we just stat'ed; it only reads the open file's flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    Some((st.st_dev, st.st_ino, flags as u64))
}
