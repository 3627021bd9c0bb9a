//! `max_connections_per_host`: a process-wide limit on the simultaneous
//! source connections to one mail server, shared by every account of a
//! run (`--jobs`) and by `mailretr watch` (its fetches and its IDLE
//! connections). An account that finds its server's slots taken waits
//! for one (a `Condvar`, no busy loop) instead of failing.
//!
//! A server is named by its host name as configured, compared without
//! case and without a trailing dot; the port is not part of it (a
//! provider's limit is usually per user and address, whatever the port).
//! When accounts on one host ask for different limits, the smallest
//! applies (from the first connection of the account that asks for it).
//!
//! When a server says it is throttling (see `Error::Throttled`), its limit
//! is lowered for the rest of the process to the number of connections
//! open to it at that moment (at least 1): the run goes on with what the
//! server takes.
//!
//! Only sources count: a destination that connects (SMTP, LMTP, IMAP)
//! takes no slot, so a source connection never waits for a destination
//! on the same host (which could wait for it in turn).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

/// The default `max_connections_per_host`: Dovecot's default
/// `mail_max_userip_connections` (10 per user, address and protocol), and
/// below Gmail's 15 per user. A server that takes fewer says so and the
/// limit is lowered (see `Slots::lower`).
pub const DEFAULT_LIMIT: usize = 10;

/// How often a waiter looks at its cancel condition (a stop signal).
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// What is known about one host.
#[derive(Debug, Default)]
struct Host {
    /// The smallest limit any account asked for.
    configured: Option<usize>,
    /// What a throttling server lowered it to.
    lowered: Option<usize>,
    /// Connections open (slots held).
    open: usize,
    /// `watch`'s IDLE places handed out (see `Slots::reserve_idle`).
    idle: usize,
    /// Whether a throttle was reported for it already.
    throttled: bool,
}

impl Host {
    fn limit(&self) -> usize {
        let configured = self.configured.unwrap_or(DEFAULT_LIMIT);
        self.lowered
            .map_or(configured, |l| l.min(configured))
            .max(1)
    }
}

/// The per-host slots of one process (`Slots::global`), or of a test.
#[derive(Debug, Default)]
pub struct Slots {
    hosts: Mutex<HashMap<String, Host>>,
    freed: Condvar,
}

/// A connection slot to a host, held while the connection is open; it is
/// given back when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    host: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut hosts = self.slots.lock();
        if let Some(h) = hosts.get_mut(&self.host) {
            h.open = h.open.saturating_sub(1);
        }
        drop(hosts);
        self.slots.freed.notify_all();
    }
}

/// One of `watch`'s IDLE places on a host (see `Slots::reserve_idle`).
#[derive(Debug)]
pub struct IdlePlace {
    slots: Arc<Slots>,
    host: String,
    limit: usize,
}

impl IdlePlace {
    /// A slot for the IDLE connection to (re)connect with: `acquire` on
    /// the place's host.
    pub fn slot(&self, cancelled: &dyn Fn() -> bool) -> Option<Slot> {
        self.slots.acquire(&self.host, self.limit, cancelled)
    }
}

impl Drop for IdlePlace {
    fn drop(&mut self) {
        let mut hosts = self.slots.lock();
        if let Some(h) = hosts.get_mut(&self.host) {
            h.idle = h.idle.saturating_sub(1);
        }
    }
}

/// The key a host's slots are kept under: the configured name, lower
/// case, without a trailing dot.
pub fn host_key(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl Slots {
    /// A fresh set (for tests; the program uses `global`).
    pub fn new() -> Arc<Slots> {
        Arc::new(Slots::default())
    }

    /// The process's slots.
    pub fn global() -> Arc<Slots> {
        static GLOBAL: LazyLock<Arc<Slots>> = LazyLock::new(Slots::new);
        GLOBAL.clone()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Host>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot to `host` whose accounts allow `limit` connections,
    /// waiting while all are taken. `None` when `cancelled` became true
    /// while waiting (a stop signal).
    pub fn acquire(
        self: &Arc<Self>,
        host: &str,
        limit: usize,
        cancelled: &dyn Fn() -> bool,
    ) -> Option<Slot> {
        let key = host_key(host);
        let mut hosts = self.lock();
        let mut logged = false;
        loop {
            let h = hosts.entry(key.clone()).or_default();
            h.configured = Some(h.configured.map_or(limit, |c| c.min(limit)).max(1));
            if h.open < h.limit() {
                h.open += 1;
                return Some(Slot {
                    slots: self.clone(),
                    host: key,
                });
            }
            if cancelled() {
                return None;
            }
            if !logged {
                log::debug!(
                    "{key}: all {} connections allowed are open; waiting for one",
                    h.limit()
                );
                logged = true;
            }
            hosts = self
                .freed
                .wait_timeout(hosts, CANCEL_CHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// After `host` said it is throttling: lowers its limit for the rest
    /// of the process to the connections open to it now (the caller has
    /// given its own slot back), at least 1. Returns the new limit, and
    /// whether this is the host's first throttle (to say so once).
    pub fn lower(&self, host: &str) -> (usize, bool) {
        let mut hosts = self.lock();
        let h = hosts.entry(host_key(host)).or_default();
        let now = h.open.max(1);
        h.lowered = Some(h.lowered.map_or(now, |l| l.min(now)));
        let first = !std::mem::replace(&mut h.throttled, true);
        (h.limit(), first)
    }

    /// The limit in force for `host` (`None` before any account used it).
    pub fn limit(&self, host: &str) -> Option<usize> {
        let hosts = self.lock();
        hosts
            .get(&host_key(host))
            .filter(|h| h.configured.is_some())
            .map(Host::limit)
    }

    /// Connections open to `host` now.
    pub fn open(&self, host: &str) -> usize {
        self.lock().get(&host_key(host)).map_or(0, |h| h.open)
    }

    /// `watch`: one more long-lived IDLE connection to `host`, if the
    /// host's IDLE connections (of every account) stay below its limit,
    /// so one slot is always left for fetching; `None` otherwise. The
    /// IDLE connection still takes a `Slot` (`acquire`) each time it
    /// connects.
    pub fn reserve_idle(self: &Arc<Self>, host: &str, limit: usize) -> Option<IdlePlace> {
        let key = host_key(host);
        let mut hosts = self.lock();
        let h = hosts.entry(key.clone()).or_default();
        h.configured = Some(h.configured.map_or(limit, |c| c.min(limit)).max(1));
        if h.idle + 1 < h.limit() {
            h.idle += 1;
            Some(IdlePlace {
                slots: self.clone(),
                host: key,
                limit,
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    /// N threads hammering one host never hold more than its limit at
    /// once, every one of them gets its turn, and other hosts (or the
    /// same host spelled otherwise) are counted where they belong.
    #[test]
    fn the_limit_is_respected_by_many_threads() {
        let slots = Slots::new();
        let open = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        thread::scope(|s| {
            for i in 0..12 {
                let (slots, open, most, done) = (&slots, &open, &most, &done);
                s.spawn(move || {
                    let host = if i % 2 == 0 {
                        "Mail.Example.com"
                    } else {
                        "mail.example.com."
                    };
                    for _ in 0..5 {
                        let slot = slots.acquire(host, 3, &|| false).unwrap();
                        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(2));
                        open.fetch_sub(1, Ordering::SeqCst);
                        drop(slot);
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 60);
        assert_eq!(most.load(Ordering::SeqCst), 3, "at most 3, and 3 were used");
        assert_eq!(slots.open("mail.example.com"), 0);
        // Another host has its own slots.
        let a: Vec<Slot> = (0..3)
            .map(|_| slots.acquire("mail.example.com", 3, &|| false).unwrap())
            .collect();
        let other = slots.acquire("pop.example.org", 3, &|| false);
        assert!(other.is_some());
        drop(a);
    }

    #[test]
    fn a_waiter_gets_a_freed_slot_and_a_cancelled_one_gives_up() {
        let slots = Slots::new();
        let held = slots.acquire("h", 1, &|| false).unwrap();
        assert!(slots.acquire("h", 1, &|| true).is_none(), "cancelled");
        thread::scope(|s| {
            let waiter = s.spawn(|| slots.acquire("h", 1, &|| false).is_some());
            thread::sleep(Duration::from_millis(50));
            assert!(!waiter.is_finished(), "waits while the slot is held");
            drop(held);
            assert!(waiter.join().unwrap());
        });
    }

    #[test]
    fn a_throttle_lowers_the_limit_to_what_is_open_and_never_below_one() {
        let slots = Slots::new();
        let held: Vec<Slot> = (0..4)
            .map(|_| slots.acquire("imap.example.com", 6, &|| false).unwrap())
            .collect();
        assert_eq!(slots.limit("IMAP.example.com"), Some(6));
        assert_eq!(slots.lower("imap.example.com"), (4, true));
        let more = AtomicUsize::new(0);
        thread::scope(|s| {
            s.spawn(|| {
                // A fifth waits until one of the four is given back.
                let _slot = slots.acquire("imap.example.com", 6, &|| false).unwrap();
                more.fetch_add(1, Ordering::SeqCst);
            });
            thread::sleep(Duration::from_millis(50));
            assert_eq!(more.load(Ordering::SeqCst), 0, "over the lowered limit");
            drop(held);
        });
        assert_eq!(more.load(Ordering::SeqCst), 1);
        // Nothing open: lowered to 1, not 0; it never goes up again.
        assert_eq!(slots.lower("imap.example.com"), (1, false));
        let _one = slots.acquire("imap.example.com", 6, &|| false).unwrap();
        assert!(slots.acquire("imap.example.com", 6, &|| true).is_none());
        assert_eq!(slots.limit("imap.example.com"), Some(1));
    }

    #[test]
    fn the_smallest_limit_asked_for_applies() {
        let slots = Slots::new();
        let _a = slots.acquire("h", 5, &|| false).unwrap();
        let _b = slots.acquire("h", 2, &|| false).unwrap();
        assert_eq!(slots.limit("h"), Some(2));
        assert!(slots.acquire("h", 5, &|| true).is_none());
    }

    #[test]
    fn idle_places_leave_one_slot_for_fetching() {
        let slots = Slots::new();
        let places: Vec<IdlePlace> = (0..5).filter_map(|_| slots.reserve_idle("h", 3)).collect();
        assert_eq!(places.len(), 2, "3 allowed: 2 IDLE, 1 for fetching");
        let idle = places[0].slot(&|| false).unwrap();
        assert_eq!(slots.open("h"), 1);
        drop(idle);
        drop(places);
        assert!(slots.reserve_idle("h", 3).is_some());
        assert!(slots.reserve_idle("single", 1).is_none(), "limit 1: none");
    }
}
