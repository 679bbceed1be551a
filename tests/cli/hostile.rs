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
