//! From a workflow file's text to a validated [`Workflow`].
//!
//! Two stages: serde reads the text into the spanned structs of `raw` (syntax, unknown keys and
//! types), then [`Checker`] applies every other rule while building the model. Both stages
//! report the first mistake as a [`WorkflowError`] placed at the offending key or value, and
//! serde's wording is rewritten into ours (toml's multi-line snippet is dropped: the CLI shows
//! the position). `[defaults]` are merged here: a step's own value wins, except `env`, which is
//! merged key by key (the step's value wins for a key in both).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::error::{backticked, closest, WorkflowError};
use super::model::{Permissions, Step, VarDecl, Workflow, BUILTIN_PLACEHOLDERS, ENGINES};
use super::raw::{Engines, LooseWorkflow, RawDefaults, RawStep, RawWorkflow, Str, StrList, StrMap};
use super::template;

/// The only file format version this build reads.
const VERSION: i64 = 1;

const REASONING: &[&str] = &["minimal", "low", "medium", "high"];
const PERMISSIONS: &[&str] = &["read", "edit", "full"];
/// Keys of the file's top level.
const TOP_KEYS: &[&str] = &[
    "version",
    "name",
    "description",
    "vars",
    "defaults",
    "steps",
];
/// Keys of a step that `[defaults]` may not set.
const STEP_ONLY_KEYS: &[&str] = &["id", "run", "prompt", "outputs", "session"];
const MAX_ID_LEN: usize = 40;

const DURATION_HINT: &str = r#"write it like "90s", "10m" or "1h 30m""#;

/// Parse and validate one workflow file's text. `origin` is what messages name (a path as
/// given, or "builtin:demo").
pub fn parse(origin: &str, source: &str) -> Result<Workflow> {
    let checker = Checker { origin, source };
    let raw: RawWorkflow = toml::from_str(source).map_err(|e| checker.serde_error(&e))?;
    checker.workflow(raw)
}

/// Validates one file; knows its text so it can place errors.
struct Checker<'a> {
    origin: &'a str,
    source: &'a str,
}

/// Where in the file an offset is, to name it in messages.
enum Place {
    Top,
    /// Directly in `[vars]`.
    Vars,
    Var(String),
    Defaults,
    /// A step: its id when it has a string one, else its 1-based position.
    Step(std::result::Result<String, usize>),
    Unknown,
}

impl Place {
    /// ` in step `x``, or nothing at top level.
    fn suffix(&self) -> String {
        match self {
            Place::Top | Place::Unknown => String::new(),
            Place::Vars => " in [vars]".to_string(),
            Place::Var(name) => format!(" in var `{name}`"),
            Place::Defaults => " in [defaults]".to_string(),
            Place::Step(Ok(id)) => format!(" in step `{id}`"),
            Place::Step(Err(n)) => format!(" in step #{n}"),
        }
    }
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
        }
    }
}

type Result<T> = std::result::Result<T, WorkflowError>;

impl Checker<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> WorkflowError {
        WorkflowError::at(self.origin, self.source, offset, message)
    }

    // ---- serde errors -------------------------------------------------------------------

    /// Rewrites toml/serde's message into ours, keeping its position.
    fn serde_error(&self, e: &toml::de::Error) -> WorkflowError {
        // toml's message may run over several lines ("invalid table header\nexpected ...").
        let message = e
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        let Some(span) = e.span() else {
            return WorkflowError::new(self.origin, message);
        };
        let at = span.start;
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some((key, expected)) = rest.split_once('`') {
                return self.unknown_key(at, key, &expected_keys(expected));
            }
        }
        if let Some(rest) = message.strip_prefix("invalid type: ") {
            if let Some((found, expected)) = rest.split_once(", expected ") {
                return self.wrong_type(span, found, expected);
            }
        }
        self.err(at, message)
    }

    fn unknown_key(&self, at: usize, key: &str, allowed: &[String]) -> WorkflowError {
        let place = self.place(at);
        let message = format!("unknown key `{key}`{}", place.suffix());
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

    fn wrong_type(&self, span: Range<usize>, found: &str, expected: &str) -> WorkflowError {
        let found = found
            .replace("floating point", "float")
            .replace("sequence", "an array")
            .replace("map", "a table");
        let expected = if expected.starts_with("struct ") || expected == "a map" {
            "a table".to_string()
        } else {
            expected.replace("a sequence", "an array")
        };
        let key = key_before(self.source, span.start);
        let message = match &key {
            Some(key) => format!("expected {expected} for `{key}`, found {found}"),
            None => format!("expected {expected}, found {found}"),
        };
        let text = self.source.get(span.clone()).unwrap_or("").trim();
        let key = key.unwrap_or_default();
        let in_vars = matches!(self.place(span.start), Place::Vars);
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

    /// Which step, var or table `offset` falls in, for messages.
    fn place(&self, offset: usize) -> Place {
        let loose: Option<LooseWorkflow> = toml::from_str(self.source).ok();
        if let Some(steps) = loose.as_ref().and_then(|l| l.steps.as_ref()) {
            for (i, step) in steps.iter().enumerate() {
                if step.span().contains(&offset) {
                    let id = step.get_ref().get("id").and_then(|v| v.as_str());
                    return Place::Step(id.map(str::to_string).ok_or(i + 1));
                }
            }
        }
        // Otherwise the last table header before the offset says where we are.
        let header = self.source[..offset.min(self.source.len())]
            .lines()
            .map(str::trim)
            .rfind(|l| l.starts_with('['));
        let Some(header) = header else {
            return Place::Top;
        };
        let header = header.split('#').next().unwrap_or("").trim();
        let inner = header.trim_start_matches('[').trim_end_matches(']').trim();
        if inner == "defaults" {
            Place::Defaults
        } else if inner == "vars" {
            Place::Vars
        } else if let Some(name) = inner.strip_prefix("vars.") {
            Place::Var(name.trim().trim_matches('"').to_string())
        } else {
            Place::Unknown
        }
    }

    // ---- the model ----------------------------------------------------------------------

    fn workflow(&self, raw: RawWorkflow) -> Result<Workflow> {
        self.version(raw.version.as_ref())?;
        let name = self.name(raw.name.as_ref())?;
        let description = raw.description.map(Spanned::into_inner).unwrap_or_default();
        let vars = self.vars(raw.vars.as_ref())?;
        let declared: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
        let defaults = match &raw.defaults {
            Some(d) => self.shared(SharedRaw::from(d), &declared)?,
            None => Shared::default(),
        };
        let steps = self.steps(raw.steps.as_ref(), &defaults, &declared)?;
        Ok(Workflow {
            name,
            description,
            origin: self.origin.to_string(),
            source: self.source.to_string(),
            vars,
            steps,
            tracks: None,
            condition_groups: Vec::new(),
            groups: Vec::new(),
        })
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

    fn steps(
        &self,
        steps: Option<&Spanned<Vec<Spanned<RawStep>>>>,
        defaults: &Shared,
        declared: &[&str],
    ) -> Result<Vec<Step>> {
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
        let mut out: Vec<Step> = Vec::new();
        let mut id_spans: Vec<usize> = Vec::new();
        for (i, raw) in steps.get_ref().iter().enumerate() {
            let id = self.step_id(raw.get_ref().id.as_ref(), raw.span().start, i + 1)?;
            let id_at = raw
                .get_ref()
                .id
                .as_ref()
                .map_or(raw.span().start, |id| id.span().start);
            if let Some(first) = out.iter().position(|s| s.id == id) {
                let (line, _) = super::error::line_column(self.source, id_spans[first]);
                return Err(self
                    .err(id_at, format!("duplicate step id `{id}`"))
                    .with_hint(format!(
                        "the first step `{id}` is at line {line}; step ids must be unique"
                    )));
            }
            let step = self.step(raw, id, defaults, declared)?;
            if let Some(session) = &raw.get_ref().session {
                self.session(session, &step.id, &out, steps.get_ref())?;
            }
            out.push(step);
            id_spans.push(id_at);
        }
        Ok(out)
    }

    /// Checks one step (whose `id` is already checked) and merges `defaults` into it.
    fn step(
        &self,
        raw: &Spanned<RawStep>,
        id: String,
        defaults: &Shared,
        declared: &[&str],
    ) -> Result<Step> {
        let at = raw.span().start;
        let s = raw.get_ref();
        let own = self.shared(SharedRaw::from(s), declared)?;
        let engines = own
            .engines
            .or_else(|| defaults.engines.clone())
            .unwrap_or_else(|| vec!["command".to_string()]);

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
        let prompt = match &s.prompt {
            Some(prompt) => {
                if agent.is_some() && prompt.get_ref().trim().is_empty() {
                    return Err(self
                        .err(
                            prompt.span().start,
                            format!("`prompt` is empty in step `{id}`"),
                        )
                        .with_hint("say what the agent should do"));
                }
                self.template(prompt, declared)?;
                Some(prompt.get_ref().clone())
            }
            None => {
                if let Some(agent) = agent {
                    return Err(self
                        .err(
                            at,
                            format!("step `{id}` uses the `{agent}` engine but has no `prompt`"),
                        )
                        .with_hint(r#"add `prompt = "..."` saying what the agent should do"#));
                }
                None
            }
        };
        let outputs = match &s.outputs {
            Some(outputs) => self.templates(outputs, declared)?,
            None => Vec::new(),
        };
        let mut env = defaults.env.clone();
        env.extend(own.env);
        Ok(Step {
            id,
            engines,
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
            session: s.session.as_ref().map(|s| s.get_ref().clone()),
            context: Vec::new(),
            context_limit: None,
            loop_spec: None,
            checkpoint: false,
            when: Vec::new(),
            when_any: Vec::new(),
            tracks: Vec::new(),
            group: None,
        })
    }

    fn step_id(&self, id: Option<&Str>, step_at: usize, number: usize) -> Result<String> {
        let rule =
            "a step id uses lowercase letters, digits and '-', starts with a letter or digit, \
                    and is at most 40 characters";
        let Some(id) = id else {
            return Err(self
                .err(step_at, format!("step #{number} has no `id`"))
                .with_hint(format!(r#"add a line like `id = "build"`; {rule}"#)));
        };
        let value = id.get_ref();
        let ok = value.len() <= MAX_ID_LEN
            && value
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            return Ok(value.clone());
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

    fn session(
        &self,
        session: &Str,
        id: &str,
        earlier: &[Step],
        all: &[Spanned<RawStep>],
    ) -> Result<()> {
        let target = session.get_ref();
        let at = session.span().start;
        if earlier.iter().any(|s| s.id == *target) {
            return Ok(());
        }
        if target == id {
            return Err(self
                .err(at, format!("step `{id}` can't continue its own session"))
                .with_hint(
                    "`session` names an earlier step whose conversation this step continues",
                ));
        }
        let later = all.iter().any(|s| {
            s.get_ref()
                .id
                .as_ref()
                .is_some_and(|i| i.get_ref() == target)
        });
        if later {
            return Err(self
                .err(
                    at,
                    format!("`session` names step `{target}`, which comes after step `{id}`"),
                )
                .with_hint("a step can only continue the session of an earlier step"));
        }
        let ids: Vec<&str> = earlier.iter().map(|s| s.id.as_str()).collect();
        let mut hint = match closest(target, ids.iter().copied()) {
            Some(near) => format!("did you mean `{near}`? "),
            None => String::new(),
        };
        if ids.is_empty() {
            hint.push_str("the first step has no earlier step to continue");
        } else {
            hint.push_str(&format!("earlier steps: {}", ids.join(", ")));
        }
        Err(self
            .err(at, format!("`session` names unknown step `{target}`"))
            .with_hint(hint))
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
        let text = value.get_ref();
        for (name, i) in template::placeholders(text) {
            if declared.contains(&name) || BUILTIN_PLACEHOLDERS.contains(&name) {
                continue;
            }
            let written = format!("{{{name}}}");
            let at = self.offset_in(value, i, &written);
            let mut hint = String::new();
            let shell = i > 0 && text.as_bytes()[i - 1] == b'$';
            if shell {
                hint.push_str(&format!(
                    "for the shell's `${written}` write `${{{{{name}}}}}`; "
                ));
            } else if let Some(near) =
                closest(name, declared.iter().chain(BUILTIN_PLACEHOLDERS).copied())
            {
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
            return Err(self
                .err(at, format!("unknown placeholder `{written}`"))
                .with_hint(hint));
        }
        Ok(())
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
