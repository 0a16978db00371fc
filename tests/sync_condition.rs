//! `Condition` and `Event` between real processes: notify(1) wakes exactly one of three
//! sleeping waiters, notify_all the rest; wait timeouts; notify/wait without the lock; a
//! SIGKILLed waiter does not swallow a notification (asleep, or notified and blocked taking
//! the lock back); Event set/clear/wait across processes;
//! async waits (woken by another process; a dropped one leaves the lock held again, gives its
//! slot back and passes on a notification it had received).

procvisor::test_init!();

mod common;

use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, start, wait_until};
use procvisor::error::{ConditionError, ConditionOp};
use procvisor::{Acquire, Child, Condition, Event, Lock, Process, Value};

/// Child: under the condition's lock, counts itself as waiting, waits, counts itself woken.
fn waiter(cond: Condition, waiting: Value<i32>, woken: Value<i32>) -> procvisor::Result<()> {
    let g = cond.lock();
    waiting.update(|n| n + 1);
    let notified = g.wait_timeout(GENEROUS)?;
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
    assert!(wait_until(GENEROUS, || waiting.get() == 3 && cond.waiters() == 3));
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
    assert_eq!(cond.waiters(), 2);
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
    assert_eq!(
        cond.wait(),
        Err(ConditionError::NotHeld {
            operation: ConditionOp::Wait
        })
    );
    let err = cond.notify(1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot notify a condition without holding its lock"
    );
    let g = cond.lock();
    let t = Instant::now();
    assert!(!g.wait_timeout(Duration::from_millis(150)).unwrap());
    assert!(t.elapsed() >= Duration::from_millis(150));
    assert!(t.elapsed() < GENEROUS);
    // wait_for: a predicate that never holds returns false after about the timeout.
    let t = Instant::now();
    assert!(
        !g.wait_for_timeout(|| false, Duration::from_millis(100))
            .unwrap()
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    // The RLock's recursion levels survive a wait.
    let inner = cond.lock();
    assert!(!inner.wait_timeout(Duration::from_millis(10)).unwrap());
    drop(inner);
    drop(g);
    assert!(cond.release().is_err());
}

fn setter(cond: Condition, flag: Value<i32>) -> procvisor::Result<()> {
    std::thread::sleep(Duration::from_millis(50));
    let g = cond.lock();
    flag.set(1);
    Ok(g.notify_all()?)
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
    assert!(g.wait_for_timeout(|| flag.get() == 1, GENEROUS).unwrap());
    drop(g);
    join_ok(&p);
}

/// Child: waits on the condition for ever (killed by the test).
fn wait_forever(cond: Condition, waiting: Value<i32>) -> procvisor::Result<()> {
    let g = cond.lock();
    waiting.update(|n| n + 1);
    g.wait()?;
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
    assert!(wait_until(GENEROUS, || cond.waiters() == 1));
    doomed.kill().unwrap();
    doomed.join_timeout(GENEROUS).unwrap();
    let woken = Value::new(0i32).unwrap();
    let alive = start(
        &mut guard,
        Process::new(waiter, (cond.clone(), waiting.clone(), woken.clone())),
    );
    assert!(wait_until(GENEROUS, || waiting.get() == 2 && cond.waiters() == 2));
    // The dead waiter is the oldest: notify(1) picks it, the watch finds it dead and passes
    // the notification on.
    cond.lock().notify(1).unwrap();
    assert!(
        wait_until(GENEROUS, || woken.get() == 1),
        "the live waiter was never woken"
    );
    join_ok(&alive);
    assert_eq!(cond.waiters(), 0);
}

/// The futex word the main thread of `pid` (ours: a child) sleeps on, as an address in that
/// process, read from `/proc/<pid>/syscall`; `None` while it runs or is in another call.
fn futex_slept_on(pid: i32) -> Option<u64> {
    let line =
        std::fs::read_to_string(format!("/proc/{pid}/task/{}/syscall", target_thread(pid))).ok()?;
    let mut fields = line.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr != libc::SYS_futex {
        return None;
    }
    u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()
}

/// The thread a child's target runs on: the one named `main` (a child of a test crate runs its
/// target there, see `procvisor::test_init!`), else the process's first thread.
fn target_thread(pid: i32) -> i32 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    tasks
        .flatten()
        .filter_map(|task| task.file_name().to_str()?.parse::<i32>().ok())
        .find(|tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == "main")
        })
        .unwrap_or(pid)
}

#[test]
fn a_notified_waiter_sigkilled_while_taking_the_lock_back_passes_the_notification_on() {
    let mut guard = KillOnDrop::new();
    let cond = Condition::new().unwrap();
    let waiting = Value::new(0i32).unwrap();
    let woken = Value::new(0i32).unwrap();
    let doomed = start(
        &mut guard,
        Process::new(wait_forever, (cond.clone(), waiting.clone())),
    );
    assert!(wait_until(GENEROUS, || waiting.get() == 1 && cond.waiters() == 1));
    let alive = start(
        &mut guard,
        Process::new(waiter, (cond.clone(), waiting.clone(), woken.clone())),
    );
    assert!(wait_until(GENEROUS, || waiting.get() == 2 && cond.waiters() == 2));
    // Enqueued, the doomed waiter's next sleep is on its waiter slot.
    let mut slot_word = None;
    assert!(wait_until(GENEROUS, || {
        slot_word = futex_slept_on(doomed.pid());
        slot_word.is_some()
    }));
    let g = cond.lock();
    g.notify(1).unwrap(); // the doomed waiter is the oldest
    // It wakes and sleeps again taking the lock back, which this thread holds: it has left
    // its slot's word. It dies there, notified but before its wait returned.
    assert!(
        wait_until(GENEROUS, || futex_slept_on(doomed.pid())
            .is_some_and(|word| Some(word) != slot_word)),
        "the notified waiter did not go on to take the lock back"
    );
    doomed.kill().unwrap();
    doomed.join_timeout(GENEROUS).unwrap();
    drop(g);
    assert!(
        wait_until(GENEROUS, || woken.get() == 1),
        "the dead waiter swallowed the notification: the live one was never woken"
    );
    join_ok(&alive);
    assert_eq!(cond.waiters(), 0);
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
    assert!(!event.wait_timeout(Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));
    let p = start(&mut guard, Process::new(set_later, (event.clone(),)));
    assert!(event.wait_timeout(GENEROUS));
    assert!(event.is_set());
    join_ok(&p);
    event.clear();
    assert!(!event.is_set());
    let t = Instant::now();
    assert!(!event.wait_timeout(Duration::from_millis(50)));
    assert!(t.elapsed() >= Duration::from_millis(50));
}

fn wait_for_event(event: Event, done: Value<i32>) {
    if event.wait_timeout(GENEROUS) {
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
    let timed_out = rt.block_on(async move {
        tokio::time::timeout(Duration::from_millis(80), e.wait_async())
            .await
            .is_err()
    });
    assert!(timed_out);
    assert!(t.elapsed() >= Duration::from_millis(80));
    let setter = event.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        setter.set();
    });
    assert!(rt.block_on(async {
        tokio::time::timeout(GENEROUS, event.wait_async())
            .await
            .is_ok()
    }));
}

// ---- async waits -----------------------------------------------------------------------------

/// Child: once the parent waits on the condition, notifies it under the lock.
fn notify_when_waited_on(cond: Condition) -> procvisor::Result<()> {
    assert!(wait_until(GENEROUS, || cond.waiters() == 1));
    let g = cond.lock();
    Ok(g.notify_one()?)
}

#[test]
fn wait_async_is_woken_by_another_process_and_holds_every_level_again() {
    let mut guard = KillOnDrop::new();
    let cond = Condition::new().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outer = cond.lock();
    let inner = cond.lock(); // two levels of the condition's RLock
    let p = start(
        &mut guard,
        Process::new(notify_when_waited_on, (cond.clone(),)),
    );
    let woken = rt.block_on(async { tokio::time::timeout(GENEROUS, inner.wait_async()).await });
    assert_eq!(woken.expect("never notified"), Ok(()));
    join_ok(&p);
    // The polling thread (this one) owns the lock again, with both levels.
    let procvisor::AnyLock::RLock(rlock) = cond.as_lock() else {
        panic!("Condition::new has its own RLock");
    };
    assert!(rlock.is_mine());
    assert_eq!(rlock.count(), 2);
    drop(inner);
    drop(outer);
    assert_eq!(rlock.holder(), None);
}

#[test]
fn a_dropped_wait_async_withdraws_and_leaves_the_lock_held() {
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let g = cond.lock();
    let t = Instant::now();
    let gave_up = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(100), g.wait_async())
            .await
            .is_err()
    });
    assert!(gave_up);
    assert!(t.elapsed() >= Duration::from_millis(100));
    // As after a wait that timed out: the lock is held, the waiter's slot is given up.
    assert!(cond.as_lock().is_mine());
    assert!(wait_until(GENEROUS, || cond.waiters() == 0));
    g.notify_all().unwrap();
    drop(g);
    assert!(cond.try_lock().is_some(), "the lock was not given back");
}

/// Starts a [`waiter`] process and waits until it waits on `cond` behind `ahead` others.
fn queue_a_waiter(guard: &mut KillOnDrop, cond: &Condition, ahead: usize) -> (Child, Value<i32>) {
    let waiting = Value::new(0i32).unwrap();
    let woken = Value::new(0i32).unwrap();
    let p = start(
        guard,
        Process::new(waiter, (cond.clone(), waiting.clone(), woken.clone())),
    );
    assert!(wait_until(GENEROUS, || waiting.get() == 1
        && cond.waiters() == ahead + 1));
    (p, woken)
}

#[test]
fn a_wait_async_cancelled_by_a_timeout_gives_its_slot_back_and_notify_reaches_a_real_waiter() {
    let mut guard = KillOnDrop::new();
    let cond = Condition::new().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let g = cond.lock();
    let gave_up = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(100), g.wait_async())
            .await
            .is_err()
    });
    assert!(gave_up);
    assert!(
        cond.as_lock().is_mine(),
        "a cancelled wait leaves the lock held"
    );
    drop(g);
    assert!(
        wait_until(GENEROUS, || cond.waiters() == 0),
        "the cancelled wait kept its slot"
    );
    let (p, woken) = queue_a_waiter(&mut guard, &cond, 0);
    cond.lock().notify(1).unwrap();
    assert!(
        wait_until(GENEROUS, || woken.get() == 1),
        "notify(1) went to the cancelled wait, not to the process waiting"
    );
    join_ok(&p);
}

/// A waker that says when it is woken.
struct SendOnWake(std::sync::Mutex<std::sync::mpsc::Sender<()>>);

impl std::task::Wake for SendOnWake {
    fn wake(self: std::sync::Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

#[test]
fn a_wait_async_dropped_after_its_notification_arrived_passes_the_notification_on() {
    use std::future::Future;
    let mut guard = KillOnDrop::new();
    let cond = Condition::new().unwrap();
    let g = cond.lock();
    let (woke, woken_up) = std::sync::mpsc::channel();
    let waker = std::task::Waker::from(std::sync::Arc::new(SendOnWake(woke.into())));
    let mut wait = Box::pin(g.wait_async());
    let first = wait
        .as_mut()
        .poll(&mut std::task::Context::from_waker(&waker));
    assert!(first.is_pending(), "nobody notified yet");
    // The async wait sleeps (its lock released); a process queues behind it.
    let (p, woken) = queue_a_waiter(&mut guard, &cond, 1);
    cond.lock().notify(1).unwrap(); // the async wait is the oldest
    woken_up
        .recv_timeout(GENEROUS)
        .expect("the notified async wait's task was never woken");
    // Its caller gives up before polling it again: it never learns of the notification.
    drop(wait);
    assert!(
        cond.as_lock().is_mine(),
        "a cancelled wait leaves the lock held"
    );
    drop(g);
    assert!(
        wait_until(GENEROUS, || woken.get() == 1),
        "the dropped wait swallowed the notification: the process waiting was never woken"
    );
    join_ok(&p);
}
