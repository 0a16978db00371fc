//! `Lock` and `RLock` between real processes: exclusion, timeouts, release by another process,
//! recursion and owner checks (another thread, another process), a holder SIGKILLed while
//! holding the lock (the next acquirer is told), handles in args and through a Pipe, async.

procvisor::test_init!();

mod common;

use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, recv, start};
use procvisor::{Acquired, Connection, Error, Lock, Process, RLock, pipe};

// ---- Lock ------------------------------------------------------------------------------------

/// Child: reports a non-blocking attempt, a timed attempt (and how long it took), then takes
/// the lock blocking, reports, and releases on request.
fn contender(lock: Lock, conn: Connection) -> procvisor::Result<()> {
    conn.send(&lock.acquire(false, None).is_some())?;
    let t = Instant::now();
    let timed = lock
        .acquire(true, Some(Duration::from_millis(200)))
        .is_some();
    conn.send(&(timed, t.elapsed()))?;
    conn.send(&lock.acquire(true, None))?;
    let () = conn.recv()?;
    lock.release()
}

#[test]
fn a_lock_excludes_another_process_and_times_out() {
    let mut guard = KillOnDrop::new();
    let lock = Lock::new().unwrap();
    let held = lock.lock();
    let (mine, theirs) = pipe().unwrap();
    let p = start(&mut guard, Process::new(contender, (lock.clone(), theirs)));
    assert!(!recv::<bool>(&mine), "took a held lock without waiting");
    let (timed, took): (bool, Duration) = recv(&mine);
    assert!(!timed, "took a held lock within the timeout");
    assert!(took >= Duration::from_millis(200), "gave up after {took:?}");
    assert!(took < GENEROUS);
    drop(held);
    assert_eq!(recv::<Option<Acquired>>(&mine), Some(Acquired::Clean));
    assert_eq!(lock.holder(), Some(p.pid()));
    assert!(lock.acquire(false, None).is_none());
    mine.send(&()).unwrap();
    join_ok(&p);
    assert!(!lock.is_locked());
}

fn release_it(lock: Lock) -> procvisor::Result<()> {
    lock.release()
}

#[test]
fn any_process_may_release_a_lock_and_releasing_an_unlocked_one_is_an_error() {
    let mut guard = KillOnDrop::new();
    let lock = Lock::new().unwrap();
    assert!(lock.acquire(false, None).is_some());
    let p = start(&mut guard, Process::new(release_it, (lock.clone(),)));
    join_ok(&p);
    assert!(!lock.is_locked());
    assert!(matches!(
        lock.release(),
        Err(Error::ReleaseUnlocked { what: "Lock" })
    ));
    // The child's release of an unlocked lock fails the same way (exit code 1).
    let p = start(&mut guard, Process::new(release_it, (lock.clone(),)));
    p.join_timeout(GENEROUS).unwrap();
    assert_eq!(p.exitcode(), Some(1));
}

/// Child: takes the lock, says so, and sleeps until killed.
fn hold_until_killed(lock: Lock, conn: Connection) -> procvisor::Result<()> {
    let _g = lock.lock();
    conn.send(&procvisor::current_process().pid())?;
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

/// Child: announces it is about to wait, then takes the lock and reports how.
fn acquire_and_report(lock: Lock, conn: Connection) -> procvisor::Result<()> {
    conn.send(&"waiting")?;
    let got = lock.acquire(true, None);
    conn.send(&got)?;
    lock.release()
}

#[test]
fn a_lock_whose_holder_is_sigkilled_goes_to_the_next_acquirer_with_a_notice() {
    let mut guard = KillOnDrop::new();
    let lock = Lock::new().unwrap();
    let (a, a_child) = pipe().unwrap();
    let holder = start(
        &mut guard,
        Process::new(hold_until_killed, (lock.clone(), a_child)),
    );
    let holder_pid: i32 = recv(&a);
    assert_eq!(holder_pid, holder.pid());
    let (b, b_child) = pipe().unwrap();
    let waiter = start(
        &mut guard,
        Process::new(acquire_and_report, (lock.clone(), b_child)),
    );
    assert_eq!(recv::<String>(&b), "waiting");
    // The waiter sleeps on the lock; it must still be waiting a moment later.
    assert!(!b.poll_timeout(Duration::from_millis(100)).unwrap());
    holder.kill().unwrap();
    let got: Option<Acquired> = recv(&b);
    assert_eq!(got, Some(Acquired::OwnerDied { pid: holder.pid() }));
    join_ok(&waiter);
    holder.join_timeout(GENEROUS).unwrap();
    // The notice is given once.
    assert_eq!(lock.acquire(false, None), Some(Acquired::Clean));
    lock.release().unwrap();
}

#[test]
fn a_lock_whose_holder_died_while_nobody_waited_is_recovered_by_the_next_acquirer() {
    let mut guard = KillOnDrop::new();
    let lock = Lock::new().unwrap();
    let (a, a_child) = pipe().unwrap();
    let holder = start(
        &mut guard,
        Process::new(hold_until_killed, (lock.clone(), a_child)),
    );
    let _: i32 = recv(&a);
    holder.kill().unwrap();
    holder.join_timeout(GENEROUS).unwrap();
    let g = lock
        .lock_timeout(GENEROUS)
        .expect("the dead holder's lock is given back");
    assert_eq!(g.previous_owner_died(), Some(holder.pid()));
}

/// Child: receives a lock through the pipe while running, takes it, reports, waits, releases.
fn lock_from_the_pipe(conn: Connection) -> procvisor::Result<()> {
    let lock: Lock = conn.recv()?;
    let _g = lock.lock();
    conn.send(&lock.holder())?;
    let () = conn.recv()?;
    Ok(())
}

#[test]
fn a_lock_sent_through_a_pipe_to_a_running_process_is_the_same_lock() {
    let mut guard = KillOnDrop::new();
    let (mine, theirs) = pipe().unwrap();
    let p = start(&mut guard, Process::new(lock_from_the_pipe, (theirs,)));
    let lock = Lock::new().unwrap(); // made after the child started
    mine.send(&lock).unwrap();
    let holder: Option<i32> = recv(&mine);
    assert_eq!(holder, Some(p.pid()));
    assert_eq!(lock.holder(), Some(p.pid()));
    assert!(lock.acquire(false, None).is_none());
    mine.send(&()).unwrap();
    join_ok(&p);
    assert!(lock.acquire(false, None).is_some());
}

#[test]
fn acquire_async_waits_without_blocking_the_runtime() {
    let mut guard = KillOnDrop::new();
    let lock = Lock::new().unwrap();
    let (a, a_child) = pipe().unwrap();
    let holder = start(
        &mut guard,
        Process::new(hold_until_killed, (lock.clone(), a_child)),
    );
    let _: i32 = recv(&a);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (got, ticks) = rt.block_on(async {
        let ticker = tokio::spawn(async {
            let mut n = 0u32;
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                n += 1;
            }
            n
        });
        // Gives up after 300 ms while the single runtime thread keeps running the ticker.
        let none = lock.acquire_async(Some(Duration::from_millis(300))).await;
        assert!(none.is_none());
        let killer = holder.clone();
        tokio::task::spawn_blocking(move || killer.kill().unwrap());
        let got = lock.acquire_async(Some(GENEROUS)).await;
        (got, ticker.await.unwrap())
    });
    assert_eq!(ticks, 5);
    assert_eq!(got, Some(Acquired::OwnerDied { pid: holder.pid() }));
    lock.release().unwrap();
    holder.join_timeout(GENEROUS).unwrap();
}

// ---- RLock -----------------------------------------------------------------------------------

#[test]
fn an_rlock_counts_recursion_and_only_its_owner_thread_releases_it() {
    let rlock = RLock::new().unwrap();
    assert!(rlock.acquire(true, None).is_some());
    assert!(rlock.acquire(false, None).is_some());
    assert_eq!(rlock.count(), 2);
    let other = rlock.clone();
    let err = std::thread::spawn(move || {
        let err = other.release().unwrap_err();
        let blocked = other.acquire(false, None).is_none();
        (err, blocked)
    })
    .join()
    .unwrap();
    assert!(
        matches!(err.0, Error::NotOwner { holder_kind: "thread", holder_pid } if holder_pid == std::process::id() as i32),
        "{:?}",
        err.0
    );
    assert!(err.1, "another thread took an owned RLock");
    rlock.release().unwrap();
    assert!(rlock.is_mine());
    rlock.release().unwrap();
    assert!(matches!(
        rlock.release(),
        Err(Error::ReleaseUnlocked { what: "RLock" })
    ));
}

/// Child: tries to release an RLock its parent owns and reports the error's message.
fn release_foreign_rlock(rlock: RLock, conn: Connection) -> procvisor::Result<()> {
    let err = rlock.release().expect_err("released a parent's RLock");
    let kind = match err {
        Error::NotOwner {
            holder_kind,
            holder_pid,
        } => format!("{holder_kind} {holder_pid}"),
        other => format!("unexpected {other}"),
    };
    Ok(conn.send(&kind)?)
}

#[test]
fn an_rlock_release_by_another_process_is_refused() {
    let mut guard = KillOnDrop::new();
    let rlock = RLock::new().unwrap();
    let _g = rlock.lock();
    let (mine, theirs) = pipe().unwrap();
    let p = start(
        &mut guard,
        Process::new(release_foreign_rlock, (rlock.clone(), theirs)),
    );
    let kind: String = recv(&mine);
    assert_eq!(kind, format!("process {}", std::process::id()));
    join_ok(&p);
    assert_eq!(rlock.count(), 1);
}

/// Child: takes an RLock three levels deep, says so, and sleeps until killed.
fn hold_rlock_until_killed(rlock: RLock, conn: Connection) -> procvisor::Result<()> {
    let _a = rlock.lock();
    let _b = rlock.lock();
    let _c = rlock.lock();
    conn.send(&rlock.count())?;
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn acquire_rlock_and_report(rlock: RLock, conn: Connection) -> procvisor::Result<()> {
    conn.send(&"waiting")?;
    let got = rlock.acquire(true, None);
    conn.send(&(got, rlock.count()))?;
    rlock.release()
}

#[test]
fn an_rlock_whose_owner_is_sigkilled_goes_to_the_next_acquirer_with_a_notice() {
    let mut guard = KillOnDrop::new();
    let rlock = RLock::new().unwrap();
    let (a, a_child) = pipe().unwrap();
    let holder = start(
        &mut guard,
        Process::new(hold_rlock_until_killed, (rlock.clone(), a_child)),
    );
    assert_eq!(recv::<u64>(&a), 3);
    let (b, b_child) = pipe().unwrap();
    let waiter = start(
        &mut guard,
        Process::new(acquire_rlock_and_report, (rlock.clone(), b_child)),
    );
    assert_eq!(recv::<String>(&b), "waiting");
    assert!(!b.poll_timeout(Duration::from_millis(100)).unwrap());
    holder.kill().unwrap();
    let (got, count): (Option<Acquired>, u64) = recv(&b);
    assert_eq!(got, Some(Acquired::OwnerDied { pid: holder.pid() }));
    assert_eq!(
        count, 1,
        "the dead owner's recursion levels were not forgotten"
    );
    join_ok(&waiter);
    holder.join_timeout(GENEROUS).unwrap();
    assert_eq!(rlock.holder(), None);
}

#[test]
fn handles_are_send_sync_clone_and_serde() {
    fn check<T: Send + Sync + Clone + serde::Serialize + serde::de::DeserializeOwned>() {}
    check::<Lock>();
    check::<RLock>();
    check::<procvisor::Semaphore>();
    check::<procvisor::BoundedSemaphore>();
    check::<procvisor::Condition>();
    check::<procvisor::Event>();
    check::<procvisor::Barrier>();
    check::<procvisor::Value<f64>>();
    check::<procvisor::Array<i32>>();
    check::<procvisor::RawValue<u8>>();
    check::<procvisor::RawArray<procvisor::Char>>();
}
