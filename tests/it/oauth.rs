//! Built-in OAuth2 (issue #15) end to end: the test authorization server
//! (`support::oauth`) issues tokens by each grant, and a real Dovecot
//! whose `oauth2` passdb introspects every token against it lets them log
//! in over IMAP and POP3. Access tokens live `LIFETIME` (4) seconds, so
//! refresh, rotation and `watch` re-authentication happen within a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::config::{AccountBuilder, ConfigBuilder};
use crate::support::dovecot::{Dovecot, User};
use crate::support::fake::{FakeServer, Step};
use crate::support::oauth::{browse, Client, OAuthServer, LIFETIME};
use crate::support::{self, Env};

fn shared() -> (&'static OAuthServer, &'static Dovecot) {
    let (server, dovecot) = OAuthServer::shared();
    (server, dovecot)
}

fn message(tag: &str, n: usize) -> Vec<u8> {
    format!("Subject: {tag} {n}\nMessage-ID: <{tag}-{n}@oauth.test>\n\nbody {n}\n").into_bytes()
}

/// An account `name` for `user` on the OAuth Dovecot over implicit TLS,
/// with `oauth2` pointing at the test server (no password).
fn account(
    name: &str,
    protocol: &str,
    dovecot: &Dovecot,
    user: &User,
    oauth2: &str,
) -> AccountBuilder {
    let port = if protocol == "pop3" {
        dovecot.pop3s
    } else {
        dovecot.imaps
    };
    AccountBuilder::new(name, protocol, "localhost")
        .port(port)
        .ca_file(&dovecot.cert_pem)
        .user(&user.name)
        .line(oauth2)
        .line("add_received = false")
}

fn write(env: &Env, accounts: Vec<AccountBuilder>) {
    let mut config = ConfigBuilder::new(env);
    for a in accounts {
        let path = env.path(format!("Maildir-{}", a.name()));
        config = config.account_to_maildir(a, path);
    }
    config.write(env);
}

fn delivered(env: &Env, name: &str) -> Vec<Vec<u8>> {
    support::maildir_messages(&env.path(format!("Maildir-{name}")))
}

fn text(out: &support::Output) -> String {
    format!("{}{}", out.stdout, out.stderr)
}

/// The stored tokens of `name`: (refresh token, access token).
fn stored(env: &Env, name: &str) -> (Option<String>, Option<String>) {
    let db = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    db.query_row(
        "SELECT refresh_token, access_token FROM oauth_tokens WHERE name = ?1",
        [name],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((None, None))
}

/// A running `mailretr auth login` with its stderr collected.
struct Login {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Login {
    fn start(env: &Env, args: &[&str]) -> Login {
        let mut cmd = env.cmd();
        cmd.arg("auth")
            .arg("login")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Login { child, stderr }
    }

    /// Waits for a stderr line for which `pick` returns something.
    fn wait_for<T>(&self, pick: impl Fn(&str) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(t) = self.stderr.lock().unwrap().lines().find_map(&pick) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "auth login said:\n{}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The authorization URL it printed.
    fn url(&self) -> String {
        self.wait_for(|l| {
            l.trim()
                .starts_with("http://127.0.0.1:")
                .then(|| l.trim().to_string())
        })
    }

    fn finish(mut self) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (
                    status.code().unwrap_or(-1),
                    self.stderr.lock().unwrap().clone(),
                );
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!("auth login did not end:\n{}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `mailretr auth login NAME` through the browser flow, the test playing
/// the browser. Returns what login printed.
fn browser_login(env: &Env, name: &str) -> String {
    let login = Login::start(env, &[name]);
    let url = login.url();
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let (status, body) = browse(&url);
    assert_eq!(status, 200, "{body}");
    let (code, said) = login.finish();
    assert_eq!(code, 0, "{said}");
    said
}

fn setup(confidential: bool) -> (Env, &'static OAuthServer, &'static Dovecot, User, Client) {
    let (server, dovecot) = shared();
    let user = dovecot.new_user();
    let client = server.client(&user.name, confidential);
    (Env::new(), server, dovecot, user, client)
}

#[test]
fn pkce_login_then_imap_fetch_without_secrets_in_output() {
    let (env, server, dovecot, user, client) = setup(true);
    let line = server.oauth2_line(&client, "");
    let transcript = env.path("gm.transcript");
    write(
        &env,
        vec![account("gm", "imap", dovecot, &user, &line)
            .line(&format!("transcript = \"{}\"", transcript.display()))],
    );
    let said = browser_login(&env, "gm");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(env.path("state/state.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "state.db holds tokens");
    let (refresh, access) = stored(&env, "gm");
    let (refresh, access) = (
        refresh.expect("refresh token"),
        access.expect("access token"),
    );
    dovecot.add_message(&user, "INBOX", &message("pkce", 1));
    let out = env.run(&["-vv", "fetch"]);
    let all = text(&out) + &said + &std::fs::read_to_string(&transcript).unwrap();
    assert_eq!(out.code, 0, "{all}");
    assert_eq!(delivered(&env, "gm").len(), 1);
    assert!(all.contains("AUTHENTICATE"), "{all}");
    let secret = client.secret.as_deref().unwrap();
    for s in [refresh.as_str(), access.as_str(), secret] {
        assert!(!all.contains(s), "a secret in the output:\n{all}");
    }
    // The authorization code was exchanged with the PKCE verifier: the
    // server logged one authorization_code grant that succeeded.
    let grants: Vec<_> = server.requests(&client.id);
    assert_eq!(grants[0]["grant"], "authorization_code");
    assert_eq!(grants[0]["outcome"], "ok");
    // Status shows it logged in, as text and JSON.
    let status = env.run(&["auth", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json[0]["name"], "gm");
    assert_eq!(json[0]["state"], "logged_in");
    let status = text(&env.run(&["auth", "status"]));
    assert!(
        status.contains("gm: custom authorization_code: logged in"),
        "{status}"
    );
    // Logout forgets; the next run says how to log in again.
    assert!(text(&env.run(&["auth", "logout", "gm"])).contains("tokens forgotten"));
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 3, "{}", text(&out));
    assert!(
        text(&out).contains("mailretr auth login gm"),
        "{}",
        text(&out)
    );
}

#[test]
fn device_login_then_pop3_fetch() {
    let (env, server, dovecot, user, client) = setup(false);
    let line = server.oauth2_line(&client, "");
    write(&env, vec![account("dev", "pop3", dovecot, &user, &line)]);
    let login = Login::start(&env, &["--device", "dev"]);
    login.wait_for(|l| l.contains("enter the code WDJB-MJHT").then_some(()));
    let (status, said) = login.finish();
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("/activate"), "{said}");
    // Polled at the server's interval: pending once, then approved.
    let polls: Vec<_> = server
        .requests(&client.id)
        .into_iter()
        .filter(|e| e["grant"] == "urn:ietf:params:oauth:grant-type:device_code")
        .collect();
    assert_eq!(polls.len(), 2, "{polls:?}");
    assert_eq!(polls[0]["outcome"], "authorization_pending");
    let gap = polls[1]["time"].as_f64().unwrap() - polls[0]["time"].as_f64().unwrap();
    assert!(gap >= 0.9, "polled {gap}s apart");
    dovecot.add_message(&user, "INBOX", &message("device", 1));
    let out = env.run(&["-vv", "fetch"]);
    assert_eq!(out.code, 0, "{}", text(&out));
    assert_eq!(delivered(&env, "dev").len(), 1);
    // POP3's two-step AUTH, with the token redacted.
    let (_, access) = stored(&env, "dev");
    assert!(!text(&out).contains(&access.unwrap()));
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}

#[test]
fn client_credentials_need_no_login_and_cache_the_token() {
    let (env, server, dovecot, user, client) = setup(true);
    let line = server.oauth2_line(&client, "grant = \"client_credentials\"");
    write(
        &env,
        vec![
            account("app-imap", "imap", dovecot, &user, &line),
            account("app-pop", "pop3", dovecot, &user, &line).line("keep = true"),
        ],
    );
    dovecot.add_message(&user, "INBOX", &message("app", 1));
    let out = env.run(&["fetch", "app-pop"]);
    assert_eq!(out.code, 0, "{}", text(&out));
    let out = env.run(&["fetch", "app-imap"]);
    assert_eq!(out.code, 0, "{}", text(&out));
    assert_eq!(delivered(&env, "app-pop").len(), 1);
    assert_eq!(delivered(&env, "app-imap").len(), 1);
    let grants = server.requests(&client.id);
    assert_eq!(grants.len(), 2, "one token per account: {grants:?}");
    assert!(grants
        .iter()
        .all(|g| g["grant"] == "client_credentials" && g["scope"] == "mail"));
    // Within its lifetime the cached token serves the next run.
    let out = env.run(&["fetch", "app-imap"]);
    assert_eq!(out.code, 1, "{}", text(&out));
    assert_eq!(server.requests(&client.id).len(), 2);
    let status = text(&env.run(&["auth", "status"]));
    assert!(
        status.contains("app-imap: custom client_credentials: no login needed; access token valid"),
        "{status}"
    );
    let out = env.run(&["auth", "login", "app-imap"]);
    assert_eq!(out.code, 5, "{}", text(&out));
}

#[test]
fn service_account_jwt_logs_in_as_the_mailbox_user() {
    let (server, dovecot) = shared();
    let user = dovecot.new_user();
    let env = Env::new();
    let line = format!(
        "oauth2 = {{ provider = \"custom\", grant = \"service_account\", key_file = \"{}\", scopes = [\"mail\"] }}",
        server.key_file.display()
    );
    write(&env, vec![account("sa", "imap", dovecot, &user, &line)]);
    dovecot.add_message(&user, "INBOX", &message("sa", 1));
    let before = server.all_requests().len();
    let out = env.run(&["-vv", "fetch"]);
    assert_eq!(out.code, 0, "{}", text(&out));
    assert_eq!(delivered(&env, "sa").len(), 1);
    let jwt: Vec<_> = server.all_requests()[before..]
        .iter()
        .filter(|e| e["sub"] == user.name.as_str())
        .cloned()
        .collect();
    assert_eq!(jwt.len(), 1, "{jwt:?}");
    assert_eq!(jwt[0]["outcome"], "ok");
    let key = std::fs::read_to_string(&server.key_file).unwrap();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let pem = key["private_key"].as_str().unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!text(&out).contains(body_line));
}

#[test]
fn refresh_before_expiry_across_runs_rotates_the_refresh_token() {
    let (env, server, dovecot, user, client) = setup(false);
    let line = server.oauth2_line(&client, "");
    write(&env, vec![account("rot", "imap", dovecot, &user, &line)]);
    browser_login(&env, "rot");
    let (first_refresh, first_access) = stored(&env, "rot");
    dovecot.add_message(&user, "INBOX", &message("rot", 1));
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", text(&out));
    // The token from the login served the first run: no refresh yet.
    assert_eq!(server.requests(&client.id).len(), 1);
    std::thread::sleep(Duration::from_secs(LIFETIME));
    dovecot.add_message(&user, "INBOX", &message("rot", 2));
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", text(&out));
    assert_eq!(delivered(&env, "rot").len(), 2);
    let grants = server.requests(&client.id);
    assert_eq!(grants.len(), 2, "{grants:?}");
    assert_eq!(grants[1]["grant"], "refresh_token");
    let (second_refresh, second_access) = stored(&env, "rot");
    assert_ne!(first_refresh, second_refresh, "rotated and written back");
    assert_ne!(first_access, second_access);
    // The old refresh token no longer works at the server.
    let (status, _, body) = crate::support::oauth::http(
        server.port,
        "POST",
        "/token",
        &format!(
            "grant_type=refresh_token&client_id={}&refresh_token={}",
            client.id,
            first_refresh.unwrap()
        ),
    );
    assert_eq!(status, 400);
    assert!(body.contains("invalid_grant"));
}

#[test]
fn revoked_refresh_token_is_one_line_and_exit_3_without_a_loop() {
    let (env, server, dovecot, user, client) = setup(false);
    let line = server.oauth2_line(&client, "");
    write(&env, vec![account("rev", "imap", dovecot, &user, &line)]);
    browser_login(&env, "rev");
    let (refresh, access) = stored(&env, "rev");
    server.revoke(&refresh.unwrap());
    assert!(!server.active(&access.unwrap()));
    for _ in 0..2 {
        let out = env.run(&["fetch"]);
        let stderr = out.stderr.clone();
        assert_eq!(out.code, 3, "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains("rev"), "{stderr}");
        assert!(lines[0].contains("`mailretr auth login rev`"), "{stderr}");
    }
    // Each run asked for a token once (the refused access token is
    // forgotten, the refresh token refused once per run): no loop.
    let refreshes = server
        .requests(&client.id)
        .into_iter()
        .filter(|e| e["grant"] == "refresh_token")
        .count();
    assert_eq!(refreshes, 2);
}

#[test]
fn watch_outlives_several_access_tokens() {
    let (env, server, dovecot, user, client) = setup(true);
    let line = server.oauth2_line(&client, "grant = \"client_credentials\"");
    let mut config =
        ConfigBuilder::new(&env).general("idle_renew = \"60s\"\npoll_interval = \"1s\"");
    let a = account("w", "imap", dovecot, &user, &line);
    config = config.account_to_maildir(a, env.path("Maildir-w"));
    config.write(&env);
    let mut cmd = env.cmd();
    cmd.args(["-v", "watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let pipe = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    let start = Instant::now();
    let rounds = 4;
    for n in 0..rounds {
        std::thread::sleep(Duration::from_millis(LIFETIME * 1000 * 3 / 4));
        dovecot.add_message(&user, "INBOX", &message("watch", n));
        let wait = Instant::now();
        while delivered(&env, "w").len() < n + 1 {
            assert!(
                wait.elapsed() < Duration::from_secs(15),
                "message {n} not delivered\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let elapsed = start.elapsed();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(elapsed > Duration::from_secs(2 * LIFETIME), "{elapsed:?}");
    let tokens = server.requests(&client.id).len();
    assert!(tokens >= 3, "{tokens} tokens in {elapsed:?}\n{log}");
    let reauth = log
        .matches("logging in anew before the OAuth2 token expires")
        .count();
    assert!(reauth >= 2, "{log}");
    eprintln!(
        "watch over {elapsed:?}: {} messages, {tokens} access tokens, {reauth} IDLE re-logins",
        rounds
    );
}

/// Microsoft's POP3 wants `AUTH XOAUTH2`, a `+ ` and the response on its
/// own line; a failure comes as a `+ ` challenge, answered with an empty
/// line before the `-ERR`.
#[test]
fn pop3_xoauth2_is_sent_in_two_steps() {
    let ok = vec![
        Step::line("+OK ready"),
        Step::expect("CAPA"),
        Step::line("+OK\r\nSASL XOAUTH2\r\nUSER\r\n."),
        Step::expect("AUTH XOAUTH2"),
        Step::line("+ "),
        Step::expect("dXNlcj11AWF1dGg9QmVhcmVyIHRvay0xMjMBAQ=="),
        Step::line("+OK authenticated"),
        Step::expect("LIST"),
        Step::line("+OK\r\n."),
        Step::expect("UIDL"),
        Step::line("+OK\r\n."),
        Step::expect("QUIT"),
        Step::line("+OK bye"),
        Step::ExpectClose,
    ];
    let refused = vec![
        Step::line("+OK ready"),
        Step::expect("CAPA"),
        Step::line("+OK\r\nSASL XOAUTH2\r\nUSER\r\n."),
        Step::expect("AUTH XOAUTH2"),
        Step::line("+ "),
        Step::ExpectAny,
        Step::line("+ eyJzdGF0dXMiOiI0MDEifQ=="),
        Step::expect(""),
        Step::line("-ERR invalid token"),
        Step::ExpectClose,
    ];
    for (script, want) in [(ok, 1), (refused, 3)] {
        let fake = FakeServer::start(script);
        let env = Env::new();
        let account = AccountBuilder::new("ms", "pop3", "localhost")
            .port(fake.port())
            .plaintext()
            .user("u")
            .timeout("5s")
            .oauth2_token_command("echo tok-123")
            .line("auth = [\"xoauth2\"]");
        ConfigBuilder::single(&env, account).write(&env);
        let out = env.run(&["-vv", "fetch"]);
        assert!(fake.settle(Duration::from_secs(10)), "{}", text(&out));
        assert_eq!(out.code, want, "{}", text(&out));
        fake.assert_no_errors();
        assert!(!text(&out).contains("tok-123"), "{}", text(&out));
        assert!(!text(&out).contains("dXNlcj11AWF1"), "{}", text(&out));
    }
}

/// The IMAP destination appends with XOAUTH2/OAUTHBEARER and a token of
/// its own.
#[test]
fn imap_destination_appends_with_an_oauth2_token() {
    let (server, dovecot) = shared();
    let source = Dovecot::shared();
    let from = source.new_user();
    let to = dovecot.new_user();
    let client = server.client(&to.name, true);
    let env = Env::new();
    let dest = format!(
        "type = \"imap\"\nhost = \"localhost\"\nport = {}\nca_file = \"{}\"\nuser = \"{}\"\n{}",
        dovecot.imaps,
        dovecot.cert_pem.display(),
        to.name,
        server.oauth2_line(&client, "grant = \"client_credentials\"")
    );
    let account = AccountBuilder::dovecot_imaps("src", source, &from).deliver_to(&["box"]);
    ConfigBuilder::new(&env)
        .destination("box", &dest)
        .account(account)
        .write(&env);
    source.add_message(&from, "INBOX", &message("dest", 1));
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}", text(&out));
    assert_eq!(dovecot.messages(&to, "INBOX").len(), 1);
    let status = text(&env.run(&["auth", "status"]));
    assert!(
        status.contains("destination.box: custom client_credentials"),
        "{status}"
    );
}

#[test]
fn bad_oauth2_config_names_file_line_and_key() {
    let env = Env::new();
    for (line, want) in [
        ("oauth2 = { provider = \"yahoo\", client_id = \"x\" }", "unknown provider"),
        (
            "oauth2 = { provider = \"google\", client_id = \"x\", token_url = \"https://evil/token\" }",
            "use provider = \"custom\"",
        ),
        (
            "oauth2 = { provider = \"microsoft\", client_id = \"x\", grant = \"client_credentials\", client_secret_command = \"echo s\" }",
            "needs `tenant`",
        ),
        (
            "oauth2 = { provider = \"custom\", client_id = \"x\", token_url = \"http://example.org/t\" }",
            "https://",
        ),
        (
            "oauth2 = { provider = \"google\", grant = \"service_account\" }",
            "needs `key_file`",
        ),
    ] {
        let account = AccountBuilder::new("bad", "imap", "localhost")
            .user("me@example.org")
            .line(line);
        ConfigBuilder::single(&env, account).write(&env);
        let out = env.run(&["config", "check"]);
        assert_eq!(out.code, 5, "{}", text(&out));
        let err = text(&out);
        assert!(err.contains("config.toml:"), "{err}");
        assert!(err.contains("account[bad].oauth2"), "{err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// The SMTP destination logs in with AUTH XOAUTH2 and a token of its own
/// (client credentials here), which the test server confirms it issued.
#[test]
fn smtp_destination_sends_with_xoauth2() {
    use base64::Engine as _;
    let (server, _) = shared();
    let source = Dovecot::shared();
    let from = source.new_user();
    let client = server.client("relay-user", true);
    let fake = FakeServer::start(vec![
        Step::line("220 fake ESMTP"),
        Step::expect("EHLO"),
        Step::line("250-fake\r\n250-AUTH XOAUTH2\r\n250 8BITMIME"),
        Step::expect("AUTH XOAUTH2 "),
        Step::line("235 2.7.0 accepted"),
        Step::expect("MAIL FROM"),
        Step::line("250 ok"),
        Step::expect("RCPT TO"),
        Step::line("250 ok"),
        Step::expect("DATA"),
        Step::line("354 go"),
        Step::ExpectData,
        Step::line("250 queued"),
        Step::expect("QUIT"),
        Step::line("221 bye"),
        Step::ExpectClose,
    ]);
    let env = Env::new();
    let dest = format!(
        "type = \"smtp\"\nhost = \"localhost\"\nport = {}\ntls = \"none\"\nallow_plaintext = true\nuser = \"relay-user\"\nrecipient = \"jaco@example.org\"\n{}",
        fake.port(),
        server.oauth2_line(&client, "grant = \"client_credentials\"")
    );
    let account = AccountBuilder::dovecot_imaps("src", source, &from).deliver_to(&["relay"]);
    ConfigBuilder::new(&env)
        .destination("relay", &dest)
        .account(account)
        .write(&env);
    source.add_message(&from, "INBOX", &message("smtp", 1));
    let out = env.run(&["-vv", "fetch"]);
    assert!(fake.settle(Duration::from_secs(10)), "{}", text(&out));
    assert_eq!(out.code, 0, "{}", text(&out));
    fake.assert_no_errors();
    let t = fake.transcript();
    let b64 = t
        .lines()
        .find_map(|l| l.strip_prefix("AUTH XOAUTH2 "))
        .unwrap()
        .trim();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    let token = decoded
        .strip_prefix("user=relay-user\u{1}auth=Bearer ")
        .and_then(|r| r.strip_suffix("\u{1}\u{1}"))
        .unwrap_or_else(|| panic!("{decoded:?}"));
    assert!(server.active(token));
    assert!(!text(&out).contains(token));
}

/// RFC 8628 section 3.5: after `slow_down` the client polls five seconds
/// less often.
#[test]
fn device_login_honours_slow_down() {
    let (server, dovecot) = shared();
    let user = dovecot.new_user();
    let client = server.slow_device_client(&user.name);
    let env = Env::new();
    let line = server.oauth2_line(&client, "");
    write(&env, vec![account("slow", "imap", dovecot, &user, &line)]);
    let (status, said) = Login::start(&env, &["--device", "slow"]).finish();
    assert_eq!(status, 0, "{said}");
    let polls: Vec<f64> = server
        .requests(&client.id)
        .iter()
        .map(|e| e["time"].as_f64().unwrap())
        .collect();
    assert_eq!(polls.len(), 3, "pending, slow_down, approved");
    assert!(polls[1] - polls[0] >= 0.9, "{polls:?}");
    assert!(
        polls[2] - polls[1] >= 5.9,
        "interval raised by 5s: {polls:?}"
    );
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 1, "{}", text(&out));
}
