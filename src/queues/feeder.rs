//! This process's side of a queue: its closed / cancelled flags, and the overflow a feeder
//! thread moves into the ring when an unbounded queue's ring is full.
//!
//! Python's `Queue.put` never waits for a consumer: it appends to a buffer that a feeder thread
//! writes into a pipe. Here a put writes straight into the shared ring, so the buffer and the
//! thread are only needed when the ring is full. Then (and until the overflow has drained) a
//! put appends its encoded record to this process's overflow, so one process's items keep
//! their order; a thread started for the occasion (`procvisor-queue-feeder`) pushes them into
//! the ring as room appears, and ends when the overflow is empty.
//!
//! At exit (the process's exit sequence, before its children are joined) the overflow is
//! flushed unless [`cancel_join_thread`](super::Queue::cancel_join_thread) was called. All the
//! handles of one queue in a process share this state (the registry is keyed by the segment's
//! id), so `close` and `cancel_join_thread` apply to the queue in the whole process.

use procvisor_actors::sync_util::lock;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use super::ring::Ring;
use crate::runtime::{StopAtExit, stop_at_exit};

/// How long the feeder sleeps at a time while waiting for room (it re-checks cancellation).
const FEEDER_SLICE: Duration = Duration::from_millis(100);

/// One queue's state in this process.
#[derive(Debug, Default)]
pub(super) struct Local {
    closed: AtomicBool,
    /// True while records wait in the overflow (or one is being pushed by the feeder): puts
    /// must then go behind them.
    overflowing: AtomicBool,
    state: Mutex<Overflow>,
    drained: Condvar,
}

#[derive(Debug, Default)]
struct Overflow {
    records: VecDeque<Vec<u8>>,
    feeder_running: bool,
    cancelled: bool,
    registered_at_exit: bool,
}

fn registry() -> &'static Mutex<HashMap<[u8; 16], Weak<Local>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<[u8; 16], Weak<Local>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl Local {
    /// The state of the queue with segment id `id` in this process (made on first use).
    pub fn of(id: [u8; 16]) -> Arc<Local> {
        let mut map = lock(registry());
        if let Some(local) = map.get(&id).and_then(Weak::upgrade) {
            return local;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let local = Arc::new(Local::default());
        map.insert(id, Arc::downgrade(&local));
        local
    }

    fn state(&self) -> MutexGuard<'_, Overflow> {
        lock(&self.state)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether puts must go through the overflow (it is not empty).
    pub fn is_overflowing(&self) -> bool {
        self.overflowing.load(Ordering::Acquire)
    }

    /// Records of this process waiting for room in the ring (one being pushed not counted).
    pub fn pending(&self) -> usize {
        self.state().records.len()
    }

    /// Queues `record` behind the overflow, starting the feeder if it is not running. When
    /// nothing is queued yet, the ring is tried once more under the overflow's lock (it may
    /// have made room since the caller looked).
    pub fn push(self: &Arc<Self>, ring: &Ring, record: Vec<u8>) {
        let mut state = self.state();
        if !self.is_overflowing() && ring.try_push(&record, None) {
            return;
        }
        self.overflowing.store(true, Ordering::Release);
        state.records.push_back(record);
        if !state.registered_at_exit {
            state.registered_at_exit = true;
            let weak: Weak<dyn StopAtExit> = Arc::downgrade(self) as Weak<Local>;
            stop_at_exit(weak);
        }
        if !state.feeder_running {
            state.feeder_running = true;
            let local = self.clone();
            let ring = ring.clone();
            let spawned = std::thread::Builder::new()
                .name("procvisor-queue-feeder".into())
                .spawn(move || local.feed(&ring));
            if let Err(e) = spawned {
                // Without a thread the records stay queued; the next put retries.
                tracing::warn!(target: "procvisor", "cannot start a queue feeder thread: {e}");
                state.feeder_running = false;
            }
        }
    }

    /// The feeder thread: moves the overflow into the ring in order, then ends.
    fn feed(&self, ring: &Ring) {
        loop {
            let record = {
                let mut state = self.state();
                match state.records.pop_front() {
                    Some(record) => record,
                    None => {
                        state.feeder_running = false;
                        self.overflowing.store(false, Ordering::Release);
                        self.drained.notify_all();
                        return;
                    }
                }
            };
            // `overflowing` stays true while this record is in flight, so no put overtakes it.
            while !ring.push(&record, Some(Instant::now() + FEEDER_SLICE)) {}
        }
    }

    /// Whether this process's overflow has been given up on (`cancel_join_thread`).
    pub fn is_cancelled(&self) -> bool {
        self.state().cancelled
    }

    pub fn cancel_join(&self) {
        self.state().cancelled = true;
        self.drained.notify_all();
    }

    /// Waits until the overflow has drained into the ring (or was cancelled), up to
    /// `deadline`; `true` if it did.
    pub fn wait_drained(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.state();
        while !state.cancelled && (state.feeder_running || !state.records.is_empty()) {
            match deadline {
                None => {
                    state = self.drained.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    state = self
                        .drained
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
        true
    }
}

impl StopAtExit for Local {
    fn stop_at_exit(&self) {
        if self.is_cancelled() {
            return;
        }
        let pending = self.pending();
        if pending > 0 {
            tracing::info!(target: "procvisor", "flushing {pending} queued items before exit");
        }
        self.wait_drained(None);
    }
}
