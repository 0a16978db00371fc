//! A rest-for-one pipeline: reader → parser → writer, each in its own process, connected by
//! Unix sockets (`Listener` / `Client`). Each stage depends on the one before it: the parser
//! connects to the reader, the writer to the parser. So when the parser crashes on a bad record,
//! the supervisor restarts the parser *and the writer* (whose input died with the parser), in
//! that order, while the reader keeps running. Readiness makes the order meaningful: a stage
//! starts only once the stage before it listens.
//!
//! ```text
//! $ cargo run --example pipeline
//! event: [pipeline] child reader (pid 100) started
//! event: [pipeline] child parser (pid 101) started
//! event: [pipeline] child writer (pid 102) started
//!   [writer] 1 APPLES
//!   …
//!   [parser] cannot parse record 5: "%%garbage%%"
//! event: [pipeline] child parser (pid 101) exited: exit code 2
//! event: [pipeline] child writer (pid 102) exited: exit code 0 (shut down)
//! event: [pipeline] child parser restarted (pid 103) (restart #1)
//! event: [pipeline] child writer restarted (pid 104) (restart #1)
//!   [reader] record 5 killed the parser; skipping it
//!   [writer] 6 FIGS
//!   …
//!   [writer] end of input
//! event: [pipeline] child writer (pid 104) exited: exit code 0
//! ```

use std::time::Duration;

use procvisor::supervisor::{
    ChildSpec, Event, Restart, Shutdown, Strategy, Supervisor, SupervisorSpec, notify_ready,
};
use procvisor::{Address, Client, Listener, wait_for_stop};

const RECORDS: [&str; 8] = [
    "apples",
    "bread",
    "cheese",
    "dates",
    "%%garbage%%",
    "figs",
    "grapes",
    "honey",
];

fn listen(path: &str) -> procvisor::Result<Listener> {
    let _ = std::fs::remove_file(path); // a previous incarnation's socket
    Ok(Listener::builder().address(Address::unix(path)).bind()?)
}

/// Serves the records, one at a time, to whichever parser connects; a record the parser died
/// on (no acknowledgement) is skipped after the restart.
fn reader(socket: String) -> procvisor::Result<()> {
    let listener = listen(&socket)?;
    notify_ready();
    let mut next = 0;
    while next < RECORDS.len() {
        let conn = listener.accept()?;
        while next < RECORDS.len() {
            let acked =
                conn.send(&Some((next + 1, RECORDS[next]))).is_ok() && conn.recv::<()>().is_ok();
            next += 1;
            if !acked {
                println!("  [reader] record {next} killed the parser; skipping it");
                break;
            }
        }
        if next == RECORDS.len() {
            conn.send(&None::<(usize, &str)>)?;
        }
    }
    wait_for_stop(None);
    Ok(())
}

/// Reads records from the reader, upper-cases them for the writer; dies on a bad one.
fn parser(input: String, output: String) -> procvisor::Result<()> {
    let records = Client::connect(&Address::unix(&input))?;
    let listener = listen(&output)?;
    notify_ready();
    let writer = listener.accept()?;
    while let Some((n, text)) = records.recv::<Option<(usize, String)>>()? {
        if !text.chars().all(char::is_alphabetic) {
            println!("  [parser] cannot parse record {n}: {text:?}");
            std::process::exit(2);
        }
        writer.send(&Some(format!("{n} {}", text.to_uppercase())))?;
        records.send(&())?;
    }
    writer.send(&None::<String>)?;
    wait_for_stop(None);
    Ok(())
}

/// Prints what the parser produces. If its input dies, it waits: its supervisor restarts it
/// (rest-for-one) together with the parser.
fn writer(input: String) -> procvisor::Result<()> {
    let parsed = Client::connect(&Address::unix(&input))?;
    notify_ready();
    loop {
        match parsed.recv::<Option<String>>() {
            Ok(Some(line)) => println!("  [writer] {line}"),
            Ok(None) => {
                println!("  [writer] end of input");
                return Ok(());
            }
            Err(_) => {
                wait_for_stop(None);
                return Ok(());
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    procvisor::init();

    let dir = std::env::temp_dir().join(format!("pipeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sock = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let (raw, parsed) = (sock("reader.sock"), sock("parser.sock"));
    let ready = Duration::from_secs(10);
    let stage = |spec: ChildSpec| {
        spec.wait_ready(ready)
            .shutdown(Shutdown::Timeout(Duration::from_secs(1)))
    };
    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .name("pipeline")
        .child(stage(ChildSpec::worker("reader", reader, (raw.clone(),))))
        .child(stage(ChildSpec::worker(
            "parser",
            parser,
            (raw, parsed.clone()),
        )))
        .child(stage(ChildSpec::worker("writer", writer, (parsed,))).restart(Restart::Transient));
    let (sup, mut events) = Supervisor::start_with_events(spec)?;

    // Until the writer has written everything (a normal exit: transient, so not restarted).
    for event in events.by_ref() {
        println!("event: {event}");
        if matches!(&event, Event::ChildExited { id, exit, .. } if id == "writer" && exit.exit.is_normal() && !exit.requested)
        {
            break;
        }
    }
    sup.stop();
    for event in events {
        println!("event: {event}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
