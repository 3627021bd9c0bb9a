//! POP3 → Maildir through the real `mailretr` binary, against a real
//! Dovecot (tests/support) and, for what Dovecot will not do, scripted
//! fake servers.

use crate::support;

use std::time::Duration;

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::fake::{pop3_kept_listing, pop3_listing, FakeServer, Step};
use support::{delivered, sorted};
use support::{strip_received, AccountBuilder, ConfigBuilder, Env};

/// The POP3S account `acct` on the shared Dovecot.
fn pop3s(dovecot: &Dovecot, user: &User) -> AccountBuilder {
    AccountBuilder::dovecot_pop3s("acct", dovecot, user)
}

/// `account` delivering to `Maildir` in `env`, as `test.example`.
fn config(env: &Env, account: AccountBuilder) -> ConfigBuilder {
    ConfigBuilder::single(env, account).hostname("test.example")
}

fn delivered_home(env: &Env) -> Vec<Vec<u8>> {
    delivered(&env.path("Maildir"))
}

/// What a POP3 client gets back for a message without a final newline is
/// indistinguishable from one with it, unless the server's size says
/// otherwise; Dovecot's does, so delivery is byte-exact either way.
#[test]
fn delivers_awkward_corpus_byte_exact_and_rerun_finds_nothing() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let mut originals = Vec::new();
    for (_, bytes) in corpus::awkward() {
        dovecot.add_message(&user, "INBOX", &bytes);
        originals.push(bytes);
    }
    let big = corpus::big(20 * 1024 * 1024);
    dovecot.add_message(&user, "INBOX", &big);
    originals.push(big);

    let env = Env::new();
    config(&env, pop3s(dovecot, &user)).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "", "quiet on success");
    assert_eq!(out.stdout, "");
    assert_eq!(delivered_home(&env), sorted(originals));
    assert!(
        dovecot.messages(&user, "INBOX").is_empty(),
        "deleted after delivery"
    );

    // Every message got exactly one Received header naming the account.
    for m in env.maildir_messages(env.path("Maildir")) {
        let text = String::from_utf8_lossy(&m[..200.min(m.len())]).to_string();
        assert!(
            text.starts_with("Received: from localhost by test.example with POP3S"),
            "{text}"
        );
        assert!(text.contains("(account acct)"), "{text}");
    }

    let again = env.run(&["fetch"]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert_eq!(again.stderr, "");
    assert_eq!(again.stdout, "");
}

#[test]
fn keep_mode_never_fetches_twice_and_fetch_all_does() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for m in corpus::realistic(5, 7) {
        dovecot.add_message(&user, "INBOX", &m);
    }
    let env = Env::new();
    config(
        &env,
        pop3s(dovecot, &user)
            .keep(true)
            .line("add_received = false"),
    )
    .write(&env);
    assert_eq!(env.run(&["fetch"]).code, 0);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 5);
    assert_eq!(
        dovecot.messages(&user, "INBOX").len(),
        5,
        "kept on the server"
    );

    dovecot.add_message(
        &user,
        "INBOX",
        b"Subject: sixth\nMessage-ID: <6@t>\n\nsix\n",
    );
    let out = env.run(&["-v", "fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("1 messages"), "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 6);
    assert_eq!(env.run(&["fetch"]).code, 1);

    // --all ignores the seen-state; --check counts without fetching.
    assert_eq!(env.run(&["fetch", "--all"]).code, 0);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 12);
    let check = env.run(&["fetch", "--check"]);
    assert_eq!(check.code, 1, "{}", check.stderr);
    assert!(
        check.stdout.contains("acct: 0 new messages"),
        "{}",
        check.stdout
    );
    dovecot.add_message(&user, "INBOX", b"Subject: seventh\n\nseven\n");
    let check = env.run(&["fetch", "--check"]);
    assert_eq!(check.code, 0);
    assert!(
        check.stdout.contains("acct: 1 new messages"),
        "{}",
        check.stdout
    );
    assert_eq!(
        env.maildir_messages(env.path("Maildir")).len(),
        12,
        "check fetched nothing"
    );

    // Switching to delete mode removes what was delivered, and only that.
    config(&env, pop3s(dovecot, &user).keep(false)).write(&env);
    assert_eq!(env.run(&["fetch"]).code, 0);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 13);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn wrong_password_exits_3_and_changes_nothing() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: x\n\nbody\n");
    let env = Env::new();
    config(&env, pop3s(dovecot, &user).password("wrong")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("account acct"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        !out.stderr.contains("wrong"),
        "no secret in errors: {}",
        out.stderr
    );
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
}

#[test]
fn every_auth_mechanism_works_against_dovecot() {
    let dovecot = Dovecot::shared();
    for mech in ["user", "plain", "login", "cram-md5", "scram-sha-256"] {
        let user = dovecot.new_user();
        dovecot.add_message(&user, "INBOX", b"Subject: auth\n\nbody\n");
        let env = Env::new();
        let account = pop3s(dovecot, &user).line(&format!("auth = [\"{mech}\"]"));
        config(&env, account.clone().password("not-the-password")).write(&env);
        let out = env.run(&["-vv", "fetch"]);
        assert_eq!(out.code, 3, "{mech} with a wrong password: {}", out.stderr);
        assert_eq!(dovecot.messages(&user, "INBOX").len(), 1, "{mech}");
        config(&env, account).write(&env);
        let out = env.run(&["-vv", "fetch"]);
        assert_eq!(out.code, 0, "{mech}: {}", out.stderr);
        assert!(
            !out.stderr.contains(&user.password),
            "{mech}: password in transcript"
        );
        assert!(out.stderr.contains("<redacted>"), "{mech}: {}", out.stderr);
        // SASL challenges are hidden too: SCRAM's salt and server proof
        // would allow offline guessing.
        assert!(
            !out.stderr
                .lines()
                .any(|l| l.contains(": S: + ") && !l.ends_with("+ <redacted>")),
            "{mech}: a SASL challenge in the transcript: {}",
            out.stderr
        );
        if mech == "scram-sha-256" {
            assert!(
                out.stderr.contains("C: AUTH SCRAM-SHA-256 <redacted>"),
                "{}",
                out.stderr
            );
        }
    }
}

#[test]
fn password_command_is_used_and_its_failure_is_an_auth_error() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: x\n\nbody\n");
    let env = Env::new();
    let command = format!("echo {}", user.password);
    config(&env, pop3s(dovecot, &user).password_command(&command)).write(&env);
    assert_eq!(env.run(&["fetch"]).code, 0);
    config(&env, pop3s(dovecot, &user).password_command("exit 1")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("password_command"), "{}", out.stderr);
}

#[test]
fn starttls_against_dovecot_and_plaintext_needs_consent() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: x\n\nbody\n");
    let env = Env::new();
    let base = pop3s(dovecot, &user).port(dovecot.pop3);
    config(&env, base.clone().tls("starttls")).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("C: STLS"), "{}", out.stderr);

    let plain = base.tls("none");
    config(&env, plain.clone()).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("allow_plaintext"), "{}", out.stderr);
    assert!(out.stderr.contains("config.toml:"), "{}", out.stderr);
    config(&env, plain.allow_plaintext()).write(&env);
    assert_eq!(env.run(&["fetch"]).code, 1);
}

#[test]
fn certificates_are_verified_unless_pinned() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: x\n\nbody\n");
    let env = Env::new();
    let no_ca = pop3s(dovecot, &user).no_ca_file();
    config(&env, no_ca.clone()).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 2, "untrusted certificate: {}", out.stderr);
    assert!(out.stderr.contains("TLS"), "{}", out.stderr);

    // A wrong pin fails and shows the real fingerprint; the right one works.
    let wrong = format!("sha256:{}", ["00"; 32].join(":"));
    let pinned = |pin: &str| {
        config(
            &env,
            no_ca.clone().line(&format!("fingerprint = \"{pin}\"")),
        )
    };
    pinned(&wrong).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let actual = out
        .stderr
        .split("server has ")
        .nth(1)
        .expect("mismatch shows the fingerprint")
        .trim()
        .to_string();
    pinned(&actual).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn ad_hoc_url_fetch() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: adhoc\n\nbody\n");
    let env = Env::new();
    let url = format!("pop3s://{}@localhost:{}", user.name, dovecot.pop3s);
    let maildir = env.path("AdHoc");
    let out = env
        .cmd()
        .args(["fetch", "--keep", &url, "--to", maildir.to_str().unwrap()])
        .env("MAILRETR_PASSWORD", &user.password)
        .env("SSL_CERT_FILE", &dovecot.cert_pem)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.maildir_messages(&maildir).len(), 1);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1, "--keep");
    // Without a password and without a terminal: a clear config error.
    let out = env
        .cmd()
        .args(["fetch", &url, "--to", maildir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn max_size_leaves_big_messages_and_says_so_once() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: small\n\nbody\n");
    dovecot.add_message(&user, "INBOX", &corpus::big(300_000));
    let env = Env::new();
    config(&env, pop3s(dovecot, &user).line("max_size = \"100KB\"")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("over max_size"), "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1, "big one left");
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "", "reported once");
    // --limit overrides for one run.
    assert_eq!(env.run(&["fetch", "--limit", "1MB"]).code, 0);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn bad_config_exits_5_with_file_line_and_key_before_connecting() {
    let env = Env::new();
    let path = env.write_config(
        "[[account]]\nname = \"a\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = 1\nuser = \"u\"\nkeepp = true\n",
    );
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    let expected = format!("{}:7: keepp: unknown field", path.display());
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1);

    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 5);

    env.write_config(
        "[[account]]\nname = \"a\"\nprotocol = \"pop3\"\nhost = \"h\"\nuser = \"u\"\ndeliver_to = [\"nowhere\"]\n",
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 5);
    assert!(
        out.stderr.contains(":6: account[a].deliver_to:"),
        "{}",
        out.stderr
    );
}

#[test]
fn readable_password_file_exits_6_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let path = env.write_config(
        "[[account]]\nname = \"a\"\nprotocol = \"pop3\"\nhost = \"h\"\nuser = \"u\"\npassword = \"p\"\n",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("chmod 600 {}", path.display())),
        "{}",
        out.stderr
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("account a: pop3://u@h:995"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_held_account_lock_exits_8() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let env = Env::new();
    config(&env, pop3s(dovecot, &user)).write(&env);
    let locks = env.path("state").join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::File::create(locks.join("acct.lock")).unwrap();
    lock.lock().unwrap();
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 8, "{}", out.stderr);
    assert!(out.stderr.contains("account acct"), "{}", out.stderr);
    drop(lock);
    assert_eq!(env.run(&["fetch"]).code, 1);
}

// ---- scripted servers: what Dovecot will not do ----

/// The account `fake` for a fake server on `port` with the given TLS mode.
fn fake(port: u16, tls: &str) -> AccountBuilder {
    AccountBuilder::fake("fake", "pop3", port)
        .tls(tls)
        .allow_plaintext()
}

fn assert_no_credentials(server: &FakeServer) {
    let sent = server.transcript();
    for word in ["USER", "PASS", "AUTH", "APOP", "topsecret"] {
        assert!(!sent.contains(word), "sent {word} in clear: {sent}");
    }
}

#[test]
fn starttls_missing_refused_or_injected_sends_no_credentials() {
    let capa_without_stls = "+OK\r\nUSER\r\nUIDL\r\n.\r\n";
    let scripts: Vec<(&str, Vec<Step>)> = vec![
        (
            "not offered",
            vec![
                Step::Send(b"+OK fake\r\n".to_vec()),
                Step::Expect("CAPA".into()),
                Step::Send(capa_without_stls.as_bytes().to_vec()),
                Step::ExpectAny,
            ],
        ),
        (
            "refused",
            vec![
                Step::Send(b"+OK fake\r\n".to_vec()),
                Step::Expect("CAPA".into()),
                Step::Send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n".to_vec()),
                Step::Expect("STLS".into()),
                Step::Send(b"-ERR not today\r\n".to_vec()),
                Step::ExpectAny,
            ],
        ),
        (
            "injected",
            vec![
                Step::Send(b"+OK fake\r\n".to_vec()),
                Step::Expect("CAPA".into()),
                Step::Send(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n".to_vec()),
                Step::Expect("STLS".into()),
                Step::Send(b"+OK begin TLS\r\n+OK injected\r\n".to_vec()),
                Step::ExpectAny,
            ],
        ),
    ];
    for (what, script) in scripts {
        let server = FakeServer::start(script);
        let env = Env::new();
        ConfigBuilder::single(&env, fake(server.port(), "starttls")).write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 2, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("account fake"),
            "{what}: {}",
            out.stderr
        );
        assert_no_credentials(&server);
    }
}

/// Script for a plaintext session that logs in and lists two messages.
fn login_and_list(uidl: bool) -> Vec<Step> {
    let uidl: &[u8] = if uidl {
        b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n"
    } else {
        b"-ERR no UIDL here\r\n"
    };
    login_and(b"+OK\r\n1 20\r\n2 20\r\n.\r\n", uidl)
}

/// Script for a plaintext session that logs in and answers LIST and
/// UIDL with these replies.
fn login_and(list: &[u8], uidl: &[u8]) -> Vec<Step> {
    let mut steps = login();
    steps.extend(pop3_listing(list, uidl));
    steps
}

/// Script for a plaintext session that logs in.
fn login() -> Vec<Step> {
    login_offering("USER\r\nUIDL\r\n")
}

/// `login`, the server's CAPA listing `capabilities` (CRLF-terminated
/// lines).
fn login_offering(capabilities: &str) -> Vec<Step> {
    vec![
        Step::Send(b"+OK fake\r\n".to_vec()),
        Step::Expect("CAPA".into()),
        Step::send(format!("+OK\r\n{capabilities}.\r\n")),
        Step::Expect("USER u".into()),
        Step::Send(b"+OK\r\n".to_vec()),
        Step::Expect("PASS topsecret".into()),
        Step::Send(b"+OK in\r\n".to_vec()),
    ]
}

#[test]
fn dropped_connection_mid_message_loses_nothing() {
    let mut script = login_and_list(true);
    script.extend([
        Step::Expect("RETR 1".into()),
        Step::Send(b"+OK\r\nSubject: one\r\n\r\nbody one\r\n.\r\n".to_vec()),
        // DELE 1 would come with its batch's commit, after RETR 2.
        Step::Expect("RETR 2".into()),
        Step::Send(b"+OK\r\nSubject: two\r\n\r\npartial".to_vec()),
        Step::Close,
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("account fake"), "{}", out.stderr);
    // The first message was delivered and recorded; the second is not
    // half-delivered; and QUIT was never sent, so the server deleted nothing.
    let got = env.maildir_messages(env.path("Maildir"));
    assert_eq!(got.len(), 1);
    assert!(strip_received(&got[0]).starts_with(b"Subject: one"));
    assert!(!server.transcript().contains("QUIT"));
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

#[test]
fn endless_line_is_a_bounded_protocol_error() {
    let mut script = login_and_list(true);
    script.extend([
        Step::Expect("RETR 1".into()),
        Step::Send(b"+OK\r\n".to_vec()),
        Step::SendForever(b"x".repeat(65536)),
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("longer than"), "{}", out.stderr);
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
}

#[test]
fn refused_dele_is_reported_and_retried_next_run() {
    let mut script = login_and_list(true);
    script.extend([
        Step::Expect("RETR 1".into()),
        Step::Send(b"+OK\r\nSubject: one\r\n\r\nbody\r\n.\r\n".to_vec()),
        Step::Expect("RETR 2".into()),
        Step::Send(b"+OK\r\nSubject: two\r\n\r\nbody\r\n.\r\n".to_vec()),
        // Deletions follow the batch's commit.
        Step::Expect("DELE 1".into()),
        Step::Send(b"-ERR cannot delete\r\n".to_vec()),
        Step::Expect("DELE 2".into()),
        Step::Send(b"+OK\r\n".to_vec()),
        Step::Expect("QUIT".into()),
        Step::Send(b"+OK bye\r\n".to_vec()),
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(out.stderr.contains("DELE 1"), "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
    assert!(server.errors().is_empty(), "{:?}", server.errors());

    // Next run: message 1 is known, so it is deleted, not fetched again.
    let mut next = login_and(b"+OK\r\n1 20\r\n.\r\n", b"+OK\r\n1 aaa\r\n.\r\n");
    next.extend([
        Step::Expect("DELE 1".into()),
        Step::Send(b"+OK\r\n".to_vec()),
        Step::Expect("QUIT".into()),
        Step::Send(b"+OK bye\r\n".to_vec()),
    ]);
    let server = FakeServer::start(next);
    ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

#[test]
fn no_uidl_works_in_delete_mode_and_is_refused_in_keep_mode() {
    let mut script = login();
    script.extend(pop3_kept_listing(
        b"+OK\r\n1 20\r\n2 20\r\n.\r\n",
        b"-ERR no UIDL here\r\n",
        true,
    ));
    script.extend([
        Step::Expect("QUIT".into()),
        Step::Send(b"+OK bye\r\n".to_vec()),
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(server.port(), "none").keep(true)).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("UIDL"), "{}", out.stderr);
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());

    let mut script = login_and_list(false);
    script.extend([
        Step::Expect("RETR 1".into()),
        Step::Send(b"+OK\r\nSubject: one\r\n\r\nbody\r\n.\r\n".to_vec()),
        Step::Expect("RETR 2".into()),
        Step::Send(b"+OK\r\nSubject: two\r\n\r\nbody\r\n.\r\n".to_vec()),
        Step::Expect("DELE 1".into()),
        Step::Send(b"+OK\r\n".to_vec()),
        Step::Expect("DELE 2".into()),
        Step::Send(b"+OK\r\n".to_vec()),
        Step::Expect("QUIT".into()),
        Step::Send(b"+OK bye\r\n".to_vec()),
    ]);
    let server = FakeServer::start(script);
    ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
    assert!(server.errors().is_empty(), "{:?}", server.errors());
}

/// A POP3 server that runs SCRAM-SHA-256 correctly up to its final
/// message, whose `v=` signature is wrong: it does not know the password.
/// Returns the port and a handle yielding every line the client sent.
fn scram_liar_pop3() -> (u16, std::thread::JoinHandle<Vec<String>>) {
    use base64::Engine as _;
    use std::io::{BufRead, BufReader, Write};
    let b64 = base64::engine::general_purpose::STANDARD;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut input = BufReader::new(stream);
        let mut seen = Vec::new();
        let mut read = |seen: &mut Vec<String>| {
            let mut line = String::new();
            input.read_line(&mut line).ok()?;
            (!line.is_empty()).then(|| {
                seen.push(line.trim_end().to_string());
                line.trim_end().to_string()
            })
        };
        out.write_all(b"+OK fake\r\n").unwrap();
        while let Some(line) = read(&mut seen) {
            let reply = if line == "CAPA" {
                "+OK\r\nSASL SCRAM-SHA-256 PLAIN\r\nUSER\r\nUIDL\r\n.\r\n".to_string()
            } else if let Some(first) = line.strip_prefix("AUTH SCRAM-SHA-256 ") {
                let first = String::from_utf8(b64.decode(first).unwrap()).unwrap();
                let nonce = first.split(",r=").nth(1).unwrap().to_string();
                let server_first = format!("r={nonce}srvnonce,s={},i=4096", b64.encode("salt"));
                format!("+ {}\r\n", b64.encode(server_first))
            } else if line.starts_with("AUTH") || line == "*" {
                "-ERR no\r\n".to_string()
            } else if line == "QUIT" {
                "+OK bye\r\n".to_string()
            } else if seen.len() == 3 {
                // The client-final message: answer with a wrong signature.
                format!(
                    "+ {}\r\n",
                    b64.encode(format!("v={}", b64.encode([7u8; 32])))
                )
            } else {
                "+OK whatever you say\r\n".to_string()
            };
            if out.write_all(reply.as_bytes()).is_err() {
                break;
            }
        }
        seen
    });
    (port, handle)
}

#[test]
fn scram_server_with_a_wrong_signature_is_not_trusted() {
    let (port, server) = scram_liar_pop3();
    let env = Env::new();
    ConfigBuilder::single(&env, fake(port, "none")).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("signature"), "{}", out.stderr);
    assert!(!out.stderr.contains("topsecret"), "{}", out.stderr);
    let seen = server.join().unwrap();
    assert!(seen[1].starts_with("AUTH SCRAM-SHA-256 "), "{seen:?}");
    assert_eq!(seen[3], "*", "the exchange is cancelled: {seen:?}");
    for line in &seen {
        for command in ["UIDL", "LIST", "RETR", "STAT", "DELE", "PASS"] {
            assert!(!line.starts_with(command), "{seen:?}");
        }
    }
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
}

/// The end of a session: DELE each of `numbers`, then QUIT.
fn dele_and_quit(numbers: &[u32]) -> Vec<Step> {
    let mut steps = Vec::new();
    for n in numbers {
        steps.push(Step::Expect(format!("DELE {n}")));
        steps.push(Step::Send(b"+OK\r\n".to_vec()));
    }
    steps.push(Step::Expect("QUIT".into()));
    steps.push(Step::Send(b"+OK bye\r\n".to_vec()));
    steps
}

fn retr(n: u32, subject: &str) -> Vec<Step> {
    vec![
        Step::Expect(format!("RETR {n}")),
        Step::Send(format!("+OK\r\nSubject: {subject}\r\n\r\nbody\r\n.\r\n").into_bytes()),
    ]
}

/// RFC 1939 lets a server hand out a unique-id again once its message is
/// deleted. A completed QUIT confirms the deletion, so mailretr forgets
/// the id: the new message under the old id is fetched, never deleted
/// unread.
#[test]
fn a_reused_uidl_after_a_completed_quit_is_a_new_message() {
    let env = Env::new();
    let mut first = login_and(b"+OK\r\n1 20\r\n.\r\n", b"+OK\r\n1 aaa\r\n.\r\n");
    first.extend(retr(1, "first"));
    first.extend(dele_and_quit(&[1]));
    let mut second = login_and(b"+OK\r\n1 20\r\n.\r\n", b"+OK\r\n1 aaa\r\n.\r\n");
    second.extend(retr(1, "second, same id"));
    second.extend(dele_and_quit(&[1]));
    for script in [first, second] {
        let server = FakeServer::start(script);
        ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(server.settle(Duration::from_secs(10)));
        assert!(server.errors().is_empty(), "{:?}", server.errors());
    }
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
}

/// A seen UIDL whose message now has another size is not the message
/// delivered before (its deletion was never confirmed, and the server
/// reused the id): fetched, not deleted unread.
#[test]
fn a_seen_uidl_with_another_size_is_fetched_not_deleted() {
    let env = Env::new();
    let mut first = login_and(b"+OK\r\n1 20\r\n.\r\n", b"+OK\r\n1 aaa\r\n.\r\n");
    first.extend(retr(1, "first"));
    first.extend([
        Step::Expect("DELE 1".into()),
        Step::Send(b"+OK\r\n".to_vec()),
        // The connection breaks before QUIT is answered: the deletion is
        // not confirmed, and the id stays known.
        Step::Expect("QUIT".into()),
        Step::Close,
    ]);
    let server = FakeServer::start(first);
    ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
    let out = env.run(&["fetch"]);
    assert_ne!(out.code, 1, "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);

    let mut second = login_and(b"+OK\r\n1 4711\r\n.\r\n", b"+OK\r\n1 aaa\r\n.\r\n");
    second.extend(retr(1, "another message under the same id"));
    second.extend(dele_and_quit(&[1]));
    let server = FakeServer::start(second);
    ConfigBuilder::single(&env, fake(server.port(), "none")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(server.settle(Duration::from_secs(10)));
    assert!(server.errors().is_empty(), "{:?}", server.errors());
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
}

/// Two seen UIDLs reused for messages whose sizes changed by amounts
/// that cancel out: STAT's octets are the total recorded, and only LIST's
/// sizes show the change. A run that may delete what it saw (delete
/// mode, or `keep` with retention) asks LIST, so both are fetched as new
/// messages, never deleted unread. (A run with `keep` alone may skip
/// LIST: it deletes nothing, see `nomail`.)
#[test]
fn reused_uidls_whose_sizes_cancel_out_are_fetched_where_a_run_may_delete() {
    let uidl = b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n";
    for (what, keep) in [("delete mode", false), ("keep with retention", true)] {
        let env = Env::new();
        let mut first = login_and(b"+OK\r\n1 20\r\n2 30\r\n.\r\n", uidl);
        first.extend(retr(1, "one"));
        first.extend(retr(2, "two"));
        let deleted: &[u32] = if keep { &[] } else { &[1, 2] };
        first.extend(dele_and_quit(deleted));
        if !keep {
            // The connection breaks before QUIT is answered: the
            // deletions are not confirmed, and the ids stay known.
            first.pop();
            first.push(Step::Close);
        }
        let mut second = login_and(b"+OK\r\n1 25\r\n2 25\r\n.\r\n", uidl);
        second.extend(retr(1, "three, under the id of one"));
        second.extend(retr(2, "four, under the id of two"));
        second.extend(dele_and_quit(deleted));
        for (i, script) in [first, second].into_iter().enumerate() {
            let server = FakeServer::start(script);
            let mut account = fake(server.port(), "none");
            if keep {
                account = account.keep(true).line("delete_bigger_than = \"20MB\"");
            }
            ConfigBuilder::single(&env, account).write(&env);
            let out = env.run(&["fetch"]);
            assert_ne!(out.code, 1, "{what} run {i}: {}", out.stderr);
            assert!(server.settle(Duration::from_secs(10)), "{what} run {i}");
            assert!(
                server.errors().is_empty(),
                "{what} run {i}: {:?}",
                server.errors()
            );
        }
        assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 4, "{what}");
    }
}

/// With `keep = true` a run may take the mailbox as unchanged on STAT
/// and its last message's `UIDL n` and `LIST n` (see `nomail`); an
/// answer about another message than the one asked for proves nothing,
/// and the mailbox is listed.
#[test]
fn an_answer_about_another_message_gets_the_mailbox_listed() {
    let with_pipelining = || login_offering("USER\r\nUIDL\r\nPIPELINING\r\n");
    let list = b"+OK\r\n1 20\r\n2 20\r\n.\r\n";
    let uidl = b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n";
    let mut first = with_pipelining();
    first.extend(pop3_kept_listing(list, uidl, true));
    first.extend(retr(1, "one"));
    first.extend(retr(2, "two"));
    first.extend(dele_and_quit(&[]));
    let mut second = with_pipelining();
    second.extend([
        Step::expect("STAT"),
        Step::line("+OK 2 40"),
        Step::expect("UIDL 2"),
        // About message 1, whose id and size were recorded.
        Step::line("+OK 1 aaa"),
        Step::expect("LIST 2"),
        Step::line("+OK 1 20"),
        Step::expect("LIST"),
        Step::send(list),
        Step::expect("UIDL"),
        Step::send(uidl),
    ]);
    second.extend(dele_and_quit(&[]));
    let env = Env::new();
    for (i, script) in [first, second].into_iter().enumerate() {
        let server = FakeServer::start(script);
        ConfigBuilder::single(&env, fake(server.port(), "none").keep(true)).write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, [0, 1][i], "run {i}: {}", out.stderr);
        assert!(server.settle(Duration::from_secs(10)), "run {i}");
        assert!(server.errors().is_empty(), "run {i}: {:?}", server.errors());
    }
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
}

/// UIDLs two messages share, or with bytes RFC 1939 does not allow (which
/// a lossy conversion would make equal), are no ids: with `fetch_limit =
/// 1` the first message's delivery must not make the second one look
/// delivered on the next run.
#[test]
fn shared_or_malformed_uidls_are_not_ids() {
    for (what, listing, left) in [
        (
            "shared",
            &b"+OK\r\n1 dup\r\n2 dup\r\n.\r\n"[..],
            &b"+OK\r\n1 dup\r\n.\r\n"[..],
        ),
        (
            "malformed",
            b"+OK\r\n1 a\xff\r\n2 a\xfe\r\n.\r\n",
            b"+OK\r\n1 a\xfe\r\n.\r\n",
        ),
    ] {
        let env = Env::new();
        let mut first = login_and(b"+OK\r\n1 20\r\n2 20\r\n.\r\n", listing);
        first.extend(retr(1, "one"));
        first.extend(dele_and_quit(&[1]));
        let mut second = login_and(b"+OK\r\n1 20\r\n.\r\n", left);
        second.extend(retr(1, "two"));
        second.extend(dele_and_quit(&[1]));
        for (i, script) in [first, second].into_iter().enumerate() {
            let server = FakeServer::start(script);
            let account = fake(server.port(), "none").line("fetch_limit = 1");
            ConfigBuilder::single(&env, account).write(&env);
            let out = env.run(&["fetch"]);
            assert!(
                out.code == 0 || out.code == 13,
                "{what} run {i}: {}",
                out.stderr
            );
            assert!(server.settle(Duration::from_secs(10)));
            assert!(
                server.errors().is_empty(),
                "{what} run {i}: {:?}",
                server.errors()
            );
        }
        assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2, "{what}");
    }
}

/// A scripted POP3S session up to the client's CAPA: implicit TLS, the
/// greeting, then `CAPA` expected.
fn pop3s_up_to_capa() -> Vec<Step> {
    vec![Step::StartTls, Step::line("+OK fake"), Step::expect("CAPA")]
}

/// Three `fetch` runs of a keep-mode account (one state) against the
/// scripted POP3S `server`, each finding nothing new and saying nothing;
/// then the server's scripts are done, without errors.
fn three_quiet_runs_with_nothing_new(server: &FakeServer) {
    let env = Env::new();
    let account = AccountBuilder::fake("fake", "pop3", server.port())
        .ca_file(&server.cert().cert_pem)
        .keep(true);
    ConfigBuilder::single(&env, account).write(&env);
    for run in 1..=3 {
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 1, "run {run}: {}", out.stderr);
        assert_eq!(out.stderr, "", "run {run}: quiet");
    }
    assert!(server.settle(Duration::from_secs(5)));
    server.assert_no_errors();
}

/// The server's CAPA answer is kept for the next run (`pop3_capabilities`
/// in state.db): with PIPELINING and PLAIN the first mechanism the
/// account would use, the next session sends CAPA and AUTH PLAIN in one
/// write (this script reads both before it answers CAPA: a client that
/// waited for the answer would hang here). When the fresh answer no
/// longer offers PLAIN, AUTH PLAIN's `-ERR` is no failure of the login:
/// it goes on with what is offered (USER), and the run after asks CAPA
/// alone again.
#[test]
fn capa_and_auth_plain_in_one_round_trip_and_a_server_that_dropped_plain() {
    let with_plain = "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n";
    let without_plain = "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\n.\r\n";
    let empty = || pop3_kept_listing("+OK\r\n.\r\n", "+OK\r\n.\r\n", false);
    let user_pass = || {
        vec![
            Step::expect("USER u"),
            Step::line("+OK"),
            Step::expect("PASS topsecret"),
            Step::line("+OK in"),
        ]
    };
    // Run 1: nothing known, CAPA alone, then AUTH PLAIN.
    let mut first = pop3s_up_to_capa();
    first.extend([
        Step::send(with_plain),
        Step::expect("AUTH PLAIN AHUAdG9wc2VjcmV0"),
        Step::line("+OK in"),
    ]);
    first.extend(empty());
    first.push(Step::ExpectAny);
    // Run 2: CAPA and AUTH PLAIN together; PLAIN is gone.
    let mut second = pop3s_up_to_capa();
    second.extend([
        Step::expect("AUTH PLAIN AHUAdG9wc2VjcmV0"),
        Step::send(without_plain),
        Step::line("-ERR Unsupported authentication mechanism."),
    ]);
    second.extend(user_pass());
    second.extend(empty());
    second.push(Step::ExpectAny);
    // Run 3: the answer without PLAIN was kept: CAPA alone.
    let mut third = pop3s_up_to_capa();
    third.extend([Step::send(without_plain)]);
    third.extend(user_pass());
    third.extend(empty());
    third.push(Step::ExpectAny);
    let server = FakeServer::start_many(vec![first, second, third]);
    three_quiet_runs_with_nothing_new(&server);
    let sessions = server.transcripts();
    assert_eq!(sessions.len(), 3);
    assert!(
        !sessions[2].contains("AUTH"),
        "run 3 guessed: {}",
        sessions[2]
    );
}

/// A server that hangs up on CAPA and AUTH PLAIN sent together (it
/// listed PIPELINING last time): the run connects once more with CAPA
/// alone and completes, and the server is marked in state.db: no later
/// run sends the two together again.
#[test]
fn a_server_that_hangs_up_on_a_pipelined_login_is_asked_capa_alone_from_then_on() {
    let capa = "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n";
    let alone = || {
        let mut s = pop3s_up_to_capa();
        s.extend([
            Step::send(capa),
            Step::expect("AUTH PLAIN AHUAdG9wc2VjcmV0"),
            Step::line("+OK in"),
        ]);
        s.extend(pop3_kept_listing("+OK\r\n.\r\n", "+OK\r\n.\r\n", false));
        s.push(Step::ExpectAny);
        s
    };
    let mut hangs_up = pop3s_up_to_capa();
    hangs_up.extend([Step::expect("AUTH PLAIN"), Step::Close]);
    let server = FakeServer::start_many(vec![alone(), hangs_up, alone(), alone()]);
    three_quiet_runs_with_nothing_new(&server);
    assert_eq!(server.connections(), 4, "run 2 connected twice");
}

/// CAPA of a scripted server that takes the login pipelined (`known`).
const CAPA_PIPELINING_PLAIN: &str = "+OK\r\nUSER\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN\r\n.\r\n";

/// A first session: CAPA alone, AUTH PLAIN, and one message (`1 aaa`, 20
/// octets) fetched in keep mode.
fn learns_capa_and_fetches_one() -> Vec<Step> {
    let mut s = pop3s_up_to_capa();
    s.extend([
        Step::send(CAPA_PIPELINING_PLAIN),
        Step::expect("AUTH PLAIN AHUAdG9wc2VjcmV0"),
        Step::line("+OK in"),
    ]);
    s.extend(pop3_kept_listing(
        b"+OK\r\n1 20\r\n.\r\n",
        b"+OK\r\n1 aaa\r\n.\r\n",
        true,
    ));
    s.extend(retr(1, "one"));
    s.extend(dele_and_quit(&[]));
    s
}

/// AUTH PLAIN with STAT, `UIDL 1` and `LIST 1` behind it, all read before
/// CAPA is answered (a client that waited for an answer would hang).
fn pipelined_login_with_stat() -> Vec<Step> {
    vec![
        Step::expect("AUTH PLAIN AHUAdG9wc2VjcmV0"),
        Step::expect("STAT"),
        Step::expect("UIDL 1"),
        Step::expect("LIST 1"),
        Step::send(CAPA_PIPELINING_PLAIN),
    ]
}

/// The mailbox of `learns_capa_and_fetches_one` unchanged: STAT, `UIDL 1`
/// and `LIST 1` answered; then QUIT.
fn stat_and_last_as_recorded() -> Vec<Step> {
    vec![
        Step::line("+OK 1 20"),
        Step::line("+OK 1 aaa"),
        Step::line("+OK 1 20"),
        Step::ExpectAny,
    ]
}

/// A session that asks STAT, `UIDL 1` and `LIST 1` after a login whose
/// lines came first (`login`).
fn asks_in_turn(login: &[Step]) -> Vec<Step> {
    let mut s = pop3s_up_to_capa();
    s.extend([
        Step::send(CAPA_PIPELINING_PLAIN),
        Step::expect("AUTH PLAIN AHUAdG9wc2VjcmV0"),
    ]);
    s.extend(login.iter().cloned());
    s.extend([
        Step::expect("STAT"),
        Step::expect("UIDL 1"),
        Step::expect("LIST 1"),
    ]);
    s.extend(stat_and_last_as_recorded());
    s
}

/// Three keep-mode `fetch` runs (one state, account `timeout`) against
/// `server`: the first fetches the message, the next two find nothing
/// new; the server's scripts then done without errors, after
/// `connections` connections.
fn fetch_then_two_with_nothing_new(server: &FakeServer, timeout: &str, connections: usize) {
    let env = Env::new();
    let account = AccountBuilder::fake("fake", "pop3", server.port())
        .ca_file(&server.cert().cert_pem)
        .keep(true)
        .timeout(timeout);
    ConfigBuilder::single(&env, account).write(&env);
    for (run, code) in [(1, 0), (2, 1), (3, 1)] {
        let out = env.run(&["fetch"]);
        assert_eq!(
            out.code,
            code,
            "run {run}: {} {:?}",
            out.stderr,
            server.transcripts()
        );
    }
    assert!(server.settle(Duration::from_secs(5)));
    server.assert_no_errors();
    assert_eq!(server.connections(), connections);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);
}

/// A keep-mode run against a server whose CAPA it knows, with one message
/// delivered before: STAT, `UIDL 1` and `LIST 1` go in the write of CAPA
/// and AUTH PLAIN. Here the login is refused (`-ERR`): the three answers
/// of the unauthenticated session are read and dropped, USER/PASS goes on
/// on the same connection, and the scan asks its questions itself. The
/// next run pipelines them with the login again, and takes their answers.
#[test]
fn stat_sent_with_a_refused_pipelined_login_is_answered_and_dropped() {
    let mut refused = pop3s_up_to_capa();
    refused.extend(pipelined_login_with_stat());
    refused.extend([
        Step::line("-ERR [AUTH] Authentication failed."),
        Step::line("-ERR Unknown command."),
        Step::line("-ERR Unknown command."),
        Step::line("-ERR Unknown command."),
        Step::expect("USER u"),
        Step::line("+OK"),
        Step::expect("PASS topsecret"),
        Step::line("+OK in"),
        Step::expect("STAT"),
        Step::expect("UIDL 1"),
        Step::expect("LIST 1"),
    ]);
    refused.extend(stat_and_last_as_recorded());
    let mut answered = pop3s_up_to_capa();
    answered.extend(pipelined_login_with_stat());
    answered.push(Step::line("+OK in"));
    answered.extend(stat_and_last_as_recorded());
    let server = FakeServer::start_many(vec![learns_capa_and_fetches_one(), refused, answered]);
    fetch_then_two_with_nothing_new(&server, "5s", 3);
    let sessions = server.transcripts();
    assert_eq!(sessions[2].matches("STAT").count(), 1, "{}", sessions[2]);
}

/// A server (or a proxy before it) that takes the login but never
/// answers what was pipelined behind it: after the account's timeout the
/// run connects once more without pipelining and completes, and the
/// server is marked in state.db: the next run waits for each answer.
#[test]
fn a_server_that_loses_stat_sent_with_the_login_is_asked_in_turn_from_then_on() {
    let mut loses = pop3s_up_to_capa();
    loses.extend(pipelined_login_with_stat());
    loses.extend([Step::line("+OK in"), Step::ExpectClose]);
    let in_turn = || asks_in_turn(&[Step::line("+OK in")]);
    let server = FakeServer::start_many(vec![
        learns_capa_and_fetches_one(),
        loses,
        in_turn(),
        in_turn(),
    ]);
    fetch_then_two_with_nothing_new(&server, "2s", 4);
}

/// A server that answers AUTH PLAIN's initial response with an empty
/// challenge takes the next line for the response: with STAT pipelined
/// behind it, that would be the password. The run takes it for a server
/// that does not take the pipelined login: it connects once more, sends
/// the response after the challenge, and later runs wait for each answer.
#[test]
fn an_empty_challenge_to_a_pipelined_auth_plain_gets_a_new_connection() {
    let mut challenges = pop3s_up_to_capa();
    challenges.extend(pipelined_login_with_stat());
    challenges.extend([Step::line("+ "), Step::ExpectClose]);
    let challenged = || {
        asks_in_turn(&[
            Step::line("+ "),
            Step::expect("AHUAdG9wc2VjcmV0"),
            Step::line("+OK in"),
        ])
    };
    let server = FakeServer::start_many(vec![
        learns_capa_and_fetches_one(),
        challenges,
        challenged(),
        challenged(),
    ]);
    fetch_then_two_with_nothing_new(&server, "5s", 4);
    let sessions = server.transcripts();
    assert!(
        !sessions[1].contains("LIST 1\r\nAHUAdG9wc2VjcmV0"),
        "the response sent after STAT: {}",
        sessions[1]
    );
}
