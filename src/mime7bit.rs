//! 8-bit to 7-bit conversion for SMTP servers that do not offer
//! 8BITMIME (RFC 6152 §3 forbids sending them 8-bit data; RFC 1652 §5
//! says to convert instead), as sendmail does: every leaf part whose
//! content is 8-bit under `Content-Transfer-Encoding` 7bit, 8bit or none
//! is re-encoded, text parts (and parts without a `Content-Type`) as
//! quoted-printable, anything else as base64, and that part's
//! `Content-Transfer-Encoding` is rewritten. Multiparts are walked part by
//! part along their boundaries and `message/rfc822` parts into the
//! enclosed message; every byte outside a converted part is kept as it
//! was. A message that is 7-bit already is returned unchanged, byte for
//! byte.
//!
//! What cannot be converted safely is an error, never a guess: 8-bit
//! bytes in a header (that is SMTPUTF8's business), in a multipart's
//! preamble or epilogue, in a `binary`, `base64` or `quoted-printable`
//! part, a multipart without a boundary or without its closing
//! delimiter, or MIME nested deeper than `MAX_DEPTH`.
//!
//! A message without `MIME-Version:` that needs converting gets
//! `MIME-Version: 1.0`, and without a `Content-Type:` also
//! `Content-Type: text/plain` with `charset=utf-8` when its body is
//! UTF-8, else `charset=unknown-8bit` (RFC 1428), as sendmail does.
//!
//! Input and output use the message's own line endings (LF as mailretr
//! holds messages, or CRLF). Encoded content is what the 8-bit part meant
//! on the wire, where every line ends in CRLF: quoted-printable keeps the
//! line breaks as hard breaks, base64 encodes the lines with CRLF.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;

use crate::message::{header_block, header_value};

/// How deeply multiparts and enclosed messages may nest.
pub const MAX_DEPTH: usize = 32;

/// Quoted-printable and base64 lines are at most this long (RFC 2045).
const LINE: usize = 76;

/// Why a message could not be converted to 7-bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconvertible(pub String);

impl fmt::Display for Unconvertible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unconvertible {}

fn fail<T>(why: impl Into<String>) -> Result<T, Unconvertible> {
    Err(Unconvertible(why.into()))
}

/// The message as 7-bit data: borrowed and unchanged when it is 7-bit
/// already, converted otherwise, or why it cannot be.
pub fn to_7bit(message: &[u8]) -> Result<Cow<'_, [u8]>, Unconvertible> {
    if message.is_ascii() {
        return Ok(Cow::Borrowed(message));
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 3);
    convert_message(message, &mut out, 0)?;
    // Every path above emits 7-bit bytes only; this keeps the promise
    // even if one did not.
    if !out.is_ascii() {
        return fail("the converted message is still 8-bit (a bug)");
    }
    Ok(Cow::Owned(out))
}

/// How a part's content is transfer-encoded, as far as conversion cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// None given, `7bit` or `8bit`: raw lines, convertible.
    Identity,
    /// `binary`: raw octets with no line structure.
    Binary,
    /// `base64`, `quoted-printable` or anything else: encoded already,
    /// so 8-bit bytes in it mean it is broken.
    Encoded,
}

/// The fields of a part's header that conversion reads.
struct Fields {
    /// `type/subtype`, lower case; `None` without a Content-Type.
    content_type: Option<String>,
    /// The `boundary` parameter.
    boundary: Option<String>,
    /// The Content-Transfer-Encoding, lower case.
    encoding: Option<String>,
}

impl Fields {
    fn read(header: &[u8]) -> Fields {
        let content_type = header_value(header, "Content-Type");
        let (kind, params) = match &content_type {
            Some(v) => split_parameters(v),
            None => (String::new(), Vec::new()),
        };
        Fields {
            content_type: content_type.map(|_| kind),
            boundary: params
                .into_iter()
                .find(|(k, _)| k == "boundary")
                .map(|(_, v)| v)
                .filter(|b| !b.is_empty()),
            encoding: header_value(header, "Content-Transfer-Encoding")
                .map(|v| strip_comments(&v).trim().to_ascii_lowercase()),
        }
    }

    fn transfer_encoding(&self) -> Encoding {
        match self.encoding.as_deref() {
            None | Some("") | Some("7bit") | Some("8bit") => Encoding::Identity,
            Some("binary") => Encoding::Binary,
            Some(_) => Encoding::Encoded,
        }
    }
}

/// A part split at the empty line ending its header.
struct Split<'a> {
    /// The header fields, with their line endings.
    header: &'a [u8],
    /// The empty line (empty when the part has no body).
    separator: &'a [u8],
    /// The content.
    body: &'a [u8],
}

fn split(entity: &[u8]) -> Split<'_> {
    let header = header_block(entity);
    let rest = &entity[header.len()..];
    let separator_len = if rest.starts_with(b"\r\n") {
        2
    } else if rest.starts_with(b"\n") {
        1
    } else {
        0
    };
    Split {
        header,
        separator: &rest[..separator_len],
        body: &rest[separator_len..],
    }
}

/// The line break a part's header uses (LF unless its first line ends
/// in CRLF).
fn line_break(header: &[u8]) -> &'static [u8] {
    match header.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && header[i - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

/// A top-level message or an enclosed `message/rfc822`: a part that may
/// need `MIME-Version` added.
fn convert_message(message: &[u8], out: &mut Vec<u8>, depth: usize) -> Result<(), Unconvertible> {
    let parts = split(message);
    if !parts.header.is_ascii() {
        return fail("8-bit bytes in the message header");
    }
    let mut added = Vec::new();
    if !parts.body.is_ascii() && header_value(parts.header, "MIME-Version").is_none() {
        let nl = line_break(parts.header);
        added.extend_from_slice(b"MIME-Version: 1.0");
        added.extend_from_slice(nl);
        if header_value(parts.header, "Content-Type").is_none() {
            let charset = if std::str::from_utf8(parts.body).is_ok() {
                "utf-8"
            } else {
                "unknown-8bit"
            };
            added.extend_from_slice(
                format!("Content-Type: text/plain; charset={charset}").as_bytes(),
            );
            added.extend_from_slice(nl);
        }
    }
    convert_part(message, "text/plain", &added, out, depth)
}

/// One part (or a whole message): copied as it is when 7-bit, else
/// converted by its type. `extra` are header lines to add if anything
/// is converted.
fn convert_part(
    entity: &[u8],
    default_type: &str,
    extra: &[u8],
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Unconvertible> {
    if entity.is_ascii() {
        out.extend_from_slice(entity);
        return Ok(());
    }
    if depth >= MAX_DEPTH {
        return fail(format!("MIME nested deeper than {MAX_DEPTH} levels"));
    }
    let parts = split(entity);
    if !parts.header.is_ascii() {
        return fail("8-bit bytes in the header of a MIME part");
    }
    let fields = Fields::read(parts.header);
    let kind = fields
        .content_type
        .clone()
        .unwrap_or_else(|| default_type.to_string());
    let encoding = fields.transfer_encoding();
    let what = fields.encoding.as_deref().unwrap_or("");
    match encoding {
        Encoding::Binary => {
            return fail(format!(
                "8-bit content in {} part with Content-Transfer-Encoding: binary",
                a(&kind)
            ))
        }
        Encoding::Encoded => {
            return fail(format!(
                "8-bit bytes in {} part with Content-Transfer-Encoding: {what}",
                a(&kind)
            ))
        }
        Encoding::Identity => {}
    }
    if kind.starts_with("multipart/") {
        let Some(boundary) = &fields.boundary else {
            return fail(format!("{} part without a boundary", a(&kind)));
        };
        let child_type = if kind == "multipart/digest" {
            "message/rfc822"
        } else {
            "text/plain"
        };
        write_header(&parts, extra, None, out);
        return convert_multipart(parts.body, boundary, child_type, out, depth + 1);
    }
    if kind == "message/rfc822" {
        write_header(&parts, extra, None, out);
        return convert_message(parts.body, out, depth + 1);
    }
    if kind.starts_with("message/") {
        return fail(format!("8-bit content in {} part", a(&kind)));
    }
    let nl = line_break(parts.header);
    if kind.starts_with("text/") || kind == "text" {
        write_header(&parts, extra, Some("quoted-printable"), out);
        quoted_printable(parts.body, nl, out);
    } else {
        write_header(&parts, extra, Some("base64"), out);
        base64_lines(parts.body, nl, out);
    }
    Ok(())
}

/// `kind` with its indefinite article.
fn a(kind: &str) -> String {
    let article = match kind.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => "an",
        _ => "a",
    };
    format!("{article} {kind}")
}

/// A part's header, with `extra` lines added and, given `encoding`, its
/// Content-Transfer-Encoding fields replaced by one naming it.
fn write_header(parts: &Split, extra: &[u8], encoding: Option<&str>, out: &mut Vec<u8>) {
    let nl = line_break(parts.header);
    match encoding {
        None => out.extend_from_slice(parts.header),
        Some(_) => out.extend_from_slice(&crate::message::without_field(
            parts.header,
            "Content-Transfer-Encoding",
        )),
    }
    out.extend_from_slice(extra);
    if let Some(encoding) = encoding {
        out.extend_from_slice(format!("Content-Transfer-Encoding: {encoding}").as_bytes());
        out.extend_from_slice(nl);
    }
    if parts.separator.is_empty() {
        out.extend_from_slice(nl);
    } else {
        out.extend_from_slice(parts.separator);
    }
}

/// A multipart body: the preamble and epilogue (which must be 7-bit) and
/// the delimiter lines as they are, each part converted.
fn convert_multipart(
    body: &[u8],
    boundary: &str,
    child_type: &str,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), Unconvertible> {
    let delimiters = delimiter_lines(body, boundary.as_bytes());
    let Some(close) = delimiters.iter().position(|d| d.close) else {
        return fail(format!(
            "a multipart without its closing boundary --{boundary}--"
        ));
    };
    let delimiters = &delimiters[..=close];
    let first = &delimiters[0];
    let preamble = &body[..first.start];
    let epilogue = &body[delimiters[close].end..];
    if !preamble.is_ascii() || !epilogue.is_ascii() {
        return fail("8-bit text outside the parts of a multipart");
    }
    out.extend_from_slice(preamble);
    for pair in delimiters.windows(2) {
        let (open, next) = (&pair[0], &pair[1]);
        out.extend_from_slice(&body[open.start..open.end]);
        // The line break before the next delimiter belongs to it.
        let part_end = (next.start - line_break_before(body, next.start)).max(open.end);
        convert_part(&body[open.end..part_end], child_type, b"", out, depth)?;
        out.extend_from_slice(&body[part_end..next.start]);
    }
    let last = &delimiters[close];
    out.extend_from_slice(&body[last.start..last.end]);
    out.extend_from_slice(epilogue);
    Ok(())
}

/// The length of the line break that ends just before `at` (0 at the
/// start of the body).
fn line_break_before(body: &[u8], at: usize) -> usize {
    if at >= 2 && &body[at - 2..at] == b"\r\n" {
        2
    } else if at >= 1 && body[at - 1] == b'\n' {
        1
    } else {
        0
    }
}

/// A delimiter line of a multipart body, by byte offsets (its line break
/// included in `end`).
struct Delimiter {
    start: usize,
    end: usize,
    /// `--boundary--`: the last one.
    close: bool,
}

/// The lines that are `--boundary` or `--boundary--`, with only white
/// space after them (RFC 2046 §5.1.1).
fn delimiter_lines(body: &[u8], boundary: &[u8]) -> Vec<Delimiter> {
    let mut found = Vec::new();
    let mut start = 0;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let end = start + line.len();
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if let Some(rest) = text
            .strip_prefix(b"--")
            .and_then(|t| t.strip_prefix(boundary))
        {
            let (close, rest) = match rest.strip_prefix(b"--") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            if rest.iter().all(|&b| b == b' ' || b == b'\t') {
                found.push(Delimiter { start, end, close });
                if close {
                    break;
                }
            }
        }
        start = end;
    }
    found
}

/// Quoted-printable (RFC 2045 §6.7) of raw lines: each line break (LF
/// or CRLF) is a hard break written as `nl`, white space before a break
/// and every byte outside `!`..`~` but `=` (and any bare CR) is `=XX`,
/// and lines are cut with soft breaks at 76 characters.
pub fn quoted_printable(body: &[u8], nl: &[u8], out: &mut Vec<u8>) {
    for line in body.split_inclusive(|&b| b == b'\n') {
        let (text, broken) = match line.strip_suffix(b"\n") {
            Some(t) => (t.strip_suffix(b"\r").unwrap_or(t), true),
            None => (line, false),
        };
        let mut width = 0;
        for (i, &b) in text.iter().enumerate() {
            let last = i + 1 == text.len();
            let literal =
                matches!(b, b'!'..=b'<' | b'>'..=b'~') || ((b == b' ' || b == b'\t') && !last);
            let size = if literal { 1 } else { 3 };
            // Room for a soft break's `=` unless this ends the line.
            let limit = if last { LINE } else { LINE - 1 };
            if width + size > limit {
                out.push(b'=');
                out.extend_from_slice(nl);
                width = 0;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(format!("={b:02X}").as_bytes());
            }
            width += size;
        }
        if broken {
            out.extend_from_slice(nl);
        }
    }
}

/// Base64 of the content as it meant on the wire (every line ending in
/// CRLF), in lines of 76 characters separated by `nl`.
fn base64_lines(body: &[u8], nl: &[u8], out: &mut Vec<u8>) {
    let mut wire = Vec::with_capacity(body.len() + body.len() / 30);
    let mut prev = 0u8;
    for &b in body {
        if b == b'\n' && prev != b'\r' {
            wire.push(b'\r');
        }
        wire.push(b);
        prev = b;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(&wire);
    for (i, chunk) in encoded.as_bytes().chunks(LINE).enumerate() {
        if i > 0 {
            out.extend_from_slice(nl);
        }
        out.extend_from_slice(chunk);
    }
}

/// `type/subtype` (lower case) and the parameters (names lower case,
/// values unquoted) of a Content-Type value.
fn split_parameters(value: &str) -> (String, Vec<(String, String)>) {
    let value = strip_comments(value);
    let mut pieces = split_unquoted(&value, ';').into_iter();
    let kind = pieces
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let params = pieces
        .filter_map(|p| {
            let (name, v) = p.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), unquote(v.trim())))
        })
        .collect();
    (kind, params)
}

/// Splits at `sep` outside double quotes.
fn split_unquoted(value: &str, sep: char) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        let piece = pieces.last_mut().expect("never empty");
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            pieces.push(String::new());
            continue;
        }
        piece.push(c);
    }
    pieces
}

/// A parameter value without its quotes and backslash escapes.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"') else {
        return v.to_string();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// A header value without RFC 5322 comments (parenthesised, outside
/// quotes; they nest).
fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a part's content means on the wire: LF line breaks as CRLF.
    fn wire(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = 0u8;
        for &b in bytes {
            if b == b'\n' && prev != b'\r' {
                out.push(b'\r');
            }
            out.push(b);
            prev = b;
        }
        out
    }

    fn converted(message: &[u8]) -> Vec<u8> {
        match to_7bit(message) {
            Ok(Cow::Owned(out)) => out,
            Ok(Cow::Borrowed(_)) => panic!("not converted"),
            Err(e) => panic!("{e}"),
        }
    }

    /// Decodes quoted-printable with an independent decoder (the
    /// `quoted_printable` crate, strict mode) from its wire form.
    fn decode_qp(encoded: &[u8]) -> Vec<u8> {
        ::quoted_printable::decode(wire(encoded), ::quoted_printable::ParseMode::Strict)
            .unwrap_or_else(|e| panic!("{e:?} in {}", String::from_utf8_lossy(encoded)))
    }

    fn body_of(message: &[u8]) -> &[u8] {
        split(message).body
    }

    #[test]
    fn a_7bit_message_is_returned_unchanged_byte_for_byte() {
        for m in [
            &b"From: a@b\nSubject: plain\n\nhello\n.\nFrom me\n"[..],
            b"Subject: x\r\n\r\nno final break",
            b"",
            b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n",
        ] {
            let out = to_7bit(m).unwrap();
            assert!(matches!(out, Cow::Borrowed(_)));
            assert_eq!(&*out, m);
        }
    }

    #[test]
    fn an_8bit_text_body_becomes_quoted_printable_that_decodes_to_it() {
        let long = "ä".repeat(60);
        let body = format!(
            "Grüße aus Köln\ntrailing space \nline with = sign and\ttab\n{long}\n\
             a very long line of plain ascii words that goes on and on and on past the limit ok\nlast"
        );
        let message = format!(
            "From: a@b\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: 8bit\n\n{body}"
        );
        let out = converted(message.as_bytes());
        assert!(out.is_ascii());
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.contains("\nContent-Transfer-Encoding: quoted-printable\n\n"),
            "{text}"
        );
        assert!(!text.contains("8bit"), "{text}");
        assert!(text.lines().all(|l| l.len() <= 76), "{text}");
        assert_eq!(decode_qp(body_of(&out)), wire(body.as_bytes()));
        // The other header fields are kept as they were, in order.
        assert!(text.starts_with(
            "From: a@b\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
        ));
    }

    #[test]
    fn a_non_mime_message_gets_mime_version_and_a_charset() {
        let out = converted(b"From: a@b\nSubject: x\n\ncaf\xc3\xa9\n");
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "From: a@b\nSubject: x\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9\n"
        );
        let latin1 = converted(b"Subject: x\n\ncaf\xe9\n");
        assert!(String::from_utf8(latin1)
            .unwrap()
            .contains("charset=unknown-8bit"));
    }

    #[test]
    fn crlf_messages_keep_crlf() {
        let out = converted(b"Subject: x\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\n\r\n\xc3\xa9t\xc3\xa9\r\n");
        assert_eq!(
            out,
            b"Subject: x\r\nContent-Type: text/plain\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=C3=A9t=C3=A9\r\n"
        );
    }

    #[test]
    fn a_multipart_converts_only_its_8bit_parts() {
        let pdf = b"%PDF-1.4\n\x00\x01\xff\xfe binary-ish\nmore\n";
        let mut message = b"From: a@b\nMIME-Version: 1.0\n\
            Content-Type: multipart/mixed; boundary=\"=_b (x)\"\n\n\
            preamble\n--=_b (x)\n\
            Content-Type: text/plain; charset=iso-8859-1\n\
            Content-Transfer-Encoding: 8bit\n\ncaf\xe9\n\
            --=_b (x)\n\
            Content-Type: text/plain\n\nascii part\n\
            --=_b (x)\n\
            Content-Type: application/pdf\n\n"
            .to_vec();
        message.extend_from_slice(pdf);
        message.extend_from_slice(
            b"\n--=_b (x)\nContent-Type: message/rfc822\n\nSubject: inner\n\nna\xc3\xafve\n\
              --=_b (x)--\nepilogue\n",
        );
        let out = converted(&message);
        assert!(out.is_ascii());
        let text = String::from_utf8(out).unwrap();
        let parts: Vec<&str> = text.split("--=_b (x)").collect();
        assert_eq!(parts.len(), 6, "{text}");
        assert!(parts[0].ends_with("preamble\n"));
        assert_eq!(
            parts[1],
            "\nContent-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: quoted-printable\n\ncaf=E9\n"
        );
        assert_eq!(parts[2], "\nContent-Type: text/plain\n\nascii part\n");
        let (header, encoded) = parts[3].split_once("\n\n").unwrap();
        assert!(
            header.ends_with("Content-Transfer-Encoding: base64"),
            "{header}"
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.replace('\n', ""))
            .unwrap();
        assert_eq!(decoded, wire(pdf));
        assert_eq!(
            parts[4],
            "\nContent-Type: message/rfc822\n\nSubject: inner\nMIME-Version: 1.0\n\
             Content-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: quoted-printable\n\nna=C3=AFve\n"
        );
        assert_eq!(parts[5], "--\nepilogue\n");
    }

    #[test]
    fn nested_multiparts_and_a_folded_transfer_encoding() {
        let message = b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n\
            --outer\nContent-Type: multipart/alternative;\n boundary=inner\n\n\
            --inner\nContent-Type: text/plain\nContent-Transfer-Encoding:\n  8bit\nX-After: kept\n\n\xc3\xa9\n\
            --inner\nContent-Type: text/html\n\n<p>\xc3\xa9</p>\n--inner--\n\
            --outer--\n";
        let text = String::from_utf8(converted(message)).unwrap();
        assert!(text.contains(
            "--inner\nContent-Type: text/plain\nX-After: kept\nContent-Transfer-Encoding: quoted-printable\n\n=C3=A9\n--inner\n"
        ), "{text}");
        assert!(
            text.contains("<p>=C3=A9</p>\n--inner--\n--outer--\n"),
            "{text}"
        );
    }

    #[test]
    fn what_cannot_be_converted_says_why() {
        let cases: &[(&[u8], &str)] = &[
            (b"Subject: Gr\xc3\xbc\xc3\x9fe\n\nbody\n", "message header"),
            (
                b"Content-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n\xff\n",
                "binary",
            ),
            (
                b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n\xff\n",
                "base64",
            ),
            (
                b"Content-Type: multipart/mixed\n\n--b\n\n\xff\n--b--\n",
                "without a boundary",
            ),
            (
                b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\n\xff\n",
                "closing boundary",
            ),
            (
                b"Content-Type: multipart/mixed; boundary=b\n\npre\xff\n--b\n\nx\n--b--\n",
                "outside the parts",
            ),
            (
                b"Content-Type: multipart/mixed; boundary=b\n\n--b\nX-Name: \xff\n\nx\n--b--\n",
                "header of a MIME part",
            ),
            (
                b"Content-Type: message/partial; id=x\n\n\xff\n",
                "message/partial",
            ),
        ];
        for (message, why) in cases {
            let e = to_7bit(message).unwrap_err();
            assert!(e.0.contains(why), "{e} should say {why:?}");
        }
        let mut deep = b"\xff".to_vec();
        for i in 0..=MAX_DEPTH {
            let mut outer =
                format!("Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n").into_bytes();
            outer.extend_from_slice(&deep);
            outer.extend_from_slice(format!("\n--b{i}--\n").as_bytes());
            deep = outer;
        }
        let e = to_7bit(&deep).unwrap_err();
        assert!(e.0.contains("nested"), "{e}");
    }

    #[test]
    fn quoted_printable_edge_cases_round_trip() {
        for body in [
            &b""[..],
            b"\n",
            b"=\n",
            b" \n\t",
            b"a\rb\r\n",
            b"\xff\xfe\x00\x7f",
            &[b'x'; 200],
            &[0xc3; 100],
        ] {
            let mut out = Vec::new();
            quoted_printable(body, b"\n", &mut out);
            assert!(out.is_ascii());
            assert!(out.split(|&b| b == b'\n').all(|l| l.len() <= 76));
            // A bare CR is encoded, so only the LF breaks count as lines.
            let expected = wire(body);
            assert_eq!(decode_qp(&out), expected, "{body:?}");
        }
    }

    /// A small xorshift generator: the property test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    #[test]
    fn random_input_never_panics_and_what_converts_is_7bit() {
        let pieces: &[&[u8]] = &[
            b"Content-Type: multipart/mixed; boundary=b\n",
            b"Content-Type: text/plain\n",
            b"Content-Type: message/rfc822\n",
            b"Content-Type: image/png\n",
            b"Content-Transfer-Encoding: 8bit\n",
            b"Content-Transfer-Encoding: binary\n",
            b"MIME-Version: 1.0\n",
            b"\n",
            b"\r\n",
            b"--b\n",
            b"--b--\n",
            b"caf\xc3\xa9 ",
            b"\xff",
            b"=",
            b" \t",
            b"\r",
            b"plain text ",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut converted = 0;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..rng.next() % 24 {
                if rng.next().is_multiple_of(4) {
                    input.push(rng.next() as u8);
                } else {
                    input.extend_from_slice(rng.pick(pieces));
                }
            }
            if let Ok(out) = to_7bit(&input) {
                assert!(out.is_ascii(), "{input:?}");
                converted += 1;
            }
        }
        assert!(converted > 1000, "only {converted} inputs converted");
    }
}
