//! Binding a run's `--var` values and expanding a workflow's placeholders with them.
//!
//! `bind_vars` is where the CLI's input meets the declarations: after it, every declared var
//! has a value and no undeclared one was given. `resolve` never fails: `parse` already checked
//! every template, so only values the caller supplies go in.

use std::collections::BTreeMap;

use super::error::{closest, WorkflowError};
use super::model::{ContextSource, ResolvedStep, Workflow};
use super::template::expand;

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

impl Workflow {
    /// Check CLI `--var` pairs against declared vars: an undeclared name is an error (suggest
    /// the closest declared name), a required var (no default) not given is an error listing it
    /// with its help text. Returns declared vars with their final values. When a name is given
    /// twice the last value wins.
    pub fn bind_vars(
        &self,
        given: &[(String, String)],
    ) -> Result<BTreeMap<String, String>, WorkflowError> {
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
            return Err(WorkflowError::new(
                self.origin.clone(),
                format!("unknown var `{name}` for workflow `{}`", self.name),
            )
            .with_hint(hint));
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
                None => missing.push(var),
            }
        }
        if missing.is_empty() {
            return Ok(values);
        }
        let described: Vec<String> = missing
            .iter()
            .map(|v| match v.help.as_str() {
                "" => format!("`{}`", v.name),
                help => format!("`{}` ({help})", v.name),
            })
            .collect();
        let flags: Vec<String> = missing
            .iter()
            .map(|v| format!("--var {}=VALUE", v.name))
            .collect();
        let noun = if missing.len() == 1 { "var" } else { "vars" };
        Err(WorkflowError::new(
            self.origin.clone(),
            format!(
                "workflow `{}` needs {noun} {}",
                self.name,
                described.join(", ")
            ),
        )
        .with_hint(format!("pass {}", flags.join(" "))))
    }

    /// Expand placeholders in every step with `values` (vars and built-ins merged by the caller).
    pub fn resolve(&self, values: &BTreeMap<String, String>) -> Vec<ResolvedStep> {
        let all = |list: &[String]| list.iter().map(|t| expand(t, values)).collect::<Vec<_>>();
        self.steps
            .iter()
            .map(|s| ResolvedStep {
                id: s.id.clone(),
                engines: s.engines.clone(),
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
