//! One file per message in a directory (Mailismus's download-as-file
//! mode): a name from a template (`%A` account, `%U` recipient, `%I` a
//! unique id; `%A` and `%U` work in the directory path too), written
//! atomically: to a hidden temporary name, fsynced, linked to its final
//! name (never replacing a file already there), then the directory is
//! fsynced. A reader polling the directory never sees half a message.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::message::Envelope;

use super::{
    expand_template, local_error, per_recipient, CrashRecovery, DeliveryReport, Destination,
    Refusal,
};

/// A directory destination.
pub struct Directory {
    name: String,
    path: PathBuf,
    filename: String,
    hostname: String,
    /// The unique id (`%I`) the next delivery uses (a committed intent).
    next_id: Option<String>,
}

impl Directory {
    /// Files named by `filename` (a template) in the directory `path`.
    pub fn new(name: &str, path: PathBuf, filename: String, hostname: &str) -> Directory {
        Directory {
            name: name.to_string(),
            path,
            filename,
            hostname: super::file_safe(hostname),
            next_id: None,
        }
    }

    /// Seconds, microseconds, pid, a counter and the host: unique across
    /// processes and time, like a Maildir name.
    fn unique_id(&self) -> String {
        super::unique_base(&self.hostname)
    }

    fn write_one(&self, account: &str, recipient: &str, message: &[u8]) -> Result<PathBuf> {
        let fail = |what: &str, p: &Path, e: io::Error| {
            local_error(&self.name, &format!("{what} {}", p.display()), &e)
        };
        let unique = self.next_id.clone().unwrap_or_else(|| self.unique_id());
        let dir = PathBuf::from(expand_template(
            &self.path.to_string_lossy(),
            account,
            recipient,
            &unique,
        ));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| fail("cannot create", &dir, e))?;
        let final_path = dir.join(expand_template(&self.filename, account, recipient, &unique));
        let tmp = dir.join(format!(".tmp.{unique}"));
        // A run killed before it could remove this left it behind.
        let _ = fs::remove_file(&tmp);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                crate::fault::io("directory-write")?;
                f.write_all(message)?;
                crate::fault::io("directory-sync")?;
                f.sync_all()
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(fail("cannot write", &tmp, e));
        }
        // link() refuses to replace an existing file, unlike rename().
        let linked =
            crate::fault::io("directory-rename").and_then(|()| fs::hard_link(&tmp, &final_path));
        let _ = fs::remove_file(&tmp);
        linked.map_err(|e| fail("cannot create", &final_path, e))?;
        let synced = crate::fault::io("directory-dirsync")
            .and_then(|()| File::open(&dir))
            .and_then(|d| d.sync_all());
        if let Err(e) = synced {
            // Not known to be durable, so not delivered: take it back.
            let _ = fs::remove_file(&final_path);
            return Err(fail("cannot sync", &dir, e));
        }
        Ok(final_path)
    }
}

impl Destination for Directory {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let report = self.deliver_files(envelope, message);
        self.next_id = None;
        report
    }

    /// Only a file name with `%I` identifies one delivery; without it a
    /// name may belong to another message, so nothing is recognised.
    fn crash_recovery(&mut self) -> Option<&mut dyn CrashRecovery> {
        if self.filename.contains("%I") {
            Some(self)
        } else {
            None
        }
    }
}

impl CrashRecovery for Directory {
    fn plan_name(&mut self) -> String {
        self.unique_id()
    }

    fn use_name(&mut self, base: &str) {
        self.next_id = Some(base.to_string());
    }

    fn has_name(&mut self, envelope: &Envelope, base: &str) -> Result<bool> {
        let recipients: Vec<&str> = if envelope.recipients.is_empty() {
            vec![""]
        } else {
            envelope.recipients.iter().map(String::as_str).collect()
        };
        Ok(recipients.iter().all(|r| {
            let dir = expand_template(&self.path.to_string_lossy(), &envelope.account, r, base);
            Path::new(&dir)
                .join(expand_template(&self.filename, &envelope.account, r, base))
                .exists()
        }))
    }
}

impl Directory {
    fn deliver_files(&mut self, envelope: &Envelope, message: &[u8]) -> Result<DeliveryReport> {
        let per = per_recipient(&self.filename) || per_recipient(&self.path.to_string_lossy());
        if !per {
            let recipient = envelope.recipients.first().map_or("", String::as_str);
            self.write_one(&envelope.account, recipient, message)?;
            return Ok(DeliveryReport::all(&envelope.recipients));
        }
        let mut report = DeliveryReport::default();
        for recipient in &envelope.recipients {
            match self.write_one(&envelope.account, recipient, message) {
                Ok(_) => report.accepted.push(recipient.clone()),
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

    #[test]
    fn writes_one_file_per_message_and_recipient() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Directory::new("files", dir.path().join("%A"), "%U-%I.eml".into(), "host/x");
        let env = Envelope {
            recipients: vec!["a@x".into(), "b@x".into()],
            account: "isp".into(),
            ..Envelope::default()
        };
        let r = d.deliver(&env, b"Subject: x\n\nhi\n").unwrap();
        assert_eq!(r.accepted.len(), 2);
        let mut names: Vec<String> = fs::read_dir(dir.path().join("isp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].starts_with("a@x-") && names[0].ends_with(".eml"));
        assert!(names[1].starts_with("b@x-"));
        let bytes = fs::read(dir.path().join("isp").join(&names[0])).unwrap();
        assert_eq!(bytes, b"Subject: x\n\nhi\n");
    }
}
