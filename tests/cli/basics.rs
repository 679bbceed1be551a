//! The core flow through the real binary: run, review, resume, rewind, apply, rm, validate.

use crate::common::TestEnv;

const HELLO: &str = r#"version = 1
name = "hello"
description = "two steps"

[vars.feature_name]
help = "name of the feature"
default = "greeting"

[defaults]
engine = "command"
timeout = "1m"

[[steps]]
id = "design"
run = ["sh", "-c", "printf '# %s\n' \"$1\" > DESIGN.md; echo designed $1", "sh", "{feature_name}"]
prompt = "Design {feature_name}"
outputs = ["DESIGN.md"]

[[steps]]
id = "build"
run = ["sh", "-c", "cat > prompt.txt; echo \"$MACHINE_PROMPT\" > env-prompt.txt; echo built"]
prompt = "Build {feature_name} now"
"#;

fn trailer(env: &TestEnv, rev: &str, key: &str) -> String {
    env.git(&[
        "log",
        "-1",
        &format!("--format=%(trailers:key={key},valueonly)"),
        rev,
    ])
    .trim()
    .to_string()
}

#[test]
fn a_run_is_a_branch_with_one_commit_per_step() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    let before = env.user_state();
    let r = env.machine_ok(&["run", "hello", "--var", "feature_name=invoices"]);
    assert!(r.stderr.contains("design"), "{r}");
    let run = env.last_run();
    assert_eq!(
        env.subjects(&run),
        vec![
            format!("start: hello ({run})"),
            "design: designed invoices".to_string(),
            "build: built".to_string()
        ]
    );
    let branch = format!("machine/{run}");
    assert_eq!(
        env.git(&["show", &format!("{branch}:DESIGN.md")]),
        "# invoices\n"
    );
    // The prompt reaches command steps on stdin and as $MACHINE_PROMPT.
    assert_eq!(
        env.git(&["show", &format!("{branch}:prompt.txt")]),
        "Build invoices now"
    );
    assert_eq!(
        env.git(&["show", &format!("{branch}:env-prompt.txt")]),
        "Build invoices now\n"
    );
    assert_eq!(trailer(&env, &branch, "Machine-Run"), run);
    assert_eq!(trailer(&env, &branch, "Machine-Step"), "build");
    assert_eq!(trailer(&env, &branch, "Machine-Engine"), "command");
    // The step record and checkpoint are in the step commit.
    let rec = env.git(&[
        "show",
        &format!("{branch}:.codemachine/runs/{run}/steps/01-design/step.toml"),
    ]);
    assert!(rec.contains("status = \"succeeded\""), "{rec}");
    assert!(rec.contains("exit_code = 0"), "{rec}");
    let prompt = env.git(&[
        "show",
        &format!("{branch}:.codemachine/runs/{run}/steps/01-design/prompt.md"),
    ]);
    assert_eq!(prompt, "Design invoices");
    let log = env.git(&[
        "show",
        &format!("{branch}:.codemachine/runs/{run}/steps/01-design/output.log"),
    ]);
    assert_eq!(log, "designed invoices\n");
    let state = env.git(&[
        "show",
        &format!("{branch}:.codemachine/runs/{run}/state.toml"),
    ]);
    assert!(state.contains("status = \"completed\""), "{state}");
    let runrec = env.git(&[
        "show",
        &format!("{branch}:.codemachine/runs/{run}/run.toml"),
    ]);
    assert!(runrec.contains("feature_name = \"invoices\""), "{runrec}");
    // Only the step's changes are in a step commit.
    let files = env.git(&[
        "diff",
        "--name-only",
        &format!("{branch}~1"),
        &branch,
        "--",
        ".",
        ":(exclude).codemachine",
    ]);
    assert_eq!(files, "env-prompt.txt\nprompt.txt\n");
    // The completed run's worktree went to the pool for the next run, and the user's checkout
    // is untouched.
    assert!(!env.worktree(&run).exists());
    let pool = env.worktree(&run).with_file_name("pool");
    let pooled: Vec<_> = std::fs::read_dir(&pool)
        .expect("the pool")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(pooled.len(), 1, "{pooled:?}");
    assert!(pooled[0].join("DESIGN.md").exists());
    assert_eq!(env.user_state(), before);
}

#[test]
fn placeholder_values_are_data_not_shell() {
    let env = TestEnv::new();
    env.workflow(
        "echo",
        r#"version = 1
name = "echo"
[vars.v]
[[steps]]
id = "say"
run = ["sh", "-c", "printf '%s' \"$1\" > value.txt", "sh", "{v}"]
"#,
    );
    let nasty = "$(touch pwned); '; touch pwned2 #`touch pwned3`";
    env.machine_ok(&["run", "echo", "--var", &format!("v={nasty}")]);
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:value.txt")]),
        nasty
    );
    for f in ["pwned", "pwned2", "pwned3"] {
        assert!(!env.worktree(&run).join(f).exists(), "{f} was created");
        assert!(!env.path(f).exists());
    }
}

#[test]
fn bad_workflows_exit_2_and_create_nothing() {
    let env = TestEnv::new();
    let cases: &[(&str, &str, &str)] = &[
        ("typo", "version = 1\nname = \"t\"\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\npromt = \"x\"\n", "did you mean `prompt`"),
        ("dup", "version = 1\nname = \"t\"\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\n", "duplicate"),
        ("dur", "version = 1\nname = \"t\"\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\ntimeout = \"soon\"\n", "duration"),
        ("eng", "version = 1\nname = \"t\"\n[[steps]]\nid = \"a\"\nengine = \"claud\"\nprompt = \"x\"\n", "did you mean `claude`"),
        ("empty", "version = 1\nname = \"t\"\nsteps = []\n", "no steps"),
        ("syntax", "version = 1\nname = \"t\n", "typo.toml"),
    ];
    for (name, text, needle) in cases {
        env.workflow(name, text);
        let before_refs = env.git(&["for-each-ref"]);
        let r = env.machine_code(2, &["run", name]);
        let needle = if *name == "syntax" {
            "syntax.toml"
        } else {
            needle
        };
        assert!(r.stderr.contains(needle), "{name}: {r}");
        assert!(
            r.stderr.contains(&format!("{name}.toml:")),
            "{name}: names the file: {r}"
        );
        assert_eq!(
            env.git(&["for-each-ref"]),
            before_refs,
            "{name}: no ref created"
        );
        assert!(
            !env.tmp.path().join("cache/git-machine").exists(),
            "{name}: no worktree made"
        );
        assert_eq!(
            env.git(&["worktree", "list"]).lines().count(),
            1,
            "{name}: no worktree registered"
        );
        let v = env.machine_code(2, &["validate", name]);
        assert!(v.stderr.contains(needle), "validate {name}: {v}");
    }
    // line and column of the typo
    let r = env.machine_code(2, &["validate", "typo"]);
    assert!(r.stderr.contains("typo.toml:6:1"), "{r}");
    // vars: unknown and missing
    env.workflow("echo", "version = 1\nname = \"echo\"\n[vars.v]\nhelp = \"a value\"\n[[steps]]\nid = \"a\"\nrun = [\"echo\", \"{v}\"]\n");
    let r = env.machine_code(2, &["run", "echo"]);
    assert!(r.stderr.contains("`v`") || r.stderr.contains(" v "), "{r}");
    let r = env.machine_code(2, &["run", "echo", "--var", "v=1", "--var", "w=2"]);
    assert!(r.stderr.contains("w"), "{r}");
    let r = env.machine_code(2, &["run", "nonesuch"]);
    assert!(r.stderr.contains("nonesuch"), "{r}");
    let r = env.machine_code(2, &["run", "echo", "--var", "v=1", "--base", "no-such-rev"]);
    assert!(r.stderr.contains("no-such-rev"), "{r}");
    assert!(env.runs().is_empty());
    let ok = env.machine_ok(&["validate", "echo"]);
    assert!(ok.stdout.contains("ok"), "{ok}");
}

#[test]
fn status_log_and_show_review_a_run() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    let s = env.machine_ok(&["status"]);
    assert!(
        s.stdout.contains(&run) && s.stdout.contains("completed") && s.stdout.contains("hello"),
        "{s}"
    );
    let j = env.machine_ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).expect("json");
    assert_eq!(v[0]["id"], run.as_str());
    assert_eq!(v[0]["state"], "completed");
    // the listing is cached by branch tip; a garbled or stale cache is read from git again
    let cache = env.common_dir().join("machine/cache/runs.tsv");
    assert!(std::fs::read_to_string(&cache)
        .expect("cache")
        .contains(&run));
    std::fs::write(
        &cache,
        format!(
            "{run}\t0000000000000000000000000000000000000000\tfailed\t\tstale\tthen\ngarbage\n"
        ),
    )
    .expect("garble");
    let again = env.machine_ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(v[0]["state"], "completed");
    assert_eq!(v[0]["workflow"], "hello");
    let one = env.machine_ok(&["status", &run[..8], "--json"]);
    let v: serde_json::Value = serde_json::from_str(&one.stdout).expect("json");
    assert_eq!(v["steps"][0]["id"], "design");
    assert_eq!(v["steps"][0]["state"], "done");
    assert_eq!(v["steps"][1]["state"], "done");
    let log = env.machine_ok(&["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    assert_eq!(v["steps"][0]["step"], "design");
    assert_eq!(v["steps"][0]["engine"], "command");
    assert_eq!(v["steps"][0]["files"][0]["path"], "DESIGN.md");
    let human = env.machine_ok(&["log"]);
    assert!(
        human.stdout.contains("DESIGN.md") && human.stdout.contains("designed greeting"),
        "{human}"
    );
    let show = env.machine_ok(&["show", &run, "design"]);
    assert!(show.stdout.contains("+# greeting"), "{show}");
    let recent = env.machine_ok(&["show", "design"]);
    assert_eq!(
        recent.stdout, show.stdout,
        "without a run: the most recent one"
    );
    assert!(!show.stdout.contains("state.toml"), "{show}");
    let all = env.machine_ok(&["show", &run, "design", "--all"]);
    assert!(all.stdout.contains("state.toml"), "{all}");
    let bad = env.machine_code(2, &["show", &run, "nope"]);
    assert!(bad.stderr.contains("design"), "{bad}");
    let run_alone = env.machine_code(2, &["show", &run]);
    assert!(
        run_alone
            .stderr
            .contains("is a run: name one of its steps too")
            && run_alone
                .stderr
                .contains(&format!("git machine show {run} ")),
        "a run id alone names the run and how to show its last step: {run_alone}"
    );
    // Every run id starts with digits; a step number is still a step number.
    let digits = &run[..2];
    let no_such_step = env.machine_code(2, &["show", digits]);
    assert!(
        no_such_step
            .stderr
            .contains(&format!("has no executed step `{digits}`")),
        "{no_such_step}"
    );
}

#[test]
fn commits_made_by_the_step_stay_under_the_step_commit() {
    let env = TestEnv::new();
    env.workflow(
        "selfcommit",
        r#"version = 1
name = "selfcommit"
[[steps]]
id = "work"
run = ["sh", "-c", "echo a > a.txt && git add a.txt && git -c user.name=A -c user.email=a@x commit -qm 'agent commit' && echo b > b.txt"]
"#,
    );
    env.machine_ok(&["run", "selfcommit"]);
    let run = env.last_run();
    let subjects = env.git(&[
        "log",
        "--reverse",
        "--format=%s",
        &format!("main..machine/{run}"),
    ]);
    assert_eq!(
        subjects.lines().collect::<Vec<_>>(),
        vec![
            format!("start: selfcommit ({run})").as_str(),
            "agent commit",
            "work: ran sh"
        ]
    );
    let files = env.git(&[
        "show",
        "--name-only",
        "--format=",
        &format!("machine/{run}"),
        "--",
        ".",
        ":(exclude).codemachine",
    ]);
    assert_eq!(files.trim(), "b.txt");
    let log = env.machine_ok(&["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    let paths: Vec<&str> = v["steps"][0]["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, vec!["a.txt", "b.txt"]);
}

#[test]
fn a_failed_step_is_recorded_and_resume_retries_it() {
    let env = TestEnv::new();
    let marker = env.tmp.path().join("ok-now");
    env.workflow(
        "flaky",
        &format!(
            r#"version = 1
name = "flaky"
[[steps]]
id = "one"
run = ["sh", "-c", "echo one > one.txt"]
[[steps]]
id = "two"
run = ["sh", "-c", "echo partial > partial.txt; if ! test -e '{}'; then echo 'boom: not yet' >&2; exit 3; fi; echo two > two.txt"]
outputs = ["two.txt"]
[[steps]]
id = "three"
run = ["sh", "-c", "echo three > three.txt"]
"#,
            marker.display()
        ),
    );
    let r = env.machine_code(1, &["run", "flaky"]);
    assert!(
        r.stderr.contains("boom: not yet"),
        "shows the output tail: {r}"
    );
    assert!(
        r.stderr.contains("output.log"),
        "says where the log is: {r}"
    );
    let run = env.last_run();
    let st = env.machine_ok(&["status", "--json"]);
    assert!(st.stdout.contains("\"failed\""), "{st}");
    let subjects = env.subjects(&run);
    assert_eq!(subjects[2], "two: failed (exit code 3)");
    // The failure commit holds the record, not the partial work; that is kept as an attempt.
    let branch = format!("machine/{run}");
    assert!(
        env.git_output(&["cat-file", "-e", &format!("{branch}:partial.txt")])
            .status
            .code()
            != Some(0)
    );
    let attempts = env.git(&[
        "for-each-ref",
        "--format=%(refname)",
        &format!("refs/machine/attempts/{run}/"),
    ]);
    assert_eq!(attempts.lines().count(), 1, "{attempts}");
    let attempt = attempts.trim();
    assert_eq!(
        env.git(&["show", &format!("{attempt}:partial.txt")]),
        "partial\n"
    );
    std::fs::write(&marker, "").expect("marker");
    env.machine_ok(&["resume", &run]);
    let subjects = env.subjects(&run);
    assert_eq!(subjects.len(), 5, "{subjects:?}");
    assert_eq!(subjects[3], "two: ran sh");
    assert_eq!(subjects[4], "three: ran sh");
    assert_eq!(env.git(&["show", &format!("{branch}:two.txt")]), "two\n");
    let again = env.machine_ok(&["resume", &run]);
    assert!(again.stderr.contains("already complete"), "{again}");
}

#[test]
fn a_missing_output_fails_the_step() {
    let env = TestEnv::new();
    env.workflow("out", "version = 1\nname = \"out\"\n[[steps]]\nid = \"a\"\nrun = [\"true\"]\noutputs = [\"made.txt\"]\n");
    let r = env.machine_code(1, &["run", "out"]);
    assert!(r.stderr.contains("made.txt"), "{r}");
}

#[test]
fn rewind_makes_a_step_next_and_undo_restores_the_tip() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    let branch = format!("machine/{run}");
    let tip = env.git(&["rev-parse", &branch]);
    let before = env.user_state();
    let r = env.machine_ok(&["rewind", &run, "build"]);
    assert!(r.stdout.contains("attic"), "{r}");
    assert_eq!(env.subjects(&run).len(), 2);
    assert_eq!(
        env.git(&["rev-parse", &format!("refs/machine/attic/{run}/1")]),
        tip
    );
    let st = env.machine_ok(&["status", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).expect("json");
    assert_eq!(v["next"], "build");
    assert!(
        !env.worktree(&run).join("prompt.txt").exists(),
        "worktree follows the rewind"
    );
    env.machine_ok(&["rewind", "--undo", &run]);
    assert_eq!(env.git(&["rev-parse", &branch]), tip);
    // without a run: the most recent one
    env.machine_ok(&["rewind", "build"]);
    assert_eq!(env.subjects(&run).len(), 2);
    env.machine_ok(&["rewind", "--undo"]);
    assert_eq!(env.git(&["rev-parse", &branch]), tip);
    let r = env.machine_code(2, &["rewind"]);
    assert!(r.stderr.contains("needs the step"), "{r}");
    // rewind again and run forward: a new tip, the old one still in the attic
    env.machine_ok(&["rewind", &run, "design"]);
    env.machine_ok(&["resume", &run]);
    assert_eq!(env.subjects(&run).len(), 3);
    assert_eq!(
        env.git(&["rev-parse", &format!("refs/machine/attic/{run}/1")]),
        tip
    );
    let unknown = env.machine_code(2, &["rewind", &run, "nope"]);
    assert!(unknown.stderr.contains("has not run"), "{unknown}");
    assert_eq!(env.user_state(), before);
}

#[test]
fn apply_puts_code_changes_on_the_current_branch() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.git(&["add", ".codemachine"]);
    env.git(&["commit", "-qm", "add workflow"]);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    // a dirty tree is refused and nothing changes
    env.write("README.md", "changed\n");
    let head = env.git(&["rev-parse", "HEAD"]);
    let r = env.machine_code(2, &["apply", &run]);
    assert!(r.stderr.contains("uncommitted"), "{r}");
    assert_eq!(env.git(&["rev-parse", "HEAD"]), head);
    env.git(&["checkout", "-q", "README.md"]);
    env.machine_ok(&["apply", &run]);
    let log = env.git(&["log", "--format=%s", "-3"]);
    assert_eq!(
        log,
        "build: built\ndesign: designed greeting\nadd workflow\n"
    );
    assert_eq!(env.read("DESIGN.md"), "# greeting\n");
    assert!(!env.path(".codemachine/runs").exists());
    let tracked = env.git(&["ls-files"]);
    assert!(!tracked.contains(".codemachine/runs"), "{tracked}");
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    // squash onto a fresh branch
    env.git(&["checkout", "-q", "-b", "other", "HEAD~2"]);
    env.machine_ok(&["apply", &run, "--squash"]);
    let log = env.git(&["log", "--format=%s", "-2"]);
    assert!(log.starts_with("hello: run "), "{log}");
    assert_eq!(env.git(&["diff", "--stat", "main", "HEAD"]), "");
}

/// A run that adds `x.txt`, `y.txt`, `d/z.txt` and a line to README.md.
const MAKES_FILES: &str = r#"version = 1
name = "mk"
description = "adds files"

[defaults]
engine = "command"

[[steps]]
id = "make"
run = ["sh", "-c", "echo hi > x.txt; echo y > y.txt; mkdir -p d; echo z > d/z.txt; echo new >> README.md"]
"#;

#[test]
fn apply_refuses_files_in_the_way_as_a_user_mistake_and_changes_nothing() {
    let env = TestEnv::new();
    env.workflow("mk", MAKES_FILES);
    env.git(&["add", ".codemachine"]);
    env.git(&["commit", "-qm", "add workflow"]);
    env.machine_ok(&["run", "mk"]);
    let run = env.last_run();

    // Untracked files where the run puts files: git names only the first; all are listed.
    env.write("x.txt", "mine\n");
    env.write("y.txt", "also mine\n");
    env.write("d", "a file where the run wants a folder\n");
    let before = env.user_state();
    let r = env.machine_code(2, &["apply", &run]);
    let error = r.stderr.lines().find(|l| l.starts_with("error:"));
    assert_eq!(
        error,
        Some(
            format!("error: run {run} would overwrite untracked files in your checkout: d, x.txt, y.txt")
                .as_str()
        ),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("hint: nothing was changed; move or remove them, or commit them"),
        "{r}"
    );
    assert_eq!(env.user_state(), before);
    assert_eq!(env.read("x.txt"), "mine\n");
    assert_eq!(env.read("y.txt"), "also mine\n");
    assert_eq!(env.read("d"), "a file where the run wants a folder\n");
    for f in ["x.txt", "y.txt", "d"] {
        std::fs::remove_file(env.path(f)).expect("remove");
    }

    // A modified tracked file the run changes: `git status` shows it, so it is refused up front.
    env.write("README.md", "my edit\n");
    let before = env.user_state();
    let r = env.machine_code(2, &["apply", &run]);
    assert!(r.stderr.contains("README.md"), "{r}");
    assert_eq!(env.user_state(), before);
    assert_eq!(env.read("README.md"), "my edit\n");

    // The same change hidden from `git status` by --assume-unchanged: git's refusal is mapped.
    env.git(&["update-index", "--assume-unchanged", "README.md"]);
    let before = env.user_state();
    let r = env.machine_code(2, &["apply", &run]);
    assert!(
        r.stderr.contains(&format!(
            "error: run {run} would overwrite local changes in your checkout: README.md"
        )),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("hint: nothing was changed; commit or stash"),
        "{r}"
    );
    assert_eq!(env.user_state(), before);
    assert_eq!(env.read("README.md"), "my edit\n");
    env.git(&["update-index", "--no-assume-unchanged", "README.md"]);
    env.git(&["checkout", "-q", "README.md"]);

    // Out of the way, it applies.
    env.machine_ok(&["apply", &run]);
    assert_eq!(env.read("x.txt"), "hi\n");
    assert_eq!(env.read("d/z.txt"), "z\n");
}

#[test]
fn rm_removes_the_worktree_and_the_branch_only_when_asked() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    // another worktree of the user's whose folder is gone must survive (no global prune)
    let other = env.tmp.path().join("other-wt");
    env.git(&[
        "worktree",
        "add",
        "-q",
        other.to_str().expect("utf8"),
        "-b",
        "side",
    ]);
    std::fs::remove_dir_all(&other).expect("rm");
    env.machine_ok(&["rm", &run]);
    assert!(!env.worktree(&run).exists());
    assert!(env.runs().contains(&run));
    let list = env.git(&["worktree", "list", "--porcelain"]);
    assert!(list.contains("other-wt"), "{list}");
    env.machine_ok(&["resume", &run]);
    env.machine_ok(&["rm", &run[..10], "--branch"]);
    assert!(env.runs().is_empty());
    // What is left of the run goes with it; the pool stays for runs to come, until `gc`.
    let left: Vec<_> = std::fs::read_dir(env.worktree(&run).parent().expect("folder"))
        .expect("the repository's worktree folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["pool"]);
    env.machine_ok(&["gc"]);
    assert!(
        std::fs::read_dir(env.worktree(&run).parent().expect("folder"))
            .expect("the repository's worktree folder")
            .next()
            .is_none(),
        "gc empties the pool"
    );
}

#[test]
fn runs_resolve_by_unique_prefix() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.machine_ok(&["run", "hello"]);
    env.machine_ok(&["run", "hello"]);
    let runs = env.runs();
    assert_eq!(runs.len(), 2);
    let r = env.machine_code(2, &["status", &runs[0][..3]]);
    assert!(r.stderr.contains("matches 2 runs"), "{r}");
    env.machine_ok(&["status", &runs[1]]);
    let none = env.machine_code(2, &["log", "zzz"]);
    assert!(none.stderr.contains("no run matches"), "{none}");
    // no run given: the most recent one
    let log = env.machine_ok(&["log", "--json"]);
    assert!(log.stdout.contains(&runs[1]), "{log}");
}

#[test]
fn demo_runs_in_a_scratch_repository() {
    let env = TestEnv::new();
    let r = env.machine_ok(&["demo"]);
    assert!(
        r.stdout.contains("implement") && r.stdout.contains("test passed"),
        "{r}"
    );
    let dir = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("scratch repository: "))
        .expect("demo names its repository")
        .to_string();
    let out = std::process::Command::new("git")
        .args([
            "-C",
            &dir,
            "for-each-ref",
            "--format=%(refname)",
            "refs/heads/machine/",
        ])
        .output()
        .expect("git");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    std::fs::remove_dir_all(&dir).expect("clean up the scratch repository");
}

#[test]
fn outside_a_repository_is_a_usage_error() {
    let env = TestEnv::new();
    let mut cmd = env.machine_cmd(&["status"]);
    cmd.current_dir(env.tmp.path());
    let out = cmd.output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a git repository"));
}

#[test]
fn a_large_output_is_kept_compressed_and_bounded() {
    let env = TestEnv::new();
    // about 12 MiB of output: more than the log keeps (8 MiB head + 256 KiB tail)
    env.workflow(
        "loud",
        "version = 1\nname = \"loud\"\n[[steps]]\nid = \"loud\"\nrun = [\"sh\", \"-c\", \"yes 'a line of output that repeats' | head -n 400000; echo the-last-line\"]\n",
    );
    env.machine_ok(&["run", "loud"]);
    let run = env.last_run();
    let dir = format!("machine/{run}:.codemachine/runs/{run}/steps/01-loud");
    let listing = env.git(&[
        "ls-tree",
        "--name-only",
        &format!("machine/{run}"),
        &format!(".codemachine/runs/{run}/steps/01-loud/"),
    ]);
    assert!(
        listing.contains("output.log.gz") && !listing.contains("output.log\n"),
        "{listing}"
    );
    let record = env.git(&["show", &format!("{dir}/step.toml")]);
    assert!(record.contains("log_file = \"output.log.gz\""), "{record}");
    let size: u64 = env
        .git(&["cat-file", "-s", &format!("{dir}/output.log.gz")])
        .trim()
        .parse()
        .expect("size");
    assert!(size < 1 << 20, "compressed: {size} bytes");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' show '{dir}/output.log.gz' | gzip -dc | tail -n 2",
            env.repo.display()
        ))
        .output()
        .expect("gunzip");
    let tail = String::from_utf8_lossy(&out.stdout);
    assert!(tail.contains("the-last-line"), "the tail is kept: {tail}");
}

#[test]
fn records_are_committed_even_when_the_user_ignores_codemachine() {
    let env = TestEnv::new();
    env.write(".gitignore", ".codemachine/\n*.log\n");
    env.git(&["add", ".gitignore"]);
    env.git(&["commit", "-qm", "ignore"]);
    env.workflow("hello", HELLO);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    let files = env.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &format!("machine/{run}"),
        &format!(".codemachine/runs/{run}/"),
    ]);
    for f in [
        "run.toml",
        "state.toml",
        "steps/01-design/step.toml",
        "steps/01-design/output.log",
        "steps/02-build/output.log",
    ] {
        assert!(
            files.contains(&format!(".codemachine/runs/{run}/{f}")),
            "{f} missing from:\n{files}"
        );
    }
}

#[test]
fn runs_started_at_the_same_time_do_not_collide() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.machine_cmd(&["run", "hello"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let runs = env.runs();
    assert_eq!(runs.len(), 4);
    for run in &runs {
        assert_eq!(env.subjects(run).len(), 3, "{run}");
    }
    let st = env.machine_ok(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&st.stdout).expect("json");
    assert!(
        v.as_array()
            .expect("list")
            .iter()
            .all(|r| r["state"] == "completed"),
        "{v}"
    );
}

#[test]
fn a_full_disk_stops_the_run_with_a_clear_error_and_resume_finishes_it() {
    let env = TestEnv::new();
    env.workflow(
        "big",
        "version = 1\nname = \"big\"\n[[steps]]\nid = \"small\"\nrun = [\"sh\", \"-c\", \"echo small > small.txt\"]\n[[steps]]\nid = \"big\"\nrun = [\"sh\", \"-c\", \"yes 0123456789abcdef | head -c 400000; echo done > big.txt\"]\n",
    );
    // A file-size limit of 100 KiB makes writes fail with EFBIG, as on a full disk.
    // The hermetic environment of the harness, passed on through the shell.
    let hermetic = env.machine_cmd(&[]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -f 200; exec '{}' run big",
            crate::common::BIN
        ))
        .current_dir(&env.repo)
        .envs(
            hermetic
                .get_envs()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
        )
        .output()
        .expect("run under a size limit");
    let r = crate::common::Run::from(out);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("out of disk space") && r.stderr.contains("git machine resume"),
        "{r}"
    );
    let run = env.last_run();
    let st = env.machine_ok(&["status", "--json"]);
    assert!(st.stdout.contains("\"interrupted\""), "{st}");
    env.machine_ok(&["resume", &run]);
    let subjects = env.subjects(&run);
    assert_eq!(
        subjects.len(),
        3,
        "start, small, big once each: {subjects:?}"
    );
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:big.txt")]),
        "done\n"
    );
}

#[test]
fn a_step_cannot_damage_the_runs_own_files() {
    let env = TestEnv::new();
    env.workflow(
        "vandal",
        "version = 1\nname = \"vandal\"\n[[steps]]\nid = \"one\"\nrun = [\"sh\", \"-c\", \"echo one > one.txt\"]\n[[steps]]\nid = \"wreck\"\nrun = [\"sh\", \"-c\", \"rm -rf .codemachine; echo wrecked > wreck.txt\"]\n[[steps]]\nid = \"three\"\nrun = [\"sh\", \"-c\", \"echo three > three.txt\"]\n",
    );
    let r = env.machine_ok(&["run", "vandal"]);
    assert!(r.stderr.contains("kept as recorded"), "{r}");
    let run = env.last_run();
    let branch = format!("machine/{run}");
    let files = env.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &branch,
        &format!(".codemachine/runs/{run}/"),
    ]);
    for f in [
        "run.toml",
        "workflow.toml",
        "state.toml",
        "steps/01-one/step.toml",
        "steps/02-wreck/step.toml",
        "steps/03-three/step.toml",
    ] {
        assert!(
            files.contains(&format!(".codemachine/runs/{run}/{f}")),
            "{f} missing:\n{files}"
        );
    }
    assert_eq!(
        env.git(&["show", &format!("{branch}:wreck.txt")]),
        "wrecked\n"
    );
    // the worktree has the folder back, so it stays clean: clean, it went to the pool (a
    // worktree holding changes stays where it is)
    assert!(!env.worktree(&run).exists());
    let pool = env.worktree(&run).with_file_name("pool");
    let pooled = std::fs::read_dir(&pool)
        .expect("the pool")
        .flatten()
        .next()
        .expect("the run's worktree, pooled")
        .path();
    assert!(pooled
        .join(format!(".codemachine/runs/{run}/run.toml"))
        .exists());
    let log = env.machine_ok(&["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    assert_eq!(v["steps"].as_array().expect("steps").len(), 3);
}

#[test]
fn apply_twice_adds_nothing_and_dry_run_changes_nothing() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.git(&["add", ".codemachine"]);
    env.git(&["commit", "-qm", "add workflow"]);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    let head = env.git(&["rev-parse", "HEAD"]);
    let dry = env.machine_ok(&["apply", &run, "--dry-run"]);
    assert!(
        dry.stdout
            .contains("would apply: design: designed greeting"),
        "{dry}"
    );
    assert!(
        dry.stdout
            .contains("nothing was changed (--dry-run); 2 commits"),
        "{dry}"
    );
    assert_eq!(env.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    env.machine_ok(&["apply", &run]);
    let applied = env.git(&["rev-parse", "HEAD"]);
    let again = env.machine_ok(&["apply", &run]);
    assert!(
        again
            .stdout
            .contains("applied to main already; nothing to do"),
        "{again}"
    );
    assert!(
        again.stderr.contains("already applied: build: built"),
        "{again}"
    );
    assert_eq!(
        env.git(&["rev-parse", "HEAD"]),
        applied,
        "no empty duplicates"
    );
    // Squashed once, it is not squashed again.
    env.git(&["checkout", "-q", "-b", "other", head.trim()]);
    env.machine_ok(&["apply", &run, "--squash"]);
    let squashed = env.git(&["rev-parse", "HEAD"]);
    let again = env.machine_ok(&["apply", &run, "--squash"]);
    assert!(again.stdout.contains("already (squashed)"), "{again}");
    assert_eq!(env.git(&["rev-parse", "HEAD"]), squashed);
}

#[test]
fn apply_lands_only_completed_runs_unless_partial() {
    let env = TestEnv::new();
    env.workflow(
        "half",
        "version = 1\nname = \"half\"\n[[steps]]\nid = \"one\"\nrun = [\"sh\", \"-c\", \"echo one > one.txt\"]\n[[steps]]\nid = \"two\"\nrun = [\"false\"]\n",
    );
    env.machine_code(1, &["run", "half"]);
    let run = env.last_run();
    let head = env.git(&["rev-parse", "HEAD"]);
    let r = env.machine_code(2, &["apply", &run]);
    assert!(
        r.stderr.contains(&format!(
            "run {run} is not completed: it is failed at step `two`"
        )),
        "{r}"
    );
    assert!(r.stderr.contains("--partial"), "{r}");
    assert_eq!(env.git(&["rev-parse", "HEAD"]), head);
    env.machine_ok(&["apply", &run, "--partial"]);
    assert_eq!(env.read("one.txt"), "one\n");
}

#[test]
fn a_conflicting_apply_stops_like_a_cherry_pick_with_continue_and_abort() {
    let env = TestEnv::new();
    env.workflow(
        "edit",
        "version = 1\nname = \"edit\"\n[[steps]]\nid = \"first\"\nrun = [\"sh\", \"-c\", \"echo first > first.txt\"]\n[[steps]]\nid = \"edit\"\nrun = [\"sh\", \"-c\", \"echo from the run > README.md\"]\n[[steps]]\nid = \"last\"\nrun = [\"sh\", \"-c\", \"echo last > last.txt\"]\n",
    );
    env.machine_ok(&["run", "edit"]);
    let run = env.last_run();
    env.write("README.md", "from the person\n");
    env.git(&["commit", "-qam", "person's readme"]);
    let before = env.git(&["rev-parse", "HEAD"]);

    // --abort: the branch as it was, the conflict gone.
    let r = env.machine_code(1, &["apply", &run]);
    assert!(r.stderr.contains("applying `edit: ran sh` of run"), "{r}");
    assert!(r.stderr.contains("conflicts in: README.md"), "{r}");
    assert!(r.stderr.contains("git machine apply --continue"), "{r}");
    assert!(
        env.read("README.md").contains("<<<<<<<"),
        "git's markers in the checkout"
    );
    assert_eq!(
        env.read("first.txt"),
        "first\n",
        "the step before it landed"
    );
    let busy = env.machine_code(2, &["apply", &run]);
    assert!(busy.stderr.contains("waiting for a resolution"), "{busy}");
    env.machine_ok(&["apply", "--abort"]);
    assert_eq!(env.git(&["rev-parse", "HEAD"]), before);
    assert_eq!(env.read("README.md"), "from the person\n");
    assert_eq!(
        env.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );

    // --continue: refused while in conflict, then the resolution is the step, then the rest.
    env.machine_code(1, &["apply", &run]);
    let early = env.machine_code(2, &["apply", "--continue"]);
    assert!(
        early.stderr.contains("still in conflict: README.md"),
        "{early}"
    );
    env.write("README.md", "both\n");
    env.git(&["add", "README.md"]);
    let done = env.machine_ok(&["apply", "--continue"]);
    assert!(done.stdout.contains("edit: ran sh (resolved)"), "{done}");
    assert_eq!(
        env.git(&["log", "--format=%s", "-4"]),
        "last: ran sh\nedit: ran sh\nfirst: ran sh\nperson's readme\n"
    );
    assert_eq!(env.read("README.md"), "both\n");
    assert_eq!(env.read("last.txt"), "last\n");
    assert_eq!(
        env.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    let again = env.machine_ok(&["apply", &run]);
    assert!(again.stdout.contains("already; nothing to do"), "{again}");
    env.machine_code(2, &["apply", "--continue"]);
}

/// Hooks that write their name and arguments to `hooks.log` in the repository's git dir; the
/// ones named in `failing` exit 1.
fn log_hooks(env: &TestEnv, dir: &std::path::Path, failing: &[&str]) {
    std::fs::create_dir_all(dir).expect("hooks dir");
    let log = env.repo.join(".git/hooks.log");
    for hook in [
        "pre-commit",
        "prepare-commit-msg",
        "commit-msg",
        "post-commit",
    ] {
        let mut script = format!("#!/bin/sh\necho \"{hook} $*\" >> '{}'\n", log.display());
        if hook == "prepare-commit-msg" {
            script.push_str("echo 'Hooked: yes' >> \"$1\"\n");
        }
        if failing.contains(&hook) {
            script.push_str(&format!("echo \"{hook} says no\" >&2\nexit 1\n"));
        }
        let path = dir.join(hook);
        std::fs::write(&path, script).expect("hook");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    }
}

fn hooks_log(env: &TestEnv) -> String {
    let path = env.repo.join(".git/hooks.log");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(path);
    text
}

#[test]
fn apply_runs_the_hooks_git_cherry_pick_runs() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.git(&["add", ".codemachine"]);
    env.git(&["commit", "-qm", "add workflow"]);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    let hooks = env.tmp.path().join("hooks");
    env.git(&["config", "core.hooksPath", hooks.to_str().expect("utf-8")]);

    // A refusing prepare-commit-msg lands nothing.
    log_hooks(&env, &hooks, &["prepare-commit-msg"]);
    let head = env.git(&["rev-parse", "HEAD"]);
    let r = env.machine_code(1, &["apply", &run]);
    assert!(r.stderr.contains("prepare-commit-msg hook refused"), "{r}");
    assert_eq!(env.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    hooks_log(&env);

    // As `git cherry-pick` of two commits: prepare-commit-msg (which may change the message)
    // and post-commit for each; not pre-commit or commit-msg.
    log_hooks(&env, &hooks, &[]);
    env.machine_ok(&["apply", &run]);
    let msg = ".git/COMMIT_EDITMSG";
    assert_eq!(
        hooks_log(&env),
        format!("prepare-commit-msg {msg} message\nprepare-commit-msg {msg} message\npost-commit \npost-commit \n")
    );
    assert!(
        env.git(&["log", "-1", "--format=%B"])
            .contains("Hooked: yes"),
        "the hook's message is the commit's"
    );
    // A dry run runs none.
    env.git(&["checkout", "-q", "-b", "other", head.trim()]);
    env.machine_ok(&["apply", &run, "--dry-run"]);
    assert_eq!(hooks_log(&env), "");
}

#[test]
fn apply_continue_commits_through_git_commit_and_its_hooks() {
    let env = TestEnv::new();
    env.workflow(
        "edit",
        "version = 1\nname = \"edit\"\n[[steps]]\nid = \"edit\"\nrun = [\"sh\", \"-c\", \"echo from the run > README.md\"]\n",
    );
    env.machine_ok(&["run", "edit"]);
    let run = env.last_run();
    env.write("README.md", "from the person\n");
    env.git(&["commit", "-qam", "person's readme"]);
    let hooks = env.repo.join(".git/hooks");
    log_hooks(&env, &hooks, &["pre-commit"]);
    env.machine_code(1, &["apply", &run]);
    env.write("README.md", "both\n");
    env.git(&["add", "README.md"]);
    hooks_log(&env);
    // A pre-commit hook that refuses keeps the apply waiting.
    let r = env.machine_code(1, &["apply", "--continue"]);
    assert!(r.stderr.contains("pre-commit says no"), "{r}");
    assert!(r.stderr.contains("still waits"), "{r}");
    assert_eq!(hooks_log(&env), "pre-commit \n");
    log_hooks(&env, &hooks, &[]);
    let done = env.machine_ok(&["apply", "--continue"]);
    assert!(done.stdout.contains("(resolved)"), "{done}");
    let msg = ".git/COMMIT_EDITMSG";
    assert_eq!(
        hooks_log(&env),
        format!("pre-commit \nprepare-commit-msg {msg} message\ncommit-msg {msg}\npost-commit \n")
    );
    let body = env.git(&["log", "-1", "--format=%an%n%B"]);
    assert!(body.starts_with("git machine"), "the step's author: {body}");
    assert!(body.contains(&format!("Machine-Run: {run}")), "{body}");
}

#[test]
fn a_conflicting_squashed_apply_stops_for_continue_too() {
    let env = TestEnv::new();
    env.workflow(
        "edit",
        "version = 1\nname = \"edit\"\n[[steps]]\nid = \"first\"\nrun = [\"sh\", \"-c\", \"echo first > first.txt\"]\n[[steps]]\nid = \"edit\"\nrun = [\"sh\", \"-c\", \"echo from the run > README.md\"]\n",
    );
    env.machine_ok(&["run", "edit"]);
    let run = env.last_run();
    env.write("README.md", "from the person\n");
    env.git(&["commit", "-qam", "person's readme"]);
    let before = env.git(&["rev-parse", "HEAD"]);
    let dry = env.machine_code(1, &["apply", &run, "--squash", "--dry-run"]);
    assert!(
        dry.stderr
            .contains("would conflict with your branch in: README.md"),
        "{dry}"
    );
    assert_eq!(
        env.git(&["status", "--porcelain", "--untracked-files=no"]),
        ""
    );
    let r = env.machine_code(1, &["apply", &run, "--squash"]);
    assert!(r.stderr.contains("conflicts in: README.md"), "{r}");
    assert_eq!(
        env.git(&["rev-parse", "HEAD"]),
        before,
        "nothing landed before it"
    );
    env.write("README.md", "both\n");
    env.git(&["add", "README.md"]);
    env.machine_ok(&["apply", "--continue"]);
    assert_eq!(
        env.git(&["log", "--format=%s", "-2"]),
        "edit: run ".to_string() + &run + "\nperson's readme\n"
    );
    assert_eq!(env.read("first.txt"), "first\n");
    assert_eq!(env.read("README.md"), "both\n");
    // Squashed, it is applied: neither form adds it again.
    let again = env.machine_ok(&["apply", &run]);
    assert!(again.stdout.contains("already (squashed)"), "{again}");
    let again = env.machine_ok(&["apply", &run, "--squash"]);
    assert!(again.stdout.contains("already (squashed)"), "{again}");
}

#[test]
fn apply_squash_after_the_steps_landed_one_by_one_adds_nothing() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.git(&["add", ".codemachine"]);
    env.git(&["commit", "-qm", "add workflow"]);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    env.machine_ok(&["apply", &run]);
    let head = env.git(&["rev-parse", "HEAD"]);
    let again = env.machine_ok(&["apply", &run, "--squash"]);
    assert!(again.stdout.contains("already; nothing to do"), "{again}");
    assert_eq!(env.git(&["rev-parse", "HEAD"]), head);
}

#[test]
fn rm_keeps_a_persons_edits_and_takes_several_runs() {
    let env = TestEnv::new();
    env.workflow(
        "check",
        "version = 1\nname = \"check\"\n[[steps]]\nid = \"draft\"\nrun = [\"sh\", \"-c\", \"echo draft > d.txt\"]\ncheckpoint = true\n[[steps]]\nid = \"end\"\nrun = [\"true\"]\n",
    );
    env.machine_code(1, &["run", "check"]);
    let paused = env.last_run();
    env.workflow("hello", HELLO);
    env.machine_ok(&["run", "hello"]);
    let done = env
        .runs()
        .into_iter()
        .find(|r| *r != paused)
        .expect("the second run");
    let status = env.machine_ok(&["status", &paused, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    let wt = v["worktree"].as_str().expect("a worktree").to_string();
    std::fs::write(format!("{wt}/d.txt"), "my review edits\n").expect("edit");

    // Refused, naming the change; nothing removed, not even the other run.
    let r = env.machine_code(2, &["rm", &done, &paused]);
    assert!(r.stderr.contains("holds uncommitted changes"), "{r}");
    assert!(r.stderr.contains("d.txt"), "{r}");
    assert!(std::path::Path::new(&wt).join("d.txt").exists());
    // A mistake in one name removes none.
    let r = env.machine_code(2, &["rm", &done, "no-such-run"]);
    assert!(!r.stdout.contains("removed"), "{r}");

    // --force: removed, the edits kept under the run's attempts, even with --branch.
    let r = env.machine_ok(&["rm", "--force", "--branch", &done, &paused]);
    assert!(
        r.stdout.contains(&format!("deleted branch machine/{done}")),
        "{r}"
    );
    assert!(
        r.stdout
            .contains(&format!("deleted branch machine/{paused}")),
        "{r}"
    );
    assert!(!std::path::Path::new(&wt).exists());
    let kept = format!("refs/machine/attempts/{paused}/rm-removed");
    assert!(r.stderr.contains(&kept), "{r}");
    assert_eq!(
        env.git(&["show", &format!("{kept}:d.txt")]),
        "my review edits\n"
    );
}

#[test]
fn gc_removes_what_finished_runs_hold_and_keeps_what_can_be_resumed() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.workflow(
        "fails",
        "version = 1\nname = \"fails\"\n[[steps]]\nid = \"no\"\nrun = [\"false\"]\n",
    );
    // The failed run first: a run started later would take the completed one's pooled worktree.
    env.machine_code(1, &["run", "fails"]);
    let failed = env.last_run();
    env.machine_ok(&["run", "hello"]);
    let done = env
        .runs()
        .into_iter()
        .find(|r| *r != failed)
        .expect("the completed run");
    let worktree = |run: &str| {
        let s = env.machine_ok(&["status", run, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&s.stdout).expect("json");
        std::path::PathBuf::from(v["worktree"].as_str().expect("a worktree"))
    };
    let (done_wt, failed_wt) = (worktree(&done), worktree(&failed));
    // The completed run's worktree went to the pool; the failed one's stays to be resumed.
    assert!(!done_wt.exists() && failed_wt.exists());
    let pool = done_wt.with_file_name("pool");
    let pooled = || std::fs::read_dir(&pool).map_or(0, |d| d.count());
    assert_eq!(pooled(), 1);

    // Runs here were committed on 2026-01-01: not a thousand days ago.
    let young = env.machine_ok(&["gc", "--older-than", "1000d"]);
    assert!(
        young
            .stderr
            .contains(&format!("kept {done}: it finished too recently")),
        "{young}"
    );
    // The pooled worktree entered the pool moments ago: kept too.
    assert!(!young.stdout.contains("pooled"), "{young}");
    assert_eq!(pooled(), 1);
    let dry = env.machine_ok(&["gc", "--dry-run"]);
    assert!(
        dry.stdout
            .contains(&format!("would remove the worktree and logs of run {done}")),
        "{dry}"
    );
    assert!(
        dry.stdout.contains("would remove 1 pooled worktree"),
        "{dry}"
    );
    assert_eq!(pooled(), 1, "--dry-run removes nothing");

    let r = env.machine_ok(&["gc"]);
    assert!(
        r.stdout
            .contains(&format!("removed the worktree and logs of run {done}")),
        "{r}"
    );
    assert!(
        r.stderr
            .contains(&format!("kept {failed}: it is failed and can be resumed")),
        "{r}"
    );
    assert!(r.stdout.contains("the worktree cache "), "{r}");
    assert!(r.stdout.contains(" MiB"), "{r}");
    assert!(r.stdout.contains("removed 1 pooled worktree"), "{r}");
    assert_eq!(pooled(), 0, "gc empties the pool");
    assert!(failed_wt.exists());
    // Its history stays, and a rewind makes its worktree again.
    env.machine_ok(&["log", &done]);
    env.machine_ok(&["apply", &done, "--dry-run"]);
    let bad = env.machine_code(2, &["gc", "--older-than", "soon"]);
    assert!(bad.stderr.contains("soon"), "{bad}");
}

#[test]
fn init_scaffolds_a_starter_that_validates_and_never_overwrites() {
    let env = TestEnv::new();
    // No agent CLI here (the test's PATH has none): a clear error, nothing written.
    let mut cmd = env.machine_cmd(&["init"]);
    cmd.env("PATH", "/usr/bin:/bin");
    let r = crate::common::Run::from(cmd.output().expect("init"));
    assert_eq!(r.code, 2, "{r}");
    assert!(r.stderr.contains("no agent CLI is installed"), "{r}");
    assert!(!env.path(".codemachine").exists());

    let mut cmd = env.machine_cmd(&["init"]);
    cmd.env("MACHINE_CODEX_BIN", "/bin/true");
    let r = crate::common::Run::from(cmd.output().expect("init"));
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stdout
            .contains("wrote .codemachine/workflows/starter.toml"),
        "{r}"
    );
    assert!(r.stdout.contains("uses codex"), "{r}");
    let v = env.machine_ok(&["validate", "starter"]);
    assert!(v.stdout.contains("ok"), "{v}");
    assert!(env
        .read(".codemachine/workflows/starter.toml")
        .contains("engine = \"codex\""));

    env.write(
        ".codemachine/workflows/prompts/plan.md",
        "my own plan prompt\n",
    );
    std::fs::remove_file(env.path(".codemachine/README.md")).expect("rm");
    let r = env.machine_ok(&["init", "--engine", "claude"]);
    assert!(r.stdout.contains("wrote .codemachine/README.md"), "{r}");
    assert!(
        r.stderr
            .contains("kept .codemachine/workflows/prompts/plan.md"),
        "{r}"
    );
    assert_eq!(
        env.read(".codemachine/workflows/prompts/plan.md"),
        "my own plan prompt\n"
    );
    assert!(env
        .read(".codemachine/workflows/starter.toml")
        .contains("engine = \"codex\""));
    let again = env.machine_ok(&["init"]);
    assert!(again.stdout.contains("set up already"), "{again}");
    let bad = env.machine_code(2, &["init", "--engine", "nope"]);
    assert!(bad.stderr.contains("unknown agent engine `nope`"), "{bad}");
}

#[test]
fn validate_warns_when_the_name_is_not_the_file_name() {
    let env = TestEnv::new();
    env.workflow(
        "ship",
        &HELLO.replace("name = \"hello\"", "name = \"deploy\""),
    );
    let r = env.machine_ok(&["validate", "ship"]);
    assert!(r.stdout.contains("ok — workflow `deploy`"), "{r}");
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("differs from the file name `ship`"),
        "{r}"
    );
    env.workflow("hello", HELLO);
    let r = env.machine_ok(&["validate", "hello"]);
    assert!(!r.stderr.contains("warning"), "{r}");
}

#[test]
fn new_writes_a_workflow_that_validates_from_a_built_in_or_from_answers() {
    let env = TestEnv::new();
    let r = env.machine_ok(&["new", "mine", "--from", "test-fix"]);
    assert!(
        r.stdout.contains("wrote .codemachine/workflows/mine.toml"),
        "{r}"
    );
    assert!(env
        .read(".codemachine/workflows/mine.toml")
        .contains("name = \"mine\""));
    let v = env.machine_ok(&["validate", "mine"]);
    assert!(
        v.stdout.contains("ok — workflow `mine`") && !v.stderr.contains("warning"),
        "{v}"
    );
    // Never overwrites; a bad built-in or name creates nothing; no terminal, no questions.
    let again = env.machine_code(2, &["new", "mine", "--from", "demo"]);
    assert!(again.stderr.contains("exists already"), "{again}");
    let bad = env.machine_code(2, &["new", "other", "--from", "nope"]);
    assert!(bad.stderr.contains("no built-in workflow `nope`"), "{bad}");
    env.machine_code(2, &["new", "Bad Name"]);
    let no_tty = env.machine_code(2, &["new", "asked"]);
    assert!(
        no_tty.stderr.contains("asks its questions on a terminal"),
        "{no_tty}"
    );
    assert!(!env.path(".codemachine/workflows/asked.toml").exists());

    // On a terminal: the answers become a workflow that validates.
    let mut view = crate::pty::OnPty::spawn(&env, &["new", "asked"]);
    let mut reply = |question: &str, text: &str| {
        assert!(
            crate::common::wait_until(std::time::Duration::from_secs(20), || view
                .text()
                .contains(question)),
            "never asked {question:?}\n{}",
            view.text()
        );
        view.line(text);
    };
    reply("What is the workflow for?", "ship small fixes");
    reply("Which agent engine", "codex");
    reply("Its steps", "plan, fix, check-in");
    reply("What should `plan` do?", "Plan the fix.");
    reply("(interactive)? y/n", "y");
    reply("What should `fix` do?", "");
    reply("`fix` yourself (interactive)", "n");
    reply("What should `check-in` do?", "Review it.");
    reply("`check-in` yourself (interactive)", "");
    reply("A command that must pass", "cargo test");
    reply("Pause for your review", "plan");
    assert_eq!(
        view.wait(std::time::Duration::from_secs(20)),
        Some(0),
        "{}",
        view.text()
    );
    let text = env.read(".codemachine/workflows/asked.toml");
    for part in [
        "description = \"ship small fixes\"",
        "engine = \"codex\"",
        "mode = \"interactive\"",
        "checkpoint = true",
        "prompt = \"Do the fix step.\"",
        "loop = { to = \"plan\", max = 3, until = { run = [\"sh\", \"-c\", \"cargo test\"] } }",
    ] {
        assert!(text.contains(part), "{part:?} not in:\n{text}");
    }
    env.machine_ok(&["validate", "asked"]);
}

#[test]
fn validate_reports_every_steps_mistake_at_once() {
    let env = TestEnv::new();
    env.workflow(
        "many",
        "version = 1\nname = \"many\"\n[[steps]]\nid = \"a\"\nengine = \"claude\"\n[[steps]]\nid = \"b\"\nrun = [\"true\"]\ntimeout = \"soon\"\n[[steps]]\nid = \"c\"\nrun = [\"true\"]\ncontext = [{ from = \"nope\" }]\n",
    );
    let r = env.machine_code(2, &["validate", "many"]);
    assert_eq!(
        r.stderr.matches("error: invalid workflow").count(),
        3,
        "{r}"
    );
    assert_eq!(r.stderr.matches("hint:").count(), 3, "{r}");
    for place in ["many.toml:3:1:", "many.toml:9:11:", "many.toml:13:21:"] {
        assert!(r.stderr.contains(place), "{place} missing\n{r}");
    }
    let r = env.machine_code(2, &["run", "many"]);
    assert_eq!(
        r.stderr.matches("error: invalid workflow").count(),
        3,
        "{r}"
    );
    assert!(env.runs().is_empty(), "nothing created");
}

#[test]
fn validate_render_shows_each_steps_prompt_and_context_sizes() {
    let env = TestEnv::new();
    env.write("docs/a.md", "12345\n");
    env.write("docs/b.md", "1234\n");
    env.workflow(
        "r",
        "version = 1\nname = \"r\"\n[vars.topic]\nhelp = \"t\"\n[vars.who]\nhelp = \"w\"\n[[steps]]\nid = \"write\"\nengine = \"claude\"\nprompt = \"Write about {topic} for {who}.\"\ncontext = [{ files = \"docs/*.md\" }, { file = \"NOPE.md\" }]\n[[steps]]\nid = \"echo\"\nrun = [\"echo\", \"{topic}\"]\ncontext = [{ from = \"write\" }]\n",
    );
    let r = env.machine_ok(&["validate", "r", "--render", "--var", "topic=tides"]);
    assert!(r.stdout.contains("── write (claude)"), "{r}");
    assert!(r.stdout.contains("  Write about tides for {who}."), "{r}");
    assert!(
        r.stdout
            .contains("context: files `docs/*.md`: 2 here, 11 bytes"),
        "{r}"
    );
    assert!(
        r.stdout
            .contains("context: file `NOPE.md`: not in this checkout"),
        "{r}"
    );
    assert!(r.stdout.contains("run: [\"echo\", \"tides\"]"), "{r}");
    assert!(
        r.stdout
            .contains("context: the result of step `write` (at run time)"),
        "{r}"
    );
    assert!(env.runs().is_empty(), "a dry run creates nothing");
}

#[test]
fn apply_signs_its_commits_when_commit_gpgsign_says_so() {
    let env = TestEnv::new();
    env.workflow("hello", HELLO);
    env.git(&["add", ".codemachine"]);
    env.git(&["commit", "-qm", "add workflow"]);
    env.machine_ok(&["run", "hello"]);
    let run = env.last_run();
    // A stand-in for gpg speaking its status protocol, as git calls it.
    let gpg = env.tmp.path().join("fake-gpg");
    std::fs::write(
        &gpg,
        "#!/bin/sh\ncat > /dev/null\necho '[GNUPG:] SIG_CREATED D 1 8 00 1 FAKE' >&2\nprintf -- '-----BEGIN PGP SIGNATURE-----\\n\\nfake\\n-----END PGP SIGNATURE-----\\n'\n",
    )
    .expect("fake gpg");
    std::fs::set_permissions(&gpg, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    env.git(&["config", "commit.gpgsign", "true"]);
    env.git(&["config", "gpg.program", gpg.to_str().expect("utf-8")]);
    env.git(&["config", "user.signingkey", "FAKE"]);
    env.machine_ok(&["apply", &run]);
    for rev in ["HEAD", "HEAD~1"] {
        let raw = env.git(&["cat-file", "commit", rev]);
        assert!(
            raw.contains("gpgsig -----BEGIN PGP SIGNATURE-----"),
            "{rev} unsigned:\n{raw}"
        );
    }
    assert!(
        env.git(&["log", "-1", "--format=%an"])
            .starts_with("git machine"),
        "the step's author is kept"
    );
    // A signer that fails stops the apply with git's own message, and nothing lands.
    std::fs::write(&gpg, "#!/bin/sh\necho 'no secret key' >&2\nexit 2\n").expect("broken gpg");
    env.git(&["checkout", "-q", "-b", "other", "HEAD~2"]);
    let head = env.git(&["rev-parse", "HEAD"]);
    let r = env.machine(&["apply", &run]);
    assert_ne!(r.code, 0, "{r}");
    assert!(r.stderr.contains("gpg"), "{r}");
    assert_eq!(env.git(&["rev-parse", "HEAD"]), head);
}

/// A git machine killed while creating a run's branch leaves `<branch>.lock` of a run that
/// never existed (found by the random kills of crash.rs), and one killed while writing an
/// object its temporary file: `gc` removes those an hour old, and leaves a younger lock alone
/// (a live process may be creating that branch now).
#[test]
fn gc_removes_what_a_kill_left_in_the_git_dir_once_it_is_old() {
    let env = TestEnv::new();
    let git = env.common_dir();
    let dir = git.join("refs/heads/machine");
    std::fs::create_dir_all(&dir).expect("refs dir");
    let (old, young) = (
        dir.join("261130-101010-abc.lock"),
        dir.join("261130-101011-abd.lock"),
    );
    let temp = git.join("objects/ab/tmp_obj_killed");
    std::fs::create_dir_all(temp.parent().expect("a parent")).expect("objects dir");
    for f in [&old, &young, &temp] {
        std::fs::write(f, "").expect("write");
    }
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for f in [&old, &temp] {
        let file = std::fs::File::options().append(true).open(f).expect("open");
        file.set_modified(past).expect("age");
    }
    let dry = env.machine_ok(&["gc", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("would remove 1 ref lock file(s) a killed process left"),
        "{dry}"
    );
    assert!(old.exists(), "--dry-run removes nothing");
    let r = env.machine_ok(&["gc"]);
    assert!(
        r.stdout
            .contains("removed 1 ref lock file(s) a killed process left"),
        "{r}"
    );
    assert!(
        r.stdout.contains("removed 1 temporary object file(s)"),
        "{r}"
    );
    assert!(!old.exists() && !temp.exists());
    assert!(
        young.exists(),
        "a lock younger than an hour may be a live process's"
    );
}
