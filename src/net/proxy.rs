//! Connections through a proxy: SOCKS5 (RFC 1928, with the
//! username/password method of RFC 1929) and HTTP `CONNECT`. Both are
//! spoken on the blocking socket to the proxy before anything else; once
//! the proxy has opened the tunnel, the socket carries the mail protocol
//! (and TLS, checked against the mail server's name) as a direct
//! connection would.
//!
//! The proxy's password is never shown: `Proxy`'s `Display` leaves the
//! credentials out.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, ToSocketAddrs};

use base64::Engine as _;

/// Which protocol the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5; `remote_dns` (`socks5h://`) sends the host name to the
    /// proxy, otherwise (`socks5://`) it is resolved here.
    Socks5 {
        /// Whether the proxy resolves the mail server's name.
        remote_dns: bool,
    },
    /// HTTP `CONNECT` (`http://`).
    Http,
}

/// A `proxy = "…"` setting.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// The protocol.
    pub kind: ProxyKind,
    /// The proxy's host name or address (without brackets).
    pub host: String,
    /// The proxy's port.
    pub port: u16,
    /// User name and password, if the URL gave them.
    pub auth: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output ends up in logs too: no password there either.
        write!(f, "Proxy({self})")
    }
}

impl fmt::Display for Proxy {
    /// The URL without credentials (`socks5h://host:1080`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.kind {
            ProxyKind::Socks5 { remote_dns: true } => "socks5h",
            ProxyKind::Socks5 { remote_dns: false } => "socks5",
            ProxyKind::Http => "http",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Proxy {
    /// Parses `socks5h://[user:pass@]host:port`, `socks5://…` or
    /// `http://[user:pass@]host:port`. The error never repeats the
    /// password.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| {
            format!(
                "{}: {e}; expected e.g. socks5h://host:1080 or http://host:3128",
                crate::config::redact_url(text)
            )
        })?;
        let (kind, default_port) = match url.scheme() {
            "socks5h" => (ProxyKind::Socks5 { remote_dns: true }, 1080),
            "socks5" => (ProxyKind::Socks5 { remote_dns: false }, 1080),
            "http" => (ProxyKind::Http, 8080),
            other => {
                return Err(format!(
                    "unknown proxy scheme {other:?}; use socks5h, socks5 or http"
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the proxy URL has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(
                "a proxy URL is scheme://[user:pass@]host:port, nothing after the port".into(),
            );
        }
        let auth = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => Some((
                percent_decode(user)?,
                percent_decode(password.unwrap_or(""))?,
            )),
        };
        if let (ProxyKind::Socks5 { .. }, Some((user, password))) = (kind, &auth) {
            if user.len() > 255 || password.len() > 255 {
                return Err("SOCKS5 user names and passwords are at most 255 bytes".into());
            }
        }
        Ok(Proxy {
            kind,
            host,
            port: url.port().unwrap_or(default_port),
            auth,
        })
    }

    /// Asks the proxy, over `stream` (connected to it), for a tunnel to
    /// `host:port`. On success `stream` carries the tunnel.
    pub fn open<S: Read + Write>(&self, stream: &mut S, host: &str, port: u16) -> io::Result<()> {
        match self.kind {
            ProxyKind::Socks5 { remote_dns } => {
                socks5(stream, self.auth.as_ref(), &target(host, port, remote_dns)?)
            }
            ProxyKind::Http => http_connect(stream, self.auth.as_ref(), host, port),
        }
    }
}

/// Decodes `%XX` escapes (user names and passwords in URLs).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape in the proxy's user or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the proxy's user or password is not UTF-8".into())
}

/// Where a SOCKS5 request points: a name for the proxy to resolve, or an
/// address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Name(String, u16),
    Addr(IpAddr, u16),
}

/// The SOCKS5 target for `host:port`: an address literal as it is, a name
/// sent as it is with `remote_dns`, resolved here otherwise.
fn target(host: &str, port: u16, remote_dns: bool) -> io::Result<Target> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(Target::Addr(ip, port));
    }
    if remote_dns {
        if host.len() > 255 {
            return Err(io::Error::other("host name too long for SOCKS5"));
        }
        return Ok(Target::Name(host.to_string(), port));
    }
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host has no addresses"))?;
    Ok(Target::Addr(addr.ip(), port))
}

/// The CONNECT request (RFC 1928 section 4).
fn socks5_request(target: &Target) -> Vec<u8> {
    let mut req = vec![5, 1, 0];
    let port = match target {
        Target::Name(name, port) => {
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
            port
        }
        Target::Addr(IpAddr::V4(ip), port) => {
            req.push(1);
            req.extend_from_slice(&ip.octets());
            port
        }
        Target::Addr(IpAddr::V6(ip), port) => {
            req.push(4);
            req.extend_from_slice(&ip.octets());
            port
        }
    };
    req.extend_from_slice(&port.to_be_bytes());
    req
}

/// What a SOCKS5 reply code means (RFC 1928 section 6).
fn socks5_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

fn socks_error(text: String) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, text)
}

/// The SOCKS5 exchange: method selection, RFC 1929 authentication when
/// credentials are given, CONNECT, and the reply read to its last byte
/// (the mail server's greeting follows it).
fn socks5<S: Read + Write>(
    stream: &mut S,
    auth: Option<&(String, String)>,
    target: &Target,
) -> io::Result<()> {
    let hello: &[u8] = if auth.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    stream.write_all(hello)?;
    stream.flush()?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice)?;
    if choice[0] != 5 {
        return Err(socks_error("the proxy does not speak SOCKS5".into()));
    }
    match (choice[1], auth) {
        (0, _) => {}
        (2, Some((user, password))) => {
            let mut req = vec![1, user.len() as u8];
            req.extend_from_slice(user.as_bytes());
            req.push(password.len() as u8);
            req.extend_from_slice(password.as_bytes());
            stream.write_all(&req)?;
            stream.flush()?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status)?;
            if status[1] != 0 {
                return Err(socks_error(
                    "the SOCKS5 proxy refused the user name and password".into(),
                ));
            }
        }
        (0xff, None) | (2, None) => {
            return Err(socks_error(
                "the SOCKS5 proxy wants a user name and password".into(),
            ))
        }
        _ => {
            return Err(socks_error(
                "the SOCKS5 proxy accepts none of the offered authentication methods".into(),
            ))
        }
    }
    stream.write_all(&socks5_request(target))?;
    stream.flush()?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head)?;
    if head[0] != 5 {
        return Err(socks_error("a malformed SOCKS5 reply".into()));
    }
    if head[1] != 0 {
        return Err(socks_error(format!(
            "the SOCKS5 proxy refused the connection: {} (reply {:#04x})",
            socks5_reply_text(head[1]),
            head[1]
        )));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len)?;
            len[0] as usize + 2
        }
        _ => return Err(socks_error("a malformed SOCKS5 reply".into())),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound)
}

/// The `CONNECT` request, with `Proxy-Authorization: Basic` when
/// credentials are given.
fn http_request(auth: Option<&(String, String)>, host: &str, port: u16) -> String {
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// The most a proxy's answer to CONNECT may take (status and headers).
const MAX_HTTP_HEAD: usize = 16 * 1024;

/// The HTTP `CONNECT` exchange. The answer is read a byte at a time up to
/// its blank line, so nothing of the mail server's greeting is consumed.
fn http_connect<S: Read + Write>(
    stream: &mut S,
    auth: Option<&(String, String)>,
    host: &str,
    port: u16,
) -> io::Result<()> {
    stream.write_all(http_request(auth, host, port).as_bytes())?;
    stream.flush()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_HTTP_HEAD {
            return Err(socks_error("the HTTP proxy's answer is too long".into()));
        }
        match stream.read(&mut byte)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the HTTP proxy closed the connection",
                ))
            }
            _ => head.push(byte[0]),
        }
    }
    check_http_status(&head)
}

/// Accepts a 2xx status line; anything else is an error quoting it.
fn check_http_status(head: &[u8]) -> io::Result<()> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("").trim();
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if version.starts_with("HTTP/") && code.len() == 3 && code.starts_with('2') {
        return Ok(());
    }
    let shown: String = line.chars().filter(|c| !c.is_control()).take(200).collect();
    Err(socks_error(format!("the HTTP proxy answered {shown:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted peer: what it will answer, and what it was sent.
    struct Script {
        answer: io::Cursor<Vec<u8>>,
        sent: Vec<u8>,
    }

    impl Script {
        fn new(answer: &[u8]) -> Script {
            Script {
                answer: io::Cursor::new(answer.to_vec()),
                sent: Vec::new(),
            }
        }
        fn left(&self) -> usize {
            self.answer.get_ref().len() - self.answer.position() as usize
        }
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.answer.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn parses_the_three_schemes() {
        let p = Proxy::parse("socks5h://me:p%40ss@proxy.example:1081").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5 { remote_dns: true });
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 1081));
        assert_eq!(p.auth, Some(("me".into(), "p@ss".into())));
        assert_eq!(p.to_string(), "socks5h://proxy.example:1081");
        let p = Proxy::parse("socks5://[::1]").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5 { remote_dns: false });
        assert_eq!((p.host.as_str(), p.port), ("::1", 1080));
        assert_eq!(p.to_string(), "socks5://[::1]:1080");
        let p = Proxy::parse("http://10.0.0.1:3128").unwrap();
        assert_eq!((p.kind, p.port, p.auth), (ProxyKind::Http, 3128, None));
    }

    #[test]
    fn refuses_other_urls_without_repeating_the_password() {
        let e = Proxy::parse("https://me:secret@h:1").unwrap_err();
        assert!(e.contains("unknown proxy scheme"), "{e}");
        assert!(!e.contains("secret"));
        assert!(Proxy::parse("socks5h://h:1/path").is_err());
        assert!(Proxy::parse("socks5h://").is_err());
        let e = Proxy::parse("socks5h://me:secret@h:99999").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn debug_and_display_hide_credentials() {
        let p = Proxy::parse("http://me:secret@h:1").unwrap();
        assert!(!format!("{p:?} {p}").contains("secret"));
    }

    #[test]
    fn socks5h_sends_the_name() {
        let mut s = Script::new(&[5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 25, b'*']);
        let p = Proxy::parse("socks5h://h:1").unwrap();
        p.open(&mut s, "mail.example", 993).unwrap();
        let mut want = vec![5, 1, 0, 5, 1, 0, 3, 12];
        want.extend_from_slice(b"mail.example");
        want.extend_from_slice(&993u16.to_be_bytes());
        assert_eq!(s.sent, want);
        assert_eq!(s.left(), 1, "the greeting after the reply is not consumed");
    }

    #[test]
    fn socks5_sends_an_address() {
        let mut s = Script::new(&[5, 0, 5, 0, 0, 3, 1, b'x', 0, 25]);
        let p = Proxy::parse("socks5://h:1").unwrap();
        p.open(&mut s, "127.0.0.1", 110).unwrap();
        assert_eq!(&s.sent[3..], &[5, 1, 0, 1, 127, 0, 0, 1, 0, 110]);
        assert_eq!(s.left(), 0);
    }

    #[test]
    fn socks5_authenticates_with_rfc1929() {
        let mut s = Script::new(&[5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let p = Proxy::parse("socks5h://ann:pw@h:1").unwrap();
        p.open(&mut s, "m", 1).unwrap();
        assert_eq!(
            &s.sent[..12],
            &[5, 2, 0, 2, 1, 3, b'a', b'n', b'n', 2, b'p', b'w']
        );
        let mut s = Script::new(&[5, 2, 1, 1]);
        let e = p.open(&mut s, "m", 1).unwrap_err();
        assert!(e.to_string().contains("refused the user name"), "{e}");
    }

    #[test]
    fn socks5_refusals_are_explained() {
        let mut s = Script::new(&[5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);
        let p = Proxy::parse("socks5h://h:1").unwrap();
        let e = p.open(&mut s, "m", 1).unwrap_err().to_string();
        assert!(e.contains("connection refused (reply 0x05)"), "{e}");
        let mut s = Script::new(&[5, 0xff]);
        let e = p.open(&mut s, "m", 1).unwrap_err().to_string();
        assert!(e.contains("wants a user name"), "{e}");
    }

    #[test]
    fn http_connect_with_basic_auth() {
        let mut s = Script::new(b"HTTP/1.1 200 Connection established\r\nX: y\r\n\r\n* OK");
        let p = Proxy::parse("http://ann:pw@h:1").unwrap();
        p.open(&mut s, "mail.example", 993).unwrap();
        assert_eq!(
            String::from_utf8(s.sent.clone()).unwrap(),
            "CONNECT mail.example:993 HTTP/1.1\r\nHost: mail.example:993\r\n\
             Proxy-Authorization: Basic YW5uOnB3\r\n\r\n"
        );
        assert_eq!(s.left(), 4, "the greeting is not consumed");
    }

    #[test]
    fn http_refusal_quotes_the_status_line() {
        let mut s = Script::new(b"HTTP/1.1 403 Forbidden\r\n\r\n");
        let p = Proxy::parse("http://h:1").unwrap();
        let e = p.open(&mut s, "m", 1).unwrap_err().to_string();
        assert!(e.contains("\"HTTP/1.1 403 Forbidden\""), "{e}");
        let mut s = Script::new(b"HTTP/1.1 200 OK\r\n");
        assert!(p.open(&mut s, "m", 1).is_err(), "cut short");
        assert!(check_http_status(b"SSH-2.0-x\r\n\r\n").is_err());
    }

    #[test]
    fn http_brackets_ipv6_targets() {
        assert!(http_request(None, "::1", 993).starts_with("CONNECT [::1]:993 "));
    }
}
