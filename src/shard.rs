//! `--shard K/N`: splitting the accounts among N hosts (or N indexes of a
//! Kubernetes Indexed Job) with no coordination between them.
//!
//! An account belongs to shard `jump(key, N) + 1`, where `key` is the
//! first 8 bytes of the SHA-256 of the account's name (its UTF-8 bytes),
//! read as a big-endian unsigned 64-bit integer, and `jump` is Lamping
//! and Veach's jump consistent hash ("A Fast, Minimal Memory, Consistent
//! Hash Algorithm", 2014; the short function below). It depends on the
//! name alone: not on the order of the accounts, on the other accounts,
//! on where they were loaded from, or on the platform, so every host
//! computes the same split from the same list and nothing needs to be
//! shared but the config. Unlike `key mod N`, going from N to N+1 shards
//! moves only the accounts the new shard takes (about 1/(N+1) of them,
//! where `mod` would move N/(N+1)), and from N+1 back to N only the last
//! shard's: fewer accounts change hands, so fewer need `--adopt`.
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
    jump_consistent_hash(account_hash(name), count.max(1)) + 1
}

/// Lamping and Veach's jump consistent hash: the bucket (0-based) of
/// `buckets` for `key`, as in the paper's reference code (the same
/// 64-bit LCG step and the same double-precision division).
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
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
    }

    #[test]
    fn jump_hash_matches_an_independent_transcription() {
        // The paper's code transcribed in Python (arbitrary-precision
        // integers reduced mod 2^64, Python floats).
        let got: Vec<u32> = (1..=10).map(|n| jump_consistent_hash(1, n)).collect();
        assert_eq!(got, [0, 0, 0, 0, 0, 0, 6, 6, 6, 6]);
        let got: Vec<u32> = (1..=10)
            .map(|n| jump_consistent_hash(0xdead_beef_cafe_f00d, n))
            .collect();
        assert_eq!(got, [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn growing_by_one_shard_moves_only_what_the_new_shard_takes() {
        let names: Vec<String> = (0..4000).map(|i| format!("user{i}@example.org")).collect();
        let moved = names
            .iter()
            .filter(|n| shard_of(n, 4) != shard_of(n, 5))
            .inspect(|n| assert_eq!(shard_of(n, 5), 5, "{n} moved, but not to the new shard"))
            .count();
        // About 1/5 of them.
        assert!((600..1000).contains(&moved), "{moved}");
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

    // As computed independently (Python: hashlib and the transcription
    // above).
    const PINNED_4: [u32; 5] = [2, 2, 2, 4, 4];

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
