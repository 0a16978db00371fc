//! [`IMapIterator`]: the results of `imap` (in order) and `imap_unordered` (as they finish).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::job::JobSink;
use super::outcome::{Chunk, Outcome};
use crate::error::{ResultTimeout, TaskError};
use procvisor_actors::sync_util::lock;

struct State<R> {
    /// Items ready to be handed out, in the order they will be.
    ready: VecDeque<Result<R, TaskError>>,
    /// `imap`: chunks that arrived before an earlier one.
    parked: BTreeMap<u32, Vec<Result<R, TaskError>>>,
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
    pub(crate) fn fail_rest(&self, failure: TaskError) {
        self.dropped.store(true, Ordering::Release);
        let mut state = lock(&self.state);
        state.parked.clear();
        state.total = state.yielded + state.ready.len() + 1;
        state.ready.push_back(Err(failure));
        drop(state);
        self.cond.notify_all();
        self.notify.notify_waiters();
    }

    fn push(&self, index: u32, items: Vec<Result<R, TaskError>>) {
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

    /// The next item (`Some(None)` at the end), or `None` if `deadline` passed first.
    fn next_until(&self, deadline: Option<Instant>) -> Option<Item<R>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(item) = take_one(&mut state) {
                return Some(item);
            }
            state = match deadline {
                None => self
                    .cond
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        return None;
                    }
                    self.cond
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    async fn next_async(&self) -> Item<R> {
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

/// What the iterator yields next: an item's outcome, or `None` at the end.
type Item<R> = Option<Result<R, TaskError>>;

/// The next item if one is there (`Some(None)` at the end), `None` if the caller must wait.
fn take_one<R>(state: &mut State<R>) -> Option<Item<R>> {
    if let Some(item) = state.ready.pop_front() {
        state.yielded += 1;
        return Some(Some(item));
    }
    (state.yielded >= state.total).then_some(None)
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
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) (in completion order): an
/// [`Iterator`] of one `Result` per input item, so a failed item does not end the iteration.
///
/// [`next_timeout`](IMapIterator::next_timeout) is Python's `next(timeout)`;
/// [`next_async`](IMapIterator::next_async) serves async callers. Dropping the iterator
/// abandons the items not yet sent to a worker.
///
/// ```standalone_crate
/// # fn main() -> procvisor::Result<()> {
/// # procvisor::init();
/// use std::time::Duration;
/// fn half(x: u64) -> Result<u64, String> {
///     if x % 2 == 1 { Err(format!("{x} is odd")) } else { Ok(x / 2) }
/// }
/// let pool = procvisor::Pool::new(2)?;
/// let mut it = pool.imap(half, [4, 5, 6])?;
/// assert_eq!(it.next_timeout(Duration::from_secs(10))?, Some(Ok(2)));
/// assert_eq!(it.next().unwrap().unwrap_err().to_string(), "the task failed: 5 is odd");
/// assert_eq!(it.next(), Some(Ok(3)));
/// assert_eq!(it.next(), None);
/// # Ok(()) }
/// ```
pub struct IMapIterator<R> {
    job: Arc<ImapJob<R>>,
}

impl<R: DeserializeOwned + Send + 'static> IMapIterator<R> {
    pub(crate) fn new(job: Arc<ImapJob<R>>) -> IMapIterator<R> {
        IMapIterator { job }
    }

    /// [`next`](Iterator::next), waiting at most `timeout` (Python's `next(timeout)`):
    /// `Ok(Some(item))` with that item's outcome, `Ok(None)` once every item has been
    /// returned.
    ///
    /// # Errors
    ///
    /// [`ResultTimeout`] if no result came in time; ask again later, nothing is lost.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<R, TaskError>>, ResultTimeout> {
        self.job
            .next_until(Some(Instant::now() + timeout))
            .ok_or(ResultTimeout { timeout })
    }

    /// [`next`](Iterator::next) for async callers: the next item's outcome, `None` at the
    /// end. Cancel safe: an item is taken only when the future completes.
    pub async fn next_async(&mut self) -> Option<Result<R, TaskError>> {
        self.job.next_async().await
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for IMapIterator<R> {
    type Item = Result<R, TaskError>;

    /// The next item's outcome, waiting as long as it takes; `None` once every item has been
    /// returned.
    fn next(&mut self) -> Option<Result<R, TaskError>> {
        // Without a deadline the wait ends only with an item or the end.
        self.job.next_until(None).flatten()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let state = lock(&self.job.state);
        let left = state.total.saturating_sub(state.yielded);
        (left, Some(left))
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
