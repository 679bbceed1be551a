//! Whether a finished worktree holds anything git does not track, told without reading every
//! folder: `git clean -ffdx` reads all of them (~150 ms at 100k files, for each worktree
//! parked), while a step usually creates files in a few.
//!
//! Parking records the change time (ctime) of every folder of the commit it parks at, in the
//! worktree's git dir. A name is added to or removed from a folder only by changing that
//! folder's ctime, and no program can set a ctime back. So at the next parking a folder whose
//! ctime is the recorded one holds the names it held then: those of the recorded commit's
//! folder, all tracked. Only the folders whose ctime changed, the ones where the tree lost a
//! file since (which may still be on disk), and new folders are read. A folder whose recorded
//! ctime was too close to the recording to be told apart from a later change (coarse file
//! system clocks) is read every time.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::treediff::{self, Change};
use super::{Oid, Result, Worktree};

/// The record, in the worktree's git dir: `v1 <commit> <when>` then `<ctime> <path>` per
/// folder, NUL-separated (paths are bytes).
const FOLDERS: &str = "machine-folders";

/// How close to the recording a folder's ctime may be and still be trusted, in nanoseconds:
/// the coarsest file-system clock git machine expects (2 s, as FAT keeps times).
const RACY_NS: i128 = 2_000_000_000;

/// The recorded folders: the commit they were of, when, and each folder's ctime.
pub(crate) struct Recorded {
    commit: Oid,
    when: i128,
    ctimes: BTreeMap<Vec<u8>, i128>,
}

fn now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

fn ctime(meta: &std::fs::Metadata) -> i128 {
    i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
}

pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    [dir, b"/", name].concat()
}

fn parent(path: &[u8]) -> &[u8] {
    path.iter()
        .rposition(|b| *b == b'/')
        .map_or(&[][..], |i| &path[..i])
}

impl Worktree {
    fn on_disk(&self, path: &[u8]) -> std::path::PathBuf {
        self.path.join(std::ffi::OsStr::from_bytes(path))
    }

    /// Record the ctime of every folder of commit `head`'s tree (the root included), for
    /// [`Worktree::holds_only_tracked`]. The worktree holds exactly `head`'s files.
    pub(crate) fn record_folders(&self, repo: &git2::Repository, head: Oid) -> Result<()> {
        let mut folders = vec![Vec::new()];
        repo.find_commit(head.0)?
            .tree()?
            .walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                if entry.kind() == Some(git2::ObjectType::Tree) {
                    folders.push([dir.as_bytes(), entry.name_bytes()].concat());
                }
                git2::TreeWalkResult::Ok
            })?;
        let when = now();
        let mut ctimes = BTreeMap::new();
        for folder in folders {
            let Ok(meta) = std::fs::symlink_metadata(self.on_disk(&folder)) else {
                continue;
            };
            if meta.is_dir() {
                ctimes.insert(folder, ctime(&meta));
            }
        }
        self.write_record(&Recorded {
            commit: head,
            when,
            ctimes,
        })
    }

    /// Write `rec` as the worktree's record.
    pub(crate) fn write_record(&self, rec: &Recorded) -> Result<()> {
        let Some(admin) = self.admin_dir() else {
            return Ok(());
        };
        let mut out = format!("v1 {} {}\0", rec.commit, rec.when).into_bytes();
        for (folder, time) in &rec.ctimes {
            out.extend_from_slice(format!("{time}\0").as_bytes());
            out.extend_from_slice(folder);
            out.push(0);
        }
        let file = admin.join(FOLDERS);
        let tmp = admin.join(format!("{FOLDERS}.tmp"));
        std::fs::write(&tmp, out)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(|e| super::GitError::Io(format!("{}: {e}", file.display())))
    }

    /// Forget the recorded folders (the worktree is about to change in ways they cannot tell).
    pub(crate) fn forget_folders(&self) {
        if let Some(admin) = self.admin_dir() {
            let _ = std::fs::remove_file(admin.join(FOLDERS));
        }
    }

    fn recorded_folders(&self) -> Option<Recorded> {
        let bytes = std::fs::read(self.admin_dir()?.join(FOLDERS)).ok()?;
        let mut fields = bytes.split(|b| *b == 0);
        let head = std::str::from_utf8(fields.next()?).ok()?;
        let mut head = head.split(' ');
        if head.next()? != "v1" {
            return None;
        }
        let commit = Oid::parse(head.next()?)?;
        let when = head.next()?.parse().ok()?;
        let mut ctimes = BTreeMap::new();
        while let Some(time) = fields.next().filter(|f| !f.is_empty()) {
            let time = std::str::from_utf8(time).ok()?.parse().ok()?;
            ctimes.insert(fields.next()?.to_vec(), time);
        }
        Some(Recorded {
            commit,
            when,
            ctimes,
        })
    }

    /// Whether every file and folder in the worktree is one commit `head` tracks (or the
    /// root's `.git`), told from the folders the last parking recorded
    /// ([`Worktree::record_folders`]) by reading only those that may have changed. `false`
    /// when there is no usable record, or something untracked or ignored is there: then the
    /// caller cleans.
    pub(crate) fn holds_only_tracked(&self, repo: &git2::Repository, head: Oid) -> Result<bool> {
        Ok(self.tracked_folders(repo, head)?.is_some())
    }

    /// [`Worktree::holds_only_tracked`], and when it does, the record brought up to date for
    /// `head` from the folders it read (no walk of the whole tree).
    pub(crate) fn tracked_folders(
        &self,
        repo: &git2::Repository,
        head: Oid,
    ) -> Result<Option<Recorded>> {
        self.tracked_folders_within(repo, head, RACY_NS)
    }

    /// [`Worktree::tracked_folders`], trusting a folder whose ctime is more than `racy`
    /// nanoseconds older than the recording.
    fn tracked_folders_within(
        &self,
        repo: &git2::Repository,
        head: Oid,
        racy: i128,
    ) -> Result<Option<Recorded>> {
        let Some(rec) = self.recorded_folders() else {
            return Ok(None);
        };
        let Ok(then) = repo.find_commit(rec.commit.0) else {
            return Ok(None);
        };
        let now_tree = repo.find_commit(head.0)?.tree()?;
        let when = now();
        let mut ctimes = rec.ctimes.clone();
        let mut to_read = BTreeSet::new();
        for (folder, time) in &rec.ctimes {
            match std::fs::symlink_metadata(self.on_disk(folder)) {
                Ok(meta) if ctime(&meta) == *time && *time < rec.when - racy => {}
                // Its ctime is taken before it is read: a change after that shows next time.
                Ok(meta) => {
                    to_read.insert(folder.clone());
                    ctimes.insert(folder.clone(), ctime(&meta));
                }
                // Gone: its parent's ctime changed, the parent is read.
                Err(_) => {
                    ctimes.remove(folder);
                }
            }
        }
        for c in treediff::changes(repo, &then.tree()?, &now_tree)? {
            if c.change == Change::Deleted {
                to_read.insert(parent(&c.path).to_vec());
            }
        }
        let mut queue: Vec<Vec<u8>> = to_read.into_iter().collect();
        while let Some(folder) = queue.pop() {
            match self.foreign_or_new(repo, &now_tree, &folder, &rec.ctimes)? {
                None => return Ok(None),
                Some(new) => {
                    for folder in new {
                        if let Ok(meta) = std::fs::symlink_metadata(self.on_disk(&folder)) {
                            ctimes.insert(folder.clone(), ctime(&meta));
                        }
                        queue.push(folder);
                    }
                }
            }
        }
        Ok(Some(Recorded {
            commit: head,
            when,
            ctimes,
        }))
    }

    /// Whether the worktree is known to hold exactly HEAD's commit without `git status`
    /// reading every folder: its folders hold only what HEAD tracks
    /// ([`Worktree::holds_only_tracked`]), and neither the index nor a tracked file differs
    /// from HEAD. `false` means "not known": the caller asks `git status`.
    pub(crate) fn clean_by_record(&self) -> Result<bool> {
        if self.admin_dir().is_none() {
            return Ok(false);
        }
        super::configure_libgit2();
        let repo = git2::Repository::open(&self.path)?;
        let Ok(head) = repo.head().and_then(|h| h.peel_to_commit()) else {
            return Ok(false);
        };
        if !self.holds_only_tracked(&repo, Oid(head.id()))? {
            return Ok(false);
        }
        let none = |args: &[&str]| self.git_bytes(args).is_ok_and(|out| out.is_empty());
        Ok(
            none(&["diff-index", "--cached", "--name-only", "HEAD", "--"])
                && none(&["diff-files", "--name-only", "--"]),
        )
    }

    /// Read `folder` of the worktree against the same folder of `tree`: `None` when it holds
    /// a name the tree does not (or the tree has no such folder); else the subfolders that
    /// were not recorded, to be read in turn.
    fn foreign_or_new(
        &self,
        repo: &git2::Repository,
        tree: &git2::Tree<'_>,
        folder: &[u8],
        recorded: &BTreeMap<Vec<u8>, i128>,
    ) -> Result<Option<Vec<Vec<u8>>>> {
        let entries = match std::fs::read_dir(self.on_disk(folder)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
            Err(e) => return Err(super::GitError::Io(e.to_string())),
        };
        let tracked = if folder.is_empty() {
            tree.clone()
        } else {
            match tree.get_path(Path::new(std::ffi::OsStr::from_bytes(folder))) {
                Ok(e) if e.kind() == Some(git2::ObjectType::Tree) => repo.find_tree(e.id())?,
                _ => return Ok(None),
            }
        };
        let kinds: BTreeMap<Vec<u8>, Option<git2::ObjectType>> = tracked
            .iter()
            .map(|e| (e.name_bytes().to_vec(), e.kind()))
            .collect();
        let mut new = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| super::GitError::Io(e.to_string()))?;
            let name = entry.file_name();
            let name = name.as_bytes();
            if folder.is_empty() && name == b".git" {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            match kinds.get(name) {
                None => return Ok(None),
                Some(Some(git2::ObjectType::Tree)) if is_dir => {
                    let path = join(folder, name);
                    if !recorded.contains_key(&path) {
                        new.push(path);
                    }
                }
                Some(Some(git2::ObjectType::Tree)) => return Ok(None),
                // A submodule's folder: its contents are the submodule's business.
                Some(Some(git2::ObjectType::Commit)) => {}
                Some(_) if is_dir => return Ok(None),
                Some(_) => {}
            }
        }
        Ok(Some(new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{init_scratch_repo, run_git};

    /// A linked worktree at a commit with folders `a/b` and `c`, its folders recorded.
    fn recorded() -> (tempfile::TempDir, Worktree, git2::Repository) {
        let tmp = tempfile::tempdir().expect("tmp");
        let main = tmp.path().join("main");
        std::fs::create_dir(&main).expect("mkdir");
        init_scratch_repo(&main).expect("repo");
        for p in ["a/b/one.txt", "a/two.txt", "c/three.txt", "top.txt"] {
            let path = main.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, p).expect("write");
        }
        run_git(&main, ["add", "-A"]).expect("add");
        run_git(&main, ["commit", "-q", "-m", "folders"]).expect("commit");
        let path = tmp.path().join("wt");
        let owner = crate::git::Repo::open(&main, &crate::git::GitEnv::default()).expect("open");
        owner
            .worktree_add_detached(&path, owner.head_commit().expect("head"))
            .expect("worktree add");
        let wt = Worktree::new(path.clone());
        let repo = git2::Repository::open(&path).expect("open");
        wt.record_folders(&repo, head(&repo)).expect("record");
        (tmp, wt, repo)
    }

    fn head(repo: &git2::Repository) -> Oid {
        Oid(repo
            .head()
            .expect("head")
            .peel_to_commit()
            .expect("commit")
            .id())
    }

    /// What the record says, trusting every folder whose ctime did not change.
    fn only_tracked(wt: &Worktree, repo: &git2::Repository) -> bool {
        wt.tracked_folders_within(repo, head(repo), 0)
            .expect("check")
            .is_some()
    }

    #[test]
    fn a_worktree_as_recorded_holds_only_tracked_files() {
        let (_tmp, wt, repo) = recorded();
        assert!(only_tracked(&wt, &repo));
        // Changing a tracked file's contents adds no name.
        std::fs::write(wt.path.join("a/b/one.txt"), "changed").expect("write");
        assert!(only_tracked(&wt, &repo));
        assert!(wt.holds_only_tracked(&repo, head(&repo)).expect("check"));
    }

    #[test]
    fn a_new_file_or_folder_anywhere_is_seen() {
        for (what, path, dir) in [
            ("a file deep in", "a/b/new.o", false),
            ("a file at the root", "build.log", false),
            ("an empty folder", "c/empty", true),
            ("a folder with a file", "a/out/x.o", false),
        ] {
            let (_tmp, wt, repo) = recorded();
            let full = wt.path.join(path);
            if dir {
                std::fs::create_dir_all(&full).expect("mkdir");
            } else {
                std::fs::create_dir_all(full.parent().expect("parent")).expect("dirs");
                std::fs::write(&full, "x").expect("write");
            }
            assert!(!only_tracked(&wt, &repo), "{what}: {path}");
        }
    }

    /// A file the new commit no longer tracks may still be on disk, in a folder whose ctime
    /// did not change: the folders where files left the tree are read.
    #[test]
    fn a_file_left_on_disk_when_the_tree_dropped_it_is_seen() {
        let (_tmp, wt, repo) = recorded();
        run_git(&wt.path, ["rm", "-q", "--cached", "a/two.txt"]).expect("rm");
        run_git(&wt.path, ["commit", "-q", "-m", "untrack"]).expect("commit");
        assert!(!only_tracked(&wt, &repo));
        std::fs::remove_file(wt.path.join("a/two.txt")).expect("rm");
        assert!(only_tracked(&wt, &repo), "gone from the disk too");
    }

    /// A folder the new commit tracks is read whole: its tracked files are fine, anything
    /// else in it is not.
    #[test]
    fn a_new_tracked_folder_is_read_whole() {
        let (_tmp, wt, repo) = recorded();
        std::fs::create_dir_all(wt.path.join("d/e")).expect("mkdir");
        std::fs::write(wt.path.join("d/e/f.txt"), "f").expect("write");
        run_git(&wt.path, ["add", "d"]).expect("add");
        run_git(&wt.path, ["commit", "-q", "-m", "d"]).expect("commit");
        assert!(only_tracked(&wt, &repo));
        std::fs::write(wt.path.join("d/e/extra"), "x").expect("write");
        assert!(!only_tracked(&wt, &repo));
    }

    #[test]
    fn without_a_usable_record_nothing_is_known() {
        let (_tmp, wt, repo) = recorded();
        wt.forget_folders();
        assert!(!only_tracked(&wt, &repo), "no record");
        wt.record_folders(&repo, head(&repo)).expect("record");
        let file = wt.admin_dir().expect("admin").join(FOLDERS);
        std::fs::write(&file, "v9 nonsense").expect("write");
        assert!(!only_tracked(&wt, &repo), "an unreadable record");
    }

    /// Right after recording, folders are too recent to be trusted: they are read, and what
    /// was made in them is seen even if the clock could not tell the two times apart.
    #[test]
    fn folders_changed_around_the_recording_are_read() {
        let (_tmp, wt, repo) = recorded();
        assert!(wt.holds_only_tracked(&repo, head(&repo)).expect("check"));
        let rec = wt.recorded_folders().expect("record");
        // As a coarse clock would show it: the change has the recorded ctime.
        let mut forged = format!("v1 {} {}\0", rec.commit, rec.when).into_bytes();
        std::fs::write(wt.path.join("c/late.o"), "x").expect("write");
        for folder in rec.ctimes.keys() {
            let meta = std::fs::symlink_metadata(wt.on_disk(folder)).expect("stat");
            forged.extend_from_slice(format!("{}\0", ctime(&meta)).as_bytes());
            forged.extend_from_slice(folder);
            forged.push(0);
        }
        std::fs::write(wt.admin_dir().expect("admin").join(FOLDERS), forged).expect("forge");
        assert!(!wt.holds_only_tracked(&repo, head(&repo)).expect("check"));
    }

    /// A clean linked worktree is known clean without `git status`; one with a change or an
    /// untracked file is not known clean.
    #[test]
    fn clean_by_record_needs_no_change_anywhere() {
        let (_tmp, wt, _repo) = recorded();
        assert!(wt.clean_by_record().expect("check"));
        assert!(!wt.is_dirty().expect("dirty"));
        std::fs::write(wt.path.join("top.txt"), "changed").expect("write");
        assert!(!wt.clean_by_record().expect("check"), "a changed file");
        assert!(wt.is_dirty().expect("dirty"));
        run_git(&wt.path, ["checkout", "--", "top.txt"]).expect("checkout");
        std::fs::write(wt.path.join("a/new.txt"), "x").expect("write");
        assert!(!wt.clean_by_record().expect("check"), "an untracked file");
        assert!(wt.is_dirty().expect("dirty"));
    }
}
