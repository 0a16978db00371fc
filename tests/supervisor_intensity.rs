//! Restart intensity: a supervisor that restarts too often gives up, stops its children and
//! exits abnormally; its parent treats that as a failed child (escalation, here two levels up).
//! A failed restart is retried by a message, so the supervisor keeps serving meanwhile.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, TempDir};
use procvisor::supervisor::{
    ChildSpec, ChildStatus, Event, Exit, Intensity, RestartDelay, Strategy, Supervisor,
    SupervisorError, SupervisorSpec,
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

/// The delays a stream announced for child `id`, in order.
fn delays_of(events: &[Event], id: &str) -> Vec<Duration> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::RestartDelayed { id: i, delay, .. } if i == id => Some(*delay),
            _ => None,
        })
        .collect()
}

#[test]
fn a_restart_delay_lets_a_finite_intensity_outlast_a_slow_dependency() {
    let dir = TempDir::new("restart-delay");
    let log = dir.file("log");
    let gate = dir.file("gate");
    let ms = Duration::from_millis;
    // `db` crashes once, then cannot start while its dependency (the gate file) is down.
    // Immediate retries would exceed 5 restarts within a minute in a few milliseconds.
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(5, MINUTE))
        .child(child(&log, "w", &["serve"]))
        .child(
            child(&log, "db", &["exit:1", &format!("gate:{gate}")])
                .restart_delay(RestartDelay::exponential(ms(100), ms(2000))),
        );
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let mut failures = 0;
    let mut seen = events
        .collect_until(
            |e| {
                failures += usize::from(matches!(e, Event::ChildStartFailed { .. }));
                failures >= 2
            },
            GENEROUS,
        )
        .unwrap();
    // The dependency comes back while the third attempt waits (400 ms; the ones after it
    // would wait 800 and 1600 ms, within the intensity too).
    common::write_atomic(&gate, "up");
    seen.extend(events.wait_restarts("db", 1, GENEROUS).unwrap());
    assert!(sup.is_alive(), "{:#?}", tags(&seen));
    let failed = seen
        .iter()
        .filter(|e| matches!(e, Event::ChildStartFailed { .. }))
        .count();
    let delays = delays_of(&seen, "db");
    assert_eq!(delays.len(), failed + 1, "{:#?}", tags(&seen));
    assert_eq!(delays[..3], [ms(100), ms(200), ms(400)]);
    assert_eq!(
        tags_of(&seen[..7], |_| true),
        [
            "started top:w",
            "started top:db",
            "exited top:db",
            "restart-delayed top:db",
            "start-failed top:db",
            "restart-delayed top:db",
            "start-failed top:db",
        ]
    );
    let db = &sup.which_children().wait().unwrap()[1];
    assert_eq!((db.status, db.restarts), (ChildStatus::Running, 1));

    // A crash of a running child waits the first delay again: a start resets the backoff.
    sup.kill_child("db").wait().unwrap();
    let seen = events.wait_restarts("db", 1, GENEROUS).unwrap();
    assert_eq!(delays_of(&seen, "db"), [ms(100)]);
    sup.stop();
}

#[test]
fn terminate_child_cancels_a_delayed_restart() {
    let dir = TempDir::new("delay-cancel");
    let log = dir.file("log");
    let hour = Duration::from_secs(3600);
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "a", &["exit:1", "serve"]).restart_delay(RestartDelay::fixed(hour)));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let delayed = events
        .wait_for(|e| matches!(e, Event::RestartDelayed { .. }), GENEROUS)
        .unwrap();
    assert!(matches!(delayed, Event::RestartDelayed { delay, .. } if delay == hour));
    // Waiting: restarting, not restartable by hand; requests are served meanwhile.
    let a = &sup.which_children().wait().unwrap()[0];
    assert_eq!((a.status, a.pid), (ChildStatus::Restarting, None));
    assert!(matches!(
        sup.restart_child("a").wait(),
        Err(SupervisorError::ChildRestarting { .. })
    ));
    sup.terminate_child("a").wait().unwrap();
    assert_eq!(
        sup.which_children().wait().unwrap()[0].status,
        ChildStatus::Stopped
    );
    assert!(sup.restart_child("a").wait().unwrap().is_some());
    sup.stop();
    assert_eq!(lines_with(&log, "stop "), ["a"]);
}

#[test]
fn an_invalid_restart_delay_is_refused_before_anything_starts() {
    let ms = Duration::from_millis;
    let dir = TempDir::new("delay-invalid");
    let log = dir.file("log");
    for delay in [
        RestartDelay {
            first: ms(10),
            max: ms(10),
            factor: 0,
        },
        RestartDelay::exponential(ms(500), ms(100)),
    ] {
        let spec = SupervisorSpec::new(Strategy::OneForOne)
            .child(child(&log, "a", &["serve"]).restart_delay(delay));
        assert_eq!(
            Supervisor::start(spec).unwrap_err(),
            SupervisorError::InvalidRestartDelay {
                id: "a".into(),
                delay
            }
        );
    }
    assert!(lines_with(&log, "start ").is_empty());
}
