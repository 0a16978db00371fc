//! `log_to_stderr`: multiprocessing's `[LEVEL/ProcessName] message` log, inherited by children
//! (under both start methods).

procvisor::test_init!();

mod common;

use common::{GENEROUS, driver_method, in_driver, per_start_method, run_driver_in, say};
use procvisor::{Process, StartMethod};

fn child_exits_with_three() {
    tracing::info!("leaving with exit(3)");
    std::process::exit(3);
}

fn child_logs() {
    tracing::info!("hello from the child");
    tracing::debug!("a debug line that INFO filters out");
}

#[test]
#[ignore = "driver for log_to_stderr_shows_the_lifecycle"]
fn driver_logging() {
    if !in_driver() {
        return;
    }
    procvisor::log_to_stderr(tracing::Level::INFO).unwrap();
    assert_eq!(procvisor::util::log_level(), Some(tracing::Level::INFO));
    assert!(
        procvisor::log_to_stderr(tracing::Level::INFO).is_err(),
        "a second global subscriber is refused"
    );
    tracing::info!("hello from the main process");
    let method = driver_method();
    let p = Process::new(child_logs, ())
        .start_method(method)
        .start()
        .unwrap();
    p.join_timeout(GENEROUS).unwrap();
    say(format!("EXITCODE {:?}", p.exitcode()));
    // exit() inside a logging child: its exit sequence runs from atexit, and still logs.
    let q = Process::new(child_exits_with_three, ())
        .start_method(method)
        .start()
        .unwrap();
    q.join_timeout(GENEROUS).unwrap();
    say(format!("EXIT3 {:?}", q.exitcode()));
}

per_start_method! {
    fn log_to_stderr_shows_the_lifecycle(method: StartMethod) {
        let out = run_driver_in("driver_logging", method, None);
        let all = common::describe(&out);
        assert!(out.status.success(), "{all}");
        assert_eq!(
            common::line_with(&common::stdout_of(&out), "EXITCODE "),
            "Some(0)"
        );
        let stderr = common::stderr_of(&out);
        let lines: Vec<&str> = stderr.lines().collect();
        let at = |wanted: &str| {
            lines
                .iter()
                .position(|l| *l == wanted)
                .unwrap_or_else(|| panic!("no line {wanted:?} on stderr\n{all}"))
        };
        let main_hello = at("[INFO/MainProcess] hello from the main process");
        let run = at("[INFO/Process-1] child process calling run()");
        let child_hello = at("[INFO/Process-1] hello from the child");
        let child_exit = at("[INFO/Process-1] process exiting with exitcode 0");
        let main_shutdown = at("[INFO/MainProcess] process shutting down");
        assert!(main_hello < run, "{all}");
        assert!(run < child_hello, "{all}");
        assert!(child_hello < child_exit, "{all}");
        assert!(child_exit < main_shutdown, "{all}");
        assert!(
            !stderr.contains("a debug line that INFO filters out"),
            "the child inherited the level\n{all}"
        );
        assert!(!stderr.contains("DEBUG/"), "no debug lines at INFO\n{all}");
        assert_eq!(
            common::line_with(&common::stdout_of(&out), "EXIT3 "),
            "Some(3)",
            "{all}"
        );
        at("[INFO/Process-2] leaving with exit(3)");
        at("[INFO/Process-2] process shutting down");
    }
}
