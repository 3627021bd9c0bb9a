//! Validation of an account's `rule` list and `filter_command` (see
//! `crate::filter`): every regex compiles, every action is known, every
//! destination named exists and can take the account's mail, before any
//! connection is made.

use std::collections::BTreeMap;

use toml::Spanned;

use super::raw::{RawAccount, RawRule};
use super::{parse_duration, Ctx, DestinationConfig};
use crate::error::Result;
use crate::filter::{Action, Filter, FilterCommand, Pattern, Rule, DEFAULT_TIMEOUT};

/// Validates `rule`, `filter_command` and `filter_timeout`.
pub(super) fn validate_filter(
    ctx: &Ctx,
    raw: &RawAccount,
    key: &dyn Fn(&str) -> String,
    destinations: &BTreeMap<String, DestinationConfig>,
    multidrop: bool,
) -> Result<Filter> {
    let mut rules = Vec::new();
    for (i, r) in raw.rule.iter().flatten().enumerate() {
        rules.push(validate_rule(
            ctx,
            r,
            &key(&format!("rule[{}]", i + 1)),
            destinations,
            multidrop,
        )?);
    }
    let command = match &raw.filter_command {
        Some(argv) => {
            if argv.get_ref().first().is_none_or(|p| p.trim().is_empty()) {
                return Err(ctx.at(
                    argv,
                    &key("filter_command"),
                    "name the program (and its arguments) as a list, e.g. [\"/usr/local/bin/spamcheck\"]",
                ));
            }
            let timeout = match &raw.filter_timeout {
                Some(t) => match parse_duration(ctx, t, &key("filter_timeout"))? {
                    d if d.is_zero() => {
                        return Err(ctx.at(t, &key("filter_timeout"), "must be above zero"))
                    }
                    d => d,
                },
                None => DEFAULT_TIMEOUT,
            };
            Some(FilterCommand {
                argv: argv.get_ref().clone(),
                timeout,
            })
        }
        None => {
            if let Some(t) = &raw.filter_timeout {
                return Err(ctx.at(
                    t,
                    &key("filter_timeout"),
                    "only applies with filter_command",
                ));
            }
            None
        }
    };
    Ok(Filter { rules, command })
}

fn validate_rule(
    ctx: &Ctx,
    r: &Spanned<RawRule>,
    key: &str,
    destinations: &BTreeMap<String, DestinationConfig>,
    multidrop: bool,
) -> Result<Rule> {
    let raw = r.get_ref();
    let sub = |k: &str| format!("{key}.{k}");
    let header = raw.header.get_ref().trim();
    if header.is_empty() || !header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(ctx.at(
            &raw.header,
            &sub("header"),
            "must be a header field name such as \"X-Spam-Flag\" (no colon, no spaces)",
        ));
    }
    let matches = regex::Regex::new(raw.matches.get_ref()).map_err(|e| {
        // The regex crate's message spans lines (a caret under the
        // pattern); a config error is one line.
        let why = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
            .collect::<Vec<_>>()
            .join(" ");
        ctx.at(
            &raw.matches,
            &sub("matches"),
            format!("not a regular expression: {why}"),
        )
    })?;
    let action = match (&raw.action, &raw.deliver_to) {
        (Some(a), Some(_)) if a.get_ref() != "deliver" => {
            return Err(ctx.at(
                a,
                &sub("action"),
                "give either action or deliver_to (deliver_to delivers), not both",
            ))
        }
        (_, Some(names)) => {
            if names.get_ref().is_empty() {
                return Err(ctx.at(
                    names,
                    &sub("deliver_to"),
                    "name at least one destination",
                ));
            }
            let mut list = Vec::new();
            for n in names.get_ref() {
                check_destination(ctx, n, &sub("deliver_to"), destinations, multidrop)?;
                if !list.contains(n.get_ref()) {
                    list.push(n.get_ref().clone());
                }
            }
            Action::DeliverTo(list)
        }
        (Some(a), None) => match a.get_ref().as_str() {
            "deliver" => Action::Deliver,
            "leave" => Action::Leave,
            "delete" => Action::Delete,
            other => {
                return Err(ctx.at(
                    a,
                    &sub("action"),
                    format!(
                        "unknown action {other:?}; expected deliver, leave or delete (or give deliver_to = [...])"
                    ),
                ))
            }
        },
        (None, None) => {
            return Err(ctx.at(
                r,
                key,
                "say what a match does: action = \"leave\", \"delete\" or \"deliver\", or deliver_to = [...]",
            ))
        }
    };
    Ok(Rule {
        header: header.to_string(),
        matches: Pattern(matches),
        action,
    })
}

/// A destination a rule names must exist, and one that checks the
/// envelope (SMTP, LMTP) needs an address to send to, as for `deliver_to`.
fn check_destination(
    ctx: &Ctx,
    name: &Spanned<String>,
    key: &str,
    destinations: &BTreeMap<String, DestinationConfig>,
    multidrop: bool,
) -> Result<()> {
    let Some(dest) = destinations.get(name.get_ref()) else {
        let known: Vec<&str> = destinations.keys().map(String::as_str).collect();
        return Err(ctx.at(
            name,
            key,
            format!(
                "no [destination.{}] is defined (defined: {})",
                name.get_ref(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    if let Some(why) = cannot_take(name.get_ref(), dest, multidrop) {
        return Err(ctx.at(name, key, why));
    }
    Ok(())
}

/// Why destination `name` cannot take an account's mail, if it cannot:
/// one that checks the envelope needs a `recipient` unless the account is
/// multidrop. Also used for the names `filter_command` prints.
pub fn cannot_take(name: &str, dest: &DestinationConfig, multidrop: bool) -> Option<String> {
    (dest.checks_envelope() && dest.recipient().is_none() && !multidrop).then(|| {
        format!(
            "destination {name} ({}) has no `recipient`; set one there, or give this account `multidrop`",
            dest.kind()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::filter::Action;

    /// An account with `extra` (from line 8) and destinations `home`
    /// (Maildir) and `relay` (SMTP without a recipient).
    fn config(extra: &str) -> String {
        format!(
            r#"[general]
state_dir = "/tmp/st"
[[account]]
name = "isp"
protocol = "pop3"
host = "pop.example.com"
user = "jaco"
{extra}
[destination.home]
type = "maildir"
path = "/tmp/Maildir"
[destination.spam]
type = "maildir"
path = "/tmp/Spam"
[destination.relay]
type = "smtp"
host = "mx.example.org"
"#
        )
    }

    fn parse(extra: &str) -> crate::Result<crate::config::Config> {
        crate::config::parse(&config(extra), Path::new("test.toml"))
    }

    fn err(extra: &str) -> String {
        parse(extra).unwrap_err().to_string()
    }

    #[test]
    fn rules_in_both_shapes_and_a_filter_command_validate() {
        let c = parse(
            r#"deliver_to = ["home"]
rule = [
  { header = "X-Spam-Flag", matches = "^YES", action = "delete" },
  { header = "List-Id", matches = "(?i)rust", deliver_to = ["spam", "home", "spam"] },
]
filter_command = ["/usr/local/bin/spamcheck", "-q"]
filter_timeout = "5s""#,
        )
        .unwrap();
        let f = &c.accounts[0].filter;
        assert_eq!(f.rules.len(), 2);
        assert_eq!(f.rules[0].action, Action::Delete);
        assert_eq!(
            f.rules[1].action,
            Action::DeliverTo(vec!["spam".into(), "home".into()])
        );
        let cmd = f.command.as_ref().unwrap();
        assert_eq!(cmd.argv, ["/usr/local/bin/spamcheck", "-q"]);
        assert_eq!(cmd.timeout, Duration::from_secs(5));
        // `[[account.rule]]` tables after the account's keys.
        let text = config("deliver_to = [\"home\"]").replace(
            "[destination.home]",
            "[[account.rule]]\nheader = \"Subject\"\nmatches = \"^\\\\[spam\\\\]\"\naction = \"leave\"\n\
             [[account.rule]]\nheader = \"From\"\nmatches = \"boss\"\naction = \"deliver\"\n[destination.home]",
        );
        let c = crate::config::parse(&text, Path::new("test.toml")).unwrap();
        let f = &c.accounts[0].filter;
        assert_eq!(f.rules[0].action, Action::Leave);
        assert!(f.rules[0].is_match(b"Subject: [spam] hi\n\n"));
        assert_eq!(f.rules[1].action, Action::Deliver);
        assert_eq!(f.command, None);
        // Nothing given: nothing set.
        assert!(!parse("").unwrap().accounts[0].filter.is_set());
    }

    #[test]
    fn bad_rules_are_config_errors_with_file_line_and_key() {
        let cases = [
            (
                "rule = [{ header = \"Subject\", matches = \"(unclosed\", action = \"leave\" }]",
                "test.toml:8: account[isp].rule[1].matches: not a regular expression",
            ),
            (
                "rule = [\n  { header = \"Subject\", matches = \"x\", action = \"leave\" },\n  { header = \"X\", matches = \"y\", action = \"trash\" },\n]",
                "test.toml:10: account[isp].rule[2].action: unknown action \"trash\"",
            ),
            (
                "rule = [{ header = \"X\", matches = \"y\", deliver_to = [\"nowhere\"] }]",
                "test.toml:8: account[isp].rule[1].deliver_to: no [destination.nowhere] is defined (defined: home, relay, spam)",
            ),
            (
                "rule = [{ header = \"X\", matches = \"y\", deliver_to = [\"relay\"] }]",
                "account[isp].rule[1].deliver_to: destination relay (smtp) has no `recipient`",
            ),
            (
                "rule = [{ header = \"X\", matches = \"y\" }]",
                "test.toml:8: account[isp].rule[1]: say what a match does",
            ),
            (
                "rule = [{ header = \"X\", matches = \"y\", action = \"delete\", deliver_to = [\"home\"] }]",
                "account[isp].rule[1].action: give either action or deliver_to",
            ),
            (
                "rule = [{ header = \"X-Spam: \", matches = \"y\", action = \"delete\" }]",
                "account[isp].rule[1].header: must be a header field name",
            ),
            (
                "rule = [{ header = \"X\", matches = \"y\", action = \"delete\", negate = true }]",
                "unknown field `negate`",
            ),
            (
                "rule = [{ header = \"X\", matches = \"y\", deliver_to = [] }]",
                "account[isp].rule[1].deliver_to: name at least one destination",
            ),
            ("filter_command = []", "test.toml:8: account[isp].filter_command: name the program"),
            (
                "filter_command = \"/bin/spamcheck -q\"",
                "test.toml:8: filter_command:",
            ),
            (
                "filter_timeout = \"5s\"",
                "account[isp].filter_timeout: only applies with filter_command",
            ),
            (
                "filter_command = [\"/bin/x\"]\nfilter_timeout = \"0s\"",
                "test.toml:9: account[isp].filter_timeout: must be above zero",
            ),
        ];
        for (extra, want) in cases {
            let e = err(extra);
            assert!(e.contains(want), "{extra}\n  gave: {e}\n  want: {want}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
