//! The fetch run: every selected account, in a pool of threads, through
//! the durable order that is mailretr's reason to exist:
//!
//! 1. download a message from the source;
//! 2. deliver it to every destination (or owe it, in the spool), and
//!    decide what became of it (`verdict`: one failure classifier);
//!    then, for the batch of messages decided so far (`batch`):
//!    2b. make every delivery durable (one sync per destination);
//!    3. commit the batch's outcomes in the state store (one
//!    transaction, `store::State::commit`);
//!    4. only then ask the server to delete them.
//!
//! `account` holds one account's run (`AccountRun`), `batch` its commit,
//! which is the only code that calls sync → commit → delete; `verdict`
//! sorts a message's per-destination results; `envelope` routes and
//! applies `on_refused`. A failure at any step leaves the message on the
//! server; what was committed before a failure stays committed.

mod account;
mod batch;
mod envelope;
#[cfg(test)]
mod tests;
mod verdict;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::audit::{self, AuditLog};
use crate::config::{Account, Config, Protocol};
use crate::error::{Error, Failure, Result, Throttle};
use crate::exit::ExitCode;
use crate::lock::AccountLock;
use crate::secret;
use crate::slots::{Slot, Slots};
use crate::source::{self, Source};
use crate::store::commit::Outcome;
use crate::store::{RunRecord, State};
use crate::transcript;

pub(crate) use account::AccountRun;

/// Command-line choices that override or extend the config for one run.
#[derive(Debug, Clone, Default)]
pub struct FetchOptions {
    /// `--keep`: leave mail on the server whatever the config says.
    pub keep: bool,
    /// `--all`: ignore the seen-state.
    pub fetch_all: bool,
    /// `--check`: only count new messages.
    pub check: bool,
    /// `--limit`: skip messages larger than this.
    pub max_size: Option<u64>,
    /// `--jobs`: accounts in parallel.
    pub jobs: Option<usize>,
    /// The shard spec this run recorded in the state
    /// (`State::begin_shard`, `1/1` without `--shard`): accounts that
    /// moved here from another shard are recognised, and each account's
    /// successful run is noted under it. `None` (`--check`, an ad-hoc
    /// URL, tests): no shard bookkeeping.
    pub shard_spec: Option<i64>,
    /// `--adopt`: a keep-mode account that moved here from another shard
    /// (or is new here) has the mail now on its server marked as seen
    /// without downloading it, instead of being refused.
    pub adopt: bool,
    /// `--adopt-from`: other shards' state dirs; a keep-mode account that
    /// moved here (or is new here) gets its seen-state copied from the
    /// one where it last ran successfully, then runs as usual.
    pub adopt_from: Vec<std::path::PathBuf>,
}

impl FetchOptions {
    /// Whether this run ignores `account`'s seen-state (`--all` or its
    /// `fetch_all`).
    pub fn fetches_all(&self, account: &Account) -> bool {
        self.fetch_all || account.fetch_all
    }
}

/// How one account's run went.
#[derive(Debug)]
pub struct AccountReport {
    /// The account's name.
    pub account: String,
    /// Its exit code.
    pub code: ExitCode,
    /// Messages delivered (every destination has them).
    pub messages: u64,
    /// Bytes of the messages retrieved (delivered, spooled, or refused
    /// and deleted).
    pub bytes: u64,
    /// With `--check`: new messages waiting.
    pub waiting: u64,
    /// The error that ended the run, if any.
    pub error: Option<Error>,
    /// Things worth telling the user that did not stop the run.
    pub warnings: Vec<String>,
    /// New messages left on the server because `fetch_limit` or
    /// `max_bytes_per_run` ended the run (exit 13).
    pub left_by_limit: u64,
    /// Messages put in the retry spool this run (a destination failed for
    /// now; the message is not downloaded again). Not counted as
    /// delivered.
    pub spooled: u64,
    /// Messages refused for good and deleted or bounced (`on_refused`).
    pub dropped: u64,
    /// What retrying the spool did before new mail was fetched.
    pub flushed: crate::store::spool::FlushReport,
    /// Things the user must hear of even with `-q` (a suspected mail loop
    /// left on the server).
    pub alerts: Vec<String>,
}

impl AccountReport {
    /// A report of nothing done yet.
    pub fn empty(account: &str) -> AccountReport {
        AccountReport {
            account: account.to_string(),
            code: ExitCode::NoMail,
            messages: 0,
            bytes: 0,
            waiting: 0,
            error: None,
            warnings: Vec::new(),
            left_by_limit: 0,
            spooled: 0,
            dropped: 0,
            flushed: Default::default(),
            alerts: Vec::new(),
        }
    }

    /// Messages this run is done with (delivered, spooled, or refused
    /// and deleted): what makes it exit 0.
    pub fn retrieved(&self) -> u64 {
        self.messages + self.spooled + self.dropped
    }

    /// How many were retrieved, and (when not all were delivered) what
    /// became of them: `3 messages (12.0 KiB) retrieved: 2 delivered, 1
    /// spooled`.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} messages ({}) retrieved",
            self.retrieved(),
            bytesize::ByteSize(self.bytes)
        );
        if self.retrieved() > self.messages {
            line.push_str(&format!(": {}", self.outcomes()));
        }
        line
    }

    /// For the line of an error that ended the run: what it did before,
    /// `after 2 messages were delivered` (or `after 3 messages: 2
    /// delivered, 1 spooled`); `None` when it did nothing.
    pub fn done_before(&self) -> Option<String> {
        match self.retrieved() {
            0 => None,
            n if n == self.messages => Some(format!("after {n} messages were delivered")),
            n => Some(format!("after {n} messages: {}", self.outcomes())),
        }
    }

    /// `2 delivered, 1 spooled, 1 refused and deleted`.
    pub fn outcomes(&self) -> String {
        let mut parts = vec![format!("{} delivered", self.messages)];
        if self.spooled > 0 {
            parts.push(format!("{} spooled", self.spooled));
        }
        if self.dropped > 0 {
            parts.push(format!("{} refused and deleted", self.dropped));
        }
        parts.join(", ")
    }
}

/// Fetches every account in `accounts`, `jobs` at a time. `on_done` is
/// called from the worker threads as each account finishes (for printing
/// its lines as soon as they are known).
pub fn run(
    config: &Config,
    accounts: &[&Account],
    options: &FetchOptions,
    on_done: &(dyn Fn(&AccountReport) + Sync),
) -> Vec<AccountReport> {
    let jobs = jobs(config, accounts, options);
    crate::net::session::use_state_dir(&config.general.state_dir);
    State::warn_if_lost(&config.general.state_dir);
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<Option<AccountReport>>> =
        Mutex::new((0..accounts.len()).map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                // After SIGINT/SIGTERM no new account is started.
                if crate::signal::stop_requested() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(account) = accounts.get(i) else {
                    break;
                };
                let report = fetch_account_guarded(config, account, options);
                on_done(&report);
                reports.lock().expect("no worker panics holding it")[i] = Some(report);
            });
        }
    });
    reports
        .into_inner()
        .expect("workers are done")
        .into_iter()
        .flatten()
        .collect()
}

/// How many accounts `run` fetches at once.
fn jobs(config: &Config, accounts: &[&Account], options: &FetchOptions) -> usize {
    options
        .jobs
        .unwrap_or(config.general.jobs)
        .clamp(1, accounts.len().max(1))
}

/// Starts connecting to the servers of the accounts `run` will start
/// with (the first `jobs` of them), each on a thread of its own (the
/// first one's SYN is sent from the caller's, see `early::start`), before the
/// state is opened: the connection is being made while the state is
/// opened, the outgoing queue and the account's spool are flushed and
/// its lock taken (see `net::early`). The TLS handshakes wait until the
/// returned gate is dropped, after `connections_see_state`. Nothing is
/// started when a LOGIN-DELAY may be recorded in the state
/// (`State::login_delay_recorded`), nor for a server whose connection
/// slots are taken; `connections_see_state`, or `run`, connects for
/// those as it always did.
pub fn start_connecting(
    config: &Config,
    accounts: &[&Account],
    options: &FetchOptions,
) -> crate::net::early::StateGate {
    crate::net::session::use_state_dir(&config.general.state_dir);
    let gate = crate::net::early::StateGate::hold();
    if State::login_delay_recorded(&config.general.state_dir) {
        return gate;
    }
    let slots = Slots::global();
    let mut first = true;
    for account in accounts.iter().take(jobs(config, accounts, options)) {
        if !crate::net::early::possible(&account.server) {
            continue;
        }
        let limit = account.connection_limit(&config.general);
        // Only a slot free now: the early connection never waits.
        if let Some(slot) = slots.acquire(&account.server.host, limit, &|| true) {
            // The first one's SYN from this thread, the others' from
            // their own (see `early::start`).
            crate::net::early::start(&account.name, &account.server, slot, first);
            first = false;
        }
    }
    gate
}

/// With the state open (the one `run` will use): the stored TLS
/// sessions of the servers connected to early are read for their
/// handshakes; an account under a LOGIN-DELAY has its early connection
/// closed before the handshake; the accounts `start_connecting` did not
/// start (a LOGIN-DELAY recorded) start now unless theirs is in force.
/// The caller then drops the gate.
pub fn connections_see_state(
    gate: &crate::net::early::StateGate,
    config: &Config,
    accounts: &[&Account],
    options: &FetchOptions,
    state: &State,
) {
    // Every POP3 server's last CAPA answer (`pop3::known`), once each,
    // for every account: not only those connected to early.
    let mut servers = std::collections::HashSet::new();
    for account in accounts.iter().filter(|a| a.protocol == Protocol::Pop3) {
        if servers.insert(crate::source::pop3::known::key(&account.server)) {
            crate::source::pop3::known::preload(state, &account.server);
        }
    }
    let now = crate::retry::now();
    let slots = Slots::global();
    for account in accounts.iter().take(jobs(config, accounts, options)) {
        if !crate::net::early::possible(&account.server) {
            continue;
        }
        let delayed = matches!(
            state.login_delay(&account.name),
            Ok(Some((_, not_before, _))) if not_before > now
        );
        if crate::net::early::started(&account.name) {
            if delayed {
                gate.cancel(&account.name);
            } else {
                crate::net::session::preload(state, &account.server);
            }
            continue;
        }
        if delayed {
            continue;
        }
        let limit = account.connection_limit(&config.general);
        if let Some(slot) = slots.acquire(&account.server.host, limit, &|| true) {
            crate::net::session::preload(state, &account.server);
            crate::net::early::start(&account.name, &account.server, slot, false);
        }
    }
}

/// The merged exit code of several accounts (SPEC: 0 if any retrieved
/// mail, otherwise the most serious failure).
pub fn merged_exit_code(reports: &[AccountReport]) -> ExitCode {
    reports
        .iter()
        .map(|r| r.code)
        .reduce(ExitCode::merge)
        .unwrap_or(ExitCode::NoMail)
}

/// `fetch_account`, with a panic (a bug) caught: one account's bug is
/// that account's error (exit 23), never a dead process or, in `watch`, a
/// dead watcher. Locks and the state connection are released as the
/// stack unwinds; nothing after the panic is committed or deleted.
pub fn fetch_account_guarded(
    config: &Config,
    account: &Account,
    options: &FetchOptions,
) -> AccountReport {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fetch_account(config, account, options)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let mut report = AccountReport::empty(&account.name);
        report.code = ExitCode::Internal;
        report.error = Some(Error::Internal(format!(
            "internal error (a bug; please report it): {what}"
        )));
        report
    })
}

/// Fetches one account, records the run and returns its report.
pub fn fetch_account(config: &Config, account: &Account, options: &FetchOptions) -> AccountReport {
    // The session deadline for this account's source connection.
    let _pace = crate::net::pace_session(account.server.timeout);
    let started = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut report = AccountReport::empty(&account.name);

    // A connection started for the account and not used by it is closed
    // when its run ends.
    let _early = crate::net::early::Unused(account.name.clone());
    let lock = AccountLock::acquire(&config.general.state_dir, &account.name);
    let result = lock.and_then(|_lock| {
        let mut state = State::shared(&config.general.state_dir)?;
        let result = open_logs(config, account).and_then(|(audit, _transcript)| {
            account::fetch_locked(
                config,
                account,
                options,
                &mut state,
                &mut report,
                audit.as_ref(),
            )
        });
        if let (Ok(()), Some(spec), false) = (&result, options.shard_spec, options.check) {
            if let Err(e) = state.note_shard_member(&account.name, spec) {
                report
                    .warnings
                    .push(format!("cannot note the shard it ran in: {e}"));
            }
        }
        // The TLS sessions the servers issued, for the next run; written
        // before the run's record, whose commit syncs them too.
        crate::net::session::flush(&mut state);
        crate::source::pop3::known::flush(&mut state);
        if !options.check {
            let error = result.as_ref().err().map(|e| e.to_string());
            let code = match &result {
                Err(e) => e.exit_code(),
                Ok(()) if report.left_by_limit > 0 => ExitCode::LimitReached,
                Ok(()) if report.retrieved() > 0 => ExitCode::Retrieved,
                Ok(()) => ExitCode::NoMail,
            };
            let run = RunRecord {
                account: account.name.clone(),
                started_at,
                duration: started.elapsed(),
                exit_code: code.code(),
                messages: report.messages,
                bytes: report.bytes,
                spooled: report.spooled,
                error,
            };
            if let Err(e) = state.record_run(&run) {
                report
                    .warnings
                    .push(format!("cannot write the run log: {e}"));
            }
            let finished = started_at + run.duration.as_secs() as i64;
            report.warnings.extend(crate::report::record(
                config.report.as_ref(),
                &run,
                finished,
            ));
        }
        result
    });
    report.code = match &result {
        Err(e) => e.exit_code(),
        Ok(()) if options.check && report.waiting > 0 => ExitCode::Retrieved,
        Ok(()) if !options.check && report.left_by_limit > 0 => ExitCode::LimitReached,
        Ok(()) if !options.check && report.retrieved() > 0 => ExitCode::Retrieved,
        Ok(()) => ExitCode::NoMail,
    };
    report.error = result.err();
    report
}

/// Opens the audit log and starts the account's transcript file, if the
/// config asks for them. The transcript is recorded while the returned
/// registration lives.
fn open_logs(
    config: &Config,
    account: &Account,
) -> Result<(Option<AuditLog>, Option<transcript::Registration>)> {
    let audit = config
        .general
        .audit_log
        .as_deref()
        .map(AuditLog::open)
        .transpose()?;
    let transcript = account
        .transcript
        .as_deref()
        .map(|path| transcript::record_to(&account.name, path))
        .transpose()?;
    Ok((audit, transcript))
}

/// Cuts the run's list of messages to `fetch_limit` messages and
/// `max_bytes_per_run` bytes, noting in the report how many wait for the
/// next run. A message is started while less than `max_bytes_per_run`
/// has been fetched, so every run makes progress even when one message
/// is larger than the limit.
fn apply_limits(
    account: &Account,
    mut wanted: Vec<source::RemoteMessage>,
    report: &mut AccountReport,
) -> Vec<source::RemoteMessage> {
    let mut bytes = 0u64;
    let mut taken = 0usize;
    for message in &wanted {
        let count_reached = account.fetch_limit.is_some_and(|n| taken as u64 >= n);
        let bytes_reached = account.max_bytes_per_run.is_some_and(|max| bytes >= max);
        if count_reached || bytes_reached {
            break;
        }
        bytes += message.size;
        taken += 1;
    }
    report.left_by_limit = (wanted.len() - taken) as u64;
    wanted.truncate(taken);
    wanted
}

/// What a run will do with its source, as `connect` sets it up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SourceUse {
    /// The run's effective `keep` (config or `--keep`): IMAP then neither
    /// deletes nor moves, unless `retention` lets the run delete what is
    /// due.
    pub keep: bool,
    /// Kept mail delivered earlier may be deleted (the account's
    /// `delete_after`/`delete_bigger_than`, not overridden by `--keep`).
    pub retention: bool,
    /// A rule or the filter may delete a new message of an account that
    /// keeps its mail.
    pub filter_deletes: bool,
    /// POP3: what STAT answers if nothing changed since the last run, when
    /// the scan will check that first (see `source::pop3::connect`).
    pub expect_stat: Option<(u64, u64)>,
}

/// Opens the account's source: the protocol's client, connected, secured
/// and logged in, for `usage`.
fn connect(account: &Account, usage: SourceUse) -> Result<Box<dyn Source>> {
    let SourceUse {
        keep,
        retention,
        filter_deletes,
        expect_stat,
    } = usage;
    let password = secret::resolve(&account.secret)?;
    match account.protocol {
        Protocol::Pop3 => {
            let mut source = source::pop3::connect(
                account,
                password.as_deref().map(String::as_str),
                expect_stat,
            )?;
            if keep && !retention {
                // Nothing seen is deleted on the scan's word.
                source.trust_recorded_sizes();
            }
            Ok(Box::new(source))
        }
        Protocol::Imap => {
            let mut source =
                source::imap::connect(account, password.as_deref().map(String::as_str), keep)?;
            if retention {
                source.allow_retention();
            }
            if filter_deletes {
                source.allow_filter_deletes();
            }
            Ok(Box::new(source))
        }
    }
}

/// How long an account waits before connecting again after its server
/// said it is throttling, once per retry: bounded, so a cron run does
/// not hang (a stop signal cuts the wait short).
pub(crate) const THROTTLE_BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// How long a `[LOGIN-DELAY]` keeps the account from connecting when the
/// server did not announce the `LOGIN-DELAY` capability's seconds.
pub(crate) const DEFAULT_LOGIN_DELAY: u64 = 15 * 60;

/// Opens the account's source (`connect`) holding a slot of its server's
/// `max_connections_per_host` (`crate::slots`), waiting for one when all
/// are taken; the slot is held until it is dropped, after the session.
///
/// When the server says it is throttling (`Error::Throttled`), nothing
/// was done in that session: the host's limit is lowered for the rest of
/// the process and the account tries again after `THROTTLE_BACKOFF`; the
/// last refusal is the account's error. A POP3 `[LOGIN-DELAY]` is not
/// retried: the time before which the server is not connected to again
/// is recorded in the state, and until then `Ok(None)` (nothing to do, no
/// connection made).
pub(crate) fn open_source(
    config: &Config,
    account: &Account,
    usage: SourceUse,
    state: &mut State,
    report: &mut AccountReport,
) -> Result<Option<(Box<dyn Source>, Slot)>> {
    let host = &account.server.host;
    let now = crate::retry::now();
    let delayed = state.login_delay(&account.name)?;
    if let Some((_, not_before, _)) = delayed.as_ref().filter(|d| d.1 > now) {
        log::info!(
            "account {}: not connecting to {host} before {} (the server asked for a LOGIN-DELAY)",
            account.name,
            crate::status::local_time(*not_before)
        );
        return Ok(None);
    }
    let slots = Slots::global();
    let limit = account.connection_limit(&config.general);
    let mut attempt = 0;
    // The connection `fetch` started for the account, with its slot (see
    // `net::early`), serves the first attempt.
    let mut early = crate::net::early::take(&account.name, &account.server);
    loop {
        let (slot, pending) = match early.take() {
            Some((slot, pending)) => (slot, Some(pending)),
            None => match slots.acquire(host, limit, &crate::signal::stop_requested) {
                Some(slot) => (slot, None),
                None => return Err(stopped_waiting(host)),
            },
        };
        let handoff = crate::net::early::Handoff::install(pending);
        let connected = connect(account, usage);
        drop(handoff);
        let e = match connected {
            Ok(source) => {
                if delayed.is_some() {
                    state.clear_login_delay(&account.name)?;
                }
                return Ok(Some((source, slot)));
            }
            Err(e) => e,
        };
        drop(slot);
        let (message, throttle) = match e {
            Error::Throttled { message, throttle } => (message, throttle),
            other => return Err(other),
        };
        if let Throttle::LoginDelay(seconds) = throttle {
            let seconds = seconds.unwrap_or(DEFAULT_LOGIN_DELAY);
            let not_before = crate::retry::now() + seconds as i64;
            state.set_login_delay(&account.name, host, not_before, &message)?;
            return Err(Error::Throttled {
                message: format!(
                    "{host}: {message}; not connecting again before {} (LOGIN-DELAY {seconds}s)",
                    crate::status::local_time(not_before)
                ),
                throttle,
            });
        }
        let (lowered, first) = slots.lower(host);
        if first {
            report.warnings.push(format!(
                "{host} is throttling connections; max_connections_per_host for it lowered to {lowered} for this run"
            ));
        }
        let Some(delay) = THROTTLE_BACKOFF.get(attempt).copied() else {
            return Err(Error::Throttled {
                message: format!(
                    "{host}: {message}; gave up after {} attempts, the next run tries again",
                    attempt + 1
                ),
                throttle,
            });
        };
        attempt += 1;
        log::info!(
            "account {}: {host}: {message}; trying again in {}s ({} connections allowed now)",
            account.name,
            delay.as_secs(),
            lowered
        );
        if !sleep_unless_stopped(delay) {
            return Err(Error::Throttled { message, throttle });
        }
    }
}

/// A stop (SIGTERM, or `watch` stopping the account) came while waiting
/// for a connection slot to `host`: nothing was done, a temporary
/// failure.
pub(crate) fn stopped_waiting(host: &str) -> Error {
    Error::net(
        format!("waiting for a connection to {host}"),
        std::io::Error::new(std::io::ErrorKind::Interrupted, "stopped"),
    )
}

/// Sleeps for `delay`, cut short by a stop signal; whether it slept it
/// all.
fn sleep_unless_stopped(delay: Duration) -> bool {
    let until = Instant::now() + delay;
    while !crate::signal::stop_requested() {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(Duration::from_millis(100)));
    }
    false
}

/// Appends one audit line about `message`, when an audit log is set.
fn audit_message(
    audit: Option<&AuditLog>,
    account: &Account,
    to: Option<&[String]>,
    message: &source::RemoteMessage,
    message_id: Option<&str>,
    outcome: audit::Outcome,
    detail: Option<&str>,
) -> Result<()> {
    let Some(audit) = audit else {
        return Ok(());
    };
    audit.record(&audit::Entry {
        account: &account.name,
        folder: &message.folder,
        uid: message.uid.as_deref(),
        size: message.size,
        message_id,
        destinations: to.unwrap_or(&account.deliver_to),
        outcome,
        detail,
    })
}

/// A failed commit of a batch that had to spool something means the
/// spool could not take it (SPEC exit 10); other commit failures are what
/// they are.
fn cannot_spool(outcomes: &[Outcome], e: Error) -> Error {
    let owed: Vec<&str> = outcomes
        .iter()
        .flat_map(|o| o.owed.iter().map(|w| w.destination.as_str()))
        .collect();
    if owed.is_empty() {
        return e;
    }
    Error::delivery(
        owed.join(", "),
        format!("failed for now and could not be spooled: {e}"),
        Failure::Local,
    )
}
