//! A byte-counting TCP proxy for tests that must measure what crossed
//! the wire, e.g. that headers-first fetched kilobytes of a 4 MB message
//! rather than the message. Every accepted connection is relayed to the
//! target in both directions on two threads; the bytes from the server
//! to the client and back are counted.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

/// A running proxy to `127.0.0.1:target`.
pub struct CountingProxy {
    port: u16,
    from_server: Arc<AtomicU64>,
    from_client: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl CountingProxy {
    /// Starts relaying connections to `127.0.0.1:target` from a free port.
    pub fn start(target: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let from_server = Arc::new(AtomicU64::new(0));
        let from_client = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (s, c) = (Arc::clone(&from_server), Arc::clone(&from_client));
        let accepted = Arc::clone(&connections);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                pump(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    Arc::clone(&c),
                );
                pump(server, client, Arc::clone(&s));
            }
        });
        CountingProxy {
            port,
            from_server,
            from_client,
            connections,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes relayed from the server to clients so far.
    pub fn bytes_from_server(&self) -> u64 {
        self.from_server.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Bytes relayed from clients to the server so far.
    pub fn bytes_from_client(&self) -> u64 {
        self.from_client.load(Ordering::SeqCst)
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Arc<AtomicU64>) {
    thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    count.fetch_add(n as u64, Ordering::SeqCst);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
