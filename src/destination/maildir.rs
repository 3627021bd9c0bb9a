//! Maildir delivery (the layout described at cr.yp.to/proto/maildir.html):
//! write to `tmp/`, fsync the file, rename into `new/`, fsync `new/`.
//! Only after the directory fsync does the message count as delivered.
//! With multidrop, `%U` in the path is the recipient (`~/Mail/%U`), and
//! the message is written once per recipient.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::message::Envelope;

use super::{expand_template, per_recipient, DeliveryReport, Destination};

/// A Maildir destination.
pub struct Maildir {
    name: String,
    root: PathBuf,
    hostname: String,
    /// Maildirs known to exist (one per recipient with `%U`).
    created: HashSet<PathBuf>,
    /// The base name the next delivery uses (a committed delivery intent).
    next_base: Option<String>,
}

impl Maildir {
    /// A Maildir at `root`; it is created on first delivery if missing.
    pub fn new(name: &str, root: PathBuf, hostname: &str) -> Maildir {
        Maildir {
            name: name.to_string(),
            root,
            // The Maildir spec reserves '/' and ':' in names.
            hostname: hostname.replace('/', "\\057").replace(':', "\\072"),
            created: HashSet::new(),
            next_base: None,
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

    fn ensure_dirs(&mut self, root: &Path) -> Result<()> {
        if self.created.contains(root) {
            return Ok(());
        }
        for sub in ["tmp", "new", "cur"] {
            let dir = root.join(sub);
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| self.fail(&format!("cannot create {}", dir.display()), e))?;
        }
        self.created.insert(root.to_path_buf());
        Ok(())
    }

    /// A base name unique across processes and time: seconds,
    /// microseconds, pid, a counter and the host. The file name adds the
    /// size (`,S=`).
    fn unique_base(&self) -> String {
        super::unique_base(&self.hostname)
    }

    /// The Maildirs a delivery for `envelope` writes into.
    fn roots(&self, envelope: &Envelope) -> Vec<PathBuf> {
        let template = self.root.to_string_lossy().into_owned();
        if !per_recipient(&template) {
            return vec![self.root.clone()];
        }
        envelope
            .recipients
            .iter()
            .map(|r| PathBuf::from(expand_template(&template, &envelope.account, r, "")))
            .collect()
    }
}

/// Whether `dir` holds a file whose name is `base` followed by the info
/// (`,S=...`) or flags (`:2,S`) parts a delivery or a mail reader adds.
fn holds(dir: &Path, base: &str) -> io::Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(rest) = name.strip_prefix(base) {
            if rest.is_empty() || rest.starts_with(',') || rest.starts_with(':') {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Destination for Maildir {
    fn name(&self) -> &str {
        &self.name
    }

    fn plan_name(&mut self) -> Option<String> {
        Some(self.unique_base())
    }

    fn use_name(&mut self, base: &str) {
        self.next_base = Some(base.to_string());
    }

    fn has_name(&mut self, envelope: &Envelope, base: &str) -> Result<bool> {
        for root in self.roots(envelope) {
            let found = holds(&root.join("new"), base)
                .and_then(|new| Ok(new || holds(&root.join("cur"), base)?))
                .map_err(|e| self.fail(&format!("looking into {}", root.display()), e))?;
            if !found {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let report = self.deliver_copies(envelope, message);
        self.next_base = None;
        report
    }
}

impl Maildir {
    fn deliver_copies(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let template = self.root.to_string_lossy().into_owned();
        if !per_recipient(&template) {
            let root = self.root.clone();
            self.write_into(&root, message)?;
            return Ok(DeliveryReport::all(&envelope.recipients));
        }
        let mut report = DeliveryReport::default();
        for recipient in &envelope.recipients {
            let root = PathBuf::from(expand_template(&template, &envelope.account, recipient, ""));
            match self.write_into(&root, message) {
                Ok(()) => report.accepted.push(recipient.clone()),
                Err(error) => report.refused.push(super::Refusal {
                    recipient: recipient.clone(),
                    error,
                }),
            }
        }
        Ok(report)
    }
}

impl Maildir {
    /// Writes one copy into the Maildir at `root`.
    fn write_into(&mut self, root: &Path, message: &[u8]) -> Result<()> {
        self.ensure_dirs(root)?;
        let base = match &self.next_base {
            Some(base) => base.clone(),
            None => self.unique_base(),
        };
        let name = format!("{base},S={}", message.len());
        let tmp = root.join("tmp").join(&name);
        let new = root.join("new").join(&name);
        if self.next_base.is_some() {
            // A run killed between writing and renaming left this behind.
            let _ = fs::remove_file(&tmp);
        }
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
        crate::fault::point("maildir-tmp-written");
        if let Err(e) = fs::rename(&tmp, &new) {
            let _ = fs::remove_file(&tmp);
            return Err(self.fail(&format!("moving into {}", new.display()), e));
        }
        crate::fault::point("maildir-renamed");
        sync_dir(&root.join("new")).map_err(|e| self.fail("syncing the new/ directory", e))?;
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
