//! The pool example from the multiprocessing docs ("Process Pools"): `apply_async` (here
//! `submit`), `map`, `imap` with `next` and `next(timeout)` (here `next_timeout`), and a
//! `get(timeout)` that gives up on a sleeping task (here `wait_timeout`, then `get`).
//!
//! ```text
//! $ cargo run --example pool
//! 100
//! [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
//! 0
//! 1
//! 4
//! TimeoutError: no result within 1s (the task is still running)
//! ```

use std::time::Duration;

use procvisor::Pool;

fn f(x: u64) -> u64 {
    x * x
}

fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let pool = Pool::new(4)?; // start 4 worker processes

    let result = pool.submit(f, (10,))?; // evaluate "f(10)" asynchronously
    if result.wait_timeout(Duration::from_secs(1)) {
        println!("{}", result.get()?); // prints "100" unless your computer is *very* slow
    }

    println!("{:?}", pool.map(f, 0..10)?); // prints "[0, 1, 4,..., 81]"

    let mut it = pool.imap(f, 0..10)?;
    println!("{}", it.next().transpose()?.unwrap_or_default()); // prints "0"
    println!("{}", it.next().transpose()?.unwrap_or_default()); // prints "1"
    println!(
        "{}",
        it.next_timeout(Duration::from_secs(1))?
            .transpose()?
            .unwrap_or_default()
    ); // prints "4" unless your computer is *very* slow

    let result = pool.submit(sleep, (10,))?;
    if !result.wait_timeout(Duration::from_secs(1)) {
        // Python's get(timeout=1) raises TimeoutError here; the handle is still ours.
        println!("TimeoutError: no result within 1s (the task is still running)");
    }
    // Dropping the pool terminates it: the sleeping worker is stopped at once.
    Ok(())
}
