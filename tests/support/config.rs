//! One builder for the `config.toml` every test writes: a [`ConfigBuilder`]
//! holds `[general]`, the accounts ([`AccountBuilder`]) and the
//! destinations, and [`ConfigBuilder::build`] prints them in that order.
//!
//! ```ignore
//! ConfigBuilder::single(&env, AccountBuilder::dovecot_pop3s("acct", dovecot, &user).keep(true))
//!     .hostname("test.example")
//!     .write(&env);
//! ```
//!
//! Strings are quoted as TOML basic strings; `line`, `general` and
//! `destination` take raw TOML lines (several at once, separated by
//! newlines) for everything else.

use std::path::{Path, PathBuf};

use super::{Dovecot, Env, User};

/// `s` as a TOML basic string.
fn quoted(s: impl std::fmt::Display) -> String {
    let s = s.to_string().replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{s}\"")
}

/// Splits `text` into its non-empty lines.
fn lines(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
}

/// Builds a mailretr `config.toml` for a test.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    general: Vec<String>,
    accounts: Vec<AccountBuilder>,
    destinations: Vec<(String, Vec<String>)>,
    outgoing: Vec<String>,
}

impl ConfigBuilder {
    /// A config with `[general] state_dir = env.path("state")` and nothing
    /// else.
    pub fn new(env: &Env) -> Self {
        ConfigBuilder {
            general: vec![format!(
                "state_dir = {}",
                quoted(env.path("state").display())
            )],
            accounts: Vec::new(),
            destinations: Vec::new(),
            outgoing: Vec::new(),
        }
    }

    /// The common shape: `account` delivering to `home`, a Maildir at
    /// `env.path("Maildir")`.
    pub fn single(env: &Env, account: AccountBuilder) -> Self {
        Self::new(env)
            .account(account)
            .maildir("home", env.path("Maildir"))
    }

    /// Adds raw lines to `[general]`.
    pub fn general(mut self, text: &str) -> Self {
        self.general.extend(lines(text));
        self
    }

    /// `[general] hostname`, the name in `Received:` headers and DSNs.
    pub fn hostname(self, hostname: &str) -> Self {
        self.general(&format!("hostname = {}", quoted(hostname)))
    }

    /// Adds an `[[account]]`.
    pub fn account(mut self, account: AccountBuilder) -> Self {
        self.accounts.push(account);
        self
    }

    /// Adds `account` delivering only to a Maildir at `path` named after
    /// the account.
    pub fn account_to_maildir(self, account: AccountBuilder, path: impl AsRef<Path>) -> Self {
        let name = account.name.clone();
        self.account(account.deliver_to(&[&name]))
            .maildir(&name, path)
    }

    /// Adds `[destination.<name>]` with these raw lines, replacing an
    /// earlier destination of that name.
    pub fn destination(mut self, name: &str, text: &str) -> Self {
        let body: Vec<String> = lines(text).collect();
        match self.destinations.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = body,
            None => self.destinations.push((name.to_string(), body)),
        }
        self
    }

    /// A Maildir destination.
    pub fn maildir(self, name: &str, path: impl AsRef<Path>) -> Self {
        let path = quoted(path.as_ref().display());
        self.destination(name, &format!("type = \"maildir\"\npath = {path}"))
    }

    /// An mbox destination.
    pub fn mbox(self, name: &str, path: impl AsRef<Path>) -> Self {
        let path = quoted(path.as_ref().display());
        self.destination(name, &format!("type = \"mbox\"\npath = {path}"))
    }

    /// An SMTP destination on 127.0.0.1:`port` for `recipient`, with
    /// `extra` raw lines (`tls`, `sender`, credentials, ...).
    pub fn smtp(self, name: &str, port: u16, recipient: &str, extra: &str) -> Self {
        self.destination(
            name,
            &format!(
                "type = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nrecipient = {}\n{extra}",
                quoted(recipient)
            ),
        )
    }

    /// An IMAPS destination on the test Dovecot's `port` (its IMAPS port,
    /// or a relay in front of it) logging in as `user`, with `extra` raw
    /// lines (`folder`, `subfolders`, `compress`, ...).
    pub fn imap(self, name: &str, dovecot: &Dovecot, port: u16, user: &User, extra: &str) -> Self {
        self.destination(
            name,
            &format!(
                "type = \"imap\"\nhost = \"localhost\"\nport = {port}\nca_file = {}\nuser = {}\npassword = {}\n{extra}",
                quoted(dovecot.cert_pem.display()),
                quoted(&user.name),
                quoted(&user.password)
            ),
        )
    }

    /// Adds raw lines to `[outgoing]` (written only when there are any).
    pub fn outgoing(mut self, text: &str) -> Self {
        self.outgoing.extend(lines(text));
        self
    }

    /// The TOML text.
    pub fn build(&self) -> String {
        let mut out = String::from("[general]\n");
        for line in &self.general {
            out.push_str(line);
            out.push('\n');
        }
        for account in &self.accounts {
            out.push('\n');
            out.push_str(&account.build());
        }
        if !self.outgoing.is_empty() {
            out.push_str("\n[outgoing]\n");
            for line in &self.outgoing {
                out.push_str(line);
                out.push('\n');
            }
        }
        for (name, body) in &self.destinations {
            out.push_str(&format!("\n[destination.{name}]\n"));
            for line in body {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Writes the config to [`Env::config_path`] (mode 0600) and returns
    /// the path.
    pub fn write(&self, env: &Env) -> PathBuf {
        env.write_config(&self.build())
    }
}

/// One `[[account]]` table. Every constructor delivers to `home` until
/// [`AccountBuilder::deliver_to`] says otherwise.
#[derive(Debug, Clone)]
pub struct AccountBuilder {
    name: String,
    protocol: String,
    host: String,
    port: Option<u16>,
    tls: Option<String>,
    allow_plaintext: bool,
    ca_file: Option<PathBuf>,
    user: Option<String>,
    /// The whole `password`, `password_command` or
    /// `oauth2_token_command` line.
    secret: Option<String>,
    timeout: Option<String>,
    deliver_to: Vec<String>,
    extra: Vec<String>,
}

impl AccountBuilder {
    /// An account with only a name, a protocol and a host.
    pub fn new(name: &str, protocol: &str, host: &str) -> Self {
        AccountBuilder {
            name: name.to_string(),
            protocol: protocol.to_string(),
            host: host.to_string(),
            port: None,
            tls: None,
            allow_plaintext: false,
            ca_file: None,
            user: None,
            secret: None,
            timeout: None,
            deliver_to: vec!["home".to_string()],
            extra: Vec::new(),
        }
    }

    /// `user` on the test Dovecot over implicit TLS (`protocol` is `pop3`
    /// or `imap`), trusting its certificate.
    pub fn dovecot(name: &str, protocol: &str, dovecot: &Dovecot, user: &User) -> Self {
        let port = match protocol {
            "pop3" => dovecot.pop3s,
            "imap" => dovecot.imaps,
            other => panic!("no Dovecot port for protocol {other:?}"),
        };
        Self::new(name, protocol, "localhost")
            .port(port)
            .ca_file(&dovecot.cert_pem)
            .login(user)
    }

    /// `user` on the test Dovecot over POP3S.
    pub fn dovecot_pop3s(name: &str, dovecot: &Dovecot, user: &User) -> Self {
        Self::dovecot(name, "pop3", dovecot, user)
    }

    /// `user` on the test Dovecot over IMAPS.
    pub fn dovecot_imaps(name: &str, dovecot: &Dovecot, user: &User) -> Self {
        Self::dovecot(name, "imap", dovecot, user)
    }

    /// A scripted fake server on localhost:`port`: user `u`, password
    /// `topsecret`, `timeout = "5s"`; TLS as the server's script wants it
    /// ([`tls`](Self::tls), [`ca_file`](Self::ca_file),
    /// [`plaintext`](Self::plaintext)).
    pub fn fake(name: &str, protocol: &str, port: u16) -> Self {
        Self::new(name, protocol, "localhost")
            .port(port)
            .user("u")
            .password("topsecret")
            .timeout("5s")
    }

    /// The account's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `tls = "implicit" | "starttls" | "none"`.
    pub fn tls(mut self, mode: &str) -> Self {
        self.tls = Some(mode.to_string());
        self
    }

    /// `allow_plaintext = true`.
    pub fn allow_plaintext(mut self) -> Self {
        self.allow_plaintext = true;
        self
    }

    /// `tls = "none"` and `allow_plaintext = true`.
    pub fn plaintext(self) -> Self {
        self.tls("none").allow_plaintext()
    }

    pub fn ca_file(mut self, path: impl AsRef<Path>) -> Self {
        self.ca_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// No `ca_file`: the system's trust store (or a `fingerprint`) decides.
    pub fn no_ca_file(mut self) -> Self {
        self.ca_file = None;
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// A Dovecot user's name and password.
    pub fn login(self, user: &User) -> Self {
        self.user(&user.name).password(&user.password)
    }

    pub fn password(mut self, password: &str) -> Self {
        self.secret = Some(format!("password = {}", quoted(password)));
        self
    }

    /// `password_command` instead of `password`.
    pub fn password_command(mut self, command: &str) -> Self {
        self.secret = Some(format!("password_command = {}", quoted(command)));
        self
    }

    /// `oauth2_token_command` instead of `password`.
    pub fn oauth2_token_command(mut self, command: &str) -> Self {
        self.secret = Some(format!("oauth2_token_command = {}", quoted(command)));
        self
    }

    pub fn timeout(mut self, timeout: &str) -> Self {
        self.timeout = Some(timeout.to_string());
        self
    }

    /// `keep = true | false`.
    pub fn keep(self, keep: bool) -> Self {
        self.line(&format!("keep = {keep}"))
    }

    /// `deliver_to`; empty leaves the key out.
    pub fn deliver_to(mut self, destinations: &[&str]) -> Self {
        self.deliver_to = destinations.iter().map(|d| d.to_string()).collect();
        self
    }

    /// Raw lines for the table, e.g. `multidrop = { ... }`.
    pub fn line(mut self, text: &str) -> Self {
        self.extra.extend(lines(text));
        self
    }

    fn build(&self) -> String {
        let mut out = vec![
            "[[account]]".to_string(),
            format!("name = {}", quoted(&self.name)),
            format!("protocol = {}", quoted(&self.protocol)),
            format!("host = {}", quoted(&self.host)),
        ];
        if let Some(port) = self.port {
            out.push(format!("port = {port}"));
        }
        if let Some(tls) = &self.tls {
            out.push(format!("tls = {}", quoted(tls)));
        }
        if self.allow_plaintext {
            out.push("allow_plaintext = true".to_string());
        }
        if let Some(ca) = &self.ca_file {
            out.push(format!("ca_file = {}", quoted(ca.display())));
        }
        if let Some(user) = &self.user {
            out.push(format!("user = {}", quoted(user)));
        }
        out.extend(self.secret.clone());
        if let Some(timeout) = &self.timeout {
            out.push(format!("timeout = {}", quoted(timeout)));
        }
        out.extend(self.extra.iter().cloned());
        if !self.deliver_to.is_empty() {
            let list: Vec<String> = self.deliver_to.iter().map(quoted).collect();
            out.push(format!("deliver_to = [{}]", list.join(", ")));
        }
        let mut text = out.join("\n");
        text.push('\n');
        text
    }
}
