//! From a workflow file's text to a validated [`Workflow`].
//!
//! Two stages: `read` reads the text into the spanned structs of `raw` (syntax, unknown keys
//! and types), one table at a time, so the mistakes of every table come back together; then
//! [`Checker`] applies every other rule while building the model (a mistake in a step does not
//! stop the other steps' checks). Each mistake is a [`WorkflowError`] placed at the offending
//! key or value, the first carrying the others in `also`; serde's wording is rewritten into
//! ours (toml's multi-line snippet is dropped: the CLI shows the position). The rules of the
//! second stage run only on a file whose shape is right. `[defaults]` are merged here: a
//! step's own value wins, except `env`, which is merged key by key (the step's value wins for
//! a key in both).
//!
//! Paths a file names (`outputs`, `prompt_file`, context `file`/`files`) must stay inside
//! (`paths::escape`). Placeholders pasted inside quotes of a `sh -c` script are not errors but
//! [`Workflow::warnings`].
//!
//! References are checked in file order: `session`, `context.from` and `loop.to` name earlier
//! steps (`loop.to` may name the step itself), `when`/`when_any` name options of
//! `[[condition_groups]]`, `tracks` options of `[tracks]`; option ids are unique across all of
//! them because `--track` and `--with` name an option without its question. Parallel groups are
//! checked once all steps are known (consecutive, two or more steps, no `loop`/`checkpoint`).
//! One exception to "earlier": `context.from` may name a later step whose `loop.to` is this
//! step or one before it — a step the loop sends the run back over, which runs again after the
//! looping step and can read what it said. That later step's `loop.to` and `outputs` are read as
//! written; they are checked in full when its turn comes.
//!
//! `prompt_file`: a step's prompt may live in a file, named relative to the workflow file's
//! directory and read here, at parse time; its text becomes the step's `prompt` and passes the
//! same placeholder checks (errors point into that file). Where the files come from is the
//! caller's choice: [`parse_with_base`] reads them from a directory (none for built-ins and
//! for text with no file behind it, where `prompt_file` is an error), and [`parse_with_files`]
//! takes them from a map, the [`Workflow::prompt_files`] a run saved next to
//! [`Workflow::source`], so a resume re-parses exactly what was started even if the files
//! changed or are gone.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{backticked, closest, line_column, WorkflowError};
use super::id::StepId;
use super::model::workspace_path_problem;
use super::model::{
    Choice, ContextSource, Fallback, GroupSpec, LoopSpec, Mode, Permissions, Step, VarDecl,
    Workflow, WorkspaceSpec, BUILTIN_PLACEHOLDERS, CONTROLLER, DEFAULT_ENGINE, ENGINES,
};
use super::paths::{escape, read_text, too_big, ReadError, MAX_FILE};
use super::raw::{
    Engines, Names, RawConditionGroup, RawContext, RawDefaults, RawGroup, RawLoop, RawStep,
    RawTracks, RawWorkflow, RawWorkspace, Str, StrList, StrMap,
};
use super::read::{read, Place, ShapeError, TOP_KEYS};
use super::template;

/// The only file format version this build reads.
const VERSION: i64 = 1;

const REASONING: &[&str] = &["minimal", "low", "medium", "high"];
const PERMISSIONS: &[&str] = &["read", "edit", "full"];
/// Keys of a step that `[defaults]` may not set.
const STEP_ONLY_KEYS: &[&str] = &[
    "id",
    "run",
    "prompt",
    "prompt_file",
    "outputs",
    "session",
    "context",
    "loop",
    "checkpoint",
    "when",
    "when_any",
    "tracks",
    "group",
    "mode",
    "interactive_fallback",
    "step",
];
const MAX_ID_LEN: usize = 40;
/// `loop.max` when it is not given.
const DEFAULT_LOOP_MAX: u32 = 3;

const DURATION_HINT: &str = r#"write it like "90s", "10m" or "1h 30m""#;
const CONTEXT_HINT: &str = r#"each entry is a table: `{ from = "<earlier step>" }`, `{ file = "path" }` or `{ files = "glob/**/*.rs" }`"#;
const LOOP_HINT: &str =
    r#"write a table: `loop = { to = "<step>", max = 3, until = { run = ["make", "test"] } }`"#;
const UNTIL_HINT: &str = r#"`until = { run = ["make", "test"] }`"#;
const ON_MAX: &[&str] = &["fail", "continue"];
const TRACKS_EXAMPLE: &str = "\n\n    [tracks]\n    question = \"What kind of project is this?\"\n\n    [tracks.options]\n    new_project = \"Start from scratch\"\n    existing = \"Extend an existing codebase\"";
const CONDITIONS_EXAMPLE: &str = "\n\n    [[condition_groups]]\n    id = \"features\"\n    question = \"Which parts does it have?\"\n    multi = true\n\n    [condition_groups.options]\n    has_ui = \"A user interface\"\n    has_db = \"A database\"";
const SIZE_HINT: &str = r#"write a number of bytes: `20000`, "20k" or "1M""#;
const OPTION_RULE: &str =
    "an option id uses lowercase letters, digits, '_' and '-', and starts with a letter or digit";

/// Parse and validate one workflow's text that has no file behind it (a built-in, or text
/// from elsewhere): a `prompt_file` in it is an error. `origin` is what messages name (a path
/// as given, or "builtin:demo").
pub fn parse(origin: &str, source: &str) -> Result<Workflow> {
    parse_with_base(origin, source, None)
}

/// Parse and validate one workflow file's text, reading each `prompt_file` relative to
/// `base_dir` (the directory of the workflow file; `None` for built-ins, where `prompt_file`
/// is an error). The files read are returned in [`Workflow::prompt_files`].
pub fn parse_with_base(origin: &str, source: &str, base_dir: Option<&Path>) -> Result<Workflow> {
    let files = base_dir.map_or(PromptFiles::Unavailable, PromptFiles::Dir);
    check(origin, source, files)
}

/// Parse and validate a workflow's text as it was saved with a run, taking each `prompt_file`
/// from `files` (path as written → contents, i.e. the [`Workflow::prompt_files`] of the first
/// parse) instead of the disk.
pub fn parse_with_files(
    origin: &str,
    source: &str,
    files: &BTreeMap<String, String>,
) -> Result<Workflow> {
    check(origin, source, PromptFiles::Saved(files))
}

fn check(origin: &str, source: &str, prompt_files: PromptFiles<'_>) -> Result<Workflow> {
    // A byte-order mark is not part of the text: columns count from after it, as editors do.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if source.len() > MAX_FILE {
        let mut end = MAX_FILE;
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        return Err(too_big(origin, &source[..end]));
    }
    if let Some(at) = source.find('\0') {
        return Err(
            WorkflowError::at(origin, source, at, "the file holds a NUL byte").with_hint(
                "a workflow file is text: remove it (a NUL in a value is written `\\u0000`)",
            ),
        );
    }
    let checker = Checker {
        origin,
        source,
        prompt_files,
    };
    let raw = read(source).map_err(|errors| {
        let mut all = errors.iter().map(|e| checker.shape_error(e));
        let mut first = all.next().expect("a failed reading has a mistake");
        first.also = all.collect::<Vec<_>>().into_boxed_slice();
        first
    })?;
    checker.workflow(raw)
}

/// Where the `prompt_file`s of a workflow are read from.
#[derive(Clone, Copy)]
enum PromptFiles<'a> {
    /// Nowhere: a built-in, or text with no file behind it.
    Unavailable,
    /// The directory of the workflow file.
    Dir(&'a Path),
    /// The contents saved with a run, by path as written.
    Saved(&'a BTreeMap<String, String>),
}

/// Validates one file; knows its text so it can place errors.
struct Checker<'a> {
    origin: &'a str,
    source: &'a str,
    prompt_files: PromptFiles<'a>,
}

/// What every step is checked against.
struct Scope<'s> {
    declared: &'s [&'s str],
    defaults: &'s Shared,
    tracks: Option<&'s Choice>,
    conditions: &'s [Choice],
    /// Every step of the file, to tell "later" from "unknown" in messages.
    all: &'s [Spanned<RawStep>],
}

/// How a key names another step, for its messages.
struct StepRef {
    key: &'static str,
    /// (message after "step `id` ", hint) when a step names itself; `None` if it may.
    own: Option<(&'static str, &'static str)>,
    later_hint: &'static str,
}

const SESSION_REF: StepRef = StepRef {
    key: "session",
    own: Some((
        "can't continue its own session",
        "`session` names an earlier step whose conversation this step continues",
    )),
    later_hint: "a step can only continue the session of an earlier step",
};

const FROM_REF: StepRef = StepRef {
    key: "from",
    own: Some((
        "can't take context from itself",
        "`from` names an earlier step whose result goes into this step's prompt",
    )),
    later_hint: "context can only come from an earlier step, or from a later one whose `loop` goes back to this step or before it",
};

const LOOP_REF: StepRef = StepRef {
    key: "to",
    own: None,
    later_hint: "a loop goes back: `to` names this step or an earlier one",
};

/// An option id already used by a question, to keep ids unique across questions.
struct TakenOption {
    id: String,
    at: usize,
    /// `[tracks]` or "condition group `x`".
    owner: String,
}

/// The track question or a condition group, for messages.
struct ChoiceKind {
    owner: String,
    /// The flag that answers it.
    flag: &'static str,
    example: &'static str,
}

/// The checked keys that a step and `[defaults]` share.
#[derive(Default)]
struct Shared {
    engines: Option<Vec<String>>,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    model: Option<String>,
    reasoning: Option<String>,
    permissions: Option<Permissions>,
    env: BTreeMap<String, String>,
    args: Option<Vec<String>>,
    context_limit: Option<usize>,
}

/// The raw fields of [`Shared`], borrowed from a step or from `[defaults]`.
struct SharedRaw<'r> {
    engine: &'r Option<Spanned<Engines>>,
    timeout: &'r Option<Str>,
    idle_timeout: &'r Option<Str>,
    model: &'r Option<Str>,
    reasoning: &'r Option<Str>,
    permissions: &'r Option<Str>,
    env: &'r Option<StrMap>,
    args: &'r Option<StrList>,
    context_limit: &'r Option<Spanned<toml::Value>>,
}

impl<'r> From<&'r RawDefaults> for SharedRaw<'r> {
    fn from(d: &'r RawDefaults) -> Self {
        SharedRaw {
            engine: &d.engine,
            timeout: &d.timeout,
            idle_timeout: &d.idle_timeout,
            model: &d.model,
            reasoning: &d.reasoning,
            permissions: &d.permissions,
            env: &d.env,
            args: &d.args,
            context_limit: &d.context_limit,
        }
    }
}

impl<'r> From<&'r RawStep> for SharedRaw<'r> {
    fn from(s: &'r RawStep) -> Self {
        SharedRaw {
            engine: &s.engine,
            timeout: &s.timeout,
            idle_timeout: &s.idle_timeout,
            model: &s.model,
            reasoning: &s.reasoning,
            permissions: &s.permissions,
            env: &s.env,
            args: &s.args,
            context_limit: &s.context_limit,
        }
    }
}

type Result<T> = std::result::Result<T, WorkflowError>;

impl Checker<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> WorkflowError {
        WorkflowError::at(self.origin, self.source, offset, message)
    }

    // ---- serde errors -------------------------------------------------------------------

    /// Rewrites a mistake of shape from serde's words into ours, keeping its position.
    fn shape_error(&self, e: &ShapeError) -> WorkflowError {
        // toml's message may run over several lines ("invalid table header\nexpected ...").
        let message = e
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let Some(span) = e.span.clone() else {
            return WorkflowError::new(self.origin, message);
        };
        let at = span.start;
        if e.syntax {
            let hint = syntax_hint(&message);
            return self.err(at, message).with_hint(hint);
        }
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((key, expected)) = rest.split_once('`') {
                return self.unknown_key(at, key, &expected_keys(expected), &e.place);
            }
        }
        if let Some(rest) = message.strip_prefix("invalid type: ") {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                return self.wrong_type(span, found, expected, e);
            }
        }
        let message = format!("{message}{}", e.place.suffix());
        self.err(at, message)
    }

    fn unknown_key(
        &self,
        at: usize,
        key: &str,
        allowed: &[String],
        place: &Place,
    ) -> WorkflowError {
        // Tables nested in a step are told apart by the keys they allow.
        let has = |k: &str| allowed.iter().any(|a| a == k);
        let within = if !matches!(place, Place::Step(_)) {
            ""
        } else if has("on_max") {
            " `loop`"
        } else if has("output") {
            " a `context` entry"
        } else if allowed == ["run"] {
            " `until`"
        } else {
            ""
        };
        let suffix = place.suffix();
        let message = match suffix.strip_prefix(" in") {
            Some(rest) if !within.is_empty() => format!("unknown key `{key}` in{within} of{rest}"),
            _ => format!("unknown key `{key}`{suffix}"),
        };
        let hint = if matches!(place, Place::Defaults) && STEP_ONLY_KEYS.contains(&key) {
            format!("`{key}` can't have a default; set it in each step")
        } else if !matches!(place, Place::Top) && TOP_KEYS.contains(&key) {
            format!("`{key}` belongs at the top of the file, before the first [table] header")
        } else if let Some(near) = closest(key, allowed.iter().map(String::as_str)) {
            format!("did you mean `{near}`?")
        } else {
            format!(
                "allowed keys here: {}",
                backticked(allowed.iter().map(String::as_str))
            )
        };
        self.err(at, message).with_hint(hint)
    }

    fn wrong_type(
        &self,
        span: Range<usize>,
        found: &str,
        expected: &str,
        e: &ShapeError,
    ) -> WorkflowError {
        let place = &e.place;
        let found = found
            .replace("floating point", "float")
            .replace("sequence", "an array")
            .replace("map", "a table");
        let expected = if expected.starts_with("struct ") || expected == "a map" {
            "a table".to_string()
        } else {
            expected.replace("a sequence", "an array")
        };
        let key = key_before(self.source, span.start).or_else(|| e.key.clone());
        let message = match &key {
            Some(key) => format!("expected {expected} for `{key}`, found {found}"),
            None => format!("expected {expected}, found {found}"),
        };
        let text = self.source.get(span.clone()).unwrap_or("").trim();
        let key = key.unwrap_or_default();
        let in_vars = matches!(place, Place::Vars);
        let hint = if key == "timeout" || key == "idle_timeout" {
            Some(format!("durations are strings: {DURATION_HINT}"))
        } else if in_vars && expected == "a table" {
            let default = if text.starts_with(['"', '\'']) {
                text.to_string()
            } else {
                format!("\"{text}\"")
            };
            Some(format!(
                "declare a var as a table: `[vars.{key}]`, with `default = {default}` under it"
            ))
        } else if key == "env" && expected == "a table" {
            Some(r#"write a table: `env = { NAME = "value" }`"#.to_string())
        } else if (key == "steps" || key == "condition_groups") && found == "a table" {
            Some(format!(
                "write each entry under its own `[[{key}]]` header, with two brackets"
            ))
        } else if key == "engine" {
            Some(format!(
                r#"write `engine = "claude"` or a fallback list `engine = ["claude", "codex"]`; engines: {}"#,
                ENGINES.join(", ")
            ))
        } else if key == "context" && (expected == "a table" || expected == "an array") {
            Some(CONTEXT_HINT.to_string())
        } else if key == "loop" && expected == "a table" {
            Some(LOOP_HINT.to_string())
        } else if key == "until" && expected == "a table" {
            Some(format!("write a table: {UNTIL_HINT}"))
        } else if matches!(place, Place::Groups) && expected == "a table" {
            Some(format!(
                "settings of a group are a table: `[groups.{key}]`, with `on_conflict = \"<step>\"` under it"
            ))
        } else if expected == "a boolean" {
            Some(format!("write `{key} = true` or `{key} = false`"))
        } else if expected == "an array" && found.starts_with("string") {
            Some(format!("write an array of strings: `{key} = [{text}]`"))
        } else if expected == "a string"
            && !found.starts_with("an array")
            && !found.starts_with("a table")
        {
            Some(format!("put it in quotes: `{key} = \"{text}\"`"))
        } else {
            None
        };
        self.err(span.start, message).with_hint_opt(hint)
    }

    // ---- the model ----------------------------------------------------------------------

    /// The model of a file whose shape is right. `version` and `name` stand apart from the
    /// rest: their mistakes are reported together with the first of the others (and the
    /// steps' mistakes, which are all found).
    fn workflow(&self, raw: RawWorkflow) -> Result<Workflow> {
        let version = self.version(raw.version.as_ref());
        let name = self.name(raw.name.as_ref());
        let rest = self.workflow_named(raw, name.as_ref().map_or("", String::as_str));
        let mut found: Vec<WorkflowError> = Vec::new();
        for e in [version.err(), name.err(), rest.as_ref().err().cloned()]
            .into_iter()
            .flatten()
        {
            let also = e.also.clone();
            found.push(WorkflowError {
                also: Box::new([]),
                ..e
            });
            found.extend(also.into_vec());
        }
        let mut found = found.into_iter();
        match found.next() {
            None => rest,
            Some(mut first) => {
                first.also = found.collect::<Vec<_>>().into_boxed_slice();
                Err(first)
            }
        }
    }

    /// [`Self::workflow`] past `version` and `name`.
    fn workflow_named(&self, raw: RawWorkflow, name: &str) -> Result<Workflow> {
        let name = name.to_string();
        let description = raw.description.map(Spanned::into_inner).unwrap_or_default();
        let vars = self.vars(raw.vars.as_ref())?;
        let declared: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        let defaults = match &raw.defaults {
            Some(d) => self.shared(SharedRaw::from(d), &declared)?,
            None => Shared::default(),
        };
        let mut taken = Vec::new();
        let tracks = raw
            .tracks
            .as_ref()
            .map(|t| self.tracks(t, &mut taken))
            .transpose()?;
        let condition_groups = self.condition_groups(raw.condition_groups.as_ref(), &mut taken)?;
        let all = self.step_list(raw.steps.as_ref())?;
        let scope = Scope {
            declared: &declared,
            defaults: &defaults,
            tracks: tracks.as_ref(),
            conditions: &condition_groups,
            all,
        };
        let controller = raw
            .controller
            .as_ref()
            .map(|c| self.controller(c, &scope))
            .transpose()?;
        let takes_over = controller.as_ref().map(|(_, takes)| takes.clone());
        let offset = usize::from(controller.is_some());
        let steps = self.steps(&scope, controller.map(|(c, _)| c))?;
        let groups = self.groups(all, &steps[offset..], raw.groups.as_ref())?;
        let workspace = self.workspace(raw.workspace.as_ref())?;
        let raws = raw.controller.iter().chain(all);
        let prompt_files = raws
            .zip(&steps)
            .filter_map(|(raw, step)| {
                let path = raw.get_ref().prompt_file.as_ref()?;
                let text = step
                    .prompt
                    .clone()
                    .expect("`prompt_file` gives its step a prompt");
                Some((path.get_ref().clone(), text))
            })
            .collect();
        let commit_secrets = self.commit_secrets(raw.commit_secrets.as_ref())?;
        let warnings = raw
            .controller
            .iter()
            .map(|c| (CONTROLLER, c.get_ref()))
            .chain(
                steps[offset..]
                    .iter()
                    .zip(all)
                    .map(|(s, raw)| (s.id.as_str(), raw.get_ref())),
            )
            .flat_map(|(id, raw)| self.shell_warnings(id, raw, &declared))
            .collect();
        Ok(Workflow {
            warnings,
            name,
            description,
            commit_secrets,
            origin: self.origin.to_string(),
            source: self.source.to_string(),
            vars,
            steps,
            tracks,
            condition_groups,
            groups,
            controller: takes_over,
            prompt_files,
            workspace,
        })
    }

    /// `[workspace]`: paths relative to the repository's root (never absolute, never `..`),
    /// a setup argv that is not empty, and a `setup_key` only with a `setup`.
    fn workspace(&self, raw: Option<&Spanned<RawWorkspace>>) -> Result<WorkspaceSpec> {
        const WORKSPACE_HINT: &str =
            "write a path relative to the repository's root, e.g. `.env` or `config/local.toml`";
        let Some(raw) = raw else {
            return Ok(WorkspaceSpec::default());
        };
        let paths = |list: Option<&StrList>, key: &str| -> Result<Vec<String>> {
            let mut out: Vec<String> = Vec::new();
            for path in list.map(|l| l.get_ref().as_slice()).unwrap_or_default() {
                if let Some(why) = workspace_path_problem(path.get_ref()) {
                    let text = path.get_ref();
                    let message = format!("`{key}` in [workspace] can't name `{text}`: {why}");
                    return Err(self
                        .err(path.span().start, message)
                        .with_hint(WORKSPACE_HINT));
                }
                let path = path.get_ref().trim_end_matches('/').to_string();
                if !out.contains(&path) {
                    out.push(path);
                }
            }
            Ok(out)
        };
        let raw_ws = raw.get_ref();
        let copy = paths(raw_ws.copy.as_ref(), "copy")?;
        let link = paths(raw_ws.link.as_ref(), "link")?;
        if let Some(both) = copy.iter().find(|p| link.contains(p)) {
            let at = raw_ws
                .link
                .as_ref()
                .map_or(raw.span().start, |l| l.span().start);
            return Err(self
                .err(
                    at,
                    format!("`{both}` is both copied and linked in [workspace]"),
                )
                .with_hint(
                    "keep it in `copy` (each worktree its own) or in `link` (one shared folder)",
                ));
        }
        let setup: Vec<String> = raw_ws
            .setup
            .as_ref()
            .map(|l| l.get_ref().iter().map(|s| s.get_ref().clone()).collect())
            .unwrap_or_default();
        if let Some(list) = raw_ws
            .setup
            .as_ref()
            .filter(|_| setup.first().is_none_or(|p| p.trim().is_empty()))
        {
            return Err(self
                .err(list.span().start, "`setup` in [workspace] names no program")
                .with_hint(r#"give the command as an argv, e.g. `setup = ["npm", "ci"]`"#));
        }
        let setup_key = paths(raw_ws.setup_key.as_ref(), "setup_key")?;
        if let (Some(list), true) = (raw_ws.setup_key.as_ref(), setup.is_empty()) {
            return Err(self
                .err(
                    list.span().start,
                    "`setup_key` in [workspace] without a `setup`",
                )
                .with_hint(r#"add the command it guards, e.g. `setup = ["npm", "ci"]`"#));
        }
        Ok(WorkspaceSpec {
            copy,
            link,
            setup,
            setup_key,
        })
    }

    /// `commit_secrets`: paths from the repository's root, as `git ls-files` spells them.
    fn commit_secrets(&self, raw: Option<&StrList>) -> Result<Vec<String>> {
        let Some(list) = raw else {
            return Ok(Vec::new());
        };
        let mut paths = Vec::new();
        for path in list.get_ref() {
            let p = path.get_ref();
            let bad = p.is_empty()
                || p.starts_with('/')
                || p.ends_with('/')
                || p.contains('\\')
                || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
            if bad {
                return Err(self
                    .err(
                        path.span().start,
                        format!(
                            "`commit_secrets`: `{p}` is not a file path from the repository's root"
                        ),
                    )
                    .with_hint("write it as `git ls-files` shows it, e.g. `config/dev.pem`"));
            }
            paths.push(p.clone());
        }
        Ok(paths)
    }

    /// The placeholders of vars (and `{loop_reason}`, which an agent writes) that step `id`
    /// pastes inside quotes of a shell script (`run` or `until.run` of the form
    /// `[<shell>, …, "-c", "<script>", …]`): a value holding the closing quote, `$(…)` or a
    /// backtick is run as code. Not errors for a run (the file means something), warnings:
    /// `validate` refuses them, `run` tells them.
    fn shell_warnings(&self, id: &str, raw: &RawStep, declared: &[&str]) -> Vec<WorkflowError> {
        let until = raw
            .loop_
            .as_ref()
            .and_then(|l| l.get_ref().until.as_ref())
            .and_then(|u| u.get_ref().run.as_ref());
        let mut out = Vec::new();
        for (key, argv) in [("run", raw.run.as_ref()), ("until.run", until)] {
            let Some(script) = argv.and_then(|a| shell_script(a.get_ref())) else {
                continue;
            };
            for (name, i, quote) in template::quoted_placeholders(script.get_ref()) {
                if !declared.contains(&name) && name != "loop_reason" {
                    continue;
                }
                let (quotes, breaks) = match quote {
                    template::Quote::Single => ("single", "a `'` in its value ends the quotes"),
                    template::Quote::Double => (
                        "double",
                        "a `\"`, `$(…)` or backtick in its value is read by the shell",
                    ),
                };
                let at = self.offset_in(script, i, &format!("{{{name}}}"));
                let message = format!(
                    "`{{{name}}}` is pasted inside {quotes} quotes of the shell script in `{key}` of step `{id}`: {breaks}"
                );
                out.push(self.err(at, message).with_hint(format!(
                    r#"pass the value as an argument and quote that: `["sh", "-c", "echo \"$1\"", "sh", "{{{name}}}"]`"#
                )));
            }
        }
        out
    }

    fn version(&self, version: Option<&Spanned<toml::Value>>) -> Result<()> {
        let Some(version) = version else {
            return Err(self
                .err(0, "missing `version`")
                .with_hint(format!("start the file with `version = {VERSION}`")));
        };
        match version.get_ref() {
            toml::Value::Integer(VERSION) => Ok(()),
            toml::Value::Integer(n) => Err(self
                .err(
                    version.span().start,
                    format!("unsupported version {n}; this git machine reads version {VERSION}"),
                )
                .with_hint("a newer git machine may read it")),
            other => Err(self
                .err(
                    version.span().start,
                    format!(
                        "`version` must be the number {VERSION}, found {}",
                        other.type_str()
                    ),
                )
                .with_hint(format!("write `version = {VERSION}`"))),
        }
    }

    fn name(&self, name: Option<&Str>) -> Result<String> {
        let Some(name) = name else {
            return Err(self
                .err(0, "missing `name`")
                .with_hint(r#"add a line like `name = "my-workflow"`"#));
        };
        let value = name.get_ref();
        let ok = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            return Ok(value.clone());
        }
        let suggestion = slug(value, true);
        let mut hint = "a workflow name uses lowercase letters, digits, '-' and '_'".to_string();
        if !suggestion.is_empty() {
            hint.push_str(&format!(", e.g. `{suggestion}`"));
        }
        Err(self
            .err(name.span().start, format!("bad workflow name `{value}`"))
            .with_hint(hint))
    }

    fn vars(&self, vars: Option<&BTreeMap<Str, super::raw::RawVar>>) -> Result<Vec<VarDecl>> {
        let Some(vars) = vars else {
            return Ok(Vec::new());
        };
        // In file order, so `help` and error messages follow the file.
        let mut entries: Vec<_> = vars.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut out = Vec::new();
        for (key, var) in entries {
            let name = key.get_ref();
            let mut chars = name.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                return Err(self
                    .err(key.span().start, format!("bad var name `{name}`"))
                    .with_hint("a var name uses letters, digits, '_' and '-', and starts with a letter or '_'"));
            }
            if BUILTIN_PLACEHOLDERS.contains(&name.as_str()) {
                return Err(self
                    .err(
                        key.span().start,
                        format!("var `{name}` has the name of a built-in placeholder"),
                    )
                    .with_hint(format!(
                        "pick another name; built-ins: {}",
                        BUILTIN_PLACEHOLDERS.join(", ")
                    )));
            }
            out.push(VarDecl {
                name: name.clone(),
                help: var
                    .help
                    .as_ref()
                    .map(|h| h.get_ref().clone())
                    .unwrap_or_default(),
                default: var.default.as_ref().map(|d| d.get_ref().clone()),
            });
        }
        Ok(out)
    }

    /// The steps of the file; an error if there are none.
    fn step_list<'r>(
        &self,
        steps: Option<&'r Spanned<Vec<Spanned<RawStep>>>>,
    ) -> Result<&'r [Spanned<RawStep>]> {
        let example = "add a step like:\n\n    [[steps]]\n    id = \"hello\"\n    run = [\"echo\", \"hello\"]";
        let Some(steps) = steps else {
            return Err(self
                .err(self.source.len(), "workflow has no steps")
                .with_hint(example));
        };
        if steps.get_ref().is_empty() {
            return Err(self
                .err(steps.span().start, "workflow has no steps")
                .with_hint(example));
        }
        Ok(steps.get_ref())
    }

    /// The `[[steps]]`, after the controller's step when there is one (so they may name it).
    /// A mistake inside a step does not stop the checking: every step is checked, and all
    /// their mistakes are reported together (the first, with the others in `also`).
    fn steps(&self, scope: &Scope<'_>, controller: Option<Step>) -> Result<Vec<Step>> {
        let mut found: Vec<WorkflowError> = Vec::new();
        let mut out: Vec<Step> = Vec::new();
        let mut id_spans: Vec<usize> = Vec::new();
        if let Some(c) = controller {
            out.push(c);
            id_spans.push(0);
        }
        for (i, raw) in scope.all.iter().enumerate() {
            let id = self.step_id(raw.get_ref().id.as_ref(), raw.span().start, i + 1)?;
            let id_at = raw
                .get_ref()
                .id
                .as_ref()
                .map_or(raw.span().start, |id| id.span().start);
            if id.as_str() == CONTROLLER {
                return Err(self
                    .err(id_at, format!("step id `{CONTROLLER}` is taken by the controller"))
                    .with_hint("`controller` names the step of `[controller]`, the run's conversation; give this step another id"));
            }
            if let Some(step) = &raw.get_ref().step {
                return Err(self
                    .err(step.span().start, format!("`step` belongs in [controller], not in step `{id}`"))
                    .with_hint("`[controller]` with `step = \"<first step>\"` makes the conversation that step; remove `step` here"));
            }
            if let Some(first) = out.iter().position(|s| s.id == id) {
                let (line, _) = line_column(self.source, id_spans[first]);
                return Err(self
                    .err(id_at, format!("duplicate step id `{id}`"))
                    .with_hint(format!(
                        "the first step `{id}` is at line {line}; step ids must be unique"
                    )));
            }
            let step = match self.step(raw, id.clone(), &out, scope) {
                Ok(step) => step,
                Err(e) => {
                    found.push(e);
                    // Later steps may name this one: they are checked against a stand-in.
                    stand_in(id)
                }
            };
            out.push(step);
            id_spans.push(id_at);
        }
        let mut found = found.into_iter();
        match found.next() {
            None => Ok(out),
            Some(mut first) => {
                first.also = found.collect::<Vec<_>>().into_boxed_slice();
                Err(first)
            }
        }
    }

    /// Checks one step (whose `id` is already checked) against the steps before it and merges
    /// `[defaults]` into it.
    fn step(
        &self,
        raw: &Spanned<RawStep>,
        id: StepId,
        earlier: &[Step],
        scope: &Scope<'_>,
    ) -> Result<Step> {
        let at = raw.span().start;
        let s = raw.get_ref();
        let (declared, defaults) = (scope.declared, scope.defaults);
        let own = self.shared(SharedRaw::from(s), declared)?;
        let named = own.engines.or_else(|| defaults.engines.clone());
        let engine_named = named.is_some();
        let engines = named.unwrap_or_else(|| unnamed_engine(s));

        let uses_command = engines.iter().any(|e| e == "command");
        let agent = engines.iter().find(|e| *e != "command");
        let run = match &s.run {
            Some(run) if run.get_ref().is_empty() => {
                return Err(self
                    .err(run.span().start, format!("`run` is empty in step `{id}`"))
                    .with_hint(r#"give the command as an array: `run = ["make", "test"]`"#));
            }
            Some(run) if !uses_command => {
                return Err(self
                    .err(run.span().start, format!("`run` is only used by the command engine, and step `{id}` does not use it"))
                    .with_hint(format!("step `{id}` runs {}; remove `run`, or add \"command\" to `engine`", engines.join(", "))));
            }
            Some(run) => self.templates(run, declared)?,
            None if uses_command => {
                return Err(self
                    .err(at, format!("step `{id}` uses the command engine but has no `run`"))
                    .with_hint(r#"add the command as an array, e.g. `run = ["sh", "-c", "make test"]`, or set `engine` to an agent and give a `prompt`"#));
            }
            None => Vec::new(),
        };
        let prompt = self.prompt(s, &id, at, agent.map(String::as_str), declared)?;
        let outputs = match &s.outputs {
            Some(outputs) => outputs
                .get_ref()
                .iter()
                .map(|o| {
                    self.path(o, "outputs", declared)?;
                    Ok(o.get_ref().clone())
                })
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let group = s.group.as_ref().map(|g| self.group_id(g)).transpose()?;
        let group = group.as_deref();
        let session = match &s.session {
            Some(session) => {
                let target = self.step_ref(session, &id, earlier, scope.all, &SESSION_REF)?;
                self.not_in_own_group(session, "session", &id, group, &earlier[target])?;
                Some(earlier[target].id.clone())
            }
            None => None,
        };
        let context = match &s.context {
            Some(list) => list
                .get_ref()
                .iter()
                .map(|entry| self.context_source(entry, &id, group, earlier, scope))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let loop_spec = s
            .loop_
            .as_ref()
            .map(|l| self.loop_spec(l, &id, group, earlier, scope))
            .transpose()?;
        let checkpoint = s.checkpoint.as_ref().is_some_and(|c| *c.get_ref());
        if let (true, Some(g), Some(c)) = (checkpoint, group, &s.checkpoint) {
            return Err(self
                .err(c.span().start, format!("step `{id}` is in group `{g}`, so it can't have `checkpoint`"))
                .with_hint("the steps of a group run side by side and are committed as one merge, so the run can't stop between them; put the checkpoint on the step after the group"));
        }
        // The controller's own mode is read by `controller`.
        let (mode, interactive_fallback) = if id.as_str() == CONTROLLER {
            (Mode::Conversation, Fallback::Pause)
        } else {
            self.mode(s, &id)?
        };
        let when = self.conditions(s.when.as_ref(), "when", &id, scope)?;
        let when_any = self.conditions(s.when_any.as_ref(), "when_any", &id, scope)?;
        let tracks = self.track_names(s.tracks.as_ref(), &id, scope)?;
        let mut env = defaults.env.clone();
        env.extend(own.env);
        Ok(Step {
            id,
            engines,
            engine_named,
            run,
            prompt,
            outputs,
            timeout: own.timeout.or(defaults.timeout),
            idle_timeout: own.idle_timeout.or(defaults.idle_timeout),
            model: own.model.or_else(|| defaults.model.clone()),
            reasoning: own.reasoning.or_else(|| defaults.reasoning.clone()),
            permissions: own.permissions.or(defaults.permissions),
            env,
            args: own
                .args
                .or_else(|| defaults.args.clone())
                .unwrap_or_default(),
            session,
            context,
            context_limit: own.context_limit.or(defaults.context_limit),
            loop_spec,
            checkpoint,
            when,
            when_any,
            tracks,
            group: group.map(str::to_string),
            mode,
            interactive_fallback,
        })
    }

    /// `[controller]`: the step the run's conversation is, with id [`CONTROLLER`], and the
    /// first step it takes over (its `step` key), if any. Taking over `x` means starting from
    /// `x`'s settings (engine, model, prompt, …), which the table's own keys override.
    fn controller(
        &self,
        raw: &Spanned<RawStep>,
        scope: &Scope<'_>,
    ) -> Result<(Step, Option<StepId>)> {
        let c = raw.get_ref();
        let not_here = [
            ("id", c.id.as_ref().map(|v| v.span().start)),
            ("group", c.group.as_ref().map(|v| v.span().start)),
            ("loop", c.loop_.as_ref().map(|v| v.span().start)),
            ("checkpoint", c.checkpoint.as_ref().map(|v| v.span().start)),
            ("session", c.session.as_ref().map(|v| v.span().start)),
            ("when", c.when.as_ref().map(|v| v.span().start)),
            ("when_any", c.when_any.as_ref().map(|v| v.span().start)),
            ("tracks", c.tracks.as_ref().map(|v| v.span().start)),
        ];
        if let Some((key, Some(at))) = not_here.into_iter().find(|(_, at)| at.is_some()) {
            return Err(self
                .err(at, format!("`{key}` can't be set in [controller]"))
                .with_hint("the controller is the run's opening conversation with you: it has a prompt, engine, model, permissions, mode, interactive_fallback, and optionally `step`, the first step it takes over"));
        }
        let id = this_step(CONTROLLER);
        let takes = match &c.step {
            Some(name) => Some(self.taken_over(name, scope)?),
            None => None,
        };
        let mut step = match &takes {
            Some(first) => {
                let mut base = self.step(&scope.all[0], first.clone(), &[], scope)?;
                let own = self.shared(SharedRaw::from(c), scope.declared)?;
                base.id = id.clone();
                base.engines = own.engines.unwrap_or(base.engines);
                base.model = own.model.or(base.model);
                base.reasoning = own.reasoning.or(base.reasoning);
                base.permissions = own.permissions.or(base.permissions);
                base.timeout = own.timeout.or(base.timeout);
                base.idle_timeout = own.idle_timeout.or(base.idle_timeout);
                base.args = own.args.unwrap_or(base.args);
                base.env.extend(own.env);
                if c.prompt.is_some() || c.prompt_file.is_some() {
                    let agent = base.engines.iter().find(|e| *e != "command");
                    base.prompt = self.prompt(
                        c,
                        &id,
                        raw.span().start,
                        agent.map(String::as_str),
                        scope.declared,
                    )?;
                }
                base
            }
            None => self.step(raw, id.clone(), &[], scope)?,
        };
        step.mode = match &c.mode {
            Some(m) => match self.one_of(m, "mode", &["conversation", "interactive"])? {
                "interactive" => Mode::Interactive,
                _ => Mode::Conversation,
            },
            None => Mode::Conversation,
        };
        step.interactive_fallback = match &c.interactive_fallback {
            Some(f) => match self.one_of(f, "interactive_fallback", &["headless", "pause"])? {
                "headless" => Fallback::Headless,
                _ => Fallback::Pause,
            },
            None => Fallback::Pause,
        };
        if step.engines.iter().any(|e| e == "command") && step.mode == Mode::Conversation {
            return Err(self
                .err(raw.span().start, "the controller's conversation needs an agent engine")
                .with_hint("set `engine` in [controller] to an agent CLI, e.g. `engine = \"claude\"`; a command can be the controller with `mode = \"interactive\"`"));
        }
        Ok((step, takes))
    }

    /// The `step` of `[controller]`: it must name the first step, an agent step outside any
    /// group.
    fn taken_over(&self, name: &Str, scope: &Scope<'_>) -> Result<StepId> {
        let first = scope.all.first().and_then(|s| s.get_ref().id.as_ref());
        let Some(first) = first.filter(|f| f.get_ref() == name.get_ref()) else {
            let hint = match first {
                Some(f) => format!(
                    "the first step is `{}`; the conversation can only be the first step",
                    f.get_ref()
                ),
                None => "the conversation can only be the first step".to_string(),
            };
            return Err(self
                .err(
                    name.span().start,
                    format!(
                        "`step` in [controller] names `{}`, which is not the first step",
                        name.get_ref()
                    ),
                )
                .with_hint(hint));
        };
        if let Some(g) = &scope.all[0].get_ref().group {
            return Err(self
                .err(
                    name.span().start,
                    format!(
                        "the controller can't take over step `{}`: it is in group `{}`",
                        first.get_ref(),
                        g.get_ref()
                    ),
                )
                .with_hint(
                    "take the first step out of its group, or remove `step` from [controller]",
                ));
        }
        self.step_id(Some(first), scope.all[0].span().start, 1)
    }

    /// A step's `mode` and `interactive_fallback`.
    fn mode(&self, s: &RawStep, id: &StepId) -> Result<(Mode, Fallback)> {
        let mode = match &s.mode {
            Some(m) => match self.one_of(m, "mode", &["autonomous", "interactive"])? {
                "interactive" => Mode::Interactive,
                _ => Mode::Autonomous,
            },
            None => Mode::Autonomous,
        };
        let fallback = match &s.interactive_fallback {
            Some(f) if mode != Mode::Interactive => {
                return Err(self
                    .err(f.span().start, format!("`interactive_fallback` is for interactive steps, and step `{id}` is not one"))
                    .with_hint("add `mode = \"interactive\"`, or remove `interactive_fallback`"));
            }
            Some(f) => match self.one_of(f, "interactive_fallback", &["headless", "pause"])? {
                "headless" => Fallback::Headless,
                _ => Fallback::Pause,
            },
            None => Fallback::Pause,
        };
        if let (Mode::Interactive, Some(g)) = (mode, &s.group) {
            return Err(self
                .err(g.span().start, format!("step `{id}` is interactive, so it can't be in group `{}`", g.get_ref()))
                .with_hint("the steps of a group run side by side, and one terminal can be handed to one of them; make it autonomous or take it out of the group"));
        }
        Ok((mode, fallback))
    }

    /// A step's prompt: `prompt` as written or the text of `prompt_file`; agents need one.
    fn prompt(
        &self,
        s: &RawStep,
        id: &str,
        at: usize,
        agent: Option<&str>,
        declared: &[&str],
    ) -> Result<Option<String>> {
        match (&s.prompt, &s.prompt_file) {
            (Some(_), Some(file)) => Err(self
                .err(
                    file.span().start,
                    format!("step `{id}` has both `prompt` and `prompt_file`"),
                )
                .with_hint("keep one: `prompt` holds the text, `prompt_file` names a file holding it")),
            (None, Some(file)) => {
                let text = self.prompt_file(file, declared)?;
                if agent.is_some() && text.trim().is_empty() {
                    return Err(self
                        .err(
                            file.span().start,
                            format!("prompt file `{}` of step `{id}` is empty", file.get_ref()),
                        )
                        .with_hint("say in it what the agent should do"));
                }
                Ok(Some(text))
            }
            (Some(prompt), None) => {
                if agent.is_some() && prompt.get_ref().trim().is_empty() {
                    return Err(self
                        .err(
                            prompt.span().start,
                            format!("`prompt` is empty in step `{id}`"),
                        )
                        .with_hint("say what the agent should do"));
                }
                self.template(prompt, declared)?;
                Ok(Some(prompt.get_ref().clone()))
            }
            (None, None) => match agent {
                Some(agent) => Err(self
                    .err(
                        at,
                        format!("step `{id}` uses the `{agent}` engine but has no `prompt`"),
                    )
                    .with_hint(r#"add `prompt = "..."` saying what the agent should do, or `prompt_file = "prompts/<name>.md"`"#)),
                None => Ok(None),
            },
        }
    }

    /// Reads a step's `prompt_file` and checks its placeholders; an error in its text points
    /// into the prompt file.
    fn prompt_file(&self, file: &Str, declared: &[&str]) -> Result<String> {
        let written = file.get_ref();
        let at = file.span().start;
        if written.trim().is_empty() {
            return Err(self.err(at, "`prompt_file` is empty").with_hint(
                r#"name a file relative to the workflow file's directory, e.g. `prompt_file = "prompts/design.md"`"#,
            ));
        }
        if let Some(why) = escape(written) {
            return Err(self
                .err(at, format!("`prompt_file` must stay inside the workflow file's directory: `{}` {why}", written.escape_debug()))
                .with_hint("name a file next to the workflow file or below it, e.g. `prompt_file = \"prompts/design.md\"`"));
        }
        let inline = "write the prompt inline instead: `prompt = '''...'''`";
        let (shown, text): (PathBuf, String) = match self.prompt_files {
            PromptFiles::Unavailable if self.origin.starts_with("builtin:") => {
                return Err(self
                    .err(at, "built-in workflows cannot use `prompt_file`")
                    .with_hint(inline));
            }
            PromptFiles::Unavailable => {
                return Err(self
                    .err(
                        at,
                        "`prompt_file` can't be read: this workflow has no directory to read it from",
                    )
                    .with_hint(inline));
            }
            PromptFiles::Dir(dir) => {
                let path = dir.join(written);
                match read_text(&path, &path.display().to_string()) {
                    Ok(text) => (path, text),
                    Err(ReadError::Bad(e)) => return Err(e),
                    Err(ReadError::Io(e)) => {
                        let hint = Path::new(written).is_relative().then(|| {
                            format!(
                                "`prompt_file` is relative to the directory of the workflow file, {}",
                                dir.display()
                            )
                        });
                        return Err(self
                            .err(
                                at,
                                format!("cannot read prompt file {}: {e}", path.display()),
                            )
                            .with_hint_opt(hint));
                    }
                }
            }
            PromptFiles::Saved(files) => match files.get(written) {
                Some(text) => {
                    let dir = Path::new(self.origin).parent().unwrap_or(Path::new(""));
                    (dir.join(written), text.clone())
                }
                None => {
                    return Err(self
                        .err(
                            at,
                            format!(
                                "prompt file `{written}` is not among the files saved with this run"
                            ),
                        )
                        .with_hint(
                            "the run's copy of the workflow is incomplete; start a new run",
                        ));
                }
            },
        };
        if let Some(bad) = unknown_placeholder(&text, declared) {
            return Err(WorkflowError::at(
                &shown.display().to_string(),
                &text,
                bad.at,
                bad.message,
            )
            .with_hint(bad.hint));
        }
        Ok(text)
    }

    fn step_id(&self, id: Option<&Str>, step_at: usize, number: usize) -> Result<StepId> {
        let rule =
            "a step id uses lowercase letters, digits and '-', starts with a letter or digit, \
                    and is at most 40 characters";
        let Some(id) = id else {
            return Err(self
                .err(step_at, format!("step #{number} has no `id`"))
                .with_hint(format!(r#"add a line like `id = "build"`; {rule}"#)));
        };
        let value = id.get_ref();
        if let Some(id) = StepId::parse(value) {
            return Ok(id);
        }
        let mut hint = rule.to_string();
        let suggestion: String = slug(value, false).chars().take(MAX_ID_LEN).collect();
        if !suggestion.is_empty() && suggestion != *value {
            hint.push_str(&format!(", e.g. `{suggestion}`"));
        }
        Err(self
            .err(id.span().start, format!("bad step id `{value}`"))
            .with_hint(hint))
    }

    /// Checks that `target` names an earlier step (or this one, when `rule` allows it) and
    /// returns its index in `earlier` (`earlier.len()` for this step).
    fn step_ref(
        &self,
        target: &Str,
        id: &str,
        earlier: &[Step],
        all: &[Spanned<RawStep>],
        rule: &StepRef,
    ) -> Result<usize> {
        let name = target.get_ref();
        let at = target.span().start;
        let key = rule.key;
        if let Some(i) = earlier.iter().position(|s| s.id == *name) {
            return Ok(i);
        }
        if name == id {
            return match rule.own {
                None => Ok(earlier.len()),
                Some((message, hint)) => Err(self
                    .err(at, format!("step `{id}` {message}"))
                    .with_hint(hint)),
            };
        }
        let later = all
            .iter()
            .any(|s| s.get_ref().id.as_ref().is_some_and(|i| i.get_ref() == name));
        if later {
            return Err(self
                .err(
                    at,
                    format!("`{key}` names step `{name}`, which comes after step `{id}`"),
                )
                .with_hint(rule.later_hint));
        }
        let mut ids: Vec<&str> = earlier.iter().map(|s| s.id.as_str()).collect();
        if rule.own.is_none() {
            ids.push(id);
        }
        let mut hint = match closest(name, ids.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        if rule.own.is_none() {
            hint.push_str(&format!("steps it can name: {}", ids.join(", ")));
        } else if ids.is_empty() {
            hint.push_str("the first step has no earlier step");
        } else {
            hint.push_str(&format!("earlier steps: {}", ids.join(", ")));
        }
        Err(self
            .err(at, format!("`{key}` names unknown step `{name}`"))
            .with_hint(hint))
    }

    /// Rejects a reference from a step of a parallel group to another step of the same group:
    /// they run at the same time, so neither has a result the other could use.
    fn not_in_own_group(
        &self,
        value: &Str,
        key: &str,
        id: &str,
        group: Option<&str>,
        target: &Step,
    ) -> Result<()> {
        match group {
            Some(g) if target.group.as_deref() == Some(g) => Err(self
                .err(
                    value.span().start,
                    format!(
                        "`{key}` names step `{}`, which runs at the same time as step `{id}` in group `{g}`",
                        target.id
                    ),
                )
                .with_hint(
                    "the steps of a parallel group run side by side; name a step that runs before the group",
                )),
            _ => Ok(()),
        }
    }

    /// One entry of a step's `context`.
    fn context_source(
        &self,
        entry: &Spanned<RawContext>,
        id: &str,
        group: Option<&str>,
        earlier: &[Step],
        scope: &Scope<'_>,
    ) -> Result<ContextSource> {
        let c = entry.get_ref();
        let mut kinds: Vec<(&str, &Str)> =
            [("from", &c.from), ("files", &c.files), ("file", &c.file)]
                .into_iter()
                .filter_map(|(key, value)| value.as_ref().map(|v| (key, v)))
                .collect();
        kinds.sort_by_key(|(_, v)| v.span().start);
        let (kind, value) = match kinds[..] {
            [] => {
                return Err(self
                    .err(
                        entry.span().start,
                        format!("a `context` entry of step `{id}` names nothing to read"),
                    )
                    .with_hint(CONTEXT_HINT));
            }
            [one] => one,
            [(first, _), (second, v), ..] => {
                return Err(self
                    .err(
                        v.span().start,
                        format!("a `context` entry has both `{first}` and `{second}`"),
                    )
                    .with_hint("an entry reads one thing; write one entry for each"));
            }
        };
        if let (Some(output), false) = (&c.output, kind == "from") {
            return Err(self
                .err(output.span().start, "`output` goes with `from`")
                .with_hint(r#"`{ from = "<step>", output = "<path>" }` reads one of the declared outputs of an earlier step; any other file of the worktree is `{ file = "<path>" }`"#));
        }
        let required = c.required.as_ref().is_some_and(|r| *r.get_ref());
        match kind {
            "from" => {
                if let Some(outputs) = looping_back_over(value.get_ref(), id, earlier, scope.all) {
                    let output = c
                        .output
                        .as_ref()
                        .map(|o| self.step_output(o, value.get_ref(), &outputs))
                        .transpose()?;
                    let from = StepId::parse(value.get_ref()).ok_or_else(|| {
                        self.err(
                            value.span().start,
                            format!("bad step id `{}`", value.get_ref()),
                        )
                    })?;
                    return Ok(ContextSource::Step {
                        from,
                        output,
                        required,
                        later: true,
                    });
                }
                let target = self.step_ref(value, id, earlier, scope.all, &FROM_REF)?;
                let target = &earlier[target];
                self.not_in_own_group(value, "from", id, group, target)?;
                let output = c
                    .output
                    .as_ref()
                    .map(|o| self.step_output(o, &target.id, &target.outputs))
                    .transpose()?;
                Ok(ContextSource::Step {
                    from: target.id.clone(),
                    output,
                    required,
                    later: false,
                })
            }
            "files" => Ok(ContextSource::Files {
                pattern: self.worktree_path(value, kind, scope.declared)?,
                required,
            }),
            _ => Ok(ContextSource::File {
                path: self.worktree_path(value, kind, scope.declared)?,
                required,
            }),
        }
    }

    /// `output` of a context entry: one of the `outputs` step `from` declares, as written.
    fn step_output(&self, output: &Str, from: &str, outputs: &[String]) -> Result<String> {
        let name = output.get_ref();
        if outputs.contains(name) {
            return Ok(name.clone());
        }
        let at = output.span().start;
        if outputs.is_empty() {
            return Err(self
                .err(at, format!("step `{from}` declares no outputs"))
                .with_hint(format!(
                    "add `outputs = [\"{name}\"]` to step `{from}`, or leave out `output` to get its final message"
                )));
        }
        let mut hint = match closest(name, outputs.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        hint.push_str(&format!(
            "outputs of step `{from}`: {}",
            backticked(outputs.iter().map(String::as_str))
        ));
        Err(self
            .err(at, format!("`{name}` is not an output of step `{from}`"))
            .with_hint(hint))
    }

    /// A path or glob of the worktree (a template), for `file` and `files`.
    fn worktree_path(&self, value: &Str, key: &str, declared: &[&str]) -> Result<String> {
        let text = value.get_ref();
        let at = value.span().start;
        if text.trim().is_empty() {
            return Err(self
                .err(at, format!("`{key}` is empty"))
                .with_hint(CONTEXT_HINT));
        }
        self.path(value, key, declared)?;
        Ok(text.clone())
    }

    /// A path of the worktree a workflow names (a template): it stays inside — no absolute
    /// path, no `..`, no NUL, and no `{loop_reason}`, which an agent writes — and its
    /// placeholders are known. A var's value is checked when a run binds it
    /// ([`Workflow::check_paths`]).
    fn path(&self, value: &Str, key: &str, declared: &[&str]) -> Result<()> {
        let text = value.get_ref();
        if let Some(why) = escape(text) {
            let shown = text.escape_debug();
            return Err(self
                .err(
                    value.span().start,
                    format!("`{key}` must stay inside the worktree: `{shown}` {why}"),
                )
                .with_hint("write a path relative to the root of the worktree, without `..`"));
        }
        let agent_said = template::placeholders(text)
            .into_iter()
            .find(|(name, _)| *name == "loop_reason");
        if let Some((name, i)) = agent_said {
            let at = self.offset_in(value, i, &format!("{{{name}}}"));
            return Err(self
                .err(at, format!("`{{{name}}}` can't be part of a path (`{key}`)"))
                .with_hint("`{loop_reason}` is what an agent wrote, so it could name any file; name the path with vars and built-ins like `{run_id}`"));
        }
        self.template(value, declared)
    }

    fn loop_spec(
        &self,
        raw: &Spanned<RawLoop>,
        id: &str,
        group: Option<&str>,
        earlier: &[Step],
        scope: &Scope<'_>,
    ) -> Result<LoopSpec> {
        let l = raw.get_ref();
        if let Some(g) = group {
            return Err(self
                .err(raw.span().start, format!("step `{id}` is in group `{g}`, so it can't have a `loop`"))
                .with_hint("the steps of a group run side by side and are committed as one merge, so the run can't go back from one of them; put the loop on a step after the group (its `to` may name the group's first step)"));
        }
        let to = match &l.to {
            Some(to) => {
                let target = self.step_ref(to, id, earlier, scope.all, &LOOP_REF)?;
                if to.get_ref() == CONTROLLER {
                    return Err(self
                        .err(to.span().start, format!("step `{id}`'s loop can't go back to the controller"))
                        .with_hint("the conversation is had once, at the start (return to it with `git machine controller`); loop to the first step after it"));
                }
                if let Some(Step {
                    id: target,
                    group: Some(g),
                    ..
                }) = earlier.get(target)
                {
                    let first = earlier
                        .iter()
                        .find(|s| s.group.as_ref() == Some(g))
                        .expect("the target is a step of its group");
                    if first.id != *target {
                        return Err(self
                            .err(
                                to.span().start,
                                format!("`to` names step `{target}`, in the middle of group `{g}`"),
                            )
                            .with_hint(format!(
                                "a loop can go back to the start of a group: `to = \"{}\"`",
                                first.id
                            )));
                    }
                }
                match earlier.get(target) {
                    Some(step) => step.id.clone(),
                    None => this_step(id),
                }
            }
            None => this_step(id),
        };
        let max = match &l.max {
            Some(max) => self.loop_max(max)?,
            None => DEFAULT_LOOP_MAX,
        };
        let until = match &l.until {
            None => Vec::new(),
            Some(until) => match &until.get_ref().run {
                None => {
                    return Err(self
                        .err(until.span().start, "`until` has no `run`")
                        .with_hint(format!(
                            "give the command: {UNTIL_HINT}; the loop ends when it passes"
                        )));
                }
                Some(run) if run.get_ref().is_empty() => {
                    return Err(self
                        .err(run.span().start, "`run` is empty in `until`")
                        .with_hint(format!(
                            "give the command: {UNTIL_HINT}; the loop ends when it passes"
                        )));
                }
                Some(run) => self.templates(run, scope.declared)?,
            },
        };
        let continue_on_max = match &l.on_max {
            Some(on_max) => self.one_of(on_max, "on_max", ON_MAX)? == "continue",
            None => false,
        };
        Ok(LoopSpec {
            to,
            max,
            until,
            continue_on_max,
        })
    }

    fn loop_max(&self, max: &Spanned<toml::Value>) -> Result<u32> {
        let at = max.span().start;
        match max.get_ref() {
            toml::Value::Integer(n) if *n >= 1 => u32::try_from(*n).map_err(|_| {
                self.err(at, format!("`max` is too large: {n}"))
                    .with_hint(format!("`max` is at most {}", u32::MAX))
            }),
            toml::Value::Integer(n) => Err(self
                .err(at, format!("`max` must be at least 1, found {n}"))
                .with_hint(format!(
                    "`max` is how many times the loop may go back; leave it out for {DEFAULT_LOOP_MAX}"
                ))),
            other => Err(self
                .err(
                    at,
                    format!("`max` must be a whole number, found {}", other.type_str()),
                )
                .with_hint(format!("write it without quotes, e.g. `max = {DEFAULT_LOOP_MAX}`"))),
        }
    }

    fn context_limit(&self, value: &Spanned<toml::Value>) -> Result<usize> {
        let at = value.span().start;
        let zero = || {
            self.err(at, "`context_limit` must be more than zero")
                .with_hint(format!("leave it out for the default; {SIZE_HINT}"))
        };
        match value.get_ref() {
            toml::Value::Integer(n) if *n > 0 => Ok(usize::try_from(*n).unwrap_or(usize::MAX)),
            toml::Value::Integer(_) => Err(zero()),
            toml::Value::String(text) => match parse_size(text) {
                Some(0) => Err(zero()),
                Some(n) => Ok(n),
                None => Err(self
                    .err(at, format!("bad size `{text}` for `context_limit`"))
                    .with_hint(SIZE_HINT)),
            },
            other => Err(self
                .err(
                    at,
                    format!(
                        "`context_limit` must be a number of bytes, found {}",
                        other.type_str()
                    ),
                )
                .with_hint(SIZE_HINT)),
        }
    }

    /// `when` or `when_any`: options of the condition groups.
    fn conditions(
        &self,
        names: Option<&Spanned<Names>>,
        key: &str,
        id: &str,
        scope: &Scope<'_>,
    ) -> Result<Vec<String>> {
        let Some(names) = names else {
            return Ok(Vec::new());
        };
        let list = self.names(names, key)?;
        if list.is_empty() && key == "when_any" {
            return Err(self
                .err(names.span().start, format!("`when_any` is empty in step `{id}`"))
                .with_hint("with no condition to meet the step would never run; leave `when_any` out to run it whatever was chosen"));
        }
        let known: Vec<&str> = scope
            .conditions
            .iter()
            .flat_map(|g| g.options.iter().map(|(o, _)| o.as_str()))
            .collect();
        for (name, at) in &list {
            if known.contains(&name.as_str()) {
                continue;
            }
            let is_track = scope
                .tracks
                .is_some_and(|t| t.options.iter().any(|(o, _)| o == name));
            let hint = if is_track {
                format!("`{name}` is a track, not a condition: use `tracks = [\"{name}\"]`")
            } else if known.is_empty() {
                format!("declare conditions like:{CONDITIONS_EXAMPLE}")
            } else {
                let mut hint = match closest(name, known.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                hint.push_str(&format!("conditions: {}", known.join(", ")));
                hint
            };
            let message = if known.is_empty() && !is_track {
                format!("`{key}` names condition `{name}`, but the workflow has no [[condition_groups]]")
            } else {
                format!("unknown condition `{name}`")
            };
            return Err(self.err(*at, message).with_hint(hint));
        }
        Ok(list.into_iter().map(|(name, _)| name).collect())
    }

    /// A step's `tracks`: options of `[tracks]`.
    fn track_names(
        &self,
        names: Option<&Spanned<Names>>,
        id: &str,
        scope: &Scope<'_>,
    ) -> Result<Vec<String>> {
        let Some(names) = names else {
            return Ok(Vec::new());
        };
        let list = self.names(names, "tracks")?;
        let Some(tracks) = scope.tracks else {
            if list.is_empty() {
                return Ok(Vec::new());
            }
            return Err(self
                .err(
                    names.span().start,
                    format!("step `{id}` has `tracks`, but the workflow has no [tracks]"),
                )
                .with_hint(format!("declare the tracks like:{TRACKS_EXAMPLE}")));
        };
        let known: Vec<&str> = tracks.options.iter().map(|(o, _)| o.as_str()).collect();
        for (name, at) in &list {
            if known.contains(&name.as_str()) {
                continue;
            }
            let condition = scope
                .conditions
                .iter()
                .any(|g| g.options.iter().any(|(o, _)| o == name));
            let hint = if condition {
                format!("`{name}` is a condition, not a track: use `when = [\"{name}\"]`")
            } else {
                let mut hint = match closest(name, known.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                hint.push_str(&format!("tracks: {}", known.join(", ")));
                hint
            };
            return Err(self
                .err(*at, format!("unknown track `{name}`"))
                .with_hint(hint));
        }
        Ok(list.into_iter().map(|(name, _)| name).collect())
    }

    /// The names of a string-or-array value with their offsets; each may appear once.
    fn names(&self, names: &Spanned<Names>, key: &str) -> Result<Vec<(String, usize)>> {
        let list: Vec<(String, usize)> = match names.get_ref() {
            Names::One(name) => vec![(name.clone(), names.span().start)],
            Names::Many(list) => list
                .iter()
                .map(|n| (n.get_ref().clone(), n.span().start))
                .collect(),
        };
        for (i, (name, at)) in list.iter().enumerate() {
            if list[..i].iter().any(|(n, _)| n == name) {
                return Err(self
                    .err(*at, format!("`{name}` is listed twice in `{key}`"))
                    .with_hint("name each option once"));
            }
        }
        Ok(list)
    }

    fn group_id(&self, group: &Str) -> Result<String> {
        let value = group.get_ref();
        if is_id(value, false) {
            return Ok(value.clone());
        }
        Err(self.bad_id(
            group,
            "group id",
            "a group id uses lowercase letters, digits and '-', and starts with a letter or digit",
            false,
        ))
    }

    /// "bad <what> `value`", with `rule` and a suggestion as the hint.
    fn bad_id(&self, value: &Str, what: &str, rule: &str, underscore: bool) -> WorkflowError {
        let text = value.get_ref();
        let mut hint = rule.to_string();
        let suggestion: String = slug(text, underscore).chars().take(MAX_ID_LEN).collect();
        if !suggestion.is_empty() && suggestion != *text {
            hint.push_str(&format!(", e.g. `{suggestion}`"));
        }
        self.err(value.span().start, format!("bad {what} `{text}`"))
            .with_hint(hint)
    }

    // ---- tracks, conditions and parallel groups ------------------------------------------

    fn tracks(&self, raw: &Spanned<RawTracks>, taken: &mut Vec<TakenOption>) -> Result<Choice> {
        let t = raw.get_ref();
        let kind = ChoiceKind {
            owner: "[tracks]".to_string(),
            flag: "--track",
            example: TRACKS_EXAMPLE,
        };
        let at = raw.span().start;
        let question = self.question(t.question.as_ref(), at, &kind)?;
        let options = self.options(t.options.as_ref(), at, &kind, taken)?;
        let default = match &t.default {
            Some(d) => {
                vec![self.default_option(d.get_ref(), d.span().start, &options, &kind, taken)?]
            }
            None => Vec::new(),
        };
        Ok(Choice {
            id: "tracks".to_string(),
            question,
            multi: false,
            options,
            default,
        })
    }

    fn condition_groups(
        &self,
        raw: Option<&Spanned<Vec<Spanned<RawConditionGroup>>>>,
        taken: &mut Vec<TakenOption>,
    ) -> Result<Vec<Choice>> {
        let Some(raw) = raw else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Choice> = Vec::new();
        let mut id_spans: Vec<usize> = Vec::new();
        for (i, group) in raw.get_ref().iter().enumerate() {
            let g = group.get_ref();
            let at = group.span().start;
            let Some(id) = &g.id else {
                return Err(self
                    .err(at, format!("condition group #{} has no `id`", i + 1))
                    .with_hint(r#"add a line like `id = "features"`"#));
            };
            let value = id.get_ref();
            if !is_id(value, true) {
                return Err(self.bad_id(
                    id,
                    "condition group id",
                    "a condition group id uses lowercase letters, digits, '_' and '-', and starts with a letter or digit",
                    true,
                ));
            }
            if let Some(first) = out.iter().position(|c| c.id == *value) {
                let (line, _) = line_column(self.source, id_spans[first]);
                return Err(self
                    .err(
                        id.span().start,
                        format!("duplicate condition group id `{value}`"),
                    )
                    .with_hint(format!(
                        "the first condition group `{value}` is at line {line}; ids must be unique"
                    )));
            }
            let kind = ChoiceKind {
                owner: format!("condition group `{value}`"),
                flag: "--with",
                example: CONDITIONS_EXAMPLE,
            };
            let question = self.question(g.question.as_ref(), at, &kind)?;
            let options = self.options(g.options.as_ref(), at, &kind, taken)?;
            let multi = g.multi.as_ref().is_some_and(|m| *m.get_ref());
            let default = match &g.default {
                None => Vec::new(),
                Some(d) => {
                    let names = self.names(d, "default")?;
                    if let (false, Some((_, second))) = (multi, names.get(1)) {
                        return Err(self
                            .err(
                                *second,
                                format!(
                                    "condition group `{value}` has {} defaults but is not `multi`",
                                    names.len()
                                ),
                            )
                            .with_hint(
                                "add `multi = true` so that several options can be chosen, or keep one default",
                            ));
                    }
                    names
                        .iter()
                        .map(|(name, at)| self.default_option(name, *at, &options, &kind, taken))
                        .collect::<Result<_>>()?
                }
            };
            out.push(Choice {
                id: value.clone(),
                question,
                multi,
                options,
                default,
            });
            id_spans.push(id.span().start);
        }
        Ok(out)
    }

    fn question(&self, question: Option<&Str>, at: usize, kind: &ChoiceKind) -> Result<String> {
        let ask = format!(
            "the question is asked when a run does not answer it with `{}`",
            kind.flag
        );
        match question {
            None => Err(self
                .err(at, format!("{} has no `question`", kind.owner))
                .with_hint(format!("add `question = \"...\"`; {ask}"))),
            Some(q) if q.get_ref().trim().is_empty() => Err(self
                .err(
                    q.span().start,
                    format!("`question` is empty in {}", kind.owner),
                )
                .with_hint(ask)),
            Some(q) => Ok(q.get_ref().clone()),
        }
    }

    /// The options of a question, in file order; their ids must be new across all questions.
    fn options(
        &self,
        options: Option<&Spanned<StrMap>>,
        at: usize,
        kind: &ChoiceKind,
        taken: &mut Vec<TakenOption>,
    ) -> Result<Vec<(String, String)>> {
        let missing = |at| {
            self.err(at, format!("{} has no options", kind.owner))
                .with_hint(format!(
                    "list them with a description each, like:{}",
                    kind.example
                ))
        };
        let Some(options) = options else {
            return Err(missing(at));
        };
        if options.get_ref().is_empty() {
            return Err(missing(options.span().start));
        }
        let mut entries: Vec<_> = options.get_ref().iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        let mut out = Vec::new();
        for (key, description) in entries {
            let name = key.get_ref();
            if !is_id(name, true) {
                return Err(self.bad_id(key, "option id", OPTION_RULE, true));
            }
            if let Some(first) = taken.iter().find(|t| t.id == *name) {
                let (line, _) = line_column(self.source, first.at);
                return Err(self
                    .err(
                        key.span().start,
                        format!(
                            "option `{name}` of {} is also an option of {} (line {line})",
                            kind.owner, first.owner
                        ),
                    )
                    .with_hint("option ids must be unique across [tracks] and all condition groups: `--track` and `--with` name an option without its question"));
            }
            taken.push(TakenOption {
                id: name.clone(),
                at: key.span().start,
                owner: kind.owner.clone(),
            });
            out.push((name.clone(), description.get_ref().clone()));
        }
        Ok(out)
    }

    /// One name of a `default`: an option of the same question.
    fn default_option(
        &self,
        name: &str,
        at: usize,
        options: &[(String, String)],
        kind: &ChoiceKind,
        taken: &[TakenOption],
    ) -> Result<String> {
        if options.iter().any(|(o, _)| o == name) {
            return Ok(name.to_string());
        }
        let ids = options.iter().map(|(o, _)| o.as_str());
        let hint = match taken.iter().find(|t| t.id == name) {
            Some(other) => format!(
                "`{name}` is an option of {}; a default names an option of its own question",
                other.owner
            ),
            None => {
                let mut hint = match closest(name, ids.clone()) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                hint.push_str(&format!("options of {}: {}", kind.owner, backticked(ids)));
                hint
            }
        };
        Err(self
            .err(
                at,
                format!("default `{name}` is not an option of {}", kind.owner),
            )
            .with_hint(hint))
    }

    /// The parallel groups, in the order of their first step, with the settings of
    /// `[groups.<id>]`; checks that each group's steps are consecutive and at least two.
    fn groups(
        &self,
        all: &[Spanned<RawStep>],
        steps: &[Step],
        settings: Option<&BTreeMap<Str, RawGroup>>,
    ) -> Result<Vec<GroupSpec>> {
        let group_at = |i: usize| {
            let raw: &Spanned<RawStep> = &all[i];
            raw.get_ref()
                .group
                .as_ref()
                .map_or(raw.span().start, |g| g.span().start)
        };
        let mut out: Vec<GroupSpec> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let Some(g) = &step.group else {
                continue;
            };
            let Some(k) = out.iter().position(|spec| spec.id == *g) else {
                out.push(GroupSpec {
                    id: g.clone(),
                    on_conflict: None,
                });
                members.push(vec![i]);
                continue;
            };
            let last = *members[k].last().expect("a group has its first step");
            if last + 1 != i {
                let (id, last) = (&step.id, &steps[last].id);
                return Err(self
                    .err(
                        group_at(i),
                        format!("step `{id}` is in group `{g}`, which ended at step `{last}`"),
                    )
                    .with_hint(format!(
                        "the steps of a parallel group must be next to each other; move step `{id}` up after step `{last}`, or give it another group"
                    )));
            }
            members[k].push(i);
        }
        for (spec, members) in out.iter().zip(&members) {
            if let [only] = members[..] {
                let g = &spec.id;
                return Err(self
                    .err(
                        group_at(only),
                        format!("group `{g}` has only one step, `{}`", steps[only].id),
                    )
                    .with_hint(format!(
                        "a parallel group runs two or more steps side by side; add `group = \"{g}\"` to a step next to it, or remove `group`"
                    )));
            }
        }
        let Some(settings) = settings else {
            return Ok(out);
        };
        let mut entries: Vec<_> = settings.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (key, raw) in entries {
            let g = key.get_ref();
            let used: Vec<&str> = out.iter().map(|spec| spec.id.as_str()).collect();
            let Some(k) = used.iter().position(|u| u == g) else {
                let hint = if used.is_empty() {
                    format!("no step has a `group`; add `group = \"{g}\"` to the steps that should run side by side")
                } else {
                    let mut hint = match closest(g, used.iter().copied()) {
                        Some(near) => format!("did you mean `{near}`? "),
                        None => String::new(),
                    };
                    hint.push_str(&format!("groups of steps: {}", used.join(", ")));
                    hint
                };
                return Err(self
                    .err(
                        key.span().start,
                        format!("[groups.{g}] is not the group of any step"),
                    )
                    .with_hint(hint));
            };
            if let Some(resolver) = &raw.on_conflict {
                let name = resolver.get_ref();
                let at = resolver.span().start;
                let Some(step) = steps.iter().find(|s| s.id == *name) else {
                    let ids = steps.iter().map(|s| s.id.as_str());
                    let mut hint = match closest(name, ids.clone()) {
                        Some(near) => format!("did you mean `{near}`? "),
                        None => String::new(),
                    };
                    hint.push_str(&format!("steps: {}", ids.collect::<Vec<_>>().join(", ")));
                    return Err(self
                        .err(at, format!("`on_conflict` names unknown step `{name}`"))
                        .with_hint(hint));
                };
                if step.group.as_deref() == Some(g.as_str()) {
                    return Err(self
                        .err(at, format!("`on_conflict` names step `{name}`, which is in group `{g}` itself"))
                        .with_hint("conflicts between the steps of a group are resolved by a step outside it"));
                }
                out[k].on_conflict = Some(step.id.clone());
            }
        }
        Ok(out)
    }

    /// Checks the keys a step and `[defaults]` share.
    fn shared(&self, raw: SharedRaw<'_>, declared: &[&str]) -> Result<Shared> {
        Ok(Shared {
            engines: raw.engine.as_ref().map(|e| self.engines(e)).transpose()?,
            timeout: raw
                .timeout
                .as_ref()
                .map(|t| self.duration(t, "timeout"))
                .transpose()?,
            idle_timeout: raw
                .idle_timeout
                .as_ref()
                .map(|t| self.duration(t, "idle_timeout"))
                .transpose()?,
            model: raw.model.as_ref().map(|m| m.get_ref().clone()),
            reasoning: raw
                .reasoning
                .as_ref()
                .map(|r| self.one_of(r, "reasoning", REASONING).map(str::to_string))
                .transpose()?,
            permissions: raw
                .permissions
                .as_ref()
                .map(|p| {
                    self.one_of(p, "permissions", PERMISSIONS).map(|p| match p {
                        "read" => Permissions::Read,
                        "edit" => Permissions::Edit,
                        _ => Permissions::Full,
                    })
                })
                .transpose()?,
            env: match raw.env {
                Some(env) => self.env(env, declared)?,
                None => BTreeMap::new(),
            },
            args: raw
                .args
                .as_ref()
                .map(|a| self.templates(a, declared))
                .transpose()?,
            context_limit: raw
                .context_limit
                .as_ref()
                .map(|v| self.context_limit(v))
                .transpose()?,
        })
    }

    fn engines(&self, engine: &Spanned<Engines>) -> Result<Vec<String>> {
        let whole = engine.span().start;
        let names: Vec<(String, usize)> = match engine.get_ref() {
            Engines::One(name) => vec![(name.clone(), whole)],
            Engines::Many(names) => names
                .iter()
                .map(|n| (n.get_ref().clone(), n.span().start))
                .collect(),
        };
        if names.is_empty() {
            return Err(self
                .err(whole, "`engine` is an empty list")
                .with_hint(format!(
                    r#"name at least one engine, e.g. `engine = "claude"`; engines: {}"#,
                    ENGINES.join(", ")
                )));
        }
        let mut out: Vec<String> = Vec::new();
        for (name, at) in names {
            if !ENGINES.contains(&name.as_str()) {
                let mut hint = match closest(&name, ENGINES.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                hint.push_str(&format!("engines: {}", ENGINES.join(", ")));
                return Err(self
                    .err(at, format!("unknown engine `{name}`"))
                    .with_hint(hint));
            }
            if out.contains(&name) {
                return Err(self
                    .err(at, format!("engine `{name}` is listed twice"))
                    .with_hint("the list is a fallback order; name each engine once"));
            }
            out.push(name);
        }
        Ok(out)
    }

    fn duration(&self, value: &Str, key: &str) -> Result<Duration> {
        let at = value.span().start;
        let text = value.get_ref();
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => Err(self
                .err(at, format!("`{key}` must be more than zero"))
                .with_hint(format!("leave `{key}` out for no limit; {DURATION_HINT}"))),
            Ok(d) => Ok(d),
            Err(_) => Err(self
                .err(at, format!("bad duration `{text}`"))
                .with_hint(DURATION_HINT)),
        }
    }

    fn one_of<'c>(&self, value: &Str, key: &str, allowed: &[&'c str]) -> Result<&'c str> {
        let text = value.get_ref();
        if let Some(ok) = allowed.iter().find(|a| **a == text) {
            return Ok(ok);
        }
        let mut hint = match closest(text, allowed.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        hint.push_str(&format!("`{key}` is one of: {}", allowed.join(", ")));
        Err(self
            .err(value.span().start, format!("unknown {key} `{text}`"))
            .with_hint(hint))
    }

    fn env(&self, env: &StrMap, declared: &[&str]) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (key, value) in env {
            let name = key.get_ref();
            let mut chars = name.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(self
                    .err(
                        key.span().start,
                        format!("bad environment variable name `{name}`"),
                    )
                    .with_hint("use letters, digits and '_', not starting with a digit"));
            }
            self.template(value, declared)?;
            out.insert(name.clone(), value.get_ref().clone());
        }
        Ok(out)
    }

    fn templates(&self, list: &StrList, declared: &[&str]) -> Result<Vec<String>> {
        list.get_ref()
            .iter()
            .map(|t| {
                self.template(t, declared)?;
                Ok(t.get_ref().clone())
            })
            .collect()
    }

    /// Rejects placeholders that are neither declared vars nor built-ins.
    fn template(&self, value: &Str, declared: &[&str]) -> Result<()> {
        match unknown_placeholder(value.get_ref(), declared) {
            None => Ok(()),
            Some(bad) => {
                let at = self.offset_in(value, bad.at, &bad.written);
                Err(self.err(at, bad.message).with_hint(bad.hint))
            }
        }
    }

    /// The file offset of byte `i` of a string value, whose text in the file is quoted and may
    /// be escaped. Exact when the value is written without escapes; otherwise the first place
    /// `fragment` occurs in the written value, or the value's start.
    fn offset_in(&self, value: &Str, i: usize, fragment: &str) -> usize {
        let span = value.span();
        let Some(written) = self.source.get(span.clone()) else {
            return span.start;
        };
        let quote = ["\"\"\"", "'''", "\"", "'"].into_iter().find(|q| {
            written.starts_with(q) && written.ends_with(q) && written.len() >= 2 * q.len()
        });
        if let Some(q) = quote {
            let mut inner = &written[q.len()..written.len() - q.len()];
            let mut skip = q.len();
            if q.len() == 3 {
                // A newline right after the opening quotes is not part of the value.
                for nl in ["\r\n", "\n"] {
                    if let Some(rest) = inner.strip_prefix(nl) {
                        inner = rest;
                        skip += nl.len();
                        break;
                    }
                }
            }
            if inner == value.get_ref() {
                return span.start + skip + i;
            }
        }
        written
            .find(fragment)
            .map_or(span.start, |j| span.start + j)
    }
}

/// When `name` is a step after step `id` whose `loop` goes back to `id` or to a step before it
/// (so `id` runs again after it), that step's `outputs` as written; `None` for any other name,
/// which [`Checker::step_ref`] then judges. A loop without `to` goes back to its own step, after
/// `id`, so it does not count.
fn looping_back_over(
    name: &str,
    id: &str,
    earlier: &[Step],
    all: &[Spanned<RawStep>],
) -> Option<Vec<String>> {
    if name == id || earlier.iter().any(|s| s.id == name) {
        return None;
    }
    let later = all
        .iter()
        .map(Spanned::get_ref)
        .find(|s| s.id.as_ref().is_some_and(|i| i.get_ref() == name))?;
    let to = later.loop_.as_ref()?.get_ref().to.as_ref()?.get_ref();
    if to != id && !earlier.iter().any(|s| s.id == *to) {
        return None;
    }
    let outputs = later.outputs.as_ref().map_or_else(Vec::new, |list| {
        list.get_ref().iter().map(|o| o.get_ref().clone()).collect()
    });
    Some(outputs)
}

/// Shells whose `-c` script is checked for quoted placeholders. Other interpreters (`python -c`,
/// `node -e`, …) are not: their quoting rules differ, and a workflow rarely pastes into them.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh"];

/// The script of a `[<shell>, <options>…, "-c", "<script>", …]` argv (`env` in front allowed):
/// the argument after the first option cluster holding `c` (`-c`, `-ec`, `-euxc`).
fn shell_script(argv: &[Str]) -> Option<&Str> {
    let name = |a: &Str| {
        a.get_ref()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    };
    let mut args = argv
        .iter()
        .skip_while(|a| name(a) == "env" || a.get_ref().contains('='));
    let shell = args.next()?;
    if !SHELLS.contains(&name(shell).as_str()) {
        return None;
    }
    let mut args = args.skip_while(|a| {
        let a = a.get_ref();
        !(a.starts_with('-') && !a.starts_with("--") && a.contains('c'))
    });
    args.next()?;
    args.next()
}

/// The first placeholder of a template that is neither a declared var nor a built-in.
struct BadPlaceholder {
    /// Byte offset of its `{` in the template.
    at: usize,
    /// `{name}`.
    written: String,
    message: String,
    hint: String,
}

fn unknown_placeholder(text: &str, declared: &[&str]) -> Option<BadPlaceholder> {
    let (name, i) = template::placeholders(text)
        .into_iter()
        .find(|(name, _)| !declared.contains(name) && !BUILTIN_PLACEHOLDERS.contains(name))?;
    let written = format!("{{{name}}}");
    let mut hint = String::new();
    let shell = i > 0 && text.as_bytes()[i - 1] == b'$';
    if shell {
        hint.push_str(&format!(
            "for the shell's `${written}` write `${{{{{name}}}}}`; "
        ));
    } else if let Some(near) = closest(name, declared.iter().chain(BUILTIN_PLACEHOLDERS).copied()) {
        hint.push_str(&format!("did you mean `{{{near}}}`? "));
    }
    if declared.is_empty() {
        hint.push_str("no vars are declared (add one with [vars.NAME])");
    } else {
        hint.push_str(&format!("declared vars: {}", declared.join(", ")));
    }
    hint.push_str(&format!(
        "; built-ins: {}; write `{{{{` for a literal brace",
        BUILTIN_PLACEHOLDERS.join(", ")
    ));
    Some(BadPlaceholder {
        at: i,
        message: format!("unknown placeholder `{written}`"),
        written,
        hint,
    })
}

/// The id of the step being checked, which [`Checker::step_id`] has accepted.
/// A step in place of one with a mistake, so the steps after it are still checked.
fn stand_in(id: StepId) -> Step {
    Step {
        id,
        engines: vec!["command".to_string()],
        engine_named: false,
        run: vec!["true".to_string()],
        prompt: None,
        outputs: Vec::new(),
        timeout: None,
        idle_timeout: None,
        model: None,
        reasoning: None,
        permissions: None,
        env: BTreeMap::new(),
        args: Vec::new(),
        session: None,
        context: Vec::new(),
        context_limit: None,
        loop_spec: None,
        checkpoint: false,
        when: Vec::new(),
        when_any: Vec::new(),
        tracks: Vec::new(),
        group: None,
        mode: Mode::Autonomous,
        interactive_fallback: Fallback::Pause,
    }
}

fn this_step(id: &str) -> StepId {
    StepId::parse(id).expect("the step's own id was checked before its parts")
}

/// Whether `value` is an id: lowercase letters, digits and '-' (and '_' if `underscore`),
/// starting with a letter or digit, at most [`MAX_ID_LEN`] long.
fn is_id(value: &str, underscore: bool) -> bool {
    value.len() <= MAX_ID_LEN
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && value.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (underscore && c == '_')
        })
}

/// A size in bytes written as text: "20000", "20k", "20 kB", "1M", "64KiB" (k = 1000,
/// Ki = 1024). `None` if it isn't one.
fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number: usize = text[..digits].parse().ok()?;
    let unit = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "ki" | "kib" => 1024,
        "m" | "mb" => 1_000_000,
        "mi" | "mib" => 1 << 20,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// Advice for a TOML syntax error, by what toml's message says.
fn syntax_hint(message: &str) -> &'static str {
    let hints = [
        ("recursion limit", "values and keys nest at most 80 levels deep; a workflow needs four at most"),
        ("duplicate key", "a key appears once in its table, and a [table] header once in the file; remove or rename one"),
        ("invalid table header", "a table header is `[name]` on its own line; an entry of a list of tables is `[[name]]`"),
        ("invalid basic string", "a \"…\" string ends on its own line; write '''…''' for several lines, and control characters as escapes like `\\u0001`"),
        ("invalid literal string", "a '…' string ends on its own line; write '''…''' for several lines"),
        ("invalid string", r#"text is quoted: `key = "value"`"#),
        ("invalid inline table", "an inline table `{ key = \"value\", … }` is written on one line and closed with `}`"),
        ("invalid array", "an array is `[\"a\", \"b\"]`, its values separated by commas and closed with `]`"),
    ];
    hints
        .iter()
        .find(|(said, _)| message.contains(said))
        .map_or(
            "the file is not valid TOML here (see https://toml.io)",
            |(_, hint)| hint,
        )
}

/// The key names in the tail of serde's "unknown field" message:
/// "expected one of `a`, `b`", "expected `a`" or "there are no fields".
fn expected_keys(tail: &str) -> Vec<String> {
    tail.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The key whose value starts at `offset`, read from the text before it on its line (the last
/// `=` outside a string), for messages about values. `None` when it can't be told.
fn key_before(source: &str, offset: usize) -> Option<String> {
    let before = source.get(..offset)?;
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    let mut eq = None;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '=' => eq = Some(i),
            None => {}
        }
    }
    let key = line[..eq?].trim_end();
    let start = key
        .rfind(|c: char| {
            !(c.is_ascii_alphanumeric()
                || c == '_'
                || c == '-'
                || c == '"'
                || c == '\''
                || c == '.')
        })
        .map_or(0, |i| i + 1);
    let key = key[start..]
        .rsplit('.')
        .next()?
        .trim_matches(|c| c == '"' || c == '\'');
    (!key.is_empty()).then(|| key.to_string())
}

/// `text` made into a name: lowercase, runs of other characters turned into one '-'.
fn slug(text: &str, allow_underscore: bool) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || (allow_underscore && c == '_') {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// The engine of a step that names none (nor does `[defaults]`): an agent step, run by
/// [`DEFAULT_ENGINE`] unless the run gives another (`machine.engine`), when it has a prompt and
/// no `run`; else a `command` step.
fn unnamed_engine(s: &RawStep) -> Vec<String> {
    let agent = s.run.is_none() && (s.prompt.is_some() || s.prompt_file.is_some());
    vec![if agent { DEFAULT_ENGINE } else { "command" }.to_string()]
}
