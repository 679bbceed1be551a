//! Parallel groups through the real binary: one merge commit, conflicts paused and resumed or
//! handed to a resolver step, a failed member rerun alone, kill -9 inside a group.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::TestEnv;

fn state(env: &TestEnv, run: &str) -> serde_json::Value {
    let r = env.machine_ok(&["status", run, "--json"]);
    serde_json::from_str(&r.stdout).expect("status json")
}

const THREE: &str = r#"version = 1
name = "three"
[[steps]]
id = "design"
run = ["sh", "-c", "echo design > design.md"]
[[steps]]
id = "unit"
group = "tests"
run = ["sh", "-c", "sleep 0.2; echo unit > unit.txt"]
[[steps]]
id = "integration"
group = "tests"
run = ["sh", "-c", "sleep 0.2; echo integration > integration.txt"]
[[steps]]
id = "docs"
group = "tests"
run = ["sh", "-c", "sleep 0.2; echo docs > docs.txt"]
[[steps]]
id = "final"
run = ["sh", "-c", "cat unit.txt integration.txt docs.txt > final.txt"]
"#;

#[test]
fn a_group_of_three_makes_one_merge_commit() {
    let env = TestEnv::new();
    env.workflow("three", THREE);
    env.machine_ok(&["run", "three", "--jobs", "3"]);
    let run = env.last_run();
    let branch = format!("machine/{run}");
    let subjects = env.subjects(&run);
    assert_eq!(subjects[1], "design: ran sh");
    assert_eq!(subjects[2], "tests: merge unit, integration, docs");
    assert_eq!(subjects[3], "final: ran sh");
    let parents = env.git(&["log", "-1", "--format=%P", &format!("{branch}~1")]);
    assert_eq!(
        parents.split_whitespace().count(),
        4,
        "base plus three members"
    );
    for p in parents.split_whitespace().skip(1) {
        let step = env.git(&[
            "log",
            "-1",
            "--format=%(trailers:key=Machine-Step,valueonly)",
            p,
        ]);
        assert!(
            ["unit", "integration", "docs"].contains(&step.trim()),
            "{step}"
        );
    }
    assert_eq!(
        env.git(&["show", &format!("{branch}:final.txt")]),
        "unit\nintegration\ndocs\n"
    );
    let log = env.machine_ok(&["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("id"))
        .collect();
    assert_eq!(steps, ["design", "unit", "integration", "docs", "final"]);
    assert_eq!(v["steps"][2]["files"][0]["path"], "integration.txt");
    // member worktrees and the run's own went to the pool
    let list = env.git(&["worktree", "list"]);
    assert_eq!(list.lines().count(), 5, "{list}");
    assert_eq!(
        list.lines().filter(|l| l.contains("/pool/")).count(),
        4,
        "{list}"
    );
    assert_eq!(state(&env, &run)["state"], "completed");
}

const CLASH: &str = r#"version = 1
name = "clash"
[[steps]]
id = "left"
group = "g"
run = ["sh", "-c", "echo left > same.txt"]
[[steps]]
id = "right"
group = "g"
run = ["sh", "-c", "echo right > same.txt"]
[[steps]]
id = "after"
run = ["sh", "-c", "cp same.txt after.txt"]
"#;

#[test]
fn a_conflict_stops_the_run_and_resume_goes_on_after_it_is_committed() {
    let env = TestEnv::new();
    env.workflow("clash", CLASH);
    let r = env.machine_code(1, &["run", "clash"]);
    assert!(r.stderr.contains("conflict"), "{r}");
    let run = env.last_run();
    let st = state(&env, &run);
    assert_eq!(st["state"], "conflict");
    assert_eq!(st["conflict_paths"], serde_json::json!(["same.txt"]));
    let human = env.machine_ok(&["status", &run]);
    assert!(
        human.stdout.contains("same.txt") && human.stdout.contains("resolve them in"),
        "{human}"
    );
    // unresolved: resume refuses
    let r = env.machine_code(1, &["resume", &run]);
    assert!(r.stderr.contains("unresolved"), "{r}");
    let wt = env.worktree(&run);
    let text = std::fs::read_to_string(wt.join("same.txt")).expect("conflicted file");
    assert!(text.contains("<<<<<<<"), "{text}");
    std::fs::write(wt.join("same.txt"), "both\n").expect("resolve");
    let git = |args: &[&str]| {
        let mut full = vec!["-C", wt.to_str().expect("utf8")];
        full.extend_from_slice(args);
        env.git(&full)
    };
    git(&["add", "same.txt"]);
    let r = env.machine_code(1, &["resume", &run]);
    assert!(r.stderr.contains("not committed"), "{r}");
    git(&["commit", "-q", "--no-edit"]);
    env.machine_ok(&["resume", &run]);
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:after.txt")]),
        "both\n"
    );
    assert_eq!(state(&env, &run)["state"], "completed");
    let log = env.machine_ok(&["log", &run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&log.stdout).expect("json");
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["step"].as_str().expect("id"))
        .collect();
    assert_eq!(steps, ["left", "right", "after"]);
}

#[test]
fn a_resolver_step_takes_the_conflict() {
    let env = TestEnv::new();
    env.workflow(
        "clash",
        &format!(
            "{CLASH}\n[groups.g]\non_conflict = \"fix\"\n\n[[steps]]\nid = \"fix\"\nrun = [\"sh\", \"-c\", \"echo resolved > same.txt\"]\n"
        ),
    );
    env.machine_ok(&["run", "clash"]);
    let run = env.last_run();
    let branch = format!("machine/{run}");
    assert_eq!(
        env.git(&["show", &format!("{branch}:after.txt")]),
        "resolved\n"
    );
    let subjects = env.subjects(&run);
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("fix: resolve the conflicts of g with right")),
        "{subjects:?}"
    );
    // the resolver ran for the conflict only, not again as a plain step
    assert_eq!(
        subjects.iter().filter(|s| s.starts_with("fix:")).count(),
        1,
        "{subjects:?}"
    );
}

#[test]
fn a_failed_member_fails_the_group_and_resume_reruns_only_it() {
    let env = TestEnv::new();
    let marker = env.tmp.path().join("fixed");
    let counter = env.tmp.path().join("counts");
    std::fs::create_dir_all(&counter).expect("dir");
    env.workflow(
        "flaky",
        &format!(
            r#"version = 1
name = "flaky"
[[steps]]
id = "a"
group = "g"
run = ["sh", "-c", "echo x >> '{c}/a'; echo a > a.txt"]
[[steps]]
id = "b"
group = "g"
run = ["sh", "-c", "echo x >> '{c}/b'; if test -e '{m}'; then echo b > b.txt; else echo broken >&2; exit 1; fi"]
[[steps]]
id = "c"
group = "g"
run = ["sh", "-c", "echo x >> '{c}/c'; echo c > c.txt"]
"#,
            c = counter.display(),
            m = marker.display()
        ),
    );
    let r = env.machine_code(1, &["run", "flaky"]);
    assert!(r.stderr.contains("broken"), "{r}");
    let run = env.last_run();
    let st = state(&env, &run);
    assert_eq!(st["state"], "failed");
    // the others finished even though b failed
    for s in ["a", "b", "c"] {
        assert_eq!(
            std::fs::read_to_string(counter.join(s)).expect("ran"),
            "x\n",
            "{s}"
        );
    }
    std::fs::write(&marker, "").expect("marker");
    env.machine_ok(&["resume", &run]);
    assert_eq!(
        std::fs::read_to_string(counter.join("a")).expect("a"),
        "x\n",
        "a not rerun"
    );
    assert_eq!(
        std::fs::read_to_string(counter.join("c")).expect("c"),
        "x\n",
        "c not rerun"
    );
    assert_eq!(
        std::fs::read_to_string(counter.join("b")).expect("b"),
        "x\nx\n",
        "b rerun"
    );
    let branch = format!("machine/{run}");
    for f in ["a.txt", "b.txt", "c.txt"] {
        env.git(&["cat-file", "-e", &format!("{branch}:{f}")]);
    }
    assert_eq!(state(&env, &run)["state"], "completed");
}

#[test]
fn kill_9_inside_a_group_resumes_to_the_same_result() {
    let env = TestEnv::new();
    env.workflow(
        "slow",
        r#"version = 1
name = "slow"
[[steps]]
id = "one"
group = "g"
run = ["sh", "-c", "echo one > one.txt"]
[[steps]]
id = "two"
group = "g"
run = ["sh", "-c", "sleep 2; echo two > two.txt"]
[[steps]]
id = "three"
run = ["sh", "-c", "cat one.txt two.txt > three.txt"]
"#,
    );
    let mut child = env
        .machine_cmd(&["run", "slow"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // wait until the quick member has published its commit, then kill mid-group
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = env.git_output(&[
            "for-each-ref",
            "--format=%(refname)",
            "refs/machine/parallel/",
        ]);
        if String::from_utf8_lossy(&out.stdout).contains("/one") {
            break;
        }
        assert!(Instant::now() < deadline, "member one never committed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let run = env.last_run();
    // A kill inside the slow member's staging leaves git's lock on its index. Regression:
    // resume stopped at "Unable to create '…/index.lock': File exists".
    let member = env.worktree(&format!("{run}--two"));
    let dotgit = std::fs::read_to_string(member.join(".git")).expect("the member's .git");
    let admin = PathBuf::from(dotgit.trim().strip_prefix("gitdir: ").expect("gitdir"));
    std::fs::write(admin.join("index.lock"), "").expect("a lock left by a kill");
    let resumed = env.machine_ok(&["resume", &run]);
    assert!(resumed.stderr.contains("index.lock"), "{resumed}");
    let branch = format!("machine/{run}");
    assert_eq!(
        env.git(&["show", &format!("{branch}:three.txt")]),
        "one\ntwo\n"
    );
    let subjects = env.subjects(&run);
    assert_eq!(subjects.len(), 3, "start, one merge, three: {subjects:?}");
    assert_eq!(subjects[1], "g: merge one, two");
}

#[test]
fn jobs_bound_how_many_members_run_at_once() {
    let env = TestEnv::new();
    let probe = env.tmp.path().join("running");
    std::fs::create_dir_all(&probe).expect("dir");
    // each member notes how many members run beside it
    let member = |id: &str| {
        format!(
            "[[steps]]\nid = \"{id}\"\ngroup = \"g\"\nrun = [\"sh\", \"-c\", \"touch '{p}/{id}'; sleep 0.4; ls '{p}' | wc -l > seen-{id}.txt; rm '{p}/{id}'\"]\n",
            p = probe.display()
        )
    };
    env.workflow(
        "wide",
        &format!(
            "version = 1\nname = \"wide\"\n{}{}{}{}",
            member("a"),
            member("b"),
            member("c"),
            member("d")
        ),
    );
    let most = |run: &str| -> u32 {
        ["a", "b", "c", "d"]
            .iter()
            .map(|s| {
                env.git(&["show", &format!("machine/{run}:seen-{s}.txt")])
                    .trim()
                    .parse::<u32>()
                    .expect("count")
            })
            .max()
            .expect("four")
    };
    env.machine_ok(&["run", "wide", "--jobs", "1"]);
    assert_eq!(most(&env.last_run()), 1);
    env.git(&["config", "machine.jobs", "2"]);
    env.machine_ok(&["run", "wide"]);
    assert_eq!(most(&env.last_run()), 2);
    env.git(&["config", "machine.jobs", "many"]);
    let r = env.machine_code(2, &["run", "wide"]);
    assert!(r.stderr.contains("machine.jobs"), "{r}");
}

#[test]
fn apply_carries_group_merges_and_review_edits() {
    let env = TestEnv::new();
    env.workflow(
        "mix",
        r#"version = 1
name = "mix"
[[steps]]
id = "left"
group = "g"
run = ["sh", "-c", "echo left > left.txt"]
[[steps]]
id = "right"
group = "g"
run = ["sh", "-c", "echo right > right.txt"]
[[steps]]
id = "draft"
run = ["sh", "-c", "echo draft > draft.txt"]
checkpoint = true
[[steps]]
id = "last"
run = ["sh", "-c", "cat draft.txt > last.txt"]
"#,
    );
    env.git(&["add", "-A"]);
    env.git(&["commit", "-qm", "workflow"]);
    env.machine_code(1, &["run", "mix"]);
    let run = env.last_run();
    std::fs::write(env.worktree(&run).join("draft.txt"), "draft, edited\n").expect("edit");
    env.machine_ok(&["resume", &run]);
    env.machine_ok(&["apply", &run]);
    for (file, text) in [
        ("left.txt", "left\n"),
        ("right.txt", "right\n"),
        ("draft.txt", "draft, edited\n"),
        ("last.txt", "draft, edited\n"),
    ] {
        assert_eq!(env.read(file), text, "{file}");
    }
    let log = env.git(&["log", "--format=%an|%s", "-4"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[3], "git machine|g: merge left, right");
    assert_eq!(lines[2], "git machine (command)|draft: ran sh");
    assert_eq!(lines[1], "Test User|review: changes after `draft`");
    assert_eq!(lines[0], "git machine (command)|last: ran sh");
    assert!(!env.path(".codemachine/runs").exists());
    // squashed onto another branch: the same code in one commit
    env.git(&["checkout", "-q", "-b", "flat", "HEAD~4"]);
    env.machine_ok(&["apply", &run, "--squash"]);
    assert_eq!(env.git(&["diff", "--stat", "main", "HEAD"]), "");
}

#[test]
fn ctrl_c_in_a_group_keeps_the_members_that_finished() {
    let env = TestEnv::new();
    let counts = env.tmp.path().join("counts");
    std::fs::create_dir_all(&counts).expect("dir");
    let marker = env.tmp.path().join("go-fast");
    env.workflow(
        "pair",
        &format!(
            r#"version = 1
name = "pair"
[[steps]]
id = "quick"
group = "g"
run = ["sh", "-c", "echo x >> '{c}/quick'; echo quick > quick.txt"]
[[steps]]
id = "slow"
group = "g"
run = ["sh", "-c", "echo x >> '{c}/slow'; test -e '{m}' || sleep 30; echo slow > slow.txt"]
"#,
            c = counts.display(),
            m = marker.display()
        ),
    );
    let mut child = env
        .machine_cmd(&["run", "pair"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(counts.join("quick").exists() && counts.join("slow").exists()) {
        assert!(Instant::now() < deadline, "members never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: sends SIGINT to the git-machine child this test started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let run = env.last_run();
    // The member that finished was published the moment it did, not when the group ended.
    let tip = env.git(&["log", "-1", "--format=%s", &format!("machine/{run}")]);
    assert_eq!(tip.trim(), "g: `quick` done (1 of 2)");
    std::fs::write(&marker, "").expect("marker");
    env.machine_ok(&["resume", &run]);
    assert_eq!(
        std::fs::read_to_string(counts.join("quick")).expect("quick"),
        "x\n",
        "quick is not run again"
    );
    assert_eq!(
        std::fs::read_to_string(counts.join("slow")).expect("slow"),
        "x\nx\n"
    );
    let branch = format!("machine/{run}");
    assert_eq!(
        env.git(&["show", &format!("{branch}:quick.txt")]),
        "quick\n"
    );
    assert_eq!(env.git(&["show", &format!("{branch}:slow.txt")]), "slow\n");
    assert_eq!(
        env.subjects(&run).last().map(String::as_str),
        Some("g: merge quick, slow")
    );
}
