//! What each POP3 server answered CAPA in the last session that logged
//! in, kept in state.db (`pop3_capabilities`), so that the next session
//! can ask CAPA and log in with AUTH PLAIN in one round trip (RFC 2449
//! PIPELINING) instead of two: on a cron job over a 40 ms link, 40 ms of
//! a run that finds no new mail.
//!
//! The stored answer only decides whether to pipeline; what the session
//! then does is decided on the CAPA answer it reads first, as always
//! (`Pop3Source::connect`). It is used only when the server listed
//! PIPELINING and PLAIN, and PLAIN is the first of the account's
//! mechanisms that those capabilities offer (so a server that offered
//! SCRAM is never sent a password in PLAIN on a guess), and only over
//! TLS (implicit, or after STLS). A server that changed since is no
//! harm: AUTH PLAIN is then answered `-ERR` (unsupported, or the
//! password is wrong as it would be anyway), and the login goes on with
//! the mechanisms the fresh answer offers, as without the store.
//!
//! Keyed on the host, the port and the TLS mode (`key`). Read through
//! the run's state as the run starts (`preload`, beside the TLS
//! sessions'); a changed answer is written as the account's run ends
//! (`flush`), unsynced.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::config::{ServerConfig, TlsMode};
use crate::store::State;

/// A longer CAPA answer is not stored (a hostile server cannot fill
/// state.db; Dovecot's is about 100 bytes).
pub const MAX_STORED: usize = 4096;

#[derive(Default)]
struct Known {
    /// Answers read from state.db, by key.
    read: HashMap<String, String>,
    /// Answers learned in this process and not written yet (`None`:
    /// forget the stored one).
    unwritten: HashMap<String, Option<String>>,
}

fn known() -> std::sync::MutexGuard<'static, Known> {
    static KNOWN: OnceLock<Mutex<Known>> = OnceLock::new();
    KNOWN
        .get_or_init(|| Mutex::new(Known::default()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The store's key for a server.
pub fn key(server: &ServerConfig) -> String {
    let tls = match server.tls {
        TlsMode::Implicit => "implicit",
        TlsMode::Starttls => "starttls",
        TlsMode::None => "none",
    };
    format!("{}:{} {tls}", server.host.to_ascii_lowercase(), server.port)
}

/// Reads the stored answer of `server` through `state` (`fetch`, before
/// it connects).
pub fn preload(state: &State, server: &ServerConfig) {
    let key = key(server);
    match state.pop3_capabilities(&key) {
        Ok(Some(capa)) => {
            known().read.insert(key, capa);
        }
        Ok(None) => {}
        Err(e) => log::debug!("POP3 capabilities store: {e}"),
    }
}

/// The answer `key`'s server gave CAPA in the last session that logged
/// in, if known: learned in this process, or read by `preload`.
pub fn get(key: &str) -> Option<String> {
    let k = known();
    match k.unwritten.get(key) {
        Some(learned) => learned.clone(),
        None => k.read.get(key).cloned(),
    }
}

/// A session with `key`'s server logged in after CAPA answered `capa`
/// (`None`: not answered). Kept for the next run when it lists
/// PIPELINING (otherwise nothing may be pipelined, and nothing is kept);
/// never over the mark of a server that failed CAPA and AUTH PLAIN sent
/// together (`refused`).
pub fn learned(key: &str, capa: Option<&str>) {
    if is_refused(key) {
        return;
    }
    let keep = capa
        .filter(|c| c.len() <= MAX_STORED)
        .filter(|c| super::Capabilities::parse(c).has("PIPELINING"))
        .map(str::to_string);
    if get(key) == keep {
        return;
    }
    known().unwritten.insert(key.to_string(), keep);
}

/// A session that sent CAPA and AUTH PLAIN together (and STAT after them,
/// see `Pop3Source::connect`) failed other than by the server's `-ERR`
/// (it hung up, answered what it should not, or never answered what
/// followed the login): the server is marked (an empty answer stored)
/// and never sent anything pipelined with the login again; the caller
/// connects once more, CAPA alone.
pub fn refused(key: &str) {
    known()
        .unwritten
        .insert(key.to_string(), Some(String::new()));
}

/// Whether `key`'s server carries the mark of `refused`.
pub fn is_refused(key: &str) -> bool {
    get(key).is_some_and(|c| c.is_empty())
}

/// Writes what was learned since the last call through `state` (an
/// account's run, as it ends).
pub fn flush(state: &mut State) {
    let rows: Vec<(String, Option<String>)> = {
        let mut k = known();
        let rows: Vec<_> = k.unwritten.drain().collect();
        for (key, capa) in &rows {
            match capa {
                Some(c) => k.read.insert(key.clone(), c.clone()),
                None => k.read.remove(key),
            };
        }
        rows
    };
    if rows.is_empty() {
        return;
    }
    if let Err(e) = state.put_pop3_capabilities(&rows, crate::retry::now()) {
        log::debug!("POP3 capabilities not stored: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_answer_with_pipelining_is_kept_and_a_change_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(dir.path()).unwrap();
        let key = "known-test.example:995 implicit";
        learned(key, Some("USER\nSASL PLAIN\n"));
        assert_eq!(get(key), None, "no PIPELINING: nothing to pipeline");
        learned(key, Some("USER\nPIPELINING\nSASL PLAIN\n"));
        assert_eq!(get(key).as_deref(), Some("USER\nPIPELINING\nSASL PLAIN\n"));
        flush(&mut state);
        assert_eq!(
            state.pop3_capabilities(key).unwrap().as_deref(),
            Some("USER\nPIPELINING\nSASL PLAIN\n")
        );
        // Unchanged: nothing to write.
        learned(key, Some("USER\nPIPELINING\nSASL PLAIN\n"));
        assert!(!known().unwritten.contains_key(key));
        // Too long, or not answered: forgotten.
        let long = format!("PIPELINING\nX-{}\n", "A".repeat(MAX_STORED));
        learned(key, Some(&long));
        assert_eq!(get(key), None);
        flush(&mut state);
        assert_eq!(state.pop3_capabilities(key).unwrap(), None);
        learned(key, None);
        assert!(!known().unwritten.contains_key(key));
    }

    #[test]
    fn a_refused_server_keeps_its_mark() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(dir.path()).unwrap();
        let key = "known-refused.example:995 implicit";
        learned(key, Some("PIPELINING\nSASL PLAIN\n"));
        refused(key);
        assert!(is_refused(key));
        learned(key, Some("PIPELINING\nSASL PLAIN\n"));
        assert!(is_refused(key), "not learned over the mark");
        flush(&mut state);
        assert_eq!(state.pop3_capabilities(key).unwrap().as_deref(), Some(""));
    }

    #[test]
    fn the_key_tells_tls_modes_and_ports_apart() {
        let mut server = ServerConfig {
            host: "Mail.Example".into(),
            port: 995,
            tls: TlsMode::Implicit,
            ca_file: None,
            fingerprint: None,
            timeout: std::time::Duration::from_secs(1),
            proxy: None,
            source_ip: None,
            tunnel: None,
            compress: true,
            client_cert: None,
        };
        assert_eq!(key(&server), "mail.example:995 implicit");
        server.tls = TlsMode::Starttls;
        server.port = 110;
        assert_eq!(key(&server), "mail.example:110 starttls");
    }
}
