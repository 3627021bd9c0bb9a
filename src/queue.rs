//! What `mailretr queue list|show` print: the spool as a table that fits
//! a terminal, as stable JSON for scripts, and one entry in full with its
//! history. Pure formatting over `crate::store::spool` types; the commands
//! themselves are wired in the binary.

use chrono::{Local, TimeZone};
use serde_json::json;

use crate::store::spool::{SpoolEntry, SpoolSummary};

/// A compact age or wait: `45s`, `12m`, `3h`, `2d`.
pub fn short_duration(secs: i64) -> String {
    let s = secs.unsigned_abs();
    let text = if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else if s < 2 * 86400 {
        format!("{}h", s / 3600)
    } else {
        format!("{}d", s / 86400)
    };
    if secs < 0 {
        format!("-{text}")
    } else {
        text
    }
}

fn sender_text(sender: &Option<String>) -> String {
    match sender.as_deref() {
        None => "?".into(),
        Some("") => "<>".into(),
        Some(s) => s.into(),
    }
}

fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// `in` for mail a fetch spooled, `out` for mail `sendmail` queued.
pub fn direction(e: &SpoolSummary) -> &'static str {
    if e.is_outgoing() {
        "out"
    } else {
        "in"
    }
}

fn account_text(e: &SpoolSummary) -> &str {
    if e.is_outgoing() {
        "-"
    } else {
        &e.account
    }
}

/// The table `queue list` (and `mailq`) prints; `now` is the current Unix time.
pub fn list_text(entries: &[SpoolSummary], now: i64) -> String {
    if entries.is_empty() {
        return "The spool is empty.\n".into();
    }
    let mut out = format!(
        "{:>5} {:<3}  {:<12} {:<10} {:<24} {:<24} {:>8} {:>5} {:>4} {:>6}  {}\n",
        "ID",
        "DIR",
        "ACCOUNT",
        "DEST",
        "SENDER",
        "RECIPIENTS",
        "SIZE",
        "AGE",
        "TRY",
        "NEXT",
        "LAST ERROR"
    );
    for e in entries {
        let next = if e.expired {
            "expired".to_string()
        } else if e.next_attempt <= now {
            "due".to_string()
        } else {
            short_duration(e.next_attempt - now)
        };
        out.push_str(&format!(
            "{:>5} {:<3}  {:<12} {:<10} {:<24} {:<24} {:>8} {:>5} {:>4} {:>6}  {}\n",
            e.id,
            direction(e),
            clip(account_text(e), 12),
            clip(&e.destination, 10),
            clip(&sender_text(&e.sender), 24),
            clip(&e.recipients.join(","), 24),
            bytesize::ByteSize(e.size).to_string(),
            short_duration(now - e.created_at),
            e.attempts,
            next,
            clip(e.last_error.as_deref().unwrap_or(""), 60),
        ));
    }
    out
}

/// The stable JSON shape of one entry (documented in mailretr(1)).
pub fn entry_json(e: &SpoolSummary) -> serde_json::Value {
    json!({
        "id": e.id,
        "direction": direction(e),
        "account": (!e.is_outgoing()).then_some(&e.account),
        "folder": e.folder,
        "uid": e.uid,
        "destination": e.destination,
        "sender": e.sender,
        "recipients": e.recipients,
        "message_id": e.message_id,
        "size": e.size,
        "created_at": e.created_at,
        "attempts": e.attempts,
        "next_attempt": e.next_attempt,
        "last_error": e.last_error,
        "expired": e.expired,
    })
}

/// `queue list --json`: an array of entries.
pub fn list_json(entries: &[SpoolSummary]) -> String {
    let array: Vec<_> = entries.iter().map(entry_json).collect();
    serde_json::to_string_pretty(&array).expect("JSON values serialise") + "\n"
}

fn when(t: i64) -> String {
    Local
        .timestamp_opt(t, 0)
        .single()
        .map(|d| d.format("%Y-%m-%d %H:%M:%S %z").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// `queue show ID`: the entry, its history, then the message.
pub fn show_text(entry: &SpoolEntry, history: &[(i64, String)]) -> Vec<u8> {
    let e = &entry.summary;
    let mut out = format!(
        "ID:          {}\nDirection:   {}\nAccount:     {}\nFolder:      {}\nUID:         {}\nDestination: {}\nSender:      {}\nRecipients:  {}\nMessage-ID:  {}\nSize:        {} bytes\nSpooled:     {}\nAttempts:    {}\nNext try:    {}\nLast error:  {}\n\nHistory:\n",
        e.id,
        if e.is_outgoing() { "out (queued by mailretr sendmail)" } else { "in (fetched)" },
        account_text(e),
        e.folder,
        e.uid.as_deref().unwrap_or("-"),
        e.destination,
        sender_text(&e.sender),
        e.recipients.join(", "),
        e.message_id.as_deref().unwrap_or("-"),
        e.size,
        when(e.created_at),
        e.attempts,
        if e.expired { "never (expired; flush it by id or delete it)".to_string() } else { when(e.next_attempt) },
        e.last_error.as_deref().unwrap_or("-"),
    )
    .into_bytes();
    for (at, event) in history {
        out.extend_from_slice(format!("  {}  {event}\n", when(*at)).as_bytes());
    }
    out.extend_from_slice(b"\nMessage:\n");
    out.extend_from_slice(&entry.message);
    if !entry.message.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> SpoolSummary {
        SpoolSummary {
            id: 7,
            account: "isp".into(),
            folder: "INBOX".into(),
            mailbox: Vec::new(),
            flags: String::new(),
            uid: Some("u1".into()),
            destination: "relay".into(),
            sender: Some(String::new()),
            recipients: vec!["jaco@example.org".into()],
            message_id: Some("<m@x>".into()),
            size: 4_000_000,
            created_at: 1000,
            attempts: 3,
            next_attempt: 1000 + 3600,
            last_error: Some("451 4.3.0 try later".into()),
            expired: false,
        }
    }

    #[test]
    fn table_fits_and_says_what_matters() {
        let text = list_text(&[summary()], 1000 + 600);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("<>"), "{text}");
        assert!(lines[1].contains("10m"), "age: {text}");
        assert!(lines[1].contains("50m"), "next: {text}");
        assert!(lines[1].contains("451 4.3.0"), "{text}");
        assert!(lines[1].chars().count() < 200);
        assert_eq!(list_text(&[], 0), "The spool is empty.\n");
    }

    #[test]
    fn json_shape_is_stable() {
        let v: serde_json::Value = serde_json::from_str(&list_json(&[summary()])).unwrap();
        let e = &v[0];
        for key in [
            "id",
            "direction",
            "account",
            "folder",
            "uid",
            "destination",
            "sender",
            "recipients",
            "message_id",
            "size",
            "created_at",
            "attempts",
            "next_attempt",
            "last_error",
            "expired",
        ] {
            assert!(e.get(key).is_some(), "{key}");
        }
        assert_eq!(e["sender"], "");
        assert_eq!(e["size"], 4_000_000);
        assert_eq!(e["direction"], "in");
    }

    #[test]
    fn outgoing_entries_say_so() {
        let out = SpoolSummary {
            account: String::new(),
            destination: "smarthost".into(),
            ..summary()
        };
        let text = list_text(&[summary(), out.clone()], 1600);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("DIR"), "{text}");
        assert!(lines[1].contains(" in "), "{text}");
        assert!(
            lines[2].contains(" out ") && lines[2].contains("smarthost"),
            "{text}"
        );
        let v: serde_json::Value = serde_json::from_str(&list_json(&[out])).unwrap();
        assert_eq!(v[0]["direction"], "out");
        assert!(v[0]["account"].is_null());
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(5), "5s");
        assert_eq!(short_duration(600), "10m");
        assert_eq!(short_duration(3 * 3600), "3h");
        assert_eq!(short_duration(5 * 86400), "5d");
        assert_eq!(short_duration(-30), "-30s");
    }
}
