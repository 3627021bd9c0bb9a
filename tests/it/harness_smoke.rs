//! Smoke tests for the integration-test harness in `tests/support/`: the
//! real Dovecot comes up and serves what the helpers put in place (POP3,
//! POP3S, IMAP, LMTP, APOP, CRAM-MD5), the fake server follows its scripts
//! and records what the client sent, the corpus is deterministic, and
//! `Env` runs the binary in isolation. They talk raw protocol over sockets
//! so they do not depend on mailretr's own client code.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use support::corpus;
use support::{Dovecot, Env, FakeServer, Step, TestCert};

/// A minimal line-oriented client over any stream.
struct Client<S: Read + Write> {
    r: BufReader<S>,
}

impl<S: Read + Write> Client<S> {
    fn new(stream: S) -> Self {
        Client {
            r: BufReader::new(stream),
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("read line");
        line
    }

    fn send(&mut self, text: &str) {
        let s = self.r.get_mut();
        s.write_all(text.as_bytes()).unwrap();
        s.write_all(b"\r\n").unwrap();
        s.flush().unwrap();
    }

    fn cmd(&mut self, text: &str) -> String {
        self.send(text);
        self.line()
    }

    /// Lines up to the lone "." of a POP3 multi-line reply, unstuffed,
    /// joined with CRLF.
    fn multiline(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let mut line = Vec::new();
            self.r.read_until(b'\n', &mut line).unwrap();
            assert!(!line.is_empty(), "connection closed in a multi-line reply");
            if line == b".\r\n" {
                return out;
            }
            let line = line.strip_prefix(b".").unwrap_or(&line);
            out.extend_from_slice(line);
        }
    }

    /// IMAP: lines until the tagged reply for `tag`.
    fn imap(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(&format!("{tag} {cmd}"));
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            assert!(!line.is_empty(), "IMAP connection closed during {cmd}");
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                let last = lines.last().unwrap();
                assert!(last.starts_with(&format!("{tag} OK")), "{cmd}: {lines:?}");
                return lines;
            }
        }
    }
}

fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn ok(reply: String) -> String {
    assert!(reply.starts_with("+OK"), "expected +OK, got {reply:?}");
    reply
}

fn pop3_login(port: u16, user: &support::User) -> Client<TcpStream> {
    let mut c = Client::new(tcp(port));
    ok(c.line());
    ok(c.cmd(&format!("USER {}", user.name)));
    ok(c.cmd(&format!("PASS {}", user.password)));
    c
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn pop3_and_imap_see_added_messages() {
    let dc = Dovecot::shared();
    let user = dc.new_user();
    let (_, inbox_msg) = corpus::awkward().remove(1); // dot-lines
    let archived = corpus::realistic(1, 42).remove(0);
    dc.add_message(&user, "INBOX", &inbox_msg);
    dc.add_message(&user, "Archive/2024", &archived);
    assert_eq!(dc.folders(&user), vec!["Archive/2024".to_string()]);

    // POP3: the new user logs in at once and sees exactly the INBOX message.
    let mut c = pop3_login(dc.pop3, &user);
    let stat = ok(c.cmd("STAT"));
    assert_eq!(
        stat.trim_end(),
        format!("+OK 1 {}", support::to_crlf(&inbox_msg).len())
    );
    let uidl = ok(c.cmd("UIDL 1"));
    let uid = uidl.split_whitespace().nth(2).unwrap();
    assert_eq!(uid.len(), 16, "pop3_uidl_format %08Xu%08Xv: {uidl:?}");
    assert!(uid.chars().all(|c| c.is_ascii_hexdigit()), "{uidl:?}");
    ok(c.cmd("RETR 1"));
    assert_eq!(c.multiline(), support::to_crlf(&inbox_msg));
    ok(c.cmd("QUIT"));

    // IMAP: the subfolder is listed and subscribed, both folders hold one.
    let mut c = Client::new(tcp(dc.imap));
    assert!(c.line().starts_with("* OK"));
    c.imap("a", &format!("LOGIN {} {}", user.name, user.password));
    let list = c.imap("b", "LIST \"\" \"*\"").concat();
    assert!(list.contains("\"/\" Archive/2024"), "{list}");
    assert!(list.contains("INBOX"), "{list}");
    let lsub = c.imap("c", "LSUB \"\" \"*\"").concat();
    assert!(lsub.contains("Archive/2024"), "{lsub}");
    assert!(c.imap("d", "SELECT INBOX").concat().contains("* 1 EXISTS"));
    assert!(c
        .imap("e", "SELECT Archive/2024")
        .concat()
        .contains("* 1 EXISTS"));
    let fetched = c
        .imap("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        .concat();
    assert!(
        fetched.contains("<realistic-42-0@corpus.test>"),
        "{fetched}"
    );
    c.imap("g", "LOGOUT");

    // What the server holds, as the tests will assert it.
    assert_eq!(dc.messages(&user, "INBOX"), vec![inbox_msg]);
    assert_eq!(dc.messages(&user, "Archive/2024"), vec![archived]);
    assert!(dc.messages(&user, "Nope").is_empty());
}

#[test]
fn pop3_delete_empties_the_server() {
    let dc = Dovecot::shared();
    let user = dc.new_user();
    for (_, m) in corpus::awkward() {
        dc.add_message(&user, "INBOX", &m);
    }
    let mut c = pop3_login(dc.pop3, &user);
    let stat = ok(c.cmd("STAT"));
    assert!(
        stat.starts_with(&format!("+OK {} ", corpus::awkward().len())),
        "{stat}"
    );
    for i in 1..=corpus::awkward().len() {
        ok(c.cmd(&format!("DELE {i}")));
    }
    ok(c.cmd("QUIT"));
    assert!(dc.messages(&user, "INBOX").is_empty());
}

#[test]
fn tls_ports_verify_with_the_test_certificate() {
    let dc = Dovecot::shared();
    let user = dc.new_user();
    let big = corpus::big(3000);
    dc.add_message(&user, "INBOX", &big);
    let cert = TestCert {
        cert_pem: dc.cert_pem.clone(),
        key_pem: dc.key_pem.clone(),
    };
    let connector = cert.connector();

    let tls = connector
        .connect("localhost", tcp(dc.pop3s))
        .expect("POP3S handshake");
    let mut c = Client::new(tls);
    ok(c.line());
    ok(c.cmd(&format!("USER {}", user.name)));
    ok(c.cmd(&format!("PASS {}", user.password)));
    assert_eq!(
        ok(c.cmd("STAT")).trim_end(),
        format!("+OK 1 {}", support::to_crlf(&big).len())
    );
    ok(c.cmd("QUIT"));

    let tls = connector
        .connect("localhost", tcp(dc.imaps))
        .expect("IMAPS handshake");
    let mut c = Client::new(tls);
    assert!(c.line().starts_with("* OK"));
    c.imap("a", &format!("LOGIN {} {}", user.name, user.password));
    c.imap("b", "LOGOUT");

    // 127.0.0.1 is in the certificate's subjectAltName too.
    let tls = connector.connect("127.0.0.1", tcp(dc.pop3s));
    assert!(tls.is_ok(), "IP SAN: {:?}", tls.err());

    // Without the test CA the certificate is rejected.
    let plain = native_tls::TlsConnector::new().unwrap();
    assert!(plain.connect("localhost", tcp(dc.pop3s)).is_err());
}

#[test]
fn apop_and_cram_md5_work() {
    let dc = Dovecot::shared();
    let user = dc.new_user();

    let mut c = Client::new(tcp(dc.pop3));
    let greeting = ok(c.line());
    let start = greeting.find('<').expect("APOP timestamp in greeting");
    let end = greeting.rfind('>').unwrap();
    let stamp = &greeting[start..=end];
    let digest = Md5::digest(format!("{stamp}{}", user.password).as_bytes());
    ok(c.cmd(&format!("APOP {} {}", user.name, hex(&digest))));
    ok(c.cmd("QUIT"));

    let mut c = Client::new(tcp(dc.pop3));
    ok(c.line());
    let challenge = c.cmd("AUTH CRAM-MD5");
    let challenge = challenge
        .strip_prefix("+ ")
        .expect("CRAM-MD5 challenge")
        .trim_end();
    let challenge = base64_decode(challenge);
    let mut mac = Hmac::<Md5>::new_from_slice(user.password.as_bytes()).unwrap();
    mac.update(&challenge);
    let answer = format!("{} {}", user.name, hex(&mac.finalize().into_bytes()));
    ok(c.cmd(&corpus::base64(answer.as_bytes())));
    ok(c.cmd("QUIT"));
}

#[test]
fn failed_logins_do_not_slow_down_the_shared_server() {
    let dc = Dovecot::shared();
    let user = dc.new_user();
    // With Dovecot's per-IP auth penalty the second failure would already
    // take 2 s and the good login 4 s.
    for _ in 0..2 {
        let mut c = Client::new(tcp(dc.pop3));
        ok(c.line());
        ok(c.cmd(&format!("USER {}", user.name)));
        let reply = c.cmd("PASS wrong");
        assert!(reply.starts_with("-ERR"), "{reply}");
    }
    let t = Instant::now();
    let mut c = pop3_login(dc.pop3, &user);
    ok(c.cmd("QUIT"));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "login took {:?}",
        t.elapsed()
    );
}

#[test]
fn lmtp_delivery_lands_in_the_inbox() {
    let dc = Dovecot::shared();
    let user = dc.new_user();
    let msg = &corpus::awkward()[1].1; // dot-lines: exercises dot-stuffing
    dc.deliver_lmtp(&user, msg);
    let stored = dc.messages(&user, "INBOX");
    assert_eq!(stored.len(), 1);
    let stored = &stored[0];
    assert!(stored.starts_with(b"Return-Path: <sender@example.test>\n"));
    assert!(
        stored.ends_with(msg),
        "LMTP must store the message unchanged"
    );
    assert!(dc.lmtp_socket.exists());
}

#[test]
fn imap_idle_sees_an_lmtp_delivery() {
    let dc = Dovecot::shared();
    let user = dc.new_user();
    let mut c = Client::new(tcp(dc.imap));
    assert!(c.line().starts_with("* OK"));
    c.imap("a", &format!("LOGIN {} {}", user.name, user.password));
    assert!(c.imap("b", "SELECT INBOX").concat().contains("* 0 EXISTS"));
    c.send("c IDLE");
    assert!(c.line().starts_with("+ "));
    let t = Instant::now();
    dc.deliver_lmtp(&user, b"Subject: idle\nMessage-ID: <idle@x>\n\nwake up\n");
    loop {
        let line = c.line();
        assert!(!line.is_empty(), "connection closed while idling");
        if line.starts_with("* 1 EXISTS") {
            break;
        }
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "IDLE took {:?}",
        t.elapsed()
    );
    c.send("DONE");
    let mut line = c.line();
    while line.starts_with("* ") {
        line = c.line(); // e.g. "* 1 RECENT"
    }
    assert!(line.starts_with("c OK"), "{line:?}");
    c.imap("d", "LOGOUT");
}

#[test]
fn a_fresh_instance_restarts_and_stops() {
    let dc = Dovecot::start();
    let user = dc.new_user();
    dc.add_message(
        &user,
        "INBOX",
        b"Subject: one\nMessage-ID: <one@x>\n\nbody\n",
    );
    let port = dc.pop3;
    dc.restart();
    assert_eq!(dc.pop3, port);
    let mut c = pop3_login(dc.pop3, &user);
    assert!(ok(c.cmd("STAT")).starts_with("+OK 1 "));
    ok(c.cmd("QUIT"));
    let t = Instant::now();
    dc.stop();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(!dc.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let dir = dc.dir.clone();
    drop(dc);
    assert!(!dir.exists(), "dropping a Dovecot removes its directory");
}

#[test]
fn fake_server_follows_a_starttls_script() {
    let fake = FakeServer::start(vec![
        Step::line("+OK fake POP3 ready"),
        Step::expect("capa"),
        Step::send("+OK\r\nSTLS\r\nUSER\r\n.\r\n"),
        Step::expect("STLS"),
        Step::line("+OK begin TLS"),
        Step::StartTls,
        Step::expect("USER "),
        Step::line("+OK"),
        Step::ExpectAny,
        Step::line("-ERR no"),
        Step::expect("QUIT"),
        Step::line("+OK bye"),
        Step::Close,
    ]);
    let mut c = Client::new(tcp(fake.port()));
    ok(c.line());
    ok(c.cmd("CAPA"));
    assert_eq!(c.multiline(), b"STLS\r\nUSER\r\n");
    ok(c.cmd("STLS"));
    let tcp = c.r.into_inner();
    let tls = fake.cert().connector().connect("localhost", tcp).unwrap();
    let mut c = Client::new(tls);
    ok(c.cmd("USER bob"));
    assert!(c.cmd("PASS hunter2").starts_with("-ERR"));
    ok(c.cmd("QUIT"));
    assert_eq!(c.line(), "", "server closed after the script");

    fake.assert_no_errors();
    assert_eq!(
        fake.transcript(),
        "CAPA\r\nSTLS\r\nUSER bob\r\nPASS hunter2\r\nQUIT\r\n"
    );
    assert!(fake.finished());
}

#[test]
fn fake_server_reports_mismatches_and_floods() {
    // A mismatch is recorded (not panicked) and ends the connection.
    let fake = FakeServer::start_many(vec![
        vec![Step::line("+OK"), Step::expect("USER"), Step::line("+OK")],
        vec![Step::line("+OK"), Step::SendForever(b"x".repeat(4096))],
    ]);
    let mut c = Client::new(tcp(fake.port()));
    ok(c.line());
    c.send("PASS secret");
    assert_eq!(c.line(), "", "server hung up after the mismatch");
    let errors = fake.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("PASS secret"), "{errors:?}");

    // The never-ending line stops when the client hangs up.
    let mut s = tcp(fake.port());
    let mut buf = vec![0u8; 1 << 20];
    s.read_exact(&mut buf).unwrap();
    assert!(buf[5..].iter().all(|&b| b == b'x'));
    drop(s);
    assert!(fake.finished());
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.errors().len(), 1);
    assert!(fake.transcript().contains("PASS secret"));
}

#[test]
fn corpus_is_deterministic_and_unique() {
    let awkward = corpus::awkward();
    assert_eq!(awkward, corpus::awkward());
    let names: Vec<&str> = awkward.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "no-final-newline",
        "long-line",
        "multipart",
        "empty-body",
        "8bit-latin1",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    let (_, no_nl) = awkward
        .iter()
        .find(|(n, _)| n == "no-final-newline")
        .unwrap();
    assert!(!no_nl.ends_with(b"\n"));
    let (_, empty) = awkward.iter().find(|(n, _)| n == "empty-body").unwrap();
    assert!(empty.ends_with(b"\n\n"));
    assert!(awkward.iter().all(|(_, m)| !m.contains(&b'\r')));

    let big = corpus::big(1_000_000);
    assert_eq!(big.len(), 1_000_000);
    assert_eq!(big, corpus::big(1_000_000));
    assert_eq!(corpus::base64(b"ab"), "YWI=");
    assert_eq!(corpus::base64(b"abcd"), "YWJjZA==");

    let msgs = corpus::realistic(200, 9);
    assert_eq!(msgs[..20], corpus::realistic(20, 9)[..]);
    assert_ne!(msgs[..20], corpus::realistic(20, 10)[..]);
    let small = msgs.iter().filter(|m| m.len() < 4096).count();
    assert!((85..=135).contains(&small), "{small} small messages");
    assert!(msgs.iter().any(|m| m.len() > 60 * 1024));

    let mut ids: Vec<Vec<u8>> = awkward
        .iter()
        .map(|(_, m)| m.clone())
        .chain(msgs)
        .chain([big])
        .map(|m| message_id(&m))
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "Message-IDs are unique");
}

fn message_id(msg: &[u8]) -> Vec<u8> {
    let at = msg
        .windows(12)
        .position(|w| w.eq_ignore_ascii_case(b"Message-ID: "))
        .expect("Message-ID header");
    let rest = &msg[at..];
    rest[..rest.iter().position(|&b| b == b'\n').unwrap()].to_vec()
}

#[test]
fn env_isolates_the_binary() {
    let env = Env::new();
    let path = env.write_config("# empty\n");
    assert_eq!(path, env.config_home.join("mailretr/config.toml"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = env.run(&["--help"]);
    out.expect_success();
    assert!(out.stdout.contains("mailretr") || out.stdout.contains("Usage"));

    let md = env.path("Maildir");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::write(md.join("new/b"), b"two").unwrap();
    std::fs::write(md.join("cur/a:2,S"), b"one").unwrap();
    assert_eq!(
        env.maildir_messages(&md),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
}

#[test]
fn helpers_strip_received_and_convert_line_endings() {
    let msg = b"Received: from a\n\tby b;\n date\nReceived: keep\nSubject: x\n\nbody\n";
    assert_eq!(
        support::strip_received(msg),
        b"Received: keep\nSubject: x\n\nbody\n".to_vec()
    );
    let crlf = b"Received: from a\r\n by b\r\nSubject: x\r\n\r\n";
    assert_eq!(
        support::strip_received(crlf),
        b"Subject: x\r\n\r\n".to_vec()
    );
    assert_eq!(
        support::strip_received(b"Subject: x\n\n"),
        b"Subject: x\n\n".to_vec()
    );
    assert_eq!(support::to_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc".to_vec());
    assert_eq!(support::to_lf(b"a\r\nb\r\n"), b"a\nb\n".to_vec());
    assert_eq!(
        support::dovecot::dot_stuff(b".a\nb\n.\nc"),
        b"..a\r\nb\r\n..\r\nc\r\n.\r\n".to_vec()
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}
