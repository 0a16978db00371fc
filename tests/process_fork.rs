//! What is specific to `StartMethod::Fork` and its fork server: children that are ours (for
//! the OS too: `CLONE_PARENT`) yet forked from one single-threaded fork server, the fork
//! server's dress rehearsal, its name, a fork child's C library state, and fork as a whole
//! program's default. How fork children behave otherwise (exit codes, signals, names, parent,
//! authkey, graceful stop, bootstrap failures, exit semantics, dying with their parent) is
//! tested with spawned ones, every process test running under both methods
//! (`per_start_method!`); the fork server's spares and its death are in `process_prestart`.

procvisor::test_init!();

mod common;

use common::{
    KillOnDrop, TempDir, in_driver, line_with, lines_with, read, run_driver, say, write_atomic,
};
use procvisor::{Child, Process, StartMethod, active_children, current_process, parent_process};

fn fork(p: Process) -> Process {
    p.start_method(StartMethod::Fork)
}

fn ours() -> i32 {
    std::process::id() as i32
}

/// Starts `p`, joins it (generously) and returns it and its exit code; kills it if the test
/// fails.
fn run(p: Process) -> (Child, Option<i32>) {
    let mut guard = KillOnDrop::new();
    let p = common::start(&mut guard, p);
    p.join_timeout(common::GENEROUS).unwrap();
    let code = p.exitcode();
    (p, code)
}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panics(marker: String) {
    panic!("{marker}")
}

/// Where this program's code is loaded: the same in every fork of one process, different for
/// every newly executed one (address space layout randomization).
fn code_address() -> usize {
    code_address as fn() -> usize as usize
}

/// Whether the kernel randomizes where programs are loaded (so two executions differ).
fn layout_is_randomized() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/randomize_va_space").is_ok_and(|v| v.trim() != "0")
}

/// Child: reports its pid, its OS parent, who procvisor says its parent is, its name and
/// where its code is loaded.
fn report_origin(out: String) {
    let parent = parent_process().unwrap();
    write_atomic(
        &out,
        &format!(
            "{}|{}|{:?}|{}|{}|{}",
            std::process::id(),
            std::os::unix::process::parent_id(),
            parent.pid(),
            parent.name(),
            current_process().name(),
            code_address()
        ),
    );
}

#[test]
fn fork_children_are_ours_and_forked_from_one_fork_server() {
    let dir = TempDir::new("fork-origin");
    let outs: Vec<String> = (0..3).map(|i| dir.file(&format!("out{i}"))).collect();
    let mut layouts = Vec::new();
    for out in &outs {
        let (p, code) = run(fork(Process::new(report_origin, (out.clone(),))));
        assert_eq!(code, Some(0));
        let report = read(out);
        let fields: Vec<&str> = report.split('|').collect();
        assert_eq!(fields[0], p.pid().to_string(), "{report}");
        // Our child for the OS too (the fork server forks it as our own) …
        assert_eq!(fields[1], ours().to_string(), "{report}");
        // … and for procvisor.
        assert_eq!(fields[2], ours().to_string(), "{report}");
        assert_eq!(fields[3], "MainProcess", "{report}");
        assert_eq!(fields[4], p.name(), "{report}");
        layouts.push(fields[5].to_string());
    }
    layouts.dedup();
    assert_eq!(
        layouts.len(),
        1,
        "not forks of one fork server: {layouts:?}"
    );
    if layout_is_randomized() {
        assert_ne!(
            layouts[0],
            code_address().to_string(),
            "forked from us, not from a fork server"
        );
    }
    let server = common::fork_server_of(ours()).expect("no fork server among our children");
    assert!(
        active_children().iter().all(|c| c.pid() != server),
        "the fork server is not one of our children for procvisor"
    );
}

/// The fork server forks one child of its own before it serves (its dress rehearsal, which
/// runs a whole child's life to learn the pages it needs): reaped before the first answer, so
/// the fork server has no child — not even a zombie — once a fork start has returned.
#[test]
fn the_fork_servers_dress_rehearsal_leaves_no_child_behind() {
    assert_eq!(run(fork(Process::new(exit_with, (4,)))).1, Some(4));
    let server = common::fork_server_of(ours()).expect("no fork server among our children");
    let children = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .expect("cannot read the fork server's children");
    assert_eq!(
        children.trim(),
        "",
        "the fork server has children of its own"
    );
}

/// Child: reports its thread id as the kernel and as the C library see it (the library's is
/// in the id of the thread's CPU clock), and whether its robust mutex list is registered.
#[cfg(target_env = "gnu")]
fn report_thread_identity(out: String) {
    // SAFETY: gettid has no preconditions.
    let kernel_tid = unsafe { libc::gettid() };
    let mut clock: libc::clockid_t = 0;
    // SAFETY: pthread_self is always valid for the calling thread; `clock` is writable.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    // glibc encodes a thread's CPU clock as (!tid << 3) | 6.
    let library_tid = !(clock >> 3);
    let mut head: *mut libc::c_void = std::ptr::null_mut();
    let mut len: libc::size_t = 0;
    // SAFETY: get_robust_list(0, …) writes the calling thread's list head and length.
    let robust = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            0,
            &mut head as *mut *mut libc::c_void,
            &mut len as *mut libc::size_t,
        )
    } == 0
        && !head.is_null();
    write_atomic(&out, &format!("{rc}|{kernel_tid}|{library_tid}|{robust}"));
}

#[test]
#[cfg(target_env = "gnu")]
fn a_fork_childs_c_library_knows_its_thread() {
    let dir = TempDir::new("fork-tid");
    let out = dir.file("out");
    let (_child, code) = run(fork(Process::new(report_thread_identity, (out.clone(),))));
    assert_eq!(code, Some(0));
    let report = read(&out);
    let fields: Vec<&str> = report.split('|').collect();
    assert_eq!(fields[0], "0", "{report}");
    // (The target of a test crate's child runs on a thread named `main`, not on the process's
    // first thread: its id is not the pid, see `procvisor::test_init!`.)
    assert_eq!(
        fields[2], fields[1],
        "the C library has a stale thread id: {report}"
    );
    assert_eq!(
        fields[3], "true",
        "no robust mutex list registered: {report}"
    );
}

#[test]
fn the_fork_server_is_named_for_ps() {
    // (That the children themselves are named like the program is
    // process_basics::children_are_named_like_the_program.)
    assert_eq!(run(fork(Process::new(|| (), ()))).1, Some(0));
    let server = common::fork_server_of(ours()).expect("no fork server");
    assert_eq!(
        common::comm_of(server).as_deref(),
        Some(common::FORK_SERVER_NAME)
    );
}

// ---- a whole program using fork ---------------------------------------------------------

fn print_names() {
    let g = Process::new(|| say(format!("NAME {}", current_process().name())), ())
        .start()
        .unwrap();
    g.join().unwrap();
    say(format!(
        "NAME {} LAYOUT {}",
        current_process().name(),
        code_address()
    ));
}

#[test]
#[ignore = "driver for fork_as_the_default_start_method"]
fn driver_fork_default() {
    if !in_driver() {
        return;
    }
    procvisor::set_start_method(StartMethod::Fork).unwrap();
    say(format!("DRIVER {}", std::process::id()));
    let p = Process::new(print_names, ()).start().unwrap();
    p.join().unwrap();
    say(format!("EXITCODE {:?}", p.exitcode()));
    let twin = Process::new(print_names, ()).start().unwrap();
    twin.join().unwrap();
    let q = Process::new(panics, ("fork-panic-marker".to_string(),))
        .start()
        .unwrap();
    q.join().unwrap();
    say(format!("PANIC EXITCODE {:?}", q.exitcode()));
}

#[test]
fn fork_as_the_default_start_method() {
    let out = run_driver("driver_fork_default");
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    let stderr = common::stderr_of(&out);
    assert_eq!(line_with(&stdout, "EXITCODE "), "Some(0)", "{all}");
    let names = lines_with(&stdout, "NAME ");
    assert_eq!(names.len(), 4, "{all}");
    assert_eq!(names[0], "Process-1:1", "{all}");
    assert_eq!(names[2], "Process-2:1", "{all}");
    let (name, layout) = names[1].split_once(" LAYOUT ").unwrap();
    assert_eq!(name, "Process-1");
    let (name, twin_layout) = names[3].split_once(" LAYOUT ").unwrap();
    assert_eq!(name, "Process-2");
    if layout_is_randomized() {
        assert_eq!(
            layout, twin_layout,
            "the children were spawned, not forked from one fork server\n{all}"
        );
    }
    assert_eq!(line_with(&stdout, "PANIC EXITCODE "), "Some(1)", "{all}");
    let header = stderr
        .lines()
        .position(|l| l == "Process Process-3:")
        .unwrap_or_else(|| panic!("no `Process Process-3:` line\n{all}"));
    let message = stderr
        .lines()
        .position(|l| l.contains("fork-panic-marker"))
        .unwrap_or_else(|| panic!("no panic message\n{all}"));
    assert!(header < message, "{all}");
}
