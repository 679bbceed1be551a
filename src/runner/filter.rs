//! What a step's commit leaves out of what its program left in the worktree, and why.
//!
//! One function, [`withhold`], judges each new file a step made, so that every rule of this
//! kind (size, symlinks) yields a reason; `runner::stage::Rules` asks it after the secret
//! files of `store::secrets`, and the step record lists both in `left_out`. A withheld file
//! stays in the worktree as the step left it, untracked, and is in no commit; a file the
//! step's starting commit already holds is committed when it changes, whatever its size.
//!
//! - **Size**: a file larger than `machine.maxFileSize` (git config; default 100 MiB, the
//!   limit most git hosts refuse beyond; `k`, `m`, `g` suffixes as git reads integers) is left
//!   out: one agent dumping a build artefact or a core file would otherwise put it in history
//!   for good.
//! - **Symlinks out of the worktree**: a symlink whose target (absolute, or relative and
//!   climbing out with `..`) is outside the worktree is left out: it means nothing on another
//!   clone, and checked out elsewhere it points into that machine's files (`/etc/passwd`).
//!   Symlinks inside the worktree are committed as symlinks, as git does.
//!
//! git machine's own run folder (`.codemachine/runs/`) is never withheld.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::git::Repo;

/// A file a step added or changed, as [`withhold`] judges it.
pub struct Candidate {
    /// Its path in the tree, `/`-separated.
    pub path: String,
    /// Its size on disk (of the link itself, for a symlink).
    pub size: u64,
    /// Where it points, when it is a symlink.
    pub link: Option<PathBuf>,
}

impl Candidate {
    /// The file at `path` in worktree `root`, if it is there.
    pub fn at(root: &Path, path: &str) -> Option<Candidate> {
        let full = root.join(path);
        let meta = std::fs::symlink_metadata(&full).ok()?;
        Some(Candidate {
            path: path.to_string(),
            size: meta.len(),
            link: meta
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(&full).ok())
                .flatten(),
        })
    }
}

/// `machine.maxFileSize` when unset.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 100 * 1024 * 1024;
const MAX_FILE_SIZE_KEY: &str = "machine.maxFileSize";

/// The limits a step's files are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_size: u64,
}

impl Limits {
    /// The limits as configured for this repository (`git -c`, repository, global).
    pub fn of(repo: &Repo) -> Result<Limits> {
        let max_file_size = match repo.config_str(MAX_FILE_SIZE_KEY) {
            None => DEFAULT_MAX_FILE_SIZE,
            Some(v) => parse_size(&v).ok_or_else(|| {
                Error::usage(format!("{MAX_FILE_SIZE_KEY} is `{v}`, not a size"))
                    .with_hint(format!("write it as git writes sizes: `git config {MAX_FILE_SIZE_KEY} 50m` (bytes, or k, m, g)"))
            })?,
        };
        Ok(Limits { max_file_size })
    }
}

/// A size as git reads an integer: digits with an optional `k`, `m` or `g` (case-insensitive).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_lowercase()),
        _ => (t, ' '),
    };
    let n: u64 = digits.parse().ok()?;
    let factor = match unit {
        ' ' => 1,
        'k' => 1 << 10,
        'm' => 1 << 20,
        'g' => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Why the commit of a step leaves `file` out, if it does. `root` is the worktree.
pub fn withhold(limits: &Limits, root: &Path, file: &Candidate) -> Option<String> {
    if file.path.starts_with(".codemachine/runs/") {
        return None;
    }
    if let Some(target) = &file.link {
        return outside(root, &file.path, target)
            .then(|| format!("symlink to {}, outside the worktree", target.display()));
    }
    (file.size > limits.max_file_size).then(|| {
        format!(
            "{} bytes, over {MAX_FILE_SIZE_KEY} ({} bytes)",
            file.size, limits.max_file_size
        )
    })
}

/// Whether a symlink at `path` (relative to `root`) pointing at `target` leads out of `root`,
/// judged on the names alone (the target may not exist).
fn outside(root: &Path, path: &str, target: &Path) -> bool {
    if target.is_absolute() {
        return !target.starts_with(root);
    }
    let mut at: Vec<Component> = Path::new(path)
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                if at.pop().is_none() {
                    return true;
                }
            }
            Component::Normal(_) => at.push(c),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, link: Option<&str>) -> Candidate {
        Candidate {
            path: path.to_string(),
            size,
            link: link.map(PathBuf::from),
        }
    }

    #[test]
    fn sizes_read_as_git_reads_them() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("20k"), Some(20 * 1024));
        assert_eq!(parse_size("5M"), Some(5 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size("5x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn a_file_over_the_limit_is_withheld_and_one_at_it_is_not() {
        let limits = Limits { max_file_size: 10 };
        let root = Path::new("/wt");
        assert!(withhold(&limits, root, &file("big.bin", 11, None))
            .is_some_and(|r| r.contains("11 bytes") && r.contains("machine.maxFileSize")));
        assert_eq!(withhold(&limits, root, &file("ok.bin", 10, None)), None);
        assert_eq!(
            withhold(
                &limits,
                root,
                &file(".codemachine/runs/r/steps/01-a/output.log", 99, None)
            ),
            None
        );
    }

    #[test]
    fn symlinks_out_of_the_worktree_are_withheld_and_those_inside_are_not() {
        let limits = Limits { max_file_size: 10 };
        let root = Path::new("/wt");
        let judged =
            |path: &str, target: &str| withhold(&limits, root, &file(path, 1, Some(target)));
        assert!(judged("passwd", "/etc/passwd").is_some_and(|r| r.contains("/etc/passwd")));
        assert!(judged("a/up", "../../x").is_some());
        assert!(judged("up", "..").is_some());
        assert_eq!(judged("a/b/sib", "../c/file"), None);
        assert_eq!(judged("link", "./README.md"), None);
        assert_eq!(judged("abs", "/wt/README.md"), None);
    }
}
