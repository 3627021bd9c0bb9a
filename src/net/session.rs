//! TLS session resumption across runs: the last session (TLS 1.3
//! ticket, or TLS 1.2 ticket or id) each server issued is kept in
//! state.db (`tls_sessions`, one row per server and trust settings) and
//! offered on the next connection, so a cron run pays an abbreviated
//! handshake (no certificate chain, no verification, no trust store).
//!
//! A server that resumes none of the sessions it is offered (a Dovecot
//! in its default "secure" mode forks a login process, with ticket keys
//! of its own, for every connection) is offered none after
//! `GIVE_UP_AFTER` handshakes in a row that were not resumed, and none of
//! its sessions is kept, for `REFUSED_FOR` (as after a refusal): parsing
//! the stored session, offering it and storing the next would be work on
//! every run for nothing.
//!
//! A session is keyed on the host, the port and the connector's trust
//! id (the `ca_file` bytes, the pin, the client certificate), so a
//! session verified under one trust is never resumed under another. A
//! stored session that does not parse, has expired or that the server
//! no longer accepts just means a full handshake. Reading is one small
//! query per server per process (then kept in memory); each connection
//! keeps at most one session the server issues, written to state.db
//! when the account's run ends (`flush`), without an fsync of its own
//! (a lost session costs one full handshake).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::ex_data::Index;
use openssl::ssl::{Ssl, SslRef, SslSession};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::config::ServerConfig;

/// How long a write of a session may wait for another writer of
/// state.db before the session is dropped instead.
const BUSY: Duration = Duration::from_millis(250);

/// How long a server that failed a resumed handshake is not offered a
/// session again.
const REFUSED_FOR: i64 = 7 * 24 * 3600;

/// After this many handshakes in a row with a stored session offered and
/// not resumed, a server is taken for one that resumes none: nothing is
/// offered to or stored for it for `REFUSED_FOR`. One miss is a server
/// restarted with new ticket keys; three in a row, one that never
/// resumes.
const GIVE_UP_AFTER: i64 = 3;

/// Larger "sessions" are not stored (a hostile server cannot fill
/// state.db; OpenSSL's own are a few kilobytes with the certificate).
const MAX_DER: usize = 64 * 1024;

/// The session store of this process.
#[derive(Default)]
struct Store {
    /// Where state.db is (`use_state_dir`); none: memory only.
    path: Option<PathBuf>,
    /// The connection, opened on first use.
    conn: Option<Connection>,
    /// Sessions known in this process (read or issued).
    sessions: HashMap<String, SslSession>,
    /// Keys already looked up in state.db.
    looked_up: HashSet<String>,
    /// Sessions issued in this process and not written yet (`flush`).
    unwritten: HashSet<String>,
    /// The `host:port ` prefixes whose stored sessions were all read
    /// (`preload`): nothing more to look up for them.
    preloaded: HashSet<String>,
    /// Rows `preload` read, not yet parsed (OpenSSL may still be setting
    /// itself up on another thread: `preload` does not wait for it).
    read: HashMap<String, (Vec<u8>, i64, i64)>,
    /// Per key, how many handshakes in a row offered a session and were
    /// not resumed (as stored, then as this process saw them).
    misses: HashMap<String, i64>,
    /// Servers that failed a handshake with a session offered: nothing
    /// is offered to or stored for them (for `REFUSED_FOR`).
    refused: HashSet<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn store() -> std::sync::MutexGuard<'static, Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE
        .get_or_init(|| Mutex::new(Store::default()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Keeps TLS sessions in `dir/state.db` from now on (`fetch`, `watch`).
pub fn use_state_dir(dir: &Path) {
    let mut s = store();
    let path = dir.join("state.db");
    if s.path.as_deref() != Some(&path) {
        s.path = Some(path);
        s.conn = None;
        s.looked_up.clear();
    }
}

impl Store {
    fn conn(&mut self) -> Option<&Connection> {
        if self.conn.is_none() {
            let path = self.path.as_ref()?;
            // Never creates state.db: `State::open` does (with its mode,
            // its migrations); before that there is nothing to read.
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .ok()?;
            conn.busy_timeout(BUSY).ok()?;
            conn.execute_batch("PRAGMA synchronous = NORMAL;").ok()?;
            crate::store::wal_between_runs(&conn).ok()?;
            self.conn = Some(conn);
        }
        self.conn.as_ref()
    }

    fn load(&mut self, key: &str) -> Option<SslSession> {
        if let Some(s) = self.sessions.get(key) {
            return Some(s.clone());
        }
        if !self.looked_up.insert(key.to_string()) {
            return None;
        }
        if let Some((der, saved_at, misses)) = self.read.remove(key) {
            return self.remember(key, &der, saved_at, misses);
        }
        if self.preloaded.iter().any(|p| key.starts_with(p.as_str())) {
            return None;
        }
        let row: Option<(Vec<u8>, i64, i64)> = self
            .conn()?
            .query_row(
                "SELECT session, saved_at, misses FROM tls_sessions WHERE server = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .unwrap_or_else(|e| {
                log::debug!("TLS session store: {e}");
                None
            });
        let (der, saved_at, misses) = row?;
        self.remember(key, &der, saved_at, misses)
    }

    /// Takes in a stored row: a session, or the refusal mark.
    fn remember(
        &mut self,
        key: &str,
        der: &[u8],
        saved_at: i64,
        misses: i64,
    ) -> Option<SslSession> {
        self.misses.insert(key.to_string(), misses);
        if der.is_empty() {
            // The refusal mark (see `refused`).
            if now() - saved_at < REFUSED_FOR {
                self.refused.insert(key.to_string());
            }
            return None;
        }
        let session = match SslSession::from_der(der) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("{key}: the stored TLS session is unusable ({e}); full handshake");
                return None;
            }
        };
        self.sessions.insert(key.to_string(), session.clone());
        Some(session)
    }

    fn save(&mut self, key: &str, session: SslSession) {
        if self.refused.contains(key) {
            return;
        }
        self.sessions.insert(key.to_string(), session);
        self.unwritten.insert(key.to_string());
    }

    /// The sessions issued since the last time, and the marks of servers
    /// given up on (`handshake_done`), as rows to store.
    fn take_issued(&mut self) -> Vec<(String, Vec<u8>, i64)> {
        let mut rows = Vec::new();
        for key in std::mem::take(&mut self.unwritten) {
            if self.refused.contains(&key) {
                rows.push((key, Vec::new(), 0));
                continue;
            }
            let misses = self.misses.get(&key).copied().unwrap_or(0);
            let der = self.sessions.get(&key).and_then(|s| s.to_der().ok());
            if let Some(der) = der.filter(|d| d.len() <= MAX_DER) {
                rows.push((key, der, misses));
            }
        }
        rows
    }

    /// A handshake with `key`'s server is over: with a session offered,
    /// whether it was resumed (`handshake_done`).
    fn offered_and(&mut self, key: &str, resumed: bool) {
        let before = self.misses.get(key).copied().unwrap_or(0);
        let misses = if resumed { 0 } else { before + 1 };
        if misses == before {
            return;
        }
        self.misses.insert(key.to_string(), misses);
        // The count is stored with the session (`flush`): the one the
        // server issues on this connection, or the one offered.
        self.unwritten.insert(key.to_string());
        if misses >= GIVE_UP_AFTER {
            log::debug!(
                "{key}: none of the last {misses} TLS sessions offered was resumed; \
                 offering none for {} days",
                REFUSED_FOR / 86400
            );
            // The mark instead (see `take_issued`).
            self.sessions.remove(key);
            self.refused.insert(key.to_string());
        }
    }

    fn write(&mut self, key: &str, der: &[u8]) {
        let Some(conn) = self.conn() else { return };
        if let Err(e) = conn.execute(
            "INSERT OR REPLACE INTO tls_sessions (server, session, saved_at) VALUES (?1, ?2, ?3)",
            params![key, der, now()],
        ) {
            log::debug!("{key}: TLS session not stored: {e}");
        }
    }
}

/// Writes the sessions servers issued since the last call through
/// `state` (an account's run, as it ends). They are kept in memory until
/// then: a session arrives with the first data of a connection, when a
/// write would delay what the run is waiting for.
pub fn flush(state: &mut crate::store::State) {
    let rows = store().take_issued();
    if rows.is_empty() {
        return;
    }
    if let Err(e) = state.put_tls_sessions(&rows, now()) {
        log::debug!("TLS sessions not stored: {e}");
    }
}

/// Reads every stored session of `server`'s host and port through
/// `state` (`fetch`, before it connects early, see `net::early`): the
/// handshake then finds it in memory, and opens no connection of its own
/// to state.db.
pub fn preload(state: &crate::store::State, server: &ServerConfig) {
    let prefix = key(server, "");
    let rows = match state.tls_sessions_under(&prefix) {
        Ok(rows) => rows,
        Err(e) => return log::debug!("TLS session store: {e}"),
    };
    let mut s = store();
    for (key, der, saved_at, misses) in rows {
        if !s.looked_up.contains(&key) {
            s.read.insert(key, (der, saved_at, misses));
        }
    }
    s.preloaded.insert(prefix);
}

/// A handshake with a session offered failed: some servers fail every
/// resumption (Dovecot with `ssl_verify_client_cert = yes` answers one
/// with "session id context uninitialized" and hangs up). The session is
/// dropped, and the server is offered none (and none of its sessions is
/// kept) for a week, noted in state.db (an empty session) so later runs
/// know it too. The caller connects once more, without a session.
pub fn refused(key: &str) {
    let mut s = store();
    s.sessions.remove(key);
    s.unwritten.remove(key);
    s.refused.insert(key.to_string());
    s.write(key, &[]);
}

/// A handshake with the server of `key` succeeded; `offered`: with a
/// stored session offered, `resumed`: and resumed. A server that resumed
/// none of `GIVE_UP_AFTER` in a row is offered none, and none of its
/// sessions is kept, for `REFUSED_FOR`.
pub fn handshake_done(key: &str, offered: bool, resumed: bool) {
    if offered {
        store().offered_and(key, resumed);
    }
}

/// The store's key for a server under the connector's trust settings.
pub fn key(server: &ServerConfig, trust_id: &str) -> String {
    format!(
        "{}:{} {trust_id}",
        server.host.to_ascii_lowercase(),
        server.port
    )
}

/// What a connection carries for the new-session callback.
struct Slot {
    key: String,
    saved: bool,
}

fn slot_index() -> Option<Index<Ssl, Slot>> {
    static INDEX: OnceLock<Option<Index<Ssl, Slot>>> = OnceLock::new();
    *INDEX.get_or_init(|| Ssl::new_ex_index().ok())
}

/// Offers the stored session for `key` on `ssl`, if there is one that
/// has not expired. Returns whether one was offered.
pub fn offer(ssl: &mut Ssl, key: &str) -> bool {
    let Some(session) = store().load(key) else {
        return false;
    };
    let now = now();
    // `time()` is a `long` or a `u64`, depending on the OpenSSL version.
    #[allow(clippy::unnecessary_cast)]
    let expires = (session.time() as i64).saturating_add(session.timeout());
    if expires <= now {
        log::debug!("{key}: the stored TLS session has expired; full handshake");
        return false;
    }
    // SAFETY: the session is a client session (read back from what this
    // program's connectors issued, or parsed from DER, then owned by no
    // context); OpenSSL checks its version and ciphers against the
    // connection's and ignores one that does not fit.
    match unsafe { ssl.set_session(&session) } {
        Ok(()) => true,
        Err(e) => {
            log::debug!("{key}: the stored TLS session cannot be offered ({e}); full handshake");
            false
        }
    }
}

/// Tells the connection which key the sessions it is issued go under.
pub fn attach(ssl: &mut Ssl, key: String) {
    if let Some(index) = slot_index() {
        ssl.set_ex_data(index, Slot { key, saved: false });
    }
}

/// The new-session callback: keeps the first session the server issues
/// on a connection (TLS 1.3 servers send tickets after the handshake,
/// often two; OpenSSL reads them with the first data).
pub fn issued(ssl: &mut SslRef, session: SslSession) {
    let Some(index) = slot_index() else { return };
    let Some(slot) = ssl.ex_data_mut(index) else {
        return;
    };
    if slot.saved {
        return;
    }
    slot.saved = true;
    let key = slot.key.clone();
    store().save(&key, session);
}
