//! The `proxy` and `source_ip` keys, against the real Dovecot: POP3S and
//! IMAPS through an in-process SOCKS5 and HTTP CONNECT proxy
//! (tests/support/socks.rs), TLS checked against the mail server's name
//! through the tunnel.

use crate::support;

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::socks::{Kind, MiniProxy};
use support::{delivered, sorted};
use support::{AccountBuilder, ConfigBuilder, Env};

/// Fills `user`'s INBOX with a few realistic messages; returns them.
fn fill(dovecot: &Dovecot, user: &User) -> Vec<Vec<u8>> {
    let originals = corpus::realistic(4, 7);
    for m in &originals {
        dovecot.add_message(user, "INBOX", m);
    }
    originals
}

/// Fetches `protocol` (`pop3` or `imap`, implicit TLS) through `proxy`.
fn fetch_through(protocol: &str, proxy: &str) -> (Env, support::Output, Vec<Vec<u8>>) {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let originals = fill(dovecot, &user);
    let env = Env::new();
    let account = AccountBuilder::dovecot("acct", protocol, dovecot, &user)
        .line(&format!("proxy = {proxy:?}"));
    ConfigBuilder::single(&env, account)
        .hostname("test.example")
        .write(&env);
    let out = env.run(&["fetch"]);
    (env, out, originals)
}

/// Fetches POP3S and IMAPS through a proxy of `kind` at `scheme://` (with
/// `credentials`), byte-exact, and checks that the proxy was asked for
/// the server by name (TLS then checks the certificate against it).
fn fetches_by_name_through(kind: Kind, scheme: &str, credentials: &str) {
    for (protocol, port) in [
        ("pop3", Dovecot::shared().pop3s),
        ("imap", Dovecot::shared().imaps),
    ] {
        let proxy = MiniProxy::start(kind);
        let url = format!("{scheme}://{credentials}127.0.0.1:{}", proxy.port());
        let (env, out, originals) = fetch_through(protocol, &url);
        assert_eq!(out.code, 0, "{protocol}: {}", out.stderr);
        assert_eq!(
            delivered(&env.path("Maildir")),
            sorted(originals),
            "{protocol}"
        );
        assert_eq!(
            proxy.targets(),
            vec![format!("localhost:{port}")],
            "{protocol}"
        );
    }
}

#[test]
fn socks5h_sends_the_name_and_tls_checks_it() {
    fetches_by_name_through(Kind::Socks5, "socks5h", "me:s3cret@");
}

#[test]
fn socks5_resolves_locally() {
    let proxy = MiniProxy::start(Kind::Socks5);
    let url = format!("socks5://127.0.0.1:{}", proxy.port());
    let (env, out, originals) = fetch_through("imap", &url);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(delivered(&env.path("Maildir")), sorted(originals));
    let targets = proxy.targets();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert!(!targets[0].starts_with("localhost:"), "{targets:?}");
}

#[test]
fn http_connect_for_pop3s_and_imaps() {
    fetches_by_name_through(Kind::Http, "http", "");
}

#[test]
fn a_refusing_proxy_is_exit_2_naming_the_account() {
    for (kind, scheme, said) in [
        (
            Kind::Socks5Refusing,
            "socks5h",
            "connection refused (reply 0x05)",
        ),
        (Kind::HttpRefusing, "http", "HTTP/1.1 403 Forbidden"),
    ] {
        let proxy = MiniProxy::start(kind);
        let url = format!("{scheme}://me:s3cret@127.0.0.1:{}", proxy.port());
        let (env, out, _) = fetch_through("imap", &url);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains("account acct"), "{}", out.stderr);
        assert!(out.stderr.contains(said), "{}", out.stderr);
        assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
        assert!(delivered(&env.path("Maildir")).is_empty());
    }
}

#[test]
fn source_ip_binds_the_local_address() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let originals = fill(dovecot, &user);
    let env = Env::new();
    let account =
        AccountBuilder::dovecot_imaps("acct", dovecot, &user).line("source_ip = \"127.0.0.1\"");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(delivered(&env.path("Maildir")), sorted(originals));
    // An address this host does not have cannot be bound.
    let user = dovecot.new_user();
    fill(dovecot, &user);
    let env = Env::new();
    let account =
        AccountBuilder::dovecot_imaps("acct", dovecot, &user).line("source_ip = \"192.0.2.1\"");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot bind source_ip 192.0.2.1"),
        "{}",
        out.stderr
    );
}
