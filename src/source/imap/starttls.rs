//! The plain-text part of an IMAP STARTTLS connection (RFC 3501 section
//! 6.2.1, RFC 2595 section 3.1), done by hand so that every rule is ours
//! to enforce:
//!
//! - a `PREAUTH` greeting is refused: the session would be authenticated
//!   without TLS ever starting;
//! - a server that does not offer STARTTLS, or refuses it, gets no
//!   credentials;
//! - untagged responses before the tagged answer are read and thrown
//!   away: nothing learned before TLS is trusted, and `CAPABILITY` is
//!   asked again afterwards;
//! - bytes that arrive after the tagged `OK` and before the handshake are
//!   an error (they could only be an attacker's injected responses).

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::codec;
use crate::error::{Error, Result};

/// At most this many untagged lines are accepted while waiting for one
/// tagged answer before TLS.
const MAX_UNTAGGED: usize = 1000;

/// Reads the greeting, checks for STARTTLS and sends it. On success the
/// stream is returned, ready for the TLS handshake.
pub fn negotiate<S: Read + Write>(stream: S) -> Result<S> {
    let mut reader = BufReader::new(stream);
    let greeting = read_line(&mut reader)?;
    let caps = match status_word(&greeting) {
        ("*", "OK") => greeting_capabilities(&greeting),
        ("*", "PREAUTH") => {
            return Err(Error::Tls(
                "server greeted with PREAUTH on a plain connection, so STARTTLS is impossible; refusing (tls = \"starttls\")".into(),
            ))
        }
        ("*", "BYE") => return Err(Error::Server(format!("greeting: {greeting}"))),
        _ => {
            return Err(Error::Protocol(format!(
                "expected an IMAP greeting, got {:?}",
                shorten(&greeting)
            )))
        }
    };
    let caps = match caps {
        Some(caps) => caps,
        None => {
            send(&mut reader, "s1 CAPABILITY")?;
            let mut caps = Vec::new();
            let status = read_tagged(&mut reader, "s1", |line| {
                if let Some(rest) = strip_prefix_ci(line, "* CAPABILITY ") {
                    caps.extend(rest.split_whitespace().map(|w| w.to_ascii_uppercase()));
                }
            })?;
            if status != "OK" {
                caps.clear();
            }
            caps
        }
    };
    if !caps.iter().any(|c| c == "STARTTLS") {
        return Err(Error::Tls(
            "server does not offer STARTTLS; not sending credentials (tls = \"starttls\")".into(),
        ));
    }
    send(&mut reader, "s2 STARTTLS")?;
    match read_tagged(&mut reader, "s2", |_| {})?.as_str() {
        "OK" => {}
        other => {
            return Err(Error::Tls(format!(
                "server refused STARTTLS ({other}); not sending credentials"
            )))
        }
    }
    if !reader.buffer().is_empty() {
        return Err(Error::Tls(
            "server sent data after accepting STARTTLS and before the TLS handshake; refusing to continue (possible injection attack)".into(),
        ));
    }
    Ok(reader.into_inner())
}

fn read_line<R: BufRead>(reader: &mut R) -> Result<String> {
    codec::read_reply(reader).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => Error::Protocol(e.to_string()),
        _ => Error::net("IMAP session before TLS", e),
    })
}

fn send<S: Read + Write>(reader: &mut BufReader<S>, line: &str) -> Result<()> {
    let stream = reader.get_mut();
    stream
        .write_all(format!("{line}\r\n").as_bytes())
        .and_then(|_| stream.flush())
        .map_err(|e| Error::net("IMAP session before TLS", e))
}

/// Reads until the answer tagged `tag`, passing untagged lines to
/// `untagged`, and returns the status word (`OK`, `NO`, `BAD`).
fn read_tagged<R: BufRead>(
    reader: &mut R,
    tag: &str,
    mut untagged: impl FnMut(&str),
) -> Result<String> {
    for _ in 0..MAX_UNTAGGED {
        let line = read_line(reader)?;
        match status_word(&line) {
            ("*", _) => {
                log::debug!("ignoring before TLS: {}", shorten(&line));
                untagged(&line);
            }
            (t, status) if t == tag => return Ok(status.to_ascii_uppercase()),
            _ => {
                return Err(Error::Protocol(format!(
                    "unexpected line before TLS: {:?}",
                    shorten(&line)
                )))
            }
        }
    }
    Err(Error::Protocol(
        "too many untagged responses before TLS".into(),
    ))
}

/// The tag and the status word of a response line.
fn status_word(line: &str) -> (&str, &str) {
    let mut words = line.split(' ');
    let tag = words.next().unwrap_or("");
    let status = words.next().unwrap_or("");
    (tag, status)
}

/// Capabilities in a greeting's `[CAPABILITY ...]` code, upper-cased.
fn greeting_capabilities(greeting: &str) -> Option<Vec<String>> {
    let start = greeting.find('[')?;
    let rest = strip_prefix_ci(&greeting[start + 1..], "CAPABILITY ")?;
    let end = rest.find(']')?;
    Some(
        rest[..end]
            .split_whitespace()
            .map(|w| w.to_ascii_uppercase())
            .collect(),
    )
}

/// `s` without `prefix` (compared byte-wise, ASCII case-insensitively),
/// if it starts with it. Byte-wise, so that server text with multibyte
/// characters cannot make a slice end inside one (a panic).
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix.as_bytes()) {
        return None;
    }
    // The prefix is ASCII and matched, so its end is a char boundary.
    s.get(prefix.len()..)
}

fn shorten(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    use crate::codec::Script;

    fn run(server: &str) -> Result<String> {
        negotiate(Script::new(server)).map(|s| String::from_utf8(s.written).unwrap())
    }

    #[test]
    fn asks_capability_then_starttls() {
        let w = run(
            "* OK hi\r\n* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\ns1 OK\r\ns2 OK go\r\n",
        )
        .unwrap();
        assert_eq!(w, "s1 CAPABILITY\r\ns2 STARTTLS\r\n");
    }

    #[test]
    fn greeting_capabilities_save_a_round_trip() {
        let w = run("* OK [CAPABILITY IMAP4rev1 starttls] hi\r\ns2 OK go\r\n").unwrap();
        assert_eq!(w, "s2 STARTTLS\r\n");
    }

    #[test]
    fn stripped_starttls_gets_no_credentials() {
        let e = run("* OK hi\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\ns1 OK\r\n").unwrap_err();
        assert!(matches!(e, Error::Tls(_)), "{e}");
        assert!(e.to_string().contains("does not offer STARTTLS"), "{e}");
        let e = run("* OK hi\r\ns1 BAD what\r\n").unwrap_err();
        assert!(matches!(e, Error::Tls(_)), "{e}");
    }

    #[test]
    fn refusal_and_preauth_are_errors() {
        let e = run("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\ns2 NO not now\r\n").unwrap_err();
        assert!(e.to_string().contains("refused STARTTLS"), "{e}");
        let e = run("* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome\r\n").unwrap_err();
        assert!(matches!(e, Error::Tls(_)), "{e}");
        assert!(e.to_string().contains("PREAUTH"), "{e}");
        let e = run("* BYE busy\r\n").unwrap_err();
        assert!(matches!(e, Error::Server(_)), "{e}");
        let e = run("+OK POP3\r\n").unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
    }

    #[test]
    fn injected_bytes_after_ok_are_refused() {
        let e = run("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\ns2 OK go\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n")
            .unwrap_err();
        assert!(matches!(e, Error::Tls(_)), "{e}");
        assert!(e.to_string().contains("after accepting STARTTLS"), "{e}");
    }

    #[test]
    fn untagged_responses_before_the_ok_are_ignored() {
        let w = run("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n* OK [ALERT] x\r\ns2 OK go\r\n")
            .unwrap();
        assert_eq!(w, "s2 STARTTLS\r\n");
    }
}
