//! Queues survive the death of the processes using them: 20 rounds of SIGKILLing a producer
//! and a consumer while others keep working (no duplicate, per-producer order kept, items lost
//! only in the dead consumers' hands), a process killed while holding the queue's internal
//! locks, and a SIGKILLed process tree that leaves no named object behind.

procvisor::test_init!();

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{GENEROUS, KillOnDrop, join_ok, say, start, wait_until};
use procvisor::error::PutError;
use procvisor::{Child, Connection, Process, Queue, pipe};

type Item = Option<(u32, u64)>;

/// Child: puts `(id, 0)`, `(id, 1)`, … until asked to stop, then reports how many it put.
fn produce(q: Queue<Item>, id: u32, report: Connection) -> procvisor::Result<()> {
    let mut seq = 0u64;
    while !procvisor::stop_requested() {
        match q.put_timeout(&Some((id, seq)), Duration::from_millis(20)) {
            Ok(()) => seq += 1,
            Err(PutError::Full) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(report.send(&seq)?)
}

/// Child: gets items until `None`, reporting each one on its pipe as soon as it has it.
fn consume(q: Queue<Item>, report: Connection) -> procvisor::Result<()> {
    while let Some(item) = q.get()? {
        report.send(&item)?;
    }
    Ok(())
}

/// What one consumer reported, collected by a thread until its pipe closes.
struct Collected {
    items: Arc<Mutex<Vec<(u32, u64)>>>,
    done: std::thread::JoinHandle<()>,
}

fn collect(conn: Connection) -> Collected {
    let items = Arc::new(Mutex::new(Vec::new()));
    let sink = items.clone();
    let done = std::thread::spawn(move || {
        // Ends at EOF, or at a report cut short by the consumer's death.
        while let Ok(item) = conn.recv::<(u32, u64)>() {
            sink.lock().unwrap().push(item);
        }
    });
    Collected { items, done }
}

fn start_consumer(guard: &mut KillOnDrop, q: &Queue<Item>) -> (Child, Collected) {
    let (ours, theirs) = pipe().unwrap();
    let p = start(guard, Process::new(consume, (q.clone(), theirs)));
    (p, collect(ours))
}

#[test]
fn twenty_rounds_of_sigkilled_producers_and_consumers_corrupt_nothing() {
    const ROUNDS: u32 = 20;
    let mut guard = KillOnDrop::new();
    // Bounded and small, so that producers also block, and the ring wraps many times.
    let q = Queue::<Item>::builder()
        .max_len(500)
        .capacity(8192)
        .build()
        .unwrap();
    let mut collected = Vec::new();
    let mut stable_consumers = Vec::new();
    for _ in 0..2 {
        let (p, c) = start_consumer(&mut guard, &q);
        stable_consumers.push(p);
        collected.push(c);
    }
    let mut stable_producers = Vec::new();
    for id in 0..2 {
        let (ours, theirs) = pipe().unwrap();
        let p = start(&mut guard, Process::new(produce, (q.clone(), id, theirs)));
        stable_producers.push((p, ours));
    }

    for round in 0..ROUNDS {
        let victim_id = 100 + round;
        let (dead_end, theirs) = pipe().unwrap();
        let victim_producer = start(
            &mut guard,
            Process::new(produce, (q.clone(), victim_id, theirs)),
        );
        let (victim_consumer, victim_items) = start_consumer(&mut guard, &q);
        let items_of_victim = victim_items.items.clone();
        collected.push(victim_items);
        let all: Vec<_> = collected.iter().map(|c| c.items.clone()).collect();
        let busy = wait_until(GENEROUS, || {
            items_of_victim.lock().unwrap().len() >= 3
                && all
                    .iter()
                    .any(|c| c.lock().unwrap().iter().any(|&(id, _)| id == victim_id))
        });
        assert!(busy, "round {round}: the victims never got going");
        victim_producer.kill().unwrap();
        victim_consumer.kill().unwrap();
        victim_producer.join_timeout(GENEROUS).unwrap();
        victim_consumer.join_timeout(GENEROUS).unwrap();
        assert_eq!(victim_producer.exitcode(), Some(-libc::SIGKILL));
        assert_eq!(victim_consumer.exitcode(), Some(-libc::SIGKILL));
        drop(dead_end);
    }

    // The survivors still work: stop the producers, learn how many they put, drain.
    let mut put_by = HashMap::new();
    for (id, (p, report)) in stable_producers.iter().enumerate() {
        p.stop(GENEROUS);
        assert_eq!(p.exitcode(), Some(0), "{p}");
        put_by.insert(id as u32, report.recv::<u64>().unwrap());
    }
    for _ in &stable_consumers {
        q.put(&None).unwrap();
    }
    for p in &stable_consumers {
        join_ok(p);
    }
    assert!(q.is_empty(), "{} items left", q.len());

    let mut seen = HashSet::new();
    let mut by_producer: HashMap<u32, BTreeSet<u64>> = HashMap::new();
    for c in collected {
        c.done.join().unwrap();
        let items = c.items.lock().unwrap();
        let mut last: HashMap<u32, u64> = HashMap::new();
        for &(id, seq) in items.iter() {
            assert!(seen.insert((id, seq)), "({id}, {seq}) was delivered twice");
            if let Some(&prev) = last.get(&id) {
                assert!(seq > prev, "producer {id}: {seq} came after {prev}");
            }
            last.insert(id, seq);
            by_producer.entry(id).or_default().insert(seq);
        }
    }
    // Items may be lost only in a killed consumer's hands: at most one per kill. Everything a
    // stable producer put, and everything a victim producer committed (up to its last item
    // seen), was delivered otherwise.
    let mut missing = 0u64;
    for (id, seqs) in &by_producer {
        let expected = match put_by.get(id) {
            Some(&n) => n,
            None => seqs.last().map_or(0, |&last| last + 1),
        };
        assert!(seqs.iter().all(|&s| s < expected), "producer {id}");
        missing += expected - seqs.len() as u64;
    }
    for id in 0..2 {
        assert!(put_by[&id] > 0, "stable producer {id} put nothing");
    }
    eprintln!(
        "delivered {} items; stable producers put {put_by:?}; {missing} lost",
        seen.len()
    );
    assert!(
        missing <= u64::from(ROUNDS),
        "{missing} items lost, more than the {ROUNDS} killed consumers could hold"
    );
}

/// Child: takes the queue's internal locks, says so, and waits to be killed.
fn hold_locks(q: Queue<u32>, ctl: Connection) -> procvisor::Result<()> {
    q.hold_internal_locks_for_tests();
    ctl.send(&())?;
    let _ = ctl.recv::<()>();
    Ok(())
}

#[test]
fn a_process_killed_holding_the_internal_locks_does_not_wedge_the_queue() {
    let mut guard = KillOnDrop::new();
    let q = Queue::<u32>::new().unwrap();
    q.put(&1).unwrap();
    let (ours, theirs) = pipe().unwrap();
    let holder = start(&mut guard, Process::new(hold_locks, (q.clone(), theirs)));
    ours.recv::<()>().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let user = {
        let q = q.clone();
        std::thread::spawn(move || {
            q.put(&2).unwrap();
            let a = q.get().unwrap();
            let b = q.get().unwrap();
            let _ = tx.send((a, b));
        })
    };
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "the locks were not held"
    );
    holder.kill().unwrap();
    let got = rx.recv_timeout(GENEROUS).expect("the queue stayed wedged");
    assert_eq!(got, (1, 2));
    user.join().unwrap();
    holder.join_timeout(GENEROUS).unwrap();
    q.put(&3).unwrap();
    assert_eq!(q.try_get().unwrap(), 3);
}

// ---- a SIGKILLed tree leaves nothing behind ------------------------------------------------

fn busy_producer(q: Queue<u64>) {
    let mut i = 0;
    loop {
        if q.put_timeout(&i, Duration::from_millis(50)).is_ok() {
            i += 1;
        }
    }
}

fn busy_consumer(q: Queue<u64>) {
    loop {
        let _ = q.get_timeout(Duration::from_millis(50));
    }
}

/// Driver: a queue with a producer and a consumer child, all busy until killed.
#[test]
#[ignore]
fn driver_queue_tree() {
    if !common::in_driver() {
        return;
    }
    let q = Queue::<u64>::bounded(100).unwrap();
    let producer = Process::new(busy_producer, (q.clone(),)).start().unwrap();
    let consumer = Process::new(busy_consumer, (q.clone(),)).start().unwrap();
    say(format!("PID {}", std::process::id()));
    say(format!("CHILD {}", producer.pid()));
    say(format!("CHILD {}", consumer.pid()));
    say("READY");
    loop {
        std::thread::park();
    }
}

fn names_in(dir: &std::path::Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn fd_targets(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_sigkilled_tree_using_a_queue_leaves_no_named_object_behind() {
    let shm = std::path::Path::new("/dev/shm");
    let tmp = std::env::temp_dir();
    let (shm_before, tmp_before) = (names_in(shm), names_in(&tmp));
    let mut driver = common::spawn_driver("driver_queue_tree", None);
    let pid: i32 = driver.expect_line("PID", GENEROUS).parse().unwrap();
    let mut pids = vec![pid];
    for _ in 0..2 {
        pids.push(driver.expect_line("CHILD", GENEROUS).parse().unwrap());
    }
    driver.expect_line("READY", GENEROUS);
    let _strays = common::PidsGuard(pids.clone());
    // The queue's memory is an anonymous memfd in every process of the tree, nothing else.
    for &p in &pids {
        // A child maps the queue once it has decoded its arguments.
        let mapped = wait_until(GENEROUS, || {
            fd_targets(p)
                .iter()
                .any(|t| t.starts_with("/memfd:procvisor"))
        });
        let targets = fd_targets(p);
        assert!(mapped, "{p}: {targets:?}");
        assert!(
            !targets.iter().any(|t| t.starts_with("/dev/shm")),
            "{p}: {targets:?}"
        );
    }
    common::kill_driver_and_expect_descendants_gone(&mut driver.guard, &pids);
    let ours = |name: &String| {
        name.contains("procvisor") && pids.iter().any(|p| name.contains(&p.to_string()))
    };
    let new_shm: Vec<_> = names_in(shm)
        .difference(&shm_before)
        .filter(|n| ours(n) || n.contains("queue"))
        .cloned()
        .collect();
    let new_tmp: Vec<_> = names_in(&tmp)
        .difference(&tmp_before)
        .filter(|n| ours(n))
        .cloned()
        .collect();
    assert!(new_shm.is_empty(), "left in /dev/shm: {new_shm:?}");
    assert!(new_tmp.is_empty(), "left in {}: {new_tmp:?}", tmp.display());
}

// ---- the exit sequence flushes what the feeder holds -----------------------------------------

fn count_until_none(q: Queue<Option<u32>>, go: procvisor::Event) -> procvisor::Result<()> {
    // Nothing is read before the parent has put everything, so most of it must wait in the
    // parent's feeder when the parent's main returns.
    go.wait(None);
    let (mut n, mut in_order) = (0u32, true);
    while let Some(i) = q.get()? {
        in_order &= i == n;
        n += 1;
    }
    say(format!("CONSUMED {n} {in_order}"));
    Ok(())
}

/// Driver: puts far more than the ring holds (the rest waits in the feeder), then ends main.
#[test]
#[ignore]
fn driver_exit_flushes_the_feeder() {
    if !common::in_driver() {
        return;
    }
    let q = Queue::<Option<u32>>::builder()
        .capacity(4096)
        .build()
        .unwrap();
    let go = procvisor::Event::new().unwrap();
    let _child = Process::new(count_until_none, (q.clone(), go.clone()))
        .start()
        .unwrap();
    for i in 0..20_000 {
        q.put(&Some(i)).unwrap();
    }
    q.put(&None).unwrap();
    say(format!("LEN {}", q.len()));
    go.set();
    // Returning ends the program: the exit sequence flushes the feeder, then joins the child.
}

#[test]
fn a_main_process_that_exits_flushes_its_feeder_before_joining_its_children() {
    let out = common::run_driver("driver_exit_flushes_the_feeder");
    let stdout = common::stdout_of(&out);
    assert!(out.status.success(), "{}", common::describe(&out));
    let len: usize = common::line_with(&stdout, "LEN").parse().unwrap();
    // The 4 KiB ring holds at most 512 such items: the rest waited in the feeder.
    assert!(len > 512, "the feeder was not needed: {len}");
    assert_eq!(
        common::line_with(&stdout, "CONSUMED"),
        "20000 true",
        "{}",
        common::describe(&out)
    );
}
