//! The pool example from the multiprocessing docs ("Process Pools"): `apply_async`, `map`,
//! `imap` with `next` and `next(timeout)`, and a `TimeoutError` from a sleeping task.
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

use procvisor::{Error, Pool};

fn f(x: u64) -> u64 {
    x * x
}

fn sleep(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let pool = Pool::new(4)?; // start 4 worker processes

    let result = pool.apply_async(f, (10,))?; // evaluate "f(10)" asynchronously
    println!("{}", result.get(Some(Duration::from_secs(1)))?); // prints "100" unless your computer is *very* slow

    println!("{:?}", pool.map(f, 0..10)?); // prints "[0, 1, 4,..., 81]"

    let mut it = pool.imap(f, 0..10)?;
    println!("{}", it.next().transpose()?.unwrap_or_default()); // prints "0"
    println!("{}", it.next().transpose()?.unwrap_or_default()); // prints "1"
    println!(
        "{}",
        it.next_timeout(Duration::from_secs(1))?.unwrap_or_default()
    ); // prints "4" unless your computer is *very* slow

    let result = pool.apply_async(sleep, (10,))?;
    match result.get(Some(Duration::from_secs(1))) {
        Err(e @ Error::ResultTimeout { .. }) => println!("TimeoutError: {e}"), // raises TimeoutError
        other => println!("unexpected: {other:?}"),
    }
    // Dropping the pool terminates it: the sleeping worker is stopped at once.
    Ok(())
}
