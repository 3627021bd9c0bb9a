//! The durable retry spool. A message that a destination refused only
//! for now (an SMTP 4xx, an MDA exiting 75, a full disk) is kept here, in
//! the state database, and retried from here with exponential backoff:
//! it is never downloaded again.
//!
//! Why the same SQLite database and not files: putting a message in the
//! spool and marking it seen must be one atomic step (SPEC: "marking a
//! message seen and putting it in the spool is one transaction"), and the
//! server copy may be deleted right after. With the bytes as a blob in
//! the same database, `State::commit` does both in one transaction, and
//! there is no window in which a spool file exists without its index row
//! or the other way round. Messages are bounded by `max_size` in practice;
//! SQLite handles blobs of tens of megabytes without trouble.
//!
//! One spool entry is one message for one destination, with the
//! recipients still owed at that destination; fan-out to three
//! destinations of which one fails spools one entry.
//!
//! The spool holds both directions. Incoming entries belong to the
//! account that fetched them; outgoing ones (queued by `mailretr
//! sendmail`, see `crate::outgoing`) have the account `""` (`OUTGOING`),
//! which no account can be named, and their relay as the destination.
//!
//! This module also keeps the *delivery intents*: before a batch of
//! messages is written to Maildir or directory destinations, the file
//! names they will get are committed. A run that follows a crash between
//! writing a file and the seen-commit finds the intent, sees the file
//! (in `new/`, or in `cur/` if a mail reader moved it), and does not
//! deliver it a second time.

use std::time::Duration;

use rusqlite::{params, OptionalExtension, Transaction};

use crate::error::{Error, Failure, Result};
use crate::source::RemoteMessage;
use crate::store::State;

/// How long to wait between attempts, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with each attempt.
    pub initial: Duration,
    /// The longest wait between attempts.
    pub max: Duration,
    /// After this long in the spool, the message is bounced.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(5 * 60),
            max: Duration::from_secs(4 * 3600),
            max_age: Duration::from_secs(5 * 86400),
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts (1 = the first failure).
    pub fn delay(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// A message to be put in the spool together with the seen-commit.
#[derive(Debug, Clone)]
pub struct NewSpoolEntry<'a> {
    /// The destination that failed.
    pub destination: &'a str,
    /// The envelope sender (`Some("")` for the null sender `<>`).
    pub sender: Option<&'a str>,
    /// The recipients still owed at that destination.
    pub recipients: &'a [String],
    /// The message bytes as they would have been delivered.
    pub message: &'a [u8],
    /// Why the first attempt failed.
    pub error: &'a str,
}

/// The account column of outgoing entries (account names are never empty).
pub const OUTGOING: &str = "";

/// One outgoing entry to queue: a relay (or the `local` mda) and the
/// recipients it is for.
#[derive(Debug, Clone)]
pub struct NewOutgoing<'a> {
    /// The destination that will send it.
    pub destination: &'a str,
    /// The envelope sender (`Some("")` for the null sender).
    pub sender: Option<&'a str>,
    /// Its recipients there.
    pub recipients: &'a [String],
}

/// A spool entry without its bytes, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSummary {
    /// The entry's id, used by `queue show/flush/delete`.
    pub id: i64,
    /// The account it was fetched by.
    pub account: String,
    /// The folder it came from.
    pub folder: String,
    /// That folder relative to the server's personal namespace, one
    /// level each (`Envelope::mailbox`); empty for INBOX and POP3.
    pub mailbox: Vec<String>,
    /// Its flags at download, as Maildir info letters.
    pub flags: String,
    /// Its id on the server.
    pub uid: Option<String>,
    /// The destination still owed the message.
    pub destination: String,
    /// The envelope sender; `Some("")` is the null sender.
    pub sender: Option<String>,
    /// The recipients still owed.
    pub recipients: Vec<String>,
    /// The Message-ID header, if any.
    pub message_id: Option<String>,
    /// The message's size in bytes.
    pub size: u64,
    /// Unix time it was spooled.
    pub created_at: i64,
    /// Failed attempts so far (the first delivery counts).
    pub attempts: u32,
    /// Unix time of the next attempt.
    pub next_attempt: i64,
    /// The last error.
    pub last_error: Option<String>,
    /// Whether it outlived `spool_max_age` and could not be bounced; it
    /// is kept (never silently dropped) until a person decides.
    pub expired: bool,
}

impl SpoolSummary {
    /// Whether `mailretr sendmail` queued it (rather than a fetch).
    pub fn is_outgoing(&self) -> bool {
        self.account == OUTGOING
    }
}

/// A spool entry with its bytes.
#[derive(Debug, Clone)]
pub struct SpoolEntry {
    /// Everything but the bytes.
    pub summary: SpoolSummary,
    /// The message.
    pub message: Vec<u8>,
}

const SUMMARY_COLUMNS: &str = "id, account, folder, uid, destination, sender, recipients,
     message_id, size, created_at, attempts, next_attempt, last_error, expired, mailbox, flags";

fn summary_from_row(r: &rusqlite::Row) -> rusqlite::Result<SpoolSummary> {
    let recipients: String = r.get(6)?;
    Ok(SpoolSummary {
        id: r.get(0)?,
        account: r.get(1)?,
        folder: r.get(2)?,
        uid: r.get(3)?,
        destination: r.get(4)?,
        sender: r.get(5)?,
        recipients: recipients
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        message_id: r.get(7)?,
        size: r.get::<_, i64>(8)? as u64,
        created_at: r.get(9)?,
        attempts: r.get::<_, i64>(10)? as u32,
        next_attempt: r.get(11)?,
        last_error: r.get(12)?,
        expired: r.get::<_, i64>(13)? != 0,
        mailbox: mailbox_from_column(r.get::<_, Option<String>>(14)?.as_deref()),
        flags: crate::message::flags_to_info(
            r.get::<_, Option<String>>(15)?.unwrap_or_default().chars(),
        ),
    })
}

/// The `mailbox` column: a JSON array of names (levels can hold any
/// character, a line break or a `/` among them). NULL (an entry from
/// before migration 7) or anything unreadable is the root.
fn mailbox_from_column(column: Option<&str>) -> Vec<String> {
    column
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default()
}

/// What goes into the `mailbox` column.
fn mailbox_to_column(mailbox: &[String]) -> Option<String> {
    (!mailbox.is_empty()).then(|| serde_json::to_string(mailbox).unwrap_or_default())
}

fn state_err(e: rusqlite::Error) -> Error {
    Error::State {
        path: "state.db".into(),
        message: e.to_string(),
    }
}

/// Records one message as dealt with, inside `tx`: marks it seen, spools
/// what is still owed, and drops its delivery intents.
pub(crate) fn spool_in(
    tx: &Transaction,
    account: &str,
    message: &RemoteMessage,
    message_id: Option<&str>,
    spooled: &[NewSpoolEntry],
    now: i64,
    policy: &RetryPolicy,
) -> rusqlite::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for entry in spooled {
        tx.prepare_cached(
            "INSERT INTO spool (account, folder, uid, destination, sender, recipients,
                 message_id, size, message, created_at, attempts, next_attempt, last_error,
                 mailbox, flags)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 1, ?11, ?12, ?13, ?14)",
        )?
        .execute(params![
            account,
            message.folder,
            message.uid,
            entry.destination,
            entry.sender,
            entry.recipients.join("\n"),
            message_id,
            entry.message.len() as i64,
            entry.message,
            now,
            now + policy.delay(1).as_secs() as i64,
            entry.error,
            mailbox_to_column(&message.mailbox),
            message.flags,
        ])?;
        let id = tx.last_insert_rowid();
        add_history(tx, id, now, &format!("spooled: {}", entry.error))?;
        ids.push(id);
    }
    if let Some(uid) = &message.uid {
        tx.prepare_cached(
            "DELETE FROM delivery_intents
             WHERE account = ?1 AND folder = ?2 AND uidvalidity = ?3 AND uid = ?4",
        )?
        .execute(params![
            account,
            message.folder,
            message.uidvalidity.unwrap_or(0),
            uid
        ])?;
    }
    Ok(ids)
}

fn add_history(tx: &rusqlite::Connection, id: i64, at: i64, event: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO spool_history (spool_id, at, event) VALUES (?1, ?2, ?3)")?
        .execute(params![id, at, event])?;
    Ok(())
}

/// A delivery intent: the file name a message will get at a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// The folder on the server.
    pub folder: String,
    /// The folder's UIDVALIDITY (0 for POP3).
    pub uidvalidity: u32,
    /// The message's id on the server.
    pub uid: String,
    /// The destination's name.
    pub destination: String,
    /// The file name (without directory) the message gets there.
    pub name: String,
}

impl State {
    /// Commits intents for a batch of deliveries in one transaction. An
    /// existing intent for the same message and destination is kept: its
    /// name is the one a crashed run may already have used.
    pub fn record_intents(&mut self, account: &str, intents: &[Intent], now: i64) -> Result<()> {
        if intents.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(state_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO delivery_intents
                     (account, folder, uidvalidity, uid, destination, name, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(state_err)?;
            for i in intents {
                stmt.execute(params![
                    account,
                    i.folder,
                    i.uidvalidity,
                    i.uid,
                    i.destination,
                    i.name,
                    now
                ])
                .map_err(state_err)?;
            }
        }
        tx.commit().map_err(state_err)
    }

    /// The intended file name for a message at a destination, if a run
    /// recorded one and has not committed the delivery since.
    pub fn intent(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
        uid: &str,
        destination: &str,
    ) -> Result<Option<String>> {
        self.conn
            .prepare_cached(
                "SELECT name FROM delivery_intents WHERE account = ?1 AND folder = ?2
                 AND uidvalidity = ?3 AND uid = ?4 AND destination = ?5",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![account, folder, uidvalidity, uid, destination],
                    |r| r.get(0),
                )
                .optional()
            })
            .map_err(state_err)
    }

    /// Drops intents older than `before` (messages that vanished from the
    /// server after a crash). Returns how many.
    pub fn prune_intents(&mut self, before: i64) -> Result<usize> {
        self.conn
            .execute(
                "DELETE FROM delivery_intents WHERE created_at < ?1",
                params![before],
            )
            .map_err(state_err)
    }

    /// Queues one outgoing message for its destinations in one committed
    /// transaction (`synchronous = FULL`: on disk when this returns). The
    /// entries are due at once; attempts count from 0.
    pub fn spool_outgoing(
        &mut self,
        entries: &[NewOutgoing],
        message: &[u8],
        message_id: Option<&str>,
        now: i64,
    ) -> Result<Vec<i64>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(state_err)?;
        let mut ids = Vec::new();
        for e in entries {
            tx.execute(
                "INSERT INTO spool (account, folder, uid, destination, sender, recipients,
                     message_id, size, message, created_at, attempts, next_attempt, last_error)
                 VALUES (?1, '', NULL, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?8, NULL)",
                params![
                    OUTGOING,
                    e.destination,
                    e.sender,
                    e.recipients.join("\n"),
                    message_id,
                    message.len() as i64,
                    message,
                    now,
                ],
            )
            .map_err(state_err)?;
            let id = tx.last_insert_rowid();
            add_history(&tx, id, now, "queued by mailretr sendmail").map_err(state_err)?;
            ids.push(id);
        }
        tx.commit().map_err(state_err)?;
        Ok(ids)
    }

    /// Replaces the recipients still owed by a spool entry (after a
    /// partial retry).
    pub fn spool_set_recipients(&mut self, id: i64, recipients: &[String]) -> Result<()> {
        self.conn
            .execute(
                "UPDATE spool SET recipients = ?2 WHERE id = ?1",
                params![id, recipients.join("\n")],
            )
            .map(|_| ())
            .map_err(state_err)
    }

    /// Spool entries, oldest first; all accounts when `account` is `None`.
    pub fn spool_list(&self, account: Option<&str>) -> Result<Vec<SpoolSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM spool WHERE (?1 IS NULL OR account = ?1) ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(state_err)?;
        let rows = stmt
            .query_map(params![account], summary_from_row)
            .map_err(state_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(state_err)
    }

    /// Entries of `account` due at `now` (not expired), oldest first.
    pub fn spool_due(&self, account: &str, now: i64) -> Result<Vec<SpoolSummary>> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM spool
             WHERE account = ?1 AND next_attempt <= ?2 AND expired = 0 ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(state_err)?;
        let rows = stmt
            .query_map(params![account, now], summary_from_row)
            .map_err(state_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(state_err)
    }

    /// How many messages an account has in the spool.
    pub fn spooled_count(&self, account: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM spool WHERE account = ?1",
                params![account],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(state_err)
    }

    /// One entry with its bytes.
    pub fn spool_get(&self, id: i64) -> Result<Option<SpoolEntry>> {
        let sql = format!("SELECT {SUMMARY_COLUMNS}, message FROM spool WHERE id = ?1");
        self.conn
            .query_row(&sql, params![id], |r| {
                Ok(SpoolEntry {
                    summary: summary_from_row(r)?,
                    message: r.get(16)?,
                })
            })
            .optional()
            .map_err(state_err)
    }

    /// An entry's history: (unix time, event), oldest first.
    pub fn spool_history(&self, id: i64) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT at, event FROM spool_history WHERE spool_id = ?1 ORDER BY rowid")
            .map_err(state_err)?;
        let rows = stmt
            .query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(state_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(state_err)
    }

    /// Removes an entry (delivered, bounced, or deleted by hand), noting why.
    /// Returns false if there was no such entry.
    pub fn spool_remove(&mut self, id: i64, why: &str, now: i64) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(state_err)?;
        let n = tx
            .execute("DELETE FROM spool WHERE id = ?1", params![id])
            .map_err(state_err)?;
        add_history(&tx, id, now, why).map_err(state_err)?;
        tx.commit().map_err(state_err)?;
        Ok(n == 1)
    }

    /// Records a failed attempt and schedules the next one by `policy`.
    pub fn spool_retry_later(
        &mut self,
        id: i64,
        error: &str,
        now: i64,
        policy: &RetryPolicy,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(state_err)?;
        let attempts: i64 = tx
            .query_row(
                "SELECT attempts FROM spool WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(state_err)?;
        let attempts = attempts as u32 + 1;
        let next = now + policy.delay(attempts).as_secs() as i64;
        tx.execute(
            "UPDATE spool SET attempts = ?2, next_attempt = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, next, error],
        )
        .map_err(state_err)?;
        add_history(&tx, id, now, &format!("attempt {attempts} failed: {error}"))
            .map_err(state_err)?;
        tx.commit().map_err(state_err)
    }

    /// Marks an entry expired: kept, but no longer retried on its own.
    pub fn spool_expire(&mut self, id: i64, why: &str, now: i64) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(state_err)?;
        tx.execute(
            "UPDATE spool SET expired = 1, last_error = ?2 WHERE id = ?1",
            params![id, why],
        )
        .map_err(state_err)?;
        add_history(&tx, id, now, &format!("expired: {why}")).map_err(state_err)?;
        tx.commit().map_err(state_err)
    }
}

/// What one flush did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// Entries delivered and removed.
    pub delivered: u64,
    /// Entries that failed again and wait for their next attempt.
    pub deferred: u64,
    /// Entries bounced to their sender (or reported to the postmaster).
    pub bounced: u64,
    /// Entries kept as expired because no bounce could be sent.
    pub expired: u64,
    /// One line per problem, for the account's report.
    pub errors: Vec<String>,
    /// Entries kept because of a local fault (ours to fix: permissions, a
    /// read-only disk, a broken MDA): the run reports them as an error.
    pub local_faults: Vec<String>,
    /// The first of those faults that was a destination refusing our
    /// credentials (SMTP AUTH 535): the run's error is then an
    /// authentication error (exit 3).
    pub auth_failure: Option<String>,
}

/// Why a spool entry is being given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// The destination refused it for good.
    Refused(String),
    /// It was retried for longer than `spool_max_age`.
    Expired {
        /// The last temporary error.
        last_error: String,
        /// How long it was tried.
        tried_for: Duration,
    },
}

/// Retries an account's due spool entries (or, with `only`, just those
/// ids, whatever their schedule). `deliver` hands an entry to its
/// destination; `bounce` reports a message given up on to its sender.
/// Each entry's outcome is committed before the next is tried.
pub fn flush(
    state: &mut State,
    account: &str,
    now: i64,
    only: Option<&[i64]>,
    policy: &RetryPolicy,
    deliver: &mut dyn FnMut(&SpoolEntry) -> Result<()>,
    bounce: &mut dyn FnMut(&SpoolEntry, &GiveUp) -> Result<()>,
) -> Result<FlushReport> {
    let due = match only {
        None => state.spool_due(account, now)?,
        Some(ids) => state
            .spool_list(Some(account))?
            .into_iter()
            .filter(|e| ids.contains(&e.id))
            .collect(),
    };
    let mut report = FlushReport::default();
    for summary in due {
        let Some(entry) = state.spool_get(summary.id)? else {
            continue; // removed meanwhile (e.g. `queue delete`)
        };
        let give_up = match deliver(&entry) {
            Ok(()) => {
                state.spool_remove(entry.summary.id, "delivered", now)?;
                report.delivered += 1;
                continue;
            }
            // A local fault (a read-only disk, a broken MDA) is ours to
            // fix: the entry is kept and retried, never bounced or expired.
            Err(e) if e.failure() == Failure::Local => {
                if let Error::Auth(why) = &e {
                    report.auth_failure.get_or_insert_with(|| why.clone());
                }
                state.spool_retry_later(entry.summary.id, &e.to_string(), now, policy)?;
                report.deferred += 1;
                report.local_faults.push(format!(
                    "spool entry {} for {} kept (a local fault, not the message): {e}",
                    entry.summary.id, entry.summary.destination
                ));
                continue;
            }
            Err(e) if e.is_transient() => {
                let age =
                    Duration::from_secs(now.saturating_sub(entry.summary.created_at).max(0) as u64);
                if age < policy.max_age {
                    state.spool_retry_later(entry.summary.id, &e.to_string(), now, policy)?;
                    report.deferred += 1;
                    continue;
                }
                GiveUp::Expired {
                    last_error: e.to_string(),
                    tried_for: age,
                }
            }
            Err(e) => GiveUp::Refused(e.to_string()),
        };
        match bounce(&entry, &give_up) {
            Ok(()) => {
                let why = match &give_up {
                    GiveUp::Refused(e) => format!("refused, bounced: {e}"),
                    GiveUp::Expired { .. } => "expired, bounced".to_string(),
                };
                state.spool_remove(entry.summary.id, &why, now)?;
                report.bounced += 1;
            }
            Err(e) => {
                let why = match &give_up {
                    GiveUp::Refused(r) => format!("{r}; and the bounce failed: {e}"),
                    GiveUp::Expired { last_error, .. } => {
                        format!("{last_error}; and the bounce failed: {e}")
                    }
                };
                state.spool_expire(entry.summary.id, &why, now)?;
                report.expired += 1;
                report.errors.push(format!(
                    "spool entry {} for {} kept: {why}",
                    entry.summary.id, entry.summary.destination
                ));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(uid: &str) -> RemoteMessage {
        RemoteMessage {
            folder: "INBOX".into(),
            uid: Some(uid.into()),
            uidvalidity: None,
            size: 5,
            number: 1,
            mailbox: Vec::new(),
            flags: String::new(),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(60),
            max: Duration::from_secs(600),
            max_age: Duration::from_secs(3600),
        }
    }

    fn spool_one(state: &mut State, now: i64) -> i64 {
        let outcome = crate::store::commit::Outcome {
            message: remote("u1"),
            message_id: Some("<m@x>".into()),
            header_hash: None,
            disposition: crate::store::commit::Disposition::Delivered,
            owed: vec![crate::store::commit::Owed {
                destination: "relay".into(),
                recipients: vec!["a@x".to_string()],
                error: "451 try later".into(),
            }],
            sender: Some("s@x".into()),
            bytes: b"Subject: x\n\nbody\n".to_vec(),
            dedup: None,
        };
        state
            .commit("acct", &[outcome], "c", now, &policy())
            .unwrap();
        state.spool_list(Some("acct")).unwrap()[0].id
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy();
        assert_eq!(p.delay(1).as_secs(), 60);
        assert_eq!(p.delay(2).as_secs(), 120);
        assert_eq!(p.delay(4).as_secs(), 480);
        assert_eq!(p.delay(5).as_secs(), 600);
        assert_eq!(p.delay(500).as_secs(), 600);
    }

    #[test]
    fn spooling_and_seen_are_one_commit() {
        let mut state = State::in_memory().unwrap();
        let id = spool_one(&mut state, 1000);
        assert!(state.seen_uids("acct", "INBOX", 0).unwrap().contains("u1"));
        let e = state.spool_get(id).unwrap().unwrap();
        assert_eq!(e.message, b"Subject: x\n\nbody\n");
        assert_eq!(e.summary.recipients, vec!["a@x"]);
        assert_eq!(e.summary.next_attempt, 1060);
        assert_eq!(state.spooled_count("acct").unwrap(), 1);
        // From INBOX without flags: the root, none.
        assert!(e.summary.mailbox.is_empty() && e.summary.flags.is_empty());
    }

    /// A retry must land where the first attempt would have: the folder's
    /// levels (any character, a line break among them) and the flags
    /// survive the spool.
    #[test]
    fn the_spool_keeps_the_folder_and_flags() {
        let mut state = State::in_memory().unwrap();
        let mut message = remote("u2");
        message.folder = "INBOX/Lists/a.b".into();
        message.mailbox = vec!["Lists".into(), "a.b\n/x".into()];
        message.flags = "FS".into();
        let outcome = crate::store::commit::Outcome {
            message,
            message_id: None,
            header_hash: None,
            disposition: crate::store::commit::Disposition::Delivered,
            owed: vec![crate::store::commit::Owed {
                destination: "home".into(),
                recipients: vec!["a@x".to_string()],
                error: "disk full".into(),
            }],
            sender: None,
            bytes: b"x\n".to_vec(),
            dedup: None,
        };
        state
            .commit("acct", &[outcome], "c", 1000, &policy())
            .unwrap();
        let id = state.spool_list(Some("acct")).unwrap()[0].id;
        let e = state.spool_get(id).unwrap().unwrap();
        assert_eq!(e.summary.mailbox, ["Lists", "a.b\n/x"]);
        assert_eq!(e.summary.flags, "FS");
        assert_eq!(mailbox_from_column(None), Vec::<String>::new());
        assert_eq!(mailbox_from_column(Some("garbage")), Vec::<String>::new());
    }

    #[test]
    fn flush_follows_the_injected_clock() {
        let mut state = State::in_memory().unwrap();
        let id = spool_one(&mut state, 1000);
        let fail = || Error::delivery("relay", "451 later", Failure::Temporary);
        let mut calls = 0;
        let mut never_bounce = |_: &SpoolEntry, _: &GiveUp| -> Result<()> { panic!("no bounce") };
        // Not due yet.
        let r = flush(
            &mut state,
            "acct",
            1059,
            None,
            &policy(),
            &mut |_| {
                calls += 1;
                Err(fail())
            },
            &mut never_bounce,
        )
        .unwrap();
        assert_eq!(r, FlushReport::default());
        // Due: fails again, next in 120 s.
        let r = flush(
            &mut state,
            "acct",
            1060,
            None,
            &policy(),
            &mut |_| Err(fail()),
            &mut never_bounce,
        )
        .unwrap();
        assert_eq!(r.deferred, 1);
        assert_eq!(
            state.spool_get(id).unwrap().unwrap().summary.next_attempt,
            1180
        );
        // A forced flush of that id ignores the schedule and delivers.
        let r = flush(
            &mut state,
            "acct",
            1061,
            Some(&[id]),
            &policy(),
            &mut |_| Ok(()),
            &mut never_bounce,
        )
        .unwrap();
        assert_eq!(r.delivered, 1);
        assert_eq!(state.spooled_count("acct").unwrap(), 0);
        let history = state.spool_history(id).unwrap();
        assert_eq!(history.len(), 3, "{history:?}");
        assert_eq!(history[2].1, "delivered");
        assert_eq!(calls, 0);
    }

    #[test]
    fn old_or_refused_entries_bounce_and_unbounceable_ones_are_kept() {
        let mut state = State::in_memory().unwrap();
        let id = spool_one(&mut state, 1000);
        let transient = |_: &SpoolEntry| -> Result<()> {
            Err(Error::delivery("relay", "451", Failure::Temporary))
        };
        // Past max_age and the bounce fails: kept, marked expired.
        let r = flush(
            &mut state,
            "acct",
            1000 + 3600,
            None,
            &policy(),
            &mut { transient },
            &mut |_, why| {
                assert!(matches!(why, GiveUp::Expired { .. }));
                Err(Error::Internal("no route".into()))
            },
        )
        .unwrap();
        assert_eq!(r.expired, 1);
        let e = state.spool_get(id).unwrap().unwrap();
        assert!(e.summary.expired);
        // Expired entries are not retried on their own, but a forced one is;
        // a permanent refusal bounces and removes it.
        assert!(state.spool_due("acct", 1_000_000).unwrap().is_empty());
        let mut bounced = Vec::new();
        let r = flush(
            &mut state,
            "acct",
            9000,
            Some(&[id]),
            &policy(),
            &mut |_| Err(Error::delivery("relay", "550 no", Failure::Refused)),
            &mut |e, why| {
                bounced.push((e.summary.id, why.clone()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(r.bounced, 1);
        assert!(matches!(&bounced[0].1, GiveUp::Refused(m) if m.contains("550")));
        assert_eq!(state.spooled_count("acct").unwrap(), 0);
    }

    #[test]
    fn intents_survive_until_the_commit() {
        let mut state = State::in_memory().unwrap();
        let intent = Intent {
            folder: "INBOX".into(),
            uidvalidity: 0,
            uid: "u1".into(),
            destination: "home".into(),
            name: "123.mr.host,S=5".into(),
        };
        state
            .record_intents("acct", std::slice::from_ref(&intent), 10)
            .unwrap();
        let renamed = Intent {
            name: "other".into(),
            ..intent.clone()
        };
        state.record_intents("acct", &[renamed], 11).unwrap();
        assert_eq!(
            state
                .intent("acct", "INBOX", 0, "u1", "home")
                .unwrap()
                .as_deref(),
            Some("123.mr.host,S=5"),
            "the first name is kept"
        );
        let done = crate::store::commit::Outcome {
            message: remote("u1"),
            message_id: None,
            header_hash: None,
            disposition: crate::store::commit::Disposition::Delivered,
            owed: Vec::new(),
            sender: None,
            bytes: Vec::new(),
            dedup: None,
        };
        state.commit("acct", &[done], "c", 12, &policy()).unwrap();
        assert_eq!(
            state.intent("acct", "INBOX", 0, "u1", "home").unwrap(),
            None
        );
    }
}
