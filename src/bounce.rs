//! Delivery status notifications (RFC 3464) for messages refused for good
//! or given up on by the spool: a `multipart/report;
//! report-type=delivery-status` message with a human-readable part, the
//! machine-readable status, and the original headers (RFC 6522
//! `text/rfc822-headers`). Bounces are sent with the null envelope sender
//! `<>` so they can never bounce in turn.
//!
//! When the failure is an SMTP (or LMTP) reply, each recipient's
//! `Status:` is the server's enhanced status code (RFC 3463, `5.7.1`) and
//! its `Diagnostic-Code:` is `smtp; ` and the reply as the server said it;
//! other causes (an MDA, an IMAP APPEND) are `X-mailretr; ` and the text.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Local, TimeZone};

use crate::message::header_block;
use crate::store::spool::GiveUp;

/// What a bounce says.
#[derive(Debug, Clone)]
pub struct Bounce<'a> {
    /// Our host name (`Reporting-MTA`).
    pub hostname: &'a str,
    /// `From:` of the bounce (`general.bounce_from`).
    pub from: &'a str,
    /// Who gets it: the envelope sender, or the postmaster for a message
    /// with the null sender.
    pub to: &'a str,
    /// The account that fetched the message.
    pub account: &'a str,
    /// The destination that would not take it.
    pub destination: &'a str,
    /// The recipients that were not reached.
    pub recipients: &'a [String],
    /// Why it was given up on.
    pub reason: &'a GiveUp,
    /// Unix time it arrived: entered the spool, or was fetched.
    pub arrived: i64,
    /// Whether it was in the spool (otherwise it was refused when it was
    /// first delivered, or before it was downloaded).
    pub in_spool: bool,
    /// The message as it was to be delivered.
    pub original: &'a [u8],
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86400 {
        format!("{} days", secs / 86400)
    } else if secs >= 3600 {
        format!("{} hours", secs / 3600)
    } else {
        format!("{} minutes", (secs / 60).max(1))
    }
}

/// One line, without control characters, for a header or status field.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An SMTP (or LMTP) reply quoted in a failure text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply<'a> {
    /// The reply from its code on, `550 5.1.1 <a@b>: no such user`.
    pub text: &'a str,
    /// The enhanced status code (RFC 3463), `5.1.1`, if the reply has one.
    pub status: Option<&'a str>,
}

/// Where an SMTP reply starts in `text` at or after `from`: a code
/// `[245]xx` at the start or after `: `, followed by a space, a hyphen
/// or the end.
fn reply_start(text: &str, from: usize) -> Option<usize> {
    let b = text.as_bytes();
    (from..b.len().saturating_sub(2)).find(|&i| {
        let starts = i == 0 || (i >= 2 && &b[i - 2..i] == b": ");
        starts
            && matches!(b[i], b'2' | b'4' | b'5')
            && b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
            && matches!(b.get(i + 3), None | Some(b' ') | Some(b'-'))
    })
}

/// The enhanced status code at the start of `rest` (after a reply code
/// of class `class`): `class.subject.detail`, 1 to 3 digits each.
fn enhanced_status(rest: &str, class: u8) -> Option<&str> {
    let word = rest
        .trim_start_matches(['-', ' '])
        .split_whitespace()
        .next()?;
    let mut parts = word.split('.');
    let ok = parts.next()?.as_bytes() == [class]
        && parts
            .by_ref()
            .take(2)
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
        && word.split('.').count() == 3;
    ok.then_some(word)
}

/// The SMTP reply in a failure text for `recipient`: the first one after
/// the recipient's `<address>` if the text names it, else the first one.
/// It runs to the end of the text, or to the `; ` before the next reply
/// when the text joins several failures.
pub fn smtp_reply<'a>(text: &'a str, recipient: &str) -> Option<SmtpReply<'a>> {
    let from = text.find(&format!("<{recipient}>")).unwrap_or(0);
    let start = reply_start(text, from).or_else(|| reply_start(text, 0))?;
    let end = match reply_start(text, start + 3) {
        Some(next) => text[start..next].rfind("; ").map_or(next, |k| start + k),
        None => text.len(),
    };
    let reply = text[start..end].trim_end();
    Some(SmtpReply {
        text: reply,
        status: enhanced_status(&reply[3..], reply.as_bytes()[0]),
    })
}

/// One recipient's `Status:` and `Diagnostic-Code:`: from the server's
/// reply where the failure is one, else `default` and `X-mailretr`.
fn status_of(error: &str, recipient: &str, default: &str, keep_default: bool) -> (String, String) {
    match smtp_reply(error, recipient) {
        Some(reply) => {
            let status = match reply.status {
                Some(s) if !keep_default => s.to_string(),
                _ => default.to_string(),
            };
            (status, format!("smtp; {}", one_line(reply.text)))
        }
        None => (
            default.to_string(),
            format!("X-mailretr; {}", one_line(error)),
        ),
    }
}

/// Builds the DSN (LF line endings), dated `now`.
pub fn build(b: &Bounce, now: DateTime<Local>) -> Vec<u8> {
    let boundary = format!("mailretr-dsn-{}-{}", now.timestamp(), std::process::id());
    let arrived = Local
        .timestamp_opt(b.arrived, 0)
        .single()
        .unwrap_or(now)
        .to_rfc2822();
    // A refusal's status is the server's; an expired message's is 4.4.7
    // (delivery time expired) whatever its last error said.
    let (error, default_status, expired, action_text) = match b.reason {
        GiveUp::Refused(e) => (
            e,
            "5.0.0",
            false,
            "was refused by its destination".to_string(),
        ),
        GiveUp::Expired {
            last_error,
            tried_for,
        } => (
            last_error,
            "4.4.7",
            true,
            format!(
                "could not be delivered for {} and was given up on",
                human_duration(*tried_for)
            ),
        ),
    };
    let diagnostic = one_line(error);
    let (since, error_label) = if b.in_spool {
        (format!("In the spool since: {arrived}\n"), "Last error")
    } else {
        (String::new(), "Error")
    };
    let recipients = if b.recipients.is_empty() {
        vec!["unknown".to_string()]
    } else {
        b.recipients.to_vec()
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "From: Mail Delivery System <{from}>\n\
         To: <{to}>\n\
         Subject: Undelivered Mail Returned to Sender\n\
         Date: {date}\n\
         Message-ID: <{ts}.{pid}.dsn@{host}>\n\
         Auto-Submitted: auto-replied\n\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\
         \tboundary=\"{boundary}\"\n\
         \n\
         This is a MIME-encapsulated message.\n\
         \n\
         --{boundary}\n\
         Content-Type: text/plain; charset=utf-8\n\
         \n\
         This is mailretr on {host}.\n\
         \n\
         {what} {action_text}.\n\
         Destination: {destination}\n\
         Recipients: {rcpts}\n\
         {since}\
         {error_label}: {diagnostic}\n\
         \n\
         The message's headers are attached.\n\
         \n\
         --{boundary}\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; {host}\n\
         Arrival-Date: {arrived}\n",
        from = one_line(b.from),
        to = one_line(b.to),
        date = now.to_rfc2822(),
        ts = now.timestamp(),
        pid = std::process::id(),
        host = one_line(b.hostname),
        // An outgoing message (`mailretr sendmail`) has no account.
        what = match b.account {
            "" => "A message you sent".to_string(),
            a => format!("A message fetched by account {}", one_line(a)),
        },
        destination = one_line(b.destination),
        rcpts = one_line(&recipients.join(", ")),
    );
    for rcpt in &recipients {
        let (status, code) = status_of(error, rcpt, default_status, expired);
        let _ = write!(
            out,
            "\nFinal-Recipient: rfc822; {rcpt}\n\
             Action: failed\n\
             Status: {status}\n\
             Diagnostic-Code: {code}\n\
             Last-Attempt-Date: {now}\n",
            rcpt = one_line(rcpt),
            now = now.to_rfc2822(),
        );
    }
    let _ = write!(out, "\n--{boundary}\nContent-Type: text/rfc822-headers\n\n");
    let mut bytes = out.into_bytes();
    let headers = header_block(b.original);
    bytes.extend_from_slice(headers);
    if !headers.ends_with(b"\n") {
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::header_value;

    #[test]
    fn dsn_has_the_three_parts_and_the_original_headers() {
        let rcpts = vec!["jaco@example.org".to_string()];
        let reason = GiveUp::Expired {
            last_error: "451 4.3.0 queue full".into(),
            tried_for: Duration::from_secs(5 * 86400),
        };
        let original = b"From: a@b\nSubject: hello\nMessage-ID: <x@y>\n\nsecret body\n";
        let dsn = build(
            &Bounce {
                hostname: "mx.example.org",
                from: "MAILER-DAEMON@example.org",
                to: "a@b",
                account: "isp",
                destination: "relay",
                recipients: &rcpts,
                reason: &reason,
                arrived: 1_700_000_000,
                in_spool: true,
                original,
            },
            Local::now(),
        );
        let text = String::from_utf8(dsn.clone()).unwrap();
        assert_eq!(header_value(&dsn, "To").as_deref(), Some("<a@b>"));
        assert!(header_value(&dsn, "Content-Type")
            .unwrap()
            .contains("report-type=delivery-status"));
        assert!(text.contains("Content-Type: message/delivery-status"));
        assert!(text.contains("Status: 4.4.7"));
        assert!(text.contains("Final-Recipient: rfc822; jaco@example.org"));
        assert!(text.contains("Diagnostic-Code: smtp; 451 4.3.0 queue full"));
        assert!(text.contains("In the spool since: "));
        assert!(text.contains("for 5 days"));
        assert!(text.contains("Content-Type: text/rfc822-headers\n\nFrom: a@b\nSubject: hello\n"));
        assert!(!text.contains("secret body"), "only headers go back");
        assert!(text.trim_end().ends_with("--"));
    }

    fn dsn(reason: &GiveUp, rcpts: &[String], in_spool: bool) -> String {
        let original = b"From: a@b\nSubject: hello\n\nbody\n";
        let dsn = build(
            &Bounce {
                hostname: "mx.example.org",
                from: "MAILER-DAEMON@example.org",
                to: "a@b",
                account: "isp",
                destination: "relay",
                recipients: rcpts,
                reason,
                arrived: 1_700_000_000,
                in_spool,
                original,
            },
            Local::now(),
        );
        String::from_utf8(dsn).unwrap()
    }

    /// The `Status:` and `Diagnostic-Code:` of each recipient, in order.
    fn statuses(text: &str) -> Vec<(String, String)> {
        let field = |l: &str, name: &str| l.strip_prefix(name).map(str::to_string);
        let status: Vec<String> = text.lines().filter_map(|l| field(l, "Status: ")).collect();
        let codes: Vec<String> = text
            .lines()
            .filter_map(|l| field(l, "Diagnostic-Code: "))
            .collect();
        status.into_iter().zip(codes).collect()
    }

    #[test]
    fn a_refusal_before_download_keeps_the_servers_status_and_reply() {
        let rcpts = vec!["jaco@example.org".to_string()];
        let reason = GiveUp::Refused(
            "relay: RCPT TO:<jaco@example.org>: 554 5.7.1 <jaco@example.org>: Relay access denied"
                .into(),
        );
        let text = dsn(&reason, &rcpts, false);
        assert!(!text.contains("spool"), "never in the spool: {text}");
        assert!(
            text.contains("\nError: relay: RCPT TO:<jaco@example.org>: 554 5.7.1"),
            "{text}"
        );
        assert_eq!(
            statuses(&text),
            [(
                "5.7.1".to_string(),
                "smtp; 554 5.7.1 <jaco@example.org>: Relay access denied".to_string()
            )]
        );
    }

    #[test]
    fn each_recipient_gets_its_own_reply_and_other_causes_stay_x_mailretr() {
        let rcpts = vec!["a@x".to_string(), "b@x".to_string(), "c@x".to_string()];
        let reason = GiveUp::Refused(
            "relay: RCPT TO:<a@x>: 550 5.1.1 no such user; relay: RCPT TO:<b@x>: 552 quota; \
             over; relay: RCPT TO:<c@x>: 554 5.7.1 Service unavailable; Client host blocked"
                .into(),
        );
        assert_eq!(
            statuses(&dsn(&reason, &rcpts, false)),
            [
                (
                    "5.1.1".to_string(),
                    "smtp; 550 5.1.1 no such user".to_string()
                ),
                ("5.0.0".to_string(), "smtp; 552 quota; over".to_string()),
                (
                    "5.7.1".to_string(),
                    "smtp; 554 5.7.1 Service unavailable; Client host blocked".to_string()
                ),
            ]
        );
        let mda = GiveUp::Refused("home: procmail exited with 67 (EX_NOUSER): no such user".into());
        assert_eq!(
            statuses(&dsn(&mda, &rcpts[..1], true)),
            [(
                "5.0.0".to_string(),
                "X-mailretr; home: procmail exited with 67 (EX_NOUSER): no such user".to_string()
            )]
        );
    }

    #[test]
    fn smtp_replies_are_found_only_where_a_reply_starts() {
        assert_eq!(
            smtp_reply("after DATA: 250 ok", "x"),
            Some(SmtpReply {
                text: "250 ok",
                status: None
            })
        );
        assert_eq!(
            smtp_reply("550-5.1.1 multi", "x").unwrap().status,
            Some("5.1.1")
        );
        // A class that disagrees with the code is no enhanced status.
        assert_eq!(smtp_reply("x: 550 4.1.1 odd", "x").unwrap().status, None);
        assert_eq!(smtp_reply("x: 550 5.1.1234 odd", "x").unwrap().status, None);
        assert_eq!(smtp_reply("<5501@x>: 5501 no", "5501@x"), None);
        assert_eq!(smtp_reply("mailbox 550 is full", "x"), None);
        assert_eq!(smtp_reply("", "x"), None);
        assert_eq!(smtp_reply("x: 55", "x"), None);
    }
}
