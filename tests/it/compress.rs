//! IMAP COMPRESS=DEFLATE (RFC 4978) against the real Dovecot (every test
//! Dovecot loads `imap_zlib`): mail byte-identical, the transcript shows
//! the uncompressed dialogue, `compress = false` does not ask for it, and
//! the bytes on the wire, counted by a relay, are measurably fewer.

use crate::support;

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::proxy::CountingProxy;
use support::{delivered, sorted};
use support::{AccountBuilder, ConfigBuilder, Env};

/// The client lines of a `-vv` transcript for `label`.
fn client_lines<'a>(stderr: &'a str, label: &str) -> Vec<&'a str> {
    let prefix = format!("mailretr: {label}: C: ");
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// Fills a new user's INBOX with `n` realistic messages.
fn filled(dovecot: &Dovecot, n: usize) -> (User, Vec<Vec<u8>>) {
    let user = dovecot.new_user();
    let originals = corpus::realistic(n, 16);
    for m in &originals {
        dovecot.add_message(&user, "INBOX", m);
    }
    (user, originals)
}

/// Fetches `user`'s mail (keep mode) through a counting relay with the
/// `compress` line given; returns the relay, the run's stderr (`-vv`) and
/// the mail delivered.
fn fetch_counted(
    dovecot: &Dovecot,
    user: &User,
    compress: &str,
) -> (CountingProxy, String, Vec<Vec<u8>>) {
    let relay = CountingProxy::start(dovecot.imaps);
    let env = Env::new();
    let mut account = AccountBuilder::dovecot_imaps("acct", dovecot, user)
        .port(relay.port())
        .keep(true)
        .line("add_received = false");
    if !compress.is_empty() {
        account = account.line(compress);
    }
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["-vv", "fetch"]);
    out.expect_success();
    let got = delivered(&env.path("Maildir"));
    (relay, out.stderr, got)
}

#[test]
fn compress_fetches_byte_identical_with_measurably_fewer_bytes() {
    let dovecot = Dovecot::shared();
    let (user, originals) = filled(dovecot, 60);
    let size: u64 = originals.iter().map(|m| m.len() as u64).sum();

    let (on, stderr, got) = fetch_counted(dovecot, &user, "");
    assert_eq!(
        got,
        sorted(originals.clone()),
        "byte-identical with COMPRESS"
    );
    let lines = client_lines(&stderr, "acct");
    let at = lines
        .iter()
        .position(|l| l.ends_with(" COMPRESS DEFLATE"))
        .unwrap_or_else(|| panic!("COMPRESS DEFLATE sent: {lines:?}"));
    // After it the transcript still shows plain commands (and server lines).
    assert!(
        lines[at + 1..].iter().any(|l| l.contains("UID FETCH")),
        "{lines:?}"
    );
    assert!(
        stderr.contains("S: a") && stderr.contains("OK"),
        "server lines shown"
    );

    let (off, stderr, got) = fetch_counted(dovecot, &user, "compress = false");
    assert_eq!(got, sorted(originals), "byte-identical without COMPRESS");
    let lines = client_lines(&stderr, "acct");
    assert!(
        !lines.iter().any(|l| l.contains("COMPRESS")),
        "compress = false sends no COMPRESS: {lines:?}"
    );

    // The realistic corpus (text, and base64 attachments of random bytes)
    // deflates to about 0.75 of its size; without COMPRESS the wire
    // carries more than the mail itself. A silent fall-back fails this.
    let (with, without) = (on.bytes_from_server(), off.bytes_from_server());
    assert!(without > size, "{without} vs mail {size}");
    assert!(
        with * 100 < without * 85,
        "COMPRESS: {with} bytes from the server, without: {without}"
    );
    assert!(
        on.bytes_from_client() < off.bytes_from_client(),
        "commands compressed too: {} vs {}",
        on.bytes_from_client(),
        off.bytes_from_client()
    );
}

#[test]
fn the_imap_destination_appends_compressed_unless_told_not_to() {
    let dovecot = Dovecot::shared();
    let mut client_bytes = Vec::new();
    for compress in ["", "compress = false"] {
        let (source, originals) = filled(dovecot, 30);
        let target = dovecot.new_user();
        let relay = CountingProxy::start(dovecot.imaps);
        let env = Env::new();
        let account = AccountBuilder::dovecot_pop3s("acct", dovecot, &source)
            .line("add_received = false")
            .deliver_to(&["archive"]);
        ConfigBuilder::new(&env)
            .account(account)
            .imap(
                "archive",
                dovecot,
                relay.port(),
                &target,
                &format!("folder = \"Fetched\"\n{compress}"),
            )
            .write(&env);
        let out = env.run(&["-vv", "fetch"]);
        out.expect_success();
        let lines = client_lines(&out.stderr, "archive");
        assert_eq!(
            lines.iter().any(|l| l.ends_with(" COMPRESS DEFLATE")),
            compress.is_empty(),
            "{compress:?}: {lines:?}"
        );
        assert_eq!(
            sorted(dovecot.messages(&target, "Fetched")),
            sorted(originals),
            "{compress:?}"
        );
        client_bytes.push(relay.bytes_from_client());
    }
    assert!(
        client_bytes[0] * 100 < client_bytes[1] * 85,
        "APPENDs with COMPRESS: {} bytes, without: {}",
        client_bytes[0],
        client_bytes[1]
    );
}

#[test]
fn compress_on_a_pop3_account_is_a_config_error() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let env = Env::new();
    let account = AccountBuilder::dovecot_pop3s("acct", dovecot, &user).line("compress = false");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(5);
    assert!(
        out.stderr
            .contains("account[acct].compress: COMPRESS is an IMAP extension"),
        "{}",
        out.stderr
    );
}
