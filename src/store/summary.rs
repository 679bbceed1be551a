//! What `status` lists of every run, cached by branch tip.
//!
//! Reading a run's record and checkpoint costs several object reads; with hundreds of runs that
//! dominates `git machine status`. The summary of a run only changes when its branch tip does,
//! so it is cached in `<common git dir>/machine/cache/runs.tsv`, one line a run:
//! `id <TAB> tip <TAB> status <TAB> next <TAB> workflow <TAB> started`. The cache is derived
//! and disposable: a missing, stale or garbled line is read from git again, and the file is
//! rewritten (atomically) only when something changed.

use std::collections::HashMap;
use std::path::Path;

use super::{list_runs, upgrade, RunId, RunRecord, State, Status, StoreError};
use crate::git::{Oid, Repo};

#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    pub id: RunId,
    pub tip: Oid,
    pub status: Status,
    pub next: Option<String>,
    pub workflow: String,
    pub started: String,
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Running => "running",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Paused => "paused",
        Status::Conflict => "conflict",
    }
}

fn parse_status(s: &str) -> Option<Status> {
    Some(match s {
        "running" => Status::Running,
        "completed" => Status::Completed,
        "failed" => Status::Failed,
        "paused" => Status::Paused,
        "conflict" => Status::Conflict,
        _ => return None,
    })
}

fn parse_line(line: &str) -> Option<RunSummary> {
    let mut f = line.split('\t');
    let id = RunId::from_stored(f.next()?);
    let tip = Oid::parse(f.next()?)?;
    let status = parse_status(f.next()?)?;
    let next = Some(f.next()?.to_string()).filter(|n| !n.is_empty());
    let workflow = f.next()?.to_string();
    let started = f.next()?.to_string();
    f.next().is_none().then_some(RunSummary {
        id,
        tip,
        status,
        next,
        workflow,
        started,
    })
}

fn line(s: &RunSummary) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\n",
        s.id,
        s.tip,
        status_name(s.status),
        s.next.as_deref().unwrap_or(""),
        s.workflow,
        s.started
    )
}

/// Read one run's summary from its tip commit (record and checkpoint only).
pub fn read_summary(repo: &Repo, id: &RunId, tip: Oid) -> Result<RunSummary, StoreError> {
    let dir = id.dir();
    let read = |name: &str| -> Result<Vec<u8>, StoreError> {
        repo.read_file(tip, &format!("{dir}/{name}"))?
            .ok_or_else(|| StoreError::Corrupt {
                run: id.to_string(),
                what: name.to_string(),
                detail: format!("missing from commit {}", tip.short()),
            })
    };
    let record: RunRecord = upgrade(id, "run.toml", &read("run.toml")?)?;
    let state: State = upgrade(id, "state.toml", &read("state.toml")?)?;
    Ok(RunSummary {
        id: id.clone(),
        tip,
        status: state.status,
        next: state.next.map(String::from),
        workflow: record.workflow,
        started: record.started,
    })
}

/// A run's summary, or why it could not be read.
pub type Listed = Result<RunSummary, StoreError>;

/// Every run's summary (or why it could not be read), oldest first, through the cache at
/// `cache_file`.
pub fn summaries(repo: &Repo, cache_file: &Path) -> Result<Vec<(RunId, Listed)>, StoreError> {
    let cached: HashMap<String, RunSummary> = std::fs::read_to_string(cache_file)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_line)
        .map(|s| (s.id.to_string(), s))
        .collect();
    let runs = list_runs(repo)?;
    let mut changed = cached.len() != runs.len();
    let mut out = Vec::with_capacity(runs.len());
    for (id, tip) in runs {
        match cached.get(id.as_str()).filter(|s| s.tip == tip) {
            Some(s) => out.push((id, Ok(s.clone()))),
            None => {
                changed = true;
                let s = read_summary(repo, &id, tip);
                out.push((id, s));
            }
        }
    }
    if changed {
        let text: String = out
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok())
            .map(line)
            .collect();
        if let Some(dir) = cache_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = cache_file.with_extension(format!("tmp{}", std::process::id()));
        // The cache only saves time: failing to write it is not an error.
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, cache_file).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_garbage_is_ignored() {
        let s = RunSummary {
            id: RunId::from_stored("261121-123503-k3f"),
            tip: Oid::parse("0123456789012345678901234567890123456789").expect("oid"),
            status: Status::Paused,
            next: Some("build".into()),
            workflow: "hello".into(),
            started: "2026-11-21T12:35:03Z".into(),
        };
        assert_eq!(parse_line(line(&s).trim_end()), Some(s.clone()));
        let done = RunSummary {
            next: None,
            status: Status::Completed,
            ..s
        };
        assert_eq!(parse_line(line(&done).trim_end()), Some(done));
        assert_eq!(parse_line("x\tnot-an-oid\trunning\t\thello\tthen"), None);
        assert_eq!(parse_line("only\ttwo"), None);
    }
}
