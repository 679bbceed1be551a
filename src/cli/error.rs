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

/// A mistake on the command line as clap words it, in git machine's style: what is wrong
/// (with any lines clap indents under it), then how to fix it — clap's tip if it has one,
/// else the usage line and where the whole help is.
pub fn from_clap(text: &str, sub: Option<&str>) -> CliError {
    let mut message = String::new();
    let (mut tip, mut usage) = (None, None);
    let mut more = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(what) = line.strip_prefix("error: ") {
            message = what.trim_end_matches(':').to_string();
        } else if let Some(t) = line.trim_start().strip_prefix("tip: ") {
            tip = Some(t.to_string());
        } else if let Some(u) = line.strip_prefix("Usage: ") {
            usage = Some(u.to_string());
        } else if line.starts_with("  ") {
            more.push(line.trim().to_string());
        }
    }
    if !more.is_empty() {
        message = format!("{message}: {}", more.join(" "));
    }
    // `git machine run <WORKFLOW>`: the subcommand is the word after `git machine`.
    let sub = usage
        .as_deref()
        .and_then(|u| u.split_whitespace().nth(2))
        .filter(|w| !w.starts_with(['[', '<', '-']))
        .or(sub);
    let help = match sub {
        Some(sub) => format!("`git machine help {sub}` says more"),
        None => "`git machine help` says more".to_string(),
    };
    let hint = match (tip, usage) {
        (Some(tip), _) => tip,
        (None, Some(usage)) => format!("usage: {usage}; {help}"),
        (None, None) => help,
    };
    CliError::usage(message).with_hint(hint)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clap_error_reads_as_git_machine_errors_do() {
        let missing = "error: the following required arguments were not provided:\n  <WORKFLOW>\n\nUsage: git machine run <WORKFLOW>\n\nFor more information, try '--help'.\n";
        let e = from_clap(missing, None);
        assert_eq!(e.code, EXIT_USAGE);
        assert_eq!(
            e.message,
            "the following required arguments were not provided: <WORKFLOW>"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("usage: git machine run <WORKFLOW>; `git machine help run` says more")
        );
        let tip = "error: invalid value 'tcsh' for '<SHELL>'\n  [possible values: bash, zsh, fish]\n\n  tip: a similar value exists: 'zsh'\n\nFor more information, try '--help'.\n";
        let e = from_clap(tip, Some("completions"));
        assert_eq!(
            e.message,
            "invalid value 'tcsh' for '<SHELL>': [possible values: bash, zsh, fish]"
        );
        assert_eq!(e.hint.as_deref(), Some("a similar value exists: 'zsh'"));
        let value = "error: invalid value 'x' for '--var <NAME=VALUE>': `x` is not NAME=VALUE\n\nFor more information, try '--help'.\n";
        assert_eq!(
            from_clap(value, Some("run")).hint.as_deref(),
            Some("`git machine help run` says more")
        );
        let top = "error: unexpected argument '--bogus' found\n\nUsage: git machine [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            from_clap(top, None).hint.as_deref(),
            Some("usage: git machine [OPTIONS] <COMMAND>; `git machine help` says more")
        );
    }
}
