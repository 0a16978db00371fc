//! Pool crash recovery and shutdown with real worker processes: a worker SIGKILLed (or
//! exiting) mid-task is replaced and its task fails with WorkerLost within 2 s while the pool
//! keeps serving; a per-task timeout kills only the stuck task's worker; terminate stops busy
//! workers promptly; close + join and drop leave no worker process behind.

procvisor::test_init!();

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{GENEROUS, PidsGuard, TempDir, pid_is_running, send_signal, wait_until};
use procvisor::error::{RunError, TaskError};
use procvisor::supervisor::Exit;
use procvisor::{AsyncResult, Pool};

fn square(x: u64) -> u64 {
    x * x
}

/// Writes `started-<x>` holding the worker's pid into `dir`, then blocks until `dir/go`
/// exists (never, unless the test releases it).
fn stuck(dir: String, x: u64) -> u64 {
    let dir = Path::new(&dir);
    let tmp = dir.join(format!(".started-{x}"));
    std::fs::write(&tmp, std::process::id().to_string()).unwrap();
    std::fs::rename(&tmp, dir.join(format!("started-{x}"))).unwrap();
    while !dir.join("go").exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    x
}

fn exit_with(code: i32) -> u64 {
    std::process::exit(code)
}

fn abort() -> u64 {
    std::process::abort()
}

/// The pid a `stuck` task wrote once it started.
fn started_pid(dir: &TempDir, x: u64) -> i32 {
    let path = dir.path().join(format!("started-{x}"));
    assert!(
        wait_until(GENEROUS, || path.exists()),
        "task {x} never started"
    );
    std::fs::read_to_string(path).unwrap().parse().unwrap()
}

/// The result's outcome, waiting at most [`GENEROUS`] for it.
fn get_within<T>(r: AsyncResult<T>) -> Result<T, TaskError> {
    assert!(r.wait_timeout(GENEROUS), "no result within {GENEROUS:?}");
    r.get()
}

fn pool(processes: usize) -> (Pool, PidsGuard) {
    let pool = Pool::new(processes).unwrap();
    let guard = PidsGuard(pool.worker_pids());
    (pool, guard)
}

#[test]
fn a_worker_sigkilled_mid_map_fails_the_map_with_worker_lost_and_the_pool_recovers() {
    let (pool, mut guard) = pool(2);
    let dir = TempDir::new("pool-sigkill");
    let d = dir.path().display().to_string();
    let items: Vec<(String, u64)> = (0..4).map(|i| (d.clone(), i)).collect();
    let map = pool
        .starmap_task(stuck, items)
        .chunksize(1)
        .submit()
        .unwrap();
    let victim = started_pid(&dir, 0);
    let t = Instant::now();
    send_signal(victim, libc::SIGKILL);
    let err = get_within(map).unwrap_err();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "WorkerLost took {took:?}");
    assert_eq!(
        err.to_string(),
        format!("pool worker (pid {victim}) died while running the task: killed by SIGKILL")
    );
    match err {
        TaskError::WorkerLost { pid, exit } => {
            assert_eq!(pid, victim);
            assert_eq!(exit, Exit::Signal(libc::SIGKILL));
        }
        other => panic!("expected WorkerLost, got {other}"),
    }
    // Release the other stuck task; the pool serves the next map with a replaced worker.
    std::fs::write(dir.file("go"), "").unwrap();
    assert_eq!(pool.map(square, 0..1000u64).unwrap()[999], 998_001);
    assert!(wait_until(GENEROUS, || pool.worker_pids().len() == 2));
    assert!(!pool.worker_pids().contains(&victim));
    guard.0.extend(pool.worker_pids());
}

#[test]
fn a_worker_that_exits_or_aborts_mid_task_fails_only_that_task() {
    let (pool, mut guard) = pool(1);
    let err = pool.apply(exit_with, (3,)).unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Task(TaskError::WorkerLost {
                exit: Exit::Code(3),
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(pool.apply(square, (7,)).unwrap(), 49);
    let err = pool.apply(abort, ()).unwrap_err();
    assert!(
        matches!(
            err,
            RunError::Task(TaskError::WorkerLost {
                exit: Exit::Signal(libc::SIGABRT),
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
    guard.0.extend(pool.worker_pids());
}

#[test]
fn a_per_task_timeout_kills_only_the_stuck_task() {
    let (pool, mut guard) = pool(2);
    let dir = TempDir::new("pool-task-timeout");
    let d = dir.path().display().to_string();
    let timeout = Duration::from_millis(300);
    let t = Instant::now();
    let slow = pool.task(stuck, (d, 0)).timeout(timeout).submit().unwrap();
    let victim = started_pid(&dir, 0);
    // Others keep being served meanwhile, with (generous) timeouts of their own.
    for i in 0..20u64 {
        let r = pool.task(square, (i,)).timeout(GENEROUS).submit().unwrap();
        assert_eq!(get_within(r).unwrap(), i * i);
    }
    let err = get_within(slow).unwrap_err();
    assert!(t.elapsed() >= timeout);
    assert_eq!(err, TaskError::Timeout { timeout }, "{err}");
    assert!(wait_until(GENEROUS, || !pid_is_running(victim)));
    assert!(wait_until(GENEROUS, || pool.worker_pids().len() == 2));
    assert_eq!(pool.map(square, 0..100u64).unwrap()[10], 100);
    guard.0.extend(pool.worker_pids());
}

#[test]
fn a_pool_wide_timeout_applies_to_map_chunks() {
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut guard = PidsGuard(pool.worker_pids());
    let dir = TempDir::new("pool-wide-timeout");
    let d = dir.path().display().to_string();
    let err = pool.starmap(stuck, vec![(d, 1)]).unwrap_err();
    assert!(
        matches!(err, RunError::Task(TaskError::Timeout { .. })),
        "{err}"
    );
    assert_eq!(pool.map(square, 0..4u64).unwrap(), [0, 1, 4, 9]);
    guard.0.extend(pool.worker_pids());
}

#[test]
fn terminate_stops_busy_workers_promptly() {
    let (pool, _guard) = pool(2);
    let dir = TempDir::new("pool-terminate");
    let d = dir.path().display().to_string();
    let items: Vec<(String, u64)> = (0..6).map(|i| (d.clone(), i)).collect();
    let map = pool
        .starmap_task(stuck, items)
        .chunksize(1)
        .submit()
        .unwrap();
    let pids = pool.worker_pids();
    started_pid(&dir, 0);
    started_pid(&dir, 1);
    let t = Instant::now();
    pool.terminate();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "terminate took {:?}",
        t.elapsed()
    );
    assert!(pids.iter().all(|&p| !pid_is_running(p)), "{pids:?}");
    assert_eq!(get_within(map), Err(TaskError::PoolTerminated));
    // join after terminate is allowed and returns at once.
    pool.join().unwrap();
}

#[test]
fn after_close_and_join_no_worker_remains() {
    let (pool, _guard) = pool(3);
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 3);
    let pending: Vec<_> = (0..100u64)
        .map(|i| pool.submit(square, (i,)).unwrap())
        .collect();
    pool.close();
    pool.join().unwrap();
    // join waited for every task …
    for (i, r) in pending.into_iter().enumerate() {
        assert!(r.is_ready());
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    // … and for every worker to exit.
    assert!(pids.iter().all(|&p| !pid_is_running(p)), "{pids:?}");
}

#[test]
fn dropping_a_pool_stops_its_workers() {
    let pool = Pool::new(2).unwrap();
    let _guard = PidsGuard(pool.worker_pids());
    let pids = pool.worker_pids();
    let dir = TempDir::new("pool-drop");
    let r = pool
        .submit(stuck, (dir.path().display().to_string(), 0))
        .unwrap();
    started_pid(&dir, 0);
    drop(pool);
    assert!(pids.iter().all(|&p| !pid_is_running(p)), "{pids:?}");
    assert_eq!(get_within(r), Err(TaskError::PoolTerminated));
}
