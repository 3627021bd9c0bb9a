//! OAuth2 tokens in state.db (table `oauth_tokens`, migration 10), keyed
//! by the account's (or destination's) name. state.db is created 0600;
//! one that is not is narrowed to 0600 before a token goes into it.
//! Every write is one statement, so one commit: a rotated refresh token
//! and the access token that came with it land together, before the
//! access token is handed to a connection.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::{params, OptionalExtension};

use crate::error::Result;
use crate::secret::Password;
use crate::store::State;

use super::{Grant, OAuth2};

/// What is stored for one name.
#[derive(Debug, Default)]
pub struct Tokens {
    /// The grant that obtained them (`Grant`'s name).
    pub grant: String,
    /// The client the refresh token belongs to.
    pub client_id: String,
    /// The token endpoint it was obtained from.
    pub token_url: String,
    /// The refresh token (authorization code grant).
    pub refresh_token: Option<Password>,
    /// The cached access token.
    pub access_token: Option<Password>,
    /// Unix time the access token expires.
    pub access_expires: Option<i64>,
    /// Its lifetime as issued, in seconds.
    pub access_lifetime: Option<i64>,
    /// When `auth login` (or the first no-login grant) obtained them.
    pub obtained_at: i64,
    /// When the access token was last obtained.
    pub refreshed_at: i64,
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The stored tokens of `name`, if any.
pub fn load(state: &State, name: &str) -> Result<Option<Tokens>> {
    let row = state
        .conn
        .query_row(
            "SELECT grant_type, client_id, token_url, refresh_token, access_token,
                    access_expires, access_lifetime, obtained_at, refreshed_at
             FROM oauth_tokens WHERE name = ?1",
            params![name],
            |r| {
                Ok(Tokens {
                    grant: r.get(0)?,
                    client_id: r.get(1)?,
                    token_url: r.get(2)?,
                    refresh_token: r.get::<_, Option<String>>(3)?.map(Password::new),
                    access_token: r.get::<_, Option<String>>(4)?.map(Password::new),
                    access_expires: r.get(5)?,
                    access_lifetime: r.get(6)?,
                    obtained_at: r.get(7)?,
                    refreshed_at: r.get(8)?,
                })
            },
        )
        .optional()?;
    Ok(row)
}

/// Writes `tokens` for `name` (one commit).
pub fn save(state: &mut State, name: &str, tokens: &Tokens) -> Result<()> {
    narrow_mode(state.path());
    state.conn.execute(
        "INSERT INTO oauth_tokens (name, grant_type, client_id, token_url, refresh_token,
             access_token, access_expires, access_lifetime, obtained_at, refreshed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (name) DO UPDATE SET
             grant_type = excluded.grant_type, client_id = excluded.client_id,
             token_url = excluded.token_url, refresh_token = excluded.refresh_token,
             access_token = excluded.access_token, access_expires = excluded.access_expires,
             access_lifetime = excluded.access_lifetime, obtained_at = excluded.obtained_at,
             refreshed_at = excluded.refreshed_at",
        params![
            name,
            tokens.grant,
            tokens.client_id,
            tokens.token_url,
            tokens.refresh_token.as_deref().map(String::as_str),
            tokens.access_token.as_deref().map(String::as_str),
            tokens.access_expires,
            tokens.access_lifetime,
            tokens.obtained_at,
            tokens.refreshed_at,
        ],
    )?;
    Ok(())
}

/// Drops the cached access token of `name` (the server refused it), so
/// the next connection obtains a fresh one.
pub fn drop_access_token(state: &mut State, name: &str) -> Result<()> {
    state.conn.execute(
        "UPDATE oauth_tokens SET access_token = NULL, access_expires = NULL WHERE name = ?1",
        params![name],
    )?;
    Ok(())
}

/// Forgets `name`'s tokens; whether there were any.
pub fn forget(state_dir: &Path, name: &str) -> Result<bool> {
    let state = State::open(state_dir)?;
    let n = state
        .conn
        .execute("DELETE FROM oauth_tokens WHERE name = ?1", params![name])?;
    Ok(n > 0)
}

/// state.db holds tokens from now on: nobody else may read it (the
/// WAL and shared-memory files SQLite creates take its mode).
fn narrow_mode(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        log::warn!(
            "{} was readable by others (mode {:03o}); it now holds OAuth2 tokens: narrowed to 0600",
            path.display(),
            mode & 0o777
        );
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
        }
    }
}

/// One line of `mailretr auth status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusLine {
    /// The account's or destination's name.
    pub name: String,
    /// google, microsoft or custom.
    pub provider: String,
    /// The grant.
    pub grant: String,
    /// `logged_in`, `not_logged_in` (authorization code without a
    /// refresh token), or `no_login_needed`.
    pub state: &'static str,
    /// Whether a refresh token is stored.
    pub refresh_token: bool,
    /// When the refresh token was obtained (Unix time).
    pub obtained_at: Option<i64>,
    /// When the cached access token expires (Unix time), if one is.
    pub access_expires: Option<i64>,
    /// Whether that access token is still valid now.
    pub access_valid: bool,
}

/// The token state of each of `configs`.
pub fn status(state_dir: &Path, configs: &[&OAuth2]) -> Result<Vec<StatusLine>> {
    let state = State::open(state_dir)?;
    let now = now();
    let mut lines = Vec::new();
    for c in configs {
        let tokens = load(&state, &c.name)?;
        let refresh = tokens.as_ref().is_some_and(|t| t.refresh_token.is_some());
        let access_expires = tokens
            .as_ref()
            .filter(|t| t.access_token.is_some())
            .and_then(|t| t.access_expires);
        lines.push(StatusLine {
            name: c.name.clone(),
            provider: c.provider.to_string(),
            grant: c.grant.to_string(),
            state: match (c.grant, refresh) {
                (Grant::AuthorizationCode, true) => "logged_in",
                (Grant::AuthorizationCode, false) => "not_logged_in",
                _ => "no_login_needed",
            },
            refresh_token: refresh,
            obtained_at: tokens.as_ref().filter(|_| refresh).map(|t| t.obtained_at),
            access_expires,
            access_valid: access_expires.is_some_and(|e| e > now),
        });
    }
    Ok(lines)
}

/// `auth status` as text: one line per name.
pub fn status_text(lines: &[StatusLine], now: i64) -> String {
    let when = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default()
    };
    let mut out = String::new();
    for l in lines {
        let state = match l.state {
            "logged_in" => format!(
                "logged in{}",
                l.obtained_at
                    .map(|t| format!(" since {}", when(t)))
                    .unwrap_or_default()
            ),
            "not_logged_in" => format!("not logged in: run `mailretr auth login {}`", l.name),
            _ => "no login needed".to_string(),
        };
        let access = match l.access_expires {
            Some(e) if e > now => {
                format!("access token valid until {} ({}s left)", when(e), e - now)
            }
            Some(e) => format!("access token expired at {}", when(e)),
            None => "no access token cached".to_string(),
        };
        out.push_str(&format!(
            "{}: {} {}: {state}; {access}\n",
            l.name, l.provider, l.grant
        ));
    }
    if lines.is_empty() {
        out.push_str("no account or destination uses oauth2\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_replace() {
        let mut s = State::in_memory().unwrap();
        assert!(load(&s, "a").unwrap().is_none());
        let mut t = Tokens {
            grant: "authorization_code".into(),
            refresh_token: Some(Password::new("r1".into())),
            access_token: Some(Password::new("a1".into())),
            access_expires: Some(100),
            obtained_at: 1,
            refreshed_at: 1,
            ..Tokens::default()
        };
        save(&mut s, "a", &t).unwrap();
        t.refresh_token = Some(Password::new("r2".into()));
        save(&mut s, "a", &t).unwrap();
        let back = load(&s, "a").unwrap().unwrap();
        assert_eq!(
            back.refresh_token.as_deref().map(String::as_str),
            Some("r2")
        );
        drop_access_token(&mut s, "a").unwrap();
        assert!(load(&s, "a").unwrap().unwrap().access_token.is_none());
    }
}
