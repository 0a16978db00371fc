//! Port of `multiprocessing_daemon.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`, "Daemon Processes").
//!
//! `main` returns without joining anyone. On the way out procvisor does what Python's exit
//! handler does: it waits for the non-daemonic child and terminates the daemonic one, which is
//! still asleep, so the daemon's `Exiting` line never appears and no process is left behind
//! (look for the daemon's pid with `ps` afterwards). The sleeps are shorter than the
//! document's (1.5 s in the daemon, 0.3 s in `main`); the pids vary:
//!
//! ```text
//! $ cargo run --example daemon
//! Starting: daemon 13952
//! Starting: non-daemon 13953
//! Exiting : non-daemon 13953
//! ```

use std::thread::sleep;
use std::time::Duration;

use procvisor::{Process, current_process};

fn daemon() {
    let p = current_process();
    println!("Starting: {} {}", p.name(), p.pid());
    sleep(Duration::from_millis(1500));
    println!("Exiting : {} {}", p.name(), p.pid());
}

fn non_daemon() {
    let p = current_process();
    println!("Starting: {} {}", p.name(), p.pid());
    println!("Exiting : {} {}", p.name(), p.pid());
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let daemon = Process::new(daemon, ()).name("daemon").daemon(true);
    let non_daemon = Process::new(non_daemon, ())
        .name("non-daemon")
        .daemon(false);

    let _d = daemon.start()?;
    sleep(Duration::from_millis(300));
    let _n = non_daemon.start()?;
    // Returning joins the non-daemon and terminates the daemon.
    Ok(())
}
