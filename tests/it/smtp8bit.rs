//! SMTPUTF8 and 8BITMIME in the SMTP destination, through the real
//! binary against a real aiosmtpd (`support::smtpd`): a message with raw
//! UTF-8 header fields goes out with `SMTPUTF8` declared where it is
//! offered and is refused (never sent) where it is not; an 8-bit body to
//! a server without 8BITMIME arrives as 7-bit that decodes to the
//! original, or is refused with the reason when it cannot be converted;
//! one EHLO per session (two with STARTTLS, as the protocol requires).

use crate::support;

use base64::Engine as _;

use support::dovecot::{Dovecot, User};
use support::smtpd::{Options, Smtpd, Tls};
use support::{AccountBuilder, ConfigBuilder, Env, TestCert};

fn account(dovecot: &Dovecot, user: &User, deliver_to: &[&str]) -> AccountBuilder {
    AccountBuilder::dovecot_pop3s("acct", dovecot, user).deliver_to(deliver_to)
}

/// `[general]` without `Received:` headers, the account, and the relay
/// (in clear) on `port`.
fn config(env: &Env, account: AccountBuilder, port: u16) -> ConfigBuilder {
    ConfigBuilder::new(env)
        .hostname("test.example")
        .general("add_received = false")
        .account(account)
        .smtp("relay", port, "jaco@kroon.co.za", "tls = \"none\"")
}

/// A user with `messages` in INBOX.
fn user_with(dovecot: &Dovecot, messages: &[&[u8]]) -> User {
    let user = dovecot.new_user();
    for m in messages {
        dovecot.add_message(&user, "INBOX", m);
    }
    user
}

/// Content as it means on the wire: every LF preceded by a CR.
fn wire(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The MAIL FROM parameters the server saw for message `n`.
fn mail_options(smtpd: &Smtpd, n: usize) -> String {
    smtpd.envelope(n).lines().nth(2).unwrap_or("").to_string()
}

const UTF8_SUBJECT: &[u8] = "Return-Path: <alice@example.org>\nFrom: Jürgen <alice@example.org>\n\
    Subject: Grüße aus Köln\nMessage-ID: <utf8@test>\nMIME-Version: 1.0\n\
    Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nHallo Jürgen\n"
    .as_bytes();

const ASCII: &[u8] =
    b"Return-Path: <alice@example.org>\nFrom: alice@example.org\nSubject: plain\nMessage-ID: <ascii@test>\n\nhello\n";

#[test]
fn utf8_headers_are_sent_with_smtputf8_and_one_ehlo_per_session() {
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, &[UTF8_SUBJECT, ASCII]);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            smtputf8: true,
            ..Options::default()
        },
    );
    config(&env, account(dovecot, &user, &["relay"]), smtpd.port).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(
        smtpd.messages(),
        vec![UTF8_SUBJECT.to_vec(), ASCII.to_vec()]
    );
    let first = mail_options(&smtpd, 1);
    assert!(
        first.contains("SMTPUTF8"),
        "declared for UTF-8 headers: {first}"
    );
    assert!(first.contains("BODY=8BITMIME"), "{first}");
    let second = mail_options(&smtpd, 2);
    assert!(!second.contains("SMTPUTF8"), "not for ASCII mail: {second}");
    // One connection, one EHLO, for both messages.
    assert_eq!(smtpd.connections(), 1);
    assert_eq!(smtpd.ehlo_log().lines().count(), 1, "{}", smtpd.ehlo_log());
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn utf8_headers_without_smtputf8_go_as_8bitmime_or_are_refused_without_it() {
    // 8BITMIME but no SMTPUTF8: sent as MTAs have long sent 8-bit
    // headers, under BODY=8BITMIME, byte for byte.
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, &[UTF8_SUBJECT]);
    let env = Env::new();
    let smtpd = Smtpd::start(&env.path("smtpd"), Options::default());
    config(&env, account(dovecot, &user, &["relay"]), smtpd.port).write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(smtpd.messages(), vec![UTF8_SUBJECT.to_vec()]);
    let options = mail_options(&smtpd, 1);
    assert!(options.contains("BODY=8BITMIME"), "{options}");
    assert!(!options.contains("SMTPUTF8"), "{options}");

    // Neither: refused for good, never sent; on_refused = "keep" (the
    // default) leaves it on the server, exit 10.
    refused_by_a_server_without_8bitmime(
        UTF8_SUBJECT,
        "the message has 8-bit headers and the server offers neither SMTPUTF8 nor 8BITMIME",
    );
}

#[test]
fn an_8bit_body_to_a_server_without_8bitmime_arrives_as_7bit_that_decodes_to_it() {
    let plain = "Return-Path: <alice@example.org>\nFrom: alice@example.org\nSubject: non-MIME\n\
        Message-ID: <plain@test>\n\nGrüße aus Köln\nzweite Zeile mit = und Leerzeichen \n"
        .as_bytes()
        .to_vec();
    let text_part = "Grüße\n".repeat(30);
    let binary_part: Vec<u8> = (1u8..=255).filter(|&b| b != b'\r').collect();
    let mut multipart = b"Return-Path: <alice@example.org>\nFrom: alice@example.org\n\
        Subject: multipart\nMessage-ID: <multi@test>\nMIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\n\
        Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        .to_vec();
    multipart.extend_from_slice(text_part.as_bytes());
    multipart.extend_from_slice(b"\n--b1\nContent-Type: application/octet-stream\n\n");
    multipart.extend_from_slice(&binary_part);
    multipart.extend_from_slice(b"\n--b1--\n");
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, &[&plain, &multipart, ASCII]);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            eight_bit_mime: false,
            ..Options::default()
        },
    );
    // A Maildir too: the fan-out path (no headers first), and the local
    // copy keeps the original bytes.
    let maildir = env.path("Maildir");
    config(
        &env,
        account(dovecot, &user, &["relay", "home"]),
        smtpd.port,
    )
    .maildir("home", &maildir)
    .write(&env);
    env.run(&["fetch"]).expect_success();
    let got = smtpd.messages();
    assert_eq!(got.len(), 3);
    for (n, m) in got.iter().enumerate() {
        assert!(m.is_ascii(), "message {} is 7-bit", n + 1);
        let options = mail_options(&smtpd, n + 1);
        assert!(
            !options.contains("BODY"),
            "no BODY= without 8BITMIME: {options}"
        );
    }
    // The non-MIME message: MIME headers added, the body quoted-printable.
    let (header, body) = split(&got[0]);
    assert!(header.ends_with(
        "Message-ID: <plain@test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: quoted-printable"
    ), "{header}");
    assert_eq!(decode_qp(body), wire(split_bytes(&plain).1));
    // The multipart: each part decodes to what it was.
    let text = String::from_utf8(got[1].clone()).unwrap();
    let parts: Vec<&str> = text.split("\n--b1").collect();
    assert_eq!(parts.len(), 4, "{text}");
    let (h1, b1) = split(parts[1].as_bytes());
    assert!(
        h1.contains("Content-Transfer-Encoding: quoted-printable"),
        "{h1}"
    );
    assert!(!h1.contains("8bit"), "{h1}");
    assert_eq!(decode_qp(b1), wire(text_part.as_bytes()));
    let (h2, b2) = split(parts[2].as_bytes());
    assert!(h2.contains("Content-Transfer-Encoding: base64"), "{h2}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(
            b2.iter()
                .filter(|b| !b.is_ascii_whitespace())
                .copied()
                .collect::<Vec<u8>>(),
        )
        .unwrap();
    assert_eq!(decoded, wire(&binary_part));
    // 7-bit mail is sent as it is.
    assert_eq!(got[2], ASCII);
    let mut local = env.maildir_messages(&maildir);
    local.sort();
    let mut originals = vec![plain, multipart, ASCII.to_vec()];
    originals.sort();
    assert_eq!(local, originals, "the Maildir copy is byte-exact");
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn an_8bit_message_that_cannot_be_converted_is_refused_with_the_reason() {
    let binary = b"Return-Path: <alice@example.org>\nFrom: alice@example.org\nSubject: binary\n\
        MIME-Version: 1.0\nContent-Type: application/octet-stream\n\
        Content-Transfer-Encoding: binary\n\n\x00\xff\xfe\n";
    refused_by_a_server_without_8bitmime(
        binary,
        "8-bit message and the server does not offer 8BITMIME; could not convert: 8-bit content in an application/octet-stream part with Content-Transfer-Encoding: binary",
    );
}

/// `message`, fetched from Dovecot for a relay without 8BITMIME, is
/// refused for good saying `why`, never sent; on_refused = "keep" (the
/// default) leaves it on the server, exit 10.
fn refused_by_a_server_without_8bitmime(message: &[u8], why: &str) {
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, &[message]);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            eight_bit_mime: false,
            ..Options::default()
        },
    );
    config(&env, account(dovecot, &user, &["relay"]), smtpd.port).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    assert!(out.stderr.contains(why), "{}", out.stderr);
    assert!(smtpd.messages().is_empty());
    assert_eq!(dovecot.messages(&user, "INBOX"), vec![message.to_vec()]);
}

#[test]
fn starttls_sends_ehlo_once_before_and_once_after_tls() {
    let dovecot = Dovecot::shared();
    let user = user_with(dovecot, &[ASCII]);
    let env = Env::new();
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::Starttls,
            ..Options::default()
        },
    );
    ConfigBuilder::new(&env)
        .general("add_received = false")
        .account(account(dovecot, &user, &["relay"]))
        .smtp(
            "relay",
            smtpd.port,
            "jaco@kroon.co.za",
            &format!(
                "tls = \"starttls\"\nca_file = \"{}\"",
                TestCert::shared().cert_pem.display()
            ),
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(smtpd.messages(), vec![ASCII.to_vec()]);
    let ehlos: Vec<String> = smtpd
        .ehlo_log()
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(ehlos, ["tls=False", "tls=True"], "{}", smtpd.ehlo_log());
}

/// A message (or part) split at its empty line, the header as text.
fn split(message: &[u8]) -> (String, &[u8]) {
    let (header, body) = split_bytes(message);
    (String::from_utf8(header.to_vec()).unwrap(), body)
}

fn split_bytes(message: &[u8]) -> (&[u8], &[u8]) {
    let at = message
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("an empty line");
    (&message[..at], &message[at + 2..])
}

/// Quoted-printable decoded by an independent decoder, from the wire.
fn decode_qp(encoded: &[u8]) -> Vec<u8> {
    quoted_printable::decode(wire(encoded), quoted_printable::ParseMode::Strict).unwrap()
}
