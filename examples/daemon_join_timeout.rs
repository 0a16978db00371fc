//! Port of `multiprocessing_daemon_join_timeout.py` from the PyMOTW tutorial *multiprocessing
//! Basics* (`pymotw-multiprocessing-basics.txt`, "Waiting for Processes").
//!
//! `join` with a timeout shorter than the daemon's sleep returns while the daemon still runs,
//! so `is_alive()` is `true`; when `main` returns the daemon is terminated, and its `Exiting`
//! line never appears. The document lacks the daemon's `Starting` line because Python's
//! buffered output died with the daemon; Rust's standard output is flushed at each line, so it
//! shows here. Times are shorter than the document's (join 0.5 s, daemon sleep 1.5 s):
//!
//! ```text
//! $ cargo run --example daemon_join_timeout
//! Starting: daemon
//! Starting: non-daemon
//! Exiting : non-daemon
//! d.is_alive() true
//! ```

use std::thread::sleep;
use std::time::Duration;

use procvisor::{Process, current_process};

fn daemon() {
    let name = current_process().name();
    println!("Starting: {name}");
    sleep(Duration::from_millis(1500));
    println!("Exiting : {name}");
}

fn non_daemon() {
    let name = current_process().name();
    println!("Starting: {name}");
    println!("Exiting : {name}");
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let d = Process::new(daemon, ())
        .name("daemon")
        .daemon(true)
        .start()?;
    let n = Process::new(non_daemon, ())
        .name("non-daemon")
        .daemon(false)
        .start()?;

    d.join_timeout(Duration::from_millis(500))?;
    println!("d.is_alive() {}", d.is_alive());
    n.join()?;
    // Returning terminates the daemon, still asleep.
    Ok(())
}
