//! sendmail's command line, parsed by hand: its option syntax is
//! getopt(3)'s, not clap's (`-oi`, `-fme@example.org`, `-FCronDaemon`,
//! `-odq`, bundled `-ti`), and programs written against sendmail pass
//! options mailretr has no use for but must accept. Pure functions, so
//! every form mutt, git send-email, cron and mail(1) use is unit-tested.
//!
//! Like Postfix on Linux (GNU getopt), options may come before or after
//! recipients; everything after `--` is a recipient. A word such as
//! `a@x, b@y` holds several recipients.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What the invocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `-bm` (the default): queue the message on stdin.
    #[default]
    Deliver,
    /// `-bp` or `mailq`: list the queue.
    ListQueue,
    /// `-q`: flush the queue now.
    FlushQueue,
    /// `--help`.
    Help,
}

/// When delivery of a queued message is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum When {
    /// By a detached process after `[outgoing] delay` (the default,
    /// `-odb`).
    #[default]
    Background,
    /// Before the command returns (`--now`, `-odi`, `-odf`); the exit code
    /// still only says whether the message was queued.
    Now,
    /// Not until the next `fetch`, `watch` or `queue flush` (`-odq`).
    QueueOnly,
}

/// A parsed sendmail command line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// What to do.
    pub mode: Mode,
    /// `-t`: recipients also from To:, Cc: and Bcc:.
    pub extract_recipients: bool,
    /// `-i`, `-oi`: a line holding only `.` does not end the message.
    pub ignore_dots: bool,
    /// `-f`, `-r`: the envelope sender (`Some("")` for `<>`).
    pub from: Option<String>,
    /// `-F`: the full name for a `From:` that is added.
    pub full_name: Option<String>,
    /// `-v`.
    pub verbose: bool,
    /// When to try delivery.
    pub when: When,
    /// `-C FILE`: the mailretr config file.
    pub config: Option<PathBuf>,
    /// Recipients from the command line, in order.
    pub recipients: Vec<String>,
}

/// A command line sendmail would refuse (EX_USAGE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options that take no argument and mean nothing to mailretr:
/// `-n` (no aliasing), `-m` (me too), `-U` (initial submission), `-G`
/// (gateway), `-s`, `-x`, `-c`.
const IGNORED_FLAGS: &str = "nmUGsxc";

/// Options whose argument is accepted and ignored: `-B` body type, `-N`
/// DSN notify, `-R` DSN return, `-V` envelope id, `-O` and `-X`, `-L`
/// label, `-h` hop count, `-A`, `-p` protocol, `-e` error mode.
const IGNORED_WITH_ARGUMENT: &str = "BNRVOXLhApe";

/// Parses sendmail's arguments (without argv\[0\]).
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let mut inv = Invocation::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            for rest in &args[i..] {
                push_recipients(&mut inv, rest);
            }
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            match long {
                "now" => inv.when = When::Now,
                "help" => inv.mode = Mode::Help,
                _ => return Err(UsageError(format!("unknown option --{long}"))),
            }
            continue;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            push_recipients(&mut inv, arg);
            continue;
        };
        for (at, letter) in cluster.char_indices() {
            let attached = &cluster[at + letter.len_utf8()..];
            match letter {
                't' => inv.extract_recipients = true,
                'i' => inv.ignore_dots = true,
                'v' => inv.verbose = true,
                c if IGNORED_FLAGS.contains(c) => {}
                // An optional argument, attached only: `-q`, `-q30m`.
                'q' => {
                    inv.mode = Mode::FlushQueue;
                    break;
                }
                // `-d` (debug flags) likewise.
                'd' => break,
                c if "bfrFoCI".contains(c) || IGNORED_WITH_ARGUMENT.contains(c) => {
                    if c == 'I' {
                        return Err(UsageError(
                            "-I (initialise the alias database) is not supported".into(),
                        ));
                    }
                    let value = if attached.is_empty() {
                        let next = args
                            .get(i)
                            .ok_or_else(|| UsageError(format!("option -{c} needs an argument")))?;
                        i += 1;
                        next.clone()
                    } else {
                        attached.to_string()
                    };
                    apply(&mut inv, c, &value)?;
                    break;
                }
                c => return Err(UsageError(format!("unknown option -{c}"))),
            }
        }
    }
    Ok(inv)
}

/// Applies an option that took an argument.
fn apply(inv: &mut Invocation, option: char, value: &str) -> Result<(), UsageError> {
    match option {
        'b' => {
            inv.mode = match value {
                "m" => Mode::Deliver,
                "p" => Mode::ListQueue,
                other => {
                    return Err(UsageError(format!(
                        "-b{other} is not supported: mailretr sendmail queues messages (-bm) and lists the queue (-bp)"
                    )))
                }
            }
        }
        'f' | 'r' => {
            let v = value.trim();
            let v = v.strip_prefix('<').and_then(|v| v.strip_suffix('>')).unwrap_or(v);
            inv.from = Some(v.to_string());
        }
        'F' => inv.full_name = Some(value.to_string()),
        'C' => inv.config = Some(PathBuf::from(value)),
        'o' => match value {
            "i" => inv.ignore_dots = true,
            "di" | "df" => inv.when = When::Now,
            "dq" => inv.when = When::QueueOnly,
            "db" => inv.when = When::Background,
            // -oem, -oep, -oeq, -oew, -oee, -om, -o7, -o8, -oA...:
            // meaningless here, accepted as Postfix does.
            _ => {}
        },
        _ => {} // IGNORED_WITH_ARGUMENT
    }
    Ok(())
}

/// Adds the recipients in one word (`a@x, b@y`).
fn push_recipients(inv: &mut Invocation, word: &str) {
    inv.recipients.extend(
        word.split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| {
                r.strip_prefix('<')
                    .and_then(|r| r.strip_suffix('>'))
                    .unwrap_or(r)
                    .to_string()
            }),
    );
}

/// How the binary was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Personality {
    /// As `mailretr` with its own (clap) command line.
    Mailretr,
    /// As sendmail: argv\[0\] `sendmail`, or `mailretr [GLOBAL] sendmail`.
    Sendmail {
        /// `mailretr --config FILE` before `sendmail`.
        config: Option<PathBuf>,
        /// `mailretr -v` before `sendmail`.
        verbose: bool,
        /// The sendmail arguments.
        args: Vec<String>,
    },
    /// As `mailq` (argv\[0\]): list the queue.
    Mailq {
        /// Its arguments (`-v` is accepted; the rest is refused).
        args: Vec<String>,
    },
}

fn lossy(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// Tells from argv how the binary was invoked: through a symlink named
/// `sendmail` or `mailq`, or as `mailretr [GLOBAL OPTIONS] sendmail ...`.
pub fn personality(argv: &[OsString]) -> Personality {
    let name = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest = argv.get(1..).unwrap_or(&[]);
    match name.as_str() {
        "sendmail" => {
            return Personality::Sendmail {
                config: None,
                verbose: false,
                args: lossy(rest),
            }
        }
        "mailq" => return Personality::Mailq { args: lossy(rest) },
        _ => {}
    }
    let args = lossy(rest);
    let mut config = None;
    let mut verbose = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-c" | "--config" | "--log-format" => {
                if a != "--log-format" {
                    config = args.get(i + 1).map(PathBuf::from);
                }
                i += 2;
            }
            "-q" | "--quiet" => i += 1,
            "-v" | "-vv" | "-vvv" | "--verbose" => {
                verbose = true;
                i += 1;
            }
            "sendmail" => {
                return Personality::Sendmail {
                    config,
                    verbose,
                    args: args[i + 1..].to_vec(),
                }
            }
            _ if a.starts_with("--config=") => {
                config = Some(PathBuf::from(&a["--config=".len()..]));
                i += 1;
            }
            _ if a.starts_with("--log-format=") => i += 1,
            _ if a.starts_with("-c") && a.len() > 2 => {
                config = Some(PathBuf::from(&a[2..]));
                i += 1;
            }
            _ => return Personality::Mailretr,
        }
    }
    Personality::Mailretr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Invocation {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn err(args: &[&str]) -> String {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_err()
            .0
    }

    #[test]
    fn mutt_sends_oem_oi_and_recipients_after_the_double_dash() {
        let inv = p(&["-oem", "-oi", "-f", "me@example.org", "--", "a@x", "b@y"]);
        assert!(inv.ignore_dots);
        assert_eq!(inv.from.as_deref(), Some("me@example.org"));
        assert_eq!(inv.recipients, ["a@x", "b@y"]);
        assert_eq!(inv.mode, Mode::Deliver);
    }

    #[test]
    fn git_send_email_passes_i_and_an_attached_f() {
        let inv = p(&["-i", "-fme@example.org", "a@x", "b@y"]);
        assert!(inv.ignore_dots);
        assert_eq!(inv.from.as_deref(), Some("me@example.org"));
        assert_eq!(inv.recipients, ["a@x", "b@y"]);
    }

    #[test]
    fn cron_passes_an_attached_full_name_and_b8bitmime() {
        let inv = p(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]);
        assert_eq!(inv.full_name.as_deref(), Some("CronDaemon"));
        assert!(inv.ignore_dots);
        assert_eq!(inv.recipients, ["root"]);
    }

    #[test]
    fn flags_bundle_and_options_may_follow_recipients() {
        let inv = p(&["-ti", "a@x", "-v", "-F", "Jaco Kroon", "-N", "never"]);
        assert!(inv.extract_recipients && inv.ignore_dots && inv.verbose);
        assert_eq!(inv.full_name.as_deref(), Some("Jaco Kroon"));
        assert_eq!(inv.recipients, ["a@x"]);
        // After `--`, even a word starting with '-' is a recipient.
        assert_eq!(p(&["--", "-odd@x"]).recipients, ["-odd@x"]);
    }

    #[test]
    fn modes_and_delivery_timing() {
        assert_eq!(p(&["-bp"]).mode, Mode::ListQueue);
        assert_eq!(p(&["-b", "m"]).mode, Mode::Deliver);
        assert_eq!(p(&["-q"]).mode, Mode::FlushQueue);
        assert_eq!(p(&["-q30m"]).mode, Mode::FlushQueue);
        assert_eq!(p(&["--now", "a@x"]).when, When::Now);
        assert_eq!(p(&["-odi", "a@x"]).when, When::Now);
        assert_eq!(p(&["-odq", "a@x"]).when, When::QueueOnly);
        assert_eq!(p(&["a@x"]).when, When::Background);
        assert_eq!(p(&["--help"]).mode, Mode::Help);
    }

    #[test]
    fn senders_and_lists() {
        assert_eq!(p(&["-f", "<>"]).from.as_deref(), Some(""));
        assert_eq!(p(&["-r", "<a@x>"]).from.as_deref(), Some("a@x"));
        assert_eq!(p(&["a@x, <b@y>,c@z"]).recipients, ["a@x", "b@y", "c@z"]);
        assert_eq!(
            p(&["-C", "/etc/m.toml"]).config,
            Some(PathBuf::from("/etc/m.toml"))
        );
        let inv = p(&[
            "-n",
            "-m",
            "-U",
            "-oA/etc/aliases",
            "-R",
            "hdrs",
            "-V",
            "id",
            "-h",
            "3",
        ]);
        assert_eq!(inv, Invocation::default());
    }

    #[test]
    fn usage_errors() {
        assert!(err(&["-Z"]).contains("-Z"), "unknown letters");
        assert!(err(&["-f"]).contains("needs an argument"));
        assert!(err(&["-bs"]).contains("-bs"));
        assert!(err(&["--frobnicate"]).contains("--frobnicate"));
    }

    fn argv(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn personality_follows_argv0_and_the_subcommand() {
        assert_eq!(
            personality(&argv(&["/usr/sbin/sendmail", "-t"])),
            Personality::Sendmail {
                config: None,
                verbose: false,
                args: vec!["-t".into()]
            }
        );
        assert_eq!(
            personality(&argv(&["mailq"])),
            Personality::Mailq { args: vec![] }
        );
        assert_eq!(
            personality(&argv(&[
                "mailretr", "-c", "f.toml", "-v", "sendmail", "-oi", "a@x"
            ])),
            Personality::Sendmail {
                config: Some("f.toml".into()),
                verbose: true,
                args: vec!["-oi".into(), "a@x".into()]
            }
        );
        assert_eq!(
            personality(&argv(&["mailretr", "--config=f.toml", "sendmail"])),
            Personality::Sendmail {
                config: Some("f.toml".into()),
                verbose: false,
                args: vec![]
            }
        );
        assert_eq!(
            personality(&argv(&["mailretr", "-q", "queue", "flush"])),
            Personality::Mailretr
        );
        assert_eq!(
            personality(&argv(&["mailretr", "fetch"])),
            Personality::Mailretr
        );
    }
}
