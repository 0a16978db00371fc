//! The pool's side of its workers: how the pool's supervisor starts one.
//!
//! Each worker slot is a permanent child of the pool's supervisor whose [`StartChild`] is a
//! [`WorkerStarter`]: on a blocking thread it makes the pipe, starts a fresh worker process
//! running [`worker_main`], waits for its hello and registers it in its slot. The supervisor
//! restarts it when it dies or retires.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use procvisor_actors::supervisor::{BoxFuture, RunningChild, StartChild, StartContext};

use super::dispatch::{Shared, Status};
use super::protocol::{WorkerSetup, parse_hello};
use super::worker::worker_main;
use crate::connection::{Connection, pipe};
use crate::context::StartMethod;
use crate::error::TaskError;
use crate::process::{Child, Process};
use crate::supervisor::worker::RunningProcess;

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
    match parse_hello(&frame) {
        Some(Ok(())) => Ok(()),
        Some(Err(reason)) => {
            shared.end(
                Status::Broken(reason.clone()),
                TaskError::PoolBroken {
                    reason: reason.clone(),
                },
            );
            Err(reason)
        }
        None => Err("the worker sent a malformed hello".into()),
    }
}
