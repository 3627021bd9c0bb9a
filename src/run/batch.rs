//! The batch of messages a run is done with and has not committed yet,
//! and its commit: the only code that calls destination sync → store
//! commit → source `delivered`/`delete`, in that order.
//!
//! Every message the run decides about (delivered, spooled for some
//! destination, refused, dropped by rule, a suspected loop) becomes an
//! `Outcome` pushed here. The batch is one message unless every
//! destination can defer its sync and recognise its own earlier
//! deliveries (Maildir): then up to `BATCH_MESSAGES` share one sync and
//! one transaction (group commit). A failed sync or commit drops the
//! whole batch: nothing of it is marked seen and nothing deleted, and the
//! delivery intents let the next run redo it without duplicates.

use std::time::{Duration, Instant};

use crate::audit;
use crate::error::Result;
use crate::retention::Delivered;
use crate::store::commit::{Disposition, Outcome};

use super::AccountRun;

/// Group commit: at most this many messages share one sync and one
/// commit...
pub(crate) const BATCH_MESSAGES: usize = 64;
/// ...or this many bytes...
const BATCH_BYTES: u64 = 8 << 20;
/// ...or wait this long for their commit (which bounds what a crash or
/// power cut makes the next run download again).
const BATCH_AGE: Duration = Duration::from_secs(1);

/// One decided message waiting for its commit, with what to tell the user
/// once it is committed.
pub(crate) struct Pending {
    /// What is committed.
    pub outcome: Outcome,
    /// Whether it counts as retrieved (for the report and the exit code).
    pub counts: bool,
    /// Its size as delivered, for the report.
    pub bytes: u64,
    /// Lines for the report once committed (refusals, spooling).
    pub warnings: Vec<String>,
    /// A line reported even with `-q` (suspected loops).
    pub alert: Option<String>,
    /// What the audit log says of it.
    pub audit: audit::Outcome,
    /// Why, for the audit log.
    pub detail: Option<String>,
    /// The destinations it went to, for the audit log, when a rule or the
    /// filter chose them (`None`: the account's `deliver_to`).
    pub to: Option<Vec<String>>,
}

/// Messages decided and waiting for their commit.
pub(crate) struct Batch {
    /// Messages per commit: 1 unless every destination defers its sync.
    limit: usize,
    pending: Vec<Pending>,
    bytes: u64,
    since: Option<Instant>,
    /// Set by a failed sync or commit: nothing after it is committed in
    /// this run.
    failed: bool,
}

impl Batch {
    pub(crate) fn new(limit: usize) -> Batch {
        Batch {
            limit,
            pending: Vec::new(),
            bytes: 0,
            since: None,
            failed: false,
        }
    }

    pub(crate) fn push(&mut self, pending: Pending) {
        self.since.get_or_insert_with(Instant::now);
        self.bytes += pending.bytes;
        self.pending.push(pending);
    }

    pub(crate) fn is_due(&self) -> bool {
        self.pending.len() >= self.limit
            || self.bytes >= BATCH_BYTES
            || self.since.is_some_and(|t| t.elapsed() >= BATCH_AGE)
    }

    /// Whether a message waiting for its commit will record this
    /// (normalised) Message-ID for `dedup`.
    pub(crate) fn holds_message_id(&self, message_id: &str) -> bool {
        self.pending.iter().any(|p| {
            p.outcome
                .dedup
                .as_ref()
                .is_some_and(|k| k.message_id == message_id)
        })
    }

    fn take(&mut self) -> Vec<Pending> {
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.pending)
    }
}

impl AccountRun<'_> {
    /// Decides a message: into the batch, and the batch committed when it
    /// is due.
    pub(crate) fn decide(&mut self, pending: Pending) -> Result<()> {
        self.batch.push(pending);
        if self.batch.is_due() {
            self.commit_batch()?;
        }
        Ok(())
    }

    /// Steps 2b to 4 of the durable order for every message in the batch:
    /// sync every destination, commit the batch's outcomes in one
    /// transaction, and only then tell the source (flags, deletion). The
    /// destinations are synced even when the batch is empty, so whatever
    /// was delivered so far is durable when this returns `Ok`.
    pub(crate) fn commit_batch(&mut self) -> Result<()> {
        if self.batch.failed {
            return Ok(());
        }
        // 2b. Every delivery durable.
        for d in self.destinations.iter_mut() {
            if let Some(g) = d.group_commit() {
                if let Err(e) = g.sync() {
                    // Those deliveries did not happen: the batch is not
                    // committed, nothing of it is deleted.
                    self.batch.take();
                    self.batch.failed = true;
                    return Err(e);
                }
            }
        }
        let pending = self.batch.take();
        if pending.is_empty() {
            return Ok(());
        }
        crate::fault::point("synced");
        // 3. One transaction: the commit that makes deletion safe.
        let outcomes: Vec<Outcome> = pending.iter().map(|p| p.outcome.clone()).collect();
        let now = crate::retry::now();
        if let Err(e) = self.state.commit(
            &self.account.name,
            &outcomes,
            &self.fingerprint,
            now,
            &self.policy,
        ) {
            self.batch.failed = true;
            return Err(super::cannot_spool(&outcomes, e));
        }
        log::debug!(
            "{}: committed {} message(s) in one transaction",
            self.account.name,
            pending.len()
        );
        // 4. Tell the source; only now may the server copy go.
        for p in pending {
            self.report_committed(&p)?;
            let message = &p.outcome.message;
            if matches!(
                p.outcome.disposition,
                Disposition::Delivered | Disposition::Dropped(_) | Disposition::Filtered(_)
            ) {
                self.source.delivered(message)?;
            }
            // With keep, retention may make it due at once (bigger than
            // delete_bigger_than): judged on what was just committed.
            let due = || {
                self.retention.due(
                    Some(Delivered {
                        at: now,
                        size: message.size,
                    }),
                    now,
                )
            };
            // A rule's or filter's `delete` is never decided under
            // `--keep` (see `AccountRun::filtered`).
            let despite_keep = p.outcome.deleted_despite_keep();
            if p.outcome.removes_from_server() && (!self.keep || despite_keep || due()) {
                self.source.delete(message)?;
                crate::fault::point("delete-queued");
            }
        }
        Ok(())
    }

    /// The report and the audit log, for a committed message.
    fn report_committed(&mut self, p: &Pending) -> Result<()> {
        let o = &p.outcome;
        // Spooled for some destination is not delivered.
        if !o.owed.is_empty() {
            self.report.spooled += 1;
        } else if p.counts {
            match o.disposition {
                Disposition::Dropped(_) => self.report.dropped += 1,
                _ => self.report.messages += 1,
            }
        }
        if p.counts {
            self.report.bytes += p.bytes;
        }
        if let Disposition::RefusedKept(_) = &o.disposition {
            // Its line ends the run (exit 10), said once.
            for line in &p.warnings {
                self.unfinished(line.clone(), crate::error::Failure::Refused);
            }
        } else {
            self.report.warnings.extend(p.warnings.iter().cloned());
        }
        if let Some(a) = &p.alert {
            self.report.alerts.push(a.clone());
        }
        super::audit_message(
            self.audit,
            self.account,
            p.to.as_deref(),
            &o.message,
            o.message_id.as_deref(),
            p.audit,
            p.detail.as_deref(),
        )
    }
}
