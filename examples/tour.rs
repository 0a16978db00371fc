//! A guided tour of procvisor: the README's demo.
//!
//! ```text
//! cargo run --release --example tour
//! ```
//!
//! Each section is one function that shows one feature and prints what it sees; `main` runs
//! them in order from the `SECTIONS` table and ends with a one-line summary. The whole tour
//! takes a couple of seconds. Lines printed by child processes are indented by two spaces and
//! say which process printed them; lines printed by the main process by four spaces (`|`).
//!
//! To add a section: write a `fn my_section() -> procvisor::Result<()>` and add a row to
//! `SECTIONS`. Start children with `launch` so the summary counts them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use procvisor::{
    Child, Process, Run, StartMethod, active_children, current_process, force_start_method,
    parent_process, set_start_method, start_method, wait_for_stop,
};
use serde::{Deserialize, Serialize};

/// A section of the tour: its title and the function that shows it.
type Section = (&'static str, fn() -> procvisor::Result<()>);

/// The sections of the tour, in order.
const SECTIONS: &[Section] = &[
    ("Starting workers with arguments", workers_with_args),
    ("Names, current_process() and parent_process()", names),
    ("Daemonic and non-daemonic children", daemons),
    ("join() with a timeout", join_with_timeout),
    ("terminate() and exit codes", exit_codes),
    ("The Run trait: Python's Process subclass", run_subclass),
    ("Graceful stop() with escalation", graceful_stop),
    ("active_children()", children),
    ("Logging with log_to_stderr()", logging),
    ("The fork start method", fork_start_method),
    ("Pipes and connections", pipes),
    ("Supervision trees (Erlang/OTP)", supervision),
    ("Queues", queues),
    ("Locks and shared memory", locks_and_shared_memory),
    ("Process pools, with crash recovery", pools),
];

/// How many processes the main process started (through `launch`).
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Starts `p` and counts it for the summary.
fn launch(p: Process) -> procvisor::Result<Child> {
    let child = p.start()?;
    STARTED.fetch_add(1, Ordering::Relaxed);
    Ok(child)
}

/// A line printed by the main process.
macro_rules! say {
    ($($arg:tt)*) => {
        println!("    | {}", format_args!($($arg)*))
    };
}

/// A line printed by a child process, prefixed with its name.
macro_rules! child_say {
    ($($arg:tt)*) => {
        println!("  [{}] {}", current_process().name(), format_args!($($arg)*))
    };
}

fn main() -> procvisor::Result<()> {
    // In a child process `init` runs the child's target and exits: nothing below runs there.
    procvisor::init();

    let t0 = Instant::now();
    println!("procvisor tour: Python's multiprocessing, rebuilt in Rust");
    for (i, (title, section)) in SECTIONS.iter().enumerate() {
        println!();
        println!("== {}. {title}", i + 1);
        section()?;
    }

    let left = active_children();
    println!();
    println!(
        "Tour complete: {} sections, {} processes started by the main process, {} left \
         running, {:.2} s.",
        SECTIONS.len(),
        STARTED.load(Ordering::Relaxed),
        left.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

// ---- 1. starting workers with arguments ----------------------------------------------------

/// A target takes its arguments from a serde tuple: they are encoded here and decoded in the
/// child, as Python pickles `args`.
fn greet(num: u32, greeting: String, squares: Vec<u64>) {
    child_say!("{greeting} from worker {num}: squares so far {squares:?}");
}

fn workers_with_args() -> procvisor::Result<()> {
    say!("Process::new(target, args) takes a fn item (or a closure that captures nothing)");
    say!("and a tuple of serde values; start() runs it in a new OS process and returns its");
    say!("Child handle; join() waits and returns the exit status.");
    let workers = (0..4u32)
        .map(|i| {
            let squares = (0..=u64::from(i)).map(|k| k * k).collect::<Vec<_>>();
            launch(Process::new(greet, (i, "hello".to_string(), squares)))
        })
        .collect::<procvisor::Result<Vec<Child>>>()?;
    for p in &workers {
        p.join()?;
    }
    let closure = launch(Process::new(
        |x: f64, y: f64| child_say!("a closure: {x} * {y} = {}", x * y),
        (1.5, 4.0),
    ))?;
    closure.join()?;
    let codes: Vec<_> = workers
        .iter()
        .chain([&closure])
        .map(Child::exitcode)
        .collect();
    say!("exit codes: {codes:?}");
    Ok(())
}

// ---- 2. names, current_process, parent_process ---------------------------------------------

fn who_am_i() {
    let me = current_process();
    let parent = parent_process().map_or("none".to_string(), |p| {
        format!("{} (pid {})", p.name(), p.pid())
    });
    child_say!("I am {me} with pid {}; my parent is {parent}", me.pid());
}

fn names() -> procvisor::Result<()> {
    let me = current_process();
    say!("current_process() here is {me}, pid {}", me.pid());
    say!(
        "parent_process() here is {:?}",
        parent_process().map(|p| p.name())
    );
    for p in [
        Process::new(who_am_i, ()),
        Process::new(who_am_i, ()).name("reporter"),
    ] {
        let child = launch(p)?;
        say!("started {}", child.name());
        child.join()?;
    }
    Ok(())
}

// ---- 3. daemonic and non-daemonic children --------------------------------------------------

fn sleeper(label: String, millis: u64) {
    child_say!("{label}: sleeping {millis} ms");
    sleep(Duration::from_millis(millis));
    child_say!("{label}: done");
}

/// A child that starts a daemonic and a non-daemonic child of its own, then returns. Its exit
/// sequence joins the non-daemonic one and terminates the daemonic one.
fn middle_manager() -> procvisor::Result<()> {
    let d = Process::new(sleeper, ("daemon".to_string(), 5_000))
        .daemon(true)
        .start()?;
    let n = Process::new(sleeper, ("non-daemon".to_string(), 200))
        .daemon(false)
        .start()?;
    sleep(Duration::from_millis(50));
    child_say!("started {d} and {n}; returning without joining them");
    Ok(())
}

/// A daemonic process may not have children.
fn daemonic_parent() {
    match Process::new(|| (), ()).start() {
        Ok(p) => child_say!("unexpectedly started {p}"),
        Err(e) => child_say!("start() refused: {e}"),
    }
}

fn daemons() -> procvisor::Result<()> {
    say!("When a process ends, its non-daemonic children are joined and its daemonic children");
    say!("terminated. Children are named after their parent: Process-N:1, Process-N:2.");
    let t = Instant::now();
    let m = launch(Process::new(middle_manager, ()).name("manager"))?;
    m.join()?;
    say!(
        "{m} ended after {:.2} s: it waited for the 200 ms non-daemon, not the 5 s daemon",
        t.elapsed().as_secs_f64()
    );
    launch(Process::new(daemonic_parent, ()).daemon(true))?.join()?;
    Ok(())
}

// ---- 4. join with a timeout ------------------------------------------------------------------

fn join_with_timeout() -> procvisor::Result<()> {
    let p = launch(Process::new(sleeper, ("slow".to_string(), 300)))?;
    let status = p.join_timeout(Duration::from_millis(50))?;
    say!(
        "join_timeout(50 ms) = {status:?}: {p} is_alive={} exitcode={:?}",
        p.is_alive(),
        p.exitcode()
    );
    let status = p.join()?;
    say!(
        "join() = {status}: {p} is_alive={} exitcode={:?}",
        p.is_alive(),
        p.exitcode()
    );
    Ok(())
}

// ---- 5. terminate and exit codes ---------------------------------------------------------------

fn returns() {}

fn panics() {
    panic!("a panic in a child exits with code 1 (Python: an uncaught exception)");
}

fn exits(code: i32) {
    std::process::exit(code);
}

fn fails() -> Result<(), String> {
    Err("a target returning Err also exits with code 1".into())
}

fn exit_codes() -> procvisor::Result<()> {
    say!("exitcode(): 0 on return, 1 after a panic or an Err, N after exit(N), -N after signal N");
    say!("(the panicking child's message appears on stderr)");
    let jobs = [
        Process::new(returns, ()).name("returns"),
        Process::new(panics, ()).name("panics"),
        Process::new(fails, ()).name("fails"),
        Process::new(exits, (7,)).name("exit(7)"),
        Process::new(sleeper, ("terminated".to_string(), 5_000)).name("terminated"),
    ]
    .into_iter()
    .map(launch)
    .collect::<procvisor::Result<Vec<Child>>>()?;
    let victim = &jobs[4];
    say!(
        "before terminate(): {victim} exitcode={:?}",
        victim.exitcode()
    );
    victim.terminate()?;
    for p in &jobs {
        p.join()?;
    }
    for p in &jobs {
        say!("{:<11} exitcode={:?}  {p}", p.name(), p.exitcode());
    }
    Ok(())
}

// ---- 6. the Run trait -------------------------------------------------------------------------

/// The Rust form of subclassing `Process` and overriding `run()`: a value sent to the child.
#[derive(Serialize, Deserialize)]
struct Countdown {
    from: u32,
    liftoff: String,
}

impl Run for Countdown {
    type Output = Result<(), String>;

    fn run(self) -> Result<(), String> {
        let steps: Vec<String> = (1..=self.from).rev().map(|n| n.to_string()).collect();
        child_say!("{}… {}", steps.join("… "), self.liftoff);
        Ok(())
    }
}

fn run_subclass() -> procvisor::Result<()> {
    let p = launch(
        Process::from_run(Countdown {
            from: 3,
            liftoff: "liftoff!".into(),
        })
        .name("countdown"),
    )?;
    p.join()?;
    say!("{p} exitcode={:?}", p.exitcode());
    Ok(())
}

// ---- 7. graceful stop with escalation ---------------------------------------------------------

/// Works in slices until asked to stop, then cleans up and returns.
fn cooperative() {
    let mut slices = 0u32;
    while !wait_for_stop(Some(Duration::from_millis(20))) {
        slices += 1;
    }
    child_say!("stop requested after ~{slices} slices of work: cleaning up and returning");
}

/// Ignores stop requests, but dies of SIGTERM.
fn stubborn() {
    sleep(Duration::from_secs(5));
}

/// Ignores stop requests and SIGTERM: only SIGKILL ends it.
fn very_stubborn() {
    // SAFETY: setting SIGTERM's disposition to "ignore" installs no handler code; it is done
    // before this process does anything else.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
    sleep(Duration::from_secs(5));
}

fn graceful_stop() -> procvisor::Result<()> {
    say!("stop(grace) asks politely (stop_requested() / wait_for_stop() in the child), then");
    say!("sends SIGTERM after `grace`, then SIGKILL after another `grace`.");
    let grace = Duration::from_millis(150);
    let jobs = [
        Process::new(cooperative, ()).name("cooperative"),
        Process::new(stubborn, ()).name("stubborn"),
        Process::new(very_stubborn, ()).name("very-stubborn"),
    ]
    .into_iter()
    .map(launch)
    .collect::<procvisor::Result<Vec<Child>>>()?;
    sleep(Duration::from_millis(100));
    for p in &jobs {
        let t = Instant::now();
        let status = p.stop(grace);
        say!(
            "{:<13} stopped in {:>3} ms: {status}",
            p.name(),
            t.elapsed().as_millis(),
        );
    }
    Ok(())
}

// ---- 8. active_children -------------------------------------------------------------------------

fn until_stopped() {
    wait_for_stop(Some(Duration::from_secs(5)));
}

fn children() -> procvisor::Result<()> {
    for i in 1..=3 {
        launch(Process::new(until_stopped, ()).name(format!("idle-{i}")))?;
    }
    let running = active_children();
    let names: Vec<String> = running.iter().map(Child::name).collect();
    say!("launch() dropped its handles, but active_children() finds the running children:");
    say!("{names:?}");
    for p in &running {
        p.stop(Duration::from_secs(1));
    }
    say!(
        "after stopping each one through those handles: {} active",
        active_children().len()
    );
    Ok(())
}

// ---- 9. logging ---------------------------------------------------------------------------------

fn logged_work() {
    tracing::info!("doing some work");
}

/// Turns logging on in this child only, so the rest of the tour stays quiet, and starts a
/// child of its own, which inherits the level.
fn logging_demo() -> procvisor::Result<()> {
    procvisor::log_to_stderr(tracing::Level::INFO)?;
    Process::new(logged_work, ()).start()?.join()?;
    Ok(())
}

fn logging() -> procvisor::Result<()> {
    say!("log_to_stderr(level) prints lifecycle events as [LEVEL/process] on stderr; children");
    say!("started afterwards log at the same level. Here it is enabled inside one child:");
    launch(Process::new(logging_demo, ()).name("logger"))?.join()?;
    Ok(())
}

// ---- 10. the fork start method ------------------------------------------------------------------

fn noop() {}

/// Starts and joins `n` no-op children with `method`; returns the time per child.
fn time_start_join(method: StartMethod, n: u32) -> procvisor::Result<Duration> {
    let t = Instant::now();
    for _ in 0..n {
        launch(Process::new(noop, ()).start_method(method))?.join()?;
    }
    Ok(t.elapsed() / n)
}

/// A fork child: forked by the fork server, yet this tour's own child for the OS as well.
fn who_am_i_for_the_os() {
    who_am_i();
    child_say!(
        "my parent for the OS is pid {} (the fork server forks its children as its parent's)",
        std::os::unix::process::parent_id()
    );
}

fn fork_start_method() -> procvisor::Result<()> {
    say!("default start method: {}", start_method());
    set_start_method(StartMethod::Fork)?;
    say!("set_start_method(Fork): children now fork from a single-threaded fork server");
    launch(Process::new(who_am_i_for_the_os, ()))?.join()?;
    force_start_method(StartMethod::Spawn);

    let n = 20;
    time_start_join(StartMethod::Fork, 1)?; // starts the fork server
    let spawn = time_start_join(StartMethod::Spawn, n)?;
    let fork = time_start_join(StartMethod::Fork, n)?;
    say!(
        "start+join of a no-op child, {n} times each: spawn {:.2} ms, fork {:.2} ms per child",
        spawn.as_secs_f64() * 1e3,
        fork.as_secs_f64() * 1e3
    );
    say!(
        "both keep children started ahead (the fork server's two spares; a re-executed spawn \
         child, used while env, cwd and stdio are unchanged): a start only hands one its bootstrap"
    );
    Ok(())
}

// ---- pipes and connections ----------------------------------------------------------------------

/// A worker that squares what it receives until the pipe closes, then reports how many.
fn squarer(conn: procvisor::Connection) -> procvisor::Result<()> {
    let mut count = 0u32;
    loop {
        match conn.recv::<u64>() {
            Ok(x) => conn.send(&(x, x * x))?,
            Err(procvisor::error::RecvError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
        count += 1;
    }
    child_say!("the pipe closed after {count} numbers");
    Ok(())
}

/// Answers once on a connection to a listener, authenticated with the tree's key.
fn phone_home(address: procvisor::Address, n: u32) -> procvisor::Result<()> {
    let conn = procvisor::Client::builder(address)
        .authkey(current_process().authkey())
        .connect()?;
    Ok(conn.send(&format!("hello from {} (#{n})", current_process().name()))?)
}

fn pipes() -> procvisor::Result<()> {
    say!("pipe() gives two connected ends; one travels to a child in its arguments.");
    let (ours, theirs) = procvisor::pipe()?;
    let p = launch(Process::new(squarer, (theirs,)))?;
    for x in [3u64, 12, 1 << 20] {
        ours.send(&x)?;
        let (x, square) = ours.recv::<(u64, u64)>()?;
        say!("sent {x}, the child answered {square}");
    }
    say!("try_poll() with nothing pending: {}", ours.try_poll()?);
    say!(
        "poll_timeout(10ms) with nothing pending: {}",
        ours.poll_timeout(Duration::from_millis(10))?
    );
    drop(ours); // the child sees end-of-file and stops
    p.join()?;

    say!("send_bytes / recv_bytes_into move raw bytes; a short buffer hands back the message:");
    // One-way: a Receiver and a Sender; `receiver.send(..)` would not compile.
    let (receiver, sender) = procvisor::pipe_oneway()?;
    let bytes = b"twelve bytes and more";
    sender.send_bytes(&bytes[..12])?; // Python's send_bytes(bytes, 0, 12)
    let mut small = [0u8; 5];
    if let Err(e) = receiver.recv_bytes_into(&mut small) {
        let text = e.to_string();
        let message = e.into_message().unwrap_or_default();
        say!("{text} -> {:?}", String::from_utf8_lossy(&message));
    }
    say!(
        "the receive end: readable {}, writable {}",
        receiver.is_readable(),
        receiver.is_writable()
    );

    say!("a Listener authenticates clients with the tree's authkey; wait() multiplexes:");
    let listener = procvisor::Listener::builder()
        .authkey(current_process().authkey())
        .bind()?;
    let callers = (0..3)
        .map(|n| launch(Process::new(phone_home, (listener.address().clone(), n))))
        .collect::<procvisor::Result<Vec<Child>>>()?;
    let conns = (0..callers.len())
        .map(|_| listener.accept())
        .collect::<Result<Vec<procvisor::Connection>, _>>()?;
    let mut pending: Vec<&procvisor::Connection> = conns.iter().collect();
    while !pending.is_empty() {
        let objects: Vec<&dyn procvisor::Waitable> = pending
            .iter()
            .map(|c| *c as &dyn procvisor::Waitable)
            .collect();
        let ready = procvisor::wait(&objects)?;
        for &i in ready.iter().rev() {
            say!("{}", pending[i].recv::<String>()?);
            pending.remove(i);
        }
    }
    for c in &callers {
        c.join()?;
    }
    Ok(())
}

// ---- supervision trees ----------------------------------------------------------------------

/// A supervised stage: reports ready, then serves until its supervisor asks it to stop.
fn stage() {
    child_say!("ready");
    procvisor::supervisor::notify_ready();
    wait_for_stop(None);
    child_say!("stopping");
}

fn supervision() -> procvisor::Result<()> {
    use procvisor::supervisor::{ChildSpec, Intensity, Strategy, Supervisor, SupervisorSpec};

    let spec = SupervisorSpec::new(Strategy::RestForOne)
        .name("tour")
        .intensity(Intensity::new(3, Duration::from_secs(10)))
        .children(
            ["reader", "parser", "writer"]
                .map(|id| ChildSpec::worker(id, stage, ()).wait_ready(Duration::from_secs(10))),
        );
    let (sup, events) = Supervisor::start_with_events(spec)?;
    say!("a rest_for_one supervisor started reader, parser, writer, in that order");
    for e in events.drain() {
        say!("event: {e}");
    }
    say!("kill_child(\"parser\"): parser and the children after it restart, reader does not");
    sup.kill_child("parser").wait()?;
    let seen = events
        .wait_restarts("writer", 1, Duration::from_secs(10))
        .expect("the supervisor restarts parser and writer");
    for e in seen {
        say!("event: {e}");
    }
    for c in sup.which_children().wait()? {
        let (id, pid, status) = (c.id, c.pid.unwrap_or(0), c.status);
        say!("{id} pid {pid} {status:?}, {} restart(s)", c.restarts);
    }
    say!("stop(): children stop in reverse order");
    sup.stop();
    for e in events {
        say!("event: {e}");
    }
    subtrees()
}

/// The spec of a supervisor that runs in its own process (built there, from these arguments).
fn shards(n: u32) -> procvisor::supervisor::SupervisorSpec {
    use procvisor::supervisor::{ChildSpec, Strategy, SupervisorSpec};
    (0..n).fold(SupervisorSpec::new(Strategy::OneForOne), |spec, i| {
        spec.child(
            ChildSpec::worker(format!("shard-{i}"), stage, ()).wait_ready(Duration::from_secs(10)),
        )
    })
}

/// A handle on a nested supervisor, here one in its own OS process (OTP addresses any
/// supervisor of a tree).
fn subtrees() -> procvisor::Result<()> {
    use procvisor::supervisor::{ChildSpec, Strategy, Supervisor, SupervisorSpec};

    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("tree")
        .child(ChildSpec::supervisor_process("shards", shards, (2,)));
    let sup = Supervisor::start(spec)?;
    let shards = sup.subtree("shards").wait()?;
    say!(
        "subtree(\"shards\"): a handle on {} (in its own process: {})",
        shards.path(),
        shards.is_remote()
    );
    let spec = ChildSpec::worker("shard-2", stage, ()).wait_ready(Duration::from_secs(10));
    let pid = shards.start_child(spec).wait()?;
    say!(
        "start_child there: the spec travels, shard-2 is pid {}",
        pid.unwrap_or(0)
    );
    shards.terminate_child("shard-0").wait()?;
    for c in shards.which_children().wait()? {
        say!("{}: {} {:?}", shards.path(), c.id, c.status);
    }
    sup.stop();
    Ok(())
}

// ---- queues ---------------------------------------------------------------------------------

/// A queue worker: squares numbers until the poison pill (`None`), marking each task done.
fn square_worker(
    tasks: procvisor::JoinableQueue<Option<u64>>,
    results: procvisor::Queue<(String, u64, u64)>,
) -> procvisor::Result<()> {
    while let Some(n) = tasks.get()? {
        std::thread::sleep(Duration::from_millis(20)); // a task takes a while
        results.put(&(current_process().name(), n, n * n))?;
        tasks.task_done()?;
    }
    Ok(tasks.task_done()?)
}

fn queues() -> procvisor::Result<()> {
    use procvisor::error::{GetError, PutError};
    use procvisor::{JoinableQueue, Queue};

    let tasks = JoinableQueue::<Option<u64>>::new()?;
    let results = Queue::<(String, u64, u64)>::new()?;
    let workers = (0..2)
        .map(|_| {
            launch(Process::new(
                square_worker,
                (tasks.clone(), results.clone()),
            ))
        })
        .collect::<procvisor::Result<Vec<Child>>>()?;
    say!("two workers share one JoinableQueue of tasks (the handles travel in their args)");
    for n in 1..=6 {
        tasks.put(&Some(n))?;
    }
    tasks.join();
    say!("tasks.join() returned: every task was marked task_done()");
    let mut squares: Vec<(String, u64, u64)> =
        (0..6).map(|_| results.get()).collect::<Result<_, _>>()?;
    squares.sort_by_key(|r| r.1);
    for (worker, n, sq) in squares {
        say!("{n}² = {sq} (by {worker})");
    }
    for _ in &workers {
        tasks.put(&None)?; // one poison pill per worker
    }
    for w in &workers {
        w.join()?;
    }
    match results.get_timeout(Duration::from_millis(50)) {
        Err(GetError::Empty) => say!("results.get_timeout(50 ms) on an empty queue: Empty"),
        other => say!("unexpected: {other:?}"),
    }
    match results.try_get() {
        Err(GetError::Empty) => say!("results.try_get() never waits: Empty"),
        other => say!("unexpected: {other:?}"),
    }
    say!(
        "results.len() = {}, is_empty() = {}",
        results.len(),
        results.is_empty()
    );
    let bounded = Queue::<u8>::bounded(1)?;
    bounded.try_put(&1)?;
    match bounded.try_put(&2) {
        Err(PutError::Full) => say!("Queue::bounded(1) holding one item: try_put is Full"),
        other => say!("unexpected: {other:?}"),
    }
    Ok(())
}

// ---- locks and shared memory --------------------------------------------------------------------

// `lock()`, `try_lock()`, `lock_timeout()`, `lock_async()`, `release()`: one family on every lock.
use procvisor::Acquire;

fn add_under_lock(counter: procvisor::Value<i64>, lock: procvisor::Lock, n: u32) {
    for _ in 0..n {
        let _guard = lock.lock();
        let raw = counter.as_raw();
        raw.set(raw.get() + 1); // a read-modify-write the lock makes safe
    }
}

fn die_holding(lock: procvisor::Lock, held: procvisor::Event) {
    let guard = lock.lock();
    held.set();
    sleep(Duration::from_secs(60)); // killed long before
    drop(guard);
}

fn locks_and_shared_memory() -> procvisor::Result<()> {
    use procvisor::{Event, Lock, LockSpec, Value};

    let counter = Value::with_lock(0i64, LockSpec::None)?;
    let lock = Lock::new()?;
    let workers = (0..4)
        .map(|_| {
            launch(Process::new(
                add_under_lock,
                (counter.clone(), lock.clone(), 1000),
            ))
        })
        .collect::<procvisor::Result<Vec<Child>>>()?;
    for p in &workers {
        p.join()?;
    }
    say!(
        "4 processes added 1000 each under a shared Lock: {}",
        counter.get()
    );

    let held = Event::new()?;
    let holder = launch(Process::new(die_holding, (lock.clone(), held.clone())))?;
    held.wait();
    holder.kill()?;
    say!("a process holding the lock was SIGKILLed");
    let guard = lock.lock();
    say!(
        "the next acquirer gets it at once, told that pid {} died holding it",
        guard.previous_owner_died().unwrap_or(0)
    );
    drop(guard);
    holder.join()?;
    Ok(())
}

// ---- process pools ----------------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x * x
}

fn picky(x: u64) -> Result<u64, String> {
    if x == 13 {
        Err("13 is unlucky".into())
    } else {
        Ok(x)
    }
}

fn die() -> u64 {
    std::process::exit(7)
}

fn pools() -> procvisor::Result<()> {
    use procvisor::Pool;

    let pool = Pool::new(2)?;
    say!("Pool::new(2) started workers {:?}", pool.worker_pids());
    say!("map(square, 0..10) = {:?}", pool.map(square, 0..10)?);
    let r = pool.submit(square, (12,))?;
    say!("submit(square, (12,)).get() = {}", r.get()?);
    let unordered: Vec<u64> = pool
        .imap_unordered(square, 0..5)?
        .collect::<Result<_, _>>()?;
    say!(
        "imap_unordered(square, 0..5) gave {} results in completion order",
        unordered.len()
    );
    say!(
        "a task's Err fails only that task: {}",
        pool.apply(picky, (13,)).unwrap_err()
    );
    say!(
        "a worker that dies mid-task: {}",
        pool.apply(die, ()).unwrap_err()
    );
    say!(
        "… the pool replaces it and keeps serving: map(square, 0..4) = {:?}",
        pool.map(square, 0..4)?
    );
    pool.close();
    pool.join()?;
    say!("close() + join(): every worker has exited");
    Ok(())
}
