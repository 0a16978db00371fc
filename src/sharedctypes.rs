//! Shared memory objects: Python's `Value`, `Array`, `RawValue`, `RawArray`, `copy` and
//! `synchronized` (`multiprocessing.sharedctypes`).
//!
//! The elements live in an anonymous memfd mapping shared with every process holding a handle:
//! pass a handle in a child's arguments or send it through a [`Connection`](crate::Connection),
//! and writes on either side are seen on the other. Nothing is left in `/dev/shm`: the memory
//! disappears with the last process that maps it.
//!
//! Element types are the `array` module's typecodes (`'b' 'B' 'h' 'H' 'i' 'I' 'l' 'L' 'q' 'Q'
//! 'f' 'd' 'c'`, see [`TypeCode`]) as Rust types, and `#[repr(C)]` plain structs that implement
//! [`Shareable`].
//!
//! | Python | procvisor |
//! |---|---|
//! | `Value('d', 0.0)` | `Value::new(0.0f64)` or `Value::from_typecode('d', 0.0, LockSpec::Own)` |
//! | `Value('i', 7, lock=False)` | `Value::with_lock(7i32, LockSpec::None)` |
//! | `Array('i', range(10))` | `Array::from_slice(&(0..10).collect::<Vec<i32>>())` |
//! | `Array('c', b'hi', lock=lock)` | `Array::from_bytes(b"hi", lock.clone())` |
//! | `RawArray('h', 7)` | `RawArray::<i16>::new(7)` |
//! | `RawValue(MyStruct, 4, 6)` | `RawValue::new(MyStruct { a: 4, b: 6 })` |
//! | `n.value`, `n.value = 1` | `n.get()`, `n.set(1)` |
//! | `with n.get_lock(): n.value += 1` | `n.update(\|v\| v + 1)` |
//! | `n.get_lock()`, `n.get_obj()` | `n.as_lock()`, `n.as_raw()` |
//! | `a[i]`, `a[i] = x`, `a[:]` | `a.get(i)?`, `a.set(i, x)?`, `a.to_vec()` |
//! | `synchronized(obj)`, `synchronized(obj, lock)` | `synchronized(obj)?`, `synchronized_with(obj, lock)` |
//!
//! Every fallible call fails with a [`SharedError`](crate::error::SharedError) (which
//! converts into [`Error`](crate::Error)).
//!
//! ```
//! use procvisor::{Array, Value};
//!
//! let num = Value::new(0.0f64)?;
//! let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
//! num.set(3.1415927);
//! for i in 0..arr.len() {
//!     arr.update(i, |x| -x)?;
//! }
//! assert_eq!(num.get(), 3.1415927);
//! assert_eq!(arr.to_vec(), [0, -1, -2, -3, -4, -5, -6, -7, -8, -9]);
//! # Ok::<(), procvisor::Error>(())
//! ```

mod chars;
mod element;
mod raw;
mod synced;

pub use element::{Char, Shareable, TypeCode};
pub use raw::{RawArray, RawValue};
pub use synced::{Array, LockSpec, SharedObject, Value, copy, synchronized, synchronized_with};
