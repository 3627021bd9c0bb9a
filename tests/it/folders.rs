//! The laptop's folders (issue 14): an IMAP account's tree mirrored into
//! a Maildir (`subfolders = "maildir++"` and `"verbatim"`) and into
//! another IMAP mailbox, with the server's flags carried over once
//! (`flags = true`); Courier's `INBOX.`-prefixed tree landing where
//! Dovecot's does; a spooled retry landing where the first attempt
//! would have; and hostile folder names that never write outside the
//! Maildir's root.

use crate::support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use support::imapc::Imap;
use support::{AccountBuilder, ConfigBuilder, Dovecot, Env, FakeServer, Step, User};

/// `(server folder, flags, message)`: a tree with a `.` in a name
/// (`Lists/dev.rust`), a UTF-8 name (`Grüße`, modified UTF-7 on the
/// wire), a `\Noselect` parent (`Lists`, which has only children) and a
/// `Junk` the patterns leave out.
fn tree() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let m = |n: u32, what: &str| -> Vec<u8> {
        format!(
            "From: a@example.org\nTo: b@example.org\nSubject: {what}\nMessage-ID: <f{n}@example.org>\nDate: Tue, 2 Jan 2024 10:00:00 +0000\n\nbody {n}\n"
        )
        .into_bytes()
    };
    vec![
        ("INBOX", "", m(1, "inbox unseen")),
        ("INBOX", "\\Seen", m(2, "inbox seen")),
        (
            "Lists/dev.rust",
            "\\Seen \\Flagged",
            m(3, "rust seen flagged"),
        ),
        (
            "Lists/dev.rust",
            "\\Answered \\Draft",
            m(4, "rust answered draft"),
        ),
        ("Gr&APwA3w-e", "\\Flagged", m(5, "grüße flagged")),
        ("Junk", "", m(6, "junk")),
    ]
}

/// A source user holding `tree()`.
fn source(dovecot: &Dovecot) -> User {
    let user = dovecot.new_user();
    let mut c = Imap::login(dovecot, &user);
    for folder in ["Lists/dev.rust", "Gr&APwA3w-e", "Junk"] {
        c.create(folder);
    }
    for (folder, flags, message) in tree() {
        c.append(folder, flags, &message);
    }
    let listed = c.list();
    assert!(
        listed
            .iter()
            .any(|(attrs, name)| name == "Lists" && attrs.contains("\\Noselect")),
        "Lists is a \\Noselect parent: {listed:?}"
    );
    user
}

/// The account: every folder but Junk, nothing changed on the server.
fn account(dovecot: &Dovecot, user: &User) -> AccountBuilder {
    account_for(dovecot, user, "[\"*\", \"!Junk\"]")
}

/// The account fetching `folders` (a TOML list).
fn account_for(dovecot: &Dovecot, user: &User, folders: &str) -> AccountBuilder {
    AccountBuilder::dovecot_imaps("laptop", dovecot, user)
        .keep(true)
        .line(&format!(
            "folders = {folders}\nmark_seen = false\nadd_received = false"
        ))
}

/// The messages in one Maildir: file name info (after `:2,`, or `new`
/// for a file in `new/`) to the bytes, sorted by bytes.
fn maildir(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let info = match name.split_once(":2,") {
                Some((_, info)) => {
                    assert_eq!(sub, "cur", "{name} has info but is in {sub}/");
                    info.to_string()
                }
                None => {
                    assert_eq!(sub, "new", "{name} has no info but is in {sub}/");
                    "new".to_string()
                }
            };
            out.push((info, fs::read(e.path()).unwrap()));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn expect(entries: &[(&str, usize)]) -> Vec<(String, Vec<u8>)> {
    let tree = tree();
    let mut v: Vec<(String, Vec<u8>)> = entries
        .iter()
        .map(|(info, i)| (info.to_string(), tree[*i].2.clone()))
        .collect();
    v.sort_by(|a, b| a.1.cmp(&b.1));
    v
}

/// The directories directly under `root`, sorted (none if it is missing).
fn subdirs(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut v: Vec<String> = entries
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn an_imap_tree_is_mirrored_into_maildirpp_with_flags() {
    let dovecot = Dovecot::shared();
    let user = source(dovecot);
    let env = Env::new();
    let root = env.path("Maildir");
    ConfigBuilder::new(&env)
        .account(account(dovecot, &user))
        .destination(
            "home",
            &format!(
                "type = \"maildir\"\npath = \"{}\"\nsubfolders = \"maildir++\"\nflags = true",
                root.display()
            ),
        )
        .write(&env);
    let check = env.run(&["config", "check"]);
    check.expect_success();
    assert!(
        check.stdout.contains("subfolders maildir++ flags"),
        "{}",
        check.stdout
    );
    env.run(&["fetch"]).expect_success();

    assert_eq!(
        subdirs(&root),
        [".Grüße", ".Lists.dev\\2erust", "cur", "new", "tmp"]
    );
    assert_eq!(maildir(&root), expect(&[("new", 0), ("S", 1)]));
    let rust = root.join(".Lists.dev\\2erust");
    assert_eq!(maildir(&rust), expect(&[("FS", 2), ("DR", 3)]));
    assert_eq!(maildir(&root.join(".Grüße")), expect(&[("F", 4)]));
    for folder in [&rust, &root.join(".Grüße")] {
        assert!(folder.join("maildirfolder").is_file(), "{folder:?}");
        assert!(folder.join("tmp").is_dir());
    }
    assert!(!root.join("maildirfolder").exists());

    // Dovecot itself (listescape on) reads such a Maildir as the same
    // tree with the same flags. (The UTF-8 name is stored as UTF-8; this
    // Dovecot keeps names in modified UTF-7 on disk unless its
    // mail_location says `:UTF-8`, so it is not asked about that one.)
    let reader = dovecot.new_user();
    copy_tree(&root, &reader.maildir());
    let mut c = Imap::login(dovecot, &reader);
    let names: Vec<String> = c.list().into_iter().map(|(_, n)| n).collect();
    for want in ["INBOX", "Lists/dev.rust"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    let got: Vec<(String, Vec<u8>)> = c.messages("Lists/dev.rust");
    let tree = tree();
    let mut want = vec![
        ("\\Flagged \\Seen".to_string(), tree[2].2.clone()),
        ("\\Answered \\Draft".to_string(), tree[3].2.clone()),
    ];
    want.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, want);
}

/// Copies a Maildir tree to `to`, owned as Dovecot wants its users'
/// mail.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    let dovecot = Dovecot::shared();
    if dovecot.as_root {
        let (uid, gid) = dovecot.mail_owner;
        let status = std::process::Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(to)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

#[test]
fn an_imap_tree_is_mirrored_verbatim() {
    let dovecot = Dovecot::shared();
    let user = source(dovecot);
    let env = Env::new();
    let root = env.path("Mail");
    ConfigBuilder::new(&env)
        .account(account(dovecot, &user))
        .destination(
            "home",
            &format!(
                "type = \"maildir\"\npath = \"{}\"\nsubfolders = \"verbatim\"\nflags = true",
                root.display()
            ),
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(subdirs(&root), ["Grüße", "Lists", "cur", "new", "tmp"]);
    assert_eq!(
        subdirs(&root.join("Lists")),
        ["cur", "dev.rust", "new", "tmp"]
    );
    assert_eq!(maildir(&root), expect(&[("new", 0), ("S", 1)]));
    assert!(maildir(&root.join("Lists")).is_empty());
    assert_eq!(
        maildir(&root.join("Lists/dev.rust")),
        expect(&[("FS", 2), ("DR", 3)])
    );
    assert_eq!(maildir(&root.join("Grüße")), expect(&[("F", 4)]));
    assert!(!root.join("Lists/dev.rust/maildirfolder").exists());

    // flags = false (the default): every message into new/, no info.
    let env = Env::new();
    let root = env.path("Mail");
    ConfigBuilder::new(&env)
        .account(account(dovecot, &user))
        .destination(
            "home",
            &format!(
                "type = \"maildir\"\npath = \"{}\"\nsubfolders = \"verbatim\"",
                root.display()
            ),
        )
        .write(&env);
    env.run(&["fetch"]).expect_success();
    assert_eq!(
        maildir(&root.join("Lists/dev.rust")),
        expect(&[("new", 2), ("new", 3)])
    );
}

#[test]
fn an_imap_tree_is_mirrored_into_another_mailbox_with_flags() {
    let dovecot = Dovecot::shared();
    let user = source(dovecot);
    let target = dovecot.new_user();
    let env = Env::new();
    ConfigBuilder::new(&env)
        .account(account(dovecot, &user).deliver_to(&["mirror"]))
        .imap(
            "mirror",
            dovecot,
            dovecot.imaps,
            &target,
            "subfolders = \"verbatim\"\nflags = true",
        )
        .write(&env);
    let out = env.run(&["fetch"]);
    out.expect_success();
    let mut c = Imap::login(dovecot, &target);
    let names: BTreeMap<String, String> = c.list().into_iter().map(|(a, n)| (n, a)).collect();
    assert!(names.contains_key("Lists/dev.rust"), "{names:?}");
    assert!(names.contains_key("Gr&APwA3w-e"), "{names:?}");
    assert!(!names.contains_key("Junk"), "{names:?}");
    let tree = tree();
    let want = |entries: &[(&str, usize)]| {
        let mut v: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(f, i)| (f.to_string(), tree[*i].2.clone()))
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    };
    assert_eq!(c.messages("INBOX"), want(&[("", 0), ("\\Seen", 1)]));
    assert_eq!(
        c.messages("Lists/dev.rust"),
        want(&[("\\Flagged \\Seen", 2), ("\\Answered \\Draft", 3)])
    );
    assert_eq!(c.messages("Gr&APwA3w-e"), want(&[("\\Flagged", 4)]));
}

#[test]
fn maildirpp_on_an_imap_destination_is_a_config_error() {
    let env = Env::new();
    ConfigBuilder::new(&env)
        .account(
            AccountBuilder::new("a", "imap", "localhost")
                .user("u")
                .deliver_to(&["m"]),
        )
        .destination(
            "m",
            "type = \"imap\"\nhost = \"localhost\"\nuser = \"u\"\nsubfolders = \"maildir++\"",
        )
        .write(&env);
    let out = env.run(&["config", "check"]);
    out.expect_code(5);
    assert!(
        out.stderr.contains("config.toml:") && out.stderr.contains("destination.m.subfolders"),
        "{}",
        out.stderr
    );
}

/// A Maildir delivery that fails for now (a full disk) is spooled with
/// its folder and flags; the retry lands in the same subfolder, in
/// `cur/` with the same info, and nothing is fetched twice.
#[test]
fn a_spooled_retry_lands_in_the_same_subfolder_with_the_same_flags() {
    let dovecot = Dovecot::shared();
    let user = source(dovecot);
    let env = Env::new();
    let root = env.path("Maildir");
    ConfigBuilder::new(&env)
        .account(account_for(dovecot, &user, "[\"Lists/*\"]"))
        .destination(
            "home",
            &format!(
                "type = \"maildir\"\npath = \"{}\"\nsubfolders = \"maildir++\"\nflags = true",
                root.display()
            ),
        )
        .write(&env);
    // The second write fails with ENOSPC: that message is spooled.
    let out = env
        .cmd()
        .arg("fetch")
        .env("MAILRETR_FAULT", "maildir-write:2:ENOSPC")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rust = root.join(".Lists.dev\\2erust");
    assert_eq!(maildir(&rust).len(), 1, "{stderr}");
    let listed = env.run(&["queue", "list", "--json"]);
    listed.expect_success();
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{}", listed.stdout);
    env.run(&["queue", "flush"]).expect_success();
    assert_eq!(maildir(&rust), expect(&[("FS", 2), ("DR", 3)]));
    assert_eq!(maildir(&root), Vec::new());
    // Nothing left, nothing fetched again.
    env.run(&["fetch"]).expect_code(1);
    assert_eq!(maildir(&rust).len(), 2);
}

/// A server that names its folders `../x`, `a/../../b` and `a\nb`
/// (modified UTF-7 `a&AAo-b`): Maildir++ escapes them into folders
/// directly under the root; verbatim refuses what it cannot escape; no
/// file is ever written outside the root.
#[test]
fn hostile_folder_names_never_leave_the_root() {
    for (server_name, layout, want) in [
        ("../x", "maildir++", Some(".\\2e\\2e.x")),
        ("a/../../b", "maildir++", Some(".a.\\2e\\2e.\\2e\\2e.b")),
        ("a&AAo-b", "maildir++", Some(".a\\0ab")),
        ("a&AAo-b", "verbatim", Some("a\\0ab")),
        ("../x", "verbatim", None),
        ("a/../../b", "verbatim", None),
    ] {
        let message = "Subject: hostile\r\n\r\nbody\r\n";
        let server = FakeServer::start(
            vec![
                Step::StartTls,
                Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] fake"),
                Step::expect("a1 AUTHENTICATE PLAIN "),
                Step::line("a1 OK [CAPABILITY IMAP4rev1] in"),
                Step::expect("a2 LIST \"\" \"*\""),
                Step::line(&format!("* LIST (\\HasNoChildren) \"/\" \"{server_name}\"")),
                Step::line("a2 OK LIST done"),
            ]
            .into_iter()
            .chain(one_message_in(1, server_name, "\\Seen", message))
            .chain([
                Step::expect("a3 LOGOUT"),
                Step::line("a3 OK bye"),
                Step::ExpectClose,
            ])
            .collect(),
        );
        let env = Env::new();
        let base = env.path("deep/er");
        let root = base.join("Maildir");
        ConfigBuilder::new(&env)
            .account(
                AccountBuilder::fake("fake", "imap", server.port())
                    .ca_file(&server.cert().cert_pem)
                    .keep(true)
                    .line("folders = [\"*\"]\nmark_seen = false\nadd_received = false"),
            )
            .destination(
                "home",
                &format!(
                    "type = \"maildir\"\npath = \"{}\"\nsubfolders = \"{layout}\"\nflags = true",
                    root.display()
                ),
            )
            .write(&env);
        let out = env.run(&["fetch"]);
        let what = format!(
            "{server_name} {layout}: exit {} {}\n{}",
            out.code,
            out.stderr,
            server.transcript()
        );
        assert!(server.settle(Duration::from_secs(10)), "{what}");
        assert_ne!(out.code, 23, "{what}");
        // Nothing beside the root, nothing above it (a refusal may not
        // even have created the root).
        assert!(
            subdirs(&env.path("deep")).iter().all(|d| d == "er"),
            "{what}"
        );
        assert!(subdirs(&base).iter().all(|d| d == "Maildir"), "{what}");
        assert!(!env.path("x").exists() && !env.path("b").exists(), "{what}");
        match want {
            Some(dir) => {
                assert_eq!(out.code, 0, "{what}");
                let got = maildir(&root.join(dir));
                assert_eq!(got.len(), 1, "{what}: {:?}", subdirs(&root));
                assert_eq!(got[0].0, "S", "{what}");
                assert_eq!(got[0].1, b"Subject: hostile\n\nbody\n", "{what}");
            }
            None => {
                // Refused (left on the server under on_refused = "keep",
                // reported); nothing written.
                assert!(out.stderr.contains("was refused"), "{what}");
                assert!(out.stderr.contains("left on the server"), "{what}");
                let dirs = if root.exists() {
                    subdirs(&root)
                } else {
                    Vec::new()
                };
                assert!(
                    dirs.iter()
                        .all(|d| ["cur", "new", "tmp"].contains(&d.as_str())),
                    "{what}: {dirs:?}"
                );
            }
        }
    }
}

/// Courier keeps folders under `INBOX.` (personal namespace prefix,
/// delimiter `.`): its `INBOX.Lists.a` lands in `.Lists.a`, where
/// Dovecot's `Lists/a` does, not in `.INBOX.Lists.a`.
/// A scripted server's side of selecting `folder` (with the size listing
/// sent along, tags `ab{first}` and `ab{first+1}`) that holds one
/// `message` with `flags`, and of fetching it (tag `ab{first+2}`).
fn one_message_in(first: u32, folder: &str, flags: &str, message: &str) -> Vec<Step> {
    let (select, list, fetch) = (first, first + 1, first + 2);
    vec![
        Step::expect(format!("ab{select} SELECT \"{folder}\"")),
        Step::expect(format!("ab{list} UID FETCH 1:* (UID RFC822.SIZE)")),
        Step::line("* 1 EXISTS"),
        Step::line("* OK [UIDVALIDITY 7] ok"),
        Step::line(&format!("ab{select} OK [READ-WRITE] selected")),
        Step::line(&format!("* 1 FETCH (UID 1 RFC822.SIZE {})", message.len())),
        Step::line(&format!("ab{list} OK done")),
        Step::expect(format!("ab{fetch} UID FETCH 1 (UID FLAGS BODY.PEEK[])")),
        Step::line(&format!(
            "* 1 FETCH (UID 1 FLAGS ({flags}) BODY[] {{{}}}",
            message.len()
        )),
        Step::send(format!("{message})\r\n")),
        Step::line(&format!("ab{fetch} OK done")),
    ]
}

#[test]
fn courier_folders_land_relative_to_its_namespace() {
    let message = "Subject: courier\r\n\r\nbody\r\n";
    let server = FakeServer::start(vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE IDLE AUTH=PLAIN SASL-IR] Courier-IMAP ready."),
        Step::expect("a1 AUTHENTICATE PLAIN "),
        Step::line("a1 OK LOGIN Ok."),
        Step::expect("a2 CAPABILITY"),
        Step::line("* CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE IDLE"),
        Step::line("a2 OK CAPABILITY completed"),
        Step::expect("ab1 NAMESPACE"),
        Step::line("* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\"))"),
        Step::line("ab1 OK NAMESPACE completed."),
        Step::expect("a3 LIST \"\" \"*\""),
        Step::line("* LIST (\\HasChildren) \".\" \"INBOX\""),
        Step::line("* LIST (\\HasChildren \\Noselect) \".\" \"INBOX.Lists\""),
        Step::line("* LIST (\\HasNoChildren) \".\" \"INBOX.Lists.a\""),
        Step::line("a3 OK LIST completed"),
    ]
    .into_iter()
    .chain(one_message_in(2, "INBOX.Lists.a", "\\Answered", message))
    .chain([
        Step::expect("a4 LOGOUT"),
        Step::line("* BYE Courier-IMAP server shutting down"),
        Step::line("a4 OK LOGOUT completed"),
        Step::ExpectClose,
    ])
    .collect());
    let env = Env::new();
    let root = env.path("Maildir");
    ConfigBuilder::new(&env)
        .account(
            AccountBuilder::fake("fake", "imap", server.port())
                .ca_file(&server.cert().cert_pem)
                .keep(true)
                .line("folders = [\"Lists/*\"]\nmark_seen = false\nadd_received = false"),
        )
        .destination(
            "home",
            &format!(
                "type = \"maildir\"\npath = \"{}\"\nsubfolders = \"maildir++\"\nflags = true",
                root.display()
            ),
        )
        .write(&env);
    let out = env.run(&["fetch"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, server.transcript());
    assert!(server.settle(Duration::from_secs(10)));
    server.assert_no_errors();
    assert_eq!(subdirs(&root), [".Lists.a", "cur", "new", "tmp"]);
    assert_eq!(
        maildir(&root.join(".Lists.a")),
        [("R".to_string(), b"Subject: courier\n\nbody\n".to_vec())]
    );
}
