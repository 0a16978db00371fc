//! [`Segment`]: a shared mapping of an anonymous memfd, passable to other processes.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pid::my_pid;
use crate::fdpass;
use crate::sync_util::lock;

const MAGIC: u64 = u64::from_le_bytes(*b"PVSHM\0\x01\0");
/// Bytes before the data: the header, padded to a cache line.
const HEADER: usize = 64;
/// Largest segment accepted from a peer's description (a sanity bound, not a quota).
const MAX_LEN: u64 = 1 << 40;

/// The header at offset 0 of every segment: how a process that opens a segment through
/// `/proc/<pid>/fd/<n>` checks it opened the segment it was told about.
#[repr(C)]
struct Header {
    magic: u64,
    id: [u8; 16],
    len: u64,
    home_pid: i32,
    home_fd: i32,
}

/// Why a segment could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Every process that could hand over the segment's memfd has exited.
    #[error(
        "the shared object is gone: its home process (pid {home_pid}) and the process that sent \
         it have exited, so its memory cannot be opened"
    )]
    HomeGone {
        /// The creator's pid.
        home_pid: i32,
    },
    /// The OS refused (memfd_create, ftruncate, mmap).
    #[error("shared memory: {0}")]
    Io(#[from] std::io::Error),
    /// A description with a size no segment has.
    #[error("invalid shared memory description: {0}")]
    Invalid(String),
}

/// Unsafe marker for types that may be viewed in shared memory: `#[repr(C)]` (or a primitive),
/// every bit pattern — all zeroes in particular — is a valid value, and every mutation goes
/// through atomics (or is otherwise synchronized by the type's own protocol).
///
/// # Safety
/// Implementors must be valid for any bit pattern and must not contain pointers, references or
/// anything that owns memory.
pub unsafe trait SharedState: Sync + 'static {}

// SAFETY: atomics of plain integers are valid for any bit pattern and are Sync.
unsafe impl SharedState for std::sync::atomic::AtomicU32 {}
// SAFETY: as above.
unsafe impl SharedState for std::sync::atomic::AtomicI32 {}
// SAFETY: as above.
unsafe impl SharedState for std::sync::atomic::AtomicU64 {}
// SAFETY: as above.
unsafe impl SharedState for std::sync::atomic::AtomicI64 {}
// SAFETY: an array of SharedState values is itself valid for any bit pattern.
unsafe impl<T: SharedState, const N: usize> SharedState for [T; N] {}

struct Inner {
    fd: OwnedFd,
    /// The memfd's inode: how `/proc/<pid>/maps` names a mapping of it.
    inode: u64,
    base: NonNull<u8>,
    map_len: usize,
    id: [u8; 16],
}

// SAFETY: the mapping is shared memory that lives as long as `Inner`; all access to it goes
// through atomics or through types whose own protocol synchronizes it (SharedState).
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.map_len == 0 {
            return; // unmapped already (see Unregistered)
        }
        // SAFETY: `base`/`map_len` are the mapping made in `map`, unmapped exactly once here;
        // no reference into it outlives `Inner` (views borrow the Segment).
        unsafe {
            let _ = munmap(self.base.cast(), self.map_len);
        }
        lock(registry()).remove(&self.id);
    }
}

/// A block of memory shared between processes: an anonymous memfd mapped `MAP_SHARED`.
///
/// Cloning is cheap (the mapping is reference-counted). A segment serializes to a description
/// that another process turns back into a mapping of the same memory: in a child's arguments
/// the memfd itself travels (SCM_RIGHTS); in any other message (a Pipe, a Queue) the receiver
/// opens `/proc/<pid>/fd/<n>` of the home process, or of the sender, and checks the header.
/// Each process maps a given segment once, however many handles it receives.
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("id", &uuid::Uuid::from_bytes(self.inner.id))
            .field("len", &self.len())
            .field("home_pid", &self.home_pid())
            .finish()
    }
}

fn registry() -> &'static Mutex<HashMap<[u8; 16], Weak<Inner>>> {
    static REGISTRY: std::sync::OnceLock<Mutex<HashMap<[u8; 16], Weak<Inner>>>> =
        std::sync::OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

impl Segment {
    /// Creates a zero-filled segment of `len` data bytes, at home in this process.
    pub fn create(len: usize) -> Result<Segment, SegmentError> {
        let fd =
            nix::sys::memfd::memfd_create(c"procvisor", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(std::io::Error::from)?;
        let map_len = HEADER + len;
        nix::unistd::ftruncate(&fd, map_len as libc::off_t).map_err(std::io::Error::from)?;
        let id = *uuid::Uuid::new_v4().as_bytes();
        let inner = map(fd, map_len, id)?;
        // SAFETY: the mapping is at least HEADER bytes, page-aligned, and nobody else knows the
        // segment yet.
        unsafe {
            inner.base.cast::<Header>().as_ptr().write(Header {
                magic: MAGIC,
                id,
                len: len as u64,
                home_pid: my_pid(),
                home_fd: inner.fd.as_raw_fd(),
            });
        }
        Ok(Segment::register(inner))
    }

    fn register(inner: Inner) -> Segment {
        let inner = Arc::new(inner);
        lock(registry()).insert(inner.id, Arc::downgrade(&inner));
        Segment { inner }
    }

    fn header(&self) -> &Header {
        // SAFETY: every mapping starts with a header written before the segment was shared
        // (or checked when it was opened) and never written again.
        unsafe { self.inner.base.cast::<Header>().as_ref() }
    }

    /// Data bytes (the header not counted).
    pub fn len(&self) -> usize {
        self.inner.map_len - HEADER
    }

    /// Whether the segment has no data bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pid of the process that created the segment.
    pub fn home_pid(&self) -> i32 {
        self.header().home_pid
    }

    /// The memfd's inode number (the same in every process that maps the segment).
    pub(crate) fn inode(&self) -> u64 {
        self.inner.inode
    }

    /// A stable identity of the shared memory (the same in every process).
    pub fn id(&self) -> [u8; 16] {
        self.inner.id
    }

    /// Whether two handles map the same memory.
    pub fn same(&self, other: &Segment) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The first data byte. Valid for [`len`](Self::len) bytes while `self` lives.
    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: HEADER is within the mapping.
        unsafe { self.inner.base.as_ptr().add(HEADER) }
    }

    /// A shared view of a `T` at `offset` data bytes.
    ///
    /// # Panics
    /// If `T` does not fit there or `offset` is not aligned for `T` — a bug in the caller's
    /// layout, never a consequence of input.
    pub fn state<T: SharedState>(&self, offset: usize) -> &T {
        let size = std::mem::size_of::<T>();
        assert!(
            offset
                .checked_add(size)
                .is_some_and(|end| end <= self.len()),
            "shared state of {size} bytes at {offset} overruns a {}-byte segment",
            self.len()
        );
        let ptr = self.data_ptr().wrapping_add(offset);
        assert!(
            ptr.align_offset(std::mem::align_of::<T>()) == 0,
            "misaligned shared state"
        );
        // SAFETY: in bounds and aligned (checked above); T is valid for any bit pattern and
        // only mutated through atomics (SharedState); the borrow is tied to `self`, which keeps
        // the mapping alive.
        unsafe { &*ptr.cast::<T>() }
    }

    fn describe(&self, fd_index: Option<u32>) -> SegmentRepr {
        let header = self.header();
        let mut sources = vec![(header.home_pid, header.home_fd)];
        let mine = (my_pid(), self.inner.fd.as_raw_fd());
        if mine != sources[0] {
            sources.push(mine);
        }
        SegmentRepr {
            id: self.inner.id,
            len: self.len() as u64,
            fd_index,
            sources,
        }
    }

    fn open(repr: SegmentRepr) -> Result<Segment, SegmentError> {
        if let Some(existing) = lock(registry()).get(&repr.id).and_then(Weak::upgrade) {
            return Ok(Segment { inner: existing });
        }
        if repr.len > MAX_LEN {
            return Err(SegmentError::Invalid(format!("{} bytes", repr.len)));
        }
        let map_len = HEADER + repr.len as usize;
        let passed = repr.fd_index.and_then(fdpass::import_fd);
        let candidates = passed
            .into_iter()
            .map(Ok)
            .chain(repr.sources.iter().map(|&(pid, fd)| open_proc_fd(pid, fd)));
        for fd in candidates {
            let Ok(fd) = fd else { continue };
            let Ok(inner) = map(fd, map_len, repr.id) else {
                continue;
            };
            // SAFETY: the mapping is at least HEADER bytes (checked by `map`); a header is
            // plain integers, valid for any bit pattern.
            let header = unsafe { inner.base.cast::<Header>().as_ref() };
            if header.magic == MAGIC && header.id == repr.id && header.len == repr.len {
                return Ok(Segment::register(inner));
            }
            // Not our segment (the fd number was reused): unmap without touching the registry.
            drop(Unregistered(inner));
        }
        Err(SegmentError::HomeGone {
            home_pid: repr.sources.first().map_or(0, |s| s.0),
        })
    }
}

/// A mapping that was never registered: unmapped without removing the registry entry of the
/// id it was opened for.
struct Unregistered(Inner);

impl Drop for Unregistered {
    fn drop(&mut self) {
        // SAFETY: the mapping made by `map`, unmapped once; nothing borrowed it.
        unsafe {
            let _ = munmap(self.0.base.cast(), self.0.map_len);
        }
        self.0.map_len = 0;
    }
}

fn open_proc_fd(pid: i32, fd: i32) -> std::io::Result<OwnedFd> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    Ok(file.into())
}

fn map(fd: OwnedFd, map_len: usize, id: [u8; 16]) -> Result<Inner, SegmentError> {
    let actual = nix::sys::stat::fstat(fd.as_fd()).map_err(std::io::Error::from)?;
    if (actual.st_size as u64) < map_len as u64 {
        return Err(SegmentError::Invalid(format!(
            "the memory is {} bytes, {map_len} expected",
            actual.st_size
        )));
    }
    let length = NonZeroUsize::new(map_len).expect("a header is never empty");
    // SAFETY: a fresh shared mapping of a memfd at least `map_len` long (checked above); the
    // kernel picks the address, so no existing mapping is replaced.
    let base = unsafe {
        mmap(
            None,
            length,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
            fd.as_fd(),
            0,
        )
    }
    .map_err(std::io::Error::from)?;
    Ok(Inner {
        fd,
        inode: actual.st_ino,
        base: base.cast(),
        map_len,
        id,
    })
}

#[derive(Serialize, Deserialize)]
struct SegmentRepr {
    id: [u8; 16],
    len: u64,
    /// Index of the memfd among the fds travelling with the message, when it travels.
    fd_index: Option<u32>,
    /// `(pid, fd)` pairs to try through `/proc`: the home first, then the sender.
    sources: Vec<(i32, i32)>,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let fd_index = fdpass::export_fd(self.inner.fd.as_fd())
            .map_err(|e| S::Error::custom(format!("cannot pass shared memory: {e}")))?;
        self.describe(fd_index).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let repr = SegmentRepr::deserialize(deserializer)?;
        Segment::open(repr).map_err(|e| D::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn a_description_opens_the_same_memory_through_proc() {
        let seg = Segment::create(128).unwrap();
        seg.state::<AtomicU32>(4).store(7, Ordering::SeqCst);
        let repr = seg.describe(None);
        // A fresh mapping, bypassing the registry, as another process would make it.
        let fd = open_proc_fd(repr.sources[0].0, repr.sources[0].1).unwrap();
        let other = Segment {
            inner: Arc::new(map(fd, HEADER + 128, repr.id).unwrap()),
        };
        assert_eq!(other.state::<AtomicU32>(4).load(Ordering::SeqCst), 7);
        other.state::<AtomicU32>(8).store(9, Ordering::SeqCst);
        assert_eq!(seg.state::<AtomicU32>(8).load(Ordering::SeqCst), 9);
        // Its registry entry is the original's: unmap it without touching the registry.
        drop(Unregistered(Arc::try_unwrap(other.inner).ok().unwrap()));
    }

    #[test]
    fn the_registry_maps_a_segment_once_per_process() {
        let seg = Segment::create(16).unwrap();
        let again = Segment::open(seg.describe(None)).unwrap();
        assert!(seg.same(&again));
    }

    #[test]
    fn a_description_of_a_vanished_segment_is_home_gone() {
        let repr = SegmentRepr {
            id: [7; 16],
            len: 16,
            fd_index: None,
            sources: vec![(i32::MAX, 3)],
        };
        assert!(matches!(
            Segment::open(repr),
            Err(SegmentError::HomeGone { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn a_view_past_the_end_is_a_bug() {
        let seg = Segment::create(8).unwrap();
        let _ = seg.state::<AtomicU32>(8);
    }
}
