//! The retry spool through the real binary: a relay that answers 451
//! after DATA costs the mailbox's bytes once, not once per run; a flush
//! delivers each message exactly once; partial fan-out retries only the
//! failed destination; old entries bounce as RFC 3464 reports; a message
//! with the null sender is reported to the postmaster instead.

use crate::support;

use std::fs;

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::proxy::CountingProxy;
use support::smtpsink::SmtpSink;
use support::sorted;
use support::{AccountBuilder, ConfigBuilder, Env};

/// One POP3 account (plain, through `port`) delivering to `deliver_to`;
/// add the destinations.
fn config(env: &Env, user: &User, port: u16, deliver_to: &[&str]) -> ConfigBuilder {
    let account = AccountBuilder::new("acct", "pop3", "127.0.0.1")
        .port(port)
        .plaintext()
        .login(user)
        .line("add_received = false")
        .deliver_to(deliver_to);
    ConfigBuilder::new(env)
        .hostname("spool.test")
        .account(account)
}

/// Adds `relay`, an SMTP destination in clear on `port`.
fn relay(config: ConfigBuilder, port: u16) -> ConfigBuilder {
    config.smtp("relay", port, "jaco@example.org", "tls = \"none\"")
}

fn queue_ids(env: &Env) -> Vec<i64> {
    let out = env.run(&["queue", "list", "--json"]);
    out.expect_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn a_relay_failing_after_data_costs_the_mailbox_once() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let mut originals = corpus::realistic(6, 3);
    originals.push(corpus::big(1024 * 1024));
    let total: usize = originals.iter().map(Vec::len).sum();
    for m in &originals {
        dovecot.add_message(&user, "INBOX", m);
    }
    let env = Env::new();
    let sink = SmtpSink::start(&env.path("smtp"));
    sink.set_tempfail(true);
    let proxy = CountingProxy::start(dovecot.pop3);
    relay(config(&env, &user, proxy.port(), &["relay"]), sink.port).write(&env);

    // Three runs, as cron would do while the relay is down.
    let out = env.run(&["-v", "fetch"]);
    out.expect_code(0);
    assert!(out.stderr.contains("451"), "{}", out.stderr);
    // Spooled is not delivered, in the summary and in the run log.
    let n = originals.len();
    assert!(
        out.stderr.contains(&format!("{n} messages (") as &str)
            && out
                .stderr
                .contains(&format!("retrieved: 0 delivered, {n} spooled")),
        "{}",
        out.stderr
    );
    let status = env.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let last = &v["accounts"][0]["last_run"];
    assert_eq!(last["messages"], 0, "{v}");
    assert_eq!(last["spooled"], n, "{v}");
    assert_eq!(last["outcome"], "retrieved", "{v}");
    let after_first = proxy.bytes_from_server();
    assert!(after_first as usize >= total, "the mailbox crossed once");
    env.run(&["fetch"]).expect_code(1);
    env.run(&["fetch"]).expect_code(1);
    let later = proxy.bytes_from_server() - after_first;
    assert!(
        later < 4096,
        "runs 2 and 3 read {later} bytes from the server: only greetings and listings"
    );
    assert!(
        dovecot.messages(&user, "INBOX").is_empty(),
        "spooled, then deleted"
    );
    assert!(sink.messages().is_empty());
    let ids = queue_ids(&env);
    assert_eq!(ids.len(), originals.len());
    let listing = env.run(&["queue", "list"]);
    assert!(listing.stdout.contains("relay"), "{}", listing.stdout);
    let show = env.run(&["queue", "show", &ids[0].to_string()]);
    show.expect_success();
    assert!(show.stdout.contains("History:"), "{}", show.stdout);
    assert!(show.stdout.contains("spooled: "), "{}", show.stdout);
    assert!(
        show.stdout
            .contains("after DATA: 451 4.3.0 Try again later"),
        "{}",
        show.stdout
    );

    // The relay recovers: a flush delivers every message exactly once.
    sink.set_tempfail(false);
    env.run(&["queue", "flush"]).expect_success();
    assert_eq!(sorted(sink.messages()), sorted(originals));
    assert!(queue_ids(&env).is_empty());
    env.run(&["queue", "flush"]).expect_code(1);
    assert_eq!(sink.messages().len(), 7, "nothing twice");
}

#[test]
fn partial_fan_out_retries_only_the_failed_destination() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(
        &user,
        "INBOX",
        b"Return-Path: <s@example.net>\nSubject: both\nMessage-ID: <both@t>\n\nhi\n",
    );
    let env = Env::new();
    let sink = SmtpSink::start(&env.path("smtp"));
    sink.set_tempfail(true);
    let maildir = env.path("Maildir");
    relay(
        config(&env, &user, dovecot.pop3, &["home", "relay"]),
        sink.port,
    )
    .maildir("home", &maildir)
    .general("retry_delay = \"1s\"\nretry_max_delay = \"1s\"")
    .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(env.maildir_messages(&maildir).len(), 1);
    let out = env.run(&["queue", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["destination"], "relay");
    assert_eq!(v[0]["sender"], "s@example.net");

    // The next run retries the relay from the spool (its backoff is 1 s)
    // and leaves the Maildir alone.
    sink.set_tempfail(false);
    env.run_later(2, &["fetch"]).expect_code(1);
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(env.maildir_messages(&maildir).len(), 1);
    assert!(queue_ids(&env).is_empty());
    let env_line = sink.envelope(1);
    assert!(
        env_line.starts_with("s@example.net\njaco@example.org\n"),
        "{env_line}"
    );
}

/// Adds `bounces`, an MDA that keeps each bounce and its envelope under
/// `dir`.
fn bounce_catcher(config: ConfigBuilder, dir: &std::path::Path) -> ConfigBuilder {
    fs::create_dir_all(dir).unwrap();
    config.destination(
        "bounces",
        &format!(
            "type = \"mda\"\ncommand = [\"/bin/sh\", \"-c\", \"cat > {d}/$$.eml; printf '%s|%s' \\\"$MAILRETR_SENDER\\\" \\\"$MAILRETR_RECIPIENT\\\" > {d}/$$.env\"]",
            d = dir.display()
        ),
    )
}

fn caught(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "eml") {
            let envelope = fs::read_to_string(path.with_extension("env")).unwrap();
            out.push((envelope, fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

#[test]
fn old_entries_bounce_as_dsn_and_null_sender_goes_to_postmaster() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Return-Path: <alice@example.net>\nFrom: alice@example.net\nSubject: to bounce\nMessage-ID: <b1@t>\n\nbody one\n");
    dovecot.add_message(&user, "INBOX", b"Return-Path: <>\nFrom: MAILER-DAEMON@elsewhere\nSubject: a bounce itself\nMessage-ID: <b2@t>\n\nbody two\n");
    let env = Env::new();
    let sink = SmtpSink::start(&env.path("smtp"));
    sink.set_tempfail(true);
    let bounces = env.path("bounces");
    let general = "retry_delay = \"1s\"\nretry_max_delay = \"1s\"\nspool_max_age = \"2s\"\nbounce_via = \"bounces\"\npostmaster = \"postmaster@example.org\"\nbounce_from = \"MAILER-DAEMON@spool.test\"";
    let config = relay(config(&env, &user, dovecot.pop3, &["relay"]), sink.port);
    bounce_catcher(config.general(general), &bounces).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(queue_ids(&env).len(), 2);
    env.run_later(3, &["fetch"]).expect_code(1);
    assert!(queue_ids(&env).is_empty(), "both given up on");

    let mut got = caught(&bounces);
    got.sort();
    assert_eq!(got.len(), 2, "{got:?}");
    let (to_alice, to_postmaster) = if got[0].0.ends_with("alice@example.net") {
        (&got[0], &got[1])
    } else {
        (&got[1], &got[0])
    };
    // Bounces carry the null envelope sender.
    assert_eq!(to_alice.0, "|alice@example.net");
    assert_eq!(to_postmaster.0, "|postmaster@example.org");
    for (_, dsn) in [to_alice, to_postmaster] {
        let bytes = dsn.as_bytes();
        let ct = header(bytes, "Content-Type");
        assert!(ct.contains("multipart/report"), "{ct}");
        assert!(ct.contains("report-type=delivery-status"), "{ct}");
        assert_eq!(
            header(bytes, "From"),
            "Mail Delivery System <MAILER-DAEMON@spool.test>"
        );
        assert!(
            dsn.contains("Content-Type: message/delivery-status"),
            "{dsn}"
        );
        assert!(dsn.contains("Reporting-MTA: dns; spool.test"), "{dsn}");
        assert!(
            dsn.contains("Final-Recipient: rfc822; jaco@example.org"),
            "{dsn}"
        );
        assert!(dsn.contains("Action: failed"), "{dsn}");
        assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
        assert!(dsn.contains("451"), "the last error is named: {dsn}");
        assert!(dsn.contains("Destination: relay"), "{dsn}");
        assert!(dsn.contains("Content-Type: text/rfc822-headers"), "{dsn}");
        assert!(
            !dsn.contains("body one") && !dsn.contains("body two"),
            "headers only"
        );
    }
    assert!(to_alice.1.contains("Subject: to bounce"));
    assert!(to_postmaster.1.contains("Subject: a bounce itself"));
    assert!(sink.messages().is_empty());
}

/// The first value of a header (unfolded).
fn header(message: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(message);
    let mut lines = text.lines().take_while(|l| !l.is_empty()).peekable();
    while let Some(line) = lines.next() {
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                let mut value = v.trim().to_string();
                while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                }
                return value;
            }
        }
    }
    String::new()
}

#[test]
fn queue_delete_needs_yes_without_a_terminal() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: drop me\n\nx\n");
    let env = Env::new();
    let sink = SmtpSink::start(&env.path("smtp"));
    sink.set_tempfail(true);
    relay(config(&env, &user, dovecot.pop3, &["relay"]), sink.port).write(&env);
    env.run(&["fetch"]).expect_success();
    let ids = queue_ids(&env);
    assert_eq!(ids.len(), 1);
    let id = ids[0].to_string();
    let out = env.run(&["queue", "delete", &id]);
    out.expect_code(5);
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    env.run(&["queue", "delete", "--yes", &id]).expect_success();
    assert!(queue_ids(&env).is_empty());
    env.run(&["queue", "show", &id]).expect_code(5);
}

#[test]
fn a_damaged_state_database_is_an_error_not_a_refetch() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: keep me\n\nx\n");
    let env = Env::new();
    let maildir = env.path("Maildir");
    config(&env, &user, dovecot.pop3, &["home"])
        .maildir("home", &maildir)
        .write(&env);
    fs::create_dir_all(env.path("state")).unwrap();
    fs::write(env.path("state").join("state.db"), vec![0x42u8; 16384]).unwrap();
    let out = env.run(&["fetch"]);
    out.expect_code(23);
    assert!(out.stderr.contains("state.db"), "{}", out.stderr);
    assert!(out.stderr.contains("account acct"), "{}", out.stderr);
    assert!(env.maildir_messages(&maildir).is_empty(), "nothing fetched");
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1, "nothing deleted");
}
