//! [`Shared`]: a typed view of state in a [`Segment`], kept together with the segment it
//! points into, and encodable as (segment, offset).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use procvisor_actors::shm::{Segment, SharedState};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::SharedError;

/// `&T` at `offset` in `segment`, without re-checking bounds on every access.
pub(crate) struct Shared<T: SharedState> {
    segment: Segment,
    offset: usize,
    ptr: NonNull<T>,
    _t: PhantomData<T>,
}

// SAFETY: `ptr` points into the mapping owned (reference-counted) by `segment`, which lives as
// long as `self`; `T: SharedState` is `Sync` and only mutated through atomics.
unsafe impl<T: SharedState> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: SharedState> Sync for Shared<T> {}

impl<T: SharedState> Shared<T> {
    /// The `T` at `offset` in `segment`; an error (not a panic) if it does not fit there, since
    /// the segment and offset may come from another process's message.
    pub(crate) fn at(segment: Segment, offset: usize) -> Result<Shared<T>, SharedError> {
        let size = std::mem::size_of::<T>();
        let fits = offset.checked_add(size).is_some_and(|e| e <= segment.len());
        let aligned = segment
            .data_ptr()
            .wrapping_add(offset)
            .align_offset(std::mem::align_of::<T>())
            == 0;
        if !fits || !aligned {
            return Err(SharedError::Invalid {
                reason: format!(
                    "no {size}-byte state at offset {offset} of a {}-byte segment",
                    segment.len()
                ),
            });
        }
        let ptr = NonNull::from(segment.state::<T>(offset));
        Ok(Shared {
            segment,
            offset,
            ptr,
            _t: PhantomData,
        })
    }

    /// A fresh segment of `len` bytes with the `T` at offset 0.
    pub(crate) fn create(len: usize) -> Result<Shared<T>, SharedError> {
        let len = len.max(std::mem::size_of::<T>());
        let segment = Segment::create(len)?;
        Shared::at(segment, 0)
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.segment
    }

    pub(crate) fn offset(&self) -> usize {
        self.offset
    }
}

impl<T: SharedState> Deref for Shared<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: checked in bounds and aligned in `at`; the mapping outlives `self`.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: SharedState> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            segment: self.segment.clone(),
            offset: self.offset,
            ptr: self.ptr,
            _t: PhantomData,
        }
    }
}

impl<T: SharedState> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("segment", &self.segment)
            .field("offset", &self.offset)
            .finish()
    }
}

impl<T: SharedState> Serialize for Shared<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.segment, self.offset as u64).serialize(serializer)
    }
}

impl<'de, T: SharedState> Deserialize<'de> for Shared<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let (segment, offset) = <(Segment, u64)>::deserialize(deserializer)?;
        let offset = usize::try_from(offset).map_err(D::Error::custom)?;
        Shared::at(segment, offset).map_err(|e| D::Error::custom(e.to_string()))
    }
}
