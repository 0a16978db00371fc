//! Restart intensity: a supervisor that restarts too often gives up, stops its children and
//! exits abnormally; its parent treats that as a failed child (escalation, here two levels up).
//! A failed restart is retried by a message, so the supervisor keeps serving meanwhile.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, TempDir};
use procvisor::supervisor::{
    ChildSpec, ChildStatus, Event, Exit, Intensity, Strategy, Supervisor, SupervisorError,
    SupervisorSpec,
};
use supervisor_common::{child, exit_of, lines_with, tags, tags_of};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn more_restarts_than_the_intensity_allows_make_the_supervisor_give_up() {
    let dir = TempDir::new("give-up");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(2, MINUTE))
        .child(child(&log, "w", &["serve"]))
        .child(child(&log, "crash", &["exit:1"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let exit = sup.wait_timeout(GENEROUS).expect("gave up");
    assert!(
        matches!(&exit, Exit::Failed(r) if r.contains("more than 2 restarts")),
        "{exit:?}"
    );
    let seen: Vec<Event> = events.collect();
    assert_eq!(
        tags(&seen),
        [
            "started top:w",
            "started top:crash",
            "exited top:crash",
            "restarted top:crash",
            "exited top:crash",
            "restarted top:crash",
            "exited top:crash",
            "gave-up top",
            "exited top:w",
            "supervisor-exited top",
        ]
    );
    assert!(matches!(seen[7], Event::GaveUp { restarts: 3, period, .. } if period == MINUTE));
    assert_eq!(exit_of(&seen, "crash"), Exit::Code(1));
    // The survivor was stopped in order (asked first), and nothing more is served.
    assert_eq!(lines_with(&log, "stop "), ["w"]);
    assert!(matches!(
        sup.which_children().wait(),
        Err(SupervisorError::NotRunning { .. })
    ));
}

fn mid(log: String) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity::new(1, MINUTE))
        .child(child(&log, "leaf", &["exit:1"]))
}

#[test]
fn escalation_two_levels_up() {
    let dir = TempDir::new("escalation");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(1, MINUTE))
        .child(child(&log, "w", &["serve"]))
        .child(ChildSpec::supervisor("mid", mid(log.clone())));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let exit = sup.wait_timeout(GENEROUS).expect("top gave up");
    assert!(matches!(exit, Exit::Failed(_)));
    let seen: Vec<Event> = events.collect();
    let chain = tags_of(&seen, |e| {
        matches!(e, Event::GaveUp { .. } | Event::SupervisorExited { .. })
            || e.child_id() == Some("mid")
    });
    assert_eq!(
        chain,
        [
            "started top:mid",
            "gave-up top/mid",
            "supervisor-exited top/mid",
            "exited top:mid",
            "restarted top:mid",
            "gave-up top/mid",
            "supervisor-exited top/mid",
            "exited top:mid",
            "gave-up top",
            "supervisor-exited top",
        ]
    );
    // The parent sees the nested supervisor's failure as a failed child, with its reason.
    assert!(matches!(exit_of(&seen, "mid"), Exit::Failed(r) if r.contains("restart intensity")));
    // Each incarnation of mid started the leaf once and restarted it once.
    assert_eq!(
        lines_with(&log, "start ")
            .iter()
            .filter(|l| *l == "leaf")
            .count(),
        4
    );
    assert_eq!(lines_with(&log, "stop "), ["w"]);
}

#[test]
fn a_failed_restart_is_retried_while_the_supervisor_keeps_serving() {
    let dir = TempDir::new("retry");
    let log = dir.file("log");
    // `flaky` starts once, crashes, and then cannot start any more (it exits before it is
    // ready); unlimited intensity, so the supervisor retries until told otherwise.
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::unlimited())
        .child(child(&log, "w", &["serve"]))
        .child(child(&log, "flaky", &["exit:1", "unready:2"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let failures = |n: usize| {
        let mut count = 0;
        events
            .collect_until(
                |e| {
                    count += usize::from(matches!(e, Event::ChildStartFailed { .. }));
                    count >= n
                },
                GENEROUS,
            )
            .unwrap()
    };
    let seen = failures(3);
    let Event::ChildStartFailed {
        reason, retrying, ..
    } = seen.last().unwrap()
    else {
        unreachable!()
    };
    assert!(*retrying);
    assert!(
        reason.contains("exited before it was ready (exit code 2)"),
        "{reason}"
    );
    // Requests are served between attempts: which_children, then terminate_child, which ends
    // the retries.
    let flaky = sup
        .which_children()
        .wait()
        .unwrap()
        .into_iter()
        .find(|c| c.id == "flaky")
        .unwrap();
    assert_eq!(flaky.status, ChildStatus::Restarting);
    sup.terminate_child("flaky").wait().unwrap();
    let _ = sup.which_children().wait().unwrap();
    events.drain();
    let again = sup.which_children().wait().unwrap();
    assert!(
        events.drain().is_empty(),
        "no attempt after terminate_child"
    );
    assert_eq!(again[1].status, ChildStatus::Stopped);
    assert_eq!(again[0].status, ChildStatus::Running);
    sup.stop();
}

#[test]
fn failed_restarts_count_toward_the_intensity() {
    let dir = TempDir::new("retry-give-up");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(3, MINUTE))
        .child(child(&log, "flaky", &["exit:1", "unready:2"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    assert!(matches!(sup.wait_timeout(GENEROUS), Some(Exit::Failed(_))));
    let seen: Vec<Event> = events.collect();
    assert_eq!(
        tags(&seen),
        [
            "started top:flaky",
            "exited top:flaky",
            "start-failed top:flaky",
            "start-failed top:flaky",
            "start-failed top:flaky",
            "gave-up top",
            "supervisor-exited top",
        ]
    );
}

/// Under `strategy`, `b`'s restart fails (its dependency, a gate file, is down): only `b` is
/// `Restarting`; the children of its restart set that were stopped with it and not started
/// again (`c`) are simply stopped, so they can be restarted or deleted, before and after `b`
/// is restarted (OTP marks only the failed child `restarting`).
fn only_the_failed_child_is_restarting(strategy: Strategy) {
    let dir = TempDir::new("restarting");
    let log = dir.file("log");
    let gate = dir.file("gate");
    let spec = SupervisorSpec::new(strategy)
        .name("top")
        .intensity(Intensity::unlimited())
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "b", &["serve", &format!("gate:{gate}")]))
        .child(child(&log, "c", &["serve"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    events.drain();
    sup.kill_child("b").wait().unwrap();
    let mut failures = 0;
    events
        .collect_until(
            |e| {
                failures += usize::from(matches!(e, Event::ChildStartFailed { .. }));
                failures >= 2
            },
            GENEROUS,
        )
        .unwrap();
    let status = |id: &str| {
        sup.which_children()
            .wait()
            .unwrap()
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no child {id}"))
            .status
    };
    // Between two attempts: b is being restarted, c is not running.
    assert_eq!(status("b"), ChildStatus::Restarting);
    assert_eq!(status("c"), ChildStatus::Stopped);
    // a runs: restarted before b under OneForAll, untouched (before b) under RestForOne.
    assert_eq!(status("a"), ChildStatus::Running);

    // terminate_child ends b's retries; c was never restarting, so nothing is left pending.
    sup.terminate_child("b").wait().unwrap();
    assert_eq!(status("b"), ChildStatus::Stopped);
    assert_eq!(status("c"), ChildStatus::Stopped);

    // The dependency is back: b restarts, and c can be restarted, terminated and deleted.
    common::write_atomic(&gate, "open");
    sup.restart_child("b").wait().unwrap();
    assert!(sup.restart_child("c").wait().unwrap().is_some());
    assert_eq!(status("c"), ChildStatus::Running);
    sup.terminate_child("c").wait().unwrap();
    sup.delete_child("c").wait().unwrap();
    let ids: Vec<String> = sup
        .which_children()
        .wait()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);
    sup.stop();
}

#[test]
fn rest_for_one_marks_only_the_child_whose_restart_failed_restarting() {
    only_the_failed_child_is_restarting(Strategy::RestForOne);
}

#[test]
fn one_for_all_marks_only_the_child_whose_restart_failed_restarting() {
    only_the_failed_child_is_restarting(Strategy::OneForAll);
}
