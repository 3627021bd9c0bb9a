//! The outgoing queue through the real binary: `mailretr sendmail` (and
//! the binary as `sendmail` and `mailq` through symlinks) queueing into
//! the spool and sending through real aiosmtpd relays, procmail for
//! `[outgoing] local`, DSNs into `~/Maildir`, a killed background
//! flusher, and sendmail's exit codes.

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::config::{AccountBuilder, ConfigBuilder};
use crate::support::smtpd::{Options, Smtpd};
use crate::support::{maildir_messages, run_command, Env, Output, RUN_TIMEOUT};

/// A port nothing listens on (a relay that is down).
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An smtp destination on 127.0.0.1 without TLS, usable as a relay.
fn relay_lines(port: u16) -> String {
    format!(
        "type = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout = \"10s\""
    )
}

/// A config with `smarthost` on `port` as the relay and `extra` lines
/// in `[outgoing]`.
fn config(env: &Env, port: u16, extra: &str) -> ConfigBuilder {
    ConfigBuilder::new(env)
        .hostname("laptop.example")
        .destination("smarthost", &relay_lines(port))
        .outgoing(&format!("relay = \"smarthost\"\n{extra}"))
}

fn sendmail(env: &Env, args: &[&str], message: &str) -> Output {
    let mut all = vec!["sendmail"];
    all.extend_from_slice(args);
    env.run_stdin(&all, message.as_bytes())
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!("From: {from}\nTo: {to}\nSubject: {subject}\n\nHello from {subject}.\n")
}

/// Waits (up to `secs`) until `done` holds.
#[track_caller]
fn wait_until(secs: u64, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn queue_json(env: &Env) -> Vec<serde_json::Value> {
    let out = env.run(&["queue", "list", "--json"]);
    out.expect_success();
    serde_json::from_str::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// The binary run through a symlink called `name` in the environment.
fn via_symlink(env: &Env, name: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let link = env.path(name);
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_mailretr"), &link).unwrap();
    }
    let base = env.cmd();
    let mut cmd = Command::new(&link);
    cmd.env_clear()
        .envs(base.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .current_dir(env.root())
        .args(args);
    run_command(cmd, stdin, RUN_TIMEOUT)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_relay_that_is_down_then_up_gets_the_message_exactly_once() {
    let env = Env::new();
    config(&env, dead_port(), "").write(&env);
    sendmail(
        &env,
        &["--now", "-oi", "jaco@kroon.example"],
        &message("me@laptop.example", "jaco@kroon.example", "down"),
    )
    .expect_success();
    let queued = queue_json(&env);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0]["direction"], "out");
    assert_eq!(queued[0]["destination"], "smarthost");
    assert_eq!(queued[0]["attempts"], 1, "the --now attempt failed");
    assert!(queued[0]["last_error"].as_str().unwrap().len() > 3);
    // The files that hold it are the user's alone.
    let state = env.path("state");
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        if state.join(f).exists() {
            assert_eq!(mode(&state.join(f)), 0o600, "{f}");
        }
    }
    assert_eq!(mode(&state) & 0o077, 0);
    let id = queued[0]["id"].to_string();
    let shown = env.run(&["queue", "show", &id]);
    shown.expect_success();
    assert!(
        shown.stdout.contains("Direction:   out"),
        "{}",
        shown.stdout
    );
    assert!(shown.stdout.contains("Subject: down"), "{}", shown.stdout);

    let relay = Smtpd::start(&env.path("relay"), Options::default());
    config(&env, relay.port, "").write(&env);
    env.run(&["queue", "flush"]).expect_success();
    env.run(&["queue", "flush"]).expect_code(1);
    assert_eq!(relay.messages().len(), 1);
    assert!(relay
        .envelope(1)
        .starts_with("me@laptop.example\njaco@kroon.example\n"));
    assert!(queue_json(&env).is_empty());
}

/// One message queued (`-odq`) while the relay was unknown, then a live
/// relay and an account that cannot run (no password, nothing on its
/// port) configured: whatever runs next sends the queue or nothing.
fn queued_then_relay_up(subject: &str) -> (Env, Smtpd) {
    let env = Env::new();
    config(&env, dead_port(), "").write(&env);
    sendmail(
        &env,
        &["-odq", "-oi", "jaco@kroon.example"],
        &format!("Subject: {subject}\n\nx\n"),
    )
    .expect_success();
    let relay = Smtpd::start(&env.path("relay"), Options::default());
    config(&env, relay.port, "")
        .account(
            AccountBuilder::new("isp", "pop3", "127.0.0.1")
                .port(dead_port())
                .user("jaco")
                .plaintext(),
        )
        .maildir("home", env.path("Maildir"))
        .write(&env);
    (env, relay)
}

#[test]
fn fetch_sends_the_outgoing_queue_too() {
    // An account that cannot run: the fetch fails, the queue goes out.
    let (env, relay) = queued_then_relay_up("f");
    // (It has no password: that account fails, exit 3.)
    env.run(&["-q", "fetch"]).expect_code(3);
    assert_eq!(relay.messages().len(), 1);
    assert!(queue_json(&env).is_empty());
    assert_eq!(mode(&env.path("state/outgoing.lock")), 0o600);
}

#[test]
fn watch_sends_the_outgoing_queue_too() {
    let (env, relay) = queued_then_relay_up("w");
    let mut watch = env
        .cmd()
        .args(["-q", "watch"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(30, "the queued message at the relay", || {
        relay.messages().len() == 1
    });
    // SAFETY: signalling the watcher this test started.
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    watch.wait().unwrap();
    assert_eq!(relay.messages().len(), 1);
    assert!(queue_json(&env).is_empty());
}

#[test]
fn a_burst_of_ten_shares_one_smtp_connection() {
    let env = Env::new();
    let relay = Smtpd::start(&env.path("relay"), Options::default());
    config(&env, relay.port, "delay = \"3s\"").write(&env);
    let start = Instant::now();
    for i in 0..10 {
        sendmail(
            &env,
            &["-i", "-f", "me@laptop.example", "list@lists.example"],
            &message(
                "me@laptop.example",
                "list@lists.example",
                &format!("patch {i}/10"),
            ),
        )
        .expect_success();
    }
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "the burst took longer than the delay"
    );
    wait_until(60, "ten messages at the relay", || {
        relay.messages().len() >= 10
    });
    // Let the other nine background flushers wake up and find nothing.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(relay.messages().len(), 10);
    assert_eq!(relay.connections(), 1, "one connection for the burst");
    assert!(queue_json(&env).is_empty());
}

#[test]
fn identities_pick_the_relay_and_the_envelope_sender() {
    let env = Env::new();
    let public = Smtpd::start(&env.path("public"), Options::default());
    let private = Smtpd::start(&env.path("private"), Options::default());
    config(
        &env,
        public.port,
        "identities = [{ from = \"*@private.example\", relay = \"private\", sender = \"me@private.example\" }]",
    )
    .destination("private", &relay_lines(private.port))
    .write(&env);
    sendmail(
        &env,
        &["--now", "-oi", "--", "a@x.example"],
        &message("Me <alias@private.example>", "a@x.example", "private"),
    )
    .expect_success();
    sendmail(
        &env,
        &["--now", "-oi", "--", "b@y.example"],
        &message("me@work.example", "b@y.example", "work"),
    )
    .expect_success();
    assert_eq!(private.messages().len(), 1);
    assert!(private
        .envelope(1)
        .starts_with("me@private.example\na@x.example\n"));
    assert_eq!(public.messages().len(), 1);
    assert!(public
        .envelope(1)
        .starts_with("me@work.example\nb@y.example\n"));
    // -f wins over the identity's sender.
    sendmail(
        &env,
        &["--now", "-i", "-fother@private.example", "c@z.example"],
        &message("alias@private.example", "c@z.example", "forced"),
    )
    .expect_success();
    assert!(private.envelope(2).starts_with("other@private.example\n"));
}

#[test]
fn t_sends_to_bcc_and_removes_the_header() {
    let env = Env::new();
    let relay = Smtpd::start(&env.path("relay"), Options::default());
    config(&env, relay.port, "").write(&env);
    let input = "To: Ann <ann@x.example>\nCc: \"Kroon, Jaco\" <jaco@kroon.example>\nBcc: hidden@secret.example\nSubject: t\n\nbody\n.\nnot part of it\n";
    sendmail(&env, &["--now", "-t", "extra@cmdline.example"], input).expect_success();
    assert_eq!(relay.messages().len(), 1);
    let envelope = relay.envelope(1);
    let rcpts: Vec<&str> = envelope.lines().skip(1).take(4).collect();
    assert_eq!(
        rcpts,
        [
            "extra@cmdline.example",
            "ann@x.example",
            "jaco@kroon.example",
            "hidden@secret.example"
        ],
        "{envelope}"
    );
    let m = String::from_utf8(relay.messages().remove(0)).unwrap();
    // No Bcc field (a substring test failed on a random Message-ID that
    // held "bcc").
    assert!(
        !m.lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{m}"
    );
    assert!(!m.contains("hidden@secret.example"), "{m}");
    assert!(
        m.contains("\nDate: ") && m.contains("\nMessage-ID: <"),
        "{m}"
    );
    assert!(m.contains("@laptop.example>\n"), "{m}");
    assert!(m.contains("From: "), "a From: is added: {m}");
    assert!(
        m.ends_with("\nbody\n"),
        "a lone dot ends it without -i: {m}"
    );
}

#[test]
fn the_binary_as_sendmail_and_mailq_through_symlinks() {
    let env = Env::new();
    let relay = Smtpd::start(&env.path("relay"), Options::default());
    config(&env, relay.port, "").write(&env);
    via_symlink(
        &env,
        "sendmail",
        &[
            "-odq",
            "-FCronDaemon",
            "-i",
            "-B8BITMIME",
            "-oem",
            "jaco@kroon.example",
        ],
        Some(b"Subject: cron\n\nOutput of a job.\n"),
    )
    .expect_success();
    let listed = via_symlink(&env, "mailq", &[], None);
    listed.expect_success();
    let line = listed.stdout.lines().nth(1).expect("one entry");
    assert!(
        line.contains(" out ") && line.contains("smarthost"),
        "{}",
        listed.stdout
    );
    assert!(line.contains("jaco@kroon.example"), "{}", listed.stdout);
    assert_eq!(relay.messages().len(), 0, "-odq: queued only");
    via_symlink(&env, "sendmail", &["-q"], None).expect_success();
    assert_eq!(relay.messages().len(), 1);
    let m = String::from_utf8(relay.messages().remove(0)).unwrap();
    assert!(m.contains("From: CronDaemon <"), "{m}");
    assert!(via_symlink(&env, "mailq", &[], None)
        .stdout
        .contains("empty"));
}

#[test]
fn killing_the_background_flusher_loses_nothing() {
    let env = Env::new();
    let relay = Smtpd::start(&env.path("relay"), Options::default());
    config(&env, relay.port, "delay = \"30s\"").write(&env);
    let out = sendmail(
        &env,
        &["-v", "-oi", "jaco@kroon.example"],
        &message("me@laptop.example", "jaco@kroon.example", "killed"),
    );
    out.expect_success();
    let pid: i32 = out
        .stdout
        .split("(pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {:?}", out.stdout));
    // SAFETY: kill(2) on the flusher this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    assert_eq!(queue_json(&env).len(), 1);
    env.run(&["queue", "flush", "--outgoing"]).expect_success();
    env.run(&["queue", "flush"]).expect_code(1);
    assert_eq!(relay.messages().len(), 1);
    assert!(queue_json(&env).is_empty());
}

fn dsns(env: &Env) -> Vec<String> {
    maildir_messages(&env.home.join("Maildir"))
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect()
}

#[test]
fn expired_and_refused_messages_come_back_as_dsns_in_maildir() {
    let env = Env::new();
    config(&env, dead_port(), "")
        .general("spool_max_age = \"1h\"")
        .write(&env);
    sendmail(
        &env,
        &["--now", "-oi", "jaco@kroon.example"],
        &message("me@laptop.example", "jaco@kroon.example", "expires"),
    )
    .expect_success();
    assert!(dsns(&env).is_empty());
    env.run_later(7200, &["queue", "flush"]).expect_success();
    let got = dsns(&env);
    assert_eq!(got.len(), 1);
    let dsn = &got[0];
    assert!(dsn.contains("report-type=delivery-status"), "{dsn}");
    assert!(
        dsn.contains("A message you sent could not be delivered"),
        "{dsn}"
    );
    assert!(
        dsn.contains("Final-Recipient: rfc822; jaco@kroon.example"),
        "{dsn}"
    );
    assert!(dsn.contains("Status: 4.4.7"), "{dsn}");
    assert!(dsn.contains("Subject: expires"), "{dsn}");
    assert!(queue_json(&env).is_empty());

    // Refused for good by the relay: the DSN comes at once.
    let relay = Smtpd::start(
        &env.path("relay"),
        Options {
            refuse: vec!["nobody@kroon.example".into()],
            ..Options::default()
        },
    );
    config(&env, relay.port, "").write(&env);
    sendmail(
        &env,
        &["--now", "-oi", "nobody@kroon.example"],
        &message("me@laptop.example", "nobody@kroon.example", "refused"),
    )
    .expect_success();
    let got = dsns(&env);
    assert_eq!(got.len(), 2);
    let dsn = got.iter().find(|d| d.contains("Subject: refused")).unwrap();
    assert!(dsn.contains("was refused"), "{dsn}");
    assert!(dsn.contains("550"), "{dsn}");
    assert!(queue_json(&env).is_empty());
}

#[test]
fn a_partly_refused_message_reports_only_the_refused_recipient() {
    let env = Env::new();
    let relay = Smtpd::start(
        &env.path("relay"),
        Options {
            refuse: vec!["nobody@kroon.example".into()],
            ..Options::default()
        },
    );
    config(&env, relay.port, "").write(&env);
    sendmail(
        &env,
        &["--now", "-oi", "jaco@kroon.example", "nobody@kroon.example"],
        &message("me@laptop.example", "jaco@kroon.example", "partly"),
    )
    .expect_success();
    assert_eq!(relay.messages().len(), 1);
    assert_eq!(relay.envelope(1).lines().nth(1), Some("jaco@kroon.example"));
    let got = dsns(&env);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].contains("Final-Recipient: rfc822; nobody@kroon.example"),
        "{}",
        got[0]
    );
    assert!(
        !got[0].contains("Final-Recipient: rfc822; jaco@"),
        "{}",
        got[0]
    );
    assert!(queue_json(&env).is_empty());
    env.run(&["queue", "flush"]).expect_code(1);
    assert_eq!(relay.messages().len(), 1, "never sent twice");
}

#[test]
fn local_names_go_through_the_local_mda() {
    let env = Env::new();
    let relay = Smtpd::start(&env.path("relay"), Options::default());
    let rc = env.path("procmailrc");
    let md: PathBuf = env.path("procmail-md");
    fs::write(&rc, format!("DEFAULT={}/\n", md.display())).unwrap();
    config(&env, relay.port, "local = \"filter\"")
        .destination(
            "filter",
            &format!(
                "type = \"mda\"\ncommand = [\"/usr/bin/procmail\", \"-m\", \"{}\"]",
                rc.display()
            ),
        )
        .write(&env);
    sendmail(
        &env,
        &["--now", "-oi", "root", "jaco@kroon.example"],
        "Subject: both\n\nto a local name and an address\n",
    )
    .expect_success();
    assert_eq!(maildir_messages(&md).len(), 1);
    assert_eq!(relay.messages().len(), 1);
    assert!(relay.envelope(1).lines().nth(1) == Some("jaco@kroon.example"));
}

#[test]
fn sendmail_exit_codes() {
    let env = Env::new();
    config(&env, dead_port(), "").write(&env);
    // 64: an option sendmail does not have.
    let out = sendmail(&env, &["-Z", "a@x.example"], "Subject: x\n\n");
    out.expect_code(64);
    assert!(out.stderr.contains("-Z"), "{}", out.stderr);
    // 65: -t and nobody to send to.
    sendmail(&env, &["-t"], "Subject: nobody\n\n").expect_code(65);
    // 67: a local name without [outgoing] local.
    sendmail(&env, &["-odq", "root"], "Subject: x\n\n").expect_code(67);
    // 78: no [outgoing].
    ConfigBuilder::new(&env).write(&env);
    let out = sendmail(&env, &["a@x.example"], "Subject: x\n\n");
    out.expect_code(78);
    assert!(out.stderr.contains("[outgoing]"), "{}", out.stderr);
    // 75: the spool cannot take it (its directory is a file).
    let blocker = env.path("not-a-dir");
    fs::write(&blocker, "").unwrap();
    env.write_config(&format!(
        "[general]\nstate_dir = \"{}/state\"\n[destination.smarthost]\n{}\n[outgoing]\nrelay = \"smarthost\"\n",
        blocker.display(),
        relay_lines(dead_port())
    ));
    sendmail(&env, &["-odq", "a@x.example"], "Subject: x\n\n").expect_code(75);
    // A bad [outgoing] value is a config error naming file, line and key.
    env.write_config(&format!(
        "[destination.smarthost]\n{}\n[outgoing]\nrelay = \"nowhere\"\n",
        relay_lines(25)
    ));
    let out = sendmail(&env, &["a@x.example"], "Subject: x\n\n");
    out.expect_code(78);
    assert!(
        out.stderr.contains("config.toml:8: outgoing.relay"),
        "{}",
        out.stderr
    );
}
