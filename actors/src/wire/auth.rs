//! Mutual authentication with an HMAC-SHA256 challenge/response, in the
//! style of Python's `multiprocessing.connection`.
//!
//! One direction of the handshake (the bytes are in the [parent
//! module](super)):
//!
//! 1. the *challenger* sends `#CHALLENGE#` followed by a fresh 40-byte random
//!    nonce;
//! 2. the *answerer* replies with `HMAC-SHA256(authkey, nonce)` (32 bytes);
//! 3. the challenger checks the digest in constant time and replies
//!    `#WELCOME#` or `#FAILURE#`.
//!
//! [`server_handshake`] runs [`deliver_challenge`] then [`answer_challenge`];
//! [`client_handshake`] runs them in the opposite order, so the two meet.
//! Each step is one frame read with a limit of [`HANDSHAKE_MAX_FRAME`] bytes,
//! and only these fixed messages are examined, so an unauthenticated peer
//! cannot make us allocate or reach the decoder.
//!
//! Frames are read with [`read_frame_unbuffered`], which never reads past the
//! end of a frame: once the handshake succeeds, the stream can be wrapped in
//! a [`FrameReader`](super::frame::FrameReader) without losing a byte. Do not
//! pass a buffered reader that the caller will drop afterwards.
//!
//! The exchange itself is a small state machine (`Handshake`) that does no
//! I/O; the blocking and tokio functions only move its frames.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use procvisor_actors::wire::auth::{client_handshake, server_handshake};
//!
//! let (mut server, mut client) = UnixStream::pair().unwrap();
//! let peer = std::thread::spawn(move || client_handshake(&mut client, b"secret"));
//! server_handshake(&mut server, b"secret").unwrap();
//! peer.join().unwrap().unwrap();
//! ```

use std::io::{Read, Write};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::WireError;
use super::frame::{
    FrameLimits, read_frame_async, read_frame_unbuffered, write_frame, write_frame_async,
};

/// First bytes of a challenge message.
pub const CHALLENGE_PREFIX: &[u8] = b"#CHALLENGE#";
/// Reply of a challenger that accepted the digest.
pub const WELCOME: &[u8] = b"#WELCOME#";
/// Reply of a challenger that rejected the digest.
pub const FAILURE: &[u8] = b"#FAILURE#";
/// Length of the random nonce in a challenge.
pub const NONCE_LEN: usize = 40;
/// Length of an HMAC-SHA256 digest.
pub(crate) const DIGEST_LEN: usize = 32;
/// Largest frame accepted during the handshake; every handshake message is
/// far smaller (51 bytes at most).
pub const HANDSHAKE_MAX_FRAME: usize = 256;

const CHALLENGE_LEN: usize = CHALLENGE_PREFIX.len() + NONCE_LEN;
const LIMITS: FrameLimits = FrameLimits::new(HANDSHAKE_MAX_FRAME);

type HmacSha256 = Hmac<Sha256>;

fn keyed_mac(authkey: &[u8]) -> Result<HmacSha256, WireError> {
    <HmacSha256 as KeyInit>::new_from_slice(authkey)
        .map_err(|_| WireError::Authentication("the authkey cannot be used as an HMAC key".into()))
}

/// What the driver of a [`Handshake`] must do next.
#[derive(Debug)]
enum Action {
    /// Send this message as one frame.
    Send(Vec<u8>),
    /// Read one frame and give it to [`Handshake::receive`].
    Receive,
    /// The exchange succeeded.
    Done,
}

/// One direction of the handshake, seen from one side.
#[derive(Debug)]
enum State {
    /// Challenger: the challenge is still to be sent.
    SendChallenge,
    /// Challenger: waiting for the digest of this nonce.
    AwaitDigest { nonce: [u8; NONCE_LEN] },
    /// Challenger: the verdict is to be sent; `None` accepts, `Some` rejects
    /// with this reason.
    SendVerdict { rejection: Option<String> },
    /// Answerer: waiting for the challenge.
    AwaitChallenge,
    /// Answerer: this digest is to be sent.
    SendDigest { digest: [u8; DIGEST_LEN] },
    /// Answerer: waiting for `#WELCOME#` or `#FAILURE#`.
    AwaitVerdict,
    /// Finished successfully.
    Accepted,
    /// Finished with a failure (the reason is reported once, then this state
    /// reports a generic one).
    Failed(String),
}

/// The handshake state machine: no I/O, just messages in and out.
struct Handshake<'k> {
    authkey: &'k [u8],
    state: State,
}

impl<'k> Handshake<'k> {
    fn challenger(authkey: &'k [u8]) -> Self {
        Self {
            authkey,
            state: State::SendChallenge,
        }
    }

    fn answerer(authkey: &'k [u8]) -> Self {
        Self {
            authkey,
            state: State::AwaitChallenge,
        }
    }

    /// The next thing to do. Sending states move on as soon as their message
    /// is handed out.
    fn next_action(&mut self) -> Result<Action, WireError> {
        match std::mem::replace(&mut self.state, State::Failed("handshake aborted".into())) {
            State::SendChallenge => {
                let mut nonce = [0u8; NONCE_LEN];
                getrandom::fill(&mut nonce).map_err(|err| {
                    WireError::Io(std::io::Error::other(format!(
                        "no random bytes for the challenge nonce: {err}"
                    )))
                })?;
                let mut message = Vec::with_capacity(CHALLENGE_LEN);
                message.extend_from_slice(CHALLENGE_PREFIX);
                message.extend_from_slice(&nonce);
                self.state = State::AwaitDigest { nonce };
                Ok(Action::Send(message))
            }
            State::SendVerdict { rejection: None } => {
                self.state = State::Accepted;
                Ok(Action::Send(WELCOME.to_vec()))
            }
            State::SendVerdict {
                rejection: Some(reason),
            } => {
                self.state = State::Failed(reason);
                Ok(Action::Send(FAILURE.to_vec()))
            }
            State::SendDigest { digest } => {
                self.state = State::AwaitVerdict;
                Ok(Action::Send(digest.to_vec()))
            }
            waiting @ (State::AwaitDigest { .. } | State::AwaitChallenge | State::AwaitVerdict) => {
                self.state = waiting;
                Ok(Action::Receive)
            }
            State::Accepted => {
                self.state = State::Accepted;
                Ok(Action::Done)
            }
            State::Failed(reason) => Err(WireError::Authentication(reason)),
        }
    }

    /// Takes the frame that [`Action::Receive`] asked for.
    fn receive(&mut self, frame: &[u8]) -> Result<(), WireError> {
        let state = std::mem::replace(&mut self.state, State::Failed("handshake aborted".into()));
        match state {
            State::AwaitDigest { nonce } => {
                let rejection = if frame.len() != DIGEST_LEN {
                    Some(format!(
                        "digest received was {} bytes long, expected {DIGEST_LEN}",
                        frame.len()
                    ))
                } else {
                    let mut mac = keyed_mac(self.authkey)?;
                    mac.update(&nonce);
                    mac.verify_slice(frame)
                        .err()
                        .map(|_| "digest received was wrong".to_owned())
                };
                self.state = State::SendVerdict { rejection };
                Ok(())
            }
            State::AwaitChallenge => {
                let nonce = parse_challenge(frame)?;
                let mut mac = keyed_mac(self.authkey)?;
                mac.update(nonce);
                let mut digest = [0u8; DIGEST_LEN];
                digest.copy_from_slice(&mac.finalize().into_bytes());
                self.state = State::SendDigest { digest };
                Ok(())
            }
            State::AwaitVerdict => {
                if frame == WELCOME {
                    self.state = State::Accepted;
                    Ok(())
                } else if frame == FAILURE {
                    Err(WireError::Authentication("digest sent was rejected".into()))
                } else {
                    Err(WireError::Authentication(format!(
                        "reply to our digest is neither #WELCOME# nor #FAILURE# \
                         ({} bytes{})",
                        frame.len(),
                        printable_prefix(frame)
                    )))
                }
            }
            other => {
                self.state = other;
                Err(WireError::Authentication(
                    "handshake received a message it did not ask for".into(),
                ))
            }
        }
    }
}

/// Checks the shape of a challenge and returns its nonce.
fn parse_challenge(frame: &[u8]) -> Result<&[u8], WireError> {
    let Some(nonce) = frame.strip_prefix(CHALLENGE_PREFIX) else {
        return Err(WireError::Authentication(format!(
            "challenge does not start with #CHALLENGE# ({} bytes{})",
            frame.len(),
            printable_prefix(frame)
        )));
    };
    if nonce.len() != NONCE_LEN {
        return Err(WireError::Authentication(format!(
            "challenge nonce is {} bytes long, expected {NONCE_LEN}",
            nonce.len()
        )));
    }
    Ok(nonce)
}

/// `", starting with "..."` for the first bytes of an unexpected message,
/// escaped, so an error says what the peer sent.
fn printable_prefix(frame: &[u8]) -> String {
    if frame.is_empty() {
        return String::new();
    }
    let shown = &frame[..frame.len().min(16)];
    format!(", starting with \"{}\"", shown.escape_ascii())
}

/// Handshake frames are small: a larger one means the peer speaks another
/// protocol, which is an authentication failure, not a transport error.
fn handshake_error(err: WireError) -> WireError {
    match err {
        WireError::Oversized { len, max } => WireError::Authentication(format!(
            "peer sent a {len}-byte handshake message, handshake messages are at most {max} bytes"
        )),
        other => other,
    }
}

fn drive<S: Read + Write + ?Sized>(
    stream: &mut S,
    mut handshake: Handshake<'_>,
) -> Result<(), WireError> {
    loop {
        match handshake.next_action()? {
            Action::Send(message) => {
                write_frame(stream, &message, &LIMITS)?;
                stream.flush()?;
            }
            Action::Receive => {
                let frame = read_frame_unbuffered(stream, &LIMITS).map_err(handshake_error)?;
                handshake.receive(&frame)?;
            }
            Action::Done => return Ok(()),
        }
    }
}

async fn drive_async<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    mut handshake: Handshake<'_>,
) -> Result<(), WireError> {
    loop {
        match handshake.next_action()? {
            Action::Send(message) => {
                write_frame_async(stream, &message, &LIMITS).await?;
                stream.flush().await?;
            }
            Action::Receive => {
                let frame = read_frame_async(stream, &LIMITS)
                    .await
                    .map_err(handshake_error)?;
                handshake.receive(&frame)?;
            }
            Action::Done => return Ok(()),
        }
    }
}

/// Challenges the peer to prove it knows `authkey`.
///
/// Sends a random challenge, checks the digest that comes back and tells the
/// peer the verdict (`#WELCOME#` or `#FAILURE#`).
///
/// # Errors
///
/// [`WireError::Authentication`] if the digest is wrong ("digest received
/// was wrong") or malformed, or the peer sends an oversized message;
/// [`WireError::Eof`] / [`WireError::Truncated`] if the peer closes the
/// connection; [`WireError::Io`] if the stream fails.
pub fn deliver_challenge<S: Read + Write + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    drive(stream, Handshake::challenger(authkey))
}

/// Answers the peer's challenge with the HMAC of its nonce under `authkey`.
///
/// # Errors
///
/// [`WireError::Authentication`] if the peer rejects the digest ("digest
/// sent was rejected"), or its challenge or verdict is malformed;
/// [`WireError::Eof`] / [`WireError::Truncated`] if the peer closes the
/// connection; [`WireError::Io`] if the stream fails.
pub fn answer_challenge<S: Read + Write + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    drive(stream, Handshake::answerer(authkey))
}

/// Server side of the mutual handshake: [`deliver_challenge`], then
/// [`answer_challenge`].
///
/// # Errors
///
/// As those two functions.
pub fn server_handshake<S: Read + Write + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    deliver_challenge(stream, authkey)?;
    answer_challenge(stream, authkey)
}

/// Client side of the mutual handshake: [`answer_challenge`], then
/// [`deliver_challenge`].
///
/// # Errors
///
/// As those two functions.
pub fn client_handshake<S: Read + Write + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    answer_challenge(stream, authkey)?;
    deliver_challenge(stream, authkey)
}

/// Tokio twin of [`deliver_challenge`].
///
/// # Errors
///
/// As [`deliver_challenge`].
pub async fn deliver_challenge_async<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    drive_async(stream, Handshake::challenger(authkey)).await
}

/// Tokio twin of [`answer_challenge`].
///
/// # Errors
///
/// As [`answer_challenge`].
pub async fn answer_challenge_async<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    drive_async(stream, Handshake::answerer(authkey)).await
}

/// Tokio twin of [`server_handshake`].
///
/// # Errors
///
/// As [`server_handshake`].
pub async fn server_handshake_async<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    deliver_challenge_async(stream, authkey).await?;
    answer_challenge_async(stream, authkey).await
}

/// Tokio twin of [`client_handshake`].
///
/// # Errors
///
/// As [`client_handshake`].
pub async fn client_handshake_async<S: AsyncRead + AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    authkey: &[u8],
) -> Result<(), WireError> {
    answer_challenge_async(stream, authkey).await?;
    deliver_challenge_async(stream, authkey).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python: `hmac.new(b"secret", bytes(range(40)), "sha256").hexdigest()`.
    const PY_DIGEST: &str = "31063303a8b33a79a5a31c781abd24b5b6afe0820f1c9396a56601cfd20755bd";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn challenge_with(nonce: &[u8]) -> Vec<u8> {
        [CHALLENGE_PREFIX, nonce].concat()
    }

    #[test]
    fn answerer_digest_matches_python_hmac() {
        let nonce: Vec<u8> = (0..40).collect();
        let mut machine = Handshake::answerer(b"secret");
        assert!(matches!(machine.next_action().unwrap(), Action::Receive));
        machine.receive(&challenge_with(&nonce)).unwrap();
        let Action::Send(digest) = machine.next_action().unwrap() else {
            panic!("answerer should send its digest");
        };
        assert_eq!(hex(&digest), PY_DIGEST);
        assert!(matches!(machine.next_action().unwrap(), Action::Receive));
        machine.receive(WELCOME).unwrap();
        assert!(matches!(machine.next_action().unwrap(), Action::Done));
    }

    #[test]
    fn challenger_accepts_right_digest_and_rejects_wrong_one() {
        for (tamper, accepted) in [(false, true), (true, false)] {
            let mut machine = Handshake::challenger(b"key");
            let Action::Send(challenge) = machine.next_action().unwrap() else {
                panic!("challenger should send a challenge");
            };
            assert_eq!(challenge.len(), CHALLENGE_LEN);
            let nonce = parse_challenge(&challenge).unwrap();
            let mut mac = keyed_mac(b"key").unwrap();
            mac.update(nonce);
            let mut digest = mac.finalize().into_bytes().to_vec();
            if tamper {
                digest[0] ^= 1;
            }
            machine.receive(&digest).unwrap();
            let Action::Send(verdict) = machine.next_action().unwrap() else {
                panic!("challenger should send a verdict");
            };
            if accepted {
                assert_eq!(verdict, WELCOME);
                assert!(matches!(machine.next_action().unwrap(), Action::Done));
            } else {
                assert_eq!(verdict, FAILURE);
                let err = machine.next_action().unwrap_err();
                assert_eq!(
                    err.to_string(),
                    "authentication failed: digest received was wrong"
                );
            }
        }
    }

    #[test]
    fn nonces_are_fresh() {
        let mut first = Handshake::challenger(b"k");
        let mut second = Handshake::challenger(b"k");
        let (Action::Send(a), Action::Send(b)) =
            (first.next_action().unwrap(), second.next_action().unwrap())
        else {
            panic!("challengers should send challenges");
        };
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_challenges_are_described() {
        let short = parse_challenge(&challenge_with(&[1; 39])).unwrap_err();
        assert_eq!(
            short.to_string(),
            "authentication failed: challenge nonce is 39 bytes long, expected 40"
        );
        let wrong = parse_challenge(b"#CHALLENGX#0123").unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "authentication failed: challenge does not start with #CHALLENGE# \
             (15 bytes, starting with \"#CHALLENGX#0123\")"
        );
    }

    #[test]
    fn wrong_length_digest_is_rejected_with_failure() {
        let mut machine = Handshake::challenger(b"k");
        machine.next_action().unwrap();
        machine.receive(&[0; 31]).unwrap();
        let Action::Send(verdict) = machine.next_action().unwrap() else {
            panic!("challenger should send a verdict");
        };
        assert_eq!(verdict, FAILURE);
        assert_eq!(
            machine.next_action().unwrap_err().to_string(),
            "authentication failed: digest received was 31 bytes long, expected 32"
        );
    }
}
