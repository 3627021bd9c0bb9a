//! The `mailretr` binary: parses the command line, runs the library, and
//! turns the outcome into output and an exit code. Everything of
//! substance lives in the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;

use mailretr::cli::{Cli, Command, ConfigCommand, FetchArgs};
use mailretr::config::{self, Config, Secret};
use mailretr::fetch::{self, AccountReport, FetchOptions};
use mailretr::{Error, ExitCode};

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
            let line = format!("mailretr: {}\n", record.args());
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
    fn flush(&self) {}
}

fn main() {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => log::LevelFilter::Error,
        (false, 0) => log::LevelFilter::Warn,
        (false, 1) => log::LevelFilter::Info,
        (false, 2) => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let level = if cli.verbose >= 2 {
        log::LevelFilter::Trace
    } else {
        level
    };
    let logger = Box::leak(Box::new(StderrLogger { level }));
    let _ = log::set_logger(logger).map(|()| log::set_max_level(level));

    let code = match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .downcast_ref::<Error>()
                .map_or(ExitCode::Internal, Error::exit_code);
            eprintln!("mailretr: {e:#}");
            code
        }
    };
    std::process::exit(code.code());
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Fetch(args) => fetch_command(cli, args),
        Command::Config(ConfigCommand::Check) => {
            let config = load_config(cli)?;
            print!("{}", describe(&config));
            Ok(ExitCode::Retrieved)
        }
        Command::Completions { shell } => {
            let mut cmd = mailretr::cli::command();
            clap_complete::generate(*shell, &mut cmd, "mailretr", &mut std::io::stdout());
            Ok(ExitCode::Retrieved)
        }
        Command::Man => {
            std::io::stdout().write_all(&mailretr::cli::man_page())?;
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
    Ok(config::load(&path)?)
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
    };
    let urls: Vec<&String> = args.accounts.iter().filter(|a| a.contains("://")).collect();
    let config = match urls.as_slice() {
        [] => {
            if args.to.is_some() {
                return Err(
                    Error::Config("--to goes with a URL, e.g. pop3s://me@host".into()).into(),
                );
            }
            load_config(cli)?
        }
        [url] if args.accounts.len() == 1 => {
            let to = args
                .to
                .as_deref()
                .ok_or_else(|| Error::Config(format!("fetching {url} needs --to MAILDIR")))?;
            let password = ad_hoc_password(url)?;
            let mut config = config::from_url(url, to, password, args.keep)?;
            if let Some(path) = &cli.config {
                // A config file may still provide [general] (state_dir, hostname).
                config.general = config::load(path)?.general;
            }
            config
        }
        _ => {
            return Err(Error::Config("give either account names or one URL".into()).into());
        }
    };
    let selected: Vec<&config::Account> = if urls.is_empty() && !args.accounts.is_empty() {
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
            selected.push(account);
        }
        selected
    } else {
        config.accounts.iter().collect()
    };
    if selected.is_empty() {
        return Err(Error::Config(format!(
            "{} defines no [[account]]",
            config_path(cli).display()
        ))
        .into());
    }
    let verbose = cli.verbose > 0;
    let check = args.check;
    let reports = fetch::run(&config, &selected, &options, &|r| {
        print_report(r, verbose, check)
    });
    Ok(fetch::merged_exit_code(&reports))
}

/// One line per failure (always), per warning (unless -q, via the log),
/// and a summary per account with -v. Each is one write, so lines from
/// parallel accounts never interleave.
fn print_report(report: &AccountReport, verbose: bool, check: bool) {
    for w in &report.warnings {
        log::warn!("account {}: {w}", report.account);
    }
    if let Some(e) = &report.error {
        let mut line = format!("mailretr: account {}: {e}", report.account);
        if report.messages > 0 {
            line.push_str(&format!(
                " (after {} messages were delivered)",
                report.messages
            ));
        }
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    } else if check {
        let line = format!("{}: {} new messages\n", report.account, report.waiting);
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    } else if verbose {
        let line = format!(
            "mailretr: account {}: {} messages ({}) retrieved\n",
            report.account,
            report.messages,
            bytesize::ByteSize(report.bytes)
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
    for a in &config.accounts {
        let secret = match &a.secret {
            Secret::Literal(_) => "password in config".to_string(),
            Secret::Command(c) => format!("password from `{c}`"),
            Secret::None => "no password".to_string(),
        };
        out.push_str(&format!(
            "account {}: {}://{}@{}:{} tls={:?} auth=[{}] {}; {}{}{} -> {}\n",
            a.name,
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
    }
    for (name, d) in &config.destinations {
        match d {
            config::DestinationConfig::Maildir { path } => {
                out.push_str(&format!("destination {name}: maildir {}\n", path.display()))
            }
        }
    }
    out
}
