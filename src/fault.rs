//! Fault injection for the crash tests: named points in the durable order
//! where a debug build can be told to die as if by `kill -9`. In release
//! builds `point` compiles to nothing.
//!
//! `MAILRETR_FAULT=NAME:N` kills the process with SIGKILL the N-th time
//! (1-based) the point NAME is reached. The crash tests in `tests/`
//! (which run the debug binary) use it to stop a fetch between any two
//! durable steps and check that the next run loses nothing and delivers
//! nothing twice.

/// Marks a place where a crash must be survivable.
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    debug::hit(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

#[cfg(debug_assertions)]
mod debug {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);

    pub fn hit(name: &str) {
        let target = TARGET.get_or_init(|| {
            let spec = std::env::var("MAILRETR_FAULT").ok()?;
            let (point, n) = spec.rsplit_once(':')?;
            Some((point.to_string(), n.parse().ok()?))
        });
        let Some((point, n)) = target else { return };
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n {
            // SAFETY: kill(2) on our own pid; SIGKILL cannot be handled, so
            // nothing runs after this: exactly what a crash looks like.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
