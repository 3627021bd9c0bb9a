//! `dedup = "30d"` against the real Dovecot, IMAP and POP3: two copies of
//! one Message-ID (in INBOX, or in two folders) are delivered once, the
//! other is audited `duplicate` and treated as done (deleted without
//! keep, not asked again with keep); messages without a Message-ID are
//! always delivered; with headers first (an LMTP destination) a duplicate
//! costs only its headers.

use crate::support;

use std::fs;

use support::dovecot::{Dovecot, User};
use support::{AccountBuilder, ConfigBuilder, Env};

/// A message with `id` as its Message-ID (none when `None`).
fn message(id: Option<&str>, n: usize) -> Vec<u8> {
    let id = id.map_or(String::new(), |id| format!("Message-ID: {id}\n"));
    format!("{id}Subject: copy {n}\n\nbody of copy {n}\n").into_bytes()
}

/// `account` delivering to the Maildir `Maildir`, with `dedup = "30d"`
/// and an audit log.
fn config(env: &Env, account: AccountBuilder) -> ConfigBuilder {
    ConfigBuilder::single(env, account.line("dedup = \"30d\""))
        .hostname("test.example")
        .general(&format!(
            "audit_log = \"{}\"",
            env.path("audit.log").display()
        ))
}

/// The outcome column of every audit line.
fn audit_outcomes(env: &Env) -> Vec<String> {
    fs::read_to_string(env.path("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\t').nth(7).unwrap_or("").to_string())
        .collect()
}

fn acct(dovecot: &Dovecot, user: &User, protocol: &str) -> AccountBuilder {
    AccountBuilder::dovecot("acct", protocol, dovecot, user)
}

fn two_copies_in_inbox_are_delivered_once(protocol: &str) {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(Some("<Same@Example.ORG>"), 1));
    dovecot.add_message(&user, "INBOX", &message(Some(" <Same@example.org> "), 2));
    let env = Env::new();
    config(&env, acct(dovecot, &user, protocol)).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);
    assert_eq!(audit_outcomes(&env), vec!["delivered", "duplicate"]);
    // Treated as done: both gone from the server.
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    // A third copy on a later run (inside the window) is suppressed too.
    dovecot.add_message(&user, "INBOX", &message(Some("<Same@example.org>"), 3));
    // Nothing delivered: exit 1, as for no new mail.
    env.run(&["fetch"]).expect_code(1);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);
    assert_eq!(
        audit_outcomes(&env),
        vec!["delivered", "duplicate", "duplicate"]
    );
    // Outside the window (31 days later) it is delivered again.
    dovecot.add_message(&user, "INBOX", &message(Some("<Same@example.org>"), 4));
    env.run_later(31 * 86400, &["fetch"]).expect_success();
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
}

#[test]
fn imap_two_copies_in_inbox_are_delivered_once() {
    two_copies_in_inbox_are_delivered_once("imap");
}

#[test]
fn pop3_two_copies_in_inbox_are_delivered_once() {
    two_copies_in_inbox_are_delivered_once("pop3");
}

/// With a rule, headers come first and messages judged on their headers
/// are downloaded together: the second copy is judged only after the
/// first is delivered (and so recorded), so it is still a duplicate.
#[test]
fn two_copies_judged_on_their_headers_are_delivered_once() {
    for protocol in ["imap", "pop3"] {
        let dovecot = Dovecot::shared();
        let user = dovecot.new_user();
        dovecot.add_message(&user, "INBOX", &message(Some("<ruled@example.org>"), 1));
        dovecot.add_message(&user, "INBOX", &message(Some("<ruled@example.org>"), 2));
        let env = Env::new();
        let account = acct(dovecot, &user, protocol)
            .line(r#"rule = [{ header = "X-Spam-Flag", matches = "^YES", action = "delete" }]"#);
        config(&env, account).write(&env);
        env.run(&["fetch"]).expect_success();
        assert_eq!(
            env.maildir_messages(env.path("Maildir")).len(),
            1,
            "{protocol}"
        );
        assert_eq!(
            audit_outcomes(&env),
            vec!["delivered", "duplicate"],
            "{protocol}"
        );
    }
}

#[test]
fn imap_one_message_in_two_folders_is_delivered_once_and_not_asked_again() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(Some("<g@mail.example>"), 1));
    dovecot.add_message(&user, "Archive", &message(Some("<g@mail.example>"), 2));
    let env = Env::new();
    let account = acct(dovecot, &user, "imap")
        .keep(true)
        .line("folders = [\"INBOX\", \"Archive\"]");
    config(&env, account).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);
    let mut outcomes = audit_outcomes(&env);
    outcomes.sort();
    assert_eq!(outcomes, vec!["delivered", "duplicate"]);
    // keep: both stay; the duplicate is seen, so not asked about again.
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);
    assert_eq!(dovecot.messages(&user, "Archive").len(), 1);
    env.run(&["fetch"]).expect_code(1);
    assert_eq!(audit_outcomes(&env).len(), 2);
}

#[test]
fn messages_without_a_message_id_are_never_suppressed() {
    for protocol in ["imap", "pop3"] {
        let dovecot = Dovecot::shared();
        let user = dovecot.new_user();
        dovecot.add_message(&user, "INBOX", &message(None, 1));
        dovecot.add_message(&user, "INBOX", &message(None, 1));
        dovecot.add_message(&user, "INBOX", &message(Some("<>"), 2));
        dovecot.add_message(&user, "INBOX", &message(Some("<>"), 2));
        let env = Env::new();
        config(&env, acct(dovecot, &user, protocol)).write(&env);
        env.run(&["fetch"]).expect_success();
        assert_eq!(
            env.maildir_messages(env.path("Maildir")).len(),
            4,
            "{protocol}"
        );
        assert_eq!(audit_outcomes(&env), vec!["delivered"; 4], "{protocol}");
    }
}

#[test]
fn with_headers_first_a_duplicate_costs_only_its_headers() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    let big = format!(
        "Message-ID: <big@example.org>\nSubject: big\n\n{}",
        "x".repeat(76).repeat(4000).as_str()
    );
    dovecot.add_message(&source, "INBOX", &message(Some("<big@example.org>"), 1));
    dovecot.add_message(&source, "INBOX", big.as_bytes());
    let env = Env::new();
    config(
        &env,
        acct(dovecot, &source, "imap").deliver_to(&["dovecot"]),
    )
    .destination(
        "dovecot",
        &format!(
            "type = \"lmtp\"\nsocket = \"{}\"\nrecipient = \"{}\"",
            dovecot.lmtp_socket.display(),
            target.address()
        ),
    )
    .write(&env);
    let out = env.run(&["-v", "fetch"]);
    out.expect_success();
    assert_eq!(dovecot.messages(&target, "INBOX").len(), 1);
    assert_eq!(audit_outcomes(&env), vec!["delivered", "duplicate"]);
    assert!(out.stderr.contains("headers first saved"), "{}", out.stderr);
    assert!(dovecot.messages(&source, "INBOX").is_empty());
}
