//! `pipe()` and `Connection` between real processes: messages both ways, bytes, EOF,
//! maxlength, BufferTooShort, poll, one-way misuse, passing ends to children (spawn and fork),
//! large messages, frame limits, `wait()` and closing.

procvisor::test_init!();

mod common;

use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop, join_ok, start};
use procvisor::error::StartError;
use procvisor::{Connection, Error, Process, StartMethod, pipe, wait};
use serde::{Deserialize, Serialize};

// ---- messages both ways --------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Msg {
    Text(String),
    Numbers(Vec<i64>),
    Nested {
        id: u32,
        tags: Vec<(String, Option<bool>)>,
    },
    Stop,
}

/// Child: echoes every message, tagged with its own pid, until `Stop`.
fn echo(conn: Connection) -> procvisor::Result<()> {
    loop {
        let m: Msg = conn.recv()?;
        if m == Msg::Stop {
            return Ok(());
        }
        conn.send(&(std::process::id(), m))?;
    }
}

fn echo_scenario(method: StartMethod) {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = start(
        &mut guard,
        Process::new(echo, (theirs,)).start_method(method),
    );
    let pid = p.pid() as u32;
    let messages = [
        Msg::Text("héllo".into()),
        Msg::Numbers(vec![-1, 0, i64::MAX]),
        Msg::Nested {
            id: 7,
            tags: vec![("a".into(), None), ("b".into(), Some(true))],
        },
    ];
    for m in &messages {
        ours.send(m).unwrap();
        assert_eq!(ours.recv::<(u32, Msg)>().unwrap(), (pid, m.clone()));
    }
    ours.send(&Msg::Stop).unwrap();
    join_ok(&p);
}

#[test]
fn a_connection_passed_to_a_spawned_child_works_both_ways() {
    echo_scenario(StartMethod::Spawn);
}

#[test]
fn a_connection_passed_to_a_forked_child_works_both_ways() {
    echo_scenario(StartMethod::Fork);
}

/// Child: sends the docs' `[42, None, 'hello']`.
fn send_docs_value(conn: Connection) -> procvisor::Result<()> {
    conn.send(&(42, None::<i32>, "hello"))
}

#[test]
fn the_docs_pipe_example() {
    let mut guard = KillOnDrop::new();
    let (parent_conn, child_conn) = pipe(true).unwrap();
    let p = start(&mut guard, Process::new(send_docs_value, (child_conn,)));
    assert_eq!(
        parent_conn.recv::<(i32, Option<i32>, String)>().unwrap(),
        (42, None, "hello".to_string())
    );
    join_ok(&p);
}

// ---- EOF -----------------------------------------------------------------------------------

fn say_bye(conn: Connection) -> procvisor::Result<()> {
    conn.send("bye")?;
    conn.send_bytes(b"raw bye", 0, None)
}

#[test]
fn eof_after_the_child_exits_and_everything_was_received() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    // `theirs` moves into the arguments: after start only the child holds that end.
    let p = start(&mut guard, Process::new(say_bye, (theirs,)));
    assert_eq!(ours.recv::<String>().unwrap(), "bye");
    assert_eq!(ours.recv_bytes(None).unwrap(), b"raw bye");
    join_ok(&p);
    // Not `Duration::ZERO`: the other tests of this binary start processes meanwhile, and a
    // spawn holds a copy of every fd of this process until its exec is done, so the child's
    // end may outlive the child by that long. (A single start/join loop checks "at once", in a
    // driver of its own: `eof_is_seen_right_after_join_start_after_start`.)
    assert!(ours.poll(Some(GENEROUS)).unwrap(), "EOF is readable");
    assert!(matches!(ours.recv::<String>(), Err(Error::Eof)));
    assert!(matches!(ours.recv_bytes(None), Err(Error::Eof)));
    let mut buf = [0u8; 4];
    assert!(matches!(ours.recv_bytes_into(&mut buf, 0), Err(Error::Eof)));
    assert_eq!(
        Error::Eof.to_string(),
        "the other end closed the connection and no message is left to receive"
    );
}

#[test]
fn eof_and_broken_pipe_within_one_process() {
    let (a, b) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    drop(a);
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
    let err = b.send(&2u8).unwrap_err();
    assert!(matches!(err, Error::BrokenPipe), "{err:?}");
}

/// Child: dies from SIGKILL in the middle of a message (half a frame already written).
fn die_mid_message(conn: Connection) {
    use std::io::Write;
    let fd = conn.fileno().unwrap();
    // SAFETY (test): borrow the connection's fd to write raw bytes; the stream lives on.
    let mut raw = std::mem::ManuallyDrop::new(unsafe {
        <std::os::unix::net::UnixStream as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    raw.write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    // SAFETY: raise(2) on ourselves.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}

#[test]
fn a_child_killed_mid_message_gives_a_truncation_error() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = start(&mut guard, Process::new(die_mid_message, (theirs,)));
    p.join_timeout(GENEROUS).unwrap();
    assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
    let err = ours.recv_bytes(None).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Wire(procvisor_actors::wire::WireError::Truncated {
                expected: 104,
                got: 7
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "connection failed: connection closed by the peer in the middle of a frame: expected \
         104 bytes, got 7"
    );
}

// ---- recv_bytes(maxlength), recv_bytes_into, send_bytes ----------------------------------

fn send_sizes(conn: Connection, sizes: Vec<usize>) -> procvisor::Result<()> {
    for size in sizes {
        let message: Vec<u8> = (0..size).map(|i| i as u8).collect();
        conn.send_bytes(&message, 0, None)?;
    }
    Ok(())
}

#[test]
fn recv_bytes_maxlength_refuses_a_longer_message_and_stops_reading() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = start(
        &mut guard,
        Process::new(send_sizes, (theirs, vec![10, 11, 3])),
    );
    assert_eq!(ours.recv_bytes(Some(10)).unwrap().len(), 10);
    let err = ours.recv_bytes(Some(10)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLong {
                len: 11,
                maxlength: 10
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "message of 11 bytes is longer than maxlength (10 bytes); the connection is no longer \
         readable"
    );
    assert!(!ours.readable());
    assert!(ours.writable(), "only reading stops");
    for result in [
        ours.recv_bytes(None).map(|_| ()),
        ours.recv::<u8>().map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, Error::NotReadable { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the connection is no longer readable: a message of 11 bytes was refused by \
             recv_bytes(maxlength = 10)"
        );
    }
    assert!(matches!(
        ours.poll(Some(Duration::ZERO)),
        Err(Error::NotReadable { .. })
    ));
    join_ok(&p);
}

#[test]
fn recv_bytes_into_fills_at_offset_and_buffer_too_short_carries_the_message() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = start(
        &mut guard,
        Process::new(send_sizes, (theirs, vec![4, 9, 0, 5])),
    );
    let mut buf = [0xffu8; 8];
    assert_eq!(ours.recv_bytes_into(&mut buf, 2).unwrap(), 4);
    assert_eq!(buf, [0xff, 0xff, 0, 1, 2, 3, 0xff, 0xff]);

    let err = ours.recv_bytes_into(&mut buf, 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "buffer too short: the message is 9 bytes, the buffer has room for 8"
    );
    assert_eq!(err.into_message().unwrap(), (0..9u8).collect::<Vec<_>>());
    assert_eq!(buf, [0xff, 0xff, 0, 1, 2, 3, 0xff, 0xff], "untouched");

    // An empty message fits at the very end; an offset past the end is refused before reading.
    assert_eq!(ours.recv_bytes_into(&mut buf, 8).unwrap(), 0);
    let err = ours.recv_bytes_into(&mut buf, 9).unwrap_err();
    assert!(
        matches!(err, Error::BadOffset { offset: 9, len: 8 }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "offset 9 is past the end of the 8-byte buffer"
    );
    // Nothing was consumed by the refused call.
    assert_eq!(ours.recv_bytes(None).unwrap(), [0, 1, 2, 3, 4]);
    join_ok(&p);
}

#[test]
fn the_docs_send_bytes_example() {
    let (a, b) = pipe(true).unwrap();
    a.send(&(1, "hello", None::<i32>)).unwrap();
    assert_eq!(
        b.recv::<(i32, String, Option<i32>)>().unwrap(),
        (1, "hello".into(), None)
    );
    b.send_bytes(b"thank you", 0, None).unwrap();
    assert_eq!(a.recv_bytes(None).unwrap(), b"thank you");
    let arr1: Vec<u8> = (0..5i32).flat_map(i32::to_ne_bytes).collect();
    let mut arr2 = [0u8; 40];
    a.send_bytes(&arr1, 0, None).unwrap();
    let count = b.recv_bytes_into(&mut arr2, 0).unwrap();
    assert_eq!(count, 5 * 4);
    let ints: Vec<i32> = arr2
        .chunks(4)
        .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(ints, [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]);
}

#[test]
fn send_bytes_offset_and_size_follow_python() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"0123456789", 3, None).unwrap();
    a.send_bytes(b"0123456789", 3, Some(4)).unwrap();
    a.send_bytes(b"0123456789", 10, None).unwrap();
    assert_eq!(b.recv_bytes(None).unwrap(), b"3456789");
    assert_eq!(b.recv_bytes(None).unwrap(), b"3456");
    assert_eq!(b.recv_bytes(None).unwrap(), b"");
    let err = a.send_bytes(b"0123", 5, None).unwrap_err();
    assert!(
        matches!(err, Error::BadOffset { offset: 5, len: 4 }),
        "{err:?}"
    );
    let err = a.send_bytes(b"0123", 2, Some(3)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "offset 2 + size 3 is past the end of the 4-byte buffer"
    );
    assert!(!b.poll(Some(Duration::ZERO)).unwrap(), "nothing was sent");
}

#[test]
fn recv_and_send_bytes_see_the_same_frames() {
    let (a, b) = pipe(true).unwrap();
    a.send(&String::from("hi")).unwrap();
    // The bincode encoding of "hi": its length, then the bytes.
    assert_eq!(b.recv_bytes(None).unwrap(), [2, b'h', b'i']);
    a.send_bytes(&[3, b'y', b'o', b'u'], 0, None).unwrap();
    assert_eq!(b.recv::<String>().unwrap(), "you");
}

#[test]
fn an_undecodable_message_is_consumed_and_the_connection_stays_usable() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(&[0xff, 0xff], 0, None).unwrap();
    a.send(&5u16).unwrap();
    let err = b.recv::<String>().unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("cannot decode a message as alloc::string::String:"),
        "{err}"
    );
    assert_eq!(b.recv::<u16>().unwrap(), 5);
}

// ---- poll ----------------------------------------------------------------------------------

/// Child: waits for "go", then answers "pong"; then waits for "stop".
fn pong_when_told(conn: Connection) -> procvisor::Result<()> {
    while conn.recv::<String>()? != "go" {}
    conn.send("pong")?;
    while conn.recv::<String>()? != "stop" {}
    Ok(())
}

#[test]
fn poll_zero_answers_at_once_timeout_waits_and_none_blocks_until_data() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = start(&mut guard, Process::new(pong_when_told, (theirs,)));

    let t = Instant::now();
    assert!(!ours.poll(Some(Duration::ZERO)).unwrap());
    assert!(t.elapsed() < GENEROUS);

    let wait = Duration::from_millis(200);
    let t = Instant::now();
    assert!(!ours.poll(Some(wait)).unwrap());
    assert!(
        t.elapsed() >= wait,
        "poll returned early: {:?}",
        t.elapsed()
    );

    ours.send("go").unwrap();
    assert!(ours.poll(None).unwrap());
    assert!(ours.poll(Some(Duration::ZERO)).unwrap(), "still there");
    assert_eq!(ours.recv::<String>().unwrap(), "pong");
    assert!(!ours.poll(Some(Duration::ZERO)).unwrap());

    ours.send("stop").unwrap();
    join_ok(&p);
}

#[test]
fn poll_sees_messages_already_buffered() {
    let (a, b) = pipe(true).unwrap();
    for i in 0..3u8 {
        a.send(&i).unwrap();
    }
    // The first receive reads all three messages from the OS in one go.
    assert_eq!(b.recv::<u8>().unwrap(), 0);
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(b.poll(None).unwrap());
    assert_eq!(b.recv::<u8>().unwrap(), 1);
    assert_eq!(b.recv::<u8>().unwrap(), 2);
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

// ---- one-way pipes -------------------------------------------------------------------------

fn send_one_way(sender: Connection) -> procvisor::Result<()> {
    sender.send(&"one way")?;
    // Misuse in the child is reported the same way.
    match sender.recv::<String>() {
        Err(Error::WrongEnd {
            operation: "receive",
            end: "send-only",
        }) => sender.send(&"misuse reported"),
        other => sender.send(&format!("unexpected: {other:?}")),
    }
}

#[test]
fn a_one_way_pipe_receives_on_the_first_end_and_sends_on_the_second() {
    let mut guard = KillOnDrop::new();
    let (receiver, sender) = pipe(false).unwrap();
    assert!(receiver.readable() && !receiver.writable());
    assert!(!sender.readable() && sender.writable());

    let err = receiver.send(&1).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongEnd {
                operation: "send",
                end: "receive-only"
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot send: this is the receive-only end of a one-way pipe"
    );
    assert!(matches!(
        receiver.send_bytes(b"x", 0, None),
        Err(Error::WrongEnd { .. })
    ));
    assert_eq!(
        sender.recv_bytes(None).unwrap_err().to_string(),
        "cannot receive: this is the send-only end of a one-way pipe"
    );
    assert!(matches!(
        sender.poll(Some(Duration::ZERO)),
        Err(Error::WrongEnd {
            operation: "poll",
            ..
        })
    ));
    let mut buf = [0u8; 4];
    assert!(matches!(
        sender.recv_bytes_into(&mut buf, 0),
        Err(Error::WrongEnd { .. })
    ));

    let p = start(&mut guard, Process::new(send_one_way, (sender,)));
    assert_eq!(receiver.recv::<String>().unwrap(), "one way");
    assert_eq!(receiver.recv::<String>().unwrap(), "misuse reported");
    join_ok(&p);
    assert!(matches!(receiver.recv::<String>(), Err(Error::Eof)));
}

// ---- large messages and frame limits -------------------------------------------------------

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Child: sends a 1 MiB value with `send` and 64 MiB raw messages with `send_bytes`, then
/// receives a 64 MiB message back and reports whether it was intact.
fn big_messages(conn: Connection) -> procvisor::Result<()> {
    conn.send(&pattern(1 << 20, 1))?;
    let big = pattern(64 << 20, 2);
    conn.send_bytes(&big, 0, None)?;
    conn.send_bytes(&big, 0, None)?;
    let back = conn.recv_bytes(None)?;
    conn.send(&(back.len(), back == pattern(64 << 20, 3)))
}

#[test]
fn one_mib_and_sixty_four_mib_messages_arrive_intact() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = start(&mut guard, Process::new(big_messages, (theirs,)));
    assert_eq!(ours.recv::<Vec<u8>>().unwrap(), pattern(1 << 20, 1));
    let expected = pattern(64 << 20, 2);
    assert_eq!(ours.recv_bytes(None).unwrap(), expected);
    let mut buf = vec![0u8; (64 << 20) + 8];
    assert_eq!(ours.recv_bytes_into(&mut buf, 8).unwrap(), 64 << 20);
    assert!(
        buf[8..] == expected[..],
        "recv_bytes_into corrupted the message"
    );
    ours.send_bytes(&pattern(64 << 20, 3), 0, None).unwrap();
    assert_eq!(ours.recv::<(usize, bool)>().unwrap(), (64 << 20, true));
    join_ok(&p);
}

/// Child: reports the frame limit it inherited, then sends a message over our limit.
fn report_limit_then_send_big(conn: Connection) -> procvisor::Result<()> {
    conn.send(&conn.max_frame())?;
    conn.set_max_frame(1 << 20);
    conn.send_bytes(&[7u8; 2000], 0, None)
}

#[test]
fn the_frame_limit_is_enforced_on_both_sides() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    assert_eq!(ours.max_frame(), 512 << 20);
    theirs.set_max_frame(1000);
    ours.set_max_frame(1000);
    let p = start(
        &mut guard,
        Process::new(report_limit_then_send_big, (theirs,)),
    );
    assert_eq!(
        ours.recv::<usize>().unwrap(),
        1000,
        "the limit travels with the end"
    );
    let err = ours.recv_bytes(None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::FrameTooLarge {
                len: 2000,
                max: 1000
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "message of 2000 bytes is larger than the frame limit of 1000 bytes"
    );
    assert!(!ours.readable(), "the stream position is lost");
    join_ok(&p);

    // Sending: refused before anything is written.
    let (a, b) = pipe(true).unwrap();
    a.set_max_frame(10);
    assert!(matches!(
        a.send_bytes(&[1u8; 11], 0, None),
        Err(Error::FrameTooLarge { len: 11, max: 10 })
    ));
    assert!(matches!(
        a.send(&"a string of more than ten bytes"),
        Err(Error::FrameTooLarge { .. })
    ));
    a.send_bytes(&[2u8; 10], 0, None).unwrap();
    assert_eq!(b.recv_bytes(None).unwrap(), [2u8; 10]);
}

// ---- wait ----------------------------------------------------------------------------------

/// Child: waits for its cue, then sends its number (or, for `exit`, just exits).
fn on_cue(conn: Connection, n: u32) -> procvisor::Result<()> {
    let cue: String = conn.recv()?;
    if cue == "send" {
        conn.send(&n)?;
        conn.recv::<String>()?;
    }
    Ok(())
}

#[test]
fn wait_returns_the_ready_connections_and_exited_processes() {
    let mut guard = KillOnDrop::new();
    let mut ours = Vec::new();
    let mut procs = Vec::new();
    for n in 0..3u32 {
        let (a, b) = pipe(true).unwrap();
        procs.push(start(&mut guard, Process::new(on_cue, (b, n))));
        ours.push(a);
    }
    let objects: [&dyn procvisor::Waitable; 4] = [&ours[0], &ours[1], &procs[2], &ours[2]];

    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    let t = Instant::now();
    assert!(
        wait(&objects, Some(Duration::from_millis(100)))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(100));

    ours[1].send("send").unwrap();
    assert_eq!(wait(&objects, None).unwrap(), [1]);
    assert_eq!(ours[1].recv::<u32>().unwrap(), 1);

    // The third child exits: its sentinel and its connection (EOF) become ready.
    ours[2].send("exit").unwrap();
    procs[2].join_timeout(GENEROUS).unwrap();
    assert_eq!(wait(&objects, None).unwrap(), [2, 3]);

    ours[0].send("send").unwrap();
    assert!(wait(&[&ours[0]], Some(GENEROUS)).unwrap() == [0]);
    assert_eq!(ours[0].recv::<u32>().unwrap(), 0);

    for (i, conn) in ours.iter().enumerate().take(2) {
        conn.send("done").unwrap();
        join_ok(&procs[i]);
    }
}

#[test]
fn wait_rejects_unusable_objects() {
    let (a, b) = pipe(false).unwrap();
    assert!(matches!(
        wait(&[&b], Some(Duration::ZERO)),
        Err(Error::WrongEnd { .. })
    ));
    a.close();
    assert!(matches!(
        wait(&[&a], Some(Duration::ZERO)),
        Err(Error::Closed { what: "connection" })
    ));
    let t = Instant::now();
    assert!(
        wait(&[], Some(Duration::from_millis(50)))
            .unwrap()
            .is_empty()
    );
    assert!(t.elapsed() >= Duration::from_millis(50));
}

// ---- closing, fileno, passing rules --------------------------------------------------------

#[test]
fn close_is_idempotent_and_later_operations_fail() {
    let (a, b) = pipe(true).unwrap();
    assert!(a.fileno().unwrap() >= 0);
    assert!(!a.closed());
    a.close();
    a.close();
    assert!(a.closed() && !a.readable() && !a.writable());
    for err in [
        a.send(&1).unwrap_err(),
        a.recv::<u8>().unwrap_err(),
        a.poll(None).unwrap_err(),
        a.fileno().unwrap_err(),
        a.try_clone().unwrap_err(),
    ] {
        assert!(
            matches!(err, Error::Closed { what: "connection" }),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "the connection is closed");
    }
    assert!(matches!(b.recv::<u8>(), Err(Error::Eof)));
}

/// Child: receives on its end of the pipe and reports, through the other pipe, what it got.
fn relay(input: Connection, output: Connection) -> procvisor::Result<()> {
    let value: String = input.recv()?;
    output.send(&format!("relayed {value}"))
}

#[test]
fn both_ends_of_different_pipes_can_travel_together_with_fork() {
    let mut guard = KillOnDrop::new();
    let (in_rx, in_tx) = pipe(false).unwrap();
    let (out_rx, out_tx) = pipe(false).unwrap();
    let p = start(
        &mut guard,
        Process::new(relay, (in_rx, out_tx)).start_method(StartMethod::Fork),
    );
    in_tx.send(&"it").unwrap();
    assert_eq!(out_rx.recv::<String>().unwrap(), "relayed it");
    join_ok(&p);
    assert!(matches!(out_rx.recv::<String>(), Err(Error::Eof)));
}

#[test]
fn a_connection_with_unreceived_buffered_bytes_refuses_to_travel() {
    let (a, b) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.send(&2u8).unwrap();
    assert!(b.poll(Some(GENEROUS)).unwrap());
    assert_eq!(b.recv::<u8>().unwrap(), 1); // reads both messages from the OS
    let p = Process::new(|_c: Connection| (), (b,));
    let err = p.start().unwrap_err();
    assert!(matches!(err, StartError::Encode { .. }), "{err:?}");
    assert!(
        err.to_string().contains("already read from the OS"),
        "{err}"
    );
}

#[test]
fn a_connection_cannot_be_encoded_outside_a_childs_arguments() {
    let (a, _b) = pipe(true).unwrap();
    let err = procvisor_actors::wire::codec::encode(&a).unwrap_err();
    assert!(
        err.to_string()
            .contains("can only be passed to a child process in its arguments"),
        "{err}"
    );
    let closed = pipe(true).unwrap().0;
    closed.close();
    let p = Process::new(|_c: Connection| (), (closed,));
    assert!(
        p.start()
            .unwrap_err()
            .to_string()
            .contains("closed Connection")
    );
}

#[test]
fn try_clone_gives_a_second_handle_on_the_same_stream() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    // Give a clone to each of two children in turn, keeping `theirs`.
    for round in 0..2 {
        let p = start(
            &mut guard,
            Process::new(send_docs_value, (theirs.try_clone().unwrap(),)),
        );
        assert_eq!(
            ours.recv::<(i32, Option<i32>, String)>().unwrap().0,
            42,
            "round {round}"
        );
        join_ok(&p);
    }
    theirs.send(&7u8).unwrap();
    assert_eq!(ours.recv::<u8>().unwrap(), 7);
}

#[test]
fn debug_shows_the_kind_and_ends() {
    let (a, b) = pipe(false).unwrap();
    let shown = format!("{a:?}");
    assert!(shown.starts_with("Connection { fd: "), "{shown}");
    assert!(
        shown.ends_with("kind: \"socket\", readable: true, writable: false }"),
        "{shown}"
    );
    b.close();
    assert!(format!("{b:?}").contains("fd: \"closed\""));
}

// ---- hostile bytes -------------------------------------------------------------------------

/// xorshift64*: a small deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A byte stream made of frames with random (sometimes hostile) headers and payloads.
fn hostile_stream(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.below(6) {
        match rng.below(5) {
            // Pure noise.
            0 => out.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
            // A header announcing far more than will come.
            1 => out.extend_from_slice(&(rng.next() as u32).to_be_bytes()),
            // A consistent frame with a random payload.
            _ => {
                let len = rng.below(48) as usize;
                out.extend_from_slice(&(len as u32).to_be_bytes());
                out.extend((0..len).map(|_| rng.next() as u8));
            }
        }
    }
    if rng.below(3) == 0 && !out.is_empty() {
        let cut = rng.below(out.len() as u64) as usize;
        out.truncate(cut);
    }
    out
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
enum Target {
    A(u32, String),
    B(Vec<u8>, Option<i64>),
    C { x: f64, y: Vec<String> },
}

#[test]
fn arbitrary_bytes_give_errors_never_panics_or_hangs() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = Instant::now();
    for case in 0..400 {
        let bytes = hostile_stream(&mut rng);
        let (mut raw, theirs) = UnixStream::pair().unwrap();
        let conn = Connection::from(theirs);
        conn.set_max_frame(1 << 16);
        raw.write_all(&bytes).unwrap();
        drop(raw);
        // Every call ends with a value or an error; the stream is finite, so the loop ends.
        for _ in 0..64 {
            let result = match case % 3 {
                0 => conn.recv::<Target>().map(|_| ()),
                1 => conn.recv_bytes(Some(40)).map(|_| ()),
                _ => conn.recv_bytes_into(&mut [0u8; 16], 3).map(|_| ()),
            };
            match result {
                Ok(()) | Err(Error::Decode { .. }) | Err(Error::BufferTooShort { .. }) => {}
                Err(
                    Error::Eof
                    | Error::Wire(_)
                    | Error::FrameTooLarge { .. }
                    | Error::MessageTooLong { .. }
                    | Error::NotReadable { .. },
                ) => break,
                Err(other) => panic!("case {case}: unexpected error {other:?}"),
            }
        }
    }
    assert!(
        start.elapsed() < GENEROUS,
        "hostile input took {:?}",
        start.elapsed()
    );
}

// ---- threads -------------------------------------------------------------------------------

#[test]
fn connection_types_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Connection>();
    assert_send_sync::<procvisor::Listener>();
    assert_send_sync::<procvisor::ListenerBuilder>();
    assert_send_sync::<procvisor::ClientBuilder>();
    assert_send_sync::<procvisor::Address>();
}

/// Child: echoes numbers until 0.
fn echo_numbers(conn: Connection) -> procvisor::Result<()> {
    loop {
        let n: u64 = conn.recv()?;
        conn.send(&n)?;
        if n == 0 {
            return Ok(());
        }
    }
}

#[test]
fn one_thread_sends_while_another_receives_on_the_same_connection() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = start(&mut guard, Process::new(echo_numbers, (theirs,)));
    let ours = std::sync::Arc::new(ours);
    let count = 20_000u64;
    let receiver = {
        let ours = ours.clone();
        std::thread::spawn(move || {
            let mut sum = 0u64;
            loop {
                let n: u64 = ours.recv().unwrap();
                if n == 0 {
                    return sum;
                }
                sum += n;
            }
        })
    };
    for n in (1..=count).chain([0]) {
        ours.send(&n).unwrap();
    }
    assert_eq!(receiver.join().unwrap(), count * (count + 1) / 2);
    join_ok(&p);
}

#[test]
fn queries_do_not_wait_for_a_receive_blocked_in_another_thread() {
    let (a, b) = pipe(true).unwrap();
    let b = std::sync::Arc::new(b);
    let receiver = {
        let b = b.clone();
        std::thread::spawn(move || b.recv::<u32>())
    };
    // Give the receiver time to block (not needed for correctness: the queries below must
    // answer at once whether or not it is already waiting).
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    assert!(b.readable());
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    assert!(wait(&[&*b], Some(Duration::ZERO)).unwrap().is_empty());
    assert!(format!("{b:?}").starts_with("Connection {"));
    assert!(t.elapsed() < GENEROUS);
    a.send(&5u32).unwrap();
    assert_eq!(receiver.join().unwrap().unwrap(), 5);
}

// ---- deliver_challenge / answer_challenge ----------------------------------------------------

/// Child: authenticates both ways with `key`, then says so; on failure, sends the error.
fn authenticate_then_talk(conn: Connection, key: Vec<u8>) -> procvisor::Result<()> {
    use procvisor::connection::{answer_challenge, deliver_challenge};
    match answer_challenge(&conn, &key).and_then(|()| deliver_challenge(&conn, &key)) {
        Ok(()) => conn.send("authenticated"),
        Err(e) => conn.send(&e.to_string()),
    }
}

#[test]
fn deliver_and_answer_challenge_on_a_pipe_across_processes() {
    use procvisor::connection::{answer_challenge, deliver_challenge};
    let mut guard = KillOnDrop::new();
    for (child_key, outcome) in [
        (b"right".to_vec(), Ok("authenticated")),
        (
            b"wrong".to_vec(),
            Err("authentication failed: digest received was wrong"),
        ),
    ] {
        let (ours, theirs) = pipe(true).unwrap();
        let p = start(
            &mut guard,
            Process::new(authenticate_then_talk, (theirs, child_key)),
        );
        let ours_result =
            deliver_challenge(&ours, b"right").and_then(|()| answer_challenge(&ours, b"right"));
        let reply: String = ours.recv().unwrap();
        match outcome {
            Ok(expected) => {
                ours_result.unwrap();
                assert_eq!(reply, expected);
            }
            Err(expected) => {
                assert_eq!(ours_result.unwrap_err().to_string(), expected);
                assert_eq!(reply, "authentication failed: digest sent was rejected");
            }
        }
        join_ok(&p);
    }
    // The handshake must come first and needs both directions.
    let (a, b) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.send(&2u8).unwrap();
    assert!(b.poll(Some(GENEROUS)).unwrap());
    b.recv::<u8>().unwrap();
    assert!(matches!(
        deliver_challenge(&b, b"k"),
        Err(Error::NotReadable { .. })
    ));
    let (r, _w) = pipe(false).unwrap();
    assert!(matches!(
        answer_challenge(&r, b"k"),
        Err(Error::WrongEnd { .. })
    ));
}

fn say_one_bye(conn: Connection) -> procvisor::Result<()> {
    conn.send("bye")
}

/// Driver: start after start in a process where nothing else starts children. Every start
/// after the second also prestarts the next spawn child in the background; a spawn holds a copy
/// of every fd of this process until its exec is done, so one running while a start still held
/// its copy of the child's pipe end kept that end open past the child's exit (EOF came a few
/// milliseconds after `join`, 7 times in 300). Prints the first late round, if any.
#[test]
#[ignore = "driver, run by eof_is_seen_right_after_join_start_after_start"]
fn driver_eof_right_after_join() {
    if !common::in_driver() {
        return;
    }
    let mut guard = KillOnDrop::new();
    for round in 0..300 {
        let (ours, theirs) = pipe(true).unwrap();
        let p = start(&mut guard, Process::new(say_one_bye, (theirs,)));
        assert_eq!(ours.recv::<String>().unwrap(), "bye");
        join_ok(&p);
        if !ours.poll(Some(Duration::ZERO)).unwrap() {
            common::say(format!("LATE {round}"));
            return;
        }
    }
    common::say("LATE none");
}

#[test]
fn eof_is_seen_right_after_join_start_after_start() {
    let out = common::run_driver("driver_eof_right_after_join");
    let all = common::describe(&out);
    assert!(out.status.success(), "{all}");
    let stdout = common::stdout_of(&out);
    assert_eq!(common::line_with(&stdout, "LATE "), "none", "{all}");
}
