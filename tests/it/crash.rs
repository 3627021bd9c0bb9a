//! Crash safety: the real binary is killed with SIGKILL in the middle of
//! fetches (at named points in the durable order, through a fault hook
//! that only debug builds have, and at random moments through a slow
//! link), then allowed to finish. Every message must end up delivered
//! exactly once and the server must end up empty (delete mode) or
//! untouched (keep mode).

use crate::support;

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::slowlink::SlowLink;
use support::{strip_received, AccountBuilder, ConfigBuilder, Env};

const KILLED: i32 = 128 + 9;

/// One account on the shared Dovecot, reached through `port`, delivering
/// to `Maildir`.
fn config(
    env: &Env,
    dovecot: &Dovecot,
    user: &User,
    protocol: &str,
    port: u16,
    keep: bool,
) -> ConfigBuilder {
    let account = AccountBuilder::dovecot("acct", protocol, dovecot, user)
        .port(port)
        .keep(keep);
    ConfigBuilder::single(env, account).hostname("crash.test")
}

fn fill(dovecot: &Dovecot, user: &User, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut msgs = corpus::realistic(n, seed);
    // Small messages keep the test fast; one awkward one keeps it honest.
    msgs.truncate(n);
    msgs.push(b"Subject: no final newline\nMessage-ID: <nfn@crash>\n\nlast line".to_vec());
    for m in &msgs {
        dovecot.add_message(user, "INBOX", m);
    }
    msgs.sort();
    msgs
}

/// Runs until a run reports no new mail, then checks the outcome.
fn finish_and_check(
    env: &Env,
    dovecot: &Dovecot,
    user: &User,
    originals: &[Vec<u8>],
    keep: bool,
    what: &str,
) {
    let mut last = None;
    for _ in 0..3 {
        let out = env.run(&["fetch"]);
        assert!(
            out.code == 0 || out.code == 1,
            "{what}: recovery run failed: {}",
            out.stderr
        );
        if out.code == 1 {
            last = Some(out);
            break;
        }
    }
    assert!(last.is_some(), "{what}: never reached 'no new mail'");
    let mut got: Vec<Vec<u8>> = env
        .maildir_messages(env.path("Maildir"))
        .iter()
        .map(|m| strip_received(m))
        .collect();
    got.sort();
    assert_eq!(
        got.len(),
        originals.len(),
        "{what}: message count (duplicates or losses)"
    );
    assert!(got == originals, "{what}: messages differ");
    let on_server = dovecot.messages(user, "INBOX").len();
    if keep {
        assert_eq!(
            on_server,
            originals.len(),
            "{what}: keep mode must leave the server alone"
        );
    } else {
        assert_eq!(on_server, 0, "{what}: server not emptied");
    }
}

/// Kills at every named point of the durable order, for POP3 and IMAP.
#[test]
fn sigkill_at_each_durable_step_loses_and_duplicates_nothing() {
    let dovecot = Dovecot::shared();
    let points: &[(&str, u64)] = &[
        ("downloaded", 1),
        ("downloaded", 4),
        ("maildir-tmp-written", 2),
        ("maildir-renamed", 3),
        ("delivered", 1),
        ("delivered", 5),
        ("synced", 1),
        ("committed", 1),
        ("delete-queued", 3),
        ("finish", 1),
    ];
    for protocol in ["pop3", "imap"] {
        for keep in [false, true] {
            for (point, n) in points {
                let what = format!("{protocol} keep={keep} at {point}:{n}");
                let user = dovecot.new_user();
                let originals = fill(dovecot, &user, 6, 11);
                let env = Env::new();
                let port = if protocol == "pop3" {
                    dovecot.pop3s
                } else {
                    dovecot.imaps
                };
                config(&env, dovecot, &user, protocol, port, keep).write(&env);
                let out = env
                    .cmd()
                    .arg("fetch")
                    .env("MAILRETR_FAULT", format!("{point}:{n}"))
                    .output()
                    .unwrap();
                let code = out.status.code().unwrap_or(KILLED);
                assert!(
                    code == KILLED || code == 0,
                    "{what}: {code} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                finish_and_check(&env, dovecot, &user, &originals, keep, &what);
            }
        }
    }
}

/// Kills at random moments while the traffic crosses a slow link.
#[test]
fn sigkill_at_random_moments_through_a_slow_link() {
    let dovecot = Dovecot::shared();
    // Deterministic "random" delays, spread over a run's length.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next_delay = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        Duration::from_millis(30 + seed % 400)
    };
    for (protocol, keep) in [
        ("pop3", false),
        ("imap", false),
        ("pop3", true),
        ("imap", true),
    ] {
        let what = format!("{protocol} keep={keep}");
        let user = dovecot.new_user();
        let originals = fill(dovecot, &user, 20, 5);
        let target = if protocol == "pop3" {
            dovecot.pop3s
        } else {
            dovecot.imaps
        };
        let link = SlowLink::start(target, Duration::from_millis(10));
        let env = Env::new();
        config(&env, dovecot, &user, protocol, link.port(), keep).write(&env);
        let mut kills = 0;
        for _ in 0..6 {
            let mut child = env
                .cmd()
                .arg("fetch")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            thread::sleep(next_delay());
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
        }
        assert!(kills > 0, "{what}: the runs were too quick to interrupt");
        finish_and_check(&env, dovecot, &user, &originals, keep, &what);
    }
}

/// The directory destination (download-as-file) is recognised after a
/// crash too, when its file names carry the unique id `%I`.
#[test]
fn sigkill_with_a_directory_destination_duplicates_nothing() {
    let dovecot = Dovecot::shared();
    for (point, n) in [
        ("delivered", 1),
        ("delivered", 4),
        ("committed", 2),
        ("downloaded", 3),
    ] {
        let what = format!("directory at {point}:{n}");
        let user = dovecot.new_user();
        let originals = fill(dovecot, &user, 6, 17);
        let env = Env::new();
        let files = env.path("files");
        config(&env, dovecot, &user, "pop3", dovecot.pop3s, false)
            .destination(
                "home",
                &format!(
                    "type = \"directory\"\npath = \"{}\"\nfilename = \"%A-%I.eml\"",
                    files.display()
                ),
            )
            .write(&env);
        let out = env
            .cmd()
            .arg("fetch")
            .env("MAILRETR_FAULT", format!("{point}:{n}"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), None, "{what}: killed");
        for _ in 0..3 {
            if env.run(&["fetch"]).code == 1 {
                break;
            }
        }
        let mut got: Vec<Vec<u8>> = std::fs::read_dir(&files)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| strip_received(&std::fs::read(p).unwrap()))
            .collect();
        got.sort();
        assert_eq!(got.len(), originals.len(), "{what}: duplicates or losses");
        assert!(got == originals, "{what}: messages differ");
        assert!(dovecot.messages(&user, "INBOX").is_empty(), "{what}");
    }
}
