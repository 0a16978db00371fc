//! The async connection API (`send_async`, `recv_async`, `recv_bytes_async`,
//! `send_bytes_async`, `poll_async`) with real processes, on both tokio runtime flavors and
//! outside any runtime; cancel safety; and the blocking API called inside a runtime.

procvisor::test_init!();

mod common;

use std::future::Future;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::{GENEROUS, KillOnDrop};
use procvisor::{Connection, Error, Process, pipe};

/// Child: echoes `(n, text)` back as `(n + 1, TEXT)` until it receives `None`; raw messages
/// are echoed reversed.
fn echo(conn: Connection) -> procvisor::Result<()> {
    while let Some((n, text)) = conn.recv::<Option<(u32, String)>>()? {
        conn.send(&(n + 1, text.to_uppercase()))?;
        let mut raw = conn.recv_bytes(None)?;
        raw.reverse();
        conn.send_bytes(&raw, 0, None)?;
    }
    Ok(())
}

async fn echo_scenario() {
    let mut guard = KillOnDrop::new();
    let (ours, theirs) = pipe(true).unwrap();
    let p = Process::new(echo, (theirs,)).start_async().await.unwrap();
    guard.add(&p);

    let wait = Duration::from_millis(100);
    let t = Instant::now();
    assert!(!ours.poll_async(Some(wait)).await.unwrap());
    assert!(t.elapsed() >= wait);
    assert!(!ours.poll_async(Some(Duration::ZERO)).await.unwrap());

    for n in 0..20u32 {
        ours.send_async(&Some((n, format!("msg {n}"))))
            .await
            .unwrap();
        if n == 0 {
            assert!(ours.poll_async(None).await.unwrap());
        }
        assert_eq!(
            ours.recv_async::<(u32, String)>().await.unwrap(),
            (n + 1, format!("MSG {n}"))
        );
        ours.send_bytes_async(b"xxabcxx", 2, Some(3)).await.unwrap();
        assert_eq!(ours.recv_bytes_async(None).await.unwrap(), b"cba");
    }
    ours.send_async(&None::<(u32, String)>).await.unwrap();
    assert!(matches!(ours.recv_async::<u8>().await, Err(Error::Eof)));
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

#[test]
fn async_operations_outside_any_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    block_on(async {
        let (a, b) = pipe(true).unwrap();
        assert!(!b.poll_async(Some(Duration::from_millis(20))).await.unwrap());
        a.send_async(&"no runtime here").await.unwrap();
        assert!(b.poll_async(None).await.unwrap());
        assert_eq!(b.recv_async::<String>().await.unwrap(), "no runtime here");
        drop(a);
        assert!(matches!(b.recv_async::<String>().await, Err(Error::Eof)));
    });
}

#[test]
fn a_cancelled_wait_loses_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (a, b) = pipe(true).unwrap();
        // Cancelled while waiting for data: nothing was taken.
        let timed_out =
            tokio::time::timeout(Duration::from_millis(50), b.recv_async::<u32>()).await;
        assert!(timed_out.is_err());
        a.send(&7u32).unwrap();
        assert_eq!(b.recv::<u32>().unwrap(), 7);
    });
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
            tokio::time::timeout(Duration::from_millis(200), conn.recv_bytes_async(None)).await;
        assert!(timed_out.is_err(), "{timed_out:?}");
    });
    raw.write_all(b"lves").unwrap();
    raw.write_all(&[0, 0, 0, 4, b'n', b'e', b'x', b't'])
        .unwrap();
    // The message the cancelled receive was reading is handed to the next receive, in order.
    assert_eq!(conn.recv_bytes(None).unwrap(), b"halves");
    assert_eq!(conn.recv_bytes(None).unwrap(), b"next");
}

#[test]
fn messages_already_buffered_are_received_without_waiting() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = pipe(true).unwrap();
    for i in 0..3u8 {
        a.send(&i).unwrap();
    }
    assert_eq!(b.recv::<u8>().unwrap(), 0); // buffers the other two
    rt.block_on(async {
        assert!(b.poll_async(Some(Duration::ZERO)).await.unwrap());
        assert_eq!(b.recv_async::<u8>().await.unwrap(), 1);
        assert_eq!(b.recv_async::<u8>().await.unwrap(), 2);
    });
}

#[test]
fn async_errors_match_the_blocking_ones() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (receiver, sender) = pipe(false).unwrap();
        assert!(matches!(
            receiver.send_async(&1u8).await,
            Err(Error::WrongEnd { .. })
        ));
        assert!(matches!(
            sender.recv_async::<u8>().await,
            Err(Error::WrongEnd { .. })
        ));
        assert!(matches!(
            sender.poll_async(None).await,
            Err(Error::WrongEnd { .. })
        ));
        sender.set_max_frame(4);
        assert!(matches!(
            sender.send_bytes_async(&[0; 5], 0, None).await,
            Err(Error::FrameTooLarge { len: 5, max: 4 })
        ));
        sender.send_bytes_async(&[9; 8], 0, None).await.unwrap_err();
        sender.send_bytes_async(&[9; 4], 0, None).await.unwrap();
        assert!(matches!(
            receiver.recv_bytes_async(Some(3)).await,
            Err(Error::MessageTooLong {
                len: 4,
                maxlength: 3
            })
        ));
        assert!(matches!(
            receiver.recv_async::<u8>().await,
            Err(Error::NotReadable { .. })
        ));
        sender.close();
        assert!(matches!(
            sender.send_async(&1u8).await,
            Err(Error::Closed { .. })
        ));
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
        let (ours, theirs) = pipe(true).unwrap();
        let p = Process::new(echo, (theirs,)).start().unwrap();
        guard.add(&p);
        ours.send(&Some((1u32, "blocking".to_string()))).unwrap();
        assert!(ours.poll(Some(GENEROUS)).unwrap());
        assert_eq!(
            ours.recv::<(u32, String)>().unwrap(),
            (2, "BLOCKING".to_string())
        );
        ours.send_bytes(b"ab", 0, None).unwrap();
        assert_eq!(ours.recv_bytes(None).unwrap(), b"ba");
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
                let first = conn.recv_bytes_async(None).await.unwrap();
                let second = conn.recv_bytes_async(None).await.unwrap();
                (first, second)
            };
            let (first, second) = tokio::time::timeout(GENEROUS, both)
                .await
                .expect("the second receive waited on the socket for a buffered message");
            assert_eq!((first, second), (vec![round], vec![!round]));
        }
    });
}
