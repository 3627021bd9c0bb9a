//! Retention with `keep = true`: which messages already delivered are
//! deleted from the server all the same (`delete_after`, getmail's
//! option of that name; `delete_bigger_than`, to keep a mailbox under
//! quota). The decision is a pure function of what the state database
//! recorded when the delivery was committed (its time and size): a
//! message the state does not record as delivered is never due.

use std::time::Duration;

use crate::store::Quota;

/// An account's retention settings (both off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete a kept message this long after mailretr delivered it.
    pub delete_after: Option<Duration>,
    /// Delete a kept message bigger than this (bytes) once delivered.
    pub delete_bigger_than: Option<u64>,
}

/// What the state recorded of a delivered message: when the delivery was
/// committed (Unix time) and the size the server gave then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Unix time of the commit that recorded it as delivered.
    pub at: i64,
    /// Its size as the server listed it.
    pub size: u64,
}

impl Retention {
    /// Whether either setting is given.
    pub fn is_set(&self) -> bool {
        self.delete_after.is_some() || self.delete_bigger_than.is_some()
    }

    /// Whether a message recorded as `delivered` is due for deletion at
    /// `now` (Unix time). `None` (not recorded as delivered) is never due.
    pub fn due(&self, delivered: Option<Delivered>, now: i64) -> bool {
        let Some(d) = delivered else {
            return false;
        };
        let old_enough = self.delete_after.is_some_and(|after| {
            let after = i64::try_from(after.as_secs()).unwrap_or(i64::MAX);
            now.saturating_sub(d.at) >= after
        });
        let too_big = self.delete_bigger_than.is_some_and(|max| d.size > max);
        old_enough || too_big
    }
}

/// Above this usage (percent of a quota resource's limit) a run warns.
pub const QUOTA_WARN_PERCENT: u64 = 90;

/// The warning for a quota above `QUOTA_WARN_PERCENT`, if it is.
pub fn quota_warning(quota: &Quota) -> Option<String> {
    let percent = quota.percent().filter(|p| *p > QUOTA_WARN_PERCENT)?;
    let mut what = Vec::new();
    if let Some((used, limit)) = quota.storage {
        what.push(format!("{used} of {limit} KiB"));
    }
    if let Some((used, limit)) = quota.messages {
        what.push(format!("{used} of {limit} messages"));
    }
    Some(format!(
        "the server's quota{} is {percent}% full ({}); mail may soon be refused",
        match quota.root.as_str() {
            "" => String::new(),
            root => format!(" \"{root}\""),
        },
        what.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_warns_only_above_90_percent() {
        let q = |used| Quota {
            root: "User quota".into(),
            storage: Some((used, 1000)),
            messages: None,
        };
        assert_eq!(quota_warning(&q(900)), None);
        let line = quota_warning(&q(950)).unwrap();
        assert!(
            line.contains("\"User quota\" is 95% full (950 of 1000 KiB)"),
            "{line}"
        );
        assert_eq!(quota_warning(&Quota::default()), None);
    }

    const DAY: i64 = 86_400;

    fn after(days: u64) -> Retention {
        Retention {
            delete_after: Some(Duration::from_secs(days * DAY as u64)),
            delete_bigger_than: None,
        }
    }

    #[test]
    fn old_enough_is_due_and_younger_is_not() {
        let r = after(14);
        let now = 100 * DAY;
        let at = |days_ago: i64| {
            Some(Delivered {
                at: now - days_ago * DAY,
                size: 10,
            })
        };
        assert!(r.due(at(15), now));
        assert!(r.due(at(14), now));
        assert!(!r.due(at(13), now));
        assert!(!r.due(at(1), now));
        // A clock that went backwards deletes nothing early.
        assert!(!r.due(at(-3), now));
    }

    #[test]
    fn never_due_without_a_delivery_record() {
        let r = Retention {
            delete_after: Some(Duration::ZERO),
            delete_bigger_than: Some(0),
        };
        assert!(!r.due(None, 1_000));
        assert!(r.due(Some(Delivered { at: 1_000, size: 1 }), 1_000));
    }

    #[test]
    fn bigger_than_is_due_at_once_and_only_strictly_bigger() {
        let r = Retention {
            delete_after: None,
            delete_bigger_than: Some(20_000_000),
        };
        let d = |size| Some(Delivered { at: 1_000, size });
        assert!(r.due(d(20_000_001), 1_000));
        assert!(!r.due(d(20_000_000), 1_000));
        assert!(!r.due(d(5), i64::MAX));
        assert!(!Retention::default().due(d(u64::MAX), i64::MAX));
        assert!(!Retention::default().is_set());
        assert!(r.is_set());
    }
}
