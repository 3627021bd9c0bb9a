//! Delivery status notifications (RFC 3464) for messages the spool gives
//! up on: a `multipart/report; report-type=delivery-status` message with
//! a human-readable part, the machine-readable status, and the original
//! headers (RFC 6522 `text/rfc822-headers`). Bounces are sent with the
//! null envelope sender `<>` so they can never bounce in turn.

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
    /// Unix time it entered the spool.
    pub arrived: i64,
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

/// Builds the DSN (LF line endings), dated `now`.
pub fn build(b: &Bounce, now: DateTime<Local>) -> Vec<u8> {
    let boundary = format!("mailretr-dsn-{}-{}", now.timestamp(), std::process::id());
    let arrived = Local
        .timestamp_opt(b.arrived, 0)
        .single()
        .unwrap_or(now)
        .to_rfc2822();
    let (status, action_text, diagnostic) = match b.reason {
        GiveUp::Refused(e) => (
            "5.0.0",
            "was refused by its destination".to_string(),
            one_line(e),
        ),
        GiveUp::Expired {
            last_error,
            tried_for,
        } => (
            "4.4.7",
            format!(
                "could not be delivered for {} and was given up on",
                human_duration(*tried_for)
            ),
            one_line(last_error),
        ),
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
         In the spool since: {arrived}\n\
         Last error: {diagnostic}\n\
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
        let _ = write!(
            out,
            "\nFinal-Recipient: rfc822; {rcpt}\n\
             Action: failed\n\
             Status: {status}\n\
             Diagnostic-Code: X-mailretr; {diagnostic}\n\
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
        assert!(text.contains("Diagnostic-Code: X-mailretr; 451 4.3.0 queue full"));
        assert!(text.contains("for 5 days"));
        assert!(text.contains("Content-Type: text/rfc822-headers\n\nFrom: a@b\nSubject: hello\n"));
        assert!(!text.contains("secret body"), "only headers go back");
        assert!(text.trim_end().ends_with("--"));
    }
}
