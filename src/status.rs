//! `mailretr status`: per account, the last run (start, duration,
//! outcome, messages and bytes), the messages waiting in the retry spool,
//! and the last error with its time, read from the run log in the state
//! database. The `--json` form is what a web panel or a monitoring check
//! reads instead of parsing stderr; its shape is documented in
//! mailretr(1) and is stable (new keys may be added, none removed or
//! changed in meaning while `version` is 1).

use serde_json::{json, Value};

use crate::error::Result;
use crate::store::{Quota, RunRecord, RunTotals, State};

/// The version of the JSON shape.
pub const JSON_VERSION: u32 = 1;

/// What is known about one account.
#[derive(Debug, Clone)]
pub struct AccountStatus {
    /// The account's name.
    pub account: String,
    /// Whether the config names it (otherwise it is only in the run log,
    /// e.g. an ad-hoc URL fetch or an account since removed).
    pub configured: bool,
    /// The most recent run.
    pub last_run: Option<RunRecord>,
    /// The most recent run that ended in an error.
    pub last_error: Option<RunRecord>,
    /// Messages in the retry spool.
    pub spooled: u64,
    /// Totals over the runs the log keeps.
    pub recent: RunTotals,
    /// The IMAP quota the last run read (servers offering QUOTA), and
    /// when.
    pub quota: Option<(Quota, i64)>,
    /// A POP3 `[LOGIN-DELAY]` still in force: the server is not connected
    /// to before this time.
    pub login_delay: Option<LoginDelay>,
}

/// A POP3 `[LOGIN-DELAY]` in force (see `State::set_login_delay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginDelay {
    /// The server.
    pub host: String,
    /// Unix time before which it is not connected to.
    pub not_before: i64,
    /// What the server said.
    pub reason: String,
}

/// The one-word outcome of a run, from its exit code: `retrieved`,
/// `no_mail`, `limit_reached`, `partial` (an error after some messages
/// were delivered or spooled) or `failed`.
pub fn outcome(run: &RunRecord) -> &'static str {
    match run.exit_code {
        0 => "retrieved",
        1 => "no_mail",
        13 => "limit_reached",
        _ if run.messages + run.spooled > 0 => "partial",
        _ => "failed",
    }
}

/// Gathers the status of the `configured` accounts (in that order), then
/// of any other account found in the run log.
pub fn collect(state: &State, configured: &[String]) -> Result<Vec<AccountStatus>> {
    let mut names: Vec<(String, bool)> = configured.iter().map(|n| (n.clone(), true)).collect();
    for name in state.run_accounts()? {
        if !configured.contains(&name) {
            names.push((name, false));
        }
    }
    let now = crate::retry::now();
    names
        .into_iter()
        .map(|(account, configured)| {
            Ok(AccountStatus {
                last_run: state.last_run(&account)?,
                last_error: state.last_failed_run(&account)?,
                spooled: state.spooled_count(&account)?,
                recent: state.run_totals(&account)?,
                quota: state.quota(&account)?,
                login_delay: state
                    .login_delay(&account)?
                    .filter(|(_, not_before, _)| *not_before > now)
                    .map(|(host, not_before, reason)| LoginDelay {
                        host,
                        not_before,
                        reason,
                    }),
                configured,
                account,
            })
        })
        .collect()
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A Unix time in local time, as people read it.
pub fn local_time(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %z")
                .to_string()
        })
        .unwrap_or_default()
}

/// The `--json` document.
pub fn to_json(statuses: &[AccountStatus]) -> Value {
    let accounts: Vec<Value> = statuses
        .iter()
        .map(|s| {
            json!({
                "name": s.account,
                "configured": s.configured,
                "last_run": s.last_run.as_ref().map(|r| json!({
                    "started_at": rfc3339(r.started_at),
                    "started_at_unix": r.started_at,
                    "duration_ms": r.duration.as_millis() as u64,
                    "exit_code": r.exit_code,
                    "outcome": outcome(r),
                    "messages": r.messages,
                    "spooled": r.spooled,
                    "bytes": r.bytes,
                    "error": r.error,
                })),
                "spooled": s.spooled,
                "last_error": s.last_error.as_ref().map(|r| json!({
                    "at": rfc3339(r.started_at),
                    "at_unix": r.started_at,
                    "exit_code": r.exit_code,
                    "message": r.error,
                })),
                "recent": {
                    "runs": s.recent.runs,
                    "messages": s.recent.messages,
                    "bytes": s.recent.bytes,
                    "failures": s.recent.failures,
                },
                "quota": s.quota.as_ref().map(|(q, at)| quota_json(q, *at)),
                "login_delay": s.login_delay.as_ref().map(|d| json!({
                    "host": d.host,
                    "not_before": rfc3339(d.not_before),
                    "not_before_unix": d.not_before,
                    "reason": d.reason,
                })),
            })
        })
        .collect();
    json!({ "version": JSON_VERSION, "accounts": accounts })
}

/// A quota resource as JSON: `{"used": .., "limit": ..}` or null.
fn resource(r: Option<(u64, u64)>) -> Value {
    r.map_or(
        Value::Null,
        |(used, limit)| json!({ "used": used, "limit": limit }),
    )
}

fn quota_json(q: &Quota, at: i64) -> Value {
    json!({
        "root": q.root,
        "storage_kib": resource(q.storage),
        "messages": resource(q.messages),
        "percent": q.percent(),
        "checked_at": rfc3339(at),
        "checked_at_unix": at,
    })
}

/// The human-readable report: a line per account, one for its quota and
/// one more for its last error.
pub fn to_text(statuses: &[AccountStatus]) -> String {
    let mut out = String::new();
    if statuses.is_empty() {
        out.push_str("no accounts configured and no runs recorded\n");
    }
    for s in statuses {
        let name = if s.configured {
            s.account.clone()
        } else {
            format!("{} (not in the config)", s.account)
        };
        match &s.last_run {
            Some(r) => out.push_str(&format!(
                "{name}: last run {} ({:.1}s): {}, {} delivered, {} spooled ({}); {} in the spool\n",
                local_time(r.started_at),
                r.duration.as_secs_f64(),
                outcome(r).replace('_', " "),
                r.messages,
                r.spooled,
                bytesize::ByteSize(r.bytes),
                s.spooled
            )),
            None => out.push_str(&format!("{name}: never run; {} in the spool\n", s.spooled)),
        }
        if let Some((q, at)) = &s.quota {
            let mut what = Vec::new();
            if let Some((used, limit)) = q.storage {
                what.push(format!(
                    "{} of {}",
                    bytesize::ByteSize(used * 1024),
                    bytesize::ByteSize(limit * 1024)
                ));
            }
            if let Some((used, limit)) = q.messages {
                what.push(format!("{used} of {limit} messages"));
            }
            out.push_str(&format!(
                "  quota {}: {} ({}% full) at {}\n",
                q.root,
                what.join(", "),
                q.percent().unwrap_or(0),
                local_time(*at)
            ));
        }
        if let Some(d) = &s.login_delay {
            out.push_str(&format!(
                "  not connecting to {} before {} (LOGIN-DELAY)\n",
                d.host,
                local_time(d.not_before)
            ));
        }
        if let Some(e) = &s.last_error {
            out.push_str(&format!(
                "  last error {} (exit {}): {}\n",
                local_time(e.started_at),
                e.exit_code,
                e.error.as_deref().unwrap_or("unknown")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(
        account: &str,
        started_at: i64,
        exit_code: i32,
        messages: u64,
        error: Option<&str>,
    ) -> RunRecord {
        RunRecord {
            account: account.into(),
            started_at,
            duration: Duration::from_millis(1500),
            exit_code,
            messages,
            bytes: messages * 100,
            spooled: 0,
            error: error.map(String::from),
        }
    }

    #[test]
    fn outcomes_from_exit_codes() {
        assert_eq!(outcome(&run("a", 0, 0, 2, None)), "retrieved");
        assert_eq!(outcome(&run("a", 0, 1, 0, None)), "no_mail");
        assert_eq!(outcome(&run("a", 0, 13, 5, None)), "limit_reached");
        assert_eq!(outcome(&run("a", 0, 2, 3, Some("x"))), "partial");
        assert_eq!(outcome(&run("a", 0, 3, 0, Some("x"))), "failed");
        let spooled_then_failed = RunRecord {
            spooled: 1,
            ..run("a", 0, 7, 0, Some("x"))
        };
        assert_eq!(outcome(&spooled_then_failed), "partial");
    }

    #[test]
    fn json_shape_after_a_failure_then_a_success() {
        let mut state = State::in_memory().unwrap();
        state
            .record_run(&run(
                "isp",
                1_700_000_000,
                2,
                0,
                Some("connecting: refused"),
            ))
            .unwrap();
        state
            .record_run(&RunRecord {
                spooled: 1,
                ..run("isp", 1_700_000_100, 0, 2, None)
            })
            .unwrap();
        state
            .record_run(&run("old", 1_600_000_000, 1, 0, None))
            .unwrap();
        let statuses = collect(&state, &["isp".into(), "new".into()]).unwrap();
        let v = to_json(&statuses);
        assert_eq!(v["version"], 1);
        let a = &v["accounts"];
        assert_eq!(a.as_array().unwrap().len(), 3);
        assert_eq!(a[0]["name"], "isp");
        assert_eq!(a[0]["last_run"]["outcome"], "retrieved");
        assert_eq!(a[0]["last_run"]["started_at"], "2023-11-14T22:15:00Z");
        assert_eq!(a[0]["last_run"]["duration_ms"], 1500);
        assert_eq!(a[0]["last_run"]["bytes"], 200);
        assert_eq!(a[0]["last_run"]["messages"], 2);
        assert_eq!(a[0]["last_run"]["spooled"], 1);
        assert_eq!(a[0]["last_error"]["exit_code"], 2);
        assert_eq!(a[0]["last_error"]["message"], "connecting: refused");
        assert_eq!(a[0]["recent"]["runs"], 2);
        assert_eq!(a[0]["recent"]["failures"], 1);
        assert!(a[0]["quota"].is_null());
        assert_eq!(a[1]["name"], "new");
        assert!(a[1]["last_run"].is_null());
        assert_eq!(a[2]["name"], "old");
        assert_eq!(a[2]["configured"], false);
        let text = to_text(&statuses);
        assert!(text.contains("isp: last run"), "{text}");
        assert!(text.contains("retrieved, 2 delivered, 1 spooled"), "{text}");
        assert!(text.contains("  last error"), "{text}");
        assert!(text.contains("new: never run"), "{text}");
    }

    #[test]
    fn quota_in_json_and_text() {
        let mut state = State::in_memory().unwrap();
        let q = Quota {
            root: "User quota".into(),
            storage: Some((950, 1000)),
            messages: None,
        };
        state.set_quota("isp", &q, 1_700_000_000).unwrap();
        let statuses = collect(&state, &["isp".into()]).unwrap();
        let v = &to_json(&statuses)["accounts"][0]["quota"];
        assert_eq!(v["root"], "User quota");
        assert_eq!(v["storage_kib"]["used"], 950);
        assert_eq!(v["storage_kib"]["limit"], 1000);
        assert!(v["messages"].is_null());
        assert_eq!(v["percent"], 95);
        assert_eq!(v["checked_at_unix"], 1_700_000_000);
        let text = to_text(&statuses);
        assert!(text.contains("  quota User quota: "), "{text}");
        assert!(text.contains("(95% full)"), "{text}");
    }

    #[test]
    fn a_login_delay_in_force_is_shown_and_one_over_is_not() {
        let mut state = State::in_memory().unwrap();
        let later = chrono::Utc::now().timestamp() + 600;
        state
            .set_login_delay("pop", "pop.example.com", later, "-ERR [LOGIN-DELAY] wait")
            .unwrap();
        state
            .set_login_delay("old", "pop.example.com", 1_000, "-ERR [LOGIN-DELAY] wait")
            .unwrap();
        let statuses = collect(&state, &["pop".into(), "old".into()]).unwrap();
        let v = to_json(&statuses);
        let d = &v["accounts"][0]["login_delay"];
        assert_eq!(d["host"], "pop.example.com");
        assert_eq!(d["not_before_unix"], later);
        assert!(v["accounts"][1]["login_delay"].is_null());
        let text = to_text(&statuses);
        assert!(
            text.contains("  not connecting to pop.example.com before "),
            "{text}"
        );
        assert_eq!(text.matches("LOGIN-DELAY").count(), 1, "{text}");
    }
}
