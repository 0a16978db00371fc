//! `Semaphore` and `BoundedSemaphore` between real processes: units across processes,
//! over-release, a holder SIGKILLed while holding a unit (given back with a notice), a
//! signalling semaphore that gains nothing from a dead acquirer.

procvisor::test_init!();

mod common;

use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, recv, start};
use procvisor::{Acquired, BoundedSemaphore, Connection, Error, Process, Semaphore, pipe};

#[test]
fn a_bounded_semaphore_refuses_a_release_past_its_initial_value() {
    let sem = BoundedSemaphore::new(2).unwrap();
    let err = sem.release().unwrap_err();
    assert!(
        matches!(err, Error::SemaphoreOverRelease { max: 2 }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "semaphore released too many times: its value cannot exceed 2"
    );
    assert!(sem.acquire(false, None).is_some());
    sem.release().unwrap();
    assert!(sem.release().is_err());
    assert_eq!(sem.value(), 2);
    // An unbounded one may be raised.
    let open = Semaphore::new(0).unwrap();
    open.release().unwrap();
    assert_eq!(open.value(), 1);
}

fn over_release(sem: BoundedSemaphore, conn: Connection) -> procvisor::Result<()> {
    let first = sem.release().is_ok(); // gives back the parent's unit
    let second = matches!(sem.release(), Err(Error::SemaphoreOverRelease { max: 1 }));
    Ok(conn.send(&(first, second))?)
}

#[test]
fn over_release_is_refused_in_another_process_too() {
    let mut guard = KillOnDrop::new();
    let sem = BoundedSemaphore::new(1).unwrap();
    assert!(sem.acquire(false, None).is_some());
    let (mine, theirs) = pipe().unwrap();
    let p = start(
        &mut guard,
        Process::new(over_release, (sem.clone(), theirs)),
    );
    assert_eq!(recv::<(bool, bool)>(&mine), (true, true));
    join_ok(&p);
    assert_eq!(sem.value(), 1);
}

fn hold_units(sem: Semaphore, units: u32, conn: Connection) -> procvisor::Result<()> {
    for _ in 0..units {
        let _ = sem.acquire(true, None);
    }
    conn.send(&sem.held_here())?;
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

fn take_one(sem: Semaphore, conn: Connection) -> procvisor::Result<()> {
    conn.send(&"waiting")?;
    let got = sem.acquire(true, Some(GENEROUS));
    conn.send(&got)?;
    Ok(())
}

#[test]
fn units_of_a_sigkilled_holder_are_given_back_with_a_notice() {
    let mut guard = KillOnDrop::new();
    let sem = Semaphore::new(3).unwrap();
    let (a, a_child) = pipe().unwrap();
    let holder = start(
        &mut guard,
        Process::new(hold_units, (sem.clone(), 2, a_child)),
    );
    assert_eq!(recv::<u32>(&a), 2);
    let _mine = sem.lock();
    assert_eq!(sem.value(), 0);
    let t = Instant::now();
    assert!(
        sem.acquire(true, Some(Duration::from_millis(150)))
            .is_none()
    );
    assert!(t.elapsed() >= Duration::from_millis(150));
    let (b, b_child) = pipe().unwrap();
    let waiter = start(&mut guard, Process::new(take_one, (sem.clone(), b_child)));
    assert_eq!(recv::<String>(&b), "waiting");
    assert!(!b.poll_timeout(Duration::from_millis(100)).unwrap());
    holder.kill().unwrap();
    let got: Option<Acquired> = recv(&b);
    let dead = holder.pid();
    assert_eq!(got, Some(Acquired::OwnerDied { pid: dead }));
    join_ok(&waiter); // exits holding its unit: given back when someone waits
    holder.join_timeout(GENEROUS).unwrap();
    // The holder's second unit is there too, with its notice.
    assert_eq!(
        sem.acquire(false, None),
        Some(Acquired::OwnerDied { pid: dead })
    );
    // The waiter's unit (it exited without releasing) comes back when someone must wait.
    let again = sem.acquire(true, Some(GENEROUS));
    assert_eq!(again, Some(Acquired::OwnerDied { pid: waiter.pid() }));
}

fn consume_signal(sem: Semaphore, conn: Connection) -> procvisor::Result<()> {
    let got = sem.acquire(true, Some(GENEROUS));
    conn.send(&got.is_some())?;
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

#[test]
fn a_signalling_semaphore_gains_no_unit_from_a_dead_consumer() {
    let mut guard = KillOnDrop::new();
    let sem = Semaphore::new(0).unwrap();
    let (mine, theirs) = pipe().unwrap();
    let consumer = start(
        &mut guard,
        Process::new(consume_signal, (sem.clone(), theirs)),
    );
    sem.release().unwrap(); // the signal
    assert!(recv::<bool>(&mine));
    consumer.kill().unwrap();
    consumer.join_timeout(GENEROUS).unwrap();
    // Waiting makes the watch look at the dead consumer; its unit was a signal, not a loan.
    let t = Instant::now();
    assert!(
        sem.acquire(true, Some(Duration::from_millis(200)))
            .is_none()
    );
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(sem.value(), 0);
}

#[test]
fn acquire_async_gets_a_unit_released_by_another_thread() {
    let sem = Semaphore::new(0).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let releaser = sem.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        releaser.release().unwrap();
    });
    let got = rt.block_on(sem.acquire_async(Some(GENEROUS)));
    assert_eq!(got, Some(Acquired::Clean));
    t.join().unwrap();
}
