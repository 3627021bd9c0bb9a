//! Accounts from a database or a directory (`[[accounts_from]]`): each
//! backend is queried once per run (and per `watch` start or reload), its
//! rows turned into accounts by `config::account_from_row` (the same
//! validation as an `[[account]]` table) and merged with the accounts of
//! the files.
//!
//! What can go wrong, and what the run does about it:
//!
//! - a bad row (or a name that clashes with another account) is one
//!   config error naming the backend, the row and the column; that row
//!   is left out, the other accounts run, and the run exits 5 (a config
//!   error outranks "mail retrieved", so a mailbox that is never fetched
//!   does not hide behind exit 0);
//! - a backend that cannot be queried is one error (exit 2, like any
//!   network failure) and its accounts do not run, unless it has
//!   `cache = true` and an earlier good query left its rows in state.db:
//!   then those are used, with a warning.
//!
//! `sql` talks to MySQL/MariaDB, PostgreSQL and SQLite, `ldap` to a
//! directory; `report` writes results back through the same SQL client.

mod ldap;
pub(crate) mod sql;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{self, AccountsFrom, BackendKind, Config, RowField};
use crate::error::Error;
use crate::exit::ExitCode;
use crate::store::State;

/// What querying the backends gave besides the accounts added to the
/// config.
#[derive(Debug, Default)]
pub struct Loaded {
    /// One per bad row, name clash, or backend that could not be queried
    /// (and had no cache).
    pub errors: Vec<Error>,
    /// A backend that was down but whose cached rows were used.
    pub warnings: Vec<String>,
    /// Accounts added, per backend.
    pub added: usize,
}

impl Loaded {
    /// The exit code the backends' errors call for, if any: the most
    /// serious of them.
    pub fn exit_code(&self) -> Option<ExitCode> {
        self.errors
            .iter()
            .map(|e| e.exit_code())
            .reduce(ExitCode::worse)
    }

    /// The run's exit code: the accounts' merged code, unless a backend
    /// failed, whose failure then counts even when other accounts
    /// retrieved mail (the most serious failure wins).
    pub fn merged_with(&self, accounts: ExitCode) -> ExitCode {
        match self.exit_code() {
            None => accounts,
            Some(backend) => match accounts {
                ExitCode::Retrieved | ExitCode::NoMail | ExitCode::LimitReached => backend,
                failure => failure.worse(backend),
            },
        }
    }
}

/// Queries every `[[accounts_from]]` of `config` and adds the accounts
/// of its rows to `config.accounts`.
pub fn load_accounts(config: &mut Config) -> Loaded {
    let mut loaded = Loaded::default();
    let sources = config.accounts_from.clone();
    for source in &sources {
        let rows = match query(source) {
            Ok(rows) => {
                if source.cache {
                    if let Err(e) = cache_rows(config, source, &rows) {
                        loaded.warnings.push(format!(
                            "{}: cannot cache its rows in the state database: {e}",
                            source.label()
                        ));
                    }
                }
                rows
            }
            Err(message) => {
                let down = format!("{}: cannot read accounts: {message}", source.label());
                match source.cache.then(|| cached_rows(config, source)) {
                    Some(Some((rows, at))) => {
                        loaded.warnings.push(format!(
                            "{down}; using the {} rows it returned at {}",
                            rows.len(),
                            chrono::DateTime::from_timestamp(at, 0)
                                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                                .unwrap_or_else(|| at.to_string())
                        ));
                        rows
                    }
                    _ => {
                        loaded.errors.push(Error::Network {
                            context: source.label(),
                            source: std::io::Error::other(format!(
                                "cannot read accounts: {message}{}",
                                if source.cache {
                                    " (and no cached rows from an earlier run)"
                                } else {
                                    ""
                                }
                            )),
                        });
                        continue;
                    }
                }
            }
        };
        for (i, row) in rows.iter().enumerate() {
            match config::account_from_row(config, source, row, i + 1) {
                Ok(mut account) => {
                    if let Some(first) = config.accounts.iter().find(|a| a.name == account.name) {
                        loaded.errors.push(Error::Config(format!(
                            "{}: row {:?}: column name: duplicate account name (also {})",
                            source.label(),
                            account.name,
                            match config.backend_accounts.get(&first.name) {
                                Some(label) => format!("from {label}"),
                                None => "in the config file".to_string(),
                            }
                        )));
                        continue;
                    }
                    config::add_default_destination(
                        std::slice::from_mut(&mut account),
                        &mut config.destinations,
                    );
                    config
                        .backend_accounts
                        .insert(account.name.clone(), source.label());
                    config.accounts.push(account);
                    loaded.added += 1;
                }
                Err(e) => loaded.errors.push(e),
            }
        }
    }
    loaded
}

/// One backend's rows, each a list of fields named by account key.
fn query(source: &AccountsFrom) -> Result<Vec<Vec<RowField>>, String> {
    match &source.kind {
        BackendKind::Sql { database, query } => {
            let (mut conn, secrets) = sql::Connection::open(database)?;
            let rows = conn.query(query).map_err(|e| sql::scrub(&e, &secrets))?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|(column, value)| RowField {
                            key: column.clone(),
                            origin: format!("column {column}"),
                            value,
                        })
                        .collect()
                })
                .collect())
        }
        BackendKind::Ldap { .. } => ldap::search(&source.kind),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn cache_rows(
    config: &Config,
    source: &AccountsFrom,
    rows: &[Vec<RowField>],
) -> crate::error::Result<()> {
    let json = serde_json::to_string(rows)
        .map_err(|e| Error::Internal(format!("cannot encode backend rows: {e}")))?;
    let mut state = State::open(&config.general.state_dir)?;
    state.put_backend_rows(&source.cache_key(), &json, now())
}

fn cached_rows(config: &Config, source: &AccountsFrom) -> Option<(Vec<Vec<RowField>>, i64)> {
    let state = State::open(&config.general.state_dir).ok()?;
    let (json, at) = state.backend_rows(&source.cache_key()).ok()??;
    let rows: Vec<Vec<RowField>> = serde_json::from_str(&json).ok()?;
    Some((rows, at))
}
