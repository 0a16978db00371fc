//! The worker-queue example from the multiprocessing docs' examples section (`mp_workers.py`):
//! tasks (a function and its arguments) are fed to a set of worker processes, and the results
//! are collected as they finish — here with a `Pool`, which owns the task and result queues.
//!
//! ```text
//! $ cargo run --example pool_worker_queue
//! Unordered results:
//!     PoolWorker-3 says that mul(1, 7) = 7
//!     PoolWorker-1 says that mul(0, 7) = 0
//!     …
//!     PoolWorker-2 says that plus(9, 8) = 17
//! ```

use std::time::Duration;

use procvisor::{Pool, current_process};

const NUMBER_OF_PROCESSES: usize = 4;

/// The functions a task may name (a task carries data, so it names its function).
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Func {
    Mul,
    Plus,
}

fn mul(a: u64, b: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(fastrand(a) % 500));
    a * b
}

fn plus(a: u64, b: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(fastrand(a + 1000) % 500));
    a + b
}

/// A little deterministic pseudo-randomness for the sleeps (`random.random()` in the original).
fn fastrand(seed: u64) -> u64 {
    seed.wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407)
        >> 33
}

/// Function run by the worker processes: computes one task and describes it.
fn calculate(func: Func, a: u64, b: u64) -> String {
    let (name, result) = match func {
        Func::Mul => ("mul", mul(a, b)),
        Func::Plus => ("plus", plus(a, b)),
    };
    format!(
        "{} says that {name}({a}, {b}) = {result}",
        current_process().name()
    )
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let tasks1: Vec<(Func, u64, u64)> = (0..20).map(|i| (Func::Mul, i, 7)).collect();
    let tasks2: Vec<(Func, u64, u64)> = (0..10).map(|i| (Func::Plus, i, 8)).collect();

    // Start worker processes; submit tasks.
    let pool = Pool::new(NUMBER_OF_PROCESSES)?;
    let results = pool.starmap_task(calculate, tasks1).imap_unordered()?;

    // Get and print results.
    println!("Unordered results:");
    for r in results {
        println!("\t{}", r?);
    }

    // Add more tasks, one at a time, and collect their results.
    let pending: Vec<_> = tasks2
        .into_iter()
        .map(|args| pool.submit(calculate, args))
        .collect::<Result<_, _>>()?;
    for r in pending {
        println!("\t{}", r.get()?);
    }

    // Tell the workers to stop, and wait for them.
    pool.close();
    Ok(pool.join()?)
}
