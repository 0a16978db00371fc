//! [`Listener`] and [`Client`]: connections between processes that did not start one another
//! (Python's `multiprocessing.connection.Listener` and `Client`), over Unix sockets or TCP,
//! with optional HMAC authentication.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
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
use super::fd::{FdCell, RawIo};
use crate::error::{Error, Result};
use procvisor_actors::sync_util::lock;

/// Listen queue length when none is given. Python's default is 1, which makes clients that
/// connect at the same moment wait (TCP retries a dropped SYN only after a second); procvisor
/// uses 128.
pub const DEFAULT_BACKLOG: u32 = 128;

/// How long an authenticating [`Listener::accept`] or [`Client`] waits for the peer's side of
/// the handshake before giving up with [`Error::Authentication`] (so a silent peer cannot
/// block a listener forever).
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
/// # Ok::<(), procvisor::Error>(())
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
    /// [`Error::InvalidAddress`] if the name does not resolve.
    pub fn inet(host: &str, port: u16) -> Result<Address> {
        let shown = format!("{host}:{port}");
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let resolved: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| Error::InvalidAddress {
                address: shown.clone(),
                reason: format!("cannot resolve the host name: {e}"),
            })?
            .collect();
        resolved
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| resolved.first())
            .map(|a| Address::Inet(*a))
            .ok_or_else(|| Error::InvalidAddress {
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
    /// [`Error::InvalidAddress`] for an empty string or a host name that does not resolve.
    pub fn parse(text: &str) -> Result<Address> {
        if text.is_empty() {
            return Err(Error::InvalidAddress {
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
                let port = port.parse::<u16>().map_err(|_| Error::InvalidAddress {
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
    type Err = Error;

    fn from_str(text: &str) -> Result<Address> {
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
enum Socket {
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
/// let listener = Listener::new(None, None, None, Some(AUTHKEY))?; // a private Unix socket
/// let address = listener.address().clone();
/// let client = std::thread::spawn(move || -> procvisor::Result<String> {
///     let conn = Client::connect(&address, Some(AUTHKEY))?;
///     conn.recv::<String>()
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
pub struct Listener {
    socket: FdCell<Socket>,
    address: Address,
    authkey: Option<Vec<u8>>,
    handshake_timeout: Option<Duration>,
    max_frame: usize,
    last_accepted: Mutex<Option<Address>>,
    cleanup: Mutex<Option<Cleanup>>,
}

/// Builds a [`Listener`] with the settings Python's constructor takes, and a few more.
///
/// ```
/// use procvisor::{Family, Listener};
///
/// let listener = Listener::builder().family(Family::Inet).authenticate(true).bind()?;
/// println!("listening on {}", listener.address());
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ListenerBuilder {
    address: Option<Address>,
    family: Option<Family>,
    backlog: u32,
    authkey: Option<Vec<u8>>,
    authenticate: bool,
    handshake_timeout: Option<Duration>,
    max_frame: usize,
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder {
            address: None,
            family: None,
            backlog: DEFAULT_BACKLOG,
            authkey: None,
            authenticate: false,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
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

    /// Authenticate every accepted connection with this key.
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    /// Authenticate with the current process's authkey when no key is given (Python's
    /// `authenticate=True`).
    pub fn authenticate(mut self, authenticate: bool) -> Self {
        self.authenticate = authenticate;
        self
    }

    /// How long `accept` waits for a client's side of the handshake
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless given; `None`: forever).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
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
    /// [`Error::InvalidAddress`] if the address is not of the family asked for;
    /// [`Error::Io`] if the socket cannot be bound (address in use, no permission, a Unix
    /// path too long).
    pub fn bind(self) -> Result<Listener> {
        let authkey = effective_authkey(self.authkey, self.authenticate);
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
            socket: FdCell::new(socket, "listener"),
            address,
            authkey,
            handshake_timeout: self.handshake_timeout,
            max_frame: self.max_frame,
            last_accepted: Mutex::new(None),
            cleanup: Mutex::new(cleanup),
        })
    }
}

/// A fresh directory only we can enter (`mkdtemp` makes it with mode 0700).
fn private_temp_dir() -> Result<PathBuf> {
    // mkdtemp replaces the trailing six 'X's with random characters.
    let template = std::env::temp_dir().join(format!("procvisor-{}", "X".repeat(6)));
    nix::unistd::mkdtemp(&template).map_err(|e| {
        Error::io(
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
) -> Result<(Socket, Address, Option<Cleanup>)> {
    let bound = UnixListener::bind(&path);
    let listener = match bound {
        Ok(listener) => listener,
        Err(e) => {
            if let Some(dir) = &temp_dir {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(Error::io(
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
        return Err(Error::io(
            format!("cannot listen on the Unix socket {}", path.display()),
            e.into(),
        ));
    }
    Ok((Socket::Unix(listener), Address::Unix(path), Some(cleanup)))
}

fn bind_inet(addr: SocketAddr, backlog: Backlog) -> Result<(Socket, Address, Option<Cleanup>)> {
    let fail = |e| Error::io(format!("cannot listen on {addr}"), e);
    // std sets SO_REUSEADDR, as Python does, so a restarted server can bind its port at once.
    let listener = TcpListener::bind(addr).map_err(fail)?;
    // std listens with its own queue length; listening again sets ours.
    listen(&listener, backlog).map_err(|e| fail(e.into()))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io(format!("cannot read the address bound for {addr}"), e))?;
    Ok((Socket::Tcp(listener), Address::Inet(bound), None))
}

fn remove_files(cleanup: Cleanup) {
    let _ = std::fs::remove_file(&cleanup.socket_path);
    if let Some(dir) = cleanup.temp_dir {
        let _ = std::fs::remove_dir(dir);
    }
}

impl Listener {
    /// A listener with Python's arguments: `Listener(address, family, backlog, authkey)`.
    /// `None` picks the default (see [`ListenerBuilder`]); with an authkey every accepted
    /// connection must authenticate.
    ///
    /// # Errors
    ///
    /// As [`ListenerBuilder::bind`].
    pub fn new(
        address: Option<Address>,
        family: Option<Family>,
        backlog: Option<u32>,
        authkey: Option<&[u8]>,
    ) -> Result<Listener> {
        let mut builder = Listener::builder();
        builder.address = address;
        builder.family = family;
        builder.backlog = backlog.unwrap_or(DEFAULT_BACKLOG);
        builder.authkey = authkey.map(<[u8]>::to_vec);
        builder.bind()
    }

    /// A [`ListenerBuilder`] with the defaults.
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
    /// [`Error::Authentication`] if the client does not prove it knows the key (a wrong key,
    /// another protocol, a client that closes or stays silent past the handshake timeout);
    /// [`Error::Closed`]; [`Error::Io`] if `accept` fails.
    pub fn accept(&self) -> Result<Connection> {
        let (stream, peer): (OwnedFd, Option<Address>) = {
            let socket = self.socket.guard()?;
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
                        return Err(Error::io(
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
        let conn = Connection::from_parts(stream, true, true, true);
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

    /// The listening socket's file descriptor.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    pub fn fileno(&self) -> Result<RawFd> {
        Ok(self.socket.guard()?.as_fd().as_raw_fd())
    }

    /// Stops listening and removes the socket file it created. Idempotent; also done on drop.
    /// An `accept` already waiting in another thread keeps waiting for its client.
    pub fn close(&self) {
        self.socket.close();
        if let Some(cleanup) = lock(&self.cleanup).take() {
            remove_files(cleanup);
        }
    }

    /// Whether the listener has been closed.
    pub fn closed(&self) -> bool {
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
            .field("closed", &self.closed())
            .finish()
    }
}

/// Connects to a [`Listener`] (Python's `Client(address, family, authkey)`).
///
/// ```no_run
/// use procvisor::{Address, Client};
///
/// let conn = Client::connect(&"localhost:6000".parse::<Address>()?, Some(b"secret".as_slice()))?;
/// println!("{:?}", conn.recv::<String>()?);
/// # Ok::<(), procvisor::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _private: (),
}

/// Builds a [`Client`] connection with Python's optional arguments and a few more.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    address: Address,
    family: Option<Family>,
    authkey: Option<Vec<u8>>,
    authenticate: bool,
    handshake_timeout: Option<Duration>,
    max_frame: usize,
}

impl Client {
    /// Connects to `address`; with an authkey, runs the mutual handshake before returning.
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    pub fn connect(address: &Address, authkey: Option<&[u8]>) -> Result<Connection> {
        let mut builder = Client::builder(address.clone());
        builder.authkey = authkey.map(<[u8]>::to_vec);
        builder.connect()
    }

    /// A [`ClientBuilder`] for `address`.
    pub fn builder(address: Address) -> ClientBuilder {
        ClientBuilder {
            address,
            family: None,
            authkey: None,
            authenticate: false,
            handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

/// The key a listener or client authenticates with: the one given, else the current process's
/// when `authenticate` (Python's `authenticate=True`), else none.
fn effective_authkey(given: Option<Vec<u8>>, authenticate: bool) -> Option<Vec<u8>> {
    match (given, authenticate) {
        (Some(key), _) => Some(key),
        (None, true) => Some(crate::current_process().authkey().to_vec()),
        (None, false) => None,
    }
}

/// Refuses an address that is not of the family asked for (if one was).
fn check_family(address: &Address, family: Option<Family>) -> Result<()> {
    match family {
        Some(family) if address.family() != family => Err(Error::InvalidAddress {
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

    /// Authenticate with this key.
    pub fn authkey(mut self, authkey: impl AsRef<[u8]>) -> Self {
        self.authkey = Some(authkey.as_ref().to_vec());
        self
    }

    /// Authenticate with the current process's authkey when no key is given (Python's
    /// `authenticate=True`).
    pub fn authenticate(mut self, authenticate: bool) -> Self {
        self.authenticate = authenticate;
        self
    }

    /// How long to wait for the listener's side of the handshake
    /// ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless given; `None`: forever).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
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
    /// [`Error::InvalidAddress`] if the address is not of the family given; [`Error::Io`] if
    /// nobody listens there; [`Error::Authentication`] if the listener does not accept our key
    /// or does not prove it knows it.
    pub fn connect(self) -> Result<Connection> {
        check_family(&self.address, self.family)?;
        let fail = |e| Error::io(format!("cannot connect to {}", self.address), e);
        let stream = match &self.address {
            Address::Unix(path) => OwnedFd::from(UnixStream::connect(path).map_err(fail)?),
            Address::Inet(addr) => {
                let stream = TcpStream::connect(addr).map_err(fail)?;
                let _ = stream.set_nodelay(true);
                OwnedFd::from(stream)
            }
        };
        let authkey = effective_authkey(self.authkey, self.authenticate);
        if let Some(key) = &authkey {
            handshake(&stream, key, self.handshake_timeout, Side::Client)?;
        }
        let conn = Connection::from_parts(stream, true, true, true);
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
    timeout: Option<Duration>,
    side: Side,
) -> Result<()> {
    let timeval = |t: Option<Duration>| {
        let t = t.unwrap_or(Duration::ZERO);
        nix::sys::time::TimeVal::new(
            t.as_secs().min(i64::MAX as u64) as _,
            t.subsec_micros() as _,
        )
    };
    let set_timeouts = |t: Option<Duration>| -> Result<()> {
        setsockopt(stream, sockopt::ReceiveTimeout, &timeval(t))
            .and_then(|()| setsockopt(stream, sockopt::SendTimeout, &timeval(t)))
            .map_err(|e| Error::io("cannot set the handshake timeout", e.into()))
    };
    // A zero timeval means "no timeout"; a zero Duration must still time out.
    let timeout = timeout.map(|t| t.max(Duration::from_micros(1)));
    if timeout.is_some() {
        set_timeouts(timeout)?;
    }
    let mut io = RawIo::new(stream.as_raw_fd(), true);
    let result = match side {
        Side::Server => server_handshake(&mut io, authkey),
        Side::Client => client_handshake(&mut io, authkey),
    };
    result.map_err(|e| handshake_error(e, timeout))?;
    if timeout.is_some() {
        set_timeouts(None)?;
    }
    Ok(())
}

fn handshake_error(e: WireError, timeout: Option<Duration>) -> Error {
    match e {
        WireError::Authentication(reason) => Error::Authentication(reason),
        WireError::Eof | WireError::Truncated { .. } => {
            Error::Authentication("the peer closed the connection during the handshake".into())
        }
        WireError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Error::Authentication(format!(
                "the peer did not complete the handshake within {:?}",
                timeout.unwrap_or_default()
            ))
        }
        WireError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            Error::Authentication("the peer closed the connection during the handshake".into())
        }
        other => Error::Authentication(format!("the handshake failed: {other}")),
    }
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
            Err(Error::InvalidAddress { .. })
        ));
        assert!(matches!(
            Address::parse(""),
            Err(Error::InvalidAddress { .. })
        ));
    }

    #[test]
    fn family_mismatch_is_an_invalid_address() {
        let err = Listener::new(
            Some(Address::unix("/tmp/nowhere")),
            Some(Family::Inet),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid address \"/tmp/nowhere\": it is an AF_UNIX address, but the family asked \
             for is AF_INET"
        );
    }
}
