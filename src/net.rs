//! Connections to mail servers: TCP with timeouts, and TLS with the trust
//! rules every source and destination share (certificates verified by
//! default, `ca_file` adds a trust anchor, `fingerprint` pins the
//! server's certificate instead of trusting a chain).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::ServerConfig;
use crate::error::{Error, Result};

pub mod deflate;
pub mod early;
pub mod proxy;
pub mod session;
pub mod tls;
pub mod tunnel;

/// A connection that is either still plain or already encrypted.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP (before STARTTLS, or `tls = "none"`).
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsConn>),
}

impl Stream {
    /// Makes reads wait at most `READ_SLICE` at a time (the session
    /// deadline, `pace_session`, keeps the server's `timeout` as the real
    /// one). Call once the connection is set up (after any TLS handshake,
    /// which reads the socket directly). A new connection starts its wait
    /// afresh: one made again after a connection timed out (a server that
    /// lost what was pipelined to it) is not out of time before its
    /// first read.
    pub fn slice_reads(&self) -> io::Result<()> {
        if !PACE.with(|p| p.borrow().active) {
            return Ok(());
        }
        pace_reset();
        let tcp = self.socket();
        let current = tcp.read_timeout()?.unwrap_or(READ_SLICE);
        tcp.set_read_timeout(Some(current.min(READ_SLICE)))
    }

    /// The socket under the connection (for its options; reading or
    /// writing it directly would corrupt a TLS session).
    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.tcp,
        }
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// A second handle on the same connection. A protocol library that
    /// owns the `Stream` (the `imap` crate) buffers it where nobody else
    /// can reach; the handle lets the IMAP source stream bulk message
    /// data itself, between the library's commands, without that copy.
    /// Only one side may use the connection at a time.
    pub fn handle(&self) -> io::Result<StreamHandle> {
        Ok(match self {
            Stream::Plain(tcp) => StreamHandle::Plain(tcp.try_clone()?),
            Stream::Tls(tls) => StreamHandle::Tls(Arc::clone(&tls.tls)),
        })
    }
}

/// A TLS session over TCP that a `StreamHandle` can share.
#[derive(Debug)]
pub struct TlsConn {
    tls: tls::Shared,
    /// The socket, for its options (timeouts); never read or written.
    tcp: TcpStream,
}

impl TlsConn {
    /// The underlying socket (to set timeouts on; reading or writing it
    /// directly would corrupt the TLS session).
    pub fn get_ref(&self) -> &TcpStream {
        &self.tcp
    }

    fn lock(&self) -> MutexGuard<'_, tls::TlsStream> {
        // A panic while holding the lock leaves the session unusable
        // anyway; the next read or write reports the error.
        self.tls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A second handle on a `Stream`'s connection (see `Stream::handle`).
#[derive(Debug)]
pub enum StreamHandle {
    /// A clone of the plain socket.
    Plain(TcpStream),
    /// The shared TLS session.
    Tls(tls::Shared),
}

impl Read for StreamHandle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        paced(buf, |buf| match self {
            StreamHandle::Plain(s) => s.read(buf),
            StreamHandle::Tls(s) => s.lock().unwrap_or_else(|e| e.into_inner()).read(buf),
        })
    }
}

impl Write for StreamHandle {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        pace_reset();
        match self {
            StreamHandle::Plain(s) => s.write(buf),
            StreamHandle::Tls(s) => s.lock().unwrap_or_else(|e| e.into_inner()).write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            StreamHandle::Plain(s) => s.flush(),
            StreamHandle::Tls(s) => s.lock().unwrap_or_else(|e| e.into_inner()).flush(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        paced(buf, |buf| match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.lock().read(buf),
        })
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        pace_reset();
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.lock().write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.lock().flush(),
        }
    }
}

/// The session deadline of a fetch (see `pace_session`): reads that have
/// waited longer than the server's `timeout` in all since the last command
/// must have brought at least this many bytes a second, or the session
/// ends (a server trickling a byte at a time cannot hold a run, and the
/// account's lock, for ever).
pub const MIN_RATE: u64 = 256;

/// How long a read waits in one go before it looks at the clock and the
/// stop flag again (fetch sessions only).
pub const READ_SLICE: Duration = Duration::from_secs(1);

/// After SIGINT/SIGTERM, how long a read may still wait for the message
/// in hand before it gives up (the message stays on the server).
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// The pace of the current thread's fetch session.
#[derive(Debug, Default)]
struct Pace {
    active: bool,
    timeout: Duration,
    /// Time spent waiting in reads, and bytes they brought, since the
    /// last write.
    waited: Duration,
    bytes: u64,
}

thread_local! {
    static PACE: std::cell::RefCell<Pace> = std::cell::RefCell::new(Pace::default());
}

/// Ends the session deadline of the current thread when dropped.
#[derive(Debug)]
pub struct PaceGuard(());

impl Drop for PaceGuard {
    fn drop(&mut self) {
        PACE.with(|p| *p.borrow_mut() = Pace::default());
    }
}

/// Puts the source connections this thread reads (until the guard is
/// dropped) under the session deadline: `MIN_RATE` after `timeout` of
/// waiting, and SIGINT/SIGTERM within `STOP_GRACE` plus `READ_SLICE`
/// even inside a read. Call `Stream::slice_reads` on each connection too.
pub fn pace_session(timeout: Duration) -> PaceGuard {
    PACE.with(|p| {
        *p.borrow_mut() = Pace {
            active: true,
            timeout,
            ..Pace::default()
        }
    });
    PaceGuard(())
}

fn pace_reset() {
    PACE.with(|p| {
        let mut p = p.borrow_mut();
        p.waited = Duration::ZERO;
        p.bytes = 0;
    });
}

/// One read under the session deadline (a plain read outside a fetch
/// session).
fn paced(
    buf: &mut [u8],
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let (active, timeout) = PACE.with(|p| {
        let p = p.borrow();
        (p.active, p.timeout)
    });
    if !active {
        return read(buf);
    }
    let mut this_call = Duration::ZERO;
    loop {
        if crate::signal::stop_age().is_some_and(|age| age >= STOP_GRACE) {
            return Err(io::Error::other(
                "stopped by a signal while waiting for the server",
            ));
        }
        let started = std::time::Instant::now();
        let result = read(buf);
        let took = started.elapsed();
        this_call += took;
        let (waited, bytes) = PACE.with(|p| {
            let mut p = p.borrow_mut();
            p.waited += took;
            if let Ok(n) = &result {
                p.bytes += *n as u64;
            }
            (p.waited, p.bytes)
        });
        match result {
            Ok(n) => {
                let ms = waited.as_millis().max(1) as u64;
                if waited > timeout && bytes.saturating_mul(1000) / ms < MIN_RATE {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the server sent {bytes} bytes in {}s of waiting (less than {MIN_RATE} bytes a second)",
                            waited.as_secs()
                        ),
                    ));
                }
                return Ok(n);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && this_call < timeout =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens a TCP connection with the server's timeout applied to connecting,
/// reading and writing: from `source_ip` when it is set, and through the
/// `proxy` when there is one (the socket returned then carries the tunnel
/// to the mail server), or the `tunnel` command's connection.
pub fn connect_tcp(server: &ServerConfig) -> Result<TcpStream> {
    if let Some(tunnel) = &server.tunnel {
        // A Unix socket to the tunnel command, in a `TcpStream` (see
        // `tunnel`): everything above treats it as the connection.
        let context = format!("connecting to {}:{}", server.host, server.port);
        let server_first = server.tls != crate::config::TlsMode::Implicit;
        return tunnel
            .open(&server.host, server.port, server.timeout, server_first)
            .map_err(|e| match e.kind() {
                // Its message says what the tunnel said.
                io::ErrorKind::TimedOut => Error::Timeout(format!("{context}: {e}")),
                _ => Error::net(context, e),
            });
    }
    let Some(proxy) = &server.proxy else {
        let context = format!("connecting to {}:{}", server.host, server.port);
        return connect_direct(&server.host, server.port, server, &context);
    };
    let context = format!(
        "connecting to {}:{} through the proxy {proxy}",
        server.host, server.port
    );
    let mut tcp = connect_direct(&proxy.host, proxy.port, server, &context)?;
    proxy
        .open(&mut tcp, &server.host, server.port)
        .map_err(|e| Error::net(context, e))?;
    Ok(tcp)
}

/// A TCP connection to `host:port` with the server's timeouts, bound to
/// its `source_ip` if any (addresses of the other family are skipped).
fn connect_direct(
    host: &str,
    port: u16,
    server: &ServerConfig,
    context: &str,
) -> Result<TcpStream> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::net(context, e))?;
    let none = io::Error::new(io::ErrorKind::NotFound, "host has no addresses");
    connect_each(addrs, server, context, none)
}

/// Tries `addrs` in turn (from the server's `source_ip` if any:
/// addresses of the other family are skipped); the first that connects
/// is set up (`set_up`), else the last error (`last` when none is tried)
/// is the one reported.
fn connect_each(
    addrs: impl IntoIterator<Item = SocketAddr>,
    server: &ServerConfig,
    context: &str,
    mut last: io::Error,
) -> Result<TcpStream> {
    for addr in addrs {
        let connected = match server.source_ip {
            None => TcpStream::connect_timeout(&addr, server.timeout),
            Some(ip) if ip.is_ipv4() != addr.is_ipv4() => {
                last = io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no address of source_ip {ip}'s family"),
                );
                continue;
            }
            Some(ip) => connect_from(ip, addr, server.timeout),
        };
        match connected {
            Ok(tcp) => return set_up(tcp, server, context),
            Err(e) => last = e,
        }
    }
    Err(Error::net(context, last))
}

/// A direct TCP connection begun on one thread (the server's name
/// resolved, the SYN sent by a non-blocking connect) for another to wait
/// for (`finish_connect`): `fetch` sends its first SYN this way before
/// anything else, see `early`.
pub(crate) struct Begun {
    socket: socket2::Socket,
    /// The server's other addresses, tried in turn if the first fails.
    rest: Vec<SocketAddr>,
}

/// Begins a connection to `server` (`Begun`), when it is a direct one
/// (no tunnel, proxy or `source_ip`) and its first address does not
/// fail at once; otherwise `None`, and `connect_tcp` does it all.
pub(crate) fn begin_connect(server: &ServerConfig) -> Option<Begun> {
    use socket2::{Domain, Protocol, Socket, Type};
    if server.tunnel.is_some() || server.proxy.is_some() || server.source_ip.is_some() {
        return None;
    }
    let mut addrs = (server.host.as_str(), server.port).to_socket_addrs().ok()?;
    let addr = addrs.next()?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).ok()?;
    socket.set_nonblocking(true).ok()?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(_) => return None,
    }
    Some(Begun {
        socket,
        rest: addrs.collect(),
    })
}

/// The connection `begin_connect` began, once made (within the server's
/// timeout), set up as `connect_direct`'s are; when the first address
/// failed, the others are tried in turn, as `connect_direct` does.
pub(crate) fn finish_connect(begun: Begun, server: &ServerConfig) -> Result<TcpStream> {
    use std::os::fd::AsRawFd;
    let context = format!("connecting to {}:{}", server.host, server.port);
    let mut poll = libc::pollfd {
        fd: begun.socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let deadline = std::time::Instant::now() + server.timeout;
    let ready = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd, for the duration of the call.
        match unsafe { libc::poll(&mut poll, 1, timeout) } {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            n => break n,
        }
    };
    let first = match ready {
        1 => match begun.socket.take_error() {
            Ok(None) => begun
                .socket
                .set_nonblocking(false)
                .map(|()| begun.socket.into()),
            Ok(Some(e)) | Err(e) => Err(e),
        },
        0 => Err(io::Error::from(io::ErrorKind::TimedOut)),
        _ => Err(io::Error::last_os_error()),
    };
    match first {
        Ok(tcp) => set_up(tcp, server, &context),
        Err(e) => connect_each(begun.rest, server, &context, e),
    }
}

/// A connection made: the server's timeouts, no Nagle.
fn set_up(tcp: TcpStream, server: &ServerConfig, context: &str) -> Result<TcpStream> {
    let set = |r: io::Result<()>| r.map_err(|e| Error::net(context, e));
    set(tcp.set_read_timeout(Some(server.timeout)))?;
    set(tcp.set_write_timeout(Some(server.timeout)))?;
    set(tcp.set_nodelay(true))?;
    Ok(tcp)
}

/// Connects to `addr` from the local address `ip` (any port).
fn connect_from(ip: IpAddr, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket
        .bind(&SocketAddr::new(ip, 0).into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind source_ip {ip}: {e}")))?;
    socket.connect_timeout(&addr.into(), timeout)?;
    Ok(socket.into())
}

/// Performs the TLS handshake on `tcp` and checks the server's identity:
/// the chain and host name by default, or only the pinned fingerprint
/// (see `tls`); a stored session of the server is offered (see `session`).
pub fn tls_handshake(server: &ServerConfig, tcp: TcpStream) -> Result<Stream> {
    let tls = tls::handshake(server, tcp)?;
    let tcp = tls
        .get_ref()
        .try_clone()
        .map_err(|e| Error::net(format!("connecting to {}", server.host), e))?;
    let stream = Stream::Tls(Box::new(TlsConn {
        tls: Arc::new(Mutex::new(tls)),
        tcp,
    }));
    stream
        .slice_reads()
        .map_err(|e| Error::net(format!("connecting to {}", server.host), e))?;
    Ok(stream)
}

/// A plain connection (`tls = "none"`), its reads sliced for the session
/// deadline when there is one.
pub fn plain(server: &ServerConfig, tcp: TcpStream) -> Result<Stream> {
    let stream = Stream::Plain(tcp);
    stream
        .slice_reads()
        .map_err(|e| Error::net(format!("connecting to {}", server.host), e))?;
    Ok(stream)
}

/// Starts building the TLS connectors `servers` will need, on a thread of
/// its own, so that setting up OpenSSL (and reading a `ca_file` or a
/// client certificate) overlaps with opening the state and flushing the
/// spool instead of delaying the first handshake. The system trust store
/// is not read here: only a verification that needs it loads it (see
/// `tls`). A failure is left for the connection that needs the connector
/// to report.
pub fn prepare_tls<'a>(servers: impl IntoIterator<Item = &'a ServerConfig>) {
    let mut wanted: Vec<ServerConfig> = Vec::new();
    for server in servers {
        let known = wanted.iter().any(|w| tls::same_connector(w, server));
        if server.tls != crate::config::TlsMode::None && !known {
            wanted.push(server.clone());
        }
    }
    if wanted.is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("tls-setup".into())
        .spawn(move || {
            for server in &wanted {
                let _ = tls::connector(server);
            }
        });
}

/// Formats a SHA-256 digest the way the `fingerprint` key is written.
pub fn format_fingerprint(digest: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02X}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn server(port: u16) -> ServerConfig {
        ServerConfig {
            host: "127.0.0.1".into(),
            port,
            tls: crate::config::TlsMode::None,
            ca_file: None,
            fingerprint: None,
            timeout: Duration::from_secs(5),
            proxy: None,
            source_ip: None,
            tunnel: None,
            compress: false,
            client_cert: None,
        }
    }

    #[test]
    fn a_connection_begun_on_one_thread_is_finished_on_another() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = server(listener.local_addr().unwrap().port());
        let begun = begin_connect(&server).expect("a direct connection is begun");
        let (mut accepted, _) = listener.accept().unwrap();
        let mut tcp = std::thread::spawn(move || finish_connect(begun, &server))
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(tcp.read_timeout().unwrap(), Some(Duration::from_secs(5)));
        assert!(tcp.nodelay().unwrap());
        accepted.write_all(b"+OK\r\n").unwrap();
        let mut got = [0; 5];
        tcp.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"+OK\r\n");
    }

    #[test]
    fn a_refused_begun_connection_fails_as_a_direct_one_does() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let server = server(port);
        let direct = connect_tcp(&server).unwrap_err().to_string();
        assert!(direct.contains("refused"), "{direct}");
        if let Some(begun) = begin_connect(&server) {
            let early = finish_connect(begun, &server).unwrap_err().to_string();
            assert_eq!(early, direct);
        }
    }

    #[test]
    fn proxies_tunnels_and_source_addresses_are_not_begun_early() {
        let mut s = server(1);
        s.source_ip = Some("127.0.0.1".parse().unwrap());
        assert!(begin_connect(&s).is_none());
    }
}
