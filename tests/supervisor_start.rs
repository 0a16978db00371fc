//! Starting: spec validation (precise errors), a child that fails to start (the supervisor
//! stops those already started, in reverse order, and says which child and why), readiness.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::{Duration, Instant};

use common::{GENEROUS, TempDir};
use procvisor::Process;
use procvisor::supervisor::{
    ChildExit, ChildSpec, ChildStatus, Event, EventBus, Exit, Intensity, Restart, Strategy,
    Supervisor, SupervisorError, SupervisorRef, SupervisorSpec,
};
use supervisor_common::{child, lines, tags};

fn noop() {}

fn spec_error(spec: SupervisorSpec) -> SupervisorError {
    match Supervisor::start(spec) {
        Err(e) => e,
        other => panic!("expected a supervisor error, got {other:?}"),
    }
}

#[test]
fn invalid_specs_are_refused_with_precise_errors() {
    let w = |id: &str| ChildSpec::worker(id, noop, ());
    assert_eq!(
        spec_error(
            SupervisorSpec::new(Strategy::OneForOne)
                .child(w("a"))
                .child(w("a"))
        ),
        SupervisorError::DuplicateChildId {
            supervisor: "supervisor".into(),
            id: "a".into()
        }
    );
    assert_eq!(
        spec_error(
            SupervisorSpec::new(Strategy::OneForOne)
                .name("top")
                .intensity(Intensity::new(1, Duration::ZERO))
        ),
        SupervisorError::ZeroPeriod {
            supervisor: "top".into()
        }
    );
    assert_eq!(
        spec_error(SupervisorSpec::new(Strategy::OneForOne).child(w(""))),
        SupervisorError::EmptyChildId
    );
    for count in [0, 2] {
        let spec = SupervisorSpec::new(Strategy::SimpleOneForOne)
            .children((0..count).map(|i| w(&i.to_string())));
        assert_eq!(
            spec_error(spec),
            SupervisorError::SimpleOneForOneSpecs {
                supervisor: "supervisor".into(),
                count
            }
        );
    }
    // A nested spec is checked when it starts, under its path.
    let nested = SupervisorSpec::new(Strategy::OneForOne)
        .child(w("x"))
        .child(w("x"));
    let err = spec_error(
        SupervisorSpec::new(Strategy::OneForOne)
            .name("top")
            .child(ChildSpec::supervisor("mid", nested)),
    );
    let SupervisorError::StartFailed { id, reason, .. } = err else {
        panic!("{err:?}")
    };
    assert_eq!(id, "mid");
    assert!(
        reason.contains("duplicate child id \"x\" in supervisor top/mid"),
        "{reason}"
    );
    // The messages read well.
    assert_eq!(
        SupervisorError::ZeroPeriod {
            supervisor: "top".into()
        }
        .to_string(),
        "invalid restart intensity for supervisor top: the period must be longer than zero"
    );
}

#[test]
fn a_child_that_fails_to_start_stops_those_started_before_it() {
    let dir = TempDir::new("start-fails");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "b", &["serve"]))
        .child(child(&log, "broken", &["unready:7"]))
        .child(child(&log, "never", &["serve"]));
    let bus = EventBus::new(None);
    let events = bus.subscribe();
    let err = SupervisorRef::start_with_bus(spec, bus).unwrap_err();
    let SupervisorError::StartFailed {
        supervisor,
        id,
        reason,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((supervisor.as_str(), id.as_str()), ("top", "broken"));
    assert!(
        reason.contains("exited before it was ready (exit code 7)"),
        "{reason}"
    );
    assert_eq!(
        lines(&log),
        ["start a", "start b", "start broken", "stop b", "stop a"]
    );
    let seen: Vec<Event> = events.collect();
    assert_eq!(
        tags(&seen),
        [
            "started top:a",
            "started top:b",
            "start-failed top:broken",
            "exited top:b",
            "exited top:a",
            "supervisor-exited top",
        ]
    );
}

#[test]
fn the_events_of_a_start_are_told_apart_from_later_ones() {
    // A supervisor in its own process sends its start's events before `Ready` and later ones
    // after; a child may exit before the start's events have been read, so the boundary is
    // a count taken when the start is over, not what happens to be queued.
    let dir = TempDir::new("start-events");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "b", &["serve"]));
    let bus = EventBus::new(None);
    let events = bus.subscribe();
    let sup = SupervisorRef::start_with_bus(spec, bus.clone()).unwrap();
    assert_eq!(sup.events_of_start(), 2);
    // Published after the start, and queued before anyone read the start's events.
    let later = Event::ChildExited {
        supervisor: "top".into(),
        id: "a".into(),
        pid: None,
        exit: ChildExit {
            exit: Exit::Code(0),
            requested: false,
        },
    };
    bus.publish(later.clone());
    let start = events.drain_first(sup.events_of_start());
    assert_eq!(tags(&start), ["started top:a", "started top:b"]);
    assert_eq!(events.drain(), [later]);
    sup.stop();
}

#[test]
fn factories_and_readiness_timeouts_can_fail_a_start() {
    // A factory's error is the reason.
    let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::process("f", || {
        Err(procvisor::error::StartError::NotInitialized.into())
    }));
    let SupervisorError::StartFailed { reason, .. } = spec_error(spec) else {
        panic!()
    };
    assert!(reason.contains("procvisor::init() has not run"), "{reason}");

    // A child that never reports ready is killed after the timeout.
    fn silent() {
        std::thread::sleep(Duration::from_secs(3600));
    }
    let timeout = Duration::from_millis(200);
    let t = Instant::now();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(ChildSpec::worker("silent", silent, ()).wait_ready(timeout));
    let SupervisorError::StartFailed { reason, .. } = spec_error(spec) else {
        panic!()
    };
    assert!(t.elapsed() >= timeout);
    assert!(
        reason.contains("did not report ready within 200ms"),
        "{reason}"
    );

    // start_child: a failed start is reported and its spec is not kept.
    let sup = Supervisor::start(SupervisorSpec::new(Strategy::OneForOne)).unwrap();
    let err = sup
        .start_child(
            ChildSpec::process("g", || Ok(Process::new(noop, ()).daemon(false)))
                .wait_ready(GENEROUS),
        )
        .wait()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("wait_ready() needs a spec made with"),
        "{err}"
    );
    assert!(sup.which_children().wait().unwrap().is_empty());
    sup.stop();
}

fn spec_with_broken_leaf(log: String) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .child(child(&log, "x", &["serve"]))
        .child(child(&log, "bad", &["panic"]).wait_ready(GENEROUS))
        .child(child(&log, "y", &["unready:3"]))
}

#[test]
fn a_nested_supervisor_that_fails_to_start_fails_its_parents_start() {
    let dir = TempDir::new("nested-start-fails");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "w", &["serve"]))
        .child(ChildSpec::supervisor(
            "mid",
            spec_with_broken_leaf(log.clone()),
        ));
    let err = spec_error(spec);
    let SupervisorError::StartFailed { id, reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(id, "mid");
    assert!(
        reason.contains("child \"y\" of supervisor top/mid failed to start"),
        "{reason}"
    );
    // `bad` panicked after it was ready: started; `y` failed; then x, bad (dead), w stopped.
    assert_eq!(
        lines(&log),
        [
            "start w",
            "start x",
            "start bad",
            "start y",
            "stop x",
            "stop w"
        ]
    );
}

#[test]
fn a_child_may_decline_its_start_and_is_kept_stopped() {
    let dir = TempDir::new("ignore");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(10, Duration::from_secs(60)))
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "b", &["decline"]))
        .child(child(&log, "temp", &["decline"]).restart(Restart::Temporary))
        .child(child(&log, "c", &["serve", "decline"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    // OTP's `ignore`: b is kept, not running; a temporary child that declines is not kept.
    assert_eq!(
        tags(&events.drain()),
        [
            "started top:a",
            "ignored top:b",
            "ignored top:temp",
            "started top:c",
        ]
    );
    let status = || -> Vec<(String, ChildStatus)> {
        sup.which_children()
            .wait()
            .unwrap()
            .into_iter()
            .map(|c| (c.id, c.status))
            .collect()
    };
    let running = |id: &str| (id.to_string(), ChildStatus::Running);
    let stopped = |id: &str| (id.to_string(), ChildStatus::Stopped);
    assert_eq!(status(), [running("a"), stopped("b"), running("c")]);
    assert_eq!(sup.count_children().wait().unwrap().active, 2);
    // restart_child of a child that declines again: answered (no pid), still stopped.
    assert_eq!(sup.restart_child("b").wait(), Ok(None));
    // A restart that declines is over: c is stopped, with no retry pending.
    sup.kill_child("c").wait().unwrap();
    let seen = events
        .wait_for(
            |e| matches!(e, Event::ChildIgnored { id, .. } if id == "c"),
            GENEROUS,
        )
        .unwrap();
    assert_eq!(seen.tag(), "ignored top:c");
    assert_eq!(status(), [running("a"), stopped("b"), stopped("c")]);
    assert!(sup.is_alive());
    sup.stop();
    assert_eq!(
        lines(&log),
        [
            "start a",
            "start b",
            "start temp",
            "start c",
            "start b",
            "start c",
            "stop a"
        ]
    );
}
