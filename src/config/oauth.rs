//! Validating `oauth2 = { provider, client_id, tenant, auth_url,
//! token_url, device_url, scopes, client_secret_command, grant, key_file }`
//! into an [`OAuth2`] with the preset's endpoints and scopes filled in.
//! A preset's endpoints are not overridden: `provider = "custom"` is for
//! other endpoints.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::RawOAuth2;
use super::{expand_tilde, Ctx};
use crate::error::Result;
use crate::oauth::{self, Grant, OAuth2, Provider};

/// Validates the `oauth2` table at `key` of `name` (an account or a
/// destination) logging in as `user`. `state_dir` is filled in later.
pub(super) fn validate(
    ctx: &Ctx,
    o: &Spanned<RawOAuth2>,
    key: &str,
    name: &str,
    user: &str,
    timeout: Duration,
) -> Result<OAuth2> {
    let raw = o.get_ref();
    let k = |sub: &str| format!("{key}.{sub}");
    let provider = match raw.provider.get_ref().as_str() {
        "google" => Provider::Google,
        "microsoft" => Provider::Microsoft,
        "custom" => Provider::Custom,
        other => {
            return Err(ctx.at(
                &raw.provider,
                &k("provider"),
                format!("unknown provider {other:?}; expected google, microsoft or custom"),
            ))
        }
    };
    let grant = match raw.grant.as_ref().map(|g| (g, g.get_ref().as_str())) {
        None | Some((_, "authorization_code")) => Grant::AuthorizationCode,
        Some((_, "client_credentials")) => Grant::ClientCredentials,
        Some((_, "service_account")) => Grant::ServiceAccount,
        Some((g, other)) => {
            return Err(ctx.at(
                g,
                &k("grant"),
                format!("unknown grant {other:?}; expected authorization_code, client_credentials or service_account"),
            ))
        }
    };
    match (provider, grant, &raw.grant) {
        (Provider::Google, Grant::ClientCredentials, Some(g)) => {
            return Err(ctx.at(
                g,
                &k("grant"),
                "Google has no client credentials grant for mail; use service_account",
            ))
        }
        (Provider::Microsoft, Grant::ServiceAccount, Some(g)) => {
            return Err(ctx.at(
                g,
                &k("grant"),
                "service_account is Google's; Microsoft app-only access is client_credentials",
            ))
        }
        _ => {}
    }
    let text = |v: &Option<Spanned<String>>, sub: &str| -> Result<Option<String>> {
        match v {
            Some(s) if s.get_ref().trim().is_empty() => {
                Err(ctx.at(s, &k(sub), "must not be empty"))
            }
            Some(s) => Ok(Some(s.get_ref().trim().to_string())),
            None => Ok(None),
        }
    };
    let url = |v: &Option<Spanned<String>>, sub: &str| -> Result<Option<String>> {
        let Some(s) = v else { return Ok(None) };
        let parsed = url::Url::parse(s.get_ref().trim())
            .map_err(|e| ctx.at(s, &k(sub), format!("not a URL: {e}")))?;
        let loopback = matches!(
            parsed.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(parsed.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || parsed.host_str() == Some("localhost");
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(ctx.at(
                    s,
                    &k(sub),
                    "must be an https:// URL (http:// only to this machine)",
                ))
            }
        }
        Ok(Some(parsed.to_string()))
    };
    if provider != Provider::Custom {
        for (v, sub) in [
            (&raw.auth_url, "auth_url"),
            (&raw.token_url, "token_url"),
            (&raw.device_url, "device_url"),
        ] {
            if let Some(v) = v {
                return Err(ctx.at(
                    v,
                    &k(sub),
                    format!("the {provider} preset has its own endpoints; use provider = \"custom\" to name others"),
                ));
            }
        }
    }
    if let (Some(t), false) = (&raw.tenant, provider == Provider::Microsoft) {
        return Err(ctx.at(t, &k("tenant"), "applies to provider = \"microsoft\" only"));
    }
    let tenant = text(&raw.tenant, "tenant")?;
    let (auth_url, token_url, device_url) = match provider {
        Provider::Google => (
            Some(oauth::GOOGLE_AUTH_URL.to_string()),
            // A service account's key file names its token endpoint.
            (grant != Grant::ServiceAccount).then(|| oauth::GOOGLE_TOKEN_URL.to_string()),
            Some(oauth::GOOGLE_DEVICE_URL.to_string()),
        ),
        Provider::Microsoft => {
            let tenant = match (&tenant, grant) {
                (Some(t), Grant::ClientCredentials)
                    if matches!(t.as_str(), "common" | "organizations" | "consumers") =>
                {
                    return Err(ctx.at(
                        raw.tenant.as_ref().expect("a tenant was given"),
                        &k("tenant"),
                        "app-only access needs your tenant's id or domain, not common/organizations/consumers",
                    ))
                }
                (None, Grant::ClientCredentials) => {
                    return Err(ctx.at(
                        o,
                        &k("tenant"),
                        "client_credentials needs `tenant` (your directory's id or domain)",
                    ))
                }
                (Some(t), _) => t.clone(),
                (None, _) => "common".to_string(),
            };
            let [a, t, d] = oauth::microsoft_urls(&tenant);
            (Some(a), Some(t), Some(d))
        }
        Provider::Custom => {
            let token_url = url(&raw.token_url, "token_url")?;
            if token_url.is_none() && grant != Grant::ServiceAccount {
                return Err(ctx.at(
                    o,
                    &k("token_url"),
                    "provider = \"custom\" needs `token_url`",
                ));
            }
            (
                url(&raw.auth_url, "auth_url")?,
                token_url,
                url(&raw.device_url, "device_url")?,
            )
        }
    };
    let client_id = text(&raw.client_id, "client_id")?;
    if client_id.is_none() && grant != Grant::ServiceAccount {
        return Err(ctx.at(
            o,
            &k("client_id"),
            "needs `client_id` (the registered application's id)",
        ));
    }
    let client_secret_command = text(&raw.client_secret_command, "client_secret_command")?;
    if grant == Grant::ClientCredentials && client_secret_command.is_none() {
        return Err(ctx.at(
            o,
            &k("client_secret_command"),
            "client_credentials needs `client_secret_command` (a command printing the client secret)",
        ));
    }
    let key_file: Option<PathBuf> = match (&raw.key_file, grant) {
        (Some(f), Grant::ServiceAccount) => {
            let p = expand_tilde(f.get_ref());
            if !p.is_file() {
                return Err(ctx.at(f, &k("key_file"), format!("{} is not a file", p.display())));
            }
            Some(p)
        }
        (Some(f), _) => {
            return Err(ctx.at(
                f,
                &k("key_file"),
                "applies to grant = \"service_account\" only",
            ))
        }
        (None, Grant::ServiceAccount) => {
            return Err(ctx.at(
                o,
                &k("key_file"),
                "service_account needs `key_file` (the service account's JSON key)",
            ))
        }
        (None, _) => None,
    };
    let scopes = match &raw.scopes {
        Some(s)
            if s.get_ref()
                .iter()
                .any(|x| x.trim().is_empty() || x.contains(' ')) =>
        {
            return Err(ctx.at(s, &k("scopes"), "each scope is one word"))
        }
        Some(s) => s.get_ref().clone(),
        None => match (provider, grant) {
            (Provider::Google, _) => vec![oauth::GOOGLE_SCOPE.to_string()],
            (Provider::Microsoft, Grant::ClientCredentials) => {
                vec![oauth::MICROSOFT_APP_SCOPE.to_string()]
            }
            (Provider::Microsoft, _) => oauth::MICROSOFT_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            (Provider::Custom, _) => Vec::new(),
        },
    };
    Ok(OAuth2 {
        name: name.to_string(),
        provider,
        grant,
        client_id,
        client_secret_command,
        auth_url,
        token_url,
        device_url,
        scopes,
        key_file,
        user: user.to_string(),
        state_dir: PathBuf::new(),
        timeout,
    })
}
