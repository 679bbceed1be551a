//! The prompt a step is sent: its own text plus labelled context sections.
//!
//! Sources (`context = [...]` of a step): an earlier step's final message (`message.md` of its
//! latest record) or one of its declared outputs, files of the worktree matching a glob (tracked
//! or untracked, ignored files excluded), or one file. A missing optional source is reported in
//! the step record; a missing `required` one fails the step before its program starts.
//!
//! Budget: the sections together get at most `context_limit` bytes (default
//! [`DEFAULT_CONTEXT_LIMIT`]). Sections are kept in the order written; when over budget, the
//! LAST section is shortened first, then the one before it, and so on — so list the most
//! important source first. Every cut is reported in the record.

use crate::git::Worktree;
use crate::store::RunId;
use crate::workflow::{ContextSource, ResolvedStep};

pub const DEFAULT_CONTEXT_LIMIT: usize = 200_000;

struct Section {
    label: String,
    text: String,
}

/// The full prompt and the report of what went into it.
pub fn build(
    run: &RunId,
    wt: &Worktree,
    step: &ResolvedStep,
) -> Result<(String, Vec<String>), String> {
    let prompt = step.prompt.clone().unwrap_or_default();
    if step.context.is_empty() {
        return Ok((prompt, Vec::new()));
    }
    let mut sections = Vec::new();
    let mut report = Vec::new();
    for source in &step.context {
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
    let mut total: usize = sections.iter().map(|s| s.text.len()).sum();
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
    if sections.is_empty() {
        return Ok((full, report));
    }
    full.push_str("\n\n# Context\n");
    for s in sections {
        full.push_str(&format!("\n## {}\n\n{}\n", s.label, s.text.trim_end()));
    }
    Ok((full, report))
}

fn read(wt: &Worktree, rel: &str) -> Option<String> {
    let bytes = std::fs::read(wt.path.join(rel)).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// `message.md` of the latest record of `step` in the run's folder of the worktree.
fn last_message(run: &RunId, wt: &Worktree, step: &str) -> Option<String> {
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
    let latest = names.last()?;
    read(wt, &format!("{}/steps/{latest}/message.md", run.dir()))
}

fn matching(wt: &Worktree, pattern: &str) -> Option<Vec<(String, String)>> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .ok()?
        .compile_matcher();
    let listed = wt
        .git(&[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .ok()?;
    let mut files: Vec<&str> = listed
        .split('\0')
        .filter(|p| !p.is_empty() && !p.starts_with(".codemachine/runs/") && glob.is_match(p))
        .collect();
    files.sort_unstable();
    files.dedup();
    let found: Vec<(String, String)> = files
        .into_iter()
        .filter_map(|p| read(wt, p).map(|t| (p.to_string(), t)))
        .collect();
    (!found.is_empty()).then_some(found)
}
