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
//! duplicates are removed. A recipient that a `Delivered-To:` header
//! already names has had this message delivered once before: delivering
//! again would be a mail loop, so it is dropped and reported.
//!
//! Everything here is a pure function of the header bytes.

use crate::config::{Multidrop, ENVELOPE_HEADERS};
use crate::message;

/// Where a multidrop message goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    /// The recipients to deliver to, after aliasing, without duplicates.
    pub recipients: Vec<String>,
    /// Recipients left out because a `Delivered-To:` already names them.
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
    let mut addresses = Vec::new();
    // The occurrence used as the envelope, so the loop check skips it.
    let mut envelope_delivered_to = false;
    for name in candidates {
        if let Some(first) = message::header_values(headers, name).into_iter().next() {
            addresses = parse_address_list(&first);
            envelope_delivered_to = name.eq_ignore_ascii_case("Delivered-To");
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
    let delivered_to: Vec<String> = message::header_values(headers, "Delivered-To")
        .into_iter()
        .skip(usize::from(envelope_delivered_to))
        .flat_map(|v| parse_address_list(&v))
        .map(|a| a.to_ascii_lowercase())
        .collect();
    for address in addresses {
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
    fn a_delivered_to_naming_the_recipient_is_a_loop() {
        let h = b"Delivered-To: jaco@kroon.co.za\nX-Original-To: jaco@kroon.co.za, anna@kroon.co.za\n\n";
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
    }
}
