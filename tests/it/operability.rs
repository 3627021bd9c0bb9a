//! Operability through the real `mailretr` binary: `status` and its JSON
//! after successful, failing, partial and limited runs; the audit log;
//! transcript redaction for every authentication method; quiet runs and
//! `--log-format json`; `fetch_limit`, `max_bytes_per_run` and exit 13;
//! `--check`; `include`; fresh OAuth tokens per connection. Against the
//! test Dovecot where it can, scripted fake servers where it cannot.

use crate::support;

use std::fs;

use support::dovecot::{Dovecot, User};
use support::fake::{FakeServer, Step};
use support::{AccountBuilder, ConfigBuilder, Env};

/// The account `acct` on the shared Dovecot.
fn acct(dovecot: &Dovecot, user: &User, protocol: &str) -> AccountBuilder {
    AccountBuilder::dovecot("acct", protocol, dovecot, user)
}

/// `account` delivering to `Maildir` in the environment, with an audit
/// log.
fn config(env: &Env, account: AccountBuilder) -> ConfigBuilder {
    ConfigBuilder::single(env, account)
        .hostname("test.example")
        .general(&format!(
            "audit_log = \"{}\"",
            env.path("audit.log").display()
        ))
}

fn message(n: usize) -> Vec<u8> {
    format!("Message-ID: <op{n}@test.example>\nSubject: op {n}\n\nbody {n}\n").into_bytes()
}

fn status_json(env: &Env) -> serde_json::Value {
    let out = env.run(&["status", "--json"]);
    out.expect_success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn audit_lines(env: &Env) -> Vec<Vec<String>> {
    fs::read_to_string(env.path("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

#[test]
fn quiet_success_then_status_and_audit() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    for n in 0..3 {
        dovecot.add_message(&user, "INBOX", &message(n));
    }
    let env = Env::new();
    let account = acct(dovecot, &user, "pop3");
    config(&env, account.clone()).write(&env);

    let out = env.run(&["status", "--json"]);
    out.expect_success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["version"], 1);
    assert!(v["accounts"][0]["last_run"].is_null(), "{v}");

    let out = env.run(&["fetch"]);
    out.expect_success();
    assert_eq!(out.stdout, "", "nothing on stdout");
    assert_eq!(out.stderr, "", "nothing on stderr on a quiet success");

    let v = status_json(&env);
    let a = &v["accounts"][0];
    assert_eq!(a["name"], "acct");
    assert_eq!(a["configured"], true);
    assert_eq!(a["last_run"]["outcome"], "retrieved");
    assert_eq!(a["last_run"]["exit_code"], 0);
    assert_eq!(a["last_run"]["messages"], 3);
    assert!(a["last_run"]["bytes"].as_u64().unwrap() > 0);
    assert!(a["last_run"]["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(a["last_run"]["error"].is_null());
    assert_eq!(a["spooled"], 0);
    assert!(a["last_error"].is_null());

    let lines = audit_lines(&env);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let mut ids: Vec<&str> = lines.iter().map(|l| l[5].as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "<op0@test.example>",
            "<op1@test.example>",
            "<op2@test.example>"
        ]
    );
    for l in &lines {
        assert_eq!(l.len(), 9, "{l:?}");
        assert_eq!(&l[1..3], ["acct", "INBOX"]);
        assert_ne!(l[3], "-", "the UIDL is recorded");
        assert_eq!(l[6], "home");
        assert_eq!(l[7], "delivered");
    }

    // No mail: exit 1, still quiet, recorded as no_mail.
    let out = env.run(&["fetch"]);
    out.expect_code(1);
    assert_eq!(out.stderr, "");
    let v = status_json(&env);
    assert_eq!(v["accounts"][0]["last_run"]["outcome"], "no_mail");
    assert_eq!(v["accounts"][0]["recent"]["runs"], 2);
    assert_eq!(v["accounts"][0]["recent"]["messages"], 3);

    // A failing run: the status keeps the error with its time.
    config(&env, account.password("wrong-password")).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(3);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("account acct"), "{}", out.stderr);
    let v = status_json(&env);
    let a = &v["accounts"][0];
    assert_eq!(a["last_run"]["outcome"], "failed");
    assert_eq!(a["last_error"]["exit_code"], 3);
    assert!(a["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("authentication failed"));
    assert_eq!(a["recent"]["failures"], 1);

    // The human form says the same.
    let out = env.run(&["status"]);
    out.expect_success();
    assert!(out.stdout.starts_with("acct: last run "), "{}", out.stdout);
    assert!(out.stdout.contains("failed"), "{}", out.stdout);
    assert!(out.stdout.contains("  last error "), "{}", out.stdout);
    assert!(!out.stdout.contains("wrong-password"), "{}", out.stdout);
}

/// A fake POP3 server that delivers one message and then drops the
/// connection in the middle of the second: a partial run.
#[test]
fn partial_run_is_reported_as_partial() {
    let server = FakeServer::start(vec![
        Step::line("+OK fake"),
        Step::expect("CAPA"),
        Step::send("+OK\r\nUSER\r\nUIDL\r\n.\r\n"),
        Step::expect("USER u"),
        Step::line("+OK"),
        Step::expect("PASS topsecret"),
        Step::line("+OK in"),
        Step::expect("LIST"),
        Step::send("+OK\r\n1 20\r\n2 20\r\n.\r\n"),
        Step::expect("UIDL"),
        Step::send("+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n"),
        Step::expect("RETR 1"),
        Step::send("+OK\r\nMessage-ID: <one@x>\r\n\r\nbody one\r\n.\r\n"),
        // Message 1 waits for its batch's commit, so its DELE would come
        // after RETR 2; the connection is gone by then.
        Step::expect("RETR 2"),
        Step::send("+OK\r\nSubject: two\r\n\r\npartial"),
        Step::Close,
    ]);
    let env = Env::new();
    let account = AccountBuilder::fake("fake", "pop3", server.port()).plaintext();
    ConfigBuilder::single(&env, account)
        .general("audit_log = \"audit.log\"")
        .write(&env);
    let out = env.run(&["--log-format", "json", "fetch"]);
    out.expect_code(2);
    // One JSON line naming the account.
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let line: serde_json::Value = serde_json::from_str(out.stderr.trim()).unwrap();
    assert_eq!(line["account"], "fake");
    assert_eq!(line["level"], "error");
    assert!(line["message"]
        .as_str()
        .unwrap()
        .contains("after 1 messages were delivered"));
    assert!(line["time"].as_str().is_some());

    let v = status_json(&env);
    let a = &v["accounts"][0];
    assert_eq!(a["last_run"]["outcome"], "partial", "{v}");
    assert_eq!(a["last_run"]["messages"], 1);
    assert_eq!(a["last_error"]["exit_code"], 2);

    // The audit log is next to the config file (a relative path).
    let audit = fs::read_to_string(env.config_path().with_file_name("audit.log")).unwrap();
    assert_eq!(audit.lines().count(), 1, "{audit}");
    assert!(audit.contains("\tfake\tINBOX\taaa\t20\t<one@x>\thome\tdelivered\t-"));
    server.assert_no_errors();
}

#[test]
fn max_size_is_audited_as_skipped_once() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1));
    let mut big = message(2);
    big.extend(std::iter::repeat_n(b'x', 5000));
    big.push(b'\n');
    dovecot.add_message(&user, "INBOX", &big);
    let env = Env::new();
    config(
        &env,
        acct(dovecot, &user, "imap").line("max_size = \"2KB\""),
    )
    .write(&env);
    let out = env.run(&["fetch"]);
    out.expect_success();
    assert!(out.stderr.contains("over max_size"), "{}", out.stderr);
    env.run(&["fetch"]).expect_code(1);
    let lines = audit_lines(&env);
    let outcomes: Vec<&str> = lines.iter().map(|l| l[7].as_str()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "skipped").count(),
        1,
        "{lines:?}"
    );
    assert_eq!(outcomes.iter().filter(|o| **o == "delivered").count(), 1);
    let skipped = lines.iter().find(|l| l[7] == "skipped").unwrap();
    assert!(skipped[8].contains("max_size"), "{skipped:?}");
}

#[test]
fn fetch_limit_and_max_bytes_per_run_exit_13_until_done() {
    let dovecot = Dovecot::shared();
    for (protocol, extra) in [
        ("pop3", "fetch_limit = 2"),
        ("imap", "fetch_limit = 2"),
        // Each message is about 60 bytes: two fit under 100 bytes before
        // the limit is reached.
        ("pop3", "max_bytes_per_run = \"100B\""),
    ] {
        let user = dovecot.new_user();
        for n in 0..5 {
            dovecot.add_message(&user, "INBOX", &message(n));
        }
        let env = Env::new();
        config(&env, acct(dovecot, &user, protocol).line(extra)).write(&env);
        let mut counts = Vec::new();
        let mut codes = Vec::new();
        for _ in 0..4 {
            let out = env.run(&["fetch"]);
            assert_eq!(out.stderr, "", "{protocol} {extra}: quiet");
            codes.push(out.code);
            counts.push(env.maildir_messages(env.path("Maildir")).len());
        }
        assert_eq!(codes, [13, 13, 0, 1], "{protocol} {extra}");
        assert_eq!(counts, [2, 4, 5, 5], "{protocol} {extra}");
        assert!(dovecot.messages(&user, "INBOX").is_empty());
        let v = status_json(&env);
        assert_eq!(v["accounts"][0]["recent"]["runs"], 4);
        assert!(
            v["accounts"][0]["last_error"].is_null(),
            "a limit is no error"
        );
    }
    // The status shows the limit as the outcome, and -v says what is left.
    let user = dovecot.new_user();
    for n in 0..3 {
        dovecot.add_message(&user, "INBOX", &message(n));
    }
    let env = Env::new();
    config(&env, acct(dovecot, &user, "pop3").line("fetch_limit = 1")).write(&env);
    let out = env.run(&["-v", "fetch"]);
    out.expect_code(13);
    assert!(out.stderr.contains("2 more left"), "{}", out.stderr);
    let v = status_json(&env);
    assert_eq!(v["accounts"][0]["last_run"]["outcome"], "limit_reached");
    assert_eq!(v["accounts"][0]["last_run"]["exit_code"], 13);
}

#[test]
fn check_counts_without_downloading() {
    let dovecot = Dovecot::shared();
    for protocol in ["pop3", "imap"] {
        let user = dovecot.new_user();
        let env = Env::new();
        config(&env, acct(dovecot, &user, protocol)).write(&env);
        let out = env.run(&["fetch", "--check"]);
        out.expect_code(1);
        assert_eq!(out.stdout, "acct: 0 new messages\n");
        for n in 0..2 {
            dovecot.add_message(&user, "INBOX", &message(n));
        }
        let out = env.run(&["fetch", "--check"]);
        out.expect_code(0);
        assert_eq!(out.stdout, "acct: 2 new messages\n", "{protocol}");
        assert!(env.maildir_messages(env.path("Maildir")).is_empty());
        assert_eq!(dovecot.messages(&user, "INBOX").len(), 2);
        assert!(audit_lines(&env).is_empty());
    }
}

/// Every secret a mechanism could leak, as the transcript must never show it.
fn leaks(password: &str, user: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    vec![
        password.to_string(),
        b64(password),
        b64(&format!("\0{user}\0{password}")),
    ]
}

#[test]
fn transcripts_redact_every_password_mechanism() {
    let dovecot = Dovecot::shared();
    let cases = [
        ("pop3", "user"),
        ("pop3", "plain"),
        ("pop3", "login"),
        ("pop3", "cram-md5"),
        ("pop3", "apop"),
        ("pop3", "scram-sha-256"),
        ("imap", "plain"),
        ("imap", "login"),
        ("imap", "cram-md5"),
        ("imap", "scram-sha-256"),
    ];
    for (protocol, mech) in cases {
        let user = dovecot.new_user();
        dovecot.add_message(&user, "INBOX", &message(1));
        let env = Env::new();
        let account = acct(dovecot, &user, protocol)
            .line(&format!("auth = [\"{mech}\"]"))
            .line(&format!("transcript = \"{protocol}.transcript\""));
        config(&env, account).write(&env);
        let out = env.run(&["-vv", "fetch"]);
        out.expect_success();
        let file = fs::read_to_string(
            env.config_path()
                .with_file_name(format!("{protocol}.transcript")),
        )
        .unwrap();
        for (what, text) in [("-vv", &out.stderr), ("transcript file", &file)] {
            for secret in leaks(&user.password, &user.name) {
                assert!(
                    !text.contains(&secret),
                    "{protocol} {mech}: {what} shows {secret:?}:\n{text}"
                );
            }
            assert!(
                text.contains("<redacted>") || mech == "cram-md5",
                "{protocol} {mech} {what}:\n{text}"
            );
            // Bodies are elided: the first line and the size only.
            assert!(
                !text.contains("body 1"),
                "{protocol} {mech} {what}:\n{text}"
            );
        }
        assert!(file.contains(" C: "), "{file}");
        assert!(file.contains(" S: "), "{file}");
        // The APOP digest and the CRAM-MD5 response are computed from the
        // password; they must not appear either.
        if mech == "apop" {
            assert!(file.contains("C: APOP "), "{file}");
            assert!(file.contains("<redacted>"), "{file}");
        }
    }
}

/// XOAUTH2 and OAUTHBEARER, against a scripted server (Dovecot here has
/// no OAuth): the token never shows, in `-vv` or the transcript file.
/// The token command runs fresh for every connection.
#[test]
fn oauth_tokens_are_redacted_and_fresh_per_connection() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let session = |mech: &str, ir: String| support::fake::imap_empty_session(mech, &ir);
    let xoauth2 = |token: &str| b64(&format!("user=u\x01auth=Bearer {token}\x01\x01"));
    let server = FakeServer::start_many(vec![
        session("XOAUTH2", xoauth2("tok-1")),
        session("XOAUTH2", xoauth2("tok-2")),
    ]);
    let env = Env::new();
    // The command prints a new token each time it runs.
    let counter = env.path("counter");
    fs::write(&counter, "0").unwrap();
    let command = format!(
        "n=$(($(cat {c}) + 1)); echo $n > {c}; echo tok-$n",
        c = counter.display()
    );
    let write_config = |server: &FakeServer, mech: &str| {
        let account = AccountBuilder::fake("oauth", "imap", server.port())
            .ca_file(&server.cert().cert_pem)
            .oauth2_token_command(&command)
            .line(&format!("auth = [\"{mech}\"]"))
            .line("transcript = \"oauth.transcript\"")
            .deliver_to(&[]);
        ConfigBuilder::new(&env).account(account).write(&env)
    };
    write_config(&server, "xoauth2");
    for _ in 0..2 {
        let out = env.run(&["-vv", "fetch"]);
        out.expect_code(1);
        for token in ["tok-1", "tok-2", &xoauth2("tok-1"), &xoauth2("tok-2")] {
            assert!(!out.stderr.contains(token), "{token} in:\n{}", out.stderr);
        }
        assert!(
            out.stderr.contains("AUTHENTICATE XOAUTH2 <redacted>"),
            "{}",
            out.stderr
        );
    }
    server.assert_no_errors();
    assert_eq!(server.connections(), 2);

    let oauthbearer = b64("n,a=u,\x01host=localhost\x01port=PORT\x01auth=Bearer tok-3\x01\x01");
    let server2 = FakeServer::start(vec![
        Step::StartTls,
        Step::line("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=OAUTHBEARER] fake"),
        Step::expect("a1 AUTHENTICATE OAUTHBEARER "),
        Step::line("+ eyJzdGF0dXMiOiI0MDEifQ=="),
        Step::expect("AQ=="),
        Step::line("a1 NO [AUTHENTICATIONFAILED] invalid token"),
        Step::ExpectClose,
    ]);
    write_config(&server2, "oauthbearer");
    let out = env.run(&["-vv", "fetch"]);
    out.expect_code(3);
    assert!(out.stderr.contains("account oauth"), "{}", out.stderr);
    let file = fs::read_to_string(env.config_path().with_file_name("oauth.transcript")).unwrap();
    for text in [&out.stderr, &file] {
        assert!(!text.contains("tok-"), "token in:\n{text}");
        assert!(!text.contains(&oauthbearer[..20]), "token in:\n{text}");
        assert!(
            text.contains("AUTHENTICATE OAUTHBEARER <redacted>"),
            "{text}"
        );
    }
    server2.assert_no_errors();
}

#[test]
fn password_command_failure_names_the_account_and_leaks_nothing() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    let env = Env::new();
    let account = acct(dovecot, &user, "pop3")
        .password_command("echo s3cr3t-output; echo vault is locked >&2; exit 1");
    config(&env, account).write(&env);
    let out = env.run(&["fetch"]);
    out.expect_code(3);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("account acct"), "{}", out.stderr);
    assert!(out.stderr.contains("password_command"), "{}", out.stderr);
    assert!(!out.stderr.contains("s3cr3t-output"), "{}", out.stderr);
    let v = status_json(&env);
    assert!(!v.to_string().contains("s3cr3t-output"));
    assert_eq!(v["accounts"][0]["last_error"]["exit_code"], 3);
}

#[test]
fn include_merges_account_files_and_reports_duplicates_by_file_and_line() {
    let dovecot = Dovecot::shared();
    let user = dovecot.new_user();
    dovecot.add_message(&user, "INBOX", &message(1));
    let other = dovecot.new_user();
    dovecot.add_message(&other, "INBOX", &message(2));
    let env = Env::new();
    let main = config(&env, acct(dovecot, &user, "pop3")).build();
    env.write_config(&format!("include = [\"conf.d/*.toml\"]\n{main}"));
    let conf_d = env.config_path().with_file_name("conf.d");
    fs::create_dir(&conf_d).unwrap();
    let write = |name: &str, text: &str| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = conf_d.join(name);
        let _ = fs::remove_file(&path);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        path
    };
    let customer = format!(
        r#"# one customer mailbox
[[account]]
name = "customer"
protocol = "imap"
host = "localhost"
port = {port}
ca_file = "{ca}"
user = "{user}"
password = "{password}"
deliver_to = ["customer"]

[destination.customer]
type = "maildir"
path = "{maildir}"
"#,
        port = dovecot.imaps,
        ca = dovecot.cert_pem.display(),
        user = other.name,
        password = other.password,
        maildir = env.path("CustomerMaildir").display(),
    );
    let path = write("customer.toml", &customer);
    let out = env.run(&["config", "check"]);
    out.expect_success();
    assert!(out.stdout.contains("account customer:"), "{}", out.stdout);
    let out = env.run(&["fetch"]);
    out.expect_success();
    assert_eq!(env.maildir_messages(env.path("Maildir")).len(), 1);
    assert_eq!(env.maildir_messages(env.path("CustomerMaildir")).len(), 1);
    let v = status_json(&env);
    let names: Vec<&str> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acct", "customer"]);

    // An included file readable by others with a password in it: exit 6,
    // naming that file.
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = env.run(&["config", "check"]);
    out.expect_code(6);
    assert!(out.stderr.contains("customer.toml"), "{}", out.stderr);

    // A duplicate name: the error names the second file and line, and the first.
    write("customer.toml", &customer);
    write(
        "dup.toml",
        &customer.replace(
            "[destination.customer]\ntype = \"maildir\"",
            "[destination.other]\ntype = \"maildir\"",
        ),
    );
    let out = env.run(&["config", "check"]);
    out.expect_code(5);
    assert!(
        out.stderr.contains(
            "dup.toml:3: account[0].name: duplicate account name \"customer\" (first at "
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("customer.toml:3)"), "{}", out.stderr);

    // [general] belongs in the main file only.
    write("dup.toml", "[general]\njobs = 2\n");
    let out = env.run(&["config", "check"]);
    out.expect_code(5);
    assert!(out.stderr.contains("dup.toml:1"), "{}", out.stderr);
    assert!(out.stderr.contains("general"), "{}", out.stderr);
}
