//! `[[accounts_from]]` and `[report]`: where accounts come from besides
//! the TOML files (an SQL query, an LDAP search), and where per-account
//! results go. This module validates those tables, and turns one row of a
//! backend into an `Account` through the very code that validates an
//! `[[account]]` table: the row is written out as the TOML of one account
//! (one key a line, the backend's `defaults` filling the keys the row
//! leaves NULL), parsed into the same `RawAccount` and validated by
//! `validate_account`. Its errors name the backend, the row and the
//! column instead of a file and line. The queries themselves live in
//! `crate::backends`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawAccount, RawAccountsFrom, RawReport};
use super::{redact_url, Account, Config, Ctx, Secret};
use crate::error::{Error, Result};

/// What kind of database an `sql` backend or the report table lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    /// `mysql://` (MySQL and MariaDB).
    Mysql,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `sqlite://PATH`.
    Sqlite,
}

impl SqlKind {
    /// The kind a URL names, or `None`.
    fn of(url: &str) -> Option<SqlKind> {
        let scheme = url.split_once("://")?.0;
        match scheme {
            "mysql" | "mariadb" => Some(SqlKind::Mysql),
            "postgres" | "postgresql" => Some(SqlKind::Postgres),
            "sqlite" => Some(SqlKind::Sqlite),
            _ => None,
        }
    }

    /// Whether this build has the client (cargo features `mysql`,
    /// `postgres`; SQLite is always there).
    fn compiled_in(self) -> bool {
        match self {
            SqlKind::Mysql => cfg!(feature = "mysql"),
            SqlKind::Postgres => cfg!(feature = "postgres"),
            SqlKind::Sqlite => true,
        }
    }

    fn feature(self) -> &'static str {
        match self {
            SqlKind::Mysql => "mysql",
            SqlKind::Postgres => "postgres",
            SqlKind::Sqlite => "sqlite",
        }
    }
}

/// A database to connect to: its kind, its URL, and the password to add
/// to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    /// MySQL/MariaDB, PostgreSQL or SQLite.
    pub kind: SqlKind,
    /// The URL as written (it may hold a password: show only `shown`).
    pub url: String,
    /// For SQLite: the file (relative paths are taken from the config
    /// file's directory).
    pub sqlite_path: Option<PathBuf>,
    /// `password` or `password_command` (used when the URL has none).
    pub secret: Secret,
    /// Connect and read timeout.
    pub timeout: Duration,
}

impl Database {
    /// The URL without any password, for messages.
    pub fn shown(&self) -> String {
        redact_url(&self.url)
    }
}

/// What a backend queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendKind {
    /// `type = "sql"`: a query whose columns are named like account keys.
    Sql {
        /// The database.
        database: Database,
        /// The SELECT.
        query: String,
    },
    /// `type = "ldap"`: a search whose attributes `attributes` maps to
    /// account keys.
    Ldap {
        /// `ldap://` or `ldaps://`.
        url: String,
        /// Upgrade an `ldap://` connection with StartTLS.
        starttls: bool,
        /// An extra trust anchor (PEM) for a private CA.
        ca_file: Option<PathBuf>,
        /// The DN to bind as (anonymous when unset).
        bind_dn: Option<String>,
        /// The bind password.
        secret: Secret,
        /// The search base.
        base: String,
        /// The search filter.
        filter: String,
        /// Account key → LDAP attribute.
        attributes: Vec<(String, String)>,
        /// Connect and operation timeout.
        timeout: Duration,
    },
}

/// One validated `[[accounts_from]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountsFrom {
    /// Its position among the `[[accounts_from]]` tables.
    pub index: usize,
    /// What it queries.
    pub kind: BackendKind,
    /// Account keys every row shares, each as its TOML value text.
    pub defaults: Vec<(String, String)>,
    /// Keep the last good rows in state.db and use them when the backend
    /// is down.
    pub cache: bool,
}

impl AccountsFrom {
    /// How messages name it: `accounts_from[0] (mysql://u@db/mail)`,
    /// never with a password.
    pub fn label(&self) -> String {
        let url = match &self.kind {
            BackendKind::Sql { database, .. } => database.shown(),
            BackendKind::Ldap { url, .. } => redact_url(url),
        };
        format!("accounts_from[{}] ({url})", self.index)
    }

    /// What identifies its cached rows in state.db: the kind, the URL
    /// (without password) and the query, so an edited query does not
    /// reuse the rows of the old one.
    pub fn cache_key(&self) -> String {
        match &self.kind {
            BackendKind::Sql { database, query } => format!("sql {} {query}", database.shown()),
            BackendKind::Ldap {
                url,
                base,
                filter,
                attributes,
                ..
            } => format!("ldap {} {base} {filter} {attributes:?}", redact_url(url)),
        }
    }

    /// The secrets this backend holds in the config (its own password),
    /// for scrubbing them from driver errors.
    pub fn own_secret(&self) -> &Secret {
        match &self.kind {
            BackendKind::Sql { database, .. } => &database.secret,
            BackendKind::Ldap { secret, .. } => secret,
        }
    }
}

/// `[report]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportConfig {
    /// Where the table is.
    pub database: Database,
    /// The table's name (letters, digits and `_`, optionally
    /// `schema.table`).
    pub table: String,
}

/// One value of a backend row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Field {
    /// SQL NULL, or an LDAP attribute the entry does not have: the
    /// default applies.
    Null,
    /// Text (also what numbers in text columns are).
    Text(String),
    /// An integer column.
    Int(i64),
    /// A boolean column.
    Bool(bool),
}

/// One column (or attribute) of a backend row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowField {
    /// The account key it sets.
    pub key: String,
    /// How errors name it: `column port`, `attribute mailHost`.
    pub origin: String,
    /// Its value.
    pub value: Field,
}

/// The TOML type an account key takes, for writing a row's value out.
enum KeyType {
    Text,
    Int,
    Bool,
    List,
    Table,
}

fn key_type(key: &str) -> KeyType {
    match key {
        "port"
        | "pipeline_depth"
        | "fetch_limit"
        | "max_idle_connections"
        | "max_connections_per_host" => KeyType::Int,
        "allow_plaintext" | "keep" | "fetch_all" | "add_received" | "mark_seen" | "only_unseen" => {
            KeyType::Bool
        }
        "auth" | "folders" | "deliver_to" => KeyType::List,
        "multidrop" => KeyType::Table,
        _ => KeyType::Text,
    }
}

/// A row value as the TOML its key expects, or why it cannot be.
fn toml_value(key: &str, value: &Field) -> std::result::Result<toml::Value, String> {
    use toml::Value;
    let text = |v: &Field| match v {
        Field::Text(t) => t.clone(),
        Field::Int(i) => i.to_string(),
        Field::Bool(b) => b.to_string(),
        Field::Null => String::new(),
    };
    Ok(match key_type(key) {
        KeyType::Text => Value::String(text(value)),
        KeyType::Int => match value {
            Field::Int(i) => Value::Integer(*i),
            other => Value::Integer(
                text(other)
                    .trim()
                    .parse()
                    .map_err(|_| "not an integer".to_string())?,
            ),
        },
        KeyType::Bool => match value {
            Field::Bool(b) => Value::Boolean(*b),
            Field::Int(0) => Value::Boolean(false),
            Field::Int(1) => Value::Boolean(true),
            other => match text(other).trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" | "yes" | "y" | "on" => Value::Boolean(true),
                "0" | "false" | "f" | "no" | "n" | "off" => Value::Boolean(false),
                _ => return Err("not a boolean (true/false, 1/0, yes/no)".into()),
            },
        },
        KeyType::List => Value::Array(
            text(value)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        KeyType::Table => {
            return Err("cannot come from a column or attribute; put it in `defaults`".into())
        }
    })
}

/// Where a row's errors point: the backend, the row, and per line of the
/// generated TOML, which column (or default) the line came from.
pub(super) struct RowContext {
    backend: String,
    row: String,
    lines: Vec<Option<String>>,
}

impl RowContext {
    /// `accounts_from[0] (url): row "alice": column port: {msg}`.
    pub(super) fn message(&self, line: Option<usize>, key: &str, msg: &str) -> Error {
        let origin = line
            .and_then(|l| self.lines.get(l.wrapping_sub(1)).cloned().flatten())
            .or_else(|| {
                // The whole account (no single line): name the key.
                let k = key.rsplit_once("].").map(|(_, k)| k).unwrap_or(key);
                (!k.is_empty() && !k.starts_with("account[")).then(|| format!("key {k}"))
            });
        match origin {
            Some(o) => Error::Config(format!("{}: row {}: {o}: {msg}", self.backend, self.row)),
            None => Error::Config(format!("{}: row {}: {msg}", self.backend, self.row)),
        }
    }
}

/// Turns one backend row (its fields, its 1-based position) into an
/// account, validated like an `[[account]]` table of the config file;
/// the backend's `defaults` give what the row leaves NULL.
pub fn account_from_row(
    config: &Config,
    source: &AccountsFrom,
    row: &[RowField],
    position: usize,
) -> Result<Account> {
    let row_name = row
        .iter()
        .find(|f| f.key == "name")
        .and_then(|f| match &f.value {
            Field::Text(t) if !t.trim().is_empty() => Some(format!("{:?}", t.trim())),
            Field::Int(i) => Some(format!("{:?}", i.to_string())),
            _ => None,
        })
        .unwrap_or_else(|| format!("#{position}"));
    let mut row_ctx = RowContext {
        backend: source.label(),
        row: row_name,
        lines: vec![None],
    };
    // Line 1 belongs to no key, so an error about the whole account (span
    // 0) names its key rather than the first column.
    let mut text = String::from("# one backend row\n");
    let mut given: Vec<&str> = Vec::new();
    for field in row {
        if field.value == Field::Null || given.contains(&field.key.as_str()) {
            continue;
        }
        if !is_bare_key(&field.key) {
            return Err(row_ctx.message(
                None,
                "",
                &format!("{}: not an account key", field.origin),
            ));
        }
        let value = toml_value(&field.key, &field.value)
            .map_err(|m| row_ctx.message(None, "", &format!("{}: {m}", field.origin)))?;
        text.push_str(&format!("{} = {value}\n", field.key));
        row_ctx.lines.push(Some(field.origin.clone()));
        given.push(&field.key);
    }
    for (key, value) in &source.defaults {
        if given.contains(&key.as_str()) {
            continue;
        }
        text.push_str(&format!("{key} = {value}\n"));
        row_ctx.lines.push(Some(format!("defaults.{key}")));
    }
    let path = config.path.clone().unwrap_or_default();
    let ctx = Ctx {
        text: &text,
        path: &path,
        row: Some(&row_ctx),
    };
    let raw: RawAccount = toml::from_str(&text).map_err(|e| ctx.toml_error(&e))?;
    let spanned = Spanned::new(0..text.len(), raw);
    super::validate_account(
        &ctx,
        position,
        &spanned,
        &config.destinations,
        config.account_defaults.timeout,
        config.account_defaults.add_received,
        config.account_defaults.watch,
    )
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn secret_of(
    ctx: &Ctx,
    prefix: &str,
    password: &Option<Spanned<String>>,
    command: &Option<Spanned<String>>,
) -> Result<Secret> {
    match (password, command) {
        (Some(_), Some(c)) => Err(ctx.at(
            c,
            &format!("{prefix}.password_command"),
            "give either password or password_command, not both",
        )),
        (Some(p), None) => Ok(Secret::Literal(p.get_ref().clone().into())),
        (None, Some(c)) => Ok(Secret::Command(c.get_ref().clone())),
        (None, None) => Ok(Secret::None),
    }
}

fn database(
    ctx: &Ctx,
    prefix: &str,
    url: &Spanned<String>,
    secret: Secret,
    timeout: Duration,
) -> Result<Database> {
    let shown = redact_url(url.get_ref());
    let key = format!("{prefix}.url");
    let kind = SqlKind::of(url.get_ref()).ok_or_else(|| {
        ctx.at(
            url,
            &key,
            format!("{shown}: use mysql://, postgres:// or sqlite://"),
        )
    })?;
    if !kind.compiled_in() {
        return Err(ctx.at(
            url,
            &key,
            format!(
                "this mailretr was built without {} support (cargo feature `{}`)",
                kind.feature(),
                kind.feature()
            ),
        ));
    }
    let sqlite_path = match kind {
        SqlKind::Sqlite => {
            let rest = url
                .get_ref()
                .split_once("://")
                .map(|(_, r)| r)
                .unwrap_or("");
            if rest.trim().is_empty() {
                return Err(ctx.at(
                    url,
                    &key,
                    "sqlite:// needs a file, e.g. sqlite:///var/lib/mail.db",
                ));
            }
            Some(super::relative_to(ctx.path, rest))
        }
        _ => {
            if let Err(e) = url::Url::parse(url.get_ref()) {
                return Err(ctx.at(url, &key, format!("{shown}: {e}")));
            }
            None
        }
    };
    Ok(Database {
        kind,
        url: url.get_ref().clone(),
        sqlite_path,
        secret,
        timeout,
    })
}

fn timeout(ctx: &Ctx, prefix: &str, value: &Option<Spanned<String>>) -> Result<Duration> {
    match value {
        Some(t) => super::parse_duration(ctx, t, &format!("{prefix}.timeout")),
        None => Ok(Duration::from_secs(30)),
    }
}

/// Validates the `[[accounts_from]]` tables.
pub(super) fn validate_accounts_from(
    ctx: &Ctx,
    raw: &[Spanned<RawAccountsFrom>],
) -> Result<Vec<AccountsFrom>> {
    let mut out = Vec::new();
    for (index, b) in raw.iter().enumerate() {
        let prefix = format!("accounts_from[{index}]");
        let r = b.get_ref();
        let key = |k: &str| format!("{prefix}.{k}");
        let secret = secret_of(ctx, &prefix, &r.password, &r.password_command)?;
        let timeout = timeout(ctx, &prefix, &r.timeout)?;
        let not_for = |kind: &str, keys: &[(&str, Option<std::ops::Range<usize>>)]| {
            for (k, span) in keys {
                if let Some(span) = span {
                    return Err(ctx.err(
                        span.clone(),
                        &key(k),
                        format!("does not apply to type = \"{kind}\""),
                    ));
                }
            }
            Ok(())
        };
        let kind = match r.kind.get_ref().as_str() {
            "sql" => {
                not_for(
                    "sql",
                    &[
                        ("starttls", r.starttls.as_ref().map(|v| v.span())),
                        ("ca_file", r.ca_file.as_ref().map(|v| v.span())),
                        ("bind_dn", r.bind_dn.as_ref().map(|v| v.span())),
                        ("base", r.base.as_ref().map(|v| v.span())),
                        ("filter", r.filter.as_ref().map(|v| v.span())),
                        ("attributes", r.attributes.as_ref().map(|v| v.span())),
                    ],
                )?;
                let query = match &r.query {
                    Some(q) if !q.get_ref().trim().is_empty() => q.get_ref().trim().to_string(),
                    Some(q) => return Err(ctx.at(q, &key("query"), "must not be empty")),
                    None => return Err(ctx.at(b, &key("query"), "an sql backend needs a query")),
                };
                BackendKind::Sql {
                    database: database(ctx, &prefix, &r.url, secret, timeout)?,
                    query,
                }
            }
            "ldap" => {
                not_for("ldap", &[("query", r.query.as_ref().map(|v| v.span()))])?;
                if !cfg!(feature = "ldap") {
                    return Err(ctx.at(
                        &r.kind,
                        &key("type"),
                        "this mailretr was built without LDAP support (cargo feature `ldap`)",
                    ));
                }
                let url = r.url.get_ref().trim().to_string();
                let scheme = url.split_once("://").map(|(s, _)| s);
                if !matches!(scheme, Some("ldap") | Some("ldaps")) {
                    return Err(ctx.at(&r.url, &key("url"), "use ldap:// or ldaps://"));
                }
                let starttls = r.starttls.as_ref().is_some_and(|s| *s.get_ref());
                if starttls && scheme == Some("ldaps") {
                    return Err(ctx.at(
                        r.starttls.as_ref().expect("set"),
                        &key("starttls"),
                        "ldaps:// is TLS already; starttls goes with ldap://",
                    ));
                }
                if scheme == Some("ldap") && !starttls && secret != Secret::None {
                    return Err(ctx.at(
                        &r.url,
                        &key("url"),
                        "ldap:// without starttls = true would send the bind password in clear text; use ldaps:// or starttls = true",
                    ));
                }
                let ca_file = match &r.ca_file {
                    Some(c) => {
                        let p = super::relative_to(ctx.path, c.get_ref());
                        if !p.is_file() {
                            return Err(ctx.at(
                                c,
                                &key("ca_file"),
                                format!("{} is not a file", p.display()),
                            ));
                        }
                        Some(p)
                    }
                    None => None,
                };
                let required = |v: &Option<Spanned<String>>, k: &str| match v {
                    Some(v) if !v.get_ref().trim().is_empty() => Ok(v.get_ref().trim().to_string()),
                    _ => Err(ctx.at(b, &key(k), "an ldap backend needs it")),
                };
                let attributes: Vec<(String, String)> = match &r.attributes {
                    Some(a) => a
                        .get_ref()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    None => return Err(ctx.at(b, &key("attributes"), "an ldap backend needs an attribute map, e.g. { name = \"uid\", host = \"mailHost\" }")),
                };
                if !attributes.iter().any(|(k, _)| k == "name") {
                    return Err(ctx.at(
                        r.attributes.as_ref().expect("set"),
                        &key("attributes"),
                        "must map `name` to an attribute",
                    ));
                }
                BackendKind::Ldap {
                    url,
                    starttls,
                    ca_file,
                    bind_dn: r.bind_dn.as_ref().map(|d| d.get_ref().clone()),
                    secret,
                    base: required(&r.base, "base")?,
                    filter: r
                        .filter
                        .as_ref()
                        .map(|f| f.get_ref().clone())
                        .unwrap_or_else(|| "(objectClass=*)".into()),
                    attributes,
                    timeout,
                }
            }
            other => {
                return Err(ctx.at(
                    &r.kind,
                    &key("type"),
                    format!("unknown backend type {other:?}; use sql or ldap"),
                ))
            }
        };
        let mut defaults = Vec::new();
        if let Some(d) = &r.defaults {
            for (k, v) in d.get_ref() {
                if k == "name" {
                    return Err(ctx.at(d, &key("defaults"), "`name` must come from each row"));
                }
                defaults.push((k.clone(), v.to_string()));
            }
        }
        out.push(AccountsFrom {
            index,
            kind,
            defaults,
            cache: r.cache.unwrap_or(false),
        });
    }
    Ok(out)
}

/// Validates `[report]`.
pub(super) fn validate_report(ctx: &Ctx, raw: &Spanned<RawReport>) -> Result<ReportConfig> {
    let r = raw.get_ref();
    let secret = secret_of(ctx, "report", &r.password, &r.password_command)?;
    let timeout = timeout(ctx, "report", &r.timeout)?;
    let table = match &r.table {
        Some(t) => {
            let name = t.get_ref().trim();
            let ok = !name.is_empty()
                && name.split('.').count() <= 2
                && name.split('.').all(|part| {
                    !part.is_empty()
                        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !part.starts_with(|c: char| c.is_ascii_digit())
                });
            if !ok {
                return Err(ctx.at(
                    t,
                    "report.table",
                    "use letters, digits and _ (optionally schema.table)",
                ));
            }
            name.to_string()
        }
        None => "mailretr_status".into(),
    };
    Ok(ReportConfig {
        database: database(ctx, "report", &r.url, secret, timeout)?,
        table,
    })
}

/// Whether the file's backend tables hold a password (for the
/// permission check).
pub(super) fn has_password(
    accounts_from: &[Spanned<RawAccountsFrom>],
    report: Option<&Spanned<RawReport>>,
) -> bool {
    accounts_from.iter().any(|b| {
        let b = b.get_ref();
        b.password.is_some()
            || b.url.get_ref().contains('@') && redact_url(b.url.get_ref()) != *b.url.get_ref()
            || b.defaults
                .as_ref()
                .is_some_and(|d| d.get_ref().contains_key("password"))
    }) || report.is_some_and(|r| {
        r.get_ref().password.is_some()
            || redact_url(r.get_ref().url.get_ref()) != *r.get_ref().url.get_ref()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[general]
state_dir = "/tmp/st"

[destination.home]
type = "maildir"
path = "/tmp/M"

[[accounts_from]]
type = "sql"
url = "sqlite:///tmp/accounts.db"
query = "SELECT * FROM mailbox"
defaults = { host = "pop.example.com", deliver_to = ["home"], keep = true }
"#;

    fn text(name: &str, value: Field) -> RowField {
        RowField {
            key: name.into(),
            origin: format!("column {name}"),
            value,
        }
    }

    fn row_of(fields: &[(&str, Field)]) -> Vec<RowField> {
        fields.iter().map(|(k, v)| text(k, v.clone())).collect()
    }

    fn account(config: &Config, fields: &[(&str, Field)]) -> Result<Account> {
        account_from_row(config, &config.accounts_from[0], &row_of(fields), 3)
    }

    fn t(s: &str) -> Field {
        Field::Text(s.into())
    }

    #[test]
    fn a_row_with_defaults_becomes_an_account() {
        let c = super::super::parse(BASE, Path::new("c.toml")).unwrap();
        let a = account(
            &c,
            &[
                ("name", t("alice")),
                ("protocol", t("imap")),
                ("user", t("alice")),
                ("password", t("pw")),
                ("port", t("1993")),
                ("folders", t("INBOX, Lists/*")),
                ("keep", Field::Int(0)),
                ("max_size", Field::Null),
            ],
        )
        .unwrap();
        assert_eq!(a.name, "alice");
        assert_eq!(a.server.host, "pop.example.com");
        assert_eq!(a.server.port, 1993);
        assert_eq!(a.folders, ["INBOX", "Lists/*"]);
        assert!(!a.keep, "the row wins over the default");
        assert_eq!(a.deliver_to, ["home"]);
        assert_eq!(a.secret, Secret::Literal("pw".to_string().into()));
        // NULL: the default.
        let a = account(
            &c,
            &[
                ("name", t("bob")),
                ("protocol", t("pop3")),
                ("user", t("bob")),
                ("keep", Field::Null),
            ],
        )
        .unwrap();
        assert!(a.keep);
    }

    #[test]
    fn a_table_in_defaults_is_written_out_inline() {
        let text = BASE
            .replace(
                "keep = true }",
                "keep = true, multidrop = { local_domains = [\"example.org\"] } }",
            )
            .replace(
                "type = \"maildir\"\npath = \"/tmp/M\"",
                "type = \"lmtp\"\nsocket = \"/tmp/lmtp\"",
            );
        let c = super::super::parse(&text, Path::new("c.toml")).unwrap();
        let a = account(
            &c,
            &[("name", t("a")), ("protocol", t("pop3")), ("user", t("a"))],
        )
        .unwrap();
        assert!(a.multidrop.is_some());
        let e = account(
            &c,
            &[
                ("name", t("a")),
                ("protocol", t("pop3")),
                ("user", t("a")),
                ("multidrop", t("x")),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("column multidrop: cannot come from a column"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_row_names_backend_row_and_column_and_no_secret() {
        let c = super::super::parse(BASE, Path::new("c.toml")).unwrap();
        let base = [
            ("name", t("alice")),
            ("protocol", t("pop3")),
            ("user", t("alice")),
            ("password", t("hunter2")),
        ];
        let with = |extra: (&str, Field)| {
            let mut f = base.to_vec();
            f.push(extra);
            account(&c, &f).unwrap_err().to_string()
        };
        let prefix = "accounts_from[0] (sqlite:///tmp/accounts.db): row \"alice\": ";
        let e = with(("port", t("many")));
        assert_eq!(e, format!("{prefix}column port: not an integer"));
        let e = with(("port", Field::Int(70000)));
        assert_eq!(
            e,
            format!("{prefix}column port: must be between 1 and 65535")
        );
        let e = with(("deliver_to", t("home, nowhere")));
        assert!(
            e.starts_with(&format!(
                "{prefix}column deliver_to: no [destination.nowhere]"
            )),
            "{e}"
        );
        let e = with(("colour", t("red")));
        assert!(
            e.starts_with(&format!("{prefix}column colour: unknown field `colour`")),
            "{e}"
        );
        let e = with(("tls", t("none")));
        assert!(
            e.starts_with(&format!("{prefix}key tls: tls = \"none\" would send")),
            "{e}"
        );
        let e = with(("keep", t("perhaps")));
        assert!(
            e.starts_with(&format!("{prefix}column keep: not a boolean")),
            "{e}"
        );
        for e in [with(("port", t("x"))), with(("colour", t("hunter2")))] {
            assert!(!e.contains("hunter2") || e.contains("colour"), "{e}");
        }
        // No usable name: the row's position.
        let e = account(&c, &[("protocol", t("pop3")), ("user", t("x"))])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "accounts_from[0] (sqlite:///tmp/accounts.db): row #3: missing field `name`"
            ),
            "{e}"
        );
    }

    #[test]
    fn backend_tables_are_validated() {
        let err = |from: &str, to: &str| {
            super::super::parse(&BASE.replace(from, to), Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        let e = err("sqlite:///tmp/accounts.db", "ftp://x");
        assert!(e.starts_with("c.toml:11: accounts_from[0].url:"), "{e}");
        let e = err("query = \"SELECT * FROM mailbox\"\n", "");
        assert!(
            e.contains("accounts_from[0].query: an sql backend needs a query"),
            "{e}"
        );
        let e = err("type = \"sql\"", "type = \"nis\"");
        assert!(e.contains("unknown backend type"), "{e}");
        let ldap = BASE
            .replace("type = \"sql\"", "type = \"ldap\"")
            .replace("sqlite:///tmp/accounts.db", "ldap://ldap.example")
            .replace(
                "query = \"SELECT * FROM mailbox\"",
                "base = \"dc=x\"\nattributes = { name = \"uid\" }\npassword = \"p\"",
            );
        let e = super::super::parse(&ldap, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        if cfg!(feature = "ldap") {
            assert!(e.contains("in clear text"), "{e}");
            let ok = ldap.replace("password = \"p\"", "password = \"p\"\nstarttls = true");
            let c = super::super::parse(&ok, Path::new("c.toml")).unwrap();
            assert!(matches!(
                c.accounts_from[0].kind,
                BackendKind::Ldap { starttls: true, .. }
            ));
        } else {
            assert!(e.contains("without LDAP support"), "{e}");
        }
        let mysql = BASE.replace("sqlite:///tmp/accounts.db", "mysql://u:pw@db/mail");
        let parsed = super::super::parse(&mysql, Path::new("c.toml"));
        #[cfg(feature = "mysql")]
        assert_eq!(
            parsed.unwrap().accounts_from[0].label(),
            "accounts_from[0] (mysql://u:***@db/mail)"
        );
        #[cfg(not(feature = "mysql"))]
        assert!(parsed
            .unwrap_err()
            .to_string()
            .contains("without mysql support"));
        let report =
            format!("{BASE}\n[report]\nurl = \"sqlite:///tmp/r.db\"\ntable = \"x; DROP\"\n");
        let e = super::super::parse(&report, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("report.table"), "{e}");
    }
}
