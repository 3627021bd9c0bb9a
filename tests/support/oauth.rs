//! The OAuth 2.0 side of the built-in OAuth2 tests: a throwaway
//! authorization server (`oauth_server.py`, Python's standard library and
//! python3-cryptography) and a real Dovecot whose `oauth2` passdb checks
//! every XOAUTH2/OAUTHBEARER token by introspection against it, so a
//! token obtained by each grant really logs in over IMAP and POP3.
//!
//! One server and one such Dovecot per test process ([`OAuthServer::shared`]);
//! tests register their own client (and the user its tokens are for) so
//! they never share tokens. The server's access tokens live
//! [`LIFETIME`] seconds.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use super::dovecot::{spawn_with_parent_death_signal, Dovecot};
use super::smtpsink::PYTHON;

const SERVER: &str = include_str!("oauth_server.py");

/// How long the server's access tokens live, in seconds.
pub const LIFETIME: u64 = 4;

/// The service account the server trusts for JWT bearer assertions.
pub const SA_EMAIL: &str = "fetcher@mailretr-test.iam.gserviceaccount.com";

/// A running authorization server on 127.0.0.1.
pub struct OAuthServer {
    pub port: u16,
    /// A Google-style service account key file whose public key the
    /// server verifies assertions with.
    pub key_file: PathBuf,
    /// The temporary directory (script, keys).
    pub dir: PathBuf,
    child: Mutex<Child>,
    next: AtomicUsize,
    _tempdir: tempfile::TempDir,
}

/// A client registered on the server.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    /// Its secret, for a confidential client.
    pub secret: Option<String>,
}

impl OAuthServer {
    /// Starts a server. Panics loudly when python3 or python3-cryptography
    /// is missing.
    pub fn start() -> OAuthServer {
        let tempdir = tempfile::Builder::new()
            .prefix("mailretr-oauth-")
            .tempdir()
            .unwrap();
        let dir = tempdir.path().to_path_buf();
        let script = dir.join("oauth_server.py");
        fs::write(&script, SERVER).unwrap();
        let key = dir.join("sa-key.pem");
        let public = dir.join("sa-pub.pem");
        let status = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key)
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (apt-get install openssl)");
        assert!(status.success(), "openssl genpkey failed");
        let status = Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap();
        assert!(status.success(), "openssl pkey -pubout failed");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let key_file = dir.join("service-account.json");
        let key_json = serde_json::json!({
            "type": "service_account",
            "client_email": SA_EMAIL,
            "private_key_id": "test-key-1",
            "private_key": fs::read_to_string(&key).unwrap(),
            "token_uri": format!("http://127.0.0.1:{port}/token"),
        });
        fs::write(&key_file, key_json.to_string()).unwrap();
        let options = serde_json::json!({
            "lifetime": LIFETIME,
            "sa_email": SA_EMAIL,
            "sa_public_key": public,
        });
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .arg(port.to_string())
            .arg(options.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_with_parent_death_signal(cmd)
            .unwrap_or_else(|e| panic!("cannot run {PYTHON}: {e}"));
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "ready" {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!(
                "\n\n*** the test OAuth2 server did not start (apt-get install python3 python3-cryptography, \
                 or run tests/run-all.sh as root) ***\n{err}"
            );
        }
        OAuthServer {
            port,
            key_file,
            dir,
            child: Mutex::new(child),
            next: AtomicUsize::new(1),
            _tempdir: tempdir,
        }
    }

    /// One server and one Dovecot validating tokens against it, per test
    /// process.
    pub fn shared() -> &'static (OAuthServer, Dovecot) {
        static SHARED: OnceLock<(OAuthServer, Dovecot)> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = OAuthServer::start();
            let dovecot = Dovecot::start_with(&server.dovecot_config());
            super::at_exit(|| {
                if let Some((s, d)) = SHARED.get() {
                    d.stop();
                    d.cleanup_dir();
                    let _ = s.child.lock().unwrap().kill();
                }
            });
            (server, dovecot)
        })
    }

    /// What Dovecot needs on top of the shared test config: the token
    /// mechanisms and an `oauth2` passdb after the passwd-file one (a
    /// token is no user's password, so that one fails and this one
    /// decides), introspecting every token.
    fn dovecot_config(&self) -> String {
        let ext = self.dir.join("dovecot-oauth2.conf.ext");
        fs::write(
            &ext,
            format!(
                "introspection_mode = post\n\
                 introspection_url = {}/introspect\n\
                 force_introspection = yes\n\
                 username_attribute = username\n\
                 active_attribute = active\n\
                 active_value = true\n",
                self.url()
            ),
        )
        .unwrap();
        // Dovecot's unprivileged auth process must read it.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&ext, fs::Permissions::from_mode(0o644)).unwrap();
        format!(
            "\nauth_mechanisms = plain login cram-md5 apop scram-sha-256 xoauth2 oauthbearer\n\
             passdb {{\n  driver = oauth2\n  args = {}\n}}\n",
            ext.display()
        )
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Registers a new client whose device and app-only tokens are for
    /// `user`; `confidential` gives it a secret.
    pub fn client(&self, user: &str, confidential: bool) -> Client {
        self.register(user, confidential, false)
    }

    /// Like [`client`](Self::client), for a client whose second device
    /// poll is answered `slow_down`.
    pub fn slow_device_client(&self, user: &str) -> Client {
        self.register(user, false, true)
    }

    fn register(&self, user: &str, confidential: bool, slow_down: bool) -> Client {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let client = Client {
            id: format!("client-{n}"),
            secret: confidential.then(|| format!("client-secret-{n}-Zq8")),
        };
        let mut body = format!("client_id={}&user={user}", client.id);
        if let Some(s) = &client.secret {
            body.push_str(&format!("&client_secret={s}"));
        }
        if slow_down {
            body.push_str("&slow_down=1");
        }
        let (status, _, _) = http(self.port, "POST", "/admin/client", &body);
        assert_eq!(status, 200);
        client
    }

    /// Revokes a refresh token (and every access token of its family).
    pub fn revoke(&self, refresh_token: &str) {
        let (status, _, _) = http(
            self.port,
            "POST",
            "/revoke",
            &format!("token={refresh_token}"),
        );
        assert_eq!(status, 200);
    }

    /// The token requests of `client` so far: (grant_type, outcome).
    pub fn requests(&self, client: &str) -> Vec<serde_json::Value> {
        let (_, _, body) = http(self.port, "GET", "/log", "");
        let all: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        all.into_iter().filter(|e| e["client"] == client).collect()
    }

    /// All token requests so far.
    pub fn all_requests(&self) -> Vec<serde_json::Value> {
        let (_, _, body) = http(self.port, "GET", "/log", "");
        serde_json::from_str(&body).unwrap()
    }

    /// Whether `token` is active (as Dovecot would be told).
    pub fn active(&self, token: &str) -> bool {
        let (_, _, body) = http(self.port, "POST", "/introspect", &format!("token={token}"));
        body.contains("\"active\": true")
    }

    /// The `oauth2 = { ... }` line for a custom provider on this server.
    pub fn oauth2_line(&self, client: &Client, extra: &str) -> String {
        let u = self.url();
        let mut line = format!(
            "oauth2 = {{ provider = \"custom\", client_id = \"{}\", auth_url = \"{u}/authorize\", \
             token_url = \"{u}/token\", device_url = \"{u}/device\", scopes = [\"mail\"]",
            client.id
        );
        if let Some(s) = &client.secret {
            line.push_str(&format!(", client_secret_command = \"echo {s}\""));
        }
        if !extra.is_empty() {
            line.push_str(", ");
            line.push_str(extra);
        }
        line.push_str(" }");
        line
    }
}

/// A minimal HTTP/1.0 request to 127.0.0.1:`port`: (status, headers, body).
pub fn http(port: u16, method: &str, target: &str, body: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Plays the browser: GETs `url` (the authorization endpoint), then the
/// loopback redirect it answers with. Returns the loopback's answer.
pub fn browse(url: &str) -> (u16, String) {
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .expect("a test server URL");
    let (port, target) = rest.split_at(rest.find('/').unwrap());
    let (status, head, _) = http(port.parse().unwrap(), "GET", target, "");
    assert_eq!(status, 302, "{head}");
    let location = head
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .expect("a Location header")
        .trim()
        .to_string();
    let rest = location.strip_prefix("http://127.0.0.1:").unwrap();
    let (port, target) = rest.split_at(rest.find('/').unwrap());
    let (status, _, body) = http(port.parse().unwrap(), "GET", target, "");
    (status, body)
}
