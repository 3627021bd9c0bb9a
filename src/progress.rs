//! Progress bars for long downloads: one per account (messages, bytes,
//! rate, ETA), drawn with indicatif on a terminal only. The binary calls
//! [`enable`] when stderr is a TTY and the user did not ask for quiet or
//! a transcript; otherwise every bar is a no-op, so nothing is drawn on a
//! pipe or under cron. A bar appears only once a download has run for
//! [`SHOW_AFTER`], so short runs stay silent.
//!
//! Anything else written to stderr while bars may be drawn goes through
//! [`suspend`], so lines and bars do not garble each other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long a download runs before its bar is shown.
pub const SHOW_AFTER: Duration = Duration::from_millis(700);

static ENABLED: AtomicBool = AtomicBool::new(false);
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Turns progress bars on (stderr must be a terminal).
pub fn enable() {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    ENABLED.store(true, Ordering::Relaxed);
}

/// Runs `f` (which writes to stderr) with the bars cleared, so its output
/// is not mixed into them.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(bars) if ENABLED.load(Ordering::Relaxed) => bars.suspend(f),
        _ => f(),
    }
}

/// One account's download.
#[derive(Debug)]
pub struct AccountProgress {
    bar: Option<ProgressBar>,
    shown: bool,
    started: Instant,
    messages: u64,
    total_messages: u64,
}

impl AccountProgress {
    /// Starts tracking a download of `messages` messages of `bytes` bytes
    /// (the sizes the server reported).
    pub fn start(account: &str, messages: u64, bytes: u64) -> AccountProgress {
        let bar = (ENABLED.load(Ordering::Relaxed) && messages > 0).then(|| {
            let bar = ProgressBar::with_draw_target(Some(bytes), ProgressDrawTarget::hidden());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:25}] {msg} {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(account.to_string());
            bar.set_message(format!("0/{messages} msgs"));
            bar
        });
        AccountProgress {
            bar,
            shown: false,
            started: Instant::now(),
            messages: 0,
            total_messages: messages,
        }
    }

    /// Counts one message of `bytes` bytes as done.
    pub fn message_done(&mut self, bytes: u64) {
        let Some(bar) = &self.bar else { return };
        self.messages += 1;
        bar.inc(bytes);
        bar.set_message(format!("{}/{} msgs", self.messages, self.total_messages));
        if !self.shown && self.started.elapsed() >= SHOW_AFTER {
            if let Some(bars) = BARS.get() {
                let bar = bars.add(bar.clone());
                bar.tick();
            }
            self.shown = true;
        }
    }
}

impl Drop for AccountProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Some(bars) = BARS.get() {
                bars.remove(&bar);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_progress_is_a_no_op() {
        let mut p = AccountProgress::start("a", 3, 300);
        assert!(p.bar.is_none() || ENABLED.load(Ordering::Relaxed));
        p.message_done(100);
        assert_eq!(suspend(|| 7), 7);
    }
}
