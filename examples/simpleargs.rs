//! Port of `multiprocessing_simpleargs.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`): each worker gets a number as its argument.
//!
//! Arguments travel to the child in an argument tuple that must be serde-encodable, just as
//! Python's must be picklable. The order of the lines depends on scheduling:
//!
//! ```text
//! $ cargo run --example simpleargs
//! Worker: 0
//! Worker: 1
//! Worker: 2
//! Worker: 4
//! Worker: 3
//! ```

use procvisor::Process;

/// The worker function: `num` is decoded from the tuple `(i,)` given to `Process::new`.
fn worker(num: u32) {
    println!("Worker: {num}");
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let mut jobs = Vec::new();
    for i in 0..5 {
        let p = Process::new(worker, (i,)).start()?;
        jobs.push(p);
    }
    for p in &jobs {
        p.join()?;
    }
    Ok(())
}
