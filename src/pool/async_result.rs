//! [`AsyncResult`]: the handle `submit`, `submit_map` and `submit_starmap` return.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::job::Completion;
use crate::error::TaskError;

/// The result of a task submitted with [`Pool::submit`](super::Pool::submit),
/// [`Pool::submit_map`](super::Pool::submit_map) or
/// [`Pool::submit_starmap`](super::Pool::submit_starmap) (Python's `AsyncResult`).
///
/// [`get`](AsyncResult::get) consumes the handle and returns the task's value or its
/// [`TaskError`], so a value cannot be asked for twice. To wait with a timeout and keep the
/// handle, [`wait_timeout`](AsyncResult::wait_timeout) first: once it returns `true`, `get`
/// returns at once. Blocking methods work in any thread (inside a tokio runtime too);
/// [`get_async`](AsyncResult::get_async) and [`wait_async`](AsyncResult::wait_async) work on
/// any executor.
///
/// ```standalone_crate
/// # fn main() -> procvisor::Result<()> {
/// # procvisor::init();
/// use std::time::Duration;
/// let pool = procvisor::Pool::new(2)?;
/// let res = pool.submit(|x: u64| x * 2, (21,))?;
/// assert!(res.wait_timeout(Duration::from_secs(10)));
/// assert!(res.is_ready());
/// assert_eq!(res.is_successful(), Some(true));
/// assert_eq!(res.get()?, 42);
/// # Ok(()) }
/// ```
///
/// The value moves out with the handle, so a second `get` does not compile:
///
/// ```compile_fail,E0382
/// # fn main() -> procvisor::Result<()> {
/// let pool = procvisor::Pool::new(1)?;
/// let res = pool.submit(|x: u64| x * 2, (21,))?;
/// let value = res.get()?;
/// let again = res.get()?; // error[E0382]: use of moved value: `res`
/// # Ok(()) }
/// ```
pub struct AsyncResult<T> {
    done: Arc<Completion<T>>,
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(done: Arc<Completion<T>>) -> AsyncResult<T> {
        AsyncResult { done }
    }

    /// Waits for the task and returns its value, or its error re-raised (Python's `get()`).
    ///
    /// For Python's `get(timeout)`, call [`wait_timeout`](AsyncResult::wait_timeout) first.
    ///
    /// # Errors
    ///
    /// The task's [`TaskError`]: [`Failed`](TaskError::Failed),
    /// [`Panicked`](TaskError::Panicked), [`WorkerLost`](TaskError::WorkerLost),
    /// [`Timeout`](TaskError::Timeout), …
    pub fn get(self) -> Result<T, TaskError> {
        self.done.wait(None);
        self.take()
    }

    /// [`get`](AsyncResult::get) for async callers.
    ///
    /// # Cancel safety
    ///
    /// The future owns the handle: dropping it before it completes drops the result. To wait
    /// with a timeout and keep the handle, put [`wait_async`](AsyncResult::wait_async) in
    /// `tokio::time::timeout`, then call `get` (which then returns at once).
    ///
    /// # Errors
    ///
    /// As [`get`](AsyncResult::get).
    pub async fn get_async(self) -> Result<T, TaskError> {
        self.done.wait_async().await;
        self.take()
    }

    fn take(&self) -> Result<T, TaskError> {
        // Ready, and taken only here, by the one handle (consumed by the caller).
        self.done.take().unwrap_or_else(|| {
            Err(super::outcome::undecodable(
                "the result vanished before it was taken",
            ))
        })
    }

    /// Waits until the task has finished, successfully or not (Python's `wait()`).
    pub fn wait(&self) {
        self.done.wait(None);
    }

    /// Waits until the task has finished or `timeout` passes (Python's `wait(timeout)`);
    /// returns whether it has finished. The task keeps running after a timeout.
    #[doc(alias = "get_timeout")]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.done.wait(Some(timeout))
    }

    /// [`wait`](AsyncResult::wait) for async callers. Cancel safe: dropping the future only
    /// stops the wait.
    pub async fn wait_async(&self) {
        self.done.wait_async().await
    }

    /// Whether the task has finished, successfully or not (Python's `ready()`).
    #[doc(alias = "ready")]
    pub fn is_ready(&self) -> bool {
        self.done.is_ready()
    }

    /// Whether the task finished without an error (Python's `successful()`): `None` while it
    /// has not finished (where Python raises `ValueError`).
    #[doc(alias = "successful")]
    pub fn is_successful(&self) -> Option<bool> {
        self.done.is_successful()
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.is_ready())
            .finish()
    }
}
