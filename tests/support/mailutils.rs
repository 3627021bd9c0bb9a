//! A real, throwaway GNU Mailutils (`imap4d` and `pop3d`, Debian's 3.15)
//! for integration tests against a server that is not Dovecot.
//!
//! Debian's Mailutils packages conflict with Dovecot's, so they are not
//! installed: `tests/run-all.sh` fetches them with `apt-get download` and
//! unpacks them with `dpkg -x` into `target/test-servers/mailutils/root`
//! (or `$MAILRETR_MAILUTILS_ROOT`), and [`Mailutils::start`] runs the
//! binaries from there with `LD_LIBRARY_PATH`. Missing binaries are a loud
//! panic naming the command to run, never a skip.
//!
//! Each instance has its own temporary directory: a config file per
//! daemon, one user `alice@localhost` in a `virtdomain` passwd file
//! (SHA-512 crypt(3) hash), whose INBOX is a Maildir the test seeds
//! directly, and the test certificate. Both daemons run as the test's own
//! user, in the foreground, on free 127.0.0.1 ports: IMAPS and POP3S
//! (implicit TLS), plus IMAP and POP3 with STARTTLS/STLS. They are killed
//! when the [`Mailutils`] is dropped, and by the kernel (`PR_SET_PDEATHSIG`)
//! if the test process dies.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::dovecot::spawn_with_parent_death_signal;

use super::fake::TestCert;

/// How long [`Mailutils::start`] waits for the listeners to greet.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times [`Mailutils::start`] picks new ports when one was taken
/// between choosing it and the daemon binding it.
const START_ATTEMPTS: usize = 3;

/// The login name of the one user (virtdomain: `name@domain`).
pub const USER: &str = "alice@localhost";
/// Its password.
pub const PASSWORD: &str = "mu-secret-1";

/// Where `tests/run-all.sh` unpacks the packages.
pub fn root() -> PathBuf {
    match std::env::var_os("MAILRETR_MAILUTILS_ROOT") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-servers/mailutils/root"),
    }
}

fn install_hint(root: &Path) -> String {
    format!(
        "\n\n\
         ************************************************************************\n\
         ** GNU Mailutils (imap4d, pop3d) is not unpacked in\n\
         **     {}\n\
         ** but tests/it/servers_real.rs needs it (the tests never skip). Its\n\
         ** Debian packages conflict with Dovecot's, so they are not installed;\n\
         ** run tests/run-all.sh (no root needed for this part), which does\n\
         ** `apt-get download` + `dpkg -x` into that directory.\n\
         ************************************************************************\n",
        root.display()
    )
}

/// A running Mailutils `imap4d` and `pop3d` on 127.0.0.1.
pub struct Mailutils {
    pub imap: u16,
    pub imaps: u16,
    pub pop3: u16,
    pub pop3s: u16,
    /// The server certificate; pass it to clients as `ca_file`.
    pub cert_pem: PathBuf,
    /// The user's INBOX, a Maildir.
    pub inbox: PathBuf,
    /// The temporary directory holding config, mail and logs.
    pub dir: PathBuf,
    root: PathBuf,
    children: Mutex<Vec<(&'static str, Child)>>,
    _tempdir: tempfile::TempDir,
}

impl Mailutils {
    /// Starts both daemons and waits until every listener greets. Panics
    /// with their output if they do not come up, and with instructions if
    /// Mailutils is not unpacked.
    pub fn start() -> Mailutils {
        let root = root();
        for bin in ["imap4d", "pop3d"] {
            if !root.join("usr/sbin").join(bin).is_file() {
                panic!("{}", install_hint(&root));
            }
        }
        let tempdir = tempfile::Builder::new()
            .prefix("mailretr-mailutils-")
            .tempdir()
            .expect("create temporary directory for Mailutils");
        let dir = tempdir.path().to_path_buf();
        for sub in ["etc", "etc/virt", "home", "home/alice"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        fs::set_permissions(dir.join("etc/virt"), fs::Permissions::from_mode(0o700)).unwrap();
        let cert = TestCert::generate(&dir.join("etc"));
        let inbox = dir.join("home/alice/INBOX");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(inbox.join(sub)).unwrap();
        }
        // virtdomain: `alice@localhost` is `alice` in the file `localhost`;
        // the mailbox is `<home>/INBOX`.
        let hash = crypt_sha512(PASSWORD);
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        fs::write(
            dir.join("etc/virt/localhost"),
            format!(
                "alice:{hash}:{uid}:{gid}::{}:/bin/sh\n",
                dir.join("home/alice").display()
            ),
        )
        .unwrap();

        let mut mu = Mailutils {
            imap: 0,
            imaps: 0,
            pop3: 0,
            pop3s: 0,
            cert_pem: cert.cert_pem.clone(),
            inbox,
            dir,
            root,
            children: Mutex::new(Vec::new()),
            _tempdir: tempdir,
        };
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            [mu.imap, mu.imaps, mu.pop3, mu.pop3s] = free_ports();
            match mu.launch(&cert) {
                Ok(()) => return mu,
                Err(e) => {
                    mu.stop();
                    let busy = e.contains("in use");
                    last_error = e;
                    if !busy {
                        break;
                    }
                }
            }
        }
        panic!("Mailutils did not start: {last_error}");
    }

    fn config(&self, cert: &TestCert, daemon: &str) -> String {
        let d = self.dir.display();
        let (plain, tls, plain_mode, extra) = match daemon {
            "imap4d" => (self.imap, self.imaps, "ondemand", ""),
            _ => (
                self.pop3,
                self.pop3s,
                "stls",
                // Never read the system's APOP database.
                "apop-database-file \"{d}/etc/apop.db\";\n",
            ),
        };
        let extra = extra.replace("{d}", &d.to_string());
        format!(
            r#"# Throwaway Mailutils {daemon} for mailretr's integration tests.
auth {{
  authentication generic;
  authorization virtdomain;
}};
virtdomain {{ passwd-dir "{d}/etc/virt"; }};
mailbox {{ mailbox-type maildir; }};
locking {{ type kernel; }};
mandatory-locking {{ enable false; }};
logging {{ syslog false; }};
tcp-wrappers {{ enable false; }};
tls-file-checks {{ key-file none; cert-file none; ca-file none; }};
tls {{
  ssl-certificate-file "{cert}";
  ssl-key-file "{key}";
}};
pidfile "{d}/{daemon}.pid";
{extra}server 127.0.0.1:{plain} {{ tls-mode {plain_mode}; }};
server 127.0.0.1:{tls} {{ tls-mode connection; }};
"#,
            cert = cert.cert_pem.display(),
            key = cert.key_pem.display(),
        )
    }

    fn launch(&self, cert: &TestCert) -> Result<(), String> {
        // The unpacked packages' multiarch library directories, e.g.
        // `usr/lib/x86_64-linux-gnu` and `lib/x86_64-linux-gnu`.
        let mut libs: Vec<String> = Vec::new();
        for base in ["usr/lib", "lib"] {
            if let Ok(entries) = fs::read_dir(self.root.join(base)) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().ends_with("-linux-gnu") {
                        libs.push(e.path().display().to_string());
                    }
                }
            }
        }
        let libs = libs.join(":");
        for daemon in ["imap4d", "pop3d"] {
            let conf = self.dir.join(format!("etc/{daemon}.conf"));
            fs::write(&conf, self.config(cert, daemon)).unwrap();
            let log = self.log_path(daemon);
            let out = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let mut cmd = Command::new(self.root.join("usr/sbin").join(daemon));
            cmd.arg("--config-file")
                .arg(&conf)
                .arg("--daemon")
                .arg("--foreground")
                .env("LD_LIBRARY_PATH", &libs)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .process_group(0);
            let child = spawn_with_parent_death_signal(cmd)
                .map_err(|e| format!("cannot run {daemon} from {}: {e}", self.root.display()))?;
            self.children.lock().unwrap().push((daemon, child));
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for (daemon, child) in self.children.lock().unwrap().iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{daemon} exited during startup with {status}\n{}",
                        self.log_tail()
                    ));
                }
            }
            match self.probe() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "Mailutils not ready after {READY_TIMEOUT:?}: {e}\n{}",
                        self.log_tail()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn probe(&self) -> Result<(), String> {
        for (what, port, greeting) in [
            ("imap", self.imap, Some("* OK")),
            ("pop3", self.pop3, Some("+OK")),
            ("imaps", self.imaps, None),
            ("pop3s", self.pop3s, None),
        ] {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .map_err(|e| format!("{what} port {port}: {e}"))?;
            if let Some(greeting) = greeting {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut line = String::new();
                BufReader::new(&stream)
                    .read_line(&mut line)
                    .map_err(|e| format!("{what} port {port}: {e}"))?;
                if !line.starts_with(greeting) {
                    return Err(format!("{what} port {port} greeted with {line:?}"));
                }
            }
            let _ = stream.shutdown(Shutdown::Both);
        }
        Ok(())
    }

    fn log_path(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.log"))
    }

    /// Both daemons' output (the last 40 lines each).
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for daemon in ["imap4d", "pop3d"] {
            let text = fs::read_to_string(self.log_path(daemon)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "--- {daemon} ---\n{}\n",
                lines[lines.len().saturating_sub(40)..].join("\n")
            ));
        }
        out
    }

    /// Drops `bytes` (LF line endings, as Mailutils' Maildir stores them)
    /// into the INBOX as a new message.
    pub fn add_message(&self, bytes: &[u8]) {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let name = format!(
            "{}.M{}P{}Q{}.mailretr-test",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let tmp = self.inbox.join("tmp").join(&name);
        fs::write(&tmp, bytes).unwrap();
        fs::rename(&tmp, self.inbox.join("new").join(&name)).unwrap();
    }

    /// The messages now in the INBOX on the server, sorted by content.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        super::maildir_messages(&self.inbox)
    }

    /// Stops both daemons (SIGTERM to each process group, SIGKILL after a
    /// grace period).
    pub fn stop(&self) {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, mut child) in children {
            let pid = child.id() as libc::pid_t;
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

impl Drop for Mailutils {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `openssl passwd -6`: a SHA-512 crypt(3) hash, as virtdomain checks it.
fn crypt_sha512(password: &str) -> String {
    let out = Command::new("openssl")
        .args(["passwd", "-6", password])
        .output()
        .expect("run openssl passwd (apt-get install openssl)");
    assert!(out.status.success(), "openssl passwd -6 failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Four distinct free loopback ports.
fn free_ports() -> [u16; 4] {
    let listeners: Vec<TcpListener> = (0..4)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    ports.try_into().unwrap()
}
