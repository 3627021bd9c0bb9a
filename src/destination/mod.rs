//! Where mail goes. Every destination type implements `Destination`; the
//! fetch loop builds a `Vec<Box<dyn Destination>>` from the config and
//! hands each message to every destination the account names (fan-out).
//! A destination returns only when the message is durably stored (or has
//! failed).
//!
//! Results are per destination and, where the protocol says so, per
//! recipient: `deliver` returns `Err` when the message as a whole failed
//! (`Error::failure` says whether it was temporary, refused for good, or a
//! local fault), or a `DeliveryReport` listing the recipients that took
//! it and those that did not, each with its own error (LMTP answers once
//! per recipient after DATA; SMTP refuses single recipients at RCPT TO).
//! `crate::run::verdict` decides from these what becomes of the message.
//!
//! Headers first: a destination that checks the envelope before it takes
//! the body (SMTP, LMTP: `envelope_check`) splits delivery in two.
//! `begin` opens the transaction (MAIL FROM, RCPT TO for every recipient;
//! it sees the header, not the body) and reports who was accepted; only
//! if anyone was does the fetch loop download the body and call `finish`;
//! otherwise it calls `abandon` (RSET). Destinations that do not check the envelope accept
//! everyone in `begin`, and their `finish` is `deliver`.

pub mod directory;
pub mod imap;
pub mod lmtp;
pub mod maildir;
pub mod mbox;
pub mod mda;
pub mod smtp;
pub mod subfolders;

use crate::config::DestinationConfig;
use crate::error::{Error, Failure, Result};
use crate::message::Envelope;

/// One recipient a destination did not take, and why.
#[derive(Debug)]
pub struct Refusal {
    /// The recipient address.
    pub recipient: String,
    /// What the destination said; `is_transient` tells a retry from a
    /// bounce.
    pub error: Error,
}

/// What a destination did with one message: who has it now and who was
/// refused.
#[derive(Debug, Default)]
pub struct DeliveryReport {
    /// Recipients the destination accepted.
    pub accepted: Vec<String>,
    /// Recipients it refused.
    pub refused: Vec<Refusal>,
}

impl DeliveryReport {
    /// Every recipient accepted.
    pub fn all(recipients: &[String]) -> DeliveryReport {
        DeliveryReport {
            accepted: recipients.to_vec(),
            refused: Vec::new(),
        }
    }

    /// Every recipient refused with the same error (`error` is rebuilt per
    /// recipient since `Error` is not `Clone`).
    pub fn none(recipients: &[String], error: impl Fn() -> Error) -> DeliveryReport {
        DeliveryReport {
            accepted: Vec::new(),
            refused: recipients
                .iter()
                .map(|r| Refusal {
                    recipient: r.clone(),
                    error: error(),
                })
                .collect(),
        }
    }

    /// Whether every recipient was accepted.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty()
    }

    /// The refusals that may succeed later.
    pub fn transient(&self) -> impl Iterator<Item = &Refusal> {
        self.refused.iter().filter(|r| r.error.is_transient())
    }

    /// The refusals for good (a local fault is neither: see
    /// `Error::failure`).
    pub fn permanent(&self) -> impl Iterator<Item = &Refusal> {
        self.refused.iter().filter(|r| r.error.is_refusal())
    }
}

/// A place that accepts messages. Object-safe: the fetch loop holds a
/// `Vec<Box<dyn Destination>>`. Like lettre's `Transport::send_raw`, the
/// core is one method, `deliver`; what only some destinations can do is
/// an optional capability (`envelope_check`, `group_commit`,
/// `crash_recovery`), each a small trait of its own.
pub trait Destination: Send {
    /// The destination's name from the config.
    fn name(&self) -> &str;

    /// Stores one message (LF line endings) durably for the envelope's
    /// recipients (unless `group_commit` deferred the sync). `Err` means
    /// nobody got it; a report with refusals means some did not.
    /// `Error::failure` says what each failure means for the message.
    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport>;

    /// The recipients this destination delivers to for `envelope`: a
    /// fixed `recipient` from the config, or the envelope's.
    fn recipients(&self, envelope: &Envelope) -> Vec<String> {
        envelope.recipients.clone()
    }

    /// Ends the run: closes connections politely (SMTP/LMTP `QUIT`, IMAP
    /// `LOGOUT`) and drops deliveries never synced. Errors here lose
    /// nothing and are ignored.
    fn close(&mut self) {}

    /// Headers first: the destination asks the server about the envelope
    /// before it needs the body (SMTP, LMTP).
    fn envelope_check(&mut self) -> Option<&mut dyn EnvelopeCheck> {
        None
    }

    /// Group commit: the destination can defer its sync to one call per
    /// batch (Maildir).
    fn group_commit(&mut self) -> Option<&mut dyn GroupCommit> {
        None
    }

    /// Crash recovery: the destination stores files under names it
    /// chooses and can recognise its own earlier delivery (Maildir,
    /// directory).
    fn crash_recovery(&mut self) -> Option<&mut dyn CrashRecovery> {
        None
    }
}

/// Headers first (SMTP, LMTP): delivery in two steps, so a message that
/// would be refused costs only its header.
pub trait EnvelopeCheck {
    /// Opens a transaction for a message of about `size` bytes whose
    /// header block is `header` (MAIL FROM with SIZE, BODY and SMTPUTF8
    /// as the server offers and the header needs, RCPT TO for every
    /// recipient) and reports which recipients the server would take.
    fn begin(&mut self, envelope: &Envelope, size: u64, header: &[u8]) -> Result<DeliveryReport>;

    /// Sends the body for the transaction `begin` opened.
    fn finish(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport>;

    /// Drops a transaction `begin` opened (`RSET`).
    fn abandon(&mut self);
}

/// Group commit: `deliver` may return before the message is durable, and
/// only `sync` makes it so, for a whole batch at once. Only destinations
/// that also offer `CrashRecovery` should, so a crash between a delivery
/// and its commit duplicates nothing.
pub trait GroupCommit {
    /// Switches deferred sync on.
    fn defer_sync(&mut self);

    /// Makes every delivery since the last call durable. Nothing
    /// delivered may be committed as seen before this returns `Ok`; after
    /// an `Err`, none of those deliveries may be counted as done (some may
    /// be visible, and crash recovery recognises them on the next run).
    fn sync(&mut self) -> Result<()>;
}

/// Crash recovery for destinations that store files under names they
/// choose: the run commits the name as a delivery intent before writing,
/// and a run after a crash asks whether a file of that name exists.
pub trait CrashRecovery {
    /// The base name the next delivery will use.
    fn plan_name(&mut self) -> String;

    /// Makes the next `deliver` use `base`.
    fn use_name(&mut self, base: &str);

    /// Whether a delivery under `base` exists already (a run was killed
    /// after writing it and before its seen-commit), also if a mail
    /// reader has moved it since.
    fn has_name(&mut self, envelope: &Envelope, base: &str) -> Result<bool>;
}

/// Builds a destination from its config. Nothing connects yet: network
/// destinations connect on their first message and keep the connection
/// for the rest of the run.
pub fn open(
    name: &str,
    config: &DestinationConfig,
    hostname: &str,
) -> Result<Box<dyn Destination>> {
    Ok(match config {
        DestinationConfig::Maildir {
            path,
            subfolders,
            flags,
        } => Box::new(
            maildir::Maildir::new(name, path.clone(), hostname).with_tree(*subfolders, *flags),
        ),
        DestinationConfig::Mbox { path } => Box::new(mbox::Mbox::new(name, path.clone())),
        DestinationConfig::Directory { path, filename } => Box::new(directory::Directory::new(
            name,
            path.clone(),
            filename.clone(),
            hostname,
        )),
        DestinationConfig::Smtp(c) => Box::new(smtp::Smtp::new(name, c.clone(), hostname)),
        DestinationConfig::Lmtp(c) => Box::new(lmtp::Lmtp::new(name, c.clone(), hostname)),
        DestinationConfig::Mda(c) => Box::new(mda::Mda::new(name, c.clone())),
        DestinationConfig::Imap(c) => Box::new(imap::ImapAppend::new(name, c.clone())),
    })
}

/// `deliver` for destinations that check the envelope first (SMTP,
/// LMTP): `begin`, then `finish` if anyone was accepted, else `abandon`.
pub(crate) fn deliver_in_two_steps(
    d: &mut dyn EnvelopeCheck,
    envelope: &Envelope,
    message: &[u8],
) -> Result<DeliveryReport> {
    let header = crate::message::header_block(message);
    let mut report = d.begin(envelope, message.len() as u64, header)?;
    if report.accepted.is_empty() {
        d.abandon();
        return Ok(report);
    }
    let done = d.finish(envelope, message)?;
    report.accepted = done.accepted;
    report.refused.extend(done.refused);
    Ok(report)
}

/// The recipients of a destination with an optional fixed `recipient`
/// (single-drop): that one, or the envelope's.
pub(crate) fn fixed_or_envelope(fixed: &Option<String>, envelope: &Envelope) -> Vec<String> {
    match fixed {
        Some(r) => vec![r.clone()],
        None => envelope.recipients.clone(),
    }
}

/// A name unique across processes and time, as Maildir prescribes:
/// seconds, microseconds, pid, a per-process counter and the host
/// (`hostname` must already be safe in a file name).
pub(crate) fn unique_base(hostname: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{hostname}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    )
}

/// Expands a path or file name template: `%A` the account, `%U` the
/// recipient, `%I` a unique id, `%%` a percent sign. Values are made safe
/// for a file name first (a recipient can come from a message header):
/// anything but letters, digits and `@ . _ + -` becomes `_`, and a leading
/// dot too, so no value can climb out of its directory.
pub fn expand_template(template: &str, account: &str, recipient: &str, unique: &str) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('A') => out.push_str(&file_safe(account)),
            Some('U') => out.push_str(&file_safe(recipient)),
            Some('I') => out.push_str(&file_safe(unique)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `value` with everything but `[A-Za-z0-9@._+-]` (and a leading dot)
/// replaced by `_`; an empty value becomes `_`.
pub fn file_safe(value: &str) -> String {
    let mut s: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "@._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.replace_range(0..0, "_");
    }
    s
}

/// Whether a template expands differently per recipient.
pub fn per_recipient(template: &str) -> bool {
    template.contains("%U")
}

/// A local I/O failure as a delivery error: a full disk or quota clears
/// up (temporary); every other local error (EACCES, EROFS, EIO, ENOTDIR,
/// ...) is a local fault, never a refusal of the message.
pub fn local_error(destination: &str, what: &str, e: &std::io::Error) -> Error {
    Error::delivery(destination, format!("{what}: {e}"), io_failure(e))
}

/// How a local I/O error counts (SPEC "What a failure does"): a full
/// disk or quota, or an interrupted call, is temporary; anything else is
/// a local fault.
pub fn io_failure(e: &std::io::Error) -> Failure {
    let temporary = matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EAGAIN) | Some(libc::EINTR)
    ) || e.kind() == std::io::ErrorKind::Interrupted;
    if temporary {
        Failure::Temporary
    } else {
        Failure::Local
    }
}

/// The envelope sender to use: the message's `Return-Path`, else the
/// destination's configured `sender`, else the null sender.
pub fn sender_of(envelope: &Envelope, configured: Option<&str>) -> String {
    envelope
        .sender
        .clone()
        .or_else(|| configured.map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_and_stay_in_their_directory() {
        assert_eq!(
            expand_template("%A/%U-%I.eml", "isp", "jaco@kroon.co.za", "123.x"),
            "isp/jaco@kroon.co.za-123.x.eml"
        );
        assert_eq!(
            expand_template("%U", "a", "../../etc/passwd", "i"),
            "_.._.._etc_passwd"
        );
        assert_eq!(expand_template("%U", "a", ".hidden", "i"), "_.hidden");
        assert_eq!(expand_template("100%% %X %", "a", "u", "i"), "100% %X %");
        assert_eq!(expand_template("%U", "a", "", "i"), "_");
        assert!(per_recipient("~/Mail/%U"));
        assert!(!per_recipient("~/Mail"));
    }

    #[test]
    fn reports_sort_refusals() {
        let mut r = DeliveryReport::all(&["a@x".into()]);
        assert!(r.is_complete());
        r.refused.push(Refusal {
            recipient: "b@x".into(),
            error: Error::delivery("d", "451", Failure::Temporary),
        });
        assert!(!r.is_complete());
        assert_eq!(r.transient().count(), 1);
        assert_eq!(r.permanent().count(), 0);
    }
}
