//! Errors that remain possible are reported as typed errors (never a panic or a hang):
//! daemonic parents, arguments that cannot be encoded or decoded, a start method chosen twice.
//! The misuse the old API reported at run time (starting twice, joining before start or
//! oneself, late settings, signalling a non-child) no longer compiles: see the `compile_fail`
//! examples in `src/process.rs`.

procvisor::test_init!();

mod common;

use std::time::Instant;

use common::{GENEROUS, KillOnDrop, TempDir, per_start_method, read, start, write_atomic};
use procvisor::error::{JoinError, StartError, StartMethodAlreadySet};
use procvisor::{
    Error, Process, Run, StartMethod, force_start_method, set_start_method, start_method,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Child (daemonic): tries to start a child of its own; exits 3 if refused with
/// `DaemonicParent`, and reports the error text.
fn daemon_starts_a_child(out: String, explicit_non_daemon: bool) {
    let mut child = Process::new(|| (), ());
    if explicit_non_daemon {
        child = child.daemon(false);
    }
    let code = match child.start() {
        Err(StartError::DaemonicParent { parent }) => {
            let text = StartError::DaemonicParent {
                parent: parent.clone(),
            }
            .to_string();
            // `?` in a target returning procvisor::Result keeps the cause.
            let general = Error::from(StartError::DaemonicParent {
                parent: parent.clone(),
            });
            let wrapped = matches!(general, Error::Start(StartError::DaemonicParent { .. }));
            write_atomic(&out, &format!("{parent}|{wrapped}|{text}"));
            3
        }
        Err(e) => {
            write_atomic(&out, &format!("wrong error: {e:?}"));
            4
        }
        Ok(child) => {
            let _ = child.join();
            write_atomic(&out, "the child started");
            5
        }
    };
    std::process::exit(code)
}

per_start_method! {
    fn a_daemonic_process_may_not_have_children(method: StartMethod) {
        for explicit_non_daemon in [false, true] {
            let dir = TempDir::new("daemonic-parent");
            let out = dir.file("out");
            let mut guard = KillOnDrop::new();
            let p = start(
                &mut guard,
                Process::new(daemon_starts_a_child, (out.clone(), explicit_non_daemon))
                    .daemon(true)
                    .start_method(method),
            );
            p.join_timeout(GENEROUS).unwrap();
            let report = read(&out);
            assert_eq!(p.exitcode(), Some(3), "{report}");
            let mut fields = report.splitn(3, '|');
            let (parent, wrapped, text) = (
                fields.next().unwrap(),
                fields.next().unwrap(),
                fields.next().unwrap(),
            );
            assert_eq!(parent, p.name());
            assert_eq!(wrapped, "true", "{report}");
            assert!(
                text.contains("daemonic processes are not allowed to have children"),
                "{text}"
            );
        }
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

/// Starts `p` with `method` and checks that joining it reports its failed bootstrap.
fn assert_bootstrap_failure(method: StartMethod, p: Process) {
    let mut guard = KillOnDrop::new();
    let p = start(&mut guard, p.start_method(method));
    let t = Instant::now();
    let joined = p.join_timeout(GENEROUS);
    assert!(t.elapsed() < GENEROUS, "join hung");
    match joined {
        Err(JoinError::Bootstrap { name, reason }) => {
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
    assert!(matches!(p.join(), Err(JoinError::Bootstrap { .. })));
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

per_start_method! {
    fn undecodable_arguments_are_a_bootstrap_error(method: StartMethod) {
        assert_bootstrap_failure(method, Process::new(takes_undecodable, (Undecodable,)));
    }

    fn undecodable_run_value_is_a_bootstrap_error(method: StartMethod) {
        assert_bootstrap_failure(
            method,
            Process::from_run(RunWithUndecodable { field: Undecodable }),
        );
    }

    fn unencodable_arguments_are_an_encode_error(method: StartMethod) {
        let p = Process::new(|_: Unencodable| (), (Unencodable,))
            .name("unencodable")
            .start_method(method);
        // An error, so no `Child`: nothing was started that could be joined or signalled.
        match p.start() {
            Err(StartError::Encode { name, reason }) => {
                assert_eq!(name, "unencodable");
                assert!(reason.contains("Unencodable refuses to encode"), "{reason}");
            }
            Err(other) => panic!("expected an Encode error, got {other:?}"),
            Ok(child) => {
                let _ = child.kill();
                panic!("the child started: {child}");
            }
        }
    }
}

#[test]
fn start_method_is_set_once_unless_forced() {
    // Spawn is the default, and every other test of this crate gives each process its method,
    // so setting it cannot disturb them.
    assert_eq!(start_method(), StartMethod::Spawn);
    set_start_method(StartMethod::Spawn).unwrap();
    match set_start_method(StartMethod::Spawn) {
        Err(StartMethodAlreadySet { current }) => assert_eq!(current, StartMethod::Spawn),
        other => panic!("expected StartMethodAlreadySet, got {other:?}"),
    }
    let e = set_start_method(StartMethod::Fork).unwrap_err();
    assert_eq!(
        e.current,
        StartMethod::Spawn,
        "the failed call changed nothing"
    );
    assert!(e.to_string().contains("force_start_method"), "{e}");
    assert!(matches!(Error::from(e), Error::StartMethod(_)));
    force_start_method(StartMethod::Spawn);
    assert_eq!(start_method(), StartMethod::Spawn);
    assert_eq!("fork".parse::<StartMethod>(), Ok(StartMethod::Fork));
    assert_eq!("spawn".parse::<StartMethod>(), Ok(StartMethod::Spawn));
    assert!("threads".parse::<StartMethod>().is_err());
    assert_eq!(StartMethod::Fork.to_string(), "fork");
}
