//! Configuration: the TOML file (see `raw`) is parsed once and validated
//! once into the plain types below, before any connection is made. Every
//! error names the file, the line and the key. After `load` returns, the
//! rest of the program never re-checks the config.

mod backends;
mod delivery;
mod filter;
pub use filter::cannot_take;
mod include;
mod oauth;
mod outgoing;
mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};
pub use crate::retention::Retention;
pub use backends::{
    account_from_row, AccountsFrom, BackendKind, Database, Field, ReportConfig, RowField, SqlKind,
};
pub use delivery::{
    DestinationConfig, ImapAppendConfig, LmtpConfig, LmtpTarget, MdaConfig, Multidrop, OnRefused,
    SmtpConfig, Subfolders, ENVELOPE_HEADERS,
};
pub use outgoing::{identity_matches, Identity, Outgoing, Route};
use raw::{RawAccount, RawConfig, RawDestination};

/// Which protocol an account speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// POP3 (RFC 1939).
    Pop3,
    /// IMAP4rev1 (RFC 3501).
    Imap,
}

impl Protocol {
    /// The conventional port for this protocol and TLS mode.
    pub fn default_port(self, tls: TlsMode) -> u16 {
        match (self, tls) {
            (Protocol::Pop3, TlsMode::Implicit) => 995,
            (Protocol::Pop3, _) => 110,
            (Protocol::Imap, TlsMode::Implicit) => 993,
            (Protocol::Imap, _) => 143,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Pop3 => "pop3",
            Protocol::Imap => "imap",
        })
    }
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (ports 995, 993).
    #[default]
    Implicit,
    /// Plain connection upgraded with STLS/STARTTLS, which must succeed.
    Starttls,
    /// No encryption at all.
    None,
}

/// An authentication mechanism, as named in the `auth` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthMech {
    /// SASL SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SASL CRAM-MD5 (RFC 2195).
    #[serde(rename = "cram-md5")]
    CramMd5,
    /// POP3 APOP (RFC 1939 section 7).
    #[serde(rename = "apop")]
    Apop,
    /// SASL PLAIN (RFC 4616).
    #[serde(rename = "plain")]
    Plain,
    /// IMAP LOGIN or SASL LOGIN.
    #[serde(rename = "login")]
    Login,
    /// POP3 USER/PASS.
    #[serde(rename = "user")]
    User,
    /// SASL XOAUTH2 (Gmail, Microsoft 365), with the token from
    /// `oauth2_token_command`.
    #[serde(rename = "xoauth2")]
    XOAuth2,
    /// SASL OAUTHBEARER (RFC 7628), with the token from
    /// `oauth2_token_command`.
    #[serde(rename = "oauthbearer")]
    OAuthBearer,
    /// SASL EXTERNAL (RFC 4422 appendix A): the identity is the TLS
    /// client certificate (`client_cert`); no password is sent.
    #[serde(rename = "external")]
    External,
}

impl AuthMech {
    /// The order tried when the config does not say: strongest first.
    /// Not APOP, used only when `auth` names it: POP3 servers send an APOP
    /// timestamp whether or not the user has an APOP secret.
    pub const DEFAULT_ORDER: [AuthMech; 5] = [
        AuthMech::ScramSha256,
        AuthMech::CramMd5,
        AuthMech::Plain,
        AuthMech::Login,
        AuthMech::User,
    ];

    /// The order tried when `oauth2_token_command` is set and the config
    /// names no `auth`: the token mechanisms first.
    pub const OAUTH_ORDER: [AuthMech; 2] = [AuthMech::OAuthBearer, AuthMech::XOAuth2];

    /// Whether a successful exchange proves that the server knows the
    /// password (SCRAM's server signature).
    pub fn proves_server(self) -> bool {
        self == AuthMech::ScramSha256
    }

    /// Whether the password itself goes over the connection.
    pub fn sends_password(self) -> bool {
        matches!(self, AuthMech::Plain | AuthMech::Login | AuthMech::User)
    }

    /// Whether this mechanism sends an OAuth 2.0 token rather than a password.
    pub fn uses_token(self) -> bool {
        matches!(self, AuthMech::XOAuth2 | AuthMech::OAuthBearer)
    }
}

impl fmt::Display for AuthMech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMech::ScramSha256 => "scram-sha-256",
            AuthMech::CramMd5 => "cram-md5",
            AuthMech::Apop => "apop",
            AuthMech::Plain => "plain",
            AuthMech::Login => "login",
            AuthMech::User => "user",
            AuthMech::XOAuth2 => "xoauth2",
            AuthMech::OAuthBearer => "oauthbearer",
            AuthMech::External => "external",
        })
    }
}

/// Where the password comes from. It is only read when a connection is
/// made, so a `password_command` runs fresh each time.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in the config file (or given in `MAILRETR_PASSWORD`);
    /// wiped from memory when the config is dropped.
    Literal(zeroize::Zeroizing<String>),
    /// The first line of this shell command's output.
    Command(String),
    /// No password configured.
    None,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("Literal(<redacted>)"),
            Secret::Command(c) => write!(f, "Command({c:?})"),
            Secret::None => f.write_str("None"),
        }
    }
}

/// How to reach and trust a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Host name or address; also the name the certificate must match.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Implicit TLS, STARTTLS or none.
    pub tls: TlsMode,
    /// An extra trust anchor (PEM).
    pub ca_file: Option<PathBuf>,
    /// A SHA-256 certificate pin, raw bytes. When set, the pin is what is
    /// trusted, not the certificate chain.
    pub fingerprint: Option<Vec<u8>>,
    /// Connect and read timeout.
    pub timeout: Duration,
    /// A SOCKS5 or HTTP CONNECT proxy to reach the server through.
    pub proxy: Option<crate::net::proxy::Proxy>,
    /// The local address to connect from.
    pub source_ip: Option<std::net::IpAddr>,
    /// A command to speak the protocol through instead of a TCP
    /// connection (`tunnel = ["ssh", "host", "nc %h %p"]`).
    pub tunnel: Option<crate::net::tunnel::Tunnel>,
    /// IMAP: use COMPRESS=DEFLATE (RFC 4978) when the server offers it.
    pub compress: bool,
    /// A TLS client certificate to present (`client_cert`/`client_key`).
    pub client_cert: Option<Box<ClientCert>>,
}

/// A TLS client certificate and its private key (PEM files, checked at
/// config load: both readable, the key unencrypted and matching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate, optionally followed by its intermediates.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// One mailbox to fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Unique name, used on the command line and in the state database.
    pub name: String,
    /// POP3 or IMAP.
    pub protocol: Protocol,
    /// Where the server is and how to trust it.
    pub server: ServerConfig,
    /// Login name.
    pub user: String,
    /// Where the password comes from.
    pub secret: Secret,
    /// Mechanisms to try, in order.
    pub auth: Vec<AuthMech>,
    /// Whether `auth` came from the config (then only those are tried).
    pub auth_explicit: bool,
    /// IMAP folder patterns (`INBOX`, `Lists/*`, `!Lists/spam`).
    pub folders: Vec<String>,
    /// Leave mail on the server after delivery.
    pub keep: bool,
    /// Ignore the seen-state and fetch everything.
    pub fetch_all: bool,
    /// Skip (and report) larger messages.
    pub max_size: Option<u64>,
    /// Destination names, in order.
    pub deliver_to: Vec<String>,
    /// Whether to prepend a `Received:` trace header.
    pub add_received: bool,
    /// How many POP3 commands may be outstanding when the server pipelines.
    pub pipeline_depth: usize,
    /// The shell command printing an OAuth 2.0 access token for
    /// XOAUTH2/OAUTHBEARER (run fresh on every connection).
    pub oauth2_token_command: Option<String>,
    /// Built-in OAuth2 (`oauth2 = { ... }`): where XOAUTH2/OAUTHBEARER
    /// tokens come from (see `crate::oauth`).
    pub oauth2: Option<crate::oauth::OAuth2>,
    /// IMAP: set `\Seen` on the server after delivery (otherwise the
    /// server's flags are left as they were).
    pub mark_seen: bool,
    /// IMAP: fetch only messages without `\Seen`.
    pub only_unseen: bool,
    /// IMAP: after delivery move messages to this folder (written with
    /// `/`) instead of deleting them.
    pub move_to: Option<String>,
    /// At most this many messages per run; the rest wait (exit 13).
    pub fetch_limit: Option<u64>,
    /// Stop starting new messages once this many bytes were fetched in a
    /// run; the rest wait (exit 13).
    pub max_bytes_per_run: Option<u64>,
    /// With `keep`: what is deleted from the server all the same, once
    /// the state records it as delivered (`delete_after`,
    /// `delete_bigger_than`).
    pub retention: Retention,
    /// Append this account's protocol transcript (secrets redacted) here.
    pub transcript: Option<PathBuf>,
    /// How `mailretr watch` keeps an eye on this account.
    pub watch: WatchSettings,
    /// Multidrop: recipients come from the message's envelope header.
    /// `None` is single-drop (the account's `user`, or a destination's
    /// fixed `recipient`).
    pub multidrop: Option<Multidrop>,
    /// What happens to a message an SMTP/LMTP destination refused for
    /// good before its body was downloaded.
    pub on_refused: OnRefused,
    /// `dedup`: a Message-ID is delivered at most once per recipient
    /// within this window (`None`: no suppression).
    pub dedup: Option<Duration>,
    /// `max_connections_per_host` of this account, in place of
    /// `[general]`'s (see `Account::connection_limit`).
    pub max_connections_per_host: Option<usize>,
    /// `rule` and `filter_command`: what becomes of a message, decided
    /// on its header before the body is downloaded.
    pub filter: crate::filter::Filter,
}

impl Account {
    /// The most source connections to this account's server that may be
    /// open at once (its own `max_connections_per_host`, else
    /// `[general]`'s); when accounts on one host differ, the smallest
    /// applies (`crate::slots`).
    pub fn connection_limit(&self, general: &General) -> usize {
        self.max_connections_per_host
            .unwrap_or(general.max_connections_per_host)
    }
}

/// How `mailretr watch` keeps an eye on an account: `[general]` gives the
/// defaults, an `[[account]]` may override each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// `idle_renew`: an IMAP IDLE is ended and issued again this often
    /// (RFC 2177 section 3 advises at most 29 minutes).
    pub idle_renew: Duration,
    /// `poll_interval`: accounts and folders not watched with IDLE (POP3,
    /// servers without IDLE, folders over the limit) are fetched this often.
    pub poll_interval: Duration,
    /// `max_idle_connections`: IMAP folders watched with their own IDLE
    /// connection; the rest are polled. 0 polls every folder.
    pub max_idle_connections: usize,
}

impl Default for WatchSettings {
    fn default() -> WatchSettings {
        WatchSettings {
            idle_renew: Duration::from_secs(29 * 60),
            poll_interval: Duration::from_secs(5 * 60),
            max_idle_connections: 5,
        }
    }
}

/// Reads `idle_renew`, `poll_interval` and `max_idle_connections` from a
/// table, each falling back to `defaults`; `prefix` names the table in
/// errors (`general.`, `account[isp].`).
fn watch_settings(
    ctx: &Ctx,
    prefix: &str,
    idle_renew: &Option<Spanned<String>>,
    poll_interval: &Option<Spanned<String>>,
    max_idle_connections: &Option<Spanned<i64>>,
    defaults: WatchSettings,
) -> Result<WatchSettings> {
    let at_least_a_second = |value: &Option<Spanned<String>>, key: &str, default: Duration| {
        let Some(v) = value else {
            return Ok(default);
        };
        let key = format!("{prefix}{key}");
        let d = parse_duration(ctx, v, &key)?;
        if d < Duration::from_secs(1) {
            return Err(ctx.at(v, &key, "must be at least 1s"));
        }
        Ok(d)
    };
    Ok(WatchSettings {
        idle_renew: at_least_a_second(idle_renew, "idle_renew", defaults.idle_renew)?,
        poll_interval: at_least_a_second(poll_interval, "poll_interval", defaults.poll_interval)?,
        max_idle_connections: match max_idle_connections {
            Some(n) if !(0..=100).contains(n.get_ref()) => {
                return Err(ctx.at(
                    n,
                    &format!("{prefix}max_idle_connections"),
                    "must be between 0 and 100",
                ))
            }
            Some(n) => *n.get_ref() as usize,
            None => defaults.max_idle_connections,
        },
    })
}

/// `[general]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct General {
    /// Where `state.db` and the account locks live.
    pub state_dir: PathBuf,
    /// Accounts fetched in parallel.
    pub jobs: usize,
    /// Our name, for `Received:` headers and EHLO/LHLO.
    pub hostname: String,
    /// Who is told about undeliverable mail.
    pub postmaster: Option<String>,
    /// `From:` of generated bounces.
    pub bounce_from: Option<String>,
    /// How long a spooled message is retried before it bounces.
    pub spool_max_age: Duration,
    /// The first wait before a spooled message is retried; it doubles
    /// with each failure.
    pub retry_delay: Duration,
    /// The longest wait between retries.
    pub retry_max_delay: Duration,
    /// The destination (smtp or mda) bounces are sent through; when unset,
    /// the account's first smtp destination.
    pub bounce_via: Option<String>,
    /// One line per message delivered, spooled, refused, bounced or
    /// skipped is appended here (see `crate::audit`).
    pub audit_log: Option<PathBuf>,
    /// Where `fetch` and `watch` write Prometheus metrics (`crate::metrics`).
    pub metrics_file: Option<PathBuf>,
    /// Where warnings, errors and summaries go (`log`).
    pub log: LogTarget,
    /// `max_connections_per_host`: source connections open at once to one
    /// server, over all accounts of the process (`crate::slots`).
    pub max_connections_per_host: usize,
}

/// `[general] log`: where warnings, errors and per-account summaries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// stderr only (the default).
    #[default]
    Stderr,
    /// syslog (facility mail, ident mailretr) instead of stderr, as
    /// fetchmail's `set syslog`; an error before the config is read still
    /// goes to stderr.
    Syslog,
    /// Both.
    Both,
}

impl LogTarget {
    /// Whether lines go to syslog.
    pub fn syslog(self) -> bool {
        self != LogTarget::Stderr
    }
    /// Whether lines go to stderr.
    pub fn stderr(self) -> bool {
        self != LogTarget::Syslog
    }
}

impl General {
    /// The `From:` of generated bounces: `bounce_from`, else
    /// `MAILER-DAEMON@` our hostname.
    pub fn bounce_sender(&self) -> String {
        self.bounce_from
            .clone()
            .unwrap_or_else(|| format!("MAILER-DAEMON@{}", self.hostname))
    }
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, if any (ad-hoc runs have none).
    pub path: Option<PathBuf>,
    /// `[general]`.
    pub general: General,
    /// Accounts in file order.
    pub accounts: Vec<Account>,
    /// Destinations by name.
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// `[outgoing]`: where `mailretr sendmail` sends mail, if anywhere.
    pub outgoing: Option<Outgoing>,
    /// `[[accounts_from]]`: backends whose rows become more accounts
    /// (queried by `crate::backends`, not by `load`).
    pub accounts_from: Vec<AccountsFrom>,
    /// `[report]`: where each account's last run is written.
    pub report: Option<ReportConfig>,
    /// What `[general]` gives every account, kept for validating backend
    /// rows after `load`.
    pub account_defaults: AccountDefaults,
    /// The accounts that came from a backend (added by
    /// `crate::backends::load_accounts`), with the backend's label.
    pub backend_accounts: BTreeMap<String, String>,
}

/// The account settings `[general]` provides defaults for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountDefaults {
    /// `timeout`.
    pub timeout: Duration,
    /// `add_received`.
    pub add_received: bool,
    /// `idle_renew`, `poll_interval`, `max_idle_connections`.
    pub watch: WatchSettings,
}

impl Default for AccountDefaults {
    fn default() -> AccountDefaults {
        AccountDefaults {
            timeout: Duration::from_secs(60),
            add_received: true,
            watch: WatchSettings::default(),
        }
    }
}

/// The name of the destination used when an account names none.
pub const DEFAULT_DESTINATION: &str = "default";

/// The default config file: `$XDG_CONFIG_HOME/mailretr/config.toml`.
pub fn default_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_else(|| home().join(".config"))
        .join("mailretr")
        .join("config.toml")
}

/// The default state directory: `$XDG_STATE_HOME/mailretr`.
pub fn default_state_dir() -> PathBuf {
    dirs::state_dir()
        .unwrap_or_else(|| home().join(".local").join("state"))
        .join("mailretr")
}

fn home() -> PathBuf {
    dirs::home_dir().unwrap_or_else(|| PathBuf::from("/"))
}

/// A path from a config file: `~/` is the home directory, and a relative
/// path is taken from the directory of the file that names it (not the
/// working directory, which under cron is anyone's guess).
pub fn relative_to(config_file: &Path, path: &str) -> PathBuf {
    let p = expand_tilde(path.trim());
    match config_file.parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    }
}

/// Expands a leading `~/` to the home directory.
pub fn expand_tilde(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if path == "~" => home(),
        None => PathBuf::from(path),
    }
}

/// The host name for `Received:` headers when the config names none.
pub fn system_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it or truncates, and we stop at the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Reads, checks and validates a config file.
///
/// A file (the main one or an included one) that group or others may
/// write, or that someone other than the user (or root) owns, is refused
/// whatever it holds: its `password_command`, `oauth2_token_command` and
/// MDA commands run as the user. A file that holds a password and is
/// readable by group or others is refused too, as fetchmail does. Each
/// refusal says how to fix it.
pub fn load(path: &Path) -> Result<Config> {
    let text = fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("{}: cannot read config: {e}", path.display())))?;
    let (config, with_password, all) = parse_with_files(&text, path)?;
    // SAFETY: geteuid(2) has no preconditions.
    let me = unsafe { libc::geteuid() };
    for path in &all {
        let meta =
            fs::metadata(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return Err(Error::UnsafePermissions(format!(
                "{}: others may write it (mode {:03o}), and the commands it names run as you; fix with: chmod go-w {}",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(Error::UnsafePermissions(format!(
                "{}: owned by uid {}, not by you (uid {me}), and the commands it names would run as you; fix with: chown {me} {}",
                path.display(),
                meta.uid(),
                path.display()
            )));
        }
    }
    for path in &with_password {
        let path = path.as_path();
        let mode = fs::metadata(path)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::UnsafePermissions(format!(
                "{}: holds a password but is readable by others (mode {:03o}); fix with: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    Ok(config)
}

/// Parses and validates config text; `path` is used in messages and to
/// find the files named by `include`.
pub fn parse(text: &str, path: &Path) -> Result<Config> {
    parse_with_files(text, path).map(|(config, _, _)| config)
}

/// `parse`, also returning every file read (the main one or an included
/// one) that holds a `password`, for the permission check.
fn parse_with_files(text: &str, path: &Path) -> Result<(Config, Vec<PathBuf>, Vec<PathBuf>)> {
    let ctx = Ctx {
        text,
        path,
        row: None,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
    let files = match &raw.include {
        Some(patterns) => include::read_files(patterns.get_ref(), path, &|m| {
            ctx.at(patterns, "include", m)
        })?,
        None => Vec::new(),
    };
    let mut included = Vec::new();
    for (file, text) in &files {
        let ctx = Ctx {
            text,
            path: file,
            row: None,
        };
        let raw: include::RawIncluded = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
        included.push((ctx, raw));
    }
    // Accounts and the destinations that log in (smtp, imap) may hold one.
    let has_password =
        |accounts: &[Spanned<RawAccount>],
         destinations: &BTreeMap<String, Spanned<RawDestination>>| {
            accounts.iter().any(|a| a.get_ref().password.is_some())
                || destinations
                    .values()
                    .any(|d| d.get_ref().password.is_some())
        };
    let mut with_password = Vec::new();
    if has_password(&raw.account, &raw.destination)
        || backends::has_password(&raw.accounts_from, raw.report.as_ref())
    {
        with_password.push(path.to_path_buf());
    }
    for (ctx, raw) in &included {
        if has_password(&raw.account, &raw.destination) {
            with_password.push(ctx.path.to_path_buf());
        }
    }
    let config = validate(raw, &ctx, &included, Some(path.to_path_buf()))?;
    let all = std::iter::once(path.to_path_buf())
        .chain(files.iter().map(|(p, _)| p.clone()))
        .collect();
    Ok((config, with_password, all))
}

/// Where errors point: the file's text (to turn byte spans into lines) and name.
struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
    /// Set when the text is a backend row written out as TOML: errors
    /// then name the backend, row and column instead of file and line.
    row: Option<&'a backends::RowContext>,
}

impl Ctx<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(&self, span: std::ops::Range<usize>, key: &str, msg: impl fmt::Display) -> Error {
        if let Some(row) = self.row {
            return row.message(Some(self.line_of(span.start)), key, &msg.to_string());
        }
        Error::Config(format!(
            "{}:{}: {key}: {msg}",
            self.path.display(),
            self.line_of(span.start)
        ))
    }

    fn at<T>(&self, value: &Spanned<T>, key: &str, msg: impl fmt::Display) -> Error {
        self.err(value.span(), key, msg)
    }

    fn toml_error(&self, e: &toml::de::Error) -> Error {
        let message = e.message().trim_end();
        if let Some(row) = self.row {
            return row.message(e.span().map(|s| self.line_of(s.start)), "", message);
        }
        match e.span() {
            Some(span) => {
                let line = self.line_of(span.start);
                let key = self
                    .text
                    .lines()
                    .nth(line - 1)
                    .and_then(|l| l.split_once('='))
                    .map(|(k, _)| k.trim().to_string())
                    .filter(|k| !k.is_empty() && !k.starts_with('['));
                match key {
                    Some(key) => {
                        Error::Config(format!("{}:{line}: {key}: {message}", self.path.display()))
                    }
                    None => Error::Config(format!("{}:{line}: {message}", self.path.display())),
                }
            }
            None => Error::Config(format!("{}: {message}", self.path.display())),
        }
    }
}

fn parse_size(ctx: &Ctx, value: &Spanned<String>, key: &str) -> Result<u64> {
    value
        .get_ref()
        .trim()
        .parse::<bytesize::ByteSize>()
        .map(|s| s.as_u64())
        .map_err(|e| ctx.at(value, key, format!("not a size ({e}); try \"25MB\"")))
}

fn parse_duration(ctx: &Ctx, value: &Spanned<String>, key: &str) -> Result<Duration> {
    humantime::parse_duration(value.get_ref().trim()).map_err(|e| {
        ctx.at(
            value,
            key,
            format!("not a duration ({e}); try \"5d\" or \"30s\""),
        )
    })
}

/// `delete_after` and `delete_bigger_than`: only with `keep = true`
/// (without it every delivered message is deleted at once).
fn retention(
    ctx: &Ctx,
    raw: &RawAccount,
    keep: bool,
    key: &dyn Fn(&str) -> String,
) -> Result<Retention> {
    for (name, value) in [
        ("delete_after", &raw.delete_after),
        ("delete_bigger_than", &raw.delete_bigger_than),
    ] {
        if let Some(v) = value.as_ref().filter(|_| !keep) {
            return Err(ctx.at(
                v,
                &key(name),
                "only applies with keep = true (without keep, mail is deleted once delivered)",
            ));
        }
    }
    Ok(Retention {
        delete_after: match &raw.delete_after {
            Some(d) => Some(parse_duration(ctx, d, &key("delete_after"))?),
            None => None,
        },
        delete_bigger_than: match &raw.delete_bigger_than {
            Some(s) => Some(parse_size(ctx, s, &key("delete_bigger_than"))?),
            None => None,
        },
    })
}

/// One file's `[destination.*]` and `[[account]]` tables, with the
/// context its errors are reported in.
type FileTables<'a> = (
    &'a Ctx<'a>,
    &'a BTreeMap<String, Spanned<RawDestination>>,
    &'a [Spanned<RawAccount>],
);

fn validate(
    raw: RawConfig,
    ctx: &Ctx,
    included: &[(Ctx, include::RawIncluded)],
    path: Option<PathBuf>,
) -> Result<Config> {
    let g = raw.general;
    let jobs = match &g.jobs {
        Some(j) if *j.get_ref() < 1 || *j.get_ref() > 256 => {
            return Err(ctx.at(j, "general.jobs", "must be between 1 and 256"))
        }
        Some(j) => *j.get_ref() as usize,
        None => 4,
    };
    let max_connections_per_host = connection_limit(
        ctx,
        g.max_connections_per_host.as_ref(),
        "general.max_connections_per_host",
    )?
    .unwrap_or(crate::slots::DEFAULT_LIMIT);
    let default_timeout = match &g.timeout {
        Some(t) => parse_duration(ctx, t, "general.timeout")?,
        None => Duration::from_secs(60),
    };
    let general = General {
        state_dir: g
            .state_dir
            .as_ref()
            .map(|s| expand_tilde(s.get_ref()))
            .unwrap_or_else(default_state_dir),
        jobs,
        hostname: g
            .hostname
            .map(|h| h.into_inner())
            .unwrap_or_else(system_hostname),
        postmaster: g.postmaster.map(|p| p.into_inner()),
        bounce_from: g.bounce_from.map(|p| p.into_inner()),
        spool_max_age: match &g.spool_max_age {
            Some(s) => parse_duration(ctx, s, "general.spool_max_age")?,
            None => Duration::from_secs(5 * 86400),
        },
        retry_delay: match &g.retry_delay {
            Some(s) => parse_duration(ctx, s, "general.retry_delay")?,
            None => Duration::from_secs(5 * 60),
        },
        retry_max_delay: match &g.retry_max_delay {
            Some(s) => parse_duration(ctx, s, "general.retry_max_delay")?,
            None => Duration::from_secs(4 * 3600),
        },
        bounce_via: g.bounce_via.as_ref().map(|b| b.get_ref().clone()),
        audit_log: match &g.audit_log {
            Some(p) if p.get_ref().trim().is_empty() => {
                return Err(ctx.at(p, "general.audit_log", "must name a file"))
            }
            Some(p) => Some(relative_to(ctx.path, p.get_ref())),
            None => None,
        },
        metrics_file: match &g.metrics_file {
            Some(p) if p.get_ref().trim().is_empty() => {
                return Err(ctx.at(p, "general.metrics_file", "must name a file"))
            }
            Some(p) => Some(relative_to(ctx.path, p.get_ref())),
            None => None,
        },
        log: match g.log.as_ref().map(|l| (l, l.get_ref().as_str())) {
            None | Some((_, "stderr")) => LogTarget::Stderr,
            Some((_, "syslog")) => LogTarget::Syslog,
            Some((_, "both")) => LogTarget::Both,
            Some((l, other)) => {
                return Err(ctx.at(
                    l,
                    "general.log",
                    format!("{other:?} is not one of \"stderr\", \"syslog\", \"both\""),
                ))
            }
        },
        max_connections_per_host,
    };
    let add_received_default = g.add_received.unwrap_or(true);
    let watch_default = watch_settings(
        ctx,
        "general.",
        &g.idle_renew,
        &g.poll_interval,
        &g.max_idle_connections,
        WatchSettings::default(),
    )?;

    // The main file's tables, then each included file's, each with the
    // file its errors must name.
    let files: Vec<FileTables> = std::iter::once((ctx, &raw.destination, raw.account.as_slice()))
        .chain(
            included
                .iter()
                .map(|(c, r)| (c, &r.destination, r.account.as_slice())),
        )
        .collect();
    let mut destinations = BTreeMap::new();
    let mut defined_at: BTreeMap<String, String> = BTreeMap::new();
    for &(ctx, raw_destinations, _) in &files {
        for (name, d) in raw_destinations {
            let here = format!("{}:{}", ctx.path.display(), ctx.line_of(d.span().start));
            if let Some(first) = defined_at.insert(format!("destination {name}"), here) {
                return Err(ctx.at(
                    d,
                    &format!("destination.{name}"),
                    format!("defined twice (first at {first})"),
                ));
            }
            destinations.insert(
                name.clone(),
                validate_destination(ctx, name, d, default_timeout)?,
            );
        }
    }

    let mut accounts: Vec<Account> = Vec::new();
    for (ctx, a, i) in files.iter().flat_map(|&(ctx, _, raw_accounts)| {
        raw_accounts
            .iter()
            .enumerate()
            .map(move |(i, a)| (ctx, a, i))
    }) {
        let account = validate_account(
            ctx,
            i,
            a,
            &destinations,
            default_timeout,
            add_received_default,
            watch_default,
        )?;
        let here = format!(
            "{}:{}",
            ctx.path.display(),
            ctx.line_of(a.get_ref().name.span().start)
        );
        if let Some(first) = defined_at.insert(format!("account {}", account.name), here) {
            return Err(ctx.at(
                &a.get_ref().name,
                &format!("account[{i}].name"),
                format!(
                    "duplicate account name {:?} (first at {first})",
                    account.name
                ),
            ));
        }
        accounts.push(account);
    }
    if let Some(via) = &g.bounce_via {
        match destinations.get(via.get_ref()) {
            Some(DestinationConfig::Smtp(_)) | Some(DestinationConfig::Mda(_)) => {}
            Some(_) => {
                return Err(ctx.at(
                    via,
                    "general.bounce_via",
                    "bounces go through an smtp or mda destination",
                ))
            }
            None => {
                return Err(ctx.at(
                    via,
                    "general.bounce_via",
                    format!("no [destination.{}] is defined", via.get_ref()),
                ))
            }
        }
    }
    if general.retry_delay.is_zero() || general.retry_max_delay < general.retry_delay {
        let at = g.retry_max_delay.as_ref().or(g.retry_delay.as_ref());
        let msg = "retry_delay must be above zero and at most retry_max_delay";
        return Err(match at {
            Some(at) => ctx.at(at, "general.retry_delay", msg),
            None => Error::Config(msg.into()),
        });
    }
    let outgoing = match &raw.outgoing {
        Some(o) => Some(outgoing::validate(ctx, o, &destinations)?),
        None => None,
    };
    let accounts_from = backends::validate_accounts_from(ctx, &raw.accounts_from)?;
    let report = match &raw.report {
        Some(r) => Some(backends::validate_report(ctx, r)?),
        None => None,
    };
    add_default_destination(&mut accounts, &mut destinations);
    // Tokens live in the state database.
    for o in accounts.iter_mut().filter_map(|a| a.oauth2.as_mut()).chain(
        destinations
            .values_mut()
            .filter_map(DestinationConfig::oauth2_mut),
    ) {
        o.state_dir = general.state_dir.clone();
    }
    Ok(Config {
        path,
        general,
        accounts,
        destinations,
        outgoing,
        accounts_from,
        report,
        account_defaults: AccountDefaults {
            timeout: default_timeout,
            add_received: add_received_default,
            watch: watch_default,
        },
        backend_accounts: BTreeMap::new(),
    })
}

/// Accounts that name no destination deliver to `~/Maildir`, so that no
/// MTA is needed for the simplest setup.
pub fn add_default_destination(
    accounts: &mut [Account],
    destinations: &mut BTreeMap<String, DestinationConfig>,
) {
    for account in accounts.iter_mut().filter(|a| a.deliver_to.is_empty()) {
        account.deliver_to.push(DEFAULT_DESTINATION.into());
        destinations
            .entry(DEFAULT_DESTINATION.into())
            .or_insert_with(|| DestinationConfig::maildir(home().join("Maildir")));
    }
}

fn validate_destination(
    ctx: &Ctx,
    name: &str,
    d: &Spanned<RawDestination>,
    default_timeout: Duration,
) -> Result<DestinationConfig> {
    delivery::validate_destination(ctx, name, d, default_timeout)
}

fn validate_account(
    ctx: &Ctx,
    index: usize,
    a: &Spanned<RawAccount>,
    destinations: &BTreeMap<String, DestinationConfig>,
    default_timeout: Duration,
    add_received_default: bool,
    watch_default: WatchSettings,
) -> Result<Account> {
    let raw = a.get_ref();
    let name = raw.name.get_ref().trim().to_string();
    let key = |k: &str| format!("account[{name}].{k}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
    {
        return Err(ctx.at(
            &raw.name,
            &format!("account[{index}].name"),
            "must be non-empty and use only letters, digits and - _ . @ +",
        ));
    }
    let protocol = *raw.protocol.get_ref();
    let tls = raw.tls.unwrap_or_default();
    let port = match &raw.port {
        Some(p) if !(1..=65535).contains(p.get_ref()) => {
            return Err(ctx.at(p, &key("port"), "must be between 1 and 65535"))
        }
        Some(p) => *p.get_ref() as u16,
        None => protocol.default_port(tls),
    };
    let host = raw.host.get_ref().trim().to_string();
    if host.is_empty() {
        return Err(ctx.at(&raw.host, &key("host"), "must not be empty"));
    }
    let secret = match (&raw.password, &raw.password_command) {
        (Some(_), Some(c)) => {
            return Err(ctx.at(
                c,
                &key("password_command"),
                "give either password or password_command, not both",
            ))
        }
        (Some(p), None) => Secret::Literal(p.get_ref().clone().into()),
        (None, Some(c)) => Secret::Command(c.get_ref().clone()),
        (None, None) => Secret::None,
    };
    let tunnel = parse_tunnel(ctx, raw.tunnel.as_ref(), &key("tunnel"))?;
    if let (Some(t), Some(_)) = (&raw.tunnel, &raw.proxy) {
        return Err(ctx.at(
            t,
            &key("tunnel"),
            "give either tunnel or proxy, not both (the tunnel command can run a proxy itself)",
        ));
    }
    if let (Some(_), Some(s)) = (&raw.tunnel, &raw.source_ip) {
        return Err(ctx.at(
            s,
            &key("source_ip"),
            "does not apply through a tunnel (the tunnel command makes the connection)",
        ));
    }
    if let (Some(c), Protocol::Pop3) = (&raw.compress, protocol) {
        return Err(ctx.at(
            c,
            &key("compress"),
            "COMPRESS is an IMAP extension; remove this key from a pop3 account",
        ));
    }
    // A tunnel (ssh, typically) is the secure channel, as mbsync and
    // fetchmail take it: `tls = "none"` through one needs no
    // allow_plaintext.
    if tls == TlsMode::None
        && tunnel.is_none()
        && secret != Secret::None
        && raw.allow_plaintext != Some(true)
    {
        return Err(ctx.at(
            a,
            &key("tls"),
            "tls = \"none\" would send the password in clear text; set allow_plaintext = true if you mean it",
        ));
    }
    let fingerprint = match &raw.fingerprint {
        Some(f) => Some(parse_fingerprint(f.get_ref()).ok_or_else(|| {
            ctx.at(
                f,
                &key("fingerprint"),
                "expected \"sha256:\" and 32 hex bytes, e.g. sha256:AB:CD:...",
            )
        })?),
        None => None,
    };
    let ca_file = match &raw.ca_file {
        Some(c) => {
            let p = expand_tilde(c.get_ref());
            if !p.is_file() {
                return Err(ctx.at(c, &key("ca_file"), format!("{} is not a file", p.display())));
            }
            Some(p)
        }
        None => None,
    };
    let client_cert =
        parse_client_cert(ctx, raw.client_cert.as_ref(), raw.client_key.as_ref(), &key)?;
    if let (Some(_), Some(c), TlsMode::None) = (&client_cert, &raw.client_cert, tls) {
        return Err(ctx.at(
            c,
            &key("client_cert"),
            "a client certificate needs TLS; remove tls = \"none\" or this key",
        ));
    }
    let folders = match &raw.folders {
        Some(f) if protocol == Protocol::Pop3 => {
            return Err(ctx.at(f, &key("folders"), "POP3 has no folders; remove this key"))
        }
        Some(f) if f.get_ref().is_empty() => {
            return Err(ctx.at(f, &key("folders"), "must name at least one folder"))
        }
        Some(f) => f.get_ref().clone(),
        None => vec!["INBOX".into()],
    };
    let mut deliver_to = Vec::new();
    for d in raw.deliver_to.iter().flatten() {
        if !destinations.contains_key(d.get_ref()) {
            let known: Vec<&str> = destinations.keys().map(String::as_str).collect();
            return Err(ctx.at(
                d,
                &key("deliver_to"),
                format!(
                    "no [destination.{}] is defined (defined: {})",
                    d.get_ref(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        }
        if !deliver_to.contains(d.get_ref()) {
            deliver_to.push(d.get_ref().clone());
        }
    }
    let pipeline_depth = match &raw.pipeline_depth {
        Some(p) if !(1..=1000).contains(p.get_ref()) => {
            return Err(ctx.at(p, &key("pipeline_depth"), "must be between 1 and 1000"))
        }
        Some(p) => *p.get_ref() as usize,
        None => 50,
    };
    let imap_only = |value: Option<std::ops::Range<usize>>, k: &str| -> Result<()> {
        match value {
            Some(span) if protocol == Protocol::Pop3 => Err(ctx.err(
                span,
                &key(k),
                "applies to IMAP accounts only; remove this key",
            )),
            _ => Ok(()),
        }
    };
    imap_only(raw.mark_seen.as_ref().map(|v| v.span()), "mark_seen")?;
    imap_only(raw.only_unseen.as_ref().map(|v| v.span()), "only_unseen")?;
    imap_only(raw.move_to.as_ref().map(|v| v.span()), "move_to")?;
    let oauth2_token_command = raw
        .oauth2_token_command
        .as_ref()
        .map(|c| c.get_ref().clone());
    let oauth2 = match &raw.oauth2 {
        Some(o) if oauth2_token_command.is_some() => {
            return Err(ctx.at(
                o,
                &key("oauth2"),
                "give either oauth2 or oauth2_token_command, not both",
            ))
        }
        Some(o) => Some(oauth::validate(
            ctx,
            o,
            &key("oauth2"),
            &name,
            raw.user.get_ref(),
            match &raw.timeout {
                Some(t) => parse_duration(ctx, t, &key("timeout"))?,
                None => default_timeout,
            },
        )?),
        None => None,
    };
    let has_token = oauth2_token_command.is_some() || oauth2.is_some();
    let auth = match &raw.auth {
        Some(auth) => auth.clone(),
        // A client certificate and nothing else to log in with: the
        // certificate is the login.
        None if client_cert.is_some() && !has_token && secret == Secret::None => {
            vec![AuthMech::External]
        }
        None if has_token => {
            let mut order = AuthMech::OAUTH_ORDER.to_vec();
            if secret != Secret::None {
                order.extend(AuthMech::DEFAULT_ORDER);
            }
            order
        }
        None => AuthMech::DEFAULT_ORDER.to_vec(),
    };
    if client_cert.is_none() && auth.contains(&AuthMech::External) {
        return Err(ctx.at(
            a,
            &key("auth"),
            "external logs in with the TLS client certificate: set client_cert and client_key",
        ));
    }
    if !has_token && auth.iter().any(|m| m.uses_token()) {
        return Err(ctx.at(
            a,
            &key("auth"),
            "xoauth2 and oauthbearer need oauth2 or oauth2_token_command",
        ));
    }
    if tls == TlsMode::None && tunnel.is_none() && has_token && raw.allow_plaintext != Some(true) {
        return Err(ctx.at(
            a,
            &key("tls"),
            "tls = \"none\" would send the OAuth token in clear text; set allow_plaintext = true if you mean it",
        ));
    }
    let multidrop = match &raw.multidrop {
        Some(m) => Some(delivery::validate_multidrop(ctx, &key, m)?),
        None => None,
    };
    for d in raw.deliver_to.iter().flatten() {
        let dest = &destinations[d.get_ref()];
        if dest.checks_envelope() && dest.recipient().is_none() && multidrop.is_none() {
            return Err(ctx.at(
                d,
                &key("deliver_to"),
                format!(
                    "destination {} ({}) has no `recipient`; set one there, or give this account `multidrop`",
                    d.get_ref(),
                    dest.kind()
                ),
            ));
        }
    }
    let keep = raw.keep.unwrap_or(false);
    let move_to = match &raw.move_to {
        Some(m) if m.get_ref().trim().is_empty() => {
            return Err(ctx.at(m, &key("move_to"), "must name a folder"))
        }
        Some(m) if keep => {
            return Err(ctx.at(
                m,
                &key("move_to"),
                "keep = true leaves mail where it is; remove keep or move_to",
            ))
        }
        Some(m) => Some(m.get_ref().trim().to_string()),
        None => None,
    };
    let retention = retention(ctx, raw, keep, &key)?;
    let filter = filter::validate_filter(ctx, raw, &key, destinations, multidrop.is_some())?;
    Ok(Account {
        protocol,
        server: ServerConfig {
            host,
            port,
            tls,
            ca_file,
            fingerprint,
            timeout: match &raw.timeout {
                Some(t) => parse_duration(ctx, t, &key("timeout"))?,
                None => default_timeout,
            },
            proxy: parse_proxy(ctx, raw.proxy.as_ref(), &key("proxy"))?,
            source_ip: parse_source_ip(ctx, raw.source_ip.as_ref(), &key("source_ip"))?,
            tunnel,
            compress: raw.compress.as_ref().is_none_or(|c| *c.get_ref()),
            client_cert,
        },
        user: raw.user.get_ref().clone(),
        secret,
        auth,
        auth_explicit: raw.auth.is_some(),
        folders,
        keep,
        fetch_all: raw.fetch_all.unwrap_or(false),
        max_size: match &raw.max_size {
            Some(s) => Some(parse_size(ctx, s, &key("max_size"))?),
            None => None,
        },
        deliver_to,
        add_received: raw.add_received.unwrap_or(add_received_default),
        pipeline_depth,
        oauth2_token_command,
        oauth2,
        mark_seen: raw.mark_seen.as_ref().is_some_and(|v| *v.get_ref()),
        only_unseen: raw.only_unseen.as_ref().is_some_and(|v| *v.get_ref()),
        move_to,
        fetch_limit: match &raw.fetch_limit {
            Some(n) if *n.get_ref() < 1 => {
                return Err(ctx.at(n, &key("fetch_limit"), "must be at least 1"))
            }
            Some(n) => Some(*n.get_ref() as u64),
            None => None,
        },
        max_bytes_per_run: match &raw.max_bytes_per_run {
            Some(s) => match parse_size(ctx, s, &key("max_bytes_per_run"))? {
                0 => return Err(ctx.at(s, &key("max_bytes_per_run"), "must be above 0")),
                n => Some(n),
            },
            None => None,
        },
        retention,
        transcript: raw
            .transcript
            .as_ref()
            .map(|t| relative_to(ctx.path, t.get_ref())),
        watch: watch_settings(
            ctx,
            &key(""),
            &raw.idle_renew,
            &raw.poll_interval,
            &raw.max_idle_connections,
            watch_default,
        )?,
        multidrop,
        on_refused: delivery::validate_on_refused(ctx, &key, raw.on_refused.as_ref())?,
        dedup: match &raw.dedup {
            Some(d) => match parse_duration(ctx, d, &key("dedup"))? {
                w if w.is_zero() => {
                    return Err(ctx.at(d, &key("dedup"), "must be above zero (or left out)"))
                }
                w => Some(w),
            },
            None => None,
        },
        max_connections_per_host: connection_limit(
            ctx,
            raw.max_connections_per_host.as_ref(),
            &key("max_connections_per_host"),
        )?,
        filter,
        name,
    })
}

/// A `max_connections_per_host` key (`key` names it in errors): 1 to
/// 1000.
fn connection_limit(ctx: &Ctx, value: Option<&Spanned<i64>>, key: &str) -> Result<Option<usize>> {
    match value {
        Some(n) if !(1..=1000).contains(n.get_ref()) => {
            Err(ctx.at(n, key, "must be between 1 and 1000"))
        }
        Some(n) => Ok(Some(*n.get_ref() as usize)),
        None => Ok(None),
    }
}

/// Validates a `proxy` key (see `net::proxy::Proxy::parse`).
fn parse_proxy(
    ctx: &Ctx,
    value: Option<&Spanned<String>>,
    key: &str,
) -> Result<Option<crate::net::proxy::Proxy>> {
    match value {
        None => Ok(None),
        Some(v) => crate::net::proxy::Proxy::parse(v.get_ref())
            .map(Some)
            .map_err(|e| ctx.at(v, key, e)),
    }
}

/// Validates a `tunnel` key (see `net::tunnel::Tunnel::parse`).
fn parse_tunnel(
    ctx: &Ctx,
    value: Option<&Spanned<Vec<String>>>,
    key: &str,
) -> Result<Option<crate::net::tunnel::Tunnel>> {
    match value {
        None => Ok(None),
        Some(v) => crate::net::tunnel::Tunnel::parse(v.get_ref())
            .map(Some)
            .map_err(|e| ctx.at(v, key, e)),
    }
}

/// Validates a `source_ip` key: an IPv4 or IPv6 address of this host.
fn parse_source_ip(
    ctx: &Ctx,
    value: Option<&Spanned<String>>,
    key: &str,
) -> Result<Option<std::net::IpAddr>> {
    match value {
        None => Ok(None),
        Some(v) => v.get_ref().trim().parse().map(Some).map_err(|_| {
            ctx.at(
                v,
                key,
                "must be an IP address of this host, e.g. 192.0.2.10 or 2001:db8::10",
            )
        }),
    }
}

/// Validates `client_cert`/`client_key` (both or neither): the files are
/// read and parsed here, so a missing file, a certificate that is not
/// PEM, an encrypted key or a key of another certificate is a config
/// error naming the key, before any connection.
fn parse_client_cert(
    ctx: &Ctx,
    cert: Option<&Spanned<String>>,
    key: Option<&Spanned<String>>,
    name: &dyn Fn(&str) -> String,
) -> Result<Option<Box<ClientCert>>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), None) => {
            return Err(ctx.at(
                c,
                &name("client_cert"),
                "needs client_key (the certificate's private key) too",
            ))
        }
        (None, Some(k)) => {
            return Err(ctx.at(
                k,
                &name("client_key"),
                "needs client_cert (the key's certificate) too",
            ))
        }
        (Some(c), Some(k)) => (c, k),
    };
    let cert_path = expand_tilde(cert.get_ref());
    let key_path = expand_tilde(key.get_ref());
    let cert_pem = std::fs::read(&cert_path).map_err(|e| {
        ctx.at(
            cert,
            &name("client_cert"),
            format!("cannot read {}: {e}", cert_path.display()),
        )
    })?;
    let certs = openssl::x509::X509::stack_from_pem(&cert_pem).unwrap_or_default();
    let Some(leaf) = certs.first() else {
        return Err(ctx.at(
            cert,
            &name("client_cert"),
            format!("{} holds no PEM certificate", cert_path.display()),
        ));
    };
    let key_pem = std::fs::read(&key_path).map_err(|e| {
        ctx.at(
            key,
            &name("client_key"),
            format!("cannot read {}: {e}", key_path.display()),
        )
    })?;
    // A key with a passphrase fails here too (there is nobody to ask).
    let pkey =
        openssl::pkey::PKey::private_key_from_pem_callback(&key_pem, |_| Ok(0)).map_err(|_| {
            ctx.at(
                key,
                &name("client_key"),
                format!(
                    "{} holds no unencrypted PEM private key",
                    key_path.display()
                ),
            )
        })?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&pkey))
        .unwrap_or(false);
    if !matches {
        return Err(ctx.at(
            key,
            &name("client_key"),
            format!(
                "{} is not the key of the certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
        ));
    }
    Ok(Some(Box::new(ClientCert {
        cert: cert_path,
        key: key_path,
    })))
}

/// Parses `sha256:AB:CD:...` (colons optional, any case) into 32 bytes.
pub fn parse_fingerprint(s: &str) -> Option<Vec<u8>> {
    let hex: String = s
        .trim()
        .strip_prefix("sha256:")
        .or_else(|| s.trim().strip_prefix("SHA256:"))?
        .chars()
        .filter(|c| *c != ':')
        .collect();
    if hex.len() != 64 {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// `url` with any password in its user-info replaced by `***`, for
/// messages (a URL that does not parse is redacted the same way).
pub fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let Some(at) = url[start..].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

/// Builds the config for an ad-hoc run such as
/// `mailretr fetch pop3s://me@pop.example.com --to ~/Maildir`.
///
/// `pop3s`/`imaps` use implicit TLS; `pop3`/`imap` require STARTTLS. The
/// password is set by the caller (from `MAILRETR_PASSWORD` or a prompt);
/// one in the URL is refused, and never echoed.
pub fn from_url(url: &str, to: &str, keep: bool) -> Result<Config> {
    let parsed = url::Url::parse(url);
    // From here on, only the redacted text is spoken of.
    let shown = redact_url(url);
    let url = shown.as_str();
    let parsed = parsed.map_err(|e| Error::Config(format!("{url}: {e}")))?;
    if parsed.password().is_some() {
        return Err(Error::Config(format!(
            "{url}: a password in the URL would be visible to every user in the process list; \
             leave it out and set MAILRETR_PASSWORD, or type it when asked on a terminal"
        )));
    }
    let (protocol, tls) = match parsed.scheme() {
        "pop3s" => (Protocol::Pop3, TlsMode::Implicit),
        "pop3" => (Protocol::Pop3, TlsMode::Starttls),
        "imaps" => (Protocol::Imap, TlsMode::Implicit),
        "imap" => (Protocol::Imap, TlsMode::Starttls),
        other => {
            return Err(Error::Config(format!(
                "{url}: unknown scheme {other:?}; use pop3s, pop3, imaps or imap"
            )))
        }
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::Config(format!("{url}: no host")))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    let user = percent_decode(parsed.username());
    if user.is_empty() {
        return Err(Error::Config(format!(
            "{url}: no user; write it as {}://USER@{host}",
            parsed.scheme()
        )));
    }
    let folders = match protocol {
        Protocol::Imap => match parsed.path().trim_start_matches('/') {
            "" => vec!["INBOX".to_string()],
            p => vec![percent_decode(p)],
        },
        Protocol::Pop3 => vec!["INBOX".to_string()],
    };
    let state_dir = default_state_dir();
    let name = format!("{user}@{host}");
    let mut destinations = BTreeMap::new();
    destinations.insert(
        DEFAULT_DESTINATION.to_string(),
        DestinationConfig::maildir(expand_tilde(to)),
    );
    Ok(Config {
        path: None,
        general: General {
            state_dir,
            jobs: 1,
            hostname: system_hostname(),
            postmaster: None,
            bounce_from: None,
            spool_max_age: Duration::from_secs(5 * 86400),
            retry_delay: Duration::from_secs(5 * 60),
            retry_max_delay: Duration::from_secs(4 * 3600),
            bounce_via: None,
            audit_log: None,
            metrics_file: None,
            log: LogTarget::Stderr,
            max_connections_per_host: crate::slots::DEFAULT_LIMIT,
        },
        accounts: vec![Account {
            name,
            protocol,
            server: ServerConfig {
                port: parsed.port().unwrap_or(protocol.default_port(tls)),
                host,
                tls,
                ca_file: None,
                fingerprint: None,
                timeout: Duration::from_secs(60),
                proxy: None,
                source_ip: None,
                tunnel: None,
                compress: true,
                client_cert: None,
            },
            user,
            // Set by the caller (MAILRETR_PASSWORD or a prompt), never
            // from the URL.
            secret: Secret::None,
            auth: AuthMech::DEFAULT_ORDER.to_vec(),
            auth_explicit: false,
            folders,
            keep,
            fetch_all: false,
            max_size: None,
            deliver_to: vec![DEFAULT_DESTINATION.to_string()],
            add_received: true,
            pipeline_depth: 50,
            oauth2_token_command: None,
            oauth2: None,
            mark_seen: false,
            only_unseen: false,
            move_to: None,
            fetch_limit: None,
            max_bytes_per_run: None,
            retention: Retention::default(),
            transcript: None,
            watch: WatchSettings::default(),
            multidrop: None,
            on_refused: OnRefused::Keep,
            dedup: None,
            max_connections_per_host: None,
            filter: Default::default(),
        }],
        destinations,
        outgoing: None,
        accounts_from: Vec::new(),
        report: None,
        account_defaults: AccountDefaults::default(),
        backend_accounts: BTreeMap::new(),
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_a_url_is_refused_and_never_echoed() {
        let e = from_url("pop3s://me:hunter2@pop.example.com", "/tmp/M", false).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("MAILRETR_PASSWORD"), "{text}");
        assert_eq!(
            redact_url("imaps://me:p%40ss@h.example/INBOX"),
            "imaps://me:***@h.example/INBOX"
        );
        assert_eq!(redact_url("pop3s://me@h"), "pop3s://me@h");
        let e = from_url("pop3s://me:hunter2@[bad", "/tmp/M", false).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    fn parse_str(text: &str) -> Result<Config> {
        parse(text, Path::new("test.toml"))
    }

    const GOOD: &str = r#"
[general]
state_dir = "/tmp/st"
hostname = "mx.example.org"

[[account]]
name = "isp"
protocol = "pop3"
host = "pop.example.com"
user = "jaco"
password = "pw"
max_size = "25MB"
deliver_to = ["home"]

[destination.home]
type = "maildir"
path = "/tmp/Maildir"
"#;

    #[test]
    fn max_connections_per_host_defaults_and_overrides() {
        let c = parse_str(GOOD).unwrap();
        assert_eq!(c.general.max_connections_per_host, 10);
        assert_eq!(c.accounts[0].connection_limit(&c.general), 10);
        let text = GOOD
            .replace(
                "hostname = \"mx.example.org\"",
                "hostname = \"mx.example.org\"\nmax_connections_per_host = 3",
            )
            .replace("max_size = \"25MB\"", "max_connections_per_host = 1");
        let c = parse_str(&text).unwrap();
        assert_eq!(c.general.max_connections_per_host, 3);
        assert_eq!(c.accounts[0].connection_limit(&c.general), 1);
        let bad = GOOD.replace(
            "hostname = \"mx.example.org\"",
            "max_connections_per_host = 1001",
        );
        let e = parse_str(&bad).unwrap_err().to_string();
        assert!(
            e.contains("test.toml:4") && e.contains("general.max_connections_per_host"),
            "{e}"
        );
    }

    #[test]
    fn good_config_validates_with_defaults() {
        let c = parse_str(GOOD).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.server.port, 995);
        assert_eq!(a.server.tls, TlsMode::Implicit);
        assert_eq!(a.max_size, Some(25_000_000));
        assert!(!a.keep);
        assert_eq!(c.general.jobs, 4);
        assert_eq!(
            c.destinations["home"],
            DestinationConfig::maildir("/tmp/Maildir".into())
        );
    }

    fn err_of(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    #[test]
    fn proxy_and_source_ip_are_validated() {
        let c = parse_str(&GOOD.replace(
            "max_size",
            "proxy = \"socks5h://me:s3cret@127.0.0.1:1080\"\nsource_ip = \"127.0.0.1\"\nmax_size",
        ))
        .unwrap();
        let s = &c.accounts[0].server;
        assert_eq!(
            s.proxy.as_ref().unwrap().to_string(),
            "socks5h://127.0.0.1:1080"
        );
        assert_eq!(s.source_ip, Some([127, 0, 0, 1].into()));
        let e = err_of(&GOOD.replace("max_size", "proxy = \"ftp://me:s3cret@h:1\"\nmax_size"));
        assert!(
            e.starts_with("test.toml:12: account[isp].proxy: unknown proxy scheme"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let e = err_of(&GOOD.replace("max_size", "source_ip = \"here\"\nmax_size"));
        assert!(
            e.starts_with("test.toml:12: account[isp].source_ip:"),
            "{e}"
        );
        let smtp = GOOD.replace(
            "[destination.home]",
            "[destination.relay]\ntype = \"smtp\"\nhost = \"h\"\nrecipient = \"a@b\"\nsource_ip = \"::1\"\nproxy = \"http://p:3128\"\n\n[destination.home]",
        );
        let e = err_of(&smtp);
        assert!(e.starts_with("test.toml:20: destination.relay.proxy: SMTP destinations cannot go through a proxy"), "{e}");
        let c = parse_str(&smtp.replace("proxy = \"http://p:3128\"\n", "")).unwrap();
        let DestinationConfig::Smtp(relay) = &c.destinations["relay"] else {
            panic!("smtp")
        };
        assert_eq!(relay.server.source_ip, Some("::1".parse().unwrap()));
    }

    #[test]
    fn tunnel_and_compress_are_validated() {
        let tunnel = "tunnel = [\"ssh\", \"gw\", \"nc %h %p\"]\ntls = \"none\"\nmax_size";
        // Through a tunnel, tls = "none" with a password needs no
        // allow_plaintext (the tunnel is the secure channel).
        let c = parse_str(&GOOD.replace("max_size", tunnel)).unwrap();
        let s = &c.accounts[0].server;
        assert_eq!(
            s.tunnel.as_ref().unwrap().argv(&s.host, s.port),
            ["ssh", "gw", "nc pop.example.com 110"]
        );
        assert!(s.compress, "on by default");
        let e = err_of(&GOOD.replace("max_size", "tls = \"none\"\nmax_size"));
        assert!(e.contains("allow_plaintext"), "{e}");
        let e = err_of(&GOOD.replace("max_size", &format!("source_ip = \"::1\"\n{tunnel}")));
        assert!(
            e.starts_with("test.toml:12: account[isp].source_ip: does not apply through a tunnel"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("max_size", "compress = false\nmax_size"));
        assert!(
            e.starts_with("test.toml:12: account[isp].compress: COMPRESS is an IMAP extension"),
            "{e}"
        );
        let imap = GOOD.replace("protocol = \"pop3\"", "protocol = \"imap\"");
        let c = parse_str(&imap.replace("max_size", "compress = false\nmax_size")).unwrap();
        assert!(!c.accounts[0].server.compress);
        let dest = |keys: &str| {
            GOOD.replace(
                "[destination.home]",
                &format!("[destination.d]\n{keys}\n\n[destination.home]"),
            )
        };
        let c = parse_str(&dest(
            "type = \"imap\"\nhost = \"h\"\nuser = \"u\"\ncompress = false\ntunnel = [\"ssh\", \"gw\"]",
        ))
        .unwrap();
        let DestinationConfig::Imap(d) = &c.destinations["d"] else {
            panic!("imap")
        };
        assert!(!d.server.compress && d.server.tunnel.is_some());
        let e = err_of(&dest(
            "type = \"lmtp\"\nsocket = \"/run/lmtp\"\ntunnel = [\"ssh\", \"gw\"]",
        ));
        assert!(
            e.contains("destination.d.tunnel: does not apply to an LMTP socket"),
            "{e}"
        );
        let e = err_of(&dest("type = \"lmtp\"\nhost = \"h\"\ncompress = true"));
        assert!(
            e.contains("destination.d.compress: does not apply to a lmtp destination"),
            "{e}"
        );
        let e = err_of(&dest(
            "type = \"imap\"\nhost = \"h\"\nuser = \"u\"\nproxy = \"http://p:1\"\ntunnel = [\"ssh\"]",
        ));
        assert!(
            e.contains("destination.d.tunnel: give either tunnel or proxy"),
            "{e}"
        );
    }

    #[test]
    fn subfolders_and_flags_are_validated() {
        let base = GOOD.replace(
            "[destination.home]",
            "[destination.archive]\ntype = \"imap\"\nhost = \"h\"\nuser = \"u\"\nsubfolders = \"verbatim\"\nflags = true\n\n[destination.home]",
        );
        let c = parse_str(&base.replace(
            "type = \"maildir\"",
            "type = \"maildir\"\nsubfolders = \"maildir++\"\nflags = true",
        ))
        .unwrap();
        assert_eq!(
            c.destinations["home"],
            DestinationConfig::Maildir {
                path: "/tmp/Maildir".into(),
                subfolders: Subfolders::MaildirPlusPlus,
                flags: true
            }
        );
        let DestinationConfig::Imap(i) = &c.destinations["archive"] else {
            panic!("imap")
        };
        assert_eq!((i.subfolders, i.flags), (Subfolders::Verbatim, true));
        assert!(c.destinations["home"]
            .to_string()
            .contains("subfolders maildir++ flags"));
        let e = err_of(&base.replace("\"verbatim\"", "\"maildir++\""));
        assert!(e.contains("destination.archive.subfolders"), "{e}");
        assert!(e.starts_with("test.toml:19:"), "{e}");
        let e = err_of(&GOOD.replace(
            "type = \"maildir\"",
            "type = \"maildir\"\nsubfolders = \"flat\"",
        ));
        assert!(
            e.contains("destination.home.subfolders") && e.contains("flat"),
            "{e}"
        );
        let e = err_of(&GOOD.replace("type = \"maildir\"", "type = \"mbox\"\nflags = true"));
        assert!(e.contains("destination.home.flags"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = GOOD.replace("user = \"jaco\"", "user = \"jaco\"\nkeepp = true");
        let e = err_of(&text);
        assert!(e.starts_with("test.toml:11: keepp:"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let e = err_of(&GOOD.replace("host = \"pop.example.com\"", "host = \"h\"\nport = \"x\""));
        assert!(e.starts_with("test.toml:10: port:"), "{e}");
    }

    #[test]
    fn unknown_destination_is_reported_at_its_line() {
        let e = err_of(&GOOD.replace("deliver_to = [\"home\"]", "deliver_to = [\"hmoe\"]"));
        assert!(
            e.starts_with("test.toml:13: account[isp].deliver_to:"),
            "{e}"
        );
        assert!(e.contains("hmoe"), "{e}");
    }

    #[test]
    fn bad_protocol_and_size() {
        let e = err_of(&GOOD.replace("\"pop3\"", "\"pop4\""));
        assert!(e.starts_with("test.toml:8: protocol:"), "{e}");
        let e = err_of(&GOOD.replace("\"25MB\"", "\"lots\""));
        assert!(e.starts_with("test.toml:12: account[isp].max_size:"), "{e}");
    }

    #[test]
    fn plaintext_password_needs_consent() {
        let text = GOOD.replace("user = \"jaco\"", "user = \"jaco\"\ntls = \"none\"");
        let e = err_of(&text);
        assert!(e.contains("allow_plaintext"), "{e}");
        let ok = text.replace("tls = \"none\"", "tls = \"none\"\nallow_plaintext = true");
        let c = parse_str(&ok).unwrap();
        assert_eq!(c.accounts[0].server.port, 110);
    }

    #[test]
    fn duplicate_account_names_are_refused() {
        let acct = GOOD
            .split("[[account]]")
            .nth(1)
            .unwrap()
            .split("[destination")
            .next()
            .unwrap();
        let text = format!("{GOOD}\n[[account]]{acct}");
        let e = err_of(&text);
        assert!(e.contains("duplicate account name"), "{e}");
    }

    #[test]
    fn default_destination_is_home_maildir() {
        let text = GOOD.replace("deliver_to = [\"home\"]\n", "");
        let c = parse_str(&text).unwrap();
        assert_eq!(c.accounts[0].deliver_to, vec![DEFAULT_DESTINATION]);
        assert!(c.destinations.contains_key(DEFAULT_DESTINATION));
    }

    #[test]
    fn fingerprints_parse() {
        let hex = "AB:".repeat(31) + "CD";
        assert_eq!(
            parse_fingerprint(&format!("sha256:{hex}")).unwrap().len(),
            32
        );
        assert!(parse_fingerprint("md5:AB").is_none());
        assert!(parse_fingerprint("sha256:AB").is_none());
    }

    #[test]
    fn imap_keys_validate() {
        let imap = GOOD.replace("\"pop3\"", "\"imap\"");
        let c = parse_str(&imap.replace(
            "max_size",
            "folders = [\"INBOX\", \"Lists/*\"]\nmark_seen = true\nonly_unseen = true\nmove_to = \"Archive\"\nmax_size",
        ))
        .unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.server.port, 993);
        assert!(a.mark_seen && a.only_unseen);
        assert_eq!(a.move_to.as_deref(), Some("Archive"));
        assert_eq!(a.folders, ["INBOX", "Lists/*"]);

        // A token command puts the token mechanisms first.
        let c = parse_str(&imap.replace("password = \"pw\"", "oauth2_token_command = \"echo t\""))
            .unwrap();
        assert_eq!(c.accounts[0].auth, AuthMech::OAUTH_ORDER);
        let e = err_of(&imap.replace("max_size", "auth = [\"xoauth2\"]\nmax_size"));
        assert!(e.contains("oauth2_token_command"), "{e}");

        let e = err_of(&GOOD.replace("max_size", "mark_seen = true\nmax_size"));
        assert!(
            e.starts_with("test.toml:12: account[isp].mark_seen:"),
            "{e}"
        );
        let e = err_of(&imap.replace("max_size", "keep = true\nmove_to = \"A\"\nmax_size"));
        assert!(e.starts_with("test.toml:13: account[isp].move_to:"), "{e}");
    }

    #[test]
    fn retention_keys_need_keep_and_parse() {
        let c = parse_str(&GOOD.replace(
            "max_size",
            "keep = true\ndelete_after = \"14d\"\ndelete_bigger_than = \"20MB\"\nmax_size",
        ))
        .unwrap();
        let r = c.accounts[0].retention;
        assert_eq!(r.delete_after, Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(r.delete_bigger_than, Some(20_000_000));
        assert!(!parse_str(GOOD).unwrap().accounts[0].retention.is_set());
        let e = err_of(&GOOD.replace("max_size", "delete_after = \"14d\"\nmax_size"));
        assert!(e.contains("account[isp].delete_after:"), "{e}");
        assert!(e.contains("keep = true"), "{e}");
        let e = err_of(&GOOD.replace(
            "max_size",
            "keep = true\ndelete_bigger_than = \"big\"\nmax_size",
        ));
        assert!(e.contains("account[isp].delete_bigger_than:"), "{e}");
        let e = err_of(&GOOD.replace("max_size", "keep = true\ndelete_after = \"soon\"\nmax_size"));
        assert!(e.contains("not a duration"), "{e}");
    }

    #[test]
    fn dedup_is_a_duration_above_zero() {
        assert_eq!(parse_str(GOOD).unwrap().accounts[0].dedup, None);
        let c = parse_str(&GOOD.replace("max_size", "dedup = \"30d\"\nmax_size")).unwrap();
        assert_eq!(c.accounts[0].dedup, Some(Duration::from_secs(30 * 86400)));
        for bad in ["\"0s\"", "\"soon\""] {
            let e = err_of(&GOOD.replace("max_size", &format!("dedup = {bad}\nmax_size")));
            assert!(e.starts_with("test.toml:12: account[isp].dedup:"), "{e}");
        }
    }

    #[test]
    fn url_accounts() {
        let c = from_url("pop3s://me%40x@pop.example.com", "/tmp/M", true).unwrap();
        let a = &c.accounts[0];
        assert_eq!(a.user, "me@x");
        assert_eq!(a.server.port, 995);
        assert!(a.keep);
        let c = from_url("imap://me@h:1143/Lists%2Fx", "/tmp/M", false).unwrap();
        assert_eq!(c.accounts[0].server.tls, TlsMode::Starttls);
        assert_eq!(c.accounts[0].folders, vec!["Lists/x"]);
        assert!(from_url("http://me@h", "/tmp/M", false).is_err());
        assert!(from_url("pop3s://h", "/tmp/M", false).is_err());
    }
}
