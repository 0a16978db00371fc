//! The pool's callback thread: where `submit` / `submit_map` callbacks run.
//!
//! Results arrive on the reader threads (one per worker); running a user's callback there would
//! hold up every later result of that worker. So a finished job with callbacks hands a closure
//! to this thread (started on first use), which runs the callback and then marks the result
//! ready — as in Python, `get()` returns after the callback has run. A panicking callback is
//! reported on stderr and the result is still delivered.

use procvisor_actors::sync_util::lock;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// The callback thread of one pool.
#[derive(Default)]
pub(crate) struct CallbackThread {
    inner: Mutex<Option<(Sender<Job>, JoinHandle<()>)>>,
}

impl CallbackThread {
    /// Runs `job` on the callback thread, starting it if needed. If the thread cannot be
    /// started, runs `job` here (a callback is never lost).
    pub(crate) fn run(&self, job: Job) {
        let mut inner = lock(&self.inner);
        if inner.is_none() {
            let (tx, rx) = channel::<Job>();
            let spawned = std::thread::Builder::new()
                .name("procvisor-pool-callbacks".into())
                .spawn(move || {
                    for job in rx {
                        if let Err(panic) = catch_unwind(AssertUnwindSafe(job)) {
                            eprintln!(
                                "procvisor pool: a result callback panicked: {}",
                                super::task::panic_message(panic.as_ref())
                            );
                        }
                    }
                });
            match spawned {
                Ok(handle) => *inner = Some((tx, handle)),
                Err(_) => {
                    drop(inner);
                    return job();
                }
            }
        }
        let refused = match inner.as_ref() {
            Some((tx, _)) => tx.send(job).err().map(|e| e.0),
            None => Some(job),
        };
        drop(inner);
        if let Some(job) = refused {
            job();
        }
    }

    /// Runs every callback handed over so far, then stops the thread (a later `run` starts a
    /// new one).
    pub(crate) fn finish(&self) {
        let taken = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((tx, handle)) = taken {
            drop(tx);
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}
