//! What the state remembers of shards (`--shard K/N`, `crate::shard`),
//! so that an account that moved here from another shard when N changed
//! is recognised before it is fetched.
//!
//! Every run (`fetch` or `watch`, not `--check`) records the shard it
//! runs as (`1/1` without `--shard`) in `shard_specs`, a new row each
//! time the spec differs from the last one; after an account's run
//! succeeds, `shard_members` notes the spec it ran under. An account's
//! seen-state here is *current* when every spec this state used since
//! that run (or, if it never ran here, every spec it ever used) included
//! the account: then, with all shards switched to a new N together, no
//! other shard can have fetched it in the meantime. Otherwise the account
//! *arrived*: another state.db had it for a while, and what this one
//! remembers of it is missing or stale.

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{wrap, State};
use crate::error::Result;
use crate::shard::Shard;
use crate::source::RemoteMessage;

/// Where an account's seen-state stands in this state.db (see the module
/// header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It ran here, and no shard spec used since excluded it: its
    /// seen-state is current.
    Current,
    /// It never ran here, and every spec this state used included it: a
    /// new account (or a new state.db).
    New,
    /// This state ran under `spec`, which did not include the account:
    /// another shard had it then, so its seen-state here is missing or
    /// stale.
    Arrived {
        /// The spec that left it to another shard.
        spec: Shard,
    },
}

impl State {
    /// Records that a run uses `shard` and returns the id of its spec
    /// row (a new row if the last one differs).
    pub fn begin_shard(&mut self, shard: Shard, now: i64) -> Result<i64> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        let last: Option<(i64, u32, u32)> = tx
            .query_row(
                "SELECT id, shard_index, shard_count FROM shard_specs ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| wrap(&path, e))?;
        let id = match last {
            Some((id, index, count)) if index == shard.index && count == shard.count => id,
            _ => {
                tx.execute(
                    "INSERT INTO shard_specs (shard_index, shard_count, first_used)
                     VALUES (?1, ?2, ?3)",
                    params![shard.index, shard.count, now],
                )
                .map_err(|e| wrap(&path, e))?;
                tx.last_insert_rowid()
            }
        };
        tx.commit().map_err(|e| wrap(&path, e))?;
        Ok(id)
    }

    /// Where `account`'s seen-state stands (see `Placement`).
    pub fn placement(&self, account: &str) -> Result<Placement> {
        let since: Option<i64> = self
            .conn
            .query_row(
                "SELECT spec_id FROM shard_members WHERE account = ?1",
                params![account],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| wrap(&self.path, e))?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT shard_index, shard_count FROM shard_specs WHERE id > ?1 ORDER BY id",
            )
            .map_err(|e| wrap(&self.path, e))?;
        let specs = stmt
            .query_map(params![since.unwrap_or(0)], |r| {
                Ok(Shard {
                    index: r.get(0)?,
                    count: r.get(1)?,
                })
            })
            .map_err(|e| wrap(&self.path, e))?
            .collect::<rusqlite::Result<Vec<Shard>>>()
            .map_err(|e| wrap(&self.path, e))?;
        if let Some(spec) = specs.into_iter().find(|s| !s.contains(account)) {
            return Ok(Placement::Arrived { spec });
        }
        if since.is_some() {
            return Ok(Placement::Current);
        }
        // No member row: new here, unless the run log (from before shards
        // were recorded) says it ran here.
        let ran: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE account = ?1)
                     OR EXISTS (SELECT 1 FROM seen WHERE account = ?1)",
                params![account],
                |r| r.get(0),
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(if ran {
            Placement::Current
        } else {
            Placement::New
        })
    }

    /// Notes that `account` ran (successfully) here under the spec
    /// `spec_id`: its seen-state is current as of that spec.
    pub fn note_shard_member(&mut self, account: &str, spec_id: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO shard_members (account, spec_id) VALUES (?1, ?2)
                 ON CONFLICT (account) DO UPDATE SET spec_id = excluded.spec_id",
                params![account, spec_id],
            )
            .map_err(|e| wrap(&self.path, e))?;
        Ok(())
    }

    /// `--adopt`: marks every message in `messages` seen (without a
    /// Message-ID or header hash: none was downloaded), in one
    /// transaction.
    pub fn adopt_seen(&mut self, account: &str, messages: &[RemoteMessage]) -> Result<()> {
        let path = self.path.clone();
        let now = super::now_unix();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| wrap(&path, e))?;
        for message in messages {
            super::record_seen(&tx, account, message, None, None, now)
                .map_err(|e| wrap(&path, e))?;
        }
        tx.commit().map_err(|e| wrap(&path, e))?;
        Ok(())
    }

    /// Counters of an account's runs that only grow (since this state.db
    /// got them, schema 12), for the metrics file.
    pub fn counters(&self, account: &str) -> Result<Counters> {
        self.conn
            .query_row(
                "SELECT runs, failures, messages, bytes, spooled, last_success_at
                 FROM account_counters WHERE account = ?1",
                params![account],
                |r| {
                    Ok(Counters {
                        runs: r.get::<_, i64>(0)? as u64,
                        failures: r.get::<_, i64>(1)? as u64,
                        messages: r.get::<_, i64>(2)? as u64,
                        bytes: r.get::<_, i64>(3)? as u64,
                        spooled: r.get::<_, i64>(4)? as u64,
                        last_success_at: r.get(5)?,
                    })
                },
            )
            .optional()
            .map(Option::unwrap_or_default)
            .map_err(|e| wrap(&self.path, e))
    }

    /// Messages in an account's retry spool and their bytes.
    pub fn spool_size(&self, account: &str) -> Result<(u64, u64)> {
        self.conn
            .query_row(
                "SELECT count(*), coalesce(sum(size), 0) FROM spool WHERE account = ?1",
                params![account],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| wrap(&self.path, e))
    }
}

/// See `State::counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Runs recorded.
    pub runs: u64,
    /// Runs that ended in an error (exit code other than 0, 1, 13).
    pub failures: u64,
    /// Messages delivered.
    pub messages: u64,
    /// Bytes retrieved.
    pub bytes: u64,
    /// Messages put in the retry spool.
    pub spooled: u64,
    /// When the last run that ended without an error finished (unix
    /// seconds).
    pub last_success_at: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::msg;
    use crate::store::RunRecord;

    fn sh(index: u32, count: u32) -> Shard {
        Shard { index, count }
    }

    /// An account name in shard `index` of `count`.
    fn name_in(index: u32, count: u32) -> String {
        (0..10_000)
            .map(|i| format!("a{i}"))
            .find(|n| sh(index, count).contains(n))
            .unwrap()
    }

    #[test]
    fn unchanged_spec_keeps_accounts_current() {
        let mut state = State::in_memory().unwrap();
        let a = name_in(1, 2);
        let id = state.begin_shard(sh(1, 2), 100).unwrap();
        assert_eq!(state.placement(&a).unwrap(), Placement::New);
        state.note_shard_member(&a, id).unwrap();
        assert_eq!(state.begin_shard(sh(1, 2), 200).unwrap(), id);
        assert_eq!(state.placement(&a).unwrap(), Placement::Current);
    }

    #[test]
    fn an_account_that_was_elsewhere_has_arrived() {
        let mut state = State::in_memory().unwrap();
        // In 1/2 but 3/3: under N=3 the new shard had it.
        let a = (0..10_000)
            .map(|i| format!("a{i}"))
            .find(|n| sh(1, 2).contains(n) && sh(3, 3).contains(n))
            .unwrap();
        let first = state.begin_shard(sh(1, 2), 100).unwrap();
        state.note_shard_member(&a, first).unwrap();
        state.begin_shard(sh(1, 3), 200).unwrap();
        // Back to N=2: what this state remembers of `a` is stale.
        state.begin_shard(sh(1, 2), 300).unwrap();
        assert_eq!(
            state.placement(&a).unwrap(),
            Placement::Arrived { spec: sh(1, 3) }
        );
        // Never ran here, and an earlier spec left it to another shard.
        let b = (0..10_000)
            .map(|i| format!("b{i}"))
            .find(|n| sh(1, 2).contains(n) && sh(3, 3).contains(n))
            .unwrap();
        assert!(matches!(
            state.placement(&b).unwrap(),
            Placement::Arrived { .. }
        ));
    }

    #[test]
    fn runs_from_before_shards_count_as_current() {
        let mut state = State::in_memory().unwrap();
        state
            .record_run(&RunRecord {
                account: "old".into(),
                started_at: 1,
                duration: std::time::Duration::ZERO,
                exit_code: 0,
                messages: 2,
                bytes: 10,
                spooled: 0,
                error: None,
            })
            .unwrap();
        state.begin_shard(Shard::ALL, 100).unwrap();
        assert_eq!(state.placement("old").unwrap(), Placement::Current);
        assert_eq!(state.placement("other").unwrap(), Placement::New);
        let c = state.counters("old").unwrap();
        assert_eq!((c.runs, c.messages, c.last_success_at), (1, 2, Some(1)));
    }

    #[test]
    fn adopt_marks_seen() {
        let mut state = State::in_memory().unwrap();
        state.adopt_seen("a", &[msg("u1"), msg("u2")]).unwrap();
        let seen = state.seen_uids("a", "INBOX", 0).unwrap();
        assert_eq!(seen.len(), 2);
    }
}
