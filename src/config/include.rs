//! `include = ["conf.d/*.toml"]`: a config for many mailboxes kept as one
//! file per mailbox. Patterns are globs; a relative one is taken from the
//! directory of the main config file. Included files hold only
//! `[[account]]` and `[destination.NAME]` tables (not `[general]`, and no
//! further `include`), and their errors name the included file and line.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::raw::{RawAccount, RawDestination};
use crate::error::{Error, Result};

/// What an included file may hold.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawIncluded {
    #[serde(default)]
    pub account: Vec<Spanned<RawAccount>>,
    #[serde(default)]
    pub destination: BTreeMap<String, Spanned<RawDestination>>,
}

/// Whether a pattern has glob wildcards (otherwise it names one file,
/// which must exist).
fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Reads the files the patterns name, in pattern order and, within a
/// pattern, in sorted order; a file matched twice is read once. `main` is
/// the including file; `error` makes an error pointing at the `include`
/// key there.
pub fn read_files(
    patterns: &[String],
    main: &Path,
    error: &dyn Fn(String) -> Error,
) -> Result<Vec<(PathBuf, String)>> {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let mut seen = Vec::new();
    for pattern in patterns {
        let full = super::relative_to(main, pattern);
        let full_text = full.to_string_lossy().into_owned();
        let mut matched: Vec<PathBuf> = if is_glob(pattern) {
            glob::glob(&full_text)
                .map_err(|e| error(format!("bad pattern {pattern:?}: {e}")))?
                .filter_map(|entry| entry.ok())
                .filter(|p| p.is_file())
                .collect()
        } else if full.is_file() {
            vec![full.clone()]
        } else {
            return Err(error(format!("{} does not exist", full.display())));
        };
        matched.sort();
        for path in matched {
            let key = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.contains(&key) || key == fs::canonicalize(main).unwrap_or_default() {
                continue;
            }
            seen.push(key);
            let text = fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!(
                    "{}: cannot read included config: {e}",
                    path.display()
                ))
            })?;
            files.push((path, text));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_relative_to_the_main_file_sorted_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config.toml");
        fs::write(&main, "").unwrap();
        fs::create_dir(dir.path().join("conf.d")).unwrap();
        for name in ["b.toml", "a.toml", "c.txt"] {
            fs::write(dir.path().join("conf.d").join(name), name).unwrap();
        }
        let err = |m: String| Error::Config(m);
        let files = read_files(
            &["conf.d/*.toml".into(), "conf.d/a.toml".into()],
            &main,
            &err,
        )
        .unwrap();
        let names: Vec<_> = files.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
        assert!(read_files(&["empty.d/*.toml".into()], &main, &err)
            .unwrap()
            .is_empty());
        let e = read_files(&["missing.toml".into()], &main, &err).unwrap_err();
        assert!(e.to_string().contains("missing.toml does not exist"), "{e}");
    }
}
