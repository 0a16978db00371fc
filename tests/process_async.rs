//! The async API (`start_async`, `join_async`, `stop_async`) on both tokio runtime flavors, and
//! the blocking API called from inside a runtime.

procvisor::test_init!();

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, TempDir, write_atomic};
use procvisor::{Error, Process, active_children, wait_for_stop};

fn cooperative(ready: String) {
    write_atomic(&ready, "");
    while !wait_for_stop(Some(Duration::from_millis(50))) {}
}

fn stubborn(ready: String) {
    write_atomic(&ready, "");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Waits for a readiness file without blocking the runtime's thread for long.
async fn ready(path: &str) {
    let end = Instant::now() + GENEROUS;
    while !Path::new(path).exists() {
        assert!(Instant::now() < end, "{path} never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn start_join_stop_scenario() {
    let mut guard = KillOnDrop::new();

    // start_async / join_async.
    let p = Process::new(|x: u32| assert_eq!(x, 5), (5u32,));
    guard.add(&p);
    p.start_async().await.unwrap();
    assert!(p.pid().is_some());
    p.join_async(None).await.unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(matches!(
        p.start_async().await,
        Err(Error::AlreadyStarted { .. })
    ));

    // join_async with a timeout returns with the child still running.
    let dir = TempDir::new("async");
    let coop_ready = dir.file("coop");
    let coop = Process::new(cooperative, (coop_ready.clone(),));
    guard.add(&coop);
    coop.start_async().await.unwrap();
    ready(&coop_ready).await;
    let timeout = Duration::from_millis(200);
    let t = Instant::now();
    coop.join_async(Some(timeout)).await.unwrap();
    assert!(
        t.elapsed() >= timeout,
        "join_async returned after {:?}",
        t.elapsed()
    );
    assert!(coop.is_alive());

    // stop_async: cooperative → 0.
    let grace = Duration::from_secs(15);
    let t = Instant::now();
    coop.stop_async(grace).await.unwrap();
    assert!(t.elapsed() < grace);
    assert_eq!(coop.exitcode(), Some(0));

    // stop_async: ignores the request → SIGTERM.
    let stubborn_ready = dir.file("stubborn");
    let s = Process::new(stubborn, (stubborn_ready.clone(),));
    guard.add(&s);
    s.start_async().await.unwrap();
    ready(&stubborn_ready).await;
    let grace = Duration::from_millis(200);
    let t = Instant::now();
    s.stop_async(grace).await.unwrap();
    assert!(t.elapsed() >= grace);
    assert_eq!(s.exitcode(), Some(-15));

    // Errors come back the same way.
    let unstarted = Process::new(|| (), ());
    assert!(matches!(
        unstarted.join_async(None).await,
        Err(Error::NotStarted { .. })
    ));
    assert!(matches!(
        unstarted.stop_async(grace).await,
        Err(Error::NotStarted { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_api_on_a_multi_thread_runtime() {
    start_join_stop_scenario().await;
}

#[tokio::test(flavor = "current_thread")]
async fn async_api_on_a_current_thread_runtime() {
    start_join_stop_scenario().await;
}

#[tokio::test(flavor = "current_thread")]
async fn many_children_joined_concurrently() {
    let ps: Vec<Process> = (0..10u32)
        .map(|i| Process::new(|i: u32| assert!(i < 10), (i,)))
        .collect();
    let mut guard = KillOnDrop::new();
    let mut set = tokio::task::JoinSet::new();
    for p in &ps {
        let p = guard.add(p);
        set.spawn(async move {
            p.start_async().await?;
            p.join_async(Some(GENEROUS)).await?;
            Ok::<_, Error>(p.exitcode())
        });
    }
    let mut codes = Vec::new();
    while let Some(joined) = set.join_next().await {
        codes.push(joined.unwrap().unwrap());
    }
    assert_eq!(codes, vec![Some(0); 10]);
}

async fn blocking_api_scenario() {
    let mut guard = KillOnDrop::new();
    let p = Process::new(|| (), ()).start().unwrap();
    guard.add(&p);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));

    let dir = TempDir::new("blocking-in-async");
    let r = dir.file("ready");
    let coop = Process::new(cooperative, (r.clone(),)).start().unwrap();
    guard.add(&coop);
    assert!(common::wait_for_file(Path::new(&r)));
    let pid = coop.pid();
    assert!(active_children().iter().any(|c| c.pid() == pid));
    coop.join_timeout(Duration::from_millis(20)).unwrap();
    assert!(coop.is_alive());
    coop.stop(GENEROUS).unwrap();
    assert_eq!(coop.exitcode(), Some(0));
    // Mixing: a blocking start, an async join.
    let q = Process::new(|| (), ()).start().unwrap();
    guard.add(&q);
    q.join_async(None).await.unwrap();
    assert_eq!(q.exitcode(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_api_inside_a_multi_thread_runtime() {
    blocking_api_scenario().await;
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_api_inside_a_current_thread_runtime() {
    blocking_api_scenario().await;
}
