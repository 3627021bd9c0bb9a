//! The protocol transcript: every line the client sends (`C:`) and the
//! server answers (`S:`), for `-vv` (as trace-level log lines on stderr)
//! and for an account's `transcript = "path"` file (appended, with a
//! time stamp). Both protocol clients report their lines here, already
//! redacted: passwords, `AUTH`/`AUTHENTICATE` payloads and OAuth tokens
//! are `<redacted>`, and a message body shows only its first line and
//! its size.
//!
//! Transcript files are registered per account (the label the clients
//! use) for as long as the returned [`Registration`] lives.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Open transcript files by account label.
static FILES: Mutex<Option<HashMap<String, Arc<File>>>> = Mutex::new(None);
/// How many are open, so the common case (none) takes no lock.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Keeps an account's transcript file registered; dropping it stops the
/// recording.
#[derive(Debug)]
pub struct Registration {
    label: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
        if files.as_mut().and_then(|f| f.remove(&self.label)).is_some() {
            OPEN.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Starts appending `label`'s transcript to `path` (created with mode
/// 0600: a transcript shows user names and mail headers).
pub fn record_to(label: &str, path: &Path) -> Result<Registration> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Config(format!("cannot open transcript {}: {e}", path.display())))?;
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    if files
        .get_or_insert_with(HashMap::new)
        .insert(label.to_string(), Arc::new(file))
        .is_none()
    {
        OPEN.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Registration {
        label: label.to_string(),
    })
}

fn file_for(label: &str) -> Option<Arc<File>> {
    if OPEN.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    files.as_ref()?.get(label).cloned()
}

/// Whether anything records `label`'s transcript (so a client can skip
/// the work of preparing lines when nothing does).
pub fn enabled(label: &str) -> bool {
    log::log_enabled!(log::Level::Trace) || file_for(label).is_some()
}

/// Which side spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Sent by mailretr.
    Client,
    /// Sent by the server.
    Server,
}

/// Records one line. The caller has already redacted it.
pub fn line(label: &str, side: Side, text: &str) {
    let mark = match side {
        Side::Client => "C",
        Side::Server => "S",
    };
    log::trace!("{label}: {mark}: {text}");
    if let Some(file) = file_for(label) {
        let stamp = chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.3f%:z");
        // Server text with terminal escapes is escaped in the file too.
        let text = crate::message::escape(text);
        let _ = (&*file).write_all(format!("{stamp} {mark}: {text}\n").as_bytes());
    }
}

/// Records a client line.
pub fn client(label: &str, text: &str) {
    line(label, Side::Client, text);
}

/// Records a server line as it is.
pub fn server(label: &str, text: &str) {
    line(label, Side::Server, text);
}

/// Records a server line of a SASL exchange. Challenges (`+ base64`)
/// are shown as `+ <redacted>`: SCRAM's carry the salt and the server's
/// proof, which would let a reader of the transcript test password
/// guesses offline. Other continuations (`+ idling`, `+ Ready for
/// literal data`) go through `server` and are shown.
pub fn sasl_challenge(label: &str, text: &str) {
    match text.strip_prefix('+') {
        Some(rest) if !rest.starts_with("OK") && !rest.trim().is_empty() => {
            line(label, Side::Server, "+ <redacted>")
        }
        _ => line(label, Side::Server, text),
    }
}

/// How a block of message data (a POP3 multi-line answer or an IMAP
/// literal) is shown: its first line, cut to 100 characters, and its size.
pub fn elide(block: &[u8]) -> String {
    let first = block.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let first = first.trim_end_matches('\r');
    let shown: String = first.chars().take(100).collect();
    let cut = if shown.len() < first.len() { "..." } else { "" };
    if block.is_empty() {
        "<0 bytes>".into()
    } else {
        format!("{shown}{cut} <{} bytes>", block.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_show_their_first_line_and_size() {
        assert_eq!(elide(b"Subject: x\r\n\r\nbody\n"), "Subject: x <19 bytes>");
        assert_eq!(elide(b""), "<0 bytes>");
        let long = "a".repeat(150);
        assert_eq!(
            elide(long.as_bytes()),
            format!("{}... <150 bytes>", &long[..100])
        );
    }

    #[test]
    fn a_registered_file_gets_the_lines_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let reg = record_to("transcript-test", &path).unwrap();
        assert!(enabled("transcript-test"));
        client("transcript-test", "USER me");
        server("transcript-test", "+OK");
        client("another-account", "not here");
        drop(reg);
        client("transcript-test", "after");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(" C: USER me"), "{text}");
        assert!(lines[1].ends_with(" S: +OK"), "{text}");
    }
}
