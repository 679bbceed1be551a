//! All access to git: the only module that uses git2 or spawns the `git` binary.
//!
//! Why one module: every ref update must be compare-and-swap, every spawned `git` must get the
//! same sanitised environment, and the choice between libgit2 (fast, in-process: reading trees,
//! creating commits, ref transactions) and the git CLI (worktrees, staging a worktree with the
//! user's ignore rules, a diff as `git show` prints it) is made here once.
//!
//! Invariants:
//! - a ref is only ever changed through [`Repo::update_refs`], which locks every ref of the
//!   operation, checks each one's current value against what the caller saw, and writes them all
//!   or none;
//! - `git` children never inherit `GIT_DIR`, `GIT_WORK_TREE` or `GIT_INDEX_FILE` from our caller
//!   (they are set explicitly where needed).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use thiserror::Error;

mod folders;
mod workspace;
pub use workspace::{git_dir_of, Submodule};
mod packs;
pub mod pool;
mod scan;
pub mod treediff;
mod treemerge;
#[cfg(test)]
mod twins;
mod watch;

/// A commit (or tree, or blob) id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Oid(git2::Oid);

impl Oid {
    pub fn parse(hex: &str) -> Option<Oid> {
        git2::Oid::from_str(hex).ok().map(Oid)
    }
    pub fn short(&self) -> String {
        self.0.to_string()[..10].to_string()
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Stored as 40 hex digits; anything else is an error when read back, never dropped.
impl serde::Serialize for Oid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Oid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Oid, D::Error> {
        let text = String::deserialize(d)?;
        match Oid::parse(&text) {
            Some(oid) if text.len() == 40 => Ok(oid),
            _ => Err(serde::de::Error::custom(format!(
                "`{text}` is not a commit id (40 hex digits)"
            ))),
        }
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid({})", self.short())
    }
}

/// A full ref name such as `refs/heads/machine/<run-id>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RefName(String);

impl RefName {
    pub fn new(name: impl Into<String>) -> RefName {
        let name = name.into();
        debug_assert!(name.starts_with("refs/"), "ref names are full: {name}");
        RefName(name)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Error)]
pub enum GitError {
    #[error("not inside a git repository ({0})")]
    NotARepo(String),
    #[error("ref {name} moved: expected {expected}, found {found}")]
    RefMoved {
        name: RefName,
        expected: String,
        found: String,
    },
    #[error("`git {args}` failed: {stderr}")]
    Cli { args: String, stderr: String },
    #[error("could not run git: {0}")]
    Spawn(#[source] std::io::Error),
    #[error(transparent)]
    Lib(#[from] git2::Error),
    #[error("{0}")]
    Io(String),
    #[error("the worktree {} has no .git any more", .0.display())]
    WorktreeGone(PathBuf),
}

pub type Result<T, E = GitError> = std::result::Result<T, E>;

/// One ref change of a transaction: `old` is what the caller saw (`None` = must not exist),
/// `new` what it becomes (`None` = delete).
#[derive(Debug, Clone)]
pub struct RefUpdate {
    pub name: RefName,
    pub old: Option<Oid>,
    pub new: Option<Oid>,
}

/// A commit's facts as the runner and the views need them.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub parents: Vec<Oid>,
    pub trailers: BTreeMap<String, String>,
}

impl CommitInfo {
    pub fn trailer(&self, key: &str) -> Option<&str> {
        self.trailers.get(key).map(String::as_str)
    }
}

/// Who commits: read once per process from git's own rules (`git var`), so config given with
/// `git -c`, `GIT_COMMITTER_*` and `GIT_*_DATE` are honoured exactly as git honours them.
#[derive(Debug, Clone)]
struct Ident {
    name: String,
    email: String,
    /// Fixed date from the environment, if any: (seconds, offset minutes).
    fixed_time: Option<(i64, i32)>,
}

pub struct Repo {
    repo: git2::Repository,
    common_dir: PathBuf,
    workdir: Option<PathBuf>,
    env: GitEnv,
    ident: OnceLock<Ident>,
}

/// What of the process environment git's own rules read, taken once from the environment the
/// program started with (see `crate::env`): this layer never reads the environment itself.
#[derive(Clone, Debug, Default)]
pub struct GitEnv {
    /// `GIT_DIR` is set: the repository is the one it names, as for git.
    pub git_dir: bool,
    /// `GIT_COMMITTER_DATE` is set: commits take the date `git var` reports.
    pub committer_date: bool,
    /// `GIT_CONFIG_PARAMETERS`, how `git -c` reaches a subcommand (libgit2 ignores it).
    pub config_parameters: Option<String>,
}

impl GitEnv {
    pub fn from_vars(vars: &[(String, String)]) -> GitEnv {
        let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        GitEnv {
            git_dir: get("GIT_DIR").is_some(),
            committer_date: get("GIT_COMMITTER_DATE").is_some(),
            config_parameters: get("GIT_CONFIG_PARAMETERS"),
        }
    }
}

/// Environment variables that would point a `git` child at another repository or index.
const GIT_LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_PREFIX",
];

/// The id git gives `content` as a blob (`git hash-object`), computed without a repository.
pub fn blob_id(content: &[u8]) -> Result<Oid> {
    Ok(Oid(git2::Oid::hash_object(
        git2::ObjectType::Blob,
        content,
    )?))
}

/// A `git` command with the location variables removed.
pub fn git_command() -> Command {
    let mut cmd = Command::new("git");
    for var in GIT_LOCATION_VARS {
        cmd.env_remove(var);
    }
    cmd
}

fn run_git<I, S>(dir: &Path, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_git_bounded(dir, args, None)
}

/// As [`run_git`]; with `ceiling`, git does not look for a repository above it.
fn run_git_bounded<I, S>(dir: &Path, args: I, ceiling: Option<&Path>) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = run_git_bytes(dir, args, ceiling)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// As [`run_git_bounded`], git's output as the bytes it wrote (paths need not be UTF-8).
fn run_git_bytes<I, S>(dir: &Path, args: I, ceiling: Option<&Path>) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    // Its own process group: a Ctrl-C meant for git machine must not kill a `git write-tree`
    // halfway; git machine itself decides when to stop. A Ctrl-C that comes while the child is
    // being started reaches it all the same (it is still in the terminal's group until it
    // leaves it, with signals held, and gets the SIGINT once it has), before git has done
    // anything: that one run is done again.
    let run = || {
        let mut cmd = git_command();
        if let Some(c) = ceiling {
            cmd.env("GIT_CEILING_DIRECTORIES", c);
        }
        cmd.current_dir(dir)
            .args(&args)
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .map_err(GitError::Spawn)
    };
    let mut out = run()?;
    if out.status.signal() == Some(libc::SIGINT) {
        out = run()?;
    }
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(GitError::Cli {
            args: args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            // A git killed by a signal says nothing: say how it ended instead.
            stderr: if stderr.is_empty() {
                format!("it said nothing and ended with {}", out.status)
            } else {
                stderr
            },
        });
    }
    Ok(out.stdout)
}

impl Repo {
    /// Remove the lock files (`<ref>.lock`) a process killed in the middle of a ref update
    /// left for the ref `name` and for every ref under the folders `under` (full names, ending
    /// in `/`): git would refuse to update those refs until someone deleted them. Only for
    /// refs the caller alone may update (a run's, under its run lock). How many were removed.
    pub fn remove_stale_ref_locks(&self, name: &RefName, under: &[String]) -> Result<usize> {
        let common = self.common_dir();
        let mut locks = vec![common.join(format!("{}.lock", name.as_str()))];
        for dir in under {
            let folder = common.join(dir.trim_end_matches('/'));
            locks.extend(
                walkdir::WalkDir::new(folder)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.file_type().is_file())
                    .map(walkdir::DirEntry::into_path)
                    .filter(|p| p.extension().is_some_and(|x| x == "lock")),
            );
        }
        let mut removed = 0;
        for lock in locks {
            match std::fs::remove_file(&lock) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(GitError::Io(format!("{}: {e}", lock.display()))),
            }
        }
        Ok(removed)
    }

    /// Find the repository containing `cwd`, as git would (honouring `GIT_DIR` if the user set it).
    pub fn discover(cwd: &Path, env: &GitEnv) -> Result<Repo> {
        let repo = if env.git_dir {
            git2::Repository::open_from_env()
        } else {
            git2::Repository::discover(cwd)
        }
        .map_err(|e| GitError::NotARepo(e.message().to_string()))?;
        Self::from_git2(repo, env)
    }

    pub fn open(path: &Path, env: &GitEnv) -> Result<Repo> {
        Self::from_git2(git2::Repository::open(path)?, env)
    }

    fn from_git2(repo: git2::Repository, env: &GitEnv) -> Result<Repo> {
        configure_libgit2();
        if env.config_parameters.is_some() {
            GIT_DASH_C.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let common_dir = repo.commondir().to_path_buf();
        let workdir = repo.workdir().map(Path::to_path_buf);
        Ok(Repo {
            repo,
            common_dir,
            workdir,
            env: env.clone(),
            ident: OnceLock::new(),
        })
    }

    /// The git dir shared by all worktrees (`.git` of the main checkout).
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// The working tree of the checkout we were started in, if it has one.
    pub fn workdir(&self) -> Option<&Path> {
        self.workdir.as_deref()
    }

    /// Directory `git` commands about the repository as a whole run in.
    fn cli_dir(&self) -> &Path {
        self.workdir.as_deref().unwrap_or(&self.common_dir)
    }

    /// Resolve a revision to a commit; `None` when it names nothing.
    pub fn resolve_commit(&self, rev: &str) -> Option<Oid> {
        let obj = self.repo.revparse_single(rev).ok()?;
        obj.peel_to_commit().ok().map(|c| Oid(c.id()))
    }

    /// The commit HEAD points at; `None` in a repository without commits.
    pub fn head_commit(&self) -> Option<Oid> {
        self.repo
            .head()
            .ok()
            .and_then(|h| h.peel_to_commit().ok())
            .map(|c| Oid(c.id()))
    }

    /// The full name of the branch HEAD is on (`None` when detached or unborn).
    pub fn head_branch(&self) -> Option<RefName> {
        let head = self.repo.find_reference("HEAD").ok()?;
        let target = head.symbolic_target()?;
        Some(RefName::new(target))
    }

    pub fn ref_target(&self, name: &RefName) -> Option<Oid> {
        self.repo
            .find_reference(name.as_str())
            .ok()
            .and_then(|r| r.target())
            .map(Oid)
    }

    /// All refs under `prefix` (e.g. `refs/heads/machine/`) with their targets, sorted by name.
    pub fn refs_under(&self, prefix: &str) -> Result<Vec<(RefName, Oid)>> {
        let mut out = Vec::new();
        for r in self.repo.references_glob(&format!("{prefix}*"))? {
            let r = r?;
            if let (Some(name), Some(target)) = (r.name(), r.target()) {
                out.push((RefName::new(name), Oid(target)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Apply ref updates atomically, each compared against the value its caller saw.
    pub fn update_refs(&self, updates: &[RefUpdate], reflog: &str) -> Result<()> {
        let mut tx = self.repo.transaction()?;
        for u in updates {
            tx.lock_ref(u.name.as_str())?;
        }
        for u in updates {
            let found = self.ref_target(&u.name);
            if found != u.old {
                let show = |o: Option<Oid>| o.map_or("nothing".to_string(), |o| o.short());
                return Err(GitError::RefMoved {
                    name: u.name.clone(),
                    expected: show(u.old),
                    found: show(found),
                });
            }
        }
        let sig = self.signature()?;
        for u in updates {
            match u.new {
                Some(new) => tx.set_target(u.name.as_str(), new.0, Some(&sig), reflog)?,
                None => tx.remove(u.name.as_str())?,
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn ident(&self) -> Result<&Ident> {
        if let Some(i) = self.ident.get() {
            return Ok(i);
        }
        let ident = match run_git(self.cli_dir(), ["var", "GIT_COMMITTER_IDENT"]) {
            Ok(line) => parse_ident(line.trim()),
            // No identity configured: commits still need one; git machine names itself.
            Err(_) => Ident {
                name: "git machine".to_string(),
                email: "git-machine@localhost".to_string(),
                fixed_time: None,
            },
        };
        let ident = Ident {
            fixed_time: ident.fixed_time.filter(|_| self.env.committer_date),
            ..ident
        };
        Ok(self.ident.get_or_init(|| ident))
    }

    /// The person using git here (`user.name`, as git's own rules find it).
    pub fn user_name(&self) -> String {
        self.ident()
            .map(|i| i.name.clone())
            .unwrap_or_else(|_| "the user".to_string())
    }

    fn signature(&self) -> Result<git2::Signature<'static>> {
        let ident = self.ident()?;
        self.signature_as(&ident.name, &ident.email)
    }

    fn signature_as(&self, name: &str, email: &str) -> Result<git2::Signature<'static>> {
        let ident = self.ident()?;
        Ok(match ident.fixed_time {
            Some((secs, offset)) => {
                git2::Signature::new(name, email, &git2::Time::new(secs, offset))?
            }
            None => git2::Signature::now(name, email)?,
        })
    }

    /// Create a commit object (no ref is moved). `author` = (name, email), default the user.
    pub fn commit(
        &self,
        tree: Oid,
        parents: &[Oid],
        message: &str,
        author: Option<(&str, &str)>,
    ) -> Result<Oid> {
        let committer = self.signature()?;
        let author = match author {
            Some((n, e)) => self.signature_as(n, e)?,
            None => committer.clone(),
        };
        let tree = self.repo.find_tree(tree.0)?;
        let parents = parents
            .iter()
            .map(|p| self.repo.find_commit(p.0))
            .collect::<Result<Vec<_>, _>>()?;
        let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
        let oid = self
            .repo
            .commit(None, &author, &committer, message, &tree, &parent_refs)?;
        Ok(Oid(oid))
    }

    /// As [`Repo::commit`], made by `git commit-tree -S`: git signs it as the user's config
    /// says (`gpg.program`, `gpg.format`, `user.signingkey`), with its own error when it cannot.
    pub fn commit_signed(
        &self,
        tree: Oid,
        parents: &[Oid],
        message: &str,
        author: Option<(&str, &str)>,
    ) -> Result<Oid> {
        let mut file = tempfile::NamedTempFile::new().map_err(|e| GitError::Io(e.to_string()))?;
        std::io::Write::write_all(&mut file, message.as_bytes())
            .map_err(|e| GitError::Io(e.to_string()))?;
        let mut args = vec![
            "commit-tree".to_string(),
            "-S".to_string(),
            tree.to_string(),
        ];
        for p in parents {
            args.extend(["-p".to_string(), p.to_string()]);
        }
        args.extend(["-F".to_string(), file.path().display().to_string()]);
        let mut cmd = git_command();
        cmd.current_dir(self.cli_dir())
            .args(&args)
            .stdin(Stdio::null())
            .process_group(0);
        if let Some((name, email)) = author {
            cmd.env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_EMAIL", email);
        }
        let out = cmd.output().map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::Cli {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Oid::parse(text.trim()).ok_or_else(|| GitError::Cli {
            args: args.join(" "),
            stderr: format!("not a commit id: {text}"),
        })
    }

    /// A boolean setting as git reads it (`git -c` first), if set.
    pub fn config_bool(&self, key: &str) -> Option<bool> {
        let value = self.config_str(key)?;
        match value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        }
    }

    pub fn tree_of(&self, commit: Oid) -> Result<Oid> {
        Ok(Oid(self.repo.find_commit(commit.0)?.tree_id()))
    }

    /// A new tree: `base` with `files` (path → contents) written into it.
    pub fn tree_with_files(&self, base: Oid, files: &[(String, Vec<u8>)]) -> Result<Oid> {
        let base_tree = self.repo.find_tree(base.0)?;
        let mut builder = git2::build::TreeUpdateBuilder::new();
        for (path, bytes) in files {
            let blob = self.repo.blob(bytes)?;
            builder.upsert(path.as_str(), blob, git2::FileMode::Blob);
        }
        Ok(Oid(builder.create_updated(&self.repo, &base_tree)?))
    }

    /// Whether folder `dir` of `tree` is folder `dir` of tree `base` with `files` (paths from
    /// the root, all under `dir`) written into it, as [`Repo::tree_with_files`] writes them.
    /// Found without writing an object: the files are hashed, the folders compared.
    pub fn folder_is_with_files(
        &self,
        tree: Oid,
        base: Oid,
        dir: &str,
        files: &[(String, Vec<u8>)],
    ) -> Result<bool> {
        let (Some(new), Some(old)) = (self.subtree(tree, dir)?, self.subtree(base, dir)?) else {
            return Ok(false);
        };
        let (new, old) = (self.repo.find_tree(new.0)?, self.repo.find_tree(old.0)?);
        let mut wanted = std::collections::BTreeMap::new();
        for (path, bytes) in files {
            let Some(inside) = path.strip_prefix(dir).and_then(|p| p.strip_prefix('/')) else {
                return Ok(false);
            };
            let id = git2::Oid::hash_object(git2::ObjectType::Blob, bytes)?;
            let held = new.get_path(Path::new(inside)).ok();
            if held.is_none_or(|e| e.id() != id || e.filemode() != i32::from(git2::FileMode::Blob))
            {
                return Ok(false);
            }
            wanted.insert(inside.as_bytes().to_vec(), id);
        }
        let changes = treediff::changes(&self.repo, &old, &new)?;
        Ok(changes.iter().all(|c| wanted.contains_key(&c.path)))
    }

    /// The id of the file at `path` in `commit`'s tree, `None` if there is none.
    pub fn blob_id_at(&self, commit: Oid, path: &str) -> Result<Option<Oid>> {
        let tree = self.repo.find_commit(commit.0)?.tree()?;
        Ok(tree
            .get_path(Path::new(path))
            .ok()
            .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
            .map(|e| Oid(e.id())))
    }

    /// Whether `tree` holds an entry at `path`.
    pub fn has_path(&self, tree: Oid, path: &str) -> Result<bool> {
        let tree = self.repo.find_tree(tree.0)?;
        Ok(tree.get_path(Path::new(path)).is_ok())
    }

    /// The id of the tree at `path` inside `tree`, `None` if there is none.
    pub fn subtree(&self, tree: Oid, path: &str) -> Result<Option<Oid>> {
        let t = self.repo.find_tree(tree.0)?;
        Ok(t.get_path(Path::new(path))
            .ok()
            .filter(|e| e.kind() == Some(git2::ObjectType::Tree))
            .map(|e| Oid(e.id())))
    }

    /// `tree` with the tree at `path` replaced by `subtree`.
    pub fn tree_with_subtree(&self, tree: Oid, path: &str, subtree: Oid) -> Result<Oid> {
        let t = self.repo.find_tree(tree.0)?;
        let mut builder = git2::build::TreeUpdateBuilder::new();
        builder.upsert(path, subtree.0, git2::FileMode::Tree);
        Ok(Oid(builder.create_updated(&self.repo, &t)?))
    }

    /// `tree` with the entry at `path` removed (no change if absent).
    pub fn tree_without(&self, tree: Oid, path: &str) -> Result<Oid> {
        let t = self.repo.find_tree(tree.0)?;
        if t.get_path(Path::new(path)).is_err() {
            return Ok(tree);
        }
        let mut builder = git2::build::TreeUpdateBuilder::new();
        builder.remove(path);
        Ok(Oid(builder.create_updated(&self.repo, &t)?))
    }

    /// The contents of `path` in `commit`'s tree, `None` if absent.
    pub fn read_file(&self, commit: Oid, path: &str) -> Result<Option<Vec<u8>>> {
        let tree = self.repo.find_commit(commit.0)?.tree()?;
        let entry = match tree.get_path(Path::new(path)) {
            Ok(e) => e,
            Err(_) => return Ok(None),
        };
        let blob = match entry.to_object(&self.repo)?.into_blob() {
            Ok(b) => b,
            Err(_) => return Ok(None),
        };
        Ok(Some(blob.content().to_vec()))
    }

    pub fn commit_info(&self, oid: Oid) -> Result<CommitInfo> {
        let c = self.repo.find_commit(oid.0)?;
        Ok(CommitInfo {
            parents: c.parent_ids().map(Oid).collect(),
            trailers: parse_trailers(c.message().unwrap_or("")),
        })
    }

    /// Commits reachable from `to` but not `from`, oldest first.
    pub fn commits_between(&self, from: Oid, to: Oid) -> Result<Vec<Oid>> {
        let mut walk = self.repo.revwalk()?;
        walk.push(to.0)?;
        walk.hide(from.0)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
        Ok(walk
            .map(|o| o.map(Oid))
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The commits from `from` (exclusive) to `to` along first parents, oldest first; `None`
    /// when `from` is not on that chain.
    pub fn first_parent_chain(&self, from: Oid, to: Oid) -> Result<Option<Vec<Oid>>> {
        let mut chain = Vec::new();
        let mut cursor = to;
        while cursor != from {
            chain.push(cursor);
            match self.repo.find_commit(cursor.0)?.parent_id(0) {
                Ok(p) => cursor = Oid(p),
                Err(_) => return Ok(None),
            }
        }
        chain.reverse();
        Ok(Some(chain))
    }

    /// When a commit was made (committer time, seconds since the epoch).
    pub fn commit_time(&self, oid: Oid) -> Result<i64> {
        Ok(self.repo.find_commit(oid.0)?.committer().when().seconds())
    }

    /// A commit's message and author (name, email), to copy it elsewhere.
    pub fn commit_text(&self, oid: Oid) -> Result<(String, String, String)> {
        let c = self.repo.find_commit(oid.0)?;
        let author = c.author();
        Ok((
            c.message().unwrap_or("").to_string(),
            author.name().unwrap_or("").to_string(),
            author.email().unwrap_or("").to_string(),
        ))
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: Oid, descendant: Oid) -> Result<bool> {
        Ok(ancestor == descendant || self.repo.graph_descendant_of(descendant.0, ancestor.0)?)
    }

    /// Files changed between two commits, paths under `skip` left out:
    /// (path, lines added, lines removed); binary files count 0/0.
    pub fn diffstat(
        &self,
        old: Oid,
        new: Oid,
        skip: Option<&str>,
    ) -> Result<Vec<(String, usize, usize)>> {
        let old_tree = self.repo.find_commit(old.0)?.tree()?;
        let new_tree = self.repo.find_commit(new.0)?.tree()?;
        let mut out = Vec::new();
        for c in treediff::changes(&self.repo, &old_tree, &new_tree)? {
            let path = String::from_utf8_lossy(&c.path).into_owned();
            if skip.is_some_and(|prefix| path.starts_with(prefix)) {
                continue;
            }
            let (add, del) = self.line_stats(&c, &path);
            out.push((path, add, del));
        }
        Ok(out)
    }

    /// Lines added and removed by one change, as `git diff --numstat` counts them: a
    /// gitlink is one line a side, a binary file (or one that cannot be read) none.
    fn line_stats(&self, c: &treediff::Changed, path: &str) -> (usize, usize) {
        if c.old.is_some_and(|e| e.is_gitlink()) || c.new.is_some_and(|e| e.is_gitlink()) {
            return (usize::from(c.new.is_some()), usize::from(c.old.is_some()));
        }
        let blob = |e: Option<treediff::Entry>| e.and_then(|e| self.repo.find_blob(e.id.0).ok());
        let path = Some(Path::new(path));
        let stats = |p: std::result::Result<git2::Patch<'_>, git2::Error>| {
            p.and_then(|p| p.line_stats())
                .map_or((0, 0), |(_, a, d)| (a, d))
        };
        match (blob(c.old), blob(c.new)) {
            (Some(old), Some(new)) => stats(git2::Patch::from_blobs(&old, path, &new, path, None)),
            (Some(old), None) => stats(git2::Patch::from_blob_and_buffer(
                &old,
                path,
                &[],
                None,
                None,
            )),
            // An added file: the lines a deletion of it would remove.
            (None, Some(new)) => {
                let (a, d) = stats(git2::Patch::from_blob_and_buffer(
                    &new,
                    path,
                    &[],
                    None,
                    None,
                ));
                (d, a)
            }
            (None, None) => (0, 0),
        }
    }

    /// Three-way merge of trees; `Ok(Err(paths))` lists conflicting paths.
    pub fn merge_trees(
        &self,
        ancestor: Oid,
        ours: Oid,
        theirs: Oid,
    ) -> Result<std::result::Result<Oid, Vec<String>>> {
        let a = self.repo.find_tree(ancestor.0)?;
        let o = self.repo.find_tree(ours.0)?;
        let t = self.repo.find_tree(theirs.0)?;
        // No rename detection: step records are small look-alike files in distinct folders, and
        // pairing them up as renames invents conflicts.
        let mut opts = git2::MergeOptions::new();
        opts.find_renames(false);
        treemerge::merge(&self.repo, &a, &o, &t, &opts)
    }

    /// Lock files that git or libgit2 leave behind when killed mid-update: of `branch`, of the
    /// refs under each of `prefixes`, and of `wt`'s index. Only safe to remove while holding the
    /// run's own lock.
    pub fn stale_locks(
        &self,
        branch: &RefName,
        prefixes: &[String],
        wt: &Worktree,
    ) -> Vec<PathBuf> {
        let mut stale = vec![self.common_dir.join(format!("{}.lock", branch.as_str()))];
        for prefix in prefixes {
            if let Ok(entries) = std::fs::read_dir(self.common_dir.join(prefix)) {
                stale.extend(
                    entries
                        .flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "lock")),
                );
            }
        }
        if let Ok(index_lock) = wt.git(&["rev-parse", "--git-path", "index.lock"]) {
            stale.push(wt.path.join(index_lock.trim()));
        }
        stale.retain(|p| p.exists());
        stale
    }

    /// Temporary object files a killed writer left in the object store (libgit2's
    /// `tmp_object_git2_*`, and `pack_git2_*` and `*.idx.lock` for a pack, git's `tmp_obj_*`),
    /// not modified for `older_than`. A live writer
    /// keeps its file for the moments between writing it and renaming it into place, so only
    /// old ones are stale; git's own `gc` waits two weeks for them.
    pub fn stale_temp_objects(&self, older_than: std::time::Duration) -> Vec<PathBuf> {
        let objects = self.common_dir.join("objects");
        let now = std::time::SystemTime::now();
        let mut stale = Vec::new();
        let top = std::fs::read_dir(&objects).into_iter().flatten().flatten();
        for entry in top {
            let path = entry.path();
            let inner: Vec<PathBuf> = if path.is_dir() {
                let entries = std::fs::read_dir(&path).into_iter().flatten().flatten();
                entries.map(|e| e.path()).collect()
            } else {
                vec![path]
            };
            stale.extend(inner.into_iter().filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                let temp = ["tmp_object_git2_", "tmp_obj_", "pack_git2_"]
                    .iter()
                    .any(|t| name.starts_with(t))
                    || (name.starts_with("pack-") && name.ends_with(".idx.lock"));
                let age = std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok());
                temp && age.is_some_and(|a| a >= older_than)
            }));
        }
        stale
    }

    /// Lock files of refs under the folders `under` (full names, ending in `/`) last written
    /// at least `older_than` ago: left by a process killed inside a ref update, such as the
    /// creation of a run's branch, whose run then never existed and whose lock nobody takes
    /// (a live update holds its lock for a moment, not for that long).
    pub fn stale_ref_locks(&self, under: &[&str], older_than: std::time::Duration) -> Vec<PathBuf> {
        let now = std::time::SystemTime::now();
        under
            .iter()
            .flat_map(|dir| walkdir::WalkDir::new(self.common_dir.join(dir.trim_end_matches('/'))))
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(walkdir::DirEntry::into_path)
            .filter(|p| p.extension().is_some_and(|x| x == "lock"))
            .filter(|p| {
                std::fs::metadata(p)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= older_than)
            })
            .collect()
    }

    // ---- worktrees (git CLI: it owns the worktree admin files and their locking) ----

    /// `git worktree add --force <path> <branch>`: force so that a registered worktree whose
    /// folder was deleted is re-created in place.
    pub fn worktree_add(&self, path: &Path, branch: &RefName) -> Result<()> {
        let short = branch
            .as_str()
            .strip_prefix("refs/heads/")
            .expect("worktrees are made for branches");
        self.add_worktree(&[OsStr::new("--force"), path.as_os_str(), OsStr::new(short)])
    }

    /// A worktree at `path` with a detached HEAD at `commit` (members of parallel groups).
    pub fn worktree_add_detached(&self, path: &Path, commit: Oid) -> Result<()> {
        let commit = commit.to_string();
        self.add_worktree(&[
            OsStr::new("--force"),
            OsStr::new("--detach"),
            path.as_os_str(),
            OsStr::new(&commit),
        ])
    }

    /// A `flock` on `<common git dir>/machine/worktree-add.lock`, held while git machine
    /// changes the worktree admin folders (exclusive: add, remove) or reads them (shared:
    /// list). Concurrent adds collide on `.git/config.lock`, and `git worktree list` fails
    /// outright ("failed to read .git/worktrees/<w>/commondir") while another process is
    /// halfway through adding or removing one — found with four runs at once, each removing
    /// its finished members' worktrees. Released when the returned file is closed.
    fn worktree_admin_lock(&self, exclusive: bool) -> Result<std::fs::File> {
        use std::os::fd::AsRawFd;
        let lock_path = self.common_dir.join("machine").join("worktree-add.lock");
        if let Some(dir) = lock_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| GitError::Io(e.to_string()))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| GitError::Io(format!("{}: {e}", lock_path.display())))?;
        let how = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), how) } != 0 {
            return Err(GitError::Io(format!(
                "cannot lock {}: {}",
                lock_path.display(),
                std::io::Error::last_os_error()
            )));
        }
        Ok(lock)
    }

    /// `git worktree add --quiet <args>`, one at a time per repository, under the exclusive
    /// [`Repo::worktree_admin_lock`]; a lock file held by something else than git machine is
    /// waited out with retries.
    fn add_worktree(&self, args: &[&OsStr]) -> Result<()> {
        let _admin = self.worktree_admin_lock(true)?;
        let mut full = vec![
            OsStr::new("worktree"),
            OsStr::new("add"),
            OsStr::new("--quiet"),
        ];
        full.extend_from_slice(args);
        let mut delay = std::time::Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            match run_git(self.cli_dir(), &full) {
                Err(GitError::Cli { stderr, .. }) if stderr.contains(".lock") && attempt < 6 => {
                    attempt += 1;
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                other => {
                    other?;
                    crate::env::crash::point("worktree-added");
                    return Ok(());
                }
            }
        }
    }

    /// Remove the worktree at `path` (by path; never a global prune).
    pub fn worktree_remove(&self, path: &Path) -> Result<()> {
        let _admin = self.worktree_admin_lock(true)?;
        let listed = self
            .worktrees_unlocked()?
            .iter()
            .any(|(p, _)| same_path(p, path));
        if listed {
            run_git(
                self.cli_dir(),
                [
                    OsStr::new("worktree"),
                    OsStr::new("remove"),
                    OsStr::new("--force"),
                    OsStr::new("--force"),
                    path.as_os_str(),
                ],
            )
            .map(|_| ())
            .or_else(|e| match e {
                // A folder deleted by hand leaves only git's admin entry; remove that one.
                _ if !path.exists() => self.remove_worktree_admin(path),
                // Git refuses to remove a worktree with submodules checked out (their clones
                // live in the worktree's admin folder, which goes with it), or one whose `.git`
                // file no longer names its admin folder ("validation failed").
                GitError::Cli { ref stderr, .. }
                    if stderr.contains("submodules") || stderr.contains("validation failed") =>
                {
                    std::fs::remove_dir_all(path).map_err(|e| GitError::Io(e.to_string()))?;
                    self.remove_worktree_admin(path)
                }
                e => Err(e),
            })?;
        } else if path.exists() {
            // Moved here and killed before git was told (see `move_worktree`): git lists it
            // at the path it left, which no longer exists; its admin entry goes with it.
            let admin = Worktree::new(path.to_path_buf())
                .admin_dir()
                .filter(|a| a.starts_with(self.common_dir.join("worktrees")));
            std::fs::remove_dir_all(path).map_err(|e| GitError::Io(e.to_string()))?;
            if let Some(admin) = admin {
                let named = std::fs::read_to_string(admin.join("gitdir")).unwrap_or_default();
                let left = Path::new(named.trim()).parent();
                if left.is_some_and(|l| !l.exists()) {
                    std::fs::remove_dir_all(&admin).map_err(|e| GitError::Io(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    fn remove_worktree_admin(&self, path: &Path) -> Result<()> {
        let admin = self.common_dir.join("worktrees");
        let Ok(entries) = std::fs::read_dir(&admin) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let gitdir = e.path().join("gitdir");
            if let Ok(text) = std::fs::read_to_string(&gitdir) {
                let wt = Path::new(text.trim()).parent().map(Path::to_path_buf);
                if wt.is_some_and(|wt| same_path(&wt, path)) {
                    std::fs::remove_dir_all(e.path()).map_err(|e| GitError::Io(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Paths of all worktrees git knows, with the branch each has checked out.
    pub fn worktrees(&self) -> Result<Vec<(PathBuf, Option<String>)>> {
        let _admin = self.worktree_admin_lock(false)?;
        self.worktrees_unlocked()
    }

    /// [`Repo::worktrees`], for a caller that holds [`Repo::worktree_admin_lock`] already (a
    /// second `flock` of the same file in one process would wait for the first).
    fn worktrees_unlocked(&self) -> Result<Vec<(PathBuf, Option<String>)>> {
        let out = run_git(self.cli_dir(), ["worktree", "list", "--porcelain"])?;
        let mut list = Vec::new();
        for block in out.split("\n\n") {
            let mut path = None;
            let mut branch = None;
            for line in block.lines() {
                if let Some(p) = line.strip_prefix("worktree ") {
                    path = Some(PathBuf::from(p));
                } else if let Some(b) = line.strip_prefix("branch ") {
                    branch = Some(b.to_string());
                }
            }
            if let Some(p) = path {
                list.push((p, branch));
            }
        }
        Ok(list)
    }
}

/// Operations inside one worktree (a run's), through the git CLI so the user's ignore rules,
/// attributes and filters apply exactly as in their own `git add`.
pub struct Worktree {
    pub path: PathBuf,
    /// git machine's own worktree (not the user's checkout): its index is written without
    /// its trailing hash (see [`Worktree::git_bytes`]).
    own: bool,
    /// What changed since the worktree last held a known tree ([`Worktree::watch_from`]).
    watch: std::sync::Mutex<Option<watch::Watch>>,
}

impl Worktree {
    /// One of git machine's worktrees (a run's, a member's, a pooled one).
    pub fn new(path: PathBuf) -> Worktree {
        Worktree {
            path,
            own: true,
            watch: Default::default(),
        }
    }

    /// The user's own checkout: git runs there with the user's settings only.
    pub fn users(path: PathBuf) -> Worktree {
        Worktree {
            path,
            own: false,
            watch: Default::default(),
        }
    }

    /// `git <args>` in this worktree, and only there: a worktree whose `.git` file is gone
    /// (a step deleted it) is an error, never a repository git finds further up — one that the
    /// cache folder happens to be in — staged and committed instead.
    fn git(&self, args: &[&str]) -> Result<String> {
        let out = self.git_bytes(args)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// [`Worktree::git`], git's output as the bytes it wrote (paths need not be UTF-8).
    ///
    /// In git machine's own worktrees git writes the index without hashing it
    /// (`index.skipHash`): the hash is a check against a torn file, not read by anyone, and
    /// at 100k files it is two thirds of every index write (~40 of 60 ms). git 2.40 and
    /// libgit2 1.8 read such an index; git machine's worktrees are read by nothing older.
    fn git_bytes<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Vec<u8>> {
        if !self.path.join(".git").exists() {
            return Err(GitError::WorktreeGone(self.path.clone()));
        }
        run_git_bytes(&self.path, self.with_own_settings(args), self.path.parent())
    }

    /// `args` after the settings git machine gives git in its own worktrees.
    fn with_own_settings<'a, S: AsRef<OsStr>>(&self, args: &'a [S]) -> Vec<&'a OsStr> {
        let skip: &[&str] = if self.own {
            &["-c", "index.skipHash=true"]
        } else {
            &[]
        };
        skip.iter()
            .map(OsStr::new)
            .chain(args.iter().map(AsRef::as_ref))
            .collect()
    }

    /// The commit checked out.
    pub fn head(&self) -> Result<Oid> {
        let out = self.git(&["rev-parse", "HEAD"])?;
        Oid::parse(out.trim()).ok_or_else(|| GitError::Cli {
            args: "rev-parse HEAD".to_string(),
            stderr: format!("not a commit id: {out}"),
        })
    }

    /// Check out `commit` detached, whatever was checked out before.
    pub fn detach_at(&self, commit: Oid) -> Result<()> {
        self.git(&["checkout", "-q", "--force", "--detach", &commit.to_string()])?;
        Ok(())
    }

    /// Apply `commit`'s change to the checkout and its index without committing, as
    /// `git cherry-pick --no-commit` does; on a conflict the paths are left for the person to
    /// resolve, with git's markers. The paths in conflict (none when it applied cleanly).
    pub fn pick_without_commit(&self, commit: Oid) -> Result<Vec<String>> {
        match self.git(&["cherry-pick", "--no-commit", &commit.to_string()]) {
            Ok(_) => Ok(Vec::new()),
            Err(e) => {
                let paths = self.unmerged_paths()?;
                if paths.is_empty() {
                    Err(e)
                } else {
                    Ok(paths)
                }
            }
        }
    }

    /// Run a git command here whose output (its own and its hooks') the person sees, as with
    /// git's own commands; how it ended.
    fn status_shown(&self, cmd: &mut Command) -> Result<std::process::ExitStatus> {
        cmd.current_dir(&self.path)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0)
            .status()
            .map_err(GitError::Spawn)
    }

    /// Run the user's hook `name` as git does (`core.hooksPath` and all), through
    /// `git hook run`; a hook that does not exist is not run. Its output goes to the terminal,
    /// as with git's own commands; a hook that fails is an error.
    pub fn run_hook(&self, name: &str, args: &[&str]) -> Result<()> {
        let mut argv = vec!["hook", "run", "--ignore-missing", name, "--"];
        argv.extend_from_slice(args);
        let status = self.status_shown(git_command().args(&argv))?;
        if status.success() {
            return Ok(());
        }
        Err(GitError::Cli {
            args: argv.join(" "),
            stderr: format!("the {name} hook failed ({status})"),
        })
    }

    /// What `git cherry-pick` does with a message before it commits a pick: the
    /// `prepare-commit-msg` hook gets it in `COMMIT_EDITMSG` with the source `message` and may
    /// change it. The message as the hook left it.
    pub fn prepare_commit_msg(&self, message: &str) -> Result<String> {
        let out = self.git(&["rev-parse", "--git-path", "COMMIT_EDITMSG"])?;
        let path = self.path.join(out.trim());
        std::fs::write(&path, message).map_err(|e| GitError::Io(e.to_string()))?;
        self.run_hook("prepare-commit-msg", &[out.trim(), "message"])?;
        std::fs::read_to_string(&path).map_err(|e| GitError::Io(e.to_string()))
    }

    /// Commit the index on the current branch with `git commit` itself, as
    /// `git cherry-pick --continue` does: git's hooks run (`pre-commit`, `prepare-commit-msg`,
    /// `commit-msg`, `post-commit`) and git signs as `commit.gpgsign` says. The new commit.
    pub fn commit_index(&self, message: &str, author: Option<(&str, &str)>) -> Result<Oid> {
        let mut file = tempfile::NamedTempFile::new().map_err(|e| GitError::Io(e.to_string()))?;
        std::io::Write::write_all(&mut file, message.as_bytes())
            .map_err(|e| GitError::Io(e.to_string()))?;
        let msg = file.path().display().to_string();
        let argv = ["commit", "-q", "--cleanup=whitespace", "-F", &msg];
        let mut cmd = git_command();
        if let Some((name, email)) = author {
            cmd.env("GIT_AUTHOR_NAME", name)
                .env("GIT_AUTHOR_EMAIL", email);
        }
        let status = self.status_shown(cmd.args(argv))?;
        if !status.success() {
            return Err(GitError::Cli {
                args: "commit".to_string(),
                stderr: format!("{status} (what it and its hooks said is above)"),
            });
        }
        self.head()
    }

    /// Forget a pick in progress (git's sequencer state), keeping index and files.
    pub fn forget_pick(&self) {
        let _ = self.git(&["cherry-pick", "--quit"]);
    }

    /// Put the current branch, index and files back at `commit`, keeping untracked files
    /// (`git reset --merge`).
    pub fn reset_merge(&self, commit: Oid) -> Result<()> {
        self.git(&["reset", "-q", "--merge", &commit.to_string()])?;
        Ok(())
    }

    /// Paths with unresolved merge conflicts in the working tree.
    pub fn unmerged_paths(&self) -> Result<Vec<String>> {
        let out = self.git(&["diff", "--name-only", "--diff-filter=U"])?;
        Ok(out.split_whitespace().map(str::to_string).collect())
    }

    /// Whether a merge is in progress (resolved or not, but not committed).
    pub fn merging(&self) -> bool {
        self.git(&["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .is_ok()
    }

    /// Start merging `commit` without committing, leaving conflicts (markers and all) for a
    /// person or a resolver step; returns whether it merged cleanly.
    pub fn start_merge(&self, commit: Oid) -> bool {
        self.git(&[
            "-c",
            "user.name=git machine",
            "-c",
            "user.email=git-machine@localhost",
            "merge",
            "--no-ff",
            "--no-commit",
            &commit.to_string(),
        ])
        .is_ok()
    }

    /// Forget the merge in progress (its result is committed by other means).
    pub fn quit_merge(&self) {
        let _ = self.git(&["merge", "--quit"]);
    }

    /// Stage everything and tell whether any path is still unmerged in the index.
    pub fn stage_resolution(&self) -> Result<bool> {
        self.git(&["add", "-A"])?;
        Ok(!self.git(&["ls-files", "-u"])?.trim().is_empty())
    }

    /// Files of the worktree git does not ignore: tracked ones and untracked ones.
    pub fn unignored_files(&self) -> Result<Vec<String>> {
        let out = self.git(&[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])?;
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Tracked files that differ from HEAD (in the index or the working tree), as
    /// `git status --porcelain` lines.
    pub fn tracked_changes(&self) -> Result<Vec<String>> {
        Ok(self
            .git(&["status", "--porcelain", "--untracked-files=no"])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Which of `paths` git tracks (taken literally, not as patterns).
    pub fn tracked_among(&self, paths: &[&str]) -> Result<Vec<String>> {
        let mut args = vec!["--literal-pathspecs", "ls-files", "-z", "--"];
        args.extend_from_slice(paths);
        Ok(self
            .git(&args)?
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Move index and files from tree `from` to tree `to` (two-way `read-tree -m -u`), refusing
    /// to overwrite local changes; no ref moves.
    pub fn switch_trees(&self, from: Oid, to: Oid) -> Result<()> {
        self.git(&["read-tree", "-m", "-u", &from.to_string(), &to.to_string()])?;
        Ok(())
    }

    /// Paths that `to` adds compared to `from`.
    pub fn added_paths(&self, from: Oid, to: Oid) -> Result<Vec<String>> {
        let out = self.git(&[
            "diff",
            "--name-only",
            "--no-renames",
            "--diff-filter=A",
            "-z",
            &from.to_string(),
            &to.to_string(),
        ])?;
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Whether this folder is a live checkout git recognises.
    pub fn is_valid(&self) -> bool {
        self.path.join(".git").exists() && self.git(&["rev-parse", "--git-dir"]).is_ok()
    }

    /// Stage everything (ignored files excluded, except `force` paths) and write the index as a
    /// tree. A watched worktree stages only the paths its watch heard ([`watch`]), any other
    /// every path. A small index is staged inside git machine ([`scan`]), a big one (or what
    /// libgit2 would store otherwise) by git: `git ls-files` and `git update-index` of the
    /// paths heard, else `git add -A`. The tree is written by libgit2 from the changes.
    ///
    /// A staged path that `leave_out` names and that commit `base` does not hold is taken out
    /// of the index again (the file stays in the worktree, untracked): it is in neither the
    /// tree nor the index, and is returned in [`Staged::left_out`].
    pub fn stage_all(
        &self,
        force: &[&str],
        leave_out: &dyn Fn(&str) -> bool,
        base: Oid,
    ) -> Result<Staged> {
        if !self.path.join(".git").exists() {
            return Err(GitError::WorktreeGone(self.path.clone()));
        }
        configure_libgit2();
        let repo = git2::Repository::open(&self.path)?;
        let odb = repo.odb()?;
        let batch = packs::Batch::start(&repo, &odb)?;
        let (watch, mut index) = self.stage_changed(&repo, base, force)?;
        let ignored: Vec<&str> = force
            .iter()
            .copied()
            .filter(|p| index.is_none() && self.holds_ignored(&repo, p))
            .collect();
        if !ignored.is_empty() {
            let mut args = vec!["add", "-f", "--"];
            args.extend_from_slice(&ignored);
            self.git(&args)?;
        }
        let changes = match &index {
            Some(index) => index_changes(&repo, index, base)?,
            None => self.staged_changes(&repo, base)?,
        };
        // Only the paths added to `base` are judged, not every file of the index.
        let found: Vec<(Vec<u8>, String)> = changes
            .iter()
            .filter(|c| c.change == treediff::Change::Added)
            .map(|c| {
                (
                    c.path.clone(),
                    String::from_utf8_lossy(&c.path).into_owned(),
                )
            })
            .filter(|(_, shown)| leave_out(shown))
            .collect();
        if !found.is_empty() {
            // git reads the index from disk, and the objects it names with it.
            if let Some(mut index) = index.take() {
                batch.flush(&written_for(&repo, changes.iter(), true, None)?)?;
                index.write()?;
            }
            self.unstage(found.iter().map(|(raw, _)| raw.as_slice()))?;
        }
        let kept = changes
            .iter()
            .filter(|c| !found.iter().any(|(raw, _)| *raw == c.path));
        let tree = updated_tree(&repo, base, kept.clone())?;
        // The new objects on disk, then the index that names them.
        batch.flush(&written_for(
            &repo,
            kept.clone(),
            index.is_some(),
            Some(tree),
        )?)?;
        if let Some(mut index) = index {
            index.write()?;
        }
        if let Some(mut watch) = watch {
            let added: Vec<&[u8]> = kept
                .filter(|c| c.change == treediff::Change::Added)
                .map(|c| c.path.as_slice())
                .collect();
            let carry = found.iter().map(|(raw, _)| raw.clone()).collect();
            if watch.settle(self, tree, &added, carry).is_ok() {
                *self.watch.lock().expect("the watch's lock") = Some(watch);
            }
        }
        crate::env::crash::point("staged");
        Ok(Staged {
            tree,
            left_out: found.into_iter().map(|(_, shown)| shown).collect(),
        })
    }

    /// Take `paths` out of the index written on disk; the files stay, untracked. git's own
    /// `rm --cached` keeps the index's untracked cache, which a libgit2 write would drop (the
    /// next `git add -A` would then scan the whole worktree).
    fn unstage<'p>(&self, paths: impl Iterator<Item = &'p [u8]>) -> Result<()> {
        let mut args: Vec<&OsStr> = ["--literal-pathspecs", "rm", "--cached", "-q", "--"]
            .into_iter()
            .map(OsStr::new)
            .collect();
        args.extend(paths.map(OsStr::from_bytes));
        self.git_bytes(&args)?;
        Ok(())
    }

    /// Whether `path` (a folder of the worktree) is ignored or holds a file directly in it
    /// that is: a user's `*.log` rule must not keep git machine's own `output.log` out of a
    /// `force` path. Only the folder's own files are looked at (a handful; the caller names
    /// each folder whose new files matter), not every file below it, which grows with a run.
    fn holds_ignored(&self, repo: &git2::Repository, path: &str) -> bool {
        if repo.is_path_ignored(path).unwrap_or(true) {
            return true;
        }
        let Ok(entries) = std::fs::read_dir(self.path.join(path)) else {
            return false;
        };
        entries.filter_map(|e| e.ok()).any(|e| {
            let file = e.file_type().is_ok_and(|t| !t.is_dir());
            file && repo
                .is_path_ignored(Path::new(path).join(e.file_name()))
                .unwrap_or(true)
        })
    }

    /// From now on, stage by what the kernel says changed instead of reading every folder
    /// ([`watch`]): the worktree holds exactly `commit` (index and files), nothing untracked.
    /// Where a watch cannot serve, stagings read everything as before.
    pub fn watch_from(&self, commit: Oid, when: WatchWhen) -> Result<()> {
        Worktree::watch_all(&[self], commit, when)
    }

    /// [`Worktree::watch_from`] for several worktrees at the same commit (a group's members),
    /// its tree read once; as `when` says.
    pub fn watch_all(worktrees: &[&Worktree], commit: Oid, when: WatchWhen) -> Result<()> {
        let Some(first) = worktrees.first().filter(|_| when == WatchWhen::Always) else {
            return Ok(());
        };
        configure_libgit2();
        let repo = git2::Repository::open(&first.path)?;
        let Some(folders) = watch::Watch::folders_of(&repo, commit)? else {
            return Ok(());
        };
        // The kernel's work for a watch grows with the files of each folder (~25 ms at 100k
        // files): the worktrees' watches start side by side.
        std::thread::scope(|scope| {
            for wt in worktrees {
                let folders = &folders;
                let wt = *wt;
                scope.spawn(move || {
                    *wt.watch.lock().expect("the watch's lock") = watch::Watch::start(wt, folders);
                });
            }
        });
        Ok(())
    }

    /// The size of the worktree's index file (`u64::MAX` when it cannot be told).
    fn index_bytes(&self) -> u64 {
        self.admin_dir()
            .and_then(|a| std::fs::metadata(a.join("index")).ok())
            .map_or(u64::MAX, |m| m.len())
    }

    /// The one of `commits` the worktree holds exactly, when its watch knows that nothing
    /// changed since it held it (no file, not the index).
    fn untouched_at(&self, repo: &git2::Repository, commits: &[Oid]) -> Result<Option<Oid>> {
        let mut guard = self.watch.lock().expect("the watch's lock");
        let Some(watch) = guard.as_mut() else {
            return Ok(None);
        };
        let Some(known) = watch.untouched(self, repo) else {
            *guard = None;
            return Ok(None);
        };
        let Some(tree) = known else {
            return Ok(None);
        };
        for commit in commits {
            if repo.find_commit(commit.0)?.tree_id() == tree.0 {
                return Ok(Some(*commit));
            }
        }
        Ok(None)
    }

    /// Whether stagings here go by a watch ([`Worktree::watch_from`]).
    #[cfg(test)]
    pub fn is_watched(&self) -> bool {
        self.watch.lock().expect("the watch's lock").is_some()
    }

    /// Stage what changed since the worktree last held a known tree: only the paths the
    /// watch names when there is one that can tell, else everything: inside git machine when
    /// the index is small ([`scan`]), else by `git add -A`. The watch, when it is still good,
    /// to settle on the staged tree; the index, when it was staged inside git machine.
    fn stage_changed(
        &self,
        repo: &git2::Repository,
        base: Oid,
        force: &[&str],
    ) -> Result<(Option<watch::Watch>, Option<git2::Index>)> {
        let mut watch = self.watch.lock().expect("the watch's lock").take();
        let to_stage = match watch.as_mut() {
            Some(w) => w.what_to_stage(self, repo, base)?,
            None => watch::ToStage::All,
        };
        let mut inside = self.index_bytes() <= SCAN_IN_PROCESS_BYTES
            && !GIT_DASH_C.load(std::sync::atomic::Ordering::Relaxed)
            && !staged_as_big();
        let mut index = None;
        let done = match to_stage {
            watch::ToStage::Paths { paths, .. } if inside && paths.is_empty() => Targeted::Done,
            watch::ToStage::Paths { paths, index: tree } => {
                if inside {
                    index = scan::stage(repo, Some(&paths), force)?;
                    // Declined once, declined again: what it met is still there.
                    inside = index.is_some();
                }
                if index.is_some() {
                    Targeted::Done
                } else {
                    let known = Known {
                        repo,
                        index: tree,
                        force,
                    };
                    self.stage_paths(&paths, &known)?
                }
            }
            watch::ToStage::All => Targeted::NotDone,
            watch::ToStage::Lost => Targeted::Unwatchable,
        };
        if done != Targeted::Done {
            if inside {
                index = scan::stage(repo, None, force)?;
            }
            if index.is_none() {
                self.git(&["add", "-A"])?;
            }
        }
        Ok((watch.filter(|_| done != Targeted::Unwatchable), index))
    }

    /// Stage `paths` (files and folders) as `git add -A` would: the files among them whose
    /// fate needs no ignore rule (see [`Known::files`]) directly, the others as `git ls-files`
    /// lists them (tracked, or untracked and not ignored); `git update-index` stages the lot.
    /// Nothing is staged when `git add -A` must do it after all: a nested repository among
    /// them (staged as a gitlink, which no watch follows), or one git refuses (a file where a
    /// folder was).
    fn stage_paths(&self, paths: &BTreeSet<Vec<u8>>, known: &Known<'_>) -> Result<Targeted> {
        let mut listed: Vec<u8> = Vec::new();
        let mut asked: Vec<&OsStr> = Vec::new();
        for path in paths {
            match known.files(&self.path, path)? {
                Some(files) => {
                    for file in files {
                        listed.extend_from_slice(&file);
                        listed.push(0);
                    }
                }
                None => asked.push(OsStr::from_bytes(path)),
            }
        }
        if !asked.is_empty() {
            let mut args: Vec<&OsStr> = [
                "--literal-pathspecs",
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
                "--",
            ]
            .map(OsStr::new)
            .to_vec();
            args.extend(asked);
            let out = self.git_bytes(&args)?;
            if out.split(|b| *b == 0).any(|n| n.ends_with(b"/")) {
                return Ok(Targeted::Unwatchable);
            }
            listed.extend_from_slice(&out);
        }
        if listed.iter().all(|b| *b == 0) {
            return Ok(Targeted::Done);
        }
        let update = ["update-index", "--add", "--remove", "-z", "--stdin"];
        let (code, _, _) =
            workspace::git_code(&self.path, &self.with_own_settings(&update), &listed)?;
        Ok(if code == 0 {
            Targeted::Done
        } else {
            Targeted::NotDone
        })
    }

    /// Stage one more file (even an ignored one) on top of what is staged; the staged tree,
    /// as [`Worktree::stage_all`] gives it, with `base` the commit the staging started from.
    pub fn stage_one(&self, path: &str, base: Oid) -> Result<Oid> {
        self.git(&["--literal-pathspecs", "add", "-f", "--", path])?;
        configure_libgit2();
        let repo = git2::Repository::open(&self.path)?;
        updated_tree(&repo, base, self.staged_changes(&repo, base)?.iter())
    }

    /// How the index differs from commit `base`'s tree: every file staged since. A small
    /// index is read here, which saves a git process a step; a big one is left to
    /// `git diff-index --cached`, which skips the folders the index's own record of its trees
    /// says are unchanged instead of reading every entry into git machine. An index libgit2
    /// cannot read (a split or sparse one) goes to git too.
    fn staged_changes(&self, repo: &git2::Repository, base: Oid) -> Result<Vec<treediff::Changed>> {
        if !self.path.join(".git").exists() {
            return Err(GitError::WorktreeGone(self.path.clone()));
        }
        let bytes = std::fs::metadata(repo.path().join("index")).map_or(u64::MAX, |m| m.len());
        if bytes <= READ_INDEX_BYTES {
            if let Ok(changes) = staged_changes_read(repo, base) {
                return Ok(changes);
            }
        }
        self.staged_changes_listed(base)
    }

    /// [`Worktree::staged_changes`] as `git diff-index --cached` lists them.
    fn staged_changes_listed(&self, base: Oid) -> Result<Vec<treediff::Changed>> {
        let base = base.to_string();
        let out = self.git_bytes(&[
            "diff-index",
            "--cached",
            "-z",
            "--no-renames",
            // `ignore = all` for a submodule would hide its staged gitlink change.
            "--ignore-submodules=none",
            "--raw",
            &base,
        ])?;
        treediff::parse_raw(&out).map_err(|e| GitError::Cli {
            args: format!("diff-index --cached {base}"),
            stderr: e,
        })
    }

    /// Untracked files git does not ignore, each by its path (inside untracked folders too).
    pub fn untracked(&self) -> Result<Vec<String>> {
        let out = self.git(&["ls-files", "-z", "--others", "--exclude-standard"])?;
        Ok(out
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Whether anything differs from HEAD (tracked changes or untracked files, not ignored ones).
    pub fn is_dirty(&self) -> Result<bool> {
        if self.clean_by_record().unwrap_or(false) {
            return Ok(false);
        }
        Ok(!self.changes()?.is_empty())
    }

    /// What differs from HEAD (tracked changes and untracked files, not ignored ones), as
    /// `git status --porcelain` lines.
    pub fn changes(&self) -> Result<Vec<String>> {
        Ok(self
            .git(&[
                "-c",
                "core.untrackedCache=true",
                "status",
                "--porcelain",
                "--untracked-files=all",
            ])?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Make the worktree's index and files exactly `commit` (untracked, non-ignored files
    /// removed), populated submodules too. No ref moves: the caller moves the branch by
    /// compare-and-swap.
    pub fn reset_hard(&self, commit: Oid) -> Result<()> {
        self.reset_keeping(commit, &[])
    }

    /// Move a worktree that holds exactly one of the commits `from` (its index is that
    /// commit's tree) to commit `to`, writing only the files that differ
    /// ([`Worktree::move_between`]), as a checkout does: files nobody asked to change stay as
    /// they are.
    /// `Ok(false)`, with nothing changed, when the index is none of them or a file to rewrite
    /// has changes of its own.
    pub fn advance(&self, from: &[Oid], to: Oid) -> Result<bool> {
        configure_libgit2();
        let repo = git2::Repository::open(&self.path)?;
        let untouched = self.untouched_at(&repo, from)?;
        let mut held = untouched;
        if held.is_none() {
            for commit in from {
                if self.staged_changes(&repo, *commit)?.is_empty() {
                    held = Some(*commit);
                    break;
                }
            }
        }
        let Some(from) = held else {
            return Ok(false);
        };
        if !self.move_between(Some(from), to, untouched.is_some())? {
            return Ok(false);
        }
        crate::env::crash::point("reset");
        self.reset_submodules()?;
        Ok(true)
    }

    /// [`Worktree::reset_hard`], keeping the untracked files `keep` (paths from the root, such
    /// as the files [`Worktree::stage_all`] left out) where they are.
    pub fn reset_keeping(&self, commit: Oid, keep: &[String]) -> Result<()> {
        self.git(&["read-tree", "--reset", "-u", &commit.to_string()])?;
        crate::env::crash::point("reset");
        let patterns: Vec<String> = keep.iter().map(|p| format!("/{}", literal(p))).collect();
        let mut args = vec!["clean", "-fdq"];
        for p in &patterns {
            args.extend(["-e", p.as_str()]);
        }
        self.git(&args)?;
        self.reset_submodules()
    }
}

/// Which worktrees git machine watches (`git config machine.watch`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum WatchWhen {
    /// Every one the system lets it watch (`auto`, the default, or `true`): a watched
    /// staging compares only the paths heard, inside git machine for a small index, with
    /// `git ls-files` and `git update-index` for a big one.
    #[default]
    Always,
    /// None: every staging reads every folder (`false`).
    Never,
}

/// Up to this index size (~2k files) a staging goes inside git machine ([`scan`]), watched or
/// not: the git process it spares is most of the cost. Above it git stages: `git add -A`
/// reads the folders faster than libgit2 (its untracked cache, its threads), and libgit2
/// reading and writing the whole index would cost more than git's process.
const SCAN_IN_PROCESS_BYTES: u64 = READ_INDEX_BYTES;

/// What a watched staging knows without asking git which paths it tracks and ignores.
struct Known<'a> {
    repo: &'a git2::Repository,
    /// The tree the index holds exactly, when known.
    index: Option<Oid>,
    /// Paths staged even when ignored (the run's own folder).
    force: &'a [&'a str],
}

impl Known<'_> {
    /// The files to hand `git update-index` for `path` when no ignore rule can change what
    /// `git add -A` does with them, else `None` (git is asked): every file in or under a
    /// `force` path (staged whatever the rules), with those the index has there; or `path`
    /// itself when the index tracks it as a file and it is not a folder now (tracked files
    /// are staged, ignored or not; a missing one is removed).
    fn files(&self, root: &Path, path: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let Some(index) = self.index else {
            return Ok(None);
        };
        let tree = self.repo.find_tree(index.0)?;
        let on_disk = root.join(OsStr::from_bytes(path));
        let meta = std::fs::symlink_metadata(&on_disk).ok();
        let forced = self
            .force
            .iter()
            .any(|f| watch::within(path, f.trim_end_matches('/').as_bytes()));
        if !forced {
            let tracked = tree
                .get_path(Path::new(OsStr::from_bytes(path)))
                .ok()
                .is_some_and(|e| matches!(e.filemode(), 0o100644 | 0o100755 | 0o120000));
            let folder = meta.is_some_and(|m| m.is_dir());
            return Ok((tracked && !folder).then(|| vec![path.to_vec()]));
        }
        let mut files = BTreeSet::new();
        if meta.is_some() {
            for entry in walkdir::WalkDir::new(&on_disk).follow_links(false) {
                let entry = entry.map_err(|e| GitError::Io(e.to_string()))?;
                if !entry.file_type().is_dir() {
                    let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
                    files.insert(rel.as_os_str().as_bytes().to_vec());
                }
            }
        }
        match tree.get_path(Path::new(OsStr::from_bytes(path))) {
            Ok(e) if e.kind() == Some(git2::ObjectType::Tree) => {
                self.repo
                    .find_tree(e.id())?
                    .walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                        if entry.kind() == Some(git2::ObjectType::Blob) {
                            let inner = [dir.as_bytes(), entry.name_bytes()].concat();
                            files.insert(folders::join(path, &inner));
                        }
                        git2::TreeWalkResult::Ok
                    })?;
            }
            Ok(_) => {
                files.insert(path.to_vec());
            }
            Err(_) => {}
        }
        Ok(Some(files.into_iter().collect()))
    }
}

/// How a staging of the paths a watch named went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Targeted {
    Done,
    /// `git add -A` is to do it; the watch stays good.
    NotDone,
    /// `git add -A` is to do it, and the watch can no longer tell.
    Unwatchable,
}

/// What [`Worktree::stage_all`] staged: the tree, and the paths it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub tree: Oid,
    pub left_out: Vec<String>,
}

/// Commit `base`'s tree with `changes` made to it: the staged tree, written without
/// reading the index (only the folders on the changed paths are written again).
/// The biggest index [`Worktree::staged_changes`] reads itself (about 2k files). Measured
/// per step: at 1k files reading takes 1.2–1.9 ms against 3.4–4.3 ms for `git diff-index`; at
/// 10k, 14–16 ms against 5–7 ms (libgit2 walks every folder, git skips the unchanged ones).
const READ_INDEX_BYTES: u64 = 160 << 10;

/// How the index of `repo` differs from commit `base`'s tree, read by libgit2: the same list
/// `git diff-index --cached --no-renames --ignore-submodules=none` gives.
fn staged_changes_read(repo: &git2::Repository, base: Oid) -> Result<Vec<treediff::Changed>> {
    // The file as it is now, read once: the repository's own index object is the one it
    // read first (git may have written a newer one since), and asking it to reread when
    // changed reads a hashless index (`index.skipHash`) twice, its checksum never matching.
    let index = git2::Index::open(&repo.path().join("index"))?;
    index_changes(repo, &index, base)
}

/// How `index` differs from commit `base`'s tree, as [`staged_changes_read`] tells.
fn index_changes(
    repo: &git2::Repository,
    index: &git2::Index,
    base: Oid,
) -> Result<Vec<treediff::Changed>> {
    let tree = repo.find_commit(base.0)?.tree()?;
    let mut opts = git2::DiffOptions::new();
    opts.include_typechange(true)
        .ignore_submodules(false)
        .skip_binary_check(true);
    let diff = repo.diff_tree_to_index(Some(&tree), Some(index), Some(&mut opts))?;
    let side = |file: git2::DiffFile<'_>| {
        (!file.id().is_zero()).then(|| treediff::Entry {
            id: Oid(file.id()),
            mode: i32::from(file.mode()),
        })
    };
    let mut changes = Vec::new();
    for delta in diff.deltas() {
        let path = delta
            .new_file()
            .path_bytes()
            .or_else(|| delta.old_file().path_bytes())
            .unwrap_or_default()
            .to_vec();
        let shown = String::from_utf8_lossy(&path);
        let refuse = |why: String| GitError::Cli {
            args: "read the index".into(),
            stderr: why,
        };
        let change = match delta.status() {
            git2::Delta::Added => treediff::Change::Added,
            git2::Delta::Deleted => treediff::Change::Deleted,
            git2::Delta::Modified | git2::Delta::Typechange => treediff::Change::Modified,
            git2::Delta::Conflicted => {
                return Err(refuse(format!(
                    "{shown} is unmerged: resolve it and stage it"
                )))
            }
            other => return Err(refuse(format!("unexpected change {other:?} for {shown}"))),
        };
        changes.push(treediff::Changed {
            path,
            change,
            old: side(delta.old_file()),
            new: side(delta.new_file()),
        });
    }
    Ok(changes)
}

fn updated_tree<'c>(
    repo: &git2::Repository,
    base: Oid,
    changes: impl Iterator<Item = &'c treediff::Changed>,
) -> Result<Oid> {
    let (removed, upserted): (Vec<_>, Vec<_>) = changes.partition(|c| c.new.is_none());
    let mut tree = repo.find_commit(base.0)?.tree()?;
    // A file that became a folder (or the reverse) is removed first: libgit2 refuses to
    // remove `x` and add `x/y` in one update.
    let under = |dir: &[u8], path: &[u8]| {
        path.len() > dir.len() && path.starts_with(dir) && path[dir.len()] == b'/'
    };
    let clash = removed.iter().any(|r| {
        upserted
            .iter()
            .any(|u| under(&r.path, &u.path) || under(&u.path, &r.path))
    });
    let mut update = git2::build::TreeUpdateBuilder::new();
    for r in &removed {
        update.remove(r.path.clone());
    }
    if clash {
        let id = update.create_updated(repo, &tree)?;
        tree = repo.find_tree(id)?;
        update = git2::build::TreeUpdateBuilder::new();
    }
    for u in &upserted {
        if let Some(e) = u.new {
            update.upsert(u.path.clone(), e.id.0, e.file_mode()?);
        }
    }
    Ok(Oid(update.create_updated(repo, &tree)?))
}

/// The objects a staging may have written that its index and tree name: the blobs of
/// `changes` when git machine staged them (`blobs`; git writes its own), and the folders of
/// `tree` that hold a change, the root included. Submodules' commits are no objects of ours.
fn written_for<'c>(
    repo: &git2::Repository,
    changes: impl Iterator<Item = &'c treediff::Changed>,
    blobs: bool,
    tree: Option<Oid>,
) -> Result<BTreeSet<git2::Oid>> {
    let mut objects = BTreeSet::new();
    let mut folders: BTreeSet<&[u8]> = BTreeSet::new();
    let mut any = false;
    for c in changes {
        any = true;
        if let Some(e) = c.new.filter(|e| blobs && e.mode != 0o160000) {
            objects.insert(e.id.0);
        }
        let mut path = c.path.as_slice();
        while let Some(at) = path.iter().rposition(|b| *b == b'/') {
            path = &path[..at];
            if !folders.insert(path) {
                break;
            }
        }
    }
    // Without a change the tree is the base's, on disk already.
    if let Some(tree) = tree.filter(|_| any) {
        let root = repo.find_tree(tree.0)?;
        objects.insert(root.id());
        for folder in folders {
            // A folder all of whose files went is in no tree.
            if let Ok(entry) = root.get_path(Path::new(OsStr::from_bytes(folder))) {
                objects.insert(entry.id());
            }
        }
    }
    Ok(objects)
}

/// `path` as a gitignore pattern that matches only itself.
fn literal(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | '\\' | '!' | '#' | ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn same_path(a: &Path, b: &Path) -> bool {
    let ca = std::fs::canonicalize(a).unwrap_or_else(|_| a.to_path_buf());
    let cb = std::fs::canonicalize(b).unwrap_or_else(|_| b.to_path_buf());
    ca == cb || a == b
}

/// Parse `Name <email> 1234567890 +0100` as printed by `git var GIT_COMMITTER_IDENT`.
fn parse_ident(line: &str) -> Ident {
    let (name, rest) = line.split_once(" <").unwrap_or((line, ""));
    let (email, date) = rest
        .split_once("> ")
        .unwrap_or((rest.trim_end_matches('>'), ""));
    let mut parts = date.split_whitespace();
    let secs = parts.next().and_then(|s| s.parse::<i64>().ok());
    let offset = parts.next().and_then(|tz| {
        let sign = if tz.starts_with('-') { -1 } else { 1 };
        let digits = tz.trim_start_matches(['+', '-']);
        let h: i32 = digits.get(..2)?.parse().ok()?;
        let m: i32 = digits.get(2..4)?.parse().ok()?;
        Some(sign * (h * 60 + m))
    });
    Ident {
        name: name.to_string(),
        email: email.to_string(),
        fixed_time: secs.zip(offset),
    }
}

/// `Key: value` lines of the message's last paragraph.
pub fn parse_trailers(message: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let last = message.trim_end().rsplit("\n\n").next().unwrap_or("");
    for line in last.lines() {
        if let Some((k, v)) = line.split_once(": ") {
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                map.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    map
}

/// For tests: a temporary folder holding a scratch repository `repo/`, opened.
#[cfg(test)]
pub(crate) fn scratch_repo() -> (tempfile::TempDir, PathBuf, Repo) {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo_dir = dir.path().join("repo");
    std::fs::create_dir_all(&repo_dir).expect("repo dir");
    init_scratch_repo(&repo_dir).expect("repository");
    let repo = Repo::open(&repo_dir, &GitEnv::from_vars(&[])).expect("open");
    (dir, repo_dir, repo)
}

/// Make `dir` a repository with one commit and a local identity (for `git machine demo`).
pub fn init_scratch_repo(dir: &Path) -> Result<()> {
    run_git(dir, ["init", "-q", "-b", "main"])?;
    run_git(dir, ["config", "user.name", "Demo User"])?;
    run_git(dir, ["config", "user.email", "demo@example.com"])?;
    std::fs::write(
        dir.join("README.md"),
        "# Demo project\n\nA scratch repository made by `git machine demo`.\n",
    )
    .map_err(|e| GitError::Io(e.to_string()))?;
    run_git(dir, ["add", "README.md"])?;
    run_git(dir, ["commit", "-q", "-m", "initial commit"])?;
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Tests: on this thread, stage every index as a big one (by git's processes), so the
    /// twin tests hold both ways of staging to git.
    pub(super) static STAGE_AS_BIG: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn staged_as_big() -> bool {
    #[cfg(test)]
    return STAGE_AS_BIG.with(std::cell::Cell::get);
    #[cfg(not(test))]
    false
}

/// Whether git machine runs with `git -c` settings (`GIT_CONFIG_PARAMETERS`, set once a
/// repository is opened with them). libgit2 reads none of them, so stagings are then git's
/// (`core.autocrlf`, a filter, an excludes file given that way all change what is staged).
static GIT_DASH_C: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Process-wide libgit2 settings, applied once. Strict object creation is off: with it,
/// writing a tree checks that every blob it names exists, one file lookup per index entry —
/// thousands a step in a large worktree — for objects `git add` has just written.
fn configure_libgit2() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        git2::opts::strict_object_creation(false);
        // git itself trusts the objects it reads (only `fsck` checks them); libgit2 hashing
        // every tree it reads again was the largest part of comparing two trees.
        git2::opts::strict_hash_verification(false);
    });
}

/// How a `git` whose output was passed on ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Streamed {
    /// It exited with this code.
    Exited(i32),
    /// The reader of its output went away first; how git then ended does not matter.
    ReaderGone,
}

/// Run `git` in `dir` with its stdout passed, chunk by chunk, to `sink` (which returns false
/// once its reader has gone away); stderr is the user's. Its output is a pipe, so git itself
/// starts no pager: the caller's output decides.
pub fn git_stream(
    dir: &Path,
    args: &[String],
    sink: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<Streamed> {
    use std::io::Read;
    let mut child = git_command()
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(GitError::Spawn)?;
    let mut out = child.stdout.take().expect("stdout is piped");
    let mut buf = [0u8; 8192];
    let mut gone = false;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if sink(&buf[..n]) => {}
            Ok(_) => {
                gone = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(GitError::Io(e.to_string())),
        }
    }
    // Closing our end makes a git that still writes end (SIGPIPE), as it would under a pager.
    drop(out);
    let status = child.wait().map_err(GitError::Spawn)?;
    Ok(match (gone, status.code()) {
        (true, _) => Streamed::ReaderGone,
        (false, Some(code)) => Streamed::Exited(code),
        (false, None) => Streamed::Exited(128 + signal_of(&status)),
    })
}

fn signal_of(status: &std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.signal().unwrap_or(0)
}

impl Worktree {
    /// The ref the worktree's HEAD points at, read from its admin files without spawning git.
    pub fn head_ref(&self) -> Option<String> {
        let dotgit = std::fs::read_to_string(self.path.join(".git")).ok()?;
        let admin = PathBuf::from(dotgit.trim().strip_prefix("gitdir: ")?);
        let head = std::fs::read_to_string(admin.join("HEAD")).ok()?;
        head.trim().strip_prefix("ref: ").map(str::to_string)
    }

    /// Point the worktree's HEAD at `branch` again, leaving its index and files as they are
    /// (`git symbolic-ref`): after a step switched it to another branch.
    pub fn attach(&self, branch: &RefName) -> Result<()> {
        self.git(&["symbolic-ref", "HEAD", branch.as_str()])?;
        Ok(())
    }
}

impl Repo {
    /// A config value, honouring `git -c` (`GIT_CONFIG_PARAMETERS`, which libgit2 ignores) first.
    pub fn config_str(&self, key: &str) -> Option<String> {
        if let Some(v) = self
            .env
            .config_parameters
            .as_deref()
            .and_then(|params| config_from_parameters(params, key))
        {
            return Some(v);
        }
        self.repo.config().ok()?.get_string(key).ok()
    }
}

/// Look `key` up in `GIT_CONFIG_PARAMETERS` (`'k'='v' 'k2'='v2'`, as `git -c` passes it).
pub fn config_from_parameters(params: &str, key: &str) -> Option<String> {
    let mut found = None;
    let mut chars = params.chars().peekable();
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => in_quote = !in_quote,
            '\\' if !in_quote => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ' ' if !in_quote => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            if k.eq_ignore_ascii_case(key) {
                found = Some(v.to_string());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_come_from_the_last_paragraph() {
        let t = parse_trailers("design: wrote it\n\nbody: not a trailer? yes\n\nMachine-Run: abc\nMachine-Step: design\n");
        assert_eq!(t.get("Machine-Run").map(String::as_str), Some("abc"));
        assert_eq!(t.get("Machine-Step").map(String::as_str), Some("design"));
        assert!(!t.contains_key("body"));
    }

    /// Regression: a kill in the middle of a ref update left `<ref>.lock`, and every later
    /// update of that ref failed ("failed to lock file").
    #[test]
    fn stale_ref_locks_of_a_run_are_removed_and_its_refs_update_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        init_scratch_repo(dir.path()).expect("repository");
        let repo = Repo::open(dir.path(), &GitEnv::default()).expect("repo");
        let head = repo.head_commit().expect("a commit");
        let branch = RefName::new("refs/heads/machine/r1");
        let member = RefName::new("refs/machine/parallel/r1/left");
        let common = repo.common_dir().to_path_buf();
        std::fs::create_dir_all(common.join("refs/heads/machine")).expect("folder");
        std::fs::create_dir_all(common.join("refs/machine/parallel/r1")).expect("folder");
        std::fs::write(common.join("refs/heads/machine/r1.lock"), "").expect("stale lock");
        std::fs::write(common.join("refs/machine/parallel/r1/left.lock"), "").expect("stale");
        let update = |name: &RefName| {
            repo.update_refs(
                &[RefUpdate {
                    name: name.clone(),
                    old: None,
                    new: Some(head),
                }],
                "test",
            )
        };
        assert!(update(&member).is_err(), "the stale lock stops git");
        let other = common.join("refs/heads/main.lock");
        std::fs::write(&other, "").expect("another ref's lock");
        let removed = repo
            .remove_stale_ref_locks(&branch, &["refs/machine/parallel/r1/".to_string()])
            .expect("removed");
        assert_eq!(removed, 2);
        assert!(other.exists(), "only the run's refs' locks go");
        update(&branch).expect("the branch updates again");
        update(&member).expect("the member ref updates again");
    }

    /// Regression: a worktree whose `.git` a step had deleted was staged as part of whatever
    /// repository lay above it.
    #[test]
    fn a_worktree_without_its_git_file_is_never_taken_for_the_repository_above() {
        let outer = tempfile::tempdir().expect("temp dir");
        init_scratch_repo(outer.path()).expect("outer repository");
        let wt = Worktree::new(outer.path().join("wt"));
        std::fs::create_dir_all(&wt.path).expect("worktree folder");
        std::fs::write(wt.path.join("file"), "x").expect("file");
        let base = Oid::parse(&"0".repeat(40)).expect("an oid");
        let err = wt.stage_all(&[], &|_| false, base).expect_err("no .git");
        assert!(matches!(err, GitError::WorktreeGone(_)), "{err}");
        std::fs::write(wt.path.join(".git"), "gitdir: /nowhere\n").expect(".git file");
        assert!(wt.stage_all(&[], &|_| false, base).is_err());
        let status = run_git(outer.path(), ["status", "--porcelain"]).expect("status");
        assert_eq!(
            status.trim(),
            "?? wt/",
            "the outer repository's index was changed"
        );
    }

    #[test]
    fn attach_points_head_at_the_branch_again_and_leaves_index_and_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        init_scratch_repo(dir.path()).expect("repository");
        run_git(dir.path(), ["checkout", "-q", "-b", "other"]).expect("checkout -b");
        std::fs::write(dir.path().join("README.md"), "edited\n").expect("edit");
        let wt = Worktree::new(dir.path().to_path_buf());
        wt.attach(&RefName::new("refs/heads/main")).expect("attach");
        let head = run_git(dir.path(), ["symbolic-ref", "HEAD"]).expect("HEAD");
        assert_eq!(head.trim(), "refs/heads/main");
        let status = run_git(dir.path(), ["status", "--porcelain"]).expect("status");
        assert_eq!(status.trim(), "M README.md");
    }

    /// Regression: `git worktree list` failed ("failed to read .git/worktrees/<w>/commondir")
    /// while another process was adding or removing a worktree, so finished members'
    /// worktrees were left behind when runs went on at once.
    #[test]
    fn worktrees_added_listed_and_removed_at_once_never_fail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo_dir = dir.path().join("repo");
        std::fs::create_dir_all(&repo_dir).expect("repo dir");
        init_scratch_repo(&repo_dir).expect("repository");
        std::thread::scope(|s| {
            for t in 0..4 {
                let (dir, repo_dir) = (dir.path(), repo_dir.as_path());
                s.spawn(move || {
                    let repo = Repo::open(repo_dir, &GitEnv::from_vars(&[])).expect("open");
                    let head = repo.head_commit().expect("a commit");
                    for i in 0..8 {
                        let wt = dir.join(format!("wt-{t}-{i}"));
                        repo.worktree_add_detached(&wt, head).expect("add");
                        repo.worktrees().expect("list");
                        repo.worktree_remove(&wt).expect("remove");
                    }
                });
            }
        });
        let repo = Repo::open(&repo_dir, &GitEnv::from_vars(&[])).expect("open");
        assert_eq!(repo.worktrees().expect("list").len(), 1);
    }

    /// Regression (four runs at once): `git worktree repair` of a moved worktree rewrote the
    /// `.git` file of a worktree another process was adding, whose `git worktree add` then
    /// failed with "invalid gitfile format".
    #[test]
    fn worktrees_added_while_others_are_repaired_never_fail() {
        let (dir, repo_dir, repo) = scratch_repo();
        let head = repo.head_commit().expect("a commit");
        let moved = dir.path().join("moved");
        repo.worktree_add_detached(&moved, head).expect("add");
        std::thread::scope(|s| {
            for t in 0..2 {
                let (dir, repo_dir) = (dir.path(), repo_dir.as_path());
                s.spawn(move || {
                    let repo = Repo::open(repo_dir, &GitEnv::from_vars(&[])).expect("open");
                    for i in 0..12 {
                        let wt = dir.join(format!("wt-{t}-{i}"));
                        repo.worktree_add_detached(&wt, head).expect("add");
                        repo.worktree_remove(&wt).expect("remove");
                    }
                });
            }
            for _ in 0..2 {
                let (moved, repo_dir) = (moved.as_path(), repo_dir.as_path());
                s.spawn(move || {
                    let repo = Repo::open(repo_dir, &GitEnv::from_vars(&[])).expect("open");
                    for _ in 0..24 {
                        repo.repair_worktree(moved).expect("repair");
                    }
                });
            }
        });
        assert_eq!(repo.worktrees().expect("list").len(), 2);
    }

    /// Regression: a pooled worktree whose `.git` file named an admin folder that was gone
    /// ("validation failed, cannot remove working tree") failed every later run at the pool.
    #[test]
    fn a_worktree_whose_git_file_is_broken_is_removed_all_the_same() {
        let (dir, _, repo) = scratch_repo();
        let wt = dir.path().join("wt");
        repo.worktree_add_detached(&wt, repo.head_commit().expect("head"))
            .expect("add");
        std::fs::write(wt.join(".git"), "gitdir: /nowhere/worktrees/wt\n").expect("break it");
        repo.worktree_remove(&wt).expect("removed");
        assert!(!wt.exists());
        assert_eq!(repo.worktrees().expect("list").len(), 1);
    }

    /// Regression: a worktree moved out of the pool by a process killed before `git worktree
    /// repair` was removed as a plain folder, and git listed it at its old path (prunable)
    /// for good.
    #[test]
    fn a_worktree_moved_and_not_repaired_is_removed_with_its_admin_entry() {
        let (dir, repo_dir, repo) = scratch_repo();
        let (pooled, taken) = (dir.path().join("pooled"), dir.path().join("taken"));
        repo.worktree_add_detached(&pooled, repo.head_commit().expect("head"))
            .expect("add");
        std::fs::rename(&pooled, &taken).expect("moved, git not told");
        let list = || run_git(&repo_dir, ["worktree", "list", "--porcelain"]).expect("list");
        assert!(list().contains("prunable"), "{}", list());
        repo.worktree_remove(&taken).expect("remove");
        assert!(!taken.exists());
        assert_eq!(repo.worktrees().expect("list").len(), 1, "{}", list());
        assert!(!list().contains("prunable"), "{}", list());
    }

    #[test]
    fn stage_all_leaves_out_new_paths_it_is_told_and_resets_keep_them() {
        let tmp = tempfile::tempdir().expect("tmp");
        init_scratch_repo(tmp.path()).expect("repo");
        std::fs::write(tmp.path().join("tracked.pem"), "old").expect("write");
        run_git(tmp.path(), ["add", "tracked.pem"]).expect("add");
        run_git(tmp.path(), ["commit", "-q", "-m", "pem"]).expect("commit");
        let wt = Worktree::new(tmp.path().to_path_buf());
        for (p, text) in [("a.txt", "a"), ("k/.env", "s"), ("tracked.pem", "new")] {
            std::fs::create_dir_all(tmp.path().join(p).parent().expect("dir")).expect("dirs");
            std::fs::write(tmp.path().join(p), text).expect("write");
        }
        let secret = |p: &str| p.ends_with(".env") || p.ends_with(".pem");
        let head = wt.head().expect("head");
        let staged = wt.stage_all(&[], &secret, head).expect("stage");
        assert_eq!(
            staged.left_out,
            ["k/.env"],
            "a tracked file is not left out"
        );
        let repo = git2::Repository::open(tmp.path()).expect("open");
        let tree = repo.find_tree(staged.tree.0).expect("tree");
        assert!(tree.get_path(Path::new("a.txt")).is_ok());
        assert!(tree.get_path(Path::new("tracked.pem")).is_ok());
        assert!(tree.get_path(Path::new("k/.env")).is_err());
        let listed = run_git(tmp.path(), ["ls-files"]).expect("ls-files");
        assert!(
            !listed.contains(".env"),
            "not in the index either: {listed}"
        );
        wt.reset_keeping(head, &staged.left_out).expect("reset");
        assert!(tmp.path().join("k/.env").exists(), "kept");
        assert!(!tmp.path().join("a.txt").exists(), "cleaned");
    }

    /// A run folder is recognised as the base's with the step's files written in only when
    /// it is exactly that: not with a file's bytes changed, a file missing, or one more file.
    #[test]
    fn a_folder_is_the_base_with_files_only_when_exactly_so() {
        let tmp = tempfile::tempdir().expect("tmp");
        init_scratch_repo(tmp.path()).expect("repo");
        let repo = Repo::open(tmp.path(), &GitEnv::default()).expect("open");
        let empty = repo
            .tree_of(repo.head_commit().expect("head"))
            .expect("tree");
        let file = |p: &str, b: &str| (p.to_string(), b.as_bytes().to_vec());
        let base = repo
            .tree_with_files(
                empty,
                &[file("r/run.toml", "run"), file("r/old.txt", "old")],
            )
            .expect("base");
        let files = [
            file("r/steps/01/step.toml", "step"),
            file("r/state.toml", "s"),
        ];
        let with = repo.tree_with_files(base, &files).expect("with");
        assert!(repo
            .folder_is_with_files(with, base, "r", &files)
            .expect("check"));
        let outside = repo
            .tree_with_files(with, &[file("code.rs", "x")])
            .expect("outside");
        assert!(repo
            .folder_is_with_files(outside, base, "r", &files)
            .expect("check"));
        for (what, tree) in [
            (
                "bytes differ",
                repo.tree_with_files(with, &[file("r/state.toml", "t")]),
            ),
            (
                "one more",
                repo.tree_with_files(with, &[file("r/steps/02/x", "x")]),
            ),
            (
                "old changed",
                repo.tree_with_files(with, &[file("r/old.txt", "new")]),
            ),
            ("a file missing", repo.tree_with_files(base, &files[..1])),
            ("nothing", Ok(base)),
        ] {
            let tree = tree.expect(what);
            assert!(
                !repo
                    .folder_is_with_files(tree, base, "r", &files)
                    .expect("check"),
                "{what}"
            );
        }
        assert!(
            !repo
                .folder_is_with_files(empty, base, "r", &files)
                .expect("check"),
            "no folder"
        );
    }

    #[test]
    fn ident_line_is_parsed() {
        let i = parse_ident("A U Thor <a@example.com> 1112911993 -0130");
        assert_eq!(i.name, "A U Thor");
        assert_eq!(i.email, "a@example.com");
        assert_eq!(i.fixed_time, Some((1112911993, -90)));
    }
}
