//! The git mechanics of reusing a worktree: park a finished one (HEAD detached, every file git
//! does not track removed, its folders recorded), move a folder to another path and tell git where it went, and
//! switch it to another commit by writing only the files that differ.
//!
//! Where pooled worktrees live and who gets one is `store::pool`'s business; this module only
//! knows one worktree at a time.
//!
//! Invariant: a worktree whose files or HEAD may not match what its path promises carries the
//! marker file [`SWITCHING`] in its own git dir (`.git/worktrees/<name>/`). It is written
//! before anything changes (parking, switching) and removed only once the worktree holds
//! exactly its commit on its branch, so a process killed in between leaves a worktree that
//! says so, and whoever finds it resets it instead of trusting it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{run_git, GitError, Oid, RefName, Repo, Result, Worktree};

/// The marker of a worktree that is being parked or switched (see the module header).
pub const SWITCHING: &str = "machine-switching";

/// The most paths [`Worktree::checkout_changed`] checks out; beyond, a two-way `read-tree`.
const SWITCH_PATHS: usize = 64;

/// The block size the disk estimate of a parked worktree rounds each file up to.
const BLOCK: u64 = 4096;

/// A file's bytes on disk as the estimate counts them: whole blocks, at least one.
fn blocks(size: u64) -> u64 {
    size.div_ceil(BLOCK).max(1) * BLOCK
}

/// The last parking's estimate and the commit it was of, in the worktree's git dir.
const BYTES: &str = "machine-bytes";

/// What a switched worktree's HEAD becomes.
#[derive(Clone, Copy, Debug)]
pub enum Head<'a> {
    /// Attached to this branch, which points at the commit switched to.
    Branch(&'a RefName),
    /// Detached at the commit switched to.
    Detached,
}

impl Worktree {
    /// The worktree's own git dir (`<common dir>/worktrees/<name>`), read from its `.git` file
    /// without spawning git. `None` for a main checkout (whose `.git` is a folder) or no
    /// worktree at all: those are never parked or switched.
    pub fn admin_dir(&self) -> Option<PathBuf> {
        let dotgit = std::fs::read_to_string(self.path.join(".git")).ok()?;
        let admin = PathBuf::from(dotgit.trim().strip_prefix("gitdir: ")?);
        admin.is_dir().then_some(admin)
    }

    /// Where git's lock on this worktree's index is taken (`None` for no linked worktree).
    pub fn index_lock(&self) -> Option<PathBuf> {
        self.admin_dir().map(|admin| admin.join("index.lock"))
    }

    /// Whether a park or a switch of this worktree was started and not finished.
    pub fn is_switching(&self) -> bool {
        self.admin_dir()
            .is_some_and(|admin| admin.join(SWITCHING).exists())
    }

    fn mark_switching(&self, on: bool) -> Result<()> {
        let admin = self.admin_dir().ok_or_else(|| {
            GitError::Io(format!(
                "{} is not a linked worktree of git machine's",
                self.path.display()
            ))
        })?;
        let marker = admin.join(SWITCHING);
        let done = if on {
            std::fs::write(&marker, b"")
        } else {
            std::fs::remove_file(&marker).or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
        };
        done.map_err(|e| GitError::Io(format!("{}: {e}", marker.display())))
    }

    /// Make a clean, finished worktree ready for another run: marked, HEAD detached where it
    /// is (no file is written), and every untracked and ignored file removed (`git clean
    /// -ffdx`: build outputs, copied `.env` files, nested repositories), unless the folders
    /// recorded at the last parking show there is none (see `folders.rs`); its folders are
    /// recorded again for the next. Returns the bytes its
    /// files take on disk, estimated from its index: each file rounded up to a 4 KiB block.
    /// The caller checked that nothing uncommitted is in it: tracked changes would survive.
    pub fn park(&self) -> Result<u64> {
        self.mark_switching(true)?;
        super::configure_libgit2();
        let repo = git2::Repository::open(&self.path)?;
        // Detached in place by libgit2: `git checkout --detach` would refresh the whole index.
        let head = repo.head()?.peel_to_commit()?.id();
        repo.set_head_detached(head)?;
        let known = self.tracked_folders(&repo, Oid(head)).unwrap_or(None);
        if known.is_none() {
            self.git(&["clean", "-ffdxq"])?;
        }
        self.drop_submodules()?;
        let bytes = match self.bytes_since_last_park(&repo, Oid(head))? {
            Some(bytes) => bytes,
            None => repo
                .index()?
                .iter()
                .map(|e| blocks(u64::from(e.file_size)))
                .sum(),
        };
        if let Some(admin) = self.admin_dir() {
            let _ = std::fs::write(admin.join(BYTES), format!("{bytes} {head}\n"));
        }
        let recorded = match &known {
            Some(rec) => self.write_record(rec),
            None => self.record_folders(&repo, Oid(head)),
        };
        if recorded.is_err() {
            self.forget_folders();
        }
        Ok(bytes)
    }

    /// The estimate of [`Worktree::park`] from the one the last parking wrote (`<bytes>
    /// <commit>` in the worktree's git dir) and the files that differ between that commit and
    /// `head`: reading a 100k-entry index costs ~50 ms, comparing two trees a few. `None`
    /// when there is no earlier estimate, or it cannot be read.
    fn bytes_since_last_park(&self, repo: &git2::Repository, head: Oid) -> Result<Option<u64>> {
        let Some(text) = self
            .admin_dir()
            .and_then(|a| std::fs::read_to_string(a.join(BYTES)).ok())
        else {
            return Ok(None);
        };
        let parsed = text
            .split_once(' ')
            .and_then(|(b, c)| Some((b.trim().parse::<u64>().ok()?, Oid::parse(c.trim())?)));
        let Some((bytes, then)) = parsed else {
            return Ok(None);
        };
        let (Ok(old), Ok(new)) = (repo.find_commit(then.0), repo.find_commit(head.0)) else {
            return Ok(None);
        };
        let odb = repo.odb()?;
        let size = |e: Option<super::treediff::Entry>| -> Result<u64> {
            Ok(match e {
                None => 0,
                Some(e) if e.is_gitlink() => BLOCK,
                Some(e) => blocks(odb.read_header(e.id.0)?.0 as u64),
            })
        };
        let mut total = i128::from(bytes);
        for c in super::treediff::changes(repo, &old.tree()?, &new.tree()?)? {
            total += i128::from(size(c.new)?) - i128::from(size(c.old)?);
        }
        Ok(u64::try_from(total).ok())
    }

    /// Empty the submodules a holder populated, and their clones in the worktree's git dir:
    /// a clone records its checkout's path (`core.worktree`), which the next holder's is not,
    /// and it may lack the commits of the next base. The next holder's preparation populates
    /// them again from the user's clones (hard links: cheap). The folders stay, empty, as git
    /// leaves a submodule nobody initialised.
    fn drop_submodules(&self) -> Result<()> {
        let subs = self.submodules()?;
        for sub in &subs {
            let dir = self.path.join(&sub.path);
            if dir.join(".git").exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| GitError::Io(e.to_string()))?;
                std::fs::create_dir_all(&dir).map_err(|e| GitError::Io(e.to_string()))?;
            }
        }
        if let Some(modules) = self.admin_dir().map(|a| a.join("modules")) {
            if modules.exists() {
                std::fs::remove_dir_all(&modules).map_err(|e| GitError::Io(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// First half of a switch: make this worktree's index and files exactly `commit`'s,
    /// rewriting only the files that differ. A parked worktree (`parked`: its index and files
    /// are its HEAD's, nothing else is there) is moved writing only what differs
    /// ([`Worktree::move_between`]); any other (half-switched by a killed
    /// process), or one git refuses to move so, with `git read-tree --reset -u`, which checks
    /// every file and drops whatever was left staged, then `git clean -ffdx`. The worktree
    /// stays marked until [`Worktree::finish_switch`].
    pub fn switch_files(&self, commit: Oid, parked: bool) -> Result<()> {
        self.mark_switching(true)?;
        // A switch that git refuses (a file differs from what the index says after all) falls
        // back to the full reset: the worktree is the pool's, nothing in it is kept.
        if !(parked && self.move_between(None, commit, false)?) {
            let commit = commit.to_string();
            self.git(&["read-tree", "--reset", "-u", &commit])?;
            self.git(&["clean", "-ffdxq"])?;
        }
        // read-tree moves gitlinks, not the submodules checked out at them: those a previous
        // holder populated are put at the commits the new base records.
        self.reset_submodules()
    }

    /// Move a worktree whose index and files are commit `from`'s (HEAD's when `None`) to
    /// commit `to`, writing only what differs: a checkout of the paths that differ (see
    /// [`Worktree::checkout_changed`]), or with many of them a two-way `git read-tree -m -u`.
    /// `Ok(false)`, with nothing changed, when git refuses: a file to rewrite has changes of
    /// its own. `untouched`: a watch knows nothing changed since the worktree held `from`,
    /// so the files to rewrite are not checked first.
    pub(super) fn move_between(&self, from: Option<Oid>, to: Oid, untouched: bool) -> Result<bool> {
        super::configure_libgit2();
        let repo = git2::Repository::open(&self.path)?;
        let from = match from {
            Some(commit) => repo.find_commit(commit.0)?,
            None => repo.head()?.peel_to_commit()?,
        };
        if self.checkout_changed(&repo, &from.tree()?, to, untouched)? {
            return Ok(true);
        }
        let (from, to) = (from.id().to_string(), to.to_string());
        match self.git(&["read-tree", "-m", "-u", &from, &to]) {
            Ok(_) => Ok(true),
            Err(GitError::Cli { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Check out of `commit` only the paths where its tree and `from` differ, in a worktree
    /// whose index is `from` (`git checkout --no-overlay <commit> -- <paths>`; a folder only
    /// one side has is one path): a two-way `read-tree` walks all the index and both trees,
    /// 165 ms at 100k files against ~70 ms. `false`, with nothing changed, when there are
    /// more than [`SWITCH_PATHS`] paths (git matches every index entry against every path),
    /// or a file to rewrite differs from the index (changed behind git machine's back; not
    /// checked when `untouched`).
    fn checkout_changed(
        &self,
        repo: &git2::Repository,
        from: &git2::Tree<'_>,
        commit: Oid,
        untouched: bool,
    ) -> Result<bool> {
        let target = repo.find_commit(commit.0)?.tree()?;
        let Some(paths) = super::treediff::changed_paths(repo, from, &target, SWITCH_PATHS)? else {
            return Ok(false);
        };
        if paths.is_empty() {
            return Ok(true);
        }
        // At most SWITCH_PATHS paths: given as arguments.
        let named = paths.iter().map(|p| OsStr::from_bytes(p));
        let mut diff: Vec<&OsStr> = [
            "--literal-pathspecs",
            "diff-files",
            "--name-only",
            "-z",
            "--",
        ]
        .map(OsStr::new)
        .to_vec();
        diff.extend(named.clone());
        if !untouched {
            match self.git_bytes(&diff) {
                Ok(changed) if changed.is_empty() => {}
                _ => return Ok(false),
            }
        }
        let target = commit.to_string();
        let mut checkout: Vec<&OsStr> = [
            "--literal-pathspecs",
            "checkout",
            "-q",
            "--no-overlay",
            &target,
            "--",
        ]
        .map(OsStr::new)
        .to_vec();
        checkout.extend(named);
        // git checks every path before it writes any file: refused, nothing changed.
        Ok(self.git_bytes(&checkout).is_ok())
    }

    /// Second half of a switch to `commit`: HEAD as `head` says, then the marker removed.
    pub fn finish_switch(&self, commit: Oid, head: Head<'_>) -> Result<()> {
        match head {
            Head::Branch(branch) => self.git(&["symbolic-ref", "HEAD", branch.as_str()])?,
            Head::Detached => {
                self.git(&["update-ref", "--no-deref", "HEAD", &commit.to_string()])?
            }
        };
        self.mark_switching(false)
    }
}

impl Worktree {
    /// Detach HEAD at `commit`, whose tree the index and files already hold (a member's commit
    /// is made without moving HEAD); no file is touched.
    pub fn detach_head_at(&self, commit: Oid) -> Result<()> {
        self.git(&["update-ref", "--no-deref", "HEAD", &commit.to_string()])?;
        Ok(())
    }
}

impl Repo {
    /// Move the worktree at `from` to `to` by one `rename` (atomic: of two processes taking
    /// the same folder, one gets it and the other `Ok(false)`), then tell git its new place
    /// (`git worktree repair`). `to` must not exist.
    pub fn move_worktree(&self, from: &Path, to: &Path) -> Result<bool> {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| GitError::Io(e.to_string()))?;
        }
        match std::fs::rename(from, to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(GitError::Io(format!(
                    "cannot move {} to {}: {e}",
                    from.display(),
                    to.display()
                )))
            }
        }
        crate::env::crash::point("moved");
        match self.repair_worktree(to) {
            // Moved into the pool and taken out of it by another process before git was told
            // here (the repair waits for the admin lock): the taker tells git where it is.
            Err(_) if !to.exists() => Ok(true),
            done => done.map(|()| true),
        }
    }

    /// Tell git where the worktree at `path` is now (its admin files still name the folder it
    /// was moved from): `git worktree repair`, run inside it. That also rewrites the `.git`
    /// file of every other worktree it finds wanting, one another process is adding among
    /// them ("invalid gitfile format" for its `git worktree add`): it holds the admin lock.
    pub fn repair_worktree(&self, path: &Path) -> Result<()> {
        let _admin = self.worktree_admin_lock(true)?;
        run_git(path, [OsStr::new("worktree"), OsStr::new("repair")])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{run_git, GitEnv};

    /// Regression (four runs at once): a worktree moved into the pool was taken out of it by
    /// another process while this one waited to tell git, whose `git worktree repair` then
    /// failed in a folder that was gone, and the members' release was given up.
    #[test]
    fn a_worktree_taken_on_before_git_is_told_is_moved_all_the_same() {
        let (tmp, root, repo) = crate::git::scratch_repo();
        let (member, pooled, taken) = (
            tmp.path().join("member"),
            tmp.path().join("pooled"),
            tmp.path().join("taken"),
        );
        repo.worktree_add_detached(&member, repo.head_commit().expect("head"))
            .expect("add");
        let admin = repo.worktree_admin_lock(true).expect("hold the admin lock");
        std::thread::scope(|s| {
            let mover = s.spawn(|| {
                let repo = Repo::open(&root, &GitEnv::from_vars(&[])).expect("open");
                repo.move_worktree(&member, &pooled)
            });
            while !pooled.exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // Another process takes it from the pool (its own repair waits too).
            std::fs::rename(&pooled, &taken).expect("taken");
            drop(admin);
            assert!(mover.join().expect("joined").expect("moved"));
        });
        repo.repair_worktree(&taken).expect("the taker tells git");
        let listed = run_git(&root, ["worktree", "list", "--porcelain"]).expect("list");
        assert!(!listed.contains("prunable"), "{listed}");
        assert!(listed.contains(&taken.display().to_string()), "{listed}");
    }

    /// The estimate kept up to date from what changed since the last parking is the one a
    /// full read of the index gives.
    #[test]
    fn a_second_parking_estimates_from_what_changed_as_the_index_would() {
        let (tmp, _, repo) = crate::git::scratch_repo();
        let path = tmp.path().join("wt");
        repo.worktree_add_detached(&path, repo.head_commit().expect("head"))
            .expect("worktree");
        let wt = Worktree::new(path.clone());
        let first = wt.park().expect("park");
        let admin = wt.admin_dir().expect("admin");
        assert!(admin.join(BYTES).exists());

        // A big file added, a small one changed, the README removed; committed, as a step's
        // work is before its worktree is parked.
        std::fs::write(path.join("big.bin"), vec![7u8; 10_000]).expect("big");
        std::fs::write(path.join("small.txt"), "s").expect("small");
        std::fs::remove_file(path.join("README.md")).expect("rm");
        run_git(&path, ["add", "-A"]).expect("add");
        run_git(&path, ["commit", "-q", "-m", "work"]).expect("commit");
        let second = wt.park().expect("park again");
        assert_eq!(second, first - BLOCK + 3 * BLOCK + BLOCK);

        // Without the kept estimate, the index says the same.
        std::fs::remove_file(admin.join(BYTES)).expect("rm estimate");
        assert_eq!(wt.park().expect("park from the index"), second);
    }
}
