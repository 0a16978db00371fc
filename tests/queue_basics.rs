//! `Queue`, `JoinableQueue` and `SimpleQueue` between real processes: timeouts (`Empty`,
//! `Full`), non-blocking calls, sizes, closing, `task_done` / `join`, FIFO per producer with
//! several producers and consumers, items bigger than the ring, undecodable items, a child that
//! exits before anyone reads, the overflow feeder and `cancel_join_thread`, handles sent to a
//! running process through a pipe and through a queue, and the async API (cancel safety
//! included).

procvisor::test_init!();

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, start};
use procvisor::error::{GetError, PutError, QueueError};
use procvisor::{Child, Connection, JoinableQueue, Process, Queue, SimpleQueue, StartMethod, pipe};

// ---- timeouts and non-blocking calls ------------------------------------------------------

#[test]
fn get_with_a_timeout_on_an_empty_queue_is_empty_after_about_the_timeout() {
    let q = Queue::<u32>::new().unwrap();
    let t = Instant::now();
    let r = q.get_timeout(Duration::from_millis(200));
    let took = t.elapsed();
    assert!(matches!(r, Err(GetError::Empty)), "{r:?}");
    assert!(took >= Duration::from_millis(200), "gave up after {took:?}");
    assert!(took < GENEROUS, "took {took:?}");
    assert_eq!(
        GetError::Empty.to_string(),
        "the queue is empty: no item was available in time"
    );
}

#[test]
fn put_with_a_timeout_on_a_full_queue_is_full_after_about_the_timeout() {
    let q = Queue::<String>::bounded(2).unwrap();
    q.put(&"a".into()).unwrap();
    q.put(&"b".into()).unwrap();
    let t = Instant::now();
    let r = q.put_timeout(&"c".into(), Duration::from_millis(200));
    let took = t.elapsed();
    assert!(matches!(r, Err(PutError::Full)), "{r:?}");
    assert!(took >= Duration::from_millis(200), "gave up after {took:?}");
    assert!(took < GENEROUS);
    assert_eq!(q.get().unwrap(), "a");
    q.put_timeout(&"c".into(), Duration::from_millis(200))
        .unwrap();
    assert_eq!(q.get().unwrap(), "b");
    assert_eq!(q.get().unwrap(), "c");
}

#[test]
fn try_calls_never_block() {
    let q = Queue::<u8>::bounded(1).unwrap();
    assert!(matches!(q.try_get(), Err(GetError::Empty)));
    q.try_put(&1).unwrap();
    assert!(matches!(q.try_put(&2), Err(PutError::Full)));
    assert_eq!(q.try_get().unwrap(), 1);
    assert!(matches!(q.try_get(), Err(GetError::Empty)));
}

#[test]
fn len_is_empty_and_is_full_follow_puts_and_gets() {
    let q = Queue::<u64>::bounded(3).unwrap();
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (0, true, false));
    for i in 0..3 {
        q.put(&i).unwrap();
    }
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (3, false, true));
    assert_eq!(q.max_len(), Some(3));
    q.get().unwrap();
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (2, false, false));
    let unbounded = Queue::<u64>::new().unwrap();
    unbounded.put(&1).unwrap();
    assert!(!unbounded.is_full());
    assert_eq!(unbounded.max_len(), None);
}

#[test]
fn a_blocked_put_proceeds_when_a_child_makes_room() {
    let mut guard = KillOnDrop::new();
    let q = Queue::<u32>::bounded(1).unwrap();
    q.put(&0).unwrap();
    fn take_two(q: Queue<u32>, done: Connection) -> procvisor::Result<()> {
        let a = q.get()?;
        let b = q.get()?;
        Ok(done.send(&(a, b))?)
    }
    let (ours, theirs) = pipe().unwrap();
    let p = start(&mut guard, Process::new(take_two, (q.clone(), theirs)));
    q.put(&1).unwrap(); // waits until the child has taken 0
    assert_eq!(ours.recv::<(u32, u32)>().unwrap(), (0, 1));
    join_ok(&p);
}

// ---- closing ------------------------------------------------------------------------------

#[test]
fn put_and_get_after_close_are_refused_and_join_thread_needs_close() {
    let q = Queue::<u32>::new().unwrap();
    q.put(&1).unwrap();
    assert!(matches!(q.join_thread(), Err(QueueError::NotClosed)));
    q.close();
    assert!(matches!(q.put(&2), Err(PutError::Closed)));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    q.join_thread().unwrap();
    assert_eq!(q.len(), 1, "what was put before close stays in the queue");
}

// ---- JoinableQueue ------------------------------------------------------------------------

#[test]
fn task_done_more_times_than_items_put_is_an_error() {
    let q = JoinableQueue::<u32>::new().unwrap();
    assert!(matches!(q.task_done(), Err(QueueError::TaskDoneTooMany)));
    q.put(&1).unwrap();
    q.put(&2).unwrap();
    q.get().unwrap();
    q.task_done().unwrap();
    q.task_done().unwrap(); // Python counts puts, not gets
    let err = q.task_done().unwrap_err();
    assert!(matches!(err, QueueError::TaskDoneTooMany), "{err}");
    assert_eq!(
        err.to_string(),
        "task_done() called more times than there were items put in the queue"
    );
}

/// Child: takes every task, and marks each done only when the parent says so.
fn slow_worker(q: JoinableQueue<u32>, ctl: Connection) -> procvisor::Result<()> {
    for _ in 0..2 {
        let task = q.get()?;
        ctl.send(&task)?;
        ctl.recv::<()>()?;
        q.task_done()?;
    }
    Ok(())
}

#[test]
fn join_waits_until_every_item_is_marked_done_in_another_process() {
    let mut guard = KillOnDrop::new();
    let q = JoinableQueue::<u32>::new().unwrap();
    let (ours, theirs) = pipe().unwrap();
    let p = start(&mut guard, Process::new(slow_worker, (q.clone(), theirs)));
    q.put(&10).unwrap();
    q.put(&20).unwrap();
    assert_eq!(ours.recv::<u32>().unwrap(), 10);
    assert!(!q.join_timeout(Duration::from_millis(100)));
    assert_eq!(q.unfinished_tasks(), 2);
    ours.send(&()).unwrap();
    assert_eq!(ours.recv::<u32>().unwrap(), 20);
    assert!(!q.join_timeout(Duration::from_millis(50)));
    let joiner = {
        let q = q.clone();
        std::thread::spawn(move || {
            q.join();
            Instant::now()
        })
    };
    let released = Instant::now();
    ours.send(&()).unwrap();
    let joined = joiner.join().unwrap();
    assert!(joined >= released);
    assert_eq!(q.unfinished_tasks(), 0);
    join_ok(&p);
}

#[test]
fn join_async_waits_until_every_item_is_marked_done_in_another_process() {
    let mut guard = KillOnDrop::new();
    let q = JoinableQueue::<u32>::new().unwrap();
    let (ours, theirs) = pipe().unwrap();
    let p = start(&mut guard, Process::new(slow_worker, (q.clone(), theirs)));
    q.put(&10).unwrap();
    q.put(&20).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(ours.recv_async::<u32>().await.unwrap(), 10);
        // Not done yet: the join is still pending when a timeout ends it.
        let early = tokio::time::timeout(Duration::from_millis(100), q.join_async()).await;
        assert!(
            early.is_err(),
            "join_async returned with two tasks unfinished"
        );
        ours.send_async(&()).await.unwrap();
        assert_eq!(ours.recv_async::<u32>().await.unwrap(), 20);
        let joining = tokio::spawn({
            let q = q.clone();
            async move { q.join_async().await }
        });
        ours.send_async(&()).await.unwrap();
        tokio::time::timeout(GENEROUS, joining)
            .await
            .expect("join_async did not return after the last task_done")
            .unwrap();
    });
    assert_eq!(q.unfinished_tasks(), 0);
    join_ok(&p);
}

// ---- many producers and consumers ---------------------------------------------------------

fn producer(q: Queue<Option<(u32, u32)>>, id: u32, n: u32) -> procvisor::Result<()> {
    for seq in 0..n {
        q.put(&Some((id, seq)))?;
    }
    Ok(())
}

fn consumer(
    q: Queue<Option<(u32, u32)>>,
    results: Queue<Vec<(u32, u32)>>,
) -> procvisor::Result<()> {
    let mut got = Vec::new();
    while let Some(item) = q.get()? {
        got.push(item);
    }
    Ok(results.put(&got)?)
}

#[test]
fn three_producers_two_consumers_nothing_lost_nothing_duplicated_fifo_per_producer() {
    const N: u32 = 20_000;
    let mut guard = KillOnDrop::new();
    // A small ring, so that producers also wait for room and wrap around many times.
    let q = Queue::<Option<(u32, u32)>>::builder()
        .capacity(4096)
        .max_len(100)
        .build()
        .unwrap();
    let results = Queue::<Vec<(u32, u32)>>::new().unwrap();
    let consumers: Vec<Child> = (0..2)
        .map(|_| {
            start(
                &mut guard,
                Process::new(consumer, (q.clone(), results.clone())),
            )
        })
        .collect();
    let producers: Vec<Child> = (0..3)
        .map(|id| start(&mut guard, Process::new(producer, (q.clone(), id, N))))
        .collect();
    for p in &producers {
        join_ok(p);
    }
    for _ in &consumers {
        q.put(&None).unwrap();
    }
    let mut seen = HashSet::new();
    for _ in &consumers {
        let got = results.get_timeout(GENEROUS).unwrap();
        let mut last: HashMap<u32, u32> = HashMap::new();
        for (id, seq) in got {
            assert!(seen.insert((id, seq)), "({id}, {seq}) delivered twice");
            if let Some(&prev) = last.get(&id) {
                assert!(seq > prev, "producer {id}: {seq} came after {prev}");
            }
            last.insert(id, seq);
        }
    }
    assert_eq!(seen.len(), 3 * N as usize, "items lost");
    for c in &consumers {
        join_ok(c);
    }
    assert!(q.is_empty());
}

// ---- sizes and bad items ------------------------------------------------------------------

#[test]
fn an_item_larger_than_the_ring_is_refused_precisely() {
    let q = Queue::<Vec<u8>>::builder().capacity(4096).build().unwrap();
    let err = q.put(&vec![7u8; 5000]).unwrap_err();
    match err {
        PutError::TooLarge { len, capacity } => {
            assert_eq!(capacity, 4096);
            assert!(len > 5000, "{len}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    q.put(&vec![7u8; 4000]).unwrap();
    assert_eq!(q.get().unwrap().len(), 4000);
}

#[test]
fn settings_out_of_range_are_refused_precisely() {
    let config = |r: Result<(), QueueError>| match r {
        Err(QueueError::Config { reason }) => reason,
        other => panic!("expected Config, got {other:?}"),
    };
    let zero = config(Queue::<u8>::bounded(0).map(drop));
    assert!(
        zero.contains("at least 1 item") && zero.contains("Queue::new()"),
        "{zero}"
    );
    let over = config(Queue::<u8>::bounded(procvisor::queues::MAX_LEN + 1).map(drop));
    assert!(over.contains("above the largest, 16777215"), "{over}");
    assert_eq!(
        Queue::<u8>::bounded(procvisor::queues::MAX_LEN)
            .unwrap()
            .max_len(),
        Some(16_777_215)
    );
    let ring = config(
        Queue::<u8>::builder()
            .capacity(usize::MAX)
            .build::<u8>()
            .map(drop),
    );
    assert!(ring.contains("above the largest ring"), "{ring}");
    let simple = config(
        Queue::<u8>::builder()
            .max_len(3)
            .build_simple::<u8>()
            .map(drop),
    );
    assert!(simple.contains("SimpleQueue is unbounded"), "{simple}");
    assert_eq!(JoinableQueue::<u8>::bounded(2).unwrap().max_len(), Some(2));
}

#[test]
fn an_undecodable_item_is_reported_and_the_next_one_is_delivered() {
    let text = Queue::<String>::new().unwrap();
    // The same queue seen with another item type (as a confused program might).
    let json = serde_json::to_string(&text).unwrap();
    let numbers: Queue<bool> = serde_json::from_str(&json).unwrap();
    text.put(&"not a bool".into()).unwrap();
    numbers.put(&true).unwrap();
    let err = numbers.get().unwrap_err();
    assert!(matches!(err, GetError::Decode { .. }), "{err:?}");
    assert!(numbers.get_timeout(GENEROUS).unwrap());
    assert!(numbers.is_empty());
}

// ---- exiting with items put ---------------------------------------------------------------

fn put_big_and_exit(q: Queue<Vec<u8>>) -> procvisor::Result<()> {
    q.put(&vec![b'X'; 1_000_000])?;
    Ok(q.put(&b"after".to_vec())?)
}

#[test]
fn a_queue_passed_to_a_forked_child_works() {
    let mut guard = KillOnDrop::new();
    let q = Queue::<Vec<u8>>::new().unwrap();
    let p = start(
        &mut guard,
        Process::new(put_big_and_exit, (q.clone(),)).start_method(StartMethod::Fork),
    );
    assert_eq!(q.get_timeout(GENEROUS).unwrap().len(), 1_000_000);
    assert_eq!(q.get_timeout(GENEROUS).unwrap(), b"after");
    join_ok(&p);
}

#[test]
fn a_child_that_puts_and_exits_before_anyone_reads_can_be_joined_first() {
    // Python's documented deadlock: join before get. The item is in shared memory already.
    let mut guard = KillOnDrop::new();
    let q = Queue::<Vec<u8>>::new().unwrap();
    let p = start(&mut guard, Process::new(put_big_and_exit, (q.clone(),)));
    join_ok(&p);
    assert_eq!(q.get().unwrap().len(), 1_000_000);
    assert_eq!(q.get().unwrap(), b"after");
}

fn flood(q: Queue<u32>, n: u32, cancel: bool) -> procvisor::Result<()> {
    for i in 0..n {
        q.put(&i)?; // never blocks: past the ring's room, items wait in this process
    }
    if cancel {
        q.cancel_join_thread();
    }
    Ok(())
}

#[test]
fn items_beyond_the_ring_are_flushed_by_the_feeder_before_the_child_exits() {
    let mut guard = KillOnDrop::new();
    let q = Queue::<u32>::builder().capacity(4096).build().unwrap();
    let n = 5000; // about 5 rings' worth
    let p = start(&mut guard, Process::new(flood, (q.clone(), n, false)));
    for i in 0..n {
        assert_eq!(q.get_timeout(GENEROUS).unwrap(), i);
    }
    join_ok(&p);
    assert!(q.is_empty());
}

#[test]
fn cancel_join_thread_lets_a_child_exit_without_flushing() {
    let mut guard = KillOnDrop::new();
    let q = Queue::<u32>::builder().capacity(4096).build().unwrap();
    let n = 5000;
    let p = start(&mut guard, Process::new(flood, (q.clone(), n, true)));
    join_ok(&p); // nobody reads: without the cancel this would wait for a consumer
    let mut got = Vec::new();
    while let Ok(i) = q.try_get() {
        got.push(i);
    }
    assert!(!got.is_empty() && got.len() < n as usize, "{}", got.len());
    assert_eq!(
        got,
        (0..got.len() as u32).collect::<Vec<_>>(),
        "a prefix, in order"
    );
}

// ---- handles sent to running processes ----------------------------------------------------

/// Child: receives a queue through the pipe and another through `inbox`, and answers on each.
fn answer_on_received_queues(
    ctl: Connection,
    inbox: Queue<Queue<String>>,
) -> procvisor::Result<()> {
    let via_pipe: Queue<String> = ctl.recv()?;
    via_pipe.put(&"through a pipe".into())?;
    let via_queue = inbox.get()?;
    via_queue.put(&"through a queue".into())?;
    let simple: SimpleQueue<String> = ctl.recv()?;
    Ok(simple.put(&"simple too".into())?)
}

#[test]
fn queue_handles_sent_through_a_pipe_and_a_queue_work_in_a_running_process() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe().unwrap();
    let inbox = Queue::<Queue<String>>::new().unwrap();
    let p = start(
        &mut guard,
        Process::new(answer_on_received_queues, (theirs, inbox.clone())),
    );
    // Created after the child started: it can only learn of them from messages.
    let a = Queue::<String>::new().unwrap();
    let b = Queue::<String>::new().unwrap();
    let c = SimpleQueue::<String>::new().unwrap();
    ours.send(&a).unwrap();
    inbox.put(&b).unwrap();
    ours.send(&c).unwrap();
    assert_eq!(a.get_timeout(GENEROUS).unwrap(), "through a pipe");
    assert_eq!(b.get_timeout(GENEROUS).unwrap(), "through a queue");
    assert_eq!(c.get().unwrap(), "simple too");
    join_ok(&p);
}

// ---- async ----------------------------------------------------------------------------------

/// A minimal executor that is not tokio: parks the thread until woken.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// `fut`, given up after `timeout` (`None`), on any executor: a `tokio::time::timeout` whose
/// timer is a thread, for the executor above.
async fn within<F: std::future::Future>(timeout: Duration, fut: F) -> Option<F::Output> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    struct Timer {
        fired: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }
    let timer = Arc::new(Timer {
        fired: AtomicBool::new(false),
        waker: Mutex::new(None),
    });
    let ring = timer.clone();
    let alarm = std::thread::spawn(move || {
        std::thread::sleep(timeout); // the timer itself, not a synchronization
        ring.fired.store(true, Ordering::SeqCst);
        if let Some(w) = ring.waker.lock().unwrap().take() {
            w.wake();
        }
    });
    let mut fut = std::pin::pin!(fut);
    let out = std::future::poll_fn(|cx| {
        *timer.waker.lock().unwrap() = Some(cx.waker().clone());
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if timer.fired.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await;
    alarm.join().unwrap();
    out
}

fn put_when_told(q: Queue<String>, ctl: Connection) -> procvisor::Result<()> {
    ctl.recv::<()>()?;
    Ok(q.put(&"late".into())?)
}

#[test]
fn async_get_waits_for_a_child_outside_and_inside_a_tokio_runtime() {
    let mut guard = KillOnDrop::new();
    for inside_tokio in [false, true] {
        let q = Queue::<String>::new().unwrap();
        let (ours, theirs) = pipe().unwrap();
        let p = start(&mut guard, Process::new(put_when_told, (q.clone(), theirs)));
        let get = async {
            // Times out first (nothing there), then waits until the child puts. A deadline for
            // an async get is a timeout around it: tokio's inside tokio, a thread's outside.
            let t = Instant::now();
            let early = Duration::from_millis(100);
            let r = if inside_tokio {
                tokio::time::timeout(early, q.get_async()).await.ok()
            } else {
                within(early, q.get_async()).await
            };
            assert!(r.is_none(), "{r:?}");
            assert!(t.elapsed() >= Duration::from_millis(100));
            ours.send(&()).unwrap();
            q.get_async().await
        };
        let got = if inside_tokio {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(get)
        } else {
            block_on(get)
        };
        assert_eq!(got.unwrap(), "late");
        join_ok(&p);
    }
}

#[test]
fn async_put_on_a_full_bounded_queue_waits_for_room() {
    let q = Queue::<u32>::bounded(1).unwrap();
    q.put(&1).unwrap();
    let taker = {
        let q = q.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            q.get().unwrap()
        })
    };
    block_on(q.put_async(&2)).unwrap();
    assert_eq!(taker.join().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
}

#[test]
fn a_dropped_async_get_loses_no_item() {
    let q = Queue::<u32>::new().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let r =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(30), q.get_async()).await });
    assert!(r.is_err(), "nothing was there");
    q.put(&5).unwrap();
    assert_eq!(q.get_timeout(GENEROUS).unwrap(), 5);
}

#[test]
fn async_gets_dropped_by_timeouts_while_items_arrive_lose_nothing() {
    // Many gets are given up in the middle of their wait (a short timeout) while a producer
    // keeps putting: whatever future a wake-up or an item was meant for, every item is got
    // once, in order.
    const N: u32 = 400;
    let q = Queue::<u32>::new().unwrap();
    let producer = {
        let q = q.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                q.put(&i).unwrap();
                // Pace the puts so that getters wait, and often give up, between two items
                // (a busy pause, no sleep: tokio's timer ticks in milliseconds).
                let t = Instant::now();
                while t.elapsed() < Duration::from_millis(2) {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (got, dropped) = rt.block_on(async {
        let (mut got, mut dropped) = (Vec::new(), 0u32);
        let deadline = Instant::now() + GENEROUS;
        while got.len() < N as usize && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(1), q.get_async()).await {
                Ok(item) => got.push(item.unwrap()),
                Err(_) => dropped += 1,
            }
        }
        (got, dropped)
    });
    producer.join().unwrap();
    eprintln!("{dropped} gets were dropped while waiting");
    assert_eq!(
        got,
        (0..N).collect::<Vec<_>>(),
        "{dropped} gets were dropped"
    );
    assert!(q.is_empty());
}

#[test]
fn simple_queue_between_processes() {
    let mut guard = KillOnDrop::new();
    fn echo_simple(q: SimpleQueue<u32>, back: SimpleQueue<u32>) -> procvisor::Result<()> {
        loop {
            match q.get()? {
                0 => return Ok(()),
                n => back.put(&(n * 2))?,
            }
        }
    }
    let q = SimpleQueue::<u32>::new().unwrap();
    let back = SimpleQueue::<u32>::new().unwrap();
    let p = start(
        &mut guard,
        Process::new(echo_simple, (q.clone(), back.clone())),
    );
    for n in 1..=100 {
        q.put(&n).unwrap();
    }
    for n in 1..=100 {
        assert_eq!(back.get().unwrap(), n * 2);
    }
    q.put(&0).unwrap();
    join_ok(&p);
    assert!(back.is_empty());
}

// ---- threads and types ----------------------------------------------------------------------

#[test]
fn threads_of_one_process_share_a_queue_without_loss_or_duplicates() {
    const N: u32 = 5_000;
    let q = Queue::<(u32, u32)>::builder()
        .capacity(4096)
        .max_len(64)
        .build()
        .unwrap();
    let producers: Vec<_> = (0..4)
        .map(|id| {
            let q = q.clone();
            std::thread::spawn(move || {
                for seq in 0..N {
                    q.put(&(id, seq)).unwrap();
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(item) = q.get_timeout(Duration::from_millis(500)) {
                    got.push(item);
                }
                got
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    let mut seen = HashSet::new();
    for c in consumers {
        let mut last: HashMap<u32, u32> = HashMap::new();
        for (id, seq) in c.join().unwrap() {
            assert!(seen.insert((id, seq)), "({id}, {seq}) twice");
            if let Some(&prev) = last.get(&id) {
                assert!(seq > prev, "producer {id}: {seq} after {prev}");
            }
            last.insert(id, seq);
        }
    }
    assert_eq!(seen.len(), 4 * N as usize);
}

#[test]
fn queue_handles_are_send_sync_clone_and_serde() {
    fn assert_handle<
        T: Send + Sync + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    >() {
    }
    // Whatever the item type: a handle never holds an item.
    assert_handle::<Queue<std::rc::Rc<u8>>>();
    assert_handle::<JoinableQueue<std::cell::Cell<u8>>>();
    assert_handle::<SimpleQueue<String>>();
    let q = Queue::<u8>::new().unwrap();
    let debug = format!("{q:?}");
    assert!(debug.starts_with("Queue {"), "{debug}");
}
