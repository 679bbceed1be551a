//! `git machine trust`, and the trust check `run` and `resume` make before anything is created.
//!
//! A workflow file inside the repository's work tree may have come with a clone or a pull;
//! it runs only once the user has trusted that exact text here (`store::trust`). Built-ins and
//! files outside the repository (the user's own, named by path) need no trust. On a terminal
//! the question is asked once, showing the workflow or what changed since it was trusted;
//! `--trust` (for CI) trusts and records; otherwise the run is refused with exit 2 and the
//! command that trusts it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::error::{CliError, CliResult};
use super::Ctx;
use crate::git::Repo;
use crate::store::trust::{TrustStore, Verdict};
use crate::workflow;

/// Trust a workflow file of this repository to run (after reading it)
#[derive(Args, Debug)]
pub struct TrustArgs {
    /// Workflow name (.codemachine/workflows/<name>.toml) or path to a .toml file
    pub workflow: String,
}

pub fn run(ctx: &mut Ctx, args: &TrustArgs) -> CliResult {
    let repo = ctx.repo()?;
    let (path, source) = workflow::source_file(&ctx.env.cwd, repo.workdir(), &args.workflow)?;
    let Some((store, key)) = subject(ctx, &repo, path.as_deref())? else {
        ctx.ui.note(&format!(
            "`{}` is a built-in or outside the repository: it needs no trust",
            args.workflow
        ));
        return Ok(());
    };
    let blob = store.trust(&key, &source)?;
    ctx.ui.note(&format!(
        "trusted {key} (blob {}), recorded in {}",
        blob.short(),
        store.dir().display()
    ));
    Ok(())
}

/// Record that a workflow file git machine itself just wrote (`init`, `new`) is trusted.
pub fn trust_written(ctx: &Ctx, repo: &Repo, path: &Path, content: &str) -> CliResult {
    if let Some((store, key)) = subject(ctx, repo, Some(path))? {
        store.trust(&key, content)?;
    }
    Ok(())
}

/// How the person answers a trust question: `--trust`, and whether anyone can be asked.
pub struct Asked<'a> {
    pub trust: bool,
    pub no_input: bool,
    /// The command that trusts and goes on, for the hint (e.g. `git machine run x --trust`).
    pub again: &'a str,
}

/// Before a run starts: the workflow read from `path` with text `source` must be trusted.
pub fn check(
    ctx: &mut Ctx,
    repo: &Repo,
    path: Option<&Path>,
    source: &str,
    asked: &Asked<'_>,
) -> CliResult {
    let Some((store, key)) = subject(ctx, repo, path)? else {
        remember_outside(ctx, repo, path, source)?;
        return Ok(());
    };
    let verdict = store.verdict(&key, source)?;
    if verdict == Verdict::Trusted {
        return Ok(());
    }
    decide(ctx, &store, &key, source, &verdict, asked)
}

/// A file outside the repository is the user's own and runs without a question; its text is
/// remembered (keyed by its absolute path) so that a resume of the run knows it, too.
fn remember_outside(ctx: &Ctx, repo: &Repo, path: Option<&Path>, source: &str) -> CliResult {
    let (Some(path), Some(data), Some(workdir)) = (path, ctx.env.data_dir(), repo.workdir()) else {
        return Ok(());
    };
    let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let store = TrustStore::new(&data, workdir);
    if store.verdict(&file.display().to_string(), source)? != Verdict::Trusted {
        store.trust(&file.display().to_string(), source)?;
    }
    Ok(())
}

/// Before a resume: the workflow text stored in the run must have been trusted in this
/// repository (it was, when the run started here), or be a built-in's; a run that came from
/// another clone is asked about as a new workflow would be.
pub fn check_stored(
    ctx: &mut Ctx,
    repo: &Repo,
    name: &str,
    source: &str,
    asked: &Asked<'_>,
) -> CliResult {
    if workflow::builtin(name) == Some(source) {
        return Ok(());
    }
    let (Some(data), Some(workdir)) = (ctx.env.data_dir(), repo.workdir()) else {
        return Ok(());
    };
    let store = TrustStore::new(&data, workdir);
    if store.trusts_content(source)? {
        return Ok(());
    }
    let key = stored_key(name);
    let verdict = store.verdict(&key, source)?;
    decide(ctx, &store, &key, source, &verdict, asked)
}

/// The trust entry a run's workflow is recorded under: its file, when the run named one.
fn stored_key(name: &str) -> String {
    if name.contains('/') || name.ends_with(".toml") {
        name.to_string()
    } else {
        format!(".codemachine/workflows/{name}.toml")
    }
}

/// Trust by flag or by answer, or refuse.
fn decide(
    ctx: &mut Ctx,
    store: &TrustStore,
    key: &str,
    source: &str,
    verdict: &Verdict,
    asked: &Asked<'_>,
) -> CliResult {
    let trusted = asked.trust || ask(ctx, key, source, verdict, asked.no_input)?;
    if trusted {
        let blob = store.trust(key, source)?;
        ctx.ui
            .note(&format!("trusted {key} (blob {})", blob.short()));
        return Ok(());
    }
    let why = match verdict {
        Verdict::Changed { .. } => "has changed since you trusted it",
        _ => "is not trusted here yet (a workflow in the repository may have come with a clone or a pull)",
    };
    Err(
        CliError::usage(format!("workflow {key} {why}; nothing was run")).with_hint(format!(
            "read it, then `git machine trust {}` (or `{}`)",
            trust_name(key),
            asked.again
        )),
    )
}

/// The shortest argument of `git machine trust` that names `key`.
fn trust_name(key: &str) -> &str {
    key.strip_prefix(".codemachine/workflows/")
        .and_then(|n| n.strip_suffix(".toml"))
        .filter(|n| !n.contains('/'))
        .unwrap_or(key)
}

/// Ask on the terminal (stdin and stderr both terminals, and input allowed): the workflow, or
/// what changed since it was trusted, then `[y/N]`. `false` when no one can be asked.
fn ask(
    ctx: &mut Ctx,
    key: &str,
    source: &str,
    verdict: &Verdict,
    no_input: bool,
) -> CliResult<bool> {
    if no_input || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(false);
    }
    let shown = match verdict {
        Verdict::Changed { before } => {
            ctx.ui.note(&format!(
                "{key} has changed since you trusted it; what changed:"
            ));
            crate::ui::diff_lines(&ctx.ui, before, source, "trusted", "now")
        }
        _ => {
            ctx.ui.note(&format!(
                "{key} has not been run here before; it runs these commands and agents:"
            ));
            source.lines().map(|l| format!("  {l}")).collect()
        }
    };
    for line in shown {
        ctx.ui.note(&line);
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "Trust {key} and run it? [y/N] ");
    let _ = err.flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        let _ = writeln!(err);
        return Ok(false);
    }
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// The trust store and entry key of the workflow file `path`: `None` for a built-in (no path),
/// or a file outside the repository's work tree, or without a place to keep trust.
fn subject(ctx: &Ctx, repo: &Repo, path: Option<&Path>) -> CliResult<Option<(TrustStore, String)>> {
    let (Some(path), Some(workdir)) = (path, repo.workdir()) else {
        return Ok(None);
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (file, root): (PathBuf, PathBuf) = (canonical(path), canonical(workdir));
    let Ok(rel) = file.strip_prefix(&root) else {
        return Ok(None);
    };
    let Some(data) = ctx.env.data_dir() else {
        return Err(CliError::usage(
            "workflows of the repository need trust, and there is nowhere to keep it",
        )
        .with_hint("set HOME or XDG_DATA_HOME"));
    };
    let key = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    Ok(Some((TrustStore::new(&data, &root), key)))
}
