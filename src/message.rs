//! A fetched message and its envelope: the few header fields mailretr
//! reads (Return-Path, Message-ID) and the `Received:` trace header it
//! adds. Messages are bytes with LF line endings; nothing here rewrites
//! them beyond prepending one header.

/// Who a message is from and for, as the destinations need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The envelope sender (`Return-Path`), if the message has one.
    pub sender: Option<String>,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// The account it was fetched by.
    pub account: String,
    /// The folder it was fetched from (its name in the config and the
    /// state store).
    pub folder: String,
    /// That folder relative to the source server's personal namespace,
    /// one decoded name per level (`["Lists", "a"]` for Courier's
    /// `INBOX.Lists.a` and Dovecot's `Lists/a`); empty for INBOX and for
    /// POP3. Destinations with `subfolders` mirror it.
    pub mailbox: Vec<String>,
    /// The message's flags on the server when it was downloaded, as
    /// Maildir info letters in order (`flags_to_info`): IMAP only.
    pub flags: String,
}

/// The Maildir info letter (cr.yp.to/proto/maildir.html) for an IMAP
/// system flag that has one: `\Draft` D, `\Flagged` F, `\Answered` R,
/// `\Seen` S. `\Deleted`, `\Recent` and keywords have none here.
pub fn maildir_letter(imap_flag: &[u8]) -> Option<char> {
    const LETTERS: [(&[u8], char); 4] = [
        (b"\\Draft", 'D'),
        (b"\\Flagged", 'F'),
        (b"\\Answered", 'R'),
        (b"\\Seen", 'S'),
    ];
    LETTERS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(imap_flag))
        .map(|(_, letter)| *letter)
}

/// Maildir info letters sorted and without repeats, as the Maildir spec
/// wants them after `:2,` (`DFRS`); anything but `D F R S` is dropped.
pub fn flags_to_info(letters: impl IntoIterator<Item = char>) -> String {
    let mut v: Vec<char> = letters
        .into_iter()
        .filter(|c| "DFRS".contains(*c))
        .collect();
    v.sort_unstable();
    v.dedup();
    v.into_iter().collect()
}

/// The IMAP flags for Maildir info letters (the reverse of
/// `maildir_letter`), for an APPEND.
pub fn info_to_imap_flags(info: &str) -> Vec<&'static str> {
    info.chars()
        .filter_map(|c| match c {
            'D' => Some("\\Draft"),
            'F' => Some("\\Flagged"),
            'R' => Some("\\Answered"),
            'S' => Some("\\Seen"),
            _ => None,
        })
        .collect()
}

/// The header block without the fields called `name` (with their
/// continuation lines).
pub fn without_field(header: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len());
    let mut dropping = false;
    for line in header.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation {
            dropping = line
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|c| line[..c].trim_ascii().eq_ignore_ascii_case(name.as_bytes()));
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out
}

/// The header block: everything before the first empty line.
pub fn header_block(message: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < message.len() {
        let line_end = message[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |p| i + p + 1);
        let line = &message[i..line_end];
        if line == b"\n" || line == b"\r\n" {
            return &message[..i];
        }
        i = line_end;
    }
    message
}

/// The unfolded value of the first header field called `name`
/// (case-insensitive), with surrounding white space trimmed.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let headers = header_block(message);
    let mut value: Option<Vec<u8>> = None;
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(v) = value.as_mut() {
            if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
                continue;
            }
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
            {
                value = Some(line[colon + 1..].trim_ascii().to_vec());
            }
        }
    }
    value.map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The unfolded values of every header field called `name`
/// (case-insensitive), top to bottom.
pub fn header_values(message: &[u8], name: &str) -> Vec<String> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut in_field = false;
    for line in header_block(message).split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if in_field {
                let v = out.last_mut().expect("in a field");
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        in_field = false;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(name.as_bytes())
            {
                out.push(line[colon + 1..].trim_ascii().to_vec());
                in_field = true;
            }
        }
    }
    out.into_iter()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

/// A hash of the header block (hex, 32 digits), with CRLF read as LF:
/// together with the size it recognises a message again after an IMAP
/// server renumbered its folder, whether or not it has a `Message-ID`.
pub fn header_hash(message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for line in header_block(message).split_inclusive(|&b| b == b'\n') {
        match line.strip_suffix(b"\r\n") {
            Some(content) => {
                hasher.update(content);
                hasher.update(b"\n");
            }
            None => hasher.update(line),
        }
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The envelope sender from `Return-Path: <addr>`. An empty path `<>`
/// (a bounce) is `Some("")`.
pub fn return_path(message: &[u8]) -> Option<String> {
    let value = header_value(message, "Return-Path")?;
    let inner = value
        .trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or("")
        .trim();
    // Header data: only a valid RFC 5321 path (or the null sender) is an
    // envelope sender; anything else falls back to the destination's
    // configured `sender`, else `<>` (never a refusal of the message).
    if inner.is_empty() || is_smtp_address(inner) {
        Some(inner.to_string())
    } else {
        log::warn!(
            "Return-Path {:?} is not a valid address; using the configured sender",
            crate::message::escape(inner)
        );
        None
    }
}

/// Whether `address` may stand in an SMTP/LMTP `MAIL FROM:<...>` or
/// `RCPT TO:<...>` (RFC 5321 section 4.1.2, with RFC 6531 UTF-8): a local
/// part (dot-atom or quoted string) `@` a domain (labels of letters,
/// digits and hyphens, or an address literal in brackets), at most 254
/// bytes; no spaces, controls, angle brackets or parameters. Addresses
/// read from headers are checked with this once, where the envelope is
/// built, so no header can inject a command or an ESMTP parameter.
pub fn is_smtp_address(address: &str) -> bool {
    if address.len() > 254 {
        return false;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let local_ok = if let Some(q) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        // A quoted string: no controls, `"` and `\` only escaped.
        let mut chars = q.chars();
        let mut ok = true;
        while let Some(c) = chars.next() {
            match c {
                '\\' => ok &= chars.next().is_some_and(|n| !n.is_control()),
                '"' => ok = false,
                c if c.is_control() => ok = false,
                _ => {}
            }
        }
        ok
    } else {
        !local.is_empty()
            && local
                .split('.')
                .all(|a| !a.is_empty() && a.chars().all(atext))
    };
    if !local_ok || local.len() > 64 {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return !literal.is_empty()
            && literal
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-".contains(c));
    }
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

/// Server or header text made safe for a terminal and a log line:
/// control characters (escape sequences among them) become `\xNN`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// What goes into the `Received:` header.
#[derive(Debug, Clone)]
pub struct TraceInfo<'a> {
    /// The server fetched from.
    pub server: &'a str,
    /// Our host name, from `[general] hostname`.
    pub hostname: &'a str,
    /// `POP3S`, `IMAPS`, ...
    pub protocol: &'a str,
    /// The account name.
    pub account: &'a str,
    /// The mailbox user on the server.
    pub user: &'a str,
}

/// Returns the message with a `Received:` trace header (RFC 5321 section
/// 4.4) prepended.
pub fn with_received(
    message: &[u8],
    trace: &TraceInfo,
    now: chrono::DateTime<chrono::Local>,
) -> Vec<u8> {
    let clean = |s: &str| -> String { s.chars().filter(|c| !c.is_control()).collect() };
    let header = format!(
        "Received: from {} by {} with {} (mailretr {})\n\tfor <{}> (account {});\n\t{}\n",
        clean(trace.server),
        clean(trace.hostname),
        trace.protocol,
        env!("CARGO_PKG_VERSION"),
        clean(trace.user),
        clean(trace.account),
        now.to_rfc2822()
    );
    let mut out = Vec::with_capacity(header.len() + message.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_addresses_are_paths_and_nothing_else() {
        for good in [
            "jaco@kroon.co.za",
            "a.b+c@sub.example.org",
            "\"a b\"@example.org",
            "x@[127.0.0.1]",
            "jürgen@bücher.example",
        ] {
            assert!(is_smtp_address(good), "{good}");
        }
        for bad in [
            "",
            "no-at",
            "a@b>c@kroon.co.za",
            "attacker@evil.example NOTIFY=SUCCESS ORCPT=rfc822;x@y\rRSET",
            "a b@example.org",
            "-oQ/tmp/x@kroon.co.za\n",
            "a@",
            "@b",
            "a..b@example.org",
            "a@-b.example",
            "a@b\u{1b}[31m.example",
            "a@exa mple.org",
        ] {
            assert!(!is_smtp_address(bad), "{bad:?}");
        }
        assert_eq!(escape("a\u{1b}[31mb\n"), "a\\x1b[31mb\\x0a");
    }

    #[test]
    fn imap_flags_become_sorted_maildir_info_and_back() {
        let flags: [&[u8]; 7] = [
            b"\\Seen",
            b"\\flagged",
            b"\\Recent",
            b"$Junk",
            b"\\Draft",
            b"\\Answered",
            b"\\Seen",
        ];
        assert_eq!(
            flags_to_info(flags.iter().filter_map(|f| maildir_letter(f))),
            "DFRS"
        );
        assert_eq!(flags_to_info("SxF".chars()), "FS");
        assert_eq!(flags_to_info([]), "");
        assert_eq!(info_to_imap_flags("FS"), ["\\Flagged", "\\Seen"]);
        assert!(maildir_letter(b"\\Deleted").is_none());
    }

    #[test]
    fn a_bad_return_path_is_no_sender() {
        assert_eq!(
            return_path(b"Return-Path: <a@b.example NOTIFY=SUCCESS>\n\nx"),
            None
        );
        assert_eq!(return_path(b"Return-Path: <>\n\nx"), Some(String::new()));
        assert_eq!(
            return_path(b"Return-Path: <a@b.example>\n\nx"),
            Some("a@b.example".into())
        );
    }

    const MSG: &[u8] = b"Return-Path: <bounce@example.org>\nSubject: a\n  folded\nMessage-ID: <1@x>\n\nReturn-Path: <not@header>\n";

    #[test]
    fn reads_header_fields() {
        assert_eq!(return_path(MSG).as_deref(), Some("bounce@example.org"));
        assert_eq!(header_value(MSG, "subject").as_deref(), Some("a folded"));
        assert_eq!(header_value(MSG, "message-id").as_deref(), Some("<1@x>"));
        assert_eq!(header_value(MSG, "X-Missing"), None);
        assert_eq!(return_path(b"Return-Path: <>\n\nx"), Some(String::new()));
        assert_eq!(return_path(b"Subject: x\n\nReturn-Path: <a@b>\n"), None);
    }

    #[test]
    fn header_hash_ignores_line_endings_and_body() {
        let lf = header_hash(b"Subject: a\nFrom: b\n\nbody one\n");
        assert_eq!(lf.len(), 32);
        assert_eq!(
            lf,
            header_hash(b"Subject: a\r\nFrom: b\r\n\r\nother body\r\n")
        );
        assert_ne!(lf, header_hash(b"Subject: b\nFrom: b\n\nbody one\n"));
    }

    #[test]
    fn received_header_is_prepended_and_folded() {
        let trace = TraceInfo {
            server: "pop.example.com",
            hostname: "mx",
            protocol: "POP3S",
            account: "isp",
            user: "jaco",
        };
        let out = with_received(b"Subject: x\n\nbody", &trace, chrono::Local::now());
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("Received: from pop.example.com by mx with POP3S"));
        assert!(text.ends_with("\nSubject: x\n\nbody"));
        assert_eq!(
            text.lines()
                .take_while(|l| !l.starts_with("Subject"))
                .count(),
            3
        );
    }
}
