//! `--metrics-file`: the accounts' state as Prometheus metrics, in the
//! text exposition format that node_exporter's textfile collector reads
//! (`--collector.textfile.directory`; the file name must end in `.prom`).
//!
//! The file is built from state.db (the run log, the counters of schema
//! 12 and the spool), not from this run's reports, so accounts that did
//! not run this time appear with what is known of them. It is replaced
//! atomically (a temp file in the same directory, fsync, rename, fsync of
//! the directory): the collector never reads half a file.
//!
//! Samples per account (label `account`): the last run's end time, exit
//! code, outcome (as a label of a sample worth 1), duration, messages,
//! bytes and spooled messages (gauges: that run only); the end of the
//! last run without an error (0 when none is known); counters that only
//! grow since state.db got schema 12 (runs, failures, messages, bytes,
//! spooled); and the retry spool's size. Plus when the file was written
//! and which shard wrote it. Label values are escaped as the format says
//! (`\\`, `\"`, `\n`); account names are no secret.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::shard::Shard;
use crate::store::State;

/// Serialises rewrites of the file by the threads of one process
/// (`watch` rewrites it after each account's pass).
static WRITING: Mutex<()> = Mutex::new(());

/// One metric family: name, type and help, then its samples.
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(String, String)>,
}

impl Family<'_> {
    fn sample(&mut self, labels: &[(&str, &str)], value: impl ToString) {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            let inner: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        self.samples.push((labels, value.to_string()));
    }
}

fn family<'a>(name: &'a str, kind: &'a str, help: &'a str) -> Family<'a> {
    Family {
        name,
        kind,
        help,
        samples: Vec::new(),
    }
}

/// A label value as the text format wants it: backslash, double quote
/// and line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The metrics of `accounts` (in that order) as the text format.
pub fn render(state: &State, accounts: &[String], shard: Shard, now: i64) -> Result<String> {
    let mut written = family(
        "mailretr_last_run_timestamp_seconds",
        "gauge",
        "When mailretr last finished a run (fetch) or an account's pass (watch) and wrote this file, unix seconds.",
    );
    written.sample(&[], now);
    let mut shard_info = family(
        "mailretr_shard_info",
        "gauge",
        "The shard (--shard K/N; 1/1 without) whose accounts this file describes.",
    );
    let (k, n) = (shard.index.to_string(), shard.count.to_string());
    shard_info.sample(&[("shard", &k), ("shards", &n)], 1);

    let mut last_run = family(
        "mailretr_account_last_run_timestamp_seconds",
        "gauge",
        "When the account's last run ended, unix seconds.",
    );
    let mut last_success = family(
        "mailretr_account_last_success_timestamp_seconds",
        "gauge",
        "When the account's last run without an error (exit 0, 1 or 13) ended, unix seconds; 0 if none is known.",
    );
    let mut exit_code = family(
        "mailretr_account_last_run_exit_code",
        "gauge",
        "The exit code of the account's last run (mailretr(1) EXIT STATUS).",
    );
    let mut outcome = family(
        "mailretr_account_last_run_outcome",
        "gauge",
        "1, labelled with the outcome of the account's last run: retrieved, no_mail, limit_reached, partial or failed.",
    );
    let mut duration = family(
        "mailretr_account_last_run_duration_seconds",
        "gauge",
        "How long the account's last run took.",
    );
    let mut messages = family(
        "mailretr_account_last_run_messages",
        "gauge",
        "Messages delivered by the account's last run.",
    );
    let mut bytes = family(
        "mailretr_account_last_run_bytes",
        "gauge",
        "Bytes retrieved by the account's last run.",
    );
    let mut spooled = family(
        "mailretr_account_last_run_spooled",
        "gauge",
        "Messages the account's last run put in the retry spool.",
    );
    let mut runs_total = family(
        "mailretr_account_runs_total",
        "counter",
        "Runs of the account recorded in this state.",
    );
    let mut failures_total = family(
        "mailretr_account_failures_total",
        "counter",
        "Runs of the account that ended in an error.",
    );
    let mut messages_total = family(
        "mailretr_account_messages_total",
        "counter",
        "Messages delivered for the account.",
    );
    let mut bytes_total = family(
        "mailretr_account_bytes_total",
        "counter",
        "Bytes retrieved for the account.",
    );
    let mut spooled_total = family(
        "mailretr_account_spooled_total",
        "counter",
        "Messages of the account put in the retry spool.",
    );
    let mut spool_messages = family(
        "mailretr_account_spool_messages",
        "gauge",
        "Messages of the account waiting in the retry spool now.",
    );
    let mut spool_bytes = family(
        "mailretr_account_spool_bytes",
        "gauge",
        "Bytes of the account's messages waiting in the retry spool now.",
    );

    for account in accounts {
        let l = [("account", account.as_str())];
        let counters = state.counters(account)?;
        if let Some(run) = state.last_run(account)? {
            let ended = run.started_at + run.duration.as_secs() as i64;
            last_run.sample(&l, ended);
            exit_code.sample(&l, run.exit_code);
            outcome.sample(
                &[
                    ("account", account),
                    ("outcome", crate::status::outcome(&run)),
                ],
                1,
            );
            duration.sample(&l, format!("{:.3}", run.duration.as_secs_f64()));
            messages.sample(&l, run.messages);
            bytes.sample(&l, run.bytes);
            spooled.sample(&l, run.spooled);
        }
        last_success.sample(&l, counters.last_success_at.unwrap_or(0));
        runs_total.sample(&l, counters.runs);
        failures_total.sample(&l, counters.failures);
        messages_total.sample(&l, counters.messages);
        bytes_total.sample(&l, counters.bytes);
        spooled_total.sample(&l, counters.spooled);
        let (n, b) = state.spool_size(account)?;
        spool_messages.sample(&l, n);
        spool_bytes.sample(&l, b);
    }
    let mut out = String::new();
    for f in [
        written,
        shard_info,
        last_run,
        last_success,
        exit_code,
        outcome,
        duration,
        messages,
        bytes,
        spooled,
        runs_total,
        failures_total,
        messages_total,
        bytes_total,
        spooled_total,
        spool_messages,
        spool_bytes,
    ] {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value) in f.samples {
            let _ = writeln!(out, "{}{labels} {value}", f.name);
        }
    }
    Ok(out)
}

/// Replaces `path` with `text` atomically: a temp file beside it
/// (mode 0644: the collector may run as another user; nothing in it is
/// secret), fsynced, renamed over it, and the directory fsynced.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("names no file"))?
        .to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Writes the metrics file at `path` for every account of `config` in
/// `shard` (not only those that ran: the file describes them all). A
/// failure is a warning; it never fails the run.
pub fn update_for(config: &crate::config::Config, path: &Path, shard: Shard) {
    let names: Vec<String> = config
        .accounts
        .iter()
        .filter(|a| shard.contains(&a.name))
        .map(|a| a.name.clone())
        .collect();
    if let Err(e) = update(&config.general.state_dir, path, &names, shard) {
        log::warn!("{e}");
    }
}

/// Renders the metrics of `accounts` from the state in `state_dir` and
/// writes them to `path`.
pub fn update(state_dir: &Path, path: &Path, accounts: &[String], shard: Shard) -> Result<()> {
    let _one_at_a_time = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let state = State::open(state_dir)?;
    let text = render(&state, accounts, shard, crate::retry::now())?;
    write_atomically(path, &text).map_err(|e| {
        Error::Internal(format!(
            "cannot write the metrics file {}: {e}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunRecord;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
    }

    #[test]
    fn renders_known_and_unknown_accounts() {
        let mut state = State::in_memory().unwrap();
        state
            .record_run(&RunRecord {
                account: "a\"1".into(),
                started_at: 1000,
                duration: std::time::Duration::from_millis(2500),
                exit_code: 0,
                messages: 3,
                bytes: 300,
                spooled: 1,
                error: None,
            })
            .unwrap();
        let text = render(
            &state,
            &["a\"1".into(), "never".into()],
            Shard { index: 2, count: 3 },
            5000,
        )
        .unwrap();
        assert!(text.contains("mailretr_last_run_timestamp_seconds 5000\n"));
        assert!(text.contains("mailretr_shard_info{shard=\"2\",shards=\"3\"} 1\n"));
        assert!(text.contains(
            "mailretr_account_last_success_timestamp_seconds{account=\"a\\\"1\"} 1002\n"
        ));
        assert!(
            text.contains("mailretr_account_last_success_timestamp_seconds{account=\"never\"} 0\n")
        );
        assert!(text.contains(
            "mailretr_account_last_run_outcome{account=\"a\\\"1\",outcome=\"retrieved\"} 1\n"
        ));
        assert!(text.contains("mailretr_account_messages_total{account=\"a\\\"1\"} 3\n"));
        assert!(!text.contains("mailretr_account_last_run_exit_code{account=\"never\"}"));
    }

    #[test]
    fn writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailretr.prom");
        write_atomically(&path, "a 1\n").unwrap();
        write_atomically(&path, "a 2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a 2\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
