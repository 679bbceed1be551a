//! `resume --reload`: a run adopts a new workflow definition (or engine, or model) for the
//! rest of its steps. The change is its own commit on the run branch (`workflow: …`, trailer
//! `Machine-Workflow`), so history shows which definition ran each step. A change that would
//! make the checkpoint meaningless is refused before anything is touched.

use similar::TextDiff;

use super::{Kind, Runner};
use crate::error::{Error, Result};
use crate::git::Worktree;
use crate::store::txn::{self, trailer};
use crate::store::{self, RunInfo};
use crate::workflow::{StepId, Workflow};

/// What a resume changes about the run.
#[derive(Default)]
pub struct Reload {
    /// The workflow as it is now; `None` keeps the run's.
    pub workflow: Option<Workflow>,
    /// Switch the remaining agent steps to this engine / model.
    pub engine: Option<String>,
    pub model: Option<String>,
}

impl Reload {
    /// Refuse a change that leaves the checkpoint pointing at nothing.
    pub fn check(&self, info: &RunInfo) -> Result {
        let Some(wf) = &self.workflow else {
            return Ok(());
        };
        let id = &info.id;
        let group_of = |wf: &Workflow, step: &str| {
            wf.steps
                .iter()
                .find(|s| s.id == step)
                .map(|s| s.group.clone())
        };
        if let Some(next) = &info.state.next {
            if group_of(wf, next).is_none() {
                return Err(Error::usage(format!(
                    "run {id} goes on at step `{next}`, which the new workflow does not have"
                ))
                .with_hint(format!(
                    "keep a step `{next}` in the workflow, or `git machine rewind {id} <step>` to a step it has, then reload"
                )));
            }
        }
        let in_group = !info.state.group_done.is_empty() || !info.state.pending_merge.is_empty();
        if in_group {
            let old = info.workflow()?;
            let members = |wf: &Workflow, g: &Option<String>| -> Vec<StepId> {
                wf.steps
                    .iter()
                    .filter(|s| &s.group == g)
                    .map(|s| s.id.clone())
                    .collect()
            };
            let group = info
                .state
                .next
                .as_ref()
                .and_then(|next| group_of(&old, next))
                .flatten();
            if group.is_some() && members(&old, &group) != members(wf, &group) {
                return Err(Error::usage(format!(
                    "run {id} is in the middle of parallel group `{}`, whose members the new workflow changes",
                    group.unwrap_or_default()
                ))
                .with_hint(format!(
                    "finish the group first (`git machine resume {id}` without --reload), then reload"
                )));
            }
        }
        Ok(())
    }
}

impl Runner<'_> {
    /// Commit the new definition (and overrides) on the run branch, the diff reported.
    pub(super) fn reload(&mut self, info: &mut RunInfo, wt: &Worktree, r: &Reload) -> Result {
        let id = info.id.clone();
        let mut next = info.clone();
        let mut changes = Vec::new();
        if let Some(wf) = &r.workflow {
            if wf.source != info.workflow_source || wf.prompt_files != info.prompt_files {
                changes.push(format!("reload {}", wf.name));
            }
            next.workflow_source = wf.source.clone();
            next.prompt_files = wf.prompt_files.clone();
            next.record.origin = wf.origin.clone();
        }
        for (key, value) in [("engine", &r.engine), ("model", &r.model)] {
            if let Some(v) = value
                .as_ref()
                .filter(|v| info.record.overrides.get(key) != Some(v))
            {
                next.record.overrides.insert(key.to_string(), v.clone());
                changes.push(format!("{key} {v}"));
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let mut diff = definition_diff(&info.workflow_source, &next.workflow_source);
        for (key, value) in &next.record.overrides {
            if info.record.overrides.get(key) != Some(value) {
                diff.push_str(&format!(
                    "-{key}: {}\n+{key}: {value}\n",
                    info.record
                        .overrides
                        .get(key)
                        .map_or("(workflow's)", String::as_str)
                ));
            }
        }
        let dir = id.dir();
        let mut files = store::run_files(&next);
        let state = store::state_path(&id);
        files.retain(|(path, _)| *path != state);
        if next.prompt_files.is_empty() && !info.prompt_files.is_empty() {
            files.push((format!("{dir}/{}", store::PROMPT_FILES), b"".to_vec()));
        }
        let subject = format!("workflow: {}", changes.join(", "));
        let message = txn::message(
            &subject,
            &[(trailer::RUN, id.as_str()), (trailer::WORKFLOW, "reload")],
        );
        let commit = txn::on_top(self.repo, &id, info.tip, files, message, None, Vec::new())?;
        super::stage::reset(wt, commit, &self.rules_at(&id, commit)?)?;
        next.tip = commit;
        *info = next;
        self.emit(&id, Kind::WorkflowChanged { commit, diff });
        Ok(())
    }
}

/// A unified diff of two workflow definitions, for people.
fn definition_diff(old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(2)
        .header("workflow (run)", "workflow (now)")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RunId, RunRecord, State, FORMAT_VERSION};
    use std::collections::BTreeMap;

    const WF: &str = "version = 1\nname = \"w\"\n[defaults]\nengine = \"command\"\n[[steps]]\nid = \"one\"\nrun = [\"true\"]\n[[steps]]\nid = \"a\"\ngroup = \"g\"\nrun = [\"true\"]\n[[steps]]\nid = \"b\"\ngroup = \"g\"\nrun = [\"true\"]\n";

    fn info(next: &str) -> RunInfo {
        RunInfo {
            id: RunId::from_stored("261130-000000-aaa"),
            tip: crate::git::Oid::parse(&"1".repeat(40)).expect("oid"),
            record: RunRecord {
                version: FORMAT_VERSION,
                run_id: "261130-000000-aaa".into(),
                workflow: "w".into(),
                origin: "w.toml".into(),
                base: "1".repeat(40),
                started: "2026-11-30T00:00:00Z".into(),
                vars: BTreeMap::new(),
                overrides: BTreeMap::new(),
                track: None,
                conditions: Vec::new(),
            },
            state: State::new(Some(next.into())),
            workflow_source: WF.into(),
            prompt_files: BTreeMap::new(),
        }
    }

    fn reload(source: &str) -> Reload {
        Reload {
            workflow: Some(crate::workflow::parse("w.toml", source).expect("valid")),
            engine: None,
            model: None,
        }
    }

    #[test]
    fn a_reload_keeping_the_next_step_is_accepted() {
        let fixed = WF.replace(
            "run = [\"true\"]\n[[steps]]\nid = \"a\"",
            "run = [\"echo\"]\n[[steps]]\nid = \"a\"",
        );
        assert!(reload(&fixed).check(&info("one")).is_ok());
    }

    #[test]
    fn a_reload_without_the_next_step_is_refused() {
        let e = reload(&WF.replace("id = \"one\"", "id = \"uno\""))
            .check(&info("one"))
            .expect_err("the checkpoint would point at nothing");
        assert_eq!(e.kind, crate::error::Kind::Usage);
        assert!(e.message.contains("step `one`"), "{}", e.message);
    }

    #[test]
    fn a_reload_changing_a_group_in_progress_is_refused() {
        let mut i = info("a");
        i.state.group_done.insert(
            "b".into(),
            crate::git::Oid::parse(&"2".repeat(40)).expect("oid"),
        );
        let with_c = format!("{WF}[[steps]]\nid = \"c\"\ngroup = \"g\"\nrun = [\"true\"]\n");
        let e = reload(&with_c).check(&i).expect_err("mid-group");
        assert!(e.message.contains("parallel group `g`"), "{}", e.message);
        assert!(reload(WF).check(&i).is_ok(), "the same members are fine");
    }
}
