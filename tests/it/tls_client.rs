//! The TLS client (OpenSSL directly, `src/net/tls.rs`) through the real
//! `mailretr` binary: TLS session resumption across runs against a real
//! Dovecot (and a stored session that is damaged or that the server no
//! longer knows just means a full handshake), the system trust store as
//! the fallback behind `ca_file` (with the host name still checked),
//! client certificates and SASL EXTERNAL against a Dovecot that verifies
//! them (`ssl_verify_client_cert`, `auth_ssl_username_from_cert`), a
//! client certificate for the SMTP destination against an aiosmtpd that
//! requires one, and the config errors for `client_cert`/`client_key`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::dovecot::{Dovecot, User};
use support::fake::{FakeServer, Step};
use support::smtpd::{Options, Smtpd, Tls};
use support::{AccountBuilder, ConfigBuilder, Env, TestCert};

fn message(n: usize) -> Vec<u8> {
    format!("From: a@example.org\nSubject: tls {n}\nMessage-ID: <tls-{n}@test>\n\nbody {n}\n")
        .into_bytes()
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA in `dir` and a client certificate it issued for the
/// common name `cn`: (CA certificate, client certificate, client key).
fn client_ca(dir: &Path, cn: &str) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut req = vec!["req", "-x509"];
    req.extend(ec);
    let (ca, ca_key) = (p("ca.pem"), p("ca.key"));
    // Each CA its own name (a certificate from a CA of the same name
    // fails its signature check instead, which Dovecot answers by hanging
    // up rather than with an authentication failure).
    static CAS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CAS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let ca_subject = format!("/CN=mailretr test CA {} {n}", std::process::id());
    req.extend(["-nodes", "-days", "30", "-subj", &ca_subject]);
    req.extend(["-keyout", &ca_key, "-out", &ca]);
    openssl(&req);
    let (csr, key, cert) = (p("client.csr"), p("client.key"), p("client.pem"));
    let subject = format!("/CN={cn}");
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend(["-nodes", "-subj", &subject, "-keyout", &key, "-out", &csr]);
    openssl(&req);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "30",
        "-out",
        &cert,
    ]);
    (ca.into(), cert.into(), key.into())
}

/// Runs `mailretr -vv fetch`, expecting exit `code`.
fn fetch(env: &Env, code: i32) -> String {
    let out = env.run(&["-vv", "fetch"]);
    assert_eq!(out.code, code, "{}", out.stderr);
    out.stderr
}

/// An env whose config has an IMAPS and a POP3S account on `dovecot`
/// for `user`, both keeping the mail, delivering to one Maildir.
fn imaps_and_pop3s_kept(dovecot: &Dovecot, user: &User) -> Env {
    let env = Env::new();
    ConfigBuilder::new(&env)
        .account(
            AccountBuilder::dovecot_imaps("imaps", dovecot, user)
                .keep(true)
                .deliver_to(&["home"]),
        )
        .account(
            AccountBuilder::dovecot_pop3s("pop3s", dovecot, user)
                .keep(true)
                .deliver_to(&["home"]),
        )
        .maildir("home", env.path("Maildir"))
        .write(&env);
    env
}

fn sessions(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.path("state/state.db")).unwrap()
}

#[test]
fn tls_sessions_are_resumed_by_the_next_run_and_a_bad_one_means_a_full_handshake() {
    // A Dovecot of its own: its long-lived login processes (service_count
    // = 0) hold the ticket keys, and no other test's connections make it
    // start more of them.
    let dovecot = Dovecot::start();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1));
    let env = imaps_and_pop3s_kept(&dovecot, &user);
    let imaps = format!("localhost:{}: TLS session resumed", dovecot.imaps);
    let pop3s = format!("localhost:{}: TLS session resumed", dovecot.pop3s);

    let first = fetch(&env, 0);
    assert!(!first.contains("TLS session resumed"), "{first}");
    let stored: i64 = sessions(&env)
        .query_row("SELECT count(*) FROM tls_sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 2, "one session per server");

    let second = fetch(&env, 1);
    assert!(second.contains(&imaps), "{second}");
    assert!(second.contains(&pop3s), "{second}");

    // Damaged sessions: not offered, a full handshake, and the new
    // sessions replace them.
    sessions(&env)
        .execute("UPDATE tls_sessions SET session = x'30030201'", [])
        .unwrap();
    let third = fetch(&env, 1);
    assert!(!third.contains("TLS session resumed"), "{third}");
    assert!(third.contains("stored TLS session is unusable"), "{third}");
    let fourth = fetch(&env, 1);
    assert!(
        fourth.contains(&imaps) && fourth.contains(&pop3s),
        "{fourth}"
    );

    // A restarted server has new ticket keys: the stored ticket is
    // offered, refused, and the handshake is a full one, quietly.
    dovecot.restart();
    let fifth = fetch(&env, 1);
    assert!(!fifth.contains("TLS session resumed"), "{fifth}");
    assert!(fifth.contains("not resumed (full handshake)"), "{fifth}");
    let sixth = fetch(&env, 1);
    assert!(sixth.contains(&imaps) && sixth.contains(&pop3s), "{sixth}");
    // Once per account, never twice.
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
    dovecot.stop();
    dovecot.cleanup_dir();
}

/// A Dovecot in its default ("secure") login mode forks a login process,
/// with ticket keys of its own, per connection: it resumes no session.
/// After three handshakes in a row that offered one in vain, none is
/// offered or stored (a mark in state.db instead), so a cron run no
/// longer parses, offers and stores a session for nothing.
#[test]
fn a_server_that_resumes_no_session_is_offered_none_after_three() {
    let dovecot = Dovecot::start_with(
        "service imap-login {\n  service_count = 1\n  process_min_avail = 0\n}\n\
         service pop3-login {\n  service_count = 1\n  process_min_avail = 0\n}\n",
    );
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1));
    let env = imaps_and_pop3s_kept(&dovecot, &user);
    let rows = |env: &Env| -> Vec<(usize, i64)> {
        let conn = sessions(env);
        let mut stmt = conn
            .prepare("SELECT length(session), misses FROM tls_sessions ORDER BY server")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as usize, r.get(1)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let first = fetch(&env, 0);
    assert!(!first.contains("TLS session"), "{first}");
    assert!(rows(&env)
        .iter()
        .all(|&(len, misses)| len > 0 && misses == 0));
    for run in 1..=2 {
        let out = fetch(&env, 1);
        assert_eq!(
            out.matches("TLS session not resumed (full handshake)")
                .count(),
            2,
            "{out}"
        );
        assert!(!out.contains("offering none"), "{out}");
        let stored = rows(&env);
        assert!(
            stored.iter().all(|&(len, misses)| len > 0 && misses == run),
            "run {run}: {stored:?}"
        );
    }
    let third = fetch(&env, 1);
    assert_eq!(
        third.matches("offering none for 7 days").count(),
        2,
        "{third}"
    );
    assert_eq!(rows(&env), vec![(0, 0), (0, 0)], "the marks");
    // From now on nothing is offered, and nothing stored.
    let fourth = fetch(&env, 1);
    assert!(!fourth.contains("TLS session"), "{fourth}");
    assert_eq!(rows(&env), vec![(0, 0), (0, 0)]);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
    dovecot.stop();
    dovecot.cleanup_dir();
}

/// `ca_file` is an extra trust anchor: a chain that does not end in it is
/// verified against the system store (here `SSL_CERT_FILE`, with an empty
/// `SSL_CERT_DIR` so the bundle file is what is used), and the host name
/// is checked on that path too.
#[test]
fn the_system_store_backs_ca_file_and_host_names_are_still_checked() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1));
    let env = Env::new();
    let (other_ca, _, _) = client_ca(&env.path("otherca"), "nobody");
    let empty_dir = env.path("no-certs");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let account = AccountBuilder::dovecot_imaps("acct", dovecot, &user)
        .no_ca_file()
        .ca_file(&other_ca)
        .keep(true);
    ConfigBuilder::single(&env, account).write(&env);
    let run = |cert_file: &Path| {
        env.cmd()
            .args(["fetch"])
            .env("SSL_CERT_DIR", &empty_dir)
            .env("SSL_CERT_FILE", cert_file)
            .output()
            .unwrap()
    };
    // Neither the ca_file nor the system store trusts the server.
    let out = run(&other_ca);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    // The system store does.
    let out = run(&dovecot.cert_pem);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);

    // A certificate the system store trusts, for another name.
    let wrong = TestCert::generate_with(&env.path("wrong"), "wrong.example", "DNS:wrong.example");
    let server =
        FakeServer::start_many_with_cert(vec![vec![Step::StartTls, Step::ExpectClose]], &wrong);
    let env = Env::new();
    ConfigBuilder::single(&env, AccountBuilder::fake("fake", "imap", server.port())).write(&env);
    let out = env
        .cmd()
        .args(["fetch"])
        .env("SSL_CERT_DIR", &empty_dir)
        .env("SSL_CERT_FILE", &wrong.cert_pem)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
    let sent = server.transcript();
    assert!(!sent.contains("topsecret"), "{sent}");
}

/// The Dovecot config for client certificates: verified against `ca`,
/// the user name taken from the certificate's CN, and a passdb that
/// answers EXTERNAL without a password (only for EXTERNAL).
fn external_config(ca: &Path) -> String {
    format!(
        r#"
ssl_ca = <{}
ssl_verify_client_cert = yes
ssl_require_crl = no
auth_ssl_username_from_cert = yes
auth_mechanisms = plain login external
passdb {{
  driver = static
  args = nopassword=y
  mechanisms = external
}}
"#,
        ca.display()
    )
}

/// An account for `user` on `dovecot` with the client certificate and no
/// password.
fn with_cert(
    protocol: &str,
    dovecot: &Dovecot,
    user: &User,
    cert: &Path,
    key: &Path,
) -> AccountBuilder {
    let port = if protocol == "imap" {
        dovecot.imaps
    } else {
        dovecot.pop3s
    };
    AccountBuilder::new(protocol, protocol, "localhost")
        .port(port)
        .ca_file(&dovecot.cert_pem)
        .user(&user.name)
        .line(&format!("client_cert = \"{}\"", cert.display()))
        .line(&format!("client_key = \"{}\"", key.display()))
}

#[test]
fn sasl_external_logs_in_with_the_client_certificate_and_no_password() {
    let ca_dir = tempfile::tempdir().unwrap();
    let first_user = "user1";
    let (ca, cert, key) = client_ca(ca_dir.path(), first_user);
    let dovecot = Dovecot::start_with(&external_config(&ca));
    let user = dovecot.new_user();
    assert_eq!(
        user.name, first_user,
        "the certificate names the first user"
    );
    for n in 1..=3 {
        dovecot.add_message(&user, "INBOX", &message(n));
    }
    // IMAP with auth = ["external"] and POP3 with no auth key (a client
    // certificate and no password: EXTERNAL), each into its own Maildir.
    let env = Env::new();
    ConfigBuilder::new(&env)
        .account(
            with_cert("imap", &dovecot, &user, &cert, &key)
                .line("auth = [\"external\"]")
                .keep(true)
                .deliver_to(&["imap"]),
        )
        .account(
            with_cert("pop3", &dovecot, &user, &cert, &key)
                .keep(true)
                .deliver_to(&["pop3"]),
        )
        .maildir("imap", env.path("imap"))
        .maildir("pop3", env.path("pop3"))
        .write(&env);
    let stderr = fetch(&env, 0);
    // (The transcript hides what follows AUTHENTICATE.)
    assert!(stderr.contains("AUTHENTICATE EXTERNAL"), "{stderr}");
    assert!(stderr.contains("AUTH EXTERNAL ="), "{stderr}");
    assert_eq!(env.maildir_messages(env.path("imap")).len(), 3);
    assert_eq!(env.maildir_messages(env.path("pop3")).len(), 3);
    let log = std::fs::read_to_string(&dovecot.log).unwrap_or_default();
    assert!(log.contains("method=EXTERNAL"), "{log}");
    // This Dovecot fails every resumed handshake (it verifies client
    // certificates without a session id context: "session id context
    // uninitialized"): the next run connects again without the session,
    // and the run after it offers none.
    let second = fetch(&env, 1);
    assert!(
        second.contains("not resuming sessions with this server"),
        "{second}"
    );
    assert!(
        second.contains("connecting again without the TLS session"),
        "{second}"
    );
    let third = fetch(&env, 1);
    assert!(!third.contains("resum"), "{third}");
    assert!(!third.contains("TLS session"), "{third}");

    // The IMAP destination logs in the same way: another user's mail
    // (fetched with a password) is appended to user1's INBOX by EXTERNAL
    // (the default with a client certificate and no password).
    let sender = dovecot.new_user();
    dovecot.add_message(&sender, "INBOX", &message(4));
    let env = Env::new();
    ConfigBuilder::new(&env)
        .account(AccountBuilder::dovecot_pop3s("acct", &dovecot, &sender).deliver_to(&["box"]))
        .destination(
            "box",
            &format!(
                "type = \"imap\"\nhost = \"localhost\"\nport = {}\nca_file = \"{}\"\nuser = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
                dovecot.imaps,
                dovecot.cert_pem.display(),
                user.name,
                cert.display(),
                key.display()
            ),
        )
        .write(&env);
    fetch(&env, 0);
    assert_eq!(
        dovecot.messages(&user, "INBOX").len(),
        4,
        "appended by EXTERNAL"
    );
    assert!(dovecot.messages(&sender, "INBOX").is_empty());

    // A certificate of another CA, for the same name: refused, exit 3
    // (authentication failed), nothing delivered.
    let (_, other_cert, other_key) = client_ca(&ca_dir.path().join("other"), first_user);
    let env = Env::new();
    ConfigBuilder::new(&env)
        .account(
            with_cert("imap", &dovecot, &user, &other_cert, &other_key)
                .line("auth = [\"external\"]")
                .keep(true),
        )
        .account(with_cert("pop3", &dovecot, &user, &other_cert, &other_key).keep(true))
        .maildir("home", env.path("Maildir"))
        .write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("account imap: authentication failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("account pop3: authentication failed"),
        "{}",
        out.stderr
    );
    assert!(env.maildir_messages(env.path("Maildir")).is_empty());
    dovecot.stop();
    dovecot.cleanup_dir();
}

#[test]
fn smtp_destination_presents_the_client_certificate() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1));
    let env = Env::new();
    let (ca, cert, key) = client_ca(&env.path("ca"), "relay-client");
    let smtpd = Smtpd::start(
        &env.path("smtpd"),
        Options {
            tls: Tls::Starttls,
            client_ca: Some(ca),
            ..Options::default()
        },
    );
    let relay = |extra: &str| {
        ConfigBuilder::new(&env)
            .general("add_received = false")
            .account(AccountBuilder::dovecot_pop3s("acct", dovecot, &user).deliver_to(&["relay"]))
            .smtp(
                "relay",
                smtpd.port,
                "jaco@kroon.co.za",
                &format!(
                    "tls = \"starttls\"\nca_file = \"{}\"\n{extra}",
                    TestCert::shared().cert_pem.display()
                ),
            )
            .write(&env)
    };
    // Without a certificate the server refuses the TLS session: the
    // message is spooled (a temporary failure), not lost.
    relay("");
    let out = env.run(&["fetch"]);
    assert!(smtpd.messages().is_empty(), "{}", out.stderr);
    relay(&format!(
        "client_cert = \"{}\"\nclient_key = \"{}\"",
        cert.display(),
        key.display()
    ));
    let out = env.run(&["fetch"]);
    assert!(out.code == 0 || out.code == 1, "{}", out.stderr);
    env.run(&["queue", "flush"]);
    assert_eq!(smtpd.messages(), vec![message(1)], "{}", out.stderr);
    assert!(
        smtpd.ehlo_log().contains("client=commonName=relay-client"),
        "{}",
        smtpd.ehlo_log()
    );
}

#[test]
fn client_certificate_config_errors_name_the_key_before_connecting() {
    let env = Env::new();
    let (_, cert, key) = client_ca(&env.path("ca"), "someone");
    let (_, other_cert, _) = client_ca(&env.path("ca2"), "someone");
    let garbage = env.path("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let missing = env.path("missing.pem");
    // Nothing listens on port 1: the errors come before any connection.
    let account = |lines: &[String]| {
        let mut a = AccountBuilder::new("acct", "imap", "localhost")
            .port(1)
            .user("u")
            .password("pw");
        for l in lines {
            a = a.line(l);
        }
        a
    };
    let c = |p: &Path| format!("client_cert = \"{}\"", p.display());
    let k = |p: &Path| format!("client_key = \"{}\"", p.display());
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec![c(&cert)],
            "account[acct].client_cert",
            "needs client_key",
        ),
        (
            vec![k(&key)],
            "account[acct].client_key",
            "needs client_cert",
        ),
        (
            vec![c(&missing), k(&key)],
            "account[acct].client_cert",
            "cannot read",
        ),
        (
            vec![c(&garbage), k(&key)],
            "account[acct].client_cert",
            "holds no PEM certificate",
        ),
        (
            vec![c(&cert), k(&garbage)],
            "account[acct].client_key",
            "no unencrypted PEM private key",
        ),
        (
            vec![c(&other_cert), k(&key)],
            "account[acct].client_key",
            "is not the key of",
        ),
        (
            vec!["auth = [\"external\"]".into()],
            "account[acct].auth",
            "set client_cert",
        ),
    ];
    for (lines, key_name, text) in cases {
        let path = ConfigBuilder::single(&env, account(&lines)).write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 5, "{lines:?}: {}", out.stderr);
        let line = format!("{}:", path.display());
        assert!(
            out.stderr.contains(&line)
                && out.stderr.contains(key_name)
                && out.stderr.contains(text),
            "{lines:?}: {}",
            out.stderr
        );
    }
    // On destinations too (SMTP and IMAP).
    for kind in ["smtp", "imap"] {
        let recipient = if kind == "smtp" {
            "recipient = \"a@b.example\"\n"
        } else {
            ""
        };
        let path = ConfigBuilder::new(&env)
            .account(account(&[]).deliver_to(&["d"]))
            .destination(
                "d",
                &format!(
                    "type = \"{kind}\"\nhost = \"localhost\"\nuser = \"u\"\n{recipient}{}",
                    c(&cert)
                ),
            )
            .write(&env);
        let out = env.run(&["fetch"]);
        assert_eq!(out.code, 5, "{kind}: {}", out.stderr);
        assert!(
            out.stderr.contains(&format!("{}:", path.display()))
                && out.stderr.contains("destination.d.client_cert")
                && out.stderr.contains("needs client_key"),
            "{kind}: {}",
            out.stderr
        );
    }
}
