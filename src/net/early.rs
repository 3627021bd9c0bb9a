//! Connections started early: `fetch` begins connecting to the servers
//! of the accounts it runs first (TCP, and the TLS handshake when TLS is
//! implicit) as soon as it knows them, on threads of their own, while it
//! opens the state, flushes the spool and takes the account's lock. On a
//! run with no new mail that set-up is most of the run's own time, and
//! the server's share of the handshake (a Dovecot forks a login process
//! for it) now overlaps with it instead of following it.
//!
//! The TCP connection is made before the state is opened; the TLS
//! handshake waits for the state (`StateGate`): it offers the server's
//! stored session, which `fetch` reads through its own connection to
//! state.db (`session::preload`) once that is open, and an account the
//! state says is not to connect now (a LOGIN-DELAY) has its connection
//! closed before the handshake (`StateGate::cancel`).
//!
//! Nothing is said to the server before the account's lock is held: no
//! greeting is read, no command sent and no credential used on the early
//! thread. The account takes its connection (`take`) when it would have
//! connected itself (`run::open_source`), and gets it through `opening`
//! the way it would have made it: an error of the early connection is its
//! error then, and a refused TLS session is retried as there. A
//! connection its account does not use (its lock is held by another run,
//! it stops before connecting) is closed when the account's run ends
//! (`Unused`), without a word to the server.
//!
//! One not taken within `FRESH_FOR` is closed unused too.
//!
//! An early connection holds a slot of its server's
//! `max_connections_per_host` from the start (it is not made when none is
//! free), and hands it to the account with the connection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{ServerConfig, TlsMode};
use crate::error::{Error, Result};
use crate::slots::Slot;

use super::{Begun, Stream};

/// A connection as the protocol's set-up starts from it: plain TCP for
/// `tls = "none"` and STARTTLS, TLS already negotiated (and the server
/// checked) for implicit TLS.
#[derive(Debug)]
pub enum Opening {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP (`tls = "implicit"`).
    Tls(Stream),
}

impl Opening {
    /// The socket under the connection, shared.
    pub fn socket(&self) -> std::io::Result<TcpStream> {
        match self {
            Opening::Tcp(tcp) => tcp.try_clone(),
            Opening::Tls(stream) => stream.socket().try_clone(),
        }
    }

    /// The plain connection (`tls = "none"` or STARTTLS).
    pub fn into_tcp(self) -> Result<TcpStream> {
        match self {
            Opening::Tcp(tcp) => Ok(tcp),
            Opening::Tls(_) => Err(Error::Internal(
                "an implicit-TLS connection where a plain one was due".into(),
            )),
        }
    }

    /// The secured connection (implicit TLS).
    pub fn into_tls(self) -> Result<Stream> {
        match self {
            Opening::Tls(stream) => Ok(stream),
            Opening::Tcp(_) => Err(Error::Internal(
                "a plain connection where an implicit-TLS one was due".into(),
            )),
        }
    }
}

/// Connects to `server` now: TCP (or the proxy, or the tunnel), and the
/// TLS handshake when TLS is implicit.
fn open_now(server: &ServerConfig) -> Result<Opening> {
    secure(server, super::connect_tcp(server)?)
}

/// The TLS handshake on `tcp` when TLS is implicit.
fn secure(server: &ServerConfig, tcp: TcpStream) -> Result<Opening> {
    match server.tls {
        TlsMode::Implicit => Ok(Opening::Tls(super::tunnel::tls_handshake(server, tcp)?)),
        TlsMode::None | TlsMode::Starttls => Ok(Opening::Tcp(tcp)),
    }
}

/// An early connection for `account`: TCP (begun by the caller of
/// `start`, `begun`), then (once the state lets it, see `StateGate`) the
/// TLS handshake.
fn open_early(account: &str, server: &ServerConfig, begun: Option<Begun>) -> Result<Opening> {
    let tcp = match begun {
        Some(begun) => super::finish_connect(begun, server)?,
        None => super::connect_tcp(server)?,
    };
    if !StateGate::wait(account) {
        return Err(Error::Internal(format!(
            "the early connection of {account} was not to be used"
        )));
    }
    secure(server, tcp)
}

/// Holds the TLS handshakes of early connections until the state has
/// been read (the guard is dropped); `cancel` closes one before its
/// handshake.
pub struct StateGate(());

#[derive(Default)]
struct GateState {
    held: bool,
    cancelled: std::collections::HashSet<String>,
    all_cancelled: bool,
}

impl GateState {
    /// Whether `account`'s early connection is not to be used.
    fn cancels(&self, account: &str) -> bool {
        self.all_cancelled || self.cancelled.contains(account)
    }
}

fn gate() -> &'static (Mutex<GateState>, Condvar) {
    static GATE: OnceLock<(Mutex<GateState>, Condvar)> = OnceLock::new();
    GATE.get_or_init(Default::default)
}

/// How long a held handshake waits for the state at most: one that
/// waited so long goes on without it (its session store then reads
/// state.db itself, see `session`).
const GATE_WAIT: Duration = Duration::from_secs(5);

impl StateGate {
    /// Holds the handshakes of the early connections from now until the
    /// guard is dropped.
    pub fn hold() -> StateGate {
        let mut g = gate().0.lock().unwrap_or_else(|e| e.into_inner());
        g.held = true;
        g.cancelled.clear();
        g.all_cancelled = false;
        StateGate(())
    }

    /// No early connection is to be used (the state could not be
    /// opened: no account runs).
    pub fn cancel_all(&self) {
        gate()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all_cancelled = true;
    }

    /// `account`'s early connection is not to be used: it is closed
    /// before its handshake.
    pub fn cancel(&self, account: &str) {
        let mut g = gate().0.lock().unwrap_or_else(|e| e.into_inner());
        g.cancelled.insert(account.to_string());
    }

    fn cancelled(account: &str) -> bool {
        let g = gate().0.lock().unwrap_or_else(|e| e.into_inner());
        g.cancels(account)
    }

    /// Waits while the handshakes are held; whether `account`'s may go.
    fn wait(account: &str) -> bool {
        let (lock, released) = gate();
        let g = lock.lock().unwrap_or_else(|e| e.into_inner());
        let g = match released.wait_timeout_while(g, GATE_WAIT, |g| g.held) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
        !g.cancels(account)
    }
}

impl Drop for StateGate {
    fn drop(&mut self) {
        let (lock, released) = gate();
        lock.lock().unwrap_or_else(|e| e.into_inner()).held = false;
        released.notify_all();
    }
}

/// What an early thread ends with: the connection (or why there is
/// none), whether a stored TLS session was refused on the way (see
/// `tls::resumption_refused`), and the slot it held.
struct Outcome {
    opening: Result<Opening>,
    refused: bool,
    slot: Slot,
}

/// How long an early connection may wait for its account: one not taken
/// by then (the account's spool or the outgoing queue took long to
/// flush) is closed, and the account connects anew, so it never starts
/// on a connection the server may have given up on.
pub const FRESH_FOR: Duration = Duration::from_secs(10);

/// A connection being made for an account.
pub struct Early {
    /// The server it is made to: an account asking for another server
    /// (its config changed) does not get it.
    server: ServerConfig,
    started: Instant,
    thread: JoinHandle<Outcome>,
}

impl Early {
    /// Waits for the connection, with its slot.
    fn finish(self) -> Option<Outcome> {
        self.thread.join().ok()
    }
}

fn registry() -> MutexGuard<'static, HashMap<String, Early>> {
    static EARLY: OnceLock<Mutex<HashMap<String, Early>>> = OnceLock::new();
    EARLY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Starts connecting to `account`'s `server`, holding `slot`. Not for
/// tunnels (their command is started by the account, see `tunnel`).
///
/// With `syn_here`, the name is resolved and the SYN sent from the
/// calling thread (see `net::begin_connect`): the server's share of the
/// set-up starts with it, before the caller's next steps and before a new
/// thread would be scheduled. `fetch` does so for the first account
/// only: a slow resolver would otherwise hold the caller up once per
/// account.
pub fn start(account: &str, server: &ServerConfig, slot: Slot, syn_here: bool) {
    let for_thread = server.clone();
    let name = account.to_string();
    let begun = if syn_here {
        super::begin_connect(server)
    } else {
        None
    };
    let spawned = std::thread::Builder::new()
        .name(format!("connect {account}"))
        .spawn(move || {
            let opening = open_early(&name, &for_thread, begun);
            Outcome {
                opening,
                refused: super::tls::resumption_refused(),
                slot,
            }
        });
    if let Ok(thread) = spawned {
        registry().insert(
            account.to_string(),
            Early {
                server: server.clone(),
                started: Instant::now(),
                thread,
            },
        );
    }
}

/// Whether a connection is being made early for `account`.
pub fn started(account: &str) -> bool {
    registry().contains_key(account)
}

/// Whether `server` may be connected to early at all.
pub fn possible(server: &ServerConfig) -> bool {
    server.tunnel.is_none()
}

/// The connection started early for `account` to `server`, if there is
/// one: its slot, and the connection to hand to the protocol's set-up
/// (`Handoff::install`).
pub fn take(account: &str, server: &ServerConfig) -> Option<(Slot, Pending)> {
    let early = registry().remove(account)?;
    if early.server != *server
        || early.started.elapsed() > FRESH_FOR
        || StateGate::cancelled(account)
    {
        return None;
    }
    let server = early.server.clone();
    let outcome = early.finish()?;
    Some((
        outcome.slot,
        Pending {
            server,
            opening: outcome.opening,
            refused: outcome.refused,
        },
    ))
}

/// An account's run that may not have used its early connection: the
/// connection is closed (and its slot given back) when this is dropped.
pub struct Unused(pub String);

impl Drop for Unused {
    fn drop(&mut self) {
        // A connection made is closed here; one still being made, when
        // its (detached) thread ends.
        let early = registry().remove(&self.0);
        drop(early);
    }
}

/// An early connection, made, for the protocol's set-up.
pub struct Pending {
    server: ServerConfig,
    opening: Result<Opening>,
    refused: bool,
}

thread_local! {
    static HANDED: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// The early connection handed to the protocol's set-up on this thread:
/// its first `opening` gets it. Whatever it did not take is closed when
/// this is dropped.
pub struct Handoff(());

impl Handoff {
    /// Hands `pending` to this thread's next `opening`.
    pub fn install(pending: Option<Pending>) -> Handoff {
        HANDED.with(|h| *h.borrow_mut() = pending);
        Handoff(())
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        HANDED.with(|h| h.borrow_mut().take());
    }
}

/// The connection a protocol's set-up starts from: the one handed over
/// on this thread (`Handoff`), else one made now.
pub fn opening(server: &ServerConfig) -> Result<Opening> {
    match HANDED.with(|h| h.borrow_mut().take()) {
        Some(pending) if pending.server == *server => {
            if pending.refused {
                super::tls::note_refused();
            }
            pending.opening
        }
        _ => open_now(server),
    }
}
