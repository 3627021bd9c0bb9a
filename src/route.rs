//! Who a message is for: single-drop (everything for one mailbox) or
//! multidrop, where one server mailbox collects mail for many local
//! addresses and the recipients are read back from the headers.
//!
//! Multidrop reads the envelope header the delivering MTA added
//! (`X-Original-To` from Postfix, `Delivered-To`, `Envelope-To` from Exim,
//! `X-Envelope-To`), the topmost occurrence being the last hop; or, when
//! the config asks and no envelope header is present, the addresses in
//! `To:` and `Cc:`. Only addresses in `local_domains` are kept; `aliases`
//! map an address or a bare local part to the recipient to deliver to;
//! duplicates are removed.
//!
//! Loops: qmail, Postfix and Dovecot add one `Delivered-To:` per delivery,
//! so the topmost `Delivered-To:` is the delivering MTA's own record of
//! the delivery that put the message in this mailbox (Postfix writes it
//! equal to `X-Original-To:`) and is not a hop. A `Delivered-To:` counts
//! only when it lies below the topmost one and also below the envelope
//! header used, when that is lower in the header block. A recipient such a
//! lower `Delivered-To:` names has had this message delivered before and
//! come back: delivering again would be a mail loop, so it is dropped and
//! reported. One `Delivered-To: X` is a delivery; two are a loop.
//!
//! Everything here is a pure function of the header bytes.

use crate::config::{Multidrop, ENVELOPE_HEADERS};
use crate::message;

/// Where a multidrop message goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// The recipients to deliver to, after aliasing, without duplicates.
    pub recipients: Vec<String>,
    /// Recipients left out because a lower `Delivered-To:` (one below the
    /// topmost and below the envelope header) already names them.
    pub looped: Vec<String>,
    /// The header the recipients were read from, if any.
    pub found_in: Option<String>,
}

/// The recipients of a multidrop message from its header block.
pub fn route(headers: &[u8], multidrop: &Multidrop) -> Routing {
    let mut routing = Routing::default();
    let candidates: Vec<&str> = match &multidrop.envelope_header {
        Some(h) => vec![h.as_str()],
        None => ENVELOPE_HEADERS.to_vec(),
    };
    let fields = header_fields(headers);
    let first = |name: &str| {
        fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let mut addresses = Vec::new();
    // Where the envelope header used sits in the header block.
    let mut envelope_at = None;
    for name in candidates {
        if let Some(i) = first(name) {
            addresses = parse_address_list(&fields[i].1);
            envelope_at = Some(i);
            routing.found_in = Some(name.to_string());
            break;
        }
    }
    if routing.found_in.is_none() && multidrop.to_cc {
        for name in ["To", "Cc"] {
            for value in message::header_values(headers, name) {
                addresses.extend(parse_address_list(&value));
            }
        }
        routing.found_in = Some("To/Cc".into());
    }
    // The topmost Delivered-To is the delivering MTA's own, not a hop; only
    // those below it, and below the envelope header, are earlier deliveries.
    // (`None < Some`: with no Delivered-To at all there is nothing to count.)
    let below = first("Delivered-To").max(envelope_at);
    let delivered_to: Vec<String> = fields
        .iter()
        .enumerate()
        .filter(|(i, (n, _))| {
            below.is_some_and(|b| *i > b) && n.eq_ignore_ascii_case("Delivered-To")
        })
        .flat_map(|(_, (_, v))| parse_address_list(v))
        .map(|a| a.to_ascii_lowercase())
        .collect();
    for address in addresses {
        // Header data: only a valid RFC 5321 address can become a
        // recipient (no command or ESMTP parameter can be injected).
        if !message::is_smtp_address(&address) {
            log::warn!(
                "multidrop: {:?} is not a valid address; not a recipient",
                message::escape(&address)
            );
            continue;
        }
        let lower = address.to_ascii_lowercase();
        let Some((local, domain)) = lower.rsplit_once('@') else {
            continue;
        };
        if !multidrop.local_domains.iter().any(|d| d == domain) {
            continue;
        }
        let target = multidrop
            .aliases
            .get(&lower)
            .or_else(|| multidrop.aliases.get(local))
            .cloned()
            .unwrap_or(address);
        let key = target.to_ascii_lowercase();
        if routing
            .recipients
            .iter()
            .chain(&routing.looped)
            .any(|r| r.to_ascii_lowercase() == key)
        {
            continue;
        }
        if delivered_to.contains(&key) {
            routing.looped.push(target);
        } else {
            routing.recipients.push(target);
        }
    }
    routing
}

/// Every header field of the block as (name, unfolded value), top to
/// bottom, read the way [`message::header_values`] reads them, so that
/// positions of different fields can be compared.
fn header_fields(headers: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut in_field = false;
    for line in message::header_block(headers).split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            if in_field {
                let (_, v) = out.last_mut().expect("in a field");
                v.push(b' ');
                v.extend_from_slice(line.trim_ascii());
            }
            continue;
        }
        in_field = false;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            out.push((
                line[..colon].trim_ascii().to_vec(),
                line[colon + 1..].trim_ascii().to_vec(),
            ));
            in_field = true;
        }
    }
    out.into_iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(&n).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            )
        })
        .collect()
}

/// The addresses in a header value such as
/// `"Doe, Jane" <jane@example.org>, bob@example.org (Bob)`: the part in
/// angle brackets when there is one, else the bare token; commas inside
/// quotes, angle brackets or comments do not split.
pub fn parse_address_list(value: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angle, mut comment) = (false, false, 0u32);
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                current.push(c);
                if let Some(n) = chars.next() {
                    current.push(n);
                }
                continue;
            }
            '"' if comment == 0 => quoted = !quoted,
            '(' if !quoted => comment += 1,
            ')' if !quoted && comment > 0 => {
                comment -= 1;
                continue;
            }
            '<' if !quoted && comment == 0 => angle = true,
            '>' if !quoted && comment == 0 => angle = false,
            ',' | ';' if !quoted && !angle && comment == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        if comment == 0 {
            current.push(c);
        }
    }
    items.push(current);
    items
        .iter()
        .filter_map(|item| {
            let addr = match (item.find('<'), item.rfind('>')) {
                (Some(a), Some(b)) if a < b => &item[a + 1..b],
                _ => item.as_str(),
            };
            // A group's name (`undisclosed-recipients:`) is not an address.
            let addr = addr
                .rsplit(':')
                .next()
                .unwrap_or(addr)
                .trim()
                .trim_matches('"');
            (addr.contains('@') && !addr.contains(char::is_whitespace)).then(|| addr.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(header: Option<&str>) -> Multidrop {
        Multidrop {
            envelope_header: header.map(str::to_string),
            to_cc: false,
            local_domains: vec!["kroon.co.za".into()],
            aliases: [
                ("postmaster".to_string(), "jaco@kroon.co.za".to_string()),
                (
                    "sales@kroon.co.za".to_string(),
                    "anna@kroon.co.za".to_string(),
                ),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn address_lists_parse() {
        assert_eq!(
            parse_address_list(
                r#""Doe, Jane" <Jane@Example.org>, bob@x.org (Bob, the builder), <c@y>"#
            ),
            ["Jane@Example.org", "bob@x.org", "c@y"]
        );
        assert_eq!(
            parse_address_list("undisclosed-recipients:;"),
            Vec::<String>::new()
        );
        assert_eq!(parse_address_list("friends: a@x, b@x;"), ["a@x", "b@x"]);
    }

    #[test]
    fn envelope_header_local_domains_aliases_and_duplicates() {
        let h = b"X-Original-To: sales@kroon.co.za, anna@kroon.co.za, Postmaster@KROON.co.za, x@elsewhere.org\nTo: other@kroon.co.za\n\n";
        let r = route(h, &md(None));
        assert_eq!(r.recipients, ["anna@kroon.co.za", "jaco@kroon.co.za"]);
        assert_eq!(r.found_in.as_deref(), Some("X-Original-To"));
        assert!(r.looped.is_empty());
    }

    #[test]
    fn to_cc_only_when_asked() {
        let h = b"To: A <a@kroon.co.za>\nCc: b@kroon.co.za, c@other.org\n\n";
        assert!(route(h, &md(None)).recipients.is_empty());
        let mut m = md(None);
        m.to_cc = true;
        assert_eq!(route(h, &m).recipients, ["a@kroon.co.za", "b@kroon.co.za"]);
    }

    #[test]
    fn only_a_lower_delivered_to_is_a_loop() {
        // The topmost Delivered-To is the delivering MTA's own: no loop.
        let h = b"Delivered-To: jaco@kroon.co.za\nX-Original-To: jaco@kroon.co.za, anna@kroon.co.za\n\n";
        let r = route(h, &md(Some("X-Original-To")));
        assert_eq!(r.recipients, ["jaco@kroon.co.za", "anna@kroon.co.za"]);
        assert!(r.looped.is_empty());
        // A second, lower Delivered-To naming a recipient is a loop.
        let h = b"Delivered-To: jaco@kroon.co.za\nX-Original-To: jaco@kroon.co.za, anna@kroon.co.za\nReceived: x\nDelivered-To: jaco@kroon.co.za\n\n";
        let r = route(h, &md(Some("X-Original-To")));
        assert_eq!(r.recipients, ["anna@kroon.co.za"]);
        assert_eq!(r.looped, ["jaco@kroon.co.za"]);
        // Delivered-To as the envelope itself: only further ones count.
        let h = b"Delivered-To: jaco@kroon.co.za\nDelivered-To: other@isp.net\n\n";
        let r = route(h, &md(Some("Delivered-To")));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        let h = b"Delivered-To: jaco@kroon.co.za\nDelivered-To: jaco@kroon.co.za\n\n";
        assert_eq!(
            route(h, &md(Some("Delivered-To"))).looped,
            ["jaco@kroon.co.za"]
        );
        // An envelope header lower than the topmost Delivered-To: only the
        // Delivered-To lines below the envelope header count.
        let h = b"Delivered-To: jaco@kroon.co.za\nDelivered-To: jaco@kroon.co.za\nEnvelope-To: jaco@kroon.co.za\n\n";
        let r = route(h, &md(Some("Envelope-To")));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert!(r.looped.is_empty());
        let h = b"Delivered-To: x@example.org\nEnvelope-To: jaco@kroon.co.za\nDelivered-To: jaco@kroon.co.za\n\n";
        assert_eq!(
            route(h, &md(Some("Envelope-To"))).looped,
            ["jaco@kroon.co.za"]
        );
        // Header names are case-insensitive and folded values unfold.
        let h = b"delivered-to: jaco@kroon.co.za\nDELIVERED-TO:\n  Jaco@Kroon.co.za\n\n";
        assert_eq!(
            route(h, &md(Some("Delivered-To"))).looped,
            ["jaco@kroon.co.za"]
        );
    }

    // Golden fixtures: messages as MTAs write them (tests/fixtures/mta/README).
    const POSTFIX_LOCAL: &[u8] = include_bytes!("../tests/fixtures/mta/postfix-local.eml");
    const POSTFIX_VIRTUAL: &[u8] = include_bytes!("../tests/fixtures/mta/postfix-virtual.eml");
    const EXIM: &[u8] = include_bytes!("../tests/fixtures/mta/exim.eml");
    const QMAIL: &[u8] = include_bytes!("../tests/fixtures/mta/qmail.eml");
    const QMAIL_LOOP: &[u8] = include_bytes!("../tests/fixtures/mta/qmail-loop.eml");
    const DOVECOT_LMTP: &[u8] = include_bytes!("../tests/fixtures/mta/dovecot-lmtp.eml");
    const GMAIL_EXPORT: &[u8] = include_bytes!("../tests/fixtures/mta/gmail-export.eml");
    const M365_EXPORT: &[u8] = include_bytes!("../tests/fixtures/mta/m365-export.eml");

    /// Routes a fixture's header block with `envelope_header`.
    fn route_fixture(message: &[u8], header: Option<&str>) -> Routing {
        route(message::header_block(message), &md(header))
    }

    #[test]
    fn fixture_postfix_local_own_delivered_to_is_not_a_loop() {
        // Postfix writes X-Original-To and then its own Delivered-To, both
        // jaco@kroon.co.za: ordinary mail, not a loop.
        let r = route_fixture(POSTFIX_LOCAL, Some("X-Original-To"));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert!(r.looped.is_empty());
        assert_eq!(r.found_in.as_deref(), Some("X-Original-To"));
        // Reading Delivered-To as the envelope gives the same.
        let r = route_fixture(POSTFIX_LOCAL, Some("Delivered-To"));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert!(r.looped.is_empty());
    }

    #[test]
    fn fixture_postfix_virtual_reads_the_original_recipient() {
        let r = route_fixture(POSTFIX_VIRTUAL, Some("X-Original-To"));
        assert_eq!(r.recipients, ["info@kroon.co.za"]);
        assert!(r.looped.is_empty());
        // The mailbox it was delivered to, when asked for Delivered-To.
        let r = route_fixture(POSTFIX_VIRTUAL, Some("Delivered-To"));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert!(r.looped.is_empty());
    }

    #[test]
    fn fixture_exim_envelope_to() {
        // Exim spells it `Envelope-to:`; the config's `Envelope-To` matches.
        let r = route_fixture(EXIM, Some("Envelope-To"));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert_eq!(r.found_in.as_deref(), Some("Envelope-To"));
        assert!(r.looped.is_empty());
        assert!(route_fixture(EXIM, Some("X-Original-To"))
            .recipients
            .is_empty());
    }

    #[test]
    fn fixture_qmail_forward_hops_are_not_a_loop() {
        let r = route_fixture(QMAIL, Some("Delivered-To"));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert!(r.looped.is_empty());
    }

    #[test]
    fn fixture_qmail_loop_is_looped() {
        let r = route_fixture(QMAIL_LOOP, Some("Delivered-To"));
        assert!(r.recipients.is_empty());
        assert_eq!(r.looped, ["jaco@kroon.co.za"]);
        let r = route_fixture(QMAIL_LOOP, None);
        assert!(r.recipients.is_empty());
        assert_eq!(r.looped, ["jaco@kroon.co.za"]);
    }

    #[test]
    fn fixture_dovecot_lmtp_delivered_to_is_the_envelope() {
        let r = route_fixture(DOVECOT_LMTP, Some("Delivered-To"));
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert_eq!(r.found_in.as_deref(), Some("Delivered-To"));
        assert!(r.looped.is_empty());
    }

    #[test]
    fn fixtures_default_envelope_header_search() {
        // (fixture, message, recipients, found_in)
        type Case = (
            &'static str,
            &'static [u8],
            &'static [&'static str],
            Option<&'static str>,
        );
        let cases: [Case; 7] = [
            (
                "postfix-local",
                POSTFIX_LOCAL,
                &["jaco@kroon.co.za"],
                Some("X-Original-To"),
            ),
            (
                "postfix-virtual",
                POSTFIX_VIRTUAL,
                &["info@kroon.co.za"],
                Some("X-Original-To"),
            ),
            ("exim", EXIM, &["jaco@kroon.co.za"], Some("Envelope-To")),
            ("qmail", QMAIL, &["jaco@kroon.co.za"], Some("Delivered-To")),
            ("qmail-loop", QMAIL_LOOP, &[], Some("Delivered-To")),
            (
                "dovecot-lmtp",
                DOVECOT_LMTP,
                &["jaco@kroon.co.za"],
                Some("Delivered-To"),
            ),
            (
                "gmail-export",
                GMAIL_EXPORT,
                &["jaco@kroon.co.za"],
                Some("Delivered-To"),
            ),
        ];
        for (name, fixture, recipients, found_in) in cases {
            let r = route_fixture(fixture, None);
            assert_eq!(r.recipients, recipients, "{name}");
            assert_eq!(r.found_in.as_deref(), found_in, "{name}");
            let looped: &[&str] = if name == "qmail-loop" {
                &["jaco@kroon.co.za"]
            } else {
                &[]
            };
            assert_eq!(r.looped, looped, "{name}");
        }
        // Microsoft 365 writes none of the envelope headers mailretr reads:
        // nothing without to_cc, the To: address with it.
        let r = route_fixture(M365_EXPORT, None);
        assert!(r.recipients.is_empty());
        assert_eq!(r.found_in, None);
        let mut m = md(None);
        m.to_cc = true;
        let r = route(message::header_block(M365_EXPORT), &m);
        assert_eq!(r.recipients, ["jaco@kroon.co.za"]);
        assert_eq!(r.found_in.as_deref(), Some("To/Cc"));
        assert!(r.looped.is_empty());
    }
}
