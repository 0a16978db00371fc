//! Port of `multiprocessing_names.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`, "Determining the Current Process").
//!
//! Each process finds its own name with `current_process().name()`. Two processes are named
//! explicitly; the third keeps its default name, `Process-3`, because it is the third
//! `Process` this program created (the counter counts creations, not starts). The document
//! shows each child's lines together because Python block-buffered the children's output;
//! here the lines come as they are printed, so the `Starting` lines come first:
//!
//! ```text
//! $ cargo run --example names
//! worker 1 Starting
//! Process-3 Starting
//! my_service Starting
//! worker 1 Exiting
//! Process-3 Exiting
//! my_service Exiting
//! ```

use std::thread::sleep;
use std::time::Duration;

use procvisor::{Process, current_process};

fn worker() {
    let name = current_process().name();
    println!("{name} Starting");
    sleep(Duration::from_millis(200));
    println!("{name} Exiting");
}

fn my_service() {
    let name = current_process().name();
    println!("{name} Starting");
    sleep(Duration::from_millis(300));
    println!("{name} Exiting");
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let service = Process::new(my_service, ()).name("my_service"); // Process-1
    let worker_1 = Process::new(worker, ()).name("worker 1"); // Process-2
    let worker_2 = Process::new(worker, ()); // default name: Process-3

    let worker_1 = worker_1.start()?;
    let worker_2 = worker_2.start()?;
    let service = service.start()?;

    for p in [&worker_1, &worker_2, &service] {
        p.join()?;
    }
    Ok(())
}
