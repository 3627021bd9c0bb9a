//! Per-account locks, so two mailretr processes (a cron run overlapping
//! the previous one, a manual run beside `watch`) never work on the same
//! account at once. The lock is an advisory `flock` on a file under the
//! state directory; the kernel drops it when its holder dies, so a lock
//! left by a killed process is simply taken over.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// A held account lock; released when dropped.
#[derive(Debug)]
pub struct AccountLock {
    _file: File,
}

fn file_name(account: &str) -> String {
    account
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + ".lock"
}

impl AccountLock {
    /// Takes the lock for `account`, or fails with `Error::Locked` naming
    /// the process that holds it.
    pub fn acquire(state_dir: &Path, account: &str) -> Result<AccountLock> {
        let dir = state_dir.join("locks");
        let path = dir.join(file_name(account));
        take(&dir, &path, false)?.map_err(|holder| {
            Error::Locked(format!(
                "another mailretr{} is working on this account (lock {})",
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {holder})")
                },
                path.display()
            ))
        })
    }

    /// The lock under which one process at a time obtains an OAuth2
    /// token for `name` (`locks/oauth/NAME.lock`); waits for the holder.
    pub fn oauth(state_dir: &Path, name: &str) -> Result<AccountLock> {
        let dir = state_dir.join("locks").join("oauth");
        let path = dir.join(file_name(name));
        take(&dir, &path, true)?
            .map_err(|_| Error::Locked(format!("cannot take {}", path.display())))
    }

    /// The outgoing queue's lock: `outgoing.lock` in the state directory
    /// (outside `locks/`, so no account's lock file can be it). With
    /// `wait`, blocks until the holder (another flusher) is done;
    /// otherwise fails with `Error::Locked` at once.
    pub fn outgoing(state_dir: &Path, wait: bool) -> Result<AccountLock> {
        let path = state_dir.join("outgoing.lock");
        take(state_dir, &path, wait)?.map_err(|_| {
            Error::Locked(format!(
                "another mailretr is sending the outgoing queue (lock {})",
                path.display()
            ))
        })
    }
}

/// The width the pid is written at in a lock file (a Linux pid has at
/// most 7 digits; padded with spaces, which the reader trims).
const PID_WIDTH: usize = 10;

/// Creates `dir` (0700), opens the lock file `path` in it (0600) and
/// takes its `flock`, blocking with `wait`. Once held, the file says our
/// pid (for the message the next process prints); when another process
/// holds it, the inner error is the pid that process wrote.
fn take(dir: &Path, path: &Path, wait: bool) -> Result<std::result::Result<AccountLock, String>> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
    let mut file = OpenOptions::new()
        .mode(0o600)
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
    let locked = if wait {
        file.lock().map_err(fs::TryLockError::Error)
    } else {
        file.try_lock()
    };
    match locked {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Ok(Err(holder.trim().to_string()));
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(Error::Internal(format!(
                "cannot lock {}: {e}",
                path.display()
            )))
        }
    }
    // The pid is written over the old one at a fixed width, not after a
    // truncation: ext4 flushes a file that was truncated to zero and
    // written again when it is closed (its `auto_da_alloc`), which would
    // be a block write on every run of every account.
    let pid = format!("{:<PID_WIDTH$}\n", std::process::id());
    let _ = file.seek(SeekFrom::Start(0));
    if file.write_all(pid.as_bytes()).is_ok()
        && file.metadata().is_ok_and(|m| m.len() != pid.len() as u64)
    {
        let _ = file.set_len(pid.len() as u64);
    }
    Ok(Ok(AccountLock { _file: file }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let first = AccountLock::acquire(dir.path(), "a/b").unwrap();
        let e = AccountLock::acquire(dir.path(), "a/b").unwrap_err();
        assert!(matches!(e, Error::Locked(_)));
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        AccountLock::acquire(dir.path(), "other").unwrap();
        drop(first);
        AccountLock::acquire(dir.path(), "a/b").unwrap();
    }

    #[test]
    fn pid_is_written_over_what_the_file_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locks").join("a.lock");
        let me = format!("{}", std::process::id());
        for old in ["1\n", "12345678901234567890 left by something else\n", ""] {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, old).unwrap();
            let lock = AccountLock::acquire(dir.path(), "a").unwrap();
            let text = fs::read_to_string(&path).unwrap();
            assert_eq!(text.trim(), me, "{old:?} became {text:?}");
            assert!(
                text.ends_with('\n') && text.len() == PID_WIDTH + 1,
                "{text:?}"
            );
            drop(lock);
        }
    }

    #[test]
    fn one_outgoing_flusher_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = AccountLock::outgoing(dir.path(), false).unwrap();
        assert!(matches!(
            AccountLock::outgoing(dir.path(), false),
            Err(Error::Locked(_))
        ));
        let waiter = {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || AccountLock::outgoing(&dir, true).map(|_| ()))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "waits for the holder");
        drop(first);
        waiter.join().unwrap().unwrap();
    }
}
