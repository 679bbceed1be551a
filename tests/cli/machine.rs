//! The run's life cycle through the binary: the defects of the state machine's drift, each
//! shown where a user meets it (member directives, members published at once, loop feedback,
//! reloading a workflow, the failed step named, events as JSON).

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::TestEnv;

fn state(env: &TestEnv, run: &str) -> String {
    env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/state.toml"),
    ])
}

#[test]
fn a_members_stop_directive_applies_to_its_group_and_is_never_committed() {
    let env = TestEnv::new();
    env.workflow(
        "g",
        r#"version = 1
name = "g"
[defaults]
engine = "command"
[[steps]]
id = "a"
group = "g"
run = ["sh", "-c", "echo a > a.txt; printf 'action = \"stop\"\nreason = \"nothing left\"\n' > .codemachine/directive.toml"]
[[steps]]
id = "b"
group = "g"
run = ["sh", "-c", "echo b > b.txt"]
[[steps]]
id = "c"
run = ["sh", "-c", "echo c > c.txt"]
"#,
    );
    let r = env.machine_ok(&["run", "g"]);
    let run = env.last_run();
    assert!(
        r.stderr.contains("stopped by step `a`: nothing left"),
        "{r}"
    );
    let st = state(&env, &run);
    assert!(st.contains("status = \"completed\""), "{st}");
    let tree = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")]);
    assert!(
        tree.contains("a.txt") && tree.contains("b.txt"),
        "the group merged: {tree}"
    );
    assert!(
        !tree.contains("c.txt"),
        "`c` does not run after the stop: {tree}"
    );
    assert!(
        !tree.contains("directive.toml"),
        "a directive is never committed: {tree}"
    );
    let record = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/01-a/step.toml"),
    ]);
    assert!(
        record.contains("directive = \"stop: nothing left\""),
        "{record}"
    );
}

#[test]
fn a_member_cannot_loop() {
    let env = TestEnv::new();
    env.workflow(
        "g",
        r#"version = 1
name = "g"
[defaults]
engine = "command"
[[steps]]
id = "a"
group = "g"
run = ["sh", "-c", "printf 'action = \"loop\"\n' > .codemachine/directive.toml"]
[[steps]]
id = "b"
group = "g"
run = ["true"]
"#,
    );
    let r = env.machine_code(1, &["run", "g"]);
    assert!(r.stderr.contains("cannot send the run back"), "{r}");
    let st = state(&env, &env.last_run());
    assert!(st.contains("failed = \"a\""), "{st}");
}

#[test]
fn a_member_that_finished_is_not_run_again_after_kill_9() {
    let env = TestEnv::new();
    let counts = env.path("counts");
    std::fs::create_dir_all(&counts).expect("mkdir");
    env.workflow(
        "pair",
        &format!(
            r#"version = 1
name = "pair"
[defaults]
engine = "command"
[[steps]]
id = "quick"
group = "g"
run = ["sh", "-c", "echo x >> '{c}/quick'; echo q > q.txt"]
[[steps]]
id = "slow"
group = "g"
run = ["sh", "-c", "echo x >> '{c}/slow'; if test ! -e '{c}/go'; then sleep 30; fi; echo s > s.txt"]
"#,
            c = counts.display()
        ),
    );
    let mut child = env
        .machine_cmd(&["run", "pair"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        assert!(Instant::now() < deadline, "quick was never published");
        if let Some(run) = env.runs().last().cloned() {
            let tip = env.git(&["log", "-1", "--format=%s", &format!("machine/{run}")]);
            if tip.contains("`quick` done") {
                break run;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    std::fs::write(counts.join("go"), "").expect("go");
    env.machine_ok(&["resume", &run]);
    assert_eq!(
        std::fs::read_to_string(counts.join("quick")).expect("quick"),
        "x\n",
        "quick ran once"
    );
    let tree = env.git(&["ls-tree", "-r", "--name-only", &format!("machine/{run}")]);
    assert!(tree.contains("q.txt") && tree.contains("s.txt"), "{tree}");
}

const LOOP: &str = r#"version = 1
name = "fix"
[defaults]
engine = "command"
[[steps]]
id = "implement"
run = ["sh", "-c", "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n"]
prompt = "Make the test pass (pass {loop_pass})."
[[steps]]
id = "check"
run = ["true"]
loop = { to = "implement", max = 3, until = { run = ["sh", "-c", "echo 'assertion failed: n == 2'; test $(cat n) -ge 2"] } }
"#;

#[test]
fn the_step_a_gate_sends_back_to_is_told_why_and_which_pass() {
    let env = TestEnv::new();
    env.workflow("fix", LOOP);
    let r = env.machine_ok(&["run", "fix"]);
    assert!(
        r.stderr.contains("gate `sh -c") && r.stderr.contains("→ back to implement, pass 2/3"),
        "{r}"
    );
    let run = env.last_run();
    let first = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/01-implement/prompt.md"),
    ]);
    assert!(!first.contains("runs again"), "{first}");
    assert!(first.contains("(pass 1)"), "{first}");
    let second = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/03-implement/prompt.md"),
    ]);
    assert!(
        second.contains("assertion failed: n == 2"),
        "the gate's output reaches the prompt: {second}"
    );
    assert!(second.contains("(pass 2)"), "{second}");
    let check = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/steps/02-check/step.toml"),
    ]);
    assert!(
        check.contains("[looped]") && check.contains("to = \"implement\""),
        "{check}"
    );
    let log = env.machine_ok(&["log", &run]);
    assert!(
        log.stdout.contains("back to implement"),
        "log shows the loop: {log}"
    );
}

#[test]
fn a_loop_that_runs_out_names_the_looping_step_as_failed() {
    let env = TestEnv::new();
    env.workflow("fix", &LOOP.replace("-ge 2", "-ge 9"));
    env.machine_code(1, &["run", "fix"]);
    let run = env.last_run();
    let st = state(&env, &run);
    assert!(
        st.contains("failed = \"check\"") && st.contains("next = \"implement\""),
        "{st}"
    );
    let status = env.machine_ok(&["status", &run]);
    assert!(status.stdout.contains("check"), "{status}");
}

#[test]
fn resume_reload_adopts_a_fixed_workflow_as_its_own_commit() {
    let env = TestEnv::new();
    let wf = r#"version = 1
name = "typo"
[defaults]
engine = "command"
[[steps]]
id = "one"
run = ["sh", "-c", "echo 1 >> one.txt"]
[[steps]]
id = "two"
run = ["sh", "-c", "echo 2 > REPORT.md"]
outputs = ["REPROT.md"]
"#;
    env.workflow("typo", wf);
    let r = env.machine_code(1, &["run", "typo"]);
    assert!(r.stderr.contains("REPROT.md"), "{r}");
    let run = env.last_run();
    // Without --reload, resume runs the frozen copy and fails the same way.
    env.machine_code(1, &["resume", &run]);
    env.workflow("typo", &wf.replace("REPROT.md", "REPORT.md"));
    let r = env.machine_ok(&["resume", &run, "--reload"]);
    assert!(
        r.stderr.contains("+outputs = [\"REPORT.md\"]"),
        "the diff is shown: {r}"
    );
    let subjects = env.subjects(&run);
    assert!(
        subjects.iter().any(|s| s == "workflow: reload typo"),
        "{subjects:?}"
    );
    assert_eq!(
        subjects.last().map(String::as_str),
        Some("two: ran sh"),
        "{subjects:?}"
    );
    let one = env.git(&["show", &format!("machine/{run}:one.txt")]);
    assert_eq!(one, "1\n", "the finished step is not repeated");
    let stored = env.git(&[
        "show",
        &format!("machine/{run}:.codemachine/runs/{run}/workflow.toml"),
    ]);
    assert!(stored.contains("\"REPORT.md\""), "{stored}");
}

#[test]
fn a_reload_that_removes_the_next_step_is_refused_and_changes_nothing() {
    let env = TestEnv::new();
    let wf = "version = 1\nname = \"w\"\n[defaults]\nengine = \"command\"\n[[steps]]\nid = \"one\"\nrun = [\"true\"]\n[[steps]]\nid = \"two\"\nrun = [\"false\"]\n";
    env.workflow("w", wf);
    env.machine_code(1, &["run", "w"]);
    let run = env.last_run();
    let before = env.git(&["rev-parse", &format!("machine/{run}")]);
    env.workflow("w", &wf.replace("id = \"two\"", "id = \"three\""));
    let r = env.machine_code(2, &["resume", &run, "--reload"]);
    assert!(
        r.stderr
            .contains("step `two`, which the new workflow does not have"),
        "{r}"
    );
    assert!(r.stderr.contains("hint:"), "{r}");
    assert_eq!(env.git(&["rev-parse", &format!("machine/{run}")]), before);
}

#[test]
fn json_events_follow_the_documented_schema() {
    let env = TestEnv::new();
    env.workflow("fix", LOOP);
    let r = env.machine_ok(&["run", "fix", "--json"]);
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md"))
        .expect("docs/events.md");
    let mut names = Vec::new();
    for line in r.stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let name = v["event"]
            .as_str()
            .expect("every event names itself")
            .to_string();
        assert!(v["run"].is_string() && v["time"].is_string(), "{line}");
        assert!(
            doc.contains(&format!("`{name}`")),
            "event `{name}` is documented in docs/events.md"
        );
        for field in v.as_object().expect("object").keys() {
            assert!(
                doc.contains(&format!("`{field}`")),
                "field `{field}` of `{name}` is documented"
            );
        }
        names.push(name);
    }
    assert_eq!(names.first().map(String::as_str), Some("run_started"));
    assert_eq!(names.last().map(String::as_str), Some("run_finished"));
    for expected in ["step_started", "step_finished", "gate", "loop"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let finished: serde_json::Value = serde_json::from_str(
        r.stdout
            .lines()
            .find(|l| l.contains("\"step_finished\""))
            .expect("a step finished"),
    )
    .expect("json");
    assert!(
        finished["commit"].as_str().is_some_and(|c| c.len() == 40),
        "{finished}"
    );
    assert!(finished["diffstat"]["files"].is_number(), "{finished}");
}

#[test]
fn in_plain_mode_the_run_id_is_the_first_line_of_stdout() {
    let env = TestEnv::new();
    env.workflow("w", "version = 1\nname = \"w\"\n[[steps]]\nid = \"one\"\nengine = \"command\"\nrun = [\"true\"]\n");
    let r = env.machine_ok(&["run", "w"]);
    assert_eq!(r.stdout.lines().next(), Some(env.last_run().as_str()));
}
