//! End to end: git machine driving the real Claude Code and Codex CLIs, which talk to the
//! project's own scripted model server ([`crate::fake_model`]) on 127.0.0.1.
//!
//! The CLIs are installed from the npm registry at pinned versions (the versions the engine
//! adapters were measured against) into `target/agent-clis/<cli>-<version>/`, once per target
//! folder: a CLI that already answers `--version` there is not installed again. Installing is
//! serialised by a `OnceLock` per CLI inside the test process and a file lock across
//! processes. Without npm, or when the registry cannot be reached, every test here prints one
//! `SKIP: …` line to stderr and passes; `MACHINE_E2E=require` turns that into a failure (for a CI
//! that must run them), `MACHINE_E2E=off` skips without trying.
//!
//! Each test is hermetic: HOME (and `CODEX_HOME`, with a `config.toml` naming the fake
//! provider) inside the test's temp folder, fake keys only, every provider variable of the
//! caller removed, proxies pointing at a closed port with `NO_PROXY=127.0.0.1,localhost`,
//! telemetry and update checks off.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{Run, TestEnv};
use crate::fake_model::FakeModel;

/// One agent CLI as npm ships it.
struct Cli {
    engine: &'static str,
    package: &'static str,
    version: &'static str,
    /// Name of the program in `node_modules/.bin`.
    program: &'static str,
    /// git machine's variable naming the program to run.
    override_var: &'static str,
}

const CLAUDE: Cli = Cli {
    engine: "claude",
    package: "@anthropic-ai/claude-code",
    version: "2.1.197",
    program: "claude",
    override_var: "MACHINE_CLAUDE_BIN",
};

const CODEX: Cli = Cli {
    engine: "codex",
    package: "@openai/codex",
    version: "0.169.0",
    program: "codex",
    override_var: "MACHINE_CODEX_BIN",
};

/// Limit for one `npm install`.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Limit for one `git machine` command in these tests (the steps' own limits are lower).
const MACHINE_TIMEOUT: Duration = Duration::from_secs(150);

// ---- installing the CLIs ---------------------------------------------------------------------

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target folder")
        .join("agent-clis")
}

/// The installed program of `cli`, or `None` after printing why the test is skipped.
fn installed(cli: &Cli) -> Option<PathBuf> {
    static CLAUDE_BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static CODEX_BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let mode = std::env::var("MACHINE_E2E").unwrap_or_default();
    if mode == "off" {
        skip("end-to-end tests are off (MACHINE_E2E=off)");
        return None;
    }
    let cell = if cli.engine == "claude" {
        &CLAUDE_BIN
    } else {
        &CODEX_BIN
    };
    match cell.get_or_init(|| install(cli)) {
        Ok(bin) => Some(bin.clone()),
        Err(why) if mode == "require" => {
            panic!("{} is needed (MACHINE_E2E=require): {why}", cli.engine)
        }
        Err(why) => {
            skip(&format!(
                "{} {} is not available: {why}",
                cli.package, cli.version
            ));
            None
        }
    }
}

/// Say why a test is skipped: on the real stderr, which the test harness does not capture
/// (`eprintln!` output is only shown for failing tests).
fn skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP: {why}");
}

fn install(cli: &Cli) -> Result<PathBuf, String> {
    let cache = cache_dir();
    let prefix = cache.join(format!("{}-{}", cli.engine, cli.version));
    let bin = prefix.join("node_modules/.bin").join(cli.program);
    if answers_version(&bin, cli.version) {
        return Ok(bin);
    }
    std::fs::create_dir_all(&prefix).map_err(|e| format!("cannot create {prefix:?}: {e}"))?;
    let _lock = FileLock::acquire(&cache.join(".install.lock"))?;
    if answers_version(&bin, cli.version) {
        return Ok(bin); // another test process installed it meanwhile
    }
    match Command::new("npm").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(_) => return Err("`npm --version` failed".into()),
        Err(e) => return Err(format!("npm was not found ({e})")),
    }
    let log_path = cache.join(format!("install-{}.log", cli.engine));
    let log = File::create(&log_path).map_err(|e| format!("cannot create {log_path:?}: {e}"))?;
    let spec = format!("{}@{}", cli.package, cli.version);
    let started = Instant::now();
    let mut npm = Command::new("npm");
    npm.args(["install", "--prefix"])
        .arg(&prefix)
        .args([
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--fetch-retries=0",
            "--fetch-timeout=60000",
            &spec,
        ])
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let child = npm.spawn().map_err(|e| format!("cannot start npm: {e}"))?;
    let status = wait_for(child, INSTALL_TIMEOUT);
    // npm's first error lines say what happened (`code ECONNREFUSED`, `request to … failed`);
    // without any, the end of the log.
    let tail = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let errors: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("npm error") && !l.starts_with("npm error     at "))
            .take(4)
            .collect();
        if errors.is_empty() {
            lines[lines.len().saturating_sub(6)..].join("\n    ")
        } else {
            errors.join("\n    ")
        }
    };
    match status {
        Some(s) if s.success() => {}
        Some(s) => {
            return Err(format!(
                "`npm install {spec}` failed ({s}); registry unreachable? log {log_path:?}:\n    {}",
                tail()
            ))
        }
        None => {
            return Err(format!(
                "`npm install {spec}` did not finish within {INSTALL_TIMEOUT:?}; log {log_path:?}:\n    {}",
                tail()
            ))
        }
    }
    if !answers_version(&bin, cli.version) {
        return Err(format!(
            "installed, but {bin:?} does not answer `--version` with {}",
            cli.version
        ));
    }
    eprintln!(
        "installed {spec} into {prefix:?} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(bin)
}

/// Whether `bin --version` prints `version` (run with a throwaway HOME).
fn answers_version(bin: &Path, version: &str) -> bool {
    if !bin.exists() {
        return false;
    }
    let Ok(home) = tempfile::tempdir() else {
        return false;
    };
    let out_path = home.path().join("version.out");
    let Ok(out) = File::create(&out_path) else {
        return false;
    };
    let child = Command::new(bin)
        .arg("--version")
        .env("HOME", home.path())
        .env("DISABLE_AUTOUPDATER", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn();
    let Ok(child) = child else { return false };
    wait_for(child, Duration::from_secs(30)).is_some_and(|s| s.success())
        && std::fs::read_to_string(&out_path).is_ok_and(|o| o.contains(version))
}

/// Wait for `child`; kill it and return `None` past `limit`.
fn wait_for(mut child: Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An exclusive `flock` on a file, released when dropped (or when the process dies): the
/// field is never read, it holds the descriptor open.
struct FileLock(#[allow(dead_code)] File);

impl FileLock {
    fn acquire(path: &Path) -> Result<FileLock, String> {
        let file = File::create(path).map_err(|e| format!("cannot create {path:?}: {e}"))?;
        // SAFETY: flock on a descriptor we own; it stays open as long as the lock lives.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!(
                "cannot lock {path:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(FileLock(file))
    }
}

// ---- one hermetic lab per test ---------------------------------------------------------------

/// A repository, a fake model server and one real CLI wired to it.
struct Lab {
    env: TestEnv,
    model: FakeModel,
    cli: &'static Cli,
    bin: PathBuf,
}

impl Lab {
    /// `None` when the CLI is not available (the test is skipped).
    fn new(cli: &'static Cli) -> Option<Lab> {
        let bin = installed(cli)?;
        let env = TestEnv::new();
        let model = FakeModel::start();
        let codex_home = env.home.join(".codex");
        std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
        std::fs::write(
            codex_home.join("config.toml"),
            format!(
                "model = \"gpt-5.5\"\nmodel_provider = \"fake\"\ncheck_for_update_on_startup = false\n\n\
                 [model_providers.fake]\nname = \"Fake local\"\nbase_url = \"{}/v1\"\n\
                 env_key = \"FAKE_OPENAI_API_KEY\"\nwire_api = \"responses\"\n\
                 request_max_retries = 0\nstream_max_retries = 0\n\n\
                 [analytics]\nenabled = false\n\n[feedback]\nenabled = false\n\n\
                 [features]\nplugins = false\n",
                model.base_url()
            ),
        )
        .expect("codex config");
        Some(Lab {
            env,
            model,
            cli,
            bin,
        })
    }

    /// A `git machine` command with the CLI's environment.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.machine_cmd(args);
        const PROVIDER_PREFIXES: &[&str] = &[
            "ANTHROPIC_",
            "CLAUDE",
            "OPENAI_",
            "CODEX_",
            "AZURE_",
            "AWS_",
            "GOOGLE_",
            "GEMINI_",
        ];
        for (k, _) in std::env::vars() {
            if PROVIDER_PREFIXES.iter().any(|p| k.starts_with(p))
                || k.eq_ignore_ascii_case("all_proxy")
            {
                cmd.env_remove(k);
            }
        }
        let home = &self.env.home;
        let nowhere = "http://127.0.0.1:9";
        cmd.env(self.cli.override_var, &self.bin)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("HTTPS_PROXY", nowhere)
            .env("https_proxy", nowhere)
            .env("HTTP_PROXY", nowhere)
            .env("http_proxy", nowhere)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("DO_NOT_TRACK", "1")
            .env("NO_UPDATE_NOTIFIER", "1");
        match self.cli.engine {
            "claude" => {
                cmd.env("ANTHROPIC_BASE_URL", self.model.base_url())
                    .env("ANTHROPIC_API_KEY", "sk-ant-fake-key")
                    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                    .env("CLAUDE_CODE_MAX_RETRIES", "0")
                    .env("DISABLE_TELEMETRY", "1")
                    .env("DISABLE_AUTOUPDATER", "1")
                    .env("DISABLE_ERROR_REPORTING", "1")
                    .env("DISABLE_BUG_COMMAND", "1");
            }
            _ => {
                cmd.env("CODEX_HOME", home.join(".codex"))
                    .env("FAKE_OPENAI_API_KEY", "sk-fake");
            }
        }
        cmd
    }

    /// Start `git machine args…` with its output going to files in the temp folder.
    fn spawn(&self, args: &[&str], name: &str) -> (Child, PathBuf, PathBuf) {
        let out = self.env.tmp.path().join(format!("{name}.out"));
        let err = self.env.tmp.path().join(format!("{name}.err"));
        let child = self
            .cmd(args)
            .stdout(File::create(&out).expect("stdout file"))
            .stderr(File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn git-machine");
        (child, out, err)
    }

    /// Run `git machine args…` to its end (at most [`MACHINE_TIMEOUT`]) and require `code`.
    fn run(&self, code: i32, args: &[&str]) -> Run {
        let name = format!("machine-{}", args.join("-"));
        let started = Instant::now();
        let (child, out, err) = self.spawn(args, &name);
        let status = wait_for(child, MACHINE_TIMEOUT);
        let run = Run {
            code: status.and_then(|s| s.code()).unwrap_or(-1),
            stdout: std::fs::read_to_string(out).unwrap_or_default(),
            stderr: std::fs::read_to_string(err).unwrap_or_default(),
        };
        assert!(
            status.is_some(),
            "git machine {args:?} did not end within {MACHINE_TIMEOUT:?}\n{run}\n{}",
            self.requests()
        );
        assert_eq!(
            run.code,
            code,
            "{}: git machine {args:?}: expected exit {code}\n{run}\n--- model requests\n{}",
            self.cli.engine,
            self.requests()
        );
        eprintln!(
            "{}: git machine {} took {:.1}s",
            self.cli.engine,
            args.join(" "),
            started.elapsed().as_secs_f64()
        );
        run
    }

    fn requests(&self) -> String {
        self.model.summary()
    }

    /// A workflow `e2e` of one agent step `write` with `prompt`, with the default permissions
    /// (`edit`), which must let the agent write in the run's worktree.
    fn one_step(&self, prompt: &str) {
        self.one_step_with(prompt, "permissions = \"edit\"");
    }

    /// A workflow `e2e` of one agent step `write` with `prompt` and more TOML lines.
    fn one_step_with(&self, prompt: &str, extra: &str) {
        self.env.workflow(
            "e2e",
            &format!(
                "version = 1\nname = \"e2e\"\ndescription = \"end to end\"\n\n[[steps]]\n\
                 id = \"write\"\nengine = \"{}\"\n{extra}\n\
                 prompt = '''\n{prompt}\n'''\ntimeout = \"2m\"\nidle_timeout = \"90s\"\n",
                self.cli.engine
            ),
        );
    }

    fn tip(&self) -> String {
        format!("machine/{}", self.env.last_run())
    }

    fn trailer(&self, rev: &str, key: &str) -> String {
        self.env
            .git(&[
                "log",
                "-1",
                &format!("--format=%(trailers:key={key},valueonly)"),
                rev,
            ])
            .trim()
            .to_string()
    }

    fn file_at(&self, rev: &str, path: &str) -> Option<String> {
        let out = self.env.git_output(&["show", &format!("{rev}:{path}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The step record `step.toml` of record `name` (e.g. `01-write`) at the run's tip.
    fn record(&self, name: &str) -> toml::Value {
        let run = self.env.last_run();
        let text = self
            .file_at(
                &self.tip(),
                &format!(".codemachine/runs/{run}/steps/{name}/step.toml"),
            )
            .expect("step record");
        toml::from_str(&text).expect("step.toml is TOML")
    }

    /// The session id the CLI itself printed first in the step's log (`session_id` of Claude
    /// Code's events, `thread_id` of Codex's `thread.started`).
    fn reported_session(&self, record: &str) -> Option<String> {
        let run = self.env.last_run();
        let text = self.file_at(
            &self.tip(),
            &format!(".codemachine/runs/{run}/steps/{record}/output.log"),
        )?;
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| {
                v.get("session_id")
                    .or_else(|| v.get("thread_id"))
                    .and_then(|s| s.as_str())
                    .map(str::to_string)
            })
    }

    /// The in-flight session file of record `name` in any run: `(run, "<engine> <id>")`.
    fn inflight_session(&self, name: &str) -> Option<(String, String)> {
        let dir = self.env.common_dir().join("machine/sessions");
        std::fs::read_dir(dir).ok()?.flatten().find_map(|run| {
            let text = std::fs::read_to_string(run.path().join(name)).ok()?;
            let text = text.trim().to_string();
            (!text.is_empty()).then(|| (run.file_name().to_string_lossy().into_owned(), text))
        })
    }
}

// ---- the tests -------------------------------------------------------------------------------

/// The agent writes a file through the CLI's own tool; the step commit holds it and names
/// the session the CLI reported.
fn a_written_file_becomes_the_step_commit(cli: &'static Cli) {
    let Some(lab) = Lab::new(cli) else { return };
    let text = format!("hello from {}", cli.engine);
    lab.one_step(&format!("CREATE_FILE notes/hello.txt {text}"));
    let r = lab.run(0, &["run", "e2e"]);
    let tip = lab.tip();
    assert_eq!(
        lab.file_at(&tip, "notes/hello.txt").as_deref(),
        Some(format!("{text}\n").as_str()),
        "{r}\n{}",
        lab.requests()
    );
    assert_eq!(lab.trailer(&tip, "Machine-Engine"), cli.engine);
    let session = lab.trailer(&tip, "Machine-Session");
    assert!(!session.is_empty(), "no Machine-Session trailer\n{r}");
    assert_eq!(
        lab.reported_session("01-write").as_deref(),
        Some(session.as_str()),
        "the trailer is the session the CLI reported"
    );
    let record = lab.record("01-write");
    assert_eq!(record["session"].as_str(), Some(session.as_str()));
    assert_eq!(record["status"].as_str(), Some("succeeded"));
    // The model saw the tool loop: one tool call, then the reply to its result.
    let notes: Vec<String> = lab
        .model
        .requests()
        .into_iter()
        .filter(|r| r.offers_tools())
        .map(|r| r.note)
        .collect();
    assert!(
        notes.first().is_some_and(|n| n.starts_with("tool ")),
        "{notes:?}"
    );
    assert_eq!(notes.get(1).map(String::as_str), Some("text"), "{notes:?}");
}

#[test]
fn claude_writes_a_file_that_becomes_the_step_commit() {
    a_written_file_becomes_the_step_commit(&CLAUDE);
}

/// The default permissions (`edit`) let Claude Code write in the worktree. Claude Code 2.1.197
/// treats every path with a `.git` component as sensitive and `acceptEdits` then denies the
/// write, which is why run worktrees live outside `.git/` (under the user's cache folder).
#[test]
fn claude_with_edit_permissions_writes_in_the_worktree() {
    let Some(lab) = Lab::new(&CLAUDE) else { return };
    lab.one_step_with(
        "CREATE_FILE notes/hello.txt hello",
        "permissions = \"edit\"",
    );
    lab.run(0, &["run", "e2e"]);
    assert_eq!(
        lab.file_at(&lab.tip(), "notes/hello.txt").as_deref(),
        Some("hello\n")
    );
}

#[test]
fn codex_writes_a_file_that_becomes_the_step_commit() {
    a_written_file_becomes_the_step_commit(&CODEX);
}

/// git machine is stopped (`signal`) while the model holds back its reply to the agent's
/// first tool result; `resume` continues the same session: the resumed request carries the
/// earlier turns (the tool call), and the step commit names the same session.
fn a_killed_step_resumes_in_its_session(cli: &'static Cli, signal: libc::c_int) {
    let Some(lab) = Lab::new(cli) else { return };
    lab.one_step("CREATE_FILE notes/before.txt written before the kill\nSLOW");
    let (mut child, out, err) = lab.spawn(&["run", "e2e"], "killed");
    let deadline = Instant::now() + Duration::from_secs(90);
    let (run, inflight) = loop {
        if let (Some(found), true) = (
            lab.inflight_session("01-write"),
            lab.model.holding_slow_reply(),
        ) {
            break found;
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            panic!(
                "{}: never reached the slow reply with a session on disk\n--- stdout\n{}\n--- stderr\n{}\n--- model requests\n{}",
                cli.engine,
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default(),
                lab.requests()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (engine, session) = inflight.split_once(' ').expect("`<engine> <id>`");
    assert_eq!(engine, cli.engine);
    let seen_before_kill = lab.model.requests().len();
    // SAFETY: signals the git-machine child this test started (and still owns).
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
    let status =
        wait_for(child, Duration::from_secs(30)).expect("git machine ends after the signal");
    if signal == libc::SIGINT {
        assert_eq!(status.code(), Some(130), "interrupted: exit 130");
    } else {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(signal));
    }
    assert!(
        lab.env.worktree(&run).join("notes/before.txt").exists(),
        "the file written before the kill is in the worktree"
    );

    lab.run(0, &["resume", &run]);
    let tip = lab.tip();
    assert_eq!(lab.trailer(&tip, "Machine-Session"), session);
    let record = lab.record("01-write");
    assert_eq!(record["session"].as_str(), Some(session));
    assert_eq!(record["resumed_session"].as_str(), Some(session));
    assert_eq!(
        lab.file_at(&tip, "notes/before.txt").as_deref(),
        Some("written before the kill\n")
    );
    // The first model call after the kill carries the earlier turn: the tool call made before.
    let requests = lab.model.requests();
    let first_call = requests
        .iter()
        .find_map(|r| r.note.strip_prefix("tool "))
        .and_then(|n| n.split_whitespace().nth(1))
        .expect("a tool call before the kill")
        .to_string();
    let resumed = requests[seen_before_kill..]
        .iter()
        .find(|r| r.offers_tools())
        .unwrap_or_else(|| panic!("no model call after the kill\n{}", lab.requests()));
    assert!(
        resumed.body.contains(&first_call),
        "{}: the resumed request does not carry the earlier tool call {first_call}:\n{}",
        cli.engine,
        resumed.body
    );
}

#[test]
fn claude_step_interrupted_by_sigint_resumes_in_its_session() {
    a_killed_step_resumes_in_its_session(&CLAUDE, libc::SIGINT);
}

#[test]
fn codex_step_killed_by_sigkill_resumes_in_its_session() {
    a_killed_step_resumes_in_its_session(&CODEX, libc::SIGKILL);
}

/// An HTTP error from the model fails the step (exit 1) and the error reaches stderr.
fn an_api_error_fails_the_step(cli: &'static Cli) {
    let Some(lab) = Lab::new(cli) else { return };
    lab.one_step("FAKE_HTTP_ERROR 400");
    let r = lab.run(1, &["run", "e2e"]);
    assert!(
        r.stderr.contains("400") && r.stderr.contains("scripted 400"),
        "{}: the API error is not on stderr\n{r}",
        cli.engine
    );
    let record = lab.record_of_failure();
    assert_eq!(record.0, "failed", "{r}");
    assert!(record.1.contains("scripted 400"), "{}", record.1);
}

impl Lab {
    /// `(status, error)` of the failed step: its record is kept on the run branch or beside it.
    fn record_of_failure(&self) -> (String, String) {
        let out = self.env.git(&["log", "--all", "--format=%H"]);
        for commit in out.lines() {
            let tree = self.env.git(&["ls-tree", "-r", "--name-only", commit]);
            if let Some(path) = tree
                .lines()
                .find(|p| p.ends_with("/steps/01-write/step.toml"))
            {
                let text = self.file_at(commit, path).expect("record");
                let v: toml::Value = toml::from_str(&text).expect("TOML");
                return (
                    v["status"].as_str().unwrap_or("").to_string(),
                    v.get("error")
                        .and_then(|e| e.as_str())
                        .unwrap_or("")
                        .to_string(),
                );
            }
        }
        panic!("no record of the failed step");
    }
}

#[test]
fn claude_api_error_fails_the_step() {
    an_api_error_fails_the_step(&CLAUDE);
}

#[test]
fn codex_api_error_fails_the_step() {
    an_api_error_fails_the_step(&CODEX);
}

/// Whether `v` holds, anywhere, a string that is exactly `text`.
fn holds_exactly(v: &serde_json::Value, text: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s == text,
        serde_json::Value::Array(a) => a.iter().any(|x| holds_exactly(x, text)),
        serde_json::Value::Object(o) => o.values().any(|x| holds_exactly(x, text)),
        _ => false,
    }
}

/// A prompt of 1 MiB (the largest Codex takes: 1,048,576 characters) reaches the model whole,
/// in a new session and in the same session continued by a second step. Linux refuses an
/// argument over 128 KiB, so this passes only if the prompt does not travel in argv.
fn a_one_mib_prompt_reaches_the_model_whole(cli: &'static Cli) {
    let Some(lab) = Lab::new(cli) else { return };
    let prompt = |tag: &str| {
        let last = format!("{tag}: FAKE_REPLY ok\n");
        let mut p = String::new();
        let mut i = 0;
        while p.len() + 64 + last.len() < 1 << 20 {
            p.push_str(&format!(
                "{tag} line {i:07} of a prompt far over the argv limit\n"
            ));
            i += 1;
        }
        p.push_str(&"x".repeat((1 << 20) - p.len() - last.len() - 1));
        p.push('\n');
        p.push_str(&last);
        assert_eq!(p.len(), 1 << 20);
        p
    };
    let (first, second) = (prompt("first"), prompt("second"));
    // A `'''` string drops only the newline right after its opening quotes.
    lab.env.workflow(
        "big",
        &format!(
            "version = 1\nname = \"big\"\ndescription = \"t\"\n[defaults]\nengine = \"{}\"\ntimeout = \"2m\"\n\n\
             [[steps]]\nid = \"first\"\nprompt = '''\n{first}'''\n\n\
             [[steps]]\nid = \"second\"\nsession = \"first\"\nprompt = '''\n{second}'''\n",
            cli.engine
        ),
    );
    let r = lab.run(0, &["run", "big"]);
    let requests = lab.model.requests();
    for (name, p) in [("first", &first), ("second", &second)] {
        assert!(
            requests
                .iter()
                .any(|q| q.json.as_ref().is_some_and(|b| holds_exactly(b, p))),
            "{}: no request held the {name} prompt whole ({} requests)\n{r}",
            cli.engine,
            requests.len()
        );
    }
    assert_eq!(
        lab.record("02-second")["resumed_session"].as_str(),
        Some(
            lab.trailer(&format!("{}~1", lab.tip()), "Machine-Session")
                .as_str()
        ),
        "the second step continued the first one's session"
    );
}

#[test]
fn claude_gets_a_one_mib_prompt_whole() {
    a_one_mib_prompt_reaches_the_model_whole(&CLAUDE);
}

#[test]
fn codex_gets_a_one_mib_prompt_whole() {
    a_one_mib_prompt_reaches_the_model_whole(&CODEX);
}

impl Drop for Lab {
    /// What the model saw, for the test's output (shown on failure or with `--nocapture`).
    fn drop(&mut self) {
        eprintln!("{}: model requests:\n{}", self.cli.engine, self.requests());
    }
}

// ---- the command lines against the real CLIs' --help --------------------------------------

/// Every option git machine passes to `cli` — for each permission level, with a model and a
/// reasoning level, and when continuing a session — is one the installed CLI's `--help` lists.
fn every_flag_is_in_the_clis_help(cli: &'static Cli, model: &str, help_args: &[&[&str]]) {
    let Some(lab) = Lab::new(cli) else { return };
    lab.env.workflow(
        "flags",
        &format!(
            "version = 1\nname = \"flags\"\n[defaults]\nengine = \"{engine}\"\nmodel = \"{model}\"\nreasoning = \"high\"\ntimeout = \"2m\"\n\n\
             [[steps]]\nid = \"read\"\npermissions = \"read\"\nprompt = \"Say hello.\"\n\n\
             [[steps]]\nid = \"edit\"\npermissions = \"edit\"\nprompt = \"Say hello again.\"\nsession = \"read\"\n\n\
             [[steps]]\nid = \"full\"\npermissions = \"full\"\nprompt = \"Say goodbye.\"\nenv = {{ IS_SANDBOX = \"1\" }}\n",
            engine = cli.engine
        ),
    );
    lab.run(0, &["run", "flags"]);
    let mut help = String::new();
    for args in help_args {
        let out = Command::new(&lab.bin)
            .args(*args)
            .env("HOME", &lab.env.home)
            .env("CODEX_HOME", lab.env.home.join(".codex"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run --help");
        help.push_str(&String::from_utf8_lossy(&out.stdout));
        help.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let mut checked = 0;
    for name in ["01-read", "02-edit", "03-full"] {
        let record = lab.record(name);
        let command: Vec<&str> = record["command"]
            .as_array()
            .expect("the record keeps the command line")
            .iter()
            .map(|a| a.as_str().expect("string"))
            .collect();
        for arg in command
            .iter()
            .skip(1)
            .filter(|a| a.starts_with('-') && a.len() > 1 && **a != "--")
        {
            let flag = arg.split('=').next().expect("a flag");
            assert!(
                help.contains(flag),
                "{} {}: `{flag}` (from {command:?}) is not in its --help",
                cli.package,
                cli.version
            );
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} flags were checked");
}

#[test]
fn claude_command_lines_use_only_flags_claude_has() {
    every_flag_is_in_the_clis_help(&CLAUDE, "claude-sonnet-4-5", &[&["--help"]]);
}

#[test]
fn codex_command_lines_use_only_flags_codex_has() {
    every_flag_is_in_the_clis_help(
        &CODEX,
        "gpt-5.5",
        &[&["exec", "--help"], &["exec", "resume", "--help"]],
    );
}

// ---- the person in the loop ------------------------------------------------------------------

/// The controller's conversation with the real CLI on a pty: each line is the next turn of one
/// session, the agent writes the spec with its own tool, and the workflow starts with it.
fn the_controller_conversation_runs_in_one_session(cli: &'static Cli) {
    let Some(lab) = Lab::new(cli) else { return };
    lab.env.workflow(
        "talk",
        &format!(
            "version = 1\nname = \"talk\"\n\n[controller]\nengine = \"{}\"\npermissions = \"edit\"\n\
             prompt = \"You are the product owner.\"\ntimeout = \"2m\"\n\n[[steps]]\nid = \"build\"\n\
             run = [\"sh\", \"-c\", \"test -f spec.md && cat > got.txt\"]\nprompt = \"Build it.\"\n\
             context = [{{ from = \"controller\" }}]\n",
            cli.engine
        ),
    );
    let cmd = lab.cmd(&["run", "talk"]);
    let mut view = crate::pty::OnPty::spawn_command(&lab.env, &cmd, 160);
    let patience = Duration::from_secs(60);
    let shows = |view: &crate::pty::OnPty, text: &str| {
        assert!(
            crate::common::wait_until(patience, || view.text().contains(text)),
            "{}: never showed {text:?}\n{}\n--- model requests\n{}",
            cli.engine,
            view.text(),
            lab.requests()
        );
    };
    shows(&view, "REPLY: You are the product owner.");
    shows(&view, "you ›");
    view.line("CREATE_FILE spec.md a todo app");
    shows(&view, "DONE: written.");
    view.line("");
    shows(&view, "Start the workflow?");
    view.line("");
    assert_eq!(view.wait(patience), Some(0), "{}", view.text());

    let run = lab.env.last_run();
    let controller = format!("machine/{run}~1");
    assert_eq!(
        lab.env
            .git(&["log", "-1", "--format=%s", &controller])
            .trim(),
        "controller: conversation of 1 turn"
    );
    assert_eq!(
        lab.env
            .git(&["show", &format!("{controller}:spec.md")])
            .trim(),
        "a todo app"
    );
    let session = lab.env.git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Machine-Session,valueonly)",
        &controller,
    ]);
    assert!(
        !session.trim().is_empty(),
        "the controller's commit names its session"
    );
    // The second turn went to the same conversation: the model saw the first turn again.
    let last = lab
        .model
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.body.contains("CREATE_FILE spec.md"))
        .expect("the second turn reached the model");
    assert!(
        last.body.contains("You are the product owner."),
        "{}: the second turn does not carry the first",
        cli.engine
    );
    let got = lab.env.git(&["show", &format!("machine/{run}:got.txt")]);
    assert!(got.contains("CREATE_FILE spec.md a todo app"), "{got}");
}

#[test]
fn claude_controller_conversation_runs_in_one_session() {
    the_controller_conversation_runs_in_one_session(&CLAUDE);
}

#[test]
fn codex_controller_conversation_runs_in_one_session() {
    the_controller_conversation_runs_in_one_session(&CODEX);
}

/// What the CLI needs to start its interface without first-run questions in the test's HOME:
/// Claude Code's onboarding done, the fake key approved and the temp folder (where the run's
/// worktrees are) trusted; Codex trusting the test repository (and so its linked worktrees).
fn seed_interactive(lab: &Lab) {
    let tmp = lab.env.tmp.path().display().to_string();
    let claude = serde_json::json!({
        "hasCompletedOnboarding": true,
        "theme": "dark",
        "customApiKeyResponses": { "approved": ["sk-ant-fake-key"], "rejected": [] },
        "projects": { tmp: { "hasTrustDialogAccepted": true } },
    });
    std::fs::write(lab.env.home.join(".claude.json"), claude.to_string()).expect("claude config");
    let codex = lab.env.home.join(".codex/config.toml");
    let mut config = std::fs::read_to_string(&codex).expect("codex config");
    // The newer model Codex offers at start counts as offered already.
    config.push_str(&format!(
        "\n[notice.model_migrations]\n\"gpt-5.5\" = \"gpt-6-sol\"\n\n[projects.\"{}\"]\ntrust_level = \"trusted\"\n",
        lab.env.repo.display()
    ));
    std::fs::write(codex, config).expect("codex config");
}

/// An interactive step with the real CLI's own interface on a pty: the first message goes at
/// once, the agent writes a file with its tool, the person leaves with `/exit`, and the work is
/// the step's commit, with the session confirmed in the CLI's storage.
fn an_interactive_step_uses_the_clis_own_interface(cli: &'static Cli) {
    let Some(lab) = Lab::new(cli) else { return };
    seed_interactive(&lab);
    lab.env.workflow(
        "inter",
        &format!(
            "version = 1\nname = \"inter\"\n\n[[steps]]\nid = \"talk\"\nengine = \"{}\"\n\
             permissions = \"edit\"\nmode = \"interactive\"\nprompt = \"CREATE_FILE notes.md hello\"\n",
            cli.engine
        ),
    );
    let cmd = lab.cmd(&["run", "inter", "--plain"]);
    let mut view = crate::pty::OnPty::spawn_command(&lab.env, &cmd, 160);
    let patience = Duration::from_secs(60);
    // A full-screen interface redraws lines in pieces: look at the screen a person sees.
    let shown = |view: &crate::pty::OnPty, text: &str| {
        crate::common::wait_until(patience, || view.visible().contains(text))
    };
    // Codex may first offer a newer model than the one configured: keep the configured one.
    let first = crate::common::wait_until(patience, || {
        let t = view.visible();
        t.contains("written.") || t.contains("Try new model")
    });
    if first && !view.visible().contains("written.") {
        eprintln!(
            "{}: the newer-model notice came up; keeping the configured model",
            cli.engine
        );
        view.keys(b"\x1b[B");
        std::thread::sleep(Duration::from_millis(300));
        view.keys(b"\r");
    }
    assert!(
        shown(&view, "DONE: written."),
        "{}: the agent never finished its first turn\n{}\n--- model requests\n{}",
        cli.engine,
        view.visible(),
        lab.requests()
    );
    std::thread::sleep(Duration::from_millis(500));
    view.line("/exit");
    let back = || {
        crate::common::wait_until(Duration::from_secs(5), || {
            view.text().contains("the terminal is back")
        })
    };
    if !back() {
        // Some interfaces take the command from a menu: Enter once more.
        view.line("");
    }
    let code = view.wait(patience);
    assert_eq!(code, Some(0), "{}: {}", cli.engine, view.text());
    let tip = lab.tip();
    assert_eq!(
        lab.file_at(&tip, "notes.md").as_deref(),
        Some("hello\n"),
        "{}: {}\n--- model requests\n{}",
        cli.engine,
        view.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        lab.requests()
    );
    let session = lab.trailer(&tip, "Machine-Session");
    assert!(
        !session.is_empty(),
        "{}: no session confirmed\n{}",
        cli.engine,
        view.text()
    );
    let record = lab.record("01-talk");
    assert_eq!(record["session"].as_str(), Some(session.as_str()));
    assert!(
        lab.file_at(
            &tip,
            &format!(
                ".codemachine/runs/{}/steps/01-talk/transcript.jsonl",
                lab.env.last_run()
            )
        )
        .is_some_and(|t| t.contains("CREATE_FILE notes.md hello")),
        "{}: the CLI's transcript is kept with the record",
        cli.engine
    );
}

#[test]
fn claude_interactive_step_uses_its_own_interface() {
    an_interactive_step_uses_the_clis_own_interface(&CLAUDE);
}

#[test]
fn codex_interactive_step_uses_its_own_interface() {
    an_interactive_step_uses_the_clis_own_interface(&CODEX);
}
