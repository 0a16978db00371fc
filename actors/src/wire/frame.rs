//! Length-prefixed frames over a byte stream.
//!
//! A frame is a 4-byte big-endian unsigned payload length followed by exactly
//! that many payload bytes (see the [parent module](super) for the bytes of a
//! real frame).
//!
//! Reading:
//! * [`FrameReader`] is the fast path: it reads the stream in chunks of
//!   [`READ_CHUNK`] bytes, so a burst of small frames costs one `read` system
//!   call, while the payload of a large frame is read straight into the
//!   caller's buffer.
//! * [`read_frame_unbuffered`] reads exactly one frame and never a byte past
//!   its end (used by the handshake, before a stream is handed to a
//!   `FrameReader`).
//! * [`read_frame_async`] is the tokio version of `read_frame_unbuffered`;
//!   wrap the stream in a [`tokio::io::BufReader`] to batch small frames.
//!
//! Writing:
//! * [`write_frame`] / [`write_frame_async`] send header and payload with one
//!   vectored write, so a small frame is one system call and a large payload
//!   is never copied.
//! * [`FrameBatch`] collects many frames in one buffer, to send them with a
//!   single write.
//!
//! Every length is checked against the [`FrameLimits`]' `max_frame` *before*
//! anything is allocated for the payload. Reads and writes interrupted by a
//! signal (`EINTR`) are retried.

use std::fmt;
use std::io::{self, IoSlice, Read, Write};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{WireError, codec};

/// Default largest payload accepted or sent: 512 MiB.
pub const DEFAULT_MAX_FRAME: usize = 512 * 1024 * 1024;

/// Size of the frame header: a big-endian `u32` payload length.
pub const HEADER_LEN: usize = 4;

/// Size of the internal buffer of a [`FrameReader`], and so the most bytes it
/// asks the stream for in one `read` call.
pub const READ_CHUNK: usize = 64 * 1024;

/// Payloads are zero-filled at most this far ahead of the data that has
/// arrived, so a header announcing a huge frame that never comes costs
/// address space (reserved up front) but not touched memory.
const FILL_STEP: usize = 1024 * 1024;

/// Limits applied to every frame read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameLimits {
    /// Largest payload, in bytes, that is accepted on read or allowed on
    /// write. Values above `u32::MAX` act as `u32::MAX` (the header cannot
    /// express more).
    pub(crate) max_frame: usize,
}

impl Default for FrameLimits {
    /// `max_frame` = [`DEFAULT_MAX_FRAME`] (512 MiB).
    fn default() -> Self {
        Self {
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

impl FrameLimits {
    /// Limits with the given largest payload size.
    pub const fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }

    /// The limit really in force: `max_frame`, capped by what a 4-byte header
    /// can express.
    pub const fn effective_max(&self) -> usize {
        let header_max = u32::MAX as usize;
        if self.max_frame < header_max {
            self.max_frame
        } else {
            header_max
        }
    }

    /// `Ok` if a payload of `len` bytes is within the limit, otherwise
    /// [`WireError::Oversized`].
    pub fn check(&self, len: usize) -> Result<(), WireError> {
        let max = self.effective_max();
        if len > max {
            Err(WireError::Oversized { len, max })
        } else {
            Ok(())
        }
    }
}

/// The header for a payload of `len` bytes, after checking the limit.
fn header_for(len: usize, limits: &FrameLimits) -> Result<[u8; HEADER_LEN], WireError> {
    limits.check(len)?;
    // `check` caps the limit at u32::MAX, so the conversion cannot fail.
    let len = u32::try_from(len).map_err(|_| WireError::Oversized {
        len,
        max: limits.effective_max(),
    })?;
    Ok(len.to_be_bytes())
}

fn out_of_memory(len: usize) -> WireError {
    WireError::Io(io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("cannot allocate {len} bytes for a frame payload"),
    ))
}

fn truncated(expected_payload: usize, got_payload: usize) -> WireError {
    WireError::Truncated {
        expected: expected_payload.saturating_add(HEADER_LEN),
        got: got_payload.saturating_add(HEADER_LEN),
    }
}

/// One `read`, retried while it is interrupted by a signal.
fn read_retrying<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The error for a stream that ended after `got` bytes of a frame header: a clean `Eof` at a
/// frame boundary, `Truncated` inside the header.
fn header_cut_short(got: usize) -> WireError {
    if got == 0 {
        WireError::Eof
    } else {
        WireError::Truncated {
            expected: HEADER_LEN,
            got,
        }
    }
}

/// Reads the 4 header bytes, one `read` at a time so nothing past them is
/// consumed. `Eof` if the stream ends before the first byte.
fn read_header_exact<R: Read + ?Sized>(r: &mut R) -> Result<usize, WireError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = read_retrying(r, &mut header[got..])?;
        if n == 0 {
            return Err(header_cut_short(got));
        }
        got += n;
    }
    Ok(u32::from_be_bytes(header) as usize)
}

/// Appends exactly `len` bytes read from `r` to `out` (which must already
/// have the capacity), zero-filling at most [`FILL_STEP`] ahead of the data.
/// Returns how many bytes arrived before the end of the stream.
fn read_into_vec<R: Read + ?Sized>(r: &mut R, out: &mut Vec<u8>, len: usize) -> io::Result<usize> {
    let start = out.len();
    let end = start + len;
    while out.len() < end {
        let filled = out.len();
        let step = (end - filled).min(FILL_STEP);
        out.resize(filled + step, 0);
        let result = read_retrying(r, &mut out[filled..]);
        match result {
            Ok(n) => {
                out.truncate(filled + n);
                if n == 0 {
                    break;
                }
            }
            Err(e) => {
                out.truncate(filled);
                return Err(e);
            }
        }
    }
    Ok(out.len() - start)
}

/// Reads exactly one frame from `r` and nothing more.
///
/// It reads the 4 header bytes, checks the length against `limits`, then
/// reads exactly the payload, so bytes that follow the frame stay in the
/// stream. This costs at least two `read` calls per frame: use a
/// [`FrameReader`] for a stream of frames, and this function where the
/// stream must be left exactly at a frame boundary (for example the
/// handshake, before wrapping the stream in a `FrameReader`).
///
/// # Errors
///
/// [`WireError::Eof`] if the stream ends before the first header byte,
/// [`WireError::Truncated`] if it ends later inside the frame,
/// [`WireError::Oversized`] if the header announces more than the limit
/// (nothing is allocated then), [`WireError::Io`] if the stream fails.
pub fn read_frame_unbuffered<R: Read + ?Sized>(
    r: &mut R,
    limits: &FrameLimits,
) -> Result<Vec<u8>, WireError> {
    let len = read_header_exact(r)?;
    limits.check(len)?;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| out_of_memory(len))?;
    let got = read_into_vec(r, &mut out, len)?;
    if got < len {
        return Err(truncated(len, got));
    }
    Ok(out)
}

/// Writes one frame: the header, then `payload`.
///
/// Header and payload go to one `write_vectored` call, so a small frame is
/// one system call and the payload is never copied; partial writes are
/// continued until everything is written, and interrupted writes are
/// retried. Nothing is flushed: call `w.flush()` if `w` buffers.
///
/// # Errors
///
/// [`WireError::Oversized`] if `payload` is over the limit (nothing is
/// written then), [`WireError::Io`] if the stream fails or accepts no more
/// bytes (`WriteZero`). After an I/O error part of the frame may have been
/// written.
pub fn write_frame<W: Write + ?Sized>(
    w: &mut W,
    payload: &[u8],
    limits: &FrameLimits,
) -> Result<(), WireError> {
    let header = header_for(payload.len(), limits)?;
    let mut slices = [IoSlice::new(&header), IoSlice::new(payload)];
    let mut remaining: &mut [IoSlice<'_>] = &mut slices;
    while !remaining.is_empty() {
        match w.write_vectored(remaining) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(n) => IoSlice::advance_slices(&mut remaining, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Appends a whole frame (header and `payload`) to `buf`.
///
/// # Errors
///
/// [`WireError::Oversized`] if `payload` is longer than a header can express
/// (`u32::MAX` bytes); `buf` is unchanged then.
pub fn encode_frame_into(buf: &mut Vec<u8>, payload: &[u8]) -> Result<(), WireError> {
    let header = header_for(payload.len(), &FrameLimits::new(usize::MAX))?;
    buf.reserve(HEADER_LEN + payload.len());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    Ok(())
}

/// Many frames in one buffer, to be sent with a single write.
///
/// ```
/// use procvisor_actors::wire::frame::{FrameBatch, FrameLimits, FrameReader};
///
/// let mut batch = FrameBatch::new(FrameLimits::default());
/// batch.push(b"raw bytes").unwrap();
/// batch.push_value(&(1u8, "two")).unwrap();
/// assert_eq!(batch.len(), 2);
///
/// let mut reader = FrameReader::new(batch.as_bytes(), FrameLimits::default());
/// assert_eq!(reader.read_frame().unwrap(), b"raw bytes");
/// ```
#[derive(Debug, Clone, Default)]
pub struct FrameBatch {
    buf: Vec<u8>,
    frames: usize,
    limits: FrameLimits,
}

impl FrameBatch {
    /// An empty batch whose frames are checked against `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        Self {
            buf: Vec::new(),
            frames: 0,
            limits,
        }
    }

    /// Appends a frame carrying `payload`.
    ///
    /// # Errors
    ///
    /// [`WireError::Oversized`] if `payload` is over the limit; the batch is
    /// unchanged then.
    pub fn push(&mut self, payload: &[u8]) -> Result<(), WireError> {
        let header = header_for(payload.len(), &self.limits)?;
        self.buf.reserve(HEADER_LEN + payload.len());
        self.buf.extend_from_slice(&header);
        self.buf.extend_from_slice(payload);
        self.frames += 1;
        Ok(())
    }

    /// Encodes `value` with [`codec::encode_into`] straight into the batch
    /// (no intermediate buffer) and frames it.
    ///
    /// # Errors
    ///
    /// [`WireError::Encode`] or [`WireError::Oversized`]; the batch is
    /// unchanged then.
    pub fn push_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WireError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER_LEN]);
        let header = codec::encode_into(value, &mut self.buf)
            .and_then(|()| header_for(self.buf.len() - start - HEADER_LEN, &self.limits));
        match header {
            Ok(header) => {
                self.buf[start..start + HEADER_LEN].copy_from_slice(&header);
                self.frames += 1;
                Ok(())
            }
            Err(err) => {
                self.buf.truncate(start);
                Err(err)
            }
        }
    }

    /// The encoded frames, back to back, ready to be written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Number of frames in the batch.
    pub fn len(&self) -> usize {
        self.frames
    }

    /// `true` if the batch holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Empties the batch, keeping its memory for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.frames = 0;
    }

    /// Writes all frames with `write_all` (which retries interrupted writes)
    /// and empties the batch.
    ///
    /// # Errors
    ///
    /// [`WireError::Io`]; the batch is kept then, but part of it may have
    /// been written.
    pub fn write_to<W: Write + ?Sized>(&mut self, w: &mut W) -> Result<(), WireError> {
        w.write_all(&self.buf)?;
        self.clear();
        Ok(())
    }
}

/// Where the reader stands inside a frame whose header has been consumed.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Payload length announced by the header.
    len: usize,
    /// Payload bytes not yet handed out.
    left: usize,
}

/// Buffered reader of frames.
///
/// It asks the stream for up to [`READ_CHUNK`] bytes at a time, so many
/// small frames cost one `read` system call; the part of a large payload
/// that is not already buffered is read straight into the destination.
/// The internal buffer never grows beyond `READ_CHUNK`.
///
/// Besides [`read_frame`](Self::read_frame), a frame can be taken in two
/// steps: [`next_frame_len`](Self::next_frame_len) reads only the header
/// (so the caller can apply its own size limit), then
/// [`read_payload_into`](Self::read_payload_into) or
/// [`discard_payload`](Self::discard_payload) takes the payload.
///
/// ```
/// use procvisor_actors::wire::frame::{FrameLimits, FrameReader};
/// use procvisor_actors::wire::WireError;
///
/// let bytes: &[u8] = &[0, 0, 0, 2, b'h', b'i', 0, 0, 0, 0];
/// let mut reader = FrameReader::new(bytes, FrameLimits::default());
/// assert_eq!(reader.read_frame().unwrap(), b"hi");
/// assert!(reader.has_buffered_frame());
/// assert_eq!(reader.read_frame().unwrap(), b"");
/// assert!(matches!(reader.read_frame(), Err(WireError::Eof)));
/// ```
pub struct FrameReader<R: Read> {
    inner: R,
    /// `buf.len()` is the buffer size (0 until the first read);
    /// `buf[pos..end]` holds bytes read but not yet consumed.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    limits: FrameLimits,
    pending: Option<Pending>,
}

impl<R: Read + fmt::Debug> fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("inner", &self.inner)
            .field("buffered", &self.buffered_len())
            .field("limits", &self.limits)
            .field("pending_payload", &self.pending.map(|p| p.left))
            .finish()
    }
}

impl<R: Read> FrameReader<R> {
    /// Wraps `inner`. No memory is allocated until the first read.
    pub fn new(inner: R, limits: FrameLimits) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            limits,
            pending: None,
        }
    }

    /// Reads the next whole frame into a new vector.
    ///
    /// If [`next_frame_len`](Self::next_frame_len) or
    /// [`read_payload_into`](Self::read_payload_into) already took part of
    /// the current frame, this returns the rest of its payload.
    ///
    /// # Errors
    ///
    /// [`WireError::Eof`] at a clean end of stream between frames,
    /// [`WireError::Truncated`] if the stream ends inside a frame,
    /// [`WireError::Oversized`] if the header is over the limit (nothing is
    /// allocated, and the stream cannot be resynchronized),
    /// [`WireError::Io`] if the stream fails.
    pub fn read_frame(&mut self) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.read_frame_into(&mut out)?;
        Ok(out)
    }

    /// Like [`read_frame`](Self::read_frame), but clears `out` and fills it,
    /// so its memory is reused from frame to frame. Returns the payload
    /// length.
    ///
    /// # Errors
    ///
    /// As [`read_frame`](Self::read_frame). On error `out` holds a prefix of
    /// the payload or nothing.
    pub fn read_frame_into(&mut self, out: &mut Vec<u8>) -> Result<usize, WireError> {
        let want = self.next_frame_len()?;
        out.clear();
        out.try_reserve_exact(want)
            .map_err(|_| out_of_memory(want))?;
        let mut got = self.take_buffered(want, |bytes| out.extend_from_slice(bytes));
        while got < want {
            let rest = want - got;
            let n = if rest >= READ_CHUNK {
                read_into_vec(&mut self.inner, out, rest.min(FILL_STEP))?
            } else {
                self.fill()?;
                self.take_buffered(rest, |bytes| out.extend_from_slice(bytes))
            };
            if n == 0 {
                return Err(self.truncated_after(got));
            }
            got += n;
        }
        self.consume_payload(got);
        Ok(got)
    }

    /// Reads the header of the next frame, checks its length against the
    /// limit and returns it, leaving the payload unread.
    ///
    /// Calling it again before the payload is taken returns the number of
    /// payload bytes still unread, without reading anything.
    ///
    /// # Errors
    ///
    /// [`WireError::Eof`], [`WireError::Truncated`] (the stream ends inside
    /// the header), [`WireError::Oversized`] (the header stays unconsumed),
    /// [`WireError::Io`].
    pub fn next_frame_len(&mut self) -> Result<usize, WireError> {
        if let Some(pending) = self.pending {
            return Ok(pending.left);
        }
        while self.buffered_len() < HEADER_LEN {
            if self.fill()? == 0 {
                return Err(match self.buffered_len() {
                    0 => WireError::Eof,
                    got => WireError::Truncated {
                        expected: HEADER_LEN,
                        got,
                    },
                });
            }
        }
        let len = self.peek_header().unwrap_or_default();
        self.limits.check(len)?;
        self.pos += HEADER_LEN;
        self.pending = Some(Pending { len, left: len });
        Ok(len)
    }

    /// Fills `dst` with the next `dst.len()` payload bytes of the frame whose
    /// header [`next_frame_len`](Self::next_frame_len) returned.
    ///
    /// The payload may be taken in several pieces; once all of it is taken
    /// the reader moves on to the next frame. Bytes not already buffered are
    /// read straight into `dst` when at least [`READ_CHUNK`] of them are
    /// needed.
    ///
    /// # Errors
    ///
    /// [`WireError::Io`] with kind `InvalidInput` if no header was read or
    /// `dst` is longer than the unread payload; [`WireError::Truncated`] if
    /// the stream ends first; [`WireError::Io`] if it fails.
    pub fn read_payload_into(&mut self, dst: &mut [u8]) -> Result<(), WireError> {
        let left = self.pending.map(|p| p.left).ok_or_else(|| {
            invalid_input("read_payload_into called before next_frame_len".to_owned())
        })?;
        if dst.len() > left {
            return Err(invalid_input(format!(
                "destination of {} bytes is longer than the {left} payload bytes left",
                dst.len()
            )));
        }
        let mut got =
            self.take_buffered(dst.len(), |bytes| dst[..bytes.len()].copy_from_slice(bytes));
        while got < dst.len() {
            let rest = dst.len() - got;
            let n = if rest >= READ_CHUNK {
                read_retrying(&mut self.inner, &mut dst[got..])?
            } else {
                self.fill()?;
                self.take_buffered(rest, |bytes| {
                    dst[got..got + bytes.len()].copy_from_slice(bytes);
                })
            };
            if n == 0 {
                self.consume_payload(got);
                return Err(self.truncated_after(0));
            }
            got += n;
        }
        self.consume_payload(got);
        Ok(())
    }

    /// Skips the unread payload of the current frame (reading the header
    /// first if needed) and returns how many bytes were skipped.
    ///
    /// # Errors
    ///
    /// As [`next_frame_len`](Self::next_frame_len), and
    /// [`WireError::Truncated`] if the stream ends inside the payload.
    pub fn discard_payload(&mut self) -> Result<usize, WireError> {
        let want = self.next_frame_len()?;
        let mut got = self.take_buffered(want, |_| {});
        while got < want {
            self.fill()?;
            let n = self.take_buffered(want - got, |_| {});
            if n == 0 {
                return Err(self.truncated_after(got));
            }
            got += n;
        }
        self.consume_payload(got);
        Ok(got)
    }

    /// `true` if the next [`read_frame`](Self::read_frame) will return
    /// without reading from the stream: a whole frame (or the rest of the
    /// current one) is buffered, or a buffered header is already known to be
    /// over the limit. Lets a poll report "ready" without a system call.
    pub fn has_buffered_frame(&self) -> bool {
        match self.pending {
            Some(pending) => pending.left <= self.buffered_len(),
            None => match self.peek_header() {
                // `peek_header` returned a length, so at least HEADER_LEN
                // bytes are buffered.
                Some(len) => {
                    self.limits.check(len).is_err() || len <= self.buffered_len() - HEADER_LEN
                }
                None => false,
            },
        }
    }

    /// Number of bytes read from the stream and not yet handed out.
    pub fn buffered_len(&self) -> usize {
        self.end - self.pos
    }

    /// Capacity of the internal buffer: 0 before the first read, then
    /// [`READ_CHUNK`], never more.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The payload length in a fully buffered header, if any.
    fn peek_header(&self) -> Option<usize> {
        let header = self.buf.get(self.pos..self.pos + HEADER_LEN)?;
        if self.buffered_len() < HEADER_LEN {
            return None;
        }
        let header: [u8; HEADER_LEN] = header.try_into().ok()?;
        Some(u32::from_be_bytes(header) as usize)
    }

    /// Hands up to `max` buffered bytes to `sink` and consumes them from the
    /// buffer. Returns how many.
    fn take_buffered(&mut self, max: usize, sink: impl FnOnce(&[u8])) -> usize {
        let n = self.buffered_len().min(max);
        if n > 0 {
            sink(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
        }
        n
    }

    /// Marks `n` payload bytes of the current frame as handed out.
    fn consume_payload(&mut self, n: usize) {
        if let Some(pending) = &mut self.pending {
            pending.left -= n.min(pending.left);
            if pending.left == 0 {
                self.pending = None;
            }
        }
    }

    /// The `Truncated` error for the current frame, `extra` bytes beyond
    /// those already consumed having arrived.
    fn truncated_after(&self, extra: usize) -> WireError {
        match self.pending {
            Some(pending) => truncated(pending.len, pending.len - pending.left + extra),
            None => truncated(0, 0),
        }
    }

    /// One `read` into the free part of the buffer (compacting it first if
    /// needed). Returns the number of bytes read; 0 means end of stream.
    /// Callers only call it when fewer than `READ_CHUNK` bytes are buffered.
    fn fill(&mut self) -> io::Result<usize> {
        if self.buf.is_empty() {
            self.buf = vec![0; READ_CHUNK];
        }
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        debug_assert!(self.end < self.buf.len(), "fill called on a full buffer");
        let n = read_retrying(&mut self.inner, &mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

fn invalid_input(text: String) -> WireError {
    WireError::Io(io::Error::new(io::ErrorKind::InvalidInput, text))
}

/// Reads exactly one frame from an async stream and nothing more.
///
/// The tokio twin of [`read_frame_unbuffered`]: it reads exactly the header
/// and then exactly the payload, so it can be used during a handshake. For a
/// stream of many small frames, give it a [`tokio::io::BufReader`] so they
/// are read in chunks.
///
/// # Errors
///
/// As [`read_frame_unbuffered`].
pub async fn read_frame_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    limits: &FrameLimits,
) -> Result<Vec<u8>, WireError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = read_retrying_async(r, &mut header[got..]).await?;
        if n == 0 {
            return Err(header_cut_short(got));
        }
        got += n;
    }
    let len = u32::from_be_bytes(header) as usize;
    limits.check(len)?;
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| out_of_memory(len))?;
    while out.len() < len {
        let filled = out.len();
        let step = (len - filled).min(FILL_STEP);
        out.resize(filled + step, 0);
        let result = read_retrying_async(r, &mut out[filled..]).await;
        match result {
            Ok(0) => return Err(truncated(len, filled)),
            Ok(n) => out.truncate(filled + n),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

async fn read_retrying_async<R: AsyncRead + Unpin + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
) -> io::Result<usize> {
    loop {
        match r.read(buf).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Writes one frame to an async stream: the tokio twin of [`write_frame`].
///
/// Header and payload go to vectored writes (one system call for a small
/// frame when the stream supports vectored writes), partial writes are
/// continued and interrupted writes retried. Nothing is flushed: call
/// `flush` if `w` buffers.
///
/// # Errors
///
/// As [`write_frame`].
pub async fn write_frame_async<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    payload: &[u8],
    limits: &FrameLimits,
) -> Result<(), WireError> {
    let header = header_for(payload.len(), limits)?;
    let mut slices = [IoSlice::new(&header), IoSlice::new(payload)];
    let mut remaining: &mut [IoSlice<'_>] = &mut slices;
    while !remaining.is_empty() {
        match w.write_vectored(remaining).await {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(n) => IoSlice::advance_slices(&mut remaining, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
