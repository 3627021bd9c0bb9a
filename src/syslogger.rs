//! `[general] log = "syslog"` (or `"both"`): warnings, errors and the
//! per-account summaries also go to syslog, facility mail, ident
//! `mailretr`, as RFC 3164 lines over the local socket (`/dev/log`), the
//! way fetchmail's `set syslog` does. Debug and trace lines (the
//! protocol transcript) never go there; no line mailretr writes holds a
//! secret.
//!
//! `MAILRETR_SYSLOG_SOCKET` names another unix datagram socket instead
//! (the tests bind one; a container can point it at a mounted socket).

use std::sync::Mutex;

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// The connection, once `open` succeeded.
static SYSLOG: Mutex<Option<Logger<LoggerBackend, Formatter3164>>> = Mutex::new(None);

/// The environment variable naming the socket to use instead of the
/// system's.
pub const SOCKET_ENV: &str = "MAILRETR_SYSLOG_SOCKET";

fn connect() -> syslog::Result<Logger<LoggerBackend, Formatter3164>> {
    let formatter = Formatter3164 {
        facility: Facility::LOG_MAIL,
        hostname: None,
        process: "mailretr".into(),
        pid: std::process::id(),
    };
    match std::env::var_os(SOCKET_ENV) {
        Some(path) => syslog::unix_custom(formatter, path),
        None => syslog::unix(formatter),
    }
}

/// Connects to syslog; the error says why not (no syslog daemon).
pub fn open() -> Result<(), String> {
    let logger = connect().map_err(|e| format!("cannot connect to syslog: {e}"))?;
    *SYSLOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(logger);
    Ok(())
}

/// Whether `open` succeeded.
pub fn is_open() -> bool {
    SYSLOG.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Sends one line at `level` (error → mail.err, warn → mail.warning,
/// info → mail.info; debug and trace are not sent). A send that fails
/// (syslogd restarted) reconnects once; a line that still cannot be sent
/// is dropped (stderr has it, or nobody asked for it there).
pub fn send(level: log::Level, line: &str) {
    let mut guard = SYSLOG.lock().unwrap_or_else(|e| e.into_inner());
    let Some(logger) = guard.as_mut() else {
        return;
    };
    let send = |logger: &mut Logger<LoggerBackend, Formatter3164>| match level {
        log::Level::Error => logger.err(line),
        log::Level::Warn => logger.warning(line),
        log::Level::Info => logger.info(line),
        log::Level::Debug | log::Level::Trace => Ok(()),
    };
    if send(logger).is_err() {
        if let Ok(mut fresh) = connect() {
            let _ = send(&mut fresh);
            *logger = fresh;
        }
    }
}
