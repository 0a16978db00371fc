//! The async connection API (`send_async`, `recv_async`, `recv_bytes_async`,
//! `recv_bytes_max_async`, `send_bytes_async`, `poll_async`) with real processes, on both
//! tokio runtime flavors and outside any runtime; deadlines with `tokio::time::timeout`;
//! cancel safety; one-way ends; and the blocking API called inside a runtime.

procvisor::test_init!();

mod common;

use std::future::Future;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop};
use procvisor::error::{RecvError, SendError};
use procvisor::{Connection, Process, pipe, pipe_oneway};

/// Child: echoes `(n, text)` back as `(n + 1, TEXT)` until it receives `None`; raw messages
/// are echoed reversed.
fn echo(conn: Connection) -> procvisor::Result<()> {
    while let Some((n, text)) = conn.recv::<Option<(u32, String)>>()? {
        conn.send(&(n + 1, text.to_uppercase()))?;
        let mut raw = conn.recv_bytes()?;
        raw.reverse();
        conn.send_bytes(&raw)?;
    }
    Ok(())
}

async fn echo_scenario() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe().unwrap();
    let p = Process::new(echo, (theirs,)).start_async().await.unwrap();
    guard.add(&p);

    // A deadline is `tokio::time::timeout` around the wait.
    let wait = Duration::from_millis(100);
    let t = Instant::now();
    assert!(tokio::time::timeout(wait, ours.poll_async()).await.is_err());
    assert!(t.elapsed() >= wait);
    assert!(!ours.try_poll().unwrap());

    for n in 0..20u32 {
        ours.send_async(&Some((n, format!("msg {n}"))))
            .await
            .unwrap();
        if n == 0 {
            ours.poll_async().await.unwrap();
        }
        assert_eq!(
            ours.recv_async::<(u32, String)>().await.unwrap(),
            (n + 1, format!("MSG {n}"))
        );
        ours.send_bytes_async(&b"xxabcxx"[2..2 + 3]).await.unwrap();
        assert_eq!(ours.recv_bytes_async().await.unwrap(), b"cba");
    }
    ours.send_async(&None::<(u32, String)>).await.unwrap();
    assert!(matches!(ours.recv_async::<u8>().await, Err(RecvError::Eof)));
    let status = tokio::time::timeout(GENEROUS, p.join_async())
        .await
        .expect("the child exits")
        .unwrap();
    assert!(status.success());
}

#[test]
fn async_operations_on_a_current_thread_runtime() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(echo_scenario());
}

#[test]
fn async_operations_on_a_multi_thread_runtime() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(echo_scenario());
}

/// A minimal executor with no tokio runtime at all: polls the future, parks between wakes.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// A timeout that needs no runtime (`tokio::time::timeout` needs tokio's timer): a thread
/// sleeps for `limit`, then wakes the task, which gives up if `future` is still pending.
async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let expired = Arc::new(AtomicBool::new(false));
    let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    {
        let (expired, waker) = (expired.clone(), waker.clone());
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            expired.store(true, Ordering::SeqCst);
            if let Some(w) = waker.lock().unwrap().take() {
                w.wake();
            }
        });
    }
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        *waker.lock().unwrap() = Some(cx.waker().clone());
        if expired.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[test]
fn async_operations_outside_any_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    block_on(async {
        let (a, b) = pipe().unwrap();
        let limit = Duration::from_millis(20);
        let t = Instant::now();
        assert!(within(limit, b.poll_async()).await.is_none());
        assert!(t.elapsed() >= limit);
        a.send_async(&"no runtime here").await.unwrap();
        b.poll_async().await.unwrap();
        assert_eq!(b.recv_async::<String>().await.unwrap(), "no runtime here");
        drop(a);
        assert!(matches!(
            b.recv_async::<String>().await,
            Err(RecvError::Eof)
        ));
    });
}

#[test]
fn a_cancelled_wait_loses_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = pipe().unwrap();
        // Cancelled while waiting for data: nothing was taken.
        let timed_out =
            tokio::time::timeout(Duration::from_millis(50), b.recv_async::<u32>()).await;
        assert!(timed_out.is_err());
        a.send(&7u32).unwrap();
        assert_eq!(b.recv::<u32>().unwrap(), 7);
        // The same for a cancelled poll.
        let timed_out = tokio::time::timeout(Duration::from_millis(50), b.poll_async()).await;
        assert!(timed_out.is_err());
        a.send(&8u32).unwrap();
        assert_eq!(b.recv_async::<u32>().await.unwrap(), 8);
    });
}

#[test]
fn a_send_cancelled_after_its_first_poll_is_still_sent_whole() {
    let (a, b) = pipe().unwrap();
    let big = vec![7u8; 1 << 20];
    {
        let mut send = pin!(a.send_bytes_async(&big));
        let mut cx = Context::from_waker(Waker::noop());
        // The first poll hands the message to the blocking pool; then the future is dropped.
        let _ = send.as_mut().poll(&mut cx);
    }
    assert_eq!(b.recv_bytes().unwrap(), big);
    // A future dropped before its first poll sends nothing.
    drop(a.send_async(&1u8));
    a.send(&2u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 2);
}

#[test]
fn a_receive_cancelled_in_the_middle_of_a_message_keeps_it_for_the_next_one() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut raw, theirs) = UnixStream::pair().unwrap();
    let conn = Connection::from(theirs);
    // Half a message: the receive starts reading it, then waits for the rest.
    raw.write_all(&[0, 0, 0, 6, b'h', b'a']).unwrap();
    rt.block_on(async {
        let timed_out =
            tokio::time::timeout(Duration::from_millis(200), conn.recv_bytes_async()).await;
        assert!(timed_out.is_err(), "{timed_out:?}");
    });
    raw.write_all(b"lves").unwrap();
    raw.write_all(&[0, 0, 0, 4, b'n', b'e', b'x', b't'])
        .unwrap();
    // The message the cancelled receive was reading is handed to the next receive, in order.
    assert_eq!(conn.recv_bytes().unwrap(), b"halves");
    assert_eq!(conn.recv_bytes().unwrap(), b"next");
}

#[test]
fn messages_already_buffered_are_received_without_waiting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = pipe().unwrap();
    for i in 0..3u8 {
        a.send(&i).unwrap();
    }
    assert_eq!(b.recv::<u8>().unwrap(), 0); // buffers the other two
    rt.block_on(async {
        assert!(b.try_poll().unwrap());
        tokio::time::timeout(GENEROUS, b.poll_async())
            .await
            .expect("a buffered message is ready at once")
            .unwrap();
        assert_eq!(b.recv_async::<u8>().await.unwrap(), 1);
        assert_eq!(b.recv_async::<u8>().await.unwrap(), 2);
    });
}

#[test]
fn async_errors_match_the_blocking_ones() {
    // (Sending on the receive end, or receiving or polling on the send end, does not compile:
    // see the compile_fail doctests of `procvisor::connection`.)
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (receiver, sender) = pipe_oneway().unwrap();
        sender.set_max_frame(4);
        assert!(matches!(
            sender.send_bytes_async(&[0; 5]).await,
            Err(SendError::FrameTooLarge { len: 5, max: 4 })
        ));
        sender.send_bytes_async(&[9; 8]).await.unwrap_err();
        sender.send_bytes_async(&[9; 4]).await.unwrap();
        let err = receiver.recv_bytes_max_async(3).await.unwrap_err();
        assert!(
            matches!(err, RecvError::MessageTooLong { len: 4, max_len: 3 }),
            "{err:?}"
        );
        assert!(matches!(
            receiver.recv_async::<u8>().await,
            Err(RecvError::NotReadable { .. })
        ));
        assert!(matches!(
            receiver.recv_bytes_async().await,
            Err(RecvError::NotReadable { .. })
        ));
        assert!(matches!(
            receiver.poll_async().await,
            Err(RecvError::NotReadable { .. })
        ));
        sender.close();
        assert!(matches!(
            sender.send_async(&1u8).await,
            Err(SendError::Closed)
        ));
        assert!(matches!(
            sender.send_bytes_async(b"x").await,
            Err(SendError::Closed)
        ));
        receiver.close();
        assert!(matches!(
            receiver.recv_async::<u8>().await,
            Err(RecvError::Closed)
        ));
        assert!(matches!(
            receiver.poll_async().await,
            Err(RecvError::Closed)
        ));
    });
}

/// Child: receives numbers on its `Receiver` and sends their doubles on its `Sender`.
fn doubler(input: procvisor::Receiver, output: procvisor::Sender) -> procvisor::Result<()> {
    while let Ok(n) = input.recv::<u64>() {
        output.send(&(n * 2))?;
    }
    Ok(())
}

#[test]
fn one_way_ends_have_the_async_methods_of_their_direction() {
    let mut guard = KillOnDrop::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (to_child_rx, to_child) = pipe_oneway().unwrap();
        let (from_child, from_child_tx) = pipe_oneway().unwrap();
        let p = Process::new(doubler, (to_child_rx, from_child_tx))
            .start_async()
            .await
            .unwrap();
        guard.add(&p);
        for n in [1u64, 21, 1 << 40] {
            to_child.send_async(&n).await.unwrap();
            tokio::time::timeout(GENEROUS, from_child.poll_async())
                .await
                .expect("the child answers")
                .unwrap();
            assert_eq!(from_child.recv_async::<u64>().await.unwrap(), n * 2);
        }
        drop(to_child);
        assert!(matches!(
            from_child.recv_bytes_async().await,
            Err(RecvError::Eof)
        ));
        let status = tokio::time::timeout(GENEROUS, p.join_async())
            .await
            .expect("the child exits")
            .unwrap();
        assert!(status.success());
    });
}

#[test]
fn the_blocking_api_works_inside_a_runtime() {
    let mut guard = KillOnDrop::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (ours, theirs) = pipe().unwrap();
        let p = Process::new(echo, (theirs,)).start().unwrap();
        guard.add(&p);
        ours.send(&Some((1u32, "blocking".to_string()))).unwrap();
        assert!(ours.poll_timeout(GENEROUS).unwrap());
        assert_eq!(
            ours.recv::<(u32, String)>().unwrap(),
            (2, "BLOCKING".to_string())
        );
        ours.send_bytes(b"ab").unwrap();
        assert_eq!(ours.recv_bytes().unwrap(), b"ba");
        ours.send(&None::<(u32, String)>).unwrap();
        p.join_timeout(GENEROUS).unwrap();
        assert_eq!(p.exitcode(), Some(0));
    });
}

#[test]
fn a_receive_right_after_another_finds_the_message_already_buffered() {
    // Two messages arrive in one write, so the first receive buffers both. The second receive
    // starts at once — while the first one's blocking half may still be letting go of the read
    // side — and must take the buffered message instead of waiting on an empty socket.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut raw, theirs) = UnixStream::pair().unwrap();
    let conn = Connection::from(theirs);
    rt.block_on(async {
        for round in 0..=255u8 {
            raw.write_all(&[0, 0, 0, 1, round, 0, 0, 0, 1, !round])
                .unwrap();
            let both = async {
                let first = conn.recv_bytes_async().await.unwrap();
                let second = conn.recv_bytes_async().await.unwrap();
                (first, second)
            };
            let (first, second) = tokio::time::timeout(GENEROUS, both)
                .await
                .expect("the second receive waited on the socket for a buffered message");
            assert_eq!((first, second), (vec![round], vec![!round]));
        }
    });
}
