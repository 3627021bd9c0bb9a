//! The one HTTP request OAuth needs: a form POST to a token (or device)
//! endpoint, answered with JSON (RFC 6749 sections 5.1 and 5.2). `ureq`
//! with native-tls, so the system's trust store applies as for the mail
//! servers. Neither the request body nor a response body ever goes into
//! an error: only the endpoint, the HTTP status and the RFC 6749 `error`
//! code with its description.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest response read (a token response is a few KiB).
const MAX_RESPONSE: u64 = 256 * 1024;

/// A successful token endpoint answer (RFC 6749 section 5.1), or a
/// device authorization answer (RFC 8628 section 3.2): the fields of both.
#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<serde_json::Value>,
    pub device_code: Option<String>,
    pub user_code: Option<String>,
    /// RFC 8628's name.
    pub verification_uri: Option<String>,
    /// Google's name for it.
    pub verification_url: Option<String>,
    pub interval: Option<serde_json::Value>,
}

impl Reply {
    /// `expires_in` in seconds: a number, or a string holding one (some
    /// Microsoft endpoints send strings).
    pub fn expires_in(&self) -> Option<i64> {
        number(self.expires_in.as_ref())
    }

    /// The device grant's polling `interval`.
    pub fn interval(&self) -> Option<i64> {
        number(self.interval.as_ref())
    }
}

fn number(v: Option<&serde_json::Value>) -> Option<i64> {
    match v? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An error answer (RFC 6749 section 5.2).
#[derive(Debug, Default, Deserialize)]
struct ErrorReply {
    error: Option<String>,
    error_description: Option<String>,
}

/// Why a request failed.
#[derive(Debug)]
pub enum Failed {
    /// The endpoint answered with an RFC 6749 error code (`invalid_grant`,
    /// `authorization_pending`, ...), and its description.
    OAuth { code: String, description: String },
    /// Anything else, already a library error.
    Other(Error),
}

impl Failed {
    /// The error code, for `OAuth`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Failed::OAuth { code, .. } => Some(code),
            Failed::Other(_) => None,
        }
    }

    /// As a library error: an OAuth error code is an authentication
    /// failure, except `temporarily_unavailable` and `server_error`.
    pub fn into_error(self, what: &str) -> Error {
        match self {
            Failed::OAuth { code, description } => {
                let text = if description.is_empty() {
                    format!("{what}: {code}")
                } else {
                    format!("{what}: {code}: {}", clip(&description))
                };
                if matches!(code.as_str(), "temporarily_unavailable" | "server_error") {
                    Error::Server(text)
                } else {
                    Error::Auth(text)
                }
            }
            Failed::Other(e) => e,
        }
    }
}

/// At most one line of 200 characters of a server's description.
fn clip(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

/// POSTs `form` to `url` and parses the JSON answer.
pub fn post_form(url: &str, form: &[(&str, &str)], timeout: Duration) -> Result<Reply, Failed> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("mailretr/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .provider(ureq::tls::TlsProvider::NativeTls)
                    .build(),
            )
            .build(),
    );
    let endpoint = endpoint_of(url);
    let mut response = agent
        .post(url)
        .header("Accept", "application/json")
        .send_form(form.iter().copied())
        .map_err(|e| Failed::Other(transport_error(&endpoint, e)))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE)
        .read_to_vec()
        .map_err(|e| Failed::Other(transport_error(&endpoint, e)))?;
    if (200..300).contains(&status) {
        return serde_json::from_slice(&body).map_err(|_| {
            Failed::Other(Error::Protocol(format!(
                "{endpoint}: the answer is not the JSON an OAuth2 endpoint sends"
            )))
        });
    }
    match serde_json::from_slice::<ErrorReply>(&body) {
        Ok(ErrorReply {
            error: Some(code),
            error_description,
        }) => Err(Failed::OAuth {
            code,
            description: error_description.unwrap_or_default(),
        }),
        _ if status >= 500 => Err(Failed::Other(Error::Server(format!(
            "{endpoint}: HTTP {status}"
        )))),
        _ => Err(Failed::Other(Error::Auth(format!(
            "{endpoint}: HTTP {status}"
        )))),
    }
}

/// The URL without its query (which could carry a code).
pub fn endpoint_of(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_string()
}

fn transport_error(endpoint: &str, e: ureq::Error) -> Error {
    let context = format!("OAuth2 endpoint {endpoint}");
    match e {
        ureq::Error::Io(io) => Error::net(context, io),
        ureq::Error::Timeout(_) => Error::Timeout(context),
        ureq::Error::Tls(t) => Error::Tls(format!("{context}: {t}")),
        ureq::Error::NativeTls(t) => Error::Tls(format!("{context}: {t}")),
        ureq::Error::Protocol(p) => Error::Protocol(format!("{context}: {p}")),
        other => Error::Network {
            context,
            source: std::io::Error::other(other.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_or_strings() {
        let r: Reply = serde_json::from_str(r#"{"expires_in":"3599","interval":5}"#).unwrap();
        assert_eq!(r.expires_in(), Some(3599));
        assert_eq!(r.interval(), Some(5));
    }

    #[test]
    fn errors_keep_only_code_and_description() {
        let e = Failed::OAuth {
            code: "invalid_grant".into(),
            description: "Token has been revoked.\nTrace: 1234".into(),
        }
        .into_error("refresh");
        assert_eq!(
            e.to_string(),
            "authentication failed: refresh: invalid_grant: Token has been revoked."
        );
        assert_eq!(
            endpoint_of("https://x/token?code=secret"),
            "https://x/token"
        );
    }
}
