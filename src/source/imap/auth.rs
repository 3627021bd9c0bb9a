//! IMAP authentication: choosing a mechanism from the account's order and
//! what the server offers, and the SASL exchanges behind `AUTHENTICATE`:
//! PLAIN (RFC 4616), CRAM-MD5 (RFC 2195), SCRAM-SHA-256 (RFC 7677, with
//! the server's signature checked), XOAUTH2 (Google's and
//! Microsoft's) and OAUTHBEARER (RFC 7628). `LOGIN` is the IMAP command
//! (RFC 3501 section 6.2.3), never used when the server says
//! `LOGINDISABLED`.

use std::cell::{Cell, RefCell};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::config::AuthMech;
use crate::error::{Error, Result};
use crate::scram::ScramClient;
use crate::source::pop3::client::cram_md5_response;

/// What the server offers, as far as choosing a mechanism goes.
#[derive(Debug, Clone, Default)]
pub struct Offered {
    /// `AUTH=` mechanisms, upper-cased.
    pub sasl: Vec<String>,
    /// `LOGINDISABLED` was advertised.
    pub login_disabled: bool,
}

/// Picks the first mechanism in `order` that the server offers and that
/// there is a credential for.
#[cfg(test)]
pub fn choose(
    order: &[AuthMech],
    offered: &Offered,
    have_password: bool,
    have_token: bool,
) -> Result<AuthMech> {
    Ok(candidates(order, offered, have_password, have_token, false)?[0])
}

/// The mechanisms to try, in `order`: those the server offers and that
/// there is a credential for. Never empty.
pub fn candidates(
    order: &[AuthMech],
    offered: &Offered,
    have_password: bool,
    have_token: bool,
    have_cert: bool,
) -> Result<Vec<AuthMech>> {
    if !have_password && !have_token && !have_cert {
        return Err(Error::Auth(
            "no password or oauth2_token_command configured".into(),
        ));
    }
    let sasl = |name: &str| offered.sasl.iter().any(|m| m == name);
    let usable = |m: &AuthMech| match m {
        AuthMech::OAuthBearer => have_token && sasl("OAUTHBEARER"),
        AuthMech::XOAuth2 => have_token && sasl("XOAUTH2"),
        AuthMech::Plain => have_password && sasl("PLAIN"),
        AuthMech::CramMd5 => have_password && sasl("CRAM-MD5"),
        AuthMech::ScramSha256 => have_password && sasl("SCRAM-SHA-256"),
        AuthMech::Login => have_password && !offered.login_disabled,
        AuthMech::External => have_cert && sasl("EXTERNAL"),
        AuthMech::Apop | AuthMech::User => false,
    };
    let found: Vec<AuthMech> = order.iter().copied().filter(usable).collect();
    if found.is_empty() {
        return Err(Error::Auth(format!(
            "the server offers none of the allowed mechanisms ({}){}",
            order
                .iter()
                .filter(|m| !matches!(m, AuthMech::Apop | AuthMech::User))
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if offered.login_disabled {
                "; LOGIN is disabled"
            } else {
                ""
            }
        )));
    }
    Ok(found)
}

/// The mechanisms tried on one login, for the fallback rule and the final
/// error (shared by IMAP and POP3). A mechanism the server turned down
/// with a plain authentication error gives way to the next; after one
/// that would have proved the server (SCRAM), nothing sends the password
/// itself over a connection without TLS.
#[derive(Debug)]
pub struct Attempts {
    label: String,
    failures: Vec<(AuthMech, Error)>,
}

impl Attempts {
    /// No attempt yet, for the account `label`.
    pub fn new(label: &str) -> Attempts {
        Attempts {
            label: label.to_string(),
            failures: Vec::new(),
        }
    }

    /// Whether `mech` may be tried after the failures so far.
    pub fn may_try(&self, mech: AuthMech, encrypted: bool) -> bool {
        let proved = self.failures.iter().any(|(m, _)| m.proves_server());
        let allowed = encrypted || !proved || !mech.sends_password();
        if !allowed {
            log::info!(
                "{}: not falling back to {mech}: it would send the password without TLS",
                self.label
            );
        } else if let Some((last, _)) = self.failures.last() {
            log::info!("{}: {last} failed; trying {mech}", self.label);
        }
        allowed
    }

    /// Records that `mech` failed with `error` (an authentication error).
    pub fn failed(&mut self, mech: AuthMech, error: Error) {
        log::info!("{}: {error}", self.label);
        self.failures.push((mech, error));
    }

    /// Whether nothing failed yet.
    pub fn is_empty(&self) -> bool {
        self.failures.is_empty()
    }

    /// The error that ends the login: the one failure as it is, or what
    /// each mechanism tried answered.
    pub fn error(mut self) -> Error {
        if self.failures.len() == 1 {
            return self.failures.pop().expect("one failure").1;
        }
        let tried = self
            .failures
            .iter()
            .map(|(mech, e)| {
                let text = e.to_string();
                let text = text
                    .strip_prefix("authentication failed: ")
                    .unwrap_or(&text);
                let text = text
                    .strip_prefix(&format!("{mech}: "))
                    .unwrap_or(text)
                    .to_string();
                format!("{mech} ({text})")
            })
            .collect::<Vec<_>>();
        if tried.is_empty() {
            return Error::Auth("no mechanism could be tried".into());
        }
        Error::Auth(format!("tried {}", tried.join(", ")))
    }
}

/// The first message a mechanism sends (the SASL initial response).
pub fn initial_response(
    mech: AuthMech,
    user: &str,
    secret: &str,
    host: &str,
    port: u16,
) -> Vec<u8> {
    match mech {
        AuthMech::Plain => format!("\0{user}\0{secret}").into_bytes(),
        AuthMech::XOAuth2 => format!("user={user}\x01auth=Bearer {secret}\x01\x01").into_bytes(),
        AuthMech::OAuthBearer => format!(
            "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {secret}\x01\x01",
            user.replace('=', "=3D").replace(',', "=2C")
        )
        .into_bytes(),
        _ => Vec::new(),
    }
}

/// The SASL name of a mechanism, as sent in `AUTHENTICATE`.
pub fn sasl_name(mech: AuthMech) -> &'static str {
    match mech {
        AuthMech::Plain => "PLAIN",
        AuthMech::CramMd5 => "CRAM-MD5",
        AuthMech::ScramSha256 => "SCRAM-SHA-256",
        AuthMech::XOAuth2 => "XOAUTH2",
        AuthMech::OAuthBearer => "OAUTHBEARER",
        AuthMech::Login => "LOGIN",
        AuthMech::Apop => "APOP",
        AuthMech::User => "USER",
        AuthMech::External => "EXTERNAL",
    }
}

/// Answers the server's challenges for one `AUTHENTICATE`.
pub struct Sasl {
    mech: AuthMech,
    user: String,
    secret: String,
    initial: Vec<u8>,
    /// Whether the initial response went out already (with SASL-IR, in
    /// the command itself).
    initial_sent: Cell<bool>,
    /// The SCRAM-SHA-256 exchange, and the first error in it (the
    /// `imap` crate's authenticator cannot fail, so it is kept here).
    scram: Option<RefCell<ScramClient>>,
    scram_error: RefCell<Option<Error>>,
}

impl Sasl {
    /// An exchange for `mech`. With `initial_sent`, the initial response
    /// is in the command (SASL-IR, RFC 4959) and any challenge is an error
    /// report to acknowledge.
    pub fn new(
        mech: AuthMech,
        user: &str,
        secret: &str,
        initial: Vec<u8>,
        initial_sent: bool,
    ) -> Sasl {
        Sasl {
            mech,
            user: user.to_string(),
            secret: secret.to_string(),
            initial,
            initial_sent: Cell::new(initial_sent),
            scram: None,
            scram_error: RefCell::new(None),
        }
    }

    /// A SCRAM-SHA-256 exchange: the initial response is the client-first
    /// message, sent inline with `inline` (SASL-IR).
    pub fn scram(user: &str, password: &str, inline: bool) -> Result<Sasl> {
        let scram = ScramClient::new(user, password)?;
        let mut sasl = Sasl::new(
            AuthMech::ScramSha256,
            user,
            password,
            scram.client_first().into_bytes(),
            inline,
        );
        sasl.scram = Some(RefCell::new(scram));
        Ok(sasl)
    }

    /// After the server's tagged answer: for SCRAM, the error that ended
    /// the exchange, or whether the server proved it knows the password.
    /// `Ok` for every other mechanism.
    pub fn outcome(&self) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        match &self.scram {
            Some(s) if !s.borrow().verified() => Err(ScramClient::unverified_error()),
            _ => Ok(()),
        }
    }

    /// The error that ended a SCRAM exchange on our side, if any.
    pub fn failure(&self) -> Option<Error> {
        self.scram_error.borrow_mut().take()
    }

    /// One SCRAM step. On an error the answer is an empty line, which no
    /// server takes as a valid proof; the error is reported by `outcome`.
    fn scram_step(&self, scram: &RefCell<ScramClient>, challenge: &[u8]) -> Vec<u8> {
        if !self.initial_sent.get() {
            self.initial_sent.set(true);
            return self.initial.clone();
        }
        if self.scram_error.borrow().is_some() {
            return Vec::new();
        }
        let mut scram = scram.borrow_mut();
        let step = if scram.verified() {
            Err(Error::Auth(
                "SCRAM-SHA-256: unexpected challenge after the server's signature".into(),
            ))
        } else if scram.client_first_answered() {
            scram.verify_server_final(challenge).map(|()| Vec::new())
        } else {
            scram.client_final(challenge).map(String::into_bytes)
        };
        step.unwrap_or_else(|e| {
            *self.scram_error.borrow_mut() = Some(e);
            Vec::new()
        })
    }

    /// Whether the initial response goes in the command (SASL-IR).
    pub fn inline(&self) -> bool {
        self.initial_sent.get()
    }

    /// The initial response, base64-encoded for the command line.
    pub fn initial_base64(&self) -> String {
        if self.initial.is_empty() {
            "=".into()
        } else {
            B64.encode(&self.initial)
        }
    }
}

impl imap::Authenticator for Sasl {
    type Response = Vec<u8>;

    fn process(&self, challenge: &[u8]) -> Vec<u8> {
        if let Some(scram) = &self.scram {
            return self.scram_step(scram, challenge);
        }
        match self.mech {
            AuthMech::CramMd5 => {
                cram_md5_response(&self.user, &self.secret, challenge).into_bytes()
            }
            _ if !self.initial_sent.get() => {
                self.initial_sent.set(true);
                self.initial.clone()
            }
            // A challenge after the token is an error report (RFC 7628
            // section 3.2.3: answer with %x01; XOAUTH2: an empty line).
            AuthMech::OAuthBearer => vec![0x01],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap::Authenticator as _;

    fn offered(sasl: &[&str], login_disabled: bool) -> Offered {
        Offered {
            sasl: sasl.iter().map(|s| s.to_string()).collect(),
            login_disabled,
        }
    }

    #[test]
    fn choice_follows_order_offer_and_credentials() {
        let order = AuthMech::DEFAULT_ORDER;
        let o = offered(&["PLAIN"], false);
        assert_eq!(choose(&order, &o, true, false).unwrap(), AuthMech::Plain);
        let o = offered(&[], false);
        assert_eq!(choose(&order, &o, true, false).unwrap(), AuthMech::Login);
        let o = offered(&[], true);
        assert!(matches!(
            choose(&order, &o, true, false),
            Err(Error::Auth(_))
        ));
        let o = offered(&["XOAUTH2", "PLAIN"], false);
        let oauth = [AuthMech::OAuthBearer, AuthMech::XOAuth2];
        assert_eq!(choose(&oauth, &o, false, true).unwrap(), AuthMech::XOAuth2);
        assert!(choose(&oauth, &offered(&["PLAIN"], false), false, true).is_err());
        assert!(choose(&order, &o, false, false).is_err());
    }

    #[test]
    fn fallback_never_sends_the_password_in_clear_after_scram() {
        let mut a = Attempts::new("t");
        assert!(a.may_try(AuthMech::ScramSha256, false));
        a.failed(
            AuthMech::ScramSha256,
            Error::Auth("scram-sha-256: NO bad".into()),
        );
        assert!(a.may_try(AuthMech::CramMd5, false));
        assert!(!a.may_try(AuthMech::Login, false));
        assert!(!a.may_try(AuthMech::Plain, false));
        assert!(a.may_try(AuthMech::Login, true));
        a.failed(
            AuthMech::Login,
            Error::Auth("login: NO [AUTHENTICATIONFAILED] no".into()),
        );
        let text = a.error().to_string();
        assert_eq!(
            text,
            "authentication failed: tried scram-sha-256 (NO bad), login (NO [AUTHENTICATIONFAILED] no)"
        );
        let mut one = Attempts::new("t");
        one.failed(AuthMech::Login, Error::Auth("login: NO x".into()));
        assert_eq!(
            one.error().to_string(),
            "authentication failed: login: NO x"
        );
    }

    #[test]
    fn initial_responses() {
        assert_eq!(
            initial_response(AuthMech::Plain, "u", "pw", "h", 993),
            b"\0u\0pw"
        );
        assert_eq!(
            initial_response(AuthMech::XOAuth2, "me@x", "tok", "h", 993),
            b"user=me@x\x01auth=Bearer tok\x01\x01"
        );
        assert_eq!(
            initial_response(AuthMech::OAuthBearer, "a,b=c", "tok", "imap.x", 993),
            b"n,a=a=2Cb=3Dc,\x01host=imap.x\x01port=993\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn error_challenges_are_acknowledged() {
        let s = Sasl::new(AuthMech::XOAuth2, "u", "t", b"ir".to_vec(), false);
        assert_eq!(s.process(b""), b"ir");
        assert_eq!(s.process(b"{\"status\":\"401\"}"), b"");
        let s = Sasl::new(AuthMech::OAuthBearer, "u", "t", b"ir".to_vec(), true);
        assert_eq!(s.process(b"{}"), [1]);
    }
}
