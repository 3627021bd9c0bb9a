//! Maildir delivery (the layout described at cr.yp.to/proto/maildir.html):
//! write to `tmp/`, fsync the file, rename into `new/`, fsync `new/`.
//! Only after the directory fsync does the message count as delivered.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::message::Envelope;

use super::Destination;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A Maildir destination.
pub struct Maildir {
    name: String,
    root: PathBuf,
    hostname: String,
    created: bool,
}

impl Maildir {
    /// A Maildir at `root`; it is created on first delivery if missing.
    pub fn new(name: &str, root: PathBuf, hostname: &str) -> Maildir {
        Maildir {
            name: name.to_string(),
            root,
            // The Maildir spec reserves '/' and ':' in names.
            hostname: hostname.replace('/', "\\057").replace(':', "\\072"),
            created: false,
        }
    }

    fn fail(&self, what: &str, e: io::Error) -> Error {
        // A full disk or quota clears up; most other local errors do not.
        let transient = matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
            || e.kind() == io::ErrorKind::Interrupted;
        Error::Delivery {
            destination: self.name.clone(),
            message: format!("{what}: {e}"),
            transient,
        }
    }

    fn ensure_dirs(&mut self) -> Result<()> {
        if self.created {
            return Ok(());
        }
        for sub in ["tmp", "new", "cur"] {
            let dir = self.root.join(sub);
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| self.fail(&format!("cannot create {}", dir.display()), e))?;
        }
        self.created = true;
        Ok(())
    }

    /// A name unique across processes and time: seconds, microseconds,
    /// pid, a counter and the host, plus the size (`,S=`).
    fn unique_name(&self, size: usize) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{}.M{}P{}Q{}.{},S={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            self.hostname,
            size
        )
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Destination for Maildir {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, _envelope: &Envelope, message: &[u8]) -> Result<()> {
        self.ensure_dirs()?;
        let name = self.unique_name(message.len());
        let tmp = self.root.join("tmp").join(&name);
        let new = self.root.join("new").join(&name);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(message)?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.fail(&format!("writing {}", tmp.display()), e));
        }
        if let Err(e) = fs::rename(&tmp, &new) {
            let _ = fs::remove_file(&tmp);
            return Err(self.fail(&format!("moving into {}", new.display()), e));
        }
        sync_dir(&self.root.join("new")).map_err(|e| self.fail("syncing the new/ directory", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_with_size_in_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Mail");
        let mut md = Maildir::new("home", root.clone(), "host/a:b");
        md.deliver(&Envelope::default(), b"Subject: x\n\nhi\n")
            .unwrap();
        md.deliver(&Envelope::default(), b"Subject: y\n\nhi\n")
            .unwrap();
        let names: Vec<String> = fs::read_dir(root.join("new"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2);
        for n in &names {
            assert!(n.ends_with(",S=15"), "{n}");
            assert!(n.contains("host\\057a\\072b"), "{n}");
        }
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_maildir_is_a_permanent_failure() {
        let mut md = Maildir::new("home", PathBuf::from("/proc/nonexistent/Maildir"), "h");
        let e = md.deliver(&Envelope::default(), b"x\n").unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("home"), "{e}");
    }
}
