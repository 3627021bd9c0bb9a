//! Many accounts and many processes at once, against a real Dovecot: the
//! `--jobs` pool, the per-account lock (exit 8, stale locks taken over),
//! SQLite shared by parallel processes, and SIGTERM in the middle of a
//! fetch losing nothing.

use crate::support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::delivered;
use support::{AccountBuilder, ConfigBuilder, Dovecot, Env, User};

/// An IMAPS account `name` on the shared Dovecot, without `Received:`
/// headers.
fn imap(dovecot: &Dovecot, name: &str, user: &User) -> AccountBuilder {
    AccountBuilder::dovecot_imaps(name, dovecot, user).line("add_received = false")
}

/// `[general]`, no accounts yet.
fn general(env: &Env) -> ConfigBuilder {
    ConfigBuilder::new(env).hostname("test.example")
}

/// Adds `account`, delivering to its own Maildir under `env`.
fn add_account(config: ConfigBuilder, env: &Env, account: AccountBuilder) -> ConfigBuilder {
    let path = maildir(env, account.name());
    config.account_to_maildir(account, path)
}

fn maildir(env: &Env, name: &str) -> PathBuf {
    env.path(format!("Maildir-{name}"))
}

fn message(user: &User, n: usize, size: usize) -> Vec<u8> {
    let mut m = format!(
        "Subject: {} {n}\nMessage-ID: <{}-{n}@parallel.test>\n\n",
        user.name, user.name
    )
    .into_bytes();
    while m.len() < size {
        m.extend_from_slice(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n");
    }
    m
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    let mut cmd = env.cmd();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn mailretr")
}

/// Waits for a spawned run, killing it after `timeout`.
fn finish(mut child: Child, timeout: Duration) -> support::Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailretr did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    support::Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Waits until the account's lock file names `pid`: that process holds it.
fn wait_for_lock(env: &Env, account: &str, pid: u32) {
    let path = env
        .path("state")
        .join("locks")
        .join(format!("{account}.lock"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&path).unwrap_or_default().trim() != pid.to_string() {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never took {account}'s lock"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn four_accounts_in_one_jobs_4_run_are_all_delivered() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let mut config = general(&env);
    let mut expected = Vec::new();
    for (i, count) in [3usize, 10, 1, 40].into_iter().enumerate() {
        let user = dovecot.new_user();
        let name = format!("acct{i}");
        // One account is big, one has a slow password command: neither
        // may hold up the others (they all finish; nothing is lost).
        let size = if i == 3 { 64 * 1024 } else { 300 };
        let mut msgs: Vec<Vec<u8>> = (0..count).map(|n| message(&user, n, size)).collect();
        for m in &msgs {
            dovecot.add_message(&user, "INBOX", m);
        }
        msgs.sort();
        let mut account = imap(dovecot, &name, &user);
        if i == 2 {
            account = account.password_command(&format!("sleep 1; echo {}", user.password));
        }
        config = add_account(config, &env, account);
        expected.push((name, msgs));
    }
    config.write(&env);
    let out = env.run(&["-v", "fetch", "--jobs", "4"]);
    out.expect_success();
    for (name, msgs) in &expected {
        assert_eq!(&delivered(&maildir(&env, name)), msgs, "{name}");
    }
    // One summary line per account, each whole.
    for (name, msgs) in &expected {
        let line = format!("mailretr: account {name}: {} messages", msgs.len());
        assert_eq!(
            out.stderr.lines().filter(|l| l.starts_with(&line)).count(),
            1,
            "{}",
            out.stderr
        );
    }
    assert!(
        out.stderr.lines().all(|l| l.starts_with("mailretr: ")),
        "{}",
        out.stderr
    );
    env.run(&["fetch", "-j", "4"]).expect_code(1);
}

#[test]
fn a_second_process_on_a_busy_account_exits_8_and_a_stale_lock_is_taken_over() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let slow_user = dovecot.new_user();
    let free_user = dovecot.new_user();
    dovecot.add_message(&slow_user, "INBOX", &message(&slow_user, 1, 100));
    dovecot.add_message(&free_user, "INBOX", &message(&free_user, 1, 100));
    // The password command holds the first run inside the account's lock.
    let slow = imap(dovecot, "slow", &slow_user)
        .password_command(&format!("sleep 3; echo {}", slow_user.password));
    let config = add_account(general(&env), &env, slow);
    add_account(config, &env, imap(dovecot, "free", &free_user)).write(&env);

    let first = spawn(&env, &["fetch", "slow"]);
    let first_pid = first.id();
    wait_for_lock(&env, "slow", first_pid);
    let second = env.run(&["fetch", "slow"]);
    second.expect_code(8);
    let lines: Vec<&str> = second.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", second.stderr);
    assert!(lines[0].contains("account slow"), "{}", lines[0]);
    assert!(
        lines[0].contains(&format!("pid {first_pid}")),
        "{}",
        lines[0]
    );
    // The busy account is skipped; the other one is fetched.
    let both = env.run(&["fetch", "slow", "free"]);
    both.expect_success();
    assert!(both.stderr.contains("account slow"), "{}", both.stderr);
    assert_eq!(delivered(&maildir(&env, "free")).len(), 1);
    finish(first, Duration::from_secs(60)).expect_success();
    assert_eq!(delivered(&maildir(&env, "slow")).len(), 1);

    // A run killed while holding the lock leaves the file behind; the
    // next run takes it over.
    dovecot.add_message(&slow_user, "INBOX", &message(&slow_user, 2, 100));
    let mut killed = spawn(&env, &["fetch", "slow"]);
    wait_for_lock(&env, "slow", killed.id());
    killed.kill().unwrap();
    killed.wait().unwrap();
    let after = env.run(&["fetch", "slow"]);
    after.expect_success();
    assert_eq!(delivered(&maildir(&env, "slow")).len(), 2);
}

#[test]
fn parallel_processes_share_the_state_database_safely() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let mut config = general(&env);
    let mut expected = Vec::new();
    for i in 0..6 {
        let user = dovecot.new_user();
        let mut msgs: Vec<Vec<u8>> = (0..25).map(|n| message(&user, n, 500)).collect();
        for m in &msgs {
            dovecot.add_message(&user, "INBOX", m);
        }
        msgs.sort();
        let name = format!("p{i}");
        // keep: the seen-state alone must stop a second delivery.
        config = add_account(config, &env, imap(dovecot, &name, &user).keep(true));
        expected.push((name, msgs));
    }
    config.write(&env);
    // Three processes, two accounts each in two threads, one database.
    let runs: Vec<Child> = (0..3)
        .map(|p| {
            let a = format!("p{}", 2 * p);
            let b = format!("p{}", 2 * p + 1);
            spawn(&env, &["fetch", "-j", "2", &a, &b])
        })
        .collect();
    for run in runs {
        let out = finish(run, Duration::from_secs(60));
        out.expect_success();
        assert_eq!(out.stderr, "");
    }
    for (name, msgs) in &expected {
        assert_eq!(&delivered(&maildir(&env, name)), msgs, "{name}");
    }
    // Everything was recorded: nothing is new, in any number of threads.
    let again = env.run(&["fetch", "-j", "6"]);
    again.expect_code(1);
    for (name, msgs) in &expected {
        assert_eq!(delivered(&maildir(&env, name)).len(), msgs.len(), "{name}");
    }
}

#[test]
fn sigterm_during_a_fetch_finishes_the_message_in_hand_and_loses_nothing() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let user = dovecot.new_user();
    let mut originals: Vec<Vec<u8>> = (0..300).map(|n| message(&user, n, 30_000)).collect();
    for m in &originals {
        dovecot.add_message(&user, "INBOX", m);
    }
    originals.sort();
    add_account(general(&env), &env, imap(dovecot, "big", &user)).write(&env);
    let run = spawn(&env, &["fetch"]);
    let new = maildir(&env, "big").join("new");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "nothing delivered");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(run.id() as i32, libc::SIGTERM) };
    let out = finish(run, Duration::from_secs(60));
    out.expect_success();
    assert_eq!(out.stderr, "");
    let first = delivered(&maildir(&env, "big"));
    let left = dovecot.messages(&user, "INBOX");
    println!(
        "SIGTERM after the first delivery: {} delivered, {} left on the server",
        first.len(),
        left.len()
    );
    // Every message is in exactly one place: delivered or on the server.
    assert_eq!(first.len() + left.len(), originals.len());

    let rest = env.run(&["fetch"]);
    rest.expect_code(if left.is_empty() { 1 } else { 0 });
    let all = delivered(&maildir(&env, "big"));
    // Dovecot may answer pipelined fetches out of UID order, so the first
    // run can have committed a higher UID than some it left: the second
    // run must still ask for those.
    assert_eq!(
        dovecot.messages(&user, "INBOX").len(),
        0,
        "left behind: {} delivered in all",
        all.len()
    );
    assert_eq!(all, originals, "everything once, nothing twice");
    let unique: HashSet<&Vec<u8>> = all.iter().collect();
    assert_eq!(unique.len(), all.len());
    assert!(dovecot.messages(&user, "INBOX").is_empty());
}
