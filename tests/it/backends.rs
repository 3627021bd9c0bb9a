//! Accounts from SQL and LDAP (`[[accounts_from]]`) and the `[report]`
//! table, through the real `mailretr` binary against real servers:
//! MariaDB, PostgreSQL 15 and OpenLDAP slapd started by `tests/support`,
//! SQLite files, and the shared Dovecot as the mail source.

use crate::support;

use std::time::{SystemTime, UNIX_EPOCH};

use support::dovecot::{Dovecot, User};
use support::mariadb::{self, MariaDb};
use support::postgres::{self, Postgres};
use support::slapd::{self, Slapd};
use support::{delivered, AccountBuilder, ConfigBuilder, Env, Output};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A mailbox on the shared Dovecot holding `n` small messages; returns
/// it and the total size of the messages.
fn mailbox_with(dovecot: &Dovecot, n: usize) -> (User, usize) {
    let (user, sizes) = mailbox_sized(dovecot, n);
    (user, sizes.iter().sum())
}

/// `mailbox_with`, returning each message's size.
fn mailbox_sized(dovecot: &Dovecot, n: usize) -> (User, Vec<usize>) {
    let user = dovecot.new_user();
    let mut total = Vec::new();
    for i in 0..n {
        let m = format!(
            "From: a@example.org\r\nTo: {0}@example.org\r\nSubject: {i} for {0}\r\nMessage-ID: <{0}.{i}@test>\r\n\r\nhello {0} {i}\r\n",
            user.name
        );
        total.push(m.len());
        dovecot.add_message(&user, "INBOX", m.as_bytes());
    }
    (user, total)
}

/// `[general]`, one Maildir destination `home`, and `extra` (the backend
/// and report tables).
fn config(env: &Env, extra: &str) -> String {
    config_with(env, None, extra)
}

/// `config`, with a file account besides.
fn config_with(env: &Env, account: Option<AccountBuilder>, extra: &str) -> String {
    let mut base = ConfigBuilder::new(env)
        .hostname("test.example")
        .maildir("home", env.path("Maildir"));
    if let Some(a) = account {
        base = base.account(a);
    }
    format!("{}\n{extra}", base.build())
}

fn q(s: impl std::fmt::Display) -> String {
    format!("{:?}", s.to_string())
}

/// The shared `defaults` of the SQL tests: every row's server is the
/// test Dovecot's POP3S, trusted through its certificate.
fn defaults(dovecot: &Dovecot) -> String {
    format!(
        "defaults = {{ host = \"localhost\", port = {}, ca_file = {}, deliver_to = [\"home\"] }}",
        dovecot.pop3s,
        q(dovecot.cert_pem.display())
    )
}

/// Panics when any secret shows in what the run printed.
#[track_caller]
fn assert_no_secrets(out: &Output, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "secret {s:?} in the output:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

/// The messages delivered for `user` (their To: names the user).
fn delivered_for(env: &Env, user: &User) -> usize {
    delivered(&env.path("Maildir"))
        .iter()
        .filter(|m| String::from_utf8_lossy(m).contains(&format!("To: {}@example.org", user.name)))
        .count()
}

/// One report row as text fields: account, started, finished, outcome,
/// exit_code, messages, bytes, spooled, error ("NULL" when NULL).
type ReportRow = Vec<String>;

/// Checks a report row's every column.
#[track_caller]
#[allow(clippy::too_many_arguments)]
fn check_row(
    row: &ReportRow,
    account: &str,
    since: i64,
    outcome: &str,
    exit_code: i32,
    messages: u64,
    bytes: Option<usize>,
    error: Option<&str>,
) {
    assert_eq!(row.len(), 9, "{row:?}");
    assert_eq!(row[0], account, "{row:?}");
    let started: i64 = row[1].parse().unwrap();
    let finished: i64 = row[2].parse().unwrap();
    assert!(
        started >= since - 1 && started <= finished && finished <= now() + 1,
        "{row:?}"
    );
    assert_eq!(row[3], outcome, "{row:?}");
    assert_eq!(row[4], exit_code.to_string(), "{row:?}");
    assert_eq!(row[5], messages.to_string(), "{row:?}");
    match bytes {
        // What was retrieved: the messages as delivered (with the
        // Received: header mailretr adds), so more than what was put in
        // the mailbox, by at most one header's worth each.
        Some(b) => {
            let n: usize = row[6].parse().unwrap();
            assert!(
                n > b && n < b + 400 * messages as usize,
                "{row:?}: bytes, for {b} put in"
            );
        }
        None => assert_eq!(row[6], "0", "{row:?}"),
    }
    assert_eq!(row[7], "0", "{row:?}");
    match error {
        None => assert_eq!(row[8], "NULL", "{row:?}"),
        Some(e) => assert!(row[8].contains(e), "{row:?}"),
    }
}

fn tsv(text: &str) -> Vec<ReportRow> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

const REPORT_SELECT: &str = "SELECT account, started, finished, outcome, exit_code, messages, bytes, spooled, COALESCE(error, 'NULL') FROM mailretr_status ORDER BY account";

#[test]
fn mariadb_accounts_and_defaults_fetch_mail_and_report_every_column() {
    let dovecot = Dovecot::shared();
    let db = MariaDb::shared();
    let name = db.new_database();
    let (alice, alice_bytes) = mailbox_with(dovecot, 2);
    let (bob, bob_bytes) = mailbox_with(dovecot, 1);
    let (carol, carol_bytes) = mailbox_with(dovecot, 1);
    db.root_sql(
        Some(&name),
        &format!(
            "CREATE TABLE mailbox (name VARCHAR(64), protocol VARCHAR(8), port INT NULL,
                                   user VARCHAR(64), password VARCHAR(64), keep TINYINT NULL,
                                   active INT);
             INSERT INTO mailbox VALUES
               ('alice', 'pop3', NULL, '{}', '{}', NULL, 1),
               ('bob', 'imap', {}, '{}', '{}', 1, 1),
               ('gone', 'pop3', NULL, 'nobody', 'x', NULL, 0);",
            alice.name, alice.password, dovecot.imaps, bob.name, bob.password
        ),
    );
    let env = Env::new();
    // A file account next to the backend's.
    let file_account = AccountBuilder::dovecot_pop3s("carol", dovecot, &carol);
    let text = config_with(
        &env,
        Some(file_account),
        &format!(
            "[[accounts_from]]
type = \"sql\"
url = {}
password = {}
query = \"SELECT name, protocol, port, user, password, keep FROM mailbox WHERE active = 1\"
{}

[report]
url = {}
password = {}
",
            q(db.url(&name)),
            q(mariadb::PASSWORD),
            defaults(dovecot),
            q(db.url(&name)),
            q(mariadb::PASSWORD),
        ),
    );
    env.write_config(&text);

    let check = env.run(&["config", "check"]);
    check.expect_code(0);
    let label = format!(
        "accounts_from[0] (mysql://mailretr@127.0.0.1:{}/{name})",
        db.port
    );
    assert!(
        check.stdout.contains(&format!("{label}: 2 accounts")),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains(&format!(
            "account alice (from {label}): pop3://{}@localhost:{}",
            alice.name, dovecot.pop3s
        )),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("password from the backend"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("account carol: pop3://"),
        "{}",
        check.stdout
    );
    assert!(!check.stdout.contains("gone"), "{}", check.stdout);
    assert_no_secrets(&check, &[mariadb::PASSWORD, &alice.password, &bob.password]);

    let since = now();
    let out = env.run(&["-v", "fetch"]);
    out.expect_code(0);
    assert_no_secrets(&out, &[mariadb::PASSWORD, &alice.password, &bob.password]);
    assert_eq!(delivered_for(&env, &alice), 2);
    assert_eq!(delivered_for(&env, &bob), 1);
    assert_eq!(delivered_for(&env, &carol), 1);
    assert!(
        dovecot.messages(&alice, "INBOX").is_empty(),
        "alice: not keep"
    );
    assert_eq!(dovecot.messages(&bob, "INBOX").len(), 1, "bob: keep = 1");

    let rows = tsv(&db.root_sql(Some(&name), REPORT_SELECT));
    assert_eq!(rows.len(), 3, "{rows:?}");
    check_row(
        &rows[0],
        "alice",
        since,
        "retrieved",
        0,
        2,
        Some(alice_bytes),
        None,
    );
    check_row(
        &rows[1],
        "bob",
        since,
        "retrieved",
        0,
        1,
        Some(bob_bytes),
        None,
    );
    check_row(
        &rows[2],
        "carol",
        since,
        "retrieved",
        0,
        1,
        Some(carol_bytes),
        None,
    );

    // The next run upserts: still one row per account, now "no mail".
    let since = now();
    env.run(&["fetch"]).expect_code(1);
    let rows = tsv(&db.root_sql(Some(&name), REPORT_SELECT));
    assert_eq!(rows.len(), 3, "{rows:?}");
    check_row(&rows[0], "alice", since, "no_mail", 1, 0, None, None);
}

#[test]
fn postgres_bad_row_is_one_error_and_the_good_rows_still_run() {
    let dovecot = Dovecot::shared();
    let pg = Postgres::shared();
    let name = pg.new_database();
    let (alice, alice_bytes) = mailbox_with(dovecot, 1);
    let (bob, _) = mailbox_with(dovecot, 1);
    pg.sql(
        &name,
        &format!(
            "CREATE TABLE mailbox (name TEXT, protocol TEXT, user_name TEXT, password TEXT,
                                   keep BOOLEAN, fetch_limit INTEGER);
             INSERT INTO mailbox VALUES
               ('alice', 'pop3', '{}', '{}', false, NULL),
               ('broken', 'pop4', 'x', 'hunter2', NULL, NULL),
               ('bob', 'pop3', '{}', '{}', NULL, 0);",
            alice.name, alice.password, bob.name, bob.password
        ),
    );
    let env = Env::new();
    env.write_config(&config(
        &env,
        &format!(
            "[[accounts_from]]
type = \"sql\"
url = {}
password_command = \"echo {}\"
query = \"SELECT name, protocol, user_name AS user, password, keep, fetch_limit FROM mailbox ORDER BY name\"
{}

[report]
url = {}
password = {}
",
            q(pg.url(&name)),
            postgres::PASSWORD,
            defaults(dovecot),
            q(pg.url(&name)),
            q(postgres::PASSWORD),
        ),
    ));
    let since = now();
    let out = env.run(&["fetch"]);
    // A config error outranks the mail retrieved for alice.
    out.expect_code(5);
    assert_no_secrets(
        &out,
        &[
            postgres::PASSWORD,
            "hunter2",
            &alice.password,
            &bob.password,
        ],
    );
    let label = format!(
        "accounts_from[0] (postgres://mailretr@127.0.0.1:{}/{name}?sslmode=disable)",
        pg.port
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per bad row:\n{}", out.stderr);
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "{label}: row \"broken\": column protocol: unknown variant `pop4`"
        ))),
        "{}",
        out.stderr
    );
    assert!(
        lines.iter().any(|l| l.contains(&format!(
            "{label}: row \"bob\": column fetch_limit: must be at least 1"
        ))),
        "{}",
        out.stderr
    );
    assert_eq!(delivered_for(&env, &alice), 1);
    assert_eq!(delivered_for(&env, &bob), 0);
    let rows = tsv(&pg.sql(&name, REPORT_SELECT));
    assert_eq!(rows.len(), 1, "only the account that ran: {rows:?}");
    check_row(
        &rows[0],
        "alice",
        since,
        "retrieved",
        0,
        1,
        Some(alice_bytes),
        None,
    );

    // `config check` shows the same errors and exits 5.
    let check = env.run(&["config", "check"]);
    check.expect_code(5);
    assert!(
        check.stdout.contains("account alice (from "),
        "{}",
        check.stdout
    );
    assert!(check.stderr.contains("row \"broken\""), "{}", check.stderr);
}

#[test]
fn sqlite_accounts_report_good_failing_and_partial_runs() {
    let dovecot = Dovecot::shared();
    let (good, good_bytes) = mailbox_with(dovecot, 1);
    let (wrong, _) = mailbox_with(dovecot, 1);
    let (limited, limited_sizes) = mailbox_sized(dovecot, 3);
    let env = Env::new();
    let accounts_db = env.path("accounts.db");
    {
        let c = rusqlite::Connection::open(&accounts_db).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE mailbox (name TEXT, user TEXT, password TEXT, fetch_limit INTEGER,
                                   folders TEXT, protocol TEXT);
             INSERT INTO mailbox VALUES
               ('good', '{}', '{}', NULL, NULL, NULL),
               ('wrong', '{}', 'not-the-password', NULL, NULL, NULL),
               ('limited', '{}', '{}', 2, 'INBOX', 'imap');",
            good.name, good.password, wrong.name, limited.name, limited.password
        ))
        .unwrap();
    }
    env.write_config(&config(
        &env,
        &format!(
            "[[accounts_from]]
type = \"sql\"
url = \"sqlite://accounts.db\"
query = \"SELECT name, user, password, fetch_limit, folders, protocol, CASE WHEN protocol = 'imap' THEN {} END AS port FROM mailbox\"
defaults = {{ protocol = \"pop3\", host = \"localhost\", port = {}, ca_file = {}, deliver_to = [\"home\"] }}

[report]
url = \"sqlite://report.db\"
",
            dovecot.imaps,
            dovecot.pop3s,
            q(dovecot.cert_pem.display()),
        ),
    ));
    // The config sits in its own directory: sqlite paths are taken from
    // there, so put the database next to it.
    let config_dir = env.config_path().parent().unwrap().to_path_buf();
    std::fs::rename(&accounts_db, config_dir.join("accounts.db")).unwrap();
    let since = now();
    let out = env.run(&["fetch"]);
    // good retrieved (0) wins over wrong's auth failure.
    out.expect_code(0);
    assert_no_secrets(
        &out,
        &[&good.password, &limited.password, "not-the-password"],
    );
    assert!(out.stderr.contains("wrong"), "{}", out.stderr);
    assert_eq!(delivered_for(&env, &good), 1);
    assert_eq!(delivered_for(&env, &limited), 2);

    let c = rusqlite::Connection::open(config_dir.join("report.db")).unwrap();
    let mut stmt = c.prepare(REPORT_SELECT).unwrap();
    let rows: Vec<ReportRow> = stmt
        .query_map([], |r| {
            (0..9)
                .map(|i| {
                    let v: rusqlite::types::Value = r.get(i)?;
                    Ok(match v {
                        rusqlite::types::Value::Integer(n) => n.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                })
                .collect()
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    // A partial run: fetch_limit took two of three messages.
    let two = limited_sizes[0] + limited_sizes[1];
    check_row(
        &rows[1],
        "limited",
        since,
        "limit_reached",
        13,
        2,
        Some(two),
        None,
    );
    check_row(
        &rows[0],
        "good",
        since,
        "retrieved",
        0,
        1,
        Some(good_bytes),
        None,
    );
    check_row(
        &rows[2],
        "wrong",
        since,
        "failed",
        3,
        0,
        None,
        Some("authentication failed"),
    );
    assert!(!rows[2][8].contains("not-the-password"), "{rows:?}");
    assert_eq!(rows[2][8].lines().count(), 1, "{rows:?}");
}

#[test]
fn ldap_accounts_over_ldaps_and_starttls_with_a_private_ca() {
    let dovecot = Dovecot::shared();
    let ldap = Slapd::shared();
    let mut users = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..2 {
        let ou = ldap.new_ou();
        let (user, _) = mailbox_with(dovecot, 1);
        ldap.add(&format!(
            "dn: uid={0},{ou}\nobjectClass: inetOrgPerson\nuid: {0}\ncn: {0}\nsn: box\nuserPassword: {1}\n",
            user.name, user.password
        ));
        users.push(user);
        bases.push(ou);
    }
    let env = Env::new();
    let backend = |url: String, starttls: bool, base: &str| {
        format!(
            "[[accounts_from]]
type = \"ldap\"
url = {}
{}ca_file = {}
bind_dn = {}
password = {}
base = {}
filter = \"(objectClass=inetOrgPerson)\"
attributes = {{ name = \"uid\", user = \"cn\", password = \"userPassword\" }}
defaults = {{ protocol = \"pop3\", host = \"localhost\", port = {}, ca_file = {}, deliver_to = [\"home\"] }}
",
            q(url),
            if starttls { "starttls = true\n" } else { "" },
            q(ldap.cert_pem.display()),
            q(slapd::ADMIN_DN),
            q(slapd::ADMIN_PASSWORD),
            q(base),
            dovecot.pop3s,
            q(dovecot.cert_pem.display()),
        )
    };
    env.write_config(&config(
        &env,
        &format!(
            "{}\n{}",
            backend(
                format!("ldaps://127.0.0.1:{}", ldap.ldaps),
                false,
                &bases[0]
            ),
            backend(format!("ldap://127.0.0.1:{}", ldap.ldap), true, &bases[1]),
        ),
    ));
    let check = env.run(&["config", "check"]);
    check.expect_code(0);
    for u in &users {
        assert!(
            check
                .stdout
                .contains(&format!("account {} (from accounts_from[", u.name)),
            "{}",
            check.stdout
        );
    }
    let out = env.run(&["-v", "fetch"]);
    out.expect_code(0);
    assert_no_secrets(
        &out,
        &[
            slapd::ADMIN_PASSWORD,
            &users[0].password,
            &users[1].password,
        ],
    );
    for u in &users {
        assert_eq!(delivered_for(&env, u), 1, "{}", out.stderr);
    }

    // Without the private CA the certificate is not trusted: the backend
    // is "down" (exit 2), one line.
    let env = Env::new();
    env.write_config(&config(
        &env,
        &backend(
            format!("ldaps://127.0.0.1:{}", ldap.ldaps),
            false,
            &bases[0],
        )
        .replace(
            &format!("ca_file = {}\nbind_dn", q(ldap.cert_pem.display())),
            "bind_dn",
        ),
    ));
    let out = env.run(&["fetch"]);
    out.expect_code(2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("accounts_from[0] (ldaps://127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert_no_secrets(&out, &[slapd::ADMIN_PASSWORD]);
}

#[test]
fn backend_down_without_cache_is_one_error_and_file_accounts_still_run() {
    let dovecot = Dovecot::shared();
    let (carol, _) = mailbox_with(dovecot, 1);
    let env = Env::new();
    let port = mariadb::free_port();
    let file_account = AccountBuilder::dovecot_pop3s("carol", dovecot, &carol);
    env.write_config(&config_with(
        &env,
        Some(file_account),
        &format!(
            "[[accounts_from]]
type = \"sql\"
url = \"mysql://mailretr:url-Secret-55@127.0.0.1:{port}/mail\"
query = \"SELECT name FROM mailbox\"
timeout = \"5s\"
"
        ),
    ));
    let out = env.run(&["fetch"]);
    out.expect_code(2);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "accounts_from[0] (mysql://mailretr:***@127.0.0.1:{port}/mail): cannot read accounts:"
        )),
        "{}",
        out.stderr
    );
    assert_no_secrets(&out, &["url-Secret-55"]);
    assert_eq!(delivered_for(&env, &carol), 1, "the file account ran");
}

#[test]
fn backend_down_with_cache_uses_the_rows_of_the_last_good_run() {
    let dovecot = Dovecot::shared();
    let pg = Postgres::start();
    let name = pg.new_database();
    let (alice, _) = mailbox_with(dovecot, 1);
    pg.sql(
        &name,
        &format!(
            "CREATE TABLE mailbox (name TEXT, user_name TEXT, password TEXT);
             INSERT INTO mailbox VALUES ('alice', '{}', '{}');",
            alice.name, alice.password
        ),
    );
    let env = Env::new();
    env.write_config(&config(
        &env,
        &format!(
            "[[accounts_from]]
type = \"sql\"
url = {}
password = {}
query = \"SELECT name, 'pop3' AS protocol, user_name AS user, password FROM mailbox\"
cache = true
timeout = \"5s\"
{}
",
            q(pg.url(&name)),
            q(postgres::PASSWORD),
            defaults(dovecot)
        ),
    ));
    env.run(&["fetch"]).expect_code(0);
    assert_eq!(delivered_for(&env, &alice), 1);
    let state = std::fs::metadata(env.path("state/state.db")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        state.permissions().mode() & 0o777,
        0o600,
        "the cache holds passwords"
    );

    pg.stop();
    let m = b"From: a@example.org\r\nSubject: later\r\nMessage-ID: <later@test>\r\n\r\nlater\r\n";
    dovecot.add_message(&alice, "INBOX", m);
    let out = env.run(&["fetch"]);
    out.expect_code(0);
    assert!(
        out.stderr.contains("cannot read accounts"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("using the 1 rows it returned at"),
        "{}",
        out.stderr
    );
    assert_no_secrets(&out, &[postgres::PASSWORD, &alice.password]);
    assert!(
        dovecot.messages(&alice, "INBOX").is_empty(),
        "fetched from the cached account"
    );
}

#[test]
fn a_report_database_that_is_down_does_not_fail_the_fetch() {
    let dovecot = Dovecot::shared();
    let (alice, _) = mailbox_with(dovecot, 1);
    let env = Env::new();
    let account = AccountBuilder::dovecot_pop3s("alice", dovecot, &alice);
    let port = mariadb::free_port();
    env.write_config(&config_with(
        &env,
        Some(account),
        &format!(
            "[report]
url = \"mysql://mailretr@127.0.0.1:{port}/mail\"
password = \"report-Secret-1\"
timeout = \"5s\"
"
        ),
    ));
    let out = env.run(&["fetch"]);
    out.expect_code(0);
    assert_eq!(delivered_for(&env, &alice), 1);
    assert!(
        out.stderr.contains(&format!(
            "cannot write the report to mysql://mailretr@127.0.0.1:{port}/mail"
        )),
        "{}",
        out.stderr
    );
    assert_no_secrets(&out, &["report-Secret-1"]);
}
