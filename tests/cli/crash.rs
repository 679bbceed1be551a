//! SIGKILL at seeded pseudo-random moments and at named crash windows, then resume — again and
//! again — until the run is done; after each run: the code equals an uninterrupted run's, every
//! step is in the first-parent history once per pass, git's store is sound (`git fsck --full`,
//! every ref names an object that exists) and nothing is left behind (worktrees, locks, temp
//! files) once `gc` has cleared the finished run.
//!
//! The workflow has every kind of transition: sequential command steps, an agent step (the fake
//! agent as Claude Code), a parallel group and its merge, a loop whose gate sends the run back
//! twice, and a checkpoint that pauses the run for a review.
//!
//! Random delays rarely hit the short windows (a commit, a ref update), so the binary built with
//! `test-fakes` also reads `MACHINE_TEST_CRASH_AT=<point>:<n>`: it SIGKILLs itself the `n`-th
//! time it passes `<point>` (`crate::env::crash` in the source; the points are listed in
//! docs/reliability.md). The seed is printed; `MACHINE_TEST_SEED=<n>` replays or explores.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestEnv;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-agent");
const DEFAULT_SEED: u64 = 20261130;

/// Every kind of transition a run has (see the module header).
pub(crate) const WORKFLOW: &str = r#"version = 1
name = "crashy"
description = "every kind of transition"

[defaults]
engine = "command"

[[steps]]
id = "prep"
run = ["sh", "-c", "echo prep >> out.txt"]

[[steps]]
id = "agent"
engine = "claude"
prompt = '''
FAKE_WRITE agent.txt written by the agent
FAKE_REPLY done
'''

[[steps]]
id = "left"
group = "g"
run = ["sh", "-c", "echo left > left.txt; sleep 0.05"]

[[steps]]
id = "right"
group = "g"
run = ["sh", "-c", "echo right > right.txt"]

[[steps]]
id = "work"
run = ["sh", "-c", "echo pass >> loop.txt"]

[[steps]]
id = "check"
run = ["true"]
loop = { to = "work", max = 5, until = { run = ["sh", "-c", "test $(wc -l < loop.txt) -ge 3"] } }

[[steps]]
id = "approve"
run = ["sh", "-c", "echo approve >> out.txt"]
checkpoint = true

[[steps]]
id = "last"
run = ["sh", "-c", "echo last >> out.txt"]
"#;

/// Named crash windows (`crate::env::crash::point` in the source) and how many times an
/// uninterrupted run of [`WORKFLOW`] passes each, at most, in one process.
const POINTS: &[(&str, u32)] = &[
    ("worktree-added", 3),
    ("step-ran", 9),
    ("staged", 10),
    ("packed", 10),
    ("packs-merged", 1),
    ("committed", 14),
    ("published", 14),
    ("reset", 3),
    ("member-committed", 2),
    ("merged", 1),
    ("looped", 3),
    ("refs-moved", 2),
    ("moved", 6),
];

pub(crate) fn seed() -> u64 {
    let seed = std::env::var("MACHINE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("seed {seed} (MACHINE_TEST_SEED overrides it)");
    seed
}

/// A test repository whose `claude` is the fake agent.
pub(crate) struct Bench {
    pub env: TestEnv,
    agents: PathBuf,
}

impl Bench {
    pub fn new() -> Bench {
        let env = TestEnv::new();
        let agents = env.tmp.path().join("agents");
        std::fs::create_dir_all(&agents).expect("agents dir");
        std::os::unix::fs::symlink(FAKE, agents.join("claude")).expect("link fake claude");
        Bench { env, agents }
    }

    /// `git machine <args>` with the fake agent, optionally armed to crash at `at`.
    pub fn cmd(&self, args: &[&str], at: Option<&str>) -> Command {
        let mut cmd = self.env.machine_cmd(args);
        cmd.env("MACHINE_CLAUDE_BIN", self.agents.join("claude"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(at) = at {
            cmd.env("MACHINE_TEST_CRASH_AT", at);
        }
        cmd
    }

    /// The command line that goes on with `run` (or starts it).
    pub fn next_args<'a>(&self, run: &'a Option<String>, workflow: &'a str) -> Vec<&'a str> {
        match run {
            None => vec!["run", workflow],
            Some(id) => vec!["resume", id.as_str()],
        }
    }

    /// The run a `run` command created, if it got that far.
    pub fn new_run(&self, before: &[String]) -> Option<String> {
        self.env.runs().into_iter().find(|r| !before.contains(r))
    }
}

/// How an invocation ended.
#[derive(Debug, PartialEq)]
pub(crate) enum End {
    Killed,
    /// Exit 0: the run is complete.
    Done,
    /// Exit 1 with the run paused (the checkpoint): go on with `resume`.
    Paused,
}

/// Classify an exit; anything else than a kill, done or a pause fails the test.
pub(crate) fn classify(env: &TestEnv, run: Option<&str>, status: ExitStatus, err: &str) -> End {
    if status.signal() == Some(libc::SIGKILL) {
        return End::Killed;
    }
    match status.code() {
        Some(0) => End::Done,
        Some(1) if run.is_some_and(|r| state(env, r) == "paused") => End::Paused,
        _ => panic!("unexpected end {status:?}\n{err}"),
    }
}

pub(crate) fn state(env: &TestEnv, run: &str) -> String {
    let r = env.machine_ok(&["status", run, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON: {e}\n{r}"));
    v["state"].as_str().expect("a state").to_string()
}

fn wait_child(child: &mut Child) -> (ExitStatus, String) {
    let out = std::mem::replace(child, Command::new("true").spawn().expect("spawn true"))
        .wait_with_output()
        .expect("wait");
    let _ = child.wait();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The code of a commit: every path and blob, git machine's own run folder left out.
pub(crate) fn code_of(env: &TestEnv, rev: &str) -> String {
    env.git(&["ls-tree", "-r", rev])
        .lines()
        .filter(|l| !l.contains("\t.codemachine/runs/"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The first-parent history as step ids (the subject before its first `:`), members'
/// checkpoints left out.
pub(crate) fn step_sequence(env: &TestEnv, run: &str) -> Vec<String> {
    env.subjects(run)
        .iter()
        .map(|s| s.split(':').next().unwrap_or_default().to_string())
        .collect()
}

/// git's store is sound: `git fsck --full` finds nothing but unreachable objects (a killed
/// commit leaves one, which is no corruption), and every ref names an object that exists.
pub(crate) fn assert_sound(env: &TestEnv) {
    let fsck = env.git_output(&["fsck", "--full", "--no-dangling", "--no-progress"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    assert!(
        fsck.status.success() && said.trim().is_empty(),
        "git fsck --full: {said}"
    );
    let refs = env.git(&["for-each-ref", "--format=%(objectname) %(refname)"]);
    for line in refs.lines() {
        let (oid, name) = line.split_once(' ').expect("oid and name");
        let exists = env.git_output(&["cat-file", "-e", oid]).status.success();
        assert!(exists, "{name} points at a missing object {oid}");
    }
}

/// Files a killed process may leave that git machine must clean up: git's lock files (the
/// flock file git machine keeps to serialise `worktree add` is not one), temp objects, half
/// written locks of git machine's own.
pub(crate) fn leftovers(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .map(|e| e.into_path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // Two lock files are for flock and stay: worktree additions, the pool.
            (name.ends_with(".lock") && name != "worktree-add.lock" && name != "pool.lock")
                || name.starts_with("tmp_")
                || name.starts_with("pack_git2_")
                || name.contains(".stale-")
                || name.ends_with(".tmp")
        })
        .collect()
}

/// The run locks held in the repository (none once every command has ended).
pub(crate) fn held_locks(env: &TestEnv) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(env.common_dir().join("machine/locks"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name())
        .collect()
}

/// Worktrees git knows, as (path, prunable).
pub(crate) fn worktrees(env: &TestEnv) -> Vec<(String, bool)> {
    env.git(&["worktree", "list", "--porcelain"])
        .split("\n\n")
        .filter_map(|block| {
            let path = block
                .lines()
                .find_map(|l| l.strip_prefix("worktree "))?
                .to_string();
            Some((path, block.lines().any(|l| l.starts_with("prunable"))))
        })
        .collect()
}

fn cache_entries(env: &TestEnv) -> Vec<String> {
    let root = env.tmp.path().join("cache/git-machine/worktrees");
    let mut found = Vec::new();
    for repo in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(repo.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    found
}

/// The user's checkout is as it was (`user`, its state before), and every run, the reference
/// run too, left nothing behind ([`assert_clean_after`]).
fn assert_all_clean(env: &TestEnv, user: &str) {
    assert_eq!(env.user_state(), user, "the user's checkout changed");
    let mut all = env.runs();
    all.sort();
    assert_clean_after(env, &all);
}

/// Nothing is left behind by a finished run: only its own worktree (no member's, none
/// prunable), no lock, no temp file; and after `gc`, not even its worktree.
pub(crate) fn assert_clean_after(env: &TestEnv, runs: &[String]) {
    let listed = worktrees(env);
    assert!(
        listed.iter().all(|(_, prunable)| !prunable),
        "prunable worktrees: {listed:?}"
    );
    // Besides the user's checkout and the pool (where a completed run's clean worktree
    // goes), only the runs' own worktrees: no member's.
    for (path, _) in listed.iter().skip(1).filter(|(p, _)| !p.contains("/pool/")) {
        assert!(
            runs.iter().any(|run| path.ends_with(&format!("/{run}"))),
            "a worktree that is no run's: {listed:?}"
        );
    }
    let locks = env.common_dir().join("machine/locks");
    let held = held_locks(env);
    assert!(
        held.is_empty(),
        "locks left in {}: {held:?}",
        locks.display()
    );
    // A process killed while writing an object leaves its temp file, one killed while
    // creating a run's branch the branch's lock (that run never existed, so no command of it
    // removes the lock); `gc` removes those an hour old (a live writer's is younger): here
    // they are made that old.
    let (temps, left): (Vec<PathBuf>, Vec<PathBuf>) =
        leftovers(&env.common_dir()).into_iter().partition(|p| {
            let never_created = p.extension().is_some_and(|x| x == "lock")
                && p.starts_with(env.common_dir().join("refs/heads/machine"))
                && !p.with_extension("").exists();
            p.starts_with(env.common_dir().join("objects")) || never_created
        });
    assert!(left.is_empty(), "left in the git dir: {left:?}");
    let cache = env.tmp.path().join("cache/git-machine");
    let left = leftovers(&cache);
    assert!(left.is_empty(), "left in the worktree cache: {left:?}");
    let past = std::time::SystemTime::now() - Duration::from_secs(7200);
    for t in &temps {
        let f = std::fs::File::options()
            .append(true)
            .open(t)
            .expect("temp file");
        f.set_modified(past).expect("age the temp file");
    }
    let gc = env.machine_ok(&["gc"]);
    if !temps.is_empty() {
        eprintln!("temporary files left by kills: {temps:?}");
        assert!(gc.stdout.contains("file(s) a killed process left"), "{gc}");
    }
    let left = leftovers(&env.common_dir());
    assert!(left.is_empty(), "left in the git dir after gc: {left:?}");
    let listed = worktrees(env);
    assert_eq!(listed.len(), 1, "worktrees after gc: {listed:?}");
    let entries = cache_entries(env);
    assert!(entries.is_empty(), "the cache after gc: {entries:?}");
}

/// What an uninterrupted run of [`WORKFLOW`] leaves: its code and its step sequence.
struct Reference {
    code: String,
    steps: Vec<String>,
    took: Duration,
}

fn reference(bench: &Bench) -> Reference {
    let env = &bench.env;
    let started = Instant::now();
    let before = env.runs();
    let mut run = None;
    loop {
        let args = bench.next_args(&run, "crashy");
        let mut child = bench.cmd(&args, None).spawn().expect("spawn");
        let (status, err) = wait_child(&mut child);
        run = run.or_else(|| bench.new_run(&before));
        match classify(env, run.as_deref(), status, &err) {
            End::Done => break,
            End::Paused => continue,
            End::Killed => panic!("nothing killed the reference run"),
        }
    }
    let run = run.expect("the reference run exists");
    let steps = step_sequence(env, &run);
    assert_eq!(
        steps,
        [
            "start", "prep", "agent", "g", "work", "check", "work", "check", "work", "check",
            "approve", "review", "last"
        ],
        "the reference run"
    );
    let tip = format!("machine/{run}");
    assert_eq!(
        env.git(&["show", &format!("{tip}:out.txt")]),
        "prep\napprove\nlast\n"
    );
    Reference {
        code: code_of(env, &tip),
        steps,
        took: started.elapsed(),
    }
}

/// The run is complete and equals the reference.
fn assert_like_reference(env: &TestEnv, run: &str, want: &Reference, what: &str) {
    assert_eq!(state(env, run), "completed", "{what}");
    assert_eq!(
        code_of(env, &format!("machine/{run}")),
        want.code,
        "{what}: the code differs from an uninterrupted run's"
    );
    assert_eq!(step_sequence(env, run), want.steps, "{what}: the history");
}

/// One invocation (`run` or `resume`), killed from outside after `delay` if still running.
fn invoke_killed_after(bench: &Bench, args: &[&str], delay: Duration) -> (ExitStatus, String) {
    let mut child = bench.cmd(args, None).spawn().expect("spawn");
    let end = Instant::now() + delay;
    while Instant::now() < end {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    wait_child(&mut child)
}

/// Runs of the workflow killed with SIGKILL after seeded random delays (each invocation, the
/// start and every resume, gets its own), resumed until they complete.
#[test]
fn sigkill_at_seeded_random_moments_then_resume_until_done() {
    let bench = Bench::new();
    let env = &bench.env;
    env.workflow("crashy", WORKFLOW);
    let want = reference(&bench);
    let user = env.user_state();
    let mut rng = fastrand::Rng::with_seed(seed());
    // An invocation runs at most up to the pause, about half of the whole.
    let window = want.took.as_millis() as u64 / 2 + 50;
    let mut kills = 0;
    let mut runs = Vec::new();
    // Chains until 30 kills landed (how many land depends on the machine's speed).
    let mut chain = 0;
    while kills < 30 && chain < 20 {
        chain += 1;
        let before = env.runs();
        let mut run = None;
        let mut invocations = 0;
        loop {
            let args = bench.next_args(&run, "crashy");
            // After ten tries in one chain, let it finish.
            let delay = if invocations < 10 {
                Duration::from_millis(rng.u64(0..window))
            } else {
                Duration::from_secs(120)
            };
            invocations += 1;
            let (status, err) = invoke_killed_after(&bench, &args, delay);
            run = run.or_else(|| bench.new_run(&before));
            match classify(env, run.as_deref(), status, &err) {
                End::Killed => kills += 1,
                End::Paused => {}
                End::Done => break,
            }
            if let Some(r) = &run {
                state(env, r); // the state is readable after every kill
            }
        }
        let run = run.expect("a run was created");
        assert_like_reference(env, &run, &want, &format!("chain {chain} ({run})"));
        assert_sound(env);
        runs.push(run);
    }
    eprintln!(
        "faults injected: {kills} kills at random moments in {chain} runs, window {window} ms"
    );
    assert!(kills >= 30, "only {kills} kills landed in {chain} runs");
    assert_all_clean(env, &user);
}

/// Every named crash window, hit at seeded passes: each invocation is armed with the next
/// `<point>:<n>` until one runs past its window and completes the run.
#[test]
fn sigkill_at_every_named_crash_window_then_resume_until_done() {
    let bench = Bench::new();
    let env = &bench.env;
    env.workflow("crashy", WORKFLOW);
    let want = reference(&bench);
    let user = env.user_state();
    let mut rng = fastrand::Rng::with_seed(seed());
    let mut kills = Vec::new();
    for (point, passes) in POINTS {
        let before = env.runs();
        let mut run = None;
        let mut n = 1;
        // The first invocation dies after a step's program ran, before its commit: the
        // resumes then also keep what it left (an attempt ref) and reset the worktree.
        let mut first =
            (*point != "worktree-added").then(|| format!("step-ran:{}", 1 + rng.u32(0..2)));
        loop {
            let args = bench.next_args(&run, "crashy");
            let opening = first.take();
            let at = opening.clone().unwrap_or_else(|| format!("{point}:{n}"));
            let mut child = bench.cmd(&args, Some(&at)).spawn().expect("spawn");
            let (status, err) = wait_child(&mut child);
            run = run.or_else(|| bench.new_run(&before));
            match classify(env, run.as_deref(), status, &err) {
                End::Killed => kills.push(at),
                End::Paused => {}
                End::Done => break,
            }
            if let Some(r) = &run {
                state(env, r);
            }
            // Past the pauses and the windows the run still has, this ends: each resume gets
            // at least as far before its crash as the one before did.
            if opening.is_none() {
                n += rng.u32(1..3);
            }
            assert!(n <= passes * 3 + 6, "{point}: the run never completed");
        }
        let run = run.expect("a run was created");
        assert_like_reference(env, &run, &want, &format!("crashes at {point} ({run})"));
        assert_sound(env);
    }
    for (point, _) in POINTS {
        assert!(
            kills.iter().any(|k| k.starts_with(&format!("{point}:"))),
            "no crash at {point}: {kills:?}"
        );
    }
    eprintln!(
        "faults injected: {} kills at named windows: {kills:?}",
        kills.len()
    );
    assert!(kills.len() >= 30, "only {} kills", kills.len());
    assert_all_clean(env, &user);
}

/// A "reboot": git machine killed mid-run with everything it started, then the whole worktree
/// cache and git machine's folder in the git dir (locks, sessions, logs) deleted. `resume`
/// makes the worktree again and the run ends as an uninterrupted one.
#[test]
fn after_a_reboot_that_lost_every_worktree_resume_finishes_the_run() {
    let bench = Bench::new();
    let env = &bench.env;
    env.workflow("crashy", WORKFLOW);
    let want = reference(&bench);
    for at in ["member-committed:1", "looped:2"] {
        let before = env.runs();
        let mut child = bench
            .cmd(&["run", "crashy"], Some(at))
            .spawn()
            .expect("spawn");
        let (status, err) = wait_child(&mut child);
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{at}: {err}");
        let run = bench.new_run(&before).expect("the run exists");
        std::fs::remove_dir_all(env.tmp.path().join("cache")).expect("rm -rf the cache");
        std::fs::remove_dir_all(env.common_dir().join("machine")).expect("rm -rf .git/machine");
        loop {
            let mut child = bench.cmd(&["resume", &run], None).spawn().expect("spawn");
            let (status, err) = wait_child(&mut child);
            match classify(env, Some(&run), status, &err) {
                End::Done => break,
                End::Paused => continue,
                End::Killed => unreachable!("nothing kills it"),
            }
        }
        assert_like_reference(env, &run, &want, &format!("reboot at {at}"));
        assert_sound(env);
        let listed = worktrees(env);
        // Its worktree is at its path or, clean, in the pool; never prunable.
        let mine: Vec<_> = listed.iter().filter(|(p, _)| p.contains(&run)).collect();
        assert!(mine.len() <= 1, "{at}: {listed:?}");
        assert!(
            mine.iter().all(|(_, prunable)| !prunable),
            "{at}: prunable {listed:?}"
        );
    }
    // The reference run's worktree went with the cache: git still lists it (prunable) until
    // gc removes its entry with the other completed runs' worktrees.
    env.machine_ok(&["gc"]);
    let listed = worktrees(env);
    assert_eq!(listed.len(), 1, "after gc: {listed:?}");
}

/// Regression (found by the random kills): a process killed inside a ref update leaves
/// `<ref>.lock`; the resume failed on it with exit 101 ("failed to lock file"). The run's own
/// ref locks are stale once its run lock is held: resume (and rm, rewind, a return to the
/// controller) removes them and goes on.
#[test]
fn a_ref_lock_left_by_a_kill_does_not_stop_the_resume() {
    let env = TestEnv::new();
    env.workflow(
        "flaky",
        "version = 1\nname = \"flaky\"\n[[steps]]\nid = \"one\"\nrun = [\"sh\", \"-c\", \"test -f \\\"$HOME/pass\\\" && echo one > one.txt\"]\n",
    );
    env.machine_code(1, &["run", "flaky"]);
    let run = env.last_run();
    let refs = env.common_dir().join("refs");
    std::fs::write(refs.join(format!("heads/machine/{run}.lock")), "").expect("branch lock");
    let member = refs.join(format!("machine/parallel/{run}"));
    std::fs::create_dir_all(&member).expect("folder");
    std::fs::write(member.join("left.lock"), "").expect("member ref lock");
    std::fs::write(env.home.join("pass"), "").expect("pass");
    env.machine_ok(&["resume", &run]);
    assert_eq!(state(&env, &run), "completed");
    assert!(leftovers(&refs).is_empty(), "{:?}", leftovers(&refs));
    // The same for `rm`, which deletes the branch.
    std::fs::write(refs.join(format!("heads/machine/{run}.lock")), "").expect("branch lock");
    env.machine_ok(&["rm", &run, "--branch"]);
    assert!(env.runs().is_empty(), "the run's branch is gone");
}
