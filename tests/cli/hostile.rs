//! Hostile and broken workflow input, through the real binary: every file of
//! `tests/invalid_workflows/` is refused with its position and nothing is created; paths from
//! workflows and vars never leave the worktree; placeholders pasted into quoted shell are
//! flagged.

use std::path::Path;

use crate::common::TestEnv;

/// No run branch, no machine ref, no worktree, no cache folder: a refused input created nothing.
#[track_caller]
fn assert_nothing_created(env: &TestEnv) {
    assert!(env.runs().is_empty(), "a run branch was created");
    assert_eq!(
        env.git(&["for-each-ref", "refs/machine/"]),
        "",
        "a machine ref was created"
    );
    assert_eq!(
        env.git(&["worktree", "list"]).lines().count(),
        1,
        "a worktree was registered"
    );
    assert!(
        !env.tmp.path().join("cache/git-machine").exists(),
        "a worktree folder was made"
    );
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// `outputs = ["{name}.md"]` with `--var name=../../escape`: the run is refused before anything
/// is created, naming the var and the key, and nothing is written outside the worktree.
#[test]
fn a_var_that_takes_an_output_out_of_the_worktree_is_refused() {
    let env = TestEnv::new();
    env.workflow(
        "escape",
        r#"version = 1
name = "escape"

[vars.name]
help = "the note's name"

[[steps]]
id = "write"
engine = "command"
run = ["sh", "-c", "mkdir -p \"$(dirname \"$1\")\" && echo hi > \"$1\"", "sh", "{name}.md"]
outputs = ["{name}.md"]
"#,
    );
    let before = files_under(env.tmp.path());
    let r = env.machine(&["run", "escape", "--no-input", "--var", "name=../../escape"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("`name`"), "names the var: {r}");
    assert!(r.stderr.contains("`outputs`"), "names the key: {r}");
    assert!(
        r.stderr.contains(".codemachine/workflows/escape.toml:"),
        "{r}"
    );
    assert_nothing_created(&env);
    assert_eq!(files_under(env.tmp.path()), before, "no file was written");
}

/// A var pasted inside quotes of a `sh -c` script: `validate` refuses it (exit 2, with the
/// place and the positional-argument hint), `run` warns and runs. Passed as an argument, a
/// value with an apostrophe and `$(…)` arrives byte for byte and runs nothing.
#[test]
fn a_placeholder_inside_quoted_shell_is_refused_by_validate_and_warned_by_run() {
    let env = TestEnv::new();
    let quoted = r#"version = 1
name = "quoted"

[vars.msg]
default = "hello"

[[steps]]
id = "say"
engine = "command"
run = ["sh", "-c", "echo '{msg}' > said.txt"]
"#;
    env.workflow("quoted", quoted);
    let r = env.machine(&["validate", "quoted"]);
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains(
            ".codemachine/workflows/quoted.toml:10:27: `{msg}` is pasted inside single quotes"
        ),
        "{r}"
    );
    assert!(
        r.stderr
            .contains(r#"hint: pass the value as an argument and quote that: `["sh", "-c", "echo \"$1\"", "sh", "{msg}"]`"#),
        "{r}"
    );
    let r = env.machine(&["run", "quoted", "--no-input"]);
    assert_eq!(r.code, 0, "a run only warns: {r}");
    assert!(
        r.stderr.contains("warning: .codemachine/workflows/quoted.toml:10:27: `{msg}` is pasted inside single quotes"),
        "{r}"
    );

    let safe = quoted.replace(
        r#"run = ["sh", "-c", "echo '{msg}' > said.txt"]"#,
        r#"run = ["sh", "-c", "printf '%s' \"$1\" > said.txt", "sh", "{msg}"]"#,
    );
    env.workflow("quoted", &safe);
    let r = env.machine_ok(&["validate", "quoted"]);
    assert!(!r.stderr.contains("warning"), "{r}");
    let before = env.runs();
    let evil = "it's $(touch pwned) `touch pwned2` \"q\"";
    let r = env.machine(&[
        "run",
        "quoted",
        "--no-input",
        "--var",
        &format!("msg={evil}"),
    ]);
    assert_eq!(r.code, 0, "{r}");
    assert!(!r.stderr.contains("warning"), "{r}");
    let run = env
        .runs()
        .into_iter()
        .find(|r| !before.contains(r))
        .expect("a new run");
    assert_eq!(env.git(&["show", &format!("machine/{run}:said.txt")]), evil);
    let tree = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")]);
    assert!(!tree.contains("pwned"), "the value ran as code: {tree}");
}
