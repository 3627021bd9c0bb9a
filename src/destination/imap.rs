//! Delivery by IMAP `APPEND` (RFC 3501 section 6.3.11) to a folder on
//! another server, with the same TLS and authentication rules as IMAP
//! sources (the connection is made by `source::imap::connect_session`).
//! The internal date is preserved: it is taken from the message's
//! `Date:` header, else from the date of its newest `Received:` header,
//! so the copy sorts where the original did.
//!
//! One connection per run, reused for every message; the folder is
//! created on first use if the server does not list it. A broken
//! connection is a temporary failure and the next message reconnects.
//!
//! With `subfolders = "verbatim"` the source's tree is mirrored: INBOX
//! goes to `folder`, any other folder (its levels relative to the
//! source's personal namespace) under the target's personal namespace
//! prefix (asked with `NAMESPACE`) with the target's hierarchy delimiter
//! (asked with `LIST "" ""`), or under `folder` when that is not INBOX
//! (see `super::subfolders::imap_folder`). A folder the server does not
//! have is created when APPEND answers `[TRYCREATE]`, and the APPEND
//! tried once more. With `flags = true` the copy gets the flags the
//! message had on the source (`\Seen \Flagged \Answered \Draft`).

use chrono::{DateTime, FixedOffset};

use crate::config::{self, ImapAppendConfig, Subfolders};
use crate::error::{Error, Failure, Result};
use crate::message::{self, Envelope};
use crate::secret;
use crate::source::imap::{connect_session, folders, Conn};

use super::{DeliveryReport, Destination};

/// An IMAP APPEND destination.
pub struct ImapAppend {
    name: String,
    config: ImapAppendConfig,
    session: Option<imap::Session<Conn>>,
    /// The target's personal namespace prefix (config-style) and
    /// hierarchy delimiter, learned at connect time for `verbatim`.
    tree: Option<(String, Option<char>)>,
    /// Mirrored folders known to exist on the target this run.
    known: std::collections::HashSet<String>,
}

/// The date to give the appended copy: `Date:`, else the newest
/// `Received:` header's date.
pub fn internal_date(message: &[u8]) -> Option<DateTime<FixedOffset>> {
    let parse = |s: &str| {
        // Drop a trailing comment such as "(UTC)", which chrono refuses.
        let s = s.split(" (").next().unwrap_or(s).trim();
        DateTime::parse_from_rfc2822(s).ok()
    };
    if let Some(d) = message::header_value(message, "Date")
        .as_deref()
        .and_then(parse)
    {
        return Some(d);
    }
    let received = message::header_value(message, "Received")?;
    parse(received.rsplit(';').next()?)
}

/// LF line endings to CRLF, as IMAP literals carry them.
fn to_crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 30);
    let mut prev = 0u8;
    for &b in message {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

impl ImapAppend {
    /// A destination for `config`; it connects on first use.
    pub fn new(name: &str, config: ImapAppendConfig) -> ImapAppend {
        ImapAppend {
            name: name.to_string(),
            config,
            session: None,
            tree: None,
            known: Default::default(),
        }
    }

    fn fail(&self, message: String, failure: Failure) -> Error {
        Error::delivery(self.name.clone(), message, failure)
    }

    fn connect(&mut self) -> Result<()> {
        if self.session.is_some() {
            return Ok(());
        }
        let c = &self.config;
        // An account-shaped description of the server, so the source's
        // connection rules (TLS, STARTTLS, mechanisms) apply unchanged.
        let url = format!(
            "imaps://{}@{}",
            "x",
            c.server.host.trim_matches(|ch| ch == '[' || ch == ']')
        );
        let mut account = config::from_url(&url, "/", true)
            .map_err(|e| self.fail(e.to_string(), Failure::Local))?
            .accounts
            .remove(0);
        account.name = self.name.clone();
        account.server = c.server.clone();
        account.user = c.user.clone();
        account.secret = c.secret.clone();
        account.auth = c.auth.clone();
        account.auth_explicit = true;
        account.oauth2 = c.oauth2.clone();
        let password =
            secret::resolve(&c.secret).map_err(|e| self.fail(e.to_string(), Failure::Local))?;
        let logged_in = connect_session(&account, password.as_deref().map(String::as_str))
            .map_err(|e| self.fail(format!("{}: {e}", c.server.host), e.failure()))?;
        let mut session = if c.subfolders == Subfolders::Verbatim {
            let (session, prefix, delimiter) = learn_tree(logged_in, &self.name);
            self.tree = Some((prefix, delimiter));
            session
        } else {
            logged_in.session
        };
        let folder = c.folder.clone();
        let listed = session
            .list(None, Some(&folder))
            .map(|names| names.iter().next().is_some())
            .unwrap_or(true);
        if !listed {
            session.create(&folder).map_err(|e| {
                self.fail(
                    format!("cannot create folder {folder}: {e}"),
                    Failure::Local,
                )
            })?;
        }
        self.session = Some(session);
        Ok(())
    }
}

impl Destination for ImapAppend {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        self.connect()?;
        let content = to_crlf(message);
        let folder = self.target_folder(envelope)?;
        let flags: Vec<imap::types::Flag<'static>> = if self.config.flags {
            imap_flags(&envelope.flags)
        } else {
            Vec::new()
        };
        let date = internal_date(message);
        if folder != self.config.folder && !self.known.contains(&folder) {
            self.ensure_folder(&folder);
        }
        let session = self.session.as_mut().expect("connected above");
        let mut result = append(session, &folder, &content, date, &flags);
        // A folder gone since it was seen (or a server that lists what it
        // cannot append to): `[TRYCREATE]` (or an APPEND refused before
        // its literal, which the crate reports without the code) gets one
        // CREATE and one more try.
        let try_create = match &result {
            Err(imap::Error::No(no)) => {
                no.code == Some(imap_proto::types::ResponseCode::TryCreate)
                    || no.information.contains("TRYCREATE")
            }
            Err(imap::Error::Append) => true,
            _ => false,
        };
        if try_create
            && self.config.subfolders == Subfolders::Verbatim
            && folder != self.config.folder
        {
            self.known.remove(&folder);
            if session.create(&folder).is_ok() {
                self.known.insert(folder.clone());
                result = append(session, &folder, &content, date, &flags);
            }
        }
        match result {
            Ok(()) => Ok(DeliveryReport::all(&envelope.recipients)),
            Err(e @ (imap::Error::Io(_) | imap::Error::ConnectionLost | imap::Error::Bye(_))) => {
                self.session = None;
                Err(self.fail(format!("APPEND to {folder}: {e}"), Failure::Temporary))
            }
            Err(e) => {
                let failure = append_failure(&e);
                Err(self.fail(format!("APPEND to {folder}: {e}"), failure))
            }
        }
    }

    fn close(&mut self) {
        if let Some(mut s) = self.session.take() {
            let _ = s.logout();
        }
    }
}

impl ImapAppend {
    /// Makes sure the mirrored `folder` (its server name) exists: listed,
    /// or else created (the server creates missing parents, RFC 3501
    /// section 6.3.3).
    fn ensure_folder(&mut self, folder: &str) {
        let session = self.session.as_mut().expect("connected");
        let listed = session
            .list(None, Some(folder))
            .map(|names| names.iter().any(|n| n.name() == folder))
            .unwrap_or(false);
        if !listed {
            if let Err(e) = session.create(folder) {
                // Created meanwhile by someone else is fine; anything
                // else the APPEND that follows reports.
                log::debug!("{}: CREATE {}: {e}", self.name, message::escape(folder));
            }
        }
        self.known.insert(folder.to_string());
    }

    /// The server's name of the folder a message from `envelope` is
    /// appended to: `folder`, or with `verbatim` the mirrored one
    /// (delimiter and modified UTF-7 of the target). A source folder that
    /// cannot be named there is a refusal of the message.
    fn target_folder(&self, envelope: &Envelope) -> Result<String> {
        if self.config.subfolders != Subfolders::Verbatim || envelope.mailbox.is_empty() {
            return Ok(self.config.folder.clone());
        }
        let (prefix, delimiter) = self.tree.clone().unwrap_or_default();
        let name = super::subfolders::imap_folder(
            &self.config.folder,
            &prefix,
            delimiter,
            &envelope.mailbox,
        )
        .map_err(|why| self.fail(why, Failure::Refused))?;
        Ok(folders::server_name(&name, delimiter))
    }
}

/// One APPEND, with the internal date and flags.
fn append(
    session: &mut imap::Session<Conn>,
    folder: &str,
    content: &[u8],
    date: Option<DateTime<FixedOffset>>,
    flags: &[imap::types::Flag<'static>],
) -> imap::Result<()> {
    let mut append = session.append(folder, content);
    if let Some(date) = date {
        append.internal_date(date);
    }
    append.flags(flags.iter().cloned());
    append.finish().map(|_| ())
}

/// The IMAP flags for Maildir info letters.
fn imap_flags(info: &str) -> Vec<imap::types::Flag<'static>> {
    use imap::types::Flag;
    info.chars()
        .filter_map(|c| match c {
            'D' => Some(Flag::Draft),
            'F' => Some(Flag::Flagged),
            'R' => Some(Flag::Answered),
            'S' => Some(Flag::Seen),
            _ => None,
        })
        .collect()
}

/// The target's personal namespace prefix (config-style) and hierarchy
/// delimiter: `NAMESPACE` when offered (else no prefix), the delimiter
/// from `LIST "" ""` (else `/`). Both are read past the `imap` crate, on
/// the session's second handle (its parser rejects NAMESPACE answers),
/// before the crate sends anything more. Nothing here is worth failing a
/// delivery over: what cannot be read is the default.
fn learn_tree(
    logged_in: crate::source::imap::LoggedIn,
    label: &str,
) -> (imap::Session<Conn>, String, Option<char>) {
    let mut reader = crate::source::imap::bodies::BodyReader::new(logged_in.stream, label);
    let ahead = || {
        logged_in
            .tap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_ahead()
    };
    let prefix = if logged_in.caps.contains("NAMESPACE") {
        reader
            .command(ahead(), "NAMESPACE")
            .map(|data| folders::parse_namespace(&data).prefix)
            .unwrap_or_default()
    } else {
        String::new()
    };
    let delimiter = reader
        .command(ahead(), "LIST \"\" \"\"")
        .ok()
        .and_then(|data| folders::parse_list(&data).iter().find_map(|f| f.delimiter));
    (logged_in.session, prefix, Some(delimiter.unwrap_or('/')))
}

/// What an APPEND error means (RFC 5530 response codes): `NO` for the
/// message itself is a refusal; a full mailbox or a server limit clears
/// up (temporary), as does a server that is unavailable for now; a
/// server bug, a `BAD` (our command was wrong) or a reply we cannot parse
/// is a local fault, never a refusal of the message.
fn append_failure(e: &imap::Error) -> Failure {
    let text = e.to_string();
    let has = |code: &str| text.contains(code);
    match e {
        imap::Error::No(_)
            if has("OVERQUOTA") || has("LIMIT") || has("INUSE") || has("UNAVAILABLE") =>
        {
            Failure::Temporary
        }
        imap::Error::No(_) if has("SERVERBUG") || has("NOPERM") || has("AUTHORIZATIONFAILED") => {
            Failure::Local
        }
        imap::Error::No(_) => Failure::Refused,
        _ => Failure::Local,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_date_from_date_or_received() {
        let d = internal_date(b"Date: Tue, 1 Jul 2003 10:52:37 +0200\n\nx").unwrap();
        assert_eq!(d.to_rfc3339(), "2003-07-01T10:52:37+02:00");
        let d = internal_date(
            b"Received: from a by b; Wed, 2 Jul 2003 11:00:00 +0000 (UTC)\nSubject: x\n\nbody",
        )
        .unwrap();
        assert_eq!(d.to_rfc3339(), "2003-07-02T11:00:00+00:00");
        assert!(internal_date(b"Subject: x\n\nDate: Tue, 1 Jul 2003 10:52:37 +0200\n").is_none());
    }

    #[test]
    fn crlf_conversion() {
        assert_eq!(to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
    }
}
