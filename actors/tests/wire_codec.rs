//! Codec: round trips, exact bytes, hostile payloads, error texts.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;

use procvisor_actors::wire::{WireError, codec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
    let bytes = codec::encode(&value).unwrap();
    let back: T = codec::decode(&bytes).unwrap();
    assert_eq!(back, value);

    let mut buf = vec![0xAA, 0xBB];
    codec::encode_into(&value, &mut buf).unwrap();
    assert_eq!(&buf[..2], &[0xAA, 0xBB], "encode_into must append");
    assert_eq!(&buf[2..], &bytes[..]);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Unit;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Newtype(u64);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    id: u64,
    name: String,
    args: Vec<i32>,
    kwargs: BTreeMap<String, f64>,
    parent: Option<Box<Task>>,
    payload: Vec<u8>,
    flags: (bool, char, i8),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Message {
    Ping,
    Call(u32, String),
    Result {
        id: u64,
        value: Result<Vec<u8>, String>,
    },
    Nested(Box<Message>),
    Unit(Unit),
}

#[test]
fn primitives_round_trip() {
    round_trip(());
    round_trip(true);
    round_trip(false);
    round_trip(0u8);
    round_trip(u8::MAX);
    round_trip(i8::MIN);
    round_trip(u16::MAX);
    round_trip(i16::MIN);
    round_trip(u32::MAX);
    round_trip(i32::MIN);
    round_trip(u64::MAX);
    round_trip(i64::MIN);
    round_trip(u128::MAX);
    round_trip(i128::MIN);
    round_trip(usize::MAX);
    round_trip(isize::MIN);
    round_trip(1.5f32);
    round_trip(-0.1f64);
    round_trip(f64::INFINITY);
    round_trip('x');
    round_trip('é');
    round_trip('🦀');
}

#[test]
fn containers_round_trip() {
    round_trip(String::new());
    round_trip(String::from("héllo wörld"));
    round_trip(vec![1u8, 2, 3]);
    round_trip(Vec::<u64>::new());
    round_trip(vec![u64::MAX; 100]);
    round_trip(vec![0u128; 1000]);
    round_trip([1u16, 2, 3, 4]);
    round_trip((1u8, String::from("two"), 3.0f32));
    round_trip(Some(5u32));
    round_trip(None::<String>);
    round_trip(Ok::<u8, String>(1));
    round_trip(Err::<u8, String>("bad".into()));
    round_trip(VecDeque::from(vec![1i64, -1]));
    round_trip(BTreeSet::from([3u8, 1, 2]));
    round_trip(HashMap::from([(1u32, "a".to_owned()), (2, "b".to_owned())]));
    round_trip(vec![
        vec![String::from("a")],
        vec![],
        vec![String::new(); 3],
    ]);
    round_trip(Box::new(7u8));
    round_trip(std::time::Duration::from_millis(1500));
}

#[test]
fn structs_and_enums_round_trip() {
    round_trip(Unit);
    round_trip(Newtype(42));
    let task = Task {
        id: 7,
        name: "work".into(),
        args: vec![-1, 0, 1, i32::MAX],
        kwargs: BTreeMap::from([("alpha".into(), 0.5), ("beta".into(), -2.0)]),
        parent: Some(Box::new(Task {
            id: 1,
            name: "root".into(),
            args: vec![],
            kwargs: BTreeMap::new(),
            parent: None,
            payload: vec![0; 300],
            flags: (false, 'r', -1),
        })),
        payload: (0..=255).collect(),
        flags: (true, 'ß', i8::MIN),
    };
    round_trip(task);
    for message in [
        Message::Ping,
        Message::Call(3, "f".into()),
        Message::Result {
            id: 9,
            value: Ok(vec![1, 2]),
        },
        Message::Result {
            id: 10,
            value: Err("boom".into()),
        },
        Message::Nested(Box::new(Message::Nested(Box::new(Message::Ping)))),
        Message::Unit(Unit),
    ] {
        round_trip(message);
    }
}

#[test]
fn exact_bytes_of_documented_examples() {
    assert_eq!(
        codec::encode(&String::from("hi")).unwrap(),
        [0x02, 0x68, 0x69]
    );
    assert_eq!(codec::encode("hi").unwrap(), [0x02, 0x68, 0x69]);
    // Variable-length integers: below 251 one byte, then a marker byte.
    assert_eq!(codec::encode(&250u64).unwrap(), [250]);
    assert_eq!(codec::encode(&251u64).unwrap(), [251, 251, 0]);
    assert_eq!(codec::encode(&-1i32).unwrap(), [1]);
    assert_eq!(codec::encode(&Message::Ping).unwrap(), [0]);
    assert_eq!(
        codec::encode(&Message::Call(1, "a".into())).unwrap(),
        [1, 1, 1, b'a']
    );
}

#[test]
fn trailing_bytes_are_rejected() {
    let err = codec::decode::<u8>(&[1, 2, 3]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not decode the message: 2 trailing bytes after the value \
         (the payload is 3 bytes, the value used 1)"
    );
}

#[test]
fn truncated_payload_is_a_decode_error() {
    let err = codec::decode::<String>(&[5, b'a']).unwrap_err();
    assert!(matches!(err, WireError::Decode(_)), "{err:?}");
    assert!(err.to_string().contains("ended too early"), "{err}");
    assert!(matches!(
        codec::decode::<u32>(&[]),
        Err(WireError::Decode(_))
    ));
}

#[test]
fn hostile_lengths_fail_without_allocating() {
    // String of length 2^40 (varint marker 253 = u64 follows), in 9 bytes.
    let mut payload = vec![253];
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let err = codec::decode::<String>(&payload).unwrap_err();
    assert_eq!(
        err.to_string(),
        "could not decode the message: a length inside the 9-byte payload \
         is larger than such a payload can hold"
    );
    // The same for u64::MAX, and inside a sequence and a map.
    let mut payload = vec![253];
    payload.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(codec::decode::<Vec<u8>>(&payload).is_err());
    assert!(codec::decode::<Vec<String>>(&payload).is_err());
    assert!(codec::decode::<BTreeMap<u8, u8>>(&payload).is_err());
    let mut nested = vec![1];
    nested.extend_from_slice(&payload);
    assert!(codec::decode::<Vec<String>>(&nested).is_err());
}

#[test]
fn values_charged_more_than_their_wire_size_still_decode() {
    // Each zero u128 is 1 byte on the wire but charged 16 by bincode: the
    // decode budget must allow for it.
    for len in [0usize, 1, 63, 64, 65, 1000, 100_000] {
        round_trip(vec![0u128; len]);
        round_trip(vec![0u64; len]);
        round_trip(vec![None::<u8>; len]);
    }
}

#[test]
fn invalid_values_have_readable_errors() {
    let bool_err = codec::decode::<bool>(&[2]).unwrap_err().to_string();
    assert_eq!(
        bool_err,
        "could not decode the message: a bool must be 0 or 1, found 2"
    );
    let utf8_err = codec::decode::<String>(&[2, 0xff, 0xfe])
        .unwrap_err()
        .to_string();
    assert!(utf8_err.contains("not valid UTF-8"), "{utf8_err}");
    let variant_err = codec::decode::<Message>(&[9]).unwrap_err().to_string();
    assert_eq!(
        variant_err,
        "could not decode the message: invalid value: integer `9`, \
         expected variant index 0 <= i < 5"
    );
    let option_err = codec::decode::<Option<u8>>(&[7]).unwrap_err();
    assert!(matches!(option_err, WireError::Decode(_)));
}

#[test]
fn length_less_sequences_are_an_encode_error() {
    struct Unsized;
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq((0..3u8).filter(|_| true))
        }
    }
    let err = codec::encode(&Unsized).unwrap_err();
    assert!(matches!(err, WireError::Encode(_)));
    assert!(
        err.to_string().contains("does not know its length"),
        "{err}"
    );

    let mut buf = vec![1, 2, 3];
    assert!(codec::encode_into(&Unsized, &mut buf).is_err());
    assert_eq!(
        buf,
        [1, 2, 3],
        "a failed encode_into leaves the buffer as it was"
    );
}

#[test]
fn custom_serialize_errors_are_kept() {
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not today"))
        }
    }
    assert_eq!(
        codec::encode(&Refuses).unwrap_err().to_string(),
        "could not encode the message: not today"
    );
}
