//! Ports of the `Process` examples in the Python 2.6 documentation (`multiprocessing-2.6.rst`,
//! "The Process class" and the `Process` reference) and in the `processing` package's
//! reference (`processing-process-objects.txt`, "Example").
//!
//! 1. The trivial program: a child prints `hello bob`.
//! 2. The expanded one: parent and child print their module, parent pid and pid.
//! 3. The reference's use of `Process` methods: a child asleep for 1000 s is terminated; its
//!    exit code is `-SIGTERM`. `join()` comes before the third line so that the child has
//!    certainly died (the documents print right after `terminate()`).
//! 4. `processing`'s `stop()`: the child ends itself when asked; where `processing` raised
//!    `ProcessExit` in the child, procvisor's child sees `stop_requested()` and returns, so the
//!    state is `stopped` (exit code 0). Killing the next child with `kill(pid, SIGTERM)`
//!    gives `stopped[SIGTERM]`, as in the document.
//!
//! The pids vary:
//!
//! ```text
//! $ cargo run --example process_objects
//! hello bob
//! main line
//! module name: process_objects
//! parent process: 4100
//! process id: 4242
//! function f
//! module name: process_objects
//! parent process: 4242
//! process id: 4250
//! hello bob
//! <Process(Process-3, initial)> false
//! <Process(Process-3, started)> true
//! <Process(Process-3, stopped[SIGTERM])> false
//! true
//! <Process(Process-4, initial)>
//! <Process(Process-4, started)>
//! <Process(Process-4, stopped)>
//! <Process(Process-5, stopped[SIGTERM])>
//! true
//! ```

use std::time::Duration;

use procvisor::Process;

fn hello(name: String) {
    println!("hello {name}");
}

fn info(title: &str) {
    println!("{title}");
    println!("module name: {}", module_path!());
    println!("parent process: {}", std::os::unix::process::parent_id());
    println!("process id: {}", std::process::id());
}

fn f(name: String) {
    info("function f");
    println!("hello {name}");
}

/// `time.sleep(1000)`.
fn sleep_1000() {
    std::thread::sleep(Duration::from_secs(1000));
}

/// Sleeps up to 1000 s, but returns as soon as its parent asks it to stop.
fn sleep_until_stopped() {
    procvisor::wait_for_stop(Some(Duration::from_secs(1000)));
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    // 1. The trivial example.
    Process::new(hello, ("bob".to_string(),)).start()?.join()?;

    // 2. The expanded example.
    info("main line");
    Process::new(f, ("bob".to_string(),)).start()?.join()?;

    // 3. The reference's example of Process methods.
    let p = Process::new(sleep_1000, ());
    println!("{p:?} false");
    let p = p.start()?;
    println!("{p} {}", p.is_alive());
    p.terminate()?;
    p.join()?;
    println!("{p} {}", p.is_alive());
    println!("{}", p.exitcode() == Some(-libc::SIGTERM));

    // 4. processing's stop() example, then a SIGTERM sent from outside.
    let p = Process::new(sleep_until_stopped, ());
    println!("{p:?}");
    let p = p.start()?;
    println!("{p}");
    p.stop(Duration::from_secs(1));
    println!("{p}");

    let p = Process::new(sleep_1000, ()).start()?;
    // SAFETY: kill(2) only sends a signal; `p.pid()` is our own child, which has not been
    // reaped (it is still running), so the pid cannot have been reused.
    unsafe {
        libc::kill(p.pid(), libc::SIGTERM);
    }
    p.join()?;
    println!("{p}");
    println!("{}", p.exitcode() == Some(-libc::SIGTERM));
    Ok(())
}
