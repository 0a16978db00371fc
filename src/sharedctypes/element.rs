//! Element types: [`Shareable`], the `array`-module [`TypeCode`]s and [`Char`].

use crate::error::SharedError;

/// Plain data that may live in shared memory and be copied in and out of it.
///
/// Implemented for the primitives behind the `array` module's typecodes and for [`Char`]. A
/// `#[repr(C)]` struct of such fields opts in with one line:
///
/// ```
/// #[repr(C)]
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct Point {
///     x: f64,
///     y: f64,
/// }
///
/// // SAFETY: repr(C), only f64 fields: no pointers, every bit pattern is a valid Point.
/// unsafe impl procvisor::Shareable for Point {}
///
/// let points = procvisor::RawArray::from_slice(&[Point { x: 1.0, y: 2.0 }])?;
/// assert_eq!(points.get(0)?, Point { x: 1.0, y: 2.0 });
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// # Safety
///
/// The type must be `#[repr(C)]` (or a primitive), contain no pointers, references or
/// anything that owns memory or a resource (it is copied between processes byte for byte),
/// and every bit pattern of its size — all zeroes in particular — must be a valid value.
pub unsafe trait Shareable: Copy + Send + Sync + 'static {
    /// The `array`-module typecodes that describe this type (none for structs).
    const TYPECODES: &'static [char] = &[];
}

/// A C `char` (typecode `'c'`): one byte, in a char array that has string access
/// ([`RawArray::value`](super::RawArray::value), [`raw`](super::RawArray::raw)).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Char(pub u8);

macro_rules! shareable {
    ($($t:ty => [$($code:literal),*]),* $(,)?) => {$(
        // SAFETY: a primitive (or a transparent byte): no pointers, any bit pattern is valid.
        unsafe impl Shareable for $t {
            const TYPECODES: &'static [char] = &[$($code),*];
        }
    )*};
}

shareable! {
    i8 => ['b'], u8 => ['B'], i16 => ['h'], u16 => ['H'], i32 => ['i'], u32 => ['I'],
    i64 => ['l', 'q'], u64 => ['L', 'Q'], f32 => ['f'], f64 => ['d'], Char => ['c'],
}

/// The typecodes of Python's `array` module (C types; `long` is 64-bit on 64-bit Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeCode {
    /// `'c'`: char ([`Char`]).
    Char,
    /// `'b'`: signed char (`i8`).
    SignedChar,
    /// `'B'`: unsigned char (`u8`).
    UnsignedChar,
    /// `'h'`: short (`i16`).
    Short,
    /// `'H'`: unsigned short (`u16`).
    UnsignedShort,
    /// `'i'`: int (`i32`).
    Int,
    /// `'I'`: unsigned int (`u32`).
    UnsignedInt,
    /// `'l'`: long (`i64`).
    Long,
    /// `'L'`: unsigned long (`u64`).
    UnsignedLong,
    /// `'q'`: long long (`i64`).
    LongLong,
    /// `'Q'`: unsigned long long (`u64`).
    UnsignedLongLong,
    /// `'f'`: float (`f32`).
    Float,
    /// `'d'`: double (`f64`).
    Double,
}

const CODES: [(char, TypeCode, usize); 13] = [
    ('c', TypeCode::Char, 1),
    ('b', TypeCode::SignedChar, 1),
    ('B', TypeCode::UnsignedChar, 1),
    ('h', TypeCode::Short, 2),
    ('H', TypeCode::UnsignedShort, 2),
    ('i', TypeCode::Int, 4),
    ('I', TypeCode::UnsignedInt, 4),
    ('l', TypeCode::Long, 8),
    ('L', TypeCode::UnsignedLong, 8),
    ('q', TypeCode::LongLong, 8),
    ('Q', TypeCode::UnsignedLongLong, 8),
    ('f', TypeCode::Float, 4),
    ('d', TypeCode::Double, 8),
];

impl TypeCode {
    /// The typecode written `c`.
    ///
    /// # Errors
    ///
    /// [`SharedError::UnknownTypeCode`] for a character that is not one of
    /// `b B h H i I l L q Q f d c`.
    pub fn from_char(c: char) -> Result<TypeCode, SharedError> {
        CODES
            .iter()
            .find(|(ch, _, _)| *ch == c)
            .map(|&(_, code, _)| code)
            .ok_or(SharedError::UnknownTypeCode { typecode: c })
    }

    /// Its character.
    pub fn as_char(self) -> char {
        CODES
            .iter()
            .find(|(_, code, _)| *code == self)
            .map_or('?', |&(c, _, _)| c)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        CODES
            .iter()
            .find(|(_, code, _)| *code == self)
            .map_or(0, |&(_, _, size)| size)
    }

    /// Checks that `c` is a typecode describing `T`.
    pub(crate) fn check<T: Shareable>(c: char) -> Result<(), SharedError> {
        TypeCode::from_char(c)?;
        if T::TYPECODES.contains(&c) {
            Ok(())
        } else {
            Err(SharedError::TypeCodeMismatch {
                typecode: c,
                rust_type: std::any::type_name::<T>(),
            })
        }
    }
}

pub(crate) mod sealed {
    /// Only procvisor's shared objects implement the traits sealed with this.
    pub trait Sealed {}
}
