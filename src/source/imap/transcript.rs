//! The protocol transcript for `-vv`: a stream wrapper that logs every
//! line the client writes (`C:`) and the server sends (`S:`) at trace
//! level, whichever code does the talking (our STARTTLS dialogue or the
//! `imap` crate). Secrets never reach the log: `LOGIN` arguments, SASL
//! initial responses and continuation lines are shown as `<redacted>`,
//! and message literals as their first line and size only. The lines go
//! to `crate::transcript` (stderr with `-vv`, and the account's
//! `transcript` file).

use std::io::{self, Read, Write};

use crate::transcript;

/// Longest server line shown in full; the rest is cut.
const SHOWN: usize = 300;

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
        }
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
                transcript::server(
                    &self.label,
                    &format!("{line}{}", if cut { " [...]" } else { "" }),
                );
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

impl<S: Read> Read for Traced<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.enabled {
            self.saw_input(&buf[..n]);
        }
        Ok(n)
    }
}

impl<S: Write> Write for Traced<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
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
}
