//! Start latency of a child process, per start method: percentiles of `start()` and of
//! `start()` + `join()` for a no-op child, complementing the throughput figures of
//! `examples/mp_benchmarks.rs` (which compare with CPython).
//!
//! ```text
//! cargo bench --bench process_start            # 300 starts per method
//! cargo bench --bench process_start -- 1000    # more
//! ```

use std::time::{Duration, Instant};

use procvisor::{Process, StartMethod};

fn main() -> procvisor::Result<()> {
    procvisor::init();
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(300);
    for method in [StartMethod::Spawn, StartMethod::Fork] {
        let (starts, totals) = measure(method, runs)?;
        println!(
            "{method:>5}: start p50 {:>9.1?} p99 {:>9.1?} | start+join p50 {:>9.1?} p99 {:>9.1?} ({runs} runs)",
            percentile(&starts, 50),
            percentile(&starts, 99),
            percentile(&totals, 50),
            percentile(&totals, 99),
        );
    }
    Ok(())
}

fn measure(method: StartMethod, runs: usize) -> procvisor::Result<(Vec<Duration>, Vec<Duration>)> {
    let warmup = 20;
    let (mut starts, mut totals) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs + warmup {
        let begin = Instant::now();
        let p = Process::new(|| (), ()).start_method(method).start()?;
        let started = begin.elapsed();
        p.join()?;
        if i >= warmup {
            starts.push(started);
            totals.push(begin.elapsed());
        }
    }
    Ok((starts, totals))
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() - 1) * p / 100]
}
