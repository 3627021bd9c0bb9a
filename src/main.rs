//! The `mailretr` binary: parses the command line, runs the library, and
//! turns the outcome into output and an exit code. Everything of
//! substance lives in the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::Context as _;
use clap::Parser;

use mailretr::cli::{AuthCommand, Cli, Command, ConfigCommand, FetchArgs, LogFormat, QueueCommand};
use mailretr::config::{self, Config, LogTarget, Secret};
use mailretr::outgoing::args::Personality;
use mailretr::outgoing::SysExit;
use mailretr::run::{self, AccountReport, FetchOptions};
use mailretr::shard::Shard;
use mailretr::{Error, ExitCode};

/// `--log-format`, set once at start.
static LOG_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// `[general] log`, set once the config is read (stderr until then).
static LOG_TARGET: OnceLock<LogTarget> = OnceLock::new();

/// Where lines go now.
fn log_target() -> LogTarget {
    LOG_TARGET.get().copied().unwrap_or_default()
}

/// Applies `[general] log` (first config read wins): opens syslog, or
/// says on stderr why not and stays there.
fn set_log_target(target: LogTarget) {
    if LOG_TARGET.get().is_some() {
        return;
    }
    let target = match target {
        LogTarget::Stderr => target,
        _ => match mailretr::syslogger::open() {
            Ok(()) => target,
            Err(e) => {
                stderr_line(log::Level::Warn, None, &format!("{e}; logging to stderr"));
                LogTarget::Stderr
            }
        },
    };
    let _ = LOG_TARGET.set(target);
}

/// Writes one message to stderr as one line (one write, so lines from
/// parallel accounts never interleave): `mailretr: account NAME: ...`,
/// or with `--log-format json` an object with `time`, `level`,
/// `account` (when the message concerns one) and `message`.
fn stderr_line(level: log::Level, account: Option<&str>, message: &str) {
    // Server and header text can hold terminal escapes: never raw.
    let message = &mailretr::message::escape(message);
    let target = log_target();
    if target.syslog() {
        match account {
            Some(a) => mailretr::syslogger::send(level, &format!("account {a}: {message}")),
            None => mailretr::syslogger::send(level, message),
        }
    }
    if !target.stderr() {
        return;
    }
    let line = match LOG_FORMAT.get().copied().unwrap_or(LogFormat::Text) {
        LogFormat::Text => match account {
            Some(a) => format!("mailretr: account {a}: {message}\n"),
            None => format!("mailretr: {message}\n"),
        },
        LogFormat::Json => {
            let mut object = serde_json::json!({
                "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "level": level.as_str().to_ascii_lowercase(),
                "message": message,
            });
            if let Some(a) = account {
                object["account"] = a.into();
            }
            format!("{object}\n")
        }
    };
    mailretr::progress::suspend(|| {
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    });
}

/// Writes log records as single lines on stderr.
struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level && metadata.target().starts_with("mailretr")
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let text = record.args().to_string();
            // The library names the account as `account NAME: ...`.
            let (account, message) = match text
                .strip_prefix("account ")
                .and_then(|rest| rest.split_once(": "))
            {
                Some((account, message)) if !account.contains(' ') => (Some(account), message),
                _ => (None, text.as_str()),
            };
            stderr_line(record.level(), account, message);
        }
    }
    fn flush(&self) {}
}

/// No core dump (it would hold every password and spooled message) and
/// no ptrace by other processes of the same user.
fn harden_process() {
    // SAFETY: setrlimit(2) and prctl(2) with valid arguments; failure is
    // harmless and ignored.
    unsafe {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn main() {
    harden_process();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match mailretr::outgoing::args::personality(&argv) {
        Personality::Sendmail {
            config,
            verbose,
            args,
        } => std::process::exit(sendmail_main(config, verbose, &args)),
        Personality::Mailq { args } => {
            let args: Vec<String> = std::iter::once("-bp".to_string()).chain(args).collect();
            std::process::exit(sendmail_main(None, false, &args))
        }
        Personality::Mailretr => {}
    }
    // A usage error exits 5 like any command-line error (SPEC), never
    // clap's default 2, which means "network error" here.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                ExitCode::Config.code()
            } else {
                0
            });
        }
    };
    init_logging(cli.quiet, cli.verbose, cli.log_format);
    let code = match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .downcast_ref::<Error>()
                .map_or(ExitCode::Internal, Error::exit_code);
            stderr_line(log::Level::Error, None, &format!("{e:#}"));
            code
        }
    };
    std::process::exit(code.code());
}

/// Sets the stderr logger (and progress bars) up for `--quiet`, `-v`
/// and `--log-format`.
fn init_logging(quiet: bool, verbose: u8, log_format: LogFormat) {
    let _ = LOG_FORMAT.set(log_format);
    // Progress bars only for a person watching a terminal: not on a pipe,
    // not under cron, not mixed into a transcript or JSON lines.
    if std::io::stderr().is_terminal() && !quiet && verbose < 2 && log_format == LogFormat::Text {
        mailretr::progress::enable();
    }
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let level = if verbose >= 2 {
        log::LevelFilter::Trace
    } else {
        level
    };
    let logger = Box::leak(Box::new(StderrLogger { level }));
    let _ = log::set_logger(logger).map(|()| log::set_max_level(level));
}

const SENDMAIL_USAGE: &str = "usage: sendmail [-t] [-i|-oi] [-f FROM] [-F NAME] [-bm|-bp|-q] [-v] [--now] [-C CONFIG] [--] [RECIPIENT...]
       (mailretr sendmail; the message on stdin; see mailretr-sendmail(1))
";

/// `mailretr sendmail`, or the binary run as `sendmail` or `mailq`:
/// returns sendmail's exit code (sysexits), not mailretr's.
fn sendmail_main(global_config: Option<PathBuf>, global_verbose: bool, args: &[String]) -> i32 {
    use mailretr::outgoing::args::{self as sargs, Mode};
    let fail = |code: SysExit, message: &str| {
        stderr_line(log::Level::Error, None, &format!("sendmail: {message}"));
        code.code()
    };
    let inv = match sargs::parse(args) {
        Ok(inv) => inv,
        Err(e) => {
            eprint!("{SENDMAIL_USAGE}");
            return fail(SysExit::Usage, &e.0);
        }
    };
    let verbose = inv.verbose || global_verbose;
    init_logging(false, u8::from(verbose), LogFormat::Text);
    let config_path = inv.config.clone().or(global_config);
    let queue = |command: QueueCommand| {
        let cli = Cli {
            config: config_path.clone(),
            verbose: u8::from(verbose),
            quiet: false,
            log_format: LogFormat::Text,
            state_dir: None,
            command: Command::Queue(command),
        };
        match run(&cli) {
            Ok(ExitCode::Retrieved | ExitCode::NoMail) => 0,
            Ok(_) => SysExit::TempFail.code(),
            Err(e) => {
                let code = e
                    .downcast_ref::<Error>()
                    .map_or(SysExit::Software, SysExit::of);
                fail(code, &format!("{e:#}"))
            }
        }
    };
    match inv.mode {
        Mode::Help => {
            print!("{SENDMAIL_USAGE}");
            0
        }
        Mode::ListQueue => queue(QueueCommand::List { json: false }),
        Mode::FlushQueue => queue(QueueCommand::Flush {
            ids: Vec::new(),
            outgoing: false,
            due: false,
            after: None,
        }),
        Mode::Deliver => match sendmail_deliver(&inv, config_path, verbose) {
            Ok(()) => 0,
            Err((code, message)) => fail(code, &message),
        },
    }
}

/// Queues the message on stdin, then starts (or makes) the attempt to
/// send it.
fn sendmail_deliver(
    inv: &mailretr::outgoing::args::Invocation,
    config_path: Option<PathBuf>,
    verbose: bool,
) -> Result<(), (SysExit, String)> {
    use mailretr::outgoing::{self, args::When};
    let path = config_path.clone().unwrap_or_else(config::default_path);
    if config_path.is_none() && !path.exists() {
        return Err((
            SysExit::Config,
            format!(
                "no config file at {}; write one with an [outgoing] section (see mailretr.toml(5))",
                path.display()
            ),
        ));
    }
    let config = config::load(&path).map_err(|e| (SysExit::of(&e), e.to_string()))?;
    let mut input = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut input)
        .map_err(|e| (SysExit::DataErr, format!("cannot read the message: {e}")))?;
    let queued = outgoing::submit(&config, inv, &input, chrono::Local::now())
        .map_err(|r| (r.code, r.message))?;
    if verbose {
        println!(
            "queued as {} from <{}> to {}",
            queued
                .ids
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            queued.sender,
            queued.recipients.join(", ")
        );
    }
    // The message is safe from here on: nothing below may fail the command.
    let delay = config
        .outgoing
        .as_ref()
        .map(|o| o.delay)
        .unwrap_or_default();
    match inv.when {
        When::QueueOnly => {}
        When::Now => match mailretr::lock::AccountLock::outgoing(&config.general.state_dir, true)
            .and_then(|_lock| {
                let mut state = mailretr::store::State::open(&config.general.state_dir)?;
                outgoing::flush(&config, &mut state, None, mailretr::retry::now())
            }) {
            Ok(report) => {
                outgoing::log_report(&report);
                if verbose {
                    println!(
                        "{} sent, {} still queued",
                        report.delivered, report.deferred
                    );
                }
            }
            Err(e) => log::warn!("outgoing: {e} (the message stays queued)"),
        },
        When::Background => match spawn_flusher(&path, delay) {
            Ok(pid) if verbose => println!(
                "sending in the background in {} (pid {pid})",
                humantime::format_duration(delay)
            ),
            Ok(_) => {}
            Err(e) => log::warn!(
                "cannot start the background delivery ({e}); the message stays queued for the next fetch or queue flush"
            ),
        },
    }
    Ok(())
}

/// Starts `mailretr queue flush --outgoing --due --after DELAY` detached
/// (its own session, stdio on /dev/null), and returns its pid.
fn spawn_flusher(
    config_path: &std::path::Path,
    delay: std::time::Duration,
) -> std::io::Result<u32> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let exe = std::env::current_exe()?;
    let config_path = std::path::absolute(config_path)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--quiet")
        .arg("--config")
        .arg(config_path)
        .args(["queue", "flush", "--outgoing", "--due", "--after"])
        .arg(format!("{}ms", delay.as_millis()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe; it only fails if the child
    // already leads a process group, which a fresh child does not.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    Ok(cmd.spawn()?.id())
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Fetch(args) => {
            // OpenSSL's set-up runs while the config is read.
            mailretr::net::tls::warm_up();
            mailretr::signal::install_stop_handlers()?;
            fetch_command(cli, args)
        }
        Command::Watch(args) => {
            mailretr::signal::install_stop_handlers()?;
            mailretr::signal::install_reload_handler()?;
            let (config, _) = load_with_backends(cli)?;
            let path = config.path.clone().unwrap_or_else(|| config_path(cli));
            let load = || {
                let mut config = config::load(&path)?;
                override_state_dir(cli, &mut config);
                report_backends(&mailretr::backends::load_accounts(&mut config));
                Ok(config)
            };
            let options = mailretr::watch::WatchOptions {
                shard: args.ops.shard,
                adopt: args.ops.adopt,
                adopt_from: args.ops.adopt_from.clone(),
                metrics_file: args.ops.metrics_file.clone(),
            };
            mailretr::watch::run(config, &load, &args.accounts, &options)?;
            // Stopped by SIGINT/SIGTERM, as it should be: success.
            Ok(ExitCode::Retrieved)
        }
        Command::Status { json } => {
            let (config, _) = load_with_backends(cli)?;
            let state = mailretr::store::State::open(&config.general.state_dir)?;
            let names: Vec<String> = config.accounts.iter().map(|a| a.name.clone()).collect();
            let statuses = mailretr::status::collect(&state, &names)?;
            if *json {
                println!("{:#}", mailretr::status::to_json(&statuses));
            } else {
                print!("{}", mailretr::status::to_text(&statuses));
            }
            Ok(ExitCode::Retrieved)
        }
        Command::Queue(command) => queue_command(cli, command),
        Command::Auth(command) => auth_command(cli, command),
        Command::Config(ConfigCommand::Check) => {
            let (config, loaded) = load_with_backends(cli)?;
            print!("{}", describe(&config));
            Ok(loaded.exit_code().unwrap_or(ExitCode::Retrieved))
        }
        Command::Completions { shell } => {
            let mut cmd = mailretr::cli::command();
            clap_complete::generate(*shell, &mut cmd, "mailretr", &mut std::io::stdout());
            Ok(ExitCode::Retrieved)
        }
        // Handled before clap (its option syntax is sendmail's).
        Command::Sendmail { args } => {
            std::process::exit(sendmail_main(cli.config.clone(), cli.verbose > 0, args))
        }
        Command::Man => {
            std::io::stdout().write_all(&mailretr::cli::man_page())?;
            Ok(ExitCode::Retrieved)
        }
    }
}

/// The `oauth2` settings of each account and IMAP/SMTP destination that
/// has them, accounts first.
fn oauth_configs(config: &Config) -> Vec<&mailretr::oauth::OAuth2> {
    config
        .accounts
        .iter()
        .filter_map(|a| a.oauth2.as_ref())
        .chain(config.destinations.values().filter_map(|d| d.oauth2()))
        .collect()
}

/// `mailretr auth login|status|logout`.
fn auth_command(cli: &Cli, command: &AuthCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(cli)?;
    let all = oauth_configs(&config);
    let find = |name: &str| -> Result<&mailretr::oauth::OAuth2, Error> {
        let qualified = format!("destination.{name}");
        all.iter()
            .find(|o| o.name == name)
            .or_else(|| all.iter().find(|o| o.name == qualified))
            .copied()
            .ok_or_else(|| {
                let known: Vec<&str> = all.iter().map(|o| o.name.as_str()).collect();
                Error::Config(format!(
                    "{name}: no account or destination of that name has `oauth2` (those that do: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    };
    match command {
        AuthCommand::Login {
            name,
            device,
            timeout,
        } => {
            mailretr::signal::install_stop_handlers()?;
            let oauth = find(name)?;
            let timeout = humantime::parse_duration(timeout)
                .map_err(|e| Error::Config(format!("--timeout {timeout}: {e}")))?;
            mailretr::oauth::login(
                oauth,
                &mailretr::oauth::LoginOptions {
                    device: *device,
                    timeout,
                },
            )?;
            Ok(ExitCode::Retrieved)
        }
        AuthCommand::Status { json } => {
            let lines = mailretr::oauth::status(&config.general.state_dir, &all)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
            } else {
                print!(
                    "{}",
                    mailretr::oauth::store::status_text(&lines, mailretr::oauth::store::now())
                );
            }
            Ok(ExitCode::Retrieved)
        }
        AuthCommand::Logout { name } => {
            let oauth = find(name)?;
            if mailretr::oauth::logout(oauth)? {
                println!("{}: tokens forgotten", oauth.name);
            } else {
                println!("{}: no tokens were stored", oauth.name);
            }
            Ok(ExitCode::Retrieved)
        }
    }
}

/// `mailretr queue list|show|flush|delete`.
fn queue_command(cli: &Cli, command: &QueueCommand) -> anyhow::Result<ExitCode> {
    use mailretr::store::spool::OUTGOING;
    use mailretr::{queue, retry};
    let config = load_config(cli)?;
    let mut state = mailretr::store::State::open(&config.general.state_dir)?;
    let now = retry::now();
    let unknown =
        |id: i64| Error::Config(format!("no spool entry {id} (see `mailretr queue list`)"));
    match command {
        QueueCommand::List { json } => {
            let entries = state.spool_list(None)?;
            if *json {
                print!("{}", queue::list_json(&entries));
            } else {
                print!("{}", queue::list_text(&entries, now));
            }
            Ok(ExitCode::Retrieved)
        }
        QueueCommand::Show { id } => {
            let entry = state.spool_get(*id)?.ok_or_else(|| unknown(*id))?;
            let history = state.spool_history(*id)?;
            std::io::stdout().write_all(&queue::show_text(&entry, &history))?;
            Ok(ExitCode::Retrieved)
        }
        QueueCommand::Flush {
            ids,
            outgoing,
            due,
            after,
        } => {
            if let Some(after) = after {
                let wait = humantime::parse_duration(after)
                    .map_err(|e| Error::Config(format!("--after {after}: {e}")))?;
                std::thread::sleep(wait);
            }
            let now = retry::now();
            let entries: Vec<_> = state
                .spool_list(None)?
                .into_iter()
                .filter(|e| !*outgoing || e.is_outgoing())
                .collect();
            for id in ids {
                if !entries.iter().any(|e| e.id == *id) {
                    return Err(unknown(*id).into());
                }
            }
            let mut accounts: Vec<&str> = entries.iter().map(|e| e.account.as_str()).collect();
            if *outgoing {
                accounts.push(OUTGOING);
            }
            accounts.sort_unstable();
            accounts.dedup();
            let mut code = ExitCode::NoMail;
            for account in accounts {
                let only: Vec<i64> = entries
                    .iter()
                    .filter(|e| e.account == account && (ids.is_empty() || ids.contains(&e.id)))
                    .map(|e| e.id)
                    .collect();
                let only = (!*due || !ids.is_empty()).then_some(only.as_slice());
                if only.is_some_and(|o| o.is_empty()) {
                    continue;
                }
                let (label, report) = if account == OUTGOING {
                    // One sender of the outgoing queue at a time: wait for
                    // the other, then take whatever is due by then.
                    let _lock =
                        mailretr::lock::AccountLock::outgoing(&config.general.state_dir, true)?;
                    let report =
                        mailretr::outgoing::flush(&config, &mut state, only, retry::now())?;
                    ("outgoing", report)
                } else {
                    let _lock =
                        mailretr::lock::AccountLock::acquire(&config.general.state_dir, account)?;
                    (
                        account,
                        retry::flush_account(&config, account, &mut state, only, now)?,
                    )
                };
                for e in report.errors.iter().chain(&report.local_faults) {
                    stderr_line(log::Level::Error, Some(label), e);
                }
                if report.delivered + report.bounced > 0 {
                    code = ExitCode::Retrieved;
                }
                if cli.verbose > 0 || report.deferred > 0 {
                    println!(
                        "{label}: {} delivered, {} still failing, {} bounced, {} kept as expired",
                        report.delivered, report.deferred, report.bounced, report.expired
                    );
                }
            }
            Ok(code)
        }
        QueueCommand::Delete { ids, yes } => {
            for id in ids {
                state.spool_get(*id)?.ok_or_else(|| unknown(*id))?;
            }
            if !yes {
                if !std::io::stdin().is_terminal() {
                    return Err(Error::Config(
                        "queue delete drops mail for good: confirm on a terminal or pass --yes"
                            .into(),
                    )
                    .into());
                }
                eprint!("Delete {} spooled message(s) for good? [y/N] ", ids.len());
                let mut answer = String::new();
                std::io::stdin().read_line(&mut answer)?;
                if !matches!(answer.trim(), "y" | "Y" | "yes") {
                    return Ok(ExitCode::NoMail);
                }
            }
            for id in ids {
                state.spool_remove(*id, "deleted by hand (queue delete)", now)?;
            }
            Ok(ExitCode::Retrieved)
        }
    }
}

fn config_path(cli: &Cli) -> PathBuf {
    cli.config.clone().unwrap_or_else(config::default_path)
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let path = config_path(cli);
    if cli.config.is_none() && !path.exists() {
        return Err(Error::Config(format!(
            "no config file at {}; write one (see mailretr.toml(5)) or fetch ad hoc: mailretr fetch pop3s://USER@HOST --to ~/Maildir",
            path.display()
        ))
        .into());
    }
    let mut config = config::load(&path)?;
    override_state_dir(cli, &mut config);
    set_log_target(config.general.log);
    Ok(config)
}

/// `--state-dir` in place of `general.state_dir`.
fn override_state_dir(cli: &Cli, config: &mut Config) {
    if let Some(dir) = &cli.state_dir {
        config.general.state_dir = dir.clone();
    }
}

/// `load_config`, then the accounts of its `[[accounts_from]]`
/// backends; their errors and warnings are printed here, one line each.
fn load_with_backends(cli: &Cli) -> anyhow::Result<(Config, mailretr::backends::Loaded)> {
    let mut config = load_config(cli)?;
    let loaded = mailretr::backends::load_accounts(&mut config);
    report_backends(&loaded);
    Ok((config, loaded))
}

/// One line per backend error (always) and warning (unless -q).
fn report_backends(loaded: &mailretr::backends::Loaded) {
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    for e in &loaded.errors {
        stderr_line(log::Level::Error, None, &e.to_string());
    }
}

fn fetch_command(cli: &Cli, args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let max_size = match &args.limit {
        Some(s) => Some(
            s.parse::<bytesize::ByteSize>()
                .map_err(|e| Error::Config(format!("--limit {s}: {e}")))?
                .as_u64(),
        ),
        None => None,
    };
    let options = FetchOptions {
        keep: args.keep,
        fetch_all: args.all,
        check: args.check,
        max_size,
        jobs: args.jobs,
        shard_spec: None,
        adopt: args.ops.adopt,
        adopt_from: args.ops.adopt_from.clone(),
    };
    let mut options = options;
    let urls: Vec<&String> = args.accounts.iter().filter(|a| a.contains("://")).collect();
    let (config, loaded) = match urls.as_slice() {
        [] => {
            if args.to.is_some() {
                return Err(
                    Error::Config("--to goes with a URL, e.g. pop3s://me@host".into()).into(),
                );
            }
            load_with_backends(cli)?
        }
        [url] if args.accounts.len() == 1 => {
            let to = args.to.as_deref().ok_or_else(|| {
                Error::Config(format!(
                    "fetching {} needs --to MAILDIR",
                    config::redact_url(url)
                ))
            })?;
            // Checked (a password in the URL refused) before one is asked for.
            let mut config = config::from_url(url, to, args.keep)?;
            config.accounts[0].secret = ad_hoc_password(url)?
                .map(|p| Secret::Literal(p.into()))
                .unwrap_or(Secret::None);
            if let Some(path) = &cli.config {
                // A config file may still provide [general] (state_dir, hostname).
                config.general = config::load(path)?.general;
                set_log_target(config.general.log);
            }
            override_state_dir(cli, &mut config);
            (config, Default::default())
        }
        _ => {
            return Err(Error::Config("give either account names or one URL".into()).into());
        }
    };
    let shard = args.ops.shard.unwrap_or(Shard::ALL);
    let mut selected: Vec<&config::Account> = if urls.is_empty() && !args.accounts.is_empty() {
        let mut selected = Vec::new();
        for name in &args.accounts {
            let account = config
                .accounts
                .iter()
                .find(|a| &a.name == name)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "no account named {name:?} in {}",
                        config_path(cli).display()
                    ))
                })?;
            if !shard.contains(name) {
                return Err(Error::Config(format!(
                    "account {name} is in shard {}/{}, not {shard}",
                    mailretr::shard::shard_of(name, shard.count),
                    shard.count
                ))
                .into());
            }
            selected.push(account);
        }
        selected
    } else {
        config.accounts.iter().collect()
    };
    if selected.is_empty() {
        if let Some(code) = loaded.exit_code() {
            // Every account was to come from a backend that failed.
            return Ok(code);
        }
        return Err(Error::Config(format!(
            "{} defines no [[account]]",
            config_path(cli).display()
        ))
        .into());
    }
    if args.ops.shard.is_some() && !urls.is_empty() {
        return Err(
            Error::Config("--shard goes with the configured accounts, not a URL".into()).into(),
        );
    }
    selected.retain(|a| shard.contains(&a.name));
    // The first accounts' connections are begun first of all (their SYNs
    // sent from this thread: the server's share of the set-up, a Dovecot
    // forking a login process, starts with them); their TLS handshakes
    // wait for the state (see `net::early`).
    let gate = (!args.check && urls.is_empty())
        .then(|| run::start_connecting(&config, &selected, &options));
    // The TLS contexts (OpenSSL's set-up, the ca_file) are built on a
    // thread of their own while the state is opened and the outgoing
    // spool flushed: on a run with no new mail that set-up is otherwise
    // on the way to the first handshake.
    mailretr::net::prepare_tls(selected.iter().map(|a| &a.server));
    if let Some(gate) = gate {
        // Which shard this state runs as: an account that moved here
        // from another shard is recognised by it.
        // Said before this opens (and so creates) state.db.
        mailretr::store::State::warn_if_lost(&config.general.state_dir);
        // A state that cannot be opened fails every account with its own
        // line below; without it no account runs, so none needs the spec.
        // (The connection goes on to the outgoing flush and the accounts.)
        if let Ok(mut state) = mailretr::store::State::shared(&config.general.state_dir) {
            options.shard_spec = Some(state.begin_shard(shard, mailretr::retry::now())?);
            run::connections_see_state(&gate, &config, &selected, &options, &state);
            drop(gate);
            warn_spooled_elsewhere(&state, &config, shard)?;
        } else {
            gate.cancel_all();
        }
    }
    if !args.check && config.path.is_some() {
        // What `mailretr sendmail` queued goes out with every fetch.
        mailretr::outgoing::flush_due_quietly(&config);
    }
    if selected.is_empty() {
        log::info!("shard {shard} has no accounts");
    }
    let verbose = cli.verbose > 0;
    let check = args.check;
    let reports = run::run(&config, &selected, &options, &|r| {
        print_report(r, verbose, check)
    });
    let metrics_file = args
        .ops
        .metrics_file
        .as_ref()
        .or(config.general.metrics_file.as_ref());
    if let (Some(path), false) = (metrics_file, check) {
        mailretr::metrics::update_for(&config, path, shard);
    }
    Ok(loaded.merged_with(run::merged_exit_code(&reports)))
}

/// Spooled mail of configured accounts outside `shard` (they moved to
/// another shard when N changed) is retried by no fetch here: says so,
/// with what delivers it.
fn warn_spooled_elsewhere(
    state: &mailretr::store::State,
    config: &Config,
    shard: Shard,
) -> anyhow::Result<()> {
    if shard == Shard::ALL {
        return Ok(());
    }
    let stranded = state
        .spool_list(None)?
        .iter()
        .filter(|e| !e.is_outgoing() && !shard.contains(&e.account))
        .filter(|e| config.accounts.iter().any(|a| a.name == e.account))
        .count();
    if stranded > 0 {
        log::warn!(
            "{stranded} spooled message(s) of accounts now in another shard than {shard} wait in {}: `mailretr --state-dir {} queue flush` delivers them",
            config.general.state_dir.join("state.db").display(),
            config.general.state_dir.display()
        );
    }
    Ok(())
}

/// One line per failure (always), per warning (unless -q, via the log),
/// and a summary per account with -v. Each is one write, so lines from
/// parallel accounts never interleave.
fn print_report(report: &AccountReport, verbose: bool, check: bool) {
    for w in &report.warnings {
        log::warn!("account {}: {w}", report.account);
    }
    // Even with -q: a suspected mail loop left on the server.
    for a in &report.alerts {
        stderr_line(log::Level::Warn, Some(&report.account), a);
    }
    if let Some(e) = &report.error {
        let mut line = e.to_string();
        if let Some(done) = report.done_before() {
            line.push_str(&format!(" ({done})"));
        }
        stderr_line(log::Level::Error, Some(&report.account), &line);
    } else if check {
        let line = format!("{}: {} new messages\n", report.account, report.waiting);
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    } else if verbose || (report.retrieved() > 0 && log_target().syslog()) {
        let mut line = report.summary();
        if report.left_by_limit > 0 {
            line.push_str(&format!(
                "; {} more left for the next run by fetch_limit or max_bytes_per_run",
                report.left_by_limit
            ));
        }
        if verbose {
            stderr_line(log::Level::Info, Some(&report.account), &line);
        } else {
            // Syslog gets every account's summary, as fetchmail's does.
            mailretr::syslogger::send(
                log::Level::Info,
                &format!(
                    "account {}: {}",
                    report.account,
                    mailretr::message::escape(&line)
                ),
            );
        }
    }
}

fn ad_hoc_password(url: &str) -> anyhow::Result<Option<String>> {
    if let Ok(p) = std::env::var("MAILRETR_PASSWORD") {
        return Ok(Some(p));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password(format!("Password for {url}: "))
            .context("reading the password")?;
        return Ok(Some(p));
    }
    Err(Error::Config(format!(
        "no password for {url}: set MAILRETR_PASSWORD or run on a terminal"
    ))
    .into())
}

/// The human-readable summary `config check` prints.
fn describe(config: &Config) -> String {
    let mut out = String::new();
    if let Some(p) = &config.path {
        out.push_str(&format!("config: {} (ok)\n", p.display()));
    }
    out.push_str(&format!(
        "state: {}\nhostname: {}\njobs: {}\n",
        config.general.state_dir.join("state.db").display(),
        config.general.hostname,
        config.general.jobs
    ));
    if let Some(p) = &config.general.audit_log {
        out.push_str(&format!("audit log: {}\n", p.display()));
    }
    for b in &config.accounts_from {
        out.push_str(&format!(
            "{}: {} accounts{}\n",
            b.label(),
            config
                .backend_accounts
                .values()
                .filter(|l| **l == b.label())
                .count(),
            if b.cache { ", cached in state.db" } else { "" }
        ));
    }
    if let Some(r) = &config.report {
        out.push_str(&format!(
            "report: table {} in {}\n",
            r.table,
            r.database.shown()
        ));
    }
    for a in &config.accounts {
        let secret = match &a.secret {
            Secret::Literal(_) if config.backend_accounts.contains_key(&a.name) => {
                "password from the backend".to_string()
            }
            Secret::Literal(_) => "password in config".to_string(),
            Secret::Command(c) => format!("password from `{c}`"),
            Secret::None => "no password".to_string(),
        };
        let name = match config.backend_accounts.get(&a.name) {
            Some(from) => format!("{} (from {from})", a.name),
            None => a.name.clone(),
        };
        out.push_str(&format!(
            "account {}: {}://{}@{}:{} tls={:?} auth=[{}] {}; {}{}{} -> {}\n",
            name,
            a.protocol,
            a.user,
            a.server.host,
            a.server.port,
            a.server.tls,
            a.auth
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(","),
            secret,
            if a.keep {
                "keep"
            } else {
                "delete after delivery"
            },
            if a.fetch_all { ", fetch all" } else { "" },
            a.max_size
                .map(|m| format!(", max_size {}", bytesize::ByteSize(m)))
                .unwrap_or_default(),
            a.deliver_to.join(", ")
        ));
        if let Some(m) = &a.multidrop {
            out.push_str(&format!("  {m}; on_refused = {:?}\n", a.on_refused));
        }
        if a.protocol == config::Protocol::Imap {
            let mut imap = vec![format!("folders {}", a.folders.join(" "))];
            if let Some(to) = &a.move_to {
                imap.push(format!("move delivered mail to {to}"));
            }
            if a.only_unseen {
                imap.push("only unseen".into());
            }
            if a.mark_seen {
                imap.push("mark seen".into());
            }
            out.push_str(&format!("  {}\n", imap.join(", ")));
        }
        let mut limits = Vec::new();
        if let Some(n) = a.fetch_limit {
            limits.push(format!("fetch_limit {n}"));
        }
        if let Some(n) = a.max_bytes_per_run {
            limits.push(format!("max_bytes_per_run {}", bytesize::ByteSize(n)));
        }
        if let Some(p) = &a.transcript {
            limits.push(format!("transcript to {}", p.display()));
        }
        if !limits.is_empty() {
            out.push_str(&format!("  {}\n", limits.join(", ")));
        }
    }
    for (name, d) in &config.destinations {
        out.push_str(&format!("destination {name}: {d}\n"));
    }
    if let Some(o) = &config.outgoing {
        out.push_str(&format!(
            "outgoing: relay {}, delay {}{}\n",
            o.relay,
            humantime::format_duration(o.delay),
            o.local
                .as_ref()
                .map(|l| format!(", local recipients via {l}"))
                .unwrap_or_default()
        ));
        for i in &o.identities {
            out.push_str(&format!(
                "  from {} -> {}{}\n",
                i.from,
                i.relay,
                i.sender
                    .as_ref()
                    .map(|s| format!(" (envelope sender {s})"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}
