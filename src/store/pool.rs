//! The worktree pool: finished worktrees kept for the next run instead of deleted.
//!
//! Checking out a big repository is most of what starting a run costs (seconds at 100k files),
//! and every run and every member of a parallel group used to write the same files again. A
//! run that completes (or is removed by `rm`) hands its worktree to a small per-repository pool
//! under `<worktrees>/pool/`; the next run or member takes one, moves it to its own fixed path
//! and switches it to its base, which writes only the files that differ.
//!
//! Invariants:
//! - a pooled worktree is parked: HEAD detached, nothing uncommitted, no untracked or ignored
//!   file (`git clean -ffdx`); a worktree with uncommitted changes never enters the pool;
//! - only linked worktrees under git machine's worktree folder enter it, never the user's own
//!   checkout;
//! - an entry is taken by one `rename` to the run's path before it is switched, so two
//!   processes never get the same one, and a worktree killed while switching is at its run's
//!   path with the switching marker (see `git::pool`): whoever finds it there resets it;
//! - entries are named `<nanoseconds>-<bytes>`: the oldest is dropped first once there are more
//!   than `machine.pool.size` of them or more than `machine.pool.maxBytes` in all.
//!
//! Taking and trimming hold an exclusive `flock` on `<common git dir>/machine/pool.lock`, so a
//! trim never removes an entry that a taker is moving.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::git::pool::Head;
use crate::git::{Oid, RefName, Repo, Worktree};

use super::{layout, Paths};

/// Worktrees kept when `machine.pool.size` is not set: a run and a group of four members
/// (`machine.jobs`' default) all start from the pool.
pub const DEFAULT_SIZE: usize = 5;
/// Bytes kept in all when `machine.pool.maxBytes` is not set: 4 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// The pool of one repository, with its bounds.
pub struct Pool {
    dir: PathBuf,
    /// Where runs' worktrees live: only worktrees in there may enter the pool.
    worktrees: PathBuf,
    lock: PathBuf,
    size: usize,
    max_bytes: u64,
}

/// What the worktree to switch to is.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// A run's worktree: on its branch, which points at the commit.
    Branch(&'a RefName, Oid),
    /// A member's worktree: detached at the commit.
    Detached(Oid),
}

impl Target<'_> {
    fn commit(&self) -> Oid {
        match self {
            Target::Branch(_, commit) | Target::Detached(commit) => *commit,
        }
    }
}

/// Run `work` on every item, as many at a time as there are CPUs (each runs git, so the
/// threads mostly wait on their child processes): the results in order, or the first error
/// once all have ended.
pub fn side_by_side<T: Send, R: Send, E: Send>(
    items: &mut [T],
    work: impl Fn(&mut T) -> std::result::Result<R, E> + Sync,
) -> std::result::Result<Vec<R>, E> {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let mut out = Vec::new();
    for chunk in items.chunks_mut(cpus) {
        let results: Vec<std::result::Result<R, E>> = std::thread::scope(|scope| {
            let work = &work;
            let handles: Vec<_> = chunk
                .iter_mut()
                .map(|item| scope.spawn(move || work(item)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for r in results {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Where an acquired worktree came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Taken from the pool and switched.
    Pool,
    /// Found at its path, half-switched by a killed process, and reset.
    Recovered,
    /// Checked out afresh (`git worktree add`).
    New,
}

/// What to do with a worktree that holds uncommitted changes when it is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfDirty {
    /// Leave it where it is (a run's worktree: the changes are someone's).
    Keep,
    /// Remove it (its changes were kept elsewhere, or are disposable).
    Remove,
    /// The caller knows it holds nothing uncommitted (a member right after its commit, which
    /// staged everything): not checked again, which at 100k files costs a second.
    KnownClean,
}

/// What became of a released worktree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    Pooled,
    Removed,
    /// It holds uncommitted changes and stays where it is.
    Kept,
}

/// One pooled worktree.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: PathBuf,
    /// When it entered the pool, in nanoseconds since the epoch.
    pub stamp: u128,
    /// Its files' bytes on disk, estimated from its index (see [`crate::git::pool`]).
    pub bytes: u64,
}

impl Pool {
    /// The pool of `repo`, bounded as `machine.pool.size` and `machine.pool.maxBytes` say.
    pub fn new(repo: &Repo, paths: &Paths) -> Result<Pool> {
        let size = match repo.config_str("machine.pool.size") {
            None => DEFAULT_SIZE,
            Some(v) => parse_size(&v)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    bad_setting(
                        "machine.pool.size",
                        &v,
                        "a number of worktrees, 0 for no pool",
                    )
                })?,
        };
        let max_bytes = match repo.config_str("machine.pool.maxBytes") {
            None => DEFAULT_MAX_BYTES,
            Some(v) => parse_size(&v).ok_or_else(|| {
                bad_setting(
                    "machine.pool.maxBytes",
                    &v,
                    "bytes, with an optional k, m or g suffix",
                )
            })?,
        };
        Ok(Pool {
            dir: paths.pool_dir(),
            worktrees: paths.worktrees_dir().to_path_buf(),
            lock: repo.common_dir().join("machine").join("pool.lock"),
            size,
            max_bytes,
        })
    }

    /// Make `path` a worktree holding exactly the target's commit: finish a switch a killed
    /// process left there, else take the newest pooled worktree, else check one out afresh.
    /// Whatever `path` held otherwise is removed first.
    ///
    /// Workspace preparation (submodules, copied ignored files, a setup command) must run
    /// right after this, whatever the source: a pooled worktree comes without ignored files.
    pub fn acquire(&self, repo: &Repo, path: &Path, target: Target<'_>) -> Result<Source> {
        let sources = self.acquire_all(repo, &[(path, target)])?;
        Ok(sources[0])
    }

    /// [`Pool::acquire`] for several worktrees at once (a parallel group's members): each is
    /// taken or checked out in turn, then their files are switched side by side, one `git
    /// read-tree` per worktree running at the same time.
    pub fn acquire_all(&self, repo: &Repo, wanted: &[(&Path, Target<'_>)]) -> Result<Vec<Source>> {
        let mut sources = Vec::new();
        for (path, target) in wanted {
            let wt = Worktree::new(path.to_path_buf());
            let source = if wt.is_switching() && wt.is_valid() {
                // Killed between the move and the end of the switch, perhaps before git was told.
                repo.repair_worktree(path)?;
                Source::Recovered
            } else {
                if path.exists() {
                    repo.worktree_remove(path)?;
                }
                if self.take(repo, path)? {
                    Source::Pool
                } else {
                    match target {
                        Target::Branch(branch, _) => repo.worktree_add(path, branch)?,
                        Target::Detached(commit) => repo.worktree_add_detached(path, *commit)?,
                    }
                    Source::New
                }
            };
            sources.push(source);
        }
        let mut switching: Vec<(Worktree, Oid, bool)> = wanted
            .iter()
            .zip(&sources)
            .filter(|(_, s)| **s != Source::New)
            .map(|((path, target), s)| {
                let wt = Worktree::new(path.to_path_buf());
                (wt, target.commit(), *s == Source::Pool)
            })
            .collect();
        side_by_side(&mut switching, |(wt, commit, parked)| {
            wt.switch_files(*commit, *parked)
        })?;
        crate::env::crash::point("switching");
        for ((path, target), source) in wanted.iter().zip(&sources) {
            if *source == Source::New {
                continue;
            }
            let head = match target {
                Target::Branch(branch, _) => Head::Branch(branch),
                Target::Detached(_) => Head::Detached,
            };
            Worktree::new(path.to_path_buf()).finish_switch(target.commit(), head)?;
            if *source == Source::Pool {
                crate::env::crash::point("worktree-added");
            }
        }
        Ok(sources)
    }

    /// Move the newest pooled worktree to `path`; `false` when the pool is empty.
    fn take(&self, repo: &Repo, path: &Path) -> Result<bool> {
        if self.size == 0 {
            return Ok(false);
        }
        let _lock = self.locked()?;
        for entry in self.entries()?.iter().rev() {
            if !Worktree::new(entry.path.clone()).is_valid() {
                // Its folder lost its git files: it can serve no one.
                repo.worktree_remove(&entry.path)?;
                continue;
            }
            if repo.move_worktree(&entry.path, path)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Hand the worktree at `path` to the pool: parked and moved there, then the pool trimmed
    /// to its bounds. A worktree with uncommitted changes is kept or removed as `if_dirty`
    /// says; with the pool off (`machine.pool.size` 0) a clean one is removed.
    pub fn release(&self, repo: &Repo, path: &Path, if_dirty: IfDirty) -> Result<Released> {
        let wt = Worktree::new(path.to_path_buf());
        let ours = path.starts_with(&self.worktrees) && wt.admin_dir().is_some();
        if !ours || !wt.is_valid() {
            // Not a linked worktree any more (its folder or git files are gone): drop what is left.
            repo.worktree_remove(path)?;
            return Ok(Released::Removed);
        }
        if if_dirty != IfDirty::KnownClean && wt.is_dirty()? {
            if if_dirty == IfDirty::Keep {
                return Ok(Released::Kept);
            }
            repo.worktree_remove(path)?;
            return Ok(Released::Removed);
        }
        self.pool_all(repo, &mut [(wt, None)])?;
        Ok(if self.size == 0 {
            Released::Removed
        } else {
            Released::Pooled
        })
    }

    /// Hand finished members' worktrees to the pool, each with the commit its HEAD is to be
    /// detached at (its index and files hold that commit already): parked side by side, then
    /// moved into the pool, which is trimmed once. Worktrees that are not git machine's own
    /// linked worktrees any more are removed.
    pub fn release_members(&self, repo: &Repo, done: &[(&Path, Oid)]) -> Result {
        let mut parking = Vec::new();
        for (path, commit) in done {
            let wt = Worktree::new(path.to_path_buf());
            if path.starts_with(&self.worktrees) && wt.admin_dir().is_some() && wt.is_valid() {
                parking.push((wt, Some(*commit)));
            } else {
                repo.worktree_remove(path)?;
            }
        }
        self.pool_all(repo, &mut parking)
    }

    /// Park clean worktrees (HEAD first detached at the commit given, if one is) side by
    /// side and move them into the pool; with the pool off, remove them.
    fn pool_all(&self, repo: &Repo, worktrees: &mut [(Worktree, Option<Oid>)]) -> Result {
        if self.size == 0 {
            for (wt, _) in worktrees {
                repo.worktree_remove(&wt.path)?;
            }
            return Ok(());
        }
        let sizes = side_by_side(worktrees, |(wt, head)| {
            if let Some(commit) = head {
                wt.detach_head_at(*commit)?;
            }
            // Parked, it holds no ignored file: what its setup made is gone, so is the
            // setup's stamp (the next holder sets it up again).
            if let Some(admin) = wt.admin_dir() {
                let _ = std::fs::remove_file(admin.join(layout::SETUP_STAMP));
            }
            wt.park()
        })?;
        for ((wt, _), bytes) in worktrees.iter().zip(sizes) {
            let mut stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let mut to = self.dir.join(format!("{stamp:020}-{bytes}"));
            while to.exists() {
                stamp += 1;
                to = self.dir.join(format!("{stamp:020}-{bytes}"));
            }
            repo.move_worktree(&wt.path, &to)?;
        }
        // An entry moved in by a process killed before it told git is made known here, not
        // only when its run is resumed: a member's run need never be.
        self.heal(repo)?;
        self.trim(repo)
    }

    /// Tell git where each pooled worktree is, where it still names the path the worktree
    /// was moved from: a process killed between the `rename` into the pool and `git worktree
    /// repair` leaves git listing the old path (prunable) and the entry's folder unknown to
    /// it. Cheap: one small file read per entry.
    pub fn heal(&self, repo: &Repo) -> Result {
        let _lock = self.locked()?;
        for entry in self.entries()? {
            let wt = Worktree::new(entry.path.clone());
            let Some(admin) = wt.admin_dir() else {
                continue;
            };
            let known = std::fs::read_to_string(admin.join("gitdir")).unwrap_or_default();
            if std::path::Path::new(known.trim()) != entry.path.join(".git") {
                repo.repair_worktree(&entry.path)?;
            }
        }
        Ok(())
    }

    /// Drop the oldest entries until at most `machine.pool.size` remain and they hold at most
    /// `machine.pool.maxBytes`.
    fn trim(&self, repo: &Repo) -> Result {
        let _lock = self.locked()?;
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut count = entries.len();
        for entry in &entries {
            if count <= self.size && total <= self.max_bytes {
                break;
            }
            // Trimming is housekeeping: an entry that cannot be removed now (another process
            // busy in the folder) stays for the next trim or `gc`, and the run that released
            // a worktree does not fail for it.
            if repo.worktree_remove(&entry.path).is_err() {
                continue;
            }
            count -= 1;
            total -= entry.bytes;
        }
        Ok(())
    }

    /// The pooled worktrees that entered the pool at least `age` ago (all of them without one):
    /// what `git machine gc` removes.
    pub fn older_than(&self, age: Option<Duration>) -> Result<Vec<Entry>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let age = age.map_or(0, |a| a.as_nanos());
        Ok(self
            .entries()?
            .into_iter()
            .filter(|e| now.saturating_sub(e.stamp) >= age)
            .collect())
    }

    /// Remove these pooled worktrees (`git machine gc`); the pool's folder goes once empty.
    pub fn remove(&self, repo: &Repo, entries: &[Entry]) -> Result {
        let _lock = self.locked()?;
        for entry in entries {
            repo.worktree_remove(&entry.path)?;
        }
        let _ = std::fs::remove_dir(&self.dir);
        Ok(())
    }

    /// The pooled worktrees, oldest first. A folder in the pool that git machine did not name
    /// is an error, not skipped: something else is writing there.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let parsed = name
                .split_once('-')
                .and_then(|(s, b)| Some((s.parse().ok()?, b.parse().ok()?)));
            let Some((stamp, bytes)) = parsed else {
                return Err(Error::failed(format!(
                    "{} is not a worktree git machine pooled",
                    e.path().display()
                ))
                .with_hint(format!(
                    "move it out of {}; that folder holds only pooled worktrees",
                    self.dir.display()
                )));
            };
            entries.push(Entry {
                path: e.path(),
                stamp,
                bytes,
            });
        }
        entries.sort_by_key(|e| e.stamp);
        Ok(entries)
    }

    fn locked(&self) -> Result<File> {
        use std::os::fd::AsRawFd;
        if let Some(dir) = self.lock.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)?;
        // SAFETY: flock on a file descriptor we own; released when `file` is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::failed(format!(
                "cannot lock {}: {}",
                self.lock.display(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(file)
    }
}

fn bad_setting(key: &str, value: &str, want: &str) -> Error {
    Error::usage(format!("{key} is `{value}`, not {want}")).with_hint(format!(
        "`git config {key} <value>` sets it, `git config --unset {key}` takes the default"
    ))
}

/// A size as git writes integers: digits with an optional `k`, `m` or `g` suffix (×1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c.to_ascii_lowercase()),
        _ => (text, ' '),
    };
    let shift = match unit {
        ' ' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(repo: &Path) -> String {
        let out = std::process::Command::new("git")
            .args(["worktree", "list", "--porcelain"])
            .current_dir(repo)
            .output()
            .expect("git worktree list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Regression (random kills of crash.rs): killed between moving a completed run's
    /// worktree into the pool and telling git, the run's path stayed listed by git as
    /// prunable, and the pooled folder unknown to git. `heal` (which resuming the completed
    /// run calls) tells git where it is.
    #[test]
    fn a_pooled_worktree_git_still_knows_by_its_old_path_is_made_known_where_it_is() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&root).expect("repo dir");
        crate::git::init_scratch_repo(&root).expect("repo");
        let repo = Repo::open(&root, &crate::git::GitEnv::default()).expect("open");
        let worktrees = tmp.path().join("worktrees");
        let run = worktrees.join("run");
        let head = repo.head_commit().expect("head");
        repo.worktree_add_detached(&run, head).expect("worktree");
        let pool = Pool {
            dir: worktrees.join("pool"),
            worktrees: worktrees.clone(),
            lock: root.join(".git/machine/pool.lock"),
            size: 5,
            max_bytes: DEFAULT_MAX_BYTES,
        };
        std::fs::create_dir_all(&pool.dir).expect("pool dir");
        std::fs::create_dir_all(root.join(".git/machine")).expect("machine dir");
        let entry = pool.dir.join("00000000000000000001-4096");
        std::fs::rename(&run, &entry).expect("moved, and killed before git was told");
        assert!(listed(&root).contains("prunable"), "{}", listed(&root));
        pool.heal(&repo).expect("heal");
        let after = listed(&root);
        assert!(!after.contains("prunable"), "{after}");
        assert!(after.contains(&entry.display().to_string()), "{after}");
        pool.heal(&repo).expect("nothing to do the second time");
        // Regression (named crash windows): a member's worktree, taken from the pool by a
        // process killed before it told git, was moved back into the pool by the next one,
        // killed again before telling git; the run then completed and nothing healed it.
        std::fs::rename(&entry, pool.dir.join("00000000000000000002-4096")).expect("moved");
        let member = worktrees.join("run--m");
        repo.worktree_add_detached(&member, head).expect("worktree");
        pool.release_members(&repo, &[(&member, head)])
            .expect("released");
        let after = listed(&root);
        assert!(!after.contains("prunable"), "{after}");
    }

    #[test]
    fn sizes_read_as_git_reads_integers() {
        assert_eq!(parse_size("4"), Some(4));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("2k"), Some(2048));
        assert_eq!(parse_size("3M"), Some(3 << 20));
        assert_eq!(parse_size(" 1g "), Some(1 << 30));
        assert_eq!(parse_size("many"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("5t"), None);
        assert_eq!(parse_size(""), None);
    }
}
