//! The node's runtime: the small tokio runtime every procvisor process runs for its actors and
//! background tasks.
//!
//! Started lazily, on its own thread (`procvisor-node`), the first time the process needs it
//! (for example when it starts its first child, or awaits a shared object). It is a
//! `current_thread` runtime driven by that thread alone. User code never runs on it, and it is
//! not the user's runtime, so blocking calls in user code can never stall it and the library
//! works the same inside and outside the user's own tokio runtime.
//!
//! This module owns the runtime and nothing else; the actors that live on it (the
//! [process supervisor](crate::process_supervisor), [supervisors](crate::supervisor)) are
//! started by their own modules.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

static HANDLE: OnceLock<Handle> = OnceLock::new();

/// The runtime's handle, starting the runtime on first use.
pub(crate) fn handle() -> &'static Handle {
    HANDLE.get_or_init(start)
}

/// Runs `future` as a task on the runtime (started on first use). Callable from any thread,
/// inside or outside another tokio runtime.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    handle().spawn(future)
}

/// Runs the blocking `f` on the runtime's blocking pool (started on first use), so that async
/// callers on any runtime can await it.
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    handle().spawn_blocking(f)
}

fn start() -> Handle {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("procvisor-node".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cannot build the procvisor node runtime");
            rt.block_on(async move {
                let _ = tx.send(Handle::current());
                std::future::pending::<()>().await;
            });
        })
        .expect("cannot start the procvisor node thread");
    rx.recv()
        .expect("the procvisor node thread died while starting")
}
