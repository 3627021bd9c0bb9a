//! `--shard K/N`: splitting the accounts among N hosts (or N indexes of a
//! Kubernetes Indexed Job) with no coordination between them.
//!
//! An account belongs to shard `hash(name) mod N + 1`, where `hash` is
//! the first 8 bytes of the SHA-256 of the account's name (its UTF-8
//! bytes), read as a big-endian unsigned 64-bit integer. It depends on
//! the name alone: not on the order of the accounts, on the other
//! accounts, on where they were loaded from, or on the platform, so every
//! host computes the same split from the same list and nothing needs to
//! be shared but the config.
//!
//! Each shard keeps its own `state.db`. What happens when N changes (an
//! account moves to a shard whose state has not seen it) is the job of
//! `crate::store::shards`, which records the shard each run used.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// One shard of N, 1-based: `--shard 2/4` is `Shard { index: 2, count: 4 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Which shard, `1..=count`.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

impl Shard {
    /// The whole set: what a run without `--shard` takes.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether the account named `name` belongs to this shard.
    pub fn contains(&self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N` with `1 <= K <= N`.
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("{s:?}: expected K/N with 1 <= K <= N, e.g. 1/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The stable hash of an account name: the first 8 bytes of its SHA-256,
/// big-endian.
pub fn account_hash(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The shard (1-based) of `count` that the account named `name` belongs to.
pub fn shard_of(name: &str, count: u32) -> u32 {
    (account_hash(name) % u64::from(count.max(1))) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_the_documented_one() {
        // SHA-256("alice") = 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90
        assert_eq!(account_hash("alice"), 0x2bd8_06c9_7f0e_00af);
        // SHA-256("") = e3b0c44298fc1c149afbf4c8996fb924...
        assert_eq!(account_hash(""), 0xe3b0_c442_98fc_1c14);
        assert_eq!(shard_of("alice", 1), 1);
        assert_eq!(
            shard_of("alice", 2),
            (0x2bd8_06c9_7f0e_00afu64 % 2) as u32 + 1
        );
        assert_eq!(
            shard_of("alice", 7),
            (0x2bd8_06c9_7f0e_00afu64 % 7) as u32 + 1
        );
    }

    #[test]
    fn fixed_assignments() {
        // Pinned: a change here moves accounts between shards on upgrade.
        let got: Vec<u32> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|n| shard_of(n, 4))
            .collect();
        assert_eq!(got, PINNED_4);
    }

    // As computed independently (Python's hashlib).
    const PINNED_4: [u32; 5] = [4, 3, 3, 4, 4];

    #[test]
    fn every_account_is_in_exactly_one_shard() {
        for n in 1..=9 {
            for i in 0..200 {
                let name = format!("acct{i}");
                let holders = (1..=n)
                    .filter(|&k| Shard { index: k, count: n }.contains(&name))
                    .count();
                assert_eq!(holders, 1, "{name} with N={n}");
            }
        }
    }

    #[test]
    fn parses_k_of_n() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("1/1".parse::<Shard>(), Ok(Shard::ALL));
        for bad in ["0/4", "5/4", "1/0", "x/2", "2", "", "1/2/3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 3, count: 8 }.to_string(), "3/8");
    }
}
