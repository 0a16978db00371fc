//! Misuse is reported as an `Error` (never a panic or a hang): starting twice, joining before
//! start or oneself, late settings, signalling a non-child, daemonic parents, arguments that
//! cannot be encoded or decoded.

procvisor::test_init!();

mod common;

use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, TempDir, read, write_atomic};
use procvisor::{
    Error, Process, Run, StartMethod, current_process, parent_process, set_start_method,
    start_method,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[test]
fn start_twice_is_already_started() {
    let p = Process::new(|| (), ()).start().unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    let pid = p.pid();
    match p.start() {
        Err(Error::AlreadyStarted { name }) => assert_eq!(name, p.name()),
        other => panic!("expected AlreadyStarted, got {other:?}"),
    }
    // A clone is the same process.
    assert!(matches!(
        p.clone().start(),
        Err(Error::AlreadyStarted { .. })
    ));
    p.join().unwrap();
    assert!(matches!(p.start(), Err(Error::AlreadyStarted { .. })));
    assert_eq!(p.pid(), pid, "the failed starts changed nothing");
    assert_eq!(p.exitcode(), Some(0));
    let text = p.start().unwrap_err().to_string();
    assert!(text.contains("cannot start a process twice"), "{text}");
}

#[test]
fn calls_before_start_are_not_started() {
    let p = Process::new(|| (), ());
    for (what, result) in [
        ("join", p.join()),
        (
            "join with timeout",
            p.join_timeout(Duration::from_millis(1)),
        ),
        ("terminate", p.terminate()),
        ("kill", p.kill()),
        ("stop", p.stop(Duration::from_millis(1))),
    ] {
        match result {
            Err(Error::NotStarted { name }) => assert_eq!(name, p.name(), "{what}"),
            other => panic!("{what} before start: expected NotStarted, got {other:?}"),
        }
    }
    assert_eq!(p.pid(), None);
    assert!(!p.is_alive());
}

#[test]
fn joining_oneself_is_refused() {
    match current_process().join() {
        Err(Error::JoinSelf { name }) => assert_eq!(name, "MainProcess"),
        other => panic!("expected JoinSelf, got {other:?}"),
    }
    assert!(matches!(
        current_process().join_timeout(Duration::from_millis(1)),
        Err(Error::JoinSelf { .. })
    ));
}

#[test]
fn signalling_the_current_process_is_not_a_child() {
    let me = current_process();
    for (what, result) in [
        ("terminate", me.terminate()),
        ("kill", me.kill()),
        ("stop", me.stop(Duration::from_millis(1))),
    ] {
        match result {
            Err(Error::NotAChild { name, .. }) => assert_eq!(name, "MainProcess", "{what}"),
            other => panic!("{what} on current_process(): expected NotAChild, got {other:?}"),
        }
    }
    assert!(me.is_alive(), "we are still here");
}

/// Child: tries to terminate and join its parent; reports the errors.
fn poke_parent(out: String) {
    let parent = parent_process().unwrap();
    let terminate = parent.terminate();
    let join = parent.join_timeout(Duration::from_millis(1));
    let report = format!(
        "{}|{}",
        matches!(terminate, Err(Error::NotAChild { .. })),
        matches!(join, Err(Error::NotAChild { .. }))
    );
    write_atomic(&out, &report);
}

#[test]
fn a_child_cannot_signal_its_parent() {
    let dir = TempDir::new("poke-parent");
    let out = dir.file("out");
    let p = Process::new(poke_parent, (out.clone(),)).start().unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.join_timeout(GENEROUS).unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(read(&out), "true|true");
}

#[test]
fn settings_after_start_are_already_running() {
    let p = Process::new(|| (), ()).start().unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    match p.set_daemon(true) {
        Err(Error::AlreadyRunning { name, .. }) => assert_eq!(name, p.name()),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    assert!(!p.daemon(), "the flag did not change");
    assert!(matches!(
        p.clone().with_daemon(true),
        Err(Error::AlreadyRunning { .. })
    ));
    assert!(matches!(
        p.set_authkey(vec![1u8; 32]),
        Err(Error::AlreadyRunning { .. })
    ));
    assert!(matches!(
        p.clone().start_method(StartMethod::Spawn),
        Err(Error::AlreadyRunning { .. })
    ));
    let text = p.set_daemon(false).unwrap_err().to_string();
    assert!(text.contains("already started"), "{text}");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

/// Child (daemonic): tries to start a child of its own; exits 3 if refused with
/// `DaemonicParent`, and reports the error text.
fn daemon_starts_a_child(out: String, explicit_non_daemon: bool) {
    let mut child = Process::new(|| (), ());
    if explicit_non_daemon {
        child = child.daemon(false);
    }
    let code = match child.start() {
        Err(Error::DaemonicParent { parent }) => {
            write_atomic(
                &out,
                &format!(
                    "{parent}|{}",
                    Error::DaemonicParent {
                        parent: parent.clone()
                    }
                ),
            );
            3
        }
        Err(e) => {
            write_atomic(&out, &format!("wrong error: {e:?}"));
            4
        }
        Ok(()) => {
            let _ = child.join();
            write_atomic(&out, "the child started");
            5
        }
    };
    std::process::exit(code)
}

#[test]
fn a_daemonic_process_may_not_have_children() {
    for explicit_non_daemon in [false, true] {
        let dir = TempDir::new("daemonic-parent");
        let out = dir.file("out");
        let p = Process::new(daemon_starts_a_child, (out.clone(), explicit_non_daemon))
            .with_daemon(true)
            .unwrap()
            .start()
            .unwrap()
            .start()
            .unwrap();
        let mut guard = KillOnDrop::new();
        guard.add(&p);
        p.join_timeout(GENEROUS).unwrap();
        let report = read(&out);
        assert_eq!(p.exitcode(), Some(3), "{report}");
        let (parent, text) = report.split_once('|').unwrap();
        assert_eq!(parent, p.name());
        assert!(
            text.contains("daemonic processes are not allowed to have children"),
            "{text}"
        );
    }
}

// ---- arguments that cannot cross ---------------------------------------------------------

/// Encodes fine, never decodes.
#[derive(Debug)]
struct Undecodable;

impl Serialize for Undecodable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(1)
    }
}

impl<'de> Deserialize<'de> for Undecodable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom("Undecodable refuses to decode"))
    }
}

fn takes_undecodable(_: Undecodable) {
    unreachable!("the target must not run");
}

fn assert_bootstrap_failure(p: &Process) {
    let mut guard = KillOnDrop::new();
    guard.add(p);
    let t = Instant::now();
    let joined = p.join_timeout(GENEROUS);
    assert!(t.elapsed() < GENEROUS, "join hung");
    match joined {
        Err(Error::Bootstrap { name, reason }) => {
            assert_eq!(name, p.name());
            assert!(
                reason.contains("Undecodable refuses to decode"),
                "the reason says why: {reason}"
            );
        }
        other => panic!("expected a Bootstrap error, got {other:?} ({p})"),
    }
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), Some(255));
    // Joining again reports the same failure.
    assert!(matches!(p.join(), Err(Error::Bootstrap { .. })));
}

#[test]
fn undecodable_arguments_are_a_bootstrap_error() {
    assert_bootstrap_failure(&Process::new(takes_undecodable, (Undecodable,)));
}

#[derive(Serialize, Deserialize)]
struct RunWithUndecodable {
    field: Undecodable,
}

impl Run for RunWithUndecodable {
    type Output = ();
    fn run(self) {
        unreachable!("the target must not run");
    }
}

#[test]
fn undecodable_run_value_is_a_bootstrap_error() {
    assert_bootstrap_failure(&Process::from_run(RunWithUndecodable {
        field: Undecodable,
    }));
}

/// Never encodes.
#[derive(Debug)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses to encode"))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d).map(|_| Unencodable)
    }
}

#[test]
fn unencodable_arguments_are_an_encode_error() {
    let p = Process::new(|_: Unencodable| (), (Unencodable,));
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    match p.start() {
        Err(Error::Encode { what, reason }) => {
            assert!(what.contains(&p.name()), "{what}");
            assert!(reason.contains("Unencodable refuses to encode"), "{reason}");
        }
        other => panic!("expected an Encode error, got {other:?}"),
    }
    assert_eq!(p.pid(), None, "nothing was started");
    assert!(!p.is_alive());
    assert!(matches!(p.join(), Err(Error::NotStarted { .. })));
}

#[test]
fn start_method_is_set_once_unless_forced() {
    // Spawn is the default, so setting it cannot disturb the other tests of this crate.
    assert_eq!(start_method(), StartMethod::Spawn);
    set_start_method(StartMethod::Spawn).unwrap();
    match set_start_method(StartMethod::Spawn) {
        Err(Error::StartMethodAlreadySet { current }) => {
            assert_eq!(current, StartMethod::Spawn)
        }
        other => panic!("expected StartMethodAlreadySet, got {other:?}"),
    }
    force_start_method(StartMethod::Spawn);
    assert_eq!(start_method(), StartMethod::Spawn);
    assert_eq!("fork".parse::<StartMethod>(), Ok(StartMethod::Fork));
    assert_eq!("spawn".parse::<StartMethod>(), Ok(StartMethod::Spawn));
    assert!("threads".parse::<StartMethod>().is_err());
    assert_eq!(StartMethod::Fork.to_string(), "fork");
}
