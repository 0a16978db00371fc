use procvisor::Process;
fn main() -> procvisor::Result<()> {
    procvisor::init();
    for _ in 0..20 {
        let p = Process::new(|| (), ());
        p.start()?;
        p.join(None)?;
    }
    let n = 300;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let p = Process::new(|| (), ());
        p.start()?;
        p.join(None)?;
    }
    let e = t.elapsed();
    println!(
        "{n} start/join in {e:?} => {:.0}/s",
        n as f64 / e.as_secs_f64()
    );
    Ok(())
}
