//! A run's vars as a person gives them: a required var nobody gave is asked on a terminal (and
//! is an error, with nothing created, when there is none); `--var name=@file` reads the value
//! from a file relative to the current directory, and `@@` starts a value with a literal `@`.

use std::time::Duration;

use crate::common::{wait_until, TestEnv};
use crate::pty::OnPty;

/// How long to wait for anything that should happen "soon" on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// `topic` is required (with help text); `who` has a default. The step commits `topic`'s
/// value, byte for byte, as `value.txt`.
const ASK: &str = r#"version = 1
name = "ask"

[vars.topic]
help = "what to write about"

[vars.who]
default = "nobody"

[[steps]]
id = "write"
engine = "command"
run = ["sh", "-c", "printf '%s' \"$1\" > value.txt", "sh", "{topic}"]
"#;

fn ask_env() -> TestEnv {
    let env = TestEnv::new();
    env.workflow("ask", ASK);
    env
}

/// `value.txt` as the run's only step committed it.
fn committed_value(env: &TestEnv) -> String {
    let run = env.last_run();
    env.git(&["show", &format!("machine/{run}:value.txt")])
}

/// No run branch, no worktree, no run folder: a usage error created nothing.
#[track_caller]
fn assert_nothing_created(env: &TestEnv) {
    assert!(env.runs().is_empty(), "a run branch was created");
    assert_eq!(
        env.git(&["for-each-ref", "refs/machine/"]),
        "",
        "a machine ref was created"
    );
    assert_eq!(
        env.git(&["worktree", "list"]).lines().count(),
        1,
        "a worktree was registered"
    );
    assert!(
        !env.tmp.path().join("cache/git-machine").exists(),
        "a worktree folder was made"
    );
}

/// Type `line` and Enter, as a person does.
fn type_line(pty: &mut OnPty, line: &str) {
    for b in line.bytes() {
        pty.key(b);
    }
    pty.key(b'\r');
}

/// Wait until the screen shows `needle` `times` times; panics with the screen otherwise.
#[track_caller]
fn wait_for(pty: &OnPty, needle: &str, times: usize) {
    assert!(
        wait_until(PATIENCE, || pty.text().matches(needle).count() >= times),
        "waiting for {needle:?} ×{times}; the screen:\n{}",
        pty.text()
    );
}

#[test]
fn a_required_var_is_asked_on_a_terminal_and_the_answer_reaches_the_step() {
    let env = ask_env();
    let mut machine = OnPty::spawn(&env, &["run", "ask", "--plain"]);
    wait_for(&machine, "topic — what to write about", 1);
    wait_for(&machine, "Value for topic: ", 1);
    // An empty answer (or only blanks) is no answer: the same var is asked again.
    type_line(&mut machine, "");
    wait_for(&machine, "Value for topic: ", 2);
    type_line(&mut machine, "   ");
    wait_for(&machine, "Value for topic: ", 3);
    assert!(
        machine.text().contains("topic has no default"),
        "{}",
        machine.text()
    );
    type_line(&mut machine, "fix the login bug");
    let code = machine.wait(PATIENCE);
    assert_eq!(code, Some(0), "{}", machine.text());
    assert_eq!(committed_value(&env), "fix the login bug");
    // `who` has a default: it was never asked.
    assert!(
        !machine.text().contains("Value for who"),
        "{}",
        machine.text()
    );
}

#[test]
fn a_var_given_with_var_is_not_asked() {
    let env = ask_env();
    let mut machine = OnPty::spawn(&env, &["run", "ask", "--plain", "--var", "topic=given"]);
    let code = machine.wait(PATIENCE);
    assert_eq!(code, Some(0), "{}", machine.text());
    assert!(!machine.text().contains("Value for"), "{}", machine.text());
    assert_eq!(committed_value(&env), "given");
}

#[test]
fn ctrl_d_at_the_question_is_the_missing_var_error_and_creates_nothing() {
    let env = ask_env();
    let mut machine = OnPty::spawn(&env, &["run", "ask", "--plain"]);
    wait_for(&machine, "Value for topic: ", 1);
    machine.key(0x04);
    wait_for(
        &machine,
        "workflow `ask` needs var `topic` (what to write about)",
        1,
    );
    wait_for(&machine, "the input ended before an answer", 1);
    let code = machine.wait(PATIENCE);
    assert_eq!(code, Some(2), "{}", machine.text());
    assert_nothing_created(&env);
}

#[test]
fn without_a_terminal_a_missing_var_is_an_error_and_nothing_is_created() {
    let env = ask_env();
    let r = env.machine_code(2, &["run", "ask"]);
    // The workflow file is fine: the run lacks input.
    assert!(
        r.stderr
            .starts_with("error: workflow `ask` needs var `topic` (what to write about)\n"),
        "{r}"
    );
    assert!(
        r.stderr.contains(
            "hint: pass --var topic=VALUE, or --var topic=@FILE to read it from a file; \
             git machine asks for it when stdin and stderr are a terminal"
        ),
        "{r}"
    );
    assert!(!r.stderr.contains("Value for"), "nothing is asked: {r}");
    assert_nothing_created(&env);
}

#[test]
fn no_input_and_detach_never_ask_even_on_a_terminal() {
    let env = ask_env();
    for flag in ["--no-input", "--detach"] {
        let mut machine = OnPty::spawn(&env, &["run", "ask", flag]);
        let hint = format!("without {flag}, git machine asks for it on a terminal");
        wait_for(&machine, &hint, 1);
        let code = machine.wait(PATIENCE);
        let screen = machine.text();
        assert_eq!(code, Some(2), "{flag}: {screen}");
        assert!(!screen.contains("Value for"), "{flag} asked: {screen}");
    }
    assert_nothing_created(&env);
}

#[test]
fn a_var_value_is_read_from_a_file_relative_to_the_current_directory() {
    let env = ask_env();
    env.write("notes/topic.md", "Fix the login bug.\n\nSee issue 12.\n");
    let out = env
        .machine_cmd(&["run", "ask", "--var", "topic=@topic.md"])
        .current_dir(env.path("notes"))
        .output()
        .expect("spawn git-machine");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One trailing newline is dropped; everything else is kept.
    assert_eq!(committed_value(&env), "Fix the login bug.\n\nSee issue 12.");
}

#[test]
fn a_missing_var_file_is_an_error_naming_the_var_and_the_path() {
    let env = ask_env();
    let r = env.machine_code(2, &["run", "ask", "--var", "topic=@no-such-file.md"]);
    assert!(
        r.stderr.contains(
            "error: cannot read var `topic` from `no-such-file.md` (--var topic=@no-such-file.md): "
        ),
        "{r}"
    );
    assert!(
        r.stderr.contains("relative to the current directory"),
        "{r}"
    );
    assert_nothing_created(&env);
    // `@` alone names no file.
    let r = env.machine_code(2, &["run", "ask", "--var", "topic=@"]);
    assert!(r.stderr.contains("file name"), "{r}");
    assert_nothing_created(&env);
}

#[test]
fn two_ats_start_a_value_with_a_literal_at() {
    let env = ask_env();
    env.machine_ok(&["run", "ask", "--var", "topic=@@channel"]);
    assert_eq!(committed_value(&env), "@channel");
}
