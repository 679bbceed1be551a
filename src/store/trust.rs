//! Which workflow files of a repository the user trusts to run, kept outside every repository
//! (as direnv keeps its `allow` list): a workflow in `.codemachine/workflows/` may have arrived
//! with a clone or a pull, and running it runs its commands. A file the repository holds cannot
//! vouch for itself, so trust lives in `<data dir>/trust/<repo>-<hash>/` (the data dir is
//! `$XDG_DATA_HOME/git-machine`, see `Env::data_dir`), one entry per workflow file.
//!
//! Invariants: an entry keeps the trusted text itself (not only its blob id), so a changed file
//! can be shown as a diff against what was trusted; a file is trusted only when its text is
//! exactly an entry's; entries are written whole (temp file + rename), never edited in place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::git::{self, Oid};

/// Version of a trust entry's format.
const VERSION: u32 = 1;

/// One trusted workflow file.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    version: u32,
    /// The repository's work tree, as it was when trusted.
    repo: String,
    /// The workflow file, from the work tree's root.
    workflow: String,
    /// Its git blob id (`git hash-object`), to compare by eye.
    blob: Oid,
    trusted: String,
    content: String,
}

/// How a workflow file stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// Never trusted here.
    New,
    /// Trusted before with other content, given here.
    Changed {
        before: String,
    },
}

/// The trust entries of one repository.
pub struct TrustStore {
    dir: PathBuf,
    workdir: PathBuf,
}

impl TrustStore {
    /// The entries of the repository whose work tree is `workdir`, under `data_dir`.
    pub fn new(data_dir: &Path, workdir: &Path) -> TrustStore {
        let workdir = std::fs::canonicalize(workdir).unwrap_or_else(|_| workdir.to_path_buf());
        let name = workdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".to_string());
        let hash = format!("{:x}", md5::compute(workdir.to_string_lossy().as_bytes()));
        TrustStore {
            dir: data_dir
                .join("trust")
                .join(format!("{name}-{}", &hash[..16])),
            workdir,
        }
    }

    /// Where the entries are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `workflow` (a path from the work tree's root) is trusted with `content`.
    pub fn verdict(&self, workflow: &str, content: &str) -> Result<Verdict> {
        Ok(match self.read(&self.entry_path(workflow))? {
            None => Verdict::New,
            Some(e) if e.content == content => Verdict::Trusted,
            Some(e) => Verdict::Changed { before: e.content },
        })
    }

    /// Whether any workflow of this repository was trusted with exactly `content`.
    pub fn trusts_content(&self, content: &str) -> Result<bool> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(false);
        };
        for entry in entries.flatten() {
            if let Some(e) = self.read(&entry.path())? {
                if e.content == content {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Record that `workflow` is trusted with `content`; returns its blob id.
    pub fn trust(&self, workflow: &str, content: &str) -> Result<Oid> {
        let blob = git::blob_id(content.as_bytes())?;
        let entry = Entry {
            version: VERSION,
            repo: self.workdir.display().to_string(),
            workflow: workflow.to_string(),
            blob,
            trusted: super::now_rfc3339(),
            content: content.to_string(),
        };
        std::fs::create_dir_all(&self.dir)?;
        let path = self.entry_path(workflow);
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, super::to_toml(&entry))?;
        std::fs::rename(&tmp, &path)?;
        Ok(blob)
    }

    /// One file per workflow path, named by a hash of it (paths may hold any character).
    fn entry_path(&self, workflow: &str) -> PathBuf {
        let hash = format!("{:x}", md5::compute(workflow.as_bytes()));
        self.dir.join(format!("{}.toml", &hash[..16]))
    }

    fn read(&self, path: &Path) -> Result<Option<Entry>> {
        if path.extension().is_none_or(|x| x != "toml") {
            return Ok(None);
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let entry: Entry = toml::from_str(&text).map_err(|e| {
            Error::failed(format!("trust entry {} is unreadable: {e}", path.display()))
                .with_hint("remove it; `git machine trust <workflow>` writes it again")
        })?;
        if entry.version != VERSION {
            return Err(Error::failed(format!(
                "trust entry {} has version {}, this build reads {VERSION}",
                path.display(),
                entry.version
            ))
            .with_hint("remove it; `git machine trust <workflow>` writes it again"));
        }
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_is_per_repository_and_exact_content() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        let data = tmp.path().join("data");
        let store = TrustStore::new(&data, &a);
        let wf = ".codemachine/workflows/x.toml";
        assert_eq!(store.verdict(wf, "one").expect("verdict"), Verdict::New);
        let blob = store.trust(wf, "one").expect("trust");
        assert_eq!(blob, git::blob_id(b"one").expect("blob"));
        assert_eq!(store.verdict(wf, "one").expect("verdict"), Verdict::Trusted);
        assert_eq!(
            store.verdict(wf, "two").expect("verdict"),
            Verdict::Changed {
                before: "one".to_string()
            }
        );
        assert!(store.trusts_content("one").expect("content"));
        assert!(!store.trusts_content("two").expect("content"));
        let other = TrustStore::new(&data, &b);
        assert_eq!(other.verdict(wf, "one").expect("verdict"), Verdict::New);
        assert!(store.dir().starts_with(data.join("trust")));
    }

    #[test]
    fn an_unreadable_entry_is_an_error_not_trust() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = TrustStore::new(tmp.path(), tmp.path());
        let wf = "w.toml";
        store.trust(wf, "x").expect("trust");
        std::fs::write(store.entry_path(wf), "not = [toml").expect("write");
        assert!(store.verdict(wf, "x").is_err());
    }
}
