//! Where mail comes from. A `Source` lists what is on the server, hands
//! over messages one at a time (pipelining or batching underneath as its
//! protocol allows), and deletes a message only when told to, which the
//! fetch loop in `crate::fetch` does after the delivery is committed.

pub mod imap;
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
    /// The folder relative to the server's personal namespace, one
    /// decoded name per level; empty for INBOX and POP3 (see
    /// `Envelope::mailbox`).
    pub mailbox: Vec<String>,
    /// Its flags as Maildir info letters (`message::flags_to_info`), as
    /// the server had them when the body was fetched: set by
    /// `Source::next_message` (IMAP), empty before and for POP3.
    pub flags: String,
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
    /// What the store should remember of the folder now (IMAP): the run
    /// commits these; sources only read the seen-state.
    pub updates: Vec<FolderUpdate>,
}

/// A change to what the state store remembers of an IMAP folder, returned
/// by a source for the run to commit, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderUpdate {
    /// The folder's UIDVALIDITY and how far it is dealt with; `last_uid`
    /// never moves backwards for the same UIDVALIDITY.
    State {
        /// The folder's name in the config.
        folder: String,
        /// Its state.
        state: FolderState,
    },
    /// The server renumbered the folder: carry the delivered messages
    /// found again (`matches`, old UID to new) over to the new
    /// UIDVALIDITY, and forget the rest of the old one.
    Rekey {
        /// The folder's name in the config.
        folder: String,
        /// The UIDVALIDITY the records were made under.
        old_uidvalidity: u32,
        /// The folder's UIDVALIDITY now.
        new_uidvalidity: u32,
        /// Old UID to new UID.
        matches: Vec<(u32, u32)>,
    },
}

/// What the state store remembers of an IMAP folder between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderState {
    /// The folder's UIDVALIDITY when it was last scanned.
    pub uidvalidity: u32,
    /// Every UID up to this one has been dealt with (delivered, or
    /// deliberately passed over); only higher UIDs need asking about.
    pub last_uid: u32,
}

/// What is remembered of a delivered message so that it can be
/// recognised after the server renumbers its folder (a UIDVALIDITY change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFingerprint {
    /// The UID it had.
    pub uid: u32,
    /// The size the server reported.
    pub size: u64,
    /// Its `Message-ID`, if it had one.
    pub message_id: Option<String>,
    /// `crate::message::header_hash` of its header, when recorded.
    pub header_hash: Option<String>,
}

/// The seen-state a source consults while listing, implemented by the
/// state store: read-only (what a source would change, it returns as
/// `FolderUpdate`s for the run to commit). Sources ask for only what they
/// need: POP3 `is_seen`/`seen_size`; IMAP works per folder and
/// UIDVALIDITY with the rest. The IMAP methods have do-nothing defaults so
/// that a test index can leave them out (the source then simply lists
/// more).
pub trait SeenIndex {
    /// Whether the message with this stable id in this folder was delivered.
    fn is_seen(&mut self, folder: &str, uid: &str) -> Result<bool>;

    /// POP3: the size recorded when the message with this id was
    /// delivered, if it was. The default knows no sizes (0).
    fn seen_size(&mut self, folder: &str, uid: &str) -> Result<Option<u64>> {
        Ok(self.is_seen(folder, uid)?.then_some(0))
    }

    /// POP3: `seen_size` for one id, when the scan asks about no other
    /// (the STAT shortcut's last message): an index may look it up alone
    /// rather than read every id.
    fn seen_size_one(&mut self, folder: &str, uid: &str) -> Result<Option<u64>> {
        self.seen_size(folder, uid)
    }

    /// POP3: how many messages of `folder` are recorded as delivered and
    /// their recorded octets, when every one has a recorded size; `None`
    /// otherwise. The default knows none.
    fn recorded_totals(&mut self, _folder: &str) -> Result<Option<(u64, u64)>> {
        Ok(None)
    }

    /// How many runs of the account the state recorded before this one.
    fn runs_before(&mut self) -> Result<u64> {
        Ok(0)
    }

    /// IMAP: the folder's recorded state, if it was scanned before.
    fn folder_state(&mut self, _folder: &str) -> Result<Option<FolderState>> {
        Ok(None)
    }

    /// IMAP: which of `uids` were delivered under this UIDVALIDITY.
    fn seen_among(
        &mut self,
        _folder: &str,
        _uidvalidity: u32,
        _uids: &[u32],
    ) -> Result<std::collections::HashSet<u32>> {
        Ok(Default::default())
    }

    /// IMAP: the UIDs recorded as refused for good (kept on the server)
    /// or as over `max_size` under this UIDVALIDITY: dealt with for now,
    /// so the folder's `last_uid` may move past them (oversized ones are
    /// asked about again by UID).
    fn passed_uids(&mut self, _folder: &str, _uidvalidity: u32) -> Result<Vec<u32>> {
        Ok(Vec::new())
    }

    /// IMAP: UIDs that were skipped for being over `max_size`, to be looked
    /// at again (the limit may have changed).
    fn oversized_uids(&mut self, _folder: &str, _uidvalidity: u32) -> Result<Vec<u32>> {
        Ok(Vec::new())
    }

    /// IMAP: what was recorded of the messages delivered under an old
    /// UIDVALIDITY, for re-matching after the server renumbered.
    fn seen_fingerprints(
        &mut self,
        _folder: &str,
        _uidvalidity: u32,
    ) -> Result<Vec<SeenFingerprint>> {
        Ok(Vec::new())
    }
}

/// A message and its header block (LF line endings), from
/// `Source::fetch_headers`.
pub type MessageHeader = (RemoteMessage, Vec<u8>);

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

    /// Tells the source a message's delivery was committed (before any
    /// `delete`), e.g. so IMAP can set `\Seen` with `mark_seen`. Nothing
    /// on the server may change for a message before this.
    fn delivered(&mut self, _message: &RemoteMessage) -> Result<()> {
        Ok(())
    }

    /// At the end of a run, after every commit: how far its folders are
    /// dealt with now, for the run to record (IMAP: each folder's last_uid
    /// moves past the UIDs at its start that are all delivered or passed
    /// over, so the next run asks about fewer). Never past a message still
    /// to fetch.
    fn settle(&mut self) -> Vec<FolderUpdate> {
        Vec::new()
    }

    /// Headers first: the header blocks (LF line endings) of `messages`,
    /// without their bodies (POP3 `TOP n 0`, IMAP `BODY.PEEK[HEADER]`),
    /// so the fetch loop can ask SMTP/LMTP destinations about the
    /// envelope before downloading a body. Messages gone from the server
    /// are left out. `None` when the source cannot do this; the fetch
    /// loop then downloads whole messages.
    fn fetch_headers(&mut self, _messages: &[RemoteMessage]) -> Result<Option<Vec<MessageHeader>>> {
        Ok(None)
    }

    /// IMAP QUOTA (RFC 9208), when the server offers it: the usage of
    /// INBOX's quota root (`GETQUOTAROOT INBOX`). `None` otherwise.
    fn quota(&mut self) -> Result<Option<crate::store::Quota>> {
        Ok(None)
    }

    /// Deletes a message from the server. Call only after its delivery was
    /// committed; the deletion may take effect only at `finish`.
    fn delete(&mut self, message: &RemoteMessage) -> Result<()>;

    /// Ends the session politely, making deletions take effect. After an
    /// error the source still tries to commit deletions already asked for.
    fn finish(&mut self) -> Result<()>;

    /// After `finish`: the messages whose deletion the server confirmed
    /// (POP3: `DELE` answered `+OK` and `QUIT` completed). Their ids may be
    /// handed out again for new mail, so the run forgets them.
    fn confirmed_deletions(&mut self) -> Vec<RemoteMessage> {
        Vec::new()
    }
}
