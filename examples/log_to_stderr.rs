//! Port of `multiprocessing_log_to_stderr.py` from the PyMOTW tutorial *multiprocessing
//! Basics* (`pymotw-multiprocessing-basics.txt`, "Logging").
//!
//! `log_to_stderr` prints procvisor's lifecycle events on stderr as `[LEVEL/ProcessName]
//! message`; children started afterwards log at the same level. procvisor's events are
//! `tracing` events with target `procvisor` (Python's logger `multiprocessing`). Python's
//! DEBUG lines about its `atexit` finalizers have no counterpart, so this port logs at INFO,
//! the level of the document's `get_logger` variant:
//!
//! ```text
//! $ cargo run --example log_to_stderr
//! [INFO/Process-1] child process calling run()
//! Doing some work
//! [INFO/Process-1] process shutting down
//! [INFO/Process-1] process exiting with exitcode 0
//! [INFO/MainProcess] process shutting down
//! ```

use procvisor::Process;

fn worker() {
    println!("Doing some work");
}

fn main() -> procvisor::Result<()> {
    procvisor::init();
    procvisor::log_to_stderr(tracing::Level::INFO)?;

    let p = Process::new(worker, ()).start()?;
    p.join()?;
    Ok(())
}
