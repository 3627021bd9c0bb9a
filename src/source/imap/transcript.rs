//! The protocol transcript for `-vv`: a stream wrapper that logs every
//! line the client writes (`C:`) and the server sends (`S:`) at trace
//! level, whichever code does the talking (our STARTTLS dialogue or the
//! `imap` crate). Secrets never reach the log: `LOGIN` arguments, SASL
//! initial responses and continuation lines are shown as `<redacted>`,
//! and message literals as their first line and size only. The lines go
//! to `crate::transcript` (stderr with `-vv`, and the account's
//! `transcript` file).

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::transcript;

/// Longest server line shown in full; the rest is cut.
const SHOWN: usize = 300;

/// Longest run of server bytes without a line feed that the `imap` crate
/// is let read: a hostile server's endless line is a protocol error, not
/// memory. (Message bodies do not come through here; header literals
/// have line breaks.)
pub const MAX_SERVER_LINE: usize = 1 << 20;

/// Most bytes the server may send in answer to one command (everything
/// read between two writes): endless untagged responses are a protocol
/// error, not memory.
pub const MAX_ANSWER: u64 = 8 << 20;

/// A stream that logs the lines passing through it.
#[derive(Debug)]
pub struct Traced<S> {
    inner: S,
    label: String,
    enabled: bool,
    /// The client line being written.
    out_line: Vec<u8>,
    /// The start of the server line being read (at most `SHOWN` bytes).
    in_line: Vec<u8>,
    in_line_len: usize,
    /// Bytes of a server literal still to come.
    in_literal: u64,
    /// The literal's size, and its first line while it is being read (it
    /// is shown once complete, with the size; the rest is not shown).
    literal_total: u64,
    literal_head: Option<Vec<u8>>,
    /// Set-up help, shared with the code that gave the stream away.
    tap: Option<Arc<Mutex<Tap>>>,
    /// With a command's answer being removed: the server line being
    /// read, input ready for the reader, and literal bytes to let through
    /// (or drop) unexamined.
    partial: Vec<u8>,
    ready: Vec<u8>,
    ready_pos: usize,
    pass: u64,
    skip: u64,
    /// After a literal: whether the rest of its line is removed.
    continues: Option<bool>,
    /// Server bytes since the last line feed, and since the last write.
    since_newline: usize,
    since_write: u64,
    /// An `AUTHENTICATE` is under way: the server's `+` lines are SASL
    /// challenges, redacted, until a tagged line ends it.
    in_sasl: bool,
    /// Server lines mended for the `imap` crate (see `Mend`).
    mend: Mend,
}

/// Most input kept by `Tap::start_capture`.
const CAPTURE_MAX: usize = 64 * 1024;

/// What the code that handed a `Traced` to the `imap` crate may still ask
/// of it: to capture the server's answer to a command (the crate throws
/// the tagged line of `LOGIN` away, with its `[CAPABILITY ...]`), and to
/// send a command of its own ahead of the crate's next one, its answer
/// removed from what the crate reads (so the crate's tags stay in step
/// and no round trip is spent waiting for it).
#[derive(Debug, Default)]
pub struct Tap {
    capture: Option<Vec<u8>>,
    ahead: Vec<u8>,
    /// The tag of the command sent ahead, and the name of its untagged
    /// answer (`* NAME ...`), both removed from the input until the
    /// tagged line has come.
    swallow: Option<(String, String)>,
    /// The next command the crate writes is not sent: it is answered
    /// here with a tagged OK (the line so far, while it is written).
    local: Option<Vec<u8>>,
}

impl Tap {
    /// A tap to give to `Traced::with_tap`.
    pub fn shared() -> Arc<Mutex<Tap>> {
        Arc::new(Mutex::new(Tap::default()))
    }

    /// Keeps the input read from now on (up to 64 KiB).
    pub fn start_capture(&mut self) {
        self.capture = Some(Vec::new());
    }

    /// The input kept since `start_capture`; capturing stops.
    pub fn take_capture(&mut self) -> Vec<u8> {
        self.capture.take().unwrap_or_default()
    }

    /// Sends `command` (without line ending) under `tag` just before the
    /// next thing the crate writes, and removes its answer (`* name ...`
    /// lines and the tagged line) from the input. `tag` must never be one
    /// the crate uses.
    pub fn send_ahead(&mut self, tag: &str, name: &str, command: &str) {
        self.ahead = format!("{tag} {command}\r\n").into_bytes();
        self.swallow = Some((format!("{tag} "), format!("* {name} ")));
    }

    /// Takes back the command to be sent ahead, if the crate has not
    /// written it yet, with its tag: whoever sends it now reads (and
    /// drops) its answer, which is no longer removed from the input.
    pub fn take_ahead(&mut self) -> Option<(String, Vec<u8>)> {
        if self.ahead.is_empty() {
            return None;
        }
        let (tag, _) = self.swallow.take()?;
        Some((tag.trim_end().to_string(), std::mem::take(&mut self.ahead)))
    }

    /// Answers the next command the crate writes with a tagged OK instead
    /// of sending it: after a PREAUTH greeting, the `imap` crate's
    /// session is had through a `LOGIN` that never reaches the server.
    pub fn answer_next_locally(&mut self) {
        self.local = Some(Vec::new());
    }

    /// Whether the answer to the command sent ahead is still awaited.
    pub fn awaiting(&self) -> bool {
        self.swallow.is_some()
    }
}

fn lock(tap: &Mutex<Tap>) -> MutexGuard<'_, Tap> {
    tap.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S> Traced<S> {
    /// Wraps `inner`; transcript lines start with `label`. Costs nothing
    /// when trace logging is off.
    pub fn new(inner: S, label: &str) -> Traced<S> {
        Traced {
            inner,
            label: label.to_string(),
            enabled: transcript::enabled(label),
            out_line: Vec::new(),
            in_line: Vec::new(),
            in_line_len: 0,
            in_literal: 0,
            literal_total: 0,
            literal_head: None,
            tap: None,
            partial: Vec::new(),
            ready: Vec::new(),
            ready_pos: 0,
            pass: 0,
            skip: 0,
            continues: None,
            since_newline: 0,
            since_write: 0,
            in_sasl: false,
            mend: Mend::default(),
        }
    }

    /// Gives the code that hands this stream away a way to still ask
    /// things of it (see `Tap`).
    pub fn with_tap(mut self, tap: Arc<Mutex<Tap>>) -> Traced<S> {
        self.tap = Some(tap);
        self
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The wrapped stream, borrowed.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn saw_input(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.in_literal > 0 {
                let n = (self.in_literal.min(data.len() as u64)) as usize;
                self.in_literal -= n as u64;
                if let Some(head) = &mut self.literal_head {
                    let newline = data[..n].iter().position(|&b| b == b'\n');
                    let take = newline.unwrap_or(n).min(SHOWN.saturating_sub(head.len()));
                    head.extend_from_slice(&data[..take]);
                    if newline.is_some() || self.in_literal == 0 {
                        let head = self.literal_head.take().unwrap_or_default();
                        let first = String::from_utf8_lossy(&head);
                        transcript::server(
                            &self.label,
                            &format!(
                                "{} <{} bytes>",
                                first.trim_end_matches('\r'),
                                self.literal_total
                            ),
                        );
                    }
                }
                data = &data[n..];
                continue;
            }
            let (chunk, ends) = match data.iter().position(|&b| b == b'\n') {
                Some(i) => (&data[..=i], true),
                None => (data, false),
            };
            let room = SHOWN.saturating_sub(self.in_line.len());
            self.in_line
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.in_line_len += chunk.len();
            data = &data[chunk.len()..];
            if ends {
                let mut line = String::from_utf8_lossy(&self.in_line).into_owned();
                let cut = self.in_line_len > self.in_line.len();
                while line.ends_with(['\r', '\n']) {
                    line.pop();
                }
                let literal = if cut { None } else { literal_length(&line) };
                let shown = format!("{line}{}", if cut { " [...]" } else { "" });
                if self.in_sasl && line.starts_with('+') {
                    transcript::sasl_challenge(&self.label, &shown);
                } else {
                    if !line.starts_with(['*', '+']) {
                        self.in_sasl = false;
                    }
                    transcript::server(&self.label, &shown);
                }
                if let Some(n) = literal {
                    self.in_literal = n;
                    self.literal_total = n;
                    self.literal_head = (n > 0).then(Vec::new);
                }
                self.in_line.clear();
                self.in_line_len = 0;
            }
        }
    }

    fn saw_output(&mut self, mut data: &[u8]) {
        while let Some(i) = data.iter().position(|&b| b == b'\n') {
            self.out_line.extend_from_slice(&data[..=i]);
            let mut line = String::from_utf8_lossy(&self.out_line).into_owned();
            while line.ends_with(['\r', '\n']) {
                line.pop();
            }
            if is_authenticate(&line) {
                self.in_sasl = true;
            }
            transcript::client(&self.label, &redact(&line));
            self.out_line.clear();
            data = &data[i + 1..];
        }
        if self.out_line.len() < 4096 {
            self.out_line.extend_from_slice(data);
        }
    }
}

/// The length of the literal announced at the end of a line (`{123}`).
fn literal_length(line: &str) -> Option<u64> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

/// Whether a client line is a tagged `AUTHENTICATE` command.
fn is_authenticate(line: &str) -> bool {
    let mut words = line.splitn(3, ' ');
    words.next();
    words
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("AUTHENTICATE"))
}

/// A client line as the transcript shows it. Tagged commands are shown
/// except for the secrets in `LOGIN` and `AUTHENTICATE`; untagged client
/// lines are SASL continuation responses, always secret.
pub fn redact(line: &str) -> String {
    let mut words = line.splitn(3, ' ');
    let tag = words.next().unwrap_or("");
    let is_tag = tag.len() > 1
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag[1..].chars().all(|c| c.is_ascii_digit());
    if !is_tag {
        return "<redacted>".into();
    }
    let command = words.next().unwrap_or("");
    let rest = words.next();
    if command.eq_ignore_ascii_case("LOGIN") {
        return format!("{tag} {command} <redacted>");
    }
    if command.eq_ignore_ascii_case("AUTHENTICATE") {
        let rest = rest.unwrap_or("");
        let mut parts = rest.splitn(2, ' ');
        let mech = parts.next().unwrap_or("");
        return match parts.next() {
            Some(_) => format!("{tag} {command} {mech} <redacted>"),
            None => format!("{tag} {command} {mech}"),
        };
    }
    line.to_string()
}

impl<S> Traced<S> {
    /// Counts what the server sent against `MAX_SERVER_LINE` and
    /// `MAX_ANSWER`.
    fn bound(&mut self, data: &[u8]) -> io::Result<()> {
        self.since_write += data.len() as u64;
        match data.iter().rposition(|&b| b == b'\n') {
            Some(i) => self.since_newline = data.len() - i - 1,
            None => self.since_newline += data.len(),
        }
        if self.since_newline > MAX_SERVER_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("server line longer than {MAX_SERVER_LINE} bytes"),
            ));
        }
        if self.since_write > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("server answer longer than {MAX_ANSWER} bytes"),
            ));
        }
        Ok(())
    }
}

impl<S: Read> Traced<S> {
    /// Reads from the connection, tracing and capturing what comes.
    fn read_raw(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bound(&buf[..n])?;
        if self.enabled {
            self.saw_input(&buf[..n]);
        }
        if let Some(tap) = &self.tap {
            if let Some(kept) = &mut lock(tap).capture {
                let room = CAPTURE_MAX.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        Ok(n)
    }

    /// Reads with a tap: the answer to a command sent ahead is removed,
    /// line by line (literals are let through, or dropped with the line
    /// announcing them, whole).
    fn read_tapped(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.ready_pos < self.ready.len() {
                let n = (self.ready.len() - self.ready_pos).min(buf.len());
                buf[..n].copy_from_slice(&self.ready[self.ready_pos..self.ready_pos + n]);
                self.ready_pos += n;
                if self.ready_pos == self.ready.len() {
                    self.ready.clear();
                    self.ready_pos = 0;
                }
                return Ok(n);
            }
            let swallow = self.tap.as_ref().and_then(|t| lock(t).swallow.clone());
            let Some((tag, untagged)) = swallow else {
                if !self.partial.is_empty() {
                    self.ready = std::mem::take(&mut self.partial);
                    continue;
                }
                return self.read_raw(buf);
            };
            let mut chunk = [0u8; 4096];
            let n = self.read_raw(&mut chunk)?;
            if n == 0 {
                if self.partial.is_empty() {
                    return Ok(0);
                }
                self.ready = std::mem::take(&mut self.partial);
                continue;
            }
            let mut data = &chunk[..n];
            let mut done = false;
            while !data.is_empty() && !done {
                if self.skip > 0 || self.pass > 0 {
                    let left = self.skip.max(self.pass);
                    let k = left.min(data.len() as u64) as usize;
                    if self.pass > 0 {
                        self.ready.extend_from_slice(&data[..k]);
                        self.pass -= k as u64;
                    } else {
                        self.skip -= k as u64;
                    }
                    data = &data[k..];
                    continue;
                }
                let (piece, ends) = match data.iter().position(|&b| b == b'\n') {
                    Some(i) => (&data[..=i], true),
                    None => (data, false),
                };
                self.partial.extend_from_slice(piece);
                data = &data[piece.len()..];
                if !ends {
                    continue;
                }
                let line = std::mem::take(&mut self.partial);
                let text = String::from_utf8_lossy(&line);
                let literal = literal_length(text.trim_end_matches(['\r', '\n']));
                // After a literal, the line goes on: it belongs to the
                // response the literal was part of.
                let swallowed = match std::mem::take(&mut self.continues) {
                    Some(swallowed) => swallowed,
                    None if starts_with_ignore_case(&line, &tag) => {
                        if let Some(tap) = &self.tap {
                            lock(tap).swallow = None;
                        }
                        done = true;
                        continue;
                    }
                    None => starts_with_ignore_case(&line, &untagged),
                };
                if let Some(n) = literal {
                    self.continues = Some(swallowed);
                    if swallowed {
                        self.skip = n;
                    } else {
                        self.pass = n;
                    }
                }
                if !swallowed {
                    self.ready.extend_from_slice(&line);
                }
            }
            // The answer is over: the rest goes to the reader as it is.
            if done {
                self.ready.extend_from_slice(data);
            }
        }
    }
}

fn starts_with_ignore_case(line: &[u8], prefix: &str) -> bool {
    line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

impl<S: Read> Read for Traced<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.mend.serve(buf) {
                return Ok(n);
            }
            let mut chunk = [0u8; 8192];
            let n = if self.tap.is_none() {
                self.read_raw(&mut chunk)?
            } else {
                self.read_tapped(&mut chunk)?
            };
            if n == 0 {
                // The end of the connection: what is left goes as it is.
                return Ok(self.mend.flush(buf));
            }
            self.mend.feed(&chunk[..n]);
        }
    }
}

/// Longest server line kept for diagnosing a line the `imap` crate
/// cannot parse.
const KEPT_LINE: usize = 1024;

/// Server lines kept, newest last, per thread (a connection is used on
/// one thread): the `imap` crate reports a line it cannot parse as a
/// `BYE` without text, and `unparsed_line` finds the line.
const KEPT_LINES: usize = 8;

thread_local! {
    static RECENT: std::cell::RefCell<std::collections::VecDeque<KeptLine>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
}

/// A server line kept for diagnosis.
#[derive(Debug, Clone)]
struct KeptLine {
    bytes: Vec<u8>,
    /// The line follows a literal (it is the rest of a response, which
    /// does not parse on its own).
    after_literal: bool,
    /// Longer than `KEPT_LINE`: only its start is kept.
    cut: bool,
}

/// The newest recent server line on this thread that the IMAP grammar
/// rejects, escaped and cut for an error message.
pub fn unparsed_line() -> Option<String> {
    RECENT.with(|recent| {
        recent.borrow().iter().rev().find_map(|line| {
            if line.after_literal {
                return None;
            }
            let bad = line.cut
                || match imap_proto::parser::parse_response(&line.bytes) {
                    Ok(_) => false,
                    Err(e) => !e.is_incomplete(),
                };
            bad.then(|| shown_line(&line.bytes, line.cut))
        })
    })
}

/// A server line for an error message: without its line end, escaped,
/// at most 120 characters.
fn shown_line(bytes: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut shown: String = crate::message::escape(text).chars().take(120).collect();
    if cut || shown.len() < text.len() {
        shown.push_str("...");
    }
    format!("{shown:?}")
}

fn keep_line(line: &[u8], after_literal: bool) {
    RECENT.with(|recent| {
        let mut recent = recent.borrow_mut();
        if recent.len() == KEPT_LINES {
            recent.pop_front();
        }
        recent.push_back(KeptLine {
            bytes: line[..line.len().min(KEPT_LINE)].to_vec(),
            after_literal,
            cut: line.len() > KEPT_LINE,
        });
    });
}

/// Mends what real servers get wrong in ways that are unambiguous,
/// before the `imap` crate parses it (its parser turns any line it
/// cannot read into a `BYE` without text): a line ending in a bare LF
/// gets its CR, and GNU Mailutils' `* n EXPUNGED` is read as `EXPUNGE`.
/// Literals pass untouched. Lines are passed on whole.
#[derive(Debug, Default)]
struct Mend {
    /// The server line being read.
    line: Vec<u8>,
    /// Bytes of a literal still to pass untouched.
    literal: u64,
    /// The line being read follows a literal.
    after_literal: bool,
    /// Mended bytes ready for the reader.
    out: Vec<u8>,
    out_pos: usize,
}

impl Mend {
    /// Copies ready bytes into `buf`; `None` when there are none.
    fn serve(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.out_pos == self.out.len() || buf.is_empty() {
            return None;
        }
        let n = (self.out.len() - self.out_pos).min(buf.len());
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        Some(n)
    }

    /// At the end of the input: the unfinished line, as it is.
    fn flush(&mut self, buf: &mut [u8]) -> usize {
        self.out.append(&mut self.line);
        self.serve(buf).unwrap_or(0)
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.literal > 0 {
                let k = self.literal.min(data.len() as u64) as usize;
                self.out.extend_from_slice(&data[..k]);
                self.literal -= k as u64;
                if self.literal == 0 {
                    self.after_literal = true;
                }
                data = &data[k..];
                continue;
            }
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&data[..=i]);
                    data = &data[i + 1..];
                    self.finish_line();
                }
                None => {
                    self.line.extend_from_slice(data);
                    return;
                }
            }
        }
    }

    fn finish_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        if !line.ends_with(b"\r\n") {
            line.pop();
            line.extend_from_slice(b"\r\n");
        }
        if !self.after_literal {
            if let Some(fixed) = mend_expunged(&line) {
                line = fixed;
            }
        }
        keep_line(&line, self.after_literal);
        self.after_literal = false;
        let text = String::from_utf8_lossy(&line[..line.len() - 2]);
        if let Some(n) = literal_length(&text) {
            self.literal = n;
            self.after_literal = n == 0;
        }
        self.out.extend_from_slice(&line);
    }
}

/// `* 12 EXPUNGED` (GNU Mailutils imap4d) as `* 12 EXPUNGE`.
fn mend_expunged(line: &[u8]) -> Option<Vec<u8>> {
    let rest = line.strip_prefix(b"* ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let word = rest[digits..].strip_prefix(b" ")?;
    if digits == 0 || !word.eq_ignore_ascii_case(b"EXPUNGED\r\n") {
        return None;
    }
    let mut fixed = line[..2 + digits].to_vec();
    fixed.extend_from_slice(b" EXPUNGE\r\n");
    Some(fixed)
}

impl<S: Write> Write for Traced<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(tap) = &self.tap {
            let mut t = lock(tap);
            if let Some(line) = &mut t.local {
                line.extend_from_slice(&buf[..buf.len().min(4096)]);
                if line.contains(&b'\n') {
                    let text = String::from_utf8_lossy(line);
                    let tag = text.split(' ').next().unwrap_or("").to_string();
                    t.local = None;
                    log::debug!("{}: PREAUTH: logged in by the tunnel", self.label);
                    self.ready
                        .extend_from_slice(format!("{tag} OK PREAUTH\r\n").as_bytes());
                }
                return Ok(buf.len());
            }
        }
        if let Some(tap) = &self.tap {
            let ahead = std::mem::take(&mut lock(tap).ahead);
            if !ahead.is_empty() {
                self.inner.write_all(&ahead)?;
                if self.enabled {
                    let line = String::from_utf8_lossy(&ahead);
                    transcript::client(&self.label, line.trim_end_matches(['\r', '\n']));
                }
            }
        }
        let n = self.inner.write(buf)?;
        self.since_write = 0;
        if self.enabled {
            self.saw_output(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("a1 LOGIN \"me\" \"secret\""), "a1 LOGIN <redacted>");
        assert_eq!(
            redact("a2 AUTHENTICATE PLAIN AG1lAHB3"),
            "a2 AUTHENTICATE PLAIN <redacted>"
        );
        assert_eq!(redact("a2 AUTHENTICATE XOAUTH2"), "a2 AUTHENTICATE XOAUTH2");
        assert_eq!(redact("dXNlcj1tZQFhdXRo"), "<redacted>");
        assert_eq!(redact(""), "<redacted>");
        assert_eq!(redact("a7 UID FETCH 1:* (UID)"), "a7 UID FETCH 1:* (UID)");
    }

    #[test]
    fn literals_are_skipped() {
        assert_eq!(literal_length("* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_length("* OK done"), None);
        let mut t = Traced::new(io::empty(), "t");
        t.enabled = true;
        t.saw_input(b"* 1 FETCH (UID 4 BODY[] {5}\r\nab\n");
        assert_eq!(t.in_literal, 2);
        t.saw_input(b"c\n)\r\n");
        assert_eq!(t.in_literal, 0);
        assert!(t.in_line.is_empty());
    }

    fn mended(pieces: &[&[u8]]) -> Vec<u8> {
        let mut m = Mend::default();
        let mut out = Vec::new();
        for p in pieces {
            m.feed(p);
            let mut buf = [0u8; 7];
            while let Some(n) = m.serve(&mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
        }
        out
    }

    #[test]
    fn bare_lf_and_expunged_are_mended_but_literals_are_not() {
        assert_eq!(
            mended(&[b"* 1 EXPUNGED\r\n* 2 expunged\na1 OK", b" done\n"]),
            b"* 1 EXPUNGE\r\n* 2 EXPUNGE\r\na1 OK done\r\n"
        );
        // A literal's bytes are the message's: kept as they are, even a
        // line in it that looks like a response.
        assert_eq!(
            mended(&[b"* 1 FETCH (BODY[] {18}\r\n* 3 EXPUNGED\nab\n", b"c\n)\n"]),
            b"* 1 FETCH (BODY[] {18}\r\n* 3 EXPUNGED\nab\nc\n)\r\n"
        );
        assert_eq!(mended(&[b"* 1 EXISTS\r\n"]), b"* 1 EXISTS\r\n");
        assert!(mend_expunged(b"* EXPUNGED\r\n").is_none());
    }

    #[test]
    fn the_unparsable_line_is_found() {
        let mut m = Mend::default();
        m.feed(b"* 1 FETCH (BODY[] {3}\r\nab\n WHAT)\r\n* 1 NONSENSE ((\r\na1 OK fine\r\n");
        let line = unparsed_line().unwrap();
        assert!(line.contains("NONSENSE"), "{line}");
        m.feed(b"* OK \x1b[31mred\r\n");
        assert!(unparsed_line().unwrap().contains("NONSENSE"));
    }

    #[test]
    fn only_sasl_challenges_are_redacted() {
        let path = std::env::temp_dir().join(format!("traced-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let _reg = transcript::record_to("t-sasl", &path).unwrap();
        let mut t = Traced::new(io::empty(), "t-sasl");
        t.enabled = true;
        t.saw_output(b"a1 AUTHENTICATE SCRAM-SHA-256\r\n");
        t.saw_input(b"+ cj1zZWNyZXQ=\r\na1 OK done\r\n");
        t.saw_output(b"a2 IDLE\r\n");
        t.saw_input(b"+ idling\r\n");
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(text.contains("S: + <redacted>"), "{text}");
        assert!(!text.contains("cj1zZWNyZXQ"), "{text}");
        assert!(text.contains("S: + idling"), "{text}");
    }
}
