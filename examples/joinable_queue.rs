//! Producer / consumer with a `JoinableQueue` and poison pills, after PyMOTW's
//! "multiprocessing — Manage Processes Like Threads": consumer processes take `Task`s from a
//! joinable queue, put their answers on a result queue and mark each task done; one `None` per
//! consumer (a poison pill) tells it to exit. The main process waits for every task with
//! `join()`, then prints the results.
//!
//! ```text
//! $ cargo run --example joinable_queue
//! Creating 4 consumers
//! Consumer-1: 0 * 0
//! Consumer-2: 1 * 1
//! ...
//! Consumer-3: Exiting
//! Result: 0 * 0 = 0
//! Result: 1 * 1 = 1
//! ...
//! ```
//!
//! (The consumers' lines interleave differently from run to run, as in Python.)

use std::fmt;
use std::time::Duration;

use procvisor::{Child, JoinableQueue, Process, Queue, Run};
use serde::{Deserialize, Serialize};

/// A unit of work: multiply two numbers (slowly, to show the consumers working in parallel).
#[derive(Debug, Serialize, Deserialize)]
struct Task {
    a: u64,
    b: u64,
}

impl Task {
    fn call(&self) -> String {
        std::thread::sleep(Duration::from_millis(100)); // pretend to take time to do the work
        format!("{} * {} = {}", self.a, self.b, self.a * self.b)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} * {}", self.a, self.b)
    }
}

/// A consumer process (Python's `multiprocessing.Process` subclass).
#[derive(Serialize, Deserialize)]
struct Consumer {
    name: String,
    task_queue: JoinableQueue<Option<Task>>,
    result_queue: Queue<String>,
}

impl Run for Consumer {
    type Output = procvisor::Result<()>;

    fn run(self) -> procvisor::Result<()> {
        loop {
            let Some(next_task) = self.task_queue.get()? else {
                // Poison pill means shutdown.
                println!("{}: Exiting", self.name);
                self.task_queue.task_done()?;
                return Ok(());
            };
            println!("{}: {next_task}", self.name);
            let answer = next_task.call();
            self.task_queue.task_done()?;
            self.result_queue.put(&answer)?;
        }
    }
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    // Establish communication queues.
    let tasks = JoinableQueue::<Option<Task>>::new()?;
    let results = Queue::<String>::new()?;

    // Start consumers.
    let num_consumers = procvisor::cpu_count() * 2;
    println!("Creating {num_consumers} consumers");
    let consumers: Vec<Process> = (1..=num_consumers)
        .map(|i| {
            Process::from_run(Consumer {
                name: format!("Consumer-{i}"),
                task_queue: tasks.clone(),
                result_queue: results.clone(),
            })
        })
        .collect();
    let consumers = consumers
        .into_iter()
        .map(Process::start)
        .collect::<Result<Vec<Child>, _>>()?;

    // Enqueue jobs.
    let num_jobs = 10;
    for i in 0..num_jobs {
        tasks.put(&Some(Task { a: i, b: i }))?;
    }

    // Add a poison pill for each consumer.
    for _ in 0..num_consumers {
        tasks.put(&None)?;
    }

    // Wait for all of the tasks to finish.
    tasks.join();

    // Start printing results.
    for _ in 0..num_jobs {
        println!("Result: {}", results.get()?);
    }
    for w in &consumers {
        w.join()?;
    }
    Ok(())
}
