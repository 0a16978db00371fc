//! Port of `multiprocessing_exitcode.py` from the PyMOTW tutorial *multiprocessing Basics*
//! (`pymotw-multiprocessing-basics.txt`, "Process Exit Status").
//!
//! The exit code is `0` when the target returns (whatever value it returns), the code given
//! to `std::process::exit` (Python's `sys.exit`), `1` after a panic (Python's uncaught
//! exception), and `-N` when the process was killed by signal `N`. The panicking child prints
//! `Process raises:` and then the panic message, where Python prints its traceback. Where the
//! panic message falls among the other lines depends on scheduling:
//!
//! ```text
//! $ cargo run --example exitcode
//! Starting process for exit_error
//! Starting process for exit_ok
//! Starting process for return_value
//! Starting process for raises
//! Starting process for terminated
//! Process raises:
//!
//! thread 'main' panicked at examples/exitcode.rs:33:5:
//! There was an error!
//! note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace
//! exit_error.exitcode = 1
//! exit_ok.exitcode = 0
//! return_value.exitcode = 0
//! raises.exitcode = 1
//! terminated.exitcode = -15
//! ```

use std::thread::sleep;
use std::time::Duration;

use procvisor::Process;

fn exit_error() {
    std::process::exit(1);
}

fn exit_ok() {}

/// A returned value does not become the exit code (as in Python): this process exits with 0.
fn return_value() -> Result<i32, String> {
    Ok(1)
}

fn raises() {
    panic!("There was an error!");
}

fn terminated() {
    sleep(Duration::from_millis(1500));
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    // Each function is its own type, so the list is written out rather than looped over.
    let targets = [
        ("exit_error", Process::new(exit_error, ())),
        ("exit_ok", Process::new(exit_ok, ())),
        ("return_value", Process::new(return_value, ())),
        ("raises", Process::new(raises, ())),
        ("terminated", Process::new(terminated, ())),
    ];
    let mut jobs = Vec::new();
    for (name, p) in targets {
        println!("Starting process for {name}");
        let j = p.name(name).start()?;
        jobs.push(j);
    }

    if let Some(last) = jobs.last() {
        last.terminate()?;
    }
    for j in &jobs {
        j.join()?;
        let code = j.exitcode().map_or("None".to_string(), |c| c.to_string());
        println!("{}.exitcode = {code}", j.name());
    }
    Ok(())
}
