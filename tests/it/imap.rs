//! IMAP → Maildir through the real `mailretr` binary, against a real
//! Dovecot (tests/support) and, for the attacks Dovecot will not make,
//! scripted fake servers.

use crate::support;

use std::fs;
use std::path::Path;

use support::corpus;
use support::{delivered, sorted};
use support::{AccountBuilder, ConfigBuilder, Dovecot, Env, FakeServer, Step, TestCert, User};

/// The IMAPS account `acct` on the shared Dovecot.
fn imaps(dovecot: &Dovecot, user: &User) -> AccountBuilder {
    AccountBuilder::dovecot_imaps("acct", dovecot, user)
}

/// `account` delivering to `Maildir` in `env`, as `test.example`.
fn config(env: &Env, account: AccountBuilder) -> ConfigBuilder {
    ConfigBuilder::single(env, account).hostname("test.example")
}

fn delivered_home(env: &Env) -> Vec<Vec<u8>> {
    delivered(&env.path("Maildir"))
}

fn message(n: usize, subject: &str) -> Vec<u8> {
    format!("Subject: {subject} {n}\nMessage-ID: <{subject}-{n}@imap.test>\n\nbody {n}\n")
        .into_bytes()
}

/// The IMAP commands (tagged client lines) in a `-vv` transcript.
fn commands(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("mailretr: acct: C: "))
        .filter(|l| l.starts_with('a'))
        .collect()
}

#[test]
fn two_folders_awkward_corpus_byte_exact_and_rerun_finds_nothing() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let mut originals = Vec::new();
    for (i, (_, bytes)) in corpus::awkward().into_iter().enumerate() {
        let folder = if i % 2 == 0 { "INBOX" } else { "Lists/rust" };
        dovecot.add_message(&user, folder, &bytes);
        originals.push(bytes);
    }
    let big = corpus::big(12 * 1024 * 1024);
    dovecot.add_message(&user, "Lists/rust", &big);
    originals.push(big);

    let env = Env::new();
    config(
        &env,
        imaps(dovecot, &user).line(r#"folders = ["INBOX", "Lists/*"]"#),
    )
    .write(&env);
    let out = env.run(&["fetch"]);
    out.expect_success();
    assert_eq!(out.stderr, "", "quiet on success");
    assert_eq!(delivered_home(&env), sorted(originals));
    assert!(dovecot.messages(&user, "INBOX").is_empty(), "deleted");
    assert!(dovecot.messages(&user, "Lists/rust").is_empty(), "deleted");
    for m in env.maildir_messages(env.path("Maildir")) {
        let text = String::from_utf8_lossy(&m[..200.min(m.len())]).to_string();
        assert!(
            text.starts_with("Received: from localhost by test.example with IMAPS"),
            "{text}"
        );
    }

    let again = env.run(&["fetch"]);
    again.expect_code(1);
    assert_eq!(again.stderr, "");
}

#[test]
fn patterns_exclusions_and_keep_never_fetch_twice() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for (folder, n) in [
        ("INBOX", 2),
        ("Lists/rust", 3),
        ("Lists/spam", 4),
        ("Lists/deep/x", 1),
        ("Other", 5),
    ] {
        for i in 0..n {
            dovecot.add_message(&user, folder, &message(i, folder));
        }
    }
    let env = Env::new();
    let account = imaps(dovecot, &user)
        .keep(true)
        .line("add_received = false")
        .line(r#"folders = ["INBOX", "Lists/*", "!Lists/spam"]"#);
    config(&env, account).write(&env);
    env.run(&["fetch"]).expect_success();
    let got = delivered_home(&env);
    assert_eq!(got.len(), 2 + 3 + 1, "INBOX, Lists/rust, Lists/deep/x");
    assert!(got
        .iter()
        .all(|m| !String::from_utf8_lossy(m).contains("spam")));
    assert_eq!(dovecot.messages(&user, "Lists/rust").len(), 3, "kept");

    env.run(&["fetch"]).expect_code(1);
    dovecot.add_message(&user, "Lists/rust", &message(9, "late"));
    dovecot.add_message(&user, "Lists/spam", &message(9, "spam"));
    env.run(&["fetch"]).expect_success();
    assert_eq!(delivered_home(&env).len(), 7);
    env.run(&["fetch"]).expect_code(1);

    // --all ignores the seen-state; --check counts.
    let check = env.run(&["fetch", "--check"]);
    check.expect_code(1);
    env.run(&["fetch", "--all"]).expect_success();
    assert_eq!(delivered_home(&env).len(), 14);
}

/// Removing a folder's `dovecot-uidlist` makes Dovecot renumber it with a
/// new UIDVALIDITY; the messages delivered before are recognised.
#[test]
fn uidvalidity_reset_redelivers_nothing() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for i in 0..5 {
        dovecot.add_message(&user, "Lists/rust", &message(i, "before"));
    }
    // Twins: same size, same headers; each is matched once.
    dovecot.add_message(&user, "Lists/rust", b"Subject: twin\n\nsame\n");
    dovecot.add_message(&user, "Lists/rust", b"Subject: twin\n\nsame\n");
    let env = Env::new();
    config(
        &env,
        imaps(dovecot, &user)
            .keep(true)
            .line(r#"folders = ["Lists/rust"]"#),
    )
    .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(delivered_home(&env).len(), 7);

    let dir = dovecot.folder_dir(&user, "Lists/rust");
    fs::remove_file(dir.join("dovecot-uidlist")).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("dovecot.index") {
            fs::remove_file(&path).unwrap();
        }
    }
    dovecot.add_message(&user, "Lists/rust", &message(7, "after"));

    let out = env.run(&["fetch"]);
    out.expect_success();
    assert!(
        out.stderr.contains("UIDVALIDITY changed") && out.stderr.contains("matched 7 of 7"),
        "{}",
        out.stderr
    );
    let got = delivered_home(&env);
    assert_eq!(got.len(), 8, "only the new message");
    assert_eq!(
        got.iter()
            .filter(|m| String::from_utf8_lossy(m).contains("after 7"))
            .count(),
        1
    );
    env.run(&["fetch"]).expect_code(1);
}

#[test]
fn delete_expunges_only_delivered_mail() {
    let dovecot = Dovecot::shared();
    // keep = false (the default): delivered mail is expunged.
    let user = dovecot.new_user();
    for i in 0..3 {
        dovecot.add_message(&user, "INBOX", &message(i, "gone"));
    }
    let env = Env::new();
    config(&env, imaps(dovecot, &user)).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    out.expect_success();
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    let cmds = commands(&out.stderr);
    assert!(
        cmds.iter().any(|c| c.contains("UID EXPUNGE 1:3")),
        "{cmds:?}"
    );
    assert!(cmds.iter().any(|c| c.contains("BODY.PEEK[]")), "{cmds:?}");
}

/// Group commit: into a Maildir, many delivered messages share one sync
/// and one state transaction (counted from the `-vv` log, not timed),
/// and the batch is still deleted from the server only after its commit.
#[test]
fn maildir_deliveries_are_committed_in_batches() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for i in 0..150 {
        dovecot.add_message(&user, "INBOX", &message(i, "batch"));
    }
    let env = Env::new();
    config(&env, imaps(dovecot, &user)).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    out.expect_success();
    let commits: Vec<usize> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("mailretr: acct: committed "))
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(commits.iter().sum::<usize>(), 150, "{commits:?}");
    assert!(commits.len() <= 5, "one commit per few dozen: {commits:?}");
    assert_eq!(delivered_home(&env).len(), 150);
    assert!(fs::read_dir(env.path("Maildir/tmp"))
        .unwrap()
        .next()
        .is_none());
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    // The server was told only after the commits.
    let first_commit = out.stderr.find("acct: committed ").unwrap();
    let first_store = out.stderr.find("+FLAGS.SILENT (\\Deleted)").unwrap();
    assert!(first_commit < first_store, "{}", out.stderr);
}

/// `move_to`: delivered mail is moved, and the target is not fetched back
/// even by `*`.
#[test]
fn move_to_moves_delivered_mail() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for i in 0..3 {
        dovecot.add_message(&user, "INBOX", &message(i, "moved"));
    }
    dovecot.add_message(&user, "Archive", &message(9, "archived-before"));
    let env = Env::new();
    config(
        &env,
        imaps(dovecot, &user)
            .line("move_to = \"Archive\"")
            .line(r#"folders = ["*"]"#),
    )
    .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(delivered_home(&env).len(), 3);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    assert_eq!(dovecot.messages(&user, "Archive").len(), 4);
    env.run(&["fetch"]).expect_code(1);
}

#[test]
fn max_size_leaves_big_messages_and_says_so_once() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: small\n\nbody\n");
    dovecot.add_message(&user, "INBOX", &corpus::big(300_000));
    dovecot.add_message(&user, "INBOX", b"Subject: small too\n\nbody\n");
    let env = Env::new();
    config(&env, imaps(dovecot, &user).line("max_size = \"100KB\"")).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_success();
    assert!(out.stderr.contains("over max_size"), "{}", out.stderr);
    assert_eq!(delivered_home(&env).len(), 2);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1, "big one left");
    let out = env.run(&["fetch"]);
    out.expect_code(1);
    assert_eq!(out.stderr, "", "reported once");
    env.run(&["fetch", "--limit", "1MB"]).expect_success();
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

/// With nothing new but an oversized message to look at again, the size
/// listing sent with SELECT (`1,3:*` here) also names the folder's last
/// message; only what the scan asks about is taken from it. Here the last
/// message was passed over by `only_unseen` and is not fetched later.
#[test]
fn the_listing_keeps_only_what_the_scan_asks_about() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &corpus::big(300_000));
    let env = Env::new();
    let account = imaps(dovecot, &user)
        .keep(true)
        .line("max_size = \"100KB\"");
    config(&env, account.clone().line("only_unseen = true")).write(&env);
    env.run(&["fetch"]).expect_code(1);
    add_seen_messages(dovecot, &user, 1..2);
    env.run(&["fetch"]).expect_code(1);
    config(&env, account).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    out.expect_code(1);
    assert!(
        commands(&out.stderr)
            .iter()
            .any(|c| c.contains("UID FETCH 1,3:* (UID RFC822.SIZE)")),
        "{}",
        out.stderr
    );
    assert!(delivered_home(&env).is_empty());
}

#[test]
fn wrong_password_exits_3_and_changes_nothing() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: x\n\nbody\n");
    let env = Env::new();
    for auth in ["login", "plain", "scram-sha-256"] {
        let account = imaps(dovecot, &user)
            .line(&format!("auth = [\"{auth}\"]"))
            .password("wrong-pw");
        config(&env, account).write(&env);
        let out = env.run(&["-vv", "fetch"]);
        out.expect_code(3);
        assert!(out.stderr.contains("account acct"), "{}", out.stderr);
        assert!(!out.stderr.contains("wrong-pw"), "{}", out.stderr);
    }
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
}

#[test]
fn starttls_against_dovecot_with_every_password_mechanism() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for auth in ["login", "plain", "cram-md5", "scram-sha-256"] {
        dovecot.add_message(&user, "INBOX", b"Subject: x\n\nbody\n");
        let env = Env::new();
        let account = imaps(dovecot, &user)
            .port(dovecot.imap)
            .tls("starttls")
            .line(&format!("auth = [\"{auth}\"]"));
        config(&env, account).write(&env);
        let out = env.run(&["-vv", "fetch"]);
        out.expect_success();
        assert!(out.stderr.contains("C: s2 STARTTLS"), "{}", out.stderr);
        assert!(
            !out.stderr.contains(&user.password),
            "{auth}: password logged"
        );
        assert!(out.stderr.contains("<redacted>") || auth == "cram-md5");
        assert_eq!(delivered_home(&env).len(), 1);
    }
}

#[test]
fn only_unseen_and_mark_seen() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1, "unread"));
    add_seen_messages(dovecot, &user, 1..3);
    let env = Env::new();
    config(
        &env,
        imaps(dovecot, &user)
            .keep(true)
            .line("only_unseen = true\nmark_seen = true"),
    )
    .write(&env);
    env.run(&["fetch"]).expect_success();
    let got = delivered_home(&env);
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("unread 1"));
    env.run(&["fetch"]).expect_code(1);
    // mark_seen: Dovecot now has the message flagged \Seen (",S" in cur/).
    let cur = user.maildir().join("cur");
    let seen_files = fs::read_dir(&cur)
        .unwrap()
        .filter(|e| {
            let name = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .to_string();
            name.contains(":2,") && name.rsplit(":2,").next().unwrap().contains('S')
        })
        .count();
    assert_eq!(seen_files, 3, "all three are \\Seen now");
}

/// Writes messages straight into INBOX's `cur/` flagged `\Seen` (quick for
/// many messages; Dovecot indexes them on the next SELECT).
fn add_seen_messages(dovecot: &Dovecot, user: &User, range: std::ops::Range<usize>) {
    let cur = user.maildir().join("cur");
    let owner = dovecot.as_root.then_some(dovecot.mail_owner);
    for i in range {
        let path = cur.join(format!("{i}.M{i}P{}.imaptest:2,S", std::process::id()));
        fs::write(&path, message(i, "seen")).unwrap();
        chown(&path, owner);
    }
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

/// A 20,000-message folder: a run with nothing new costs a fixed number
/// of commands (counted from the `-vv` transcript, not timed). The state
/// is primed cheaply with `only_unseen` over messages already `\Seen`,
/// which moves the folder's last UID without fetching bodies.
#[test]
fn no_new_mail_in_a_huge_folder_costs_a_bounded_number_of_commands() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(0, "first"));
    add_seen_messages(dovecot, &user, 1..20_000);
    let env = Env::new();
    let account = imaps(dovecot, &user).keep(true);
    config(&env, account.clone().line("only_unseen = true")).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(delivered_home(&env).len(), 1);

    let out = env.run(&["-vv", "fetch"]);
    out.expect_code(1);
    let cmds = commands(&out.stderr);
    assert!(
        cmds.len() <= 6,
        "a run with nothing new sent {} commands: {cmds:?}",
        cmds.len()
    );
    // The one listing goes out with SELECT and asks only above the last
    // UID seen; no message is fetched.
    let listings: Vec<_> = cmds.iter().filter(|c| c.contains("FETCH")).collect();
    assert_eq!(listings.len(), 1, "{cmds:?}");
    assert!(
        listings[0].contains("UID FETCH 20001:* (UID RFC822.SIZE"),
        "{cmds:?}"
    );

    // One new message costs one more listing and one fetch, not 20,000.
    config(&env, account).write(&env);
    dovecot.add_message(&user, "INBOX", &message(1, "new"));
    let out = env.run(&["-vv", "fetch"]);
    out.expect_success();
    let cmds = commands(&out.stderr);
    assert!(cmds.len() <= 8, "{cmds:?}");
    assert_eq!(delivered_home(&env).len(), 2);
}

// ---- scripted servers: what Dovecot will not do ----

/// The account `fake` for a fake IMAP server, trusting its certificate.
fn fake(server: &FakeServer, tls: &str) -> AccountBuilder {
    AccountBuilder::fake("fake", "imap", server.port())
        .tls(tls)
        .ca_file(&server.cert().cert_pem)
}

fn assert_no_credentials(server: &FakeServer) {
    let sent = server.transcript();
    for word in ["LOGIN", "AUTHENTICATE", "topsecret", "dG9wc2VjcmV0"] {
        assert!(!sent.contains(word), "sent {word} in clear: {sent}");
    }
}

#[test]
fn starttls_stripped_refused_preauth_or_injected_sends_no_credentials() {
    let scripts: Vec<(&str, Vec<Step>)> = vec![
        (
            "not offered",
            vec![
                Step::line("* OK fake IMAP"),
                Step::expect("s1 CAPABILITY"),
                Step::line("* CAPABILITY IMAP4rev1 AUTH=PLAIN"),
                Step::line("s1 OK done"),
                Step::ExpectClose,
            ],
        ),
        (
            "stripped from the greeting",
            vec![
                Step::line("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] fake"),
                Step::ExpectClose,
            ],
        ),
        (
            "refused",
            vec![
                Step::line("* OK [CAPABILITY IMAP4rev1 STARTTLS] fake"),
                Step::expect("s2 STARTTLS"),
                Step::line("s2 NO not today"),
                Step::ExpectClose,
            ],
        ),
        (
            "preauth",
            vec![
                Step::line("* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome"),
                Step::ExpectClose,
            ],
        ),
        (
            "injected after OK",
            vec![
                Step::line("* OK [CAPABILITY IMAP4rev1 STARTTLS] fake"),
                Step::expect("s2 STARTTLS"),
                Step::send("s2 OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"),
                Step::ExpectClose,
            ],
        ),
    ];
    for (what, script) in scripts {
        let server = FakeServer::start(script);
        let env = Env::new();
        ConfigBuilder::single(&env, fake(&server, "starttls")).write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 2, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("account fake"),
            "{what}: {}",
            out.stderr
        );
        assert_no_credentials(&server);
        server.assert_no_errors();
    }
}

/// Untagged responses a man in the middle slips in before TLS (claiming
/// SASL-IR) are not believed: CAPABILITY is asked again over TLS, and the
/// login follows what the server says there.
#[test]
fn nothing_learned_before_tls_is_trusted() {
    let server = FakeServer::start(vec![
        Step::line("* OK [CAPABILITY IMAP4rev1 STARTTLS] fake"),
        Step::expect("s2 STARTTLS"),
        Step::line("* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN"),
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] injected"),
        Step::line("s2 OK begin TLS"),
        Step::StartTls,
        Step::expect("a1 CAPABILITY"),
        Step::line("* CAPABILITY IMAP4rev1 AUTH=PLAIN"),
        Step::line("a1 OK done"),
        Step::expect("a2 AUTHENTICATE PLAIN"),
        Step::line("+ "),
        Step::ExpectAny,
        Step::line("a2 NO [AUTHENTICATIONFAILED] Authentication failed."),
        // The next mechanism allowed (over TLS, LOGIN may follow).
        Step::expect("a3 LOGIN "),
        Step::line("a3 NO [AUTHENTICATIONFAILED] Authentication failed."),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(&server, "starttls")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    server.assert_no_errors();
    let sent = server.transcript();
    assert!(
        sent.contains("a2 AUTHENTICATE PLAIN\r\n"),
        "no SASL-IR: {sent}"
    );
}

/// The login of the scripted servers below (AUTHENTICATE PLAIN, SASL-IR).
fn fake_login() -> Vec<Step> {
    vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
        Step::expect("a1 AUTHENTICATE PLAIN "),
        Step::line("a1 OK [CAPABILITY IMAP4rev1 UIDPLUS] in"),
    ]
}

/// SELECT and the size listing go out in one write; the listing's answer
/// is read whatever order its items come in, with items it did not ask
/// for and unsolicited responses mixed in.
#[test]
fn pipelined_select_and_listing_read_an_awkward_answer() {
    let mut script = fake_login();
    script.extend([
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::line("* 3 EXISTS"),
        Step::line("* OK [UIDVALIDITY 7] ok"),
        Step::line("* OK [UIDNEXT 9] ok"),
        Step::line("ab1 OK [READ-WRITE] selected"),
        Step::line("* 1 FETCH (RFC822.SIZE 14 UID 4)"),
        Step::line("* 2 FETCH (UID 6 MODSEQ (12) X-GM-LABELS (\"a b\" {3}"),
        Step::send("c d) RFC822.SIZE 14)\r\n"),
        Step::line("* 3 EXPUNGE"),
        Step::line("* 2 EXISTS"),
        Step::line("ab2 OK done"),
        Step::expect("ab3 UID FETCH 4,6 (UID FLAGS BODY.PEEK[])"),
        Step::line("* 1 FETCH (UID 4 BODY[] {14}"),
        Step::send("Subject: 4\r\n\r\n)\r\n"),
        Step::line("* 2 FETCH (BODY[] {14}"),
        Step::send("Subject: 6\r\n\r\n UID 6)\r\n"),
        Step::line("ab3 OK done"),
        Step::expect("a2 LOGOUT"),
        Step::line("* BYE"),
        Step::line("a2 OK"),
        Step::ExpectClose,
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(&server, "implicit").keep(true)).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_success();
    server.assert_no_errors();
    let got = sorted(delivered(&env.path("Maildir")));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with(b"Subject: 4\n"));
    assert!(got[1].starts_with(b"Subject: 6\n"));
}

/// A server that answers a size listing with more messages than SELECT
/// announced (here without end) gets a one-line error, not unbounded
/// memory; nothing is fetched or deleted.
#[test]
fn endless_size_listing_is_a_bounded_protocol_error() {
    let mut script = fake_login();
    script.extend([
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::line("* 2 EXISTS"),
        Step::line("* OK [UIDVALIDITY 7] ok"),
        Step::line("ab1 OK [READ-WRITE] selected"),
        Step::SendForever(b"* 1 FETCH (UID 1 RFC822.SIZE 10)\r\n".repeat(1000)),
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(&server, "implicit")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("account fake"), "{}", out.stderr);
    assert!(
        out.stderr.contains("more answers than the 2 messages"),
        "{}",
        out.stderr
    );
    assert!(delivered(&env.path("Maildir")).is_empty());
    assert!(!server.transcript().contains("STORE"));
}

/// A refused SELECT is a one-line error naming the account; the listing
/// sent with it is read to its end first, and nothing is fetched.
#[test]
fn pipelined_select_refused_is_an_error() {
    let mut script = fake_login();
    script.extend([
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::line("ab1 NO [NONEXISTENT] no such mailbox"),
        Step::line("ab2 BAD no mailbox selected"),
        Step::ExpectClose,
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    ConfigBuilder::single(&env, fake(&server, "implicit")).write(&env);
    let out = env.run(&["fetch"]);
    assert!(out.code != 0 && out.code != 1, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("account fake"), "{}", out.stderr);
    assert!(out.stderr.contains("SELECT"), "{}", out.stderr);
    assert!(out.stderr.contains("no such mailbox"), "{}", out.stderr);
    server.assert_no_errors();
    assert!(delivered(&env.path("Maildir")).is_empty());
}

/// XOAUTH2 with the token from `oauth2_token_command`, as Gmail and
/// Microsoft 365 want it; a refused token is an authentication failure.
#[test]
fn xoauth2_uses_the_token_command() {
    let token_ir = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("user=u\x01auth=Bearer tok-123\x01\x01")
    };
    let server = FakeServer::start(vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER] fake"),
        Step::expect("a1 AUTHENTICATE OAUTHBEARER "),
        Step::line("+ eyJzdGF0dXMiOiI0MDEifQ=="),
        Step::expect("AQ=="),
        Step::line("a1 NO [AUTHENTICATIONFAILED] invalid token"),
        Step::expect("a2 AUTHENTICATE XOAUTH2 "),
        Step::line("a2 NO [AUTHENTICATIONFAILED] invalid token"),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    let account = fake(&server, "implicit").oauth2_token_command("echo tok-123");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        !out.stderr.contains("tok-123"),
        "token logged: {}",
        out.stderr
    );
    server.assert_no_errors();

    let server = FakeServer::start(support::fake::imap_empty_session("XOAUTH2", &token_ir));
    let env = Env::new();
    let account = fake(&server, "implicit")
        .oauth2_token_command("echo tok-123")
        .line("auth = [\"xoauth2\"]");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    server.assert_no_errors();
}

/// The certificate is checked for the host name even when its issuer is
/// trusted, and a `fingerprint` pin replaces the chain check.
#[test]
fn certificates_are_verified_unless_pinned() {
    let env = Env::new();
    let wrong = TestCert::generate_with(&env.path("."), "wrong.example", "DNS:wrong.example");
    let server =
        FakeServer::start_many_with_cert(vec![vec![Step::StartTls, Step::ExpectClose]], &wrong);
    ConfigBuilder::single(&env, fake(&server, "implicit")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("TLS"), "{}", out.stderr);
    assert_no_credentials(&server);

    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: x\n\nbody\n");
    let pinned = |pin: &str| {
        let account = imaps(dovecot, &user)
            .no_ca_file()
            .line(&format!("fingerprint = \"{pin}\""));
        config(&env, account)
    };
    let pin = format!("sha256:{}", ["00"; 32].join(":"));
    pinned(&pin).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let actual = out
        .stderr
        .split("server has ")
        .nth(1)
        .expect("a mismatch shows the fingerprint")
        .trim()
        .to_string();
    pinned(&actual).write(&env);
    env.run(&["fetch"]).expect_success();
}

/// An IMAP server (no SASL-IR) that runs SCRAM-SHA-256 correctly up to its
/// final message, whose `v=` signature is wrong, and then says OK anyway.
/// Returns the port and a handle yielding every line the client sent.
fn scram_liar_imap() -> (u16, std::thread::JoinHandle<Vec<String>>) {
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
        let mut seen: Vec<String> = Vec::new();
        let mut tag = String::new();
        out.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=SCRAM-SHA-256] fake\r\n")
            .unwrap();
        loop {
            let mut line = String::new();
            if input.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let line = line.trim_end().to_string();
            seen.push(line.clone());
            let reply = if line.ends_with(" AUTHENTICATE SCRAM-SHA-256") {
                tag = line.split(' ').next().unwrap().to_string();
                "+ \r\n".to_string()
            } else if seen.len() == 2 {
                let first = String::from_utf8(b64.decode(&line).unwrap()).unwrap();
                let nonce = first.split(",r=").nth(1).unwrap().to_string();
                let server_first = format!("r={nonce}srvnonce,s={},i=4096", b64.encode("salt"));
                format!("+ {}\r\n", b64.encode(server_first))
            } else if seen.len() == 3 {
                format!(
                    "+ {}\r\n",
                    b64.encode(format!("v={}", b64.encode([7u8; 32])))
                )
            } else if seen.len() == 4 {
                format!("{tag} OK [CAPABILITY IMAP4rev1] logged in\r\n")
            } else {
                let t = line.split(' ').next().unwrap_or("*");
                format!("{t} OK fine\r\n")
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
    let (port, server) = scram_liar_imap();
    let env = Env::new();
    let account = AccountBuilder::fake("fake", "imap", port).plaintext();
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    out.expect_code(3);
    assert!(out.stderr.contains("signature"), "{}", out.stderr);
    assert!(!out.stderr.contains("topsecret"), "{}", out.stderr);
    let seen = server.join().unwrap();
    assert!(seen[0].ends_with("AUTHENTICATE SCRAM-SHA-256"), "{seen:?}");
    for line in &seen[4..] {
        for command in ["SELECT", "EXAMINE", "FETCH", "LIST", "STORE"] {
            assert!(!line.contains(command), "{seen:?}");
        }
    }
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
}
