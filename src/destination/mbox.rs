//! mbox delivery in the mboxrd dialect: a `From sender date` separator
//! line, every body line matching `>*From ` quoted with one more `>` (so
//! the quoting can be undone exactly), and an empty line after the
//! message.
//!
//! Locking follows what mutt, procmail and Postfix's `local` expect: an
//! fcntl lock on the file *and* a `FILE.lock` dotlock. Both are taken
//! without blocking and, when either is busy, both are let go and tried
//! again, so two programs taking them in different orders cannot
//! deadlock. A dotlock older than `STALE_DOTLOCK` is left over from a
//! crash and removed (procmail's rule). The append is fsynced; a write
//! that fails part-way is truncated back to the old length, so a full
//! disk never leaves half a message for the next one to be glued to.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Failure, Result};
use crate::message::Envelope;

use super::{expand_template, local_error, per_recipient, DeliveryReport, Destination, Refusal};

/// How long to wait for the locks before giving up (a temporary failure).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// A dotlock older than this is taken to be left over from a crash.
pub const STALE_DOTLOCK: Duration = Duration::from_secs(300);

/// An mbox destination.
pub struct Mbox {
    name: String,
    path: PathBuf,
    lock_timeout: Duration,
}

impl Mbox {
    /// An mbox at `path` (created, mode 0600, if missing).
    pub fn new(name: &str, path: PathBuf) -> Mbox {
        Mbox {
            name: name.to_string(),
            path,
            lock_timeout: LOCK_TIMEOUT,
        }
    }

    /// Sets how long to wait for the locks.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Mbox {
        self.lock_timeout = timeout;
        self
    }

    fn append(&self, path: &Path, envelope: &Envelope, message: &[u8]) -> Result<()> {
        let fail = |what: &str, e: io::Error| {
            local_error(&self.name, &format!("{what} {}", path.display()), &e)
        };
        let mut file = OpenOptions::new()
            .append(true)
            .read(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| fail("cannot open", e))?;
        let _locks = Locks::acquire(&file, path, self.lock_timeout).map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                Error::delivery(
                    self.name.clone(),
                    format!(
                        "{} is locked by another program (waited {:?})",
                        path.display(),
                        self.lock_timeout
                    ),
                    Failure::Temporary,
                )
            } else {
                fail("cannot lock", e)
            }
        })?;
        let old_len = file.metadata().map_err(|e| fail("cannot stat", e))?.len();
        let mut entry = Vec::with_capacity(message.len() + 200);
        if old_len > 0 && !ends_with_blank_line(&file, old_len) {
            // Keep the separator on a line of its own after a damaged tail.
            entry.extend_from_slice(b"\n");
        }
        entry.extend_from_slice(
            separator(envelope.sender.as_deref(), chrono::Local::now()).as_bytes(),
        );
        quote_into(message, &mut entry);
        let written = crate::fault::io("mbox-write")
            .and_then(|()| file.write_all(&entry))
            .and_then(|()| crate::fault::io("mbox-sync"))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            let efbig = e.raw_os_error() == Some(libc::EFBIG);
            // Never leave half a message: cut back to where we started.
            let _ = file.set_len(old_len);
            let _ = file.sync_all();
            let mut error = fail("cannot write", e);
            // The mbox has grown past a file size limit (RLIMIT_FSIZE, the
            // file system's maximum): rotating it clears that up, and the
            // message is not at fault, so it is retried rather than refused.
            if let Error::Delivery { failure, .. } = &mut error {
                if efbig {
                    *failure = Failure::Temporary;
                }
            }
            return Err(error);
        }
        Ok(())
    }
}

fn ends_with_blank_line(file: &File, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let mut tail = [0u8; 2];
    let n = if len >= 2 { 2 } else { 1 };
    match file.read_at(&mut tail[..n], len - n as u64) {
        Ok(got) if got == n => tail[..n] == *b"\n\n" || (len == 1 && tail[0] == b'\n'),
        _ => false,
    }
}

/// The `From ` separator line: envelope sender (`MAILER-DAEMON` for the
/// null sender) and the date in `asctime` form.
pub fn separator(sender: Option<&str>, now: chrono::DateTime<chrono::Local>) -> String {
    let sender = match sender.map(str::trim) {
        Some(s) if !s.is_empty() => s.replace(|c: char| c.is_whitespace() || c.is_control(), "_"),
        _ => "MAILER-DAEMON".to_string(),
    };
    format!("From {sender} {}\n", now.format("%a %b %e %H:%M:%S %Y"))
}

/// Appends `message` to `out` with mboxrd quoting (`>*From ` gets one more
/// `>`), a final line break if it lacks one, and the empty line that ends
/// an mbox entry.
pub fn quote_into(message: &[u8], out: &mut Vec<u8>) {
    for line in message.split_inclusive(|&b| b == b'\n') {
        let after_quotes = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
        if line[after_quotes..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !message.is_empty() && !message.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// The fcntl lock and the dotlock, released on drop.
struct Locks {
    dotlock: Option<PathBuf>,
    fd: i32,
}

impl Locks {
    fn acquire(file: &File, path: &Path, timeout: Duration) -> io::Result<Locks> {
        let fd = file.as_raw_fd();
        let dotlock = dotlock_path(path);
        let deadline = Instant::now() + timeout;
        let mut wait = Duration::from_millis(10);
        loop {
            if fcntl_lock(fd, libc::F_WRLCK)? {
                match take_dotlock(&dotlock) {
                    Ok(true) => {
                        return Ok(Locks {
                            dotlock: Some(dotlock),
                            fd,
                        })
                    }
                    Ok(false) => {
                        let _ = fcntl_lock(fd, libc::F_UNLCK);
                    }
                    // No right to create files next to the mbox (a
                    // system spool directory without group mail): the
                    // fcntl lock alone, as mutt does then.
                    Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                        log::debug!(
                            "cannot dotlock {}: {e}; using the fcntl lock only",
                            path.display()
                        );
                        return Ok(Locks { dotlock: None, fd });
                    }
                    Err(e) => {
                        let _ = fcntl_lock(fd, libc::F_UNLCK);
                        return Err(e);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }
}

impl Drop for Locks {
    fn drop(&mut self) {
        if let Some(d) = &self.dotlock {
            let _ = fs::remove_file(d);
        }
        let _ = fcntl_lock(self.fd, libc::F_UNLCK);
    }
}

fn dotlock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Tries to create the dotlock; `false` when someone else holds it.
fn take_dotlock(dotlock: &Path) -> io::Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dotlock)
    {
        Ok(mut f) => {
            let _ = writeln!(f, "{}", std::process::id());
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let stale = fs::metadata(dotlock)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_DOTLOCK);
            if stale {
                log::warn!("removing stale lock {}", dotlock.display());
                let _ = fs::remove_file(dotlock);
            }
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Sets or clears a whole-file fcntl lock without waiting; `false` when
/// another process holds a conflicting one.
fn fcntl_lock(fd: i32, kind: libc::c_int) -> io::Result<bool> {
    // SAFETY: an all-zero flock is valid; the fields we need are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: fd is an open file descriptor and fl a valid flock.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETLK, &fl) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EAGAIN) => Ok(false),
        _ => Err(e),
    }
}

impl Destination for Mbox {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let template = self.path.to_string_lossy().into_owned();
        if !per_recipient(&template) {
            self.append(&self.path, envelope, message)?;
            return Ok(DeliveryReport::all(&envelope.recipients));
        }
        let mut report = DeliveryReport::default();
        for recipient in &envelope.recipients {
            let path = PathBuf::from(expand_template(&template, &envelope.account, recipient, ""));
            match self.append(&path, envelope, message) {
                Ok(()) => report.accepted.push(recipient.clone()),
                Err(error) => report.refused.push(Refusal {
                    recipient: recipient.clone(),
                    error,
                }),
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(m: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        quote_into(m, &mut out);
        out
    }

    #[test]
    fn mboxrd_quoting_is_reversible() {
        assert_eq!(
            quoted(b"Subject: x\n\nFrom me\n>From you\n>>From them\nFrom\nfrom x\n From y\n"),
            b"Subject: x\n\n>From me\n>>From you\n>>>From them\nFrom\nfrom x\n From y\n\n"
        );
        assert_eq!(quoted(b"no newline"), b"no newline\n\n");
    }

    #[test]
    fn separator_names_sender_and_date() {
        let now = chrono::Local::now();
        let s = separator(Some("a@b"), now);
        assert!(s.starts_with("From a@b "), "{s}");
        assert!(s.ends_with(&format!("{}\n", now.format("%Y"))), "{s}");
        assert!(separator(Some(""), now).starts_with("From MAILER-DAEMON "));
        assert!(separator(None, now).starts_with("From MAILER-DAEMON "));
        assert!(separator(Some("a b@c"), now).starts_with("From a_b@c "));
    }

    #[test]
    fn appends_with_locks_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        let mut mbox = Mbox::new("m", path.clone());
        let env = Envelope::default();
        mbox.deliver(&env, b"Subject: 1\n\nFrom here\n").unwrap();
        mbox.deliver(&env, b"Subject: 2\n\nbody").unwrap();
        let text = String::from_utf8(fs::read(&path).unwrap()).unwrap();
        assert_eq!(text.matches("\nFrom MAILER-DAEMON ").count(), 1, "{text}");
        assert!(text.starts_with("From MAILER-DAEMON "));
        assert!(text.contains("\n>From here\n\nFrom "), "{text}");
        assert!(text.ends_with("\nbody\n\n"), "{text}");
        assert!(!dotlock_path(&path).exists());
    }

    #[test]
    fn a_held_dotlock_is_a_temporary_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mbox");
        fs::write(dotlock_path(&path), "1").unwrap();
        let mut mbox = Mbox::new("m", path.clone()).with_lock_timeout(Duration::from_millis(50));
        let e = mbox.deliver(&Envelope::default(), b"x\n").unwrap_err();
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().contains("locked"), "{e}");
    }
}
