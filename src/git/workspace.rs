//! What a step's worktree needs from git beyond its checkout: which of the user's files git
//! ignores, ignore rules that reach every worktree, and submodules.
//!
//! Submodules are populated from the user's own clones of them (`.git/modules/<name>`, or a
//! submodule's `.git` folder in the user's checkout), never from their remote: the URL is
//! pointed at the user's clone for that one command (`-c submodule.<name>.url=<path>`), so
//! neither the network nor the user's config is touched. A clone from a local path hardlinks
//! the object files, and the worktree's clone lives in the worktree's admin folder, inside the
//! user's `.git`, so on the same file system: nothing is copied, and unlike alternates
//! (`--reference`, measured as fast) the clone stays whole when the user's clone is gc'ed.
//!
//! Invariants:
//! - a worktree's submodules are at the commits its index records after [`Worktree::reset_hard`];
//! - the only file of the user's repository written here is `<common git dir>/info/exclude`,
//!   and only by appending anchored entries for paths the user's checkout already ignores.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{git_command, GitError, Oid, Repo, Result, Worktree};

/// A submodule a worktree's index records: its name (from `.gitmodules`), path and commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submodule {
    /// `None` when `.gitmodules` has no entry for the path (git can't populate it either).
    pub name: Option<String>,
    pub path: String,
    pub commit: Oid,
}

/// The heading of git machine's entries in `info/exclude`.
const EXCLUDE_HEADING: &str =
    "# git machine: folders its worktrees link to yours ([workspace] link)";

/// Run `git` in `dir` with `input` on its stdin; (exit code, stdout, stderr) whatever the code.
pub(super) fn git_code<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
    input: &[u8],
) -> Result<(i32, String, String)> {
    use std::io::Write;
    let mut child = git_command()
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(GitError::Spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Small inputs (a few paths): written whole before the output is read.
    stdin.write_all(input).map_err(GitError::Spawn)?;
    drop(stdin);
    let out = child.wait_with_output().map_err(GitError::Spawn)?;
    Ok((
        out.status.code().unwrap_or(128),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

fn io(e: std::io::Error, path: &Path) -> GitError {
    GitError::Io(format!("{}: {e}", path.display()))
}

impl Repo {
    /// The git dir of the checkout git machine was started in (`.git`, or
    /// `.git/worktrees/<name>` of a linked worktree): where its submodules' clones live.
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    /// Which of `paths` git ignores in the user's checkout, as `git check-ignore` says (a
    /// tracked file is never ignored; a folder is matched by `dir/` rules when it exists).
    pub fn ignored_in_checkout(&self, paths: &[String]) -> Result<Vec<String>> {
        match self.workdir() {
            Some(dir) => ignored_in(dir, paths),
            None => Ok(Vec::new()),
        }
    }

    /// Make every worktree ignore `paths` as such, whatever they are there (a symlink to a
    /// folder is not matched by `node_modules/`): `/<path>` entries appended to
    /// `<common git dir>/info/exclude` — the one exclude file git reads in linked worktrees —
    /// unless already there.
    pub fn exclude_everywhere(&self, paths: &[String]) -> Result<()> {
        let file = self.common_dir().join("info").join("exclude");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let have: Vec<&str> = text.lines().map(str::trim_end).collect();
        let missing: Vec<String> = paths
            .iter()
            .map(|p| format!("/{}", escape_pattern(p)))
            .filter(|line| !have.contains(&line.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let mut add = String::new();
        if !text.is_empty() && !text.ends_with('\n') {
            add.push('\n');
        }
        if !have.contains(&EXCLUDE_HEADING) {
            add.push_str(EXCLUDE_HEADING);
            add.push('\n');
        }
        for line in missing {
            add.push_str(&line);
            add.push('\n');
        }
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
        }
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| f.write_all(add.as_bytes()))
            .map_err(|e| io(e, &file))
    }
}

/// Which of `paths` git ignores in the checkout at `dir` (`git check-ignore`, paths on stdin).
fn ignored_in(dir: &Path, paths: &[String]) -> Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let args = ["check-ignore", "-z", "--stdin"];
    let input: Vec<u8> = paths
        .iter()
        .flat_map(|p| [p.as_bytes(), b"\0"].concat())
        .collect();
    match git_code(dir, &args, &input)? {
        (0 | 1, out, _) => Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()),
        (_, _, stderr) => Err(GitError::Cli {
            args: args.join(" "),
            stderr,
        }),
    }
}

/// `path` as an ignore pattern that matches exactly it.
fn escape_pattern(path: &str) -> String {
    let mut out = String::new();
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '!' | '#' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The git dir of the checkout at `dir`: its `.git` folder, or the folder its `.git` file
/// names; `None` when `dir` is not the top of a checkout.
pub fn git_dir_of(dir: &Path) -> Option<PathBuf> {
    let dotgit = dir.join(".git");
    let meta = std::fs::symlink_metadata(&dotgit).ok()?;
    if meta.is_dir() {
        return Some(dotgit);
    }
    let text = std::fs::read_to_string(&dotgit).ok()?;
    let named = Path::new(text.trim().strip_prefix("gitdir: ")?);
    let path = if named.is_absolute() {
        named.to_path_buf()
    } else {
        dir.join(named)
    };
    path.is_dir().then_some(path)
}

impl Worktree {
    /// Which of `paths` git ignores here, by this worktree's own ignore rules.
    pub fn ignored(&self, paths: &[String]) -> Result<Vec<String>> {
        ignored_in(&self.path, paths)
    }

    /// The submodules the index records, with their names from `.gitmodules` (none without
    /// one: then no process is started).
    pub fn submodules(&self) -> Result<Vec<Submodule>> {
        if !self.path.join(".gitmodules").is_file() {
            return Ok(Vec::new());
        }
        let (_, listed, _) = git_code(
            &self.path,
            &[
                "config",
                "-f",
                ".gitmodules",
                "-z",
                "--get-regexp",
                r"^submodule\..*\.path$",
            ],
            b"",
        )?;
        let names: Vec<(String, String)> = listed
            .split('\0')
            .filter_map(|entry| {
                let (key, path) = entry.split_once('\n')?;
                let name = key.strip_prefix("submodule.")?.strip_suffix(".path")?;
                Some((path.trim_end_matches('/').to_string(), name.to_string()))
            })
            .collect();
        let mut args = vec!["--literal-pathspecs", "ls-files", "-s", "-z", "--"];
        args.extend(names.iter().map(|(path, _)| path.as_str()));
        let staged = if names.is_empty() {
            String::new()
        } else {
            self.git(&args)?
        };
        Ok(staged
            .split('\0')
            .filter_map(|entry| {
                let (info, path) = entry.split_once('\t')?;
                let mut fields = info.split(' ');
                (fields.next()? == "160000").then_some(())?;
                let commit = Oid::parse(fields.next()?)?;
                let name = names
                    .iter()
                    .find(|(p, _)| p == path)
                    .map(|(_, n)| n.clone());
                Some(Submodule {
                    name,
                    path: path.to_string(),
                    commit,
                })
            })
            .collect())
    }

    /// Check out `sub` at its recorded commit from `source`, the user's clone of it (its git
    /// dir), its object files hardlinked: no network, no change to any config. Git's message
    /// when it can't (the user's clone lacks the commit).
    pub fn populate_submodule(&self, sub: &Submodule, name: &str, source: &Path) -> Result<()> {
        let source = source.to_string_lossy();
        let settings = [
            "protocol.file.allow=always".to_string(),
            format!("submodule.{name}.url={source}"),
            format!("submodule.{name}.active=true"),
            // Whatever the user's `submodule.<name>.update` says: a checkout, not a command.
            format!("submodule.{name}.update=checkout"),
        ];
        let mut args: Vec<&str> = Vec::new();
        for s in &settings {
            args.extend(["-c", s.as_str()]);
        }
        args.extend([
            "submodule",
            "update",
            "--quiet",
            "--init",
            "--no-fetch",
            "--",
            &sub.path,
        ]);
        self.git(&args)?;
        Ok(())
    }

    /// Submodules whose checkout differs from what the index records: (path, what changed:
    /// `new commits`, `modified files`, `untracked files`). Nested ones count for their
    /// outermost submodule, as `git status` reports them.
    pub fn submodule_changes(&self) -> Result<Vec<(String, String)>> {
        let populated: Vec<String> = self
            .submodules()?
            .into_iter()
            .filter(|s| git_dir_of(&self.path.join(&s.path)).is_some())
            .map(|s| s.path)
            .collect();
        if populated.is_empty() {
            return Ok(Vec::new());
        }
        // Only the submodules' paths: the rest of a large worktree is not scanned again.
        let mut args = vec![
            "--literal-pathspecs",
            "status",
            "--porcelain=v2",
            "-z",
            "--ignore-submodules=none",
            "--untracked-files=all",
            "--",
        ];
        args.extend(populated.iter().map(String::as_str));
        let out = self.git(&args)?;
        let mut changed = Vec::new();
        let mut records = out.split('\0');
        while let Some(record) = records.next() {
            let fields: Vec<&str> = match record.as_bytes().first() {
                Some(b'1') => record.splitn(9, ' ').collect(),
                Some(b'2') => {
                    records.next(); // the original path of a rename
                    record.splitn(10, ' ').collect()
                }
                _ => continue,
            };
            let (Some(sub), Some(path)) = (fields.get(2), fields.last()) else {
                continue;
            };
            let flags = sub.as_bytes();
            if flags.first() != Some(&b'S') || *sub == "S..." {
                continue;
            }
            let what: Vec<&str> = [
                (1, "new commits"),
                (2, "modified files"),
                (3, "untracked files"),
            ]
            .iter()
            .filter(|(i, _)| flags.get(*i).is_some_and(|f| *f != b'.'))
            .map(|(_, w)| *w)
            .collect();
            changed.push((path.to_string(), what.join(", ")));
        }
        Ok(changed)
    }

    /// Put every populated submodule (and theirs) back at the commit the index records, files
    /// and all; untracked files removed. Part of [`Worktree::reset_hard`].
    pub(super) fn reset_submodules(&self) -> Result<()> {
        for sub in self.submodules()? {
            let dir = self.path.join(&sub.path);
            if git_dir_of(&dir).is_none() {
                continue;
            }
            let inner = Worktree::new(dir);
            inner.git(&[
                "checkout",
                "-q",
                "--force",
                "--detach",
                &sub.commit.to_string(),
            ])?;
            inner.git(&["clean", "-ffdq"])?;
            inner.reset_submodules()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{init_scratch_repo, run_git, GitEnv};

    fn scratch() -> (tempfile::TempDir, Repo) {
        let dir = tempfile::tempdir().expect("temp dir");
        init_scratch_repo(dir.path()).expect("scratch repo");
        let repo = Repo::open(dir.path(), &GitEnv::default()).expect("repo");
        (dir, repo)
    }

    /// Regression: `check-ignore -z` with paths as arguments is refused by git ("-z only makes
    /// sense with --stdin"); paths go on stdin. A tracked file is never ignored, a folder is
    /// matched by a `dir/` rule.
    #[test]
    fn ignored_paths_are_asked_of_git_in_the_users_checkout() {
        let (dir, repo) = scratch();
        std::fs::write(dir.path().join(".gitignore"), "/.env\nnode_modules/\n").expect("write");
        std::fs::write(dir.path().join(".env"), "A=1\n").expect("write");
        std::fs::create_dir(dir.path().join("node_modules")).expect("mkdir");
        let paths: Vec<String> = [".env", "node_modules", "README.md", "odd name*"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let ignored = repo.ignored_in_checkout(&paths).expect("check-ignore");
        assert_eq!(ignored, [".env", "node_modules"]);
    }

    #[test]
    fn excludes_are_added_once_and_match_only_their_path() {
        let (dir, repo) = scratch();
        let paths = vec!["node_modules".to_string(), "odd *name".to_string()];
        repo.exclude_everywhere(&paths).expect("added");
        repo.exclude_everywhere(&paths).expect("added again");
        let text = std::fs::read_to_string(dir.path().join(".git/info/exclude")).expect("read");
        assert_eq!(text.matches("/node_modules\n").count(), 1, "{text}");
        assert_eq!(text.matches(EXCLUDE_HEADING).count(), 1, "{text}");
        assert!(text.contains("/odd\\ \\*name\n"), "{text}");
        std::fs::write(dir.path().join("odd *name"), "").expect("write");
        std::fs::write(dir.path().join("odd xname"), "").expect("write");
        let listed = vec!["odd *name".to_string(), "odd xname".to_string()];
        assert_eq!(
            repo.ignored_in_checkout(&listed).expect("asked"),
            ["odd *name"]
        );
    }

    /// Regression: git refuses `worktree remove` when submodules are checked out in it, which
    /// left every finished member's worktree behind; it is removed by path instead.
    #[test]
    fn a_worktree_with_a_submodule_checked_out_is_removed() {
        let (dir, repo) = scratch();
        let (sub_dir, _sub) = scratch();
        let url = sub_dir.path().to_string_lossy().into_owned();
        let allow = ["-c", "protocol.file.allow=always"];
        run_git(
            dir.path(),
            [&allow[..], &["submodule", "add", "-q", &url, "lib"]].concat(),
        )
        .expect("submodule added");
        run_git(dir.path(), ["commit", "-q", "-m", "lib"]).expect("committed");
        let head = repo.head_commit().expect("a commit");
        let wt_path = dir.path().join("wt");
        repo.worktree_add_detached(&wt_path, head)
            .expect("worktree");
        let wt = Worktree::new(wt_path.clone());
        let subs = wt.submodules().expect("listed");
        assert_eq!(subs.len(), 1);
        assert_eq!(
            (subs[0].name.as_deref(), subs[0].path.as_str()),
            (Some("lib"), "lib")
        );
        let source = dir.path().join(".git/modules/lib");
        wt.populate_submodule(&subs[0], "lib", &source)
            .expect("populated");
        assert!(wt_path.join("lib/README.md").exists());
        std::fs::write(wt_path.join("lib/README.md"), "changed\n").expect("write");
        assert_eq!(
            wt.submodule_changes().expect("status"),
            [("lib".to_string(), "modified files".to_string())]
        );
        wt.reset_hard(head).expect("reset");
        assert!(wt.submodule_changes().expect("status").is_empty());
        repo.worktree_remove(&wt_path).expect("removed");
        assert!(!wt_path.exists());
        assert_eq!(repo.worktrees().expect("listed").len(), 1);
    }
}
