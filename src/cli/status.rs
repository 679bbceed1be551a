//! `git machine status`: the runs of this repository, or one run's steps.

use clap::Args;
use serde_json::json;

use super::error::CliResult;
use super::{find_run, Ctx};
use crate::git::Repo;
use crate::store::lock;
use crate::store::{self, Paths, RunId, RunInfo, Status, StepStatus};
use crate::workflow::StepId;

/// List runs with their state, or show one run's steps
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Run id or a unique prefix of it; without it, all runs are listed
    pub run: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// The state a user sees: the stored status, with `running` split by whether anyone runs it.
pub fn shown_state(paths: &Paths, info: &RunInfo) -> &'static str {
    shown(paths, &info.id, info.state.status)
}

fn shown(paths: &Paths, id: &RunId, status: Status) -> &'static str {
    match status {
        Status::Running => {
            let path = paths.lock(id);
            match lock::read(&path) {
                Some(holder) if lock::holder_alive(&holder) => "running",
                _ => "interrupted",
            }
        }
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Paused => "paused",
        Status::Conflict => "conflict",
    }
}

pub fn run(ctx: &mut Ctx, args: &StatusArgs) -> CliResult {
    let repo = ctx.repo()?;
    match &args.run {
        None => {
            super::page(ctx);
            list(ctx, &repo, args.json)
        }
        Some(given) => {
            let (id, tip) = find_run(&repo, Some(given))?;
            super::page(ctx);
            one(ctx, &repo, &id, tip, args.json)
        }
    }
}

fn list(ctx: &mut Ctx, repo: &Repo, as_json: bool) -> CliResult {
    let paths = Paths::new(repo, &ctx.env);
    let mut rows = Vec::new();
    for (id, summary) in store::summary::summaries(repo, &paths.summary_cache())? {
        match summary {
            Ok(s) => {
                let state = shown(&paths, &id, s.status);
                rows.push((
                    id.to_string(),
                    s.workflow,
                    state.to_string(),
                    s.next.unwrap_or_default(),
                    s.started,
                ));
            }
            Err(e) => rows.push((
                id.to_string(),
                "?".into(),
                format!("unreadable: {e}"),
                String::new(),
                String::new(),
            )),
        }
    }
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|(id, wf, state, step, started)| {
                json!({"id": id, "workflow": wf, "state": state, "step": step, "started": started})
            })
            .collect();
        ctx.ui
            .out(&serde_json::to_string_pretty(&list).expect("plain JSON values"));
        return Ok(());
    }
    if rows.is_empty() {
        ctx.ui.out(
            "no runs yet; start one with `git machine run <workflow>` (or try `git machine demo`)",
        );
        return Ok(());
    }
    ctx.ui.out(&format!(
        "{:<18} {:<20} {:<12} {:<16} {}",
        "RUN", "WORKFLOW", "STATE", "STEP", "STARTED"
    ));
    for (id, wf, state, step, started) in rows {
        let painted = paint_state(ctx, &state);
        ctx.ui.out(&format!(
            "{:<18} {:<20} {}{} {:<16} {}",
            id,
            wf,
            painted,
            " ".repeat(12usize.saturating_sub(state.len())),
            if step.is_empty() { "-" } else { &step },
            started
        ));
    }
    Ok(())
}

fn paint_state(ctx: &Ctx, state: &str) -> String {
    match state {
        "completed" => ctx.ui.green(state),
        "failed" | "conflict" => ctx.ui.red(state),
        "running" => ctx.ui.cyan(state),
        _ => ctx.ui.yellow(state),
    }
}

pub fn one(
    ctx: &mut Ctx,
    repo: &Repo,
    id: &RunId,
    tip: crate::git::Oid,
    as_json: bool,
) -> CliResult {
    let info = store::read_run_at(repo, id, tip)?;
    let paths = Paths::new(repo, &ctx.env);
    let state = shown_state(&paths, &info);
    let (_, commits) = store::step_commits(repo, &info)?;
    let step_ids: Vec<StepId> = match info.workflow() {
        Ok(wf) => wf.steps.iter().map(|s| s.id.clone()).collect(),
        Err(_) => commits.iter().map(|c| c.record.step.clone()).collect(),
    };
    let mut steps = Vec::new();
    for step in &step_ids {
        let last = commits.iter().rev().find(|c| &c.record.step == step);
        let runs = commits.iter().filter(|c| &c.record.step == step).count();
        // The step that failed is the one the checkpoint names; `next` may be another (a loop
        // that ran out resumes at the step it goes back to).
        let failed_here = info.state.failed.as_ref().or(info.state.next.as_ref()) == Some(step);
        let step_state = if state == "failed" && failed_here {
            "failed"
        } else if info.state.next.as_deref() == Some(step.as_str()) {
            match state {
                "running" => "running",
                "failed" => "next",
                _ => "next",
            }
        } else {
            match last.map(|c| c.record.status) {
                Some(StepStatus::Succeeded) => "done",
                Some(StepStatus::Failed) => "failed",
                Some(StepStatus::Skipped) => "skipped",
                None => "pending",
            }
        };
        steps.push((
            step.clone(),
            step_state,
            last.map(|c| c.commit.short()),
            runs,
        ));
    }
    if as_json {
        let v = json!({
            "id": id.as_str(),
            "workflow": info.record.workflow,
            "state": state,
            "next": info.state.next,
            "failed_step": info.state.failed,
            "reason": info.state.reason,
            "conflict_paths": info.state.conflict_paths,
            "worktree": paths.worktree(id).display().to_string(),
            "base": info.record.base,
            "started": info.record.started,
            "branch": format!("machine/{id}"),
            "tip": tip.to_string(),
            "vars": info.record.vars,
            "track": info.record.track,
            "conditions": info.record.conditions,
            "steps": steps.iter().map(|(s, st, c, n)| json!({"id": s, "state": st, "commit": c, "executions": n})).collect::<Vec<_>>(),
        });
        ctx.ui
            .out(&serde_json::to_string_pretty(&v).expect("plain JSON values"));
        return Ok(());
    }
    let painted = paint_state(ctx, state);
    ctx.ui.out(&format!(
        "run {}  {}  {}",
        ctx.ui.bold(id.as_str()),
        info.record.workflow,
        painted
    ));
    ctx.ui.out(&format!(
        "  branch machine/{id}, base {}, started {}",
        &info.record.base[..10],
        info.record.started
    ));
    if let Some(track) = &info.record.track {
        ctx.ui.out(&format!("  track {track}"));
    }
    if !info.record.conditions.is_empty() {
        ctx.ui.out(&format!(
            "  conditions {}",
            info.record.conditions.join(", ")
        ));
    }
    if let Some(reason) = &info.state.reason {
        ctx.ui.out(&format!("  {reason}"));
    }
    if !info.state.conflict_paths.is_empty() {
        let wt = paths.worktree(id);
        ctx.ui.out(&format!(
            "  conflicting paths (resolve them in {}):",
            wt.display()
        ));
        for p in &info.state.conflict_paths {
            ctx.ui.out(&format!("    {}", ctx.ui.red(p)));
        }
    }
    for (step, st, commit, _) in steps {
        let label = match st {
            "done" => ctx.ui.green(st),
            "failed" => ctx.ui.red(st),
            "running" => ctx.ui.cyan(st),
            "next" => ctx.ui.yellow(st),
            _ => ctx.ui.dim(st),
        };
        ctx.ui.out(&format!(
            "  {:<20} {}{} {}",
            step,
            label,
            " ".repeat(8usize.saturating_sub(st.len())),
            commit.unwrap_or_default()
        ));
    }
    match state {
        "interrupted" | "failed" | "conflict" | "paused" => ctx
            .ui
            .out(&format!("  continue with `git machine resume {id}`")),
        "completed" => ctx.ui.out(&format!(
            "  review with `git machine log {id}`, land with `git machine apply {id}`"
        )),
        _ => {}
    }
    Ok(())
}
