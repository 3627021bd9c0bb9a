//! `[outgoing]`: where `mailretr sendmail` sends what it queues. A
//! default `relay` (an smtp destination), `identities` that pick another
//! relay (and optionally force the envelope sender) by the sender's
//! address or domain, `local` (an mda destination) for recipients without
//! '@', and the `delay` before the background attempt. Every name is
//! checked against the destinations here, so a typo is an error naming the
//! file, line and key before anything is queued or sent.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{parse_duration, Ctx, DestinationConfig};
use crate::error::Result;
use crate::message::is_smtp_address;

/// `[outgoing]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutgoing {
    pub relay: Option<Spanned<String>>,
    pub identities: Option<Vec<Spanned<RawIdentity>>>,
    pub local: Option<Spanned<String>>,
    pub delay: Option<Spanned<String>>,
}

/// One `identities = [{ ... }]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub from: Spanned<String>,
    pub relay: Option<Spanned<String>>,
    pub sender: Option<Spanned<String>>,
}

/// The validated `[outgoing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The smtp destination used when no identity matches.
    pub relay: String,
    /// Tried in order; the first whose `from` matches the sender wins.
    pub identities: Vec<Identity>,
    /// The mda destination for recipients without '@'.
    pub local: Option<String>,
    /// How long the background attempt waits (to batch a burst).
    pub delay: Duration,
}

/// One identity: a sender pattern, its relay, and an optional forced
/// envelope sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `*@private.example`, `me@private.example`, or a domain
    /// (`private.example`, `*.example`): `*` and `?` match any run of
    /// characters and any one, case-insensitively. A pattern without '@'
    /// is matched against the sender's domain.
    pub from: String,
    /// The smtp destination for this identity.
    pub relay: String,
    /// The envelope sender to use (unless `-f` gives one).
    pub sender: Option<String>,
}

/// Where one message goes: the relay and the forced sender, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    /// The smtp destination.
    pub relay: &'a str,
    /// The identity's forced envelope sender.
    pub sender: Option<&'a str>,
}

impl Outgoing {
    /// The relay (and forced sender) for mail from `address`: the first
    /// identity that matches, else the default relay.
    pub fn route(&self, address: &str) -> Route<'_> {
        self.identities
            .iter()
            .find(|i| identity_matches(&i.from, address))
            .map(|i| Route {
                relay: &i.relay,
                sender: i.sender.as_deref(),
            })
            .unwrap_or(Route {
                relay: &self.relay,
                sender: None,
            })
    }
}

/// Whether `pattern` (see `Identity::from`) matches `address`.
pub fn identity_matches(pattern: &str, address: &str) -> bool {
    let pattern = pattern.to_lowercase();
    let address = address.to_lowercase();
    if pattern.contains('@') {
        glob_matches(pattern.as_bytes(), address.as_bytes())
    } else {
        let domain = address.rsplit_once('@').map_or("", |(_, d)| d);
        glob_matches(pattern.as_bytes(), domain.as_bytes())
    }
}

/// `*` and `?` glob matching over bytes (iterative, with backtracking to
/// the last `*`).
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Checks that `name` is an smtp destination usable as a relay.
fn relay_name(
    ctx: &Ctx,
    value: &Spanned<String>,
    key: &str,
    destinations: &BTreeMap<String, DestinationConfig>,
) -> Result<String> {
    let name = value.get_ref().trim();
    match destinations.get(name) {
        Some(DestinationConfig::Smtp(c)) if c.recipient.is_some() => Err(ctx.at(
            value,
            key,
            format!(
                "[destination.{name}] has a fixed `recipient`; a relay sends to each message's own recipients, so remove it (or define another smtp destination)"
            ),
        )),
        Some(DestinationConfig::Smtp(_)) => Ok(name.to_string()),
        Some(_) => Err(ctx.at(value, key, format!("{name:?} is not an smtp destination"))),
        None => Err(ctx.at(value, key, format!("no [destination.{name}] is defined"))),
    }
}

/// Validates `[outgoing]` against the destinations.
pub(super) fn validate(
    ctx: &Ctx,
    raw: &Spanned<RawOutgoing>,
    destinations: &BTreeMap<String, DestinationConfig>,
) -> Result<Outgoing> {
    let o = raw.get_ref();
    let relay = match &o.relay {
        Some(r) => relay_name(ctx, r, "outgoing.relay", destinations)?,
        None => {
            return Err(ctx.at(
                raw,
                "outgoing.relay",
                "missing: name the smtp destination outgoing mail is sent through",
            ))
        }
    };
    let mut identities = Vec::new();
    for (i, id) in o.identities.iter().flatten().enumerate() {
        let key = |k: &str| format!("outgoing.identities[{i}].{k}");
        let raw_id = id.get_ref();
        let from = raw_id.from.get_ref().trim().to_string();
        if from.is_empty() || from.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ctx.at(
                &raw_id.from,
                &key("from"),
                "must be an address or domain pattern such as \"*@private.example\"",
            ));
        }
        let relay = match &raw_id.relay {
            Some(r) => relay_name(ctx, r, &key("relay"), destinations)?,
            None => relay.clone(),
        };
        let sender = match &raw_id.sender {
            Some(s) if is_smtp_address(s.get_ref().trim()) => Some(s.get_ref().trim().to_string()),
            Some(s) => {
                return Err(ctx.at(
                    s,
                    &key("sender"),
                    "not an address (user@domain) that SMTP's MAIL FROM can carry",
                ))
            }
            None => None,
        };
        identities.push(Identity {
            from,
            relay,
            sender,
        });
    }
    let local = match &o.local {
        Some(l) => {
            let name = l.get_ref().trim();
            match destinations.get(name) {
                Some(DestinationConfig::Mda(_)) => Some(name.to_string()),
                Some(_) => {
                    return Err(ctx.at(
                        l,
                        "outgoing.local",
                        format!("{name:?} is not an mda destination"),
                    ))
                }
                None => {
                    return Err(ctx.at(
                        l,
                        "outgoing.local",
                        format!("no [destination.{name}] is defined"),
                    ))
                }
            }
        }
        None => None,
    };
    let delay = match &o.delay {
        Some(d) => parse_duration(ctx, d, "outgoing.delay")?,
        None => Duration::from_secs(5),
    };
    if delay > Duration::from_secs(3600) {
        let d = o
            .delay
            .as_ref()
            .expect("only a written delay can be this long");
        return Err(ctx.at(
            d,
            "outgoing.delay",
            "at most 1h (it holds back every message sent)",
        ));
    }
    Ok(Outgoing {
        relay,
        identities,
        local,
        delay,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_addresses_and_domains() {
        assert!(identity_matches("*@private.example", "Me@Private.Example"));
        assert!(!identity_matches("*@private.example", "me@work.example"));
        assert!(identity_matches("me@private.example", "me@private.example"));
        assert!(!identity_matches(
            "me@private.example",
            "you@private.example"
        ));
        assert!(identity_matches("private.example", "a@private.example"));
        assert!(identity_matches("*.example", "a@mail.work.example"));
        assert!(!identity_matches("*.example", "a@example"));
        assert!(identity_matches("j?co@*", "jaco@kroon.co.za"));
        assert!(!identity_matches("*@x", "no-at-sign"));
    }

    const DESTINATIONS: &str = "[destination.smarthost]
type = \"smtp\"
host = \"smtp.example\"
[destination.box]
type = \"maildir\"
path = \"/tmp/box\"
[destination.filter]
type = \"mda\"
command = [\"/usr/bin/procmail\"]
";

    fn parse(outgoing: &str) -> Result<Option<Outgoing>> {
        crate::config::parse(
            &format!("{DESTINATIONS}[outgoing]\n{outgoing}"),
            std::path::Path::new("/c.toml"),
        )
        .map(|c| c.outgoing)
    }

    fn err(outgoing: &str) -> String {
        parse(outgoing).unwrap_err().to_string()
    }

    #[test]
    fn a_good_section_and_its_defaults() {
        let o = parse("relay = \"smarthost\"\nlocal = \"filter\"\nidentities = [{ from = \"*@p.example\", sender = \"me@p.example\" }]\n")
            .unwrap()
            .unwrap();
        assert_eq!(o.delay, Duration::from_secs(5));
        assert_eq!(o.local.as_deref(), Some("filter"));
        assert_eq!(o.identities[0].relay, "smarthost", "the default relay");
        let no_section = crate::config::parse(DESTINATIONS, std::path::Path::new("/c.toml"));
        assert_eq!(no_section.unwrap().outgoing, None);
    }

    #[test]
    fn bad_values_name_the_file_line_and_key() {
        assert!(err("relay = \"nowhere\"")
            .starts_with("/c.toml:11: outgoing.relay: no [destination.nowhere]"));
        assert!(
            err("relay = \"box\"").contains("outgoing.relay: \"box\" is not an smtp destination")
        );
        assert!(
            err("relay = \"smarthost\"\nlocal = \"box\"").contains("/c.toml:12: outgoing.local:")
        );
        assert!(err("relay = \"smarthost\"\ndelay = \"soon\"")
            .contains("/c.toml:12: outgoing.delay: not a duration"));
        assert!(
            err("relay = \"smarthost\"\nidentities = [{ from = \"*@x\", relay = \"box\" }]")
                .contains("/c.toml:12: outgoing.identities[0].relay")
        );
        assert!(err(
            "relay = \"smarthost\"\nidentities = [{ from = \"*@x\", sender = \"not an address\" }]"
        )
        .contains("outgoing.identities[0].sender"));
        assert!(err("relay = \"smarthost\"\nrelays = 1").contains("/c.toml:12"));
        assert!(err("local = \"filter\"").contains("outgoing.relay: missing"));
    }

    #[test]
    fn first_identity_wins_else_the_default_relay() {
        let o = Outgoing {
            relay: "smarthost".into(),
            identities: vec![
                Identity {
                    from: "*@private.example".into(),
                    relay: "private".into(),
                    sender: Some("me@private.example".into()),
                },
                Identity {
                    from: "private.example".into(),
                    relay: "other".into(),
                    sender: None,
                },
            ],
            local: None,
            delay: Duration::from_secs(5),
        };
        assert_eq!(
            o.route("x@private.example"),
            Route {
                relay: "private",
                sender: Some("me@private.example")
            }
        );
        assert_eq!(
            o.route("x@work.example"),
            Route {
                relay: "smarthost",
                sender: None
            }
        );
    }
}
