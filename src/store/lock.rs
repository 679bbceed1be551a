//! Who is executing a run: `<common git dir>/machine/locks/<run-id>`.
//!
//! The lock is a small TOML file. It names the holder (pid, host, the process's start time so
//! a reused pid is not mistaken for the holder) and the process group of the step it is
//! running. A lock whose holder is gone is taken over; before that, the dead holder's step
//! process group is killed, so an orphaned agent cannot keep writing into the worktree while
//! the run resumes.
//!
//! Races (tests/cli/races.rs): the file appears with its whole content at once — written
//! beside it, then hard-linked into place, which fails if a lock exists — so no one ever reads
//! a lock being written and takes it for a stale one. A stale lock is removed only under an
//! exclusive `flock` of the locks folder, after reading it again there: two processes that
//! both found the same dead holder cannot remove each other's fresh lock.
//!
//! The step's process group changes twice a step. It is written in place, through the lock's
//! own open file, as the last line padded to a fixed width: the file keeps its length and
//! every byte of the holder, and no file is created a step (on some disks a new file costs
//! half a millisecond). A read that meets the rewrite may see half of each group and not
//! parse; it is read again a moment later. Only a process that has found the holder dead acts
//! on the group, and a dead holder writes nothing more.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// Start time of the holder process (Linux: field 22 of /proc/<pid>/stat), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_start: Option<u64>,
    pub since: String,
    /// Process group of the step process the holder is running, if any. Written by
    /// [`render`] as the last line, `0` for none.
    #[serde(default, skip_serializing, deserialize_with = "pgid_or_none")]
    pub step_pgid: Option<i32>,
}

/// The width the step's process group is padded to: any `i32` fits.
const PGID_WIDTH: usize = 11;

/// A holder as the lock file holds it: the step's group last, padded, so that a new group
/// rewrites the file to the same length.
fn render(holder: &Holder) -> String {
    let pgid = holder.step_pgid.unwrap_or(0);
    format!(
        "{}step_pgid = {pgid:<PGID_WIDTH$}\n",
        crate::store::to_toml(holder)
    )
}

fn pgid_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let pgid = i32::deserialize(d)?;
    Ok((pgid != 0).then_some(pgid))
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("run {run} is being executed by pid {} on {} since {}", .holder.pid, .holder.host, .holder.since)]
    Held { run: String, holder: Holder },
    #[error("cannot write lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    holder: Holder,
    /// The lock file, open: the step's group is written through it, into this lock's own
    /// file even if another process has replaced the file at `path`.
    file: fs::File,
}

pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn proc_start(pid: u32) -> Option<u64> {
    proc_stat(pid).and_then(|(_, start)| start)
}

/// Field 3 (the state letter) and field 22 (the start time) of `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, Option<u64>)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing paren are plain.
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18).and_then(|s| s.parse().ok())))
}

/// Whether the process that wrote `holder` still runs.
pub fn holder_alive(holder: &Holder) -> bool {
    if holder.host != host_name() {
        // Another machine's lock (a shared git dir): we cannot tell, so respect it.
        return true;
    }
    let pid = holder.pid as libc::pid_t;
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    let stat = proc_stat(holder.pid);
    if stat.is_some_and(|(state, _)| matches!(state, 'Z' | 'X')) {
        // Ended, waiting for its parent to read its exit status: it holds nothing any more
        // (`stop` waited its whole grace for a holder that had exited).
        return false;
    }
    match (holder.proc_start, stat.and_then(|(_, start)| start)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Read the lock of a run, if any. A lock that does not parse is read once more a moment
/// later: a read that met the holder rewriting its step's group (one `pwrite` of a line of
/// the same length) may have seen half of each.
pub fn read(path: &Path) -> Option<Holder> {
    let text = fs::read_to_string(path).ok()?;
    toml::from_str(&text).ok().or_else(|| {
        std::thread::sleep(std::time::Duration::from_millis(2));
        toml::from_str(&fs::read_to_string(path).ok()?).ok()
    })
}

impl RunLock {
    /// Take the lock at `path` for this process, taking over one left by a dead process.
    pub fn acquire(path: &Path, run: &str) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let pid = std::process::id();
        let holder = Holder {
            pid,
            host: host_name(),
            proc_start: proc_start(pid),
            since: crate::store::now_rfc3339(),
            step_pgid: None,
        };
        for _ in 0..3 {
            if let Some(file) = create(path, &holder).map_err(io)? {
                return Ok(RunLock {
                    path: path.to_path_buf(),
                    holder,
                    file,
                });
            }
            match read(path) {
                Some(old) if holder_alive(&old) => {
                    return Err(LockError::Held {
                        run: run.to_string(),
                        holder: old,
                    })
                }
                old => remove_stale(path, old.as_ref()).map_err(io)?,
            }
        }
        match read(path) {
            Some(old) => Err(LockError::Held {
                run: run.to_string(),
                holder: old,
            }),
            None => Err(io(std::io::Error::other("lock keeps changing"))),
        }
    }

    /// Record the process group of the step now running (or none), in place.
    pub fn set_step_pgid(&mut self, pgid: Option<i32>) {
        use std::os::unix::fs::FileExt;
        self.holder.step_pgid = pgid;
        // Only the orphan clean-up of a later takeover depends on this; the lock holds anyway.
        let _ = self.file.write_all_at(render(&self.holder).as_bytes(), 0);
    }
}

/// Create the lock file at `path` holding `holder`, whole: written beside it, then linked
/// into place. The file, open, or `None` when a lock is there already.
fn create(path: &Path, holder: &Holder) -> std::io::Result<Option<fs::File>> {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Unique to this process and call, so two threads taking locks never share one.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    sweep_unlinked(path);
    let tmp = path.with_extension(format!("new-{}-{n}", holder.pid));
    let mut f = fs::File::create(&tmp)?;
    let written = f
        .write_all(render(holder).as_bytes())
        .and_then(|()| f.sync_all());
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove what a process killed between writing a lock beside its place and linking it in
/// left (`<lock>.new-<pid>-<n>`, its pid gone).
fn sweep_unlinked(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.new-", name.to_string_lossy());
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Remove the lock at `path` if it still is `seen` (a dead holder's, or unreadable), under an
/// exclusive `flock` of its folder; the dead holder's step group is killed first.
fn remove_stale(path: &Path, seen: Option<&Holder>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = path.parent().unwrap_or(Path::new("."));
    let guard = fs::File::open(dir)?;
    // SAFETY: flock on a descriptor we own; released when `guard` is closed.
    if unsafe { libc::flock(guard.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let now = read(path);
    if now.as_ref() != seen || now.as_ref().is_some_and(holder_alive) {
        // Taken over by someone else meanwhile (or the holder came back): look again.
        return Ok(());
    }
    if let Some(pgid) = seen.and_then(|h| h.step_pgid) {
        kill_group(pgid);
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if read(&self.path).is_some_and(|h| h.pid == self.holder.pid) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// SIGKILL a whole process group if it still exists.
pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: killpg on a positive group id only sends a signal.
        unsafe {
            libc::killpg(pgid, libc::SIGKILL);
        }
    }
}

/// The live holder of a run's lock: the process executing it, if any.
pub fn live_holder(path: &Path) -> Option<Holder> {
    read(path).filter(holder_alive)
}

/// Send `signal` to the process that holds the lock. A holder on another host (a shared git
/// dir) is refused: its pid means nothing here, and could name an unrelated process.
pub fn signal_holder_with(holder: &Holder, signal: i32) -> std::io::Result<()> {
    if holder.host != host_name() {
        return Err(std::io::Error::other(format!(
            "it runs on host {}; stop it there",
            holder.host
        )));
    }
    // SAFETY: kill only sends a signal to the process that holds the lock.
    if unsafe { libc::kill(holder.pid as libc::pid_t, signal) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Ask the holder of the lock at `path` to stop: `SIGTERM` (it stops its step and leaves the
/// run resumable), or with `now`, `SIGKILL` to it and then to the process group of its step.
/// The group is read once the holder is dead (or after 2 s, if it is slow to die): it writes
/// no more, so the group is its last (one it started after `holder` was read included).
pub fn signal_holder(path: &Path, holder: &Holder, now: bool) -> std::io::Result<()> {
    use std::time::{Duration, Instant};
    signal_holder_with(holder, if now { libc::SIGKILL } else { libc::SIGTERM })?;
    if now {
        let deadline = Instant::now() + Duration::from_secs(2);
        while holder_alive(holder) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let last = read(path).filter(|h| h.pid == holder.pid && h.host == holder.host);
        if let Some(pgid) = last.and_then(|h| h.step_pgid) {
            kill_group(pgid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod holder_tests {
    use super::*;

    fn dead_holder() -> Holder {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        child.wait().expect("reap true");
        Holder {
            pid,
            host: host_name(),
            proc_start: Some(1),
            since: "2026-11-30T00:00:00Z".into(),
            step_pgid: None,
        }
    }

    /// Regression: a holder that had exited but was not yet reaped by its parent (a zombie)
    /// counted as alive, and `stop` waited 30 s for it.
    #[test]
    fn a_holder_that_exited_unreaped_is_not_alive() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        let holder = Holder {
            pid,
            host: host_name(),
            proc_start: proc_start(pid),
            since: "2026-11-30T00:00:00Z".into(),
            step_pgid: None,
        };
        let zombie = (0..500).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            proc_stat(pid).is_some_and(|(s, _)| s == 'Z')
        });
        assert!(zombie, "the child never ended");
        assert!(!holder_alive(&holder));
        child.wait().expect("reap");
    }

    /// Regression: the lock file was created empty and written after, and a racer reading it
    /// in between took it for a stale lock and removed it: two holders at once.
    #[test]
    fn of_many_threads_taking_one_lock_at_once_exactly_one_gets_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        for round in 0..50 {
            let path = dir.path().join(format!("run-{round}"));
            let barrier = std::sync::Barrier::new(8);
            let won = std::thread::scope(|s| {
                let takers: Vec<_> = (0..8)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            // Held locks are kept until every thread has tried.
                            RunLock::acquire(&path, "run").ok().map(std::mem::forget)
                        })
                    })
                    .collect();
                takers
                    .into_iter()
                    .map(|t| t.join().expect("thread"))
                    .filter(Option::is_some)
                    .count()
            });
            assert_eq!(won, 1, "round {round}");
            let left: Vec<_> = fs::read_dir(dir.path())
                .expect("read dir")
                .flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().contains('.'))
                .collect();
            assert!(left.is_empty(), "temp files left: {left:?}");
        }
    }

    /// Regression: two takers that both found the same dead holder each moved "the" lock
    /// aside; the second moved away the fresh lock the first had just made.
    #[test]
    fn a_stale_lock_already_taken_over_is_not_removed_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run");
        let dead = dead_holder();
        fs::write(&path, crate::store::to_toml(&dead)).expect("stale lock");
        let first = RunLock::acquire(&path, "run").expect("the stale lock is taken over");
        // A second taker that read the dead holder before the first took over.
        remove_stale(&path, Some(&dead)).expect("remove_stale");
        assert_eq!(
            read(&path),
            Some(first.holder.clone()),
            "the fresh lock was removed"
        );
        assert!(matches!(
            RunLock::acquire(&path, "run"),
            Err(LockError::Held { .. })
        ));
    }

    /// The step's group is written in place: the lock keeps its length, reads whole at every
    /// step, and says "none" again between steps.
    #[test]
    fn the_steps_group_is_rewritten_in_place_at_one_length() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run");
        let mut lock = RunLock::acquire(&path, "run").expect("lock");
        let len = || fs::metadata(&path).expect("lock file").len();
        let first = len();
        for pgid in [Some(7), Some(i32::MAX), None, Some(123_456)] {
            lock.set_step_pgid(pgid);
            assert_eq!(len(), first, "after {pgid:?}");
            let read = read(&path).expect("a whole lock");
            assert_eq!(read.step_pgid, pgid);
            assert_eq!(read.pid, std::process::id());
        }
        let names: Vec<_> = fs::read_dir(dir.path()).expect("dir").flatten().collect();
        assert_eq!(names.len(), 1, "no file beside the lock");
    }

    /// A lock that was replaced behind its holder's back (taken over as stale) is not
    /// written over: the holder writes into its own file.
    #[test]
    fn a_replaced_lock_is_not_written_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run");
        let mut lock = RunLock::acquire(&path, "run").expect("lock");
        fs::remove_file(&path).expect("taken away");
        let other = "pid = 1\nhost = \"elsewhere\"\nsince = \"2026-11-30T00:00:00Z\"\n";
        fs::write(&path, other).expect("another holder's lock");
        lock.set_step_pgid(Some(4242));
        assert_eq!(fs::read_to_string(&path).expect("lock"), other);
        std::mem::forget(lock);
    }

    /// Locks written before the group was padded (a group or none, anywhere) still read.
    #[test]
    fn an_older_lock_still_reads() {
        let head = "pid = 9\nhost = \"h\"\nsince = \"2026-11-30T00:00:00Z\"\n";
        let with: Holder = toml::from_str(&format!("{head}step_pgid = 77\n")).expect("toml");
        assert_eq!(with.step_pgid, Some(77));
        let without: Holder = toml::from_str(head).expect("toml");
        assert_eq!(without.step_pgid, None);
    }

    /// `stop --now` kills the group the lock names once the holder is dead, not the one it
    /// named when it was read: the holder may have started a step since.
    #[test]
    fn stopping_now_kills_the_group_the_dead_holder_named_last() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run");
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .expect("spawn sleep")
        };
        let (mut holder_process, mut step) = (spawn(), spawn());
        let read_before = Holder {
            pid: holder_process.id(),
            host: host_name(),
            proc_start: proc_start(holder_process.id()),
            since: "2026-11-30T00:00:00Z".into(),
            step_pgid: None,
        };
        let last = Holder {
            step_pgid: Some(step.id() as i32),
            ..read_before.clone()
        };
        fs::write(&path, render(&last)).expect("lock");
        signal_holder(&path, &read_before, true).expect("signalled");
        let ended = |child: &mut std::process::Child| {
            (0..500).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                child.try_wait().expect("try_wait").is_some()
            })
        };
        assert!(ended(&mut holder_process), "the holder was killed");
        assert!(ended(&mut step), "the step's group was killed");
    }

    #[test]
    fn a_holder_on_another_host_is_never_signalled() {
        let holder = Holder {
            pid: std::process::id(),
            host: format!("{}-elsewhere", host_name()),
            proc_start: None,
            since: "2026-11-30T00:00:00Z".into(),
            step_pgid: None,
        };
        let err = signal_holder_with(&holder, 0).expect_err("another host");
        assert!(err.to_string().contains("-elsewhere"), "{err}");
    }

    /// Regression: a process killed between writing its lock beside the lock's place and
    /// linking it in left `<lock>.new-<pid>-<n>` for ever.
    #[test]
    fn a_lock_written_by_a_process_killed_before_linking_it_is_swept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        let stale = dir.path().join(format!("run.new-{dead}-0"));
        fs::write(&stale, "pid = 1\n").expect("stale temp");
        let live = dir.path().join(format!("run.new-{}-0", std::process::id()));
        fs::write(&live, "").expect("a live writer's temp");
        sweep_unlinked(&path);
        assert!(!stale.exists(), "the dead writer's temp was swept");
        assert!(live.exists(), "a live writer's temp is its own");
    }

    /// A holder that ended between being read and being signalled gives ESRCH, which `stop`
    /// takes for "not running" (seen racing `stop` against a finishing `resume`).
    #[test]
    fn signalling_a_holder_that_ended_says_no_such_process() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let holder = Holder {
            pid,
            host: host_name(),
            proc_start: None,
            since: String::new(),
            step_pgid: None,
        };
        let e = signal_holder(Path::new("/nonexistent/lock"), &holder, false).expect_err("gone");
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    }
}
