//! Who is executing a run: `<common git dir>/machine/locks/<run-id>`.
//!
//! The lock is a small TOML file created with `O_EXCL`. It names the holder (pid, host, the
//! process's start time so a reused pid is not mistaken for the holder) and the process group of
//! the step it is running. A lock whose holder is gone is taken over; before that, the dead
//! holder's step process group is killed, so an orphaned agent cannot keep writing into the
//! worktree while the run resumes.

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
    /// Process group of the step process the holder is running, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_pgid: Option<i32>,
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
}

pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn proc_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing paren are plain.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
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
    match (holder.proc_start, proc_start(holder.pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

/// Read the lock of a run, if any.
pub fn read(path: &Path) -> Option<Holder> {
    let text = fs::read_to_string(path).ok()?;
    toml::from_str(&text).ok()
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
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut f) => {
                    f.write_all(crate::store::to_toml(&holder).as_bytes())
                        .map_err(io)?;
                    return Ok(RunLock {
                        path: path.to_path_buf(),
                        holder,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match read(path) {
                        Some(old) if holder_alive(&old) => {
                            return Err(LockError::Held {
                                run: run.to_string(),
                                holder: old,
                            })
                        }
                        old => {
                            if let Some(pgid) = old.and_then(|h| h.step_pgid) {
                                kill_group(pgid);
                            }
                            // Move the stale lock aside atomically so only one taker wins.
                            let aside = path.with_extension(format!("stale-{pid}"));
                            if fs::rename(path, &aside).is_ok() {
                                let _ = fs::remove_file(&aside);
                            }
                        }
                    }
                }
                Err(e) => return Err(io(e)),
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

    /// Record the process group of the step now running (or none).
    pub fn set_step_pgid(&mut self, pgid: Option<i32>) {
        self.holder.step_pgid = pgid;
        let tmp = self.path.with_extension("tmp");
        let written = fs::write(&tmp, crate::store::to_toml(&self.holder))
            .and_then(|()| fs::rename(&tmp, &self.path));
        if written.is_err() {
            // Only the orphan clean-up of a later takeover depends on this; the lock still holds.
            let _ = fs::remove_file(&tmp);
        }
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

/// Ask the holder to stop: `SIGTERM` (it stops its step and leaves the run resumable), or with
/// `now`, `SIGKILL` to it and its step's process group.
pub fn signal_holder(holder: &Holder, now: bool) -> std::io::Result<()> {
    signal_holder_with(holder, if now { libc::SIGKILL } else { libc::SIGTERM })?;
    if now {
        if let Some(pgid) = holder.step_pgid {
            kill_group(pgid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod holder_tests {
    use super::*;

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
}
