//! Maildir delivery (the layout described at cr.yp.to/proto/maildir.html):
//! write to `tmp/`, fsync the file, rename into `new/`, fsync `new/`.
//! Only after the directory fsync does the message count as delivered.
//! With multidrop, `%U` in the path is the recipient (`~/Mail/%U`), and
//! the message is written once per recipient.
//!
//! With `subfolders`, a message from an IMAP folder other than INBOX goes
//! into that folder's Maildir under the root (`.Lists.a/` for Maildir++,
//! `Lists/a/` verbatim: see `super::subfolders`), created on first use;
//! Maildir++ folders get the empty `maildirfolder` file Dovecot and
//! Courier create. With `flags`, a message the server had flagged
//! (`\Seen`, `\Flagged`, `\Answered`, `\Draft`) goes into `cur/` with
//! its info (`:2,FS`) instead of into `new/`: once, at download; nothing
//! is synchronised back.
//!
//! With deferred sync (the fetch loop's group commit), `deliver` only
//! writes the file into `tmp/`; `sync` then makes a whole batch durable
//! in the same order, once per batch instead of once per message: every
//! file's bytes reach the disk (one `syncfs(2)` per filesystem on Linux,
//! an fsync per file elsewhere), and only then are the files renamed into
//! `new/` and `new/` fsynced. A name in `new/` therefore always points at
//! complete bytes, which is what crash recovery (`has_name`) relies on.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::Subfolders;
use crate::error::{Error, Failure, Result};
use crate::message::Envelope;

use super::{
    expand_template, per_recipient, CrashRecovery, DeliveryReport, Destination, GroupCommit,
};

/// A Maildir destination.
pub struct Maildir {
    name: String,
    root: PathBuf,
    hostname: String,
    /// Maildirs known to exist (one per recipient with `%U`).
    created: HashSet<PathBuf>,
    /// The base name the next delivery uses (a committed delivery intent).
    next_base: Option<String>,
    /// Deferred sync is on: deliveries wait in `tmp/` for `sync`.
    deferred: bool,
    /// Written into `tmp/`, waiting for `sync` (deferred sync only).
    unsynced: Vec<Unsynced>,
    /// How the source's folders map to Maildirs under the root.
    subfolders: Subfolders,
    /// Whether the server's flags become Maildir info.
    flags: bool,
}

/// A file written into `tmp/` and not yet durable or in `new/`.
struct Unsynced {
    file: File,
    tmp: PathBuf,
    new: PathBuf,
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
            deferred: false,
            unsynced: Vec::new(),
            subfolders: Subfolders::None,
            flags: false,
        }
    }

    /// Mirrors the source's folders under the root as `subfolders` says,
    /// and with `flags`, keeps the flags the server had.
    pub fn with_tree(mut self, subfolders: Subfolders, flags: bool) -> Maildir {
        self.subfolders = subfolders;
        self.flags = flags;
        self
    }

    /// The Maildirs from `root` down to the one a message from `envelope`'s
    /// folder goes into (see `subfolders::maildir_dirs`). A name that
    /// cannot be mapped safely is a refusal of the message.
    fn dirs_for(&self, root: &Path, envelope: &Envelope) -> Result<Vec<PathBuf>> {
        super::subfolders::maildir_dirs(root, self.subfolders, &envelope.mailbox)
            .map_err(|why| Error::delivery(self.name.clone(), why, Failure::Refused))
    }

    /// The Maildir info for a message from `envelope` (`FS`), if any.
    fn info(&self, envelope: &Envelope) -> Option<String> {
        (self.flags && !envelope.flags.is_empty())
            .then(|| crate::message::flags_to_info(envelope.flags.chars()))
    }

    fn fail(&self, what: &str, e: io::Error) -> Error {
        super::local_error(&self.name, what, &e)
    }

    /// Creates the Maildirs in `dirs` (outermost first, as
    /// `dirs_for` gives them) where missing; the last one is where the
    /// message goes, returned.
    fn ensure_dirs(&mut self, dirs: &[PathBuf]) -> Result<PathBuf> {
        for (i, dir) in dirs.iter().enumerate() {
            // Maildir++ folders are marked as such; the root never is.
            let marked = i > 0 && self.subfolders == Subfolders::MaildirPlusPlus;
            self.ensure_maildir(dir, marked)?;
        }
        Ok(dirs.last().cloned().unwrap_or_else(|| self.root.clone()))
    }

    fn ensure_maildir(&mut self, root: &Path, maildirfolder: bool) -> Result<()> {
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
        if maildirfolder {
            let marker = root.join("maildirfolder");
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&marker)
                .map_err(|e| self.fail(&format!("cannot create {}", marker.display()), e))?;
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
    crate::fault::io("maildir-dirsync")?;
    File::open(dir)?.sync_all()
}

/// Puts the bytes of every file in `files` on disk: one `syncfs(2)` per
/// filesystem they are on, which costs one journal commit and one disk
/// cache flush for the whole batch (Linux reports write-back errors
/// through it since 5.8).
#[cfg(target_os = "linux")]
fn sync_data(files: &[Unsynced]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let mut devices = Vec::new();
    for f in files {
        let device = f.file.metadata()?.dev();
        if devices.contains(&device) {
            continue;
        }
        devices.push(device);
        // SAFETY: syncfs(2) on a file descriptor this struct owns.
        if unsafe { libc::syncfs(f.file.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Puts the bytes of every file in `files` on disk, one fsync each.
#[cfg(not(target_os = "linux"))]
fn sync_data(files: &[Unsynced]) -> io::Result<()> {
    files.iter().try_for_each(|f| f.file.sync_all())
}

impl Destination for Maildir {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let report = self.deliver_copies(envelope, message);
        self.next_base = None;
        report
    }

    fn group_commit(&mut self) -> Option<&mut dyn GroupCommit> {
        Some(self)
    }

    fn crash_recovery(&mut self) -> Option<&mut dyn CrashRecovery> {
        Some(self)
    }

    fn close(&mut self) {
        // Written but never synced (the run ended on an error before its
        // commit): not delivered, so not left lying in tmp/.
        for f in self.unsynced.drain(..) {
            let _ = fs::remove_file(&f.tmp);
        }
    }
}

impl CrashRecovery for Maildir {
    fn plan_name(&mut self) -> String {
        self.unique_base()
    }

    fn use_name(&mut self, base: &str) {
        self.next_base = Some(base.to_string());
    }

    fn has_name(&mut self, envelope: &Envelope, base: &str) -> Result<bool> {
        for root in self.roots(envelope) {
            // Where the delivery would have gone (a name that cannot be
            // mapped was never written).
            let Some(root) = self
                .dirs_for(&root, envelope)
                .ok()
                .and_then(|d| d.last().cloned())
            else {
                return Ok(false);
            };
            let found = holds(&root.join("new"), base)
                .and_then(|new| Ok(new || holds(&root.join("cur"), base)?))
                .map_err(|e| self.fail(&format!("looking into {}", root.display()), e))?;
            if !found {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl GroupCommit for Maildir {
    fn defer_sync(&mut self) {
        self.deferred = true;
    }

    fn sync(&mut self) -> Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let files = std::mem::take(&mut self.unsynced);
        // 1. Every file's bytes on disk before any name in new/ points
        //    at them.
        if let Err(e) = crate::fault::io("maildir-sync").and_then(|()| sync_data(&files)) {
            for f in &files {
                let _ = fs::remove_file(&f.tmp);
            }
            return Err(self.fail("syncing the delivered messages", e));
        }
        // 2. Into new/, then new/ itself. A failure part way leaves some
        //    names in new/: the caller commits nothing of the batch, and
        //    the next run's crash recovery (the delivery intents)
        //    recognises those instead of delivering them twice.
        let mut dirs: Vec<&Path> = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let renamed =
                crate::fault::io("maildir-rename").and_then(|()| fs::rename(&f.tmp, &f.new));
            if let Err(e) = renamed {
                for rest in &files[i..] {
                    let _ = fs::remove_file(&rest.tmp);
                }
                return Err(self.fail(&format!("moving into {}", f.new.display()), e));
            }
            crate::fault::point("maildir-renamed");
            let dir = f.new.parent().unwrap_or(Path::new("."));
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            sync_dir(dir).map_err(|e| self.fail("syncing the new/ directory", e))?;
        }
        Ok(())
    }
}

impl Maildir {
    fn deliver_copies(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let template = self.root.to_string_lossy().into_owned();
        if !per_recipient(&template) {
            let root = self.root.clone();
            self.write_into(&root, envelope, message)?;
            return Ok(DeliveryReport::all(&envelope.recipients));
        }
        let mut report = DeliveryReport::default();
        for recipient in &envelope.recipients {
            let root = PathBuf::from(expand_template(&template, &envelope.account, recipient, ""));
            match self.write_into(&root, envelope, message) {
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
    /// Writes one copy into the Maildir at `root` (or its subfolder for
    /// the envelope's folder): into `new/`, or with flags into `cur/`
    /// with its info (`base,S=size:2,FS`).
    fn write_into(&mut self, root: &Path, envelope: &Envelope, message: &[u8]) -> Result<()> {
        let dirs = self.dirs_for(root, envelope)?;
        let root = self.ensure_dirs(&dirs)?;
        let root = root.as_path();
        let base = match &self.next_base {
            Some(base) => base.clone(),
            None => self.unique_base(),
        };
        let name = format!("{base},S={}", message.len());
        let tmp = root.join("tmp").join(&name);
        let new = match self.info(envelope) {
            Some(info) => root.join("cur").join(format!("{name}:2,{info}")),
            None => root.join("new").join(&name),
        };
        if self.next_base.is_some() {
            // A run killed between writing and renaming left this behind.
            let _ = fs::remove_file(&tmp);
        }
        let deferred = self.deferred;
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                crate::fault::io("maildir-write")?;
                f.write_all(message)?;
                if !deferred {
                    crate::fault::io("maildir-sync")?;
                    f.sync_all()?;
                }
                Ok(f)
            });
        let file = match written {
            Ok(file) => file,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(self.fail(&format!("writing {}", tmp.display()), e));
            }
        };
        crate::fault::point("maildir-tmp-written");
        if deferred {
            self.unsynced.push(Unsynced { file, tmp, new });
            return Ok(());
        }
        drop(file);
        if let Err(e) = crate::fault::io("maildir-rename").and_then(|()| fs::rename(&tmp, &new)) {
            let _ = fs::remove_file(&tmp);
            return Err(self.fail(&format!("moving into {}", new.display()), e));
        }
        crate::fault::point("maildir-renamed");
        if let Err(e) = sync_dir(new.parent().unwrap_or(root)) {
            // Not known to be durable, so not delivered: take the name
            // back, or a later retry (the spool) would deliver it twice.
            let _ = fs::remove_file(&new);
            return Err(self.fail("syncing the new/ directory", e));
        }
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

    fn names(dir: &Path) -> usize {
        fs::read_dir(dir).map_or(0, |d| d.count())
    }

    #[test]
    fn deferred_sync_moves_into_new_only_at_sync() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Mail");
        let mut md = Maildir::new("home", root.clone(), "h");
        assert!(md.group_commit().is_some());
        md.defer_sync();
        md.deliver(&Envelope::default(), b"Subject: x\n\n1\n")
            .unwrap();
        md.deliver(&Envelope::default(), b"Subject: y\n\n2\n")
            .unwrap();
        // Not delivered yet: a reader (or crash recovery) sees nothing.
        assert_eq!(names(&root.join("new")), 0);
        assert_eq!(names(&root.join("tmp")), 2);
        md.sync().unwrap();
        assert_eq!(names(&root.join("new")), 2);
        assert_eq!(names(&root.join("tmp")), 0);
        // Nothing waiting: a no-op.
        md.sync().unwrap();
        // Written and never synced (the run failed before its commit):
        // close removes it, so tmp/ does not fill up.
        md.deliver(&Envelope::default(), b"Subject: z\n\n3\n")
            .unwrap();
        md.close();
        assert_eq!(names(&root.join("tmp")), 0);
        assert_eq!(names(&root.join("new")), 2);
    }

    fn from(mailbox: &[&str], flags: &str) -> Envelope {
        Envelope {
            mailbox: mailbox.iter().map(|l| l.to_string()).collect(),
            flags: flags.into(),
            ..Envelope::default()
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn maildirpp_subfolders_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Mail");
        let mut md =
            Maildir::new("home", root.clone(), "h").with_tree(Subfolders::MaildirPlusPlus, true);
        md.deliver(&from(&["Lists", "dev.rust"], "FS"), b"a\n")
            .unwrap();
        md.deliver(&from(&[], ""), b"b\n").unwrap();
        let sub = root.join(".Lists.dev\\2erust");
        assert!(sub.join("maildirfolder").is_file());
        assert!(!root.join("maildirfolder").exists());
        let cur = files(&sub.join("cur"));
        assert_eq!(cur.len(), 1);
        assert!(cur[0].ends_with(",S=2:2,FS"), "{cur:?}");
        assert!(files(&sub.join("new")).is_empty());
        assert_eq!(files(&root.join("new")).len(), 1);
        // Crash recovery looks where the delivery went.
        let base = md.plan_name();
        md.use_name(&base);
        let env = from(&["Lists", "dev.rust"], "S");
        md.deliver(&env, b"c\n").unwrap();
        assert!(md.has_name(&env, &base).unwrap());
        assert!(!md.has_name(&from(&[], "S"), &base).unwrap());
    }

    #[test]
    fn verbatim_subfolders_are_maildirs_at_every_level_and_flags_need_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Mail");
        let mut md = Maildir::new("home", root.clone(), "h").with_tree(Subfolders::Verbatim, false);
        md.deliver(&from(&["Lists", "a"], "S"), b"a\n").unwrap();
        for d in [root.clone(), root.join("Lists"), root.join("Lists/a")] {
            assert!(d.join("cur").is_dir() && d.join("tmp").is_dir(), "{d:?}");
        }
        assert!(!root.join("Lists/a/maildirfolder").exists());
        // flags = false: into new/, no info.
        assert_eq!(files(&root.join("Lists/a/new")).len(), 1);
        // A name that cannot be mapped safely is refused, nothing written.
        let e = md.deliver(&from(&["..", "x"], ""), b"x\n").unwrap_err();
        assert!(e.is_refusal(), "{e}");
        assert_eq!(files(dir.path()), ["Mail"]);
    }

    #[test]
    fn unwritable_maildir_is_a_permanent_failure() {
        let mut md = Maildir::new("home", PathBuf::from("/proc/nonexistent/Maildir"), "h");
        let e = md.deliver(&Envelope::default(), b"x\n").unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("home"), "{e}");
    }
}
