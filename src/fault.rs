//! Fault injection for the crash and fault tests: named points in the
//! durable order where a debug build can be told to die as if by
//! `kill -9`, or to fail as if the disk, the file system or the kernel
//! said no. In release builds both compile to nothing.
//!
//! `MAILRETR_FAULT` holds one or more specs, separated by commas:
//!
//! - `NAME:N` kills the process with SIGKILL the N-th time (1-based) the
//!   point NAME is reached (`point`);
//! - `NAME:N:ERRNO` makes the N-th call of `io(NAME)` return that error
//!   (`EIO`, `ENOSPC`, `EROFS`, `EACCES`, `ENOTDIR`, `EDQUOT`);
//! - `NAME:N+:ERRNO` makes the N-th and every later call fail, as a file
//!   system that went read-only stays so.
//!
//! The I/O points sit just before each write, sync, rename, directory
//! sync, SQLite commit and MDA spawn (`maildir-write`, `maildir-sync`,
//! `maildir-rename`, `maildir-dirsync`, `mbox-write`, `mbox-sync`,
//! `directory-write`, `directory-sync`, `directory-rename`,
//! `directory-dirsync`, `state-commit`, `mda-spawn`). The tests in
//! `tests/` (which run the debug binary) use them to check that after each
//! fault nothing is lost, nothing delivered twice and nothing deleted
//! undelivered.

use std::io;

/// Marks a place where a crash must be survivable.
#[inline]
pub fn point(name: &str) {
    #[cfg(debug_assertions)]
    debug::hit(name);
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// Marks a place where an I/O error must be survivable: `Ok(())` unless a
/// debug build was told to fail here.
#[inline]
pub fn io(name: &str) -> io::Result<()> {
    #[cfg(debug_assertions)]
    return debug::fail(name);
    #[cfg(not(debug_assertions))]
    {
        let _ = name;
        Ok(())
    }
}

/// The errno named in a fault spec.
pub fn errno_named(name: &str) -> Option<i32> {
    Some(match name {
        "EIO" => libc::EIO,
        "ENOSPC" => libc::ENOSPC,
        "EROFS" => libc::EROFS,
        "EACCES" => libc::EACCES,
        "ENOTDIR" => libc::ENOTDIR,
        "EDQUOT" => libc::EDQUOT,
        "EPERM" => libc::EPERM,
        _ => return None,
    })
}

/// One parsed spec from `MAILRETR_FAULT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The point's name.
    pub point: String,
    /// The (1-based) hit it applies to.
    pub nth: u64,
    /// Whether every later hit fails too.
    pub onwards: bool,
    /// `None`: SIGKILL; otherwise the errno to return.
    pub errno: Option<i32>,
}

/// Parses `MAILRETR_FAULT`; malformed specs are ignored.
pub fn parse(specs: &str) -> Vec<Spec> {
    specs
        .split(',')
        .filter_map(|spec| {
            let mut parts = spec.trim().split(':');
            let point = parts.next()?.to_string();
            let n = parts.next()?;
            let (n, onwards) = match n.strip_suffix('+') {
                Some(n) => (n, true),
                None => (n, false),
            };
            let errno = match parts.next() {
                None => None,
                Some(e) => Some(errno_named(e)?),
            };
            if point.is_empty() || parts.next().is_some() {
                return None;
            }
            Some(Spec {
                point,
                nth: n.parse().ok()?,
                onwards,
                errno,
            })
        })
        .collect()
}

#[cfg(debug_assertions)]
mod debug {
    use std::collections::HashMap;
    use std::io;
    use std::sync::{Mutex, OnceLock};

    use super::Spec;

    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    static HITS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();

    fn specs() -> &'static [Spec] {
        SPECS.get_or_init(|| {
            std::env::var("MAILRETR_FAULT")
                .map(|s| super::parse(&s))
                .unwrap_or_default()
        })
    }

    /// Counts a hit of `name` and returns the spec it triggers, if any.
    fn triggered(name: &str, want_errno: bool) -> Option<&'static Spec> {
        let specs = specs();
        if !specs
            .iter()
            .any(|s| s.point == name && s.errno.is_some() == want_errno)
        {
            return None;
        }
        let kind = if want_errno { "io" } else { "kill" };
        let hits = HITS.get_or_init(Default::default);
        let n = {
            let mut hits = hits.lock().unwrap_or_else(|p| p.into_inner());
            let n = hits.entry(format!("{kind}:{name}")).or_insert(0);
            *n += 1;
            *n
        };
        specs.iter().find(|s| {
            s.point == name
                && s.errno.is_some() == want_errno
                && (n == s.nth || (s.onwards && n > s.nth))
        })
    }

    pub fn hit(name: &str) {
        if triggered(name, false).is_some() {
            // SAFETY: kill(2) on our own pid; SIGKILL cannot be handled, so
            // nothing runs after this: exactly what a crash looks like.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }

    pub fn fail(name: &str) -> io::Result<()> {
        match triggered(name, true).and_then(|s| s.errno) {
            Some(errno) => {
                log::debug!("fault injected at {name}: errno {errno}");
                Err(io::Error::from_raw_os_error(errno))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let specs = parse("synced:2, maildir-sync:1+:EROFS,state-commit:3:EIO,bad,x:y,z:1:EWHAT");
        assert_eq!(
            specs,
            vec![
                Spec {
                    point: "synced".into(),
                    nth: 2,
                    onwards: false,
                    errno: None
                },
                Spec {
                    point: "maildir-sync".into(),
                    nth: 1,
                    onwards: true,
                    errno: Some(libc::EROFS)
                },
                Spec {
                    point: "state-commit".into(),
                    nth: 3,
                    onwards: false,
                    errno: Some(libc::EIO)
                },
            ]
        );
    }
}
