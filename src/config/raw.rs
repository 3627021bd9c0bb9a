//! Serde structs that mirror the TOML file exactly. Nothing here is
//! validated beyond its TOML type; `config::validate` turns these into the
//! domain types the program runs on. Values whose errors must name a line
//! are kept `Spanned`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{AuthMech, Protocol, TlsMode};

/// The whole file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Glob patterns of further files holding `[[account]]` and
    /// `[destination.NAME]` tables, relative to this file's directory.
    pub include: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub general: RawGeneral,
    #[serde(default)]
    pub account: Vec<Spanned<RawAccount>>,
    #[serde(default)]
    pub destination: BTreeMap<String, Spanned<RawDestination>>,
    /// `[outgoing]` (see `config::outgoing`).
    pub outgoing: Option<Spanned<super::outgoing::RawOutgoing>>,
    /// `[[accounts_from]]`: accounts read from a database or a directory
    /// (see `config::backends`).
    #[serde(default)]
    pub accounts_from: Vec<Spanned<RawAccountsFrom>>,
    /// `[report]`: per-account results written to a database table.
    pub report: Option<Spanned<RawReport>>,
}

/// One `[[accounts_from]]`. The keys of both types are optional here;
/// which apply to which type is checked in validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccountsFrom {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub url: Spanned<String>,
    pub password: Option<Spanned<String>>,
    pub password_command: Option<Spanned<String>>,
    pub query: Option<Spanned<String>>,
    pub defaults: Option<Spanned<toml::Table>>,
    pub cache: Option<bool>,
    pub timeout: Option<Spanned<String>>,
    pub starttls: Option<Spanned<bool>>,
    pub ca_file: Option<Spanned<String>>,
    pub bind_dn: Option<Spanned<String>>,
    pub base: Option<Spanned<String>>,
    pub filter: Option<Spanned<String>>,
    pub attributes: Option<Spanned<BTreeMap<String, String>>>,
}

/// `[report]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    pub url: Spanned<String>,
    pub table: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_command: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

/// `[general]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGeneral {
    pub state_dir: Option<Spanned<String>>,
    pub jobs: Option<Spanned<i64>>,
    pub hostname: Option<Spanned<String>>,
    pub postmaster: Option<Spanned<String>>,
    pub bounce_from: Option<Spanned<String>>,
    pub spool_max_age: Option<Spanned<String>>,
    pub retry_delay: Option<Spanned<String>>,
    pub retry_max_delay: Option<Spanned<String>>,
    pub bounce_via: Option<Spanned<String>>,
    pub add_received: Option<bool>,
    pub timeout: Option<Spanned<String>>,
    pub audit_log: Option<Spanned<String>>,
    pub metrics_file: Option<Spanned<String>>,
    pub log: Option<Spanned<String>>,
    pub idle_renew: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<String>>,
    pub max_idle_connections: Option<Spanned<i64>>,
    pub max_connections_per_host: Option<Spanned<i64>>,
}

/// One `[[account]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: Spanned<String>,
    pub protocol: Spanned<Protocol>,
    pub host: Spanned<String>,
    pub port: Option<Spanned<i64>>,
    pub tls: Option<TlsMode>,
    pub allow_plaintext: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
    pub fingerprint: Option<Spanned<String>>,
    pub user: Spanned<String>,
    pub password: Option<Spanned<String>>,
    pub password_command: Option<Spanned<String>>,
    pub auth: Option<Vec<AuthMech>>,
    pub folders: Option<Spanned<Vec<String>>>,
    pub keep: Option<bool>,
    pub fetch_all: Option<bool>,
    pub max_size: Option<Spanned<String>>,
    pub deliver_to: Option<Vec<Spanned<String>>>,
    pub add_received: Option<bool>,
    pub timeout: Option<Spanned<String>>,
    pub pipeline_depth: Option<Spanned<i64>>,
    pub oauth2_token_command: Option<Spanned<String>>,
    pub oauth2: Option<Spanned<RawOAuth2>>,
    pub mark_seen: Option<Spanned<bool>>,
    pub only_unseen: Option<Spanned<bool>>,
    pub move_to: Option<Spanned<String>>,
    pub fetch_limit: Option<Spanned<i64>>,
    pub max_bytes_per_run: Option<Spanned<String>>,
    pub delete_after: Option<Spanned<String>>,
    pub delete_bigger_than: Option<Spanned<String>>,
    pub transcript: Option<Spanned<String>>,
    pub multidrop: Option<Spanned<RawMultidrop>>,
    pub on_refused: Option<Spanned<String>>,
    pub dedup: Option<Spanned<String>>,
    pub idle_renew: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<String>>,
    pub max_idle_connections: Option<Spanned<i64>>,
    pub max_connections_per_host: Option<Spanned<i64>>,
    pub proxy: Option<Spanned<String>>,
    pub source_ip: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    pub compress: Option<Spanned<bool>>,
    pub tunnel: Option<Spanned<Vec<String>>>,
    /// `rule = [...]` or `[[account.rule]]` (see `config::filter`).
    pub rule: Option<Vec<Spanned<RawRule>>>,
    pub filter_command: Option<Spanned<Vec<String>>>,
    pub filter_timeout: Option<Spanned<String>>,
}

/// One rule of an account: `{ header, matches, action | deliver_to }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub header: Spanned<String>,
    pub matches: Spanned<String>,
    pub action: Option<Spanned<String>>,
    pub deliver_to: Option<Spanned<Vec<Spanned<String>>>>,
}

/// One `[destination.NAME]`. Every type's keys are optional here; which
/// apply to which type is checked in validation, so a misplaced key gets
/// an error naming it rather than a generic "unknown variant".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub filename: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub tls: Option<Spanned<TlsMode>>,
    pub allow_plaintext: Option<Spanned<bool>>,
    pub ca_file: Option<Spanned<String>>,
    pub fingerprint: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_command: Option<Spanned<String>>,
    pub auth: Option<Spanned<Vec<AuthMech>>>,
    pub oauth2: Option<Spanned<RawOAuth2>>,
    pub recipient: Option<Spanned<String>>,
    pub sender: Option<Spanned<String>>,
    pub socket: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub folder: Option<Spanned<String>>,
    pub subfolders: Option<Spanned<String>>,
    pub flags: Option<Spanned<bool>>,
    pub proxy: Option<Spanned<String>>,
    pub source_ip: Option<Spanned<String>>,
    pub compress: Option<Spanned<bool>>,
    pub tunnel: Option<Spanned<Vec<String>>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
}

impl RawDestination {
    /// The keys given (besides `type`), with where each is, so validation
    /// can refuse those that do not apply to the type.
    pub fn present_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        fn at<T>(
            k: &'static str,
            v: &Option<Spanned<T>>,
        ) -> Option<(&'static str, std::ops::Range<usize>)> {
            v.as_ref().map(|v| (k, v.span()))
        }
        [
            at("path", &self.path),
            at("filename", &self.filename),
            at("host", &self.host),
            at("port", &self.port),
            at("tls", &self.tls),
            at("allow_plaintext", &self.allow_plaintext),
            at("ca_file", &self.ca_file),
            at("fingerprint", &self.fingerprint),
            at("timeout", &self.timeout),
            at("user", &self.user),
            at("password", &self.password),
            at("password_command", &self.password_command),
            at("auth", &self.auth),
            at("oauth2", &self.oauth2),
            at("recipient", &self.recipient),
            at("sender", &self.sender),
            at("socket", &self.socket),
            at("command", &self.command),
            at("folder", &self.folder),
            at("subfolders", &self.subfolders),
            at("flags", &self.flags),
            at("proxy", &self.proxy),
            at("source_ip", &self.source_ip),
            at("compress", &self.compress),
            at("tunnel", &self.tunnel),
            at("client_cert", &self.client_cert),
            at("client_key", &self.client_key),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// `multidrop = { ... }` on an account.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMultidrop {
    pub envelope_header: Option<Spanned<String>>,
    pub to_cc: Option<bool>,
    pub local_domains: Spanned<Vec<String>>,
    pub aliases: Option<BTreeMap<String, String>>,
}

/// `oauth2 = { ... }` on an account or an IMAP/SMTP destination.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth2 {
    pub provider: Spanned<String>,
    pub client_id: Option<Spanned<String>>,
    pub tenant: Option<Spanned<String>>,
    pub auth_url: Option<Spanned<String>>,
    pub token_url: Option<Spanned<String>>,
    pub device_url: Option<Spanned<String>>,
    pub scopes: Option<Spanned<Vec<String>>>,
    pub client_secret_command: Option<Spanned<String>>,
    pub grant: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}
