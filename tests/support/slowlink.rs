//! A TCP proxy on 127.0.0.1 that behaves like a slow link: every chunk is
//! held back by a fixed one-way delay in each direction, and the bytes
//! sent downstream (server to client) are counted. Crash tests run the
//! binary through it so a SIGKILL at a random moment lands in the middle
//! of real protocol traffic.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A running proxy; stops accepting when dropped.
pub struct SlowLink {
    port: u16,
    down_bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SlowLink {
    /// Proxies a new local port to `127.0.0.1:target` with `one_way` delay
    /// per direction.
    pub fn start(target: u16, one_way: Duration) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let down_bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (down, halt) = (down_bytes.clone(), stop.clone());
        thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                            continue;
                        };
                        pump(
                            client.try_clone().unwrap(),
                            server.try_clone().unwrap(),
                            one_way,
                            None,
                        );
                        pump(server, client, one_way, Some(down.clone()));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        SlowLink {
            port,
            down_bytes,
            stop,
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Bytes sent from the server to clients so far.
    pub fn down_bytes(&self) -> u64 {
        self.down_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, each chunk released `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration, count: Option<Arc<AtomicU64>>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now() + delay, Vec::new()));
                    return;
                }
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if chunk.is_empty() || to.write_all(&chunk).is_err() {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            if let Some(c) = &count {
                c.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    });
}
