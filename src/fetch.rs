//! The fetch run: every selected account, in a pool of threads, through
//! the durable order that is mailretr's reason to exist. `fetch_account`
//! holds that order in one place:
//!
//! 1. download a message from the source;
//! 2. deliver it to every destination;
//!    then, for the batch of messages delivered so far (`Batch::commit`):
//!    2b. make every delivery durable (one sync per destination);
//!    3. mark them seen in the state database (one committed transaction);
//!    4. only then ask the server to delete them.
//!
//! The batch is one message unless every destination can recognise its
//! own earlier deliveries after a crash (Maildir): then up to
//! `BATCH_MESSAGES` share one sync and one commit (group commit), and a
//! crash inside a batch re-delivers nothing (delivery intents). A failure
//! at any step leaves the message on the server, and nothing already
//! delivered is fetched again: what was delivered before a failure is
//! still committed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::audit::{self, AuditLog};
use crate::config::{Account, Config, Protocol};
use crate::destination::{self, DeliveryReport, Destination};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::lock::AccountLock;
use crate::message::{self, Envelope, TraceInfo};
use crate::progress::AccountProgress;
use crate::retry;
use crate::secret;
use crate::source::{self, Source};
use crate::spool::{NewSpoolEntry, RetryPolicy};
use crate::state::{RunRecord, State};
use crate::transcript;

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
}

/// How one account's run went.
#[derive(Debug)]
pub struct AccountReport {
    /// The account's name.
    pub account: String,
    /// Its exit code.
    pub code: ExitCode,
    /// Messages delivered.
    pub messages: u64,
    /// Bytes delivered.
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
    /// now; the message is not downloaded again).
    pub spooled: u64,
    /// What retrying the spool did before new mail was fetched.
    pub flushed: crate::spool::FlushReport,
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
    let jobs = options
        .jobs
        .unwrap_or(config.general.jobs)
        .clamp(1, accounts.len().max(1));
    crate::net::prepare_tls(accounts.iter().map(|a| &a.server));
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
                let report = fetch_account(config, account, options);
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

/// The merged exit code of several accounts (SPEC: 0 if any retrieved
/// mail, otherwise the most serious failure).
pub fn merged_exit_code(reports: &[AccountReport]) -> ExitCode {
    reports
        .iter()
        .map(|r| r.code)
        .reduce(ExitCode::merge)
        .unwrap_or(ExitCode::NoMail)
}

/// Fetches one account, records the run and returns its report.
pub fn fetch_account(config: &Config, account: &Account, options: &FetchOptions) -> AccountReport {
    let started = Instant::now();
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut report = AccountReport {
        account: account.name.clone(),
        code: ExitCode::NoMail,
        messages: 0,
        bytes: 0,
        waiting: 0,
        error: None,
        warnings: Vec::new(),
        left_by_limit: 0,
        spooled: 0,
        flushed: Default::default(),
    };
    let lock = AccountLock::acquire(&config.general.state_dir, &account.name);
    let result = lock.and_then(|_lock| {
        let mut state = State::open(&config.general.state_dir)?;
        let result = open_logs(config, account).and_then(|(audit, _transcript)| {
            fetch_locked(
                config,
                account,
                options,
                &mut state,
                &mut report,
                audit.as_ref(),
            )
        });
        if !options.check {
            let error = result.as_ref().err().map(|e| e.to_string());
            let code = match &result {
                Err(e) => e.exit_code(),
                Ok(()) if report.left_by_limit > 0 => ExitCode::LimitReached,
                Ok(()) if report.messages > 0 => ExitCode::Retrieved,
                Ok(()) => ExitCode::NoMail,
            };
            let logged = state.record_run(&RunRecord {
                account: account.name.clone(),
                started_at,
                duration: started.elapsed(),
                exit_code: code.code(),
                messages: report.messages,
                bytes: report.bytes,
                error,
            });
            if let Err(e) = logged {
                report
                    .warnings
                    .push(format!("cannot write the run log: {e}"));
            }
        }
        result
    });
    report.code = match &result {
        Err(e) => e.exit_code(),
        Ok(()) if options.check && report.waiting > 0 => ExitCode::Retrieved,
        Ok(()) if !options.check && report.left_by_limit > 0 => ExitCode::LimitReached,
        Ok(()) if !options.check && report.messages > 0 => ExitCode::Retrieved,
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

/// Opens the account's source: the protocol's client, connected, secured
/// and logged in. `keep` is the run's effective setting (config or
/// `--keep`): IMAP then neither deletes nor moves.
fn connect(account: &Account, keep: bool) -> Result<Box<dyn Source>> {
    let password = secret::resolve(&account.secret)?;
    match account.protocol {
        Protocol::Pop3 => Ok(Box::new(source::pop3::connect(
            account,
            password.as_deref(),
        )?)),
        Protocol::Imap => Ok(Box::new(source::imap::connect(
            account,
            password.as_deref(),
            keep,
        )?)),
    }
}

fn fetch_locked(
    config: &Config,
    account: &Account,
    options: &FetchOptions,
    state: &mut State,
    report: &mut AccountReport,
    audit: Option<&AuditLog>,
) -> Result<()> {
    let keep = options.keep || account.keep;
    let fetch_all = options.fetch_all || account.fetch_all;
    let max_size = options.max_size.or(account.max_size);
    let mut destinations: Vec<Box<dyn Destination>> = account
        .deliver_to
        .iter()
        .map(|name| destination::open(name, &config.destinations[name], &config.general.hostname))
        .collect::<Result<_>>()?;

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

    let mut source = connect(account, keep)?;
    let scans = source.scan(&mut state.seen_index(&account.name), fetch_all)?;
    if keep
        && scans
            .iter()
            .flat_map(|s| s.new.iter())
            .any(|m| m.uid.is_none())
    {
        let _ = source.finish();
        return Err(Error::Protocol(
            "the server gives no unique ids (no UIDL), so with keep = true mailretr could not tell old mail from new; use keep = false".into(),
        ));
    }

    let mut wanted = Vec::new();
    for message in scans.iter().flat_map(|s| s.new.iter()) {
        match max_size {
            Some(max) if message.size > max => {
                if state.note_oversized(&account.name, message)? {
                    report.warnings.push(format!(
                        "message {} in {} is {} bytes, over max_size {max}; left on the server",
                        message.uid.as_deref().unwrap_or("?"),
                        message.folder,
                        message.size
                    ));
                    audit_message(
                        audit,
                        account,
                        message,
                        None,
                        &[],
                        audit::Outcome::Skipped,
                        Some(&format!("over max_size {max}")),
                    )?;
                }
            }
            // Refused for good on an earlier run and left on the server.
            _ if !fetch_all && state.is_refused(&account.name, message)? => {}
            _ => wanted.push(message.clone()),
        }
    }
    if options.check {
        report.waiting = wanted.len() as u64;
        return source.finish();
    }
    if !keep {
        // Delivered on an earlier run that ended before its deletions
        // took effect: finish the job.
        for message in scans.iter().flat_map(|s| s.seen_on_server.iter()) {
            source.delete(message)?;
        }
    }

    let wanted = apply_limits(account, wanted, report);
    let mut progress = AccountProgress::start(
        &account.name,
        wanted.len() as u64,
        wanted.iter().map(|m| m.size).sum(),
    );

    let trace_host = account.server.host.clone();
    let protocol = source.protocol_name().to_string();
    // 0. Headers first, when every destination checks the envelope
    //    (SMTP, LMTP): fetch only headers now; each body is downloaded
    //    below only once a destination has accepted a recipient.
    let headers_first =
        !destinations.is_empty() && destinations.iter().all(|d| d.checks_envelope());
    let mut headers: HashMap<(String, u32), Vec<u8>> = HashMap::new();
    let mut queue: VecDeque<source::RemoteMessage> = VecDeque::new();
    let headers_first = headers_first
        && match source.fetch_headers(&wanted)? {
            Some(fetched) => {
                headers.extend(
                    fetched
                        .into_iter()
                        .map(|(m, h)| ((m.folder.clone(), m.number), h)),
                );
                queue.extend(wanted.iter().cloned());
                true
            }
            None => false,
        };
    // Delivery intents: the names file destinations will use, committed
    // before anything is written, so a run after a crash recognises what
    // was already delivered instead of delivering it twice.
    let mut plans = HashMap::new();
    if !headers_first {
        plans = plan_deliveries(account, state, &mut destinations, &wanted)?;
        source.retrieve(wanted)?;
    }
    let policy = retry::policy(config);
    // Group commit only where a crash inside a batch duplicates nothing.
    let group = !destinations.is_empty() && destinations.iter().all(|d| d.can_defer_sync());
    if group {
        for d in destinations.iter_mut() {
            d.defer_sync();
        }
    }
    let mut batch = Batch::new(
        account,
        keep,
        audit,
        &policy,
        if group { BATCH_MESSAGES } else { 1 },
    );
    let mut bytes_saved = 0u64;
    let mut deferred: Option<Error> = None;
    // A message some destination refused for good, left on the server:
    // the run goes on, and ends with this error (exit 10) so cron says so.
    let mut refused: Option<Error> = None;
    let delivered = (|| -> Result<()> {
        // A stop (SIGINT/SIGTERM) is honoured between messages: the one in
        // hand is delivered and committed, then the session ends politely.
        while !crate::signal::stop_requested() {
            // 0. Headers first: route on the headers and open the
            //    transactions (MAIL FROM with SIZE, RCPT TO) before the
            //    body is downloaded; a refusal costs only the headers.
            let mut opened = None;
            if headers_first {
                let Some(next) = queue.pop_front() else {
                    break;
                };
                if let Some(header) = headers.remove(&(next.folder.clone(), next.number)) {
                    let envelope = match addressing(config, account, &next.folder, &header) {
                        Addressing::Deliver(e) => e,
                        other => {
                            let (seen, warning) = other.explain(&next);
                            report.warnings.push(warning);
                            if seen {
                                state.mark_seen(&account.name, &next, None, None)?;
                                source.delivered(&next)?;
                                if !keep {
                                    source.delete(&next)?;
                                }
                            }
                            continue;
                        }
                    };
                    let size = next.size + RECEIVED_ALLOWANCE;
                    let begun: Vec<Result<DeliveryReport>> = destinations
                        .iter_mut()
                        .map(|d| d.begin(&envelope, size))
                        .collect();
                    if !begun
                        .iter()
                        .any(|r| r.as_ref().is_ok_and(|r| !r.accepted.is_empty()))
                    {
                        for d in destinations.iter_mut() {
                            d.abandon();
                        }
                        bytes_saved += next.size;
                        let named = account.deliver_to.iter().cloned().zip(begun).collect();
                        let why = match judge(named) {
                            Verdict::Transient(e) => {
                                report.warnings.push(format!(
                                    "message {} in {} deferred before download (left for the next run): {e}",
                                    next.uid.as_deref().unwrap_or("?"),
                                    next.folder
                                ));
                                deferred.get_or_insert(e);
                                continue;
                            }
                            Verdict::Permanent(why) => why,
                            Verdict::Delivered => "no recipients".to_string(),
                        };
                        let outcome = apply_on_refused(config, account, &envelope, &header, &why);
                        let message_id = message::header_value(&header, "Message-ID");
                        report.warnings.push(format!(
                            "message {} in {} refused before download ({} bytes saved): {why}; {}",
                            next.uid.as_deref().unwrap_or("?"),
                            next.folder,
                            next.size,
                            outcome.describe()
                        ));
                        audit_message(
                            audit,
                            account,
                            &next,
                            message_id.as_deref(),
                            &account.deliver_to,
                            match outcome {
                                Refused::Bounced => audit::Outcome::Bounced,
                                _ => audit::Outcome::Refused,
                            },
                            Some(&why),
                        )?;
                        if !outcome.removes() {
                            // Kept on the server and recorded, so the next
                            // run neither asks again nor reports it again.
                            state.commit_refused(
                                &account.name,
                                &next,
                                message_id.as_deref(),
                                &why,
                                &[],
                                retry::now(),
                                &policy,
                            )?;
                            refused.get_or_insert(Error::Delivery {
                                destination: account.deliver_to.join(", "),
                                message: why.clone(),
                                transient: false,
                            });
                        } else {
                            state.mark_seen(
                                &account.name,
                                &next,
                                message_id.as_deref(),
                                Some(&message::header_hash(&header)),
                            )?;
                            source.delivered(&next)?;
                            if !keep {
                                source.delete(&next)?;
                            }
                        }
                        continue;
                    }
                    opened = Some((envelope, begun));
                }
                source.retrieve(vec![next])?;
            }
            // 1. Download.
            let Some((remote, bytes)) = source.next_message()? else {
                if opened.is_some() {
                    // Gone from the server between its header and body.
                    for d in destinations.iter_mut() {
                        d.abandon();
                    }
                    continue;
                }
                break;
            };
            crate::fault::point("downloaded");
            let message_id = message::header_value(&bytes, "Message-ID");
            let header_hash = message::header_hash(&bytes);
            let (envelope, begun) = match opened {
                Some((envelope, begun)) => (envelope, Some(begun)),
                None => match addressing(config, account, &remote.folder, &bytes) {
                    Addressing::Deliver(e) => (e, None),
                    other => {
                        let (seen, warning) = other.explain(&remote);
                        report.warnings.push(warning);
                        if seen {
                            state.mark_seen(
                                &account.name,
                                &remote,
                                message_id.as_deref(),
                                Some(&header_hash),
                            )?;
                            source.delivered(&remote)?;
                            if !keep {
                                source.delete(&remote)?;
                            }
                        }
                        continue;
                    }
                },
            };
            let bytes = if account.add_received {
                let trace = TraceInfo {
                    server: &trace_host,
                    hostname: &config.general.hostname,
                    protocol: &protocol,
                    account: &account.name,
                    user: &account.user,
                };
                message::with_received(&bytes, &trace, chrono::Local::now())
            } else {
                bytes
            };
            // 2. Deliver to every destination (fan-out), durably; each
            //    result is kept per destination.
            let owed_to: Vec<Vec<String>> = destinations
                .iter()
                .map(|d| d.recipients(&envelope))
                .collect();
            let plan = remote
                .uid
                .as_ref()
                .and_then(|uid| plans.remove(&(remote.folder.clone(), uid.clone())));
            let results = deliver_all(&mut destinations, &envelope, &bytes, begun, plan);
            crate::fault::point("delivered");
            let owed = Owed::sort_out(
                account.deliver_to.iter().cloned().zip(results).collect(),
                owed_to,
            );
            let spooled: Vec<NewSpoolEntry> = owed
                .later
                .iter()
                .map(|(destination, recipients, error)| NewSpoolEntry {
                    destination,
                    sender: envelope.sender.as_deref(),
                    recipients,
                    message: &bytes,
                    error,
                })
                .collect();
            let now = retry::now();
            if let Some(why) = owed.never() {
                // Refused for good somewhere: `on_refused` decides.
                let outcome = apply_on_refused(config, account, &envelope, &bytes, &why);
                if !outcome.removes() {
                    // 3'. Kept on the server, recorded so it is never
                    //     downloaded again; what others owe is spooled.
                    //     The batch first: its sync makes what other
                    //     destinations took of this message durable too.
                    batch.commit(&mut destinations, state, source.as_mut(), report)?;
                    state
                        .commit_refused(
                            &account.name,
                            &remote,
                            message_id.as_deref(),
                            &why,
                            &spooled,
                            now,
                            &policy,
                        )
                        .map_err(|e| cannot_spool(&spooled, e))?;
                    report.spooled += spooled.len() as u64;
                    refused.get_or_insert(Error::Delivery {
                        destination: account.deliver_to.join(", "),
                        message: why.clone(),
                        transient: false,
                    });
                    report.warnings.push(format!(
                        "message {} in {} was refused: {why}; {}",
                        remote.uid.as_deref().unwrap_or("?"),
                        remote.folder,
                        outcome.describe()
                    ));
                    audit_message(
                        audit,
                        account,
                        &remote,
                        message_id.as_deref(),
                        &account.deliver_to,
                        audit::Outcome::Refused,
                        Some(&why),
                    )?;
                    continue;
                }
                report.warnings.push(format!(
                    "message {} in {} was refused: {why}; {}",
                    remote.uid.as_deref().unwrap_or("?"),
                    remote.folder,
                    outcome.describe()
                ));
            }
            progress.message_done(remote.size);
            if spooled.is_empty() {
                // 3. and 4. for the batch, once it is due.
                batch.push(Delivered {
                    bytes: bytes.len() as u64,
                    remote,
                    message_id,
                    header_hash,
                });
                if batch.is_due() {
                    batch.commit(&mut destinations, state, source.as_mut(), report)?;
                }
                continue;
            }
            // A destination owes this message for now. The batch first
            // (its sync covers this message's deliveries too), then this
            // message:
            batch.commit(&mut destinations, state, source.as_mut(), report)?;
            // 3. Mark seen, and spool what a destination owes for now, in
            //    one transaction: the commit that makes deletion safe.
            state
                .commit_delivery(
                    &account.name,
                    &remote,
                    message_id.as_deref(),
                    Some(&header_hash),
                    &spooled,
                    now,
                    &policy,
                )
                .map_err(|e| cannot_spool(&spooled, e))?;
            crate::fault::point("committed");
            for (destination, _, error) in &owed.later {
                report.warnings.push(format!(
                    "message {} in {} spooled for {destination} (will be retried, not fetched again): {error}",
                    remote.uid.as_deref().unwrap_or("?"),
                    remote.folder
                ));
            }
            report.messages += 1;
            report.bytes += bytes.len() as u64;
            report.spooled += spooled.len() as u64;
            if let Some(audit) = audit {
                let detail = owed
                    .later
                    .iter()
                    .map(|(d, _, e)| format!("{d}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                audit_message(
                    Some(audit),
                    account,
                    &remote,
                    message_id.as_deref(),
                    &account.deliver_to,
                    audit::Outcome::Spooled,
                    Some(detail.as_str()),
                )?;
            }
            source.delivered(&remote)?;
            // 4. Only now may the server copy go.
            if !keep {
                source.delete(&remote)?;
                crate::fault::point("delete-queued");
            }
        }
        match deferred.take().or(refused.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })();
    // What was delivered is committed even when a later message failed.
    let committed = batch.commit(&mut destinations, state, source.as_mut(), report);
    let delivered = match (delivered, committed) {
        (Ok(()), committed) => committed,
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(also)) => {
            report.warnings.push(also.to_string());
            Err(e)
        }
    };
    // Always end the session: deletions asked for so far take effect even
    // when a later message failed.
    crate::fault::point("finish");
    let finished = source.finish();
    for d in destinations.iter_mut() {
        d.close();
    }
    // What was committed moves the folders on, whatever else happened.
    let settled = source.settle(&mut state.seen_index(&account.name));
    if bytes_saved > 0 {
        log::info!(
            "{}: headers first saved {bytes_saved} bytes of downloads",
            account.name
        );
    }
    delivered?;
    finished?;
    settled?;

    for scan in &scans {
        if let (Some(present), Some(folder)) = (
            &scan.present,
            scan.new
                .first()
                .or(scan.seen_on_server.first())
                .map(|m| &m.folder),
        ) {
            // An empty listing may be a server hiccup: never forget on it.
            if !present.is_empty() {
                state.forget_absent(&account.name, folder, 0, present)?;
            }
        }
    }
    Ok(())
}

/// Group commit: at most this many delivered messages share one sync and
/// one commit...
const BATCH_MESSAGES: usize = 64;
/// ...or this many bytes...
const BATCH_BYTES: u64 = 8 << 20;
/// ...or wait this long for their commit (which bounds what a crash or
/// power cut makes the next run download again).
const BATCH_AGE: Duration = Duration::from_secs(1);

/// Messages delivered and waiting for their commit (`Batch::commit`),
/// with what the commit needs to know of the run.
struct Batch<'a> {
    account: &'a Account,
    keep: bool,
    audit: Option<&'a AuditLog>,
    policy: &'a RetryPolicy,
    /// Messages per commit: 1 unless every destination defers its sync.
    limit: usize,
    done: Vec<Delivered>,
    bytes: u64,
    since: Option<Instant>,
}

/// A message delivered to every destination, none of which owes it.
struct Delivered {
    remote: source::RemoteMessage,
    message_id: Option<String>,
    header_hash: String,
    /// Bytes as delivered.
    bytes: u64,
}

impl<'a> Batch<'a> {
    fn new(
        account: &'a Account,
        keep: bool,
        audit: Option<&'a AuditLog>,
        policy: &'a RetryPolicy,
        limit: usize,
    ) -> Batch<'a> {
        Batch {
            account,
            keep,
            audit,
            policy,
            limit,
            done: Vec::new(),
            bytes: 0,
            since: None,
        }
    }

    fn push(&mut self, delivered: Delivered) {
        self.since.get_or_insert_with(Instant::now);
        self.bytes += delivered.bytes;
        self.done.push(delivered);
    }

    fn is_due(&self) -> bool {
        self.done.len() >= self.limit
            || self.bytes >= BATCH_BYTES
            || self.since.is_some_and(|t| t.elapsed() >= BATCH_AGE)
    }

    /// Steps 2b to 4 of the durable order, for every message in the batch:
    /// sync every destination, mark the batch seen in one transaction, and
    /// only then tell the source (flags, deletion). The destinations are
    /// synced even when the batch is empty: whatever was delivered so far is
    /// durable when this returns `Ok`, which a message committed on its own
    /// right after relies on.
    fn commit(
        &mut self,
        destinations: &mut [Box<dyn Destination>],
        state: &mut State,
        source: &mut dyn Source,
        report: &mut AccountReport,
    ) -> Result<()> {
        let (account, keep, audit) = (self.account, self.keep, self.audit);
        // 2b. Every delivery durable: the batch's, and those of a message
        //     about to be committed on its own (refused or spooled for some
        //     destination, delivered to others) even when the batch is empty.
        for d in destinations.iter_mut() {
            d.sync()?;
        }
        if self.done.is_empty() {
            return Ok(());
        }
        let done = std::mem::take(&mut self.done);
        self.bytes = 0;
        self.since = None;
        crate::fault::point("synced");
        // 3. Mark the batch seen, in one transaction: the commit that makes
        //    deletion safe.
        let entries: Vec<_> = done
            .iter()
            .map(|d| {
                (
                    &d.remote,
                    d.message_id.as_deref(),
                    Some(d.header_hash.as_str()),
                )
            })
            .collect();
        state.commit_deliveries(&account.name, &entries, retry::now(), self.policy)?;
        crate::fault::point("committed");
        log::debug!(
            "{}: committed {} delivered message(s) in one transaction",
            account.name,
            done.len()
        );
        for d in &done {
            report.messages += 1;
            report.bytes += d.bytes;
            audit_message(
                audit,
                account,
                &d.remote,
                d.message_id.as_deref(),
                &account.deliver_to,
                audit::Outcome::Delivered,
                None,
            )?;
            source.delivered(&d.remote)?;
            // 4. Only now may the server copy go.
            if !keep {
                source.delete(&d.remote)?;
                crate::fault::point("delete-queued");
            }
        }
        Ok(())
    }
}

/// Appends one audit line about `message`, when an audit log is set.
fn audit_message(
    audit: Option<&AuditLog>,
    account: &Account,
    message: &source::RemoteMessage,
    message_id: Option<&str>,
    destinations: &[String],
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
        destinations,
        outcome,
        detail,
    })
}

/// Room for the `Received:` header added after download, in the size
/// announced to SMTP/LMTP before the body is known (headers first).
const RECEIVED_ALLOWANCE: u64 = 512;

/// Whom a message is for, as the account's routing decides.
enum Addressing {
    /// Deliver with this envelope.
    Deliver(Envelope),
    /// Every recipient already had it (a `Delivered-To:` names them): a
    /// mail loop. Not delivered again.
    Loop(Vec<String>),
    /// Multidrop found no local recipient and `[general] postmaster` is
    /// not set.
    Nobody(String),
}

impl Addressing {
    /// Whether the message is done with (marked seen, deleted unless
    /// kept), and the warning to report.
    fn explain(&self, m: &source::RemoteMessage) -> (bool, String) {
        let id = format!(
            "message {} in {}",
            m.uid.as_deref().unwrap_or("?"),
            m.folder
        );
        match self {
            Addressing::Deliver(_) => (false, String::new()),
            Addressing::Loop(r) => (
                true,
                format!(
                    "{id}: mail loop, Delivered-To already names {}; not delivered again",
                    r.join(", ")
                ),
            ),
            Addressing::Nobody(why) => (false, format!("{id}: {why}; left on the server")),
        }
    }
}

/// Builds the envelope from a message's header block: the sender from
/// `Return-Path` (destinations fall back to their `sender`), the
/// recipients from multidrop routing or, single-drop, the account's user.
fn addressing(config: &Config, account: &Account, folder: &str, headers: &[u8]) -> Addressing {
    let recipients = match &account.multidrop {
        None => vec![account.user.clone()],
        Some(multidrop) => {
            let routing = crate::route::route(headers, multidrop);
            if routing.recipients.is_empty() && !routing.looped.is_empty() {
                return Addressing::Loop(routing.looped);
            }
            if !routing.looped.is_empty() {
                log::warn!(
                    "{}: mail loop: Delivered-To already names {}; not delivered to them again",
                    account.name,
                    routing.looped.join(", ")
                );
            }
            if routing.recipients.is_empty() {
                match &config.general.postmaster {
                    Some(p) => vec![p.clone()],
                    None => {
                        return Addressing::Nobody(format!(
                            "no recipient in {} ({})",
                            multidrop.local_domains.join(", "),
                            routing
                                .found_in
                                .map_or("no envelope header".to_string(), |h| format!(
                                    "read from {h}"
                                ))
                        ))
                    }
                }
            } else {
                routing.recipients
            }
        }
    };
    Addressing::Deliver(Envelope {
        sender: message::return_path(headers),
        recipients,
        account: account.name.clone(),
        folder: folder.to_string(),
    })
}

/// Hands the message to every destination. With headers first, `begun`
/// holds each destination's answer to the envelope: those that accepted
/// someone get the body (`finish`), the others keep that answer.
fn deliver_all(
    destinations: &mut [Box<dyn Destination>],
    envelope: &Envelope,
    bytes: &[u8],
    begun: Option<Vec<Result<DeliveryReport>>>,
    plan: Option<Vec<Option<Planned>>>,
) -> Vec<Result<DeliveryReport>> {
    let Some(begun) = begun else {
        let plan = plan.unwrap_or_default();
        return destinations
            .iter_mut()
            .enumerate()
            .map(|(i, d)| {
                if let Some(Some(planned)) = plan.get(i) {
                    if planned.earlier && d.has_name(envelope, &planned.name)? {
                        // Written by a run that was killed before its commit.
                        log::info!(
                            "{}: already delivered before a crash ({})",
                            d.name(),
                            planned.name
                        );
                        return Ok(DeliveryReport::all(&d.recipients(envelope)));
                    }
                    d.use_name(&planned.name);
                }
                d.deliver(envelope, bytes)
            })
            .collect();
    };
    destinations
        .iter_mut()
        .zip(begun)
        .map(|(d, began)| match began {
            Ok(mut report) if !report.accepted.is_empty() => {
                let done = d.finish(envelope, bytes)?;
                report.accepted = done.accepted;
                report.refused.extend(done.refused);
                Ok(report)
            }
            other => {
                d.abandon();
                other
            }
        })
        .collect()
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

/// Commits delivery intents for every message about to be fetched, at
/// every destination that can recognise its own earlier deliveries (one
/// transaction for the whole batch), and returns them by (folder, uid).
fn plan_deliveries(
    account: &Account,
    state: &mut State,
    destinations: &mut [Box<dyn Destination>],
    wanted: &[source::RemoteMessage],
) -> Result<Plans> {
    let mut plans = HashMap::new();
    let mut intents = Vec::new();
    for message in wanted {
        let Some(uid) = &message.uid else { continue };
        let uidvalidity = message.uidvalidity.unwrap_or(0);
        let mut per_destination = Vec::new();
        for (d, dest_name) in destinations.iter_mut().zip(&account.deliver_to) {
            let Some(fresh) = d.plan_name() else {
                per_destination.push(None);
                continue;
            };
            match state.intent(&account.name, &message.folder, uidvalidity, uid, dest_name)? {
                Some(name) => per_destination.push(Some(Planned {
                    name,
                    earlier: true,
                })),
                None => {
                    intents.push(crate::spool::Intent {
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
    state.record_intents(&account.name, &intents, retry::now())?;
    Ok(plans)
}

/// What fan-out left owing for one message.
struct Owed {
    /// (destination, recipients, error) that failed for now: spooled.
    later: Vec<(String, Vec<String>, String)>,
    /// Refusals for good, as text.
    never: Vec<String>,
}

impl Owed {
    /// Sorts per-destination results; `owed_to` is each destination's
    /// recipients for the message (all of them are owed when it failed
    /// as a whole).
    fn sort_out(results: Vec<(String, Result<DeliveryReport>)>, owed_to: Vec<Vec<String>>) -> Owed {
        let mut owed = Owed {
            later: Vec::new(),
            never: Vec::new(),
        };
        for ((name, result), recipients) in results.into_iter().zip(owed_to) {
            match result {
                Ok(report) => {
                    let mut later = Vec::new();
                    let mut errors = Vec::new();
                    for r in report.refused {
                        if r.error.is_transient() {
                            errors.push(format!("<{}>: {}", r.recipient, r.error));
                            later.push(r.recipient);
                        } else {
                            owed.never
                                .push(format!("{name}: <{}>: {}", r.recipient, r.error));
                        }
                    }
                    if !later.is_empty() {
                        owed.later.push((name, later, errors.join("; ")));
                    }
                }
                Err(e) if e.is_transient() => owed.later.push((name, recipients, e.to_string())),
                Err(e) => owed.never.push(e.to_string()),
            }
        }
        owed
    }

    /// The refusals for good, if any, as one line.
    fn never(&self) -> Option<String> {
        (!self.never.is_empty()).then(|| self.never.join("; "))
    }
}

/// A failed commit of a message that had to be spooled means the spool
/// could not take it (SPEC exit 10); other commit failures are what they
/// are.
fn cannot_spool(spooled: &[NewSpoolEntry], e: Error) -> Error {
    if spooled.is_empty() {
        return e;
    }
    Error::Delivery {
        destination: spooled
            .iter()
            .map(|s| s.destination)
            .collect::<Vec<_>>()
            .join(", "),
        message: format!("failed for now and could not be spooled: {e}"),
        transient: false,
    }
}

/// How one message fared across the account's destinations.
enum Verdict {
    /// Every destination has it for every recipient.
    Delivered,
    /// Some destination failed for now (the first such error).
    Transient(Error),
    /// No temporary failure, but some destination refused for good (why).
    Permanent(String),
}

/// Sums up per-destination results: one temporary failure anywhere makes
/// the message temporary (it must be tried again); otherwise any
/// permanent refusal makes it permanent.
fn judge(results: Vec<(String, Result<DeliveryReport>)>) -> Verdict {
    let mut permanent = Vec::new();
    for (name, result) in results {
        match result {
            Err(e) if e.is_transient() => return Verdict::Transient(e),
            Err(e) => permanent.push(e.to_string()),
            Ok(report) => {
                for r in report.refused {
                    if r.error.is_transient() {
                        return Verdict::Transient(Error::Delivery {
                            destination: name,
                            message: format!("<{}>: {}", r.recipient, r.error),
                            transient: true,
                        });
                    }
                    permanent.push(format!("<{}>: {}", r.recipient, r.error));
                }
            }
        }
    }
    if permanent.is_empty() {
        Verdict::Delivered
    } else {
        Verdict::Permanent(permanent.join("; "))
    }
}

/// What became of a message refused before its body was downloaded.
enum Refused {
    /// Left on the server (`on_refused = "keep"`, or a bounce that could
    /// not be sent).
    Kept(Option<String>),
    /// To be deleted (`on_refused = "delete"`).
    Deleted,
    /// Bounced to its sender, then to be deleted.
    Bounced,
}

impl Refused {
    fn removes(&self) -> bool {
        !matches!(self, Refused::Kept(_))
    }

    fn describe(&self) -> String {
        match self {
            Refused::Kept(None) => "left on the server".into(),
            Refused::Kept(Some(why)) => format!("left on the server ({why})"),
            Refused::Deleted => "deleted (on_refused = \"delete\")".into(),
            Refused::Bounced => "bounced to the sender and deleted".into(),
        }
    }
}

/// Applies the account's `on_refused` to a message a destination refused
/// for good. A bounce (the headers only, as a DSN) goes to the envelope
/// sender, or to the postmaster for a message with the null sender, by
/// `retry::send_bounce`; when it cannot be sent the message is kept.
fn apply_on_refused(
    config: &Config,
    account: &Account,
    envelope: &Envelope,
    headers: &[u8],
    why: &str,
) -> Refused {
    match account.on_refused {
        crate::config::OnRefused::Keep => Refused::Kept(None),
        crate::config::OnRefused::Delete => Refused::Deleted,
        crate::config::OnRefused::Bounce => {
            let destination = account.deliver_to.join(", ");
            // The addresses the destinations were asked to take: a
            // single-drop destination's `recipient`, not the account's
            // user (which need not even be an address).
            let mut recipients: Vec<String> = Vec::new();
            for name in &account.deliver_to {
                let owed = match config.destinations.get(name).and_then(|d| d.recipient()) {
                    Some(r) => vec![r.to_string()],
                    None => envelope.recipients.clone(),
                };
                for r in owed {
                    if !recipients.contains(&r) {
                        recipients.push(r);
                    }
                }
            }
            let undelivered = retry::Undelivered {
                account: &account.name,
                folder: &envelope.folder,
                destination: &destination,
                sender: envelope.sender.as_deref(),
                recipients: &recipients,
                arrived: retry::now(),
                message: message::header_block(headers),
            };
            let reason = crate::spool::GiveUp::Refused(why.to_string());
            match retry::send_bounce(config, Some(account), &undelivered, &reason) {
                Ok(()) => Refused::Bounced,
                Err(e) => Refused::Kept(Some(format!("the bounce could not be sent: {e}"))),
            }
        }
    }
}
