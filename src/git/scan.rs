//! Staging a small worktree inside git machine: what `git add -A` does, done through libgit2.
//!
//! In a worktree of ~1k files a step's `git add -A` took ~7 of the ~16 ms git machine spent
//! on the step, nearly all of it starting git, reading its configuration and the index, and
//! writing the index back; reading every folder is the small part. Here the index is read
//! once, compared with the files, changed where they differ, written, and handed on for the
//! step's tree, so the step starts no git process to stage.
//!
//! Where libgit2 would stage otherwise than git, git does it (the caller runs `git add -A`,
//! or for a watched worktree `git ls-files` and `git update-index` of the paths heard):
//! - a changed path whose `filter` attribute names a driver the user configured
//!   (`filter.<name>.clean` or `.process`, as Git LFS installs): libgit2 runs none of them;
//! - a changed path with a `working-tree-encoding` attribute;
//! - submodules (gitlinks) in the index, or a nested repository among the new files;
//! - entries git marks assume-unchanged, skip-worktree (sparse checkouts) or intent-to-add,
//!   and unmerged entries;
//! - an index libgit2 cannot read (split, sparse), or any path libgit2 refuses;
//! - any `git -c` setting (the caller checks: libgit2 reads none of them);
//! - in a forced folder, an ignored file under a filter driver, or a folder it cannot read;
//! - a file of [`HELD_BELOW`] bytes or more, which git streams to disk where git machine
//!   would hold it in memory until the staging's pack is written.
//!
//! Nothing is staged here before everything is staged in memory: when git is to do it after
//! all, at most the stat data of files libgit2 read was refreshed (`update_index` may write
//! the index while comparing).
//!
//! A watched worktree ([`super::watch`]) names the paths that changed: only they are compared
//! (files, or folders with all they hold), which spares reading every folder.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Result;

/// Files staged here are held in memory until the staging's pack is written
/// ([`super::packs`]); a file this big is left to git, which streams it to disk. A step's
/// whole output log (8 MiB and its last 256 KiB) stays below it.
pub(super) const HELD_BELOW: u64 = 16 << 20;

/// Stage every change of the worktree of `repo` as `git add -A` would, or only those within
/// `paths` (files or folders, from the root) when given; the index, not yet written (the
/// caller writes it once the blobs it names are on disk, see [`super::packs`]), or `None` when
/// git is to do it.
pub(super) fn stage(
    repo: &git2::Repository,
    paths: Option<&BTreeSet<Vec<u8>>>,
    force: &[&str],
) -> Result<Option<git2::Index>> {
    let Ok(mut index) = repo.index() else {
        return Ok(None);
    };
    if !plain(&index) {
        return Ok(None);
    }
    let mut opts = git2::DiffOptions::new();
    // `update_index`: a file read because its stat data could not tell (checked out in the
    // second the index was written) gets its stat data refreshed, as `git add` does, so the
    // next staging need not read it again.
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_typechange(true)
        .skip_binary_check(true)
        .update_index(true);
    if let Some(paths) = paths {
        opts.disable_pathspec_match(true);
        for path in paths {
            opts.pathspec(path.as_slice());
        }
    }
    let Ok(diff) = repo.diff_index_to_workdir(Some(&index), Some(&mut opts)) else {
        return Ok(None);
    };
    let mut gone = Vec::new();
    let mut upsert = Vec::new();
    for delta in diff.deltas() {
        let Some(path) = delta
            .new_file()
            .path_bytes()
            .or_else(|| delta.old_file().path_bytes())
        else {
            return Ok(None);
        };
        match delta.status() {
            git2::Delta::Deleted => gone.push(path),
            git2::Delta::Added
            | git2::Delta::Modified
            | git2::Delta::Typechange
            | git2::Delta::Untracked => {
                // A folder is named only when it holds a repository of its own.
                let big = delta.new_file().size() >= HELD_BELOW;
                if big || path.ends_with(b"/") || !unfiltered(repo, path)? {
                    return Ok(None);
                }
                upsert.push(path);
            }
            _ => return Ok(None),
        }
    }
    // Removals first: a file that became a folder (or the reverse) is never both at once.
    for path in gone {
        if index.remove_path(as_path(path)).is_err() {
            return Ok(None);
        }
    }
    for path in upsert {
        if index.add_path(as_path(path)).is_err() {
            return Ok(None);
        }
    }
    if !add_forced(repo, &mut index, force)? {
        return Ok(None);
    }
    Ok(Some(index))
}

/// Add the untracked files of the `force` folders that an ignore rule names, as `git add -f`
/// would: every file under a folder that is itself ignored, the files directly in the others
/// (the caller names each folder whose new files matter: a user's `*.log` must not keep git
/// machine's own `output.log` out). Tracked files are the diff's already, so the records of
/// earlier steps are not read again. `false` when git is to do it: a folder that cannot be
/// read, a filter of the user's on a file, a file libgit2 refuses.
fn add_forced(repo: &git2::Repository, index: &mut git2::Index, force: &[&str]) -> Result<bool> {
    let Some(root) = repo.workdir() else {
        return Ok(false);
    };
    for folder in force {
        let whole = repo.is_path_ignored(folder)?;
        let depth = if whole { usize::MAX } else { 1 };
        let walk = walkdir::WalkDir::new(root.join(folder)).max_depth(depth);
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                // A folder the step did not make has nothing to add.
                Err(e)
                    if e.depth() == 0
                        && e.io_error()
                            .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
                {
                    break
                }
                Err(_) => return Ok(false),
            };
            let Ok(path) = entry.path().strip_prefix(root) else {
                continue;
            };
            if entry.file_type().is_dir() || index.get_path(path, 0).is_some() {
                continue;
            }
            if !(whole || repo.is_path_ignored(path)?) {
                continue;
            }
            let big = entry.metadata().map_or(true, |m| m.len() >= HELD_BELOW);
            if big
                || !unfiltered(repo, path.as_os_str().as_bytes())?
                || index.add_path(path).is_err()
            {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn as_path(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

/// Whether every entry of `index` is one libgit2 stages as git does: a file or symlink
/// without flags git keeps for itself, and no conflict.
fn plain(index: &git2::Index) -> bool {
    const ASSUME_VALID: u16 = 0x8000;
    let extended = git2::IndexEntryExtendedFlag::INTENT_TO_ADD.bits()
        | git2::IndexEntryExtendedFlag::SKIP_WORKTREE.bits();
    !index.has_conflicts()
        && index.iter().all(|e| {
            e.mode != 0o160000 && e.flags & ASSUME_VALID == 0 && e.flags_extended & extended == 0
        })
}

/// Whether git would store the file at `path` as libgit2 does: no filter driver of the
/// user's applies to it, and no working-tree encoding.
fn unfiltered(repo: &git2::Repository, path: &[u8]) -> Result<bool> {
    let flags = git2::AttrCheckFlags::FILE_THEN_INDEX;
    let attr = |name: &str| repo.get_attr_bytes(as_path(path), name, flags);
    let named = |value: Option<&[u8]>| match git2::AttrValue::always_bytes(value) {
        git2::AttrValue::Bytes(name) => Some(name.to_vec()),
        _ => None,
    };
    if named(attr("working-tree-encoding")?).is_some() {
        return Ok(false);
    }
    let Some(name) = named(attr("filter")?) else {
        return Ok(true);
    };
    let config = repo.config()?;
    let name = String::from_utf8_lossy(&name);
    let configured = ["clean", "process"]
        .iter()
        .any(|key| config.get_entry(&format!("filter.{name}.{key}")).is_ok());
    Ok(!configured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::run_git;
    use crate::git::twins::{run_in_each, Scratch};
    use std::path::PathBuf;

    /// Two worktrees of one repository at the same commit, given the same changes: one
    /// staged here, one by `git add -A` itself. Git must find the same tree in both indexes
    /// and the same status in both worktrees.
    struct Twins {
        _scratch: Scratch,
        inside: PathBuf,
        git: PathBuf,
    }

    impl Twins {
        fn new(config: &[(&str, &str)], files: &[(&str, &str)]) -> Twins {
            let scratch = Scratch::new(config, files);
            Twins {
                inside: scratch.worktree("inside"),
                git: scratch.worktree("git"),
                _scratch: scratch,
            }
        }

        /// Run `script` (sh) in both worktrees.
        fn both(&self, script: &str) {
            run_in_each(&[&self.inside, &self.git], script);
        }

        /// Stage both and compare; whether the staging went inside git machine.
        fn stage(&self, what: &str) -> bool {
            let repo = git2::Repository::open(&self.inside).expect("open");
            let staged = stage(&repo, None, &[]).expect("stage");
            let inside = staged.is_some();
            if let Some(mut index) = staged {
                index.write().expect("write the index");
            } else {
                run_git(&self.inside, ["add", "-A"]).expect("add");
            }
            run_git(&self.git, ["add", "-A"]).expect("add");
            let read = |dir: &PathBuf, args: &[&str]| run_git(dir, args).expect("git");
            let tree = |dir| {
                let tree = read(dir, &["write-tree"]);
                read(dir, &["ls-tree", "-r", "--full-tree", tree.trim()])
            };
            assert_eq!(tree(&self.inside), tree(&self.git), "{what}: the trees");
            let status = [
                "status",
                "--porcelain",
                "--untracked-files=all",
                "--ignored",
            ];
            assert_eq!(
                read(&self.inside, &status),
                read(&self.git, &status),
                "{what}: the status"
            );
            inside
        }
    }

    #[test]
    fn what_is_staged_inside_is_what_git_add_all_stages() {
        let t = Twins::new(
            &[],
            &[
                (
                    ".gitignore",
                    "*.o\nbuild/\n/top-only\n!keep.o\nlogs/**/*.log\n",
                ),
                ("a/b/one.txt", "one\n"),
                ("a/.gitignore", "*.tmp\n!wanted.tmp\n"),
                ("a/two.txt", "two\n"),
                ("c/three.txt", "three\n"),
                ("gone/x.txt", "x\n"),
                ("top.txt", "top\n"),
                ("tracked.o", "tracked though ignored\n"),
            ],
        );
        for (what, script) in [
            ("edit, delete, create", "echo more >> a/b/one.txt && rm a/two.txt && echo n > new.txt"),
            ("new folders and ignored files", "mkdir -p d/e/f && echo f > d/e/f/f.txt && echo o > d/x.o && echo k > d/keep.o && mkdir -p build/x && echo b > build/x/b.txt"),
            ("nested and negated rules", "echo t > a/x.tmp && echo w > a/wanted.tmp && echo t > top-only && mkdir -p sub && echo t > sub/top-only && mkdir -p logs/1/2 && echo l > logs/1/2/x.log && echo k > logs/1/keep.txt"),
            ("a tracked file an ignore rule names", "echo changed >> tracked.o"),
            ("a folder deleted, modes, symlinks", "rm -r gone && chmod +x top.txt && ln -s top.txt link && ln -s a dirlink && ln -s nowhere dangling"),
            ("a mode taken back", "chmod -x top.txt"),
            ("a folder renamed", "mv a moved"),
            ("a file replaced by a folder", "rm top.txt && mkdir top.txt && echo t > top.txt/inner.txt"),
            ("a folder replaced by a file", "rm -r c && echo c > c"),
            ("a symlink replaced by a file", "rm link && echo now a file > link"),
            ("names that need care", "echo s > 'with space.txt' && echo u > 'ünï.txt' && echo d > ./-dash.txt && echo h > '#hash' && echo q > 'q?*.txt'"),
            ("an empty folder", "mkdir -p empty/deeper"),
            ("the step's own git commands", "git rm -q --cached new.txt && echo g > g.txt && git add g.txt && git rm -qf moved/b/one.txt"),
            ("nothing", "true"),
        ] {
            t.both(script);
            assert!(t.stage(what), "{what}: staged inside");
        }
    }

    #[test]
    fn line_endings_and_attributes_are_stored_as_git_stores_them() {
        let t = Twins::new(
            &[("core.autocrlf", "input")],
            &[
                (
                    ".gitattributes",
                    "*.crlf text eol=crlf\n*.bin binary\n*.id ident\n*.raw filter=unconfigured\n",
                ),
                ("a.txt", "a\n"),
            ],
        );
        t.both("printf 'one\\r\\ntwo\\r\\n' > dos.txt && printf 'x\\r\\n' > x.crlf && printf '\\r\\n\\0' > b.bin && printf '$Id$\\n' > f.id && echo r > f.raw");
        assert!(t.stage("line endings, ident, an unconfigured filter"));
    }

    /// What libgit2 would store otherwise than git goes to git, and git's result stands.
    #[test]
    fn what_libgit2_cannot_stage_as_git_does_is_left_to_git() {
        let t = Twins::new(
            &[
                ("filter.upper.clean", "tr a-z A-Z"),
                ("filter.upper.smudge", "cat"),
            ],
            &[
                (
                    ".gitattributes",
                    "*.up filter=upper\n*.utf16 working-tree-encoding=UTF-16\n",
                ),
                ("a.txt", "a\n"),
            ],
        );
        t.both("echo lower > x.up");
        assert!(!t.stage("a configured filter driver"), "git stages it");
        t.both("echo plain > plain.txt");
        assert!(t.stage("a plain file next to it"));
        t.both("printf '\\377\\376a\\000\\n\\000' > x.utf16");
        assert!(!t.stage("a working-tree encoding"), "git stages it");
        t.both("mkdir inner && cd inner && git init -q && echo x > x.txt && git add x.txt && git -c user.name=A -c user.email=a@x commit -qm x");
        assert!(
            !t.stage("a nested repository"),
            "git stages it as a gitlink"
        );
        t.both("echo n > later.txt");
        assert!(!t.stage("a gitlink in the index"), "git stages it");

        let t = Twins::new(&[], &[("a.txt", "a\n"), ("b.txt", "b\n")]);
        t.both("echo i > i.txt && git add -N i.txt");
        assert!(!t.stage("an intent to add"), "git stages it");
        t.both("git update-index --assume-unchanged a.txt && echo changed > a.txt");
        assert!(!t.stage("an entry assumed unchanged"), "git stages it");

        let t = Twins::new(&[], &[("a.txt", "a\n")]);
        t.both(&format!("head -c {HELD_BELOW} /dev/zero > big.bin"));
        assert!(!t.stage("a file too big to hold"), "git streams it");
        t.both(&format!("head -c {} /dev/zero > big.bin", HELD_BELOW - 1));
        assert!(t.stage("a file just small enough"));
    }

    /// A forced folder's ignored files are added here only as git would store them; a folder
    /// the step did not make adds nothing.
    #[test]
    fn forced_files_under_a_filter_go_to_git() {
        let scratch = Scratch::new(
            &[
                ("filter.upper.clean", "tr a-z A-Z"),
                ("filter.upper.smudge", "cat"),
            ],
            &[
                (".gitignore", "rec/\n"),
                (".gitattributes", "*.up filter=upper\n"),
            ],
        );
        let wt = scratch.worktree("wt");
        let repo = git2::Repository::open(&wt).expect("open");
        std::fs::create_dir_all(wt.join("rec/deep")).expect("mkdir");
        std::fs::write(wt.join("rec/deep/plain.txt"), "p\n").expect("write");
        let index = stage(&repo, None, &["rec", "absent"]).expect("stage");
        let index = index.expect("an ignored forced folder is added inside");
        assert!(index.get_path(Path::new("rec/deep/plain.txt"), 0).is_some());
        std::fs::write(wt.join("rec/x.up"), "lower\n").expect("write");
        assert!(
            stage(&repo, None, &["rec"]).expect("stage").is_none(),
            "a filtered forced file is git's"
        );
    }

    #[test]
    fn an_unmerged_index_is_resolved_by_git() {
        let t = Twins::new(&[], &[("a.txt", "a\n")]);
        t.both("b=$(echo base | git hash-object -w --stdin) && o=$(echo ours | git hash-object -w --stdin) && th=$(echo theirs | git hash-object -w --stdin) && printf '100644 %s 1\\tc.txt\\n100644 %s 2\\tc.txt\\n100644 %s 3\\tc.txt\\n' $b $o $th | git update-index --index-info && echo resolved > c.txt");
        assert!(!t.stage("an unmerged path"), "git stages it");
    }
}
