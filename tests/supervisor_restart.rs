//! Restart rules with real processes: which exits restart a child, per restart type; the exit
//! statuses the events report; the event order (exited, then restarted).

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, TempDir};
use procvisor::supervisor::{
    ChildSpec, ChildStatus, Event, Exit, Intensity, Restart, Strategy, Supervisor, SupervisorSpec,
};
use procvisor::{Process, StartMethod};
use supervisor_common::{child, lines_with, tags_of, until_exits};

/// Each child exits once in its own way, then serves.
const KINDS: [(&str, &str, Exit); 5] = [
    ("normal", "exit:0", Exit::Code(0)),
    ("code", "exit:3", Exit::Code(3)),
    ("panic", "panic", Exit::Code(1)),
    ("sigkill", "kill:9", Exit::Signal(9)),
    ("sigterm", "kill:15", Exit::Signal(15)),
];

fn run(restart: Restart, expect_restart: [bool; 5]) {
    let dir = TempDir::new("restart-types");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name(format!("{restart:?}"))
        .intensity(Intensity::new(100, Duration::from_secs(60)))
        .children(
            KINDS
                .iter()
                .map(|(id, kind, _)| child(&log, id, &[kind, "serve"]).restart(restart)),
        );
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let mut seen = until_exits(&events, KINDS.len());
    // A request is served after the exits it follows: the restart decisions are all made.
    let children = sup.which_children().unwrap();
    seen.extend(events.drain());

    for ((id, _, exit), restarted) in KINDS.iter().zip(expect_restart) {
        let about_me = tags_of(&seen, |e| e.child_id() == Some(id));
        let started = format!("started {restart:?}:{id}");
        let exited = format!("exited {restart:?}:{id}");
        let again = format!("restarted {restart:?}:{id}");
        let expected: Vec<&str> = if restarted {
            vec![&started, &exited, &again]
        } else {
            vec![&started, &exited]
        };
        assert_eq!(about_me, expected, "{restart:?} child {id}");
        assert_eq!(supervisor_common::exit_of(&seen, id), *exit, "{id}");
        let info = children.iter().find(|c| c.id == *id);
        match (restart, restarted) {
            (_, true) => {
                let info = info.unwrap();
                assert_eq!((info.status, info.restarts), (ChildStatus::Running, 1));
                assert!(info.pid.is_some());
            }
            (Restart::Temporary, false) => assert!(info.is_none(), "temporary {id} forgotten"),
            (_, false) => assert_eq!(info.unwrap().status, ChildStatus::Stopped),
        }
    }
    let count = sup.count_children().unwrap();
    let running = expect_restart.iter().filter(|r| **r).count();
    assert_eq!(count.active, running);
    sup.stop();
    let mut stopped = lines_with(&log, "stop ");
    stopped.sort();
    let mut expected: Vec<String> = KINDS
        .iter()
        .zip(expect_restart)
        .filter(|(_, r)| *r)
        .map(|((id, _, _), _)| id.to_string())
        .collect();
    expected.sort();
    assert_eq!(stopped, expected);
}

#[test]
fn permanent_children_restart_after_every_exit() {
    run(Restart::Permanent, [true; 5]);
}

#[test]
fn transient_children_restart_after_abnormal_exits_only() {
    // Exit 0 and death by SIGTERM (a termination request) are not abnormal.
    run(Restart::Transient, [false, true, true, true, false]);
}

#[test]
fn temporary_children_never_restart() {
    run(Restart::Temporary, [false; 5]);
}

#[test]
fn a_child_is_restarted_again_and_again_and_kill_child_helps_tests() {
    let dir = TempDir::new("restart-again");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(10, Duration::from_secs(60)))
        .child(child(&log, "a", &["serve"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let mut pids = vec![sup.child_pid("a").unwrap().unwrap()];
    for n in 1..=3u32 {
        sup.kill_child("a").unwrap();
        let seen = events.wait_restarts("a", 1, GENEROUS).unwrap();
        let Some(Event::ChildRestarted { restarts, pid, .. }) = seen.last() else {
            panic!("{seen:?}")
        };
        assert_eq!(*restarts, n);
        assert_eq!(
            supervisor_common::exit_of(&seen, "a"),
            Exit::Signal(libc::SIGKILL)
        );
        pids.push(pid.unwrap());
    }
    pids.dedup();
    assert_eq!(pids.len(), 4, "a new process each time: {pids:?}");
    assert_eq!(lines_with(&log, "start ").len(), 4);
    sup.stop();
    assert_eq!(lines_with(&log, "stop "), ["a"]);
    assert_eq!(sup.exit(), Some(Exit::Code(0)));
}

#[test]
fn children_started_by_the_fork_server_are_supervised_the_same_way() {
    let dir = TempDir::new("restart-fork");
    let log = dir.file("log");
    let factory_log = log.clone();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("forked")
        .intensity(Intensity::new(10, Duration::from_secs(60)))
        .child(ChildSpec::process("a", move || {
            let args = (
                factory_log.clone(),
                "a".to_string(),
                vec!["serve".to_string()],
            );
            Ok(Process::new(supervisor_common::actor, args).start_method(StartMethod::Fork))
        }));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    assert!(common::wait_until(GENEROUS, || lines_with(&log, "start ")
        .len()
        == 1));
    sup.kill_child("a").unwrap();
    let seen = events.wait_restarts("a", 1, GENEROUS).unwrap();
    assert_eq!(
        supervisor_common::exit_of(&seen, "a"),
        Exit::Signal(libc::SIGKILL)
    );
    assert!(common::wait_until(GENEROUS, || lines_with(&log, "start ")
        .len()
        == 2));
    sup.stop();
    assert_eq!(lines_with(&log, "stop "), ["a"]);
}
