//! The worktree pool through the binary: a finished run's worktree is reused by the next run
//! and by a group's members, switched to exactly their base; bounds, `gc`, a kill while
//! switching, and a paused run's edits.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use crate::common::TestEnv;

/// The pool folder of the test's one repository.
fn pool_dir(env: &TestEnv) -> PathBuf {
    env.worktree("x")
        .parent()
        .expect("the repository's worktree folder")
        .join("pool")
}

/// The pooled worktrees, oldest first.
fn pooled(env: &TestEnv) -> Vec<PathBuf> {
    let mut list: Vec<PathBuf> = std::fs::read_dir(pool_dir(env))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    list.sort();
    list
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// The run that `f` created.
fn new_run(env: &TestEnv, f: impl FnOnce()) -> String {
    let before = env.runs();
    f();
    let mut new: Vec<String> = env
        .runs()
        .into_iter()
        .filter(|r| !before.contains(r))
        .collect();
    assert_eq!(new.len(), 1, "one new run: {new:?}");
    new.remove(0)
}

/// `git machine run <workflow>`, killed at the crash window `point` (`<name>:<pass>`).
fn run_killed_at(env: &TestEnv, workflow: &str, point: &str) {
    let killed = env
        .machine_cmd(&["run", workflow])
        .env("MACHINE_TEST_CRASH_AT", point)
        .output()
        .expect("spawn");
    assert_eq!(killed.status.signal(), Some(libc::SIGKILL), "{killed:?}");
}

/// A repository with tracked files, an ignore rule for `build/`, and a workflow `leave` whose
/// step adds a tracked file and leaves an ignored one.
fn repo_with_leftovers() -> TestEnv {
    let env = TestEnv::new();
    env.write("keep.txt", "kept\n");
    env.write("a.txt", "one\n");
    env.write("old.txt", "old\n");
    env.write(".gitignore", "build/\n");
    env.git(&["add", "."]);
    env.git(&["commit", "-qm", "files"]);
    env.workflow(
        "leave",
        "version = 1\nname = \"leave\"\n[[steps]]\nid = \"mess\"\nrun = [\"sh\", \"-c\", \"echo made > made.txt; mkdir -p build; echo obj > build/out.o\"]\n",
    );
    env
}

/// A workflow whose one step writes, outside the worktree, where it ran, the inode of
/// `keep.txt` and every file it sees (git's own excepted).
fn look_workflow(env: &TestEnv, out: &Path) {
    env.workflow(
        "look",
        &format!(
            "version = 1\nname = \"look\"\n[[steps]]\nid = \"look\"\nrun = [\"sh\", \"-c\", \"pwd > {o}.pwd; stat -c %i keep.txt > {o}.ino; find . -name .git -prune -o -type f -print | sed 's|^./||' | sort > {o}.files\"]\n",
            o = out.display()
        ),
    );
}

#[test]
fn a_second_run_takes_the_first_runs_worktree_holding_exactly_its_base() {
    let env = repo_with_leftovers();
    let first = new_run(&env, || {
        env.machine_ok(&["run", "leave"]);
    });
    assert!(
        !env.worktree(&first).exists(),
        "a completed run's worktree goes to the pool"
    );
    let pool = pooled(&env);
    assert_eq!(pool.len(), 1, "{pool:?}");
    assert!(
        !pool[0].join("build").exists(),
        "ignored files are cleaned when pooled"
    );
    let pooled_inode = inode(&pool[0].join("keep.txt"));

    // A new base: one file changed, one deleted.
    env.write("a.txt", "two\n");
    env.git(&["rm", "-q", "old.txt"]);
    env.git(&["commit", "-qam", "new base"]);
    let out = env.tmp.path().join("look");
    look_workflow(&env, &out);
    let second = new_run(&env, || {
        env.machine_ok(&["run", "look"]);
    });
    let read =
        |ext: &str| std::fs::read_to_string(out.with_extension(ext)).expect("the step's notes");
    assert_eq!(
        read("pwd").trim(),
        env.worktree(&second).display().to_string()
    );
    assert_eq!(
        read("ino").trim(),
        pooled_inode.to_string(),
        "an unchanged file was not written again"
    );
    let start = format!("machine/{second}~1");
    let expected = env.git(&["ls-tree", "-r", "--name-only", &start]);
    assert_eq!(
        read("files"),
        expected,
        "exactly the base's tree: no leftovers"
    );
    assert!(!read("files").contains("made.txt") && !read("files").contains("old.txt"));
    assert_eq!(
        env.git(&["show", &format!("machine/{second}:a.txt")]),
        "two\n"
    );
    // Only the step's record changed in its commit: nothing of the first run came along.
    let changed = env.git(&[
        "diff",
        "--name-only",
        &start,
        &format!("machine/{second}"),
        "--",
        ".",
        ":(exclude).codemachine",
    ]);
    assert_eq!(changed, "");
    // Back in the pool, and git knows it there.
    let pool = pooled(&env);
    assert_eq!(pool.len(), 1, "{pool:?}");
    let list = env.git(&["worktree", "list", "--porcelain"]);
    assert!(list.contains(&pool[0].display().to_string()), "{list}");
    assert!(!list.contains(&first) && !list.contains(&second), "{list}");
    assert_eq!(
        env.git(&["status", "--porcelain"]).trim(),
        "?? .codemachine/"
    );
}

const GROUP: &str = r#"version = 1
name = "group"
[[steps]]
id = "first"
run = ["true"]
[[steps]]
id = "one"
group = "g"
run = ["sh", "-c", "stat -c %i README.md > OUT.one; pwd > OUT.one.pwd; git ls-files -o > OUT.one.extra; echo 1 > one.txt"]
[[steps]]
id = "two"
group = "g"
run = ["sh", "-c", "stat -c %i README.md > OUT.two; pwd > OUT.two.pwd; git ls-files -o > OUT.two.extra; echo 2 > two.txt"]
[[steps]]
id = "three"
group = "g"
run = ["sh", "-c", "stat -c %i README.md > OUT.three; pwd > OUT.three.pwd; git ls-files -o > OUT.three.extra; echo 3 > three.txt"]
"#;

fn group_workflow(env: &TestEnv, out: &Path) {
    env.workflow("group", &GROUP.replace("OUT", &out.display().to_string()));
}

#[test]
fn a_groups_members_come_from_the_pool() {
    let env = TestEnv::new();
    let out = env.tmp.path().join("member");
    group_workflow(&env, &out);
    // The first run warms the pool: its three members and itself.
    env.machine_ok(&["run", "group"]);
    let pool = pooled(&env);
    assert_eq!(pool.len(), 4, "{pool:?}");
    let inodes: Vec<u64> = pool.iter().map(|p| inode(&p.join("README.md"))).collect();

    let run = new_run(&env, || {
        env.machine_ok(&["run", "group"]);
    });
    for member in ["one", "two", "three"] {
        let ino: u64 = std::fs::read_to_string(out.with_extension(member))
            .expect("the member's note")
            .trim()
            .parse()
            .expect("an inode");
        assert!(
            inodes.contains(&ino),
            "{member} got a fresh checkout: {ino} not in {inodes:?}"
        );
        let pwd = std::fs::read_to_string(out.with_extension(format!("{member}.pwd")))
            .expect("the member's pwd");
        let own = env.worktree(&format!("{run}--{member}"));
        assert_eq!(pwd.trim(), own.display().to_string());
        // Switched side by side, each still holds exactly the base: no other member's file.
        let extra = std::fs::read_to_string(out.with_extension(format!("{member}.extra")))
            .expect("the member's untracked files");
        assert_eq!(extra, "", "{member} found files of an earlier holder");
    }
    for (member, n) in [("one", "1"), ("two", "2"), ("three", "3")] {
        let merged = env.git(&["show", &format!("machine/{run}:{member}.txt")]);
        assert_eq!(merged, format!("{n}\n"));
    }
    assert_eq!(pooled(&env).len(), 4, "the members went back to the pool");
}

#[test]
fn the_pool_keeps_to_its_bounds_and_gc_empties_it() {
    let env = TestEnv::new();
    let out = env.tmp.path().join("member");
    group_workflow(&env, &out);
    env.git(&["config", "machine.pool.size", "2"]);
    env.machine_ok(&["run", "group"]);
    let pool = pooled(&env);
    assert_eq!(
        pool.len(),
        2,
        "four released, the two newest kept: {pool:?}"
    );
    let list = env.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 3, "{list}");

    // A byte bound below one worktree keeps none.
    env.git(&["config", "machine.pool.maxBytes", "1"]);
    env.machine_ok(&["run", "group"]);
    assert_eq!(pooled(&env), Vec::<PathBuf>::new());

    env.git(&["config", "--unset", "machine.pool.maxBytes"]);
    env.machine_ok(&["run", "group"]);
    assert_eq!(pooled(&env).len(), 2);
    let dry = env.machine_ok(&["gc", "--dry-run"]);
    assert!(
        dry.stdout.contains("would remove 2 pooled worktrees"),
        "{dry}"
    );
    assert_eq!(pooled(&env).len(), 2);
    let r = env.machine_ok(&["gc"]);
    assert!(r.stdout.contains("removed 2 pooled worktrees"), "{r}");
    assert!(
        r.stdout.contains("(was "),
        "the cache size counts the pool: {r}"
    );
    assert_eq!(pooled(&env), Vec::<PathBuf>::new());
    let list = env.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");

    // A bad bound is the user's mistake, named with its key.
    env.git(&["config", "machine.pool.size", "many"]);
    let bad = env.machine_code(2, &["run", "group"]);
    assert!(bad.stderr.contains("machine.pool.size"), "{bad}");
    assert!(bad.stderr.contains("hint:"), "{bad}");
}

#[test]
fn a_size_of_zero_turns_the_pool_off() {
    let env = TestEnv::new();
    let out = env.tmp.path().join("member");
    group_workflow(&env, &out);
    env.git(&["config", "machine.pool.size", "0"]);
    let run = new_run(&env, || {
        env.machine_ok(&["run", "group"]);
    });
    assert_eq!(pooled(&env), Vec::<PathBuf>::new());
    assert!(!env.worktree(&run).exists());
    let list = env.git(&["worktree", "list", "--porcelain"]);
    assert_eq!(list.matches("worktree ").count(), 1, "{list}");
}

#[test]
fn a_run_killed_while_switching_a_pooled_worktree_is_reset_on_resume() {
    let env = repo_with_leftovers();
    env.machine_ok(&["run", "leave"]);
    assert_eq!(pooled(&env).len(), 1);
    env.write("a.txt", "two\n");
    env.git(&["commit", "-qam", "new base"]);
    let out = env.tmp.path().join("look");
    look_workflow(&env, &out);

    let run = new_run(&env, || run_killed_at(&env, "look", "switching:1"));
    // Killed with the files switched and HEAD not: the worktree is at the run's path, marked,
    // and not in the pool for anyone else.
    let wt = env.worktree(&run);
    assert!(wt.join("keep.txt").exists());
    assert_eq!(pooled(&env), Vec::<PathBuf>::new());
    let head = env.git(&[
        "-C",
        wt.to_str().expect("utf8"),
        "rev-parse",
        "--symbolic-full-name",
        "HEAD",
    ]);
    assert_ne!(
        head.trim(),
        format!("refs/heads/machine/{run}"),
        "HEAD was not set yet"
    );
    assert!(!out.with_extension("files").exists(), "the step never ran");

    // Another run meanwhile gets a worktree of its own, not the half-switched one.
    let other = new_run(&env, || {
        env.machine_ok(&["run", "leave"]);
    });
    assert_ne!(other, run);
    assert!(wt.join("keep.txt").exists());

    env.machine_ok(&["resume", &run]);
    let start = format!("machine/{run}~1");
    let expected = env.git(&["ls-tree", "-r", "--name-only", &start]);
    let files = std::fs::read_to_string(out.with_extension("files")).expect("files");
    assert_eq!(files, expected);
    let changed = env.git(&[
        "diff",
        "--name-only",
        &start,
        &format!("machine/{run}"),
        "--",
        ".",
        ":(exclude).codemachine",
    ]);
    assert_eq!(
        changed, "",
        "the step's commit holds nothing of the first run"
    );
    assert_eq!(
        std::fs::read_to_string(out.with_extension("pwd"))
            .expect("pwd")
            .trim(),
        wt.display().to_string()
    );
}

#[test]
fn a_paused_run_with_edits_is_never_pooled() {
    let env = TestEnv::new();
    env.workflow(
        "gate",
        "version = 1\nname = \"gate\"\n[[steps]]\nid = \"draft\"\nrun = [\"sh\", \"-c\", \"echo draft > plan.md\"]\ncheckpoint = true\n[[steps]]\nid = \"build\"\nrun = [\"true\"]\n",
    );
    let edited = new_run(&env, || {
        env.machine_code(1, &["run", "gate"]);
    });
    let wt = env.worktree(&edited);
    std::fs::write(wt.join("plan.md"), "a person's edit\n").expect("edit");
    env.machine_ok(&["gc"]);
    assert!(wt.join("plan.md").exists(), "gc keeps it");
    env.machine_code(2, &["rm", &edited]);
    assert_eq!(
        std::fs::read_to_string(wt.join("plan.md")).expect("kept"),
        "a person's edit\n"
    );
    assert_eq!(pooled(&env), Vec::<PathBuf>::new());
    env.machine_ok(&["rm", "--force", &edited]);
    assert!(!wt.exists());
    assert_eq!(pooled(&env), Vec::<PathBuf>::new(), "removed, not pooled");
    assert_eq!(
        env.git(&[
            "show",
            &format!("refs/machine/attempts/{edited}/rm-removed:plan.md")
        ]),
        "a person's edit\n"
    );

    // Paused without edits: rm hands it to the pool, and a resume takes it back.
    let clean = new_run(&env, || {
        env.machine_code(1, &["run", "gate"]);
    });
    env.machine_ok(&["rm", &clean]);
    assert_eq!(pooled(&env).len(), 1);
    env.machine_ok(&["resume", &clean]);
    assert_eq!(
        env.git(&["show", &format!("machine/{clean}:plan.md")]),
        "draft\n"
    );
    assert_eq!(
        pooled(&env).len(),
        1,
        "taken, then back when the run completed"
    );
}

#[test]
fn a_pooled_worktree_changed_behind_the_pools_back_is_still_switched_to_exactly_the_base() {
    let env = repo_with_leftovers();
    env.machine_ok(&["run", "leave"]);
    let pool = pooled(&env);
    assert_eq!(pool.len(), 1, "{pool:?}");
    // Someone edits a tracked file and drops an untracked one in the pooled worktree: the
    // two-way switch refuses to overwrite the edit, and the full reset takes over.
    std::fs::write(pool[0].join("a.txt"), "edited in the pool\n").expect("edit");
    std::fs::write(pool[0].join("stray.txt"), "stray\n").expect("stray");
    env.write("a.txt", "two\n");
    env.git(&["commit", "-qam", "new base"]);
    let out = env.tmp.path().join("look");
    look_workflow(&env, &out);
    let run = new_run(&env, || {
        env.machine_ok(&["run", "look"]);
    });
    let start = format!("machine/{run}~1");
    let expected = env.git(&["ls-tree", "-r", "--name-only", &start]);
    let files = std::fs::read_to_string(out.with_extension("files")).expect("files");
    assert_eq!(files, expected);
    assert_eq!(env.git(&["show", &format!("machine/{run}:a.txt")]), "two\n");
}

/// A pooled worktree holds no ignored file (its setup's work is gone), so the next run that
/// takes it sets it up again, even with an unchanged key.
#[test]
fn a_run_that_takes_a_pooled_worktree_runs_its_setup_again() {
    let env = TestEnv::new();
    env.write(".gitignore", "installed\n");
    env.write("package-lock.json", "{\"lockfileVersion\": 3}\n");
    env.git(&["add", ".gitignore", "package-lock.json"]);
    env.git(&["commit", "-q", "-m", "lock"]);
    env.workflow(
        "setup",
        "version = 1\nname = \"setup\"\n[workspace]\nsetup = [\"sh\", \"-c\", \"echo ran >> \\\"$HOME/setups\\\"; touch installed\"]\nsetup_key = [\"package-lock.json\"]\n[[steps]]\nid = \"build\"\nrun = [\"sh\", \"-c\", \"test -f installed && echo ok > built.txt\"]\n",
    );
    let setups = || std::fs::read_to_string(env.home.join("setups")).unwrap_or_default();
    env.machine_ok(&["run", "setup"]);
    assert_eq!(setups(), "ran\n");
    assert_eq!(
        pooled(&env).len(),
        1,
        "the completed run's worktree is pooled"
    );
    let r = env.machine_ok(&["run", "setup"]);
    assert_eq!(pooled(&env).len(), 1, "taken, then pooled again");
    assert_eq!(
        setups(),
        "ran\nran\n",
        "set up again in the pooled worktree\n{r}"
    );
    let run = env.last_run();
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:built.txt")]),
        "ok\n"
    );
}

/// Killed between moving a completed run's worktree into the pool and telling git where it
/// went, git listed the run's path (prunable) and not the pooled folder (found by the random
/// kills of crash.rs). Resuming the completed run finishes the hand-over; the next run takes
/// the pooled worktree.
#[test]
fn a_run_killed_while_its_worktree_moves_into_the_pool_is_finished_by_resume() {
    let env = repo_with_leftovers();
    let run = new_run(&env, || run_killed_at(&env, "leave", "moved:1"));
    let list = || env.git(&["worktree", "list", "--porcelain"]);
    assert!(list().contains("prunable"), "{}", list());
    assert_eq!(pooled(&env).len(), 1, "moved, git not told yet");

    env.machine_ok(&["resume", &run]);
    assert!(!list().contains("prunable"), "{}", list());
    let pool = pooled(&env);
    assert_eq!(pool.len(), 1, "{pool:?}");
    assert!(
        list().contains(&pool[0].display().to_string()),
        "{}",
        list()
    );
    let inode_pooled = inode(&pool[0].join("keep.txt"));

    let out = env.tmp.path().join("look");
    look_workflow(&env, &out);
    new_run(&env, || {
        env.machine_ok(&["run", "look"]);
    });
    let ino = std::fs::read_to_string(out.with_extension("ino")).expect("ino");
    assert_eq!(
        ino.trim(),
        inode_pooled.to_string(),
        "the pooled worktree served"
    );
}

/// Parking reads only the folders that may hold something new (see `git/folders.rs`); one
/// whose time did not change is trusted. A file the step stopped tracking stays on disk
/// without changing its folder's time: it is still cleaned before the worktree is reused.
#[test]
fn a_file_a_step_stops_tracking_is_not_handed_to_the_next_run() {
    let env = repo_with_leftovers();
    env.write("lib/keep.txt", "kept\n");
    env.write("lib/gen.o", "generated\n");
    env.write(".gitignore", "build/\n*.o\n");
    env.git(&["add", "-f", "."]);
    env.git(&["commit", "-qm", "a generated file, tracked"]);
    env.machine_ok(&["run", "leave"]);
    assert_eq!(pooled(&env).len(), 1);
    // Past the window in which a folder's time is too recent to be trusted, a parking that
    // records `lib/` as trusted.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    env.machine_ok(&["run", "leave"]);
    env.workflow(
        "untrack",
        "version = 1\nname = \"untrack\"\n[[steps]]\nid = \"untrack\"\nrun = [\"git\", \"rm\", \"-q\", \"--cached\", \"lib/gen.o\"]\n",
    );
    let untrack = new_run(&env, || {
        env.machine_ok(&["run", "untrack"]);
    });
    let kept = env.git(&[
        "ls-tree",
        "-r",
        "--name-only",
        &format!("machine/{untrack}"),
    ]);
    assert!(!kept.contains("lib/gen.o"), "{kept}");
    env.git(&["rm", "-q", "--cached", "lib/gen.o"]);
    env.git(&["commit", "-qm", "untrack the generated file"]);
    let out = env.tmp.path().join("look");
    look_workflow(&env, &out);
    let look = new_run(&env, || {
        env.machine_ok(&["run", "look"]);
    });
    let seen = std::fs::read_to_string(out.with_extension("files")).expect("the step's notes");
    let expected = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{look}~1")]);
    assert_eq!(seen, expected, "exactly the base's tree: no lib/gen.o");
}
