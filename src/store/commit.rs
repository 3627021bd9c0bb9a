//! The one durable transition: what became of a batch of messages, in one
//! IMMEDIATE transaction. Every message a run is done with goes through
//! `State::commit` exactly once, whatever became of it (delivered, spooled
//! for some destination, refused and kept, dropped by rule, a suspected
//! loop); the commit always settles the messages' delivery intents. The
//! server copy may be deleted only after this returns `Ok`, and only for
//! outcomes whose `removes_from_server` says so.

use rusqlite::{params, TransactionBehavior};

use crate::error::{Error, Result};
use crate::source::RemoteMessage;

use super::dedup::{record_delivered, DedupKey};
use super::spool::{spool_in, NewSpoolEntry, RetryPolicy};
use super::{record_seen, wrap, State};

/// What a destination still owes for a message: put in the retry spool
/// by the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    /// The destination's name.
    pub destination: String,
    /// The recipients still owed there.
    pub recipients: Vec<String>,
    /// Why the first attempt failed.
    pub error: String,
}

/// What was decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every destination has it, or the spool holds it for those that
    /// failed for now: marked seen; the server copy may go.
    Delivered,
    /// Refused for good by a destination and kept on the server
    /// (`on_refused = "keep"`, or a bounce that could not be sent):
    /// recorded so it is not downloaded again while the account's
    /// delivery config stays the same; not seen, never deleted.
    RefusedKept(String),
    /// Refused for good and removed by rule (`on_refused = "delete"` or a
    /// bounce that was sent): marked seen; the server copy may go.
    Dropped(String),
    /// A suspected mail loop: left on the server, recorded like a refusal
    /// (reported again by every run), never deleted.
    Loop(String),
    /// Left on the server by a rule or `filter_command` (`leave`):
    /// recorded like a refusal, so it is not asked about again while the
    /// account's delivery config (its rules and filter included) stays
    /// the same; not seen, never deleted.
    Left(String),
    /// Deleted by a rule or `filter_command` (`delete`), its body never
    /// downloaded: marked seen; the server copy goes, with `keep = true`
    /// too (never with `--keep`, which does not decide this at all).
    Filtered(String),
}

/// One message's outcome, for `State::commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The message on the server.
    pub message: RemoteMessage,
    /// Its `Message-ID`, if known.
    pub message_id: Option<String>,
    /// `crate::message::header_hash` of its header, if known.
    pub header_hash: Option<String>,
    /// What was decided.
    pub disposition: Disposition,
    /// Destinations that failed for now and are owed the message.
    pub owed: Vec<Owed>,
    /// The envelope sender, for the spool.
    pub sender: Option<String>,
    /// The bytes as delivered (only kept when something is owed).
    pub bytes: Vec<u8>,
    /// `dedup`: what to record once it is committed as delivered with
    /// nothing owed (a spooled copy is not yet delivered, so it does not
    /// make later copies duplicates).
    pub dedup: Option<DedupKey>,
}

impl Outcome {
    /// Whether the server copy may be deleted once this is committed.
    pub fn removes_from_server(&self) -> bool {
        matches!(
            self.disposition,
            Disposition::Delivered | Disposition::Dropped(_) | Disposition::Filtered(_)
        )
    }

    /// Whether it is deleted even from an account that keeps its mail
    /// (`keep = true`): a rule's or filter's `delete`.
    pub fn deleted_despite_keep(&self) -> bool {
        matches!(self.disposition, Disposition::Filtered(_))
    }
}

/// Kinds of rows in the `refused` table.
pub(crate) const REFUSED: &str = "refused";
pub(crate) const LOOP: &str = "loop";
/// Left on the server by a rule or the filter command.
pub(crate) const LEFT: &str = "filtered";

/// A message recorded as refused or as a suspected loop, kept on the
/// server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRecord {
    /// `true` for a suspected mail loop.
    pub is_loop: bool,
    /// Why.
    pub reason: String,
}

impl State {
    /// Commits a batch of outcomes in one transaction: marks delivered and
    /// dropped messages seen, records refused and looping ones (with the
    /// account's delivery-config fingerprint, so a config change gives
    /// them another try), spools what destinations owe, and settles every
    /// message's delivery intents. Nothing of the batch is recorded when
    /// this fails.
    ///
    /// A failed transaction is tried twice more, a moment apart: what it
    /// records has already been delivered, and destinations that cannot
    /// recognise their own deliveries (mbox, MDA, SMTP, LMTP) would get it
    /// again from the next run. (SQLite rolls a failed COMMIT back, so a
    /// retry records nothing twice.)
    pub fn commit(
        &mut self,
        account: &str,
        outcomes: &[Outcome],
        fingerprint: &str,
        now: i64,
        policy: &RetryPolicy,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.commit_once(account, outcomes, fingerprint, now, policy) {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 2 => {
                    attempt += 1;
                    log::warn!(
                        "{account}: committing to the state database failed ({e}); trying again"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn commit_once(
        &mut self,
        account: &str,
        outcomes: &[Outcome],
        fingerprint: &str,
        now: i64,
        policy: &RetryPolicy,
    ) -> Result<()> {
        let path = self.path.clone();
        let err = |e: rusqlite::Error| wrap(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        for o in outcomes {
            match &o.disposition {
                Disposition::Delivered | Disposition::Dropped(_) | Disposition::Filtered(_) => {
                    record_seen(
                        &tx,
                        account,
                        &o.message,
                        o.message_id.as_deref(),
                        o.header_hash.as_deref(),
                        now,
                    )
                    .map_err(err)?;
                    if let (Disposition::Delivered, true, Some(key)) =
                        (&o.disposition, o.owed.is_empty(), &o.dedup)
                    {
                        record_delivered(&tx, account, key, now).map_err(err)?;
                    }
                }
                Disposition::RefusedKept(reason)
                | Disposition::Loop(reason)
                | Disposition::Left(reason) => {
                    if let Some(uid) = &o.message.uid {
                        let kind = match o.disposition {
                            Disposition::Loop(_) => LOOP,
                            Disposition::Left(_) => LEFT,
                            _ => REFUSED,
                        };
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO refused
                             (account, folder, uidvalidity, uid, refused_at, reason, kind, config)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                account,
                                o.message.folder,
                                o.message.uidvalidity.unwrap_or(0),
                                uid,
                                now,
                                reason,
                                kind,
                                fingerprint
                            ])
                        })
                        .map_err(err)?;
                    }
                }
            }
            let spooled: Vec<NewSpoolEntry> = o
                .owed
                .iter()
                .map(|owed| NewSpoolEntry {
                    destination: &owed.destination,
                    sender: o.sender.as_deref(),
                    recipients: &owed.recipients,
                    message: &o.bytes,
                    error: &owed.error,
                })
                .collect();
            spool_in(
                &tx,
                account,
                &o.message,
                o.message_id.as_deref(),
                &spooled,
                now,
                policy,
            )
            .map_err(err)?;
        }
        crate::fault::io("state-commit").map_err(|e| Error::State {
            path: path.display().to_string(),
            message: format!("commit: {e}"),
        })?;
        tx.commit().map_err(err)?;
        crate::fault::point("committed");
        Ok(())
    }

    /// The refusal or suspected loop recorded for a message under the
    /// account's current delivery config (`fingerprint`), if any. A record
    /// made under another config (or before configs were recorded) does
    /// not count: the message is tried again, so a refusal that was
    /// really a fault of the old config does not bury it.
    pub fn refused_record(
        &self,
        account: &str,
        message: &RemoteMessage,
        fingerprint: &str,
    ) -> Result<Option<RefusedRecord>> {
        use rusqlite::OptionalExtension;
        let Some(uid) = &message.uid else {
            return Ok(None);
        };
        self.conn
            .prepare_cached(
                "SELECT kind, reason FROM refused WHERE account = ?1 AND folder = ?2
                 AND uidvalidity = ?3 AND uid = ?4 AND config = ?5",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        account,
                        message.folder,
                        message.uidvalidity.unwrap_or(0),
                        uid,
                        fingerprint
                    ],
                    |r| {
                        Ok(RefusedRecord {
                            is_loop: r.get::<_, String>(0)? == LOOP,
                            reason: r.get(1)?,
                        })
                    },
                )
                .optional()
            })
            .map_err(|e| wrap(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::msg;

    fn outcome(uid: &str, disposition: Disposition) -> Outcome {
        Outcome {
            message: msg(uid),
            message_id: None,
            header_hash: None,
            disposition,
            owed: Vec::new(),
            sender: None,
            bytes: Vec::new(),
            dedup: None,
        }
    }

    #[test]
    fn one_commit_records_every_kind_and_settles_intents() {
        let mut s = State::in_memory().unwrap();
        for uid in ["d", "k", "x", "l", "s", "f", "g"] {
            s.record_intents(
                "a",
                &[super::super::spool::Intent {
                    folder: "INBOX".into(),
                    uidvalidity: 0,
                    uid: uid.into(),
                    destination: "home".into(),
                    name: format!("n-{uid}"),
                }],
                1,
            )
            .unwrap();
        }
        let mut spooled = outcome("s", Disposition::Delivered);
        spooled.owed.push(Owed {
            destination: "relay".into(),
            recipients: vec!["a@x".into()],
            error: "451".into(),
        });
        spooled.bytes = b"Subject: s\n\nbody\n".to_vec();
        let outcomes = vec![
            outcome("d", Disposition::Delivered),
            outcome("k", Disposition::RefusedKept("550".into())),
            outcome("x", Disposition::Dropped("550".into())),
            outcome("l", Disposition::Loop("loop".into())),
            spooled,
            outcome("f", Disposition::Left("filtered: leave (rule 1)".into())),
            outcome(
                "g",
                Disposition::Filtered("filtered: delete (rule 2)".into()),
            ),
        ];
        s.commit("a", &outcomes, "cfg1", 100, &RetryPolicy::default())
            .unwrap();
        let seen = s.seen_uids("a", "INBOX", 0).unwrap();
        assert!(seen.contains("d") && seen.contains("x") && seen.contains("s"));
        assert!(!seen.contains("k") && !seen.contains("l"));
        // Left by a filter: not seen, recorded so it is not asked again
        // under the same config; deleted by one: seen.
        assert!(!seen.contains("f") && seen.contains("g"));
        let f = s.refused_record("a", &msg("f"), "cfg1").unwrap().unwrap();
        assert!(!f.is_loop && f.reason.contains("leave (rule 1)"));
        assert_eq!(s.refused_record("a", &msg("f"), "cfg2").unwrap(), None);
        assert!(!outcomes[5].removes_from_server() && !outcomes[5].deleted_despite_keep());
        assert!(outcomes[6].removes_from_server() && outcomes[6].deleted_despite_keep());
        assert_eq!(s.spooled_count("a").unwrap(), 1);
        for uid in ["d", "k", "x", "l", "s", "f", "g"] {
            assert_eq!(s.intent("a", "INBOX", 0, uid, "home").unwrap(), None);
        }
        let k = s.refused_record("a", &msg("k"), "cfg1").unwrap().unwrap();
        assert!(!k.is_loop);
        let l = s.refused_record("a", &msg("l"), "cfg1").unwrap().unwrap();
        assert!(l.is_loop);
        // Another delivery config: the refusal no longer buries the message.
        assert_eq!(s.refused_record("a", &msg("k"), "cfg2").unwrap(), None);
        assert!(outcomes[0].removes_from_server() && outcomes[2].removes_from_server());
        assert!(!outcomes[1].removes_from_server() && !outcomes[3].removes_from_server());
    }

    #[test]
    fn a_failed_commit_records_nothing() {
        let mut s = State::in_memory().unwrap();
        s.conn
            .execute_batch("CREATE TRIGGER no_seen BEFORE INSERT ON spool BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END;")
            .unwrap();
        let mut spooled = outcome("s", Disposition::Delivered);
        spooled.owed.push(Owed {
            destination: "relay".into(),
            recipients: vec!["a@x".into()],
            error: "451".into(),
        });
        let outcomes = vec![outcome("d", Disposition::Delivered), spooled];
        assert!(s
            .commit("a", &outcomes, "c", 1, &RetryPolicy::default())
            .is_err());
        assert!(s.seen_uids("a", "INBOX", 0).unwrap().is_empty());
    }
}
