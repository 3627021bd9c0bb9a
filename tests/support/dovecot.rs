//! A real, throwaway Dovecot for integration tests. [`Dovecot::start`] writes
//! a private configuration into a temporary directory (passwd-file users,
//! Maildir homes, a fresh self-signed certificate) and runs `dovecot -F` as a
//! child process listening only on 127.0.0.1 with POP3, POP3S, IMAP, IMAPS
//! and LMTP on free ports, plus LMTP on a unix socket. Tests create users on
//! the fly, drop messages straight into Maildirs, deliver through LMTP, and
//! inspect what is left on the server.
//!
//! Works as root (login processes run as `dovenull`, internal ones as
//! `dovecot`, mail is owned by the `mail` user) and as an ordinary user
//! (everything runs as that user). Dovecot is killed when the [`Dovecot`]
//! is dropped, and by the kernel (`PR_SET_PDEATHSIG`) if the test process
//! dies. Missing Dovecot is a loud panic, never a silent skip.

use std::ffi::{CStr, CString};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::fake::TestCert;

/// How long [`Dovecot::start`] waits for every listener to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How many times [`Dovecot::start`] picks new ports when one was taken
/// between choosing it and Dovecot binding it.
const START_ATTEMPTS: usize = 3;

const INSTALL_HINT: &str = "\n\n\
    ************************************************************************\n\
    ** Dovecot is not installed, but mailretr's integration tests need a\n\
    ** real Dovecot (they never skip). Install it (Debian/Ubuntu):\n\
    **\n\
    **     apt-get install dovecot-imapd dovecot-pop3d dovecot-lmtpd\n\
    **\n\
    ** or run tests/run-all.sh as root, which installs it.\n\
    ************************************************************************\n";

/// A mailbox account on a test [`Dovecot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name, e.g. `user7`.
    pub name: String,
    /// The plaintext password, e.g. `secret-7`.
    pub password: String,
    /// The home directory; mail lives in `home/Maildir`.
    pub home: PathBuf,
}

impl User {
    /// The user's root Maildir (INBOX).
    pub fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }

    /// `name@localhost`, an address Dovecot's LMTP accepts for this user.
    pub fn address(&self) -> String {
        format!("{}@localhost", self.name)
    }
}

/// Who owns what: the accounts Dovecot runs as and the owner of mail files.
#[derive(Debug, Clone)]
struct Identity {
    root: bool,
    login_user: String,
    internal_user: String,
    internal_group: String,
    mail_uid: u32,
    mail_gid: u32,
}

/// A running Dovecot instance on 127.0.0.1 with its own temporary directory.
pub struct Dovecot {
    pub pop3: u16,
    pub pop3s: u16,
    pub imap: u16,
    pub imaps: u16,
    pub lmtp: u16,
    /// LMTP on a unix socket.
    pub lmtp_socket: PathBuf,
    /// Dovecot's log file (all processes log here).
    pub log: PathBuf,
    /// The server certificate (self-signed, CN=localhost, SAN
    /// DNS:localhost and IP:127.0.0.1); pass it to clients as `ca_file`.
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// The temporary directory holding config, homes, sockets and logs.
    pub dir: PathBuf,
    /// Whether the harness runs as root (Dovecot then drops privileges and
    /// mail files belong to the `mail` user).
    pub as_root: bool,
    /// uid and gid owning the users' mail.
    pub mail_owner: (u32, u32),
    /// Appended to the generated config (`start_with`).
    extra_config: String,
    binary: PathBuf,
    conf: PathBuf,
    /// One passwd-file per user, `etc/users/<name>`.
    users_dir: PathBuf,
    stderr: PathBuf,
    identity: Identity,
    child: Mutex<Option<Child>>,
    next_user: AtomicUsize,
    tempdir: Mutex<Option<tempfile::TempDir>>,
}

impl Dovecot {
    /// Starts a fresh Dovecot and waits until every listener answers.
    /// Panics (with the tail of Dovecot's log) if it does not come up, and
    /// with installation instructions if Dovecot is not installed.
    pub fn start() -> Dovecot {
        Dovecot::start_with("")
    }

    /// Like [`start`](Self::start), with `extra` appended to the config
    /// (e.g. [`QUOTA_CONFIG`]): for tests that need a server unlike the
    /// shared one, without changing it for everybody else.
    pub fn start_with(extra: &str) -> Dovecot {
        let binary = find_dovecot();
        let identity = identity();
        let tempdir = tempfile::Builder::new()
            .prefix("mailretr-dovecot-")
            .tempdir_in(short_tmp())
            .expect("create temporary directory for Dovecot");
        let dir = tempdir.path().to_path_buf();
        // Dovecot's unprivileged processes must be able to traverse it.
        let mode = if identity.root { 0o755 } else { 0o700 };
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
        // Dovecot wants a world-readable base_dir (it fixes it and warns).
        for (sub, mode) in [("etc", mode), ("run", 0o755), ("home", mode)] {
            fs::create_dir(dir.join(sub)).unwrap();
            fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(mode)).unwrap();
        }
        let cert = TestCert::generate(&dir.join("etc"));
        let users_dir = dir.join("etc/users");
        fs::create_dir(&users_dir).unwrap();
        fs::set_permissions(&users_dir, fs::Permissions::from_mode(mode)).unwrap();

        let mut dovecot = Dovecot {
            pop3: 0,
            pop3s: 0,
            imap: 0,
            imaps: 0,
            lmtp: 0,
            lmtp_socket: dir.join("run/lmtp"),
            log: dir.join("dovecot.log"),
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
            as_root: identity.root,
            mail_owner: (identity.mail_uid, identity.mail_gid),
            binary,
            conf: dir.join("etc/dovecot.conf"),
            users_dir,
            stderr: dir.join("dovecot.stderr"),
            identity,
            child: Mutex::new(None),
            next_user: AtomicUsize::new(1),
            extra_config: extra.to_string(),
            dir,
            tempdir: Mutex::new(Some(tempdir)),
        };

        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let [pop3, pop3s, imap, imaps, lmtp] = free_ports();
            (
                dovecot.pop3,
                dovecot.pop3s,
                dovecot.imap,
                dovecot.imaps,
                dovecot.lmtp,
            ) = (pop3, pop3s, imap, imaps, lmtp);
            write_file(&dovecot.conf, dovecot.config().as_bytes(), 0o644);
            match dovecot.launch() {
                Ok(()) => return dovecot,
                Err(e) => {
                    let busy = e.contains("Address already in use");
                    last_error = e;
                    if !busy {
                        break;
                    }
                }
            }
        }
        panic!("Dovecot did not start: {last_error}");
    }

    /// One Dovecot per test process, started on first use and stopped (its
    /// directory removed) when the process exits. Tests share it safely by
    /// each using their own [`Dovecot::new_user`].
    pub fn shared() -> &'static Dovecot {
        static SHARED: OnceLock<Dovecot> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dovecot = Dovecot::start();
            super::at_exit(|| {
                if let Some(d) = SHARED.get() {
                    d.stop();
                    d.cleanup_dir();
                }
            });
            dovecot
        })
    }

    /// Creates a new user `userN` with password `secret-N` and an empty
    /// home; the user can log in at once.
    pub fn new_user(&self) -> User {
        let n = self.next_user.fetch_add(1, Ordering::SeqCst);
        self.add_user(&format!("user{n}"), &format!("secret-{n}"))
    }

    /// Creates a new unique user with the given password (which must not
    /// contain `:` or a line break, the passwd-file's separators).
    pub fn new_user_with_password(&self, password: &str) -> User {
        let n = self.next_user.fetch_add(1, Ordering::SeqCst);
        self.add_user(&format!("user{n}"), password)
    }

    fn add_user(&self, name: &str, password: &str) -> User {
        assert!(
            !password.contains([':', '\n', '\r']),
            "a passwd-file password cannot contain ':' or line breaks: {password:?}"
        );
        let home = self.dir.join("home").join(name);
        fs::create_dir(&home).unwrap_or_else(|e| panic!("create {}: {e}", home.display()));
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        self.chown(&home);
        let (uid, gid) = self.mail_owner;
        let line = format!(
            "{name}:{{PLAIN}}{password}:{uid}:{gid}::{}::\n",
            home.display()
        );
        // Written under a temporary name and renamed, so Dovecot never
        // reads half a file.
        let tmp = self.users_dir.join(format!(".{name}.tmp"));
        write_file(&tmp, line.as_bytes(), 0o644);
        fs::rename(&tmp, self.users_dir.join(name)).unwrap();
        User {
            name: name.to_string(),
            password: password.to_string(),
            home,
        }
    }

    /// The Maildir directory of `folder` for `user`: `INBOX` is the root
    /// Maildir, anything else a Maildir++ folder (`A/B` is `.A.B`).
    pub fn folder_dir(&self, user: &User, folder: &str) -> PathBuf {
        if folder.eq_ignore_ascii_case("INBOX") {
            user.maildir()
        } else {
            user.maildir()
                .join(format!(".{}", folder.replace('/', ".")))
        }
    }

    /// Drops `bytes` into `user`'s `folder` as a new message (written to
    /// `tmp/`, then renamed into `new/`), creating and subscribing the
    /// folder if needed. Bytes are stored as given; Dovecot expects LF line
    /// endings.
    pub fn add_message(&self, user: &User, folder: &str, bytes: &[u8]) {
        let root = user.maildir();
        self.ensure_maildir(&root, false);
        let dir = self.folder_dir(user, folder);
        if dir != root {
            self.ensure_maildir(&dir, true);
            self.subscribe(user, folder);
        }
        let name = unique_name();
        let tmp = dir.join("tmp").join(&name);
        write_file(&tmp, bytes, 0o600);
        self.chown(&tmp);
        fs::rename(&tmp, dir.join("new").join(&name)).unwrap();
    }

    /// The messages now in `user`'s `folder` on the server (`new/` and
    /// `cur/`), sorted by content.
    pub fn messages(&self, user: &User, folder: &str) -> Vec<Vec<u8>> {
        super::maildir_messages(&self.folder_dir(user, folder))
    }

    /// The folders that exist for `user` besides INBOX, as IMAP names
    /// (`A/B`), sorted.
    pub fn folders(&self, user: &User) -> Vec<String> {
        let mut names: Vec<String> = match fs::read_dir(user.maildir()) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix('.')
                        .filter(|n| !n.is_empty() && *n != ".")
                        .map(|n| n.replace('.', "/"))
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Delivers `bytes` (LF or CRLF line endings) to `user` through
    /// Dovecot's LMTP over TCP, so running IMAP sessions (IDLE) see it
    /// arrive. Dovecot adds a `Return-Path:` header on top; this instance is
    /// configured not to add `Received:` or `Delivered-To:`.
    pub fn deliver_lmtp(&self, user: &User, bytes: &[u8]) {
        let stream = TcpStream::connect(("127.0.0.1", self.lmtp))
            .unwrap_or_else(|e| panic!("connect to LMTP port {}: {e}", self.lmtp));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        if let Err(e) = lmtp_deliver(stream, &user.address(), bytes) {
            panic!(
                "LMTP delivery to {} failed: {e}\n{}",
                user.name,
                self.log_tail(20)
            );
        }
    }

    /// Stops Dovecot (SIGTERM to its process group, SIGKILL after a grace
    /// period) and waits for it. Does nothing if it is not running.
    pub fn stop(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            stop_process_group(&mut child);
        }
    }

    /// Stops and starts Dovecot again with the same configuration, ports,
    /// users and mail.
    pub fn restart(&self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("Dovecot did not restart: {e}");
        }
    }

    /// Whether the Dovecot master process is still running.
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of Dovecot's log and of its stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let tail = |p: &Path| {
            let text = fs::read_to_string(p).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        };
        format!(
            "--- {} (last {lines} lines) ---\n{}\n--- {} ---\n{}",
            self.log.display(),
            tail(&self.log),
            self.stderr.display(),
            tail(&self.stderr)
        )
    }

    /// Runs the master process and waits for the listeners.
    fn launch(&self) -> Result<(), String> {
        let _ = fs::remove_file(self.dir.join("run/master.pid"));
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .unwrap();
        let mut cmd = Command::new(&self.binary);
        cmd.arg("-F")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().unwrap())
            .stderr(stderr)
            .process_group(0);
        let child = spawn_with_parent_death_signal(cmd)
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        match self.wait_ready() {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stop();
                Err(format!("{e}\n{}", self.log_tail(40)))
            }
        }
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            {
                let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(format!("dovecot exited during startup with {status}"));
                }
            }
            let last = match self.probe() {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("dovecot not ready after {READY_TIMEOUT:?}: {last}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Checks every listener once: TCP ports accept, POP3/IMAP/LMTP greet.
    fn probe(&self) -> Result<(), String> {
        let greets = [
            ("pop3", self.pop3, Some("+OK")),
            ("imap", self.imap, Some("* OK")),
            ("lmtp", self.lmtp, Some("220")),
            ("pop3s", self.pop3s, None),
            ("imaps", self.imaps, None),
        ];
        for (what, port, greeting) in greets {
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
        if !self.lmtp_socket.exists() {
            return Err(format!("{} does not exist", self.lmtp_socket.display()));
        }
        Ok(())
    }

    fn config(&self) -> String {
        let mut config = self.base_config();
        config.push_str(&self.extra_config);
        // COMPRESS=DEFLATE (RFC 4978) for every IMAP test: last, so that
        // it adds to whatever plugins the extra config gave IMAP.
        config.push_str(IMAP_ZLIB_CONFIG);
        config
    }

    /// The config file (for running Dovecot's `imap` binary directly, as
    /// a PREAUTH tunnel does).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    fn base_config(&self) -> String {
        let d = self.dir.display();
        let id = &self.identity;
        format!(
            r#"# Throwaway Dovecot for mailretr's integration tests.
base_dir = {d}/run
state_dir = {d}/run/state
log_path = {d}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}

disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 apop scram-sha-256
auth_verbose = yes
# Failed logins are part of the tests; do not slow everybody down.
auth_failure_delay = 0
# One passwd-file per user: Dovecot stats a passwd-file at most once a
# second, so users appended to a single file can stay invisible for up to
# a second, while a per-user file is read on the user's first lookup.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {users}/%n
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {users}/%n
}}

mail_location = maildir:~/Maildir
# Folder names with a `.` (Maildir++'s separator) or a `\` are stored
# escaped (`\2e`, `\5c`), as mailretr's `subfolders = "maildir++"` writes
# them.
mail_plugins = $mail_plugins listescape
mail_fsync = never
mail_max_userip_connections = 200
namespace inbox {{
  inbox = yes
  separator = /
}}
pop3_uidl_format = %08Xu%08Xv

lmtp_add_received_header = no
lmtp_hdr_delivery_address = none
protocol lmtp {{
  postmaster_address = postmaster@localhost
}}

service imap-login {{
  chroot =
  service_count = 0
  process_min_avail = 1
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  service_count = 0
  process_min_avail = 1
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
  # No anvil-auth-penalty socket: the auth process then skips the
  # per-IP penalty (up to 15 s per login) that failed logins would cause.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0666
  }}
}}
"#,
            internal_user = id.internal_user,
            internal_group = id.internal_group,
            login_user = id.login_user,
            cert = self.cert_pem.display(),
            key = self.key_pem.display(),
            users = self.users_dir.display(),
            imap = self.imap,
            imaps = self.imaps,
            pop3 = self.pop3,
            pop3s = self.pop3s,
            lmtp = self.lmtp,
        )
    }

    /// Creates a Maildir (and its tmp/new/cur) if missing, owned by the
    /// mail owner.
    fn ensure_maildir(&self, dir: &Path, subfolder: bool) {
        for d in [
            dir.to_path_buf(),
            dir.join("tmp"),
            dir.join("new"),
            dir.join("cur"),
        ] {
            match fs::create_dir(&d) {
                Ok(()) => {
                    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
                    self.chown(&d);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("create {}: {e}", d.display()),
            }
        }
        let marker = dir.join("maildirfolder");
        if subfolder && !marker.exists() {
            write_file(&marker, b"", 0o600);
            self.chown(&marker);
        }
    }

    /// Adds `folder` to the user's Maildir++ `subscriptions` file (Dovecot's
    /// version 2 format: a `V\t2` header, hierarchy separated by tabs).
    fn subscribe(&self, user: &User, folder: &str) {
        static LOCK: Mutex<()> = Mutex::new(());
        let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let path = user.maildir().join("subscriptions");
        let name = folder.replace('/', "\t");
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        if text.is_empty() {
            text.push_str("V\t2\n\n");
        }
        if text.lines().any(|l| l == name) {
            return;
        }
        text.push_str(&name);
        text.push('\n');
        let tmp = user.maildir().join("subscriptions.mailretr-tmp");
        write_file(&tmp, text.as_bytes(), 0o600);
        self.chown(&tmp);
        fs::rename(&tmp, &path).unwrap();
    }

    /// Removes the temporary directory, or keeps it (and says where) when
    /// `MAILRETR_TEST_KEEP` is set, for post-mortems.
    pub fn cleanup_dir(&self) {
        let dir = self
            .tempdir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(dir) = dir {
            if std::env::var_os("MAILRETR_TEST_KEEP").is_some() {
                eprintln!("keeping Dovecot directory {}", dir.keep().display());
            }
        }
    }

    fn chown(&self, path: &Path) {
        if self.as_root {
            let (uid, gid) = self.mail_owner;
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
    }
}

/// Offered by every test Dovecot: `COMPRESS=DEFLATE` after login.
const IMAP_ZLIB_CONFIG: &str = "
protocol imap {
  mail_plugins = $mail_plugins imap_zlib
}
";

/// For [`Dovecot::start_with`]: the quota plugins (IMAP QUOTA, RFC 9208)
/// with a 1 MiB storage quota for every user.
pub const QUOTA_CONFIG: &str = "
mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=1M
}
";

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
        self.cleanup_dir();
    }
}

/// Talks LMTP to deliver one message to one recipient.
fn lmtp_deliver(stream: TcpStream, rcpt: &str, bytes: &[u8]) -> Result<(), String> {
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut reply = |expect: &str| -> Result<String, String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line.is_empty() {
                return Err(format!("connection closed; got so far {all:?}"));
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if all.starts_with(expect) {
            Ok(all)
        } else {
            Err(format!("expected {expect}, got {all:?}"))
        }
    };
    let mut send = |data: &[u8]| writer.write_all(data).map_err(|e| e.to_string());
    reply("220")?;
    send(b"LHLO localhost\r\n")?;
    reply("250")?;
    send(b"MAIL FROM:<sender@example.test>\r\n")?;
    reply("250")?;
    send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes())?;
    reply("250")?;
    send(b"DATA\r\n")?;
    reply("354")?;
    send(&dot_stuff(bytes))?;
    reply("250")?;
    send(b"QUIT\r\n")?;
    let _ = reply("221");
    Ok(())
}

/// CRLF line endings, dot-stuffing and the terminating `.` line.
pub fn dot_stuff(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 30 + 8);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in bytes {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// The dovecot binary: `$MAILRETR_TEST_DOVECOT`, `$PATH`, or the sbin
/// directories (which ordinary users often lack in `$PATH`).
fn find_dovecot() -> PathBuf {
    if let Some(p) = std::env::var_os("MAILRETR_TEST_DOVECOT") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MAILRETR_TEST_DOVECOT={} is not a file{INSTALL_HINT}",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("dovecot"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn identity() -> Identity {
    // SAFETY: plain getters without preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    if uid == 0 {
        let need = |name: &str| {
            lookup_user(name).unwrap_or_else(|| {
                panic!(
                    "running as root, but there is no `{name}` user; it comes with the Dovecot \
                     packages (apt-get install dovecot-imapd dovecot-pop3d dovecot-lmtpd)"
                )
            })
        };
        need("dovenull");
        let (_, internal_gid) = need("dovecot");
        let (mail_uid, mail_gid) = need("mail");
        Identity {
            root: true,
            login_user: "dovenull".into(),
            internal_user: "dovecot".into(),
            internal_group: group_name(internal_gid).unwrap_or_else(|| "dovecot".into()),
            mail_uid,
            mail_gid,
        }
    } else {
        let me = user_name(uid)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| {
                panic!("uid {uid} has no user name; Dovecot needs one to run as this user")
            });
        let group = group_name(gid).unwrap_or_else(|| {
            panic!("gid {gid} has no group name; Dovecot needs one to run as this user")
        });
        Identity {
            root: false,
            login_user: me.clone(),
            internal_user: me,
            internal_group: group,
            mail_uid: uid,
            mail_gid: gid,
        }
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; `buf` outlives it.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    (rc == 0 && !out.is_null()).then_some((pw.pw_uid, pw.pw_gid))
}

fn user_name(uid: u32) -> Option<String> {
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`; pw_name points into `buf`.
    unsafe {
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
        (rc == 0 && !out.is_null())
            .then(|| CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned())
    }
}

fn group_name(gid: u32) -> Option<String> {
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; gr_name points into `buf`.
    unsafe {
        let rc = libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut out);
        (rc == 0 && !out.is_null())
            .then(|| CStr::from_ptr(gr.gr_name).to_string_lossy().into_owned())
    }
}

/// The temporary directory, unless its path is so long that Dovecot's
/// unix sockets would exceed the 108-byte `sun_path` limit.
fn short_tmp() -> PathBuf {
    let tmp = std::env::temp_dir();
    if tmp.as_os_str().len() <= 48 {
        tmp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Five distinct free loopback ports (all bound at once so they differ).
fn free_ports() -> [u16; 5] {
    let listeners: Vec<TcpListener> = (0..5)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    ports.try_into().unwrap()
}

/// A Maildir file name unique within this machine.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!(
        "{}.M{}P{}Q{}.mailretr-test",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` so that it gets SIGTERM when the test process dies.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
/// not the process, and every test runs on its own short-lived thread. So
/// all spawning happens on one helper thread that lives as long as the
/// process.
pub fn spawn_with_parent_death_signal(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn the process-spawner thread");
        tx
    });
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner
        .send((cmd, tx))
        .expect("process-spawner thread is gone");
    rx.recv().expect("process-spawner thread is gone")
}

/// Terminates the process group led by `child` and reaps `child`.
fn stop_process_group(child: &mut Child) {
    let pid = child.id() as libc::pid_t;
    // SIGTERM to the whole group: the master alone would wait about a
    // second for its children; this way stopping takes milliseconds.
    // SAFETY: signalling our own child's process group.
    unsafe { libc::kill(-pid, libc::SIGTERM) };
    if !wait_exit_nowait(pid, Duration::from_secs(10)) {
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        wait_exit_nowait(pid, Duration::from_secs(10));
    }
    // The unreaped master still holds the group id, so this cannot hit an
    // unrelated process: kill whatever Dovecot children are left.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let _ = child.wait();
}

/// Waits until `pid` has exited, without reaping it.
fn wait_exit_nowait(pid: libc::pid_t, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        // SAFETY: waitid with a zeroed siginfo_t to fill in.
        let exited = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let rc = libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            rc != 0 || info.si_pid() != 0
        };
        if exited {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
