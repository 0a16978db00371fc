//! A process's life: join with a timeout, terminate / kill, many children, reaping (no
//! zombies), `active_children()`, graceful stop with escalation — under both start methods.

procvisor::test_init!();

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    GENEROUS, KillOnDrop, PidsGuard, TempDir, per_start_method, pid_state, read, start, wait_until,
    write_atomic,
};
use procvisor::{
    Child, ExitStatus, Process, StartMethod, active_children, stop_requested, wait_for_stop,
};

/// Child: reports readiness (its pid, in `ready`), then sleeps until it is signalled.
fn sleep_forever(ready: String) {
    write_atomic(&ready, &std::process::id().to_string());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Child: waits until `go` exists, then exits 0.
fn wait_for_go(go: String) {
    assert!(common::wait_for_file(Path::new(&go)));
}

/// Starts `p` under `guard` and waits until it has written `ready`.
fn started_and_ready(guard: &mut KillOnDrop, p: Process, ready: &str) -> Child {
    let p = start(guard, p);
    assert!(
        common::wait_for_file(Path::new(ready)),
        "{p} never became ready"
    );
    p
}

per_start_method! {
    fn join_with_timeout_then_terminate(method: StartMethod) {
        let dir = TempDir::new("join-timeout");
        let ready = dir.file("ready");
        let mut guard = KillOnDrop::new();
        let p = started_and_ready(
            &mut guard,
            Process::new(sleep_forever, (ready.clone(),)).start_method(method),
            &ready,
        );
        let name = p.name();

        let timeout = Duration::from_millis(300);
        let t = Instant::now();
        assert_eq!(p.join_timeout(timeout).unwrap(), None);
        let waited = t.elapsed();
        assert!(waited >= timeout, "join returned after {waited:?}");
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert_eq!(p.to_string(), format!("<Process({name}, started)>"));

        p.terminate().unwrap();
        assert_eq!(
            p.join_timeout(GENEROUS).unwrap(),
            Some(ExitStatus::Signaled(libc::SIGTERM))
        );
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(-libc::SIGTERM));
        assert_eq!(
            p.to_string(),
            format!("<Process({name}, stopped[SIGTERM])>")
        );
        // Signalling a process that has exited is harmless.
        p.terminate().unwrap();
        p.kill().unwrap();
        assert_eq!(p.exitcode(), Some(-15));
    }

    fn kill_gives_minus_nine(method: StartMethod) {
        let dir = TempDir::new("kill");
        let ready = dir.file("ready");
        let mut guard = KillOnDrop::new();
        let p = started_and_ready(
            &mut guard,
            Process::new(sleep_forever, (ready.clone(),)).start_method(method),
            &ready,
        );
        let name = p.name();
        p.kill().unwrap();
        p.join_timeout(GENEROUS).unwrap();
        assert_eq!(p.exitcode(), Some(-9));
        assert_eq!(
            p.to_string(),
            format!("<Process({name}, stopped[SIGKILL])>")
        );
    }

    fn is_alive_turns_false_as_soon_as_the_child_has_exited(method: StartMethod) {
        let dir = TempDir::new("alive");
        let go = dir.file("go");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(wait_for_go, (go.clone(),)).start_method(method),
        );
        assert!(p.is_alive());
        write_atomic(&go, "");
        assert!(wait_until(GENEROUS, || !p.is_alive()));
        assert_eq!(p.exitcode(), Some(0));
    }

    fn display_shows_a_nonzero_exit_code(method: StartMethod) {
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(|| Err::<(), _>("failed on purpose"), ()).start_method(method),
        );
        let name = p.name();
        assert_eq!(p.join().unwrap(), ExitStatus::Exited(1));
        assert_eq!(p.exitcode(), Some(1));
        assert_eq!(p.to_string(), format!("<Process({name}, stopped[1])>"));
    }
}

/// Child: starts a grandchild that reports its pid, then sleeps until signalled.
fn parent_of_sleeper(grand_ready: String, ready: String) -> procvisor::Result<()> {
    let _g = Process::new(sleep_forever, (grand_ready,)).start()?;
    sleep_forever(ready);
    Ok(())
}

per_start_method! {
    fn terminating_a_child_takes_its_children_down(method: StartMethod) {
        let dir = TempDir::new("terminate-tree");
        let (grand_ready, ready) = (dir.file("grand"), dir.file("ready"));
        let mut guard = KillOnDrop::new();
        let p = started_and_ready(
            &mut guard,
            Process::new(parent_of_sleeper, (grand_ready.clone(), ready.clone()))
                .start_method(method),
            &ready,
        );
        assert!(common::wait_for_file(Path::new(&grand_ready)));
        let grandchild: i32 = read(&grand_ready).parse().unwrap();
        let _pids = PidsGuard(vec![grandchild]);
        assert!(common::pid_is_running(grandchild));

        p.terminate().unwrap();
        p.join_timeout(GENEROUS).unwrap();
        assert_eq!(p.exitcode(), Some(-15));
        assert!(
            wait_until(GENEROUS, || !common::pid_is_running(grandchild)),
            "the grandchild {grandchild} outlived its terminated parent"
        );
    }

    fn several_threads_join_the_same_process(method: StartMethod) {
        let dir = TempDir::new("multi-join");
        let go = dir.file("go");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(wait_for_go, (go.clone(),)).start_method(method),
        );
        let joiners: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    p.join_timeout(GENEROUS).unwrap();
                    p.exitcode()
                })
            })
            .collect();
        write_atomic(&go, "");
        for j in joiners {
            assert_eq!(j.join().unwrap(), Some(0));
        }
    }

    fn a_child_started_from_a_short_lived_thread_outlives_the_thread(method: StartMethod) {
        // PR_SET_PDEATHSIG fires when the *thread* that forked the child exits; the child must
        // survive the end of the thread that called start().
        let dir = TempDir::new("thread-start");
        let go = dir.file("go");
        let mut guard = KillOnDrop::new();
        let process = Process::new(wait_for_go, (go.clone(),)).start_method(method);
        let p = std::thread::spawn(move || process.start().unwrap())
            .join()
            .unwrap();
        guard.add(&p);
        assert!(p.is_alive());
        write_atomic(&go, "");
        p.join_timeout(GENEROUS).unwrap();
        assert_eq!(p.exitcode(), Some(0), "{p}");
    }

    fn renaming_a_started_process(method: StartMethod) {
        let dir = TempDir::new("rename");
        let go = dir.file("go");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(wait_for_go, (go.clone(),)).start_method(method),
        );
        p.set_name("renamed-while-running");
        assert_eq!(p.name(), "renamed-while-running");
        assert_eq!(p.to_string(), "<Process(renamed-while-running, started)>");
        let listed = active_children()
            .into_iter()
            .find(|c| c.pid() == p.pid())
            .expect("the child is active");
        assert_eq!(listed.name(), "renamed-while-running");
        write_atomic(&go, "");
        p.join_timeout(GENEROUS).unwrap();
        assert_eq!(p.to_string(), "<Process(renamed-while-running, stopped)>");
    }
}

#[test]
fn wait_for_stop_times_out_when_nobody_asks() {
    let t = Instant::now();
    assert!(!wait_for_stop(Some(Duration::from_millis(50))));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(!stop_requested());
}

per_start_method! {
    fn a_hundred_short_children(method: StartMethod) {
        let mut guard = KillOnDrop::new();
        let t = Instant::now();
        // Very short children: each may exit before its parent has even heard it was started.
        let ps: Vec<Child> = (0..100u32)
            .map(|i| {
                start(
                    &mut guard,
                    Process::new(|i: u32| assert!(i < 100), (i,)).start_method(method),
                )
            })
            .collect();
        for p in &ps {
            p.join_timeout(GENEROUS).unwrap();
        }
        for p in &ps {
            assert_eq!(p.exitcode(), Some(0), "{p}");
        }
        let mut pids: Vec<i32> = ps.iter().map(Child::pid).collect();
        pids.sort();
        pids.dedup();
        assert_eq!(pids.len(), 100);
        eprintln!(
            "100 {method} children started and joined in {:?}",
            t.elapsed()
        );
    }

    fn joined_children_leave_no_zombies(method: StartMethod) {
        let mut guard = KillOnDrop::new();
        let ps: Vec<Child> = (0..5)
            .map(|_| start(&mut guard, Process::new(|| (), ()).start_method(method)))
            .collect();
        for p in &ps {
            p.join().unwrap();
            assert_eq!(p.exitcode(), Some(0));
        }
        let active: Vec<i32> = active_children().iter().map(Child::pid).collect();
        for p in &ps {
            let pid = p.pid();
            assert!(!active.contains(&pid), "{p} is listed as active");
            // Joined means reaped: the pid is gone (not a zombie).
            assert!(
                wait_until(GENEROUS, || pid_state(pid).is_none()),
                "pid {pid} is still in /proc as {:?}",
                pid_state(pid)
            );
        }
    }

    fn children_are_reaped_without_join(method: StartMethod) {
        let dir = TempDir::new("no-join");
        let mut guard = KillOnDrop::new();
        let ps: Vec<(Child, String)> = (0..5)
            .map(|i| {
                let done = dir.file(&format!("done{i}"));
                let p = Process::new(|done: String| write_atomic(&done, ""), (done.clone(),))
                    .start_method(method);
                (start(&mut guard, p), done)
            })
            .collect();
        for (p, done) in &ps {
            assert!(common::wait_for_file(Path::new(done)));
            let pid = p.pid();
            // Nobody joins: the process supervisor reaps the child soon after it exits (its
            // background reaper batches exits, 20 ms at most).
            assert!(
                wait_until(GENEROUS, || pid_state(pid).is_none()),
                "pid {pid} was not reaped: {:?}",
                pid_state(pid)
            );
            // (That the status is published at the same moment is checked by
            // exit_status_is_known_once_the_pid_is_gone.)
            assert!(wait_until(GENEROUS, || !p.is_alive()));
            assert_eq!(p.exitcode(), Some(0));
        }
    }
}

/// Spins (no sleep, not even a yield, so that a short window is seen) until `pid` has left
/// `/proc`. Bounded by a generous deadline.
fn spin_until_gone(pid: i32) -> bool {
    let end = Instant::now() + GENEROUS;
    while pid_state(pid).is_some() {
        if Instant::now() >= end {
            return false;
        }
    }
    true
}

per_start_method! {
    fn exit_status_is_known_once_the_pid_is_gone(method: StartMethod) {
        // Once a child has been reaped (its pid has left /proc), `is_alive()` must be false and
        // `exitcode()` known: nothing can change any more.
        let mut stale = Vec::new();
        for _ in 0..100 {
            let mut guard = KillOnDrop::new();
            let p = start(&mut guard, Process::new(|| (), ()).start_method(method));
            let pid = p.pid();
            assert!(spin_until_gone(pid), "pid {pid} was never reaped");
            let (alive, code) = (p.is_alive(), p.exitcode());
            if alive || code.is_none() {
                stale.push(format!(
                    "pid {pid}: is_alive() = {alive}, exitcode() = {code:?}"
                ));
            }
            p.join_timeout(GENEROUS).unwrap();
            assert_eq!(p.exitcode(), Some(0));
        }
        assert!(
            stale.is_empty(),
            "{} of 100 reaped children still looked alive:\n{}",
            stale.len(),
            stale.join("\n")
        );
    }

    fn active_children_lists_running_children_only(method: StartMethod) {
        let dir = TempDir::new("active");
        let go = dir.file("go");
        let mut guard = KillOnDrop::new();
        let long = start(
            &mut guard,
            Process::new(wait_for_go, (go.clone(),))
                .name("long-runner")
                .start_method(method),
        );
        let short = start(&mut guard, Process::new(|| (), ()).start_method(method));
        short.join().unwrap();
        let (long_pid, short_pid) = (long.pid(), short.pid());

        let active = active_children();
        let listed: Vec<&Child> = active.iter().filter(|p| p.pid() == long_pid).collect();
        assert_eq!(listed.len(), 1, "{active:?}");
        let handle = listed[0];
        assert_eq!(handle.name(), "long-runner");
        assert!(handle.is_alive());
        assert_eq!(handle.to_string(), "<Process(long-runner, started)>");
        assert!(
            active.iter().all(|p| p.pid() != short_pid),
            "a finished child is listed: {active:?}"
        );
        assert!(
            active.iter().all(Child::is_alive),
            "every listed child is alive: {active:?}"
        );
        // The fork server is a child of ours for the OS, not for procvisor.
        if let Some(server) = common::fork_server_of(std::process::id() as i32) {
            assert!(active.iter().all(|p| p.pid() != server), "{active:?}");
        }

        write_atomic(&go, "");
        // The handle from active_children() is as good as the original for joining.
        handle.join_timeout(GENEROUS).unwrap();
        assert_eq!(handle.exitcode(), Some(0));
        assert_eq!(long.exitcode(), Some(0));
        assert!(active_children().iter().all(|p| p.pid() != long_pid));
    }
}

// ---- graceful stop ----------------------------------------------------------------------

/// Child: works in slices until asked to stop, then exits 0.
fn cooperative(ready: String) -> Result<(), String> {
    write_atomic(&ready, "");
    while !wait_for_stop(Some(Duration::from_millis(50))) {}
    if stop_requested() {
        Ok(())
    } else {
        Err("wait_for_stop returned true but stop_requested() is false".into())
    }
}

/// Child: ignores the stop request.
fn stubborn(ready: String) {
    sleep_forever(ready);
}

/// Child: ignores the stop request and SIGTERM.
fn very_stubborn(ready: String) {
    // SAFETY: installing SIG_IGN for SIGTERM has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    sleep_forever(ready);
}

per_start_method! {
    fn stop_a_cooperative_child(method: StartMethod) {
        let dir = TempDir::new("stop-coop");
        let ready = dir.file("ready");
        let mut guard = KillOnDrop::new();
        let p = started_and_ready(
            &mut guard,
            Process::new(cooperative, (ready.clone(),)).start_method(method),
            &ready,
        );
        let grace = Duration::from_secs(15);
        let t = Instant::now();
        assert_eq!(p.stop(grace), ExitStatus::Exited(0));
        assert!(
            t.elapsed() < grace,
            "the child did not see the stop request"
        );
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(0), "{p}");
        // Stopping a finished process returns at once.
        assert_eq!(p.stop(grace), ExitStatus::Exited(0));
        assert_eq!(p.exitcode(), Some(0));
    }

    fn stop_right_after_start_is_not_lost(method: StartMethod) {
        let dir = TempDir::new("stop-early");
        let ready = dir.file("ready");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(
                |_ready: String| {
                    while !wait_for_stop(None) {}
                },
                (ready,),
            )
            .start_method(method),
        );
        p.stop(Duration::from_secs(15));
        assert_eq!(p.exitcode(), Some(0), "{p}");
    }
}

/// Starts `target` (which ignores stop requests), waits until it is ready, and stops it with
/// `grace`; returns the child and how long `stop` took.
fn stop_a_stubborn_child<F>(
    method: StartMethod,
    target: F,
    tag: &str,
    grace: Duration,
) -> (Child, Duration)
where
    F: procvisor::Target<(String,), Output = ()>,
{
    let dir = TempDir::new(tag);
    let ready = dir.file("ready");
    let mut guard = KillOnDrop::new();
    let p = started_and_ready(
        &mut guard,
        Process::new(target, (ready.clone(),)).start_method(method),
        &ready,
    );
    let t = Instant::now();
    p.stop(grace);
    (p, t.elapsed())
}

per_start_method! {
    fn stop_escalates_to_sigterm(method: StartMethod) {
        let grace = Duration::from_millis(300);
        let (p, took) = stop_a_stubborn_child(method, stubborn, "stop-term", grace);
        assert!(took >= grace, "stop returned after {took:?}");
        assert_eq!(p.exitcode(), Some(-15), "{p}");
    }

    fn stop_escalates_to_sigkill(method: StartMethod) {
        let grace = Duration::from_millis(300);
        let (p, took) = stop_a_stubborn_child(method, very_stubborn, "stop-kill", grace);
        assert!(took >= 2 * grace, "stop returned after {took:?}");
        assert_eq!(p.exitcode(), Some(-9), "{p}");
        assert!(p.to_string().ends_with("stopped[SIGKILL])>"), "{p}");
    }
}
