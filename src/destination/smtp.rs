//! SMTP delivery with lettre's `SmtpConnection`, driven command by
//! command (lettre's `send_raw` does MAIL, RCPT and DATA in one call,
//! but headers-first needs to stop after RCPT TO).
//!
//! One connection per run, reused across messages with `RSET` between;
//! it is opened on the first message and dropped after a network error
//! (the next message opens a new one). TLS: `implicit` from the first
//! byte, `starttls` which must succeed, or `none`; certificates are
//! verified, `ca_file` adds a trust anchor and `fingerprint` pins the
//! certificate instead, as for sources.
//!
//! One `EHLO` per session (and the one after STARTTLS that the protocol
//! requires): what the server offers is read from lettre's answer to it.
//! lettre keeps 8BITMIME and SMTPUTF8 from it but not SIZE, so SIZE is
//! not declared; a server's size limit is its refusal after DATA.
//! `BODY=8BITMIME` is declared whenever offered (the body may not be
//! known yet); without 8BITMIME an 8-bit body is converted to 7-bit
//! (`crate::mime7bit`), or refused when it cannot be. `SMTPUTF8` is
//! declared when the header or an address is not ASCII (RFC 6531 §3.4);
//! without it such a message (or recipient) is refused, as Postfix does,
//! since the protocol forbids sending it.
//!
//! Messages are held with LF line endings; they are sent as CRLF.
//! lettre dot-stuffs and ends the data with `CRLF . CRLF` itself, so the
//! message's own final line break is left off to avoid adding an empty
//! line.

use lettre::address::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Identity, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

use crate::config::{SmtpConfig, TlsMode};
use crate::error::{Error, Failure, Result};
use crate::message::Envelope;
use crate::secret;

use super::{sender_of, DeliveryReport, Destination, EnvelopeCheck, Refusal};

/// An open connection.
struct Connection {
    conn: SmtpConnection,
    /// A transaction ran on this connection (send RSET before the next).
    used: bool,
}

/// The transaction `begin` opened.
struct Transaction {
    /// Recipients accepted at RCPT TO.
    accepted: Vec<String>,
    /// `SMTPUTF8` was declared (the server takes 8-bit data then).
    smtputf8: bool,
}

/// An SMTP destination.
pub struct Smtp {
    name: String,
    config: SmtpConfig,
    hostname: String,
    connection: Option<Connection>,
    /// The open transaction.
    open: Option<Transaction>,
    /// Why the server refused our credentials (a 5xx to AUTH): tried
    /// once per run, not once per message, since servers lock accounts
    /// after a few wrong passwords.
    auth_refused: Option<String>,
}

/// LF line endings to CRLF (a CR already before an LF is kept as is),
/// leaving off the final line break, which lettre's terminator supplies.
pub fn wire_form(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 30 + 2);
    let mut prev = 0u8;
    for &b in message {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

impl Smtp {
    /// A destination for `config`; it connects on first use.
    pub fn new(name: &str, config: SmtpConfig, hostname: &str) -> Smtp {
        Smtp {
            name: name.to_string(),
            config,
            hostname: hostname.to_string(),
            connection: None,
            open: None,
            auth_refused: None,
        }
    }

    fn fail(&self, message: String, failure: Failure) -> Error {
        Error::delivery(self.name.clone(), message, failure)
    }

    /// A lettre error: a reply code decides (4xx transient, 5xx
    /// permanent); anything else is the connection or TLS, and the
    /// connection is dropped and the failure counted as transient.
    fn smtp_error(&mut self, what: &str, e: lettre::transport::smtp::Error) -> Error {
        if e.is_transient() || e.is_permanent() {
            return self.reply_error(what, &e);
        }
        if let Some(mut c) = self.connection.take() {
            c.conn.abort();
        }
        self.open = None;
        let server = format!("{}:{}", self.config.server.host, self.config.server.port);
        self.fail(format!("{what} ({server}): {e}"), Failure::Temporary)
    }

    /// A reply to `what`, as the server said it (`RCPT TO:<a@b>: 550
    /// 5.1.1 ...`), classified by its code.
    fn reply_error(&self, what: &str, e: &lettre::transport::smtp::Error) -> Error {
        self.fail(format!("{what}: {}", reply_text(e)), reply_failure(e))
    }

    /// A refusal of our own, for something the server does not offer
    /// and the protocol does not allow without it.
    fn refusal(&self, why: String) -> Error {
        self.fail(why, Failure::Refused)
    }

    fn tls_parameters(&self) -> Result<TlsParameters> {
        let server = &self.config.server;
        let mut b = TlsParameters::builder(server.host.clone());
        if let Some(ca) = &server.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| Error::Tls(format!("cannot read ca_file {}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| Error::Tls(format!("ca_file {}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        if let Some(client) = &server.client_cert {
            b = b.identify_with(client_identity(client)?);
        }
        if server.fingerprint.is_some() {
            // The pin replaces the chain and name checks; it is checked
            // right after the handshake, before anything is sent.
            b = b
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true);
        }
        b.build_native()
            .map_err(|e| Error::Tls(format!("cannot set up TLS: {e}")))
    }

    fn check_pin(&self, conn: &SmtpConnection) -> Result<()> {
        let Some(pin) = &self.config.server.fingerprint else {
            return Ok(());
        };
        let der = conn
            .peer_certificate()
            .map_err(|e| Error::Tls(format!("{}: {e}", self.config.server.host)))?;
        let actual = Sha256::digest(&der);
        if actual.as_slice() != pin.as_slice() {
            return Err(Error::Tls(format!(
                "certificate fingerprint mismatch for {}: server has {}",
                self.config.server.host,
                crate::net::format_fingerprint(&actual)
            )));
        }
        Ok(())
    }

    /// Opens the connection if there is none. Whatever fails here (TLS,
    /// a missing STARTTLS, a wrong pin, EHLO, a 4xx to AUTH, the password
    /// command) is the destination's problem, not the message's: it is a
    /// temporary failure, so the message is spooled or left for the next
    /// run, never refused, bounced or deleted because a relay is
    /// misconfigured or under attack. Credentials the server refuses (a
    /// 5xx to AUTH, or no mechanism we may use) are an authentication
    /// error naming the destination: a local fault, so nothing is
    /// recorded, refused or deleted, and the run ends with exit 3.
    fn connect(&mut self) -> Result<()> {
        if self.connection.is_some() {
            return Ok(());
        }
        if let Some(why) = &self.auth_refused {
            return Err(Error::Auth(why.clone()));
        }
        self.open_connection().map_err(|e| match e {
            Error::Delivery {
                destination,
                message,
                ..
            } => Error::delivery(destination, message, Failure::Temporary),
            other => other,
        })
    }

    fn open_connection(&mut self) -> Result<()> {
        let server = self.config.server.clone();
        let hello = ClientId::Domain(self.hostname.clone());
        let tls = match server.tls {
            TlsMode::None => None,
            _ => Some(
                self.tls_parameters()
                    .map_err(|e| self.fail(e.to_string(), Failure::Local))?,
            ),
        };
        let implicit = if server.tls == TlsMode::Implicit {
            tls.as_ref()
        } else {
            None
        };
        let mut conn = SmtpConnection::connect(
            (server.host.as_str(), server.port),
            Some(server.timeout),
            &hello,
            implicit,
            server.source_ip,
        )
        .map_err(|e| self.smtp_error("connecting", e))?;
        if server.tls == TlsMode::Starttls {
            if !conn.can_starttls() {
                conn.abort();
                return Err(self.fail(
                    "the server does not offer STARTTLS (tls = \"starttls\")".into(),
                    Failure::Local,
                ));
            }
            let params = tls.as_ref().expect("built for starttls");
            if let Err(e) = conn.starttls(params, &hello) {
                return Err(self.smtp_error("STARTTLS", e));
            }
        }
        if server.tls != TlsMode::None {
            if let Err(e) = self.check_pin(&conn) {
                conn.abort();
                return Err(self.fail(e.to_string(), Failure::Local));
            }
        }
        if let Some(user) = &self.config.user {
            // Built-in OAuth2: AUTH XOAUTH2 with a fresh token (lettre
            // has no OAUTHBEARER); otherwise the password.
            let (password, mechanisms): (_, &[Mechanism]) = match &self.config.oauth2 {
                Some(o) => (
                    crate::oauth::access_token(o)
                        .map_err(|e| {
                            let failure = e.failure();
                            self.fail(e.to_string(), failure)
                        })?
                        .token,
                    &[Mechanism::Xoauth2],
                ),
                None => (
                    secret::resolve(&self.config.secret)
                        .map_err(|e| self.fail(e.to_string(), Failure::Local))?
                        .unwrap_or_default(),
                    &[Mechanism::Plain, Mechanism::Login],
                ),
            };
            let credentials = Credentials::new(user.clone(), password.to_string());
            if let Err(e) = conn.auth(mechanisms, &credentials) {
                if let Some(o) = &self.config.oauth2 {
                    crate::oauth::rejected(o);
                }
                // Our credentials, not the message: never a refusal.
                conn.abort();
                if e.is_permanent() || e.is_client() {
                    let why = format!(
                        "destination {}: AUTH as {user}: {}",
                        self.name,
                        reply_text(&e)
                    );
                    self.auth_refused = Some(why.clone());
                    return Err(Error::Auth(why));
                }
                return Err(self.fail(
                    format!("authentication as {user} failed: {}", reply_text(&e)),
                    Failure::Temporary,
                ));
            }
        }
        self.connection = Some(Connection { conn, used: false });
        Ok(())
    }

    /// The MAIL FROM address for `sender`: the message's Return-Path,
    /// else the configured sender, else the null sender.
    fn sender_address(&self, sender: &str) -> Option<Address> {
        if sender.is_empty() {
            return None;
        }
        match sender.parse::<Address>() {
            Ok(a) => Some(a),
            // The sender comes from the message's Return-Path: a bad
            // one is no reason to refuse the message. The configured
            // sender, else the null sender.
            Err(e) => {
                log::warn!(
                    "{}: envelope sender {sender:?} is not an address ({e}); using {}",
                    self.name,
                    self.config.sender.as_deref().unwrap_or("<>")
                );
                self.config
                    .sender
                    .as_deref()
                    .and_then(|s| s.parse::<Address>().ok())
            }
        }
    }

    fn effective_recipients(&self, envelope: &Envelope) -> Vec<String> {
        super::fixed_or_envelope(&self.config.recipient, envelope)
    }
}

impl Destination for Smtp {
    fn name(&self) -> &str {
        &self.name
    }

    fn recipients(&self, envelope: &Envelope) -> Vec<String> {
        self.effective_recipients(envelope)
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        super::deliver_in_two_steps(self, envelope, message)
    }

    fn envelope_check(&mut self) -> Option<&mut dyn EnvelopeCheck> {
        Some(self)
    }

    fn close(&mut self) {
        if let Some(mut c) = self.connection.take() {
            let _ = c.conn.quit();
        }
    }
}

impl EnvelopeCheck for Smtp {
    fn begin(&mut self, envelope: &Envelope, _size: u64, header: &[u8]) -> Result<DeliveryReport> {
        self.connect()?;
        let recipients = self.effective_recipients(envelope);
        let sender = sender_of(envelope, self.config.sender.as_deref());
        let from = self.sender_address(&sender);
        let c = self.connection.as_mut().expect("connected above");
        let info = c.conn.server_info();
        let eight_bit_mime = info.supports_feature(Extension::EightBitMime);
        let smtputf8_offered = info.supports_feature(Extension::SmtpUtfEight);
        let needs_utf8 = !header.is_ascii() || !sender.is_ascii();
        // 8-bit header fields to a server with 8BITMIME but not SMTPUTF8
        // go out as MTAs have long sent them (Postfix does so for mail
        // not received with SMTPUTF8): refusing them would keep legacy
        // Latin-1 mail on the server for ever. A non-ASCII sender cannot.
        let legacy_8bit = eight_bit_mime && sender.is_ascii();
        if needs_utf8 && !smtputf8_offered && !legacy_8bit {
            let what = if header.is_ascii() {
                format!("the sender {sender:?} is not ASCII")
            } else {
                "the message has 8-bit headers".to_string()
            };
            let why = format!("{what} and the server offers neither SMTPUTF8 nor 8BITMIME");
            let why = if sender.is_ascii() {
                why
            } else {
                format!("{what} and the server does not offer SMTPUTF8")
            };
            return Ok(DeliveryReport::none(&recipients, || {
                self.refusal(why.clone())
            }));
        }
        let smtputf8 = smtputf8_offered && (needs_utf8 || recipients.iter().any(|r| !r.is_ascii()));
        if c.used {
            if let Err(e) = c.conn.command(Rset) {
                return Err(self.smtp_error("RSET", e));
            }
        }
        let c = self.connection.as_mut().expect("connected above");
        c.used = true;
        let mut params = Vec::new();
        // With headers-first the body is not known yet: declare 8BITMIME
        // whenever it is offered (harmless for 7-bit mail).
        if eight_bit_mime {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if smtputf8 {
            params.push(MailParameter::SmtpUtfEight);
        }
        if let Err(e) = c.conn.command(Mail::new(from, params)) {
            let what = format!("MAIL FROM:<{sender}>");
            if e.is_transient() || e.is_permanent() {
                let text = format!("{}: {}", what, reply_text(&e));
                let failure = reply_failure(&e);
                return Ok(DeliveryReport::none(&recipients, || {
                    self.fail(text.clone(), failure)
                }));
            }
            return Err(self.smtp_error(&what, e));
        }
        let mut report = DeliveryReport::default();
        for r in &recipients {
            let refused = |error| Refusal {
                recipient: r.clone(),
                error,
            };
            if !r.is_ascii() && !smtputf8 {
                report.refused.push(refused(self.refusal(format!(
                    "the recipient <{r}> is not ASCII and the server does not offer SMTPUTF8"
                ))));
                continue;
            }
            let address = match r.parse::<Address>() {
                Ok(a) => a,
                Err(e) => {
                    report.refused.push(refused(
                        self.refusal(format!("recipient {r:?} is not an address: {e}")),
                    ));
                    continue;
                }
            };
            let c = self.connection.as_mut().expect("connected above");
            match c.conn.command(Rcpt::new(address, vec![])) {
                Ok(_) => report.accepted.push(r.clone()),
                Err(e) if e.is_transient() || e.is_permanent() => {
                    let error = self.reply_error(&format!("RCPT TO:<{r}>"), &e);
                    report.refused.push(refused(error));
                }
                Err(e) => return Err(self.smtp_error(&format!("RCPT TO:<{r}>"), e)),
            }
        }
        self.open = Some(Transaction {
            accepted: report.accepted.clone(),
            smtputf8,
        });
        Ok(report)
    }

    fn finish(&mut self, _envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let Some(tx) = self.open.take() else {
            return Err(Error::Internal("SMTP finish without begin".into()));
        };
        let accepted = tx.accepted;
        let Some(c) = self.connection.as_mut() else {
            return Err(Error::Internal("SMTP connection gone".into()));
        };
        // RFC 6152: no 8-bit data to a server without 8BITMIME (one that
        // took SMTPUTF8 takes it too, RFC 6531 §3.1). Converted before
        // DATA, so a message that cannot be leaves the transaction
        // unused (RSET before the next).
        let eight_bit_ok = tx.smtputf8
            || c.conn
                .server_info()
                .supports_feature(Extension::EightBitMime);
        let message = if eight_bit_ok {
            Cow::Borrowed(message)
        } else {
            match crate::mime7bit::to_7bit(message) {
                Ok(m) => {
                    if let Cow::Owned(_) = m {
                        log::info!(
                            "{}: the server does not offer 8BITMIME; the message was converted to 7-bit",
                            self.name
                        );
                    }
                    m
                }
                Err(e) => {
                    let why = format!(
                        "8-bit message and the server does not offer 8BITMIME; could not convert: {e}"
                    );
                    return Ok(DeliveryReport::none(&accepted, || {
                        self.refusal(why.clone())
                    }));
                }
            }
        };
        let c = self.connection.as_mut().expect("checked above");
        if let Err(e) = c.conn.command(Data) {
            if e.is_transient() || e.is_permanent() {
                let text = format!("{}: {}", "DATA", reply_text(&e));
                let failure = reply_failure(&e);
                return Ok(DeliveryReport::none(&accepted, || {
                    self.fail(text.clone(), failure)
                }));
            }
            return Err(self.smtp_error("DATA", e));
        }
        let c = self.connection.as_mut().expect("checked above");
        match c.conn.message(&wire_form(&message)) {
            Ok(_) => Ok(DeliveryReport::all(&accepted)),
            Err(e) if e.is_transient() || e.is_permanent() => {
                let text = format!("{}: {}", "after DATA", reply_text(&e));
                let failure = reply_failure(&e);
                Ok(DeliveryReport::none(&accepted, || {
                    self.fail(text.clone(), failure)
                }))
            }
            // The connection broke after the data: the server may or may
            // not have it. Retried (a duplicate beats a loss).
            Err(e) => Err(self.smtp_error("sending the message", e)),
        }
    }

    fn abandon(&mut self) {
        self.open = None;
        // RSET is sent before the next transaction.
    }
}

/// A reply as the server said it: `550 5.1.1 text`.
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    match (e.status(), std::error::Error::source(e)) {
        (Some(code), Some(text)) => format!("{code} {text}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// A reply code's meaning (SPEC "What a failure does"): 4xx temporary,
/// 5xx refused for good.
fn reply_failure(e: &lettre::transport::smtp::Error) -> Failure {
    if e.is_permanent() {
        Failure::Refused
    } else {
        Failure::Temporary
    }
}

/// The client certificate for lettre (native-tls): the key re-encoded
/// as PKCS#8, which is all native-tls takes (`client_key` may be a
/// traditional `RSA`/`EC PRIVATE KEY` file too).
fn client_identity(client: &crate::config::ClientCert) -> Result<Identity> {
    let read = |what: &str, path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| Error::Tls(format!("cannot read {what} {}: {e}", path.display())))
    };
    let cert = read("client_cert", &client.cert)?;
    let key = read("client_key", &client.key)?;
    let key = openssl::pkey::PKey::private_key_from_pem(&key)
        .and_then(|k| k.private_key_to_pem_pkcs8())
        .map_err(|e| Error::Tls(format!("client_key {}: {e}", client.key.display())))?;
    Identity::from_pem(&cert, &key)
        .map_err(|e| Error::Tls(format!("client_cert {}: {e}", client.cert.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_is_crlf_without_the_last_break() {
        assert_eq!(wire_form(b"a\nb\n"), b"a\r\nb");
        assert_eq!(wire_form(b"a\r\nb"), b"a\r\nb");
        assert_eq!(wire_form(b"a\n\n"), b"a\r\n");
        assert_eq!(wire_form(b""), b"");
    }
}
