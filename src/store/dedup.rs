//! Duplicate suppression (`dedup = "30d"`): which normalised Message-IDs
//! each recipient of an account was delivered, and when.
//!
//! A row is written only by `State::commit`, in the transaction that
//! marks a delivery seen, and only for a message every destination took
//! at once (nothing owed to the spool): so a copy is suppressed only when
//! an earlier copy was delivered *and committed*. Rows are per account
//! (the window is an account's setting) and per envelope recipient (a
//! catch-all mailbox holds one copy per recipient, each of which is
//! wanted once).

use rusqlite::params;

use crate::error::Result;

use super::{wrap, State};

/// What `State::commit` records for a delivered message: its normalised
/// Message-ID and the recipients it was delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupKey {
    /// `normalise_message_id` of its `Message-ID`.
    pub message_id: String,
    /// The envelope recipients it was delivered to.
    pub recipients: Vec<String>,
}

/// A Message-ID as compared for duplicates: trimmed, without its angle
/// brackets, with the part after the last `@` (a domain, case-insensitive)
/// lowercased; the part before it is kept as it is (it may be
/// case-sensitive). `None` for a value that is empty once trimmed, which
/// is never suppressed.
pub fn normalise_message_id(value: &str) -> Option<String> {
    let v = value.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = v.strip_suffix('>').unwrap_or(v).trim();
    if v.is_empty() {
        return None;
    }
    Some(match v.rfind('@') {
        Some(at) => format!("{}@{}", &v[..at], v[at + 1..].to_ascii_lowercase()),
        None => v.to_string(),
    })
}

/// Records `key` for `account` inside `tx` (at `now`).
pub(crate) fn record_delivered(
    tx: &rusqlite::Transaction,
    account: &str,
    key: &DedupKey,
    now: i64,
) -> rusqlite::Result<()> {
    let mut s = tx.prepare_cached(
        "INSERT OR REPLACE INTO dedup (account, recipient, message_id, delivered_at)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for r in &key.recipients {
        s.execute(params![account, r, key.message_id, now])?;
    }
    Ok(())
}

impl State {
    /// Those of `recipients` that were delivered `message_id` (normalised)
    /// at or after `since`.
    pub fn delivered_before(
        &self,
        account: &str,
        message_id: &str,
        recipients: &[String],
        since: i64,
    ) -> Result<Vec<String>> {
        let mut had = Vec::new();
        let mut s = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM dedup WHERE account = ?1 AND recipient = ?2
                 AND message_id = ?3 AND delivered_at >= ?4",
            )
            .map_err(|e| wrap(&self.path, e))?;
        for r in recipients {
            if s.exists(params![account, r, message_id, since])
                .map_err(|e| wrap(&self.path, e))?
            {
                had.push(r.clone());
            }
        }
        Ok(had)
    }

    /// Forgets what `account` delivered before `before` (outside its
    /// window).
    pub fn prune_dedup(&mut self, account: &str, before: i64) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM dedup WHERE account = ?1 AND delivered_at < ?2",
                params![account, before],
            )
            .map(|_| ())
            .map_err(|e| wrap(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commit::{Disposition, Outcome, Owed};
    use crate::store::spool::RetryPolicy;
    use crate::store::tests::msg;

    #[test]
    fn message_ids_are_normalised() {
        assert_eq!(
            normalise_message_id("  <Abc.1@Example.COM> ").as_deref(),
            Some("Abc.1@example.com")
        );
        assert_eq!(
            normalise_message_id("Abc.1@example.com").as_deref(),
            Some("Abc.1@example.com")
        );
        assert_eq!(normalise_message_id("<a@b@C>").as_deref(), Some("a@b@c"));
        assert_eq!(normalise_message_id("no-at").as_deref(), Some("no-at"));
        assert_eq!(normalise_message_id(" <> "), None);
        assert_eq!(normalise_message_id(""), None);
        // The local part keeps its case.
        assert_ne!(normalise_message_id("<A@x>"), normalise_message_id("<a@x>"));
    }

    fn delivered(uid: &str, owed: bool) -> Outcome {
        Outcome {
            message: msg(uid),
            message_id: Some("<m@X>".into()),
            header_hash: None,
            disposition: Disposition::Delivered,
            owed: if owed {
                vec![Owed {
                    destination: "relay".into(),
                    recipients: vec!["a@x".into()],
                    error: "451".into(),
                }]
            } else {
                Vec::new()
            },
            sender: None,
            bytes: b"Subject: s\n\nb\n".to_vec(),
            dedup: Some(DedupKey {
                message_id: "m@x".into(),
                recipients: vec!["a@x".into(), "b@x".into()],
            }),
        }
    }

    #[test]
    fn only_committed_complete_deliveries_count_within_the_window() {
        let mut s = State::in_memory().unwrap();
        let everyone = vec!["a@x".to_string(), "b@x".into(), "c@x".into()];
        // Spooled for some destination: not recorded.
        s.commit(
            "acct",
            &[delivered("1", true)],
            "c",
            100,
            &RetryPolicy::default(),
        )
        .unwrap();
        assert!(s
            .delivered_before("acct", "m@x", &everyone, 0)
            .unwrap()
            .is_empty());
        s.commit(
            "acct",
            &[delivered("2", false)],
            "c",
            200,
            &RetryPolicy::default(),
        )
        .unwrap();
        assert_eq!(
            s.delivered_before("acct", "m@x", &everyone, 150).unwrap(),
            vec!["a@x".to_string(), "b@x".into()]
        );
        // Another account, or outside the window: not a duplicate.
        assert!(s
            .delivered_before("other", "m@x", &everyone, 0)
            .unwrap()
            .is_empty());
        assert!(s
            .delivered_before("acct", "m@x", &everyone, 201)
            .unwrap()
            .is_empty());
        s.prune_dedup("acct", 201).unwrap();
        assert!(s
            .delivered_before("acct", "m@x", &everyone, 0)
            .unwrap()
            .is_empty());
    }
}
