//! A supervisor still running when its process exits normally is stopped by the exit sequence
//! (newest first), so the exit does not wait forever for children it would keep restarting.

procvisor::test_init!();

mod common;

use std::time::Duration;

use common::{GENEROUS, PidsGuard, in_driver, pid_is_running, say, spawn_driver, wait_until};
use procvisor::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};

/// Serves until asked to stop.
fn service() {
    while !procvisor::wait_for_stop(Some(Duration::from_secs(60))) {}
}

#[test]
#[ignore = "driver: run by leaked_supervisor_is_stopped_at_exit"]
fn driver_leaked_supervisor() {
    if !in_driver() {
        return;
    }
    let spec = SupervisorSpec::new(Strategy::OneForOne).child(
        ChildSpec::worker("svc", service, ()).shutdown(procvisor::supervisor::Shutdown::Timeout(
            Duration::from_secs(5),
        )),
    );
    let sup = Supervisor::start(spec).unwrap();
    let pid = sup.which_children().wait().unwrap()[0].pid.unwrap();
    say(format!("WORKER {pid}"));
    // Leaked: no drop, no stop. The exit sequence must stop it.
    std::mem::forget(sup);
    say("RETURNING");
}

#[test]
fn leaked_supervisor_is_stopped_at_exit() {
    let mut driver = spawn_driver("driver_leaked_supervisor", None);
    let worker: i32 = driver.expect_line("WORKER ", GENEROUS).parse().unwrap();
    let _pids = PidsGuard(vec![worker]);
    driver.expect_line("RETURNING", GENEROUS);
    let status = driver.guard.wait_timeout(GENEROUS);
    assert!(
        status.is_some_and(|s| s.success()),
        "the driver did not exit cleanly: {status:?}"
    );
    assert!(
        wait_until(GENEROUS, || !pid_is_running(worker)),
        "the supervised worker outlived its program"
    );
}
