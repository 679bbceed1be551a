//! Executing one step's program: pick the first engine that can serve, run it in the
//! worktree, read what it left for the runner (its directive), run its loop gate, keep its log.
//! Everything here produces facts for [`super::machine::decide`]; nothing here commits.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use super::machine::{Directive, Gate, GATE_TAIL_LINES};
use crate::engine::{self, process, Ending, StepInput};
use crate::env::Env;
use crate::error::Result;
use crate::git::{Oid, Worktree};
use crate::store::{self, layout, SessionRef, StepRecord, StepStatus};
use crate::workflow::ResolvedStep;

/// Agent steps without an `idle_timeout` get this one: some CLIs wait forever, silently, when
/// their model server is unreachable.
pub const DEFAULT_AGENT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Logs above this size are kept gzip-compressed in the record.
const LOG_COMPRESS_ABOVE: u64 = 256 << 10;

/// Move the step's log into its record folder (copy and pack it when large); returns the
/// file name used.
pub fn keep_log(log: &Path, dir: &Path) -> std::io::Result<String> {
    let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    // A small log (an empty one too) moves into the record: same file system, no copy and no
    // new file. A large one is packed.
    if size <= LOG_COMPRESS_ABOVE && std::fs::rename(log, dir.join(layout::OUTPUT)).is_ok() {
        return Ok(layout::OUTPUT.to_string());
    }
    if size == 0 {
        std::fs::write(dir.join(layout::OUTPUT), "")?;
        return Ok(layout::OUTPUT.to_string());
    }
    keep_file(log, dir, layout::OUTPUT)
}

/// Write the record's prompt. The prompt file the engine was given (`<log>.prompt`) moves in
/// when it holds the same text: no new file, which on some disks costs half a millisecond.
fn keep_prompt(log: &Path, to: &Path, prompt: &str) -> std::io::Result<()> {
    let file = log.with_extension("prompt");
    let same = std::fs::metadata(&file).is_ok_and(|m| m.len() == prompt.len() as u64)
        && std::fs::read(&file).is_ok_and(|bytes| bytes == prompt.as_bytes());
    if same && std::fs::rename(&file, to).is_ok() {
        return Ok(());
    }
    std::fs::write(to, prompt)
}

/// Copy `src` into `dir` as `name`, or as `name.gz` when it is large; returns the name used.
pub fn keep_file(src: &Path, dir: &Path, name: &str) -> std::io::Result<String> {
    let size = std::fs::metadata(src).map(|m| m.len()).unwrap_or(0);
    if size <= LOG_COMPRESS_ABOVE {
        std::fs::copy(src, dir.join(name))?;
        return Ok(name.to_string());
    }
    let packed = format!("{name}.gz");
    let mut input = std::fs::File::open(src)?;
    let out = std::fs::File::create(dir.join(&packed))?;
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut gz)?;
    gz.finish()?;
    Ok(packed)
}

/// The session of an interrupted step, as written by [`Inflight`].
pub fn read_inflight(path: &Path) -> Option<SessionRef> {
    let text = std::fs::read_to_string(path).ok()?;
    let (engine, id) = text.trim().split_once(' ')?;
    Some(SessionRef {
        engine: engine.to_string(),
        id: id.to_string(),
    })
}

/// Wraps an engine's parser to write the session id to disk the moment it is known.
struct Inflight {
    inner: Box<dyn engine::EventParser>,
    path: PathBuf,
    engine: String,
    written: bool,
}

impl Inflight {
    /// Write the session id down the first time it is known.
    fn record(&mut self) {
        if self.written {
            return;
        }
        if let Some(id) = self.inner.session() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            self.written = std::fs::write(&self.path, format!("{} {id}\n", self.engine)).is_ok();
        }
    }
}

impl engine::EventParser for Inflight {
    fn line(&mut self, stream: engine::Stream, line: &str) {
        self.inner.line(stream, line);
        self.record();
    }
    fn session(&self) -> Option<&str> {
        self.inner.session()
    }
    fn finish(self: Box<Self>, ending: &Ending) -> engine::Outcome {
        self.inner.finish(ending)
    }
}

/// What one step's program run needs, independent of the runner (so parallel members can run
/// on threads of their own).
pub struct StepRun<'a> {
    pub step: &'a ResolvedStep,
    pub prompt: &'a str,
    pub workdir: &'a Path,
    pub log: &'a Path,
    pub session_path: &'a Path,
    pub continued: Option<&'a SessionRef>,
    /// Set when the step must fail before any program starts (e.g. required context missing).
    pub prestart_error: Option<String>,
    /// Commit the worktree is reset to before trying the next engine.
    pub base: Oid,
    pub env: &'a Env,
    pub cancel: &'a AtomicBool,
    /// Set when a person skips the step: its program is stopped like on `cancel`.
    pub skip: Option<&'a AtomicBool>,
    /// Set when a message for the step waits: its program is stopped, to go on in its session
    /// with the message.
    pub mail: Option<&'a AtomicBool>,
    /// Continue `continued` as a fork, where the CLI can (a rewound run re-using a session).
    pub fork: bool,
    pub path_var: Option<&'a std::ffi::OsStr>,
}

/// The files of one execution of a step (its log and in-flight session, outside the worktree)
/// and the `PATH` its engines are looked up on: owned while a [`StepRun`] borrows them.
pub struct RunFiles {
    pub log: PathBuf,
    pub session: PathBuf,
    pub path_var: Option<std::ffi::OsString>,
}

impl RunFiles {
    pub fn of(paths: &store::Paths, run: &store::RunId, rec: &str, env: &Env) -> RunFiles {
        RunFiles {
            log: paths.log(run, rec),
            session: paths.inflight_session(run, rec),
            path_var: env.var("PATH").map(std::ffi::OsString::from),
        }
    }
}

impl<'a> StepRun<'a> {
    /// A run of `step` with `prompt` in `workdir`, starting a new session, that only `cancel`
    /// stops; the caller sets what else applies.
    pub fn new(
        step: &'a ResolvedStep,
        prompt: &'a str,
        workdir: &'a Path,
        files: &'a RunFiles,
        base: Oid,
        env: &'a Env,
        cancel: &'a AtomicBool,
    ) -> StepRun<'a> {
        StepRun {
            step,
            prompt,
            workdir,
            log: &files.log,
            session_path: &files.session,
            continued: None,
            prestart_error: None,
            base,
            env,
            cancel,
            skip: None,
            mail: None,
            fork: false,
            path_var: files.path_var.as_deref(),
        }
    }
}

/// The result of running a step's program with the first engine that could serve.
pub struct Attempt {
    pub engine: String,
    pub inv: engine::Invocation,
    pub ending: Ending,
    pub outcome: engine::Outcome,
    pub resumed: Option<String>,
    pub skipped: Vec<String>,
    /// Engines passed over while running, and why, for the user.
    pub passed_over: Vec<(String, String)>,
}

/// Try the step's engines in order; an engine that is missing, cannot start or reports a
/// fallback reason gives way to the next. `on_spawn` gets the process group (None when done).
pub fn attempt_step(
    rt: &tokio::runtime::Runtime,
    run: &StepRun<'_>,
    on_spawn: &mut dyn FnMut(Option<i32>),
    echo: Option<&mut dyn FnMut(&str)>,
) -> Result<Attempt> {
    rt.block_on(attempt(run, on_spawn, echo))
}

/// [`attempt_step`] as a future, for an event loop that runs several steps at once (the
/// members of a parallel group).
pub async fn attempt(
    run: &StepRun<'_>,
    on_spawn: &mut dyn FnMut(Option<i32>),
    mut echo: Option<&mut dyn FnMut(&str)>,
) -> Result<Attempt> {
    let step = run.step;
    let mut skipped: Vec<String> = Vec::new();
    let mut passed_over = Vec::new();
    let engines = if run.prestart_error.is_some() {
        &[][..]
    } else {
        &step.engines[..]
    };
    for (i, engine_name) in engines.iter().enumerate() {
        let Some((engine, resume_session)) = usable(run, engine_name, &mut skipped) else {
            continue;
        };
        let step_as_run = step.for_engine(engine_name);
        let input = StepInput {
            step: &step_as_run,
            prompt: run.prompt,
            workdir: run.workdir,
            resume_session: resume_session.as_deref(),
            fork_session: run.fork,
            // `<record>.prompt` beside `<record>.log`: outside the worktree, per attempt.
            prompt_file: &run.log.with_extension("prompt"),
        };
        let inv = match engine.invocation(&input) {
            Ok(inv) => inv,
            Err(e) => {
                skipped.push(format!("{engine_name}: {e}"));
                continue;
            }
        };
        let (ending, mut outcome) = run_engine(
            run,
            engine.as_ref(),
            engine_name,
            &inv,
            on_spawn,
            echo.as_deref_mut(),
        )
        .await?;
        if ending != Ending::Cancelled && !outcome.success && i + 1 < step.engines.len() {
            if let Some(reason) = &outcome.fallback_reason {
                skipped.push(format!("{engine_name}: {reason}"));
                passed_over.push((engine_name.clone(), reason.clone()));
                Worktree::new(run.workdir.to_path_buf()).reset_hard(run.base)?;
                continue;
            }
        }
        if outcome.success {
            let missing: Vec<&str> = step
                .outputs
                .iter()
                .map(String::as_str)
                .filter(|o| !run.workdir.join(o).exists())
                .collect();
            if !missing.is_empty() {
                outcome.success = false;
                outcome.error = Some(format!("declared output missing: {}", missing.join(", ")));
            }
        }
        return Ok(Attempt {
            engine: engine.name().to_string(),
            inv,
            ending,
            outcome,
            resumed: resume_session,
            skipped,
            passed_over,
        });
    }
    let error = run
        .prestart_error
        .clone()
        .unwrap_or_else(|| format!("no engine could run this step: {}", skipped.join("; ")));
    if let Some(dir) = run.log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(run.log, format!("{error}\n"))?;
    Ok(Attempt {
        engine: step.engines.first().cloned().unwrap_or_default(),
        inv: engine::Invocation {
            program: String::new(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: Vec::new(),
            quiet_until_done: false,
        },
        ending: Ending::Exited(127),
        outcome: engine::Outcome {
            error: Some(error),
            ..Default::default()
        },
        resumed: None,
        skipped,
        passed_over,
    })
}

/// The engine `name` if it is built in and can run here, with the session it continues (the
/// run's, when it is this engine's and the engine can continue one); else why not, in
/// `skipped`.
pub fn usable(
    run: &StepRun<'_>,
    name: &str,
    skipped: &mut Vec<String>,
) -> Option<(Box<dyn engine::Engine>, Option<String>)> {
    let Some(engine) = engine::by_name(name, &run.env.vars) else {
        skipped.push(format!("{name}: not built into this git machine"));
        return None;
    };
    if let Err(e) = engine.check(run.path_var) {
        skipped.push(format!("{name}: {e}"));
        return None;
    }
    let resumed = run
        .continued
        .filter(|s| s.engine == name && engine.can_resume())
        .map(|s| s.id.clone());
    Some((engine, resumed))
}

/// The flags that stop a step's program.
fn stop_flags<'a>(run: &StepRun<'a>) -> Vec<&'a AtomicBool> {
    let mut flags = vec![run.cancel];
    flags.extend(run.skip);
    flags.extend(run.mail);
    flags
}

/// Run one engine's invocation to its end: how it ended and what its output said. A program
/// that cannot be started is an engine that cannot serve now (a fallback reason).
async fn run_engine<'e>(
    run: &StepRun<'_>,
    engine: &dyn engine::Engine,
    engine_name: &str,
    inv: &engine::Invocation,
    on_spawn: &mut dyn FnMut(Option<i32>),
    mut echo: Option<&mut (dyn FnMut(&str) + 'e)>,
) -> Result<(Ending, engine::Outcome)> {
    let mut parser = Inflight {
        inner: engine.parser(),
        path: run.session_path.to_path_buf(),
        engine: engine_name.to_string(),
        written: false,
    };
    // An engine that names the session itself (Gemini's `--session-id`) knows it before any
    // output: record it now, so a step interrupted at once still resumes in its session.
    parser.record();
    let default_idle = engine_name != "command" && !inv.quiet_until_done;
    let limits = process::Limits {
        timeout: run.step.timeout,
        idle_timeout: run
            .step
            .idle_timeout
            .or_else(|| default_idle.then_some(DEFAULT_AGENT_IDLE_TIMEOUT)),
    };
    let mut spawned = |pgid: i32| on_spawn(Some(pgid));
    let echoing = echo.is_some();
    let mut print = |_: engine::Stream, line: &str| {
        if let Some(echo) = echo.as_mut() {
            echo(line)
        }
    };
    let ending = process::run_async(
        inv,
        run.workdir,
        &run.env.vars,
        run.log,
        limits,
        &stop_flags(run),
        &mut spawned,
        &mut parser,
        if echoing { Some(&mut print) } else { None },
    )
    .await;
    on_spawn(None);
    match ending {
        Ok(ending) => {
            let outcome = parser.inner.finish(&ending);
            Ok((ending, outcome))
        }
        // The log could not be written: the disk is full, which no engine fixes.
        Err(e) if crate::error::is_disk_full(&e) => Err(e.into()),
        Err(e) => {
            let msg = format!("could not start `{}`: {e}", inv.program);
            std::fs::write(run.log, format!("{msg}\n"))?;
            let outcome = engine::Outcome {
                error: Some(msg.clone()),
                fallback_reason: Some(msg),
                ..Default::default()
            };
            Ok((Ending::Exited(127), outcome))
        }
    }
}

use store::layout::DIRECTIVE as DIRECTIVE_PATH;

/// `.codemachine/directive.toml`, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirective {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

/// Read and remove the directive a step left in `workdir`: it steers the run and is never
/// committed as code.
pub fn take_directive(workdir: &Path) -> Result<Option<Directive>> {
    let path = workdir.join(DIRECTIVE_PATH);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    std::fs::remove_file(&path)?;
    let raw: RawDirective = match toml::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            return Ok(Some(Directive::Invalid(format!(
                "invalid {DIRECTIVE_PATH}: {}",
                e.message().trim()
            ))))
        }
    };
    let reason = raw.reason.unwrap_or_default();
    Ok(Some(match raw.action.as_str() {
        "continue" => Directive::Continue,
        "stop" => Directive::Stop(reason),
        "pause" => Directive::Pause(reason),
        "error" => Directive::Error(reason),
        "loop" => Directive::Loop { to: raw.to, reason },
        other => Directive::Invalid(format!(
            "unknown directive action `{other}` in {DIRECTIVE_PATH}; expected continue, loop, stop, pause or error"
        )),
    }))
}

/// Run a loop gate in the worktree, its output kept in `log`. `None` when Ctrl-C stopped it.
pub fn run_gate(
    rt: &tokio::runtime::Runtime,
    step: &ResolvedStep,
    workdir: &Path,
    env: &Env,
    log: &Path,
    cancel: &AtomicBool,
) -> Option<Gate> {
    let argv = &step.loop_spec.as_ref()?.until;
    let (program, args) = argv.split_first()?;
    let inv = engine::Invocation::plain(program, args);
    let command = engine::by_name("command", &env.vars).expect("the command engine is built in");
    let mut parser = command.parser();
    let limits = process::Limits {
        timeout: step.timeout,
        idle_timeout: step.idle_timeout,
    };
    let ending = rt.block_on(process::run_async(
        &inv,
        workdir,
        &env.vars,
        log,
        limits,
        &[cancel],
        &mut |_| {},
        parser.as_mut(),
        None,
    ));
    let ending = match ending {
        Ok(Ending::Cancelled) => return None,
        Ok(Ending::Exited(0)) => None,
        Ok(other) => Some(other.describe()),
        Err(e) => Some(format!("could not start `{program}`: {e}")),
    };
    let tail = if ending.is_some() {
        tail_of(log, GATE_TAIL_LINES)
    } else {
        String::new()
    };
    Some(Gate {
        command: argv.join(" "),
        passed: ending.is_none(),
        ending: ending.unwrap_or_default(),
        tail,
    })
}

/// The last `lines` lines of a text file (empty when unreadable).
fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The record of one execution of a step, as far as its program run tells.
pub fn record_of(
    step: &ResolvedStep,
    seq: u32,
    a: &Attempt,
    started: String,
    duration: std::time::Duration,
) -> StepRecord {
    StepRecord {
        messages: Vec::new(),
        workspace: Vec::new(),
        left_out: Vec::new(),
        repairs: Vec::new(),
        version: store::FORMAT_VERSION,
        step: step.id.clone(),
        seq,
        engine: a.engine.clone(),
        status: if a.outcome.success {
            StepStatus::Succeeded
        } else {
            StepStatus::Failed
        },
        summary: if a.outcome.success {
            a.outcome.summary.clone().unwrap_or_else(|| {
                if a.inv.program.is_empty() {
                    "done".to_string()
                } else {
                    format!("ran {}", a.inv.program)
                }
            })
        } else {
            format!("failed ({})", first_line(&a.error()))
        },
        started,
        ended: store::now_rfc3339(),
        duration_ms: duration.as_millis() as u64,
        exit_code: match a.ending {
            Ending::Exited(c) => Some(c),
            _ => None,
        },
        signal: match a.ending {
            Ending::Signaled(s) => Some(s),
            _ => None,
        },
        error: a.outcome.error.clone(),
        command: std::iter::once(a.inv.program.clone())
            .filter(|p| !p.is_empty())
            .chain(a.inv.args.iter().cloned())
            .collect(),
        session: a.outcome.session.clone(),
        model: step.model.clone(),
        attempt_commit: None,
        skipped_engines: a.skipped.clone(),
        usage: a.outcome.usage.clone(),
        resumed_session: a.resumed.clone(),
        directive: None,
        gate: None,
        looped: None,
        skipped_by: None,
        iteration: None,
        context: Vec::new(),
        log_file: None,
    }
}

impl Attempt {
    /// A program that succeeded but left the worktree in a state git machine refuses to
    /// commit (see `workspace::submodule_refusal`): the step failed, for `why`.
    pub fn refuse(&mut self, why: String) {
        self.outcome.success = false;
        self.outcome.error = Some(why);
    }

    /// Why the step failed (its engine's error, else how the program ended).
    pub fn error(&self) -> String {
        self.outcome
            .error
            .clone()
            .unwrap_or_else(|| self.ending.describe())
    }

    /// The session the step reported, with its engine.
    pub fn session(&self) -> Option<SessionRef> {
        self.outcome.session.as_ref().map(|id| SessionRef {
            engine: self.engine.clone(),
            id: id.clone(),
        })
    }
}

/// The last `n` lines of a text, if any.
pub fn tail_lines(text: Option<&str>, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.unwrap_or_default().lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Write a step's record files into `dir` (a record folder in a worktree); the log moves in.
pub fn write_record(
    dir: &Path,
    record: &mut StepRecord,
    prompt: &str,
    message: Option<&str>,
    log: &Path,
) -> Result {
    std::fs::create_dir_all(dir)?;
    let log_file = keep_log(log, dir)?;
    // The setup command's output, when the worktree was set up before this step.
    let setup_log = log.with_extension("setup.log");
    if setup_log.exists() {
        keep_file(&setup_log, dir, layout::SETUP_LOG)?;
        std::fs::remove_file(&setup_log)?;
    }
    record.log_file = (log_file != layout::OUTPUT).then(|| log_file.to_string());
    std::fs::write(dir.join(layout::STEP), store::to_toml(&*record))?;
    keep_prompt(log, &dir.join(layout::PROMPT), prompt)?;
    if let Some(message) = message {
        std::fs::write(dir.join(layout::MESSAGE), message)?;
    }
    Ok(())
}

/// The files of a record folder, as (path in the tree under `tree_dir`, bytes).
pub fn record_files(dir: &Path, tree_dir: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((format!("{tree_dir}/{name}"), std::fs::read(entry.path())?));
        }
    }
    Ok(files)
}

/// A worktree path, for messages.
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{GitEnv, Repo};
    use std::sync::atomic::AtomicBool;

    /// Regression: an engine that gave way inside a parallel group reset the member's worktree
    /// to an all-zeros commit (`read-tree --reset -u 0000…` failed, exit 101). The worktree
    /// goes back to the base the step started from.
    #[test]
    fn an_engine_that_gives_way_leaves_the_worktree_at_the_steps_base() {
        let dir = tempfile::tempdir().expect("temp dir");
        crate::git::init_scratch_repo(dir.path()).expect("scratch repo");
        let repo = Repo::open(dir.path(), &GitEnv::default()).expect("repo");
        let base = repo.head_commit().expect("a commit");
        std::fs::write(dir.path().join("left-over.txt"), "x").expect("write");
        let wf = crate::workflow::parse(
            "t.toml",
            "version = 1\nname = \"t\"\n[[steps]]\nid = \"s\"\nengine = \"command\"\nrun = [\"/nonexistent/program\"]\n",
        )
        .expect("workflow");
        let mut step = wf.resolve(&Default::default()).remove(0);
        // The first engine cannot start, so the second is tried from the base.
        step.engines = vec!["command".into(), "command".into()];
        let logs = tempfile::tempdir().expect("temp dir");
        let env = Env {
            cwd: dir.path().to_path_buf(),
            vars: Vec::new(),
            no_color: true,
            clicolor_force: false,
            args: Vec::new(),
            exe: None,
        };
        let cancel = AtomicBool::new(false);
        let run = StepRun {
            step: &step,
            prompt: "",
            workdir: dir.path(),
            log: &logs.path().join("log"),
            session_path: &logs.path().join("session"),
            continued: None,
            prestart_error: None,
            base,
            env: &env,
            cancel: &cancel,
            skip: None,
            mail: None,
            fork: false,
            path_var: None,
        };
        let rt = process::event_loop().expect("an event loop");
        let attempt = attempt_step(&rt, &run, &mut |_| {}, None).expect("no internal error");
        assert!(!attempt.outcome.success);
        assert_eq!(attempt.passed_over.len(), 1, "{:?}", attempt.passed_over);
        assert!(
            !dir.path().join("left-over.txt").exists(),
            "reset to the base"
        );
    }

    /// The record's prompt and log move in from the logs folder (no new file) when they can,
    /// and are written when they cannot; the record holds the same either way.
    #[test]
    fn a_prompt_and_log_move_into_the_record_when_they_can() {
        let logs = tempfile::tempdir().expect("temp dir");
        let record = tempfile::tempdir().expect("temp dir");
        let log = logs.path().join("01-a.log");
        let prompt_file = logs.path().join("01-a.prompt");
        let to = record.path().join(layout::PROMPT);
        std::fs::write(&prompt_file, "do it").expect("write");
        keep_prompt(&log, &to, "do it").expect("kept");
        assert_eq!(std::fs::read_to_string(&to).expect("prompt"), "do it");
        assert!(!prompt_file.exists(), "moved, not copied");
        std::fs::write(&prompt_file, "an older attempt's").expect("write");
        keep_prompt(&log, &to, "the last").expect("kept");
        assert_eq!(std::fs::read_to_string(&to).expect("prompt"), "the last");
        std::fs::remove_file(&prompt_file).expect("rm");
        keep_prompt(&log, &to, "no file").expect("kept");
        assert_eq!(std::fs::read_to_string(&to).expect("prompt"), "no file");

        std::fs::write(&log, "").expect("an empty log");
        assert_eq!(keep_log(&log, record.path()).expect("kept"), layout::OUTPUT);
        assert!(!log.exists(), "moved, not copied");
        std::fs::remove_file(record.path().join(layout::OUTPUT)).expect("rm");
        assert_eq!(keep_log(&log, record.path()).expect("kept"), layout::OUTPUT);
        let output = record.path().join(layout::OUTPUT);
        assert_eq!(std::fs::read(output).expect("written"), b"");
    }

    #[test]
    fn a_directive_is_read_removed_and_typed() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(take_directive(dir.path()).expect("none"), None);
        std::fs::create_dir_all(dir.path().join(".codemachine")).expect("mkdir");
        let path = dir.path().join(DIRECTIVE_PATH);
        for (text, want) in [
            (
                "action = \"stop\"\nreason = \"done\"",
                Directive::Stop("done".into()),
            ),
            (
                "action = \"loop\"\nto = \"a\"",
                Directive::Loop {
                    to: Some("a".into()),
                    reason: String::new(),
                },
            ),
            ("action = \"continue\"", Directive::Continue),
        ] {
            std::fs::write(&path, text).expect("write");
            assert_eq!(take_directive(dir.path()).expect("read"), Some(want));
            assert!(!path.exists(), "removed, so it is never committed");
        }
        std::fs::write(&path, "action = \"dance\"").expect("write");
        assert!(
            matches!(take_directive(dir.path()).expect("read"), Some(Directive::Invalid(m)) if m.contains("dance"))
        );
        std::fs::write(&path, "not toml [").expect("write");
        assert!(matches!(
            take_directive(dir.path()).expect("read"),
            Some(Directive::Invalid(_))
        ));
    }
}
