//! `Barrier` between real processes: three parties pass together with distinct indices, the
//! action runs once per generation, abort and a timeout break it, reset repairs it.

procvisor::test_init!();

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, start, wait_until};
use procvisor::{Array, Barrier, Child, Error, Process};

/// Child: waits twice; records its two indices at `slot` and `slot + 3`.
fn party(barrier: Barrier, results: Array<i32>, slot: usize) -> procvisor::Result<()> {
    let first = barrier.wait(Some(GENEROUS))?;
    results.set(slot, first as i32)?;
    let second = barrier.wait(Some(GENEROUS))?;
    results.set(slot + 3, second as i32)
}

#[test]
fn three_processes_pass_together_twice_with_distinct_indices() {
    let mut guard = KillOnDrop::new();
    let barrier = Barrier::new(3).unwrap();
    assert_eq!(barrier.parties(), 3);
    let results = Array::from_slice(&[-1i32; 6]).unwrap();
    let procs: Vec<Child> = (0..3)
        .map(|i| {
            start(
                &mut guard,
                Process::new(party, (barrier.clone(), results.clone(), i)),
            )
        })
        .collect();
    for p in &procs {
        join_ok(p);
    }
    let r = results.to_vec();
    for round in [&r[..3], &r[3..]] {
        let mut seen = round.to_vec();
        seen.sort();
        assert_eq!(seen, [0, 1, 2], "{r:?}");
    }
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

/// Child: waits once and reports whether the barrier broke (1) or passed (0).
fn wait_once(barrier: Barrier, results: Array<i32>, slot: usize, timeout_ms: u64) {
    let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
    let t = Instant::now();
    let outcome = match barrier.wait(timeout.or(Some(GENEROUS))) {
        Ok(_) => 0,
        Err(Error::BrokenBarrier) => 1,
        Err(_) => 2,
    };
    let _ = results.set(slot, outcome);
    let _ = results.set(slot + 1, t.elapsed().as_millis() as i32);
}

#[test]
fn abort_breaks_the_barrier_for_waiting_processes_until_reset() {
    let mut guard = KillOnDrop::new();
    let barrier = Barrier::new(3).unwrap();
    let results = Array::from_slice(&[-1i32; 4]).unwrap();
    let procs: Vec<Child> = (0..2)
        .map(|i| {
            start(
                &mut guard,
                Process::new(wait_once, (barrier.clone(), results.clone(), 2 * i, 0)),
            )
        })
        .collect();
    assert!(wait_until(GENEROUS, || barrier.n_waiting() == 2));
    barrier.abort();
    for p in &procs {
        join_ok(p);
    }
    let r = results.to_vec();
    assert_eq!((r[0], r[2]), (1, 1), "{r:?}");
    assert!(barrier.broken());
    assert!(matches!(barrier.wait(None), Err(Error::BrokenBarrier)));
    barrier.reset();
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

#[test]
fn a_timeout_breaks_the_barrier_for_every_party() {
    let mut guard = KillOnDrop::new();
    let barrier = Barrier::new(3).unwrap();
    let results = Array::from_slice(&[-1i32; 4]).unwrap();
    let patient = start(
        &mut guard,
        Process::new(wait_once, (barrier.clone(), results.clone(), 0, 0)),
    );
    assert!(wait_until(GENEROUS, || barrier.n_waiting() == 1));
    let hasty = start(
        &mut guard,
        Process::new(wait_once, (barrier.clone(), results.clone(), 2, 200)),
    );
    join_ok(&hasty);
    join_ok(&patient);
    let r = results.to_vec();
    assert_eq!((r[0], r[2]), (1, 1), "{r:?}");
    assert!(r[3] >= 200, "the timed-out party gave up after {} ms", r[3]);
    assert!(barrier.broken());
    barrier.reset();
    assert!(!barrier.broken());
}

#[test]
fn reset_while_parties_wait_breaks_their_wait_and_leaves_the_barrier_usable() {
    let mut guard = KillOnDrop::new();
    let barrier = Barrier::new(2).unwrap();
    let results = Array::from_slice(&[-1i32; 2]).unwrap();
    let p = start(
        &mut guard,
        Process::new(wait_once, (barrier.clone(), results.clone(), 0, 0)),
    );
    assert!(wait_until(GENEROUS, || barrier.n_waiting() == 1));
    barrier.reset();
    join_ok(&p);
    assert_eq!(results.get(0).unwrap(), 1);
    assert!(!barrier.broken());
    // Usable again: two parties pass.
    let p = start(
        &mut guard,
        Process::new(wait_once, (barrier.clone(), results.clone(), 0, 0)),
    );
    barrier.wait(Some(GENEROUS)).unwrap();
    join_ok(&p);
    assert_eq!(results.get(0).unwrap(), 0);
}

static ACTIONS: AtomicU32 = AtomicU32::new(0);

fn count_action() {
    ACTIONS.fetch_add(1, Ordering::SeqCst);
}

fn failing_action() {
    panic!("the barrier's action fails");
}

#[test]
fn the_action_runs_once_per_generation_and_a_failing_action_breaks_the_barrier() {
    let barrier = Barrier::new(1).unwrap().with_action(count_action);
    assert_eq!(barrier.wait(None).unwrap(), 0);
    assert_eq!(barrier.wait(None).unwrap(), 0);
    assert_eq!(ACTIONS.load(Ordering::SeqCst), 2);
    let failing = Barrier::new(1).unwrap().with_action(failing_action);
    assert!(matches!(failing.wait(None), Err(Error::BrokenBarrier)));
    assert!(failing.broken());
}

static CHILD_ACTIONS: AtomicU32 = AtomicU32::new(0);

fn count_child_action() {
    CHILD_ACTIONS.fetch_add(1, Ordering::SeqCst);
}

/// Child: the last party to arrive runs the action in its own process; it reports its index
/// and whether its own counter moved.
fn party_with_action(barrier: Barrier, results: Array<i32>) -> procvisor::Result<()> {
    let index = barrier.wait(Some(GENEROUS))?;
    results.set(0, index as i32)?;
    results.set(1, CHILD_ACTIONS.load(Ordering::SeqCst) as i32)
}

#[test]
fn the_action_travels_to_a_child_and_runs_in_the_last_arriving_process() {
    let mut guard = KillOnDrop::new();
    let barrier = Barrier::new(2).unwrap().with_action(count_child_action);
    let results = Array::from_slice(&[-1i32; 2]).unwrap();
    let p = start(
        &mut guard,
        Process::new(party_with_action, (barrier.clone(), results.clone())),
    );
    assert!(wait_until(GENEROUS, || barrier.n_waiting() == 1));
    // This process arrives last: the action runs here.
    assert_eq!(barrier.wait(Some(GENEROUS)).unwrap(), 1);
    assert_eq!(CHILD_ACTIONS.load(Ordering::SeqCst), 1);
    join_ok(&p);
    assert_eq!(results.to_vec(), [0, 0]);
}

#[test]
fn bad_party_counts_are_refused() {
    assert!(matches!(
        Barrier::new(0),
        Err(Error::InvalidArgument {
            argument: "parties",
            ..
        })
    ));
    assert!(Barrier::new(procvisor::synchronize::MAX_PARTIES + 1).is_err());
}
