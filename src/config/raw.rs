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
    #[serde(default)]
    pub general: RawGeneral,
    #[serde(default)]
    pub account: Vec<Spanned<RawAccount>>,
    #[serde(default)]
    pub destination: BTreeMap<String, Spanned<RawDestination>>,
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
    pub add_received: Option<bool>,
    pub timeout: Option<Spanned<String>>,
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
    pub mark_seen: Option<Spanned<bool>>,
    pub only_unseen: Option<Spanned<bool>>,
    pub move_to: Option<Spanned<String>>,
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
}
