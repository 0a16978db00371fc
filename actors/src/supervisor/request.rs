//! [`Request`]: one supervisor request's answer, waited for blocking (`.wait()`) or async
//! (`.await`), so every supervisor operation is written once.

use std::future::Future;
use std::pin::Pin;

use super::error::SupervisorError;
use crate::reply::Pending;

/// A boxed, sendable future (what the child traits and requests return).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A request sent to a supervisor, whose answer is awaited either way: [`wait`](Request::wait)
/// blocks the calling thread (any thread, inside or outside a tokio runtime), `.await` waits
/// asynchronously (any runtime). One request type serves both, so every supervisor operation
/// is written once.
///
/// The request is sent when it is made: dropping it without waiting does not cancel the
/// operation, it only discards the answer.
#[must_use = "the request is sent; .wait() or .await gives its answer"]
pub struct Request<T> {
    answer: Result<Answer<T>, SupervisorError>,
    supervisor: String,
}

/// Where a request's answer comes from.
enum Answer<T> {
    /// The supervisor answers through this reply.
    Pending(Pending<Result<T, SupervisorError>>),
    /// Another request's answer, converted ([`Request::map`]).
    Mapped(Box<dyn MappedAnswer<T>>),
}

/// A request's answer converted: the two waits of [`Request`], behind a type that forgets the
/// original answer's type.
trait MappedAnswer<T>: Send {
    fn wait(self: Box<Self>) -> Result<T, SupervisorError>;
    fn wait_async(self: Box<Self>) -> BoxFuture<'static, Result<T, SupervisorError>>;
}

struct Map<U, F> {
    inner: Request<U>,
    convert: F,
}

impl<U, T, F> MappedAnswer<T> for Map<U, F>
where
    U: Send + 'static,
    F: FnOnce(U) -> T + Send + 'static,
{
    fn wait(self: Box<Self>) -> Result<T, SupervisorError> {
        self.inner.wait().map(self.convert)
    }

    fn wait_async(self: Box<Self>) -> BoxFuture<'static, Result<T, SupervisorError>> {
        Box::pin(async move { self.inner.await.map(self.convert) })
    }
}

impl<T: Send + 'static> Request<T> {
    /// A request whose answer will come through `pending`.
    pub(crate) fn pending(
        supervisor: String,
        pending: Pending<Result<T, SupervisorError>>,
    ) -> Self {
        Request {
            answer: Ok(Answer::Pending(pending)),
            supervisor,
        }
    }

    /// A request answered already: `error` (it could not even be sent).
    pub(crate) fn failed(supervisor: String, error: SupervisorError) -> Self {
        Request {
            answer: Err(error),
            supervisor,
        }
    }

    /// The path of the supervisor the request went to.
    pub fn supervisor(&self) -> &str {
        &self.supervisor
    }

    /// Blocks until the supervisor answers. A supervisor that exits before answering gives
    /// [`SupervisorError::NotRunning`].
    pub fn wait(self) -> Result<T, SupervisorError> {
        let supervisor = self.supervisor;
        match self.answer? {
            Answer::Pending(pending) => pending
                .wait()
                .unwrap_or(Err(SupervisorError::NotRunning { supervisor })),
            Answer::Mapped(mapped) => mapped.wait(),
        }
    }

    /// The same request, its answer converted by `convert` when it comes (errors pass through
    /// unchanged).
    ///
    /// ```no_run
    /// # fn demo(sup: procvisor_actors::supervisor::SupervisorRef) {
    /// let running = sup.count_children().map(|counts| counts.active);
    /// assert_eq!(running.wait(), Ok(0));
    /// # }
    /// ```
    pub fn map<U, F>(self, convert: F) -> Request<U>
    where
        U: Send + 'static,
        F: FnOnce(T) -> U + Send + 'static,
    {
        let supervisor = self.supervisor.clone();
        Request {
            answer: Ok(Answer::Mapped(Box::new(Map {
                inner: self,
                convert,
            }))),
            supervisor,
        }
    }
}

impl<T: Send + 'static> std::future::IntoFuture for Request<T> {
    type Output = Result<T, SupervisorError>;
    type IntoFuture = BoxFuture<'static, Result<T, SupervisorError>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let supervisor = self.supervisor;
            match self.answer? {
                Answer::Pending(pending) => pending
                    .wait_async()
                    .await
                    .unwrap_or(Err(SupervisorError::NotRunning { supervisor })),
                Answer::Mapped(mapped) => mapped.wait_async().await,
            }
        })
    }
}

impl<T> std::fmt::Debug for Request<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("supervisor", &self.supervisor)
            .field("sent", &self.answer.is_ok())
            .finish()
    }
}
