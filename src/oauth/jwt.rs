//! The JWT bearer assertion of a Google service account (RFC 7523,
//! Google's "OAuth 2.0 for server to server applications"): a JWT signed
//! RS256 with the account's private key, naming the mailbox user as
//! `sub` (domain-wide delegation). Signing is OpenSSL's (the `openssl`
//! crate, already under native-tls); nothing here is hand-rolled crypto.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// How long an assertion is valid (Google allows at most an hour).
const LIFETIME: i64 = 3600;

/// The fields of a service account key file that matter here.
#[derive(Deserialize)]
pub struct KeyFile {
    /// The service account's address: the JWT's `iss`.
    pub client_email: String,
    /// The PKCS#8 PEM private key.
    private_key: String,
    /// Where the assertion is exchanged (Google:
    /// https://oauth2.googleapis.com/token).
    pub token_uri: Option<String>,
    /// The key's id, sent as `kid`.
    private_key_id: Option<String>,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// Reads a key file. Errors name the file, never its contents.
pub fn read_key_file(path: &Path) -> Result<KeyFile> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("oauth2 key_file {}: {e}", path.display())))?,
    );
    serde_json::from_str(&text).map_err(|_| {
        Error::Config(format!(
            "oauth2 key_file {}: not a service account key (JSON with client_email and private_key)",
            path.display()
        ))
    })
}

/// The signed assertion for `subject`, asking for `scopes`, for the
/// token endpoint `audience`, issued at `now`.
pub fn assertion(
    key: &KeyFile,
    subject: &str,
    scopes: &[String],
    audience: &str,
    now: i64,
) -> Result<Zeroizing<String>> {
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = &key.private_key_id {
        header["kid"] = serde_json::Value::String(kid.clone());
    }
    let claims = serde_json::json!({
        "iss": key.client_email,
        "sub": subject,
        "scope": scopes.join(" "),
        "aud": audience,
        "iat": now,
        "exp": now + LIFETIME,
    });
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(claims.to_string())
    );
    let bad_key = |_| {
        Error::Config(format!(
            "the private_key of service account {} cannot be used to sign (expected a PEM RSA key)",
            key.client_email
        ))
    };
    let pkey = PKey::private_key_from_pem(key.private_key.as_bytes()).map_err(bad_key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey).map_err(bad_key)?;
    signer.update(signing_input.as_bytes()).map_err(bad_key)?;
    let signature = signer.sign_to_vec().map_err(bad_key)?;
    Ok(Zeroizing::new(format!(
        "{signing_input}.{}",
        B64URL.encode(signature)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;
    use openssl::sign::Verifier;

    #[test]
    fn signature_verifies_with_the_public_key() {
        let rsa = Rsa::generate(2048).unwrap();
        let pem = String::from_utf8(rsa.private_key_to_pem().unwrap()).unwrap();
        let key = KeyFile {
            client_email: "sa@p.iam.gserviceaccount.com".into(),
            private_key: pem,
            token_uri: None,
            private_key_id: Some("k1".into()),
        };
        let jwt = assertion(&key, "me@example.org", &["s".into()], "https://t", 1000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "me@example.org");
        assert_eq!(claims["exp"], 4600);
        let public = PKey::public_key_from_pem(&rsa.public_key_to_pem().unwrap()).unwrap();
        let mut verifier = Verifier::new(MessageDigest::sha256(), &public).unwrap();
        verifier
            .update(format!("{}.{}", parts[0], parts[1]).as_bytes())
            .unwrap();
        assert!(verifier.verify(&B64URL.decode(parts[2]).unwrap()).unwrap());
    }
}
