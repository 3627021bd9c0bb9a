//! Destinations through the real `mailretr` binary: LMTP into a real
//! Dovecot (TCP and Unix socket), SMTP into a real aiosmtpd, procmail as
//! MDA, mbox and directory; fan-out to four at once; multidrop routing;
//! scripted SMTP servers for 4xx/5xx and dropped connections; and
//! headers-first measured on the wire. Missing aiosmtpd or procmail is a
//! loud failure (tests/run-all.sh installs them), never a skip.

use crate::support;

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::corpus;
use support::dovecot::{Dovecot, User};
use support::fake::{FakeServer, Step};
use support::proxy::CountingProxy;
use support::{delivered, sorted};
use support::{strip_received, AccountBuilder, ConfigBuilder, Env};

use support::smtpsink::{SmtpSink, PYTHON};

/// The POP3S account `acct` on the shared Dovecot, delivering to
/// `deliver_to`.
fn pop3s(dovecot: &Dovecot, user: &User, deliver_to: &[&str]) -> AccountBuilder {
    AccountBuilder::dovecot_pop3s("acct", dovecot, user).deliver_to(deliver_to)
}

/// `[general]` without a `Received:` header, so bytes compare exactly,
/// and `account`.
fn config(env: &Env, account: AccountBuilder) -> ConfigBuilder {
    ConfigBuilder::new(env)
        .hostname("test.example")
        .general("add_received = false")
        .account(account)
}

/// What SMTP and LMTP make of a message: a final line break is added
/// when missing (the wire format cannot say otherwise).
fn as_transported(m: &[u8]) -> Vec<u8> {
    let mut m = m.to_vec();
    if !m.ends_with(b"\n") {
        m.push(b'\n');
    }
    m
}

/// Compares message lists, showing the first difference readably.
#[track_caller]
fn same(got: &[Vec<u8>], want: &[Vec<u8>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: number of messages");
    for (g, w) in got.iter().zip(want) {
        if g != w {
            let at = g
                .iter()
                .zip(w)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(w.len()));
            let show = |m: &[u8]| {
                String::from_utf8_lossy(&m[at.saturating_sub(40)..(at + 40).min(m.len())])
                    .into_owned()
            };
            panic!(
                "{what}: message differs at byte {at} (lengths {} vs {}):\n got: {:?}\nwant: {:?}",
                g.len(),
                w.len(),
                show(g),
                show(w)
            );
        }
    }
}

/// Drops the `Return-Path:` line Dovecot's LMTP puts on top.
fn strip_return_path(m: &[u8]) -> Vec<u8> {
    if m.starts_with(b"Return-Path:") {
        let end = m.iter().position(|&b| b == b'\n').unwrap() + 1;
        m[end..].to_vec()
    } else {
        m.to_vec()
    }
}

/// Reads an mboxrd file back into messages (separators dropped, quoting
/// undone, the blank line after each message removed).
fn read_mbox(path: &Path) -> Vec<Vec<u8>> {
    let data = fs::read(path).unwrap();
    let mut messages: Vec<Vec<u8>> = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            messages.push(Vec::new());
            continue;
        }
        let current = messages.last_mut().expect("file starts with From ");
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            current.extend_from_slice(&line[1..]);
        } else {
            current.extend_from_slice(line);
        }
    }
    for m in &mut messages {
        assert!(
            m.ends_with(b"\n\n") || m == b"\n",
            "entry ends with a blank line"
        );
        m.pop();
    }
    messages
}

fn files_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            out.push(fs::read(p).unwrap());
        }
    }
    out
}

fn procmail() -> &'static str {
    let p = "/usr/bin/procmail";
    assert!(
        Path::new(p).exists(),
        "\n\n*** procmail is not installed: apt-get install procmail (tests/run-all.sh does) ***\n"
    );
    p
}

#[test]
fn fan_out_to_lmtp_mbox_procmail_and_directory_is_byte_exact() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    let mut originals = Vec::new();
    for (_, bytes) in corpus::awkward() {
        dovecot.add_message(&source, "INBOX", &bytes);
        originals.push(bytes);
    }
    let env = Env::new();
    let rc = env.path("procmailrc");
    fs::write(
        &rc,
        format!("DEFAULT={}/\n", env.path("procmail-md").display()),
    )
    .unwrap();
    let account = pop3s(dovecot, &source, &["lmtp", "mbox", "procmail", "files"]);
    config(&env, account)
        .destination(
            "lmtp",
            &format!(
                "type = \"lmtp\"\nhost = \"127.0.0.1\"\nport = {}\nrecipient = \"{}\"",
                dovecot.lmtp,
                target.address()
            ),
        )
        .mbox("mbox", env.path("mbox"))
        .destination(
            "procmail",
            &format!(
                "type = \"mda\"\ncommand = [\"{}\", \"-m\", \"{}\"]",
                procmail(),
                rc.display()
            ),
        )
        .destination(
            "files",
            &format!(
                "type = \"directory\"\npath = \"{}\"\nfilename = \"%A-%I.eml\"",
                env.path("files").display()
            ),
        )
        .write(&env);
    let started = Instant::now();
    let out = env.run(&["fetch"]);
    out.expect_success();
    eprintln!(
        "fan-out of {} messages to 4 destinations: {:?}",
        originals.len(),
        started.elapsed()
    );
    assert!(
        dovecot.messages(&source, "INBOX").is_empty(),
        "deleted after delivery"
    );

    let exact = sorted(originals.clone());
    let transported = sorted(originals.iter().map(|m| as_transported(m)).collect());
    // mbox cannot store a missing final line break either.
    same(&sorted(read_mbox(&env.path("mbox"))), &transported, "mbox");
    same(
        &sorted(env.maildir_messages(env.path("procmail-md"))),
        &exact,
        "procmail",
    );
    same(&sorted(files_in(&env.path("files"))), &exact, "directory");
    let at_dovecot = sorted(
        dovecot
            .messages(&target, "INBOX")
            .iter()
            .map(|m| strip_return_path(m))
            .collect(),
    );
    same(&at_dovecot, &transported, "lmtp");
}

#[test]
fn smtp_to_aiosmtpd_and_lmtp_socket_are_byte_exact() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    let mut originals = Vec::new();
    for (_, bytes) in corpus::awkward() {
        dovecot.add_message(&source, "INBOX", &bytes);
        originals.push(bytes);
    }
    let env = Env::new();
    let sink = SmtpSink::start(&env.path("smtp"));
    config(&env, pop3s(dovecot, &source, &["relay", "dovecot"]))
        .smtp(
            "relay",
            sink.port,
            "jaco@kroon.co.za",
            "tls = \"none\"\nsender = \"fetch@example.org\"",
        )
        .destination(
            "dovecot",
            &format!(
                "type = \"lmtp\"\nsocket = \"{}\"\nrecipient = \"{}\"",
                dovecot.lmtp_socket.display(),
                target.address()
            ),
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    let transported = sorted(originals.iter().map(|m| as_transported(m)).collect());
    same(&sorted(sink.messages()), &transported, "smtp");
    let env1 = sink.envelope(1);
    assert!(
        env1.starts_with("fetch@example.org\njaco@kroon.co.za\n"),
        "{env1}"
    );
    // lettre keeps no SIZE from its EHLO, and there is no second EHLO.
    assert!(!env1.contains("SIZE="), "SIZE not declared: {env1}");
    assert!(env1.contains("BODY=8BITMIME"), "8BITMIME used: {env1}");
    let at_dovecot = sorted(
        dovecot
            .messages(&target, "INBOX")
            .iter()
            .map(|m| strip_return_path(m))
            .collect(),
    );
    same(&at_dovecot, &transported, "lmtp over the socket");
}

#[test]
fn imap_append_to_another_server_keeps_bytes_and_date() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    let mut originals = Vec::new();
    for (_, bytes) in corpus::awkward() {
        dovecot.add_message(&source, "INBOX", &bytes);
        originals.push(bytes);
    }
    let env = Env::new();
    config(&env, pop3s(dovecot, &source, &["archive"]))
        .imap(
            "archive",
            dovecot,
            dovecot.imaps,
            &target,
            "folder = \"Archive/Fetched\"",
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    same(
        &dovecot.messages(&target, "Archive/Fetched"),
        &sorted(originals),
        "imap append",
    );
    // The internal date is the Date: header's (2 Jan 2024), not today:
    // Dovecot keeps it as the file's mtime.
    let dir = dovecot.folder_dir(&target, "Archive/Fetched").join("new");
    let dir = if dir
        .read_dir()
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
    {
        dir
    } else {
        dovecot.folder_dir(&target, "Archive/Fetched").join("cur")
    };
    for e in fs::read_dir(dir).unwrap() {
        let mtime = e.unwrap().metadata().unwrap().modified().unwrap();
        let age = std::time::SystemTime::now().duration_since(mtime).unwrap();
        assert!(age > Duration::from_secs(86400 * 30), "internal date kept");
    }
}

/// The SMTP dialogue up to an accepted MAIL FROM.
fn smtp_open() -> Vec<Step> {
    vec![
        Step::line("220 fake ESMTP"),
        // One EHLO: a second one here would fail the script.
        Step::expect("EHLO"),
        Step::line("250-fake\r\n250-SIZE 100000000\r\n250 8BITMIME"),
        Step::expect("MAIL FROM:"),
    ]
}

/// `account` and `relay`, SMTP in clear on `port`.
fn smtp_config(env: &Env, account: AccountBuilder, port: u16) -> ConfigBuilder {
    config(env, account).smtp("relay", port, "jaco@kroon.co.za", "tls = \"none\"")
}

#[test]
fn headers_first_550_at_rcpt_for_4mb_transfers_only_kilobytes() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let big = corpus::big(4 * 1024 * 1024);
    dovecot.add_message(&user, "INBOX", &big);
    let proxy = CountingProxy::start(dovecot.pop3);
    let mut script = smtp_open();
    script.extend([
        Step::line("250 2.1.0 OK"),
        Step::expect("RCPT TO:<jaco@kroon.co.za>"),
        Step::line("550 5.1.1 no such user"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::Close,
    ]);
    let smtp = FakeServer::start(script);
    let env = Env::new();
    let account = pop3s(dovecot, &user, &["relay"])
        .port(proxy.port())
        .plaintext();
    smtp_config(&env, account.clone(), smtp.port()).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    smtp.assert_no_errors();
    assert!(out.stderr.contains("bytes saved"), "{}", out.stderr);
    // One line, the relay and its reply named once.
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "relay: RCPT TO:<jaco@kroon.co.za>: 550 5.1.1 no such user; left on the server"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("relay").count(), 1, "{}", out.stderr);
    let read = proxy.bytes_from_server();
    eprintln!("headers-first read {read} bytes from the POP3 server for a 4 MB message");
    assert!(read < 64 * 1024, "read {read} bytes");
    assert_eq!(
        dovecot.messages(&user, "INBOX").len(),
        1,
        "kept on the server"
    );

    // The refusal is remembered: the next run neither downloads the
    // headers again nor reports it again.
    let again = env.run(&["fetch"]);
    again.expect_code(1);
    assert_eq!(again.stderr, "");

    // on_refused = "delete" (and --all to ask again): the same refusal
    // now deletes it.
    let mut script = smtp_open();
    script.extend([
        Step::line("250 2.1.0 OK"),
        Step::expect("RCPT TO:"),
        Step::line("550 5.1.1 no such user"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::Close,
    ]);
    let smtp2 = FakeServer::start(script);
    let account = account.line("on_refused = \"delete\"");
    smtp_config(&env, account, smtp2.port()).write(&env);
    let out = env.run(&["fetch", "--all"]);
    smtp2.assert_no_errors();
    assert!(out.stderr.contains("deleted"), "{}", out.stderr);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

/// IMAP, headers first: a message deferred before download (4xx at RCPT
/// TO) while a later one is delivered is fetched on the next run. The
/// later UID being committed must not move the folder past the deferred
/// one, or it would never be asked about again.
#[test]
fn imap_message_deferred_before_download_is_fetched_next_run() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let first = b"Return-Path: <a@example.org>\nSubject: first\n\none\n".to_vec();
    let second = b"Return-Path: <a@example.org>\nSubject: second\n\ntwo\n".to_vec();
    dovecot.add_message(&user, "INBOX", &first);
    dovecot.add_message(&user, "INBOX", &second);
    let mut script = smtp_open();
    script.extend([
        Step::line("250 OK"),
        Step::expect("RCPT TO:"),
        Step::line("451 4.2.0 mailbox busy, try later"),
        Step::expect("RSET"),
        Step::line("250 OK"),
        Step::expect("MAIL FROM:"),
        Step::line("250 OK"),
        Step::expect("RCPT TO:"),
        Step::line("250 OK"),
        Step::expect("DATA"),
        Step::line("354 go"),
        Step::ExpectData,
        Step::line("250 queued"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::Close,
    ]);
    let smtp = FakeServer::start(script);
    let env = Env::new();
    // The same account and relay, over IMAPS.
    let imap = |port: u16| {
        let account = AccountBuilder::dovecot_imaps("acct", dovecot, &user).deliver_to(&["relay"]);
        let config = smtp_config(&env, account, port).build();
        assert!(config.contains(&format!(
            "protocol = \"imap\"\nhost = \"localhost\"\nport = {}\n",
            dovecot.imaps
        )));
        config
    };
    env.write_config(&imap(smtp.port()));
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    smtp.assert_no_errors();
    // Said once, naming the message, the relay and the reply once each.
    assert_eq!(out.stderr.matches("try later").count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "deferred before download (left for the next run): relay: RCPT TO:<jaco@kroon.co.za>: 451 4.2.0 mailbox busy, try later"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.matches("relay").count(), 1, "{}", out.stderr);
    assert!(smtp.transcript().contains("Subject: second"));
    assert_eq!(dovecot.messages(&user, "INBOX"), vec![first.clone()]);

    // The relay takes it now: the deferred message is asked about again.
    let mut script = smtp_open();
    script.extend([
        Step::line("250 OK"),
        Step::expect("RCPT TO:"),
        Step::line("250 OK"),
        Step::expect("DATA"),
        Step::line("354 go"),
        Step::ExpectData,
        Step::line("250 queued"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::Close,
    ]);
    let smtp = FakeServer::start(script);
    env.write_config(&imap(smtp.port()));
    let out = env.run(&["fetch"]);
    out.expect_success();
    smtp.assert_no_errors();
    assert!(
        smtp.transcript().contains("Subject: first"),
        "{}",
        smtp.transcript()
    );
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn smtp_4xx_and_5xx_at_mail_rcpt_and_after_data_and_a_dropped_connection() {
    let dovecot = Dovecot::shared();
    let msg = b"Return-Path: <a@example.org>\nSubject: x\nMessage-ID: <x@t>\n\nhello\n".to_vec();

    // 451 at MAIL FROM: deferred before download, left unseen; exit 10.
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &msg);
    let mut script = smtp_open();
    script.extend([
        Step::line("451 4.3.0 try later"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::Close,
    ]);
    let smtp = FakeServer::start(script);
    let env = Env::new();
    smtp_config(&env, pop3s(dovecot, &user, &["relay"]), smtp.port()).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    smtp.assert_no_errors();
    assert!(out.stderr.contains("try later"), "{}", out.stderr);
    assert!(
        smtp.transcript()
            .contains("MAIL FROM:<a@example.org> BODY=8BITMIME\r\n"),
        "{}",
        smtp.transcript()
    );
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);

    // 554 after DATA: permanent, left on the server, reported; exit 10.
    let mut script = smtp_open();
    script.extend([
        Step::line("250 OK"),
        Step::expect("RCPT TO:"),
        Step::line("250 OK"),
        Step::expect("DATA"),
        Step::line("354 go"),
        Step::ExpectData,
        Step::line("554 5.7.1 spam"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::Close,
    ]);
    let smtp = FakeServer::start(script);
    smtp_config(&env, pop3s(dovecot, &user, &["relay"]), smtp.port()).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    smtp.assert_no_errors();
    assert!(out.stderr.contains("spam"), "{}", out.stderr);
    assert!(
        smtp.transcript().contains("\r\nhello\r\n.\r\n"),
        "{}",
        smtp.transcript()
    );
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);

    // The refusal is remembered: the next run does not download it again.
    env.run(&["fetch"]).expect_code(1);

    // 452 after DATA (asked for again with --all): temporary. The body
    // was downloaded, so it goes into the spool and leaves the server.
    let mut script = smtp_open();
    script.extend([
        Step::line("250 OK"),
        Step::expect("RCPT TO:"),
        Step::line("250 OK"),
        Step::expect("DATA"),
        Step::line("354 go"),
        Step::ExpectData,
        Step::line("452 4.3.1 disk full"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::Close,
    ]);
    let smtp = FakeServer::start(script);
    smtp_config(&env, pop3s(dovecot, &user, &["relay"]), smtp.port()).write(&env);
    let out = env.run(&["fetch", "--all"]);
    out.expect_code(0);
    assert!(out.stderr.contains("disk full"), "{}", out.stderr);
    assert!(out.stderr.contains("spooled"), "{}", out.stderr);
    assert!(dovecot.messages(&user, "INBOX").is_empty());

    // The connection drops during DATA: temporary; spooled, nothing lost.
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &msg);
    let mut script = smtp_open();
    script.extend([
        Step::line("250 OK"),
        Step::expect("RCPT TO:"),
        Step::line("250 OK"),
        Step::expect("DATA"),
        Step::line("354 go"),
        Step::Abort,
    ]);
    let smtp = FakeServer::start(script);
    let env = Env::new();
    smtp_config(&env, pop3s(dovecot, &user, &["relay"]), smtp.port()).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(0);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    let list = env.run(&["queue", "list", "--json"]);
    assert!(
        list.stdout.contains("\"message_id\": \"<x@t>\""),
        "{}",
        list.stdout
    );
}

#[test]
fn mda_exit_75_is_temporary_67_a_refusal_and_1_a_local_fault() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: a\n\nx\n");
    let env = Env::new();
    let with = |code: u8| {
        config(&env, pop3s(dovecot, &user, &["filter"]))
            .destination(
                "filter",
                &format!(
                    "type = \"mda\"\ncommand = [\"/bin/sh\", \"-c\", \"cat >/dev/null; echo exit {code} >&2; exit {code}\"]"
                ),
            )
    };
    // 75: a temporary failure. The message goes into the spool, is
    // marked seen and leaves the server: it is never downloaded again.
    with(75).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(0);
    assert!(out.stderr.contains("temporary failure"), "{}", out.stderr);
    assert!(out.stderr.contains("spooled for filter"), "{}", out.stderr);
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    let list = env.run(&["queue", "list", "--json"]);
    list.expect_success();
    assert!(
        list.stdout.contains("\"destination\": \"filter\""),
        "{}",
        list.stdout
    );
    // The filter recovers: a flush delivers it and empties the spool.
    with(0).write(&env);
    env.run(&["queue", "flush"]).expect_success();
    assert!(env
        .run(&["queue", "list"])
        .stdout
        .contains("The spool is empty."));

    // 1 (an undocumented code): a local fault, not a refusal. The message
    // stays on the server, nothing is recorded, and every run tries again
    // and says so.
    dovecot.add_message(&user, "INBOX", b"Subject: b\n\ny\n");
    with(1).write(&env);
    for _ in 0..2 {
        let out = env.run(&["fetch"]);
        out.expect_code(10);
        assert!(
            out.stderr.contains("exited with 1: exit 1"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("refused"), "{}", out.stderr);
        assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);
    }

    // 67 (EX_NOUSER): refused for good. With the default on_refused =
    // "keep" it stays on the server, reported, and is not downloaded
    // again.
    with(67).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    assert!(
        out.stderr
            .contains("exited with 67 (EX_NOUSER: no such user): exit 67"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("left on the server"), "{}", out.stderr);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 1);
    env.run(&["fetch"]).expect_code(1);
    // A changed delivery config asks for it again (the refusal may have
    // been the old config's fault); now the filter takes it.
    with(0).write(&env);
    env.run(&["fetch"]).expect_success();
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn mbox_waits_for_a_concurrent_writer_holding_the_lock() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: fetched\n\nFrom the server\n");
    let env = Env::new();
    let mbox = env.path("mbox");
    // Another program (as mutt would) takes the fcntl lock and the
    // dotlock, appends slowly, and lets go after a second.
    let holder = Command::new(PYTHON)
        .arg("-c")
        .arg(
            r#"
import fcntl, os, sys, time
path = sys.argv[1]
f = open(path, "ab")
fcntl.lockf(f, fcntl.LOCK_EX)
os.close(os.open(path + ".lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
print("locked", flush=True)
f.write(b"From other@x Thu Jan  1 00:00:00 2024\nSubject: local\n\n")
f.flush(); time.sleep(1.5)
f.write(b"written while locked\n\n"); f.flush()
os.unlink(path + ".lock")
fcntl.lockf(f, fcntl.LOCK_UN)
"#,
        )
        .arg(&mbox)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut holder = holder;
    let mut buf = [0u8; 7];
    holder.stdout.take().unwrap().read_exact(&mut buf).unwrap();
    config(&env, pop3s(dovecot, &user, &["mbox"]))
        .mbox("mbox", &mbox)
        .write(&env);
    let started = Instant::now();
    env.run(&["fetch"]).expect_success();
    assert!(
        started.elapsed() > Duration::from_millis(500),
        "waited for the lock"
    );
    assert!(holder.wait().unwrap().success());
    let messages = read_mbox(&mbox);
    assert_eq!(
        messages,
        vec![
            b"Subject: local\n\nwritten while locked\n".to_vec(),
            b"Subject: fetched\n\nFrom the server\n".to_vec()
        ]
    );
}

#[test]
fn multidrop_routes_by_envelope_header_with_aliases_and_stops_a_loop() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let one =
        b"X-Original-To: sales@kroon.co.za, anna@kroon.co.za, x@elsewhere.org\nSubject: one\n\n1\n";
    // As Postfix's local delivery writes it: its own Delivered-To equal to
    // X-Original-To. Not a loop.
    let postfix =
        b"Delivered-To: jaco@kroon.co.za\nX-Original-To: jaco@kroon.co.za\nSubject: postfix\n\n4\n";
    // Delivered to jaco once before (the lower Delivered-To), and back: a
    // loop.
    let looped = b"Delivered-To: jaco@kroon.co.za\nX-Original-To: jaco@kroon.co.za\nReceived: by mx\nDelivered-To: jaco@kroon.co.za\nSubject: loop\n\n2\n";
    let nobody = b"X-Original-To: x@elsewhere.org\nSubject: nobody\n\n3\n";
    for m in [&one[..], postfix, looped, nobody] {
        dovecot.add_message(&user, "INBOX", m);
    }
    let env = Env::new();
    let account = pop3s(dovecot, &user, &["files"]).line(
        r#"multidrop = { envelope_header = "X-Original-To", local_domains = ["kroon.co.za"], aliases = { sales = "anna@kroon.co.za", jaco = "jaco@kroon.co.za" } }"#,
    );
    config(&env, account)
        .destination(
            "files",
            &format!(
                "type = \"directory\"\npath = \"{}/%U\"",
                env.path("files").display()
            ),
        )
        .write(&env);
    let out = env.run(&["-q", "fetch"]);
    out.expect_success();
    // Reported even with -q.
    assert!(out.stderr.contains("suspected mail loop"), "{}", out.stderr);
    let mut dirs: Vec<String> = fs::read_dir(env.path("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(
        dirs,
        ["anna@kroon.co.za", "jaco@kroon.co.za"],
        "aliased and deduplicated"
    );
    assert_eq!(
        files_in(&env.path("files/anna@kroon.co.za")),
        vec![one.to_vec()]
    );
    assert_eq!(
        files_in(&env.path("files/jaco@kroon.co.za")),
        vec![postfix.to_vec()]
    );
    // The loop is never deleted, and the message for nobody stays.
    let mut left = dovecot.messages(&user, "INBOX");
    left.sort();
    let mut expected = vec![looped.to_vec(), nobody.to_vec()];
    expected.sort();
    assert_eq!(left, expected);
    // The next run reports the loop again (not downloading it again) and
    // still leaves it.
    let out = env.run(&["-q", "fetch"]);
    assert!(out.stderr.contains("suspected mail loop"), "{}", out.stderr);
    assert_eq!(dovecot.messages(&user, "INBOX").len(), 2);
}

/// Multidrop into per-recipient Maildirs, one of which cannot be created
/// (its path runs through a regular file: ENOTDIR, a local fault): the
/// other recipient's copy, written with the batch's deferred sync, still
/// reaches new/; the faulty recipient's copy is spooled (not fetched
/// again, which would deliver the first copy twice), the run exits
/// non-zero naming the account, and once the path is fixed the spool
/// delivers it.
#[test]
fn a_local_fault_for_one_recipient_spools_that_copy_and_loses_none() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let both = b"X-Original-To: anna@kroon.co.za, bob@kroon.co.za\nSubject: both\n\nb\n";
    let anna = b"X-Original-To: anna@kroon.co.za\nSubject: anna\n\na\n";
    dovecot.add_message(&user, "INBOX", both);
    let env = Env::new();
    let root = env.path("mail");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("bob@kroon.co.za"), b"not a directory").unwrap();
    let account = pop3s(dovecot, &user, &["home"]).line(
        r#"multidrop = { envelope_header = "X-Original-To", local_domains = ["kroon.co.za"] }"#,
    );
    config(&env, account)
        .maildir("home", format!("{}/%U", root.display()))
        .write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(10);
    assert!(out.stderr.contains("account "), "{}", out.stderr);
    assert!(out.stderr.contains("bob@kroon.co.za"), "{}", out.stderr);
    assert!(out.stderr.contains("local fault"), "{}", out.stderr);
    assert_eq!(
        delivered(&root.join("anna@kroon.co.za")),
        vec![both.to_vec()]
    );
    let list = env.run(&["queue", "list", "--json"]);
    assert!(list.stdout.contains("bob@kroon.co.za"), "{}", list.stdout);
    // A later message goes through the batch as usual.
    dovecot.add_message(&user, "INBOX", anna);
    env.run(&["fetch"]).expect_success();
    let got = delivered(&root.join("anna@kroon.co.za"));
    assert_eq!(got, sorted(vec![anna.to_vec(), both.to_vec()]));
    assert!(fs::read_dir(root.join("anna@kroon.co.za/tmp"))
        .unwrap()
        .next()
        .is_none());
    // Fixed: the spool delivers bob's copy, once.
    fs::remove_file(root.join("bob@kroon.co.za")).unwrap();
    env.run(&["queue", "flush"]).expect_success();
    assert_eq!(
        delivered(&root.join("bob@kroon.co.za")),
        vec![both.to_vec()]
    );
    assert!(env
        .run(&["queue", "list"])
        .stdout
        .contains("The spool is empty."));
    assert!(dovecot.messages(&user, "INBOX").is_empty());
    assert_eq!(delivered(&root.join("anna@kroon.co.za")).len(), 2);
}

#[test]
fn a_key_of_another_destination_type_is_refused_with_its_line() {
    let env = Env::new();
    let dovecot_free = r#"[[account]]
name = "a"
protocol = "pop3"
host = "h"
user = "u"
deliver_to = ["relay"]

[destination.relay]
type = "smtp"
host = "localhost"
socket = "/run/x"
recipient = "a@b"
"#;
    let path = env.write_config(dovecot_free);
    let out = env.run(&["config", "check"]);
    out.expect_code(5);
    assert!(
        out.stderr
            .contains(&format!("{}:11: destination.relay.socket", path.display())),
        "{}",
        out.stderr
    );
    let ok = dovecot_free.replace("socket = \"/run/x\"\n", "");
    env.write_config(&ok);
    let out = env.run(&["config", "check"]);
    out.expect_success();
    assert!(
        out.stdout.contains("destination relay: smtp localhost:465"),
        "{}",
        out.stdout
    );
    let _ = strip_received; // keep the helper import used across test files
}
