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
    /// A destination refused or failed to take a message.
    #[error("delivery to {destination} failed: {message}")]
    Delivery {
        /// The destination's name from the config.
        destination: String,
        /// What went wrong.
        message: String,
        /// Whether a later attempt may succeed (SMTP 4xx, EX_TEMPFAIL, disk full).
        transient: bool,
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

impl Error {
    /// The fetchmail-compatible exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Config(_) => ExitCode::Config,
            Error::UnsafePermissions(_) => ExitCode::UnsafePermissions,
            Error::Network { .. } | Error::Tls(_) => ExitCode::Network,
            Error::Timeout(_) | Error::Server(_) => ExitCode::Server,
            Error::Auth(_) => ExitCode::Auth,
            Error::Protocol(_) => ExitCode::Protocol,
            Error::Delivery { .. } => ExitCode::Delivery,
            Error::Locked(_) => ExitCode::Locked,
            Error::State { .. } | Error::Internal(_) => ExitCode::Internal,
        }
    }

    /// Whether trying the same thing again later might work.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. } | Error::Timeout(_) | Error::Server(_) | Error::Locked(_) => true,
            Error::Delivery { transient, .. } => *transient,
            _ => false,
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
