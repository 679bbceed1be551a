//! Faults: git machine killed at any moment, interrupted from its terminal, stopped by a step
//! timeout, raced by another process or by a step that moves its branch, robbed of its
//! disposable files; and through all of it, the user's checkout is never touched.
//!
//! Real processes and real git throughout. Waits poll with generous deadlines (the suite runs
//! on loaded machines) and no test asserts how fast anything is. Processes a step starts are
//! found by a marker: a `sleep` reached through a symlink in the test's temp folder, so its
//! command line names that folder and no other test's process matches.

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::common::{processes_with, wait_until, TestEnv};
use crate::pty::OnPty;

/// How long to wait for anything that should happen "soon" on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// A step of a `command` workflow: `sh -c <script>`.
struct Step {
    id: String,
    script: String,
    timeout: Option<&'static str>,
}

fn step(id: &str, script: &str) -> Step {
    Step {
        id: id.to_string(),
        script: script.to_string(),
        timeout: None,
    }
}

/// Workflow text for `steps`; scripts are shell, so braces are doubled to stay literal.
fn workflow_text(name: &str, steps: &[Step]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = format!(
        "version = 1\nname = {}\ndescription = \"fault test\"\n\n[defaults]\nengine = \"command\"\n",
        quote(name)
    );
    for s in steps {
        let script = s.script.replace('{', "{{").replace('}', "}}");
        text.push_str(&format!(
            "\n[[steps]]\nid = {}\nrun = [\"sh\", \"-c\", {}]\n",
            quote(&s.id),
            quote(&script)
        ));
        if let Some(t) = s.timeout {
            text.push_str(&format!("timeout = {}\n", quote(t)));
        }
    }
    text
}

/// Wait for `child` to exit within `limit`; kills it and panics (with its log) otherwise.
fn wait_exit(child: &mut Child, limit: Duration, log: &Path) -> ExitStatus {
    let mut status = None;
    wait_until(limit, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "git-machine did not exit within {limit:?}\n{}",
                read_log(log)
            );
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tmp(env: &TestEnv) -> String {
    env.tmp.path().display().to_string()
}

/// A `git-machine` process in the background, its stderr going to `<tmp>/<log>`.
fn spawn_machine(env: &TestEnv, args: &[&str], log: &str) -> (Child, PathBuf) {
    let path = env.tmp.path().join(log);
    let err = File::create(&path).expect("log file");
    let child = env
        .machine_cmd(args)
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn git-machine");
    (child, path)
}

/// A `sleep` whose command line names this test's temp folder (see the module header).
fn sleeper(env: &TestEnv) -> String {
    let link = env.tmp.path().join("bin").join("marked-sleep");
    if !link.exists() {
        std::fs::create_dir_all(link.parent().expect("has a parent")).expect("bin dir");
        let out = Command::new("sh")
            .args(["-c", "command -v sleep"])
            .output()
            .expect("find sleep");
        let sleep = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!sleep.is_empty(), "no sleep program on PATH");
        std::os::unix::fs::symlink(sleep, &link).expect("symlink sleep");
    }
    link.display().to_string()
}

/// Wait until no process matches `marker`; panics naming the survivors.
fn assert_no_processes(marker: &str, what: &str) {
    if !wait_until(Duration::from_secs(5), || processes_with(marker).is_empty()) {
        panic!(
            "{what}: processes still running: {:?}",
            processes_with(marker)
        );
    }
}

fn status_json(env: &TestEnv, run: &str) -> serde_json::Value {
    let r = env.machine_ok(&["status", run, "--json"]);
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON: {e}\n{r}"))
}

fn shown_state(env: &TestEnv, run: &str) -> String {
    status_json(env, run)["state"]
        .as_str()
        .expect("status --json has a state")
        .to_string()
}

fn lock_path(env: &TestEnv, run: &str) -> PathBuf {
    env.common_dir().join("machine/locks").join(run)
}

fn lock_value(env: &TestEnv, run: &str) -> Option<toml::Value> {
    let text = std::fs::read_to_string(lock_path(env, run)).ok()?;
    toml::from_str(&text).ok()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

fn branch_tip(env: &TestEnv, run: &str) -> String {
    env.git(&["rev-parse", &format!("refs/heads/machine/{run}")])
        .trim()
        .to_string()
}

fn show(env: &TestEnv, run: &str, path: &str) -> String {
    env.git(&["show", &format!("machine/{run}:{path}")])
}

/// The run is complete: `out.txt` holds each step's line once, in order, and the first-parent
/// history is the start commit and one successful commit per step, in order.
fn assert_completed_once(env: &TestEnv, run: &str, workflow: &str, steps: &[&str]) {
    assert_eq!(
        shown_state(env, run),
        "completed",
        "{:#?}",
        status_json(env, run)
    );
    let expected: String = steps.iter().map(|s| format!("{s}\n")).collect();
    assert_eq!(show(env, run, "out.txt"), expected, "out.txt of run {run}");
    let subjects = env.subjects(run);
    assert_eq!(subjects.len(), steps.len() + 1, "{subjects:#?}");
    assert_eq!(subjects[0], format!("start: {workflow} ({run})"));
    for (subject, s) in subjects[1..].iter().zip(steps) {
        assert!(subject.starts_with(&format!("{s}: ")), "{subjects:#?}");
        assert!(!subject.contains("failed"), "{subjects:#?}");
    }
    assert!(
        !lock_path(env, run).exists(),
        "the lock of run {run} was left behind"
    );
}

/// `run`/`resume` killed with SIGKILL after each of 20 delays (0 to 0.95 s, spread over four
/// runs of five kills each), then resumed: every step is committed exactly once, in order.
#[test]
fn kill_9_at_any_moment_then_resume_commits_each_step_once() {
    let env = TestEnv::new();
    let ids = ["s1", "s2", "s3", "s4", "s5"];
    let steps: Vec<Step> = ids
        .iter()
        .map(|s| step(s, &format!("echo {s} >> out.txt; sleep 0.05")))
        .collect();
    env.workflow("five", &workflow_text("five", &steps));
    for chain in 0..4u64 {
        let before = env.runs();
        let mut run: Option<String> = None;
        for kill in 0..5u64 {
            let delay = Duration::from_millis(50 * (chain + 4 * kill));
            let args = match &run {
                None => vec!["run", "five"],
                Some(id) => vec!["resume", id.as_str()],
            };
            let (mut child, _) = spawn_machine(&env, &args, "killed.log");
            std::thread::sleep(delay);
            child.kill().expect("kill -9");
            child.wait().expect("reap");
            if run.is_none() {
                run = env.runs().into_iter().find(|r| !before.contains(r));
            }
        }
        let run = match run {
            Some(id) => {
                env.machine_ok(&["resume", &id]);
                id
            }
            None => {
                env.machine_ok(&["run", "five"]);
                env.last_run()
            }
        };
        assert_completed_once(&env, &run, "five", &ids);
    }
}

/// Killed while a step's program waits on a child: the step's shell dies with git machine
/// (parent-death signal); its orphaned child is killed by the resume that takes the lock over.
#[test]
fn resume_kills_the_orphaned_step_of_a_killed_run() {
    let env = TestEnv::new();
    let sleep = sleeper(&env);
    let t = tmp(&env);
    let steps = [
        step("s1", "echo s1 >> out.txt"),
        step(
            "s2",
            &format!(
                "echo s2 >> out.txt; if [ ! -e {t}/slept ]; then touch {t}/slept; {sleep} 30; fi"
            ),
        ),
        step("s3", "echo s3 >> out.txt"),
    ];
    env.workflow("orphan", &workflow_text("orphan", &steps));
    let (mut child, log) = spawn_machine(&env, &["run", "orphan"], "run.log");
    let sleeping = || {
        processes_with(&sleep)
            .iter()
            .any(|(_, argv0)| *argv0 == sleep)
    };
    assert!(
        wait_until(PATIENCE, sleeping),
        "s2 never started sleeping\n{}",
        read_log(&log)
    );
    let run = env.last_run();
    assert!(
        wait_until(PATIENCE, || lock_value(&env, &run).is_some_and(|l| l
            .get("step_pgid")
            .and_then(toml::Value::as_integer)
            .is_some_and(|pgid| pgid != 0))),
        "the lock never named the step's process group: {:?}",
        std::fs::read_to_string(lock_path(&env, &run))
    );
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // The step's own shell dies with its parent; the sleep it started is now an orphan.
    assert!(
        wait_until(PATIENCE, || processes_with(&sleep)
            .iter()
            .all(|(_, argv0)| argv0 != "sh")),
        "the step's shell outlived git machine: {:?}",
        processes_with(&sleep)
    );
    env.machine_ok(&["resume", &run]);
    assert_no_processes(&sleep, "after resume");
    assert_completed_once(&env, &run, "orphan", &["s1", "s2", "s3"]);
}

/// While a run executes, `resume` and `rewind` of it are refused (exit 3, naming the holder's
/// pid) and change nothing.
#[test]
fn a_run_being_executed_cannot_be_resumed_or_rewound() {
    let env = TestEnv::new();
    let t = tmp(&env);
    let steps = [
        step("s1", "echo s1 >> out.txt"),
        step(
            "s2",
            &format!(
                "echo s2 >> out.txt; touch {t}/started; while [ ! -e {t}/go ]; do sleep 0.05; done"
            ),
        ),
        step("s3", "echo s3 >> out.txt"),
    ];
    env.workflow("held", &workflow_text("held", &steps));
    let (mut child, log) = spawn_machine(&env, &["run", "held"], "run.log");
    let started = env.tmp.path().join("started");
    assert!(
        wait_until(PATIENCE, || started.exists()),
        "s2 never started\n{}",
        read_log(&log)
    );
    let run = env.last_run();
    let tip = branch_tip(&env, &run);
    let holder = format!("pid {}", child.id());
    for args in [
        vec!["resume", run.as_str()],
        vec!["rewind", run.as_str(), "s1"],
    ] {
        let r = env.machine_code(3, &args);
        assert!(
            r.stderr.contains(&holder),
            "{args:?} should name {holder}\n{r}"
        );
    }
    assert_eq!(
        branch_tip(&env, &run),
        tip,
        "a refused command moved the branch"
    );
    assert_eq!(shown_state(&env, &run), "running");
    std::fs::write(env.tmp.path().join("go"), "").expect("go");
    let status = wait_exit(&mut child, PATIENCE, &log);
    assert!(status.success(), "{status:?}\n{}", read_log(&log));
    assert_completed_once(&env, &run, "held", &["s1", "s2", "s3"]);
}

/// A lock is taken over when its holder is gone (dead pid, or a pid reused by another
/// process); the dead holder's step process group is killed first. Another host's lock is
/// respected.
#[test]
fn a_lock_left_by_a_dead_process_is_taken_over() {
    let env = TestEnv::new();
    let t = tmp(&env);
    let steps = [step(
        "s1",
        &format!("[ -e {t}/ok ] || exit 1; echo s1 >> out.txt"),
    )];
    env.workflow("stale", &workflow_text("stale", &steps));
    env.machine_code(1, &["run", "stale"]);
    let run = env.last_run();
    let lock = lock_path(&env, &run);
    let host = host_name();

    // Another machine's lock on a shared git dir: we cannot tell if it is alive.
    std::fs::write(
        &lock,
        "pid = 1\nhost = \"elsewhere.example\"\nsince = \"2026-01-01T00:00:00Z\"\n",
    )
    .expect("write lock");
    let r = env.machine_code(3, &["resume", &run]);
    assert!(r.stderr.contains("pid 1 "), "{r}");

    // This test process is alive, but it is not the process that wrote the lock.
    std::fs::write(
        &lock,
        format!(
            "pid = {}\nhost = \"{host}\"\nproc_start = 1\nsince = \"2026-01-01T00:00:00Z\"\n",
            std::process::id()
        ),
    )
    .expect("write lock");
    env.machine_code(1, &["resume", &run]); // taken over; the step still fails
    assert!(!lock.exists(), "the lock was not released");

    // A dead holder whose step group still runs.
    let mut dead = Command::new("true").spawn().expect("spawn true");
    let dead_pid = dead.id();
    dead.wait().expect("reap true");
    let sleep = sleeper(&env);
    let mut orphan = Command::new(&sleep)
        .arg("30")
        .process_group(0)
        .spawn()
        .expect("spawn a step group");
    std::fs::write(
        &lock,
        format!(
            "pid = {dead_pid}\nhost = \"{host}\"\nsince = \"2026-01-01T00:00:00Z\"\nstep_pgid = {}\n",
            orphan.id()
        ),
    )
    .expect("write lock");
    std::fs::write(env.tmp.path().join("ok"), "").expect("ok");
    env.machine_ok(&["resume", &run]);
    let mut ended = None;
    wait_until(Duration::from_secs(5), || {
        ended = orphan.try_wait().expect("try_wait");
        ended.is_some()
    });
    if ended.is_none() {
        let _ = orphan.kill();
        let _ = orphan.wait();
    }
    assert_eq!(
        ended.and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "the dead holder's step group was not killed"
    );
    assert_eq!(shown_state(&env, &run), "completed");
    let subjects = env.subjects(&run);
    assert_eq!(
        subjects.len(),
        4,
        "two failed attempts, then success: {subjects:#?}"
    );
    assert!(subjects[3].starts_with("s1: "), "{subjects:#?}");
    assert!(!lock.exists(), "the lock was not released");
}

/// Ctrl-C typed into git machine's terminal stops the step with everything it started, exits
/// 130 and leaves the run interrupted; `resume` finishes it.
#[test]
fn ctrl_c_in_a_terminal_stops_the_step_group_and_resume_finishes() {
    let env = TestEnv::new();
    let sleep = sleeper(&env);
    let t = tmp(&env);
    let steps = [
        step("s1", "echo s1 >> out.txt"),
        step(
            "s2",
            &format!(
                "if [ -e {t}/fixed ]; then echo s2 >> out.txt; else {sleep} 30 & {sleep} 31; fi"
            ),
        ),
    ];
    env.workflow("ctrlc", &workflow_text("ctrlc", &steps));

    let mut machine = OnPty::spawn(&env, &["run", "ctrlc", "--plain"]);
    let screen = || machine.screen();
    let sleepers = || {
        processes_with(&sleep)
            .iter()
            .filter(|(_, argv0)| *argv0 == sleep)
            .count()
    };
    assert!(
        wait_until(PATIENCE, || screen().contains("[2/2]") && sleepers() == 2),
        "s2 never started its two children\n{}",
        screen()
    );
    machine.ctrl_c();
    let Some(code) = machine.wait(PATIENCE) else {
        panic!(
            "git-machine kept running after Ctrl-C\n{}",
            machine.screen()
        );
    };
    assert_eq!(code, 130, "{}", machine.screen());
    assert_no_processes(&sleep, "after Ctrl-C");
    let run = env.last_run();
    assert_eq!(
        shown_state(&env, &run),
        "interrupted",
        "{}",
        machine.screen()
    );
    assert!(!lock_path(&env, &run).exists(), "the lock was not released");

    std::fs::write(env.tmp.path().join("fixed"), "").expect("fixed");
    env.machine_ok(&["resume", &run]);
    assert_completed_once(&env, &run, "ctrlc", &["s1", "s2"]);
}

/// Ctrl-C at any moment (also while git machine stages and commits a step) exits 130, never
/// as an internal error, and the run resumes: the `git` commands git machine runs are in a
/// process group of their own, so the terminal's SIGINT reaches only git machine.
#[test]
fn ctrl_c_at_any_moment_exits_130_and_the_run_resumes() {
    let env = TestEnv::new();
    let steps: Vec<Step> = (1..=8)
        .map(|i| {
            let s = format!("s{i}");
            let script = format!(
                "echo {s} >> out.txt; mkdir -p d{i}; for n in $(seq 200); do echo $n > d{i}/f$n; done"
            );
            step(&s, &script)
        })
        .collect();
    let ids: Vec<String> = (1..=8).map(|i| format!("s{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    env.workflow("busy", &workflow_text("busy", &steps));
    for attempt in 0..10u64 {
        let before = env.runs();
        let mut machine = OnPty::spawn(&env, &["run", "busy", "--plain"]);
        assert!(
            wait_until(PATIENCE, || machine.screen().contains("[1/8]")),
            "the run never started\n{}",
            machine.screen()
        );
        std::thread::sleep(Duration::from_millis(40 * attempt));
        machine.ctrl_c();
        let code = machine.wait(PATIENCE);
        assert!(
            matches!(code, Some(0 | 130)),
            "Ctrl-C after {} ms: exit {code:?}\n{}",
            40 * attempt,
            machine.screen()
        );
        let run = env
            .runs()
            .into_iter()
            .find(|r| !before.contains(r))
            .expect("the run exists");
        if code == Some(130) {
            env.machine_ok(&["resume", &run]);
        }
        assert_completed_once(&env, &run, "busy", &ids);
    }
}

/// A step past its timeout is killed with its children and recorded as failed; `resume`
/// retries it.
#[test]
fn a_timed_out_step_is_killed_with_its_children_and_resume_retries_it() {
    let env = TestEnv::new();
    let sleep = sleeper(&env);
    let t = tmp(&env);
    let mut s1 = step(
        "s1",
        &format!("if [ -e {t}/ok ]; then echo s1 >> out.txt; echo finished; exit 0; fi; {sleep} 60 & {sleep} 61"),
    );
    s1.timeout = Some("1s");
    env.workflow("slow", &workflow_text("slow", &[s1]));
    let r = env.machine_code(1, &["run", "slow"]);
    assert!(r.stderr.contains("timed out"), "{r}");
    assert_no_processes(&sleep, "after the timeout");
    let run = env.last_run();
    let status = status_json(&env, &run);
    assert_eq!(status["state"], "failed", "{status:#}");
    let failed = env.git(&[
        "log",
        "-1",
        "--format=%s%n%(trailers:key=Machine-Status,valueonly)",
        &format!("machine/{run}"),
    ]);
    assert!(failed.starts_with("s1: failed (timed out"), "{failed}");
    assert!(failed.contains("\nfailed"), "{failed}");

    std::fs::write(env.tmp.path().join("ok"), "").expect("ok");
    env.machine_ok(&["resume", &run]);
    let subjects = env.subjects(&run);
    assert_eq!(subjects.len(), 3, "{subjects:#?}");
    assert!(
        subjects[1].starts_with("s1: failed (timed out"),
        "{subjects:#?}"
    );
    assert_eq!(subjects[2], "s1: finished");
    assert_eq!(shown_state(&env, &run), "completed");
    assert_eq!(show(&env, &run, "out.txt"), "s1\n");
}

/// A step that moves its run's branch elsewhere (or deletes it) makes git machine stop with
/// exit 3 and a hint, leaving the ref as the step left it.
#[test]
fn a_branch_moved_under_the_run_is_never_overwritten() {
    let env = TestEnv::new();
    let t = tmp(&env);
    let moves = format!(
        "b=$(git symbolic-ref HEAD) && empty=$(git hash-object -w -t tree /dev/null) && \
         c=$(git commit-tree $empty -m unrelated) && git update-ref $b $c && echo $c > {t}/moved-to"
    );
    let steps = [step("s1", &moves), step("s2", "echo s2 >> out.txt")];
    env.workflow("moved", &workflow_text("moved", &steps));
    let r = env.machine_code(3, &["run", "moved"]);
    assert!(r.stderr.contains("hint:"), "{r}");
    let run = env.last_run();
    let moved_to = std::fs::read_to_string(env.tmp.path().join("moved-to")).expect("the step ran");
    assert_eq!(
        branch_tip(&env, &run),
        moved_to.trim(),
        "the moved branch was overwritten"
    );
    assert!(!lock_path(&env, &run).exists(), "the lock was not released");

    let steps = [
        step("s1", "git update-ref -d $(git symbolic-ref HEAD)"),
        step("s2", "true"),
    ];
    env.workflow("deleted", &workflow_text("deleted", &steps));
    let before = env.runs();
    let r = env.machine_code(3, &["run", "deleted"]);
    assert!(
        r.stderr.contains("hint:") || r.stderr.contains("deleted"),
        "{r}"
    );
    assert_eq!(env.runs(), before, "the deleted branch was recreated");
}

/// Worktrees, locks and logs are disposable: `resume` rebuilds what it needs.
#[test]
fn resume_survives_the_loss_of_everything_under_git_machine() {
    let env = TestEnv::new();
    let t = tmp(&env);
    let steps = [
        step("s1", "echo s1 >> out.txt"),
        step(
            "s2",
            &format!("[ -e {t}/ok2 ] || exit 1; echo s2 >> out.txt"),
        ),
        step(
            "s3",
            &format!("[ -e {t}/ok3 ] || exit 1; echo s3 >> out.txt"),
        ),
    ];
    env.workflow("lossy", &workflow_text("lossy", &steps));
    env.machine_code(1, &["run", "lossy"]);
    let run = env.last_run();
    let worktree = env.worktree(&run);

    std::fs::remove_dir_all(&worktree).expect("rm -rf the worktree");
    std::fs::write(env.tmp.path().join("ok2"), "").expect("ok2");
    env.machine_code(1, &["resume", &run]); // s2 passes now, s3 fails
    assert!(
        worktree.join(".git").exists(),
        "the worktree was not rebuilt"
    );
    assert_eq!(status_json(&env, &run)["next"], "s3");

    std::fs::remove_dir_all(env.common_dir().join("machine")).expect("rm -rf .git/machine");
    std::fs::write(env.tmp.path().join("ok3"), "").expect("ok3");
    env.machine_ok(&["resume", &run]);
    assert_eq!(show(&env, &run, "out.txt"), "s1\ns2\ns3\n");
    assert_eq!(shown_state(&env, &run), "completed");
    // Registered once: the user's checkout and the completed run's worktree, now pooled.
    let listed = env.git(&["worktree", "list", "--porcelain"]);
    let entries = listed
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count();
    assert_eq!(entries, 2, "{listed}");
}

/// `run`, `resume` and `rewind` never change the user's checkout: HEAD, index, files, stash.
#[test]
fn the_users_dirty_checkout_is_never_touched() {
    let env = TestEnv::new();
    let t = tmp(&env);
    env.write("README.md", "# stashed edit\n");
    env.git(&["stash", "-q"]);
    env.write("README.md", "# test project\nstaged line\n");
    env.git(&["add", "README.md"]);
    env.write("README.md", "# test project\nstaged line\nunstaged line\n");
    env.write("staged.txt", "new and staged\n");
    env.git(&["add", "staged.txt"]);
    env.write("untracked.txt", "untracked\n");
    let steps = [
        step(
            "s1",
            "echo s1 >> out.txt; echo changed by the run > README.md; git add -A",
        ),
        step(
            "s2",
            &format!("[ -e {t}/ok ] || exit 1; echo s2 >> out.txt"),
        ),
    ];
    env.workflow("polite", &workflow_text("polite", &steps));
    let before = env.user_state();
    let readme = env.read("README.md");

    env.machine_code(1, &["run", "polite"]);
    assert_eq!(env.user_state(), before, "after run");
    let run = env.last_run();
    env.machine_ok(&["rewind", &run, "s1"]);
    assert_eq!(env.user_state(), before, "after rewind");
    std::fs::write(env.tmp.path().join("ok"), "").expect("ok");
    env.machine_ok(&["resume", &run]);
    assert_eq!(env.user_state(), before, "after resume");
    assert_eq!(env.read("README.md"), readme);
    assert_eq!(env.git(&["stash", "list"]).lines().count(), 1);

    // The run started from the commit, not from the dirty files.
    assert_eq!(show(&env, &run, "README.md"), "changed by the run\n");
    let start = format!("machine/{run}~2:README.md");
    assert_eq!(env.git(&["show", &start]), "# test project\n");
    assert!(!env
        .git_output(&["cat-file", "-e", &format!("machine/{run}:staged.txt")])
        .status
        .success());
    assert_eq!(show(&env, &run, "out.txt"), "s1\ns2\n");
}

/// Killed inside a ref transaction (or with a step's `git` killed mid-command), git machine
/// leaves git's own lock files behind; a resume removes them rather than failing forever.
#[test]
fn resume_removes_git_lock_files_left_by_a_killed_process() {
    let env = TestEnv::new();
    let t = tmp(&env);
    let steps = [
        step("s1", "echo s1 >> out.txt"),
        step(
            "s2",
            &format!("[ -e {t}/ok ] || exit 1; echo s2 >> out.txt"),
        ),
    ];
    env.workflow("locked", &workflow_text("locked", &steps));
    env.machine_code(1, &["run", "locked"]);
    let run = env.last_run();
    let ref_lock = env
        .common_dir()
        .join(format!("refs/heads/machine/{run}.lock"));
    std::fs::write(&ref_lock, "").expect("ref lock");
    let attempts = env
        .common_dir()
        .join(format!("refs/machine/attempts/{run}"));
    std::fs::create_dir_all(&attempts).expect("attempts dir");
    let attempt_lock = attempts.join("02-interrupted.lock");
    std::fs::write(&attempt_lock, "").expect("attempt ref lock");
    let git_path = env.worktree(&run);
    let index_lock = Command::new("git")
        .current_dir(&git_path)
        .args([
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            "index.lock",
        ])
        .output()
        .expect("git rev-parse");
    let index_lock = PathBuf::from(String::from_utf8_lossy(&index_lock.stdout).trim());
    std::fs::write(&index_lock, "").expect("index lock");
    // The step left work in the worktree, so the resume must stage it (needs the index lock).
    std::fs::write(git_path.join("debris.txt"), "left by the killed step\n").expect("debris");

    std::fs::write(env.tmp.path().join("ok"), "").expect("ok");
    env.machine_ok(&["resume", &run]);
    for lock in [&ref_lock, &attempt_lock, &index_lock] {
        assert!(!lock.exists(), "{} is still there", lock.display());
    }
    assert_eq!(shown_state(&env, &run), "completed");
    assert_eq!(show(&env, &run, "out.txt"), "s1\ns2\n");
}

/// Whether a process is gone (or a zombie waiting for its parent to read its end).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Regression: killed with SIGKILL, git machine left the step's own children running (a
/// `sleep` the step started survived); the whole process group now ends with it.
#[test]
fn kill_9_of_git_machine_ends_everything_the_step_started() {
    let env = TestEnv::new();
    let pids = env.path("pids");
    env.workflow(
        "bg",
        &format!(
            "version = 1\nname = \"bg\"\n[[steps]]\nid = \"bg\"\nengine = \"command\"\nrun = [\"sh\", \"-c\", \"sleep 300 & echo $! > '{p}.tmp'; mv '{p}.tmp' '{p}'; sleep 300\"]\n",
            p = pids.display()
        ),
    );
    let mut child = env
        .machine_cmd(&["run", "bg"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !pids.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the step never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sleeper: i32 = std::fs::read_to_string(&pids)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(!gone(sleeper), "the step's child runs");
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gone(sleeper) {
        assert!(
            std::time::Instant::now() < deadline,
            "the step's child {sleeper} outlived git machine"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A workflow of four steps; `wait-a`, `wait-b` and `last` each wait for their gate file.
fn gated(env: &TestEnv) -> [std::path::PathBuf; 3] {
    let gates = ["a", "b", "c"].map(|g| env.path(&format!("gate-{g}")));
    let wait = |g: &std::path::Path, out: &str| {
        format!(
            "[\"sh\", \"-c\", \"echo waiting for gate {out}; i=0; while [ ! -e '{}' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; echo {out} > {out}.txt\"]",
            g.display()
        )
    };
    env.workflow(
        "gated",
        &format!(
            "version = 1\nname = \"gated\"\n[defaults]\nengine = \"command\"\n[[steps]]\nid = \"one\"\nrun = [\"sh\", \"-c\", \"echo 1 > one.txt\"]\n[[steps]]\nid = \"wait-a\"\nrun = {}\n[[steps]]\nid = \"wait-b\"\nrun = {}\n[[steps]]\nid = \"last\"\nrun = {}\n",
            wait(&gates[0], "a"),
            wait(&gates[1], "b"),
            wait(&gates[2], "c")
        ),
    );
    gates
}

/// The live view on a real terminal 40 columns wide: it shows the steps as they run; `s` skips
/// the running step (recorded as skipped, by whom), `p` pauses once the step is committed, `q`
/// stops a resumed run (resumable); every frame fits the width, and the terminal gets its
/// cursor back.
#[test]
fn the_live_view_shows_the_steps_and_its_keys_skip_pause_and_stop() {
    let env = TestEnv::new();
    let gates = gated(&env);
    let mut view = OnPty::spawn_sized(&env, &["run", "gated"], 40);
    assert!(
        wait_until(PATIENCE, || view.text().contains("▶ wait-a")),
        "wait-a never showed as running\n{}",
        view.text()
    );
    view.key(b'd');
    assert!(
        wait_until(PATIENCE, || view.text().contains("one.txt  +1 -0")),
        "d never showed the files of the last committed step\n{}",
        view.text()
    );
    view.key(b'l');
    view.key(b's');
    assert!(
        wait_until(PATIENCE, || view.text().contains("▶ wait-b")),
        "wait-b never started after the skip\n{}",
        view.text()
    );
    view.key(b'p');
    // Opened only once the view took the key: under load, a gate opened first let wait-b
    // finish before the pause was asked, and the run went on to wait at the next gate.
    assert!(
        wait_until(PATIENCE, || view.text().contains("pause asked")),
        "p was never taken\n{}",
        view.text()
    );
    std::fs::write(&gates[1], "").expect("open gate b");
    let code = view.wait(PATIENCE).expect("the run pauses and exits");
    let text = view.text();
    assert_eq!(code, 1, "paused\n{text}");
    assert!(text.contains("↷ wait-a"), "{text}");
    assert!(text.contains("paused"), "{text}");
    // The view's frames, before the error message that follows it (wrapped by the terminal).
    for line in text.lines().take_while(|l| !l.contains("error:")) {
        let line = line.trim_end_matches('\r');
        assert!(
            line.chars().count() <= 40,
            "wider than the terminal: {line:?}"
        );
    }
    assert!(
        view.screen().contains("\x1b[?25h"),
        "the cursor is shown again"
    );
    let run = env.last_run();
    let log = env.machine_ok(&["log", &run]);
    assert!(
        log.stdout.contains("skipped") && log.stdout.contains("skipped by"),
        "{log}"
    );
    assert!(!env
        .git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")])
        .contains("a.txt"));
    let mut resumed = OnPty::spawn_sized(&env, &["resume", &run], 40);
    assert!(
        wait_until(PATIENCE, || resumed.text().contains("▶ last")),
        "last never showed as running\n{}",
        resumed.text()
    );
    resumed.key(b'q');
    let code = resumed.wait(PATIENCE).expect("q stops the run");
    assert_eq!(code, 130, "{}", resumed.text());
    // Resumed without edits, the pause is still reviewed (an empty commit): the run no longer
    // says paused once the step after it is stopped.
    assert_eq!(shown_state(&env, &run), "interrupted");
    let subjects = env.git(&["log", "--format=%s", &format!("machine/{run}")]);
    assert!(
        subjects.contains("review: no changes after `wait-b`"),
        "{subjects}"
    );
    std::fs::write(&gates[2], "").expect("open gate c");
    env.machine_ok(&["resume", &run, "--plain"]);
}

/// `watch` of a detached run shows the live view, and its keys act on that run: `s` skips the
/// running step there; Ctrl-C ends only the watching.
#[test]
fn watch_shows_a_detached_run_and_its_keys_reach_it() {
    let env = TestEnv::new();
    let gates = gated(&env);
    let run = env
        .machine_ok(&["run", "gated", "--detach"])
        .stdout
        .trim()
        .to_string();
    let mut view = OnPty::spawn_sized(&env, &["watch", &run], 80);
    assert!(
        wait_until(PATIENCE, || view.text().contains("▶ wait-a")),
        "watch never showed wait-a running\n{}",
        view.text()
    );
    assert!(
        wait_until(PATIENCE, || view.text().contains("waiting for gate a")),
        "watch never showed the step's activity (from the event log)\n{}",
        view.text()
    );
    view.key(b's');
    assert!(
        wait_until(PATIENCE, || view.text().contains("▶ wait-b")),
        "the skip never reached the run\n{}",
        view.text()
    );
    view.ctrl_c();
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());
    assert!(view.text().contains("stopped watching"), "{}", view.text());
    std::fs::write(&gates[1], "").expect("open gate b");
    std::fs::write(&gates[2], "").expect("open gate c");
    let finished = || env.machine(&["status", &run]).stdout.contains("completed");
    assert!(wait_until(PATIENCE, finished), "the run went on to the end");
    let log = env.machine_ok(&["log", &run]);
    assert!(log.stdout.contains("skipped by"), "{log}");
}

/// After the terminal is made narrower mid-run, every frame the live view draws fits it.
#[test]
fn the_live_view_follows_a_resize() {
    let env = TestEnv::new();
    let gates = gated(&env);
    let view = OnPty::spawn_sized(&env, &["run", "gated"], 120);
    assert!(
        wait_until(PATIENCE, || view.text().contains("▶ wait-a")),
        "wait-a never showed as running\n{}",
        view.text()
    );
    let before = view.text().len();
    view.resize(40);
    std::thread::sleep(Duration::from_millis(600));
    let after = view.text()[before..].to_string();
    assert!(
        after.contains("wait-a"),
        "the view was redrawn after the resize\n{after}"
    );
    for line in after.lines() {
        let line = line.trim_end_matches('\r');
        assert!(
            line.chars().count() <= 40,
            "wider than the terminal: {line:?}"
        );
    }
    for gate in &gates {
        std::fs::write(gate, "").expect("open the gates");
    }
    let mut view = view;
    assert_eq!(view.wait(PATIENCE), Some(0), "{}", view.text());
}
