//! Handshake over real sockets: success, wrong keys, hostile or dying peers.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use procvisor_actors::wire::auth::{
    CHALLENGE_PREFIX, FAILURE, NONCE_LEN, answer_challenge, client_handshake, deliver_challenge,
    server_handshake,
};
use procvisor_actors::wire::frame::{
    FrameLimits, FrameReader, encode_frame_into, read_frame_unbuffered, write_frame,
};
use procvisor_actors::wire::{
    WireError, client_handshake_async, deliver_challenge_async, server_handshake_async,
};

/// Generous upper bound: a test that would hang fails with a timeout error
/// instead.
const TIMEOUT: Duration = Duration::from_secs(20);

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    for s in [&a, &b] {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_write_timeout(Some(TIMEOUT)).unwrap();
    }
    (a, b)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame_into(&mut out, payload).unwrap();
    out
}

fn auth_text(err: &WireError) -> &str {
    match err {
        WireError::Authentication(text) => text,
        other => panic!("expected an authentication error, got {other:?}"),
    }
}

/// Runs `ours` on one end while a thread plays `peer` on the other.
fn with_peer<T: Send + 'static>(
    peer: impl FnOnce(UnixStream) -> T + Send + 'static,
    ours: impl FnOnce(&mut UnixStream) -> Result<(), WireError>,
) -> (Result<(), WireError>, T) {
    let (mut a, b) = pair();
    let handle = thread::spawn(move || peer(b));
    let result = ours(&mut a);
    drop(a);
    (result, handle.join().unwrap())
}

#[test]
fn same_key_succeeds_on_both_sides() {
    let (result, peer) = with_peer(
        |mut s| client_handshake(&mut s, b"shared secret"),
        |s| server_handshake(s, b"shared secret"),
    );
    result.unwrap();
    peer.unwrap();
}

#[test]
fn empty_and_long_keys_work() {
    for key in [Vec::new(), vec![7u8; 1000]] {
        let peer_key = key.clone();
        let (result, peer) = with_peer(
            move |mut s| client_handshake(&mut s, &peer_key),
            |s| server_handshake(s, &key),
        );
        result.unwrap();
        peer.unwrap();
    }
}

#[test]
fn wrong_key_fails_on_both_sides() {
    let (server, client) = with_peer(
        |mut s| client_handshake(&mut s, b"guess"),
        |s| server_handshake(s, b"secret"),
    );
    assert_eq!(auth_text(&server.unwrap_err()), "digest received was wrong");
    assert_eq!(auth_text(&client.unwrap_err()), "digest sent was rejected");

    // One direction alone, both ways round.
    let (challenger, answerer) = with_peer(
        |mut s| answer_challenge(&mut s, b"b"),
        |s| deliver_challenge(s, b"a"),
    );
    assert_eq!(
        challenger.unwrap_err().to_string(),
        "authentication failed: digest received was wrong"
    );
    assert_eq!(
        answerer.unwrap_err().to_string(),
        "authentication failed: digest sent was rejected"
    );
}

#[test]
fn stream_is_left_at_a_frame_boundary() {
    // The client's last handshake step is a send, so it may talk at once;
    // the server must find every byte in its FrameReader.
    let (result, peer) = with_peer(
        |mut s| {
            client_handshake(&mut s, b"k")?;
            for i in 0..100u32 {
                write_frame(&mut s, &i.to_be_bytes(), &FrameLimits::default())?;
            }
            Ok::<_, WireError>(())
        },
        |s| {
            server_handshake(s, b"k")?;
            let mut reader = FrameReader::new(s.try_clone()?, FrameLimits::default());
            for i in 0..100u32 {
                assert_eq!(reader.read_frame()?, i.to_be_bytes());
            }
            Ok(())
        },
    );
    result.unwrap();
    peer.unwrap();
}

#[test]
fn garbage_challenge_is_an_authentication_error() {
    let (result, ()) = with_peer(
        |mut s| s.write_all(&frame(b"GARBAGE")).unwrap(),
        |s| answer_challenge(s, b"k"),
    );
    assert_eq!(
        auth_text(&result.unwrap_err()),
        "challenge does not start with #CHALLENGE# (7 bytes, starting with \"GARBAGE\")"
    );

    let (result, ()) = with_peer(
        |mut s| {
            let short = [CHALLENGE_PREFIX, &[0; NONCE_LEN - 1]].concat();
            s.write_all(&frame(&short)).unwrap();
        },
        |s| answer_challenge(s, b"k"),
    );
    assert_eq!(
        auth_text(&result.unwrap_err()),
        "challenge nonce is 39 bytes long, expected 40"
    );
}

#[test]
fn oversized_handshake_message_is_refused_without_reading_it() {
    // An HTTP request instead of a frame: "GET " is a 1.2 GB length.
    let (result, ()) = with_peer(
        |mut s| s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap(),
        |s| answer_challenge(s, b"k"),
    );
    assert_eq!(
        auth_text(&result.unwrap_err()),
        "peer sent a 1195725856-byte handshake message, handshake messages are at most 256 bytes"
    );

    // A 257-byte digest on the challenger side.
    let (result, ()) = with_peer(
        |mut s| {
            read_frame_unbuffered(&mut s, &FrameLimits::new(256)).unwrap();
            s.write_all(&frame(&[0; 257])).unwrap();
        },
        |s| deliver_challenge(s, b"k"),
    );
    assert!(auth_text(&result.unwrap_err()).contains("257-byte handshake message"));
}

#[test]
fn malformed_digest_and_verdict_are_authentication_errors() {
    // The challenger answers a short digest with #FAILURE#.
    let (result, verdict) = with_peer(
        |mut s| {
            read_frame_unbuffered(&mut s, &FrameLimits::new(256)).unwrap();
            s.write_all(&frame(b"short")).unwrap();
            read_frame_unbuffered(&mut s, &FrameLimits::new(256)).unwrap()
        },
        |s| deliver_challenge(s, b"k"),
    );
    assert_eq!(
        auth_text(&result.unwrap_err()),
        "digest received was 5 bytes long, expected 32"
    );
    assert_eq!(verdict, FAILURE);

    // The answerer gets neither #WELCOME# nor #FAILURE#.
    let (result, ()) = with_peer(
        |mut s| {
            let challenge = [CHALLENGE_PREFIX, &[1; NONCE_LEN]].concat();
            s.write_all(&frame(&challenge)).unwrap();
            read_frame_unbuffered(&mut s, &FrameLimits::new(256)).unwrap();
            s.write_all(&frame(b"#WELCOME")).unwrap();
        },
        |s| answer_challenge(s, b"k"),
    );
    assert_eq!(
        auth_text(&result.unwrap_err()),
        "reply to our digest is neither #WELCOME# nor #FAILURE# (8 bytes, starting with \"#WELCOME\")"
    );
}

#[test]
fn truncated_challenge_is_truncated() {
    let (result, ()) = with_peer(
        |mut s| {
            s.write_all(&[0, 0, 0, 51]).unwrap();
            s.write_all(&CHALLENGE_PREFIX[..10]).unwrap();
        },
        |s| answer_challenge(s, b"k"),
    );
    assert!(matches!(
        result,
        Err(WireError::Truncated {
            expected: 55,
            got: 14
        })
    ));
    let (result, ()) = with_peer(
        |mut s| s.write_all(&[0, 0]).unwrap(),
        |s| answer_challenge(s, b"k"),
    );
    assert!(matches!(
        result,
        Err(WireError::Truncated {
            expected: 4,
            got: 2
        })
    ));
}

#[test]
fn peer_closing_mid_handshake_is_an_error_not_a_hang() {
    // Closes at once.
    let (result, ()) = with_peer(drop, |s| answer_challenge(s, b"k"));
    assert!(matches!(result, Err(WireError::Eof)), "{result:?}");
    let (result, ()) = with_peer(drop, |s| server_handshake(s, b"k"));
    assert!(
        matches!(result, Err(WireError::Eof | WireError::Io(_))),
        "{result:?}"
    );
    // Reads the challenge, then closes.
    let (result, ()) = with_peer(
        |mut s| {
            read_frame_unbuffered(&mut s, &FrameLimits::new(256)).unwrap();
        },
        |s| deliver_challenge(s, b"k"),
    );
    assert!(matches!(result, Err(WireError::Eof)), "{result:?}");
    // Completes the first direction, then closes instead of challenging.
    let (result, peer) = with_peer(
        |mut s| {
            answer_challenge(&mut s, b"k")?;
            s.shutdown(Shutdown::Both).map_err(WireError::from)
        },
        |s| server_handshake(s, b"k"),
    );
    peer.unwrap();
    assert!(matches!(result, Err(WireError::Eof)), "{result:?}");
    // Answers with a digest and closes before the verdict arrives.
    let (result, ()) = with_peer(
        |mut s| {
            let challenge = [CHALLENGE_PREFIX, &[1; NONCE_LEN]].concat();
            s.write_all(&frame(&challenge)).unwrap();
        },
        |s| answer_challenge(s, b"k"),
    );
    assert!(
        matches!(result, Err(WireError::Eof | WireError::Io(_))),
        "{result:?}"
    );
}

#[test]
fn challenge_bytes_on_the_wire() {
    let (mut ours, mut theirs) = pair();
    let challenger = thread::spawn(move || deliver_challenge(&mut ours, b"k"));
    let mut header = [0u8; 4];
    theirs.read_exact(&mut header).unwrap();
    assert_eq!(header, [0, 0, 0, 51]);
    let mut challenge = [0u8; 51];
    theirs.read_exact(&mut challenge).unwrap();
    assert_eq!(&challenge[..11], b"#CHALLENGE#");
    theirs.write_all(&frame(&[0; 32])).unwrap();
    let mut verdict = [0u8; 13];
    theirs.read_exact(&mut verdict).unwrap();
    assert_eq!(&verdict[..4], [0, 0, 0, 9]);
    assert_eq!(&verdict[4..], FAILURE);
    let err = challenger.join().unwrap().unwrap_err();
    assert_eq!(auth_text(&err), "digest received was wrong");
}

#[tokio::test]
async fn async_handshake_succeeds_and_fails_like_the_blocking_one() {
    let (mut a, mut b) = tokio::net::UnixStream::pair().unwrap();
    let (server, client) = tokio::join!(
        server_handshake_async(&mut a, b"key"),
        client_handshake_async(&mut b, b"key")
    );
    server.unwrap();
    client.unwrap();

    let (mut a, mut b) = tokio::net::UnixStream::pair().unwrap();
    let (server, client) = tokio::join!(
        server_handshake_async(&mut a, b"key"),
        client_handshake_async(&mut b, b"other")
    );
    assert_eq!(auth_text(&server.unwrap_err()), "digest received was wrong");
    assert_eq!(auth_text(&client.unwrap_err()), "digest sent was rejected");

    let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
    drop(b);
    assert!(matches!(
        deliver_challenge_async(&mut a, b"key").await,
        Err(WireError::Eof | WireError::Io(_))
    ));
}

#[tokio::test]
async fn async_server_talks_to_a_blocking_client() {
    let (a, b) = pair();
    let client = thread::spawn(move || {
        let mut b = b;
        client_handshake(&mut b, b"mixed")
    });
    a.set_nonblocking(true).unwrap();
    let mut a = tokio::net::UnixStream::from_std(a).unwrap();
    server_handshake_async(&mut a, b"mixed").await.unwrap();
    client.join().unwrap().unwrap();
}
