//! The fetch run: every selected account, in a pool of threads, through
//! the durable order that is mailretr's reason to exist. `fetch_account`
//! holds that order in one place:
//!
//! 1. download a message from the source;
//! 2. deliver it to every destination, each of which returns only once
//!    the message is durably stored;
//! 3. mark it seen in the state database (a committed transaction);
//! 4. only then ask the server to delete it.
//!
//! A failure at any step leaves the message on the server, and nothing
//! already delivered is fetched again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Account, Config, Protocol};
use crate::destination::{self, Destination};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::lock::AccountLock;
use crate::message::{self, Envelope, TraceInfo};
use crate::secret;
use crate::source::{self, Source};
use crate::state::{RunRecord, State};

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
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<Option<AccountReport>>> =
        Mutex::new((0..accounts.len()).map(|_| None).collect());
    thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
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
    };
    let lock = AccountLock::acquire(&config.general.state_dir, &account.name);
    let result = lock.and_then(|_lock| {
        let mut state = State::open(&config.general.state_dir)?;
        let result = fetch_locked(config, account, options, &mut state, &mut report);
        if !options.check {
            let error = result.as_ref().err().map(|e| e.to_string());
            let code = match &result {
                Err(e) => e.exit_code(),
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
        Ok(()) if !options.check && report.messages > 0 => ExitCode::Retrieved,
        Ok(()) => ExitCode::NoMail,
    };
    report.error = result.err();
    report
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
) -> Result<()> {
    let keep = options.keep || account.keep;
    let fetch_all = options.fetch_all || account.fetch_all;
    let max_size = options.max_size.or(account.max_size);
    let mut destinations: Vec<Box<dyn Destination>> = account
        .deliver_to
        .iter()
        .map(|name| destination::open(name, &config.destinations[name], &config.general.hostname))
        .collect::<Result<_>>()?;

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
                }
            }
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

    let trace_host = account.server.host.clone();
    let protocol = source.protocol_name().to_string();
    source.retrieve(wanted)?;
    let delivered = (|| -> Result<()> {
        while let Some((remote, bytes)) = source.next_message()? {
            // 1. Downloaded. Build what the destinations need.
            let envelope = Envelope {
                sender: message::return_path(&bytes),
                recipients: vec![account.user.clone()],
                account: account.name.clone(),
                folder: remote.folder.clone(),
            };
            let message_id = message::header_value(&bytes, "Message-ID");
            let header_hash = message::header_hash(&bytes);
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
            // 2. Deliver to every destination, durably.
            for destination in destinations.iter_mut() {
                destination.deliver(&envelope, &bytes)?;
            }
            // 3. Mark seen: the commit that makes deletion safe.
            state.mark_seen(
                &account.name,
                &remote,
                message_id.as_deref(),
                Some(&header_hash),
            )?;
            report.messages += 1;
            report.bytes += bytes.len() as u64;
            source.delivered(&remote)?;
            // 4. Only now may the server copy go.
            if !keep {
                source.delete(&remote)?;
            }
        }
        Ok(())
    })();
    // Always end the session: deletions asked for so far take effect even
    // when a later message failed.
    let finished = source.finish();
    delivered?;
    finished?;

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
