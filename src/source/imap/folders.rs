//! Which IMAP folders an account fetches from: the `folders` patterns
//! (`INBOX`, `Lists/*`, `!Lists/spam`) matched against the server's `LIST`
//! answer. Everything here is a pure function over names, so it is tested
//! without a server.
//!
//! Names are written in the config with `/` between levels whatever the
//! server's hierarchy delimiter is; the server's own spelling is accepted
//! too. Folder names on the wire are modified UTF-7 (RFC 3501 section
//! 5.1.3); the config and the state store use the decoded UTF-8 name.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine as _;

/// One folder as `LIST` reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFolder {
    /// The name exactly as the server sent it (modified UTF-7).
    pub server_name: String,
    /// The hierarchy delimiter, if the server has a hierarchy.
    pub delimiter: Option<char>,
    /// `\Noselect` or `\NonExistent`: it cannot be selected.
    pub noselect: bool,
    /// `\Junk` or `\Trash` (RFC 6154): fetched only when named exactly.
    pub junk_or_trash: bool,
    /// The name is UTF-8 as it is (`ENABLE UTF8=ACCEPT`, RFC 6855), not
    /// modified UTF-7.
    pub utf8: bool,
}

impl ListedFolder {
    /// The config-style name: decoded, with `/` between levels.
    pub fn config_name(&self) -> String {
        if self.utf8 {
            let slashed = match self.delimiter {
                Some(d) if d != '/' => self.server_name.replace(d, "/"),
                _ => self.server_name.clone(),
            };
            return normalize_inbox(&slashed, '/');
        }
        config_name(&self.server_name, self.delimiter)
    }

    /// The config-style name relative to the personal namespace's
    /// `prefix` (config-style, as `Namespace::prefix`): `Archive` for
    /// Courier's `INBOX.Archive`. The full name when it is outside.
    pub fn relative_name(&self, prefix: &str) -> String {
        let config = self.config_name();
        match config.strip_prefix(prefix) {
            Some(rest) if !prefix.is_empty() && !rest.is_empty() => rest.to_string(),
            _ => config,
        }
    }

    /// The name relative to the personal namespace's `prefix`
    /// (config-style) as one decoded name per level, for destinations
    /// that mirror the tree: `["Lists", "a"]` for Courier's
    /// `INBOX.Lists.a` and for Dovecot's `Lists/a`; empty for INBOX. The
    /// server name is split at its delimiter before decoding, so a
    /// delimiter the server encoded inside a name stays inside it.
    pub fn relative_levels(&self, prefix: &str) -> Vec<String> {
        let decode = |level: &str| {
            if self.utf8 {
                level.to_string()
            } else {
                decode_mutf7(level).unwrap_or_else(|| level.to_string())
            }
        };
        let mut levels: Vec<String> = match self.delimiter {
            Some(d) => self.server_name.split(d).map(decode).collect(),
            None => vec![decode(&self.server_name)],
        };
        if levels[0].eq_ignore_ascii_case("INBOX") {
            levels[0] = "INBOX".into();
        }
        let prefix: Vec<&str> = prefix.split('/').filter(|l| !l.is_empty()).collect();
        if !prefix.is_empty() && levels.len() > prefix.len() && levels[..prefix.len()] == prefix[..]
        {
            levels.drain(..prefix.len());
        }
        if levels == ["INBOX"] {
            levels.clear();
        }
        levels
    }
}

/// The personal namespace (RFC 2342) as far as folder names go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    /// Its prefix, config-style: `INBOX/` for Courier's `INBOX.` and
    /// Cyrus's without `altnamespace`; empty for Dovecot's default.
    pub prefix: String,
}

/// The first personal namespace in a `NAMESPACE` answer
/// (`* NAMESPACE (("INBOX." ".")) NIL NIL`); the default (no prefix) when
/// there is none or it cannot be read.
pub fn parse_namespace(data: &[u8]) -> Namespace {
    let text = String::from_utf8_lossy(data);
    let Some(line) = text
        .split('\n')
        .find(|l| l.len() > 12 && l.as_bytes()[..12].eq_ignore_ascii_case(b"* NAMESPACE "))
    else {
        return Namespace::default();
    };
    let rest = line[12..].trim_start();
    let Some(rest) = rest.strip_prefix("((") else {
        return Namespace::default();
    };
    let mut quoted = Vec::new();
    let mut chars = rest.chars();
    // The prefix and the delimiter: two quoted strings (or NIL).
    while quoted.len() < 2 {
        match chars.next() {
            Some('"') => {
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => s.extend(chars.next()),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                quoted.push(Some(s));
            }
            Some('N' | 'n') => {
                chars.next();
                chars.next();
                quoted.push(None);
            }
            Some(' ') => {}
            _ => return Namespace::default(),
        }
    }
    let prefix = quoted[0].clone().unwrap_or_default();
    let delimiter = quoted[1].as_ref().and_then(|d| d.chars().next());
    Namespace {
        prefix: config_name(&prefix, delimiter),
    }
}

/// A folder chosen for fetching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenFolder {
    /// The name to send in `SELECT`.
    pub server_name: String,
    /// The name the state store and the log use.
    pub config_name: String,
    /// The name relative to the personal namespace, one level each
    /// (`ListedFolder::relative_levels`): where mirroring destinations
    /// put its messages.
    pub mailbox: Vec<String>,
}

/// The result of matching the patterns against a listing.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Whether any pattern matched any listed folder (chosen or not):
    /// when none did, `folders` is most likely a typo.
    pub matched_any: bool,
    /// Folders to fetch, in the order of the patterns that chose them.
    pub folders: Vec<ChosenFolder>,
    /// Exact names from the config that no listed folder has (worth a
    /// warning: probably a typo).
    pub missing: Vec<String>,
}

/// The config-style name for a server name: modified UTF-7 decoded, the
/// delimiter replaced by `/`, and `INBOX` in capitals (it is
/// case-insensitive, RFC 3501 section 5.1).
pub fn config_name(server_name: &str, delimiter: Option<char>) -> String {
    let decoded = decode_mutf7(server_name).unwrap_or_else(|| server_name.to_string());
    let slashed = match delimiter {
        Some(d) if d != '/' => decoded.replace(d, "/"),
        _ => decoded,
    };
    normalize_inbox(&slashed, '/')
}

/// The server name for a config-style name: `/` replaced by the
/// delimiter, then modified UTF-7 encoded.
pub fn server_name(config_name: &str, delimiter: Option<char>) -> String {
    let joined = match delimiter {
        Some(d) if d != '/' => config_name.replace('/', &d.to_string()),
        _ => config_name.to_string(),
    };
    encode_mutf7(&joined)
}

/// `inbox`, `Inbox/x` and so on become `INBOX`, `INBOX/x`.
fn normalize_inbox(name: &str, delimiter: char) -> String {
    let first_end = name.find(delimiter).unwrap_or(name.len());
    if name[..first_end].eq_ignore_ascii_case("INBOX") {
        format!("INBOX{}", &name[first_end..])
    } else {
        name.to_string()
    }
}

/// Whether a pattern has IMAP wildcards (`*`, `%`).
pub fn has_wildcards(pattern: &str) -> bool {
    pattern.contains(['*', '%'])
}

/// Matches an IMAP `LIST`-style pattern (RFC 3501 section 6.3.8): `*`
/// matches anything, `%` anything but the hierarchy delimiter.
pub fn wildcard_match(pattern: &str, name: &str, delimiter: char) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Dynamic programming over (pattern position, name position); names
    // and patterns are short, and this cannot go exponential.
    let mut reach = vec![false; n.len() + 1];
    reach[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                for j in 0..=n.len() {
                    if reach[j] {
                        next[j] = true;
                        let mut k = j;
                        while k < n.len() && (pc == '*' || n[k] != delimiter) {
                            k += 1;
                            next[k] = true;
                        }
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    if reach[j] && n[j] == c {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach[n.len()]
}

/// Whether `pattern` (as written in the config) names this folder: by
/// its config-style name, by that name relative to the personal
/// namespace (`Archive` for `INBOX.Archive` on Courier), or by the
/// server's own spelling.
fn matches(pattern: &str, folder: &ListedFolder, config: &str, prefix: &str) -> bool {
    let pattern_slash = normalize_inbox(pattern, '/');
    if wildcard_match(&pattern_slash, config, '/') {
        return true;
    }
    if let Some(relative) = config.strip_prefix(prefix).filter(|_| !prefix.is_empty()) {
        if !relative.is_empty() && wildcard_match(pattern.trim(), relative, '/') {
            return true;
        }
    }
    let delimiter = folder.delimiter.unwrap_or('/');
    let pattern_server = normalize_inbox(pattern, delimiter);
    let server = normalize_inbox(&folder.server_name, delimiter);
    wildcard_match(&pattern_server, &server, delimiter)
}

/// Chooses the folders to fetch: those matched by a pattern and by no
/// `!` pattern, selectable, and not `\Junk` or `\Trash` unless named
/// exactly. `never` (the `move_to` folder, config-style) is never chosen:
/// fetching it would bring moved mail back.
pub fn choose(
    patterns: &[String],
    listed: &[ListedFolder],
    never: Option<&str>,
    namespace: &Namespace,
) -> Selection {
    let prefix = namespace.prefix.as_str();
    let (excludes, includes): (Vec<&str>, Vec<&str>) = patterns
        .iter()
        .map(|p| p.trim())
        .partition(|p| p.starts_with('!'));
    let excludes: Vec<&str> = excludes.iter().map(|p| p[1..].trim()).collect();
    let never = never.map(|n| normalize_inbox(n, '/'));
    let mut selection = Selection::default();
    for pattern in includes {
        let exact = !has_wildcards(pattern);
        let mut found = false;
        for folder in listed {
            let config = folder.config_name();
            if !matches(pattern, folder, &config, prefix) {
                continue;
            }
            found = true;
            selection.matched_any = true;
            let excluded = excludes.iter().any(|x| matches(x, folder, &config, prefix));
            if folder.noselect
                || excluded
                || (folder.junk_or_trash && !exact)
                || never.as_deref() == Some(config.as_str())
                || selection.folders.iter().any(|f| f.config_name == config)
            {
                continue;
            }
            selection.folders.push(ChosenFolder {
                server_name: folder.server_name.clone(),
                config_name: config,
                mailbox: folder.relative_levels(prefix),
            });
        }
        if exact && !found {
            selection.missing.push(pattern.to_string());
        }
    }
    selection
}

/// Parses the untagged `LIST` responses in a raw command response
/// (RFC 3501 section 7.2.2), including names sent as literals. Lines that
/// are not `LIST` responses are skipped.
pub fn parse_list(data: &[u8]) -> Vec<ListedFolder> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let line_end = find_crlf(data, pos).unwrap_or(data.len());
        let line = &data[pos..line_end];
        let mut next = (line_end + 2).min(data.len());
        if line.len() > 7 && line[..7].eq_ignore_ascii_case(b"* LIST ") {
            let (folder, literal_len) = parse_list_line(&line[7..]);
            if let Some(mut folder) = folder {
                if let Some(n) = literal_len {
                    let end = (next + n).min(data.len());
                    folder.server_name = String::from_utf8_lossy(&data[next..end]).into_owned();
                    // The rest of the response (extended data) follows the
                    // literal up to the line end.
                    next = find_crlf(data, end).map_or(data.len(), |e| e + 2);
                }
                out.push(folder);
            }
        }
        pos = next;
    }
    out
}

fn find_crlf(data: &[u8], from: usize) -> Option<usize> {
    data[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// Parses `(attrs) delim name` of one LIST line. When the name is a
/// literal, returns its length for the caller to read.
fn parse_list_line(rest: &[u8]) -> (Option<ListedFolder>, Option<usize>) {
    let text = String::from_utf8_lossy(rest);
    let text = text.as_ref();
    let Some(attrs_end) = text.find(')') else {
        return (None, None);
    };
    let attrs = text[..attrs_end]
        .trim_start_matches('(')
        .to_ascii_lowercase();
    let attrs: Vec<&str> = attrs.split_whitespace().collect();
    let after = text[attrs_end + 1..].trim_start();
    let (delimiter, after) =
        if let Some(r) = after.strip_prefix("NIL").or(after.strip_prefix("nil")) {
            (None, r)
        } else if let Some(r) = after.strip_prefix('"') {
            let mut chars = r.chars();
            let d = match chars.next() {
                Some('\\') => chars.next(),
                c => c,
            };
            let r = chars.as_str();
            (d, r.strip_prefix('"').unwrap_or(r))
        } else {
            return (None, None);
        };
    let after = after.trim_start();
    let mut literal = None;
    let name = if let Some(r) = after.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = r.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => name.extend(chars.next()),
                '"' => break,
                c => name.push(c),
            }
        }
        name
    } else if after.starts_with('{') && after.ends_with('}') {
        literal = after[1..after.len() - 1].trim_end_matches('+').parse().ok();
        if literal.is_none() {
            return (None, None);
        }
        String::new()
    } else {
        after.split(' ').next().unwrap_or("").to_string()
    };
    let has = |a: &str| attrs.contains(&a);
    (
        Some(ListedFolder {
            server_name: name,
            delimiter,
            noselect: has("\\noselect") || has("\\nonexistent"),
            junk_or_trash: has("\\junk") || has("\\trash"),
            utf8: false,
        }),
        literal,
    )
}

/// Decodes modified UTF-7 (RFC 3501 section 5.1.3). `None` when the name
/// is not valid modified UTF-7 (then it is used as it is).
pub fn decode_mutf7(name: &str) -> Option<String> {
    if !name.contains('&') {
        return Some(name.to_string());
    }
    let mut out = String::new();
    let mut rest = name;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find('-')?;
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            let bytes = B64.decode(encoded.replace(',', "/")).ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            out.push_str(&String::from_utf16(&units).ok()?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Encodes a name as modified UTF-7 (RFC 3501 section 5.1.3).
pub fn encode_mutf7(name: &str) -> String {
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if !pending.is_empty() {
            let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
            out.push('&');
            out.push_str(&B64.encode(bytes).replace('/', ","));
            out.push('-');
            pending.clear();
        }
    };
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, delim: char) -> ListedFolder {
        ListedFolder {
            server_name: name.into(),
            delimiter: Some(delim),
            noselect: false,
            junk_or_trash: false,
            utf8: false,
        }
    }

    fn names(s: &Selection) -> Vec<&str> {
        s.folders.iter().map(|f| f.config_name.as_str()).collect()
    }

    fn pats(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("Lists/*", "Lists/a/b", '/'));
        assert!(wildcard_match("Lists/%", "Lists/a", '/'));
        assert!(!wildcard_match("Lists/%", "Lists/a/b", '/'));
        assert!(!wildcard_match("Lists/*", "Lists", '/'));
        assert!(wildcard_match("*", "", '/'));
        assert!(wildcard_match("a*b*c", "aXbYbc", '/'));
        assert!(!wildcard_match("a*b*c", "aXbYb", '/'));
        assert!(wildcard_match("%/x", "a/x", '/'));
        assert!(!wildcard_match("INBOX", "INBOX2", '/'));
    }

    #[test]
    fn patterns_with_dot_delimiter_and_exclusions() {
        let listed = vec![
            folder("INBOX", '.'),
            folder("Lists", '.'),
            folder("Lists.rust", '.'),
            folder("Lists.spam", '.'),
            folder("Lists.deep.x", '.'),
            folder("Other", '.'),
        ];
        let s = choose(
            &pats(&["INBOX", "Lists/*", "!Lists/spam"]),
            &listed,
            None,
            &Namespace::default(),
        );
        assert_eq!(names(&s), ["INBOX", "Lists/rust", "Lists/deep/x"]);
        assert!(s.missing.is_empty());
        assert_eq!(s.folders[1].server_name, "Lists.rust");
        // The server's own spelling works too, and % stops at a level.
        let s = choose(
            &pats(&["Lists.%", "!Lists.spam"]),
            &listed,
            None,
            &Namespace::default(),
        );
        assert_eq!(names(&s), ["Lists/rust"]);
    }

    #[test]
    fn noselect_junk_trash_and_move_target() {
        let mut listed = vec![
            folder("INBOX", '/'),
            folder("Junk", '/'),
            folder("Trash", '/'),
            folder("Archive", '/'),
            folder("Parent", '/'),
        ];
        listed[1].junk_or_trash = true;
        listed[2].junk_or_trash = true;
        listed[4].noselect = true;
        let s = choose(
            &pats(&["*"]),
            &listed,
            Some("Archive"),
            &Namespace::default(),
        );
        assert_eq!(names(&s), ["INBOX"]);
        let s = choose(&pats(&["*", "Junk"]), &listed, None, &Namespace::default());
        assert_eq!(names(&s), ["INBOX", "Archive", "Junk"]);
    }

    #[test]
    fn inbox_is_case_insensitive_and_missing_names_are_reported() {
        let listed = vec![folder("inbox", '/'), folder("INBOX/sub", '/')];
        let s = choose(
            &pats(&["Inbox", "Nope", "INBOX/*"]),
            &listed,
            None,
            &Namespace::default(),
        );
        assert_eq!(names(&s), ["INBOX", "INBOX/sub"]);
        assert_eq!(s.missing, ["Nope"]);
        assert_eq!(s.folders[0].server_name, "inbox");
    }

    /// Courier (and Cyrus without `altnamespace`) keep folders under
    /// `INBOX.`: the man page's patterns name them relative to it, and the
    /// full names still work.
    #[test]
    fn folders_are_named_relative_to_the_personal_namespace() {
        let ns = parse_namespace(
            b"* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\"))\r\na1 OK\r\n",
        );
        assert_eq!(ns.prefix, "INBOX/");
        let listed = vec![
            folder("INBOX", '.'),
            folder("INBOX.Lists.a", '.'),
            folder("INBOX.Lists.spam", '.'),
            folder("INBOX.Spam", '.'),
            folder("INBOX.Archive", '.'),
        ];
        let s = choose(
            &pats(&["INBOX", "Lists/*", "!Lists/spam"]),
            &listed,
            None,
            &ns,
        );
        assert_eq!(names(&s), ["INBOX", "INBOX/Lists/a"]);
        let s = choose(&pats(&["*", "!Spam"]), &listed, None, &ns);
        assert_eq!(
            names(&s),
            [
                "INBOX",
                "INBOX/Lists/a",
                "INBOX/Lists/spam",
                "INBOX/Archive"
            ]
        );
        let s = choose(&pats(&["INBOX/Archive", "Archive"]), &listed, None, &ns);
        assert_eq!(names(&s), ["INBOX/Archive"]);
        assert!(s.missing.is_empty());
        assert_eq!(listed[4].relative_name(&ns.prefix), "Archive");
        assert_eq!(listed[0].relative_name(&ns.prefix), "INBOX");
        let s = choose(&pats(&["Achive"]), &listed, None, &ns);
        assert!(!s.matched_any && s.folders.is_empty());
        // Dovecot's default namespace has no prefix; garbage is no prefix.
        let dovecot = parse_namespace(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
        assert_eq!(dovecot, Namespace::default());
        assert_eq!(
            parse_namespace(b"* NAMESPACE NIL NIL NIL\r\n"),
            Namespace::default()
        );
        assert_eq!(parse_namespace(b"* NAMESPACE ((\"x"), Namespace::default());
    }

    /// Mirroring destinations get the same levels from Courier's
    /// `INBOX.`-prefixed tree as from Dovecot's, decoded per level.
    #[test]
    fn relative_levels_are_decoded_per_level_under_the_namespace() {
        let courier = "INBOX/";
        assert!(folder("INBOX", '.').relative_levels(courier).is_empty());
        assert!(folder("inbox", '/').relative_levels("").is_empty());
        assert_eq!(
            folder("INBOX.Lists.a", '.').relative_levels(courier),
            ["Lists", "a"]
        );
        assert_eq!(folder("Lists/a", '/').relative_levels(""), ["Lists", "a"]);
        assert_eq!(
            folder("Gr&APwA3w-e/dev.rust", '/').relative_levels(""),
            ["Grüße", "dev.rust"]
        );
        // An encoded delimiter (here `.`, &AC4-) stays inside its level.
        assert_eq!(
            folder("INBOX.a&AC4-b", '.').relative_levels(courier),
            ["a.b"]
        );
        // Dovecot's INBOX children keep their INBOX level.
        assert_eq!(
            folder("INBOX/sub", '/').relative_levels(""),
            ["INBOX", "sub"]
        );
        let mut flat = folder("a.b", '.');
        flat.delimiter = None;
        assert_eq!(flat.relative_levels(""), ["a.b"]);
    }

    #[test]
    fn list_responses_parse() {
        let data = b"* LIST (\\HasNoChildren) \".\" INBOX\r\n\
* LIST (\\HasChildren \\Noselect) \".\" \"Lists\"\r\n\
* LIST (\\HasNoChildren \\Trash) \".\" Trash\r\n\
* LIST () \"\\\\\" \"a \\\"q\\\"\"\r\n\
* LIST () NIL {7}\r\nwe ird\"\r\n\
* LIST (\\Junk) \"/\" Spam\r\n";
        let l = parse_list(data);
        assert_eq!(l.len(), 6, "{l:?}");
        assert_eq!(l[0].server_name, "INBOX");
        assert_eq!(l[0].delimiter, Some('.'));
        assert!(l[1].noselect && !l[1].junk_or_trash);
        assert!(l[2].junk_or_trash);
        assert_eq!(l[3].delimiter, Some('\\'));
        assert_eq!(l[3].server_name, "a \"q\"");
        assert_eq!(l[4].delimiter, None);
        assert_eq!(l[4].server_name, "we ird\"");
        assert_eq!(l[5].server_name, "Spam");
        assert!(l[5].junk_or_trash);
    }

    #[test]
    fn modified_utf7_round_trips() {
        assert_eq!(decode_mutf7("Entw&APw-rfe").unwrap(), "Entwürfe");
        assert_eq!(encode_mutf7("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(decode_mutf7("a&-b").unwrap(), "a&b");
        assert_eq!(encode_mutf7("a&b"), "a&-b");
        let s = "日本語/テスト 😀";
        assert_eq!(decode_mutf7(&encode_mutf7(s)).unwrap(), s);
        assert!(decode_mutf7("bad&AB").is_none());
        assert_eq!(config_name("Lists.&APw-", Some('.')), "Lists/ü");
        assert_eq!(server_name("Lists/ü", Some('.')), "Lists.&APw-");
    }
}
