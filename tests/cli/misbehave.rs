//! Steps that misbehave: binary output, a program that never ends, git commands that move or
//! rewrite the run's branch from inside the worktree, a deleted `.git` file, a huge file, a
//! symlink to `/etc/passwd`, the step's program killed. Each leaves a run that says what
//! happened, in its record or its error, and resumes.

use std::time::Duration;

use crate::common::TestEnv;
use crate::crash::{assert_sound, state};

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A workflow `w`: `bad` runs `script`, with extra TOML lines; then `after` appends to out.txt.
fn setup(env: &TestEnv, script: &str, extra: &str) {
    env.workflow(
        "w",
        &format!(
            "version = 1\nname = \"w\"\n\n[defaults]\nengine = \"command\"\n\n\
             [[steps]]\nid = \"first\"\nrun = [\"sh\", \"-c\", \"echo first >> out.txt\"]\n\n\
             [[steps]]\nid = \"bad\"\nrun = [\"sh\", \"-c\", {}]\n{extra}\n\n\
             [[steps]]\nid = \"after\"\nrun = [\"sh\", \"-c\", \"echo after >> out.txt\"]\n",
            quote(script)
        ),
    );
}

fn show(env: &TestEnv, run: &str, path: &str) -> String {
    env.git(&["show", &format!("machine/{run}:{path}")])
}

/// The record of the latest execution of `step` at the run's tip, as TOML.
fn record(env: &TestEnv, run: &str, step: &str) -> toml::Value {
    let list = env.git(&[
        "ls-tree",
        "--name-only",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/"),
    ]);
    let dir = list
        .lines()
        .rfind(|l| l.ends_with(&format!("-{step}")))
        .unwrap_or_else(|| panic!("no record of {step}: {list}"));
    let text = show(
        env,
        run,
        &format!(".codemachine/runs/{run}/steps/{dir}/step.toml"),
    );
    toml::from_str(&text).expect("step.toml is TOML")
}

/// A flag file the bad step checks: once it exists, the step behaves.
fn flag(env: &TestEnv) -> String {
    env.tmp.path().join("behave").display().to_string()
}

fn behave(env: &TestEnv) {
    std::fs::write(env.tmp.path().join("behave"), "").expect("flag");
}

fn assert_completed(env: &TestEnv, run: &str) {
    assert_eq!(state(env, run), "completed");
    assert_eq!(show(env, run, "out.txt"), "first\nafter\n");
    assert_sound(env);
}

/// Random bytes, invalid UTF-8 and NUL bytes on stdout and stderr, with and without newlines:
/// the step succeeds, its log is kept as bytes in the record and the run completes.
#[test]
fn binary_output_is_recorded_and_the_run_completes() {
    let env = TestEnv::new();
    setup(
        &env,
        "head -c 300000 /dev/urandom; printf '\\377\\376\\000bad\\n' >&2; head -c 5000 /dev/urandom >&2",
        "",
    );
    let r = env.machine_ok(&["run", "w"]);
    let run = env.last_run();
    assert_completed(&env, &run);
    let rec = record(&env, &run, "bad");
    assert_eq!(rec["status"].as_str(), Some("succeeded"), "{rec:#?}\n{r}");
}

/// A program that never ends is stopped at its timeout and recorded as failed with the
/// reason; `resume` runs it again.
#[test]
fn a_program_that_never_ends_is_stopped_at_its_timeout_and_resumes() {
    let env = TestEnv::new();
    let f = flag(&env);
    setup(
        &env,
        &format!("[ -e {f} ] || exec sleep 600"),
        "timeout = \"1s\"",
    );
    let r = env.machine_code(1, &["run", "w"]);
    let run = env.last_run();
    let rec = record(&env, &run, "bad");
    assert_eq!(rec["status"].as_str(), Some("failed"), "{r}");
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("timed out") || error.contains("timeout"),
        "{error}"
    );
    behave(&env);
    env.machine_ok(&["resume", &run]);
    assert_completed(&env, &run);
}

/// The step's own program killed with SIGKILL (the agent crashing): the step fails with the
/// signal in its record, and `resume` runs it again.
#[test]
fn a_step_program_killed_by_a_signal_fails_clearly_and_resumes() {
    let env = TestEnv::new();
    let f = flag(&env);
    setup(&env, &format!("[ -e {f} ] || kill -9 $$"), "");
    let r = env.machine_code(1, &["run", "w"]);
    let run = env.last_run();
    let rec = record(&env, &run, "bad");
    assert_eq!(rec["status"].as_str(), Some("failed"), "{r}");
    assert_eq!(rec["signal"].as_integer(), Some(9), "{rec:#?}");
    behave(&env);
    env.machine_ok(&["resume", &run]);
    assert_completed(&env, &run);
}

/// `git commit` inside the worktree: the step's own commit stays in the history, below the
/// step commit.
#[test]
fn a_commit_made_by_the_step_stays_in_history() {
    let env = TestEnv::new();
    setup(
        &env,
        "echo mine > mine.txt && git add mine.txt && git commit -q -m 'made by the agent'",
        "",
    );
    env.machine_ok(&["run", "w"]);
    let run = env.last_run();
    assert_completed(&env, &run);
    assert_eq!(show(&env, &run, "mine.txt"), "mine\n");
    let all = env.git(&["log", "--format=%s", &format!("main..machine/{run}")]);
    assert!(all.contains("made by the agent"), "{all}");
}

/// `git reset --hard HEAD~1` moves the run's branch back past the last step commit: exit 3,
/// and a plain `resume` goes on from the checkpoint the branch now holds, running again the
/// step whose commit the reset dropped (that commit stays in the branch's reflog).
#[test]
fn after_a_step_reset_the_branch_back_resume_goes_on_from_where_it_points() {
    let env = TestEnv::new();
    let f = flag(&env);
    setup(
        &env,
        &format!("[ -e {f} ] || git reset -q --hard HEAD~1"),
        "",
    );
    let r = env.machine_code(3, &["run", "w"]);
    assert!(r.stderr.contains("hint:"), "{r}");
    let run = env.last_run();
    behave(&env);
    env.machine_ok(&["resume", &run]);
    assert_completed(&env, &run);
    let steps = crate::crash::step_sequence(&env, &run);
    assert_eq!(steps, ["start", "first", "bad", "after"]);
}

/// Git commands that move the run's branch away from what git machine published (`reset
/// --hard HEAD~1`, `commit --amend`): git machine never overwrites the branch; it stops with
/// exit 3 and a hint, and after `rewind --undo`-free repair (the branch put back), resume
/// finishes.
#[test]
fn a_step_that_rewrites_the_branch_is_refused_and_the_run_resumes_once_put_back() {
    for script in [
        "git reset -q --hard HEAD~1",
        "echo amended >> out.txt; git commit -q -a --amend -m amended",
    ] {
        let env = TestEnv::new();
        let f = flag(&env);
        setup(&env, &format!("[ -e {f} ] || {{ {script}; }}"), "");
        let r = env.machine_code(3, &["run", "w"]);
        assert!(r.stderr.contains("hint:"), "{script}: {r}");
        let run = env.last_run();
        // The branch as the step left it, and the run's last checkpoint in the reflog.
        let published = env.git(&[
            "log",
            "-g",
            "--format=%H %gs",
            &format!("refs/heads/machine/{run}"),
        ]);
        let checkpoint = published
            .lines()
            .find(|l| l.contains("git machine: first:"))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_else(|| panic!("{script}: no checkpoint in the reflog\n{published}"))
            .to_string();
        env.git(&[
            "update-ref",
            &format!("refs/heads/machine/{run}"),
            &checkpoint,
        ]);
        behave(&env);
        let r = env.machine(&["resume", &run]);
        assert_eq!(r.code, 0, "{script}: {r}");
        assert_completed(&env, &run);
    }
}

/// `git checkout -b x` (and a commit there) inside the worktree: the step's work goes on the
/// run's branch all the same, the worktree is switched back to the run's branch, and the
/// record says so (`repairs`); the run completes and the next step sees the run's branch.
#[test]
fn a_step_that_switches_the_worktree_to_another_branch_is_switched_back_and_recorded() {
    let env = TestEnv::new();
    setup(
        &env,
        "git checkout -q -b elsewhere && echo x > x.txt && git add x.txt && git commit -q -m x",
        "",
    );
    env.machine_ok(&["run", "w"]);
    let run = env.last_run();
    assert_completed(&env, &run);
    assert_eq!(show(&env, &run, "x.txt"), "x\n");
    let rec = record(&env, &run, "bad");
    let repairs = rec["repairs"].as_array().expect("repairs listed");
    assert!(
        repairs.iter().any(|r| r
            .as_str()
            .is_some_and(|r| r.contains("refs/heads/elsewhere"))),
        "{rec:#?}"
    );
    // The worktree ended clean on the run's tip: a completed run's worktree goes to the pool
    // only then (one holding anything uncommitted stays at its path).
    assert!(
        !env.worktree(&run).exists(),
        "the worktree was left dirty or off the run's branch"
    );
}

/// A step that deletes its worktree's `.git` file: git machine must not stage or commit
/// anything anywhere else (a repository the cache folder happens to be in); it stops with a
/// clear error, and resume rebuilds the worktree and finishes.
#[test]
fn a_step_that_deletes_the_worktrees_git_file_stops_clearly_and_resumes() {
    let env = TestEnv::new();
    // The cache folder inside another repository, as with a home folder kept in git.
    let outer = env.tmp.path().join("cache");
    std::fs::create_dir_all(&outer).expect("cache");
    let init = std::process::Command::new("git")
        .args(["init", "-q"])
        .arg(&outer)
        .status()
        .expect("git init");
    assert!(init.success());
    let f = flag(&env);
    setup(&env, &format!("[ -e {f} ] || rm .git"), "");
    let r = env.machine(&["run", "w"]);
    let run = env.last_run();
    assert_ne!(r.code, 0, "{r}");
    assert!(r.code < 100, "an internal error: {r}");
    assert!(r.stderr.contains("error:"), "{r}");
    let outer_log = std::process::Command::new("git")
        .args(["-C"])
        .arg(&outer)
        .args(["rev-list", "--all", "--count"])
        .output()
        .expect("git rev-list");
    assert_eq!(
        String::from_utf8_lossy(&outer_log.stdout).trim(),
        "0",
        "git machine committed into the repository around its cache"
    );
    behave(&env);
    let r = env.machine(&["resume", &run]);
    assert_eq!(r.code, 0, "{r}");
    assert_completed(&env, &run);
}

/// A file over `machine.maxFileSize` and a symlink to `/etc/passwd` are left out of the
/// step's commit, stay in the worktree, and are listed with the reason in the record
/// (`left_out`); a small file and a symlink inside the worktree are committed.
#[test]
fn huge_files_and_symlinks_out_of_the_worktree_are_withheld_and_recorded() {
    let env = TestEnv::new();
    setup(
        &env,
        "head -c 5000 /dev/zero > huge.bin; echo small > small.txt; \
         ln -s /etc/passwd passwd; ln -s small.txt near; ln -s ../../x far",
        "",
    );
    env.git(&["config", "machine.maxFileSize", "4k"]);
    env.machine_ok(&["run", "w"]);
    let run = env.last_run();
    assert_completed(&env, &run);
    let files = env.git(&["ls-tree", "--name-only", &format!("machine/{run}")]);
    for kept in ["small.txt", "near"] {
        assert!(files.lines().any(|l| l == kept), "{kept} missing: {files}");
    }
    for left in ["huge.bin", "passwd", "far"] {
        assert!(
            !files.lines().any(|l| l == left),
            "{left} committed: {files}"
        );
        assert!(
            std::fs::symlink_metadata(env.worktree(&run).join(left)).is_ok(),
            "{left} was removed from the worktree"
        );
    }
    let rec = record(&env, &run, "bad");
    let withheld = rec["left_out"].as_array().expect("left out and listed");
    let listed: Vec<(&str, &str)> = withheld
        .iter()
        .map(|w| (w["path"].as_str().unwrap(), w["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed
        .iter()
        .any(|(p, r)| *p == "huge.bin" && r.contains("machine.maxFileSize")));
    assert!(listed
        .iter()
        .any(|(p, r)| *p == "passwd" && r.contains("/etc/passwd")));
    assert!(listed
        .iter()
        .any(|(p, r)| *p == "far" && r.contains("outside the worktree")));

    // A limit that is not a size: a clear error.
    env.git(&["config", "machine.maxFileSize", "lots"]);
    let r = env.machine(&["run", "w"]);
    assert!(r.stderr.contains("machine.maxFileSize"), "{r}");
}

/// The disk fills up while git machine commits a step: a soft `RLIMIT_FSIZE` of 100 KiB on
/// git machine (writes beyond it fail with EFBIG, as on a full disk; it ignores SIGXFSZ) that
/// the step lifts for itself, so the step writes its 400 KB file and the object git machine
/// writes for it is what fails. A clear error naming the cause, exit 1, the run left
/// resumable; `resume` without the limit finishes it with the step once.
#[test]
fn a_disk_full_while_committing_a_step_is_a_clear_error_and_resume_finishes() {
    let env = TestEnv::new();
    setup(
        &env,
        "ulimit -S -f unlimited && head -c 400000 /dev/urandom > noise.bin",
        "",
    );
    let hermetic = env.machine_cmd(&[]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -S -f 200 && exec '{}' run w",
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
        r.stderr.contains("out of disk space") && r.stderr.contains("File too large"),
        "{r}"
    );
    assert!(r.stderr.contains("hint:"), "{r}");
    let run = env.last_run();
    assert_eq!(state(&env, &run), "interrupted");
    assert_sound(&env);
    env.machine_ok(&["resume", &run]);
    assert_completed(&env, &run);
    let steps = crate::crash::step_sequence(&env, &run);
    assert_eq!(steps, ["start", "first", "bad", "after"]);
    let size = env.git(&["cat-file", "-s", &format!("machine/{run}:noise.bin")]);
    assert_eq!(size.trim(), "400000");
}

/// The agent (the fake Claude Code) SIGKILLed mid-turn from outside, its process group taken
/// from the run's lock: the step fails with the signal in its record, the run is left failed,
/// and `resume` runs the step again to its end.
#[test]
fn an_agent_killed_mid_turn_fails_the_step_clearly_and_resume_reruns_it() {
    let bench = crate::crash::Bench::new();
    let env = &bench.env;
    let script = env.tmp.path().join("agent-script.txt");
    std::fs::write(&script, "FAKE_HANG\n").expect("script");
    env.workflow(
        "agent",
        "version = 1\nname = \"agent\"\n\n[[steps]]\nid = \"think\"\nengine = \"claude\"\n\
         prompt = '''\nFAKE_WRITE agent.txt written by the agent\nFAKE_REPLY done\n'''\n",
    );
    let child = bench
        .cmd(&["run", "agent"], None)
        .env("FAKE_AGENT_SCRIPT", &script)
        .spawn()
        .expect("spawn");
    let lock_of = |run: &str| env.common_dir().join("machine/locks").join(run);
    let mut pgid = None;
    let found = crate::common::wait_until(Duration::from_secs(20), || {
        pgid = env
            .runs()
            .first()
            .and_then(|run| std::fs::read_to_string(lock_of(run)).ok())
            .and_then(|text| toml::from_str::<toml::Value>(&text).ok())
            .and_then(|v| v.get("step_pgid").and_then(toml::Value::as_integer))
            // 0: between steps.
            .filter(|pgid| *pgid != 0);
        pgid.is_some()
    });
    assert!(found, "the agent never started");
    // SAFETY: killpg of the step's own process group, as read from the run's lock.
    unsafe {
        libc::killpg(pgid.expect("found") as libc::pid_t, libc::SIGKILL);
    }
    let out = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let run = env.last_run();
    assert_eq!(state(env, &run), "failed");
    let rec = record(env, &run, "think");
    assert_eq!(rec["status"].as_str(), Some("failed"), "{rec:#?}");
    assert_eq!(rec["signal"].as_integer(), Some(9), "{rec:#?}");
    std::fs::write(&script, "").expect("behave");
    let r = bench
        .cmd(&["resume", &run], None)
        .env("FAKE_AGENT_SCRIPT", &script)
        .output()
        .expect("resume");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(state(env, &run), "completed");
    assert_eq!(show(env, &run, "agent.txt"), "written by the agent\n");
    assert_sound(env);
}
