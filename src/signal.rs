//! Signals, turned into flags the rest of the program polls at safe
//! points. SIGINT and SIGTERM ask for a stop: `fetch` finishes the
//! message in hand, commits it and logs out; `watch` winds every account
//! down and exits 0. A second SIGINT or SIGTERM while the first is being
//! honoured ends the process at once (exit 130), for the user who does
//! not want to wait for a slow server. SIGHUP (installed by `watch` only)
//! asks for the config to be reloaded.
//!
//! The flags are process-wide because signals are: a library caller that
//! wants to stop a run without a signal calls [`request_stop`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::error::{Error, Result};

static STOP: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));
static RELOAD: LazyLock<Arc<AtomicBool>> = LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// Exit status when a second stop signal cuts the polite stop short
/// (128 + SIGINT, as shells report it).
const IMPATIENT_EXIT: i32 = 130;

/// Installs the SIGINT and SIGTERM handlers. Call once, early.
pub fn install_stop_handlers() -> Result<()> {
    for signal in [SIGINT, SIGTERM] {
        // Registered first, so it sees the flag as it was before this
        // delivery: only a second signal exits at once.
        signal_hook::flag::register_conditional_shutdown(signal, IMPATIENT_EXIT, STOP.clone())
            .and_then(|_| signal_hook::flag::register(signal, STOP.clone()))
            .map_err(|e| Error::Internal(format!("cannot install a signal handler: {e}")))?;
    }
    Ok(())
}

/// Installs the SIGHUP handler (`watch`: reload the config).
pub fn install_reload_handler() -> Result<()> {
    signal_hook::flag::register(SIGHUP, RELOAD.clone())
        .map(|_| ())
        .map_err(|e| Error::Internal(format!("cannot install a signal handler: {e}")))
}

/// Whether a stop was asked for (SIGINT, SIGTERM or [`request_stop`]).
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// How long ago a stop was first noticed (by this or an earlier call),
/// if one was asked for. Reads waiting on a slow server poll it, so a
/// stop is honoured within a few seconds even inside a read.
pub fn stop_age() -> Option<std::time::Duration> {
    static NOTICED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    stop_requested().then(|| NOTICED.get_or_init(std::time::Instant::now).elapsed())
}

/// Asks every running fetch and watch to stop, as SIGTERM would.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a reload was asked for since the last call; clears the request.
pub fn take_reload_request() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}
