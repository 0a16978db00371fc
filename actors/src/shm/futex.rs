//! Futex wait and wake on a 32-bit word that may live in memory shared between processes.
//!
//! The operations are the shared (not `FUTEX_PRIVATE_FLAG`) kind, so a word in a `MAP_SHARED`
//! mapping of the same memfd wakes sleepers in every process that maps it.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// How a [`futex_wait`] ended. Every outcome may be spurious: callers re-check their word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// Woken by a [`futex_wake`] (or a signal, or spuriously).
    Woken,
    /// The word did not hold `expected` when the wait began.
    Changed,
    /// The deadline passed.
    TimedOut,
}

/// Sleeps while `word` holds `expected`, until woken or until `deadline` (None: no deadline).
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> WaitOutcome {
    let timeout = match deadline {
        None => None,
        Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return WaitOutcome::TimedOut,
        },
    };
    let ts = timeout.map(timespec);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call (the reference
    // guarantees it); `ts_ptr` is null or points at a live timespec; FUTEX_WAIT reads nothing
    // else.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return WaitOutcome::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => WaitOutcome::Changed,
        Some(libc::ETIMEDOUT) => WaitOutcome::TimedOut,
        _ => WaitOutcome::Woken,
    }
}

/// Wakes up to `count` sleepers on `word`; returns how many were woken.
pub fn futex_wake(word: &AtomicU32, count: u32) -> usize {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE only uses its address as a key.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            count,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    usize::try_from(rc).unwrap_or(0)
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}
