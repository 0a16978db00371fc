//! `StartMethod::Fork`: children forked from a single-threaded fork server behave like spawned
//! ones (exit codes, signals, names, parent, authkey, graceful stop, bootstrap failures, exit
//! semantics, dying with their parent).

procvisor::test_init!();

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    GENEROUS, KillOnDrop, PidsGuard, TempDir, in_driver, line_with, lines_with, pid_is_running,
    pid_state, read, run_driver, say, spawn_driver, wait_until, write_atomic,
};
use procvisor::{
    Error, Process, Run, StartMethod, active_children, current_process, parent_process,
    wait_for_stop,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn fork(p: Process) -> Process {
    p.with_start_method(StartMethod::Fork).unwrap()
}

fn ours() -> i32 {
    std::process::id() as i32
}

/// Starts `p`, joins it (generously) and returns its exit code; kills it if the test fails.
fn run(p: &Process) -> Option<i32> {
    let mut guard = KillOnDrop::new();
    guard.add(p);
    p.start().unwrap();
    p.join(Some(GENEROUS)).unwrap();
    p.exitcode()
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
fn fork_start_join_exitcode_and_display() {
    let p = fork(Process::new(|| (), ()));
    let name = p.name();
    assert_eq!(p.to_string(), format!("<Process({name}, initial)>"));
    assert_eq!(run(&p), Some(0));
    let pid = p.pid().unwrap();
    assert!(pid > 0 && pid != ours());
    assert!(!p.is_alive());
    assert_eq!(p.to_string(), format!("<Process({name}, stopped)>"));
}

#[test]
fn fork_children_are_ours_and_forked_from_one_fork_server() {
    let dir = TempDir::new("fork-origin");
    let outs: Vec<String> = (0..3).map(|i| dir.file(&format!("out{i}"))).collect();
    let ps: Vec<Process> = outs
        .iter()
        .map(|out| fork(Process::new(report_origin, (out.clone(),))))
        .collect();
    let mut layouts = Vec::new();
    for (p, out) in ps.iter().zip(&outs) {
        assert_eq!(run(p), Some(0));
        let report = read(out);
        let fields: Vec<&str> = report.split('|').collect();
        assert_eq!(fields[0], p.pid().unwrap().to_string(), "{report}");
        // Our child for the OS too (the fork server forks it as our own) …
        assert_eq!(fields[1], ours().to_string(), "{report}");
        // … and for procvisor.
        assert_eq!(fields[2], format!("Some({})", ours()), "{report}");
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
        active_children().iter().all(|c| c.pid() != Some(server)),
        "the fork server is not one of our children for procvisor"
    );
}

/// The fork server forks nothing of its own (every child is the parent's, `CLONE_PARENT`): it
/// has no child, not even a zombie, once a fork start has returned.
#[test]
fn the_fork_server_has_no_child_of_its_own() {
    assert_eq!(run(&fork(Process::new(exit_with, (4,)))), Some(4));
    let server = common::fork_server_of(ours()).expect("no fork server among our children");
    let children = std::fs::read_to_string(format!("/proc/{server}/task/{server}/children"))
        .expect("cannot read the fork server's children");
    assert_eq!(
        children.trim(),
        "",
        "the fork server has children of its own"
    );
}

/// The switch of code inheritance, read by the fork server as it starts.
const INHERIT_CODE_ENV: &str = "PROCVISOR_FORK_INHERIT_CODE";

/// Child: sends the page faults it has taken so far (its counts start at zero at the fork).
fn report_faults(conn: procvisor::Connection) -> procvisor::Result<()> {
    // SAFETY: getrusage writes one rusage struct, which `usage` is.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    conn.send(&(usage.ru_minflt as u64))
}

#[test]
#[ignore = "driver for code_inheritance_is_an_opt_in"]
fn driver_fork_faults() {
    if !in_driver() {
        return;
    }
    let on = common::driver_param().as_deref() == Some("on");
    // SAFETY: this driver runs one test, and nothing of procvisor has started yet: no other
    // thread reads the environment.
    unsafe {
        if on {
            std::env::set_var(INHERIT_CODE_ENV, "1");
        } else {
            std::env::remove_var(INHERIT_CODE_ENV);
        }
    }
    let mut faults = Vec::new();
    for _ in 0..3 {
        let (rx, tx) = procvisor::pipe(false).unwrap();
        let p = fork(Process::new(report_faults, (tx,)));
        p.start().unwrap();
        faults.push(rx.recv::<u64>().unwrap());
        p.join(None).unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    say(format!("FAULTS {}", faults.iter().min().unwrap()));
}

/// Code inheritance is off unless `PROCVISOR_FORK_INHERIT_CODE=1` asks for it (whatever this
/// test process was started with: each driver sets it for itself); with it, a fork child has
/// its path's code mapped without faulting it in, so it reaches its target with fewer page
/// faults than a child that mapped (rehearsed) that code itself.
#[test]
fn code_inheritance_is_an_opt_in() {
    let faults = |param| {
        let out = common::run_driver_with("driver_fork_faults", Some(param));
        let all = common::describe(&out);
        assert!(out.status.success(), "{all}");
        let faults: u64 = line_with(&common::stdout_of(&out), "FAULTS ")
            .parse()
            .unwrap();
        faults
    };
    let (off, on) = (faults("off"), faults("on"));
    eprintln!("page faults before the target: {off} without code inheritance, {on} with it");
    assert!(
        on < off,
        "with code inheritance a child takes fewer faults: {on} with it, {off} without"
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
    let p = fork(Process::new(report_thread_identity, (out.clone(),)));
    assert_eq!(run(&p), Some(0));
    let report = read(&out);
    let fields: Vec<&str> = report.split('|').collect();
    assert_eq!(fields[0], "0", "{report}");
    assert_eq!(fields[1], p.pid().unwrap().to_string(), "{report}");
    assert_eq!(
        fields[2], fields[1],
        "the C library has a stale thread id: {report}"
    );
    assert_eq!(
        fields[3], "true",
        "no robust mutex list registered: {report}"
    );
}

/// Child: reports the name `ps` shows for it.
fn report_comm(out: String) {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    write_atomic(&out, comm.trim_end());
}

#[test]
fn children_are_named_like_the_program() {
    let dir = TempDir::new("comm");
    let ours = std::fs::read_to_string("/proc/self/comm").unwrap();
    for method in [StartMethod::Spawn, StartMethod::Fork] {
        let out = dir.file(&format!("{method:?}"));
        let p = Process::new(report_comm, (out.clone(),))
            .with_start_method(method)
            .unwrap();
        assert_eq!(run(&p), Some(0));
        // Not `exe` (spawn executes /proc/self/exe), nor the fork server's name.
        assert_eq!(read(&out), ours.trim_end(), "{method:?}");
    }
    let server = common::fork_server_of(std::process::id() as i32).expect("no fork server");
    assert_eq!(
        common::comm_of(server).as_deref(),
        Some(common::FORK_SERVER_NAME)
    );
}

fn several_args(out: String, a: u32, b: String, c: Vec<i64>) {
    write_atomic(&out, &format!("{a}|{b}|{c:?}"));
}

#[test]
fn fork_target_receives_its_arguments() {
    let dir = TempDir::new("fork-args");
    let out = dir.file("out");
    let p = fork(Process::new(
        several_args,
        (out.clone(), 9u32, "fork ✓".to_string(), vec![-3i64, 4]),
    ));
    assert_eq!(run(&p), Some(0));
    assert_eq!(read(&out), "9|fork ✓|[-3, 4]");
}

#[derive(Serialize, Deserialize)]
struct Reporter {
    out: String,
}

impl Run for Reporter {
    type Output = std::io::Result<()>;
    fn run(self) -> std::io::Result<()> {
        std::fs::write(&self.out, current_process().name())
    }
}

#[test]
fn fork_run_struct_target() {
    let dir = TempDir::new("fork-run");
    let out = dir.file("out");
    let p = fork(Process::from_run(Reporter { out: out.clone() })).with_name("fork-runner");
    assert_eq!(run(&p), Some(0));
    assert_eq!(read(&out), "fork-runner");
}

fn report_authkey(out: String) {
    let key: String = current_process()
        .authkey()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write_atomic(&out, &key);
}

#[test]
fn fork_child_inherits_the_authkey() {
    let dir = TempDir::new("fork-authkey");
    let out = dir.file("out");
    let p = fork(Process::new(report_authkey, (out.clone(),)));
    assert_eq!(run(&p), Some(0));
    let ours: String = current_process()
        .authkey()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(read(&out), ours);
}

fn write_own_name(out: String) {
    write_atomic(&out, &current_process().name());
}

/// Child: starts a fork grandchild that reports its name; reports ours.
fn start_fork_grandchild(out: String, grand_out: String) -> procvisor::Result<()> {
    let g = Process::new(write_own_name, (grand_out,)).with_start_method(StartMethod::Fork)?;
    g.start()?;
    g.join(None)?;
    write_atomic(
        &out,
        &format!("{}|{:?}", current_process().name(), g.exitcode()),
    );
    Ok(())
}

#[test]
fn fork_names_and_grandchildren() {
    let dir = TempDir::new("fork-names");
    let (out, grand_out) = (dir.file("out"), dir.file("grand"));
    let p = fork(Process::new(
        start_fork_grandchild,
        (out.clone(), grand_out.clone()),
    ));
    let name = p.name();
    assert_eq!(run(&p), Some(0));
    assert_eq!(read(&out), format!("{name}|Some(0)"));
    assert_eq!(read(&grand_out), format!("{name}:1"));

    let out = dir.file("custom");
    let p = fork(Process::new(write_own_name, (out.clone(),))).with_name("forked-Ω");
    assert_eq!(run(&p), Some(0));
    assert_eq!(read(&out), "forked-Ω");
}

// ---- exit codes and signals -------------------------------------------------------------

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panics(marker: String) {
    panic!("{marker}")
}

fn fails() -> Result<(), String> {
    Err("fork child failed on purpose (expected)".into())
}

#[test]
fn fork_exit_codes() {
    assert_eq!(
        run(&fork(Process::new(|| Ok::<(), String>(()), ()))),
        Some(0)
    );
    assert_eq!(run(&fork(Process::new(fails, ()))), Some(1));
    assert_eq!(run(&fork(Process::new(exit_with, (7,)))), Some(7));
    let p = fork(Process::new(
        panics,
        ("fork child panicked on purpose (expected)".to_string(),),
    ));
    assert_eq!(run(&p), Some(1));
    assert!(p.to_string().ends_with("stopped[1])>"), "{p}");
}

fn sleep_forever(ready: String) {
    write_atomic(&ready, &std::process::id().to_string());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn ready_fork_sleeper(dir: &TempDir, tag: &str, guard: &mut KillOnDrop) -> Process {
    let ready = dir.file(tag);
    let p = fork(Process::new(sleep_forever, (ready.clone(),)));
    guard.add(&p);
    p.start().unwrap();
    assert!(common::wait_for_file(Path::new(&ready)), "{p} never ready");
    p
}

#[test]
fn fork_join_timeout_terminate_and_kill() {
    let dir = TempDir::new("fork-signals");
    let mut guard = KillOnDrop::new();
    let p = ready_fork_sleeper(&dir, "a", &mut guard);
    let name = p.name();
    let timeout = Duration::from_millis(200);
    let t = Instant::now();
    p.join(Some(timeout)).unwrap();
    assert!(t.elapsed() >= timeout);
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.to_string(), format!("<Process({name}, started)>"));
    p.terminate().unwrap();
    p.join(Some(GENEROUS)).unwrap();
    assert_eq!(p.exitcode(), Some(-15));
    assert_eq!(
        p.to_string(),
        format!("<Process({name}, stopped[SIGTERM])>")
    );

    let q = ready_fork_sleeper(&dir, "b", &mut guard);
    q.kill().unwrap();
    q.join(Some(GENEROUS)).unwrap();
    assert_eq!(q.exitcode(), Some(-9));
}

fn cooperative(ready: String) {
    write_atomic(&ready, "");
    while !wait_for_stop(Some(Duration::from_millis(50))) {}
}

fn very_stubborn(ready: String) {
    // SAFETY: installing SIG_IGN for SIGTERM has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    sleep_forever(ready);
}

#[test]
fn fork_graceful_stop_and_escalation() {
    let dir = TempDir::new("fork-stop");
    let mut guard = KillOnDrop::new();
    let coop_ready = dir.file("coop");
    let coop = fork(Process::new(cooperative, (coop_ready.clone(),)));
    guard.add(&coop);
    coop.start().unwrap();
    assert!(common::wait_for_file(Path::new(&coop_ready)));
    coop.stop(GENEROUS).unwrap();
    assert_eq!(coop.exitcode(), Some(0));

    let stubborn = ready_fork_sleeper(&dir, "stubborn", &mut guard);
    let grace = Duration::from_millis(200);
    stubborn.stop(grace).unwrap();
    assert_eq!(stubborn.exitcode(), Some(-15));

    let ready = dir.file("very");
    let very = fork(Process::new(very_stubborn, (ready.clone(),)));
    guard.add(&very);
    very.start().unwrap();
    assert!(common::wait_for_file(Path::new(&ready)));
    let t = Instant::now();
    very.stop(grace).unwrap();
    assert!(t.elapsed() >= 2 * grace);
    assert_eq!(very.exitcode(), Some(-9));
}

// ---- bootstrap failure ------------------------------------------------------------------

struct Undecodable;

impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undecodable refuses to decode"))
    }
}

fn takes_undecodable(_: Undecodable) {
    unreachable!("the target must not run");
}

#[test]
fn fork_bootstrap_failure_is_reported() {
    let p = fork(Process::new(takes_undecodable, (Undecodable,)));
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    let t = Instant::now();
    p.start().unwrap();
    let joined = p.join(Some(GENEROUS));
    assert!(t.elapsed() < GENEROUS, "join hung");
    match joined {
        Err(Error::Bootstrap { reason, .. }) => {
            assert!(reason.contains("Undecodable refuses to decode"), "{reason}")
        }
        other => panic!("expected a Bootstrap error, got {other:?}"),
    }
    assert_eq!(p.exitcode(), Some(255));
}

// ---- reaping, active_children, many children --------------------------------------------

#[test]
fn fork_children_are_reaped_and_listed_while_running() {
    let dir = TempDir::new("fork-reap");
    let mut guard = KillOnDrop::new();
    let running = ready_fork_sleeper(&dir, "running", &mut guard);
    let short = fork(Process::new(|| (), ()));
    assert_eq!(run(&short), Some(0));
    let short_pid = short.pid().unwrap();
    assert!(
        wait_until(GENEROUS, || pid_state(short_pid).is_none()),
        "the fork child {short_pid} was not reaped: {:?}",
        pid_state(short_pid)
    );
    let active = active_children();
    assert!(
        active.iter().any(|c| c.pid() == running.pid()),
        "{active:?}"
    );
    assert!(
        active.iter().all(|c| c.pid() != Some(short_pid)),
        "{active:?}"
    );
    running.terminate().unwrap();
    running.join(Some(GENEROUS)).unwrap();
    assert_eq!(running.exitcode(), Some(-15));
    assert!(active_children().iter().all(|c| c.pid() != running.pid()));
}

#[test]
fn fork_exit_status_is_known_once_the_pid_is_gone() {
    // As for spawned children: once the pid has left /proc, the child is not alive.
    let mut stale = Vec::new();
    for _ in 0..20 {
        let p = fork(Process::new(|| (), ()));
        let mut guard = KillOnDrop::new();
        guard.add(&p);
        p.start().unwrap();
        let pid = p.pid().unwrap();
        let end = Instant::now() + GENEROUS;
        while pid_state(pid).is_some() {
            assert!(Instant::now() < end, "pid {pid} was never reaped");
        }
        let (alive, code) = (p.is_alive(), p.exitcode());
        if alive || code.is_none() {
            stale.push(format!(
                "pid {pid}: is_alive() = {alive}, exitcode() = {code:?}"
            ));
        }
        p.join(Some(GENEROUS)).unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    assert!(
        stale.is_empty(),
        "{} of 20 reaped fork children still looked alive:\n{}",
        stale.len(),
        stale.join("\n")
    );
}

#[test]
fn a_hundred_fork_children() {
    let ps: Vec<Process> = (0..100u32)
        .map(|i| fork(Process::new(|i: u32| assert!(i < 100), (i,))))
        .collect();
    let mut guard = KillOnDrop::new();
    for p in &ps {
        guard.add(p);
    }
    // Very short children: each may exit before its parent has even heard it was forked.
    let failures: Vec<String> = ps
        .iter()
        .filter_map(|p| p.start().err().map(|e| format!("{}: {e}", p.name())))
        .collect();
    assert!(failures.is_empty(), "start() failed: {failures:#?}");
    for p in &ps {
        p.join(Some(GENEROUS)).unwrap();
        assert_eq!(p.exitcode(), Some(0), "{p}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn fork_async_api() {
    let p = fork(Process::new(exit_with, (3,)));
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.start_async().await.unwrap();
    p.join_async(Some(GENEROUS)).await.unwrap();
    assert_eq!(p.exitcode(), Some(3));
}

// ---- drivers: a whole program using fork ------------------------------------------------

fn print_names() {
    let g = Process::new(|| say(format!("NAME {}", current_process().name())), ());
    g.start().unwrap();
    g.join(None).unwrap();
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
    procvisor::set_start_method(StartMethod::Fork, false).unwrap();
    say(format!("DRIVER {}", std::process::id()));
    let p = Process::new(print_names, ());
    p.start().unwrap();
    p.join(None).unwrap();
    say(format!("EXITCODE {:?}", p.exitcode()));
    let twin = Process::new(print_names, ());
    twin.start().unwrap();
    twin.join(None).unwrap();
    let q = Process::new(panics, ("fork-panic-marker".to_string(),));
    q.start().unwrap();
    q.join(None).unwrap();
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

fn sleep_and_report() {
    say(format!("PID {}", std::process::id()));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn sleep_with_a_grandchild() -> procvisor::Result<()> {
    Process::new(sleep_and_report, ())
        .with_start_method(StartMethod::Fork)?
        .start()?;
    sleep_and_report();
    Ok(())
}

#[test]
#[ignore = "driver for sigkill_of_a_fork_parent_leaves_nothing_running"]
fn driver_fork_orphans() {
    if !in_driver() {
        return;
    }
    let children = [
        fork(Process::new(sleep_and_report, ())),
        fork(Process::new(sleep_with_a_grandchild, ())),
        fork(Process::new(sleep_and_report, ()))
            .with_daemon(true)
            .unwrap(),
    ];
    for p in &children {
        p.start().unwrap();
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn sigkill_of_a_fork_parent_leaves_nothing_running() {
    let mut driver = spawn_driver("driver_fork_orphans", None);
    let driver_pid = driver.guard.pid();
    let mut pids = PidsGuard::default();
    for _ in 0..4 {
        let pid: i32 = driver.expect_line("PID ", GENEROUS).parse().unwrap();
        pids.0.push(pid);
    }
    // The fork servers (the driver's, and the grandchild's parent's) and their spares must go
    // too.
    for pid in common::descendants_of(driver_pid) {
        if !pids.0.contains(&pid) {
            pids.0.push(pid);
        }
    }
    assert!(
        pids.0.len() > 4,
        "no fork server among the driver's descendants {:?}",
        pids.0
    );
    common::kill_driver_and_expect_descendants_gone(&mut driver.guard, &pids.0);
}

fn daemon_sleeper() {
    std::thread::sleep(Duration::from_secs(30));
    say("DAEMON Exiting");
}

fn nondaemon_waiter(go: String) {
    say("NONDAEMON RUNNING");
    assert!(common::wait_for_file(Path::new(&go)));
    say("nondaemon done");
}

#[test]
#[ignore = "driver for fork_main_exit_semantics"]
fn driver_fork_exit_semantics() {
    if !in_driver() {
        return;
    }
    let go = common::driver_param().unwrap();
    let daemon = fork(Process::new(daemon_sleeper, ()))
        .with_daemon(true)
        .unwrap();
    let nondaemon = fork(Process::new(nondaemon_waiter, (go,)));
    daemon.start().unwrap();
    nondaemon.start().unwrap();
    say(format!("DAEMON_PID {}", daemon.pid().unwrap()));
    say(format!("NONDAEMON_PID {}", nondaemon.pid().unwrap()));
    say("RETURNING");
}

#[test]
fn fork_main_exit_semantics() {
    let dir = TempDir::new("fork-exit");
    let go = dir.file("go");
    let mut driver = spawn_driver("driver_fork_exit_semantics", Some(&go));
    let daemon: i32 = driver.expect_line("DAEMON_PID ", GENEROUS).parse().unwrap();
    let nondaemon: i32 = driver
        .expect_line("NONDAEMON_PID ", GENEROUS)
        .parse()
        .unwrap();
    driver.expect_line("NONDAEMON RUNNING", GENEROUS);
    let server = common::fork_server_of(driver.guard.pid()).expect("no fork server");
    let _pids = PidsGuard(vec![daemon, nondaemon, server]);
    driver.expect_line("RETURNING", GENEROUS);
    assert!(
        wait_until(GENEROUS, || !pid_is_running(daemon)),
        "the daemonic fork child was not terminated at exit"
    );
    assert!(pid_is_running(nondaemon));
    assert!(
        driver.guard.try_wait().is_none(),
        "exited before its non-daemonic child"
    );
    write_atomic(&go, "");
    let status = driver.guard.wait_timeout(GENEROUS);
    driver.drain(Duration::from_secs(5));
    let stderr = driver.stderr(Duration::from_secs(5));
    let seen = driver.seen.join("\n");
    let status = status.unwrap_or_else(|| panic!("the driver did not exit\n{seen}\n{stderr}"));
    assert!(status.success(), "{status:?}\n{seen}\n{stderr}");
    assert!(
        driver
            .seen
            .iter()
            .any(|l| common::clean_line(l) == "nondaemon done"),
        "{seen}\n{stderr}"
    );
    assert!(!seen.contains("DAEMON Exiting"), "{seen}");
    assert!(
        wait_until(GENEROUS, || !pid_is_running(server)),
        "the fork server {server} outlived its program"
    );
}
