//! Running a run in the background, following it from another process, stopping it.

use std::time::{Duration, Instant};

use crate::common::TestEnv;

/// A workflow whose middle step waits, in a shell it starts (which names the gate), until
/// `gate` exists (at most 60 s).
fn waiting(env: &TestEnv) -> std::path::PathBuf {
    let gate = env.path("gate");
    env.workflow(
        "slow",
        &format!(
            r#"version = 1
name = "slow"
[defaults]
engine = "command"
[[steps]]
id = "one"
run = ["sh", "-c", "echo 1 > one.txt"]
[[steps]]
id = "wait"
run = ["sh", "-c", "sh -c 'i=0; while [ ! -e {g} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done' & wait; echo w > w.txt"]
[[steps]]
id = "three"
run = ["sh", "-c", "echo 3 > three.txt"]
"#,
            g = gate.display()
        ),
    );
    gate
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the run has committed `one` and runs `step` now.
fn at_step(env: &TestEnv, run: &str, step: &str) -> bool {
    let status = env.machine(&["status", run]).stdout;
    status
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == [step, "running"])
        && env
            .git(&["log", "-1", "--format=%s", &format!("machine/{run}")])
            .starts_with("one:")
}

#[test]
fn a_detached_run_prints_its_id_and_watch_follows_it_to_the_end() {
    let env = TestEnv::new();
    let gate = waiting(&env);
    let started = env.machine_ok(&["run", "slow", "--detach"]);
    let run = started.stdout.trim().to_string();
    assert_eq!(run, env.last_run(), "{started}");
    assert!(started.stderr.contains("git machine watch"), "{started}");
    wait_for("step `one`", || at_step(&env, &run, "wait"));
    let watcher = env
        .machine_cmd(&["watch", &run])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn watch");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&gate, "").expect("open the gate");
    let out = watcher.wait_with_output().expect("watch ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("ok one") && stderr.contains("ok three"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("done run {run} completed")),
        "{stderr}"
    );
    let json = env.machine_ok(&["watch", &run, "--json"]);
    assert!(
        json.stdout.contains(&format!("run {run}")) || json.stdout.contains(&run),
        "a finished run shows its status: {json}"
    );
}

#[test]
fn stop_stops_a_running_run_resumably_and_refuses_one_that_is_not_running() {
    let env = TestEnv::new();
    let gate = waiting(&env);
    let run = env
        .machine_ok(&["run", "slow", "--detach"])
        .stdout
        .trim()
        .to_string();
    wait_for("step `wait`", || at_step(&env, &run, "wait"));
    let stopped = env.machine_ok(&["stop", &run]);
    assert!(
        stopped
            .stdout
            .contains(&format!("stopped run {run} at step `wait`")),
        "{stopped}"
    );
    let status = env.machine_ok(&["status", &run]);
    assert!(status.stdout.contains("interrupted"), "{status}");
    let again = env.machine_code(2, &["stop", &run]);
    assert!(
        again.stderr.contains(&format!("run {run} is not running")),
        "{again}"
    );
    assert!(again.stderr.contains("hint:"), "{again}");
    std::fs::write(&gate, "").expect("open the gate");
    env.machine_ok(&["resume", &run]);
    assert_eq!(
        env.git(&["show", &format!("machine/{run}:three.txt")]),
        "3\n"
    );
}

#[test]
fn stop_now_kills_the_run_and_its_step() {
    let env = TestEnv::new();
    // The step waits in a shell it started, which names the gate: it dies with the run.
    let gate = waiting(&env);
    let marker = gate.display().to_string();
    let run = env
        .machine_ok(&["run", "slow", "--detach"])
        .stdout
        .trim()
        .to_string();
    wait_for("step `wait`", || at_step(&env, &run, "wait"));
    let stopped = env.machine_ok(&["stop", "--now", &run]);
    assert!(stopped.stdout.contains("killed"), "{stopped}");
    let status = env.machine_ok(&["status", &run]);
    assert!(status.stdout.contains("interrupted"), "{status}");
    assert!(
        crate::common::wait_until(Duration::from_secs(10), || {
            crate::common::processes_with(&marker).is_empty()
        }),
        "the step outlived `stop --now`: {:?}",
        crate::common::processes_with(&marker)
    );
}

#[test]
fn a_detached_run_with_a_mistake_says_so_on_this_terminal() {
    let env = TestEnv::new();
    waiting(&env);
    let r = env.machine_code(2, &["run", "slow", "--detach", "--var", "nope=1"]);
    assert!(r.stderr.contains("nope"), "{r}");
    assert!(env.runs().is_empty(), "nothing was created");
}

#[test]
fn a_detached_run_with_json_still_prints_its_id_and_rm_takes_its_event_log() {
    let env = TestEnv::new();
    let gate = waiting(&env);
    std::fs::write(&gate, "").expect("open the gate");
    let started = env.machine_ok(&["run", "slow", "--detach", "--json"]);
    let run = started.stdout.trim().to_string();
    assert_eq!(run, env.last_run(), "{started}");
    let events = env
        .common_dir()
        .join("machine/events")
        .join(format!("{run}.jsonl"));
    wait_for("the run's end", || {
        std::fs::read_to_string(&events).is_ok_and(|t| t.contains("\"run_finished\""))
    });
    wait_for("the lock's release", || {
        !env.common_dir().join("machine/locks").join(&run).exists()
    });
    env.machine_ok(&["rm", "--branch", &run]);
    assert!(!events.exists(), "the event log goes with the run");
}
