//! `Listener` and `Client` between real processes: Unix and TCP addresses, the private
//! temporary directory, authentication (right key, wrong key on either side, impostors, silent
//! peers), and a listener that keeps serving good clients while bad ones misbehave.

procvisor::test_init!();

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, start};
use procvisor::error::{ConnectError, RecvError};
use procvisor::{Address, Client, Family, Listener, Process, Sender, pipe_oneway};
use procvisor_actors::wire::auth::{CHALLENGE_PREFIX, FAILURE, WELCOME};
use procvisor_actors::wire::frame::{FrameLimits, read_frame_unbuffered, write_frame};

const AUTHKEY: &[u8] = b"secret password";

// ---- addresses -----------------------------------------------------------------------------

#[test]
fn a_default_listener_is_a_unix_socket_in_a_private_directory_removed_on_close() {
    let listener = Listener::builder().bind().unwrap();
    let Address::Unix(path) = listener.address().clone() else {
        panic!("default family is AF_UNIX: {:?}", listener.address());
    };
    assert!(path.exists());
    let dir = path.parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    assert!(listener.last_accepted().is_none());
    assert!(listener.fd().unwrap().as_raw_fd() >= 0);
    assert!(format!("{listener:?}").contains("authenticates: false"));

    listener.close();
    listener.close();
    assert!(listener.is_closed());
    assert!(
        !path.exists() && !dir.exists(),
        "{} left behind",
        dir.display()
    );
    let err = listener.accept().unwrap_err();
    assert!(matches!(err, ConnectError::Closed), "{err:?}");
    assert_eq!(err.to_string(), "the listener is closed");
    assert!(listener.fd().is_none(), "a closed listener has no fd");

    // Dropping cleans up too.
    let other = Listener::builder().family(Family::Unix).bind().unwrap();
    let path = other.address().to_string();
    drop(other);
    assert!(!std::path::Path::new(&path).exists());
}

#[test]
fn a_listener_on_a_given_unix_path_removes_its_socket_file() {
    let dir = common::TempDir::new("listener-path");
    let path = dir.path().join("my.sock");
    let address: Address = path.to_str().unwrap().parse().unwrap();
    assert_eq!(address, Address::unix(&path));
    let listener = Listener::builder()
        .address(address.clone())
        .backlog(5)
        .bind()
        .unwrap();
    assert_eq!(listener.address(), &address);
    // The path is taken while the listener lives.
    let err = Listener::bind(&address).unwrap_err();
    assert!(matches!(err, ConnectError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot listen on the Unix socket"),
        "{err}"
    );
    drop(listener);
    assert!(!path.exists());
    assert!(dir.path().exists(), "a directory it did not create stays");
}

#[test]
fn inet_addresses_are_inferred_and_port_zero_is_resolved() {
    let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).unwrap();
    let Address::Inet(addr) = listener.address().clone() else {
        panic!("{:?}", listener.address());
    };
    assert!(addr.ip().is_loopback() && addr.port() != 0);

    let by_family = Listener::builder().family(Family::Inet).bind().unwrap();
    assert_eq!(by_family.address().family(), Family::Inet);

    let by_name = Listener::bind(&Address::inet("localhost", 0).unwrap()).unwrap();
    assert_eq!(by_name.address().family(), Family::Inet);

    let err = Listener::builder()
        .address("127.0.0.1:0".parse().unwrap())
        .family(Family::Unix)
        .bind()
        .unwrap_err();
    assert!(matches!(err, ConnectError::Address(_)), "{err:?}");
    let err = Client::builder(listener.address().clone())
        .family(Family::Unix)
        .connect()
        .unwrap_err();
    assert!(matches!(err, ConnectError::Address(_)), "{err:?}");
}

#[test]
fn connecting_to_nobody_is_a_clear_error() {
    let dir = common::TempDir::new("nobody");
    let address = Address::unix(dir.path().join("nobody.sock"));
    let err = Client::connect(&address).unwrap_err();
    assert!(matches!(err, ConnectError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {address}: ")),
        "{err}"
    );
}

// ---- the docs' example, as two processes ---------------------------------------------------

/// Child: the docs' client. Reports what it received back to the listener.
fn docs_client(address: Address) -> procvisor::Result<()> {
    let conn = Client::builder(address).authkey(AUTHKEY).connect()?;
    let value: (f64, Option<i32>, String, String) = conn.recv()?;
    let bytes = conn.recv_bytes()?;
    let mut arr = [0u8; 5 * 4];
    let count = conn.recv_bytes_into(&mut arr)?;
    let ints: Vec<i32> = arr
        .chunks(4)
        .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    conn.send(&format!(
        "{value:?} {} {count} {ints:?}",
        String::from_utf8_lossy(&bytes)
    ))?;
    Ok(())
}

/// The listener's side of the docs' example, with the client in a child process.
fn docs_example(listener: &Listener) {
    let mut guard = KillOnDrop::new();
    let p = start(
        &mut guard,
        Process::new(docs_client, (listener.address().clone(),)),
    );
    let conn = listener.accept().unwrap();
    conn.send(&(2.25, None::<i32>, "junk", "float")).unwrap();
    conn.send_bytes(b"hello").unwrap();
    let arr: Vec<u8> = [42i32, 1729].iter().flat_map(|i| i.to_ne_bytes()).collect();
    conn.send_bytes(&arr).unwrap();
    assert_eq!(
        conn.recv::<String>().unwrap(),
        "(2.25, None, \"junk\", \"float\") hello 8 [42, 1729, 0, 0, 0]"
    );
    join_ok(&p);
    assert!(matches!(conn.recv::<String>(), Err(RecvError::Eof)));
}

#[test]
fn the_docs_listener_and_client_over_tcp() {
    let listener = Listener::builder()
        .address("127.0.0.1:0".parse().unwrap())
        .authkey(AUTHKEY)
        .bind()
        .unwrap();
    let Address::Inet(bound) = listener.address().clone() else {
        panic!("{:?}", listener.address());
    };
    assert!(listener.last_accepted().is_none());
    docs_example(&listener);
    match listener.last_accepted() {
        Some(Address::Inet(peer)) => {
            assert!(peer.ip().is_loopback());
            assert_ne!(peer.port(), bound.port());
        }
        other => panic!("last_accepted: {other:?}"),
    }
}

#[test]
fn the_docs_listener_and_client_over_a_unix_socket() {
    let listener = Listener::builder().authkey(AUTHKEY).bind().unwrap();
    docs_example(&listener);
    assert!(
        listener.last_accepted().is_none(),
        "a Unix client's socket has no name"
    );
}

// ---- wrong keys, impostors, silent peers ----------------------------------------------------

/// Child: connects with `key` and reports the outcome on `report`.
fn client_with_key(address: Address, key: Vec<u8>, report: Sender) -> procvisor::Result<()> {
    match Client::builder(address).authkey(&key).connect() {
        Ok(conn) => {
            conn.send("authenticated")?;
            report.send("ok")?;
        }
        Err(e) => report.send(&e.to_string())?,
    }
    Ok(())
}

#[test]
fn a_wrong_key_fails_on_both_sides_and_the_listener_keeps_going() {
    let mut guard = KillOnDrop::new();
    let listener = Listener::builder().authkey(AUTHKEY).bind().unwrap();
    let address = listener.address().clone();

    let (report_rx, report_tx) = pipe_oneway().unwrap();
    let bad = start(
        &mut guard,
        Process::new(
            client_with_key,
            (address.clone(), b"wrong key".to_vec(), report_tx),
        ),
    );
    let err = listener.accept().unwrap_err();
    assert!(matches!(err, ConnectError::Auth(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "authentication failed: digest received was wrong"
    );
    assert_eq!(
        report_rx.recv::<String>().unwrap(),
        "authentication failed: digest sent was rejected"
    );
    join_ok(&bad);

    let (report_rx, report_tx) = pipe_oneway().unwrap();
    let good = start(
        &mut guard,
        Process::new(client_with_key, (address, AUTHKEY.to_vec(), report_tx)),
    );
    let conn = listener.accept().unwrap();
    assert_eq!(conn.recv::<String>().unwrap(), "authenticated");
    assert_eq!(report_rx.recv::<String>().unwrap(), "ok");
    join_ok(&good);
}

/// Runs a fake listener on `stream` that accepts any digest but cannot answer the client's
/// challenge (it does not know the key).
fn impostor(mut stream: UnixStream) -> Vec<u8> {
    let limits = FrameLimits::new(256);
    let mut challenge = CHALLENGE_PREFIX.to_vec();
    challenge.extend_from_slice(&[7u8; 40]);
    write_frame(&mut stream, &challenge, &limits).unwrap();
    let _digest = read_frame_unbuffered(&mut stream, &limits).unwrap();
    write_frame(&mut stream, WELCOME, &limits).unwrap();
    let _their_challenge = read_frame_unbuffered(&mut stream, &limits).unwrap();
    write_frame(&mut stream, &[0u8; 32], &limits).unwrap();
    read_frame_unbuffered(&mut stream, &limits).unwrap()
}

#[test]
fn a_client_detects_a_listener_that_does_not_know_the_key() {
    let dir = common::TempDir::new("impostor");
    let path = dir.path().join("impostor.sock");
    let raw = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || impostor(raw.accept().unwrap().0));
    let err = Client::builder(Address::unix(&path))
        .authkey(AUTHKEY)
        .connect()
        .unwrap_err();
    assert!(matches!(err, ConnectError::Auth(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "authentication failed: digest received was wrong"
    );
    assert_eq!(server.join().unwrap(), FAILURE, "the impostor is told");
}

#[test]
fn a_client_without_a_key_or_a_silent_one_is_refused_in_time() {
    let listener = Listener::builder()
        .authkey(AUTHKEY)
        .handshake_timeout(Duration::from_millis(300))
        .bind()
        .unwrap();
    let address = listener.address().clone();

    // A client that does not authenticate: it receives the challenge as if it were a message,
    // and hangs up.
    let addr = address.clone();
    let client = std::thread::spawn(move || {
        let conn = Client::connect(&addr).unwrap();
        let challenge = conn.recv_bytes().unwrap();
        assert!(challenge.starts_with(CHALLENGE_PREFIX));
    });
    let err = listener.accept().unwrap_err();
    assert_eq!(
        err.to_string(),
        "authentication failed: the peer closed the connection during the handshake"
    );
    client.join().unwrap();

    // A client that connects and says nothing.
    let Address::Unix(path) = &address else {
        unreachable!()
    };
    let silent = UnixStream::connect(path).unwrap();
    let t = Instant::now();
    let err = listener.accept().unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        err.to_string(),
        "authentication failed: the peer did not complete the handshake within 300ms"
    );
    drop(silent);
}

#[test]
fn a_handshake_timeout_of_duration_max_means_no_limit() {
    // The OS takes the huge timeout as "none"; the handshake still runs normally.
    let listener = Listener::builder()
        .authkey(AUTHKEY)
        .handshake_timeout(Duration::MAX)
        .bind()
        .unwrap();
    let address = listener.address().clone();
    let client = std::thread::spawn(move || {
        let conn = Client::builder(address)
            .authkey(AUTHKEY)
            .handshake_timeout(Duration::MAX)
            .connect()
            .unwrap();
        conn.recv::<String>().unwrap()
    });
    listener.accept().unwrap().send("no limit").unwrap();
    assert_eq!(client.join().unwrap(), "no limit");
}

fn client_with_tree_key(address: Address) -> procvisor::Result<()> {
    let conn = Client::builder(address)
        .authkey(procvisor::current_process().authkey())
        .connect()?;
    Ok(conn.send("family")?)
}

#[test]
fn the_process_trees_key_authenticates_the_tree() {
    let mut guard = KillOnDrop::new();
    let listener = Listener::builder()
        .authkey(procvisor::current_process().authkey())
        .bind()
        .unwrap();
    let address = listener.address().clone();
    let child = start(
        &mut guard,
        Process::new(client_with_tree_key, (address.clone(),)),
    );
    assert_eq!(
        listener.accept().unwrap().recv::<String>().unwrap(),
        "family"
    );
    join_ok(&child);

    // A child given another key is a stranger.
    let stranger = Process::new(client_with_tree_key, (address,)).authkey(b"another tree".to_vec());
    let stranger = start(&mut guard, stranger);
    assert!(matches!(listener.accept(), Err(ConnectError::Auth(_))));
    stranger.join_timeout(GENEROUS).unwrap();
    assert_eq!(stranger.exitcode(), Some(1), "its connect failed");
}

// ---- hardening -----------------------------------------------------------------------------

/// Child: a client that misbehaves in the way `kind` says, or a good one.
fn misbehave(address: Address, kind: String) -> procvisor::Result<()> {
    let Address::Unix(path) = &address else {
        unreachable!()
    };
    // A raw client that first takes the listener's challenge (so the listener is not
    // writing when we misbehave), and after misbehaving waits for the listener to hang up.
    let raw = || {
        let mut stream = UnixStream::connect(path).unwrap();
        let mut challenge = [0u8; 4 + 51];
        std::io::Read::read_exact(&mut stream, &mut challenge).unwrap();
        stream
    };
    let until_hung_up = |stream: UnixStream| {
        let _ = std::io::Read::read_to_end(&mut &stream, &mut Vec::new());
    };
    match kind.as_str() {
        "good" => {
            let conn = Client::builder(address).authkey(AUTHKEY).connect()?;
            conn.send("hello")?;
            assert_eq!(conn.recv::<String>()?, "HELLO");
        }
        "garbage" => {
            let mut stream = raw();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: procvisor\r\n\r\n")
                .unwrap();
            until_hung_up(stream);
        }
        "truncated" => {
            // Half of a digest frame, then gone.
            raw().write_all(&[0, 0, 0, 32, 1, 2]).unwrap();
        }
        "oversized" => {
            let mut stream = raw();
            stream
                .write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
                .unwrap();
            until_hung_up(stream);
        }
        "wrong-key" => {
            assert!(matches!(
                Client::builder(address).authkey(b"nope").connect(),
                Err(ConnectError::Auth(_))
            ));
        }
        "silent" => until_hung_up(raw()),
        "mid-frame" => {
            // Authenticates, then disconnects in the middle of a message.
            let conn = Client::builder(address).authkey(AUTHKEY).connect()?;
            let held = conn.fd().expect("open");
            let fd = held.as_raw_fd();
            // SAFETY (test): write raw bytes on the connection's own socket, which stays
            // owned by `conn`.
            let mut raw = std::mem::ManuallyDrop::new(unsafe {
                <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
            });
            let _ = raw.write_all(&[0, 0, 0, 200, 1, 2, 3, 4]);
        }
        "huge-after-auth" => {
            let conn = Client::builder(address).authkey(AUTHKEY).connect()?;
            // The listener refuses it after the header and hangs up: the rest cannot be sent.
            let _ = conn.send_bytes(&vec![0u8; 2 << 20]);
        }
        other => panic!("unknown kind {other}"),
    }
    Ok(())
}

#[test]
fn a_listener_keeps_serving_good_clients_while_bad_ones_misbehave() {
    let listener = Listener::builder()
        .authkey(AUTHKEY)
        .handshake_timeout(Duration::from_millis(500))
        .max_frame(1 << 20)
        .bind()
        .unwrap();
    let address = listener.address().clone();
    let kinds = [
        "good",
        "garbage",
        "good",
        "truncated",
        "oversized",
        "good",
        "wrong-key",
        "silent",
        "good",
        "mid-frame",
        "huge-after-auth",
        "good",
    ];
    let mut guard = KillOnDrop::new();
    let mut outcomes = Vec::new();
    for kind in kinds {
        // One client at a time, so each outcome belongs to a known kind.
        let p = start(
            &mut guard,
            Process::new(misbehave, (address.clone(), kind.to_string())),
        );
        let outcome = match listener.accept() {
            Err(ConnectError::Auth(e)) => format!("refused: {}", e.reason),
            Err(other) => panic!("{kind}: the listener failed: {other:?}"),
            Ok(conn) => match conn.recv::<String>() {
                Ok(text) => {
                    conn.send(&text.to_uppercase()).unwrap();
                    format!("served {text}")
                }
                Err(e) => format!("dropped: {e}"),
            },
        };
        join_ok(&p);
        outcomes.push(format!("{kind}: {outcome}"));
    }
    let expected = [
        "good: served hello",
        "garbage: refused: peer sent a 1195725856-byte handshake message, handshake messages \
         are at most 256 bytes",
        "good: served hello",
        "truncated: refused: the peer closed the connection during the handshake",
        "oversized: refused: peer sent a 4294967295-byte handshake message, handshake messages \
         are at most 256 bytes",
        "good: served hello",
        "wrong-key: refused: digest received was wrong",
        "silent: refused: the peer did not complete the handshake within 500ms",
        "good: served hello",
        "mid-frame: dropped: connection failed: connection closed by the peer in the middle of \
         a frame: expected 204 bytes, got 8",
        "huge-after-auth: dropped: message of 2097152 bytes is larger than the frame limit of \
         1048576 bytes",
        "good: served hello",
    ];
    assert_eq!(outcomes, expected);
}

#[test]
fn without_a_key_garbage_reaches_only_the_connection_that_sent_it() {
    let listener = Listener::builder().bind().unwrap();
    let Address::Unix(path) = listener.address().clone() else {
        unreachable!()
    };
    let mut bad = UnixStream::connect(&path).unwrap();
    bad.write_all(&[0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    let conn = listener.accept().unwrap();
    assert!(matches!(
        conn.recv::<String>(),
        Err(RecvError::Decode { .. })
    ));
    assert!(matches!(
        conn.recv::<String>(),
        Err(RecvError::FrameTooLarge { .. })
    ));
    drop(bad);
    let good = Client::connect(listener.address()).unwrap();
    good.send("fine").unwrap();
    assert_eq!(listener.accept().unwrap().recv::<String>().unwrap(), "fine");
}
