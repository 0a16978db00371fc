//! [`CodeRef`]: a function of this executable named in a way another process of the same
//! executable can follow. It is how a target reaches its child, a task its pool worker and a
//! barrier action every party, without a registry of functions.
//!
//! ## How it works
//!
//! Every process started by procvisor runs the same executable file as its parent (a spawned
//! child re-executes `/proc/self/exe`; a fork child is a copy of the fork server, itself
//! spawned that way). Address-space randomisation moves the whole image of an executable, not
//! its parts, so two functions of one executable are the same distance apart in every process
//! running it. A `CodeRef` is the distance of a function from a fixed function ([`anchor`]),
//! together with the identity (device and inode) of the executable that measured it; following
//! it adds the distance to this process's own anchor, after checking that this process runs the
//! very same file.
//!
//! ## Trust model
//!
//! Following a reference calls whatever code sits at that distance: a `CodeRef` decoded from
//! bytes is exactly as trustworthy as the channel the bytes came over, as unpickling is in
//! Python. procvisor decodes them only from channels that only its own processes can write to:
//! a child's bootstrap link and a pool worker's pipes are private socket pairs, and a barrier
//! (whose action is a `CodeRef`) travels in values passed to children or over connections that
//! authenticate their peer with the authkey. Do not let an unauthenticated peer send values
//! containing a `Barrier` with an action. The executable check catches the honest mistake (a
//! program rebuilt between a parent's start and a child's, a value sent to another program),
//! not an attacker, who can forge the identity as easily as the offset.

use std::fmt;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};

/// A function pointer type a [`CodeRef`] can name.
///
/// # Safety
///
/// Implement it only for `fn` pointer types (use [`fn_pointer!`]): [`CodeRef::resolve`]
/// turns an address back into a `Self`.
pub(crate) unsafe trait FnPointer: Copy + 'static {
    /// The address of the function.
    fn address(self) -> usize;
}

/// Marks `fn` pointer types as [`FnPointer`]s.
macro_rules! fn_pointer {
    ($($ty:ty),* $(,)?) => {
        $(
            // SAFETY: the type is a `fn` pointer type (the macro's contract), the size of an
            // address, and every value of it is the address of a function.
            unsafe impl $crate::code_ref::FnPointer for $ty {
                fn address(self) -> usize {
                    self as usize
                }
            }
        )*
    };
}
pub(crate) use fn_pointer;

fn_pointer!(fn());

/// A function of this executable that another process of the same executable can call.
///
/// Made with [`CodeRef::of`] in one process, sent (it is `serde`, or [`CodeRef::to_bytes`] for
/// fixed-layout frames), and followed with [`CodeRef::resolve`] in the other.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct CodeRef<F> {
    offset: i64,
    executable: (u64, u64),
    #[serde(skip)]
    function: PhantomData<F>,
}

/// Why a [`CodeRef`] cannot be followed in this process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ForeignCode {
    /// It was made by another executable file, or by a process that could not identify its own.
    #[error(
        "the function was named by another executable than this process runs (was the program \
         rebuilt or replaced since?)"
    )]
    OtherExecutable,
    /// This process cannot identify its own executable, so it cannot check the reference.
    #[error("cannot identify this process's executable: {0}")]
    Unidentified(String),
}

/// The number of bytes of [`CodeRef::to_bytes`].
pub(crate) const CODE_REF_LEN: usize = 24;

impl<F: FnPointer> CodeRef<F> {
    /// Names `f`. (A process that cannot identify its executable names it with an identity no
    /// process has: following the reference fails with a precise error.)
    pub(crate) fn of(f: F) -> CodeRef<F> {
        CodeRef {
            offset: (f.address() as i64).wrapping_sub(anchor_address()),
            executable: procvisor_actors::sys::executable_identity().unwrap_or((0, 0)),
            function: PhantomData,
        }
    }

    /// The function, in this process.
    pub(crate) fn resolve(self) -> Result<F, ForeignCode> {
        let ours = procvisor_actors::sys::executable_identity()
            .map_err(|e| ForeignCode::Unidentified(e.to_string()))?;
        if self.executable != ours || ours == (0, 0) {
            return Err(ForeignCode::OtherExecutable);
        }
        let address = anchor_address().wrapping_add(self.offset) as usize;
        const { assert!(size_of::<F>() == size_of::<usize>()) };
        // SAFETY: `F` is a `fn` pointer type (the contract of `FnPointer`) of the size of an
        // address (checked above). The offset was measured by `CodeRef::of` from a value of
        // this very type `F` (the type parameter travels with it: `CodeRef<F>` is decoded only
        // as the `CodeRef<F>` that was encoded, see the trust model) in a process running this
        // same executable file (checked above), where every function is at the same distance
        // from `anchor` as here; so `address` is the address of that function in this process.
        Ok(unsafe { std::mem::transmute_copy::<usize, F>(&address) })
    }

    /// The offset and the executable's identity, for a format with fields of its own (the
    /// bootstrap of a child).
    pub(crate) fn to_parts(self) -> (i64, (u64, u64)) {
        (self.offset, self.executable)
    }

    /// The reference [`to_parts`](Self::to_parts) gave.
    pub(crate) fn from_parts(offset: i64, executable: (u64, u64)) -> CodeRef<F> {
        CodeRef {
            offset,
            executable,
            function: PhantomData,
        }
    }

    /// The reference in a fixed layout: offset, device, inode, each 8 bytes little-endian.
    pub(crate) fn to_bytes(self) -> [u8; CODE_REF_LEN] {
        let mut out = [0; CODE_REF_LEN];
        out[..8].copy_from_slice(&self.offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.executable.0.to_le_bytes());
        out[16..].copy_from_slice(&self.executable.1.to_le_bytes());
        out
    }

    /// The reference [`to_bytes`](Self::to_bytes) wrote.
    pub(crate) fn from_bytes(bytes: &[u8; CODE_REF_LEN]) -> CodeRef<F> {
        let word = |i: usize| {
            let mut w = [0; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            w
        };
        CodeRef {
            offset: i64::from_le_bytes(word(0)),
            executable: (u64::from_le_bytes(word(8)), u64::from_le_bytes(word(16))),
            function: PhantomData,
        }
    }
}

impl<F> Clone for CodeRef<F> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<F> Copy for CodeRef<F> {}

impl<F> PartialEq for CodeRef<F> {
    fn eq(&self, other: &Self) -> bool {
        (self.offset, self.executable) == (other.offset, other.executable)
    }
}

impl<F> Eq for CodeRef<F> {}

impl<F> fmt::Debug for CodeRef<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeRef")
            .field("offset", &self.offset)
            .field("executable", &self.executable)
            .finish()
    }
}

/// The fixed point distances are measured from. Not inlined, so that it has one address.
#[inline(never)]
fn anchor() -> &'static str {
    "procvisor code anchor"
}

fn anchor_address() -> i64 {
    anchor as fn() -> &'static str as usize as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seven() -> u32 {
        7
    }

    type Seven = fn() -> u32;
    fn_pointer!(Seven);

    #[test]
    fn a_reference_resolves_to_its_function() {
        let r = CodeRef::of(seven as Seven);
        assert_eq!(r.resolve().unwrap()(), 7);
        assert_eq!(CodeRef::<Seven>::from_bytes(&r.to_bytes()), r);
    }

    #[test]
    fn a_reference_from_another_executable_is_refused() {
        let mut r = CodeRef::of(seven as Seven);
        r.executable.1 ^= 1;
        assert_eq!(r.resolve().unwrap_err(), ForeignCode::OtherExecutable);
    }

    #[test]
    fn serde_round_trip() {
        let r = CodeRef::of(seven as Seven);
        let bytes = procvisor_actors::wire::codec::encode(&r).unwrap();
        let back: CodeRef<Seven> = procvisor_actors::wire::codec::decode(&bytes).unwrap();
        assert_eq!(back.resolve().unwrap()(), 7);
    }
}
