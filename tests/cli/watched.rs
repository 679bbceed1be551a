//! Stagings that go by a watch of the worktree's folders (`machine.watch`): the same commits
//! as stagings that read every folder, without `git add -A`. Small worktrees are staged inside
//! git machine, watched or not (no git process at all); `src/git/scan.rs` and the watch's own
//! tests hold both to `git add -A`.

use crate::common::TestEnv;

/// Steps that change a worktree in the ways a watch must follow: a folder renamed and then
/// written in, a folder of ignored files that later gets a file git sees, a file the step
/// untracks with git itself, an ignore rule changed so an old ignored file counts.
const STEPS: &str = r#"version = 1
name = "changes"
[[steps]]
id = "one"
run = ["sh", "-c", "mkdir -p lib/deep && echo a > lib/deep/a.txt && mkdir objs && echo o > objs/x.o && echo l > old.log && echo e >> README.md"]
[[steps]]
id = "two"
run = ["sh", "-c", "mv lib src && echo b > src/deep/b.txt && git rm -q --cached README.md"]
[[steps]]
id = "three"
run = ["sh", "-c", "echo n > objs/notes.txt && echo c >> src/deep/a.txt && rm -r src/deep/b.txt"]
[[steps]]
id = "four"
run = ["sh", "-c", "printf '*.o\\n' > .gitignore"]
"#;

/// Run `git machine run <workflow>` in `env` (it must succeed); every git command it ran, as
/// `GIT_TRACE` wrote them.
fn run_traced(env: &TestEnv, workflow: &str) -> String {
    run_traced_with(env, workflow, &[])
}

/// [`run_traced`] with environment variables `vars` set for git machine.
fn run_traced_with(env: &TestEnv, workflow: &str, vars: &[(&str, &str)]) -> String {
    let trace = env.tmp.path().join(format!("trace-{workflow}"));
    let out = env
        .machine_cmd(&["run", workflow])
        .env("GIT_TRACE", &trace)
        .envs(vars.iter().copied())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(trace).unwrap_or_default()
}

/// A repository with `.gitignore` ignoring `*.o` and `*.log`, `machine.watch` as given, that
/// ran STEPS: its run's commits, one `ls-tree -r` a step, and the git commands it ran.
fn ran_with(watch: &str) -> (Vec<String>, String) {
    let env = TestEnv::new();
    env.write(".gitignore", "*.o\n*.log\n");
    env.git(&["add", ".gitignore"]);
    env.git(&["commit", "-q", "-m", "ignore"]);
    env.git(&["config", "machine.watch", watch]);
    env.workflow("changes", STEPS);
    let git = run_traced(&env, "changes");
    let run = env.last_run();
    let trees = (0..4)
        .rev()
        .map(|back| {
            env.git(&["ls-tree", "-r", &format!("machine/{run}~{back}")])
                .lines()
                .filter(|l| !l.contains("\t.codemachine/"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        })
        .collect();
    (trees, git)
}

#[test]
fn a_watched_run_commits_what_a_run_reading_every_folder_commits() {
    let (watched, watched_git) = ran_with("true");
    let (scanned, scanned_git) = ran_with("false");
    for (step, (w, s)) in watched.iter().zip(&scanned).enumerate() {
        assert_eq!(w, s, "step {} commits the same tree", step + 1);
    }
    let last = &watched[3];
    assert!(
        last.contains("\told.log\n"),
        "un-ignored by step four:\n{last}"
    );
    assert!(
        last.contains("\tobjs/notes.txt\n") && !last.contains("objs/x.o"),
        "{last}"
    );
    assert!(
        last.contains("\tsrc/deep/a.txt\n") && !last.contains("lib/"),
        "{last}"
    );
    assert!(
        last.contains("\tREADME.md\n"),
        "untracked by git rm --cached, added back"
    );
    // A small index is staged inside git machine, watched or not: no git process stages;
    // step four changed .gitignore, which ends the watch, and that staging reads everything.
    for trace in [&watched_git, &scanned_git] {
        for command in ["git add", "git update-index", "git ls-files"] {
            assert_eq!(count(trace, command), 0, "{command}\n{trace}");
        }
    }
}

/// How many of the git commands in `trace` start with `command` (`git add -A`).
fn count(trace: &str, command: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains(&format!("built-in: {command}")))
        .count()
}

/// By default a small worktree's stagings start no git process: the step's commit holds its
/// file all the same.
#[test]
fn by_default_a_small_worktree_is_staged_inside_and_a_bad_setting_is_refused() {
    let env = TestEnv::new();
    env.workflow(
        "one",
        "version = 1\nname = \"one\"\n[[steps]]\nid = \"s\"\nrun = [\"sh\", \"-c\", \"echo x > x.txt\"]\n",
    );
    let git = run_traced(&env, "one");
    for command in ["git add", "git update-index", "git ls-files"] {
        assert_eq!(count(&git, command), 0, "{command}\n{git}");
    }
    let run = env.last_run();
    let files = env.git(&["ls-tree", "--name-only", &format!("machine/{run}")]);
    assert!(files.contains("x.txt\n"), "{files}");
    env.git(&["config", "machine.watch", "sometimes"]);
    let r = env.machine_code(2, &["run", "one"]);
    assert!(
        r.stderr
            .contains("machine.watch is `sometimes`, not auto, true or false"),
        "{r}"
    );
    assert_eq!(env.runs().len(), 1, "the refused run was not created");
}

/// A worktree of ~2,500 files (an index over 160 KiB) is staged by git: by default by the
/// watch, with `git update-index` of what was heard, and no `git add -A`.
#[test]
fn by_default_a_big_worktree_is_watched() {
    let env = TestEnv::new();
    for d in 0..25 {
        for f in 0..100 {
            env.write(&format!("d{d:02}/file-{f:03}.txt"), &format!("{d} {f}\n"));
        }
    }
    env.git(&["add", "-A"]);
    env.git(&["commit", "-q", "-m", "many files"]);
    env.workflow(
        "one",
        "version = 1\nname = \"one\"\n[[steps]]\nid = \"s\"\nrun = [\"sh\", \"-c\", \"echo x > d07/new.txt && echo y >> d03/file-001.txt\"]\n",
    );
    let git = run_traced(&env, "one");
    assert_eq!(count(&git, "git add -A"), 0, "watched, not scanned\n{git}");
    assert!(count(&git, "git update-index") > 0, "{git}");
    let run = env.last_run();
    let changed = env.git(&[
        "diff",
        "--name-only",
        &format!("machine/{run}~1"),
        &format!("machine/{run}"),
        "--",
        "d03",
        "d07",
    ]);
    assert_eq!(changed, "d03/file-001.txt\nd07/new.txt\n");
}

/// A test repository with `path` holding `text` committed, and `machine.watch` set to `watch`.
fn committed_with(watch: &str, path: &str, text: &str) -> TestEnv {
    let env = TestEnv::new();
    env.write(path, text);
    env.git(&["add", path]);
    env.git(&["commit", "-q", "-m", path]);
    env.git(&["config", "machine.watch", watch]);
    env
}

/// A user's rule that ignores `*.log` does not keep git machine's own `output.log` out of a
/// step's record: no step is said to have changed git machine's files, watched or not.
#[test]
fn an_ignore_rule_matching_record_files_does_not_trip_the_record_check() {
    for watch in ["true", "false"] {
        let env = committed_with(watch, ".gitignore", "*.log\n");
        env.workflow(
            "two",
            "version = 1\nname = \"two\"\n[[steps]]\nid = \"a\"\nrun = [\"sh\", \"-c\", \"echo a > a.txt\"]\n[[steps]]\nid = \"b\"\nrun = [\"sh\", \"-c\", \"echo b > b.txt\"]\n",
        );
        let r = env.machine_ok(&["run", "two"]);
        assert!(
            !r.stderr.contains("git machine's own files"),
            "watch {watch}\n{r}"
        );
        let run = env.last_run();
        let files = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")]);
        assert!(
            files.contains("/steps/02-b/output.log\n"),
            "watch {watch}\n{files}"
        );
    }
}

/// A file under a clean filter the user configured is stored as git stores it (filtered):
/// libgit2 runs no filter driver, so that staging is git's, watched or not.
#[test]
fn a_file_under_a_configured_filter_is_committed_filtered() {
    for watch in ["true", "false"] {
        let env = committed_with(watch, ".gitattributes", "*.up filter=upper\n");
        env.git(&["config", "filter.upper.clean", "tr a-z A-Z"]);
        env.git(&["config", "filter.upper.smudge", "cat"]);
        env.workflow(
            "one",
            "version = 1\nname = \"one\"\n[[steps]]\nid = \"s\"\nrun = [\"sh\", \"-c\", \"echo lower > x.up && echo plain > y.txt\"]\n",
        );
        let git = run_traced(&env, "one");
        let run = env.last_run();
        let show = |path: &str| env.git(&["show", &format!("machine/{run}:{path}")]);
        assert_eq!(show("x.up"), "LOWER\n", "watch {watch}");
        assert_eq!(show("y.txt"), "plain\n", "watch {watch}");
        assert!(
            count(&git, "git add") + count(&git, "git update-index") > 0,
            "git staged it, watch {watch}\n{git}"
        );
    }
}

/// `git -c` settings reach git, not libgit2: with any, git stages. `core.autocrlf=true` given
/// that way stores a new file's CRLF line endings as LF, as `git add` does.
#[test]
fn settings_given_with_git_dash_c_stage_as_git_would() {
    for watch in ["true", "false"] {
        let env = TestEnv::new();
        env.git(&["config", "machine.watch", watch]);
        env.workflow(
            "crlf",
            "version = 1\nname = \"crlf\"\n[[steps]]\nid = \"s\"\nrun = [\"sh\", \"-c\", \"printf 'one\\\\r\\\\ntwo\\\\r\\\\n' > dos.txt\"]\n",
        );
        run_traced_with(
            &env,
            "crlf",
            &[("GIT_CONFIG_PARAMETERS", "'core.autocrlf'='true'")],
        );
        let run = env.last_run();
        assert_eq!(
            env.git(&["cat-file", "-p", &format!("machine/{run}:dos.txt")]),
            "one\ntwo\n",
            "watch {watch}"
        );
    }
}
