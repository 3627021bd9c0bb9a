//! SASL SCRAM-SHA-256 (RFC 5802, RFC 7677), client side, without channel
//! binding (GS2 header `n,,`). Pure message logic shared by POP3 `AUTH`
//! and IMAP `AUTHENTICATE`: the protocols only move the messages.
//!
//! The server must prove that it knows the password: its final message
//! carries `v=ServerSignature`, which is checked, and a mismatch (or no
//! signature at all) is an authentication error.
//!
//! User name and password go through SASLprep (RFC 4013, via the
//! `stringprep` crate): non-ASCII spaces become spaces, characters
//! "mapped to nothing" are dropped, the result is NFKC-normalized, and
//! strings SASLprep prohibits (control characters, unassigned code points,
//! bad bidirectional text) are refused with an authentication error that
//! suggests another mechanism. Plain ASCII passwords without control
//! characters are used unchanged.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The SASL name of the mechanism.
pub const MECHANISM: &str = "SCRAM-SHA-256";
/// The GS2 header: no channel binding, no authorization identity.
const GS2_HEADER: &str = "n,,";
/// Fewest PBKDF2 iterations accepted (RFC 7677 section 4: at least 4096).
pub const MIN_ITERATIONS: u32 = 4096;
/// Most PBKDF2 iterations accepted: more would let a server (or anyone in
/// the middle) burn minutes of CPU per login.
pub const MAX_ITERATIONS: u32 = 1_000_000;

type HmacSha256 = Hmac<Sha256>;

/// Where an exchange stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// The client-first message is ready; waiting for the server-first.
    Started,
    /// The client-final message went out; waiting for the server-final
    /// message, which must carry this signature.
    Proved { server_signature: [u8; 32] },
    /// The server proved that it knows the password.
    Verified,
}

/// One SCRAM-SHA-256 exchange, client side.
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    nonce: String,
    stage: Stage,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange with a fresh random client nonce.
    pub fn new(user: &str, password: &str) -> Result<ScramClient> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Internal(format!("no random numbers for the SCRAM nonce: {e}")))?;
        ScramClient::with_nonce(user, password, &B64.encode(bytes))
    }

    /// Starts an exchange with a given client nonce (tests use the RFC's).
    pub fn with_nonce(user: &str, password: &str, nonce: &str) -> Result<ScramClient> {
        let user = prepare("user name", user)?;
        let password = prepare("password", password)?;
        let client_first_bare = format!("n={},r={nonce}", escape_name(&user));
        Ok(ScramClient {
            password,
            client_first_bare,
            nonce: nonce.to_string(),
            stage: Stage::Started,
        })
    }

    /// The client-first message (`n,,n=user,r=nonce`).
    pub fn client_first(&self) -> String {
        format!("{GS2_HEADER}{}", self.client_first_bare)
    }

    /// Answers the server-first message with the client-final message
    /// (which carries the proof).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String> {
        if self.stage != Stage::Started {
            return Err(protocol("server-first message out of order"));
        }
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| protocol("server-first message is not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for (i, attr) in server_first.split(',').enumerate() {
            let (key, value) = attr.split_once('=').ok_or_else(|| {
                protocol(&format!("malformed server-first message {server_first:?}"))
            })?;
            match key {
                "m" if i == 0 => {
                    return Err(protocol("the server demands an unsupported extension (m=)"))
                }
                "e" => return Err(Error::Auth(format!("{MECHANISM}: server error: {value}"))),
                "r" => nonce = Some(value),
                "s" => salt = Some(value),
                "i" => iterations = Some(value),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(protocol(&format!(
                "server-first message {server_first:?} lacks r=, s= or i="
            )));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(Error::Auth(format!(
                "{MECHANISM}: the server's nonce does not extend ours; not answering"
            )));
        }
        if !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(protocol("the server's nonce has characters SCRAM forbids"));
        }
        let salt = B64
            .decode(salt)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| protocol("the server's salt is not base64"))?;
        let iterations: u32 = iterations.parse().map_err(|_| {
            protocol(&format!(
                "the server's iteration count {iterations:?} is not a number"
            ))
        })?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(Error::Auth(format!(
                "{MECHANISM}: the server asks for {iterations} PBKDF2 iterations; \
                 only {MIN_ITERATIONS} to {MAX_ITERATIONS} are accepted"
            )));
        }

        let salted =
            pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c={},r={nonce}", B64.encode(GS2_HEADER));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        let mut proof = client_key;
        for (p, s) in proof.iter_mut().zip(client_signature) {
            *p ^= s;
        }
        let server_key = hmac(&salted, b"Server Key");
        self.stage = Stage::Proved {
            server_signature: hmac(&server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message: the server's signature must match.
    pub fn verify_server_final(&mut self, server_final: &[u8]) -> Result<()> {
        let Stage::Proved { server_signature } = &self.stage else {
            return Err(protocol("server-final message out of order"));
        };
        let text = String::from_utf8_lossy(server_final);
        let first = text.split(',').next().unwrap_or("");
        if let Some(e) = first.strip_prefix("e=") {
            return Err(Error::Auth(format!("{MECHANISM}: server error: {e}")));
        }
        let given = first.strip_prefix("v=").and_then(|v| B64.decode(v).ok());
        match given {
            Some(v) if constant_time_eq(&v, server_signature) => {
                self.stage = Stage::Verified;
                Ok(())
            }
            _ => Err(Error::Auth(format!(
                "{MECHANISM}: the server's signature does not match; \
                 it cannot prove it knows the password, so it is not trusted"
            ))),
        }
    }

    /// Whether the client-final message went out (the next server message
    /// is the server-final one).
    pub fn client_first_answered(&self) -> bool {
        matches!(self.stage, Stage::Proved { .. })
    }

    /// Whether the server proved that it knows the password.
    pub fn verified(&self) -> bool {
        self.stage == Stage::Verified
    }

    /// The error to report when the server said it was done without
    /// having proved itself.
    pub fn unverified_error() -> Error {
        Error::Auth(format!(
            "{MECHANISM}: the server accepted the login without proving it knows the password \
             (no valid v=); not trusting it"
        ))
    }
}

fn protocol(what: &str) -> Error {
    Error::Auth(format!("{MECHANISM}: {what}"))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SASLprep (RFC 4013), with a clear error for what it refuses.
fn prepare(what: &str, s: &str) -> Result<String> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(s.to_string());
    }
    match stringprep::saslprep(s) {
        Ok(p) if !p.is_empty() => Ok(p.into_owned()),
        _ => Err(Error::Auth(format!(
            "{MECHANISM}: the {what} has characters SASLprep (RFC 4013) does not allow; \
             choose another mechanism with the auth key"
        ))),
    }
}

/// A user name as SCRAM sends it: `=` and `,` escaped (RFC 5802 5.1).
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    fn rfc7677() -> ScramClient {
        ScramClient::with_nonce("user", "pencil", "rOprNGfwEbeRWgbNEkqO").unwrap()
    }

    #[test]
    fn rfc7677_test_vector() {
        let mut c = rfc7677();
        assert_eq!(c.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        assert_eq!(
            c.client_final(SERVER_FIRST.as_bytes()).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(!c.verified());
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c.verified());
    }

    #[test]
    fn a_wrong_server_signature_is_an_auth_error() {
        let mut c = rfc7677();
        c.client_final(SERVER_FIRST.as_bytes()).unwrap();
        for bad in [
            &b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="[..],
            b"v=",
            b"v=!!",
            b"",
            b"x=1",
        ] {
            let e = c.verify_server_final(bad).unwrap_err();
            assert!(matches!(e, Error::Auth(_)), "{e}");
            assert!(!c.verified());
        }
        let e = c.verify_server_final(b"e=invalid-proof").unwrap_err();
        assert!(e.to_string().contains("invalid-proof"), "{e}");
    }

    #[test]
    fn server_first_is_checked() {
        let bad_iterations = |i: &str| {
            let sf = SERVER_FIRST.replace("i=4096", &format!("i={i}"));
            rfc7677()
                .client_final(sf.as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(bad_iterations("4095").contains("4095 PBKDF2 iterations"));
        assert!(bad_iterations("1000001").contains("1000001 PBKDF2 iterations"));
        assert!(bad_iterations("0").contains("iterations"));
        assert!(bad_iterations("-1").contains("not a number"));
        // The server's nonce must extend ours.
        let e = rfc7677()
            .client_final(b"r=somethingelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap_err();
        assert!(e.to_string().contains("nonce"), "{e}");
        let e = rfc7677()
            .client_final(b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap_err();
        assert!(e.to_string().contains("nonce"), "{e}");
        assert!(rfc7677().client_final(b"m=x,r=a,s=b,i=1").is_err());
        assert!(rfc7677().client_final(b"garbage").is_err());
        assert!(rfc7677()
            .client_final(b"r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096")
            .is_err());
        // Out of order.
        assert!(rfc7677().verify_server_final(b"v=abc").is_err());
    }

    #[test]
    fn user_names_are_escaped_and_prepared() {
        let c = ScramClient::with_nonce("a,b=c", "pw", "N").unwrap();
        assert_eq!(c.client_first(), "n,,n=a=2Cb=3Dc,r=N");
        // SASLprep: a non-ASCII space maps to a space, soft hyphen to nothing.
        let c = ScramClient::with_nonce("us\u{00AD}er\u{00A0}x", "pw", "N").unwrap();
        assert_eq!(c.client_first(), "n,,n=user x,r=N");
        assert_eq!(
            ScramClient::with_nonce("u", "p\u{2168}", "N")
                .unwrap()
                .password,
            "pIX"
        );
        // Control characters are refused, with a hint.
        let e = ScramClient::with_nonce("u", "p\u{7}w", "N").unwrap_err();
        assert!(matches!(e, Error::Auth(_)) && e.to_string().contains("SASLprep"));
        assert!(ScramClient::with_nonce("u", "\u{00AD}", "N").is_err());
    }

    #[test]
    fn random_nonces_differ() {
        let a = ScramClient::new("u", "p").unwrap();
        let b = ScramClient::new("u", "p").unwrap();
        assert_ne!(a.client_first(), b.client_first());
        assert_eq!(a.nonce.len(), 32);
        assert!(!a.nonce.contains(','));
    }
}
