//! Where a message from a source folder lands when a destination mirrors
//! the source's tree (`subfolders`): pure functions from a folder's
//! levels (`Envelope::mailbox`, relative to the source's personal
//! namespace, decoded) to a directory under a Maildir's root or a folder
//! name on an IMAP server.
//!
//! The source server chooses the names, and a hostile one can send
//! anything: `..`, `a/../../b`, line breaks, empty levels. Nothing a name
//! holds can lead outside the destination's root: characters that would
//! mean something to the file system are escaped (`\` and two hex
//! digits, as Dovecot's listescape plugin writes them), and the names
//! that cannot be escaped into something harmless (an empty level; `.`,
//! `..` and a Maildir's own `cur`, `new`, `tmp` as a verbatim level) are
//! refused: the message is then refused by the destination, stays on the
//! server under `on_refused`, and is reported.

use std::path::{Path, PathBuf};

use crate::config::Subfolders;

/// Longest name a level may become on disk (NAME_MAX on Linux and BSD).
const NAME_MAX: usize = 255;

/// `c` as the listescape escape: a backslash and two lower-case hex
/// digits per UTF-8 byte (`.` is `\2e`).
fn push_escaped(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("\\{b:02x}"));
    }
}

/// One level with `\`, `/`, control characters and the characters in
/// `also` escaped.
fn escape_level(level: &str, also: &[char]) -> String {
    let mut out = String::with_capacity(level.len());
    for c in level.chars() {
        if c == '\\' || c == '/' || c.is_control() || also.contains(&c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// The folder's name for messages: `Lists/a`, with each level shown
/// safely (for errors and logs).
pub fn display(mailbox: &[String]) -> String {
    crate::message::escape(&mailbox.join("/"))
}

/// The Maildir++ directory name for a folder (`.Lists.a`): each level
/// with `.` (the separator), `\`, `/` and control characters escaped as
/// Dovecot's listescape does (`\2e`, `\5c`, `\2f`, `\0a`), joined with
/// `.` after a leading `.`. `None` for INBOX (the root).
pub fn maildirpp_name(mailbox: &[String]) -> Result<Option<String>, String> {
    if mailbox.is_empty() {
        return Ok(None);
    }
    let mut name = String::new();
    for level in mailbox {
        if level.is_empty() {
            return Err(format!("folder {:?} has an empty level", display(mailbox)));
        }
        name.push('.');
        name.push_str(&escape_level(level, &['.']));
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "folder {:?} is too long for a Maildir++ folder name",
            display(mailbox)
        ));
    }
    Ok(Some(name))
}

/// The verbatim directories for a folder (`Lists/a`), one level each,
/// with `\`, `/` and control characters escaped (`\5c`, `\2f`, `\0a`).
/// An empty level, `.`, `..` and the Maildir's own `cur`, `new`, `tmp`
/// are refused.
pub fn verbatim_path(mailbox: &[String]) -> Result<PathBuf, String> {
    let mut path = PathBuf::new();
    for level in mailbox {
        let escaped = escape_level(level, &[]);
        let why = match escaped.as_str() {
            "" => Some("an empty level"),
            "." | ".." => Some("a level named . or .."),
            "cur" | "new" | "tmp" => Some("a level named like a Maildir's cur, new or tmp"),
            e if e.len() > NAME_MAX => Some("a level too long for a file name"),
            _ => None,
        };
        if let Some(why) = why {
            return Err(format!("folder {:?} has {why}", display(mailbox)));
        }
        path.push(escaped);
    }
    Ok(path)
}

/// The Maildir a message from `mailbox` goes into under `root`, and the
/// Maildirs between the root and it (verbatim: every level is a
/// Maildir), outermost first, ending with the target itself. With
/// `Subfolders::None`, and for INBOX, that is the root.
pub fn maildir_dirs(
    root: &Path,
    layout: Subfolders,
    mailbox: &[String],
) -> Result<Vec<PathBuf>, String> {
    match layout {
        Subfolders::None => Ok(vec![root.to_path_buf()]),
        Subfolders::MaildirPlusPlus => Ok(match maildirpp_name(mailbox)? {
            None => vec![root.to_path_buf()],
            Some(name) => vec![root.to_path_buf(), root.join(name)],
        }),
        Subfolders::Verbatim => {
            let relative = verbatim_path(mailbox)?;
            let mut dirs = vec![root.to_path_buf()];
            let mut dir = root.to_path_buf();
            for level in relative.iter() {
                dir.push(level);
                dirs.push(dir.clone());
            }
            Ok(dirs)
        }
    }
}

/// The IMAP folder (config-style: `/` between levels, decoded) a message
/// from `mailbox` is appended to on a destination server whose
/// personal namespace prefix is `prefix` (config-style, `INBOX/` on
/// Courier) and whose hierarchy delimiter is `delimiter`: INBOX goes to
/// `folder`; anything else, with `folder` left at INBOX, under the
/// prefix (`Lists/a`, `INBOX/Lists/a`), or else under `folder`
/// (`Backup/Lists/a`). A level holding the target's delimiter (it would
/// split into two), a quote, a backslash or a control character (no
/// quoted string carries them), or an empty one is refused; so is a
/// folder with levels on a server without a hierarchy.
pub fn imap_folder(
    folder: &str,
    prefix: &str,
    delimiter: Option<char>,
    mailbox: &[String],
) -> Result<String, String> {
    if mailbox.is_empty() {
        return Ok(folder.to_string());
    }
    if mailbox.len() > 1 && delimiter.is_none() {
        return Err(format!(
            "folder {:?} has levels and the destination server has no hierarchy",
            display(mailbox)
        ));
    }
    for level in mailbox {
        let bad = level.is_empty()
            || level
                .chars()
                .any(|c| c == '"' || c == '\\' || c == '/' || c.is_control())
            || delimiter.is_some_and(|d| level.contains(d));
        if bad {
            return Err(format!(
                "folder {:?} cannot be named on the destination server (an empty level, or one with its delimiter, a quote, a backslash or a control character)",
                display(mailbox)
            ));
        }
    }
    let base = if folder.eq_ignore_ascii_case("INBOX") {
        prefix.to_string()
    } else {
        format!("{}/", folder.trim_end_matches('/'))
    };
    Ok(format!("{base}{}", mailbox.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(levels: &[&str]) -> Vec<String> {
        levels.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn maildirpp_names_escape_dots_and_backslashes() {
        assert_eq!(maildirpp_name(&[]).unwrap(), None);
        assert_eq!(
            maildirpp_name(&mb(&["Lists", "a"])).unwrap().unwrap(),
            ".Lists.a"
        );
        assert_eq!(
            maildirpp_name(&mb(&["Lists", "dev.rust"]))
                .unwrap()
                .unwrap(),
            ".Lists.dev\\2erust"
        );
        assert_eq!(
            maildirpp_name(&mb(&["a\\b", "Grüße"])).unwrap().unwrap(),
            ".a\\5cb.Grüße"
        );
        assert!(maildirpp_name(&mb(&["a", ""])).is_err());
        assert!(maildirpp_name(&mb(&[&"x".repeat(300)])).is_err());
    }

    /// Whatever a hostile server names its folders, the result is one
    /// directory directly under the root (Maildir++) or a relative path of
    /// plain levels (verbatim), never `..`, never absolute.
    #[test]
    fn hostile_names_stay_under_the_root() {
        let root = Path::new("/home/u/Maildir");
        let hostile: [&[&str]; 8] = [
            &[".."],
            &["..", "x"],
            &["a/../../b"],
            &["/etc"],
            &["a\nb"],
            &["a", "..", "..", "b"],
            &["."],
            &["\u{1b}[31m"],
        ];
        for levels in hostile {
            let mailbox = mb(levels);
            if let Ok(Some(name)) = maildirpp_name(&mailbox) {
                assert!(name.starts_with('.') && !name.contains('/'), "{name:?}");
                assert!(!name.chars().any(char::is_control), "{name:?}");
                assert_ne!(name, "..");
                let dirs = maildir_dirs(root, Subfolders::MaildirPlusPlus, &mailbox).unwrap();
                assert_eq!(dirs.last().unwrap().parent(), Some(root));
            }
            match maildir_dirs(root, Subfolders::Verbatim, &mailbox) {
                Ok(dirs) => {
                    for d in &dirs {
                        assert!(d.starts_with(root), "{d:?}");
                        let rel = d.strip_prefix(root).unwrap();
                        assert!(
                            rel.components()
                                .all(|c| matches!(c, std::path::Component::Normal(_))),
                            "{d:?}"
                        );
                        assert!(!d.to_string_lossy().chars().any(char::is_control));
                    }
                }
                Err(e) => assert!(e.contains("folder"), "{e}"),
            }
        }
        assert_eq!(maildirpp_name(&mb(&[".."])).unwrap().unwrap(), ".\\2e\\2e");
        assert_eq!(
            maildirpp_name(&mb(&["a/../../b"])).unwrap().unwrap(),
            ".a\\2f\\2e\\2e\\2f\\2e\\2e\\2fb"
        );
        assert_eq!(maildirpp_name(&mb(&["a\nb"])).unwrap().unwrap(), ".a\\0ab");
        assert!(verbatim_path(&mb(&[".."])).is_err());
        assert!(verbatim_path(&mb(&["a", "new"])).is_err());
        assert!(verbatim_path(&mb(&[""])).is_err());
        assert_eq!(
            verbatim_path(&mb(&["a/../../b"])).unwrap(),
            PathBuf::from("a\\2f..\\2f..\\2fb")
        );
    }

    #[test]
    fn maildir_layouts() {
        let root = Path::new("/m");
        let lists = mb(&["Lists", "a"]);
        assert_eq!(
            maildir_dirs(root, Subfolders::None, &lists).unwrap(),
            [PathBuf::from("/m")]
        );
        assert_eq!(
            maildir_dirs(root, Subfolders::MaildirPlusPlus, &lists).unwrap(),
            [PathBuf::from("/m"), PathBuf::from("/m/.Lists.a")]
        );
        assert_eq!(
            maildir_dirs(root, Subfolders::Verbatim, &lists).unwrap(),
            [
                PathBuf::from("/m"),
                PathBuf::from("/m/Lists"),
                PathBuf::from("/m/Lists/a")
            ]
        );
        for layout in [Subfolders::MaildirPlusPlus, Subfolders::Verbatim] {
            assert_eq!(
                maildir_dirs(root, layout, &[]).unwrap(),
                [PathBuf::from("/m")]
            );
        }
    }

    #[test]
    fn imap_folders_mirror_under_the_prefix_or_folder() {
        let lists = mb(&["Lists", "a"]);
        assert_eq!(imap_folder("INBOX", "", Some('/'), &[]).unwrap(), "INBOX");
        assert_eq!(
            imap_folder("INBOX", "", Some('/'), &lists).unwrap(),
            "Lists/a"
        );
        assert_eq!(
            imap_folder("INBOX", "INBOX/", Some('.'), &lists).unwrap(),
            "INBOX/Lists/a"
        );
        assert_eq!(
            imap_folder("Backup", "", Some('/'), &lists).unwrap(),
            "Backup/Lists/a"
        );
        assert_eq!(imap_folder("Backup", "", Some('/'), &[]).unwrap(), "Backup");
        assert_eq!(
            imap_folder("INBOX", "", Some('/'), &mb(&["Grüße"])).unwrap(),
            "Grüße"
        );
        assert!(imap_folder("INBOX", "", Some('.'), &mb(&["dev.rust"])).is_err());
        assert!(imap_folder("INBOX", "", None, &lists).is_err());
        assert!(imap_folder("INBOX", "", Some('/'), &mb(&["a\"b"])).is_err());
        assert!(imap_folder("INBOX", "", Some('/'), &mb(&["a\r\nb"])).is_err());
        assert!(imap_folder("INBOX", "", Some('/'), &mb(&[""])).is_err());
    }
}
