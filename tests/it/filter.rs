//! Deciding before downloading, against the real Dovecot, IMAP and POP3:
//! `rule = [...]` and `filter_command` judge a message on its header
//! (`BODY.PEEK[HEADER]`, `TOP n 0`); a 10 MB message a rule deletes costs
//! its headers (counted on the wire), `leave` leaves it and is not asked
//! again, each exit code of a filter script does what it says, and a
//! filter that crashes, hangs or names an unknown destination leaves the
//! message untouched. A POP3 server without TOP (a scripted fake: Dovecot
//! always offers it) gets the filter the downloaded message's header.

use crate::support;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::fake::{pop3_listing, FakeServer, Step};
use support::proxy::CountingProxy;
use support::{AccountBuilder, ConfigBuilder, Env};

fn message(subject: &str, extra: &str, body: &str) -> Vec<u8> {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("{extra}\n")
    };
    format!(
        "Return-Path: <sender@example.org>\nFrom: sender@example.org\nMessage-ID: <{subject}@example.org>\n\
         Subject: {subject}\n{extra}\n{body}\n"
    )
    .into_bytes()
}

/// The plaintext port of `protocol` on Dovecot.
fn plain_port(dovecot: &Dovecot, protocol: &str) -> u16 {
    match protocol {
        "imap" => dovecot.imap,
        _ => dovecot.pop3,
    }
}

/// `user` over plain IMAP or POP3 through `proxy` (so the bytes on the
/// wire are the mail's, not TLS's).
fn through(proxy: &CountingProxy, protocol: &str, user: &User) -> AccountBuilder {
    AccountBuilder::new("acct", protocol, "localhost")
        .port(proxy.port())
        .plaintext()
        .login(user)
}

/// The config: `account` delivering to `home` (Maildir) with a `spam`
/// Maildir, an audit log, no `Received:` header.
fn config(env: &Env, account: AccountBuilder) -> ConfigBuilder {
    ConfigBuilder::single(env, account)
        .maildir("spam", env.path("Spam"))
        .hostname("test.example")
        .general(&format!(
            "add_received = false\naudit_log = \"{}\"",
            env.path("audit.log").display()
        ))
}

/// Every audit line's outcome and detail, "outcome detail".
fn audit(env: &Env) -> Vec<String> {
    fs::read_to_string(env.path("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            format!("{} {}", f[7], f[8])
        })
        .collect()
}

fn subjects(messages: &[Vec<u8>]) -> Vec<String> {
    let mut s: Vec<String> = messages
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                .unwrap_or_default()
        })
        .collect();
    s.sort();
    s
}

const SPAM_RULE: &str =
    "rule = [{ header = \"X-Spam-Flag\", matches = \"^YES\", action = \"delete\" }]";

fn a_10mb_message_a_rule_deletes_costs_its_headers(protocol: &str, keep: bool) {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let mut big = b"X-Spam-Flag: YES\n".to_vec();
    big.extend(corpus::big(10 * 1024 * 1024));
    dovecot.add_message(&user, "INBOX", &big);
    dovecot.add_message(&user, "INBOX", &message("small", "", "hello"));
    let proxy = CountingProxy::start(plain_port(dovecot, protocol));
    let env = Env::new();
    let account = through(&proxy, protocol, &user).keep(keep).line(SPAM_RULE);
    config(&env, account).write(&env);
    env.run(&["fetch"]).expect_success();
    let read = proxy.bytes_from_server();
    eprintln!("{protocol} keep={keep}: {read} bytes from the server for a 10 MB message deleted by a rule and a small one");
    assert!(read < 64 * 1024, "{protocol}: read {read} bytes");
    let home = env.maildir_messages(env.path("Maildir"));
    assert_eq!(subjects(&home), ["small"], "{protocol}");
    let left = dovecot.messages(&user, "INBOX");
    // The big one is gone; the small one too unless kept.
    assert_eq!(subjects(&left), if keep { vec!["small"] } else { vec![] });
    assert!(
        audit(&env).contains(&"filtered delete (rule 1)".to_string()),
        "{:?}",
        audit(&env)
    );
    // Nothing new: nothing downloaded, nothing delivered again.
    let before = proxy.bytes_from_server();
    env.run(&["fetch"]).expect_code(1);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);
    let again = proxy.bytes_from_server() - before;
    assert!(
        again < 4096,
        "{protocol}: the second run read {again} bytes"
    );
}

#[test]
fn imap_a_10mb_message_a_rule_deletes_costs_its_headers() {
    a_10mb_message_a_rule_deletes_costs_its_headers("imap", false);
}

#[test]
fn pop3_a_10mb_message_a_rule_deletes_costs_its_headers() {
    a_10mb_message_a_rule_deletes_costs_its_headers("pop3", false);
}

#[test]
fn imap_a_rule_deletes_from_an_account_that_keeps_its_mail() {
    a_10mb_message_a_rule_deletes_costs_its_headers("imap", true);
}

#[test]
fn pop3_a_rule_deletes_from_an_account_that_keeps_its_mail() {
    a_10mb_message_a_rule_deletes_costs_its_headers("pop3", true);
}

fn rules_route_leave_and_are_not_asked_again(protocol: &str) {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let filler = "x".repeat(76).repeat(2000);
    dovecot.add_message(
        &user,
        "INBOX",
        &message(
            "list",
            "List-Id: Rust users <rust.lists.example>",
            "list mail",
        ),
    );
    dovecot.add_message(&user, "INBOX", &message("held", "X-Hold: yes", &filler));
    dovecot.add_message(&user, "INBOX", &message("plain", "", "plain mail"));
    dovecot.add_message(
        &user,
        "INBOX",
        &message(
            "boss",
            "X-Hold: yes\nX-Boss: 1",
            "a deliver rule before the leave rule",
        ),
    );
    let proxy = CountingProxy::start(plain_port(dovecot, protocol));
    let env = Env::new();
    let account = through(&proxy, protocol, &user).line(
        r#"rule = [
  { header = "X-Boss", matches = ".", action = "deliver" },
  { header = "list-id", matches = "(?i)<rust\\.lists\\.", deliver_to = ["spam"] },
  { header = "X-Hold", matches = "^yes$", action = "leave" },
]"#,
    );
    config(&env, account).write(&env);
    env.run(&["fetch"]).expect_success();
    // The held message (150 kB) was judged on its header.
    let read = proxy.bytes_from_server();
    assert!(read < 64 * 1024, "{protocol}: read {read} bytes");
    assert_eq!(
        subjects(&env.maildir_messages(env.path("Maildir"))),
        ["boss", "plain"]
    );
    assert_eq!(subjects(&env.maildir_messages(env.path("Spam"))), ["list"]);
    // Left on the server, not seen, everything else gone.
    let left = dovecot.messages(&user, "INBOX");
    assert_eq!(subjects(&left), ["held"], "{protocol}");
    let mut lines = audit(&env);
    lines.sort();
    assert_eq!(
        lines,
        [
            "delivered -",
            "delivered -",
            "delivered filtered: deliver_to spam (rule 2)",
            "filtered leave (rule 3)"
        ],
        "{protocol}"
    );
    let spam_line = fs::read_to_string(env.path("audit.log")).unwrap();
    assert!(
        spam_line
            .lines()
            .any(|l| l.contains("\tspam\tdelivered\tfiltered: deliver_to spam (rule 2)")),
        "the audit line names the destination it went to: {spam_line}"
    );
    // The held message is not downloaded nor asked about again.
    let before = proxy.bytes_from_server();
    env.run(&["fetch"]).expect_code(1);
    let again = proxy.bytes_from_server() - before;
    assert!(
        again < 4096,
        "{protocol}: the second run read {again} bytes"
    );
    assert_eq!(audit(&env).len(), 4);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);
    // A change to the rules asks again: now it is delivered.
    let account = through(&proxy, protocol, &user)
        .line(r#"rule = [{ header = "X-Hold", matches = "^no$", action = "leave" }]"#);
    config(&env, account).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(
        subjects(&env.maildir_messages(env.path("Maildir"))),
        ["boss", "held", "plain"]
    );
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn imap_rules_route_leave_and_are_not_asked_again() {
    rules_route_leave_and_are_not_asked_again("imap");
}

#[test]
fn pop3_rules_route_leave_and_are_not_asked_again() {
    rules_route_leave_and_are_not_asked_again("pop3");
}

/// A filter script in `env`: logs each call ("UID SUBJECT") to
/// `calls.log`, keeps its stdin and environment per subject, and exits as
/// the Subject says.
fn filter_script(env: &Env) -> String {
    let dir = env.path("filter");
    fs::create_dir_all(&dir).unwrap();
    let script = dir.join("spamcheck");
    fs::write(
        &script,
        format!(
            r#"#!/bin/sh
d={d}
input=$(cat)
subject=$(printf '%s\n' "$input" | sed -n 's/^Subject: //p')
echo "$MAILRETR_UID $subject" >> $d/calls.log
printf '%s\n' "$input" > "$d/stdin.$subject"
env | grep '^MAILRETR_' | sort > "$d/env.$subject"
case "$subject" in
  deliver) exit 0 ;;
  leave) exit 1 ;;
  delete) exit 2 ;;
  route) printf 'spam\nhome\n'; exit 3 ;;
  unknown) echo nowhere; exit 3 ;;
  crash) kill -SEGV $$ ;;
  hang) sleep 30 ;;
  *) exit 9 ;;
esac
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

fn calls(env: &Env) -> Vec<String> {
    let text = fs::read_to_string(env.path("filter/calls.log")).unwrap_or_default();
    text.lines()
        .map(|l| l.split_once(' ').map_or("", |(_, s)| s).to_string())
        .collect()
}

fn each_filter_exit_code_does_what_it_says(protocol: &str) {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let subjects_in = [
        "deliver", "leave", "delete", "route", "unknown", "crash", "hang", "weird",
    ];
    for s in subjects_in {
        dovecot.add_message(&user, "INBOX", &message(s, "", &format!("BODY OF {s}")));
    }
    let env = Env::new();
    let script = filter_script(&env);
    let account = AccountBuilder::dovecot("acct", protocol, dovecot, &user).line(&format!(
        "filter_command = [\"{script}\", \"--strict\"]\nfilter_timeout = \"1s\""
    ));
    config(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    // The messages the filter failed on: a local fault, exit 10.
    out.expect_code(10);
    for why in [
        "filter_command: no [destination.nowhere] is defined",
        "was killed by a signal",
        "no answer within 1s; killed it",
        "exited with 9",
    ] {
        let line = out
            .stderr
            .lines()
            .find(|l| l.contains(why))
            .unwrap_or_else(|| panic!("{protocol}: no line with {why:?} in\n{}", out.stderr));
        assert!(line.contains("left on the server"), "{line}");
    }
    assert_eq!(
        subjects(&env.maildir_messages(env.path("Maildir"))),
        ["deliver", "route"],
        "{protocol}"
    );
    assert_eq!(
        subjects(&env.maildir_messages(env.path("Spam"))),
        ["route"],
        "{protocol}"
    );
    // Left (1), or untouched because the filter failed: on the server.
    assert_eq!(
        subjects(&dovecot.messages(&user, "INBOX")),
        ["crash", "hang", "leave", "unknown", "weird"],
        "{protocol}"
    );
    // It got the header only, headers first, with the envelope.
    let stdin = fs::read_to_string(env.path("filter/stdin.deliver")).unwrap();
    assert!(stdin.contains("Subject: deliver\n"), "{stdin}");
    assert!(!stdin.contains("BODY OF"), "{stdin}");
    let vars = fs::read_to_string(env.path("filter/env.deliver")).unwrap();
    for want in [
        "MAILRETR_ACCOUNT=acct\n",
        "MAILRETR_FOLDER=INBOX\n",
        "MAILRETR_FROM=sender@example.org\n",
        &format!("MAILRETR_RECIPIENTS={}\n", user.name),
        "MAILRETR_DESTINATIONS=home\n",
        "MAILRETR_HEADERS_ONLY=1\n",
        &format!("MAILRETR_USER={}\n", user.name),
        "MAILRETR_SERVER=localhost\n",
    ] {
        assert!(vars.contains(want), "{protocol}: {want:?} in\n{vars}");
    }
    // The size the server lists (with CRLF line ends).
    let size = support::to_crlf(&message("deliver", "", "BODY OF deliver")).len();
    assert!(
        vars.contains(&format!("MAILRETR_SIZE={size}\n")),
        "{protocol}: MAILRETR_SIZE={size} in {vars}"
    );
    assert!(
        vars.lines()
            .any(|l| l.starts_with("MAILRETR_UID=") && l.len() > 13),
        "{vars}"
    );
    let mut lines = audit(&env);
    lines.sort();
    assert!(
        lines.contains(&"filtered leave (filter_command)".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"filtered delete (filter_command)".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"delivered filtered: deliver_to spam, home (filter_command)".to_string()),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("skipped ")).count(),
        4,
        "{lines:?}"
    );
    // Run 2: the failures are asked again, what was left is not.
    let first = calls(&env);
    assert_eq!(first.len(), 8, "{first:?}");
    env.run(&["fetch"]).expect_code(10);
    let mut second = calls(&env)[8..].to_vec();
    second.sort();
    assert_eq!(second, ["crash", "hang", "unknown", "weird"], "{protocol}");
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 5);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
}

#[test]
fn imap_each_filter_exit_code_does_what_it_says() {
    each_filter_exit_code_does_what_it_says("imap");
}

#[test]
fn pop3_each_filter_exit_code_does_what_it_says() {
    each_filter_exit_code_does_what_it_says("pop3");
}

#[test]
fn a_filter_that_cannot_start_stops_the_run_and_deletes_nothing() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message("one", "", "1"));
    dovecot.add_message(&user, "INBOX", &message("two", "", "2"));
    let env = Env::new();
    let account = AccountBuilder::dovecot("acct", "imap", dovecot, &user)
        .line("filter_command = [\"/nonexistent/spamcheck\"]");
    config(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    assert!(
        out.stderr.contains("/nonexistent/spamcheck: cannot run it"),
        "{}",
        out.stderr
    );
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 2);
}

#[test]
fn without_top_the_filter_gets_the_downloaded_header() {
    let m = support::to_crlf(&message("delete", "", "BODY OF delete"));
    let size = m.len();
    let mut script = vec![
        Step::line("+OK fake"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
        Step::expect("USER u"),
        Step::line("+OK"),
        Step::expect("PASS topsecret"),
        Step::line("+OK in"),
    ];
    script.extend(pop3_listing(
        format!("+OK\r\n1 {size}\r\n.\r\n"),
        "+OK\r\n1 u-one\r\n.\r\n",
    ));
    script.extend([
        Step::expect("RETR 1"),
        Step::send(format!("+OK\r\n{}.\r\n", String::from_utf8_lossy(&m))),
        Step::expect("DELE 1"),
        Step::line("+OK"),
        Step::expect("QUIT"),
        Step::line("+OK bye"),
        Step::Close,
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    let filter = filter_script(&env);
    let account = AccountBuilder::fake("acct", "pop3", server.port())
        .plaintext()
        .line(&format!("filter_command = [\"{filter}\"]"));
    config(&env, account).write(&env);
    env.run(&["fetch"]).expect_code(1);
    server.assert_no_errors();
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
    let vars = fs::read_to_string(env.path("filter/env.delete")).unwrap();
    assert!(vars.contains("MAILRETR_HEADERS_ONLY=0\n"), "{vars}");
    assert!(vars.contains("MAILRETR_UID=u-one\n"), "{vars}");
    let stdin = fs::read_to_string(env.path("filter/stdin.delete")).unwrap();
    assert!(
        stdin.contains("Subject: delete") && !stdin.contains("BODY OF"),
        "{stdin}"
    );
    assert_eq!(audit(&env), ["filtered delete (filter_command)"]);
}

#[test]
fn with_dash_dash_keep_a_rule_deletes_nothing_and_the_next_run_decides_again() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message("spam", "X-Spam-Flag: YES", "buy"));
    let env = Env::new();
    let account = AccountBuilder::dovecot("acct", "imap", dovecot, &user).line(SPAM_RULE);
    config(&env, account).write(&env);
    let out = env.run(&["fetch", "--keep"]);
    assert!(
        out.stderr.contains("--keep deletes nothing"),
        "{}",
        out.stderr
    );
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);
    assert!(audit(&env).is_empty(), "{:?}", audit(&env));
    env.run(&["fetch"]).expect_code(1);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    assert_eq!(audit(&env), ["filtered delete (rule 1)"]);
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
}

/// A rule routing to an LMTP destination goes through the envelope check
/// (headers first, then the body) to Dovecot's LMTP; the rest goes to the
/// Maildir.
#[test]
fn a_rule_routes_to_lmtp_through_the_envelope_check() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    dovecot.add_message(
        &source,
        "INBOX",
        &message("list", "List-Id: <l.example>", "to lmtp"),
    );
    dovecot.add_message(&source, "INBOX", &message("plain", "", "to the maildir"));
    let env = Env::new();
    let account = AccountBuilder::dovecot("acct", "pop3", dovecot, &source).line(
        r#"rule = [{ header = "List-Id", matches = "l\\.example", deliver_to = ["dovecot"] }]"#,
    );
    config(&env, account)
        .destination(
            "dovecot",
            &format!(
                "type = \"lmtp\"\nsocket = \"{}\"\nrecipient = \"{}\"",
                dovecot.lmtp_socket.display(),
                target.address()
            ),
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(
        subjects(&env.maildir_messages(env.path("Maildir"))),
        ["plain"]
    );
    assert_eq!(subjects(&dovecot.messages(&target, "INBOX")), ["list"]);
    assert!(dovecot.messages(&source, "INBOX").is_empty());
    let log = fs::read_to_string(env.path("audit.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("\tdovecot\tdelivered\tfiltered: deliver_to dovecot (rule 1)")),
        "{log}"
    );
}

#[test]
fn a_bad_rule_is_refused_before_any_connection() {
    // Nothing listens here: a connection attempt would be exit 2.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::new();
    let account = AccountBuilder::fake("acct", "imap", port)
        .plaintext()
        .line(r#"rule = [{ header = "Subject", matches = "([a-z", action = "delete" }]"#);
    let path = config(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(5);
    assert!(
        out.stderr.contains(&format!("{}:", path.display()))
            && out
                .stderr
                .contains("account[acct].rule[1].matches: not a regular expression"),
        "{}",
        out.stderr
    );
}
