//! Restart intensity and escalation, told by the event stream.
//!
//! ```text
//! app (one_for_one, at most 1 restart in 10 s)
//! ├── api                 a worker that serves until stopped
//! └── db                  a supervisor in its own OS process (one_for_all, 2 restarts in 10 s)
//!     ├── cache           a worker that serves until stopped
//!     └── pool            a worker that cannot reach its database: it exits at once
//! ```
//!
//! `pool` keeps failing; `db` restarts it (and `cache`, one-for-all) twice, then gives up and
//! exits abnormally. `app` sees its child `db` fail and restarts it — the whole subtree process
//! — once; when `db` gives up again, `app` has exceeded its own intensity: it stops `api` and
//! gives up too. Every step arrives on the top supervisor's event stream, the `db` ones sent
//! back from `db`'s process.
//!
//! ```text
//! $ cargo run --example escalation
//! app         child api (pid 199) started
//!   app/db      child cache (pid 201) started
//!   app/db      child pool (pid 202) started
//! app         child db (pid 200) started
//!   app/db      child pool (pid 202) exited: exit code 1
//!   app/db      child cache (pid 201) exited: exit code 0 (shut down)
//!   app/db      child cache restarted (pid 203) (restart #1)
//!   app/db      child pool restarted (pid 204) (restart #1)
//! …
//!   app/db      gave up: 3 restarts within 10s
//!   app/db      child cache (pid 205) exited: exit code 0 (shut down)
//!   app/db      supervisor exited: failed: reached the restart intensity (more than 2 restarts within 10s)
//! app         child db (pid 200) exited: failed: reached the restart intensity (more than 2 restarts within 10s)
//! app         child db restarted (pid 207) (restart #1)
//! …
//! app         gave up: 2 restarts within 10s
//! app         child api (pid 199) exited: exit code 0 (shut down)
//! app         supervisor exited: failed: reached the restart intensity (more than 1 restarts within 10s)
//! app ended: failed: reached the restart intensity (more than 1 restarts within 10s)
//! ```

use std::time::Duration;

use procvisor::supervisor::{
    ChildSpec, Event, Intensity, Strategy, Supervisor, SupervisorSpec, notify_ready,
};

fn serve() {
    notify_ready();
    procvisor::wait_for_stop(None);
}

fn pool(database: String) {
    eprintln!("  [pool] cannot connect to {database}");
    std::process::exit(1);
}

/// The `db` subtree, built in its own process.
fn db() -> SupervisorSpec {
    SupervisorSpec::new(Strategy::OneForAll)
        .intensity(Intensity::new(2, Duration::from_secs(10)))
        .child(ChildSpec::worker("cache", serve, ()).wait_ready(Duration::from_secs(10)))
        .child(ChildSpec::worker(
            "pool",
            pool,
            ("postgres://db.invalid/app".to_string(),),
        ))
}

fn main() -> procvisor::Result<()> {
    procvisor::init();

    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("app")
        .intensity(Intensity::new(1, Duration::from_secs(10)))
        .child(ChildSpec::worker("api", serve, ()).wait_ready(Duration::from_secs(10)))
        .child(ChildSpec::supervisor_process("db", db, ()));
    let (app, events) = Supervisor::start_with_events(spec)?;

    for event in events {
        let depth = event.supervisor().matches('/').count();
        let line = event.to_string();
        // `[app/db] child …` → `app/db      child …`, indented by depth.
        let text = line.split_once("] ").map_or(line.as_str(), |(_, t)| t);
        println!(
            "{:indent$}{:<12}{text}",
            "",
            event.supervisor(),
            indent = depth * 2
        );
        if let Event::SupervisorExited { supervisor, .. } = &event {
            if supervisor == "app" {
                break;
            }
        }
    }
    println!("app ended: {}", app.wait());
    Ok(())
}
