//! A real throwaway OpenLDAP `slapd`: a `slapd.conf` with the core,
//! cosine, inetorgperson and nis schemas, an mdb database in a temporary
//! directory, `ldap://` (with StartTLS) and `ldaps://` on free loopback
//! ports, the test certificate (CN=localhost, IP:127.0.0.1) of
//! [`TestCert`]. The suffix is `dc=example,dc=org`, the admin
//! `cn=admin,dc=example,dc=org`; each test adds its entries under an
//! `ou` of its own ([`Slapd::new_ou`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::dovecot::spawn_with_parent_death_signal;
use super::fake::TestCert;
use super::mariadb::{free_port, wait_port};

const INSTALL_HINT: &str =
    "\nOpenLDAP is needed for these tests: apt-get install slapd ldap-utils (tests/run-all.sh does it)";

pub const SUFFIX: &str = "dc=example,dc=org";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PASSWORD: &str = "ldap-Secret-9093";

pub struct Slapd {
    pub ldap: u16,
    pub ldaps: u16,
    /// The server certificate; pass it as `ca_file`.
    pub cert_pem: PathBuf,
    pub dir: PathBuf,
    child: Mutex<Option<Child>>,
    next: AtomicUsize,
    _tempdir: tempfile::TempDir,
}

fn find(binary: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin"]
        .iter()
        .map(|d| PathBuf::from(d).join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{binary} not found{INSTALL_HINT}"))
}

impl Slapd {
    pub fn start() -> Slapd {
        let slapd = find("slapd");
        let tempdir = tempfile::Builder::new()
            .prefix("mailretr-slapd-")
            .tempdir_in("/tmp")
            .unwrap();
        let dir = tempdir.path().to_path_buf();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir(dir.join("db")).unwrap();
        let cert = TestCert::generate(&dir.join("tls"));
        let hashed = Command::new(find("slappasswd"))
            .args(["-s", ADMIN_PASSWORD])
            .output()
            .expect("run slappasswd");
        let hashed = String::from_utf8_lossy(&hashed.stdout).trim().to_string();
        let conf = format!(
            "include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
suffix \"{SUFFIX}\"
rootdn \"{ADMIN_DN}\"
rootpw {hashed}
directory {dir}/db
maxsize 10485760
",
            dir = dir.display(),
            cert = cert.cert_pem.display(),
            key = cert.key_pem.display(),
        );
        fs::write(dir.join("slapd.conf"), conf).unwrap();
        let (ldap, ldaps) = (free_port(), free_port());
        let log = dir.join("slapd.log");
        let mut cmd = Command::new(slapd);
        cmd.arg("-f")
            .arg(dir.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{ldap}/ ldaps://127.0.0.1:{ldaps}/"
            ))
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        let child = spawn_with_parent_death_signal(cmd).expect("start slapd");
        wait_port(ldap, "slapd", &log);
        wait_port(ldaps, "slapd", &log);
        let s = Slapd {
            ldap,
            ldaps,
            cert_pem: cert.cert_pem,
            dir,
            child: Mutex::new(Some(child)),
            next: AtomicUsize::new(1),
            _tempdir: tempdir,
        };
        s.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"
        ));
        s
    }

    /// One slapd per test process, stopped at exit.
    pub fn shared() -> &'static Slapd {
        static SHARED: OnceLock<Slapd> = OnceLock::new();
        SHARED.get_or_init(|| {
            let s = Slapd::start();
            super::at_exit(|| {
                if let Some(s) = SHARED.get() {
                    s.stop();
                }
            });
            s
        })
    }

    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new `ou=boxesN,dc=example,dc=org`; its DN.
    pub fn new_ou(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let dn = format!("ou=boxes{n},{SUFFIX}");
        self.add(&format!(
            "dn: {dn}\nobjectClass: organizationalUnit\nou: boxes{n}\n"
        ));
        dn
    }

    /// Adds LDIF entries as the admin.
    pub fn add(&self, ldif: &str) {
        let path = self.dir.join(format!(
            "add-{}.ldif",
            self.next.fetch_add(1, Ordering::SeqCst)
        ));
        fs::write(&path, ldif).unwrap();
        let out = Command::new(find("ldapadd"))
            .args(["-x", "-H", &format!("ldap://127.0.0.1:{}", self.ldap)])
            .args(["-D", ADMIN_DN, "-w", ADMIN_PASSWORD, "-f"])
            .arg(&path)
            .output()
            .expect("run ldapadd");
        assert!(
            out.status.success(),
            "ldapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
