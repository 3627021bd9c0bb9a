//! A small SOCKS5 and HTTP CONNECT proxy for the `proxy` key's tests: an
//! in-process thread that records every target it is asked for (so a
//! test can tell that `socks5h://` sent the host name, not an address),
//! counts connections, and relays bytes both ways. It can also refuse
//! every request (SOCKS reply 0x05, HTTP 403).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy speaks, and whether it lets anyone through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SOCKS5 without authentication.
    Socks5,
    /// SOCKS5 that answers every CONNECT with reply 0x05.
    Socks5Refusing,
    /// HTTP CONNECT.
    Http,
    /// HTTP CONNECT that answers 403.
    HttpRefusing,
}

/// A running proxy on a free loopback port.
pub struct MiniProxy {
    port: u16,
    targets: Arc<Mutex<Vec<String>>>,
}

impl MiniProxy {
    /// Starts the proxy.
    pub fn start(kind: Kind) -> MiniProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&targets);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let seen = Arc::clone(&seen);
                thread::spawn(move || serve(kind, client, &seen));
            }
        });
        MiniProxy { port, targets }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The targets asked for so far (`host:port`, as the client sent the
    /// host: a name or an address).
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

fn serve(kind: Kind, mut client: TcpStream, seen: &Mutex<Vec<String>>) {
    let target = match kind {
        Kind::Socks5 | Kind::Socks5Refusing => socks5(&mut client, kind == Kind::Socks5Refusing),
        Kind::Http | Kind::HttpRefusing => http(&mut client, kind == Kind::HttpRefusing),
    };
    let Some((target, server)) = target else {
        return;
    };
    seen.lock().unwrap().push(target);
    pump(client.try_clone().unwrap(), server.try_clone().unwrap());
    pump(server, client);
}

/// One SOCKS5 exchange; the target and the connection to it.
fn socks5(c: &mut TcpStream, refuse: bool) -> Option<(String, TcpStream)> {
    let mut head = [0u8; 2];
    c.read_exact(&mut head).ok()?;
    let mut methods = vec![0u8; head[1] as usize];
    c.read_exact(&mut methods).ok()?;
    c.write_all(&[5, 0]).ok()?;
    let mut req = [0u8; 4];
    c.read_exact(&mut req).ok()?;
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            c.read_exact(&mut a).ok()?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            c.read_exact(&mut len).ok()?;
            let mut name = vec![0u8; len[0] as usize];
            c.read_exact(&mut name).ok()?;
            String::from_utf8(name).ok()?
        }
        4 => {
            let mut a = [0u8; 16];
            c.read_exact(&mut a).ok()?;
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        _ => return None,
    };
    let mut port = [0u8; 2];
    c.read_exact(&mut port).ok()?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    let server = if refuse {
        None
    } else {
        TcpStream::connect(target.as_str()).ok()
    };
    let code = if server.is_some() { 0 } else { 5 };
    c.write_all(&[5, code, 0, 1, 127, 0, 0, 1, 0, 0]).ok()?;
    Some((target, server?))
}

/// One HTTP CONNECT exchange; the target and the connection to it.
fn http(c: &mut TcpStream, refuse: bool) -> Option<(String, TcpStream)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).ok()?;
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).ok()?;
    let target = text.split_whitespace().nth(1)?.to_string();
    let server = if refuse {
        None
    } else {
        TcpStream::connect(target.as_str()).ok()
    };
    match server {
        Some(s) => {
            c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .ok()?;
            Some((target, s))
        }
        None => {
            let _ = c.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
            None
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
