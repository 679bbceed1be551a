//! Snapshots of what a user reads: `status`, `log`, and the errors of common mistakes, each
//! through the real binary in a hermetic repository. The reviewed `.snap` files under
//! `snapshots/` are the expected output; a missing or changed one fails the test (review a
//! change with `cargo insta review`). Everything that differs between runs is normalised: run
//! ids, commit ids, durations, times and temporary paths.

use std::process::Command;

use crate::common::{Run, TestEnv};

/// Three steps; `build` fails while `FAIL_BUILD` is set in the environment.
const THREE: &str = r#"version = 1
name = "three"
description = "design, build, test"

[defaults]
engine = "command"
timeout = "1m"

[[steps]]
id = "design"
run = ["sh", "-c", "echo design > DESIGN.md; echo designed"]

[[steps]]
id = "build"
run = ["sh", "-c", "if [ -n \"$FAIL_BUILD\" ]; then echo 'cannot build' >&2; exit 3; fi; echo built > build.txt; echo built"]

[[steps]]
id = "test"
run = ["sh", "-c", "echo ok > test.txt; echo tested"]
"#;

/// Pauses for a person after its first step.
const REVIEW: &str = r#"version = 1
name = "review"
description = "a draft a person looks at"

[defaults]
engine = "command"
timeout = "1m"

[[steps]]
id = "draft"
run = ["sh", "-c", "echo draft > draft.txt; echo drafted"]
checkpoint = true

[[steps]]
id = "final"
run = ["sh", "-c", "echo final > final.txt; echo finished"]
"#;

/// A scratch repository and the ids of the runs made in it, in the order they were started.
struct Scene {
    env: TestEnv,
    runs: Vec<String>,
    transcript: String,
}

impl Scene {
    fn new() -> Scene {
        let env = TestEnv::new();
        env.workflow("three", THREE);
        env.workflow("review", REVIEW);
        env.git(&["add", ".codemachine"]);
        env.git(&["commit", "-qm", "add workflows"]);
        Scene {
            env,
            runs: Vec::new(),
            transcript: String::new(),
        }
    }

    /// Start a run of `workflow`, expecting exit `code`; `fail_build` makes its `build` fail.
    fn start(&mut self, workflow: &str, fail_build: bool, code: i32) -> String {
        let mut cmd = self.env.machine_cmd(&["run", workflow]);
        match fail_build {
            true => cmd.env("FAIL_BUILD", "1"),
            false => cmd.env_remove("FAIL_BUILD"),
        };
        let r = run(cmd);
        assert_eq!(r.code, code, "git machine run {workflow}\n{r}");
        let id = self.env.last_run();
        assert!(!self.runs.contains(&id), "a new run: {id}");
        self.runs.push(id.clone());
        id
    }

    /// Run `git machine <args>` and add the command, its exit code and its output to the
    /// transcript.
    fn show(&mut self, args: &[&str]) -> &mut Scene {
        let r = self.env.machine(args);
        self.transcript.push_str(&render(args, &r));
        self
    }

    /// Check the transcript against the snapshot `name`.
    fn snapshot(&self, name: &str) {
        check_snapshot(name, &self.env, &self.runs, &[], &self.transcript);
    }
}

fn run(mut cmd: Command) -> Run {
    Run::from(cmd.output().expect("spawn git-machine"))
}

fn render(args: &[&str], r: &Run) -> String {
    let mut text = format!("$ git machine {}\nexit {}\n", args.join(" "), r.code);
    for (name, out) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        if !out.is_empty() {
            text.push_str(&format!("--- {name}\n{out}"));
            if !out.ends_with('\n') {
                text.push('\n');
            }
        }
    }
    text.push('\n');
    text
}

/// Snapshot `text` with everything that differs between test runs replaced: the runs' ids by
/// `[RUN1]`, `[RUN2]`… in the order they were started, `extra` literal words, then any other
/// run id, temporary paths, commit ids, times and durations.
fn check_snapshot(name: &str, env: &TestEnv, runs: &[String], extra: &[(&str, &str)], text: &str) {
    let tmp = env
        .tmp
        .path()
        .to_str()
        .expect("utf-8 temp path")
        .to_string();
    let mut owned: Vec<(String, String)> = vec![
        // The test's temp folder, then any other (a path printed through a symlink).
        (escape(&tmp), "[TMP]".into()),
        (
            r"(/[^\s/'`]+)*/gm-test-[0-9A-Za-z_]+".into(),
            "[TMP]".into(),
        ),
        // The worktree folder of a repository is named after it and a hash of its path.
        (r"\brepo-[0-9a-f]{6,16}\b".into(), "repo-[HASH]".into()),
    ];
    for (i, id) in runs.iter().enumerate() {
        owned.push((escape(id), format!("[RUN{}]", i + 1)));
    }
    for (word, replacement) in extra {
        // Only as a word of its own: between spaces or backquotes.
        owned.push((
            format!(r"([\s`]){}([\s`])", escape(word)),
            format!("${{1}}{replacement}${{2}}"),
        ));
    }
    owned.extend(
        [
            (r"\b\d{6}-\d{6}-[0-9a-z]{3}\b", "[RUN]"),
            (
                r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})",
                "[TIME]",
            ),
            (r"\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?\b", "[TIME]"),
            // The clock in front of each progress line.
            (r"(?m)^\d{2}:\d{2}:\d{2} ", "[CLOCK] "),
            (r"\b[0-9a-f]{7,40}\b", "[OID]"),
            (r"\b\d+(\.\d)?s\b|\b\d+m\d{2}s\b|\b\d+h\d{2}m\b", "[DUR]"),
        ]
        .map(|(re, to)| (re.to_string(), to.to_string())),
    );
    let filters: Vec<(&str, &str)> = owned
        .iter()
        .map(|(re, to)| (re.as_str(), to.as_str()))
        .collect();
    insta::with_settings!({
        filters => filters,
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// `text` as a regular expression matching itself.
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[test]
fn status_of_a_completed_a_failed_and_a_paused_run() {
    let mut scene = Scene::new();
    let done = scene.start("three", false, 0);
    let failed = scene.start("three", true, 1);
    let paused = scene.start("review", false, 1);
    scene
        .show(&["status"])
        .show(&["status", &done])
        .show(&["status", &failed])
        .show(&["status", &paused]);
    scene.snapshot("status");
}

#[test]
fn log_of_a_run_with_a_failed_step_and_its_retry() {
    let mut scene = Scene::new();
    let id = scene.start("three", true, 1);
    scene.show(&["log", &id]);
    scene.show(&["resume", &id]);
    scene.show(&["log", &id]);
    scene.snapshot("log");
}

/// The transcript of one mistake in a repository holding the `three` and `review` workflows
/// (plus `extra_workflow` when given).
fn mistake(name: &str, extra_workflow: Option<(&str, &str)>, args: &[&str]) {
    let mut scene = Scene::new();
    if let Some((file, toml)) = extra_workflow {
        scene.env.workflow(file, toml);
    }
    scene.show(args);
    scene.snapshot(name);
}

#[test]
fn error_unknown_workflow() {
    mistake("error_unknown_workflow", None, &["run", "thre"]);
}

#[test]
fn error_invalid_workflow() {
    let typo = THREE.replace("timeout = \"1m\"", "timout = \"1m\"");
    mistake(
        "error_invalid_workflow",
        Some(("typo", &typo)),
        &["run", "typo"],
    );
}

#[test]
fn error_resume_of_an_unknown_run() {
    mistake("error_resume_unknown_run", None, &["resume", "zzz"]);
}

#[test]
fn error_malformed_var() {
    mistake(
        "error_malformed_var",
        None,
        &["run", "three", "--var", "feature_name"],
    );
}

#[test]
fn error_ambiguous_run_prefix() {
    let mut scene = Scene::new();
    let first = scene.start("three", false, 0);
    let second = scene.start("three", false, 0);
    let common = first
        .chars()
        .zip(second.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let prefix = &first[..common];
    assert!(!prefix.is_empty(), "runs of one test share their date");
    let r = scene.env.machine(&["status", prefix]);
    let text = render(&["status", prefix], &r);
    check_snapshot(
        "error_ambiguous_run_prefix",
        &scene.env,
        &scene.runs,
        &[(prefix, "[PREFIX]")],
        &text,
    );
}
