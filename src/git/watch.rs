//! What changed in a worktree, told by the kernel instead of found by reading every file.
//!
//! `git add -A` finds a step's changes by reading every folder and the status of every file:
//! ~230 ms at 100k files however little the step did, and the members of a parallel group
//! pay it all at once. From a moment the worktree is known to hold exactly one tree (just
//! taken from the pool, or just staged), a watch on each of its folders (Linux's inotify)
//! hears every name created, removed or renamed there, and every file written, closed after
//! writing or changed in mode. The next staging compares only those paths: inside git machine
//! for a small index ([`super::scan`]), else `git ls-files` sorts them into tracked,
//! untracked and ignored as `git add -A` would, and `git update-index` stages them — two
//! processes that read the index but no folder.
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

use super::folders::join;
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
    /// Only these paths (files or folders) may differ from the index; `index`: the tree the
    /// index holds exactly, when the watch knows it (git did not write the index since).
    Paths {
        paths: BTreeSet<Vec<u8>>,
        index: Option<Oid>,
    },
    /// Too many to name: read everything, the watch stays good.
    All,
    /// The watch cannot tell: read everything and forget the watch.
    Lost,
}

/// The folders of a tree, to watch.
pub(crate) struct Folders {
    tree: Oid,
    folders: Vec<Vec<u8>>,
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
    /// Paths to read at the next staging whatever is heard: those the last staging left out
    /// of its tree (still in the worktree), and those heard since but not staged yet.
    carry: BTreeSet<Vec<u8>>,
    /// The index as the last staging left it; another one means git ran in the worktree.
    index: Option<Stamp>,
}

/// `path` is `dir` or inside it.
pub(super) fn within(path: &[u8], dir: &[u8]) -> bool {
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
    /// The folders of commit `commit`'s tree (the root first), to watch in worktrees holding
    /// it: `None` when a watch cannot serve there (a submodule, too many folders).
    pub(crate) fn folders_of(repo: &git2::Repository, commit: Oid) -> Result<Option<Folders>> {
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
        Ok(
            (!submodule && folders.len() <= MAX_FOLDERS).then(|| Folders {
                tree: Oid(tree.id()),
                folders,
            }),
        )
    }

    /// Watch `folders` in `wt`, which holds exactly their tree and nothing untracked. `None`
    /// where the kernel refuses (its limits on watches and instances) or there is no inotify.
    #[cfg(not(target_os = "linux"))]
    pub(crate) fn start(_: &Worktree, _: &Folders) -> Option<Watch> {
        None
    }

    #[cfg(target_os = "linux")]
    pub(crate) fn start(wt: &Worktree, folders: &Folders) -> Option<Watch> {
        let mut watch = Watch {
            inotify: inotify::Inotify::init().ok()?,
            folders: HashMap::new(),
            watched: HashSet::new(),
            tree: folders.tree,
            carry: BTreeSet::new(),
            index: Stamp::of(wt),
        };
        for folder in &folders.folders {
            watch.add(wt, folder.clone()).ok()?;
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
        let same_index = self.index.is_some() && Stamp::of(wt) == self.index;
        if !same_index {
            paths.extend(wt.staged_changes(repo, base)?.into_iter().map(|c| c.path));
        }
        let paths = outermost(paths);
        Ok(if paths.len() > MAX_PATHS {
            ToStage::All
        } else {
            ToStage::Paths {
                paths,
                index: same_index.then_some(self.tree),
            }
        })
    }

    /// The tree the worktree holds exactly when nothing happened since it was last known
    /// (no event, no path left out, the same index), else `Some(None)`; `None` when the watch
    /// cannot tell. What was heard is kept for the next staging.
    pub(crate) fn untouched(
        &mut self,
        wt: &Worktree,
        repo: &git2::Repository,
    ) -> Option<Option<Oid>> {
        let heard = self.heard(wt, repo)?;
        self.carry.extend(heard);
        let same = self.carry.is_empty() && self.index.is_some() && Stamp::of(wt) == self.index;
        Some(Some(self.tree).filter(|_| same))
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
                        // Its watches would name paths where it no longer is.
                        self.forget_within(&path);
                    } else if event.mask.intersects(E::MOVED_TO | E::CREATE) {
                        self.add_new(wt, repo, &path).ok()?;
                    }
                }
                paths.insert(path);
            }
        }
        Some(paths)
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
    use crate::git::twins::{run_in_each, Scratch};
    use crate::git::{init_scratch_repo, run_git};

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

    /// Two worktrees of one repository at the same commit: one watched, one staged by
    /// `git add -A` itself. Every change is made in both; their staged trees must be equal.
    struct Twins {
        _scratch: Scratch,
        main: std::path::PathBuf,
        watched: Worktree,
        scanned: Worktree,
        base: Oid,
    }

    impl Twins {
        fn new(files: &[(&str, &str)]) -> Twins {
            let scratch = Scratch::new(&[], files);
            let watched = Worktree::new(scratch.worktree("watched"));
            let scanned = Worktree::new(scratch.worktree("scanned"));
            watched
                .watch_from(scratch.base, crate::git::WatchWhen::Always)
                .expect("watch");
            assert!(watched.is_watched(), "a watch starts on Linux");
            Twins {
                main: scratch.main.clone(),
                base: scratch.base,
                _scratch: scratch,
                watched,
                scanned,
            }
        }

        /// Run `script` (sh) in both worktrees.
        fn both(&self, script: &str) {
            run_in_each(&[&self.watched.path, &self.scanned.path], script);
        }

        /// What git itself stages in the scanned twin: `git add -A`, the `force` paths that
        /// are there with `git add -f`; the index as a tree.
        fn staged_by_git(&self, force: &[&str]) -> Oid {
            let dir = &self.scanned.path;
            run_git(dir, ["add", "-A"]).expect("add");
            let forced: Vec<&str> = force
                .iter()
                .copied()
                .filter(|p| dir.join(p).exists())
                .collect();
            if !forced.is_empty() {
                run_git(dir, ["add", "-f", "--"].iter().chain(&forced)).expect("add -f");
            }
            let tree = run_git(dir, ["write-tree"]).expect("write-tree");
            Oid::parse(tree.trim()).expect("tree")
        }

        /// Stage the watched twin from `base` as a step would and the scanned one by git
        /// itself, commit, and check the trees agree. The new base.
        fn stage(&mut self, what: &str) -> Oid {
            self.stage_forcing(what, &[])
        }

        /// [`Twins::stage`] with `force`: paths staged even when ignored.
        fn stage_forcing(&mut self, what: &str, force: &[&str]) -> Oid {
            let none = |_: &str| false;
            let watched = self
                .watched
                .stage_all(force, &none, self.base)
                .expect("stage");
            let scanned = self.staged_by_git(force);
            let listed = |tree: Oid| run_git(&self.main, ["ls-tree", "-r", &tree.to_string()]);
            assert_eq!(
                listed(watched.tree).expect("ls-tree"),
                listed(scanned).expect("ls-tree"),
                "{what}"
            );
            let commit = |wt: &Worktree, tree: Oid| {
                let out = run_git(
                    &self.main,
                    [
                        "commit-tree",
                        &tree.to_string(),
                        "-p",
                        &self.base.to_string(),
                        "-m",
                        what,
                    ],
                )
                .expect("commit-tree");
                let commit = Oid::parse(out.trim()).expect("oid");
                wt.detach_head_at(commit).expect("head");
                commit
            };
            commit(&self.scanned, scanned);
            self.base = commit(&self.watched, watched.tree);
            self.base
        }
    }

    /// Run `test` twice: worktrees staged as small ones (inside git machine), then as big ones
    /// (`git ls-files` and `git update-index` of the paths heard).
    fn small_and_big(test: impl Fn()) {
        for big in [false, true] {
            crate::git::STAGE_AS_BIG.with(|b| b.set(big));
            test();
        }
        crate::git::STAGE_AS_BIG.with(|b| b.set(false));
    }

    #[test]
    fn a_watched_worktree_stages_what_a_scan_of_everything_stages() {
        small_and_big(a_watched_worktree_stages_what_git_stages);
    }

    fn a_watched_worktree_stages_what_git_stages() {
        let mut t = Twins::new(&[
            (".gitignore", "*.o\nbuild/\n"),
            ("a/b/one.txt", "one\n"),
            ("a/two.txt", "two\n"),
            ("c/three.txt", "three\n"),
            ("gone/x.txt", "x\n"),
            ("top.txt", "top\n"),
        ]);
        for (what, script) in [
            ("edit, delete, create", "echo more >> a/b/one.txt && rm a/two.txt && echo n > new.txt"),
            ("new folders, ignored files", "mkdir -p d/e/f && echo f > d/e/f/f.txt && echo o > d/x.o && mkdir -p build/x && echo b > build/x/b.txt"),
            ("a folder deleted, a mode changed, a symlink", "rm -r gone && chmod +x top.txt && ln -s top.txt link"),
            ("a folder renamed", "mv a moved"),
            ("a folder moved out, another made in its place", "mv c ../c-$(basename $PWD) && mkdir c && echo n > c/new.txt"),
            ("in the folder made in its place", "echo m >> c/new.txt && echo o > c/other.txt"),
            ("in the renamed folder", "echo later > moved/b/later.txt && echo again >> moved/b/one.txt"),
            ("in the folder made two steps ago", "echo g > d/e/g.txt && rm d/e/f/f.txt"),
            ("an untracked folder of ignored files gets a file", "mkdir -p objs && echo o > objs/a.o"),
            ("then a file git sees", "echo n > objs/notes.txt"),
            ("a file replaced by a folder", "rm top.txt && mkdir top.txt && echo t > top.txt/inner.txt"),
            ("nothing", "true"),
        ] {
            t.both(script);
            t.stage(what);
        }
        assert!(t.watched.is_watched(), "the watch served every step");
    }

    /// Forced folders (the run's folder and the step's new record, as the runner names them)
    /// are staged whole, files an ignore rule names included, whether new, changed or gone.
    #[test]
    fn a_forced_folder_is_staged_whole_watched_or_not() {
        small_and_big(|| {
            let mut t = Twins::new(&[(".gitignore", "*.log\n"), ("rec/run.toml", "v1\n")]);
            t.both("mkdir -p rec/steps/01 && echo o > rec/steps/01/output.log && echo s > rec/steps/01/step.toml");
            t.stage_forcing(
                "a new record with an ignored name",
                &["rec", "rec/steps/01"],
            );
            t.both("echo v2 > rec/run.toml && mkdir rec/steps/02 && echo o > rec/steps/02/output.log && rm rec/steps/01/step.toml");
            let tree = t.stage_forcing("a changed record", &["rec", "rec/steps/02"]);
            let listed =
                run_git(&t.main, ["ls-tree", "-r", "--name-only", &tree.to_string()]).expect("ls");
            assert!(
                listed.contains("rec/steps/02/output.log\n") && !listed.contains("01/step.toml"),
                "{listed}"
            );
        });
    }

    /// A step's own git commands change the index without touching a file: what they did
    /// is staged as `git add -A` would.
    #[test]
    fn what_a_step_did_with_git_itself_is_staged_too() {
        small_and_big(|| {
            let mut t = Twins::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
            t.both("git rm -q --cached a.txt");
            t.stage("untracked by git rm --cached");
            t.both("echo c > c.txt && git add c.txt && git -c user.name=A -c user.email=a@x commit -qm c && echo d > d.txt");
            t.stage("a commit of the step's own");
            t.both("git rm -q b.txt");
            t.stage("git rm");
            assert!(t.watched.is_watched());
        });
    }

    /// Where the watch cannot tell, the staging reads everything and the watch is dropped.
    #[test]
    fn an_ignore_file_changed_or_a_nested_repository_ends_the_watch() {
        small_and_big(|| {
            let mut t = Twins::new(&[(".gitignore", "*.log\n"), ("a.txt", "a\n")]);
            t.both("echo old > old.log");
            t.stage("an ignored file");
            t.both("echo '*.tmp' > .gitignore");
            t.stage("un-ignored: the old file counts now");
            assert!(
                !t.watched.is_watched(),
                "a changed .gitignore ends the watch"
            );

            let mut t = Twins::new(&[("a.txt", "a\n")]);
            t.both("mkdir inner && cd inner && git init -q && echo x > x.txt && git add x.txt && git -c user.name=A -c user.email=a@x commit -qm x");
            t.stage("a nested repository");
            assert!(
                !t.watched.is_watched(),
                "a nested repository ends the watch"
            );
        });
    }

    /// More events than the kernel queues: the watch cannot tell, and says so.
    #[test]
    fn an_overflowing_queue_ends_the_watch() {
        let mut t = Twins::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
        let max: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(16384);
        for i in 0..=max {
            let path = if i % 2 == 0 { "a.txt" } else { "b.txt" };
            std::fs::write(t.watched.path.join(path), format!("{i}\n")).expect("write");
        }
        t.both(&format!("echo {max} > a.txt && echo {} > b.txt", max - 1));
        t.stage("after an overflow");
        assert!(!t.watched.is_watched());
    }

    /// Many paths: one scan instead of a pathspec each, and the watch goes on.
    #[test]
    fn many_changed_paths_are_scanned_and_the_watch_goes_on() {
        small_and_big(|| {
            let mut t = Twins::new(&[("a.txt", "a\n")]);
            t.both("for i in $(seq 1 300); do echo $i > f$i.txt; done");
            t.stage("300 new files");
            t.both("echo b >> f7.txt");
            t.stage("one more change");
            assert!(t.watched.is_watched());
        });
    }

    /// Moving a watched worktree to another commit skips checking the files it rewrites only
    /// while nothing at all changed: an edit, heard, makes the move check them, and one in a
    /// file the move would rewrite refuses it.
    #[test]
    fn a_watched_worktree_moves_unchecked_only_while_untouched() {
        let mut t = Twins::new(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
        let start = t.base;
        t.both("echo a2 > a.txt");
        let next = t.stage("a.txt changed");
        let repo = git2::Repository::open(&t.watched.path).expect("open");
        let untouched = |commit| t.watched.untouched_at(&repo, &[commit]).expect("untouched");
        assert_eq!(
            untouched(next),
            Some(next),
            "staged and committed, nothing since"
        );
        std::fs::write(t.watched.path.join("a.txt"), "edited by a person\n").expect("edit");
        assert_eq!(untouched(next), None);
        assert!(
            !t.watched.advance(&[next], start).expect("advance"),
            "refused"
        );
        assert_eq!(
            std::fs::read_to_string(t.watched.path.join("a.txt")).expect("read"),
            "edited by a person\n"
        );
        assert!(
            t.watched.is_watched(),
            "what was heard waits for the next staging"
        );
        t.both("echo edited by a person > a.txt");
        t.stage("the person's edit is the next step's");
    }

    /// A tree with a submodule is not watched: its commits happen in its own git dir.
    #[test]
    fn a_tree_with_a_submodule_is_not_watched() {
        let t = Twins::new(&[("a.txt", "a\n")]);
        let sub = t.main.join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        init_scratch_repo(&sub).expect("sub");
        run_git(&t.main, ["add", "sub"]).expect("add");
        run_git(&t.main, ["commit", "-q", "-m", "sub"]).expect("commit");
        let head = Oid::parse(
            run_git(&t.main, ["rev-parse", "HEAD"])
                .expect("head")
                .trim(),
        )
        .expect("oid");
        let repo = git2::Repository::open(&t.main).expect("open");
        assert!(Watch::folders_of(&repo, head).expect("folders").is_none());
        assert!(Watch::folders_of(&repo, t.base).expect("folders").is_some());
    }
}
