//! Children started ahead of time: the spawn method's prestarted child (used only while what a
//! child inherits is unchanged, never joined, gone with its parent) and the fork server's spares
//! (our own children, replaced and reaped when killed from outside; a killed fork server is
//! replaced and leaves its children running, also when it dies with requests it had not read).

procvisor::test_init!();

mod common;

use std::io::Write;

use common::{
    GENEROUS, KillOnDrop, PidsGuard, TempDir, children_of, driver_method, driver_param,
    fork_server_of, in_driver, join_ok, line_with, per_start_method, pid_is_running, pid_state,
    recv, run_driver, run_driver_in, run_driver_with, say, wait_until,
};
use procvisor::{Connection, Process, StartMethod, active_children, pipe};

const MARK: &str = "PROCVISOR_PRESTART_TEST_MARK";

/// Child: reports the marker variable and its working directory, and prints `line`.
fn report(to: Connection, line: String) -> procvisor::Result<()> {
    let mark = std::env::var(MARK).ok();
    let cwd = std::env::current_dir()
        .ok()
        .map(|d| d.display().to_string());
    println!("{line}");
    Ok(to.send(&(mark, cwd))?)
}

/// Starts a spawn child running [`report`] and returns what it reported.
fn spawned_report(line: &str) -> (Option<String>, Option<String>) {
    let (ours, theirs) = pipe().unwrap();
    let mut guard = KillOnDrop::new();
    let p = common::start(
        &mut guard,
        Process::new(report, (theirs, line.to_string())).start_method(StartMethod::Spawn),
    );
    let got = recv(&ours);
    join_ok(&p);
    got
}

fn cwd_now() -> Option<String> {
    std::env::current_dir()
        .ok()
        .map(|d| d.display().to_string())
}

#[test]
#[ignore = "driver, run by spawned_children_see_what_the_parent_changed_between_starts"]
fn driver_inherited_changes() {
    if !in_driver() {
        return;
    }
    let dir = driver_param().expect("a directory");
    // Enough starts that a child is being prestarted when the changes happen.
    for i in 0..3 {
        assert_eq!(spawned_report(&format!("WARM {i}")).0, None);
    }
    // SAFETY: the driver runs this one test; nothing else reads the environment meanwhile.
    unsafe { std::env::set_var(MARK, "changed") };
    let (mark, _) = spawned_report("AFTER_ENV");
    say(format!("MARK {mark:?}"));

    std::env::set_current_dir(&dir).unwrap();
    let (_, cwd) = spawned_report("AFTER_CWD");
    say(format!("CWD_MATCHES {}", cwd == cwd_now()));

    // stdout now goes to a file: the child's line must land there.
    let file = std::fs::File::create(format!("{dir}/out")).unwrap();
    let saved = nix::unistd::dup(std::io::stdout()).unwrap();
    std::io::stdout().flush().unwrap();
    nix::unistd::dup2_stdout(&file).unwrap();
    spawned_report("INTO_THE_FILE");
    std::io::stdout().flush().unwrap();
    nix::unistd::dup2_stdout(&saved).unwrap();
    let written = std::fs::read_to_string(format!("{dir}/out")).unwrap();
    say(format!(
        "FILE_HAS_LINE {}",
        written.contains("INTO_THE_FILE")
    ));
}

#[test]
fn spawned_children_see_what_the_parent_changed_between_starts() {
    let dir = TempDir::new("prestart-inherit");
    let path = dir.path().display().to_string();
    let out = run_driver_with("driver_inherited_changes", Some(&path));
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    assert_eq!(line_with(&stdout, "MARK "), "Some(\"changed\")", "{all}");
    assert_eq!(line_with(&stdout, "CWD_MATCHES "), "true", "{all}");
    assert_eq!(line_with(&stdout, "FILE_HAS_LINE "), "true", "{all}");
    assert!(!stdout.contains("INTO_THE_FILE"), "{all}");
}

/// Waits until this process has exactly one child that is not among `known`, and returns it.
fn the_one_other_child(known: &[i32]) -> i32 {
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let one = wait_until(GENEROUS, || {
        found = children_of(me)
            .into_iter()
            .filter(|pid| !known.contains(pid))
            .collect();
        found.len() == 1
    });
    assert!(one, "expected one child held in reserve, found {found:?}");
    found[0]
}

#[test]
#[ignore = "driver, run by a_prestarted_child_is_not_active_and_not_joined_at_exit"]
fn driver_exit_with_a_prestarted_child() {
    if !in_driver() {
        return;
    }
    for i in 0..3 {
        spawned_report(&format!("WARM {i}"));
    }
    let spare = the_one_other_child(&[]);
    say(format!("SPARE {spare}"));
    say(format!("ACTIVE {}", active_children().len()));
    if driver_param().as_deref() == Some("disable") {
        procvisor::set_spawn_prestart(false);
        say(format!("GONE_AFTER_DISABLE {}", !pid_is_running(spare)));
        // Off means off: more starts keep no child in reserve.
        spawned_report("AFTER_DISABLE");
        say(format!(
            "CHILDREN {:?}",
            children_of(std::process::id() as i32)
        ));
    }
    // The program returns with the prestarted child still waiting: it must not be joined.
}

#[test]
fn a_prestarted_child_is_not_active_and_not_joined_at_exit() {
    let out = run_driver("driver_exit_with_a_prestarted_child");
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    let spare: i32 = line_with(&stdout, "SPARE ").parse().unwrap();
    let _guard = PidsGuard(vec![spare]);
    assert_eq!(line_with(&stdout, "ACTIVE "), "0", "{all}");
    assert!(
        wait_until(GENEROUS, || !pid_is_running(spare)),
        "the prestarted child {spare} outlived its parent"
    );
    // It went quietly.
    assert!(!common::stderr_of(&out).contains("procvisor:"), "{all}");
}

#[test]
fn turning_prestart_off_kills_the_child_in_reserve() {
    let out = run_driver_with("driver_exit_with_a_prestarted_child", Some("disable"));
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    let spare: i32 = line_with(&stdout, "SPARE ").parse().unwrap();
    let _guard = PidsGuard(vec![spare]);
    assert_eq!(line_with(&stdout, "GONE_AFTER_DISABLE "), "true", "{all}");
    assert_eq!(line_with(&stdout, "CHILDREN "), "[]", "{all}");
}

fn exit_code(code: i32) {
    std::process::exit(code)
}

#[test]
#[ignore = "driver, run by the_fork_servers_spare_killed_from_outside_is_replaced"]
fn driver_kill_the_fork_spare() {
    if !in_driver() {
        return;
    }
    let fork = |code: i32| Process::new(exit_code, (code,)).start_method(StartMethod::Fork);
    let mut guard = KillOnDrop::new();
    let first = common::start(&mut guard, fork(3));
    first.join_timeout(GENEROUS).unwrap();
    let me = std::process::id() as i32;
    // Our children now: the fork server and the spares it forked for us.
    let server = fork_server_of(me).expect("no fork server");
    for round in 0..5 {
        let mut spares = Vec::new();
        assert!(
            wait_until(GENEROUS, || {
                spares = children_of(me);
                spares.retain(|&pid| pid != server);
                !spares.is_empty()
            }),
            "round {round}: the fork server has no spare"
        );
        for &spare in &spares {
            // SAFETY: kill on a pid we started (through our fork server) and that is running.
            unsafe { libc::kill(spare, libc::SIGKILL) };
        }
        assert!(wait_until(GENEROUS, || spares
            .iter()
            .all(|&spare| !pid_is_running(spare))));
        let p = common::start(&mut guard, fork(round));
        p.join_timeout(GENEROUS).unwrap();
        let fresh = !spares.contains(&p.pid());
        // The dead spares were ours: reaped, not left as zombies.
        let reaped = wait_until(GENEROUS, || {
            spares.iter().all(|&spare| pid_state(spare).is_none())
        });
        say(format!("ROUND {round} {:?} {fresh} {reaped}", p.exitcode()));
    }
}

#[test]
fn the_fork_servers_spare_killed_from_outside_is_replaced() {
    let out = run_driver("driver_kill_the_fork_spare");
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    for round in 0..5 {
        assert_eq!(
            line_with(&stdout, &format!("ROUND {round} ")),
            format!("Some({round}) true true"),
            "{all}"
        );
    }
}

/// Child: prints without a newline (Rust and C stdio) and returns: both must be flushed by
/// the child's exit, which ends with `_exit`.
fn print_unterminated() {
    print!("RUST_PARTIAL");
    // SAFETY: a NUL-terminated format string with no conversions.
    unsafe { libc::printf(c"C_PARTIAL".as_ptr()) };
}

#[test]
#[ignore = "driver, run by output_left_unterminated_by_a_child_is_flushed"]
fn driver_unterminated_output() {
    if !in_driver() {
        return;
    }
    let method = driver_method();
    let p = Process::new(print_unterminated, ())
        .start_method(method)
        .start()
        .unwrap();
    join_ok(&p);
    say(format!("DONE {method:?}"));
}

per_start_method! {
    fn output_left_unterminated_by_a_child_is_flushed(method: StartMethod) {
        let out = run_driver_in("driver_unterminated_output", method, None);
        let all = common::describe(&out);
        assert!(out.status.success(), "{all}");
        let stdout = common::stdout_of(&out);
        assert_eq!(stdout.matches("RUST_PARTIAL").count(), 1, "{all}");
        assert_eq!(stdout.matches("C_PARTIAL").count(), 1, "{all}");
    }
}

fn wait_forever(ready: Connection) -> procvisor::Result<()> {
    ready.send(&())?;
    procvisor::wait_for_stop(None);
    Ok(())
}

#[test]
#[ignore = "driver, run by a_killed_fork_server_leaves_its_children_running_and_is_replaced"]
fn driver_kill_the_fork_server() {
    if !in_driver() {
        return;
    }
    let me = std::process::id() as i32;
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe().unwrap();
    let running = common::start(
        &mut guard,
        Process::new(wait_forever, (theirs,)).start_method(StartMethod::Fork),
    );
    recv::<()>(&ours);
    let server = fork_server_of(me).expect("no fork server");
    // SAFETY: kill on a pid we started (our fork server) and that is running.
    unsafe { libc::kill(server, libc::SIGKILL) };
    assert!(wait_until(GENEROUS, || !pid_is_running(server)));
    // The child is ours, not the fork server's: it runs on.
    say(format!("RUNNING_ALIVE {}", running.is_alive()));
    running.terminate().unwrap();
    running.join_timeout(GENEROUS).unwrap();
    say(format!("RUNNING_EXIT {:?}", running.exitcode()));
    report_starts_after_the_fork_server_died(&mut guard, server);
}

/// Starts two fork children after `server` (our fork server) was killed, and reports their
/// exit codes, whether a new fork server replaced it and whether the old one was reaped.
fn report_starts_after_the_fork_server_died(guard: &mut KillOnDrop, server: i32) {
    for code in [5, 6] {
        let next = common::start(
            guard,
            Process::new(exit_code, (code,)).start_method(StartMethod::Fork),
        );
        next.join_timeout(GENEROUS).unwrap();
        say(format!("NEXT_EXIT {:?}", next.exitcode()));
    }
    let me = std::process::id() as i32;
    let replaced = fork_server_of(me).is_some_and(|new| new != server);
    say(format!("REPLACED {replaced}"));
    let reaped = wait_until(GENEROUS, || pid_state(server).is_none());
    say(format!("OLD_SERVER_REAPED {reaped}"));
    say(format!("ACTIVE {}", active_children().len()));
}

/// Asserts what [`report_starts_after_the_fork_server_died`] reported.
fn assert_starts_after_the_fork_server_died(stdout: &str, all: &str) {
    assert_eq!(
        common::lines_with(stdout, "NEXT_EXIT "),
        ["Some(5)", "Some(6)"],
        "{all}"
    );
    assert_eq!(line_with(stdout, "REPLACED "), "true", "{all}");
    assert_eq!(line_with(stdout, "OLD_SERVER_REAPED "), "true", "{all}");
    assert_eq!(line_with(stdout, "ACTIVE "), "0", "{all}");
}

#[test]
fn a_killed_fork_server_leaves_its_children_running_and_is_replaced() {
    let out = run_driver("driver_kill_the_fork_server");
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    assert_eq!(line_with(&stdout, "RUNNING_ALIVE "), "true", "{all}");
    assert_eq!(line_with(&stdout, "RUNNING_EXIT "), "Some(-15)", "{all}");
    assert_starts_after_the_fork_server_died(&stdout, &all);
}

#[test]
#[ignore = "driver, run by kill_the_fork_server_with_requests_unread"]
fn driver_kill_the_fork_server_with_requests_unread() {
    if !in_driver() {
        return;
    }
    let me = std::process::id() as i32;
    let mut guard = KillOnDrop::new();
    let fork = |code: i32| Process::new(exit_code, (code,)).start_method(StartMethod::Fork);
    let first = common::start(&mut guard, fork(3));
    first.join_timeout(GENEROUS).unwrap();
    let server = fork_server_of(me).expect("no fork server");
    // The fork server has answered both outstanding requests once both spares exist and it
    // sleeps (it sleeps only in its read of the next request).
    let answered = wait_until(GENEROUS, || {
        let spares = children_of(me).into_iter().filter(|&pid| pid != server);
        spares.count() == 2 && pid_state(server) == Some('S')
    });
    assert!(answered, "the fork server did not fork its two spares");
    // SAFETY: kill on a pid we started (our fork server) and that is running.
    unsafe { libc::kill(server, libc::SIGSTOP) };
    assert!(wait_until(GENEROUS, || pid_state(server) == Some('T')));
    // Each start takes a spare and asks for its replacement: a request the stopped fork server
    // never reads. After one, the server dies with one spare announced and unused; after two,
    // with none.
    let starts: i32 = driver_param().expect("a count").parse().unwrap();
    for code in 0..starts {
        let p = common::start(&mut guard, fork(10 + code));
        p.join_timeout(GENEROUS).unwrap();
        say(format!("WHILE_STOPPED {:?}", p.exitcode()));
    }
    // SAFETY: as above.
    unsafe { libc::kill(server, libc::SIGKILL) };
    assert!(wait_until(GENEROUS, || !pid_is_running(server)));
    report_starts_after_the_fork_server_died(&mut guard, server);
}

/// Runs the driver above with `starts` starts while the fork server is stopped.
fn kill_the_fork_server_with_requests_unread(starts: usize) {
    let param = starts.to_string();
    let out = run_driver_with(
        "driver_kill_the_fork_server_with_requests_unread",
        Some(&param),
    );
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    let expected: Vec<String> = (0..starts).map(|i| format!("Some({})", 10 + i)).collect();
    assert_eq!(
        common::lines_with(&stdout, "WHILE_STOPPED "),
        expected,
        "{all}"
    );
    assert_starts_after_the_fork_server_died(&stdout, &all);
}

#[test]
fn a_fork_server_killed_with_requests_unread_leaves_its_announced_spare_usable() {
    kill_the_fork_server_with_requests_unread(1);
}

#[test]
fn a_fork_server_killed_with_requests_unread_and_no_spare_left_is_replaced_at_once() {
    kill_the_fork_server_with_requests_unread(2);
}
