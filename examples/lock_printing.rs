//! The docs' lock example: ten processes print, one at a time, under a shared lock.
//!
//! ```text
//! cargo run --example lock_printing
//! ```

use procvisor::{Acquire, Lock, Process};

fn f(l: Lock, i: u32) {
    let _guard = l.lock();
    println!("hello world {i}");
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let lock = Lock::new()?;
    for num in 0..10 {
        Process::new(f, (lock.clone(), num)).start()?;
    }
    Ok(())
}
