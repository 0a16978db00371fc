//! Port of `multiprocessing_daemon_join.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`, "Waiting for Processes").
//!
//! This time `main` joins the daemon, so its `Exiting` line is printed. The document shows the
//! daemon's two lines last because Python block-buffered the daemon's output until it exited;
//! here each line appears when it is printed. The daemon sleeps 1 s (the document: 2 s):
//!
//! ```text
//! $ cargo run --example daemon_join
//! Starting: daemon
//! Starting: non-daemon
//! Exiting : non-daemon
//! Exiting : daemon
//! ```

use std::thread::sleep;
use std::time::Duration;

use procvisor::{Process, current_process};

fn daemon() {
    let name = current_process().name();
    println!("Starting: {name}");
    sleep(Duration::from_secs(1));
    println!("Exiting : {name}");
}

fn non_daemon() {
    let name = current_process().name();
    println!("Starting: {name}");
    println!("Exiting : {name}");
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let d = Process::new(daemon, ()).name("daemon").daemon(true);
    let n = Process::new(non_daemon, ())
        .name("non-daemon")
        .daemon(false);

    let d = d.start()?;
    sleep(Duration::from_millis(300));
    let n = n.start()?;

    d.join()?;
    n.join()?;
    Ok(())
}
