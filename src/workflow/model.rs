//! The validated workflow: what the runner executes.
//!
//! A [`Workflow`] is produced only by [`super::parse`], so every value in it has passed the
//! checks of the file format (known keys, types, unique ids, known engines, valid durations,
//! known placeholders). `[defaults]` are already merged into each step. Strings that may hold
//! placeholders (`run`, `prompt`, `outputs`, `env` values, `args`) are kept as written; they are
//! expanded per run by [`Workflow::resolve`].

use std::collections::BTreeMap;
use std::time::Duration;

/// Names of the engines a step may use, in the order `git machine engines` lists them.
pub const ENGINES: &[&str] = &[
    "command", "claude", "codex", "gemini", "opencode", "cursor", "aider",
];

/// Placeholders every workflow may use without declaring them.
pub const BUILTIN_PLACEHOLDERS: &[&str] =
    &["run_id", "workflow", "date", "base", "track", "conditions"];

#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// Where it came from, for messages: a path as the user gave it or `builtin:<name>`.
    pub origin: String,
    /// The file's text, as read: stored in the run so a resume runs exactly what was started.
    pub source: String,
    pub vars: Vec<VarDecl>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VarDecl {
    pub name: String,
    pub help: String,
    /// `None` means the variable is required.
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    Read,
    Edit,
    Full,
}

impl Permissions {
    pub fn as_str(self) -> &'static str {
        match self {
            Permissions::Read => "read",
            Permissions::Edit => "edit",
            Permissions::Full => "full",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within the workflow; lowercase letters, digits and '-'.
    pub id: String,
    /// Engines to try in order (fallback); never empty. One of [`ENGINES`] each.
    pub engines: Vec<String>,
    /// argv for the `command` engine (templates).
    pub run: Vec<String>,
    /// Prompt template; agent engines require one. Command steps get it on stdin.
    pub prompt: Option<String>,
    /// Paths (templates) that must exist in the worktree after the step.
    pub outputs: Vec<String>,
    /// Wall-clock limit.
    pub timeout: Option<Duration>,
    /// Limit on time without any output.
    pub idle_timeout: Option<Duration>,
    pub model: Option<String>,
    pub reasoning: Option<String>,
    pub permissions: Option<Permissions>,
    /// Extra environment (values are templates).
    pub env: BTreeMap<String, String>,
    /// Extra CLI arguments (templates).
    pub args: Vec<String>,
    /// Continue the conversation of an earlier step (its id).
    pub session: Option<String>,
}

/// A step with every placeholder expanded: what one execution of it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedStep {
    pub id: String,
    pub engines: Vec<String>,
    pub run: Vec<String>,
    pub prompt: Option<String>,
    pub outputs: Vec<String>,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub model: Option<String>,
    pub reasoning: Option<String>,
    pub permissions: Option<Permissions>,
    pub env: BTreeMap<String, String>,
    pub args: Vec<String>,
    pub session: Option<String>,
}
