//! The run with no new mail, against a real Dovecot: with `keep = true`
//! it asks POP3 for STAT and the last message's UIDL and size, no
//! listing, and
//! makes one connection per account, the one `fetch` starts while it
//! opens the state (`net::early`); an early connection its account
//! cannot use is closed and gives its `max_connections_per_host` slot
//! back.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::dovecot::Dovecot;
use support::proxy::CountingProxy;
use support::{AccountBuilder, ConfigBuilder, Env};

/// The client's side of a transcript file, one command per line.
fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\
         Message-ID: <{}@nomail.test>\r\n\r\nbody of {subject}\r\n",
        subject.replace(' ', "-")
    )
    .into_bytes()
}

fn commands(transcript: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(transcript)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("C: ").map(|(_, c)| c.to_string()))
        .collect()
}

/// The message file of `user`'s INBOX whose subject is `subject`.
fn message_file(user: &support::User, subject: &str) -> std::path::PathBuf {
    let needle = format!("Subject: {subject}\r\n");
    ["cur", "new"]
        .iter()
        .flat_map(|d| std::fs::read_dir(user.maildir().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| {
            let bytes = std::fs::read(p).unwrap();
            String::from_utf8_lossy(&bytes).contains(&needle)
        })
        .unwrap_or_else(|| panic!("no message {subject:?}"))
}

#[test]
fn a_pop3_run_with_nothing_new_asks_no_list_and_connects_once() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for i in 0..3 {
        dovecot.add_message(&user, "INBOX", &message(&format!("old {i}")));
    }
    let proxy = CountingProxy::start(dovecot.pop3s);
    let env = Env::new();
    let run = |n: usize| {
        let transcript = env.path(format!("transcript-{n}.log"));
        let account = AccountBuilder::dovecot_pop3s("acct", dovecot, &user)
            .port(proxy.port())
            .keep(true)
            .line(&format!("transcript = \"{}\"", transcript.display()));
        ConfigBuilder::single(&env, account).write(&env);
        (env.run(&["fetch"]), commands(&transcript))
    };
    let listed_in_full = |sent: &[String]| sent.iter().any(|c| c == "UIDL");

    let (out, sent) = run(1);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 3);
    assert_eq!(proxy.connections(), 1, "one connection for the run");
    assert!(listed_in_full(&sent), "the first run lists: {sent:?}");

    // Nothing new: STAT is what the three were when delivered, and the
    // last message is the one delivered last: no listing at all.
    let before = proxy.bytes_from_server();
    let (out, sent) = run(2);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr, "", "quiet");
    for asked in ["STAT", "UIDL 3", "LIST 3"] {
        assert!(sent.iter().any(|c| c == asked), "{asked}: {sent:?}");
    }
    assert!(!listed_in_full(&sent), "{sent:?}");
    assert!(!sent.iter().any(|c| c == "LIST"), "{sent:?}");
    assert_eq!(proxy.connections(), 2, "one connection for the run");
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 3);
    let unchanged_bytes = proxy.bytes_from_server() - before;

    // One more: STAT says so, UIDL and LIST follow, and only it is fetched.
    dovecot.add_message(&user, "INBOX", &message("new"));
    let (out, sent) = run(3);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(listed_in_full(&sent), "{sent:?}");
    assert!(sent.iter().any(|c| c == "LIST"), "{sent:?}");
    assert_eq!(
        sent.iter().filter(|c| c.starts_with("RETR")).count(),
        1,
        "{sent:?}"
    );
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 4);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 4, "kept");

    // One message gone from the server and one of the same size arrived
    // (STAT's count and octets are as recorded): the last message is not
    // the one delivered last, so the mailbox is listed and the new one
    // fetched.
    std::fs::remove_file(message_file(&user, "old 0")).unwrap();
    dovecot.add_message(&user, "INBOX", &message("newer"));
    let (out, sent) = run(4);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(listed_in_full(&sent), "{sent:?}");
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 5);

    // Every twelfth run lists in full all the same.
    for n in 5..=13 {
        let (out, sent) = run(n);
        assert_eq!(out.code, 1, "run {n}: {}", out.stderr);
        assert_eq!(listed_in_full(&sent), n == 13, "run {n}: {sent:?}");
    }
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 5);
    assert!(
        unchanged_bytes < 4_000,
        "a run with nothing new downloads {unchanged_bytes} bytes"
    );
}

/// Account `a` is locked by another process when the run starts: the
/// connection `fetch` started for it is closed unused (no login), and
/// the only connection slot to the server (`max_connections_per_host =
/// 1`) goes to account `b`, whose run completes. Were the slot kept, `b`
/// would wait for ever.
#[test]
fn an_early_connection_its_account_cannot_use_gives_its_slot_back() {
    let dovecot = Dovecot::shared();
    let (ua, ub) = (dovecot.new_user(), dovecot.new_user());
    dovecot.add_message(&ua, "INBOX", &message("for a"));
    let proxy = CountingProxy::start(dovecot.pop3s);
    let env = Env::new();
    let a = AccountBuilder::dovecot_pop3s("a", dovecot, &ua).port(proxy.port());
    let b = AccountBuilder::dovecot_pop3s("b", dovecot, &ub).port(proxy.port());
    ConfigBuilder::new(&env)
        .general("max_connections_per_host = 1\njobs = 1")
        .account_to_maildir(a, env.path("Maildir-a"))
        .account_to_maildir(b, env.path("Maildir-b"))
        .write(&env);
    // The state exists (as it does for every run but the first).
    assert_eq!(env.run(&["fetch", "b"]).code, 1);
    dovecot.add_message(&ub, "INBOX", &message("for b"));
    let locks = env.path("state/locks");
    std::fs::create_dir_all(&locks).unwrap();
    let mut holder = Command::new("flock")
        .arg(locks.join("a.lock"))
        .args(["sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .expect("flock(1) (util-linux)");
    // Until flock(1) holds it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("flock")
        .args(["-n"])
        .arg(locks.join("a.lock"))
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "flock(1) never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }

    let out = env.run_with(&["fetch"], None, Duration::from_secs(60));
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        out.stderr.contains("account a") && out.stderr.contains("another mailretr"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert_eq!(env.maildir_messages(env.path("Maildir-b")).len(), 1);
    assert!(env.maildir_messages(env.path("Maildir-a")).is_empty());
    assert_eq!(dovecot.messages(&ua, "INBOX").len(), 1, "a untouched");
    assert_eq!(
        proxy.connections(),
        3,
        "b's first run; a's early one, closed; b's"
    );
}

/// What follows the client's CAPA in a transcript: `C: ...` when the
/// client sent more before the answer, `S: ...` when it waited for it.
fn after_capa(transcript: &str) -> String {
    after_capa_all(transcript)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no line after CAPA in {transcript}"))
}

/// Against a real Dovecot (which reads pipelined input): from the second
/// run on, CAPA and AUTH PLAIN go in one round trip (the first run's CAPA
/// answer is kept, `pop3::known`), and the session that follows works
/// as before (nothing new; then a new message is fetched). With the
/// default order, Dovecot offering SCRAM-SHA-256, nothing is sent on a
/// guess: CAPA alone, then SCRAM.
#[test]
fn a_pop3_run_sends_capa_and_auth_plain_together_once_it_knows_the_server() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message("one"));
    let env = Env::new();
    let run = |n: usize, auth: Option<&str>| {
        let transcript = env.path(format!("transcript-{n}.log"));
        let mut account = AccountBuilder::dovecot_pop3s("acct", dovecot, &user)
            .keep(true)
            .line(&format!("transcript = \"{}\"", transcript.display()));
        if let Some(auth) = auth {
            account = account.line(&format!("auth = [\"{auth}\"]"));
        }
        ConfigBuilder::single(&env, account).write(&env);
        let out = env.run(&["fetch"]);
        (
            out,
            std::fs::read_to_string(&transcript).unwrap_or_default(),
        )
    };

    let (out, t) = run(1, Some("plain"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(after_capa(&t).starts_with("S: +OK"), "{t}");

    let (out, t) = run(2, Some("plain"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr, "", "quiet");
    assert_eq!(after_capa(&t), "C: AUTH PLAIN <redacted>", "{t}");

    dovecot.add_message(&user, "INBOX", &message("two"));
    let (out, t) = run(3, Some("plain"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(after_capa(&t), "C: AUTH PLAIN <redacted>", "{t}");
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);

    let (out, t) = run(4, None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(after_capa(&t).starts_with("S: +OK"), "{t}");
    assert!(t.contains("C: AUTH SCRAM-SHA-256"), "{t}");
    assert!(!t.contains("AUTH PLAIN"), "{t}");
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 2, "kept");
}

/// The CAPA answers of every POP3 server are read as the run starts, not
/// only those of the accounts connected to early: with `--jobs 1` only
/// account `a` is, and account `b` (the same Dovecot through a relay: a
/// server of its own, by port) pipelines its login too from the second
/// run on.
#[test]
fn every_pop3_account_pipelines_its_login_not_only_the_early_ones() {
    let dovecot = Dovecot::shared();
    let (ua, ub) = (dovecot.new_user(), dovecot.new_user());
    let proxy = CountingProxy::start(dovecot.pop3s);
    let env = Env::new();
    let transcript = |name: &str, n: usize| env.path(format!("transcript-{name}-{n}.log"));
    let run = |n: usize| {
        let account = |name: &str, user: &support::User| {
            AccountBuilder::dovecot_pop3s(name, dovecot, user)
                .keep(true)
                .line("auth = [\"plain\"]")
                .line(&format!(
                    "transcript = \"{}\"",
                    transcript(name, n).display()
                ))
        };
        ConfigBuilder::new(&env)
            .account_to_maildir(account("a", &ua), env.path("Maildir-a"))
            .account_to_maildir(account("b", &ub).port(proxy.port()), env.path("Maildir-b"))
            .write(&env);
        let out = env.run(&["fetch", "--jobs", "1"]);
        assert_eq!(out.code, 1, "run {n}: {}", out.stderr);
    };
    let read = |name: &str, n: usize| std::fs::read_to_string(transcript(name, n)).unwrap();
    run(1);
    run(2);
    for name in ["a", "b"] {
        assert!(after_capa(&read(name, 1)).starts_with("S: +OK"), "{name}");
        assert_eq!(
            after_capa(&read(name, 2)),
            "C: AUTH PLAIN <redacted>",
            "{name}"
        );
    }
}

/// The lines of a transcript after its last `C: CAPA`, as `C: ...` and
/// `S: ...`.
fn after_capa_all(transcript: &str) -> Vec<String> {
    let lines: Vec<&str> = transcript.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.ends_with(" C: CAPA"))
        .unwrap_or_else(|| panic!("no CAPA in {transcript}"));
    lines[at + 1..]
        .iter()
        .filter_map(|l| {
            [" C: ", " S: "].iter().find_map(|side| {
                l.split_once(side)
                    .map(|(_, text)| format!("{}{text}", side.trim_start()))
            })
        })
        .collect()
}

/// Against a real Dovecot, which hands what was pipelined behind the login
/// to the pop3 process that serves the session: a keep-mode run that
/// knows the server sends STAT, `UIDL n` and `LIST n` in the write of CAPA
/// and AUTH PLAIN (one round trip for the whole run with nothing new), and
/// still sees new mail when STAT says there is some.
#[test]
fn a_kept_pop3_mailbox_is_asked_stat_with_the_login_and_new_mail_is_still_seen() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message("one"));
    let env = Env::new();
    let run = |n: usize| {
        let transcript = env.path(format!("transcript-{n}.log"));
        let account = AccountBuilder::dovecot_pop3s("acct", dovecot, &user)
            .keep(true)
            .line("auth = [\"plain\"]")
            .line(&format!("transcript = \"{}\"", transcript.display()));
        ConfigBuilder::single(&env, account).write(&env);
        let out = env.run(&["fetch"]);
        (
            out,
            std::fs::read_to_string(&transcript).unwrap_or_default(),
        )
    };
    let pipelined = |t: &str, n: usize| {
        let all = after_capa_all(t);
        let want = [
            "C: AUTH PLAIN <redacted>".to_string(),
            "C: STAT".to_string(),
            format!("C: UIDL {n}"),
            format!("C: LIST {n}"),
        ];
        assert_eq!(all[..4], want, "{t}");
        assert!(all[4].starts_with("S: +OK"), "{t}");
        assert_eq!(t.matches("C: STAT").count(), 1, "{t}");
    };

    let (out, _) = run(1);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let (out, t) = run(2);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(out.stderr, "", "quiet");
    pipelined(&t, 1);
    assert!(!t.contains("C: UIDL\n") && !t.contains("C: LIST\n"), "{t}");

    dovecot.add_message(&user, "INBOX", &message("two"));
    let (out, t) = run(3);
    assert_eq!(out.code, 0, "{}", out.stderr);
    pipelined(&t, 1);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);

    let (out, t) = run(4);
    assert_eq!(out.code, 1, "{}", out.stderr);
    pipelined(&t, 2);
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 2);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 2, "kept");
}
