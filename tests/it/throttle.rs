//! `max_connections_per_host` and what a throttling server makes of a
//! run: against a real Dovecot with `mail_max_userip_connections = 2`
//! (one user, several accounts of it run in parallel with `--jobs 6`),
//! and scripted fakes for what Dovecot does not say (POP3 `[IN-USE]`
//! once, `[LOGIN-DELAY]`, IMAP `NO [UNAVAILABLE]` to LOGIN).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support;

use support::config::{AccountBuilder, ConfigBuilder};
use support::dovecot::{Dovecot, User};
use support::fake::{FakeServer, Step};
use support::{delivered, sorted, Env};

/// A Dovecot that takes 2 connections per user, address and protocol.
pub(crate) fn strict_dovecot() -> &'static Dovecot {
    static STRICT: OnceLock<Dovecot> = OnceLock::new();
    STRICT.get_or_init(|| Dovecot::start_with("\nmail_max_userip_connections = 2\n"))
}

fn maildir(env: &Env, name: &str) -> PathBuf {
    env.path(format!("Maildir-{name}"))
}

/// A mailbox whose sessions last long enough to overlap.
fn fill(dovecot: &Dovecot, user: &User) -> Vec<Vec<u8>> {
    let messages: Vec<Vec<u8>> = (0..30)
        .map(|n| {
            let mut m = format!("Subject: m{n}\nMessage-ID: <throttle-{n}@test>\n\n").into_bytes();
            m.extend(std::iter::repeat_n(b'x', 20_000));
            m.push(b'\n');
            m
        })
        .collect();
    for m in &messages {
        dovecot.add_message(user, "INBOX", m);
    }
    messages
}

/// Six accounts of one user of `dovecot` (`protocol`), with different
/// names and the host name spelled two ways, keeping the mail (each
/// delivers every message to its own Maildir), with `general`.
/// `account_line`: one more raw line for every account (or "").
fn six_accounts(
    env: &Env,
    dovecot: &Dovecot,
    user: &User,
    protocol: &str,
    general: &str,
    account_line: &str,
) {
    let mut config = ConfigBuilder::new(env)
        .hostname("test.example")
        .general(general);
    for i in 0..6 {
        let name = format!("{protocol}{i}");
        // One server, spelled two ways: one host for the limit.
        let host = if i % 2 == 0 { "localhost" } else { "LocalHost" };
        let port = if protocol == "imap" {
            dovecot.imaps
        } else {
            dovecot.pop3s
        };
        let account = AccountBuilder::new(&name, protocol, host)
            .port(port)
            .ca_file(&dovecot.cert_pem)
            .login(user)
            .keep(true)
            .line("add_received = false")
            .line(account_line);
        let path = maildir(env, &name);
        config = config.account_to_maildir(account, path);
    }
    config.write(env);
}

/// Every account has every message, once.
fn assert_all_delivered(env: &Env, protocol: &str, messages: &[Vec<u8>], stderr: &str) {
    for i in 0..6 {
        let got = delivered(&maildir(env, &format!("{protocol}{i}")));
        assert_eq!(
            sorted(got),
            sorted(messages.to_vec()),
            "{protocol}{i}: {stderr}"
        );
    }
}

/// With `max_connections_per_host = 2` the six parallel accounts share two
/// connections and the server never has to refuse one.
#[test]
fn a_limit_the_server_allows_runs_six_accounts_without_a_throttle() {
    let dovecot = strict_dovecot();
    for protocol in ["imap", "pop3"] {
        let user = dovecot.new_user();
        let messages = fill(dovecot, &user);
        let env = Env::new();
        six_accounts(
            &env,
            dovecot,
            &user,
            protocol,
            "max_connections_per_host = 2",
            "",
        );
        let out = env.run(&["-v", "fetch", "--jobs", "6"]);
        assert_eq!(out.code, 0, "{protocol}: {}", out.stderr);
        assert!(
            !out.stderr.to_lowercase().contains("throttl"),
            "{protocol}: {}",
            out.stderr
        );
        assert_all_delivered(&env, protocol, &messages, &out.stderr);
        let log = std::fs::read_to_string(&dovecot.log).unwrap_or_default();
        assert!(
            !log.lines()
                .any(|l| l.contains(&user.name) && l.contains("Maximum number of connections")),
            "{protocol}: Dovecot refused a connection:\n{}",
            dovecot.log_tail(40)
        );
    }
}

/// With a limit above what the server takes, the server refuses the
/// accounts; the refused accounts wait, the host's limit is lowered, and
/// they try again: the run completes, every message delivered once, and
/// the throttle is said once.
#[test]
fn a_limit_above_the_servers_backs_off_and_the_run_completes() {
    let dovecot = strict_dovecot();
    for protocol in ["imap", "pop3"] {
        let user = dovecot.new_user();
        let messages = fill(dovecot, &user);
        let env = Env::new();
        six_accounts(
            &env,
            dovecot,
            &user,
            protocol,
            "max_connections_per_host = 6",
            "",
        );
        // The server's two connections for the user are taken until it
        // has refused one of the run's: the refusal is certain, however
        // the run's sessions fall in time. (Six sessions logging in at
        // once do not always make Dovecot refuse one: it counts a
        // session once it has logged in.)
        let holder = hold_until_refused(dovecot, &user, protocol);
        let out = env.run(&["-v", "fetch", "--jobs", "6"]);
        assert!(
            holder.join().unwrap(),
            "{protocol}: Dovecot refused none of the run's connections: {}\n{}",
            out.stderr,
            dovecot.log_tail(40)
        );
        assert_eq!(out.code, 0, "{protocol}: {}", out.stderr);
        assert_all_delivered(&env, protocol, &messages, &out.stderr);
        assert_eq!(
            out.stderr
                .matches("is throttling connections; max_connections_per_host for it lowered to")
                .count(),
            1,
            "{protocol}: the throttle is said once: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("trying again in"),
            "{protocol}: {}",
            out.stderr
        );
        // A second run finds nothing new: nothing was fetched twice.
        let again = env.run(&["fetch", "--jobs", "6"]);
        assert_eq!(again.code, 1, "{protocol}: {}", again.stderr);
        assert_all_delivered(&env, protocol, &messages, &again.stderr);
    }
}

/// Logs `user` in twice over plain `protocol` (all that the strict
/// Dovecot allows), then, on a thread, keeps both sessions until
/// Dovecot's log says it refused the user a connection (at most 60 s):
/// whether it did.
fn hold_until_refused(
    dovecot: &'static Dovecot,
    user: &User,
    protocol: &str,
) -> std::thread::JoinHandle<bool> {
    use std::io::{BufRead, BufReader, Write};
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let port = if protocol == "imap" {
                dovecot.imap
            } else {
                dovecot.pop3
            };
            let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut reader = BufReader::new(tcp.try_clone().unwrap());
            let mut writer = tcp.try_clone().unwrap();
            let mut line = String::new();
            let mut answer = |command: &str, reader: &mut BufReader<_>| {
                if !command.is_empty() {
                    writer.write_all(command.as_bytes()).unwrap();
                }
                line.clear();
                reader.read_line(&mut line).unwrap();
                line.clone()
            };
            let (name, password) = (&user.name, &user.password);
            let replies = if protocol == "imap" {
                vec![
                    answer("", &mut reader),
                    answer(
                        &format!("a LOGIN \"{name}\" \"{password}\"\r\n"),
                        &mut reader,
                    ),
                ]
            } else {
                vec![
                    answer("", &mut reader),
                    answer(&format!("USER {name}\r\n"), &mut reader),
                    answer(&format!("PASS {password}\r\n"), &mut reader),
                ]
            };
            let last = replies.last().unwrap();
            assert!(
                last.starts_with("a OK") || last.starts_with("+OK"),
                "{protocol}: holding a login: {replies:?}"
            );
            tcp
        })
        .collect();
    let refused = format!("user=<{}>", user.name);
    std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        let seen = loop {
            let log = std::fs::read_to_string(&dovecot.log).unwrap_or_default();
            if log
                .lines()
                .any(|l| l.contains(&refused) && l.contains("Maximum number of connections"))
            {
                break true;
            }
            if std::time::Instant::now() > until {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(held);
        seen
    })
}

const MESSAGE: &str = "Subject: hello\r\nMessage-ID: <busy-1@test>\r\n\r\nbody\r\n";

/// A POP3 login refused with `reason` (after CAPA listing `capa_extra`).
fn pop3_refused(capa_extra: &str, reason: &str) -> Vec<Step> {
    vec![
        Step::line("+OK POP3 ready"),
        Step::expect("CAPA"),
        Step::send(format!("+OK\r\nUSER\r\nUIDL\r\n{capa_extra}.\r\n")),
        Step::expect("USER u"),
        Step::line("+OK"),
        Step::expect("PASS topsecret"),
        Step::line(&format!("-ERR {reason}")),
        Step::ExpectClose,
    ]
}

/// A POP3 session handing out `MESSAGE` and keeping it.
fn pop3_one_message() -> Vec<Step> {
    vec![
        Step::line("+OK POP3 ready"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
        Step::expect("USER u"),
        Step::line("+OK"),
        Step::expect("PASS topsecret"),
        Step::line("+OK in"),
        Step::expect("STAT"),
        Step::line(&format!("+OK 1 {}", MESSAGE.len())),
        Step::expect("UIDL"),
        Step::line("+OK\r\n1 busy-1\r\n."),
        Step::expect("LIST"),
        Step::line(&format!("+OK\r\n1 {}\r\n.", MESSAGE.len())),
        Step::expect("RETR 1"),
        Step::send(format!("+OK\r\n{MESSAGE}.\r\n")),
        Step::expect("QUIT"),
        Step::line("+OK"),
        Step::ExpectClose,
    ]
}

fn pop3_account(server: &FakeServer) -> AccountBuilder {
    AccountBuilder::fake("busy", "pop3", server.port())
        .tls("none")
        .allow_plaintext()
        .keep(true)
        .line("add_received = false")
}

/// `-ERR [IN-USE]` once: the account tries again within the run (a new
/// connection) and gets its mail; the maildrop was never touched by the
/// refused session.
#[test]
fn pop3_in_use_once_is_retried_within_the_run() {
    let server = FakeServer::start_many(vec![
        pop3_refused("", "[IN-USE] Do you have another POP session running?"),
        pop3_one_message(),
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, pop3_account(&server)).write(&env);
    let out = env.run(&["fetch"]);
    assert!(server.settle(Duration::from_secs(10)), "{}", out.stderr);
    server.assert_no_errors();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.connections(), 2);
    let got = delivered(&env.path("Maildir"));
    assert_eq!(got.len(), 1, "{}", out.stderr);
    assert_eq!(got[0], support::to_lf(MESSAGE.as_bytes()));
    assert!(
        out.stderr.contains(
            "localhost is throttling connections; max_connections_per_host for it lowered to 1"
        ),
        "{}",
        out.stderr
    );
}

/// `-ERR [LOGIN-DELAY]`: no retry in the run (exit 7, one line naming
/// the account and when it connects again); the next run does not
/// connect before the delay the server's CAPA announced, `status` shows
/// it; once it is over, the account is fetched again and the delay is
/// forgotten.
#[test]
fn pop3_login_delay_keeps_the_next_runs_away_until_it_is_over() {
    let server = FakeServer::start_many(vec![
        pop3_refused(
            "LOGIN-DELAY 600\r\n",
            "[LOGIN-DELAY] wait 10 minutes between logins",
        ),
        pop3_one_message(),
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, pop3_account(&server)).write(&env);
    let out = env.run(&["fetch"]);
    assert!(server.settle(Duration::from_secs(10)), "{}", out.stderr);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(server.connections(), 1, "not retried in the run");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("busy"), "{}", out.stderr);
    assert!(
        out.stderr.contains("[LOGIN-DELAY]")
            && out.stderr.contains("not connecting again before")
            && out.stderr.contains("(LOGIN-DELAY 600s)"),
        "{}",
        out.stderr
    );
    assert!(delivered(&env.path("Maildir")).is_empty());

    // The next runs, within the delay, do not connect: not even early,
    // before the state is opened (the marker beside state.db says a
    // delay is recorded).
    let marker = env.path("state").join("login-delay");
    assert!(marker.exists(), "the LOGIN-DELAY marker");
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let out = env.run_later(590, &["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(server.connections(), 1, "no connection within the delay");

    let status = env.run(&["status"]);
    assert!(
        status
            .stdout
            .contains("  not connecting to localhost before "),
        "{}",
        status.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    let delay = &json["accounts"][0]["login_delay"];
    assert_eq!(delay["host"], "localhost", "{json}");
    assert!(
        delay["reason"]
            .as_str()
            .unwrap()
            .contains("[LOGIN-DELAY] wait 10 minutes"),
        "{json}"
    );

    // Once it is over: fetched, and forgotten.
    let out = env.run_later(610, &["fetch"]);
    assert!(server.settle(Duration::from_secs(10)), "{}", out.stderr);
    server.assert_no_errors();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.connections(), 2);
    assert_eq!(delivered(&env.path("Maildir")).len(), 1);
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    assert!(json["accounts"][0]["login_delay"].is_null(), "{json}");
    assert!(!marker.exists(), "the marker goes with the last delay");
}

/// A LOGIN-DELAY recorded without the marker (a state written by an
/// older mailretr): the connection made early, before the state was
/// read, is closed at once, without a word (no greeting read, no TLS).
#[test]
fn pop3_login_delay_without_its_marker_still_keeps_the_session_away() {
    let server = FakeServer::start_many(vec![
        pop3_refused(
            "LOGIN-DELAY 600\r\n",
            "[LOGIN-DELAY] wait 10 minutes between logins",
        ),
        // What the early connection may get: nothing is said on it.
        vec![Step::send("+OK ready\r\n")],
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, pop3_account(&server)).write(&env);
    let out = env.run(&["fetch"]);
    assert!(server.settle(Duration::from_secs(10)), "{}", out.stderr);
    assert_eq!(out.code, 7, "{}", out.stderr);
    std::fs::remove_file(env.path("state").join("login-delay")).unwrap();
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let transcripts = server.transcripts();
    // (The early connection is made, as a rule: 2 connections; on a
    // slow machine the run may end before it is.)
    assert!(server.connections() <= 2, "{}", server.connections());
    assert!(
        transcripts.iter().skip(1).all(|t| t.is_empty()),
        "nothing said within the delay: {transcripts:?}"
    );
}

/// Without the `LOGIN-DELAY` capability the delay is 15 minutes.
#[test]
fn pop3_login_delay_without_its_capability_is_fifteen_minutes() {
    let server = FakeServer::start(pop3_refused("", "[LOGIN-DELAY] not so soon"));
    let env = Env::new();
    ConfigBuilder::single(&env, pop3_account(&server)).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(out.stderr.contains("(LOGIN-DELAY 900s)"), "{}", out.stderr);
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    let not_before = json["accounts"][0]["login_delay"]["not_before_unix"]
        .as_i64()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now + 890..=now + 910).contains(&not_before), "{json}");
}

/// An IMAP LOGIN refused with `NO [UNAVAILABLE]`.
fn imap_unavailable() -> Vec<Step> {
    vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake"),
        Step::expect("a1 LOGIN"),
        Step::line("a1 NO [UNAVAILABLE] Too many connections for this account, try later"),
        Step::ExpectClose,
    ]
}

/// `NO [UNAVAILABLE]` to LOGIN every time: two retries with a growing
/// delay, then a temporary failure (exit 7) in one line naming the
/// account, nothing delivered, nothing else asked of the server.
#[test]
fn imap_unavailable_is_retried_twice_then_a_clean_temporary_failure() {
    let server = FakeServer::start_many(vec![
        imap_unavailable(),
        imap_unavailable(),
        imap_unavailable(),
    ]);
    let env = Env::new();
    let account = AccountBuilder::fake("imapbusy", "imap", server.port())
        .tls("implicit")
        .ca_file(&server.cert().cert_pem)
        .line("auth = [\"login\"]");
    ConfigBuilder::single(&env, account).write(&env);
    let started = std::time::Instant::now();
    let out = env.run(&["fetch"]);
    let took = started.elapsed();
    assert!(server.settle(Duration::from_secs(10)), "{}", out.stderr);
    server.assert_no_errors();
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(server.connections(), 3);
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(20),
        "backoff 1 s then 3 s: {took:?}"
    );
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("imapbusy") && l.contains("gave up after 3 attempts"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.stderr);
    assert!(errors[0].contains("NO [UNAVAILABLE]"), "{}", out.stderr);
    assert!(delivered(&env.path("Maildir")).is_empty());
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["accounts"][0]["last_run"]["exit_code"], 7, "{json}");
}

/// A bad `max_connections_per_host` is a config error naming the file,
/// line and key, before any connection.
#[test]
fn a_bad_limit_is_a_config_error() {
    let env = Env::new();
    let account = AccountBuilder::new("a", "pop3", "localhost")
        .port(1)
        .user("u")
        .password("p")
        .line("max_connections_per_host = 0");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr.contains("account[a].max_connections_per_host")
            && out.stderr.contains("must be between 1 and 1000")
            && out.stderr.contains("config.toml:"),
        "{}",
        out.stderr
    );
}

/// SIGTERM during the backoff wait ends it at once: the run exits with
/// the server's refusal, without the third attempt.
#[test]
fn a_stop_signal_cuts_the_backoff_short() {
    let server = FakeServer::start_many(vec![
        imap_unavailable(),
        imap_unavailable(),
        imap_unavailable(),
    ]);
    let env = Env::new();
    let account = AccountBuilder::fake("imapbusy", "imap", server.port())
        .tls("implicit")
        .ca_file(&server.cert().cert_pem)
        .line("auth = [\"login\"]");
    ConfigBuilder::single(&env, account).write(&env);
    let mut cmd = env.cmd();
    cmd.arg("fetch")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The second refusal starts the 3 s wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.connections() < 2 || !server.settle(Duration::from_millis(10)) {
        assert!(std::time::Instant::now() < deadline, "no second attempt");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let signalled = std::time::Instant::now();
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(took < Duration::from_millis(1500), "{took:?}: {stderr}");
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("NO [UNAVAILABLE]"), "{stderr}");
    assert_eq!(server.connections(), 2, "no third attempt");
}
