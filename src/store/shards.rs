//! What the state remembers of shards (`--shard K/N`, `crate::shard`),
//! so that an account that moved here from another shard when N changed
//! is recognised before it is fetched.
//!
//! Every run (`fetch` or `watch`, not `--check`) records the shard it
//! runs as (`1/1` without `--shard`) in `shard_specs`, a new row each
//! time the spec differs from the last one; after an account's run
//! succeeds, `shard_members` notes the spec it ran under. An account's
//! seen-state here is *current* when every spec this state used since
//! that run (or, if it never ran here, every spec it ever used) included
//! the account: then, with all shards switched to a new N together, no
//! other shard can have fetched it in the meantime. Otherwise the account
//! *arrived*: another state.db had it for a while, and what this one
//! remembers of it is missing or stale.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{wrap, State};
use crate::error::{Error, Result};
use crate::shard::Shard;
use crate::source::RemoteMessage;

/// Where an account's seen-state stands in this state.db (see the module
/// header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It ran here, and no shard spec used since excluded it: its
    /// seen-state is current.
    Current,
    /// It never ran here, and every spec this state used included it: a
    /// new account (or a new state.db).
    New,
    /// This state ran under `spec`, which did not include the account:
    /// another shard had it then, so its seen-state here is missing or
    /// stale.
    Arrived {
        /// The spec that left it to another shard.
        spec: Shard,
    },
}

impl State {
    /// Records that a run uses `shard` and returns the id of its spec
    /// row (a new row if the last one differs).
    pub fn begin_shard(&mut self, shard: Shard, now: i64) -> Result<i64> {
        let path = self.path.clone();
        // The common case, the same spec as last time, is a read: no
        // write transaction (and no fsync) on every run.
        let last: Option<(i64, u32, u32)> = self
            .conn
            .query_row(
                "SELECT id, shard_index, shard_count FROM shard_specs ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| wrap(&path, e))?;
        if let Some((id, index, count)) = last {
            if index == shard.index && count == shard.count {
                return Ok(id);
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        let last: Option<(i64, u32, u32)> = tx
            .query_row(
                "SELECT id, shard_index, shard_count FROM shard_specs ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| wrap(&path, e))?;
        let id = match last {
            Some((id, index, count)) if index == shard.index && count == shard.count => id,
            _ => {
                tx.execute(
                    "INSERT INTO shard_specs (shard_index, shard_count, first_used)
                     VALUES (?1, ?2, ?3)",
                    params![shard.index, shard.count, now],
                )
                .map_err(|e| wrap(&path, e))?;
                tx.last_insert_rowid()
            }
        };
        tx.commit().map_err(|e| wrap(&path, e))?;
        Ok(id)
    }

    /// Where `account`'s seen-state stands (see `Placement`).
    pub fn placement(&self, account: &str) -> Result<Placement> {
        let since: Option<i64> = self
            .conn
            .query_row(
                "SELECT spec_id FROM shard_members WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT shard_index, shard_count FROM shard_specs WHERE id > ?1 ORDER BY id",
            )
            .map_err(|e| wrap(&self.path, e))?;
        let specs = stmt
            .query_map(params![since.unwrap_or(0)], |r| {
                Ok(Shard {
                    index: r.get(0)?,
                    count: r.get(1)?,
                })
            })
            .map_err(|e| wrap(&self.path, e))?
            .collect::<rusqlite::Result<Vec<Shard>>>()
            .map_err(|e| wrap(&self.path, e))?;
        if let Some(spec) = specs.into_iter().find(|s| !s.contains(account)) {
            return Ok(Placement::Arrived { spec });
        }
        if since.is_some() {
            return Ok(Placement::Current);
        }
        // No member row: new here, unless the run log (from before shards
        // were recorded) says it ran here.
        let ran: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE account = ?1)
                     OR EXISTS (SELECT 1 FROM seen WHERE account = ?1)",
                params![account],
                |r| r.get(0),
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(if ran {
            Placement::Current
        } else {
            Placement::New
        })
    }

    /// Notes that `account` ran (successfully) here under the spec
    /// `spec_id`: its seen-state is current as of that spec.
    pub fn note_shard_member(&mut self, account: &str, spec_id: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO shard_members (account, spec_id) VALUES (?1, ?2)
                 ON CONFLICT (account) DO UPDATE SET spec_id = excluded.spec_id",
                params![account, spec_id],
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(())
    }

    /// `--adopt`: marks every message in `messages` seen (without a
    /// Message-ID or header hash: none was downloaded), in one
    /// transaction.
    pub fn adopt_seen(&mut self, account: &str, messages: &[RemoteMessage]) -> Result<()> {
        let path = self.path.clone();
        let now = super::now_unix();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        for message in messages {
            super::record_seen(&tx, account, message, None, None, now)
                .map_err(|e| wrap(&path, e))?;
        }
        tx.commit().map_err(|e| wrap(&path, e))?;
        Ok(())
    }

    /// Counters of an account's runs that only grow (since this state.db
    /// got them, schema 12), for the metrics file.
    pub fn counters(&self, account: &str) -> Result<Counters> {
        self.conn
            .query_row(
                "SELECT runs, failures, messages, bytes, spooled, last_success_at
                 FROM account_counters WHERE account = ?1",
                params![account],
                |r| {
                    Ok(Counters {
                        runs: r.get::<_, i64>(0)? as u64,
                        failures: r.get::<_, i64>(1)? as u64,
                        messages: r.get::<_, i64>(2)? as u64,
                        bytes: r.get::<_, i64>(3)? as u64,
                        spooled: r.get::<_, i64>(4)? as u64,
                        last_success_at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| wrap(&self.path, e))
    }

    /// Messages in an account's retry spool and their bytes.
    pub fn spool_size(&self, account: &str) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM spool WHERE account = ?1",
                params![account],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| wrap(&self.path, e))
    }
}

/// The per-account tables that make up what an account has seen, copied
/// by `--adopt-from`: delivered messages, IMAP folder bookkeeping
/// (UIDVALIDITY and the UID everything below is dealt with), oversized
/// notices, refusals kept on the server, delivery intents (a crashed
/// run's file names, so a redo finds its own file), the mailbox the
/// state belongs to, and the Message-IDs `dedup` remembers. Not copied:
/// the spool (the old shard's `queue flush` delivers it), the run log,
/// counters and quota (history, not seen-state).
pub const SEEN_STATE_TABLES: [&str; 7] = [
    "seen",
    "imap_folders",
    "oversized",
    "refused",
    "delivery_intents",
    "account_identity",
    "dedup",
];

/// Another shard's state.db that holds an account's seen-state
/// (`--adopt-from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Donor {
    /// Its state.db.
    pub path: PathBuf,
    /// The read-only URI it opened with (`mode=ro`, or `immutable` on a
    /// read-only directory).
    uri: String,
    /// When the account's last successful run there finished (unix
    /// seconds; 0 when only older records say it ran there).
    pub last_success: i64,
}

/// Opens `dir/state.db` read-only (never created, never written, never
/// migrated) and checks that its schema is this mailretr's. Returns the
/// URI it was opened with.
fn open_donor(dir: &Path) -> Result<(PathBuf, String, Connection)> {
    let path = dir.join("state.db");
    let err = |message: String| Error::State {
        path: path.display().to_string(),
        message: format!("--adopt-from: {message}"),
    };
    if !path.is_file() {
        return Err(err("no state.db there".into()));
    }
    let base = format!("file:{}?mode=ro", uri_escape(&path.to_string_lossy()));
    let open = |uri: &str| -> rusqlite::Result<(Connection, usize)> {
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        Ok((conn, version))
    };
    // A WAL database in a directory this process cannot write (a
    // read-only mount) cannot get its -shm file: with no -wal file
    // there is nothing but the database to read, and `immutable` reads
    // it without one.
    let wal = dir.join("state.db-wal");
    let (uri, (conn, version)) = match open(&base) {
        Ok(opened) => (base, opened),
        Err(first) if !wal.exists() => {
            let immutable = format!("{base}&immutable=1");
            match open(&immutable) {
                Ok(opened) => (immutable, opened),
                Err(_) => return Err(err(first.to_string())),
            }
        }
        Err(e) => return Err(err(e.to_string())),
    };
    if version != super::MIGRATIONS.len() {
        return Err(err(format!(
            "its schema version is {version}, this mailretr's is {}: copy from a state.db \
             of the same mailretr version (run that shard once with it), or use --adopt",
            super::MIGRATIONS.len()
        )));
    }
    Ok((path, uri, conn))
}

/// Of the state dirs `dirs` (`--adopt-from`), the one whose state.db
/// holds `account`'s seen-state from the most recent successful run.
/// `None` when none of them has state for it. A dir without a state.db,
/// or with one of another schema version, is an error.
pub fn find_donor(dirs: &[PathBuf], account: &str) -> Result<Option<Donor>> {
    let mut best: Option<Donor> = None;
    for dir in dirs {
        let (path, uri, conn) = open_donor(dir)?;
        let found: Option<(bool, i64)> = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM shard_members WHERE account = ?1)
                     OR EXISTS (SELECT 1 FROM seen WHERE account = ?1)
                     OR EXISTS (SELECT 1 FROM imap_folders WHERE account = ?1),
                        coalesce((SELECT last_success_at FROM account_counters WHERE account = ?1),
                                 (SELECT max(started_at) FROM runs
                                  WHERE account = ?1 AND exit_code IN (0, 1, 13)),
                                 0)",
                params![account],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| wrap(&path, e))?;
        let Some((true, last_success)) = found else {
            continue;
        };
        if best.as_ref().is_none_or(|b| last_success > b.last_success) {
            best = Some(Donor {
                path,
                uri,
                last_success,
            });
        }
    }
    Ok(best)
}

impl State {
    /// `--adopt-from`: replaces `account`'s seen-state here
    /// (`SEEN_STATE_TABLES`) with the one in `donor` (attached
    /// read-only) and notes the account current under `spec_id`, in one
    /// transaction. Returns how many `seen` rows were copied.
    pub fn adopt_from(&mut self, donor: &Donor, account: &str, spec_id: i64) -> Result<u64> {
        let path = self.path.clone();
        let uri = format!("file:{}?mode=ro", uri_escape(&donor.path.to_string_lossy()));
        self.conn
            .execute("ATTACH DATABASE ?1 AS donor", params![uri])
            .map_err(|e| wrap(&donor.path, e))?;
        let copied = (|| -> rusqlite::Result<u64> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for table in SEEN_STATE_TABLES {
                tx.execute(
                    &format!("DELETE FROM main.{table} WHERE account = ?1"),
                    params![account],
                )?;
                tx.execute(
                    &format!(
                        "INSERT INTO main.{table} SELECT * FROM donor.{table} WHERE account = ?1"
                    ),
                    params![account],
                )?;
            }
            let copied: i64 = tx.query_row(
                "SELECT count(*) FROM main.seen WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO main.shard_members (account, spec_id) VALUES (?1, ?2)
                 ON CONFLICT (account) DO UPDATE SET spec_id = excluded.spec_id",
                params![account, spec_id],
            )?;
            tx.commit()?;
            Ok(copied as u64)
        })();
        let detached = self.conn.execute("DETACH DATABASE donor", []);
        let copied = copied.map_err(|e| wrap(&path, e))?;
        detached.map_err(|e| wrap(&path, e))?;
        Ok(copied)
    }
}

/// Escapes a path for an SQLite `file:` URI.
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// See `State::counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs recorded.
    pub runs: u64,
    /// Runs that ended in an error (exit code other than 0, 1, 13).
    pub failures: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Bytes retrieved.
    pub bytes: u64,
    /// Messages put in the retry spool.
    pub spooled: u64,
    /// When the last run that ended without an error finished (unix
    /// seconds).
    pub last_success_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::msg;
    use crate::store::RunRecord;

    fn sh(index: u32, count: u32) -> Shard {
        Shard { index, count }
    }

    /// An account name in shard `index` of `count`.
    fn name_in(index: u32, count: u32) -> String {
        (0..10_000)
            .map(|i| format!("a{i}"))
            .find(|n| sh(index, count).contains(n))
            .unwrap()
    }

    #[test]
    fn unchanged_spec_keeps_accounts_current() {
        let mut state = State::in_memory().unwrap();
        let a = name_in(1, 2);
        let id = state.begin_shard(sh(1, 2), 100).unwrap();
        assert_eq!(state.placement(&a).unwrap(), Placement::New);
        state.note_shard_member(&a, id).unwrap();
        assert_eq!(state.begin_shard(sh(1, 2), 200).unwrap(), id);
        assert_eq!(state.placement(&a).unwrap(), Placement::Current);
    }

    #[test]
    fn an_account_that_was_elsewhere_has_arrived() {
        let mut state = State::in_memory().unwrap();
        // In 1/2 but 3/3: under N=3 the new shard had it.
        let a = (0..10_000)
            .map(|i| format!("a{i}"))
            .find(|n| sh(1, 2).contains(n) && sh(3, 3).contains(n))
            .unwrap();
        let first = state.begin_shard(sh(1, 2), 100).unwrap();
        state.note_shard_member(&a, first).unwrap();
        state.begin_shard(sh(1, 3), 200).unwrap();
        // Back to N=2: what this state remembers of `a` is stale.
        state.begin_shard(sh(1, 2), 300).unwrap();
        assert_eq!(
            state.placement(&a).unwrap(),
            Placement::Arrived { spec: sh(1, 3) }
        );
        // Never ran here, and an earlier spec left it to another shard.
        let b = (0..10_000)
            .map(|i| format!("b{i}"))
            .find(|n| sh(1, 2).contains(n) && sh(3, 3).contains(n))
            .unwrap();
        assert!(matches!(
            state.placement(&b).unwrap(),
            Placement::Arrived { .. }
        ));
    }

    #[test]
    fn runs_from_before_shards_count_as_current() {
        let mut state = State::in_memory().unwrap();
        state
            .record_run(&RunRecord {
                account: "old".into(),
                started_at: 1,
                duration: std::time::Duration::ZERO,
                exit_code: 0,
                messages: 2,
                bytes: 10,
                spooled: 0,
                error: None,
            })
            .unwrap();
        state.begin_shard(Shard::ALL, 100).unwrap();
        assert_eq!(state.placement("old").unwrap(), Placement::Current);
        assert_eq!(state.placement("other").unwrap(), Placement::New);
        let c = state.counters("old").unwrap();
        assert_eq!((c.runs, c.messages, c.last_success_at), (1, 2, Some(1)));
    }

    #[test]
    fn adopt_marks_seen() {
        let mut state = State::in_memory().unwrap();
        state.adopt_seen("a", &[msg("u1"), msg("u2")]).unwrap();
        let seen = state.seen_uids("a", "INBOX", 0).unwrap();
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn adopt_from_copies_seen_state_and_leaves_the_donor_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new, empty) = (
            dir.path().join("old"),
            dir.path().join("new"),
            dir.path().join("empty"),
        );
        {
            let mut donor = State::open(&old).unwrap();
            donor.adopt_seen("a", &[msg("u1"), msg("u2")]).unwrap();
            drop(State::open(&empty).unwrap());
        }
        let before = std::fs::read(old.join("state.db")).unwrap();
        // A dir that lacks the account: nothing to adopt.
        assert_eq!(find_donor(std::slice::from_ref(&empty), "a").unwrap(), None);
        assert!(find_donor(&[dir.path().join("nowhere")], "a").is_err());
        let donor = find_donor(&[empty, old.clone()], "a").unwrap().unwrap();
        let mut state = State::open(&new).unwrap();
        state.adopt_seen("a", &[msg("stale")]).unwrap();
        let id = state.begin_shard(sh(1, 2), 100).unwrap();
        assert_eq!(state.adopt_from(&donor, "a", id).unwrap(), 2);
        let seen = state.seen_uids("a", "INBOX", 0).unwrap();
        assert_eq!(seen, ["u1", "u2"].iter().map(|s| s.to_string()).collect());
        assert_eq!(std::fs::read(old.join("state.db")).unwrap(), before);
        // Noted current under the spec of this run.
        if sh(1, 2).contains("a") {
            assert_eq!(state.placement("a").unwrap(), Placement::Current);
        }
    }
}
