//! The basics of `Process` and `Child`: start / join, `Display`, pids, arguments, `Run`
//! targets, names, the parent process, the authkey — under both start methods.

procvisor::test_init!();

mod common;

use common::{
    KillOnDrop, TempDir, driver_method, join_ok, per_start_method, read, run_driver_in, start,
    write_atomic,
};
use procvisor::{ExitStatus, Process, Run, StartMethod, current_process, parent_process};
use serde::{Deserialize, Serialize};

/// The number `N` of a default name `Process-N` (panics on any other shape).
fn ordinal(name: &str) -> u32 {
    let n = name
        .strip_prefix("Process-")
        .unwrap_or_else(|| panic!("{name:?} is not a default name"));
    n.parse()
        .unwrap_or_else(|_| panic!("{name:?} is not Process-<number>"))
}

/// The name a process to be started will have, as its `Debug` shows it
/// (`<Process(NAME, initial)>`): the builder has no getter.
fn name_before_start(p: &Process) -> String {
    let shown = format!("{p:?}");
    let inner = shown
        .strip_prefix("<Process(")
        .and_then(|s| s.strip_suffix(")>"))
        .unwrap_or_else(|| panic!("unexpected Debug {shown:?}"));
    let (name, _state) = inner
        .rsplit_once(", ")
        .unwrap_or_else(|| panic!("unexpected Debug {shown:?}"));
    name.to_string()
}

per_start_method! {
    fn start_join_exitcode_and_display(method: StartMethod) {
        let process = Process::new(|| (), ()).start_method(method);
        let name = name_before_start(&process);
        ordinal(&name);
        assert_eq!(
            format!("{process:?}"),
            format!("<Process({name}, initial)>")
        );

        let mut guard = KillOnDrop::new();
        let p = start(&mut guard, process);
        assert_eq!(p.name(), name);
        assert!(!p.is_daemon());
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
        assert_eq!(format!("{p:?}"), shown);

        assert_eq!(p.join().unwrap(), ExitStatus::Exited(0));
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(p.exit_status(), Some(ExitStatus::Exited(0)));
        assert!(!p.is_alive());
        assert_eq!(p.pid(), pid, "the pid stays known after exit");
        assert_eq!(p.to_string(), format!("<Process({name}, stopped)>"));
        // A process may be joined again.
        assert!(p.join().unwrap().success());
        assert_eq!(
            p.join_timeout(std::time::Duration::ZERO).unwrap(),
            Some(ExitStatus::Exited(0))
        );
        assert_eq!(p.exitcode(), Some(0));
    }
}

fn wait_for_file(path: String) {
    assert!(common::wait_for_file(std::path::Path::new(&path)));
}

per_start_method! {
    fn display_while_running_and_daemon_suffix(method: StartMethod) {
        let dir = TempDir::new("display");
        let go = dir.file("go");
        let process = Process::new(wait_for_file, (go.clone(),))
            .daemon(true)
            .start_method(method);
        let name = name_before_start(&process);
        assert_eq!(
            format!("{process:?}"),
            format!("<Process({name}, initial daemon)>")
        );
        let mut guard = KillOnDrop::new();
        let p = start(&mut guard, process);
        assert!(p.is_daemon());
        assert!(p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert_eq!(p.to_string(), format!("<Process({name}, started daemon)>"));
        write_atomic(&go, "go");
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(p.to_string(), format!("<Process({name}, stopped daemon)>"));
    }
}

fn several_args(out: String, a: u32, b: String, c: Vec<i64>, d: (bool, char), e: Option<f64>) {
    write_atomic(&out, &format!("{a}|{b}|{c:?}|{d:?}|{e:?}"));
}

per_start_method! {
    fn target_receives_its_arguments(method: StartMethod) {
        let dir = TempDir::new("args");
        let out = dir.file("out");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(
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
            .start_method(method),
        );
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(
            read(&out),
            "42|héllo wörld|[-1, 0, 9223372036854775807]|(true, 'λ')|Some(2.5)"
        );
    }

    fn closure_target_without_arguments(method: StartMethod) {
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(|| Ok::<u8, String>(3), ()).start_method(method),
        );
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
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

per_start_method! {
    fn run_struct_target(method: StartMethod) {
        let dir = TempDir::new("run");
        let out = dir.file("out");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::from_run(Reporter {
                out: out.clone(),
                greeting: "hello".into(),
                numbers: vec![1, 2, 3],
            })
            .start_method(method),
        );
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
    assert!(ordinal(&name_before_start(&b)) > ordinal(&name_before_start(&a)));
}

per_start_method! {
    fn custom_name_reaches_the_child(method: StartMethod) {
        let dir = TempDir::new("name");
        let out = dir.file("out");
        let process = Process::new(write_own_name, (out.clone(),))
            .name("worker-Ω")
            .start_method(method);
        assert_eq!(format!("{process:?}"), "<Process(worker-Ω, initial)>");
        let mut guard = KillOnDrop::new();
        let p = start(&mut guard, process);
        assert_eq!(p.name(), "worker-Ω");
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(read(&out), "worker-Ω");
        assert_eq!(p.to_string(), "<Process(worker-Ω, stopped)>");
    }

    fn default_name_reaches_the_child(method: StartMethod) {
        let dir = TempDir::new("defname");
        let out = dir.file("out");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(write_own_name, (out.clone(),)).start_method(method),
        );
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(read(&out), p.name());
    }
}

/// Runs in a child: starts a grandchild (with the child's default start method, the one that
/// started it) that reports its name, and reports ours and the grandchild's as our parent
/// sees it.
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

per_start_method! {
    fn grandchildren_names_nest(method: StartMethod) {
        let dir = TempDir::new("nest");
        let (out, grand_out) = (dir.file("out"), dir.file("grand"));
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(start_grandchild, (out.clone(), grand_out.clone())).start_method(method),
        );
        let name = p.name();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        let expected_grand = format!("{name}:1");
        assert_eq!(read(&out), format!("{name}|{expected_grand}|Some(0)"));
        assert_eq!(read(&grand_out), expected_grand);
    }

    fn grandchild_of_a_renamed_child_keeps_the_numbered_identity(method: StartMethod) {
        let dir = TempDir::new("nest-renamed");
        let (out, grand_out) = (dir.file("out"), dir.file("grand"));
        let process = Process::new(start_grandchild, (out.clone(), grand_out.clone()));
        let numbered = name_before_start(&process);
        let mut guard = KillOnDrop::new();
        let p = start(&mut guard, process.name("renamed").start_method(method));
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
}

fn report_parent(out: String) {
    let parent = parent_process().expect("a child has a parent");
    write_atomic(
        &out,
        &format!(
            "{}|{}|{}|{}",
            parent.pid(),
            parent.name(),
            parent.is_alive(),
            std::os::unix::process::parent_id()
        ),
    );
}

per_start_method! {
    fn parent_process_in_a_child_is_us(method: StartMethod) {
        let dir = TempDir::new("parent");
        let out = dir.file("out");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(report_parent, (out.clone(),)).start_method(method),
        );
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        // For a fork child too: the fork server forks it as our own child (CLONE_PARENT).
        let me = std::process::id();
        assert_eq!(read(&out), format!("{me}|MainProcess|true|{me}"));
    }
}

#[test]
fn current_process_in_the_test_process() {
    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), std::process::id() as i32);
    assert!(!me.is_daemon());
    assert!(me.identity().is_empty());
    assert_eq!(me.to_string(), "<Process(MainProcess, started)>");
    assert!(parent_process().is_none());
    assert!(procvisor::cpu_count() >= 1);
    assert!(!procvisor::stop_requested());
}

fn report_authkey(out: String) {
    write_atomic(&out, &hex(current_process().authkey()));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

per_start_method! {
    fn authkey_is_32_random_bytes_inherited_by_children(method: StartMethod) {
        let key = current_process().authkey().to_vec();
        assert_eq!(key.len(), 32);
        assert!(key.iter().any(|&b| b != 0), "the authkey is random");
        assert_eq!(current_process().authkey(), key, "the authkey is stable");

        let dir = TempDir::new("authkey");
        let out = dir.file("out");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(report_authkey, (out.clone(),)).start_method(method),
        );
        assert_eq!(p.authkey(), key);
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(read(&out), hex(&key));
    }

    fn custom_authkey_reaches_the_child(method: StartMethod) {
        let dir = TempDir::new("authkey-custom");
        let out = dir.file("out");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(report_authkey, (out.clone(),))
                .authkey(vec![7u8; 32])
                .start_method(method),
        );
        assert_eq!(p.authkey(), [7u8; 32]);
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        assert_eq!(read(&out), hex(&[7u8; 32]));
    }
}

/// Child: reports its default start method (the one its own children get).
fn report_start_method(out: String) {
    write_atomic(&out, procvisor::start_method().as_str());
}

per_start_method! {
    fn a_childs_default_start_method_is_the_one_that_started_it(method: StartMethod) {
        let dir = TempDir::new("child-method");
        let out = dir.file("out");
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(report_start_method, (out.clone(),)).start_method(method),
        );
        join_ok(&p);
        assert_eq!(read(&out), method.as_str());
    }
}

/// Child: reports the name `ps` shows for it.
fn report_comm(out: String) {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    write_atomic(&out, comm.trim_end());
}

per_start_method! {
    fn children_are_named_like_the_program(method: StartMethod) {
        let dir = TempDir::new("comm");
        let out = dir.file("out");
        let ours = std::fs::read_to_string("/proc/self/comm").unwrap();
        let mut guard = KillOnDrop::new();
        let p = start(
            &mut guard,
            Process::new(report_comm, (out.clone(),)).start_method(method),
        );
        join_ok(&p);
        // Not `exe` (spawn executes /proc/self/exe), nor the fork server's name.
        assert_eq!(read(&out), ours.trim_end());
    }
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
    let ps: Vec<Process> = (0..3)
        .map(|_| Process::new(print_names, ()).start_method(driver_method()))
        .collect();
    for p in &ps {
        common::say(format!("HANDLE {}", name_before_start(p)));
    }
    let mut guard = KillOnDrop::new();
    for p in ps {
        let p = start(&mut guard, p);
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
}

per_start_method! {
    fn default_names_are_numbered_per_parent(method: StartMethod) {
        let out = run_driver_in("driver_default_names", method, None);
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
}
