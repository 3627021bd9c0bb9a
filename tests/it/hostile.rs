//! Hostile servers and hostile input, through the real binary: scripted
//! fake servers (what a real server will not do) that send endless
//! lines, literals larger than announced, absurd sizes, multibyte text
//! where ASCII is expected, a byte every second and a half; headers that
//! try to inject commands. Each ends with a documented exit code, within
//! a time bound, with peak memory under a fixed bound (measured with
//! `/usr/bin/time`), and with nothing deleted on the server.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::support::dovecot::Dovecot;
use crate::support::fake::{pop3_listing, FakeServer, Step};
use crate::support::{delivered, AccountBuilder, ConfigBuilder, Env};

/// Peak memory any hostile case may cost (KiB): a fixed budget, whatever
/// the server sends.
const MEMORY_BOUND_KIB: u64 = 100 * 1024;

/// The account `hostile` for a fake IMAP server (implicit TLS), trusting
/// its certificate.
fn imap(server: &FakeServer) -> AccountBuilder {
    AccountBuilder::fake("hostile", "imap", server.port()).ca_file(&server.cert().cert_pem)
}

/// The account `hostile` for a fake POP3 server in clear on `port`.
fn pop3(port: u16) -> AccountBuilder {
    AccountBuilder::fake("hostile", "pop3", port)
        .plaintext()
        .timeout("3s")
}

fn imap_login() -> Vec<Step> {
    vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
        Step::expect("a1 AUTHENTICATE PLAIN "),
        Step::line("a1 OK [CAPABILITY IMAP4rev1 UIDPLUS] in"),
    ]
}

/// SELECT and the size listing of a one-message INBOX (93 bytes
/// announced).
fn imap_one_message() -> Vec<Step> {
    let mut s = imap_login();
    s.extend([
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::line("* 1 EXISTS"),
        Step::line("* OK [UIDVALIDITY 7] ok"),
        Step::line("* OK [UIDNEXT 2] ok"),
        Step::line("ab1 OK [READ-WRITE] selected"),
        Step::line("* 1 FETCH (UID 1 RFC822.SIZE 93)"),
        Step::line("ab2 OK done"),
    ]);
    s
}

fn pop3_login(list: &str, uidl: &str) -> Vec<Step> {
    let mut steps = vec![
        Step::line("+OK fake"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nUIDL\r\nTOP\r\n.\r\n"),
        Step::expect("USER u"),
        Step::line("+OK"),
        Step::expect("PASS topsecret"),
        Step::line("+OK in"),
    ];
    steps.extend(pop3_listing(list, uidl));
    steps
}

#[track_caller]
fn bounded(what: &str, kib: u64) {
    eprintln!("{what}: peak memory {kib} KiB");
    assert!(
        kib < MEMORY_BOUND_KIB,
        "{what}: peak memory {kib} KiB, over the bound of {MEMORY_BOUND_KIB} KiB"
    );
}

/// Each hostile IMAP server: a one-line error naming the account, exit 4,
/// bounded memory, nothing delivered, nothing flagged or expunged.
#[test]
fn hostile_imap_servers_cost_bounded_memory_and_delete_nothing() {
    let mut literal = imap_one_message();
    literal.extend([
        Step::expect("ab3 UID FETCH 1 (UID FLAGS BODY.PEEK[])"),
        Step::send("* 1 FETCH (UID 1 BODY[] {999999999999}\r\n"),
        Step::SendForever(vec![b'x'; 65536]),
    ]);
    let mut greeting = vec![Step::StartTls, Step::send("* OK ")];
    greeting.push(Step::SendForever(vec![b'a'; 65536]));
    let mut authenticate = vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
        Step::expect("a1 AUTHENTICATE PLAIN "),
    ];
    authenticate.push(Step::SendForever(
        b"* OK still thinking about it\r\n".repeat(2000),
    ));
    let mut select_bye = imap_login();
    select_bye.extend([
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::send("* B\u{e9}\u{e9} \u{e9}\u{e9}\u{e9}\r\n* BYE gone\r\n"),
        Step::ExpectClose,
    ]);
    for (what, script, code) in [
        ("a BODY[] literal far over RFC822.SIZE", literal, 4),
        ("an endless greeting", greeting, 4),
        ("an endless answer to AUTHENTICATE", authenticate, 4),
        ("multibyte text in the SELECT answer", select_bye, 7),
    ] {
        let server = FakeServer::start(script);
        let env = Env::new();
        ConfigBuilder::single(&env, imap(&server)).write(&env);
        let started = Instant::now();
        let (out, kib) = env.run_measured(&["fetch"]);
        assert_eq!(out.code, code, "{what}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("account hostile"),
            "{what}: {}",
            out.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        bounded(what, kib);
        assert!(delivered(&env.path("Maildir")).is_empty(), "{what}");
        let sent = server.transcript();
        assert!(
            !sent.contains("STORE") && !sent.contains("EXPUNGE"),
            "{what}: {sent}"
        );
    }
}

/// Hostile POP3 servers: an absurd LIST size does not abort the process
/// (an allocation sized by the server's number); a listing of more than a
/// million messages and a TOP answer of more than 1 MiB are bounded
/// protocol errors; nothing is deleted.
#[test]
fn hostile_pop3_servers_cost_bounded_memory_and_delete_nothing() {
    // 10^12 bytes announced, 20 sent: fetched as what it is.
    let mut huge = pop3_login("+OK\r\n1 1000000000000\r\n.\r\n", "+OK\r\n1 a\r\n.\r\n");
    huge.extend([
        Step::expect("RETR 1"),
        Step::send("+OK\r\nSubject: small\r\n\r\nx\r\n.\r\n"),
        Step::expect("DELE 1"),
        Step::line("+OK"),
        Step::expect("QUIT"),
        Step::line("+OK bye"),
    ]);
    let server = FakeServer::start(huge);
    let env = Env::new();
    ConfigBuilder::single(&env, pop3(server.port())).write(&env);
    let (out, kib) = env.run_measured(&["fetch"]);
    assert_eq!(out.code, 0, "absurd LIST size: {}", out.stderr);
    bounded("absurd LIST size", kib);
    assert_eq!(delivered(&env.path("Maildir")).len(), 1);

    // More than a million messages listed.
    let mut listing = b"+OK\r\n".to_vec();
    for n in 1..=1_000_100u32 {
        listing.extend_from_slice(format!("{n} 10\r\n").as_bytes());
    }
    listing.extend_from_slice(b".\r\n");
    let long = vec![
        Step::line("+OK fake"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
        Step::expect("USER u"),
        Step::line("+OK"),
        Step::expect("PASS topsecret"),
        Step::line("+OK in"),
        Step::expect("LIST"),
        Step::Send(listing),
        Step::ExpectClose,
    ];
    let server = FakeServer::start(long);
    let env = Env::new();
    ConfigBuilder::single(&env, pop3(server.port())).write(&env);
    let (out, kib) = env.run_measured(&["fetch"]);
    assert_eq!(out.code, 4, "a million-message listing: {}", out.stderr);
    assert!(out.stderr.contains("more than"), "{}", out.stderr);
    bounded("a million-message listing", kib);
    assert!(!server.transcript().contains("DELE"));

    // Headers first (an SMTP destination) with a 2 MiB "header".
    let mut big_top = pop3_login("+OK\r\n1 100\r\n.\r\n", "+OK\r\n1 a\r\n.\r\n");
    let mut header = b"+OK\r\nX-Big: ".to_vec();
    header.extend(std::iter::repeat_n(b'h', 2 << 20));
    header.extend_from_slice(b"\r\n\r\n.\r\n");
    big_top.extend([
        Step::expect("TOP 1 0"),
        Step::Send(header),
        Step::ExpectClose,
    ]);
    let server = FakeServer::start(big_top);
    let env = Env::new();
    let account = pop3(server.port()).deliver_to(&["relay"]);
    ConfigBuilder::single(&env, account)
        .smtp("relay", 9, "a@example.org", "tls = \"none\"")
        .write(&env);
    let (out, kib) = env.run_measured(&["fetch"]);
    assert_eq!(out.code, 4, "a 2 MiB TOP answer: {}", out.stderr);
    bounded("a 2 MiB TOP answer", kib);
    assert!(!server.transcript().contains("DELE"));
}

/// A server that sends one byte every 1.5 s (with `timeout = "3s"`, so
/// no single read times out) cannot hold a run: the session deadline ends
/// it within seconds (exit 7), and the account's lock is free again. A
/// SIGTERM inside such a read is honoured within a few seconds.
#[test]
fn a_trickling_server_cannot_hold_a_run_and_sigterm_is_honoured() {
    let trickle = || {
        let mut steps = vec![Step::send("+OK ")];
        for _ in 0..40 {
            steps.push(Step::Sleep(Duration::from_millis(1500)));
            steps.push(Step::send("x"));
        }
        steps.push(Step::ExpectClose);
        steps
    };
    let server = FakeServer::start_many(vec![trickle(), trickle()]);
    let env = Env::new();
    ConfigBuilder::single(&env, pop3(server.port())).write(&env);
    let started = Instant::now();
    let out = env.run(&["fetch"]);
    let took = started.elapsed();
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(out.stderr.contains("account hostile"), "{}", out.stderr);
    assert!(took < Duration::from_secs(15), "held the run for {took:?}");

    let mut child = env
        .cmd()
        .arg("fetch")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let asked = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.code().is_some(), "ended by the signal: {status:?}");
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(8),
            "SIGTERM not honoured within 8 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("SIGTERM honoured after {:?}", asked.elapsed());
}

/// Header data never reaches a command unchecked: a Return-Path with
/// ESMTP parameters and a CR is not the LMTP sender (the message is
/// delivered with `<>`, not refused), and a recipient that would pass for
/// an MDA option is refused, never substituted for `%U`.
#[test]
fn headers_cannot_inject_into_lmtp_or_an_mda() {
    let dovecot = Dovecot::shared();
    let source = dovecot.new_user();
    let target = dovecot.new_user();
    dovecot.add_message(
        &source,
        "INBOX",
        b"Return-Path: <attacker@evil.example NOTIFY=SUCCESS ORCPT=rfc822;x@y\rRSET>\nSubject: inject\n\nbody\n",
    );
    let env = Env::new();
    let account = AccountBuilder::dovecot_pop3s("hostile", dovecot, &source).deliver_to(&["lmtp"]);
    ConfigBuilder::new(&env)
        .account(account)
        .destination(
            "lmtp",
            &format!(
                "type = \"lmtp\"\nhost = \"127.0.0.1\"\nport = {}\nrecipient = \"{}\"",
                dovecot.lmtp,
                target.address()
            ),
        )
        .write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = dovecot.messages(&target, "INBOX");
    assert_eq!(got.len(), 1);
    // Dovecot writes the LMTP envelope sender as the first header.
    let text = String::from_utf8_lossy(&got[0]);
    assert_eq!(text.lines().next(), Some("Return-Path: <>"), "{text}");

    // MDA: %U from X-Original-To.
    let user = dovecot.new_user();
    dovecot.add_message(
        &user,
        "INBOX",
        b"X-Original-To: -oQ/tmp/x@kroon.co.za\nSubject: option\n\nbody\n",
    );
    let env = Env::new();
    let log = env.path("mda.log");
    let account = AccountBuilder::dovecot_pop3s("hostile", dovecot, &user)
        .line(
            r#"multidrop = { envelope_header = "X-Original-To", local_domains = ["kroon.co.za"] }"#,
        )
        .deliver_to(&["mda"]);
    ConfigBuilder::new(&env)
        .account(account)
        .destination(
            "mda",
            &format!(
                r#"type = "mda"
command = ["/bin/sh", "-c", "cat > /dev/null; echo \"$1\" >> {}", "sh", "%U"]"#,
                log.display()
            ),
        )
        .write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 10, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot be passed as %U"),
        "{}",
        out.stderr
    );
    assert!(
        !log.exists(),
        "the MDA ran with {:?}",
        fs::read_to_string(&log)
    );
    assert_eq!(
        dovecot.messages(&user, "INBOX").len(),
        1,
        "left on the server"
    );
}

/// Local files: a config others may write is refused whatever it holds
/// (exit 6); state.db and delivered files are 0600; a password in an
/// ad-hoc URL is refused without being echoed; usage errors exit 5;
/// terminal escapes from a server never reach stderr raw.
#[test]
fn local_files_and_messages_are_safe() {
    let env = Env::new();
    let path = env.write_config(
        "[[account]]\nname = \"a\"\nprotocol = \"pop3\"\nhost = \"localhost\"\nuser = \"u\"\npassword_command = \"echo x\"\n",
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("chmod go-w"), "{}", out.stderr);

    let out = env.run(&[
        "fetch",
        "pop3s://me:hunter2@localhost",
        "--to",
        "/tmp/nowhere",
    ]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);

    let out = env.run(&["fetch", "--no-such-flag"]);
    assert_eq!(out.code, 5, "{}", out.stderr);

    // Escapes in a server's error text.
    let server = FakeServer::start(vec![
        Step::line("+OK fake"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\n.\r\n"),
        Step::expect("USER u"),
        Step::line("-ERR \u{1b}[2J\u{1b}[31mgotcha\u{7}"),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, pop3(server.port())).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("gotcha"), "{}", out.stderr);
    assert!(
        !out.stderr.contains('\u{1b}') && !out.stderr.contains('\u{7}'),
        "{:?}",
        out.stderr
    );

    // File modes after a real delivery.
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", b"Subject: mode\n\nx\n");
    let env = Env::new();
    ConfigBuilder::single(&env, AccountBuilder::dovecot_pop3s("a", dovecot, &user)).write(&env);
    env.run(&["fetch"]).expect_success();
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.path("state/state.db")), 0o600);
    for e in fs::read_dir(env.path("Maildir/new")).unwrap() {
        assert_eq!(mode(&e.unwrap().path()), 0o600);
    }
}

/// After STLS, an APOP timestamp a man in the middle put into the
/// plaintext greeting does not make mailretr choose APOP (which would
/// fail, or lock the account out): only when `auth` names it.
#[test]
fn an_injected_apop_timestamp_before_stls_is_not_used() {
    let server = FakeServer::start(vec![
        Step::line("+OK fake <1896.697170952@evil.example>"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
        Step::expect("STLS"),
        Step::line("+OK begin TLS"),
        Step::StartTls,
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\n.\r\n"),
        Step::expect("USER u"),
        Step::line("-ERR no such user"),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    let account = AccountBuilder::fake("hostile", "pop3", server.port())
        .tls("starttls")
        .ca_file(&server.cert().cert_pem)
        .timeout("3s");
    ConfigBuilder::single(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        !server.transcript().contains("APOP"),
        "{}",
        server.transcript()
    );
    server.assert_no_errors();
}

/// The damaged-database advice is given only for a damaged file, and says
/// what moving it aside costs; a missing state.db next to an existing
/// locks/ directory is pointed out.
#[test]
fn state_database_trouble_is_explained() {
    let env = Env::new();
    let state = env.path("state");
    fs::create_dir_all(state.join("locks")).unwrap();
    let account = AccountBuilder::new("a", "pop3", "127.0.0.1")
        .port(9)
        .user("u")
        .password("p")
        .deliver_to(&[]);
    ConfigBuilder::new(&env).account(account).write(&env);
    let out = env.run(&["fetch"]);
    assert!(out.stderr.contains("is missing but"), "{}", out.stderr);
    // The database is state.db with its WAL (which outlives the runs):
    // both damaged.
    fs::write(state.join("state.db"), vec![b'x'; 8192]).unwrap();
    fs::write(state.join("state.db-wal"), vec![b'y'; 8192]).unwrap();
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 23, "{}", out.stderr);
    assert!(
        out.stderr.contains("damaged")
            && out.stderr.contains("spool")
            && out.stderr.contains("state.db-wal"),
        "{}",
        out.stderr
    );
}

/// Multibyte text where the pre-TLS STARTTLS reader looks for an ASCII
/// prefix (reachable by anyone on the path, before TLS) is no panic: the
/// server simply offers no STARTTLS (exit 2), and no credentials go out.
#[test]
fn multibyte_text_before_starttls_is_no_panic() {
    let server = FakeServer::start(vec![
        Step::send("* OK [C\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9} IMAP4rev1] hi\r\n"),
        Step::expect("s1 CAPABILITY"),
        Step::send("* CAPA\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9} IMAP4rev1\r\ns1 OK\r\n"),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    ConfigBuilder::single(&env, imap(&server).tls("starttls")).write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let sent = server.transcript();
    assert!(
        !sent.contains("topsecret") && !sent.contains("AUTHENTICATE"),
        "{sent}"
    );
}

/// A Return-Path that is not an address makes the SMTP destination use
/// its configured `sender`, never refuse the message (a header must not
/// decide `on_refused`).
#[test]
fn an_invalid_return_path_is_not_a_refusal_for_smtp() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(
        &user,
        "INBOX",
        b"Return-Path: <not an address>\nSubject: bad sender\n\nbody\n",
    );
    let env = Env::new();
    let sink = crate::support::smtpsink::SmtpSink::start(&env.path("smtp"));
    let account = AccountBuilder::dovecot_pop3s("hostile", dovecot, &user)
        .line("on_refused = \"delete\"")
        .deliver_to(&["relay"]);
    ConfigBuilder::new(&env)
        .account(account)
        .smtp(
            "relay",
            sink.port,
            "jaco@example.org",
            "tls = \"none\"\nsender = \"fetch@example.org\"",
        )
        .write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(sink.messages().len(), 1, "{}", out.stderr);
    assert!(
        sink.envelope(1).starts_with("fetch@example.org\n"),
        "{}",
        sink.envelope(1)
    );
}

/// Raw DEFLATE of `data` with a sync flush (what a COMPRESS server sends).
fn deflated(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::new();
    mailretr::net::deflate::compress_all(&mut c, data, &mut out).unwrap();
    out
}

/// Hostile COMPRESS=DEFLATE servers: a decompression bomb (256 MiB of one
/// endless line in about 256 KiB) and bytes that are not DEFLATE at all
/// each end in one line naming the account, within bounded memory, with
/// nothing delivered or deleted.
#[test]
fn hostile_compress_servers_cost_bounded_memory_and_delete_nothing() {
    let compress_ok = |after: Vec<u8>| {
        let mut s = vec![
            Step::StartTls,
            Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
            Step::expect("a1 AUTHENTICATE PLAIN "),
            Step::line("a1 OK [CAPABILITY IMAP4rev1 UIDPLUS COMPRESS=DEFLATE] in"),
            Step::expect("a2 COMPRESS DEFLATE"),
        ];
        let mut ok = b"a2 OK DEFLATE active\r\n".to_vec();
        ok.extend_from_slice(&after);
        s.push(Step::Send(ok));
        s.push(Step::ExpectClose);
        s
    };
    let mut bomb_text = b"* OK ".to_vec();
    bomb_text.resize(256 << 20, b'x');
    let bomb = deflated(&bomb_text);
    assert!(bomb.len() < 2 << 20, "{}", bomb.len());
    drop(bomb_text);
    // Sent right behind the tagged OK, in the same write: those bytes are
    // already compressed and must not be read as plain text.
    for (what, script, code) in [
        ("a decompression bomb", compress_ok(bomb), 4),
        (
            "bytes that are not DEFLATE",
            compress_ok(vec![0xff; 4096]),
            2,
        ),
    ] {
        let server = FakeServer::start(script);
        let env = Env::new();
        ConfigBuilder::single(&env, imap(&server).timeout("10s")).write(&env);
        let started = Instant::now();
        let (out, kib) = env.run_measured(&["fetch"]);
        assert_eq!(out.code, code, "{what}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains("account hostile"),
            "{what}: {}",
            out.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        bounded(what, kib);
        assert!(delivered(&env.path("Maildir")).is_empty(), "{what}");
    }
}
