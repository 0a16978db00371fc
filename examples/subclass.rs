//! Port of `multiprocessing_subclass.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`, "Subclassing Process").
//!
//! Python subclasses `Process` and overrides `run()`; in Rust a value whose type implements
//! [`procvisor::Run`] is sent to the child, which calls its `run`. The value's fields travel
//! like a target's arguments (here there are none). As in Python, a `Run` type's processes are
//! named after the type (`Worker-1`). The order of the lines depends on scheduling:
//!
//! ```text
//! $ cargo run --example subclass
//! In Worker-1
//! In Worker-2
//! In Worker-3
//! In Worker-5
//! In Worker-4
//! ```

use procvisor::{Process, Run, current_process};
use serde::{Deserialize, Serialize};

/// The "subclass": its `run` is what the child does.
#[derive(Serialize, Deserialize)]
struct Worker;

impl Run for Worker {
    type Output = ();

    fn run(self) {
        println!("In {}", current_process().name());
    }
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let mut jobs = Vec::new();
    for _ in 0..5 {
        let p = Process::from_run(Worker).start()?;
        jobs.push(p);
    }
    for j in &jobs {
        j.join()?;
    }
    Ok(())
}
