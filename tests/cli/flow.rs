//! Workflow power through the real binary: loops with gates, agent directives, human
//! checkpoints, context between steps.

use crate::common::TestEnv;

fn state(env: &TestEnv, run: &str) -> serde_json::Value {
    let r = env.machine_ok(&["status", run, "--json"]);
    serde_json::from_str(&r.stdout).expect("status json")
}

const COUNTING: &str = r#"version = 1
name = "counting"
[[steps]]
id = "implement"
run = ["sh", "-c", "echo pass >> count.txt; echo implemented"]
[[steps]]
id = "check"
run = ["sh", "-c", "echo checked"]
loop = { to = "implement", max = MAX, until = { run = ["sh", "-c", "test $(wc -l < count.txt) -ge 3"] }ONMAX }
[[steps]]
id = "after"
run = ["sh", "-c", "echo after > after.txt"]
"#;

fn counting(max: u32, on_max: &str) -> String {
    COUNTING
        .replace("ONMAX", on_max)
        .replace("MAX", &max.to_string())
}

#[test]
fn a_loop_ends_when_its_gate_passes() {
    let env = TestEnv::new();
    env.workflow("counting", &counting(5, ""));
    env.machine_ok(&["run", "counting"]);
    let run = env.last_run();
    let subjects = env.subjects(&run);
    let steps: Vec<&str> = subjects
        .iter()
        .skip(1)
        .map(|s| s.split(':').next().expect("id"))
        .collect();
    assert_eq!(
        steps,
        [
            "implement",
            "check",
            "implement",
            "check",
            "implement",
            "check",
            "after"
        ]
    );
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:count.txt")]),
        "pass\npass\npass\n"
    );
    assert_eq!(state(&env, &run)["state"], "completed");
    let log = env.machine_ok(&["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    let iterations: Vec<i64> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["step"] == "check")
        .map(|s| s["iteration"].as_i64().expect("iteration"))
        .collect();
    assert_eq!(iterations, [1, 2, 3]);
}

#[test]
fn a_loop_that_reaches_max_fails_or_goes_on() {
    let env = TestEnv::new();
    env.workflow("counting", &counting(2, ""));
    let r = env.machine_code(1, &["run", "counting"]);
    assert!(r.stderr.contains("max of 2"), "{r}");
    let run = env.last_run();
    assert_eq!(
        env.subjects(&run).len(),
        5,
        "two passes of implement and check"
    );
    let st = state(&env, &run);
    assert_eq!(st["state"], "failed");
    assert!(st["reason"].as_str().expect("reason").contains("max of 2"));
    // resume starts the loop again with a fresh budget: the third pass makes the gate pass
    env.machine_ok(&["resume", &run]);
    assert_eq!(state(&env, &run)["state"], "completed");

    let env = TestEnv::new();
    env.workflow("counting", &counting(2, ", on_max = \"continue\""));
    env.machine_ok(&["run", "counting"]);
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:after.txt")]),
        "after\n"
    );
}

fn directive_flow(action: &str, extra: &str) -> String {
    format!(
        r#"version = 1
name = "steer"
[[steps]]
id = "work"
run = ["sh", "-c", "echo w >> work.txt"]
[[steps]]
id = "review"
run = ["sh", "-c", "mkdir -p .codemachine && printf 'action = \"{action}\"\nreason = \"because\"\n{extra}' > .codemachine/directive.toml"]
loop = {{ to = "work", max = 2 }}
[[steps]]
id = "last"
run = ["sh", "-c", "echo last > last.txt"]
"#
    )
}

#[test]
fn agent_directives_are_obeyed_within_limits() {
    // loop: bounded by max = 2, then the run stops as failed (on_max = fail)
    let env = TestEnv::new();
    env.workflow("steer", &directive_flow("loop", ""));
    env.machine_code(1, &["run", "steer"]);
    let run = env.last_run();
    let steps: Vec<String> = env
        .subjects(&run)
        .iter()
        .skip(1)
        .map(|s| s.split(':').next().expect("id").to_string())
        .collect();
    assert_eq!(steps, ["work", "review", "work", "review"]);
    let branch = format!("machine/{run}");
    assert!(
        env.git_output(&[
            "cat-file",
            "-e",
            &format!("{branch}:.codemachine/directive.toml")
        ])
        .status
        .code()
            != Some(0),
        "the directive is not committed"
    );
    let rec = env.git(&[
        "show",
        &format!("{branch}:.codemachine/runs/{run}/steps/02-review/step.toml"),
    ]);
    assert!(rec.contains("directive = \"loop: because\""), "{rec}");

    // stop: the run completes without the last step
    let env = TestEnv::new();
    env.workflow("steer", &directive_flow("stop", ""));
    env.machine_ok(&["run", "steer"]);
    let run = env.last_run();
    assert_eq!(env.subjects(&run).len(), 3);
    let st = state(&env, &run);
    assert_eq!(st["state"], "completed");
    assert!(st["reason"].as_str().expect("reason").contains("because"));

    // error: the step fails with the agent's reason
    let env = TestEnv::new();
    env.workflow("steer", &directive_flow("error", ""));
    let r = env.machine_code(1, &["run", "steer"]);
    assert!(r.stderr.contains("because"), "{r}");

    // loop to a step outside the declared loop: refused, the step fails
    let env = TestEnv::new();
    env.workflow("steer", &directive_flow("loop", "to = \\\"last\\\"\\n"));
    let r = env.machine_code(1, &["run", "steer"]);
    assert!(r.stderr.contains("may only loop to `work`"), "{r}");

    // pause: the run stops after the step, resumable
    let env = TestEnv::new();
    env.workflow("steer", &directive_flow("pause", ""));
    env.machine_code(1, &["run", "steer"]);
    let run = env.last_run();
    assert_eq!(state(&env, &run)["state"], "paused");
}

#[test]
fn a_checkpoint_pauses_and_a_person_s_edits_are_committed_apart() {
    let env = TestEnv::new();
    env.workflow(
        "gate",
        r#"version = 1
name = "gate"
[[steps]]
id = "draft"
run = ["sh", "-c", "echo draft > plan.md"]
checkpoint = true
[[steps]]
id = "build"
run = ["sh", "-c", "cp plan.md built.md"]
"#,
    );
    let r = env.machine_code(1, &["run", "gate"]);
    assert!(r.stderr.contains("paused"), "{r}");
    let run = env.last_run();
    assert_eq!(state(&env, &run)["state"], "paused");
    let wt = env.worktree(&run);
    std::fs::write(wt.join("plan.md"), "draft, reviewed by a person\n").expect("edit");
    env.machine_ok(&["resume", &run]);
    let branch = format!("machine/{run}");
    let log = env.git(&[
        "log",
        "--first-parent",
        "--reverse",
        "--format=%an|%s",
        &format!("main..{branch}"),
    ]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[1], "git machine (command)|draft: ran sh");
    assert_eq!(lines[2], "Test User|review: changes after `draft`");
    assert_eq!(lines[3], "git machine (command)|build: ran sh");
    assert_eq!(
        env.git(&["show", &format!("{branch}:built.md")]),
        "draft, reviewed by a person\n"
    );
    let review_files = env.git(&[
        "show",
        "--name-only",
        "--format=",
        &format!("{branch}~1"),
        "--",
        ".",
        ":(exclude).codemachine",
    ]);
    assert_eq!(review_files.trim(), "plan.md");
    assert_eq!(state(&env, &run)["state"], "completed");
}

#[test]
fn context_from_earlier_steps_and_files_reaches_the_prompt() {
    let env = TestEnv::new();
    env.write("docs/standards.md", "Use snake_case.\n");
    env.write("src/api/a.ts", "export const a = 1;\n");
    env.write("src/api/b.ts", "export const b = 2;\n");
    env.git(&["add", "-A"]);
    env.git(&["commit", "-qm", "sources"]);
    env.workflow(
        "ctx",
        r#"version = 1
name = "ctx"
[[steps]]
id = "design"
run = ["sh", "-c", "echo 'the design: one table' && echo '{\"t\": 1}' > schema.json"]
outputs = ["schema.json"]
[[steps]]
id = "implement"
prompt = "Implement it."
run = ["sh", "-c", "cat > seen-prompt.txt"]
context = [
  { from = "design" },
  { from = "design", output = "schema.json" },
  { files = "src/api/**/*.ts" },
  { file = "docs/standards.md" },
  { file = "docs/missing.md" },
]
"#,
    );
    env.machine_ok(&["run", "ctx"]);
    let run = env.last_run();
    let seen = env.git(&["show", &format!("machine/{run}:seen-prompt.txt")]);
    assert!(seen.starts_with("Implement it."), "{seen}");
    for needle in [
        "the design: one table",
        "{\"t\": 1}",
        "export const a = 1;",
        "export const b = 2;",
        "Use snake_case.",
        "## File `src/api/b.ts`",
    ] {
        assert!(seen.contains(needle), "missing {needle}: {seen}");
    }
    let rec = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/02-implement/step.toml"),
    ]);
    assert!(
        rec.contains("missing (optional): file `docs/missing.md`"),
        "{rec}"
    );
    let prompt = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/02-implement/prompt.md"),
    ]);
    assert_eq!(prompt, seen, "the record keeps the prompt as sent");
}

#[test]
fn required_context_and_the_budget() {
    let env = TestEnv::new();
    env.write("big.txt", &"x".repeat(5000));
    env.git(&["add", "big.txt"]);
    env.git(&["commit", "-qm", "big"]);
    env.workflow(
        "ctx",
        r#"version = 1
name = "ctx"
[[steps]]
id = "use"
prompt = "Go."
run = ["sh", "-c", "cat > seen.txt"]
context = [ { file = "big.txt" } ]
context_limit = 1000
[[steps]]
id = "strict"
prompt = "Go."
run = ["sh", "-c", "touch ran.txt"]
context = [ { file = "nowhere.md", required = true } ]
"#,
    );
    let r = env.machine_code(1, &["run", "ctx"]);
    assert!(
        r.stderr
            .contains("required context missing: file `nowhere.md`"),
        "{r}"
    );
    let run = env.last_run();
    let seen = env.git(&["show", &format!("machine/{run}:seen.txt")]);
    assert!(seen.len() < 1300, "trimmed to the budget: {}", seen.len());
    assert!(seen.contains("bytes cut to fit"), "{seen}");
    let rec = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/01-use/step.toml"),
    ]);
    assert!(rec.contains("cut 4000 bytes of File `big.txt`"), "{rec}");
    assert!(
        !env.worktree(&run).join("ran.txt").exists(),
        "the strict step never started"
    );
}

const CHOOSY: &str = r#"version = 1
name = "choosy"
[tracks]
question = "What kind of project is this?"
[tracks.options]
new_project = "Start from scratch"
existing = "Extend an existing codebase"

[[condition_groups]]
id = "features"
question = "Which parts does it have?"
multi = true
[condition_groups.options]
has_ui = "A user interface"
has_db = "A database"

[[steps]]
id = "scaffold"
tracks = ["new_project"]
run = ["sh", "-c", "echo scaffold >> done.txt"]
[[steps]]
id = "schema"
when = ["has_db"]
run = ["sh", "-c", "echo schema >> done.txt"]
[[steps]]
id = "screens"
when_any = ["has_ui"]
run = ["sh", "-c", "echo screens >> done.txt"]
[[steps]]
id = "always"
run = ["sh", "-c", "echo always-{track}-{conditions} >> done.txt"]
"#;

#[test]
fn tracks_and_conditions_choose_the_steps() {
    let env = TestEnv::new();
    env.workflow("choosy", CHOOSY);
    // no terminal and no default: the track must be given
    let r = env.machine_code(2, &["run", "choosy"]);
    assert!(
        r.stderr.contains("What kind of project is this?") && r.stderr.contains("--track"),
        "{r}"
    );
    let r = env.machine_code(2, &["run", "choosy", "--track", "old"]);
    assert!(r.stderr.contains("new_project, existing"), "{r}");
    let r = env.machine_code(
        2,
        &["run", "choosy", "--track", "existing", "--with", "has_cli"],
    );
    assert!(r.stderr.contains("has_ui, has_db"), "{r}");
    assert!(env.runs().is_empty());

    env.machine_ok(&["run", "choosy", "--track", "existing", "--with", "has_db"]);
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:done.txt")]),
        "schema\nalways-existing-has_db\n"
    );
    let log = env.machine_ok(&["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    assert_eq!(v["skipped"], serde_json::json!(["scaffold", "screens"]));
    assert_eq!(v["track"], "existing");
    let human = env.machine_ok(&["log", &run]);
    assert!(
        human.stdout.contains("scaffold") && human.stdout.contains("skipped"),
        "{human}"
    );
    let st = env.machine_ok(&["status", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).expect("json");
    assert_eq!(
        v["state"], "completed",
        "a skipped last step does not leave the run open"
    );
    assert_eq!(v["conditions"], serde_json::json!(["has_db"]));
}

#[test]
fn choices_are_asked_on_a_terminal() {
    use portable_pty::{native_pty_system, CommandBuilder, PtySize};
    use std::io::{Read, Write};

    let env = TestEnv::new();
    env.workflow("choosy", CHOOSY);
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("pty");
    let probe = env.machine_cmd(&["run", "choosy"]);
    let mut cmd = CommandBuilder::new(crate::common::BIN);
    cmd.args(["run", "choosy"]);
    cmd.cwd(&env.repo);
    cmd.env_clear();
    for (k, v) in probe.get_envs() {
        if let (k, Some(v)) = (k, v) {
            cmd.env(k, v);
        }
    }
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    let mut child = pty.slave.spawn_command(cmd).expect("spawn");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let mut writer = pty.master.take_writer().expect("writer");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |needle: &str, seen: &mut String| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !seen.contains(needle) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let chunk = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("waiting for {needle:?}; saw:\n{seen}"));
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    wait_for("Choose one:", &mut seen);
    writer.write_all(b"1\r").expect("answer track");
    wait_for("Choose any", &mut seen);
    writer.write_all(b"has_ui,2\r").expect("answer conditions");
    wait_for("completed", &mut seen);
    let status = child.wait().expect("wait");
    assert!(status.success(), "{seen}");
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:done.txt")]),
        "scaffold\nschema\nscreens\nalways-new_project-has_ui, has_db\n"
    );
}

#[test]
fn prompt_files_are_read_at_start_and_kept_with_the_run() {
    let env = TestEnv::new();
    env.write(
        ".codemachine/workflows/prompts/design.md",
        "Design {feature} carefully.\n",
    );
    env.workflow(
        "pf",
        r#"version = 1
name = "pf"
[vars.feature]
default = "search"
[[steps]]
id = "design"
prompt_file = "prompts/design.md"
run = ["sh", "-c", "cat > seen.txt"]
checkpoint = true
[[steps]]
id = "again"
prompt_file = "prompts/design.md"
run = ["sh", "-c", "cat > seen-again.txt"]
"#,
    );
    env.machine_code(1, &["run", "pf"]);
    let run = env.last_run();
    // the prompt file changes after the start: the run keeps what it started with
    env.write(
        ".codemachine/workflows/prompts/design.md",
        "Something else {feature}\n",
    );
    env.machine_ok(&["resume", &run]);
    let branch = format!("machine/{run}");
    assert_eq!(
        env.git(&["show", &format!("{branch}:seen.txt")]),
        "Design search carefully.\n"
    );
    assert_eq!(
        env.git(&["show", &format!("{branch}:seen-again.txt")]),
        "Design search carefully.\n"
    );
    // a prompt file with an unknown placeholder is an error in that file
    env.write(
        ".codemachine/workflows/prompts/bad.md",
        "line one\nuse {nope} here\n",
    );
    env.workflow("bad", "version = 1\nname = \"bad\"\n[[steps]]\nid = \"a\"\nprompt_file = \"prompts/bad.md\"\nrun = [\"true\"]\n");
    let r = env.machine_code(2, &["validate", "bad"]);
    assert!(r.stderr.contains("bad.md:2:5"), "{r}");
}

#[test]
fn kill_9_inside_a_loop_resumes_to_the_same_end_result() {
    let reference = TestEnv::new();
    reference.workflow("counting", &counting(5, ""));
    reference.machine_ok(&["run", "counting"]);
    let ref_run = reference.last_run();
    let expected_steps: Vec<String> = reference
        .subjects(&ref_run)
        .iter()
        .skip(1)
        .cloned()
        .collect();
    let expected_count = reference.git(&["show", &format!("machine/{ref_run}:count.txt")]);

    let env = TestEnv::new();
    env.workflow(
        "counting",
        &counting(5, "").replace(
            "echo pass >> count.txt;",
            "echo pass >> count.txt; sleep 0.3;",
        ),
    );
    let mut child = env
        .machine_cmd(&["run", "counting"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // kill once the loop has gone round at least once
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let runs = env.runs();
        if let Some(run) = runs.first() {
            let n = env.git(&["rev-list", "--count", &format!("main..machine/{run}")]);
            if n.trim().parse::<u32>().unwrap_or(0) >= 4 {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the loop never went round"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let run = env.last_run();
    env.machine_ok(&["resume", &run]);
    let steps: Vec<String> = env.subjects(&run).iter().skip(1).cloned().collect();
    assert_eq!(steps, expected_steps);
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:count.txt")]),
        expected_count
    );
}
