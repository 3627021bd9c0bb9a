//! A scripted fake TCP server for the peers Dovecot will not imitate:
//! servers that strip or botch STARTTLS, drop the connection mid-command,
//! send never-ending lines or otherwise hostile replies. A [`FakeServer`]
//! listens on 127.0.0.1 and serves connections one after another, each
//! following a script of [`Step`]s; everything the client sends is kept in
//! a transcript (decrypted after TLS) for assertions such as "the password
//! was never sent". Also home of [`TestCert`], the self-signed certificate
//! used by the fake server and by the real Dovecot.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long one read from the client may block before the step fails.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest line [`Step::Expect`] and friends accept from the client.
const MAX_LINE: usize = 1 << 20;
/// How long [`FakeServer::transcript`] and [`FakeServer::errors`] wait for
/// the current connection's script to finish.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// [`Step::SendForever`] gives up after this long and records an error.
const FOREVER_LIMIT: Duration = Duration::from_secs(120);

/// A self-signed certificate and its PKCS#8 private key, both PEM files,
/// made with the `openssl` command.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl TestCert {
    /// A certificate for CN=localhost with subjectAltName
    /// `DNS:localhost,IP:127.0.0.1`, written to `dir/cert.pem` and
    /// `dir/key.pem`.
    pub fn generate(dir: &Path) -> TestCert {
        Self::generate_with(dir, "localhost", "DNS:localhost,IP:127.0.0.1")
    }

    /// A certificate with the given common name and subjectAltName list
    /// (openssl syntax, e.g. `"DNS:wrong.example"`), written to
    /// `dir/cert.pem` and `dir/key.pem`. Uses a P-256 key, which is fast to
    /// make.
    pub fn generate_with(dir: &Path, cn: &str, subject_alt_names: &str) -> TestCert {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let cert_pem = dir.join("cert.pem");
        let key_pem = dir.join("key.pem");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args(["-nodes", "-days", "3650", "-subj"])
            .arg(format!("/CN={cn}"))
            .arg("-addext")
            .arg(format!("subjectAltName={subject_alt_names}"))
            .arg("-keyout")
            .arg(&key_pem)
            .arg("-out")
            .arg(&cert_pem)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "\n\n*** cannot run `openssl` ({e}); the tests need it to make \
                     certificates: apt-get install openssl ***\n\n"
                )
            });
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TestCert { cert_pem, key_pem }
    }

    /// One CN=localhost certificate per test process, made on first use and
    /// deleted when the process exits.
    pub fn shared() -> &'static TestCert {
        static SHARED: OnceLock<TestCert> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("mailretr-cert-")
                .tempdir()
                .expect("create temporary directory for the test certificate");
            let cert = TestCert::generate(dir.path());
            super::at_exit(move || drop(dir));
            cert
        })
    }

    /// The certificate in PEM form.
    pub fn cert_bytes(&self) -> Vec<u8> {
        fs::read(&self.cert_pem).unwrap()
    }

    /// A server-side TLS acceptor using this certificate.
    pub fn acceptor(&self) -> native_tls::TlsAcceptor {
        let cert = fs::read(&self.cert_pem).unwrap();
        let key = fs::read(&self.key_pem).unwrap();
        let identity = native_tls::Identity::from_pkcs8(&cert, &key).expect("load test identity");
        native_tls::TlsAcceptor::new(identity).expect("build TLS acceptor")
    }

    /// A client-side TLS connector that trusts (only additionally) this
    /// certificate as a root.
    pub fn connector(&self) -> native_tls::TlsConnector {
        let root = native_tls::Certificate::from_pem(&self.cert_bytes()).unwrap();
        native_tls::TlsConnector::builder()
            .add_root_certificate(root)
            .build()
            .expect("build TLS connector")
    }
}

/// One step of a fake server's script for one connection.
#[derive(Clone)]
pub enum Step {
    /// Send these bytes as they are.
    Send(Vec<u8>),
    /// Read one line from the client and check that it starts with this
    /// prefix (ASCII case-insensitive). A mismatch is recorded in
    /// [`FakeServer::errors`] and ends the connection.
    Expect(String),
    /// Read one line from the client, whatever it is.
    ExpectAny,
    /// Read lines up to and including a lone `.` line (SMTP/LMTP DATA).
    ExpectData,
    /// Read until the client closes the connection; anything it sends on
    /// the way goes into the transcript. The script ends here.
    ExpectClose,
    /// Close the connection (TLS close_notify first, if in TLS) and end the
    /// script.
    Close,
    /// Reset the connection (TCP RST, no TLS close_notify) and end the
    /// script.
    Abort,
    /// Send this chunk over and over until the client hangs up (a
    /// never-ending line if the chunk has no newline). Ends the script.
    SendForever(Vec<u8>),
    /// Do nothing for a while.
    Sleep(Duration),
    /// Do the server side of a TLS handshake with the server's certificate;
    /// later steps run over TLS. As the first step this is implicit TLS
    /// (POP3S/IMAPS).
    StartTls,
}

impl Step {
    /// [`Step::Send`] of raw bytes.
    pub fn send(bytes: impl AsRef<[u8]>) -> Step {
        Step::Send(bytes.as_ref().to_vec())
    }

    /// [`Step::Send`] of `text` followed by CRLF.
    pub fn line(text: &str) -> Step {
        Step::Send(format!("{text}\r\n").into_bytes())
    }

    /// [`Step::Expect`] of a prefix.
    pub fn expect(prefix: impl Into<String>) -> Step {
        Step::Expect(prefix.into())
    }
}

/// A POP3 server's side of mailretr's listing in a run that may delete
/// what it saw (`keep = false`, or retention): `LIST`, then `UIDL`.
pub fn pop3_listing(list: impl AsRef<[u8]>, uidl: impl AsRef<[u8]>) -> Vec<Step> {
    vec![
        Step::expect("LIST"),
        Step::send(list),
        Step::expect("UIDL"),
        Step::send(uidl),
    ]
}

/// The same in a run that deletes nothing it saw (`keep = true`, no
/// retention): `STAT` (the count and octets worked out from `list`, a
/// LIST answer), `UIDL`, then `LIST`. mailretr skips LIST there when
/// every message is one it delivered before and the sizes it had then add
/// up to STAT's octets: pass `new = false` for that. (To a server that
/// offers PIPELINING, a run with messages recorded asks STAT with `UIDL n`
/// and `LIST n` first: see `pop3::an_answer_about_another_message_...`.)
pub fn pop3_kept_listing(list: impl AsRef<[u8]>, uidl: impl AsRef<[u8]>, new: bool) -> Vec<Step> {
    let list = list.as_ref();
    let (mut count, mut octets) = (0u64, 0u64);
    for line in String::from_utf8_lossy(list).lines().skip(1) {
        let mut parts = line.split_whitespace();
        if let (Some(_), Some(size)) = (parts.next(), parts.next()) {
            count += 1;
            octets = octets.saturating_add(size.parse().unwrap_or(0));
        }
    }
    let mut steps = vec![
        Step::expect("STAT"),
        Step::line(&format!("+OK {count} {octets}")),
        Step::expect("UIDL"),
        Step::send(uidl),
    ];
    if new {
        steps.extend([Step::expect("LIST"), Step::send(list)]);
    }
    steps
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned();
            if b.len() > 60 {
                format!("{s:?}...")
            } else {
                format!("{s:?}")
            }
        };
        match self {
            Step::Send(b) => write!(f, "Send({})", short(b)),
            Step::Expect(p) => write!(f, "Expect({p:?})"),
            Step::ExpectAny => f.write_str("ExpectAny"),
            Step::ExpectData => f.write_str("ExpectData"),
            Step::ExpectClose => f.write_str("ExpectClose"),
            Step::Close => f.write_str("Close"),
            Step::Abort => f.write_str("Abort"),
            Step::SendForever(b) => write!(f, "SendForever({})", short(b)),
            Step::Sleep(d) => write!(f, "Sleep({d:?})"),
            Step::StartTls => f.write_str("StartTls"),
        }
    }
}

#[derive(Default)]
struct State {
    /// What the client sent, one entry per accepted connection.
    transcripts: Vec<Vec<u8>>,
    errors: Vec<String>,
    /// Whether a connection is being served right now.
    active: bool,
    /// Whether every script has been served (or the server stopped).
    finished: bool,
    /// A handle on the current connection so `Drop` can unblock the thread.
    current: Option<TcpStream>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self, msg: String) {
        self.lock().errors.push(msg);
    }

    fn record(&self, bytes: &[u8]) {
        if let Some(t) = self.lock().transcripts.last_mut() {
            t.extend_from_slice(bytes);
        }
    }
}

/// A fake server on 127.0.0.1 serving connections one at a time, each with
/// its own script, on a background thread.
pub struct FakeServer {
    port: u16,
    shared: Arc<Shared>,
    cert: TestCert,
}

impl FakeServer {
    /// Serves ONE connection following `script`, using
    /// [`TestCert::shared`] for [`Step::StartTls`].
    pub fn start(script: Vec<Step>) -> FakeServer {
        Self::start_many(vec![script])
    }

    /// Serves one connection per script, in order (the second connection is
    /// accepted once the first script has ended, and so on).
    pub fn start_many(scripts: Vec<Vec<Step>>) -> FakeServer {
        Self::start_many_with_cert(scripts, TestCert::shared())
    }

    /// Like [`FakeServer::start_many`] with a certificate of your own (for
    /// example one for the wrong host name).
    pub fn start_many_with_cert(scripts: Vec<Vec<Step>>, cert: &TestCert) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let acceptor = if scripts
            .iter()
            .flatten()
            .any(|s| matches!(s, Step::StartTls))
        {
            Some(cert.acceptor())
        } else {
            None
        };
        let thread_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name(format!("fake-server-{port}"))
            .spawn(move || serve(listener, scripts, acceptor, &thread_shared))
            .expect("spawn fake server thread");
        FakeServer {
            port,
            shared,
            cert: cert.clone(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The certificate [`Step::StartTls`] presents; pass `cert_pem` to the
    /// client as its CA file.
    pub fn cert(&self) -> &TestCert {
        &self.cert
    }

    /// Waits (up to a few seconds) until no connection is being served, so
    /// that transcripts and errors are complete after the client has exited.
    /// Returns whether the server became idle in time.
    pub fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        while st.active {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Everything the client sent on every connection so far (decrypted
    /// after STARTTLS), lossily decoded as UTF-8. Waits for the current
    /// connection's script to end first.
    pub fn transcript(&self) -> String {
        self.transcripts().concat()
    }

    /// Like [`FakeServer::transcript`], one string per connection.
    pub fn transcripts(&self) -> Vec<String> {
        self.settle(SETTLE_TIMEOUT);
        self.shared
            .lock()
            .transcripts
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect()
    }

    /// Everything the client sent, as raw bytes.
    pub fn transcript_bytes(&self) -> Vec<u8> {
        self.settle(SETTLE_TIMEOUT);
        self.shared.lock().transcripts.concat()
    }

    /// How many connections have been accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().transcripts.len()
    }

    /// Whether every script has been served to its end (or given up on).
    pub fn finished(&self) -> bool {
        self.settle(SETTLE_TIMEOUT);
        self.shared.lock().finished
    }

    /// Mismatches and failures seen while following the scripts (each
    /// prefixed with the connection and step). Waits for the current
    /// connection's script to end first.
    pub fn errors(&self) -> Vec<String> {
        self.settle(SETTLE_TIMEOUT);
        self.shared.lock().errors.clone()
    }

    /// Panics, showing the errors and the transcript, if any script step
    /// failed.
    #[track_caller]
    pub fn assert_no_errors(&self) {
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "fake server errors:\n  {}\n--- transcript ---\n{}",
            errors.join("\n  "),
            self.transcript()
        );
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let current = {
            let mut st = self.shared.lock();
            st.stop = true;
            st.current.take()
        };
        if let Some(conn) = current {
            let _ = conn.shutdown(Shutdown::Both);
        }
        // Wake the thread if it is waiting in accept().
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    listener: TcpListener,
    scripts: Vec<Vec<Step>>,
    acceptor: Option<native_tls::TlsAcceptor>,
    shared: &Shared,
) {
    let total = scripts.len();
    for (n, script) in scripts.into_iter().enumerate() {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                shared.error(format!("connection {}: accept failed: {e}", n + 1));
                break;
            }
        };
        {
            let mut st = shared.lock();
            if st.stop {
                break;
            }
            st.transcripts.push(Vec::new());
            st.active = true;
            st.current = stream.try_clone().ok();
        }
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            io: Io::Plain(stream),
            buf: Vec::new(),
            shared,
        };
        conn.run(n + 1, script, acceptor.as_ref());
        let mut st = shared.lock();
        st.active = false;
        st.current = None;
        // Set together with `active` so that a waiter never sees the last
        // connection over but the server not yet finished.
        st.finished = n + 1 == total;
        shared.changed.notify_all();
    }
    let mut st = shared.lock();
    st.finished = true;
    st.active = false;
    shared.changed.notify_all();
}

enum Io {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
    Gone,
}

impl Io {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Io::Plain(s) => Some(s),
            Io::Tls(s) => Some(s.get_ref()),
            Io::Gone => None,
        }
    }
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => s.read(buf),
            Io::Gone => Ok(0),
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.write(buf),
            Io::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
            Io::Gone => Ok(()),
        }
    }
}

/// Why a step ended the script early.
enum Stop {
    /// The script is over by design (Close, Abort, SendForever, ...).
    Done,
    /// Something went wrong; the message goes into the errors.
    Failed(String),
}

struct Conn<'a> {
    io: Io,
    /// Bytes read from the client but not yet consumed by a step.
    buf: Vec<u8>,
    shared: &'a Shared,
}

impl Conn<'_> {
    fn run(
        &mut self,
        conn_no: usize,
        script: Vec<Step>,
        acceptor: Option<&native_tls::TlsAcceptor>,
    ) {
        let mut outcome = Ok(());
        for (i, step) in script.iter().enumerate() {
            match self.step(step, acceptor) {
                Ok(()) => {}
                Err(Stop::Done) => break,
                Err(Stop::Failed(msg)) => {
                    outcome = Err(format!(
                        "connection {conn_no}, step {} {step:?}: {msg}",
                        i + 1
                    ));
                    break;
                }
            }
        }
        if let Err(msg) = outcome {
            self.shared.error(msg);
        }
        self.close();
    }

    fn step(
        &mut self,
        step: &Step,
        acceptor: Option<&native_tls::TlsAcceptor>,
    ) -> Result<(), Stop> {
        match step {
            Step::Send(bytes) => self.send(bytes),
            Step::Expect(prefix) => {
                let line = self.expect_line()?;
                let text = trim_eol(&line);
                let want = prefix.as_bytes();
                if text.len() >= want.len() && text[..want.len()].eq_ignore_ascii_case(want) {
                    Ok(())
                } else {
                    Err(Stop::Failed(format!(
                        "client sent {:?}",
                        String::from_utf8_lossy(text)
                    )))
                }
            }
            Step::ExpectAny => self.expect_line().map(drop),
            Step::ExpectData => loop {
                let line = self.expect_line()?;
                if trim_eol(&line) == b"." {
                    return Ok(());
                }
            },
            Step::ExpectClose => {
                let mut chunk = [0u8; 8192];
                loop {
                    match self.fill(&mut chunk) {
                        Ok(0) => return Err(Stop::Done),
                        Ok(_) => {}
                        // A client that closed with our last answer
                        // unread (POP3 QUIT after a session that deleted
                        // nothing is not waited for) is reset by its
                        // kernel: that is a close too.
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            return Err(Stop::Done)
                        }
                        Err(e) => return Err(Stop::Failed(format!("waiting for close: {e}"))),
                    }
                }
            }
            Step::Close => {
                self.close();
                Err(Stop::Done)
            }
            Step::Abort => {
                if let Some(tcp) = self.io.tcp() {
                    set_linger_zero(tcp);
                }
                self.io = Io::Gone;
                Err(Stop::Done)
            }
            Step::SendForever(chunk) => {
                let start = Instant::now();
                while start.elapsed() < FOREVER_LIMIT {
                    if self.io.write_all(chunk).is_err() {
                        return Err(Stop::Done);
                    }
                }
                Err(Stop::Failed(format!(
                    "client still reading after {FOREVER_LIMIT:?}"
                )))
            }
            Step::Sleep(d) => {
                thread::sleep(*d);
                Ok(())
            }
            Step::StartTls => self.start_tls(acceptor),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.io
            .write_all(bytes)
            .and_then(|()| self.io.flush())
            .map_err(|e| Stop::Failed(format!("write failed: {e}")))
    }

    /// Reads more from the client into `buf`, recording it in the
    /// transcript; returns how much was read (0 at end of stream).
    fn fill(&mut self, chunk: &mut [u8]) -> io::Result<usize> {
        let n = self.io.read(chunk)?;
        self.shared.record(&chunk[..n]);
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line from the client, with its line ending.
    fn expect_line(&mut self) -> Result<Vec<u8>, Stop> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=i).collect());
            }
            if self.buf.len() > MAX_LINE {
                return Err(Stop::Failed(format!(
                    "client sent a line longer than {MAX_LINE} bytes"
                )));
            }
            match self.fill(&mut chunk) {
                Ok(0) if self.buf.is_empty() => {
                    return Err(Stop::Failed("client closed the connection".into()))
                }
                Ok(0) => {
                    return Err(Stop::Failed(format!(
                        "client closed the connection after a partial line {:?}",
                        String::from_utf8_lossy(&self.buf)
                    )))
                }
                Ok(_) => {}
                Err(e) => return Err(Stop::Failed(format!("read failed: {e}"))),
            }
        }
    }

    fn start_tls(&mut self, acceptor: Option<&native_tls::TlsAcceptor>) -> Result<(), Stop> {
        if !self.buf.is_empty() {
            let early = std::mem::take(&mut self.buf);
            return Err(Stop::Failed(format!(
                "client sent {:?} before the TLS handshake",
                String::from_utf8_lossy(&early)
            )));
        }
        let tcp = match std::mem::replace(&mut self.io, Io::Gone) {
            Io::Plain(tcp) => tcp,
            other => {
                self.io = other;
                return Err(Stop::Failed(
                    "TLS is already on (or connection gone)".into(),
                ));
            }
        };
        let acceptor = acceptor.expect("acceptor is built when a script has StartTls");
        match acceptor.accept(tcp) {
            Ok(tls) => {
                self.io = Io::Tls(Box::new(tls));
                Ok(())
            }
            Err(e) => Err(Stop::Failed(format!("TLS handshake failed: {e}"))),
        }
    }

    fn close(&mut self) {
        match std::mem::replace(&mut self.io, Io::Gone) {
            Io::Plain(tcp) => {
                let _ = tcp.shutdown(Shutdown::Both);
            }
            Io::Tls(mut tls) => {
                let _ = tls.shutdown();
                let _ = tls.get_ref().shutdown(Shutdown::Both);
            }
            Io::Gone => {}
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Makes closing `tcp` send a RST instead of a FIN.
fn set_linger_zero(tcp: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized, initialised option.
    unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// An IMAPS session with an empty INBOX for a client that logs in with
/// `AUTHENTICATE mech` and the initial response `ir` (SASL-IR), selects
/// INBOX, finds nothing and logs out: for tests about how it logs in.
pub fn imap_empty_session(mech: &str, ir: &str) -> Vec<Step> {
    vec![
        Step::StartTls,
        Step::line(&format!(
            "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH={mech}] fake"
        )),
        Step::expect(format!("a1 AUTHENTICATE {mech} {ir}")),
        Step::line("a1 OK logged in"),
        Step::expect("a2 CAPABILITY"),
        Step::line("* CAPABILITY IMAP4rev1"),
        Step::line("a2 OK"),
        // SELECT and the size listing, sent together.
        Step::expect("ab1 SELECT \"INBOX\""),
        Step::expect("ab2 UID FETCH 1:* (UID RFC822.SIZE)"),
        Step::line("* 0 EXISTS"),
        Step::line("* OK [UIDVALIDITY 5] ok"),
        Step::line("* OK [UIDNEXT 1] ok"),
        Step::line("ab1 OK [READ-WRITE] selected"),
        Step::line("ab2 OK nothing"),
        Step::expect("a3 LOGOUT"),
        Step::line("* BYE"),
        Step::line("a3 OK"),
        Step::ExpectClose,
    ]
}
