//! `--metrics-file` and `log = "syslog"` against a real Dovecot: the file
//! parses as Prometheus text format (a small parser here: HELP and TYPE
//! before each family's samples, `name{labels} value` lines, numeric
//! values) with the right values after a good and a failing run, for an
//! account that did not run too; `watch` rewrites it; syslog lines
//! arrive on a test socket with mail-facility priorities and no secret.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{AccountBuilder, ConfigBuilder, Dovecot, Env};

/// Samples by `name{labels}` (labels sorted, values unescaped), or the
/// reason the text breaks the format.
fn parse(text: &str) -> Result<BTreeMap<String, f64>, String> {
    let mut typed: HashSet<String> = HashSet::new();
    let mut helped: HashSet<String> = HashSet::new();
    let mut samples = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = |what: &str| format!("line {}: {what}: {line:?}", i + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !helped.insert(name.to_string()) {
                return Err(at("HELP twice"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            if !["counter", "gauge"].contains(&kind) || parts.next().is_some() {
                return Err(at("bad TYPE"));
            }
            if !helped.contains(name) || !typed.insert(name.to_string()) {
                return Err(at("TYPE without HELP before it, or twice"));
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected line"));
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(at("bad name"));
        }
        if !typed.contains(name) {
            return Err(at("sample before its TYPE"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices();
            loop {
                let (start, c) = chars.next().ok_or_else(|| at("open labels"))?;
                if c == '}' {
                    rest = &inner[start + 1..];
                    break;
                }
                let eq = inner[start..].find("=\"").ok_or_else(|| at("label"))? + start;
                let key = inner[start..eq].trim_start_matches(',').to_string();
                for _ in start..eq + 1 {
                    chars.next();
                }
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().ok_or_else(|| at("open label value"))?;
                    match c {
                        '"' => break,
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('n') => value.push('\n'),
                            _ => return Err(at("bad escape")),
                        },
                        '\n' => return Err(at("raw newline")),
                        c => value.push(c),
                    }
                }
                labels.push((key, value));
                // A comma or the closing brace follows.
                let mut peek = chars.clone();
                match peek.next() {
                    Some((_, ',')) => {
                        chars.next();
                    }
                    Some((_, '}')) => {}
                    _ => return Err(at("after label value")),
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or_else(|| at("no space"))?;
        let value: f64 = value.parse().map_err(|_| at("value not numeric"))?;
        labels.sort();
        let key = format!(
            "{name}{{{}}}",
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        if samples.insert(key, value).is_some() {
            return Err(at("duplicate sample"));
        }
    }
    Ok(samples)
}

fn read_metrics(path: &Path) -> BTreeMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap();
    parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {m:#?}"))
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64
}

#[test]
fn the_parser_refuses_what_the_format_forbids() {
    assert!(parse("# HELP a x\n# TYPE a gauge\na{l=\"v\\\"\"} 1\n").is_ok());
    assert!(parse("a 1\n").is_err(), "sample before TYPE");
    assert!(parse("# HELP a x\n# TYPE a gauge\na one\n").is_err());
    assert!(parse("# HELP a x\n# TYPE a gauge\na{l=\"v} 1\n").is_err());
}

#[test]
fn metrics_file_after_good_and_failing_runs_and_for_accounts_not_run() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let (good_user, bad_user, idle_user) =
        (dovecot.new_user(), dovecot.new_user(), dovecot.new_user());
    for n in 0..2 {
        dovecot.add_message(
            &good_user,
            "INBOX",
            format!("Subject: m{n}\n\nbody {n}\n").as_bytes(),
        );
    }
    ConfigBuilder::new(&env)
        .hostname("test.example")
        .account(AccountBuilder::dovecot_pop3s("good", dovecot, &good_user))
        .account(AccountBuilder::dovecot_imaps("bad", dovecot, &bad_user).password("wrong-pass"))
        .account(AccountBuilder::dovecot_pop3s(
            "idle.one@x+y",
            dovecot,
            &idle_user,
        ))
        .maildir("home", env.path("Maildir"))
        .write(&env);
    let prom = env.path("textfile/mailretr.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let before = now();
    let out = env.run(&[
        "fetch",
        "good",
        "bad",
        "--metrics-file",
        &prom.display().to_string(),
    ]);
    out.expect_success();
    let m = read_metrics(&prom);
    let good = "{account=good}";
    let bad = "{account=bad}";
    assert_eq!(
        get(&m, &format!("mailretr_account_last_run_exit_code{good}")),
        0.0
    );
    assert_eq!(
        get(&m, &format!("mailretr_account_last_run_exit_code{bad}")),
        3.0
    );
    assert_eq!(
        get(&m, &format!("mailretr_account_last_run_messages{good}")),
        2.0
    );
    assert_eq!(
        get(&m, &format!("mailretr_account_messages_total{good}")),
        2.0
    );
    assert!(get(&m, &format!("mailretr_account_last_run_bytes{good}")) > 20.0);
    assert_eq!(
        get(&m, &format!("mailretr_account_failures_total{bad}")),
        1.0
    );
    assert_eq!(get(&m, &format!("mailretr_account_runs_total{good}")), 1.0);
    assert!(
        get(
            &m,
            &format!("mailretr_account_last_success_timestamp_seconds{good}")
        ) >= before
    );
    assert_eq!(
        get(
            &m,
            &format!("mailretr_account_last_success_timestamp_seconds{bad}")
        ),
        0.0
    );
    assert_eq!(
        get(
            &m,
            "mailretr_account_last_run_outcome{account=bad,outcome=failed}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "mailretr_account_last_run_outcome{account=good,outcome=retrieved}"
        ),
        1.0
    );
    assert_eq!(
        get(&m, &format!("mailretr_account_spool_messages{good}")),
        0.0
    );
    assert_eq!(get(&m, "mailretr_shard_info{shard=1,shards=1}"), 1.0);
    assert!(get(&m, "mailretr_last_run_timestamp_seconds{}") >= before);
    // Not run: still there. (Account names cannot hold a quote, so the
    // escaping of label values is a unit test of `metrics`.)
    assert_eq!(
        get(&m, "mailretr_account_runs_total{account=idle.one@x+y}"),
        0.0
    );
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains(r#"account="idle.one@x+y""#), "{text}");
    assert!(!text.contains("wrong-pass"));
    // Only the file, no temp left beside it.
    assert_eq!(
        std::fs::read_dir(prom.parent().unwrap()).unwrap().count(),
        1
    );

    // A second run: counters grow, last-run gauges are that run's.
    env.run(&["fetch", "--metrics-file", &prom.display().to_string()])
        .expect_code(3);
    let m = read_metrics(&prom);
    assert_eq!(
        get(&m, &format!("mailretr_account_last_run_messages{good}")),
        0.0
    );
    assert_eq!(
        get(&m, &format!("mailretr_account_messages_total{good}")),
        2.0
    );
    assert_eq!(get(&m, &format!("mailretr_account_runs_total{good}")), 2.0);
    assert_eq!(
        get(&m, &format!("mailretr_account_failures_total{bad}")),
        2.0
    );
    assert_eq!(
        get(
            &m,
            "mailretr_account_last_run_exit_code{account=idle.one@x+y}"
        ),
        1.0
    );
}

#[test]
fn watch_rewrites_the_metrics_file_after_each_pass() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let user = dovecot.new_user();
    let prom = env.path("mailretr.prom");
    ConfigBuilder::new(&env)
        .hostname("test.example")
        .general(&format!(
            "poll_interval = \"1s\"\nmetrics_file = {:?}",
            prom.display().to_string()
        ))
        .account(AccountBuilder::dovecot_pop3s("polled", dovecot, &user))
        .maildir("home", env.path("Maildir"))
        .write(&env);
    let mut child = env
        .cmd()
        .arg("watch")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let wait_for = |what: &str, done: &dyn Fn(&BTreeMap<String, f64>) -> bool| {
        let start = Instant::now();
        loop {
            if prom.exists() && done(&read_metrics(&prom)) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let key = "mailretr_account_messages_total{account=polled}";
    wait_for("the first pass", &|m| m.get(key) == Some(&0.0));
    dovecot.add_message(&user, "INBOX", b"Subject: w\n\nwatched\n");
    wait_for("the pass that fetched it", &|m| m.get(key) == Some(&1.0));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn syslog_gets_errors_warnings_and_summaries_with_mail_priorities_and_no_secret() {
    let dovecot = Dovecot::shared();
    let env = Env::new();
    let (good_user, bad_user) = (dovecot.new_user(), dovecot.new_user());
    dovecot.add_message(&good_user, "INBOX", b"Subject: s\n\nbody\n");
    let socket_path = env.path("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    ConfigBuilder::new(&env)
        .hostname("test.example")
        .general("log = \"syslog\"")
        .account(AccountBuilder::dovecot_pop3s("good", dovecot, &good_user))
        .account(
            AccountBuilder::dovecot_imaps("bad", dovecot, &bad_user).password("s3cr3t-Pa55word"),
        )
        .maildir("home", env.path("Maildir"))
        .write(&env);
    // A state dir others can read: a warning.
    let state = env.path("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = env.cmd();
    cmd.env("MAILRETR_SYSLOG_SOCKET", &socket_path).arg("fetch");
    let out = support::run_command(cmd, None, support::RUN_TIMEOUT);
    out.expect_success();
    assert_eq!(out.stderr, "", "syslog instead of stderr");
    let mut lines = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = socket.recv(&mut buf) {
        lines.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let joined = lines.join("\n");
    assert!(!joined.contains("s3cr3t"), "{joined}");
    // RFC 3164: <PRI>Mmm dd hh:mm:ss mailretr[pid]: text; mail is facility
    // 2, so err = 19, warning = 20, info = 22.
    let pid_tag = "mailretr[";
    let find = |pri: &str, text: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(pri) && l.contains(pid_tag) && l.contains(text))
            .unwrap_or_else(|| panic!("no {pri} line with {text:?} in\n{joined}"))
            .clone()
    };
    let err = find("<19>", "account bad: authentication failed");
    let ts = &err[4..19];
    assert!(
        ts.chars().nth(3) == Some(' ') && ts.chars().nth(9) == Some(':'),
        "timestamp {ts:?}"
    );
    find("<20>", "accessible by others");
    find("<22>", "account good: 1 messages");
}
