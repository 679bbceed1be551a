//! Concurrency: several runs in one repository at once while the user works in their own
//! checkout; and `resume`, `rewind`, `rm`, `stop`, `apply` racing on one run, round after
//! round. Whatever overlaps, the commands that exclude each other (they take the run's lock)
//! let one in and refuse the others with exit 3 naming the winner's pid; the run stays sound
//! and resumable.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::TestEnv;
use crate::crash::{assert_sound, leftovers, seed, worktrees};

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A workflow of command steps `(id, script)`, optionally in a group.
fn workflow(name: &str, steps: &[(&str, &str, Option<&str>)]) -> String {
    let mut text = format!(
        "version = 1\nname = {}\n\n[defaults]\nengine = \"command\"\n",
        quote(name)
    );
    for (id, script, group) in steps {
        text.push_str(&format!(
            "\n[[steps]]\nid = {}\nrun = [\"sh\", \"-c\", {}]\n",
            quote(id),
            quote(script)
        ));
        if let Some(g) = group {
            text.push_str(&format!("group = {}\n", quote(g)));
        }
    }
    text
}

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    env.machine_cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn git-machine")
}

/// Four runs at once, each with a parallel group, while the user commits on their branch in
/// the main checkout: all complete with their own history, and the user's branch, index and
/// files are exactly what the user made them.
#[test]
fn four_runs_at_once_while_the_user_commits_in_the_main_checkout() {
    let env = TestEnv::new();
    env.workflow(
        "busy",
        &workflow(
            "busy",
            &[
                ("one", "echo one >> out.txt; sleep 0.1", None),
                ("a", "echo a > a.txt; sleep 0.1", Some("g")),
                ("b", "echo b > b.txt", Some("g")),
                ("two", "echo two >> out.txt", None),
            ],
        ),
    );
    env.git(&["add", ".codemachine"]);
    env.git(&["commit", "-q", "-m", "workflow"]);
    let children: Vec<Child> = (0..4).map(|_| spawn(&env, &["run", "busy"])).collect();
    let mut commits = 0;
    for i in 0..12 {
        env.write("mine.txt", &format!("edit {i}\n"));
        env.git(&["add", "mine.txt"]);
        env.git(&["commit", "-q", "-m", &format!("user edit {i}")]);
        commits += 1;
        std::thread::sleep(Duration::from_millis(30));
    }
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The user's branch: their commits alone, on top of the workflow commit, and a clean
    // checkout holding their last edit.
    let log = env.git(&["log", "--format=%s", "main"]);
    let mine: Vec<&str> = log.lines().take(commits).collect();
    let expected: Vec<String> = (0..commits)
        .rev()
        .map(|i| format!("user edit {i}"))
        .collect();
    assert_eq!(mine, expected);
    assert_eq!(log.lines().count(), commits + 2, "{log}");
    assert_eq!(env.git(&["symbolic-ref", "HEAD"]).trim(), "refs/heads/main");
    assert_eq!(env.git(&["status", "--porcelain"]), "");
    assert_eq!(env.read("mine.txt"), format!("edit {}\n", commits - 1));
    let runs = env.runs();
    assert_eq!(runs.len(), 4, "{runs:?}");
    for run in &runs {
        let steps = crate::crash::step_sequence(&env, run);
        assert_eq!(steps, ["start", "one", "g", "two"], "run {run}");
        let tip = format!("machine/{run}");
        assert_eq!(env.git(&["show", &format!("{tip}:out.txt")]), "one\ntwo\n");
        assert_eq!(env.git(&["show", &format!("{tip}:a.txt")]), "a\n");
        assert_eq!(env.git(&["show", &format!("{tip}:b.txt")]), "b\n");
        assert_eq!(crate::crash::state(&env, run), "completed");
    }
    assert_sound(&env);
    // Each completed run's worktree went to the pool (or stayed at its path): none prunable,
    // no member's, and after `gc` none at all.
    let listed = worktrees(&env);
    assert!(listed.iter().all(|(_, prunable)| !prunable), "{listed:?}");
    assert!(!listed.iter().any(|(p, _)| p.contains("--")), "{listed:?}");
    env.machine_ok(&["gc"]);
    assert_eq!(worktrees(&env).len(), 1, "after gc: {:?}", worktrees(&env));
    let left = leftovers(&env.common_dir());
    assert!(
        left.iter()
            .all(|p| p.starts_with(env.common_dir().join("objects"))),
        "{left:?}"
    );
}

/// The pid a refusal names (`… by pid <n> on …`).
fn named_pid(stderr: &str) -> Option<u32> {
    let at = stderr.find("by pid ")?;
    stderr[at + 7..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `resume`, `rewind`, `rm`, `stop` and `apply` of one run started together, in a seeded
/// order with seeded small delays, 30 times. Each ends with a documented exit code; each
/// refusal (3) names the pid of a racer of the same round that got in; afterwards no lock is
/// left, the state reads, git's store is sound and the run still resumes to its end.
#[test]
fn commands_racing_on_one_run_refuse_cleanly_and_leave_it_resumable() {
    let env = TestEnv::new();
    let flag = env.tmp.path().join("pass");
    let gate = format!(
        "sleep 0.2; [ -e {} ] || exit 1; echo s2 >> out.txt",
        flag.display()
    );
    env.workflow(
        "racy",
        &workflow(
            "racy",
            &[
                ("s1", "echo s1 >> out.txt", None),
                ("s2", &gate, None),
                ("s3", "echo s3 >> out.txt", None),
            ],
        ),
    );
    env.machine_code(1, &["run", "racy"]);
    let run = env.last_run();
    let mut rng = fastrand::Rng::with_seed(seed());
    let mut refusals = BTreeMap::<&str, u32>::new();
    let mut codes = BTreeMap::<(&str, i32), u32>::new();
    for round in 0..30 {
        let mut racers: Vec<(&str, Vec<&str>)> = vec![
            ("resume", vec!["resume", &run]),
            ("rewind", vec!["rewind", &run, "s1"]),
            ("rm", vec!["rm", &run]),
            ("stop", vec!["stop", &run]),
            ("apply", vec!["apply", &run]),
        ];
        rng.shuffle(&mut racers);
        let mut started = Vec::new();
        for (name, args) in &racers {
            std::thread::sleep(Duration::from_millis(rng.u64(0..15)));
            started.push((*name, spawn(&env, args)));
        }
        let mut ended = Vec::new();
        for (name, child) in started {
            let pid = child.id();
            let out = child.wait_with_output().expect("wait");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let code = out.status.code().unwrap_or_else(|| {
                panic!("round {round}: {name} died of {:?}\n{stderr}", out.status)
            });
            ended.push((name, pid, code, stderr));
        }
        for (name, _, code, stderr) in &ended {
            let allowed: &[i32] = match *name {
                // Done, failed at s2 again, refused, or stopped by `stop`.
                "resume" => &[0, 1, 3, 130],
                // Removed, refused by the lock, or refused because a stopped step's
                // unfinished work is in the worktree (kept only with --force).
                "rm" => &[0, 2, 3],
                // Rewound already: s1 has not run yet (usage).
                "rewind" => &[0, 2, 3],
                // Nothing to stop (usage) or stopped.
                "stop" => &[0, 2],
                // The run is not completed (usage).
                "apply" => &[2],
                _ => unreachable!(),
            };
            assert!(
                allowed.contains(code),
                "round {round}: {name} exited {code}\n{stderr}"
            );
            if *name == "rm" && *code == 2 {
                assert!(
                    stderr.contains("holds uncommitted changes"),
                    "round {round}: rm refused for another reason\n{stderr}"
                );
            }
            *codes.entry((name, *code)).or_default() += 1;
            if *code == 3 {
                let holder = named_pid(stderr).unwrap_or_else(|| {
                    panic!("round {round}: {name} refused without a pid\n{stderr}")
                });
                let winner = ended.iter().find(|(_, pid, _, _)| *pid == holder);
                assert!(
                    winner.is_some_and(|(_, _, c, _)| *c != 3),
                    "round {round}: {name} was refused by pid {holder}, not a racer that got in: {:?}",
                    ended.iter().map(|(n, p, c, _)| (n, p, c)).collect::<Vec<_>>()
                );
                *refusals.entry(name).or_default() += 1;
            }
        }
        let held = crate::crash::held_locks(&env);
        assert!(held.is_empty(), "round {round}: locks left: {held:?}");
        let state = crate::crash::state(&env, &run);
        assert!(
            ["failed", "interrupted"].contains(&state.as_str()),
            "round {round}: state {state}"
        );
    }
    eprintln!("exit codes (command, code) -> rounds: {codes:?}");
    eprintln!("refusals naming the holder: {refusals:?}");
    let refused: u32 = refusals.values().sum();
    assert!(
        refused >= 10,
        "the commands hardly overlapped: {refusals:?}"
    );
    assert_sound(&env);
    std::fs::write(&flag, "").expect("flag");
    env.machine_ok(&["resume", &run]);
    assert_eq!(crate::crash::state(&env, &run), "completed");
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:out.txt")]),
        "s1\ns2\ns3\n"
    );
    assert_sound(&env);
}
