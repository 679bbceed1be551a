//! `git machine log`: each executed step with its commit, engine, session, time and diffstat.

use clap::Args;
use serde_json::json;

use super::error::CliResult;
use super::{find_run, Ctx};
use crate::git::Repo;
use crate::store::{self, RunId, StepStatus};
use crate::workflow::StepId;

/// Show each executed step: commit, engine, session, duration and diffstat
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Run id or a unique prefix of it (default: the most recent run)
    pub run: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &mut Ctx, args: &LogArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (id, _) = find_run(&repo, args.run.as_deref())?;
    super::page(ctx);
    print(ctx, &repo, &id, args.json)
}

pub fn print(ctx: &mut Ctx, repo: &Repo, id: &RunId, as_json: bool) -> CliResult {
    let tip = repo.ref_target(&id.branch()).ok_or_else(|| {
        super::error::CliError::usage(format!("run {id} has no branch"))
            .with_hint("`git machine status` lists the runs that have one")
    })?;
    let info = store::read_run_at(repo, id, tip)?;
    let (start, commits) = store::step_commits(repo, &info)?;
    let mut entries = Vec::new();
    for c in &commits {
        let stat = repo.diffstat(c.previous, c.commit, Some(store::layout::OWN_DIR))?;
        entries.push((c, stat));
    }
    let skipped: Vec<StepId> = match info.workflow() {
        Ok(wf) => wf
            .steps
            .iter()
            .filter(|s| !crate::runner::selected(&s.when, &s.when_any, &s.tracks, &info.record))
            .map(|s| s.id.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    if as_json {
        let list: Vec<_> = entries
            .iter()
            .map(|(c, stat)| {
                json!({
                    "seq": c.record.seq,
                    "step": c.record.step,
                    "status": match c.record.status { StepStatus::Succeeded => "succeeded", StepStatus::Failed => "failed", StepStatus::Skipped => "skipped" },
                    "commit": c.commit.to_string(),
                    "engine": c.record.engine,
                    "session": c.record.session,
                    "duration_ms": c.record.duration_ms,
                    "iteration": c.record.iteration,
                    "directive": c.record.directive,
                    "gate": c.record.gate,
                    "looped": c.record.looped,
                    "summary": c.record.summary,
                    "error": c.record.error,
                    "messages": c.record.messages,
                    "left_out": c.record.left_out,
                    "files": stat.iter().map(|(p, a, d)| json!({"path": p, "added": a, "removed": d})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = json!({
            "id": id.as_str(),
            "workflow": info.record.workflow,
            "start": start.to_string(),
            "track": info.record.track,
            "conditions": info.record.conditions,
            "steps": list,
            "skipped": skipped,
        });
        ctx.ui
            .out(&serde_json::to_string_pretty(&v).expect("plain JSON values"));
        return Ok(());
    }
    ctx.ui.out(&format!(
        "run {}  {}  base {}  start {}",
        ctx.ui.bold(id.as_str()),
        info.record.workflow,
        &info.record.base[..10],
        start.short()
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
    if entries.is_empty() {
        ctx.ui.out("  no step has run yet");
    }
    for (c, stat) in entries {
        let r = &c.record;
        let status = match r.status {
            StepStatus::Succeeded => ctx.ui.green("ok"),
            StepStatus::Failed => ctx.ui.red("failed"),
            StepStatus::Skipped => ctx.ui.yellow("skipped"),
        };
        let pass = r
            .iteration
            .filter(|n| *n > 1)
            .map(|n| format!(" #{n}"))
            .unwrap_or_default();
        let session = r
            .session
            .as_deref()
            .map(|s| format!("  session {s}"))
            .unwrap_or_default();
        ctx.ui.out(&format!(
            "{} {:>2} {:<16} {} {}  {}  {}{}",
            ctx.ui.yellow(&c.commit.short()),
            r.seq,
            format!("{}{pass}", r.step),
            status,
            ctx.ui.dim(&r.engine),
            crate::ui::elapsed(std::time::Duration::from_millis(r.duration_ms)),
            r.summary,
            ctx.ui.dim(&session)
        ));
        for m in &r.messages {
            ctx.ui.out(&format!(
                "     {}",
                ctx.ui
                    .dim(&format!("{} said at {}: {}", m.by, m.at, m.text))
            ));
        }
        for l in &r.left_out {
            ctx.ui.out(&format!(
                "     {}",
                ctx.ui
                    .yellow(&format!("left out {} ({})", l.path, l.reason))
            ));
        }
        if let Some(gate) = &r.gate {
            let then = match &r.looped {
                Some(l) if !l.exhausted => {
                    format!(" → back to {}, pass {}/{}", l.to, l.pass, l.max)
                }
                Some(l) => format!("; loop reached its max of {}", l.max),
                None => String::new(),
            };
            ctx.ui.out(&format!(
                "     {}",
                ctx.ui.dim(&format!("gate {gate}{then}"))
            ));
        } else if let (Some(d), Some(l)) = (&r.directive, &r.looped) {
            ctx.ui.out(&format!(
                "     {}",
                ctx.ui.dim(&format!(
                    "directive {d} → back to {}, pass {}/{}",
                    l.to, l.pass, l.max
                ))
            ));
        } else if let Some(d) = &r.directive {
            ctx.ui
                .out(&format!("     {}", ctx.ui.dim(&format!("directive {d}"))));
        }
        let (files, added, removed) = stat
            .iter()
            .fold((0, 0, 0), |(f, a, d), (_, x, y)| (f + 1, a + x, d + y));
        for (path, a, d) in stat.iter().take(8) {
            ctx.ui.out(&format!(
                "      {path} {} {}",
                ctx.ui.green(&format!("+{a}")),
                ctx.ui.red(&format!("-{d}"))
            ));
        }
        if files > 8 {
            ctx.ui.out(&format!("      … {} more files", files - 8));
        }
        if files > 0 {
            ctx.ui.out(&ctx.ui.dim(&format!(
                "      {files} file{} changed, +{added} -{removed}",
                if files == 1 { "" } else { "s" }
            )));
        }
    }
    for step in &skipped {
        ctx.ui.out(&format!(
            "{} {step} {}",
            ctx.ui.dim("          -  "),
            ctx.ui.dim("skipped (not chosen for this run)")
        ));
    }
    Ok(())
}
