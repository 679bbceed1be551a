//! The prompt a step is sent: its own text plus labelled context sections.
//!
//! Sources (`context = [...]` of a step): an earlier step's final message (`message.md` of its
//! latest record) or one of its declared outputs, files of the worktree matching a glob (tracked
//! or untracked, ignored files excluded), or one file. A missing optional source is reported in
//! the step record; a missing `required` one fails the step before its program starts.
//!
//! A step may also name a LATER step whose loop sends the run back over it (`review` looping
//! back to `implement`). On the first pass that step has no record yet: the source is empty and
//! reported as "not run yet", never an error, even when `required` — `required` applies from the
//! second pass on, once the later step has run.
//!
//! Loop feedback: when a loop has just sent the run back to this step, the checkpoint's
//! [`LoopFeedback`] (which step sent it back, the pass, the reason) becomes the FIRST section,
//! with the reason verbatim, whether or not the step declares any context.
//!
//! Budget: the sections together get at most `context_limit` bytes (default
//! [`DEFAULT_CONTEXT_LIMIT`]). Sections are kept in the order written; when over budget, the
//! LAST section is shortened first, then the one before it, and so on — so list the most
//! important source first. Every cut is reported in the record. The loop feedback counts
//! towards the budget but is never cut: the other sections are shortened to make room for it,
//! and the prompt goes over `context_limit` only when the feedback alone is longer.

use crate::git::Worktree;
use crate::store::{self, layout, LoopFeedback, RunId};
use crate::workflow::{ContextSource, ResolvedStep};

pub const DEFAULT_CONTEXT_LIMIT: usize = 200_000;

struct Section {
    label: String,
    text: String,
}

/// The full prompt and the report of what went into it. `feedback`: why a loop has just sent
/// the run back to this step, if it has.
pub fn build(
    run: &RunId,
    wt: &Worktree,
    step: &ResolvedStep,
    feedback: Option<&LoopFeedback>,
) -> Result<(String, Vec<String>), String> {
    let prompt = step.prompt.clone().unwrap_or_default();
    if step.context.is_empty() && feedback.is_none() {
        return Ok((prompt, Vec::new()));
    }
    let mut sections = Vec::new();
    let mut report = Vec::new();
    let first = feedback.map(|f| {
        let section = feedback_section(f);
        report.push(format!(
            "loop feedback from `{}` (pass {}, {} bytes)",
            f.from,
            f.pass,
            section.text.len()
        ));
        section
    });
    for source in &step.context {
        if let ContextSource::Step {
            from,
            output,
            later: true,
            ..
        } = source
        {
            if latest_record(run, wt, from).is_none() {
                let what = match output {
                    Some(output) => format!("output `{output}` of step `{from}`"),
                    None => format!("result of step `{from}`"),
                };
                report.push(format!(
                    "not run yet: {what} (a later step that loops back here; empty on the first pass)"
                ));
                continue;
            }
        }
        let (found, required, what) = match source {
            ContextSource::Step {
                from,
                output: Some(output),
                required,
                ..
            } => (
                read(wt, output).map(|text| {
                    vec![Section {
                        label: format!("Output `{output}` of step `{from}`"),
                        text,
                    }]
                }),
                *required,
                format!("output `{output}` of step `{from}`"),
            ),
            ContextSource::Step {
                from,
                output: None,
                required,
                ..
            } => (
                last_message(run, wt, from).map(|text| {
                    vec![Section {
                        label: format!("Result of step `{from}`"),
                        text,
                    }]
                }),
                *required,
                format!("result of step `{from}`"),
            ),
            ContextSource::File { path, required } => (
                read(wt, path).map(|text| {
                    vec![Section {
                        label: format!("File `{path}`"),
                        text,
                    }]
                }),
                *required,
                format!("file `{path}`"),
            ),
            ContextSource::Files { pattern, required } => (
                matching(wt, pattern).map(|files| {
                    files
                        .into_iter()
                        .map(|(path, text)| Section {
                            label: format!("File `{path}`"),
                            text,
                        })
                        .collect()
                }),
                *required,
                format!("files `{pattern}`"),
            ),
        };
        match found {
            Some(list) => {
                for s in &list {
                    report.push(format!("included {} ({} bytes)", s.label, s.text.len()));
                }
                sections.extend(list);
            }
            None if required => {
                return Err(format!(
                    "required context missing: {what} (give it, or drop `required = true`)"
                ))
            }
            None => report.push(format!("missing (optional): {what}")),
        }
    }
    let limit = step.context_limit.unwrap_or(DEFAULT_CONTEXT_LIMIT);
    let mut total: usize = sections.iter().map(|s| s.text.len()).sum::<usize>()
        + first.as_ref().map_or(0, |f| f.text.len());
    for s in sections.iter_mut().rev() {
        if total <= limit {
            break;
        }
        let excess = total - limit;
        let keep = s.text.len().saturating_sub(excess);
        let mut cut_at = keep;
        while !s.text.is_char_boundary(cut_at) {
            cut_at -= 1;
        }
        let cut = s.text.len() - cut_at;
        s.text.truncate(cut_at);
        s.text
            .push_str(&format!("\n[… {cut} bytes cut to fit the context limit]"));
        total -= cut;
        report.push(format!(
            "cut {cut} bytes of {} (context_limit {limit})",
            s.label
        ));
    }
    let mut full = prompt;
    if first.is_none() && sections.is_empty() {
        return Ok((full, report));
    }
    full.push_str("\n\n# Context\n");
    for s in first.into_iter().chain(sections) {
        full.push_str(&format!("\n## {}\n\n{}\n", s.label, s.text.trim_end()));
    }
    Ok((full, report))
}

/// The section telling a step why it runs again; the reason goes in as given.
fn feedback_section(f: &LoopFeedback) -> Section {
    let reason = if f.reason.trim().is_empty() {
        "(no reason was given)"
    } else {
        f.reason.as_str()
    };
    Section {
        label: format!("Why this step runs again (pass {})", f.pass),
        text: format!(
            "Step `{}` sent the run back to this step. Its reason:\n\n{reason}",
            f.from
        ),
    }
}

fn read(wt: &Worktree, rel: &str) -> Option<String> {
    let bytes = std::fs::read(wt.path.join(rel)).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `message.md` of the latest record of `step` in the run's folder of the worktree.
pub(super) fn last_message(run: &RunId, wt: &Worktree, step: &str) -> Option<String> {
    let latest = latest_record(run, wt, step)?;
    read(
        wt,
        &format!("{}/{}", store::record_dir(run, &latest), layout::MESSAGE),
    )
}

/// The folder name (`NN-<step>`) of the latest record of `step`, if it has run.
fn latest_record(run: &RunId, wt: &Worktree, step: &str) -> Option<String> {
    let steps = wt.path.join(run.dir()).join("steps");
    let suffix = format!("-{step}");
    let mut names: Vec<String> = std::fs::read_dir(&steps)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.ends_with(&suffix)
                && n[..n.len() - suffix.len()]
                    .chars()
                    .all(|c| c.is_ascii_digit())
        })
        .collect();
    names.sort_by_key(|n| n[..n.len() - suffix.len()].parse::<u32>().unwrap_or(0));
    names.pop()
}

fn matching(wt: &Worktree, pattern: &str) -> Option<Vec<(String, String)>> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()?
        .compile_matcher();
    let listed = wt.unignored_files().ok()?;
    let mut files: Vec<&str> = listed
        .iter()
        .map(String::as_str)
        .filter(|p| !p.starts_with(layout::RUNS_DIR) && glob.is_match(p))
        .collect();
    files.sort_unstable();
    files.dedup();
    let found: Vec<(String, String)> = files
        .into_iter()
        .filter_map(|p| read(wt, p).map(|t| (p.to_string(), t)))
        .collect();
    (!found.is_empty()).then_some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = "250101-000000-abc";

    /// Step `implement` of a workflow whose `review` loops back to it; `implement` gets
    /// `extra` (its context and the like) added.
    fn implement(extra: &str) -> ResolvedStep {
        let text = format!(
            "version = 1\nname = \"t\"\n[[steps]]\nid = \"implement\"\nengine = \"claude\"\nprompt = \"Implement it.\"\n{extra}\n[[steps]]\nid = \"review\"\nengine = \"claude\"\nprompt = \"Review it.\"\nloop = {{ to = \"implement\" }}\n"
        );
        let wf = crate::workflow::parse("test", &text).unwrap_or_else(|e| panic!("{e}"));
        wf.resolve(&Default::default()).remove(0)
    }

    fn worktree() -> (tempfile::TempDir, Worktree) {
        let dir = tempfile::tempdir().expect("temp dir");
        let wt = Worktree::new(dir.path().to_path_buf());
        (dir, wt)
    }

    /// Writes `message.md` of record `name` (`NN-<step>`) of the run.
    fn record(wt: &Worktree, name: &str, message: Option<&str>) {
        let dir = wt
            .path
            .join(RunId::from_stored(RUN).dir())
            .join("steps")
            .join(name);
        std::fs::create_dir_all(&dir).expect("record dir");
        if let Some(message) = message {
            std::fs::write(dir.join("message.md"), message).expect("write message");
        }
    }

    fn feedback(reason: &str) -> LoopFeedback {
        LoopFeedback {
            from: "review".into(),
            pass: 2,
            reason: reason.to_string(),
        }
    }

    const REASON: &str = "`cargo test` failed:\n  test api::{id} ... FAILED\n  {run_id} $(echo hi)";

    #[test]
    fn feedback_comes_first_with_the_reason_verbatim() {
        let (_dir, wt) = worktree();
        std::fs::write(wt.path.join("notes.md"), "the notes").expect("write notes");
        record(&wt, "02-review", Some("Missing the error case."));
        let step = implement(r#"context = [{ file = "notes.md" }, { from = "review" }]"#);
        let run = RunId::from_stored(RUN);
        let (prompt, report) =
            build(&run, &wt, &step, Some(&feedback(REASON))).expect("context builds");
        let headings: Vec<&str> = prompt.lines().filter(|l| l.starts_with("## ")).collect();
        assert_eq!(
            headings,
            [
                "## Why this step runs again (pass 2)",
                "## File `notes.md`",
                "## Result of step `review`"
            ]
        );
        assert!(
            prompt.starts_with("Implement it.\n\n# Context\n"),
            "{prompt}"
        );
        assert!(
            prompt.contains(&format!(
                "Step `review` sent the run back to this step. Its reason:\n\n{REASON}\n"
            )),
            "{prompt}"
        );
        assert!(prompt.contains("Missing the error case."), "{prompt}");
        assert!(
            report[0].starts_with("loop feedback from `review` (pass 2, "),
            "{report:?}"
        );

        // Without any declared context too.
        let (prompt, report) =
            build(&run, &wt, &implement(""), Some(&feedback("flaky"))).expect("context builds");
        assert_eq!(
            prompt,
            "Implement it.\n\n# Context\n\n## Why this step runs again (pass 2)\n\nStep `review` sent the run back to this step. Its reason:\n\nflaky\n"
        );
        assert_eq!(report.len(), 1);
        // No feedback, no context: the prompt as written.
        let (prompt, report) = build(&run, &wt, &implement(""), None).expect("builds");
        assert_eq!((prompt.as_str(), report.len()), ("Implement it.", 0));
    }

    #[test]
    fn feedback_is_never_cut_by_the_context_limit() {
        let (_dir, wt) = worktree();
        std::fs::write(wt.path.join("notes.md"), "n".repeat(1000)).expect("write notes");
        let step = implement("context = [{ file = \"notes.md\" }]\ncontext_limit = 10");
        let reason = format!("{REASON}\n{}", "r".repeat(300));
        let run = RunId::from_stored(RUN);
        let (prompt, report) =
            build(&run, &wt, &step, Some(&feedback(&reason))).expect("context builds");
        assert!(prompt.contains(&reason), "{prompt}");
        let notes = prompt
            .split("## File `notes.md`")
            .nth(1)
            .expect("notes section");
        assert!(
            notes.contains("bytes cut to fit the context limit"),
            "{notes}"
        );
        assert!(
            !notes.contains(&"n".repeat(10)),
            "notes cut to nothing: {notes}"
        );
        assert_eq!(
            report
                .iter()
                .filter(|l| l.starts_with("cut "))
                .collect::<Vec<_>>(),
            ["cut 1000 bytes of File `notes.md` (context_limit 10)"]
        );
    }

    #[test]
    fn a_later_step_is_empty_until_it_has_run() {
        let (_dir, wt) = worktree();
        let step = implement(r#"context = [{ from = "review", required = true }]"#);
        let run = RunId::from_stored(RUN);
        // First pass: no record of `review`, not an error although required.
        let (prompt, report) = build(&run, &wt, &step, None).expect("first pass builds");
        assert_eq!(prompt, "Implement it.");
        assert_eq!(
            report,
            ["not run yet: result of step `review` (a later step that loops back here; empty on the first pass)"]
        );
        // Once it has run, its latest message goes in.
        record(&wt, "02-review", Some("first review"));
        record(&wt, "04-review", Some("second review"));
        let (prompt, report) = build(&run, &wt, &step, Some(&feedback("again"))).expect("builds");
        assert!(
            prompt.ends_with("## Result of step `review`\n\nsecond review\n"),
            "{prompt}"
        );
        assert_eq!(report.len(), 2, "{report:?}");
        // From then on `required` applies.
        record(&wt, "06-review", None);
        let e = build(&run, &wt, &step, None).expect_err("required and missing");
        assert_eq!(
            e,
            "required context missing: result of step `review` (give it, or drop `required = true`)"
        );
    }
}
