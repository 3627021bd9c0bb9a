//! Multidrop routing of messages as MTAs really write them (the golden
//! fixtures in `tests/fixtures/mta/`: Postfix local and virtual, Exim,
//! qmail with a forward and with a loop, Dovecot LMTP, Gmail and
//! Microsoft 365 exports), fetched from a real Dovecot by the real binary
//! into per-recipient directories.

use std::fs;
use std::path::Path;

use crate::support::dovecot::Dovecot;
use crate::support::{AccountBuilder, ConfigBuilder, Env};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mta")
        .join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn subjects_in(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
                .filter_map(|m| {
                    m.lines()
                        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn subject_of(m: &[u8]) -> String {
    String::from_utf8_lossy(m)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        .unwrap()
}

#[test]
fn messages_as_mtas_write_them_route_and_only_a_real_loop_stays() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let names = [
        "postfix-local.eml",
        "postfix-virtual.eml",
        "exim.eml",
        "qmail.eml",
        "qmail-loop.eml",
        "dovecot-lmtp.eml",
        "gmail-export.eml",
        "m365-export.eml",
    ];
    for n in names {
        dovecot.add_message(&user, "INBOX", &fixture(n));
    }
    let env = Env::new();
    let files = env.path("files");
    let account = AccountBuilder::dovecot_pop3s("domain", dovecot, &user)
        .line(r#"multidrop = { local_domains = ["kroon.co.za"] }"#)
        .deliver_to(&["files"]);
    ConfigBuilder::new(&env)
        .general("add_received = false")
        .account(account)
        .destination(
            "files",
            &format!("type = \"directory\"\npath = \"{}/%U\"", files.display()),
        )
        .write(&env);
    let out = env.run(&["-q", "fetch"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The real loop is reported even with -q; nothing else is a loop.
    assert_eq!(
        out.stderr.matches("suspected mail loop").count(),
        1,
        "{}",
        out.stderr
    );
    let s = |n: &str| subject_of(&fixture(n));
    let mut to_jaco = vec![
        s("postfix-local.eml"),
        s("exim.eml"),
        s("qmail.eml"),
        s("dovecot-lmtp.eml"),
        s("gmail-export.eml"),
    ];
    to_jaco.sort();
    assert_eq!(subjects_in(&files.join("jaco@kroon.co.za")), to_jaco);
    // Postfix virtual: the address it was sent to (X-Original-To), not the
    // mailbox it was delivered into.
    assert_eq!(
        subjects_in(&files.join("info@kroon.co.za")),
        vec![s("postfix-virtual.eml")]
    );
    let mut dirs: Vec<String> = fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["info@kroon.co.za", "jaco@kroon.co.za"]);
    // Left on the server: the loop (never deleted) and the Microsoft 365
    // export, which names no envelope recipient mailretr reads (with no
    // postmaster set, it waits there, reported).
    let mut left: Vec<String> = dovecot
        .messages(&user, "INBOX")
        .iter()
        .map(|m| subject_of(m))
        .collect();
    left.sort();
    let mut want = vec![s("qmail-loop.eml"), s("m365-export.eml")];
    want.sort();
    assert_eq!(left, want);
}
