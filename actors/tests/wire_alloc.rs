//! Measures the largest single allocation made while decoding hostile
//! payloads, with a counting global allocator. This binary holds one test
//! only, so no other test allocates while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use proptest::prelude::*;

use procvisor_actors::wire::codec;
use procvisor_actors::wire::frame::{FrameLimits, FrameReader, READ_CHUNK};

struct Tracking;

static ARMED: AtomicBool = AtomicBool::new(false);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn record(size: usize) {
    if ARMED.load(Ordering::Relaxed) {
        PEAK.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to the system allocator with the arguments
// it was given, so `Tracking` upholds exactly the guarantees of `System`; the
// only addition is an atomic update, which neither allocates nor panics.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's obligations for `alloc` are passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: `ptr` and `layout` come from this allocator, i.e. from
        // `System`; the caller's obligations are passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Largest single allocation made by `f`.
fn peak_of(f: impl FnOnce()) -> usize {
    PEAK.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    PEAK.load(Ordering::SeqCst)
}

/// The bound documented in `codec`: at most 64 × the payload, at least 1 KiB.
fn string_bound(payload_len: usize) -> usize {
    (64 * payload_len).max(1024)
}

/// serde pre-allocates sequences from their announced length, capped at
/// 1 MiB.
const SERDE_SEQ_CAP: usize = 1024 * 1024;

/// A varint length prefix announcing `len`.
fn varint(len: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&len.to_le_bytes());
    out
}

fn hostile_lengths() -> impl Strategy<Value = (u64, Vec<u8>, Vec<u8>)> {
    (
        prop_oneof![any::<u64>(), 1u64 << 20..1u64 << 40, Just(u64::MAX)],
        prop::collection::vec(any::<u8>(), 0..3),
        prop::collection::vec(any::<u8>(), 0..200),
    )
}

#[test]
fn hostile_lengths_allocate_within_bounds() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&hostile_lengths(), |(len, prefix, tail)| {
            // A string whose length is `len`, followed by `tail`.
            let payload = [varint(len), tail.clone()].concat();
            let peak = peak_of(|| {
                let _ = codec::decode::<String>(&payload);
            });
            prop_assert!(
                peak <= string_bound(payload.len()),
                "String: {peak} bytes for a {}-byte payload",
                payload.len()
            );

            // The same after a few arbitrary bytes, inside a tuple.
            let payload = [prefix.clone(), varint(len), tail.clone()].concat();
            let peak = peak_of(|| {
                let _ = codec::decode::<(u8, String)>(&payload);
                let _ = codec::decode::<(u16, Option<String>)>(&payload);
            });
            prop_assert!(peak <= string_bound(payload.len()), "tuple: {peak}");

            // Sequences: serde's own cap applies.
            let peak = peak_of(|| {
                let _ = codec::decode::<Vec<u8>>(&payload);
                let _ = codec::decode::<Vec<String>>(&payload);
                let _ = codec::decode::<Vec<Vec<u64>>>(&payload);
            });
            prop_assert!(
                peak <= SERDE_SEQ_CAP.max(string_bound(payload.len())),
                "seq: {peak}"
            );

            // A frame reader given the same bytes with a small limit.
            let limits = FrameLimits::new(128);
            let peak = peak_of(|| {
                let mut reader = FrameReader::new(&payload[..], limits);
                while reader.read_frame().is_ok() {}
            });
            prop_assert!(peak <= READ_CHUNK.max(128), "frame reader: {peak}");
            Ok(())
        })
        .unwrap();

    // The allocator really is measuring.
    let valid = codec::encode(&"x".repeat(5000)).unwrap();
    assert!(peak_of(|| drop(codec::decode::<String>(&valid))) >= 5000);

    // The documented example: 9 bytes announcing a 1 TiB string.
    let payload = varint(1 << 40);
    let peak = peak_of(|| {
        assert!(codec::decode::<String>(&payload).is_err());
    });
    assert!(peak <= 1024, "{peak}");
}
