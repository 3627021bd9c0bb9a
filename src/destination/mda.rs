//! Delivery through a program (an MDA such as procmail or maildrop): the
//! message on stdin, the envelope in the environment, the verdict in the
//! exit status, following sysexits.h as sendmail and fetchmail do:
//! 0 delivered, 75 (`EX_TEMPFAIL`) try again later, anything else a
//! permanent failure. The command is run directly, not through a shell.
//!
//! Environment: `MAILRETR_ACCOUNT`, `MAILRETR_FOLDER`,
//! `MAILRETR_DESTINATION`, `MAILRETR_SENDER` (empty for the null sender)
//! and `MAILRETR_RECIPIENT`. When an argument holds `%U`, the program runs
//! once per recipient with `%U` replaced; otherwise once, with the
//! recipients comma-separated in `MAILRETR_RECIPIENT`.
//!
//! stdin is fed and stderr read on threads of their own, so a program
//! that writes a lot of errors before reading its input cannot deadlock
//! with us; stderr (its last few kilobytes) becomes the error message. A
//! program still running after the timeout is killed: a temporary
//! failure.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::MdaConfig;
use crate::error::{Error, Failure, Result};
use crate::message::Envelope;

use super::{sender_of, DeliveryReport, Destination, Refusal};

/// sysexits.h `EX_TEMPFAIL`.
pub const EX_TEMPFAIL: i32 = 75;

/// How much of the program's stderr is kept for the error message.
const STDERR_KEPT: usize = 4096;

/// An MDA destination.
pub struct Mda {
    name: String,
    config: MdaConfig,
}

impl Mda {
    /// A destination running `config.command`.
    pub fn new(name: &str, config: MdaConfig) -> Mda {
        Mda {
            name: name.to_string(),
            config,
        }
    }

    fn fail(&self, message: String, failure: Failure) -> Error {
        Error::delivery(self.name.clone(), message, failure)
    }

    /// Runs the program once for `recipients`.
    fn run(
        &self,
        envelope: &Envelope,
        recipients: &[String],
        per: Option<&str>,
        message: &[u8],
    ) -> Result<()> {
        let args: Vec<String> = self
            .config
            .command
            .iter()
            .map(|a| match per {
                Some(r) => a.replace("%U", r),
                None => a.clone(),
            })
            .collect();
        let program = &args[0];
        let mut command = Command::new(program);
        command
            .args(&args[1..])
            .env("MAILRETR_ACCOUNT", &envelope.account)
            .env("MAILRETR_FOLDER", &envelope.folder)
            .env("MAILRETR_DESTINATION", &self.name)
            .env(
                "MAILRETR_SENDER",
                sender_of(envelope, self.config.sender.as_deref()),
            )
            .env("MAILRETR_RECIPIENT", recipients.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills its children too
            // (a shell script's `sleep` would hold stderr open otherwise).
            .process_group(0);
        let mut child = crate::fault::io("mda-spawn")
            .and_then(|()| command.spawn())
            .map_err(|e| {
                // A missing program may be an upgrade in progress, or a
                // typo: a local fault, reported, and the message kept.
                self.fail(format!("cannot run {program}: {e}"), Failure::Local)
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = message.to_vec();
        let feeder = thread::spawn(move || {
            // A program may exit without reading everything (a filter
            // that discards); its exit status says how that went.
            let _ = stdin.write_all(&input);
        });
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = thread::spawn(move || crate::child::read_bounded(stderr, STDERR_KEPT, true).0);
        let deadline = Instant::now() + self.config.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    crate::child::kill_group(child.id() as i32);
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    return Err(self.fail(format!("waiting for {program}: {e}"), Failure::Local))
                }
            }
        };
        let _ = feeder.join();
        let stderr = reader.join().unwrap_or_default();
        let said = String::from_utf8_lossy(&stderr).trim().replace('\n', " / ");
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        match status {
            None => Err(self.fail(
                format!(
                    "{program} did not finish within {:?}; killed it{said}",
                    self.config.timeout
                ),
                Failure::Temporary,
            )),
            Some(s) if s.success() => Ok(()),
            Some(s) => match s.code() {
                Some(code) => Err(self.fail(
                    format!("{program} exited with {code}{}{said}", exit_meaning(code)),
                    exit_failure(code),
                )),
                None => Err(self.fail(
                    format!("{program} was killed by a signal{said}"),
                    Failure::Local,
                )),
            },
        }
    }
}

impl Destination for Mda {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let per = self.config.command.iter().any(|a| a.contains("%U"));
        if !per {
            self.run(envelope, &envelope.recipients, None, message)?;
            return Ok(DeliveryReport::all(&envelope.recipients));
        }
        let mut report = DeliveryReport::default();
        for r in &envelope.recipients {
            // `%U` becomes an argument: a recipient (which may come from a
            // header) that could pass for an option or split into words
            // is refused, never substituted.
            if !argument_safe(r) {
                report.refused.push(Refusal {
                    recipient: r.clone(),
                    error: self.fail(
                        format!(
                            "recipient {:?} cannot be passed as %U",
                            crate::message::escape(r)
                        ),
                        Failure::Refused,
                    ),
                });
                continue;
            }
            match self.run(envelope, std::slice::from_ref(r), Some(r), message) {
                Ok(()) => report.accepted.push(r.clone()),
                Err(error) => report.refused.push(Refusal {
                    recipient: r.clone(),
                    error,
                }),
            }
        }
        Ok(report)
    }
}

/// Whether `value` may replace `%U` in an MDA's arguments: not empty, not
/// starting with `-` (an option), no whitespace or control characters.
pub(crate) fn argument_safe(value: &str) -> bool {
    !value.is_empty()
        && !value.starts_with('-')
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What an MDA's exit status means for the message (sysexits.h): 75
/// (EX_TEMPFAIL) is temporary; the codes that say the message or its
/// recipient is refused (EX_DATAERR 65, EX_NOUSER 67, EX_NOHOST 68) are
/// refusals; every other code, documented or not, is a local fault:
/// nothing is deleted and the next run tries again.
pub(crate) fn exit_failure(code: i32) -> Failure {
    match code {
        EX_TEMPFAIL => Failure::Temporary,
        65 | 67 | 68 => Failure::Refused,
        _ => Failure::Local,
    }
}

/// A few words on a sysexits code, for the error line.
fn exit_meaning(code: i32) -> &'static str {
    match code {
        EX_TEMPFAIL => " (temporary failure)",
        65 => " (EX_DATAERR: message refused)",
        67 => " (EX_NOUSER: no such user)",
        68 => " (EX_NOHOST: no such host)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mda(script: &str) -> Mda {
        Mda::new(
            "filter",
            MdaConfig {
                command: vec!["/bin/sh".into(), "-c".into(), script.into()],
                timeout: Duration::from_secs(10),
                sender: Some("fallback@example.org".into()),
            },
        )
    }

    fn env() -> Envelope {
        Envelope {
            sender: None,
            recipients: vec!["jaco@example.org".into()],
            account: "isp".into(),
            folder: "INBOX".into(),
            ..Envelope::default()
        }
    }

    #[test]
    fn exit_codes_decide() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!(
            "cat > {o}; echo \"$MAILRETR_ACCOUNT $MAILRETR_FOLDER $MAILRETR_DESTINATION $MAILRETR_SENDER $MAILRETR_RECIPIENT\" >> {o}",
            o = out.display()
        );
        mda(&script).deliver(&env(), b"Subject: x\n\nhi\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "Subject: x\n\nhi\nisp INBOX filter fallback@example.org jaco@example.org\n"
        );
        let e = mda("echo disk full >&2; exit 75")
            .deliver(&env(), b"x")
            .unwrap_err();
        assert!(e.is_transient());
        assert!(e.to_string().contains("disk full"), "{e}");
        let e = mda("echo no such user >&2; exit 1")
            .deliver(&env(), b"x")
            .unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("no such user"), "{e}");
    }

    #[test]
    fn a_hung_program_is_killed_and_retried_later() {
        let mut m = mda("sleep 30");
        m.config.timeout = Duration::from_millis(200);
        let started = Instant::now();
        let e = m.deliver(&env(), b"x").unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn much_stderr_before_reading_stdin_does_not_deadlock() {
        let m = mda("head -c 1000000 /dev/zero >&2; cat >/dev/null; exit 0");
        let big = vec![b'a'; 1 << 20];
        let mut m = m;
        m.deliver(&env(), &big).unwrap();
    }
}
