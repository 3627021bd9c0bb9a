//! The state store: one SQLite database (`state.db`, WAL mode) holding
//! which messages each account has delivered, which were too large, and a
//! log of runs. The schema is an append-only list of migrations applied
//! in one exclusive transaction, keyed on `PRAGMA user_version`.
//!
//! Commits use `synchronous = FULL`: a message marked seen stays seen
//! through a power cut, because the server may delete it right after.

use std::collections::{HashMap, HashSet};
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub mod commit;
pub mod dedup;
pub mod shards;
pub mod spool;

use crate::error::{Error, Result};
use crate::source::{FolderState, FolderUpdate, RemoteMessage, SeenFingerprint, SeenIndex};

/// Schema changes, oldest first. Never edit one that has shipped; append.
const MIGRATIONS: &[&str] = &[
    // 1: seen messages, oversized notices, run log.
    "CREATE TABLE seen (
        account     TEXT NOT NULL,
        folder      TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL DEFAULT 0,
        uid         TEXT NOT NULL,
        size        INTEGER NOT NULL,
        message_id  TEXT,
        seen_at     INTEGER NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid)
     ) WITHOUT ROWID;
     CREATE TABLE oversized (
        account     TEXT NOT NULL,
        folder      TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL DEFAULT 0,
        uid         TEXT NOT NULL,
        size        INTEGER NOT NULL,
        reported_at INTEGER NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid)
     ) WITHOUT ROWID;
     CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        account     TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        exit_code   INTEGER NOT NULL,
        messages    INTEGER NOT NULL,
        bytes       INTEGER NOT NULL,
        error       TEXT
     );
     CREATE INDEX runs_by_account ON runs (account, started_at);",
    // 2: IMAP. Per folder, the UIDVALIDITY and the UID up to which
    // everything was dealt with, so a run asks only about higher UIDs; and
    // a hash of each delivered message's header, so a UIDVALIDITY change
    // can be survived by re-matching instead of re-delivering.
    "CREATE TABLE imap_folders (
        account     TEXT NOT NULL,
        folder      TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        last_uid    INTEGER NOT NULL,
        PRIMARY KEY (account, folder)
     ) WITHOUT ROWID;
     ALTER TABLE seen ADD COLUMN header_hash TEXT;",
    // 3: the retry spool (see `crate::store::spool`); delivery intents, which
    // let a run after a crash recognise a Maildir or directory delivery
    // that happened before its seen-commit; and messages a destination
    // refused for good that stay on the server (never downloaded again).
    "CREATE TABLE spool (
        id           INTEGER PRIMARY KEY,
        account      TEXT NOT NULL,
        folder       TEXT NOT NULL,
        uid          TEXT,
        destination  TEXT NOT NULL,
        sender       TEXT,
        recipients   TEXT NOT NULL,
        message_id   TEXT,
        size         INTEGER NOT NULL,
        message      BLOB NOT NULL,
        created_at   INTEGER NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error   TEXT,
        expired      INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX spool_due ON spool (account, next_attempt);
     CREATE TABLE spool_history (
        spool_id INTEGER NOT NULL,
        at       INTEGER NOT NULL,
        event    TEXT NOT NULL
     );
     CREATE INDEX spool_history_by_id ON spool_history (spool_id);
     CREATE TABLE delivery_intents (
        account     TEXT NOT NULL,
        folder      TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid         TEXT NOT NULL,
        destination TEXT NOT NULL,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid, destination)
     ) WITHOUT ROWID;
     CREATE TABLE refused (
        account     TEXT NOT NULL,
        folder      TEXT NOT NULL,
        uidvalidity INTEGER NOT NULL,
        uid         TEXT NOT NULL,
        refused_at  INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        PRIMARY KEY (account, folder, uidvalidity, uid)
     ) WITHOUT ROWID;",
    // 4: which mailbox (user@host) each account's seen-state belongs to,
    // so pointing an account at another mailbox cannot make mailretr take
    // that mailbox's messages for ones it already delivered.
    "CREATE TABLE account_identity (
        account  TEXT PRIMARY KEY,
        identity TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 5: refusals say what kind they are (a refusal by a destination, or
    // a suspected mail loop) and under which delivery config they were
    // made: a record from another config (or from before this migration,
    // when local faults were recorded as refusals too) no longer keeps a
    // message from being tried again.
    "ALTER TABLE refused ADD COLUMN kind TEXT NOT NULL DEFAULT 'refused';
     ALTER TABLE refused ADD COLUMN config TEXT;",
    // 6: the run log counts messages spooled apart from those delivered
    // (runs before it counted them as delivered).
    "ALTER TABLE runs ADD COLUMN spooled INTEGER NOT NULL DEFAULT 0;",
    // 7: a spooled message remembers where in the source's tree it came
    // from (its levels relative to the personal namespace, a JSON array)
    // and its flags at download (Maildir info letters), so a retry lands
    // in the same subfolder with the same flags. Entries from before
    // have neither: the root, no flags (as they were delivered then).
    "ALTER TABLE spool ADD COLUMN mailbox TEXT;
     ALTER TABLE spool ADD COLUMN flags TEXT;",
    // 8: the IMAP QUOTA (RFC 9208) of each account's INBOX quota root as
    // the last run read it (STORAGE in KiB, MESSAGE in messages; a
    // resource the server does not report is NULL), for `status`. The
    // time a message was delivered, which `delete_after` goes by, is
    // `seen.seen_at` (since migration 1).
    "CREATE TABLE quota (
        account        TEXT PRIMARY KEY,
        root           TEXT NOT NULL,
        storage_used   INTEGER,
        storage_limit  INTEGER,
        messages_used  INTEGER,
        messages_limit INTEGER,
        checked_at     INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 9: `dedup`: the Message-IDs (normalised) delivered to each
    // recipient of an account, written in the commit that marks the
    // delivery seen, so `dedup = "30d"` suppresses later copies.
    "CREATE TABLE dedup (
        account      TEXT NOT NULL,
        recipient    TEXT NOT NULL,
        message_id   TEXT NOT NULL,
        delivered_at INTEGER NOT NULL,
        PRIMARY KEY (account, recipient, message_id)
    );",
    // 10: built-in OAuth2 (`crate::oauth::store`): per account (or
    // destination) the refresh token `mailretr auth login` obtained and
    // the cached access token with its expiry. A rotated refresh token
    // replaces the old one in the same commit that caches the new access
    // token, before that token is used.
    "CREATE TABLE oauth_tokens (
        name             TEXT PRIMARY KEY,
        grant_type       TEXT NOT NULL,
        client_id        TEXT NOT NULL DEFAULT '',
        token_url        TEXT NOT NULL DEFAULT '',
        refresh_token    TEXT,
        access_token     TEXT,
        access_expires   INTEGER,
        access_lifetime  INTEGER,
        obtained_at      INTEGER NOT NULL,
        refreshed_at     INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 11: `[[accounts_from]] cache = true`: the last rows a backend
    // returned (JSON), used when it is down. They hold what the rows
    // hold, account passwords included, so state.db stays 0600.
    "CREATE TABLE backend_cache (
        backend    TEXT PRIMARY KEY,
        rows       TEXT NOT NULL,
        fetched_at INTEGER NOT NULL
    );",
    // 12: shards (see `crate::store::shards`): each shard spec this
    // state has run under, in order (`id` grows with each change), and
    // the spec under which each account last ran here, so an account
    // that moved here from another shard is recognised; and per-account
    // counters that only grow (runs, failures, messages, bytes, spooled,
    // the last successful run), for the metrics file.
    "CREATE TABLE shard_specs (
        id          INTEGER PRIMARY KEY,
        shard_index INTEGER NOT NULL,
        shard_count INTEGER NOT NULL,
        first_used  INTEGER NOT NULL
     );
     CREATE TABLE shard_members (
        account TEXT PRIMARY KEY,
        spec_id INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE account_counters (
        account         TEXT PRIMARY KEY,
        runs            INTEGER NOT NULL DEFAULT 0,
        failures        INTEGER NOT NULL DEFAULT 0,
        messages        INTEGER NOT NULL DEFAULT 0,
        bytes           INTEGER NOT NULL DEFAULT 0,
        spooled         INTEGER NOT NULL DEFAULT 0,
        last_success_at INTEGER
     ) WITHOUT ROWID;",
    // 13: TLS session resumption across runs (see `crate::net::session`):
    // the last session each server issued, keyed on host, port and the
    // trust settings it was verified under, in OpenSSL's DER encoding.
    "CREATE TABLE tls_sessions (
        server   TEXT PRIMARY KEY,
        session  BLOB NOT NULL,
        saved_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // 14: POP3 `[LOGIN-DELAY]` (RFC 2449): per account, the server's
    // name and the time before which it is not connected to again (see
    // `State::set_login_delay`).
    "CREATE TABLE login_delay (
        account    TEXT PRIMARY KEY,
        host       TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        reason     TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 15: how many handshakes in a row offered a server's stored TLS
    // session and were not resumed (see `crate::net::session`): after a
    // few, none is offered or kept for a while.
    "ALTER TABLE tls_sessions ADD COLUMN misses INTEGER NOT NULL DEFAULT 0;",
    // 16: what each POP3 server (host, port, TLS mode) answered CAPA in
    // the last session that logged in (see `source::pop3::known`), so the
    // next one can send CAPA and AUTH PLAIN in one round trip.
    "CREATE TABLE pop3_capabilities (
        server   TEXT PRIMARY KEY,
        capa     TEXT NOT NULL,
        saved_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
];

/// An IMAP quota root's usage, as `GETQUOTAROOT INBOX` reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Quota {
    /// The quota root's name.
    pub root: String,
    /// STORAGE used and its limit, in KiB (1024 octets), if reported.
    pub storage: Option<(u64, u64)>,
    /// MESSAGE count and its limit, if reported.
    pub messages: Option<(u64, u64)>,
}

impl Quota {
    /// The fullest resource, in percent of its limit (a limit of 0 is
    /// full); `None` when no resource was reported.
    pub fn percent(&self) -> Option<u64> {
        [self.storage, self.messages]
            .into_iter()
            .flatten()
            .map(|(used, limit)| match limit {
                0 => 100,
                _ => used.saturating_mul(100) / limit,
            })
            .max()
    }
}

/// Totals over the runs of an account the log keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunTotals {
    /// Runs recorded.
    pub runs: u64,
    /// Messages delivered in them.
    pub messages: u64,
    /// Bytes delivered in them.
    pub bytes: u64,
    /// Runs that ended in an error.
    pub failures: u64,
}

fn run_from_row(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        account: r.get(0)?,
        started_at: r.get(1)?,
        duration: Duration::from_millis(r.get::<_, i64>(2)? as u64),
        exit_code: r.get(3)?,
        messages: r.get::<_, i64>(4)? as u64,
        bytes: r.get::<_, i64>(5)? as u64,
        error: r.get(6)?,
        spooled: r.get::<_, i64>(7)? as u64,
    })
}

/// How many runs per account the run log keeps.
pub const RUNS_KEPT: i64 = 100;

/// An open state database.
pub struct State {
    pub(crate) conn: Connection,
    path: PathBuf,
}

/// A connection to a state a `Shared` gave back, for the next
/// `State::shared` of the same state in this process.
static SPARE: std::sync::Mutex<Option<State>> = std::sync::Mutex::new(None);

/// A `State` that goes back to the process's spare when dropped, for the
/// next `State::shared` to use instead of opening state.db again (each
/// new connection reads the schema and maps the WAL index anew; a run's
/// set-up, its outgoing flush and its accounts one after another share
/// one). No transaction is open on a connection given back (`rusqlite`
/// rolls back any it drops).
pub struct Shared(Option<State>);

impl std::ops::Deref for Shared {
    type Target = State;
    fn deref(&self) -> &State {
        self.0
            .as_ref()
            .expect("a Shared holds its state until dropped")
    }
}

impl std::ops::DerefMut for Shared {
    fn deref_mut(&mut self) -> &mut State {
        self.0
            .as_mut()
            .expect("a Shared holds its state until dropped")
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(state) = self.0.take() else { return };
        // Only a connection that syncs its commits (see `State::unsynced`).
        let full = state
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|mode| mode == 2);
        if full {
            let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
            *spare = Some(state);
        }
    }
}

/// One row of the run log.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The account.
    pub account: String,
    /// Unix time the run started.
    pub started_at: i64,
    /// How long it took.
    pub duration: Duration,
    /// The account's exit code.
    pub exit_code: i32,
    /// Messages delivered (every destination has them).
    pub messages: u64,
    /// Bytes of the messages retrieved (delivered, spooled, or refused
    /// and deleted).
    pub bytes: u64,
    /// Messages put in the retry spool (some destination owes them).
    pub spooled: u64,
    /// The error, if the run failed.
    pub error: Option<String>,
}

/// How long opening the database waits for other processes.
const OPEN_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why opening the database failed: SQLite's own error (whose code
/// tells busy from damaged from the rest), or a schema from the future.
enum SetupError {
    Sqlite(rusqlite::Error),
    Newer(String),
}

impl From<rusqlite::Error> for SetupError {
    fn from(e: rusqlite::Error) -> SetupError {
        SetupError::Sqlite(e)
    }
}

pub(crate) fn wrap(path: &Path, e: rusqlite::Error) -> Error {
    Error::State {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Marks one message seen inside `tx` (see `State::mark_seen`).
pub(crate) fn record_seen(
    tx: &rusqlite::Transaction,
    account: &str,
    message: &RemoteMessage,
    message_id: Option<&str>,
    header_hash: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    let Some(uid) = &message.uid else {
        return Ok(());
    };
    let uidvalidity = message.uidvalidity.unwrap_or(0);
    tx.prepare_cached(
        "INSERT OR REPLACE INTO seen
         (account, folder, uidvalidity, uid, size, message_id, seen_at, header_hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        account,
        message.folder,
        uidvalidity,
        uid,
        message.size as i64,
        message_id,
        now,
        header_hash
    ])?;
    // The folder's last_uid is not moved here: messages are not always
    // committed in UID order (a server may answer pipelined fetches out
    // of order, a message may be deferred before download), so only the
    // next scan, which sees the whole listing, moves it past the UIDs
    // that are all dealt with.
    if let Some(v) = message.uidvalidity {
        tx.prepare_cached(
            "DELETE FROM oversized
             WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
        )?
        .execute(params![account, message.folder, v, uid])?;
    }
    Ok(())
}

/// A row of `tls_sessions` (`State::tls_sessions_under`): the server's
/// key, the session (DER; empty: the mark of a server given up on), when
/// it was saved, and the count of handshakes in a row not resumed.
pub type StoredTlsSession = (String, Vec<u8>, i64, i64);

/// The file beside state.db that says a `[LOGIN-DELAY]` is recorded
/// (`State::login_delay_recorded`).
const LOGIN_DELAY_MARKER: &str = "login-delay";

/// Pages of WAL after which a commit copies them into state.db (SQLite's
/// automatic checkpoint; its default is 1000), within a run that writes
/// many (a full fetch). Such a checkpoint lets the next commit of the
/// same process start the WAL over; across processes it does not (see
/// `WAL_LEFT_AT_MOST`).
const WAL_AUTOCHECKPOINT: u32 = 256;

/// The most WAL (in bytes: 128 pages of 4 KiB with their frame headers,
/// after the file's own) that a run lets grow across runs: the run log's
/// commit, at the end of an account's run, finds a longer one, copies it
/// into state.db first, and that commit starts the WAL over
/// (`State::record_run`); SQLite cuts the file back to this size then
/// (`journal_size_limit`).
///
/// The first connection of a process reads the whole WAL through on
/// opening, and SQLite's record of what an earlier process had already
/// copied into state.db is lost with it: a process that finds N pages of
/// WAL cannot start it over unless it copies them itself. Left to the
/// automatic checkpoint alone, the WAL grew by the few pages of each run
/// with no new mail, and once past `WAL_AUTOCHECKPOINT` every run copied
/// it all into state.db again (three fsyncs) and still left it to grow,
/// without bound. A run with no new mail writes three pages: about one
/// in forty pays the checkpoint.
const WAL_LEFT_AT_MOST: u64 = 32 + 128 * WAL_FRAME;

/// One page of WAL in bytes: SQLite's default page size (state.db keeps
/// it) and the frame's header.
const WAL_FRAME: u64 = 4096 + 24;

/// The WAL outlives the connections (state.db and state.db-wal are the
/// state together, as with any SQLite database in WAL mode): closing the
/// last connection does not checkpoint. Otherwise every run, with or
/// without mail, paid a checkpoint (three fsyncs) when its first
/// connection closed, before it connected to any server; the automatic
/// checkpoint (`WAL_AUTOCHECKPOINT`) moves the pages into state.db
/// instead, on a commit that has written enough of them. Every
/// connection to state.db is set up so (`net::session`'s too).
pub(crate) fn wal_between_runs(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
    conn.pragma_update(None, "journal_size_limit", WAL_LEFT_AT_MOST)?;
    Ok(())
}

impl State {
    /// Opens (creating if needed) `state.db` in `dir` and brings its schema
    /// up to date.
    pub fn open(dir: &Path) -> Result<State> {
        let path = dir.join("state.db");
        let err = |message: String| Error::State {
            path: path.display().to_string(),
            message,
        };
        let existed = path.exists();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
        if let Ok(meta) = std::fs::metadata(dir) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                log::warn!(
                    "{} is accessible by others (mode {:03o}); it holds spooled mail: chmod 700 {}",
                    dir.display(),
                    meta.permissions().mode() & 0o777,
                    dir.display()
                );
            }
        }
        // Spooled bodies live in it: created 0600 (SQLite gives its WAL
        // and shared-memory files the database's mode).
        if !existed {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path);
        }
        // Switching a new database to WAL and migrating it take locks that
        // SQLite may refuse at once (without waiting in the busy handler)
        // while another process does the same: retry for a while.
        let deadline = std::time::Instant::now() + OPEN_BUSY_TIMEOUT;
        loop {
            let conn = Connection::open(&path).map_err(|e| err(e.to_string()))?;
            let mut state = State {
                conn,
                path: path.clone(),
            };
            let failed = match state.setup() {
                Ok(()) => return Ok(state),
                Err(SetupError::Newer(message)) => return Err(err(message)),
                Err(SetupError::Sqlite(e)) => e,
            };
            let code = failed.sqlite_error_code();
            let message = failed.to_string();
            match code {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    return Err(err(format!(
                        "{message}: another process kept it busy for {}s",
                        OPEN_BUSY_TIMEOUT.as_secs()
                    )))
                }
                // Only a damaged file gets the advice to move it aside
                // (never a full disk or a permission: following it then
                // would only lose the spool).
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                    return Err(err(format!(
                        "{message} (the file is damaged; moving it aside, with its state.db-wal and state.db-shm, makes mailretr fetch everything again \
                         and loses the retry spool it holds: `mailretr queue list` shows what is in it)"
                    )))
                }
                _ => return Err(err(message)),
            }
        }
    }

    /// `open`, or the connection to the same state a `Shared` gave back
    /// (see `Shared`).
    pub fn shared(dir: &Path) -> Result<Shared> {
        let path = dir.join("state.db");
        let spare = SPARE.lock().unwrap_or_else(|e| e.into_inner()).take();
        match spare {
            Some(state) if state.path == path => Ok(Shared(Some(state))),
            _ => Ok(Shared(Some(State::open(dir)?))),
        }
    }

    /// The stored TLS sessions whose server key starts with `prefix`
    /// (see `net::session`): key, session, when saved, and how many
    /// handshakes in a row it or its predecessors were offered in and
    /// not resumed.
    pub fn tls_sessions_under(&self, prefix: &str) -> Result<Vec<StoredTlsSession>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT server, session, saved_at, misses FROM tls_sessions
                 WHERE substr(server, 1, length(?1)) = ?1",
            )
            .map_err(|e| wrap(&self.path, e))?;
        let rows = stmt
            .query_map([prefix], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(|e| wrap(&self.path, e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| wrap(&self.path, e))
    }

    /// Stores TLS sessions (key, session, misses; see
    /// `tls_sessions_under`) saved at `now`, in one transaction that is
    /// not synced on its own (`synchronous = NORMAL` for it): the next
    /// synced commit, or none, takes it to disk (a lost session costs a
    /// full handshake).
    pub fn put_tls_sessions(&mut self, rows: &[(String, Vec<u8>, i64)], now: i64) -> Result<()> {
        self.unsynced(|tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO tls_sessions (server, session, saved_at, misses)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (key, der, misses) in rows {
                stmt.execute(params![key, der, now, misses])?;
            }
            Ok(())
        })
    }

    /// What a POP3 server answered CAPA in the last session that logged
    /// in (`source::pop3::known`), if stored.
    pub fn pop3_capabilities(&self, server: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT capa FROM pop3_capabilities WHERE server = ?1")
            .and_then(|mut stmt| stmt.query_row([server], |r| r.get(0)).optional())
            .map_err(|e| wrap(&self.path, e))
    }

    /// Stores (`Some`) or forgets (`None`) servers' CAPA answers (see
    /// `pop3_capabilities`), unsynced like the TLS sessions: one lost
    /// costs one round trip on the next run.
    pub fn put_pop3_capabilities(
        &mut self,
        rows: &[(String, Option<String>)],
        now: i64,
    ) -> Result<()> {
        self.unsynced(|tx| {
            for (server, capa) in rows {
                match capa {
                    Some(capa) => tx
                        .prepare_cached(
                            "INSERT OR REPLACE INTO pop3_capabilities (server, capa, saved_at)
                             VALUES (?1, ?2, ?3)",
                        )?
                        .execute(params![server, capa, now])?,
                    None => tx
                        .prepare_cached("DELETE FROM pop3_capabilities WHERE server = ?1")?
                        .execute([server])?,
                };
            }
            Ok(())
        })
    }

    /// Runs `write` in one transaction whose commit is not synced
    /// (`synchronous = NORMAL` for it, in WAL mode: on disk with the next
    /// synced commit or checkpoint; a power cut before may lose it, a
    /// crash of the process does not). For what costs nothing to lose,
    /// so that a run with no new mail makes no fsync: the run log, TLS
    /// sessions. Never for what a server's deletion depends on.
    fn unsynced(
        &mut self,
        write: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<()> {
        let path = self.path.clone();
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| wrap(&path, e))?;
        let written = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            write(&tx)?;
            tx.commit()
        })();
        let restored = self.conn.pragma_update(None, "synchronous", "FULL");
        written.and(restored).map_err(|e| wrap(&path, e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Warns when `state.db` is missing but `locks/` exists beside it: the
    /// state was lost or moved (every message on the servers now counts as
    /// new, and the retry spool is gone). Call before any lock is taken.
    pub fn warn_if_lost(dir: &Path) {
        let path = dir.join("state.db");
        if !path.exists() && dir.join("locks").is_dir() {
            log::warn!(
                "{} is missing but {} exists: the state was lost or moved, so every message on the servers counts as new (and the retry spool is gone)",
                path.display(),
                dir.join("locks").display()
            );
        }
    }

    /// Opens an in-memory database (tests).
    pub fn in_memory() -> Result<State> {
        let mut state = State {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
        };
        match state.setup() {
            Ok(()) => Ok(state),
            Err(SetupError::Sqlite(e)) => Err(e.into()),
            Err(SetupError::Newer(message)) => Err(Error::State {
                path: ":memory:".into(),
                message,
            }),
        }
    }

    fn setup(&mut self) -> std::result::Result<(), SetupError> {
        self.conn.busy_timeout(Duration::from_secs(30))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") && self.path != Path::new(":memory:") {
            log::debug!("state database journal mode is {mode}, not WAL");
        }
        self.conn
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        wal_between_runs(&self.conn)?;
        self.migrate()
    }

    fn migrate(&mut self) -> std::result::Result<(), SetupError> {
        // Up to date (every run but the first after an upgrade): a read,
        // not an exclusive transaction, so opening the state writes (and
        // syncs) nothing.
        let current: usize = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if current == MIGRATIONS.len() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > MIGRATIONS.len() {
            return Err(SetupError::Newer(format!(
                "schema version {version} is newer than this mailretr knows ({}); upgrade mailretr",
                MIGRATIONS.len()
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The stable ids delivered for an account's folder.
    pub fn seen_uids(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
    ) -> Result<HashSet<String>> {
        self.uids_in("seen", account, folder, uidvalidity)
    }

    /// The `uid` column of `table` for an account's folder.
    fn uids_in<C: FromIterator<String>>(
        &self,
        table: &str,
        account: &str,
        folder: &str,
        uidvalidity: u32,
    ) -> Result<C> {
        let sql = format!(
            "SELECT uid FROM {table} WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| wrap(&self.path, e))?;
        let rows = stmt
            .query_map(params![account, folder, uidvalidity], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| wrap(&self.path, e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| wrap(&self.path, e))
    }

    /// Records that a message was delivered (or spooled). This commit is
    /// what allows the server copy to be deleted.
    pub fn mark_seen(
        &mut self,
        account: &str,
        message: &RemoteMessage,
        message_id: Option<&str>,
        header_hash: Option<&str>,
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        record_seen(&tx, account, message, message_id, header_hash, now_unix())
            .map_err(|e| wrap(&path, e))?;
        tx.commit().map_err(|e| wrap(&path, e))?;
        Ok(())
    }

    /// Binds an account's seen-state to the mailbox it describes
    /// (`user@host`). If the account now names another mailbox, the old
    /// seen-state is dropped (ids from one mailbox mean nothing in
    /// another: keeping them could delete undelivered mail) and the old
    /// identity is returned so the caller can say so. The spool is kept.
    pub fn bind_identity(&mut self, account: &str, identity: &str) -> Result<Option<String>> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        let old: Option<String> = tx
            .query_row(
                "SELECT identity FROM account_identity WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| wrap(&path, e))?;
        let changed = old.as_deref().is_some_and(|o| o != identity);
        if changed {
            for table in [
                "seen",
                "imap_folders",
                "oversized",
                "refused",
                "delivery_intents",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE account = ?1"),
                    params![account],
                )
                .map_err(|e| wrap(&path, e))?;
            }
        }
        if changed || old.is_none() {
            tx.execute(
                "INSERT OR REPLACE INTO account_identity (account, identity) VALUES (?1, ?2)",
                params![account, identity],
            )
            .map_err(|e| wrap(&path, e))?;
        }
        tx.commit().map_err(|e| wrap(&path, e))?;
        Ok(if changed { old } else { None })
    }

    /// Forgets seen ids that are no longer on the server, so the table does
    /// not grow for ever. `present` must be the complete listing.
    ///
    /// `known`, when given, is what the scan read of the folder's seen ids
    /// (`StateSeenIndex::into_read`), taken for the table instead of
    /// reading it again: what this run recorded since is on the server
    /// (it was listed), and the account's lock kept anyone else from
    /// recording more.
    pub fn forget_absent(
        &mut self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
        present: &[String],
        known: Option<&HashMap<String, u64>>,
    ) -> Result<usize> {
        let present: HashSet<&str> = present.iter().map(String::as_str).collect();
        let read;
        let seen: Box<dyn Iterator<Item = &String>> = match known {
            Some(known) => Box::new(known.keys()),
            None => {
                read = self.seen_uids(account, folder, uidvalidity)?;
                Box::new(read.iter())
            }
        };
        let gone: Vec<String> = seen
            .filter(|u| !present.contains(u.as_str()))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(0);
        }
        self.delete_seen(
            account,
            gone.iter().map(|uid| (folder, uidvalidity, uid.as_str())),
        )?;
        Ok(gone.len())
    }

    /// Deletes seen records by (folder, uidvalidity, uid), in one
    /// transaction.
    fn delete_seen<'k>(
        &mut self,
        account: &str,
        keys: impl Iterator<Item = (&'k str, u32, &'k str)>,
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "DELETE FROM seen WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
                )
                .map_err(|e| wrap(&path, e))?;
            for (folder, uidvalidity, uid) in keys {
                stmt.execute(params![account, folder, uidvalidity, uid])
                    .map_err(|e| wrap(&path, e))?;
            }
        }
        tx.commit().map_err(|e| wrap(&path, e))
    }

    /// Notes that a message is over `max_size`. Returns true the first time,
    /// so the user is told once rather than on every run.
    pub fn note_oversized(&mut self, account: &str, message: &RemoteMessage) -> Result<bool> {
        let Some(uid) = &message.uid else {
            return Ok(true);
        };
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO oversized (account, folder, uidvalidity, uid, size, reported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    account,
                    message.folder,
                    message.uidvalidity.unwrap_or(0),
                    uid,
                    message.size as i64,
                    now_unix()
                ],
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(n == 1)
    }

    /// Keeps the rows a backend returned (JSON, see `crate::backends`), in
    /// place of those of its previous good query.
    pub fn put_backend_rows(&mut self, backend: &str, rows: &str, fetched_at: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO backend_cache (backend, rows, fetched_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (backend) DO UPDATE SET rows = excluded.rows,
                                                     fetched_at = excluded.fetched_at",
                params![backend, rows, fetched_at],
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(())
    }

    /// The rows a backend returned at its last good query, and when.
    pub fn backend_rows(&self, backend: &str) -> Result<Option<(String, i64)>> {
        self.conn
            .query_row(
                "SELECT rows, fetched_at FROM backend_cache WHERE backend = ?1",
                params![backend],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))
    }

    /// Appends to the run log, keeping the last `RUNS_KEPT` per account.
    /// A WAL longer than `WAL_LEFT_AT_MOST` is checkpointed first, so that
    /// this commit starts it over.
    pub fn record_run(&mut self, run: &RunRecord) -> Result<()> {
        self.checkpoint_long_wal();
        self.unsynced(|tx| record_run_in(tx, run))
    }

    /// Copies a WAL longer than `WAL_LEFT_AT_MOST` into state.db (a
    /// PASSIVE checkpoint: it waits for no other connection, and one
    /// reading keeps the WAL for a later run). A checkpoint that fails
    /// loses nothing: the pages stay in the WAL.
    fn checkpoint_long_wal(&self) {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        if std::fs::metadata(&wal).map_or(true, |m| m.len() <= WAL_LEFT_AT_MOST) {
            return;
        }
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
        match done {
            Ok((_, log, copied)) if copied == log => {
                log::debug!("{}: WAL of {log} pages checkpointed", self.path.display())
            }
            Ok((_, log, copied)) => log::debug!(
                "{}: WAL checkpoint found readers ({copied} of {log} pages copied); the rest waits",
                self.path.display()
            ),
            Err(e) => log::debug!("{}: WAL checkpoint: {e}", self.path.display()),
        }
    }
}

/// `State::record_run`'s writes.
fn record_run_in(tx: &rusqlite::Transaction, run: &RunRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO runs (account, started_at, duration_ms, exit_code, messages, bytes, error,
                               spooled)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            run.account,
            run.started_at,
            run.duration.as_millis() as i64,
            run.exit_code,
            run.messages as i64,
            run.bytes as i64,
            run.error,
            run.spooled as i64
        ],
    )?;
    let succeeded = matches!(run.exit_code, 0 | 1 | 13);
    tx.execute(
        "INSERT INTO account_counters
               (account, runs, failures, messages, bytes, spooled, last_success_at)
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (account) DO UPDATE SET
               runs = runs + 1,
               failures = failures + excluded.failures,
               messages = messages + excluded.messages,
               bytes = bytes + excluded.bytes,
               spooled = spooled + excluded.spooled,
               last_success_at = coalesce(excluded.last_success_at, last_success_at)",
        params![
            run.account,
            i64::from(!succeeded),
            run.messages as i64,
            run.bytes as i64,
            run.spooled as i64,
            succeeded.then_some(run.started_at + run.duration.as_secs() as i64)
        ],
    )?;
    tx.execute(
        "DELETE FROM runs WHERE account = ?1 AND id NOT IN
             (SELECT id FROM runs WHERE account = ?1 ORDER BY id DESC LIMIT ?2)",
        params![run.account, RUNS_KEPT],
    )?;
    Ok(())
}

impl State {
    /// The most recent run of an account.
    pub fn last_run(&self, account: &str) -> Result<Option<RunRecord>> {
        self.conn
            .query_row(
                "SELECT account, started_at, duration_ms, exit_code, messages, bytes, error, spooled
                 FROM runs WHERE account = ?1 ORDER BY id DESC LIMIT 1",
                params![account],
                run_from_row,
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))
    }

    /// The most recent run of an account that ended in an error (exit
    /// code other than 0, 1 and 13), among the runs the log keeps.
    pub fn last_failed_run(&self, account: &str) -> Result<Option<RunRecord>> {
        self.conn
            .query_row(
                "SELECT account, started_at, duration_ms, exit_code, messages, bytes, error, spooled
                 FROM runs WHERE account = ?1 AND exit_code NOT IN (0, 1, 13)
                 ORDER BY id DESC LIMIT 1",
                params![account],
                run_from_row,
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))
    }

    /// Totals over the runs the log keeps for an account.
    pub fn run_totals(&self, account: &str) -> Result<RunTotals> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(messages), 0), coalesce(sum(bytes), 0),
                        coalesce(sum(exit_code NOT IN (0, 1, 13)), 0)
                 FROM runs WHERE account = ?1",
                params![account],
                |r| {
                    Ok(RunTotals {
                        runs: r.get::<_, i64>(0)? as u64,
                        messages: r.get::<_, i64>(1)? as u64,
                        bytes: r.get::<_, i64>(2)? as u64,
                        failures: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .map_err(|e| wrap(&self.path, e))
    }

    /// Every account with runs in the log, by name.
    pub fn run_accounts(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT account FROM runs ORDER BY account")
            .map_err(|e| wrap(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| wrap(&self.path, e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| wrap(&self.path, e))
    }

    /// A `SeenIndex` over this store for one account, caching each folder's
    /// ids on first use. `fingerprint` is the account's delivery-config
    /// digest: refusals recorded under another one are looked at again.
    pub fn seen_index<'a>(
        &'a mut self,
        account: &'a str,
        fingerprint: &'a str,
    ) -> StateSeenIndex<'a> {
        StateSeenIndex {
            state: self,
            account,
            fingerprint,
            cache: HashMap::new(),
            totals: HashMap::new(),
        }
    }

    /// The sizes recorded for the ids delivered from an account's folder.
    pub fn seen_sizes(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
    ) -> Result<HashMap<String, u64>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT uid, size FROM seen WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3",
            )
            .map_err(|e| wrap(&self.path, e))?;
        let rows = stmt
            .query_map(params![account, folder, uidvalidity], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| wrap(&self.path, e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| wrap(&self.path, e))
    }

    /// How many ids are recorded as delivered from an account's folder,
    /// their recorded octets, and whether every one has a recorded size:
    /// what the POP3 keep-mode STAT shortcut compares STAT with. One
    /// aggregate query; nothing is read into memory (the whole listing,
    /// `seen_sizes`, is read only when the shortcut does not hold).
    pub fn seen_totals(&self, account: &str, folder: &str, uidvalidity: u32) -> Result<SeenTotals> {
        self.conn
            .prepare_cached(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(min(size), 1) FROM seen
                 WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![account, folder, uidvalidity], |r| {
                    Ok(SeenTotals {
                        count: r.get::<_, i64>(0)? as u64,
                        octets: r.get::<_, i64>(1)? as u64,
                        all_sized: r.get::<_, i64>(2)? > 0,
                    })
                })
            })
            .map_err(|e| wrap(&self.path, e))
    }

    /// When a message was recorded as delivered (the commit's time) and
    /// the size recorded with it; `None` when the state does not say it
    /// was delivered. `delete_after` and `delete_bigger_than` go by this
    /// only.
    pub fn delivered_record(
        &self,
        account: &str,
        message: &RemoteMessage,
    ) -> Result<Option<crate::retention::Delivered>> {
        let Some(uid) = &message.uid else {
            return Ok(None);
        };
        self.seen_record(
            account,
            &message.folder,
            message.uidvalidity.unwrap_or(0),
            uid,
        )
    }

    /// The record of one id delivered from an account's folder (when,
    /// and its size), if there is one: a point query (`seen_sizes` reads
    /// every id).
    pub(crate) fn seen_record(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
        uid: &str,
    ) -> Result<Option<crate::retention::Delivered>> {
        self.conn
            .prepare_cached(
                "SELECT seen_at, size FROM seen
                 WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
            )
            .and_then(|mut s| {
                s.query_row(params![account, folder, uidvalidity, uid], |r| {
                    Ok(crate::retention::Delivered {
                        at: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                    })
                })
                .optional()
            })
            .map_err(|e| wrap(&self.path, e))
    }

    /// Records an account's quota as read now (replacing the last one).
    pub fn set_quota(&mut self, account: &str, quota: &Quota, now: i64) -> Result<()> {
        let n = |v: Option<u64>| v.map(|v| v as i64);
        self.conn
            .execute(
                "INSERT OR REPLACE INTO quota
                 (account, root, storage_used, storage_limit, messages_used, messages_limit, checked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    account,
                    quota.root,
                    n(quota.storage.map(|s| s.0)),
                    n(quota.storage.map(|s| s.1)),
                    n(quota.messages.map(|s| s.0)),
                    n(quota.messages.map(|s| s.1)),
                    now
                ],
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(())
    }

    /// POP3 `[LOGIN-DELAY]`: the account's server (`host`) is not
    /// connected to again before `not_before` (Unix time); `reason` is
    /// what the server said.
    pub fn set_login_delay(
        &mut self,
        account: &str,
        host: &str,
        not_before: i64,
        reason: &str,
    ) -> Result<()> {
        // The marker first: whenever a delay is recorded, it is there.
        if let Some(marker) = self.login_delay_marker() {
            if let Err(e) = std::fs::write(&marker, b"") {
                log::debug!("cannot create {}: {e}", marker.display());
            }
        }
        self.conn
            .execute(
                "INSERT OR REPLACE INTO login_delay (account, host, not_before, reason)
                 VALUES (?1, ?2, ?3, ?4)",
                params![account, host, not_before, reason],
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(())
    }

    /// The account's recorded `[LOGIN-DELAY]` as (host, not before,
    /// reason), if one is recorded (it may be over: compare with now).
    pub fn login_delay(&self, account: &str) -> Result<Option<(String, i64, String)>> {
        self.conn
            .query_row(
                "SELECT host, not_before, reason FROM login_delay WHERE account = ?1",
                params![account],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))
    }

    /// Forgets the account's `[LOGIN-DELAY]` (it is over and the server
    /// took a login).
    pub fn clear_login_delay(&mut self, account: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM login_delay WHERE account = ?1",
                params![account],
            )
            .map_err(|e| wrap(&self.path, e))?;
        let left: i64 = self
            .conn
            .query_row("SELECT count(*) FROM login_delay", [], |r| r.get(0))
            .map_err(|e| wrap(&self.path, e))?;
        if let (0, Some(marker)) = (left, self.login_delay_marker()) {
            let _ = std::fs::remove_file(marker);
        }
        Ok(())
    }

    /// `login-delay` beside state.db: there whenever a `[LOGIN-DELAY]` is
    /// recorded (`login_delay_recorded`). None for a state in memory.
    fn login_delay_marker(&self) -> Option<PathBuf> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty())?;
        Some(dir.join(LOGIN_DELAY_MARKER))
    }

    /// Whether a `[LOGIN-DELAY]` may be recorded in the state in `dir`,
    /// told without opening it (`fetch` asks before it connects to any
    /// server, see `run::start_connecting`): the marker file
    /// `set_login_delay` creates before it records one, and
    /// `clear_login_delay` removes once none is left.
    pub fn login_delay_recorded(dir: &Path) -> bool {
        dir.join(LOGIN_DELAY_MARKER).exists()
    }

    /// An account's last recorded quota and when it was read.
    pub fn quota(&self, account: &str) -> Result<Option<(Quota, i64)>> {
        self.conn
            .query_row(
                "SELECT root, storage_used, storage_limit, messages_used, messages_limit, checked_at
                 FROM quota WHERE account = ?1",
                params![account],
                |r| {
                    let pair = |a: Option<i64>, b: Option<i64>| match (a, b) {
                        (Some(a), Some(b)) => Some((a as u64, b as u64)),
                        _ => None,
                    };
                    Ok((
                        Quota {
                            root: r.get(0)?,
                            storage: pair(r.get(1)?, r.get(2)?),
                            messages: pair(r.get(3)?, r.get(4)?),
                        },
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))
    }

    /// Records what a source learned of its folders (`FolderUpdate`s from
    /// a scan or `settle`), in order.
    pub fn apply_folder_updates(&mut self, account: &str, updates: &[FolderUpdate]) -> Result<()> {
        for u in updates {
            match u {
                FolderUpdate::State { folder, state } => {
                    self.set_folder_state(account, folder, *state)?
                }
                FolderUpdate::Rekey {
                    folder,
                    old_uidvalidity,
                    new_uidvalidity,
                    matches,
                } => self.rekey(account, folder, *old_uidvalidity, *new_uidvalidity, matches)?,
            }
        }
        Ok(())
    }

    /// Forgets that `messages` were delivered: the server confirmed their
    /// deletion (a completed POP3 QUIT), so their ids may come back for
    /// other mail. One transaction.
    pub fn forget_seen(&mut self, account: &str, messages: &[RemoteMessage]) -> Result<()> {
        self.delete_seen(
            account,
            messages.iter().filter_map(|m| {
                let uid = m.uid.as_deref()?;
                Some((m.folder.as_str(), m.uidvalidity.unwrap_or(0), uid))
            }),
        )
    }

    /// UIDs recorded as refused (or as loops) under `fingerprint`
    /// (`current`), or under any other (`!current`).
    fn refused_uids(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
        fingerprint: &str,
        current: bool,
    ) -> Result<Vec<u32>> {
        let sql = if current {
            "SELECT uid FROM refused WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND config = ?4"
        } else {
            "SELECT uid FROM refused WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND config IS NOT ?4"
        };
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| wrap(&self.path, e))?;
        let rows = stmt
            .query_map(params![account, folder, uidvalidity, fingerprint], |r| {
                r.get::<_, String>(0)
            })
            .map_err(|e| wrap(&self.path, e))?;
        let uids: Vec<String> = rows
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| wrap(&self.path, e))?;
        Ok(uids.iter().filter_map(|u| u.parse().ok()).collect())
    }

    /// An IMAP folder's recorded UIDVALIDITY and last UID.
    pub fn folder_state(&self, account: &str, folder: &str) -> Result<Option<FolderState>> {
        self.conn
            .query_row(
                "SELECT uidvalidity, last_uid FROM imap_folders WHERE account = ?1 AND folder = ?2",
                params![account, folder],
                |r| {
                    Ok(FolderState {
                        uidvalidity: r.get(0)?,
                        last_uid: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))
    }

    /// Records an IMAP folder's state; for an unchanged UIDVALIDITY the
    /// last UID only ever grows.
    pub fn set_folder_state(
        &mut self,
        account: &str,
        folder: &str,
        state: FolderState,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO imap_folders (account, folder, uidvalidity, last_uid)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account, folder) DO UPDATE SET
                    last_uid = CASE WHEN uidvalidity = excluded.uidvalidity
                               THEN MAX(last_uid, excluded.last_uid)
                               ELSE excluded.last_uid END,
                    uidvalidity = excluded.uidvalidity",
                params![account, folder, state.uidvalidity, state.last_uid],
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(())
    }

    /// Which of `uids` were delivered from this folder under `uidvalidity`.
    pub fn seen_among(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
        uids: &[u32],
    ) -> Result<HashSet<u32>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM seen
                 WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
            )
            .map_err(|e| wrap(&self.path, e))?;
        let mut found = HashSet::new();
        for &uid in uids {
            let hit = stmt
                .exists(params![account, folder, uidvalidity, uid.to_string()])
                .map_err(|e| wrap(&self.path, e))?;
            if hit {
                found.insert(uid);
            }
        }
        Ok(found)
    }

    /// UIDs noted as over `max_size` in this folder under `uidvalidity`.
    pub fn oversized_uids(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
    ) -> Result<Vec<u32>> {
        let uids: Vec<String> = self.uids_in("oversized", account, folder, uidvalidity)?;
        Ok(uids.iter().filter_map(|u| u.parse().ok()).collect())
    }

    /// What was recorded of the messages delivered from a folder under
    /// `uidvalidity`.
    pub fn seen_fingerprints(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
    ) -> Result<Vec<SeenFingerprint>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT uid, size, message_id, header_hash FROM seen
                 WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3",
            )
            .map_err(|e| wrap(&self.path, e))?;
        let rows = stmt
            .query_map(params![account, folder, uidvalidity], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })
            .map_err(|e| wrap(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (uid, size, message_id, header_hash) = row.map_err(|e| wrap(&self.path, e))?;
            if let Ok(uid) = uid.parse() {
                out.push(SeenFingerprint {
                    uid,
                    size: size as u64,
                    message_id,
                    header_hash,
                });
            }
        }
        Ok(out)
    }

    /// After a UIDVALIDITY change: moves the matched seen records to their
    /// new UIDs under the new UIDVALIDITY, forgets the rest of the old
    /// ones, and restarts the folder's last UID at 0. One transaction.
    pub fn rekey(
        &mut self,
        account: &str,
        folder: &str,
        old_uidvalidity: u32,
        new_uidvalidity: u32,
        matches: &[(u32, u32)],
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "UPDATE OR REPLACE seen SET uidvalidity = ?4, uid = ?6
                     WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?5",
                )
                .map_err(|e| wrap(&path, e))?;
            for (old, new) in matches {
                stmt.execute(params![
                    account,
                    folder,
                    old_uidvalidity,
                    new_uidvalidity,
                    old.to_string(),
                    new.to_string()
                ])
                .map_err(|e| wrap(&path, e))?;
            }
        }
        for table in ["seen", "oversized"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3"
                ),
                params![account, folder, old_uidvalidity],
            )
            .map_err(|e| wrap(&path, e))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO imap_folders (account, folder, uidvalidity, last_uid)
             VALUES (?1, ?2, ?3, 0)",
            params![account, folder, new_uidvalidity],
        )
        .map_err(|e| wrap(&path, e))?;
        tx.commit().map_err(|e| wrap(&path, e))?;
        Ok(())
    }
}

impl StateSeenIndex<'_> {
    /// Takes `sizes` as the seen ids and sizes of `folder`
    /// (`State::seen_sizes`, read a moment before) instead of reading
    /// them on first use.
    pub fn read_already(&mut self, folder: &str, sizes: HashMap<String, u64>) {
        self.cache.insert(folder.to_string(), sizes);
    }

    /// Takes `totals` as the folder's `State::seen_totals`, read a moment
    /// before.
    pub fn totals_already(&mut self, folder: &str, totals: SeenTotals) {
        self.totals.insert(folder.to_string(), totals);
    }

    /// The oversized UIDs of a folder and those refused under the current
    /// delivery config (`current`) or under another one.
    fn oversized_and_refused(
        &self,
        folder: &str,
        uidvalidity: u32,
        current: bool,
    ) -> Result<Vec<u32>> {
        let mut uids = self
            .state
            .oversized_uids(self.account, folder, uidvalidity)?;
        uids.extend(self.state.refused_uids(
            self.account,
            folder,
            uidvalidity,
            self.fingerprint,
            current,
        )?);
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }
}

/// The state store seen through the `SeenIndex` a source consults.
pub struct StateSeenIndex<'a> {
    state: &'a mut State,
    account: &'a str,
    fingerprint: &'a str,
    cache: HashMap<String, HashMap<String, u64>>,
    /// Folders whose totals were read (`State::seen_totals`) instead of
    /// every id: enough for the STAT shortcut.
    totals: HashMap<String, SeenTotals>,
}

/// A folder's seen ids summed up (`State::seen_totals`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenTotals {
    /// How many ids are recorded.
    pub count: u64,
    /// Their recorded sizes added up.
    pub octets: u64,
    /// Every one has a recorded size (none is 0, as rows recorded before
    /// sizes were kept are).
    pub all_sized: bool,
}

impl SeenTotals {
    /// What STAT answers (count, octets) if the folder holds just these
    /// messages; `None` when a recorded size is unknown.
    pub fn as_stat(&self) -> Option<(u64, u64)> {
        self.all_sized.then_some((self.count, self.octets))
    }
}

impl StateSeenIndex<'_> {
    /// The seen ids (and sizes) read for each folder a POP3 scan looked
    /// at, for `State::forget_absent`.
    pub fn into_read(self) -> HashMap<String, HashMap<String, u64>> {
        self.cache
    }

    /// The seen ids of `folder` and their sizes, read once.
    fn sizes(&mut self, folder: &str) -> Result<&HashMap<String, u64>> {
        if !self.cache.contains_key(folder) {
            let sizes = self.state.seen_sizes(self.account, folder, 0)?;
            self.cache.insert(folder.to_string(), sizes);
        }
        Ok(&self.cache[folder])
    }
}

impl SeenIndex for StateSeenIndex<'_> {
    fn is_seen(&mut self, folder: &str, uid: &str) -> Result<bool> {
        Ok(self.seen_size(folder, uid)?.is_some())
    }

    fn seen_size(&mut self, folder: &str, uid: &str) -> Result<Option<u64>> {
        Ok(self.sizes(folder)?.get(uid).copied())
    }

    fn seen_size_one(&mut self, folder: &str, uid: &str) -> Result<Option<u64>> {
        match self.cache.get(folder) {
            Some(sizes) => Ok(sizes.get(uid).copied()),
            None => Ok(self
                .state
                .seen_record(self.account, folder, 0, uid)?
                .map(|record| record.size)),
        }
    }

    fn recorded_totals(&mut self, folder: &str) -> Result<Option<(u64, u64)>> {
        let totals = match (self.cache.get(folder), self.totals.get(folder)) {
            (Some(sizes), _) => SeenTotals {
                count: sizes.len() as u64,
                octets: sizes.values().sum(),
                all_sized: !sizes.values().any(|&size| size == 0),
            },
            (None, Some(totals)) => *totals,
            (None, None) => {
                let totals = self.state.seen_totals(self.account, folder, 0)?;
                self.totals.insert(folder.to_string(), totals);
                totals
            }
        };
        Ok(totals.as_stat())
    }

    fn runs_before(&mut self) -> Result<u64> {
        Ok(self.state.counters(self.account)?.runs)
    }

    fn folder_state(&mut self, folder: &str) -> Result<Option<FolderState>> {
        self.state.folder_state(self.account, folder)
    }

    fn seen_among(&mut self, folder: &str, uidvalidity: u32, uids: &[u32]) -> Result<HashSet<u32>> {
        self.state
            .seen_among(self.account, folder, uidvalidity, uids)
    }

    fn oversized_uids(&mut self, folder: &str, uidvalidity: u32) -> Result<Vec<u32>> {
        // Refusals under an older delivery config are looked at again the
        // same way: by UID, below the folder's last_uid.
        self.oversized_and_refused(folder, uidvalidity, false)
    }

    fn passed_uids(&mut self, folder: &str, uidvalidity: u32) -> Result<Vec<u32>> {
        self.oversized_and_refused(folder, uidvalidity, true)
    }

    fn seen_fingerprints(
        &mut self,
        folder: &str,
        uidvalidity: u32,
    ) -> Result<Vec<SeenFingerprint>> {
        self.state
            .seen_fingerprints(self.account, folder, uidvalidity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A POP3 message in INBOX with this UIDL (shared by the store's
    /// tests).
    pub(crate) fn msg(uid: &str) -> RemoteMessage {
        RemoteMessage {
            folder: "INBOX".into(),
            uid: Some(uid.into()),
            uidvalidity: None,
            size: 10,
            number: 1,
            mailbox: Vec::new(),
            flags: String::new(),
        }
    }

    #[test]
    fn migrations_apply_once_and_set_version() {
        let dir = tempfile::tempdir().unwrap();
        State::open(dir.path()).unwrap();
        let s = State::open(dir.path()).unwrap();
        let v: usize = s
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len());
        let mode: String = s
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn seen_round_trip_and_forget() {
        let mut s = State::in_memory().unwrap();
        s.mark_seen("a", &msg("u1"), Some("<m@x>"), None).unwrap();
        s.mark_seen("a", &msg("u2"), None, None).unwrap();
        s.mark_seen("b", &msg("u3"), None, None).unwrap();
        let read = {
            let mut idx = s.seen_index("a", "");
            assert!(idx.is_seen("INBOX", "u1").unwrap());
            assert!(!idx.is_seen("INBOX", "u3").unwrap());
            idx.into_read()
        };
        assert_eq!(read["INBOX"].len(), 2);
        assert_eq!(
            s.forget_absent("a", "INBOX", 0, &["u2".into()], None)
                .unwrap(),
            1
        );
        assert_eq!(s.seen_uids("a", "INBOX", 0).unwrap().len(), 1);
        assert_eq!(s.seen_uids("b", "INBOX", 0).unwrap().len(), 1);
        // What the scan read stands for the table: u1 is forgotten
        // again (a no-op), and nothing of account b.
        s.mark_seen("a", &msg("u4"), None, None).unwrap();
        assert_eq!(
            s.forget_absent("a", "INBOX", 0, &["u4".into()], read.get("INBOX"))
                .unwrap(),
            2
        );
        assert_eq!(s.seen_uids("a", "INBOX", 0).unwrap().len(), 1, "u4 stays");
        assert_eq!(s.seen_uids("b", "INBOX", 0).unwrap().len(), 1);
    }

    #[test]
    fn seen_totals_and_one_size_without_reading_every_id() {
        let mut s = State::in_memory().unwrap();
        let none = SeenTotals {
            count: 0,
            octets: 0,
            all_sized: true,
        };
        assert_eq!(s.seen_totals("a", "INBOX", 0).unwrap(), none);
        let mut big = msg("u2");
        big.size = 1000;
        s.mark_seen("a", &msg("u1"), None, None).unwrap();
        s.mark_seen("a", &big, None, None).unwrap();
        s.mark_seen("b", &msg("u3"), None, None).unwrap();
        let totals = s.seen_totals("a", "INBOX", 0).unwrap();
        assert_eq!(
            totals,
            SeenTotals {
                count: 2,
                octets: 1010,
                all_sized: true
            }
        );
        let size_of = |uid| s.seen_record("a", "INBOX", 0, uid).unwrap().map(|r| r.size);
        assert_eq!(size_of("u2"), Some(1000));
        assert_eq!(size_of("u3"), None);
        {
            // The index answers the shortcut's questions from the totals
            // and a point query, and has read no folder's ids for
            // `forget_absent`.
            let mut idx = s.seen_index("a", "");
            idx.totals_already("INBOX", totals);
            assert_eq!(idx.recorded_totals("INBOX").unwrap(), Some((2, 1010)));
            assert_eq!(idx.seen_size_one("INBOX", "u1").unwrap(), Some(10));
            assert!(idx.into_read().is_empty());
        }
        {
            // Without totals read before, the same, read on first use.
            let mut idx = s.seen_index("a", "");
            assert_eq!(idx.recorded_totals("INBOX").unwrap(), Some((2, 1010)));
            // A full scan's lookups read every id once.
            assert_eq!(idx.seen_size("INBOX", "u2").unwrap(), Some(1000));
            assert_eq!(idx.into_read()["INBOX"].len(), 2);
        }
        // A row recorded without a size (0) makes the totals unusable.
        let mut unsized_msg = msg("u4");
        unsized_msg.size = 0;
        s.mark_seen("a", &unsized_msg, None, None).unwrap();
        assert!(!s.seen_totals("a", "INBOX", 0).unwrap().all_sized);
        assert_eq!(
            s.seen_index("a", "").recorded_totals("INBOX").unwrap(),
            None
        );
    }

    fn imap_msg(uid: u32, uidvalidity: u32) -> RemoteMessage {
        RemoteMessage {
            folder: "Lists/x".into(),
            uid: Some(uid.to_string()),
            uidvalidity: Some(uidvalidity),
            size: 100 + u64::from(uid),
            number: uid,
            mailbox: Vec::new(),
            flags: String::new(),
        }
    }

    #[test]
    fn imap_folder_state_moves_only_when_set() {
        let mut s = State::in_memory().unwrap();
        assert_eq!(s.folder_state("a", "Lists/x").unwrap(), None);
        let st = |uidvalidity, last_uid| FolderState {
            uidvalidity,
            last_uid,
        };
        s.set_folder_state("a", "Lists/x", st(7, 0)).unwrap();
        // A delivery alone does not move last_uid: UIDs below it may still
        // be waiting (the scan and `Source::settle` move it).
        s.mark_seen("a", &imap_msg(3, 7), Some("<3@x>"), Some("h3"))
            .unwrap();
        assert_eq!(s.folder_state("a", "Lists/x").unwrap(), Some(st(7, 0)));
        s.set_folder_state("a", "Lists/x", st(7, 3)).unwrap();
        assert_eq!(s.folder_state("a", "Lists/x").unwrap(), Some(st(7, 3)));
        // Never backwards for the same UIDVALIDITY; reset by a new one.
        s.set_folder_state("a", "Lists/x", st(7, 1)).unwrap();
        assert_eq!(s.folder_state("a", "Lists/x").unwrap(), Some(st(7, 3)));
        s.set_folder_state("a", "Lists/x", st(8, 1)).unwrap();
        assert_eq!(s.folder_state("a", "Lists/x").unwrap(), Some(st(8, 1)));
        s.mark_seen("a", &imap_msg(9, 7), None, None).unwrap();
        assert_eq!(s.folder_state("a", "Lists/x").unwrap(), Some(st(8, 1)));
        assert_eq!(
            s.seen_among("a", "Lists/x", 7, &[1, 3, 9]).unwrap(),
            [3, 9].into_iter().collect()
        );
    }

    #[test]
    fn imap_rekey_carries_matches_and_forgets_the_rest() {
        let mut s = State::in_memory().unwrap();
        s.set_folder_state(
            "a",
            "Lists/x",
            FolderState {
                uidvalidity: 7,
                last_uid: 0,
            },
        )
        .unwrap();
        for uid in [1, 2, 3] {
            s.mark_seen("a", &imap_msg(uid, 7), Some("<m@x>"), Some("h"))
                .unwrap();
        }
        s.note_oversized("a", &imap_msg(5, 7)).unwrap();
        assert_eq!(s.oversized_uids("a", "Lists/x", 7).unwrap(), vec![5]);
        let fp = s.seen_fingerprints("a", "Lists/x", 7).unwrap();
        assert_eq!(fp.len(), 3);
        assert_eq!(fp[0].header_hash.as_deref(), Some("h"));
        s.rekey("a", "Lists/x", 7, 9, &[(1, 11), (3, 13)]).unwrap();
        assert!(s.seen_fingerprints("a", "Lists/x", 7).unwrap().is_empty());
        assert!(s.oversized_uids("a", "Lists/x", 7).unwrap().is_empty());
        assert_eq!(
            s.seen_among("a", "Lists/x", 9, &[11, 12, 13]).unwrap(),
            [11, 13].into_iter().collect()
        );
        assert_eq!(
            s.folder_state("a", "Lists/x").unwrap(),
            Some(FolderState {
                uidvalidity: 9,
                last_uid: 0
            })
        );
        // Delivering a message once too large forgets that it was.
        s.note_oversized("a", &imap_msg(20, 9)).unwrap();
        s.mark_seen("a", &imap_msg(20, 9), None, None).unwrap();
        assert!(s.oversized_uids("a", "Lists/x", 9).unwrap().is_empty());
    }

    #[test]
    fn another_mailbox_under_the_same_name_forgets_the_old_seen_state() {
        let mut s = State::in_memory().unwrap();
        assert_eq!(s.bind_identity("a", "u@h").unwrap(), None);
        s.mark_seen("a", &msg("00000001"), None, None).unwrap();
        assert_eq!(s.bind_identity("a", "u@h").unwrap(), None);
        assert_eq!(s.seen_uids("a", "INBOX", 0).unwrap().len(), 1);
        assert_eq!(s.bind_identity("a", "v@h").unwrap().as_deref(), Some("u@h"));
        assert!(s.seen_uids("a", "INBOX", 0).unwrap().is_empty());
    }

    #[test]
    fn delivered_record_is_the_commit_time_and_size() {
        let mut s = State::in_memory().unwrap();
        assert_eq!(s.delivered_record("a", &msg("u1")).unwrap(), None);
        s.commit(
            "a",
            &[commit::Outcome {
                message: msg("u1"),
                message_id: None,
                header_hash: None,
                disposition: commit::Disposition::Delivered,
                owed: Vec::new(),
                sender: None,
                bytes: Vec::new(),
                dedup: None,
            }],
            "",
            1_234,
            &spool::RetryPolicy::default(),
        )
        .unwrap();
        assert_eq!(
            s.delivered_record("a", &msg("u1")).unwrap(),
            Some(crate::retention::Delivered {
                at: 1_234,
                size: 10
            })
        );
        assert_eq!(s.delivered_record("b", &msg("u1")).unwrap(), None);
        let mut no_uid = msg("u1");
        no_uid.uid = None;
        assert_eq!(s.delivered_record("a", &no_uid).unwrap(), None);
    }

    #[test]
    fn quota_round_trip_and_percent() {
        let mut s = State::in_memory().unwrap();
        assert_eq!(s.quota("a").unwrap(), None);
        let q = Quota {
            root: "User quota".into(),
            storage: Some((950, 1000)),
            messages: None,
        };
        assert_eq!(q.percent(), Some(95));
        s.set_quota("a", &q, 77).unwrap();
        assert_eq!(s.quota("a").unwrap(), Some((q, 77)));
        let q = Quota {
            root: String::new(),
            storage: Some((1, 1000)),
            messages: Some((5, 10)),
        };
        assert_eq!(q.percent(), Some(50));
        s.set_quota("a", &q, 78).unwrap();
        assert_eq!(s.quota("a").unwrap(), Some((q, 78)));
        assert_eq!(Quota::default().percent(), None);
    }

    #[test]
    fn oversized_is_reported_once() {
        let mut s = State::in_memory().unwrap();
        assert!(s.note_oversized("a", &msg("u1")).unwrap());
        assert!(!s.note_oversized("a", &msg("u1")).unwrap());
    }

    /// A run of account `a` that found no new mail, started at `started_at`.
    fn no_mail_run(started_at: i64) -> RunRecord {
        RunRecord {
            account: "a".into(),
            started_at,
            duration: Duration::from_millis(5),
            exit_code: 1,
            messages: 0,
            spooled: 0,
            bytes: 0,
            error: None,
        }
    }

    #[test]
    fn run_log_is_pruned() {
        let mut s = State::in_memory().unwrap();
        for i in 0..(RUNS_KEPT + 5) {
            s.record_run(&no_mail_run(i)).unwrap();
        }
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, RUNS_KEPT);
        assert_eq!(s.last_run("a").unwrap().unwrap().started_at, RUNS_KEPT + 4);
    }

    fn synchronous(s: &State) -> i64 {
        s.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    /// The run log and TLS sessions are written unsynced; every other
    /// commit stays synced (FULL = 2), on this connection and on the one
    /// a `Shared` hands on. Closing does not checkpoint: the WAL stays.
    #[test]
    fn unsynced_writes_leave_the_connection_synced() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::shared(dir.path()).unwrap();
        assert_eq!(synchronous(&s), 2);
        s.record_run(&no_mail_run(1)).unwrap();
        s.put_tls_sessions(&[("h:1 x".into(), vec![1, 2, 3], 2)], 7)
            .unwrap();
        assert_eq!(synchronous(&s), 2);
        assert_eq!(
            s.tls_sessions_under("h:1 ").unwrap(),
            vec![("h:1 x".to_string(), vec![1, 2, 3], 7, 2)]
        );
        assert!(s.tls_sessions_under("h:2 ").unwrap().is_empty());
        drop(s);
        let again = State::shared(dir.path()).unwrap();
        assert_eq!(synchronous(&again), 2);
        assert_eq!(again.last_run("a").unwrap().unwrap().started_at, 1);
        drop(again);
        // Another state takes the spare's place: this one is closed.
        let other = tempfile::tempdir().unwrap();
        drop(State::shared(other.path()).unwrap());
        assert!(dir.path().join("state.db-wal").exists());
    }

    /// A process's first connection reads the WAL through, and cannot
    /// start over one that an earlier process left. Runs writing a few
    /// pages each grew it without end (once past the automatic
    /// checkpoint, each of them copied it all into state.db again); now
    /// the run log's commit starts over a WAL longer than
    /// `WAL_LEFT_AT_MOST`, about one run in forty.
    #[test]
    fn runs_one_after_another_leave_the_wal_short() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("state.db-wal");
        let (mut most, mut cuts, mut last) = (0, 0, 0);
        for i in 0..300 {
            let mut s = State::open(dir.path()).unwrap();
            s.record_run(&no_mail_run(i)).unwrap();
            drop(s);
            let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
            most = most.max(len);
            cuts += usize::from(len < last);
            last = len;
        }
        assert!(
            most <= WAL_LEFT_AT_MOST + 8 * WAL_FRAME,
            "the WAL grew to {most} bytes"
        );
        assert!(
            (1..=20).contains(&cuts),
            "the WAL was started over {cuts} times in 300 runs"
        );
        let s = State::open(dir.path()).unwrap();
        assert_eq!(s.last_run("a").unwrap().unwrap().started_at, 299);
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.db"), vec![0x55u8; 8192]).unwrap();
        let e = State::open(dir.path()).err().unwrap();
        assert!(e.to_string().contains("state.db"), "{e}");
        assert!(e.to_string().contains("damaged"), "{e}");
        assert!(e.to_string().contains("retry spool"), "{e}");
    }
}
