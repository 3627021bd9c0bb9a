//! The library's error type. Each error knows which exit code it maps to
//! and whether retrying later could help, so callers ask questions instead
//! of matching on insides.

use std::io;

use crate::exit::ExitCode;

/// A convenient alias for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while fetching and delivering mail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file or command line is wrong. The text names the file,
    /// line and key where it can.
    #[error("{0}")]
    Config(String),
    /// The config file holds a secret and others can read it.
    #[error("{0}")]
    UnsafePermissions(String),
    /// The connection could not be made or broke.
    #[error("{context}: {source}")]
    Network {
        /// What we were doing, e.g. `connecting to pop.example.com:995`.
        context: String,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The server did not answer in time.
    #[error("{0}: timed out")]
    Timeout(String),
    /// The TLS handshake failed, the certificate was not trusted, or a
    /// STARTTLS rule was broken.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server rejected our credentials, or none it offers are allowed.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server said something that does not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server answered a command with an error.
    #[error("server error: {0}")]
    Server(String),
    /// The server said it is throttling us (too many connections, or a
    /// POP3 `LOGIN-DELAY`): classified once here (`throttle_signal`),
    /// temporary. The session it ended had done nothing yet.
    #[error("{message}")]
    Throttled {
        /// What the server said, with what mailretr does about it.
        message: String,
        /// Which kind of throttle.
        throttle: Throttle,
    },
    /// A destination refused or failed to take a message.
    #[error("delivery to {destination} failed: {message}")]
    Delivery {
        /// The destination's name from the config.
        destination: String,
        /// What went wrong.
        message: String,
        /// What kind of failure it is (SPEC "What a failure does"):
        /// temporary (spool and retry), refused for good by the remote
        /// side (`on_refused` applies), or a local fault (nothing is
        /// deleted, nothing recorded; the next run tries again).
        failure: Failure,
    },
    /// A message the run left undone (refused and kept, or deferred
    /// before download): the report's line for it, which names the
    /// message, the destination and the cause once. It ends the run with
    /// exit 10.
    #[error("{line}")]
    Unfinished {
        /// The line, e.g. `message 7 in INBOX deferred before download
        /// (left for the next run): relay: RCPT TO:<a@b>: 451 4.2.0 busy`.
        line: String,
        /// Why it was left: refused for good, or failed for now.
        failure: Failure,
    },
    /// The state database could not be opened, read or written.
    #[error("state database {path}: {message}")]
    State {
        /// The database file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Another mailretr process holds the account's lock.
    #[error("{0}")]
    Locked(String),
    /// Anything else that went wrong locally.
    #[error("{0}")]
    Internal(String),
}

/// How a server throttles (see `throttle_signal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// Too many connections now (IMAP `[UNAVAILABLE]`, Dovecot's
    /// "Maximum number of connections from user+IP exceeded", POP3
    /// `[IN-USE]`): retried after a backoff within the run, with the
    /// host's connection limit lowered.
    Busy,
    /// POP3 `[LOGIN-DELAY]` (RFC 2449): not before this many seconds (the
    /// `LOGIN-DELAY` capability, when the server announced it) since the
    /// last login. Not retried in the run; remembered in the state.
    LoginDelay(Option<u64>),
}

/// Words in a server's refusal that say it is throttling connections
/// (lower case): servers say it in prose as often as with a code.
const THROTTLE_WORDS: &[&str] = &[
    "too many simultaneous connections",
    "too many connections",
    "maximum number of connections",
    "connection limit",
    "too many concurrent connections",
];

/// Whether a server's refusal (a greeting, a `NO`, a `BYE`, an `-ERR`) is
/// it throttling us, and how: the one place such texts are classified.
/// IMAP `[UNAVAILABLE]` (RFC 5530), POP3 `[IN-USE]` and `[LOGIN-DELAY]`
/// (RFC 2449), and the prose of Dovecot's `mail_max_userip_connections`
/// or Gmail's "Too many simultaneous connections".
pub fn throttle_signal(text: &str) -> Option<Throttle> {
    let upper = text.to_ascii_uppercase();
    if upper.contains("[LOGIN-DELAY]") {
        return Some(Throttle::LoginDelay(None));
    }
    let lower = text.to_ascii_lowercase();
    (upper.contains("[UNAVAILABLE]")
        || upper.contains("[IN-USE]")
        || THROTTLE_WORDS.iter().any(|w| lower.contains(w)))
    .then_some(Throttle::Busy)
}

/// The three kinds of delivery failure, each with its one consequence
/// (SPEC "What a failure does"). Every failure is classified exactly once,
/// by `Error::failure`; nothing else decides between spooling, acting on
/// `on_refused` and stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// May work later: SMTP/LMTP 4xx, MDA exit 75, a full disk, a refused
    /// or dropped connection. The message goes to the retry spool.
    Temporary,
    /// Refused for good by the remote side for this message or
    /// recipient: SMTP/LMTP 5xx, IMAP APPEND NO for the message, an MDA
    /// exiting with a sysexits code that means refusal. Only this is what
    /// `on_refused` acts on.
    Refused,
    /// Our side is broken: permissions, a read-only or failing file
    /// system, a path that is not a directory, an MDA that cannot start,
    /// is killed or exits with an undocumented code, a protocol error, a
    /// bug. Nothing is deleted or recorded as refused; the message stays
    /// where it is (server or spool) and the next run tries again.
    Local,
}

impl Failure {
    /// Of several recipients' failures, the one that decides for a
    /// message still held (the spool): a local fault or a temporary
    /// failure keeps it for another try; only when every one is a refusal
    /// is it refused. `Refused` for none.
    pub fn most_hopeful(failures: impl IntoIterator<Item = Failure>) -> Failure {
        failures
            .into_iter()
            .min_by_key(|f| match f {
                Failure::Local => 0,
                Failure::Temporary => 1,
                Failure::Refused => 2,
            })
            .unwrap_or(Failure::Refused)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Failure::Temporary => "temporary",
            Failure::Refused => "refused",
            Failure::Local => "local fault",
        })
    }
}

impl Error {
    /// A delivery failure at `destination`.
    pub fn delivery(
        destination: impl Into<String>,
        message: impl Into<String>,
        failure: Failure,
    ) -> Error {
        Error::Delivery {
            destination: destination.into(),
            message: message.into(),
            failure,
        }
    }

    /// What went wrong, without the destination's name for a delivery
    /// failure (`RCPT TO:<a@b>: 550 5.1.1 no such user`): for texts that
    /// name the destination themselves, so it is said once.
    pub fn detail(&self) -> String {
        match self {
            Error::Delivery { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// What went wrong for one `recipient`: the detail, after `<recipient>: `
    /// unless it names the recipient already (SMTP's `RCPT TO:<a@b>: ...`).
    pub fn detail_for(&self, recipient: &str) -> String {
        let detail = self.detail();
        if detail.contains(&format!("<{recipient}>")) {
            detail
        } else {
            format!("<{recipient}>: {detail}")
        }
    }

    /// The one failure classifier: what a delivery that ended in this
    /// error means for the message. Delivery errors carry the kind their
    /// destination determined from the protocol (a reply code, an exit
    /// status, an errno); any other error reaching delivery is a broken
    /// connection or server hiccup (temporary) or a fault on our side.
    pub fn failure(&self) -> Failure {
        match self {
            Error::Delivery { failure, .. } | Error::Unfinished { failure, .. } => *failure,
            Error::Network { .. }
            | Error::Timeout(_)
            | Error::Server(_)
            | Error::Throttled { .. }
            | Error::Locked(_) => Failure::Temporary,
            Error::Tls(_)
            | Error::Config(_)
            | Error::UnsafePermissions(_)
            | Error::Auth(_)
            | Error::Protocol(_)
            | Error::State { .. }
            | Error::Internal(_) => Failure::Local,
        }
    }

    /// Whether this is a refusal for good by the remote side, the only
    /// failure `on_refused` acts on.
    pub fn is_refusal(&self) -> bool {
        self.failure() == Failure::Refused
    }

    /// The fetchmail-compatible exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::Config,
            Error::UnsafePermissions(_) => ExitCode::UnsafePermissions,
            Error::Network { .. } | Error::Tls(_) => ExitCode::Network,
            Error::Timeout(_) | Error::Server(_) | Error::Throttled { .. } => ExitCode::Server,
            Error::Auth(_) => ExitCode::Auth,
            Error::Protocol(_) => ExitCode::Protocol,
            Error::Delivery { .. } | Error::Unfinished { .. } => ExitCode::Delivery,
            Error::Locked(_) => ExitCode::Locked,
            Error::State { .. } | Error::Internal(_) => ExitCode::Internal,
        }
    }

    /// Whether trying the same thing again later might work.
    pub fn is_transient(&self) -> bool {
        self.failure() == Failure::Temporary
    }

    /// A server's refusal `text` (said while `context`, e.g. `login`):
    /// `Throttled` when it says it is throttling (`throttle_signal`),
    /// otherwise a server error.
    pub fn refused_by_server(context: &str, text: &str) -> Error {
        match throttle_signal(text) {
            Some(throttle) => Error::Throttled {
                message: format!("the server is throttling connections: {context}: {text}"),
                throttle,
            },
            None => Error::Server(format!("{context}: {text}")),
        }
    }

    /// The throttle, when the server said it is throttling.
    pub fn throttle(&self) -> Option<Throttle> {
        match self {
            Error::Throttled { throttle, .. } => Some(*throttle),
            _ => None,
        }
    }

    /// Wraps an I/O error from talking to a server, telling a timeout from
    /// a broken connection.
    pub fn net(context: impl Into<String>, source: io::Error) -> Error {
        let context = context.into();
        match source.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout(context),
            _ => Error::Network { context, source },
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::State {
            path: String::from("(state)"),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_recognised_by_code_and_by_prose() {
        for busy in [
            "NO [UNAVAILABLE] Try again later",
            "* BYE Maximum number of connections from user+IP exceeded (mail_max_userip_connections=2)",
            "-ERR [IN-USE] Mailbox locked",
            "NO [ALERT] Too many simultaneous connections. (Failure)",
        ] {
            assert_eq!(throttle_signal(busy), Some(Throttle::Busy), "{busy}");
        }
        assert_eq!(
            throttle_signal("-ERR [LOGIN-DELAY] wait a while"),
            Some(Throttle::LoginDelay(None))
        );
        for not in [
            "NO [AUTHENTICATIONFAILED] Authentication failed.",
            "-ERR [AUTH] bad password",
            "NO [SERVERBUG] oops",
        ] {
            assert_eq!(throttle_signal(not), None, "{not}");
        }
        let e = Error::refused_by_server("login", "-ERR [IN-USE] locked");
        assert_eq!(e.throttle(), Some(Throttle::Busy));
        assert!(e.is_transient());
        assert_eq!(e.exit_code(), ExitCode::Server);
        assert_eq!(
            e.to_string(),
            "the server is throttling connections: login: -ERR [IN-USE] locked"
        );
        let e = Error::refused_by_server("login", "NO [SERVERBUG] oops");
        assert!(matches!(e, Error::Server(_)), "{e}");
    }

    #[test]
    fn a_detail_leaves_the_destination_to_whoever_names_it() {
        let rcpt = Error::delivery(
            "relay",
            "RCPT TO:<a@b>: 550 5.1.1 no such user",
            Failure::Refused,
        );
        assert_eq!(
            rcpt.to_string(),
            "delivery to relay failed: RCPT TO:<a@b>: 550 5.1.1 no such user"
        );
        assert_eq!(rcpt.detail(), "RCPT TO:<a@b>: 550 5.1.1 no such user");
        assert_eq!(
            rcpt.detail_for("a@b"),
            "RCPT TO:<a@b>: 550 5.1.1 no such user",
            "the recipient is named already"
        );
        let lmtp = Error::delivery("lmtp", "after DATA: 452 4.2.2 full", Failure::Temporary);
        assert_eq!(lmtp.detail_for("c@d"), "<c@d>: after DATA: 452 4.2.2 full");
        let net = Error::Timeout("reading from mx:25".into());
        assert_eq!(net.detail(), "reading from mx:25: timed out");
        let left = Error::Unfinished {
            line: "message 1 in INBOX deferred before download (left for the next run): relay: x"
                .into(),
            failure: Failure::Temporary,
        };
        assert_eq!(left.exit_code(), ExitCode::Delivery);
        assert!(left.to_string().starts_with("message 1 in INBOX deferred"));
    }
}
