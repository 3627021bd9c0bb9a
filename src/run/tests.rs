//! The test seam, as lettre's `StubTransport`: a scripted source and a
//! recording destination drive `AccountRun` on a state store in a
//! temporary directory, and the log of calls shows the durable order
//! (write → sync → commit → delete) for every outcome. Each delete checks,
//! through a second connection, that its message was committed first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::config::{self, Config};
use crate::destination::{CrashRecovery, DeliveryReport, Destination, GroupCommit};
use crate::error::{Error, Failure, Result};
use crate::message::Envelope;
use crate::source::{RemoteMessage, Scan, SeenIndex, Source};
use crate::store::State;

use super::{AccountReport, AccountRun, FetchOptions};

type Log = Arc<Mutex<Vec<String>>>;

fn log(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn remote(n: u32) -> RemoteMessage {
    RemoteMessage {
        folder: "INBOX".into(),
        uid: Some(format!("u{n}")),
        uidvalidity: None,
        size: 40,
        number: n,
        mailbox: Vec::new(),
        flags: String::new(),
    }
}

fn bytes(n: u32) -> Vec<u8> {
    format!("Message-ID: <m{n}@x>\nSubject: {n}\n\nbody\n").into_bytes()
}

/// A source that offers messages 1..=n and records what it is asked.
struct ScriptedSource {
    log: Log,
    state_dir: std::path::PathBuf,
    offered: Vec<RemoteMessage>,
    queue: VecDeque<RemoteMessage>,
}

impl Source for ScriptedSource {
    fn protocol_name(&self) -> &str {
        "POP3"
    }

    fn scan(&mut self, seen: &mut dyn SeenIndex, _fetch_all: bool) -> Result<Vec<Scan>> {
        let mut scan = Scan::default();
        for m in &self.offered {
            if seen.is_seen(&m.folder, m.uid.as_deref().unwrap())? {
                scan.seen_on_server.push(m.clone());
            } else {
                scan.new.push(m.clone());
            }
        }
        Ok(vec![scan])
    }

    fn retrieve(&mut self, messages: Vec<RemoteMessage>) -> Result<()> {
        self.queue.extend(messages);
        Ok(())
    }

    fn next_message(&mut self) -> Result<Option<(RemoteMessage, Vec<u8>)>> {
        Ok(self.queue.pop_front().map(|m| {
            log(&self.log, format!("download {}", m.number));
            let b = bytes(m.number);
            (m, b)
        }))
    }

    fn delivered(&mut self, message: &RemoteMessage) -> Result<()> {
        log(&self.log, format!("delivered {}", message.number));
        Ok(())
    }

    fn delete(&mut self, message: &RemoteMessage) -> Result<()> {
        let state = State::open(&self.state_dir)?;
        let committed = state
            .seen_uids("acct", "INBOX", 0)?
            .contains(message.uid.as_deref().unwrap())
            || state.spooled_count("acct")? > 0;
        log(
            &self.log,
            format!("delete {} (committed: {committed})", message.number),
        );
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        log(&self.log, "finish");
        Ok(())
    }
}

/// A destination that records its calls and answers as scripted: for
/// message n, `fail[n]` is the failure of `deliver` (none: delivered);
/// `sync_fails` makes the group sync fail.
struct RecordingDestination {
    log: Log,
    fail: Vec<(u32, Failure)>,
    group: bool,
    sync_fails: bool,
    state_dir: std::path::PathBuf,
}

impl Destination for RecordingDestination {
    fn name(&self) -> &str {
        "home"
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let n: u32 = String::from_utf8_lossy(message)
            .lines()
            .find_map(|l| l.strip_prefix("Subject: ").map(|s| s.parse().unwrap()))
            .unwrap();
        if let Some((_, f)) = self.fail.iter().find(|(m, _)| *m == n) {
            log(&self.log, format!("write {n} fails: {f}"));
            return Err(Error::delivery("home", format!("{f}"), *f));
        }
        log(&self.log, format!("write {n}"));
        Ok(DeliveryReport::all(&envelope.recipients))
    }

    fn group_commit(&mut self) -> Option<&mut dyn GroupCommit> {
        if self.group {
            Some(self)
        } else {
            None
        }
    }

    fn crash_recovery(&mut self) -> Option<&mut dyn CrashRecovery> {
        if self.group {
            Some(self)
        } else {
            None
        }
    }
}

impl GroupCommit for RecordingDestination {
    fn defer_sync(&mut self) {
        log(&self.log, "defer");
    }

    fn sync(&mut self) -> Result<()> {
        let state = State::open(&self.state_dir)?;
        let seen = state.seen_uids("acct", "INBOX", 0)?.len();
        // Fails once, then (its pending list dropped, as Maildir's is)
        // succeeds: a run must not take that for the batch being durable.
        if std::mem::take(&mut self.sync_fails) {
            log(&self.log, format!("sync fails (seen before: {seen})"));
            return Err(Error::delivery("home", "EIO", Failure::Local));
        }
        log(&self.log, format!("sync (seen before: {seen})"));
        Ok(())
    }
}

impl CrashRecovery for RecordingDestination {
    fn plan_name(&mut self) -> String {
        "name".into()
    }

    fn use_name(&mut self, _base: &str) {}

    fn has_name(&mut self, _envelope: &Envelope, _base: &str) -> Result<bool> {
        Ok(false)
    }
}

fn test_config(dir: &std::path::Path, on_refused: &str) -> Config {
    let text = format!(
        "[general]\nstate_dir = \"{}\"\nhostname = \"t\"\n\
         [[account]]\nname = \"acct\"\nprotocol = \"pop3\"\nhost = \"localhost\"\n\
         user = \"u\"\npassword = \"p\"\ndeliver_to = [\"home\"]\non_refused = \"{on_refused}\"\n\
         add_received = false\n\
         [destination.home]\ntype = \"maildir\"\npath = \"{}\"\n",
        dir.join("state").display(),
        dir.join("Maildir").display()
    );
    config::parse(&text, &dir.join("config.toml")).unwrap()
}

struct Ran {
    log: Vec<String>,
    result: Result<()>,
    report: AccountReport,
    state: State,
    fingerprint: String,
}

fn run(
    messages: u32,
    fail: Vec<(u32, Failure)>,
    group: bool,
    sync_fails: bool,
    on_refused: &str,
) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), on_refused);
    let state_dir = config.general.state_dir.clone();
    let mut state = State::open(&state_dir).unwrap();
    let log_: Log = Arc::default();
    let source = ScriptedSource {
        log: log_.clone(),
        state_dir: state_dir.clone(),
        offered: (1..=messages).map(remote).collect(),
        queue: VecDeque::new(),
    };
    let destination = RecordingDestination {
        log: log_.clone(),
        fail,
        group,
        sync_fails,
        state_dir: state_dir.clone(),
    };
    let mut report = AccountReport::empty("acct");
    let account = &config.accounts[0];
    let result = {
        let mut run = AccountRun::new(
            &config,
            account,
            &mut state,
            &mut report,
            None,
            Box::new(source),
            vec![Box::new(destination)],
            false,
        );
        run.fetch(&FetchOptions::default())
    };
    let log = log_.lock().unwrap().clone();
    Ran {
        log,
        result,
        report,
        state,
        fingerprint: super::envelope::delivery_fingerprint(&config, account),
    }
}

#[test]
fn single_commit_order_is_write_commit_delete() {
    let r = run(2, vec![], false, false, "keep");
    r.result.unwrap();
    assert_eq!(
        r.log,
        vec![
            "download 1",
            "write 1",
            "delivered 1",
            "delete 1 (committed: true)",
            "download 2",
            "write 2",
            "delivered 2",
            "delete 2 (committed: true)",
            "finish",
        ]
    );
    assert_eq!(r.report.messages, 2);
}

#[test]
fn group_commit_order_is_write_sync_commit_delete() {
    let r = run(3, vec![], true, false, "keep");
    r.result.unwrap();
    assert_eq!(
        r.log,
        vec![
            "defer",
            "download 1",
            "write 1",
            "download 2",
            "write 2",
            "download 3",
            "write 3",
            "sync (seen before: 0)",
            "delivered 1",
            "delete 1 (committed: true)",
            "delivered 2",
            "delete 2 (committed: true)",
            "delivered 3",
            "delete 3 (committed: true)",
            "finish",
        ]
    );
}

#[test]
fn a_failed_sync_commits_and_deletes_nothing_of_its_batch() {
    // More than one batch, so the sync that fails is the one inside the
    // run, and the end-of-run commit comes after it.
    let r = run(
        super::batch::BATCH_MESSAGES as u32 + 2,
        vec![],
        true,
        true,
        "delete",
    );
    assert!(r.result.is_err());
    assert!(
        r.log.iter().all(|l| !l.starts_with("delete")),
        "{:?}",
        r.log
    );
    assert!(
        r.log.iter().all(|l| !l.starts_with("delivered")),
        "{:?}",
        r.log
    );
    assert!(r.state.seen_uids("acct", "INBOX", 0).unwrap().is_empty());
    // Tried once: the end-of-run commit does not try the batch again.
    assert_eq!(r.log.iter().filter(|l| l.starts_with("sync")).count(), 1);
    assert_eq!(r.log.last().unwrap(), "finish");
}

#[test]
fn a_temporary_failure_is_spooled_then_deleted() {
    let r = run(2, vec![(1, Failure::Temporary)], false, false, "keep");
    r.result.unwrap();
    assert_eq!(r.state.spooled_count("acct").unwrap(), 1);
    let deletes: Vec<_> = r.log.iter().filter(|l| l.starts_with("delete")).collect();
    assert_eq!(
        deletes,
        ["delete 1 (committed: true)", "delete 2 (committed: true)"]
    );
}

#[test]
fn a_refusal_follows_on_refused() {
    let keep = run(2, vec![(1, Failure::Refused)], false, false, "keep");
    assert!(
        keep.result.is_err(),
        "a kept refusal ends the run with exit 10"
    );
    assert!(
        keep.log.iter().all(|l| !l.starts_with("delete 1")),
        "{:?}",
        keep.log
    );
    assert!(keep.log.contains(&"delete 2 (committed: true)".to_string()));
    let delete = run(2, vec![(1, Failure::Refused)], false, false, "delete");
    delete.result.unwrap();
    assert!(delete
        .log
        .contains(&"delete 1 (committed: true)".to_string()));
}

#[test]
fn a_local_fault_stops_the_run_deletes_nothing_and_records_nothing() {
    for group in [false, true] {
        let r = run(3, vec![(2, Failure::Local)], group, false, "delete");
        let e = r.result.unwrap_err();
        assert_eq!(e.failure(), Failure::Local);
        // Message 1 was delivered and is committed; 2 stays; 3 is never
        // downloaded after the fault.
        assert!(
            r.log.contains(&"delete 1 (committed: true)".to_string()),
            "{:?}",
            r.log
        );
        assert!(
            r.log.iter().all(|l| !l.starts_with("delete 2")),
            "{:?}",
            r.log
        );
        assert!(r.log.iter().all(|l| l != "download 3"), "{:?}", r.log);
        let seen = r.state.seen_uids("acct", "INBOX", 0).unwrap();
        assert!(seen.contains("u1") && !seen.contains("u2"));
        assert_eq!(r.state.spooled_count("acct").unwrap(), 0);
        assert_eq!(
            r.state
                .refused_record("acct", &remote(2), &r.fingerprint)
                .unwrap(),
            None
        );
    }
}

#[test]
fn a_kept_refusal_is_said_once_in_the_run_error() {
    let r = run(
        3,
        vec![(1, Failure::Refused), (2, Failure::Refused)],
        false,
        false,
        "keep",
    );
    let e = r.result.unwrap_err();
    assert_eq!(e.exit_code(), crate::ExitCode::Delivery);
    // The first kept refusal is the run's error line, naming the message
    // and the destination once; the second is a warning.
    assert_eq!(
        e.to_string(),
        "message u1 in INBOX was refused: home: refused; left on the server"
    );
    assert_eq!(
        r.report.warnings,
        ["message u2 in INBOX was refused: home: refused; left on the server"]
    );
}

#[test]
fn a_spooled_message_is_counted_as_spooled_not_delivered() {
    let r = run(3, vec![(2, Failure::Temporary)], false, false, "keep");
    r.result.unwrap();
    assert_eq!(r.report.messages, 2);
    assert_eq!(r.report.spooled, 1);
    assert_eq!(r.report.retrieved(), 3);
    assert_eq!(
        r.report.summary(),
        "3 messages (108 B) retrieved: 2 delivered, 1 spooled"
    );
    assert_eq!(
        r.report.done_before().as_deref(),
        Some("after 3 messages: 2 delivered, 1 spooled")
    );
    let deleted = run(2, vec![(1, Failure::Refused)], false, false, "delete");
    assert_eq!(
        deleted.report.summary(),
        "2 messages (72 B) retrieved: 1 delivered, 1 refused and deleted"
    );
    let all = run(2, vec![], false, false, "keep");
    assert_eq!(all.report.summary(), "2 messages (72 B) retrieved");
    assert_eq!(
        all.report.done_before().as_deref(),
        Some("after 2 messages were delivered")
    );
}
