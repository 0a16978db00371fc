//! Value ⇄ bytes, with one fixed bincode configuration.
//!
//! This module is the only place in procvisor that calls `bincode`; every
//! other module goes through [`encode`], [`encode_into`] and [`decode`], so
//! the encoding of a message cannot differ between two call sites.
//!
//! The configuration is bincode's *standard* one, spelled out once in a
//! private `config()`: little-endian, variable-length integers (values below
//! 251 take one byte), no size limit when encoding. It is deliberately not
//! public, so no other module can build its own bincode calls around it.
//!
//! # Hostile payloads
//!
//! A payload carries lengths of its own (the length of a string, of a
//! `Vec<u8>`, ...). bincode allocates a string's buffer *before* reading its
//! bytes, so a 10-byte payload claiming a 1 TiB string would make a naive
//! decoder try to allocate 1 TiB. [`decode`] therefore runs bincode with an
//! allocation budget derived from the input length: bincode charges every
//! value against the budget *before* allocating for it and fails with a
//! decode error once the budget is spent.
//!
//! bincode charges values by their in-memory size, not by the bytes they
//! took on the wire: a `u128` of value 0 is one byte on the wire but is
//! charged 16. No value is charged more than `CLAIM_FACTOR` (16) times the
//! bytes it occupies, so the budget is `16 × input length`, rounded up to the
//! next power of four (and at least 1 KiB) because bincode takes the limit as
//! a compile-time constant and [`decode`] picks one from a fixed ladder. As a
//! result, a valid payload always decodes, and any single allocation that a
//! length inside an `n`-byte payload can cause is at most `64 × n` bytes (at
//! least 1 KiB). Sequences and maps are pre-allocated through serde, which
//! caps its own pre-allocation at 1 MiB whatever the announced length.
//!
//! One limit remains: a sequence of a *zero-sized* type (`Vec<()>`) occupies
//! no bytes per element, so a hostile length makes the decoder loop for a
//! long time without allocating. Message types should not contain such
//! sequences.

use bincode::config::{Configuration, LittleEndian, Varint};
use bincode::error::{DecodeError, EncodeError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::WireError;

/// The most bytes of budget bincode charges for one byte of input
/// (a 16-byte `u128` encoded as a single varint byte).
pub(crate) const CLAIM_FACTOR: usize = 16;

/// The one bincode configuration of procvisor: little-endian, variable-length
/// integers, no limit (the decode budget is added by [`decode`]).
const fn config() -> Configuration<LittleEndian, Varint> {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
}

/// Encodes `value` into a new buffer.
///
/// # Errors
///
/// [`WireError::Encode`] if the value cannot be represented (for example a
/// serde sequence whose length is not known in advance, or a custom
/// `Serialize` impl that fails).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, WireError> {
    bincode::serde::encode_to_vec(value, config()).map_err(encode_error)
}

/// Encodes `value` at the end of `buf`, keeping what `buf` already holds.
///
/// Reusing one buffer for many messages avoids an allocation per message.
/// On error `buf` is restored to its previous length.
///
/// # Errors
///
/// As [`encode`].
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), WireError> {
    let start = buf.len();
    match bincode::serde::encode_into_std_write(value, buf, config()) {
        Ok(_) => Ok(()),
        Err(err) => {
            buf.truncate(start);
            Err(encode_error(err))
        }
    }
}

/// Decodes a `T` that must occupy all of `bytes`.
///
/// The decoder allocates at most a bounded multiple of `bytes.len()` for any
/// length found inside the payload (see the [module docs](self)), and
/// trailing bytes after the value are an error: a payload is exactly one
/// value.
///
/// # Errors
///
/// [`WireError::Decode`] if `bytes` ends early, holds an invalid value (bad
/// UTF-8, unknown enum variant, invalid `bool`...), announces a length larger
/// than the payload can hold, or has bytes left over.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let budget = bytes.len().saturating_mul(CLAIM_FACTOR);
    let (value, used) =
        decode_with_budget::<T>(bytes, budget).map_err(|err| decode_error(err, bytes.len()))?;
    if used != bytes.len() {
        return Err(WireError::Decode(format!(
            "{} trailing bytes after the value (the payload is {} bytes, the value used {})",
            bytes.len() - used,
            bytes.len(),
            used
        )));
    }
    Ok(value)
}

/// `1 << shift`, saturating at `usize::MAX` on small targets.
const fn pow2(shift: u32) -> usize {
    if shift >= usize::BITS {
        usize::MAX
    } else {
        1 << shift
    }
}

/// Runs bincode with the smallest limit of the ladder that is `>= budget`.
fn decode_with_budget<T: DeserializeOwned>(
    bytes: &[u8],
    budget: usize,
) -> Result<(T, usize), DecodeError> {
    macro_rules! ladder {
        ($($shift:literal)*) => {
            $(
                if budget <= const { pow2($shift) } {
                    return bincode::serde::decode_from_slice(
                        bytes,
                        config().with_limit::<{ pow2($shift) }>(),
                    );
                }
            )*
        };
    }
    // Powers of four from 1 KiB to 1 TiB; each step is one instantiation of
    // the decoder for `T`, so the ladder is kept short.
    ladder!(10 12 14 16 18 20 22 24 26 28 30 32 34 36 38 40);
    bincode::serde::decode_from_slice(bytes, config().with_limit::<{ usize::MAX }>())
}

fn encode_error(err: EncodeError) -> WireError {
    let text = match err {
        EncodeError::OtherString(text) => text,
        EncodeError::Other(text) => text.to_owned(),
        EncodeError::Serde(bincode::serde::EncodeError::SequenceMustHaveLength) => {
            "a sequence or map does not know its length in advance \
             (bincode needs it; `#[serde(flatten)]` and length-less \
             iterators are not supported)"
                .to_owned()
        }
        EncodeError::Io { inner, .. } => format!("write failed: {inner}"),
        other => format!("{other:?}"),
    };
    WireError::Encode(text)
}

fn decode_error(err: DecodeError, input_len: usize) -> WireError {
    use bincode::serde::DecodeError as SerdeError;
    let text = match err {
        DecodeError::UnexpectedEnd { additional } => format!(
            "the payload ended too early ({additional} more bytes needed, the payload is {input_len} bytes)"
        ),
        DecodeError::LimitExceeded => format!(
            "a length inside the {input_len}-byte payload is larger than such a payload can hold"
        ),
        DecodeError::Utf8 { inner } => format!("a string is not valid UTF-8: {inner}"),
        DecodeError::InvalidCharEncoding(bytes) => {
            format!("a char is not valid UTF-8: {bytes:02x?}")
        }
        DecodeError::InvalidBooleanValue(byte) => {
            format!("a bool must be 0 or 1, found {byte}")
        }
        DecodeError::UnexpectedVariant {
            type_name, found, ..
        } => format!("unknown variant {found} for {type_name}"),
        DecodeError::OutsideUsizeRange(value) => {
            format!("the length {value} does not fit in usize")
        }
        DecodeError::InvalidIntegerType { expected, found } => {
            format!("expected an integer of type {expected:?}, found {found:?}")
        }
        DecodeError::NonZeroTypeIsZero { non_zero_type } => {
            format!("a NonZero {non_zero_type:?} is zero")
        }
        DecodeError::ArrayLengthMismatch { required, found } => {
            format!("an array needs {required} elements, found {found}")
        }
        DecodeError::OtherString(text) => text,
        DecodeError::Other(text) => text.to_owned(),
        DecodeError::Serde(SerdeError::AnyNotSupported) => {
            "the type needs a self-describing format (deserialize_any), which bincode is not"
                .to_owned()
        }
        DecodeError::Serde(SerdeError::IgnoredAnyNotSupported) => {
            "the type skips unknown data (deserialize_ignored_any), which bincode cannot do"
                .to_owned()
        }
        DecodeError::Serde(SerdeError::IdentifierNotSupported) => {
            "the type deserializes identifiers, which bincode does not encode".to_owned()
        }
        other => format!("{other:?}"),
    };
    WireError::Decode(text)
}
