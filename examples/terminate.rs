//! Port of `multiprocessing_terminate.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`, "Terminating Processes"), which is also the example of
//! the `Process` methods in the Python 2.6 documentation (`multiprocessing-2.6.rst`).
//!
//! `terminate()` sends SIGTERM; `join()` afterwards waits until the process supervisor has
//! reaped the child, so the state shown is then certainly `stopped[SIGTERM]` and the exit code
//! `-15`. (The `TERMINATED` line is printed right after the signal is sent: as in Python, the
//! child may not have died yet at that instant, in which case it shows `started` and `true`.)
//!
//! ```text
//! $ cargo run --example terminate
//! BEFORE: <Process(Process-1, initial)> false
//! DURING: <Process(Process-1, started)> true
//! TERMINATED: <Process(Process-1, stopped[SIGTERM])> false
//! JOINED: <Process(Process-1, stopped[SIGTERM])> false
//! ```

use std::thread::sleep;
use std::time::Duration;

use procvisor::Process;

fn slow_worker() {
    println!("Starting worker");
    sleep(Duration::from_millis(100));
    println!("Finished worker");
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let p = Process::new(slow_worker, ());
    println!("BEFORE: {p:?} false");

    let p = p.start()?;
    println!("DURING: {p} {}", p.is_alive());

    p.terminate()?;
    println!("TERMINATED: {p} {}", p.is_alive());

    p.join()?;
    println!("JOINED: {p} {}", p.is_alive());
    assert_eq!(p.exitcode(), Some(-libc::SIGTERM));
    Ok(())
}
