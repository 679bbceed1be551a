//! Binding a run's `--var` values and expanding a workflow's placeholders with them.
//!
//! `bind_vars` is where the CLI's input meets the declarations: after it, every declared var
//! has a value and no undeclared one was given. It never asks anyone: required vars nobody gave
//! come back as [`MissingVars`], for the command line to ask on a terminal and bind again.
//! [`VarValue`] is a `--var` value as typed (`@file` reads it from a file, `@@` escapes a `@`).
//! `resolve` never fails: `parse` already checked every template, so only values the caller
//! supplies go in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{closest, WorkflowError};
use super::model::{ContextSource, ResolvedStep, VarDecl, Workflow};
use super::paths::escape;
use super::template::{expand, placeholders};

/// Values of `{loop_reason}` and `{loop_pass}` for one execution of a step, to merge into the
/// values it is resolved with. `feedback` is (reason, pass) when a loop has just sent the run
/// back to this step — the checkpoint's loop feedback — and `None` otherwise: then the reason is
/// empty and the pass is 1. Only the step a loop goes back to gets feedback; the steps after it
/// on the way back to the looping step run with `None`.
pub fn loop_values(feedback: Option<(&str, u32)>) -> [(String, String); 2] {
    let (reason, pass) = feedback.unwrap_or(("", 1));
    [
        ("loop_reason".to_string(), reason.to_string()),
        ("loop_pass".to_string(), pass.to_string()),
    ]
}

/// Why [`Workflow::bind_vars`] could not bind the given values.
#[derive(Debug, Clone, PartialEq)]
pub enum BindError {
    /// A given name the workflow does not declare.
    Unknown(WorkflowError),
    /// Required vars (no default) that were not given: a terminal may ask for them.
    Missing(MissingVars),
    /// A value that would take a path of the workflow (an output, a context file) out of the
    /// worktree: see [`Workflow::check_paths`].
    Escape(WorkflowError),
}

impl From<BindError> for WorkflowError {
    fn from(e: BindError) -> WorkflowError {
        match e {
            BindError::Unknown(e) | BindError::Escape(e) => e,
            BindError::Missing(m) => m.error(),
        }
    }
}

/// The required vars a run was not given, in declaration order (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct MissingVars {
    /// The workflow's origin and name, for the message.
    pub origin: String,
    pub workflow: String,
    pub vars: Vec<VarDecl>,
}

impl MissingVars {
    /// The error for when nobody answers: each var with its help text, and the flags that give
    /// them.
    pub fn error(&self) -> WorkflowError {
        let described: Vec<String> = self
            .vars
            .iter()
            .map(|v| match v.help.as_str() {
                "" => format!("`{}`", v.name),
                help => format!("`{}` ({help})", v.name),
            })
            .collect();
        let flags: Vec<String> = self
            .vars
            .iter()
            .map(|v| format!("--var {}=VALUE", v.name))
            .collect();
        let (noun, from_file) = match self.vars.as_slice() {
            [one] => (
                "var",
                format!(", or --var {}=@FILE to read it from a file", one.name),
            ),
            _ => (
                "vars",
                " (--var NAME=@FILE reads a value from a file)".to_string(),
            ),
        };
        WorkflowError::new(
            self.origin.clone(),
            format!(
                "workflow `{}` needs {noun} {}",
                self.workflow,
                described.join(", ")
            ),
        )
        .with_hint(format!("pass {}{from_file}", flags.join(" ")))
    }
}

/// A `--var` value as given on the command line, before any file is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarValue {
    /// The value itself; `@@x` on the command line is the value `@x`.
    Text(String),
    /// `@path`: the value is the file's text, its path relative to the current directory.
    File(PathBuf),
}

impl VarValue {
    /// `@path` names a file, `@@…` is a value starting with `@`, anything else is the value.
    pub fn parse(s: &str) -> Result<VarValue, String> {
        match s.strip_prefix('@') {
            None => Ok(VarValue::Text(s.to_string())),
            Some(rest) if rest.starts_with('@') => Ok(VarValue::Text(rest.to_string())),
            Some("") => Err(
                "`@` must be followed by a file name (`@@` starts a value with a literal `@`)"
                    .to_string(),
            ),
            Some(path) => Ok(VarValue::File(PathBuf::from(path))),
        }
    }

    /// The value of var `name`: the text, or the file's text (relative to `cwd`) less one
    /// trailing newline (`\n` or `\r\n`, as editors end a file); everything else is kept. A
    /// file that cannot be read, or is not UTF-8, is an error naming the var and the path.
    pub fn read(&self, name: &str, cwd: &Path) -> Result<String, WorkflowError> {
        let path = match self {
            VarValue::Text(text) => return Ok(text.clone()),
            VarValue::File(path) => path,
        };
        let shown = path.display();
        let what = format!("cannot read var `{name}` from `{shown}` (--var {name}=@{shown})");
        let bytes = std::fs::read(cwd.join(path)).map_err(|e| {
            WorkflowError::new("", format!("{what}: {e}")).with_hint(
                "the path is relative to the current directory; \
                 `@@` starts a value with a literal `@`",
            )
        })?;
        let mut text = String::from_utf8(bytes).map_err(|_| {
            WorkflowError::new("", format!("{what}: not UTF-8 text"))
                .with_hint("a var's value is text: convert the file to UTF-8")
        })?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(text)
    }
}

impl Workflow {
    /// Check CLI `--var` pairs against declared vars: an undeclared name is
    /// [`BindError::Unknown`] (suggesting the closest declared name); required vars (no
    /// default) not given are [`BindError::Missing`], which the caller may ask for and bind
    /// again. Returns declared vars with their final values. When a name is given twice the
    /// last value wins.
    pub fn bind_vars(
        &self,
        given: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, BindError> {
        let declared: Vec<&str> = self.vars.iter().map(|v| v.name.as_str()).collect();
        for (name, _) in given {
            if declared.contains(&name.as_str()) {
                continue;
            }
            let mut hint = match closest(name, declared.iter().copied()) {
                Some(near) => format!("did you mean `{near}`? "),
                None => String::new(),
            };
            if declared.is_empty() {
                hint.push_str(&format!("workflow `{}` declares no vars", self.name));
            } else {
                hint.push_str(&format!("declared vars: {}", declared.join(", ")));
            }
            return Err(BindError::Unknown(
                // A mistake in the command line, not in the file: no origin.
                WorkflowError::new(
                    String::new(),
                    format!("--var {name}: workflow `{}` has no var `{name}`", self.name),
                )
                .with_hint(hint),
            ));
        }
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for var in &self.vars {
            let value = given
                .iter()
                .rev()
                .find(|(name, _)| *name == var.name)
                .map(|(_, value)| value.clone())
                .or_else(|| var.default.clone());
            match value {
                Some(value) => {
                    values.insert(var.name.clone(), value);
                }
                None => missing.push(var.clone()),
            }
        }
        if missing.is_empty() {
            self.check_paths(&values).map_err(BindError::Escape)?;
            return Ok(values);
        }
        Err(BindError::Missing(MissingVars {
            origin: self.origin.clone(),
            workflow: self.name.clone(),
            vars: missing,
        }))
    }

    /// Refuses `values` (the vars') if one takes a path of a step — an `outputs` entry, a
    /// context `file`, `files` or `output` — out of the worktree: absolute, up with `..`, or with
    /// a NUL byte once expanded. The file's own text was checked by `parse`; this is what the
    /// vars put in, checked before a run creates anything. The error names the var, the key
    /// and the step.
    pub fn check_paths(&self, values: &BTreeMap<String, String>) -> Result<(), WorkflowError> {
        for step in &self.steps {
            let context = step.context.iter().filter_map(|c| match c {
                ContextSource::Step { output, .. } => output.as_deref().map(|o| ("output", o)),
                ContextSource::Files { pattern, .. } => Some(("files", pattern.as_str())),
                ContextSource::File { path, .. } => Some(("file", path.as_str())),
            });
            let paths = step.outputs.iter().map(|o| ("outputs", o.as_str()));
            for (key, template) in paths.chain(context) {
                let used: Vec<&str> = placeholders(template)
                    .into_iter()
                    .map(|(name, _)| name)
                    .filter(|name| values.contains_key(*name))
                    .collect();
                if used.is_empty() {
                    continue;
                }
                let path = expand(template, values);
                let Some(why) = escape(&path) else {
                    continue;
                };
                let culprit = used
                    .iter()
                    .find(|name| escape(&values[**name]).is_some())
                    .or_else(|| used.iter().find(|name| values[**name].contains("..")))
                    .unwrap_or(&used[0]);
                let message = format!(
                    "var `{culprit}` takes `{key}` of step `{}` out of the worktree: `{template}` becomes `{}`, which {why}",
                    step.id,
                    path.escape_debug()
                );
                return Err(WorkflowError::new(self.origin.clone(), message).with_hint(format!(
                    "a var used in a path must keep it inside the worktree: give `{culprit}` a relative path without `..`"
                )));
            }
        }
        Ok(())
    }

    /// Expand placeholders in every step with `values` (vars and built-ins merged by the caller).
    pub fn resolve(&self, values: &BTreeMap<String, String>) -> Vec<ResolvedStep> {
        let all = |list: &[String]| list.iter().map(|t| expand(t, values)).collect::<Vec<_>>();
        self.steps
            .iter()
            .map(|s| ResolvedStep {
                id: s.id.clone(),
                engines: s.engines.clone(),
                engine_named: s.engine_named,
                engine_args: BTreeMap::new(),
                run: all(&s.run),
                prompt: s.prompt.as_deref().map(|p| expand(p, values)),
                outputs: all(&s.outputs),
                timeout: s.timeout,
                idle_timeout: s.idle_timeout,
                model: s.model.clone(),
                reasoning: s.reasoning.clone(),
                permissions: s.permissions,
                env: s
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), expand(v, values)))
                    .collect(),
                args: all(&s.args),
                session: s.session.clone(),
                context: s
                    .context
                    .iter()
                    .map(|c| match c {
                        ContextSource::Step {
                            from,
                            output,
                            required,
                            later,
                        } => ContextSource::Step {
                            from: from.clone(),
                            output: output.as_deref().map(|o| expand(o, values)),
                            required: *required,
                            later: *later,
                        },
                        ContextSource::Files { pattern, required } => ContextSource::Files {
                            pattern: expand(pattern, values),
                            required: *required,
                        },
                        ContextSource::File { path, required } => ContextSource::File {
                            path: expand(path, values),
                            required: *required,
                        },
                    })
                    .collect(),
                context_limit: s.context_limit,
                loop_spec: s.loop_spec.clone().map(|mut l| {
                    l.until = all(&l.until);
                    l
                }),
                checkpoint: s.checkpoint,
                when: s.when.clone(),
                when_any: s.when_any.clone(),
                tracks: s.tracks.clone(),
                group: s.group.clone(),
                mode: s.mode,
                interactive_fallback: s.interactive_fallback,
            })
            .collect()
    }
}
