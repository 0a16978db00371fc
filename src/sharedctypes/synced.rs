//! [`Value`] and [`Array`]: shared elements with a lock, and [`synchronized`] / [`copy`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::element::{Shareable, TypeCode};
use super::raw::{DATA_AFTER_LOCK, RawArray, RawValue};
use crate::error::SharedError;
use crate::synchronize::{Acquire, AnyLock, Lock, RLOCK_STATE, RLock};

/// How a [`Value`] or an [`Array`] is synchronized: Python's `lock=` argument.
///
/// A given [`Lock`], [`RLock`] or [`AnyLock`] converts into [`LockSpec::Given`], so it can be
/// passed as it is:
///
/// ```
/// use procvisor::{Array, LockSpec, RLock, Value};
///
/// let own = Value::with_lock(0i32, LockSpec::Own)?; // lock=True (what Value::new does)
/// let raw = Value::with_lock(0i32, LockSpec::None)?; // lock=False
/// let shared = RLock::new()?;
/// let a = Array::<u8>::with_lock(4, shared.clone())?; // lock=shared
/// let b = Array::<u8>::with_lock(4, shared)?; // the same lock guards both
/// assert!(own.as_lock().is_some() && raw.as_lock().is_none());
/// # let _ = (a, b);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum LockSpec {
    /// `lock=True`: a new RLock of its own (kept in the same shared segment as the data).
    Own,
    /// `lock=False`: no lock; access is not synchronized.
    None,
    /// `lock=some_lock`: this [`Lock`] or [`RLock`] (which may also guard other objects).
    Given(AnyLock),
}

impl From<Lock> for LockSpec {
    fn from(l: Lock) -> Self {
        LockSpec::Given(AnyLock::Lock(l))
    }
}

impl From<RLock> for LockSpec {
    fn from(l: RLock) -> Self {
        LockSpec::Given(AnyLock::RLock(l))
    }
}

impl From<AnyLock> for LockSpec {
    fn from(l: AnyLock) -> Self {
        LockSpec::Given(l)
    }
}

/// Allocates `len` elements for `spec`: the own RLock shares the data's segment.
fn allocate<T: Shareable>(
    len: usize,
    spec: LockSpec,
) -> Result<(RawArray<T>, Option<AnyLock>), SharedError> {
    match spec {
        LockSpec::Own => {
            const { assert!(RLOCK_STATE <= DATA_AFTER_LOCK) };
            let raw = RawArray::alloc(len, DATA_AFTER_LOCK)?;
            let lock = RLock::at(raw.segment().clone(), 0)?;
            Ok((raw, Some(AnyLock::RLock(lock))))
        }
        LockSpec::None => Ok((RawArray::alloc(len, 0)?, None)),
        LockSpec::Given(lock) => Ok((RawArray::alloc(len, 0)?, Some(lock))),
    }
}

/// Runs `f` with `lock` held (if any).
#[inline]
fn locked<R>(lock: &Option<AnyLock>, f: impl FnOnce() -> R) -> R {
    match lock {
        None => f(),
        Some(AnyLock::RLock(l)) => {
            let _guard = l.lock();
            f()
        }
        Some(AnyLock::Lock(l)) => {
            let _guard = l.lock();
            f()
        }
    }
}

/// A shared array with a lock: Python's `multiprocessing.Array`.
///
/// Each element access takes the lock (an RLock of its own by default); use
/// [`with_lock_held`](Self::with_lock_held) or [`update`](Self::update) to hold it across
/// several.
///
/// ```
/// let arr = procvisor::Array::from_slice(&[0i32, 1, 2])?;
/// arr.update(2, |x| -x)?;
/// assert_eq!(arr.to_vec(), [0, 1, -2]);
/// let total: i32 = arr.with_lock_held(|raw| raw.to_vec().iter().sum());
/// assert_eq!(total, -1);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Array<T: Shareable> {
    raw: RawArray<T>,
    lock: Option<AnyLock>,
}

impl<T: Shareable + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array({:?})", self.to_vec())
    }
}

impl<T: Shareable> Array<T> {
    /// `len` zeroed elements with a lock of their own (Python's `Array(type, len)`).
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the memory; [`SharedError::OutOfRange`] if
    /// `len` elements do not fit in memory, or `T` is aligned to more than 64 bytes.
    pub fn new(len: usize) -> Result<Array<T>, SharedError> {
        Array::with_lock(len, LockSpec::Own)
    }

    /// `len` zeroed elements, synchronized as `lock` says ([`LockSpec::Own`],
    /// [`LockSpec::None`], or a given [`Lock`] / [`RLock`]): Python's
    /// `Array(type, len, lock=…)`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_lock(len: usize, lock: impl Into<LockSpec>) -> Result<Array<T>, SharedError> {
        let (raw, lock) = allocate(len, lock.into())?;
        Ok(Array { raw, lock })
    }

    /// A copy of `init` with a lock of its own (Python's `Array(type, initializer)`).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_slice(init: &[T]) -> Result<Array<T>, SharedError> {
        Array::from_slice_with_lock(init, LockSpec::Own)
    }

    /// A copy of `init`, synchronized as `lock` says (as in [`with_lock`](Self::with_lock)).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_slice_with_lock(
        init: &[T],
        lock: impl Into<LockSpec>,
    ) -> Result<Array<T>, SharedError> {
        let (raw, lock) = allocate(init.len(), lock.into())?;
        raw.write_slice(0, init)?;
        Ok(Array { raw, lock })
    }

    /// Python's `Array(typecode, initializer, lock=…)`; `typecode` must describe `T`.
    ///
    /// ```
    /// use procvisor::{Array, LockSpec};
    ///
    /// let a = Array::from_typecode('i', &[1, 2, 3], LockSpec::Own)?; // Array('i', [1, 2, 3])
    /// assert_eq!(a.to_vec(), [1i32, 2, 3]);
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SharedError::UnknownTypeCode`], [`SharedError::TypeCodeMismatch`], or as
    /// [`new`](Self::new).
    pub fn from_typecode(
        typecode: char,
        init: &[T],
        lock: impl Into<LockSpec>,
    ) -> Result<Array<T>, SharedError> {
        TypeCode::check::<T>(typecode)?;
        Array::from_slice_with_lock(init, lock)
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the array has no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Element `index`, read under the lock.
    ///
    /// # Errors
    ///
    /// [`SharedError::IndexOutOfRange`] past the end.
    #[inline]
    pub fn get(&self, index: usize) -> Result<T, SharedError> {
        locked(&self.lock, || self.raw.get(index))
    }

    /// Sets element `index` under the lock.
    ///
    /// # Errors
    ///
    /// [`SharedError::IndexOutOfRange`] past the end.
    #[inline]
    pub fn set(&self, index: usize, value: T) -> Result<(), SharedError> {
        locked(&self.lock, || self.raw.set(index, value))
    }

    /// Replaces element `index` by `f(element)` with the lock held throughout.
    ///
    /// # Errors
    ///
    /// [`SharedError::IndexOutOfRange`] past the end.
    pub fn update(&self, index: usize, f: impl FnOnce(T) -> T) -> Result<(), SharedError> {
        locked(&self.lock, || {
            let v = self.raw.get(index)?;
            self.raw.set(index, f(v))
        })
    }

    /// Every element, read under the lock (Python's `arr[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        locked(&self.lock, || self.raw.to_vec())
    }

    /// Writes `values` from `start` on, under the lock.
    ///
    /// # Errors
    ///
    /// [`SharedError::LengthMismatch`] if they do not fit.
    pub fn write_slice(&self, start: usize, values: &[T]) -> Result<(), SharedError> {
        locked(&self.lock, || self.raw.write_slice(start, values))
    }

    /// Runs `f` on the raw array with the lock held throughout (Python's
    /// `with arr.get_lock(): ...`).
    pub fn with_lock_held<R>(&self, f: impl FnOnce(&RawArray<T>) -> R) -> R {
        locked(&self.lock, || f(&self.raw))
    }

    /// The lock (Python's `get_lock()`); `None` for an array made with [`LockSpec::None`].
    #[doc(alias = "get_lock")]
    pub fn as_lock(&self) -> Option<&AnyLock> {
        self.lock.as_ref()
    }

    /// The unsynchronized array (Python's `get_obj()`), the same shared memory.
    #[doc(alias = "get_obj")]
    pub fn as_raw(&self) -> &RawArray<T> {
        &self.raw
    }
}

/// A shared value with a lock: Python's `multiprocessing.Value`.
///
/// ```
/// let n = procvisor::Value::new(7i32)?; // like Value('i', 7)
/// n.update(|v| v * v);
/// assert_eq!(n.get(), 49);
/// let x = procvisor::Value::from_typecode('d', 1.0 / 3.0, procvisor::LockSpec::None)?; // lock=False
/// assert!(x.as_lock().is_none());
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Value<T: Shareable> {
    raw: RawValue<T>,
    lock: Option<AnyLock>,
}

impl<T: Shareable + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({:?})", self.get())
    }
}

impl<T: Shareable> Value<T> {
    /// `init` with a lock of its own (Python's `Value(type, init)`).
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the memory; [`SharedError::OutOfRange`] if `T`
    /// is aligned to more than 64 bytes.
    pub fn new(init: T) -> Result<Value<T>, SharedError> {
        Value::with_lock(init, LockSpec::Own)
    }

    /// `init`, synchronized as `lock` says ([`LockSpec::Own`], [`LockSpec::None`], or a given
    /// [`Lock`] / [`RLock`]): Python's `Value(type, init, lock=…)`.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_lock(init: T, lock: impl Into<LockSpec>) -> Result<Value<T>, SharedError> {
        let (cell, lock) = allocate(1, lock.into())?;
        let raw = RawValue::from_cell(cell)?;
        raw.set(init);
        Ok(Value { raw, lock })
    }

    /// Python's `Value(typecode, init, lock=...)`; `typecode` must describe `T`.
    ///
    /// # Errors
    ///
    /// [`SharedError::UnknownTypeCode`], [`SharedError::TypeCodeMismatch`], or as
    /// [`new`](Self::new).
    pub fn from_typecode(
        typecode: char,
        init: T,
        lock: impl Into<LockSpec>,
    ) -> Result<Value<T>, SharedError> {
        TypeCode::check::<T>(typecode)?;
        Value::with_lock(init, lock)
    }

    /// The value, read under the lock (Python's `.value`).
    #[doc(alias = "value")]
    #[inline]
    pub fn get(&self) -> T {
        locked(&self.lock, || self.raw.get())
    }

    /// Replaces the value under the lock (Python's `.value = v`).
    #[doc(alias = "value")]
    #[inline]
    pub fn set(&self, value: T) {
        locked(&self.lock, || self.raw.set(value))
    }

    /// Replaces the value by `f(value)` with the lock held throughout (Python's
    /// `with v.get_lock(): v.value = f(v.value)`); returns the new value.
    pub fn update(&self, f: impl FnOnce(T) -> T) -> T {
        locked(&self.lock, || {
            let v = f(self.raw.get());
            self.raw.set(v);
            v
        })
    }

    /// The lock (Python's `get_lock()`); `None` for a value made with [`LockSpec::None`].
    #[doc(alias = "get_lock")]
    pub fn as_lock(&self) -> Option<&AnyLock> {
        self.lock.as_ref()
    }

    /// The unsynchronized value (Python's `get_obj()`), the same shared memory.
    #[doc(alias = "get_obj")]
    pub fn as_raw(&self) -> &RawValue<T> {
        &self.raw
    }
}

/// A shared object that [`synchronized`] can wrap and [`copy`] can copy: [`RawValue`] and
/// [`RawArray`].
pub trait SharedObject: Sized + super::element::sealed::Sealed {
    /// The synchronized wrapper ([`Value`] or [`Array`]).
    type Synchronized;

    /// Wraps `self` with `lock`.
    #[doc(hidden)]
    fn wrap(self, lock: AnyLock) -> Self::Synchronized;

    /// A copy in fresh shared memory.
    #[doc(hidden)]
    fn duplicate(&self) -> Result<Self, SharedError>;
}

impl<T: Shareable> super::element::sealed::Sealed for RawValue<T> {}
impl<T: Shareable> super::element::sealed::Sealed for RawArray<T> {}

impl<T: Shareable> SharedObject for RawValue<T> {
    type Synchronized = Value<T>;

    fn wrap(self, lock: AnyLock) -> Value<T> {
        Value {
            raw: self,
            lock: Some(lock),
        }
    }

    fn duplicate(&self) -> Result<Self, SharedError> {
        RawValue::new(self.get())
    }
}

impl<T: Shareable> SharedObject for RawArray<T> {
    type Synchronized = Array<T>;

    fn wrap(self, lock: AnyLock) -> Array<T> {
        Array {
            raw: self,
            lock: Some(lock),
        }
    }

    fn duplicate(&self) -> Result<Self, SharedError> {
        RawArray::from_slice(&self.to_vec())
    }
}

/// Python's `synchronized(obj)`: a process-safe wrapper of `obj` (the same shared memory)
/// with a new RLock of its own. [`synchronized_with`] uses a given lock.
///
/// ```
/// let raw = procvisor::RawArray::from_slice(&[1u8, 2, 3])?;
/// let arr = procvisor::synchronized(raw.clone())?;
/// arr.set(0, 9)?;
/// assert_eq!(raw.get(0)?, 9);
/// assert!(arr.as_lock().is_some());
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`SharedError::Os`] if the new lock's shared memory is refused.
pub fn synchronized<O: SharedObject>(obj: O) -> Result<O::Synchronized, SharedError> {
    Ok(obj.wrap(AnyLock::RLock(RLock::new()?)))
}

/// Python's `synchronized(obj, lock)`: a process-safe wrapper of `obj` (the same shared
/// memory) using `lock` (a [`Lock`], an [`RLock`] or an [`AnyLock`], which may guard other
/// objects too).
///
/// ```
/// let lock = procvisor::Lock::new()?;
/// let a = procvisor::synchronized_with(procvisor::RawValue::new(1u32)?, lock.clone());
/// let b = procvisor::synchronized_with(procvisor::RawValue::new(2u32)?, lock);
/// assert_eq!(a.get() + b.get(), 3);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[doc(alias = "synchronized")]
pub fn synchronized_with<O: SharedObject>(obj: O, lock: impl Into<AnyLock>) -> O::Synchronized {
    obj.wrap(lock.into())
}

/// Python's `copy(obj)`: a copy of `obj` in fresh shared memory.
///
/// ```
/// let a = procvisor::RawValue::new(5u64)?;
/// let b = procvisor::sharedctypes::copy(&a)?;
/// b.set(6);
/// assert_eq!((a.get(), b.get()), (5, 6));
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Errors
///
/// [`SharedError::Os`] if the OS refuses the memory.
pub fn copy<O: SharedObject>(obj: &O) -> Result<O, SharedError> {
    obj.duplicate()
}
