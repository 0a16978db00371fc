//! Helpers shared by the supervision-tree tests: one scriptable child process and a few
//! shorthands. Children report to an append-only log file (`start a`, `stop a`), which is how
//! the tests observe start and stop order from the children's side.

#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use procvisor::supervisor::{ChildSpec, Event, Events, Exit, Shutdown};

use crate::common::GENEROUS;

/// Grace period of the children's `Shutdown::Timeout` in these tests.
pub const GRACE: Duration = Duration::from_millis(300);

/// Appends `line` to the log in one `write` (O_APPEND: lines from several processes never mix).
pub fn append(log: &str, line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("cannot open the log");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("cannot write the log");
}

/// The log's lines.
pub fn lines(log: &str) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The log's lines that start with `prefix` (e.g. `"stop "`), without it.
pub fn lines_with(log: &str, prefix: &str) -> Vec<String> {
    lines(log)
        .into_iter()
        .filter_map(|l| l.strip_prefix(prefix).map(String::from))
        .collect()
}

/// The scriptable child. It logs `start <id>` and reports ready, then performs the action of
/// its n-th start (`script[n]`, the last one repeating):
///
/// * `exit:N` — exit with code N;  `panic` — panic (exit code 1);  `kill:N` — raise signal N;
/// * `serve` — wait for the stop request, log `stop <id>`, exit 0;
/// * `ignore-stop` — log `stop <id>` on the stop request but keep running (SIGTERM ends it);
/// * `ignore-term` — the same, with SIGTERM ignored too (only SIGKILL ends it);
/// * `unready:N` — exit with code N *before* reporting ready (a failed start);
/// * `decline` — decline the start (`decline_start`, OTP's `ignore`) instead of reporting ready;
/// * `gate:PATH` — while no file exists at PATH, the same as `unready:2`; once it does, `serve`
///   (a dependency that is down, then back).
pub fn actor(log: String, id: String, script: Vec<String>) {
    append(&log, &format!("start {id}"));
    let starts = lines(&log)
        .iter()
        .filter(|l| **l == format!("start {id}"))
        .count();
    let action = script
        .get(starts - 1)
        .or(script.last())
        .cloned()
        .unwrap_or_else(|| "serve".into());
    if let Some(code) = action.strip_prefix("unready:") {
        std::process::exit(code.parse().unwrap());
    }
    let action = match action.strip_prefix("gate:") {
        Some(gate) if !std::path::Path::new(gate).exists() => std::process::exit(2),
        Some(_) => "serve".to_string(),
        None => action,
    };
    if action == "decline" {
        procvisor::supervisor::decline_start();
    }
    if action == "ignore-term" {
        // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    procvisor::supervisor::notify_ready();
    match action.as_str() {
        "panic" => panic!("{id} panics on purpose"),
        "serve" => {
            procvisor::wait_for_stop(None);
            append(&log, &format!("stop {id}"));
        }
        "ignore-stop" | "ignore-term" => {
            procvisor::wait_for_stop(None);
            append(&log, &format!("stop {id}"));
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        other => {
            if let Some(code) = other.strip_prefix("exit:") {
                std::process::exit(code.parse().unwrap());
            }
            if let Some(sig) = other.strip_prefix("kill:") {
                // SAFETY: raise(2) takes a plain signal number.
                unsafe { libc::raise(sig.parse().unwrap()) };
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            panic!("unknown action {other:?}");
        }
    }
}

/// A worker spec running [`actor`] with `script`, started once ready, stopped with [`GRACE`].
pub fn child(log: &str, id: &str, script: &[&str]) -> ChildSpec {
    let script: Vec<String> = script.iter().map(|s| s.to_string()).collect();
    ChildSpec::worker(id, actor, (log.to_string(), id.to_string(), script))
        .wait_ready(GENEROUS)
        .shutdown(Shutdown::Timeout(GRACE))
}

/// Tags of events (`started top:a`, …), for order assertions.
pub fn tags(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::tag).collect()
}

/// The tags of `events` about children (or supervisors) whose tag matches `filter`.
pub fn tags_of(events: &[Event], filter: impl Fn(&Event) -> bool) -> Vec<String> {
    events
        .iter()
        .filter(|e| filter(e))
        .map(Event::tag)
        .collect()
}

/// Reads events until `n` non-requested exits have been seen; returns everything read.
pub fn until_exits(events: &Events, n: usize) -> Vec<Event> {
    let mut count = 0;
    events
        .collect_until(
            |e| {
                if matches!(e, Event::ChildExited { exit, .. } if !exit.requested) {
                    count += 1;
                }
                count >= n
            },
            GENEROUS,
        )
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The exit of child `id` in `events` (the first one).
pub fn exit_of(events: &[Event], id: &str) -> Exit {
    events
        .iter()
        .find_map(|e| match e {
            Event::ChildExited { id: i, exit, .. } if i == id => Some(exit.exit.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no exit of {id} in {:#?}", tags(events)))
}
