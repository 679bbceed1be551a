//! The validated workflow: what the runner executes.
//!
//! A [`Workflow`] is produced only by [`super::parse`], so every value in it has passed the
//! checks of the file format (known keys, types, unique ids, known engines, valid durations,
//! known placeholders). `[defaults]` are already merged into each step. Strings that may hold
//! placeholders (`run`, `prompt`, `outputs`, `env` values, `args`) are kept as written; they are
//! expanded per run by [`Workflow::resolve`].

use super::StepId;
use std::collections::BTreeMap;
use std::time::Duration;

/// Names of the engines a step may use, in the order `git machine engines` lists them.
pub const ENGINES: &[&str] = &[
    "command", "claude", "codex", "gemini", "opencode", "cursor", "aider",
];

/// The engine of an agent step whose workflow names none, when the run gives no
/// `machine.engine` either.
pub const DEFAULT_ENGINE: &str = "claude";

/// Placeholders every workflow may use without declaring them. `loop_reason` and `loop_pass`
/// change from one execution of a step to the next: see [`loop_values`](super::loop_values).
pub const BUILTIN_PLACEHOLDERS: &[&str] = &[
    "run_id",
    "workflow",
    "date",
    "base",
    "track",
    "conditions",
    "loop_reason",
    "loop_pass",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub description: String,
    /// Secret files (store::secrets) its runs may commit: paths from the repository's root.
    pub commit_secrets: Vec<String>,
    /// Where it came from, for messages: a path as the user gave it or `builtin:<name>`.
    pub origin: String,
    /// The file's text, as read: stored in the run so a resume runs exactly what was started.
    pub source: String,
    pub vars: Vec<VarDecl>,
    pub steps: Vec<Step>,
    /// `[tracks]`: one question, one answer per run (`--track`).
    pub tracks: Option<Choice>,
    /// `[[condition_groups]]`: questions whose chosen options become conditions (`--with`).
    pub condition_groups: Vec<Choice>,
    /// Every parallel group (steps sharing `group = "<id>"`), in the order of its first step,
    /// with its `[groups.<id>]` settings (defaults where the file has none).
    pub groups: Vec<GroupSpec>,
    /// `[controller]`: the run begins with a conversation. Its step (id [`CONTROLLER`]) is the
    /// first of `steps`; `Some(Some(id))` when the controller is also step `id` (its `step`
    /// key), which is then recorded as done by the conversation, not run again.
    pub controller: Option<Option<StepId>>,
    /// The `prompt_file`s read at parse time: path as written → contents. A run saves them
    /// next to `source` so that [`super::parse_with_files`] can re-parse without the files.
    pub prompt_files: BTreeMap<String, String>,
    /// `[workspace]`: files brought into each new worktree and the command that sets it up.
    pub workspace: WorkspaceSpec,
    /// What is allowed but likely wrong, each at its place in the file: placeholders pasted
    /// inside quotes of a shell script (`validate` refuses them; `run` tells them).
    pub warnings: Vec<super::WorkflowError>,
}

/// How a new worktree (a run's or a member's) is made ready: ignored files of the user's
/// checkout copied or linked in, and a setup command run once before the first step there.
/// Paths are relative to the repository's root, checked by [`workspace_path_problem`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkspaceSpec {
    /// Ignored files or folders copied from the user's checkout (`.env`).
    pub copy: Vec<String>,
    /// Ignored folders symlinked to the user's checkout (`node_modules`): shared, not copied.
    pub link: Vec<String>,
    /// The setup command's argv (`["npm", "ci"]`); empty: none.
    pub setup: Vec<String>,
    /// Files whose content decides whether a worktree is already set up.
    pub setup_key: Vec<String>,
}

/// Why `path` can't be a `[workspace]` path (`None` when it can): it must name something inside
/// the repository, below its root, outside `.git`. A trailing `/` is allowed.
pub fn workspace_path_problem(path: &str) -> Option<&'static str> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.trim().is_empty() || trimmed == "." {
        return Some("it names no file");
    }
    if trimmed.starts_with(['/', '\\']) {
        return Some("it is absolute");
    }
    let parts: Vec<&str> = trimmed.split(['/', '\\']).collect();
    if parts.contains(&"..") {
        return Some("it goes up with `..`");
    }
    if parts.first() == Some(&".git") {
        return Some("it is inside `.git`");
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Some("it has an empty or `.` part");
    }
    None
}

/// A question with options: the workflow's track, or a group of conditions.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// `tracks` for the track question; the group's id for condition groups.
    pub id: String,
    pub question: String,
    /// Several options may be chosen (condition groups with `multi = true`).
    pub multi: bool,
    /// (option id, description), in file order.
    pub options: Vec<(String, String)>,
    /// Chosen when the run gives no answer and no terminal can ask (track: required if None).
    pub default: Vec<String>,
}

/// Settings of a parallel group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub id: String,
    /// Step that resolves merge conflicts of the group (an agent step outside the group).
    pub on_conflict: Option<StepId>,
}

/// Where a step's prompt gets extra context from.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextSource {
    /// A step's final message, or one of its declared outputs: an earlier step, or a later one
    /// that loops back over this one.
    Step {
        from: StepId,
        output: Option<String>,
        required: bool,
        /// `from` comes after this step: its loop goes back to this step or before it, so this
        /// step runs again after it. Until it has run (the first pass) the source is empty and
        /// `required` does not apply.
        later: bool,
    },
    /// Files of the worktree matching a glob (`**` allowed).
    Files { pattern: String, required: bool },
    /// One file of the worktree.
    File { path: String, required: bool },
}

/// `loop = { to = "implement", max = 3, until = { run = [...] }, on_max = "continue" }`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSpec {
    /// The step the run goes back to (this step or an earlier one).
    pub to: StepId,
    /// How many times the loop may send the run back.
    pub max: u32,
    /// Gate: the loop ends when this command passes (run in the worktree after the step).
    /// Without it, the loop is driven by agent directives only.
    pub until: Vec<String>,
    /// When `max` is reached: fail the step (false) or go on (true).
    pub continue_on_max: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VarDecl {
    pub name: String,
    pub help: String,
    /// `None` means the variable is required.
    pub default: Option<String>,
}

/// The id of the step a `[controller]` becomes: the run's first step.
pub const CONTROLLER: &str = "controller";

/// How the person takes part in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Headless: the agent works alone (the default).
    #[default]
    Autonomous,
    /// The terminal is handed to the agent CLI's own interface (or to the command).
    Interactive,
    /// The controller's chat: each of the person's lines is the next headless turn of one
    /// session.
    Conversation,
}

/// What an interactive step does when no terminal can be handed over (CI, `--no-input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Run the step headless, as an autonomous one.
    Headless,
    /// Pause the run before the step, saying how to continue on a terminal (the default).
    #[default]
    Pause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permissions {
    Read,
    Edit,
    Full,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within the workflow; lowercase letters, digits and '-'.
    pub id: StepId,
    /// Engines to try in order (fallback); never empty. One of [`ENGINES`] each.
    pub engines: Vec<String>,
    /// The workflow names the engine (the step or `[defaults]`); when not, `engines` holds
    /// [`DEFAULT_ENGINE`] and a run's `machine.engine` takes its place.
    pub engine_named: bool,
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
    pub session: Option<StepId>,
    pub context: Vec<ContextSource>,
    /// Budget in bytes for the context sections added to the prompt.
    pub context_limit: Option<usize>,
    pub loop_spec: Option<LoopSpec>,
    /// Pause the run after this step for a person to review.
    pub checkpoint: bool,
    /// Run only when all of these conditions were chosen.
    pub when: Vec<String>,
    /// Run only when at least one of these conditions was chosen.
    pub when_any: Vec<String>,
    /// Run only on these tracks (empty: every track).
    pub tracks: Vec<String>,
    /// Parallel group: consecutive steps with the same group run at the same time.
    pub group: Option<String>,
    /// How the person takes part: headless, on the terminal, or the controller's chat.
    pub mode: Mode,
    /// What an interactive step does without a terminal.
    pub interactive_fallback: Fallback,
}

/// A step with every placeholder expanded: what one execution of it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedStep {
    pub id: StepId,
    pub engines: Vec<String>,
    /// See [`Step::engine_named`].
    pub engine_named: bool,
    /// Arguments for one engine, added after `args` when that engine runs the step (the run's
    /// `machine.<engine>.args`).
    pub engine_args: BTreeMap<String, Vec<String>>,
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
    pub session: Option<StepId>,
    pub context: Vec<ContextSource>,
    pub context_limit: Option<usize>,
    pub loop_spec: Option<LoopSpec>,
    pub checkpoint: bool,
    pub when: Vec<String>,
    pub when_any: Vec<String>,
    pub tracks: Vec<String>,
    pub group: Option<String>,
    /// How the person takes part: headless, on the terminal, or the controller's chat.
    pub mode: Mode,
    /// What an interactive step does without a terminal.
    pub interactive_fallback: Fallback,
}

impl ResolvedStep {
    /// The step as `engine` runs it: its `args` followed by the run's arguments for `engine`.
    pub fn for_engine(&self, engine: &str) -> std::borrow::Cow<'_, ResolvedStep> {
        match self.engine_args.get(engine) {
            Some(extra) if !extra.is_empty() => {
                let mut step = self.clone();
                step.args.extend(extra.iter().cloned());
                std::borrow::Cow::Owned(step)
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }
}
