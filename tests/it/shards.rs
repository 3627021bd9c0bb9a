//! `--shard K/N` against a real Dovecot: two shards over the same
//! accounts deliver every message exactly once between them, each only
//! its own accounts; changing N refuses a keep-mode account that moved
//! to a shard without its seen-state until `--adopt`, which then
//! delivers nothing twice.

use crate::support;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use support::{delivered, AccountBuilder, ConfigBuilder, Dovecot, Env, User};

/// The documented hash, computed here independently of mailretr: jump
/// consistent hash (Lamping and Veach) of the first 8 bytes of
/// SHA-256(name), big-endian, into N buckets, plus 1.
fn shard_of(name: &str, n: u64) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut key = u64::from_be_bytes(digest[..8].try_into().unwrap());
    let (mut b, mut j) = (-1i64, 0i64);
    while j < n as i64 {
        b = j;
        key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
        j = ((b + 1) as f64 * (2147483648.0 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u64 + 1
}

fn maildir(env: &Env, name: &str) -> PathBuf {
    env.path(format!("Maildir-{name}"))
}

fn message(account: &str, n: usize) -> Vec<u8> {
    format!("Subject: {account} {n}\nMessage-ID: <{account}-{n}@shards.test>\n\nbody {n}\n")
        .into_bytes()
}

/// A config with `accounts` (name, user, protocol, keep), each to its own
/// Maildir.
fn config(env: &Env, dovecot: &Dovecot, accounts: &[(String, User, &str, bool)]) {
    let mut config = ConfigBuilder::new(env).hostname("test.example");
    for (name, user, protocol, keep) in accounts {
        let account = AccountBuilder::dovecot(name, protocol, dovecot, user)
            .line("add_received = false")
            .keep(*keep);
        config = config.account_to_maildir(account, maildir(env, name));
    }
    config.write(env);
}

fn fetch_shard(env: &Env, shard: &str, state: &str, extra: &[&str]) -> support::Output {
    let state_dir = env.path(state);
    let mut args = vec![
        "fetch".to_string(),
        "--shard".into(),
        shard.into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    env.run(&args)
}

#[test]
fn two_shards_deliver_every_message_exactly_once_each_only_its_own() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let mut accounts = Vec::new();
    for i in 0..8 {
        let name = format!("acct{i}");
        let user = dovecot.new_user();
        for n in 0..2 {
            dovecot.add_message(&user, "INBOX", &message(&name, n));
        }
        let protocol = if i % 2 == 0 { "pop3" } else { "imap" };
        accounts.push((name, user, protocol, i % 4 == 1));
    }
    config(&env, dovecot, &accounts);
    let in_first: Vec<&str> = accounts
        .iter()
        .map(|a| a.0.as_str())
        .filter(|n| shard_of(n, 2) == 1)
        .collect();
    assert!(
        !in_first.is_empty() && in_first.len() < accounts.len(),
        "both shards get accounts: {in_first:?}"
    );

    fetch_shard(&env, "1/2", "state-1", &[]).expect_success();
    for (name, ..) in &accounts {
        let got = delivered(&maildir(&env, name)).len();
        let want = if in_first.contains(&name.as_str()) {
            2
        } else {
            0
        };
        assert_eq!(got, want, "{name} after shard 1/2");
    }
    fetch_shard(&env, "2/2", "state-2", &[]).expect_success();
    for (name, ..) in &accounts {
        let mut want: Vec<Vec<u8>> = (0..2).map(|n| message(name, n)).collect();
        want.sort();
        assert_eq!(delivered(&maildir(&env, name)), want, "{name} exactly once");
    }
    // Again, both shards: nothing new, nothing twice (keep-mode accounts
    // included).
    fetch_shard(&env, "1/2", "state-1", &[]).expect_code(1);
    fetch_shard(&env, "2/2", "state-2", &[]).expect_code(1);
    let total: usize = accounts
        .iter()
        .map(|(name, ..)| delivered(&maildir(&env, name)).len())
        .sum();
    assert_eq!(total, 16);

    // The status of each shard's state names only its accounts.
    let status = env.run(&[
        "--state-dir",
        &env.path("state-1").display().to_string(),
        "status",
        "--json",
    ]);
    status.expect_success();
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for a in json["accounts"].as_array().unwrap() {
        let name = a["name"].as_str().unwrap();
        assert_eq!(
            a["last_run"].is_null(),
            !in_first.contains(&name),
            "{name} in state-1"
        );
    }
}

#[test]
fn bad_shard_values_exit_5() {
    let env = Env::new();
    ConfigBuilder::new(&env)
        .account(AccountBuilder::new("a", "pop3", "localhost").password("x"))
        .maildir("home", env.path("Maildir"))
        .write(&env);
    for bad in ["0/2", "3/2", "1/0", "x", "1-2"] {
        let out = env.run(&["fetch", "--shard", bad]);
        out.expect_code(5);
        assert!(out.stderr.contains("K/N"), "{bad}: {}", out.stderr);
        env.run(&["watch", "--shard", bad]).expect_code(5);
    }
}

#[test]
fn changing_n_refuses_a_moved_keep_account_until_adopt_and_nothing_is_delivered_twice() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    // N goes from 3 to 2: `mover` is in shard 3 of 3, so it moves to
    // shard y of 2, whose state ran as y/3 without it; `stayer` (not in
    // shard 3) keeps its index, as the jump hash keeps every other.
    let names: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
    let mover = names.iter().find(|n| shard_of(n, 3) == 3).unwrap().clone();
    let stayer = names.iter().find(|n| shard_of(n, 3) != 3).unwrap().clone();
    assert_eq!(shard_of(&stayer, 2), shard_of(&stayer, 3));
    let (mover_user, stayer_user) = (dovecot.new_user(), dovecot.new_user());
    for n in 0..3 {
        dovecot.add_message(&mover_user, "INBOX", &message(&mover, n));
        dovecot.add_message(&stayer_user, "INBOX", &message(&stayer, n));
    }
    let accounts = vec![
        (mover.clone(), mover_user.clone(), "imap", true),
        (stayer.clone(), stayer_user.clone(), "pop3", true),
    ];
    config(&env, dovecot, &accounts);

    // N = 3: each state dir holds its shard's accounts.
    for k in 1..=3 {
        let out = fetch_shard(&env, &format!("{k}/3"), &format!("state-{k}"), &[]);
        assert!(out.code <= 1, "{k}/3: {}", out.stderr);
    }
    assert_eq!(delivered(&maildir(&env, &mover)).len(), 3);
    assert_eq!(delivered(&maildir(&env, &stayer)).len(), 3);

    // N = 2, reusing the state dirs of shards 1 and 2: the mover lands on
    // a state that has not seen it and is refused, with one line naming it.
    let y = shard_of(&mover, 2);
    let out = fetch_shard(&env, &format!("{y}/2"), &format!("state-{y}"), &[]);
    out.expect_code(5);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!("account {mover}:")))
        .unwrap_or_else(|| panic!("no line for {mover}: {}", out.stderr));
    assert!(line.contains("--adopt"), "{line}");
    assert_eq!(delivered(&maildir(&env, &mover)).len(), 3, "nothing twice");
    // The stayer's shard goes on as before.
    let s = shard_of(&stayer, 2);
    if s != y {
        fetch_shard(&env, &format!("{s}/2"), &format!("state-{s}"), &[]).expect_code(1);
    }

    // --adopt: the mail on the server counts as seen, nothing is fetched.
    let out = fetch_shard(&env, &format!("{y}/2"), &format!("state-{y}"), &["--adopt"]);
    assert!(out.code <= 1, "{}", out.stderr);
    assert!(out.stderr.contains("marked as seen"), "{}", out.stderr);
    assert_eq!(delivered(&maildir(&env, &mover)).len(), 3, "nothing twice");
    assert_eq!(
        dovecot.messages(&mover_user, "INBOX").len(),
        3,
        "kept on the server"
    );

    // From then on it is this shard's like any other: new mail, once.
    dovecot.add_message(&mover_user, "INBOX", &message(&mover, 3));
    fetch_shard(&env, &format!("{y}/2"), &format!("state-{y}"), &[]).expect_success();
    fetch_shard(&env, &format!("{y}/2"), &format!("state-{y}"), &[]).expect_code(1);
    let mut want: Vec<Vec<u8>> = (0..4).map(|n| message(&mover, n)).collect();
    want.sort();
    assert_eq!(delivered(&maildir(&env, &mover)), want);
    assert_eq!(delivered(&maildir(&env, &stayer)).len(), 3);
}

#[test]
fn changing_n_adopt_from_the_old_state_dir_delivers_what_arrived_in_the_gap_once() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    // N goes from 3 to 2, as above: `mover` leaves shard 3 of 3.
    let names: Vec<String> = (0..500).map(|i| format!("g{i}")).collect();
    let mover = names.iter().find(|n| shard_of(n, 3) == 3).unwrap().clone();
    let mover_user = dovecot.new_user();
    for n in 0..3 {
        dovecot.add_message(&mover_user, "INBOX", &message(&mover, n));
    }
    config(
        &env,
        dovecot,
        &[(mover.clone(), mover_user.clone(), "imap", true)],
    );
    for k in 1..=3 {
        let out = fetch_shard(&env, &format!("{k}/3"), &format!("state-{k}"), &[]);
        assert!(out.code <= 1, "{k}/3: {}", out.stderr);
    }
    assert_eq!(delivered(&maildir(&env, &mover)).len(), 3);

    // Mail arrives after the old shard's last run.
    dovecot.add_message(&mover_user, "INBOX", &message(&mover, 3));

    let y = shard_of(&mover, 2);
    let other = 3 - y;
    let old_dir = env.path("state-3").display().to_string();
    let other_dir = env.path(format!("state-{other}")).display().to_string();
    let old_db = env.path("state-3").join("state.db");
    let before = std::fs::read(&old_db).unwrap();

    // A dir that never had the account: still refused, naming both ways.
    let out = fetch_shard(
        &env,
        &format!("{y}/2"),
        &format!("state-{y}"),
        &["--adopt-from", &other_dir],
    );
    out.expect_code(5);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains(&format!("account {mover}:")))
        .unwrap_or_else(|| panic!("no line for {mover}: {}", out.stderr));
    assert!(
        line.contains("--adopt-from") && line.contains("--adopt "),
        "{line}"
    );
    assert_eq!(delivered(&maildir(&env, &mover)).len(), 3, "nothing yet");

    // The old shard's dir (with one that lacks it): the seen-state is
    // copied, and the message of the gap is delivered, once.
    let out = fetch_shard(
        &env,
        &format!("{y}/2"),
        &format!("state-{y}"),
        &["--adopt-from", &other_dir, "--adopt-from", &old_dir],
    );
    out.expect_success();
    assert!(
        out.stderr.contains("seen-state copied from"),
        "{}",
        out.stderr
    );
    let mut want: Vec<Vec<u8>> = (0..4).map(|n| message(&mover, n)).collect();
    want.sort();
    assert_eq!(
        delivered(&maildir(&env, &mover)),
        want,
        "the gap's message, once"
    );
    assert_eq!(dovecot.messages(&mover_user, "INBOX").len(), 4, "kept");
    assert_eq!(
        std::fs::read(&old_db).unwrap(),
        before,
        "old state.db unchanged"
    );

    // Current here from now on: no flag needed, nothing twice.
    fetch_shard(&env, &format!("{y}/2"), &format!("state-{y}"), &[]).expect_code(1);
    dovecot.add_message(&mover_user, "INBOX", &message(&mover, 4));
    fetch_shard(&env, &format!("{y}/2"), &format!("state-{y}"), &[]).expect_success();
    let mut want: Vec<Vec<u8>> = (0..5).map(|n| message(&mover, n)).collect();
    want.sort();
    assert_eq!(delivered(&maildir(&env, &mover)), want);

    // A dir without a state.db is an error, not "no state".
    let none = env.path("nowhere").display().to_string();
    let out = fetch_shard(&env, "3/3", "state-new", &["--adopt-from", &none]);
    assert!(out.stderr.contains("no state.db there"), "{}", out.stderr);
}
