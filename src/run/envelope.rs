//! Whom a message is for (its envelope, from the account's routing), and
//! what `on_refused` makes of a message refused for good.

use crate::audit;
use crate::config::{Account, Config, OnRefused};
use crate::message::{self, Envelope};
use crate::retry;
use crate::source::RemoteMessage;
use crate::store::commit::Disposition;
use crate::store::spool::GiveUp;

/// Whom a message is for, as the account's routing decides.
pub(crate) enum Addressing {
    /// Deliver with this envelope.
    Deliver(Envelope),
    /// Every recipient already had it (a `Delivered-To:` below the
    /// delivering MTA's own names them): a suspected mail loop. Left on
    /// the server and reported, never deleted.
    Loop(Vec<String>),
    /// Multidrop found no local recipient and `[general] postmaster` is
    /// not set: left on the server.
    Nobody(String),
}

/// Builds the envelope from a message's header block: the sender from
/// `Return-Path` (destinations fall back to their `sender`), the
/// recipients from multidrop routing or, single-drop, the account's user;
/// the folder (and its flags, once the body was fetched) from `remote`.
pub(crate) fn addressing(
    config: &Config,
    account: &Account,
    remote: &RemoteMessage,
    headers: &[u8],
) -> Addressing {
    let recipients = match &account.multidrop {
        None => vec![account.user.clone()],
        Some(multidrop) => {
            let routing = crate::route::route(headers, multidrop);
            if routing.recipients.is_empty() && !routing.looped.is_empty() {
                return Addressing::Loop(routing.looped);
            }
            if !routing.looped.is_empty() {
                log::warn!(
                    "{}: suspected mail loop: a Delivered-To already names {}; not delivered to them again",
                    account.name,
                    routing.looped.join(", ")
                );
            }
            if routing.recipients.is_empty() {
                match &config.general.postmaster {
                    Some(p) => vec![p.clone()],
                    None => {
                        return Addressing::Nobody(format!(
                            "no recipient in {} ({})",
                            multidrop.local_domains.join(", "),
                            routing
                                .found_in
                                .map_or("no envelope header".to_string(), |h| format!(
                                    "read from {h}"
                                ))
                        ))
                    }
                }
            } else {
                routing.recipients
            }
        }
    };
    Addressing::Deliver(Envelope {
        sender: message::return_path(headers),
        recipients,
        account: account.name.clone(),
        folder: remote.folder.clone(),
        mailbox: remote.mailbox.clone(),
        flags: remote.flags.clone(),
    })
}

/// What `on_refused` made of a message refused for good.
pub(crate) struct Disposed {
    /// What is committed.
    pub disposition: Disposition,
    /// The words for it, for the report.
    pub said: String,
    /// What the audit log says of it.
    pub audit: audit::Outcome,
}

/// How a message refused for good is disposed of, and the words for it.
pub(crate) fn on_refused(
    config: &Config,
    account: &Account,
    envelope: &Envelope,
    headers: &[u8],
    why: &str,
) -> Disposed {
    let refusal = |disposition, said: String, audit| Disposed {
        disposition,
        said,
        audit,
    };
    match account.on_refused {
        OnRefused::Keep => refusal(
            Disposition::RefusedKept(why.to_string()),
            "left on the server".into(),
            audit::Outcome::Refused,
        ),
        OnRefused::Delete => refusal(
            Disposition::Dropped(why.to_string()),
            "deleted (on_refused = \"delete\")".into(),
            audit::Outcome::Refused,
        ),
        OnRefused::Bounce => match bounce(config, account, envelope, headers, why) {
            Ok(()) => refusal(
                Disposition::Dropped(why.to_string()),
                "bounced to the sender and deleted".into(),
                audit::Outcome::Bounced,
            ),
            Err(e) => refusal(
                Disposition::RefusedKept(why.to_string()),
                format!("left on the server (the bounce could not be sent: {e})"),
                audit::Outcome::Refused,
            ),
        },
    }
}

/// Sends a bounce (the headers only, as a DSN) to the envelope sender, or
/// to the postmaster for a message with the null sender.
fn bounce(
    config: &Config,
    account: &Account,
    envelope: &Envelope,
    headers: &[u8],
    why: &str,
) -> crate::Result<()> {
    let destination = account.deliver_to.join(", ");
    // The addresses the destinations were asked to take: a single-drop
    // destination's `recipient`, not the account's user (which need not
    // even be an address).
    let mut recipients: Vec<String> = Vec::new();
    for name in &account.deliver_to {
        let owed = match config.destinations.get(name).and_then(|d| d.recipient()) {
            Some(r) => vec![r.to_string()],
            None => envelope.recipients.clone(),
        };
        for r in owed {
            if !recipients.contains(&r) {
                recipients.push(r);
            }
        }
    }
    let undelivered = retry::Undelivered {
        account: &account.name,
        folder: &envelope.folder,
        destination: &destination,
        sender: envelope.sender.as_deref(),
        recipients: &recipients,
        arrived: retry::now(),
        in_spool: false,
        message: message::header_block(headers),
    };
    retry::send_bounce(
        config,
        Some(account),
        &undelivered,
        &GiveUp::Refused(why.to_string()),
    )
}

/// A digest of everything that decides where an account's mail goes and
/// what a refusal does: its destinations' config, `on_refused`, its
/// routing, its rules and filter command. A refusal recorded under another digest no longer keeps a
/// message from being tried again.
pub(crate) fn delivery_fingerprint(config: &Config, account: &Account) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for name in &account.deliver_to {
        h.update(name.as_bytes());
        h.update(format!("{:?}", config.destinations.get(name)).as_bytes());
    }
    h.update(format!("{:?}", account.on_refused).as_bytes());
    h.update(format!("{:?}", account.multidrop).as_bytes());
    // Rules and the filter command decide what is left on the server: a
    // change asks about those messages again. (Left out when unset, so
    // accounts without them keep their digest.)
    if account.filter.is_set() {
        h.update(format!("{:?}", account.filter).as_bytes());
    }
    let digest = h.finalize();
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}
