//! Retention with `keep = true`: `delete_after` deletes a kept message
//! from the server once the state says it was delivered long enough ago
//! (without downloading it again), `delete_bigger_than` deletes a big one
//! once delivered, and neither deletes anything the state does not record
//! as delivered (a fault or a kill at the commit). Against the real
//! Dovecot, over POP3 and IMAP; "15 days later" is `Env::run_later`.

use crate::support;

use support::dovecot::{Dovecot, User, QUOTA_CONFIG};
use support::{AccountBuilder, ConfigBuilder, Env};

const DAY: i64 = 86_400;
const PROTOCOLS: [&str; 2] = ["pop3", "imap"];

fn account(protocol: &str, dovecot: &Dovecot, user: &User, extra: &str) -> AccountBuilder {
    AccountBuilder::dovecot("acct", protocol, dovecot, user)
        .keep(true)
        .line("add_received = false")
        .line(extra)
}

fn message(n: usize, size: usize) -> Vec<u8> {
    format!(
        "Subject: m{n}\nMessage-ID: <{n}@retention.test>\n\n{}\n",
        "x".repeat(size)
    )
    .into_bytes()
}

fn in_maildir(env: &Env) -> usize {
    env.maildir_messages(env.path("Maildir")).len()
}

#[test]
fn delete_after_deletes_only_what_was_delivered_long_enough_ago() {
    let dovecot = Dovecot::shared();
    for protocol in PROTOCOLS {
        let user = dovecot.new_user();
        for n in 0..2 {
            dovecot.add_message(&user, "INBOX", &message(n, 100));
        }
        let env = Env::new();
        ConfigBuilder::single(
            &env,
            account(protocol, dovecot, &user, "delete_after = \"14d\""),
        )
        .write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 0, "{protocol}: {}", out.stderr);
        assert_eq!(in_maildir(&env), 2, "{protocol}");
        assert_eq!(
            dovecot.messages(&user, "INBOX").len(),
            2,
            "{protocol}: kept"
        );

        // A day later: nothing is old enough.
        assert_eq!(env.run_later(DAY, &["fetch"]).code, 1, "{protocol}");
        assert_eq!(dovecot.messages(&user, "INBOX").len(), 2, "{protocol}");
        // --keep: nothing is deleted, retention included.
        let out = env.run_later(15 * DAY, &["fetch", "--keep"]);
        assert_eq!(out.code, 1, "{protocol}: {}", out.stderr);
        assert_eq!(dovecot.messages(&user, "INBOX").len(), 2, "{protocol}");

        // 15 days later: deleted without being downloaded again.
        let out = env.run_later(15 * DAY, &["-v", "fetch"]);
        assert_eq!(out.code, 1, "{protocol}: nothing retrieved: {}", out.stderr);
        assert!(
            out.stderr.contains("deleting 2 kept message(s)"),
            "{protocol}: {}",
            out.stderr
        );
        assert!(
            dovecot.messages(&user, "INBOX").is_empty(),
            "{protocol}: deleted after 14 days"
        );
        assert_eq!(in_maildir(&env), 2, "{protocol}: not downloaded again");

        // A message delivered at day 15 is still there at day 16, gone
        // at day 30.
        dovecot.add_message(&user, "INBOX", &message(7, 100));
        assert_eq!(env.run_later(15 * DAY, &["fetch"]).code, 0, "{protocol}");
        assert_eq!(in_maildir(&env), 3, "{protocol}");
        assert_eq!(env.run_later(16 * DAY, &["fetch"]).code, 1, "{protocol}");
        assert_eq!(dovecot.messages(&user, "INBOX").len(), 1, "{protocol}");
        assert_eq!(env.run_later(30 * DAY, &["fetch"]).code, 1, "{protocol}");
        assert!(dovecot.messages(&user, "INBOX").is_empty(), "{protocol}");
        assert_eq!(in_maildir(&env), 3, "{protocol}");
    }
}

#[test]
fn delete_bigger_than_deletes_big_ones_once_delivered_and_max_size_wins() {
    let dovecot = Dovecot::shared();
    for protocol in PROTOCOLS {
        let user = dovecot.new_user();
        dovecot.add_message(&user, "INBOX", &message(1, 100));
        dovecot.add_message(&user, "INBOX", &message(2, 5_000));
        dovecot.add_message(&user, "INBOX", &message(3, 50_000));
        let env = Env::new();
        ConfigBuilder::single(
            &env,
            account(
                protocol,
                dovecot,
                &user,
                "delete_bigger_than = \"2KB\"\nmax_size = \"20KB\"",
            ),
        )
        .write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 0, "{protocol}: {}", out.stderr);
        assert_eq!(
            in_maildir(&env),
            2,
            "{protocol}: the 50 KB one is over max_size"
        );
        let left = dovecot.messages(&user, "INBOX");
        let subjects: Vec<bool> = ["m1", "m2", "m3"]
            .iter()
            .map(|s| {
                left.iter()
                    .any(|m| m.starts_with(format!("Subject: {s}\n").as_bytes()))
            })
            .collect();
        assert_eq!(
            subjects,
            [true, false, true],
            "{protocol}: small one kept, delivered big one deleted, undownloaded one left"
        );
        assert_eq!(env.run(&["fetch"]).code, 1, "{protocol}");
        assert_eq!(dovecot.messages(&user, "INBOX").len(), 2, "{protocol}");
    }
}

#[test]
fn a_fault_or_a_kill_at_the_commit_deletes_nothing() {
    let dovecot = Dovecot::shared();
    for protocol in PROTOCOLS {
        for fault in ["state-commit:1+:EIO", "synced:1"] {
            let user = dovecot.new_user();
            for n in 0..3 {
                dovecot.add_message(&user, "INBOX", &message(n, 3_000));
            }
            let env = Env::new();
            ConfigBuilder::single(
                &env,
                account(
                    protocol,
                    dovecot,
                    &user,
                    "delete_bigger_than = \"1B\"\ndelete_after = \"0s\"",
                ),
            )
            .write(&env);
            let out = env
                .cmd()
                .arg("fetch")
                .env("MAILRETR_FAULT", fault)
                .env("MAILRETR_CLOCK_OFFSET", (30 * DAY).to_string())
                .output()
                .unwrap();
            assert_ne!(out.status.code(), Some(0), "{protocol} {fault}");
            assert_eq!(
                dovecot.messages(&user, "INBOX").len(),
                3,
                "{protocol} {fault}: nothing recorded, nothing deleted"
            );
            // The next run delivers (again, where needed) and deletes.
            let out = env.run(&["fetch"]);
            assert_eq!(out.code, 0, "{protocol} {fault}: {}", out.stderr);
            assert!(
                dovecot.messages(&user, "INBOX").is_empty(),
                "{protocol} {fault}"
            );
            assert_eq!(in_maildir(&env), 3, "{protocol} {fault}: no duplicates");
        }
    }
}

/// A Dovecot of its own (the shared one offers no QUOTA), 1 MiB per user.
#[test]
fn imap_quota_is_shown_in_status_and_warned_above_90_percent() {
    let dovecot = Dovecot::start_with(QUOTA_CONFIG);
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1, 100_000));
    let env = Env::new();
    ConfigBuilder::single(&env, account("imap", &dovecot, &user, "")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("% full"), "{}", out.stderr);
    let status = |env: &Env| {
        let out = env.run(&["status", "--json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["accounts"][0]["quota"].clone()
    };
    let q = status(&env);
    assert_eq!(q["root"], "User quota", "{q}");
    assert_eq!(q["storage_kib"]["limit"], 1024, "{q}");
    assert!(q["percent"].as_u64().unwrap() < 90, "{q}");

    // Through LMTP, which keeps Dovecot's quota count current.
    for n in 2..11 {
        dovecot.deliver_lmtp(&user, &message(n, 100_000));
    }
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("\"User quota\" is 9"), "{}", out.stderr);
    assert!(out.stderr.contains("% full"), "{}", out.stderr);
    let q = status(&env);
    assert!(q["percent"].as_u64().unwrap() > 90, "{q}");
    let text = env.run(&["status"]);
    assert!(text.stdout.contains("quota User quota:"), "{}", text.stdout);
    // -q: not said.
    let out = env.run(&["-q", "fetch"]);
    assert!(!out.stderr.contains("% full"), "{}", out.stderr);
}
