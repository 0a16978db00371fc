//! Sending file descriptors between processes (`SCM_RIGHTS` over Unix sockets).
//!
//! Used with `SOCK_SEQPACKET` sockets, where one `send` is one message: the bytes and the fds
//! that travel with them arrive together or not at all.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// The most fds one `sendmsg` may carry (the kernel's `SCM_MAX_FD`). A frame on a stream
/// socket carries more by attaching one batch to each of its first bytes.
pub(crate) const FDS_PER_SEND: usize = 253;

/// A connected pair of `SOCK_SEQPACKET` Unix sockets (close-on-exec).
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

/// Sends `bytes` and `fds` as one message.
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let iov = [IoSlice::new(bytes)];
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives one message into `buf`: its length (0 means the peer closed) and the fds it
/// carried, owned by the caller (close-on-exec).
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; FDS_PER_SEND]);
    loop {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel installed these fds in our table for this message; nobody
                // else knows them yet, so we take ownership.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "file descriptors were lost: more arrived than one message may carry",
            ));
        }
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message longer than the buffer",
            ));
        }
        return Ok((msg.bytes, fds));
    }
}

// ---- file descriptors inside serde values -----------------------------------------------
//
// A value that owns an fd (a `Connection`, later a shared-memory handle) cannot put the fd's
// number on the wire: it means nothing in another process. Instead its `Serialize` impl calls
// `export_fd` while an encoder runs inside `collecting_fds`; the fd is dup'ed into the
// collection and the value writes the fd's *index* there. The collection travels beside the
// bytes (SCM_RIGHTS), and the receiver decodes inside `providing_fds`, where `import_fd(index)`
// hands the value its fd back.

use std::cell::RefCell;

/// The fds a message being encoded carries, each with the number it has in this process (an
/// fd exported twice — a `Value` and its lock live in one memfd — travels once).
struct Collected(Vec<(RawFd, OwnedFd)>);

thread_local! {
    static SINK: RefCell<Option<Collected>> = const { RefCell::new(None) };
    static SOURCE: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
}

/// Runs `encode`, collecting every fd that values export while it runs.
pub fn collecting_fds<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outer = SINK.with(|s| s.replace(Some(Collected(Vec::new()))));
    let result = encode();
    let collected = SINK.with(|s| s.replace(outer));
    let fds = collected.map_or_else(Vec::new, |c| c.0.into_iter().map(|(_, fd)| fd).collect());
    (result, fds)
}

/// Runs `decode` with `fds` available to [`import_fd`]; the fds are closed when it returns
/// (the values that imported one hold their own duplicate).
pub fn providing_fds<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let outer = SOURCE.with(|s| s.replace(Some(fds)));
    let result = decode();
    SOURCE.with(|s| s.replace(outer));
    result
}

/// Called by a `Serialize` impl: duplicates `fd` into the current collection and returns its
/// index, or `None` when no [`collecting_fds`] is running (the value is being encoded for a
/// destination that cannot carry fds). The same fd exported again gets the same index.
pub fn export_fd(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    SINK.with(|s| {
        let mut sink = s.borrow_mut();
        let Some(Collected(fds)) = sink.as_mut() else {
            return Ok(None);
        };
        let raw = fd.as_raw_fd();
        let index = match fds.iter().position(|(number, _)| *number == raw) {
            Some(index) => index,
            None => {
                fds.push((raw, fd.try_clone_to_owned()?));
                fds.len() - 1
            }
        };
        Ok(Some(index as u32))
    })
}

/// Called by a `Deserialize` impl: a duplicate of the fd at `index` in the current
/// [`providing_fds`] (an index may be imported by several values). `None` if there is none
/// (not inside `providing_fds`, a bad index, or the process is out of descriptors).
pub fn import_fd(index: u32) -> Option<OwnedFd> {
    SOURCE.with(|s| s.borrow().as_ref()?.get(index as usize)?.try_clone().ok())
}

/// Writes `frame` (a whole frame, header included) on a stream socket with `fds` attached.
///
/// One `sendmsg` carries at most [`FDS_PER_SEND`] fds, so batch `i` of the fds rides on byte
/// `i` of the frame, sent alone: the kernel keeps each batch with its byte, and
/// [`recv_exact_with_fds`] collects them all while it reads the frame. A frame thus carries up to
/// `FDS_PER_SEND` × its length fds. Loops over partial writes.
pub(crate) fn send_frame_with_fds(
    sock: BorrowedFd<'_>,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let batches: Vec<&[RawFd]> = raw.chunks(FDS_PER_SEND).collect();
    if batches.len() > frame.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a {}-byte message cannot carry {} file descriptors",
                frame.len(),
                raw.len()
            ),
        ));
    }
    let mut sent = 0;
    for (i, batch) in batches.iter().enumerate() {
        // Every batch but the last goes with exactly one byte; the last with the rest.
        let end = if i + 1 < batches.len() {
            i + 1
        } else {
            frame.len()
        };
        sent += send_some(sock, &frame[i..end], batch)?;
        if i + 1 < batches.len() && sent != i + 1 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
    }
    while sent < frame.len() {
        sent += send_some(sock, &frame[sent..], &[])?;
    }
    Ok(())
}

/// One `sendmsg` of (a prefix of) `bytes` with `fds`; returns how many bytes went.
fn send_some(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let iov = [IoSlice::new(bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Fills `buf` from a stream socket, collecting the fds attached to any of its bytes.
/// `Ok(None)` on a clean EOF before the first byte.
pub(crate) fn recv_exact_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<Option<Vec<OwnedFd>>> {
    let mut got = 0;
    let mut all_fds = Vec::new();
    while got < buf.len() {
        let (n, fds) = recv_with_fds(sock, &mut buf[got..])?;
        all_fds.extend(fds);
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(Some(all_fds))
}
