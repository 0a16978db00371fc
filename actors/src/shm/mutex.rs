//! [`RobustMutex`]: a lock word in shared memory that survives the death of its holder.
//!
//! The word holds the holder's pid (0 when free) and a *contended* bit that tells the unlocker
//! to wake a sleeper. The uncontended path is one compare-and-swap to take and one to give
//! back — no system call. A thread that must wait spins briefly, then sleeps on the word with a
//! futex; before sleeping it asks this process's [`watch`](super::watch) to watch the holder.
//! If the holder dies, the watch replaces its pid with the *owner-died* marker and wakes one
//! sleeper; whoever takes the lock next is told [`Acquired::OwnerDied`] with the dead pid.

use std::hint::spin_loop;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::futex::{WaitOutcome, futex_wait, futex_wake};
use super::pid::my_pid;
use super::segment::{Segment, SharedState};
use super::watch;

const CONTENDED: u32 = 1 << 31;
/// The free-with-a-notice state: the last holder died holding the lock.
const OWNER_DIED: u32 = 1 << 30;
const PID_MASK: u32 = OWNER_DIED - 1;
/// Polls of the word before sleeping: a holder on the other core usually lets go within them.
const SPINS: u32 = 100;

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquired {
    /// From a holder that released it (or it was free).
    Clean,
    /// The previous holder died holding it; it was given back by the watch.
    OwnerDied {
        /// The dead holder's pid.
        pid: i32,
    },
}

/// The lock word and its notice, as laid out in a segment (8 bytes, 4-aligned; all zeroes is a
/// free lock).
#[repr(C)]
#[derive(Debug)]
pub struct RobustMutex {
    word: AtomicU32,
    /// The pid of the last holder that died holding the lock.
    last_dead: AtomicU32,
}

// SAFETY: two atomics; all zeroes is "free, no notice", and any bit pattern is a state the
// protocol tolerates (an unknown pid is watched like any holder).
unsafe impl SharedState for RobustMutex {}

/// Why an unlock was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotLocked;

impl RobustMutex {
    /// The mutex at `offset` in `segment`.
    pub fn at(segment: &Segment, offset: usize) -> &RobustMutex {
        segment.state(offset)
    }

    /// Takes the lock if it is free, without waiting.
    #[inline]
    pub fn try_lock(&self) -> Option<Acquired> {
        let me = my_pid() as u32;
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Acquired::Clean),
            Err(OWNER_DIED) => self.take_from_dead(me),
            Err(_) => None,
        }
    }

    /// Takes the lock, waiting until `deadline` (None: for ever); None if the deadline passed.
    /// `segment`/`offset` locate this mutex, so that the watch can recover it.
    #[inline]
    pub fn lock(
        &self,
        segment: &Segment,
        offset: usize,
        deadline: Option<Instant>,
    ) -> Option<Acquired> {
        if let Some(acquired) = self.try_lock() {
            return Some(acquired);
        }
        self.lock_contended(segment, offset, deadline)
    }

    #[cold]
    fn lock_contended(
        &self,
        segment: &Segment,
        offset: usize,
        deadline: Option<Instant>,
    ) -> Option<Acquired> {
        let me = my_pid() as u32;
        for _ in 0..SPINS {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 || w == OWNER_DIED {
                break;
            }
            spin_loop();
        }
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Others may sleep on the word: take it contended so our unlock wakes one.
                if self
                    .word
                    .compare_exchange(0, me | CONTENDED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Acquired::Clean);
                }
                continue;
            }
            if w == OWNER_DIED {
                if let Some(acquired) = self.take_from_dead(me | CONTENDED) {
                    return Some(acquired);
                }
                continue;
            }
            self.watch_holder((w & PID_MASK) as i32, segment, offset);
            if w & CONTENDED == 0
                && self
                    .word
                    .compare_exchange(w, w | CONTENDED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if futex_wait(&self.word, w | CONTENDED, deadline) == WaitOutcome::TimedOut {
                return None;
            }
        }
    }

    fn take_from_dead(&self, new: u32) -> Option<Acquired> {
        let pid = self.last_dead.load(Ordering::Relaxed) as i32;
        self.word
            .compare_exchange(OWNER_DIED, new, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Acquired::OwnerDied { pid })
    }

    fn watch_holder(&self, holder: i32, segment: &Segment, offset: usize) {
        watch::on_death(holder, segment, offset, || {
            let segment = segment.clone();
            Arc::new(move |dead| RobustMutex::at(&segment, offset).recover(dead))
        });
    }

    /// Gives the lock back. Any process may (as with Python's `Lock`); owner checks are the
    /// caller's. `Err` if it was not locked.
    #[inline]
    pub fn unlock(&self) -> Result<(), NotLocked> {
        // One swap (not load + compare-and-swap): the uncontended path's second and last
        // atomic instruction.
        let w = self.word.swap(0, Ordering::Release);
        if w & PID_MASK == 0 {
            return Err(self.refuse_unlock(w));
        }
        if w & CONTENDED != 0 {
            futex_wake(&self.word, 1);
        }
        Ok(())
    }

    /// An unlock of a free lock swapped in 0 over a free state: put back an owner-died notice
    /// it may have erased (unless someone took the lock in between, who then misses it — only
    /// ever after a misuse).
    #[cold]
    fn refuse_unlock(&self, was: u32) -> NotLocked {
        if was == OWNER_DIED {
            let _ = self
                .word
                .compare_exchange(0, OWNER_DIED, Ordering::Relaxed, Ordering::Relaxed);
        }
        NotLocked
    }

    /// The holder's pid, if the lock is held.
    #[inline]
    pub fn holder(&self) -> Option<i32> {
        match self.word.load(Ordering::Relaxed) & PID_MASK {
            0 => None,
            pid => Some(pid as i32),
        }
    }

    /// Whether the lock is held by anyone.
    #[inline]
    pub fn is_locked(&self) -> bool {
        self.holder().is_some()
    }

    /// The watch's recovery: if `dead` still holds the lock, free it with the owner-died notice
    /// and wake one sleeper.
    pub(crate) fn recover(&self, dead: i32) {
        let mut w = self.word.load(Ordering::Relaxed);
        while w & PID_MASK == dead as u32 {
            self.last_dead.store(dead as u32, Ordering::Relaxed);
            match self
                .word
                .compare_exchange(w, OWNER_DIED, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    futex_wake(&self.word, 1);
                    return;
                }
                Err(actual) => w = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_unlock_and_contention_between_threads() {
        let seg = Segment::create(64).unwrap();
        let m = RobustMutex::at(&seg, 0);
        assert_eq!(m.lock(&seg, 0, None), Some(Acquired::Clean));
        assert_eq!(m.try_lock(), None);
        assert_eq!(m.holder(), Some(my_pid()));
        let seg2 = seg.clone();
        let t = std::thread::spawn(move || {
            let m = RobustMutex::at(&seg2, 0);
            let got = m.lock(&seg2, 0, None);
            m.unlock().unwrap();
            got
        });
        // The thread sleeps or spins on the word; releasing wakes it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.unlock().unwrap();
        assert_eq!(t.join().unwrap(), Some(Acquired::Clean));
        assert_eq!(m.unlock(), Err(NotLocked));
    }

    #[test]
    fn a_deadline_passes_while_the_lock_is_held() {
        let seg = Segment::create(64).unwrap();
        let m = RobustMutex::at(&seg, 8);
        m.try_lock().unwrap();
        let start = Instant::now();
        let deadline = start + std::time::Duration::from_millis(50);
        assert_eq!(m.lock(&seg, 8, Some(deadline)), None);
        assert!(start.elapsed() >= std::time::Duration::from_millis(50));
    }

    #[test]
    fn recovery_frees_a_dead_holders_lock_with_a_notice() {
        let seg = Segment::create(64).unwrap();
        let m = RobustMutex::at(&seg, 0);
        // Pretend a pid above the kernel's largest pid_max (2^22) holds it: never alive.
        m.word.store(4_194_305, Ordering::SeqCst);
        assert_eq!(
            m.lock(&seg, 0, None),
            Some(Acquired::OwnerDied { pid: 4_194_305 })
        );
        m.unlock().unwrap();
        assert_eq!(m.try_lock(), Some(Acquired::Clean));
    }

    #[test]
    fn a_holder_pid_reused_by_a_process_that_does_not_map_the_lock_counts_as_dead() {
        // The holder died and its pid now names an unrelated, living process.
        let mut unrelated = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = unrelated.id() as i32;
        let seg = Segment::create(64).unwrap();
        let m = RobustMutex::at(&seg, 0);
        m.word.store(pid as u32, Ordering::SeqCst);
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        let got = m.lock(&seg, 0, Some(deadline));
        unrelated.kill().unwrap();
        unrelated.wait().unwrap();
        assert_eq!(got, Some(Acquired::OwnerDied { pid }));
    }
}
