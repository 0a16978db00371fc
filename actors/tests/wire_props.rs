//! Property tests: arbitrary bytes into every reader of the wire layer.
//! They must never panic, never hang and never allocate past their limits.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use procvisor_actors::wire::auth::{
    CHALLENGE_PREFIX, FAILURE, HANDSHAKE_MAX_FRAME, NONCE_LEN, WELCOME, answer_challenge,
    client_handshake, deliver_challenge, server_handshake,
};
use procvisor_actors::wire::frame::{
    FrameLimits, FrameReader, HEADER_LEN, READ_CHUNK, encode_frame_into, read_frame_unbuffered,
};
use procvisor_actors::wire::{WireError, codec};

const SMALL_MAX: usize = 64;

/// Yields at most `step` bytes per `read`.
struct Trickle<R> {
    inner: R,
    step: usize,
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step);
        self.inner.read(&mut buf[..n])
    }
}

fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        encode_frame_into(&mut out, p).unwrap();
    }
    out
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Reads frames until an error, checking the memory bounds after each step;
/// returns the frames and the final error.
fn drain<R: Read>(mut reader: FrameReader<R>, max: usize) -> (Vec<Vec<u8>>, WireError) {
    let mut frames = Vec::new();
    let mut out = Vec::new();
    loop {
        let result = reader.read_frame_into(&mut out);
        assert!(reader.buffer_capacity() <= READ_CHUNK);
        assert!(
            out.capacity() <= max,
            "payload buffer {} > {max}",
            out.capacity()
        );
        assert!(reader.buffer_capacity() + out.capacity() <= max + READ_CHUNK);
        match result {
            Ok(len) => {
                assert!(len <= max);
                assert_eq!(out.len(), len);
                frames.push(out.clone());
            }
            Err(err) => return (frames, err),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Empty,
    Point(i64, i64),
    Named { name: String, tags: Vec<String> },
    Blob(Vec<u8>),
    Deep(Option<Box<Shape>>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Envelope {
    id: u64,
    small: u8,
    wide: i128,
    ratio: f64,
    letter: char,
    flag: bool,
    text: String,
    shapes: Vec<Shape>,
    index: BTreeMap<String, u32>,
    maybe: Option<(u16, String)>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let leaf = prop_oneof![
        Just(Shape::Empty),
        (any::<i64>(), any::<i64>()).prop_map(|(x, y)| Shape::Point(x, y)),
        (".{0,12}", prop::collection::vec(".{0,6}", 0..4))
            .prop_map(|(name, tags)| Shape::Named { name, tags }),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Shape::Blob),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop::option::of(inner).prop_map(|s| Shape::Deep(s.map(Box::new)))
    })
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (any::<u64>(), any::<u8>(), any::<i128>(), any::<f64>()),
        (any::<char>(), any::<bool>(), ".{0,40}"),
        prop::collection::vec(shape(), 0..6),
        prop::collection::btree_map(".{0,8}", any::<u32>(), 0..5),
        prop::option::of((any::<u16>(), ".{0,8}")),
    )
        .prop_map(
            |((id, small, wide, ratio), (letter, flag, text), shapes, index, maybe)| Envelope {
                id,
                small,
                wide,
                ratio,
                letter,
                flag,
                text,
                shapes,
                index,
                maybe,
            },
        )
}

/// Byte streams a hostile peer might send during a handshake: raw bytes, or
/// well-formed frames with arbitrary, nearly right or right-looking contents.
fn hostile_stream() -> impl Strategy<Value = Vec<u8>> {
    let message = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        prop::collection::vec(any::<u8>(), NONCE_LEN - 1..=NONCE_LEN + 1).prop_map(|nonce| [
            CHALLENGE_PREFIX,
            &nonce
        ]
        .concat()),
        prop::collection::vec(any::<u8>(), 32..=32),
        Just(WELCOME.to_vec()),
        Just(FAILURE.to_vec()),
        prop::collection::vec(
            any::<u8>(),
            HANDSHAKE_MAX_FRAME + 1..HANDSHAKE_MAX_FRAME + 3
        ),
    ];
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        (prop::collection::vec(message, 0..5), 0usize..8).prop_map(|(messages, chop)| {
            let mut bytes = framed(&messages);
            bytes.truncate(bytes.len().saturating_sub(chop));
            bytes
        }),
    ]
}

/// Runs one side of the handshake against a peer that sent `bytes` and then
/// closed its writing half. The peer socket stays open (so our writes
/// succeed); the read timeout only turns a hang into a failure.
fn against_replay(
    bytes: &[u8],
    side: fn(&mut UnixStream, &[u8]) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let (mut ours, mut peer) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    peer.write_all(bytes).unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let result = side(&mut ours, b"key");
    drop(peer);
    result
}

fn check_handshake_result(result: Result<(), WireError>) -> Result<(), TestCaseError> {
    match result {
        Ok(())
        | Err(WireError::Eof | WireError::Truncated { .. } | WireError::Authentication(_)) => {
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!("unexpected error {other:?}"))),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn frame_reader_survives_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        step in 1usize..80,
    ) {
        let reader = FrameReader::new(Trickle { inner: Cursor::new(&bytes), step }, FrameLimits::new(SMALL_MAX));
        let (frames, err) = drain(reader, SMALL_MAX);
        prop_assert!(frames.len() <= bytes.len() / HEADER_LEN);
        prop_assert!(
            matches!(err, WireError::Eof | WireError::Truncated { .. } | WireError::Oversized { .. }),
            "unexpected error {err:?}"
        );
    }

    #[test]
    fn unbuffered_reads_survive_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut cursor = Cursor::new(&bytes);
        loop {
            match read_frame_unbuffered(&mut cursor, &FrameLimits::new(SMALL_MAX)) {
                Ok(frame) => {
                    prop_assert!(frame.len() <= SMALL_MAX);
                    prop_assert!(frame.capacity() <= SMALL_MAX);
                }
                Err(WireError::Eof | WireError::Truncated { .. } | WireError::Oversized { .. }) => break,
                Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
        }
    }

    #[test]
    fn frames_survive_any_chunking(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..24),
        step in 1usize..400,
    ) {
        let bytes = framed(&payloads);
        let reader = FrameReader::new(Trickle { inner: Cursor::new(&bytes), step }, FrameLimits::new(300));
        let (frames, err) = drain(reader, 300);
        prop_assert_eq!(frames, payloads);
        prop_assert!(matches!(err, WireError::Eof), "{err:?}");
    }

    #[test]
    fn cut_streams_end_with_eof_only_at_a_boundary(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..10),
        cut_seed in any::<prop::sample::Index>(),
        step in 1usize..64,
    ) {
        let bytes = framed(&payloads);
        let cut = cut_seed.index(bytes.len() + 1);
        let mut boundaries = vec![0];
        for p in &payloads {
            boundaries.push(boundaries.last().unwrap() + HEADER_LEN + p.len());
        }
        let complete = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
        let reader = FrameReader::new(
            Trickle { inner: Cursor::new(&bytes[..cut]), step },
            FrameLimits::new(64),
        );
        let (frames, err) = drain(reader, 64);
        prop_assert_eq!(&frames[..], &payloads[..complete]);
        if boundaries.contains(&cut) {
            prop_assert!(matches!(err, WireError::Eof), "{err:?}");
        } else {
            let WireError::Truncated { expected, got } = err else {
                return Err(TestCaseError::fail(format!("expected Truncated, got {err:?}")));
            };
            prop_assert_eq!(got, cut - boundaries[complete]);
            prop_assert!(got < expected);
        }
    }

    #[test]
    fn decode_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        // Only that nothing panics, hangs or aborts on allocation.
        let _ = codec::decode::<Envelope>(&bytes);
        let _ = codec::decode::<Shape>(&bytes);
        let _ = codec::decode::<Vec<String>>(&bytes);
        let _ = codec::decode::<BTreeMap<String, Vec<u8>>>(&bytes);
        let _ = codec::decode::<(u128, char, bool, Option<f32>)>(&bytes);
        let _ = codec::decode::<String>(&bytes);
    }

    #[test]
    fn values_round_trip_and_reject_trailing_bytes(value in envelope(), extra in 1usize..4) {
        let mut bytes = codec::encode(&value).unwrap();
        let back: Envelope = codec::decode(&bytes).unwrap();
        // f64 NaN != NaN: compare through the encoding.
        prop_assert_eq!(codec::encode(&back).unwrap(), bytes.clone());
        bytes.extend(std::iter::repeat_n(0, extra));
        prop_assert!(matches!(codec::decode::<Envelope>(&bytes), Err(WireError::Decode(_))));
        // Any strict prefix fails cleanly too.
        let cut = bytes.len() - extra - 1;
        prop_assert!(codec::decode::<Envelope>(&bytes[..cut]).is_err());
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn answerer_survives_a_hostile_challenger(bytes in hostile_stream()) {
        check_handshake_result(against_replay(&bytes, answer_challenge))?;
        check_handshake_result(against_replay(&bytes, client_handshake))?;
    }

    #[test]
    fn challenger_survives_a_hostile_answerer(bytes in hostile_stream()) {
        // The nonce is random, so a replayed stream can never pass.
        let result = against_replay(&bytes, deliver_challenge);
        prop_assert!(result.is_err());
        check_handshake_result(result)?;
        let result = against_replay(&bytes, server_handshake);
        prop_assert!(result.is_err());
        check_handshake_result(result)?;
    }
}
