//! [`RawArray`] and [`RawValue`]: elements in shared memory, without a lock.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;

use procvisor_actors::shm::Segment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::element::{Shareable, TypeCode};
use crate::error::{SharedError, SharedSetting};

/// Where data starts when the segment also holds the object's own lock.
pub(crate) const DATA_AFTER_LOCK: usize = 64;

/// An array of `T` in shared memory, without a lock (Python's `RawArray`).
///
/// Reads and writes of elements are plain (volatile) copies: a reader in another process may
/// see an element half-written. Use [`Array`](super::Array) for synchronized access.
///
/// ```
/// let arr = procvisor::RawArray::from_slice(&[9i32, 2, 8])?;
/// arr.set(1, 5)?;
/// assert_eq!(arr.to_vec(), [9, 5, 8]);
/// assert!(arr.get(3).is_err());
/// # Ok::<(), procvisor::Error>(())
/// ```
pub struct RawArray<T: Shareable> {
    segment: Segment,
    offset: usize,
    len: usize,
    ptr: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: `ptr` points into the mapping kept alive by `segment`; elements are `Copy + Send +
// Sync` plain data only copied in and out with volatile accesses.
unsafe impl<T: Shareable> Send for RawArray<T> {}
// SAFETY: as above.
unsafe impl<T: Shareable> Sync for RawArray<T> {}

impl<T: Shareable> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            segment: self.segment.clone(),
            offset: self.offset,
            len: self.len,
            ptr: self.ptr,
            _t: PhantomData,
        }
    }
}

impl<T: Shareable + fmt::Debug> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_vec()).finish()
    }
}

impl<T: Shareable> RawArray<T> {
    /// `len` zeroed elements in a fresh shared segment.
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the memory; [`SharedError::OutOfRange`] if
    /// `len` elements do not fit in memory, or `T` is aligned to more than 64 bytes.
    pub fn new(len: usize) -> Result<RawArray<T>, SharedError> {
        RawArray::alloc(len, 0)
    }

    /// A copy of `init` in a fresh shared segment.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn from_slice(init: &[T]) -> Result<RawArray<T>, SharedError> {
        let arr = RawArray::alloc(init.len(), 0)?;
        arr.write_slice(0, init)?;
        Ok(arr)
    }

    /// Python's `RawArray(typecode, size)`: `len` zeroed elements; `typecode` must describe
    /// `T` (e.g. `'i'` for `i32`).
    ///
    /// # Errors
    ///
    /// [`SharedError::UnknownTypeCode`], [`SharedError::TypeCodeMismatch`], or as
    /// [`new`](Self::new).
    pub fn from_typecode(typecode: char, len: usize) -> Result<RawArray<T>, SharedError> {
        TypeCode::check::<T>(typecode)?;
        RawArray::new(len)
    }

    /// `len` zeroed elements at `data_offset` of a fresh segment (after the lock room, when the
    /// object has its own lock).
    pub(crate) fn alloc(len: usize, data_offset: usize) -> Result<RawArray<T>, SharedError> {
        let align = std::mem::align_of::<T>();
        if align > DATA_AFTER_LOCK {
            return Err(SharedError::OutOfRange {
                setting: SharedSetting::ElementAlignment,
                value: align as u64,
                min: 1,
                max: DATA_AFTER_LOCK as u64,
            });
        }
        let size = std::mem::size_of::<T>().max(1);
        let max_len = (isize::MAX as usize - data_offset) / size;
        if len > max_len {
            return Err(SharedError::OutOfRange {
                setting: SharedSetting::ArrayLength,
                value: len as u64,
                min: 0,
                max: max_len as u64,
            });
        }
        let segment = Segment::create(len * std::mem::size_of::<T>() + data_offset)?;
        RawArray::at(segment, data_offset, len)
    }

    /// The array of `len` elements at `offset` in `segment`, checked to fit.
    pub(crate) fn at(
        segment: Segment,
        offset: usize,
        len: usize,
    ) -> Result<RawArray<T>, SharedError> {
        let size = std::mem::size_of::<T>();
        let fits = len
            .checked_mul(size)
            .and_then(|b| b.checked_add(offset))
            .is_some_and(|end| end <= segment.len());
        let ptr = segment.data_ptr().wrapping_add(offset).cast::<T>();
        if !fits || !ptr.is_aligned() {
            return Err(SharedError::Invalid {
                reason: format!(
                    "no array of {len} {size}-byte elements at offset {offset} of a {}-byte \
                     segment",
                    segment.len()
                ),
            });
        }
        let ptr = NonNull::new(ptr).ok_or_else(|| SharedError::Invalid {
            reason: "the segment's mapping is null".into(),
        })?;
        Ok(RawArray {
            segment,
            offset,
            len,
            ptr,
            _t: PhantomData,
        })
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `index` (Python's `arr[index]`).
    ///
    /// # Errors
    ///
    /// [`SharedError::IndexOutOfRange`] past the end.
    #[inline]
    pub fn get(&self, index: usize) -> Result<T, SharedError> {
        if index >= self.len {
            return Err(self.out_of_range(index));
        }
        // SAFETY: `index < len`, and `at` checked that `len` elements fit the live mapping at
        // an aligned address; any bit pattern is a valid `T` (Shareable). Volatile: the memory
        // is changed by other processes behind the compiler's back.
        Ok(unsafe { self.ptr.as_ptr().add(index).read_volatile() })
    }

    /// Sets element `index` (Python's `arr[index] = value`).
    ///
    /// # Errors
    ///
    /// [`SharedError::IndexOutOfRange`] past the end.
    #[inline]
    pub fn set(&self, index: usize, value: T) -> Result<(), SharedError> {
        if index >= self.len {
            return Err(self.out_of_range(index));
        }
        // SAFETY: as in `get`; `T` is plain data, so overwriting drops nothing.
        unsafe { self.ptr.as_ptr().add(index).write_volatile(value) };
        Ok(())
    }

    #[cold]
    fn out_of_range(&self, index: usize) -> SharedError {
        SharedError::IndexOutOfRange {
            index,
            len: self.len,
        }
    }

    /// A copy of every element (Python's `arr[:]`).
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len)
            // SAFETY: every index is below `len`; see `get`.
            .map(|i| unsafe { self.ptr.as_ptr().add(i).read_volatile() })
            .collect()
    }

    /// Writes `values` from element `start` on (Python's `arr[start:start + n] = values`).
    ///
    /// # Errors
    ///
    /// [`SharedError::LengthMismatch`] if they do not fit.
    pub fn write_slice(&self, start: usize, values: &[T]) -> Result<(), SharedError> {
        if start
            .checked_add(values.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(SharedError::LengthMismatch {
                got: values.len(),
                len: self.len,
                start,
            });
        }
        for (i, v) in values.iter().enumerate() {
            // SAFETY: `start + i < len` (checked above); see `set`.
            unsafe { self.ptr.as_ptr().add(start + i).write_volatile(*v) };
        }
        Ok(())
    }

    /// Whether two handles are the same shared memory.
    pub fn same(&self, other: &RawArray<T>) -> bool {
        self.segment.same(&other.segment) && self.offset == other.offset
    }
}

/// A value of `T` in shared memory, without a lock (Python's `RawValue`).
///
/// ```
/// let x = procvisor::RawValue::new(2.4f64)?;
/// x.set(x.get() * 2.0);
/// assert_eq!(x.get(), 4.8);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RawValue<T: Shareable> {
    cell: RawArray<T>,
}

impl<T: Shareable + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: Shareable> RawValue<T> {
    /// `init` in a fresh shared segment.
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the memory; [`SharedError::OutOfRange`] if `T`
    /// is aligned to more than 64 bytes.
    pub fn new(init: T) -> Result<RawValue<T>, SharedError> {
        RawValue::from_cell(RawArray::from_slice(&[init])?)
    }

    /// Python's `RawValue(typecode, init)`; `typecode` must describe `T`.
    ///
    /// # Errors
    ///
    /// [`SharedError::UnknownTypeCode`], [`SharedError::TypeCodeMismatch`], or as
    /// [`new`](Self::new).
    pub fn from_typecode(typecode: char, init: T) -> Result<RawValue<T>, SharedError> {
        TypeCode::check::<T>(typecode)?;
        RawValue::new(init)
    }

    pub(crate) fn from_cell(cell: RawArray<T>) -> Result<RawValue<T>, SharedError> {
        if cell.len() != 1 {
            return Err(SharedError::Invalid {
                reason: format!("a value is one element, not {}", cell.len()),
            });
        }
        Ok(RawValue { cell })
    }

    /// The value (Python's `.value`).
    #[doc(alias = "value")]
    #[inline]
    pub fn get(&self) -> T {
        // SAFETY: a RawValue's cell has exactly one element (checked in `from_cell`); see
        // RawArray::get.
        unsafe { self.cell.ptr.as_ptr().read_volatile() }
    }

    /// Replaces the value (Python's `.value = v`).
    #[doc(alias = "value")]
    #[inline]
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`.
        unsafe { self.cell.ptr.as_ptr().write_volatile(value) }
    }
}

#[derive(Serialize, Deserialize)]
struct RawArrayRepr {
    segment: Segment,
    offset: u64,
    len: u64,
    elem_size: u32,
    elem_align: u32,
    typename: String,
}

impl<T: Shareable> Serialize for RawArray<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        RawArrayRepr {
            segment: self.segment.clone(),
            offset: self.offset as u64,
            len: self.len as u64,
            elem_size: std::mem::size_of::<T>() as u32,
            elem_align: std::mem::align_of::<T>() as u32,
            typename: std::any::type_name::<T>().to_string(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: Shareable> Deserialize<'de> for RawArray<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let repr = RawArrayRepr::deserialize(deserializer)?;
        if repr.elem_size as usize != std::mem::size_of::<T>()
            || repr.elem_align as usize != std::mem::align_of::<T>()
        {
            return Err(D::Error::custom(format!(
                "a shared array of {} ({} bytes) cannot be received as one of {} ({} bytes)",
                repr.typename,
                repr.elem_size,
                std::any::type_name::<T>(),
                std::mem::size_of::<T>()
            )));
        }
        let (Ok(offset), Ok(len)) = (usize::try_from(repr.offset), usize::try_from(repr.len))
        else {
            return Err(D::Error::custom("shared array description out of range"));
        };
        RawArray::at(repr.segment, offset, len).map_err(|e| D::Error::custom(e.to_string()))
    }
}
