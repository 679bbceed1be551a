//! Agent engines through the real binary, with the fake agent standing in for each CLI
//! (`tests/fake_agent`, built with `--features test-fakes`). The fake is reached the way a
//! user's real CLI is: `MACHINE_<ENGINE>_BIN` points at a link named after the CLI, and it
//! speaks that CLI's output protocol.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Run, TestEnv};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");

/// (engine, program name, override variable)
const CLIS: &[(&str, &str, &str)] = &[
    ("claude", "claude", "MACHINE_CLAUDE_BIN"),
    ("codex", "codex", "MACHINE_CODEX_BIN"),
    ("gemini", "gemini", "MACHINE_GEMINI_BIN"),
    ("opencode", "opencode", "MACHINE_OPENCODE_BIN"),
    ("cursor", "cursor-agent", "MACHINE_CURSOR_BIN"),
    ("aider", "aider", "MACHINE_AIDER_BIN"),
];

struct Fakes {
    env: TestEnv,
    bin: PathBuf,
    log: PathBuf,
    script: PathBuf,
    extra: Vec<(String, String)>,
}

impl Fakes {
    fn new() -> Fakes {
        let env = TestEnv::new();
        let bin = env.tmp.path().join("agents");
        std::fs::create_dir_all(&bin).expect("bin dir");
        for (_, program, _) in CLIS {
            std::os::unix::fs::symlink(FAKE, bin.join(program)).expect("link fake agent");
        }
        let log = env.tmp.path().join("agent-log.jsonl");
        let script = env.tmp.path().join("agent-script.txt");
        std::fs::write(&script, "").expect("script");
        Fakes {
            env,
            bin,
            log,
            script,
            extra: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.machine_cmd(args);
        for (_, program, var) in CLIS {
            cmd.env(var, self.bin.join(program));
        }
        cmd.env("FAKE_AGENT_LOG", &self.log)
            .env("FAKE_AGENT_SCRIPT", &self.script);
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, code: i32, args: &[&str]) -> Run {
        let r = Run::from(self.cmd(args).output().expect("spawn git-machine"));
        assert_eq!(
            r.code, code,
            "git machine {args:?}: expected exit {code}\n{r}"
        );
        r
    }

    /// One agent step `id` with `engine` and `prompt`, plus extra TOML lines for the step.
    fn one_step(&self, engine: &str, prompt: &str, extra: &str) {
        self.env.workflow(
            "t",
            &format!(
                "version = 1\nname = \"t\"\ndescription = \"t\"\n\n[[steps]]\nid = \"work\"\nengine = {engine}\nprompt = '''\n{prompt}\n'''\n{extra}\n"
            ),
        );
    }

    /// Every start of the fake agent, as logged: one JSON object each.
    /// Lines the fake agent has finished writing: one it is still writing (a large prompt
    /// makes it long) has no newline yet and is left for the next look.
    fn starts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
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

    fn subject(&self, rev: &str) -> String {
        self.env
            .git(&["log", "-1", "--format=%s", rev])
            .trim()
            .to_string()
    }

    fn file_at(&self, rev: &str, path: &str) -> Option<String> {
        let out = self.env.git_output(&["show", &format!("{rev}:{path}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The value after `flag` in `argv`.
fn value_of(argv: &[String], flag: &str) -> Option<String> {
    argv.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone())
}

fn argv(start: &serde_json::Value) -> Vec<String> {
    start["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn every_engine_commits_what_its_agent_wrote_with_the_session() {
    for (engine, _, _) in CLIS {
        let f = Fakes::new();
        f.one_step(
            &format!("\"{engine}\""),
            "FAKE_WRITE notes/hello.txt hello from the agent\nFAKE_REPLY Wrote the notes\nFAKE_SESSION fixed-session-1",
            "",
        );
        let r = f.run(0, &["run", "t"]);
        let tip = f.tip();
        assert_eq!(
            f.file_at(&tip, "notes/hello.txt").as_deref(),
            Some("hello from the agent\n"),
            "{engine}: {r}"
        );
        assert_eq!(f.subject(&tip), "work: Wrote the notes", "{engine}");
        assert_eq!(f.trailer(&tip, "Machine-Engine"), *engine);
        let session = f.trailer(&tip, "Machine-Session");
        let starts = f.starts();
        assert_eq!(starts.len(), 1, "{engine}");
        let expected = match *engine {
            "aider" => ".aider.chat.history.md".to_string(),
            // git machine names a new Gemini session itself (`--session-id`).
            "gemini" => value_of(&argv(&starts[0]), "--session-id").expect("--session-id"),
            _ => "fixed-session-1".to_string(),
        };
        assert_eq!(session, expected, "{engine}");
        // The prompt travels on stdin where the CLI reads it there; stdin is closed either way.
        let on_stdin = !matches!(*engine, "cursor" | "aider");
        assert_eq!(
            starts[0]["stdin"].as_str() == Some(""),
            !on_stdin,
            "{engine}: {}",
            starts[0]["stdin"]
        );
        assert!(
            starts[0]["prompt"]
                .as_str()
                .expect("prompt")
                .contains("FAKE_REPLY Wrote the notes"),
            "{engine}: the agent got the prompt"
        );
        assert_eq!(
            starts[0]["cli"],
            if *engine == "cursor" {
                "cursor"
            } else {
                engine
            }
        );
    }
}

#[test]
fn a_new_session_gets_the_id_the_agent_printed() {
    let f = Fakes::new();
    f.one_step("\"claude\"", "FAKE_REPLY ok", "");
    f.run(0, &["run", "t"]);
    let printed = f.starts()[0]["session"]
        .as_str()
        .expect("session")
        .to_string();
    assert_eq!(f.trailer(&f.tip(), "Machine-Session"), printed);
}

#[test]
fn api_errors_fail_the_step_with_the_agents_message_for_every_engine() {
    let expected = [
        ("claude", "API Error: 400 scripted 400"),
        (
            "codex",
            "API error 400 (invalid_request_error): scripted 400",
        ),
        (
            "gemini",
            "API error 400 (invalid_request_error): scripted 400",
        ),
        ("opencode", "APIError 400: scripted 400"),
        ("cursor", "Error: API error (400): scripted 400"),
        ("aider", "litellm.BadRequestError"),
    ];
    for (engine, message) in expected {
        let f = Fakes::new();
        f.one_step(&format!("\"{engine}\""), "FAKE_ERROR 400", "");
        let r = f.run(1, &["run", "t"]);
        assert!(r.stderr.contains(message), "{engine}: {r}");
        let tip = f.tip();
        assert!(f.subject(&tip).starts_with("work: failed ("), "{engine}");
        assert_eq!(f.trailer(&tip, "Machine-Status"), "failed", "{engine}");
    }
}

#[test]
fn an_error_reported_with_exit_code_zero_still_fails() {
    for engine in ["claude", "codex", "opencode", "aider"] {
        let f = Fakes::new();
        f.one_step(
            &format!("\"{engine}\""),
            "FAKE_ERROR 500 upstream broke\nFAKE_EXIT 0",
            "",
        );
        let r = f.run(1, &["run", "t"]);
        assert!(
            r.stderr.contains("upstream broke") || r.stderr.contains("500"),
            "{engine}: {r}"
        );
    }
    // A CLI that exits 0 without its result event did not finish its turn.
    let f = Fakes::new();
    f.one_step("\"claude\"", "FAKE_NO_RESULT", "");
    let r = f.run(1, &["run", "t"]);
    assert!(r.stderr.contains("without reporting a result"), "{r}");
}

#[test]
fn a_denied_write_fails_the_step() {
    let f = Fakes::new();
    f.one_step(
        "\"claude\"",
        "FAKE_WRITE notes.txt hi",
        "permissions = \"read\"",
    );
    let r = f.run(1, &["run", "t"]);
    assert!(r.stderr.contains("denied permission for: Write"), "{r}");
    assert!(f.file_at(&f.tip(), "notes.txt").is_none());

    let f = Fakes::new();
    f.one_step(
        "\"codex\"",
        "FAKE_WRITE notes.txt hi",
        "permissions = \"read\"",
    );
    let r = f.run(1, &["run", "t"]);
    assert!(r.stderr.contains("read-only sandbox"), "{r}");
}

#[test]
fn the_command_line_carries_model_reasoning_permissions_args_and_env() {
    let f = Fakes::new();
    f.one_step(
        "\"claude\"",
        "-starts with a dash",
        "model = \"sonnet\"\nreasoning = \"high\"\nargs = [\"--max-turns\", \"7\"]\nenv = { FAKE_MARK = \"x\" }",
    );
    f.run(0, &["run", "t"]);
    let start = &f.starts()[0];
    let wt = f.env.worktree(&f.env.last_run());
    assert_eq!(
        argv(start),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--model",
            "sonnet",
            "--effort",
            "high",
            "--permission-mode",
            "acceptEdits",
            "--max-turns",
            "7"
        ]
    );
    assert_eq!(start["stdin"], "-starts with a dash\n");
    assert_eq!(start["prompt"], "-starts with a dash\n");
    // The run completed and its worktree went to the pool: its folder (which still exists)
    // and its name tell where the step ran.
    let real = |p: &Path| {
        let parent = p
            .parent()
            .expect("a folder")
            .canonicalize()
            .expect("folder exists");
        parent.join(p.file_name().expect("a name"))
    };
    assert_eq!(
        real(Path::new(start["cwd"].as_str().expect("cwd"))),
        real(&wt)
    );

    let f = Fakes::new();
    f.one_step(
        "\"codex\"",
        "go",
        "model = \"gpt-5.5\"\npermissions = \"full\"",
    );
    f.run(0, &["run", "t"]);
    let a = argv(&f.starts()[0]);
    assert_eq!(a[..3], ["exec", "--json", "--skip-git-repo-check"]);
    assert!(
        a.contains(&"--dangerously-bypass-approvals-and-sandbox".to_string()),
        "{a:?}"
    );
    assert!(a.windows(2).any(|w| w[0] == "-C"), "{a:?}");
}

#[test]
fn an_agent_that_stops_talking_is_stopped_by_the_idle_timeout() {
    let f = Fakes::new();
    f.one_step("\"claude\"", "FAKE_HANG", "idle_timeout = \"1s\"");
    let started = Instant::now();
    let r = f.run(1, &["run", "t"]);
    assert!(started.elapsed() < Duration::from_secs(20), "{r}");
    assert!(r.stderr.contains("no output for 1s"), "{r}");
}

#[test]
fn codex_reconnecting_forever_ends_at_the_timeout_and_says_why() {
    let f = Fakes::new();
    f.one_step("\"codex\"", "FAKE_RECONNECT 100", "timeout = \"2s\"");
    let r = f.run(1, &["run", "t"]);
    assert!(r.stderr.contains("timed out after 2s"), "{r}");
    assert!(r.stderr.contains("Reconnecting..."), "{r}");
}

#[test]
fn a_missing_or_rate_limited_engine_falls_back_to_the_next() {
    let mut f = Fakes::new();
    f.extra
        .push(("MACHINE_CLAUDE_BIN".into(), "/nonexistent/claude".into()));
    f.one_step("[\"claude\", \"codex\"]", "FAKE_REPLY done by codex", "");
    f.run(0, &["run", "t"]);
    assert_eq!(f.trailer(&f.tip(), "Machine-Engine"), "codex");
    let run = f.env.last_run();
    let record = f
        .file_at(
            &f.tip(),
            &format!(".codemachine/runs/{run}/steps/01-work/step.toml"),
        )
        .expect("record");
    assert!(record.contains("engine = \"codex\""), "{record}");
    assert!(
        record.contains("skipped_engines = [") && record.contains("claude: "),
        "the record says why claude was skipped: {record}"
    );

    let f = Fakes::new();
    f.one_step(
        "[\"claude\", \"gemini\"]",
        "claude: FAKE_ERROR 429\nFAKE_REPLY done by gemini",
        "",
    );
    let r = f.run(0, &["run", "t"]);
    assert_eq!(f.trailer(&f.tip(), "Machine-Engine"), "gemini", "{r}");
    assert!(r.stderr.contains("rate-limited"), "{r}");
    let clis: Vec<_> = f.starts().iter().map(|s| s["cli"].clone()).collect();
    assert_eq!(clis, ["claude", "gemini"]);
    let run = f.env.last_run();
    let record = f
        .file_at(
            &f.tip(),
            &format!(".codemachine/runs/{run}/steps/01-work/step.toml"),
        )
        .expect("record");
    assert!(
        record.contains("rate"),
        "the record says claude was rate-limited: {record}"
    );
}

#[test]
fn run_level_engine_and_model_override_the_workflow() {
    let f = Fakes::new();
    f.one_step("\"claude\"", "FAKE_REPLY hi", "model = \"sonnet\"");
    f.run(
        0,
        &["run", "t", "--engine", "opencode", "--model", "fake/other"],
    );
    assert_eq!(f.trailer(&f.tip(), "Machine-Engine"), "opencode");
    let a = argv(&f.starts()[0]);
    assert!(a.windows(2).any(|w| w == ["-m", "fake/other"]), "{a:?}");
}

#[test]
fn a_step_continues_an_earlier_steps_session() {
    let f = Fakes::new();
    f.env.workflow(
        "t",
        "version = 1\nname = \"t\"\ndescription = \"t\"\n\
         [[steps]]\nid = \"first\"\nengine = \"claude\"\nprompt = \"FAKE_SESSION sess-one\"\n\
         [[steps]]\nid = \"second\"\nengine = \"claude\"\nsession = \"first\"\nprompt = \"go on\"\n",
    );
    f.run(0, &["run", "t"]);
    let starts = f.starts();
    assert_eq!(starts.len(), 2);
    assert!(argv(&starts[1])
        .windows(2)
        .any(|w| w == ["--resume", "sess-one"]));
    assert_eq!(f.trailer(&f.tip(), "Machine-Session"), "sess-one");
}

/// Run workflow `t` with the agent hanging in session `sess-killed`, and Ctrl-C git machine
/// once the agent runs.
fn interrupt_a_hanging_run(f: &Fakes) {
    std::fs::write(&f.script, "FAKE_SESSION sess-killed\nFAKE_HANG\n").expect("script");
    let mut child = f
        .cmd(&["run", "t"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.starts().is_empty() {
        assert!(Instant::now() < deadline, "the agent never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sends SIGINT to the git-machine child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "interrupted");
}

#[test]
fn an_interrupted_step_resumes_in_its_own_session() {
    let f = Fakes::new();
    f.one_step(
        "\"claude\"",
        "FAKE_WRITE partial.txt half done\nFAKE_REPLY finished",
        "",
    );
    interrupt_a_hanging_run(&f);
    std::fs::write(&f.script, "").expect("script");
    let r = f.run(0, &["resume"]);
    let starts = f.starts();
    assert_eq!(starts.len(), 2, "{r}");
    assert!(
        argv(&starts[1])
            .windows(2)
            .any(|w| w == ["--resume", "sess-killed"]),
        "{:?}",
        argv(&starts[1])
    );
    assert_eq!(f.trailer(&f.tip(), "Machine-Session"), "sess-killed");
    assert_eq!(
        f.file_at(&f.tip(), "partial.txt").as_deref(),
        Some("half done\n")
    );
}

#[test]
fn engines_lists_installed_and_missing_clis() {
    let mut f = Fakes::new();
    f.extra
        .push(("MACHINE_AIDER_BIN".into(), "/nonexistent/aider".into()));
    let r = f.run(0, &["engines", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let list = list.as_array().expect("array");
    let names: Vec<_> = list
        .iter()
        .map(|e| e["engine"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["claude", "codex", "gemini", "opencode", "cursor", "aider"]
    );
    assert_eq!(list[0]["installed"], true);
    assert_eq!(list[0]["version"], "2.1.197 (Claude Code)");
    assert_eq!(list[5]["installed"], false);
    let r = f.run(0, &["engines"]);
    assert!(r.stdout.contains("codex-cli 0.169.0"), "{r}");
    assert!(r.stdout.contains("missing"), "{r}");
}

#[test]
fn feature_scaffold_runs_four_agent_steps() {
    let f = Fakes::new();
    std::fs::write(
        &f.script,
        "FAKE_WRITE docs/design/invoices.md # invoices\\n\\nThe design.\nFAKE_REPLY Step done\n",
    )
    .expect("script");
    f.run(
        0,
        &["run", "feature-scaffold", "--var", "feature_name=invoices"],
    );
    let run = f.env.last_run();
    let subjects = f.env.subjects(&run);
    let steps: Vec<&str> = subjects
        .iter()
        .filter_map(|s| s.split_once(": ").map(|(id, _)| id))
        .filter(|id| ["design", "implement", "tests", "docs"].contains(id))
        .collect();
    assert_eq!(
        steps,
        ["design", "implement", "tests", "docs"],
        "{subjects:?}"
    );
    assert!(f.file_at(&f.tip(), "docs/design/invoices.md").is_some());
    let first = &f.starts()[0];
    assert!(first["prompt"]
        .as_str()
        .expect("prompt")
        .contains("docs/design/invoices.md"));
    assert!(argv(first)
        .windows(2)
        .any(|w| w == ["--permission-mode", "acceptEdits"]));
}

#[test]
fn test_fix_loops_until_the_tests_pass() {
    let f = Fakes::new();
    std::fs::write(&f.script, "FAKE_WRITE fix.txt fixed\nFAKE_REPLY Fixed it\n").expect("script");
    // a test command that passes on its third run: the agent is sent back twice
    let gate = "n=$(cat .runs 2>/dev/null || echo 0); n=$((n+1)); echo $n > .runs; test $n -ge 3";
    f.run(
        0,
        &["run", "test-fix", "--var", &format!("test_command={gate}")],
    );
    let run = f.env.last_run();
    let subjects = f.env.subjects(&run);
    assert_eq!(
        subjects
            .iter()
            .filter(|s| s.starts_with("fix: Fixed it"))
            .count(),
        3,
        "{subjects:?}"
    );
    assert_eq!(f.starts().len(), 3);
    assert!(f.starts()[0]["prompt"]
        .as_str()
        .expect("prompt")
        .contains(gate));
    // never green: fails after 5 passes
    let f = Fakes::new();
    std::fs::write(&f.script, "FAKE_REPLY Tried\n").expect("script");
    let r = f.run(1, &["run", "test-fix", "--var", "test_command=false"]);
    assert!(r.stderr.contains("max of 5"), "{r}");
    assert_eq!(f.starts().len(), 5);
}

#[test]
fn bug_triage_reproduces_locates_fixes_and_verifies() {
    let f = Fakes::new();
    std::fs::write(&f.script, "FAKE_REPLY The cause is in parse()\n").expect("script");
    f.run(
        0,
        &[
            "run",
            "bug-triage",
            "--var",
            "bug=crash on empty input",
            "--var",
            "test_command=true",
        ],
    );
    let run = f.env.last_run();
    let steps: Vec<String> = f
        .env
        .subjects(&run)
        .iter()
        .skip(1)
        .map(|s| s.split(':').next().expect("id").to_string())
        .collect();
    assert_eq!(steps, ["reproduce", "locate", "fix", "verify"]);
    let starts = f.starts();
    // locate runs read-only and gets the reproduction as context; fix gets both
    assert!(
        argv(&starts[1])
            .windows(2)
            .any(|w| w == ["--permission-mode", "plan"]),
        "{:?}",
        argv(&starts[1])
    );
    let fix_prompt = starts[2]["prompt"].as_str().expect("prompt");
    assert!(
        fix_prompt.contains("## Result of step `locate`")
            && fix_prompt.contains("The cause is in parse()"),
        "{fix_prompt}"
    );
}

#[test]
fn spec_driven_follows_the_track_conditions_and_checkpoint() {
    let f = Fakes::new();
    std::fs::write(
        &f.script,
        "FAKE_WRITE docs/spec/product.md product\nFAKE_WRITE docs/spec/requirements.md reqs\nFAKE_WRITE docs/spec/architecture.md arch\nFAKE_WRITE docs/spec/api.md api\nFAKE_REPLY ok\n",
    )
    .expect("script");
    let r = f.run(
        1,
        &[
            "run",
            "spec-driven",
            "--var",
            "idea=a todo app",
            "--var",
            "test_command=true",
            "--track",
            "new_project",
            "--with",
            "has_api",
        ],
    );
    assert!(
        r.stderr.contains("paused"),
        "the architecture waits for a person: {r}"
    );
    let run = f.env.last_run();
    f.run(0, &["resume", &run]);
    let steps: Vec<String> = f
        .env
        .subjects(&run)
        .iter()
        .skip(1)
        .map(|s| s.split(':').next().expect("id").to_string())
        .collect();
    assert_eq!(
        steps,
        [
            "product-owner",
            "analyst",
            "architect",
            // The person let the run go on after the checkpoint: an empty review.
            "review",
            "api-design",
            "implement",
            "review"
        ]
    );
    let log = f.run(0, &["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    assert_eq!(v["skipped"], serde_json::json!(["survey", "data-design"]));
}

#[test]
fn a_session_resumes_on_another_clone_from_the_transcript_in_the_record() {
    let f = Fakes::new();
    std::fs::write(&f.script, "FAKE_REPLY done\n").expect("script");
    f.env.workflow(
        "talk",
        "version = 1\nname = \"talk\"\n[defaults]\nengine = \"claude\"\n[[steps]]\nid = \"design\"\nprompt = \"Design it.\"\ncheckpoint = true\n[[steps]]\nid = \"refine\"\nprompt = \"Refine it.\"\nsession = \"design\"\n",
    );
    f.env.git(&["add", "-A"]);
    f.env.git(&["commit", "-qm", "workflow"]);
    f.run(1, &["run", "talk"]);
    let run = f.env.last_run();
    let branch = format!("machine/{run}");
    let session = f.trailer(&branch, "Machine-Session");
    assert!(!session.is_empty());
    let transcript = f.file_at(
        &branch,
        &format!(".codemachine/runs/{run}/steps/01-design/transcript.jsonl"),
    );
    assert!(
        transcript.is_some_and(|t| t.contains("Design it.")),
        "the transcript is kept in the record"
    );
    // another clone, another home: the CLI has never seen this session
    let clone = f.env.tmp.path().join("clone");
    f.env.git(&[
        "clone",
        "-q",
        f.env.repo.to_str().expect("utf8"),
        clone.to_str().expect("utf8"),
    ]);
    let git_clone = |args: &[&str]| {
        let mut full = vec!["-C", clone.to_str().expect("utf8")];
        full.extend_from_slice(args);
        f.env.git(&full)
    };
    git_clone(&[
        "fetch",
        "-q",
        "origin",
        "refs/heads/machine/*:refs/heads/machine/*",
    ]);
    let other_home = f.env.tmp.path().join("other-home");
    std::fs::create_dir_all(&other_home).expect("home");
    // The run's workflow was never trusted in this clone: the user trusts it as they resume.
    let out = f
        .cmd(&["resume", &run, "--trust"])
        .current_dir(&clone)
        .env("HOME", &other_home)
        .output()
        .expect("resume");
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{r}");
    assert!(r.stderr.contains("restored the claude session"), "{r}");
    let last = f.starts().last().cloned().expect("a start");
    assert_eq!(
        last["session"],
        session.as_str(),
        "refine continued the design session"
    );
    assert!(argv(&last)
        .windows(2)
        .any(|w| w[0] == "--resume" && w[1] == session));
    assert_eq!(
        git_clone(&[
            "log",
            "-1",
            "--format=%(trailers:key=Machine-Session,valueonly)",
            &branch
        ])
        .trim(),
        session
    );
}

#[test]
fn restart_step_starts_an_interrupted_agent_step_afresh() {
    let f = Fakes::new();
    f.one_step(
        "\"claude\"",
        "FAKE_WRITE partial.txt half done\nFAKE_REPLY finished",
        "",
    );
    interrupt_a_hanging_run(&f);
    std::fs::write(&f.script, "").expect("script");
    f.run(0, &["resume", "--restart-step"]);
    let starts = f.starts();
    assert_eq!(starts.len(), 2);
    assert!(
        !argv(&starts[1]).iter().any(|a| a == "--resume"),
        "a fresh session: {:?}",
        argv(&starts[1])
    );
    assert_ne!(f.trailer(&f.tip(), "Machine-Session"), "sess-killed");
    let prompt = starts[1]["prompt"].as_str().expect("prompt");
    assert!(
        !prompt.contains("You were interrupted"),
        "the step starts over: {prompt}"
    );
}

#[test]
fn git_config_machine_engine_fills_agent_steps_that_name_no_engine() {
    let f = Fakes::new();
    f.env.workflow(
        "t",
        "version = 1\nname = \"t\"\ndescription = \"t\"\n\n[[steps]]\nid = \"work\"\nprompt = \"FAKE_REPLY hi\"\n",
    );
    f.env.git(&["config", "machine.engine", "gemini"]);
    f.run(0, &["run", "t"]);
    assert_eq!(f.trailer(&f.tip(), "Machine-Engine"), "gemini");
    // --engine beats the config; a bad value is a usage error naming where it came from
    let before = f.env.runs();
    f.run(0, &["run", "t", "--engine", "codex"]);
    let second = f
        .env
        .runs()
        .into_iter()
        .find(|r| !before.contains(r))
        .expect("a new run");
    assert_eq!(
        f.trailer(&format!("machine/{second}"), "Machine-Engine"),
        "codex"
    );
    f.env.git(&["config", "machine.engine", "gpt"]);
    let r = f.run(2, &["run", "t"]);
    assert!(
        r.stderr.contains("git config machine.engine") && r.stderr.contains("claude, codex"),
        "{r}"
    );
}

/// Regression: engine fallback inside a parallel group reset the member's worktree to an
/// all-zeros commit, so the run exited 101 and every resume failed the same way.
#[test]
fn a_rate_limited_engine_in_a_parallel_group_falls_back_from_the_groups_base() {
    let f = Fakes::new();
    f.env.workflow(
        "t",
        "version = 1\nname = \"t\"\n\n[[steps]]\nid = \"agent\"\ngroup = \"g\"\nengine = [\"claude\", \"gemini\"]\nprompt = '''\nclaude: FAKE_ERROR 429\nFAKE_REPLY done by gemini\n'''\n\n[[steps]]\nid = \"cmd\"\ngroup = \"g\"\nengine = \"command\"\nrun = [\"sh\", \"-c\", \"echo c > c.txt\"]\n",
    );
    let r = f.run(0, &["run", "t"]);
    assert!(r.stderr.contains("merged"), "{r}");
    let run = f.env.last_run();
    let record = f
        .file_at(
            &f.tip(),
            &format!(".codemachine/runs/{run}/steps/01-agent/step.toml"),
        )
        .expect("the member's record is merged into the run");
    assert!(record.contains("engine = \"gemini\""), "{record}");
    let clis: Vec<_> = f.starts().iter().map(|s| s["cli"].clone()).collect();
    assert_eq!(clis, ["claude", "gemini"]);
}

#[test]
fn resume_with_another_engine_switches_the_remaining_agent_steps_and_records_it() {
    let f = Fakes::new();
    f.one_step(
        "\"claude\"",
        "claude: FAKE_ERROR 429\nFAKE_REPLY done by gemini",
        "",
    );
    let r = f.run(1, &["run", "t"]);
    assert!(r.stderr.contains("429"), "{r}");
    let run = f.env.last_run();
    let r = f.run(0, &["resume", &run, "--engine", "gemini"]);
    assert!(
        r.stderr.contains("+engine: gemini"),
        "the change is shown: {r}"
    );
    assert_eq!(f.trailer(&f.tip(), "Machine-Engine"), "gemini");
    let subjects = f.env.subjects(&run);
    assert!(
        subjects.iter().any(|s| s == "workflow: engine gemini"),
        "{subjects:?}"
    );
    let bad = f.run(2, &["resume", &run, "--engine", "nope"]);
    assert!(bad.stderr.contains("unknown agent engine `nope`"), "{bad}");
}

/// A prompt of exactly `len` bytes: filler lines, then the directive `FAKE_REPLY ok` as the
/// last line (so the agent's reply, and the commit subject, say the whole prompt was read).
fn big_prompt(len: usize) -> String {
    let last = "FAKE_REPLY ok";
    let mut p = String::with_capacity(len);
    let mut i = 0;
    while p.len() + 64 + last.len() < len {
        p.push_str(&format!(
            "line {i:07} of a prompt far over the 128 KiB argv limit\n"
        ));
        i += 1;
    }
    p.push_str(&"x".repeat(len - p.len() - last.len() - 1));
    p.push('\n');
    p.push_str(last);
    assert_eq!(p.len(), len);
    p
}

#[test]
fn a_one_mib_prompt_reaches_a_command_on_stdin_and_in_a_file_but_not_in_the_environment() {
    let env = TestEnv::new();
    let out = env.tmp.path().join("seen");
    std::fs::create_dir_all(&out).expect("out dir");
    // The `prompt` of a workflow ends with the newline before the closing quotes.
    let prompt = format!("{}\n", big_prompt((1 << 20) - 1));
    let script = format!(
        "cat > {o}/stdin; cp \"$MACHINE_PROMPT_FILE\" {o}/file; echo \"${{MACHINE_PROMPT+set}}\" > {o}/env; echo ran",
        o = out.display()
    );
    env.workflow(
        "big",
        &format!(
            "version = 1\nname = \"big\"\ndescription = \"t\"\n\n[[steps]]\nid = \"read\"\nrun = [\"sh\", \"-c\", '''{script}''']\nprompt = '''\n{prompt}'''\n"
        ),
    );
    // Even a stale $MACHINE_PROMPT from the caller (a nested run) is not passed on.
    let r = Run::from(
        env.machine_cmd(&["run", "big"])
            .env("MACHINE_PROMPT", "stale")
            .output()
            .expect("spawn git-machine"),
    );
    assert_eq!(r.code, 0, "{r}");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).expect("written by the step");
    assert_eq!(read("stdin").len(), 1 << 20);
    assert!(read("stdin") == prompt, "stdin holds the whole prompt");
    assert!(
        read("file") == prompt,
        "$MACHINE_PROMPT_FILE holds the whole prompt"
    );
    assert_eq!(read("env"), "\n", "$MACHINE_PROMPT is unset above 32 KiB");
}

#[test]
fn a_one_mib_prompt_reaches_every_agent_whole() {
    let prompt = format!("{}\n", big_prompt((1 << 20) - 1));
    for (engine, _, _) in CLIS {
        let f = Fakes::new();
        f.one_step(
            &format!("\"{engine}\""),
            prompt.strip_suffix('\n').expect("newline"),
            "",
        );
        let r = f.run(0, &["run", "t"]);
        let starts = f.starts();
        let start = &starts[0];
        let longest = argv(start).iter().map(String::len).max().unwrap_or(0);
        assert!(longest < 1024, "{engine}: an argument of {longest} bytes");
        let got = start["prompt"].as_str().expect("prompt");
        if *engine == "cursor" {
            // Cursor takes the prompt as an argument only: above 100 KiB the argument asks the
            // agent to read the prompt file, outside the worktree.
            let path = got
                .split_once("in the file ")
                .and_then(|(_, rest)| rest.split_once(" ("))
                .map(|(path, _)| PathBuf::from(path))
                .unwrap_or_else(|| panic!("cursor: no prompt file named in {got:?}"));
            let wt = f.env.worktree(&f.env.last_run());
            assert!(!path.starts_with(&wt), "{}", path.display());
            let read = start["named_files"][path.to_str().expect("utf-8")].as_str();
            assert!(
                read == Some(prompt.as_str()),
                "cursor: the prompt file held the whole prompt when the agent read it"
            );
        } else {
            assert_eq!(got.len(), prompt.len(), "{engine}");
            assert!(got == prompt, "{engine}: the agent read the whole prompt");
            assert_eq!(f.subject(&f.tip()), "work: ok", "{engine}: {r}");
        }
    }
}

/// A prompt over the size up to which git machine streams Gemini's events (16 KiB): filler
/// lines, then `directives`.
fn over_16_kib(directives: &str) -> String {
    let mut p = String::new();
    let mut i = 0;
    while p.len() < 20 << 10 {
        p.push_str(&format!(
            "line {i:05} of a prompt Gemini gets as one JSON answer\n"
        ));
        i += 1;
    }
    p.push_str(directives);
    p
}

#[test]
fn gemini_takes_a_one_mib_prompt_new_and_resumed_in_the_same_session() {
    let f = Fakes::new();
    let first = format!("{}\n", big_prompt((1 << 20) - 1));
    let second = first.replace("FAKE_REPLY ok", "FAKE_REPLY on");
    f.env.workflow(
        "t",
        &format!(
            "version = 1\nname = \"t\"\ndescription = \"t\"\n[defaults]\nengine = \"gemini\"\n\
             [[steps]]\nid = \"first\"\nprompt = '''\n{first}'''\n\
             [[steps]]\nid = \"second\"\nsession = \"first\"\nprompt = '''\n{second}'''\n"
        ),
    );
    let r = f.run(0, &["run", "t"]);
    let starts = f.starts();
    assert_eq!(starts.len(), 2, "{r}");
    let (a, b) = (argv(&starts[0]), argv(&starts[1]));
    assert_eq!(value_of(&a, "-o").as_deref(), Some("json"), "{a:?}");
    assert_eq!(value_of(&b, "-o").as_deref(), Some("json"), "{b:?}");
    let id = value_of(&a, "--session-id").expect("a new session gets an id");
    assert_eq!(value_of(&b, "--resume"), Some(id.clone()), "{b:?}");
    assert!(!b.contains(&"--session-id".to_string()), "{b:?}");
    assert!(
        starts[0]["prompt"] == first.as_str(),
        "the first prompt whole"
    );
    assert!(
        starts[1]["prompt"] == second.as_str(),
        "the second prompt whole"
    );
    let tip = f.tip();
    assert_eq!(f.subject(&tip), "second: on", "{r}");
    assert_eq!(f.subject(&format!("{tip}~1")), "first: ok", "{r}");
    assert_eq!(f.trailer(&tip, "Machine-Session"), id);
    assert_eq!(f.trailer(&format!("{tip}~1"), "Machine-Session"), id);
}

#[test]
fn gemini_api_errors_fail_the_step_in_either_output() {
    for prompt in ["FAKE_ERROR 400".to_string(), over_16_kib("FAKE_ERROR 400")] {
        let f = Fakes::new();
        f.one_step("\"gemini\"", &prompt, "");
        let r = f.run(1, &["run", "t"]);
        assert!(
            r.stderr
                .contains("API error 400 (invalid_request_error): scripted 400"),
            "{r}"
        );
        assert_eq!(f.trailer(&f.tip(), "Machine-Status"), "failed");
        assert_eq!(f.starts().len(), 1, "{r}");
    }
}

#[test]
fn a_rate_limited_gemini_falls_back_to_the_next_engine_in_either_output() {
    for prompt in [
        "gemini: FAKE_ERROR 429\nFAKE_REPLY done by claude".to_string(),
        over_16_kib("gemini: FAKE_ERROR 429\nFAKE_REPLY done by claude"),
    ] {
        let f = Fakes::new();
        f.one_step("[\"gemini\", \"claude\"]", &prompt, "");
        let r = f.run(0, &["run", "t"]);
        assert_eq!(f.trailer(&f.tip(), "Machine-Engine"), "claude", "{r}");
        assert_eq!(f.subject(&f.tip()), "work: done by claude", "{r}");
        assert!(r.stderr.contains("rate-limited"), "{r}");
        let clis: Vec<_> = f.starts().iter().map(|s| s["cli"].clone()).collect();
        assert_eq!(clis, ["gemini", "claude"]);
    }
}

#[test]
fn an_interrupted_gemini_step_resumes_in_the_session_git_machine_named() {
    let f = Fakes::new();
    f.one_step(
        "\"gemini\"",
        &over_16_kib("FAKE_WRITE partial.txt half done\nFAKE_REPLY finished"),
        "",
    );
    // Nothing on stdout names the session before Gemini ends: git machine named it.
    interrupt_a_hanging_run(&f);
    std::fs::write(&f.script, "").expect("script");
    let r = f.run(0, &["resume"]);
    let starts = f.starts();
    assert_eq!(starts.len(), 2, "{r}");
    let id = value_of(&argv(&starts[0]), "--session-id").expect("--session-id");
    assert_eq!(value_of(&argv(&starts[1]), "--resume"), Some(id.clone()));
    assert_eq!(f.trailer(&f.tip(), "Machine-Session"), id);
    assert_eq!(f.subject(&f.tip()), "work: finished", "{r}");
}
