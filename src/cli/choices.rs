//! A run's inputs: its vars, track and conditions. Each comes from the command line (`--var`,
//! `--track`, `--with`), else is asked on a terminal, else is the workflow's default — except a
//! var without a default, which is then an error. Every answer is checked against the workflow
//! before anything is created.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use super::error::{CliError, CliResult};
use crate::workflow::{BindError, Choice, MissingVars, Workflow};

/// The run's var values: `given` (from `--var`), then on a terminal the required vars nobody
/// gave, asked one by one. `refused_by` is the flag that forbids asking (`--no-input`,
/// `--detach`), if any. Unknown names are told before anything is asked.
pub fn bind_vars(
    wf: &Workflow,
    given: &[(String, String)],
    refused_by: Option<&str>,
) -> CliResult<BTreeMap<String, String>> {
    let missing = match wf.bind_vars(given) {
        Ok(values) => return Ok(values),
        Err(BindError::Unknown(e) | BindError::Escape(e)) => return Err(e.into()),
        Err(BindError::Missing(missing)) => missing,
    };
    let mut asker = Asker::new(refused_by.is_none());
    if !asker.interactive {
        let it = if missing.vars.len() == 1 {
            "it"
        } else {
            "them"
        };
        let why = match refused_by {
            Some(flag) => format!("without {flag}, git machine asks for {it} on a terminal"),
            None => format!("git machine asks for {it} when stdin and stderr are a terminal"),
        };
        return Err(not_given(missing, &why));
    }
    let mut all = given.to_vec();
    for (i, var) in missing.vars.iter().enumerate() {
        match asker.ask_value(&var.name, &var.help)? {
            Some(value) => all.push((var.name.clone(), value)),
            None => {
                let mut left = missing.clone();
                left.vars.drain(..i);
                return Err(not_given(left, "the input ended before an answer"));
            }
        }
    }
    Ok(wf.bind_vars(&all)?)
}

/// The error for required vars nobody gave, its hint saying `why` none was asked. Not an
/// "invalid workflow": the file is fine, the run lacks input.
fn not_given(missing: MissingVars, why: &str) -> CliError {
    let e = missing.error();
    let hint = format!("{}; {why}", e.hint.as_deref().unwrap_or_default());
    CliError::usage(e.message).with_hint(hint)
}

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
            ))
            .with_hint("give one of them with --with"));
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

/// Asks questions on the terminal when there is one (stdin and stderr both terminals), on
/// stderr.
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

    /// A value for var `name`, typed on one line (surrounding whitespace dropped); an empty
    /// answer asks again. `None` when no terminal can answer or the input ends (Ctrl-D).
    fn ask_value(&mut self, name: &str, help: &str) -> CliResult<Option<String>> {
        if !self.interactive {
            return Ok(None);
        }
        let mut err = std::io::stderr();
        if !help.is_empty() {
            let _ = writeln!(err, "{name} — {help}");
        }
        loop {
            let _ = write!(err, "Value for {name}: ");
            let _ = err.flush();
            let mut line = String::new();
            if std::io::stdin().lock().read_line(&mut line)? == 0 {
                let _ = writeln!(err);
                return Ok(None);
            }
            match line.trim() {
                "" => {
                    let _ = writeln!(err, "{name} has no default: type a value (Ctrl-D gives up)");
                }
                value => return Ok(Some(value.to_string())),
            }
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
