//! Jobs: where a call's chunks land. A [`JobSink`] is the type-erased face the dispatcher sees;
//! [`MapJob`] collects the chunks of `apply` / `map` / `starmap` into one [`Completion`], which
//! an [`AsyncResult`](super::AsyncResult) waits on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use procvisor_actors::sync_util::lock;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use super::assembly::Assembly;
use super::callbacks::CallbackThread;
use super::outcome::{Chunk, Outcome};
use crate::error::TaskError;

/// What the dispatcher knows of a job: where to hand a chunk's outcome, and whether the job
/// still wants its remaining chunks.
pub(crate) trait JobSink: Send + Sync {
    /// Chunk `index` (of `items` items) ended with `outcome`.
    fn complete(&self, index: u32, items: u32, outcome: Outcome<'_>);
    /// True once the job needs no more chunks (it failed, or its caller went away): queued
    /// chunks are then dropped instead of being sent to a worker.
    fn abandoned(&self) -> bool;
}

/// How long a blocking wait looks for a result before it sleeps.
const SPIN: Duration = Duration::from_micros(20);

enum State<T> {
    Pending,
    Done(Result<T, TaskError>),
    /// Taken out; whether it was a value.
    Taken(bool),
}

/// A result that becomes ready once: waitable from blocking code (a `Condvar`) and from async
/// code on any executor (a `Notify`).
pub(crate) struct Completion<T> {
    state: Mutex<State<T>>,
    cond: Condvar,
    notify: Notify,
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Completion<T> {
        Completion {
            state: Mutex::new(State::Pending),
            cond: Condvar::new(),
            notify: Notify::new(),
        }
    }

    /// Makes the result ready (a second call is ignored).
    pub(crate) fn set(&self, result: Result<T, TaskError>) {
        let mut state = lock(&self.state);
        if matches!(*state, State::Pending) {
            *state = State::Done(result);
            drop(state);
            self.cond.notify_all();
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        !matches!(*lock(&self.state), State::Pending)
    }

    /// `Some(true)` succeeded, `Some(false)` failed, `None` not ready.
    pub(crate) fn is_successful(&self) -> Option<bool> {
        match &*lock(&self.state) {
            State::Pending => None,
            State::Done(r) => Some(r.is_ok()),
            State::Taken(ok) => Some(*ok),
        }
    }

    /// Waits until ready or `timeout` passes; true if ready.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        if self.spin_until_ready(deadline) {
            return true;
        }
        let state = lock(&self.state);
        let ready = |state: &mut State<T>| (!matches!(state, State::Pending)).then_some(());
        procvisor_actors::reply::wait_for(&self.cond, state, deadline, ready).is_some()
    }

    /// Looks for the result without sleeping for up to [`SPIN`] (yielding between looks), as
    /// the connections' receives do: a result that is microseconds away is then taken without
    /// the cost of putting this thread to sleep and waking it (several microseconds on each
    /// side here).
    fn spin_until_ready(&self, deadline: Option<Instant>) -> bool {
        let start = Instant::now();
        let until = deadline.map_or(start + SPIN, |d| d.min(start + SPIN));
        loop {
            if self.is_ready() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Waits asynchronously until ready.
    pub(crate) async fn wait_async(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_ready() {
                return;
            }
            notified.await;
        }
    }

    /// Takes the outcome out; `None` if not ready (or already taken: the one
    /// [`AsyncResult`](super::AsyncResult) that takes it is consumed doing so).
    pub(crate) fn take(&self) -> Option<Result<T, TaskError>> {
        let mut state = lock(&self.state);
        match std::mem::replace(&mut *state, State::Pending) {
            State::Pending => None,
            State::Done(result) => {
                *state = State::Taken(result.is_ok());
                Some(result)
            }
            taken @ State::Taken(_) => {
                *state = taken;
                None
            }
        }
    }
}

/// A success callback: called with the value.
pub(crate) type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
/// An error callback: called with the error.
pub(crate) type OnError = Box<dyn FnOnce(&TaskError) + Send>;

/// The success and error callbacks of a `submit` / `submit_map`.
pub(crate) struct Callbacks<T> {
    pub(crate) success: Option<OnSuccess<T>>,
    pub(crate) error: Option<OnError>,
}

impl<T> Callbacks<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.success.is_none() && self.error.is_none()
    }
}

/// The chunks of one `apply` / `map` / `starmap` call, assembled into a `T` once all are in;
/// the first failure fails the whole call and abandons its queued chunks.
pub(crate) struct MapJob<R, T> {
    parts: Mutex<Assembly<R>>,
    finish: fn(Vec<R>) -> Result<T, TaskError>,
    done: Arc<Completion<T>>,
    callbacks: Mutex<Option<Callbacks<T>>>,
    runner: Arc<CallbackThread>,
    finished: AtomicBool,
}

impl<R, T> MapJob<R, T>
where
    R: DeserializeOwned + Send + 'static,
    T: Send + 'static,
{
    /// A job of `total` items in chunks of `chunksize`; `finish` turns the results (in order)
    /// into the call's value. A job of no items finishes at once.
    pub(crate) fn new(
        total: usize,
        chunksize: usize,
        finish: fn(Vec<R>) -> Result<T, TaskError>,
        callbacks: Callbacks<T>,
        runner: Arc<CallbackThread>,
    ) -> Arc<MapJob<R, T>> {
        let job = Arc::new(MapJob {
            parts: Mutex::new(Assembly::new(total, chunksize)),
            finish,
            done: Arc::new(Completion::new()),
            callbacks: Mutex::new((!callbacks.is_empty()).then_some(callbacks)),
            runner,
            finished: AtomicBool::new(false),
        });
        if total == 0 {
            job.deliver(finish(Vec::new()));
        }
        job
    }

    pub(crate) fn completion(&self) -> Arc<Completion<T>> {
        self.done.clone()
    }

    /// Ends the job with `result` (once): through the callback thread if it has callbacks.
    pub(crate) fn deliver(&self, result: Result<T, TaskError>) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let callbacks = lock(&self.callbacks).take();
        let done = self.done.clone();
        match callbacks {
            None => done.set(result),
            Some(cb) => self.runner.run(Box::new(move || {
                match (&result, cb.success, cb.error) {
                    (Ok(value), Some(success), _) => success(value),
                    (Err(e), _, Some(error)) => error(e),
                    _ => {}
                }
                done.set(result);
            })),
        }
    }

    fn store(&self, index: u32, values: Vec<R>) {
        let placed = lock(&self.parts).place(index as usize, values);
        match placed {
            Ok(None) => {}
            Ok(Some(all)) => self.deliver((self.finish)(all)),
            Err(reason) => self.deliver(Err(super::outcome::undecodable(reason))),
        }
    }
}

impl<R, T> JobSink for MapJob<R, T>
where
    R: DeserializeOwned + Send + 'static,
    T: Send + 'static,
{
    fn complete(&self, index: u32, items: u32, outcome: Outcome<'_>) {
        if self.abandoned() {
            return;
        }
        match Chunk::<R>::decode(items, outcome) {
            Chunk::Ok(values) => self.store(index, values),
            Chunk::Each(each) => {
                // A partial chunk always holds a failure; the first one fails the call.
                let mut values = Vec::with_capacity(each.len());
                for r in each {
                    match r {
                        Ok(v) => values.push(v),
                        Err(f) => return self.deliver(Err(f)),
                    }
                }
                self.store(index, values);
            }
            Chunk::Failed(f) => self.deliver(Err(f)),
        }
    }

    fn abandoned(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vec_of(v: Vec<u32>) -> Result<Vec<u32>, TaskError> {
        Ok(v)
    }

    fn frame(values: &[u32]) -> Vec<u8> {
        procvisor_actors::wire::codec::encode(values).unwrap()
    }

    fn no_callbacks() -> Callbacks<Vec<u32>> {
        Callbacks {
            success: None,
            error: None,
        }
    }

    #[test]
    fn chunks_are_assembled_in_order_whatever_order_they_arrive_in() {
        let job = MapJob::new(5, 2, vec_of, no_callbacks(), Default::default());
        use super::super::task::ChunkStatus::AllOk;
        job.complete(2, 1, Outcome::Frame(AllOk, &frame(&[5])));
        job.complete(0, 2, Outcome::Frame(AllOk, &frame(&[1, 2])));
        assert!(!job.completion().is_ready());
        job.complete(1, 2, Outcome::Frame(AllOk, &frame(&[3, 4])));
        let done = job.completion();
        assert_eq!(done.take().unwrap().unwrap(), [1, 2, 3, 4, 5]);
        // The value moved out (the handle that takes it is consumed: a second get cannot be
        // written).
        assert!(done.take().is_none());
    }

    #[test]
    fn the_first_failure_fails_the_call_and_abandons_the_rest() {
        let job = MapJob::new(5, 2, vec_of, no_callbacks(), Default::default());
        job.complete(
            1,
            2,
            Outcome::Failed(TaskError::Panicked {
                message: "boom".into(),
            }),
        );
        assert!(job.abandoned());
        let done = job.completion();
        assert_eq!(done.is_successful(), Some(false));
        let err = done.take().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "the task panicked: boom");
        // A later chunk changes nothing.
        job.complete(0, 2, Outcome::Failed(TaskError::PoolTerminated));
        assert!(done.take().is_none());
    }

    #[test]
    fn a_wrong_result_count_is_a_decode_error() {
        let job = MapJob::new(3, 3, vec_of, no_callbacks(), Default::default());
        use super::super::task::ChunkStatus::AllOk;
        job.complete(0, 3, Outcome::Frame(AllOk, &frame(&[1])));
        let err = job.completion().take().unwrap().unwrap_err();
        assert!(matches!(err, TaskError::DecodeResult { .. }), "{err}");
    }

    #[test]
    fn wait_times_out_on_a_pending_result() {
        let job = MapJob::new(3, 3, vec_of, no_callbacks(), Default::default());
        let done = job.completion();
        assert!(!done.wait(Some(Duration::from_millis(20))));
        assert_eq!(done.is_successful(), None);
    }
}
