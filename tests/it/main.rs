//! mailretr's integration tests: one binary, so one real Dovecot (started
//! on first use by `support::Dovecot::shared`) serves every test, and the
//! binary is built and linked once. Each module runs the real `mailretr`
//! binary against real servers from `tests/support` (Dovecot, aiosmtpd,
//! procmail) and, for what a real server will not do, scripted fakes.

#[path = "../support/mod.rs"]
mod support;

mod backends;
mod compress;
mod connections;
mod crash;
mod dedup;
mod destinations;
mod destinations_tls;
mod docs;
mod faults;
mod filter;
mod folders;
mod fuzz_corpus;
mod harness_smoke;
mod hostile;
mod imap;
mod metrics;
mod nomail;
mod oauth;
mod operability;
mod parallel;
mod pop3;
mod retention;
mod routing;
mod sendmail;
mod servers;
mod servers_real;
mod shards;
mod smtp8bit;
mod spool;
mod throttle;
mod tls_client;
mod tunnel;
mod watch;
