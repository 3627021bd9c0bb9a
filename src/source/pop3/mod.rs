//! The POP3 source: connection set-up with the TLS and authentication
//! rules, listing with LIST and UIDL, and pipelined retrieval.
//!
//! With PIPELINING (RFC 2449) several RETR commands are outstanding at
//! once, bounded by a count (`pipeline_depth`) and by the bytes they will
//! bring (`MAX_BYTES_IN_FLIGHT`), so a slow link stays full without the
//! client buffering more than one message. DELE for a message is queued
//! only when the fetch loop says its delivery is committed, and takes
//! effect at QUIT.

pub mod client;
pub mod known;

use std::collections::{HashMap, VecDeque};

use crate::config::{Account, AuthMech, TlsMode};
use crate::error::{Error, Result, Throttle};
use crate::net::{self, Stream};
use client::{Capabilities, Command, Pop3, Status};

use super::imap::auth::Attempts;
use super::{MessageHeader, RemoteMessage, Scan, SeenIndex, Source};

/// The folder name POP3 messages are recorded under.
pub const POP3_FOLDER: &str = "INBOX";

/// At most this many bytes of RETR answers are asked for ahead of the one
/// being read (one message is always allowed, whatever its size).
pub const MAX_BYTES_IN_FLIGHT: u64 = 4 * 1024 * 1024;

/// The largest header block `TOP n 0` may bring.
pub const MAX_HEADER: usize = 1 << 20;

/// Most messages a LIST or UIDL listing may name, and most bytes it may
/// take: a mailbox beyond these is a hostile server's, not memory.
pub const MAX_LISTED: usize = 1_000_000;
const MAX_LISTING_BYTES: usize = 32 << 20;

/// A logged-in POP3 session acting as a `Source`.
pub struct Pop3Source {
    session: Option<Pop3<Stream>>,
    caps: Capabilities,
    protocol_name: &'static str,
    depth: usize,
    /// Messages queued but not yet asked for.
    to_send: VecDeque<(Command, Option<RemoteMessage>)>,
    /// Commands sent whose answers have not been read, in order.
    in_flight: VecDeque<(Command, Option<RemoteMessage>)>,
    bytes_in_flight: u64,
    /// The first DELE failure, reported at `finish`.
    delete_error: Option<Error>,
    /// The account's name, for log lines.
    label: String,
    /// Messages whose DELE the server answered `+OK`.
    deleted: Vec<RemoteMessage>,
    /// The same, once QUIT completed (the deletions took effect).
    confirmed: Vec<RemoteMessage>,
    /// Whether the scan may go by the sizes the state recorded instead of
    /// asking each one (see `scan`): only when nothing seen is deleted on
    /// the scan's word (`trust_recorded_sizes`).
    recorded_sizes: bool,
    /// The answers to STAT, `UIDL n` and `LIST n`, asked with the login
    /// (`connect`'s `expect`), for the scan.
    ahead: Option<LastAnswers>,
}

/// A secured connection, before login (or logged in already, with
/// `early_login`).
struct Opened {
    session: Pop3<Stream>,
    caps: Capabilities,
    /// CAPA's answer as the server sent it (`known`).
    capa_text: Option<String>,
    /// The outcome of AUTH PLAIN sent with CAPA (`known`), if it was.
    early_login: Option<Result<()>>,
    /// CAPA offers UTF8, which was not sent before that AUTH PLAIN (the
    /// server did not offer it last time): it is sent after the login.
    utf8_owed: bool,
    /// The answers to STAT, `UIDL n` and `LIST n`, sent after that AUTH
    /// PLAIN, read once it succeeded.
    ahead: Option<LastAnswers>,
    protocol_name: &'static str,
}

/// Connects, secures and logs in. Mechanisms are tried in the account's
/// order among those the server offers; one the server turns down with
/// `-ERR` gives way to the next (see `auth::Attempts`), on the same
/// connection, or on a new one when the server closed it.
///
/// `expect`: what STAT answers if the mailbox holds just the messages
/// recorded as delivered, when the run's scan will check that first (see
/// `Pop3Source::scan`; keep mode, no retention, not a run that lists in
/// full). When the login is pipelined (`known`), STAT, `UIDL n` and
/// `LIST n` go in the same write as AUTH PLAIN: a round trip less again.
pub fn connect(
    account: &Account,
    password: Option<&str>,
    expect: Option<(u64, u64)>,
) -> Result<Pop3Source> {
    let has_token = account.oauth2.is_some() || account.oauth2_token_command.is_some();
    if password.is_none() && !has_token && account.server.client_cert.is_none() {
        return Err(Error::Auth(format!(
            "no password configured for {}",
            account.user
        )));
    }
    // One login attempt with `mech`: a token mechanism gets a token
    // obtained right before it.
    let log_in = |session: &mut Pop3<Stream>, mech: AuthMech| -> Result<()> {
        if mech.uses_token() {
            let token = crate::oauth::bearer(
                account.oauth2.as_ref(),
                account.oauth2_token_command.as_deref(),
            )?;
            let outcome = session.login_bearer(
                mech,
                &account.user,
                &token,
                &account.server.host,
                account.server.port,
            );
            if let (Err(Error::Auth(_)), Some(o)) = (&outcome, &account.oauth2) {
                crate::oauth::rejected(o);
            }
            outcome
        } else {
            session.login(mech, &account.user, password.unwrap_or_default())
        }
    };
    let known_key = known::key(&account.server);
    let refused_before = known::is_refused(&known_key);
    let mut opened = match open(account, password, expect) {
        // CAPA and AUTH PLAIN sent together, and the session failed:
        // once more, CAPA alone (`known::refused`).
        Err(e) if !refused_before && known::is_refused(&known_key) => {
            log::info!(
                "{}: {e}; connecting again without pipelining the login",
                account.name
            );
            open(account, None, None)?
        }
        opened => opened?,
    };
    let mut order = candidates(account, &opened.caps, opened.session.greeting())?;
    // AUTH PLAIN sent with CAPA (`known`): its outcome is the first
    // attempt, unless the server said no to a PLAIN it no longer offers.
    let mut early_login = opened.early_login.take();
    if let Some(outcome) = &early_login {
        if !order.contains(&AuthMech::Plain) && outcome.is_err() {
            log::debug!(
                "{}: the server no longer offers PLAIN, as it did before",
                account.name
            );
            early_login = None;
        } else {
            order.retain(|m| *m != AuthMech::Plain);
            order.insert(0, AuthMech::Plain);
        }
    }
    // A tunnel (ssh) is the secure channel, as fetchmail and mbsync take it.
    let encrypted = account.server.tls != TlsMode::None || account.server.tunnel.is_some();
    let mut tried = Attempts::new(&account.name);
    let mut failed_before = false;
    for mech in order {
        if !tried.may_try(mech, encrypted) {
            continue;
        }
        let mut outcome = match early_login.take() {
            Some(outcome) if mech == AuthMech::Plain => outcome,
            other => {
                early_login = other;
                log_in(&mut opened.session, mech)
            }
        };
        if failed_before && matches!(outcome, Err(Error::Network { .. })) {
            // Many servers hang up after a failed login: once more, anew.
            log::info!(
                "{}: the server closed the connection; reconnecting",
                account.name
            );
            opened = open(account, None, None)?;
            outcome = log_in(&mut opened.session, mech);
        }
        match outcome {
            Ok(()) => {
                let Opened {
                    mut session,
                    caps,
                    capa_text,
                    utf8_owed,
                    protocol_name,
                    ahead,
                    ..
                } = opened;
                if account.server.tls != TlsMode::None {
                    known::learned(&known_key, capa_text.as_deref());
                }
                if utf8_owed {
                    utf8(&mut session, &account.name);
                }
                return Ok(Pop3Source {
                    session: Some(session),
                    caps,
                    protocol_name,
                    depth: account.pipeline_depth,
                    to_send: VecDeque::new(),
                    in_flight: VecDeque::new(),
                    bytes_in_flight: 0,
                    delete_error: None,
                    label: account.name.clone(),
                    deleted: Vec::new(),
                    confirmed: Vec::new(),
                    recorded_sizes: false,
                    ahead,
                });
            }
            // The server's -ERR, not an error of ours (a SCRAM server
            // that could not prove itself is no reason to trust a weaker
            // mechanism with the password).
            Err(e @ Error::Auth(_)) if e.to_string().contains("-ERR") => {
                tried.failed(mech, e);
                failed_before = true;
            }
            // `[LOGIN-DELAY]`: how long, when CAPA said (RFC 2449).
            Err(Error::Throttled {
                message,
                throttle: Throttle::LoginDelay(None),
            }) => {
                return Err(Error::Throttled {
                    message,
                    throttle: Throttle::LoginDelay(opened.caps.login_delay),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Err(tried.error())
}

/// Connects and secures, asks for the capabilities (again after STLS:
/// those learned before TLS are not trusted) and turns on UTF-8 mode when
/// offered.
///
/// With `password`, CAPA and AUTH PLAIN may go in one round trip (see
/// `known`): the outcome is then in `early_login`, and with `expect` (see
/// `connect`) the answers to STAT and the last message's UIDL and LIST in
/// `ahead`.
fn open(account: &Account, password: Option<&str>, expect: Option<(u64, u64)>) -> Result<Opened> {
    // A server that fails resumed handshakes: once more, with a full one.
    net::tls::open_resuming(&account.name, || open_once(account, password, expect))
}

fn open_once(
    account: &Account,
    password: Option<&str>,
    expect: Option<(u64, u64)>,
) -> Result<Opened> {
    let server = &account.server;
    let opening = net::early::opening(server)?;
    let label = account.name.as_str();
    let (mut session, protocol_name) = match server.tls {
        TlsMode::Implicit => (Pop3::connect(opening.into_tls()?, label)?, "POP3S"),
        TlsMode::None => (
            Pop3::connect(net::plain(server, opening.into_tcp()?)?, label)?,
            "POP3",
        ),
        TlsMode::Starttls => {
            let mut plain = Pop3::connect(Stream::Plain(opening.into_tcp()?), label)?;
            let caps = plain.capa()?;
            if caps.answered && !caps.has("STLS") {
                return Err(Error::Tls(
                    "server does not offer STLS; not sending credentials (tls = \"starttls\")"
                        .into(),
                ));
            }
            // Only APOP's timestamp is kept from the plain greeting.
            let greeting = plain.greeting().to_string();
            let stream = plain.stls()?;
            let Stream::Plain(tcp) = stream else {
                return Err(Error::Internal("STLS on an encrypted stream".into()));
            };
            let tls = net::tls_handshake(server, tcp)?;
            (Pop3::resume(tls, label, greeting), "POP3S")
        }
    };
    // What the server answered CAPA last time, when it says CAPA and
    // AUTH PLAIN may go in one round trip (`known`), and the password.
    let key = known::key(server);
    let pipelined = password
        .filter(|_| server.tls != TlsMode::None)
        .and_then(|password| Some((known::get(&key)?, password)))
        .map(|(text, password)| (Capabilities::parse(&text), password))
        .filter(|(hint, _)| {
            hint.has("PIPELINING")
                && candidates(account, hint, session.greeting())
                    .is_ok_and(|c| c.first() == Some(&AuthMech::Plain))
        });
    let (caps, capa_text, early_login, utf8_owed, ahead) = match pipelined {
        Some((hint, password)) => {
            let sent_utf8 = hint.has("UTF8");
            // The scan's first questions too (see `connect`).
            let last = expect.and_then(last_number);
            let then = last.map(stat_and_last).unwrap_or_default();
            let (caps, text, utf8_status, login) =
                match session.capa_and_plain(sent_utf8, &account.user, password, &then) {
                    // Not the server's answer to a login: it may not take
                    // the two together (see `connect`).
                    Ok((.., Err(e))) | Err(e) if !is_login_answer(&e) => {
                        known::refused(&key);
                        return Err(e);
                    }
                    Ok(answers) => answers,
                    Err(e) => return Err(e),
                };
            if let Some(Status::Err(e)) = utf8_status {
                refused_utf8(label, &format!("-ERR {e}"));
            }
            let ahead = match (last, &login) {
                (Some(n), Ok(())) => {
                    let answers = read_stat_and_last(&mut session, n).inspect_err(|_| {
                        // A server (or a proxy before it) that lost what
                        // was sent after the login: not again.
                        known::refused(&key);
                    })?;
                    if answers.stat.is_none() {
                        // Answered before the login took effect, or not
                        // at all: the scan asks again, and later runs
                        // wait for each answer.
                        log::debug!("{label}: STAT sent with the login was not answered");
                        known::refused(&key);
                        None
                    } else {
                        Some(answers)
                    }
                }
                _ => None,
            };
            let owed = caps.has("UTF8") && !sent_utf8;
            (caps, text, Some(login), owed, ahead)
        }
        None => {
            let (caps, text) = session.capa_text()?;
            if caps.has("UTF8") {
                utf8(&mut session, label);
            }
            (caps, text, None, false, None)
        }
    };
    Ok(Opened {
        session,
        caps,
        capa_text,
        early_login,
        utf8_owed,
        ahead,
        protocol_name,
    })
}

/// Whether a login's error is the server's answer to it (`-ERR`, a
/// throttle, `[SYS/TEMP]`), not a failure of the session.
fn is_login_answer(e: &Error) -> bool {
    matches!(
        e,
        Error::Auth(_) | Error::Server(_) | Error::Throttled { .. }
    )
}

/// UTF8 (RFC 6856): without it a server may hand out a generated
/// stand-in for a message with UTF-8 header fields (Courier: "Cannot
/// display Unicode content"), and that stand-in would be delivered in the
/// message's place (section 3).
fn utf8(session: &mut Pop3<Stream>, label: &str) {
    if let Err(e) = session.simple(Command::Utf8) {
        refused_utf8(label, &e.to_string());
    }
}

fn refused_utf8(label: &str, error: &str) {
    log::warn!(
        "{label}: the server offers UTF8 but refused it ({error}); messages with UTF-8 headers may come converted"
    );
}

/// The mechanisms to try, in the account's order: those the server
/// offers. USER is assumed available when CAPA is not answered. APOP is in
/// the order only when `auth` names it (`AuthMech::DEFAULT_ORDER`).
fn candidates(account: &Account, caps: &Capabilities, greeting: &str) -> Result<Vec<AuthMech>> {
    let offered = |m: &AuthMech| match m {
        AuthMech::User => caps.has("USER") || !caps.answered,
        // After STLS the timestamp comes from the plaintext greeting,
        // which anyone on the path can forge; it is used only when asked.
        AuthMech::Apop => client::apop_timestamp(greeting).is_some(),
        AuthMech::Plain => caps.sasl.contains("PLAIN"),
        AuthMech::Login => caps.sasl.contains("LOGIN"),
        AuthMech::CramMd5 => caps.sasl.contains("CRAM-MD5"),
        AuthMech::ScramSha256 => caps.sasl.contains("SCRAM-SHA-256"),
        AuthMech::XOAuth2 => caps.sasl.contains("XOAUTH2"),
        AuthMech::OAuthBearer => caps.sasl.contains("OAUTHBEARER"),
        AuthMech::External => caps.sasl.contains("EXTERNAL"),
    };
    let has_password = account.secret != crate::config::Secret::None;
    let has_token = account.oauth2.is_some() || account.oauth2_token_command.is_some();
    let offered = |m: &AuthMech| {
        offered(m)
            && if m.uses_token() {
                has_token
            } else if *m == AuthMech::External {
                account.server.client_cert.is_some()
            } else {
                has_password
            }
    };
    let found: Vec<AuthMech> = account.auth.iter().copied().filter(offered).collect();
    if found.is_empty() {
        return Err(Error::Auth(format!(
            "the server offers none of the allowed mechanisms ({})",
            account
                .auth
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(found)
}

impl Pop3Source {
    /// Lets the scan go by the sizes the state recorded (see `scan`):
    /// take the mailbox as unchanged on STAT and its last message, or
    /// skip LIST when the recorded sizes add up to STAT's octets. For a
    /// run that deletes nothing it saw (`keep`, no retention): a change
    /// those checks miss is then a message fetched on a later run, never
    /// one deleted undelivered.
    pub fn trust_recorded_sizes(&mut self) {
        self.recorded_sizes = true;
    }

    fn session(&mut self) -> Result<&mut Pop3<Stream>> {
        self.session
            .as_mut()
            .ok_or_else(|| Error::Internal("POP3 session already closed".into()))
    }

    fn pipelining(&self) -> bool {
        self.caps.has("PIPELINING")
    }

    /// Sends queued commands while the window allows.
    fn fill_window(&mut self) -> Result<()> {
        let depth = if self.pipelining() { self.depth } else { 1 };
        let mut batch = Vec::new();
        while self.in_flight.len() + batch.len() < depth {
            let Some((cmd, _)) = self.to_send.front() else {
                break;
            };
            let size = match cmd {
                Command::Retr(_) => self.to_send[0].1.as_ref().map_or(0, |m| m.size),
                _ => 0,
            };
            let nothing_big_in_flight = self.bytes_in_flight == 0;
            if size > 0
                && !nothing_big_in_flight
                && self.bytes_in_flight + size > MAX_BYTES_IN_FLIGHT
            {
                break;
            }
            let (cmd, msg) = self.to_send.pop_front().expect("checked above");
            self.bytes_in_flight += size;
            batch.push(cmd);
            self.in_flight.push_back((cmd, msg));
        }
        if !batch.is_empty() {
            self.session()?.send(&batch)?;
        }
        Ok(())
    }

    /// Reads the answer to the oldest outstanding command. Returns the
    /// message for a RETR.
    fn read_one(&mut self) -> Result<Option<(RemoteMessage, Vec<u8>)>> {
        let (cmd, msg) = self
            .in_flight
            .pop_front()
            .ok_or_else(|| Error::Internal("no POP3 command outstanding".into()))?;
        let status = self.session()?.read_status()?;
        match (cmd, status) {
            (Command::Retr(_), Status::Ok(_)) => {
                let msg = msg.expect("RETR carries its message");
                self.bytes_in_flight = self.bytes_in_flight.saturating_sub(msg.size);
                // Servers' sizes are close but not always exact; allow for
                // that, but never without bound.
                let max = (msg.size as usize).saturating_mul(2) + 64 * 1024;
                // Never an allocation sized by the server's number alone.
                let mut bytes = Vec::with_capacity((msg.size as usize).min(1 << 20) + 1024);
                self.session()?.read_block(&mut bytes, max)?;
                strip_added_newline(&mut bytes, msg.size);
                Ok(Some((msg, bytes)))
            }
            (Command::Retr(n), Status::Err(t)) => Err(Error::Server(format!("RETR {n}: -ERR {t}"))),
            (Command::Dele(_), Status::Ok(_)) => {
                self.deleted.extend(msg);
                Ok(None)
            }
            (Command::Dele(n), Status::Err(t)) => {
                let e = Error::Server(format!("DELE {n}: -ERR {t}"));
                log::warn!("{e}");
                self.delete_error.get_or_insert(e);
                Ok(None)
            }
            (_, _) => Ok(None),
        }
    }

    /// Reads and discards every outstanding answer, so that QUIT is heard.
    fn drain(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            match self.read_one() {
                Ok(_) | Err(Error::Server(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.bytes_in_flight = 0;
        Ok(())
    }
}

/// A message without a final line break arrives with one added by the
/// server (the multi-line terminator needs it). When the server's size
/// (the CRLF form, as LIST reports it) is exactly two bytes short, that
/// line break was not part of the message: take it off again.
fn strip_added_newline(bytes: &mut Vec<u8>, listed_size: u64) {
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
    let crlf_size = bytes.len() as u64 + lines;
    if crlf_size == listed_size + 2 && bytes.ends_with(b"\n") {
        bytes.pop();
    }
}

impl Source for Pop3Source {
    fn protocol_name(&self) -> &str {
        self.protocol_name
    }

    fn scan(&mut self, seen: &mut dyn SeenIndex, fetch_all: bool) -> Result<Vec<Scan>> {
        let pipelining = self.pipelining();
        let ahead = self.ahead.take();
        let label = self.label.clone();
        let recorded_sizes = self.recorded_sizes && !fetch_all;
        let session = self.session()?;
        // LIST and UIDL: each message's size is checked against the one
        // recorded when it was delivered, so a reused UIDL shows as a size
        // that differs. A run that deletes nothing it saw
        // (`trust_recorded_sizes`) asks less:
        // - When the state's count and octets of the messages delivered
        //   say what STAT should answer, STAT, `UIDL n` and `LIST n` for
        //   the last of them, pipelined: STAT as recorded and the last
        //   message the one delivered last time with its size, the mailbox
        //   is taken as unchanged, and nothing more is asked (no listing of
        //   every id, about 45 kB for 2,000 messages, on every cron run).
        //   Every `FULL_LISTING_EVERY`th run lists in full all the same.
        //   When they differ, LIST and UIDL follow in one round trip.
        // - Otherwise STAT and UIDL: when every message is one delivered
        //   before and the sizes recorded then add up to STAT's octets,
        //   nothing is new and LIST is not asked for.
        // Deletions and arrivals that leave the count, the octets (and the
        // last message) as they were pass these checks: new mail is then
        // fetched on the next run that lists in full (fetchmail's
        // `fastuidl` makes the same bet), never deleted.
        let (list, uidl, uids, all_known) = if !recorded_sizes {
            list_and_uidl(session, pipelining, &label)?
        } else {
            let expected = if pipelining {
                unchanged_if(seen)?
            } else {
                None
            };
            if let Some(expected) = expected {
                // Asked with the login (`connect`), or now.
                let answers = match ahead.filter(|a| u64::from(a.n) == expected.0) {
                    Some(answers) => answers,
                    None => ask_stat_and_last(session, expected.0)?,
                };
                let last_known = answers.last_known(seen)?;
                if answers.stat == Some(expected) && last_known {
                    log::debug!("{label}: STAT and the last message as recorded: nothing new");
                    return Ok(vec![Scan::default()]);
                }
                // The mailbox changed, most likely by new mail, whose sizes
                // LIST gives: LIST and UIDL in one round trip.
                list_and_uidl(session, pipelining, &label)?
            } else {
                let (stat, uidl) = ask_two(
                    session,
                    pipelining,
                    (Command::Stat, read_stat),
                    (Command::Uidl, |s| read_listing(s, "UIDL")),
                )?;
                let uids = usable_uidls(uidl.as_deref().unwrap_or_default(), &label);
                let known = match (stat, &uidl) {
                    (Some(stat), Some(uidl)) => all_delivered(stat, uidl, &uids, seen, &label)?,
                    _ => None,
                };
                match known {
                    Some(list) => (list, uidl, uids, true),
                    // UIDL was asked already (and answered or refused).
                    None => {
                        session.send(&[Command::List])?;
                        let list = sizes(read_listing(session, "LIST")?)?;
                        (list, uidl, uids, false)
                    }
                }
            }
        };
        let mut scan = Scan {
            // Every well-formed id, shared ones too: what was delivered
            // under an id now shared is not forgotten.
            present: uidl.as_ref().map(|u| {
                u.iter()
                    .filter_map(|(_, id)| client::valid_uidl(id))
                    .collect()
            }),
            ..Scan::default()
        };
        for (number, size) in list {
            let uid = uids.get(&number).cloned();
            let message = RemoteMessage {
                folder: POP3_FOLDER.into(),
                uid: uid.clone(),
                uidvalidity: None,
                size,
                number,
                mailbox: Vec::new(),
                flags: String::new(),
            };
            let recorded = match &uid {
                // Each one's recorded size is the size (`all_delivered`).
                Some(_) if all_known => Some(size),
                Some(uid) if !fetch_all => seen.seen_size(POP3_FOLDER, uid)?,
                _ => None,
            };
            match recorded {
                // Delivered before and still here: deleted unless kept.
                Some(recorded) if recorded == size || recorded == 0 => {
                    scan.seen_on_server.push(message)
                }
                // The id was seen, but for a message of another size: the
                // server reused it (RFC 1939 allows that once a message is
                // gone). A new message: fetched, never deleted unread.
                Some(recorded) => {
                    log::warn!(
                        "{}: UIDL {} was delivered before as {recorded} bytes but is now {size}: fetched as a new message",
                        self.label,
                        message.uid.as_deref().unwrap_or("?")
                    );
                    scan.new.push(message)
                }
                None => scan.new.push(message),
            }
        }
        Ok(vec![scan])
    }

    /// `TOP n 0` for each message, pipelined when the server allows.
    /// Must be called before `retrieve` (nothing may be in flight).
    fn fetch_headers(&mut self, messages: &[RemoteMessage]) -> Result<Option<Vec<MessageHeader>>> {
        if self.caps.answered && !self.caps.has("TOP") {
            return Ok(None);
        }
        // Deletions asked for since the last headers go out first, and
        // their answers are read, so the TOP answers come in order.
        if self
            .to_send
            .iter()
            .any(|(c, _)| !matches!(c, Command::Dele(_)))
        {
            return Ok(None);
        }
        while !self.to_send.is_empty() {
            self.fill_window()?;
            self.drain()?;
        }
        self.drain()?;
        let depth = if self.pipelining() { self.depth } else { 1 };
        let mut out = Vec::with_capacity(messages.len());
        let mut refused = 0usize;
        for batch in messages.chunks(depth) {
            let commands: Vec<Command> = batch.iter().map(|m| Command::Top(m.number, 0)).collect();
            let session = self.session()?;
            session.send(&commands)?;
            for m in batch {
                match session.read_status()? {
                    Status::Ok(_) => {
                        let mut header = Vec::new();
                        // A header block is small; a server sending more
                        // than this for TOP n 0 is not answering TOP.
                        session.read_block(&mut header, MAX_HEADER)?;
                        let len = crate::message::header_block(&header).len();
                        header.truncate(len);
                        out.push((m.clone(), header));
                    }
                    Status::Err(t) => {
                        log::debug!("TOP {} 0: -ERR {t}", m.number);
                        refused += 1;
                    }
                }
            }
        }
        if refused == messages.len() && !messages.is_empty() {
            return Ok(None);
        }
        Ok(Some(out))
    }

    fn retrieve(&mut self, messages: Vec<RemoteMessage>) -> Result<()> {
        self.to_send.extend(
            messages
                .into_iter()
                .map(|m| (Command::Retr(m.number), Some(m))),
        );
        Ok(())
    }

    fn next_message(&mut self) -> Result<Option<(RemoteMessage, Vec<u8>)>> {
        loop {
            self.fill_window()?;
            if self.in_flight.is_empty() {
                return Ok(None);
            }
            if let Some(found) = self.read_one()? {
                return Ok(Some(found));
            }
        }
    }

    fn delete(&mut self, message: &RemoteMessage) -> Result<()> {
        // Ahead of queued RETRs, so deletions are not held up behind them,
        // and in the order they were asked for.
        let at = self
            .to_send
            .iter()
            .position(|(c, _)| !matches!(c, Command::Dele(_)))
            .unwrap_or(self.to_send.len());
        self.to_send
            .insert(at, (Command::Dele(message.number), Some(message.clone())));
        Ok(())
    }

    fn confirmed_deletions(&mut self) -> Vec<RemoteMessage> {
        std::mem::take(&mut self.confirmed)
    }

    fn finish(&mut self) -> Result<()> {
        // Messages queued but never asked for are left alone; deletions
        // asked for are sent and confirmed before QUIT.
        self.to_send.retain(|(c, _)| matches!(c, Command::Dele(_)));
        while !self.to_send.is_empty() {
            self.fill_window()?;
            self.drain()?;
        }
        self.drain()?;
        if let Some(session) = self.session.take() {
            if self.deleted.is_empty() && self.delete_error.is_none() {
                return session.quit_unanswered();
            }
            session.quit()?;
            // RFC 1939 section 6: the deletions took effect with QUIT.
            self.confirmed = std::mem::take(&mut self.deleted);
        }
        match self.delete_error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// A LIST or UIDL listing: message number and the token after it.
type Listing = Vec<(u32, Vec<u8>)>;

/// The UIDL listing's ids that can be trusted, by message number: an id
/// with characters RFC 1939 does not allow, or one that two messages
/// share, is not used (those messages count as having no UIDL, so they
/// are never taken for something delivered before).
fn usable_uidls(listing: &[(u32, Vec<u8>)], label: &str) -> HashMap<u32, String> {
    let mut count: HashMap<&[u8], usize> = HashMap::new();
    for (_, id) in listing {
        *count.entry(id.as_slice()).or_default() += 1;
    }
    let mut uids = HashMap::new();
    for (number, id) in listing {
        if count[id.as_slice()] > 1 {
            log::warn!(
                "{label}: message {number} shares its UIDL with another: treated as having none"
            );
            continue;
        }
        match client::valid_uidl(id) {
            Some(id) => {
                uids.insert(*number, id);
            }
            None => log::warn!(
                "{label}: message {number} has a UIDL with characters RFC 1939 does not allow: treated as having none"
            ),
        }
    }
    uids
}

/// Two commands and their answers, read in order by `first.1` and
/// `second.1`: sent together with PIPELINING, else the second only once
/// the first is answered.
fn ask_two<A, B>(
    session: &mut Pop3<Stream>,
    pipelining: bool,
    first: (Command, impl FnOnce(&mut Pop3<Stream>) -> Result<A>),
    second: (Command, impl FnOnce(&mut Pop3<Stream>) -> Result<B>),
) -> Result<(A, B)> {
    if pipelining {
        session.send(&[first.0, second.0])?;
        let a = (first.1)(session)?;
        Ok((a, (second.1)(session)?))
    } else {
        session.send(&[first.0])?;
        let a = (first.1)(session)?;
        session.send(&[second.0])?;
        Ok((a, (second.1)(session)?))
    }
}

/// What a scan goes by: LIST's sizes, UIDL's listing and the usable ids
/// in it, LIST and UIDL asked in one round trip when the server
/// pipelines; and that the sizes are the server's (not recorded ones).
type Listed = (Vec<(u32, u64)>, Option<Listing>, HashMap<u32, String>, bool);

/// LIST and UIDL (see `Listed`).
fn list_and_uidl(session: &mut Pop3<Stream>, pipelining: bool, label: &str) -> Result<Listed> {
    let (list, uidl) = ask_two(
        session,
        pipelining,
        (Command::List, |s| sizes(read_listing(s, "LIST")?)),
        (Command::Uidl, |s| read_listing(s, "UIDL")),
    )?;
    let uids = usable_uidls(uidl.as_deref().unwrap_or_default(), label);
    Ok((list, uidl, uids, false))
}

/// LIST's listing as message numbers and sizes (an error when LIST was
/// refused or a size is not a number).
fn sizes(list: Option<Listing>) -> Result<Vec<(u32, u64)>> {
    let list = list.ok_or_else(|| Error::Server("LIST refused".into()))?;
    list.into_iter()
        .map(|(number, size)| {
            std::str::from_utf8(&size)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .map(|size| (number, size))
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "LIST gave a bad size {:?} for message {number}",
                        String::from_utf8_lossy(&size[..size.len().min(40)])
                    ))
                })
        })
        .collect()
}

/// Every this many runs of an account (the first one included), a scan
/// that could take the mailbox as unchanged on STAT and its last message
/// (see `Pop3Source::scan`) lists every id all the same.
pub const FULL_LISTING_EVERY: u64 = 12;

/// Whether the run after `runs_before` earlier runs of the account lists
/// every id (`FULL_LISTING_EVERY`).
pub fn lists_in_full(runs_before: u64) -> bool {
    runs_before.is_multiple_of(FULL_LISTING_EVERY)
}

/// What STAT answers if the mailbox holds just the messages recorded as
/// delivered (their count and octets), when this run may take it as
/// unchanged on that: `None` when nothing is recorded, a recorded size is
/// unknown, or this run lists in full (`FULL_LISTING_EVERY`).
fn unchanged_if(seen: &mut dyn SeenIndex) -> Result<Option<(u64, u64)>> {
    if lists_in_full(seen.runs_before()?) {
        return Ok(None);
    }
    Ok(seen
        .recorded_totals(POP3_FOLDER)?
        .filter(|&expected| last_number(expected).is_some()))
}

/// The number of the last message when STAT answers `expected`: none
/// for an empty mailbox, or a count no message number can reach.
fn last_number((count, _): (u64, u64)) -> Option<u32> {
    u32::try_from(count).ok().filter(|&n| n > 0)
}

/// STAT, and `UIDL n` and `LIST n` for the last message, `n`.
fn stat_and_last(n: u32) -> Vec<Command> {
    vec![Command::Stat, Command::UidlOf(n), Command::ListOf(n)]
}

/// The answers to STAT, `UIDL n` and `LIST n` (`ask_stat_and_last`).
#[derive(Debug)]
struct LastAnswers {
    /// The message asked about: the count STAT should answer.
    n: u32,
    stat: Option<(u64, u64)>,
    uid: Option<String>,
    size: Option<u64>,
}

impl LastAnswers {
    /// Whether message `n` is one recorded as delivered, with the size it
    /// has now.
    fn last_known(&self, seen: &mut dyn SeenIndex) -> Result<bool> {
        Ok(match (&self.uid, self.size) {
            (Some(uid), Some(size)) => seen.seen_size_one(POP3_FOLDER, uid)? == Some(size),
            _ => false,
        })
    }
}

/// STAT, and `UIDL n` and `LIST n` for the last message (`n`, the
/// expected count), pipelined.
fn ask_stat_and_last(session: &mut Pop3<Stream>, count: u64) -> Result<LastAnswers> {
    let n = count as u32;
    session.send(&stat_and_last(n))?;
    read_stat_and_last(session, n)
}

/// The answers to STAT, `UIDL n` and `LIST n`, sent before.
fn read_stat_and_last(session: &mut Pop3<Stream>, n: u32) -> Result<LastAnswers> {
    let stat = read_stat(session)?;
    let uid = read_one(session, n, "UIDL")?.and_then(|id| client::valid_uidl(id.as_bytes()));
    let size = read_one(session, n, "LIST")?.and_then(|size| size.parse::<u64>().ok());
    Ok(LastAnswers { n, stat, uid, size })
}

/// The answer to `UIDL n` or `LIST n` (`what`): the id or size, when it
/// is about message `n`.
fn read_one(session: &mut Pop3<Stream>, n: u32, what: &str) -> Result<Option<String>> {
    Ok(match session.read_status()? {
        Status::Ok(text) => client::parse_one(&text, n).map(str::to_string),
        Status::Err(t) => {
            log::debug!("{what} {n}: -ERR {t}");
            None
        }
    })
}

/// STAT's answer, `None` when refused or not understood.
fn read_stat(session: &mut Pop3<Stream>) -> Result<Option<(u64, u64)>> {
    Ok(match session.read_status()? {
        Status::Ok(text) => {
            let stat = client::parse_stat(&text);
            if stat.is_none() {
                log::debug!("STAT: not understood: {text:?}");
            }
            stat
        }
        Status::Err(t) => {
            log::debug!("STAT: -ERR {t}");
            None
        }
    })
}

/// The messages, numbers and sizes, when UIDL and STAT show that each is
/// one delivered before (see `Pop3Source::scan`): every UIDL usable
/// (`uids`: well-formed, listed once), as many as STAT counts, each
/// recorded with a size, and the recorded sizes adding up to STAT's
/// octets. `None` otherwise (LIST is asked for then).
fn all_delivered(
    (count, octets): (u64, u64),
    uidl: &Listing,
    uids: &HashMap<u32, String>,
    seen: &mut dyn SeenIndex,
    label: &str,
) -> Result<Option<Vec<(u32, u64)>>> {
    if uidl.len() as u64 != count || uids.len() != uidl.len() {
        return Ok(None);
    }
    let mut list = Vec::with_capacity(uidl.len());
    let mut total = 0u64;
    for (number, _) in uidl {
        // Numbers listed twice leave fewer usable ids than lines.
        let Some(id) = uids.get(number) else {
            return Ok(None);
        };
        let recorded = match seen.seen_size(POP3_FOLDER, id)? {
            Some(size) if size > 0 => size,
            _ => return Ok(None),
        };
        total = total.saturating_add(recorded);
        list.push((*number, recorded));
    }
    if total != octets {
        log::debug!(
            "{label}: STAT says {octets} octets, the messages were {total} when delivered: asking LIST"
        );
        return Ok(None);
    }
    Ok(Some(list))
}

fn read_listing(session: &mut Pop3<Stream>, what: &str) -> Result<Option<Listing>> {
    match session.read_status()? {
        Status::Err(t) => {
            log::debug!("{what}: -ERR {t}");
            Ok(None)
        }
        Status::Ok(_) => {
            let mut block = Vec::new();
            session.read_block(&mut block, MAX_LISTING_BYTES)?;
            let lines = block.iter().filter(|&&b| b == b'\n').count();
            if lines > MAX_LISTED {
                return Err(Error::Protocol(format!(
                    "{what} names {lines} messages, more than {MAX_LISTED}"
                )));
            }
            client::parse_listing(&block).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_newline_is_stripped_only_when_sizes_prove_it() {
        let mut b = b"a\nb\n".to_vec();
        strip_added_newline(&mut b, 4); // "a\r\nb" is 4 bytes
        assert_eq!(b, b"a\nb");
        let mut b = b"a\nb\n".to_vec();
        strip_added_newline(&mut b, 6);
        assert_eq!(b, b"a\nb\n");
    }
}
