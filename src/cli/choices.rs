//! Choosing a run's track and conditions: from `--track` / `--with`, else asked on a terminal,
//! else the workflow's defaults. Every answer is checked against the workflow's options before
//! anything is created.

use std::io::{BufRead, IsTerminal, Write};

use super::error::{CliError, CliResult};
use crate::workflow::{Choice, Workflow};

/// (track, conditions) for a new run.
pub fn choose(
    wf: &Workflow,
    track: Option<&str>,
    with: &[String],
    interactive: bool,
) -> CliResult<(Option<String>, Vec<String>)> {
    let mut asker = Asker::new(interactive);
    let track = match (&wf.tracks, track) {
        (None, None) => None,
        (None, Some(t)) => {
            return Err(CliError::usage(format!(
                "--track {t}: workflow `{}` has no tracks",
                wf.name
            )))
        }
        (Some(q), Some(t)) => {
            if !q.options.iter().any(|(id, _)| id == t) {
                return Err(CliError::usage(format!(
                    "--track {t}: not a track of workflow `{}`",
                    wf.name
                ))
                .with_hint(format!("tracks: {}", option_list(q))));
            }
            Some(t.to_string())
        }
        (Some(q), None) => match asker.ask(q)? {
            Some(mut answer) => answer.pop(),
            None => match q.default.first() {
                Some(d) => Some(d.clone()),
                None => {
                    return Err(CliError::usage(format!(
                        "workflow `{}` asks: {}",
                        wf.name, q.question
                    ))
                    .with_hint(format!(
                        "answer with --track <id>; tracks: {}",
                        option_list(q)
                    )))
                }
            },
        },
    };
    let mut conditions = Vec::new();
    for c in with {
        if !wf
            .condition_groups
            .iter()
            .any(|g| g.options.iter().any(|(id, _)| id == c))
        {
            let all: Vec<String> = wf.condition_groups.iter().map(option_list).collect();
            return Err(CliError::usage(format!(
                "--with {c}: not a condition of workflow `{}`",
                wf.name
            ))
            .with_hint(if all.is_empty() {
                "this workflow declares no conditions".to_string()
            } else {
                format!("conditions: {}", all.join("; "))
            }));
        }
    }
    for group in &wf.condition_groups {
        let given: Vec<String> = with
            .iter()
            .filter(|c| group.options.iter().any(|(id, _)| id == *c))
            .cloned()
            .collect();
        if !group.multi && given.len() > 1 {
            return Err(CliError::usage(format!(
                "--with: `{}` takes one answer, got {}",
                group.id,
                given.join(", ")
            )));
        }
        if !given.is_empty() || !with.is_empty() {
            // Conditions given on the command line are the whole answer.
            conditions.extend(given);
            continue;
        }
        match asker.ask(group)? {
            Some(answer) => conditions.extend(answer),
            None => conditions.extend(group.default.iter().cloned()),
        }
    }
    Ok((track, conditions))
}

fn option_list(q: &Choice) -> String {
    q.options
        .iter()
        .map(|(id, _)| id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asks questions on the terminal when there is one (stdin and stderr both terminals).
struct Asker {
    interactive: bool,
}

impl Asker {
    fn new(interactive: bool) -> Asker {
        Asker {
            interactive: interactive
                && std::io::stdin().is_terminal()
                && std::io::stderr().is_terminal(),
        }
    }

    /// The chosen option ids, or `None` when no terminal can answer.
    fn ask(&mut self, q: &Choice) -> CliResult<Option<Vec<String>>> {
        if !self.interactive {
            return Ok(None);
        }
        let mut err = std::io::stderr();
        loop {
            let _ = writeln!(err, "{}", q.question);
            for (i, (id, text)) in q.options.iter().enumerate() {
                let mark = if q.default.contains(id) {
                    " (default)"
                } else {
                    ""
                };
                let _ = writeln!(err, "  {}. {id} — {text}{mark}", i + 1);
            }
            let _ = write!(
                err,
                "{} ",
                if q.multi {
                    "Choose any (numbers or ids, comma-separated):"
                } else {
                    "Choose one:"
                }
            );
            let _ = err.flush();
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let line = line.trim();
            if line.is_empty() {
                if !q.default.is_empty() || q.multi {
                    return Ok(Some(q.default.clone()));
                }
                continue;
            }
            let mut picked = Vec::new();
            let mut bad = None;
            for part in line.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let by_number = part
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| n.checked_sub(1))
                    .and_then(|n| q.options.get(n));
                match by_number.or_else(|| q.options.iter().find(|(id, _)| id == part)) {
                    Some((id, _)) => picked.push(id.clone()),
                    None => bad = Some(part.to_string()),
                }
            }
            match bad {
                Some(b) => {
                    let _ = writeln!(err, "`{b}` is not one of the options");
                }
                None if !q.multi && picked.len() != 1 => {
                    let _ = writeln!(err, "choose exactly one");
                }
                None => return Ok(Some(picked)),
            }
        }
    }
}
