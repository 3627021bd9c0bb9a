//! Connections through a command (`tunnel = ["ssh", "host", "nc %h %p"]`,
//! mbsync's `Tunnel`, fetchmail's `plugin`): the command is started with
//! `%h` and `%p` in its arguments replaced by the server's host and port
//! (no shell), and the mail protocol is spoken over its standard input
//! and output.
//!
//! As mbsync does, the command's standard input and output are one end of
//! a Unix socket pair; mailretr holds the other end. That end is handed
//! out as the connection's socket (a `TcpStream` wrapping the Unix
//! socket: every call the connection code makes on it, reading, writing,
//! read and write timeouts, `try_clone` and `shutdown`, means the same on
//! a Unix stream socket), so TLS and STARTTLS over a tunnel, the server's
//! `timeout`, the session deadline (`net::paced`) and `watch`'s shutdown
//! of an IDLE connection work exactly as over TCP.
//!
//! The command's standard error is kept (its last lines) for the error
//! message when it fails. A watchdog thread owns the child: it reaps it
//! when it exits, and kills (and reaps) it as soon as mailretr's end of
//! the connection is closed (every handle dropped, or shut down).

use std::fmt;
use std::io::{self, Read};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most of the command's standard error kept for an error message.
const STDERR_KEPT: usize = 2048;

/// A `tunnel = [...]` setting: the command and its arguments, `%h` and
/// `%p` not yet replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    argv: Vec<String>,
}

impl fmt::Display for Tunnel {
    /// The command as configured, for messages (`ssh host nc %h %p`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv.join(" "))
    }
}

impl Tunnel {
    /// Checks a configured argv: a program and its arguments, `%h`, `%p`
    /// and `%%` the only escapes.
    pub fn parse(argv: &[String]) -> Result<Tunnel, String> {
        let Some(program) = argv.first() else {
            return Err("must name a command, e.g. [\"ssh\", \"host\", \"nc %h %p\"]".into());
        };
        if program.trim().is_empty() {
            return Err("the command's name is empty".into());
        }
        for arg in argv {
            let mut chars = arg.chars();
            while let Some(c) = chars.next() {
                if c == '%' && !matches!(chars.next(), Some('h' | 'p' | '%')) {
                    return Err(format!(
                        "{arg:?}: only %h (host), %p (port) and %% may follow a %"
                    ));
                }
            }
        }
        Ok(Tunnel {
            argv: argv.to_vec(),
        })
    }

    /// The argv with `%h` and `%p` replaced.
    pub fn argv(&self, host: &str, port: u16) -> Vec<String> {
        self.argv
            .iter()
            .map(|arg| {
                let mut out = String::new();
                let mut chars = arg.chars();
                while let Some(c) = chars.next() {
                    match (c, c == '%') {
                        (_, false) => out.push(c),
                        (_, true) => match chars.next() {
                            Some('h') => out.push_str(host),
                            Some('p') => out.push_str(&port.to_string()),
                            Some(other) => out.push(other),
                            None => out.push('%'),
                        },
                    }
                }
                out
            })
            .collect()
    }

    /// Starts the command for `host:port`. With `server_first` (a
    /// greeting comes first: not implicit TLS, where the client speaks
    /// first) waits until it has something to say: an exit before that is
    /// an error with the command's exit status and standard error.
    /// Otherwise `explain` gives that error for a handshake that failed.
    /// Reads and writes of the socket returned time out after `timeout`.
    pub fn open(
        &self,
        host: &str,
        port: u16,
        timeout: Duration,
        server_first: bool,
    ) -> io::Result<TcpStream> {
        let argv = self.argv(host, port);
        let (ours, theirs) = UnixStream::pair()?;
        // The watchdog keeps a handle on the command's end, to see ours
        // close; the command gets its own two.
        let watch_end = theirs.try_clone()?;
        let stdin = OwnedFd::from(theirs.try_clone()?);
        let stdout = OwnedFd::from(theirs);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start tunnel {self}: {e}")))?;
        let stderr = child.stderr.take();
        let shared = Arc::new(Shared::default());
        let watched = shared.clone();
        let pid = child.id();
        std::thread::Builder::new()
            .name(format!("tunnel {pid}"))
            .spawn(move || watchdog(child, watch_end, stderr, &watched))?;
        ours.set_read_timeout(Some(timeout))?;
        ours.set_write_timeout(Some(timeout))?;
        LAST.with(|last| *last.borrow_mut() = Some((self.clone(), shared.clone())));
        if !server_first {
            return Ok(TcpStream::from(OwnedFd::from(ours)));
        }
        // What the command said first: it must say something.
        let started = Instant::now();
        let mut byte = [0u8; 1];
        loop {
            match recv_peek(&ours, &mut byte) {
                Ok(0) => return Err(shared.failure(self, Duration::from_secs(2))),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if started.elapsed() >= timeout {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!(
                                "tunnel {self}: nothing from the server in {}s{}",
                                timeout.as_secs(),
                                shared.stderr_note()
                            ),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(TcpStream::from(OwnedFd::from(ours)))
    }
}

thread_local! {
    /// The tunnel this thread opened last, for `explain`.
    static LAST: std::cell::RefCell<Option<(Tunnel, Arc<Shared>)>> =
        const { std::cell::RefCell::new(None) };
}

/// For a connection through a tunnel that failed before the protocol
/// began (the TLS handshake of implicit TLS): when the tunnel this thread
/// opened last has exited (or does within a second), why, with its
/// standard error; `None` when it still runs (the error is the server's).
pub fn explain() -> Option<String> {
    let (tunnel, shared) = LAST.with(|last| last.borrow().clone())?;
    let e = shared.failure(&tunnel, Duration::from_secs(1));
    let exited = shared.lock().status.is_some();
    exited.then(|| e.to_string())
}

/// `net::tls_handshake` on a connection `net::connect_tcp` made: when
/// the connection is a tunnel whose command exited, the error says so
/// (with its standard error) instead of the handshake's end-of-file.
pub fn tls_handshake(
    server: &crate::config::ServerConfig,
    tcp: TcpStream,
) -> crate::error::Result<super::Stream> {
    super::tls_handshake(server, tcp).map_err(|e| match &server.tunnel {
        Some(_) => match explain() {
            Some(why) => crate::error::Error::net(
                format!("connecting to {}:{}", server.host, server.port),
                io::Error::new(io::ErrorKind::ConnectionAborted, why),
            ),
            None => e,
        },
        None => e,
    })
}

/// `recv(MSG_PEEK)`: whether there is input, without taking it.
fn recv_peek(socket: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is open for
    // the lifetime of `socket`.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// What the watchdog learns: the exit status and standard error.
#[derive(Default)]
struct Shared {
    state: Mutex<Outcome>,
    exited: Condvar,
}

#[derive(Default)]
struct Outcome {
    status: Option<std::process::ExitStatus>,
    stderr: Vec<u8>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error for a command that closed the connection before saying
    /// anything, once it has exited (waiting up to `wait`).
    fn failure(&self, tunnel: &Tunnel, wait: Duration) -> io::Error {
        let deadline = Instant::now() + wait;
        let mut outcome = self.lock();
        while outcome.status.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            outcome = self
                .exited
                .wait_timeout(outcome, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let how = match outcome.status {
            Some(s) => match s.code() {
                Some(code) => format!("exited with status {code}"),
                None => format!("ended ({s})"),
            },
            None => "closed the connection".to_string(),
        };
        drop(outcome);
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            format!(
                "tunnel {tunnel} {how} before the server said anything{}",
                self.stderr_note()
            ),
        )
    }

    /// `: <the last line of standard error>`, if it said something.
    fn stderr_note(&self) -> String {
        let outcome = self.lock();
        let text = String::from_utf8_lossy(&outcome.stderr);
        match text.lines().map(str::trim).rfind(|l| !l.is_empty()) {
            Some(line) => format!(": {}", crate::message::escape(line)),
            None => String::new(),
        }
    }
}

/// Owns the child: collects its standard error, reaps it when it exits,
/// kills and reaps it when mailretr's end of the socket pair is closed.
fn watchdog(
    mut child: Child,
    watch_end: UnixStream,
    stderr: Option<std::process::ChildStderr>,
    shared: &Shared,
) {
    let pidfd = pidfd_open(child.id());
    let mut stderr = stderr;
    loop {
        let mut fds = vec![libc::pollfd {
            fd: watch_end.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        }];
        if let Some(e) = &stderr {
            fds.push(libc::pollfd {
                fd: e.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let pid_index = fds.len();
        if let Some(p) = &pidfd {
            fds.push(libc::pollfd {
                fd: p.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // Without a pidfd (old kernels) the exit is looked for every 50 ms.
        let wait_ms = if pidfd.is_some() { -1 } else { 50 };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if stderr.is_some() && fds[1].revents != 0 {
            let mut buf = [0u8; 1024];
            match stderr.as_mut().map(|e| e.read(&mut buf)) {
                Some(Ok(n)) if n > 0 => {
                    let mut outcome = shared.lock();
                    outcome.stderr.extend_from_slice(&buf[..n]);
                    let len = outcome.stderr.len();
                    if len > STDERR_KEPT {
                        outcome.stderr.drain(..len - STDERR_KEPT);
                    }
                }
                _ => stderr = None,
            }
        }
        let exited = match (&pidfd, fds.get(pid_index)) {
            (Some(_), Some(p)) => p.revents != 0,
            _ => matches!(child.try_wait(), Ok(Some(_))),
        };
        if exited {
            break;
        }
        if fds[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            // Our end is closed: the tunnel has no more use.
            let _ = child.kill();
            break;
        }
    }
    // What is left of standard error (the command has exited, or was
    // killed: the pipe ends).
    if let Some(mut e) = stderr {
        let mut rest = Vec::new();
        let _ = (&mut e).take(STDERR_KEPT as u64).read_to_end(&mut rest);
        let mut outcome = shared.lock();
        outcome.stderr.extend_from_slice(&rest);
    }
    let status = child.wait().ok();
    // Only now does our end see the end of the connection (the command's
    // own handles are closed by its exit; this is the last other one).
    drop(watch_end);
    shared.lock().status = status;
    shared.exited.notify_all();
}

/// A pidfd for `pid` (Linux 5.3 and later), to wait for its exit in the
/// same `poll` as the rest.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the fd was just returned to us and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tunnel(argv: &[&str]) -> Tunnel {
        Tunnel::parse(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn placeholders_are_replaced_without_a_shell() {
        let t = tunnel(&["ssh", "-p", "22", "gw", "nc %h %p", "100%%"]);
        assert_eq!(
            t.argv("mail.example", 993),
            ["ssh", "-p", "22", "gw", "nc mail.example 993", "100%"]
        );
        assert!(Tunnel::parse(&[]).is_err());
        assert!(Tunnel::parse(&["nc %x".into()]).is_err());
        assert!(Tunnel::parse(&["".into()]).is_err());
    }

    #[test]
    fn a_command_speaks_over_its_stdin_and_stdout() {
        let t = tunnel(&[
            "sh",
            "-c",
            "echo '* OK hi %h'; read line; echo \"got $line\"",
        ]);
        let mut s = t.open("h", 1, Duration::from_secs(5), true).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"* OK hi h\n");
        s.write_all(b"hello\n").unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "got hello\n");
    }

    #[test]
    fn an_early_exit_says_why() {
        let t = tunnel(&["sh", "-c", "echo 'ssh: no route to %h' >&2; exit 255"]);
        let e = t.open("gw", 1, Duration::from_secs(5), true).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("exited with status 255"), "{text}");
        assert!(text.contains("ssh: no route to gw"), "{text}");
        let e = tunnel(&["/nonexistent/tunnel"])
            .open("gw", 1, Duration::from_secs(5), true)
            .unwrap_err();
        assert!(e.to_string().contains("cannot start tunnel"), "{e}");
    }

    #[test]
    fn the_command_is_killed_when_the_connection_is_dropped() {
        let dir = std::env::temp_dir().join(format!("mailretr-tunnel-{}", std::process::id()));
        let _ = std::fs::create_dir(&dir);
        let pidfile = dir.join("pid");
        let t = tunnel(&[
            "sh",
            "-c",
            &format!("echo $$ > {}; echo ready; exec sleep 60", pidfile.display()),
        ]);
        let s = t.open("h", 1, Duration::from_secs(5), true).unwrap();
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SAFETY: signal 0 only checks that the process exists.
        assert_eq!(unsafe { libc::kill(pid, 0) }, 0);
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(5);
        // Killed and reaped: the pid is gone (not a zombie).
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(Instant::now() < deadline, "tunnel still running");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
