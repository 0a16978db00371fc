//! String access to char arrays (typecode `'c'`), as ctypes gives `c_char` arrays.

use super::element::Char;
use super::raw::RawArray;
use super::synced::{Array, LockSpec};
use crate::error::SharedError;

impl RawArray<Char> {
    /// A char array holding `bytes` (Python's `RawArray('c', b"...")`).
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<RawArray<Char>, SharedError> {
        let chars: Vec<Char> = bytes.iter().map(|&b| Char(b)).collect();
        RawArray::from_slice(&chars)
    }

    /// The bytes up to the first NUL (ctypes' `.value`).
    pub fn value(&self) -> Vec<u8> {
        let mut out = self.raw();
        if let Some(nul) = out.iter().position(|&b| b == 0) {
            out.truncate(nul);
        }
        out
    }

    /// Every byte, NULs included (ctypes' `.raw`).
    pub fn raw(&self) -> Vec<u8> {
        self.to_vec().into_iter().map(|c| c.0).collect()
    }

    /// Stores `bytes`, NUL-terminated when shorter than the array (ctypes' `.value = ...`).
    ///
    /// # Errors
    ///
    /// [`SharedError::StringTooLong`] if `bytes` is longer than the array.
    pub fn set_value(&self, bytes: &[u8]) -> Result<(), SharedError> {
        self.check_fits(bytes)?;
        self.store(bytes);
        if bytes.len() < self.len() {
            let _ = self.set(bytes.len(), Char(0));
        }
        Ok(())
    }

    /// Stores `bytes` at the start, leaving the rest as it was (ctypes' `.raw = ...`).
    ///
    /// # Errors
    ///
    /// [`SharedError::StringTooLong`] if `bytes` is longer than the array.
    pub fn set_raw(&self, bytes: &[u8]) -> Result<(), SharedError> {
        self.check_fits(bytes)?;
        self.store(bytes);
        Ok(())
    }

    fn check_fits(&self, bytes: &[u8]) -> Result<(), SharedError> {
        if bytes.len() > self.len() {
            return Err(SharedError::StringTooLong {
                len: bytes.len(),
                capacity: self.len(),
            });
        }
        Ok(())
    }

    fn store(&self, bytes: &[u8]) {
        let chars: Vec<Char> = bytes.iter().map(|&b| Char(b)).collect();
        let _ = self.write_slice(0, &chars);
    }
}

impl Array<Char> {
    /// A char array holding `bytes`, synchronized as `lock` says (Python's
    /// `Array('c', b"...", lock=…)`: [`LockSpec::Own`], [`LockSpec::None`], or a given
    /// [`Lock`](crate::Lock) / [`RLock`](crate::RLock)).
    ///
    /// ```
    /// use procvisor::{Array, LockSpec};
    ///
    /// let s = Array::from_bytes(b"hello world", LockSpec::Own)?;
    /// s.set_value(&s.value().to_ascii_uppercase())?;
    /// assert_eq!(s.value(), b"HELLO WORLD");
    /// s.set_value(b"hi")?;
    /// assert_eq!(s.value(), b"hi");
    /// assert_eq!(&s.raw()[..4], b"hi\0L");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SharedError::Os`] if the OS refuses the memory.
    pub fn from_bytes(bytes: &[u8], lock: impl Into<LockSpec>) -> Result<Array<Char>, SharedError> {
        let chars: Vec<Char> = bytes.iter().map(|&b| Char(b)).collect();
        Array::from_slice_with_lock(&chars, lock)
    }

    /// The bytes up to the first NUL, read under the lock.
    pub fn value(&self) -> Vec<u8> {
        self.with_lock_held(|raw| raw.value())
    }

    /// Every byte, read under the lock.
    pub fn raw(&self) -> Vec<u8> {
        self.with_lock_held(|raw| raw.raw())
    }

    /// As [`RawArray::set_value`], under the lock.
    ///
    /// # Errors
    ///
    /// [`SharedError::StringTooLong`] if `bytes` is longer than the array.
    pub fn set_value(&self, bytes: &[u8]) -> Result<(), SharedError> {
        self.with_lock_held(|raw| raw.set_value(bytes))
    }

    /// As [`RawArray::set_raw`], under the lock.
    ///
    /// # Errors
    ///
    /// [`SharedError::StringTooLong`] if `bytes` is longer than the array.
    pub fn set_raw(&self, bytes: &[u8]) -> Result<(), SharedError> {
        self.with_lock_held(|raw| raw.set_raw(bytes))
    }
}
