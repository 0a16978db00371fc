//! Helpers shared by the integration tests.
//!
//! * Temporary directories that children write readiness / result files into.
//! * Guards that clean up every process a test started, even when the test fails.
//! * The *self re-exec driver* pattern: a scenario that needs a whole program (its own stdout
//!   and stderr, or its exit) lives in an `#[ignore]`d test `driver_xxx` of the same test crate;
//!   the real test re-executes the test binary to run just that driver and inspects its output.
//!   Drivers print machine-readable lines with a prefix (`PID 1234`, `EXITCODE -15`), because
//!   libtest prints lines of its own on stdout too.
//! * [`per_start_method!`]: one test body, run once per start method (as CPython's suite runs
//!   its test classes in every mode).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procvisor::{Child, Process, StartMethod};

/// Upper bound for anything that should take milliseconds; only reached when something is broken.
pub const GENEROUS: Duration = Duration::from_secs(20);

/// Upper bound for a whole driver run.
pub const DRIVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable that tells an `#[ignore]`d driver test that it was started by
/// [`run_driver`] / [`spawn_driver`] (run by hand with `--ignored`, drivers do nothing).
pub const DRIVER_ENV: &str = "PROCVISOR_TEST_DRIVER";

/// Environment variable through which a test passes a parameter to its driver.
pub const DRIVER_PARAM_ENV: &str = "PROCVISOR_TEST_DRIVER_PARAM";

/// Environment variable through which a test tells its driver which start method to use.
pub const DRIVER_METHOD_ENV: &str = "PROCVISOR_TEST_DRIVER_METHOD";

// ---- one body, every start method --------------------------------------------------------

/// Turns each `fn name(method: StartMethod) { body }` into that function and two tests,
/// `name::spawn` and `name::fork`, which call it with [`StartMethod::Spawn`] and
/// [`StartMethod::Fork`]: a failure names its mode. The body gives `method` to every process
/// it starts (`Process::start_method(method)`), never to the global default, which the tests
/// running in parallel threads share. `cargo test --test X -- ::fork` runs one mode.
///
/// ```ignore
/// per_start_method! {
///     /// Attributes (docs, `#[cfg]`) apply to the body and to both tests.
///     fn start_and_join(method: StartMethod) {
///         let child = Process::new(|| (), ()).start_method(method).start().unwrap();
///         assert!(child.join().unwrap().success());
///     }
///
///     /// An async body's attributes are its tests' own: the runtime's test attribute goes here.
///     #[tokio::test(flavor = "current_thread")]
///     async fn start_async(method: StartMethod) {
///         /* … .await … */
///     }
/// }
/// ```
#[allow(unused_macros)]
macro_rules! per_start_method {
    () => {};
    (
        $(#[$attr:meta])*
        fn $name:ident($method:ident: $method_ty:ty) $body:block
        $($rest:tt)*
    ) => {
        $(#[$attr])*
        fn $name($method: $method_ty) $body

        $(#[$attr])*
        mod $name {
            #[test]
            fn spawn() {
                super::$name(::procvisor::StartMethod::Spawn)
            }

            #[test]
            fn fork() {
                super::$name(::procvisor::StartMethod::Fork)
            }
        }

        $crate::common::per_start_method! { $($rest)* }
    };
    (
        $(#[$attr:meta])*
        async fn $name:ident($method:ident: $method_ty:ty) $body:block
        $($rest:tt)*
    ) => {
        async fn $name($method: $method_ty) $body

        mod $name {
            $(#[$attr])*
            async fn spawn() {
                super::$name(::procvisor::StartMethod::Spawn).await
            }

            $(#[$attr])*
            async fn fork() {
                super::$name(::procvisor::StartMethod::Fork).await
            }
        }

        $crate::common::per_start_method! { $($rest)* }
    };
}
#[allow(unused_imports)]
pub(crate) use per_start_method;

// ---- polling -----------------------------------------------------------------------------

/// Polls `cond` every ~10 ms until it holds (`true`) or `deadline` has passed (`false`).
pub fn wait_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return cond();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (generously) until `path` exists.
pub fn wait_for_file(path: &Path) -> bool {
    wait_until(GENEROUS, || path.exists())
}

// ---- /proc -------------------------------------------------------------------------------

/// The pids whose parent is `parent` (from `/proc/<pid>/stat`), threads excluded.
pub fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // After the `(comm)` field, which may hold spaces: state, then ppid.
            let after_comm = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            after_comm.split_whitespace().nth(1) == Some(&parent.to_string())
                && pid_state(pid) != Some('Z')
        })
        .collect()
}

/// Every descendant of `parent` (children, their children, …) that is not a zombie.
pub fn descendants_of(parent: i32) -> Vec<i32> {
    let mut all = children_of(parent);
    let mut i = 0;
    while i < all.len() {
        let grandchildren = children_of(all[i]);
        all.extend(grandchildren);
        i += 1;
    }
    all
}

/// The process name of `pid` (`/proc/<pid>/comm`), `None` if there is no such process.
pub fn comm_of(pid: i32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(comm.trim_end().to_string())
}

/// The name `ps` shows for a fork server.
pub const FORK_SERVER_NAME: &str = "procvisor-fork";

/// The fork server among the children of `parent` (it is the one named [`FORK_SERVER_NAME`]).
pub fn fork_server_of(parent: i32) -> Option<i32> {
    children_of(parent)
        .into_iter()
        .find(|&pid| comm_of(pid).as_deref() == Some(FORK_SERVER_NAME))
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, …), `None` if there is no such process.
pub fn pid_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything, so look after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Whether `pid` is a running process: a zombie (`Z`), a dead task (`X`) or a missing
/// `/proc/<pid>` all count as not running.
pub fn pid_is_running(pid: i32) -> bool {
    !matches!(pid_state(pid), None | Some('Z') | Some('X'))
}

/// Whether `pid` runs the same executable as this process (so it is one of ours: a driver, a
/// child or a grandchild started from this test binary), for cleanup that must never signal a
/// stranger that happened to get a recycled pid.
fn runs_our_executable(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(theirs), Ok(ours)) = (
        std::fs::metadata(format!("/proc/{pid}/exe")),
        std::fs::metadata("/proc/self/exe"),
    ) else {
        return false;
    };
    theirs.dev() == ours.dev() && theirs.ino() == ours.ino()
}

/// Sends `sig` to `pid` (a process this test started).
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers.
    unsafe {
        libc::kill(pid, sig);
    }
}

// ---- temporary directories ---------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("procvisor-test-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("cannot create a temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside the directory, as a `String` (ready to be a target argument).
    pub fn file(&self, name: &str) -> String {
        self.path.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `contents` to `path` atomically (a temp file renamed into place), so that a reader
/// that sees the file sees all of it. Meant for children reporting to the test.
pub fn write_atomic(path: &str, contents: &str) {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, contents).expect("cannot write a report file");
    std::fs::rename(&tmp, path).expect("cannot rename a report file");
}

/// Reads a report file written by a child.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

// ---- cleanup of started processes --------------------------------------------------------

/// Kills (SIGKILL) and joins every process it holds that is still alive, on drop: a failing
/// test leaves nothing running, and the test binary's exit (which joins non-daemonic children)
/// never hangs on a leftover child.
#[derive(Default)]
pub struct KillOnDrop(pub Vec<Child>);

impl KillOnDrop {
    pub fn new() -> KillOnDrop {
        KillOnDrop(Vec::new())
    }

    /// Adds a handle (a clone of the caller's) and returns it for convenience.
    pub fn add(&mut self, p: &Child) -> Child {
        self.0.push(p.clone());
        p.clone()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_alive() {
                let _ = p.kill();
            }
        }
        for p in &self.0 {
            let _ = p.join_timeout(GENEROUS);
        }
    }
}

/// SIGKILLs, on drop, each listed pid that is still running this test binary's executable
/// (grandchildren that a broken library might leave behind).
#[derive(Default)]
pub struct PidsGuard(pub Vec<i32>);

impl Drop for PidsGuard {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid_is_running(pid) && runs_our_executable(pid) {
                send_signal(pid, libc::SIGKILL);
            }
        }
    }
}

// ---- drivers -----------------------------------------------------------------------------

/// True inside a driver started by [`run_driver`] / [`spawn_driver`].
pub fn in_driver() -> bool {
    std::env::var_os(DRIVER_ENV).is_some()
}

/// The parameter the test passed to its driver, if any.
pub fn driver_param() -> Option<String> {
    std::env::var(DRIVER_PARAM_ENV).ok()
}

/// The start method the test asked its driver to use ([`run_driver_in`], [`spawn_driver_in`]);
/// spawn if it named none.
pub fn driver_method() -> StartMethod {
    match std::env::var(DRIVER_METHOD_ENV) {
        Ok(method) => method.parse().expect("a start method"),
        Err(_) => StartMethod::Spawn,
    }
}

fn driver_command(name: &str, param: Option<&str>) -> Command {
    let exe = std::env::current_exe().expect("cannot find the test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(DRIVER_ENV, "1")
    .env_remove(DRIVER_PARAM_ENV)
    .env_remove(DRIVER_METHOD_ENV)
    .env_remove("RUST_LOG")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(param) = param {
        cmd.env(DRIVER_PARAM_ENV, param);
    }
    cmd
}

/// A running driver, SIGKILLed (by its pid, while it is still unreaped so the pid cannot have
/// been recycled) and reaped on drop.
pub struct DriverGuard {
    child: Option<std::process::Child>,
}

impl DriverGuard {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("driver already reaped").id() as i32
    }

    /// SIGKILLs the driver now, unless it has already been reaped (its pid could then belong
    /// to someone else). It stays unreaped until [`DriverGuard::try_wait`] or drop.
    pub fn kill(&mut self) {
        if let Some(child) = &mut self.child {
            if child.try_wait().ok().flatten().is_none() {
                send_signal(child.id() as i32, libc::SIGKILL);
            }
        }
    }

    /// Non-blocking: the exit status if the driver has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the driver to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.try_wait();
            status.is_some()
        });
        status
    }
}

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                send_signal(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}

/// Collects a pipe's bytes on a thread; `snapshot` may be taken before EOF.
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    done: mpsc::Receiver<()>,
}

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Collector {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let sink = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tx.send(());
        });
        Collector { buf, done }
    }

    /// Waits up to `timeout` for EOF (every writer gone), then returns what was read.
    fn finish(self, timeout: Duration) -> Vec<u8> {
        let _ = self.done.recv_timeout(timeout);
        self.buf.lock().unwrap().clone()
    }
}

/// Runs the driver test `name` in a fresh copy of this test binary and returns its output.
/// Fails the test (after killing the driver) if it runs longer than [`DRIVER_TIMEOUT`].
pub fn run_driver(name: &str) -> Output {
    run_driver_with(name, None)
}

/// [`run_driver`] with a parameter the driver reads with [`driver_param`].
pub fn run_driver_with(name: &str, param: Option<&str>) -> Output {
    collect_driver(name, driver_command(name, param))
}

/// [`run_driver_with`], the driver starting its processes with `method` ([`driver_method`]).
pub fn run_driver_in(name: &str, method: StartMethod, param: Option<&str>) -> Output {
    let mut cmd = driver_command(name, param);
    cmd.env(DRIVER_METHOD_ENV, method.as_str());
    collect_driver(name, cmd)
}

fn collect_driver(name: &str, mut cmd: Command) -> Output {
    let mut child = cmd.spawn().expect("cannot start the driver");
    let out = Collector::start(child.stdout.take().unwrap());
    let err = Collector::start(child.stderr.take().unwrap());
    let mut guard = DriverGuard { child: Some(child) };
    let status = guard.wait_timeout(DRIVER_TIMEOUT);
    if status.is_none() {
        guard.kill();
    }
    // Children of the driver hold the pipes too; a correct library leaves none behind, so EOF
    // comes at once. Do not hang if one lingers: take what was written so far.
    let stdout = out.finish(Duration::from_secs(10));
    let stderr = err.finish(Duration::from_secs(10));
    let Some(status) = status else {
        drop(guard);
        panic!(
            "driver {name} did not finish within {DRIVER_TIMEOUT:?}\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout,
        stderr,
    }
}

/// A driver whose stdout is read line by line while it runs (its stderr is collected).
pub struct StreamingDriver {
    pub guard: DriverGuard,
    lines: mpsc::Receiver<String>,
    stderr: Option<Collector>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
    /// Lines received but not taken by [`StreamingDriver::expect_line`].
    unmatched: std::collections::VecDeque<String>,
}

/// Starts the driver test `name` and streams its stdout.
pub fn spawn_driver(name: &str, param: Option<&str>) -> StreamingDriver {
    stream_driver(driver_command(name, param))
}

/// [`spawn_driver`], the driver starting its processes with `method` ([`driver_method`]).
pub fn spawn_driver_in(name: &str, method: StartMethod, param: Option<&str>) -> StreamingDriver {
    let mut cmd = driver_command(name, param);
    cmd.env(DRIVER_METHOD_ENV, method.as_str());
    stream_driver(cmd)
}

fn stream_driver(mut cmd: Command) -> StreamingDriver {
    let mut child = cmd.spawn().expect("cannot start the driver");
    let stdout = child.stdout.take().unwrap();
    let stderr = Collector::start(child.stderr.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    StreamingDriver {
        guard: DriverGuard { child: Some(child) },
        lines,
        stderr: Some(stderr),
        seen: Vec::new(),
        unmatched: Default::default(),
    }
}

impl StreamingDriver {
    /// Waits (up to `timeout`) for a stdout line starting with `prefix` that no earlier call
    /// took (lines from several processes may come in any order); returns the rest of it.
    /// Panics with everything seen so far on timeout or EOF.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let matches = |line: &str| {
            clean_line(line)
                .strip_prefix(prefix)
                .map(|r| r.trim().to_string())
        };
        if let Some(i) = self.unmatched.iter().position(|l| matches(l).is_some()) {
            let line = self.unmatched.remove(i).unwrap();
            return matches(&line).unwrap();
        }
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    match matches(&line) {
                        Some(rest) => return rest,
                        None => self.unmatched.push_back(line),
                    }
                }
                Err(e) => panic!(
                    "no line starting with {prefix:?} from the driver ({e:?}); stdout so far:\n{}\nstderr so far:\n{}",
                    self.seen.join("\n"),
                    self.stderr_so_far()
                ),
            }
        }
    }

    /// Reads the remaining stdout lines until EOF or `timeout`.
    pub fn drain(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return,
            }
        }
    }

    fn stderr_so_far(&self) -> String {
        match &self.stderr {
            Some(c) => String::from_utf8_lossy(&c.buf.lock().unwrap()).into_owned(),
            None => String::new(),
        }
    }

    /// The driver's stderr (waits up to `timeout` for EOF).
    pub fn stderr(&mut self, timeout: Duration) -> String {
        match self.stderr.take() {
            Some(c) => String::from_utf8_lossy(&c.finish(timeout)).into_owned(),
            None => String::new(),
        }
    }
}

/// A driver's stdout line without libtest's `test driver_xxx ... ` announcement, which stays
/// unterminated until the test ends, so the first line the driver prints is glued to it.
pub fn clean_line(line: &str) -> &str {
    match (line.starts_with("test "), line.find(" ... ")) {
        (true, Some(i)) => &line[i + 5..],
        _ => line,
    }
}

/// The rest of each line of `text` that starts with `prefix`.
pub fn lines_with(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| clean_line(l).strip_prefix(prefix))
        .map(|s| s.trim().to_string())
        .collect()
}

/// The only line of `text` starting with `prefix` (panics otherwise, showing `text`).
pub fn line_with(text: &str, prefix: &str) -> String {
    let found = lines_with(text, prefix);
    assert_eq!(
        found.len(),
        1,
        "expected one line starting with {prefix:?}, got {found:?} in:\n{text}"
    );
    found.into_iter().next().unwrap()
}

/// Stdout and stderr of a driver, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A driver's stdout as text.
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A driver's stderr as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Prints a machine-readable line from a driver or a child (flushed at once: stdout is a pipe).
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    // One write, starting on a fresh line: a child's line must not stick to whatever libtest
    // (or another process sharing the pipe) was in the middle of printing.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("\n{line}\n").as_bytes());
    let _ = out.flush();
}

/// SIGKILLs the driver and asserts that every one of `pids` (its descendants) is gone within
/// 2 s, and within the 1 s the foundation issue promises. Children never outlive their parent.
pub fn kill_driver_and_expect_descendants_gone(guard: &mut DriverGuard, pids: &[i32]) {
    for &pid in pids {
        assert!(pid_is_running(pid), "{pid} is not running");
    }
    guard.kill();
    let t = Instant::now();
    let all_gone = wait_until(Duration::from_secs(2), || {
        pids.iter().all(|&pid| !pid_is_running(pid))
    });
    let took = t.elapsed();
    let left: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&p| pid_is_running(p))
        .collect();
    assert!(
        all_gone,
        "still running 2 s after the parent's SIGKILL: {left:?} of {pids:?}"
    );
    assert!(
        took <= Duration::from_secs(1),
        "the descendants took {took:?} (more than 1 s) to die"
    );
}

/// Starts `p` under `guard` (killed and joined if the test fails).
pub fn start(guard: &mut KillOnDrop, p: Process) -> Child {
    let child = p.start().unwrap();
    guard.add(&child)
}

/// Joins `p` within [`GENEROUS`] and asserts it exited with 0.
pub fn join_ok(p: &Child) {
    p.join_timeout(GENEROUS).unwrap();
    assert_eq!(p.exitcode(), Some(0), "{p}");
}

/// Receives one message from a child, failing the test if none comes within [`GENEROUS`].
pub fn recv<T: serde::de::DeserializeOwned>(conn: &procvisor::Connection) -> T {
    assert!(
        conn.poll_timeout(GENEROUS).unwrap(),
        "no message from the child"
    );
    conn.recv().unwrap()
}
