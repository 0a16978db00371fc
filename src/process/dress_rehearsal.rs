//! The fork server's dress rehearsal: one child that lives a whole fork child's life before
//! the fork server serves, to learn which pages of code that life runs.
//!
//! The fork server has its children inherit the code of their path mapped (see
//! `forkserver::prepare_code_for_children`), but it can only *rehearse* that path: what it
//! cannot run itself (becoming a child, watching the parent link, running a target, the exit
//! sequence) each child would fault in again, and so would the fork server its own loop, 16
//! pages at a time, which every child would then inherit and tear down. So, while the
//! inherited mappings are still split into one-page mappings, the fork server serves one
//! request of its own, with its real loop: it forks this child (its own), sends it the
//! bootstrap of a no-op target, and lets it run to its end. Right before its `_exit` the child
//! lists the pages of those mappings it has mapped (what it inherited and, one page per touch,
//! what it ran besides) on a pipe; the fork server maps the same pages, and every later child
//! inherits them.
//!
//! The rehearsal is an optimisation: any failure (it cannot fork, the child fails or takes more
//! than [`REPORT_TIMEOUT_MS`]) only means that children fault those pages in themselves.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use procvisor_actors::bootstrap::{self, Bootstrap, ForkServerMsg, ToForkServer};
use procvisor_actors::{fdpass, sys};

use super::target;

/// How long (ms) the fork server waits for the rehearsing child's report before it gives up on
/// it (and kills it): a no-op child's life takes well under a millisecond.
const REPORT_TIMEOUT_MS: u16 = 5000;

/// True in the rehearsing child only (set in the fork server around the fork that makes it):
/// its exit reports (see [`report_if_rehearsing`]).
static REHEARSING: AtomicBool = AtomicBool::new(false);

/// In the rehearsing child: where to report, and on which mappings.
static REPORT: Mutex<Option<(OwnedFd, sys::InheritedCode)>> = Mutex::new(None);

/// The rehearsal's target.
fn no_op() {}

/// Runs the dress rehearsal and maps what its child reported; returns how many pages it
/// reported. `serve_one` is the fork server's loop body: it answers one request on the
/// control socket it is given, forking the child as the fork server's own.
///
/// # Safety
/// The calling process must have no other thread (it forks, and reads its own code pages while
/// they are split).
pub(crate) unsafe fn learn_the_path(
    code: &sys::InheritedCode,
    serve_one: impl FnOnce(BorrowedFd<'_>) -> bool,
) -> io::Result<usize> {
    let (requests, control) = fdpass::seqpacket_pair()?;
    let (link, childs_link) = UnixStream::pair()?;
    let (report, report_end) = nix::unistd::pipe()?;
    // The request, as a parent sends it.
    let request = bootstrap::encode_payload(&ToForkServer::Fork)?;
    fdpass::send_with_fds(requests.as_fd(), &request, &[childs_link.as_fd()])?;
    drop(childs_link);
    // What the child inherits; the fork server's own copies go right after the fork.
    *lock_report() = Some((report_end, code.clone()));
    REHEARSING.store(true, Ordering::SeqCst);
    let served = serve_one(control.as_fd());
    REHEARSING.store(false, Ordering::SeqCst);
    drop(lock_report().take());
    if !served {
        return Err(io::Error::other("the fork server could not answer itself"));
    }
    let pid = forked_pid(&requests)?;
    let pages = send_bootstrap(&link).and_then(|()| read_report(report, pid));
    if pages.is_err() {
        // SAFETY: kill on our own child, not reaped yet (its pid cannot be reused).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let pages = pages?;
    code.map_pages(&pages);
    Ok(pages.len())
}

fn lock_report() -> std::sync::MutexGuard<'static, Option<(OwnedFd, sys::InheritedCode)>> {
    REPORT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pid in the fork server's answer to its own request.
fn forked_pid(requests: &OwnedFd) -> io::Result<i32> {
    let mut buf = [0u8; 256];
    let (n, _) = fdpass::recv_with_fds(requests.as_fd(), &mut buf)?;
    match bootstrap::decode_payload(&buf[..n])? {
        ForkServerMsg::Spare { pid } => Ok(pid),
        ForkServerMsg::SpareFailed { reason } => Err(io::Error::other(reason)),
    }
}

/// Sends the rehearsing child the bootstrap of [`no_op`], as the fork server's own child.
fn send_bootstrap(link: &UnixStream) -> io::Result<()> {
    let boot = Bootstrap {
        executable: sys::executable_identity()?,
        entry_offset: entry_offset_of(no_op),
        payload: bootstrap::encode_payload(&())?,
        name: "dress-rehearsal".into(),
        parent_pid: std::process::id() as i32,
        parent_name: "procvisor-fork".into(),
        ..super::child_main::sample_bootstrap()
    };
    bootstrap::send_with_fds(link.as_fd(), &boot, &[])
}

/// The entry offset of a function target taking no arguments.
fn entry_offset_of<F: target::Target<()>>(_: F) -> i64 {
    crate::code_ref::CodeRef::of(target::entry::<F, ()> as target::EntryFn)
        .to_parts()
        .0
}

/// Reads the child's list of pages until it exits (EOF), within [`REPORT_TIMEOUT_MS`] for
/// each read.
fn read_report(report: OwnedFd, pid: i32) -> io::Result<Vec<usize>> {
    let mut bytes = Vec::new();
    let mut file = std::fs::File::from(report);
    let mut chunk = [0u8; 4096];
    loop {
        let mut poll = [nix::poll::PollFd::new(
            file.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        if nix::poll::poll(&mut poll, REPORT_TIMEOUT_MS)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the rehearsing child {pid} did not report"),
            ));
        }
        match file.read(&mut chunk)? {
            0 => break,
            n => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(bytes
        .chunks_exact(8)
        .filter_map(|b| b.try_into().ok())
        .map(|b| u64::from_ne_bytes(b) as usize)
        .collect())
}

/// Called by every child right before its `_exit`: in the rehearsing child, writes the pages
/// it has mapped to the fork server. Elsewhere a load of a flag.
pub(crate) fn report_if_rehearsing() {
    if !REHEARSING.load(Ordering::Relaxed) {
        return;
    }
    let Some((fd, code)) = lock_report().take() else {
        return;
    };
    let Ok(pages) = code.mapped_pages() else {
        return;
    };
    let bytes: Vec<u8> = pages
        .iter()
        .flat_map(|&page| (page as u64).to_ne_bytes())
        .collect();
    // The child is about to exit: a failed write only means the fork server learns nothing.
    let _ = std::fs::File::from(fd).write_all(&bytes);
}
