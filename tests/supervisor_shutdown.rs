//! Shutdown escalation: the graceful stop request, then SIGTERM after the timeout, then SIGKILL;
//! brutal kills; nested supervisors stopped (infinity) or killed with their subtree.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::{Duration, Instant};

use common::{GENEROUS, TempDir, pid_is_running, wait_until};
use procvisor::supervisor::{
    ChildSpec, Event, Exit, Shutdown, Strategy, Supervisor, SupervisorSpec,
};
use supervisor_common::{GRACE, child, exit_of, lines_with, tags};

/// Terminates child `id` and returns how long it took and the exit the events report.
fn terminate(
    sup: &Supervisor,
    events: &procvisor::supervisor::Events,
    id: &str,
) -> (Duration, Exit) {
    let t = Instant::now();
    sup.terminate_child(id).wait().unwrap();
    let took = t.elapsed();
    let seen = events.drain();
    assert_eq!(tags(&seen), [format!("exited top:{id}")]);
    let Event::ChildExited { exit, .. } = &seen[0] else {
        unreachable!()
    };
    assert!(exit.requested);
    (took, exit.exit.clone())
}

#[test]
fn stop_request_then_terminate_then_kill() {
    let dir = TempDir::new("escalation");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "polite", &["serve"]))
        .child(child(&log, "deaf", &["ignore-stop"]))
        .child(child(&log, "stubborn", &["ignore-term"]))
        .child(child(&log, "doomed", &["serve"]).shutdown(Shutdown::Brutal));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    events.drain();

    // Honours the stop request: a normal exit, well before the grace period ends.
    let (took, exit) = terminate(&sup, &events, "polite");
    assert_eq!(exit, Exit::Code(0));
    assert!(took < GENEROUS);

    // Hears the request but keeps running: SIGTERM after the grace period.
    let (took, exit) = terminate(&sup, &events, "deaf");
    assert_eq!(exit, Exit::Signal(libc::SIGTERM));
    assert!(took >= GRACE, "terminated after {took:?}");

    // Ignores SIGTERM too: SIGKILL after a second grace period.
    let (took, exit) = terminate(&sup, &events, "stubborn");
    assert_eq!(exit, Exit::Signal(libc::SIGKILL));
    assert!(took >= 2 * GRACE, "killed after {took:?}");

    // Brutal: killed at once, never asked.
    let (_, exit) = terminate(&sup, &events, "doomed");
    assert_eq!(exit, Exit::Signal(libc::SIGKILL));

    // Every child but the brutally killed one received the stop request.
    assert_eq!(lines_with(&log, "stop "), ["polite", "deaf", "stubborn"]);
    // Terminated children are kept, stopped, and can be restarted.
    assert_eq!(sup.count_children().wait().unwrap().active, 0);
    sup.restart_child("stubborn").wait().unwrap();
    assert_eq!(sup.count_children().wait().unwrap().active, 1);
    sup.stop();
}

fn leaf_tree(log: String) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .child(child(&log, "x", &["serve"]))
        .child(child(&log, "y", &["serve"]))
}

#[test]
fn a_nested_supervisor_stops_its_children_first() {
    let dir = TempDir::new("nested-stop");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "w", &["serve"]))
        .child(ChildSpec::supervisor("mid", leaf_tree(log.clone())));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    sup.stop();
    let seen: Vec<Event> = events.collect();
    assert_eq!(
        tags(&seen),
        [
            "started top:w",
            "started top/mid:x",
            "started top/mid:y",
            "started top:mid",
            "exited top/mid:y",
            "exited top/mid:x",
            "supervisor-exited top/mid",
            "exited top:mid",
            "exited top:w",
            "supervisor-exited top",
        ]
    );
    assert_eq!(exit_of(&seen, "mid"), Exit::Code(0));
    assert_eq!(lines_with(&log, "stop "), ["y", "x", "w"]);
}

#[test]
fn a_brutally_killed_nested_supervisor_takes_its_children_along() {
    let dir = TempDir::new("nested-kill");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(ChildSpec::supervisor("mid", leaf_tree(log.clone())).shutdown(Shutdown::Brutal));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let leaves: Vec<i32> = events
        .drain()
        .iter()
        .filter(|e| e.supervisor() == "top/mid")
        .filter_map(Event::pid)
        .collect();
    assert_eq!(leaves.len(), 2);
    sup.terminate_child("mid").wait().unwrap();
    assert!(wait_until(GENEROUS, || leaves
        .iter()
        .all(|p| !pid_is_running(*p))));
    let seen = events.drain();
    assert!(matches!(exit_of(&seen, "mid"), Exit::Failed(_)), "{seen:?}");
    assert!(lines_with(&log, "stop ").is_empty(), "killed, not asked");
    sup.stop();
}
