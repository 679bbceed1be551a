//! Rendering a run's events: progress lines for people (stderr, with the run id alone as the
//! first line of stdout so scripts can capture it), or one JSON object per line (`--json`, on
//! stdout; the schema is docs/events.md).

use super::{elapsed, Ui};
use crate::runner::{Event, Kind, Sink};
use std::time::Duration;

pub struct Progress<'a> {
    ui: &'a mut Ui,
    json: bool,
    /// Show the steps' activity (`-v`).
    pub verbose: bool,
    /// The last failed gate, shown with the loop it causes: (step, command, ending).
    failed_gate: Option<(String, String, String)>,
    /// Turns of a reopened conversation still to be shown again (the person's own lines
    /// are on the screen already otherwise).
    replay: usize,
}

impl<'a> Progress<'a> {
    pub fn new(ui: &'a mut Ui, json: bool) -> Progress<'a> {
        Progress {
            ui,
            json,
            verbose: false,
            failed_gate: None,
            replay: 0,
        }
    }
}

fn ms(d: u64) -> String {
    elapsed(Duration::from_millis(d))
}

impl Sink for Progress<'_> {
    fn emit(&mut self, event: Event) {
        if self.json {
            let line = serde_json::to_string(&event).expect("events are plain data");
            self.ui.out(&line);
            return;
        }
        let run = event.run.clone();
        // `2026-11-30T19:24:40Z` → `19:24:40`, in front of every line of the event.
        let time = event.time.get(11..19).unwrap_or_default().to_string();
        let lines = self.lines(&run, event.kind);
        for line in lines {
            let stamp = self.ui.dim(&time);
            self.ui.note(&format!("{stamp} {line}"));
        }
    }

    /// A step's output with `-v`: in words (an agent's JSON events read as its tool calls and
    /// text), never raw JSON.
    fn output(&mut self, line: &str) {
        if self.json || !self.verbose {
            return;
        }
        if let Some(text) = super::live::activity(line) {
            self.ui.note(&format!("    {}", self.ui.dim(&text)));
        }
    }

    fn member_output(&mut self, step: &str, line: &str) {
        if self.json || !self.verbose {
            return;
        }
        if let Some(text) = super::live::activity(line) {
            self.ui.note(&format!(
                "    {} {}",
                self.ui.cyan(&format!("[{step}]")),
                self.ui.dim(&text)
            ));
        }
    }
}

impl Progress<'_> {
    /// The lines an event shows as, in plain mode.
    fn lines(&mut self, run: &str, kind: Kind) -> Vec<String> {
        match kind {
            Kind::RunStarted { .. }
            | Kind::WorkflowChanged { .. }
            | Kind::AttemptKept { .. }
            | Kind::StaleLockRemoved { .. }
            | Kind::Workspace { .. }
            | Kind::Review { .. }
            | Kind::RunFinished { .. }
            | Kind::Stopped { .. }
            | Kind::Paused { .. } => self.run_lines(run, kind),
            Kind::GroupStarted { .. }
            | Kind::MemberFinished { .. }
            | Kind::MemberFailed { .. }
            | Kind::GroupMerged { .. }
            | Kind::Conflict { .. }
            | Kind::ResolverStarted { .. }
            | Kind::Resolved { .. }
            | Kind::ResolverFailed { .. } => self.group_lines(run, kind),
            Kind::GateStarted { .. }
            | Kind::Gate { .. }
            | Kind::Loop { .. }
            | Kind::LoopExhausted { .. }
            | Kind::Directive { .. } => self.flow_lines(kind),
            _ => self.step_lines(run, kind),
        }
    }

    fn run_lines(&mut self, run: &str, kind: Kind) -> Vec<String> {
        let ui = &*self.ui;
        match kind {
            Kind::RunStarted {
                workflow,
                branch,
                worktree,
                resumed,
                next,
                ..
            } => {
                // The run id alone is the first line of stdout, so scripts can capture it.
                self.ui.out(run);
                let ui = &*self.ui;
                let Some(how) = resumed else {
                    return vec![format!(
                        "{} {} {workflow}  {}",
                        ui.bold("run"),
                        ui.cyan(run),
                        ui.dim(&format!("branch {branch}, worktree {worktree}"))
                    )];
                };
                let at = match how.as_str() {
                    "merge" => "after the resolved merge".to_string(),
                    _ => format!("at step {}", next.as_deref().unwrap_or("-")),
                };
                vec![format!(
                    "{} {} {workflow}  {}",
                    ui.bold("resume"),
                    ui.cyan(run),
                    ui.dim(&at)
                )]
            }
            Kind::WorkflowChanged { commit, diff } => {
                let mut out = vec![format!(
                    "{} {}",
                    ui.bold("workflow"),
                    ui.dim(&format!(
                        "changed for the rest of the run ({})",
                        commit.short()
                    ))
                )];
                for line in diff.lines() {
                    out.push(match line.chars().next() {
                        Some('+') if !line.starts_with("+++") => ui.green(line),
                        Some('-') if !line.starts_with("---") => ui.red(line),
                        _ => ui.dim(line),
                    });
                }
                out
            }
            Kind::AttemptKept { r#ref, commit } => vec![ui.dim(&format!(
                "kept earlier work of the unfinished step as {ref} ({})",
                commit.short(),
                ref = r#ref
            ))],
            Kind::StaleLockRemoved { path } => {
                vec![ui.dim(&format!(
                    "removed {path}, left by a process that was killed"
                ))]
            }
            Kind::Workspace {
                member,
                note,
                warning,
            } => {
                let whose = member.map(|m| format!("[{m}] ")).unwrap_or_default();
                if warning {
                    vec![format!("{} {whose}{note}", ui.yellow("warning:"))]
                } else {
                    vec![ui.dim(&format!("workspace: {whose}{note}"))]
                }
            }
            Kind::Review { commit, .. } => {
                vec![format!(
                    "{} your changes as {}",
                    ui.bold("review"),
                    commit.short()
                )]
            }
            Kind::RunFinished {
                state,
                reason,
                failed_step,
                duration_ms,
            } => match state.as_str() {
                "completed" => vec![format!(
                    "{} run {run} completed in {}{}",
                    ui.green("done"),
                    ms(duration_ms),
                    reason.map(|why| format!(" ({why})")).unwrap_or_default()
                )],
                "failed" => vec![format!(
                    "{} {}",
                    ui.red("stopped"),
                    reason.unwrap_or_else(|| format!(
                        "step `{}` failed",
                        failed_step.map(String::from).unwrap_or_default()
                    ))
                )],
                _ => Vec::new(),
            },
            Kind::Stopped { reason } => vec![format!("  {}", ui.yellow(&reason))],
            Kind::Paused { reason, worktree } => vec![format!(
                "{} {reason}: review and edit {worktree}, then `git machine resume {run}`",
                ui.yellow("paused")
            )],
            // `lines` sends only this function's kinds here.
            _ => Vec::new(),
        }
    }

    fn step_lines(&mut self, run: &str, kind: Kind) -> Vec<String> {
        let ui = &*self.ui;
        match kind {
            Kind::StepStarted { step, position, total, engines, pass, continues_session } => {
                let mut extra = engines.join(" → ");
                if let Some(p) = pass {
                    extra.push_str(&format!(", pass {p}"));
                }
                if let Some(s) = continues_session {
                    extra.push_str(&format!(", continues session {s}"));
                }
                vec![format!(
                    "{} {} {}",
                    ui.dim(&format!("[{position}/{total}]")),
                    ui.bold(&step),
                    ui.dim(&format!("({extra}) …"))
                )]
            }
            Kind::TranscriptRestored { engine, session, path, .. } => vec![ui.dim(&format!(
                "  restored the {engine} session {session} from the run's records to {path}"
            ))],
            Kind::EngineSkipped { engine, reason, .. } => {
                vec![format!("  {} {engine}: {reason}", ui.yellow("skipped"))]
            }
            Kind::StepFinished { step, commit, duration_ms, summary, .. } => vec![format!(
                "{} {step} {}  {summary}",
                ui.green("  ok"),
                ui.dim(&format!("{} {}", ms(duration_ms), commit.short()))
            )],
            Kind::StepFailed { step, reason, log, commit, duration_ms, tail } => {
                let mut out = vec![format!(
                    "{} {step} {}  {reason}",
                    ui.red("  failed"),
                    ui.dim(&format!(
                        "{} {}",
                        ms(duration_ms),
                        commit.map(|c| c.short()).unwrap_or_default()
                    ))
                )];
                out.extend(tail.iter().map(|l| format!("    {}", ui.dim(l))));
                out.push(format!("  log: {log} (in commit {}), or `git machine show {run} {step} --all`", commit.map(|c| c.short()).unwrap_or_default()));
                out
            }
            Kind::StepSkipped { step, why } => vec![format!("{} {}", ui.dim(&step), ui.dim(&format!("skipped ({why})")))],
            Kind::StepInterrupted { step, duration_ms } => vec![format!(
                "{} {step} {}",
                ui.yellow("interrupted"),
                ui.dim(&format!("after {}; `git machine resume {run}` continues it", ms(duration_ms)))
            )],
            Kind::TerminalHandedOver { step, engine } => vec![format!(
                "  {} the terminal is yours: `{step}` runs {engine}'s own interface; leave it to go on",
                ui.cyan("▶")
            )],
            Kind::TerminalTakenBack { step } => {
                vec![ui.dim(&format!("  the terminal is back from `{step}`"))]
            }
            Kind::ConversationStarted { engine, session, earlier_turns } => {
                self.replay = earlier_turns;
                let mut out = vec![format!(
                    "{} with {engine}{}: type your answers; an empty line when you are done",
                    ui.bold("controller"),
                    session.map(|s| format!(" (session {s})")).unwrap_or_default()
                )];
                if earlier_turns > 0 {
                    out.push(ui.dim(&format!("  reopened: {earlier_turns} turns so far")));
                }
                out
            }
            Kind::Turn { who, text } => {
                let replayed = self.replay > 0;
                self.replay = self.replay.saturating_sub(1);
                if who == crate::runner::controller::AGENT {
                    vec![format!("{} {text}", ui.cyan("controller ›"))]
                } else if replayed {
                    vec![format!("{} {text}", ui.dim(&format!("{who} ›")))]
                } else {
                    Vec::new()
                }
            }
            Kind::ConversationEnded { .. } => vec![ui.dim("  the workflow starts")],
            Kind::Waiting { reason, .. } => vec![format!("{} {reason}", ui.yellow("waiting"))],
            Kind::Said { step, by, text } => vec![format!(
                "  {} {by} to `{step}`: {text}",
                ui.cyan("›")
            )],
            Kind::LeftOut { step, files } => {
                let whose = step.map_or_else(|| "the commit".to_string(), |s| format!("`{s}`'s commit"));
                let mut lines = vec![ui.yellow(&format!(
                    "  left out of {whose} (still in the worktree, never committed):"
                ))];
                lines.extend(
                    files
                        .iter()
                        .map(|f| ui.yellow(&format!("    {}  {}", f.path, ui.dim(&f.reason)))),
                );
                lines.push(ui.dim("    a workflow allows one with `commit_secrets = [\"<path>\"]`"));
                lines
            }
            Kind::RecordRepaired { .. } => vec![ui.yellow(
                "  the step changed git machine's own files under .codemachine/runs/; they are kept as recorded",
            )],
            // `lines` sends only this function's kinds here.
            _ => Vec::new(),
        }
    }

    fn group_lines(&mut self, run: &str, kind: Kind) -> Vec<String> {
        let ui = &*self.ui;
        match kind {
            Kind::GroupStarted { group, members, jobs } => vec![format!(
                "{} {} {}",
                ui.bold(&format!("group {group}")),
                members.join(", "),
                ui.dim(&format!("(at most {jobs} at a time) …"))
            )],
            Kind::MemberFinished { step, commit, duration_ms, summary, .. } => vec![format!(
                "{} {step} {}  {summary}",
                ui.green("  ok"),
                ui.dim(&format!("{} {}", ms(duration_ms), commit.short()))
            )],
            Kind::MemberFailed { step, reason, duration_ms, tail, .. } => {
                let mut out = vec![format!(
                    "{} {step} {}  {reason}",
                    ui.red("  failed"),
                    ui.dim(&ms(duration_ms))
                )];
                out.extend(tail.iter().map(|l| format!("    {}", ui.dim(l))));
                out
            }
            Kind::GroupMerged { group, commit, .. } => {
                vec![format!("{} {group} {}", ui.green("  merged"), ui.dim(&commit.short()))]
            }
            Kind::Conflict { step, paths, worktree, .. } => vec![
                format!(
                    "{} merging `{step}` into the run conflicts in: {}",
                    ui.red("  conflict"),
                    paths.join(", ")
                ),
                format!("  resolve in {worktree}: edit the files, `git add` them and `git commit`, then `git machine resume {run}`"),
            ],
            Kind::ResolverStarted { step, .. } => {
                vec![format!("  {} {} resolves the conflict", ui.bold(&step), ui.dim("…"))]
            }
            Kind::Resolved { step, commit } => {
                vec![format!("{} {step} {}", ui.green("  ok"), ui.dim(&commit.short()))]
            }
            Kind::ResolverFailed { step, reason } => {
                vec![format!("  {} {step}: {reason}", ui.red("failed"))]
            }
            // `lines` sends only this function's kinds here.
            _ => Vec::new(),
        }
    }

    fn flow_lines(&mut self, kind: Kind) -> Vec<String> {
        let ui = &*self.ui;
        match kind {
            Kind::GateStarted { command, .. } => vec![format!("  {} {command}", ui.dim("gate"))],
            Kind::Gate {
                step,
                command,
                passed,
                ending,
            } => {
                if passed {
                    vec![format!(
                        "  {} `{command}` {}",
                        ui.dim("gate"),
                        ui.green("passed")
                    )]
                } else {
                    self.failed_gate =
                        Some((step.to_string(), command, ending.unwrap_or_default()));
                    Vec::new()
                }
            }
            Kind::Loop {
                step,
                to,
                pass,
                max,
                why,
            } => {
                let cause = match self.failed_gate.take().filter(|(s, _, _)| step == *s) {
                    Some((_, command, ending)) => format!("gate `{command}` failed ({ending})"),
                    None => format!(
                        "`{step}` asks to loop: {}",
                        why.lines().next().unwrap_or_default()
                    ),
                };
                vec![format!(
                    "  {} → back to {to}, pass {pass}/{max}",
                    ui.yellow(&cause)
                )]
            }
            Kind::LoopExhausted { step, max, went_on } => {
                let cause = match self.failed_gate.take().filter(|(s, _, _)| step == *s) {
                    Some((_, command, ending)) => format!("gate `{command}` failed ({ending}); "),
                    None => String::new(),
                };
                let then = if went_on { "going on" } else { "the run stops" };
                vec![format!(
                    "  {}",
                    ui.yellow(&format!(
                        "{cause}loop of `{step}` reached its max of {max} passes; {then}"
                    ))
                )]
            }
            Kind::Activity { .. } => Vec::new(),
            Kind::Directive { step, directive } => {
                vec![format!(
                    "  {} {}",
                    ui.dim("directive"),
                    ui.dim(&format!("from `{step}`: {directive}"))
                )]
            }
            // `lines` sends only this function's kinds here.
            _ => Vec::new(),
        }
    }
}
