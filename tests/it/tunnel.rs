//! The `tunnel` key against the real Dovecot: IMAP (TLS over the tunnel,
//! and plain) and POP3 through a relay command, PREAUTH through Dovecot's
//! own `imap` binary run as the tunnel (what `ssh host
//! /usr/lib/dovecot/imap` does), a tunnel that exits at once, and the
//! config errors.

use crate::support;

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::tunnel::{relay_line, toml_argv};
use support::{delivered, sorted};
use support::{AccountBuilder, ConfigBuilder, Env};

fn fill(dovecot: &Dovecot, user: &User, n: usize) -> Vec<Vec<u8>> {
    let originals = corpus::realistic(n, 5);
    for m in &originals {
        dovecot.add_message(user, "INBOX", m);
    }
    originals
}

/// Fetches with `account` (delivering to `Maildir`), checks the mail
/// byte-exact and returns the run's stderr.
fn fetch_exact(account: AccountBuilder, originals: Vec<Vec<u8>>, args: &[&str]) -> String {
    let env = Env::new();
    ConfigBuilder::single(&env, account.line("add_received = false")).write(&env);
    let mut all = args.to_vec();
    all.push("fetch");
    let out = env.run(&all);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(delivered(&env.path("Maildir")), sorted(originals));
    out.stderr
}

#[test]
fn imaps_pop3s_and_plain_imap_through_a_tunnel() {
    let dovecot = Dovecot::shared();
    for protocol in ["imap", "pop3"] {
        let user = dovecot.new_user();
        let originals = fill(dovecot, &user, 6);
        // TLS through the tunnel, checked against the server's name.
        let account = AccountBuilder::dovecot("acct", protocol, dovecot, &user).line(&relay_line());
        fetch_exact(account, originals, &[]);
    }
    // tls = "none" through a tunnel: the tunnel is the secure channel, no
    // allow_plaintext needed (as mbsync and fetchmail take it); COMPRESS
    // is used through it too.
    let user = dovecot.new_user();
    let originals = fill(dovecot, &user, 6);
    let account = AccountBuilder::new("acct", "imap", "localhost")
        .port(dovecot.imap)
        .tls("none")
        .login(&user)
        .line(&relay_line());
    let stderr = fetch_exact(account, originals, &["-vv"]);
    assert!(stderr.contains(" COMPRESS DEFLATE"), "{stderr}");
}

#[test]
fn preauth_through_dovecots_imap_binary() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let originals = fill(dovecot, &user, 5);
    let imap = ["/usr/lib/dovecot/imap", "/usr/libexec/dovecot/imap"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Dovecot's imap binary (dovecot-imapd)");
    let conf = dovecot.conf().display().to_string();
    // Run as root on a socket, `imap` takes itself for an inetd service
    // and refuses: through pipes, as over ssh, it serves the user.
    // The user's environment, as a login shell on the server gives it.
    let script = "cat | USER=\"$1\" HOME=\"$4\" \"$2\" -c \"$3\" \
                  -o mail_uid=\"$5\" -o mail_gid=\"$6\" | cat";
    let home = user.home.display().to_string();
    let (uid, gid) = dovecot.mail_owner;
    let (uid, gid) = (uid.to_string(), gid.to_string());
    // No password: the tunnel logs in (a PREAUTH greeting).
    let account = AccountBuilder::new("acct", "imap", "localhost")
        .tls("none")
        .user(&user.name)
        .timeout("10s")
        .line(&toml_argv(&[
            "sh", "-c", script, "sh", &user.name, imap, &conf, &home, &uid, &gid,
        ]));
    let stderr = fetch_exact(account, originals, &["-vv"]);
    assert!(stderr.contains("S: * PREAUTH"), "{stderr}");
    assert!(!stderr.contains("C: a1 LOGIN"), "no login sent: {stderr}");
    assert!(dovecot.messages(&user, "INBOX").is_empty(), "deleted");
}

#[test]
fn a_tunnel_that_exits_at_once_is_one_line_and_exit_2() {
    let env = Env::new();
    let account = AccountBuilder::new("gw", "imap", "mail.example")
        .user("me")
        .password("pw")
        .line(&toml_argv(&[
            "sh",
            "-c",
            "echo 'ssh: Could not resolve hostname %h' >&2; exit 255",
        ]));
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(2);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains("gw"), "{}", out.stderr);
    assert!(
        lines[0].contains("exited with status 255"),
        "{}",
        out.stderr
    );
    assert!(
        lines[0].contains("ssh: Could not resolve hostname mail.example"),
        "{}",
        out.stderr
    );
}

#[test]
fn tunnel_config_errors_name_file_line_and_key() {
    let env = Env::new();
    let with = |extra: &str| {
        let account = AccountBuilder::new("acct", "imap", "mail.example")
            .user("me")
            .password("pw")
            .line(extra);
        ConfigBuilder::single(&env, account).write(&env);
        let out = env.run(&["fetch"]);
        out.expect_code(5);
        out.stderr
    };
    let e = with("tunnel = [\"ssh\", \"gw\"]\nproxy = \"socks5h://127.0.0.1:1080\"");
    assert!(
        e.contains("account[acct].tunnel: give either tunnel or proxy"),
        "{e}"
    );
    assert!(e.contains(".toml:"), "{e}");
    let e = with("tunnel = []");
    assert!(
        e.contains("account[acct].tunnel: must name a command"),
        "{e}"
    );
    let e = with("tunnel = [\"nc %x\"]");
    assert!(e.contains("account[acct].tunnel:"), "{e}");

    // SMTP cannot use a tunnel.
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let account = AccountBuilder::dovecot_pop3s("acct", dovecot, &user).deliver_to(&["relay"]);
    ConfigBuilder::new(&env)
        .account(account)
        .destination(
            "relay",
            "type = \"smtp\"\nhost = \"localhost\"\nrecipient = \"a@b.example\"\ntunnel = [\"ssh\", \"gw\", \"nc %h %p\"]",
        )
        .write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(5);
    assert!(
        out.stderr
            .contains("destination.relay.tunnel: SMTP destinations cannot go through a tunnel"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_imap_destination_appends_through_a_tunnel() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    let originals = fill(dovecot, &source, 4);
    let env = Env::new();
    let account = AccountBuilder::dovecot_pop3s("acct", dovecot, &source)
        .line("add_received = false")
        .deliver_to(&["archive"]);
    ConfigBuilder::new(&env)
        .account(account)
        .imap(
            "archive",
            dovecot,
            dovecot.imaps,
            &target,
            &format!("folder = \"Fetched\"\n{}", relay_line()),
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(
        sorted(dovecot.messages(&target, "Fetched")),
        sorted(originals)
    );
}

#[test]
fn the_lmtp_destination_delivers_through_a_tunnel() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    let originals = fill(dovecot, &source, 3);
    let env = Env::new();
    let account = AccountBuilder::dovecot_pop3s("acct", dovecot, &source)
        .line("add_received = false")
        .deliver_to(&["local"]);
    ConfigBuilder::new(&env)
        .account(account)
        .destination(
            "local",
            &format!(
                "type = \"lmtp\"\nhost = \"127.0.0.1\"\nport = {}\nrecipient = \"{}\"\n{}",
                dovecot.lmtp,
                target.address(),
                relay_line()
            ),
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    let got = dovecot.messages(&target, "INBOX");
    assert_eq!(got.len(), originals.len());
    for m in &got {
        // Dovecot's LMTP adds a Return-Path: on top; the rest is the mail.
        assert!(
            originals.iter().any(|o| m.ends_with(o)),
            "delivered as fetched"
        );
    }
}

#[test]
fn starttls_runs_through_a_tunnel() {
    let dovecot = Dovecot::shared();
    for protocol in ["imap", "pop3"] {
        let user = dovecot.new_user();
        let originals = fill(dovecot, &user, 3);
        let port = if protocol == "imap" {
            dovecot.imap
        } else {
            dovecot.pop3
        };
        let account = AccountBuilder::dovecot("acct", protocol, dovecot, &user)
            .port(port)
            .tls("starttls")
            .line(&relay_line());
        fetch_exact(account, originals, &[]);
    }
}

#[test]
fn a_tunnel_that_goes_quiet_times_out() {
    let env = Env::new();
    // A greeting, then nothing: the server's timeout ends the run.
    let account = AccountBuilder::new("quiet", "imap", "mail.example")
        .tls("none")
        .user("me")
        .password("pw")
        .timeout("2s")
        .line(&toml_argv(&[
            "sh",
            "-c",
            "echo '* OK hello'; exec sleep 60",
        ]));
    ConfigBuilder::single(&env, account).write(&env);
    let started = std::time::Instant::now();
    let out = env.run(&["fetch"]);
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(20),
        "timed out after {took:?}"
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("quiet"), "{}", out.stderr);
    assert!(
        out.stderr.to_lowercase().contains("timed out"),
        "{}",
        out.stderr
    );
}
