//! How processes end: exit codes, what a panicking child prints, the exit sequence of a whole
//! program (daemonic children terminated, non-daemonic ones waited for), and children never
//! outliving a parent killed with SIGKILL — under both start methods (under fork, the fork
//! server goes with its program too).

procvisor::test_init!();

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    GENEROUS, KillOnDrop, PidsGuard, TempDir, driver_method, driver_param, in_driver, line_with,
    per_start_method, pid_is_running, run_driver_in, say, spawn_driver_in, start, wait_until,
    write_atomic,
};
use procvisor::{Process, StartMethod};

/// Starts `p` with `method`, joins it (generously) and returns its exit code; kills it if the
/// test fails.
fn exitcode_of(method: StartMethod, p: Process) -> Option<i32> {
    let mut guard = KillOnDrop::new();
    let p = start(&mut guard, p.start_method(method));
    p.join_timeout(GENEROUS).unwrap();
    p.exitcode()
}

per_start_method! {
    fn returning_unit_exits_zero(method: StartMethod) {
        assert_eq!(exitcode_of(method, Process::new(|| (), ())), Some(0));
    }

    fn returning_ok_exits_zero(method: StartMethod) {
        assert_eq!(
            exitcode_of(method, Process::new(|| Ok::<_, std::io::Error>("fine"), ())),
            Some(0)
        );
    }

    fn returning_err_exits_one(method: StartMethod) {
        assert_eq!(
            exitcode_of(
                method,
                Process::new(
                    || Err::<(), _>(std::io::Error::other("expected failure, ignore this line")),
                    ()
                )
            ),
            Some(1)
        );
    }
}

// A target's return type must implement `TargetOutput`, which `!` does not: diverging targets
// are written as `fn`s returning `()`.
fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panics(n: u32) {
    panic!("boom-marker {n}")
}

per_start_method! {
    fn process_exit_sets_the_code(method: StartMethod) {
        assert_eq!(exitcode_of(method, Process::new(exit_with, (7,))), Some(7));
        assert_eq!(
            exitcode_of(method, Process::new(exit_with, (255,))),
            Some(255)
        );
    }
}

/// Child: starts a non-daemonic grandchild that writes `done` a little later, then exits with
/// code 7 at once. The exit sequence must wait for the grandchild first.
fn exit_with_a_child_running(done: String) {
    Process::new(
        |done: String| {
            std::thread::sleep(Duration::from_millis(200));
            write_atomic(&done, "");
        },
        (done,),
    )
    .start()
    .unwrap();
    std::process::exit(7)
}

per_start_method! {
    fn process_exit_still_joins_non_daemonic_children(method: StartMethod) {
        let dir = TempDir::new("exit-joins");
        let done = dir.file("done");
        let p = Process::new(exit_with_a_child_running, (done.clone(),));
        assert_eq!(exitcode_of(method, p), Some(7));
        assert!(
            Path::new(&done).exists(),
            "the child exited without waiting for its non-daemonic child"
        );
    }
}

// ---- what a failing child prints --------------------------------------------------------

#[test]
#[ignore = "driver for panic_and_err_are_reported_on_the_childs_stderr"]
fn driver_failing_children() {
    if !in_driver() {
        return;
    }
    let method = driver_method();
    let panics = Process::new(panics, (42,)).start_method(method);
    let errs = Process::new(|| Err::<(), _>("err-marker"), ()).start_method(method);
    let mut guard = KillOnDrop::new();
    for (tag, p) in [("PANIC", panics), ("ERR", errs)] {
        let p = start(&mut guard, p);
        p.join_timeout(GENEROUS).unwrap();
        say(format!("EXITCODE {tag} {:?}", p.exitcode()));
        say(format!("DISPLAY {tag} {p}"));
    }
}

per_start_method! {
    fn panic_and_err_are_reported_on_the_childs_stderr(method: StartMethod) {
        let out = run_driver_in("driver_failing_children", method, None);
        let all = common::describe(&out);
        assert!(out.status.success(), "{all}");
        let stdout = common::stdout_of(&out);
        let stderr = common::stderr_of(&out);
        assert_eq!(line_with(&stdout, "EXITCODE PANIC"), "Some(1)", "{all}");
        assert_eq!(line_with(&stdout, "EXITCODE ERR"), "Some(1)", "{all}");
        assert_eq!(
            line_with(&stdout, "DISPLAY PANIC"),
            "<Process(Process-1, stopped[1])>"
        );
        // Python prints `Process Process-1:` and then the traceback.
        let header = stderr
            .lines()
            .position(|l| l == "Process Process-1:")
            .unwrap_or_else(|| panic!("no `Process Process-1:` line\n{all}"));
        let message = stderr
            .lines()
            .position(|l| l.contains("boom-marker 42"))
            .unwrap_or_else(|| panic!("no panic message\n{all}"));
        assert!(header < message, "{all}");
        assert!(
            stderr
                .lines()
                .any(|l| l == "Process Process-2: error: err-marker"),
            "{all}"
        );
    }
}

// ---- the exit sequence of a whole program -----------------------------------------------

fn daemon_sleeper() {
    say(format!("DAEMON started {}", std::process::id()));
    std::thread::sleep(Duration::from_secs(30));
    say("DAEMON Exiting");
}

fn nondaemon_waiter(go: String) {
    say("NONDAEMON waiting");
    assert!(common::wait_for_file(Path::new(&go)));
    say("nondaemon done");
}

#[test]
#[ignore = "driver for main_exit_terminates_daemons_and_waits_for_the_others"]
fn driver_exit_semantics() {
    if !in_driver() {
        return;
    }
    let go = driver_param().expect("the go file");
    let method = driver_method();
    let daemon = Process::new(daemon_sleeper, ())
        .daemon(true)
        .start_method(method)
        .start()
        .unwrap();
    let nondaemon = Process::new(nondaemon_waiter, (go,))
        .start_method(method)
        .start()
        .unwrap();
    say(format!("DAEMON_PID {}", daemon.pid()));
    say(format!("NONDAEMON_PID {}", nondaemon.pid()));
    say("RETURNING");
    // The test function returns and the program exits with both children running.
}

per_start_method! {
    fn main_exit_terminates_daemons_and_waits_for_the_others(method: StartMethod) {
        let dir = TempDir::new("exit-semantics");
        let go = dir.file("go");
        let mut driver = spawn_driver_in("driver_exit_semantics", method, Some(&go));
        let daemon: i32 = driver.expect_line("DAEMON_PID ", GENEROUS).parse().unwrap();
        let nondaemon: i32 = driver
            .expect_line("NONDAEMON_PID ", GENEROUS)
            .parse()
            .unwrap();
        let mut pids = PidsGuard(vec![daemon, nondaemon]);
        driver.expect_line("NONDAEMON waiting", GENEROUS);
        // Under fork, the driver's fork server must end with the program too.
        let server = match method {
            StartMethod::Fork => {
                let server = common::fork_server_of(driver.guard.pid()).expect("no fork server");
                pids.0.push(server);
                Some(server)
            }
            StartMethod::Spawn => None,
        };
        driver.expect_line("RETURNING", GENEROUS);

        // The driver's exit sequence terminates the daemon…
        assert!(
            wait_until(GENEROUS, || !pid_is_running(daemon)),
            "the daemonic child {daemon} was not terminated when the program exited"
        );
        // …and the program does not exit while the non-daemonic child runs (it waits for `go`).
        assert!(pid_is_running(nondaemon), "the non-daemonic child died");
        assert!(
            driver.guard.try_wait().is_none(),
            "the program exited before its non-daemonic child finished"
        );

        write_atomic(&go, "");
        let status = driver.guard.wait_timeout(GENEROUS);
        driver.drain(Duration::from_secs(5));
        let stderr = driver.stderr(Duration::from_secs(5));
        let seen = driver.seen.join("\n");
        let status = status.unwrap_or_else(|| panic!("the driver did not exit\n{seen}\n{stderr}"));
        assert!(status.success(), "{status:?}\n{seen}\n{stderr}");
        let lines: Vec<&str> = driver.seen.iter().map(|l| common::clean_line(l)).collect();
        let returning = lines.iter().position(|&l| l == "RETURNING").unwrap();
        let done = lines
            .iter()
            .position(|&l| l == "nondaemon done")
            .unwrap_or_else(|| panic!("the non-daemonic child did not finish\n{seen}\n{stderr}"));
        assert!(returning < done, "{seen}");
        assert!(
            !lines.iter().any(|l| l.contains("DAEMON Exiting")),
            "the daemon ran to completion\n{seen}"
        );
        assert!(!pid_is_running(daemon));
        assert!(wait_until(GENEROUS, || !pid_is_running(nondaemon)));
        if let Some(server) = server {
            assert!(
                wait_until(GENEROUS, || !pid_is_running(server)),
                "the fork server {server} outlived its program"
            );
        }
    }
}

// ---- SIGKILL of a parent ----------------------------------------------------------------

fn sleep_and_report() {
    say(format!("PID {}", std::process::id()));
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn sleep_with_a_grandchild() -> procvisor::Result<()> {
    Process::new(sleep_and_report, ()).start()?;
    sleep_and_report();
    Ok(())
}

#[test]
#[ignore = "driver for sigkill_of_the_parent_leaves_no_child_running"]
fn driver_orphans() {
    if !in_driver() {
        return;
    }
    let children = [
        Process::new(sleep_and_report, ()),
        // Its grandchild is started with the child's default: the method that started it.
        Process::new(sleep_with_a_grandchild, ()),
        Process::new(sleep_and_report, ()).daemon(true),
    ];
    let _children: Vec<_> = children
        .into_iter()
        .map(|p| p.start_method(driver_method()).start().unwrap())
        .collect();
    say("STARTED");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

per_start_method! {
    fn sigkill_of_the_parent_leaves_no_child_running(method: StartMethod) {
        let mut driver = spawn_driver_in("driver_orphans", method, None);
        let driver_pid = driver.guard.pid();
        let mut pids = PidsGuard::default();
        for _ in 0..4 {
            let pid = driver.expect_line("PID ", GENEROUS).parse().unwrap();
            pids.0.push(pid);
        }
        driver.expect_line("STARTED", GENEROUS);
        // Whatever else the driver started must go too: under fork, the fork servers (the
        // driver's, and the grandchild's parent's) and their spares; under spawn, a child kept
        // in reserve.
        for pid in common::descendants_of(driver_pid) {
            if !pids.0.contains(&pid) {
                pids.0.push(pid);
            }
        }
        if method == StartMethod::Fork {
            assert!(
                pids.0.len() > 4,
                "no fork server among the driver's descendants {:?}",
                pids.0
            );
        }
        common::kill_driver_and_expect_descendants_gone(&mut driver.guard, &pids.0);
    }
}

// ---- a child's own exit sequence ---------------------------------------------------------

fn sleep_forever(ready: String) {
    write_atomic(&ready, &std::process::id().to_string());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Child: starts a daemonic grandchild, waits until it runs, reports its pid, returns.
fn return_with_a_daemon_running(ready: String, report: String) -> procvisor::Result<()> {
    let g = Process::new(sleep_forever, (ready.clone(),))
        .daemon(true)
        .start()?;
    assert!(common::wait_for_file(Path::new(&ready)));
    write_atomic(&report, &g.pid().to_string());
    Ok(())
}

per_start_method! {
    fn a_childs_daemonic_children_are_terminated_when_it_returns(method: StartMethod) {
        let dir = TempDir::new("child-daemon");
        let (ready, report) = (dir.file("ready"), dir.file("report"));
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(return_with_a_daemon_running, (ready, report.clone()))
                .start_method(method),
        );
        p.join_timeout(GENEROUS).unwrap();
        let grandchild: i32 = match std::fs::read_to_string(&report) {
            Ok(pid) => pid.parse().unwrap(),
            Err(e) => panic!("the child did not report its daemon ({e}); {p}"),
        };
        let _pids = PidsGuard(vec![grandchild]);
        assert_eq!(p.exitcode(), Some(0));
        // The child's exit sequence terminated (and reaped) its daemon before the child exited.
        assert!(
            wait_until(GENEROUS, || !pid_is_running(grandchild)),
            "the daemonic grandchild {grandchild} outlived its parent's normal exit"
        );
    }
}

/// Child: ignores SIGTERM, reports readiness, sleeps.
fn ignore_sigterm_forever(ready: String) {
    // SAFETY: installing SIG_IGN for SIGTERM has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    sleep_forever(ready);
}

#[test]
#[ignore = "driver for a_daemon_that_ignores_sigterm_is_killed_at_exit"]
fn driver_stubborn_daemon() {
    if !in_driver() {
        return;
    }
    let ready = driver_param().expect("the ready file");
    let d = Process::new(ignore_sigterm_forever, (ready.clone(),))
        .daemon(true)
        .start_method(driver_method())
        .start()
        .unwrap();
    assert!(common::wait_for_file(Path::new(&ready)));
    say(format!("DAEMON_PID {}", d.pid()));
    say("RETURNING");
}

per_start_method! {
    fn a_daemon_that_ignores_sigterm_is_killed_at_exit(method: StartMethod) {
        let dir = TempDir::new("stubborn-daemon");
        let ready = dir.file("ready");
        let mut driver = spawn_driver_in("driver_stubborn_daemon", method, Some(&ready));
        let daemon: i32 = driver.expect_line("DAEMON_PID ", GENEROUS).parse().unwrap();
        let _pids = PidsGuard(vec![daemon]);
        driver.expect_line("RETURNING", GENEROUS);
        let t = Instant::now();
        let status = driver.guard.wait_timeout(GENEROUS);
        let took = t.elapsed();
        let stderr = driver.stderr(Duration::from_secs(5));
        let status = status.unwrap_or_else(|| panic!("the driver never exited\n{stderr}"));
        assert!(status.success(), "{status:?}\n{stderr}");
        assert!(
            !pid_is_running(daemon),
            "the daemon {daemon} ignoring SIGTERM outlived the program"
        );
        // It was given its grace period (2 s) before SIGKILL; allow for timer slack.
        assert!(took >= Duration::from_millis(1500), "exited after {took:?}");
    }
}

// ---- a child's end is the program's end: exit handlers, SIGPIPE, the main thread ---------

/// Where the child's `atexit` handler writes: set by the target before it registers it.
static AT_EXIT_MARKER: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

extern "C" fn write_at_exit_marker() {
    if let Some(path) = AT_EXIT_MARKER.get() {
        // SAFETY: `path` is a valid NUL-terminated string that lives for the whole program.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600) };
        if fd >= 0 {
            // SAFETY: `fd` was just opened by this handler and is closed once.
            unsafe { libc::close(fd) };
        }
    }
}

fn register_at_exit_marker(path: String) -> Result<(), String> {
    let path = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    AT_EXIT_MARKER.set(path).map_err(|_| "set twice")?;
    // SAFETY: the handler is a plain `extern "C" fn()` that lives for the whole program.
    match unsafe { libc::atexit(write_at_exit_marker) } {
        0 => Ok(()),
        _ => Err("atexit refused the handler".into()),
    }
}

/// Makes this process's stdout a pipe whose reading end is closed, leaves a byte unflushed in
/// Rust's stdout buffer, and returns: the exit's flush then writes to a closed pipe.
fn leave_output_for_a_closed_pipe() -> Result<(), String> {
    let (read, write) = nix::unistd::pipe().map_err(|e| e.to_string())?;
    drop(read);
    // SAFETY: fd 1 is replaced by a descriptor this process owns; nothing else holds it.
    if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&write), 1) } < 0 {
        return Err("dup2 failed".into());
    }
    print!("unflushed");
    Ok(())
}

fn main_thread_name() -> Result<(), String> {
    match std::thread::current().name() {
        Some("main") => Ok(()),
        other => Err(format!("the target ran on a thread named {other:?}")),
    }
}

per_start_method! {
    /// The end of a child whose target returns is a full exit: the C library's exit handlers
    /// registered in the child run (issue 17.1).
    fn a_returning_child_runs_its_exit_handlers(method: StartMethod) {
        let dir = TempDir::new("atexit");
        let marker = dir.path().join("atexit-ran");
        let target = Process::new(register_at_exit_marker, (marker.display().to_string(),));
        assert_eq!(exitcode_of(method, target), Some(0));
        assert!(marker.exists(), "the child's atexit handler did not run");
    }

    /// A child of a test crate ignores SIGPIPE as a child of a binary does: its exit flushes
    /// into a closed pipe and it exits 0 instead of dying of the signal (issue 17.4).
    fn a_child_flushing_into_a_closed_pipe_exits_zero(method: StartMethod) {
        let target = Process::new(leave_output_for_a_closed_pipe, ());
        assert_eq!(exitcode_of(method, target), Some(0));
    }

    /// A child's target runs on a thread named `main`, as in a binary (issue 17.4).
    fn a_childs_target_runs_on_the_main_thread(method: StartMethod) {
        assert_eq!(exitcode_of(method, Process::new(main_thread_name, ())), Some(0));
    }
}
