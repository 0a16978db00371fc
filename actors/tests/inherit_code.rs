//! `sys::drop_code_pages`, `CodeMappings::inherit_touched` and `InheritedCode::rejoin`: a
//! child forked afterwards has the read-only file pages its parent touched mapped without
//! touching them, where a child forked before does not; between the last two steps a touch
//! (or `map_pages`) maps exactly the page touched, `mapped_pages` lists what is mapped, and
//! `rejoin` leaves as many mappings as there were.
//!
//! A test of its own without the test harness (`harness = false`): forking is only safe in a
//! process with one thread, and the harness runs tests on threads.

use std::fs::File;
use std::os::unix::fs::FileExt;

use procvisor_actors::sys;

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
    let middle = &MARKER[MARKER.len() / 2] as *const u8 as usize;
    middle & !(page_size() - 1)
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

/// How many mappings this process has (lines of `/proc/self/maps`).
fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("read maps")
        .lines()
        .count()
}

fn touch_marker() {
    // SAFETY: reads one byte of a static through a valid reference (volatile, so that the
    // read happens).
    let byte = unsafe { std::ptr::read_volatile(&MARKER[MARKER.len() / 2]) };
    assert_ne!(byte, 0);
}

fn main() {
    // SAFETY: no other thread runs (no test harness).
    let code = unsafe { sys::drop_code_pages() }.expect("drop_code_pages");
    touch_marker();
    assert!(mapped(marker_page()), "the parent maps the page it touched");
    assert!(
        !child_finds_marker_mapped(),
        "before inherit_touched, fork copies no entry of a clean file mapping"
    );
    let mappings_before = mapping_count();
    // SAFETY: no other thread runs.
    let inherited = unsafe { code.inherit_touched() }.expect("inherit_touched");
    assert!(
        mapping_count() > mappings_before,
        "inherit_touched splits the inherited mappings"
    );
    assert!(!mapped(marker_page()), "inherit_touched drops the entries");
    touch_marker();
    let page = marker_page();
    assert!(mapped(page));
    assert!(
        !mapped(page - page_size()) && !mapped(page + page_size()),
        "while split, a touch maps only the page touched (no fault-around)"
    );
    // What a dress rehearsal reports and the parent maps: whole pages of inherited mappings.
    let neighbour = page + page_size();
    let mapped_now = inherited.mapped_pages().expect("mapped_pages");
    assert!(mapped_now.contains(&page) && !mapped_now.contains(&neighbour));
    let outside = &page as *const usize as usize & !(page_size() - 1);
    assert_eq!(
        inherited.map_pages(&[neighbour, neighbour + 1, outside]),
        1,
        "map_pages reads whole pages of inherited mappings only"
    );
    assert!(mapped(neighbour) && !mapped(neighbour + page_size()));
    let count = inherited.mappings();
    assert!(count >= 1, "the test binary's read-only data is inherited");
    // SAFETY: no other thread runs.
    unsafe { inherited.rejoin() }.expect("rejoin");
    assert_eq!(
        mapping_count(),
        mappings_before,
        "rejoin merges the one-page mappings back"
    );
    assert!(mapped(page), "rejoin keeps what was mapped");
    assert!(
        child_finds_marker_mapped(),
        "after inherit_touched, a child has the page its parent touched mapped"
    );
    // The relocated read-only data (a table of pointers, fixed up at load time) was left
    // alone: dropping it would have put the file's unrelocated bytes back.
    assert_eq!(RELOCATED.join(" "), "relocated data");
    println!("inherit_code: ok (children inherit {count} mappings)");
}
