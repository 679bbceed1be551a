//! The errors a command ends with, and how they are shown: `error:`, `caused by:`, `hint:`,
//! with the exit codes documented in the man page.

use crate::git::GitError;
use crate::store::lock::LockError;
use crate::store::StoreError;
use crate::workflow::WorkflowError;

/// Exit codes.
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_REFUSED: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;
pub const EXIT_BUG: i32 = 101;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
    pub causes: Vec<String>,
    pub hint: Option<String>,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
        }
    }
    /// Bad input: nothing was created.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(EXIT_USAGE, message)
    }
    pub fn refused(message: impl Into<String>) -> CliError {
        CliError::new(EXIT_REFUSED, message)
    }
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::new(EXIT_FAILED, message)
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }
    pub fn caused_by(mut self, cause: impl Into<String>) -> CliError {
        self.causes.push(cause.into());
        self
    }

    pub fn render(&self, ui: &mut crate::ui::Ui) {
        let label = ui.red("error:");
        ui.note(&format!("{} {}", ui.bold(&label), self.message));
        for c in &self.causes {
            ui.note(&format!("caused by: {c}"));
        }
        if let Some(h) = &self.hint {
            let label = ui.cyan("hint:");
            ui.note(&format!("{label} {h}"));
        }
    }
}

impl From<WorkflowError> for CliError {
    fn from(e: WorkflowError) -> CliError {
        let mut err = CliError::usage(format!("invalid workflow {e}"));
        err.hint = e.hint.clone();
        err
    }
}

impl From<GitError> for CliError {
    fn from(e: GitError) -> CliError {
        match &e {
            GitError::RefMoved { name, .. } => CliError::refused(e.to_string()).with_hint(format!(
                "something else changed {name} while git machine was working; look at `git reflog {name}` and try again"
            )),
            GitError::Cli { stderr, .. }
                if ["No space left on device", "File too large", "Disk quota exceeded"]
                    .iter()
                    .any(|m| stderr.contains(m)) =>
            {
                disk_full(e.to_string())
            }
            GitError::Lib(err) if err.message().contains("No space left") => disk_full(e.to_string()),
            GitError::NotARepo(_) => CliError::usage(e.to_string())
                .with_hint("run git machine inside a git repository, or try `git machine demo`"),
            _ => CliError::new(EXIT_BUG, e.to_string()),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        match e {
            StoreError::Git(g) => g.into(),
            other => CliError::failed(other.to_string()),
        }
    }
}

impl From<LockError> for CliError {
    fn from(e: LockError) -> CliError {
        match &e {
            LockError::Held { holder, .. } => CliError::refused(e.to_string()).with_hint(format!(
                "wait for it to finish, or stop it (kill {}); a lock left by a dead process is taken over automatically",
                holder.pid
            )),
            LockError::Io { .. } => CliError::new(EXIT_BUG, e.to_string()),
        }
    }
}

/// Whether an error means the disk (or a file-size or quota limit) is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT)
    )
}

fn disk_full(detail: String) -> CliError {
    CliError::failed(format!("out of disk space: {detail}")).with_hint(
        "free some space, then `git machine resume` continues the run from its last step commit",
    )
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        if is_disk_full(&e) {
            return disk_full(e.to_string());
        }
        CliError::new(EXIT_BUG, e.to_string())
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
