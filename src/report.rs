//! `[report]`: after each account's run, one row per account is upserted
//! into a table (MySQL/MariaDB, PostgreSQL or SQLite), created if
//! missing, for a panel that shows users how their mailbox fares. The
//! connection is opened on the first report of a run and shared (behind a
//! mutex) by the accounts of that run and of a `watch`; a failure is a
//! warning, never a failed fetch, and the next report tries again (after
//! a pause, so a database that is down costs one timeout, not one per
//! account). The table's SQL per database is in mailretr.toml(5).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::backends::sql::{self, Connection, Param};
use crate::config::{ReportConfig, SqlKind};
use crate::store::RunRecord;

/// How long after a failed connection no new one is tried.
const RETRY_PAUSE: Duration = Duration::from_secs(30);

/// The shared connection, for the `[report]` it was opened for.
struct Reporter {
    config: ReportConfig,
    connection: Option<(Connection, Vec<String>)>,
    failed_at: Option<Instant>,
}

static REPORTER: Mutex<Option<Reporter>> = Mutex::new(None);

/// The `CREATE TABLE` for a database (documented in mailretr.toml(5)).
pub fn create_table(kind: SqlKind, table: &str) -> String {
    let (text, int, big) = match kind {
        SqlKind::Mysql => ("VARCHAR(255)", "INT", "BIGINT"),
        SqlKind::Postgres => ("VARCHAR(255)", "BIGINT", "BIGINT"),
        SqlKind::Sqlite => ("TEXT", "INTEGER", "INTEGER"),
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (
    account   {text} NOT NULL PRIMARY KEY,
    started   {big} NOT NULL,
    finished  {big} NOT NULL,
    outcome   VARCHAR(16) NOT NULL,
    exit_code {int} NOT NULL,
    messages  {big} NOT NULL,
    bytes     {big} NOT NULL,
    spooled   {big} NOT NULL,
    error     TEXT
)"
    )
}

/// The upsert, with `?` placeholders in column order.
fn upsert(kind: SqlKind, table: &str) -> String {
    let columns = [
        "account",
        "started",
        "finished",
        "outcome",
        "exit_code",
        "messages",
        "bytes",
        "spooled",
        "error",
    ];
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        columns.join(", "),
        vec!["?"; columns.len()].join(", ")
    );
    let rest = &columns[1..];
    match kind {
        SqlKind::Mysql => format!(
            "{insert} ON DUPLICATE KEY UPDATE {}",
            rest.iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        SqlKind::Postgres | SqlKind::Sqlite => format!(
            "{insert} ON CONFLICT (account) DO UPDATE SET {}",
            rest.iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Writes one account's run to the report table, when the config has a
/// `[report]`. Returns a warning to show when that failed.
pub fn record(report: Option<&ReportConfig>, run: &RunRecord, finished: i64) -> Option<String> {
    let report = report?;
    let mut guard = REPORTER.lock().unwrap_or_else(|p| p.into_inner());
    if guard.as_ref().is_none_or(|r| r.config != *report) {
        *guard = Some(Reporter {
            config: report.clone(),
            connection: None,
            failed_at: None,
        });
    }
    let reporter = guard.as_mut().expect("just set");
    let shown = report.database.shown();
    if reporter.connection.is_none() {
        if reporter
            .failed_at
            .is_some_and(|at| at.elapsed() < RETRY_PAUSE)
        {
            return Some(format!(
                "report to {shown} skipped: the database was unreachable moments ago"
            ));
        }
        match open(report) {
            Ok(c) => reporter.connection = Some(c),
            Err(e) => {
                reporter.failed_at = Some(Instant::now());
                return Some(format!("cannot write the report to {shown}: {e}"));
            }
        }
    }
    let (conn, secrets) = reporter.connection.as_mut().expect("just opened");
    let params = [
        Param::Text(run.account.clone()),
        Param::Int(run.started_at),
        Param::Int(finished),
        Param::Text(crate::status::outcome(run).to_string()),
        Param::Int(run.exit_code.into()),
        Param::Int(run.messages as i64),
        Param::Int(run.bytes as i64),
        Param::Int(run.spooled as i64),
        match &run.error {
            Some(e) => Param::Text(e.lines().next().unwrap_or_default().to_string()),
            None => Param::Null,
        },
    ];
    let sql = upsert(conn.kind(), &report.table);
    match conn.execute(&sql, &params) {
        Ok(()) => None,
        Err(e) => {
            let e = sql::scrub(&e, secrets);
            // The connection may be broken: the next report reconnects.
            reporter.connection = None;
            Some(format!("cannot write the report to {shown}: {e}"))
        }
    }
}

fn open(report: &ReportConfig) -> Result<(Connection, Vec<String>), String> {
    let (mut conn, secrets) = Connection::open(&report.database)?;
    conn.batch(&create_table(conn.kind(), &report.table))
        .map_err(|e| sql::scrub(&e, &secrets))?;
    Ok((conn, secrets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_shows_the_tables_mailretr_creates() {
        let man = include_str!("../man/mailretr.toml.5");
        for kind in [SqlKind::Mysql, SqlKind::Sqlite] {
            let sql = create_table(kind, "mailretr_status");
            assert!(man.contains(&sql), "mailretr.toml(5) lacks:\n{sql}");
        }
        assert!(create_table(SqlKind::Postgres, "t").contains("exit_code BIGINT"));
    }

    #[test]
    fn the_upsert_matches_each_database() {
        assert!(upsert(SqlKind::Mysql, "t")
            .contains("ON DUPLICATE KEY UPDATE started = VALUES(started)"));
        assert!(upsert(SqlKind::Sqlite, "t")
            .contains("ON CONFLICT (account) DO UPDATE SET started = excluded.started"));
        let mut c = Connection::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        c.batch(&create_table(SqlKind::Sqlite, "mailretr_status"))
            .unwrap();
        let row = |code: i32, error: Option<&str>| RunRecord {
            account: "a".into(),
            started_at: 10,
            duration: Duration::from_secs(1),
            exit_code: code,
            messages: 2,
            bytes: 300,
            spooled: 0,
            error: error.map(String::from),
        };
        for run in [row(0, None), row(3, Some("authentication failed: no"))] {
            let p = [
                Param::Text(run.account.clone()),
                Param::Int(run.started_at),
                Param::Int(11),
                Param::Text(crate::status::outcome(&run).into()),
                Param::Int(run.exit_code.into()),
                Param::Int(2),
                Param::Int(300),
                Param::Int(0),
                run.error.clone().map(Param::Text).unwrap_or(Param::Null),
            ];
            c.execute(&upsert(SqlKind::Sqlite, "mailretr_status"), &p)
                .unwrap();
        }
        let rows = c
            .query("SELECT outcome, error FROM mailretr_status")
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0][0].1, crate::config::Field::Text("partial".into()));
    }
}
