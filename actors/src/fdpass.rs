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

/// Most fds one message may carry.
pub(crate) const MAX_FDS: usize = 8;

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
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
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

thread_local! {
    static SINK: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static SOURCE: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Runs `encode`, collecting every fd that values export while it runs.
pub fn collecting_fds<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outer = SINK.with(|s| s.replace(Some(Vec::new())));
    let result = encode();
    let fds = SINK.with(|s| s.replace(outer)).unwrap_or_default();
    (result, fds)
}

/// Runs `decode` with `fds` available to [`import_fd`].
pub fn providing_fds<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let outer = SOURCE.with(|s| s.replace(Some(fds.into_iter().map(Some).collect())));
    let result = decode();
    SOURCE.with(|s| s.replace(outer));
    result
}

/// Called by a `Serialize` impl: duplicates `fd` into the current collection and returns its
/// index, or `None` when no [`collecting_fds`] is running (the value is being encoded for a
/// destination that cannot carry fds).
pub fn export_fd(fd: BorrowedFd<'_>) -> io::Result<Option<u32>> {
    SINK.with(|s| {
        let mut sink = s.borrow_mut();
        let Some(fds) = sink.as_mut() else {
            return Ok(None);
        };
        if fds.len() >= MAX_FDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("one message can carry at most {MAX_FDS} file descriptors"),
            ));
        }
        fds.push(fd.try_clone_to_owned()?);
        Ok(Some((fds.len() - 1) as u32))
    })
}

/// Called by a `Deserialize` impl: takes the fd at `index` from the current [`providing_fds`].
/// `None` if there is none (not inside `providing_fds`, a bad index, or taken twice).
pub fn import_fd(index: u32) -> Option<OwnedFd> {
    SOURCE.with(|s| s.borrow_mut().as_mut()?.get_mut(index as usize)?.take())
}

/// Writes `frame` (a whole frame, header included) on a stream socket with `fds` attached to
/// its first byte. Loops over partial writes.
pub(crate) fn send_frame_with_fds(
    sock: BorrowedFd<'_>,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let mut sent = 0;
    while sent < frame.len() {
        let iov = [IoSlice::new(&frame[sent..])];
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if sent == 0 && !raw.is_empty() {
            &rights
        } else {
            &[]
        };
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one frame's 4-byte header from a stream socket together with any fds attached to it;
/// `Ok(None)` on a clean EOF. The caller reads the payload with ordinary reads.
pub(crate) fn recv_header_with_fds(
    sock: BorrowedFd<'_>,
) -> io::Result<Option<([u8; 4], Vec<OwnedFd>)>> {
    let mut header = [0u8; 4];
    let mut got = 0;
    let mut all_fds = Vec::new();
    while got < 4 {
        let (n, fds) = recv_with_fds(sock, &mut header[got..])?;
        all_fds.extend(fds);
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok(Some((header, all_fds)))
}
