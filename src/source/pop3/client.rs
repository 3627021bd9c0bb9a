//! A POP3 client (RFC 1939) with the extensions mail retrieval needs:
//! CAPA, STLS and PIPELINING (RFC 2449, RFC 2595), SASL AUTH with PLAIN,
//! LOGIN, CRAM-MD5 and SCRAM-SHA-256 (RFC 5034, RFC 4616, RFC 2195,
//! RFC 7677) and APOP.
//!
//! It is generic over any `Read + Write` stream, so unit tests drive it
//! with scripted bytes. It knows nothing of TLS: `stls` hands the stream
//! back for the caller to encrypt, after checking that the server sent
//! nothing it should not have.

use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};

use crate::codec;
use crate::config::AuthMech;
use crate::error::{Error, Result};
use crate::scram::ScramClient;
use crate::transcript;

/// What the server said it supports in answer to CAPA.
#[derive(Debug, Default, Clone)]
pub struct Capabilities {
    /// Capability names, upper-cased (`UIDL`, `PIPELINING`, `STLS`, ...).
    pub names: HashSet<String>,
    /// SASL mechanisms from the `SASL` line, upper-cased.
    pub sasl: HashSet<String>,
    /// Whether the server answered CAPA at all.
    pub answered: bool,
    /// `LOGIN-DELAY n` (RFC 2449): the seconds the server wants between
    /// logins.
    pub login_delay: Option<u64>,
}

impl Capabilities {
    /// Whether a capability is listed.
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// The capabilities a CAPA answer's lines list (the block after
    /// `+OK`, without the final dot): what `capa` reads, and what a
    /// stored answer (`known`) says again.
    pub fn parse(block: &str) -> Capabilities {
        let mut caps = Capabilities {
            answered: true,
            ..Capabilities::default()
        };
        for line in block.lines() {
            let mut words = line.split_whitespace();
            let Some(name) = words.next() else { continue };
            let name = name.to_ascii_uppercase();
            if name == "SASL" {
                caps.sasl.extend(words.map(|w| w.to_ascii_uppercase()));
            } else if name == "LOGIN-DELAY" {
                caps.login_delay = words.next().and_then(|w| w.parse().ok());
            }
            caps.names.insert(name);
        }
        caps
    }
}

/// A POP3 command, as it is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `LIST`: message numbers and sizes.
    List,
    /// `UIDL`: message numbers and unique ids.
    Uidl,
    /// `STAT`: the number of messages and their octets.
    Stat,
    /// `UIDL n`: one message's unique id, on the status line.
    UidlOf(u32),
    /// `LIST n`: one message's size, on the status line.
    ListOf(u32),
    /// `RETR n`: the whole message.
    Retr(u32),
    /// `TOP n lines`: the header and the first lines of the body.
    Top(u32, u32),
    /// `DELE n`: mark for deletion at QUIT.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `UTF8` (RFC 6856): messages and replies as they are, in UTF-8.
    Utf8,
    /// `QUIT`: end the session; deletions take effect.
    Quit,
}

impl Command {
    fn wire(self) -> String {
        match self {
            Command::List => "LIST\r\n".into(),
            Command::Uidl => "UIDL\r\n".into(),
            Command::Stat => "STAT\r\n".into(),
            Command::UidlOf(n) => format!("UIDL {n}\r\n"),
            Command::ListOf(n) => format!("LIST {n}\r\n"),
            Command::Retr(n) => format!("RETR {n}\r\n"),
            Command::Top(n, l) => format!("TOP {n} {l}\r\n"),
            Command::Dele(n) => format!("DELE {n}\r\n"),
            Command::Noop => "NOOP\r\n".into(),
            Command::Utf8 => "UTF8\r\n".into(),
            Command::Quit => "QUIT\r\n".into(),
        }
    }

    /// Whether a positive answer is followed by a dot-terminated block.
    pub fn is_multiline(self) -> bool {
        matches!(
            self,
            Command::List | Command::Uidl | Command::Retr(_) | Command::Top(..)
        )
    }
}

/// A POP3 session over `S`.
pub struct Pop3<S: Read + Write> {
    stream: BufReader<S>,
    greeting: String,
    label: String,
}

/// The answer to a login: an `-ERR` is an authentication failure unless
/// the server is throttling (`[IN-USE]`, `[LOGIN-DELAY]`, "too many
/// connections": `Error::refused_by_server`) or marks it temporary (RFC
/// 3206 `[SYS/TEMP]`).
/// AUTH PLAIN's response (RFC 4616): no authorization identity, the
/// user and the password, in base64.
fn plain_token(user: &str, password: &str) -> String {
    B64.encode(format!("\0{user}\0{password}"))
}

fn login_status(mech: AuthMech, status: Status) -> Result<()> {
    match status {
        Status::Ok(_) => Ok(()),
        Status::Err(t) if crate::error::throttle_signal(&t).is_some() => {
            Err(Error::refused_by_server("login", &format!("-ERR {t}")))
        }
        Status::Err(t) if t.starts_with("[SYS/TEMP]") => {
            Err(Error::Server(format!("login: -ERR {t}")))
        }
        Status::Err(t) => Err(Error::Auth(format!("{mech}: -ERR {t}"))),
    }
}

/// `+OK` or `-ERR`, with the rest of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// `+OK ...`
    Ok(String),
    /// `-ERR ...`
    Err(String),
}

fn parse_status(line: &str) -> Result<Status> {
    if let Some(rest) = line.strip_prefix("+OK") {
        Ok(Status::Ok(rest.trim_start().to_string()))
    } else if let Some(rest) = line.strip_prefix("-ERR") {
        Ok(Status::Err(rest.trim_start().to_string()))
    } else {
        Err(Error::Protocol(format!(
            "expected +OK or -ERR, got {:?}",
            truncate(line, 80)
        )))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Lines of a multi-line reply such as LIST or UIDL: `number rest`, the
/// second token as the server sent its bytes (never converted lossily:
/// two different UIDLs must not become one).
pub fn parse_listing(block: &[u8]) -> Result<Vec<(u32, Vec<u8>)>> {
    block
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| {
            let bad = || {
                let shown = String::from_utf8_lossy(&l[..l.len().min(80)]).into_owned();
                Error::Protocol(format!("bad listing line {:?}", truncate(&shown, 80)))
            };
            let mut parts = l
                .split(|b| b.is_ascii_whitespace())
                .filter(|p| !p.is_empty());
            let n = parts
                .next()
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(bad)?;
            let rest = parts.next().ok_or_else(bad)?;
            Ok((n, rest.to_vec()))
        })
        .collect()
}

/// The `+OK` text of a STAT answer: the number of messages and their
/// octets (RFC 1939 section 5), or `None` when it is not that.
pub fn parse_stat(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.split_ascii_whitespace();
    let count = parts.next()?.parse().ok()?;
    let octets = parts.next()?.parse().ok()?;
    Some((count, octets))
}

/// The answer to `UIDL n` or `LIST n` (`n` and the id or size), when it
/// is about message `n`.
pub fn parse_one(text: &str, n: u32) -> Option<&str> {
    let mut parts = text.split_ascii_whitespace();
    let number: u32 = parts.next()?.parse().ok()?;
    (number == n).then_some(())?;
    parts.next()
}

/// A UIDL as RFC 1939 allows its characters: 0x21..=0x7E (the RFC's
/// 70-character limit is not enforced, as some servers exceed it; 512 is).
/// Anything else is not used as an id.
pub fn valid_uidl(id: &[u8]) -> Option<String> {
    if id.is_empty() || id.len() > 512 || !id.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return None;
    }
    String::from_utf8(id.to_vec()).ok()
}

/// The APOP digest: MD5 of the greeting's timestamp and the password.
pub fn apop_digest(timestamp: &str, password: &str) -> String {
    let digest = Md5::digest(format!("{timestamp}{password}").as_bytes());
    hex(&digest)
}

/// The CRAM-MD5 response to a decoded challenge (RFC 2195).
pub fn cram_md5_response(user: &str, password: &str, challenge: &[u8]) -> String {
    let mut mac =
        Hmac::<Md5>::new_from_slice(password.as_bytes()).expect("HMAC takes any key length");
    mac.update(challenge);
    format!("{user} {}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `<...>` timestamp in an APOP-capable greeting.
pub fn apop_timestamp(greeting: &str) -> Option<&str> {
    let start = greeting.find('<')?;
    let end = start + greeting[start..].find('>')?;
    let stamp = &greeting[start..=end];
    stamp.contains('@').then_some(stamp)
}

impl<S: Read + Write> Pop3<S> {
    /// Reads the server's greeting. `label` prefixes transcript lines.
    pub fn connect(stream: S, label: &str) -> Result<Pop3<S>> {
        let mut session = Pop3 {
            stream: BufReader::with_capacity(64 * 1024, stream),
            greeting: String::new(),
            label: label.to_string(),
        };
        match session.read_status()? {
            Status::Ok(text) => session.greeting = text,
            Status::Err(text) => {
                return Err(Error::refused_by_server(
                    "greeting",
                    &format!("-ERR {text}"),
                ))
            }
        }
        Ok(session)
    }

    /// Continues a session on a new stream (after STLS), keeping the
    /// greeting that was read before it.
    pub fn resume(stream: S, label: &str, greeting: String) -> Pop3<S> {
        Pop3 {
            stream: BufReader::with_capacity(64 * 1024, stream),
            greeting,
            label: label.to_string(),
        }
    }

    /// The greeting text after `+OK`.
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    fn io(&self, e: io::Error) -> Error {
        match e.kind() {
            io::ErrorKind::InvalidData => Error::Protocol(e.to_string()),
            _ => Error::net("POP3 session", e),
        }
    }

    /// Writes commands without waiting for answers (one write, so one TLS
    /// record for a whole pipelined batch).
    pub fn send(&mut self, commands: &[Command]) -> Result<()> {
        let mut wire = String::new();
        for c in commands {
            transcript::client(&self.label, c.wire().trim_end());
            wire.push_str(&c.wire());
        }
        self.write_raw(wire.as_bytes())
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        let stream = self.stream.get_mut();
        stream
            .write_all(bytes)
            .and_then(|_| stream.flush())
            .map_err(|e| Error::net("POP3 session", e))
    }

    /// Sends a line that holds a secret; the transcript shows `<redacted>`.
    fn send_secret(&mut self, shown: &str, line: &str) -> Result<()> {
        let shown = if shown.is_empty() {
            "<redacted>".to_string()
        } else {
            format!("{shown} <redacted>")
        };
        transcript::client(&self.label, &shown);
        self.write_raw(format!("{line}\r\n").as_bytes())
    }

    /// Reads one status line.
    pub fn read_status(&mut self) -> Result<Status> {
        let line = codec::read_reply(&mut self.stream).map_err(|e| self.io(e))?;
        transcript::server(&self.label, &line);
        parse_status(&line)
    }

    /// Reads a dot-terminated block of at most `max` bytes (LF endings).
    pub fn read_block(&mut self, out: &mut Vec<u8>, max: usize) -> Result<()> {
        codec::read_dot_block(&mut self.stream, out, max).map_err(|e| self.io(e))?;
        if transcript::enabled(&self.label) {
            transcript::server(&self.label, &transcript::elide(out));
        }
        Ok(())
    }

    /// Sends one command and expects `+OK`; `-ERR` becomes a server error.
    pub fn simple(&mut self, command: Command) -> Result<String> {
        self.send(&[command])?;
        match self.read_status()? {
            Status::Ok(t) => Ok(t),
            Status::Err(t) => Err(Error::Server(format!(
                "{}: -ERR {t}",
                command.wire().trim_end()
            ))),
        }
    }

    /// CAPA (RFC 2449). A server without CAPA gets empty capabilities.
    pub fn capa(&mut self) -> Result<Capabilities> {
        Ok(self.capa_text()?.0)
    }

    /// CAPA, and the answer's lines as the server sent them (none when
    /// it did not answer).
    pub fn capa_text(&mut self) -> Result<(Capabilities, Option<String>)> {
        self.write_raw(b"CAPA\r\n")?;
        transcript::client(&self.label, "CAPA");
        self.read_capa()
    }

    fn read_capa(&mut self) -> Result<(Capabilities, Option<String>)> {
        if let Status::Err(_) = self.read_status()? {
            return Ok((Capabilities::default(), None));
        }
        let mut block = Vec::new();
        self.read_block(&mut block, 64 * 1024)?;
        let text = String::from_utf8_lossy(&block).into_owned();
        Ok((Capabilities::parse(&text), Some(text)))
    }

    /// CAPA, `UTF8` when `utf8`, and `AUTH PLAIN` with its initial
    /// response, in one write (RFC 2449 PIPELINING; the caller knows from
    /// an earlier session that the server offers it, and PLAIN): one round
    /// trip less than CAPA, then the login. Returns CAPA's answer (as
    /// `capa_text`), UTF8's when sent, and the login's outcome, read in
    /// that order. A server that answers AUTH PLAIN with an empty
    /// challenge (no initial responses) gets the response then, as in
    /// `login`, when nothing was pipelined after it.
    ///
    /// `then`: commands of the TRANSACTION state sent in the same write,
    /// after AUTH PLAIN (single-line answers only); their answers are the
    /// caller's to read, after a login that succeeded. After one that
    /// failed with `-ERR` they are read here and dropped (a server that
    /// hung up meanwhile shows on the next command). An empty challenge
    /// then is an error that is not the server's answer to a login: the
    /// server read the next command as the response.
    #[allow(clippy::type_complexity)]
    pub fn capa_and_plain(
        &mut self,
        utf8: bool,
        user: &str,
        password: &str,
        then: &[Command],
    ) -> Result<(Capabilities, Option<String>, Option<Status>, Result<()>)> {
        debug_assert!(then.iter().all(|c| !c.is_multiline()));
        let token = plain_token(user, password);
        transcript::client(&self.label, "CAPA");
        let mut wire = String::from("CAPA\r\n");
        if utf8 {
            transcript::client(&self.label, "UTF8");
            wire.push_str(&Command::Utf8.wire());
        }
        transcript::client(&self.label, "AUTH PLAIN <redacted>");
        wire.push_str(&format!("AUTH PLAIN {token}\r\n"));
        for c in then {
            transcript::client(&self.label, c.wire().trim_end());
            wire.push_str(&c.wire());
        }
        self.write_raw(wire.as_bytes())?;
        let (caps, text) = self.read_capa()?;
        let utf8_status = if utf8 {
            Some(self.read_status()?)
        } else {
            None
        };
        let login = self.plain_answer(&token, !then.is_empty());
        if matches!(login, Err(Error::Auth(_))) {
            for _ in then {
                if self.read_status().is_err() {
                    break;
                }
            }
        }
        Ok((caps, text, utf8_status, login))
    }

    /// What the server answers `AUTH PLAIN` with its initial response;
    /// `pipelined`: commands were sent after it.
    fn plain_answer(&mut self, token: &str, pipelined: bool) -> Result<()> {
        let line = self.read_sasl_line()?;
        let status = match line.strip_prefix('+') {
            Some(_) if !line.starts_with("+OK") && pipelined => {
                return Err(Error::Protocol(
                    "the server asked for AUTH PLAIN's response after the initial one \
                     and read the next command as it"
                        .into(),
                ))
            }
            // No initial-response support: send it after the empty challenge.
            Some(_) if !line.starts_with("+OK") => {
                self.send_secret("", token)?;
                self.read_status()?
            }
            _ => parse_status(&line)?,
        };
        login_status(AuthMech::Plain, status)
    }

    /// STLS (RFC 2595). On `+OK`, returns the stream for the TLS handshake.
    /// Bytes the server sent after `+OK` and before the handshake are an
    /// attack (they would be read as replies later), so they are an error.
    pub fn stls(mut self) -> Result<S> {
        self.send_plain("STLS")?;
        match self.read_status()? {
            Status::Ok(_) => {}
            Status::Err(t) => {
                return Err(Error::Tls(format!(
                    "server refused STLS (-ERR {t}); not sending credentials"
                )))
            }
        }
        if !self.stream.buffer().is_empty() {
            return Err(Error::Tls(
                "server sent data after accepting STLS and before the TLS handshake; refusing to continue (possible injection attack)".into(),
            ));
        }
        Ok(self.stream.into_inner())
    }

    fn send_plain(&mut self, line: &str) -> Result<()> {
        transcript::client(&self.label, line);
        self.write_raw(format!("{line}\r\n").as_bytes())
    }

    /// Logs in with one mechanism. An `-ERR` here is an authentication
    /// failure unless the server marks it temporary (RFC 3206
    /// `[IN-USE]`, `[SYS/TEMP]`).
    pub fn login(&mut self, mech: AuthMech, user: &str, password: &str) -> Result<()> {
        let status = match mech {
            AuthMech::User => {
                self.send_plain(&format!("USER {user}"))?;
                match self.read_status()? {
                    Status::Ok(_) => {
                        self.send_secret("PASS", &format!("PASS {password}"))?;
                        self.read_status()?
                    }
                    err => err,
                }
            }
            AuthMech::Apop => {
                let stamp = apop_timestamp(&self.greeting)
                    .ok_or_else(|| Error::Auth("server does not offer APOP".into()))?
                    .to_string();
                self.send_secret(
                    &format!("APOP {user}"),
                    &format!("APOP {user} {}", apop_digest(&stamp, password)),
                )?;
                self.read_status()?
            }
            AuthMech::Plain => {
                let token = plain_token(user, password);
                self.send_secret("AUTH PLAIN", &format!("AUTH PLAIN {token}"))?;
                return self.plain_answer(&token, false);
            }
            AuthMech::Login => {
                self.send_plain("AUTH LOGIN")?;
                self.sasl_continue()?;
                self.send_secret("", &B64.encode(user))?;
                self.sasl_continue()?;
                self.send_secret("", &B64.encode(password))?;
                self.read_status()?
            }
            AuthMech::CramMd5 => {
                self.send_plain("AUTH CRAM-MD5")?;
                let challenge = self.sasl_continue()?;
                let challenge = B64
                    .decode(challenge.trim())
                    .map_err(|_| Error::Protocol("CRAM-MD5 challenge is not base64".into()))?;
                let response = cram_md5_response(user, password, &challenge);
                self.send_secret("", &B64.encode(response))?;
                self.read_status()?
            }
            AuthMech::ScramSha256 => self.scram(user, password)?,
            // The identity is the TLS client certificate: an empty
            // authorization identity ("=", RFC 5034 section 4), so the
            // server uses the one the certificate names.
            AuthMech::External => {
                self.send_plain("AUTH EXTERNAL =")?;
                let line = self.read_sasl_line()?;
                match line.strip_prefix('+') {
                    // No initial-response support: an empty response.
                    Some(_) if !line.starts_with("+OK") => {
                        self.send_plain("")?;
                        self.read_status()?
                    }
                    _ => parse_status(&line)?,
                }
            }
            AuthMech::XOAuth2 | AuthMech::OAuthBearer => {
                return Err(Error::Auth(format!(
                    "{mech} needs a token: use login_bearer"
                )))
            }
        };
        login_status(mech, status)
    }

    /// Logs in with XOAUTH2 or OAUTHBEARER (RFC 7628), sending `token`.
    /// Always in two steps, `AUTH XOAUTH2`, the server's `+ `, then the
    /// response on its own line: Microsoft's POP3 takes nothing else, and
    /// every server must take it (RFC 5034 section 4). A failure comes as
    /// a `+ ` challenge with the error details first; it is answered as
    /// RFC 7628 section 3.2.3 says (XOAUTH2: an empty line) to get the
    /// `-ERR`.
    pub fn login_bearer(
        &mut self,
        mech: AuthMech,
        user: &str,
        token: &str,
        host: &str,
        port: u16,
    ) -> Result<()> {
        let name = crate::source::imap::auth::sasl_name(mech);
        let response = B64.encode(crate::source::imap::auth::initial_response(
            mech, user, token, host, port,
        ));
        self.send_plain(&format!("AUTH {name}"))?;
        let line = self.read_sasl_line()?;
        let status = if line.starts_with('+') && !line.starts_with("+OK") {
            self.send_secret("", &response)?;
            let line = self.read_sasl_line()?;
            if line.starts_with('+') && !line.starts_with("+OK") {
                let answer = if mech == AuthMech::OAuthBearer {
                    "AQ=="
                } else {
                    ""
                };
                self.send_plain(answer)?;
                self.read_status()?
            } else {
                parse_status(&line)?
            }
        } else {
            parse_status(&line)?
        };
        login_status(mech, status)
    }

    /// The SCRAM-SHA-256 exchange (RFC 5034 continuations). The server
    /// must prove it knows the password before its `+OK` is believed; if
    /// it cannot, the exchange is cancelled (`*`) and it is an auth error.
    fn scram(&mut self, user: &str, password: &str) -> Result<Status> {
        let mut scram = ScramClient::new(user, password)?;
        let first = B64.encode(scram.client_first());
        self.send_secret("AUTH SCRAM-SHA-256", &format!("AUTH SCRAM-SHA-256 {first}"))?;
        let mut challenge = self.sasl_continue()?;
        if challenge.trim().is_empty() {
            // No initial-response support: send it after the empty challenge.
            self.send_secret("", &first)?;
            challenge = self.sasl_continue()?;
        }
        let answer = B64
            .decode(challenge.trim())
            .map_err(|_| Error::Auth("SCRAM-SHA-256: server-first message is not base64".into()))
            .and_then(|server_first| scram.client_final(&server_first));
        let client_final = match answer {
            Ok(m) => m,
            Err(e) => return self.sasl_cancel(e),
        };
        self.send_secret("", &B64.encode(client_final))?;
        let line = self.read_sasl_line()?;
        let server_final = match line.strip_prefix('+') {
            Some(rest) if !line.starts_with("+OK") => rest.trim(),
            // +OK without a server signature, or -ERR.
            _ => {
                return match parse_status(&line)? {
                    Status::Ok(_) => Err(ScramClient::unverified_error()),
                    err => Ok(err),
                }
            }
        };
        let verified = B64
            .decode(server_final)
            .map_err(|_| Error::Auth("SCRAM-SHA-256: server-final message is not base64".into()))
            .and_then(|m| scram.verify_server_final(&m));
        if let Err(e) = verified {
            return self.sasl_cancel(e);
        }
        self.send_secret("", "")?;
        self.read_status()
    }

    /// Cancels a SASL exchange (`*`, RFC 5034), reads the server's answer
    /// and returns `error`.
    fn sasl_cancel(&mut self, error: Error) -> Result<Status> {
        self.send_plain("*")?;
        let _ = self.read_sasl_line();
        Err(error)
    }

    fn read_sasl_line(&mut self) -> Result<String> {
        let line = codec::read_reply(&mut self.stream).map_err(|e| self.io(e))?;
        transcript::sasl_challenge(&self.label, &line);
        Ok(line)
    }

    /// Expects a `+ challenge` line and returns the challenge text.
    fn sasl_continue(&mut self) -> Result<String> {
        let line = self.read_sasl_line()?;
        if let Some(rest) = line.strip_prefix("+ ").or(line.strip_prefix('+')) {
            if !line.starts_with("+OK") {
                return Ok(rest.to_string());
            }
        }
        match parse_status(&line)? {
            Status::Err(t) => Err(Error::Auth(format!("-ERR {t}"))),
            Status::Ok(t) => Err(Error::Protocol(format!(
                "expected a SASL challenge, got +OK {t}"
            ))),
        }
    }

    /// Sends QUIT and waits for its answer: only then have deletions
    /// taken effect.
    pub fn quit(mut self) -> Result<()> {
        self.simple(Command::Quit).map(|_| ())
    }

    /// Sends QUIT without waiting for its answer, for a session that
    /// deleted nothing: the answer could only confirm deletions, so
    /// waiting for it is a round trip for nothing (a cron run with no new
    /// mail pays one less).
    pub fn quit_unanswered(mut self) -> Result<()> {
        self.send(&[Command::Quit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::codec::Script;

    fn written(p: Pop3<Script>) -> String {
        String::from_utf8(p.stream.into_inner().written).unwrap()
    }

    #[test]
    fn apop_digest_matches_rfc1939_example() {
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }

    #[test]
    fn cram_md5_matches_rfc2195_example() {
        let r = cram_md5_response(
            "tim",
            "tanstaaftanstaaf",
            b"<1896.697170952@postoffice.reston.mci.net>",
        );
        assert_eq!(r, "tim b913a602c7eda7a495b4e6e7334d3890");
    }

    #[test]
    fn capa_is_parsed() {
        let mut p = Pop3::connect(
            Script::new(
                "+OK hi\r\n+OK\r\nUIDL\r\nPIPELINING\r\nSASL PLAIN cram-md5\r\nSTLS\r\nLOGIN-DELAY 900\r\n.\r\n",
            ),
            "t",
        )
        .unwrap();
        let caps = p.capa().unwrap();
        assert!(caps.has("PIPELINING") && caps.has("STLS") && caps.has("UIDL"));
        assert!(caps.sasl.contains("CRAM-MD5"));
        assert_eq!(caps.login_delay, Some(900));
    }

    #[test]
    fn user_pass_and_auth_failure() {
        let mut p =
            Pop3::connect(Script::new("+OK hi\r\n+OK\r\n-ERR [AUTH] nope\r\n"), "t").unwrap();
        let e = p.login(AuthMech::User, "u", "pw").unwrap_err();
        assert!(matches!(e, Error::Auth(_)), "{e}");
        assert_eq!(written(p), "USER u\r\nPASS pw\r\n");
    }

    #[test]
    fn in_use_is_not_an_auth_failure() {
        let mut p = Pop3::connect(
            Script::new("+OK hi\r\n+OK\r\n-ERR [IN-USE] locked\r\n"),
            "t",
        )
        .unwrap();
        let e = p.login(AuthMech::User, "u", "pw").unwrap_err();
        assert_eq!(e.throttle(), Some(crate::error::Throttle::Busy), "{e}");
        let mut p = Pop3::connect(
            Script::new("+OK hi\r\n+OK\r\n-ERR [LOGIN-DELAY] wait\r\n"),
            "t",
        )
        .unwrap();
        let e = p.login(AuthMech::User, "u", "pw").unwrap_err();
        assert_eq!(
            e.throttle(),
            Some(crate::error::Throttle::LoginDelay(None)),
            "{e}"
        );
    }

    #[test]
    fn auth_plain_uses_initial_response_or_waits_for_challenge() {
        let mut p = Pop3::connect(Script::new("+OK hi\r\n+OK welcome\r\n"), "t").unwrap();
        p.login(AuthMech::Plain, "u", "pw").unwrap();
        assert_eq!(written(p), "AUTH PLAIN AHUAcHc=\r\n");
        let mut p = Pop3::connect(Script::new("+OK hi\r\n+ \r\n+OK welcome\r\n"), "t").unwrap();
        p.login(AuthMech::Plain, "u", "pw").unwrap();
        assert_eq!(written(p), "AUTH PLAIN AHUAcHc=\r\nAHUAcHc=\r\n");
    }

    #[test]
    fn cram_md5_exchange() {
        let challenge = B64.encode("<1896.697170952@postoffice.reston.mci.net>");
        let mut p = Pop3::connect(
            Script::new(format!("+OK hi\r\n+ {challenge}\r\n+OK in\r\n")),
            "t",
        )
        .unwrap();
        p.login(AuthMech::CramMd5, "tim", "tanstaaftanstaaf")
            .unwrap();
        let w = written(p);
        let expected = B64.encode("tim b913a602c7eda7a495b4e6e7334d3890");
        assert_eq!(w, format!("AUTH CRAM-MD5\r\n{expected}\r\n"));
    }

    #[test]
    fn apop_needs_a_timestamp() {
        let mut p = Pop3::connect(Script::new("+OK plain greeting\r\n"), "t").unwrap();
        assert!(p.login(AuthMech::Apop, "u", "pw").is_err());
        let mut p = Pop3::connect(
            Script::new("+OK POP3 <1896.697170952@dbc.mtview.ca.us>\r\n+OK\r\n"),
            "t",
        )
        .unwrap();
        p.login(AuthMech::Apop, "mrose", "tanstaaf").unwrap();
        assert_eq!(
            written(p),
            "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
        );
    }

    #[test]
    fn stls_refuses_injected_bytes() {
        let p = Pop3::connect(
            Script::new("+OK hi\r\n+OK begin TLS\r\n+OK injected\r\n"),
            "t",
        )
        .unwrap();
        let e = p.stls().unwrap_err();
        assert!(e.to_string().contains("after accepting STLS"), "{e}");
        let p = Pop3::connect(Script::new("+OK hi\r\n-ERR no\r\n"), "t").unwrap();
        assert!(matches!(p.stls().unwrap_err(), Error::Tls(_)));
        let p = Pop3::connect(Script::new("+OK hi\r\n+OK go\r\n"), "t").unwrap();
        assert!(p.stls().is_ok());
    }

    #[test]
    fn garbage_status_is_a_protocol_error() {
        let e = Pop3::connect(Script::new("HTTP/1.1 400\r\n"), "t")
            .err()
            .unwrap();
        assert!(matches!(e, Error::Protocol(_)));
    }

    #[test]
    fn listing_parses() {
        let l = parse_listing(b"1 120\n2 4000\n").unwrap();
        assert_eq!(l, vec![(1, b"120".to_vec()), (2, b"4000".to_vec())]);
        let l = parse_listing(b"1 a\xc3\xa9\r\n2  b\xff\r\n\r\n").unwrap();
        assert_eq!(l, vec![(1, b"a\xc3\xa9".to_vec()), (2, b"b\xff".to_vec())]);
        assert_eq!(valid_uidl(b"abc-1"), Some("abc-1".into()));
        for bad in [&b""[..], b"a\xc3\xa9", b"a\x7f", &[b'x'; 513]] {
            assert_eq!(valid_uidl(bad), None);
        }
        assert!(parse_listing(b"x 1\n").is_err());
    }
}
