//! Deciding before downloading: an account's built-in rules (`rule`) and
//! its `filter_command` look at a message's header (fetched without the
//! body where the source can: POP3 `TOP n 0`, IMAP `BODY.PEEK[HEADER]`)
//! and say what becomes of it: delivered as usual, delivered to other
//! destinations, left on the server, or deleted from it without its body
//! being downloaded. The run (`crate::run::account`) acts on the
//! decision through the durable core; nothing here touches the server.
//!
//! Rules run first, in order, and the first whose header matches decides
//! (`action = "deliver"` delivers as usual and skips the filter command);
//! `filter_command` is asked only when no rule matched.
//!
//! `filter_command` is an argv (no shell). It reads the header block on
//! stdin (LF line endings, ending with an empty line), finds the envelope
//! in `MAILRETR_*` variables, and answers with its exit status:
//!
//! | exit | meaning |
//! |------|---------|
//! | 0 | deliver as usual (to `deliver_to`) |
//! | 1 | leave on the server (not downloaded; not asked again) |
//! | 2 | delete from the server without downloading the body |
//! | 3 | deliver to the destinations named on stdout, one per line |
//!
//! Anything else (another exit status, a signal, no answer within the
//! timeout, a program that cannot be started, more than `STDOUT_KEPT`
//! bytes of output, an unknown destination printed with exit 3) is a
//! local fault: the message is left on the server untouched and the run
//! says so; it is never deleted for it.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::child::{kill_group, read_bounded};
use crate::message;

/// How long `filter_command` may take per message by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Stdout beyond this many bytes is a fault (a filter prints destination
/// names, not mail).
pub const STDOUT_KEPT: usize = 64 * 1024;

/// How much of the program's stderr is kept for the report line.
const STDERR_KEPT: usize = 2048;

/// An account's rules and filter command (both empty by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Built-in rules, in order: the first that matches decides.
    pub rules: Vec<Rule>,
    /// The program asked when no rule matched.
    pub command: Option<FilterCommand>,
}

/// One `rule = { header, matches, action | deliver_to }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The header field's name (compared case-insensitively).
    pub header: String,
    /// Matched against each unfolded value of that field.
    pub matches: Pattern,
    /// What a match does.
    pub action: Action,
}

/// A rule's regular expression (the `regex` crate's syntax), compared by
/// its text.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

/// What a rule (or the filter command) decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver as usual, to the account's `deliver_to`.
    Deliver,
    /// Deliver to these destinations instead.
    DeliverTo(Vec<String>),
    /// Leave it on the server, not downloaded, and do not ask again
    /// while the account's delivery config stays the same.
    Leave,
    /// Delete it from the server without downloading its body.
    Delete,
}

impl Action {
    /// "delete", "leave", "deliver_to spam, lists": for report and audit
    /// lines.
    pub fn describe(&self) -> String {
        match self {
            Action::Deliver => "deliver".into(),
            Action::DeliverTo(names) => format!("deliver_to {}", names.join(", ")),
            Action::Leave => "leave".into(),
            Action::Delete => "delete".into(),
        }
    }
}

/// `filter_command` and its `filter_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterCommand {
    /// Program and arguments, run directly (no shell).
    pub argv: Vec<String>,
    /// Killed (with its process group) after this long.
    pub timeout: Duration,
}

/// Why the filter command gave no usable answer: the message is left on
/// the server, and the run reports it as a local fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFault {
    /// What went wrong, naming the program.
    pub why: String,
    /// The program could not be started at all: every other message
    /// would fail the same way, so the run stops.
    pub cannot_start: bool,
}

impl Filter {
    /// Whether the account has rules or a filter command.
    pub fn is_set(&self) -> bool {
        !self.rules.is_empty() || self.command.is_some()
    }

    /// Whether a decision may delete a message from the server.
    pub fn may_delete(&self) -> bool {
        self.command.is_some() || self.rules.iter().any(|r| r.action == Action::Delete)
    }

    /// The first rule whose header field matches, with its number
    /// (counted from 1, as report and audit lines say "rule 2").
    pub fn rule_for(&self, header: &[u8]) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.is_match(header))
            .map(|(i, r)| (i + 1, r))
    }
}

impl Rule {
    /// Whether any field called `header` has a value `matches` finds a
    /// match in (unfolded, surrounding white space trimmed, not decoded).
    pub fn is_match(&self, header: &[u8]) -> bool {
        message::header_values(header, &self.header)
            .iter()
            .any(|v| self.matches.0.is_match(v))
    }
}

impl FilterCommand {
    /// The program's name, for report lines.
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// Runs the program with `header` (a header block) on stdin and `vars`
    /// in its environment, and reads its decision. Exit 3's destination
    /// names are returned as printed (trimmed, empty lines and repeats
    /// dropped); checking them is the caller's.
    pub fn run(&self, header: &[u8], vars: &[(&str, String)]) -> Result<Action, CommandFault> {
        let program = self.program().to_string();
        let fault = |why: String| CommandFault {
            why: format!("filter_command {program}: {why}"),
            cannot_start: false,
        };
        let mut command = Command::new(&program);
        command
            .args(&self.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills its children too
            // (a shell script's `sleep` would hold stdout open otherwise).
            .process_group(0);
        for (k, v) in vars {
            command.env(k, v);
        }
        let mut child = crate::fault::io("filter-spawn")
            .and_then(|()| command.spawn())
            .map_err(|e| CommandFault {
                why: format!("filter_command {program}: cannot run it: {e}"),
                cannot_start: true,
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let mut input = message::header_block(header).to_vec();
        if !input.ends_with(b"\n") && !input.is_empty() {
            input.push(b'\n');
        }
        input.push(b'\n');
        // A filter may decide without reading all of it; its exit status
        // says how that went.
        let feeder = thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let out_reader = thread::spawn(move || read_bounded(stdout, STDOUT_KEPT, false));
        let stderr = child.stderr.take().expect("stderr is piped");
        let err_reader = thread::spawn(move || read_bounded(stderr, STDERR_KEPT, true));
        let pid = child.id() as i32;
        let deadline = Instant::now() + self.timeout;
        // Waited for without reaping it (WNOWAIT): while it is a zombie
        // its process group id cannot be handed out again, so the kill
        // below reaches only what it left running.
        let finished = loop {
            match exited(pid) {
                Ok(true) => break true,
                Ok(false) if Instant::now() >= deadline => break false,
                Ok(false) => thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    kill_group(pid);
                    let _ = child.wait();
                    return Err(fault(format!("waiting for it: {e}")));
                }
            }
        };
        // Whatever it left running in its group holds the pipes open: it
        // goes too, so the readers end.
        kill_group(pid);
        let status = child.wait().ok().filter(|_| finished);
        let _ = feeder.join();
        let (out, overflow) = out_reader.join().unwrap_or_default();
        let (err, _) = err_reader.join().unwrap_or_default();
        let said = String::from_utf8_lossy(&err).trim().replace('\n', " / ");
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(" (it said: {said})")
        };
        let Some(status) = status else {
            return Err(fault(format!(
                "no answer within {}; killed it{said}",
                humantime::format_duration(self.timeout)
            )));
        };
        if overflow {
            return Err(fault(format!(
                "printed more than {STDOUT_KEPT} bytes; a filter prints destination names only{said}"
            )));
        }
        match status.code() {
            Some(0) => Ok(Action::Deliver),
            Some(1) => Ok(Action::Leave),
            Some(2) => Ok(Action::Delete),
            Some(3) => {
                let text = String::from_utf8_lossy(&out);
                let mut names: Vec<String> = Vec::new();
                for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string());
                    }
                }
                if names.is_empty() {
                    return Err(fault(format!(
                        "exited with 3 (deliver to the destinations printed) but printed none{said}"
                    )));
                }
                Ok(Action::DeliverTo(names))
            }
            Some(code) => Err(fault(format!(
                "exited with {code} (0 deliver, 1 leave, 2 delete, 3 deliver to the destinations printed){said}"
            ))),
            None => Err(fault(format!("was killed by a signal{said}"))),
        }
    }
}

/// Whether the child `pid` has exited, without reaping it.
fn exited(pid: i32) -> std::io::Result<bool> {
    // SAFETY: waitid(2) on our own child with a zeroed siginfo_t to fill.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(info.si_pid() != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(header: &str, re: &str, action: Action) -> Rule {
        Rule {
            header: header.into(),
            matches: Pattern(regex::Regex::new(re).unwrap()),
            action,
        }
    }

    const HEADER: &[u8] = b"Received: from a\n\tby b\nReceived: from c by d\nX-Spam-Flag: YES\nSubject: Hello\n =?utf-8?q?w?=\n\nbody X-Spam-Flag: NO\n";

    #[test]
    fn the_first_matching_rule_decides_on_unfolded_values() {
        let f = Filter {
            rules: vec![
                rule(
                    "subject",
                    "^Hello =\\?utf",
                    Action::DeliverTo(vec!["x".into()]),
                ),
                rule("X-Spam-Flag", "^YES", Action::Delete),
            ],
            command: None,
        };
        let (n, r) = f.rule_for(HEADER).unwrap();
        assert_eq!(n, 1);
        assert_eq!(r.action, Action::DeliverTo(vec!["x".into()]));
        let f = Filter {
            rules: vec![
                rule("Subject", "^Bye", Action::Leave),
                // Any of several fields; a folded one as one line.
                rule("Received", "^from a by b$", Action::Leave),
                rule("X-Spam-Flag", "^YES", Action::Delete),
            ],
            command: None,
        };
        assert_eq!(f.rule_for(HEADER).unwrap().0, 2);
        // The body is not the header.
        let f = Filter {
            rules: vec![rule("X-Spam-Flag", "NO", Action::Delete)],
            command: None,
        };
        assert!(f.rule_for(HEADER).is_none());
        assert!(f.may_delete() && f.is_set() && !Filter::default().is_set());
    }

    fn sh(script: &str) -> FilterCommand {
        FilterCommand {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn exit_codes_mean_deliver_leave_delete_and_deliver_to() {
        let vars = [("MAILRETR_UID", "7".to_string())];
        assert_eq!(sh("exit 0").run(HEADER, &vars), Ok(Action::Deliver));
        assert_eq!(sh("exit 1").run(HEADER, &vars), Ok(Action::Leave));
        assert_eq!(sh("exit 2").run(HEADER, &vars), Ok(Action::Delete));
        assert_eq!(
            sh("printf ' spam\\n\\nlists\\nspam\\n'; exit 3").run(HEADER, &vars),
            Ok(Action::DeliverTo(vec!["spam".into(), "lists".into()]))
        );
        let e = sh("exit 3").run(HEADER, &vars).unwrap_err();
        assert!(e.why.contains("printed none"), "{e:?}");
        let e = sh("echo oops >&2; exit 7").run(HEADER, &vars).unwrap_err();
        assert!(
            e.why.contains("exited with 7") && e.why.contains("oops"),
            "{e:?}"
        );
        assert!(!e.cannot_start);
        let e = sh("kill -9 $$").run(HEADER, &vars).unwrap_err();
        assert!(e.why.contains("signal"), "{e:?}");
    }

    #[test]
    fn it_reads_the_header_block_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got");
        let script = format!(
            "cat > {0}; echo \"uid=$MAILRETR_UID\" >> {0}; exit 0",
            got.display()
        );
        let vars = [("MAILRETR_UID", "7".to_string())];
        assert_eq!(sh(&script).run(HEADER, &vars), Ok(Action::Deliver));
        let text = std::fs::read_to_string(&got).unwrap();
        assert!(text.starts_with("Received: from a\n\tby b\n"), "{text}");
        assert!(text.ends_with("=?utf-8?q?w?=\n\nuid=7\n"), "{text}");
        assert!(!text.contains("body"), "{text}");
    }

    #[test]
    fn a_hung_filter_and_its_children_are_killed() {
        let mut c = sh("sleep 30 & sleep 30; exit 0");
        c.timeout = Duration::from_millis(300);
        let t = Instant::now();
        let e = c.run(HEADER, &[]).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(e.why.contains("no answer within 300ms"), "{e:?}");
    }

    #[test]
    fn a_missing_program_or_a_flood_is_a_fault() {
        let c = FilterCommand {
            argv: vec!["/nonexistent/filter".into()],
            timeout: Duration::from_secs(5),
        };
        let e = c.run(HEADER, &[]).unwrap_err();
        assert!(e.cannot_start && e.why.contains("cannot run it"), "{e:?}");
        let e = sh("yes spam | head -c 200000; exit 3")
            .run(HEADER, &[])
            .unwrap_err();
        assert!(e.why.contains("more than 65536 bytes"), "{e:?}");
    }
}
