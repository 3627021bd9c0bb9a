//! Turning an account's `Secret` into a password at connection time.
//! `password_command` runs fresh on every connection, so a password
//! manager or an expiring token is asked each time. No secret is ever
//! put into an error message.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::Secret;
use crate::error::{Error, Result};

/// A password or token in memory: wiped when dropped, so it is not left
/// behind for a core dump or a swapped-out page to keep.
pub type Password = zeroize::Zeroizing<String>;

/// Returns the password, running `password_command` if that is where it
/// comes from.
pub fn resolve(secret: &Secret) -> Result<Option<Password>> {
    match secret {
        Secret::Literal(p) => Ok(Some(p.clone())),
        Secret::None => Ok(None),
        Secret::Command(cmd) => run_command(cmd).map(Some),
    }
}

/// How long `password_command` (and `oauth2_token_command`) may take:
/// a hung helper must not hold the account's lock for ever.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Most output kept from such a command.
const OUTPUT_KEPT: usize = 64 * 1024;

/// Runs `sh -c command` and returns the first line of its output; killed
/// (with its process group) after `COMMAND_TIMEOUT`.
pub fn run_command(command: &str) -> Result<Password> {
    run_command_within(command, COMMAND_TIMEOUT)
}

fn run_command_within(command: &str, timeout: Duration) -> Result<Password> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Auth(format!("cannot run password_command: {e}")))?;
    let collect = |pipe: Box<dyn Read + Send>| {
        thread::spawn(move || crate::child::read_bounded(pipe, OUTPUT_KEPT, false).0)
    };
    let stdout = collect(Box::new(child.stdout.take().expect("piped")));
    let stderr = collect(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                crate::child::kill_group(child.id() as i32);
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Auth(format!(
                    "password_command did not finish within {}s; killed it",
                    timeout.as_secs()
                )));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(Error::Auth(format!("waiting for password_command: {e}"))),
        }
    };
    let stdout = zeroize::Zeroizing::new(stdout.join().unwrap_or_default());
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        return Err(Error::Auth(format!(
            "password_command failed ({status}){}",
            if first.is_empty() {
                String::new()
            } else {
                format!(": {}", crate::message::escape(first))
            }
        )));
    }
    let first = stdout.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = first.strip_suffix(b"\r").unwrap_or(first);
    if line.is_empty() {
        return Err(Error::Auth("password_command printed nothing".into()));
    }
    Ok(Password::new(String::from_utf8_lossy(line).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_of_output() {
        assert_eq!(
            run_command("printf 'pw1\\nother\\n'").unwrap().as_str(),
            "pw1"
        );
    }

    #[test]
    fn failure_is_an_auth_error_without_output() {
        let e = run_command("echo leaked; echo why >&2; exit 3").unwrap_err();
        assert!(matches!(e, Error::Auth(_)));
        assert!(!e.to_string().contains("leaked"), "{e}");
        assert!(e.to_string().contains("why"), "{e}");
        assert!(run_command("true").is_err());
    }

    #[test]
    fn a_hung_command_is_killed_after_its_timeout() {
        let started = Instant::now();
        let e = run_command_within("sleep 30; echo late", Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("did not finish"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
