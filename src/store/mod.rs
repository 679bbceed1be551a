//! Run state: what is stored where, in which format, and how to find runs.
//!
//! Everything a resume needs is in the run branch's tip commit: `run.toml` (the resolved run:
//! workflow text, vars, base), `state.toml` (the checkpoint: what runs next, status, counters,
//! sessions) and one record folder per executed step. Files outside git (worktrees, locks, logs)
//! are disposable and rebuilt on demand. Stored files carry `version`; [`upgrade`] runs on read,
//! and the serde forms here are the only place the on-disk shape is spelled out.

pub mod lock;
pub mod mail;
pub mod pool;
pub mod secrets;
pub mod summary;
pub mod trust;
pub mod txn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::env::Env;
use crate::git::{Oid, RefName, Repo};
use crate::workflow::StepId;

/// Version of `run.toml`, `state.toml` and `step.toml` this build writes.
pub const FORMAT_VERSION: u32 = 1;

pub const BRANCH_PREFIX: &str = "refs/heads/machine/";
pub const ATTIC_PREFIX: &str = "refs/machine/attic/";
pub const ATTEMPTS_PREFIX: &str = "refs/machine/attempts/";
pub const PARALLEL_PREFIX: &str = "refs/machine/parallel/";
/// Every folder of refs git machine writes.
pub const MACHINE_REF_FOLDERS: [&str; 2] = [BRANCH_PREFIX, "refs/machine/"];

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{what} of run {run} is unreadable: {detail}")]
    Corrupt {
        run: String,
        what: String,
        detail: String,
    },
    #[error("{what} of run {run} was written by a newer git machine (format {found}, this one reads up to {FORMAT_VERSION})")]
    TooNew {
        run: String,
        what: String,
        found: u32,
    },
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

/// A run's id: `YYMMDD-HHMMSS-mmr` (UTC; `mm` the milliseconds in base 32, `r` random):
/// sortable by start time, unique by its tail.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

impl RunId {
    pub fn generate(now: SystemTime) -> RunId {
        let stamp = humantime::format_rfc3339_seconds(now).to_string(); // 2026-11-21T12:35:03Z
        let digits: String = stamp.chars().filter(char::is_ascii_digit).collect(); // 20261121123503
        const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
        // Milliseconds in two base-32 digits keep runs of the same second in start order; the
        // last character is random, for runs started in the same millisecond.
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.subsec_millis() as usize)
            .unwrap_or(0);
        let tail = [
            ALPHABET[ms / 32] as char,
            ALPHABET[ms % 32] as char,
            ALPHABET[fastrand::usize(..ALPHABET.len())] as char,
        ];
        RunId(format!(
            "{}-{}-{}",
            &digits[2..8],
            &digits[8..14],
            tail.iter().collect::<String>()
        ))
    }

    /// Accept a full id read from a ref name or a record.
    pub fn from_stored(s: &str) -> RunId {
        RunId(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn branch(&self) -> RefName {
        RefName::new(format!("{BRANCH_PREFIX}{}", self.0))
    }

    /// `.codemachine/runs/<id>` inside the tree.
    pub fn dir(&self) -> String {
        format!(".codemachine/runs/{}", self.0)
    }

    pub fn attic_prefix(&self) -> String {
        format!("{ATTIC_PREFIX}{}/", self.0)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// Where git machine keeps its disposable files: locks, logs and in-flight session ids under
/// `<common git dir>/machine/`; worktrees under [`worktrees_root`].
#[derive(Clone, Debug)]
pub struct Paths {
    root: PathBuf,
    worktrees: PathBuf,
}

/// Where a repository's run worktrees live: `git config machine.worktrees` if set, else
/// `$XDG_CACHE_HOME/git-machine/worktrees/<repo>-<hash>` (default `~/.cache/…`), where `<repo>`
/// is the checkout's folder name and `<hash>` tells clones with the same name apart.
///
/// Not inside `.git/`: agent CLIs treat any path under a `.git` folder as sensitive and refuse
/// to edit files there (Claude Code does, even with edits allowed), and the path must stay the
/// same for the life of a run because agents keep their sessions per working directory.
pub fn worktrees_root(repo: &Repo, env: &Env) -> PathBuf {
    if let Some(dir) = repo.config_str("machine.worktrees") {
        return PathBuf::from(dir);
    }
    let common = std::fs::canonicalize(repo.common_dir())
        .unwrap_or_else(|_| repo.common_dir().to_path_buf());
    let cache = env
        .var("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| PathBuf::from(h).join(".cache")));
    let Some(cache) = cache else {
        return common.join("machine").join("worktrees");
    };
    let name = common
        .parent()
        .filter(|_| common.file_name().is_some_and(|n| n == ".git"))
        .and_then(Path::file_name)
        .or_else(|| common.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".to_string());
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let hash = common
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    cache
        .join("git-machine")
        .join("worktrees")
        .join(format!("{name}-{:08x}", hash as u32))
}

impl Paths {
    pub fn new(repo: &Repo, env: &Env) -> Paths {
        Paths {
            root: repo.common_dir().join("machine"),
            worktrees: worktrees_root(repo, env),
        }
    }
    pub fn worktree(&self, run: &RunId) -> PathBuf {
        self.worktrees.join(run.as_str())
    }
    /// The folder of this repository's run worktrees (and their logs).
    pub fn worktrees_dir(&self) -> &Path {
        &self.worktrees
    }
    /// Where finished worktrees wait for the next run (see [`pool`]).
    pub fn pool_dir(&self) -> PathBuf {
        self.worktrees.join(POOL_DIR)
    }
    /// Worktree of one member of a parallel group.
    pub fn member_worktree(&self, run: &RunId, step: &str) -> PathBuf {
        self.worktrees.join(format!("{run}--{step}"))
    }
    /// All member worktrees of a run that exist.
    pub fn member_worktrees(&self, run: &RunId) -> Vec<PathBuf> {
        let prefix = format!("{run}--");
        std::fs::read_dir(&self.worktrees)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The cache of run summaries `status` lists (see [`summary`]).
    pub fn summary_cache(&self) -> PathBuf {
        self.root.join("cache").join("runs.tsv")
    }
    pub fn lock(&self, run: &RunId) -> PathBuf {
        self.root.join("locks").join(run.as_str())
    }
    /// An `apply` stopped on a conflict in the user's checkout, waiting for `--continue`.
    pub fn apply_state(&self) -> PathBuf {
        self.root.join("apply.toml")
    }
    /// The lock of an agent session: one live process per session at a time.
    pub fn session_lock(&self, engine: &str, session: &str) -> PathBuf {
        let safe: String = format!("{engine}-{session}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join("locks").join("sessions").join(safe)
    }
    /// The session of a step in flight (`engine id`), written as soon as the agent reports it.
    pub fn inflight_session(&self, run: &RunId, record: &str) -> PathBuf {
        self.root.join("sessions").join(run.as_str()).join(record)
    }
    /// Messages for the run's running step, posted by `git machine say` and taken by the
    /// process executing the run.
    pub fn mailbox(&self, run: &RunId) -> PathBuf {
        self.root.join("mail").join(format!("{run}.jsonl"))
    }
    /// Messages a step got while it ran, kept until its record is committed, so a step that
    /// starts again gets them again.
    pub fn delivered(&self, run: &RunId, record: &str) -> PathBuf {
        self.root
            .join("sessions")
            .join(run.as_str())
            .join(format!("{record}.messages.jsonl"))
    }
    /// The events of a run as they happen (JSON lines), for `watch`; bounded by
    /// [`EVENT_LOG_MAX`], the older half kept as `<run>.jsonl.1`.
    pub fn events(&self, run: &RunId) -> PathBuf {
        self.root.join("events").join(format!("{run}.jsonl"))
    }
    /// A loop gate's output while it runs.
    pub fn gate_log(&self, run: &RunId, record: &str) -> PathBuf {
        self.worktrees
            .join(format!("{run}.logs"))
            .join(format!("{record}.gate.log"))
    }
    /// The output of a worktree's setup command, kept beside the log of the step it runs
    /// before; [`write_record`](crate::runner) moves it into that step's record.
    pub fn setup_log(&self, run: &RunId, record: &str) -> PathBuf {
        self.worktrees
            .join(format!("{run}.logs"))
            .join(format!("{record}.setup.log"))
    }
    /// A step's log while it runs: beside the run's worktree (outside it, so the step never
    /// sees it; on its file system, so it moves into the step record without a copy).
    pub fn log(&self, run: &RunId, record: &str) -> PathBuf {
        self.worktrees
            .join(format!("{run}.logs"))
            .join(format!("{record}.log"))
    }
}

/// The folder of pooled worktrees in a repository's worktree folder (see [`pool`]).
pub const POOL_DIR: &str = "pool";

/// Size at which a run's event log starts a new file (the previous one kept as `.1`).
pub const EVENT_LOG_MAX: u64 = 4 << 20;

/// `run.toml`: the run as started. Never changes after the start commit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    pub version: u32,
    pub run_id: String,
    pub workflow: String,
    /// Where the workflow was read from (path or `builtin:<name>`).
    pub origin: String,
    pub base: String,
    pub started: String,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Run-level overrides given on the command line (`engine`, `model`).
    #[serde(default)]
    pub overrides: BTreeMap<String, String>,
    /// The track chosen for the run (`--track`), if the workflow has tracks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// Conditions chosen for the run (`--with`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Completed,
    Failed,
    Paused,
    Conflict,
}

/// `state.toml`: the checkpoint written into every commit of the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub status: Status,
    /// Id of the step that runs next; `None` once the run is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<StepId>,
    /// Number of step records written so far (records are numbered from 1).
    pub seq: u32,
    /// Why the run stopped, when it is failed or paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Times each loop has sent the run back, by the id of the step that loops.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub loops: BTreeMap<StepId, u32>,
    /// Agent session of each step that reported one (latest execution).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sessions: BTreeMap<StepId, SessionRef>,
    /// Members of the parallel group in progress that finished, with their commits (kept
    /// reachable under `refs/machine/parallel/`), so a resume reruns only the others.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_done: BTreeMap<StepId, Oid>,
    /// The commit the group in progress started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_base: Option<Oid>,
    /// A `stop` or `pause` a member of the group in progress asked for: obeyed once the group
    /// has merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_directive: Option<GroupDirective>,
    /// The step that failed, when the status is `failed` (`next` says where a resume starts,
    /// which for a loop that ran out is the step looped back to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<StepId>,
    /// Members of the group in progress whose merge is still to be done (after a conflict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_merge: Vec<StepId>,
    /// Paths in conflict, when the status is `conflict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict_paths: Vec<String>,
    /// Why the next step runs again, when a loop sent the run back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<LoopFeedback>,
}

/// A directive written by a member of a parallel group, kept until the group has merged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupDirective {
    pub member: StepId,
    pub action: GroupAction,
    #[serde(default)]
    pub reason: String,
}

/// What a member of a group may ask of the group: obeyed once the group has merged.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GroupAction {
    Stop,
    Pause,
}

/// A loop decision as the step record keeps it, for `log` and progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoopRecord {
    /// The step the run went back to.
    pub to: StepId,
    /// The pass that step runs next (2 = its first repeat).
    pub pass: u32,
    /// Passes the loop allows.
    pub max: u32,
    /// The loop ran out of passes (`on_max` decided what happened).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exhausted: bool,
}

/// What a loop tells the step it sends the run back to: who sent it, which pass this is, why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoopFeedback {
    /// The step whose loop sent the run back.
    pub from: StepId,
    /// The pass the looped-to step is about to run (2 = the first repeat).
    pub pass: u32,
    /// The directive's reason, or the gate's command with the tail of its failing output.
    pub reason: String,
}

impl State {
    /// The checkpoint of a run that has not run a step yet.
    pub fn new(next: Option<StepId>) -> State {
        State {
            version: FORMAT_VERSION,
            status: Status::Running,
            next,
            seq: 0,
            reason: None,
            loops: BTreeMap::new(),
            sessions: BTreeMap::new(),
            group_done: BTreeMap::new(),
            group_base: None,
            group_directive: None,
            failed: None,
            pending_merge: Vec::new(),
            conflict_paths: Vec::new(),
            feedback: None,
        }
    }
}

/// `state.toml` of a run, in the tree.
pub fn state_path(run: &RunId) -> String {
    format!("{}/state.toml", run.dir())
}

/// The files of a run's start commit: `run.toml`, `state.toml`, `workflow.toml` and the
/// workflow's prompt files.
pub fn run_files(info: &RunInfo) -> Vec<(String, Vec<u8>)> {
    let dir = info.id.dir();
    let mut files = vec![
        (
            format!("{dir}/run.toml"),
            to_toml(&info.record).into_bytes(),
        ),
        (state_path(&info.id), to_toml(&info.state).into_bytes()),
        (
            format!("{dir}/{}", layout::WORKFLOW),
            info.workflow_source.clone().into_bytes(),
        ),
    ];
    if !info.prompt_files.is_empty() {
        files.push((
            format!("{dir}/{PROMPT_FILES}"),
            to_toml(&info.prompt_files).into_bytes(),
        ));
    }
    files
}

/// An agent conversation: which engine holds it and its id there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    pub engine: String,
    pub id: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Succeeded,
    Failed,
    /// A person skipped it while it ran; what it had done is kept as an attempt.
    Skipped,
}

/// `step.toml`: one execution of one step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    pub version: u32,
    pub step: StepId,
    pub seq: u32,
    pub engine: String,
    pub status: StepStatus,
    pub summary: String,
    pub started: String,
    pub ended: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Commit holding what a failed attempt left in the worktree (kept under
    /// `refs/machine/attempts/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_commit: Option<Oid>,
    /// Engines tried before the one that ran, with the reason each was skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_engines: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: BTreeMap<String, u64>,
    /// The step continued an agent session (interrupted earlier, or `session = "<step>"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_session: Option<String>,
    /// The agent's directive (`.codemachine/directive.toml`), as `action: reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directive: Option<String>,
    /// Result of the step's loop gate (`until`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Where this step's loop sent the run, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub looped: Option<LoopRecord>,
    /// Who skipped the step, when it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_by: Option<String>,
    /// Which pass of a loop this execution was (1 = first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iteration: Option<u32>,
    /// What the context sections of the prompt held, and what was missing or cut.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<String>,
    /// Name of the output file in the record (`output.log`, or `output.log.gz` when large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
    /// What the person said to the step while it ran (`git machine say`, `m`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<mail::Message>,
    /// How its worktree was prepared before it ran (files copied or linked, submodules, the
    /// setup command), warnings first with `warning: `.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workspace: Vec<String>,
    /// Files the step left in the worktree that its commit (or its attempt) does not hold:
    /// secret files (`secrets`), kept out unless the workflow's `commit_secrets` names them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<secrets::LeftOut>,
    /// What git machine put right after the step (a worktree switched to another branch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
}

/// File names of git machine's files (spelled here and nowhere else).
pub mod layout {
    /// A step record's fields.
    pub const STEP: &str = "step.toml";
    /// The prompt as sent.
    pub const PROMPT: &str = "prompt.md";
    /// The agent's final message.
    pub const MESSAGE: &str = "message.md";
    /// The step's output (or `output.log.gz` when large).
    pub const OUTPUT: &str = "output.log";
    /// The loop gate's output.
    pub const GATE_LOG: &str = "gate.log";
    /// The output of the worktree's setup command (`[workspace] setup`), run before the step.
    pub const SETUP_LOG: &str = "setup.log";
    /// In a worktree's own git dir: what the workspace's `setup` last ran for (a digest of its
    /// argv and key files). A pooled worktree loses it, as it loses its ignored files.
    pub const SETUP_STAMP: &str = "machine-setup";
    /// An agent transcript kept with the record.
    pub const TRANSCRIPT: &str = "transcript.jsonl";
    /// The controller's conversation, one turn a line (`who`, `at`, `text`), written as it goes.
    pub const CONVERSATION: &str = "conversation.jsonl";
    /// Where an agent steers the run, relative to the worktree; never committed.
    pub const DIRECTIVE: &str = ".codemachine/directive.toml";
    /// Where runs keep their files, in every run commit.
    pub const RUNS_DIR: &str = ".codemachine/runs/";
    /// git machine's own folder in a worktree.
    pub const OWN_DIR: &str = ".codemachine/";
    /// A run's workflow as it started (in the run's folder).
    pub const WORKFLOW: &str = "workflow.toml";
}

/// `steps/<record>` of a run, in the tree.
pub fn record_dir(run: &RunId, record: &str) -> String {
    format!("{}/steps/{record}", run.dir())
}

/// Folder name of a step record, `NN-<step id>`: which execution of which step.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordName(String);

impl RecordName {
    pub fn new(seq: u32, step: &StepId) -> RecordName {
        RecordName(format!("{seq:02}-{step}"))
    }

    /// A record name as stored (a trailer, a folder name); `None` when it is not one.
    pub fn parse(text: &str) -> Option<RecordName> {
        let (seq, step) = text.split_once('-')?;
        let seq: u32 = seq.parse().ok().filter(|_| seq.len() >= 2)?;
        Some(RecordName::new(seq, &StepId::parse(step)?)).filter(|r| r.0 == text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RecordName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RecordName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// Folder name of a step record: `NN-<id>`.
pub fn record_name(seq: u32, step: &StepId) -> RecordName {
    RecordName::new(seq, step)
}

fn version_of(value: &toml::Value) -> u32 {
    value
        .get("version")
        .and_then(toml::Value::as_integer)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0)
}

/// Read a stored file: check its version, upgrade older shapes, then deserialize.
pub fn upgrade<T: serde::de::DeserializeOwned>(
    run: &RunId,
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        run: run.to_string(),
        what: what.to_string(),
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| corrupt(e.to_string()))?;
    let value: toml::Value = toml::from_str(text).map_err(|e| corrupt(e.message().to_string()))?;
    let version = version_of(&value);
    if version > FORMAT_VERSION {
        return Err(StoreError::TooNew {
            run: run.to_string(),
            what: what.to_string(),
            found: version,
        });
    }
    // Format 1 is the first: nothing to upgrade yet. Later formats rewrite `value` here.
    value
        .try_into()
        .map_err(|e: toml::de::Error| corrupt(e.message().to_string()))
}

pub fn to_toml<T: Serialize>(value: &T) -> String {
    toml::to_string(value).expect("records are plain tables of strings and numbers")
}

/// A run as found in the repository: its branch tip and the files of the tip commit.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub id: RunId,
    pub tip: Oid,
    pub record: RunRecord,
    pub state: State,
    /// The workflow file text the run was started with.
    pub workflow_source: String,
    /// Prompt files of the workflow as they were at the start (path as written → text).
    pub prompt_files: BTreeMap<String, String>,
}

impl RunInfo {
    /// The workflow as the run was started with it (never the file as it is now).
    pub fn workflow(&self) -> Result<crate::workflow::Workflow, crate::workflow::WorkflowError> {
        crate::workflow::parse_with_files(
            &self.record.origin,
            &self.workflow_source,
            &self.prompt_files,
        )
    }
}

/// `prompt_files.toml` of a run: the workflow's prompt files at the start.
pub const PROMPT_FILES: &str = "prompt_files.toml";

/// Read a run's record and checkpoint from `commit`.
pub fn read_run_at(repo: &Repo, id: &RunId, commit: Oid) -> Result<RunInfo, StoreError> {
    let dir = id.dir();
    let read = |name: &str| -> Result<Vec<u8>, StoreError> {
        repo.read_file(commit, &format!("{dir}/{name}"))?
            .ok_or_else(|| StoreError::Corrupt {
                run: id.to_string(),
                what: name.to_string(),
                detail: format!("missing from commit {}", commit.short()),
            })
    };
    let record: RunRecord = upgrade(id, "run.toml", &read("run.toml")?)?;
    if record.run_id != id.as_str() {
        return Err(StoreError::Corrupt {
            run: id.to_string(),
            what: "run.toml".to_string(),
            detail: format!(
                "it belongs to run {}, not to the branch it is on (commit {})",
                record.run_id,
                commit.short()
            ),
        });
    }
    let state: State = upgrade(id, "state.toml", &read("state.toml")?)?;
    let workflow_source = String::from_utf8_lossy(&read(layout::WORKFLOW)?).into_owned();
    let prompt_files = match repo.read_file(commit, &format!("{dir}/{PROMPT_FILES}"))? {
        Some(bytes) => {
            toml::from_str(&String::from_utf8_lossy(&bytes)).map_err(|e| StoreError::Corrupt {
                run: id.to_string(),
                what: PROMPT_FILES.to_string(),
                detail: e.message().to_string(),
            })?
        }
        None => BTreeMap::new(),
    };
    Ok(RunInfo {
        id: id.clone(),
        tip: commit,
        record,
        state,
        workflow_source,
        prompt_files,
    })
}

/// Every run in the repository (by its branch), oldest first.
/// Remove the lock files (`<ref>.lock`) that a process killed inside a ref update left for
/// run `id`'s refs (its branch, attempts, members, attic), which git would refuse to update
/// until someone deleted them. Only with the run's lock held: then nobody else updates them.
pub fn clear_stale_ref_locks(repo: &Repo, id: &RunId) -> Result<usize, StoreError> {
    let side: Vec<String> = [ATTEMPTS_PREFIX, PARALLEL_PREFIX, ATTIC_PREFIX]
        .iter()
        .map(|p| format!("{p}{id}/"))
        .collect();
    Ok(repo.remove_stale_ref_locks(&id.branch(), &side)?)
}

pub fn list_runs(repo: &Repo) -> Result<Vec<(RunId, Oid)>, StoreError> {
    Ok(repo
        .refs_under(BRANCH_PREFIX)?
        .into_iter()
        .map(|(name, oid)| {
            let id = name
                .as_str()
                .strip_prefix(BRANCH_PREFIX)
                .expect("refs_under returns refs under the prefix");
            (RunId::from_stored(id), oid)
        })
        .collect())
}

/// How a run id given by the user matched.
pub enum Lookup {
    Found(RunId, Oid),
    NotFound,
    Ambiguous(Vec<RunId>),
}

/// Find a run by any unique prefix of its id; with `None`, the most recent run.
pub fn find_run(repo: &Repo, given: Option<&str>) -> Result<Lookup, StoreError> {
    let runs = list_runs(repo)?;
    let Some(given) = given else {
        return Ok(match runs.into_iter().last() {
            Some((id, tip)) => Lookup::Found(id, tip),
            None => Lookup::NotFound,
        });
    };
    let given = given.strip_prefix("machine/").unwrap_or(given);
    if let Some((id, tip)) = runs.iter().find(|(id, _)| id.as_str() == given) {
        return Ok(Lookup::Found(id.clone(), *tip));
    }
    let matches: Vec<_> = runs
        .into_iter()
        .filter(|(id, _)| id.as_str().starts_with(given))
        .collect();
    Ok(match matches.len() {
        0 => Lookup::NotFound,
        1 => {
            let (id, tip) = matches.into_iter().next().expect("one match");
            Lookup::Found(id, tip)
        }
        _ => Lookup::Ambiguous(matches.into_iter().map(|(id, _)| id).collect()),
    })
}

/// One step commit (or failure record) on a run's first-parent chain.
#[derive(Debug, Clone)]
pub struct StepCommit {
    pub commit: Oid,
    /// The step commit before it (or the run's start commit).
    pub previous: Oid,
    pub record_name: RecordName,
    pub record: StepRecord,
}

/// The run's start commit and its step executions in record order, read from trailers and
/// records: step commits on the first-parent chain, members of parallel groups (side parents of
/// merges), and failure records of groups.
pub fn step_commits(repo: &Repo, run: &RunInfo) -> Result<(Oid, Vec<StepCommit>), StoreError> {
    let id = run.id.as_str();
    let mut chain = Vec::new();
    let mut cursor = Some(run.tip);
    let mut start = None;
    while let Some(oid) = cursor {
        let info = repo.commit_info(oid)?;
        let ours = info.trailer(txn::trailer::RUN) == Some(id);
        if ours
            && info.trailer(txn::trailer::STEP).is_none()
            && info.trailer(txn::trailer::REVIEW).is_none()
            && info.trailer(txn::trailer::GROUP).is_none()
            && info.trailer(txn::trailer::WORKFLOW).is_none()
        {
            start = Some(oid);
            break;
        }
        cursor = info.parents.first().copied();
        chain.push((oid, info));
    }
    let start = start.ok_or_else(|| StoreError::Corrupt {
        run: id.to_string(),
        what: "branch".to_string(),
        detail: "no start commit found on its first-parent chain".to_string(),
    })?;
    chain.reverse();
    let record = |commit: Oid, name: &str| -> Result<(RecordName, StepRecord), StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt {
            run: id.to_string(),
            what: format!("step record {name}"),
            detail,
        };
        let name = RecordName::parse(name).ok_or_else(|| {
            corrupt(format!(
                "commit {} names a record that is not NN-<step>",
                commit.short()
            ))
        })?;
        let path = format!("{}/{}", record_dir(&run.id, &name), layout::STEP);
        let bytes = repo
            .read_file(commit, &path)?
            .ok_or_else(|| corrupt(format!("missing from commit {}", commit.short())))?;
        Ok((name, upgrade(&run.id, layout::STEP, &bytes)?))
    };
    let mut out: Vec<StepCommit> = Vec::new();
    let mut previous = start;
    for (oid, info) in chain {
        for side in info.parents.iter().skip(1) {
            let si = repo.commit_info(*side)?;
            if si.trailer(txn::trailer::RUN) != Some(id) || out.iter().any(|c| c.commit == *side) {
                continue;
            }
            if let (Some(_), Some(name)) = (
                si.trailer(txn::trailer::STEP),
                si.trailer(txn::trailer::RECORD),
            ) {
                // A member of a parallel group: its diff starts where the group started.
                let mut base = si.parents.first().copied();
                while let Some(b) = base {
                    let bi = repo.commit_info(b)?;
                    if bi.trailer(txn::trailer::RUN) == Some(id) {
                        break;
                    }
                    base = bi.parents.first().copied();
                }
                let (record_name, record) = record(*side, name)?;
                out.push(StepCommit {
                    commit: *side,
                    previous: base.unwrap_or(start),
                    record_name,
                    record,
                });
            }
        }
        if info.trailer(txn::trailer::RUN) != Some(id) {
            continue;
        }
        if let Some(name) = info
            .trailer(txn::trailer::RECORD)
            .filter(|_| info.trailer(txn::trailer::STEP).is_some())
        {
            let (record_name, record) = record(oid, name)?;
            out.push(StepCommit {
                commit: oid,
                previous,
                record_name,
                record,
            });
        } else if let Some(names) = info.trailer(txn::trailer::RECORDS) {
            for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let (record_name, record) = record(oid, name)?;
                out.push(StepCommit {
                    commit: oid,
                    previous,
                    record_name,
                    record,
                });
            }
        }
        // Step commits, reviews and merges all start the next step's diff.
        previous = oid;
    }
    out.sort_by_key(|c| c.record.seq);
    Ok((start, out))
}

/// Current time as RFC 3339, UTC, whole seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_have_a_random_tail() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let t1 = t0 + std::time::Duration::from_millis(1);
        let a = RunId::generate(t0);
        let b = RunId::generate(t1);
        assert!(a < b, "{a} < {b}");
        assert_eq!(a.as_str().len(), 17);
        assert!(a.as_str().starts_with("270115-"), "{a}");
    }

    #[test]
    fn record_names_are_checked_when_read() {
        let name = RecordName::new(7, &StepId::parse("build").expect("id"));
        assert_eq!(name.as_str(), "07-build");
        assert_eq!(RecordName::parse("07-build"), Some(name));
        assert_eq!(
            RecordName::parse("123-x").map(|r| r.to_string()).as_deref(),
            Some("123-x")
        );
        for bad in ["build", "7-build", "07-", "07-Build", "xx-build", "07-a b"] {
            assert_eq!(RecordName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bad_step_id_in_a_stored_checkpoint_is_an_error() {
        let err = upgrade::<State>(
            &RunId::from_stored("x"),
            "state.toml",
            b"version = 1\nstatus = \"running\"\nseq = 0\nnext = \"Not An Id\"\n",
        )
        .expect_err("a bad id is not dropped");
        assert!(err.to_string().contains("not a step id"), "{err}");
        let err = upgrade::<State>(
            &RunId::from_stored("x"),
            "state.toml",
            b"version = 1\nstatus = \"running\"\nseq = 0\n[group_done]\na = \"zz\"\n",
        )
        .expect_err("a bad oid is not dropped");
        assert!(err.to_string().contains("not a commit id"), "{err}");
    }

    #[test]
    fn newer_formats_are_refused() {
        let id = RunId::from_stored("x");
        let err = upgrade::<State>(
            &id,
            "state.toml",
            b"version = 9\nstatus = \"running\"\nseq = 0\n",
        )
        .expect_err("version 9 is newer");
        assert!(err.to_string().contains("newer git machine"), "{err}");
    }

    #[test]
    fn state_round_trips() {
        let mut s = State::new(Some(StepId::parse("design").expect("an id")));
        s.loops.insert(StepId::parse("review").expect("an id"), 2);
        let back: State = upgrade(
            &RunId::from_stored("x"),
            "state.toml",
            to_toml(&s).as_bytes(),
        )
        .expect("round trip");
        assert_eq!(back, s);
    }
}
