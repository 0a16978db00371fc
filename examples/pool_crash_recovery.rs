//! Crash recovery, which Python's pool does not have (it hangs forever): a worker is SIGKILLed
//! in the middle of a `map`; the map fails promptly with `WorkerLost` (carrying the exit
//! status), the pool replaces the worker, and the next `map` succeeds.
//!
//! ```text
//! $ cargo run --example pool_crash_recovery
//! workers: [1201, 1202]
//! map of 8 slow items started; killing worker 1201 in the middle of an item
//! map failed after 0.00 s: pool worker (pid 1201) died while running the task: killed by SIGKILL
//! next map: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//! workers now: [1203, 1202]
//! ```

use std::time::{Duration, Instant};

use procvisor::Pool;
use procvisor::error::TaskError;

/// Takes its time: 8 items keep both workers busy for 0.8 s.
fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(200));
    x * x
}

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let pool = Pool::new(2)?;
    println!("workers: {:?}", pool.worker_pids());

    let map = pool.map_task(slow_square, 0..8u64).chunksize(1).submit()?;
    // Both workers are busy with an item for the next 0.8 s.
    let victim = pool.worker_pids()[0];
    println!("map of 8 slow items started; killing worker {victim} in the middle of an item");
    // SAFETY: kill(2) with a pid of a worker this pool started and still runs.
    unsafe {
        libc::kill(victim, libc::SIGKILL);
    }
    let t = Instant::now();
    match map.get() {
        Err(e @ TaskError::WorkerLost { .. }) => {
            println!("map failed after {:.2} s: {e}", t.elapsed().as_secs_f64())
        }
        other => println!("unexpected: {other:?}"),
    }
    println!("next map: {:?}", pool.map(square, 0..10u64)?);
    println!("workers now: {:?}", pool.worker_pids());
    pool.close();
    Ok(pool.join()?)
}
