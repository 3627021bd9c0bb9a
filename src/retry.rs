//! Retrying the spool and sending bounces: the glue between the spool's
//! storage and schedule (`crate::store::spool`), the destinations, and the DSNs
//! of `crate::bounce`. `fetch` flushes an account's due entries before it
//! fetches new mail; `mailretr queue flush` does the same on demand.

use std::collections::HashMap;

use crate::bounce::{self, Bounce};
use crate::config::{Account, Config, DestinationConfig};
use crate::destination::{self, Destination};
use crate::error::{Error, Failure, Result};
use crate::message::Envelope;
use crate::store::spool::{self, FlushReport, GiveUp, RetryPolicy, SpoolEntry};
use crate::store::State;

/// The retry schedule from `[general]`.
pub fn policy(config: &Config) -> RetryPolicy {
    RetryPolicy {
        initial: config.general.retry_delay,
        max: config.general.retry_max_delay,
        max_age: config.general.spool_max_age,
    }
}

/// The current Unix time. Debug builds add `MAILRETR_CLOCK_OFFSET`
/// seconds, so tests move the spool's clock forward instead of sleeping.
pub fn now() -> i64 {
    let now = chrono::Local::now().timestamp();
    #[cfg(debug_assertions)]
    if let Some(offset) = std::env::var("MAILRETR_CLOCK_OFFSET")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
    {
        return now + offset;
    }
    now
}

/// Retries an account's spool entries that are due (or, with `only`, those
/// ids whatever their schedule), bouncing what is refused for good or too
/// old. Destinations are opened once and reused for the whole flush.
pub fn flush_account(
    config: &Config,
    account: &str,
    state: &mut State,
    only: Option<&[i64]>,
    now: i64,
) -> Result<FlushReport> {
    let policy = policy(config);
    let mut open: HashMap<String, Box<dyn Destination>> = HashMap::new();
    let mut recipients_left: Vec<(i64, Vec<String>)> = Vec::new();
    let result = {
        let mut deliver = |entry: &SpoolEntry| -> Result<()> {
            let e = &entry.summary;
            let Some(dest_config) = config.destinations.get(&e.destination) else {
                // A config edit, not the message: kept in the spool.
                return Err(Error::delivery(
                    e.destination.clone(),
                    "this destination is no longer in the config",
                    Failure::Local,
                ));
            };
            if !open.contains_key(&e.destination) {
                let d = destination::open(&e.destination, dest_config, &config.general.hostname)?;
                open.insert(e.destination.clone(), d);
            }
            let dest = open.get_mut(&e.destination).expect("inserted above");
            let envelope = Envelope {
                sender: e.sender.clone(),
                recipients: e.recipients.clone(),
                account: e.account.clone(),
                folder: e.folder.clone(),
                // The retry lands where the first attempt would have.
                mailbox: e.mailbox.clone(),
                flags: e.flags.clone(),
            };
            let report = dest.deliver(&envelope, &entry.message)?;
            if report.refused.is_empty() {
                return Ok(());
            }
            // Some recipients took it: only the others are still owed.
            let failure = Failure::most_hopeful(report.refused.iter().map(|r| r.error.failure()));
            let message = report
                .refused
                .iter()
                .map(|r| r.error.detail_for(&r.recipient))
                .collect::<Vec<_>>()
                .join("; ");
            recipients_left.push((
                e.id,
                report.refused.into_iter().map(|r| r.recipient).collect(),
            ));
            Err(Error::delivery(e.destination.clone(), message, failure))
        };
        let account_config = config.accounts.iter().find(|a| a.name == account);
        let mut bounce = |entry: &SpoolEntry, why: &GiveUp| -> Result<()> {
            send_bounce(config, account_config, &Undelivered::of(entry), why)
        };
        spool::flush(
            state,
            account,
            now,
            only,
            &policy,
            &mut deliver,
            &mut bounce,
        )
    };
    for (_, d) in open.iter_mut() {
        d.close();
    }
    for (id, recipients) in recipients_left {
        if state.spool_get(id)?.is_some() {
            state.spool_set_recipients(id, &recipients)?;
        }
    }
    result
}

/// Where bounces go out: `general.bounce_via`, else the account's first
/// smtp destination.
fn bounce_route<'a>(
    config: &'a Config,
    account: Option<&Account>,
) -> Option<(&'a str, &'a DestinationConfig)> {
    if let Some(via) = &config.general.bounce_via {
        return config
            .destinations
            .get_key_value(via)
            .map(|(k, v)| (k.as_str(), v));
    }
    account?.deliver_to.iter().find_map(|name| {
        config
            .destinations
            .get_key_value(name)
            .filter(|(_, d)| matches!(d, DestinationConfig::Smtp(_)))
            .map(|(k, v)| (k.as_str(), v))
    })
}

/// What a bounce is about: a message one destination would not take.
#[derive(Debug, Clone, Copy)]
pub struct Undelivered<'a> {
    /// The account that fetched it.
    pub account: &'a str,
    /// The folder it came from.
    pub folder: &'a str,
    /// The destination that would not take it.
    pub destination: &'a str,
    /// The envelope sender; `Some("")` is the null sender.
    pub sender: Option<&'a str>,
    /// The recipients not reached.
    pub recipients: &'a [String],
    /// Unix time it arrived (was spooled, or now).
    pub arrived: i64,
    /// Whether it is a spool entry (otherwise refused on its first try).
    pub in_spool: bool,
    /// The message, or at least its header.
    pub message: &'a [u8],
}

impl<'a> Undelivered<'a> {
    /// A spool entry as a bounce subject.
    pub fn of(entry: &'a SpoolEntry) -> Undelivered<'a> {
        let e = &entry.summary;
        Undelivered {
            account: &e.account,
            folder: &e.folder,
            destination: &e.destination,
            sender: e.sender.as_deref(),
            recipients: &e.recipients,
            arrived: e.created_at,
            in_spool: true,
            message: &entry.message,
        }
    }
}

/// Sends a DSN about a message given up on: to the envelope sender, or
/// to `general.postmaster` when the message has the null sender (a bounce
/// is never bounced), through `bounce_via` or the account's first smtp
/// destination. Fails when there is nobody to tell or no route.
pub fn send_bounce(
    config: &Config,
    account: Option<&Account>,
    e: &Undelivered,
    why: &GiveUp,
) -> Result<()> {
    let no_route = |message: String| Error::delivery("bounce", message, Failure::Temporary);
    let to = match e.sender {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => config.general.postmaster.clone().ok_or_else(|| {
            no_route(
                "the message has no sender to bounce to and general.postmaster is not set".into(),
            )
        })?,
    };
    let (via, via_config) = bounce_route(config, account).ok_or_else(|| {
        no_route(
            "no route for bounces: set general.bounce_via to an smtp or mda destination".into(),
        )
    })?;
    let hostname = &config.general.hostname;
    let from = config.general.bounce_sender();
    let dsn = bounce::build(
        &Bounce {
            hostname,
            from: &from,
            to: &to,
            account: e.account,
            destination: e.destination,
            recipients: e.recipients,
            reason: why,
            arrived: e.arrived,
            in_spool: e.in_spool,
            original: e.message,
        },
        chrono::Local::now(),
    );
    let mut via_config = via_config.clone();
    if let DestinationConfig::Smtp(c) = &mut via_config {
        // The bounce goes to its own recipient, not the relay's single-drop one.
        c.recipient = None;
    }
    let mut sender = destination::open(via, &via_config, hostname)?;
    let envelope = Envelope {
        sender: Some(String::new()),
        recipients: vec![to],
        account: e.account.to_string(),
        folder: e.folder.to_string(),
        mailbox: Vec::new(),
        flags: String::new(),
    };
    let sent = sender.deliver(&envelope, &dsn);
    sender.close();
    let report = sent?;
    match report.refused.into_iter().next() {
        None => Ok(()),
        Some(r) => Err(r.error),
    }
}
