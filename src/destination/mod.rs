//! Where mail goes. Every destination type implements `Destination`; the
//! fetch loop builds a `Vec<Box<dyn Destination>>` from the config and
//! hands each message to every destination the account names. A
//! destination returns only when the message is durably stored (or has
//! failed), and says through `Error::is_transient` whether trying again
//! later could help.

pub mod maildir;

use crate::config::DestinationConfig;
use crate::error::Result;
use crate::message::Envelope;

/// A place that accepts messages.
pub trait Destination: Send {
    /// The destination's name from the config.
    fn name(&self) -> &str;

    /// Stores one message (LF line endings) durably. On error the message
    /// must not count as delivered.
    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<()>;
}

/// Builds a destination from its config.
pub fn open(
    name: &str,
    config: &DestinationConfig,
    hostname: &str,
) -> Result<Box<dyn Destination>> {
    match config {
        DestinationConfig::Maildir { path } => Ok(Box::new(maildir::Maildir::new(
            name,
            path.clone(),
            hostname,
        ))),
    }
}
