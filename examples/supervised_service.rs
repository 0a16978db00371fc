//! A supervised service: an HTTP-ish front end and a cache worker that keeps crashing, under a
//! one-for-one supervisor. The cache is restarted each time (the front end never notices);
//! the event stream shows what happened, and `stop()` ends both in reverse start order.
//!
//! ```text
//! $ cargo run --example supervised_service
//!   [http] listening on port 8080 (pid 4242)
//!   [cache] warming up (pid 4243)
//! event: [service] child http (pid 4242) started
//! event: [service] child cache (pid 4243) started
//!   [cache] lost the connection to the backing store (attempt 1)
//! event: [service] child cache (pid 4243) exited: exit code 3
//!   [cache] warming up (pid 4251)
//! event: [service] child cache restarted (pid 4251) (restart #1)
//! …
//! children: http (pid 4242, Running, 0 restarts), cache (pid 4268, Running, 3 restarts)
//!   [cache] stopping
//! event: [service] child cache (pid 4268) exited: exit code 0 (shut down)
//!   [http] served 12 requests; stopping
//! event: [service] child http (pid 4242) exited: exit code 0 (shut down)
//! event: [service] supervisor exited: exit code 0
//! ```

use std::time::Duration;

use procvisor::supervisor::{
    ChildSpec, Event, Intensity, Restart, Shutdown, Strategy, Supervisor, SupervisorSpec,
    notify_ready,
};
use procvisor::{stop_requested, wait_for_stop};

/// The front end: "serves" a request every 50 ms until asked to stop.
fn http(port: u16) {
    println!(
        "  [http] listening on port {port} (pid {})",
        std::process::id()
    );
    notify_ready();
    let mut served = 0;
    while !wait_for_stop(Some(Duration::from_millis(50))) {
        served += 1;
    }
    println!("  [http] served {served} requests; stopping");
}

/// The cache: warms up, then loses its backing store after a while and exits with code 3 —
/// unless it is asked to stop first. Its last incarnation (the fourth) is stable.
fn cache(crash_after: Duration, attempts_file: String) {
    println!("  [cache] warming up (pid {})", std::process::id());
    notify_ready();
    let attempt = std::fs::read_to_string(&attempts_file)
        .map(|s| s.trim().parse::<u32>().unwrap_or(0))
        .unwrap_or(0)
        + 1;
    let _ = std::fs::write(&attempts_file, attempt.to_string());
    if attempt <= 3 && !wait_for_stop(Some(crash_after)) {
        println!("  [cache] lost the connection to the backing store (attempt {attempt})");
        std::process::exit(3);
    }
    wait_for_stop(None);
    if stop_requested() {
        println!("  [cache] stopping");
    }
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let attempts = std::env::temp_dir().join(format!("supervised-service-{}", std::process::id()));
    let attempts = attempts.to_string_lossy().into_owned();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("service")
        // Up to 5 restarts in 10 s before the service gives up.
        .intensity(Intensity::new(5, Duration::from_secs(10)))
        .child(
            ChildSpec::worker("http", http, (8080u16,))
                .wait_ready(Duration::from_secs(10))
                .shutdown(Shutdown::Timeout(Duration::from_secs(2))),
        )
        .child(
            ChildSpec::worker(
                "cache",
                cache,
                (Duration::from_millis(300), attempts.clone()),
            )
            .wait_ready(Duration::from_secs(10))
            .restart(Restart::Permanent),
        );
    let (sup, events) = Supervisor::start_with_events(spec)?;

    // Watch the cache crash and come back three times.
    let mut restarts = 0;
    while restarts < 3 {
        let Some(event) = events.recv(Some(Duration::from_secs(30))) else {
            panic!("the supervisor went quiet");
        };
        println!("event: {event}");
        if matches!(&event, Event::ChildRestarted { id, .. } if id == "cache") {
            restarts += 1;
        }
    }

    let children: Vec<String> = sup
        .which_children()
        .wait()?
        .iter()
        .map(|c| {
            format!(
                "{} (pid {}, {:?}, {} restarts)",
                c.id,
                c.pid.unwrap_or(0),
                c.status,
                c.restarts
            )
        })
        .collect();
    println!("children: {}", children.join(", "));

    sup.stop();
    for event in events {
        println!("event: {event}");
    }
    let _ = std::fs::remove_file(&attempts);
    Ok(())
}
