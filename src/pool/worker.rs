//! A pool worker: the loop it runs in its own process, and how the pool's supervisor starts it.
//!
//! The worker is a procvisor [`Process`] (daemonic, as Python's pool workers are) whose target
//! is [`worker_main`] with one end of a duplex [`Connection`]. It runs the initializer, sends a
//! hello (ready, or why the initializer failed), then serves task frames until EOF, until its
//! `max_tasks_per_child` is reached (it exits 0 and the supervisor replaces it), or until a stop
//! request from the supervisor (it exits 0 at once, even in the middle of a task: that is how
//! `terminate` stops busy workers promptly; SIGTERM and SIGKILL follow if it does not).

use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use procvisor_actors::supervisor::{BoxFuture, RunningChild, StartChild, StartContext};
use serde::{Deserialize, Serialize};

use super::dispatch::{Shared, Status};
use super::protocol::{READY_SEQ, parse_result, parse_task, recv_reusing, start_result};
use super::task::{ChunkStatus, InitFn, WorkerFailure, write_failed};
use crate::code_ref::CodeRef;
use crate::connection::{Connection, pipe};
use crate::context::StartMethod;
use crate::error::{RecvError, SendError, TaskError};
use crate::process::{Child, Process};
use crate::supervisor::worker::RunningProcess;

/// What every worker of a pool is started with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WorkerSetup {
    /// The initializer: its trampoline's offset and its encoded arguments.
    pub(crate) init: Option<(CodeRef<InitFn>, Vec<u8>)>,
    /// Tasks served before the worker exits to be replaced.
    pub(crate) maxtasks: Option<NonZeroU64>,
}

/// The worker process's target.
pub(crate) fn worker_main(conn: Connection, setup: WorkerSetup) -> Result<(), String> {
    exit_on_stop_request();
    let mut out = Vec::with_capacity(64 * 1024);
    start_result(&mut out, READY_SEQ);
    if let Some((init, args)) = &setup.init {
        let init = init
            .resolve()
            .map_err(|e| format!("cannot run the pool's initializer: {e}"))?;
        if let Err(e) = init(args) {
            write_failed(&mut out, &e);
            let _ = conn.send_bytes(&out);
            return Err(e.initializer_failure());
        }
    }
    out.push(ChunkStatus::AllOk as u8);
    conn.send_bytes(&out)
        .map_err(|e| format!("cannot reach the pool: {e}"))?;
    let mut served = 0u64;
    let mut buf = Vec::new();
    while setup.maxtasks.is_none_or(|max| served < max.get()) {
        let len = match recv_reusing(&conn, &mut buf) {
            Ok(len) => len,
            Err(RecvError::Eof) => return Ok(()),
            Err(e) => return Err(format!("the pool's connection failed: {e}")),
        };
        let Some((seq, entry, chunk)) = parse_task(&buf[..len]) else {
            return Err("the pool sent a malformed task frame".into());
        };
        start_result(&mut out, seq);
        let run = entry
            .resolve()
            .map_err(|e| format!("cannot run the pool's task: {e}"))?;
        run(chunk, &mut out);
        send_result(&conn, &mut out, seq)?;
        served += 1;
    }
    Ok(())
}

/// Sends a result frame; one too large for the connection fails its task instead.
fn send_result(conn: &Connection, out: &mut Vec<u8>, seq: u64) -> Result<(), String> {
    match conn.send_bytes(out) {
        Ok(()) => Ok(()),
        Err(e @ SendError::FrameTooLarge { .. }) => {
            start_result(out, seq);
            write_failed(out, &WorkerFailure::Encode(e.to_string()));
            conn.send_bytes(out)
                .map_err(|e| format!("cannot reach the pool: {e}"))
        }
        Err(e) => Err(format!("cannot reach the pool: {e}")),
    }
}

/// A stop request from the supervisor (join, terminate) ends the worker at once.
fn exit_on_stop_request() {
    let _ = std::thread::Builder::new()
        .name("procvisor-pool-stop".into())
        .spawn(|| {
            if crate::process::wait_for_stop(None) {
                std::process::exit(0);
            }
        });
}

static WORKER_NUMBER: AtomicU64 = AtomicU64::new(1);

/// The supervisor's *start* for worker slot `slot`: a fresh worker process each time.
pub(crate) struct WorkerStarter {
    pub(crate) slot: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) setup: WorkerSetup,
    pub(crate) start_method: Option<StartMethod>,
}

impl StartChild for WorkerStarter {
    fn start(&self, _: StartContext) -> BoxFuture<'static, Result<Box<dyn RunningChild>, String>> {
        let slot = self.slot;
        let shared = self.shared.clone();
        let setup = self.setup.clone();
        let method = self.start_method;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || start_worker(slot, &shared, setup, method))
                .await
                .map_err(|e| format!("the thread starting the worker failed: {e}"))?
        })
    }
}

/// Starts one worker, waits for its hello and registers it (a blocking thread).
fn start_worker(
    slot: usize,
    shared: &Arc<Shared>,
    setup: WorkerSetup,
    method: Option<StartMethod>,
) -> Result<Box<dyn RunningChild>, String> {
    let (ours, theirs) = pipe().map_err(|e| e.to_string())?;
    let n = WORKER_NUMBER.fetch_add(1, Ordering::Relaxed);
    let mut process = Process::new(worker_main, (theirs, setup))
        .name(format!("PoolWorker-{n}"))
        .daemon(true);
    if let Some(method) = method {
        process = process.start_method(method);
    }
    let child = process.start().map_err(|e| e.to_string())?;
    let running = RunningProcess::new(&child);
    let record = child.record().clone();
    if let Err(reason) = await_hello(&ours, shared, &child) {
        // `running` kills the worker when dropped.
        drop(running);
        return Err(reason);
    }
    shared.register(slot, ours, record)?;
    Ok(Box::new(running))
}

/// Waits for the worker's hello; an initializer failure breaks the pool.
fn await_hello(conn: &Connection, shared: &Shared, child: &Child) -> Result<(), String> {
    loop {
        match conn.poll_timeout(Duration::from_millis(100)) {
            Ok(true) => break,
            Ok(false) => {
                if matches!(shared.status(), Status::Terminated | Status::Broken(_)) {
                    return Err("the pool is shutting down".into());
                }
            }
            Err(e) => return Err(format!("cannot wait for the worker: {e}")),
        }
    }
    let frame = match conn.recv_bytes() {
        Ok(frame) => frame,
        Err(_) => {
            let _ = child.join_timeout(Duration::from_secs(5));
            let code = child.exitcode().map_or("unknown".into(), |c| c.to_string());
            return Err(format!(
                "the worker exited before it was ready (exit code {code})"
            ));
        }
    };
    match parse_result(&frame) {
        Some((READY_SEQ, ChunkStatus::AllOk, _)) => Ok(()),
        Some((READY_SEQ, ChunkStatus::Failed, payload)) => {
            let reason = match procvisor_actors::wire::codec::decode::<WorkerFailure>(payload) {
                Ok(e) => e.initializer_failure(),
                Err(e) => format!("the initializer failed (undecodable report: {e})"),
            };
            shared.end(
                Status::Broken(reason.clone()),
                TaskError::PoolBroken {
                    reason: reason.clone(),
                },
            );
            Err(reason)
        }
        _ => Err("the worker sent a malformed hello".into()),
    }
}
