//! A real throwaway PostgreSQL 15: `initdb` into a temporary directory
//! and `postgres` in the foreground on a free loopback port, with
//! scram-sha-256 password authentication for the superuser `mailretr`.
//! PostgreSQL refuses to run as root, so as root it runs as the
//! `postgres` user the package creates. [`Postgres::shared`] serves every
//! test (each with its own database); [`Postgres::start`] gives a test an
//! instance of its own that it may stop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::dovecot::spawn_with_parent_death_signal;
use super::mariadb::{free_port, is_root, wait_port};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const INSTALL_HINT: &str =
    "PostgreSQL 15 is needed for these tests: apt-get install postgresql (tests/run-all.sh does it)";

/// The password of the `mailretr` superuser.
pub const PASSWORD: &str = "pg-Secret-4410";

pub struct Postgres {
    pub port: u16,
    pub dir: PathBuf,
    child: Mutex<Option<Child>>,
    owner: Option<(u32, u32)>,
    next: AtomicUsize,
    _tempdir: tempfile::TempDir,
}

fn postgres_user() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root, but there is no `postgres` user. {INSTALL_HINT}"
    );
    // SAFETY: non-null result of getpwnam.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

impl Postgres {
    pub fn start() -> Postgres {
        assert!(
            std::path::Path::new(BIN).join("initdb").is_file(),
            "{BIN}/initdb not found. {INSTALL_HINT}"
        );
        let tempdir = tempfile::Builder::new()
            .prefix("mailretr-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tempdir.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let owner = is_root().then(postgres_user);
        let pwfile = dir.join("pw");
        fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        }
        let as_owner = |cmd: &mut Command| {
            if let Some((uid, gid)) = owner {
                cmd.uid(uid).gid(gid);
            }
        };
        let mut initdb = Command::new(format!("{BIN}/initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "mailretr", "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir(&dir);
        as_owner(&mut initdb);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            port: 0,
            dir,
            child: Mutex::new(None),
            owner,
            next: AtomicUsize::new(1),
            _tempdir: tempdir,
        };
        pg.port = free_port();
        pg.launch();
        pg
    }

    fn launch(&self) {
        let log = self.dir.join("postgres.log");
        let logfile = fs::File::create(&log).unwrap();
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&log, Some(uid), Some(gid)).unwrap();
        }
        let mut cmd = Command::new(format!("{BIN}/postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logfile);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        let child = spawn_with_parent_death_signal(cmd).expect("start postgres");
        *self.child.lock().unwrap() = Some(child);
        wait_port(self.port, "postgres", &log);
        // Listening comes a moment before accepting logins.
        for _ in 0..100 {
            if self.try_sql("postgres", "SELECT 1").is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// One PostgreSQL per test process, stopped at exit.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| {
            let pg = Postgres::start();
            super::at_exit(|| {
                if let Some(p) = SHARED.get() {
                    p.stop();
                }
            });
            pg
        })
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// A new empty database; its name.
    pub fn new_database(&self) -> String {
        let name = format!("mail{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// `postgres://mailretr@127.0.0.1:PORT/DB?sslmode=disable`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://mailretr@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    fn try_sql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "mailretr", "-d", database, "-c", sql])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL; returns the rows, tab-separated.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        self.try_sql(database, sql)
            .unwrap_or_else(|e| panic!("psql {sql:?}: {e}"))
    }
}
