//! Streaming retrieval of message bodies: `UID FETCH <set> (UID FLAGS
//! BODY.PEEK[])` written and read by mailretr itself on a second handle
//! of the session's connection, instead of through the `imap` crate.
//!
//! Why not the crate: it buffers a whole command's response, re-parses it
//! from its start after every line it reads (a message body is thousands
//! of lines), and cannot have a second command in flight. Profiles showed
//! that parse-and-copy work costing as much as the rest of the run. Here
//! each body is copied once, from a fixed read buffer straight into its
//! own LF-ended `Vec`, and the next batch's command is sent before this
//! one's responses are read, so the server streams while messages are
//! delivered and no round trip is waited for between batches.
//!
//! The two users of the connection never overlap: the crate's commands
//! are sent only when no fetch is in flight (`BodyReader::is_idle`). Our
//! tags (`ab1`, `ab2`, ...) differ from the crate's (`a1`, ...), so
//! neither side can mistake the other's completion for its own.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use crate::error::{Error, Result};
use crate::source::RemoteMessage;
use crate::transcript;

use super::uid_set;

/// Bytes read from the connection at a time. Also the longest response
/// line (outside literals) accepted: a server has no reason to send more.
const READ_BUF: usize = 64 * 1024;

/// Our tags: never a crate tag (`a` and digits), still a tag to tools
/// that read transcripts for lines starting with `a`.
const TAG_PREFIX: &str = "ab";

/// Largest literal accepted for something that is not a message body;
/// bodies are bounded by their announced size instead.
const MAX_OTHER_LITERAL: u64 = 64 * 1024 * 1024;

/// Most of a SELECT answer kept for `parse_select` (a few hundred bytes
/// normally); the rest is read and dropped.
const MAX_SELECT_ANSWER: usize = 64 * 1024;

/// A size listing may hold this many more messages than SELECT's EXISTS
/// (mail arriving while it is read); beyond that the server is broken.
const LISTING_SLACK: usize = 1024;

/// What `BodyReader::select_and_list` read.
pub struct SelectAnswer {
    /// SELECT's untagged lines (CRLF-ended), for `parse_select`.
    pub select: Vec<u8>,
    /// The size listing, or the server's refusal of it.
    pub listing: Result<Vec<Listing>>,
}

/// One message of a size listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing {
    pub uid: u32,
    pub size: u64,
    /// Whether FLAGS was asked for and holds `\Seen`.
    pub seen: bool,
}

/// A fetch command sent and not yet completely read.
#[derive(Debug)]
struct InFlight {
    tag: String,
    /// The messages asked for; taken out as they arrive.
    messages: Vec<Option<RemoteMessage>>,
}

/// Sends body fetches and reads their answers (see the module docs).
pub struct BodyReader<S = super::Handle> {
    io: S,
    label: String,
    trace: bool,
    buf: Box<[u8]>,
    pos: usize,
    end: usize,
    next_tag: u32,
    in_flight: VecDeque<InFlight>,
}

impl<S: Read + Write> BodyReader<S> {
    /// A reader on `io`, a second handle on the session's connection.
    pub fn new(io: S, label: &str) -> BodyReader<S> {
        BodyReader {
            io,
            label: label.to_string(),
            trace: transcript::enabled(label),
            buf: vec![0; READ_BUF].into_boxed_slice(),
            pos: 0,
            end: 0,
            next_tag: 1,
            in_flight: VecDeque::new(),
        }
    }

    /// After the session sent `LOGOUT`: reads the server's answer up to
    /// its tagged line (a crate tag: `a` and digits), the end of the
    /// connection or an error (such as the read timeout the caller set).
    pub fn read_goodbye(&mut self) -> Result<()> {
        loop {
            let line = self.read_line()?;
            self.trace_line(&String::from_utf8_lossy(&line));
            let tag = line.split(|&b| b == b' ').next().unwrap_or(b"");
            if tag.len() > 1 && tag[0] == b'a' && tag[1..].iter().all(u8::is_ascii_digit) {
                return Ok(());
            }
        }
    }

    /// Whether no fetch is in flight, so the `imap` crate may talk.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Commands in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The folder the fetches in flight are for.
    pub fn in_flight_folder(&self) -> Option<&str> {
        self.in_flight
            .front()
            .and_then(|f| f.messages.iter().flatten().next())
            .map(|m| m.folder.as_str())
    }

    /// Sends the fetch of `messages` (all in the selected folder) without
    /// waiting for the answer.
    pub fn send(&mut self, messages: Vec<RemoteMessage>) -> Result<()> {
        let uids: Vec<u32> = messages.iter().map(|m| m.number).collect();
        let tag = self.new_tag();
        // FLAGS as the server has them now, before anything of ours
        // changes them (`mark_seen` comes after delivery): destinations
        // with `flags = true` carry them over.
        let line = format!("{tag} UID FETCH {} (UID FLAGS BODY.PEEK[])", uid_set(&uids));
        if self.trace {
            transcript::client(&self.label, &line);
        }
        let mut bytes = line.into_bytes();
        bytes.extend_from_slice(b"\r\n");
        self.io
            .write_all(&bytes)
            .and_then(|()| self.io.flush())
            .map_err(net_error)?;
        self.in_flight.push_back(InFlight {
            tag,
            messages: messages.into_iter().map(Some).collect(),
        });
        Ok(())
    }

    /// `SELECT` and the size listing that follows it in one round trip:
    /// both commands (after `ahead`, a command the session still owes the
    /// server, whose answer is skipped) are written at once, and their
    /// answers read in order. `set` is a guess made before the server
    /// said anything about the folder; the caller checks it against
    /// SELECT's answer. A SELECT refused is an error, returned once both
    /// answers are read, so the connection stays in step.
    pub fn select_and_list(
        &mut self,
        ahead: Option<(String, Vec<u8>)>,
        mailbox: &str,
        set: &str,
        items: &str,
    ) -> Result<SelectAnswer> {
        if !self.is_idle() {
            return Err(Error::Internal("SELECT with fetches in flight".into()));
        }
        let select_tag = self.new_tag();
        let list_tag = self.new_tag();
        let ahead_tag = self.write_lines(
            ahead,
            &[
                format!("{select_tag} SELECT {mailbox}"),
                format!("{list_tag} UID FETCH {set} {items}"),
            ],
        )?;

        let mut select = Vec::new();
        let mut selected: Option<Result<()>> = None;
        let mut listing = Vec::new();
        let mut most = LISTING_SLACK;
        loop {
            let line = self.read_line()?;
            if let Some(rest) = line.strip_prefix(b"* ") {
                if selected.is_none() {
                    // SELECT's answer (or the one sent ahead).
                    let text = String::from_utf8_lossy(rest).into_owned();
                    self.trace_line(&format!("* {text}"));
                    if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"BYE") {
                        return Err(Error::Server(format!("SELECT: server said BYE: {text}")));
                    }
                    if select.len() < MAX_SELECT_ANSWER {
                        select.extend_from_slice(b"* ");
                        select.extend_from_slice(rest);
                        select.extend_from_slice(b"\r\n");
                    }
                    self.skip_rest(Segment {
                        line: rest.to_vec(),
                        i: 0,
                    })?;
                } else if let Some(item) = self.listed(rest.to_vec())? {
                    // Bounded memory: no more answers than the folder has
                    // messages (and some arriving meanwhile).
                    if listing.len() >= most {
                        return Err(Error::Protocol(format!(
                            "UID FETCH: more answers than the {} messages SELECT announced",
                            most - LISTING_SLACK
                        )));
                    }
                    listing.push(item);
                }
                continue;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            self.trace_line(&text);
            let mut words = text.splitn(3, ' ');
            let (t, status) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let info = words.next().unwrap_or("");
            let status = status.to_ascii_uppercase();
            if ahead_tag.as_deref() == Some(t) {
                continue;
            }
            if t == select_tag && selected.is_none() {
                // EXISTS is the server's word: capped, so a hostile one
                // cannot make the listing unbounded.
                most = (super::parse_select(&select).exists as usize)
                    .min(crate::source::pop3::MAX_LISTED)
                    .saturating_add(LISTING_SLACK);
                selected = Some(match status.as_str() {
                    "OK" => Ok(()),
                    "NO" => Err(Error::Server(format!("SELECT {mailbox}: NO {info}"))),
                    _ => Err(Error::Protocol(format!(
                        "SELECT {mailbox}: {status} {info}"
                    ))),
                });
                continue;
            }
            // The listing's completion, after SELECT's.
            if let Some(selected) = selected.take().filter(|_| t == list_tag) {
                selected?;
                let listing = match status.as_str() {
                    "OK" => Ok(listing),
                    "NO" => Err(Error::Server(format!("UID FETCH: NO {info}"))),
                    _ => Err(Error::Protocol(format!("UID FETCH: {status} {info}"))),
                };
                return Ok(SelectAnswer { select, listing });
            }
            return Err(Error::Protocol(format!(
                "SELECT: expected the completion of {select_tag} and {list_tag}, got {:?}",
                text.chars().take(80).collect::<String>()
            )));
        }
    }

    /// Writes `ahead` (a command the session still owes the server) and
    /// `lines` in one write. Returns the tag of `ahead`, whose answer the
    /// caller skips.
    fn write_lines(
        &mut self,
        ahead: Option<(String, Vec<u8>)>,
        lines: &[String],
    ) -> Result<Option<String>> {
        let mut bytes = Vec::new();
        let ahead_tag = ahead.map(|(tag, command)| {
            if self.trace {
                transcript::client(&self.label, String::from_utf8_lossy(&command).trim_end());
            }
            bytes.extend_from_slice(&command);
            tag
        });
        for line in lines {
            if self.trace {
                transcript::client(&self.label, line);
            }
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        self.io
            .write_all(&bytes)
            .and_then(|()| self.io.flush())
            .map_err(net_error)?;
        Ok(ahead_tag)
    }

    /// One command whose answer the `imap` crate's parser cannot read
    /// (`NAMESPACE`: imap-proto 0.16 rejects every answer), sent after
    /// `ahead` (whose answer is skipped). Returns the untagged lines of
    /// the answer (at most 64 KiB; literals skipped).
    pub fn command(&mut self, ahead: Option<(String, Vec<u8>)>, command: &str) -> Result<Vec<u8>> {
        if !self.is_idle() {
            return Err(Error::Internal(format!("{command} with fetches in flight")));
        }
        let tag = self.new_tag();
        let ahead_tag = self.write_lines(ahead, &[format!("{tag} {command}")])?;
        let mut answer = Vec::new();
        loop {
            let line = self.read_line()?;
            let text = String::from_utf8_lossy(&line).into_owned();
            self.trace_line(&text);
            if let Some(rest) = line.strip_prefix(b"* ") {
                if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"BYE") {
                    return Err(Error::Server(format!("{command}: server said BYE: {text}")));
                }
                if answer.len() < MAX_SELECT_ANSWER {
                    answer.extend_from_slice(&line);
                    answer.extend_from_slice(b"\r\n");
                }
                self.skip_rest(Segment {
                    line: rest.to_vec(),
                    i: 0,
                })?;
                continue;
            }
            let mut words = text.splitn(3, ' ');
            let (t, status) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let info = words.next().unwrap_or("");
            if ahead_tag.as_deref() == Some(t) {
                continue;
            }
            if t != tag {
                return Err(Error::Protocol(format!(
                    "{command}: expected the completion of {tag}, got {:?}",
                    text.chars().take(80).collect::<String>()
                )));
            }
            return match status.to_ascii_uppercase().as_str() {
                "OK" => Ok(answer),
                "NO" => Err(Error::Server(format!("{command}: NO {info}"))),
                other => Err(Error::Protocol(format!("{command}: {other} {info}"))),
            };
        }
    }

    /// One untagged line of a size listing: `n FETCH (UID u RFC822.SIZE s
    /// [FLAGS (...)])` gives `Some`; anything else is read and ignored.
    fn listed(&mut self, line: Vec<u8>) -> Result<Option<Listing>> {
        self.trace_line(&format!("* {}", String::from_utf8_lossy(&line)));
        let mut seg = Segment { line, i: 0 };
        let word1 = seg.atom();
        seg.space();
        let word2 = seg.atom();
        if word1.eq_ignore_ascii_case(b"BYE") {
            let text = String::from_utf8_lossy(&seg.line).into_owned();
            return Err(Error::Server(format!("UID FETCH: server said BYE: {text}")));
        }
        let is_fetch = !word1.is_empty()
            && word1.iter().all(u8::is_ascii_digit)
            && word2.eq_ignore_ascii_case(b"FETCH");
        seg.space();
        if !is_fetch || !seg.eat(b'(') {
            self.skip_rest(seg)?;
            return Ok(None);
        }
        let (mut uid, mut size, mut seen) = (None, None, false);
        self.fetch_items(seg, |_, name, seg| {
            match name {
                b"UID" => uid = number(&seg.atom()),
                b"RFC822.SIZE" => size = number(&seg.atom()),
                b"FLAGS" if seg.eat(b'(') => {
                    flag_list(seg, |flag| seen |= flag.eq_ignore_ascii_case(b"\\Seen"))?
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(uid.zip(size).map(|(uid, size)| Listing { uid, size, seen }))
    }

    fn new_tag(&mut self) -> String {
        let tag = format!("{TAG_PREFIX}{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    /// Reads up to the completion of the oldest fetch in flight,
    /// appending the bodies (LF line endings) to `out` in the order the
    /// server sent them. Returns the messages of that fetch the server did
    /// not send (expunged meanwhile). A server may work on pipelined
    /// commands at once, so bodies of later fetches can come first; they
    /// are kept too.
    pub fn receive(
        &mut self,
        out: &mut VecDeque<(RemoteMessage, Vec<u8>)>,
    ) -> Result<Vec<RemoteMessage>> {
        let Some(tag) = self.in_flight.front().map(|f| f.tag.clone()) else {
            return Ok(Vec::new());
        };
        // Any error ends the run: the connection is out of step.
        loop {
            let line = self.read_line()?;
            if let Some(rest) = line.strip_prefix(b"* ") {
                self.untagged(rest.to_vec(), out)?;
                continue;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            self.trace_line(&text);
            let mut words = text.splitn(3, ' ');
            let (t, status) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if t != tag {
                return Err(Error::Protocol(format!(
                    "UID FETCH: expected the completion of {tag}, got {:?}",
                    text.chars().take(80).collect::<String>()
                )));
            }
            let info = words.next().unwrap_or("");
            let done = self.in_flight.pop_front().expect("checked above");
            return match status.to_ascii_uppercase().as_str() {
                "OK" => Ok(done.messages.into_iter().flatten().collect()),
                "NO" => Err(Error::Server(format!("UID FETCH: NO {info}"))),
                _ => Err(Error::Protocol(format!("UID FETCH: {status} {info}"))),
            };
        }
    }

    /// Handles one untagged response (after `* `): a `FETCH` with a body
    /// we asked for is kept, anything else is read and ignored (the
    /// crate's sessions drop unsolicited responses too).
    fn untagged(
        &mut self,
        line: Vec<u8>,
        out: &mut VecDeque<(RemoteMessage, Vec<u8>)>,
    ) -> Result<()> {
        let mut seg = Segment { line, i: 0 };
        let word1 = seg.atom();
        seg.space();
        let word2 = seg.atom();
        if word1.eq_ignore_ascii_case(b"BYE") {
            let text = String::from_utf8_lossy(&seg.line).into_owned();
            self.trace_line(&format!("* {text}"));
            return Err(Error::Server(format!("UID FETCH: server said BYE: {text}")));
        }
        let is_fetch = word1.iter().all(u8::is_ascii_digit)
            && !word1.is_empty()
            && word2.eq_ignore_ascii_case(b"FETCH");
        if !is_fetch {
            self.trace_line(&format!("* {}", String::from_utf8_lossy(&seg.line)));
            return self.skip_rest(seg);
        }
        if self.trace {
            let shown = String::from_utf8_lossy(&seg.line).into_owned();
            self.trace_line(&format!("* {shown}"));
        }
        seg.space();
        if !seg.eat(b'(') {
            return Err(protocol("FETCH response without its list", &seg.line));
        }
        let mut uid: Option<u32> = None;
        let mut body: Option<Vec<u8>> = None;
        let mut letters: Vec<char> = Vec::new();
        self.fetch_items(seg, |me, name, seg| {
            match name {
                b"UID" => uid = number(&seg.atom()),
                b"BODY[]" => body = Some(me.body_value(seg)?),
                b"FLAGS" if seg.eat(b'(') => flag_list(seg, |flag| {
                    letters.extend(crate::message::maildir_letter(flag));
                })?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        let (Some(uid), Some(body)) = (uid, body) else {
            return Ok(());
        };
        let flags = crate::message::flags_to_info(letters);
        // Taking the message out of its slot also drops a repeated FETCH.
        if let Some(slot) = self
            .in_flight
            .iter_mut()
            .flat_map(|f| f.messages.iter_mut())
            .find(|m| m.as_ref().is_some_and(|m| m.number == uid))
        {
            let mut message = slot.take().expect("found above");
            message.flags = flags;
            out.push_back((message, body));
        }
        Ok(())
    }

    /// Reads the items of a FETCH response's list, the cursor just past
    /// its `(`, then the rest of the response. `take` gets each item's
    /// name (upper case) with the cursor at its value, and says whether
    /// it read the value; values it did not are skipped.
    fn fetch_items(
        &mut self,
        mut seg: Segment,
        mut take: impl FnMut(&mut Self, &[u8], &mut Segment) -> Result<bool>,
    ) -> Result<()> {
        loop {
            seg.space();
            if seg.eat(b')') {
                break;
            }
            if seg.at_end() {
                return Err(protocol("FETCH response ends early", &seg.line));
            }
            let name = seg.atom().to_ascii_uppercase();
            if name.is_empty() {
                return Err(protocol("FETCH response is garbled", &seg.line));
            }
            seg.space();
            if !take(self, &name, &mut seg)? {
                self.skip_value(&mut seg)?;
            }
        }
        // What follows the closing parenthesis (nothing, normally) ends
        // the line; a literal there would still have to be consumed.
        self.skip_rest(seg)
    }

    /// Reads the value of `BODY[]`: a literal (streamed from the
    /// connection), a quoted string or NIL. Line endings become LF.
    fn body_value(&mut self, seg: &mut Segment) -> Result<Vec<u8>> {
        if let Some(n) = seg.literal() {
            // Bounded by what was announced (RFC822.SIZE), as for POP3:
            // twice the largest size asked for, plus 64 KiB.
            let most = self
                .in_flight
                .iter()
                .flat_map(|f| f.messages.iter().flatten())
                .map(|m| m.size)
                .max()
                .unwrap_or(0);
            let limit = most.saturating_mul(2).saturating_add(64 * 1024);
            if n > limit {
                return Err(Error::Protocol(format!(
                    "UID FETCH: a {n}-byte body for messages announced at {most} bytes at most"
                )));
            }
            let mut body = Vec::with_capacity(usize::try_from(n).unwrap_or(0).min(1 << 20));
            self.read_literal(n, Some(&mut body))?;
            *seg = Segment {
                line: self.read_line()?,
                i: 0,
            };
            return Ok(body);
        }
        if seg.peek() == Some(b'"') {
            let raw = seg.quoted();
            let mut body = Vec::with_capacity(raw.len());
            let mut cr = false;
            push_lf(&mut body, &raw, &mut cr);
            if cr {
                body.push(b'\r');
            }
            return Ok(body);
        }
        seg.atom(); // NIL
        Ok(Vec::new())
    }

    /// Skips one value: an atom, a quoted string, a literal or a
    /// parenthesised list (with whatever it holds).
    fn skip_value(&mut self, seg: &mut Segment) -> Result<()> {
        let mut depth = 0usize;
        loop {
            seg.space();
            match seg.peek() {
                None => return Err(protocol("FETCH response ends early", &seg.line)),
                Some(b'(') => {
                    seg.i += 1;
                    depth += 1;
                    continue;
                }
                Some(b')') if depth > 0 => {
                    seg.i += 1;
                    depth -= 1;
                }
                Some(b'"') => {
                    seg.quoted();
                }
                Some(b'{') if seg.literal_len().is_some() => {
                    let n = seg.literal().expect("checked");
                    if n > MAX_OTHER_LITERAL {
                        return Err(protocol("literal too large", &seg.line));
                    }
                    self.read_literal(n, None)?;
                    *seg = Segment {
                        line: self.read_line()?,
                        i: 0,
                    };
                }
                Some(_) => {
                    // Always move on, even over a stray byte.
                    if seg.atom().is_empty() {
                        seg.i += 1;
                    }
                }
            }
            if depth == 0 {
                return Ok(());
            }
        }
    }

    /// Consumes the rest of a response whose content is not wanted:
    /// literals announced at line ends and the lines after them.
    fn skip_rest(&mut self, mut seg: Segment) -> Result<()> {
        while let Some(n) = seg.trailing_literal() {
            if n > MAX_OTHER_LITERAL {
                return Err(protocol("literal too large", &seg.line));
            }
            self.read_literal(n, None)?;
            seg = Segment {
                line: self.read_line()?,
                i: 0,
            };
        }
        Ok(())
    }

    /// Reads `n` literal bytes, into `into` with CRLF turned into LF, or
    /// nowhere.
    fn read_literal(&mut self, n: u64, mut into: Option<&mut Vec<u8>>) -> Result<()> {
        let mut left = n;
        let mut cr = false;
        while left > 0 {
            if self.pos == self.end {
                self.fill()?;
            }
            let take = (self.end - self.pos).min(usize::try_from(left).unwrap_or(usize::MAX));
            if let Some(out) = into.as_deref_mut() {
                push_lf(out, &self.buf[self.pos..self.pos + take], &mut cr);
            }
            self.pos += take;
            left -= take as u64;
        }
        if cr {
            if let Some(out) = into {
                out.push(b'\r');
            }
        }
        if self.trace {
            transcript::server(&self.label, &format!("<{n} bytes>"));
        }
        Ok(())
    }

    /// The next line, without its CRLF.
    fn read_line(&mut self) -> Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            if let Some(k) = self.buf[self.pos + scanned..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let stop = self.pos + scanned + k;
                let mut line = self.buf[self.pos..stop].to_vec();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.pos = stop + 1;
                return Ok(line);
            }
            scanned = self.end - self.pos;
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.end == self.buf.len() {
                return Err(Error::Protocol(format!(
                    "UID FETCH: server line longer than {READ_BUF} bytes"
                )));
            }
            self.fill()?;
        }
    }

    /// Reads more from the connection after `end`.
    fn fill(&mut self) -> Result<()> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        let n = loop {
            match self.io.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(net_error(e)),
            }
        };
        if n == 0 {
            return Err(net_error(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by server",
            )));
        }
        self.end += n;
        Ok(())
    }

    fn trace_line(&self, text: &str) {
        if self.trace {
            transcript::server(&self.label, text);
        }
    }
}

/// A number in a response (`UID`, `RFC822.SIZE`), if it is one that fits.
fn number<T: std::str::FromStr>(digits: &[u8]) -> Option<T> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn net_error(e: io::Error) -> Error {
    Error::net("IMAP UID FETCH", e)
}

fn protocol(what: &str, line: &[u8]) -> Error {
    Error::Protocol(format!(
        "UID FETCH: {what}: {:?}",
        String::from_utf8_lossy(&line[..line.len().min(80)])
    ))
}

/// Appends `data` to `out` with CRLF turned into LF (a lone CR stays).
/// `cr` carries a CR that ended the previous piece, whose LF may start
/// this one.
pub fn push_lf(out: &mut Vec<u8>, mut data: &[u8], cr: &mut bool) {
    if *cr {
        let Some(&first) = data.first() else {
            return;
        };
        *cr = false;
        if first != b'\n' {
            out.push(b'\r');
        }
    }
    while let Some(k) = data.iter().position(|&b| b == b'\r') {
        out.extend_from_slice(&data[..k]);
        match data.get(k + 1) {
            Some(b'\n') => {}
            Some(_) => out.push(b'\r'),
            None => *cr = true,
        }
        data = &data[k + 1..];
    }
    out.extend_from_slice(data);
}

/// Reads a flag list's flags up to its `)`, the cursor just past its
/// `(`, handing each to `each`. Bounded like everything on the line: the
/// line is at most `READ_BUF` bytes, and each flag an atom of it.
fn flag_list(seg: &mut Segment, mut each: impl FnMut(&[u8])) -> Result<()> {
    loop {
        seg.space();
        if seg.eat(b')') || seg.at_end() {
            return Ok(());
        }
        let flag = seg.atom();
        if flag.is_empty() {
            return Err(protocol("FETCH response is garbled", &seg.line));
        }
        each(&flag);
    }
}

/// One line of a response being parsed, with a cursor.
struct Segment {
    line: Vec<u8>,
    i: usize,
}

impl Segment {
    fn peek(&self) -> Option<u8> {
        self.line.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.line.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn space(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// An atom, with any `[...]` section in it (`BODY[HEADER.FIELDS (A)]`).
    fn atom(&mut self) -> Vec<u8> {
        let start = self.i;
        let mut bracket = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'[' => bracket += 1,
                b']' => bracket = bracket.saturating_sub(1),
                b' ' | b'(' | b')' | b'"' | b'{' if bracket == 0 => break,
                _ => {}
            }
            self.i += 1;
        }
        self.line[start..self.i].to_vec()
    }

    /// A quoted string's content, escapes resolved.
    fn quoted(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(c) = self.peek() {
                        out.push(c);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }

    /// The size of a literal starting at the cursor and ending the line.
    fn literal_len(&self) -> Option<u64> {
        let rest = self.line.get(self.i..)?;
        let inner = rest.strip_prefix(b"{")?.strip_suffix(b"}")?;
        let inner = inner.strip_suffix(b"+").unwrap_or(inner);
        std::str::from_utf8(inner).ok()?.parse().ok()
    }

    /// Takes the literal announcement at the cursor, if there is one.
    fn literal(&mut self) -> Option<u64> {
        let n = self.literal_len()?;
        self.i = self.line.len();
        Some(n)
    }

    /// The literal announced at the end of the line, wherever the cursor.
    fn trailing_literal(&self) -> Option<u64> {
        let open = self.line.iter().rposition(|&b| b == b'{')?;
        (Segment {
            line: self.line[open..].to_vec(),
            i: 0,
        })
        .literal_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lf(pieces: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cr = false;
        for p in pieces {
            push_lf(&mut out, p, &mut cr);
        }
        if cr {
            out.push(b'\r');
        }
        out
    }

    #[test]
    fn crlf_split_across_pieces_becomes_lf() {
        assert_eq!(lf(&[b"a\r", b"\nb"]), b"a\nb");
        assert_eq!(lf(&[b"a\r", b"", b"\nb"]), b"a\nb");
        assert_eq!(lf(&[b"a\r", b"b\r"]), b"a\rb\r");
        assert_eq!(lf(&[b"a\r\nb\rc\n\r\n\r"]), b"a\nb\rc\n\n\r");
    }

    #[test]
    fn segments_parse_fetch_items() {
        let mut s = Segment {
            line: b"UID 7 BODY[HEADER.FIELDS (A B)] {12}".to_vec(),
            i: 0,
        };
        assert_eq!(s.atom(), b"UID");
        s.space();
        assert_eq!(s.atom(), b"7");
        s.space();
        assert_eq!(s.atom(), b"BODY[HEADER.FIELDS (A B)]");
        s.space();
        assert_eq!(s.literal(), Some(12));
        let s = Segment {
            line: b"OK [ALERT] x {5}".to_vec(),
            i: 0,
        };
        assert_eq!(s.trailing_literal(), Some(5));
        let mut q = Segment {
            line: br#""a\"b\\c" x"#.to_vec(),
            i: 0,
        };
        assert_eq!(q.quoted(), br#"a"b\c"#);
    }

    fn remote(uid: u32) -> RemoteMessage {
        RemoteMessage {
            folder: "INBOX".into(),
            uid: Some(uid.to_string()),
            uidvalidity: Some(1),
            size: 3,
            number: uid,
            mailbox: Vec::new(),
            flags: String::new(),
        }
    }

    /// FLAGS before or after the body, in any case, with keywords and
    /// repeats: the message carries the Maildir letters, sorted.
    #[test]
    fn bodies_carry_their_flags() {
        let answer =
            b"* 1 FETCH (UID 1 FLAGS (\\Seen $Junk \\flagged \\Seen) BODY[] {3}\r\nab\n)\r\n\
* 2 FETCH (UID 2 BODY[] {3}\r\ncd\n FLAGS (\\Answered \\Draft \\Recent))\r\n\
* 3 FETCH (UID 3 FLAGS () BODY[] {3}\r\nef\n)\r\n\
ab1 OK done\r\n";
        let mut reader = BodyReader::new(crate::codec::Script::new(answer), "t");
        reader.send(vec![remote(1), remote(2), remote(3)]).unwrap();
        let mut out = VecDeque::new();
        assert!(reader.receive(&mut out).unwrap().is_empty());
        let got: Vec<(u32, &str, &[u8])> = out
            .iter()
            .map(|(m, b)| (m.number, m.flags.as_str(), b.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "FS", &b"ab\n"[..]),
                (2, "DR", b"cd\n"),
                (3, "", b"ef\n")
            ]
        );
    }
}
