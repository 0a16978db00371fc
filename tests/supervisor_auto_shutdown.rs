//! Significant children and auto-shutdown (OTP 24): a supervisor ends itself, normally, when
//! its significant children end on their own — any of them, or all of them — but not when it
//! ended them itself, and not while they are restarted.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, TempDir, send_signal};
use procvisor::supervisor::{
    AutoShutdown, ChildSpec, Event, Exit, Intensity, Restart, SignificantProblem, Strategy,
    Supervisor, SupervisorError, SupervisorSpec,
};
use supervisor_common::{child, lines_with, tags, tags_of};

const MINUTE: Duration = Duration::from_secs(60);

fn top(auto_shutdown: AutoShutdown) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(10, MINUTE))
        .auto_shutdown(auto_shutdown)
}

#[test]
fn a_significant_child_that_ends_ends_its_supervisor_normally() {
    let dir = TempDir::new("any-significant");
    let log = dir.file("log");
    // `job` crashes once (transient: restarted, nothing else), then finishes (exit 0).
    let spec = top(AutoShutdown::AnySignificant)
        .child(child(&log, "a", &["serve"]))
        .child(
            child(&log, "job", &["exit:1", "exit:0"])
                .restart(Restart::Transient)
                .significant(true),
        );
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    assert_eq!(sup.wait_timeout(GENEROUS), Some(Exit::Code(0)));
    let seen: Vec<Event> = events.collect();
    assert_eq!(
        tags(&seen),
        [
            "started top:a",
            "started top:job",
            "exited top:job",
            "restarted top:job",
            "exited top:job",
            "auto-shutdown top",
            "exited top:a",
            "supervisor-exited top",
        ]
    );
    assert_eq!(lines_with(&log, "stop "), ["a"]);
}

#[test]
fn all_significant_waits_for_the_last_one_and_ignores_ends_it_caused() {
    let dir = TempDir::new("all-significant");
    let log = dir.file("log");
    let significant = |id: &str| {
        child(&log, id, &["serve"])
            .restart(Restart::Temporary)
            .significant(true)
    };
    let spec = top(AutoShutdown::AllSignificant)
        .child(child(&log, "a", &["serve"]))
        .child(significant("x"))
        .child(significant("y"))
        .child(significant("z"));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    events.drain();
    // Ended by the supervisor: not the significant child's own end.
    sup.terminate_child("x").wait().unwrap();
    // y ends on its own (SIGTERM from outside): z still runs.
    send_signal(sup.child_pid("y").unwrap().unwrap(), libc::SIGTERM);
    events.wait_for(|e| e.is_exit_of("y"), GENEROUS).unwrap();
    assert!(sup.is_alive());
    let ids: Vec<String> = (sup.which_children().wait().unwrap())
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a", "z"]);
    // The last one ends on its own: the supervisor shuts down.
    send_signal(sup.child_pid("z").unwrap().unwrap(), libc::SIGTERM);
    assert_eq!(sup.wait_timeout(GENEROUS), Some(Exit::Code(0)));
    assert_eq!(
        tags(&events.collect::<Vec<_>>()),
        [
            "exited top:z",
            "auto-shutdown top",
            "exited top:a",
            "supervisor-exited top",
        ]
    );
}

fn sub(log: String) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .auto_shutdown(AutoShutdown::AnySignificant)
        .child(child(&log, "w", &["serve"]))
        .child(
            child(&log, "task", &["exit:0"])
                .restart(Restart::Temporary)
                .significant(true),
        )
}

#[test]
fn a_nested_supervisor_that_shuts_itself_down_is_not_restarted_if_transient() {
    let dir = TempDir::new("auto-shutdown-nested");
    let log = dir.file("log");
    let spec = top(AutoShutdown::Never)
        .child(child(&log, "a", &["serve"]))
        .child(ChildSpec::supervisor("sub", sub(log.clone())).restart(Restart::Transient));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let seen = events
        .collect_until(|e| e.is_exit_of("sub"), GENEROUS)
        .unwrap();
    assert_eq!(
        tags_of(&seen, |e| e.supervisor() == "top/sub"
            || e.child_id() == Some("sub")),
        [
            "started top/sub:w",
            "started top/sub:task",
            "started top:sub",
            "exited top/sub:task",
            "auto-shutdown top/sub",
            "exited top/sub:w",
            "supervisor-exited top/sub",
            "exited top:sub",
        ]
    );
    assert_eq!(supervisor_common::exit_of(&seen, "sub"), Exit::Code(0));
    // A normal exit: the transient nested supervisor is not restarted; top goes on.
    let children = sup.which_children().wait().unwrap();
    assert_eq!(
        children[1].status,
        procvisor::supervisor::ChildStatus::Stopped
    );
    assert!(sup.is_alive());
    sup.stop();
}

#[test]
fn significant_children_are_refused_where_they_cannot_be() {
    let dir = TempDir::new("significant-invalid");
    let log = dir.file("log");
    let bad = |spec: SupervisorSpec| Supervisor::start(spec).unwrap_err();
    assert_eq!(
        bad(top(AutoShutdown::AnySignificant).child(child(&log, "p", &["serve"]).significant(true))),
        SupervisorError::BadSignificantChild {
            supervisor: "top".into(),
            id: "p".into(),
            problem: SignificantProblem::Permanent
        }
    );
    let transient = || {
        child(&log, "t", &["serve"])
            .restart(Restart::Transient)
            .significant(true)
    };
    assert_eq!(
        bad(top(AutoShutdown::Never).child(transient())),
        SupervisorError::BadSignificantChild {
            supervisor: "top".into(),
            id: "t".into(),
            problem: SignificantProblem::NoAutoShutdown
        }
    );
    // The same check when the child is added at run time.
    let sup = Supervisor::start(top(AutoShutdown::Never)).unwrap();
    assert!(matches!(
        sup.start_child(transient()).wait(),
        Err(SupervisorError::BadSignificantChild {
            problem: SignificantProblem::NoAutoShutdown,
            ..
        })
    ));
    sup.stop();
    assert!(lines_with(&log, "start ").is_empty());
}
