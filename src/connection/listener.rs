//! [`Listener`] and [`Client`]: connections between processes that did not start one another
//! (Python's `multiprocessing.connection.Listener` and `Client`), over Unix sockets or TCP,
//! with optional HMAC authentication.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::socket::{Backlog, listen, setsockopt, sockopt};
use procvisor_actors::wire::frame::DEFAULT_MAX_FRAME;
use procvisor_actors::wire::{WireError, client_handshake, server_handshake};
use serde::{Deserialize, Serialize};

use super::Connection;
use super::fd::{FdCell, HeldFd, Hold, RawIo};
use crate::error::{AddressError, AuthError, ConnectError};
use procvisor_actors::sync_util::lock;

/// Listen queue length when none is given. Python's default is 1, which makes clients that
/// connect at the same moment wait (TCP retries a dropped SYN only after a second); procvisor
/// uses 128.
pub const DEFAULT_BACKLOG: u32 = 128;

/// How long an authenticating [`Listener::accept`] or [`Client`] waits for the peer's side of
/// the handshake before giving up with an [`AuthError`] (so a silent peer cannot block a
/// listener forever).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A socket family (Python's `'AF_UNIX'` and `'AF_INET'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Family {
    /// Unix domain sockets: a path on this machine. The default.
    #[default]
    Unix,
    /// TCP over IPv4 or IPv6.
    Inet,
}

impl fmt::Display for Family {
    /// `AF_UNIX` or `AF_INET`, as Python spells them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Unix => "AF_UNIX",
            Family::Inet => "AF_INET",
        })
    }
}

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// Parsed from a string as Python infers a family from an address: `host:port` (a name, an
/// IPv4 address or a bracketed IPv6 address, then a port number) is TCP, anything else is the
/// path of a Unix socket. Use [`Address::unix`] for a path that looks like `host:port`.
///
/// ```
/// use procvisor::{Address, Family};
///
/// let tcp: Address = "127.0.0.1:6000".parse()?;
/// assert_eq!(tcp.family(), Family::Inet);
/// let unix: Address = "/tmp/my.sock".parse()?;
/// assert_eq!(unix, Address::unix("/tmp/my.sock"));
/// let local = Address::inet("localhost", 6000)?; // resolved now
/// assert_eq!(local.family(), Family::Inet);
/// # Ok::<(), procvisor::error::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Inet(SocketAddr),
}

impl Address {
    /// A Unix socket address.
    pub fn unix(path: impl Into<PathBuf>) -> Address {
        Address::Unix(path.into())
    }

    /// A TCP address from a host name (resolved now, IPv4 preferred) or IP, and a port
    /// (Python's `(host, port)` tuple).
    ///
    /// # Errors
    ///
    /// [`AddressError`] if the name does not resolve.
    pub fn inet(host: &str, port: u16) -> Result<Address, AddressError> {
        let shown = format!("{host}:{port}");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let resolved: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| AddressError {
                address: shown.clone(),
                reason: format!("cannot resolve the host name: {e}"),
            })?
            .collect();
        resolved
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| resolved.first())
            .map(|a| Address::Inet(*a))
            .ok_or_else(|| AddressError {
                address: shown,
                reason: "the host name resolves to no address".into(),
            })
    }

    /// The address's family.
    pub fn family(&self) -> Family {
        match self {
            Address::Unix(_) => Family::Unix,
            Address::Inet(_) => Family::Inet,
        }
    }

    /// Parses an address the way [`FromStr`] does (see the type's docs).
    ///
    /// # Errors
    ///
    /// [`AddressError`] for an empty string, a port out of range, or a host name that does
    /// not resolve.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        if text.is_empty() {
            return Err(AddressError {
                address: String::new(),
                reason: "an address cannot be empty".into(),
            });
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Ok(Address::Inet(addr));
        }
        match text.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains('/')
                    && !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let port = port.parse::<u16>().map_err(|_| AddressError {
                    address: text.to_string(),
                    reason: "the port must be a number from 0 to 65535".into(),
                })?;
                Address::inet(host, port)
            }
            _ => Ok(Address::Unix(PathBuf::from(text))),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Address, AddressError> {
        Address::parse(text)
    }
}

impl fmt::Display for Address {
    /// The path of a Unix address, `ip:port` of a TCP one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "{}", path.display()),
            Address::Inet(addr) => write!(f, "{addr}"),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Inet(addr)
    }
}

impl From<PathBuf> for Address {
    fn from(path: PathBuf) -> Address {
        Address::Unix(path)
    }
}

impl From<&Path> for Address {
    fn from(path: &Path) -> Address {
        Address::Unix(path.to_path_buf())
    }
}

/// A bound, listening socket.
pub(super) enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Unix(l) => l.as_fd(),
            Socket::Tcp(l) => l.as_fd(),
        }
    }
}

/// Files a listener created and removes when it closes.
struct Cleanup {
    socket_path: PathBuf,
    /// The private directory made for a listener created without an address.
    temp_dir: Option<PathBuf>,
}

/// A socket listening for [`Client`] connections (Python's `Listener`).
///
/// ```
/// use procvisor::{Client, Listener};
///
/// const AUTHKEY: &[u8] = b"secret password";
/// let listener = Listener::builder().authkey(AUTHKEY).bind()?; // a private Unix socket
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || -> procvisor::Result<String> {
///     let conn = Client::builder(address).authkey(AUTHKEY).connect()?;
///     Ok(conn.recv::<String>()?)
/// });
/// let conn = listener.accept()?;
/// conn.send(&"welcome")?;
/// assert_eq!(client.join().unwrap()?, "welcome");
/// # Ok::<(), procvisor::Error>(())
/// ```
///
/// Without an address, an AF_UNIX listener binds a socket in a fresh private directory (mode
/// 0700) under the system's temporary directory, and an AF_INET one binds `127.0.0.1` on a
/// free port. A Unix socket file the listener created is removed when it closes (and its
/// private directory with it).
///
/// Python's `Listener(address, family, backlog, authkey)` is [`Listener::bind`] for an
/// address alone, and [`Listener::builder`] for the rest.
pub struct Listener {
    socket: FdCell<Socket>,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    max_frame: usize,
    last_accepted: Mutex<Option<Address>>,
    cleanup: Mutex<Option<Cleanup>>,
}

/// Builds a [`Listener`] with the settings Python's constructor takes, and a few more.
///
/// ```
/// use procvisor::{Family, Listener};
///
/// // Authenticate clients with this process tree's key.
/// let listener = Listener::builder()
///     .family(Family::Inet)
///     .authkey(procvisor::current_process().authkey())
///     .bind()?;
/// println!("listening on {}", listener.address());
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a ListenerBuilder does nothing until it is bound"]
pub struct ListenerBuilder {
    address: Option<Address>,
    family: Option<Family>,
    backlog: u32,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    max_frame: usize,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder {
            address: None,
            family: None,
            backlog: DEFAULT_BACKLOG,
            authkey: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

impl ListenerBuilder {
    /// The address to bind. Without one, a private one of the family is chosen.
    pub fn address(mut self, address: Address) -> Self {
        self.address = Some(address);
        self
    }

    /// The family; inferred from the address when not given, AF_UNIX when neither is.
    pub fn family(mut self, family: Family) -> Self {
        self.family = Some(family);
        self
    }

    /// The listen queue length ([`DEFAULT_BACKLOG`] unless given).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Authenticate every accepted connection with this key: a client must prove it knows
    /// it, and is shown that the listener does. Without a key there is no handshake (Python
    /// 3's rule). For the key of this process tree, pass
    /// [`current_process().authkey()`](crate::CurrentProcess::authkey) (Python 2's
    /// `authenticate=True`).
    #[doc(alias = "authenticate")]
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    /// How long `accept` waits for a client's side of the handshake
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless given; `Duration::MAX` waits forever).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The frame limit of accepted connections ([`Connection::set_max_frame`]).
    pub fn max_frame(mut self, max: usize) -> Self {
        self.max_frame = max;
        self
    }

    /// Binds and listens.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Address`] if the address is not of the family asked for;
    /// [`ConnectError::Io`] if the socket cannot be bound (address in use, no permission, a
    /// Unix path too long).
    pub fn bind(self) -> Result<Listener, ConnectError> {
        let backlog = Backlog::new(i32::try_from(self.backlog).unwrap_or(i32::MAX))
            .unwrap_or(Backlog::MAXCONN);
        if let Some(address) = &self.address {
            check_family(address, self.family)?;
        }
        let (socket, address, cleanup) = match (self.address, self.family) {
            (Some(Address::Unix(path)), _) => bind_unix(path, None, backlog)?,
            (Some(Address::Inet(addr)), _) => bind_inet(addr, backlog)?,
            (None, Some(Family::Inet)) => {
                bind_inet(SocketAddr::from(([127, 0, 0, 1], 0)), backlog)?
            }
            (None, Some(Family::Unix) | None) => {
                let dir = private_temp_dir()?;
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("listener-{n}"));
                bind_unix(path, Some(dir), backlog)?
            }
        };
        Ok(Listener {
            socket: FdCell::new(socket),
            address,
            authkey: self.authkey,
            handshake_timeout: self.handshake_timeout,
            max_frame: self.max_frame,
            last_accepted: Mutex::new(None),
            cleanup: Mutex::new(cleanup),
        })
    }
}

/// A fresh directory only we can enter (`mkdtemp` makes it with mode 0700).
fn private_temp_dir() -> Result<PathBuf, ConnectError> {
    // mkdtemp replaces the trailing six 'X's with random characters.
    let template = std::env::temp_dir().join(format!("procvisor-{}", "X".repeat(6)));
    nix::unistd::mkdtemp(&template).map_err(|e| {
        ConnectError::io(
            format!(
                "cannot create a private directory in {}",
                std::env::temp_dir().display()
            ),
            e.into(),
        )
    })
}

fn bind_unix(
    path: PathBuf,
    temp_dir: Option<PathBuf>,
    backlog: Backlog,
) -> Result<(Socket, Address, Option<Cleanup>), ConnectError> {
    let bound = UnixListener::bind(&path);
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            if let Some(dir) = &temp_dir {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(ConnectError::io(
                format!("cannot listen on the Unix socket {}", path.display()),
                e,
            ));
        }
    };
    let cleanup = Cleanup {
        socket_path: path.clone(),
        temp_dir,
    };
    // std listens with its own queue length; listening again sets ours.
    if let Err(e) = listen(&listener, backlog) {
        remove_files(cleanup);
        return Err(ConnectError::io(
            format!("cannot listen on the Unix socket {}", path.display()),
            e.into(),
        ));
    }
    Ok((Socket::Unix(listener), Address::Unix(path), Some(cleanup)))
}

fn bind_inet(
    addr: SocketAddr,
    backlog: Backlog,
) -> Result<(Socket, Address, Option<Cleanup>), ConnectError> {
    let fail = |e| ConnectError::io(format!("cannot listen on {addr}"), e);
    // std sets SO_REUSEADDR, as Python does, so a restarted server can bind its port at once.
    let listener = TcpListener::bind(addr).map_err(fail)?;
    // std listens with its own queue length; listening again sets ours.
    listen(&listener, backlog).map_err(|e| fail(e.into()))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ConnectError::io(format!("cannot read the address bound for {addr}"), e))?;
    Ok((Socket::Tcp(listener), Address::Inet(bound), None))
}

fn remove_files(cleanup: Cleanup) {
    let _ = std::fs::remove_file(&cleanup.socket_path);
    if let Some(dir) = cleanup.temp_dir {
        let _ = std::fs::remove_dir(dir);
    }
}

impl Listener {
    /// Listens on `address`, without authentication (Python's `Listener(address)`); the
    /// [`builder`](Listener::builder) sets the rest.
    ///
    /// ```
    /// use procvisor::{Address, Listener};
    ///
    /// let listener = Listener::bind(&"127.0.0.1:0".parse::<Address>()?)?;
    /// assert_ne!(listener.address().to_string(), "127.0.0.1:0", "the port is chosen");
    /// # Ok::<(), procvisor::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`ListenerBuilder::bind`].
    #[doc(alias = "Listener")]
    pub fn bind(address: &Address) -> Result<Listener, ConnectError> {
        Listener::builder().address(address.clone()).bind()
    }

    /// A [`ListenerBuilder`] with the defaults: a private AF_UNIX address, no authentication.
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::default()
    }

    /// Waits for a client and returns the connection, after the handshake when the listener
    /// authenticates (Python's `accept()`).
    ///
    /// A failed handshake only fails this call: the listener keeps listening, and the
    /// connection is closed without anything from that client having been decoded.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Auth`] if the client does not prove it knows the key (a wrong key,
    /// another protocol, a client that closes or stays silent past the handshake timeout);
    /// [`ConnectError::Closed`]; [`ConnectError::Io`] if `accept` fails.
    pub fn accept(&self) -> Result<Connection, ConnectError> {
        let (stream, peer): (OwnedFd, Option<Address>) = {
            let socket = self.socket.guard().ok_or(ConnectError::Closed)?;
            loop {
                let accepted = match &*socket {
                    Socket::Unix(l) => l.accept().map(|(s, a)| {
                        (
                            OwnedFd::from(s),
                            a.as_pathname().map(|p| Address::Unix(p.to_path_buf())),
                        )
                    }),
                    Socket::Tcp(l) => l.accept().map(|(s, a)| {
                        let _ = s.set_nodelay(true);
                        (OwnedFd::from(s), Some(Address::Inet(a)))
                    }),
                };
                match accepted {
                    Ok(accepted) => break accepted,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(ConnectError::io(
                            format!("cannot accept a connection on {}", self.address),
                            e,
                        ));
                    }
                }
            }
        };
        *lock(&self.last_accepted) = peer;
        if let Some(key) = &self.authkey {
            handshake(&stream, key, self.handshake_timeout, Side::Server)?;
        }
        let conn = Connection::from_parts(stream, true);
        conn.set_max_frame(self.max_frame);
        Ok(conn)
    }

    /// The address the listener is bound to (with the port chosen by the OS when port 0 was
    /// asked for).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Where the last accepted connection came from; `None` before the first, and for Unix
    /// clients, whose sockets have no name.
    pub fn last_accepted(&self) -> Option<Address> {
        lock(&self.last_accepted).clone()
    }

    /// The listening socket's file descriptor (Python's `fileno()`), kept open while the
    /// returned [`HeldFd`] lives; `None` once the listener is closed.
    #[doc(alias = "fileno")]
    pub fn fd(&self) -> Option<HeldFd<'_>> {
        let socket = self.socket.guard()?;
        let raw = socket.as_fd().as_raw_fd();
        Some(HeldFd::new(raw, Hold::Listener(socket)))
    }

    /// Stops listening and removes the socket file it created. Idempotent; also done on drop.
    /// An `accept` already waiting in another thread keeps waiting for its client.
    pub fn close(&self) {
        self.socket.close();
        if let Some(cleanup) = lock(&self.cleanup).take() {
            remove_files(cleanup);
        }
    }

    /// Whether the listener has been closed (Python's `closed`).
    #[doc(alias = "closed")]
    pub fn is_closed(&self) -> bool {
        self.socket.is_closed()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("authenticates", &self.authkey.is_some())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Connects to a [`Listener`] (Python's `Client(address, family, authkey)`):
/// [`Client::connect`] for an address alone, [`Client::builder`] with a key or other settings.
///
/// ```no_run
/// use procvisor::{Address, Client};
///
/// let address: Address = "localhost:6000".parse()?;
/// let conn = Client::builder(address).authkey(b"secret").connect()?;
/// println!("{:?}", conn.recv::<String>()?);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _private: (),
}

/// Builds a [`Client`] connection with Python's optional arguments and a few more.
#[derive(Debug, Clone)]
#[must_use = "a ClientBuilder does nothing until it connects"]
pub struct ClientBuilder {
    address: Address,
    family: Option<Family>,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Duration,
    max_frame: usize,
}

impl Client {
    /// Connects to `address`, without authentication (Python's `Client(address)`).
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    #[doc(alias = "Client")]
    pub fn connect(address: &Address) -> Result<Connection, ConnectError> {
        Client::builder(address.clone()).connect()
    }

    /// A [`ClientBuilder`] for `address`, with the defaults: no authentication.
    pub fn builder(address: Address) -> ClientBuilder {
        ClientBuilder {
            address,
            family: None,
            authkey: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// Refuses an address that is not of the family asked for (if one was).
fn check_family(address: &Address, family: Option<Family>) -> Result<(), AddressError> {
    match family {
        Some(family) if address.family() != family => Err(AddressError {
            address: address.to_string(),
            reason: format!(
                "it is an {} address, but the family asked for is {family}",
                address.family()
            ),
        }),
        _ => Ok(()),
    }
}

impl ClientBuilder {
    /// Checks that the address is of this family (Python's `family` argument).
    pub fn family(mut self, family: Family) -> Self {
        self.family = Some(family);
        self
    }

    /// Authenticate with this key: run the mutual handshake before the connection is handed
    /// out. Without a key there is no handshake (Python 3's rule). For the key of this process
    /// tree, pass [`current_process().authkey()`](crate::CurrentProcess::authkey).
    #[doc(alias = "authenticate")]
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    /// How long to wait for the listener's side of the handshake
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless given; `Duration::MAX` waits forever).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The connection's frame limit ([`Connection::set_max_frame`]).
    pub fn max_frame(mut self, max: usize) -> Self {
        self.max_frame = max;
        self
    }

    /// Connects.
    ///
    /// # Errors
    ///
    /// [`ConnectError::Address`] if the address is not of the family given;
    /// [`ConnectError::Io`] if nobody listens there; [`ConnectError::Auth`] if the listener
    /// does not accept our key or does not prove it knows it.
    pub fn connect(self) -> Result<Connection, ConnectError> {
        check_family(&self.address, self.family)?;
        let fail = |e| ConnectError::io(format!("cannot connect to {}", self.address), e);
        let stream = match &self.address {
            Address::Unix(path) => OwnedFd::from(UnixStream::connect(path).map_err(fail)?),
            Address::Inet(addr) => {
                let stream = TcpStream::connect(addr).map_err(fail)?;
                let _ = stream.set_nodelay(true);
                OwnedFd::from(stream)
            }
        };
        if let Some(key) = &self.authkey {
            handshake(&stream, key, self.handshake_timeout, Side::Client)?;
        }
        let conn = Connection::from_parts(stream, true);
        conn.set_max_frame(self.max_frame);
        Ok(conn)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// Runs our side of the mutual handshake on a fresh socket, with send and receive timeouts
/// for its duration.
fn handshake(
    stream: &OwnedFd,
    authkey: &[u8],
    timeout: Duration,
    side: Side,
) -> Result<(), ConnectError> {
    let timeval = |t: Duration| {
        nix::sys::time::TimeVal::new(
            t.as_secs().min(i64::MAX as u64) as _,
            t.subsec_micros() as _,
        )
    };
    let set_timeouts = |t: Duration| -> Result<(), ConnectError> {
        setsockopt(stream, sockopt::ReceiveTimeout, &timeval(t))
            .and_then(|()| setsockopt(stream, sockopt::SendTimeout, &timeval(t)))
            .map_err(|e| ConnectError::io("cannot set the handshake timeout", e.into()))
    };
    // A zero timeval means "no timeout"; a zero Duration must still time out.
    let timeout = timeout.max(Duration::from_micros(1));
    set_timeouts(timeout)?;
    let mut io = RawIo::new(stream.as_raw_fd(), true);
    let result = match side {
        Side::Server => server_handshake(&mut io, authkey),
        Side::Client => client_handshake(&mut io, authkey),
    };
    result.map_err(|e| handshake_error(e, timeout))?;
    set_timeouts(Duration::ZERO)?;
    Ok(())
}

fn handshake_error(e: WireError, timeout: Duration) -> AuthError {
    let reason = match e {
        WireError::Authentication(reason) => reason,
        WireError::Eof | WireError::Truncated { .. } => {
            "the peer closed the connection during the handshake".into()
        }
        WireError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            format!("the peer did not complete the handshake within {timeout:?}")
        }
        WireError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            "the peer closed the connection during the handshake".into()
        }
        other => format!("the handshake failed: {other}"),
    };
    AuthError { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_inferred_as_python_does() {
        assert_eq!(
            Address::parse("127.0.0.1:6000").unwrap(),
            Address::Inet("127.0.0.1:6000".parse().unwrap())
        );
        assert_eq!(
            Address::parse("[::1]:7").unwrap(),
            Address::Inet("[::1]:7".parse().unwrap())
        );
        assert_eq!(
            Address::parse("localhost:80").unwrap().family(),
            Family::Inet
        );
        assert_eq!(
            Address::parse("/tmp/a:b").unwrap(),
            Address::unix("/tmp/a:b")
        );
        assert_eq!(
            Address::parse("/tmp/x:1").unwrap(),
            Address::unix("/tmp/x:1")
        );
        assert_eq!(Address::parse("sock").unwrap(), Address::unix("sock"));
        assert!(matches!(
            Address::parse("host:99999"),
            Err(AddressError { .. })
        ));
        assert!(matches!(Address::parse(""), Err(AddressError { .. })));
    }

    #[test]
    fn family_mismatch_is_an_invalid_address() {
        let err = Listener::builder()
            .address(Address::unix("/tmp/nowhere"))
            .family(Family::Inet)
            .bind()
            .unwrap_err();
        assert!(matches!(err, ConnectError::Address(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "invalid address \"/tmp/nowhere\": it is an AF_UNIX address, but the family asked \
             for is AF_INET"
        );
    }
}
