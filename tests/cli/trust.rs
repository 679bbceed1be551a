//! Workflows from the repository run only once trusted here: refused without a terminal (exit
//! 2, nothing created, the command that trusts it named), asked once on a terminal (the
//! workflow shown, or a diff of what changed since it was trusted), `--trust` for CI, `init` and
//! `new` trust what they write, and a resume runs the content its run started with.

use std::time::Duration;

use crate::common::{wait_until, TestEnv};
use crate::pty::OnPty;

const HELLO: &str = r#"version = 1
name = "hello"
[[steps]]
id = "greet"
run = ["sh", "-c", "echo hello > hello.txt"]
"#;

fn refs(env: &TestEnv) -> String {
    env.git(&["for-each-ref", "--format=%(refname)"])
}

#[test]
fn an_untrusted_workflow_is_refused_until_trusted() {
    let env = TestEnv::new();
    env.untrusted_workflow("hello", HELLO);
    let before = refs(&env);
    let r = env.machine_code(2, &["run", "hello"]);
    assert!(
        r.stderr
            .contains("error: workflow .codemachine/workflows/hello.toml is not trusted here yet"),
        "{r}"
    );
    assert!(
        r.stderr.contains(
            "hint: read it, then `git machine trust hello` (or `git machine run hello --trust`)"
        ),
        "{r}"
    );
    assert_eq!(refs(&env), before, "nothing was created");
    assert!(!env.tmp.path().join("cache/git-machine").exists());
    // `--no-input` and `--detach` are refused the same way.
    env.machine_code(2, &["run", "hello", "--no-input"]);
    env.machine_code(2, &["run", "hello", "--detach"]);
    assert_eq!(refs(&env), before);

    let t = env.machine_ok(&["trust", "hello"]);
    assert!(
        t.stderr
            .contains("trusted .codemachine/workflows/hello.toml (blob "),
        "{t}"
    );
    env.machine_ok(&["run", "hello"]);

    // A changed file is refused again, and says so.
    env.untrusted_workflow("hello", &HELLO.replace("echo hello", "echo changed"));
    let r = env.machine_code(2, &["run", "hello"]);
    assert!(r.stderr.contains("has changed since you trusted it"), "{r}");
    assert_eq!(env.runs().len(), 1);
    // `--trust` trusts it and records that: the next run needs no flag.
    env.machine_ok(&["run", "hello", "--trust"]);
    env.machine_ok(&["run", "hello"]);
    assert_eq!(env.runs().len(), 3);
    // Trust lives outside the repository, under the data dir.
    let status = env.git(&["status", "--porcelain", "--ignored"]);
    assert!(!status.contains("trust"), "{status}");
    assert!(env.home.join(".local/share/git-machine/trust").is_dir());
}

#[test]
fn trust_is_asked_once_on_a_terminal_with_the_workflow_or_its_diff() {
    let env = TestEnv::new();
    env.untrusted_workflow("hello", HELLO);
    let mut machine = OnPty::spawn(&env, &["run", "hello", "--plain"]);
    assert!(
        wait_until(Duration::from_secs(20), || machine.text().contains(
            "Trust .codemachine/workflows/hello.toml and run it? [y/N]"
        )),
        "{}",
        machine.text()
    );
    let shown = machine.text();
    assert!(shown.contains("has not been run here before"), "{shown}");
    assert!(
        shown.contains("  run = [\"sh\", \"-c\", \"echo hello > hello.txt\"]"),
        "{shown}"
    );
    machine.line("y");
    assert_eq!(
        machine.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        machine.text()
    );
    assert_eq!(env.runs().len(), 1);
    // Recorded: without a terminal it runs now.
    env.machine_ok(&["run", "hello"]);

    // Changed: the question shows what changed; no is a refusal, nothing created.
    env.untrusted_workflow("hello", &HELLO.replace("echo hello", "echo changed"));
    let mut machine = OnPty::spawn(&env, &["run", "hello", "--plain"]);
    assert!(
        wait_until(Duration::from_secs(20), || machine.text().contains("[y/N]")),
        "{}",
        machine.text()
    );
    let shown = machine.text();
    assert!(
        shown.contains("has changed since you trusted it"),
        "{shown}"
    );
    assert!(
        shown.contains("-run = [\"sh\", \"-c\", \"echo hello > hello.txt\"]"),
        "{shown}"
    );
    assert!(
        shown.contains("+run = [\"sh\", \"-c\", \"echo changed > hello.txt\"]"),
        "{shown}"
    );
    assert!(
        !shown.contains(" name = \"hello\"\n+"),
        "only the change and its context"
    );
    machine.line("n");
    assert_eq!(
        machine.wait(Duration::from_secs(30)),
        Some(2),
        "{}",
        machine.text()
    );
    assert_eq!(env.runs().len(), 2);

    // `--no-input` on a terminal asks nothing.
    let mut machine = OnPty::spawn(&env, &["run", "hello", "--plain", "--no-input"]);
    assert_eq!(
        machine.wait(Duration::from_secs(30)),
        Some(2),
        "{}",
        machine.text()
    );
    assert!(!machine.text().contains("[y/N]"), "{}", machine.text());
}

#[test]
fn init_and_new_trust_what_they_write_and_built_ins_need_none() {
    let env = TestEnv::new();
    env.machine_ok(&["new", "mine", "--from", "demo"]);
    env.machine_ok(&["run", "mine", "--no-input"]);
    env.machine_ok(&["init", "--engine", "codex"]);
    let r = env.machine_code(2, &["run", "starter", "--no-input"]);
    assert!(!r.stderr.contains("trust"), "{r}");
    assert!(
        r.stderr.contains("task"),
        "refused for its missing var only: {r}"
    );
    env.machine_ok(&["run", "demo", "--no-input"]);
    let t = env.machine_ok(&["trust", "demo"]);
    assert!(t.stderr.contains("needs no trust"), "{t}");
}

#[test]
fn resume_runs_the_stored_workflow_without_a_new_question_unless_it_is_not_trusted_here() {
    let env = TestEnv::new();
    env.workflow(
        "flaky",
        r#"version = 1
name = "flaky"
[[steps]]
id = "try"
run = ["sh", "-c", "test -e \"$HOME/go\""]
"#,
    );
    env.machine_code(1, &["run", "flaky"]);
    let run = env.last_run();
    // The file changing on disk does not matter: the run keeps what it started with.
    env.untrusted_workflow(
        "flaky",
        "version = 1\nname = \"flaky\"\n[[steps]]\nid = \"x\"\nrun = [\"false\"]\n",
    );
    env.machine_code(1, &["resume", &run]);
    // `--reload` adopts the file as it is now: that content needs trust.
    let r = env.machine_code(2, &["resume", &run, "--reload"]);
    assert!(r.stderr.contains("has changed since you trusted it"), "{r}");
    // A run whose workflow was never trusted here (as one fetched from another clone).
    std::fs::remove_dir_all(env.home.join(".local/share/git-machine/trust")).expect("forget");
    let r = env.machine_code(2, &["resume", &run]);
    assert!(
        r.stderr
            .contains(&format!("`git machine resume {run} --trust`")),
        "{r}"
    );
    std::fs::write(env.home.join("go"), "").expect("go");
    env.machine_ok(&["resume", &run, "--trust"]);
}

#[test]
fn a_workflow_outside_the_repository_is_the_user_s_own_and_resumes_without_a_question() {
    let env = TestEnv::new();
    let file = env.tmp.path().join("mine.toml");
    std::fs::write(
        &file,
        "version = 1\nname = \"mine\"\n[[steps]]\nid = \"a\"\nrun = [\"false\"]\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf8");
    env.machine_code(1, &["run", path]);
    let run = env.last_run();
    env.machine_code(1, &["resume", &run]);
}
