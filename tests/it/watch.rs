//! `mailretr watch` against a real Dovecot: mail injected through LMTP
//! wakes an IDLE connection and is delivered; a Dovecot restart is
//! survived and caught up; SIGTERM exits 0 with nothing lost; SIGHUP
//! reloads the config; POP3 and folders over the IDLE limit are polled.
//!
//! Timing is only ever waited on generously ("within N seconds"); the
//! delivery latency is printed (run with `--nocapture`), not asserted.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::delivered;
use support::{AccountBuilder, ConfigBuilder, Dovecot, Env, User};

/// How long any single expected event may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// An IMAPS account `name` on `dovecot`, without `Received:` headers.
fn imap(dovecot: &Dovecot, name: &str, user: &User) -> AccountBuilder {
    AccountBuilder::dovecot_imaps(name, dovecot, user).line("add_received = false")
}

/// A POP3S account `name` on `dovecot`, without `Received:` headers.
fn pop3(dovecot: &Dovecot, name: &str, user: &User) -> AccountBuilder {
    AccountBuilder::dovecot_pop3s(name, dovecot, user).line("add_received = false")
}

/// `[general]` with short watch intervals, so the tests are quick, and
/// each account delivering to its own Maildir.
fn config(env: &Env, accounts: Vec<AccountBuilder>) -> ConfigBuilder {
    let mut config = ConfigBuilder::new(env)
        .hostname("test.example")
        .general("idle_renew = \"5s\"\npoll_interval = \"1s\"");
    for account in accounts {
        let path = maildir(env, account.name());
        config = config.account_to_maildir(account, path);
    }
    config
}

fn maildir(env: &Env, name: &str) -> PathBuf {
    env.path(format!("Maildir-{name}"))
}

fn message(tag: &str, n: usize) -> Vec<u8> {
    format!("Subject: {tag} {n}\nMessage-ID: <{tag}-{n}@watch.test>\n\nbody {n}\n").into_bytes()
}

/// Whether a delivered message (after Dovecot's `Return-Path:` for LMTP
/// mail) carries this subject line.
fn has_subject(path: &Path, subject: &str) -> bool {
    support::maildir_messages(path)
        .iter()
        .any(|m| String::from_utf8_lossy(m).contains(&format!("Subject: {subject}\n")))
}

/// Waits until `done` holds, panicking with `what` and the watcher's log.
fn wait_until(watch: &Watch, what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > PATIENCE {
            panic!(
                "{what}: not within {PATIENCE:?}\n--- mailretr stderr ---\n{}",
                watch.stderr()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// A running `mailretr watch` whose stderr is collected as it comes.
struct Watch {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
}

impl Watch {
    fn start(env: &Env, args: &[&str]) -> Watch {
        let mut cmd = env.cmd();
        cmd.arg("-v")
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn mailretr watch");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watch {
            child: Some(child),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// How many stderr lines contain `text`.
    fn count(&self, text: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(text)).count()
    }

    fn wait_for_log(&self, text: &str, times: usize) {
        wait_until(self, &format!("log line {text:?} x{times}"), || {
            self.count(text) >= times
        });
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, signal) };
    }

    /// Sends SIGTERM and returns the exit code, which must come within a
    /// few seconds.
    fn terminate(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!(
                    "watch did not stop within 10s of SIGTERM\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn lmtp_mail_is_delivered_within_seconds_and_sigterm_exits_0() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let user = dovecot.new_user();
    // Waiting before watch starts: the catch-up fetch takes it.
    dovecot.add_message(&user, "INBOX", &message("early", 0));
    config(&env, vec![imap(dovecot, "a", &user)]).write(&env);
    let watch = Watch::start(&env, &[]);
    let inbox = maildir(&env, "a");
    wait_until(&watch, "catch-up", || has_subject(&inbox, "early 0"));
    watch.wait_for_log("account a: INBOX: connected, idling", 1);

    let mut latencies = Vec::new();
    for n in 0..7 {
        let start = Instant::now();
        dovecot.deliver_lmtp(&user, &message("lmtp", n));
        wait_until(&watch, &format!("LMTP message {n}"), || {
            has_subject(&inbox, &format!("lmtp {n}"))
        });
        latencies.push(start.elapsed());
    }
    latencies.sort();
    println!(
        "watch latency, LMTP accept to Maildir, {} messages: median {:?} (min {:?}, max {:?})",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies[0],
        latencies[latencies.len() - 1]
    );
    let log = watch.stderr();
    assert!(log.contains("account a: INBOX: woken by new mail"), "{log}");
    assert!(log.contains("account a: fetched 1 messages"), "{log}");
    // Quiet at the default level: every line here is -v information.
    assert!(!log.contains("error"), "{log}");

    assert_eq!(watch.terminate(), 0);
    assert_eq!(delivered(&inbox).len(), 8, "nothing lost, nothing twice");
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn a_dovecot_restart_is_survived_and_mail_from_the_outage_caught_up() {
    let dovecot = Dovecot::start();
    let env = Env::new();
    let user = dovecot.new_user();
    config(&env, vec![imap(&dovecot, "r", &user)]).write(&env);
    let watch = Watch::start(&env, &[]);
    let inbox = maildir(&env, "r");
    watch.wait_for_log("account r: INBOX: connected, idling", 1);
    dovecot.deliver_lmtp(&user, &message("before", 0));
    wait_until(&watch, "delivery before the restart", || {
        has_subject(&inbox, "before 0")
    });

    dovecot.stop();
    // Arrives while watch cannot see it.
    dovecot.add_message(&user, "INBOX", &message("outage", 0));
    std::thread::sleep(Duration::from_millis(500));
    dovecot.restart();
    wait_until(&watch, "catch-up after the restart", || {
        has_subject(&inbox, "outage 0")
    });
    watch.wait_for_log("account r: INBOX: connected, idling", 2);
    assert!(watch.count("reconnecting in") >= 1, "{}", watch.stderr());

    // Let the catch-up fetches settle, so that this one is IDLE's doing.
    std::thread::sleep(Duration::from_millis(1500));
    let woken = watch.count("INBOX: woken by new mail");
    dovecot.deliver_lmtp(&user, &message("after", 0));
    wait_until(&watch, "IDLE delivery after the restart", || {
        has_subject(&inbox, "after 0")
    });
    watch.wait_for_log("INBOX: woken by new mail", woken + 1);
    assert_eq!(watch.terminate(), 0);
    assert_eq!(delivered(&inbox).len(), 3);
}

#[test]
fn sighup_reload_adds_an_account_and_keeps_the_others_connected() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let first = dovecot.new_user();
    let second = dovecot.new_user();
    config(&env, vec![imap(dovecot, "one", &first)]).write(&env);
    let watch = Watch::start(&env, &[]);
    watch.wait_for_log("account one: INBOX: connected, idling", 1);

    let both = vec![imap(dovecot, "one", &first), imap(dovecot, "two", &second)];
    config(&env, both).write(&env);
    watch.signal(libc::SIGHUP);
    watch.wait_for_log("config reloaded: 1 accounts kept, 1 started", 1);
    watch.wait_for_log("account two: INBOX: connected, idling", 1);
    dovecot.deliver_lmtp(&second, &message("two", 0));
    dovecot.deliver_lmtp(&first, &message("one", 0));
    wait_until(&watch, "mail for the added account", || {
        has_subject(&maildir(&env, "two"), "two 0")
    });
    wait_until(&watch, "mail for the kept account", || {
        has_subject(&maildir(&env, "one"), "one 0")
    });
    assert_eq!(
        watch.count("account one: INBOX: connected"),
        1,
        "the unchanged account kept its connection\n{}",
        watch.stderr()
    );

    // A broken config is refused and the running one kept.
    env.write_config("[general\n");
    watch.signal(libc::SIGHUP);
    watch.wait_for_log("keeping the running config", 1);
    assert_eq!(watch.terminate(), 0);
}

#[test]
fn pop3_and_folders_over_the_idle_limit_are_polled() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let pop_user = dovecot.new_user();
    let imap_user = dovecot.new_user();
    // Create the second folder before watch looks for folders.
    dovecot.add_message(&imap_user, "Other", &message("other", 0));
    let two_folders = imap(dovecot, "imap", &imap_user)
        .line(r#"folders = ["INBOX", "Other"]"#)
        .line("max_idle_connections = 1");
    config(&env, vec![pop3(dovecot, "pop", &pop_user), two_folders]).write(&env);
    let watch = Watch::start(&env, &[]);
    watch.wait_for_log("account imap: INBOX: connected, idling", 1);
    watch.wait_for_log("1 folders over max_idle_connections = 1", 1);
    assert_eq!(watch.count("Other: connected"), 0, "{}", watch.stderr());
    wait_until(&watch, "catch-up of Other", || {
        has_subject(&maildir(&env, "imap"), "other 0")
    });

    dovecot.add_message(&pop_user, "INBOX", &message("pop", 1));
    dovecot.add_message(&imap_user, "Other", &message("other", 1));
    wait_until(&watch, "polled POP3 mail", || {
        has_subject(&maildir(&env, "pop"), "pop 1")
    });
    wait_until(&watch, "polled IMAP folder", || {
        has_subject(&maildir(&env, "imap"), "other 1")
    });
    assert_eq!(watch.terminate(), 0);
    assert!(dovecot.messages(&pop_user, "INBOX").is_empty());
    assert!(dovecot.messages(&imap_user, "Other").is_empty());
}

/// `[[accounts_from]]` is queried when `watch` starts and again on
/// SIGHUP (a row added in between becomes a watched account), and the
/// `[report]` table is written by `watch` too.
#[test]
fn watch_queries_the_backend_at_start_and_on_reload_and_reports() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let first = dovecot.new_user();
    let second = dovecot.new_user();
    let accounts_db = env.path("accounts.db");
    let db = rusqlite::Connection::open(&accounts_db).unwrap();
    db.execute_batch("CREATE TABLE mailbox (name TEXT, user TEXT, password TEXT)")
        .unwrap();
    let add = |name: &str, user: &User| {
        db.execute(
            "INSERT INTO mailbox VALUES (?1, ?2, ?3)",
            [name, &user.name, &user.password],
        )
        .unwrap();
    };
    add("one", &first);
    let text = format!(
        "{}\n[[accounts_from]]
type = \"sql\"
url = \"sqlite://{}\"
query = \"SELECT name, user, password FROM mailbox\"
defaults = {{ protocol = \"imap\", host = \"localhost\", port = {}, ca_file = {:?}, add_received = false, deliver_to = [\"home\"] }}

[report]
url = \"sqlite://{}\"
",
        config(&env, vec![])
            .maildir("home", maildir(&env, "home"))
            .build(),
        accounts_db.display(),
        dovecot.imaps,
        dovecot.cert_pem.display().to_string(),
        env.path("report.db").display(),
    );
    env.write_config(&text);
    let watch = Watch::start(&env, &[]);
    watch.wait_for_log("account one: INBOX: connected, idling", 1);
    add("two", &second);
    watch.signal(libc::SIGHUP);
    watch.wait_for_log("config reloaded: 1 accounts kept, 1 started", 1);
    watch.wait_for_log("account two: INBOX: connected, idling", 1);
    dovecot.deliver_lmtp(&second, &message("two", 0));
    wait_until(&watch, "mail for the account added to the table", || {
        has_subject(&maildir(&env, "home"), "two 0")
    });
    let report = rusqlite::Connection::open(env.path("report.db")).unwrap();
    wait_until(&watch, "the report row of the fetch", || {
        report
            .query_row(
                "SELECT messages FROM mailretr_status WHERE account = 'two'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n == 1)
    });
    assert_eq!(watch.terminate(), 0);
}

/// `max_connections_per_host` holds for `watch` too, against a Dovecot
/// that takes 2 connections per user: of two accounts of one user with
/// three folders each, only one folder gets an IDLE connection (one of
/// the two is kept for fetching), the others are polled with a warning,
/// mail in both kinds of folder is delivered, and the server never has
/// to refuse a connection.
#[test]
fn watch_keeps_its_idle_connections_below_max_connections_per_host() {
    let dovecot = crate::throttle::strict_dovecot();
    let env = Env::new();
    let user = dovecot.new_user();
    for folder in ["A", "B"] {
        dovecot.add_message(&user, folder, &message(folder, 0));
    }
    let accounts = ["w1", "w2"]
        .iter()
        .map(|name| {
            imap(dovecot, name, &user)
                .keep(true)
                .line(r#"folders = ["INBOX", "A", "B"]"#)
        })
        .collect();
    config(&env, accounts)
        .general("max_connections_per_host = 2")
        .write(&env);
    let watch = Watch::start(&env, &[]);
    watch.wait_for_log(": INBOX: connected, idling", 1);
    watch.wait_for_log("folders get no IDLE connection", 2);
    for name in ["w1", "w2"] {
        wait_until(&watch, "catch-up", || {
            has_subject(&maildir(&env, name), "A 0") && has_subject(&maildir(&env, name), "B 0")
        });
    }
    dovecot.add_message(&user, "INBOX", &message("inbox", 1));
    dovecot.add_message(&user, "B", &message("B", 1));
    for name in ["w1", "w2"] {
        wait_until(&watch, "new mail", || {
            has_subject(&maildir(&env, name), "inbox 1") && has_subject(&maildir(&env, name), "B 1")
        });
    }
    let log = watch.stderr();
    assert_eq!(log.matches("connected, idling").count(), 1, "{log}");
    assert_eq!(watch.terminate(), 0);
    let server_log = std::fs::read_to_string(&dovecot.log).unwrap_or_default();
    assert!(
        !server_log
            .lines()
            .any(|l| l.contains(&user.name) && l.contains("Maximum number of connections")),
        "Dovecot refused a connection:\n{}\n{log}",
        dovecot.log_tail(40)
    );
    assert!(!log.to_lowercase().contains("throttl"), "{log}");
}

#[test]
fn watch_idles_through_a_tunnel() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let user = dovecot.new_user();
    let account = imap(dovecot, "t", &user).line(&support::tunnel::relay_line());
    config(&env, vec![account]).write(&env);
    let watch = Watch::start(&env, &[]);
    let inbox = maildir(&env, "t");
    watch.wait_for_log("account t: INBOX: connected, idling", 1);
    dovecot.deliver_lmtp(&user, &message("tunnelled", 0));
    wait_until(&watch, "delivery through the tunnel", || {
        has_subject(&inbox, "tunnelled 0")
    });
    // SIGTERM ends the IDLE through the tunnel at once.
    assert_eq!(watch.terminate(), 0);
    assert_eq!(delivered(&inbox).len(), 1);
}
