//! Handles on nested supervisors (`Supervisor::subtree`, OTP's addressing of any supervisor in
//! a tree): in this process, in the subtree's own OS process, and two process boundaries down.
//! Every request of a top-level handle works on them, answers name the real processes, and a
//! handle names one incarnation (issue 18.4).

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, pid_is_running};
use procvisor::Process;
use procvisor::supervisor::{
    ChildCounts, ChildInfo, ChildSpec, ChildStatus, ChildType, Event, Exit, Intensity, Strategy,
    Supervisor, SupervisorError, SupervisorSpec,
};
use supervisor_common::{child, lines_with, tags};

const MINUTE: Duration = Duration::from_secs(60);

/// The parent pid of `pid`, from `/proc`.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn ids(children: &[ChildInfo]) -> Vec<(&str, ChildStatus)> {
    children.iter().map(|c| (c.id.as_str(), c.status)).collect()
}

fn pid_of(children: &[ChildInfo], id: &str) -> i32 {
    children
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
        .unwrap_or_else(|| panic!("{id} has no pid in {children:?}"))
}

/// Two serving workers, `x` and `y`.
fn pair(log: String) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity::new(5, MINUTE))
        .child(child(&log, "x", &["serve"]))
        .child(child(&log, "y", &["serve"]))
}

/// A supervisor process whose only child is another supervisor process (`leaf`, a [`pair`]).
fn middle(log: String) -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity::new(5, MINUTE))
        .child(ChildSpec::supervisor_process("leaf", pair, (log,)))
}

fn not_a_process() -> procvisor::Result<Process> {
    Ok(Process::new(|| {}, ()))
}

#[test]
fn a_nested_supervisor_in_this_process_answers_every_request() {
    let dir = common::TempDir::new("subtree-local");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "w", &["serve"]))
        .child(ChildSpec::supervisor("sub", pair(log.clone())));
    let sup = Supervisor::start(spec).unwrap();
    let sub = sup.subtree("sub").wait().unwrap();
    assert_eq!((sub.path(), sub.is_remote()), ("top/sub", false));
    let children = sub.which_children().wait().unwrap();
    assert_eq!(
        ids(&children),
        [("x", ChildStatus::Running), ("y", ChildStatus::Running)]
    );
    assert!(pid_is_running(pid_of(&children, "x")));
    assert_eq!(
        sub.count_children().wait().unwrap(),
        ChildCounts {
            specs: 2,
            active: 2,
            supervisors: 0,
            workers: 2
        }
    );

    let events = sub.events();
    let z = sub
        .start_child(child(&log, "z", &["serve"]))
        .wait()
        .unwrap()
        .expect("a pid");
    assert_eq!(ppid(z), Some(std::process::id() as i32));
    sub.terminate_child("x").wait().unwrap();
    assert_eq!(lines_with(&log, "stop "), ["x"]);
    assert_eq!(
        ids(&sub.which_children().wait().unwrap()),
        [
            ("x", ChildStatus::Stopped),
            ("y", ChildStatus::Running),
            ("z", ChildStatus::Running)
        ]
    );
    // The subtree's own events, on its handle's stream.
    let seen = events
        .collect_until(|e| e.is_exit_of("x"), GENEROUS)
        .unwrap();
    assert_eq!(tags(&seen), ["started top/sub:z", "exited top/sub:x"]);

    // The top level did not change.
    assert_eq!(sup.count_children().wait().unwrap().active, 2);
    sup.stop();
    assert!(!sub.is_alive());
}

#[test]
fn subtree_refuses_what_is_not_a_running_supervisor() {
    let dir = common::TempDir::new("subtree-errors");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "w", &["serve"]))
        .child(ChildSpec::supervisor("sub", pair(log.clone())));
    let sup = Supervisor::start(spec).unwrap();
    let not_found = |id: &str| SupervisorError::ChildNotFound {
        supervisor: "top".into(),
        id: id.into(),
    };
    assert_eq!(sup.subtree("nope").wait().unwrap_err(), not_found("nope"));
    assert_eq!(sup.subtree("").wait().unwrap_err(), not_found(""));
    assert_eq!(
        sup.subtree("w").wait().unwrap_err(),
        SupervisorError::NotASupervisor {
            supervisor: "top".into(),
            id: "w".into()
        }
    );
    assert_eq!(
        sup.subtree("sub/x").wait().unwrap_err(),
        SupervisorError::NotASupervisor {
            supervisor: "top/sub".into(),
            id: "x".into()
        }
    );
    let old = sup.subtree("sub").wait().unwrap();
    sup.terminate_child("sub").wait().unwrap();
    assert_eq!(
        sup.subtree("sub").wait().unwrap_err(),
        SupervisorError::ChildNotRunning {
            supervisor: "top".into(),
            id: "sub".into()
        }
    );
    assert_eq!(
        old.which_children().wait().unwrap_err(),
        SupervisorError::NotRunning {
            supervisor: "top/sub".into()
        }
    );
    sup.stop();
}

#[test]
fn a_supervisor_in_its_own_process_answers_every_request() {
    let dir = common::TempDir::new("subtree-remote");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "w", &["serve"]))
        .child(ChildSpec::supervisor_process("sub", pair, (log.clone(),)));
    let sup = Supervisor::start(spec).unwrap();
    let sub_pid = sup.child_pid("sub").unwrap().expect("a pid");
    let sub = sup.subtree("sub").wait().unwrap();
    assert_eq!((sub.path(), sub.is_remote()), ("top/sub", true));
    assert_eq!(sub.strategy(), Strategy::OneForOne);

    // Its children are processes of its process.
    let children = sub.which_children().wait().unwrap();
    assert_eq!(
        ids(&children),
        [("x", ChildStatus::Running), ("y", ChildStatus::Running)]
    );
    assert_eq!(ppid(pid_of(&children, "x")), Some(sub_pid));
    assert_eq!(ppid(pid_of(&children, "y")), Some(sub_pid));
    assert_eq!(
        sub.count_children().wait().unwrap(),
        ChildCounts {
            specs: 2,
            active: 2,
            supervisors: 0,
            workers: 2
        }
    );

    // A spec travels there and starts a process of that process.
    let events = sub.events();
    let z = sub
        .start_child(child(&log, "z", &["serve"]))
        .wait()
        .unwrap()
        .expect("a pid");
    assert_eq!(ppid(z), Some(sub_pid));
    assert_eq!(
        sub.start_child(child(&log, "z", &["serve"]))
            .wait()
            .unwrap_err(),
        SupervisorError::AlreadyStarted {
            supervisor: "top/sub".into(),
            id: "z".into(),
            pid: Some(z)
        }
    );
    sub.terminate_child("z").wait().unwrap();
    assert_eq!(lines_with(&log, "stop "), ["z"]);
    assert!(common::wait_until(GENEROUS, || !pid_is_running(z)));
    sub.delete_child("z").wait().unwrap();
    assert_eq!(
        ids(&sub.which_children().wait().unwrap()),
        [("x", ChildStatus::Running), ("y", ChildStatus::Running)]
    );

    // Its events reach its handle's stream (and the top's), after the answers' effects.
    sub.kill_child("x").wait().unwrap();
    let seen = events.wait_restarts("x", 1, GENEROUS).unwrap();
    assert_eq!(
        tags(&seen),
        [
            "started top/sub:z",
            "exited top/sub:z",
            "exited top/sub:x",
            "restarted top/sub:x",
        ]
    );
    assert_eq!(sub.which_children().wait().unwrap()[0].restarts, 1);

    // A spec read back from it travels back, and starts here.
    let x = sub.child_spec("x").wait().unwrap();
    assert_eq!(x.id(), "x");
    let here = SupervisorSpec::new(Strategy::OneForOne).name("other");
    let other = Supervisor::start(here).unwrap();
    let pid = other.start_child(x.into()).wait().unwrap().expect("a pid");
    assert_eq!(ppid(pid), Some(std::process::id() as i32));
    other.stop();

    // What cannot travel is refused with the reason.
    match sub
        .start_child(ChildSpec::process("f", not_a_process))
        .wait()
    {
        Err(SupervisorError::NotPortable { supervisor, id, .. }) => {
            assert_eq!((supervisor.as_str(), id.as_str()), ("top/sub", "f"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        sub.start_child_with(("a".to_string(),)).wait(),
        Err(SupervisorError::RemoteUnsupported {
            operation: "start_child_with",
            ..
        })
    ));
    assert_eq!(
        sub.restart_child("nope").wait().unwrap_err(),
        SupervisorError::ChildNotFound {
            supervisor: "top/sub".into(),
            id: "nope".into()
        }
    );
    let end = sub.events();
    sup.stop();
    assert_eq!(sub.exit(), Some(Exit::Code(0)));
    let rest = end.collect_until(|_| false, GENEROUS).unwrap_err();
    assert!(rest.closed, "{rest}");
    assert_eq!(
        tags(&rest.seen),
        [
            "exited top/sub:y",
            "exited top/sub:x",
            "supervisor-exited top/sub"
        ]
    );
}

#[test]
fn a_handle_reaches_two_process_boundaries_down() {
    let dir = common::TempDir::new("subtree-deep");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(ChildSpec::supervisor_process("mid", middle, (log.clone(),)));
    let sup = Supervisor::start(spec).unwrap();
    let mid = sup.subtree("mid").wait().unwrap();
    let mid_children = mid.which_children().wait().unwrap();
    assert_eq!(
        (mid_children[0].id.as_str(), mid_children[0].child_type),
        ("leaf", ChildType::Supervisor)
    );
    let leaf_pid = pid_of(&mid_children, "leaf");
    assert_eq!(ppid(leaf_pid), sup.child_pid("mid").unwrap());

    let leaf = sup.subtree("mid/leaf").wait().unwrap();
    assert_eq!((leaf.path(), leaf.is_remote()), ("top/mid/leaf", true));
    let children = leaf.which_children().wait().unwrap();
    assert_eq!(ppid(pid_of(&children, "x")), Some(leaf_pid));
    let events = leaf.events();
    let z = leaf
        .start_child(child(&log, "z", &["serve"]))
        .wait()
        .unwrap()
        .expect("a pid");
    assert_eq!(ppid(z), Some(leaf_pid));
    leaf.terminate_child("y").wait().unwrap();
    assert_eq!(lines_with(&log, "stop "), ["y"]);
    assert_eq!(
        tags(
            &events
                .collect_until(|e| e.is_exit_of("y"), GENEROUS)
                .unwrap()
        ),
        ["started top/mid/leaf:z", "exited top/mid/leaf:y"]
    );
    // The same handle through the middle one.
    let again = mid.subtree("leaf").wait().unwrap();
    assert_eq!(again.count_children().wait().unwrap().active, 2);

    // The middle process killed: the leaf's handle learns that its incarnation is gone.
    sup.kill_child("mid").wait().unwrap();
    assert!(matches!(leaf.wait_timeout(GENEROUS), Some(Exit::Failed(_))));
    assert!(matches!(
        mid.wait_timeout(GENEROUS),
        Some(Exit::Signal(libc::SIGKILL))
    ));
    assert_eq!(
        leaf.which_children().wait().unwrap_err(),
        SupervisorError::NotRunning {
            supervisor: "top/mid/leaf".into()
        }
    );
    assert!(common::wait_until(GENEROUS, || !pid_is_running(z)));
    sup.stop();
}

#[test]
fn a_handle_names_one_incarnation_of_a_restarted_subtree() {
    let dir = common::TempDir::new("subtree-incarnation");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(5, MINUTE))
        .child(ChildSpec::supervisor_process("sub", pair, (log.clone(),)));
    let (sup, top_events) = Supervisor::start_with_events(spec).unwrap();
    let old = sup.subtree("sub").wait().unwrap();
    let old_events = old.events();
    sup.kill_child("sub").wait().unwrap();
    top_events.wait_restarts("sub", 1, GENEROUS).unwrap();
    // The old incarnation's exit is known by the time its parent has restarted it.
    assert_eq!(old.exit(), Some(Exit::Signal(libc::SIGKILL)));
    assert!(!old.is_alive());
    assert_eq!(
        old.which_children().wait().unwrap_err(),
        SupervisorError::NotRunning {
            supervisor: "top/sub".into()
        }
    );
    let rest = old_events.collect_until(|_| false, GENEROUS).unwrap_err();
    assert!(rest.closed && rest.seen.is_empty(), "{rest}");

    let new = sup.subtree("sub").wait().unwrap();
    let children = new.which_children().wait().unwrap();
    assert_eq!(ppid(pid_of(&children, "x")), sup.child_pid("sub").unwrap());
    // Stopping it through its handle is a normal exit its parent sees (and restarts: it is
    // permanent).
    let stopped = new.clone();
    stopped.stop();
    assert_eq!(stopped.exit(), Some(Exit::Code(0)));
    let seen = top_events.wait_restarts("sub", 1, GENEROUS).unwrap();
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Event::ChildExited { id, exit, .. } if id == "sub" && exit.exit == Exit::Code(0)
        )),
        "{:?}",
        tags(&seen)
    );
    sup.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn subtree_handles_are_awaited_too() {
    let dir = common::TempDir::new("subtree-async");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(ChildSpec::supervisor_process("mid", middle, (log.clone(),)));
    let sup = Supervisor::start_async(spec).await.unwrap();
    let leaf = sup.subtree("mid/leaf").await.unwrap();
    let z = leaf
        .start_child(child(&log, "z", &["serve"]))
        .await
        .unwrap()
        .expect("a pid");
    assert!(pid_is_running(z));
    assert_eq!(leaf.count_children().await.unwrap().active, 3);
    leaf.terminate_child("z").await.unwrap();
    assert_eq!(lines_with(&log, "stop "), ["z"]);
    assert_eq!(
        sup.subtree("mid/nope").await.unwrap_err(),
        SupervisorError::ChildNotFound {
            supervisor: "top/mid".into(),
            id: "nope".into()
        }
    );
    sup.stop_async().await;
    assert!(matches!(leaf.wait_async().await, Exit::Code(0)));
}
