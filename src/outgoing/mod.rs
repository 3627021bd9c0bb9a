//! The outgoing queue: `mailretr sendmail` (also as argv\[0\] `sendmail`)
//! takes a message on stdin, adds what sendmail adds, and commits it to
//! the retry spool, one entry per relay, before it exits 0. Delivery is
//! then tried by a detached `mailretr queue flush --outgoing --due` after
//! `[outgoing] delay`, by every `fetch` and `watch`, and by `queue flush`.
//! An entry leaves the spool only after its relay answered 250 to the
//! final dot, or after the local user was sent a DSN about it (refused
//! for good, or older than `spool_max_age`): never silently.
//!
//! One flusher at a time works on the outgoing entries (the flock
//! `outgoing.lock` beside `state.db`), and the one that runs takes every
//! entry that is due, so a burst (git send-email) goes over one SMTP
//! connection per relay.

pub mod args;
pub mod headers;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Local};

use crate::bounce::{self, Bounce};
use crate::config::{Config, DestinationConfig};
use crate::destination::{self, Destination};
use crate::error::{Error, Failure, Result};
use crate::message::{is_smtp_address, Envelope};
use crate::store::spool::{self, FlushReport, GiveUp, NewOutgoing, SpoolEntry, OUTGOING};
use crate::store::State;
use args::Invocation;

/// sendmail's exit codes (sysexits.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysExit {
    /// 0: queued (or listed, or flushed).
    Ok,
    /// 64: a bad command line.
    Usage,
    /// 65: no recipients, or a message that cannot be read.
    DataErr,
    /// 67: a recipient that cannot be sent to (no `local` for a name
    /// without '@', or not an address).
    NoUser,
    /// 70: a bug.
    Software,
    /// 75: the spool cannot take it now; try again.
    TempFail,
    /// 78: no `[outgoing]`, or a config that does not load.
    Config,
}

impl SysExit {
    /// The process exit status.
    pub fn code(self) -> i32 {
        match self {
            SysExit::Ok => 0,
            SysExit::Usage => 64,
            SysExit::DataErr => 65,
            SysExit::NoUser => 67,
            SysExit::Software => 70,
            SysExit::TempFail => 75,
            SysExit::Config => 78,
        }
    }

    /// The sendmail exit code for a mailretr error (a config that does
    /// not load, a state database that cannot be opened).
    pub fn of(e: &Error) -> SysExit {
        match e {
            Error::Config(_) | Error::UnsafePermissions(_) => SysExit::Config,
            Error::Internal(_) => SysExit::Software,
            _ => SysExit::TempFail,
        }
    }
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The exit code.
    pub code: SysExit,
    /// One line for stderr.
    pub message: String,
}

fn refused(code: SysExit, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// What `submit` queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// The spool ids, one per relay (and one for `local`).
    pub ids: Vec<i64>,
    /// The envelope sender used.
    pub sender: String,
    /// Every recipient.
    pub recipients: Vec<String>,
    /// The message's Message-ID (added or its own).
    pub message_id: Option<String>,
}

/// The login name of the user running mailretr: `$USER`, `$LOGNAME`,
/// else the password database, else `uid<N>`.
pub fn login_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic() && c != '@') {
                return v;
            }
        }
    }
    // SAFETY: getpwuid(3) returns a pointer into static storage or NULL;
    // the name is copied before any other call could overwrite it.
    unsafe {
        let uid = libc::geteuid();
        let pw = libc::getpwuid(uid);
        if !pw.is_null() && !(*pw).pw_name.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str() {
                return name.to_string();
            }
        }
        format!("uid{uid}")
    }
}

/// Whether a recipient without '@' is a name `local` may get.
fn is_local_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
        && !name.starts_with(['-', '.'])
}

/// The recipients in order, each once (compared case-insensitively).
fn dedup(recipients: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    recipients
        .into_iter()
        .filter(|r| seen.insert(r.to_lowercase()))
        .collect()
}

/// Splits recipients into remote addresses and local names, refusing
/// what cannot be sent to (EX_NOUSER).
fn split_recipients(
    recipients: &[String],
    local: Option<&str>,
) -> std::result::Result<(Vec<String>, Vec<String>), Refused> {
    let (mut remote, mut names) = (Vec::new(), Vec::new());
    for r in recipients {
        if r.contains('@') {
            if !is_smtp_address(r) {
                return Err(refused(
                    SysExit::NoUser,
                    format!("{r:?} is not an address SMTP can carry"),
                ));
            }
            remote.push(r.clone());
        } else if !is_local_name(r) {
            return Err(refused(
                SysExit::NoUser,
                format!("{r:?} is neither an address nor a local user name"),
            ));
        } else if local.is_none() {
            return Err(refused(
                SysExit::NoUser,
                format!(
                    "{r}: no local delivery is configured; set [outgoing] local to an mda destination, or write the full address"
                ),
            ));
        } else {
            names.push(r.clone());
        }
    }
    Ok((remote, names))
}

/// Builds the message and its envelope and commits them to the spool.
/// Returns only once the entries are on disk (the SQLite commit with
/// `synchronous = FULL`, then an fsync of the state directory).
pub fn submit(
    config: &Config,
    inv: &Invocation,
    input: &[u8],
    now: DateTime<Local>,
) -> std::result::Result<Queued, Refused> {
    let outgoing = config.outgoing.as_ref().ok_or_else(|| {
        refused(
            SysExit::Config,
            format!(
                "{} has no [outgoing] section: name the relay to send through (see mailretr.toml(5))",
                config
                    .path
                    .as_deref()
                    .map_or("the config".into(), |p| p.display().to_string())
            ),
        )
    })?;
    let hostname = &config.general.hostname;
    let raw = headers::read_input(input, inv.ignore_dots);
    let user_address = format!("{}@{hostname}", login_name());
    let added_from = match inv.from.as_deref() {
        Some(f) if is_smtp_address(f) => f.to_string(),
        _ => user_address.clone(),
    };
    let message_id = headers::new_message_id(now.timestamp(), hostname);
    let date = now.to_rfc2822();
    let mut recipients = inv.recipients.clone();
    if inv.extract_recipients {
        recipients.extend(headers::header_recipients(&raw));
    }
    let recipients = dedup(recipients);
    if recipients.is_empty() {
        return Err(refused(
            SysExit::DataErr,
            if inv.extract_recipients {
                "no recipients: none on the command line and none in To:, Cc: or Bcc:"
            } else {
                "no recipients: give them as arguments, or use -t to read To:, Cc: and Bcc:"
            },
        ));
    }
    let message = headers::prepare(
        &raw,
        &headers::Additions {
            date: &date,
            message_id: &message_id,
            from_address: &added_from,
            full_name: inv.full_name.as_deref(),
        },
    );
    let from_header = headers::from_address(&message);
    // Who the message is from, for picking the identity.
    let author = match inv.from.as_deref() {
        Some(f) if !f.is_empty() => f.to_string(),
        _ => from_header.clone().unwrap_or_else(|| user_address.clone()),
    };
    let route = outgoing.route(&author);
    let sender = match (&inv.from, route.sender) {
        (Some(f), _) if f.is_empty() || is_smtp_address(f) => f.clone(),
        (Some(f), _) => {
            return Err(refused(
                SysExit::Usage,
                format!("-f {f:?} is not an address"),
            ))
        }
        (None, Some(forced)) => forced.to_string(),
        (None, None) => from_header.unwrap_or(user_address),
    };
    let (remote, names) = split_recipients(&recipients, outgoing.local.as_deref())?;
    let mut entries = Vec::new();
    if !remote.is_empty() {
        entries.push(NewOutgoing {
            destination: route.relay,
            sender: Some(&sender),
            recipients: &remote,
        });
    }
    if let Some(local) = outgoing.local.as_deref().filter(|_| !names.is_empty()) {
        entries.push(NewOutgoing {
            destination: local,
            sender: Some(&sender),
            recipients: &names,
        });
    }
    let tempfail = |e: Error| {
        refused(
            SysExit::TempFail,
            format!("the queue cannot take the message now: {e}"),
        )
    };
    let state_dir = &config.general.state_dir;
    let mut state = State::open(state_dir).map_err(tempfail)?;
    let message_id_value = crate::message::header_value(&message, "Message-ID");
    let ids = state
        .spool_outgoing(
            &entries,
            &message,
            message_id_value.as_deref(),
            crate::retry::now(),
        )
        .map_err(tempfail)?;
    drop(state);
    sync_dir(state_dir).map_err(|e| {
        tempfail(Error::Internal(format!(
            "fsync of {}: {e}",
            state_dir.display()
        )))
    })?;
    Ok(Queued {
        ids,
        sender,
        recipients,
        message_id: message_id_value,
    })
}

/// fsyncs a directory, so a file created in it survives a power cut.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Retries outgoing entries: the due ones, or with `only` those ids
/// whatever their schedule. Each relay is connected to once for the whole
/// flush; each entry's outcome is committed before the next is tried. The
/// caller holds the outgoing lock.
pub fn flush(
    config: &Config,
    state: &mut State,
    only: Option<&[i64]>,
    now: i64,
) -> Result<FlushReport> {
    let policy = crate::retry::policy(config);
    let mut open: HashMap<String, Box<dyn Destination>> = HashMap::new();
    // Recipients still owed after a partial delivery, by entry id.
    let left: RefCell<Vec<(i64, Vec<String>)>> = RefCell::new(Vec::new());
    // A second connection, so a partial delivery is recorded at once (a
    // crash later in the flush must not send to the others again).
    let mut side = State::open(&config.general.state_dir)?;
    let result = {
        let mut deliver = |entry: &SpoolEntry| {
            let before = left.borrow().len();
            let result = deliver_one(config, &mut open, &left, entry);
            if let Some((id, owed)) = left.borrow().get(before) {
                if let Err(e) = side.spool_set_recipients(*id, owed) {
                    log::error!(
                        "outgoing: spool entry {id}: recording the recipients still owed: {e}"
                    );
                }
            }
            result
        };
        let mut report = |entry: &SpoolEntry, why: &GiveUp| {
            let refused = left
                .borrow()
                .iter()
                .rev()
                .find(|(id, _)| *id == entry.summary.id)
                .map(|(_, r)| r.clone());
            let recipients = refused.unwrap_or_else(|| entry.summary.recipients.clone());
            report_to_user(config, entry, &recipients, why)
        };
        spool::flush(
            state,
            OUTGOING,
            now,
            only,
            &policy,
            &mut deliver,
            &mut report,
        )
    };
    for (_, d) in open.iter_mut() {
        d.close();
    }
    for (id, recipients) in left.into_inner() {
        if state.spool_get(id)?.is_some() {
            state.spool_set_recipients(id, &recipients)?;
        }
    }
    result
}

/// Hands one entry to its relay (or `local`), opening it on first use.
fn deliver_one(
    config: &Config,
    open: &mut HashMap<String, Box<dyn Destination>>,
    left: &RefCell<Vec<(i64, Vec<String>)>>,
    entry: &SpoolEntry,
) -> Result<()> {
    let e = &entry.summary;
    let Some(dest_config) = config.destinations.get(&e.destination) else {
        return Err(Error::delivery(
            e.destination.clone(),
            "this destination is no longer in the config",
            Failure::Local,
        ));
    };
    if !open.contains_key(&e.destination) {
        let mut dest_config = dest_config.clone();
        if let DestinationConfig::Smtp(c) = &mut dest_config {
            // A relay sends to the message's recipients.
            c.recipient = None;
        }
        let d = destination::open(&e.destination, &dest_config, &config.general.hostname)?;
        open.insert(e.destination.clone(), d);
    }
    let dest = open.get_mut(&e.destination).expect("inserted above");
    let envelope = Envelope {
        sender: e.sender.clone(),
        recipients: e.recipients.clone(),
        account: String::new(),
        folder: String::new(),
        mailbox: Vec::new(),
        flags: String::new(),
    };
    let report = dest.deliver(&envelope, &entry.message)?;
    if report.refused.is_empty() {
        return Ok(());
    }
    let failure = Failure::most_hopeful(report.refused.iter().map(|r| r.error.failure()));
    let message = report
        .refused
        .iter()
        .map(|r| format!("<{}>: {}", r.recipient, r.error))
        .collect::<Vec<_>>()
        .join("; ");
    left.borrow_mut().push((
        e.id,
        report.refused.into_iter().map(|r| r.recipient).collect(),
    ));
    Err(Error::delivery(e.destination.clone(), message, failure))
}

/// Tells the local user about an outgoing message given up on (refused
/// for good, or too old): an RFC 3464 DSN through `[outgoing] local` when
/// it is set (to the login name), else into `~/Maildir`. An error keeps
/// the entry in the spool, marked expired.
fn report_to_user(
    config: &Config,
    entry: &SpoolEntry,
    recipients: &[String],
    why: &GiveUp,
) -> Result<()> {
    let e = &entry.summary;
    let hostname = &config.general.hostname;
    let user = login_name();
    let to = match e.sender.as_deref() {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => format!("{user}@{hostname}"),
    };
    let from = config.general.bounce_sender();
    let dsn = bounce::build(
        &Bounce {
            hostname,
            from: &from,
            to: &to,
            account: OUTGOING,
            destination: &e.destination,
            recipients,
            reason: why,
            arrived: e.created_at,
            in_spool: true,
            original: &entry.message,
        },
        Local::now(),
    );
    let local = config.outgoing.as_ref().and_then(|o| o.local.as_deref());
    let (name, mut via): (&str, Box<dyn Destination>) = match local
        .and_then(|l| config.destinations.get_key_value(l))
    {
        Some((name, c)) => (name, destination::open(name, c, hostname)?),
        None => {
            let home = dirs::home_dir()
                .ok_or_else(|| Error::delivery("~/Maildir", "no home directory", Failure::Local))?;
            (
                "~/Maildir",
                Box::new(destination::maildir::Maildir::new(
                    "~/Maildir",
                    home.join("Maildir"),
                    hostname,
                )),
            )
        }
    };
    let envelope = Envelope {
        sender: Some(String::new()),
        recipients: vec![user],
        account: String::new(),
        folder: String::new(),
        mailbox: Vec::new(),
        flags: String::new(),
    };
    let sent = via.deliver(&envelope, &dsn);
    via.close();
    match sent?.refused.into_iter().next() {
        None => {
            log::warn!(
                "outgoing: spool entry {} to {} given up on; the DSN went to {name}",
                e.id,
                e.recipients.join(", ")
            );
            Ok(())
        }
        Some(r) => Err(r.error),
    }
}

/// What `fetch` and `watch` do with the outgoing queue: if anything is
/// due and no other flusher holds the lock, flush it. Problems are
/// logged, never fatal (the entries stay in the spool).
pub fn flush_due_quietly(config: &Config) {
    let state_dir = &config.general.state_dir;
    if !state_dir.join("state.db").exists() {
        return;
    }
    let now = crate::retry::now();
    let mut state = match State::shared(state_dir) {
        Ok(s) => s,
        Err(e) => return log::error!("outgoing: {e}"),
    };
    match state.spool_due(OUTGOING, now) {
        Ok(due) if due.is_empty() => return,
        Ok(_) => {}
        Err(e) => return log::error!("outgoing: {e}"),
    }
    let Ok(_lock) = crate::lock::AccountLock::outgoing(state_dir, false) else {
        return; // another flusher is at it
    };
    match flush(config, &mut state, None, now) {
        Ok(report) => log_report(&report),
        Err(e) => log::error!("outgoing: {e}"),
    }
}

/// Logs what a flush of the outgoing queue did.
pub fn log_report(report: &FlushReport) {
    for e in report.errors.iter().chain(&report.local_faults) {
        log::error!("outgoing: {e}");
    }
    if report.delivered + report.bounced + report.deferred > 0 {
        log::info!(
            "outgoing: {} sent, {} reported to you as undeliverable, {} still queued",
            report.delivered,
            report.bounced,
            report.deferred
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_split_into_remote_and_local() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (remote, local) =
            split_recipients(&r(&["a@x.example", "root", "b@y.example"]), Some("filter")).unwrap();
        assert_eq!(remote, ["a@x.example", "b@y.example"]);
        assert_eq!(local, ["root"]);
        let e = split_recipients(&r(&["root"]), None).unwrap_err();
        assert_eq!(e.code, SysExit::NoUser);
        assert!(e.message.contains("[outgoing] local"), "{}", e.message);
        let e = split_recipients(&r(&["a b@x"]), None).unwrap_err();
        assert_eq!(e.code, SysExit::NoUser);
        assert_eq!(
            split_recipients(&r(&["-oops"]), Some("f"))
                .unwrap_err()
                .code,
            SysExit::NoUser
        );
        assert_eq!(dedup(r(&["a@x", "A@X", "b@y"]).into_iter()), ["a@x", "b@y"]);
    }

    #[test]
    fn sysexits_are_sendmails() {
        assert_eq!(SysExit::Usage.code(), 64);
        assert_eq!(SysExit::DataErr.code(), 65);
        assert_eq!(SysExit::NoUser.code(), 67);
        assert_eq!(SysExit::Software.code(), 70);
        assert_eq!(SysExit::TempFail.code(), 75);
        assert_eq!(SysExit::Config.code(), 78);
        assert_eq!(SysExit::of(&Error::Config("x".into())), SysExit::Config);
    }
}
