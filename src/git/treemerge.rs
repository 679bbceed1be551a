//! Three-way merge of trees, folder by folder, opening only the folders that both sides
//! changed.
//!
//! libgit2's `merge_trees` reads all three trees into indexes, so merging a parallel group's
//! members cost a walk of every file of the repository per member. Without rename detection
//! (git machine merges without it, see [`Repo::merge_trees`]) a merge is decided path by path,
//! so a folder only one side changed is taken whole by its id, and a folder both sides changed
//! is merged from its entries. Where a file (or a file and a folder) differs on both sides,
//! that one folder is handed to libgit2, which merges file contents as git does.

use git2::{ObjectType, Tree};

use super::{Oid, Result};

/// The outcome: the merged tree, or the paths that conflict.
pub type Merged = std::result::Result<Oid, Vec<String>>;

/// Merge `ours` and `theirs`, both descended from `base`.
pub fn merge(
    repo: &git2::Repository,
    base: &Tree<'_>,
    ours: &Tree<'_>,
    theirs: &Tree<'_>,
    opts: &git2::MergeOptions,
) -> Result<Merged> {
    Folders { repo, opts }.merge(Some(base), ours, theirs, "")
}

struct Folders<'r> {
    repo: &'r git2::Repository,
    opts: &'r git2::MergeOptions,
}

/// One side's entry for a name: its id and mode, or absent.
type Side = Option<(git2::Oid, i32)>;

fn side(tree: Option<&Tree<'_>>, name: &[u8]) -> Side {
    tree.and_then(|t| t.get_name_bytes(name))
        .map(|e| (e.id(), e.filemode()))
}

/// The id of the tree with nothing in it.
fn empty_tree() -> Result<git2::Oid> {
    Ok(git2::Oid::hash_object(ObjectType::Tree, b"")?)
}

fn is_folder(s: Side) -> bool {
    s.is_some_and(|(_, mode)| mode == 0o040000)
}

impl Folders<'_> {
    fn merge(
        &self,
        base: Option<&Tree<'_>>,
        ours: &Tree<'_>,
        theirs: &Tree<'_>,
        at: &str,
    ) -> Result<Merged> {
        if ours.id() == theirs.id() {
            return Ok(Ok(Oid(ours.id())));
        }
        if let Some(b) = base {
            if b.id() == ours.id() {
                return Ok(Ok(Oid(theirs.id())));
            }
            if b.id() == theirs.id() {
                return Ok(Ok(Oid(ours.id())));
            }
        }
        let names = super::treediff::names(base.into_iter().chain([ours, theirs]));
        let mut out = self.repo.treebuilder(None)?;
        let mut conflicts = Vec::new();
        for name in &names {
            let (b, o, t) = (
                side(base, name),
                side(Some(ours), name),
                side(Some(theirs), name),
            );
            let taken = if o == t || b == t {
                o
            } else if b == o {
                t
            } else if is_folder(o) && is_folder(t) {
                let shown = format!("{at}{}", String::from_utf8_lossy(name));
                let sub = |s: Side| -> Result<Option<Tree<'_>>> {
                    Ok(match s.filter(|_| is_folder(s)) {
                        Some((id, _)) => Some(self.repo.find_tree(id)?),
                        None => None,
                    })
                };
                let (bt, ot, tt) = (sub(b)?, sub(o)?, sub(t)?);
                let (Some(ot), Some(tt)) = (ot, tt) else {
                    unreachable!("both sides are folders")
                };
                match self.merge(bt.as_ref(), &ot, &tt, &format!("{shown}/"))? {
                    // A folder both sides emptied is no entry at all.
                    Ok(id) if id.0 == empty_tree()? => None,
                    Ok(id) => Some((id.0, 0o040000)),
                    Err(paths) => {
                        conflicts.extend(paths);
                        continue;
                    }
                }
            } else {
                // Both sides changed this name differently: git's own rules decide, on this
                // folder alone.
                return self.by_libgit2(base, ours, theirs, at);
            };
            if let Some((id, mode)) = taken {
                out.insert(name, id, mode)?;
            }
        }
        if !conflicts.is_empty() {
            return Ok(Err(conflicts));
        }
        Ok(Ok(Oid(out.write()?)))
    }

    /// Merge one folder with libgit2 (file contents merged as git does); conflicting paths
    /// are named from the repository's root.
    fn by_libgit2(
        &self,
        base: Option<&Tree<'_>>,
        ours: &Tree<'_>,
        theirs: &Tree<'_>,
        at: &str,
    ) -> Result<Merged> {
        let empty;
        let base = match base {
            Some(b) => b,
            None => {
                empty = self.repo.find_tree(self.repo.treebuilder(None)?.write()?)?;
                &empty
            }
        };
        let mut index = self.repo.merge_trees(base, ours, theirs, Some(self.opts))?;
        if index.has_conflicts() {
            let mut paths = Vec::new();
            for c in index.conflicts()? {
                let c = c?;
                if let Some(e) = c.our.or(c.their).or(c.ancestor) {
                    paths.push(format!("{at}{}", String::from_utf8_lossy(&e.path)));
                }
            }
            return Ok(Err(paths));
        }
        Ok(Ok(Oid(index.write_tree_to(self.repo)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{init_scratch_repo, run_git};
    use std::path::Path;

    /// The tree of `files` ((path, text); text `None` leaves the file out) over `start`.
    fn tree_of(root: &Path, start: &str, files: &[(&str, Option<&str>)]) -> String {
        run_git(root, ["read-tree", start]).expect("read-tree");
        for (path, text) in files {
            match text {
                Some(text) => {
                    let id = git_hash(root, text);
                    let info = format!("100644,{id},{path}");
                    run_git(root, ["update-index", "--add", "--cacheinfo", &info]).expect("add");
                }
                None => {
                    run_git(root, ["update-index", "--force-remove", path]).expect("rm");
                }
            }
        }
        run_git(root, ["write-tree"])
            .expect("write-tree")
            .trim()
            .to_string()
    }

    fn git_hash(root: &Path, text: &str) -> String {
        let file = root.join(".blob");
        std::fs::write(&file, text).expect("write");
        run_git(root, ["hash-object", "-w", ".blob"])
            .expect("hash")
            .trim()
            .to_string()
    }

    /// Folder by folder, the merge gives what libgit2's merge of the whole trees gives: the
    /// same tree, or the same conflicting paths.
    #[test]
    fn merging_folder_by_folder_gives_what_a_whole_merge_gives() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        init_scratch_repo(root).expect("repo");
        let lines = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let base = [
            ("a/x", Some("x")),
            ("a/w", Some("w")),
            ("b/deep/f", Some(lines)),
            ("c", Some("c")),
            ("d/only", Some("d")),
        ];
        let empty = run_git(root, ["hash-object", "-t", "tree", "/dev/null"]).expect("empty");
        let base = tree_of(root, empty.trim(), &base);
        type Files<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: &[(&str, Files<'_>, Files<'_>)] = &[
            (
                "disjoint folders",
                &[("a/x", Some("x1"))],
                &[("e/new", Some("n"))],
            ),
            (
                "same folder, other files",
                &[("a/x", Some("x1"))],
                &[("a/w", Some("w1"))],
            ),
            (
                "one file, edits apart",
                &[("b/deep/f", Some("one\n2\n3\n4\n5\n6\n7\n8\n9\n"))],
                &[("b/deep/f", Some("1\n2\n3\n4\n5\n6\n7\n8\nnine\n"))],
            ),
            (
                "one file, same line",
                &[("c", Some("ours"))],
                &[("c", Some("theirs"))],
            ),
            ("both empty a folder", &[("a/x", None)], &[("a/w", None)]),
            (
                "the same file added",
                &[("n/f", Some("same"))],
                &[("n/f", Some("same"))],
            ),
            (
                "added differently",
                &[("n/f", Some("ours"))],
                &[("n/f", Some("theirs"))],
            ),
            (
                "deleted and changed",
                &[("d/only", None)],
                &[("d/only", Some("d2"))],
            ),
            (
                "file and folder",
                &[("c", None), ("c/in", Some("i"))],
                &[("c", Some("c2"))],
            ),
            (
                "both change the same way",
                &[("a/x", Some("z"))],
                &[("a/x", Some("z"))],
            ),
        ];
        let repo = git2::Repository::open(root).expect("open");
        let mut opts = git2::MergeOptions::new();
        opts.find_renames(false);
        for (what, ours, theirs) in cases {
            let o = tree_of(root, &base, ours);
            let t = tree_of(root, &base, theirs);
            let find = |id: &str| {
                repo.find_tree(git2::Oid::from_str(id).expect("oid"))
                    .expect("tree")
            };
            let (bt, ot, tt) = (find(&base), find(&o), find(&t));
            let got = merge(&repo, &bt, &ot, &tt, &opts).expect("merge");
            let mut whole = repo.merge_trees(&bt, &ot, &tt, Some(&opts)).expect("whole");
            let want: Merged = if whole.has_conflicts() {
                let mut paths: Vec<String> = whole
                    .conflicts()
                    .expect("conflicts")
                    .map(|c| {
                        let c = c.expect("conflict");
                        let e = c.our.or(c.their).or(c.ancestor).expect("an entry");
                        String::from_utf8_lossy(&e.path).into_owned()
                    })
                    .collect();
                paths.sort();
                Err(paths)
            } else {
                Ok(Oid(whole.write_tree_to(&repo).expect("tree")))
            };
            let got = got.map_err(|mut p| {
                p.sort();
                p
            });
            assert_eq!(got, want, "{what}");
        }
    }
}
