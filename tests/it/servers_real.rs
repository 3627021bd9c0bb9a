//! Byte-exact round trips against a real server that is not Dovecot: GNU
//! Mailutils 3.15 `imap4d` and `pop3d` (tests/support/mailutils.rs),
//! unpacked from Debian's packages by tests/run-all.sh. Missing Mailutils
//! fails these tests loudly.
//!
//! What Mailutils does differently from Dovecot, and these tests meet:
//! its POP3 greeting always carries an APOP timestamp although the user
//! has no APOP secret (default authentication must use USER/PASS); its
//! IMAP EXPUNGE answers `* n EXPUNGED` (delete mode must not be an error);
//! it advertises SASL mechanisms it cannot serve for a crypt(3) user
//! (SCRAM, CRAM-MD5); and its POP3 inserts an `X-UIDL:` header into every
//! message it sends.

use crate::support;

use support::corpus;
use support::mailutils::{Mailutils, PASSWORD, USER};
use support::{delivered, sorted, AccountBuilder, ConfigBuilder, Env};

/// The awkward corpus plus what these servers are most likely to get
/// wrong: UTF-8 header fields with an 8-bit body, a bare CR, and a message
/// over 1 MB.
fn corpus_for_real_servers() -> Vec<Vec<u8>> {
    let mut msgs: Vec<Vec<u8>> = corpus::awkward().into_iter().map(|(_, m)| m).collect();
    msgs.push(
        "From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.org>\n\
         To: Zoë <zoe@example.net>\n\
         Subject: Grüße, naïve café 📬\n\
         Message-ID: <real-utf8-headers@corpus.test>\n\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\n\
         MIME-Version: 1.0\n\
         Content-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\n\
         Ünïcödé in the header fields and the body: 日本語.\n"
            .as_bytes()
            .to_vec(),
    );
    msgs.push(
        b"From: cr@example.org\n\
          Subject: A bare CR\n\
          Message-ID: <real-bare-cr@corpus.test>\n\
          Date: Mon, 01 Jan 2024 00:00:00 +0000\n\n\
          before\rafter the bare CR\n"
            .to_vec(),
    );
    msgs.push(corpus::big(1536 * 1024));
    msgs
}

/// Asserts that `got` and `want` hold the same messages (both sorted),
/// naming each message that differs and where, instead of dumping bytes.
#[track_caller]
fn assert_same_messages(got: Vec<Vec<u8>>, want: Vec<Vec<u8>>, what: &str) {
    let (got, want) = (sorted(got), sorted(want));
    if got == want {
        return;
    }
    let id = |m: &[u8]| {
        let text = String::from_utf8_lossy(&m[..m.len().min(2000)]).into_owned();
        text.lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .unwrap_or("(no Message-ID)")
            .to_string()
    };
    let mut report = format!("{what}: {} messages, {} expected\n", got.len(), want.len());
    for w in &want {
        match got.iter().find(|g| id(g) == id(w)) {
            None => report.push_str(&format!("missing: {}\n", id(w))),
            Some(g) if g == w => {}
            Some(g) => {
                let at = g.iter().zip(w.iter()).take_while(|(a, b)| a == b).count();
                let show = |m: &[u8]| {
                    String::from_utf8_lossy(&m[at.saturating_sub(20)..(at + 40).min(m.len())])
                        .escape_debug()
                        .to_string()
                };
                report.push_str(&format!(
                    "differs: {} ({} bytes, {} expected) at byte {at}: got \"{}\", want \"{}\"\n",
                    id(w),
                    g.len(),
                    w.len(),
                    show(g),
                    show(w)
                ));
            }
        }
    }
    panic!("{report}");
}

fn account(mu: &Mailutils, protocol: &str) -> AccountBuilder {
    let port = match protocol {
        "imap" => mu.imaps,
        _ => mu.pop3s,
    };
    AccountBuilder::new("acct", protocol, "localhost")
        .port(port)
        .ca_file(&mu.cert_pem)
        .user(USER)
        .password(PASSWORD)
}

/// Removes the first `X-UIDL:` header field from the header section of
/// `msg` (Mailutils' pop3d inserts one into every message it sends).
fn strip_x_uidl(msg: &[u8]) -> (Vec<u8>, bool) {
    let mut pos = 0;
    while pos < msg.len() {
        let end = msg[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(msg.len(), |i| pos + i + 1);
        let line = &msg[pos..end];
        if line == b"\n" {
            break;
        }
        if line.len() >= 7 && line[..7].eq_ignore_ascii_case(b"x-uidl:") {
            let mut out = msg[..pos].to_vec();
            out.extend_from_slice(&msg[end..]);
            return (out, true);
        }
        pos = end;
    }
    (msg.to_vec(), false)
}

#[test]
fn mailutils_imaps_corpus_byte_exact_delete_mode_and_rerun_finds_nothing() {
    let mu = Mailutils::start();
    let originals = corpus_for_real_servers();
    for m in &originals {
        mu.add_message(m);
    }
    let env = Env::new();
    ConfigBuilder::single(&env, account(&mu, "imap"))
        .hostname("test.example")
        .write(&env);
    // Delete mode (the default): Mailutils answers EXPUNGE with
    // `* n EXPUNGED`, which must not turn a good run into an error.
    let out = env.run(&["fetch"]);
    assert_eq!(
        out.code,
        0,
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        mu.log_tail()
    );
    assert_eq!(out.stderr, "", "quiet on success");
    assert_same_messages(
        delivered(&env.path("Maildir")),
        originals,
        "byte-exact from Mailutils imap4d",
    );
    assert!(mu.messages().is_empty(), "deleted on the server");

    let again = env.run(&["fetch"]);
    assert_eq!(again.code, 1, "{}\n{}", again.stderr, mu.log_tail());
    assert_eq!(again.stderr, "");
}

#[test]
fn mailutils_imaps_keep_mode_leaves_the_mailbox_and_never_fetches_twice() {
    let mu = Mailutils::start();
    let originals: Vec<Vec<u8>> = corpus::awkward().into_iter().map(|(_, m)| m).collect();
    for m in &originals {
        mu.add_message(m);
    }
    let env = Env::new();
    ConfigBuilder::single(&env, account(&mu, "imap").keep(true))
        .hostname("test.example")
        .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_same_messages(
        delivered(&env.path("Maildir")),
        originals.clone(),
        "byte-exact from Mailutils imap4d",
    );
    assert_eq!(mu.messages().len(), originals.len(), "kept on the server");
    let again = env.run(&["fetch"]);
    assert_eq!(again.code, 1, "{}\n{}", again.stderr, mu.log_tail());
    assert_eq!(
        env.maildir_messages(env.path("Maildir")).len(),
        originals.len()
    );
}

#[test]
fn mailutils_pop3s_apop_greeting_default_auth_corpus_and_rerun_finds_nothing() {
    let mu = Mailutils::start();
    let originals = corpus_for_real_servers();
    for m in &originals {
        mu.add_message(m);
    }
    let env = Env::new();
    // No `auth` key: the greeting's APOP timestamp must not make mailretr
    // try APOP (the user has no APOP secret); USER/PASS works.
    ConfigBuilder::single(&env, account(&mu, "pop3"))
        .hostname("test.example")
        .write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(
        out.code,
        0,
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        mu.log_tail()
    );
    assert_eq!(out.stderr, "", "quiet on success");
    let got: Vec<Vec<u8>> = delivered(&env.path("Maildir"))
        .iter()
        .map(|m| {
            let (m, found) = strip_x_uidl(m);
            assert!(found, "pop3d inserts X-UIDL into every message");
            m
        })
        .collect();
    // Over POP3 a message without a final newline is indistinguishable from
    // one with it unless the server's size says otherwise. Dovecot's does.
    // Mailutils' LIST, asked before UIDL (as a run that deletes asks it),
    // leaves the X-UIDL header it inserts out of the size, so the size
    // does not show the newline pop3d added: the message arrives with a
    // final newline. (Asked after UIDL, as a run with `keep = true` asks
    // it, the size counts X-UIDL and the message arrives as it was.)
    let expected: Vec<Vec<u8>> = originals
        .into_iter()
        .map(|mut m| {
            if !m.ends_with(b"\n") {
                m.push(b'\n');
            }
            m
        })
        .collect();
    assert_same_messages(
        got,
        expected,
        "byte-exact from Mailutils pop3d, but for its X-UIDL header",
    );
    assert!(mu.messages().is_empty(), "deleted on the server");

    let again = env.run(&["fetch"]);
    assert_eq!(again.code, 1, "{}\n{}", again.stderr, mu.log_tail());
    assert_eq!(again.stderr, "");
}

/// Pins what the corpus tests above go through, so they keep testing it:
/// Mailutils advertises SCRAM-SHA-256 and CRAM-MD5 it cannot serve for a
/// crypt(3) user (mailretr must fall back to a mechanism that works), and
/// answers EXPUNGE with `* n EXPUNGED`; its POP3 greeting carries an APOP
/// timestamp and default authentication must not use APOP.
#[test]
fn mailutils_transcripts_show_fallback_expunged_and_no_apop() {
    let mu = Mailutils::start();
    mu.add_message(&corpus::awkward()[0].1);
    let env = Env::new();
    ConfigBuilder::single(&env, account(&mu, "imap")).write(&env);
    let out = env.run(&["fetch", "-vv"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, mu.log_tail());
    let imap = &out.stderr;
    assert!(imap.contains("C: a2 AUTHENTICATE SCRAM-SHA-256"), "{imap}");
    assert!(
        imap.contains("NO AUTHENTICATE SCRAM-SHA-256 authentication failed"),
        "{imap}"
    );
    assert!(imap.contains("authentication successful"), "{imap}");
    assert!(imap.contains("S: * 1 EXPUNGED"), "{imap}");
    assert!(mu.messages().is_empty(), "deleted on the server");

    mu.add_message(&corpus::awkward()[1].1);
    let env = Env::new();
    ConfigBuilder::single(&env, account(&mu, "pop3")).write(&env);
    let out = env.run(&["fetch", "-vv"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, mu.log_tail());
    let pop3 = &out.stderr;
    let greeting = pop3
        .lines()
        .find(|l| l.contains("S: +OK"))
        .unwrap_or_else(|| panic!("no greeting in {pop3}"));
    assert!(
        greeting.contains('<') && greeting.contains('@'),
        "APOP timestamp: {greeting}"
    );
    assert!(!pop3.contains("C: APOP"), "{pop3}");
    assert!(pop3.contains("C: USER alice@localhost"), "{pop3}");
    assert!(mu.messages().is_empty(), "deleted on the server");
}
