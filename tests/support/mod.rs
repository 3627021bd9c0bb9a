//! Support library for mailretr's integration tests: a real throwaway
//! Dovecot ([`dovecot`]), a real GNU Mailutils ([`mailutils`]), a scripted
//! fake server for hostile or broken peers ([`fake`]), deterministic test
//! messages ([`corpus`]), [`Env`],
//! which runs the real `mailretr` binary with its own HOME and XDG
//! directories so tests never touch the user's files or each other's, and
//! [`ConfigBuilder`], which writes its `config.toml` ([`config`]).
//!
//! Use it from a test file in `tests/` with `mod support;`.

#![allow(dead_code)]

pub mod config;
pub mod corpus;
pub mod dovecot;
pub mod fake;
pub mod imapc;
pub mod mailutils;
pub mod mariadb;
pub mod oauth;
pub mod postgres;
pub mod proxy;
pub mod slapd;
pub mod slowlink;
pub mod smtpd;
pub mod smtpsink;
pub mod socks;
pub mod tunnel;

#[allow(unused_imports)]
pub use config::{AccountBuilder, ConfigBuilder};
#[allow(unused_imports)]
pub use dovecot::{Dovecot, User};
#[allow(unused_imports)]
pub use fake::{FakeServer, Step, TestCert};

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`Env::run`] lets the binary run before killing it and failing
/// the test.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// An isolated environment for running the `mailretr` binary: a temporary
/// directory holding HOME and the XDG config, state, data and cache
/// directories. Dropping it deletes everything.
pub struct Env {
    dir: tempfile::TempDir,
    /// `$HOME`, `<root>/home`.
    pub home: PathBuf,
    /// `$XDG_CONFIG_HOME`, `<root>/config`.
    pub config_home: PathBuf,
    /// `$XDG_STATE_HOME`, `<root>/state`.
    pub state_home: PathBuf,
    /// `$XDG_DATA_HOME`, `<root>/data`.
    pub data_home: PathBuf,
    /// `$XDG_CACHE_HOME`, `<root>/cache`.
    pub cache_home: PathBuf,
}

/// What a finished run of the binary produced.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code; `128 + signal` when the process was killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics, showing both streams, unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "mailretr exited with {} instead of {code}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panics, showing both streams, unless the run exited with 0.
    #[track_caller]
    pub fn expect_success(&self) -> &Self {
        self.expect_code(0)
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// Creates the directories (HOME and the XDG ones, all mode 0700).
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("mailretr-env-")
            .tempdir()
            .expect("create temporary directory for Env");
        let root = dir.path().to_path_buf();
        let sub = |name: &str| {
            let p = root.join(name);
            fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
            p
        };
        Env {
            home: sub("home"),
            config_home: sub("config"),
            state_home: sub("state"),
            data_home: sub("data"),
            cache_home: sub("cache"),
            dir,
        }
    }

    /// The root of the temporary directory; handy for maildirs, spools and
    /// other files a test wants next to the environment.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `root().join(rel)`.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Where the binary looks for its config by default:
    /// `$XDG_CONFIG_HOME/mailretr/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.config_home.join("mailretr").join("config.toml")
    }

    /// The binary's default state directory: `$XDG_STATE_HOME/mailretr`.
    pub fn state_dir(&self) -> PathBuf {
        self.state_home.join("mailretr")
    }

    /// Writes `toml` to [`Env::config_path`] with mode 0600 (replacing any
    /// earlier config) and returns the path.
    pub fn write_config(&self, toml: &str) -> PathBuf {
        let path = self.config_path();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = fs::remove_file(&path);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        f.write_all(toml.as_bytes()).unwrap();
        path
    }

    /// A `Command` for the `mailretr` binary with an empty environment except
    /// `PATH`, `HOME` and the `XDG_*` directories, and the working directory
    /// set to the environment's root.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailretr"));
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", &self.config_home)
            .env("XDG_STATE_HOME", &self.state_home)
            .env("XDG_DATA_HOME", &self.data_home)
            .env("XDG_CACHE_HOME", &self.cache_home)
            .current_dir(self.dir.path());
        cmd
    }

    /// Runs the binary with `args` and no stdin, waiting at most
    /// [`RUN_TIMEOUT`].
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.run_with(args, None, RUN_TIMEOUT)
    }

    /// Runs the binary with `args`, feeding `stdin` to it.
    pub fn run_stdin<S: AsRef<OsStr>>(&self, args: &[S], stdin: &[u8]) -> Output {
        self.run_with(args, Some(stdin), RUN_TIMEOUT)
    }

    /// Runs the binary with `args`, optional `stdin` (otherwise stdin is
    /// `/dev/null`), killing it and panicking after `timeout`.
    pub fn run_with<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        stdin: Option<&[u8]>,
        timeout: Duration,
    ) -> Output {
        let mut cmd = self.cmd();
        cmd.args(args);
        run_command(cmd, stdin, timeout)
    }

    /// Runs the binary with `args` as if `seconds` later (debug builds read
    /// `MAILRETR_CLOCK_OFFSET` for the spool's clock): no test sleeps for
    /// a backoff or an expiry.
    pub fn run_later<S: AsRef<OsStr>>(&self, seconds: i64, args: &[S]) -> Output {
        let mut cmd = self.cmd();
        cmd.args(args)
            .env("MAILRETR_CLOCK_OFFSET", seconds.to_string());
        run_command(cmd, None, RUN_TIMEOUT)
    }

    /// Runs the binary with `args` under `/usr/bin/time` and returns its
    /// output and its peak memory (maximum resident set size) in KiB.
    pub fn run_measured<S: AsRef<OsStr>>(&self, args: &[S]) -> (Output, u64) {
        let time = Path::new("/usr/bin/time");
        assert!(
            time.is_file(),
            "/usr/bin/time is missing (the memory bounds are measured with it): apt-get install time"
        );
        let report = self.path(format!("rss-{}", std::process::id()));
        let mut cmd = self.cmd();
        let program = cmd.get_program().to_owned();
        let mut timed = Command::new(time);
        timed
            .env_clear()
            .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .current_dir(self.root())
            .arg("-f")
            .arg("%M")
            .arg("-o")
            .arg(&report)
            .arg(program)
            .args(args);
        let _ = &mut cmd;
        let out = run_command(timed, None, RUN_TIMEOUT);
        let kib = fs::read_to_string(&report)
            .ok()
            .and_then(|t| t.lines().last().and_then(|l| l.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no peak memory from /usr/bin/time: {}", out.stderr));
        (out, kib)
    }

    /// The messages in the maildir at `path` (files in `new/` and `cur/`),
    /// sorted by content. A missing maildir yields no messages.
    pub fn maildir_messages(&self, path: impl AsRef<Path>) -> Vec<Vec<u8>> {
        maildir_messages(path.as_ref())
    }
}

/// Runs `cmd` with piped output, optional stdin, and a deadline.
pub fn run_command(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let feeder = stdin.map(|input| {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            // The child may exit without reading everything; that is its
            // business, not a harness failure.
            let _ = pipe.write_all(&input);
        })
    });
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!(
                "{:?} did not finish within {timeout:?}; killed it\n--- stderr ---\n{stderr}",
                cmd.get_program()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Output {
        code,
        stdout: String::from_utf8_lossy(&out.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned(),
    }
}

/// The messages in the maildir at `path` (regular files in `new/` and
/// `cur/`), sorted by content. A missing maildir yields no messages.
///
/// Tolerates a concurrent reader moving files from `new/` to `cur/` (as
/// Dovecot does) by re-reading when a listed file has vanished.
pub fn maildir_messages(path: &Path) -> Vec<Vec<u8>> {
    'again: for _ in 0..50 {
        let mut msgs = Vec::new();
        for sub in ["new", "cur"] {
            let entries = match fs::read_dir(path.join(sub)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("read {}/{sub}: {e}", path.display()),
            };
            for entry in entries {
                let entry = entry.unwrap();
                if !entry.file_type().unwrap().is_file() {
                    continue;
                }
                match fs::read(entry.path()) {
                    Ok(bytes) => msgs.push(bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue 'again,
                    Err(e) => panic!("read {}: {e}", entry.path().display()),
                }
            }
        }
        msgs.sort();
        return msgs;
    }
    panic!("{}: files keep vanishing while reading", path.display());
}

/// `v`, sorted (to compare sets of messages).
pub fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// The messages delivered into the Maildir at `path`, each without the
/// `Received:` header mailretr adds, sorted.
pub fn delivered(path: &Path) -> Vec<Vec<u8>> {
    sorted(
        maildir_messages(path)
            .iter()
            .map(|m| strip_received(m))
            .collect(),
    )
}

/// Removes ONE leading `Received:` header (and its folded continuation
/// lines) from `msg`, as prepended by mailretr on delivery. Works with LF
/// and CRLF line endings. A message that does not start with `Received:`
/// is returned unchanged.
pub fn strip_received(msg: &[u8]) -> Vec<u8> {
    const NAME: &[u8] = b"received:";
    if msg.len() < NAME.len() || !msg[..NAME.len()].eq_ignore_ascii_case(NAME) {
        return msg.to_vec();
    }
    let mut pos = 0;
    loop {
        match msg[pos..].iter().position(|&b| b == b'\n') {
            None => return Vec::new(),
            Some(i) => pos += i + 1,
        }
        match msg.get(pos) {
            Some(b' ') | Some(b'\t') => continue,
            _ => return msg[pos..].to_vec(),
        }
    }
}

/// Converts LF line endings to CRLF (leaving existing CRLFs alone).
pub fn to_crlf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + msg.len() / 40);
    let mut prev = 0u8;
    for &b in msg {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// Converts CRLF line endings to LF.
pub fn to_lf(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len());
    let mut i = 0;
    while i < msg.len() {
        if msg[i] == b'\r' && msg.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(msg[i]);
        i += 1;
    }
    out
}

type ExitHook = Box<dyn FnOnce() + Send>;

static EXIT_HOOKS: std::sync::Mutex<Vec<ExitHook>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` when the test process exits normally (via libc `atexit`), for
/// cleaning up process-wide fixtures such as [`Dovecot::shared`], which live
/// in statics that are never dropped. Hooks run in reverse order of
/// registration; a panicking hook is ignored.
pub fn at_exit(f: impl FnOnce() + Send + 'static) {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn run_exit_hooks() {
        let hooks = std::mem::take(&mut *EXIT_HOOKS.lock().unwrap_or_else(|e| e.into_inner()));
        for hook in hooks.into_iter().rev() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook));
        }
    }
    REGISTER.call_once(|| {
        // SAFETY: registering a plain `extern "C"` function with no arguments.
        unsafe {
            libc::atexit(run_exit_hooks);
        }
    });
    EXIT_HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(f));
}
