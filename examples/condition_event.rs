//! Processes coordinating with a `Condition` and an `Event` (the pattern of the threading
//! docs): a producer sets a shared value and notifies the consumers waiting on the condition;
//! a starter event releases them all at once.
//!
//! ```text
//! cargo run --example condition_event
//! ```

use std::time::Duration;

use procvisor::{Child, Condition, Event, Process, Value};

fn consumer(id: u32, start: Event, cond: Condition, ready: Value<i32>) -> procvisor::Result<()> {
    start.wait(None);
    let guard = cond.lock();
    guard.wait_for(|| ready.get() > 0, Some(Duration::from_secs(10)))?;
    println!("consumer {id} sees the resource: {}", ready.get());
    Ok(())
}

fn producer(start: Event, cond: Condition, ready: Value<i32>) -> procvisor::Result<()> {
    start.wait(None);
    std::thread::sleep(Duration::from_millis(100));
    let guard = cond.lock();
    ready.set(42);
    println!("producer made the resource available");
    guard.notify_all()
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let start = Event::new()?;
    let cond = Condition::new()?;
    let ready = Value::new(0i32)?;
    let mut procs = Vec::new();
    for id in 1..=2 {
        procs.push(Process::new(
            consumer,
            (id, start.clone(), cond.clone(), ready.clone()),
        ));
    }
    procs.push(Process::new(
        producer,
        (start.clone(), cond.clone(), ready.clone()),
    ));
    let procs = procs
        .into_iter()
        .map(Process::start)
        .collect::<Result<Vec<Child>, _>>()?;
    println!("starting everyone");
    start.set();
    for p in &procs {
        p.join()?;
    }
    Ok(())
}
