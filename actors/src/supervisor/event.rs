//! Supervision events: what happened to whom, in order, for services to log and tests to await.
//!
//! Every supervisor publishes on its [`EventBus`]; a nested supervisor's bus forwards to its
//! parent's (a supervisor in another OS process sends its events over its link and the parent
//! republishes them), so a subscriber of the top supervisor sees the whole tree. Each
//! subscriber has its own unbounded-looking queue (capped at [`MAX_QUEUED`] events: beyond
//! that the oldest are dropped and counted in [`EventStream::lagged`]) that it reads blocking,
//! with a timeout, or async.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::exit::{ChildExit, Exit};
use crate::reply::wait_for;
use crate::sync_util::lock;

/// Most events a subscriber's queue holds before the oldest are dropped.
pub const MAX_QUEUED: usize = 1 << 16;

/// Something that happened in a supervision tree. `supervisor` is the path of the supervisor
/// it happened in (`top`, `top/db`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A child started: when its supervisor started, or by `start_child`, `start_child_with`,
    /// `restart_child`.
    ChildStarted {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// Its pid, if it is a process.
        pid: Option<i32>,
    },
    /// A child exited, on its own or because its supervisor stopped it (`exit.requested`).
    ChildExited {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// The pid it had.
        pid: Option<i32>,
        /// How it ended.
        exit: ChildExit,
    },
    /// The supervisor restarted a child (the one that exited, or one of its siblings under
    /// `OneForAll` / `RestForOne`).
    ChildRestarted {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// Its new pid.
        pid: Option<i32>,
        /// How many times this supervisor has restarted this child so far.
        restarts: u32,
    },
    /// A child declined to start (OTP's `ignore`, see
    /// [`StartChild::start_or_ignore`](super::StartChild::start_or_ignore)): it is not running,
    /// and kept stopped (a temporary or dynamic child is forgotten).
    ChildIgnored {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
    },
    /// A child could not be started. `retrying`: a restart that failed and will be tried again
    /// (by a message the supervisor sends itself); otherwise the start request failed.
    ChildStartFailed {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// Why.
        reason: String,
        /// Whether the supervisor will try again.
        retrying: bool,
    },
    /// The restart of a child waits for its [`RestartDelay`](super::RestartDelay): after it
    /// exited, or after a restart attempt that failed. The attempt comes `delay` later.
    RestartDelayed {
        /// The supervisor's path.
        supervisor: String,
        /// The child's id.
        id: String,
        /// How long the supervisor waits before the attempt.
        delay: Duration,
    },
    /// The restart intensity was exceeded: the supervisor stops all its children and exits.
    GaveUp {
        /// The supervisor's path.
        supervisor: String,
        /// Restarts counted within the period (one more than allowed).
        restarts: u32,
        /// The period.
        period: Duration,
    },
    /// A significant child ended on its own and the supervisor's
    /// [`AutoShutdown`](super::AutoShutdown) says that ends the supervisor: it stops its other
    /// children and exits normally (`Code(0)`, OTP's `shutdown`).
    AutoShutdown {
        /// The supervisor's path.
        supervisor: String,
        /// The significant child whose exit triggered it.
        id: String,
    },
    /// The supervisor exited, its children all stopped: `Code(0)` when it was stopped,
    /// `Failed` when it gave up or could not start its children.
    SupervisorExited {
        /// The supervisor's path.
        supervisor: String,
        /// How it ended.
        exit: Exit,
    },
}

impl Event {
    /// The path of the supervisor the event happened in.
    pub fn supervisor(&self) -> &str {
        match self {
            Event::ChildStarted { supervisor, .. }
            | Event::ChildExited { supervisor, .. }
            | Event::ChildRestarted { supervisor, .. }
            | Event::ChildIgnored { supervisor, .. }
            | Event::ChildStartFailed { supervisor, .. }
            | Event::RestartDelayed { supervisor, .. }
            | Event::GaveUp { supervisor, .. }
            | Event::AutoShutdown { supervisor, .. }
            | Event::SupervisorExited { supervisor, .. } => supervisor,
        }
    }

    /// The child the event is about, if it is about one.
    pub fn child_id(&self) -> Option<&str> {
        match self {
            Event::ChildStarted { id, .. }
            | Event::ChildExited { id, .. }
            | Event::ChildRestarted { id, .. }
            | Event::ChildIgnored { id, .. }
            | Event::ChildStartFailed { id, .. }
            | Event::RestartDelayed { id, .. } => Some(id),
            Event::GaveUp { .. } | Event::AutoShutdown { .. } | Event::SupervisorExited { .. } => {
                None
            }
        }
    }

    /// The pid the event names, if any.
    pub fn pid(&self) -> Option<i32> {
        match self {
            Event::ChildStarted { pid, .. }
            | Event::ChildExited { pid, .. }
            | Event::ChildRestarted { pid, .. } => *pid,
            _ => None,
        }
    }

    /// A short tag naming the kind of event and its child or supervisor, handy in assertions:
    /// `started top:a`, `exited top:a`, `restarted top:a`, `ignored top:a`,
    /// `start-failed top:a`, `restart-delayed top:a`, `gave-up top`, `auto-shutdown top`,
    /// `supervisor-exited top`.
    pub fn tag(&self) -> String {
        let child = |id: &str| format!("{}:{id}", self.supervisor());
        match self {
            Event::ChildStarted { id, .. } => format!("started {}", child(id)),
            Event::ChildExited { id, .. } => format!("exited {}", child(id)),
            Event::ChildRestarted { id, .. } => format!("restarted {}", child(id)),
            Event::ChildIgnored { id, .. } => format!("ignored {}", child(id)),
            Event::ChildStartFailed { id, .. } => format!("start-failed {}", child(id)),
            Event::RestartDelayed { id, .. } => format!("restart-delayed {}", child(id)),
            Event::GaveUp { supervisor, .. } => format!("gave-up {supervisor}"),
            Event::AutoShutdown { supervisor, .. } => format!("auto-shutdown {supervisor}"),
            Event::SupervisorExited { supervisor, .. } => format!("supervisor-exited {supervisor}"),
        }
    }

    /// Whether this is child `id`'s restart (by any supervisor).
    pub fn is_restart_of(&self, id: &str) -> bool {
        matches!(self, Event::ChildRestarted { id: i, .. } if i == id)
    }

    /// Whether this is child `id`'s exit (by any supervisor).
    pub fn is_exit_of(&self, id: &str) -> bool {
        matches!(self, Event::ChildExited { id: i, .. } if i == id)
    }
}

fn pid_text(pid: &Option<i32>) -> String {
    pid.map_or_else(String::new, |p| format!(" (pid {p})"))
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ChildStarted {
                supervisor,
                id,
                pid,
            } => write!(f, "[{supervisor}] child {id}{} started", pid_text(pid)),
            Event::ChildExited {
                supervisor,
                id,
                pid,
                exit,
            } => write!(
                f,
                "[{supervisor}] child {id}{} exited: {exit}",
                pid_text(pid)
            ),
            Event::ChildRestarted {
                supervisor,
                id,
                pid,
                restarts,
            } => write!(
                f,
                "[{supervisor}] child {id} restarted{} (restart #{restarts})",
                pid_text(pid)
            ),
            Event::ChildIgnored { supervisor, id } => {
                write!(f, "[{supervisor}] child {id} declined to start (ignore)")
            }
            Event::ChildStartFailed {
                supervisor,
                id,
                reason,
                retrying,
            } => write!(
                f,
                "[{supervisor}] child {id} failed to start: {reason}{}",
                if *retrying { "; will retry" } else { "" }
            ),
            Event::RestartDelayed {
                supervisor,
                id,
                delay,
            } => write!(f, "[{supervisor}] child {id} restarts in {delay:?}"),
            Event::GaveUp {
                supervisor,
                restarts,
                period,
            } => write!(
                f,
                "[{supervisor}] gave up: {restarts} restarts within {period:?}"
            ),
            Event::AutoShutdown { supervisor, id } => write!(
                f,
                "[{supervisor}] significant child {id} ended: shutting down"
            ),
            Event::SupervisorExited { supervisor, exit } => {
                write!(f, "[{supervisor}] supervisor exited: {exit}")
            }
        }
    }
}

// ---- the bus --------------------------------------------------------------------------------

/// Where a supervisor publishes its events; forwards each to its parent bus, if any.
pub struct EventBus {
    subscribers: Mutex<Vec<Weak<Queue>>>,
    parent: Option<Arc<EventBus>>,
    published: AtomicU64,
}

impl fmt::Debug for EventBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBus")
            .field("subscribers", &lock(&self.subscribers).len())
            .field("forwards", &self.parent.is_some())
            .finish()
    }
}

impl EventBus {
    /// A bus that forwards every event to `parent` as well.
    pub fn new(parent: Option<Arc<EventBus>>) -> Arc<EventBus> {
        Arc::new(EventBus {
            subscribers: Mutex::new(Vec::new()),
            parent,
            published: AtomicU64::new(0),
        })
    }

    /// A new subscriber: it receives every event published from now on.
    pub fn subscribe(&self) -> EventStream {
        let queue = Arc::new(Queue::default());
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| s.strong_count() > 0);
        subs.push(Arc::downgrade(&queue));
        EventStream { queue }
    }

    /// How many events have been published on this bus so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Delivers `event` to every subscriber of this bus and its ancestors.
    pub fn publish(&self, event: Event) {
        {
            let mut subs = lock(&self.subscribers);
            self.published.fetch_add(1, Ordering::SeqCst);
            subs.retain(|s| match s.upgrade() {
                Some(queue) => {
                    queue.push(event.clone());
                    true
                }
                None => false,
            });
        }
        if let Some(parent) = &self.parent {
            parent.publish(event);
        }
    }

    /// Ends this bus's streams (not its ancestors'): once drained, their `recv` returns `None`.
    pub fn close(&self) {
        for queue in lock(&self.subscribers).drain(..) {
            if let Some(queue) = queue.upgrade() {
                queue.close();
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    events: VecDeque<Event>,
    closed: bool,
    lagged: u64,
}

impl Queue {
    fn push(&self, event: Event) {
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        if state.events.len() >= MAX_QUEUED {
            state.events.pop_front();
            state.lagged += 1;
        }
        state.events.push_back(event);
        drop(state);
        self.ready.notify_all();
        self.notify.notify_one();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.ready.notify_all();
        self.notify.notify_one();
    }
}

// ---- subscribers --------------------------------------------------------------------------

/// A subscription to a supervisor's events (and its subtree's), in the order they happened.
///
/// Read it blocking ([`recv`](EventStream::recv), or as an iterator), async
/// ([`recv_async`](EventStream::recv_async)), or with the test helpers
/// ([`wait_for`](EventStream::wait_for), [`wait_restarts`](EventStream::wait_restarts),
/// [`collect_until`](EventStream::collect_until)). The stream ends (`None`) once the
/// supervisor has exited and every event before its exit has been read.
pub struct EventStream {
    queue: Arc<Queue>,
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.queue.state);
        f.debug_struct("EventStream")
            .field("queued", &state.events.len())
            .field("closed", &state.closed)
            .finish()
    }
}

/// A test helper's wait ended without finding what it waited for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitError {
    /// What was awaited.
    pub what: String,
    /// Every event consumed while waiting, in order.
    pub seen: Vec<Event>,
    /// True if the stream ended (the supervisor exited), false on timeout.
    pub closed: bool,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = if self.closed {
            "the supervisor exited"
        } else {
            "timed out"
        };
        write!(f, "{why} while waiting for {}; events seen:", self.what)?;
        if self.seen.is_empty() {
            write!(f, " none")?;
        }
        for e in &self.seen {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WaitError {}

enum Next {
    Event(Event),
    Closed,
    TimedOut,
}

impl EventStream {
    fn next_until(&self, deadline: Option<Instant>) -> Next {
        let state = lock(&self.queue.state);
        let next = wait_for(&self.queue.ready, state, deadline, |state| {
            match state.events.pop_front() {
                Some(event) => Some(Next::Event(event)),
                None => state.closed.then_some(Next::Closed),
            }
        });
        next.unwrap_or(Next::TimedOut)
    }

    /// The next event: waits up to `timeout` (`None`: as long as it takes). `None` on timeout or
    /// once the stream has ended.
    pub fn recv(&self, timeout: Option<Duration>) -> Option<Event> {
        match self.next_until(timeout.map(|t| Instant::now() + t)) {
            Next::Event(e) => Some(e),
            Next::Closed | Next::TimedOut => None,
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        lock(&self.queue.state).events.pop_front()
    }

    /// Every event queued now.
    pub fn drain(&self) -> Vec<Event> {
        lock(&self.queue.state).events.drain(..).collect()
    }

    /// The first `n` events queued now (fewer if fewer are), leaving the rest queued.
    pub fn drain_first(&self, n: u64) -> Vec<Event> {
        let mut state = lock(&self.queue.state);
        let n = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(state.events.len());
        state.events.drain(..n).collect()
    }

    /// The next event, awaited (any tokio runtime); `None` once the stream has ended. Wrap it
    /// in `tokio::time::timeout` for a deadline.
    pub async fn recv_async(&self) -> Option<Event> {
        loop {
            let notified = self.queue.notify.notified();
            {
                let mut state = lock(&self.queue.state);
                if let Some(event) = state.events.pop_front() {
                    return Some(event);
                }
                if state.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Whether the stream has ended and nothing is left to read.
    pub fn is_closed(&self) -> bool {
        let state = lock(&self.queue.state);
        state.closed && state.events.is_empty()
    }

    /// How many events were dropped because this subscriber fell [`MAX_QUEUED`] events behind.
    pub fn lagged(&self) -> u64 {
        lock(&self.queue.state).lagged
    }

    /// Reads events until one satisfies `pred` (returned with every event read before it, in
    /// order), for at most `timeout` in all.
    pub fn collect_until(
        &self,
        mut pred: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Event>, WaitError> {
        self.collect_until_named("a matching event", &mut pred, timeout)
    }

    fn collect_until_named(
        &self,
        what: &str,
        pred: &mut dyn FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Event>, WaitError> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self.next_until(Some(deadline)) {
                Next::Event(e) => {
                    let hit = pred(&e);
                    seen.push(e);
                    if hit {
                        return Ok(seen);
                    }
                }
                Next::Closed | Next::TimedOut => {
                    return Err(WaitError {
                        what: what.to_string(),
                        seen,
                        closed: self.is_closed(),
                    });
                }
            }
        }
    }

    /// Reads events until one satisfies `pred` and returns it (the events before it are
    /// consumed), for at most `timeout`.
    ///
    /// ```no_run
    /// # fn demo(events: procvisor_actors::supervisor::EventStream) {
    /// use procvisor_actors::supervisor::Event;
    /// use std::time::Duration;
    /// let gave_up = events
    ///     .wait_for(|e| matches!(e, Event::GaveUp { .. }), Duration::from_secs(10))
    ///     .unwrap();
    /// # }
    /// ```
    pub fn wait_for(
        &self,
        mut pred: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event, WaitError> {
        let mut seen = self.collect_until_named("a matching event", &mut pred, timeout)?;
        Ok(seen.pop().expect("collect_until returns the match last"))
    }

    /// Waits until child `id` has been restarted `n` more times (counting from now), for at
    /// most `timeout`; returns every event read meanwhile.
    pub fn wait_restarts(
        &self,
        id: &str,
        n: u32,
        timeout: Duration,
    ) -> Result<Vec<Event>, WaitError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut count = 0;
        let mut pred = |e: &Event| {
            if e.is_restart_of(id) {
                count += 1;
            }
            count >= n
        };
        self.collect_until_named(&format!("{n} restarts of {id:?}"), &mut pred, timeout)
    }

    /// Async [`wait_for`](EventStream::wait_for).
    pub async fn wait_for_async(
        &self,
        mut pred: impl FnMut(&Event) -> bool,
        timeout: Duration,
    ) -> Result<Event, WaitError> {
        let mut seen = Vec::new();
        let found = tokio::time::timeout(timeout, async {
            while let Some(e) = self.recv_async().await {
                let hit = pred(&e);
                seen.push(e);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        match found {
            Ok(true) => Ok(seen.pop().expect("the match was pushed")),
            _ => Err(WaitError {
                what: "a matching event".into(),
                seen,
                closed: self.is_closed(),
            }),
        }
    }
}

impl Iterator for EventStream {
    type Item = Event;

    /// Blocks for the next event; `None` once the supervisor has exited and all is read.
    fn next(&mut self) -> Option<Event> {
        self.recv(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(id: &str) -> Event {
        Event::ChildStarted {
            supervisor: "top".into(),
            id: id.into(),
            pid: None,
        }
    }

    #[test]
    fn forwards_to_parent_and_closes() {
        let top = EventBus::new(None);
        let nested = EventBus::new(Some(top.clone()));
        let all = top.subscribe();
        let mine = nested.subscribe();
        nested.publish(started("a"));
        top.publish(started("b"));
        nested.close();
        assert_eq!(mine.recv(None), Some(started("a")));
        assert_eq!(mine.recv(None), None);
        assert_eq!(all.drain(), vec![started("a"), started("b")]);
        assert_eq!(all.recv(Some(Duration::from_millis(1))), None);
        assert!(!all.is_closed());
    }

    #[test]
    fn drain_first_takes_the_oldest_and_the_bus_counts() {
        let bus = EventBus::new(None);
        let events = bus.subscribe();
        for id in ["a", "b", "c"] {
            bus.publish(started(id));
        }
        assert_eq!(bus.published(), 3);
        assert_eq!(events.drain_first(2), vec![started("a"), started("b")]);
        assert_eq!(events.drain_first(5), vec![started("c")]);
        assert!(events.drain_first(1).is_empty());
    }

    #[test]
    fn helpers_report_what_they_saw() {
        let bus = EventBus::new(None);
        let events = bus.subscribe();
        bus.publish(started("a"));
        bus.publish(Event::ChildRestarted {
            supervisor: "top".into(),
            id: "a".into(),
            pid: None,
            restarts: 1,
        });
        let seen = events
            .wait_restarts("a", 1, Duration::from_secs(1))
            .unwrap();
        assert_eq!(seen.len(), 2);
        bus.publish(started("c"));
        let err = events
            .wait_for(|e| e.is_restart_of("c"), Duration::from_millis(10))
            .unwrap_err();
        assert_eq!(err.seen, vec![started("c")]);
        assert!(!err.closed);
        assert!(err.to_string().contains("child c started"));
    }
}
