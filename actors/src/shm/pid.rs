//! This process's pid, cached: `getpid()` is a system call and the uncontended lock path must
//! not pay one.

use std::sync::atomic::{AtomicI32, Ordering};

static CACHED: AtomicI32 = AtomicI32::new(0);

/// This process's pid (cached after the first call).
#[inline]
pub fn my_pid() -> i32 {
    match CACHED.load(Ordering::Relaxed) {
        0 => {
            let pid = std::process::id() as i32;
            CACHED.store(pid, Ordering::Relaxed);
            pid
        }
        pid => pid,
    }
}

/// Forgets the cached pid. A forked child calls it first: it inherited its parent's cache.
pub fn forget_cached_pid() {
    // Only written if set: a page a forked child does not write stays shared with its parent.
    if CACHED.load(Ordering::Relaxed) != 0 {
        CACHED.store(0, Ordering::Relaxed);
    }
}
