//! What a child runs: [`Target`] (a function plus its arguments), [`Run`] (a value that knows
//! how to run itself), and [`TargetOutput`] (what they may return).
//!
//! ## How a function crosses into another process without registration
//!
//! For each target type `F` and argument type `A`, [`Process::new`](crate::Process::new)
//! instantiates the trampoline [`entry::<F, A>`](entry) and sends the child a
//! [`CodeRef`](crate::code_ref) to it (its distance from a fixed function, and the identity of
//! the executable; the child runs the same file); the child follows it and calls the
//! trampoline, which decodes the arguments and calls `F`. `F` must be zero-sized (a `fn` item
//! or a closure that captures nothing), so the trampoline can make its own `F` out of nothing:
//! this is checked at compile time.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A function a child process can run with arguments `Args` (a tuple, as in Python's
/// `args=(...)`): any `fn` item or non-capturing closure of up to six serde arguments.
///
/// ```
/// use procvisor::Process;
/// fn greet(name: String, times: u32) {
///     for _ in 0..times {
///         println!("hello {name}");
///     }
/// }
/// let p = Process::new(greet, ("world".to_string(), 2));
/// let q = Process::new(|| println!("no arguments"), ());
/// # let _ = (p, q);
/// ```
pub trait Target<Args>: Send + Sync + 'static {
    /// What the function returns.
    type Output: TargetOutput;
    /// Calls the function.
    fn call(&self, args: Args) -> Self::Output;
}

/// Implements a "function of an argument tuple" trait (`Target`, the pool's `TaskFn`) for
/// every `Fn` of 0 to 6 arguments whose output satisfies `$out`.
macro_rules! impl_fn_of_args {
    ($trait:ident, $out:ident) => {
        $crate::process::target::impl_fn_of_args!($trait, $out;);
        $crate::process::target::impl_fn_of_args!($trait, $out; A);
        $crate::process::target::impl_fn_of_args!($trait, $out; A, B);
        $crate::process::target::impl_fn_of_args!($trait, $out; A, B, C);
        $crate::process::target::impl_fn_of_args!($trait, $out; A, B, C, D);
        $crate::process::target::impl_fn_of_args!($trait, $out; A, B, C, D, E);
        $crate::process::target::impl_fn_of_args!($trait, $out; A, B, C, D, E, G);
    };
    ($trait:ident, $out:ident; $($arg:ident),*) => {
        impl<Func, Out, $($arg,)*> $trait<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Out + Send + Sync + 'static,
            Out: $out,
        {
            type Output = Out;
            #[allow(non_snake_case)]
            fn call(&self, ($($arg,)*): ($($arg,)*)) -> Out {
                self($($arg),*)
            }
        }
    };
}
pub(crate) use impl_fn_of_args;

impl_fn_of_args!(Target, TargetOutput);

/// A value that runs itself in a child: the Rust form of subclassing `Process` and overriding
/// `run()`. The value is encoded in the parent and decoded in the child.
///
/// ```
/// use procvisor::{Process, Run};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Worker { greeting: String }
///
/// impl Run for Worker {
///     type Output = ();
///     fn run(self) {
///         println!("{} from {}", self.greeting, procvisor::current_process().name());
///     }
/// }
///
/// let p = Process::from_run(Worker { greeting: "hello".into() });
/// # let _ = p;
/// ```
pub trait Run: Serialize + DeserializeOwned + 'static {
    /// What `run` returns.
    type Output: TargetOutput;
    /// The child's work.
    fn run(self) -> Self::Output;
}

/// What a target may return, and the exit code it becomes: `()` exits 0; `Ok(_)` exits 0;
/// `Err(e)` prints `e` on stderr and exits 1 (a panic also exits 1, as an exception does in
/// Python). To exit with another code, call `std::process::exit(n)`: the process still joins
/// its children first.
pub trait TargetOutput {
    /// Reports the outcome (on stderr, for errors) and gives the exit code.
    fn into_exit_code(self) -> i32;
}

impl TargetOutput for () {
    fn into_exit_code(self) -> i32 {
        0
    }
}

impl<T, E: std::fmt::Display> TargetOutput for Result<T, E> {
    fn into_exit_code(self) -> i32 {
        match self {
            Ok(_) => 0,
            Err(e) => {
                eprintln!(
                    "Process {}: error: {e}",
                    crate::runtime::name_for_messages()
                );
                1
            }
        }
    }
}

/// The outcome of an entry trampoline.
pub(crate) enum EntryOutcome {
    /// The payload could not be decoded: the target never ran.
    BadPayload(String),
    /// The target ran and its output became this exit code.
    Finished(i32),
}

/// The type of every entry trampoline: payload and a hook to call right before the target.
pub(crate) type EntryFn = fn(&[u8], &dyn Fn()) -> EntryOutcome;

crate::code_ref::fn_pointer!(EntryFn);

/// The trampoline for a function target.
pub(crate) fn entry<F, Args>(payload: &[u8], before_run: &dyn Fn()) -> EntryOutcome
where
    F: Target<Args>,
    Args: DeserializeOwned,
{
    let args: Args = match procvisor_actors::bootstrap::decode_payload(payload) {
        Ok(args) => args,
        Err(e) => {
            return EntryOutcome::BadPayload(format!("cannot decode the target's arguments: {e}"));
        }
    };
    let target = conjure::<F>();
    before_run();
    EntryOutcome::Finished(target.call(args).into_exit_code())
}

/// The trampoline for a [`Run`] value.
pub(crate) fn run_entry<R: Run>(payload: &[u8], before_run: &dyn Fn()) -> EntryOutcome {
    let runner: R = match procvisor_actors::bootstrap::decode_payload(payload) {
        Ok(r) => r,
        Err(e) => return EntryOutcome::BadPayload(format!("cannot decode the Run value: {e}")),
    };
    before_run();
    EntryOutcome::Finished(runner.run().into_exit_code())
}

/// Makes a value of a zero-sized function type.
pub(crate) fn conjure<F>() -> F {
    const { assert_zero_sized::<F>() };
    // SAFETY: `F` has size zero (checked at compile time above), so it has no bytes that could
    // be invalid; it is a fn item or a closure capturing nothing, which carry no invariants.
    unsafe { std::mem::zeroed() }
}

/// Compile-time check that `F` is zero-sized, with a message that says what to do.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        std::mem::size_of::<F>() == 0,
        "a procvisor target must be a fn item or a closure that captures nothing; \
         pass what it needs through the args tuple"
    );
}
