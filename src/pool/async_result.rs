//! [`AsyncResult`]: the handle `apply_async`, `map_async` and `starmap_async` return.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::job::Completion;
use crate::error::{Error, Result};

/// The result of a task submitted with [`Pool::apply_async`](super::Pool::apply_async),
/// [`Pool::map_async`](super::Pool::map_async) or
/// [`Pool::starmap_async`](super::Pool::starmap_async) (Python's `AsyncResult`).
///
/// The value moves out on the first successful [`get`](AsyncResult::get); a task's error is
/// returned by every `get`. Blocking methods work in any thread (inside a tokio runtime too);
/// [`get_async`](AsyncResult::get_async) and [`wait_async`](AsyncResult::wait_async) work on
/// any executor.
///
/// ```standalone_crate
/// # fn main() -> procvisor::Result<()> {
/// # procvisor::init();
/// use std::time::Duration;
/// let pool = procvisor::Pool::new(2)?;
/// let res = pool.apply_async(|x: u64| x * 2, (21,))?;
/// assert_eq!(res.get(Some(Duration::from_secs(10)))?, 42);
/// assert!(res.ready() && res.successful()?);
/// # Ok(()) }
/// ```
pub struct AsyncResult<T> {
    done: Arc<Completion<T>>,
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(done: Arc<Completion<T>>) -> AsyncResult<T> {
        AsyncResult { done }
    }

    /// Waits for the result and returns it: the task's value, or its error re-raised
    /// ([`Error::TaskFailed`], [`Error::TaskPanicked`], [`Error::WorkerLost`],
    /// [`Error::TaskTimeout`], …). `None` waits as long as it takes.
    ///
    /// # Errors
    ///
    /// The task's error; [`Error::ResultTimeout`] if `timeout` passes first (the task keeps
    /// running and a later `get` can still return its value); [`Error::ResultTaken`] after an
    /// earlier `get` returned the value.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        if !self.done.wait(timeout) {
            return Err(Error::ResultTimeout {
                timeout: timeout.unwrap_or_default(),
            });
        }
        self.take()
    }

    /// [`get`](AsyncResult::get) without a timeout, for async callers.
    ///
    /// # Errors
    ///
    /// As [`get`](AsyncResult::get), without [`Error::ResultTimeout`].
    pub async fn get_async(&self) -> Result<T> {
        self.done.wait_async().await;
        self.take()
    }

    fn take(&self) -> Result<T> {
        self.done.take().unwrap_or(Err(Error::ResultNotReady))
    }

    /// Waits until the result is ready or `timeout` passes (`None`: as long as it takes);
    /// returns whether it is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.done.wait(timeout)
    }

    /// Waits asynchronously until the result is ready.
    pub async fn wait_async(&self) {
        self.done.wait_async().await
    }

    /// Whether the task has finished (successfully or not).
    pub fn ready(&self) -> bool {
        self.done.ready()
    }

    /// Whether the task finished without an error.
    ///
    /// # Errors
    ///
    /// [`Error::ResultNotReady`] if it has not finished (Python raises `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        self.done.successful().ok_or(Error::ResultNotReady)
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}
