//! Start order, reverse stop order, and the restart sets of one-for-all and rest-for-one, as
//! the children themselves observe them (their log) and as the event stream reports them.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, TempDir};
use procvisor::supervisor::{
    ChildStatus, Event, Exit, Intensity, Restart, Strategy, Supervisor, SupervisorSpec,
};
use supervisor_common::{child, lines, tags};

fn spec(strategy: Strategy, log: &str, ids: &[&str]) -> SupervisorSpec {
    SupervisorSpec::new(strategy)
        .name("top")
        .intensity(Intensity::new(10, Duration::from_secs(60)))
        .children(ids.iter().map(|id| child(log, id, &["serve"])))
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn children_start_in_spec_order_and_stop_in_reverse_order() {
    let dir = TempDir::new("order");
    let log = dir.file("log");
    let (sup, events) =
        Supervisor::start_with_events(spec(Strategy::OneForOne, &log, &["a", "b", "c", "d"]))
            .unwrap();
    // `start` returned: every child has started (and, with wait_ready, logged it).
    assert_eq!(
        lines(&log),
        strs(&["start a", "start b", "start c", "start d"])
    );
    let pids: Vec<i32> = sup
        .which_children()
        .wait()
        .unwrap()
        .iter()
        .map(|c| c.pid.unwrap())
        .collect();
    sup.stop();
    assert_eq!(
        lines(&log)[4..],
        strs(&["stop d", "stop c", "stop b", "stop a"])
    );
    let seen: Vec<Event> = events.collect();
    assert_eq!(
        tags(&seen),
        strs(&[
            "started top:a",
            "started top:b",
            "started top:c",
            "started top:d",
            "exited top:d",
            "exited top:c",
            "exited top:b",
            "exited top:a",
            "supervisor-exited top",
        ])
    );
    for e in &seen {
        if let Event::ChildExited { exit, pid, .. } = e {
            assert!(exit.requested);
            assert_eq!(exit.exit, Exit::Code(0));
            assert!(pids.contains(&pid.unwrap()));
        }
    }
    assert_eq!(sup.exit(), Some(Exit::Code(0)));
    assert!(
        sup.which_children().wait().is_err(),
        "a stopped supervisor serves nothing"
    );
}

#[test]
fn one_for_all_restarts_every_child_in_order() {
    let dir = TempDir::new("one-for-all");
    let log = dir.file("log");
    let (sup, events) =
        Supervisor::start_with_events(spec(Strategy::OneForAll, &log, &["a", "b", "c"])).unwrap();
    events.drain();
    sup.kill_child("b").wait().unwrap();
    let seen = events.wait_restarts("c", 1, GENEROUS).unwrap();
    assert_eq!(
        tags(&seen),
        strs(&[
            "exited top:b",
            "exited top:c",
            "exited top:a",
            "restarted top:a",
            "restarted top:b",
            "restarted top:c",
        ])
    );
    assert_eq!(supervisor_common::exit_of(&seen, "b"), Exit::Signal(9));
    assert_eq!(
        lines(&log)[3..],
        strs(&["stop c", "stop a", "start a", "start b", "start c"])
    );
    let children = sup.which_children().wait().unwrap();
    assert!(
        children
            .iter()
            .all(|c| c.restarts == 1 && c.status == ChildStatus::Running)
    );
    sup.stop();
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_those_started_after_it() {
    let dir = TempDir::new("rest-for-one");
    let log = dir.file("log");
    let (sup, events) =
        Supervisor::start_with_events(spec(Strategy::RestForOne, &log, &["a", "b", "c", "d"]))
            .unwrap();
    events.drain();
    let pid_a = sup.child_pid("a").unwrap();
    sup.kill_child("b").wait().unwrap();
    let seen = events.wait_restarts("d", 1, GENEROUS).unwrap();
    assert_eq!(
        tags(&seen),
        strs(&[
            "exited top:b",
            "exited top:d",
            "exited top:c",
            "restarted top:b",
            "restarted top:c",
            "restarted top:d",
        ])
    );
    assert_eq!(
        lines(&log)[4..],
        strs(&["stop d", "stop c", "start b", "start c", "start d"])
    );
    assert_eq!(
        sup.child_pid("a").unwrap(),
        pid_a,
        "a is before b: untouched"
    );

    // The last child's failure restarts only itself.
    sup.kill_child("d").wait().unwrap();
    let seen = events.wait_restarts("d", 1, GENEROUS).unwrap();
    assert_eq!(tags(&seen), strs(&["exited top:d", "restarted top:d"]));
    sup.stop();
    assert_eq!(
        lines(&log)[9..],
        strs(&["start d", "stop d", "stop c", "stop b", "stop a"])
    );
}

#[test]
fn temporary_siblings_are_stopped_but_not_restarted() {
    let dir = TempDir::new("temporary-sibling");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForAll)
        .name("top")
        .intensity(Intensity::new(10, Duration::from_secs(60)))
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "temp", &["serve"]).restart(Restart::Temporary))
        .child(child(&log, "c", &["serve"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    events.drain();
    sup.kill_child("a").wait().unwrap();
    let seen = events.wait_restarts("c", 1, GENEROUS).unwrap();
    assert_eq!(
        tags(&seen),
        strs(&[
            "exited top:a",
            "exited top:c",
            "exited top:temp",
            "restarted top:a",
            "restarted top:c",
        ])
    );
    let ids: Vec<String> = sup
        .which_children()
        .wait()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, strs(&["a", "c"]));
    sup.stop();
}
