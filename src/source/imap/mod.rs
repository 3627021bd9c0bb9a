//! The IMAP source: connection set-up with the TLS and authentication
//! rules, folder selection, UID-exact seen-state, batched retrieval and
//! deletion (or moving) after the delivery commit. The `imap` crate speaks
//! the protocol once logged in; the STARTTLS dialogue before TLS is ours
//! (`starttls`), and so are the few parsers whose input a hostile server
//! controls (`SELECT`, `LIST`).
//!
//! Per folder the state store keeps the UIDVALIDITY and the UID up to
//! which everything was dealt with, so a run asks only about higher UIDs:
//! with nothing new that is one `SELECT` per folder (its `UIDNEXT` says
//! so), however large the folder. When the UIDVALIDITY changes, the
//! messages delivered before are found again by size and header hash
//! (`rematch`) instead of being delivered twice.
//!
//! Bodies are fetched with `UID FETCH ... BODY.PEEK[]` (the server's
//! `\Seen` flags stay as they were) in batches bounded by the sizes the
//! server reported, so memory stays bounded by `BATCH_BYTES` plus the
//! largest message. `\Seen` (with `mark_seen`), `\Deleted` and moves are
//! only ever asked for after the fetch loop has committed a delivery, and
//! are sent in batches: before the next fetch batch, and when leaving a
//! folder, where deletions are expunged.

pub mod auth;
pub mod bodies;
pub mod folders;
pub mod rematch;
pub mod starttls;
pub mod transcript;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;

use imap::types::Flag;
use imap::{Client, Session};

use crate::config::{Account, AuthMech, TlsMode};
use crate::error::{Error, Result};
use crate::message;
use crate::net::deflate::{Deflate, Switch};
use crate::net::{self, Stream, StreamHandle};
use crate::secret;
use crate::store::Quota;
use bodies::BodyReader;
use folders::ChosenFolder;
use transcript::{Tap, Traced};

use super::{FolderState, FolderUpdate, MessageHeader, RemoteMessage, Scan, SeenIndex, Source};

/// A fetch batch asks for at most this many bytes (by the server's sizes),
/// but always for at least one message. With `PIPELINE` batches in
/// flight, round trips are not waited for between batches, so a batch
/// only needs to be large enough to keep the server streaming while the
/// previous one is delivered; memory holds one batch (plus, at worst,
/// the largest message).
pub const BATCH_BYTES: u64 = 2 * 1024 * 1024;

/// Fetch commands in flight at once: the server sends the next batch
/// while the current one is delivered.
const PIPELINE: usize = 4;

/// `\Seen` flags and deletions are sent once this many are waiting: the
/// pipeline is let drain for it (the `imap` crate cannot talk while our
/// fetches are in flight), which costs a round trip.
const FLUSH_AFTER: usize = 1000;

/// A fetch batch asks for at most this many messages, keeping command
/// lines short.
pub const BATCH_MESSAGES: usize = 1000;

/// Headers are fetched this many messages at a time.
const HEADER_BATCH: usize = 50;

/// The connection the `imap` crate talks over: the transcript above the
/// COMPRESS=DEFLATE layer, which shows it the uncompressed dialogue.
pub type Conn = Traced<Deflate<Stream>>;

/// The second handle on the session's connection (see `bodies`), sharing
/// its COMPRESS=DEFLATE state.
pub type Handle = Deflate<StreamHandle>;

/// How long the server's answer to `LOGOUT` is waited for: everything
/// that matters (flags, expunges, moves) was confirmed before it is sent,
/// so over a slow link the round trip is not worth waiting for; on a fast
/// one the answer is read and the connection closes cleanly.
const LOGOUT_GRACE: std::time::Duration = std::time::Duration::from_millis(10);

/// The tag of the `ID` command, sent ahead of the session's next command
/// (never a tag of the `imap` crate, `a` and digits).
const ID_TAG: &str = "ai1";

/// Capabilities mailretr looks for; the `imap` crate is asked about each.
const KNOWN_CAPABILITIES: &[&str] = &[
    "LOGINDISABLED",
    "SASL-IR",
    "AUTH=PLAIN",
    "AUTH=CRAM-MD5",
    "AUTH=SCRAM-SHA-256",
    "AUTH=XOAUTH2",
    "AUTH=OAUTHBEARER",
    "ID",
    "UIDPLUS",
    "MOVE",
    "IDLE",
    "NAMESPACE",
    "ENABLE",
    "UTF8=ACCEPT",
    "QUOTA",
    "COMPRESS=DEFLATE",
];

/// What the account asks of the server beyond fetching.
#[derive(Debug, Clone)]
struct Options {
    keep: bool,
    /// With `keep`: messages the run says are due (`delete_after`,
    /// `delete_bigger_than`) are deleted all the same, and the messages
    /// below the folder's last UID are looked at for that.
    retention: bool,
    /// With `keep`: a rule or the filter may delete a new message (the
    /// older ones are not looked at for it).
    filter_deletes: bool,
    mark_seen: bool,
    only_unseen: bool,
    move_to: Option<String>,
    patterns: Vec<String>,
}

/// Changes asked for in one folder, not yet sent or not yet expunged.
#[derive(Debug, Default)]
struct Pending {
    /// UIDs to flag `\Seen`.
    seen: Vec<u32>,
    /// UIDs to delete or move.
    remove: Vec<u32>,
    /// UIDs flagged `\Deleted`, to expunge when leaving the folder.
    flagged: Vec<u32>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.seen.is_empty() && self.remove.is_empty() && self.flagged.is_empty()
    }
}

/// A folder as the scan found it.
#[derive(Debug, Clone)]
struct FolderInfo {
    server_name: String,
    uidvalidity: u32,
}

/// What `SELECT` said (RFC 3501 section 6.3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    /// Messages in the folder.
    pub exists: u32,
    /// The folder's UIDVALIDITY.
    pub uidvalidity: Option<u32>,
    /// The UID the next message will get.
    pub uidnext: Option<u32>,
}

/// A logged-in IMAP session acting as a `Source`.
pub struct ImapSource {
    session: Option<Session<Conn>>,
    /// The session's socket, for the read timeout while logging out.
    socket: std::net::TcpStream,
    label: String,
    protocol_name: &'static str,
    caps: HashSet<String>,
    /// Folder names are UTF-8 (`ENABLE UTF8=ACCEPT`), not modified UTF-7.
    utf8: bool,
    options: Options,
    /// The server's name for `move_to`, once the listing resolved it.
    move_to_server: Option<String>,
    /// Folders scanned, by config-style name.
    folders: HashMap<String, FolderInfo>,
    /// The selected folder (config-style name).
    selected: Option<String>,
    /// Messages queued for retrieval, in order.
    queue: VecDeque<RemoteMessage>,
    /// The fetched batch being handed out.
    batch: VecDeque<(RemoteMessage, Vec<u8>)>,
    /// Body fetches, on a second handle of the session's connection.
    bodies: BodyReader,
    /// Flag, delete and move work per folder.
    pending: BTreeMap<String, Pending>,
    /// The session stream's tap (for the `ID` still to be sent).
    tap: std::sync::Arc<std::sync::Mutex<Tap>>,
    /// Per folder, what `settle` needs to move its last_uid at the end.
    settle: HashMap<String, Settle>,
    /// (folder, UID) of the messages committed this run.
    committed: HashSet<(String, u32)>,
}

/// A folder's listing past its last_uid, for `Source::settle`.
#[derive(Debug)]
struct Settle {
    uidvalidity: u32,
    last_uid: u32,
    /// The UIDs listed above `last_uid`, in order, and whether each was
    /// dealt with already when listed.
    above: Vec<(u32, bool)>,
}

/// Connects, secures and logs in. `keep` is the run's effective setting:
/// with it, nothing is ever deleted or moved.
pub fn connect(account: &Account, password: Option<&str>, keep: bool) -> Result<ImapSource> {
    let LoggedIn {
        session,
        caps,
        protocol_name,
        stream,
        socket,
        tap,
        utf8,
    } = connect_session(account, password)?;
    Ok(ImapSource {
        session: Some(session),
        socket,
        label: account.name.clone(),
        protocol_name,
        caps,
        options: Options {
            keep,
            retention: false,
            filter_deletes: false,
            mark_seen: account.mark_seen,
            only_unseen: account.only_unseen,
            move_to: account.move_to.clone(),
            patterns: account.folders.clone(),
        },
        move_to_server: None,
        folders: HashMap::new(),
        selected: None,
        queue: VecDeque::new(),
        batch: VecDeque::new(),
        bodies: BodyReader::new(stream, &account.name),
        pending: BTreeMap::new(),
        tap,
        settle: HashMap::new(),
        committed: HashSet::new(),
        utf8,
    })
}

impl ImapSource {
    /// With `keep`: lets the run delete the messages retention makes due
    /// (the run decides which, from the state; see `crate::retention`).
    pub fn allow_retention(&mut self) {
        self.options.retention = true;
    }

    /// With `keep`: lets the run delete the new messages a rule or the
    /// filter command decides to delete (see `crate::filter`).
    pub fn allow_filter_deletes(&mut self) {
        self.options.filter_deletes = true;
    }

    /// Whether `delete` may remove anything: not with `keep`, unless
    /// retention is on or a rule may delete.
    fn may_delete(&self) -> bool {
        !self.options.keep || self.options.retention || self.options.filter_deletes
    }

    /// Whether messages delivered on earlier runs may be deleted now
    /// (without `keep`, or with retention), so the scan looks below the
    /// folder's last UID for them.
    fn may_delete_older(&self) -> bool {
        !self.options.keep || self.options.retention
    }
}

/// A logged-in session with what was learned on the way in.
pub struct LoggedIn {
    /// The session, in the authenticated state.
    pub session: Session<Conn>,
    /// The capabilities mailretr looks for (`KNOWN_CAPABILITIES`) that the
    /// server offers once logged in, upper-cased.
    pub caps: HashSet<String>,
    /// `IMAP` or `IMAPS`, for `Received:` headers.
    pub protocol_name: &'static str,
    /// The session's TCP socket, shared: `mailretr watch` sets its read
    /// timeout around an IDLE and shuts it down to stop waiting at once.
    pub socket: std::net::TcpStream,
    /// A second handle on the session's connection, for reading message
    /// bodies past the `imap` crate (see `bodies`).
    pub stream: Handle,
    /// The tap on the session's stream.
    pub tap: std::sync::Arc<std::sync::Mutex<Tap>>,
    /// `ENABLE UTF8=ACCEPT` took effect (RFC 6855): folder names are
    /// UTF-8, and messages come as they are.
    pub utf8: bool,
}

/// Connects, secures and logs in, with the TLS and authentication rules
/// of the account: the set-up `connect` and `mailretr watch`'s IDLE
/// connections share.
pub fn connect_session(account: &Account, password: Option<&str>) -> Result<LoggedIn> {
    let label = account.name.as_str();
    let Opened {
        client,
        caps,
        protocol_name,
        mut socket,
        mut handle,
        mut tap,
        mut switch,
        preauth,
    } = open(account)?;
    let mut session = if preauth {
        // The tunnel logged in (a PREAUTH greeting): the crate's session
        // is had with a LOGIN that the transcript layer answers itself.
        lock_tap(&tap).answer_next_locally();
        client
            .login("preauth", "")
            .map_err(|(e, _)| imap_error("PREAUTH", e))?
    } else {
        let mut logged_in = log_in_any(account, password, client, &caps, &tap)?;
        if let Some(again) = logged_in.reopened.take() {
            (socket, handle, tap, switch) = again;
        }
        logged_in.session
    };
    let answer = lock_tap(&tap).take_capture();

    // Servers say more once logged in (UIDPLUS, MOVE, ...): in the tagged
    // OK of the login, or when asked. Nothing said before is kept.
    let caps = match login_capabilities(&answer) {
        Some(caps) => caps,
        None => session
            .capabilities()
            .map(|c| probe(&c))
            .map_err(|e| imap_error("CAPABILITY", e))?,
    };
    if account.server.compress && caps.contains("COMPRESS=DEFLATE") {
        // RFC 4978: everything after the tagged OK is compressed, both
        // ways; the server sends nothing until the next command.
        switch.expect();
        match session.run_command_and_check_ok("COMPRESS DEFLATE") {
            Ok(()) => switch.turn_on(),
            Err(imap::Error::No(no)) => {
                switch.cancel();
                log::info!("{label}: COMPRESS DEFLATE refused: {}", no.information)
            }
            Err(e) => return Err(imap_error("COMPRESS DEFLATE", e)),
        }
    }
    if caps.contains("ID") {
        // Informational (a few servers want it before SELECT): it goes
        // out with the next command, and its answer, whatever it is, is
        // not waited for.
        let id = format!(
            "ID (\"name\" \"mailretr\" \"version\" \"{}\")",
            env!("CARGO_PKG_VERSION")
        );
        lock_tap(&tap).send_ahead(ID_TAG, "ID", &id);
    }
    // Without it a server may hand out a downgraded stand-in for a
    // message with UTF-8 header fields (RFC 6855 section 5, RFC 6857).
    let utf8 = caps.contains("UTF8=ACCEPT") && caps.contains("ENABLE") && {
        match session.run("ENABLE UTF8=ACCEPT") {
            Ok((data, _)) => String::from_utf8_lossy(&data)
                .to_ascii_uppercase()
                .contains("* ENABLED UTF8=ACCEPT"),
            Err(e) => {
                log::warn!(
                    "{label}: ENABLE UTF8=ACCEPT failed: {}",
                    imap_error("ENABLE", e)
                );
                false
            }
        }
    };
    let _ = session.take_all_unsolicited();
    Ok(LoggedIn {
        session,
        caps,
        protocol_name,
        socket,
        stream: handle,
        tap,
        utf8,
    })
}

/// A login that worked, and the connection it is on when a hang-up made
/// it open a new one (its socket, body handle, tap and switch).
struct LoginDone {
    session: Session<Conn>,
    reopened: Option<(
        std::net::TcpStream,
        Handle,
        std::sync::Arc<std::sync::Mutex<Tap>>,
        Switch,
    )>,
}

/// Logs in with the account's mechanisms, in order (see `auth`).
fn log_in_any(
    account: &Account,
    password: Option<&str>,
    client: Client<Conn>,
    caps: &HashSet<String>,
    tap: &std::sync::Arc<std::sync::Mutex<Tap>>,
) -> Result<LoginDone> {
    let server = &account.server;
    let label = account.name.as_str();
    let offered = auth::Offered {
        sasl: caps
            .iter()
            .filter_map(|c| c.strip_prefix("AUTH="))
            .map(str::to_string)
            .collect(),
        login_disabled: caps.contains("LOGINDISABLED"),
    };
    let candidates = auth::candidates(
        &account.auth,
        &offered,
        password.is_some(),
        account.oauth2_token_command.is_some() || account.oauth2.is_some(),
        account.server.client_cert.is_some(),
    )?;
    // A tunnel (ssh) is the secure channel, as mbsync takes it.
    let encrypted = server.tls != TlsMode::None || server.tunnel.is_some();
    let mut tried = auth::Attempts::new(&account.name);
    let mut client = Some(client);
    let mut tap = tap.clone();
    let mut reopened = None;
    for mech in candidates {
        if !tried.may_try(mech, encrypted) {
            continue;
        }
        let Some(c) = client.take() else { break };
        let mut outcome = log_in(c, mech, account, password, caps, &tap);
        if !tried.is_empty() && matches!(outcome, Err((Error::Network { .. }, _))) {
            // Some servers hang up after a failed login: once more, anew.
            log::info!("{label}: the server closed the connection; reconnecting");
            let again = open(account)?;
            tap = again.tap.clone();
            outcome = log_in(again.client, mech, account, password, &again.caps, &tap);
            reopened = Some((again.socket, again.handle, again.tap, again.switch));
        }
        match outcome {
            Ok(session) => return Ok(LoginDone { session, reopened }),
            // Only a plain "no" to the credentials moves on to the next
            // mechanism, on the same connection (RFC 3501 allows another
            // try after a failed one).
            Err((e @ Error::Auth(_), Some(back))) => {
                if let (true, Some(o)) = (mech.uses_token(), &account.oauth2) {
                    // The next token mechanism (or run) gets a fresh token.
                    crate::oauth::rejected(o);
                }
                tried.failed(mech, e);
                client = Some(*back);
            }
            Err((e, _)) => return Err(e),
        }
    }
    Err(tried.error())
}

/// A connection, secured, greeted, with the server's capabilities, before
/// login.
struct Opened {
    client: Client<Conn>,
    caps: HashSet<String>,
    protocol_name: &'static str,
    socket: std::net::TcpStream,
    handle: Handle,
    tap: std::sync::Arc<std::sync::Mutex<Tap>>,
    /// The connection's COMPRESS=DEFLATE switch.
    switch: Switch,
    /// The server greeted with PREAUTH (through a tunnel): no login.
    preauth: bool,
}

/// Connects and secures with the account's TLS rules, reads the greeting
/// and learns the capabilities (asked anew after STARTTLS).
fn open(account: &Account) -> Result<Opened> {
    // A server that fails resumed handshakes: once more, with a full one.
    net::tls::open_resuming(&account.name, || open_once(account))
}

fn open_once(account: &Account) -> Result<Opened> {
    let server = &account.server;
    let label = account.name.as_str();
    let opening = net::early::opening(server)?;
    let socket = opening
        .socket()
        .map_err(|e| Error::net(format!("connecting to {}", server.host), e))?;
    let stream = match server.tls {
        TlsMode::Implicit => opening.into_tls()?,
        TlsMode::None => net::plain(server, opening.into_tcp()?)?,
        TlsMode::Starttls => {
            let tcp = starttls::negotiate(Traced::new(opening.into_tcp()?, label))?.into_inner();
            net::tls_handshake(server, tcp)?
        }
    };
    let switch = Switch::new();
    let handle = Deflate::new(
        stream
            .handle()
            .map_err(|e| Error::net(format!("connecting to {}", server.host), e))?,
        switch.clone(),
    );
    let tap = Tap::shared();
    let mut client =
        Client::new(Traced::new(Deflate::new(stream, switch.clone()), label).with_tap(tap.clone()));
    let tunnelled = server.tunnel.is_some();
    let ((protocol_name, greeting_caps), preauth) = match server.tls {
        TlsMode::Implicit => {
            let (caps, preauth) = read_greeting(&mut client, tunnelled)?;
            (("IMAPS", caps), preauth)
        }
        TlsMode::None => {
            let (caps, preauth) = read_greeting(&mut client, tunnelled)?;
            (("IMAP", caps), preauth)
        }
        // No greeting follows STARTTLS, and nothing from before it is
        // trusted: capabilities are asked for again below.
        TlsMode::Starttls => (("IMAPS", None), false),
    };
    let caps = match greeting_caps {
        Some(caps) => caps,
        None => {
            let caps = client
                .capabilities()
                .map_err(|e| imap_error("CAPABILITY", e))?;
            probe(&caps)
        }
    };
    Ok(Opened {
        client,
        caps,
        protocol_name,
        socket,
        handle,
        tap,
        switch,
        preauth,
    })
}

/// A failed login attempt: the error, and the client when the connection
/// is still usable for another attempt.
type LoginFailed = (Error, Option<Box<Client<Conn>>>);

/// One login attempt with `mech`. On failure the client comes back when
/// the connection is still usable for another attempt.
fn log_in(
    client: Client<Conn>,
    mech: AuthMech,
    account: &Account,
    password: Option<&str>,
    caps: &HashSet<String>,
    tap: &std::sync::Mutex<Tap>,
) -> std::result::Result<Session<Conn>, LoginFailed> {
    let server = &account.server;
    let credential = if mech.uses_token() {
        crate::oauth::bearer(
            account.oauth2.as_ref(),
            account.oauth2_token_command.as_deref(),
        )
        .map_err(|e| (e, None))?
    } else {
        secret::Password::new(password.unwrap_or_default().to_string())
    };
    // The tagged OK of LOGIN / AUTHENTICATE usually says what the server
    // offers once logged in (RFC 3501 7.1); the crate drops that line.
    lock_tap(tap).start_capture();
    if mech == AuthMech::Login {
        return client
            .login(&account.user, &credential)
            .map_err(|(e, c)| (login_error(mech, e), Some(Box::new(c))));
    }
    let sasl = if mech == AuthMech::ScramSha256 {
        auth::Sasl::scram(&account.user, &credential, caps.contains("SASL-IR"))
            .map_err(|e| (e, None))?
    } else {
        let initial =
            auth::initial_response(mech, &account.user, &credential, &server.host, server.port);
        // EXTERNAL's initial response is empty: "=" with SASL-IR.
        let inline =
            caps.contains("SASL-IR") && (!initial.is_empty() || mech == AuthMech::External);
        auth::Sasl::new(mech, &account.user, &credential, initial, inline)
    };
    let command = if sasl.inline() {
        format!("{} {}", auth::sasl_name(mech), sasl.initial_base64())
    } else {
        auth::sasl_name(mech).to_string()
    };
    match client.authenticate(command, &sasl) {
        // SCRAM: the server must have proved it knows the password; if it
        // did not, nothing of this connection is trusted.
        Ok(session) => sasl.outcome().map(|()| session).map_err(|e| (e, None)),
        Err((e, c)) => match sasl.failure() {
            // An error of our own (a bad SCRAM server message) says more
            // than the server's NO that follows it, and is no reason to
            // trust a weaker mechanism with the password.
            Some(ours) => Err((ours, None)),
            None => Err((login_error(mech, e), Some(Box::new(c)))),
        },
    }
}

/// Reads the greeting of a connection that is already what it will be
/// (implicit TLS, or plain by choice). Returns the capabilities it
/// announces, if any, and whether it was PREAUTH (accepted only through a
/// tunnel, which is what logged in: `ssh host /usr/lib/dovecot/imap`).
fn read_greeting(
    client: &mut Client<Conn>,
    tunnelled: bool,
) -> Result<(Option<HashSet<String>>, bool)> {
    let line = client
        .read_greeting()
        .map_err(|e| imap_error("greeting", e))?;
    let line = String::from_utf8_lossy(&line);
    let line = line.trim_end();
    let mut words = line.split(' ');
    match (words.next(), words.next().map(str::to_ascii_uppercase)) {
        (Some("*"), Some(s)) if s == "OK" => Ok((greeting_capabilities(line), false)),
        (Some("*"), Some(s)) if s == "PREAUTH" && tunnelled => {
            Ok((greeting_capabilities(line), true))
        }
        (Some("*"), Some(s)) if s == "PREAUTH" => Err(Error::Protocol(
            "the server greeted with PREAUTH (already logged in); mailretr logs in itself \
             (PREAUTH is accepted only through a tunnel)"
                .into(),
        )),
        (Some("*"), Some(s)) if s == "BYE" => Err(Error::refused_by_server("greeting", line)),
        _ => Err(Error::Protocol(format!(
            "expected an IMAP greeting, got {:?}",
            line.chars().take(80).collect::<String>()
        ))),
    }
}

/// Capabilities in a `[CAPABILITY ...]` response code, upper-cased.
fn greeting_capabilities(line: &str) -> Option<HashSet<String>> {
    let start = line.find("[CAPABILITY ")?;
    let rest = &line[start + "[CAPABILITY ".len()..];
    let end = rest.find(']')?;
    Some(
        rest[..end]
            .split_whitespace()
            .map(|w| w.to_ascii_uppercase())
            .collect(),
    )
}

fn lock_tap(tap: &std::sync::Mutex<Tap>) -> std::sync::MutexGuard<'_, Tap> {
    tap.lock().unwrap_or_else(|e| e.into_inner())
}

/// The capabilities mailretr looks for (`KNOWN_CAPABILITIES`) in the
/// `[CAPABILITY ...]` code of the tagged OK ending a login, if it has one.
/// Only the tagged line counts: untagged lines may come from before the
/// login took effect.
fn login_capabilities(answer: &[u8]) -> Option<HashSet<String>> {
    let text = String::from_utf8_lossy(answer);
    let line = text
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .rfind(|l| {
            let mut words = l.splitn(3, ' ');
            let tag = words.next().unwrap_or("");
            tag.len() > 1
                && tag.starts_with('a')
                && tag[1..].chars().all(|c| c.is_ascii_digit())
                && words.next().is_some_and(|w| w.eq_ignore_ascii_case("OK"))
        })?;
    let upper = line.to_ascii_uppercase();
    let all = greeting_capabilities(&upper)?;
    Some(
        KNOWN_CAPABILITIES
            .iter()
            .filter(|c| all.contains(**c))
            .map(|c| c.to_string())
            .collect(),
    )
}

fn probe(caps: &imap::types::Capabilities) -> HashSet<String> {
    KNOWN_CAPABILITIES
        .iter()
        .filter(|c| caps.has_str(c))
        .map(|c| c.to_string())
        .collect()
}

/// A failed login: a `NO` is bad credentials unless the server says the
/// trouble is on its side (RFC 5530 codes).
fn login_error(mech: AuthMech, e: imap::Error) -> Error {
    match e {
        imap::Error::No(no) => {
            let text = no.information;
            // `[UNAVAILABLE]` (RFC 5530; the crate leaves codes it does
            // not know in the text), or a server saying so in words.
            if crate::error::throttle_signal(&text).is_some() {
                return Error::refused_by_server("login", &format!("NO {text}"));
            }
            let temporary = ["UNAVAILABLE", "INUSE", "SERVERBUG", "LIMIT"]
                .iter()
                .any(|code| text.contains(&format!("[{code}]")))
                || no
                    .code
                    .as_ref()
                    .is_some_and(|c| format!("{c:?}").contains("UNAVAILABLE"));
            if temporary {
                Error::Server(format!("login: NO {text}"))
            } else {
                Error::Auth(format!("{mech}: NO {text}"))
            }
        }
        imap::Error::Bad(bad) => Error::Auth(format!("{mech}: BAD {bad}")),
        other => imap_error("login", other),
    }
}

/// The text the `imap` crate gives a `BYE`, `NO` or `BAD` that had none.
const NO_EXPLANATION: &str = "no explanation given";

/// Maps the `imap` crate's errors onto ours: connection trouble is a
/// network error, `NO` a server error, `BAD` and garbage protocol errors.
pub(crate) fn imap_error(context: &str, e: imap::Error) -> Error {
    match e {
        imap::Error::Io(io) => match io.kind() {
            io::ErrorKind::InvalidData => Error::Protocol(format!("{context}: {io}")),
            _ => Error::net(format!("IMAP {context}"), io),
        },
        imap::Error::ConnectionLost => Error::net(
            format!("IMAP {context}"),
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by server"),
        ),
        imap::Error::Tls(e) => Error::Tls(e.to_string()),
        imap::Error::No(no) => Error::refused_by_server(context, &format!("NO {no}")),
        // The crate reports a line its parser rejects as a BYE without
        // text or code: name the line instead.
        imap::Error::Bye(bye) if bye.code.is_none() && bye.information == NO_EXPLANATION => {
            match transcript::unparsed_line() {
                Some(line) => Error::Protocol(format!(
                    "{context}: the server sent a line that is not IMAP: {line}"
                )),
                None => Error::Server(format!("{context}: server said BYE")),
            }
        }
        imap::Error::Bye(bye) => {
            Error::refused_by_server(context, &format!("server said BYE: {bye}"))
        }
        imap::Error::Bad(bad) => Error::Protocol(format!("{context}: BAD {bad}")),
        other => Error::Protocol(format!("{context}: {other}")),
    }
}

/// Quotes a mailbox name as an IMAP quoted string.
fn quote(name: &str) -> Result<String> {
    if name.contains(['\r', '\n', '\0']) {
        return Err(Error::Protocol(format!(
            "folder name {name:?} cannot be sent"
        )));
    }
    Ok(format!(
        "\"{}\"",
        name.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// Parses the untagged data of a `SELECT` answer.
pub fn parse_select(data: &[u8]) -> Selected {
    let text = String::from_utf8_lossy(data);
    let mut selected = Selected::default();
    let code = |line: &str, name: &str| -> Option<u32> {
        let start = line.find(name)? + name.len();
        let digits: String = line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    for line in text.split("\r\n") {
        let mut words = line.split(' ');
        if let (Some("*"), Some(n), Some(what)) = (words.next(), words.next(), words.next()) {
            if what.eq_ignore_ascii_case("EXISTS") {
                if let Ok(n) = n.parse() {
                    selected.exists = n;
                }
                continue;
            }
        }
        if line.starts_with("* OK [") || line.starts_with("* ok [") {
            let upper = line.to_ascii_uppercase();
            if let Some(v) = code(&upper, "[UIDVALIDITY ") {
                selected.uidvalidity = Some(v);
            }
            if let Some(v) = code(&upper, "[UIDNEXT ") {
                selected.uidnext = Some(v);
            }
        }
    }
    selected
}

/// The UIDs in `uids` at or below `last`.
fn at_most(uids: &[u32], last: u32) -> Vec<u32> {
    uids.iter().copied().filter(|&u| u <= last).collect()
}

/// The UID set a size listing asks for: `oversized` (messages once too
/// large, worth another look) and everything from `above` on.
fn listing_set(oversized: &[u32], above: Option<u32>) -> String {
    let mut set = uid_set(oversized);
    if let Some(from) = above {
        if !set.is_empty() {
            set.push(',');
        }
        set.push_str(&format!("{from}:*"));
    }
    set
}

/// A UID set in IMAP syntax with runs collapsed: `1:3,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Turns CRLF line endings into LF (the form messages are held in); a
/// lone CR is left as it is.
pub fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(data[i]);
        i += 1;
    }
    out
}

/// One message's entry in a listing: UID, size, `\Seen`.
#[derive(Debug, Clone, Copy)]
struct Listed {
    uid: u32,
    size: u64,
    seen_flag: bool,
}

impl ImapSource {
    /// Reads the answers to the fetches in flight (keeping the bodies for
    /// `next_message`), so that the `imap` crate may use the connection.
    fn quiesce(&mut self) -> Result<()> {
        while !self.bodies.is_idle() {
            let missing = self.bodies.receive(&mut self.batch)?;
            self.warn_missing(missing);
        }
        Ok(())
    }

    fn warn_missing(&self, missing: Vec<RemoteMessage>) {
        for m in missing {
            log::warn!(
                "{}: {}: message UID {} went away before it could be fetched",
                self.label,
                m.folder,
                m.number
            );
        }
    }

    fn session(&mut self) -> Result<&mut Session<Conn>> {
        self.session
            .as_mut()
            .ok_or_else(|| Error::Internal("IMAP session already closed".into()))
    }

    /// Runs `f` on the session and throws away the unsolicited responses
    /// it gathered (they would otherwise pile up).
    fn with_session<T>(
        &mut self,
        context: &str,
        f: impl FnOnce(&mut Session<Conn>) -> imap::error::Result<T>,
    ) -> Result<T> {
        self.quiesce()?;
        let session = self.session()?;
        let result = f(session);
        let _ = session.take_all_unsolicited();
        result.map_err(|e| imap_error(context, e))
    }

    /// Lists the server's folders when the patterns need it (anything but
    /// just `INBOX`), and picks those to fetch.
    fn choose_folders(&mut self) -> Result<Vec<ChosenFolder>> {
        let only_inbox = self
            .options
            .patterns
            .iter()
            .all(|p| p.trim().eq_ignore_ascii_case("INBOX"));
        if only_inbox && self.options.move_to.is_none() {
            return Ok(vec![ChosenFolder {
                server_name: "INBOX".into(),
                config_name: "INBOX".into(),
                mailbox: Vec::new(),
            }]);
        }
        let namespace = if self.caps.contains("NAMESPACE") {
            self.quiesce()?;
            let ahead = lock_tap(&self.tap).take_ahead();
            folders::parse_namespace(&self.bodies.command(ahead, "NAMESPACE")?)
        } else {
            folders::Namespace::default()
        };
        let (data, ok) = self.with_session("LIST", |s| s.run("LIST \"\" \"*\""))?;
        let mut listed = folders::parse_list(&data[..ok]);
        for folder in &mut listed {
            folder.utf8 = self.utf8;
        }
        let delimiter = listed
            .iter()
            .find(|f| f.server_name.eq_ignore_ascii_case("INBOX"))
            .or(listed.first())
            .and_then(|f| f.delimiter);
        let mut move_to_config = None;
        if let Some(target) = &self.options.move_to {
            let wanted = folders::config_name(&folders::server_name(target, Some('/')), Some('/'));
            let found = listed
                .iter()
                .find(|f| &f.server_name == target || f.config_name() == wanted)
                .ok_or_else(|| {
                    Error::Server(format!(
                        "move_to folder {target:?} does not exist on the server"
                    ))
                })?;
            self.move_to_server = Some(found.server_name.clone());
            move_to_config = Some(found.config_name());
        }
        let selection = folders::choose(
            &self.options.patterns,
            &listed,
            move_to_config.as_deref(),
            &namespace,
        );
        if !selection.matched_any {
            // Most likely a typo: an error cron reports, not "no mail".
            let mut names: Vec<String> = listed
                .iter()
                .filter(|f| !f.noselect)
                .map(|f| f.relative_name(&namespace.prefix))
                .collect();
            let more = names.len().saturating_sub(30);
            names.truncate(30);
            return Err(Error::Config(format!(
                "no folder on the server matches `folders` ({}); the server has: {}{}",
                self.options.patterns.join(", "),
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )));
        }
        for missing in &selection.missing {
            log::warn!(
                "{}: folder {missing:?} is not on the server (delimiter {:?}); skipped",
                self.label,
                delimiter.map(String::from).unwrap_or_default()
            );
        }
        if selection.folders.is_empty() {
            log::warn!(
                "{}: every folder matching `folders` is excluded or cannot be selected",
                self.label
            );
        }
        Ok(selection.folders)
    }

    /// `SELECT` of `server_name` and the size listing of `set` in one
    /// round trip (see `BodyReader::select_and_list`), with the `ID`
    /// still owed to the server in front. The listing's refusal is
    /// returned as is: it only matters if the guess is used.
    fn select_and_list(
        &mut self,
        server_name: &str,
        set: &str,
    ) -> Result<(Selected, Result<Vec<bodies::Listing>>)> {
        self.quiesce()?;
        let mailbox = quote(server_name)?;
        let items = if self.options.only_unseen {
            "(UID RFC822.SIZE FLAGS)"
        } else {
            "(UID RFC822.SIZE)"
        };
        let ahead = lock_tap(&self.tap).take_ahead();
        let answer = self.bodies.select_and_list(ahead, &mailbox, set, items)?;
        let mut listing = answer.listing;
        if let Ok(l) = &mut listing {
            l.sort_by_key(|l| l.uid);
            l.dedup_by_key(|l| l.uid);
        }
        Ok((parse_select(&answer.select), listing))
    }

    fn select(&mut self, server_name: &str) -> Result<Selected> {
        let command = format!("SELECT {}", quote(server_name)?);
        let (data, ok) =
            self.with_session(&format!("SELECT {server_name}"), |s| s.run(&command))?;
        Ok(parse_select(&data[..ok]))
    }

    /// Makes `folder` the selected one, finishing the work pending in the
    /// folder left. A UIDVALIDITY different from the scan's stops
    /// everything: UIDs from the scan would name other messages.
    fn ensure_selected(&mut self, folder: &str) -> Result<()> {
        if self.selected.as_deref() == Some(folder) {
            return Ok(());
        }
        if let Some(current) = self.selected.clone() {
            self.leave_folder(&current)?;
        }
        let info = self
            .folders
            .get(folder)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("folder {folder} was not scanned")))?;
        self.selected = None;
        let selected = self.select(&info.server_name)?;
        if selected.uidvalidity != Some(info.uidvalidity) {
            return Err(Error::Server(format!(
                "UIDVALIDITY of {folder} changed during the run; leaving it alone until the next run"
            )));
        }
        self.selected = Some(folder.to_string());
        Ok(())
    }

    /// Sends the `\Seen` flags, deletions and moves asked for in the
    /// selected folder.
    fn flush_flags(&mut self, folder: &str) -> Result<()> {
        let Some(pending) = self.pending.get_mut(folder) else {
            return Ok(());
        };
        let seen = std::mem::take(&mut pending.seen);
        let remove = std::mem::take(&mut pending.remove);
        if !seen.is_empty() {
            let set = uid_set(&seen);
            self.with_session("UID STORE", |s| s.uid_store(&set, "+FLAGS.SILENT (\\Seen)"))?;
        }
        if remove.is_empty() {
            return Ok(());
        }
        let set = uid_set(&remove);
        if let Some(target) = self.move_to_server.clone() {
            if self.caps.contains("MOVE") {
                self.with_session("UID MOVE", |s| s.uid_mv(&set, &target))?;
                return Ok(());
            }
            let quoted = quote(&target)?;
            self.with_session("UID COPY", |s| s.uid_copy(&set, &quoted))?;
        }
        self.with_session("UID STORE", |s| {
            s.uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
        })?;
        self.pending
            .entry(folder.to_string())
            .or_default()
            .flagged
            .extend(remove);
        Ok(())
    }

    /// Finishes the work pending in the selected folder: flags, then the
    /// expunge of exactly the messages flagged by us (`UID EXPUNGE`, or
    /// `EXPUNGE` when no other message is marked deleted).
    fn leave_folder(&mut self, folder: &str) -> Result<()> {
        self.flush_flags(folder)?;
        let flagged = self
            .pending
            .get_mut(folder)
            .map(|p| std::mem::take(&mut p.flagged))
            .unwrap_or_default();
        if flagged.is_empty() {
            return Ok(());
        }
        if self.caps.contains("UIDPLUS") {
            let set = uid_set(&flagged);
            self.with_session("UID EXPUNGE", |s| s.uid_expunge(&set).map(|_| ()))?;
            return Ok(());
        }
        let deleted = self.with_session("UID SEARCH", |s| s.uid_search("DELETED"))?;
        let ours: HashSet<u32> = flagged.iter().copied().collect();
        if deleted.iter().all(|u| ours.contains(u)) {
            self.with_session("EXPUNGE", |s| s.expunge().map(|_| ()))?;
        } else {
            log::warn!(
                "{}: other messages in {folder} are marked deleted and the server lacks UIDPLUS; {} delivered messages stay flagged \\Deleted, not expunged",
                self.label,
                flagged.len()
            );
        }
        Ok(())
    }

    /// `UID FETCH` of sizes (and flags) for a UID set.
    fn list_sizes(&mut self, set: &str, with_flags: bool) -> Result<Vec<Listed>> {
        let query = if with_flags {
            "(UID RFC822.SIZE FLAGS)"
        } else {
            "(UID RFC822.SIZE)"
        };
        let fetches = self.with_session("UID FETCH", |s| s.uid_fetch(set, query))?;
        let mut out: Vec<Listed> = fetches
            .iter()
            .filter_map(|f| {
                Some(Listed {
                    uid: f.uid?,
                    size: u64::from(f.size?),
                    seen_flag: f.flags().contains(&Flag::Seen),
                })
            })
            .collect();
        out.sort_by_key(|l| l.uid);
        out.dedup_by_key(|l| l.uid);
        Ok(out)
    }

    /// Headers (LF endings) of messages in the selected folder, by UID.
    fn headers_of(&mut self, uids: &[u32]) -> Result<HashMap<u32, (u64, Vec<u8>)>> {
        let mut out = HashMap::new();
        for chunk in uids.chunks(HEADER_BATCH) {
            let set = uid_set(chunk);
            let fetches = self.with_session("UID FETCH", |s| {
                s.uid_fetch(&set, "(UID RFC822.SIZE BODY.PEEK[HEADER])")
            })?;
            for f in fetches.iter() {
                if let (Some(uid), Some(header)) = (f.uid, f.header()) {
                    if chunk.contains(&uid) {
                        let size = f.size.map_or(0, u64::from);
                        out.insert(uid, (size, crlf_to_lf(header)));
                    }
                }
            }
        }
        Ok(out)
    }

    /// After a UIDVALIDITY change: finds the messages delivered under the
    /// old one among `listing`; returns the update that carries their
    /// records over, and their new UIDs.
    fn rematch_folder(
        &mut self,
        folder: &str,
        seen: &mut dyn SeenIndex,
        old_uidvalidity: u32,
        new_uidvalidity: u32,
        listing: &[Listed],
    ) -> Result<(FolderUpdate, HashSet<u32>)> {
        let recorded = seen.seen_fingerprints(folder, old_uidvalidity)?;
        let sizes = rematch::interesting_sizes(&recorded);
        let worth: Vec<u32> = listing
            .iter()
            .filter(|l| sizes.contains(&l.size))
            .map(|l| l.uid)
            .collect();
        let headers = if worth.is_empty() {
            HashMap::new()
        } else {
            self.headers_of(&worth)?
        };
        let candidates: Vec<rematch::Candidate> = listing
            .iter()
            .filter_map(|l| {
                let (_, header) = headers.get(&l.uid)?;
                Some(rematch::Candidate {
                    uid: l.uid,
                    size: l.size,
                    message_id: message::header_value(header, "Message-ID"),
                    header_hash: message::header_hash(header),
                })
            })
            .collect();
        let pairs = rematch::rematch(&recorded, &candidates);
        log::warn!(
            "{}: {folder}: UIDVALIDITY changed from {old_uidvalidity} to {new_uidvalidity}; matched {} of {} messages delivered before, which will not be delivered again",
            self.label,
            pairs.len(),
            recorded.len()
        );
        let found_again = pairs.iter().map(|(_, new)| *new).collect();
        Ok((
            FolderUpdate::Rekey {
                folder: folder.to_string(),
                old_uidvalidity,
                new_uidvalidity,
                matches: pairs,
            },
            found_again,
        ))
    }

    /// Scans one folder against the seen-state.
    fn scan_folder(
        &mut self,
        chosen: &ChosenFolder,
        seen: &mut dyn SeenIndex,
        fetch_all: bool,
    ) -> Result<Scan> {
        let folder = chosen.config_name.as_str();
        // SELECT and the size listing go out together, saving a round
        // trip: the listing asks for what would be new if UIDVALIDITY is
        // still the one seen before, checked once SELECT has answered.
        let before = seen.folder_state(folder)?;
        // Messages once too large, under the UIDVALIDITY seen before.
        let oversized_before = match before {
            Some(p) if !fetch_all => seen.oversized_uids(folder, p.uidvalidity)?,
            _ => Vec::new(),
        };
        let guess = match before {
            Some(p) if !fetch_all => listing_set(
                &at_most(&oversized_before, p.last_uid),
                Some(p.last_uid.saturating_add(1)),
            ),
            _ => listing_set(&[], Some(1)),
        };
        let (selected, guessed) = self.select_and_list(&chosen.server_name, &guess)?;
        self.selected = Some(folder.to_string());
        let uidvalidity = selected.uidvalidity.ok_or_else(|| {
            Error::Protocol(format!(
                "SELECT {folder} gave no UIDVALIDITY; without it UIDs cannot be trusted"
            ))
        })?;
        self.folders.insert(
            folder.to_string(),
            FolderInfo {
                server_name: chosen.server_name.clone(),
                uidvalidity,
            },
        );
        let prior = before;
        let renumbered = prior.filter(|p| p.uidvalidity != uidvalidity);
        let last_uid = match prior {
            Some(p) if p.uidvalidity == uidvalidity => p.last_uid,
            _ => 0,
        };
        let mut updates = Vec::new();
        if prior.is_none() {
            updates.push(FolderUpdate::State {
                folder: folder.to_string(),
                state: FolderState {
                    uidvalidity,
                    last_uid: 0,
                },
            });
        }

        // What to ask about: everything above last_uid (unless UIDNEXT
        // says there is nothing), plus messages once too large.
        let oversized: Vec<u32> = if fetch_all || renumbered.is_some() {
            Vec::new()
        } else {
            at_most(&oversized_before, last_uid)
        };
        let above = if fetch_all || renumbered.is_some() {
            Some(1)
        } else {
            let maybe_new = selected.exists > 0
                && selected
                    .uidnext
                    .is_none_or(|next| u64::from(next) > u64::from(last_uid) + 1);
            maybe_new.then(|| last_uid.saturating_add(1))
        };
        let set = listing_set(&oversized, above);
        let oversized: HashSet<u32> = oversized.into_iter().collect();
        let listing: Vec<Listed> = if selected.exists == 0 || set.is_empty() {
            Vec::new()
        } else {
            let listed = if renumbered.is_none() || guess == set {
                // The guess asked for at least `set`.
                guessed?
                    .into_iter()
                    .map(|l| Listed {
                        uid: l.uid,
                        size: l.size,
                        seen_flag: l.seen,
                    })
                    .collect()
            } else {
                self.list_sizes(&set, self.options.only_unseen)?
            };
            listed
                .into_iter()
                // Only what `set` names: `N:*` also names the last message
                // when its UID is below N, and the guess may name more.
                .filter(|l| above.is_some_and(|from| l.uid >= from) || oversized.contains(&l.uid))
                .collect()
        };

        // Found again after a renumbering: delivered, though the store
        // records them under the new UIDVALIDITY only once the run commits
        // the update.
        let mut found_again = HashSet::new();
        if let Some(prior) = renumbered {
            let (rekey, found) =
                self.rematch_folder(folder, seen, prior.uidvalidity, uidvalidity, &listing)?;
            updates.push(rekey);
            found_again = found;
        }

        let uids: Vec<u32> = listing.iter().map(|l| l.uid).collect();
        let delivered = if fetch_all {
            HashSet::new()
        } else {
            let mut delivered = seen.seen_among(folder, uidvalidity, &uids)?;
            delivered.extend(found_again);
            delivered
        };
        let remote = |uid: u32, size: u64| RemoteMessage {
            folder: folder.to_string(),
            uid: Some(uid.to_string()),
            uidvalidity: Some(uidvalidity),
            size,
            number: uid,
            mailbox: chosen.mailbox.clone(),
            flags: String::new(),
        };
        // The folder's last_uid moves past every UID at its start that is
        // dealt with: delivered, passed over (only_unseen), or recorded as
        // refused or oversized (the fetch loop leaves those alone). It
        // stops at the first message still to fetch, wherever a run ended.
        let passed: HashSet<u32> = if fetch_all {
            HashSet::new()
        } else {
            seen.passed_uids(folder, uidvalidity)?.into_iter().collect()
        };
        let mut scan = Scan::default();
        let mut new_last = last_uid;
        let mut prefix_open = true;
        let mut above = Vec::new();
        for l in &listing {
            let passed_over = self.options.only_unseen && l.seen_flag;
            let dealt_with = if delivered.contains(&l.uid) {
                scan.seen_on_server.push(remote(l.uid, l.size));
                true
            } else if passed_over {
                true
            } else {
                scan.new.push(remote(l.uid, l.size));
                passed.contains(&l.uid) || l.uid <= last_uid
            };
            prefix_open &= dealt_with;
            if prefix_open && l.uid > new_last {
                new_last = l.uid;
            } else if l.uid > new_last {
                above.push((l.uid, dealt_with));
            }
        }
        self.settle.insert(
            folder.to_string(),
            Settle {
                uidvalidity,
                last_uid: new_last,
                above,
            },
        );
        if new_last > last_uid {
            updates.push(FolderUpdate::State {
                folder: folder.to_string(),
                state: FolderState {
                    uidvalidity,
                    last_uid: new_last,
                },
            });
        }
        scan.updates = updates;

        // Delivered on an earlier run but never deleted (the run ended
        // between the commit and the expunge), or kept and perhaps due for
        // retention: only worth a look when mail may be deleted and the
        // folder holds more than the listing saw.
        if self.may_delete_older() && last_uid > 0 && selected.exists as usize > listing.len() {
            let on_server =
                self.with_session("UID SEARCH", |s| s.uid_search(format!("UID 1:{last_uid}")))?;
            let listed: HashSet<u32> = uids.iter().copied().collect();
            let mut older: Vec<u32> = on_server
                .into_iter()
                .filter(|u| *u <= last_uid && !listed.contains(u))
                .collect();
            older.sort_unstable();
            let delivered_older = seen.seen_among(folder, uidvalidity, &older)?;
            scan.seen_on_server.extend(
                older
                    .into_iter()
                    .filter(|u| delivered_older.contains(u))
                    .map(|u| remote(u, 0)),
            );
        }
        log::debug!(
            "{}: {folder}: {} messages, {} new, {} delivered before and still there",
            self.label,
            selected.exists,
            scan.new.len(),
            scan.seen_on_server.len()
        );
        Ok(scan)
    }

    /// Makes the next batch of bodies available in `batch`, keeping
    /// `PIPELINE` fetch commands in flight.
    fn fetch_batch(&mut self) -> Result<()> {
        while self.batch.is_empty() {
            self.fill_pipeline()?;
            if self.bodies.is_idle() {
                return Ok(());
            }
            let missing = self.bodies.receive(&mut self.batch)?;
            self.warn_missing(missing);
        }
        Ok(())
    }

    /// Sends fetches for the queue's next batches, each of one folder and
    /// at most `BATCH_BYTES` (at least one message). Commands of the
    /// `imap` crate (`SELECT`, flags) need the pipeline drained, so a
    /// folder change or a due flush waits until it is.
    fn fill_pipeline(&mut self) -> Result<()> {
        while self.bodies.in_flight() < PIPELINE {
            let Some(first) = self.queue.front() else {
                return Ok(());
            };
            let folder = first.folder.clone();
            if self.bodies.is_idle() {
                self.ensure_selected(&folder)?;
                self.flush_flags(&folder)?;
            } else {
                let waiting = self
                    .pending
                    .get(&folder)
                    .map_or(0, |p| p.seen.len() + p.remove.len());
                if self.bodies.in_flight_folder() != Some(folder.as_str()) || waiting >= FLUSH_AFTER
                {
                    return Ok(());
                }
            }
            let mut wanted = Vec::new();
            let mut bytes = 0u64;
            while let Some(m) = self.queue.front() {
                if m.folder != folder
                    || wanted.len() >= BATCH_MESSAGES
                    || (!wanted.is_empty() && bytes + m.size > BATCH_BYTES)
                {
                    break;
                }
                bytes += m.size;
                wanted.push(self.queue.pop_front().expect("checked above"));
            }
            self.bodies.send(wanted)?;
        }
        Ok(())
    }

    /// The folders the account's `folders` patterns choose on this server
    /// (what a fetch would scan), for `mailretr watch` to IDLE on.
    pub fn chosen_folders(&mut self) -> Result<Vec<ChosenFolder>> {
        self.choose_folders()
    }

    /// Whether the server offers a capability mailretr looks for
    /// (`KNOWN_CAPABILITIES`), e.g. `IDLE`.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.caps.contains(capability)
    }

    /// Fetches only the headers and sizes of messages (`BODY.PEEK[HEADER]`,
    /// `RFC822.SIZE`), so a caller can decide before downloading a body.
    /// Messages must come from this session's scan; headers have LF line
    /// endings; messages gone from the server are left out.
    pub fn fetch_headers(
        &mut self,
        messages: &[RemoteMessage],
    ) -> Result<Vec<(RemoteMessage, Vec<u8>)>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < messages.len() {
            let folder = messages[i].folder.clone();
            let run_end = messages[i..]
                .iter()
                .position(|m| m.folder != folder)
                .map_or(messages.len(), |p| i + p);
            self.ensure_selected(&folder)?;
            let uids: Vec<u32> = messages[i..run_end].iter().map(|m| m.number).collect();
            let mut headers = self.headers_of(&uids)?;
            for m in &messages[i..run_end] {
                if let Some((_, header)) = headers.remove(&m.number) {
                    out.push((m.clone(), header));
                }
            }
            i = run_end;
        }
        Ok(out)
    }
}

impl Source for ImapSource {
    fn protocol_name(&self) -> &str {
        self.protocol_name
    }

    fn scan(&mut self, seen: &mut dyn SeenIndex, fetch_all: bool) -> Result<Vec<Scan>> {
        let chosen = self.choose_folders()?;
        let mut scans = Vec::with_capacity(chosen.len());
        for folder in &chosen {
            scans.push(self.scan_folder(folder, seen, fetch_all)?);
        }
        Ok(scans)
    }

    fn fetch_headers(&mut self, messages: &[RemoteMessage]) -> Result<Option<Vec<MessageHeader>>> {
        ImapSource::fetch_headers(self, messages).map(Some)
    }

    fn retrieve(&mut self, messages: Vec<RemoteMessage>) -> Result<()> {
        self.queue.extend(messages);
        Ok(())
    }

    fn next_message(&mut self) -> Result<Option<(RemoteMessage, Vec<u8>)>> {
        if self.batch.is_empty() {
            self.fetch_batch()?;
        }
        Ok(self.batch.pop_front())
    }

    fn settle(&mut self) -> Vec<FolderUpdate> {
        let mut updates = Vec::new();
        for (folder, settle) in &self.settle {
            let mut last = settle.last_uid;
            for &(uid, dealt_with) in &settle.above {
                if !dealt_with && !self.committed.contains(&(folder.clone(), uid)) {
                    break;
                }
                last = uid;
            }
            if last > settle.last_uid {
                updates.push(FolderUpdate::State {
                    folder: folder.clone(),
                    state: FolderState {
                        uidvalidity: settle.uidvalidity,
                        last_uid: last,
                    },
                });
            }
        }
        updates
    }

    fn delivered(&mut self, message: &RemoteMessage) -> Result<()> {
        self.committed
            .insert((message.folder.clone(), message.number));
        // A deleted message's flags do not matter; a moved one keeps them.
        let removed = !self.options.keep && self.options.move_to.is_none();
        if self.options.mark_seen && !removed {
            self.pending
                .entry(message.folder.clone())
                .or_default()
                .seen
                .push(message.number);
        }
        Ok(())
    }

    fn delete(&mut self, message: &RemoteMessage) -> Result<()> {
        if !self.may_delete() {
            return Ok(());
        }
        self.pending
            .entry(message.folder.clone())
            .or_default()
            .remove
            .push(message.number);
        Ok(())
    }

    fn quota(&mut self) -> Result<Option<Quota>> {
        if !self.caps.contains("QUOTA") {
            return Ok(None);
        }
        let answer = self.with_session("GETQUOTAROOT", |s| {
            s.get_quota_root("INBOX").map(|r| {
                let roots: Vec<String> = r.quota_root_names().map(str::to_string).collect();
                r.quotas()
                    .iter()
                    .find(|q| roots.iter().any(|n| *n == q.root_name))
                    .or(r.quotas().first())
                    .map(quota_of)
            })
        })?;
        Ok(answer)
    }

    fn finish(&mut self) -> Result<()> {
        if self.session.is_none() {
            return Ok(());
        }
        self.queue.clear();
        // Fetches in flight are read to their end (and dropped) before
        // the session can say anything else; if that fails the
        // connection is out of step, and the pending work waits for the
        // next run (it is all redone from the state).
        let drained = self.quiesce();
        self.batch.clear();
        if let Err(e) = drained {
            self.session = None;
            return Err(e);
        }
        let mut first_error: Option<Error> = None;
        if let Some(current) = self.selected.clone() {
            if let Err(e) = self.leave_folder(&current) {
                first_error.get_or_insert(e);
            }
        }
        let others: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(f, _)| f.clone())
            .collect();
        for folder in others {
            let done = self
                .ensure_selected(&folder)
                .and_then(|()| self.leave_folder(&folder));
            if let Err(e) = done {
                log::warn!("{}: {folder}: {e}", self.label);
                first_error.get_or_insert(e);
            }
        }
        // Everything above is confirmed; the answer to LOGOUT changes
        // nothing, so it is waited for only briefly.
        if let Some(mut session) = self.session.take() {
            let sent = session.run_command("LOGOUT").and_then(|()| {
                self.socket
                    .set_read_timeout(Some(LOGOUT_GRACE))
                    .map_err(imap::Error::Io)
            });
            match sent {
                Ok(()) => {
                    if let Err(e) = self.bodies.read_goodbye() {
                        log::debug!("{}: LOGOUT: {e}", self.label);
                    }
                }
                Err(e) => log::debug!("{}: LOGOUT: {e}", self.label),
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Our `Quota` of the `imap` crate's: STORAGE and MESSAGE, other
/// resources left out.
fn quota_of(q: &imap::types::Quota<'_>) -> Quota {
    use imap::types::QuotaResourceName;
    let mut out = Quota {
        root: q.root_name.to_string(),
        ..Quota::default()
    };
    for r in &q.resources {
        match r.name {
            QuotaResourceName::Storage => out.storage = Some((r.usage, r.limit)),
            QuotaResourceName::Message => out.messages = Some((r.usage, r.limit)),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 7, 9, 10]), "1:3,5,7,9:10");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[2, 2, 3]), "2:3");
    }

    #[test]
    fn crlf_becomes_lf_but_lone_cr_stays() {
        assert_eq!(crlf_to_lf(b"a\r\nb\rc\n\r\n\r"), b"a\nb\rc\n\n\r");
    }

    #[test]
    fn select_answer_parses() {
        let data = b"* FLAGS (\\Answered \\Seen)\r\n* OK [PERMANENTFLAGS (\\Seen \\*)] ok\r\n* 20000 EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1700000000] UIDs valid\r\n* OK [UIDNEXT 20001] Predicted next UID\r\n";
        assert_eq!(
            parse_select(data),
            Selected {
                exists: 20000,
                uidvalidity: Some(1_700_000_000),
                uidnext: Some(20001)
            }
        );
        assert_eq!(parse_select(b"* 0 EXISTS\r\n"), Selected::default());
    }

    #[test]
    fn names_are_quoted_safely() {
        assert_eq!(quote("a \"b\" \\c").unwrap(), "\"a \\\"b\\\" \\\\c\"");
        assert!(quote("x\r\ny").is_err());
    }

    #[test]
    fn greeting_capabilities_are_read() {
        let caps =
            greeting_capabilities("* OK [CAPABILITY IMAP4rev1 SASL-IR auth=plain] ready").unwrap();
        assert!(caps.contains("SASL-IR") && caps.contains("AUTH=PLAIN"));
        assert!(greeting_capabilities("* OK ready").is_none());
    }

    #[test]
    fn login_capabilities_come_from_the_tagged_ok_only() {
        let answer = b"* CAPABILITY IMAP4rev1 MOVE\r\na1 OK [CAPABILITY IMAP4rev1 uidplus ID IDLE] Logged in\r\n";
        let caps = login_capabilities(answer).unwrap();
        assert!(caps.contains("UIDPLUS") && caps.contains("ID") && caps.contains("IDLE"));
        assert!(!caps.contains("MOVE"));
        assert!(
            login_capabilities(b"* CAPABILITY IMAP4rev1 MOVE\r\na1 OK Logged in\r\n").is_none()
        );
        assert!(login_capabilities(b"* OK [CAPABILITY IMAP4rev1 MOVE] hi\r\n").is_none());
        assert!(login_capabilities(b"").is_none());
    }
}
