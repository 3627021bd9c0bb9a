//! The message as sendmail reads it and as it is queued: the end of the
//! input (a lone `.` unless `-i`), recipients from `To:`, `Cc:` and
//! `Bcc:` (`-t`), `Bcc:` removed, and `Date:`, `Message-ID:` and `From:`
//! added when missing. Pure functions over bytes with LF line endings.

use base64::Engine as _;

use crate::message::{header_block, header_values, is_smtp_address};

/// The message from stdin: CRLF read as LF, a leading mbox `From ` line
/// dropped, and, unless `ignore_dots`, cut at a line holding only `.`.
pub fn read_input(input: &[u8], ignore_dots: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut first = true;
    for line in input.split_inclusive(|&b| b == b'\n') {
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let content = content.unwrap_or(line);
        if first && content.starts_with(b"From ") {
            first = false;
            continue;
        }
        first = false;
        if !ignore_dots && content == b"." {
            break;
        }
        out.extend_from_slice(content);
        if line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    out
}

/// The addresses in an address-list header value (RFC 5322 section 3.4):
/// `Name <a@x>`, bare `a@x`, quoted names with commas, comments and
/// groups (`team: a@x, b@y;`). Only the addresses, in order.
pub fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut angle: Option<String> = None;
    let mut in_angle = false;
    let mut chars = value.chars();
    let finish = |out: &mut Vec<String>, text: &mut String, angle: &mut Option<String>| {
        let address = angle.take().unwrap_or_else(|| text.clone());
        let address = address.trim();
        // A display name left without an address is no recipient.
        if !address.is_empty() && !address.contains(char::is_whitespace) {
            out.push(address.to_string());
        }
        text.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A quoted display name or local part, kept with its quotes.
                let mut quoted = String::from('"');
                while let Some(q) = chars.next() {
                    quoted.push(q);
                    if q == '\\' {
                        quoted.extend(chars.next());
                    } else if q == '"' {
                        break;
                    }
                }
                match angle.as_mut().filter(|_| in_angle) {
                    Some(a) => a.push_str(&quoted),
                    None => text.push_str(&quoted),
                }
            }
            '(' => skip_comment(&mut chars),
            '<' if !in_angle => {
                in_angle = true;
                angle = Some(String::new());
            }
            '>' if in_angle => in_angle = false,
            // A group's name: `team: a@x, b@y;`.
            ':' if !in_angle => text.clear(),
            ',' | ';' if !in_angle => finish(&mut out, &mut text, &mut angle),
            c => match angle.as_mut().filter(|_| in_angle) {
                Some(a) => a.push(c),
                None => text.push(c),
            },
        }
    }
    finish(&mut out, &mut text, &mut angle);
    out
}

/// Skips a (possibly nested) comment after its opening parenthesis.
fn skip_comment(chars: &mut std::str::Chars) {
    let mut depth = 1;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// The recipients `-t` takes from the header: To, Cc and Bcc.
pub fn header_recipients(message: &[u8]) -> Vec<String> {
    ["To", "Cc", "Bcc"]
        .iter()
        .flat_map(|h| header_values(message, h))
        .flat_map(|v| addresses(&v))
        .collect()
}

/// Whether the first line looks like a header field (`Name: value`), so
/// a message that starts with its body gets a header block put in front.
fn has_header(message: &[u8]) -> bool {
    let first = message.split(|&b| b == b'\n').next().unwrap_or(b"");
    match first.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => first[..colon]
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b':'),
        _ => false,
    }
}

/// A display name as a header phrase: as is when it is plain ASCII
/// words, quoted when it holds specials, RFC 2047 encoded when it is not
/// ASCII.
pub fn phrase(name: &str) -> String {
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    if !name.is_ascii() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(name.as_bytes());
        return format!("=?UTF-8?B?{b64}?=");
    }
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c))
    {
        name
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// What is added to a message that lacks it.
#[derive(Debug, Clone)]
pub struct Additions<'a> {
    /// The `Date:` value (RFC 5322), used when there is none.
    pub date: &'a str,
    /// The `Message-ID:` value with its angle brackets.
    pub message_id: &'a str,
    /// The address for an added `From:` (`-f`, else user@hostname).
    pub from_address: &'a str,
    /// `-F`: the display name for an added `From:`.
    pub full_name: Option<&'a str>,
}

/// The message as queued: `Bcc:` removed, and `From:`, `Date:` and
/// `Message-ID:` added at the end of the header when missing.
pub fn prepare(message: &[u8], add: &Additions) -> Vec<u8> {
    let (headers, body): (&[u8], &[u8]) = if has_header(message) {
        let h = header_block(message);
        (h, &message[h.len()..])
    } else {
        (b"", message)
    };
    let mut out = crate::message::without_field(headers, "Bcc");
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    let present = |name: &str| !header_values(headers, name).is_empty();
    if !present("From") {
        let line = match add.full_name.filter(|n| !n.trim().is_empty()) {
            Some(name) => format!("From: {} <{}>\n", phrase(name.trim()), add.from_address),
            None => format!("From: {}\n", add.from_address),
        };
        out.extend_from_slice(line.as_bytes());
    }
    if !present("Date") {
        out.extend_from_slice(format!("Date: {}\n", add.date).as_bytes());
    }
    if !present("Message-ID") {
        out.extend_from_slice(format!("Message-ID: {}\n", add.message_id).as_bytes());
    }
    if body.is_empty() || !(body.starts_with(b"\n") || body.starts_with(b"\r\n")) {
        out.push(b'\n');
    }
    out.extend_from_slice(body);
    out
}

/// The first address of the `From:` header that SMTP can carry.
pub fn from_address(message: &[u8]) -> Option<String> {
    header_values(message, "From")
        .iter()
        .flat_map(|v| addresses(v))
        .find(|a| is_smtp_address(a))
}

/// A new Message-ID: `<time.random@hostname>`.
pub fn new_message_id(now: i64, hostname: &str) -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the pid and the time still make it unique here.
        bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
    }
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("<{now}.{random}@{hostname}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add() -> Additions<'static> {
        Additions {
            date: "Tue, 1 Dec 2026 19:00:00 +0000",
            message_id: "<1.ab@laptop.example>",
            from_address: "jaco@laptop.example",
            full_name: None,
        }
    }

    #[test]
    fn input_ends_at_a_lone_dot_unless_i() {
        let input =
            b"From jaco Tue Dec  1 19:00:00 2026\r\nSubject: x\r\n\r\nbody\r\n.\r\nafter\r\n";
        assert_eq!(read_input(input, false), b"Subject: x\n\nbody\n");
        assert_eq!(read_input(input, true), b"Subject: x\n\nbody\n.\nafter\n");
        assert_eq!(read_input(b"a\n..\n", false), b"a\n..\n");
        assert_eq!(read_input(b"no newline", false), b"no newline");
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            addresses(r#""Kroon, Jaco" <jaco@x.example>, bare@y.example (comment), <z@z>"#),
            ["jaco@x.example", "bare@y.example", "z@z"]
        );
        assert_eq!(
            addresses("team: a@x, Bee <b@y>; c@z"),
            ["a@x", "b@y", "c@z"]
        );
        assert_eq!(addresses("undisclosed-recipients:;"), Vec::<String>::new());
        assert_eq!(addresses(""), Vec::<String>::new());
    }

    #[test]
    fn t_reads_to_cc_and_bcc_with_folding() {
        let m = b"To: a@x,\n  B <b@y>\nCc: c@z\nBcc: hidden@w\nSubject: s\n\nTo: not@body\n";
        assert_eq!(header_recipients(m), ["a@x", "b@y", "c@z", "hidden@w"]);
    }

    #[test]
    fn bcc_goes_and_missing_fields_are_added() {
        let m = b"To: a@x\nBcc: hidden@w,\n  other@w\nSubject: s\n\nbody\nBcc: stays in the body\n";
        let out = String::from_utf8(prepare(m, &add())).unwrap();
        assert_eq!(
            out,
            "To: a@x\nSubject: s\nFrom: jaco@laptop.example\nDate: Tue, 1 Dec 2026 19:00:00 +0000\nMessage-ID: <1.ab@laptop.example>\n\nbody\nBcc: stays in the body\n"
        );
    }

    #[test]
    fn present_fields_are_kept_and_names_are_phrased() {
        let m =
            b"From: Me <me@x>\nDate: Mon, 30 Nov 2026 10:00:00 +0000\nMessage-Id: <old@x>\n\nb\n";
        assert_eq!(prepare(m, &add()), m.to_vec());
        let named = Additions {
            full_name: Some("CronDaemon"),
            ..add()
        };
        let out = String::from_utf8(prepare(b"Subject: s\n\nb\n", &named)).unwrap();
        assert!(
            out.contains("From: CronDaemon <jaco@laptop.example>\n"),
            "{out}"
        );
        assert_eq!(phrase("Kroon, Jaco"), "\"Kroon, Jaco\"");
        assert_eq!(phrase("Jos\u{e9}"), "=?UTF-8?B?Sm9zw6k=?=");
    }

    #[test]
    fn a_message_without_a_header_gets_one() {
        let out = String::from_utf8(prepare(b"just a body\n", &add())).unwrap();
        assert!(
            out.starts_with("From: jaco@laptop.example\nDate: "),
            "{out}"
        );
        assert!(out.ends_with("\n\njust a body\n"), "{out}");
        let out = String::from_utf8(prepare(b"Subject: only\n", &add())).unwrap();
        assert!(out.starts_with("Subject: only\nFrom: "), "{out}");
        assert!(out.ends_with(">\n\n"), "{out}");
    }

    #[test]
    fn from_and_ids() {
        assert_eq!(
            from_address(b"From: \"J\" <j@x.example>\n\n").as_deref(),
            Some("j@x.example")
        );
        assert_eq!(from_address(b"From: nobody\n\n"), None);
        let id = new_message_id(5, "laptop.example");
        assert!(
            id.starts_with("<5.") && id.ends_with("@laptop.example>"),
            "{id}"
        );
        assert_ne!(id, new_message_id(5, "laptop.example"));
    }
}
