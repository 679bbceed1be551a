//! The errors a command ends with, and how they are shown: `error:`, `caused by:`, `hint:`,
//! with the exit codes documented in the man page. Layers below the command line return
//! [`crate::error::Error`], whose kind is mapped to an exit code here and nowhere else.

use crate::error::{Error, Kind};
use crate::git::GitError;
use crate::store::lock::LockError;
use crate::store::StoreError;
use crate::workflow::{BindError, WorkflowError};

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
    /// More errors found in the same pass, rendered after this one.
    pub more: Vec<CliError>,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
            causes: Vec::new(),
            hint: None,
            more: Vec::new(),
        }
    }
    /// Bad input: nothing was created.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::new(EXIT_USAGE, message)
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
        for more in &self.more {
            more.render(ui);
        }
    }
}

/// The exit code of each kind of error.
pub fn exit_code(kind: Kind) -> i32 {
    match kind {
        Kind::Usage => EXIT_USAGE,
        Kind::Failed => EXIT_FAILED,
        Kind::Refused => EXIT_REFUSED,
        Kind::Bug => EXIT_BUG,
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> CliError {
        CliError {
            code: exit_code(e.kind),
            message: e.message,
            causes: e.causes,
            hint: e.hint,
            more: e.more.into_iter().map(CliError::from).collect(),
        }
    }
}

impl From<WorkflowError> for CliError {
    fn from(e: WorkflowError) -> CliError {
        Error::from(e).into()
    }
}

impl From<BindError> for CliError {
    fn from(e: BindError) -> CliError {
        WorkflowError::from(e).into()
    }
}

impl From<GitError> for CliError {
    fn from(e: GitError) -> CliError {
        Error::from(e).into()
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        Error::from(e).into()
    }
}

impl From<LockError> for CliError {
    fn from(e: LockError) -> CliError {
        Error::from(e).into()
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        Error::from(e).into()
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;
