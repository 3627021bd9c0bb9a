//! The audit log (`general.audit_log`): one line per message that was
//! delivered, spooled, refused, bounced or skipped, so that "where is my
//! mail?" has an answer in a file a sysadmin can grep.
//!
//! A line is tab-separated, in this order (documented in
//! mailretr.toml(5), and stable):
//!
//! ```text
//! time  account  folder  uid  size  message-id  destinations  outcome  detail
//! ```
//!
//! `time` is RFC 3339 UTC; a missing value is `-`; `destinations` is a
//! comma-separated list. Tabs and line breaks inside values become
//! spaces. The file is opened for appending and each line is written
//! with a single `write` (no user-space buffer), so lines from accounts
//! fetched in parallel, or from several mailretr processes, never
//! interleave, and a line is in the file as soon as the call returns.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every destination durably accepted it.
    Delivered,
    /// A destination failed temporarily; the spool holds it for a retry.
    Spooled,
    /// A destination refused it for good (e.g. SMTP 5xx).
    Refused,
    /// It was returned to its sender (refused, or too long in the spool).
    Bounced,
    /// It was left on the server (over `max_size`).
    Skipped,
    /// It was left on the server as a suspected mail loop.
    Looped,
    /// Not delivered: its Message-ID was already delivered to its
    /// recipients within `dedup` (marked seen, deleted unless keep).
    Duplicate,
    /// A rule or `filter_command` left it on the server or deleted it
    /// without downloading it (the detail says which and why, e.g.
    /// `delete (rule 2)`).
    Filtered,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Delivered => "delivered",
            Outcome::Spooled => "spooled",
            Outcome::Refused => "refused",
            Outcome::Bounced => "bounced",
            Outcome::Skipped => "skipped",
            Outcome::Looped => "loop",
            Outcome::Duplicate => "duplicate",
            Outcome::Filtered => "filtered",
        })
    }
}

/// One audit line's content.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The account.
    pub account: &'a str,
    /// The folder (`INBOX` for POP3).
    pub folder: &'a str,
    /// The UIDL or IMAP UID, if the server gave one.
    pub uid: Option<&'a str>,
    /// Size in bytes.
    pub size: u64,
    /// The `Message-ID` header, if any.
    pub message_id: Option<&'a str>,
    /// The destinations concerned.
    pub destinations: &'a [String],
    /// What happened.
    pub outcome: Outcome,
    /// Why, for outcomes other than `Delivered` (the destination's error,
    /// the limit exceeded).
    pub detail: Option<&'a str>,
}

/// An open audit log.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
}

/// A value made safe for one tab-separated field.
fn field(value: Option<&str>) -> String {
    match value.map(str::trim) {
        None | Some("") => "-".into(),
        Some(v) => v.replace(['\t', '\r', '\n'], " "),
    }
}

impl AuditLog {
    /// Opens `path` for appending, creating it (mode 0600) if missing.
    pub fn open(path: &Path) -> Result<AuditLog> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::Config(format!("cannot open audit_log {}: {e}", path.display())))?;
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The line for `entry` at `time`, with its newline.
    pub fn format(entry: &Entry, time: chrono::DateTime<chrono::Utc>) -> String {
        let destinations = entry.destinations.join(",");
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            field(Some(entry.account)),
            field(Some(entry.folder)),
            field(entry.uid),
            entry.size,
            field(entry.message_id),
            field(Some(&destinations)),
            entry.outcome,
            field(entry.detail),
        )
    }

    /// Appends one line, now.
    pub fn record(&self, entry: &Entry) -> Result<()> {
        let line = Self::format(entry, chrono::Utc::now());
        // `&File` is `Write`: one write_all on an O_APPEND descriptor.
        (&self.file).write_all(line.as_bytes()).map_err(|e| {
            Error::Internal(format!(
                "cannot write audit_log {}: {e}",
                self.path.display()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tab_separated_with_dashes_for_missing_values() {
        let dests = vec!["home".to_string(), "relay".to_string()];
        let entry = Entry {
            account: "isp",
            folder: "INBOX",
            uid: Some("UID17"),
            size: 1234,
            message_id: Some("<a\tb@x>"),
            destinations: &dests,
            outcome: Outcome::Delivered,
            detail: None,
        };
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(
            AuditLog::format(&entry, t),
            "2023-11-14T22:13:20Z\tisp\tINBOX\tUID17\t1234\t<a b@x>\thome,relay\tdelivered\t-\n"
        );
        let skipped = Entry {
            uid: None,
            message_id: None,
            destinations: &[],
            outcome: Outcome::Skipped,
            detail: Some("over max_size\n1000"),
            ..entry
        };
        assert_eq!(
            AuditLog::format(&skipped, t),
            "2023-11-14T22:13:20Z\tisp\tINBOX\t-\t1234\t-\t-\tskipped\tover max_size 1000\n"
        );
    }

    #[test]
    fn parallel_writers_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::thread::scope(|s| {
            for t in 0..4 {
                let path = &path;
                s.spawn(move || {
                    let log = AuditLog::open(path).unwrap();
                    let account = format!("acct{t}");
                    for i in 0..200 {
                        let uid = i.to_string();
                        log.record(&Entry {
                            account: &account,
                            folder: "INBOX",
                            uid: Some(&uid),
                            size: 10,
                            message_id: None,
                            destinations: &[],
                            outcome: Outcome::Delivered,
                            detail: None,
                        })
                        .unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 800);
        assert!(text.lines().all(|l| l.split('\t').count() == 9), "{text}");
    }
}
