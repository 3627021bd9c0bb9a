//! The SMTP destination's security and connection handling through the
//! real `mailretr` binary, against a real aiosmtpd (`support::smtpd`):
//! STARTTLS and implicit TLS with `ca_file`, a `fingerprint` pin, a
//! server that strips STARTTLS, AUTH PLAIN and LOGIN with `password` and
//! `password_command` (never shown in `-vv` or the transcript), one
//! connection reused across a run, and `on_refused = "bounce"` sending a
//! DSN. Also an mbox whose append fails part-way (RLIMIT_FSIZE) is cut
//! back to its old bytes. Missing aiosmtpd is a loud failure
//! (tests/run-all.sh installs it), never a skip.

use crate::support;

use std::fs;
use std::process::Command;

use support::dovecot::{Dovecot, User};
use support::fake::{FakeServer, Step};
use support::smtpd::{Options, Smtpd, Tls};
use support::{AccountBuilder, ConfigBuilder, Env, TestCert};

const PASSWORD: &str = "s3cret-Pa55word";

/// The POP3S account `acct` on the shared Dovecot, delivering to
/// `deliver_to`.
fn pop3s(dovecot: &Dovecot, user: &User, deliver_to: &[&str]) -> AccountBuilder {
    AccountBuilder::dovecot_pop3s("acct", dovecot, user).deliver_to(deliver_to)
}

/// `[general]` without `Received:` headers and `account`; add the relay
/// with `.smtp("relay", port, "jaco@kroon.co.za", extra)`.
fn config(env: &Env, account: AccountBuilder) -> ConfigBuilder {
    ConfigBuilder::new(env)
        .hostname("test.example")
        .general("add_received = false")
        .account(account)
}

fn message(n: usize) -> Vec<u8> {
    format!(
        "Return-Path: <alice@example.org>\nFrom: alice@example.org\nSubject: message {n}\nMessage-ID: <m{n}@test>\n\nbody {n}\n"
    )
    .into_bytes()
}

/// A user with `n` messages in INBOX.
fn user_with(dovecot: &Dovecot, n: usize) -> User {
    let user = dovecot.new_user();
    for i in 1..=n {
        dovecot.add_message(&user, "INBOX", &message(i));
    }
    user
}

#[track_caller]
fn assert_no_password(what: &str, text: &str) {
    assert!(
        !text.contains(PASSWORD),
        "the password shows in {what}:\n{text}"
    );
}

#[test]
fn starttls_with_ca_file_and_auth_plain_keeps_the_password_out_of_logs() {
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, 2);
    let env = Env::new();
    let cert = TestCert::shared();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::Starttls,
            auth: Some(("relayuser".into(), PASSWORD.into())),
            ..Options::default()
        },
    );
    let transcript = env.path("transcript.log");
    let account = pop3s(dovecot, &user, &["relay"])
        .line(&format!("transcript = \"{}\"", transcript.display()));
    config(&env, account)
        .smtp(
            "relay",
            smtpd.port,
            "jaco@kroon.co.za",
            &format!(
                "tls = \"starttls\"\nca_file = \"{}\"\nuser = \"relayuser\"\npassword = \"{PASSWORD}\"",
                cert.cert_pem.display()
            ),
        )
        .write(&env);
    let out = env.run(&["-vv", "fetch"]);
    out.expect_success();
    assert_eq!(smtpd.messages(), vec![message(1), message(2)]);
    for n in 1..=2 {
        let e = smtpd.envelope(n);
        assert!(
            e.starts_with("alice@example.org\njaco@kroon.co.za\n"),
            "{e}"
        );
        assert!(e.contains("tls=True auth=True"), "over TLS, logged in: {e}");
    }
    // The credentials reached the server, by PLAIN, once (one connection).
    assert_eq!(smtpd.auth_log(), format!("PLAIN relayuser {PASSWORD}\n"));
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    assert_no_password("stderr", &out.stderr);
    assert_no_password("stdout", &out.stdout);
    let t = fs::read_to_string(&transcript).unwrap_or_default();
    assert!(t.contains("RETR") || t.contains("TOP"), "a transcript: {t}");
    assert_no_password("the transcript", &t);
}

#[test]
fn implicit_tls_with_auth_login_from_password_command() {
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, 1);
    let env = Env::new();
    let cert = TestCert::shared();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::Implicit,
            auth: Some(("relayuser".into(), PASSWORD.into())),
            exclude_mechanisms: vec!["PLAIN".into()],
            ..Options::default()
        },
    );
    let secret = env.path("secret");
    fs::write(&secret, format!("{PASSWORD}\nsecond line\n")).unwrap();
    let transcript = env.path("transcript.log");
    let account = pop3s(dovecot, &user, &["relay"])
        .line(&format!("transcript = \"{}\"", transcript.display()));
    config(&env, account)
        .smtp(
            "relay",
            smtpd.port,
            "jaco@kroon.co.za",
            &format!(
                "tls = \"implicit\"\nca_file = \"{}\"\nuser = \"relayuser\"\npassword_command = \"cat {}\"",
                cert.cert_pem.display(),
                secret.display()
            ),
        )
        .write(&env);
    let out = env.run(&["-vv", "fetch"]);
    out.expect_success();
    assert_eq!(smtpd.messages(), vec![message(1)]);
    assert!(
        smtpd.envelope(1).contains("tls=True auth=True"),
        "{}",
        smtpd.envelope(1)
    );
    assert_eq!(smtpd.auth_log(), format!("LOGIN relayuser {PASSWORD}\n"));
    assert_no_password("stderr", &out.stderr);
    assert_no_password("stdout", &out.stdout);
    assert_no_password(
        "the transcript",
        &fs::read_to_string(&transcript).unwrap_or_default(),
    );
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

/// `relay` over implicit TLS to `smtpd`, logging in as relayuser with
/// `password`.
fn relay_with_password(config: ConfigBuilder, smtpd: &Smtpd, password: &str) -> ConfigBuilder {
    config.smtp(
        "relay",
        smtpd.port,
        "jaco@kroon.co.za",
        &format!(
            "tls = \"implicit\"\nca_file = \"{}\"\nuser = \"relayuser\"\npassword = \"{password}\"",
            TestCert::shared().cert_pem.display()
        ),
    )
}

#[test]
fn a_wrong_smtp_password_fails_the_run_with_exit_3_and_loses_nothing() {
    // 535 at AUTH is our configuration, not the message: even with
    // on_refused = "delete" nothing is refused or deleted, the run ends
    // with exit 3 naming the destination and the server's answer, and the
    // password is tried once per run, not once per message.
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, 2);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::Implicit,
            auth: Some(("relayuser".into(), PASSWORD.into())),
            ..Options::default()
        },
    );
    let account = || pop3s(dovecot, &user, &["relay"]).line("on_refused = \"delete\"");
    relay_with_password(config(&env, account()), &smtpd, "wrong").write(&env);
    for run in 1..=2 {
        let out = env.run(&["fetch"]);
        out.expect_code(3);
        assert!(
            out.stderr
                .contains("authentication failed: destination relay: AUTH as relayuser: 535 5.7.8"),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert_eq!(smtpd.auth_log(), "PLAIN relayuser wrong\n".repeat(run));
        assert!(smtpd.messages().is_empty());
        assert_eq!(
            dovecot.messages(&user, "INBOX"),
            vec![message(1), message(2)],
            "nothing deleted, nothing recorded as refused"
        );
    }
    relay_with_password(config(&env, account()), &smtpd, PASSWORD).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(smtpd.messages(), vec![message(1), message(2)]);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn a_wrong_smtp_password_beside_a_maildir_spools_and_exits_3() {
    // Fan-out: the Maildir takes each message, the relay owes it through
    // the spool; the run still ends with exit 3, and the spool delivers
    // once the password is right.
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, 2);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::Implicit,
            auth: Some(("relayuser".into(), PASSWORD.into())),
            ..Options::default()
        },
    );
    let maildir = env.path("Maildir");
    let config = || {
        config(&env, pop3s(dovecot, &user, &["home", "relay"]))
            .maildir("home", &maildir)
            .general("retry_delay = \"1s\"\nretry_max_delay = \"1s\"")
    };
    relay_with_password(config(), &smtpd, "wrong").write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(3);
    assert!(
        out.stderr
            .contains("authentication failed: destination relay"),
        "{}",
        out.stderr
    );
    assert_eq!(env.maildir_messages(&maildir).len(), 2);
    assert_eq!(
        smtpd.auth_log().lines().count(),
        1,
        "once for both messages"
    );
    assert!(
        dovecot.messages(&user, "INBOX").is_empty(),
        "spooled, then deleted"
    );
    // The spool keeps them while the password is wrong (exit 3 again)...
    let out = env.run_later(2, &["fetch"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains("AUTH as relayuser: 535"),
        "{}",
        out.stderr
    );
    assert!(smtpd.messages().is_empty());
    // ...and delivers them once it is right.
    relay_with_password(config(), &smtpd, PASSWORD).write(&env);
    env.run_later(4, &["fetch"]).expect_code(1);
    let mut got = smtpd.messages();
    got.sort();
    assert_eq!(got, vec![message(1), message(2)]);
    assert_eq!(
        env.maildir_messages(&maildir).len(),
        2,
        "not delivered twice"
    );
}

#[test]
fn a_fingerprint_pin_replaces_the_ca_and_a_wrong_one_loses_nothing() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::Implicit,
            auth: Some(("relayuser".into(), PASSWORD.into())),
            ..Options::default()
        },
    );
    let maildir = env.path("Maildir");
    let pinned = |user: &User, deliver_to: &[&str], pin: &str| {
        config(&env, pop3s(dovecot, user, deliver_to).line("on_refused = \"delete\""))
            .smtp(
                "relay",
                smtpd.port,
                "jaco@kroon.co.za",
                &format!(
                    "tls = \"implicit\"\nfingerprint = \"{pin}\"\nuser = \"relayuser\"\npassword = \"{PASSWORD}\""
                ),
            )
            .maildir("md", &maildir)
    };
    let wrong = format!("sha256:{}", ["00"; 32].join(":"));

    // SMTP only (headers first): a wrong pin defers the message before
    // download; nothing is sent after the handshake (no AUTH), and the
    // message stays on the server even with on_refused = "delete".
    let user = user_with(dovecot, 1);
    pinned(&user, &["relay"], &wrong).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    assert!(
        out.stderr.contains("fingerprint mismatch"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("deferred"), "{}", out.stderr);
    assert_eq!(smtpd.auth_log(), "", "no credentials after a wrong pin");
    assert!(smtpd.messages().is_empty());
    assert_eq!(dovecot.messages(&user, "INBOX"), vec![message(1)]);
    let actual = out
        .stderr
        .split("server has ")
        .nth(1)
        .expect("a mismatch shows the fingerprint")
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(|c: char| !c.is_ascii_hexdigit())
        .to_string();

    // The right pin (no ca_file: the pin alone is trusted) delivers.
    pinned(&user, &["relay"], &actual).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(smtpd.messages(), vec![message(1)]);
    assert!(dovecot.messages(&user, "INBOX").is_empty());

    // Fan-out (maildir + smtp, the body is downloaded): a wrong pin is a
    // temporary failure, so the SMTP copy is spooled, never refused.
    let user = user_with(dovecot, 1);
    pinned(&user, &["md", "relay"], &wrong).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_success();
    assert!(out.stderr.contains("spooled for relay"), "{}", out.stderr);
    assert_eq!(env.maildir_messages(&maildir), vec![message(1)]);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    let list = env.run(&["queue", "list", "--json"]);
    assert!(list.stdout.contains("<m1@test>"), "{}", list.stdout);
    // Retrying with a wrong pin keeps it in the spool (no bounce) ...
    env.run(&["queue", "flush"]);
    let list = env.run(&["queue", "list", "--json"]);
    assert!(list.stdout.contains("<m1@test>"), "{}", list.stdout);
    assert_eq!(smtpd.messages().len(), 1, "nothing more reached the relay");
    // ... and the right pin delivers it from there.
    pinned(&user, &["md", "relay"], &actual).write(&env);
    env.run(&["queue", "flush"]).expect_success();
    assert_eq!(smtpd.messages(), vec![message(1), message(1)]);
    assert!(env
        .run(&["queue", "list"])
        .stdout
        .contains("The spool is empty."));
}

#[test]
fn a_server_that_strips_starttls_gets_no_credentials_and_no_mail() {
    // A real server that offers AUTH in clear text but no STARTTLS.
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, 1);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::None,
            auth: Some(("relayuser".into(), PASSWORD.into())),
            auth_without_tls: true,
            ..Options::default()
        },
    );
    let relay_keys = format!(
        "tls = \"starttls\"\nca_file = \"{}\"\nuser = \"relayuser\"\npassword = \"{PASSWORD}\"",
        TestCert::shared().cert_pem.display()
    );
    config(
        &env,
        pop3s(dovecot, &user, &["relay"]).line("on_refused = \"bounce\""),
    )
    .smtp("relay", smtpd.port, "jaco@kroon.co.za", &relay_keys)
    .write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    assert!(out.stderr.contains("STARTTLS"), "{}", out.stderr);
    assert_eq!(smtpd.auth_log(), "", "no AUTH without TLS");
    assert!(smtpd.messages().is_empty(), "no mail without TLS");
    // Left on the server for the next run: not refused, bounced or deleted.
    assert_eq!(dovecot.messages(&user, "INBOX"), vec![message(1)]);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    assert_eq!(dovecot.messages(&user, "INBOX"), vec![message(1)]);

    // On the wire: after an EHLO reply without STARTTLS the client says
    // nothing more but QUIT.
    let server = FakeServer::start(vec![
        Step::line("220 fake ESMTP"),
        Step::expect("EHLO"),
        Step::line("250-fake\r\n250-AUTH PLAIN LOGIN\r\n250-SIZE 1000000\r\n250 8BITMIME"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::ExpectClose,
    ]);
    config(
        &env,
        pop3s(dovecot, &user, &["relay"]).line("on_refused = \"delete\""),
    )
    .smtp("relay", server.port(), "jaco@kroon.co.za", &relay_keys)
    .write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    server.assert_no_errors();
    let t = server.transcript();
    let commands: Vec<&str> = t
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .filter(|c| !c.eq_ignore_ascii_case("QUIT"))
        .collect();
    assert_eq!(commands, ["EHLO"], "{t}");
    assert_no_password("the server's transcript", &t);
    assert_eq!(dovecot.messages(&user, "INBOX"), vec![message(1)]);
}

#[test]
fn one_smtp_connection_carries_a_whole_run() {
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, 3);
    let env = Env::new();
    let smtpd = Smtpd::start(&env.path("smtpd"), Options::default());
    config(&env, pop3s(dovecot, &user, &["relay"]))
        .smtp("relay", smtpd.port, "jaco@kroon.co.za", "tls = \"none\"")
        .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(smtpd.messages(), vec![message(1), message(2), message(3)]);
    assert_eq!(smtpd.connections(), 1, "one connection for three messages");
    assert_eq!(smtpd.rsets(), 2, "RSET between transactions");
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

/// Splits a MIME body on `boundary` into its parts (headers and body).
fn mime_parts(body: &str, boundary: &str) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for chunk in body.split(&delimiter).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.strip_prefix('\n').unwrap_or(chunk);
        let (head, body) = chunk.split_once("\n\n").unwrap_or((chunk, ""));
        parts.push((head.to_string(), body.to_string()));
    }
    parts
}

#[test]
fn a_message_refused_at_rcpt_is_bounced_with_its_headers_and_deleted() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let original = b"Return-Path: <alice@example.org>\nFrom: alice@example.org\nTo: nobody@kroon.co.za\nSubject: to nobody\nMessage-ID: <refused@test>\n\nBODY-MARKER must not be in the bounce\n";
    dovecot.add_message(&user, "INBOX", original);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            refuse: vec!["nobody@kroon.co.za".into()],
            ..Options::default()
        },
    );
    config(
        &env,
        pop3s(dovecot, &user, &["relay"]).line("on_refused = \"bounce\""),
    )
    .general("bounce_from = \"MAILER-DAEMON@test.example\"")
    .smtp("relay", smtpd.port, "nobody@kroon.co.za", "tls = \"none\"")
    .write(&env);
    let out = env.run(&["fetch"]);
    assert!(
        out.code == 0 || out.code == 1,
        "bounced is done with: {}",
        out.stderr
    );
    assert!(out.stderr.contains("bounced"), "{}", out.stderr);
    assert!(
        dovecot.messages(&user, "INBOX").is_empty(),
        "deleted after the bounce"
    );

    let got = smtpd.messages();
    assert_eq!(got.len(), 1, "one DSN, nothing else");
    let envelope = smtpd.envelope(1);
    assert!(
        envelope.starts_with("<>\nalice@example.org\n"),
        "null sender, to the envelope sender: {envelope:?}"
    );
    let dsn = String::from_utf8(got[0].clone()).unwrap();
    let (head, body) = dsn.split_once("\n\n").unwrap();
    let field = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {head}"))
            .to_string()
    };
    assert!(
        field("From: ").contains("MAILER-DAEMON@test.example"),
        "bounce_from: {head}"
    );
    assert!(field("To: ").contains("alice@example.org"), "{head}");
    let unfolded = head.replace("\n ", " ").replace("\n\t", " ");
    let ct = unfolded
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
        .expect("a Content-Type");
    assert!(
        ct.contains("multipart/report") && ct.contains("report-type=delivery-status"),
        "{ct}"
    );
    let boundary = ct
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .split(';')
        .next()
        .unwrap()
        .trim()
        .trim_matches('"');
    let parts = mime_parts(body, boundary);
    assert_eq!(parts.len(), 3, "text, status, headers: {dsn}");
    assert!(parts[0].0.contains("text/plain"), "{:?}", parts[0]);
    assert!(
        parts[1].0.contains("message/delivery-status"),
        "{:?}",
        parts[1]
    );
    let status = &parts[1].1;
    let code = status
        .lines()
        .find_map(|l| l.strip_prefix("Status: "))
        .expect("a Status field");
    // The server's enhanced status and reply, typed as SMTP (RFC 3464).
    assert_eq!(code, "5.1.1", "{status}");
    assert!(
        status.contains("Diagnostic-Code: smtp; 550 5.1.1 <nobody@kroon.co.za>: no such user here"),
        "{status}"
    );
    assert!(
        !parts[0].1.contains("spool"),
        "refused before download, never in the spool: {}",
        parts[0].1
    );
    assert!(status.contains("Action: failed"), "{status}");
    assert!(
        status.contains("Final-Recipient: rfc822; nobody@kroon.co.za"),
        "{status}"
    );
    assert!(
        status.contains("no such user"),
        "the server's words: {status}"
    );
    assert!(parts[2].0.contains("text/rfc822-headers"), "{:?}", parts[2]);
    let headers = &parts[2].1;
    assert!(headers.contains("Message-ID: <refused@test>"), "{headers}");
    assert!(headers.contains("Subject: to nobody"), "{headers}");
    assert!(!dsn.contains("BODY-MARKER"), "headers only: {dsn}");
}

#[test]
fn a_failed_mbox_append_leaves_the_file_as_it_was_and_spools_the_message() {
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, 1);
    let env = Env::new();
    let mbox = env.path("mbox");
    // An mbox just under a 1 MiB file size limit: the append starts, runs
    // into the limit part-way (EFBIG) and must be cut back.
    const LIMIT_KB: u64 = 1024;
    let mut before = b"From someone@x Thu Jan  1 00:00:00 2024\nSubject: old\n\n".to_vec();
    while (before.len() as u64) < LIMIT_KB * 1024 - 40 {
        before.extend_from_slice(b"old old old old old old old old old old\n");
    }
    before.extend_from_slice(b"\n");
    assert!((before.len() as u64) < LIMIT_KB * 1024);
    fs::write(&mbox, &before).unwrap();
    config(&env, pop3s(dovecot, &user, &["mbox"]))
        .mbox("mbox", &mbox)
        .write(&env);
    // bash: ignore SIGXFSZ (so a write past the limit fails with EFBIG
    // instead of killing the process), set the limit, run mailretr.
    let base = env.cmd();
    let mut cmd = Command::new("/bin/bash");
    cmd.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.current_dir(env.root())
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {LIMIT_KB}; exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_mailretr"))
        .arg("fetch");
    let out = support::run_command(cmd, None, support::RUN_TIMEOUT);
    out.expect_success();
    assert!(out.stderr.contains("spooled for mbox"), "{}", out.stderr);
    assert!(out.stderr.contains("cannot write"), "{}", out.stderr);
    assert!(
        fs::read(&mbox).unwrap() == before,
        "the mbox is byte for byte what it was ({} bytes, was {})",
        fs::metadata(&mbox).unwrap().len(),
        before.len()
    );
    assert!(!env.path("mbox.lock").exists(), "dotlock released");
    assert!(dovecot.messages(&user, "INBOX").is_empty(), "spooled");

    // Without the limit the spool delivers it right after the old mail.
    env.run(&["queue", "flush"]).expect_success();
    let after = fs::read(&mbox).unwrap();
    assert!(after.starts_with(&before));
    let added = String::from_utf8_lossy(&after[before.len()..]).into_owned();
    assert!(added.starts_with("From alice@example.org "), "{added}");
    assert!(
        added.ends_with("Subject: message 1\nMessage-ID: <m1@test>\n\nbody 1\n\n"),
        "{added}"
    );
}
