//! Task functions: what a pool worker runs, how it finds the function, and what it returns.
//!
//! A task function is a `fn` item or a non-capturing closure, as for
//! [`Process::new`](crate::Process::new), and it crosses into the worker the same way: the pool
//! names a trampoline, [`run_chunk::<F, Args>`](run_chunk), with a
//! [`CodeRef`](crate::code_ref) in each task frame. The worker, running the same executable,
//! follows it and calls the trampoline, which decodes a whole chunk of argument tuples,
//! calls `F` on each inside `catch_unwind`, and encodes the chunk's results in one buffer.
//!
//! `map(f, items)` encodes its items as a sequence of `A`; the trampoline decodes them as a
//! sequence of one-tuples `(A,)`. Both encode identically (a tuple is its fields in order), so
//! `map`, `starmap` and `apply` share one trampoline.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};

use procvisor_actors::wire::codec;
use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::code_ref::CodeRef;
use crate::error::TaskError;
use crate::process::target::conjure;

/// A pool task function: a `fn` item or a closure that captures nothing, of up to six serde
/// arguments (the `Args` tuple), returning a [`TaskOutput`].
///
/// ```
/// fn add(a: u64, b: u64) -> u64 {
///     a + b
/// }
/// fn check(x: i32) -> Result<i32, String> {
///     if x < 0 { Err(format!("{x} is negative")) } else { Ok(x) }
/// }
/// fn takes<F: procvisor::pool::TaskFn<Args>, Args>(_: F) {}
/// takes::<_, (u64, u64)>(add);
/// takes::<_, (i32,)>(check);
/// takes::<_, (String,)>(|s: String| s.len());
/// ```
pub trait TaskFn<Args>: Send + Sync + 'static {
    /// What the function returns.
    type Output: TaskOutput;
    /// Calls the function.
    fn call(&self, args: Args) -> Self::Output;
}

crate::process::target::impl_fn_of_args!(TaskFn, TaskOutput);

/// What a pool task function may return: a plain value (the task's result), or a `Result`,
/// whose `Err` fails that task (and only that task) with [`TaskError::Failed`] carrying the
/// error's `Display`.
///
/// Implemented for `()`, the primitive types, `String`, `Vec`, `Option`, `Box`, tuples of up to
/// four, `HashMap`, `BTreeMap` and `Result<T, E: Display>`. For a type of your own, either
/// return `Result<MyType, E>` or implement it in one line with [`task_output!`](crate::task_output).
pub trait TaskOutput {
    /// The value the caller receives.
    type Value: Serialize + DeserializeOwned + Send + 'static;
    /// The value, or the error message of a failed task.
    fn into_task_result(self) -> Result<Self::Value, String>;
}

impl<T, E> TaskOutput for Result<T, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Display,
{
    type Value = T;
    fn into_task_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Implements [`TaskOutput`] for types of your own, so pool task functions can return them
/// directly (the type must be serde-encodable and `Send + 'static`).
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Stats { mean: f64, max: f64 }
///
/// procvisor::task_output!(Stats);
/// ```
#[macro_export]
macro_rules! task_output {
    ($($t:ty),* $(,)?) => {
        $(
            impl $crate::pool::TaskOutput for $t {
                type Value = $t;
                fn into_task_result(self) -> ::std::result::Result<$t, ::std::string::String> {
                    ::std::result::Result::Ok(self)
                }
            }
        )*
    };
}

task_output!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String
);

macro_rules! generic_output {
    ($(($($p:ident),+) => $t:ty;)*) => {
        $(
            impl<$($p),+> TaskOutput for $t
            where
                $($p: Serialize + DeserializeOwned + Send + 'static,)+
            {
                type Value = $t;
                fn into_task_result(self) -> Result<$t, String> {
                    Ok(self)
                }
            }
        )*
    };
}

generic_output! {
    (T) => Vec<T>;
    (T) => Option<T>;
    (T) => Box<T>;
    (A, B) => (A, B);
    (A, B, C) => (A, B, C);
    (A, B, C, D) => (A, B, C, D);
    (V) => BTreeMap<String, V>;
    (V) => HashMap<String, V>;
}

/// Why one task (one item of a chunk) failed, as the worker reports it on the wire (the
/// caller turns it into a [`TaskError`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum WorkerFailure {
    /// The function returned `Err` (its `Display`).
    Failed(String),
    /// The function panicked (the panic's message).
    Panicked(String),
    /// The result could not be encoded.
    Encode(String),
    /// The arguments could not be decoded in the worker.
    Decode(String),
}

impl From<WorkerFailure> for TaskError {
    fn from(f: WorkerFailure) -> TaskError {
        match f {
            WorkerFailure::Failed(message) => TaskError::Failed { message },
            WorkerFailure::Panicked(message) => TaskError::Panicked { message },
            WorkerFailure::Encode(reason) => TaskError::EncodeResult { reason },
            WorkerFailure::Decode(reason) => TaskError::DecodeArguments { reason },
        }
    }
}

impl WorkerFailure {
    /// Why the pool's initializer failed, in words (the pool's broken reason).
    pub(crate) fn initializer_failure(&self) -> String {
        match self {
            WorkerFailure::Failed(message) => format!("the initializer failed: {message}"),
            WorkerFailure::Panicked(message) => format!("the initializer panicked: {message}"),
            WorkerFailure::Encode(reason) => format!("the initializer failed: {reason}"),
            WorkerFailure::Decode(reason) => {
                format!("cannot decode the initializer's arguments in the worker: {reason}")
            }
        }
    }
}

/// How a chunk's results are laid out after the status byte of a result frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ChunkStatus {
    /// Every item succeeded: a `Vec<Value>`.
    AllOk = 0,
    /// Some item failed: a `Vec<Result<Value, WorkerFailure>>`, one per item.
    Partial = 1,
    /// The chunk as a whole failed: one `WorkerFailure`.
    Failed = 2,
}

impl ChunkStatus {
    pub(crate) fn from_byte(b: u8) -> Option<ChunkStatus> {
        match b {
            0 => Some(ChunkStatus::AllOk),
            1 => Some(ChunkStatus::Partial),
            2 => Some(ChunkStatus::Failed),
            _ => None,
        }
    }
}

/// A chunk trampoline: decodes the argument tuples in `input`, runs the function on each, and
/// appends a status byte and the encoded results to `out`.
pub(crate) type ChunkFn = fn(input: &[u8], out: &mut Vec<u8>);

/// An initializer trampoline: decodes the arguments and runs the initializer.
pub(crate) type InitFn = fn(input: &[u8]) -> Result<(), WorkerFailure>;

crate::code_ref::fn_pointer!(ChunkFn, InitFn);

/// The chunk trampoline for `F` called with argument tuples `Args`.
///
/// The function runs on each argument tuple as it is decoded (no vector of arguments is built):
/// see [`Running`]. An undecodable chunk fails as a whole; the items before the bad one have
/// run by then (the pool encoded the chunk from the same types, so this means a bug, not bad
/// user input).
pub(crate) fn run_chunk<F, Args>(input: &[u8], out: &mut Vec<u8>)
where
    F: TaskFn<Args>,
    Args: DeserializeOwned,
{
    match codec::decode::<Running<F, Args>>(input) {
        Ok(Running(Ran::AllOk(values), _)) => write_results(out, ChunkStatus::AllOk, &values),
        Ok(Running(Ran::Partial(each), _)) => write_results(out, ChunkStatus::Partial, &each),
        Err(e) => {
            write_failed(out, &WorkerFailure::Decode(e.to_string()));
        }
    }
}

/// The value `F` gives for `Args`.
type ValueOf<F, Args> = <<F as TaskFn<Args>>::Output as TaskOutput>::Value;

/// A chunk's results, made while decoding it: every value, or (once an item failed) one outcome
/// per item.
enum Ran<V> {
    AllOk(Vec<V>),
    Partial(Vec<Result<V, WorkerFailure>>),
}

/// "Decoding" a chunk runs `F` on each argument tuple as soon as it is decoded.
struct Running<F: TaskFn<Args>, Args>(Ran<ValueOf<F, Args>>, PhantomData<fn() -> F>);

impl<'de, F, Args> Deserialize<'de> for Running<F, Args>
where
    F: TaskFn<Args>,
    Args: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ran = deserializer.deserialize_seq(RunVisitor::<F, Args>(PhantomData))?;
        Ok(Running(ran, PhantomData))
    }
}

struct RunVisitor<F, Args>(PhantomData<fn() -> (F, Args)>);

impl<'de, F, Args> Visitor<'de> for RunVisitor<F, Args>
where
    F: TaskFn<Args>,
    Args: Deserialize<'de>,
{
    type Value = Ran<ValueOf<F, Args>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of argument tuples")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let f = conjure::<F>();
        // The hint is the chunk's length as encoded; cap what is reserved up front anyway.
        let mut ok = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 22));
        while let Some(args) = seq.next_element::<Args>()? {
            match call(&f, args) {
                Ok(value) => ok.push(value),
                Err(e) => {
                    // From here on every item gets its own outcome.
                    let mut each: Vec<Result<_, WorkerFailure>> = ok.into_iter().map(Ok).collect();
                    each.push(Err(e));
                    while let Some(args) = seq.next_element::<Args>()? {
                        each.push(call(&f, args));
                    }
                    return Ok(Ran::Partial(each));
                }
            }
        }
        Ok(Ran::AllOk(ok))
    }
}

/// Calls `f(args)`, turning an `Err` or a panic into a [`WorkerFailure`].
fn call<F, Args>(f: &F, args: Args) -> Result<<F::Output as TaskOutput>::Value, WorkerFailure>
where
    F: TaskFn<Args>,
{
    let outcome = crate::process::child_main::with_panics_reported_elsewhere(|| {
        catch_unwind(AssertUnwindSafe(|| f.call(args).into_task_result()))
    });
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(WorkerFailure::Failed(message)),
        Err(panic) => Err(WorkerFailure::Panicked(panic_message(panic.as_ref()))),
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic whose payload is not a string)".to_string()
    }
}

/// Appends `status` and `results`; a result that cannot be encoded fails the chunk instead.
fn write_results<T: Serialize + ?Sized>(out: &mut Vec<u8>, status: ChunkStatus, results: &T) {
    let start = out.len();
    out.push(status as u8);
    if let Err(e) = codec::encode_into(results, out) {
        out.truncate(start);
        write_failed(out, &WorkerFailure::Encode(e.to_string()));
    }
}

/// Appends a whole-chunk failure.
pub(crate) fn write_failed(out: &mut Vec<u8>, error: &WorkerFailure) {
    out.push(ChunkStatus::Failed as u8);
    if codec::encode_into(error, out).is_err() {
        // A WorkerFailure is strings only; this cannot fail, but never leave a frame half-written.
        out.truncate(out.len() - 1);
        out.push(ChunkStatus::Failed as u8);
        out.push(0);
        out.push(0);
    }
}

/// The initializer trampoline for `F` called with `Args`.
pub(crate) fn run_init<F, Args>(input: &[u8]) -> Result<(), WorkerFailure>
where
    F: TaskFn<Args>,
    Args: DeserializeOwned,
{
    let args: Args = codec::decode(input).map_err(|e| WorkerFailure::Decode(e.to_string()))?;
    call(&conjure::<F>(), args).map(|_| ())
}

/// The chunk trampoline for `F` and `Args`, named for a worker.
pub(crate) fn chunk_ref<F, Args>() -> CodeRef<ChunkFn>
where
    F: TaskFn<Args>,
    Args: DeserializeOwned,
{
    const { crate::process::target::assert_zero_sized::<F>() };
    CodeRef::of(run_chunk::<F, Args> as ChunkFn)
}

/// The initializer trampoline for `F` and `Args`, named for a worker.
pub(crate) fn init_ref<F, Args>() -> CodeRef<InitFn>
where
    F: TaskFn<Args>,
    Args: DeserializeOwned,
{
    const { crate::process::target::assert_zero_sized::<F>() };
    CodeRef::of(run_init::<F, Args> as InitFn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: u64) -> u64 {
        x * x
    }

    fn picky(x: u64) -> Result<u64, String> {
        if x == 2 {
            return Err("two".into());
        }
        if x == 3 {
            panic!("three");
        }
        Ok(x)
    }

    /// Runs the chunk trampoline of the function item `f` on `items`.
    fn run<F, Args>(_f: F, items: &[u64]) -> Vec<u8>
    where
        F: TaskFn<Args>,
        Args: DeserializeOwned,
    {
        let input = codec::encode(items).unwrap();
        let mut out = vec![7]; // what the frame header left: must be kept
        run_chunk::<F, Args>(&input, &mut out);
        assert_eq!(out[0], 7);
        out.remove(0);
        out
    }

    #[test]
    fn an_all_ok_chunk_is_a_plain_vec() {
        let out = run(square, &[1, 2, 3]);
        assert_eq!(ChunkStatus::from_byte(out[0]), Some(ChunkStatus::AllOk));
        assert_eq!(codec::decode::<Vec<u64>>(&out[1..]).unwrap(), [1, 4, 9]);
    }

    #[test]
    fn failures_and_panics_are_per_item() {
        let out = run(picky, &[1, 2, 3, 4]);
        assert_eq!(ChunkStatus::from_byte(out[0]), Some(ChunkStatus::Partial));
        let each: Vec<Result<u64, WorkerFailure>> = codec::decode(&out[1..]).unwrap();
        assert_eq!(
            each,
            [
                Ok(1),
                Err(WorkerFailure::Failed("two".into())),
                Err(WorkerFailure::Panicked("three".into())),
                Ok(4)
            ]
        );
    }

    #[test]
    fn undecodable_arguments_fail_the_chunk() {
        fn length(s: String) -> usize {
            s.len()
        }
        fn raw<F: TaskFn<(String,)>>(_f: F, input: &[u8]) -> Vec<u8>
where {
            let mut out = Vec::new();
            run_chunk::<F, (String,)>(input, &mut out);
            out
        }
        // One string whose bytes are not UTF-8.
        let out = raw(length, &[1, 1, 0xff]);
        assert_eq!(ChunkStatus::from_byte(out[0]), Some(ChunkStatus::Failed));
        let e: WorkerFailure = codec::decode(&out[1..]).unwrap();
        assert!(matches!(e, WorkerFailure::Decode(_)), "{e:?}");
    }

    #[test]
    fn trampolines_round_trip_through_code_refs() {
        fn named<F: TaskFn<(u64,)>>(_f: F) -> CodeRef<ChunkFn> {
            chunk_ref::<F, (u64,)>()
        }
        let f = named(square).resolve().unwrap();
        let mut out = Vec::new();
        f(&codec::encode(&[5u64][..]).unwrap(), &mut out);
        assert_eq!(codec::decode::<Vec<u64>>(&out[1..]).unwrap(), [25]);
    }
}
