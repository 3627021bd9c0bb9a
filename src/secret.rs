//! Turning an account's `Secret` into a password at connection time.
//! `password_command` runs fresh on every connection, so a password
//! manager or an expiring token is asked each time. No secret is ever
//! put into an error message.

use std::process::{Command, Stdio};

use crate::config::Secret;
use crate::error::{Error, Result};

/// Returns the password, running `password_command` if that is where it
/// comes from.
pub fn resolve(secret: &Secret) -> Result<Option<String>> {
    match secret {
        Secret::Literal(p) => Ok(Some(p.clone())),
        Secret::None => Ok(None),
        Secret::Command(cmd) => run_command(cmd).map(Some),
    }
}

/// Runs `sh -c command` and returns the first line of its output.
pub fn run_command(command: &str) -> Result<String> {
    let output = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| Error::Auth(format!("cannot run password_command: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr.lines().next().unwrap_or("").trim();
        return Err(Error::Auth(format!(
            "password_command failed ({}){}",
            output.status,
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().next().unwrap_or("").trim_end_matches('\r');
    if line.is_empty() {
        return Err(Error::Auth("password_command printed nothing".into()));
    }
    Ok(line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_of_output() {
        assert_eq!(run_command("printf 'pw1\\nother\\n'").unwrap(), "pw1");
    }

    #[test]
    fn failure_is_an_auth_error_without_output() {
        let e = run_command("echo leaked; echo why >&2; exit 3").unwrap_err();
        assert!(matches!(e, Error::Auth(_)));
        assert!(!e.to_string().contains("leaked"), "{e}");
        assert!(e.to_string().contains("why"), "{e}");
        assert!(run_command("true").is_err());
    }
}
