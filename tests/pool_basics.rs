//! Pool results with real worker processes: map / imap / imap_unordered / starmap equal the
//! sequential results for 0, 1 and 10,000 items and several chunk sizes; apply and submit;
//! callbacks run once each; the initializer runs once per worker; max_tasks_per_child replaces
//! workers (down to one task each); the async API on and off a tokio runtime.

procvisor::test_init!();

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{GENEROUS, PidsGuard, TempDir};
use procvisor::error::{RunError, TaskError};
use procvisor::{AsyncResult, Pool};

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn pid_of_worker(_: u64) -> i32 {
    std::process::id() as i32
}

fn fails_on_odd(x: u64) -> Result<u64, String> {
    if x % 2 == 1 {
        Err(format!("{x} is odd"))
    } else {
        Ok(x)
    }
}

/// The result's outcome, waiting at most [`GENEROUS`] for it.
fn get_within<T>(r: AsyncResult<T>) -> Result<T, TaskError> {
    assert!(r.wait_timeout(GENEROUS), "no result within {GENEROUS:?}");
    r.get()
}

/// A pool whose workers are killed when the test ends, even by a panic.
fn pool(processes: usize) -> (Pool, PidsGuard) {
    let pool = Pool::new(processes).unwrap();
    let guard = PidsGuard(pool.worker_pids());
    (pool, guard)
}

#[test]
fn map_imap_and_imap_unordered_equal_the_sequential_results() {
    let (pool, _guard) = pool(2);
    for n in [0u64, 1, 10_000] {
        let expected: Vec<u64> = (0..n).map(square).collect();
        for chunksize in [0usize, 1, 7, 10_001] {
            let label = format!("{n} items, chunksize {chunksize}");
            let got = pool.map_task(square, 0..n).chunksize(chunksize).run();
            assert_eq!(got.unwrap(), expected, "map: {label}");
            let got: Vec<u64> = pool
                .map_task(square, 0..n)
                .chunksize(chunksize)
                .imap()
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(got, expected, "imap: {label}");
            let mut got: Vec<u64> = pool
                .map_task(square, 0..n)
                .chunksize(chunksize)
                .imap_unordered()
                .unwrap()
                .map(Result::unwrap)
                .collect();
            got.sort_unstable();
            assert_eq!(got, expected, "imap_unordered: {label}");
        }
        assert_eq!(pool.map(square, 0..n).unwrap(), expected, "map, {n} items");
    }
}

#[test]
fn inputs_without_an_exact_size_and_starmap() {
    let (pool, _guard) = pool(2);
    let evens = (0..100u64).filter(|x| x % 2 == 0);
    let expected: Vec<u64> = (0..100u64).filter(|x| x % 2 == 0).map(square).collect();
    assert_eq!(pool.map(square, evens).unwrap(), expected);
    let pairs: Vec<(u64, u64)> = (0..1000).map(|i| (i, 2 * i)).collect();
    let sums = pool.starmap(add, pairs.clone()).unwrap();
    assert_eq!(sums, pairs.iter().map(|(a, b)| a + b).collect::<Vec<_>>());
    let sums = get_within(pool.submit_starmap(add, pairs).unwrap());
    assert_eq!(sums.unwrap()[999], 2997);
}

#[test]
fn apply_and_submit() {
    let (pool, _guard) = pool(2);
    assert_eq!(pool.apply(square, (12,)).unwrap(), 144);
    assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5);
    assert_eq!(
        pool.apply(|| "no arguments".to_string(), ()).unwrap(),
        "no arguments"
    );
    let results: Vec<_> = (0..50)
        .map(|i| pool.submit(square, (i,)).unwrap())
        .collect();
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.wait_timeout(GENEROUS));
        assert!(r.is_ready());
        assert_eq!(r.is_successful(), Some(true));
        // `get` consumes the result: the value moves out once, and asking again does not
        // compile (see the compile_fail example on `AsyncResult`).
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
}

#[test]
fn callbacks_run_once_each_in_the_callers_process() {
    let (pool, _guard) = pool(2);
    let me = std::process::id();
    let seen = Arc::new(Mutex::new(BTreeMap::<u64, usize>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut results = Vec::new();
    for i in 0..40u64 {
        let (seen, errors) = (seen.clone(), errors.clone());
        let r = pool
            .task(fails_on_odd, (i,))
            .callback(move |v: &u64| {
                assert_eq!(std::process::id(), me);
                *seen.lock().unwrap().entry(*v).or_default() += 1;
            })
            .error_callback(move |e: &TaskError| errors.lock().unwrap().push(e.to_string()))
            .submit()
            .unwrap();
        results.push(r);
    }
    for (i, r) in results.iter().enumerate() {
        // The callback has run by the time the result is ready.
        assert!(r.wait_timeout(GENEROUS));
        assert_eq!(r.is_successful(), Some(i % 2 == 0));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|(v, n)| v % 2 == 0 && *n == 1), "{seen:?}");
    let mut errors = errors.lock().unwrap().clone();
    errors.sort();
    assert_eq!(errors.len(), 20);
    assert!(errors.contains(&"the task failed: 7 is odd".to_string()));

    let total = Arc::new(AtomicUsize::new(0));
    let t = total.clone();
    let r = pool
        .map_task(square, 0..100u64)
        .callback(move |v: &Vec<u64>| {
            t.fetch_add(v.len(), Ordering::SeqCst);
        })
        .submit()
        .unwrap();
    assert_eq!(get_within(r).unwrap().len(), 100);
    assert_eq!(total.load(Ordering::SeqCst), 100);
}

fn record_init(dir: String, tag: String) {
    let path = format!("{dir}/init-{}", std::process::id());
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&tag);
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_initializer_runs_once_in_each_worker() {
    let dir = TempDir::new("pool-init");
    let pool = Pool::builder()
        .processes(3)
        .initializer(
            record_init,
            (dir.path().display().to_string(), "hello".to_string()),
        )
        .build()
        .unwrap();
    let _guard = PidsGuard(pool.worker_pids());
    let pids: BTreeSet<i32> = pool
        .map_task(pid_of_worker, 0..300)
        .chunksize(1)
        .run()
        .unwrap()
        .into_iter()
        .collect();
    assert!(!pids.is_empty() && pids.len() <= 3);
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(std::fs::read_to_string(entry.path()).unwrap(), "hello\n");
        files.insert(entry.file_name().to_string_lossy().into_owned());
    }
    // Built = every worker initialized (build waits for their hellos).
    assert_eq!(files.len(), 3, "{files:?}");
    for pid in &pids {
        assert!(files.contains(&format!("init-{pid}")), "{pid} in {files:?}");
    }
}

#[test]
fn max_tasks_per_child_replaces_workers_and_results_stay_right() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(NonZeroU64::new(3).unwrap())
        .build()
        .unwrap();
    let mut pids = BTreeSet::new();
    for i in 0..30u64 {
        pids.insert(pool.apply(pid_of_worker, (i,)).unwrap());
        assert_eq!(pool.apply(square, (i,)).unwrap(), i * i);
    }
    // 60 tasks, at most 3 per worker process.
    assert!(
        pids.len() >= 10,
        "only {} worker pids: {pids:?}",
        pids.len()
    );
    let squares = pool.map_task(square, 0..100u64).chunksize(5).run().unwrap();
    assert_eq!(squares, (0..100u64).map(square).collect::<Vec<_>>());
    pool.close();
    pool.join().unwrap();
}

/// The smallest limit a worker can have is one task: zero is not a `NonZeroU64` (a literal
/// `max_tasks_per_child(0)` does not compile, see its compile_fail example), and every task
/// then gets a fresh worker.
#[test]
fn max_tasks_per_child_cannot_be_zero_and_one_gives_every_task_a_fresh_worker() {
    assert_eq!(NonZeroU64::new(0), None);
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(NonZeroU64::MIN)
        .build()
        .unwrap();
    let mut guard = PidsGuard(pool.worker_pids());
    let pids: Vec<i32> = (0..5u64)
        .map(|i| pool.apply(pid_of_worker, (i,)).unwrap())
        .collect();
    let distinct: BTreeSet<i32> = pids.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        pids.len(),
        "a worker served twice: {pids:?}"
    );
    assert_eq!(pool.map(square, 0..4u64).unwrap(), [0, 1, 4, 9]);
    guard.0.extend(pool.worker_pids());
    pool.close();
    pool.join().unwrap();
}

fn pid_of(_: ()) -> i32 {
    std::process::id() as i32
}

fn suicide() -> u64 {
    std::process::abort()
}

#[test]
fn fork_started_workers_serve_and_are_replaced() {
    let pool = Pool::builder()
        .processes(2)
        .start_method(procvisor::StartMethod::Fork)
        .build()
        .unwrap();
    let mut guard = PidsGuard(pool.worker_pids());
    assert_eq!(pool.map(square, 0..1000u64).unwrap()[999], 998_001);
    let pids: BTreeSet<i32> = pool.map(pid_of, vec![(); 8]).unwrap().into_iter().collect();
    assert!(
        pids.iter().all(|p| pool.worker_pids().contains(p)),
        "{pids:?}"
    );
    let err = pool.apply(suicide, ()).unwrap_err();
    assert!(
        matches!(err, RunError::Task(TaskError::WorkerLost { .. })),
        "{err}"
    );
    assert_eq!(pool.apply(square, (5,)).unwrap(), 25);
    guard.0.extend(pool.worker_pids());
    pool.close();
    pool.join().unwrap();
}

#[test]
fn async_results_and_iterators_on_a_tokio_runtime() {
    let (pool, _guard) = pool(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = pool.submit(square, (9,)).unwrap();
        assert_eq!(r.get_async().await.unwrap(), 81);
        let r = pool.submit_map(square, 0..1000u64).unwrap();
        r.wait_async().await;
        assert_eq!(r.get_async().await.unwrap()[999], 998_001);
        let mut it = pool.imap(square, 0..10u64).unwrap();
        let mut got = Vec::new();
        while let Some(v) = it.next_async().await {
            got.push(v.unwrap());
        }
        assert_eq!(got, (0..10u64).map(square).collect::<Vec<_>>());
        // The blocking API works inside a runtime too.
        assert_eq!(pool.apply(square, (3,)).unwrap(), 9);
        // A pool made, joined and dropped inside the runtime.
        let inner = Pool::new(1).unwrap();
        let pids = inner.worker_pids();
        let _guard = PidsGuard(pids.clone());
        let r = inner.submit(square, (4,)).unwrap();
        inner.close();
        inner.join_async().await.unwrap();
        assert_eq!(r.get_async().await.unwrap(), 16);
        assert!(pids.iter().all(|&p| !common::pid_is_running(p)));
        let other = Pool::new(1).unwrap();
        let _guard = PidsGuard(other.worker_pids());
        other.terminate_async().await;
        drop(Pool::new(1).unwrap());
    });
    // And the async API outside one, on a plain executor.
    let r = pool.submit(square, (5,)).unwrap();
    let v = futures_lite_block_on(r.get_async());
    assert_eq!(v.unwrap(), 25);
}

/// Drives a future on this thread without tokio: a minimal executor that parks between polls.
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let deadline = std::time::Instant::now() + GENEROUS;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "future never finished"
        );
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn pool_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<procvisor::AsyncResult<Vec<String>>>();
    send_sync::<procvisor::IMapIterator<u64>>();
    send_sync::<procvisor::PoolBuilder>();
    send_sync::<procvisor::error::PoolError>();
    send_sync::<TaskError>();
    send_sync::<RunError>();
    send_sync::<procvisor::error::ResultTimeout>();
}
