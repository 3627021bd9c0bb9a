//! The delivery side of the config: `[destination.NAME]` tables, and an
//! account's `multidrop` and `on_refused`. Every destination type takes
//! its own keys; a key that does not apply to the type is refused with
//! the file, line and key, so a `socket` under an SMTP destination is an
//! error rather than silently ignored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawDestination, RawMultidrop};
use super::{
    expand_tilde, parse_duration, parse_fingerprint, AuthMech, Ctx, Secret, ServerConfig, TlsMode,
};
use crate::error::Result;

/// What a destination is, with the keys its type needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationConfig {
    /// A Maildir; created when missing. `%U` in the path is the recipient.
    Maildir {
        /// The Maildir's root (holding `tmp`, `new`, `cur`).
        path: PathBuf,
        /// Where a message from an IMAP folder other than INBOX goes.
        subfolders: Subfolders,
        /// IMAP flags become Maildir info (`:2,DFRS`) at download.
        flags: bool,
    },
    /// An mbox file (mboxrd quoting, fcntl lock plus dotlock).
    Mbox {
        /// The mbox file; `%U` is the recipient.
        path: PathBuf,
    },
    /// An SMTP server.
    Smtp(SmtpConfig),
    /// An LMTP server, over TCP or a Unix socket.
    Lmtp(LmtpConfig),
    /// A program taking the message on stdin.
    Mda(MdaConfig),
    /// A folder on an IMAP server (APPEND).
    Imap(ImapAppendConfig),
    /// One file per message in a directory.
    Directory {
        /// The directory; `%A` and `%U` are expanded.
        path: PathBuf,
        /// The file name template: `%A` account, `%U` recipient, `%I`
        /// unique id.
        filename: String,
    },
}

/// `subfolders`: how the source's folder tree maps onto a destination
/// (mbsync's names). The folder is the one relative to the source
/// server's personal namespace; INBOX is always the destination's root
/// (a Maildir's `path`, an IMAP destination's `folder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subfolders {
    /// Every folder into the one Maildir or IMAP folder (the default).
    #[default]
    None,
    /// Maildir++: `Lists/a` is `<path>/.Lists.a/` (a `.` or `\` inside a
    /// name is escaped as Dovecot's listescape does: `\2e`, `\5c`).
    MaildirPlusPlus,
    /// One directory (Maildir) or IMAP folder level per level:
    /// `Lists/a` is `<path>/Lists/a/`.
    Verbatim,
}

impl Subfolders {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Subfolders::None => "none",
            Subfolders::MaildirPlusPlus => "maildir++",
            Subfolders::Verbatim => "verbatim",
        }
    }
}

impl DestinationConfig {
    /// The built-in OAuth2 settings of an IMAP or SMTP destination.
    pub fn oauth2(&self) -> Option<&crate::oauth::OAuth2> {
        match self {
            DestinationConfig::Imap(c) => c.oauth2.as_ref(),
            DestinationConfig::Smtp(c) => c.oauth2.as_ref(),
            _ => None,
        }
    }

    pub(super) fn oauth2_mut(&mut self) -> Option<&mut crate::oauth::OAuth2> {
        match self {
            DestinationConfig::Imap(c) => c.oauth2.as_mut(),
            DestinationConfig::Smtp(c) => c.oauth2.as_mut(),
            _ => None,
        }
    }

    /// A Maildir at `path` with every setting at its default.
    pub fn maildir(path: PathBuf) -> DestinationConfig {
        DestinationConfig::Maildir {
            path,
            subfolders: Subfolders::None,
            flags: false,
        }
    }

    /// The type name as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Maildir { .. } => "maildir",
            DestinationConfig::Mbox { .. } => "mbox",
            DestinationConfig::Smtp(_) => "smtp",
            DestinationConfig::Lmtp(_) => "lmtp",
            DestinationConfig::Mda(_) => "mda",
            DestinationConfig::Imap(_) => "imap",
            DestinationConfig::Directory { .. } => "directory",
        }
    }

    /// Whether the destination checks the envelope before it takes the
    /// body (SMTP and LMTP), so that headers-first can save a download.
    pub fn checks_envelope(&self) -> bool {
        matches!(
            self,
            DestinationConfig::Smtp(_) | DestinationConfig::Lmtp(_)
        )
    }

    /// The fixed recipient of a single-drop SMTP or LMTP destination.
    pub fn recipient(&self) -> Option<&str> {
        match self {
            DestinationConfig::Smtp(s) => s.recipient.as_deref(),
            DestinationConfig::Lmtp(l) => l.recipient.as_deref(),
            _ => None,
        }
    }

    /// The password source of a destination that logs in.
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            DestinationConfig::Smtp(s) => Some(&s.secret),
            DestinationConfig::Imap(i) => Some(&i.secret),
            _ => None,
        }
    }
}

/// `type = "smtp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Host, port, TLS mode and trust.
    pub server: ServerConfig,
    /// Login name for SMTP AUTH, if any.
    pub user: Option<String>,
    /// The password for SMTP AUTH.
    pub secret: Secret,
    /// Built-in OAuth2: SMTP AUTH XOAUTH2 with its token.
    pub oauth2: Option<crate::oauth::OAuth2>,
    /// Single-drop: every message goes to this address.
    pub recipient: Option<String>,
    /// The envelope sender for messages without a `Return-Path`.
    pub sender: Option<String>,
}

/// Where an LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpTarget {
    /// TCP (no TLS: LMTP is a local protocol).
    Tcp(ServerConfig),
    /// A Unix socket such as `/run/dovecot/lmtp`.
    Socket(PathBuf),
}

/// `type = "lmtp"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpConfig {
    /// Where to connect.
    pub target: LmtpTarget,
    /// Read and write timeout.
    pub timeout: Duration,
    /// Single-drop: every message goes to this address.
    pub recipient: Option<String>,
    /// The envelope sender for messages without a `Return-Path`.
    pub sender: Option<String>,
}

/// `type = "mda"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdaConfig {
    /// The program and its arguments (no shell); `%U` in an argument is
    /// the recipient, and then the program runs once per recipient.
    pub command: Vec<String>,
    /// How long the program may run before it is killed (a temporary
    /// failure).
    pub timeout: Duration,
    /// The envelope sender for messages without a `Return-Path`.
    pub sender: Option<String>,
}

/// `type = "imap"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapAppendConfig {
    /// Host, port, TLS mode and trust.
    pub server: ServerConfig,
    /// Login name.
    pub user: String,
    /// The password.
    pub secret: Secret,
    /// Mechanisms to try, in order.
    pub auth: Vec<AuthMech>,
    /// Built-in OAuth2 for XOAUTH2/OAUTHBEARER.
    pub oauth2: Option<crate::oauth::OAuth2>,
    /// The folder appended to (written with `/`); with `subfolders =
    /// "verbatim"`, where INBOX goes.
    pub folder: String,
    /// `none` (everything into `folder`) or `verbatim` (the source's tree
    /// mirrored).
    pub subfolders: Subfolders,
    /// APPEND with the message's flags from the source.
    pub flags: bool,
}

/// What to do with a message an SMTP or LMTP destination refused for
/// good at MAIL FROM or RCPT TO (headers-first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnRefused {
    /// Leave it on the server and report it (the default).
    #[default]
    Keep,
    /// Delete it from the server.
    Delete,
    /// Send a bounce to the envelope sender, then delete it.
    Bounce,
}

/// `multidrop = { ... }`: recipients come from the message's headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Multidrop {
    /// The header naming the envelope recipient; `None` tries
    /// X-Original-To, Delivered-To, Envelope-To and X-Envelope-To in turn.
    pub envelope_header: Option<String>,
    /// Fall back to the addresses in To: and Cc: when no envelope header
    /// is present.
    pub to_cc: bool,
    /// Only addresses in these domains are delivered (lower case).
    pub local_domains: Vec<String>,
    /// Address or local part (lower case) → the recipient to deliver to.
    pub aliases: BTreeMap<String, String>,
}

/// The envelope headers multidrop reads, in the order tried.
pub const ENVELOPE_HEADERS: [&str; 4] = [
    "X-Original-To",
    "Delivered-To",
    "Envelope-To",
    "X-Envelope-To",
];

/// Validates `multidrop = { ... }`.
pub(super) fn validate_multidrop(
    ctx: &Ctx,
    key: &dyn Fn(&str) -> String,
    m: &Spanned<RawMultidrop>,
) -> Result<Multidrop> {
    let raw = m.get_ref();
    let envelope_header = match &raw.envelope_header {
        Some(h) => {
            let name = h.get_ref().trim();
            let known = ENVELOPE_HEADERS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(name));
            match known {
                Some(k) => Some(k.to_string()),
                None => {
                    return Err(ctx.at(
                        h,
                        &key("multidrop.envelope_header"),
                        format!("expected one of {}", ENVELOPE_HEADERS.join(", ")),
                    ))
                }
            }
        }
        None => None,
    };
    if raw.local_domains.get_ref().is_empty() {
        return Err(ctx.at(
            &raw.local_domains,
            &key("multidrop.local_domains"),
            "name at least one domain whose mail is delivered here",
        ));
    }
    Ok(Multidrop {
        envelope_header,
        to_cc: raw.to_cc.unwrap_or(false),
        local_domains: raw
            .local_domains
            .get_ref()
            .iter()
            .map(|d| d.trim().to_ascii_lowercase())
            .collect(),
        aliases: raw
            .aliases
            .iter()
            .flatten()
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect(),
    })
}

/// Validates `on_refused`.
pub(super) fn validate_on_refused(
    ctx: &Ctx,
    key: &dyn Fn(&str) -> String,
    v: Option<&Spanned<String>>,
) -> Result<OnRefused> {
    match v.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "keep")) => Ok(OnRefused::Keep),
        Some((_, "delete")) => Ok(OnRefused::Delete),
        Some((_, "bounce")) => Ok(OnRefused::Bounce),
        Some((v, other)) => Err(ctx.at(
            v,
            &key("on_refused"),
            format!("unknown value {other:?}; expected keep, delete or bounce"),
        )),
    }
}

/// The keys each destination type takes (besides `type`).
fn keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "maildir" => &["path", "subfolders", "flags"],
        "mbox" => &["path"],
        "directory" => &["path", "filename"],
        "smtp" => &[
            "host",
            "port",
            "tls",
            "allow_plaintext",
            "ca_file",
            "fingerprint",
            "timeout",
            "user",
            "password",
            "password_command",
            "oauth2",
            "recipient",
            "sender",
            "source_ip",
            "client_cert",
            "client_key",
        ],
        "lmtp" => &[
            "host",
            "port",
            "socket",
            "timeout",
            "recipient",
            "sender",
            "proxy",
            "source_ip",
            "tunnel",
        ],
        "mda" => &["command", "timeout", "sender"],
        "imap" => &[
            "host",
            "port",
            "tls",
            "allow_plaintext",
            "ca_file",
            "fingerprint",
            "timeout",
            "user",
            "password",
            "password_command",
            "auth",
            "oauth2",
            "folder",
            "subfolders",
            "flags",
            "proxy",
            "source_ip",
            "tunnel",
            "compress",
            "client_cert",
            "client_key",
        ],
        _ => &[],
    }
}

/// Validates one `[destination.NAME]`.
pub(super) fn validate_destination(
    ctx: &Ctx,
    name: &str,
    d: &Spanned<RawDestination>,
    default_timeout: Duration,
) -> Result<DestinationConfig> {
    let raw = d.get_ref();
    let key = |k: &str| format!("destination.{name}.{k}");
    let kind = raw.kind.get_ref().as_str();
    if !matches!(
        kind,
        "maildir" | "mbox" | "smtp" | "lmtp" | "mda" | "imap" | "directory"
    ) {
        return Err(ctx.at(
            &raw.kind,
            &key("type"),
            format!("unknown destination type {kind:?}; expected maildir, mbox, smtp, lmtp, mda, imap or directory"),
        ));
    }
    if let (Some(t), "smtp") = (&raw.tunnel, kind) {
        return Err(ctx.at(
            t,
            &key("tunnel"),
            "SMTP destinations cannot go through a tunnel (the SMTP library opens its own \
             connection); remove this key, or deliver over lmtp or imap",
        ));
    }
    if let (Some(t), Some(_)) = (&raw.tunnel, &raw.proxy) {
        return Err(ctx.at(t, &key("tunnel"), "give either tunnel or proxy, not both"));
    }
    if let (Some(_), Some(s)) = (&raw.tunnel, &raw.source_ip) {
        return Err(ctx.at(
            s,
            &key("source_ip"),
            "does not apply through a tunnel (the tunnel command makes the connection)",
        ));
    }
    if let (Some(p), "smtp") = (&raw.proxy, kind) {
        return Err(ctx.at(
            p,
            &key("proxy"),
            "SMTP destinations cannot go through a proxy (the SMTP library opens its own \
             connection); remove this key, or deliver over lmtp or imap",
        ));
    }
    let allowed = keys_of(kind);
    for (k, span) in raw.present_keys() {
        if !allowed.contains(&k) {
            return Err(ctx.err(
                span,
                &key(k),
                format!("does not apply to a {kind} destination; remove this key"),
            ));
        }
    }
    let required = |v: &Option<Spanned<String>>, k: &str| -> Result<String> {
        match v {
            Some(s) if !s.get_ref().trim().is_empty() => Ok(s.get_ref().trim().to_string()),
            Some(s) => Err(ctx.at(s, &key(k), "must not be empty")),
            None => Err(ctx.at(d, &key(k), format!("a {kind} destination needs `{k}`"))),
        }
    };
    let timeout = match &raw.timeout {
        Some(t) => parse_duration(ctx, t, &key("timeout"))?,
        None => default_timeout,
    };
    let address = |v: &Option<Spanned<String>>, k: &str| -> Result<Option<String>> {
        match v {
            Some(s) if !s.get_ref().contains('@') && !s.get_ref().is_empty() => {
                Err(ctx.at(s, &key(k), "must be a mail address (user@domain)"))
            }
            Some(s) => Ok(Some(s.get_ref().trim().to_string())),
            None => Ok(None),
        }
    };
    let oauth2 = |user: &str| -> Result<Option<crate::oauth::OAuth2>> {
        match &raw.oauth2 {
            Some(o) => Ok(Some(super::oauth::validate(
                ctx,
                o,
                &key("oauth2"),
                &format!("destination.{name}"),
                user,
                timeout,
            )?)),
            None => Ok(None),
        }
    };
    let secret = || -> Result<Secret> {
        match (&raw.password, &raw.password_command) {
            (Some(_), Some(c)) => Err(ctx.at(
                c,
                &key("password_command"),
                "give either password or password_command, not both",
            )),
            (Some(p), None) => Ok(Secret::Literal(p.get_ref().clone().into())),
            (None, Some(c)) => Ok(Secret::Command(c.get_ref().clone())),
            (None, None) => Ok(Secret::None),
        }
    };
    let server = |default_port: &dyn Fn(TlsMode) -> u16, secret: &Secret| -> Result<ServerConfig> {
        let host = required(&raw.host, "host")?;
        let tls = raw.tls.as_ref().map(|t| *t.get_ref()).unwrap_or_default();
        if tls == TlsMode::None
            && raw.tunnel.is_none()
            && (*secret != Secret::None || raw.oauth2.is_some())
            && raw.allow_plaintext.as_ref().map(|v| *v.get_ref()) != Some(true)
        {
            return Err(ctx.at(
                d,
                &key("tls"),
                "tls = \"none\" would send the password in clear text; set allow_plaintext = true if you mean it",
            ));
        }
        let port = match &raw.port {
            Some(p) if !(1..=65535).contains(p.get_ref()) => {
                return Err(ctx.at(p, &key("port"), "must be between 1 and 65535"))
            }
            Some(p) => *p.get_ref() as u16,
            None => default_port(tls),
        };
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
        let client_cert =
            super::parse_client_cert(ctx, raw.client_cert.as_ref(), raw.client_key.as_ref(), &key)?;
        if let (Some(_), Some(c), TlsMode::None) = (&client_cert, &raw.client_cert, tls) {
            return Err(ctx.at(
                c,
                &key("client_cert"),
                "a client certificate needs TLS; remove tls = \"none\" or this key",
            ));
        }
        Ok(ServerConfig {
            client_cert,
            host,
            port,
            tls,
            ca_file,
            fingerprint,
            timeout,
            proxy: super::parse_proxy(ctx, raw.proxy.as_ref(), &key("proxy"))?,
            source_ip: super::parse_source_ip(ctx, raw.source_ip.as_ref(), &key("source_ip"))?,
            tunnel: super::parse_tunnel(ctx, raw.tunnel.as_ref(), &key("tunnel"))?,
            compress: raw.compress.as_ref().is_none_or(|c| *c.get_ref()),
        })
    };
    let subfolders = match raw.subfolders.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "none")) => Subfolders::None,
        Some((_, "maildir++")) if kind == "maildir" => Subfolders::MaildirPlusPlus,
        Some((_, "verbatim")) => Subfolders::Verbatim,
        Some((v, "maildir++")) => {
            return Err(ctx.at(
                v,
                &key("subfolders"),
                format!(
                    "maildir++ is a Maildir layout; for an {kind} destination use none or verbatim"
                ),
            ))
        }
        Some((v, other)) => {
            return Err(ctx.at(
                v,
                &key("subfolders"),
                format!(
                    "unknown value {other:?}; expected {}",
                    if kind == "maildir" {
                        "none, maildir++ or verbatim"
                    } else {
                        "none or verbatim"
                    }
                ),
            ))
        }
    };
    let flags = raw.flags.as_ref().is_some_and(|f| *f.get_ref());
    Ok(match kind {
        "maildir" => DestinationConfig::Maildir {
            path: expand_tilde(&required(&raw.path, "path")?),
            subfolders,
            flags,
        },
        "mbox" => DestinationConfig::Mbox {
            path: expand_tilde(&required(&raw.path, "path")?),
        },
        "directory" => {
            DestinationConfig::Directory {
                path: expand_tilde(&required(&raw.path, "path")?),
                filename: match &raw.filename {
                    Some(f) if f.get_ref().contains('/') || f.get_ref().trim().is_empty() => {
                        return Err(ctx.at(
                            f,
                            &key("filename"),
                            "must be a file name without `/` (put directories in `path`)",
                        ))
                    }
                    Some(f) if !f.get_ref().contains("%I") => return Err(ctx.at(
                        f,
                        &key("filename"),
                        "must contain %I (the unique id), or messages would overwrite each other",
                    )),
                    Some(f) => f.get_ref().clone(),
                    None => "%I.eml".to_string(),
                },
            }
        }
        "smtp" => {
            let secret = secret()?;
            let user = raw.user.as_ref().map(|u| u.get_ref().trim().to_string());
            if user.is_none() && (secret != Secret::None || raw.oauth2.is_some()) {
                return Err(ctx.at(d, &key("user"), "a password needs a `user` to log in as"));
            }
            let oauth2 = oauth2(user.as_deref().unwrap_or_default())?;
            DestinationConfig::Smtp(SmtpConfig {
                server: server(
                    &|tls| match tls {
                        TlsMode::Implicit => 465,
                        TlsMode::Starttls => 587,
                        TlsMode::None => 25,
                    },
                    &secret,
                )?,
                user,
                secret,
                oauth2,
                recipient: address(&raw.recipient, "recipient")?,
                sender: address(&raw.sender, "sender")?,
            })
        }
        "lmtp" => {
            let target = match (&raw.socket, &raw.host) {
                (Some(s), Some(_)) => {
                    return Err(ctx.at(s, &key("socket"), "give either socket or host, not both"))
                }
                (Some(s), None) => {
                    if let Some((k, span)) = raw
                        .present_keys()
                        .into_iter()
                        .find(|(k, _)| matches!(*k, "proxy" | "source_ip" | "tunnel"))
                    {
                        return Err(ctx.err(span, &key(k), "does not apply to an LMTP socket"));
                    }
                    LmtpTarget::Socket(expand_tilde(s.get_ref()))
                }
                (None, Some(_)) => {
                    let mut server = server(&|_| 24, &Secret::None)?;
                    // LMTP is spoken to a local server; no TLS.
                    server.tls = TlsMode::None;
                    LmtpTarget::Tcp(server)
                }
                (None, None) => {
                    return Err(ctx.at(
                        d,
                        &key("socket"),
                        "an lmtp destination needs `socket` or `host`",
                    ))
                }
            };
            DestinationConfig::Lmtp(LmtpConfig {
                target,
                timeout,
                recipient: address(&raw.recipient, "recipient")?,
                sender: address(&raw.sender, "sender")?,
            })
        }
        "mda" => {
            let command = raw.command.as_ref().ok_or_else(|| {
                ctx.at(
                    d,
                    &key("command"),
                    "an mda destination needs `command = [\"program\", ...]`",
                )
            })?;
            if command.get_ref().is_empty() || command.get_ref()[0].trim().is_empty() {
                return Err(ctx.at(command, &key("command"), "must name a program"));
            }
            DestinationConfig::Mda(MdaConfig {
                command: command.get_ref().clone(),
                timeout: match &raw.timeout {
                    Some(_) => timeout,
                    None => Duration::from_secs(300),
                },
                sender: address(&raw.sender, "sender")?,
            })
        }
        "imap" => {
            let secret = secret()?;
            let user = required(&raw.user, "user")?;
            let oauth2 = oauth2(&user)?;
            let no_secret = secret == Secret::None;
            if let Some(a) = &raw.auth {
                if a.get_ref().contains(&AuthMech::External) && raw.client_cert.is_none() {
                    return Err(ctx.at(
                        a,
                        &key("auth"),
                        "external logs in with the TLS client certificate: set client_cert and client_key",
                    ));
                }
            }
            if let Some(f) = &raw.folder {
                if f.get_ref().contains(['"', '\\']) || f.get_ref().chars().any(char::is_control) {
                    return Err(ctx.at(
                        f,
                        &key("folder"),
                        "must not contain quotes, backslashes or control characters",
                    ));
                }
            }
            DestinationConfig::Imap(ImapAppendConfig {
                server: server(
                    &|tls| match tls {
                        TlsMode::Implicit => 993,
                        _ => 143,
                    },
                    &secret,
                )?,
                user,
                secret,
                auth: match &raw.auth {
                    Some(a) => a.get_ref().clone(),
                    None if oauth2.is_some() => AuthMech::OAUTH_ORDER.to_vec(),
                    None if raw.client_cert.is_some() && no_secret => {
                        vec![AuthMech::External]
                    }
                    None => AuthMech::DEFAULT_ORDER.to_vec(),
                },
                oauth2,
                folder: raw
                    .folder
                    .as_ref()
                    .map(|f| f.get_ref().trim().to_string())
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| "INBOX".to_string()),
                subfolders,
                flags,
            })
        }
        _ => unreachable!("checked above"),
    })
}

impl std::fmt::Display for DestinationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let server = |s: &ServerConfig| format!("{}:{} tls={:?}", s.host, s.port, s.tls);
        let drop = |r: &Option<String>| match r {
            Some(r) => format!(" recipient {r}"),
            None => " (multidrop recipients)".to_string(),
        };
        match self {
            DestinationConfig::Maildir {
                path,
                subfolders,
                flags,
            } => write!(
                f,
                "maildir {} subfolders {}{}",
                path.display(),
                subfolders.as_str(),
                if *flags { " flags" } else { "" }
            ),
            DestinationConfig::Mbox { path } => write!(f, "mbox {}", path.display()),
            DestinationConfig::Directory { path, filename } => {
                write!(f, "directory {}/{filename}", path.display())
            }
            DestinationConfig::Smtp(s) => write!(
                f,
                "smtp {}{}{}",
                server(&s.server),
                s.user
                    .as_ref()
                    .map(|u| format!(" user {u}"))
                    .unwrap_or_default(),
                drop(&s.recipient)
            ),
            DestinationConfig::Lmtp(l) => match &l.target {
                LmtpTarget::Tcp(s) => write!(f, "lmtp {}:{}{}", s.host, s.port, drop(&l.recipient)),
                LmtpTarget::Socket(p) => write!(f, "lmtp {}{}", p.display(), drop(&l.recipient)),
            },
            DestinationConfig::Mda(m) => write!(f, "mda {:?} timeout {:?}", m.command, m.timeout),
            DestinationConfig::Imap(i) => write!(
                f,
                "imap {} user {} folder {} subfolders {}{}",
                server(&i.server),
                i.user,
                i.folder,
                i.subfolders.as_str(),
                if i.flags { " flags" } else { "" }
            ),
        }
    }
}

impl std::fmt::Display for Multidrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "multidrop from {}{} for {} ({} aliases)",
            self.envelope_header
                .as_deref()
                .unwrap_or("the envelope headers"),
            if self.to_cc { ", else To/Cc" } else { "" },
            self.local_domains.join(", "),
            self.aliases.len()
        )
    }
}
