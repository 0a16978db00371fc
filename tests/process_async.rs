//! The async API (`start_async`, `join_async`, `stop_async`) on both tokio runtime flavors, and
//! the blocking API called from inside a runtime — under both start methods.

procvisor::test_init!();

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, TempDir, per_start_method, write_atomic};
use procvisor::error::{JoinError, StartError};
use procvisor::{Error, ExitStatus, Process, StartMethod, active_children, wait_for_stop};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Encodes fine, never decodes (the child's bootstrap fails).
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

/// Never encodes (the start fails).
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

/// Waits for a readiness file without blocking the runtime's thread for long.
async fn ready(path: &str) {
    let end = Instant::now() + GENEROUS;
    while !Path::new(path).exists() {
        assert!(Instant::now() < end, "{path} never appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn start_join_stop_scenario(method: StartMethod) {
    let mut guard = KillOnDrop::new();

    // start_async / join_async.
    let p = Process::new(|x: u32| assert_eq!(x, 5), (5u32,))
        .start_method(method)
        .start_async()
        .await
        .unwrap();
    guard.add(&p);
    assert!(p.pid() > 0);
    assert_eq!(p.join_async().await.unwrap(), ExitStatus::Exited(0));
    assert_eq!(p.exitcode(), Some(0));

    // join_async under a timeout returns with the child still running (it is cancel safe).
    let dir = TempDir::new("async");
    let coop_ready = dir.file("coop");
    let coop = Process::new(cooperative, (coop_ready.clone(),))
        .start_method(method)
        .start_async()
        .await
        .unwrap();
    guard.add(&coop);
    ready(&coop_ready).await;
    let timeout = Duration::from_millis(200);
    let t = Instant::now();
    assert!(
        tokio::time::timeout(timeout, coop.join_async())
            .await
            .is_err()
    );
    assert!(
        t.elapsed() >= timeout,
        "join_async returned after {:?}",
        t.elapsed()
    );
    assert!(coop.is_alive());

    // stop_async: cooperative → 0.
    let grace = Duration::from_secs(15);
    let t = Instant::now();
    assert_eq!(coop.stop_async(grace).await, ExitStatus::Exited(0));
    assert!(t.elapsed() < grace);
    assert_eq!(coop.exitcode(), Some(0));

    // stop_async: ignores the request → SIGTERM.
    let stubborn_ready = dir.file("stubborn");
    let s = Process::new(stubborn, (stubborn_ready.clone(),))
        .start_method(method)
        .start_async()
        .await
        .unwrap();
    guard.add(&s);
    ready(&stubborn_ready).await;
    let grace = Duration::from_millis(200);
    let t = Instant::now();
    assert_eq!(
        s.stop_async(grace).await,
        ExitStatus::Signaled(libc::SIGTERM)
    );
    assert!(t.elapsed() >= grace);
    assert_eq!(s.exitcode(), Some(-15));

    // Errors come back the same way.
    match Process::new(|_: Unencodable| (), (Unencodable,))
        .start_method(method)
        .start_async()
        .await
    {
        Err(StartError::Encode { reason, .. }) => {
            assert!(reason.contains("Unencodable refuses to encode"), "{reason}")
        }
        Err(other) => panic!("expected an Encode error, got {other:?}"),
        Ok(child) => {
            guard.add(&child);
            panic!("the child started: {child}");
        }
    }
    let broken = Process::new(|_: Undecodable| (), (Undecodable,))
        .start_method(method)
        .start_async()
        .await
        .unwrap();
    guard.add(&broken);
    match tokio::time::timeout(GENEROUS, broken.join_async()).await {
        Ok(Err(JoinError::Bootstrap { reason, .. })) => {
            assert!(reason.contains("Undecodable refuses to decode"), "{reason}")
        }
        other => panic!("expected a Bootstrap error, got {other:?}"),
    }
    assert_eq!(broken.exitcode(), Some(255));
}

per_start_method! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_api_on_a_multi_thread_runtime(method: StartMethod) {
        start_join_stop_scenario(method).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_api_on_a_current_thread_runtime(method: StartMethod) {
        start_join_stop_scenario(method).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn many_children_joined_concurrently(method: StartMethod) {
        let guard = Arc::new(Mutex::new(KillOnDrop::new()));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..10u32 {
            let guard = guard.clone();
            set.spawn(async move {
                let p = Process::new(|i: u32| assert!(i < 10), (i,))
                    .start_method(method)
                    .start_async()
                    .await?;
                guard.lock().unwrap().add(&p);
                tokio::time::timeout(GENEROUS, p.join_async())
                    .await
                    .expect("a child did not exit in time")?;
                Ok::<_, Error>(p.exitcode())
            });
        }
        let mut codes = Vec::new();
        while let Some(joined) = set.join_next().await {
            codes.push(joined.unwrap().unwrap());
        }
        assert_eq!(codes, vec![Some(0); 10]);
    }
}

async fn blocking_api_scenario(method: StartMethod) {
    let mut guard = KillOnDrop::new();
    let p = common::start(&mut guard, Process::new(|| (), ()).start_method(method));
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));

    let dir = TempDir::new("blocking-in-async");
    let r = dir.file("ready");
    let coop = common::start(
        &mut guard,
        Process::new(cooperative, (r.clone(),)).start_method(method),
    );
    assert!(common::wait_for_file(Path::new(&r)));
    let pid = coop.pid();
    assert!(active_children().iter().any(|c| c.pid() == pid));
    assert_eq!(coop.join_timeout(Duration::from_millis(20)).unwrap(), None);
    assert!(coop.is_alive());
    assert_eq!(coop.stop(GENEROUS), ExitStatus::Exited(0));
    assert_eq!(coop.exitcode(), Some(0));
    // Mixing: a blocking start, an async join.
    let q = common::start(&mut guard, Process::new(|| (), ()).start_method(method));
    q.join_async().await.unwrap();
    assert_eq!(q.exitcode(), Some(0));
}

per_start_method! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_api_inside_a_multi_thread_runtime(method: StartMethod) {
        blocking_api_scenario(method).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn blocking_api_inside_a_current_thread_runtime(method: StartMethod) {
        blocking_api_scenario(method).await;
    }
}
