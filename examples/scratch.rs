use procvisor::Process;
use std::time::Duration;

fn worker(num: u32) {
    println!("Worker: {num} {}", procvisor::current_process().name());
}
fn sleeper(secs: u64) {
    std::thread::sleep(Duration::from_secs(secs));
}
fn panics() {
    panic!("There was an error!");
}
fn main() -> procvisor::Result<()> {
    procvisor::init();
    procvisor::log_to_stderr(tracing::Level::INFO)?;
    let p = Process::new(worker, (5,));
    println!("{p}");
    p.start()?;
    println!("{p}");
    p.join(None)?;
    println!("{p} {:?}", p.exitcode());
    let s = Process::new(sleeper, (10,));
    s.start()?;
    s.join(Some(Duration::from_millis(200)))?;
    println!("alive {}", s.is_alive());
    s.terminate()?;
    s.join(None)?;
    println!("{s} {:?}", s.exitcode());
    let e = Process::new(panics, ());
    e.start()?;
    e.join(None)?;
    println!("{e} {:?}", e.exitcode());
    let t = std::time::Instant::now();
    for _ in 0..100 {
        let p = Process::new(|| (), ());
        p.start()?;
        p.join(None)?;
    }
    println!("100 start/join in {:?}", t.elapsed());
    let d = Process::new(sleeper, (5,)).with_daemon(true)?;
    d.start()?;
    println!("active {:?}", procvisor::active_children());
    Ok(())
}
