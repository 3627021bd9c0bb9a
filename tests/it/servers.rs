//! Servers other than Dovecot, from recorded dialogues: what Courier,
//! GNU Mailutils and Cyrus say that Dovecot never does, replayed by the
//! scripted fake server (issue "works with every server"). Each test
//! fails if mailretr goes back to what it did before with that server.

use std::time::Duration;

use crate::support::config::{AccountBuilder, ConfigBuilder};
use crate::support::fake::{FakeServer, Step};
use crate::support::{delivered, Env, Output};

/// A message with UTF-8 in its header fields (RFC 6532), as the sender
/// wrote it.
const UTF8_MESSAGE: &str = "From: Jörg <joerg@example.org>\r\n\
Subject: Grüße aus Köln\r\n\
Message-ID: <utf8-1@example.org>\r\n\
\r\n\
Hallo.\r\n";

fn pop3(port: u16, tls: &str) -> AccountBuilder {
    AccountBuilder::fake("fake", "pop3", port)
        .tls(tls)
        .allow_plaintext()
}

fn imaps(server: &FakeServer) -> AccountBuilder {
    AccountBuilder::fake("fake", "imap", server.port())
        .tls("implicit")
        .ca_file(&server.cert().cert_pem)
}

/// Runs `mailretr ARGS` with `account` as the only account against
/// `server`, waits for the server's script to end and checks it went as
/// written.
fn run(server: &FakeServer, account: AccountBuilder, args: &[&str]) -> (Env, Output) {
    let env = Env::new();
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(args);
    assert!(server.settle(Duration::from_secs(10)), "{}", out.stderr);
    server.assert_no_errors();
    (env, out)
}

/// The end of a POP3 session with an empty mailbox.
fn pop3_empty_mailbox() -> [Step; 7] {
    [
        Step::expect("LIST"),
        Step::line("+OK\r\n."),
        Step::expect("UIDL"),
        Step::line("+OK\r\n."),
        Step::expect("QUIT"),
        Step::line("+OK"),
        Step::ExpectClose,
    ]
}

/// Courier's pop3d: `CAPA` lists `UTF8 USER`, and until the client says
/// `UTF8` (RFC 6856) a message with UTF-8 headers is replaced by a
/// generated "Cannot display Unicode content" wrapper. The script only
/// hands out the real message after `UTF8`; a client that skipped it
/// would break the script, and the test checks the delivered bytes are
/// the original's.
#[test]
fn courier_pop3_gets_utf8_mode_and_the_message_not_its_wrapper() {
    let retr = format!(
        "+OK {} octets follow.\r\n{UTF8_MESSAGE}.\r\n",
        UTF8_MESSAGE.len()
    );
    let server = FakeServer::start(vec![
        Step::line("+OK Hello there."),
        Step::expect("CAPA"),
        Step::send(
            "+OK Here's what I can do:\r\nSTLS\r\nTOP\r\nUSER\r\nLOGIN-DELAY 10\r\n\
             PIPELINING\r\nUIDL\r\nUTF8 USER\r\nIMPLEMENTATION Courier Mail Server\r\n.\r\n",
        ),
        Step::expect("UTF8"),
        Step::line("+OK UTF8 enabled"),
        Step::expect("USER u"),
        Step::line("+OK Password required."),
        Step::expect("PASS topsecret"),
        Step::line("+OK logged in."),
        Step::expect("LIST"),
        Step::send(format!(
            "+OK POP3 clients that break here, they violate STD53.\r\n1 {}\r\n.\r\n",
            UTF8_MESSAGE.len()
        )),
        Step::expect("UIDL"),
        Step::send("+OK\r\n1 UID1-1700000000\r\n.\r\n"),
        Step::expect("RETR 1"),
        Step::send(retr),
        Step::expect("DELE 1"),
        Step::line("+OK Deleted."),
        Step::expect("QUIT"),
        Step::line("+OK Bye-bye."),
        Step::ExpectClose,
    ]);
    let (env, out) = run(&server, pop3(server.port(), "none"), &["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = delivered(&env.path("Maildir"));
    assert_eq!(got.len(), 1);
    let text = String::from_utf8(got[0].clone()).unwrap();
    assert!(text.contains("Subject: Grüße aus Köln\n"), "{text}");
    assert!(!text.contains("Cannot display Unicode"), "{text}");
}

/// GNU Mailutils' pop3d (like qpopper and Cyrus) puts an APOP timestamp
/// in every greeting, whether or not the user has an APOP secret. With
/// no `auth` key, mailretr logs in with USER/PASS as fetchmail does.
#[test]
fn mailutils_pop3_apop_timestamp_is_not_taken_as_an_invitation() {
    let server = FakeServer::start(
        vec![
            Step::line("+OK POP3 Ready <8732.1701450000@mailutils.example>"),
            Step::expect("CAPA"),
            Step::send(
                "+OK Capability list follows\r\nTOP\r\nUSER\r\nUIDL\r\nRESP-CODES\r\n\
             PIPELINING\r\nEXPIRE NEVER\r\nAUTH-RESP-CODE\r\n\
             IMPLEMENTATION GNU Mailutils 3.15\r\n.\r\n",
            ),
            Step::expect("USER u"),
            Step::line("+OK"),
            Step::expect("PASS topsecret"),
            Step::line("+OK opened mailbox for u"),
        ]
        .into_iter()
        .chain(pop3_empty_mailbox())
        .collect(),
    );
    let (_env, out) = run(&server, pop3(server.port(), "none"), &["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!server.transcript().contains("APOP"));
}

/// The start of a POP3 session whose server offers SCRAM-SHA-256 and
/// CRAM-MD5 and can serve neither for this user (Mailutils with hashed
/// passwords): both are tried and refused.
fn pop3_refusing_sasl(greeting_stamp: bool) -> Vec<Step> {
    vec![
        Step::line(if greeting_stamp {
            "+OK POP3 Ready <1.2@host>"
        } else {
            "+OK POP3 Ready"
        }),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nUIDL\r\nSASL SCRAM-SHA-256 CRAM-MD5\r\n.\r\n"),
        Step::expect("AUTH SCRAM-SHA-256 "),
        Step::line("-ERR [AUTH] no SCRAM secret for this user"),
        Step::expect("AUTH CRAM-MD5"),
        Step::line("+ PDEyMzQ1QGhvc3Q+"),
        Step::ExpectAny,
        Step::line("-ERR [AUTH] Authentication failed"),
    ]
}

/// A mechanism the server advertises but cannot serve for the user gives
/// way to the next one allowed, over TLS down to USER/PASS; a server that
/// hangs up after a failure is reconnected to. `-v` tells each step.
#[test]
fn pop3_falls_back_after_a_refused_mechanism_even_across_a_hangup() {
    let mut first = vec![Step::StartTls];
    first.extend(pop3_refusing_sasl(false));
    first.push(Step::Close);
    let server = FakeServer::start_many(vec![
        first,
        vec![
            Step::StartTls,
            Step::line("+OK POP3 Ready"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nUSER\r\nUIDL\r\nSASL SCRAM-SHA-256 CRAM-MD5\r\n.\r\n"),
            Step::expect("USER u"),
            Step::line("+OK"),
            Step::expect("PASS topsecret"),
            Step::line("+OK in"),
        ]
        .into_iter()
        .chain(pop3_empty_mailbox())
        .collect(),
    ]);
    let account = pop3(server.port(), "implicit").ca_file(&server.cert().cert_pem);
    let (_env, out) = run(&server, account, &["-v", "fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(server.connections(), 2);
    assert!(
        out.stderr.contains("cram-md5 failed; trying user"),
        "{}",
        out.stderr
    );
}

/// Without TLS, a failed SCRAM (which would have proved the server) never
/// gives way to a mechanism that sends the password itself; the error
/// lists what was tried.
#[test]
fn pop3_never_falls_back_from_scram_to_a_clear_password_without_tls() {
    let mut script = pop3_refusing_sasl(true);
    script.push(Step::ExpectClose);
    let server = FakeServer::start(script);
    let (_env, out) = run(&server, pop3(server.port(), "none"), &["fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let sent = server.transcript();
    assert!(!sent.contains("PASS") && !sent.contains("APOP"), "{sent}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("tried scram-sha-256 (-ERR [AUTH] no SCRAM secret for this user), cram-md5 (-ERR [AUTH] Authentication failed)"),
        "{}",
        out.stderr
    );
}

/// APOP is used when `auth` names it.
#[test]
fn apop_is_used_when_named() {
    let server = FakeServer::start(
        vec![
            Step::line("+OK POP3 Ready <1896.697170952@dbc.mtview.ca.us>"),
            Step::expect("CAPA"),
            Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
            Step::expect("APOP u "),
            Step::line("+OK in"),
        ]
        .into_iter()
        .chain(pop3_empty_mailbox())
        .collect(),
    );
    let account = pop3(server.port(), "none").line("auth = [\"apop\"]");
    let (_env, out) = run(&server, account, &["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// GNU Mailutils' imap4d: SCRAM-SHA-256 and CRAM-MD5 advertised but
/// refused for the user, LOGIN works; in delete mode its EXPUNGE answer
/// says `* 1 EXPUNGED`, which the `imap` crate cannot parse (it used to
/// end every such run with "server said BYE: no explanation given").
#[test]
fn mailutils_imap_falls_back_to_login_and_its_expunged_is_understood() {
    let message = "Subject: mu\r\n\r\nbody\r\n";
    let server = FakeServer::start(vec![
        Step::StartTls,
        Step::line(
            "* OK [CAPABILITY IMAP4rev1 NAMESPACE ID IDLE LITERAL+ UNSELECT AUTH=SCRAM-SHA-256 AUTH=CRAM-MD5] IMAP4rev1 Debian GNU Mailutils 3.15",
        ),
        Step::expect("a1 AUTHENTICATE SCRAM-SHA-256"),
        Step::line("+ "),
        Step::ExpectAny,
        Step::line("a1 NO AUTHENTICATE Authentication failed"),
        Step::expect("a2 AUTHENTICATE CRAM-MD5"),
        Step::line("+ PDEyMzQ1QGhvc3Q+"),
        Step::ExpectAny,
        Step::line("a2 NO AUTHENTICATE Authentication failed"),
        Step::expect("a3 LOGIN "),
        Step::line("a3 OK LOGIN Completed"),
        Step::expect("a4 CAPABILITY"),
        Step::line("* CAPABILITY IMAP4rev1 NAMESPACE ID IDLE LITERAL+ UNSELECT"),
        Step::line("a4 OK CAPABILITY Completed"),
        Step::expect("ai1 ID "),
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::line("* ID NIL"),
        Step::line("ai1 OK ID completed"),
        Step::line("* 1 EXISTS"),
        Step::line("* OK [UIDVALIDITY 1701450000] UID validity status"),
        Step::line("* OK [UIDNEXT 2] Predicted next uid"),
        Step::line("ab1 OK [READ-WRITE] SELECT Completed"),
        Step::line(&format!("* 1 FETCH (UID 1 RFC822.SIZE {})", message.len())),
        Step::line("ab2 OK UID FETCH Completed"),
        Step::expect("ab3 UID FETCH 1 (UID FLAGS BODY.PEEK[])"),
        Step::line(&format!("* 1 FETCH (UID 1 BODY[] {{{}}}", message.len())),
        Step::send(format!("{message})\r\n")),
        Step::line("ab3 OK UID FETCH Completed"),
        Step::expect("a5 UID STORE 1 +FLAGS.SILENT (\\Deleted)"),
        Step::line("a5 OK UID STORE Completed"),
        // No UIDPLUS: mailretr checks nothing else is marked first.
        Step::expect("a6 UID SEARCH DELETED"),
        Step::line("* SEARCH 1"),
        Step::line("a6 OK SEARCH Completed"),
        Step::expect("a7 EXPUNGE"),
        Step::line("* 1 EXPUNGED"),
        Step::line("a7 OK EXPUNGE Completed"),
        Step::expect("a8 LOGOUT"),
        Step::line("* BYE Session terminating."),
        Step::line("a8 OK LOGOUT Completed"),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, imaps(&server)).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, server.transcript());
    assert!(server.settle(Duration::from_secs(10)));
    server.assert_no_errors();
    assert_eq!(delivered(&env.path("Maildir")).len(), 1);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// A line the IMAP grammar rejects is a protocol error (exit 4) that
/// quotes the line, escaped, not "server said BYE"; and an `OK` ending in
/// a bare LF is read as the `OK` it is.
#[test]
fn an_unparsable_imap_line_is_quoted_and_a_bare_lf_is_tolerated() {
    let server = FakeServer::start(vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
        Step::expect("a1 AUTHENTICATE PLAIN "),
        // A bare LF: read as the OK it is.
        Step::send("a1 OK logged in\n"),
        Step::expect("a2 CAPABILITY"),
        Step::line("* CAPABILITY IMAP4rev1 \u{1b}[2J((\"unbalanced"),
        Step::line("a2 OK"),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, imaps(&server)).write(&env);
    let out = env.run(&["fetch"]);
    assert!(server.settle(Duration::from_secs(10)));
    assert!(server.transcript().contains("a2 CAPABILITY"));
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("account fake"), "{}", out.stderr);
    assert!(
        out.stderr.contains("CAPABILITY IMAP4rev1"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unbalanced"), "{}", out.stderr);
    assert!(!out.stderr.contains('\u{1b}'), "{}", out.stderr);
    assert!(!out.stderr.contains("BYE"), "{}", out.stderr);
}

/// Courier IMAP keeps folders under the personal namespace `INBOX.`: the
/// man page's patterns (`Lists/*`, `!Lists/spam`) name them relative to
/// it, and a `folders` list that matches nothing is a configuration error
/// (exit 5) naming what the server has.
#[test]
fn courier_namespace_folders_are_matched_relative_and_a_typo_is_an_error() {
    let login = || {
        vec![
            Step::StartTls,
            Step::line("* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT SORT QUOTA IDLE AUTH=PLAIN SASL-IR] Courier-IMAP ready."),
            Step::expect("a1 AUTHENTICATE PLAIN "),
            Step::line("a1 OK LOGIN Ok."),
            Step::expect("a2 CAPABILITY"),
            Step::line("* CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT SORT QUOTA IDLE"),
            Step::line("a2 OK CAPABILITY completed"),
            Step::expect("ab1 NAMESPACE"),
            Step::line("* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\")(\"shared.\" \".\"))"),
            Step::line("ab1 OK NAMESPACE completed."),
            Step::expect("a3 LIST \"\" \"*\""),
            Step::line("* LIST (\\Unmarked \\HasChildren) \".\" \"INBOX\""),
            Step::line("* LIST (\\HasNoChildren) \".\" \"INBOX.Lists.rust\""),
            Step::line("* LIST (\\HasNoChildren) \".\" \"INBOX.Lists.spam\""),
            Step::line("* LIST (\\HasNoChildren) \".\" \"INBOX.Spam\""),
            Step::line("a3 OK LIST completed"),
        ]
    };
    let mut script = login();
    for (tag, name) in [("ab2", "INBOX"), ("ab4", "INBOX.Lists.rust")] {
        let list = if tag == "ab2" { "ab3" } else { "ab5" };
        script.extend([
            Step::expect(format!("{tag} SELECT \"{name}\"")),
            Step::expect(format!("{list} UID FETCH 1:* (UID RFC822.SIZE)")),
            Step::line("* 0 EXISTS"),
            Step::line("* OK [UIDVALIDITY 9] Ok"),
            Step::line(&format!("{tag} OK [READ-WRITE] Ok")),
            Step::line(&format!("{list} OK FETCH completed.")),
        ]);
    }
    // Courier offers QUOTA: read once per run (none set here).
    script.extend([
        Step::expect("a4 GETQUOTAROOT \"INBOX\""),
        Step::line("* QUOTAROOT \"INBOX\""),
        Step::line("a4 OK GETQUOTAROOT Ok."),
        Step::expect("a5 LOGOUT"),
        Step::line("* BYE Courier-IMAP server shutting down"),
        Step::line("a5 OK LOGOUT completed"),
        Step::ExpectClose,
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    let account =
        imaps(&server).line("folders = [\"INBOX\", \"Lists/*\", \"!Lists/spam\", \"!Spam\"]");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(server.settle(Duration::from_secs(10)));
    server.assert_no_errors();

    let mut script = login();
    script.extend([
        Step::expect("a4 LOGOUT"),
        Step::line("a4 OK"),
        Step::ExpectClose,
    ]);
    let server = FakeServer::start(script);
    let env = Env::new();
    let account = imaps(&server).line("folders = [\"Lists/rsut\"]");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("account fake"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("the server has: INBOX, Lists/rust, Lists/spam, Spam"),
        "{}",
        out.stderr
    );
}

/// A server offering `UTF8=ACCEPT` (RFC 6855) is asked for it, so that
/// it hands out messages with UTF-8 headers as they are.
#[test]
fn imap_utf8_accept_is_enabled_when_offered() {
    let server = FakeServer::start(vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN ENABLE UTF8=ACCEPT] fake"),
        Step::expect("a1 AUTHENTICATE PLAIN "),
        Step::line("a1 OK [CAPABILITY IMAP4rev1 ENABLE UTF8=ACCEPT] in"),
        Step::expect("a2 ENABLE UTF8=ACCEPT"),
        Step::line("* ENABLED UTF8=ACCEPT"),
        Step::line("a2 OK enabled"),
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::line("* 0 EXISTS"),
        Step::line("* OK [UIDVALIDITY 5] ok"),
        Step::line("ab1 OK [READ-WRITE] selected"),
        Step::line("ab2 OK nothing"),
        Step::expect("a3 LOGOUT"),
        Step::line("a3 OK"),
        Step::ExpectClose,
    ]);
    let (_env, out) = run(&server, imaps(&server), &["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// An IMAP server that hangs up after a refused mechanism is connected to
/// again for the next one.
#[test]
fn imap_falls_back_across_a_hangup() {
    let server = FakeServer::start_many(vec![
        vec![
            Step::StartTls,
            Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
            Step::expect("a1 AUTHENTICATE PLAIN "),
            Step::line("a1 NO [AUTHENTICATIONFAILED] Authentication failed."),
            Step::Close,
        ],
        vec![
            Step::StartTls,
            Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
            Step::expect("a1 LOGIN "),
            Step::line("a1 OK [CAPABILITY IMAP4rev1] in"),
            Step::expect("ab1 SELECT \"INBOX\""),
            Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
            Step::line("* 0 EXISTS"),
            Step::line("* OK [UIDVALIDITY 5] ok"),
            Step::line("ab1 OK [READ-WRITE] selected"),
            Step::line("ab2 OK nothing"),
            Step::expect("a2 LOGOUT"),
            Step::line("a2 OK"),
            Step::ExpectClose,
        ],
    ]);
    let (_env, out) = run(&server, imaps(&server), &["-v", "fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(server.connections(), 2);
    assert!(out.stderr.contains("reconnecting"), "{}", out.stderr);
}
