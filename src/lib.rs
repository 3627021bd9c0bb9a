//! mailretr: a one-shot batch mail retriever. It fetches mail from POP3
//! and IMAP accounts, delivers it durably, remembers what it has seen, and
//! deletes from the server only after that.
//!
//! The data flow follows the module layout: `config` → `source` (POP3,
//! IMAP) → `message` and its envelope → `destination` → `state`, tied
//! together in the durable order by `run`. `backends` adds accounts from
//! SQL and LDAP, `report` writes each account's result to a table.

pub mod audit;
pub mod backends;
pub mod bounce;
pub mod child;
pub mod cli;
pub mod codec;
pub mod config;
pub mod destination;
pub mod error;
pub mod exit;
pub mod fault;
pub mod filter;
#[doc(hidden)]
pub mod fuzzing;
pub mod lock;
pub mod message;
pub mod metrics;
pub mod mime7bit;
pub mod net;
pub mod oauth;
pub mod outgoing;
pub mod progress;
pub mod queue;
pub mod report;
pub mod retention;
pub mod retry;
pub mod route;
pub mod run;
pub mod scram;
pub mod secret;
pub mod shard;
pub mod signal;
pub mod slots;
pub mod source;
pub mod status;
pub mod store;
pub mod syslogger;
pub mod transcript;
pub mod watch;

pub use error::{Error, Result};
pub use exit::ExitCode;
