//! The runtime API: dynamic children of a `SimpleOneForOne` supervisor (started with extra
//! arguments, restarted with the same ones), and start/terminate/restart/delete/which/count
//! on the other strategies, with their precise refusals. Also the async variants.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::time::Duration;

use common::{GENEROUS, TempDir};
use procvisor::supervisor::{
    ChildCounts, ChildSpec, ChildStatus, ChildType, Exit, Intensity, Restart, Strategy, Supervisor,
    SupervisorError, SupervisorSpec,
};
use supervisor_common::{GRACE, actor, child, lines, lines_with, tags};

fn script(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn refused(result: Result<impl std::fmt::Debug, SupervisorError>) -> SupervisorError {
    match result {
        Err(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn simple_one_for_one_children_are_added_at_run_time() {
    let dir = TempDir::new("dynamic");
    let log = dir.file("log");
    let template = ChildSpec::template("job", actor)
        .wait_ready(GENEROUS)
        .shutdown(procvisor::supervisor::Shutdown::Timeout(GRACE))
        .restart(Restart::Transient);
    let spec = SupervisorSpec::new(Strategy::SimpleOneForOne)
        .name("jobs")
        .intensity(Intensity::new(10, Duration::from_secs(60)))
        .child(template);
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    assert_eq!(
        sup.count_children().wait().unwrap().active,
        0,
        "no child at first"
    );

    let (a, pid_a) = sup
        .start_child_with((log.clone(), "a".to_string(), script(&["serve"])))
        .wait()
        .unwrap();
    let (b, _) = sup
        .start_child_with((log.clone(), "b".to_string(), script(&["exit:0"])))
        .wait()
        .unwrap();
    let (c, _) = sup
        .start_child_with((log.clone(), "c".to_string(), script(&["serve"])))
        .wait()
        .unwrap();
    assert_eq!(
        (a.as_str(), b.as_str(), c.as_str()),
        ("job-1", "job-2", "job-3")
    );
    assert!(pid_a.is_some());

    // b exits normally: transient, so not restarted — and a dynamic child is then forgotten.
    events
        .wait_for(|e| e.is_exit_of("job-2"), GENEROUS)
        .unwrap();
    // a is killed: restarted with the same extra arguments.
    sup.kill_child("job-1").wait().unwrap();
    events.wait_restarts("job-1", 1, GENEROUS).unwrap();
    assert_eq!(
        lines_with(&log, "start ")
            .iter()
            .filter(|l| *l == "a")
            .count(),
        2
    );
    let children = sup.which_children().wait().unwrap();
    let ids: Vec<&str> = children.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["job-1", "job-3"]);
    assert_eq!(children[0].restarts, 1);
    assert_eq!(
        sup.count_children().wait().unwrap(),
        ChildCounts {
            specs: 1,
            active: 2,
            supervisors: 0,
            workers: 2
        }
    );

    // terminate_child forgets a dynamic child.
    sup.terminate_child("job-3").wait().unwrap();
    assert_eq!(sup.which_children().wait().unwrap().len(), 1);

    // What a simple_one_for_one supervisor refuses.
    assert!(matches!(
        refused(sup.restart_child("job-1").wait()),
        SupervisorError::SimpleOneForOne {
            operation: "restart_child",
            ..
        }
    ));
    assert!(matches!(
        refused(sup.delete_child("job-1").wait()),
        SupervisorError::SimpleOneForOne {
            operation: "delete_child",
            ..
        }
    ));
    assert!(matches!(
        refused(sup.start_child(child(&log, "z", &["serve"])).wait()),
        SupervisorError::SimpleOneForOne { .. }
    ));
    let wrong = refused(sup.start_child_with(42u32).wait());
    assert!(
        matches!(wrong, SupervisorError::ExtraArgsType { got: "u32", .. }),
        "{wrong:?}"
    );
    assert!(
        wrong
            .to_string()
            .contains("(alloc::string::String, alloc::string::String")
    );

    // Stopping stops every dynamic child.
    for i in 0..3 {
        sup.start_child_with((log.clone(), format!("d{i}"), script(&["serve"])))
            .wait()
            .unwrap();
    }
    sup.stop();
    let mut stopped = lines_with(&log, "stop ");
    stopped.sort();
    assert_eq!(stopped, ["a", "c", "d0", "d1", "d2"]);
}

#[test]
fn children_can_be_started_terminated_restarted_and_deleted() {
    let dir = TempDir::new("runtime-api");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "a", &["serve"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let pid = sup
        .start_child(child(&log, "b", &["serve"]))
        .wait()
        .unwrap();
    assert!(pid.is_some());
    assert!(matches!(
        refused(sup.start_child(child(&log, "b", &["serve"])).wait()),
        SupervisorError::AlreadyStarted { pid: p, .. } if p == pid
    ));
    assert!(matches!(
        refused(sup.delete_child("b").wait()),
        SupervisorError::ChildRunning { .. }
    ));
    sup.terminate_child("b").wait().unwrap();
    assert!(matches!(
        refused(sup.start_child(child(&log, "b", &["serve"])).wait()),
        SupervisorError::AlreadyPresent { .. }
    ));
    let info = &sup.which_children().wait().unwrap()[1];
    assert_eq!(
        (info.id.as_str(), info.pid, info.status, info.child_type),
        ("b", None, ChildStatus::Stopped, ChildType::Worker)
    );
    let new_pid = sup.restart_child("b").wait().unwrap();
    assert!(new_pid.is_some() && new_pid != pid);
    assert!(matches!(
        refused(sup.restart_child("b").wait()),
        SupervisorError::ChildRunning { .. }
    ));
    sup.terminate_child("b").wait().unwrap();
    sup.delete_child("b").wait().unwrap();
    assert!(matches!(
        refused(sup.terminate_child("b").wait()),
        SupervisorError::ChildNotFound { .. }
    ));
    assert!(matches!(
        refused(sup.kill_child("nope").wait()),
        SupervisorError::ChildNotFound { .. }
    ));
    assert!(matches!(
        refused(sup.start_child_with(()).wait()),
        SupervisorError::NotSimpleOneForOne {
            strategy: Strategy::OneForOne,
            ..
        }
    ));
    assert_eq!(sup.count_children().wait().unwrap().specs, 1);
    sup.stop();
    assert_eq!(
        lines(&log),
        [
            "start a", "start b", "stop b", "start b", "stop b", "stop a"
        ]
    );
    assert_eq!(
        tags(&events.collect::<Vec<_>>()),
        [
            "started top:a",
            "started top:b",
            "exited top:b",
            "started top:b",
            "exited top:b",
            "exited top:a",
            "supervisor-exited top",
        ]
    );
}

#[test]
fn dropping_the_last_handle_stops_the_supervisor() {
    let dir = TempDir::new("drop");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "b", &["serve"]));
    let (sup, events) = Supervisor::start_with_events(spec).unwrap();
    let clone = sup.clone();
    drop(sup);
    assert!(clone.is_alive(), "a clone keeps it running");
    drop(clone);
    assert_eq!(lines_with(&log, "stop "), ["b", "a"]);
    assert_eq!(
        tags(&events.collect::<Vec<_>>()),
        [
            "started supervisor:a",
            "started supervisor:b",
            "exited supervisor:b",
            "exited supervisor:a",
            "supervisor-exited supervisor",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_api_works_inside_a_tokio_runtime() {
    let dir = TempDir::new("async");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .name("top")
        .child(child(&log, "a", &["serve"]))
        .child(child(&log, "b", &["serve"]));
    let (sup, events) = Supervisor::start_with_events_async(spec).await.unwrap();
    sup.start_child(child(&log, "c", &["serve"])).await.unwrap();
    sup.kill_child("b").await.unwrap();
    events
        .wait_for_async(|e| e.is_restart_of("c"), GENEROUS)
        .await
        .unwrap();
    assert_eq!(sup.which_children().await.unwrap().len(), 3);
    assert_eq!(sup.count_children().await.unwrap().active, 3);
    sup.terminate_child("c").await.unwrap();
    sup.restart_child("c").await.unwrap();
    sup.terminate_child("c").await.unwrap();
    sup.delete_child("c").await.unwrap();
    sup.stop_async().await;
    assert_eq!(sup.wait_async().await, Exit::Code(0));
    // The blocking API works here too (it does not need the caller's runtime).
    assert!(sup.which_children().wait().is_err());
    while let Some(e) = events.recv_async().await {
        let _ = e;
    }
}

fn jobs(restart: Restart) -> SupervisorSpec {
    let template = ChildSpec::template("job", actor)
        .wait_ready(GENEROUS)
        .shutdown(procvisor::supervisor::Shutdown::Timeout(GRACE))
        .restart(restart);
    SupervisorSpec::new(Strategy::SimpleOneForOne)
        .name("jobs")
        .intensity(Intensity::new(10, Duration::from_secs(60)))
        .child(template)
}

#[test]
fn a_simple_one_for_one_supervisor_counts_its_one_template_spec() {
    let dir = TempDir::new("count-simple");
    let log = dir.file("log");
    let sup = Supervisor::start(jobs(Restart::Permanent)).unwrap();
    // OTP's count_children: `specs` is 1 (the template) however many children run.
    assert_eq!(
        sup.count_children().wait().unwrap(),
        ChildCounts {
            specs: 1,
            active: 0,
            supervisors: 0,
            workers: 0
        }
    );
    for id in ["a", "b"] {
        sup.start_child_with((log.clone(), id.to_string(), script(&["serve"])))
            .wait()
            .unwrap();
    }
    assert_eq!(
        sup.count_children().wait().unwrap(),
        ChildCounts {
            specs: 1,
            active: 2,
            supervisors: 0,
            workers: 2
        }
    );
    sup.stop();
}

#[test]
fn terminating_a_dynamic_child_that_already_exited_is_ok() {
    let dir = TempDir::new("terminate-gone");
    let log = dir.file("log");
    for restart in [Restart::Temporary, Restart::Transient] {
        let (sup, events) = Supervisor::start_with_events(jobs(restart)).unwrap();
        let (gone, _) = sup
            .start_child_with((log.clone(), "quick".to_string(), script(&["exit:0"])))
            .wait()
            .unwrap();
        let (alive, _) = sup
            .start_child_with((log.clone(), "slow".to_string(), script(&["serve"])))
            .wait()
            .unwrap();
        // The first exits on its own and is forgotten (OTP: terminating a dead dynamic
        // child is ok), twice over; the second is terminated, then terminated again.
        events.wait_for(|e| e.is_exit_of(&gone), GENEROUS).unwrap();
        sup.terminate_child(&gone).wait().unwrap();
        sup.terminate_child(&gone).wait().unwrap();
        sup.terminate_child(&alive).wait().unwrap();
        sup.terminate_child(&alive).wait().unwrap();
        assert!(sup.which_children().wait().unwrap().is_empty());
        // An id this supervisor never gave out is still unknown.
        for never in ["job-3", "job-0", "job", "job-x", "other-1", "job-01"] {
            assert!(
                matches!(
                    refused(sup.terminate_child(never).wait()),
                    SupervisorError::ChildNotFound { .. }
                ),
                "{never}"
            );
        }
        sup.stop();
    }
}

#[test]
fn a_dynamic_child_that_declines_is_not_kept() {
    let dir = TempDir::new("ignore-dynamic");
    let log = dir.file("log");
    let (sup, events) = Supervisor::start_with_events(jobs(Restart::Permanent)).unwrap();
    let (id, pid) = sup
        .start_child_with((log.clone(), "no".to_string(), script(&["decline"])))
        .wait()
        .unwrap();
    assert_eq!((id.as_str(), pid), ("job-1", None));
    assert_eq!(tags(&events.drain()), ["ignored jobs:job-1"]);
    assert!(sup.which_children().wait().unwrap().is_empty());
    // Its id was given out: terminating it is a no-op, as for any dynamic child gone.
    sup.terminate_child(&id).wait().unwrap();
    sup.stop();
}

#[test]
fn a_running_childs_spec_can_be_read_and_started_again() {
    let dir = TempDir::new("child-spec");
    let log = dir.file("log");
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .child(child(&log, "a", &["serve"]).restart(Restart::Transient));
    let sup = Supervisor::start(spec).unwrap();
    let a = sup.child_spec("a").wait().unwrap();
    assert_eq!(a.id(), "a");
    let shown = format!("{a:?}");
    assert!(
        shown.contains("Transient") && shown.contains("300ms"),
        "{shown}"
    );
    assert!(matches!(
        sup.child_spec("nope").wait(),
        Err(SupervisorError::ChildNotFound { .. })
    ));
    // The spec read back starts the child the same way: here, and in another supervisor.
    sup.terminate_child("a").wait().unwrap();
    sup.delete_child("a").wait().unwrap();
    sup.start_child(a.clone()).wait().unwrap();
    let other = Supervisor::start(SupervisorSpec::new(Strategy::OneForOne).name("other")).unwrap();
    other.start_child(a).wait().unwrap();
    assert_eq!(lines_with(&log, "start "), ["a", "a", "a"]);
    other.stop();
    sup.stop();

    // A dynamic child's spec is its supervisor's template.
    let jobs = Supervisor::start(jobs(Restart::Temporary)).unwrap();
    let (id, _) = jobs
        .start_child_with((log.clone(), "j".to_string(), script(&["serve"])))
        .wait()
        .unwrap();
    assert_eq!(jobs.child_spec(&id).wait().unwrap().id(), "job");
    assert_eq!(jobs.child_spec("job").wait().unwrap().id(), "job");
    assert!(jobs.child_spec("job-9").wait().is_err());
    jobs.stop();
}
