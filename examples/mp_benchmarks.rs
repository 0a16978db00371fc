//! procvisor's benchmark program: the counterpart of `py_mp_benchmarks.py` (the Python 3 port
//! of the `mp_benchmarks.py` that ships with the multiprocessing docs), for a side-by-side run
//! with `compare.py`.
//!
//! ```text
//! cargo run --release --example mp_benchmarks -- --json [--only a,b] [--delta SECONDS] [--list]
//! python3 ../shared/bench/compare.py -- cargo run --release -q --example mp_benchmarks -- --json
//! ```
//!
//! Every test repeats its operation in the Python file's loop: start with 1 iteration, double
//! until one timed round lasts at least `delta` seconds (env `BENCH_DELTA`, or `--delta`;
//! default 1.0), and report that last round. With `--json` each test prints exactly one line on
//! stdout, in the Python file's format:
//!
//! ```text
//! {"test": "process_start_join", "n": 1024, "secs": 1.0123, "per_sec": 1011.6, "unit": "ops"}
//! ```
//!
//! Without `--json` the same figures are printed as a table. Notes and errors go to stderr.
//! `--only` takes a comma-separated list of test names; unknown names are skipped.
//!
//! To add a test: write a `fn(delta: f64) -> TestResult` (usually with `doubling`) and add a
//! row to `TESTS`.

use std::error::Error;
use std::io::Write;
use std::time::{Duration, Instant};

use procvisor::supervisor::{ChildSpec, Intensity, Strategy, Supervisor, SupervisorSpec};
use procvisor::{
    Array, Condition, Connection, Lock, Pool, Process, Queue, RLock, StartMethod, pipe as make_pipe,
};

/// What a test reports: one JSON line.
#[derive(Debug, Clone)]
struct Row {
    /// The test's name, as in `py_mp_benchmarks.py`.
    test: &'static str,
    /// Operations in the reported round.
    n: u64,
    /// Seconds the reported round took.
    secs: f64,
    /// What was counted: `ops`, `items`, `MiB`.
    unit: &'static str,
}

impl Row {
    fn new(test: &'static str, n: u64, elapsed: Duration) -> Row {
        Row {
            test,
            n,
            secs: elapsed.as_secs_f64(),
            unit: "ops",
        }
    }

    fn per_sec(&self) -> f64 {
        self.n as f64 / self.secs
    }

    /// The Python file's line: `secs` rounded to 4 decimals, `per_sec` to 1, in this key order.
    fn to_json(&self) -> String {
        let fields = [
            ("test", serde_json::json!(self.test)),
            ("n", serde_json::json!(self.n)),
            ("secs", serde_json::json!(round(self.secs, 4))),
            ("per_sec", serde_json::json!(round(self.per_sec(), 1))),
            ("unit", serde_json::json!(self.unit)),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}: {v}", serde_json::json!(k)))
            .collect();
        format!("{{{}}}", body.join(", "))
    }
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

type TestResult = Result<Row, Box<dyn Error>>;

/// A test: its name and the function that runs it with `delta` and reports its row.
type Test = (&'static str, fn(f64) -> TestResult);

/// The tests, in the order of `py_mp_benchmarks.py`.
const TESTS: &[Test] = &[
    ("queue", queue),
    ("pipe", pipe),
    ("pipe_roundtrip", pipe_roundtrip),
    ("pipe_bytes_1mib", pipe_bytes_1mib),
    ("queue_child_consumer", queue_child_consumer),
    ("array_nolock", array_nolock),
    ("array_lock", array_lock),
    ("lock", lock),
    ("rlock", rlock),
    ("lock_child", lock_child),
    ("condition", condition),
    ("process_start_join", process_start_join),
    ("process_start_join_fork", process_start_join_fork),
    ("supervisor_restart", supervisor_restart),
    ("pool_map_square", pool_map_square),
    ("pool_apply_roundtrip", pool_apply_roundtrip),
];

/// The Python file's loop: `iterations` starts at 1 and doubles until a round lasts at least
/// `delta` seconds. `round(iterations)` performs one round and returns the time it measured
/// (it may leave set-up out of the measurement). Returns the last round's size and time.
fn doubling(
    delta: f64,
    mut round: impl FnMut(u64) -> Result<Duration, Box<dyn Error>>,
) -> Result<(u64, Duration), Box<dyn Error>> {
    let mut iterations = 1u64;
    let mut elapsed = Duration::ZERO;
    while elapsed.as_secs_f64() < delta {
        iterations *= 2;
        elapsed = round(iterations)?;
    }
    Ok((iterations, elapsed))
}

// ---- queues -------------------------------------------------------------------------------

/// `queuespeed_func`: tells the parent it is ready (Python notifies a Condition; here a
/// one-way pipe), then puts `iterations` 256-byte strings and `STOP`.
fn queuespeed_func(q: Queue<String>, ready: Connection, iterations: u64) -> procvisor::Result<()> {
    let a = "0".repeat(256);
    ready.send(&())?;
    for _ in 0..iterations {
        q.put(&a)?;
    }
    Ok(q.put(&"STOP".to_string())?)
}

/// `test_queuespeed` with `mp.Queue`: a child puts, the parent gets until `STOP`; the clock
/// runs from the child's "ready" to the parent's `STOP`.
fn queue(delta: f64) -> TestResult {
    let q = Queue::<String>::new()?;
    let (iterations, elapsed) = doubling(delta, |iterations| {
        let (ready_rx, ready_tx) = make_pipe()?;
        let p = Process::new(queuespeed_func, (q.clone(), ready_tx, iterations)).start()?;
        ready_rx.recv::<()>()?;
        let t = Instant::now();
        while q.get()? != "STOP" {}
        let elapsed = t.elapsed();
        p.join()?;
        Ok(elapsed)
    })?;
    Ok(Row::new("queue", iterations, elapsed))
}

/// `consumer_func`: gets until `STOP`, timing from its first item, and reports `(n, secs)`.
fn consumer_func(q: Queue<String>, conn: Connection) -> procvisor::Result<()> {
    let mut n = 0u64;
    let mut t = None;
    loop {
        let result = q.get()?;
        let start = *t.get_or_insert_with(Instant::now);
        n += 1;
        if result == "STOP" {
            return Ok(conn.send(&(n, start.elapsed().as_secs_f64()))?);
        }
    }
}

/// `test_queue_child_consumer`: the parent puts, a child gets (the consumer is not the
/// process that made the queue).
fn queue_child_consumer(delta: f64) -> TestResult {
    let q = Queue::<String>::new()?;
    let (a, b) = make_pipe()?;
    let payload = "0".repeat(256);
    let stop = "STOP".to_string();
    let (iterations, elapsed) = doubling(delta, |iterations| {
        let p = Process::new(consumer_func, (q.clone(), b.try_clone()?)).start()?;
        for _ in 0..iterations {
            q.put(&payload)?;
        }
        q.put(&stop)?;
        let (_n, secs): (u64, f64) = a.recv()?;
        p.join()?;
        Ok(Duration::from_secs_f64(secs))
    })?;
    Ok(Row::new("queue_child_consumer", iterations, elapsed))
}

// ---- pipes --------------------------------------------------------------------------------

/// `pipe_func`: tells the parent it is ready (Python notifies a Condition; here a one-way
/// pipe), then sends `iterations` 256-byte strings and `STOP`.
fn pipe_func(conn: Connection, ready: Connection, iterations: u64) -> procvisor::Result<()> {
    let a = "0".repeat(256);
    ready.send(&())?;
    for _ in 0..iterations {
        conn.send(&a)?;
    }
    Ok(conn.send("STOP")?)
}

/// `test_pipespeed`: 256-byte strings from a child to its parent through a duplex pipe; the
/// clock runs from the child's "ready" to the parent's receipt of `STOP`.
fn pipe(delta: f64) -> TestResult {
    let (c, d) = make_pipe()?;
    let (iterations, elapsed) = doubling(delta, |iterations| {
        let (ready_rx, ready_tx) = make_pipe()?;
        let p = Process::new(pipe_func, (d.try_clone()?, ready_tx, iterations)).start()?;
        ready_rx.recv::<()>()?;
        let t = Instant::now();
        while c.recv::<String>()? != "STOP" {}
        let elapsed = t.elapsed();
        p.join()?;
        Ok(elapsed)
    })?;
    Ok(Row::new("pipe", iterations, elapsed))
}

/// `echo_func`: sends back every message until `None`.
fn echo_func(conn: Connection) -> procvisor::Result<()> {
    while let Some(m) = conn.recv::<Option<String>>()? {
        conn.send(&Some(m))?;
    }
    Ok(())
}

/// `test_pipe_roundtrip`: send `'x'` to an echoing child and wait for it to come back.
fn pipe_roundtrip(delta: f64) -> TestResult {
    let (c, d) = make_pipe()?;
    let p = Process::new(echo_func, (d,)).start()?;
    let x = Some("x".to_string());
    c.send(&Some("warm"))?;
    c.recv::<Option<String>>()?;
    let (iterations, elapsed) = doubling(delta, |iterations| {
        let t = Instant::now();
        for _ in 0..iterations {
            c.send(&x)?;
            c.recv::<Option<String>>()?;
        }
        Ok(t.elapsed())
    })?;
    c.send(&None::<String>)?;
    p.join()?;
    Ok(Row::new("pipe_roundtrip", iterations, elapsed))
}

/// `bytes_func`: sends `iterations` messages of `size` bytes, then an empty one.
fn bytes_func(conn: Connection, iterations: u64, size: usize) -> procvisor::Result<()> {
    let buf = vec![b'x'; size];
    for _ in 0..iterations {
        conn.send_bytes(&buf)?;
    }
    Ok(conn.send_bytes(b"")?)
}

/// `test_pipe_bytes`: 1 MiB messages from a child through a one-way pipe; counts MiB.
fn pipe_bytes_1mib(delta: f64) -> TestResult {
    let size = 1 << 20;
    let (c, d) = make_pipe()?;
    let (iterations, elapsed) = doubling(delta, |iterations| {
        let p = Process::new(bytes_func, (d.try_clone()?, iterations, size)).start()?;
        let t = Instant::now();
        while !c.recv_bytes()?.is_empty() {}
        let elapsed = t.elapsed();
        p.join()?;
        Ok(elapsed)
    })?;
    let mut row = Row::new("pipe_bytes_1mib", iterations, elapsed);
    row.unit = "MiB";
    Ok(row)
}

// ---- shared memory and locks ----------------------------------------------------------------

/// `test_seqspeed`: reads `seq[5]` in a loop.
fn seqspeed(name: &'static str, arr: &Array<i32>, delta: f64) -> TestResult {
    let (n, elapsed) = doubling(delta, |iterations| {
        let t = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(arr.get(std::hint::black_box(5))?);
        }
        Ok(t.elapsed())
    })?;
    Ok(Row::new(name, n, elapsed))
}

fn zero_to_ten() -> Vec<i32> {
    (0..10).collect()
}

/// `Array('i', range(10), lock=False)`.
fn array_nolock(delta: f64) -> TestResult {
    seqspeed(
        "array_nolock",
        &Array::from_typecode('i', &zero_to_ten(), false)?,
        delta,
    )
}

/// `Array('i', range(10), lock=True)`: every read takes and gives back the array's RLock.
fn array_lock(delta: f64) -> TestResult {
    seqspeed(
        "array_lock",
        &Array::from_typecode('i', &zero_to_ten(), true)?,
        delta,
    )
}

/// `test_lockspeed`: acquire + release in a loop.
fn lockspeed(
    name: &'static str,
    delta: f64,
    acquire: impl Fn() -> bool,
    release: impl Fn() -> procvisor::Result<()>,
) -> TestResult {
    let (n, elapsed) = doubling(delta, |iterations| {
        let t = Instant::now();
        for _ in 0..iterations {
            if !acquire() {
                return Err("acquire failed".into());
            }
            release()?;
        }
        Ok(t.elapsed())
    })?;
    Ok(Row::new(name, n, elapsed))
}

fn lock(delta: f64) -> TestResult {
    let l = Lock::new()?;
    lockspeed(
        "lock",
        delta,
        || l.acquire(true, None).is_some(),
        || l.release(),
    )
}

fn rlock(delta: f64) -> TestResult {
    let l = RLock::new()?;
    lockspeed(
        "rlock",
        delta,
        || l.acquire(true, None).is_some(),
        || l.release(),
    )
}

/// `lock_child_func`: times `iterations` acquire/release pairs and sends the seconds.
fn lock_child_func(l: Lock, iterations: u64, conn: Connection) -> procvisor::Result<()> {
    let t = Instant::now();
    for _ in 0..iterations {
        if l.acquire(true, None).is_none() {
            return Err(procvisor::Error::Io {
                context: "lock_child".into(),
                source: std::io::Error::other("acquire failed"),
            });
        }
        l.release()?;
    }
    Ok(conn.send(&t.elapsed().as_secs_f64())?)
}

/// `test_lock_child`: a child takes and gives back a lock its parent created.
fn lock_child(delta: f64) -> TestResult {
    let l = Lock::new()?;
    let (a, b) = make_pipe()?;
    let mut iterations = 1u64;
    let mut elapsed = 0.0;
    while elapsed < delta {
        iterations *= 2;
        let p = Process::new(lock_child_func, (l.clone(), iterations, b.try_clone()?)).start()?;
        elapsed = a.recv::<f64>()?;
        p.join()?;
    }
    Ok(Row::new(
        "lock_child",
        iterations,
        Duration::from_secs_f64(elapsed),
    ))
}

/// `conditionspeed_func`: notify, then `n` times wait and notify.
fn conditionspeed_func(c: Condition, n: u64) -> procvisor::Result<()> {
    let _ = c.acquire(true, None);
    c.notify(1)?;
    for _ in 0..n {
        c.wait(None)?;
        c.notify(1)?;
    }
    c.release()
}

/// `test_conditionspeed`: ping-pong between two processes; counts both directions.
fn condition(delta: f64) -> TestResult {
    let c = Condition::new()?;
    let (iterations, elapsed) = doubling(delta, |iterations| {
        let _ = c.acquire(true, None);
        let p = Process::new(conditionspeed_func, (c.clone(), iterations)).start()?;
        c.wait(None)?;
        let t = Instant::now();
        for _ in 0..iterations {
            c.notify(1)?;
            c.wait(None)?;
        }
        let elapsed = t.elapsed();
        c.release()?;
        p.join()?;
        Ok(elapsed)
    })?;
    Ok(Row::new("condition", iterations * 2, elapsed))
}

// ---- process start ------------------------------------------------------------------------

fn noop() {}

/// Starts and joins `iterations` no-op children one after the other.
fn start_join_round(method: StartMethod, iterations: u64) -> Result<Duration, Box<dyn Error>> {
    let t = Instant::now();
    for _ in 0..iterations {
        let p = Process::new(noop, ()).start_method(method).start()?;
        p.join()?;
    }
    Ok(t.elapsed())
}

/// `test_spawn` of the Python file with procvisor's default start method, spawn.
fn process_start_join(delta: f64) -> TestResult {
    let (n, elapsed) = doubling(delta, |i| start_join_round(StartMethod::Spawn, i))?;
    Ok(Row::new("process_start_join", n, elapsed))
}

/// The same with the fork start method (children forked from the fork server; the first round
/// also starts the fork server, but only the last round is reported).
fn process_start_join_fork(delta: f64) -> TestResult {
    let (n, elapsed) = doubling(delta, |i| start_join_round(StartMethod::Fork, i))?;
    Ok(Row::new("process_start_join_fork", n, elapsed))
}

// ---- supervision ----------------------------------------------------------------------------

/// A child that exits at once under a `Permanent` one-for-one spec with unlimited intensity:
/// restarts per second, counted from the event stream (a restart costs about one process start).
fn supervisor_restart(delta: f64) -> TestResult {
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .name("bench")
        .intensity(Intensity::unlimited())
        .child(ChildSpec::worker("noop", noop, ()));
    let (sup, events) = Supervisor::start_with_events(spec)?;
    let (n, elapsed) = doubling(delta, |n| {
        events.drain();
        let t = Instant::now();
        events.wait_restarts("noop", n as u32, Duration::from_secs(600))?;
        Ok(t.elapsed())
    })?;
    sup.stop();
    Ok(Row::new("supervisor_restart", n, elapsed))
}

// ---- pool ---------------------------------------------------------------------------------

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// `test_pool_map`'s pool: two workers, warmed up with a map of 100 items.
fn bench_pool() -> Result<Pool, Box<dyn Error>> {
    let pool = Pool::new(2)?;
    pool.map(square, 0..100)?;
    Ok(pool)
}

/// `test_pool_map`, first half: `map(square, range(iterations))` with the default chunk size,
/// `iterations` starting at 2048 and doubling until a round lasts `delta`.
fn pool_map_square(delta: f64) -> TestResult {
    let pool = bench_pool()?;
    let (mut iterations, mut elapsed) = (1024u64, Duration::ZERO);
    while elapsed.as_secs_f64() < delta {
        iterations *= 2;
        let t = Instant::now();
        let r = pool.map(square, 0..iterations)?;
        elapsed = t.elapsed();
        if r.last() != Some(&square(iterations - 1)) {
            return Err("pool.map returned a wrong last square".into());
        }
    }
    let mut row = Row::new("pool_map_square", iterations, elapsed);
    row.unit = "items";
    Ok(row)
}

/// `test_pool_map`, second half: sequential `apply(square, (i,))`.
fn pool_apply_roundtrip(delta: f64) -> TestResult {
    let pool = bench_pool()?;
    let (iterations, elapsed) = doubling(delta, |iterations| {
        let t = Instant::now();
        for i in 0..iterations {
            pool.apply(square, (i,))?;
        }
        Ok(t.elapsed())
    })?;
    Ok(Row::new("pool_apply_roundtrip", iterations, elapsed))
}

// ---- command line -------------------------------------------------------------------------

struct Options {
    json: bool,
    delta: f64,
    only: Option<Vec<String>>,
    list: bool,
}

const USAGE: &str = "usage: mp_benchmarks [--json] [--only a,b] [--delta SECONDS] [--list]";

fn parse_args() -> Result<Options, String> {
    let mut opts = Options {
        json: false,
        delta: 1.0,
        only: None,
        list: false,
    };
    if let Ok(v) = std::env::var("BENCH_DELTA") {
        opts.delta = parse_delta(&v)?;
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => opts.json = true,
            "--list" => opts.list = true,
            "--only" => {
                let v = args.next().ok_or("--only needs a comma-separated list")?;
                let names = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from);
                opts.only.get_or_insert_with(Vec::new).extend(names);
            }
            "--delta" => {
                let v = args.next().ok_or("--delta needs a number of seconds")?;
                opts.delta = parse_delta(&v)?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(opts)
}

fn parse_delta(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(d) if d.is_finite() && d >= 0.0 => Ok(d),
        _ => Err(format!("invalid delta {v:?}: expected seconds, e.g. 1.0")),
    }
}

fn main() {
    // In a child process `init` runs the child's target and exits.
    procvisor::init();

    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if opts.list {
        for (name, _) in TESTS {
            println!("{name}");
        }
        return;
    }
    if let Some(only) = &opts.only {
        for name in only {
            if !TESTS.iter().any(|(t, _)| t == name) {
                eprintln!("note: no test named {name:?} here; skipped");
            }
        }
    }
    eprintln!(
        "procvisor benchmarks: delta {} s per test, {} CPUs",
        opts.delta,
        procvisor::cpu_count()
    );

    let mut failed = 0;
    for (name, test) in TESTS {
        let wanted = opts
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name));
        if !wanted {
            continue;
        }
        match test(opts.delta) {
            Ok(row) => {
                if opts.json {
                    println!("{}", row.to_json());
                } else {
                    println!(
                        "{:<28} {:>9} {} in {:>8.4} s = {:>12.1} {}/s",
                        row.test,
                        row.n,
                        row.unit,
                        row.secs,
                        row.per_sec(),
                        row.unit
                    );
                }
                let _ = std::io::stdout().flush();
            }
            Err(e) => {
                eprintln!("error: {name} failed: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}
