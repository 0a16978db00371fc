//! Pool errors with real worker processes: a task's `Err` or panic fails only that task (the
//! message reaches the caller, the worker keeps serving); a result that cannot be encoded;
//! arguments that cannot be encoded; timeouts while waiting for results; misuse (join before
//! close, is_successful before ready, submitting to a closed pool); a failing initializer.

procvisor::test_init!();

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{GENEROUS, PidsGuard, TempDir};
use procvisor::Pool;
use procvisor::error::{PoolError, ResultTimeout, RunError, TaskError};
use serde::{Deserialize, Serialize, Serializer};

fn square(x: u64) -> u64 {
    x * x
}

fn picky(x: u64) -> Result<u64, String> {
    match x {
        3 => Err("three is not allowed".into()),
        5 => panic!("five makes me panic"),
        _ => Ok(x),
    }
}

fn worker_pid() -> i32 {
    std::process::id() as i32
}

/// Blocks until the file `go` exists in `dir`, then returns `value` (a task the test releases).
fn wait_for_go(dir: String, value: u64) -> u64 {
    let go = Path::new(&dir).join("go");
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    value
}

/// A value whose encoding always fails.
#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unencodable refuses to be encoded",
        ))
    }
}

procvisor::task_output!(Unencodable);

fn unencodable() -> Unencodable {
    Unencodable
}

/// Takes an argument that cannot be encoded.
fn takes_unencodable(_: Unencodable) -> u64 {
    0
}

fn pool(processes: usize) -> (Pool, PidsGuard) {
    let pool = Pool::new(processes).unwrap();
    let guard = PidsGuard(pool.worker_pids());
    (pool, guard)
}

#[test]
fn an_err_or_a_panic_fails_only_that_task_and_the_worker_keeps_serving() {
    let (pool, _guard) = pool(1);
    let before = pool.apply(worker_pid, ()).unwrap();

    let err = pool.apply(picky, (3,)).unwrap_err();
    assert!(
        matches!(&err, RunError::Task(TaskError::Failed { message }) if message == "three is not allowed")
    );
    assert_eq!(err.to_string(), "the task failed: three is not allowed");
    let err = pool.apply(picky, (5,)).unwrap_err();
    assert!(
        matches!(&err, RunError::Task(TaskError::Panicked { message }) if message == "five makes me panic")
    );
    assert_eq!(err.to_string(), "the task panicked: five makes me panic");

    // map fails as a whole with the failing item's error …
    let err = pool.map(picky, [1, 2, 5, 6]).unwrap_err();
    assert!(
        matches!(err, RunError::Task(TaskError::Panicked { .. })),
        "{err}"
    );
    // … imap reports each item, so the others are still there.
    for chunksize in [1, 3, 10] {
        let got: Vec<Result<u64, TaskError>> = pool
            .map_task(picky, 0..8u64)
            .chunksize(chunksize)
            .imap()
            .unwrap()
            .collect();
        assert_eq!(got.len(), 8);
        for (i, r) in got.iter().enumerate() {
            match i {
                3 => assert!(matches!(r, Err(TaskError::Failed { .. })), "{r:?}"),
                5 => assert!(matches!(r, Err(TaskError::Panicked { .. })), "{r:?}"),
                _ => assert_eq!(*r.as_ref().unwrap(), i as u64),
            }
        }
    }
    // The same worker served all of it.
    assert_eq!(pool.apply(worker_pid, ()).unwrap(), before);
    assert_eq!(pool.worker_pids(), [before]);
}

#[test]
fn a_result_that_cannot_be_encoded_fails_that_task_clearly() {
    let (pool, _guard) = pool(1);
    let err = pool.apply(unencodable, ()).unwrap_err();
    assert!(
        matches!(err, RunError::Task(TaskError::EncodeResult { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("refuses to be encoded"), "{err}");
    assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
}

/// As in Python, arguments that cannot be encoded are the task's failure, reported by its
/// result (and its error callback), not a refusal of the submission.
#[test]
fn arguments_that_cannot_be_encoded_fail_the_task_not_the_submission() {
    let (pool, _guard) = pool(1);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let s = seen.clone();
    let r = pool
        .task(takes_unencodable, (Unencodable,))
        .error_callback(move |e| *s.lock().unwrap() = Some(e.clone()))
        .submit()
        .unwrap();
    assert!(r.wait_timeout(GENEROUS));
    let err = r.get().unwrap_err();
    assert!(matches!(err, TaskError::EncodeArguments { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot encode the task's arguments: ")
            && message.contains("refuses to be encoded"),
        "{message}"
    );
    assert_eq!(seen.lock().unwrap().as_ref(), Some(&err));
    let err = pool.apply(takes_unencodable, (Unencodable,)).unwrap_err();
    assert!(
        matches!(&err, RunError::Task(TaskError::EncodeArguments { reason }) if reason.contains("refuses")),
        "{err}"
    );
    let items: Vec<_> = pool
        .imap(takes_unencodable, [Unencodable])
        .unwrap()
        .collect();
    assert!(
        matches!(&items[..], [Err(TaskError::EncodeArguments { .. })]),
        "{items:?}"
    );
    assert_eq!(pool.apply(square, (4,)).unwrap(), 16);
}

#[test]
fn wait_timeout_on_a_sleeping_task_times_out_and_the_result_still_arrives() {
    let (pool, _guard) = pool(1);
    let dir = TempDir::new("pool-get-timeout");
    let d = dir.path().display().to_string();
    let r = pool.submit(wait_for_go, (d.clone(), 7)).unwrap();
    let t = Instant::now();
    // Python's get(timeout) raising TimeoutError: the wait gives up, the handle stays.
    assert!(!r.wait_timeout(Duration::from_millis(200)));
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(!r.is_ready());
    // Python's successful() raising ValueError before the result is ready.
    assert_eq!(r.is_successful(), None);
    assert!(!r.wait_timeout(Duration::from_millis(50)));

    std::fs::write(dir.file("go"), "").unwrap();
    assert!(r.wait_timeout(GENEROUS));
    assert_eq!(r.is_successful(), Some(true));
    assert_eq!(r.get().unwrap(), 7);
}

#[test]
fn imap_next_timeout_times_out_then_yields() {
    let (pool, _guard) = pool(1);
    let dir = TempDir::new("pool-imap-timeout");
    let d = dir.path().display().to_string();
    let mut it = pool
        .starmap_task(wait_for_go, vec![(d.clone(), 1), (d, 2)])
        .imap()
        .unwrap();
    let err = it.next_timeout(Duration::from_millis(100)).unwrap_err();
    assert_eq!(
        err,
        ResultTimeout {
            timeout: Duration::from_millis(100)
        }
    );
    assert_eq!(
        err.to_string(),
        "no result within 100ms (the tasks are still running)"
    );
    std::fs::write(dir.file("go"), "").unwrap();
    assert_eq!(it.next_timeout(GENEROUS).unwrap(), Some(Ok(1)));
    assert_eq!(it.next_timeout(GENEROUS).unwrap(), Some(Ok(2)));
    assert_eq!(it.next_timeout(GENEROUS).unwrap(), None);
    assert!(it.next().is_none());
}

#[test]
fn misuse_gets_precise_errors() {
    let (pool, _guard) = pool(1);
    assert_eq!(pool.join(), Err(PoolError::StillRunning));
    assert_eq!(
        Pool::new(0).unwrap_err(),
        PoolError::NoWorkers { processes: 0 }
    );
    pool.close();
    let err = pool.apply(square, (1,)).unwrap_err();
    assert_eq!(err, RunError::Pool(PoolError::Closed), "{err}");
    assert_eq!(
        err.to_string(),
        "the pool is closed: it accepts no new tasks"
    );
    assert_eq!(
        pool.map(square, 0..3),
        Err(RunError::Pool(PoolError::Closed))
    );
    assert_eq!(pool.imap(square, 0..3).unwrap_err(), PoolError::Closed);
    pool.join().unwrap();
    pool.terminate();
    let err = pool.submit(square, (1,)).unwrap_err();
    assert_eq!(err, PoolError::Terminated, "{err}");
}

fn failing_init(reason: String) -> Result<(), String> {
    Err(reason)
}

fn panicking_init() {
    panic!("the initializer panics");
}

#[test]
fn a_failing_initializer_breaks_the_pool_instead_of_looping() {
    let err = Pool::builder()
        .processes(2)
        .initializer(failing_init, ("no database".to_string(),))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, PoolError::Broken { reason } if reason.contains("no database")),
        "{err}"
    );
    let err = Pool::builder()
        .processes(1)
        .initializer(panicking_init, ())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("the initializer panics"), "{err}");
}

#[test]
#[ignore = "driver: run by a_task_panic_is_not_printed_by_the_worker"]
fn driver_task_panic() {
    if !common::in_driver() {
        return;
    }
    let pool = Pool::new(1).unwrap();
    let err = pool.apply(picky, (5,)).unwrap_err();
    common::say(format!("GOT {err}"));
    pool.close();
    pool.join().unwrap();
}

/// As in Python, a task's panic is the caller's to report: the worker does not print it too.
#[test]
fn a_task_panic_is_not_printed_by_the_worker() {
    let out = common::run_driver("driver_task_panic");
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        common::line_with(&common::stdout_of(&out), "GOT ").contains("five makes me panic"),
        "{all}"
    );
    assert!(
        !common::stderr_of(&out).contains("five makes me panic"),
        "the worker printed the panic: {all}"
    );
}
