//! What changed in a worktree, told by the kernel instead of found by reading every file.
//!
//! `git add -A` finds a step's changes by reading every folder and the status of every file:
//! ~230 ms at 100k files however little the step did, and the members of a parallel group
//! pay it all at once. From a moment the worktree is known to hold exactly one tree (just
//! taken from the pool, or just staged), a watch on each of its folders (Linux's inotify)
//! hears every name created, removed or renamed there, and every file written, closed after
//! writing or changed in mode. The next staging hands only those paths to git: `git ls-files`
//! sorts them into tracked, untracked and ignored as `git add -A` would, and
//! `git update-index` stages them — two processes that read the index but no folder.
//!
//! The watch gives up (the staging reads everything, as before) whenever it cannot be sure:
//! the kernel's queue overflowed; a `.gitignore` or `.gitmodules` changed (files never watched
//! may now count); the tree holds a submodule (its commits happen in its own git dir); a
//! nested repository appeared; too many paths changed for a pathspec to be cheaper than a
//! scan. What no watch hears is a file written through a hard link made outside the
//! worktree: that one change would be missed (docs/design.md, "Watching the worktree").

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use super::{Oid, Result, Worktree};

/// More changed paths than this and `git add -A` is cheaper: git matches every index entry
/// against every pathspec.
const MAX_PATHS: usize = 256;

/// More folders than this and the watch is not started (each costs the kernel ~1 KiB, and
/// many systems allow 8192 watches a user).
const MAX_FOLDERS: usize = 60_000;

/// The index file's identity: git replaces it (a new inode) whenever it writes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(wt: &Worktree) -> Option<Stamp> {
        let meta = std::fs::metadata(wt.admin_dir()?.join("index")).ok()?;
        Some(Stamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        })
    }
}

/// What a staging is to read.
pub(crate) enum ToStage {
    /// Only these paths (files or folders) may differ from the index.
    Paths(BTreeSet<Vec<u8>>),
    /// Too many to name: read everything, the watch stays good.
    All,
    /// The watch cannot tell: read everything and forget the watch.
    Lost,
}

/// A worktree's folders watched since it last held a known tree.
pub(crate) struct Watch {
    #[cfg(target_os = "linux")]
    inotify: inotify::Inotify,
    #[cfg(target_os = "linux")]
    folders: HashMap<inotify::WatchDescriptor, Vec<u8>>,
    /// The watched folders' paths (relative, the root empty).
    watched: HashSet<Vec<u8>>,
    /// The tree the worktree held when last known: what no event and no carried path names
    /// still holds it.
    tree: Oid,
    /// Paths the last staging left out of its tree (they are still in the worktree).
    carry: BTreeSet<Vec<u8>>,
    /// The index as the last staging left it; another one means git ran in the worktree.
    index: Option<Stamp>,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir.is_empty() {
        return name.to_vec();
    }
    [dir, b"/", name].concat()
}

/// `path` is `dir` or inside it.
fn within(path: &[u8], dir: &[u8]) -> bool {
    dir.is_empty()
        || path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/')
}

/// `paths` without those inside another one of them (a folder names all it holds).
fn outermost(paths: BTreeSet<Vec<u8>>) -> BTreeSet<Vec<u8>> {
    let mut kept: BTreeSet<Vec<u8>> = BTreeSet::new();
    for path in paths {
        let inside = (1..path.len())
            .filter(|i| path[*i] == b'/')
            .any(|i| kept.contains(&path[..i]));
        if !inside {
            kept.insert(path);
        }
    }
    kept
}

impl Watch {
    /// Watch every folder of commit `commit`'s tree in `wt`, which holds exactly that commit
    /// and nothing untracked. `None` where a watch cannot serve: not Linux, a submodule in the
    /// tree, too many folders, or the kernel refused (its limits on watches and instances).
    pub(crate) fn start(
        wt: &Worktree,
        repo: &git2::Repository,
        commit: Oid,
    ) -> Result<Option<Watch>> {
        let tree = repo.find_commit(commit.0)?.tree()?;
        let mut folders = vec![Vec::new()];
        let mut submodule = false;
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            match entry.kind() {
                Some(git2::ObjectType::Tree) => {
                    folders.push([dir.as_bytes(), entry.name_bytes()].concat())
                }
                Some(git2::ObjectType::Commit) => submodule = true,
                _ => {}
            }
            git2::TreeWalkResult::Ok
        })?;
        if submodule || folders.len() > MAX_FOLDERS {
            return Ok(None);
        }
        Ok(Watch::open(wt, Oid(tree.id()), folders))
    }

    #[cfg(not(target_os = "linux"))]
    fn open(_: &Worktree, _: Oid, _: Vec<Vec<u8>>) -> Option<Watch> {
        None
    }

    #[cfg(target_os = "linux")]
    fn open(wt: &Worktree, tree: Oid, folders: Vec<Vec<u8>>) -> Option<Watch> {
        let mut watch = Watch {
            inotify: inotify::Inotify::init().ok()?,
            folders: HashMap::new(),
            watched: HashSet::new(),
            tree,
            carry: BTreeSet::new(),
            index: Stamp::of(wt),
        };
        for folder in folders {
            watch.add(wt, folder).ok()?;
        }
        Some(watch)
    }

    /// Watch `folder` (relative); one that is gone is no error.
    #[cfg(target_os = "linux")]
    fn add(&mut self, wt: &Worktree, folder: Vec<u8>) -> std::io::Result<()> {
        use inotify::WatchMask as M;
        let mask = M::MODIFY
            | M::ATTRIB
            | M::CLOSE_WRITE
            | M::CREATE
            | M::DELETE
            | M::MOVED_FROM
            | M::MOVED_TO
            | M::DELETE_SELF
            | M::MOVE_SELF
            | M::ONLYDIR
            | M::DONT_FOLLOW
            | M::EXCL_UNLINK;
        let on_disk = wt.path.join(std::ffi::OsStr::from_bytes(&folder));
        match self.inotify.watches().add(&on_disk, mask) {
            Ok(wd) => {
                if let Some(old) = self.folders.insert(wd, folder.clone()) {
                    self.watched.remove(&old);
                }
                self.watched.insert(folder);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watch `folder`, new in the worktree, and every folder in it that git would read for
    /// untracked files (not an ignored one, not a nested repository's).
    #[cfg(target_os = "linux")]
    fn add_new(
        &mut self,
        wt: &Worktree,
        repo: &git2::Repository,
        folder: &[u8],
    ) -> std::io::Result<()> {
        let root = wt.path.join(std::ffi::OsStr::from_bytes(folder));
        let mut walk = walkdir::WalkDir::new(&root).follow_links(false).into_iter();
        while let Some(entry) = walk.next() {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_dir() {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(&wt.path) else {
                continue;
            };
            let ignored = repo.is_path_ignored(rel).unwrap_or(false);
            if ignored || entry.file_name() == ".git" {
                walk.skip_current_dir();
                continue;
            }
            self.add(wt, rel.as_os_str().as_bytes().to_vec())?;
        }
        Ok(())
    }

    /// The paths a staging at commit `base` must read: those the kernel named since the last
    /// staging, those it left out, those where `base` differs from the tree last known, and
    /// when git wrote the index meanwhile (a step's own `git add`, `git rm`, `git commit`)
    /// those where the index differs from `base`.
    pub(crate) fn what_to_stage(
        &mut self,
        wt: &Worktree,
        repo: &git2::Repository,
        base: Oid,
    ) -> Result<ToStage> {
        let Some(mut paths) = self.heard(wt, repo) else {
            return Ok(ToStage::Lost);
        };
        paths.extend(self.carry.iter().cloned());
        let base_tree = repo.find_commit(base.0)?.tree()?;
        if base_tree.id() != self.tree.0 {
            let known = repo.find_tree(self.tree.0)?;
            let Some(moved) = super::treediff::changed_paths(repo, &known, &base_tree, MAX_PATHS)?
            else {
                return Ok(ToStage::All);
            };
            paths.extend(moved);
        }
        if Stamp::of(wt) != self.index || self.index.is_none() {
            paths.extend(wt.staged_changes(repo, base)?.into_iter().map(|c| c.path));
        }
        let paths = outermost(paths);
        Ok(if paths.len() > MAX_PATHS {
            ToStage::All
        } else {
            ToStage::Paths(paths)
        })
    }

    /// The worktree was staged: it holds tree `tree` (index and files) but for `carry`, the
    /// paths left out. Folders that now hold tracked files (`added`, the paths staged new) are
    /// watched, whether git would read them for untracked files or not.
    pub(crate) fn settle(
        &mut self,
        wt: &Worktree,
        tree: Oid,
        added: &[&[u8]],
        carry: BTreeSet<Vec<u8>>,
    ) -> std::io::Result<()> {
        for path in added {
            for (i, _) in path.iter().enumerate().filter(|(_, b)| **b == b'/') {
                if !self.watched.contains(&path[..i]) {
                    self.watch_folder(wt, path[..i].to_vec())?;
                }
            }
        }
        self.tree = tree;
        self.carry = carry;
        self.index = Stamp::of(wt);
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn watch_folder(&mut self, wt: &Worktree, folder: Vec<u8>) -> std::io::Result<()> {
        self.add(wt, folder)
    }

    #[cfg(not(target_os = "linux"))]
    fn watch_folder(&mut self, _: &Worktree, _: Vec<u8>) -> std::io::Result<()> {
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn heard(&mut self, _: &Worktree, _: &git2::Repository) -> Option<BTreeSet<Vec<u8>>> {
        None
    }

    /// Every path the kernel named since the last call (new folders watched on the way);
    /// `None` when it cannot tell.
    #[cfg(target_os = "linux")]
    fn heard(&mut self, wt: &Worktree, repo: &git2::Repository) -> Option<BTreeSet<Vec<u8>>> {
        use inotify::EventMask as E;
        let mut paths = BTreeSet::new();
        // A folder renamed within the worktree: from where (by the kernel's cookie).
        let mut moved_from: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let events = match self.inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return None,
            };
            let events: Vec<_> = events.map(|e| e.to_owned()).collect();
            for event in events {
                if event.mask.contains(E::Q_OVERFLOW) {
                    return None;
                }
                let Some(dir) = self.folders.get(&event.wd).cloned() else {
                    continue;
                };
                if event.mask.contains(E::IGNORED) {
                    self.folders.remove(&event.wd);
                    self.watched.remove(&dir);
                    continue;
                }
                let Some(name) = event.name else {
                    // The worktree itself deleted or moved: nothing can be told.
                    if dir.is_empty() && event.mask.intersects(E::DELETE_SELF | E::MOVE_SELF) {
                        return None;
                    }
                    continue;
                };
                let name = name.as_bytes();
                if name == b".gitignore" || (dir.is_empty() && name == b".gitmodules") {
                    return None;
                }
                if dir.is_empty() && name == b".git" {
                    continue;
                }
                let path = join(&dir, name);
                if event.mask.contains(E::ISDIR) {
                    if event.mask.contains(E::MOVED_FROM) {
                        moved_from.insert(event.cookie, path.clone());
                    } else if event.mask.contains(E::MOVED_TO) {
                        if let Some(from) = moved_from.remove(&event.cookie) {
                            self.rename(&from, &path);
                        }
                        // Its folders may not all have been watched where they came from.
                        self.add_new(wt, repo, &path).ok()?;
                    } else if event.mask.contains(E::CREATE) {
                        self.add_new(wt, repo, &path).ok()?;
                    }
                }
                paths.insert(path);
            }
        }
        // Folders moved out of the worktree: their watches would name paths wrongly.
        for (_, from) in moved_from {
            self.forget_within(&from);
        }
        Some(paths)
    }

    /// A watched folder (and those in it) now lives at `to`.
    #[cfg(target_os = "linux")]
    fn rename(&mut self, from: &[u8], to: &[u8]) {
        for path in self.folders.values_mut() {
            if within(path, from) {
                let moved = [to, &path[from.len()..]].concat();
                self.watched.remove(path.as_slice());
                self.watched.insert(moved.clone());
                *path = moved;
            }
        }
    }

    /// Stop watching `folder` and the folders in it.
    #[cfg(target_os = "linux")]
    fn forget_within(&mut self, folder: &[u8]) {
        let gone: Vec<_> = self
            .folders
            .iter()
            .filter(|(_, path)| within(path, folder))
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in gone {
            if let Some(path) = self.folders.remove(&wd) {
                self.watched.remove(&path);
            }
            let _ = self.inotify.watches().remove(wd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(paths: &[&str]) -> BTreeSet<Vec<u8>> {
        paths.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_folder_names_what_it_holds() {
        let kept = outermost(set(&["a", "a/b", "a/b/c", "ab", "c/d", "c/e"]));
        assert_eq!(kept, set(&["a", "ab", "c/d", "c/e"]));
        assert!(within(b"a/b", b"a") && within(b"a", b"a") && within(b"x", b""));
        assert!(!within(b"ab", b"a") && !within(b"a", b"a/b"));
    }
}
