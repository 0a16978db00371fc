//! [`IMapIterator`]: the results of `imap` (in order) and `imap_unordered` (as they finish).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::job::JobSink;
use super::outcome::{Chunk, Failure, Outcome};
use crate::error::{Error, Result};
use procvisor_actors::sync_util::lock;

struct State<R> {
    /// Items ready to be handed out, in the order they will be.
    ready: VecDeque<Result<R, Failure>>,
    /// `imap`: chunks that arrived before an earlier one.
    parked: BTreeMap<u32, Vec<Result<R, Failure>>>,
    /// `imap`: the chunk whose items go to `ready` next.
    next_chunk: u32,
    /// Items handed out so far, and in all.
    yielded: usize,
    total: usize,
}

/// The receiving side of one `imap` / `imap_unordered` call.
pub(crate) struct ImapJob<R> {
    state: Mutex<State<R>>,
    cond: Condvar,
    notify: Notify,
    ordered: bool,
    dropped: AtomicBool,
}

impl<R: DeserializeOwned + Send + 'static> ImapJob<R> {
    pub(crate) fn new(total: usize, ordered: bool) -> Arc<ImapJob<R>> {
        Arc::new(ImapJob {
            state: Mutex::new(State {
                ready: VecDeque::new(),
                parked: BTreeMap::new(),
                next_chunk: 0,
                yielded: 0,
                total,
            }),
            cond: Condvar::new(),
            notify: Notify::new(),
            ordered,
            dropped: AtomicBool::new(false),
        })
    }

    /// Ends the job early: after the items already received, `failure` is the last item (the
    /// caller's input could not be encoded, so the rest was never sent).
    pub(crate) fn fail_rest(&self, failure: Failure) {
        self.dropped.store(true, Ordering::Release);
        let mut state = lock(&self.state);
        state.parked.clear();
        state.total = state.yielded + state.ready.len() + 1;
        state.ready.push_back(Err(failure));
        drop(state);
        self.cond.notify_all();
        self.notify.notify_waiters();
    }

    fn push(&self, index: u32, items: Vec<Result<R, Failure>>) {
        if self.abandoned() {
            return;
        }
        let mut state = lock(&self.state);
        if !self.ordered {
            state.ready.extend(items);
        } else if index == state.next_chunk {
            state.ready.extend(items);
            state.next_chunk += 1;
            loop {
                let next = state.next_chunk;
                match state.parked.remove(&next) {
                    Some(items) => {
                        state.ready.extend(items);
                        state.next_chunk += 1;
                    }
                    None => break,
                }
            }
        } else {
            state.parked.insert(index, items);
        }
        drop(state);
        self.cond.notify_all();
        self.notify.notify_waiters();
    }

    /// The next item, `Ok(None)` at the end, `Err(ResultTimeout)` if none came in time.
    fn next_until(&self, deadline: Option<(Instant, Duration)>) -> Result<Option<R>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(item) = take_one(&mut state) {
                return item;
            }
            state = match deadline {
                None => self
                    .cond
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some((at, timeout)) => {
                    let now = Instant::now();
                    if now >= at {
                        return Err(Error::ResultTimeout { timeout });
                    }
                    self.cond
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    async fn next_async(&self) -> Result<Option<R>> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = take_one(&mut lock(&self.state)) {
                return item;
            }
            notified.await;
        }
    }
}

fn take_one<R>(state: &mut State<R>) -> Option<Result<Option<R>>> {
    if let Some(item) = state.ready.pop_front() {
        state.yielded += 1;
        return Some(item.map(Some).map_err(|f| f.to_error()));
    }
    (state.yielded >= state.total).then_some(Ok(None))
}

impl<R: DeserializeOwned + Send + 'static> JobSink for ImapJob<R> {
    fn complete(&self, index: u32, items: u32, outcome: Outcome<'_>) {
        let each = match Chunk::<R>::decode(items, outcome) {
            Chunk::Ok(values) => values.into_iter().map(Ok).collect(),
            Chunk::Each(each) => each,
            Chunk::Failed(f) => (0..items).map(|_| Err(f.clone())).collect(),
        };
        self.push(index, each);
    }

    fn abandoned(&self) -> bool {
        self.dropped.load(Ordering::Acquire)
    }
}

/// The results of [`Pool::imap`](super::Pool::imap) (in input order) or
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) (in completion order): an iterator of
/// one `Result` per input item, so a failed item does not end the iteration.
///
/// [`next_timeout`](IMapIterator::next_timeout) is Python's `next(timeout)`;
/// [`next_async`](IMapIterator::next_async) serves async callers. Dropping the iterator
/// abandons the items not yet sent to a worker.
pub struct IMapIterator<R> {
    job: Arc<ImapJob<R>>,
}

impl<R: DeserializeOwned + Send + 'static> IMapIterator<R> {
    pub(crate) fn new(job: Arc<ImapJob<R>>) -> IMapIterator<R> {
        IMapIterator { job }
    }

    /// The next result, waiting at most `timeout`: `Ok(Some(value))`, `Ok(None)` once every
    /// item has been returned, or an error.
    ///
    /// # Errors
    ///
    /// [`Error::ResultTimeout`] if no result came in time (ask again later: nothing is lost);
    /// otherwise that item's error ([`Error::TaskFailed`], [`Error::WorkerLost`], …).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<R>> {
        self.job
            .next_until(Some((Instant::now() + timeout, timeout)))
    }

    /// The next result, for async callers: `Ok(None)` at the end.
    ///
    /// # Errors
    ///
    /// That item's error.
    pub async fn next_async(&mut self) -> Result<Option<R>> {
        self.job.next_async().await
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for IMapIterator<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.job.next_until(None).transpose()
    }
}

impl<R> Drop for IMapIterator<R> {
    fn drop(&mut self) {
        self.job.dropped.store(true, Ordering::Release);
    }
}

impl<R> fmt::Debug for IMapIterator<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IMapIterator")
            .field("ordered", &self.job.ordered)
            .finish()
    }
}
