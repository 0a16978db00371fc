//! The basics of `Process`: start / join, `Display`, pids, arguments, `Run` targets, names,
//! the parent process, the authkey.

procvisor::test_init!();

mod common;

use common::{KillOnDrop, TempDir, read, run_driver, write_atomic};
use procvisor::{Process, Run, current_process, parent_process};
use serde::{Deserialize, Serialize};

/// The number `N` of a default name `Process-N` (panics on any other shape).
fn ordinal(name: &str) -> u32 {
    let n = name
        .strip_prefix("Process-")
        .unwrap_or_else(|| panic!("{name:?} is not a default name"));
    n.parse()
        .unwrap_or_else(|_| panic!("{name:?} is not Process-<number>"))
}

#[test]
fn start_join_exitcode_and_display() {
    let p = Process::new(|| (), ()).start().unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    let name = p.name();
    ordinal(&name);
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    assert!(!p.daemon());
    assert_eq!(p.to_string(), format!("<Process({name}, initial)>"));
    assert_eq!(format!("{p:?}"), format!("<Process({name}, initial)>"));

    let pid = p.pid();
    assert!(pid > 0);
    assert_ne!(pid, std::process::id() as i32);
    let shown = p.to_string();
    // The child may already have finished; both are fine right after start.
    assert!(
        shown == format!("<Process({name}, started)>")
            || shown == format!("<Process({name}, stopped)>"),
        "{shown}"
    );

    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(!p.is_alive());
    assert_eq!(p.pid(), Some(pid), "the pid stays known after exit");
    assert_eq!(p.to_string(), format!("<Process({name}, stopped)>"));
    // A process may be joined again.
    p.join().unwrap();
    p.join_timeout(std::time::Duration::ZERO).unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

fn wait_for_file(path: String) {
    assert!(common::wait_for_file(std::path::Path::new(&path)));
}

#[test]
fn display_while_running_and_daemon_suffix() {
    let dir = TempDir::new("display");
    let go = dir.file("go");
    let p = Process::new(wait_for_file, (go.clone(),))
        .with_daemon(true)
        .unwrap()
        .start()
        .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    let name = p.name();
    assert!(p.daemon());
    assert_eq!(p.to_string(), format!("<Process({name}, initial daemon)>"));
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.to_string(), format!("<Process({name}, started daemon)>"));
    write_atomic(&go, "go");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(p.to_string(), format!("<Process({name}, stopped daemon)>"));
}

fn several_args(out: String, a: u32, b: String, c: Vec<i64>, d: (bool, char), e: Option<f64>) {
    write_atomic(&out, &format!("{a}|{b}|{c:?}|{d:?}|{e:?}"));
}

#[test]
fn target_receives_its_arguments() {
    let dir = TempDir::new("args");
    let out = dir.file("out");
    let p = Process::new(
        several_args,
        (
            out.clone(),
            42u32,
            "héllo wörld".to_string(),
            vec![-1i64, 0, i64::MAX],
            (true, 'λ'),
            Some(2.5f64),
        ),
    )
    .start()
    .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(
        read(&out),
        "42|héllo wörld|[-1, 0, 9223372036854775807]|(true, 'λ')|Some(2.5)"
    );
}

#[test]
fn closure_target_without_arguments() {
    let p = Process::new(|| Ok::<u8, String>(3), ()).start().unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[derive(Serialize, Deserialize)]
struct Reporter {
    out: String,
    greeting: String,
    numbers: Vec<u16>,
}

impl Run for Reporter {
    type Output = ();
    fn run(self) {
        let me = current_process();
        write_atomic(
            &self.out,
            &format!("{} {:?} from {}", self.greeting, self.numbers, me.name()),
        );
    }
}

#[test]
fn run_struct_target() {
    let dir = TempDir::new("run");
    let out = dir.file("out");
    let p = Process::from_run(Reporter {
        out: out.clone(),
        greeting: "hello".into(),
        numbers: vec![1, 2, 3],
    })
    .start()
    .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    // Like a Python Process subclass, a Run type names its processes after itself.
    let name = p.name();
    let n: u32 = name
        .strip_prefix("Reporter-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{name:?} is not Reporter-<number>"));
    assert!(n > 0);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(read(&out), format!("hello [1, 2, 3] from {name}"));
}

fn write_own_name(out: String) {
    write_atomic(&out, &current_process().name());
}

#[test]
fn default_names_count_up() {
    let a = Process::new(|| (), ());
    let b = Process::new(|| (), ());
    // Other tests of this crate create processes concurrently, so only the order is known here;
    // driver_default_names checks exact numbers in a process of its own.
    assert!(ordinal(&b.name()) > ordinal(&a.name()));
}

#[test]
fn custom_name_reaches_the_child() {
    let dir = TempDir::new("name");
    let out = dir.file("out");
    let p = Process::new(write_own_name, (out.clone(),))
        .name("worker-Ω")
        .start()
        .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    assert_eq!(p.name(), "worker-Ω");
    assert_eq!(p.to_string(), "<Process(worker-Ω, initial)>");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(read(&out), "worker-Ω");
    assert_eq!(p.to_string(), "<Process(worker-Ω, stopped)>");
}

#[test]
fn default_name_reaches_the_child() {
    let dir = TempDir::new("defname");
    let out = dir.file("out");
    let p = Process::new(write_own_name, (out.clone(),))
        .start()
        .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(read(&out), p.name());
}

/// Runs in a child: starts a grandchild that reports its name, and reports ours and the
/// grandchild's as our parent sees it.
fn start_grandchild(out: String, grand_out: String) -> procvisor::Result<()> {
    let g = Process::new(write_own_name, (grand_out,)).start()?;
    let handle_name = g.name();
    g.join()?;
    write_atomic(
        &out,
        &format!(
            "{}|{}|{:?}",
            current_process().name(),
            handle_name,
            g.exitcode()
        ),
    );
    Ok(())
}

#[test]
fn grandchildren_names_nest() {
    let dir = TempDir::new("nest");
    let (out, grand_out) = (dir.file("out"), dir.file("grand"));
    let p = Process::new(start_grandchild, (out.clone(), grand_out.clone()))
        .start()
        .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    let name = p.name();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let expected_grand = format!("{name}:1");
    assert_eq!(read(&out), format!("{name}|{expected_grand}|Some(0)"));
    assert_eq!(read(&grand_out), expected_grand);
}

#[test]
fn grandchild_of_a_renamed_child_keeps_the_numbered_identity() {
    let dir = TempDir::new("nest-renamed");
    let (out, grand_out) = (dir.file("out"), dir.file("grand"));
    let p = Process::new(start_grandchild, (out.clone(), grand_out.clone()));
    let numbered = p.name();
    let p = p.name("renamed").start().unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    // Like Python, a default name comes from the identity (`_identity`), not from the
    // parent's display name.
    assert_eq!(read(&grand_out), format!("{numbered}:1"));
    assert_eq!(
        read(&out),
        format!("renamed|{numbered}:1|Some(0)"),
        "the child runs under its custom name"
    );
}

fn report_parent(out: String) {
    let parent = parent_process().expect("a child has a parent");
    write_atomic(
        &out,
        &format!(
            "{:?}|{}|{}|{}",
            parent.pid(),
            parent.name(),
            parent.is_alive(),
            std::os::unix::process::parent_id()
        ),
    );
}

#[test]
fn parent_process_in_a_child_is_us() {
    let dir = TempDir::new("parent");
    let out = dir.file("out");
    let p = Process::new(report_parent, (out.clone(),)).start().unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let me = std::process::id();
    assert_eq!(read(&out), format!("Some({me})|MainProcess|true|{me}"));
}

#[test]
fn current_process_in_the_test_process() {
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), Some(std::process::id() as i32));
    assert!(me.is_alive());
    assert!(!me.daemon());
    assert_eq!(me.to_string(), "<Process(MainProcess, started)>");
    assert!(parent_process().is_none());
    assert!(procvisor::cpu_count() >= 1);
    assert!(!procvisor::stop_requested());
}

fn report_authkey(out: String) {
    let hex: String = current_process()
        .authkey()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write_atomic(&out, &hex);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn authkey_is_32_random_bytes_inherited_by_children() {
    let key = current_process().authkey();
    assert_eq!(key.len(), 32);
    assert!(key.iter().any(|&b| b != 0), "the authkey is random");
    assert_eq!(current_process().authkey(), key, "the authkey is stable");

    let dir = TempDir::new("authkey");
    let out = dir.file("out");
    let p = Process::new(report_authkey, (out.clone(),))
        .start()
        .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    assert_eq!(p.authkey(), key);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(read(&out), hex(&key));
}

#[test]
fn custom_authkey_reaches_the_child() {
    let dir = TempDir::new("authkey-custom");
    let out = dir.file("out");
    let p = Process::new(report_authkey, (out.clone(),))
        .start()
        .unwrap()
        .start()
        .unwrap();
    let mut guard = KillOnDrop::new();
    guard.add(&p);
    p.set_authkey(vec![7u8; 32]).unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert_eq!(read(&out), hex(&[7u8; 32]));
}

// ---- exact default names, in a process of their own ---------------------------------------

fn print_names() -> procvisor::Result<()> {
    let g = Process::new(
        || common::say(format!("NAME {}", current_process().name())),
        (),
    )
    .start()?;
    g.join()?;
    common::say(format!("NAME {}", current_process().name()));
    Ok(())
}

#[test]
#[ignore = "driver for default_names_are_numbered_per_parent"]
fn driver_default_names() {
    if !common::in_driver() {
        return;
    }
    let ps: Vec<Process> = (0..3).map(|_| Process::new(print_names, ())).collect();
    for p in &ps {
        common::say(format!("HANDLE {}", p.name()));
    }
    for p in &ps {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
}

#[test]
fn default_names_are_numbered_per_parent() {
    let out = run_driver("driver_default_names");
    assert!(out.status.success(), "{}", common::describe(&out));
    let stdout = common::stdout_of(&out);
    assert_eq!(
        common::lines_with(&stdout, "HANDLE "),
        ["Process-1", "Process-2", "Process-3"]
    );
    assert_eq!(
        common::lines_with(&stdout, "NAME "),
        [
            "Process-1:1",
            "Process-1",
            "Process-2:1",
            "Process-2",
            "Process-3:1",
            "Process-3"
        ]
    );
}
