//! Surviving a UIDVALIDITY change (RFC 3501 section 2.3.1.1): when the
//! server renumbers a folder, every UID recorded for it is meaningless.
//! Rather than fetching the whole folder again, the messages on the server
//! are matched against what was recorded of those delivered: the size and
//! the header hash, or the size and the `Message-ID` for records without a
//! hash. Each record matches at most one message, in UID order, so
//! duplicates pair up one to one.

use std::collections::{HashMap, VecDeque};

use crate::source::SeenFingerprint;

/// A message now on the server, as seen for re-matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its new UID.
    pub uid: u32,
    /// The size the server reports.
    pub size: u64,
    /// Its `Message-ID`, if it has one.
    pub message_id: Option<String>,
    /// `crate::message::header_hash` of its header.
    pub header_hash: String,
}

/// Pairs recorded messages with messages on the server: `(old UID, new UID)`.
pub fn rematch(recorded: &[SeenFingerprint], current: &[Candidate]) -> Vec<(u32, u32)> {
    let mut by_hash: HashMap<(u64, &str), VecDeque<u32>> = HashMap::new();
    let mut by_id: HashMap<(u64, &str), VecDeque<u32>> = HashMap::new();
    let mut recorded: Vec<&SeenFingerprint> = recorded.iter().collect();
    recorded.sort_by_key(|r| r.uid);
    for r in recorded {
        if let Some(h) = &r.header_hash {
            by_hash.entry((r.size, h)).or_default().push_back(r.uid);
        } else if let Some(id) = &r.message_id {
            by_id.entry((r.size, id)).or_default().push_back(r.uid);
        }
    }
    let mut current: Vec<&Candidate> = current.iter().collect();
    current.sort_by_key(|c| c.uid);
    let mut pairs = Vec::new();
    for c in current {
        let old = by_hash
            .get_mut(&(c.size, c.header_hash.as_str()))
            .and_then(VecDeque::pop_front)
            .or_else(|| {
                let id = c.message_id.as_deref()?;
                by_id.get_mut(&(c.size, id))?.pop_front()
            });
        if let Some(old) = old {
            pairs.push((old, c.uid));
        }
    }
    pairs
}

/// The sizes worth fetching headers for: only a message whose size some
/// record has can match.
pub fn interesting_sizes(recorded: &[SeenFingerprint]) -> std::collections::HashSet<u64> {
    recorded.iter().map(|r| r.size).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(uid: u32, size: u64, id: Option<&str>, hash: Option<&str>) -> SeenFingerprint {
        SeenFingerprint {
            uid,
            size,
            message_id: id.map(str::to_string),
            header_hash: hash.map(str::to_string),
        }
    }

    fn cand(uid: u32, size: u64, id: Option<&str>, hash: &str) -> Candidate {
        Candidate {
            uid,
            size,
            message_id: id.map(str::to_string),
            header_hash: hash.to_string(),
        }
    }

    #[test]
    fn matches_by_hash_then_message_id() {
        let recorded = vec![
            rec(10, 100, Some("<a>"), Some("h1")),
            rec(11, 200, Some("<b>"), None),
            rec(12, 300, None, Some("h3")),
            rec(13, 400, None, None),
        ];
        let current = vec![
            cand(1, 100, Some("<a>"), "h1"),
            cand(2, 200, Some("<b>"), "other"),
            cand(3, 300, None, "h3"),
            cand(4, 400, None, "h4"),
            cand(5, 500, Some("<new>"), "h5"),
        ];
        assert_eq!(
            rematch(&recorded, &current),
            vec![(10, 1), (11, 2), (12, 3)]
        );
    }

    #[test]
    fn size_must_agree_and_duplicates_pair_once() {
        let recorded = vec![
            rec(1, 100, Some("<a>"), Some("h")),
            rec(2, 100, Some("<a>"), Some("h")),
        ];
        let current = vec![
            cand(7, 100, Some("<a>"), "h"),
            cand(8, 101, Some("<a>"), "h"),
            cand(9, 100, Some("<a>"), "h"),
            cand(10, 100, Some("<a>"), "h"),
        ];
        assert_eq!(rematch(&recorded, &current), vec![(1, 7), (2, 9)]);
    }
}
