//! [`Barrier`]: a fixed number of parties wait until all have arrived (Python's
//! `multiprocessing.Barrier`).
//!
//! State: one 32-bit futex word and a ring of 64 generation outcomes.
//!
//! ```text
//!  word:  generation (15 bits) | BROKEN | BUSY | arrived (15 bits)
//! ```
//!
//! * An arrival is a compare-and-swap `arrived → arrived + 1`; its index is `arrived`. The
//!   last party instead takes the word `BUSY` (no one else may change it), runs the action,
//!   records the generation's outcome (`OK`) in the ring, and publishes `generation + 1` with
//!   no one arrived; then wakes everyone.
//! * Breaking (abort, a waiter's timeout, a failed action) also goes through `BUSY`: it records
//!   `BROKEN` for the generation and leaves the word `BROKEN` (sticky: every wait fails at once
//!   until `reset`).
//! * `reset` (through `BUSY`) records `BROKEN` if anyone was waiting or the barrier was broken,
//!   and publishes `generation + 1`, empty and unbroken.
//! * A waiter sleeps while the word is unchanged; once its generation has moved on it reads the
//!   outcome its generation left in the ring.
//!
//! The action is a plain `fn()`; it travels between processes as a
//! [`CodeRef`](crate::code_ref), like a process target (see its trust model).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use procvisor_actors::shm::{SharedState, WaitOutcome, futex_wait, futex_wake};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::shared::Shared;
use super::wait::Wait;
use crate::code_ref::CodeRef;
use crate::error::{Error, Result};

const COUNT_BITS: u32 = 15;
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;
const BUSY: u32 = 1 << 15;
const BROKEN: u32 = 1 << 16;
const GEN_SHIFT: u32 = 17;
/// The largest number of parties.
pub const MAX_PARTIES: usize = COUNT_MASK as usize;
const RING: usize = 64;

#[repr(C)]
#[derive(Debug)]
struct BarrierState {
    word: AtomicU32,
    parties: AtomicU32,
    /// `generation << 1 | broken` for generation `g` at `g % RING`.
    outcomes: [AtomicU32; RING],
}

// SAFETY: atomics only; any bit pattern is a state.
unsafe impl SharedState for BarrierState {}

#[inline]
fn generation(w: u32) -> u32 {
    w >> GEN_SHIFT
}

#[inline]
fn arrived(w: u32) -> u32 {
    w & COUNT_MASK
}

#[inline]
fn next_generation(w: u32) -> u32 {
    (generation(w).wrapping_add(1) & ((1 << (32 - GEN_SHIFT)) - 1)) << GEN_SHIFT
}

/// A barrier shared between processes: a clone of Python's `multiprocessing.Barrier`.
///
/// ```
/// let barrier = procvisor::Barrier::new(1)?;
/// assert_eq!(barrier.wait(None)?, 0); // one party: passes at once
/// barrier.abort();
/// assert!(barrier.broken());
/// assert!(matches!(barrier.wait(None), Err(procvisor::Error::BrokenBarrier)));
/// barrier.reset();
/// assert_eq!(barrier.wait(None)?, 0);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Barrier {
    state: Shared<BarrierState>,
    action: Option<Action>,
    timeout: Option<Duration>,
}

impl Barrier {
    /// A barrier for `parties` parties.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] unless `1 <= parties <= MAX_PARTIES`;
    /// [`Error::SharedMemory`] if the OS refuses the shared memory.
    pub fn new(parties: usize) -> Result<Barrier> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidArgument {
                argument: "parties",
                reason: format!("{parties}: a barrier needs 1 to {MAX_PARTIES} parties"),
            });
        }
        let state: Shared<BarrierState> = Shared::create(std::mem::size_of::<BarrierState>())?;
        state.parties.store(parties as u32, Ordering::Release);
        Ok(Barrier {
            state,
            action: None,
            timeout: None,
        })
    }

    /// Runs `action` (in the process of the last party to arrive, before any party is
    /// released) each time the barrier passes. If it panics, the barrier breaks.
    pub fn with_action(mut self, action: fn()) -> Barrier {
        self.action = Some(Action::new(action));
        self
    }

    /// The default timeout of [`wait`](Self::wait) when it is given none.
    pub fn with_timeout(mut self, timeout: Duration) -> Barrier {
        self.timeout = Some(timeout);
        self
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.state.parties.load(Ordering::Relaxed) as usize
    }

    /// Parties waiting now.
    pub fn n_waiting(&self) -> usize {
        let w = self.state.word.load(Ordering::Acquire);
        if w & (BUSY | BROKEN) != 0 {
            0
        } else {
            arrived(w) as usize
        }
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> bool {
        self.state.word.load(Ordering::Acquire) & BROKEN != 0
    }

    /// Waits until every party has arrived; returns this party's arrival index
    /// (`0..parties`, the last to arrive gets `parties - 1`). `timeout` (or the barrier's
    /// default) passing breaks the barrier.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken (aborted, a timeout, a
    /// failed action) or is reset while waiting.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<usize> {
        let wait = Wait::timeout(timeout.or(self.timeout));
        let st = &self.state;
        let parties = st.parties.load(Ordering::Relaxed).max(1);
        let mut w = st.word.load(Ordering::Acquire);
        loop {
            if w & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            if w & BUSY != 0 {
                futex_wait(&st.word, w, None);
                w = st.word.load(Ordering::Acquire);
                continue;
            }
            let index = arrived(w);
            let last = index + 1 >= parties;
            let new = if last { w | BUSY } else { w + 1 };
            match st
                .word
                .compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if last => return self.pass(new).map(|_| index as usize),
                Ok(_) => return self.sleep(new, wait).map(|_| index as usize),
                Err(actual) => w = actual,
            }
        }
    }

    /// The last party: runs the action, records the outcome, opens the next generation.
    fn pass(&self, busy: u32) -> Result<()> {
        let ok = match &self.action {
            None => true,
            Some(action) => action.run(),
        };
        if !ok {
            self.finish_broken(busy);
            return Err(Error::BrokenBarrier);
        }
        self.record(busy, false);
        self.state
            .word
            .store(next_generation(busy), Ordering::Release);
        futex_wake(&self.state.word, u32::MAX);
        Ok(())
    }

    fn record(&self, w: u32, broken: bool) {
        let g = generation(w);
        self.state.outcomes[g as usize % RING]
            .store((g << 1) | u32::from(broken), Ordering::Release);
    }

    /// From `BUSY`: the generation is broken, and stays so until reset.
    fn finish_broken(&self, busy: u32) {
        self.record(busy, true);
        self.state
            .word
            .store((busy & !BUSY) | BROKEN, Ordering::Release);
        futex_wake(&self.state.word, u32::MAX);
    }

    /// A party that arrived (the word became `arrived`) waits for its generation to end.
    fn sleep(&self, arrived_word: u32, wait: Wait) -> Result<()> {
        let st = &self.state;
        let g = generation(arrived_word);
        loop {
            let w = st.word.load(Ordering::Acquire);
            if generation(w) != g {
                return self.outcome(g);
            }
            if w & BROKEN != 0 {
                return Err(Error::BrokenBarrier);
            }
            let outcome = futex_wait(
                &st.word,
                w,
                if w & BUSY != 0 { None } else { wait.deadline() },
            );
            if outcome == WaitOutcome::TimedOut && self.break_generation(g) {
                return Err(Error::BrokenBarrier);
            }
        }
    }

    fn outcome(&self, g: u32) -> Result<()> {
        let o = self.state.outcomes[g as usize % RING].load(Ordering::Acquire);
        // A tag of another generation means 64 generations passed while this party slept
        // (it cannot tell any more; it was released then, since breaking is sticky).
        if o >> 1 == g && o & 1 != 0 {
            Err(Error::BrokenBarrier)
        } else {
            Ok(())
        }
    }

    /// Breaks generation `g` if it is still filling (a waiter's timeout, or abort); `true` if
    /// it is broken now.
    fn break_generation(&self, g: u32) -> bool {
        let st = &self.state;
        let mut w = st.word.load(Ordering::Acquire);
        loop {
            if generation(w) != g || w & BUSY != 0 {
                return false;
            }
            if w & BROKEN != 0 {
                return true;
            }
            match st
                .word
                .compare_exchange_weak(w, w | BUSY, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.finish_broken(w | BUSY);
                    return true;
                }
                Err(actual) => w = actual,
            }
        }
    }

    /// Breaks the barrier: every party waiting (and every later `wait`, until
    /// [`reset`](Self::reset)) gets [`Error::BrokenBarrier`].
    pub fn abort(&self) {
        loop {
            let w = self.state.word.load(Ordering::Acquire);
            if w & BUSY != 0 {
                futex_wait(&self.state.word, w, None);
                continue;
            }
            if self.break_generation(generation(w)) {
                return;
            }
        }
    }

    /// Returns the barrier to its empty, unbroken state; parties waiting get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        let st = &self.state;
        loop {
            let w = st.word.load(Ordering::Acquire);
            if w & BUSY != 0 {
                futex_wait(&st.word, w, None);
                continue;
            }
            if w & BROKEN == 0 && arrived(w) == 0 {
                return; // empty already
            }
            if st
                .word
                .compare_exchange(w, w | BUSY, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.record(w, true);
                st.word.store(next_generation(w), Ordering::Release);
                futex_wake(&st.word, u32::MAX);
                return;
            }
        }
    }

    /// [`wait`](Self::wait) for async callers (any executor, inside a tokio runtime or not).
    /// Once arrived, a party is counted: dropping the future does not withdraw it.
    ///
    /// # Errors
    ///
    /// As [`wait`](Self::wait).
    pub async fn wait_async(&self, timeout: Option<Duration>) -> Result<usize> {
        let me = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        procvisor_actors::runtime::spawn_blocking(move || {
            let _ = tx.send(me.wait(timeout));
        });
        rx.await.unwrap_or(Err(Error::BrokenBarrier))
    }
}

// ---- the action ---------------------------------------------------------------------------

/// A barrier action: a `fn()` in this executable, travelling as a [`CodeRef`].
#[derive(Clone, Copy, Debug)]
struct Action {
    f: fn(),
}

impl Action {
    fn new(f: fn()) -> Action {
        Action { f }
    }

    /// Runs the action; `false` if it panicked.
    fn run(&self) -> bool {
        catch_unwind(AssertUnwindSafe(self.f)).is_ok()
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        CodeRef::of(self.f).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let f = CodeRef::<fn()>::deserialize(deserializer)?
            .resolve()
            .map_err(|e| D::Error::custom(format!("a barrier's action cannot travel here: {e}")))?;
        Ok(Action { f })
    }
}
