//! Supervision trees across processes: a supervisor in its own OS process, its events reaching
//! the top, escalation through it, and killing a subtree's process (or the whole supervisor
//! process) taking every descendant down.

procvisor::test_init!();

mod common;
mod supervisor_common;

use std::path::Path;
use std::time::Duration;

use common::{
    GENEROUS, KillOnDrop, PidsGuard, TempDir, pid_is_running, read, wait_until, write_atomic,
};
use procvisor::Process;
use procvisor::supervisor::{
    ChildSpec, ChildType, Event, Exit, Intensity, Strategy, Supervisor, SupervisorSpec,
};
use supervisor_common::{child, exit_of, lines_with, tags, tags_of};

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

/// The nested supervisor, built in its own process.
fn subtree(log: String, leaf_script: Vec<String>) -> SupervisorSpec {
    let script: Vec<&str> = leaf_script.iter().map(String::as_str).collect();
    SupervisorSpec::new(Strategy::OneForOne)
        .intensity(Intensity::new(1, MINUTE))
        .child(child(&log, "x", &["serve"]))
        .child(child(&log, "y", &script))
}

fn top(log: &str, leaf_script: &[&str]) -> SupervisorSpec {
    let script: Vec<String> = leaf_script.iter().map(|s| s.to_string()).collect();
    SupervisorSpec::new(Strategy::OneForOne)
        .name("top")
        .intensity(Intensity::new(1, MINUTE))
        .child(child(log, "w", &["serve"]))
        .child(ChildSpec::supervisor_process(
            "sub",
            subtree,
            (log.to_string(), script),
        ))
}

fn started_pid(events: &[Event], tag: &str) -> i32 {
    events
        .iter()
        .find(|e| {
            e.tag() == tag && matches!(e, Event::ChildStarted { .. } | Event::ChildRestarted { .. })
        })
        .and_then(Event::pid)
        .unwrap_or_else(|| panic!("no {tag} in {:?}", tags(events)))
}

#[test]
fn a_supervisor_in_its_own_process_reports_its_subtree() {
    let dir = TempDir::new("remote");
    let log = dir.file("log");
    let (sup, events) = Supervisor::start_with_events(top(&log, &["serve"])).unwrap();
    let seen = events.drain();
    assert_eq!(
        tags(&seen),
        [
            "started top:w",
            "started top/sub:x",
            "started top/sub:y",
            "started top:sub",
        ]
    );
    let sub = started_pid(&seen, "started top:sub");
    assert_ne!(sub, std::process::id() as i32);
    assert_eq!(ppid(started_pid(&seen, "started top/sub:x")), Some(sub));
    assert_eq!(ppid(started_pid(&seen, "started top/sub:y")), Some(sub));
    let info = sup.which_children().unwrap();
    assert_eq!(
        (info[1].child_type, info[1].pid),
        (ChildType::Supervisor, Some(sub))
    );

    sup.stop();
    let seen: Vec<Event> = events.collect();
    assert_eq!(
        tags(&seen),
        [
            "exited top/sub:y",
            "exited top/sub:x",
            "supervisor-exited top/sub",
            "exited top:sub",
            "exited top:w",
            "supervisor-exited top",
        ]
    );
    assert_eq!(exit_of(&seen, "sub"), Exit::Code(0));
    assert_eq!(lines_with(&log, "stop "), ["y", "x", "w"]);
}

#[test]
fn escalation_through_a_supervisor_process() {
    let dir = TempDir::new("remote-escalation");
    let log = dir.file("log");
    let (sup, events) = Supervisor::start_with_events(top(&log, &["exit:1"])).unwrap();
    assert!(matches!(sup.wait(Some(GENEROUS)), Some(Exit::Failed(_))));
    let seen: Vec<Event> = events.collect();
    let chain = tags_of(&seen, |e| {
        matches!(e, Event::GaveUp { .. } | Event::SupervisorExited { .. })
            || e.child_id() == Some("sub")
    });
    assert_eq!(
        chain,
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
    assert!(matches!(exit_of(&seen, "sub"), Exit::Failed(r) if r.contains("restart intensity")));
}

#[test]
fn killing_a_subtree_process_kills_its_descendants_and_counts_as_a_crash() {
    let dir = TempDir::new("remote-kill");
    let log = dir.file("log");
    let (sup, events) = Supervisor::start_with_events(top(&log, &["serve"])).unwrap();
    let seen = events.drain();
    let old = [
        started_pid(&seen, "started top/sub:x"),
        started_pid(&seen, "started top/sub:y"),
    ];
    sup.kill_child("sub").unwrap();
    let seen = events.wait_restarts("sub", 1, GENEROUS).unwrap();
    assert_eq!(exit_of(&seen, "sub"), Exit::Signal(libc::SIGKILL));
    assert!(wait_until(GENEROUS, || old
        .iter()
        .all(|p| !pid_is_running(*p))));
    assert_eq!(
        tags(&seen),
        [
            "exited top:sub",
            "started top/sub:x",
            "started top/sub:y",
            "restarted top:sub",
        ]
    );
    sup.stop();
}

/// A whole supervision tree in a child process; reports every pid in it, then serves.
fn tree_main(log: String, pids: String) {
    let (sup, events) = Supervisor::start_with_events(top(&log, &["serve"])).unwrap();
    let all: Vec<String> = events
        .drain()
        .iter()
        .filter_map(Event::pid)
        .map(|p| p.to_string())
        .collect();
    write_atomic(&pids, &all.join(" "));
    sup.wait(None);
}

#[test]
fn a_sigkilled_supervisor_process_leaves_no_descendant_running() {
    let dir = TempDir::new("sigkill-tree");
    let log = dir.file("log");
    let pids_file = dir.file("pids");
    let p = Process::new(tree_main, (log, pids_file.clone()))
        .start()
        .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    assert!(common::wait_for_file(Path::new(&pids_file)));
    let pids: Vec<i32> = read(&pids_file)
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let _cleanup = PidsGuard(pids.clone());
    assert_eq!(pids.len(), 4, "w, x, y and the sub supervisor: {pids:?}");
    assert!(pids.iter().all(|p| pid_is_running(*p)));

    p.kill().unwrap();
    p.join_timeout(GENEROUS).unwrap();
    assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
    assert!(
        wait_until(GENEROUS, || pids.iter().all(|p| !pid_is_running(*p))),
        "survivors: {:?}",
        pids.iter()
            .filter(|p| pid_is_running(**p))
            .collect::<Vec<_>>()
    );
}
