//! The adaptations of OTP's semantics that the supervisor module documents ("Where this differs
//! from Erlang/OTP", issue 18.7), pinned on real processes: a supervisor past its intensity
//! exits `Failed` (so a transient parent restarts it, where OTP's `shutdown` would not), and
//! `which_children` lists children in start order. (The two grace periods of a shutdown
//! timeout are pinned by `supervisor_shutdown::stop_request_then_terminate_then_kill`.)

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, TempDir};
use procvisor::supervisor::{
    ChildSpec, ChildStatus, Event, Exit, Intensity, Restart, Shutdown, Strategy, Supervisor,
    SupervisorSpec,
};
use supervisor_common::{GRACE, actor, child, exit_of, tags_of};

const MINUTE: Duration = Duration::from_secs(60);

/// A supervisor (in its own process) that gives up at its child's first exit.
fn fragile(log: String) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity::new(0, MINUTE))
        .child(child(&log, "f", &["exit:1"]))
}

fn top(log: &str, restart: Restart) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(1, MINUTE))
        .child(child(log, "w", &["serve"]))
        .child(ChildSpec::supervisor_process("sub", fragile, (log.to_string(),)).restart(restart))
}

/// The events about `sub` and every supervisor's end.
fn chain(events: &[Event]) -> Vec<String> {
    tags_of(events, |e| {
        matches!(e, Event::GaveUp { .. } | Event::SupervisorExited { .. })
            || e.child_id() == Some("sub")
    })
}

#[test]
fn a_supervisor_past_its_intensity_fails_and_a_transient_parent_restarts_it() {
    let dir = TempDir::new("adapt-transient");
    let log = dir.file("log");
    let (sup, events) = Supervisor::start_with_events(top(&log, Restart::Transient)).unwrap();
    let exit = sup.wait_timeout(GENEROUS).expect("top gives up");
    assert!(
        matches!(&exit, Exit::Failed(r) if r.contains("restart intensity")),
        "{exit:?}"
    );
    let seen: Vec<Event> = events.collect();
    // OTP: `sub` would exit `shutdown`, a normal exit for a transient child: not restarted.
    // Here it failed, so it is restarted, and its second failure exceeds top's intensity.
    assert_eq!(
        chain(&seen),
        [
            "started top:sub",
            "gave-up top/sub",
            "supervisor-exited top/sub",
            "exited top:sub",
            "restarted top:sub",
            "gave-up top/sub",
            "supervisor-exited top/sub",
            "exited top:sub",
            "gave-up top",
            "supervisor-exited top",
        ]
    );
    // The process's exit code 1 is reported as the reason its supervisor gave.
    assert!(matches!(exit_of(&seen, "sub"), Exit::Failed(r) if r.contains("restart intensity")));
}

#[test]
fn a_temporary_supervisor_that_gives_up_is_not_restarted() {
    let dir = TempDir::new("adapt-temporary");
    let log = dir.file("log");
    let (sup, events) = Supervisor::start_with_events(top(&log, Restart::Temporary)).unwrap();
    let seen = events
        .collect_until(|e| e.is_exit_of("sub"), GENEROUS)
        .unwrap();
    assert!(matches!(exit_of(&seen, "sub"), Exit::Failed(_)));
    // Forgotten, and top goes on.
    let children = sup.which_children().wait().unwrap();
    assert_eq!(children.len(), 1, "{children:?}");
    assert_eq!(
        (children[0].id.as_str(), children[0].status),
        ("w", ChildStatus::Running)
    );
    assert!(sup.is_alive());
    sup.stop();
    assert_eq!(sup.exit(), Some(Exit::Code(0)));
}

fn ids(sup: &Supervisor) -> Vec<(String, ChildStatus)> {
    (sup.which_children().wait().unwrap())
        .into_iter()
        .map(|c| (c.id, c.status))
        .collect()
}

#[test]
fn which_children_lists_children_in_start_order_whatever_happens_to_them() {
    let dir = TempDir::new("adapt-order");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(10, MINUTE))
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "b", &["serve"]))
        .child(child(&log, "c", &["serve"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    sup.start_child(child(&log, "d", &["serve"]))
        .wait()
        .unwrap();
    let running = |ids: &[&str]| -> Vec<(String, ChildStatus)> {
        ids.iter()
            .map(|id| (id.to_string(), ChildStatus::Running))
            .collect()
    };
    assert_eq!(ids(&sup), running(&["a", "b", "c", "d"]));

    // Stopped and started again, restarted after a crash: each keeps its place.
    sup.terminate_child("b").wait().unwrap();
    let mut expected = running(&["a", "b", "c", "d"]);
    expected[1].1 = ChildStatus::Stopped;
    assert_eq!(ids(&sup), expected);
    sup.restart_child("b").wait().unwrap();
    sup.kill_child("a").wait().unwrap();
    events.wait_restarts("a", 1, GENEROUS).unwrap();
    assert_eq!(ids(&sup), running(&["a", "b", "c", "d"]));
    sup.stop();
}

#[test]
fn simple_one_for_one_children_are_listed_in_the_order_they_started() {
    let dir = TempDir::new("adapt-order-simple");
    let log = dir.file("log");
    let template = ChildSpec::template("job", actor)
        .wait_ready(GENEROUS)
        .shutdown(Shutdown::Timeout(GRACE));
    let spec = SupervisorSpec::new(Strategy::SimpleOneForOne)
        .name("jobs")
        .intensity(Intensity::new(10, MINUTE))
        .child(template);
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let mut started = Vec::new();
    for name in ["first", "second", "third", "fourth"] {
        let args = (log.clone(), name.to_string(), vec!["serve".to_string()]);
        started.push(sup.start_child_with(args).wait().unwrap().0);
    }
    let listed: Vec<String> = ids(&sup).into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, started);
    assert_eq!(started[0], "job-1");
    // One terminated, one restarted after a crash: the others keep their order.
    sup.terminate_child(&started[1]).wait().unwrap();
    sup.kill_child(&started[2]).wait().unwrap();
    events.wait_restarts(&started[2], 1, GENEROUS).unwrap();
    let listed: Vec<String> = ids(&sup).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        listed,
        [started[0].clone(), started[2].clone(), started[3].clone()]
    );
    sup.stop();
}
