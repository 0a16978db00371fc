//! `sys::inherit_code`: a child forked afterwards has the read-only file pages the rehearsal
//! touched mapped without touching them, where a child forked before does not; what only the
//! first of its two runs of the rehearsal touched is not kept; and when `/proc/self/mem` cannot
//! be written (here: opened read-only, as a policy forbidding the write would leave it) it
//! fails and leaves `fork` as it was.
//!
//! A test of its own without the test harness (`harness = false`): forking is only safe in a
//! process with one thread, and the harness runs tests on threads.

use std::fs::File;
use std::os::unix::fs::FileExt;

use procvisor_actors::sys::inherit_code::{inherit_code, inherit_code_through};

/// Read-only data well away from any code and other data: the 64 KiB around its middle page
/// (what one fault maps at most) hold nothing else, so only touching the array maps that page.
static MARKER: [u8; 512 * 1024] = {
    let mut bytes = [0u8; 512 * 1024];
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = (i % 251) as u8 + 1;
        i += 1;
    }
    bytes
};

/// Pointers in read-only data: the dynamic loader writes their addresses at load time, so
/// they live in `RELRO`, a private mapping with anonymous pages.
static RELOCATED: [&str; 2] = ["relocated", "data"];

fn marker_page() -> usize {
    page_of(&MARKER[MARKER.len() / 2])
}

/// A page of the marker 128 KiB before [`marker_page`]: a fault on either maps nothing of the
/// other (fault-around maps at most the aligned 64 KiB around the page touched).
fn other_marker_page() -> usize {
    page_of(&MARKER[MARKER.len() / 4])
}

fn page_of(byte: &u8) -> usize {
    byte as *const u8 as usize & !(page_size() - 1)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Whether this process's page table maps `page` (bit 63 of its pagemap entry).
fn mapped(page: usize) -> bool {
    let pagemap = File::open("/proc/self/pagemap").expect("open pagemap");
    let mut entry = [0u8; 8];
    pagemap
        .read_exact_at(&mut entry, (page / page_size() * 8) as u64)
        .expect("read pagemap");
    u64::from_ne_bytes(entry) & (1 << 63) != 0
}

/// Forks a child that reports whether it finds the marker's page mapped; returns that.
fn child_finds_marker_mapped() -> bool {
    let page = marker_page();
    // SAFETY: this program has one thread (no test harness), so the child inherits no lock
    // held by another thread.
    match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            let code = if mapped(page) { 0 } else { 1 };
            // SAFETY: _exit has no preconditions.
            unsafe { libc::_exit(code) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child; status is a valid pointer.
            let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
            assert!(libc::WIFEXITED(status), "child status {status:#x}");
            libc::WEXITSTATUS(status) == 0
        }
    }
}

fn touch_marker() {
    touch(&MARKER[MARKER.len() / 2]);
}

fn touch_other_marker() {
    touch(&MARKER[MARKER.len() / 4]);
}

fn touch(byte: &u8) {
    // SAFETY: reads one byte of a static through a valid reference (volatile, so that the
    // read happens).
    let byte = unsafe { std::ptr::read_volatile(byte) };
    assert_ne!(byte, 0);
}

fn main() {
    // The fallback: the write through /proc/self/mem fails, nothing is inherited.
    let read_only = File::open("/proc/self/mem").expect("open /proc/self/mem");
    // SAFETY: no other thread runs (no test harness).
    let failed = unsafe { inherit_code_through(&read_only, touch_marker) };
    assert!(
        failed.is_err(),
        "inherit_code cannot succeed without writing: {failed:?}"
    );
    touch_marker();
    assert!(mapped(marker_page()), "the parent maps the page it touched");
    assert!(
        !child_finds_marker_mapped(),
        "after a failed inherit_code, fork copies no entry of a clean file mapping"
    );

    let mut runs = 0;
    let rehearse = || {
        touch_marker();
        if runs == 0 {
            touch_other_marker();
        }
        runs += 1;
    };
    // SAFETY: no other thread runs.
    let count = unsafe { inherit_code(rehearse) }.expect("inherit_code");
    assert_eq!(runs, 2, "the rehearsal runs twice");
    assert!(count >= 1, "the test binary's read-only data is inherited");
    assert!(
        child_finds_marker_mapped(),
        "after inherit_code, a child has the page the rehearsal touched mapped"
    );
    assert!(
        mapped(marker_page()) && !mapped(other_marker_page()),
        "what only the first run touched is dropped"
    );
    // The relocated read-only data (a table of pointers, fixed up at load time) was left
    // alone: dropping it would have put the file's unrelocated bytes back.
    assert_eq!(RELOCATED.join(" "), "relocated data");
    println!("inherit_code: ok (children inherit {count} mappings)");
}
