//! A worktree made ready for steps: what a fresh checkout lacks that the user's has.
//!
//! [`prepare_worktree`] is the one function every new (or re-created) worktree goes through,
//! the run's and each member's, and it may run again on a worktree that is ready: each part
//! skips what is already there.
//! - **copy**: ignored files and folders of the user's checkout (`.env`) are copied in, each
//!   file as a reflink where the file system can (`FICLONE`: no data copied), else a copy; a
//!   copy the worktree's own ignore rules do not cover is removed again, so none is committed;
//! - **link**: ignored folders (`node_modules`) become symlinks to the user's; an agent that
//!   writes there writes the user's folder. A symlink is not matched by a `node_modules/`
//!   ignore rule, so each linked path is also ignored as such in every worktree
//!   ([`Repo::exclude_everywhere`]) and never committed;
//! - **submodules**: populated recursively from the user's clones of them, at the commits the
//!   tree records, without the network, their object files hardlinked
//!   ([`Worktree::populate_submodule`]); one the user never initialised stays empty, with a
//!   warning. A step that changes a submodule fails ([`submodule_refusal`]).
//!
//! [`setup`] runs the setup command before the first program runs in a worktree, unless the
//! worktree's stamp (in its own git admin folder, so it goes with the worktree) says it ran
//! already for the same command and the same content of the `setup_key` files. A group's
//! members run theirs side by side, at most `machine.jobs` at a time.
//!
//! Paths come checked by the workflow parser (relative, no `..`); [`check_before_start`]
//! refuses, before a run is created, a path the user's checkout has but does not ignore: it
//! would be committed by the first step. [`check_lfs`] refuses a base whose LFS files cannot be
//! checked out here.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::{Kind, Runner};
use crate::engine::{self, process, Ending};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::git::{git_dir_of, Repo, Submodule, Worktree};
use crate::store::RunId;
use crate::workflow::{StepId, WorkspaceSpec};

/// Lines of a failed setup's log quoted in the step's error.
const SETUP_TAIL_LINES: usize = 20;

/// What preparing a worktree did, one line each, for the step record; warnings start with
/// [`WARNING`].
pub type Notes = Vec<String>;
pub const WARNING: &str = "warning: ";

/// A prepared worktree's notes and the workspace it was prepared for, waiting for the first
/// step that runs in it: that step runs the setup and keeps both in its record.
pub struct Fresh {
    pub spec: WorkspaceSpec,
    pub notes: Notes,
}

impl Runner<'_> {
    /// [`prepare_worktree`], each note reported as it will be recorded.
    pub(super) fn ready(
        &mut self,
        id: &RunId,
        member: Option<&StepId>,
        wt: &Worktree,
        spec: &WorkspaceSpec,
    ) -> Result<Notes> {
        let notes = prepare_worktree(self.repo, wt, spec)?;
        for note in &notes {
            self.workspace_event(id, member, note);
        }
        Ok(notes)
    }

    /// The setup before the first program that runs in `wt` (its output into `rec`'s record),
    /// its note added to `notes`: `Err` with the step's error when it failed, `Ok(false)` when
    /// Ctrl-C stopped it.
    pub(super) fn set_up(
        &mut self,
        id: &RunId,
        member: Option<&StepId>,
        (wt, rec): (&Worktree, &str),
        spec: &WorkspaceSpec,
        notes: &mut Notes,
    ) -> std::result::Result<bool, String> {
        self.setup_starts(id, member, wt, spec);
        let log = self.paths.setup_log(id, rec);
        let done = setup(self.rt, wt, spec, self.env, &log, &self.controls.cancel);
        self.setup_ended(id, member, done, notes)
    }

    /// [`Runner::set_up`] for a group's members, `(member, worktree, record)` each: their
    /// setups run side by side on the event loop, at most `machine.jobs` at a time (a setup
    /// such as `npm ci` takes as long in every member's worktree). One outcome per member.
    pub(super) fn set_up_members(
        &mut self,
        id: &RunId,
        members: &[(&StepId, &Worktree, &str)],
        spec: &WorkspaceSpec,
        notes: &mut [Notes],
    ) -> Vec<std::result::Result<bool, String>> {
        for (member, wt, _) in members {
            self.setup_starts(id, Some(member), wt, spec);
        }
        let logs: Vec<PathBuf> = members
            .iter()
            .map(|(_, _, rec)| self.paths.setup_log(id, rec))
            .collect();
        let (env, cancel) = (self.env, &*self.controls.cancel);
        let setups: Vec<_> = members
            .iter()
            .zip(&logs)
            .map(|((_, wt, _), log)| setup_async(wt, spec, env, log, cancel))
            .collect();
        let done = self.rt.block_on(process::at_most(self.jobs.max(1), setups));
        done.into_iter()
            .zip(members)
            .zip(notes.iter_mut())
            .map(|((done, (member, _, _)), notes)| self.setup_ended(id, Some(member), done, notes))
            .collect()
    }

    /// Say that the setup is about to run in `wt`, unless it is done there already.
    fn setup_starts(
        &mut self,
        id: &RunId,
        member: Option<&StepId>,
        wt: &Worktree,
        spec: &WorkspaceSpec,
    ) {
        if !spec.setup.is_empty() && !setup_done(wt, spec) {
            let note = format!("running setup `{}`", spec.setup.join(" "));
            self.workspace_event(id, member, &note);
        }
    }

    /// Report how a setup ended, its note added to `notes`: `Err` with the step's error when
    /// it failed, `Ok(false)` when Ctrl-C stopped it.
    fn setup_ended(
        &mut self,
        id: &RunId,
        member: Option<&StepId>,
        done: Setup,
        notes: &mut Notes,
    ) -> std::result::Result<bool, String> {
        let (note, outcome) = match done {
            Setup::None => return Ok(true),
            Setup::Cancelled => return Ok(false),
            Setup::Skipped(note) | Setup::Ran(note) => (note, Ok(true)),
            Setup::Failed(error) => {
                let first = error.lines().next().unwrap_or_default().to_string();
                (format!("{WARNING}{first}"), Err(error))
            }
        };
        self.workspace_event(id, member, &note);
        notes.push(note);
        outcome
    }

    fn workspace_event(&mut self, id: &RunId, member: Option<&StepId>, note: &str) {
        let (warning, note) = match note.strip_prefix(WARNING) {
            Some(rest) => (true, rest),
            None => (false, note),
        };
        self.emit(
            id,
            Kind::Workspace {
                member: member.cloned(),
                note: note.to_string(),
                warning,
            },
        );
    }
}

/// The error that fails a step which changed a submodule: git machine commits no work inside
/// submodules (it would live only in the worktree's clone, which is disposable).
pub fn submodule_refusal(wt: &Worktree) -> Result<Option<String>> {
    let changed = wt.submodule_changes()?;
    if changed.is_empty() {
        return Ok(None);
    }
    let list: Vec<String> = changed
        .iter()
        .map(|(path, what)| format!("`{path}` ({what})"))
        .collect();
    Ok(Some(format!(
        "the step changed submodule {}: git machine does not commit inside submodules; change the submodule in its own repository, then update it here",
        list.join(", ")
    )))
}

/// Refuse, before anything is created, `copy` and `link` paths that the user's checkout has
/// and git does not ignore: they are in the tree already, or the first step would commit them.
pub fn check_before_start(repo: &Repo, spec: &WorkspaceSpec) -> Result {
    let Some(checkout) = repo.workdir() else {
        return Ok(());
    };
    let present: Vec<String> = spec
        .copy
        .iter()
        .chain(&spec.link)
        .filter(|p| std::fs::symlink_metadata(checkout.join(p)).is_ok())
        .cloned()
        .collect();
    let ignored = repo.ignored_in_checkout(&present)?;
    if let Some(path) = present.iter().find(|p| !ignored.contains(p)) {
        let key = if spec.copy.contains(path) {
            "copy"
        } else {
            "link"
        };
        return Err(Error::usage(format!(
            "`{path}` in [workspace] {key} is not ignored by git: it is in the tree already, or a step would commit it"
        ))
        .with_hint(format!(
            "add `/{path}` to .gitignore (or .git/info/exclude), or take it out of `{key}`"
        )));
    }
    Ok(())
}

/// Refuse, before anything is created, a base whose checkout cannot be made here: the user's
/// config requires the `lfs` filter (`filter.lfs.required`), the root `.gitattributes` uses it,
/// and the filter's program (`git-lfs`) is not on `PATH` — `git worktree add` would fail
/// halfway. With git-lfs present, checkouts smudge LFS files from the repository's own store
/// (shared by every worktree), fetching a missing one only as the user's own checkout would,
/// and `GIT_LFS_SKIP_SMUDGE=1` leaves pointers, as git-lfs reads it.
pub fn check_lfs(repo: &Repo, base: crate::git::Oid, path_var: Option<&str>) -> Result {
    if repo.config_bool("filter.lfs.required") != Some(true) {
        return Ok(());
    }
    let attributes = repo.read_file(base, ".gitattributes")?.unwrap_or_default();
    if !String::from_utf8_lossy(&attributes).contains("filter=lfs") {
        return Ok(());
    }
    let command = repo
        .config_str("filter.lfs.process")
        .or_else(|| repo.config_str("filter.lfs.smudge"))
        .unwrap_or_default();
    let program = command.split_whitespace().next().unwrap_or("git-lfs");
    if on_path(program, path_var) {
        return Ok(());
    }
    Err(Error::usage(format!(
        "this repository uses Git LFS and your git config requires its filter, but `{program}` is not installed"
    ))
    .with_hint("install git-lfs (https://git-lfs.com); or, to work on the pointer files as they are, `git -c filter.lfs.required=false -c filter.lfs.process= -c filter.lfs.smudge= machine …` (and `-c core.hooksPath=/dev/null` when git-lfs's hooks are installed)"))
}

/// Whether `program` can be started: a path that exists, or a name found on `PATH`.
fn on_path(program: &str, path_var: Option<&str>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return runnable(Path::new(program));
    }
    path_var
        .unwrap_or_default()
        .split(':')
        .filter(|dir| !dir.is_empty())
        .any(|dir| runnable(&Path::new(dir).join(program)))
}

/// Bring the user's ignored files, linked folders and submodules into `wt`; what was done,
/// and warnings for what could not be.
pub fn prepare_worktree(repo: &Repo, wt: &Worktree, spec: &WorkspaceSpec) -> Result<Notes> {
    let mut notes = Vec::new();
    match repo.workdir() {
        Some(checkout) => {
            let ignored = repo.ignored_in_checkout(&spec.copy)?;
            let mut copied = Vec::new();
            for path in &spec.copy {
                if copy_in(checkout, &wt.path, path, ignored.contains(path), &mut notes)? {
                    copied.push(path.clone());
                }
            }
            keep_ignored_copies(wt, &copied, &mut notes)?;
            if !spec.link.is_empty() {
                repo.exclude_everywhere(&spec.link)?;
            }
            for path in &spec.link {
                link_in(checkout, &wt.path, path, &mut notes)?;
            }
        }
        None if !spec.copy.is_empty() || !spec.link.is_empty() => notes.push(format!(
            "{WARNING}this repository has no checkout to copy or link [workspace] files from"
        )),
        None => {}
    }
    let user = UserClone {
        git_dir: repo.git_dir().to_path_buf(),
        checkout: repo.workdir().map(Path::to_path_buf),
    };
    submodules(wt, &user, "", &mut notes)?;
    Ok(notes)
}

/// A copy the worktree's own ignore rules do not cover (its tree's `.gitignore` differs from
/// the user's checkout's) would be committed by the next step: it is removed, with a warning.
fn keep_ignored_copies(wt: &Worktree, copied: &[String], notes: &mut Notes) -> Result {
    let ignored = wt.ignored(copied)?;
    for path in copied.iter().filter(|p| !ignored.contains(p)) {
        let dst = wt.path.join(path);
        if dst.is_dir() {
            std::fs::remove_dir_all(&dst)?;
        } else {
            std::fs::remove_file(&dst)?;
        }
        notes.push(format!(
            "{WARNING}`{path}` ([workspace] copy) is not ignored by the run's tree (its .gitignore differs from your checkout's); removed, so no step commits it"
        ));
    }
    Ok(())
}

/// Copy `path` in unless the worktree has it; whether it was copied now.
fn copy_in(
    checkout: &Path,
    wt: &Path,
    path: &str,
    ignored: bool,
    notes: &mut Notes,
) -> Result<bool> {
    let (src, dst) = (checkout.join(path), wt.join(path));
    if std::fs::symlink_metadata(&dst).is_ok() {
        return Ok(false);
    }
    let Ok(meta) = std::fs::metadata(&src) else {
        notes.push(format!(
            "{WARNING}`{path}` ([workspace] copy) is not in your checkout; not copied"
        ));
        return Ok(false);
    };
    if !ignored {
        notes.push(format!(
            "{WARNING}`{path}` ([workspace] copy) is not ignored by git; not copied"
        ));
        return Ok(false);
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let (files, cloned) = if meta.is_dir() {
        copy_dir(&src, &dst)?
    } else {
        (1, usize::from(reflink_or_copy(&src, &dst)?))
    };
    notes.push(format!(
        "copied `{path}` ({files} file{}, {cloned} as reflinks)",
        if files == 1 { "" } else { "s" }
    ));
    Ok(true)
}

/// Copy a folder recursively (symlinks as symlinks); (files, of which reflinked).
fn copy_dir(src: &Path, dst: &Path) -> Result<(usize, usize)> {
    let (mut files, mut cloned) = (0, 0);
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.map_err(|e| Error::failed(format!("copying {}: {e}", src.display())))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .expect("walkdir stays below its root");
        let to = dst.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&to)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)?;
        } else {
            files += 1;
            cloned += usize::from(reflink_or_copy(entry.path(), &to)?);
        }
    }
    Ok((files, cloned))
}

/// Copy one file, sharing its blocks when the file system can (`FICLONE`, as `cp
/// --reflink=auto`); whether it was a reflink. The mode is kept either way.
fn reflink_or_copy(src: &Path, dst: &Path) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    let from = std::fs::File::open(src)?;
    let to = std::fs::File::create(dst)?;
    // SAFETY: an ioctl on two file descriptors we own, open for as long as the call.
    let cloned = unsafe { libc::ioctl(to.as_raw_fd(), libc::FICLONE, from.as_raw_fd()) } == 0;
    drop(to);
    if !cloned {
        std::fs::copy(src, dst)?;
    }
    std::fs::set_permissions(dst, from.metadata()?.permissions())?;
    Ok(cloned)
}

fn link_in(checkout: &Path, wt: &Path, path: &str, notes: &mut Notes) -> Result {
    let (src, dst) = (checkout.join(path), wt.join(path));
    if let Ok(meta) = std::fs::symlink_metadata(&dst) {
        if !meta.file_type().is_symlink() || std::fs::read_link(&dst)? != src {
            notes.push(format!(
                "{WARNING}`{path}` ([workspace] link) is already in the worktree; not linked"
            ));
        }
        return Ok(());
    }
    if !src.exists() {
        notes.push(format!(
            "{WARNING}`{path}` ([workspace] link) is not in your checkout; not linked"
        ));
        return Ok(());
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(&src, &dst)?;
    notes.push(format!("linked `{path}` to {}", src.display()));
    Ok(())
}

/// Where the user keeps a repository's clone of submodules: its git dir (whose `modules/`
/// holds absorbed ones) and its checkout, if any.
struct UserClone {
    git_dir: PathBuf,
    checkout: Option<PathBuf>,
}

impl UserClone {
    /// The user's clone of `sub`: the checkout's own (`<path>/.git`), else the absorbed one.
    fn of(&self, sub: &Submodule, name: &str) -> Option<UserClone> {
        let checkout = self.checkout.as_ref().map(|c| c.join(&sub.path));
        let git_dir = checkout
            .as_deref()
            .and_then(git_dir_of)
            .or_else(|| Some(self.git_dir.join("modules").join(name)).filter(|d| d.is_dir()))?;
        Some(UserClone { git_dir, checkout })
    }
}

/// Populate `wt`'s submodules (and theirs) that are not yet, from the user's clones.
fn submodules(wt: &Worktree, user: &UserClone, prefix: &str, notes: &mut Notes) -> Result {
    for sub in wt.submodules()? {
        let shown = format!("{prefix}{}", sub.path);
        let Some(name) = sub.name.clone() else {
            notes.push(format!(
                "{WARNING}submodule at `{shown}` has no entry in .gitmodules; its folder is empty"
            ));
            continue;
        };
        let Some(theirs) = user.of(&sub, &name) else {
            notes.push(format!(
                "{WARNING}submodule `{shown}` is not initialised in your checkout, so its folder in the worktree is empty (`git submodule update --init --recursive` fills it)"
            ));
            continue;
        };
        let dir = wt.path.join(&sub.path);
        if git_dir_of(&dir).is_none() {
            if let Err(e) = wt.populate_submodule(&sub, &name, &theirs.git_dir) {
                notes.push(format!(
                    "{WARNING}submodule `{shown}` could not be checked out at {} from your clone ({}): {e}",
                    sub.commit.short(),
                    theirs.git_dir.display()
                ));
                continue;
            }
            notes.push(format!("submodule `{shown}` at {}", sub.commit.short()));
        }
        submodules(&Worktree::new(dir), &theirs, &format!("{shown}/"), notes)?;
    }
    Ok(())
}

/// How a worktree's setup went.
#[derive(Debug, PartialEq)]
pub enum Setup {
    /// No setup command.
    None,
    /// Done before for this command and key: (note).
    Skipped(String),
    /// Ran and passed: (note).
    Ran(String),
    /// Ran and failed, or could not start: (the step's error, with the log's tail).
    Failed(String),
    /// Ctrl-C stopped it.
    Cancelled,
}

/// Run the setup command in `wt` unless its stamp says it ran for this command and key; the
/// output goes to `log` (moved into the step's record by the caller).
pub fn setup(
    rt: &tokio::runtime::Runtime,
    wt: &Worktree,
    spec: &WorkspaceSpec,
    env: &Env,
    log: &Path,
    cancel: &AtomicBool,
) -> Setup {
    rt.block_on(setup_async(wt, spec, env, log, cancel))
}

/// [`setup`] as a future, for a loop that runs several (a group's members').
pub async fn setup_async(
    wt: &Worktree,
    spec: &WorkspaceSpec,
    env: &Env,
    log: &Path,
    cancel: &AtomicBool,
) -> Setup {
    let Some((program, args)) = spec.setup.split_first() else {
        return Setup::None;
    };
    let command = spec.setup.join(" ");
    if setup_done(wt, spec) {
        let same = if spec.setup_key.is_empty() {
            "command"
        } else {
            "setup_key"
        };
        return Setup::Skipped(format!(
            "setup `{command}` skipped: done in this worktree already, for the same {same}"
        ));
    }
    let inv = engine::Invocation::plain(program, args);
    let plain = engine::by_name("command", &env.vars).expect("the command engine is built in");
    let mut parser = plain.parser();
    let started = std::time::Instant::now();
    let ending = process::run_async(
        &inv,
        &wt.path,
        &env.vars,
        log,
        process::Limits::default(),
        &[cancel],
        &mut |_| {},
        parser.as_mut(),
        None,
    )
    .await;
    let why = match ending {
        Ok(Ending::Exited(0)) => None,
        Ok(Ending::Cancelled) => return Setup::Cancelled,
        Ok(other) => Some(other.describe()),
        Err(e) => Some(format!("could not start `{program}`: {e}")),
    };
    if let Some(why) = why {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(SETUP_TAIL_LINES)..].join("\n");
        return Setup::Failed(format!(
            "setup `{command}` failed ({why}); the end of its log:\n{tail}"
        ));
    }
    if let Some(file) = wt
        .admin_dir()
        .map(|d| d.join(crate::store::layout::SETUP_STAMP))
    {
        let _ = std::fs::write(file, format!("{}\n", stamp_of(&wt.path, spec)));
    }
    Setup::Ran(format!(
        "setup `{command}` ran in {:.1}s",
        started.elapsed().as_secs_f64()
    ))
}

/// Whether `wt`'s stamp says its setup ran for this command and key.
fn setup_done(wt: &Worktree, spec: &WorkspaceSpec) -> bool {
    let done = wt
        .admin_dir()
        .and_then(|d| std::fs::read_to_string(d.join(crate::store::layout::SETUP_STAMP)).ok());
    done.as_deref().map(str::trim) == Some(stamp_of(&wt.path, spec).as_str())
}

/// What a setup's stamp holds: a digest of its argv and of its key files' content (a missing
/// file counts as such).
fn stamp_of(root: &Path, spec: &WorkspaceSpec) -> String {
    let mut data = Vec::new();
    for word in &spec.setup {
        data.extend_from_slice(word.as_bytes());
        data.push(0);
    }
    for key in &spec.setup_key {
        data.extend_from_slice(key.as_bytes());
        data.push(0);
        match std::fs::read(root.join(key)) {
            Ok(bytes) => {
                data.extend_from_slice(format!("{}:", bytes.len()).as_bytes());
                data.extend_from_slice(&bytes);
            }
            Err(_) => data.extend_from_slice(b"missing"),
        }
        data.push(0);
    }
    format!("{:x}", md5::compute(&data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(setup: &[&str], key: &[&str]) -> WorkspaceSpec {
        WorkspaceSpec {
            setup: setup.iter().map(|s| s.to_string()).collect(),
            setup_key: key.iter().map(|s| s.to_string()).collect(),
            ..WorkspaceSpec::default()
        }
    }

    #[test]
    fn the_stamp_follows_the_command_and_the_key_files_content() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let lock = dir.path().join("package-lock.json");
        std::fs::write(&lock, "{1}").expect("written");
        let with_key = spec(&["npm", "ci"], &["package-lock.json"]);
        let first = stamp_of(dir.path(), &with_key);
        assert_eq!(
            first,
            stamp_of(dir.path(), &with_key),
            "same input, same stamp"
        );
        std::fs::write(&lock, "{2}").expect("written");
        assert_ne!(
            first,
            stamp_of(dir.path(), &with_key),
            "the key's content counts"
        );
        std::fs::remove_file(&lock).expect("removed");
        assert_ne!(
            first,
            stamp_of(dir.path(), &with_key),
            "a missing key file counts"
        );
        assert_ne!(
            stamp_of(dir.path(), &spec(&["npm", "ci"], &[])),
            stamp_of(dir.path(), &spec(&["npm", "install"], &[])),
            "the command counts"
        );
    }

    #[test]
    fn a_folder_is_copied_with_its_files_modes_and_symlinks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temp dir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("deep")).expect("made");
        std::fs::write(src.join("deep/run.sh"), "echo hi\n").expect("written");
        std::fs::set_permissions(
            src.join("deep/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("deep/run.sh", src.join("alias")).expect("symlink");
        let dst = dir.path().join("dst");
        let (files, _) = copy_dir(&src, &dst).expect("copied");
        assert_eq!(files, 1);
        assert_eq!(
            std::fs::read_to_string(dst.join("deep/run.sh")).expect("read"),
            "echo hi\n"
        );
        let mode = std::fs::metadata(dst.join("deep/run.sh"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dst.join("alias")).expect("a link"),
            Path::new("deep/run.sh")
        );
    }
}
