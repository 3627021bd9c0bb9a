//! One account's run: the source, the destinations, the batch waiting for
//! its commit and the report, in one object (`AccountRun`). Its steps, in
//! order: open the destinations, retry the spool, scan the server, pick
//! what to fetch, then for each message download → deliver → decide
//! (`decide`, which commits the batch when due), and at the end commit
//! what is left, end the session and record how far the folders are
//! dealt with.

use std::collections::{HashMap, VecDeque};

use crate::audit::{self, AuditLog};
use crate::config::{Account, Config};
use crate::destination::{self, DeliveryReport, Destination};
use crate::error::{Error, Failure, Result};
use crate::message::{self, Envelope, TraceInfo};
use crate::progress::AccountProgress;
use crate::retention::Retention;
use crate::retry;
use crate::source::{self, RemoteMessage, Source};
use crate::store::commit::{Disposition, Outcome};
use crate::store::dedup::{normalise_message_id, DedupKey};
use crate::store::spool::{Intent, RetryPolicy};
use crate::store::State;

use super::batch::{Batch, Pending, BATCH_MESSAGES};
use super::envelope::{self, Addressing};
use super::verdict::{self, Attempt, Unopened, Verdict};
use super::{AccountReport, FetchOptions};

/// Headers first: the headers of this many messages are fetched at once
/// (and kept in memory until their messages are done).
const HEADERS_AT_ONCE: usize = 64;

/// Messages judged on their headers and waiting for their bodies, which
/// are downloaded together (so the source may pipeline).
#[derive(Default)]
struct Bulk {
    messages: Vec<RemoteMessage>,
    /// `dedup`: a copy is judged only once the copies before it are
    /// delivered (and so recorded): the Message-IDs judged since the bulk
    /// was last downloaded,
    ids: Vec<String>,
    /// and whether it holds a message judged only after its download.
    unknown: bool,
}

impl Bulk {
    /// The messages to download now; the bulk starts anew.
    fn take(&mut self) -> Vec<RemoteMessage> {
        self.ids.clear();
        self.unknown = false;
        std::mem::take(&mut self.messages)
    }
}

/// Room for the `Received:` header added after download, in the size
/// announced before the body is known (headers first; LMTP's SIZE, SMTP
/// declares none).
const RECEIVED_ALLOWANCE: u64 = 512;

/// One account's run, from the scan to the last commit.
pub(crate) struct AccountRun<'a> {
    pub(crate) config: &'a Config,
    pub(crate) account: &'a Account,
    pub(crate) state: &'a mut State,
    pub(crate) report: &'a mut AccountReport,
    pub(crate) audit: Option<&'a AuditLog>,
    pub(crate) source: Box<dyn Source + 'a>,
    pub(crate) destinations: Vec<Box<dyn Destination>>,
    /// The names of `destinations`: the account's `deliver_to`, then
    /// those only its rules or its filter command route to.
    pub(crate) names: Vec<String>,
    pub(crate) batch: Batch,
    pub(crate) policy: RetryPolicy,
    /// `delivery_fingerprint` of the account's delivery config.
    pub(crate) fingerprint: String,
    /// Leave mail on the server (config or `--keep`).
    pub(crate) keep: bool,
    /// With `keep` from the config: what is deleted all the same once
    /// the state says it is due. Off with `--keep` (nothing is deleted).
    pub(crate) retention: Retention,
    /// The first message left undone (refused and kept, or deferred
    /// before download): the run ends with its line (exit 10) so cron
    /// says so; later ones are warnings.
    pub(crate) unfinished: Option<Error>,
    /// The first local fault behind a spooled copy: the run ends with it.
    pub(crate) faulted: Option<Error>,
    /// `--adopt` applies: mark what is on the server seen, fetch nothing.
    pub(crate) adopt: bool,
    /// `--keep`: nothing is deleted this run, not even by a rule.
    pub(crate) no_delete: bool,
    /// What the POP3 scan looks up of the seen ids, read before the
    /// session started (while its connection was being made).
    pub(crate) seen_read: Option<SeenRead>,
}

/// What was read of a POP3 account's seen ids before its scan.
pub(crate) enum SeenRead {
    /// Every id and its size.
    Sizes(HashMap<String, u64>),
    /// Their totals only (the STAT shortcut's).
    Totals(crate::store::SeenTotals),
}

/// Fetches one account with its lock held and its state open.
pub(super) fn fetch_locked(
    config: &Config,
    account: &Account,
    options: &FetchOptions,
    state: &mut State,
    report: &mut AccountReport,
    audit: Option<&AuditLog>,
) -> Result<()> {
    let keep = options.keep || account.keep;
    let adopt = shard_arrival(account, options, state, keep, report)?;
    let destinations = routed_to(config, account)
        .iter()
        .map(|name| destination::open(name, &config.destinations[name], &config.general.hostname))
        .collect::<Result<Vec<_>>>()?;
    let identity = format!(
        "{}@{}",
        account.user,
        account.server.host.to_ascii_lowercase()
    );
    if let Some(old) = state.bind_identity(&account.name, &identity)? {
        report.warnings.push(format!(
            "now fetches from {identity} instead of {old}: what was seen in the old mailbox was forgotten"
        ));
    }
    // The spool first: what was downloaded before is retried from here,
    // never fetched again.
    if !options.check {
        report.flushed = retry::flush_account(config, &account.name, state, None, retry::now())?;
        report
            .warnings
            .extend(report.flushed.errors.iter().cloned());
    }
    // A spooled copy that a local fault keeps from its destination: the
    // run says so with its exit code (10; 3 when a destination refused
    // our credentials), not only in a warning.
    let spool_fault = report.flushed.local_faults.first().map(|f| {
        if let Some(why) = &report.flushed.auth_failure {
            return Error::Auth(why.clone());
        }
        let more = match report.flushed.local_faults.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        Error::delivery("spool", format!("{f}{more}"), crate::error::Failure::Local)
    });
    // `--keep` means nothing is deleted this run, retention included.
    let retention = if options.keep {
        Retention::default()
    } else {
        account.retention
    };
    // A rule or the filter may delete what the account otherwise keeps
    // (never with `--keep`).
    let filter_deletes = !options.keep && account.filter.may_delete();
    // What a POP3 scan looks up, read while the connection (started
    // early, see `net::early`) is being made rather than after the
    // server has answered. Nothing records a message seen between here
    // and the scan.
    // A run that may take the mailbox as unchanged on STAT (keep mode,
    // no retention, not a run that lists in full) reads only the totals
    // of the seen ids and, later, the last message's record: every id
    // (2,000 of them are about a sixth of such a run's own work) is read
    // only when the shortcut does not hold.
    let seen_read = match (account.protocol, options.fetches_all(account)) {
        (crate::config::Protocol::Pop3, false) => {
            let folder = crate::source::pop3::POP3_FOLDER;
            let shortcut = keep
                && !retention.is_set()
                && !crate::source::pop3::lists_in_full(state.counters(&account.name)?.runs);
            Some(if shortcut {
                SeenRead::Totals(state.seen_totals(&account.name, folder, 0)?)
            } else {
                SeenRead::Sizes(state.seen_sizes(&account.name, folder, 0)?)
            })
        }
        _ => None,
    };
    // The source, holding a slot of its server's max_connections_per_host
    // until the run ends; none while a LOGIN-DELAY lasts.
    // With the login, the scan's first questions when it will ask them
    // (`source::pop3::connect`).
    let expect_stat = match &seen_read {
        Some(SeenRead::Totals(t)) => t.as_stat(),
        _ => None,
    };
    let usage = super::SourceUse {
        keep,
        retention: retention.is_set(),
        filter_deletes,
        expect_stat,
    };
    let Some((source, _slot)) = super::open_source(config, account, usage, state, report)? else {
        return Ok(());
    };
    let mut run = AccountRun::new(
        config,
        account,
        state,
        report,
        audit,
        source,
        destinations,
        keep,
    );
    run.faulted = spool_fault;
    run.retention = retention;
    run.adopt = adopt;
    run.no_delete = options.keep;
    run.seen_read = seen_read;
    run.fetch(options)
}

/// The destinations an account's mail may go to: its `deliver_to`, then
/// those its rules name, then (with `filter_command`, which may print any)
/// every other destination of the config. Opening one costs nothing until
/// a message goes there.
fn routed_to(config: &Config, account: &Account) -> Vec<String> {
    let mut names = account.deliver_to.clone();
    let mut add = |name: &String| {
        if !names.contains(name) && config.destinations.contains_key(name) {
            names.push(name.clone());
        }
    };
    for rule in &account.filter.rules {
        if let crate::filter::Action::DeliverTo(to) = &rule.action {
            to.iter().for_each(&mut add);
        }
    }
    if account.filter.command.is_some() {
        config.destinations.keys().for_each(&mut add);
    }
    names
}

/// Whether this run must adopt the account's mail (`--adopt`), or refuse
/// it: a keep-mode account whose seen-state is not current here (it moved
/// from another shard when N changed) would have every message on its
/// server delivered again (see `crate::store::shards`). Accounts that
/// delete what they fetch, `--all` and `fetch_all` runs go ahead.
fn shard_arrival(
    account: &Account,
    options: &FetchOptions,
    state: &mut State,
    keep: bool,
    report: &mut AccountReport,
) -> Result<bool> {
    use crate::store::shards::Placement;
    let Some(spec_id) = options.shard_spec else {
        return Ok(false);
    };
    if !keep || options.fetches_all(account) {
        return Ok(false);
    }
    let placement = state.placement(&account.name)?;
    if placement == Placement::Current {
        return Ok(false);
    }
    // `--adopt-from`: the seen-state of the shard that last ran it, then
    // a normal run (which fetches what arrived since).
    if !options.adopt_from.is_empty() {
        if let Some(donor) = crate::store::shards::find_donor(&options.adopt_from, &account.name)? {
            let seen = state.adopt_from(&donor, &account.name, spec_id)?;
            let line = format!(
                "--adopt-from: seen-state copied from {} ({seen} message(s) seen there)",
                donor.path.display()
            );
            log::info!("{}: {line}", account.name);
            report.warnings.push(line);
            return Ok(false);
        }
    }
    match placement {
        Placement::Current => Ok(false),
        Placement::New => Ok(options.adopt),
        Placement::Arrived { .. } if options.adopt => Ok(true),
        Placement::Arrived { spec } => Err(Error::Config(format!(
            "moved here from another shard (this state ran as shard {spec}, which left it to another), \
             and it keeps mail on the server: fetching it now would deliver again what the other shard \
             delivered. Run once with --adopt-from OLD_STATE_DIR to copy the seen-state of the shard \
             that had it (then mail that arrived since is fetched){}, with --adopt to mark the mail now \
             on the server as seen without downloading it, or with --all to fetch all of it again \
             (README, \"Changing N\")",
            if options.adopt_from.is_empty() {
                ""
            } else {
                " (none of the --adopt-from dirs has state for it)"
            }
        ))),
    }
}

impl<'a> AccountRun<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &'a Config,
        account: &'a Account,
        state: &'a mut State,
        report: &'a mut AccountReport,
        audit: Option<&'a AuditLog>,
        source: Box<dyn Source + 'a>,
        destinations: Vec<Box<dyn Destination>>,
        keep: bool,
    ) -> AccountRun<'a> {
        let names = destinations
            .iter()
            .enumerate()
            .map(|(i, d)| match account.deliver_to.get(i) {
                Some(name) => name.clone(),
                None => d.name().to_string(),
            })
            .collect();
        AccountRun {
            config,
            account,
            state,
            report,
            audit,
            source,
            destinations,
            names,
            batch: Batch::new(1),
            policy: retry::policy(config),
            fingerprint: envelope::delivery_fingerprint(config, account),
            keep,
            retention: Retention::default(),
            unfinished: None,
            faulted: None,
            adopt: false,
            no_delete: false,
            seen_read: None,
        }
    }

    /// The whole run on an open source: scan, fetch, deliver, commit,
    /// end the session.
    pub(crate) fn fetch(&mut self, options: &FetchOptions) -> Result<()> {
        let fetch_all = options.fetches_all(self.account);
        let mut index = self.state.seen_index(&self.account.name, &self.fingerprint);
        let folder = crate::source::pop3::POP3_FOLDER;
        match self.seen_read.take() {
            Some(SeenRead::Sizes(sizes)) => index.read_already(folder, sizes),
            Some(SeenRead::Totals(totals)) => index.totals_already(folder, totals),
            None => {}
        }
        let scans = self.source.scan(&mut index, fetch_all)?;
        let read_by_scan = index.into_read();
        let updates: Vec<_> = scans
            .iter()
            .flat_map(|s| s.updates.iter().cloned())
            .collect();
        self.state
            .apply_folder_updates(&self.account.name, &updates)?;
        if self.keep
            && scans
                .iter()
                .flat_map(|s| s.new.iter())
                .any(|m| m.uid.is_none())
        {
            let _ = self.source.finish();
            return Err(Error::Protocol(
                "the server gives no unique ids (no UIDL), so with keep = true mailretr could not tell old mail from new; use keep = false".into(),
            ));
        }
        if self.adopt {
            return self.adopt(&scans);
        }
        let max_size = options.max_size.or(self.account.max_size);
        let wanted = self.choose(&scans, max_size, fetch_all)?;
        if options.check {
            self.report.waiting = wanted.len() as u64;
            return self.source.finish();
        }
        if !self.keep {
            // Delivered on an earlier run that ended before its deletions
            // took effect: finish the job.
            for message in scans.iter().flat_map(|s| s.seen_on_server.iter()) {
                self.source.delete(message)?;
            }
        } else if self.retention.is_set() {
            let seen: Vec<RemoteMessage> = scans
                .iter()
                .flat_map(|s| s.seen_on_server.iter().cloned())
                .collect();
            self.expire(&seen)?;
        }
        if let Some(window) = self.account.dedup {
            let before = retry::now() - window.as_secs() as i64;
            self.state.prune_dedup(&self.account.name, before)?;
        }
        let wanted = super::apply_limits(self.account, wanted, self.report);
        let delivered = self.deliver_all(wanted);
        // What was decided is committed even when a later message failed
        // (unless a sync or commit failed: then nothing more is).
        let committed = self.commit_batch();
        let delivered = match (delivered, committed) {
            (Ok(()), committed) => committed,
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(also)) => {
                self.report.warnings.push(also.to_string());
                Err(e)
            }
        };
        // Informational: read before the session ends (so before this
        // run's deletions take effect); never fails the run.
        if delivered.is_ok() {
            if let Err(e) = self.note_quota() {
                self.report
                    .warnings
                    .push(format!("recording the quota: {e}"));
            }
        }
        // Always end the session: deletions asked for so far take effect
        // even when a later message failed.
        crate::fault::point("finish");
        let finished = self.source.finish();
        for d in self.destinations.iter_mut() {
            d.close();
        }
        // What was committed moves the folders on, whatever else happened.
        let settled = self.source.settle();
        let settled = self
            .state
            .apply_folder_updates(&self.account.name, &settled);
        let result = delivered
            .and(finished)
            .and(settled)
            .and_then(|()| self.forget_gone(&scans, &read_by_scan));
        self.end_with(result)
    }

    /// `--adopt`: records every message on the server that is not seen
    /// yet as seen, in one transaction, without downloading, delivering
    /// or deleting anything, and ends the session.
    fn adopt(&mut self, scans: &[source::Scan]) -> Result<()> {
        let adopted: Vec<RemoteMessage> =
            scans.iter().flat_map(|s| s.new.iter().cloned()).collect();
        let recorded = self.state.adopt_seen(&self.account.name, &adopted);
        let finished = self.source.finish();
        recorded.and(finished)?;
        self.report.warnings.push(format!(
            "--adopt: {} message(s) on the server marked as seen without downloading them",
            adopted.len()
        ));
        Ok(())
    }

    /// Retention with `keep`: deletes the messages delivered on earlier
    /// runs that the state records as delivered long enough ago
    /// (`delete_after`) or as too big (`delete_bigger_than`), without
    /// downloading them. A message the state does not record is never
    /// deleted.
    fn expire(&mut self, seen: &[RemoteMessage]) -> Result<()> {
        let now = retry::now();
        let mut expired = 0u64;
        for message in seen {
            let record = self.state.delivered_record(&self.account.name, message)?;
            if self.retention.due(record, now) {
                self.source.delete(message)?;
                crate::fault::point("expire-queued");
                expired += 1;
            }
        }
        if expired > 0 {
            log::info!(
                "{}: deleting {expired} kept message(s) from the server (delete_after/delete_bigger_than)",
                self.account.name
            );
        }
        Ok(())
    }

    /// IMAP QUOTA, when offered: recorded for `status`, and a warning
    /// above `QUOTA_WARN_PERCENT`. A server that refuses the command
    /// costs a debug line.
    fn note_quota(&mut self) -> Result<()> {
        let quota = match self.source.quota() {
            Ok(Some(q)) => q,
            Ok(None) => return Ok(()),
            Err(e) => {
                log::debug!("{}: GETQUOTAROOT: {e}", self.account.name);
                return Ok(());
            }
        };
        self.state
            .set_quota(&self.account.name, &quota, retry::now())?;
        if let Some(line) = crate::retention::quota_warning(&quota) {
            self.report.warnings.push(line);
        }
        Ok(())
    }

    /// After a completed session: forgets the ids of messages the server
    /// no longer has.
    /// `read_by_scan`: the seen ids the scan read, by folder.
    fn forget_gone(
        &mut self,
        scans: &[source::Scan],
        read_by_scan: &HashMap<String, HashMap<String, u64>>,
    ) -> Result<()> {
        // Deletions a completed QUIT confirmed: those ids may be reused by
        // the server for new mail, so they are forgotten.
        let confirmed = self.source.confirmed_deletions();
        if !confirmed.is_empty() {
            self.state.forget_seen(&self.account.name, &confirmed)?;
        }
        for scan in scans {
            if let (Some(present), Some(folder)) = (
                &scan.present,
                scan.new
                    .first()
                    .or(scan.seen_on_server.first())
                    .map(|m| &m.folder),
            ) {
                // An empty listing may be a server hiccup: never forget on it.
                if !present.is_empty() {
                    self.state.forget_absent(
                        &self.account.name,
                        folder,
                        0,
                        present,
                        read_by_scan.get(folder),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The run's result: its own error, else a local fault behind a
    /// spooled copy, else the first message left undone. What does not
    /// become the error is still reported, as a warning.
    fn end_with(&mut self, result: Result<()>) -> Result<()> {
        let mut kept = [self.faulted.take(), self.unfinished.take()]
            .into_iter()
            .flatten();
        let result = match result {
            Err(e) => Err(e),
            Ok(()) => kept.next().map_or(Ok(()), Err),
        };
        // Not the same line twice (a wrong relay password fails the spool
        // and the new mail alike).
        let said = result.as_ref().err().map(|e| e.to_string());
        let rest: Vec<String> = kept
            .map(|e| e.to_string())
            .filter(|line| Some(line) != said.as_ref())
            .collect();
        self.report.warnings.extend(rest);
        result
    }

    /// A message left undone, in one line: the first becomes the run's
    /// error (exit 10), later ones warnings, so each is said once.
    pub(crate) fn unfinished(&mut self, line: String, failure: Failure) {
        if self.unfinished.is_some() {
            self.report.warnings.push(line);
        } else {
            self.unfinished = Some(Error::Unfinished { line, failure });
        }
    }

    /// The new messages worth fetching: not over `max_size` (those are
    /// reported once and left), not refused under the current delivery
    /// config, not a suspected loop (reported every run and left).
    fn choose(
        &mut self,
        scans: &[source::Scan],
        max_size: Option<u64>,
        fetch_all: bool,
    ) -> Result<Vec<RemoteMessage>> {
        let mut wanted = Vec::new();
        for message in scans.iter().flat_map(|s| s.new.iter()) {
            if let Some(max) = max_size.filter(|max| message.size > *max) {
                if self.state.note_oversized(&self.account.name, message)? {
                    self.report.warnings.push(format!(
                        "{} is {} bytes, over max_size {max}; left on the server",
                        describe(message),
                        message.size
                    ));
                    super::audit_message(
                        self.audit,
                        self.account,
                        None,
                        message,
                        None,
                        audit::Outcome::Skipped,
                        Some(&format!("over max_size {max}")),
                    )?;
                }
                continue;
            }
            if !fetch_all {
                match self
                    .state
                    .refused_record(&self.account.name, message, &self.fingerprint)?
                {
                    Some(r) if r.is_loop => {
                        self.report.alerts.push(format!(
                            "{}: suspected mail loop ({}); left on the server",
                            describe(message),
                            r.reason
                        ));
                        continue;
                    }
                    // Refused for good on an earlier run, left on the server.
                    Some(_) => continue,
                    None => {}
                }
            }
            wanted.push(message.clone());
        }
        Ok(wanted)
    }

    /// Downloads and delivers `wanted`, deciding each message; returns at
    /// the first error that ends the run (a local fault, a broken
    /// connection, a failed commit). Messages decided before it stay
    /// decided.
    ///
    /// Headers first, when the account has rules or a filter command, or
    /// when every destination checks the envelope (SMTP, LMTP): the
    /// headers come `HEADERS_AT_ONCE` messages at a time (so what is kept
    /// in memory is bounded whatever the server sends), each is judged
    /// (routing, rules and filter, duplicates), and only the bodies still
    /// wanted are downloaded: those whose destinations all check the
    /// envelope one at a time once a destination accepted a recipient,
    /// the others together. A source that cannot give headers first gets
    /// every message downloaded whole and judged then.
    fn deliver_all(&mut self, wanted: Vec<RemoteMessage>) -> Result<()> {
        let mut progress = AccountProgress::start(
            &self.account.name,
            wanted.len() as u64,
            wanted.iter().map(|m| m.size).sum(),
        );
        let default = self.default_route();
        let headers_first = self.account.filter.is_set() || self.checks_envelope(&default.targets);
        let mut plans = self.plan_deliveries(&wanted)?;
        // Group commit only where a crash inside a batch duplicates nothing
        // (a message routed elsewhere is committed at once: see
        // `deliver_one`).
        let group = !default.targets.is_empty()
            && default
                .targets
                .iter()
                .all(|&i| self.destinations[i].group_commit().is_some());
        if group {
            for d in self.destinations.iter_mut() {
                if let Some(g) = d.group_commit() {
                    g.defer_sync();
                }
            }
        }
        self.batch = Batch::new(if group { BATCH_MESSAGES } else { 1 });
        let mut saved = 0u64;
        let mut queue: VecDeque<RemoteMessage> = wanted.into();
        // A stop (SIGINT/SIGTERM) is honoured between messages: the one in
        // hand is decided and committed, then the session ends politely.
        while headers_first && !queue.is_empty() && !crate::signal::stop_requested() {
            let chunk: Vec<RemoteMessage> =
                queue.drain(..queue.len().min(HEADERS_AT_ONCE)).collect();
            let Some(fetched) = self.source.fetch_headers(&chunk)? else {
                // No headers first from this source: whole messages.
                for m in chunk.into_iter().rev() {
                    queue.push_front(m);
                }
                break;
            };
            let mut headers: HashMap<(String, u32), Vec<u8>> = fetched
                .into_iter()
                .map(|(m, h)| ((m.folder.clone(), m.number), h))
                .collect();
            let mut bulk = Bulk::default();
            let mut judged = HashMap::new();
            for next in chunk {
                if crate::signal::stop_requested() {
                    break;
                }
                let key = (next.folder.clone(), next.number);
                let header = headers.remove(&key);
                if self.account.dedup.is_some() {
                    let id = header
                        .as_deref()
                        .and_then(|h| message::header_value(h, "Message-ID"))
                        .as_deref()
                        .and_then(normalise_message_id);
                    if bulk.unknown || id.as_ref().is_some_and(|id| bulk.ids.contains(id)) {
                        self.download(bulk.take(), &mut judged, &mut plans, &mut progress)?;
                    }
                    match id {
                        _ if header.is_none() => bulk.unknown = true,
                        Some(id) => bulk.ids.push(id),
                        None => {}
                    }
                }
                let Some(header) = header else {
                    // The source could not give this header now: the
                    // message is downloaded whole and judged then.
                    bulk.messages.push(next);
                    continue;
                };
                let Some(ready) = self.judge(&next, &header, None)? else {
                    saved += next.size;
                    continue;
                };
                if !self.checks_envelope(&ready.route.targets) {
                    judged.insert(key, ready);
                    bulk.messages.push(next);
                    continue;
                }
                // The source hands messages over in order: what is queued
                // goes first.
                self.download(bulk.take(), &mut judged, &mut plans, &mut progress)?;
                saved += self.through_envelope(next, &header, ready, &mut plans, &mut progress)?;
            }
            self.download(bulk.take(), &mut judged, &mut plans, &mut progress)?;
        }
        if !queue.is_empty() && !crate::signal::stop_requested() {
            self.download(queue.into(), &mut HashMap::new(), &mut plans, &mut progress)?;
        }
        if saved > 0 {
            log::info!(
                "{}: headers first saved {saved} bytes of downloads",
                self.account.name
            );
        }
        Ok(())
    }

    /// Downloads `messages` (queued at once, so the source may pipeline)
    /// and delivers each: as judged on its header (`judged`, by folder and
    /// number), or judged now on the downloaded message.
    fn download(
        &mut self,
        messages: Vec<RemoteMessage>,
        judged: &mut HashMap<(String, u32), Ready>,
        plans: &mut Plans,
        progress: &mut AccountProgress,
    ) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.source.retrieve(messages)?;
        while !crate::signal::stop_requested() {
            let Some((remote, bytes)) = self.source.next_message()? else {
                break;
            };
            crate::fault::point("downloaded");
            let ready = match judged.remove(&(remote.folder.clone(), remote.number)) {
                Some(ready) => ready,
                None => match self.judge(&remote, message::header_block(&bytes), Some(&bytes))? {
                    Some(ready) => ready,
                    None => continue,
                },
            };
            let plan = remote
                .uid
                .as_ref()
                .and_then(|uid| plans.remove(&(remote.folder.clone(), uid.clone())));
            let size = remote.size;
            self.deliver_one(remote, bytes, ready, None, plan)?;
            progress.message_done(size);
        }
        Ok(())
    }

    /// Headers first to destinations that all check the envelope: asks
    /// them, and downloads and delivers the body only if one accepted a
    /// recipient. Returns the bytes not downloaded.
    fn through_envelope(
        &mut self,
        next: RemoteMessage,
        header: &[u8],
        ready: Ready,
        plans: &mut Plans,
        progress: &mut AccountProgress,
    ) -> Result<u64> {
        let size = next.size;
        let begun = match self.open_envelope(&next, &ready, header)? {
            Opened::Accepted(begun) => begun,
            Opened::Deferred => return Ok(0),
            Opened::Decided => return Ok(size),
        };
        self.source.retrieve(vec![next])?;
        let Some((remote, bytes)) = self.source.next_message()? else {
            // Gone from the server between its header and body.
            for &i in &ready.route.targets {
                if let Some(c) = self.destinations[i].envelope_check() {
                    c.abandon();
                }
            }
            return Ok(0);
        };
        crate::fault::point("downloaded");
        let plan = remote
            .uid
            .as_ref()
            .and_then(|uid| plans.remove(&(remote.folder.clone(), uid.clone())));
        self.deliver_one(remote, bytes, ready, Some(begun), plan)?;
        progress.message_done(size);
        Ok(0)
    }

    /// Judges a message on its header (`body`: the whole message, when it
    /// was downloaded): whom it is for, what the rules and the filter make
    /// of it, whether it is a duplicate. `None` when that decided it (or
    /// left it): nothing more is to be done with it now.
    fn judge(
        &mut self,
        message: &RemoteMessage,
        header: &[u8],
        body: Option<&[u8]>,
    ) -> Result<Option<Ready>> {
        let Some(envelope) = self.envelope_or_leave(message, header, body)? else {
            return Ok(None);
        };
        let Some(route) = self.filtered(message, header, &envelope, body)? else {
            return Ok(None);
        };
        let downloaded = body.map_or(0, |b| b.len() as u64);
        let Some(envelope) =
            self.unless_duplicate(message, body.unwrap_or(header), envelope, downloaded)?
        else {
            return Ok(None);
        };
        Ok(Some(Ready { envelope, route }))
    }

    /// The account's own destinations (`deliver_to`), in order.
    fn default_route(&self) -> Route {
        Route {
            targets: (0..self.account.deliver_to.len().min(self.destinations.len())).collect(),
            why: None,
        }
    }

    /// Whether every one of `targets` checks the envelope (SMTP, LMTP).
    fn checks_envelope(&mut self, targets: &[usize]) -> bool {
        !targets.is_empty()
            && targets
                .iter()
                .all(|&i| self.destinations[i].envelope_check().is_some())
    }

    /// The rules, then `filter_command`, on a message's header: the
    /// destinations it goes to, or `None` when it was decided (left or
    /// deleted, through the batch like every decision) or left untouched
    /// because the filter failed (a local fault, reported; the run stops
    /// when the program cannot be started at all).
    fn filtered(
        &mut self,
        message: &RemoteMessage,
        header: &[u8],
        envelope: &Envelope,
        body: Option<&[u8]>,
    ) -> Result<Option<Route>> {
        let account = self.account;
        let filter = &account.filter;
        if !filter.is_set() {
            return Ok(Some(self.default_route()));
        }
        let (action, by) = match filter.rule_for(header) {
            Some((n, rule)) => (rule.action.clone(), format!("rule {n}")),
            None => match &filter.command {
                None => return Ok(Some(self.default_route())),
                Some(command) => {
                    let vars = self.filter_vars(message, envelope, body.is_none());
                    match command.run(header, &vars) {
                        Ok(action) => (action, "filter_command".to_string()),
                        Err(fault) => {
                            if fault.cannot_start {
                                return Err(Error::delivery(
                                    "filter_command",
                                    format!(
                                        "{}; {} left on the server",
                                        fault.why,
                                        describe(message)
                                    ),
                                    Failure::Local,
                                ));
                            }
                            self.filter_fault(message, &fault.why)?;
                            return Ok(None);
                        }
                    }
                }
            },
        };
        log::info!(
            "{}: filtered: {} ({by})",
            describe(message),
            action.describe()
        );
        let what = format!("{} ({by})", action.describe());
        let decided = |disposition, detail: String| Pending {
            outcome: Outcome {
                message: message.clone(),
                message_id: message::header_value(header, "Message-ID"),
                header_hash: Some(message::header_hash(header)),
                disposition,
                owed: Vec::new(),
                sender: envelope.sender.clone(),
                bytes: Vec::new(),
                dedup: None,
            },
            counts: false,
            bytes: body.map_or(0, |b| b.len() as u64),
            warnings: Vec::new(),
            alert: None,
            audit: audit::Outcome::Filtered,
            detail: Some(detail),
            to: Some(Vec::new()),
        };
        match action {
            crate::filter::Action::Deliver => Ok(Some(self.default_route())),
            crate::filter::Action::DeliverTo(names) => match self.route_to(&names) {
                Ok(targets) => Ok(Some(Route {
                    targets,
                    why: Some(format!("filtered: {what}")),
                })),
                Err(why) => {
                    self.filter_fault(message, &format!("{by}: {why}"))?;
                    Ok(None)
                }
            },
            crate::filter::Action::Leave => {
                let pending = decided(Disposition::Left(format!("filtered: {what}")), what);
                self.decide(pending)?;
                Ok(None)
            }
            crate::filter::Action::Delete if self.no_delete => {
                // `--keep`: nothing is deleted this run, and nothing is
                // recorded either, so the next run decides again.
                self.report.warnings.push(format!(
                    "{}: filtered: {what}, but --keep deletes nothing: left on the server this time",
                    describe(message)
                ));
                Ok(None)
            }
            crate::filter::Action::Delete => {
                let pending = decided(Disposition::Filtered(format!("filtered: {what}")), what);
                self.decide(pending)?;
                Ok(None)
            }
        }
    }

    /// A filter that gave no usable answer: the message stays on the
    /// server untouched (nothing recorded, so the next run asks again),
    /// the run ends with a local fault (exit 10), and the audit log says
    /// why.
    fn filter_fault(&mut self, message: &RemoteMessage, why: &str) -> Result<()> {
        self.unfinished(
            format!("{} left on the server: {why}", describe(message)),
            Failure::Local,
        );
        super::audit_message(
            self.audit,
            self.account,
            Some(&[]),
            message,
            None,
            audit::Outcome::Skipped,
            Some(why),
        )
    }

    /// The destinations named by a rule or printed by `filter_command`,
    /// as indices into `destinations`.
    fn route_to(&self, names: &[String]) -> std::result::Result<Vec<usize>, String> {
        let mut targets = Vec::new();
        for name in names {
            let Some(i) = self.names.iter().position(|n| n == name) else {
                return Err(format!("no [destination.{name}] is defined"));
            };
            if let Some(why) =
                self.config.destinations.get(name).and_then(|d| {
                    crate::config::cannot_take(name, d, self.account.multidrop.is_some())
                })
            {
                return Err(why);
            }
            if !targets.contains(&i) {
                targets.push(i);
            }
        }
        Ok(targets)
    }

    /// What `filter_command` finds in its environment.
    fn filter_vars(
        &self,
        message: &RemoteMessage,
        envelope: &Envelope,
        headers_only: bool,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("MAILRETR_ACCOUNT", self.account.name.clone()),
            ("MAILRETR_USER", self.account.user.clone()),
            ("MAILRETR_SERVER", self.account.server.host.clone()),
            ("MAILRETR_PROTOCOL", self.source.protocol_name().to_string()),
            ("MAILRETR_FOLDER", message.folder.clone()),
            ("MAILRETR_UID", message.uid.clone().unwrap_or_default()),
            (
                "MAILRETR_UIDVALIDITY",
                message.uidvalidity.map_or(String::new(), |v| v.to_string()),
            ),
            ("MAILRETR_SIZE", message.size.to_string()),
            ("MAILRETR_FROM", envelope.sender.clone().unwrap_or_default()),
            ("MAILRETR_RECIPIENTS", envelope.recipients.join(",")),
            ("MAILRETR_DESTINATIONS", self.account.deliver_to.join(",")),
            (
                "MAILRETR_HEADERS_ONLY",
                if headers_only { "1" } else { "0" }.to_string(),
            ),
        ]
    }

    /// The envelope of a message, or `None` when routing leaves it on the
    /// server: a suspected loop (decided: recorded, reported, never
    /// deleted) or nobody to deliver to (reported, left for the next run).
    /// `body` is the whole message when it was downloaded.
    fn envelope_or_leave(
        &mut self,
        message: &RemoteMessage,
        header: &[u8],
        body: Option<&[u8]>,
    ) -> Result<Option<Envelope>> {
        match envelope::addressing(self.config, self.account, message, header) {
            Addressing::Deliver(e) => Ok(Some(e)),
            Addressing::Nobody(why) => {
                self.report
                    .warnings
                    .push(format!("{}: {why}; left on the server", describe(message)));
                Ok(None)
            }
            Addressing::Loop(recipients) => {
                let why = format!(
                    "a Delivered-To below the delivering MTA's own already names {}",
                    recipients.join(", ")
                );
                let outcome = Outcome {
                    message: message.clone(),
                    message_id: message::header_value(header, "Message-ID"),
                    header_hash: Some(message::header_hash(header)),
                    disposition: Disposition::Loop(why.clone()),
                    owed: Vec::new(),
                    sender: None,
                    bytes: Vec::new(),
                    dedup: None,
                };
                self.decide(Pending {
                    outcome,
                    counts: false,
                    bytes: body.map_or(0, |b| b.len() as u64),
                    warnings: Vec::new(),
                    alert: Some(format!(
                        "{}: suspected mail loop ({why}); left on the server",
                        describe(message)
                    )),
                    audit: audit::Outcome::Looped,
                    detail: Some(why),
                    to: None,
                })?;
                Ok(None)
            }
        }
    }

    /// `dedup`: the envelope without the recipients that were already
    /// delivered this message's Message-ID (and committed) within the
    /// window, or `None` when that was all of them: the message is then
    /// decided as a duplicate (marked seen, deleted unless keep, an audit
    /// line `duplicate`), never delivered. A message without a Message-ID
    /// is never a duplicate. `downloaded` is what it cost, for the report.
    fn unless_duplicate(
        &mut self,
        message: &RemoteMessage,
        header: &[u8],
        mut envelope: Envelope,
        downloaded: u64,
    ) -> Result<Option<Envelope>> {
        let Some(window) = self.account.dedup else {
            return Ok(Some(envelope));
        };
        let raw_id = message::header_value(header, "Message-ID");
        let Some(id) = raw_id.as_deref().and_then(normalise_message_id) else {
            return Ok(Some(envelope));
        };
        // An earlier copy still waiting for its commit counts only once
        // committed.
        if self.batch.holds_message_id(&id) {
            self.commit_batch()?;
        }
        let since = retry::now() - window.as_secs() as i64;
        let had =
            self.state
                .delivered_before(&self.account.name, &id, &envelope.recipients, since)?;
        if had.is_empty() {
            return Ok(Some(envelope));
        }
        envelope.recipients = without(&envelope.recipients, &had);
        if !envelope.recipients.is_empty() {
            log::info!(
                "{}: not delivered again to {} (duplicate)",
                describe(message),
                had.join(", ")
            );
            return Ok(Some(envelope));
        }
        let why = format!("already delivered to {}", had.join(", "));
        self.decide(Pending {
            outcome: Outcome {
                message: message.clone(),
                message_id: raw_id,
                header_hash: Some(message::header_hash(header)),
                disposition: Disposition::Dropped(format!("duplicate: {why}")),
                owed: Vec::new(),
                sender: envelope.sender.clone(),
                bytes: Vec::new(),
                dedup: None,
            },
            counts: false,
            bytes: downloaded,
            warnings: Vec::new(),
            alert: None,
            audit: audit::Outcome::Duplicate,
            detail: Some(why),
            to: None,
        })?;
        Ok(None)
    }

    /// Headers first: asks each of the message's destinations about the
    /// envelope.
    fn open_envelope(
        &mut self,
        message: &RemoteMessage,
        ready: &Ready,
        header: &[u8],
    ) -> Result<Opened> {
        let envelope = &ready.envelope;
        let size = message.size + RECEIVED_ALLOWANCE;
        let begun: Vec<Result<DeliveryReport>> = ready
            .route
            .targets
            .iter()
            .map(|&i| {
                let d = &mut self.destinations[i];
                match d.envelope_check() {
                    Some(c) => c.begin(envelope, size, header),
                    None => Ok(DeliveryReport::all(&d.recipients(envelope))),
                }
            })
            .collect();
        if begun
            .iter()
            .any(|r| r.as_ref().is_ok_and(|r| !r.accepted.is_empty()))
        {
            return Ok(Opened::Accepted(begun));
        }
        for &i in &ready.route.targets {
            if let Some(c) = self.destinations[i].envelope_check() {
                c.abandon();
            }
        }
        let named = ready
            .route
            .targets
            .iter()
            .map(|&i| self.names[i].clone())
            .zip(begun)
            .collect();
        let why = match verdict::judge_unopened(named) {
            Unopened::Deferred(why) => {
                let line = format!(
                    "{} deferred before download (left for the next run): {why}",
                    describe(message)
                );
                self.unfinished(line, Failure::Temporary);
                return Ok(Opened::Deferred);
            }
            Unopened::Local(e) => return Err(e),
            Unopened::Refused(why) => why,
        };
        let refusal = envelope::on_refused(self.config, self.account, envelope, header, &why);
        self.decide(Pending {
            outcome: Outcome {
                message: message.clone(),
                message_id: message::header_value(header, "Message-ID"),
                header_hash: Some(message::header_hash(header)),
                disposition: refusal.disposition,
                owed: Vec::new(),
                sender: envelope.sender.clone(),
                bytes: Vec::new(),
                dedup: None,
            },
            counts: false,
            bytes: 0,
            warnings: vec![format!(
                "{} refused before download ({} bytes saved): {why}; {}",
                describe(message),
                message.size,
                refusal.said
            )],
            alert: None,
            audit: refusal.audit,
            detail: Some(why),
            to: ready.route.names(&self.names),
        })?;
        Ok(Opened::Decided)
    }

    /// Steps 2 and 3 for one downloaded message: deliver to every
    /// destination, judge the results, decide.
    fn deliver_one(
        &mut self,
        remote: RemoteMessage,
        bytes: Vec<u8>,
        ready: Ready,
        begun: Option<Vec<Result<DeliveryReport>>>,
        plan: Option<Vec<Option<Planned>>>,
    ) -> Result<()> {
        let Ready { envelope, route } = ready;
        // Headers first built the envelope before the body (and its
        // flags) came.
        let mut envelope = envelope;
        envelope.flags = remote.flags.clone();
        let message_id = message::header_value(&bytes, "Message-ID");
        let header_hash = message::header_hash(&bytes);
        let bytes = if self.account.add_received {
            let trace = TraceInfo {
                server: &self.account.server.host,
                hostname: &self.config.general.hostname,
                protocol: self.source.protocol_name(),
                account: &self.account.name,
                user: &self.account.user,
            };
            message::with_received(&bytes, &trace, chrono::Local::now())
        } else {
            bytes
        };
        let owed_to: Vec<Vec<String>> = route
            .targets
            .iter()
            .map(|&i| self.destinations[i].recipients(&envelope))
            .collect();
        let results = fan_out(
            &mut self.destinations,
            &route.targets,
            &envelope,
            &bytes,
            begun,
            plan,
        );
        crate::fault::point("delivered");
        let attempts = route
            .targets
            .iter()
            .map(|&i| self.names[i].clone())
            .zip(owed_to)
            .zip(results)
            .map(|((destination, recipients), result)| Attempt {
                destination,
                recipients,
                result,
            })
            .collect();
        let (disposition, owed, warnings, audit_outcome, detail) = match verdict::judge(attempts) {
            // Nobody took it and our side is at fault: nothing recorded,
            // nothing deleted; the run stops here.
            Verdict::Local(e) => return Err(e),
            Verdict::Delivered { owed, .. } if owed.is_empty() => (
                Disposition::Delivered,
                owed,
                Vec::new(),
                audit::Outcome::Delivered,
                None,
            ),
            Verdict::Delivered { owed, fault } => {
                self.note_fault(fault);
                let warnings = owed
                    .iter()
                    .map(|o| {
                        format!(
                            "{} spooled for {} (will be retried, not fetched again): {}",
                            describe(&remote),
                            o.destination,
                            o.error
                        )
                    })
                    .collect();
                let detail = owed
                    .iter()
                    .map(|o| format!("{}: {}", o.destination, o.error))
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    Disposition::Delivered,
                    owed,
                    warnings,
                    audit::Outcome::Spooled,
                    Some(detail),
                )
            }
            Verdict::Refused { why, owed, fault } => {
                self.note_fault(fault);
                let refusal =
                    envelope::on_refused(self.config, self.account, &envelope, &bytes, &why);
                let warning = format!("{} was refused: {why}; {}", describe(&remote), refusal.said);
                (
                    refusal.disposition,
                    owed,
                    vec![warning],
                    refusal.audit,
                    Some(why),
                )
            }
        };
        let delivered_bytes = bytes.len() as u64;
        let counts = matches!(
            disposition,
            Disposition::Delivered | Disposition::Dropped(_)
        );
        let dedup = self
            .account
            .dedup
            .and(message_id.as_deref())
            .and_then(normalise_message_id)
            .map(|message_id| DedupKey {
                message_id,
                recipients: envelope.recipients.clone(),
            });
        let outcome = Outcome {
            dedup,
            message: remote,
            message_id,
            header_hash: Some(header_hash),
            disposition,
            sender: envelope.sender.clone(),
            bytes: if owed.is_empty() { Vec::new() } else { bytes },
            owed,
        };
        self.decide(Pending {
            outcome,
            counts,
            bytes: delivered_bytes,
            warnings,
            alert: None,
            audit: audit_outcome,
            // A rule's or the filter's routing, said when nothing else is.
            detail: detail.or(route.why.clone()),
            to: route.names(&self.names),
        })?;
        // Routed to a destination that cannot defer its sync nor
        // recognise its own deliveries: committed now, so a crash cannot
        // deliver it twice (as with a batch of one).
        if route.why.is_some()
            && !route
                .targets
                .iter()
                .all(|&i| self.destinations[i].group_commit().is_some())
        {
            self.commit_batch()?;
        }
        Ok(())
    }

    /// A local fault behind a spooled copy: the run goes on (someone has
    /// the message, so it is not fetched again) and ends with it.
    fn note_fault(&mut self, fault: Option<Error>) {
        if let Some(e) = fault {
            self.faulted.get_or_insert(e);
        }
    }

    /// Commits delivery intents for every message about to be fetched, at
    /// every destination that can recognise its own earlier deliveries
    /// (one transaction for the whole run), and returns them by (folder,
    /// uid).
    fn plan_deliveries(&mut self, wanted: &[RemoteMessage]) -> Result<Plans> {
        let mut plans = HashMap::new();
        let mut intents = Vec::new();
        for message in wanted {
            let Some(uid) = &message.uid else { continue };
            let uidvalidity = message.uidvalidity.unwrap_or(0);
            let mut per_destination = Vec::new();
            for (d, dest_name) in self.destinations.iter_mut().zip(&self.names) {
                let Some(recovery) = d.crash_recovery() else {
                    per_destination.push(None);
                    continue;
                };
                match self.state.intent(
                    &self.account.name,
                    &message.folder,
                    uidvalidity,
                    uid,
                    dest_name,
                )? {
                    Some(name) => per_destination.push(Some(Planned {
                        name,
                        earlier: true,
                    })),
                    None => {
                        let fresh = recovery.plan_name();
                        intents.push(Intent {
                            folder: message.folder.clone(),
                            uidvalidity,
                            uid: uid.clone(),
                            destination: dest_name.clone(),
                            name: fresh.clone(),
                        });
                        per_destination.push(Some(Planned {
                            name: fresh,
                            earlier: false,
                        }));
                    }
                }
            }
            if per_destination.iter().any(Option::is_some) {
                plans.insert((message.folder.clone(), uid.clone()), per_destination);
            }
        }
        self.state
            .record_intents(&self.account.name, &intents, retry::now())?;
        Ok(plans)
    }
}

/// Where one message goes: indices into `AccountRun::destinations`.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    /// The destinations, in order.
    pub(crate) targets: Vec<usize>,
    /// Why, when a rule or the filter chose them (for the audit log).
    pub(crate) why: Option<String>,
}

impl Route {
    /// The destinations' names, when a rule or the filter chose them.
    fn names(&self, all: &[String]) -> Option<Vec<String>> {
        self.why
            .as_ref()
            .map(|_| self.targets.iter().map(|&i| all[i].clone()).collect())
    }
}

/// A message judged on its header and still to be delivered.
pub(crate) struct Ready {
    /// Whom it is for.
    pub(crate) envelope: Envelope,
    /// Where it goes.
    pub(crate) route: Route,
}

/// What asking the destinations about an envelope came to.
enum Opened {
    /// Someone accepted a recipient: download the body.
    Accepted(Vec<Result<DeliveryReport>>),
    /// Failed for now everywhere: left for the next run (and said so).
    Deferred,
    /// Refused for good: decided without downloading the body.
    Decided,
}

/// `all` without those in `had`, in order.
fn without(all: &[String], had: &[String]) -> Vec<String> {
    all.iter().filter(|r| !had.contains(r)).cloned().collect()
}

/// "message UID in FOLDER", for report lines.
fn describe(m: &RemoteMessage) -> String {
    format!(
        "message {} in {}",
        m.uid.as_deref().unwrap_or("?"),
        m.folder
    )
}

/// Delivery intents by (folder, uid), one slot per destination.
type Plans = HashMap<(String, String), Vec<Option<Planned>>>;

/// A delivery intent for one message at one destination.
struct Planned {
    /// The base file name the destination will use.
    name: String,
    /// Whether an earlier run recorded it (and may have written the file).
    earlier: bool,
}

/// Hands the message to each of `targets` (indices into
/// `destinations`; `plan` is indexed the same way), returning their
/// results in that order. With headers first, `begun` holds each
/// target's answer to the envelope: those that accepted someone get the
/// body (`finish`), the others keep that answer.
fn fan_out(
    destinations: &mut [Box<dyn Destination>],
    targets: &[usize],
    envelope: &Envelope,
    bytes: &[u8],
    begun: Option<Vec<Result<DeliveryReport>>>,
    plan: Option<Vec<Option<Planned>>>,
) -> Vec<Result<DeliveryReport>> {
    let Some(begun) = begun else {
        let plan = plan.unwrap_or_default();
        return targets
            .iter()
            .map(|&i| {
                let d = &mut destinations[i];
                if let Some(Some(planned)) = plan.get(i) {
                    let recipients = d.recipients(envelope);
                    let name = d.name().to_string();
                    if let Some(recovery) = d.crash_recovery() {
                        if planned.earlier && recovery.has_name(envelope, &planned.name)? {
                            // Written by a run that ended before its commit.
                            log::info!(
                                "{name}: already delivered before a crash ({})",
                                planned.name
                            );
                            return Ok(DeliveryReport::all(&recipients));
                        }
                        recovery.use_name(&planned.name);
                    }
                }
                d.deliver(envelope, bytes)
            })
            .collect();
    };
    targets
        .iter()
        .zip(begun)
        .map(|(&i, began)| {
            let d = &mut destinations[i];
            match (d.envelope_check(), began) {
                (Some(c), Ok(mut report)) if !report.accepted.is_empty() => {
                    let done = c.finish(envelope, bytes)?;
                    report.accepted = done.accepted;
                    report.refused.extend(done.refused);
                    Ok(report)
                }
                (None, Ok(report)) if !report.accepted.is_empty() => d.deliver(envelope, bytes),
                (check, other) => {
                    if let Some(c) = check {
                        c.abandon();
                    }
                    other
                }
            }
        })
        .collect()
}
