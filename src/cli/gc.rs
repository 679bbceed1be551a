//! `git machine gc`: give back the disk that finished runs hold — their worktrees, step logs
//! and empty session folders, and what is left of runs whose branch was deleted — and say how
//! much the worktree cache holds. It also empties the pool of worktrees kept for runs to come
//! (`store::pool`). Branches, records and refs are never touched: a run removed
//! here is still in `log`, `show` and `apply`, and `resume`/`rewind` make its worktree again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

use super::error::CliResult;
use super::Ctx;
use crate::git::{Repo, Worktree};
use crate::store::pool::Pool;
use crate::store::{self, lock, Paths, RunId, Status, POOL_DIR as POOL};

/// How long a temporary object file or a ref lock must have been left alone before `gc` takes
/// it as stale.
const STALE_TEMP_OBJECT: Duration = Duration::from_secs(3600);

/// Remove the worktrees and logs of finished runs and empty the worktree pool; show the
/// worktree cache's size
///
/// Completed runs hand their worktrees to a pool that later runs start from (bounded by
/// machine.pool.size, default 5, and machine.pool.maxBytes, default 4g); gc removes them. It
/// also removes what killed processes left in the git dir an hour ago or more: temporary object
/// files and ref lock files of git machine's refs.
#[derive(Args, Debug)]
pub struct GcArgs {
    /// Only runs that finished, and pooled worktrees parked, at least this long ago (e.g.
    /// "7d", "12h")
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Say what would be removed, and remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}`: {e} (write it like \"7d\" or \"12h\")"))
}

pub fn run(ctx: &mut Ctx, args: &GcArgs) -> CliResult {
    let repo = ctx.repo()?;
    let paths = Paths::new(&repo, &ctx.env);
    let dir = paths.worktrees_dir().to_path_buf();
    // One walk of the cache: bytes by its top-level entry (a run's worktree, a member's, logs).
    let sizes = sizes_by_entry(&dir);
    let before: u64 = sizes.values().sum();
    let runs = store::list_runs(&repo)?;
    // Worktrees git still lists, folder or not (a folder deleted by hand leaves git's entry).
    let listed: Vec<std::path::PathBuf> = repo.worktrees()?.into_iter().map(|(p, _)| p).collect();
    let mut removed = Vec::new();
    for (id, tip) in &runs {
        if let Some(why) = kept(&repo, &paths, (id, *tip), &listed, args.older_than)? {
            if why != Keep::Nothing {
                ctx.ui.note(&format!("kept {id}: {}", why.say()));
            }
            continue;
        }
        if !args.dry_run {
            remove(&repo, &paths, id)?;
        }
        removed.push(id.to_string());
    }
    let orphans = leftovers(ctx, args.dry_run, &repo, (&paths, &listed), &runs)?;
    // The pool is a cache of checkouts for runs to come: gc gives it back (with --older-than,
    // what entered it that long ago).
    let pool = Pool::new(&repo, &paths)?;
    let expired = pool.older_than(args.older_than)?;
    if !args.dry_run {
        pool.remove(&repo, &expired)?;
    }
    let freed: u64 = sizes
        .iter()
        .filter(|(entry, _)| {
            let run = entry
                .split("--")
                .next()
                .unwrap_or("")
                .trim_end_matches(".logs");
            removed.iter().any(|r| r == run)
                || orphans
                    .iter()
                    .any(|o| o.file_name().is_some_and(|n| n == entry.as_str()))
        })
        .map(|(_, bytes)| bytes)
        .sum::<u64>()
        + expired
            .iter()
            .filter_map(|e| sizes.get(&pool_key(&dir, &e.path)))
            .sum::<u64>();
    if !expired.is_empty() {
        let n = expired.len();
        ctx.ui.out(&format!(
            "{} {n} pooled worktree{}",
            verb(args.dry_run),
            if n == 1 { "" } else { "s" }
        ));
    }
    report(ctx, args.dry_run, &removed, &orphans, &dir, (before, freed));
    Ok(())
}

fn verb(dry_run: bool) -> &'static str {
    if dry_run {
        "would remove"
    } else {
        "removed"
    }
}

/// What killed or removed processes left: worktrees of runs whose branch is gone, git's
/// entries of pooled worktrees whose folders went, temporary object files and ref locks.
/// Removed (unless
/// `dry_run`); the worktrees returned, for the report.
fn leftovers(
    ctx: &mut Ctx,
    dry_run: bool,
    repo: &Repo,
    (paths, listed): (&Paths, &[std::path::PathBuf]),
    runs: &[(RunId, crate::git::Oid)],
) -> CliResult<Vec<std::path::PathBuf>> {
    let mut orphans = orphans(paths.worktrees_dir(), runs);
    let pool = paths.pool_dir();
    orphans.extend(
        listed
            .iter()
            .filter(|p| p.starts_with(&pool) && !p.exists())
            .cloned(),
    );
    // Left by a git machine (or a step's git) killed while writing an object.
    let temps = repo.stale_temp_objects(STALE_TEMP_OBJECT);
    // Left by a git machine killed while creating a run's branch: that run never existed.
    let ref_locks = repo.stale_ref_locks(&store::MACHINE_REF_FOLDERS, STALE_TEMP_OBJECT);
    if !dry_run {
        for path in &orphans {
            repo.worktree_remove(path)?;
        }
        for path in temps.iter().chain(&ref_locks) {
            std::fs::remove_file(path)?;
        }
    }
    if !temps.is_empty() {
        ctx.ui.out(&format!(
            "{} {} temporary object file(s) a killed process left",
            verb(dry_run),
            temps.len()
        ));
    }
    if !ref_locks.is_empty() {
        ctx.ui.out(&format!(
            "{} {} ref lock file(s) a killed process left",
            verb(dry_run),
            ref_locks.len()
        ));
    }
    Ok(orphans)
}

/// Why a run's files stay.
#[derive(PartialEq, Eq)]
enum Keep {
    /// It has no worktree or logs to remove.
    Nothing,
    Running,
    Resumable(Status),
    Young,
    Edited,
}

impl Keep {
    fn say(&self) -> String {
        match self {
            Keep::Nothing => String::new(),
            Keep::Running => "it is running".into(),
            Keep::Resumable(s) => format!("it is {} and can be resumed", word(*s)),
            Keep::Young => "it finished too recently for --older-than".into(),
            Keep::Edited => "its worktree holds uncommitted changes (`git machine rm --force` keeps them as an attempt)".into(),
        }
    }
}

/// `None` when the run's worktree and logs can go: it is completed, not running, old enough,
/// and its worktree holds nothing uncommitted.
fn kept(
    repo: &Repo,
    paths: &Paths,
    (id, tip): (&RunId, crate::git::Oid),
    listed: &[std::path::PathBuf],
    older_than: Option<Duration>,
) -> CliResult<Option<Keep>> {
    let wt = paths.worktree(id);
    let logs = paths.log(id, "x").parent().map(Path::to_path_buf);
    let gone = !wt.exists() && !listed.contains(&wt);
    if gone && paths.member_worktrees(id).is_empty() && !logs.is_some_and(|l| l.exists()) {
        return Ok(Some(Keep::Nothing));
    }
    if lock::live_holder(&paths.lock(id)).is_some() {
        return Ok(Some(Keep::Running));
    }
    let info = store::read_run_at(repo, id, tip)?;
    if info.state.status != Status::Completed {
        return Ok(Some(Keep::Resumable(info.state.status)));
    }
    if let Some(age) = older_than {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if now - repo.commit_time(tip)? < age.as_secs() as i64 {
            return Ok(Some(Keep::Young));
        }
    }
    let w = Worktree::new(wt);
    if w.is_valid() && w.is_dirty()? {
        return Ok(Some(Keep::Edited));
    }
    Ok(None)
}

/// Remove a finished run's worktrees, step logs and its empty session folder.
fn remove(repo: &Repo, paths: &Paths, id: &RunId) -> CliResult {
    repo.worktree_remove(&paths.worktree(id))?;
    for member in paths.member_worktrees(id) {
        repo.worktree_remove(&member)?;
    }
    if let Some(logs) = paths.log(id, "x").parent() {
        let _ = std::fs::remove_dir_all(logs);
    }
    if let Some(sessions) = paths.inflight_session(id, "x").parent() {
        // Only an empty one: a session in flight is never thrown away.
        let _ = std::fs::remove_dir(sessions);
    }
    Ok(())
}

/// Worktrees and logs in the cache whose run branch is gone (deleted without `rm`).
fn orphans(dir: &Path, runs: &[(RunId, crate::git::Oid)]) -> Vec<std::path::PathBuf> {
    let known: Vec<&str> = runs.iter().map(|(id, _)| id.as_str()).collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let run = name
                .split("--")
                .next()
                .unwrap_or("")
                .trim_end_matches(".logs");
            looks_like_run(run) && !known.contains(&run)
        })
        .map(|e| e.path())
        .collect()
}

/// Whether `name` has the shape of a run id (`YYMMDD-HHMMSS-xxx`): nothing else in the folder
/// is git machine's to remove.
fn looks_like_run(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    matches!(parts.as_slice(), [d, t, tail]
        if d.len() == 6 && t.len() == 6 && tail.len() == 3
            && d.chars().chain(t.chars()).all(|c| c.is_ascii_digit())
            && tail.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The key of a pooled worktree in [`sizes_by_entry`]: its path under `dir`.
fn pool_key(dir: &Path, entry: &Path) -> String {
    entry
        .strip_prefix(dir)
        .unwrap_or(entry)
        .to_string_lossy()
        .into_owned()
}

/// Bytes of the files under `dir`, by the top-level entry of `dir` they are in (by the entry
/// of the pool, for pooled worktrees).
fn sizes_by_entry(dir: &Path) -> std::collections::BTreeMap<String, u64> {
    let mut sizes = std::collections::BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        let Some(bytes) = entry
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
        else {
            continue;
        };
        let Some(rel) = entry.path().strip_prefix(dir).ok() else {
            continue;
        };
        let mut parts = rel.iter();
        let mut key = PathBuf::from(parts.next().unwrap_or_default());
        if key == Path::new(POOL) {
            key.push(parts.next().unwrap_or_default());
        }
        *sizes.entry(key.to_string_lossy().into_owned()).or_insert(0) += bytes;
    }
    sizes
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn report(
    ctx: &mut Ctx,
    dry_run: bool,
    removed: &[String],
    orphans: &[std::path::PathBuf],
    dir: &Path,
    (before, freed): (u64, u64),
) {
    let verb = if dry_run { "would remove" } else { "removed" };
    for id in removed {
        ctx.ui
            .out(&format!("{verb} the worktree and logs of run {id}"));
    }
    for path in orphans {
        ctx.ui.out(&format!(
            "{verb} {} (its run's branch is gone)",
            path.display()
        ));
    }
    let after = before.saturating_sub(freed);
    ctx.ui.out(&format!(
        "the worktree cache {} holds {}{}",
        dir.display(),
        mib(if dry_run { before } else { after }),
        match (dry_run, freed) {
            (_, 0) => String::new(),
            (true, _) => format!(" ({} would be freed)", mib(freed)),
            (false, _) => format!(" (was {})", mib(before)),
        }
    ));
}

/// A state a run can be resumed from, as `status` names it.
fn word(status: Status) -> &'static str {
    match status {
        Status::Running => "interrupted",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Paused => "paused",
        Status::Conflict => "stopped on a conflict",
    }
}
