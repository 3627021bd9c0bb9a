//! A real throwaway MariaDB for the account-backend and report tests:
//! `mariadb-install-db` into a temporary datadir, `mariadbd` on a free
//! loopback port, one instance per test binary ([`MariaDb::shared`]),
//! each test with its own database ([`MariaDb::new_database`]) and a
//! password user `mailretr` that owns them all. Root's account is only
//! reachable through the unix socket, used to set things up.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::dovecot::spawn_with_parent_death_signal;

const INSTALL_HINT: &str =
    "\nMariaDB is needed for these tests: apt-get install mariadb-server mariadb-client (tests/run-all.sh does it)";

/// The password of the `mailretr` database user.
pub const PASSWORD: &str = "db-Secret-7731";

pub struct MariaDb {
    pub port: u16,
    pub socket: PathBuf,
    pub dir: PathBuf,
    child: Mutex<Option<Child>>,
    next: AtomicUsize,
    _tempdir: tempfile::TempDir,
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts on 127.0.0.1:`port`.
pub fn wait_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            panic!(
                "{what} did not listen on port {port}:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn find(binary: &str, hint: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{binary} not found{hint}"))
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let tempdir = tempfile::Builder::new()
            .prefix("mailretr-mariadb-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tempdir.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.join("data");
        let mut install = Command::new(find("mariadb-install-db", INSTALL_HINT));
        install
            .arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", data.display()))
            .arg("--skip-test-db");
        if is_root() {
            install.arg("--user=root");
        }
        let out = install.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let socket = dir.join("mysqld.sock");
        let log = dir.join("mariadbd.log");
        let mut cmd = Command::new(find("mariadbd", INSTALL_HINT));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg("--skip-log-bin")
            .arg("--innodb-buffer-pool-size=16M")
            .arg(format!("--log-error={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = spawn_with_parent_death_signal(cmd).expect("start mariadbd");
        wait_port(port, "mariadbd", &log);
        let db = MariaDb {
            port,
            socket,
            dir,
            child: Mutex::new(Some(child)),
            next: AtomicUsize::new(1),
            _tempdir: tempdir,
        };
        db.root_sql(
            None,
            &format!(
                "CREATE USER 'mailretr'@'%' IDENTIFIED BY '{PASSWORD}'; \
                 GRANT ALL ON *.* TO 'mailretr'@'%'; FLUSH PRIVILEGES;"
            ),
        );
        db
    }

    /// One MariaDB per test process, stopped at exit.
    pub fn shared() -> &'static MariaDb {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| {
            let db = MariaDb::start();
            super::at_exit(|| {
                if let Some(d) = SHARED.get() {
                    d.stop();
                }
            });
            db
        })
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new empty database; its name.
    pub fn new_database(&self) -> String {
        let name = format!("mail{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.root_sql(None, &format!("CREATE DATABASE {name}"));
        name
    }

    /// `mysql://mailretr@127.0.0.1:PORT/DB` (no password: give it as
    /// `password`).
    pub fn url(&self, database: &str) -> String {
        format!("mysql://mailretr@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL as root over the socket; returns the rows, tab-separated.
    pub fn root_sql(&self, database: Option<&str>, sql: &str) -> String {
        let mut cmd = Command::new(find("mariadb", INSTALL_HINT));
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "-N", "-B", "-e", sql]);
        if let Some(d) = database {
            cmd.arg(d);
        }
        let out = cmd.output().expect("run mariadb");
        assert!(
            out.status.success(),
            "mariadb {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
