//! The grants: obtaining an access token before a connection (refresh,
//! client credentials, JWT bearer), and `mailretr auth login`'s two
//! interactive ones — the authorization code with PKCE (RFC 7636) on a
//! loopback redirect (RFC 8252 section 7.3), and the device
//! authorization grant (RFC 8628).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::lock::AccountLock;
use crate::secret::{self, Password};
use crate::store::State;

use super::http::{self, Failed, Reply};
use super::store::{self, Tokens};
use super::{jwt, login_again, refresh_margin, AccessToken, Grant, OAuth2, Provider};

/// The grant type of RFC 8628 section 3.4.
const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The grant type of RFC 7523 section 2.1.
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The lifetime assumed when a token endpoint does not say.
const DEFAULT_LIFETIME: i64 = 3600;
/// Largest HTTP request the loopback listener reads.
const MAX_REQUEST: usize = 16 * 1024;

/// See [`super::access_token`].
pub fn access_token(oauth: &OAuth2, now: i64) -> Result<AccessToken> {
    // One process at a time obtains a token for a name: a second one
    // waits, then finds the first one's token (a rotated refresh token
    // used twice would be refused).
    let _lock = AccountLock::oauth(&oauth.state_dir, &oauth.name)?;
    let mut state = State::open(&oauth.state_dir)?;
    let stored = store::load(&state, &oauth.name)?;
    if let Some(t) = stored
        .as_ref()
        .filter(|t| t.grant == oauth.grant.to_string())
    {
        if let (Some(token), Some(expires)) = (&t.access_token, t.access_expires) {
            let lifetime = t.access_lifetime.unwrap_or(DEFAULT_LIFETIME);
            if expires - now > refresh_margin(lifetime) {
                log::debug!(
                    "{}: OAuth2 access token cached, {}s left",
                    oauth.name,
                    expires - now
                );
                return Ok(AccessToken {
                    token: token.clone(),
                    expires_at: Some(expires),
                    lifetime,
                });
            }
        }
    }
    let client_secret = client_secret(oauth)?;
    let (token_url, reply) = match oauth.grant {
        Grant::AuthorizationCode => {
            let refresh = stored
                .as_ref()
                .filter(|t| t.grant == oauth.grant.to_string())
                .and_then(|t| t.refresh_token.clone())
                .ok_or_else(|| login_again(&oauth.name, "not logged in yet"))?;
            let token_url = required(&oauth.token_url, "token_url")?;
            let client_id = oauth.client_id.as_deref().unwrap_or_default();
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", client_id),
            ];
            if let Some(s) = &client_secret {
                form.push(("client_secret", s.as_str()));
            }
            log::debug!("{}: refreshing the OAuth2 access token", oauth.name);
            let reply = http::post_form(&token_url, &form, oauth.timeout).map_err(|e| {
                match e.code() {
                    Some("invalid_grant") => login_again(
                        &oauth.name,
                        "the provider no longer accepts the stored refresh token (invalid_grant: revoked or expired)",
                    ),
                    _ => e.into_error(&format!("OAuth2 for {}: refresh", oauth.name)),
                }
            })?;
            (token_url, reply)
        }
        Grant::ClientCredentials => {
            let token_url = required(&oauth.token_url, "token_url")?;
            let secret = client_secret.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "OAuth2 for {}: client_credentials needs client_secret_command",
                    oauth.name
                ))
            })?;
            let scope = oauth.scopes.join(" ");
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", oauth.client_id.as_deref().unwrap_or_default()),
                ("client_secret", secret.as_str()),
                ("scope", scope.as_str()),
            ];
            log::debug!("{}: OAuth2 client credentials grant", oauth.name);
            let reply = http::post_form(&token_url, &form, oauth.timeout).map_err(|e| {
                e.into_error(&format!("OAuth2 for {}: client credentials", oauth.name))
            })?;
            (token_url, reply)
        }
        Grant::ServiceAccount => {
            let path = oauth.key_file.as_ref().ok_or_else(|| {
                Error::Config(format!(
                    "OAuth2 for {}: service_account needs key_file",
                    oauth.name
                ))
            })?;
            let key = jwt::read_key_file(path)?;
            let token_url = match (&oauth.token_url, &key.token_uri) {
                (Some(u), _) => u.clone(),
                (None, Some(u)) => u.clone(),
                (None, None) => super::GOOGLE_TOKEN_URL.to_string(),
            };
            let assertion = jwt::assertion(&key, &oauth.user, &oauth.scopes, &token_url, now)?;
            let form = [("grant_type", JWT_GRANT), ("assertion", assertion.as_str())];
            log::debug!(
                "{}: OAuth2 JWT bearer grant as {} for {}",
                oauth.name,
                key.client_email,
                oauth.user
            );
            let reply = http::post_form(&token_url, &form, oauth.timeout).map_err(|e| {
                e.into_error(&format!("OAuth2 for {}: service account", oauth.name))
            })?;
            (token_url, reply)
        }
    };
    let lifetime = reply.expires_in().unwrap_or(DEFAULT_LIFETIME).max(0);
    let access = reply.access_token.ok_or_else(|| {
        Error::Protocol(format!(
            "OAuth2 for {}: the token endpoint sent no access_token",
            oauth.name
        ))
    })?;
    let previous = stored.filter(|t| t.grant == oauth.grant.to_string());
    let tokens = Tokens {
        grant: oauth.grant.to_string(),
        client_id: oauth.client_id.clone().unwrap_or_default(),
        token_url,
        // A rotated refresh token replaces the old one in this commit,
        // before the new access token is used.
        refresh_token: reply
            .refresh_token
            .map(Password::new)
            .or_else(|| previous.as_ref().and_then(|t| t.refresh_token.clone())),
        access_token: Some(Password::new(access)),
        access_expires: Some(now + lifetime),
        access_lifetime: Some(lifetime),
        obtained_at: previous.as_ref().map_or(now, |t| t.obtained_at),
        refreshed_at: now,
    };
    store::save(&mut state, &oauth.name, &tokens)?;
    log::debug!(
        "{}: new OAuth2 access token, valid for {lifetime}s",
        oauth.name
    );
    Ok(AccessToken {
        token: tokens.access_token.unwrap_or_default(),
        expires_at: Some(now + lifetime),
        lifetime,
    })
}

/// Forgets the cached access token of `oauth` after a server turned it
/// down, so the next connection obtains a fresh one.
pub fn rejected(oauth: &OAuth2) {
    let dropped = State::open(&oauth.state_dir)
        .and_then(|mut s| store::drop_access_token(&mut s, &oauth.name));
    if let Err(e) = dropped {
        log::warn!(
            "{}: cannot forget the refused access token: {e}",
            oauth.name
        );
    }
}

fn required(url: &Option<String>, key: &str) -> Result<String> {
    url.clone()
        .ok_or_else(|| Error::Config(format!("oauth2 needs `{key}`")))
}

fn client_secret(oauth: &OAuth2) -> Result<Option<Password>> {
    match &oauth.client_secret_command {
        Some(command) => secret::run_command(command).map(Some).map_err(|e| {
            Error::Auth(format!(
                "OAuth2 for {}: client_secret_command: {e}",
                oauth.name
            ))
        }),
        None => Ok(None),
    }
}

/// How `mailretr auth login` runs.
#[derive(Debug, Clone)]
pub struct LoginOptions {
    /// The device grant instead of a browser on this machine.
    pub device: bool,
    /// How long to wait for the browser's redirect or the device's
    /// approval.
    pub timeout: Duration,
}

/// `mailretr auth login`: obtains and stores a refresh token for
/// `oauth`. Instructions for the user go to stderr.
pub fn login(oauth: &OAuth2, options: &LoginOptions) -> Result<()> {
    if !oauth.grant.needs_login() {
        return Err(Error::Config(format!(
            "{} uses grant = \"{}\": no login needed, tokens are obtained on each run",
            oauth.name, oauth.grant
        )));
    }
    let client_secret = client_secret(oauth)?;
    let reply = if options.device {
        device_grant(oauth, client_secret.as_ref(), options.timeout)?
    } else {
        code_grant(oauth, client_secret.as_ref(), options.timeout)?
    };
    let now = store::now();
    let lifetime = reply.expires_in().unwrap_or(DEFAULT_LIFETIME).max(0);
    let refresh = reply.refresh_token.ok_or_else(|| {
        Error::Auth(format!(
            "OAuth2 for {}: the provider issued no refresh token{}",
            oauth.name,
            match oauth.provider {
                Provider::Microsoft => " (is offline_access among the scopes?)",
                _ => "",
            }
        ))
    })?;
    let tokens = Tokens {
        grant: oauth.grant.to_string(),
        client_id: oauth.client_id.clone().unwrap_or_default(),
        token_url: oauth.token_url.clone().unwrap_or_default(),
        refresh_token: Some(Password::new(refresh)),
        access_expires: reply.access_token.as_ref().map(|_| now + lifetime),
        access_token: reply.access_token.map(Password::new),
        access_lifetime: Some(lifetime),
        obtained_at: now,
        refreshed_at: now,
    };
    let _lock = AccountLock::oauth(&oauth.state_dir, &oauth.name)?;
    let mut state = State::open(&oauth.state_dir)?;
    store::save(&mut state, &oauth.name, &tokens)?;
    eprintln!(
        "mailretr: {}: logged in; the refresh token is stored in {}",
        oauth.name,
        state.path().display()
    );
    Ok(())
}

/// A random URL-safe string of `bytes` random bytes.
fn random_token(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(B64URL.encode(buf))
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 section 4.2).
fn pkce_challenge(verifier: &str) -> String {
    B64URL.encode(Sha256::digest(verifier.as_bytes()))
}

/// The authorization code grant with PKCE on a loopback redirect.
fn code_grant(
    oauth: &OAuth2,
    client_secret: Option<&Password>,
    timeout: Duration,
) -> Result<Reply> {
    let auth_url = oauth.auth_url.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "{}: oauth2 has no auth_url; use `mailretr auth login --device {}`",
            oauth.name, oauth.name
        ))
    })?;
    let token_url = required(&oauth.token_url, "token_url")?;
    // RFC 8252 section 8.3: the loopback IP literal, not `localhost`;
    // any port, chosen by the system.
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::net("binding the loopback redirect listener", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::net("loopback listener", e))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/");
    let verifier = Password::new(random_token(32)?);
    let expected_state = random_token(16)?;
    let mut url = url::Url::parse(auth_url)
        .map_err(|e| Error::Config(format!("{}: oauth2 auth_url: {e}", oauth.name)))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", oauth.client_id.as_deref().unwrap_or_default())
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &oauth.scopes.join(" "))
            .append_pair("state", &expected_state)
            .append_pair("code_challenge", &pkce_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        if oauth.user.contains('@') {
            q.append_pair("login_hint", &oauth.user);
        }
        if oauth.provider == Provider::Google {
            // Without these Google issues no refresh token.
            q.append_pair("access_type", "offline")
                .append_pair("prompt", "consent");
        }
    }
    let opened = open_browser(url.as_str());
    eprintln!(
        "mailretr: {}: {} this URL to sign in (waiting {}s for the redirect to {redirect_uri}):\n\n  {url}\n",
        oauth.name,
        if opened { "a browser was opened; if it did not come up, open" } else { "open" },
        timeout.as_secs()
    );
    let code = wait_for_code(&listener, &expected_state, timeout, &oauth.name)?;
    let client_id = oauth.client_id.as_deref().unwrap_or_default();
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", client_id),
        ("code_verifier", verifier.as_str()),
    ];
    if let Some(s) = client_secret {
        form.push(("client_secret", s.as_str()));
    }
    http::post_form(&token_url, &form, oauth.timeout)
        .map_err(|e| e.into_error(&format!("OAuth2 for {}: code exchange", oauth.name)))
}

/// Runs `xdg-open URL` when there is a graphical session; whether it did.
fn open_browser(url: &str) -> bool {
    let graphical = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    if !graphical {
        return false;
    }
    std::process::Command::new("xdg-open")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok()
}

/// Serves the loopback redirect until a request carries our `state` and
/// a code (or an error), or `timeout` passes. Requests with another
/// `state` are answered 400 and otherwise ignored (RFC 6749 section
/// 10.12); anything else 404.
fn wait_for_code(
    listener: &TcpListener,
    expected_state: &str,
    timeout: Duration,
    name: &str,
) -> Result<Password> {
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::net("loopback listener", e))?;
    let deadline = Instant::now() + timeout;
    loop {
        if crate::signal::stop_requested() {
            return Err(Error::Internal("interrupted".into()));
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{name}: no redirect from the browser within {}s",
                timeout.as_secs()
            )));
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(Error::net("loopback listener", e)),
        };
        match redirect_request(stream, expected_state, name) {
            Some(Ok(code)) => return Ok(code),
            Some(Err(e)) => return Err(e),
            None => continue,
        }
    }
}

/// One request on the loopback listener: `Some` when it ended the wait.
fn redirect_request(
    mut stream: TcpStream,
    expected_state: &str,
    name: &str,
) -> Option<Result<Password>> {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut request = Vec::new();
    let mut chunk = [0u8; 2048];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let target = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("");
    let url = url::Url::parse(&format!("http://127.0.0.1{target}")).ok();
    let param = |k: &str| {
        url.as_ref()
            .and_then(|u| u.query_pairs().find(|(key, _)| key == k))
            .map(|(_, v)| v.into_owned())
    };
    let (code, error, state) = (param("code"), param("error"), param("state"));
    let reply = |stream: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if code.is_none() && error.is_none() {
        reply(&mut stream, "404 Not Found", "not found\n");
        return None;
    }
    if state.as_deref() != Some(expected_state) {
        log::warn!("{name}: a redirect with the wrong `state` was ignored");
        reply(
            &mut stream,
            "400 Bad Request",
            "mailretr: wrong state; ignored\n",
        );
        return None;
    }
    if let Some(error) = error {
        reply(
            &mut stream,
            "200 OK",
            "mailretr: the sign-in was not completed. You can close this window.\n",
        );
        let error: String = error.chars().take(100).collect();
        return Some(Err(Error::Auth(format!(
            "OAuth2 for {name}: the provider answered the sign-in with {error}"
        ))));
    }
    reply(
        &mut stream,
        "200 OK",
        "mailretr: signed in. You can close this window.\n",
    );
    code.map(|c| Ok(Password::new(c)))
}

/// The device authorization grant (RFC 8628).
fn device_grant(
    oauth: &OAuth2,
    client_secret: Option<&Password>,
    timeout: Duration,
) -> Result<Reply> {
    let device_url = oauth
        .device_url
        .as_ref()
        .ok_or_else(|| Error::Config(format!("{}: oauth2 has no device_url", oauth.name)))?;
    let token_url = required(&oauth.token_url, "token_url")?;
    let client_id = oauth.client_id.as_deref().unwrap_or_default();
    let scope = oauth.scopes.join(" ");
    let mut form = vec![("client_id", client_id), ("scope", scope.as_str())];
    if let Some(s) = client_secret {
        form.push(("client_secret", s.as_str()));
    }
    let what = format!("OAuth2 for {}: device authorization", oauth.name);
    let started =
        http::post_form(device_url, &form, oauth.timeout).map_err(|e| e.into_error(&what))?;
    let (Some(device_code), Some(user_code)) =
        (started.device_code.clone(), started.user_code.clone())
    else {
        return Err(Error::Protocol(format!(
            "{what}: no device_code or user_code in the answer"
        )));
    };
    let device_code = Password::new(device_code);
    let uri = started
        .verification_uri
        .clone()
        .or_else(|| started.verification_url.clone())
        .ok_or_else(|| Error::Protocol(format!("{what}: no verification_uri in the answer")))?;
    let expires_in = started.expires_in().unwrap_or(600).max(1) as u64;
    let mut interval = started.interval().unwrap_or(5).max(1) as u64;
    eprintln!(
        "mailretr: {}: on any device, open\n\n  {uri}\n\nand enter the code {user_code} (valid for {} min)\n",
        oauth.name,
        expires_in.div_ceil(60)
    );
    let deadline = Instant::now() + Duration::from_secs(expires_in).min(timeout);
    let mut poll = vec![
        ("grant_type", DEVICE_GRANT),
        ("device_code", device_code.as_str()),
        ("client_id", client_id),
    ];
    if let Some(s) = client_secret {
        poll.push(("client_secret", s.as_str()));
    }
    loop {
        let wake = Instant::now() + Duration::from_secs(interval);
        while Instant::now() < wake {
            if crate::signal::stop_requested() {
                return Err(Error::Internal("interrupted".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{}: the code was not entered in time",
                oauth.name
            )));
        }
        match http::post_form(&token_url, &poll, oauth.timeout) {
            Ok(reply) => return Ok(reply),
            Err(Failed::OAuth { code, .. }) if code == "authorization_pending" => {}
            Err(Failed::OAuth { code, .. }) if code == "slow_down" => {
                // RFC 8628 section 3.5: five seconds more from now on.
                interval += 5;
                log::info!("{}: slowing down: polling every {interval}s", oauth.name);
            }
            Err(Failed::OAuth { code, .. }) if code == "expired_token" => {
                return Err(Error::Auth(format!(
                    "OAuth2 for {}: the code expired before it was entered; run `mailretr auth login --device {}` again",
                    oauth.name, oauth.name
                )))
            }
            Err(Failed::OAuth { code, .. }) if code == "access_denied" => {
                return Err(Error::Auth(format!(
                    "OAuth2 for {}: the sign-in was declined (access_denied)",
                    oauth.name
                )))
            }
            Err(e) => return Err(e.into_error(&format!("OAuth2 for {}: device grant", oauth.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_unpadded_base64url_of_sha256() {
        // Computed independently with Python's hashlib and base64.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mJ92K9GTB43sDpmEb87BbBpFAgbtwE"),
            "imMYuEltQrK-n3jsa2lL4unWpxypoIw-e9V0IBFn7NI"
        );
        assert_eq!(random_token(32).unwrap().len(), 43);
    }

    fn get(port: u16, target: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn loopback_checks_state_and_times_out() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::thread::spawn(move || {
            let a = get(port, "/favicon.ico");
            let b = get(port, "/?code=c1&state=forged");
            let c = get(port, "/?code=c2&state=good");
            (a, b, c)
        });
        let code = wait_for_code(&listener, "good", Duration::from_secs(10), "t").unwrap();
        assert_eq!(code.as_str(), "c2");
        let (a, b, c) = client.join().unwrap();
        assert!(a.starts_with("HTTP/1.1 404"), "{a}");
        assert!(b.starts_with("HTTP/1.1 400"), "{b}");
        assert!(c.starts_with("HTTP/1.1 200"), "{c}");
        let e = wait_for_code(&listener, "good", Duration::from_millis(200), "t").unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e}");
    }
}
