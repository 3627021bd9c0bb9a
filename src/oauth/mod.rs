//! Built-in OAuth 2.0 (issue #15): the tokens behind `auth = ["xoauth2"]`
//! and `["oauthbearer"]` without a helper script.
//!
//! An account (or an IMAP/SMTP destination) with `oauth2 = { ... }` gets
//! its access token from [`access_token`] right before each connection:
//! a cached one while enough of its lifetime is left, otherwise a fresh
//! one from the provider's token endpoint — by the refresh token that
//! `mailretr auth login` stored (authorization code with PKCE, RFC 7636,
//! on a loopback redirect, RFC 8252; or the device grant, RFC 8628), by
//! the client credentials grant (Microsoft app-only), or by a JWT bearer
//! assertion (RFC 7523, Google service accounts with domain-wide
//! delegation). Tokens live in state.db (`store`); a rotated refresh token
//! is committed before the access token that came with it is used.
//!
//! No token, code or client secret is ever written to a log line, a
//! transcript or an error message.

mod flows;
mod http;
mod jwt;
pub mod store;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::secret::Password;

pub use flows::{login, rejected, LoginOptions};
pub use store::{status, StatusLine};

/// Who issues the tokens: a preset's endpoints and scopes, or `custom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Google (Gmail, Google Workspace).
    Google,
    /// Microsoft identity platform (Outlook.com, Microsoft 365).
    Microsoft,
    /// Endpoints given in the config.
    Custom,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
            Provider::Custom => "custom",
        })
    }
}

/// How tokens are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A user consents once (`mailretr auth login`); the refresh token
    /// is kept and used from then on.
    AuthorizationCode,
    /// The application's own identity (RFC 6749 section 4.4): no login,
    /// a fresh access token from the client secret on each run.
    ClientCredentials,
    /// A Google service account's signed JWT for the mailbox user
    /// (RFC 7523): no login.
    ServiceAccount,
}

impl Grant {
    /// Whether a user must run `mailretr auth login` first.
    pub fn needs_login(self) -> bool {
        self == Grant::AuthorizationCode
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::ClientCredentials => "client_credentials",
            Grant::ServiceAccount => "service_account",
        })
    }
}

/// A validated `oauth2 = { ... }` table, with the preset's endpoints
/// filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2 {
    /// Under which name the tokens are stored and `auth login` knows it:
    /// the account's name, or the destination's name.
    pub name: String,
    /// The preset, or custom.
    pub provider: Provider,
    /// How tokens are obtained.
    pub grant: Grant,
    /// The registered application's id (for a service account, from the
    /// key file when not given).
    pub client_id: Option<String>,
    /// A command printing the client secret (confidential clients,
    /// client credentials).
    pub client_secret_command: Option<String>,
    /// The authorization endpoint (authorization code grant).
    pub auth_url: Option<String>,
    /// The token endpoint (for a service account, the key file's
    /// `token_uri` when `custom` names none).
    pub token_url: Option<String>,
    /// The device authorization endpoint (`auth login --device`).
    pub device_url: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// A Google service account's JSON key file.
    pub key_file: Option<PathBuf>,
    /// The mailbox user: the login hint, and a service account's `sub`.
    pub user: String,
    /// Where state.db is (filled in from `[general] state_dir`).
    pub state_dir: PathBuf,
    /// HTTP timeout for the token endpoint.
    pub timeout: Duration,
}

/// Google's endpoints (OAuth 2.0 for installed apps).
pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's device authorization endpoint.
pub const GOOGLE_DEVICE_URL: &str = "https://oauth2.googleapis.com/device/code";
/// The scope for IMAP, POP3 and SMTP on Gmail.
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/";
/// Delegated scopes for Microsoft 365 and Outlook.com mail protocols.
pub const MICROSOFT_SCOPES: [&str; 4] = [
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/POP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
];
/// The app-only scope for Exchange Online IMAP and POP3.
pub const MICROSOFT_APP_SCOPE: &str = "https://outlook.office365.com/.default";

/// Microsoft's endpoints for `tenant`.
pub fn microsoft_urls(tenant: &str) -> [String; 3] {
    let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
    [
        format!("{base}/authorize"),
        format!("{base}/token"),
        format!("{base}/devicecode"),
    ]
}

/// An access token ready to send, and when it stops working.
#[derive(Debug)]
pub struct AccessToken {
    /// The bearer token.
    pub token: Password,
    /// Unix time after which it is no longer accepted (as the provider
    /// said), if it said.
    pub expires_at: Option<i64>,
    /// Its lifetime as issued, in seconds.
    pub lifetime: i64,
}

impl AccessToken {
    /// Unix time from which a new login should use a fresh token: the
    /// expiry less [`refresh_margin`]. A connection that must outlive the
    /// token (an IDLE in `watch`) logs in anew by then.
    pub fn renew_at(&self) -> Option<i64> {
        self.expires_at.map(|e| e - refresh_margin(self.lifetime))
    }
}

/// The access token for `oauth`'s next connection: the cached one while
/// more than [`refresh_margin`] of it is left, else a fresh one (see the
/// module documentation). A refresh token the provider no longer accepts
/// is one authentication error naming `mailretr auth login`.
pub fn access_token(oauth: &OAuth2) -> Result<AccessToken> {
    flows::access_token(oauth, store::now())
}

/// The bearer token for one XOAUTH2/OAUTHBEARER login: from the
/// built-in OAuth2 when `oauth` is set, else from `token_command`.
pub fn bearer(oauth: Option<&OAuth2>, token_command: Option<&str>) -> Result<Password> {
    match (oauth, token_command) {
        (Some(o), _) => access_token(o).map(|t| t.token),
        (None, Some(command)) => crate::secret::run_command(command),
        (None, None) => Err(Error::Auth(
            "no oauth2 or oauth2_token_command configured".into(),
        )),
    }
}

/// How long before its expiry an access token is replaced: a tenth of
/// its lifetime, at least one second and at most a minute, so that a
/// login that starts with it cannot outlive it.
pub fn refresh_margin(lifetime: i64) -> i64 {
    (lifetime / 10).clamp(1, 60)
}

/// Forgets `name`'s stored tokens (`mailretr auth logout`). Returns
/// whether there were any.
pub fn logout(oauth: &OAuth2) -> Result<bool> {
    store::forget(&oauth.state_dir, &oauth.name)
}

/// The one line for a refresh token the provider refused for good.
fn login_again(name: &str, why: &str) -> Error {
    Error::Auth(format!(
        "OAuth2 for {name}: {why}; run `mailretr auth login {name}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_a_tenth_within_bounds() {
        assert_eq!(refresh_margin(3600), 60);
        assert_eq!(refresh_margin(300), 30);
        assert_eq!(refresh_margin(4), 1);
        assert_eq!(refresh_margin(0), 1);
    }

    #[test]
    fn microsoft_tenant_in_urls() {
        let [a, t, d] = microsoft_urls("contoso.onmicrosoft.com");
        assert_eq!(
            a,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert!(t.ends_with("/v2.0/token"));
        assert!(d.ends_with("/v2.0/devicecode"));
    }
}
