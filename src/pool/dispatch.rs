//! The data path: a queue of encoded chunks, one slot per worker, and one reader thread per
//! worker incarnation.
//!
//! A worker holds at most one task. A caller that submits a task sends it itself (no thread or
//! actor hop) to an idle worker, or queues it. A worker's reader thread receives each result,
//! hands that worker the next queued task *before* decoding the result, then gives the result
//! to its job. So the only threads on the hot path are the caller, the worker and its reader.
//!
//! Lifecycle stays with the pool's supervisor actor (see [`worker`](super::worker)): it starts
//! and replaces workers, which [`register`](Shared::register) here. A worker's death is seen by
//! its reader (EOF on the connection), which waits for the exit status and fails the task the
//! worker held with [`TaskError::WorkerLost`]. A task with a timeout arms a timer on the node's
//! runtime; when it fires while the task is still running, the worker is SIGKILLed (through
//! its pidfd) and the task fails with [`TaskError::Timeout`]; the supervisor replaces the worker.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use procvisor_actors::child::ChildRecord;
use procvisor_actors::runtime;

use super::callbacks::CallbackThread;
use super::job::JobSink;
use super::outcome::{Outcome, undecodable};
use super::protocol::{parse_result, recv_reusing, set_seq};
use crate::connection::Connection;
use crate::error::{PoolError, TaskError};
use crate::supervisor::{Exit, SupervisorRef};
use procvisor_actors::sync_util::lock;

/// One chunk on its way to a worker.
pub(crate) struct Task {
    /// The encoded task frame (its seq is filled in at submission).
    pub(crate) frame: Vec<u8>,
    pub(crate) sink: Arc<dyn JobSink>,
    pub(crate) index: u32,
    pub(crate) items: u32,
    pub(crate) timeout: Option<Duration>,
    seq: u64,
}

impl Task {
    pub(crate) fn new(
        frame: Vec<u8>,
        sink: Arc<dyn JobSink>,
        index: u32,
        items: u32,
        timeout: Option<Duration>,
    ) -> Task {
        Task {
            frame,
            sink,
            index,
            items,
            timeout,
            seq: 0,
        }
    }

    fn fail(self, failure: TaskError) {
        self.sink
            .complete(self.index, self.items, Outcome::Failed(failure));
    }
}

/// The pool's state as its callers see it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Status {
    Running,
    Closed,
    Terminated,
    Broken(String),
}

struct Worker {
    conn: Arc<Connection>,
    record: Arc<ChildRecord>,
    /// Tasks sent to this incarnation (for `max_tasks_per_child`).
    sent: u64,
}

#[derive(Default)]
struct Slot {
    /// Bumped at each registration: a reader or timer of an older incarnation is stale.
    generation: u64,
    worker: Option<Worker>,
    busy: Option<Task>,
    /// Tasks that an older incarnation (by generation) was running when its successor
    /// registered: its reader still delivers the result, or fails the task when it sees the
    /// incarnation gone. (A replacement can register before the old reader has caught up.)
    orphans: Vec<(u64, Task)>,
}

impl Slot {
    fn take_orphan(&mut self, generation: u64) -> Option<Task> {
        let at = self.orphans.iter().position(|(g, _)| *g == generation)?;
        Some(self.orphans.swap_remove(at).1)
    }
}

struct State {
    status: Status,
    queue: VecDeque<Task>,
    slots: Vec<Slot>,
    next_seq: u64,
    /// Tasks queued or held by a worker.
    outstanding: usize,
}

/// A task to send once the state lock is released.
struct Send {
    conn: Arc<Connection>,
    frame: Vec<u8>,
    timer: Option<(usize, u64, Duration)>,
}

/// What the pool's callers, reader threads, timers and worker starters share.
pub(crate) struct Shared {
    state: Mutex<State>,
    idle: Condvar,
    idle_async: tokio::sync::Notify,
    maxtasks: Option<NonZeroU64>,
    pub(crate) callbacks: Arc<CallbackThread>,
    /// The supervisor of the workers, stopped when the pool breaks.
    supervisor: OnceLock<SupervisorRef>,
}

impl Shared {
    pub(crate) fn new(workers: usize, maxtasks: Option<NonZeroU64>) -> Shared {
        Shared {
            state: Mutex::new(State {
                status: Status::Running,
                queue: VecDeque::new(),
                slots: (0..workers).map(|_| Slot::default()).collect(),
                next_seq: 0,
                outstanding: 0,
            }),
            idle: Condvar::new(),
            idle_async: tokio::sync::Notify::new(),
            maxtasks,
            callbacks: Arc::default(),
            supervisor: OnceLock::new(),
        }
    }

    pub(crate) fn set_supervisor(&self, supervisor: SupervisorRef) {
        let _ = self.supervisor.set(supervisor);
    }

    pub(crate) fn status(&self) -> Status {
        lock(&self.state).status.clone()
    }

    /// `Ok` if the pool accepts new calls.
    pub(crate) fn check_running(&self) -> Result<(), PoolError> {
        status_error(&lock(&self.state).status)
    }

    /// Queues `task`, or sends it at once to an idle worker. Accepted while the pool is
    /// running or closed (a call checks [`check_running`](Shared::check_running) once, before
    /// its first chunk); after a terminate, the task fails at once.
    pub(crate) fn submit(self: &Arc<Self>, mut task: Task) {
        let mut state = lock(&self.state);
        let failure = match &state.status {
            Status::Terminated => Some(TaskError::PoolTerminated),
            Status::Broken(reason) => Some(TaskError::PoolBroken {
                reason: reason.clone(),
            }),
            Status::Running | Status::Closed => None,
        };
        if let Some(failure) = failure {
            drop(state);
            return task.fail(failure);
        }
        task.seq = state.next_seq;
        state.next_seq += 1;
        state.outstanding += 1;
        let idle = (0..state.slots.len()).find(|&i| self.eligible(&state.slots[i]));
        let send = match idle {
            Some(i) => self.assign(&mut state, i, task),
            None => {
                state.queue.push_back(task);
                None
            }
        };
        drop(state);
        if let Some(send) = send {
            self.send(send);
        }
    }

    fn eligible(&self, slot: &Slot) -> bool {
        match &slot.worker {
            Some(w) => slot.busy.is_none() && self.maxtasks.is_none_or(|max| w.sent < max.get()),
            None => false,
        }
    }

    /// Gives `task` to slot `i` (which must be eligible): what to send after unlocking.
    fn assign(&self, state: &mut State, i: usize, mut task: Task) -> Option<Send> {
        let slot = &mut state.slots[i];
        let worker = slot.worker.as_mut()?;
        worker.sent += 1;
        let mut frame = std::mem::take(&mut task.frame);
        set_seq(&mut frame, task.seq);
        let send = Send {
            conn: worker.conn.clone(),
            frame,
            timer: task.timeout.map(|d| (i, task.seq, d)),
        };
        slot.busy = Some(task);
        Some(send)
    }

    /// The next queued task for slot `i`, if it may take one; abandoned tasks are dropped.
    fn next_for(&self, state: &mut State, i: usize) -> Option<Send> {
        if !self.eligible(&state.slots[i]) {
            return None;
        }
        while let Some(task) = state.queue.pop_front() {
            if task.sink.abandoned() {
                self.finished_locked(state, 1);
                continue;
            }
            return self.assign(state, i, task);
        }
        None
    }

    fn send(self: &Arc<Self>, send: Send) {
        // A failed send means the worker is gone: its reader sees EOF and fails the task.
        let _ = send.conn.send_bytes(&send.frame);
        if let Some((slot, seq, timeout)) = send.timer {
            let weak = Arc::downgrade(self);
            runtime::spawn(async move {
                tokio::time::sleep(timeout).await;
                if let Some(shared) = Weak::upgrade(&weak) {
                    shared.on_timeout(slot, seq, timeout);
                }
            });
        }
    }

    fn finished_locked(&self, state: &mut State, n: usize) {
        state.outstanding -= n;
        if state.outstanding == 0 {
            self.idle.notify_all();
            self.idle_async.notify_waiters();
        }
    }

    fn finished(&self, n: usize) {
        let mut state = lock(&self.state);
        self.finished_locked(&mut state, n);
    }

    /// A started worker for slot `i`: it takes the next queued task, and a reader thread starts
    /// serving its results.
    pub(crate) fn register(
        self: &Arc<Self>,
        i: usize,
        conn: Connection,
        record: Arc<ChildRecord>,
    ) -> Result<(), String> {
        let conn = Arc::new(conn);
        let mut state = lock(&self.state);
        if matches!(state.status, Status::Terminated | Status::Broken(_)) {
            return Err("the pool is shutting down".into());
        }
        let slot = &mut state.slots[i];
        if let Some(task) = slot.busy.take() {
            slot.orphans.push((slot.generation, task));
        }
        slot.generation += 1;
        let generation = slot.generation;
        slot.worker = Some(Worker {
            conn: conn.clone(),
            record: record.clone(),
            sent: 0,
        });
        let send = self.next_for(&mut state, i);
        drop(state);
        let shared = self.clone();
        let reader = conn.clone();
        std::thread::Builder::new()
            .name("procvisor-pool-reader".into())
            .spawn(move || shared.read_results(i, generation, &reader, &record))
            .map_err(|e| format!("cannot start the worker's reader thread: {e}"))?;
        if let Some(send) = send {
            self.send(send);
        }
        Ok(())
    }

    /// The reader thread of one worker incarnation.
    fn read_results(
        self: Arc<Self>,
        i: usize,
        generation: u64,
        conn: &Connection,
        record: &ChildRecord,
    ) {
        let mut buf = Vec::new();
        while let Ok(len) = recv_reusing(conn, &mut buf) {
            self.on_result(i, generation, &buf[..len]);
        }
        self.on_worker_gone(i, generation, record);
    }

    fn on_result(self: &Arc<Self>, i: usize, generation: u64, frame: &[u8]) {
        let mut state = lock(&self.state);
        let slot = &mut state.slots[i];
        let current = slot.generation == generation;
        let task = if current {
            slot.busy.take()
        } else {
            slot.take_orphan(generation)
        };
        let Some(task) = task else {
            return; // it timed out meanwhile
        };
        let send = if current {
            self.next_for(&mut state, i)
        } else {
            None
        };
        drop(state);
        if let Some(send) = send {
            self.send(send);
        }
        let outcome = match parse_result(frame) {
            Some((seq, status, payload)) if seq == task.seq => Outcome::Frame(status, payload),
            _ => Outcome::Failed(undecodable("the worker sent a malformed result frame")),
        };
        task.sink.complete(task.index, task.items, outcome);
        self.finished(1);
    }

    fn on_worker_gone(&self, i: usize, generation: u64, record: &ChildRecord) {
        let status = record.wait(Some(Duration::from_secs(5))).or_else(|| {
            // It closed the connection but lingers: it cannot serve any more.
            let _ = record.signal(libc::SIGKILL);
            record.wait(Some(Duration::from_secs(5)))
        });
        let exit = match status {
            Some(status) => Exit::from(status),
            None => Exit::Failed("it closed its connection and did not exit".into()),
        };
        let mut state = lock(&self.state);
        let slot = &mut state.slots[i];
        let lost = if slot.generation == generation {
            slot.worker = None;
            slot.busy.take()
        } else {
            slot.take_orphan(generation)
        };
        drop(state);
        if let Some(task) = lost {
            task.fail(TaskError::WorkerLost {
                pid: record.pid(),
                exit,
            });
            self.finished(1);
        }
    }

    fn on_timeout(&self, i: usize, seq: u64, timeout: Duration) {
        let mut state = lock(&self.state);
        let slot = &mut state.slots[i];
        if slot.busy.as_ref().map(|t| t.seq) != Some(seq) {
            return; // finished in time
        }
        let task = slot.busy.take();
        let worker = slot.worker.take();
        drop(state);
        if let Some(worker) = worker {
            let _ = worker.record.signal(libc::SIGKILL);
        }
        if let Some(task) = task {
            task.fail(TaskError::Timeout { timeout });
            self.finished(1);
        }
    }

    /// No new calls; queued tasks still run.
    pub(crate) fn close(&self) {
        let mut state = lock(&self.state);
        if state.status == Status::Running {
            state.status = Status::Closed;
        }
    }

    /// Ends the pool: every queued or running task fails with `failure`. Returns false if it
    /// had already ended.
    pub(crate) fn end(&self, status: Status, failure: TaskError) -> bool {
        let mut state = lock(&self.state);
        if matches!(state.status, Status::Terminated | Status::Broken(_)) {
            return false;
        }
        state.status = status;
        let mut failed: Vec<Task> = state.queue.drain(..).collect();
        for slot in &mut state.slots {
            failed.extend(slot.busy.take());
            failed.extend(slot.orphans.drain(..).map(|(_, task)| task));
            slot.worker = None;
        }
        let n = failed.len();
        let broken = matches!(state.status, Status::Broken(_));
        drop(state);
        if broken {
            // Its workers cannot start: stop the supervisor from retrying (not from this
            // thread, which may be one of its starts).
            if let Some(supervisor) = self.supervisor.get().cloned() {
                std::thread::spawn(move || supervisor.stop());
            }
        }
        for task in failed {
            task.fail(failure.clone());
        }
        self.finished(n);
        true
    }

    /// Waits until no task is queued or running (or the pool has ended).
    pub(crate) fn wait_idle(&self) {
        let mut state = lock(&self.state);
        while state.outstanding > 0 {
            state = self
                .idle
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// [`wait_idle`](Shared::wait_idle) for async callers.
    pub(crate) async fn wait_idle_async(&self) {
        loop {
            let notified = self.idle_async.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.state).outstanding == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The pids of the workers currently registered.
    pub(crate) fn pids(&self) -> Vec<i32> {
        lock(&self.state)
            .slots
            .iter()
            .filter_map(|s| s.worker.as_ref().map(|w| w.record.pid()))
            .collect()
    }
}

fn status_error(status: &Status) -> Result<(), PoolError> {
    match status {
        Status::Running => Ok(()),
        Status::Closed => Err(PoolError::Closed),
        Status::Terminated => Err(PoolError::Terminated),
        Status::Broken(reason) => Err(PoolError::Broken {
            reason: reason.clone(),
        }),
    }
}
