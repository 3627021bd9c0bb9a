//! Where mail comes from. A `Source` lists what is on the server, hands
//! over messages one at a time (pipelining or batching underneath as its
//! protocol allows), and deletes a message only when told to, which the
//! fetch loop in `crate::fetch` does after the delivery is committed.

pub mod pop3;

use crate::error::Result;

/// A message on the server, identified so that it can be recognised on
/// a later run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMessage {
    /// The folder it is in (`INBOX` for POP3).
    pub folder: String,
    /// The stable id: the POP3 UIDL, or the IMAP UID as text. `None` when
    /// the server offers no stable id (POP3 without UIDL).
    pub uid: Option<String>,
    /// The IMAP UIDVALIDITY of the folder; `None` for POP3.
    pub uidvalidity: Option<u32>,
    /// The size the server reports.
    pub size: u64,
    /// The POP3 message number or IMAP UID used in commands this session.
    pub number: u32,
}

/// What the fetch loop learned from listing a folder.
#[derive(Debug, Default)]
pub struct Scan {
    /// Messages not yet seen, in the order they will be fetched.
    pub new: Vec<RemoteMessage>,
    /// Messages already delivered on an earlier run but still on the
    /// server (a run that was interrupted before deleting them).
    pub seen_on_server: Vec<RemoteMessage>,
    /// Every stable id present in the folder, when the listing is complete
    /// (used to forget ids of messages that are gone).
    pub present: Option<Vec<String>>,
}

/// The seen-state a source consults while listing, implemented by the
/// state store. Sources ask for only what they need.
pub trait SeenIndex {
    /// Whether the message with this stable id in this folder was delivered.
    fn is_seen(&mut self, folder: &str, uid: &str) -> Result<bool>;
}

/// A mailbox to fetch from.
pub trait Source {
    /// `POP3`, `POP3S`, `IMAP`, `IMAPS`: for the `Received:` header.
    fn protocol_name(&self) -> &str;

    /// Lists the folders' contents against the seen-state. With
    /// `fetch_all`, every message counts as new.
    fn scan(&mut self, seen: &mut dyn SeenIndex, fetch_all: bool) -> Result<Vec<Scan>>;

    /// Queues messages for retrieval, in order. The source may start
    /// asking the server for several at once.
    fn retrieve(&mut self, messages: Vec<RemoteMessage>) -> Result<()>;

    /// The next queued message and its bytes (LF line endings), or `None`
    /// when the queue is done.
    fn next_message(&mut self) -> Result<Option<(RemoteMessage, Vec<u8>)>>;

    /// Deletes a message from the server. Call only after its delivery was
    /// committed; the deletion may take effect only at `finish`.
    fn delete(&mut self, message: &RemoteMessage) -> Result<()>;

    /// Ends the session politely, making deletions take effect. After an
    /// error the source still tries to commit deletions already asked for.
    fn finish(&mut self) -> Result<()>;
}
