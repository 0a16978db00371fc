//! The pool worker's side: the loop a worker runs in its own process.
//!
//! The worker is a procvisor [`Process`](crate::process::Process) (daemonic, as Python's pool
//! workers are) whose target is [`worker_main`] with one end of a duplex [`Connection`]. It runs
//! the initializer, sends a hello (ready, or why the initializer failed), then serves task frames
//! until EOF, until its `max_tasks_per_child` is reached (it exits 0 and the supervisor replaces
//! it), or until a stop request from the supervisor (it exits 0 at once, even in the middle of a
//! task: that is how `terminate` stops busy workers promptly; SIGTERM and SIGKILL follow if it
//! does not). What its tasks put on queues and still waits in its feeders gets through: it
//! flushes them when `join` asks (a flush frame, before the stop request) and before it retires;
//! a stop request abandons them. The pool's side, which starts workers, is
//! [`starter`](super::starter).

use super::protocol::{
    ChunkStatus, FLUSH_SEQ, WorkerFailure, WorkerSetup, parse_task, recv_reusing, start_result,
    write_failed, write_hello,
};
use crate::connection::Connection;
use crate::error::{RecvError, SendError};

/// The worker process's target.
pub(crate) fn worker_main(conn: Connection, setup: WorkerSetup) -> Result<(), String> {
    exit_on_stop_request();
    let mut out = Vec::with_capacity(64 * 1024);
    if let Some((init, args)) = &setup.init {
        let init = init
            .resolve()
            .map_err(|e| format!("cannot run the pool's initializer: {e}"))?;
        if let Err(e) = init(args) {
            write_hello(&mut out, Err(&e));
            let _ = conn.send_bytes(&out);
            return Err(e.initializer_failure());
        }
    }
    write_hello(&mut out, Ok(()));
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
        if seq == FLUSH_SEQ {
            // The pool is joining: let what the tasks put on queues get through first.
            crate::queues::flush_feeders();
            start_result(&mut out, FLUSH_SEQ);
            out.push(ChunkStatus::AllOk as u8);
            conn.send_bytes(&out)
                .map_err(|e| format!("cannot reach the pool: {e}"))?;
            continue;
        }
        start_result(&mut out, seq);
        let run = entry
            .resolve()
            .map_err(|e| format!("cannot run the pool's task: {e}"))?;
        run(chunk, &mut out);
        send_result(&conn, &mut out, seq)?;
        served += 1;
    }
    // Retiring: flush before the connection closes (the pool would take a worker that closed
    // it and lingers for stuck, and kill it).
    crate::queues::flush_feeders();
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
                // `join` had the feeders flushed before it asked; for `terminate`, what they
                // still hold is lost (as Python's terminate loses it), not waited for.
                crate::queues::abandon_feeders();
                std::process::exit(0);
            }
        });
}
