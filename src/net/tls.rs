//! The TLS client on OpenSSL itself (not native-tls), for every IMAP and
//! POP3 connection (sources and the IMAP destination).
//!
//! Trust, as before: the chain and the host name are verified by
//! default; `ca_file` adds trust anchors; `fingerprint` pins the
//! server's certificate instead (no chain, no name, no store). What
//! changed is what that costs: a connector's store holds only the
//! `ca_file` certificates. The system's trust store is loaded once per
//! process, and only when a verification actually needs it: when the
//! chain does not end in a `ca_file` anchor (or there is none), the
//! verify callback checks the chain the server sent against the system
//! store (`X509StoreContext`), and accepts it if that succeeds; the host
//! name, key usage and every other check still run on the handshake's
//! own verification. The system store is first OpenSSL's hashed
//! certificate directory (certificates read one by one, as they are
//! looked up) and only if that cannot verify the chain the whole bundle
//! file. A resumed TLS session (see `session`) verifies nothing, so a
//! cron run that resumes loads no store at all.

use std::collections::HashMap;
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use openssl::ssl::{
    HandshakeError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod, SslMode,
    SslOptions, SslSessionCacheMode, SslStream, SslVerifyMode,
};
use openssl::x509::store::{X509Lookup, X509Store, X509StoreBuilder};
use openssl::x509::verify::X509CheckFlags;
use openssl::x509::{X509StoreContext, X509StoreContextRef, X509VerifyResult, X509};
use sha2::{Digest, Sha256};

use super::session;
use crate::config::ServerConfig;
use crate::error::{Error, Result};

/// A TLS session over a TCP socket.
pub type TlsStream = SslStream<TcpStream>;

/// A connector for one set of trust settings, and what identifies those
/// settings (the stored TLS session of a server is only offered again
/// under the same ones).
#[derive(Clone)]
pub struct Connector {
    ctx: SslContext,
    trust_id: String,
}

/// What tells connectors apart: the extra trust anchor, whether the
/// certificate is pinned, and the client certificate and key.
type ConnectorKey = (Option<PathBuf>, bool, Option<(PathBuf, PathBuf)>);

fn connector_key(server: &ServerConfig) -> ConnectorKey {
    (
        server.ca_file.clone(),
        server.fingerprint.is_some(),
        server
            .client_cert
            .as_ref()
            .map(|c| (c.cert.clone(), c.key.clone())),
    )
}

/// Whether two servers share a connector.
pub fn same_connector(a: &ServerConfig, b: &ServerConfig) -> bool {
    connector_key(a) == connector_key(b)
}

/// The cipher list rust-openssl's `SslConnector` (and so native-tls)
/// uses: OpenSSL's defaults without the weak and anonymous suites.
const CIPHERS: &str = "DEFAULT:!aNULL:!eNULL:!MD5:!3DES:!DES:!RC4:!IDEA:!SEED:!aDSS:!SRP:!PSK";

/// The connector for a server's trust settings, built once per process
/// for each: `watch` and multi-account runs reuse it. The `ca_file` and
/// client certificate are read when it is first built.
pub fn connector(server: &ServerConfig) -> Result<Connector> {
    static CACHE: OnceLock<Mutex<HashMap<ConnectorKey, Connector>>> = OnceLock::new();
    let key = connector_key(server);
    // Held while building: a connector being built (by `prepare_tls`)
    // is waited for, not built twice.
    let mut cache = CACHE
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.get(&key) {
        return Ok(c.clone());
    }
    let built = build(server)?;
    cache.insert(key, built.clone());
    Ok(built)
}

fn setup_error(e: impl std::fmt::Display) -> Error {
    Error::Tls(format!("cannot set up TLS: {e}"))
}

/// The context every connector starts from, before its trust settings.
/// Most of what setting up TLS costs is here: OpenSSL's initialisation
/// (its configuration file, its providers) and the context's fetch of
/// every algorithm.
fn base_builder() -> std::result::Result<SslContextBuilder, openssl::error::ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::tls_client())?;
    let mut opts = SslOptions::ALL | SslOptions::NO_COMPRESSION | SslOptions::NO_SSLV2;
    opts |= SslOptions::NO_SSLV3;
    b.set_options(opts);
    b.set_mode(
        SslMode::AUTO_RETRY | SslMode::ACCEPT_MOVING_WRITE_BUFFER | SslMode::ENABLE_PARTIAL_WRITE,
    );
    b.set_cipher_list(CIPHERS)?;
    // Sessions are kept by `session` (in state.db), not in OpenSSL's
    // cache: each one the server issues is handed to the callback.
    b.set_session_cache_mode(SslSessionCacheMode::CLIENT | SslSessionCacheMode::NO_INTERNAL);
    b.set_new_session_callback(session::issued);
    Ok(b)
}

type Warming = std::thread::JoinHandle<Option<SslContextBuilder>>;

fn warming() -> std::sync::MutexGuard<'static, Option<Warming>> {
    static WARMING: Mutex<Option<Warming>> = Mutex::new(None);
    WARMING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts building the base context (`base_builder`) on a thread of its
/// own, as a command that will connect starts, before its configuration
/// is read: the first connector takes it (`build`) instead of building
/// one.
pub fn warm_up() {
    let mut slot = warming();
    if slot.is_none() {
        *slot = std::thread::Builder::new()
            .name("tls-init".into())
            .spawn(|| base_builder().ok())
            .ok();
    }
}

fn build(server: &ServerConfig) -> Result<Connector> {
    let warmed = warming().take().and_then(|t| t.join().ok().flatten());
    let mut b = match warmed {
        Some(b) => b,
        None => base_builder().map_err(setup_error)?,
    };
    // What identifies these trust settings: the anchors' bytes (a
    // replaced ca_file is a different trust), the pin, the client
    // certificate.
    let mut trust = Sha256::new();
    let mut store = X509StoreBuilder::new().map_err(setup_error)?;
    if let Some(ca) = &server.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| Error::Tls(format!("cannot read ca_file {}: {e}", ca.display())))?;
        let certs = X509::stack_from_pem(&pem)
            .map_err(|e| Error::Tls(format!("ca_file {}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(Error::Tls(format!(
                "ca_file {} holds no certificate",
                ca.display()
            )));
        }
        for cert in certs {
            // The same certificate twice in a bundle is no error.
            let _ = store.add_cert(cert);
        }
        trust.update(b"ca\0");
        trust.update(&pem);
    }
    b.set_cert_store(store.build());
    match &server.fingerprint {
        // The pin replaces chain and name checks; it is verified after
        // the handshake, before a single byte of the protocol is sent.
        Some(pin) => {
            b.set_verify(SslVerifyMode::NONE);
            trust.update(b"pin\0");
            trust.update(pin);
        }
        None => b.set_verify_callback(SslVerifyMode::PEER, verify_with_system_store),
    }
    if let Some(client) = &server.client_cert {
        let cert_pem = std::fs::read(&client.cert).map_err(|e| {
            Error::Tls(format!(
                "cannot read client_cert {}: {e}",
                client.cert.display()
            ))
        })?;
        b.set_certificate_chain_file(&client.cert)
            .map_err(|e| Error::Tls(format!("client_cert {}: {e}", client.cert.display())))?;
        b.set_private_key_file(&client.key, SslFiletype::PEM)
            .map_err(|e| Error::Tls(format!("client_key {}: {e}", client.key.display())))?;
        b.check_private_key().map_err(|e| {
            Error::Tls(format!(
                "client_key {} does not belong to client_cert {}: {e}",
                client.key.display(),
                client.cert.display()
            ))
        })?;
        trust.update(b"client\0");
        trust.update(&cert_pem);
    }
    let digest = trust.finalize();
    let trust_id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Connector {
        ctx: b.build(),
        trust_id,
    })
}

/// Errors that mean "the chain does not end in an anchor we hold": the
/// ones the system store may still resolve.
fn lacks_issuer(e: X509VerifyResult) -> bool {
    use openssl_sys as ffi;
    matches!(
        e.as_raw(),
        ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
            | ffi::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            | ffi::X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
            | ffi::X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
            | ffi::X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
    )
}

/// The handshake's verify callback: a failure for lack of an issuer is
/// resolved against the system store; any other failure stands.
fn verify_with_system_store(ok: bool, ctx: &mut X509StoreContextRef) -> bool {
    if ok {
        return true;
    }
    if !lacks_issuer(ctx.error()) {
        return false;
    }
    let Some(chain) = ctx.chain() else {
        return false;
    };
    let mut certs = chain.iter();
    let Some(leaf) = certs.next() else {
        return false;
    };
    let Ok(mut untrusted) = openssl::stack::Stack::<X509>::new() else {
        return false;
    };
    for c in certs {
        if untrusted.push(c.to_owned()).is_err() {
            return false;
        }
    }
    let verified = system_stores().any(|store| {
        let Ok(mut sctx) = X509StoreContext::new() else {
            return false;
        };
        sctx.init(store, leaf, &untrusted, |c| c.verify_cert())
            .unwrap_or(false)
    });
    if verified {
        log::debug!("TLS: the server's chain is trusted by the system store");
        ctx.set_error(X509VerifyResult::OK);
    }
    verified
}

/// The system's trust stores, each loaded on first use and kept for the
/// process: the hashed directory first (cheap: certificates are read as
/// they are looked up), the whole bundle only when that is not enough.
fn system_stores() -> impl Iterator<Item = &'static X509Store> {
    static DIRS: OnceLock<Option<X509Store>> = OnceLock::new();
    static FILE: OnceLock<Option<X509Store>> = OnceLock::new();
    let dirs = || {
        DIRS.get_or_init(|| {
            let probe = openssl_probe::probe();
            let mut b = X509StoreBuilder::new().ok()?;
            let mut any = false;
            for dir in probe.cert_dir.iter().filter(|d| d.is_dir()) {
                let Some(dir) = dir.to_str() else { continue };
                if let Ok(lookup) = b.add_lookup(X509Lookup::hash_dir()) {
                    any |= lookup.add_dir(dir, SslFiletype::PEM).is_ok();
                }
            }
            log::debug!("TLS: using the system's certificate directories");
            any.then(|| b.build())
        })
        .as_ref()
    };
    let file = || {
        FILE.get_or_init(|| {
            let probe = openssl_probe::probe();
            let path = probe.cert_file?;
            let mut b = X509StoreBuilder::new().ok()?;
            let loaded = b
                .add_lookup(X509Lookup::file())
                .ok()?
                .load_cert_file(&path, SslFiletype::PEM)
                .is_ok();
            log::debug!("TLS: loaded the system's CA bundle {}", path.display());
            loaded.then(|| b.build())
        })
        .as_ref()
    };
    let mut tier = 0;
    std::iter::from_fn(move || loop {
        tier += 1;
        match tier {
            1 => {
                if let Some(s) = dirs() {
                    return Some(s);
                }
            }
            2 => {
                if let Some(s) = file() {
                    return Some(s);
                }
            }
            _ => return None,
        }
    })
}

/// Performs the TLS handshake on `tcp` for `server`, offering the
/// server's stored session when there is one, and checks the pin.
pub fn handshake(server: &ServerConfig, tcp: TcpStream) -> Result<TlsStream> {
    let connector = connector(server)?;
    let mut ssl = Ssl::new(&connector.ctx).map_err(setup_error)?;
    let host = server.host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<IpAddr>().ok();
    if ip.is_none() {
        ssl.set_hostname(host).map_err(setup_error)?;
    }
    if server.fingerprint.is_none() {
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match ip {
            Some(ip) => param.set_ip(ip),
            None => param.set_host(host),
        }
        .map_err(setup_error)?;
    }
    let key = session::key(server, &connector.trust_id);
    let offered = session::offer(&mut ssl, &key);
    session::attach(&mut ssl, key.clone());
    REFUSED.with(|r| r.set(false));
    let tls = ssl.connect(tcp).map_err(|e| match e {
        HandshakeError::WouldBlock(_) => {
            Error::Timeout(format!("TLS handshake with {}", server.host))
        }
        HandshakeError::SetupFailure(e) => setup_error(e),
        HandshakeError::Failure(mid) => {
            if offered {
                log::info!(
                    "{}:{}: the handshake with a resumed TLS session failed ({}); \
                     not resuming sessions with this server",
                    server.host,
                    server.port,
                    mid.error()
                );
                session::refused(&key);
                REFUSED.with(|r| r.set(true));
            }
            let verify = mid.ssl().verify_result();
            let why = if verify != X509VerifyResult::OK {
                format!("certificate verify failed: {}", verify.error_string())
            } else {
                mid.error().to_string()
            };
            Error::Tls(format!(
                "handshake with {}:{} failed: {why}",
                server.host, server.port
            ))
        }
    })?;
    let resumed = tls.ssl().session_reused();
    session::handshake_done(&key, offered, resumed);
    if resumed {
        log::debug!("{}:{}: TLS session resumed", server.host, server.port);
    } else if offered {
        log::debug!(
            "{}:{}: TLS session not resumed (full handshake)",
            server.host,
            server.port
        );
    }
    if let Some(pin) = &server.fingerprint {
        let cert = tls
            .ssl()
            .peer_certificate()
            .ok_or_else(|| Error::Tls("server sent no certificate".into()))?;
        let der = cert.to_der().map_err(|e| Error::Tls(e.to_string()))?;
        let actual = Sha256::digest(&der);
        if actual.as_slice() != pin.as_slice() {
            return Err(Error::Tls(format!(
                "certificate fingerprint mismatch for {}: server has {}",
                server.host,
                super::format_fingerprint(&actual)
            )));
        }
    }
    Ok(tls)
}

thread_local! {
    /// Whether this thread's last handshake failed with a stored session
    /// offered (see `resumption_refused`).
    static REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the last handshake on this thread failed while a stored
/// session was offered (the flag is cleared by asking). The session is
/// dropped and the server marked (`session::refused`): a caller that
/// connects again gets a full handshake.
pub fn resumption_refused() -> bool {
    REFUSED.with(|r| r.replace(false))
}

/// Notes on this thread that a stored session was refused on another
/// (an early connection's, see `early`), for `resumption_refused`.
pub(crate) fn note_refused() {
    REFUSED.with(|r| r.set(true));
}

/// Opens a session with `open` and, when its handshake failed because
/// the server refused the stored TLS session (`resumption_refused`),
/// once more: the session is gone then, so the second try is a full
/// handshake. `label` names the account in the log line.
pub fn open_resuming<T>(label: &str, mut open: impl FnMut() -> Result<T>) -> Result<T> {
    match open() {
        Err(e) if resumption_refused() => {
            log::info!("{label}: {e}; connecting again without the TLS session");
            open()
        }
        other => other,
    }
}

/// A shared TLS stream (see `TlsConn`).
pub type Shared = Arc<Mutex<TlsStream>>;
