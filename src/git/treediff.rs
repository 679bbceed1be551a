//! What changed between two trees, opening only the folders whose ids differ.
//!
//! libgit2's tree-to-tree diff walks every entry of both trees, so its cost grows with the
//! repository; a step changes a handful of files, and comparing folder ids first makes the
//! cost grow with the change instead: a 100,000-file tree with one new file costs a few tree
//! reads.

use git2::{ObjectType, Tree, TreeEntry};

use super::{GitError, Oid, Result};

/// How a path differs between the old tree and the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Deleted,
    Modified,
}

/// One file (or gitlink) that differs: its path's bytes, how, and its ids in the old and the
/// new tree (`None` on the side that does not have it). A file that became a folder is a
/// deletion of the file and an addition of every file in the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub path: Vec<u8>,
    pub change: Change,
    pub old: Option<Entry>,
    pub new: Option<Entry>,
}

/// A file's id and mode in one of the trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: Oid,
    pub mode: i32,
}

impl Entry {
    /// Whether this is a gitlink (a submodule's commit), not a file.
    pub fn is_gitlink(&self) -> bool {
        self.mode == 0o160000
    }

    /// The mode as libgit2 names it, to write the entry into a tree.
    pub fn file_mode(&self) -> Result<git2::FileMode> {
        Ok(match self.mode {
            0o100644 => git2::FileMode::Blob,
            0o100755 => git2::FileMode::BlobExecutable,
            0o120000 => git2::FileMode::Link,
            0o160000 => git2::FileMode::Commit,
            other => {
                return Err(GitError::Io(format!(
                    "a staged entry has mode {other:o}, which no tree entry has"
                )))
            }
        })
    }
}

/// Read `git diff-index --raw -z --no-renames` output: records of
/// `:<old mode> <new mode> <old id> <new id> <status>` NUL `<path>` NUL.
pub fn parse_raw(out: &[u8]) -> std::result::Result<Vec<Changed>, String> {
    let mut fields = out.split(|b| *b == 0);
    let mut changes = Vec::new();
    while let Some(meta) = fields.next() {
        if meta.is_empty() {
            continue;
        }
        let path = fields
            .next()
            .filter(|p| !p.is_empty())
            .ok_or("a record without its path")?;
        let meta = std::str::from_utf8(meta).map_err(|_| "a record that is not text")?;
        let shown = String::from_utf8_lossy(path);
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let [old_mode, new_mode, old_id, new_id, status] = parts[..] else {
            return Err(format!("unreadable record `{meta}` for {shown}"));
        };
        let side = |mode: &str, id: &str| -> std::result::Result<Option<Entry>, String> {
            let mode = i32::from_str_radix(mode, 8).map_err(|_| format!("bad mode in `{meta}`"))?;
            if mode == 0 {
                return Ok(None);
            }
            let id = Oid::parse(id).ok_or_else(|| format!("bad id in `{meta}`"))?;
            Ok(Some(Entry { id, mode }))
        };
        let change = match status {
            "A" => Change::Added,
            "D" => Change::Deleted,
            "M" | "T" => Change::Modified,
            "U" => return Err(format!("{shown} is unmerged: resolve it and stage it")),
            _ => return Err(format!("unexpected status `{status}` for {shown}")),
        };
        changes.push(Changed {
            path: path.to_vec(),
            change,
            old: side(old_mode, old_id)?,
            new: side(new_mode, new_id)?,
        });
    }
    Ok(changes)
}

/// Every file that differs between trees `old` and `new`, in path order (as git sorts an
/// index); subfolders with the same id on both sides are not opened.
pub fn changes(repo: &git2::Repository, old: &Tree<'_>, new: &Tree<'_>) -> Result<Vec<Changed>> {
    let mut out = Vec::new();
    compare(repo, Some(old), Some(new), &mut Vec::new(), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The fewest paths that cover every difference between trees `old` and `new`: a folder only
/// one side has is one path, not each file in it (as pathspecs for a checkout of exactly
/// those paths). `None` once there would be more than `most`.
pub fn changed_paths(
    repo: &git2::Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
    most: usize,
) -> Result<Option<Vec<Vec<u8>>>> {
    let mut out = Vec::new();
    let fits = outline(repo, old, new, &mut Vec::new(), &mut out, most)?;
    Ok(fits.then_some(out))
}

/// [`changed_paths`] of two folders whose path is `prefix`; `false` once `out` is full.
fn outline(
    repo: &git2::Repository,
    old: &Tree<'_>,
    new: &Tree<'_>,
    prefix: &mut Vec<u8>,
    out: &mut Vec<Vec<u8>>,
    most: usize,
) -> Result<bool> {
    for name in &names([old, new]) {
        let (o, n) = (old.get_name_bytes(name), new.get_name_bytes(name));
        if same(o.as_ref(), n.as_ref()) {
            continue;
        }
        let len = prefix.len();
        prefix.extend_from_slice(name);
        let folders = match (&o, &n) {
            (Some(o), Some(n)) if is_tree(o) && is_tree(n) => {
                Some((repo.find_tree(o.id())?, repo.find_tree(n.id())?))
            }
            _ => None,
        };
        let fits = match folders {
            Some((o, n)) => {
                prefix.push(b'/');
                outline(repo, &o, &n, prefix, out, most)?
            }
            None => {
                out.push(prefix.clone());
                out.len() <= most
            }
        };
        prefix.truncate(len);
        if !fits {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every name in any of `trees`, sorted, once.
pub(super) fn names<'a, 'r: 'a>(trees: impl IntoIterator<Item = &'a Tree<'r>>) -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = trees
        .into_iter()
        .flat_map(|t| t.iter().map(|e| e.name_bytes().to_vec()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether two entries for one name are the same (id and mode): nothing under it differs.
fn same(o: Option<&TreeEntry<'_>>, n: Option<&TreeEntry<'_>>) -> bool {
    matches!((o, n), (Some(o), Some(n)) if o.id() == n.id() && o.filemode() == n.filemode())
}

fn is_tree(e: &TreeEntry<'_>) -> bool {
    e.kind() == Some(ObjectType::Tree)
}

fn entry(e: &TreeEntry<'_>) -> Entry {
    Entry {
        id: Oid(e.id()),
        mode: e.filemode(),
    }
}

/// Compare two folders (either may be absent: everything in the other is added or deleted),
/// whose path is `prefix`, appending what differs to `out`.
fn compare(
    repo: &git2::Repository,
    old: Option<&Tree<'_>>,
    new: Option<&Tree<'_>>,
    prefix: &mut Vec<u8>,
    out: &mut Vec<Changed>,
) -> Result<()> {
    for name in &names(old.into_iter().chain(new)) {
        let o = old.and_then(|t| t.get_name_bytes(name));
        let n = new.and_then(|t| t.get_name_bytes(name));
        if same(o.as_ref(), n.as_ref()) {
            continue;
        }
        let len = prefix.len();
        prefix.extend_from_slice(name);
        let (o_tree, o_file) = split(repo, o.as_ref())?;
        let (n_tree, n_file) = split(repo, n.as_ref())?;
        if o_tree.is_some() || n_tree.is_some() {
            prefix.push(b'/');
            compare(repo, o_tree.as_ref(), n_tree.as_ref(), prefix, out)?;
            prefix.truncate(len + name.len());
        }
        let change = match (o_file, n_file) {
            (Some(_), Some(_)) => Some(Change::Modified),
            (None, Some(_)) => Some(Change::Added),
            (Some(_), None) => Some(Change::Deleted),
            (None, None) => None,
        };
        if let Some(change) = change {
            out.push(Changed {
                path: prefix.clone(),
                change,
                old: o_file,
                new: n_file,
            });
        }
        prefix.truncate(len);
    }
    Ok(())
}

/// An entry as (the folder it is, the file it is): one of them or neither.
fn split<'r>(
    repo: &'r git2::Repository,
    e: Option<&TreeEntry<'_>>,
) -> Result<(Option<Tree<'r>>, Option<Entry>)> {
    Ok(match e {
        Some(e) if is_tree(e) => (Some(repo.find_tree(e.id())?), None),
        Some(e) => (None, Some(entry(e))),
        None => (None, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{init_scratch_repo, run_git, Worktree};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// What the index of `wt` has staged since `base`, read by libgit2, after checking that
    /// `git diff-index` lists exactly the same.
    fn staged_both_ways(wt: &Worktree, base: Oid) -> Vec<Changed> {
        let repo = git2::Repository::open(&wt.path).expect("open");
        let read = crate::git::staged_changes_read(&repo, base).expect("read the index");
        let listed = wt.staged_changes_listed(base).expect("diff-index");
        assert_eq!(read, listed, "libgit2 and git diff-index disagree");
        read
    }

    fn write(root: &std::path::Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("dirs");
        std::fs::write(p, text).expect("write");
    }

    /// One repository handle reads the index twice, git writing it in between: the second
    /// read sees what git wrote (libgit2 keeps the index it loaded first).
    #[test]
    fn a_second_read_in_one_repository_sees_what_git_staged_since() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        let wt = Worktree::new(root.to_path_buf());
        let base = wt.head().expect("head");
        let repo = git2::Repository::open(root).expect("open");
        assert!(crate::git::staged_changes_read(&repo, base)
            .expect("read")
            .is_empty());
        write(root, "new.txt", "n");
        run_git(root, ["add", "new.txt"]).expect("add");
        let second = crate::git::staged_changes_read(&repo, base).expect("read");
        assert_eq!(second.len(), 1, "{second:?}");
        assert_eq!(second[0].path, b"new.txt");
    }

    /// The tree staging builds from `git diff-index` and the base tree is the tree `git
    /// write-tree` makes of the same index, whatever the step did: files added deep in new
    /// folders, changed, deleted (a folder's last file too), made executable, turned into a
    /// symlink, a file turned into a folder and a folder into a file, a name that is not UTF-8.
    #[test]
    fn the_staged_tree_is_the_one_git_writes_from_the_index() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        for p in [
            "a.txt",
            "dir/b.txt",
            "gone/only.txt",
            "run.sh",
            "x",
            "y/z",
            "keep/k.txt",
        ] {
            write(root, p, p);
        }
        run_git(root, ["add", "-A"]).expect("add");
        run_git(root, ["commit", "-q", "-m", "base"]).expect("commit");
        let wt = Worktree::new(root.to_path_buf());
        let base = wt.head().expect("head");

        write(root, "a.txt", "changed");
        write(root, "new/deep/c.txt", "c");
        std::fs::remove_dir_all(root.join("gone")).expect("rm");
        let sh = root.join("run.sh");
        std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::remove_file(root.join("dir/b.txt")).expect("rm");
        std::os::unix::fs::symlink("../a.txt", root.join("dir/b.txt")).expect("symlink");
        std::fs::remove_file(root.join("x")).expect("rm");
        write(root, "x/inside.txt", "now a folder");
        std::fs::remove_dir_all(root.join("y")).expect("rm");
        write(root, "y", "now a file");
        let odd = std::ffi::OsStr::from_bytes(b"caf\xe9.txt");
        std::fs::write(root.join(odd), "latin-1 name").expect("write");

        let staged = wt.stage_all(&[], &|_| false, base).expect("stage");
        let git_tree = run_git(root, ["write-tree"]).expect("write-tree");
        assert_eq!(staged.tree.to_string(), git_tree.trim());
        assert!(staged.left_out.is_empty());
        assert_eq!(staged_both_ways(&wt, base).len(), 10);

        // Nothing changed since: the same tree again.
        let again = wt.stage_all(&[], &|_| false, base).expect("stage again");
        assert_eq!(again.tree, staged.tree);
    }

    /// A staged gitlink change is in the staged tree even when the repository tells git's
    /// diffs to ignore that submodule (`ignore = all` in `.gitmodules`).
    #[test]
    fn a_staged_gitlink_change_is_seen_even_when_the_submodule_is_ignored() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        let first = run_git(root, ["rev-parse", "HEAD"]).expect("head");
        let link = format!("160000,{},sub", first.trim());
        run_git(root, ["update-index", "--add", "--cacheinfo", &link]).expect("gitlink");
        run_git(root, ["commit", "-q", "-m", "sub"]).expect("commit");
        let wt = Worktree::new(root.to_path_buf());
        let base = wt.head().expect("head");
        let modules = "[submodule \"sub\"]\n\tpath = sub\n\turl = ./sub\n\tignore = all\n";
        std::fs::write(root.join(".gitmodules"), modules).expect("gitmodules");
        run_git(root, ["config", "diff.ignoreSubmodules", "all"]).expect("config");
        let moved = format!("160000,{},sub", base);
        run_git(root, ["update-index", "--cacheinfo", &moved]).expect("move gitlink");
        let changes = staged_both_ways(&wt, base);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].path, b"sub");
        assert!(changes[0]
            .new
            .is_some_and(|e| e.is_gitlink() && e.id == base));
    }

    /// An index with an unmerged file is an error both ways, naming the file.
    #[test]
    fn an_unmerged_index_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        let wt = Worktree::new(root.to_path_buf());
        let base = wt.head().expect("head");
        let blob = run_git(root, ["hash-object", "-w", "--stdin"]).expect("blob");
        let stages: String = (1..=3)
            .map(|n| format!("100644 {} {n}\tclash.txt\n", blob.trim()))
            .collect();
        let mut feed = std::process::Command::new("git")
            .args(["update-index", "--index-info"])
            .current_dir(root)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("update-index");
        use std::io::Write as _;
        feed.stdin
            .take()
            .expect("stdin")
            .write_all(stages.as_bytes())
            .expect("feed");
        assert!(feed.wait().expect("wait").success());
        let repo = git2::Repository::open(root).expect("open");
        for err in [
            crate::git::staged_changes_read(&repo, base).expect_err("read"),
            wt.staged_changes_listed(base).expect_err("listed"),
            wt.staged_changes(&repo, base).expect_err("either"),
        ] {
            let shown = err.to_string();
            assert!(shown.contains("clash.txt is unmerged"), "{shown}");
        }
    }

    /// A left-out new file is in neither the tree nor the index; the rest is staged.
    #[test]
    fn a_left_out_file_is_in_neither_the_tree_nor_the_index() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        let wt = Worktree::new(root.to_path_buf());
        let base = wt.head().expect("head");
        write(root, "s/.env", "SECRET=1");
        write(root, "s/code.rs", "fn main() {}");
        let staged = wt
            .stage_all(&[], &|p| p.ends_with(".env"), base)
            .expect("stage");
        assert_eq!(staged.left_out, ["s/.env"]);
        let git_tree = run_git(root, ["write-tree"]).expect("write-tree");
        assert_eq!(staged.tree.to_string(), git_tree.trim());
        let listed = run_git(root, ["ls-tree", "-r", "--name-only", git_tree.trim()]).expect("ls");
        assert!(
            listed.contains("s/code.rs") && !listed.contains(".env"),
            "{listed}"
        );
    }

    /// Comparing trees opens only folders whose ids differ, and finds every file under a
    /// folder that appeared or went away.
    #[test]
    fn tree_changes_list_each_changed_file_in_path_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        for p in ["a/1", "a/2", "b/1", "c"] {
            write(root, p, p);
        }
        run_git(root, ["add", "-A"]).expect("add");
        let old = run_git(root, ["write-tree"]).expect("tree");
        write(root, "a/2", "changed");
        std::fs::remove_dir_all(root.join("b")).expect("rm");
        write(root, "d/e/f", "new");
        run_git(root, ["add", "-A"]).expect("add");
        let new = run_git(root, ["write-tree"]).expect("tree");
        let repo = git2::Repository::open(root).expect("open");
        let tree = |id: &str| repo.find_tree(git2::Oid::from_str(id.trim()).expect("oid"));
        let (old, new) = (tree(&old).expect("old"), tree(&new).expect("new"));
        let got: Vec<(String, Change)> = changes(&repo, &old, &new)
            .expect("changes")
            .into_iter()
            .map(|c| (String::from_utf8_lossy(&c.path).into_owned(), c.change))
            .collect();
        assert_eq!(
            got,
            [
                ("a/2".to_string(), Change::Modified),
                ("b/1".to_string(), Change::Deleted),
                ("d/e/f".to_string(), Change::Added),
            ]
        );
    }

    /// The paths a switch checks out: a folder only one side has is one path, a changed file
    /// its own; more than asked for is `None`.
    #[test]
    fn changed_paths_name_a_folder_once_and_stop_past_the_limit() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        for p in ["old/run/1", "old/run/2", "keep/a", "keep/b", "top"] {
            write(root, p, p);
        }
        run_git(root, ["add", "-A"]).expect("add");
        let old = run_git(root, ["write-tree"]).expect("tree");
        std::fs::remove_dir_all(root.join("old")).expect("rm");
        write(root, "keep/b", "changed");
        write(root, "new/deep/x", "x");
        write(root, "new/deep/y", "y");
        run_git(root, ["add", "-A"]).expect("add");
        let new = run_git(root, ["write-tree"]).expect("tree");
        let repo = git2::Repository::open(root).expect("open");
        let tree = |id: &str| repo.find_tree(git2::Oid::from_str(id.trim()).expect("oid"));
        let (old, new) = (tree(&old).expect("old"), tree(&new).expect("new"));
        let paths = changed_paths(&repo, &old, &new, 10)
            .expect("paths")
            .expect("fits");
        let shown: Vec<String> = paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(shown, ["keep/b", "new", "old"]);
        assert!(changed_paths(&repo, &old, &new, 2)
            .expect("paths")
            .is_none());
        assert_eq!(
            changed_paths(&repo, &old, &old, 2).expect("paths"),
            Some(vec![])
        );
    }

    #[test]
    fn raw_records_are_read_and_bad_ones_refused() {
        let zero = "0".repeat(40);
        let one = "1".repeat(40);
        let out = format!(
            ":000000 100644 {zero} {one} A\0new file\0:100644 000000 {one} {zero} D\0old\0"
        );
        let got = parse_raw(out.as_bytes()).expect("parsed");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].path, b"new file");
        assert_eq!(got[0].change, Change::Added);
        assert!(got[0].old.is_none() && got[0].new.is_some());
        assert_eq!(got[1].change, Change::Deleted);
        assert!(got[1].new.is_none());
        let unmerged = format!(":000000 000000 {zero} {zero} U\0both\0");
        let err = parse_raw(unmerged.as_bytes()).expect_err("unmerged");
        assert!(err.contains("both is unmerged"), "{err}");
        assert!(parse_raw(b":100644 100644 zz\0p\0").is_err());
        assert!(parse_raw(format!(":000000 100644 {zero} {one} A\0").as_bytes()).is_err());
    }

    /// A worktree at one commit moves to another by writing only what differs; one that holds
    /// something else (staged work, or a change to a file the move rewrites) is not touched.
    #[test]
    fn advance_moves_a_worktree_that_holds_its_commit_and_leaves_others_alone() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        std::fs::write(root.join("a.txt"), "a\n").expect("write");
        run_git(root, ["add", "a.txt"]).expect("add");
        run_git(root, ["commit", "-q", "-m", "a"]).expect("commit");
        let wt = Worktree::new(root.to_path_buf());
        let from = wt.head().expect("head");
        std::fs::write(root.join("a.txt"), "a2\n").expect("write");
        std::fs::write(root.join("b.txt"), "b\n").expect("write");
        run_git(root, ["add", "-A"]).expect("add");
        run_git(root, ["commit", "-q", "-m", "b"]).expect("commit");
        let to = wt.head().expect("head");
        run_git(root, ["reset", "-q", "--hard", &from.to_string()]).expect("back");

        // Staged work: not the commit it claims to hold.
        std::fs::write(root.join("c.txt"), "c\n").expect("write");
        run_git(root, ["add", "c.txt"]).expect("add");
        assert!(!wt.advance(&[from], to).expect("advance"));
        assert_eq!(
            std::fs::read_to_string(root.join("a.txt")).expect("a"),
            "a\n"
        );
        run_git(root, ["rm", "-q", "--cached", "c.txt"]).expect("unstage");

        // A change to a file the move rewrites: refused, the change kept.
        std::fs::write(root.join("a.txt"), "mine\n").expect("write");
        assert!(!wt.advance(&[to, from], to).expect("advance"));
        assert_eq!(
            std::fs::read_to_string(root.join("a.txt")).expect("a"),
            "mine\n"
        );

        // Clean but for an untracked file: moved, the untracked file still there.
        std::fs::write(root.join("a.txt"), "a\n").expect("write");
        assert!(wt.advance(&[to, from], to).expect("advance"));
        assert_eq!(
            std::fs::read_to_string(root.join("a.txt")).expect("a"),
            "a2\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("b.txt")).expect("b"),
            "b\n"
        );
        assert!(
            root.join("c.txt").exists(),
            "an untracked file is nobody's to remove"
        );
        let staged = run_git(
            root,
            ["diff-index", "--cached", "--name-only", &to.to_string()],
        );
        assert_eq!(
            staged.expect("diff-index"),
            "",
            "the index is the new commit's"
        );
        let files = run_git(root, ["diff", "--name-only"]).expect("diff");
        assert_eq!(files, "", "and so are the files");
    }

    /// Moving by a checkout of the changed paths gives exactly the target: a file that became
    /// a folder, a folder gone with its last file, a new file deep in new folders.
    #[test]
    fn a_checkout_of_the_changed_paths_leaves_exactly_the_target() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        write(root, "x", "a file");
        write(root, "d/only", "d");
        write(root, "same/kept", "k");
        run_git(root, ["add", "-A"]).expect("add");
        run_git(root, ["commit", "-q", "-m", "from"]).expect("commit");
        let wt = Worktree::new(root.to_path_buf());
        let from = wt.head().expect("head");
        std::fs::remove_file(root.join("x")).expect("rm");
        write(root, "x/inside", "now a folder");
        std::fs::remove_dir_all(root.join("d")).expect("rm");
        write(root, "n/e/w", "new");
        run_git(root, ["add", "-A"]).expect("add");
        run_git(root, ["commit", "-q", "-m", "to"]).expect("commit");
        let to = wt.head().expect("head");
        run_git(root, ["reset", "-q", "--hard", &from.to_string()]).expect("back");
        let kept = std::fs::metadata(root.join("same/kept")).expect("kept");

        assert!(wt.advance(&[from], to).expect("advance"));
        let staged = run_git(
            root,
            ["diff-index", "--cached", "--name-only", &to.to_string()],
        );
        assert_eq!(staged.expect("diff-index"), "");
        assert_eq!(run_git(root, ["diff", "--name-only"]).expect("diff"), "");
        let others = run_git(root, ["ls-files", "-o", "--exclude-standard"]).expect("ls");
        assert_eq!(others, "", "nothing left over");
        assert!(!root.join("d").exists(), "an emptied folder goes");
        assert_eq!(
            std::fs::read_to_string(root.join("x/inside")).expect("x"),
            "now a folder"
        );
        let again = std::fs::metadata(root.join("same/kept")).expect("kept");
        assert_eq!(kept.ino(), again.ino(), "an unchanged file is not written");
    }
}
