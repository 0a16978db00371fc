//! Port of `multiprocessing_simple.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`): five processes, each running a function that prints
//! `Worker`.
//!
//! ```text
//! $ cargo run --example simple
//! Worker
//! Worker
//! Worker
//! Worker
//! Worker
//! ```

use procvisor::Process;

/// The worker function: what each child runs.
fn worker() {
    println!("Worker");
}

fn main() -> procvisor::Result<()> {
    // The analogue of `freeze_support()` and of the `if __name__ == '__main__'` guard: in a
    // child, `init` runs the child's target and exits, so the rest of `main` never runs there.
    procvisor::init();

    let mut jobs = Vec::new();
    for _ in 0..5 {
        let p = Process::new(worker, ()).start()?;
        jobs.push(p);
    }
    // Python's program relies on the interpreter joining non-daemonic children at exit
    // (procvisor does the same when `main` returns); joining explicitly says so in the code.
    for p in &jobs {
        p.join()?;
    }
    Ok(())
}
