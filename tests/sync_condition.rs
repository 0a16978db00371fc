//! `Condition` and `Event` between real processes: notify(1) wakes exactly one of three
//! sleeping waiters, notify_all the rest; wait timeouts; notify/wait without the lock; a
//! SIGKILLed waiter does not swallow a notification; Event set/clear/wait across processes.

procvisor::test_init!();

mod common;

use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, start, wait_until};
use procvisor::{Child, Condition, Error, Event, Lock, Process, Value};

/// Child: under the condition's lock, counts itself as waiting, waits, counts itself woken.
fn waiter(cond: Condition, waiting: Value<i32>, woken: Value<i32>) -> procvisor::Result<()> {
    let g = cond.lock();
    waiting.update(|n| n + 1);
    let notified = g.wait(Some(GENEROUS))?;
    if notified {
        woken.update(|n| n + 1);
    }
    Ok(())
}

fn three_waiters(guard: &mut KillOnDrop, cond: &Condition) -> (Vec<Child>, Value<i32>, Value<i32>) {
    let waiting = Value::new(0i32).unwrap();
    let woken = Value::new(0i32).unwrap();
    let procs: Vec<Child> = (0..3)
        .map(|_| {
            start(
                guard,
                Process::new(waiter, (cond.clone(), waiting.clone(), woken.clone())),
            )
        })
        .collect();
    // Each bumped `waiting` holding the lock, and a waiter is enqueued before it lets go.
    assert!(wait_until(GENEROUS, || waiting.get() == 3 && cond.n_waiting() == 3));
    (procs, waiting, woken)
}

#[test]
fn notify_one_wakes_exactly_one_of_three_and_notify_all_the_rest() {
    let mut guard = KillOnDrop::new();
    let cond = Condition::new().unwrap();
    let (procs, _waiting, woken) = three_waiters(&mut guard, &cond);
    cond.lock().notify(1).unwrap();
    assert!(wait_until(GENEROUS, || woken.get() == 1));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(woken.get(), 1, "notify(1) woke more than one waiter");
    assert_eq!(cond.n_waiting(), 2);
    cond.lock().notify_all().unwrap();
    assert!(wait_until(GENEROUS, || woken.get() == 3));
    for p in &procs {
        join_ok(p);
    }
}

#[test]
fn notify_two_wakes_two() {
    let mut guard = KillOnDrop::new();
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let (procs, _waiting, woken) = three_waiters(&mut guard, &cond);
    cond.lock().notify(2).unwrap();
    assert!(wait_until(GENEROUS, || woken.get() == 2));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(woken.get(), 2);
    cond.lock().notify(1).unwrap();
    for p in &procs {
        join_ok(p);
    }
    assert_eq!(woken.get(), 3);
}

#[test]
fn wait_times_out_and_both_need_the_lock() {
    let cond = Condition::new().unwrap();
    assert!(matches!(
        cond.wait(None),
        Err(Error::NotHeld {
            operation: "wait on"
        })
    ));
    let err = cond.notify(1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot notify a condition without holding its lock"
    );
    let g = cond.lock();
    let t = Instant::now();
    assert!(!g.wait(Some(Duration::from_millis(150))).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert!(t.elapsed() < GENEROUS);
    // wait_for: a predicate that never holds returns false after about the timeout.
    let t = Instant::now();
    assert!(
        !g.wait_for(|| false, Some(Duration::from_millis(100)))
            .unwrap()
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    // The RLock's recursion levels survive a wait.
    let inner = cond.lock();
    assert!(!inner.wait(Some(Duration::from_millis(10))).unwrap());
    drop(inner);
    drop(g);
    assert!(cond.release().is_err());
}

fn setter(cond: Condition, flag: Value<i32>) -> procvisor::Result<()> {
    std::thread::sleep(Duration::from_millis(50));
    let g = cond.lock();
    flag.set(1);
    g.notify_all()
}

#[test]
fn wait_for_returns_once_another_process_makes_the_predicate_true() {
    let mut guard = KillOnDrop::new();
    let cond = Condition::new().unwrap();
    let flag = Value::new(0i32).unwrap();
    let g = cond.lock();
    let p = start(
        &mut guard,
        Process::new(setter, (cond.clone(), flag.clone())),
    );
    assert!(g.wait_for(|| flag.get() == 1, Some(GENEROUS)).unwrap());
    drop(g);
    join_ok(&p);
}

/// Child: waits on the condition for ever (killed by the test).
fn wait_forever(cond: Condition, waiting: Value<i32>) -> procvisor::Result<()> {
    let g = cond.lock();
    waiting.update(|n| n + 1);
    g.wait(None)?;
    Ok(())
}

#[test]
fn a_sigkilled_waiter_does_not_swallow_a_notification() {
    let mut guard = KillOnDrop::new();
    let cond = Condition::new().unwrap();
    let waiting = Value::new(0i32).unwrap();
    let doomed = start(
        &mut guard,
        Process::new(wait_forever, (cond.clone(), waiting.clone())),
    );
    assert!(wait_until(GENEROUS, || cond.n_waiting() == 1));
    doomed.kill().unwrap();
    doomed.join_timeout(GENEROUS).unwrap();
    let woken = Value::new(0i32).unwrap();
    let alive = start(
        &mut guard,
        Process::new(waiter, (cond.clone(), waiting.clone(), woken.clone())),
    );
    assert!(wait_until(GENEROUS, || waiting.get() == 2 && cond.n_waiting() == 2));
    // The dead waiter is the oldest: notify(1) picks it, the watch finds it dead and passes
    // the notification on.
    cond.lock().notify(1).unwrap();
    assert!(
        wait_until(GENEROUS, || woken.get() == 1),
        "the live waiter was never woken"
    );
    join_ok(&alive);
    assert_eq!(cond.n_waiting(), 0);
}

// ---- Event -----------------------------------------------------------------------------------

fn set_later(event: Event) {
    std::thread::sleep(Duration::from_millis(100));
    event.set();
}

#[test]
fn an_event_set_by_another_process_wakes_the_waiter() {
    let mut guard = KillOnDrop::new();
    let event = Event::new().unwrap();
    let t = Instant::now();
    assert!(!event.wait(Some(Duration::from_millis(100))));
    assert!(t.elapsed() >= Duration::from_millis(100));
    let p = start(&mut guard, Process::new(set_later, (event.clone(),)));
    assert!(event.wait(Some(GENEROUS)));
    assert!(event.is_set());
    join_ok(&p);
    event.clear();
    assert!(!event.is_set());
    let t = Instant::now();
    assert!(!event.wait(Some(Duration::from_millis(50))));
    assert!(t.elapsed() >= Duration::from_millis(50));
}

fn wait_for_event(event: Event, done: Value<i32>) {
    if event.wait(Some(GENEROUS)) {
        done.update(|n| n + 1);
    }
}

#[test]
fn set_wakes_every_waiting_process() {
    let mut guard = KillOnDrop::new();
    let event = Event::new().unwrap();
    let done = Value::new(0i32).unwrap();
    let procs: Vec<Child> = (0..3)
        .map(|_| {
            start(
                &mut guard,
                Process::new(wait_for_event, (event.clone(), done.clone())),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(done.get(), 0);
    event.set();
    for p in &procs {
        join_ok(p);
    }
    assert_eq!(done.get(), 3);
}

#[test]
fn wait_async_on_an_event_works_inside_and_outside_a_runtime() {
    let event = Event::new().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = event.clone();
    let t = Instant::now();
    let timed_out = rt.block_on(async move { e.wait_async(Some(Duration::from_millis(80))).await });
    assert!(!timed_out);
    assert!(t.elapsed() >= Duration::from_millis(80));
    let setter = event.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        setter.set();
    });
    assert!(rt.block_on(event.wait_async(Some(GENEROUS))));
}
