//! Finding a workflow by name or path, and listing the available ones.
//!
//! A name is looked up in the repository's `.codemachine/workflows/<name>.toml` first, then
//! among the built-ins, so a repository can replace a built-in by writing a file of the same
//! name. Anything with a '/' or ending in `.toml` is a path, relative to the caller's cwd.
//! [`load`] also parses what it found, reading `prompt_file`s next to the workflow file.

use std::path::{Path, PathBuf};

use super::builtin::{builtin, builtin_names};
use super::error::{closest, WorkflowError};
use super::model::Workflow;
use super::parse::{parse, parse_with_base};
use super::paths::{read_text, ReadError};

/// Where a repository keeps its workflows, relative to its work tree.
const REPO_WORKFLOWS_DIR: &str = ".codemachine/workflows";

/// Look a workflow up: if `name_or_path` contains '/' or ends in ".toml" it is a path
/// (relative to `cwd`); else `<repo_workdir>/.codemachine/workflows/<name>.toml` if
/// repo_workdir is Some and that file exists, else a built-in. Returns (origin, source text).
/// Not found -> WorkflowError naming what was tried and listing available names.
/// (Callers use [`load`]; this form lets tests look at the text found.)
#[cfg(test)]
pub fn find(
    cwd: &Path,
    repo_workdir: Option<&Path>,
    name_or_path: &str,
) -> Result<(String, String), WorkflowError> {
    locate(cwd, repo_workdir, name_or_path).map(|found| (found.origin, found.source))
}

/// Find a workflow as [`find`] does and parse it; its `prompt_file`s are read relative to the
/// workflow file's directory (a built-in may not have any).
pub fn load(
    cwd: &Path,
    repo_workdir: Option<&Path>,
    name_or_path: &str,
) -> Result<Workflow, WorkflowError> {
    let found = locate(cwd, repo_workdir, name_or_path)?;
    parse_with_base(&found.origin, &found.source, found.dir.as_deref())
}

/// [`load`], with the file it was read from (`None` for a built-in): what trust is about.
pub fn load_file(
    cwd: &Path,
    repo_workdir: Option<&Path>,
    name_or_path: &str,
) -> Result<(Workflow, Option<PathBuf>), WorkflowError> {
    let found = locate(cwd, repo_workdir, name_or_path)?;
    let wf = parse_with_base(&found.origin, &found.source, found.dir.as_deref())?;
    Ok((wf, found.path))
}

/// The file a workflow name or path stands for and its text, unparsed (`None`: a built-in).
pub fn source_file(
    cwd: &Path,
    repo_workdir: Option<&Path>,
    name_or_path: &str,
) -> Result<(Option<PathBuf>, String), WorkflowError> {
    let found = locate(cwd, repo_workdir, name_or_path)?;
    Ok((found.path, found.source))
}

/// A workflow's text and where it came from.
struct Found {
    origin: String,
    source: String,
    /// The directory of the file; `None` for a built-in.
    dir: Option<PathBuf>,
    /// The file; `None` for a built-in.
    path: Option<PathBuf>,
}

fn locate(
    cwd: &Path,
    repo_workdir: Option<&Path>,
    name_or_path: &str,
) -> Result<Found, WorkflowError> {
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        let path = cwd.join(name_or_path);
        return match read_text(&path, name_or_path) {
            Ok(source) => Ok(Found {
                origin: name_or_path.to_string(),
                source,
                dir: path.parent().map(Path::to_path_buf),
                path: Some(path.clone()),
            }),
            Err(ReadError::Bad(e)) => Err(e),
            Err(ReadError::Io(e)) => {
                let mut err =
                    WorkflowError::new(name_or_path, format!("cannot read workflow file: {e}"));
                if e.kind() == std::io::ErrorKind::NotFound && !name_or_path.contains('/') {
                    let stem = name_or_path.trim_end_matches(".toml");
                    err = err.with_hint(format!(
                        "the path is relative to the current directory; to use a named workflow, leave out \".toml\": `{stem}`"
                    ));
                }
                Err(err)
            }
        };
    }
    if let Some(repo) = repo_workdir {
        let path = repo
            .join(REPO_WORKFLOWS_DIR)
            .join(format!("{name_or_path}.toml"));
        if path.is_file() {
            let origin = path
                .strip_prefix(cwd)
                .unwrap_or(&path)
                .display()
                .to_string();
            let source = read_text(&path, &origin).map_err(|e| match e {
                ReadError::Bad(e) => e,
                ReadError::Io(e) => WorkflowError::new(
                    path.display().to_string(),
                    format!("cannot read workflow file: {e}"),
                ),
            })?;
            return Ok(Found {
                origin,
                source,
                dir: path.parent().map(Path::to_path_buf),
                path: Some(path),
            });
        }
    }
    if let Some(text) = builtin(name_or_path) {
        return Ok(Found {
            origin: format!("builtin:{name_or_path}"),
            source: text.to_string(),
            dir: None,
            path: None,
        });
    }

    let names: Vec<String> = list(repo_workdir)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let mut hint = match closest(name_or_path, names.iter().map(String::as_str)) {
        Some(near) => format!("did you mean `{near}`? "),
        None => String::new(),
    };
    match repo_workdir {
        Some(repo) => hint.push_str(&format!(
            "looked for {} and the built-ins",
            repo.join(REPO_WORKFLOWS_DIR)
                .join(format!("{name_or_path}.toml"))
                .display()
        )),
        None => hint.push_str("not in a git repository, so only built-ins were searched"),
    }
    hint.push_str(&format!("; available: {}", names.join(", ")));
    Err(WorkflowError::new("", format!("no workflow named `{name_or_path}`")).with_hint(hint))
}

/// Names of workflows available: (name, description, origin) for the repo's
/// `.codemachine/workflows/*.toml` (sorted by name) then built-ins not replaced by one of
/// them. A repository file that does not parse is listed with the error as its description.
pub fn list(repo_workdir: Option<&Path>) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(repo) = repo_workdir {
        for path in repo_workflow_files(repo) {
            let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let origin = path.display().to_string();
            let description = match read_text(&path, &origin) {
                Ok(text) => match parse_with_base(&origin, &text, path.parent()) {
                    Ok(wf) => wf.description,
                    Err(e) => format!("(invalid: {})", e.message),
                },
                Err(ReadError::Bad(e)) => format!("(invalid: {})", e.message),
                Err(ReadError::Io(e)) => format!("(unreadable: {e})"),
            };
            out.push((name.to_string(), description, origin));
        }
    }
    for name in builtin_names() {
        if out.iter().any(|(n, _, _)| n == name) {
            continue;
        }
        let origin = format!("builtin:{name}");
        let text = builtin(name).expect("builtin_names lists only built-ins");
        let description = parse(&origin, text)
            .map(|wf| wf.description)
            .unwrap_or_default();
        out.push((name.to_string(), description, origin));
    }
    out
}

/// The `*.toml` files of a repository's workflow directory, sorted; none if it is missing.
fn repo_workflow_files(repo: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(repo.join(REPO_WORKFLOWS_DIR)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    files
}
