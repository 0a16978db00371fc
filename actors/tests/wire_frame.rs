//! Frames: reader, writers, batches, limits, end-of-stream cases, tokio.

use std::io::{self, Cursor, IoSlice, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use procvisor_actors::wire::frame::{
    FrameBatch, FrameLimits, FrameReader, HEADER_LEN, READ_CHUNK, encode_frame_into,
    read_frame_async, read_frame_unbuffered, write_frame, write_frame_async,
};
use procvisor_actors::wire::{WireError, codec};

fn frames(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        encode_frame_into(&mut out, p).unwrap();
    }
    out
}

fn limits(max: usize) -> FrameLimits {
    FrameLimits::new(max)
}

/// Yields at most `step` bytes per `read`, and counts the calls.
struct Trickle<R> {
    inner: R,
    step: usize,
    reads: usize,
    /// Sizes of the buffers the reader was asked to fill.
    asked: Vec<usize>,
}

impl<R> Trickle<R> {
    fn new(inner: R, step: usize) -> Self {
        Self {
            inner,
            step,
            reads: 0,
            asked: Vec::new(),
        }
    }
}

impl<R: Read> Read for Trickle<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reads += 1;
        self.asked.push(buf.len());
        let n = buf.len().min(self.step);
        self.inner.read(&mut buf[..n])
    }
}

/// Fails every other call with `Interrupted`.
struct Interrupting<T> {
    inner: T,
    flip: bool,
}

impl<T: Read> Read for Interrupting<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.flip = !self.flip;
        if self.flip {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        self.inner.read(buf)
    }
}

impl<T: Write> Write for Interrupting<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flip = !self.flip;
        if self.flip {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Accepts at most 3 bytes per call; optionally with real vectored writes.
struct ThreeBytes {
    out: Vec<u8>,
    vectored: bool,
    calls: usize,
}

impl Write for ThreeBytes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.calls += 1;
        let n = buf.len().min(3);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if !self.vectored {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
            return self.write(first);
        }
        self.calls += 1;
        let mut budget = 3;
        let mut written = 0;
        for b in bufs {
            let n = b.len().min(budget);
            self.out.extend_from_slice(&b[..n]);
            budget -= n;
            written += n;
            if budget == 0 {
                break;
            }
        }
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn many_frames_from_a_cursor() {
    let payloads: Vec<Vec<u8>> = (0..500u32)
        .map(|i| (0..(i % 37)).map(|b| (b ^ i) as u8).collect())
        .collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let mut reader = FrameReader::new(Cursor::new(frames(&refs)), FrameLimits::default());
    let mut out = Vec::new();
    for p in &payloads {
        assert_eq!(reader.read_frame_into(&mut out).unwrap(), p.len());
        assert_eq!(&out, p);
    }
    assert!(matches!(reader.read_frame(), Err(WireError::Eof)));
    assert!(reader.buffer_capacity() <= READ_CHUNK);
}

#[test]
fn small_frames_cost_one_read_call() {
    let payloads: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_be_bytes().repeat(2)).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let bytes = frames(&refs);
    assert!(bytes.len() < READ_CHUNK);
    let mut reader = FrameReader::new(Trickle::new(Cursor::new(bytes), usize::MAX), limits(64));
    for p in &payloads {
        assert_eq!(&reader.read_frame().unwrap(), p);
    }
    assert_eq!(reader.get_ref().reads, 1, "all frames came from one read");
    assert!(matches!(reader.read_frame(), Err(WireError::Eof)));
    assert_eq!(reader.get_ref().reads, 2);
}

#[test]
fn frames_split_at_every_byte_boundary() {
    let payloads: [&[u8]; 5] = [b"", b"a", b"hello world", &[0; 300], b"end"];
    let bytes = frames(&payloads);
    let mut reader = FrameReader::new(Trickle::new(Cursor::new(bytes.clone()), 1), limits(1024));
    for p in payloads {
        assert_eq!(reader.read_frame().unwrap(), p);
    }
    assert!(matches!(reader.read_frame(), Err(WireError::Eof)));

    // Also every two-piece split of the stream.
    for cut in 0..=bytes.len() {
        let stream = Cursor::new(bytes[..cut].to_vec()).chain(Cursor::new(bytes[cut..].to_vec()));
        let mut reader = FrameReader::new(stream, limits(1024));
        for p in payloads {
            assert_eq!(reader.read_frame().unwrap(), p, "cut at {cut}");
        }
        assert!(matches!(reader.read_frame(), Err(WireError::Eof)));
    }
}

#[test]
fn eof_at_a_boundary_is_eof() {
    let mut empty = FrameReader::new(Cursor::new(Vec::new()), FrameLimits::default());
    assert!(matches!(empty.read_frame(), Err(WireError::Eof)));
    assert!(matches!(empty.next_frame_len(), Err(WireError::Eof)));
    let err = empty.read_frame().unwrap_err();
    assert_eq!(err.to_string(), "connection closed by the peer");
}

#[test]
fn eof_inside_a_frame_is_truncated() {
    let bytes = frames(&[b"abcdef"]);
    for cut in 1..bytes.len() {
        let mut reader = FrameReader::new(Cursor::new(bytes[..cut].to_vec()), limits(64));
        let err = reader.read_frame().unwrap_err();
        let (expected, got) = match err {
            WireError::Truncated { expected, got } => (expected, got),
            other => panic!("cut at {cut}: {other:?}"),
        };
        if cut < HEADER_LEN {
            assert_eq!((expected, got), (HEADER_LEN, cut));
        } else {
            assert_eq!((expected, got), (bytes.len(), cut));
        }
        // Unbuffered reads classify it the same way.
        let mut cursor = Cursor::new(bytes[..cut].to_vec());
        match read_frame_unbuffered(&mut cursor, &limits(64)) {
            Err(WireError::Truncated {
                expected: e,
                got: g,
            }) => assert_eq!((e, g), (expected, got)),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    let err = FrameReader::new(Cursor::new(vec![0, 0, 0, 9, 1]), limits(64))
        .read_frame()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "connection closed by the peer in the middle of a frame: expected 13 bytes, got 5"
    );
}

#[test]
fn oversized_length_is_rejected_before_allocating() {
    let mut reader = FrameReader::new(Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2]), limits(100));
    assert!(reader.has_buffered_frame() || reader.buffered_len() == 0);
    let mut out = Vec::new();
    let err = reader.read_frame_into(&mut out).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::Oversized {
                len: 0xffff_ffff,
                max: 100
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "frame of 4294967295 bytes is larger than the limit of 100 bytes"
    );
    assert_eq!(out.capacity(), 0, "nothing allocated for the payload");
    assert!(reader.buffer_capacity() <= READ_CHUNK);
    // A poll would report the error as ready, without another read.
    assert!(reader.has_buffered_frame());

    let mut cursor = Cursor::new(vec![0, 0, 0, 101]);
    assert!(matches!(
        read_frame_unbuffered(&mut cursor, &limits(100)),
        Err(WireError::Oversized { len: 101, max: 100 })
    ));
    // Exactly at the limit is fine.
    let bytes = frames(&[&[7; 100]]);
    assert_eq!(
        FrameReader::new(Cursor::new(bytes), limits(100))
            .read_frame()
            .unwrap(),
        [7; 100]
    );
}

#[test]
fn header_then_payload_in_pieces() {
    let bytes = frames(&[b"0123456789", b"xyz", b"skipped", b"last"]);
    let mut reader = FrameReader::new(Cursor::new(bytes), limits(64));
    assert_eq!(reader.next_frame_len().unwrap(), 10);
    assert_eq!(reader.next_frame_len().unwrap(), 10, "idempotent");
    let mut head = [0u8; 4];
    reader.read_payload_into(&mut head).unwrap();
    assert_eq!(&head, b"0123");
    assert_eq!(reader.next_frame_len().unwrap(), 6, "what is left");
    let mut too_long = [0u8; 7];
    let err = reader.read_payload_into(&mut too_long).unwrap_err();
    assert!(matches!(&err, WireError::Io(e) if e.kind() == io::ErrorKind::InvalidInput));
    let mut tail = [0u8; 6];
    reader.read_payload_into(&mut tail).unwrap();
    assert_eq!(&tail, b"456789");
    assert_eq!(reader.next_frame_len().unwrap(), 3);
    assert_eq!(reader.read_frame().unwrap(), b"xyz");
    assert_eq!(reader.discard_payload().unwrap(), 7);
    assert_eq!(reader.read_frame().unwrap(), b"last");
    assert!(matches!(reader.discard_payload(), Err(WireError::Eof)));
    let err = reader.read_payload_into(&mut [0u8; 1]).unwrap_err();
    assert!(matches!(&err, WireError::Io(e) if e.kind() == io::ErrorKind::InvalidInput));
}

#[test]
fn large_payload_goes_straight_to_the_destination() {
    let payload: Vec<u8> = (0..3 * READ_CHUNK + 17).map(|i| (i * 7) as u8).collect();
    let bytes = frames(&[&payload, b"next"]);
    let mut reader = FrameReader::new(
        Trickle::new(Cursor::new(bytes.clone()), usize::MAX),
        FrameLimits::default(),
    );
    assert_eq!(reader.read_frame().unwrap(), payload);
    assert_eq!(reader.read_frame().unwrap(), b"next");
    let asked = &reader.get_ref().asked;
    assert!(
        asked.iter().any(|&n| n > READ_CHUNK),
        "the payload was read into the destination, not through the buffer: {asked:?}"
    );
    assert!(reader.buffer_capacity() <= READ_CHUNK);

    // Same with read_payload_into and a discarded large payload.
    let mut reader = FrameReader::new(Cursor::new(bytes.clone()), FrameLimits::default());
    let len = reader.next_frame_len().unwrap();
    let mut dst = vec![0u8; len];
    reader.read_payload_into(&mut dst).unwrap();
    assert_eq!(dst, payload);
    let mut reader = FrameReader::new(Cursor::new(bytes), FrameLimits::default());
    assert_eq!(reader.discard_payload().unwrap(), payload.len());
    assert_eq!(reader.read_frame().unwrap(), b"next");
}

#[test]
fn has_buffered_frame_tracks_the_buffer() {
    let bytes = frames(&[b"one", b"two"]);
    let (first, second) = bytes.split_at(bytes.len() - 2);
    let stream = Cursor::new(first.to_vec()).chain(Cursor::new(second.to_vec()));
    let mut reader = FrameReader::new(stream, limits(64));
    assert!(!reader.has_buffered_frame(), "nothing read yet");
    assert_eq!(reader.buffered_len(), 0);
    assert_eq!(reader.read_frame().unwrap(), b"one");
    // "two" is only partly buffered.
    assert_eq!(reader.buffered_len(), 5);
    assert!(!reader.has_buffered_frame());
    assert_eq!(reader.read_frame().unwrap(), b"two");
    assert!(!reader.has_buffered_frame());

    let mut reader = FrameReader::new(Cursor::new(frames(&[b"a", b"b"])), limits(64));
    assert_eq!(reader.next_frame_len().unwrap(), 1);
    assert!(
        reader.has_buffered_frame(),
        "rest of the current frame is buffered"
    );
    reader.read_frame().unwrap();
    assert!(reader.has_buffered_frame());
    reader.read_frame().unwrap();
    assert!(!reader.has_buffered_frame());
}

#[test]
fn interrupted_reads_and_writes_are_retried() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let bytes = frames(&[b"x", &payload]);
    let stream = Interrupting {
        inner: Cursor::new(bytes.clone()),
        flip: false,
    };
    let mut reader = FrameReader::new(stream, FrameLimits::default());
    assert_eq!(reader.read_frame().unwrap(), b"x");
    assert_eq!(reader.read_frame().unwrap(), payload);
    assert!(matches!(reader.read_frame(), Err(WireError::Eof)));

    let mut stream = Interrupting {
        inner: Cursor::new(bytes.clone()),
        flip: false,
    };
    assert_eq!(
        read_frame_unbuffered(&mut stream, &FrameLimits::default()).unwrap(),
        b"x"
    );

    let mut sink = Interrupting {
        inner: Vec::new(),
        flip: false,
    };
    write_frame(&mut sink, b"x", &FrameLimits::default()).unwrap();
    write_frame(&mut sink, &payload, &FrameLimits::default()).unwrap();
    assert_eq!(sink.inner, bytes);
}

#[test]
fn write_frame_handles_partial_writes() {
    let payload: Vec<u8> = (0..50u8).collect();
    for vectored in [false, true] {
        let mut w = ThreeBytes {
            out: Vec::new(),
            vectored,
            calls: 0,
        };
        write_frame(&mut w, &payload, &FrameLimits::default()).unwrap();
        write_frame(&mut w, b"", &FrameLimits::default()).unwrap();
        write_frame(&mut w, b"ab", &FrameLimits::default()).unwrap();
        assert_eq!(
            w.out,
            frames(&[&payload, b"", b"ab"]),
            "vectored: {vectored}"
        );
        // 54 + 4 + 6 bytes; without vectored writes the header and payload of
        // each frame are written separately.
        let calls = if vectored {
            18 + 2 + 2
        } else {
            (2 + 17) + 2 + (2 + 1)
        };
        assert_eq!(w.calls, calls, "vectored: {vectored}");
    }
}

#[test]
fn small_frame_is_one_write_call() {
    struct CountingWriter(Vec<u8>, usize);
    impl Write for CountingWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.1 += 1;
            let mut n = 0;
            for b in bufs {
                self.0.extend_from_slice(b);
                n += b.len();
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut w = CountingWriter(Vec::new(), 0);
    write_frame(&mut w, b"hi there", &FrameLimits::default()).unwrap();
    assert_eq!(w.1, 1);
    assert_eq!(w.0, frames(&[b"hi there"]));
}

#[test]
fn writes_over_the_limit_write_nothing() {
    let mut out = Vec::new();
    let err = write_frame(&mut out, &[0; 11], &limits(10)).unwrap_err();
    assert!(matches!(err, WireError::Oversized { len: 11, max: 10 }));
    assert!(out.is_empty());
    // The 4-byte header caps any limit at u32::MAX.
    assert_eq!(limits(usize::MAX).effective_max(), u32::MAX as usize);
}

#[test]
fn write_zero_is_an_error() {
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Ok(0)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = write_frame(&mut Full, b"x", &FrameLimits::default()).unwrap_err();
    assert!(matches!(&err, WireError::Io(e) if e.kind() == io::ErrorKind::WriteZero));
}

#[test]
fn batches_hold_many_frames() {
    let mut batch = FrameBatch::new(limits(16));
    assert!(batch.is_empty());
    batch.push(b"raw").unwrap();
    batch.push_value(&String::from("hi")).unwrap();
    batch.push_value(&(1u32, 2u64)).unwrap();
    assert_eq!(batch.len(), 3);
    assert!(matches!(
        batch.push(&[0; 17]),
        Err(WireError::Oversized { .. })
    ));
    assert!(matches!(
        batch.push_value(&"x".repeat(17)),
        Err(WireError::Oversized { .. })
    ));
    assert_eq!(batch.len(), 3, "failed pushes leave the batch unchanged");
    assert_eq!(
        batch.as_bytes(),
        [
            &[0, 0, 0, 3][..],
            b"raw",
            &[0, 0, 0, 3, 2, b'h', b'i'],
            &[0, 0, 0, 2, 1, 2]
        ]
        .concat()
    );

    let mut reader = FrameReader::new(Cursor::new(batch.as_bytes().to_vec()), limits(16));
    assert_eq!(reader.read_frame().unwrap(), b"raw");
    assert_eq!(
        codec::decode::<String>(&reader.read_frame().unwrap()).unwrap(),
        "hi"
    );
    assert_eq!(
        codec::decode::<(u32, u64)>(&reader.read_frame().unwrap()).unwrap(),
        (1, 2)
    );

    let mut sink = Vec::new();
    let expected = batch.as_bytes().to_vec();
    batch.write_to(&mut sink).unwrap();
    assert_eq!(sink, expected);
    assert!(batch.is_empty());
    batch.push(b"again").unwrap();
    batch.clear();
    assert_eq!(batch.as_bytes(), b"");
}

#[test]
fn unbuffered_read_stops_at_the_frame_end() {
    let bytes = frames(&[b"first", b"second"]);
    let mut cursor = Cursor::new(bytes);
    assert_eq!(
        read_frame_unbuffered(&mut cursor, &limits(64)).unwrap(),
        b"first"
    );
    assert_eq!(cursor.position(), 9);
    let mut reader = FrameReader::new(cursor, limits(64));
    assert_eq!(reader.read_frame().unwrap(), b"second");
}

#[test]
fn sixty_four_mib_over_a_unix_socket() {
    const LEN: usize = 64 * 1024 * 1024;
    let (tx, rx) = UnixStream::pair().unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let writer = std::thread::spawn(move || {
        let mut tx = tx;
        let payload: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        write_frame(&mut tx, b"before", &FrameLimits::default()).unwrap();
        write_frame(&mut tx, &payload, &FrameLimits::default()).unwrap();
        write_frame(&mut tx, b"after", &FrameLimits::default()).unwrap();
    });
    let mut reader = FrameReader::new(rx, FrameLimits::default());
    assert_eq!(reader.read_frame().unwrap(), b"before");
    let mut big = Vec::new();
    assert_eq!(reader.read_frame_into(&mut big).unwrap(), LEN);
    assert_eq!(big.capacity(), LEN, "reserved once, exactly");
    assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(reader.read_frame().unwrap(), b"after");
    writer.join().unwrap();
    assert!(matches!(reader.read_frame(), Err(WireError::Eof)));
    assert!(reader.buffer_capacity() <= READ_CHUNK);
}

#[tokio::test]
async fn async_frames_over_a_unix_socket() {
    let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        let limits = FrameLimits::default();
        write_frame_async(&mut a, b"", &limits).await.unwrap();
        write_frame_async(&mut a, b"small", &limits).await.unwrap();
        write_frame_async(&mut a, &sent, &limits).await.unwrap();
        write_frame_async(&mut a, &[1, 2, 3], &limits)
            .await
            .unwrap();
        // Then a header with no payload, and close.
        tokio::io::AsyncWriteExt::write_all(&mut a, &[0, 0, 0, 5, 1])
            .await
            .unwrap();
        drop(a);
    });
    let mut b = tokio::io::BufReader::new(b);
    let limits = FrameLimits::default();
    assert_eq!(read_frame_async(&mut b, &limits).await.unwrap(), b"");
    assert_eq!(read_frame_async(&mut b, &limits).await.unwrap(), b"small");
    assert_eq!(read_frame_async(&mut b, &limits).await.unwrap(), payload);
    assert_eq!(read_frame_async(&mut b, &limits).await.unwrap(), [1, 2, 3]);
    writer.await.unwrap();
    assert!(matches!(
        read_frame_async(&mut b, &limits).await,
        Err(WireError::Truncated {
            expected: 9,
            got: 5
        })
    ));
}

#[tokio::test]
async fn async_end_of_stream_and_limits() {
    let limits = limits(8);
    let mut empty: &[u8] = &[];
    assert!(matches!(
        read_frame_async(&mut empty, &limits).await,
        Err(WireError::Eof)
    ));
    let mut short: &[u8] = &[0, 0];
    assert!(matches!(
        read_frame_async(&mut short, &limits).await,
        Err(WireError::Truncated {
            expected: 4,
            got: 2
        })
    ));
    let mut big: &[u8] = &[0, 0, 0, 9];
    assert!(matches!(
        read_frame_async(&mut big, &limits).await,
        Err(WireError::Oversized { len: 9, max: 8 })
    ));
    let mut out = Vec::new();
    assert!(matches!(
        write_frame_async(&mut out, &[0; 9], &limits).await,
        Err(WireError::Oversized { len: 9, max: 8 })
    ));
    assert!(out.is_empty());
}
