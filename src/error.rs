//! The error every layer below the command line ends with: what happened, what kind of
//! trouble it is, and how to fix it. No exit codes here: `cli/` maps [`Kind`] to one at the
//! edge, so the runner, store and git layers never know how the process ends.

use crate::git::GitError;
use crate::store::lock::LockError;
use crate::store::StoreError;
use crate::workflow::WorkflowError;

/// What kind of trouble an error is; the command line turns it into an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The user asked for something that cannot be done as asked; nothing was created.
    Usage,
    /// The work could not be done (a step failed, the disk is full, a run is inconsistent).
    Failed,
    /// Refused: another process holds the run, or a ref moved under us.
    Refused,
    /// A bug in git machine.
    Bug,
}

#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
    /// More errors found in the same pass, reported after this one.
    pub more: Vec<Error>,
}

pub type Result<T = (), E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            more: Vec::new(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }
    pub fn failed(message: impl Into<String>) -> Error {
        Error::new(Kind::Failed, message)
    }
    pub fn refused(message: impl Into<String>) -> Error {
        Error::new(Kind::Refused, message)
    }
    pub fn bug(message: impl Into<String>) -> Error {
        Error::new(Kind::Bug, message)
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<WorkflowError> for Error {
    fn from(e: WorkflowError) -> Error {
        // A mistake in a file names the file; one in how a workflow was asked for does not.
        let mut err = if e.origin.is_empty() {
            Error::usage(e.to_string())
        } else {
            Error::usage(format!("invalid workflow {e}"))
        };
        err.hint = e.hint.clone();
        err.more = e.also.iter().cloned().map(Error::from).collect();
        err
    }
}

impl From<GitError> for Error {
    fn from(e: GitError) -> Error {
        match &e {
            GitError::RefMoved { name, .. } => Error::refused(e.to_string()).with_hint(format!(
                "something else changed {name} while git machine was working; look at `git reflog {name}` and try again"
            )),
            GitError::Cli { stderr, .. } if says_disk_full(stderr) => disk_full(e.to_string()),
            GitError::Lib(err) if says_disk_full(err.message()) => disk_full(e.to_string()),
            // The user's LFS filter could not give a file's content (not fetched, offline).
            GitError::Cli { stderr, .. } if stderr.contains("smudge filter lfs failed") => {
                Error::failed(e.to_string()).with_hint(
                    "get the LFS files first (`git lfs fetch`), or set GIT_LFS_SKIP_SMUDGE=1 to work on their pointers; then `git machine resume`",
                )
            }
            GitError::WorktreeGone(_) => Error::failed(e.to_string()).with_hint(
                "a step may have removed it; `git machine resume` makes the worktree again",
            ),
            GitError::NotARepo(_) => Error::usage(e.to_string())
                .with_hint("run git machine inside a git repository, or try `git machine demo`"),
            _ => Error::bug(e.to_string()),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::Git(g) => g.into(),
            other => Error::failed(other.to_string()),
        }
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Error {
        match &e {
            LockError::Held { holder, .. } => Error::refused(e.to_string()).with_hint(format!(
                "wait for it to finish, or stop it (kill {}); a lock left by a dead process is taken over automatically",
                holder.pid
            )),
            LockError::Io { .. } => Error::bug(e.to_string()),
        }
    }
}

/// Whether git's or libgit2's message says the disk (or a file-size or quota limit) is full.
fn says_disk_full(message: &str) -> bool {
    [
        "No space left on device",
        "File too large",
        "Disk quota exceeded",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Whether an error means the disk (or a file-size or quota limit) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT)
    )
}

fn disk_full(detail: String) -> Error {
    Error::failed(format!("out of disk space: {detail}")).with_hint(
        "free some space, then `git machine resume` continues the run from its last step commit",
    )
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        if is_disk_full(&e) {
            return disk_full(e.to_string());
        }
        Error::bug(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a pack written under a file-size limit failed with libgit2's "File too
    /// large", which was taken for a bug (exit 101) instead of a full disk.
    #[test]
    fn a_full_disk_in_libgit2_or_git_is_a_failure_with_a_hint() {
        let said = [
            "could not write to '…/pack_git2_x': File too large",
            "failed to write: No space left on device",
            "Disk quota exceeded",
        ];
        for message in said {
            let lib: Error = GitError::Lib(git2::Error::from_str(message)).into();
            let cli: Error = GitError::Cli {
                args: "add -A".to_string(),
                stderr: message.to_string(),
            }
            .into();
            for e in [lib, cli] {
                assert_eq!(e.kind, Kind::Failed, "{message}");
                assert!(e.message.starts_with("out of disk space"), "{}", e.message);
                assert!(e.hint.is_some_and(|h| h.contains("resume")), "{message}");
            }
        }
        let other: Error = GitError::Lib(git2::Error::from_str("object not found")).into();
        assert_eq!(other.kind, Kind::Bug);
    }
}
